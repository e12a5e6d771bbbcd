//! The harness under faults, with real ko and real registry processes: a service of the run
//! that dies or fails turns the cells it touches into `infra-error` naming it, never into a
//! `fail` that would read as ko's regression. Also what a cell keeps when it times out, what
//! its reports mask, and what of the parent's environment a cell really receives.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::outcome::{FailClass, Outcome};
use ko_matrix::result::CellResult;
use ko_matrix::run::Runner;
use ko_matrix::scenario::{Flavour, Scenario};
use ko_matrix::tool::{self, ToolBinary, ToolFetcher};
use ko_matrix_emulators::gateway::{Backend, Route};
use support::{kill_listener, repo_scenario, runner_options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const VERSION: &str = "v0.15.1";

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// A world of its own (faults here must not reach other tests), and ko.
struct Harness {
    runner: Runner,
    ko: ToolBinary,
    _out: tempfile::TempDir,
}

impl Harness {
    async fn start(scenarios: &[Scenario], cell_timeout: Duration) -> Harness {
        let matrix = Matrix::load(&root().join("matrix.toml")).unwrap();
        let out = tempfile::tempdir().unwrap();
        let fetcher = ToolFetcher::new(
            tool::shorthand(),
            Cache::from_env().unwrap(),
            matrix.tools[0].fetch.clone(),
            Arc::new(Silent),
        );
        let options = runner_options(&matrix, scenarios, out.path(), cell_timeout);
        let runner = Runner::start(&options, fetcher.go()).await.unwrap_or_else(|e| panic!("{e}"));
        let ko = fetcher.fetch(VERSION).await.unwrap_or_else(|e| panic!("{e}"));
        Harness { runner, ko, _out: out }
    }

    async fn run(&self, scenario: &Scenario) -> CellResult {
        self.runner.run_cell(&self.ko, scenario).await
    }

    fn service(&self, name: &str) -> SocketAddr {
        self.runner.world().services.iter().find(|s| s.name == name).unwrap_or_else(|| panic!("no service {name}")).addr
    }
}

fn log_of(cell: &CellResult) -> String {
    std::fs::read_to_string(&cell.log).unwrap_or_default()
}

/// The cell is `infra-error`, its detail naming `service`, and it was not run twice.
fn assert_infra_error(cell: &CellResult, service: &str) {
    assert_eq!((cell.outcome, cell.class), (Outcome::InfraError, None), "{}\n{}", cell.detail, log_of(cell));
    assert!(cell.detail.starts_with(&format!("infra-error: {service}")), "the detail names {service}: {}", cell.detail);
    assert_eq!(cell.attempts, ["infra-error"], "a harness fault is not retried");
}

#[tokio::test(flavor = "multi_thread")]
async fn a_target_registry_killed_mid_run_is_infra_error_naming_it() {
    let scenario = repo_scenario("registry/basic-auths");
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(300)).await;
    let before = harness.run(&scenario).await;
    assert_eq!(before.outcome, Outcome::Pass, "{}", before.detail);

    let registry = harness.service("registry (basic flavour)");
    kill_listener(registry);
    let after = harness.run(&scenario).await;
    assert_infra_error(&after, &format!("registry (basic flavour) {registry} unreachable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_base_image_registry_is_infra_error_naming_it() {
    let scenario = repo_scenario("registry/anonymous");
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(300)).await;
    let base = harness.service("base-image registry");
    kill_listener(base);
    // ko pulls the base image from loopback directly, not through the gateway: the probe of
    // the world's services after the failure is what names it.
    let cell = harness.run(&scenario).await;
    assert_infra_error(&cell, &format!("base-image registry {base} unreachable"));
}

/// Answers every request on `addr` with 500, as a broken registry would.
async fn serve_500(addr: SocketAddr) -> tokio::task::JoinHandle<()> {
    let listener = tokio::net::TcpListener::bind(addr).await.unwrap_or_else(|e| panic!("rebinding {addr}: {e}"));
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else { return };
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut piece = [0u8; 4096];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut piece).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => request.extend_from_slice(&piece[..n]),
                    }
                }
                let _ = stream
                    .write_all(b"HTTP/1.1 500 Internal Server Error\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                    .await;
            });
        }
    })
}

