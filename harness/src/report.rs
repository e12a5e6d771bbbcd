//! Reports: matrix.json (the machine-readable contract) and the versions × scenarios table.
//! Reporters only render results; they never run anything.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cell::CellResult;
use crate::ko::KoBinary;
use crate::outcome::Outcome;

/// A version as the run used it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
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
    pub versions: Vec<VersionInfo>,
    pub cells: Vec<CellResult>,
}

impl MatrixReport {
    pub fn new(started: String, runtime: &str, versions: &[KoBinary], cells: Vec<CellResult>) -> MatrixReport {
        MatrixReport {
            ko_matrix_version: env!("CARGO_PKG_VERSION").into(),
            started,
            runtime: runtime.into(),
            versions: versions.iter().map(|k| VersionInfo { version: k.version.clone(), route: k.route.clone(), sha256: k.sha256.clone() }).collect(),
            cells,
        }
    }

    pub fn count(&self, outcome: Outcome) -> usize {
        self.cells.iter().filter(|c| c.outcome == outcome).count()
    }

    /// Writes `dir/matrix.json` atomically (a temp file renamed into place).
    pub fn write_json(&self, dir: &Path) -> std::io::Result<PathBuf> {
        std::fs::create_dir_all(dir)?;
        let path = dir.join("matrix.json");
        let mut file = tempfile::NamedTempFile::new_in(dir)?;
        serde_json::to_writer_pretty(&mut file, self).map_err(std::io::Error::other)?;
        file.persist(&path).map_err(|e| e.error)?;
        Ok(path)
    }
}

/// `pass`, `fail(<class>)`, `infra-error`, `skipped`.
pub fn cell_label(cell: &CellResult) -> String {
    match (cell.outcome, cell.class) {
        (Outcome::Pass, _) => "pass".into(),
        (Outcome::Fail, Some(class)) => format!("fail({})", class.as_str()),
        (Outcome::Fail, None) => "fail".into(),
        (Outcome::InfraError, _) => "infra-error".into(),
        (Outcome::Skipped, _) => "skipped".into(),
    }
}

/// Scenarios down, versions across; stable (no times, ports or paths).
pub fn render_table(report: &MatrixReport) -> String {
    let versions: Vec<&str> = report.versions.iter().map(|v| v.version.as_str()).collect();
    let mut scenarios: Vec<&str> = Vec::new();
    for cell in &report.cells {
        if !scenarios.contains(&cell.scenario.as_str()) {
            scenarios.push(&cell.scenario);
        }
    }
    let label = |scenario: &str, version: &str| {
        report.cells.iter().find(|c| c.scenario == scenario && c.version == version).map_or("-".to_string(), cell_label)
    };
    let first = scenarios.iter().map(|s| s.len()).chain(["scenario".len()]).max().unwrap_or(8);
    let widths: Vec<usize> = versions.iter().map(|v| scenarios.iter().map(|s| label(s, v).len()).chain([v.len()]).max().unwrap_or(4)).collect();
    let mut out = format!("{:first$}", "scenario");
    for (v, w) in versions.iter().zip(&widths) {
        out.push_str(&format!("  {v:w$}"));
    }
    out = out.trim_end().to_string();
    out.push('\n');
    for s in &scenarios {
        let mut line = format!("{s:first$}");
        for (v, w) in versions.iter().zip(&widths) {
            line.push_str(&format!("  {:w$}", label(s, v)));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// The family of a scenario: its first path component (`registry`, `ecr`).
pub fn family(scenario: &str) -> &str {
    scenario.split('/').next().unwrap_or(scenario)
}

/// The committed snapshot of one family: a line per cell, grouped by version, so a new ko
/// version is new lines and a changed cell is one changed line. No times, ports or paths.
pub fn render_snapshot(cells: &[(String, String, String)]) -> String {
    let width = cells.iter().map(|(_, s, _)| s.len()).max().unwrap_or(0);
    let vwidth = cells.iter().map(|(v, _, _)| v.len()).max().unwrap_or(0);
    cells.iter().map(|(v, s, label)| format!("{v:vwidth$}  {s:width$}  {label}\n")).collect()
}

/// Reads a snapshot body back into (version, scenario) → label.
pub fn parse_snapshot(body: &str) -> std::collections::BTreeMap<(String, String), String> {
    body.lines()
        .filter_map(|line| {
            let mut words = line.split_whitespace();
            Some(((words.next()?.to_string(), words.next()?.to_string()), words.next()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;

    fn cell(scenario: &str, version: &str, outcome: Outcome, class: Option<FailClass>) -> CellResult {
        CellResult {
            version: version.into(),
            scenario: scenario.into(),
            outcome,
            class,
            detail: String::new(),
            duration_ms: 1234,
            ko_ms: 1000,
            log: "/tmp/x.log".into(),
            env: Default::default(),
            requests: Vec::new(),
        }
    }

    #[test]
    fn snapshots_round_trip() {
        let cells = vec![
            ("v0.15.1".to_string(), "registry/anonymous".to_string(), "pass".to_string()),
            ("v0.15.10".to_string(), "registry/wrong-password".to_string(), "fail(unauthorized)".to_string()),
        ];
        let text = render_snapshot(&cells);
        assert_eq!(text, "v0.15.1   registry/anonymous       pass\nv0.15.10  registry/wrong-password  fail(unauthorized)\n");
        let parsed = parse_snapshot(&text);
        assert_eq!(parsed[&("v0.15.10".to_string(), "registry/wrong-password".to_string())], "fail(unauthorized)");
        assert_eq!(family("registry/anonymous"), "registry");
    }

    #[test]
    fn the_table_is_scenarios_by_versions() {
        let versions = ["v0.15.1", "v0.15.2"].map(|v| VersionInfo { version: v.into(), route: "go".into(), sha256: "x".into() }).to_vec();
        let report = MatrixReport {
            ko_matrix_version: "0".into(),
            started: "t".into(),
            runtime: "process".into(),
            versions,
            cells: vec![
                cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
                cell("ecr/env-session", "v0.15.2", Outcome::Fail, Some(FailClass::Unauthorized)),
                cell("registry/anonymous", "v0.15.1", Outcome::Pass, None),
                cell("registry/anonymous", "v0.15.2", Outcome::InfraError, None),
            ],
        };
        assert_eq!(
            render_table(&report),
            "scenario            v0.15.1  v0.15.2\n\
             ecr/env-session     pass     fail(unauthorized)\n\
             registry/anonymous  pass     infra-error\n"
        );
    }
}
