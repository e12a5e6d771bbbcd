//! The LocalStack ECR backend, for users who already run LocalStack Pro (its ECR is a Pro
//! feature) or have a Docker engine: LocalStack in a container through testcontainers, or
//! one already running (`ecr.localstack_endpoint`). The gateway keeps routing the real AWS
//! host names — the API to LocalStack's edge port, each registry host to the registry
//! LocalStack serves for it — so ko's built-in ECR helper still engages.

use std::net::SocketAddr;
use std::time::Duration;

use base64::Engine;

use crate::config::EcrBackendChoice;
use crate::scenario::Scenario;
use crate::services::runtime::NoDockerEngine;
use ko_matrix_emulators::aws::sigv4::{self, SignedRequest};
use ko_matrix_emulators::aws::state::{AwsSpec, CredentialKind};

pub const AUTH_TOKEN_ENV: &str = "LOCALSTACK_AUTH_TOKEN";
const EDGE_PORT: u16 = 4566;

/// Why the LocalStack backend cannot be used or did not start. The CLI's exit code tells
/// the user's setting (exit 2) from this machine (exit 3) by variant.
#[derive(Debug, thiserror::Error)]
pub enum LocalStackError {
    #[error("ecr.localstack_endpoint must be http://<loopback ip>:<port>, not {0:?}")]
    BadEndpoint(String),
    #[error("ecr.localstack_endpoint {0} is not on loopback; ko-matrix only talks to this machine")]
    NotLoopback(String),
    #[error("ecr.localstack_image must be name:tag (pinned), not {0:?}")]
    Unpinned(String),
    #[error("ecr.backend = \"localstack\" needs {AUTH_TOKEN_ENV} (LocalStack's ECR is a Pro feature) or ecr.localstack_endpoint; set one, or use ecr.backend = \"auto\" or \"embedded\"")]
    NoToken,
    #[error("ecr.backend = \"localstack\" needs a Docker engine to start {image}, and none answers ({reason}); start one, set ecr.localstack_endpoint, or use ecr.backend = \"auto\" or \"embedded\"")]
    NoDocker { image: String, reason: NoDockerEngine },
    // A plain field, not `source`: the message already embeds it.
    #[cfg(feature = "docker")]
    #[error("starting {image}: {error}")]
    Start { image: String, error: testcontainers::TestcontainersError },
}

/// Which ECR backend a run uses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EcrBackend {
    Embedded,
    /// Start `image` through testcontainers.
    Container {
        image: String,
    },
    /// Use the LocalStack at this edge endpoint.
    Attach {
        endpoint: SocketAddr,
    },
}

/// What the machine offers, for the choice.
pub struct Facilities {
    pub auth_token: bool,
    /// `Err(reason)` when no Docker engine answers.
    pub docker: Result<(), NoDockerEngine>,
}

/// Picks the backend. An explicit `localstack` that cannot run fails with one line saying
/// why; `auto` falls back to the embedded emulator and says so (the note).
pub fn choose(
    choice: EcrBackendChoice,
    endpoint: Option<&str>,
    image: &str,
    here: Facilities,
) -> Result<(EcrBackend, Option<String>), LocalStackError> {
    let attach = |endpoint: &str| -> Result<EcrBackend, LocalStackError> {
        let trimmed = endpoint.trim_start_matches("http://").trim_end_matches('/');
        let addr: SocketAddr = trimmed.parse().map_err(|_| LocalStackError::BadEndpoint(endpoint.to_string()))?;
        if !addr.ip().is_loopback() {
            return Err(LocalStackError::NotLoopback(endpoint.to_string()));
        }
        Ok(EcrBackend::Attach { endpoint: addr })
    };
    match choice {
        EcrBackendChoice::Embedded => Ok((EcrBackend::Embedded, None)),
        EcrBackendChoice::Localstack => {
            if let Some(endpoint) = endpoint {
                return Ok((attach(endpoint)?, None));
            }
            if !here.auth_token {
                return Err(LocalStackError::NoToken);
            }
            if let Err(reason) = here.docker {
                return Err(LocalStackError::NoDocker { image: image.to_string(), reason });
            }
            Ok((EcrBackend::Container { image: image.to_string() }, None))
        }
        EcrBackendChoice::Auto => {
            if let Some(endpoint) = endpoint {
                return Ok((attach(endpoint)?, None));
            }
            let why = match (&here.docker, here.auth_token) {
                (Ok(()), true) => return Ok((EcrBackend::Container { image: image.to_string() }, None)),
                (_, false) => format!("{AUTH_TOKEN_ENV} is not set"),
                (Err(reason), true) => format!("no Docker engine answers ({reason})"),
            };
            Ok((
                EcrBackend::Embedded,
                Some(format!("ecr.backend = \"auto\": using the embedded ECR emulator, since {why}")),
            ))
        }
    }
}

