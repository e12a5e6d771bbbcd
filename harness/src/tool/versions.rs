//! Which versions of a tool a matrix means: exact versions, semver ranges, `latest`, `latest-N`,
//! and git refs (a branch or commit, built through the Go module proxy).

use std::time::Duration;

use serde::Deserialize;

use super::Tool;
use crate::provision::Go;

/// One entry of `versions = [...]`.
#[derive(Debug, Clone, PartialEq)]
pub enum Selector {
    /// `v0.15.2` or `0.15.2` (stored with the `v`); also pseudo-versions.
    Exact(String),
    /// `">=0.15, <0.17"`: every release in the range.
    Range(semver::VersionReq),
    /// `latest` (1) or `latest-3` (the three newest releases).
    Newest(usize),
    /// A branch or commit (`main`, `348ca2d`), resolved by the Go module proxy.
    GitRef(String),
}

pub(crate) const SELECTOR_FORMS: &str =
    "an exact version (v0.15.2), a semver range (\">=0.15, <0.17\"), latest, latest-N, or a branch/commit (main, 348ca2d)";

impl Selector {
    pub fn parse(text: &str) -> Result<Selector, String> {
        let text = text.trim();
        if text == "latest" {
            return Ok(Selector::Newest(1));
        }
        if let Some(n) = text.strip_prefix("latest-") {
            return match n.parse::<usize>() {
                Ok(n) if n > 0 => Ok(Selector::Newest(n)),
                _ => Err(format!("`{text}`: latest-N needs a count of 1 or more")),
            };
        }
        if let Ok(version) = semver::Version::parse(text.trim_start_matches('v')) {
            return Ok(Selector::Exact(format!("v{version}")));
        }
        if text.starts_with(['>', '<', '=', '~', '^']) || text.contains(',') {
            return semver::VersionReq::parse(text)
                .map(Selector::Range)
                .map_err(|e| format!("`{text}` is not a valid semver range: {e}"));
        }
        let plausible_ref = !text.is_empty()
            && !text.starts_with(['-', '.', '/'])
            && text.chars().all(|c| c.is_ascii_alphanumeric() || "._/-".contains(c));
        if plausible_ref {
            return Ok(Selector::GitRef(text.to_string()));
        }
        Err(format!("`{text}` is not a version; expected {SELECTOR_FORMS}"))
    }

    fn needs_index(&self) -> bool {
        matches!(self, Selector::Range(_) | Selector::Newest(_))
    }
}

/// Where the list of releases came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexSource {
    GitHub,
    GoProxy,
}

impl std::fmt::Display for IndexSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IndexSource::GitHub => "GitHub releases",
            IndexSource::GoProxy => "the Go module proxy",
        })
    }
}

/// A tool's released versions, newest last.
#[derive(Debug, Clone)]
pub struct ReleaseIndex {
    pub versions: Vec<semver::Version>,
    pub source: IndexSource,
}

#[derive(Debug, thiserror::Error)]
pub enum VersionError {
    #[error(
        "could not list {tool} releases: GitHub did not answer ({github}) and the Go module proxy failed ({proxy})"
    )]
    NoIndex { tool: &'static str, github: String, proxy: String },
    #[error("`{selector}` matches no {tool} release known to {index} (known: {known})")]
    NoMatch { tool: &'static str, selector: String, index: IndexSource, known: String },
}

impl ReleaseIndex {
    /// GitHub's release list where reachable, else `go list -m -versions` (which a proxy
    /// may serve only in part: say so when resolving).
    pub async fn fetch(tool: &Tool, go: Option<&Go>) -> Result<ReleaseIndex, VersionError> {
        let github = match from_github(&tool.release().releases_api()).await {
            Ok(index) => return Ok(index),
            Err(e) => e,
        };
        let Some(go) = go else {
            return Err(VersionError::NoIndex { tool: tool.name(), github, proxy: "no `go` on PATH".into() });
        };
        match go.list_versions(tool.go().module).await {
            Ok(list) => Ok(ReleaseIndex::from_tags(list.iter().map(String::as_str), IndexSource::GoProxy)),
            Err(e) => Err(VersionError::NoIndex { tool: tool.name(), github, proxy: e.to_string() }),
        }
    }

    pub(crate) fn from_tags<'a>(tags: impl Iterator<Item = &'a str>, source: IndexSource) -> ReleaseIndex {
        let mut versions: Vec<semver::Version> = tags
            .filter_map(|tag| semver::Version::parse(tag.trim_start_matches('v')).ok())
            .filter(|v| v.pre.is_empty())
            .collect();
        versions.sort();
        versions.dedup();
        ReleaseIndex { versions, source }
    }
}

