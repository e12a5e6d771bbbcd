//! The version axis: walk each tool's cells of each scenario in version order and name what changed
//! between a version and the one before it — a regression (pass → fail), a fix (fail →
//! pass), a change of failure class — and which failures every version shares. Pure: it
//! reads a matrix and, optionally, the committed baseline; reporters and the CLI render it.

use std::collections::BTreeMap;

use crate::outcome::Outcome;
use crate::report::{version_order, MatrixReport, Snapshots};
use crate::result::{cell_id, CellResult};

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Mark {
    /// Passed in the previous version, fails in this one.
    Regression,
    /// Failed in the previous version, passes in this one.
    Fix,
    /// Failed in both, for different reasons.
    ClassChange,
    /// Fails the same way in every version that reached a verdict: an expected failure.
    SharedFailure,
    /// Nothing to say: the first version, or the same verdict as the previous one.
    Steady,
    /// No verdict to compare (skipped, flaky, infra-error).
    NoVerdict,
}

impl Mark {
    pub fn as_str(self) -> &'static str {
        match self {
            Mark::Regression => "regression",
            Mark::Fix => "fix",
            Mark::ClassChange => "class-change",
            Mark::SharedFailure => "shared-failure",
            Mark::Steady => "steady",
            Mark::NoVerdict => "no-verdict",
        }
    }
}

/// One change between two adjacent versions of a tool, in a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
    pub tool: String,
    pub scenario: String,
    pub from_version: String,
    pub to_version: String,
    pub from_label: String,
    pub to_label: String,
    pub mark: Mark,
    /// The failing cell's deciding line (for a regression or class change: the new one).
    pub detail: String,
    /// Both cells are exactly as the committed baseline records them: a change the project
    /// already knows and accepted.
    pub known: bool,
}

impl Transition {
    /// The command that explains a regression: a dependency bisect between the two builds,
    /// which holds the tool's own code at the passing version.
    pub fn bisect_command(&self) -> String {
        format!(
            "ko-matrix bisect --tool {} --good {} --bad {} --scenario {} --mode deps",
            self.tool, self.from_version, self.to_version, self.scenario
        )
    }

    /// `ko@v0.15.1 → v0.15.2::ecr/env-session`.
    pub fn name(&self) -> String {
        format!("{}@{} → {}::{}", self.tool, self.from_version, self.to_version, self.scenario)
    }
}

/// `tool`'s versions in axis order: releases by semver, then branches and commits by name.
pub fn version_axis(report: &MatrixReport, tool: &str) -> Vec<String> {
    let mut versions: Vec<String> = report.versions_of(tool).into_iter().map(String::from).collect();
    for cell in report.cells.iter().filter(|c| c.tool == tool) {
        if !versions.contains(&cell.version) {
            versions.push(cell.version.clone());
        }
    }
    versions.sort_by_key(|v| version_order(v));
    versions
}

/// The analysis of a whole matrix: a mark for every cell, and the transitions in tool order,
/// then scenario order, then version order.
#[derive(Debug, Default)]
pub struct Analysis {
    /// Cell id → mark.
    marks: BTreeMap<String, Mark>,
    pub transitions: Vec<Transition>,
}

impl Analysis {
    pub fn mark(&self, cell: &CellResult) -> Mark {
        self.marks.get(&cell.id()).copied().unwrap_or(Mark::NoVerdict)
    }

    pub fn regressions(&self) -> impl Iterator<Item = &Transition> {
        self.transitions.iter().filter(|t| t.mark == Mark::Regression)
    }

    /// Regressions the baseline does not already record.
    pub fn new_regressions(&self) -> impl Iterator<Item = &Transition> {
        self.regressions().filter(|t| !t.known)
    }

    pub fn count(&self, mark: Mark) -> usize {
        self.transitions.iter().filter(|t| t.mark == mark).count()
    }
}

fn has_verdict(cell: &CellResult) -> bool {
    matches!(cell.outcome, Outcome::Pass | Outcome::Fail)
}

