//! Bisecting a tool upgrade down to its cause: which release, which commit, or which
//! dependency upgrade turned a cell red. Every probe runs the real cell (same services,
//! same scenario); a probe that does not build is skipped, never counted as bad.

pub mod deps;
pub mod search;

use std::path::Path;
use std::sync::Mutex;
use std::time::Instant;

use serde::Serialize;

use crate::outcome::Outcome;
use crate::tool::versions::ReleaseIndex;
use crate::tool::{Tool, ToolBinary, ToolFetcher};
use crate::run::Runner;
use crate::scenario::Scenario;
use deps::Upgrade;
use search::Verdict;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    /// Binary search over the releases between good and bad.
    Releases,
    /// Binary search over the commits between good and bad (each a pseudo-version).
    Commits,
    /// The tool's code at good, with subsets of bad's dependency upgrades (ddmin).
    Deps,
}

/// One probe, as reported.
#[derive(Debug, Clone, Serialize)]
pub struct ProbeRecord {
    pub k: usize,
    /// What was built: a version, a commit, or good + a set of upgrades (named when there are
    /// a few, counted when there are many).
    pub what: String,
    /// Deps mode: every upgrade the probe applied (`module@version`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub upgrades: Vec<String>,
    pub verdict: Verdict,
    /// The cell's label, or why there was none.
    pub outcome: String,
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub build_list: Vec<String>,
}

/// The answer, with the evidence.
#[derive(Debug, Clone, Serialize)]
pub struct BisectReport {
    pub tool: String,
    pub mode: Mode,
    pub scenario: String,
    pub good: String,
    pub bad: String,
    pub good_outcome: String,
    pub bad_outcome: String,
    /// In words: the first bad release/commit, or the minimal set of upgrades.
    pub culprit: String,
    /// Releases/commits: (last good, first bad, skipped between). Deps: the upgrades.
    pub culprit_items: Vec<String>,
    /// Deps mode: modules whose resolved versions separate passing from failing builds
    /// (module, versions in passing builds, versions in failing builds).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub separating_modules: Vec<(String, Vec<String>, Vec<String>)>,
    pub probes: Vec<ProbeRecord>,
    pub builds: usize,
    pub wall_ms: u64,
}

#[derive(Debug, Clone)]
pub enum BisectEvent {
    /// Probe `k` of about `estimate` starts; `what` is being built and run.
    Probing { k: usize, estimate: usize, what: String },
    Probed(ProbeRecord),
}

