//! Reports: matrix.json (the machine-readable contract), the terminal table, matrix.md,
//! report.html and junit.xml; diffing and merging matrices. Reporters only render
//! results; they never run anything.

pub mod flaky;
pub mod history;
pub mod html;
pub mod junit;
pub mod markdown;
pub mod publish;
pub mod regressions;
pub mod timings;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::outcome::Outcome;
pub use crate::result::{cell_id, family, CellResult, Verb};
use crate::timings::{Clock, Timings};
use crate::tool::ToolBinary;

/// A tool version as the run used it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(default = "crate::result::shorthand_tool")]
    pub tool: String,
    pub version: String,
    pub route: String,
    pub sha256: String,
}

/// `matrix.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct MatrixReport {
    pub ko_matrix_version: String,
    pub started: String,
    /// How services ran: `process` or `docker`.
    pub runtime: String,
    /// How the run's cells were kept from the network: `user+network namespace` (services and
    /// cells in a namespace with only loopback), or `proxy-only (<why>)` (only the proxy
    /// variables); see [`crate::containment`]. `not recorded` in files from before.
    #[serde(default = "not_recorded")]
    pub containment: String,
    /// Which leak check the cells had (see [`crate::leak_check`]): `minted keys (embedded AWS
    /// emulator)`, `host key ids (LocalStack accepts any key; <n> known)`, `off (<why>)`, or
    /// `any AWS key (no ECR scenario: …)`. `not recorded` in files from before.
    #[serde(default = "not_recorded")]
    pub leak_check: String,
    /// Each tool's versions, tools in matrix.toml's order, versions oldest first.
    pub versions: Vec<VersionInfo>,
    /// The scenarios the run selected: with `versions`, the cells it set out to run (a shard
    /// runs its slice of them, a tool may select fewer), so a check can tell a missing cell
    /// from an unselected one.
    #[serde(default)]
    pub selected_scenarios: Vec<String>,
    /// Tool → its scenarios, for a tool whose `scenarios` narrowed the run's selection.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub tool_scenarios: BTreeMap<String, Vec<String>>,
    /// `i/n` when the run was one shard of n.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<String>,
    pub cells: Vec<CellResult>,
    /// The run was stopped (Ctrl-C, SIGTERM) before every cell ran; `cells` holds those that finished.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub interrupted: bool,
    /// Where the run's time went (see [`crate::timings`]); every run records it, merged shards
    /// and files from before do not have it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timings: Option<Timings>,
}

fn not_recorded() -> String {
    NOT_RECORDED.into()
}

/// [`MatrixReport::containment`] or [`MatrixReport::leak_check`] of a file from before it was
/// recorded, or of a report whose caller did not say.
pub const NOT_RECORDED: &str = "not recorded";

/// One tool's cells of one verb: a table of the terminal's, matrix.md's and report.html's.
pub(crate) struct Group<'a> {
    pub tool: &'a str,
    pub verb: Verb,
    /// Its scenarios, in report order.
    pub scenarios: Vec<&'a str>,
}

impl Group<'_> {
    /// `crane` for its pushes, `crane · copy` for its copies.
    pub fn title(&self) -> String {
        match self.verb {
            Verb::Push => self.tool.to_string(),
            verb => format!("{} · {}", self.tool, verb.as_str()),
        }
    }

    /// An HTML id's word for it: `crane`, `crane-copy`.
    pub fn slug(&self) -> String {
        match self.verb {
            Verb::Push => self.tool.to_string(),
            verb => format!("{}-{}", self.tool, verb.as_str()),
        }
    }
}

/// Committed snapshots (`results/<tool>/<family>.snap`): each recorded cell's label.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Snapshots(BTreeMap<(String, String, String), String>);

impl Snapshots {
    /// The label recorded for a cell, if any.
    pub fn label(&self, tool: &str, version: &str, scenario: &str) -> Option<&str> {
        self.0.get(&(tool.to_string(), version.to_string(), scenario.to_string())).map(String::as_str)
    }

    pub fn insert(&mut self, tool: &str, version: &str, scenario: &str, label: String) {
        self.0.insert((tool.to_string(), version.to_string(), scenario.to_string()), label);
    }

    /// Whether any cell of `tool` at `version` is recorded.
    pub(crate) fn has_version(&self, tool: &str, version: &str) -> bool {
        self.0.keys().any(|(t, v, _)| t == tool && v == version)
    }