/// A LocalStack the run uses; a started container stops when this drops.
pub struct LocalStack {
    pub endpoint: SocketAddr,
    client: reqwest::Client,
    #[cfg(feature = "docker")]
    _container: Option<Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>>,
}

/// What a cell gets from LocalStack: credentials and a registry password it minted.
pub struct LocalStackCell {
    pub access_key_id: String,
    pub secret: String,
    pub session_token: Option<String>,
    pub password: String,
}

impl LocalStack {
    pub(crate) fn attach(endpoint: SocketAddr) -> LocalStack {
        LocalStack {
            endpoint,
            client: client(),
            #[cfg(feature = "docker")]
            _container: None,
        }
    }

    /// Starting a container needs the `docker` feature ([`choose`] never picks one without:
    /// no engine answers such a build).
    #[cfg(not(feature = "docker"))]
    pub async fn start(image: &str) -> Result<LocalStack, LocalStackError> {
        Err(LocalStackError::NoDocker { image: image.to_string(), reason: NoDockerEngine::NotBuilt })
    }

    /// Starts `image` (`name:tag`) with the auth token from the environment.
    #[cfg(feature = "docker")]
    pub async fn start(image: &str) -> Result<LocalStack, LocalStackError> {
        use testcontainers::core::{IntoContainerPort, WaitFor};
        use testcontainers::runners::AsyncRunner;
        use testcontainers::{GenericImage, ImageExt};
        let (name, tag) = image.rsplit_once(':').ok_or_else(|| LocalStackError::Unpinned(image.to_string()))?;
        let token = std::env::var(AUTH_TOKEN_ENV).map_err(|_| LocalStackError::NoToken)?;
        let start_error = |error| LocalStackError::Start { image: image.to_string(), error };
        let container = GenericImage::new(name, tag)
            .with_exposed_port(EDGE_PORT.tcp())
            .with_wait_for(WaitFor::message_on_stdout("Ready."))
            .with_env_var(AUTH_TOKEN_ENV, token)
            .with_env_var("SERVICES", "ecr,sts,iam")
            .with_env_var("ECR_ENDPOINT_STRATEGY", "domain")
            .with_startup_timeout(Duration::from_secs(180))
            .start()
            .await
            .map_err(start_error)?;
        let port = container.get_host_port_ipv4(EDGE_PORT).await.map_err(start_error)?;
        Ok(LocalStack {
            endpoint: SocketAddr::from(([127, 0, 0, 1], port)),
            client: client(),
            _container: Some(Box::new(container)),
        })
    }

    /// The `Host` LocalStack serves `account`'s registry in `region` under.
    pub(crate) fn registry_host(account: &str, region: &str) -> String {
        format!("{account}.dkr.ecr.{region}.localhost.localstack.cloud:{EDGE_PORT}")
    }

