//! `matrix.md`: the table for PR comments and `$GITHUB_STEP_SUMMARY`.

use super::{cell_label, MatrixReport};
use crate::outcome::Outcome;

fn emoji(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "✅",
        Outcome::Fail => "❌",
        Outcome::InfraError => "⚠️",
        Outcome::Skipped => "⏭️",
        Outcome::Flaky => "🔁",
    }
}

pub fn render(report: &MatrixReport) -> String {
    let versions: Vec<&str> = report.versions.iter().map(|v| v.version.as_str()).collect();
    let mut out = format!(
        "### ko-matrix: {}\n\n| scenario | {} |\n|---|{}\n",
        report.summary(),
        versions.join(" | "),
        "---|".repeat(versions.len())
    );
    for scenario in report.scenarios() {
        let row: Vec<String> = versions
            .iter()
            .map(|v| report.cell(scenario, v).map_or("–".to_string(), |c| format!("{} {}", emoji(c.outcome), cell_label(c))))
            .collect();
        out.push_str(&format!("| `{scenario}` | {} |\n", row.join(" | ")));
    }
    let failures: Vec<_> = report.cells.iter().filter(|c| !matches!(c.outcome, Outcome::Pass | Outcome::Skipped)).collect();
    if !failures.is_empty() {
        out.push_str("\n<details><summary>Why the cells that did not pass failed</summary>\n\n");
        for c in failures {
            out.push_str(&format!("- **{} × {}** — {}: `{}`\n", c.version, c.scenario, cell_label(c), c.detail.replace('`', "'")));
        }
        out.push_str("\n</details>\n");
    }
    out
}