    /// Every recorded cell: (tool, version, scenario) and its label.
    pub fn cells(&self) -> impl Iterator<Item = (&str, &str, &str, &str)> {
        self.0.iter().map(|((t, v, s), l)| (t.as_str(), v.as_str(), s.as_str(), l.as_str()))
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

impl MatrixReport {
    pub fn new(
        started: String,
        runtime: &str,
        versions: &[ToolBinary],
        selected_scenarios: Vec<String>,
        cells: Vec<CellResult>,
    ) -> MatrixReport {
        MatrixReport {
            ko_matrix_version: env!("CARGO_PKG_VERSION").into(),
            started,
            runtime: runtime.into(),
            containment: not_recorded(),
            leak_check: not_recorded(),
            versions: versions
                .iter()
                .map(|b| VersionInfo {
                    tool: b.tool.name().into(),
                    version: b.version.clone(),
                    route: b.route.clone(),
                    sha256: b.sha256.clone(),
                })
                .collect(),
            selected_scenarios,
            tool_scenarios: BTreeMap::new(),
            shard: None,
            cells,
            interrupted: false,
            timings: None,
        }
    }

    /// Whether the run set out to run `tool` on `scenario`.
    pub fn selected(&self, tool: &str, scenario: &str) -> bool {
        match self.tool_scenarios.get(tool) {
            Some(names) => names.iter().any(|s| s == scenario),
            None => self.selected_scenarios.iter().any(|s| s == scenario),
        }
    }

    /// Cells the run selected (every tool version × its scenarios) that it has no result for:
    /// a shard's slice of them, when the run was a shard.
    pub fn absent_cells(&self) -> Vec<String> {
        let mut absent = Vec::new();
        for v in &self.versions {
            let scenarios = self.tool_scenarios.get(&v.tool).unwrap_or(&self.selected_scenarios);
            for scenario in scenarios {
                if self.cell(&v.tool, &v.version, scenario).is_none() {
                    absent.push(cell_id(&v.tool, &v.version, scenario));
                }
            }
        }
        absent
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.cells.iter().filter(|c| c.outcome == outcome).count()
    }

    /// `39 cells: 16 pass, 23 fail, 0 flaky, 0 infra-error` (`, N skipped` after fail when some were).
    pub fn summary(&self) -> String {
        let interrupted = if self.interrupted { " (interrupted before every cell ran)" } else { "" };
        // Cells that did not run are counted apart, so the counts always add up to the cells.
        let skipped = match self.count(Outcome::Skipped) {
            0 => String::new(),
            n => format!(", {n} skipped"),
        };
        format!(
            "{} cells: {} pass, {} fail{skipped}, {} flaky, {} infra-error{interrupted}",
            self.cells.len(),
            self.count(Outcome::Pass),
            self.count(Outcome::Fail),
            self.count(Outcome::Flaky),
            self.count(Outcome::InfraError)
        )
    }

    /// The tools, in the run's order.
    pub fn tools(&self) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for name in self.versions.iter().map(|v| &v.tool).chain(self.cells.iter().map(|c| &c.tool)) {
            if !out.contains(&name.as_str()) {
                out.push(name);
            }
        }
        out
    }

    /// `tool`'s versions, in the run's order.
    pub(crate) fn versions_of(&self, tool: &str) -> Vec<&str> {
        self.versions.iter().filter(|v| v.tool == tool).map(|v| v.version.as_str()).collect()
    }

    /// The cells as the reports show them: per tool, its pushes, then its copies (a group per
    /// verb it has cells of; a tool without cells, one empty group).
    pub(crate) fn groups(&self) -> Vec<Group<'_>> {
        let mut groups = Vec::new();
        for tool in self.tools() {
            let scenarios = self.scenarios_of(tool);
            let verb_of = |scenario: &str| {
                self.cells.iter().find(|c| c.tool == tool && c.scenario == scenario).map_or(Verb::Push, |c| c.verb)
            };
            let before = groups.len();
            for verb in [Verb::Push, Verb::Copy] {
                let of_verb: Vec<&str> = scenarios.iter().copied().filter(|s| verb_of(s) == verb).collect();
                if !of_verb.is_empty() {
                    groups.push(Group { tool, verb, scenarios: of_verb });
                }
            }
            if groups.len() == before {
                groups.push(Group { tool, verb: Verb::Push, scenarios: Vec::new() });
            }
        }
        groups
    }