#[tokio::test(flavor = "multi_thread")]
async fn an_ecr_backend_answering_500_or_unreachable_is_infra_error() {
    let scenario = repo_scenario("ecr/env-session");
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(300)).await;
    let backend = harness.service("ECR front backend");
    kill_listener(backend);

    let broken = serve_500(backend).await;
    let cell = harness.run(&scenario).await;
    assert_infra_error(&cell, &format!("ECR front backend {backend} answered 500"));
    assert!(
        cell.requests.iter().any(|r| r.status == 500 && r.infra.is_some()),
        "the gateway recorded the ECR front's mark: {:?}",
        cell.requests
    );

    broken.abort();
    support::wait_for("the 500 server to stop", Duration::from_secs(10), || {
        std::net::TcpStream::connect(backend).is_err()
    });
    let cell = harness.run(&scenario).await;
    assert_infra_error(&cell, &format!("ECR front backend {backend} unreachable"));
}

#[tokio::test(flavor = "multi_thread")]
async fn a_gateway_upstream_refusing_connections_is_infra_error() {
    let scenario = repo_scenario("registry/basic-auths");
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(300)).await;
    // A port nobody listens on: every service of the world stays healthy, so only the
    // gateway's own record can tell that the answer ko got was the harness's.
    let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let upstream = Backend::https(closed).named("test upstream");
    harness.runner.world().gateway.route(Flavour::Basic.host(), Route::Terminate { backend: upstream }).unwrap();
    let cell = harness.run(&scenario).await;
    assert_infra_error(&cell, &format!("test upstream {closed} unreachable"));
    assert!(harness.runner.world().unreachable_services().await.is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn a_timed_out_cell_keeps_its_output() {
    let scenario = support::scenario(
        "faults/hang",
        r#"
description = "a step that hangs after saying something"
[target]
registry = "anonymous"
[[before]]
run = ["/bin/sh", "-c", "echo warming up the cache; sleep 120"]
"#,
    );
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(3)).await;
    let cell = harness.run(&scenario).await;
    assert_eq!((cell.outcome, cell.class), (Outcome::Fail, Some(FailClass::Timeout)), "{}", cell.detail);
    assert!(cell.detail.ends_with("last line: warming up the cache"), "{}", cell.detail);
    assert!(log_of(&cell).contains("warming up the cache"), "{}", log_of(&cell));
}