async fn from_github(api: &str) -> Result<ReleaseIndex, String> {
    #[derive(Deserialize)]
    struct Release {
        tag_name: String,
        draft: bool,
        prerelease: bool,
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(15))
        .user_agent(concat!("ko-matrix/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| e.to_string())?;
    let response = client.get(api).send().await.map_err(|e| e.to_string())?;
    let releases: Vec<Release> =
        response.error_for_status().map_err(|e| e.to_string())?.json().await.map_err(|e| e.to_string())?;
    let tags = releases.iter().filter(|r| !r.draft && !r.prerelease).map(|r| r.tag_name.as_str());
    Ok(ReleaseIndex::from_tags(tags, IndexSource::GitHub))
}

/// What each selector became, for showing before anything runs.
#[derive(Debug, Clone)]
pub struct Resolution {
    pub steps: Vec<(String, Vec<String>)>,
    /// Every version once: releases in semver order, then git refs as given.
    pub versions: Vec<String>,
    pub index_source: Option<IndexSource>,
}

/// Whether resolving these selectors needs the release list.
pub(crate) fn needs_index(selectors: &[(String, Selector)]) -> bool {
    selectors.iter().any(|(_, s)| s.needs_index())
}

/// Resolves `selectors` of `tool`, listing its releases first when a range or `latest` needs them.
pub async fn resolve_listing(tool: &Tool, selectors: &[(String, Selector)]) -> Result<Resolution, VersionError> {
    if !needs_index(selectors) {
        return resolve(tool, selectors, None);
    }
    let go = Go::find(&format!("the {} release list", tool.name())).await.ok();
    let index = ReleaseIndex::fetch(tool, go.as_ref()).await?;
    resolve(tool, selectors, Some(&index))
}

pub fn resolve(
    tool: &Tool,
    selectors: &[(String, Selector)],
    index: Option<&ReleaseIndex>,
) -> Result<Resolution, VersionError> {
    let mut steps = Vec::new();
    let mut releases: Vec<semver::Version> = Vec::new();
    let mut refs: Vec<String> = Vec::new();
    for (text, selector) in selectors {
        let picked: Vec<String> = match selector {
            Selector::Exact(v) => vec![v.clone()],
            Selector::GitRef(r) => vec![r.clone()],
            Selector::Range(_) | Selector::Newest(_) => {
                let index = index.expect("callers fetch the index when needs_index says so");
                let matched: Vec<&semver::Version> = match selector {
                    Selector::Range(req) => index.versions.iter().filter(|v| req.matches(v)).collect(),
                    Selector::Newest(n) => index.versions.iter().rev().take(*n).rev().collect(),
                    _ => unreachable!(),
                };
                if matched.is_empty() {
                    let known = index.versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>().join(", ");
                    return Err(VersionError::NoMatch {
                        tool: tool.name(),
                        selector: text.clone(),
                        index: index.source,
                        known,
                    });
                }
                matched.into_iter().map(|v| format!("v{v}")).collect()
            }
        };
        for version in &picked {
            match semver::Version::parse(version.trim_start_matches('v')) {
                Ok(v) => releases.push(v),
                Err(_) => refs.push(version.clone()),
            }
        }
        steps.push((text.clone(), picked));
    }
    releases.sort();
    releases.dedup();
    let mut versions: Vec<String> = releases.iter().map(|v| format!("v{v}")).collect();
    for r in refs {
        if !versions.contains(&r) {
            versions.push(r);
        }
    }
    Ok(Resolution { steps, versions, index_source: index.map(|i| i.source) })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn index() -> ReleaseIndex {
        ReleaseIndex::from_tags(
            ["v0.14.1", "v0.15.0", "v0.15.1", "v0.15.2", "v0.16.0-rc1", "v0.16.0", "v0.17.0"].into_iter(),
            IndexSource::GoProxy,
        )
    }

    fn tool() -> &'static Tool {
        crate::tool::shorthand()
    }

    fn sel(text: &str) -> (String, Selector) {
        (text.to_string(), Selector::parse(text).unwrap())
    }

    #[test]
    fn selectors_parse() {
        assert_eq!(Selector::parse("0.15.2").unwrap(), Selector::Exact("v0.15.2".into()));
        assert_eq!(Selector::parse("v0.15.2").unwrap(), Selector::Exact("v0.15.2".into()));
        assert_eq!(Selector::parse("latest").unwrap(), Selector::Newest(1));
        assert_eq!(Selector::parse("latest-3").unwrap(), Selector::Newest(3));
        assert_eq!(Selector::parse("main").unwrap(), Selector::GitRef("main".into()));
        assert_eq!(Selector::parse("348ca2d").unwrap(), Selector::GitRef("348ca2d".into()));
        assert!(matches!(Selector::parse(">=0.15, <0.17").unwrap(), Selector::Range(_)));
        assert!(Selector::parse("latest-0").unwrap_err().contains("1 or more"));
        assert!(Selector::parse(">=zero").unwrap_err().contains("semver range"));
        assert!(Selector::parse("v 1 2").unwrap_err().contains("expected an exact version"));
    }

    #[test]
    fn ranges_and_newest_resolve_against_the_index_without_prereleases() {
        let r = resolve(tool(), &[sel(">=0.15, <0.17"), sel("latest-2"), sel("v0.15.1"), sel("main")], Some(&index()))
            .unwrap();
        assert_eq!(r.versions, ["v0.15.0", "v0.15.1", "v0.15.2", "v0.16.0", "v0.17.0", "main"]);
        assert_eq!(r.steps[1], ("latest-2".to_string(), vec!["v0.16.0".to_string(), "v0.17.0".to_string()]));
    }

    #[test]
    fn an_empty_range_lists_what_is_known() {
        let err = resolve(tool(), &[sel(">=1.0")], Some(&index())).unwrap_err().to_string();
        assert!(err.contains("`>=1.0` matches no ko release"), "{err}");
        assert!(err.contains("v0.17.0"), "{err}");
    }

    #[test]
    fn exact_versions_need_no_index() {
        let selectors = [sel("v0.15.2"), sel("0.15.1")];
        assert!(!needs_index(&selectors));
        assert_eq!(resolve(tool(), &selectors, None).unwrap().versions, ["v0.15.1", "v0.15.2"]);
    }
}