    /// `tool`'s versions in the run's order, consecutive ones whose every cell has the same
    /// label joined into one run: the tables show a column per run, so dozens of releases
    /// read as the few that changed something.
    pub(crate) fn version_runs(&self, tool: &str) -> Vec<VersionRun<'_>> {
        let labels: std::collections::HashMap<(&str, &str), String> = self
            .cells
            .iter()
            .filter(|c| c.tool == tool)
            .map(|c| ((c.version.as_str(), c.scenario.as_str()), c.label()))
            .collect();
        let scenarios = self.scenarios_of(tool);
        let column =
            |v: &&str| -> Vec<Option<String>> { scenarios.iter().map(|s| labels.get(&(*v, *s)).cloned()).collect() };
        runs_alike(self.versions_of(tool), column).into_iter().map(|versions| VersionRun { versions }).collect()
    }

    /// Scenario names of `tool`'s cells, in report order, once each.
    pub(crate) fn scenarios_of(&self, tool: &str) -> Vec<&str> {
        let mut out: Vec<&str> = Vec::new();
        for cell in self.cells.iter().filter(|c| c.tool == tool) {
            if !out.contains(&cell.scenario.as_str()) {
                out.push(&cell.scenario);
            }
        }
        out
    }

    pub fn cell(&self, tool: &str, version: &str, scenario: &str) -> Option<&CellResult> {
        self.cells.iter().find(|c| c.tool == tool && c.scenario == scenario && c.version == version)
    }

    pub fn read(path: &Path) -> Result<MatrixReport, ReportError> {
        let text =
            std::fs::read_to_string(path).map_err(|source| ReportError::Io { path: path.to_path_buf(), source })?;
        serde_json::from_str(&text).map_err(|e| ReportError::Parse {
            path: path.to_path_buf(),
            line: e.line(),
            column: e.column(),
            message: e.to_string(),
        })
    }

    /// Writes `matrix.json`, `matrix.md`, `report.html` and `junit.xml` into `dir`, each
    /// atomically (a temp file renamed into place). `baseline` (the committed snapshots)
    /// decides which JUnit testcases fail. Returns the matrix.json path.
    pub fn write_all(&self, dir: &Path, baseline: Option<&Snapshots>) -> Result<PathBuf, ReportError> {
        self.write_rendered(dir, baseline)?;
        self.write_json(dir)
    }

    /// [`MatrixReport::write_all`] for a run: the other reports first, then matrix.json with
    /// the time they took as the `reports` phase of its timings, on the run's `clock`.
    pub fn write_run(
        &mut self,
        dir: &Path,
        baseline: Option<&Snapshots>,
        clock: &Clock,
    ) -> Result<PathBuf, ReportError> {
        let start = clock.now_ms();
        self.write_rendered(dir, baseline)?;
        self.timings.get_or_insert_with(Timings::default).reports = Some(clock.since(start));
        self.write_json(dir)
    }

    fn write_json(&self, dir: &Path) -> Result<PathBuf, ReportError> {
        let path = dir.join("matrix.json");
        write_atomic(&path, &serde_json::to_string_pretty(self).expect("a report serialises"))?;
        Ok(path)
    }

    /// matrix.md, report.html and junit.xml.
    fn write_rendered(&self, dir: &Path, baseline: Option<&Snapshots>) -> Result<(), ReportError> {
        let analysis = crate::report::regressions::analyse(self, baseline);
        let rendered = [
            ("matrix.md", markdown::render(self, &analysis)),
            ("report.html", html::render(self, &analysis)),
            ("junit.xml", junit::render(self, &analysis, baseline)),
        ];
        for (name, text) in rendered {
            write_atomic(&dir.join(name), &text)?;
        }
        Ok(())
    }
}

/// A run-wide fact of the shards (their containment, their leak check): theirs when they
/// agree, else each distinct one, `mixed: a; b`.
fn merged_fact(parts: &[MatrixReport], fact: impl Fn(&MatrixReport) -> &str) -> String {
    let mut distinct: Vec<&str> = Vec::new();
    for part in parts {
        if !distinct.contains(&fact(part)) {
            distinct.push(fact(part));
        }
    }
    match distinct.as_slice() {
        [one] => one.to_string(),
        many => format!("mixed: {}", many.join("; ")),
    }
}

fn write_atomic(path: &Path, text: &str) -> Result<(), ReportError> {
    let io = |source| ReportError::Io { path: path.to_path_buf(), source };
    let dir = path.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let mut file = tempfile::NamedTempFile::new_in(dir).map_err(io)?;
    std::io::Write::write_all(&mut file, text.as_bytes()).map_err(io)?;
    file.persist(path).map_err(|e| io(e.error))?;
    Ok(())
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error("{}: {source}", path.display())]
    Io { path: PathBuf, source: std::io::Error },
    #[error("{}:{line}:{column}: not a ko-matrix matrix.json: {message}", path.display())]
    Parse { path: PathBuf, line: usize, column: usize, message: String },
    #[error("cannot merge: {0}")]
    Merge(String),
}

/// A cell whose label differs between two matrices.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub tool: String,
    pub version: String,
    pub scenario: String,
    /// `None`: the cell is new / gone.
    pub old: Option<String>,
    pub new: Option<String>,
}

impl std::fmt::Display for Change {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let show = |l: &Option<String>| l.clone().unwrap_or_else(|| "(absent)".into());
        write!(f, "{}: {} → {}", cell_id(&self.tool, &self.version, &self.scenario), show(&self.old), show(&self.new))
    }
}

impl Change {
    fn of(cell: &CellResult, old: Option<String>, new: Option<String>) -> Change {
        Change { tool: cell.tool.clone(), version: cell.version.clone(), scenario: cell.scenario.clone(), old, new }
    }
}

/// The cells that changed from `old` to `new`, in `new`'s order, then removed ones.
pub fn diff(old: &MatrixReport, new: &MatrixReport) -> Vec<Change> {
    let mut changes = Vec::new();
    for cell in &new.cells {
        let before = old.cell(&cell.tool, &cell.version, &cell.scenario).map(CellResult::label);
        let after = Some(cell.label());
        if before != after {
            changes.push(Change::of(cell, before, after));
        }
    }
    for cell in &old.cells {
        if new.cell(&cell.tool, &cell.version, &cell.scenario).is_none() {
            changes.push(Change::of(cell, Some(cell.label()), None));
        }
    }
    changes
}

/// Which cells `check_against` compares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CheckScope {
    /// Every cell: a version the snapshots do not know yet is pending.
    All,
    /// Only versions the snapshots record; the others are left to the version-axis check
    /// (`regressions`), as a nightly does for `latest-N` and `main`.
    SnapshottedVersions,
}