#[tokio::test(flavor = "multi_thread")]
async fn the_ecr_helper_cache_token_is_masked() {
    let scenario = repo_scenario("ecr/ecr-cache-valid-unknown-key");
    let harness = Harness::start(std::slice::from_ref(&scenario), Duration::from_secs(300)).await;
    let cell = harness.run(&scenario).await;
    assert_eq!(cell.outcome, Outcome::Pass, "{}", cell.detail);
    let log = log_of(&cell);
    let tokens: Vec<&str> = log.lines().filter(|l| l.contains("\"AuthorizationToken\"")).collect();
    assert!(!tokens.is_empty(), "the log shows ~/.ecr/cache.json: {log}");
    assert!(tokens.iter().all(|l| l.trim() == r#""AuthorizationToken": "****","#), "{tokens:?}");
}

/// `ko-matrix run` in a matrix of its own whose one scenario runs `/usr/bin/env` in the
/// cell before ko: the transcript shows what the child really received.
#[test]
fn a_cell_receives_nothing_of_the_parents_environment() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), format!("[ko]\nversions = [\"{VERSION}\"]\n")).unwrap();
    let app = dir.path().join("scenarios/app");
    std::fs::create_dir_all(&app).unwrap();
    for file in ["go.mod", "main.go"] {
        std::fs::copy(root().join("scenarios/app").join(file), app.join(file)).unwrap();
    }
    std::fs::create_dir_all(dir.path().join("scenarios/leak")).unwrap();
    let scenario = "description = \"the environment a cell's commands get\"\n[target]\nregistry = \"anonymous\"\n[[before]]\nrun = [\"/usr/bin/env\"]\n";
    std::fs::write(dir.path().join("scenarios/leak/env.toml"), scenario).unwrap();

    let sentinels = [
        ("AWS_ACCESS_KEY_ID", "AKIASENTINEL00000000"),
        ("AWS_SECRET_ACCESS_KEY", "sentinel-secret-access-key-of-the-parent"),
        ("AWS_SESSION_TOKEN", "sentinel-session-token-of-the-parent"),
        ("DOCKER_CONFIG", "/sentinel/docker-config"),
        ("GITHUB_TOKEN", "sentinel-github-token"),
        ("KO_MATRIX_SENTINEL", "sentinel-plain-value"),
    ];
    let out = dir.path().join("out");
    let status = support::ko_matrix()
        .arg("--config")
        .arg(dir.path().join("matrix.toml"))
        .args(["run", "--scenarios", "leak/env", "--out"])
        .arg(&out)
        .envs(sentinels)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let matrix: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    let cell = &matrix["cells"][0];
    assert_eq!(cell["outcome"], "pass", "{cell}");
    let log = std::fs::read_to_string(cell["log"].as_str().unwrap()).unwrap();
    let transcript =
        &log[log.find("$ /usr/bin/env").expect("the env step ran")..log.find("$ ko build").expect("ko ran")];
    assert!(
        transcript.contains("KO_DOCKER_REPO=anonymous.ko-matrix.test/"),
        "the transcript is env's output: {transcript}"
    );
    for (name, value) in sentinels {
        assert!(!transcript.contains(value), "{name}'s value reached the cell:\n{transcript}");
        assert!(
            !transcript.lines().any(|l| l.starts_with(&format!("{name}="))),
            "{name} reached the cell:\n{transcript}"
        );
    }
}

/// A tool that signs with credentials from outside its cell (here a shared-credentials file
/// the scenario points at, holding a key the run never minted) voids the cell: `infra-error`
/// naming the key, whatever the tool's exit, and `run` exits 3.
#[test]
fn credentials_the_run_did_not_mint_void_the_cell() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("matrix.toml"), format!("[ko]\nversions = [\"{VERSION}\"]\n")).unwrap();
    let outside = dir.path().join("host-aws-credentials");
    std::fs::write(
        &outside,
        "[default]\naws_access_key_id = AKIASENTINELLEAK0000\naws_secret_access_key = sentinel-secret-of-the-host\n",
    )
    .unwrap();
    std::fs::create_dir_all(dir.path().join("scenarios/leak")).unwrap();
    let scenario = format!(
        "description = \"credentials read from a file outside the cell\"\n[target]\nregistry = \"ecr\"\n[env]\nAWS_SHARED_CREDENTIALS_FILE = \"{}\"\nAWS_REGION = \"${{AWS_REGION}}\"\n",
        outside.display()
    );
    std::fs::write(dir.path().join("scenarios/leak/foreign-key.toml"), scenario).unwrap();
    let out = dir.path().join("out");
    let status = support::ko_matrix()
        .arg("--config")
        .arg(dir.path().join("matrix.toml"))
        .args(["run", "--scenarios", "leak/foreign-key", "--out"])
        .arg(&out)
        .status()
        .unwrap();
    assert_eq!(status.code(), Some(3), "a voided cell is the harness's fault: exit 3");
    let matrix: serde_json::Value = serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    let cell = &matrix["cells"][0];
    assert_eq!(cell["outcome"], "infra-error", "{cell}");
    let detail = cell["detail"].as_str().unwrap();
    assert!(
        detail.starts_with(
            "infra-error: the cell leaked: ko signed AWS requests with access key id(s) AKIASENTINELLEAK0000"
        ),
        "{detail}"
    );
    assert!(
        !serde_json::to_string(&matrix).unwrap().contains("sentinel-secret-of-the-host"),
        "the secret itself is never recorded"
    );
}
