//! The command line: help, exit codes, and errors a user can act on.

mod support;

use std::path::Path;

use support::ko_matrix;

fn run(args: &[&str], dir: &std::path::Path) -> (i32, String, String) {
    let out = ko_matrix().current_dir(dir).args(args).output().unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
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
    assert!(
        fetch_help.contains("Examples:") && fetch_help.contains("ko-matrix fetch 0.15.1 0.15.2 0.15.3"),
        "{fetch_help}"
    );
}

#[test]
fn a_bad_matrix_file_exits_2_with_its_location() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), "[ko]\nversions = [\"v0.15.1\"]\nsource = \"docker\"\n").unwrap();
    let (code, _, stderr) = run(&["fetch"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(
        stderr.contains("matrix.toml:3:10: unknown variant `docker`, expected one of `auto`, `release`, `go`, `path`"),
        "{stderr}"
    );
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
    let (dir, cache, empty_path) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
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
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"), dir.path().join("scenarios"))
        .unwrap();
    std::fs::write(
        dir.path().join("matrix.toml"),
        "[ko]\nversions = [\"v0.15.1\"]\n[run]\nscenarios = [\"ecr/env-static\"]\n[ecr]\nbackend = \"localstack\"\n",
    )
    .unwrap();
    let out = ko_matrix()
        .current_dir(dir.path())
        .env_remove("LOCALSTACK_AUTH_TOKEN")
        .args(["run", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "a missing token is the user's to fix: {stderr}");
    let line = stderr.lines().find(|l| l.starts_with("error:")).unwrap_or_else(|| panic!("{stderr}"));
    assert!(line.contains("ecr.backend = \"localstack\" needs LOCALSTACK_AUTH_TOKEN (LocalStack's ECR is a Pro feature) or ecr.localstack_endpoint"), "{line}");
}

/// A matrix.json as a run writes it: `cells` are (version, scenario, label).
fn matrix_json(dir: &Path, versions: &[&str], scenarios: &[&str], cells: &[(&str, &str, &str)]) -> std::path::PathBuf {
    let cells: Vec<serde_json::Value> = cells
        .iter()
        .map(|(version, scenario, label)| {
            let (outcome, class) = match label.strip_prefix("fail(") {
                Some(rest) => ("fail", Some(rest.trim_end_matches(')'))),
                None => (*label, None),
            };
            serde_json::json!({
                "version": version, "scenario": scenario, "outcome": outcome, "class": class,
                "detail": format!("ko exited 1: Error: {scenario} at {version}"), "duration_ms": 10, "tool_ms": 9, "log": "/tmp/x.log",
            })
        })
        .collect();
    let report = serde_json::json!({
        "ko_matrix_version": env!("CARGO_PKG_VERSION"), "started": "2026-11-29T00:00:00Z", "runtime": "process",
        "versions": versions.iter().map(|v| serde_json::json!({"version": v, "route": "go", "sha256": "x"})).collect::<Vec<_>>(),
        "selected_scenarios": scenarios, "cells": cells,
    });
    let path = dir.join("matrix.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report).unwrap()).unwrap();
    path
}

#[test]
fn regressions_name_each_change_along_the_version_axis() {
    let dir = tempfile::tempdir().unwrap();
    let matrix = matrix_json(
        dir.path(),
        &["v0.15.3", "v0.15.1", "v0.15.2"],
        &["ecr/env-session", "ecr/no-credentials"],
        &[
            ("v0.15.1", "ecr/env-session", "pass"),
            ("v0.15.2", "ecr/env-session", "fail(unauthorized)"),
            ("v0.15.3", "ecr/env-session", "pass"),
            ("v0.15.1", "ecr/no-credentials", "fail(unauthorized)"),
            ("v0.15.2", "ecr/no-credentials", "fail(unauthorized)"),
            ("v0.15.3", "ecr/no-credentials", "fail(unauthorized)"),
        ],
    );
    let (code, stdout, stderr) = run(&["regressions", matrix.to_str().unwrap()], dir.path());
    assert_eq!(code, 1, "a regression exits 1: {stdout}{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    // A matrix.json from before tools were a parameter (no `tool` anywhere) means ko.
    assert!(
        lines[0].starts_with("regression   ecr/env-session  ko@v0.15.1 pass → v0.15.2 fail(unauthorized)"),
        "{stdout}"
    );
    assert!(
        lines[0].ends_with(
            "ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps"
        ),
        "{stdout}"
    );
    assert_eq!(lines[1].trim(), "ko exited 1: Error: ecr/env-session at v0.15.2", "the tool's deciding line follows");
    assert!(
        lines[2].starts_with("fix          ecr/env-session  ko@v0.15.2 fail(unauthorized) → v0.15.3 pass"),
        "{stdout}"
    );
    assert_eq!(lines.len(), 3, "the failure all versions share is no change: {stdout}");
    assert!(
        stderr.contains("1 regression(s), 1 fix(es), 0 class change(s) along ko v0.15.1 → v0.15.2 → v0.15.3"),
        "{stderr}"
    );

    // Recorded in the snapshots (here in the layout from before `results/<tool>/`), the same
    // regression is known and passes.
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir(&snapshots).unwrap();
    std::fs::write(snapshots.join("ecr.snap"), "---\nsource: tests/matrix.rs\n---\nv0.15.1  ecr/env-session  pass\nv0.15.2  ecr/env-session  fail(unauthorized)\n").unwrap();
    let (code, stdout, stderr) =
        run(&["regressions", "--snapshots", snapshots.to_str().unwrap(), matrix.to_str().unwrap()], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(
        stdout.contains("(known: in the snapshots)") && stderr.contains("(1 known from the snapshots)"),
        "{stdout}{stderr}"
    );
    let (_, markdown, _) = run(&["regressions", "--format", "markdown", matrix.to_str().unwrap()], dir.path());
    assert!(
        markdown.contains("- 🔻 **regression** `ecr/env-session` ko: v0.15.1 pass → v0.15.2 fail(unauthorized)"),
        "{markdown}"
    );
    assert!(markdown.contains("explain it: `ko-matrix bisect --tool ko --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps`"), "{markdown}");
}

#[test]
fn check_reports_cells_that_did_not_run() {
    let dir = tempfile::tempdir().unwrap();
    // A crashed shard: v0.15.1 × ecr/imds-v2 was selected and snapshotted, but never ran.
    let matrix = matrix_json(
        dir.path(),
        &["v0.15.1"],
        &["ecr/env-session", "ecr/imds-v2"],
        &[("v0.15.1", "ecr/env-session", "pass")],
    );
    let snapshots = dir.path().join("snapshots");
    std::fs::create_dir_all(snapshots.join("ko")).unwrap();
    std::fs::write(snapshots.join("ko/ecr.snap"), "---\nsource: tests/matrix.rs\n---\nv0.15.1  ecr/env-session  pass\nv0.15.1  ecr/imds-v2  pass\nv0.15.1  ecr/web-identity  pass\n").unwrap();
    let (code, stdout, stderr) =
        run(&["check", "--snapshots", snapshots.to_str().unwrap(), matrix.to_str().unwrap()], dir.path());
    assert_eq!(code, 1, "{stdout}{stderr}");
    assert_eq!(
        stdout.trim(),
        "missing: ko@v0.15.1::ecr/imds-v2 (snapshot: pass) did not run; a shard or the run may have stopped early",
        "ecr/web-identity was not selected: {stdout}"
    );
}

#[test]
fn run_outside_the_repository_after_init() {
    let dir = tempfile::tempdir().unwrap();
    let (code, stdout, stderr) = run(&["init"], dir.path());
    assert_eq!(code, 0, "{stdout}{stderr}");
    assert!(dir.path().join("matrix.toml").is_file() && dir.path().join("scenarios/ecr/env-session.toml").is_file());
    let (again, _, refused) = run(&["init"], dir.path());
    assert_eq!(again, 2, "init never overwrites: {refused}");
    // Without scenarios/app the built-in app is built.
    std::fs::remove_dir_all(dir.path().join("scenarios/app")).unwrap();
    let (code, stdout, stderr) = run(
        &["run", "--versions", "v0.15.2", "--scenarios", "registry/anonymous,registry/creds-store", "--jobs", "2"],
        dir.path(),
    );
    assert_eq!(code, 0, "{stdout}{stderr}");
    // creds-store goes through the cells' credential helper: this binary under another name.
    let rows: Vec<Vec<&str>> = stdout.lines().map(|l| l.split_whitespace().collect()).collect();
    assert!(
        rows.contains(&vec!["registry/anonymous", "pass"]) && rows.contains(&vec!["registry/creds-store", "pass"]),
        "{stdout}"
    );
    assert!(dir.path().join("results/latest/junit.xml").is_file());
    // The run records how it was contained, and says so in its summary line.
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("results/latest/matrix.json")).unwrap()).unwrap();
    assert_containment(&report, &stderr);
}

/// What `run` records as its containment where nothing forces it: the namespace where the
/// kernel allows one, else proxy-only with the kernel's refusal.
fn assert_containment(report: &serde_json::Value, stderr: &str) {
    let recorded =
        report["containment"].as_str().unwrap_or_else(|| panic!("matrix.json records no containment: {report}"));
    match ko_matrix::containment::probe() {
        Ok(()) => assert_eq!(recorded, "user+network namespace", "{stderr}"),
        Err(refused) => {
            eprintln!("note: user namespaces are refused here ({refused}); the run fell back");
            assert!(recorded.starts_with("proxy-only (the kernel refused a user namespace: "), "{recorded}");
        }
    }
    assert!(stderr.contains(&format!("; containment: {recorded}; ")), "the summary line names it: {stderr}");
}

#[test]
fn no_matrix_file_says_how_to_get_one() {
    let dir = tempfile::tempdir().unwrap();
    let (code, _, stderr) = run(&["run"], dir.path());
    assert_eq!(code, 2, "{stderr}");
    assert!(stderr.contains("no matrix.toml here; `ko-matrix init` writes one"), "{stderr}");
}

#[test]
fn sigterm_mid_run_keeps_the_finished_cells() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut child = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args([
            "run",
            "--versions",
            "v0.15.1",
            "--scenarios",
            "registry/*",
            "--jobs",
            "1",
            "--out",
            out.to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let finished_logs = || {
        std::fs::read_dir(out.join("logs"))
            .map(|d| d.flatten().filter(|e| e.path().extension().is_some_and(|x| x == "log")).count())
            .unwrap_or(0)
    };
    support::wait_for("two cells to finish", std::time::Duration::from_secs(300), || finished_logs() >= 2);
    // The registries, the cell's ko and ko's go children, as they are at the signal.
    let descendants = descendants_of(child.id());
    assert!(!descendants.is_empty(), "the run has child processes (its registries at least)");
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let started = std::time::Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "ko-matrix did not stop within 60 s of SIGTERM"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    };
    let output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(status.code(), Some(143), "{stderr}");
    let report: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    assert_eq!(report["interrupted"], true, "{report}");
    let cells = report["cells"].as_array().unwrap().len();
    let selected = report["selected_scenarios"].as_array().unwrap().len();
    assert!(cells >= 2 && cells < selected, "the finished cells, not all {selected}: {cells}");
    assert!(stderr.contains("interrupted before every cell ran"), "{stderr}");
    assert_containment(&report, &stderr);
    assert_eq!(stderr.matches("terminated; stopping child processes").count(), 1, "said once: {stderr}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let orphans: Vec<String> = descendants
        .iter()
        .filter(|(pid, start)| process_start(*pid).as_ref() == Some(start))
        .map(|(pid, _)| {
            format!(
                "{pid}: {}",
                std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default().replace('\0', " ")
            )
        })
        .collect();
    assert!(orphans.is_empty(), "processes outlived the harness: {orphans:?}");
}

/// A process's start time (field 22 of /proc/PID/stat), which tells it from a later process
/// given the same pid; `None` when it is gone or a zombie (dead, waiting to be reaped).
fn process_start(pid: u32) -> Option<String> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    (fields.first() != Some(&"Z")).then(|| fields.get(19).map(|s| s.to_string()))?
}

/// Every live descendant of `root` as (pid, start time).
fn descendants_of(root: u32) -> Vec<(u32, String)> {
    let parents: Vec<(u32, u32)> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((pid, stat.rsplit_once(')')?.1.split_whitespace().nth(1)?.parse().ok()?))
        })
        .collect();
    let mut found = vec![root];
    let mut i = 0;
    while i < found.len() {
        let parent = found[i];
        found.extend(parents.iter().filter(|(_, ppid)| *ppid == parent).map(|(pid, _)| *pid));
        i += 1;
    }
    found.into_iter().skip(1).filter_map(|pid| Some((pid, process_start(pid)?))).collect()
}

#[test]
fn two_runs_at_once_share_the_cache() {
    let dir = tempfile::tempdir().unwrap();
    // The second run is forced to proxy-only containment: the outcomes must not differ.
    let spawn = |out: &str, containment: &str| {
        ko_matrix()
            .current_dir(env!("CARGO_MANIFEST_DIR"))
            .env("KO_MATRIX_CONTAINMENT", containment)
            .args([
                "run",
                "--versions",
                "v0.15.1",
                "--scenarios",
                "registry/anonymous,registry/basic-auths",
                "--out",
                dir.path().join(out).to_str().unwrap(),
            ])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap()
    };
    let (a, b) = (spawn("a", "auto"), spawn("b", "proxy-only"));
    for (name, child) in [("a", a), ("b", b)] {
        let out = child.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        let text = format!("{}{stderr}", String::from_utf8_lossy(&out.stdout));
        assert_eq!(out.status.code(), Some(0), "{name}: {text}");
        let report: serde_json::Value =
            serde_json::from_slice(&std::fs::read(dir.path().join(name).join("matrix.json")).unwrap()).unwrap();
        let outcomes: Vec<&str> =
            report["cells"].as_array().unwrap().iter().map(|c| c["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, ["pass", "pass"], "{name}: {text}");
        if name == "a" {
            assert_containment(&report, &stderr);
        } else {
            assert_eq!(report["containment"], "proxy-only (forced by KO_MATRIX_CONTAINMENT=proxy-only)", "{text}");
            assert_eq!(
                stderr.matches("containment: proxy-only (forced by KO_MATRIX_CONTAINMENT=proxy-only): ").count(),
                1,
                "said once: {stderr}"
            );
        }
    }
}

/// Bad input to `run` and `bisect` exits 2 at once: before the namespace, the services or any
/// output exist.
#[test]
fn bad_input_exits_2_before_anything_starts() {
    let dir = tempfile::tempdir().unwrap();
    let repo = env!("CARGO_MANIFEST_DIR");
    let afile = dir.path().join("afile");
    std::fs::write(&afile, "").unwrap();
    let (out, under_afile) = (dir.path().join("out"), afile.join("sub"));
    let cases: [(&[&str], &str); 7] = [
        (
            // crane's `scenarios` in matrix.toml leave ecr/no-credentials out: no cell would run.
            &["run", "--versions", "crane@v0.22.1", "--scenarios", "ecr/no-credentials", "--out", out.to_str().unwrap()],
            "no cell to run: the selected scenarios (ecr/no-credentials) are outside the `scenarios` of every selected tool (crane)",
        ),
        (
            &["run", "--versions", "v0.15.1", "--scenarios", "registry/anonymous", "--out", afile.to_str().unwrap()],
            "is a file, not a directory; give a directory",
        ),
        (&["run", "--versions", "v0.15.1", "--out", under_afile.to_str().unwrap()], "afile is a file, not a directory"),
        (
            &["run", "--jobs", "0", "--out", out.to_str().unwrap()],
            "invalid value '0' for '--jobs <JOBS>': at least 1 cell must run at a time; give 1 or more",
        ),
        (&["run", "--jobs", "many", "--out", out.to_str().unwrap()], "`many` is not a number of cells"),
        (
            &[
                "bisect",
                "--good",
                "v0.15.1",
                "--bad",
                "0.15.1",
                "--scenario",
                "ecr/env-session",
                "--out",
                out.to_str().unwrap(),
            ],
            "--good and --bad are both v0.15.1: a bisection needs a good and a bad version whose cells differ",
        ),
        (
            &[
                "bisect",
                "--good",
                "v0.15.1",
                "--bad",
                "v0.15.2",
                "--scenario",
                "ecr/env-session",
                "--out",
                afile.to_str().unwrap(),
            ],
            "is a file, not a directory",
        ),
    ];
    for (args, message) in cases {
        let started = std::time::Instant::now();
        let (code, stdout, stderr) = run(args, Path::new(repo));
        assert_eq!(code, 2, "{args:?}: {stdout}{stderr}");
        assert!(stderr.contains(message), "{args:?}: {stderr}");
        assert!(!stderr.contains("containment:") && !stderr.contains("versions:"), "nothing started: {stderr}");
        assert!(started.elapsed() < std::time::Duration::from_secs(5), "{args:?} took {:?}", started.elapsed());
        assert!(!out.exists(), "{args:?} created {}", out.display());
    }
}

/// The module proxy's final "no such version" is the user's to fix (exit 2), with the releases
/// it has instead; nothing is started or written. (Needs the module proxy.)
#[test]
fn an_unknown_version_exits_2_with_the_known_ones() {
    let (dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let out = dir.path().join("out");
    let started = std::time::Instant::now();
    let output = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KO_MATRIX_CACHE", cache.path())
        .args(["run", "--versions", "v9.9.9", "--scenarios", "registry/anonymous", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the Go module proxy does not know github.com/google/ko@v9.9.9: "), "{stderr}");
    assert!(
        stderr.contains("(nearest to v9.9.9: v") && stderr.contains("`ko-matrix versions` lists them all"),
        "the versions that exist are named: {stderr}"
    );
    assert!(!stderr.contains("containment:"), "no namespace, no services: {stderr}");
    assert!(!out.exists(), "nothing written");
    assert!(started.elapsed() < std::time::Duration::from_secs(60), "took {:?}", started.elapsed());

    // bisect checks its ends before any world starts (the good end first: v0.15.1 is not built).
    let output = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KO_MATRIX_CACHE", cache.path())
        .args(["bisect", "--good", "v9.9.9", "--bad", "v0.15.1", "--scenario", "registry/anonymous", "--out"])
        .arg(&out)
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("the Go module proxy does not know github.com/google/ko@v9.9.9: "), "{stderr}");
    assert!(!stderr.contains("containment:") && !stderr.contains("v0.15.1"), "nothing else started: {stderr}");
    assert!(!out.exists(), "nothing written");
}