/// Compares `report` with committed snapshots: changed cells (`old` and `new` set), pending
/// ones the snapshots do not know yet (`old` is `None`), and missing ones — recorded for a
/// version and scenario the run selected, yet absent from the matrix (`new` is `None`), as
/// when a shard crashed. A flaky cell one of whose runs matches is not a change.
pub fn check_against(report: &MatrixReport, snapshots: &Snapshots, scope: CheckScope) -> Vec<Change> {
    let mut changes: Vec<Change> = report
        .cells
        .iter()
        .filter(|cell| scope == CheckScope::All || snapshots.has_version(&cell.tool, &cell.version))
        .filter_map(|cell| {
            let expected = snapshots.label(&cell.tool, &cell.version, &cell.scenario);
            let label = cell.label();
            let matches = expected.is_some_and(|e| {
                e == label || (cell.outcome == Outcome::Flaky && cell.attempts.iter().any(|a| a == e))
            });
            (!matches).then(|| Change::of(cell, expected.map(str::to_string), Some(label)))
        })
        .collect();
    let ran = |tool: &str, version: &str| report.versions.iter().any(|v| v.tool == tool && v.version == version);
    for (tool, version, scenario, label) in snapshots.cells() {
        if ran(tool, version) && report.selected(tool, scenario) && report.cell(tool, version, scenario).is_none() {
            let change = Change {
                tool: tool.into(),
                version: version.into(),
                scenario: scenario.into(),
                old: Some(label.into()),
                new: None,
            };
            changes.push(change);
        }
    }
    changes
}

/// The committed snapshots in `dir` as a baseline, or `None` when it holds none (a directory
/// made by `ko-matrix init` has no baseline yet).
pub fn read_baseline(dir: &Path) -> Result<Option<Snapshots>, ReportError> {
    if !dir.is_dir() {
        return Ok(None);
    }
    let snapshots = read_snapshots(dir)?;
    Ok((!snapshots.is_empty()).then_some(snapshots))
}

/// Where a tool's snapshots live: `results/<tool>/`.
pub fn snapshot_dir(results: &Path, tool: &str) -> PathBuf {
    results.join(tool)
}

/// Reads every `<tool>/<family>.snap` in `dir` (insta's format: a YAML header, then the
/// body), `<family>.snap` files directly in `dir` as the shorthand tool's (where they
/// lived before tools were a parameter), and the release history in `dir/history/`.
pub fn read_snapshots(dir: &Path) -> Result<Snapshots, ReportError> {
    let mut out = Snapshots::default();
    read_snapshot_files(dir, &crate::result::shorthand_tool(), &mut out)?;
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let tool = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && crate::tool::by_name(&tool).is_some() {
            read_snapshot_files(&entry.path(), &tool, &mut out)?;
        }
    }
    history::read_into(dir, &mut out)?;
    Ok(out)
}

fn read_snapshot_files(dir: &Path, tool: &str, out: &mut Snapshots) -> Result<(), ReportError> {
    let entries = std::fs::read_dir(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;
    for entry in entries.flatten() {
        let path = entry.path();
        if path.extension().is_some_and(|e| e == "snap") {
            let text =
                std::fs::read_to_string(&path).map_err(|source| ReportError::Io { path: path.clone(), source })?;
            let body = text.splitn(3, "---\n").nth(2).unwrap_or_default();
            for ((version, scenario), label) in parse_snapshot(body) {
                out.insert(tool, &version, &scenario, label);
            }
        }
    }
    Ok(())
}

/// Joins shards into one matrix. Refuses cells present in two shards and shards that ran
/// different ko-matrix versions or different binaries for one tool version.
pub fn merge(parts: &[MatrixReport]) -> Result<MatrixReport, ReportError> {
    let first = parts.first().ok_or_else(|| ReportError::Merge("no matrices given".into()))?;
    let mut merged = MatrixReport {
        cells: Vec::new(),
        versions: Vec::new(),
        selected_scenarios: Vec::new(),
        tool_scenarios: BTreeMap::new(),
        shard: None,
        interrupted: parts.iter().any(|p| p.interrupted),
        // Each shard's phases were its own machine's.
        timings: None,
        containment: merged_fact(parts, |p| &p.containment),
        leak_check: merged_fact(parts, |p| &p.leak_check),
        ..first.clone()
    };
    for (i, part) in parts.iter().enumerate() {
        if part.ko_matrix_version != first.ko_matrix_version {
            return Err(ReportError::Merge(format!(
                "shard {} ran ko-matrix {}, shard 1 ran {}",
                i + 1,
                part.ko_matrix_version,
                first.ko_matrix_version
            )));
        }
        for scenario in &part.selected_scenarios {
            if !merged.selected_scenarios.contains(scenario) {
                merged.selected_scenarios.push(scenario.clone());
            }
        }
        // A part leaves out a tool that ran all its selected scenarios: in the merge, whose
        // selection is wider when the parts ran different tools, it gets that list.
        for tool in part.tools() {
            let scenarios = part.tool_scenarios.get(tool).unwrap_or(&part.selected_scenarios);
            let names = merged.tool_scenarios.entry(tool.to_string()).or_default();
            names.extend(scenarios.iter().filter(|s| !names.contains(s)).cloned().collect::<Vec<_>>());
        }
        for v in &part.versions {
            match merged.versions.iter().find(|m| m.tool == v.tool && m.version == v.version) {
                Some(m) if m.sha256 != v.sha256 => {
                    return Err(ReportError::Merge(format!(
                        "{}@{} differs between shards (sha256 {} vs {})",
                        v.tool, v.version, m.sha256, v.sha256
                    )));
                }
                Some(_) => {}
                None => merged.versions.push(v.clone()),
            }
        }
        for cell in &part.cells {
            if merged.cell(&cell.tool, &cell.version, &cell.scenario).is_some() {
                return Err(ReportError::Merge(format!("{} appears in more than one shard", cell.id())));
            }
            merged.cells.push(cell.clone());
        }
        merged.started = merged.started.min(part.started.clone());
    }
    let tools: Vec<String> = first.tools().into_iter().map(String::from).collect();
    let tool_order = |tool: &str| tools.iter().position(|t| t == tool);
    merged.versions.sort_by_key(|a| (tool_order(&a.tool), version_order(&a.version)));
    merged.cells.sort_by(|a, b| {
        let key = |c: &CellResult| (tool_order(&c.tool), c.scenario.clone(), version_order(&c.version));
        key(a).cmp(&key(b))
    });
    Ok(merged)
}

/// Releases in semver order, then anything else (branches, commits) by name.
/// `items` in order, neighbours with equal keys joined into one run.
pub(crate) fn runs_alike<T, K: PartialEq>(items: impl IntoIterator<Item = T>, key: impl Fn(&T) -> K) -> Vec<Vec<T>> {
    let mut runs: Vec<Vec<T>> = Vec::new();
    let mut last: Option<K> = None;
    for item in items {
        let this = key(&item);
        match runs.last_mut() {
            Some(run) if last.as_ref() == Some(&this) => run.push(item),
            _ => runs.push(vec![item]),
        }
        last = Some(this);
    }
    runs
}

/// Consecutive versions of one tool whose cells are alike (`MatrixReport::version_runs`).
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct VersionRun<'a> {
    pub versions: Vec<&'a str>,
}

