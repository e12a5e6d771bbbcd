//! A tool defined in TOML alone: crane's definition under another name (`kran`, whose binary
//! is still `crane` in its release archive and from `go install`), in a matrix of its own,
//! runs and gives crane's committed outcomes; the reports and snapshots know it by its name.
//! regctl's under another name (`rgctl`) logs in with renamed flags, sets a plain-HTTP registry
//! up with its own command, and passes only when the gateway saw it push the tag the harness
//! then resolves: a tool that exits 0 without pushing fails.

mod support;

use std::path::Path;

use ko_matrix::report::{self, MatrixReport};
use support::ko_matrix;

const SCENARIOS: [&str; 4] =
    ["registry/basic-auths", "registry/no-credentials", "registry/tool-login", "http/loopback-127-0-0-1-insecure"];

/// A matrix folder of its own: the repository's scenarios, `tools` (name, definition) and
/// `matrix`; runs it and returns the folder and its report, with the committed snapshots.
fn run_defined(tools: &[(&str, String)], matrix: &str) -> (tempfile::TempDir, MatrixReport, report::Snapshots) {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(repo.join("scenarios"), dir.path().join("scenarios")).unwrap();
    std::fs::create_dir(dir.path().join("tools")).unwrap();
    for (name, definition) in tools {
        std::fs::write(dir.path().join(format!("tools/{name}.toml")), definition).unwrap();
    }
    std::fs::write(dir.path().join("matrix.toml"), matrix).unwrap();
    let out = ko_matrix().current_dir(dir.path()).args(["run", "--out", "out"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let run = MatrixReport::read(&dir.path().join("out/matrix.json")).unwrap();
    let committed = report::read_snapshots(&repo.join("results")).unwrap();
    (dir, run, committed)
}

/// `tool@version`'s cells of `scenarios` in `run` have `like`'s committed outcomes.
fn same_as(
    run: &MatrixReport,
    committed: &report::Snapshots,
    (tool, like): (&str, &str),
    version: &str,
    scenarios: &[&str],
) {
    for scenario in scenarios {
        let cell = run.cell(tool, version, scenario).unwrap_or_else(|| panic!("no {tool} cell for {scenario}"));
        let expected = committed.label(like, version, scenario).expect("the snapshot has the cell");
        assert_eq!(cell.label(), expected, "{tool}@{version}::{scenario}; log: {}", cell.log.display());
    }
}

fn definition(name: &str) -> String {
    std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tools/{name}.toml"))).unwrap()
}

fn globs(scenarios: &[&str]) -> String {
    scenarios.iter().map(|s| format!("{s:?}")).collect::<Vec<_>>().join(", ")
}

#[test]
fn a_tool_defined_in_toml_alone_runs_like_the_built_in_one() {
    let crane = definition("crane");
    let kran = crane.replace("checksums = \"checksums.txt\" }", "checksums = \"checksums.txt\", binary = \"crane\" }");
    assert_ne!(kran, crane, "the archive's executable is named");
    let matrix =
        format!("[tools.kran]\nversions = [\"v0.20.7\"]\nsource = \"go\"\nscenarios = [{}]\n", globs(&SCENARIOS));
    let (dir, run, committed) = run_defined(&[("kran", kran)], &matrix);
    assert_eq!(run.cells.len(), SCENARIOS.len());
    same_as(&run, &committed, ("kran", "crane"), "v0.20.7", &SCENARIOS);
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
fn a_tool_defined_in_toml_alone_resolves_the_tag_it_pushed() {
    let regctl = definition("regctl");
    // Exits 0 and pushes nothing: `version` in place of the push.
    let push = regctl.lines().find(|l| l.starts_with("push = ")).expect("regctl's push");
    let liar = regctl.replace(push, "push = [\"version\"]");
    let matrix = format!(
        "[tools.rgctl]\nversions = [\"v0.11.7\"]\nsource = \"go\"\nscenarios = [{}]\n\n[tools.liar]\nversions = [\"v0.11.7\"]\nsource = \"go\"\nscenarios = [\"registry/anonymous\"]\n",
        globs(&SCENARIOS)
    );
    let (dir, run, committed) = run_defined(&[("rgctl", regctl), ("liar", liar)], &matrix);
    same_as(&run, &committed, ("rgctl", "regctl"), "v0.11.7", &SCENARIOS);
    let log = |tool: &str, scenario: &str| {
        std::fs::read_to_string(dir.path().join(&run.cell(tool, "v0.11.7", scenario).unwrap().log)).unwrap()
    };
    let login = log("rgctl", "registry/tool-login");
    assert!(login.contains("$ rgctl registry login basic.ko-matrix.test --user "), "{login}");
    assert!(login.contains(" --pass-stdin "), "{login}");
    let insecure = log("rgctl", "http/loopback-127-0-0-1-insecure");
    assert!(insecure.contains("$ rgctl registry set --tls disabled 127.0.0.1:"), "{insecure}");
    let pushed = log("rgctl", "registry/basic-auths");
    assert!(pushed.contains("== fetch back\nfetched back sha256:"), "{pushed}");

    let liar = run.cell("liar", "v0.11.7", "registry/anonymous").unwrap();
    assert_eq!(liar.label(), "fail(other)");
    assert!(
        liar.detail.contains("but the gateway saw no PUT of ") && liar.detail.contains(":latest"),
        "{}",
        liar.detail
    );
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
