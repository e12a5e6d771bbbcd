//! The published compatibility table: a static site built from any number of matrix.json
//! files (nightly results over time, shards merged or not). Pure: [`History`] joins the
//! nights and computes each release's latest verdicts, each scenario's first bad and first
//! fixed release and each cell's history; [`pages`] and [`svg`] render them. No server, no
//! framework, nothing fetched: every page works from `file://`.

pub mod pages;
pub mod svg;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::outcome::Outcome;
use crate::report::flaky;
use crate::report::regressions::{self, Analysis, Mark, Transition};
use crate::report::{version_order, MatrixReport, ReportError, VersionInfo};
use crate::result::{cell_id, CellResult};

#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    #[error(transparent)]
    Report(#[from] ReportError),
    #[error(
        "no matrix.json given: expected DIR/*.json or DIR/*/matrix.json files written by `ko-matrix run` or `merge`"
    )]
    Empty,
    #[error("{}: cannot join it with the other shards of its night ({}): {why}", path.display(), others.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "))]
    Shards { path: PathBuf, others: Vec<PathBuf>, why: String },
    #[error("{0}")]
    Nights(String),
    #[error("{}: not a ko-matrix bisect.json: {message}", path.display())]
    Bisect { path: PathBuf, message: String },
}

/// One night: a run's matrix, its shards merged.
#[derive(Debug)]
pub struct Night {
    /// `2026-12-01`, or the full `started` where two nights share a day.
    pub name: String,
    /// The files it came from.
    pub sources: Vec<PathBuf>,
    pub report: MatrixReport,
}

/// What a bisection found, as its bisect.json says (the fields a page shows).
#[derive(Debug, Clone, Deserialize)]
pub struct Bisection {
    pub tool: String,
    pub scenario: String,
    pub good: String,
    pub bad: String,
    pub culprit: String,
    #[serde(default)]
    pub probes: Vec<Probe>,
    #[serde(default)]
    pub narrowing: Option<Narrowing>,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Probe {
    pub what: String,
    pub outcome: String,
}

#[derive(Debug, Clone, Deserialize)]
pub struct Narrowing {
    pub chain: String,
}

impl Bisection {
    pub fn read(path: &Path) -> Result<Bisection, PublishError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text)
            .map_err(|e| PublishError::Bisect { path: path.to_path_buf(), message: e.to_string() })
    }
}

/// Where a scenario broke and where it was fixed, along a tool's releases.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Milestones {
    /// The first release that failed after one that passed; or, when the oldest release with
    /// a verdict already failed, that one (`bad_from_oldest`).
    pub first_bad: Option<String>,
    pub bad_from_oldest: bool,
    /// The first release after `first_bad` that passes again.
    pub first_fixed: Option<String>,
    /// It failed in every release that reached a verdict: an expected failure, or a setup no
    /// release supports; nothing broke.
    pub never_passed: bool,
}

/// Every night, oldest first, and what they say together.
pub struct History {
    pub nights: Vec<Night>,
    /// Every cell ever run, as its newest night gave it: the table the site shows.
    pub latest: MatrixReport,
    /// The version axis of `latest`: marks and transitions.
    pub analysis: Analysis,
    /// Cell id → (night index, the cell as that night gave it), oldest first.
    runs: BTreeMap<String, Vec<(usize, CellResult)>>,
    /// Cell id → its index in `latest.cells`.
    index: BTreeMap<String, usize>,
    pub bisections: Vec<Bisection>,
}