/// Compares each cell with the nearest earlier version of its scenario that reached a
/// verdict, so a skipped or infra-error cell neither hides nor invents a change.
pub fn analyse(report: &MatrixReport, baseline: Option<&Snapshots>) -> Analysis {
    let mut analysis = Analysis::default();
    for tool in report.tools() {
        analyse_tool(report, tool, baseline, &mut analysis);
    }
    analysis
}

fn analyse_tool(report: &MatrixReport, tool: &str, baseline: Option<&Snapshots>, analysis: &mut Analysis) {
    let axis = version_axis(report, tool);
    for scenario in report.scenarios_of(tool) {
        let cells: Vec<&CellResult> = axis.iter().filter_map(|v| report.cell(tool, v, scenario)).collect();
        let verdicts: Vec<&CellResult> = cells.iter().copied().filter(|c| has_verdict(c)).collect();
        let shared_failure = !verdicts.is_empty()
            && verdicts.iter().all(|c| c.outcome == Outcome::Fail && c.label() == verdicts[0].label());
        let mut previous: Option<&CellResult> = None;
        for cell in cells {
            let key = cell_id(&cell.tool, &cell.version, &cell.scenario);
            if !has_verdict(cell) {
                analysis.marks.insert(key, Mark::NoVerdict);
                continue;
            }
            let mark = match previous {
                _ if shared_failure => Mark::SharedFailure,
                None => Mark::Steady,
                Some(before) => match (before.outcome, cell.outcome) {
                    (Outcome::Pass, Outcome::Fail) => Mark::Regression,
                    (Outcome::Fail, Outcome::Pass) => Mark::Fix,
                    (Outcome::Fail, Outcome::Fail) if before.label() != cell.label() => Mark::ClassChange,
                    _ => Mark::Steady,
                },
            };
            if let (Some(before), Mark::Regression | Mark::Fix | Mark::ClassChange) = (previous, mark) {
                let failing = if cell.outcome == Outcome::Fail { cell } else { before };
                let as_recorded = |c: &CellResult| {
                    baseline.and_then(|b| b.label(&c.tool, &c.version, &c.scenario)).is_some_and(|l| l == c.label())
                };
                analysis.transitions.push(Transition {
                    tool: tool.to_string(),
                    scenario: scenario.to_string(),
                    from_version: before.version.clone(),
                    to_version: cell.version.clone(),
                    from_label: before.label(),
                    to_label: cell.label(),
                    mark,
                    detail: failing.detail.clone(),
                    known: as_recorded(before) && as_recorded(cell),
                });
            }
            analysis.marks.insert(key, mark);
            previous = Some(cell);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;
    use crate::report::tests::{cell, report_of};

    fn seed_matrix() -> MatrixReport {
        use FailClass::*;
        report_of(vec![
            // Listed out of version order on purpose: the axis is semver, then branches.
            cell("ecr/env-session", "main", Outcome::Pass, None),
            cell("ecr/env-session", "v0.15.10", Outcome::Pass, None),
            cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
            cell("ecr/env-session", "v0.15.2", Outcome::Fail, Some(Unauthorized)),
            cell("ecr/env-session", "v0.15.3", Outcome::Pass, None),
            cell("ecr/no-credentials", "v0.15.1", Outcome::Fail, Some(Unauthorized)),
            cell("ecr/no-credentials", "v0.15.2", Outcome::Fail, Some(Unauthorized)),
            cell("ecr/no-credentials", "v0.15.3", Outcome::Skipped, None),
            cell("ecr/no-credentials", "v0.15.10", Outcome::Fail, Some(Unauthorized)),
            cell("ecr/repository-missing", "v0.15.1", Outcome::Fail, Some(NameUnknown)),
            cell("ecr/repository-missing", "v0.15.2", Outcome::InfraError, None),
            cell("ecr/repository-missing", "v0.15.3", Outcome::Fail, Some(Unauthorized)),
            // Another tool's versions are an axis of their own.
            cell("ecr/env-session", "crane@v0.15.1", Outcome::Fail, Some(Unauthorized)),
            cell("ecr/env-session", "crane@v0.20.0", Outcome::Pass, None),
        ])
    }

    fn mark(analysis: &Analysis, report: &MatrixReport, version: &str, scenario: &str) -> Mark {
        let shorthand = crate::result::shorthand_tool();
        let (tool, version) = version.split_once('@').unwrap_or((&shorthand, version));
        analysis.mark(report.cell(tool, version, scenario).unwrap())
    }

    #[test]
    fn versions_are_ordered_by_semver_then_branches() {
        assert_eq!(
            version_axis(&seed_matrix(), &crate::result::shorthand_tool()),
            ["v0.15.1", "v0.15.2", "v0.15.3", "v0.15.10", "main"]
        );
        assert_eq!(version_axis(&seed_matrix(), "crane"), ["v0.15.1", "v0.20.0"]);
    }

    #[test]
    fn the_seed_regression_and_its_fix_are_named() {
        let report = seed_matrix();
        let analysis = analyse(&report, None);
        let summary: Vec<String> =
            analysis.transitions.iter().map(|t| format!("{} {}", t.mark.as_str(), t.name())).collect();
        assert_eq!(
            summary,
            [
                "regression ko@v0.15.1 → v0.15.2::ecr/env-session",
                "fix ko@v0.15.2 → v0.15.3::ecr/env-session",
                // The infra-error cell in between is skipped over, not read as a change.
                "class-change ko@v0.15.1 → v0.15.3::ecr/repository-missing",
                "fix crane@v0.15.1 → v0.20.0::ecr/env-session",
            ]
        );
        let mark = |version, scenario| mark(&analysis, &report, version, scenario);
        assert_eq!(mark("v0.15.2", "ecr/env-session"), Mark::Regression);
        assert_eq!(mark("v0.15.10", "ecr/env-session"), Mark::Steady);
        assert_eq!(mark("v0.15.1", "ecr/no-credentials"), Mark::SharedFailure);
        assert_eq!(mark("v0.15.3", "ecr/no-credentials"), Mark::NoVerdict);
        assert_eq!(mark("v0.15.2", "ecr/repository-missing"), Mark::NoVerdict);
        assert_eq!(mark("crane@v0.20.0", "ecr/env-session"), Mark::Fix);
        let regression = analysis.regressions().next().unwrap();
        assert_eq!(
            regression.bisect_command(),
            "ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps"
        );
        assert!(!regression.known);
    }

    #[test]
    fn a_copy_cell_regresses_and_is_bisected_like_a_push() {
        let report = report_of(vec![
            cell("copy/harbor-two-robots-flags", "oras@v1.1.0", Outcome::Pass, None),
            cell("copy/harbor-two-robots-flags", "oras@v1.2.3", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("copy/harbor-two-robots-flags", "oras@v1.3.6", Outcome::Pass, None),
        ]);
        assert_eq!(report.cells[0].verb, crate::result::Verb::Copy);
        let analysis = analyse(&report, None);
        let regression = analysis.regressions().next().unwrap();
        assert_eq!(regression.name(), "oras@v1.1.0 → v1.2.3::copy/harbor-two-robots-flags");
        assert_eq!(
            regression.bisect_command(),
            "ko-matrix bisect --tool oras --good v1.1.0 --bad v1.2.3 --scenario copy/harbor-two-robots-flags --mode deps"
        );
        assert_eq!(mark(&analysis, &report, "oras@v1.3.6", "copy/harbor-two-robots-flags"), Mark::Fix);
    }

    #[test]
    fn a_regression_the_baseline_records_is_known() {
        let mut baseline = Snapshots::default();
        let ko = crate::result::shorthand_tool();
        baseline.insert(&ko, "v0.15.1", "ecr/env-session", "pass".into());
        baseline.insert(&ko, "v0.15.2", "ecr/env-session", "fail(unauthorized)".into());
        let analysis = analyse(&seed_matrix(), Some(&baseline));
        assert_eq!(analysis.regressions().count(), 1);
        assert_eq!(analysis.new_regressions().count(), 0, "both cells are as recorded");
    }
}
