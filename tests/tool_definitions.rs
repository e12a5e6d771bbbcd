//! A tool defined in TOML alone: crane's definition under another name (`kran`, whose binary
//! is still `crane` in its release archive and from `go install`), in a matrix of its own,
//! runs and gives crane's committed outcomes; the reports and snapshots know it by its name.

mod support;

use std::path::Path;

use ko_matrix::report::{self, MatrixReport};
use support::ko_matrix;

const SCENARIOS: [&str; 4] =
    ["registry/basic-auths", "registry/no-credentials", "registry/tool-login", "http/loopback-127-0-0-1-insecure"];

#[test]
fn a_tool_defined_in_toml_alone_runs_like_the_built_in_one() {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("scenarios"), dir.path().join("scenarios")).unwrap();
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    let crane = std::fs::read_to_string(repo.join("tools/crane.toml")).unwrap();
    let kran = crane.replace("checksums = \"checksums.txt\" }", "checksums = \"checksums.txt\", binary = \"crane\" }");
    assert_ne!(kran, crane, "the archive's executable is named");
    std::fs::write(dir.path().join("tools/kran.toml"), kran).unwrap();
    let globs = SCENARIOS.map(|s| format!("{s:?}")).join(", ");
    let matrix = format!("[tools.kran]\nversions = [\"v0.20.7\"]\nsource = \"go\"\nscenarios = [{globs}]\n");
    std::fs::write(dir.path().join("matrix.toml"), matrix).unwrap();

    let out = ko_matrix().current_dir(dir.path()).args(["run", "--out", "out"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");

    let run = MatrixReport::read(&dir.path().join("out/matrix.json")).unwrap();
    let committed = report::read_snapshots(&repo.join("results")).unwrap();
    assert_eq!(run.cells.len(), SCENARIOS.len());
    for scenario in SCENARIOS {
        let cell = run.cell("kran", "v0.20.7", scenario).unwrap_or_else(|| panic!("no kran cell for {scenario}"));
        let crane = committed.label("crane", "v0.20.7", scenario).expect("crane's snapshot has the cell");
        assert_eq!(cell.label(), crane, "kran@v0.20.7::{scenario}; log: {}", cell.log.display());
    }
    let login_log = dir.path().join(&run.cell("kran", "v0.20.7", "registry/tool-login").unwrap().log);
    let login = std::fs::read_to_string(login_log).unwrap();
    assert!(login.contains("$ kran auth login "), "`${{TOOL}} login` in the definition's words:\n{login}");

    // Another command in that folder reads the tool's snapshots by its name.
    let snapshots = dir.path().join("results/kran");
    std::fs::create_dir_all(&snapshots).unwrap();
    let body: String = SCENARIOS
        .iter()
        .map(|s| format!("v0.20.7  {s}  {}\n", committed.label("crane", "v0.20.7", s).unwrap()))
        .collect();
    std::fs::write(snapshots.join("all.snap"), format!("---\nsource: tests/matrix.rs\n---\n{body}")).unwrap();
    let check = ko_matrix().current_dir(dir.path()).args(["check", "out/matrix.json"]).output().unwrap();
    assert_eq!(check.status.code(), Some(0), "{}", String::from_utf8_lossy(&check.stderr));
}

#[test]
fn a_mistake_in_a_definition_is_located() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    let crane = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("tools/crane.toml")).unwrap();
    std::fs::write(dir.path().join("tools/kran.toml"), crane.replace("\"image-tarball\"", "\"helm-chart\"")).unwrap();
    std::fs::write(dir.path().join("matrix.toml"), "[tools.kran]\nversions = [\"v0.20.7\"]\n").unwrap();
    let out = ko_matrix().current_dir(dir.path()).args(["versions"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr
            .contains("tools/kran.toml:9:11: unknown variant `helm-chart`, expected one of `app`, `image-tarball`, `file`, `chart`, `pushed-image`"),
        "{stderr}"
    );
}
