//! Real bisections of the ko#1245 cell through the CLI, with bisect.json checked: between
//! releases, and through ko's dependency upgrades down to the module inside cosign's upgrade;
//! and of data-defined tools: regctl between releases, oras and crane through their dependency
//! upgrades.
//! (Deps mode builds ko 17 times: about 8 minutes cold, 2 once the builds are cached.)
//! The binary search itself, and the refusals, run on fake ko releases from a loopback release
//! host: each is a script whose `ko build` really pushes to the cell's registry, or fails.

mod support;

use std::path::Path;

use support::{ko_matrix, write_fake_ko, FakeKo, FileServer};

/// A directory to run bisect in: matrix.toml taking ko from `release_host` by the release
/// route, and the repository's scenarios.
fn fake_ko_project(dir: &Path, release_host: &str) {
    std::os::unix::fs::symlink(Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"), dir.join("scenarios")).unwrap();
    let matrix = format!(
        "[tools.ko]\nversions = [\"v0.30.0\"]\nsource = \"release\"\nrelease_base_url = \"{release_host}\"\n[run]\ncell_timeout = \"2m\"\n"
    );
    std::fs::write(dir.join("matrix.toml"), matrix).unwrap();
    std::fs::create_dir(dir.join("tmp")).unwrap();
}

/// `bisect` in `dir` with its own cache and temporary files (`dir/tmp`); (exit code, stdout, stderr).
fn bisect_in(dir: &Path, cache: &Path, containment: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = bisect_command(dir, cache, containment, args).output().unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn bisect_command(dir: &Path, cache: &Path, containment: &str, args: &[&str]) -> std::process::Command {
    let mut cmd = ko_matrix();
    cmd.current_dir(dir)
        .env("KO_MATRIX_CACHE", cache)
        .env("KO_MATRIX_CONTAINMENT", containment)
        // The worlds' work dirs, which must be gone when bisect is.
        .env("TMPDIR", dir.join("tmp"))
        .args(["bisect", "--scenario", "registry/anonymous", "--out", "out"])
        .args(args);
    cmd
}

/// `ko-matrix bisect ARGS --out OUT` in the repository, with its matrix.toml and scenarios.
fn bisect_in_repo(args: &[&str], out: &Path) -> std::process::Output {
    ko_matrix().current_dir(env!("CARGO_MANIFEST_DIR")).arg("bisect").args(args).arg("--out").arg(out).output().unwrap()
}

/// What bisect records as its containment where nothing forces it: the namespace where the
/// kernel allows one, else proxy-only with the kernel's refusal.
fn assert_containment(recorded: &str) {
    match ko_matrix::containment::probe() {
        Ok(()) => assert_eq!(recorded, "user+network namespace"),
        Err(refused) => {
            eprintln!("note: user namespaces are refused here ({refused}); bisect fell back");
            assert!(recorded.starts_with("proxy-only (the kernel refused a user namespace: "), "{recorded}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn releases_bisect_searches_the_middle_out_to_the_first_bad_release() {
    let (site, dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // v0.30.0 and v0.30.1 push; from v0.30.2 on, ko fails.
    for (patch, pushes) in [(0, true), (1, true), (2, false), (3, false), (4, false), (5, false), (6, false)] {
        let behaviour = if pushes { FakeKo::Pushes } else { FakeKo::Fails };
        write_fake_ko(site.path(), &format!("0.30.{patch}"), behaviour);
    }
    let server = FileServer::start(site.path(), support::Behaviour::Serve).await;
    fake_ko_project(dir.path(), &server.url());
    let (dir_path, cache_path) = (dir.path().to_path_buf(), cache.path().to_path_buf());
    let bisect = |containment: &'static str| {
        let (dir, cache) = (dir_path.clone(), cache_path.clone());
        tokio::task::spawn_blocking(move || {
            let candidates = "--candidates=v0.30.1,v0.30.2,v0.30.3,v0.30.4,v0.30.5";
            bisect_in(&dir, &cache, containment, &["--good", "v0.30.0", "--bad", "v0.30.6", candidates])
        })
    };
    let (code, stdout, stderr) = bisect("auto").await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("culprit: v0.30.2 is the first bad release (the last good is v0.30.1)"), "{stdout}");

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/bisect.json")).unwrap()).unwrap();
    let probes: Vec<(&str, &str, &str)> = report["probes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| (p["what"].as_str().unwrap(), p["verdict"].as_str().unwrap(), p["outcome"].as_str().unwrap()))
        .collect();
    let fail = report["bad_outcome"].as_str().unwrap();
    assert!(fail.starts_with("fail"), "{report}");
    // The ends first; then the middle of 0..=6 (v0.30.3, bad), of 0..=3 (v0.30.1, good), and
    // what is left between them (v0.30.2, bad).
    assert_eq!(
        probes,
        [
            ("v0.30.0 (good end)", "good", "pass"),
            ("v0.30.6 (bad end)", "bad", fail),
            ("v0.30.3", "bad", fail),
            ("v0.30.1", "good", "pass"),
            ("v0.30.2", "bad", fail),
        ],
        "{report}"
    );
    assert_eq!(report["culprit_items"], serde_json::json!(["v0.30.1", "v0.30.2"]));
    // The search fetched only what it probed.
    let cached = support::tree(cache.path());
    assert!(!cached.iter().any(|f| f.contains("v0.30.4") || f.contains("v0.30.5")), "{cached:?}");
    assert_containment(report["containment"].as_str().unwrap_or_else(|| panic!("no containment: {report}")));
    assert!(stdout.contains(&format!("containment: {}; ", report["containment"].as_str().unwrap())), "{stdout}");

    // Forced out of the namespace, the same search, recorded as such.
    let (code, stdout, stderr) = bisect("proxy-only").await.unwrap();
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let again: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.path().join("out/bisect.json")).unwrap()).unwrap();
    assert_eq!(again["containment"], "proxy-only (forced by KO_MATRIX_CONTAINMENT=proxy-only)", "{again}");
    assert_eq!(again["culprit_items"], report["culprit_items"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bisect_refuses_a_flaky_good_end_before_the_bad_end_runs() {
    let (site, dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // The good end fails its first run and passes its retry: flaky.
    write_fake_ko(site.path(), "0.31.0", FakeKo::FailsOnce(site.path().join("failed-once")));
    write_fake_ko(site.path(), "0.31.1", FakeKo::Fails);
    let server = FileServer::start(site.path(), support::Behaviour::Serve).await;
    fake_ko_project(dir.path(), &server.url());
    let (dir_path, cache_path) = (dir.path().to_path_buf(), cache.path().to_path_buf());
    let (code, stdout, stderr) = tokio::task::spawn_blocking(move || {
        bisect_in(&dir_path, &cache_path, "auto", &["--good", "v0.31.0", "--bad", "v0.31.1", "--candidates="])
    })
    .await
    .unwrap();
    assert_eq!(code, Some(2), "a flaky reference is a wrong premise: {stdout}{stderr}");
    assert!(
        stderr.contains("error: the good end (v0.31.0) gives `flaky` for registry/anonymous, so it cannot anchor the bisection: its two runs disagree"),
        "{stderr}"
    );
    assert!(site.path().join("failed-once").exists(), "the good end ran");
    assert!(!stderr.contains("(bad end)"), "refused before the bad end ran: {stderr}");
    assert!(!dir.path().join("out/bisect.json").exists());
    assert_eq!(support::tree(&dir.path().join("tmp")), Vec::<String>::new(), "the refused bisection's world is gone");
}

#[test]
fn releases_bisect_names_v0_15_2_and_refuses_ends_that_agree() {
    let out = tempfile::tempdir().unwrap();
    let run = bisect_in_repo(
        &["--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/env-session", "--candidates", "v0.15.1,v0.15.2"],
        out.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: v0.15.2 is the first bad release (the last good is v0.15.1)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(
        (report["good_outcome"].as_str(), report["bad_outcome"].as_str()),
        (Some("pass"), Some("fail(unauthorized)"))
    );
    assert_eq!(report["probes"].as_array().unwrap().len(), 2, "the two ends were re-run first: {report}");

    let agree = bisect_in_repo(
        &["--good", "v0.15.1", "--bad", "v0.15.3", "--scenario", "ecr/env-session", "--candidates", "v0.15.2"],
        out.path(),
    );
    let stderr = String::from_utf8_lossy(&agree.stderr);
    assert_eq!(agree.status.code(), Some(2), "ends that agree are a wrong premise, exit 2: {stderr}");
    assert!(
        stderr.contains("good (v0.15.1) and bad (v0.15.3) both give `pass` for ecr/env-session: nothing to bisect"),
        "{stderr}"
    );

    let unknown = ko_matrix()
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["bisect", "--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/nope"])
        .output()
        .unwrap();
    assert_eq!(unknown.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        stderr.contains("no scenario `ecr/nope`; known scenarios: ")
            && stderr.contains(", ecr/cred-helper-ecr-login, "),
        "the error lists the choices: {stderr}"
    );
}

/// A tool defined as data bisects like ko: regctl's token-realm check (regclient v0.11.5,
/// `regnet.AllowRedirect`) is found between the matrix's pinned releases.
#[test]
fn releases_bisect_of_a_data_defined_tool_names_its_first_bad_release() {
    let out = tempfile::tempdir().unwrap();
    let run = bisect_in_repo(
        &[
            "--tool",
            "regctl",
            "--good",
            "v0.7.2",
            "--bad",
            "v0.11.7",
            "--scenario",
            "topology/realm-plain-http",
            "--candidates",
            "v0.8.3",
        ],
        out.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: v0.11.7 is the first bad release (the last good is v0.8.3)"), "{stdout}");
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(report["tool"], "regctl", "{report}");
    assert_eq!(
        (report["good_outcome"].as_str(), report["bad_outcome"].as_str()),
        (Some("pass"), Some("fail(unauthorized)"))
    );
    assert_eq!(report["probes"].as_array().unwrap().len(), 3, "both ends, then v0.8.3: {report}");
}

/// Deps mode works for any tool that names its Go module: oras v1.3.3's refusal of a plain-HTTP
/// token realm comes with oras-go v2.6.2's `validateRealm` (oras-go#1246), one of the ten
/// upgrades between v1.3.2 and v1.3.3 (about a minute: each probe is a small oras build).
#[test]
fn deps_bisect_of_oras_names_oras_go() {
    let out = tempfile::tempdir().unwrap();
    let run = bisect_in_repo(
        &[
            "--tool",
            "oras",
            "--good",
            "v1.3.2",
            "--bad",
            "v1.3.3",
            "--scenario",
            "topology/realm-plain-http",
            "--mode",
            "deps",
        ],
        out.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(
        stdout.contains("culprit: 1 of the 10 dependency upgrades from v1.3.2 to v1.3.3 break the cell: oras.land/oras-go/v2 v2.6.0 → v2.6.2"),
        "{stdout}"
    );
    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    assert_eq!(report["tool"], "oras", "{report}");
    assert_eq!(report["culprit_items"], serde_json::json!(["oras.land/oras-go/v2 v2.6.0 → v2.6.2"]), "{report}");
    assert!(
        report["narrowing"]["chain"]
            .as_str()
            .unwrap()
            .contains("the break is in the code of oras.land/oras-go/v2 itself"),
        "none of the modules oras-go raises breaks it alone: {report}"
    );
    assert_eq!(report["bad_outcome"], "fail(realm-refused)", "{report}");
}

/// crane v0.20.7's dependency upgrades need Go 1.24 where crane v0.19.1 asks for 1.18: the
/// probes take the toolchain the upgrades need (as `go get` raises the go line), so the ends
/// build, and a change in crane's own code (ggcr PR #1914, `REGISTRY_AUTH_FILE`) is told apart
/// from its dependencies.
#[test]
fn deps_bisect_builds_upgrades_that_need_a_newer_go_and_names_the_tools_own_code() {
    let out = tempfile::tempdir().unwrap();
    let run = bisect_in_repo(
        &[
            "--tool",
            "crane",
            "--good",
            "v0.19.1",
            "--bad",
            "v0.20.7",
            "--scenario",
            "registry/podman-registry-auth-file",
            "--mode",
            "deps",
        ],
        out.path(),
    );
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert_eq!(run.status.code(), Some(2), "a wrong premise, not an infra-error: {stderr}");
    assert!(stderr.contains("probe 2 → Good (fail(unauthorized)"), "the bad end was built and ran: {stderr}");
    assert!(
        stderr.contains("crane v0.19.1 with all of v0.20.7's dependency upgrades behaves like v0.19.1 (`fail(unauthorized)`): the break is in crane's own code, not its dependencies; bisect commits instead"),
        "{stderr}"
    );
}

#[test]
fn deps_bisect_narrows_cosigns_upgrade_to_the_aws_sdk_core() {
    let out = tempfile::tempdir().unwrap();
    let run = bisect_in_repo(
        &["--good", "v0.15.1", "--bad", "v0.15.2", "--scenario", "ecr/env-session", "--mode", "deps"],
        out.path(),
    );
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(run.status.success(), "{stdout}{}", String::from_utf8_lossy(&run.stderr));
    assert!(stdout.contains("culprit: 1 of the 60 dependency upgrades from v0.15.1 to v0.15.2 break the cell: github.com/sigstore/cosign/v2 v2.2.1 → v2.2.3"), "{stdout}");
    assert!(
        stdout.contains("chain: github.com/sigstore/cosign/v2 v2.2.1 → v2.2.3 breaks the cell because it raises github.com/aws/aws-sdk-go-v2 v1.21.2 → v1.24.1; that alone"),
        "the second stage names the module inside cosign's upgrade: {stdout}"
    );
    assert!(!stdout.contains("separates the builds"), "the ranked chain replaces the long list: {stdout}");
    for line in stdout.lines().filter(|l| l.contains(" + ")) {
        assert!(line.matches('@').count() <= 3, "a probe line lists at most three modules: {line}");
    }

    let report: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("bisect.json")).unwrap()).unwrap();
    let narrowing = &report["narrowing"];
    assert_eq!(narrowing["culprit"][0]["module"], "github.com/aws/aws-sdk-go-v2", "{narrowing}");
    assert_eq!(narrowing["culprit"].as_array().unwrap().len(), 1, "{narrowing}");
    let raised = narrowing["raised"].as_array().unwrap();
    assert!(
        raised.len() > 10 && raised.iter().all(|u| u["module"] != "github.com/sigstore/cosign/v2"),
        "the delta, less cosign itself: {narrowing}"
    );
    assert!(!report["separating_modules"].as_array().unwrap().is_empty(), "the full list stays in bisect.json");
    let probes = report["probes"].as_array().unwrap();
    let stage_two: Vec<_> = probes.iter().filter(|p| p["what"].as_str().unwrap().starts_with("stage 2:")).collect();
    assert!(
        !stage_two.is_empty()
            && stage_two
                .iter()
                .all(|p| !p["upgrades"].as_array().unwrap().is_empty()
                    && !p["build_list"].as_array().unwrap().is_empty()),
        "every probe's set and build list are kept"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_probe_stops_the_contained_world_and_leaves_nothing() {
    let (site, dir, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let hanging = site.path().join("hanging");
    write_fake_ko(site.path(), "0.32.0", FakeKo::Hangs(hanging.clone()));
    write_fake_ko(site.path(), "0.32.1", FakeKo::Fails);
    let server = FileServer::start(site.path(), support::Behaviour::Serve).await;
    fake_ko_project(dir.path(), &server.url());
    let child = bisect_command(dir.path(), cache.path(), "auto", &["--good", "v0.32.0", "--bad", "v0.32.1"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    support::wait_for("the good end's ko to start", std::time::Duration::from_secs(120), || hanging.exists());
    let tmp = dir.path().join("tmp");
    assert!(!support::tree(&tmp).is_empty(), "the world works in TMPDIR");
    // To this process alone, as a supervisor sends it (a terminal's Ctrl-C reaches the group).
    unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
    let output = tokio::task::spawn_blocking(move || child.wait_with_output().unwrap()).await.unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(143), "{stderr}");
    let needle = tmp.display().to_string();
    support::wait_for("the world's processes to go", std::time::Duration::from_secs(10), || {
        support::processes_with_env(&needle).is_empty()
    });
    assert_eq!(support::tree(&tmp), Vec::<String>::new(), "the world's work dir is removed: {stderr}");
}
