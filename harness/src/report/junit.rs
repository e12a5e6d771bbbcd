//! `junit.xml`: one testcase per cell, for CI systems.

use super::{cell_label, MatrixReport};
use crate::outcome::Outcome;

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

pub fn render(report: &MatrixReport) -> String {
    let failures = report.count(Outcome::Fail) + report.count(Outcome::InfraError);
    let skipped = report.count(Outcome::Skipped);
    let total_secs: f64 = report.cells.iter().map(|c| c.duration_ms as f64 / 1000.0).sum();
    let mut out = format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<testsuites name=\"ko-matrix\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" time=\"{total_secs:.3}\">\n  <testsuite name=\"ko-matrix\" tests=\"{}\" failures=\"{failures}\" skipped=\"{skipped}\" timestamp=\"{}\">\n",
        report.cells.len(),
        report.cells.len(),
        escape(&report.started)
    );
    for c in &report.cells {
        let name = escape(&format!("{}::{}", c.version, c.scenario));
        let classname = escape(&format!("ko-matrix.{}", super::family(&c.scenario)));
        out.push_str(&format!("    <testcase name=\"{name}\" classname=\"{classname}\" time=\"{:.3}\">\n", c.duration_ms as f64 / 1000.0));
        match c.outcome {
            Outcome::Pass => {}
            Outcome::Skipped => out.push_str(&format!("      <skipped message=\"{}\"/>\n", escape(&c.detail))),
            Outcome::Flaky => out.push_str(&format!("      <system-out>flaky: {}</system-out>\n", escape(&c.detail))),
            Outcome::Fail | Outcome::InfraError => out.push_str(&format!(
                "      <failure type=\"{}\" message=\"{}\">{}\nlog: {}</failure>\n",
                escape(&cell_label(c)),
                escape(&c.detail),
                escape(&c.detail),
                escape(&c.log.display().to_string())
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
}
