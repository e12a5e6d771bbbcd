//! Installs are atomic and safe to race: a fetch killed mid-download or mid-build leaves
//! nothing a later run would use, and two processes fetching one version share one result.

mod support;

use std::process::Stdio;
use std::time::Duration;

use support::{ko_matrix, processes_with_env, staging_dirs, tree, wait_for, write_release, Behaviour, FileServer};

/// `ko-matrix fetch ARGS` with a private cache, run where there is no matrix.toml.
fn fetch_cmd(cache: &std::path::Path, args: &[&str]) -> std::process::Command {
    let mut cmd = ko_matrix();
    cmd.env("KO_MATRIX_CACHE", cache).current_dir(cache).arg("fetch").args(args);
    cmd
}

const COMPLETE: [&str; 4] = [
    "tools/ko/.v0.15.2-release.lock",
    "tools/ko/v0.15.2-release/ko",
    "tools/ko/v0.15.2-release/manifest.json",
    "tools/ko/v0.15.2-release/verified",
];

#[tokio::test(flavor = "multi_thread")]
async fn a_download_killed_midway_leaves_nothing_usable() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let stalling = FileServer::start(site.path(), Behaviour::StallArchive(1_000_000)).await;

    let mut child = fetch_cmd(cache.path(), &["--source", "release", "--release-base-url", &stalling.url(), "v0.15.2"])
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let partial_archive = || {
        staging_dirs(cache.path())
            .iter()
            .any(|d| std::fs::read_dir(d).unwrap().flatten().any(|f| f.metadata().unwrap().len() > 0))
    };
    wait_for("a partial download in a staging dir", Duration::from_secs(30), partial_archive);
    child.kill().unwrap(); // SIGKILL: no chance to clean up.
    child.wait().unwrap();
    assert!(
        !tree(cache.path()).iter().any(|f| f.ends_with("v0.15.2-release/ko")),
        "a half download must never be installed"
    );

    let serving = FileServer::start(site.path(), Behaviour::Serve).await;
    let out = fetch_cmd(cache.path(), &["--source", "release", "--release-base-url", &serving.url(), "v0.15.2"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(tree(cache.path()), COMPLETE, "exactly one good binary, no staging leftovers");
}

#[tokio::test(flavor = "multi_thread")]
async fn two_processes_fetching_one_version_share_one_install() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let slow = FileServer::start(site.path(), Behaviour::ThrottleArchive(Duration::from_millis(30))).await;

    let args = ["--source", "release", "--release-base-url", &slow.url(), "v0.15.2"];
    let first = fetch_cmd(cache.path(), &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let second = fetch_cmd(cache.path(), &args).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let (first, second) = (first.wait_with_output().unwrap(), second.wait_with_output().unwrap());
    for out in [&first, &second] {
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    let line = |out: &std::process::Output| String::from_utf8_lossy(&out.stdout).trim().to_string();
    let (a, b) = (line(&first), line(&second));
    let fields = |l: &str| l.split('\t').map(str::to_string).collect::<Vec<_>>();
    let (fa, fb) = (fields(&a), fields(&b));
    assert_eq!((&fa[3], &fa[4]), (&fb[3], &fb[4]), "same digest and path:\n{a}\n{b}");
    let mut origins = [fa[2].clone(), fb[2].clone()];
    origins.sort();
    assert_eq!(origins, ["cache", "new"], "one installed, the other waited and used it:\n{a}\n{b}");
    assert_eq!(tree(cache.path()), COMPLETE);
}

#[tokio::test(flavor = "multi_thread")]
async fn a_build_killed_midway_leaves_no_process_and_nothing_usable() {
    let cache = tempfile::tempdir().unwrap();
    let marker = cache.path().display().to_string();
    let mut child = fetch_cmd(cache.path(), &["--source", "go", "v0.15.1"]).stderr(Stdio::null()).spawn().unwrap();
    wait_for("the build's staging dir", Duration::from_secs(300), || !staging_dirs(cache.path()).is_empty());
    std::thread::sleep(Duration::from_millis(300)); // Let `go install` get going.
    child.kill().unwrap();
    child.wait().unwrap();
    wait_for("every process of the killed build to exit", Duration::from_secs(60), || {
        processes_with_env(&marker).is_empty()
    });
    assert!(!tree(cache.path()).iter().any(|f| f.ends_with("v0.15.1-go/ko")));

    let out = fetch_cmd(cache.path(), &["--source", "go", "v0.15.1"]).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(
        tree(cache.path()),
        [
            "tools/ko/.v0.15.1-go.lock",
            "tools/ko/v0.15.1-go/ko",
            "tools/ko/v0.15.1-go/manifest.json",
            "tools/ko/v0.15.1-go/verified"
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_corrupted_cached_binary_is_evicted_and_fetched_again() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_release(site.path(), "0.15.2", "0.15.2");
    let serving = FileServer::start(site.path(), Behaviour::Serve).await;
    let args = ["--source", "release", "--release-base-url", &serving.url(), "v0.15.2"];
    let fields = |out: &std::process::Output| {
        String::from_utf8_lossy(&out.stdout).trim().split('\t').map(str::to_string).collect::<Vec<_>>()
    };

    let first = fetch_cmd(cache.path(), &args).output().unwrap();
    assert!(first.status.success(), "{}", String::from_utf8_lossy(&first.stderr));
    let binary = cache.path().join("tools/ko/v0.15.2-release/ko");
    let good = std::fs::read(&binary).unwrap();
    let mut bad = good.clone();
    let middle = bad.len() / 2;
    bad[middle] ^= 0xff;
    std::fs::write(&binary, &bad).unwrap();

    let second = fetch_cmd(cache.path(), &args).output().unwrap();
    assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    let (a, b) = (fields(&first), fields(&second));
    assert_eq!(b[2], "new", "the damaged entry is not served from the cache: {b:?}");
    assert_eq!(a[3], b[3], "the same verified sha256 as the first fetch");
    assert_eq!(std::fs::read(&binary).unwrap(), good, "the damaged binary was replaced");
    assert_eq!(tree(cache.path()), COMPLETE);
}
