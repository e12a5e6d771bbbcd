//! Copies between registries with real crane and the run's real registries: the mounts a copy
//! asks for reach the target as the tool sends them, and the target answers as the registry it
//! models does. A cross-registry mount refused by a Harbor-modelled target is answered in
//! Harbor's words, and the gateway's record names Harbor and where that answer is read from;
//! within one distribution registry the same mount is taken (201).

mod support;

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::outcome::Outcome;
use ko_matrix::result::{CellResult, Verb};
use ko_matrix::run::Runner;
use ko_matrix::scenario::Scenario;
use ko_matrix::tool::{self, ToolFetcher};
use ko_matrix_emulators::gateway::Record;
use support::{repo_scenario, runner_options};

/// A release of crane the matrix pins.
const CRANE: &str = "v0.22.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// Runs `scenario` with crane in a world of its own.
async fn copy_with_crane(scenario: &Scenario) -> (CellResult, String) {
    let matrix = Matrix::load(&root().join("matrix.toml")).unwrap();
    let crane = tool::by_name("crane").unwrap();
    let config = matrix.tool("crane").expect("matrix.toml runs crane");
    let fetcher = ToolFetcher::new(crane, Cache::from_env().unwrap(), config.fetch.clone(), Arc::new(Silent));
    let out = tempfile::tempdir().unwrap();
    let options = runner_options(&matrix, std::slice::from_ref(scenario), out.path(), Duration::from_secs(300));
    let runner = Runner::start(&options, fetcher.go()).await.unwrap_or_else(|e| panic!("{e}"));
    let binary = fetcher.fetch(CRANE).await.unwrap_or_else(|e| panic!("{e}"));
    let cell = runner.run_cell(&binary, scenario).await;
    let log = std::fs::read_to_string(&cell.log).unwrap_or_default();
    (cell, log)
}

fn posts_to<'a>(cell: &'a CellResult, host: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
    cell.requests.iter().filter(move |r| r.method == "POST" && r.host == host && r.path.contains("/blobs/uploads/"))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_cross_registry_mount_refusal_is_answered_as_harbor_answers_it_with_its_citation() {
    let scenario = repo_scenario("copy/harbor-refuses-cross-registry-mount");
    let source = scenario.source.as_ref().expect("a copy").registry.host();
    let (cell, log) = copy_with_crane(&scenario).await;
    assert_eq!((cell.verb, cell.outcome), (Verb::Copy, Outcome::Pass), "{}\n{log}", cell.detail);

    // crane names the source repository and its registry in each mount: a cross-registry mount.
    let from = format!("source/copy/harbor-refuses-cross-registry-mount/crane/{CRANE}");
    let mounts: Vec<&Record> = posts_to(&cell, "harbor.example.com").filter(|r| r.path.contains("mount=")).collect();
    assert!(!mounts.is_empty(), "crane asked for no mount:\n{log}");
    for mount in &mounts {
        assert!(mount.path.contains(&format!("origin={source}")), "the mount names the other registry: {}", mount.path);
        assert!(mount.path.contains(&format!("from={}", from.replace('/', "%2F"))), "{}", mount.path);
        assert_eq!(mount.status, 401, "{}", mount.log_line());
        assert_eq!(
            mount.note.as_deref(),
            Some("quirk: mount refused with 401, as Harbor refuses a token without pull on `from` (goharbor/harbor src/server/middleware/v2auth/access.go)"),
            "the record names the registry modelled and the source"
        );
    }
    // Harbor's own words reached the tool: its middleware's message, doubled, naming `from`.
    let message = format!("unauthorized to access repository: {from}, action: pull");
    assert!(log.contains("retrying without mount: POST https://harbor.example.com/v2/"), "{log}");
    assert!(log.contains(&format!("UNAUTHORIZED: {message}: {message}")), "{log}");
    // Then a plain upload of each blob refused (crane asks twice: a second token, then the
    // mount again), which Harbor takes.
    let mut refused: Vec<&str> =
        mounts.iter().filter_map(|r| r.path.split("mount=").nth(1)?.split('&').next()).collect();
    refused.sort();
    refused.dedup();
    let uploads = posts_to(&cell, "harbor.example.com").filter(|r| !r.path.contains("mount=") && r.status == 202);
    assert_eq!(uploads.count(), refused.len(), "a plain upload after each refused mount:\n{log}");
    // The docs cite the same source for the quirk.
    let docs = std::fs::read_to_string(root().join("docs/storage-and-quirks.md")).unwrap();
    assert!(docs.contains("goharbor/harbor src/server/middleware/v2auth/access.go"), "docs/storage-and-quirks.md");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_mount_within_one_registry_is_taken_and_the_target_holds_the_sources_image() {
    let scenario = repo_scenario("copy/same-registry-other-repo");
    let (cell, log) = copy_with_crane(&scenario).await;
    assert_eq!((cell.verb, cell.outcome), (Verb::Copy, Outcome::Pass), "{}\n{log}", cell.detail);
    assert!(cell.detail.starts_with("copied and fetched back sha256:"), "{}", cell.detail);
    let mounts: Vec<&Record> = posts_to(&cell, "basic.ko-matrix.test").filter(|r| r.path.contains("mount=")).collect();
    // Five layers and two configs, each mounted from the source repository (201 Created).
    assert!(!mounts.is_empty() && mounts.iter().all(|r| r.status == 201), "{log}");
    assert!(
        !posts_to(&cell, "basic.ko-matrix.test").any(|r| r.status == 202),
        "no blob was uploaded: every one was mounted\n{log}"
    );
    assert!(log.contains("copy: basic.ko-matrix.test/source/copy/same-registry-other-repo/crane/"), "{log}");
}
