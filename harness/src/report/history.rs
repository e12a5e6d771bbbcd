//! The full release history's committed outcomes: `results/history/<tool>/<family>.snap`.
//!
//! The default matrix pins a few versions, recorded in `results/<tool>/` and checked by
//! `cargo test` through insta. The history profile (`--profile history`) runs every release;
//! its other versions are recorded here, in the same format, by `ko-matrix record`, so the
//! nightly's check and its regressions (`--snapshots results`) know the whole history. A version
//! the pinned snapshots record is never written here: one cell, one committed label.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{
    parse_snapshot, read_snapshot_files, render_snapshot, version_order, MatrixReport, ReportError, Snapshots,
};
use crate::outcome::Outcome;
use crate::result::family;

/// Where the history lives inside a snapshots directory.
pub const HISTORY_DIR: &str = "history";

/// What `record` wrote.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Recorded {
    /// Files written, each with the number of cells it now holds.
    pub files: Vec<(PathBuf, usize)>,
    /// Cells recorded (new or changed) from this matrix.
    pub cells: usize,
    /// Cells left to the pinned snapshots (their versions are recorded there).
    pub pinned: usize,
}

/// Why a matrix cannot be recorded: cells whose outcome is not the tool's.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error(
        "{} cell(s) did not give the tool's own outcome, so the history would record the harness or chance: {}; \
         run them again (`ko-matrix --profile history run --versions <tool>@<version> --scenarios <scenario>`) and record that run",
        .0.len(), .0.join(", ")
    )]
    NotTheTools(Vec<String>),
    #[error(transparent)]
    Report(#[from] ReportError),
}

/// Adds `dir/history/<tool>/` to `out`.
pub(super) fn read_into(dir: &Path, out: &mut Snapshots) -> Result<(), ReportError> {
    let history = dir.join(HISTORY_DIR);
    let Ok(entries) = std::fs::read_dir(&history) else { return Ok(()) };
    for entry in entries.flatten() {
        let tool = entry.file_name().to_string_lossy().into_owned();
        if entry.path().is_dir() && crate::tool::by_name(&tool).is_some() {
            read_snapshot_files(&entry.path(), &tool, out)?;
        }
    }
    Ok(())
}

/// Writes `report`'s cells into `results/history/<tool>/<family>.snap`, beside what the
/// files already hold (a run of one family adds to them), except the versions the pinned
/// snapshots in `results/<tool>/` record. Refuses a matrix with infra-error or flaky cells.
pub fn record(report: &MatrixReport, results: &Path) -> Result<Recorded, RecordError> {
    let not_the_tools: Vec<String> = report
        .cells
        .iter()
        .filter(|c| matches!(c.outcome, Outcome::InfraError | Outcome::Flaky))
        .map(|c| format!("{} ({})", c.id(), c.label()))
        .collect();
    if !not_the_tools.is_empty() {
        return Err(RecordError::NotTheTools(not_the_tools));
    }
    let mut pinned = Snapshots::default();
    for tool in report.tools() {
        let dir = super::snapshot_dir(results, tool);
        if dir.is_dir() {
            read_snapshot_files(&dir, tool, &mut pinned)?;
        }
    }

    // (tool, family) → (version, scenario) → label
    let mut files: BTreeMap<(String, String), BTreeMap<(String, String), String>> = BTreeMap::new();
    let mut recorded = Recorded::default();
    for cell in &report.cells {
        if pinned.has_version(&cell.tool, &cell.version) {
            recorded.pinned += 1;
            continue;
        }
        let key = (cell.tool.clone(), family(&cell.scenario).to_string());
        if !files.contains_key(&key) {
            let existing = read_body(&history_file(results, &key.0, &key.1))?;
            files.insert(key.clone(), existing);
        }
        let cells = files.get_mut(&key).expect("inserted above");
        let label = cell.label();
        if cells.insert((cell.version.clone(), cell.scenario.clone()), label.clone()).as_ref() != Some(&label) {
            recorded.cells += 1;
        }
    }
    for ((tool, family), cells) in files {
        let path = history_file(results, &tool, &family);
        let dir = path.parent().expect("a file in a tool's directory");
        std::fs::create_dir_all(dir).map_err(|source| ReportError::Io { path: dir.to_path_buf(), source })?;
        let mut rows: Vec<(String, String, String)> = cells.into_iter().map(|((v, s), l)| (v, s, l)).collect();
        rows.sort_by(|a, b| version_order(&a.0).cmp(&version_order(&b.0)).then_with(|| a.1.cmp(&b.1)));
        let text = format!(
            "---\nsource: ko-matrix record\ndescription: \"ko-matrix: {family} scenarios × {tool}'s release history (pass / fail(<class>)); the pinned versions are in results/{tool}/\"\n---\n{}",
            render_snapshot(&rows)
        );
        std::fs::write(&path, text).map_err(|source| ReportError::Io { path: path.clone(), source })?;
        recorded.files.push((path, rows.len()));
    }
    Ok(recorded)
}