impl History {
    /// Joins `files` (path and matrix) into nights: a matrix without `shard` is a night; the
    /// shards of one run (one day, one shard count, each index once) are merged into one.
    pub fn new(files: Vec<(PathBuf, MatrixReport)>, bisections: Vec<Bisection>) -> Result<History, PublishError> {
        if files.is_empty() {
            return Err(PublishError::Empty);
        }
        let mut groups: Vec<Vec<(PathBuf, MatrixReport)>> = Vec::new();
        for (path, report) in files {
            let shard = shard_of(&report);
            let day = |r: &MatrixReport| r.started.get(..10).unwrap_or(&r.started).to_string();
            let fits = |group: &Vec<(PathBuf, MatrixReport)>| {
                let Some(shard) = &shard else { return false };
                group.iter().all(|(_, other)| {
                    shard_of(other).is_some_and(|(index, count)| count == shard.1 && index != shard.0)
                        && day(other) == day(&report)
                })
            };
            match groups.iter_mut().find(|g| fits(g)) {
                Some(group) => group.push((path, report)),
                None => groups.push(vec![(path, report)]),
            }
        }
        let mut joined: Vec<(Vec<PathBuf>, MatrixReport)> = Vec::new();
        for mut group in groups {
            if group.len() == 1 {
                let (path, report) = group.pop().expect("one");
                joined.push((vec![path], report));
                continue;
            }
            let paths: Vec<PathBuf> = group.iter().map(|(p, _)| p.clone()).collect();
            let parts: Vec<MatrixReport> = group.into_iter().map(|(_, r)| r).collect();
            let merged = crate::report::merge(&parts).map_err(|e| PublishError::Shards {
                path: paths[0].clone(),
                others: paths[1..].to_vec(),
                why: e.to_string(),
            })?;
            joined.push((paths, merged));
        }
        let given: Vec<(&Path, &MatrixReport)> = joined.iter().map(|(p, r)| (p[0].as_path(), r)).collect();
        let ordered: Vec<(String, String)> = flaky::nights(&given)
            .map_err(PublishError::Nights)?
            .into_iter()
            .map(|n| (n.name, n.report.started.clone()))
            .collect();
        let mut nights: Vec<Night> = Vec::new();
        for (name, started) in ordered {
            let at = joined.iter().position(|(_, r)| r.started == started).expect("every night is one of those given");
            let (sources, report) = joined.remove(at);
            nights.push(Night { name, sources, report });
        }
        Ok(History::of_nights(nights, bisections))
    }

    fn of_nights(nights: Vec<Night>, bisections: Vec<Bisection>) -> History {
        let mut runs: BTreeMap<String, Vec<(usize, CellResult)>> = BTreeMap::new();
        let mut versions: Vec<VersionInfo> = Vec::new();
        let mut tools: Vec<String> = Vec::new();
        let mut selected: Vec<String> = Vec::new();
        for (i, night) in nights.iter().enumerate() {
            for cell in &night.report.cells {
                runs.entry(cell.id()).or_default().push((i, cell.clone()));
            }
            for v in &night.report.versions {
                versions.retain(|o| !(o.tool == v.tool && o.version == v.version));
                versions.push(v.clone());
            }
            for tool in night.report.tools() {
                if !tools.iter().any(|t| t == tool) {
                    tools.push(tool.to_string());
                }
            }
            for s in &night.report.selected_scenarios {
                if !selected.contains(s) {
                    selected.push(s.clone());
                }
            }
        }
        let newest = &nights.last().expect("at least one night").report;
        let tool_order = |tool: &str| tools.iter().position(|t| t == tool);
        versions.sort_by_key(|v| (tool_order(&v.tool), version_order(&v.version)));
        let mut cells: Vec<CellResult> = runs.values().map(|r| r.last().expect("a run").1.clone()).collect();
        cells.sort_by(|a, b| {
            let key = |c: &CellResult| (tool_order(&c.tool), c.scenario.clone(), version_order(&c.version));
            key(a).cmp(&key(b))
        });
        let latest = MatrixReport {
            versions,
            selected_scenarios: selected,
            tool_scenarios: BTreeMap::new(),
            shard: None,
            cells,
            interrupted: false,
            ..newest.clone()
        };
        let index = latest.cells.iter().enumerate().map(|(i, c)| (c.id(), i)).collect();
        let analysis = regressions::analyse(&latest, None);
        History { nights, latest, analysis, runs, index, bisections }
    }

    /// The newest result of a cell.
    pub fn cell(&self, tool: &str, version: &str, scenario: &str) -> Option<&CellResult> {
        self.index.get(&cell_id(tool, version, scenario)).map(|i| &self.latest.cells[*i])
    }

    /// Every night that ran the cell, oldest first, with the cell as it gave it.
    pub fn runs(&self, id: &str) -> &[(usize, CellResult)] {
        self.runs.get(id).map_or(&[], Vec::as_slice)
    }

    /// The tools, in the newest night's order, then older ones'.
    pub fn tools(&self) -> Vec<&str> {
        self.latest.tools()
    }

    /// `tool`'s releases along its version axis.
    pub fn versions(&self, tool: &str) -> Vec<String> {
        regressions::version_axis(&self.latest, tool)
    }

    /// `tool`'s scenarios, by family, then name.
    pub fn scenarios(&self, tool: &str) -> Vec<&str> {
        let mut names = self.latest.scenarios_of(tool);
        names.sort();
        names
    }

    /// The transitions into `version` of `tool`: what changed against the release before.
    pub fn changes_into(&self, tool: &str, version: &str) -> Vec<&Transition> {
        self.analysis.transitions.iter().filter(|t| t.tool == tool && t.to_version == version).collect()
    }

    pub fn mark(&self, cell: &CellResult) -> Mark {
        self.analysis.mark(cell)
    }

