//! `matrix.md`: the table for PR comments and `$GITHUB_STEP_SUMMARY`. Each cell carries a
//! symbol for its change against the previous version, so a regressed column stands out.

use super::MatrixReport;
use crate::outcome::Outcome;
use crate::report::flaky::Streak;
use crate::report::regressions::{Analysis, Mark, Transition};

fn emoji(outcome: Outcome) -> &'static str {
    match outcome {
        Outcome::Pass => "✅",
        Outcome::Fail => "❌",
        Outcome::InfraError => "⚠️",
        Outcome::Skipped => "⏭️",
        Outcome::Flaky => "🔁",
    }
}

const LEGEND: &str = "🔻 regression against the previous version · 🔺 fix · 🔀 failure class changed · ▫️ fails alike in every version (expected)";

fn shown(outcome: Outcome, label: &str, mark: Mark) -> String {
    match mark {
        Mark::Regression => format!("🔻 **{label}**"),
        Mark::Fix => format!("🔺 {label}"),
        Mark::ClassChange => format!("🔀 {label}"),
        Mark::SharedFailure => format!("▫️ {label}"),
        Mark::Steady | Mark::NoVerdict => format!("{} {label}", emoji(outcome)),
    }
}

/// A table per tool and verb (scenarios down, versions across), the changes, the flaky cells,
/// then why cells failed.
pub fn render(report: &MatrixReport, analysis: &Analysis) -> String {
    let mut out = format!(
        "### ko-matrix: {}\n\ncontainment: {} · leak check: {}\n\n{LEGEND}\n",
        report.summary(),
        report.containment,
        report.leak_check
    );
    // A table per tool and verb: its pushes, then its copies (`crane · copy`).
    for group in report.groups() {
        let (tool, title) = (group.tool, group.title());
        // Consecutive versions with alike cells share a column (`v0.20.1 … v0.20.8 (8)`).
        let runs = report.version_runs(tool);
        let headers: Vec<String> = runs.iter().map(|r| r.header()).collect();
        out.push_str(&format!("\n| {title} | {} |\n|---|{}\n", headers.join(" | "), "---|".repeat(runs.len())));
        for scenario in group.scenarios {
            let row: Vec<String> = runs
                .iter()
                .map(|run| run.first())
                .map(|v| {
                    report
                        .cell(tool, v, scenario)
                        .map_or("–".to_string(), |c| shown(c.outcome, &c.label(), analysis.mark(c)))
                })
                .collect();
            out.push_str(&format!("| `{scenario}` | {} |\n", row.join(" | ")));
        }
    }
    if !analysis.transitions.is_empty() {
        out.push_str("\n#### Changes along the version axis\n\n");
        out.push_str(&render_transitions(analysis.transitions.iter()));
    }
    out.push_str(&render_flaky(report));
    let failures: Vec<_> =
        report.cells.iter().filter(|c| !matches!(c.outcome, Outcome::Pass | Outcome::Skipped)).collect();
    if !failures.is_empty() {
        out.push_str("\n<details><summary>Why the cells that did not pass failed</summary>\n\n");
        for c in failures {
            let why = c.diagnosis.as_deref().map(|d| format!(" {d}")).unwrap_or_default();
            out.push_str(&format!("- **{}** — {}:{why} `{}`\n", c.id(), c.label(), c.detail.replace('`', "'")));
        }
        out.push_str("\n</details>\n");
    }
    out
}

/// The flaky cells, each with its runs, both logs and its detail (both runs' deciding lines);
/// nothing when there is none.
fn render_flaky(report: &MatrixReport) -> String {
    let flaky: Vec<_> = crate::report::flaky::cells(report).collect();
    if flaky.is_empty() {
        return String::new();
    }
    let mut out = format!(
        "\n#### 🔁 Flaky cells: {}\n\nTheir two runs disagreed. Each passes the snapshot check when either run matches it, so nothing fails on it; a cell flaky on consecutive nights shows in `ko-matrix regressions --history`.\n\n",
        flaky.len()
    );
    for c in flaky {
        out.push_str(&format!("- 🔁 **{}** ran {}\n", c.id(), crate::report::flaky::runs(c)));
        out.push_str(&format!("  - `{}`\n", c.detail.replace('`', "'")));
        let retry = c.retry_log.as_ref().map(|p| format!(", retry `{}`", p.display())).unwrap_or_default();
        out.push_str(&format!("  - logs: first run `{}`{retry}\n", c.log.display()));
    }
    out
}

/// A list item per transition; a regression names the tool's deciding line and the bisect
/// command that would explain it.
pub fn render_transitions<'a>(transitions: impl Iterator<Item = &'a Transition>) -> String {
    let mut out = String::new();
    for t in transitions {
        let known = if t.known { " (recorded in the snapshots)" } else { "" };
        out.push_str(&format!(
            "- {} **{}** `{}` {}: {} {} → {} {}{known}\n",
            shown_mark(t.mark),
            t.mark.as_str(),
            t.scenario,
            t.tool,
            t.from_version,
            t.from_label,
            t.to_version,
            t.to_label
        ));
        if t.mark != Mark::Fix {
            out.push_str(&format!("  - `{}`\n", t.detail.replace('`', "'")));
        }
        if t.mark == Mark::Regression {
            out.push_str(&format!("  - explain it: `{}`\n", t.bisect_command()));
        }
    }
    out
}

/// A section of the cells flaky on consecutive nights; nothing when there is none.
pub fn render_streaks(streaks: &[Streak]) -> String {
    if streaks.is_empty() {
        return String::new();
    }
    let mut out = String::from("\n#### 🔁 Flaky on consecutive nights\n\n");
    for s in streaks {
        out.push_str(&format!(
            "- 🔁 **{}** flaky on {} nights in a row ({})\n",
            s.cell,
            s.nights.len(),
            s.nights.join(", ")
        ));
    }
    out
}

fn shown_mark(mark: Mark) -> &'static str {
    match mark {
        Mark::Regression => "🔻",
        Mark::Fix => "🔺",
        Mark::ClassChange => "🔀",
        Mark::SharedFailure => "▫️",
        Mark::Steady | Mark::NoVerdict => "",
    }
}
