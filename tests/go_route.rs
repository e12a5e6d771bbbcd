//! The go route for real: ko built from the Go module proxy, release-style, into the shared
//! cache (slow the first time on a machine: minutes per version; instant afterwards).

use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::provision::ProvisionError;
use ko_matrix::tool::{self, FetchSettings, Source, ToolFetcher};

fn go_fetcher() -> ToolFetcher {
    let settings = FetchSettings { source: Source::Go, ..FetchSettings::default() };
    ToolFetcher::new(tool::shorthand(), Cache::from_env().expect("a cache dir"), settings, Arc::new(Silent))
}

async fn build_and_check(version: &str) {
    let ko = go_fetcher()
        .fetch(version)
        .await
        .unwrap_or_else(|e| panic!("the Go module proxy build of ko {version} failed: {e}"));
    assert_eq!((ko.version.as_str(), ko.route.as_str()), (version, "go"));
    // ko 0.15.x declares `go 1.21`: built with the newest Go 1.21 patch, as its releases were.
    let go_version = ko.go_version.clone().unwrap();
    assert!(go_version.starts_with("go1.21."), "{go_version}");
    assert_eq!(ko.origin, format!("github.com/google/ko@{version}"));

    let out = std::process::Command::new(&ko.path).arg("version").output().unwrap();
    assert!(out.status.success());
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), version.trim_start_matches('v'));
    assert_eq!(ko.sha256, ko_matrix::cache::sha256_file(&ko.path).unwrap());
}

#[tokio::test]
async fn builds_ko_v0_15_1() {
    build_and_check("v0.15.1").await;
}

#[tokio::test]
async fn builds_ko_v0_15_2() {
    build_and_check("v0.15.2").await;
}

#[tokio::test]
async fn an_unknown_version_is_named_with_the_proxys_answer() {
    let err = go_fetcher().go().resolve(tool::shorthand().go(), "v0.0.999").await.unwrap_err();
    let ProvisionError::UnknownVersion { module, query, message, known } = &err else { panic!("{err}") };
    assert_eq!((module.as_str(), query.as_str()), ("github.com/google/ko", "v0.0.999"));
    assert!(message.contains("v0.0.999"), "{message}");
    assert!(!known.is_empty(), "what the proxy lists instead comes with it: {err}");
}

#[tokio::test]
async fn latest_resolves_to_a_release() {
    let module = go_fetcher().go().resolve(tool::shorthand().go(), "latest").await.unwrap();
    let version = semver::Version::parse(module.version.trim_start_matches('v')).unwrap();
    assert!(version >= semver::Version::new(0, 15, 3), "{version}");
    assert!(module.go_directive.is_some());
}