    /// Creates the scenario's repositories and mints a registry password. LocalStack takes
    /// a 12-digit access key ID as the account, so the cell's key is the account number.
    /// The error stays text: its one caller, `Cell::prepare`, reports cell errors as text.
    pub async fn prepare(&self, spec: &AwsSpec) -> Result<LocalStackCell, String> {
        let cell = LocalStackCell {
            access_key_id: spec.account.clone(),
            secret: "ko-matrix-localstack".into(),
            session_token: (spec.credentials == CredentialKind::Session)
                .then(|| "ko-matrix-localstack-session".to_string()),
            password: String::new(),
        };
        for repository in &spec.repositories {
            let body = serde_json::json!({ "repositoryName": repository }).to_string();
            let answer = self.call(spec, &cell, "CreateRepository", &body).await?;
            if !answer.0.is_success() && !answer.1.contains("RepositoryAlreadyExistsException") {
                return Err(format!("CreateRepository {repository} on LocalStack: {} {}", answer.0, answer.1));
            }
        }
        let (status, body) = self.call(spec, &cell, "GetAuthorizationToken", "{}").await?;
        let token = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["authorizationData"][0]["authorizationToken"].as_str().map(str::to_string));
        let token = token.ok_or_else(|| format!("GetAuthorizationToken on LocalStack: {status} {body}"))?;
        let decoded = base64::engine::general_purpose::STANDARD.decode(token).map_err(|e| e.to_string())?;
        let password =
            String::from_utf8_lossy(&decoded).split_once(':').map(|(_, p)| p.to_string()).unwrap_or_default();
        Ok(LocalStackCell { password, ..cell })
    }

    /// A SigV4-signed ECR API call to LocalStack, as a client of `api.ecr.<region>` would make.
    async fn call(
        &self,
        spec: &AwsSpec,
        cell: &LocalStackCell,
        operation: &str,
        body: &str,
    ) -> Result<(reqwest::StatusCode, String), String> {
        let host = spec.api_host();
        let amz_date = time::OffsetDateTime::now_utc()
            .format(&time::macros::format_description!("[year][month][day]T[hour][minute][second]Z"))
            .expect("UTC formats");
        let mut headers = vec![
            ("content-type".to_string(), "application/x-amz-json-1.1".to_string()),
            ("host".to_string(), host.clone()),
            ("x-amz-date".to_string(), amz_date.clone()),
            ("x-amz-target".to_string(), format!("AmazonEC2ContainerRegistry_V20150921.{operation}")),
        ];
        if let Some(token) = &cell.session_token {
            headers.push(("x-amz-security-token".to_string(), token.clone()));
        }
        let request = SignedRequest { method: "POST", path: "/", query: "", headers: &headers, body: body.as_bytes() };
        let authorization = sigv4::sign(&request, &cell.access_key_id, &cell.secret, &amz_date, &spec.region, "ecr");
        let mut call = self
            .client
            .post(format!("http://{}/", self.endpoint))
            .header("authorization", authorization)
            .body(body.to_string());
        for (name, value) in &headers {
            call = call.header(name, value);
        }
        let response = call.send().await.map_err(|e| format!("LocalStack at {}: {e}", self.endpoint))?;
        let status = response.status();
        Ok((status, response.text().await.unwrap_or_default()))
    }
}

fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .timeout(Duration::from_secs(60))
        .build()
        .expect("static reqwest configuration is valid")
}

