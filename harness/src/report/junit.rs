//! `junit.xml`: one testcase per cell, for CI systems. A testcase fails when its cell
//! changed: against the baseline (the committed snapshot) where it has one, else against the
//! previous version (a regression). An expected failure is a passing testcase whose output
//! names its outcome; an infra-error is an `<error>`: the cell did not run.

use super::{MatrixReport, Snapshots};
use crate::outcome::Outcome;
use crate::report::regressions::{Analysis, Mark};
use crate::result::CellResult;

fn escape(text: &str) -> String {
    text.chars()
        .filter(|c| !c.is_control() || *c == '\n' || *c == '\t')
        .map(|c| match c {
            '&' => "&amp;".to_string(),
            '<' => "&lt;".to_string(),
            '>' => "&gt;".to_string(),
            '"' => "&quot;".to_string(),
            '\'' => "&apos;".to_string(),
            c => c.to_string(),
        })
        .collect()
}

/// What a testcase says about a cell.
enum Verdict {
    Passed(String),
    Failed { kind: &'static str, message: String },
    Errored(String),
    Skipped(String),
}

fn verdict(c: &CellResult, analysis: &Analysis, baseline: Option<&Snapshots>) -> Verdict {
    // The detail, led by the diagnosis where there is one.
    let detail = match &c.diagnosis {
        Some(why) => format!("{why} {}", c.detail),
        None => c.detail.clone(),
    };
    let label = c.label();
    let mark = analysis.mark(c);
    let previous = || {
        analysis
            .transitions
            .iter()
            .find(|t| t.tool == c.tool && t.to_version == c.version && t.scenario == c.scenario)
            .map(|t| format!(" against {} ({})", t.from_version, t.from_label))
            .unwrap_or_default()
    };
    match c.outcome {
        Outcome::InfraError => return Verdict::Errored(format!("infra-error: {}", c.detail)),
        Outcome::Skipped => return Verdict::Skipped(c.detail.clone()),
        _ => {}
    }
    let expected = baseline.and_then(|b| b.label(&c.tool, &c.version, &c.scenario));
    match expected {
        Some(expected)
            if expected == label || (c.outcome == Outcome::Flaky && c.attempts.iter().any(|a| a == expected)) =>
        {
            let note = if mark == Mark::Regression {
                format!(", a regression{} recorded in the snapshots", previous())
            } else {
                String::new()
            };
            Verdict::Passed(format!("{label} as the snapshot records{note}: {detail}"))
        }
        Some(expected) => Verdict::Failed {
            kind: "changed",
            message: format!("{expected} → {label} (snapshot → this run): {detail}"),
        },
        None if mark == Mark::Regression => {
            Verdict::Failed { kind: "regression", message: format!("{label}, a regression{}: {detail}", previous()) }
        }
        None => Verdict::Passed(format!("{label}: {detail}")),
    }
}

pub fn render(report: &MatrixReport, analysis: &Analysis, baseline: Option<&Snapshots>) -> String {
    let verdicts: Vec<Verdict> = report.cells.iter().map(|c| verdict(c, analysis, baseline)).collect();
    let failures = verdicts.iter().filter(|v| matches!(v, Verdict::Failed { .. })).count();
    let errors = verdicts.iter().filter(|v| matches!(v, Verdict::Errored(_))).count();
    let skipped = verdicts.iter().filter(|v| matches!(v, Verdict::Skipped(_))).count();
    let total_secs: f64 = report.cells.iter().map(|c| c.duration_ms as f64 / 1000.0).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ko-matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">\n  <testsuite name=\"ko-matrix\" tests=\"{}\" failures=\"{failures}\" errors=\"{errors}\" skipped=\"{skipped}\" timestamp=\"{}\">\n",
        report.cells.len(),
        report.cells.len(),
        escape(&report.started)
    );
    for (c, verdict) in report.cells.iter().zip(&verdicts) {
        let name = escape(&c.id());
        let classname = escape(&format!("ko-matrix.{}.{}", c.tool, super::family(&c.scenario)));
        out.push_str(&format!(
            "    <testcase name=\"{name}\" classname=\"{classname}\" time=\"{:.3}\">\n",
            c.duration_ms as f64 / 1000.0
        ));
        let log = escape(&c.log.display().to_string());
        match verdict {
            Verdict::Passed(text) => {
                out.push_str(&format!("      <system-out>{}\nlog: {log}</system-out>\n", escape(text)))
            }
            Verdict::Skipped(why) => out.push_str(&format!("      <skipped message=\"{}\"/>\n", escape(why))),
            Verdict::Errored(message) => out.push_str(&format!(
                "      <error type=\"infra-error\" message=\"{0}\">{0}\nlog: {log}</error>\n",
                escape(message)
            )),
            Verdict::Failed { kind, message } => out.push_str(&format!(
                "      <failure type=\"{kind}\" message=\"{0}\">{0}\nlog: {log}</failure>\n",
                escape(message)
            )),
        }
        out.push_str("    </testcase>\n");
    }
    out.push_str("  </testsuite>\n</testsuites>\n");
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn xml_text_is_escaped() {
        assert_eq!(super::escape("a<b & \"c\"\u{1b}"), "a&lt;b &amp; &quot;c&quot;");
    }

    use crate::outcome::{FailClass, Outcome};
    use crate::report::regressions::analyse;
    use crate::report::tests::{cell, report_of};
    use crate::report::Snapshots;

    #[test]
    fn only_changed_cells_fail() {
        let report = report_of(vec![
            cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
            cell("ecr/env-session", "v0.15.2", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("ecr/no-credentials", "v0.15.1", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("ecr/no-credentials", "v0.15.2", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("registry/anonymous", "v0.15.2", Outcome::InfraError, None),
        ]);
        // No baseline: the regression fails, the shared expected failure passes.
        let xml = super::render(&report, &analyse(&report, None), None);
        assert!(xml.contains("tests=\"5\" failures=\"1\" errors=\"1\" skipped=\"0\""), "{xml}");
        assert!(
            xml.contains(
                "<failure type=\"regression\" message=\"fail(unauthorized), a regression against v0.15.1 (pass)"
            ),
            "{xml}"
        );
        assert!(
            xml.contains("<system-out>fail(unauthorized): "),
            "an expected failure passes and names its outcome: {xml}"
        );
        assert!(xml.contains("<testcase name=\"ko@v0.15.2::ecr/env-session\" classname=\"ko-matrix.ko.ecr\""), "{xml}");
        // With the snapshot recording the regression, nothing fails; a cell differing from it does.
        let mut baseline = Snapshots::default();
        let ko = crate::result::shorthand_tool();
        baseline.insert(&ko, "v0.15.1", "ecr/env-session", "pass".into());
        baseline.insert(&ko, "v0.15.2", "ecr/env-session", "fail(unauthorized)".into());
        baseline.insert(&ko, "v0.15.1", "ecr/no-credentials", "fail(denied)".into());
        let xml = super::render(&report, &analyse(&report, Some(&baseline)), Some(&baseline));
        assert!(xml.contains("failures=\"1\""), "{xml}");
        assert!(
            xml.contains("<failure type=\"changed\" message=\"fail(denied) → fail(unauthorized) (snapshot → this run)"),
            "{xml}"
        );
        assert!(xml.contains("a regression against v0.15.1 (pass) recorded in the snapshots"), "{xml}");
    }
}