fn history_file(results: &Path, tool: &str, family: &str) -> PathBuf {
    results.join(HISTORY_DIR).join(tool).join(format!("{family}.snap"))
}

fn read_body(path: &Path) -> Result<BTreeMap<(String, String), String>, ReportError> {
    match std::fs::read_to_string(path) {
        Ok(text) => Ok(parse_snapshot(text.splitn(3, "---\n").nth(2).unwrap_or_default())),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(ReportError::Io { path: path.to_path_buf(), source }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;
    use crate::report::read_snapshots;
    use crate::report::tests::{cell, report_of};

    #[test]
    fn a_history_run_is_recorded_beside_the_pinned_snapshots() {
        let results = tempfile::tempdir().unwrap();
        let tool = crate::result::shorthand_tool();
        let pinned = results.path().join(&tool);
        std::fs::create_dir_all(&pinned).unwrap();
        std::fs::write(pinned.join("ecr.snap"), "---\nsource: tests/matrix.rs\n---\nv0.15.1  ecr/env-session  pass\n")
            .unwrap();

        let first = report_of(vec![
            cell("ecr/env-session", "v0.15.1", Outcome::Pass, None),
            cell("ecr/env-session", "v0.9.0", Outcome::Fail, Some(FailClass::Unauthorized)),
            cell("ecr/env-session", "v0.10.0", Outcome::Pass, None),
        ]);
        let recorded = record(&first, results.path()).unwrap();
        assert_eq!((recorded.cells, recorded.pinned), (2, 1), "v0.15.1 is pinned: left to results/<tool>/");
        let file = results.path().join(HISTORY_DIR).join(&tool).join("ecr.snap");
        let body = std::fs::read_to_string(&file).unwrap();
        assert!(
            body.ends_with("v0.9.0   ecr/env-session  fail(unauthorized)\nv0.10.0  ecr/env-session  pass\n"),
            "semver order, not string order: {body}"
        );

        // A later run of another family adds to the history and keeps what it held.
        let second = report_of(vec![cell("registry/basic-auths", "v0.9.0", Outcome::Pass, None)]);
        assert_eq!(record(&second, results.path()).unwrap().cells, 1);
        let all = read_snapshots(results.path()).unwrap();
        assert_eq!(all.label(&tool, "v0.9.0", "ecr/env-session"), Some("fail(unauthorized)"));
        assert_eq!(all.label(&tool, "v0.9.0", "registry/basic-auths"), Some("pass"));
        assert_eq!(all.label(&tool, "v0.15.1", "ecr/env-session"), Some("pass"));
        // The same run again records nothing new.
        assert_eq!(record(&second, results.path()).unwrap().cells, 0);
    }

    #[test]
    fn infra_errors_and_flaky_cells_are_not_recorded() {
        let results = tempfile::tempdir().unwrap();
        let run = report_of(vec![
            cell("ecr/env-session", "v0.9.0", Outcome::Pass, None),
            cell("ecr/login-step", "v0.9.0", Outcome::InfraError, None),
            cell("ecr/login-step", "v0.10.0", Outcome::Flaky, None),
        ]);
        let err = record(&run, results.path()).unwrap_err().to_string();
        assert!(err.starts_with("2 cell(s) did not give the tool's own outcome"), "{err}");
        assert!(
            err.contains("@v0.9.0::ecr/login-step (infra-error)") && err.contains("@v0.10.0::ecr/login-step (flaky)")
        );
        assert!(!results.path().join(HISTORY_DIR).exists(), "nothing is written");
    }
}
