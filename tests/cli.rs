//! The command line: help, exit codes, and errors a user can act on.

mod support;

use std::path::Path;

use support::ko_matrix;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = ko_matrix().current_dir(dir).args(args).output().unwrap();
    (out.status.code().unwrap_or(-1), String::from_utf8_lossy(&out.stdout).into_owned(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn help_documents_exit_codes_and_examples() {
    let dir = tempfile::tempdir().unwrap();
    let (code, help, _) = run(&["--help"], dir.path());
    assert_eq!(code, 0);
    for needle in ["Exit codes:", "2    bad input", "3    infrastructure", "fetch", "versions", "run"] {
        assert!(help.contains(needle), "--help lacks {needle:?}:\n{help}");
    }
    let (_, fetch_help, _) = run(&["fetch", "--help"], dir.path());
    assert!(fetch_help.contains("Examples:") && fetch_help.contains("ko-matrix fetch 0.15.1 0.15.2 0.15.3"), "{fetch_help}");
}

#[test]
fn a_bad_matrix_file_exits_2_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), "[ko]\nversions = [\"v0.15.1\"]\nsource = \"docker\"\n").unwrap();
    let (code, _, stderr) = run(&["fetch"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("matrix.toml:3:10: unknown variant `docker`, expected one of `auto`, `release`, `go`, `path`"), "{stderr}");
    assert!(stderr.contains("3 | source = \"docker\""), "{stderr}");
}

#[test]
fn a_bad_version_argument_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["fetch", "v 1"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("`v 1` is not a version; expected an exact version"), "{stderr}");
    let (code, _, stderr) = run(&["fetch", "--source", "docker", "v0.15.2"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("expected one of: auto, release, go, path"), "{stderr}");
}

#[test]
fn a_missing_go_says_what_to_install() {
    let (dir, cache, empty_path) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = ko_matrix()
        .current_dir(dir.path())
        .env("PATH", empty_path.path())
        .env("KO_MATRIX_CACHE", cache.path())
        .args(["fetch", "--source", "go", "v0.15.2"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(stderr.contains("`go` was not found on PATH; install Go 1.21.0 or newer"), "{stderr}");
}

#[test]
fn source_release_refuses_a_branch() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["fetch", "--source", "release", "main"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("source = \"release\" takes release versions like v0.15.2, not `main`"), "{stderr}");
}

#[test]
fn an_explicit_localstack_backend_without_its_token_fails_fast_in_one_line() {
    let dir = tempfile::tempdir().unwrap();
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"), dir.path().join("scenarios")).unwrap();
    std::fs::write(dir.path().join("matrix.toml"), "[ko]\nversions = [\"v0.15.1\"]\n[run]\nscenarios = [\"ecr/env-static\"]\n[ecr]\nbackend = \"localstack\"\n").unwrap();
    let out = ko_matrix().current_dir(dir.path()).env_remove("LOCALSTACK_AUTH_TOKEN").args(["run", "--out"]).arg(dir.path().join("out")).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("ecr.backend = \"localstack\" needs LOCALSTACK_AUTH_TOKEN (LocalStack's ECR is a Pro feature) or ecr.localstack_endpoint"), "{line}");
}
