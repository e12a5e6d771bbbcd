//! The version axis: walk each scenario's cells in version order and name what changed
//! between a version and the one before it — a regression (pass → fail), a fix (fail →
//! pass), a change of failure class — and which failures every version shares. Pure: it
//! reads a matrix and, optionally, the committed baseline; reporters and the CLI render it.

use std::collections::BTreeMap;

use crate::cell::CellResult;
use crate::outcome::Outcome;
use crate::report::{cell_label, version_order, MatrixReport, Snapshots};

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

/// One change between two adjacent versions of a scenario.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transition {
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
        format!("ko-matrix bisect --good {} --bad {} --scenario {} --mode deps", self.from_version, self.to_version, self.scenario)
    }
}

/// The matrix's versions in axis order: releases by semver, then branches and commits by name.
pub fn version_axis(report: &MatrixReport) -> Vec<String> {
    let mut versions: Vec<String> = report.versions.iter().map(|v| v.version.clone()).collect();
    for cell in &report.cells {
        if !versions.contains(&cell.version) {
            versions.push(cell.version.clone());
        }
    }
    versions.sort_by_key(|v| version_order(v));
    versions
}

/// The analysis of a whole matrix: a mark for every cell, and the transitions in scenario
/// order, then version order.
#[derive(Debug, Default)]
pub struct Analysis {
    marks: BTreeMap<(String, String), Mark>,
    pub transitions: Vec<Transition>,
}

impl Analysis {
    pub fn mark(&self, version: &str, scenario: &str) -> Mark {
        self.marks.get(&(version.to_string(), scenario.to_string())).copied().unwrap_or(Mark::NoVerdict)
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
    let axis = version_axis(report);
    let mut analysis = Analysis::default();
    for scenario in report.scenarios() {
        let cells: Vec<&CellResult> = axis.iter().filter_map(|v| report.cell(scenario, v)).collect();
        let verdicts: Vec<&CellResult> = cells.iter().copied().filter(|c| has_verdict(c)).collect();
        let shared_failure = !verdicts.is_empty() && verdicts.iter().all(|c| c.outcome == Outcome::Fail && cell_label(c) == cell_label(verdicts[0]));
        let mut previous: Option<&CellResult> = None;
        for cell in cells {
            let key = (cell.version.clone(), cell.scenario.clone());
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
                    (Outcome::Fail, Outcome::Fail) if cell_label(before) != cell_label(cell) => Mark::ClassChange,
                    _ => Mark::Steady,
                },
            };
            if let (Some(before), Mark::Regression | Mark::Fix | Mark::ClassChange) = (previous, mark) {
                let failing = if cell.outcome == Outcome::Fail { cell } else { before };
                let as_recorded = |c: &CellResult| baseline.and_then(|b| crate::report::baseline_label(b, &c.version, &c.scenario)).is_some_and(|l| l == cell_label(c));
                analysis.transitions.push(Transition {
                    scenario: scenario.to_string(),
                    from_version: before.version.clone(),
                    to_version: cell.version.clone(),
                    from_label: cell_label(before),
                    to_label: cell_label(cell),
                    mark,
                    detail: failing.detail.clone(),
                    known: as_recorded(before) && as_recorded(cell),
                });
            }
            analysis.marks.insert(key, mark);
            previous = Some(cell);
        }
    }
    analysis
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
        ])
    }

    #[test]
    fn versions_are_ordered_by_semver_then_branches() {
        assert_eq!(version_axis(&seed_matrix()), ["v0.15.1", "v0.15.2", "v0.15.3", "v0.15.10", "main"]);
    }

    #[test]
    fn the_seed_regression_and_its_fix_are_named() {
        let analysis = analyse(&seed_matrix(), None);
        let summary: Vec<String> = analysis.transitions.iter().map(|t| format!("{} {} {}→{}", t.mark.as_str(), t.scenario, t.from_version, t.to_version)).collect();
        assert_eq!(
            summary,
            [
                "regression ecr/env-session v0.15.1→v0.15.2",
                "fix ecr/env-session v0.15.2→v0.15.3",
                // The infra-error cell in between is skipped over, not read as a change.
                "class-change ecr/repository-missing v0.15.1→v0.15.3",
            ]
        );
        assert_eq!(analysis.mark("v0.15.2", "ecr/env-session"), Mark::Regression);
        assert_eq!(analysis.mark("v0.15.10", "ecr/env-session"), Mark::Steady);
        assert_eq!(analysis.mark("v0.15.1", "ecr/no-credentials"), Mark::SharedFailure);
        assert_eq!(analysis.mark("v0.15.3", "ecr/no-credentials"), Mark::NoVerdict);
        assert_eq!(analysis.mark("v0.15.2", "ecr/repository-missing"), Mark::NoVerdict);
        let regression = analysis.regressions().next().unwrap();
        assert_eq!(regression.bisect_command(), "ko-matrix bisect --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps");
        assert!(!regression.known);
    }

    #[test]
    fn a_regression_the_baseline_records_is_known() {
        let mut family = BTreeMap::new();
        family.insert(("v0.15.1".to_string(), "ecr/env-session".to_string()), "pass".to_string());
        family.insert(("v0.15.2".to_string(), "ecr/env-session".to_string()), "fail(unauthorized)".to_string());
        let baseline: Snapshots = [("ecr".to_string(), family)].into_iter().collect();
        let analysis = analyse(&seed_matrix(), Some(&baseline));
        assert_eq!(analysis.regressions().count(), 1);
        assert_eq!(analysis.new_regressions().count(), 0, "both cells are as recorded");
    }
}
