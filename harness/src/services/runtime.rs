//! How services run: a local child process (default) or a container via testcontainers.
//! Both take the same [`RegistrySpec`].

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use super::registry::RegistrySpec;
use crate::config::RuntimeChoice;
use crate::process::Contained;
use ko_matrix_emulators::pki::Ca;

#[derive(Debug, thiserror::Error)]
pub enum ServiceError {
    #[error("no {what} binary: {source}; install one on PATH (scripts/install-deps) or let ko-matrix reach GitHub releases or the Go module proxy")]
    NoBinary { what: &'static str, source: Box<crate::tool::FetchError> },
    #[error("preparing the registry's files in {dir}: {detail}")]
    Files { dir: PathBuf, detail: String },
    #[error("the registry did not start: {0}")]
    Start(#[from] crate::process::RunError),
    #[error("the registry at {addr} did not answer /v2/ within {waited:?}; its log ({log}) ends:\n{tail}")]
    NotReady { addr: SocketAddr, waited: Duration, log: PathBuf, tail: String },
    #[error("services.runtime = \"docker\" but no Docker engine answers ({0}); use \"process\" or \"auto\"")]
    NoDocker(NoDockerEngine),
    #[error("services.runtime = \"docker\" needs ko-matrix built with its `docker` feature, and this one was built without it (--no-default-features); reinstall with the default features (`cargo install --path .`) or use services.runtime = \"process\"")]
    DockerNotBuilt,
    #[error("starting the registry container failed: {0}")]
    #[cfg_attr(not(feature = "docker"), allow(dead_code))]
    Container(String),
}

/// Why no Docker engine answers: the reason only, for messages that say what it stops.
/// Plain fields, not `source`: those messages already embed the reason.
#[derive(Debug, thiserror::Error)]
pub enum NoDockerEngine {
    #[error("DOCKER_HOST={0} is not a unix socket; only local engines are used")]
    NotUnix(String),
    #[error("{socket}: {error}")]
    Socket { socket: String, error: std::io::Error },
    #[error("{socket} answered {first_line:?}")]
    NotOk { socket: String, first_line: String },
    #[error("{socket}: no answer within {PING_TIMEOUT:?}")]
    Silent { socket: String },
    #[error("this ko-matrix was built without its `docker` feature, so it uses no engine; `cargo install --path .` (default features) includes it")]
    NotBuilt,
}

const PING_TIMEOUT: Duration = Duration::from_secs(5);

/// A running registry; stops when dropped.
pub struct RunningRegistry {
    pub addr: SocketAddr,
    pub tls: bool,
    /// `process` or `docker`.
    pub runtime: &'static str,
    _guard: Guard,
}

enum Guard {
    Process {
        _child: Box<Contained>,
        _dir: tempfile::TempDir,
    },
    #[cfg(feature = "docker")]
    Docker {
        _container: Box<testcontainers::ContainerAsync<testcontainers::GenericImage>>,
    },
}

/// Picks the runtime: `auto` uses Docker only where an engine answers, and says so (the
/// note) when it falls back to local processes.
pub async fn resolve_runtime(choice: RuntimeChoice) -> Result<(&'static str, Option<String>), ServiceError> {
    match choice {
        RuntimeChoice::Process => Ok(("process", None)),
        RuntimeChoice::Docker if !cfg!(feature = "docker") => Err(ServiceError::DockerNotBuilt),
        RuntimeChoice::Docker => docker_engine().await.map(|_| ("docker", None)).map_err(ServiceError::NoDocker),
        RuntimeChoice::Auto => Ok(match docker_engine().await {
            Ok(()) => ("docker", None),
            Err(reason) => ("process", Some(format!("services.runtime = \"auto\": running registries as local processes, since no Docker engine answers ({reason})"))),
        }),
    }
}

/// Whether a Docker engine answers `/_ping` on its socket (`DOCKER_HOST` or the default);
/// never, in a build without the `docker` feature.
pub async fn docker_engine() -> Result<(), NoDockerEngine> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if !cfg!(feature = "docker") {
        return Err(NoDockerEngine::NotBuilt);
    }
    let socket = match std::env::var("DOCKER_HOST") {
        Ok(host) if host.starts_with("unix://") => host.trim_start_matches("unix://").to_string(),
        Ok(host) if !host.is_empty() => return Err(NoDockerEngine::NotUnix(host)),
        _ => "/var/run/docker.sock".to_string(),
    };
    let socket_error = |error| NoDockerEngine::Socket { socket: socket.clone(), error };
    let ping = async {
        let mut stream = tokio::net::UnixStream::connect(&socket).await.map_err(socket_error)?;
        stream.write_all(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n").await.map_err(socket_error)?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer).await.map_err(socket_error)?;
        if answer.ends_with("OK") {
            Ok(())
        } else {
            Err(NoDockerEngine::NotOk {
                socket: socket.clone(),
                first_line: answer.lines().next().unwrap_or_default().to_string(),
            })
        }
    };
    tokio::time::timeout(PING_TIMEOUT, ping).await.map_err(|_| NoDockerEngine::Silent { socket: socket.clone() })?
}

const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Starts `spec` as a child process of `binary` on a free loopback port, trying another
/// port when something else took the chosen one first.
pub async fn start_process(spec: &RegistrySpec, binary: &Path, ca: &Ca) -> Result<RunningRegistry, ServiceError> {
    let mut attempts = 0;
    loop {
        match start_process_once(spec, binary, ca).await {
            Err(ServiceError::NotReady { tail, .. }) if tail.contains("address already in use") && attempts < 3 => {
                attempts += 1
            }
            other => return other,
        }
    }
}

async fn start_process_once(spec: &RegistrySpec, binary: &Path, ca: &Ca) -> Result<RunningRegistry, ServiceError> {
    let dir = tempfile::Builder::new()
        .prefix("ko-matrix-registry-")
        .tempdir()
        .map_err(|e| files_err(Path::new("/tmp"), e))?;
    let files_dir = dir.path().join("files");
    let storage = dir.path().join("storage");
    for d in [&files_dir, &storage] {
        std::fs::create_dir_all(d).map_err(|e| files_err(d, e))?;
    }
    for file in spec.files().map_err(|e| files_err(&files_dir, e))? {
        std::fs::write(files_dir.join(file.name), &file.contents).map_err(|e| files_err(&files_dir, e))?;
    }
    let addr = free_port()?;
    let config = spec.config(&addr.to_string(), &storage.display().to_string(), &files_dir.display().to_string());
    let config_path = dir.path().join("config.yml");
    std::fs::write(&config_path, serde_json::to_vec_pretty(&config).expect("config serialises"))
        .map_err(|e| files_err(&config_path, e))?;
    let log_path = dir.path().join("registry.log");
    let log = std::fs::File::create(&log_path).map_err(|e| files_err(&log_path, e))?;
    let mut cmd = Command::new(binary);
    cmd.arg("serve")
        .arg(&config_path)
        .env_clear()
        .env("PATH", "/usr/bin:/bin")
        .stdin(Stdio::null())
        .stdout(log.try_clone().map_err(|e| files_err(&log_path, e))?)
        .stderr(log);
    let mut child = Contained::spawn(cmd)?;
    wait_ready(addr, spec.tls.is_some(), ca, &log_path, Some(&mut child)).await?;
    Ok(RunningRegistry {
        addr,
        tls: spec.tls.is_some(),
        runtime: "process",
        _guard: Guard::Process { _child: Box::new(child), _dir: dir },
    })
}

/// Starts `spec` as the pinned `registry` image: not in a build without the `docker` feature.
#[cfg(not(feature = "docker"))]
pub async fn start_container(_spec: &RegistrySpec, _ca: &Ca) -> Result<RunningRegistry, ServiceError> {
    Err(ServiceError::DockerNotBuilt)
}

/// Starts `spec` as the pinned `registry` image through testcontainers.
#[cfg(feature = "docker")]
pub async fn start_container(spec: &RegistrySpec, ca: &Ca) -> Result<RunningRegistry, ServiceError> {
    use testcontainers::core::{IntoContainerPort, WaitFor};
    use testcontainers::runners::AsyncRunner;
    use testcontainers::{GenericImage, ImageExt};

    docker_engine().await.map_err(ServiceError::NoDocker)?;
    let config = spec.config("0.0.0.0:5000", "/var/lib/registry", "/ko-matrix");
    let (image, tag) = super::registry::REGISTRY_IMAGE;
    let mut request = GenericImage::new(image, tag)
        .with_exposed_port(5000.tcp())
        .with_wait_for(WaitFor::message_on_stderr("listening on"))
        .with_copy_to("/ko-matrix/config.yml", serde_json::to_vec_pretty(&config).expect("config serialises"))
        .with_cmd(["/ko-matrix/config.yml"]);
    for file in spec.files().map_err(|e| files_err(Path::new("/ko-matrix"), e))? {
        request = request.with_copy_to(format!("/ko-matrix/{}", file.name), file.contents);
    }
    let container = request.start().await.map_err(|e| ServiceError::Container(e.to_string()))?;
    let port = container.get_host_port_ipv4(5000).await.map_err(|e| ServiceError::Container(e.to_string()))?;
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    wait_ready(addr, spec.tls.is_some(), ca, Path::new("(container logs)"), None).await?;
    Ok(RunningRegistry {
        addr,
        tls: spec.tls.is_some(),
        runtime: "docker",
        _guard: Guard::Docker { _container: Box::new(container) },
    })
}

fn files_err(dir: &Path, e: impl std::fmt::Display) -> ServiceError {
    ServiceError::Files { dir: dir.to_path_buf(), detail: e.to_string() }
}

/// A loopback port that was free a moment ago and that this process has not handed out
/// before (the kernel may return a just-closed port to the next `bind(:0)`, and registries
/// starting side by side must not race for one).
fn free_port() -> Result<SocketAddr, ServiceError> {
    static HANDED_OUT: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let listener =
            std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| files_err(Path::new("127.0.0.1:0"), e))?;
        let addr = listener.local_addr().map_err(|e| files_err(Path::new("127.0.0.1:0"), e))?;
        if HANDED_OUT.lock().expect("port set lock").insert(addr.port()) {
            return Ok(addr);
        }
    }
}

