//! The push world's guarantees: the gateway refuses hosts it does not know, a parent's
//! secrets never reach a cell, and a terminated run leaves no process behind.

mod support;

use std::collections::BTreeSet;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use ko_matrix_emulators::gateway::{Backend, Gateway, Route};
use ko_matrix_emulators::pki::Ca;
use support::{ko_matrix, wait_for, FileServer};

fn proxied_client(ca: &Ca, proxy: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .proxy(reqwest::Proxy::all(proxy).unwrap())
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&ca.cert_der()).unwrap())
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

#[tokio::test]
async fn the_gateway_serves_known_hosts_and_refuses_the_rest() {
    let site = tempfile::tempdir().unwrap();
    std::fs::write(site.path().join("hello"), "hello through the gateway").unwrap();
    let backend = FileServer::start(site.path(), support::Behaviour::Serve).await;
    let ca = Arc::new(Ca::new().unwrap());
    let gateway = Gateway::new(ca.clone());
    gateway.route("known.ko-matrix.test", Route::Terminate { backend: Backend::http(backend.addr) }).unwrap();
    let session = gateway.session().await.unwrap();
    let client = proxied_client(&ca, &session.proxy_url());

    // TLS terminated with a leaf minted for the host, then forwarded.
    let body = client.get("https://known.ko-matrix.test/hello").send().await.unwrap().text().await.unwrap();
    assert_eq!(body, "hello through the gateway");

    // Unknown hosts, over CONNECT and as plain proxied HTTP (what an SDK does for IMDS).
    let err = client.get("https://example.com/").send().await.unwrap_err();
    assert!(format!("{err:?}").to_lowercase().contains("403") || err.is_connect(), "{err:?}");
    let imds = client.get("http://169.254.169.254/latest/meta-data/").send().await.unwrap();
    assert_eq!(imds.status(), 403);

    let records = session.records();
    let refused: BTreeSet<&str> = records.iter().filter(|r| r.status == 403).map(|r| r.host.as_str()).collect();
    assert_eq!(refused, BTreeSet::from(["example.com", "169.254.169.254"]));
    assert!(records.iter().filter(|r| r.status == 403).all(|r| r.note.as_deref().unwrap().starts_with("unknown host")));
    assert!(
        records
            .iter()
            .any(|r| r.host == "known.ko-matrix.test" && r.method == "GET" && r.path == "/hello" && r.status == 200),
        "{records:?}"
    );
}

#[tokio::test]
async fn each_session_records_only_its_own_traffic() {
    let ca = Arc::new(Ca::new().unwrap());
    let gateway = Gateway::new(ca.clone());
    let (a, b) = (gateway.session().await.unwrap(), gateway.session().await.unwrap());
    let _ = proxied_client(&ca, &a.proxy_url()).get("http://a.invalid/").send().await;
    assert_eq!(a.records().len(), 1);
    assert!(b.records().is_empty());
}

/// `ko-matrix run` for one cell, from the repository root, with `env` added.
fn run_cells(versions: &str, scenarios: &str, out: &std::path::Path, env: &[(&str, &str)]) -> std::process::Command {
    let mut cmd = ko_matrix();
    cmd.current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["run", "--versions", versions, "--scenarios", scenarios, "--out"])
        .arg(out)
        .envs(env.iter().copied());
    cmd
}

#[test]
fn parent_secrets_never_reach_a_cell() {
    let (out, parent_docker) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    // A parent DOCKER_CONFIG whose auths would let the push succeed if it leaked (the
    // harness's own user; the password is wrong, but the username must not show up either).
    let auth = "a28tbWF0cml4LXVzZXI6cGFyZW50LXNlY3JldC1wYXNzd29yZA=="; // ko-matrix-user:parent-secret-password
    std::fs::write(
        parent_docker.path().join("config.json"),
        format!(r#"{{"auths":{{"basic.ko-matrix.test":{{"auth":"{auth}"}}}}}}"#),
    )
    .unwrap();
    let secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYPARENTSECRET";
    let auth_file = parent_docker.path().join("config.json");
    let parent_env = [
        ("AWS_ACCESS_KEY_ID", "AKIAPARENTKEY0000000"),
        ("AWS_SECRET_ACCESS_KEY", secret),
        ("DOCKER_CONFIG", parent_docker.path().to_str().unwrap()),
        ("KO_DOCKER_REPO", "parent.example.com/leaked"),
        ("REGISTRY_AUTH_FILE", auth_file.to_str().unwrap()),
    ];
    let status = run_cells("v0.15.1", "registry/no-credentials", out.path(), &parent_env).status().unwrap();
    assert_eq!(status.code(), Some(0));

    let matrix: serde_json::Value =
        serde_json::from_slice(&std::fs::read(out.path().join("matrix.json")).unwrap()).unwrap();
    let cell = &matrix["cells"][0];
    assert_eq!((cell["outcome"].as_str(), cell["class"].as_str()), (Some("fail"), Some("unauthorized")), "{cell}");
    let env = cell["env"].as_object().unwrap();
    for (name, _) in parent_env {
        assert!(!env.contains_key(name) || name == "KO_DOCKER_REPO", "{name} leaked into the cell: {env:?}");
    }
    assert!(env["KO_DOCKER_REPO"].as_str().unwrap().starts_with("basic.ko-matrix.test/"));
    assert!(!env.keys().any(|k| k.starts_with("AWS_")), "{env:?}");
    let log = std::fs::read_to_string(cell["log"].as_str().unwrap()).unwrap();
    for leaked in [secret, "AKIAPARENTKEY0000000", auth, parent_docker.path().to_str().unwrap()] {
        assert!(!log.contains(leaked), "{leaked} appears in the cell log");
    }
}

/// Every process below `pid` (children, grandchildren, …).
fn descendants(pid: u32) -> BTreeSet<u32> {
    let mut parents: Vec<(u32, u32)> = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(child) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else { continue };
        let after_name = &stat[stat.rfind(')').unwrap() + 2..];
        let ppid: u32 = after_name.split_whitespace().nth(1).unwrap().parse().unwrap();
        parents.push((child, ppid));
    }
    let mut found = BTreeSet::from([pid]);
    loop {
        let before = found.len();
        for (child, ppid) in &parents {
            if found.contains(ppid) {
                found.insert(*child);
            }
        }
        if found.len() == before {
            found.remove(&pid);
            return found;
        }
    }
}

fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .is_ok_and(|stat| !stat[stat.rfind(')').unwrap() + 2..].starts_with('Z'))
}

#[test]
fn sigterm_mid_run_leaves_no_process_behind() {
    let out = tempfile::tempdir().unwrap();
    let mut child = run_cells("v0.15.1,v0.15.2", "registry/*", out.path(), &[])
        .args(["--jobs", "2"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    // Wait until registries are up and cells (ko processes) are running.
    let mut seen = BTreeSet::new();
    wait_for("registries and a ko cell below ko-matrix", Duration::from_secs(300), || {
        seen.extend(descendants(pid));
        let names: Vec<String> =
            seen.iter().filter_map(|p| std::fs::read_to_string(format!("/proc/{p}/comm")).ok()).collect();
        names.iter().any(|n| n.contains("registry")) && names.iter().any(|n| n.trim() == "ko")
    });
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(143), "ko-matrix reports termination");
    wait_for("every process the run started to be gone", Duration::from_secs(20), || !seen.iter().any(|p| alive(*p)));
}

/// A fresh machine without Debian's docker-registry: the harness builds distribution from
/// the module proxy (pinned) and runs that instead.
#[tokio::test]
async fn the_registry_built_from_the_module_proxy_serves() {
    use ko_matrix::services::binaries::REGISTRY_VERSION;
    use ko_matrix::services::registry::{RegistryAuth, RegistrySpec, REGISTRY_TOOL};
    let settings = ko_matrix::tool::FetchSettings::default();
    let provisioner = ko_matrix::provision::GoProvisioner::new(
        ko_matrix::cache::Cache::from_env().unwrap(),
        settings.go_toolchain,
        settings.build_timeout,
        Arc::new(ko_matrix::events::Silent),
    );
    let built = provisioner.install(&REGISTRY_TOOL, REGISTRY_VERSION).await.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(built.manifest.version, REGISTRY_VERSION);
    let ca = Ca::new().unwrap();
    let registry = ko_matrix::services::runtime::start_process(
        &RegistrySpec { auth: RegistryAuth::Anonymous, tls: None },
        &built.path,
        &ca,
    )
    .await
    .unwrap();
    let status = reqwest::Client::builder()
        .no_proxy()
        .build()
        .unwrap()
        .get(format!("http://{}/v2/", registry.addr))
        .send()
        .await
        .unwrap()
        .status();
    assert_eq!(status, 200);
}

/// A host routed by passthrough: the gateway splices bytes to a backend that terminates TLS
/// itself, and the client verifies that backend's certificate.
#[tokio::test]
async fn the_gateway_passes_tls_through_untouched() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let ca = Arc::new(Ca::new().unwrap());
    let leaf = ca.issue(&["pass.ko-matrix.test"], &[rcgen::ExtendedKeyUsagePurpose::ServerAuth]).unwrap();
    let config = rustls::ServerConfig::builder_with_provider(ko_matrix_emulators::pki::provider())
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der())
        .unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut tls = acceptor.accept(stream).await.unwrap();
        let mut buf = [0u8; 1024];
        let _ = tls.read(&mut buf).await.unwrap();
        tls.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 12\r\nconnection: close\r\n\r\nfrom the tls").await.unwrap();
        tls.shutdown().await.unwrap();
    });
    let gateway = Gateway::new(ca.clone());
    gateway.route("pass.ko-matrix.test", Route::Passthrough { addr: backend }).unwrap();
    let session = gateway.session().await.unwrap();
    let body = proxied_client(&ca, &session.proxy_url())
        .get("https://pass.ko-matrix.test/")
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(body, "from the tls");
    assert_eq!(session.records()[0].method, "CONNECT");
    assert!(
        session.records().iter().all(|r| r.method == "CONNECT"),
        "the gateway cannot see inside a passthrough tunnel"
    );
}

/// A fresh machine without Debian's amazon-ecr-credential-helper: the harness builds
/// `docker-credential-ecr-login` from the module proxy (pinned) and it answers as a helper.
#[tokio::test]
async fn ecr_login_built_from_the_module_proxy_speaks_the_helper_protocol() {
    use ko_matrix::services::binaries::{ECR_LOGIN_TOOL, ECR_LOGIN_VERSION};
    let settings = ko_matrix::tool::FetchSettings::default();
    let provisioner = ko_matrix::provision::GoProvisioner::new(
        ko_matrix::cache::Cache::from_env().unwrap(),
        settings.go_toolchain,
        settings.build_timeout,
        Arc::new(ko_matrix::events::Silent),
    );
    let built = provisioner.install(&ECR_LOGIN_TOOL, ECR_LOGIN_VERSION).await.unwrap_or_else(|e| panic!("{e}"));
    let home = tempfile::tempdir().unwrap();
    // Not an ECR host: the helper must say so in the protocol's words, without any network.
    let mut child = std::process::Command::new(&built.path)
        .arg("get")
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    std::io::Write::write_all(child.stdin.as_mut().unwrap(), b"basic.ko-matrix.test").unwrap();
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("credentials not found in native keychain"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}