impl VersionRun<'_> {
    /// The run's first version: its cells stand for the run's, and its change against the
    /// version before is the run's.
    pub fn first(&self) -> &str {
        self.versions[0]
    }

    /// `v0.20.1` alone, or `v0.20.1 … v0.20.8 (8)`.
    pub fn header(&self) -> String {
        match self.versions.as_slice() {
            [only] => only.to_string(),
            [first, .., last] => format!("{first} … {last} ({})", self.versions.len()),
            [] => unreachable!("a run holds at least one version"),
        }
    }
}

pub(crate) fn version_order(version: &str) -> (bool, Option<semver::Version>, String) {
    let parsed = semver::Version::parse(version.trim_start_matches('v')).ok();
    (parsed.is_none(), parsed, version.to_string())
}

/// A table per tool and verb: scenarios down, versions across, the tool's name in the corner
/// (`crane · copy` over its copies); stable (no times, ports or paths).
pub fn render_table(report: &MatrixReport) -> String {
    report.groups().iter().map(|group| render_group_table(report, group)).collect::<Vec<_>>().join("\n")
}

fn render_group_table(report: &MatrixReport, group: &Group) -> String {
    let (tool, title) = (group.tool, group.title());
    let runs = report.version_runs(tool);
    let headers: Vec<String> = runs.iter().map(VersionRun::header).collect();
    let versions: Vec<&str> = runs.iter().map(VersionRun::first).collect();
    let scenarios = &group.scenarios;
    let label =
        |scenario: &str, version: &str| report.cell(tool, version, scenario).map_or("-".to_string(), CellResult::label);
    let first = scenarios.iter().map(|s| s.chars().count()).chain([title.chars().count()]).max().unwrap_or(8);
    let widths: Vec<usize> = versions
        .iter()
        .zip(&headers)
        .map(|(v, h)| scenarios.iter().map(|s| label(s, v).len()).chain([h.chars().count()]).max().unwrap_or(4))
        .collect();
    let mut out = format!("{title:first$}");
    for (h, w) in headers.iter().zip(&widths) {
        out.push_str(&format!("  {h:w$}"));
    }
    out = out.trim_end().to_string();
    out.push('\n');
    for s in scenarios {
        let mut line = format!("{s:first$}");
        for (v, w) in versions.iter().zip(&widths) {
            line.push_str(&format!("  {:w$}", label(s, v)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The committed snapshot of one family: a line per cell, grouped by version, so a new tool
/// version is new lines and a changed cell is one changed line. No times, ports or paths.
pub fn render_snapshot(cells: &[(String, String, String)]) -> String {
    let width = cells.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0);
    let vwidth = cells.iter().map(|(v, _, _)| v.len()).max().unwrap_or(0);
    cells.iter().map(|(v, s, label)| format!("{v:vwidth$}  {s:width$}  {label}\n")).collect()
}

/// Reads a snapshot body back into (version, scenario) → label.
pub(crate) fn parse_snapshot(body: &str) -> std::collections::BTreeMap<(String, String), String> {
    body.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(((words.next()?.to_string(), words.next()?.to_string()), words.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::outcome::FailClass;

    /// A matrix of `cells`, its versions in the order they first appear.
    pub(crate) fn report_of(cells: Vec<CellResult>) -> MatrixReport {
        let mut versions: Vec<VersionInfo> = Vec::new();
        for c in &cells {
            if !versions.iter().any(|v| v.tool == c.tool && v.version == c.version) {
                versions.push(VersionInfo {
                    tool: c.tool.clone(),
                    version: c.version.clone(),
                    route: "go".into(),
                    sha256: "x".into(),
                });
            }
        }
        let mut selected_scenarios: Vec<String> = cells.iter().map(|c| c.scenario.clone()).collect();
        selected_scenarios.dedup();
        MatrixReport {
            ko_matrix_version: "0".into(),
            started: "t".into(),
            runtime: "process".into(),
            containment: crate::containment::NAMESPACE.into(),
            leak_check: crate::leak_check::LeakCheck::Minted.to_string(),
            versions,
            selected_scenarios,
            tool_scenarios: BTreeMap::new(),
            shard: None,
            cells,
            interrupted: false,
            timings: None,
        }
    }

    /// A cell of the shorthand tool; `tool@version` names another tool.
    pub(crate) fn cell(scenario: &str, version: &str, outcome: Outcome, class: Option<FailClass>) -> CellResult {
        let (tool, version) =
            version.split_once('@').map_or((crate::result::shorthand_tool(), version), |(t, v)| (t.to_string(), v));
        CellResult {
            tool,
            version: version.into(),
            scenario: scenario.into(),
            // A test's copy cells are the `copy/` family's.
            verb: if family(scenario) == "copy" { crate::result::Verb::Copy } else { crate::result::Verb::Push },
            outcome,
            class,
            detail: String::new(),
            diagnosis: None,
            duration_ms: 1234,
            tool_ms: 1000,
            log: "/tmp/x.log".into(),
            retry_log: None,
            attempts: Vec::new(),
            env: Default::default(),
            requests: Vec::new(),
        }
    }

    #[test]
    fn alike_consecutive_versions_share_a_column() {
        use Outcome::{Fail, Pass};
        let mut cells = Vec::new();
        // v1–v3 alike, v4 regresses a, v5 alike v4, v6 alike v1 again (not joined to v1–v3:
        // only neighbours are).
        for (v, a) in [("v1", Pass), ("v2", Pass), ("v3", Pass), ("v4", Fail), ("v5", Fail), ("v6", Pass)] {
            cells.push(cell("s/a", v, a, (a == Fail).then_some(FailClass::Unauthorized)));
            cells.push(cell("s/b", v, Pass, None));
        }
        let report = report_of(cells);
        let tool = crate::result::shorthand_tool();
        let runs = report.version_runs(&tool);
        let shown: Vec<String> = runs.iter().map(VersionRun::header).collect();
        assert_eq!(shown, ["v1 … v3 (3)", "v4 … v5 (2)", "v6"]);

        let table = render_table(&report);
        assert_eq!(
            table.lines().next().unwrap().split_whitespace().skip(1).collect::<Vec<_>>().join(" "),
            "v1 … v3 (3) v4 … v5 (2) v6"
        );
        assert!(table.contains("s/a  pass         fail(unauthorized)  pass"), "{table}");

        let analysis = regressions::analyse(&report, None);
        let md = markdown::render(&report, &analysis);
        assert!(md.contains("| v1 … v3 (3) | v4 … v5 (2) | v6 |"), "{md}");
        let html = html::render(&report, &analysis);
        assert!(html.contains("title=\"alike in v1, v2, v3\">v1 … v3 (3)</th>"), "{html}");
        assert_eq!(html.matches("<td class=\"cell ").count(), 6, "one cell per run and scenario");
    }

    #[test]
    fn the_summary_counts_add_up_to_the_cells_skipped_ones_apart() {
        let mut cells = vec![cell("s/a", "v1", Outcome::Pass, None), cell("s/b", "v1", Outcome::Skipped, None)];
        assert_eq!(report_of(cells.clone()).summary(), "2 cells: 1 pass, 0 fail, 1 skipped, 0 flaky, 0 infra-error");
        cells.pop();
        assert_eq!(report_of(cells).summary(), "1 cells: 1 pass, 0 fail, 0 flaky, 0 infra-error");
    }

    #[test]
    fn a_cell_missing_in_one_version_keeps_it_apart() {
        let report = report_of(vec![
            cell("s/a", "v1", Outcome::Pass, None),
            cell("s/b", "v1", Outcome::Pass, None),
            cell("s/a", "v2", Outcome::Pass, None),
        ]);
        let runs = report.version_runs(&crate::result::shorthand_tool());
        assert_eq!(runs.len(), 2);
    }

    #[test]
    fn snapshots_round_trip() {
        let cells = vec![
            ("v0.15.1".to_string(), "registry/anonymous".to_string(), "pass".to_string()),
            ("v0.15.10".to_string(), "registry/wrong-password".to_string(), "fail(unauthorized)".to_string()),
        ];
        let text = render_snapshot(&cells);
        assert_eq!(
            text,
            "v0.15.1   registry/anonymous       pass\nv0.15.10  registry/wrong-password  fail(unauthorized)\n"
        );
        let parsed = parse_snapshot(&text);
        assert_eq!(parsed[&("v0.15.10".to_string(), "registry/wrong-password".to_string())], "fail(unauthorized)");
        assert_eq!(family("registry/anonymous"), "registry");
    }

    #[test]
    fn the_table_is_scenarios_by_versions() {
        let report = report_of(vec![
            cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
            cell("ecr/env-session", "v0.15.2", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("registry/anonymous", "v0.15.1", Outcome::Pass, None),
            cell("registry/anonymous", "v0.15.2", Outcome::InfraError, None),
        ]);
        assert_eq!(
            render_table(&report),
            "ko                  v0.15.1  v0.15.2\n\
             ecr/env-session     pass     fail(unauthorized)\n\
             registry/anonymous  pass     infra-error\n"
        );
        let two_tools = report_of(vec![
            cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
            cell("ecr/env-session", "crane@v0.20.2", Outcome::Fail, Some(FailClass::Unauthorized)),
        ]);
        assert_eq!(
            render_table(&two_tools),
            "ko               v0.15.1\n\
             ecr/env-session  pass\n\
             \n\
             crane            v0.20.2\n\
             ecr/env-session  fail(unauthorized)\n"
        );
    }

    #[test]
    fn copies_have_a_table_of_their_own_beside_the_pushes() {
        let report = report_of(vec![
            cell("registry/anonymous", "crane@v0.20.2", Outcome::Pass, None),
            cell("copy/same-registry-other-repo", "crane@v0.20.2", Outcome::Pass, None),
            cell("copy/harbor-one-login-two-projects", "crane@v0.20.2", Outcome::Fail, Some(FailClass::Unauthorized)),
        ]);
        assert_eq!(
            render_table(&report),
            "crane               v0.20.2\n\
             registry/anonymous  pass\n\
             \n\
             crane · copy                        v0.20.2\n\
             copy/same-registry-other-repo       pass\n\
             copy/harbor-one-login-two-projects  fail(unauthorized)\n"
        );
        let groups = report.groups();
        assert_eq!(
            groups.iter().map(|g| (g.slug(), g.scenarios.len())).collect::<Vec<_>>(),
            [("crane".into(), 1), ("crane-copy".into(), 2)]
        );
        let analysis = regressions::analyse(&report, None);
        let md = markdown::render(&report, &analysis);
        let (push, copy) = (md.find("| crane | v0.20.2 |").unwrap(), md.find("| crane · copy | v0.20.2 |").unwrap());
        assert!(push < copy && md[copy..].contains("| `copy/same-registry-other-repo` | ✅ pass |"), "{md}");
        assert!(!md[push..copy].contains("copy/"), "the pushes' table holds no copy: {md}");
        let html = html::render(&report, &analysis);
        assert!(html.contains("<h2>crane · copy</h2>\n<table class=\"grid\" id=\"grid-crane-copy\" data-tool=\"crane\" data-verb=\"copy\">"), "{html}");
        assert!(html.contains("<table class=\"grid\" id=\"grid-crane\" data-tool=\"crane\">"), "{html}");
    }

    #[test]
    fn check_reports_changed_pending_and_missing_cells() {
        let mut snapshots = Snapshots::default();
        let ko = crate::result::shorthand_tool();
        snapshots.insert(&ko, "v0.15.1", "ecr/env-session", "pass".into());
        snapshots.insert(&ko, "v0.15.1", "ecr/imds-v2", "pass".into());
        snapshots.insert(&ko, "v0.15.2", "ecr/env-session", "fail(unauthorized)".into());
        snapshots.insert("crane", "v0.15.1", "ecr/env-session", "fail(unauthorized)".into());
        // v0.15.1's imds-v2 cell is absent (a crashed shard); v0.15.2 did not run at all.
        let mut report = report_of(vec![
            cell("ecr/env-session", "v0.15.1", Outcome::Fail, Some(FailClass::Network)),
            cell("ecr/env-session", "v9.9.9", Outcome::Pass, None),
        ]);
        report.selected_scenarios.push("ecr/imds-v2".into());
        let shown: Vec<String> =
            check_against(&report, &snapshots, CheckScope::All).iter().map(ToString::to_string).collect();
        assert_eq!(
            shown,
            [
                "ko@v0.15.1::ecr/env-session: pass → fail(network)",
                "ko@v9.9.9::ecr/env-session: (absent) → pass",
                "ko@v0.15.1::ecr/imds-v2: pass → (absent)"
            ],
            "crane's cells did not run: another tool's snapshot is not missing"
        );
        assert_eq!(report.absent_cells(), ["ko@v0.15.1::ecr/imds-v2", "ko@v9.9.9::ecr/imds-v2"]);
        let pinned: Vec<String> = check_against(&report, &snapshots, CheckScope::SnapshottedVersions)
            .iter()
            .map(ToString::to_string)
            .collect();
        assert_eq!(
            pinned,
            ["ko@v0.15.1::ecr/env-session: pass → fail(network)", "ko@v0.15.1::ecr/imds-v2: pass → (absent)"],
            "v9.9.9 is left to `regressions`"
        );
    }

    #[test]
    fn parts_that_ran_different_tools_merge_with_each_tools_own_scenarios() {
        // Each part ran one tool on all its selected scenarios, so neither lists tool_scenarios.
        let ko = report_of(vec![cell("s/a", "v1", Outcome::Pass, None), cell("s/b", "v1", Outcome::Pass, None)]);
        let crane =
            report_of(vec![cell("s/a", "crane@v2", Outcome::Pass, None), cell("s/c", "crane@v2", Outcome::Pass, None)]);
        let merged = merge(&[ko, crane]).unwrap();
        assert_eq!(merged.absent_cells(), Vec::<String>::new(), "ko never set out to run s/c, nor crane s/b");
        assert!(!merged.selected(&crate::result::shorthand_tool(), "s/c"));
        assert!(merged.selected("crane", "s/c"));
    }

    #[test]
    fn containment_is_recorded_read_back_and_merged() {
        let report = report_of(vec![cell("ecr/env-session", "v0.15.1", Outcome::Pass, None)]);
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["containment"], "user+network namespace");
        // A file from before containment was recorded still reads.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("containment");
        let old: MatrixReport = serde_json::from_value(old).unwrap();
        assert_eq!(old.containment, "not recorded");

        let shard = |containment: &str, version: &str| MatrixReport {
            containment: containment.into(),
            ..report_of(vec![cell("ecr/env-session", version, Outcome::Pass, None)])
        };
        let same =
            merge(&[shard("user+network namespace", "v0.15.1"), shard("user+network namespace", "v0.15.2")]).unwrap();
        assert_eq!(same.containment, "user+network namespace");
        let mixed = merge(&[
            shard("user+network namespace", "v0.15.1"),
            shard("proxy-only (KO_MATRIX_CONTAINMENT=proxy-only)", "v0.15.2"),
        ])
        .unwrap();
        assert_eq!(mixed.containment, "mixed: user+network namespace; proxy-only (KO_MATRIX_CONTAINMENT=proxy-only)");
    }

    #[test]
    fn the_leak_check_is_recorded_shown_read_back_and_merged() {
        use crate::leak_check::{HostKeys, LeakCheck};
        // A LocalStack run: its header says which keys its cells were checked against.
        let localstack =
            LeakCheck::HostKeys(HostKeys { ids: ["AKIAHOSTKEY000000001".to_string()].into(), unread: Vec::new() });
        let report = MatrixReport {
            leak_check: localstack.to_string(),
            ..report_of(vec![cell("ecr/env-session", "v0.15.1", Outcome::Pass, None)])
        };
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["leak_check"], "host key ids (LocalStack accepts any key; 1 known)");
        assert!(!json.to_string().contains("AKIAHOSTKEY"), "the host's key ids are counted, never written");
        let analysis = crate::report::regressions::analyse(&report, None);
        let md = markdown::render(&report, &analysis);
        assert!(
            md.contains(
                "containment: user+network namespace · leak check: host key ids (LocalStack accepts any key; 1 known)"
            ),
            "{md}"
        );
        let page = html::render(&report, &analysis);
        assert!(page.contains("· leak check: host key ids (LocalStack accepts any key; 1 known) ·"), "{page}");
        // A file from before the leak check was recorded still reads.
        let mut old = json.clone();
        old.as_object_mut().unwrap().remove("leak_check");
        let old: MatrixReport = serde_json::from_value(old).unwrap();
        assert_eq!(old.leak_check, "not recorded");

        let shard = |leak_check: &LeakCheck, version: &str| MatrixReport {
            leak_check: leak_check.to_string(),
            ..report_of(vec![cell("ecr/env-session", version, Outcome::Pass, None)])
        };
        let same = merge(&[shard(&LeakCheck::Minted, "v0.15.1"), shard(&LeakCheck::Minted, "v0.15.2")]).unwrap();
        assert_eq!(same.leak_check, "minted keys (embedded AWS emulator)");
        let mixed = merge(&[shard(&LeakCheck::Minted, "v0.15.1"), shard(&localstack, "v0.15.2")]).unwrap();
        assert_eq!(
            mixed.leak_check,
            "mixed: minted keys (embedded AWS emulator); host key ids (LocalStack accepts any key; 1 known)"
        );
    }

    #[test]
    fn a_matrix_from_before_tools_were_a_parameter_reads() {
        let mut json =
            serde_json::to_value(report_of(vec![cell("ecr/env-session", "v0.15.1", Outcome::Pass, None)])).unwrap();
        let old = json["cells"][0].as_object_mut().unwrap();
        old.remove("tool");
        let tool_ms = old.remove("tool_ms").unwrap();
        old.insert("ko_ms".into(), tool_ms);
        let report: MatrixReport = serde_json::from_value(json).unwrap();
        assert_eq!((report.cells[0].tool.as_str(), report.cells[0].tool_ms), ("ko", 1000));
    }
}