    /// Where `scenario` broke and was fixed along `tool`'s releases.
    pub fn milestones(&self, tool: &str, scenario: &str) -> Milestones {
        let transitions: Vec<&Transition> =
            self.analysis.transitions.iter().filter(|t| t.tool == tool && t.scenario == scenario).collect();
        let verdicts: Vec<&CellResult> = self
            .versions(tool)
            .iter()
            .filter_map(|v| self.cell(tool, v, scenario))
            .filter(|c| matches!(c.outcome, Outcome::Pass | Outcome::Fail))
            .collect();
        let oldest = verdicts.first().map(|c| (*c).clone());
        let mut found = Milestones {
            never_passed: !verdicts.is_empty() && verdicts.iter().all(|c| c.outcome == Outcome::Fail),
            ..Milestones::default()
        };
        if let Some(oldest) = oldest.filter(|c| c.outcome == Outcome::Fail) {
            found.first_bad = Some(oldest.version);
            found.bad_from_oldest = true;
        }
        for t in transitions {
            match t.mark {
                Mark::Regression if found.first_bad.is_none() => found.first_bad = Some(t.to_version.clone()),
                Mark::Fix if found.first_bad.is_some() && found.first_fixed.is_none() => {
                    found.first_fixed = Some(t.to_version.clone())
                }
                _ => {}
            }
        }
        found
    }

    /// Per night, how many cells gave a different label than the last night that ran them
    /// (the first night: none).
    pub fn changed_per_night(&self) -> Vec<(String, usize)> {
        let mut counts = vec![0; self.nights.len()];
        for runs in self.runs.values() {
            for pair in runs.windows(2) {
                if pair[0].1.label() != pair[1].1.label() {
                    counts[pair[1].0] += 1;
                }
            }
        }
        self.nights.iter().map(|n| n.name.clone()).zip(counts).collect()
    }

    /// The bisections of a regression into `version` of `tool` in `scenario`.
    pub fn bisections_of(&self, t: &Transition) -> Vec<&Bisection> {
        self.bisections
            .iter()
            .filter(|b| b.tool == t.tool && b.scenario == t.scenario && b.bad == t.to_version)
            .collect()
    }
}

/// A shard's `i/n` as (index, count).
fn shard_of(report: &MatrixReport) -> Option<(u32, u32)> {
    let (index, count) = report.shard.as_deref()?.split_once('/')?;
    Some((index.parse().ok()?, count.parse().ok()?))
}

/// A file of the site: its path under the site's root, and what it holds.
pub struct SiteFile {
    pub path: String,
    pub content: Vec<u8>,
}

/// Where a log of the newest night can be found: its recorded path, else a file of that
/// name in one of `dirs` (logs travel in artifacts, away from where they were written).
pub fn find_log(recorded: &Path, dirs: &[PathBuf]) -> Option<PathBuf> {
    if recorded.is_file() {
        return Some(recorded.to_path_buf());
    }
    let name = recorded.file_name()?;
    dirs.iter().map(|d| d.join(name)).find(|p| p.is_file())
}

/// Builds every page, chart and badge; `log_for` gives a cell's log file contents, when the
/// site should carry it.
pub fn site(history: &History, log_for: impl Fn(&CellResult) -> Option<Vec<u8>>) -> Vec<SiteFile> {
    pages::all(history, log_for)
}

