//! Regression test for ko issue 1245: ko v0.15.2 could not push to ECR when the only
//! credentials were AWS credentials in the environment (GitHub Actions after
//! aws-actions/configure-aws-credentials with OIDC); v0.15.1 and v0.15.3 could, and every
//! version could once a login step had written docker config `auths`.
//!
//! Nothing here special-cases a version: the cells run the same scenarios as the matrix, and
//! this test pins what they show, including the evidence — v0.15.2's built-in ECR helper
//! never reaches the ECR API, so ko pushes without credentials and ECR answers 401.

use std::path::Path;
use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::outcome::{FailClass, Outcome};
use ko_matrix::run::{Runner, RunnerOptions};
use ko_matrix::scenario;
use ko_matrix::tool::{self, ToolFetcher};

#[tokio::test(flavor = "multi_thread")]
async fn ko_issue_1245_env_credentials_push_to_ecr() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let matrix = Matrix::load(&root.join("matrix.toml")).unwrap();
    let scenarios: Vec<_> = scenario::discover(&root.join("scenarios"))
        .unwrap()
        .into_iter()
        .filter(|s| s.name == "ecr/env-session" || s.name == "ecr/login-step-and-env-session")
        .collect();
    assert_eq!(scenarios.len(), 2);
    let out = tempfile::tempdir().unwrap();
    let fetcher = ToolFetcher::new(
        tool::shorthand(),
        Cache::from_env().unwrap(),
        matrix.tools[0].fetch.clone(),
        Arc::new(Silent),
    );
    let options = RunnerOptions {
        scenarios: scenarios.clone(),
        services: matrix.services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: out.path().to_path_buf(),
        app_source: root.join("scenarios/app"),
        helper: env!("CARGO_BIN_EXE_ko-matrix").into(),
        baseline: ko_matrix::run::committed_snapshots(&matrix).unwrap(),
        durations: None,
    };
    let runner = Runner::start(&options, fetcher.go()).await.unwrap();

    for version in ["v0.15.1", "v0.15.2", "v0.15.3"] {
        let ko = fetcher.fetch(version).await.unwrap();
        for scenario in &scenarios {
            let cell = runner.run_cell(&ko, scenario).await;
            let api_calls = cell
                .requests
                .iter()
                .filter(|r| r.host == "api.ecr.us-east-1.amazonaws.com" && r.method == "POST")
                .count();
            let broken = version == "v0.15.2" && scenario.name == "ecr/env-session";
            if broken {
                assert_eq!(
                    (cell.outcome, cell.class),
                    (Outcome::Fail, Some(FailClass::Unauthorized)),
                    "{version} × {}: {}",
                    scenario.name,
                    cell.detail
                );
                assert!(
                    cell.detail.starts_with("ko exited 1: Error: failed to publish images:")
                        && cell.detail.contains("401 Unauthorized"),
                    "ko's own error is quoted: {}",
                    cell.detail
                );
                assert_eq!(
                    api_calls, 0,
                    "v0.15.2's ECR helper never asked the ECR API for a token: {:?}",
                    cell.requests
                );
            } else {
                assert_eq!(
                    cell.outcome,
                    Outcome::Pass,
                    "{version} × {}: {} (log {})",
                    scenario.name,
                    cell.detail,
                    cell.log.display()
                );
            }
            if scenario.name == "ecr/env-session" && !broken {
                assert!(api_calls >= 1, "{version} got its registry password from GetAuthorizationToken");
            }
        }
    }
}