/// Why LocalStack cannot express `scenario`, if it cannot: it accepts any credentials
/// (unless IAM enforcement is switched on), so setups that hinge on refused credentials
/// would report a pass that says nothing.
pub(crate) fn cannot_express(scenario: &Scenario) -> Option<String> {
    if scenario.source.as_ref().is_some_and(|s| s.aws.is_some()) {
        return Some(
            "the harness seeds a copy's ECR source into the embedded emulator's registry, not into LocalStack's".into(),
        );
    }
    let spec = scenario.aws.as_ref()?;
    let reason = if spec.credentials == CredentialKind::ExpiredSession {
        "expired session credentials"
    } else if scenario.env.get("AWS_ACCESS_KEY_ID").is_some_and(|v| !v.contains("${")) {
        "an access key the scenario names literally (one AWS would not know)"
    } else if scenario
        .docker_config
        .as_ref()
        .is_some_and(|d| d.auths.values().any(|c| c.password.contains("ECR_EXPIRED_PASSWORD")))
    {
        "an expired registry password"
    } else if spec.tag_mutability != Default::default()
        || !spec.images.is_empty()
        || spec.repository_policy.is_some()
        || !spec.creation_templates.is_empty()
        || !spec.pull_through_cache.is_empty()
    {
        // The harness seeds none of these into LocalStack's account.
        return Some("the harness does not set up ECR's own features (tag immutability, seeded images, repository policies, creation templates, pull through cache) in LocalStack".into());
    } else {
        return None;
    };
    Some(format!("LocalStack accepts any credentials, so it cannot express {reason}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DEFAULT_LOCALSTACK_IMAGE;

    fn here(token: bool, docker: bool) -> Facilities {
        let absent = NoDockerEngine::Socket {
            socket: "/var/run/docker.sock".into(),
            error: std::io::Error::from_raw_os_error(2),
        };
        Facilities { auth_token: token, docker: if docker { Ok(()) } else { Err(absent) } }
    }

    #[test]
    fn the_backend_choice_in_full() {
        let image = DEFAULT_LOCALSTACK_IMAGE;
        let container = EcrBackend::Container { image: image.into() };
        // Embedded is always embedded.
        assert_eq!(
            choose(EcrBackendChoice::Embedded, None, image, here(true, true)).unwrap(),
            (EcrBackend::Embedded, None)
        );
        // Explicit LocalStack: an endpoint wins; otherwise token and engine are both needed.
        let attached =
            choose(EcrBackendChoice::Localstack, Some("http://127.0.0.1:4566"), image, here(false, false)).unwrap();
        assert_eq!(attached.0, EcrBackend::Attach { endpoint: "127.0.0.1:4566".parse().unwrap() });
        assert_eq!(choose(EcrBackendChoice::Localstack, None, image, here(true, true)).unwrap().0, container);
        let no_token = choose(EcrBackendChoice::Localstack, None, image, here(false, true)).unwrap_err().to_string();
        assert_eq!(no_token, "ecr.backend = \"localstack\" needs LOCALSTACK_AUTH_TOKEN (LocalStack's ECR is a Pro feature) or ecr.localstack_endpoint; set one, or use ecr.backend = \"auto\" or \"embedded\"");
        let no_docker = choose(EcrBackendChoice::Localstack, None, image, here(true, false)).unwrap_err().to_string();
        assert!(no_docker.starts_with("ecr.backend = \"localstack\" needs a Docker engine to start localstack/localstack-pro:4.4.0, and none answers"), "{no_docker}");
        assert!(!no_docker.contains('\n'));
        // Auto: LocalStack where possible, else embedded with one note saying why.
        assert_eq!(choose(EcrBackendChoice::Auto, None, image, here(true, true)).unwrap(), (container, None));
        let (backend, note) = choose(EcrBackendChoice::Auto, None, image, here(false, true)).unwrap();
        assert_eq!(
            (backend, note.unwrap()),
            (
                EcrBackend::Embedded,
                "ecr.backend = \"auto\": using the embedded ECR emulator, since LOCALSTACK_AUTH_TOKEN is not set"
                    .to_string()
            )
        );
        let (_, note) = choose(EcrBackendChoice::Auto, None, image, here(true, false)).unwrap();
        assert!(note.unwrap().contains("no Docker engine answers"));
        // Endpoints stay on loopback.
        assert!(choose(EcrBackendChoice::Localstack, Some("http://10.0.0.5:4566"), image, here(false, false))
            .unwrap_err()
            .to_string()
            .contains("not on loopback"));
        assert!(choose(EcrBackendChoice::Auto, Some("localstack:4566"), image, here(false, false)).is_err());
    }

    #[test]
    fn scenarios_localstack_cannot_express_are_named() {
        let parse = |aws: &str, env: &str| {
            let text = format!("description = \"d\"\n[target]\nregistry = \"ecr\"\n[aws]\n{aws}\n[env]\n{env}\n");
            Scenario::parse("ecr/x", std::path::Path::new("x.toml"), &text).unwrap()
        };
        assert!(cannot_express(&parse("credentials = \"expired-session\"", ""))
            .unwrap()
            .contains("expired session credentials"));
        assert!(cannot_express(&parse("", "AWS_ACCESS_KEY_ID = \"AKIAUNKNOWN\"")).unwrap().contains("literally"));
        assert_eq!(
            cannot_express(&parse("credentials = \"session\"", "AWS_ACCESS_KEY_ID = \"${AWS_ACCESS_KEY_ID}\"")),
            None
        );
    }
}