/// Polls `GET /v2/` until the registry answers with any HTTP status.
async fn wait_ready(
    addr: SocketAddr,
    tls: bool,
    ca: &Ca,
    log: &Path,
    mut child: Option<&mut Contained>,
) -> Result<(), ServiceError> {
    let client = registry_client(ca);
    let url = format!("{}://{addr}/v2/", if tls { "https" } else { "http" });
    let started = Instant::now();
    loop {
        // A child process must also have logged its own listener: whatever else might hold
        // the port then cannot pass for it.
        let own_listener =
            child.is_none() || std::fs::read_to_string(log).is_ok_and(|text| text.contains("listening on"));
        if own_listener && client.get(&url).send().await.is_ok() {
            return Ok(());
        }
        let exited = match child.as_deref_mut() {
            Some(child) => child.child_mut().try_wait().ok().flatten().is_some(),
            None => false,
        };
        if exited || started.elapsed() > READY_TIMEOUT {
            let text = std::fs::read_to_string(log).unwrap_or_default();
            let tail = text.lines().rev().take(15).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
            return Err(ServiceError::NotReady { addr, waited: started.elapsed(), log: log.to_path_buf(), tail });
        }
        // A registry is up some 50-100 ms after it starts: a short poll does not add a
        // whole interval to every run's start.
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A client for talking to registries directly (readiness, verification, base image):
/// trusts only the run's CA, never uses a proxy.
pub(crate) fn registry_client(ca: &Ca) -> reqwest::Client {
    reqwest::Client::builder()
        .no_proxy()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&ca.cert_der()).expect("our CA certificate parses"))
        .timeout(Duration::from_secs(30))
        .build()
        .expect("static reqwest configuration is valid")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A build without the `docker` feature says how to get it when Docker is asked for, and
    /// `auto` quietly runs processes (no engine is ever found).
    #[cfg(not(feature = "docker"))]
    #[tokio::test]
    async fn without_the_docker_feature_docker_is_refused_with_the_way_to_get_it() {
        let err = resolve_runtime(RuntimeChoice::Docker).await.unwrap_err();
        assert!(matches!(err, ServiceError::DockerNotBuilt), "{err}");
        let message = err.to_string();
        assert!(message.contains("`docker` feature") && message.contains("cargo install --path ."), "{message}");
        assert_eq!(resolve_runtime(RuntimeChoice::Auto).await.unwrap().0, "process");
        assert!(matches!(docker_engine().await, Err(NoDockerEngine::NotBuilt)));
    }

    #[cfg(feature = "docker")]
    #[tokio::test]
    async fn with_the_docker_feature_an_explicit_docker_runtime_asks_the_engine() {
        match resolve_runtime(RuntimeChoice::Docker).await {
            Ok((runtime, _)) => assert_eq!(runtime, "docker"),
            Err(ServiceError::NoDocker(reason)) => assert!(!matches!(reason, NoDockerEngine::NotBuilt), "{reason}"),
            Err(other) => panic!("{other}"),
        }
    }
}
