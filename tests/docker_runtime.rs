//! The Docker-engine paths for real: the registry as the pinned `registry` image, and the
//! LocalStack ECR backend, through testcontainers. They run where `KO_MATRIX_DOCKER_TESTS=1`
//! and a Docker engine answers (LocalStack also needs `LOCALSTACK_AUTH_TOKEN`); elsewhere
//! they show as ignored with the reason on the test's own line (there is no engine on
//! ko-matrix's own CI machine).

use std::sync::Arc;

use ko_matrix::config::{RuntimeChoice, DEFAULT_LOCALSTACK_IMAGE};
use ko_matrix::services::localstack;
use ko_matrix::services::registry::{RegistryAuth, RegistrySpec};
use ko_matrix::services::runtime::{self, ServiceError};
use ko_matrix_emulators::pki::Ca;
use libtest_mimic::{Arguments, Completion, Trial};

fn main() {
    let args = Arguments::from_args();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let engine = runtime.block_on(runtime::docker_engine());
    let wanted = std::env::var("KO_MATRIX_DOCKER_TESTS").is_ok_and(|v| v == "1");
    let skip = match (&engine, wanted) {
        (Ok(()), true) => None,
        (Err(e), _) => Some(format!("no Docker engine answers: {e}")),
        (Ok(()), false) => Some("set KO_MATRIX_DOCKER_TESTS=1 to run containers".to_string()),
    };
    if let Some(reason) = &skip {
        eprintln!("SKIPPED docker runtime tests: {reason}");
    }
    let explicit_choice = {
        let engine_up = engine.is_ok();
        Trial::test("an_explicit_docker_choice_without_an_engine_fails_fast_with_the_reason", move || {
            let rt = tokio::runtime::Runtime::new().unwrap();
            match (rt.block_on(runtime::resolve_runtime(RuntimeChoice::Docker)), engine_up) {
                (Ok(("docker", None)), true) => Ok(()),
                (Err(ServiceError::NoDocker(reason)), false) => {
                    let message = ServiceError::NoDocker(reason).to_string();
                    assert!(
                        message.starts_with("services.runtime = \"docker\" but no Docker engine answers"),
                        "{message}"
                    );
                    assert!(!message.contains('\n'), "one line: {message}");
                    let (runtime, note) = rt.block_on(runtime::resolve_runtime(RuntimeChoice::Auto)).unwrap();
                    assert_eq!(runtime, "process", "auto falls back");
                    assert!(note.unwrap().starts_with("services.runtime = \"auto\": running registries as local processes, since no Docker engine answers"), "and says so once");
                    Ok(())
                }
                (other, _) => Err(format!("unexpected: {other:?}").into()),
            }
        })
    };
    let container_skip = skip.clone();
    let container = Trial::ignorable_test("the_registry_runs_as_a_container_and_answers_v2", move || {
        if let Some(reason) = container_skip {
            return Ok(Completion::ignored_with(reason));
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let ca = Arc::new(Ca::new().unwrap());
            let registry = runtime::start_container(&RegistrySpec { auth: RegistryAuth::Anonymous, tls: None }, &ca)
                .await
                .map_err(|e| e.to_string())?;
            let status =
                reqwest::get(format!("http://{}/v2/", registry.addr)).await.map_err(|e| e.to_string())?.status();
            if status != 200 {
                return Err(format!("/v2/ answered {status}").into());
            }
            Ok(Completion::Completed)
        })
    });
    // LocalStack Pro also needs its auth token.
    let localstack_skip = skip.clone().or_else(|| {
        std::env::var_os(localstack::AUTH_TOKEN_ENV)
            .is_none()
            .then(|| format!("{} is not set", localstack::AUTH_TOKEN_ENV))
    });
    if let Some(reason) = &localstack_skip {
        eprintln!("SKIPPED LocalStack tests: {reason}");
    }
    let localstack_ecr = Trial::ignorable_test("localstack_serves_ecr_tokens_and_repositories", move || {
        if let Some(reason) = localstack_skip {
            return Ok(Completion::ignored_with(reason));
        }
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(async {
            let stack = localstack::LocalStack::start(DEFAULT_LOCALSTACK_IMAGE).await?;
            let spec: ko_matrix_emulators::aws::state::AwsSpec = toml::from_str("repositories = [\"app\"]").unwrap();
            let cell = stack.prepare(&spec).await?;
            if cell.password.is_empty() {
                return Err("GetAuthorizationToken gave no password".into());
            }
            Ok(Completion::Completed)
        })
    });
    libtest_mimic::run(&args, vec![explicit_choice, container, localstack_ecr]).exit();
}