pub trait BisectObserver: Send + Sync {
    fn on_bisect_event(&self, event: BisectEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum BisectError {
    #[error("good ({good}) and bad ({bad}) both give `{label}` for {scenario}: nothing to bisect; check the versions and the scenario")]
    NoDifference { good: String, bad: String, label: String, scenario: String },
    #[error("could not get {tool} {version} for an end of the bisection: {reason}")]
    End { tool: &'static str, version: String, reason: String },
    #[error("{tool} {good} with all of {bad}'s dependency upgrades behaves like {good} (`{label}`): the break is in {tool}'s own code, not its dependencies; bisect commits instead")]
    NotInDependencies { tool: &'static str, good: String, bad: String, label: String },
    #[error("listing {what} failed: {reason}")]
    Listing { what: String, reason: String },
}

pub struct Bisect<'a> {
    pub runner: &'a Runner,
    pub fetcher: &'a ToolFetcher,
    pub scenario: &'a Scenario,
    pub observer: &'a dyn BisectObserver,
    probes: Mutex<Vec<ProbeRecord>>,
    good_label: String,
}

impl<'a> Bisect<'a> {
    pub fn new(runner: &'a Runner, fetcher: &'a ToolFetcher, scenario: &'a Scenario, observer: &'a dyn BisectObserver) -> Bisect<'a> {
        Bisect { runner, fetcher, scenario, observer, probes: Mutex::new(Vec::new()), good_label: String::new() }
    }

    /// Runs the cell with `binary` and judges it against the good end's label.
    async fn judge(&self, what: String, upgrades: Vec<String>, estimate: usize, binary: Result<(ToolBinary, Vec<String>), String>) -> (Verdict, String) {
        let k = self.probes.lock().expect("probes lock").len() + 1;
        self.observer.on_bisect_event(BisectEvent::Probing { k, estimate, what: what.clone() });
        let started = Instant::now();
        let (verdict, outcome, build_list) = match binary {
            Err(reason) => (Verdict::Skip, format!("did not build: {}", reason.lines().last().unwrap_or(&reason)), Vec::new()),
            Ok((binary, build_list)) => {
                let cell = self.runner.run_cell(&binary, self.scenario).await;
                let label = cell.label();
                // Until the good end has run there is no reference: that first run is good by definition.
                let verdict = match cell.outcome {
                    Outcome::Flaky | Outcome::InfraError | Outcome::Skipped => Verdict::Skip,
                    _ if self.good_label.is_empty() || label == self.good_label => Verdict::Good,
                    _ => Verdict::Bad,
                };
                (verdict, label, build_list)
            }
        };
        let record = ProbeRecord { k, what, upgrades, verdict, outcome: outcome.clone(), duration_ms: started.elapsed().as_millis() as u64, build_list };
        self.probes.lock().expect("probes lock").push(record.clone());
        self.observer.on_bisect_event(BisectEvent::Probed(record));
        (verdict, outcome)
    }

    async fn fetch(&self, version: &str) -> Result<(ToolBinary, Vec<String>), String> {
        self.fetcher.fetch(version).await.map(|binary| (binary, Vec::new())).map_err(|e| e.to_string())
    }

    fn tool(&self) -> &'static dyn Tool {
        self.fetcher.tool()
    }

    /// Runs the two ends and checks that they differ.
    async fn ends(&mut self, good: &str, bad: &str, good_binary: Result<(ToolBinary, Vec<String>), String>, bad_binary: Result<(ToolBinary, Vec<String>), String>, estimate: usize) -> Result<(String, String), BisectError> {
        let end = |version: &str, reason: String| BisectError::End { tool: self.tool().name(), version: version.into(), reason };
        let good_binary = good_binary.map_err(|e| end(good, e))?;
        let bad_binary = bad_binary.map_err(|e| end(bad, e))?;
        self.good_label.clear();
        let (_, good_label) = self.judge(format!("{good} (good end)"), Vec::new(), estimate, Ok(good_binary)).await;
        self.good_label = good_label.clone();
        let (verdict, bad_label) = self.judge(format!("{bad} (bad end)"), Vec::new(), estimate, Ok(bad_binary)).await;
        if verdict != Verdict::Bad {
            return Err(BisectError::NoDifference { good: good.into(), bad: bad.into(), label: good_label, scenario: self.scenario.name.clone() });
        }
        Ok((good_label, bad_label))
    }

    fn report(&self, mode: Mode, good: &str, bad: &str, labels: (String, String), culprit: String, culprit_items: Vec<String>, started: Instant) -> BisectReport {
        let probes = self.probes.lock().expect("probes lock").clone();
        let builds = probes.iter().filter(|p| !p.outcome.starts_with("did not build")).count();
        let separating_modules = if mode == Mode::Deps {
            let lists = |v: Verdict| probes.iter().filter(|p| p.verdict == v && !p.build_list.is_empty()).map(|p| p.build_list.clone()).collect::<Vec<_>>();
            deps::separating_modules(&lists(Verdict::Good), &lists(Verdict::Bad))
        } else {
            Vec::new()
        };
        BisectReport {
            tool: self.tool().name().into(),
            mode,
            scenario: self.scenario.name.clone(),
            good: good.into(),
            bad: bad.into(),
            good_outcome: labels.0,
            bad_outcome: labels.1,
            culprit,
            culprit_items,
            separating_modules,
            probes,
            builds,
            wall_ms: started.elapsed().as_millis() as u64,
        }
    }

    /// Binary search over `candidates` strictly between good and bad, fetched by `fetch`.
    pub async fn ordered(&mut self, mode: Mode, good: &str, bad: &str, candidates: Vec<String>) -> Result<BisectReport, BisectError> {
        let started = Instant::now();
        let estimate = 2 + (candidates.len() + 1).ilog2() as usize + 1;
        let (g, b) = (self.fetch(good).await, self.fetch(bad).await);
        let labels = self.ends(good, bad, g, b, estimate).await?;
        let mut all = vec![good.to_string()];
        all.extend(candidates);
        all.push(bad.to_string());
        let this = &*self;
        let bracket = search::bisect(all.len(), |i| {
            let version = all[i].clone();
            async move {
                let binary = this.fetch(&version).await;
                this.judge(version, Vec::new(), estimate, binary).await.0
            }
        })
        .await;
        let (last_good, first_bad) = (&all[bracket.last_good], &all[bracket.first_bad]);
        let skipped: Vec<String> = bracket.skipped.iter().map(|i| all[*i].clone()).collect();
        let culprit = if bracket.is_exact() {
            format!("{first_bad} is the first bad {} (the last good is {last_good})", if mode == Mode::Commits { "commit" } else { "release" })
        } else {
            format!("the break is after {last_good} and at or before {first_bad}; untestable in between: {}", skipped.join(", "))
        };
        let mut items = vec![last_good.clone(), first_bad.clone()];
        items.extend(skipped);
        Ok(self.report(mode, good, bad, labels, culprit, items, started))
    }

    /// ddmin over the dependency upgrades from good to bad, keeping the tool's code at good.
    /// It needs only the tool's Go module.
    pub async fn dependencies(&mut self, good: &str, bad: &str) -> Result<BisectReport, BisectError> {
        let started = Instant::now();
        let go = self.fetcher.go();
        let tool = self.tool();
        let listing = |what: String, e: crate::provision::ProvisionError| BisectError::Listing { what, reason: e.to_string() };
        let good_mod = go.resolve(tool.go(), good).await.map_err(|e| listing(format!("{}'s go.mod at good", tool.name()), e))?;
        let bad_mod = go.resolve(tool.go(), bad).await.map_err(|e| listing(format!("{}'s go.mod at bad", tool.name()), e))?;
        let upgrades: Vec<Upgrade> = deps::upgrades(&deps::requirements(&good_mod.go_mod), &deps::requirements(&bad_mod.go_mod));
        let estimate = 2 + 2 * upgrades.len().max(1).ilog2() as usize * 2;
        let good_version = good_mod.version.clone();
        let build = |subset: Vec<usize>| {
            let targets: Vec<String> = subset.iter().map(|i| upgrades[*i].target()).collect();
            let good_version = good_version.clone();
            async move {
                go.install_with_requirements(tool.go(), &good_version, &targets)
                    .await
                    .map(|(installed, list)| (ToolBinary::from_installed(tool, good_version, installed), list))
                    .map_err(|e| e.to_string())
            }
        };
        let all: Vec<usize> = (0..upgrades.len()).collect();
        let (none_built, all_built) = (build(Vec::new()).await, build(all.clone()).await);
        let labels = match self.ends(&format!("{good} (as built here)"), &format!("{good} + all {} upgrades", upgrades.len()), none_built, all_built, estimate).await {
            Err(BisectError::NoDifference { label, .. }) => return Err(BisectError::NotInDependencies { tool: tool.name(), good: good.into(), bad: bad.into(), label }),
            other => other?,
        };
        let this = &*self;
        let build = &build;
        let culprit_indices = search::ddmin(upgrades.len(), |subset| {
            let names: Vec<String> = subset.iter().map(|i| format!("{}@{}", upgrades[*i].module, upgrades[*i].to)).collect();
            let what = format!("{good} + {}", upgrade_set(&names));
            let binary = build(subset);
            async move { this.judge(what, names, estimate, binary.await).await.0 }
        })
        .await;
        let items: Vec<String> = culprit_indices.iter().map(|i| upgrades[*i].to_string()).collect();
        let culprit = format!("{} of the {} dependency upgrades from {good} to {bad} break the cell: {}", items.len(), upgrades.len(), items.join("; "));
        Ok(self.report(Mode::Deps, good, bad, labels, culprit, items, started))
    }
}

/// A probe's set of upgrades for a line of output: named when there are a few, counted (with
/// the first) when there are many; the whole set goes into bisect.json.
fn upgrade_set(names: &[String]) -> String {
    match names {
        [] => "no upgrades".into(),
        [first, ..] if names.len() > 3 => format!("{} upgrades (first: {first})", names.len()),
        _ => format!("{{{}}}", names.join(", ")),
    }
}

/// `tool`'s releases strictly between `good` and `bad`: `explicit` if given, else its release list.
pub async fn releases_between(tool: &dyn Tool, good: &str, bad: &str, explicit: Option<Vec<String>>) -> Result<Vec<String>, BisectError> {
    let parse = |v: &str| semver::Version::parse(v.trim_start_matches('v')).ok();
    let (g, b) = (parse(good), parse(bad));
    let between = |v: &semver::Version| g.as_ref().is_some_and(|g| v > g) && b.as_ref().is_some_and(|b| v < b);
    let versions: Vec<semver::Version> = match explicit {
        Some(list) => list.iter().filter_map(|v| parse(v)).collect(),
        None => {
            let go = crate::provision::Go::find(&format!("the {} release list", tool.name())).await.ok();
            ReleaseIndex::fetch(tool, go.as_ref()).await.map_err(|e| BisectError::Listing { what: format!("{} releases", tool.name()), reason: e.to_string() })?.versions
        }
    };
    let mut out: Vec<semver::Version> = versions.into_iter().filter(|v| between(v)).collect();
    out.sort();
    out.dedup();
    Ok(out.iter().map(|v| format!("v{v}")).collect())
}

/// Commits after `good` up to and excluding `bad`, oldest first, from a local clone.
pub fn commits_between(repo: &Path, good: &str, bad: &str) -> Result<Vec<String>, BisectError> {
    let out = std::process::Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["rev-list", "--reverse", "--first-parent", &format!("{good}..{bad}")])
        .output()
        .map_err(|e| BisectError::Listing { what: format!("commits in {}", repo.display()), reason: e.to_string() })?;
    if !out.status.success() {
        return Err(BisectError::Listing { what: format!("commits {good}..{bad} in {}", repo.display()), reason: String::from_utf8_lossy(&out.stderr).trim().to_string() });
    }
    let mut commits: Vec<String> = String::from_utf8_lossy(&out.stdout).lines().map(|c| c[..12.min(c.len())].to_string()).collect();
    commits.pop(); // `bad` itself is the bad end.
    Ok(commits)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commits_are_listed_oldest_first_without_the_ends() {
        let repo = tempfile::tempdir().unwrap();
        let git = |args: &[&str]| {
            let out = std::process::Command::new("git").arg("-C").arg(repo.path()).args(args).env("GIT_AUTHOR_NAME", "t").env("GIT_AUTHOR_EMAIL", "t@t").env("GIT_COMMITTER_NAME", "t").env("GIT_COMMITTER_EMAIL", "t@t").output().unwrap();
            assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).trim().to_string()
        };
        git(&["init", "-q"]);
        let mut ids = Vec::new();
        for i in 0..5 {
            git(&["commit", "-q", "--allow-empty", "-m", &format!("c{i}")]);
            ids.push(git(&["rev-parse", "HEAD"]));
            if i == 0 {
                git(&["tag", "v1.0.0"]);
            }
        }
        git(&["tag", "v1.1.0"]);
        let between = commits_between(repo.path(), "v1.0.0", "v1.1.0").unwrap();
        assert_eq!(between, ids[1..4].iter().map(|c| c[..12].to_string()).collect::<Vec<_>>());
        let err = commits_between(repo.path(), "v9", "v1.1.0").unwrap_err().to_string();
        assert!(err.contains("commits v9..v1.1.0"), "{err}");
    }

    #[test]
    fn many_upgrades_are_counted_not_listed() {
        let names: Vec<String> = (1..=30).map(|i| format!("example.com/m{i}@v1.{i}.0")).collect();
        assert_eq!(upgrade_set(&names), "30 upgrades (first: example.com/m1@v1.1.0)");
        assert_eq!(upgrade_set(&names[..2]), "{example.com/m1@v1.1.0, example.com/m2@v1.2.0}");
        assert_eq!(upgrade_set(&[]), "no upgrades");
    }

    #[tokio::test]
    async fn explicit_release_candidates_are_filtered_and_ordered() {
        let list = vec!["v0.15.3".into(), "v0.15.0".into(), "0.15.2".into(), "v0.14.1".into(), "v0.16.0".into(), "junk".into()];
        assert_eq!(releases_between(crate::tool::shorthand(), "v0.14.1", "v0.16.0", Some(list)).await.unwrap(), ["v0.15.0", "v0.15.2", "v0.15.3"]);
    }
}