/// A path segment from a name: letters, digits, `.`, `_` and `-` kept, anything else `_`, so
/// a page's URL follows from its cell's name and is stable.
pub fn segment(name: &str) -> String {
    let cleaned: String =
        name.chars().map(|c| if c.is_ascii_alphanumeric() || "._-".contains(c) { c } else { '_' }).collect();
    if cleaned.chars().all(|c| c == '.') {
        cleaned.replace('.', "_")
    } else {
        cleaned
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;
    use crate::report::tests::{cell, report_of};

    fn night(started: &str, cells: Vec<CellResult>) -> (PathBuf, MatrixReport) {
        (PathBuf::from(format!("{started}.json")), MatrixReport { started: started.into(), ..report_of(cells) })
    }

    fn fail(scenario: &str, version: &str) -> CellResult {
        cell(scenario, version, Outcome::Fail, Some(FailClass::Unauthorized))
    }

    fn pass(scenario: &str, version: &str) -> CellResult {
        cell(scenario, version, Outcome::Pass, None)
    }

    #[test]
    fn first_bad_and_first_fixed_come_from_every_nights_newest_verdicts() {
        let env = "ecr/env-session";
        let history = History::new(
            vec![
                // Given out of order. Night 2 adds v0.15.3 (the fix); night 3 adds v0.16.0 and a
                // scenario that fails from the oldest release on.
                night("2026-12-02T03:00:00Z", vec![fail(env, "v0.15.2"), pass(env, "v0.15.3")]),
                night(
                    "2026-12-01T03:00:00Z",
                    vec![
                        pass(env, "v0.15.1"),
                        fail(env, "v0.15.2"),
                        fail("registry/podman", "v0.15.1"),
                        pass("registry/podman", "v0.15.2"),
                    ],
                ),
                night("2026-12-03T03:00:00Z", vec![fail("registry/anonymous", "v0.15.1"), pass(env, "v0.16.0")]),
            ],
            Vec::new(),
        )
        .unwrap();
        let names: Vec<&str> = history.nights.iter().map(|n| n.name.as_str()).collect();
        assert_eq!(names, ["2026-12-01", "2026-12-02", "2026-12-03"]);
        let ms = history.milestones("ko", env);
        assert_eq!(
            ms,
            Milestones {
                first_bad: Some("v0.15.2".into()),
                bad_from_oldest: false,
                first_fixed: Some("v0.15.3".into()),
                never_passed: false,
            }
        );
        assert_eq!(history.versions("ko"), ["v0.15.1", "v0.15.2", "v0.15.3", "v0.16.0"]);
        // Failing in the oldest release: bad from the start, never fixed.
        let anonymous = history.milestones("ko", "registry/anonymous");
        assert_eq!((anonymous.first_bad.as_deref(), anonymous.bad_from_oldest), (Some("v0.15.1"), true));
        assert_eq!(anonymous.first_fixed, None);
        assert!(anonymous.never_passed);
        // Failing in the oldest release, then passing: bad from the start, fixed.
        let podman = history.milestones("ko", "registry/podman");
        assert_eq!((podman.first_bad.as_deref(), podman.first_fixed.as_deref()), (Some("v0.15.1"), Some("v0.15.2")));
        assert!(podman.bad_from_oldest && !podman.never_passed);
        assert_eq!(history.changed_per_night().iter().map(|(_, n)| *n).collect::<Vec<_>>(), [0, 0, 0]);
    }

    #[test]
    fn a_second_regression_does_not_move_first_bad_and_a_changed_cell_is_counted_on_its_night() {
        let s = "registry/basic-auths";
        let history = History::new(
            vec![
                night("2026-12-01T03:00:00Z", vec![pass(s, "v1.0.0"), fail(s, "v1.1.0"), pass(s, "v1.2.0")]),
                night("2026-12-02T03:00:00Z", vec![fail(s, "v1.3.0"), fail(s, "v1.2.0")]),
            ],
            Vec::new(),
        )
        .unwrap();
        let ms = history.milestones("ko", s);
        assert_eq!((ms.first_bad.as_deref(), ms.first_fixed.as_deref()), (Some("v1.1.0"), None));
        assert_eq!(history.changed_per_night()[1], ("2026-12-02".to_string(), 1), "v1.2.0 went pass → fail");
        assert_eq!(history.runs("ko@v1.2.0::registry/basic-auths").len(), 2);
        assert_eq!(history.cell("ko", "v1.2.0", s).unwrap().outcome, Outcome::Fail, "the newest night wins");
    }

    #[test]
    fn the_shards_of_a_night_merge_and_the_same_run_twice_is_refused() {
        let shard = |i: &str, started: &str, cells| {
            let (path, report) = night(started, cells);
            (path.with_file_name(format!("shard-{i}.json")), MatrixReport { shard: Some(format!("{i}/2")), ..report })
        };
        let history = History::new(
            vec![
                shard("1", "2026-12-01T03:00:00Z", vec![pass("a/b", "v1")]),
                shard("2", "2026-12-01T03:05:00Z", vec![fail("a/c", "v1")]),
                night("2026-12-02T03:00:00Z", vec![pass("a/b", "v1")]),
            ],
            Vec::new(),
        )
        .unwrap();
        assert_eq!(history.nights.len(), 2);
        assert_eq!(history.nights[0].report.cells.len(), 2);
        assert_eq!(history.nights[0].sources.len(), 2);
        let twice = History::new(
            vec![night("2026-12-01T03:00:00Z", vec![pass("a/b", "v1")]), night("2026-12-01T03:00:00Z", vec![])],
            Vec::new(),
        )
        .err()
        .unwrap()
        .to_string();
        assert!(twice.contains("are the same run"), "{twice}");
        assert!(matches!(History::new(Vec::new(), Vec::new()), Err(PublishError::Empty)));
    }

    #[test]
    fn segments_are_stable_and_safe() {
        assert_eq!(segment("v0.15.2"), "v0.15.2");
        assert_eq!(segment("env session/../x"), "env_session_.._x");
        assert_eq!(segment(".."), "__");
    }
}
