//! The example in `emulators/README.md`, run for real: an emulated ECR in front of a real
//! distribution registry, and a real crane pushing to it through the gateway. The function
//! between the README markers below is the README's example, to the letter (checked here), so
//! the example another project copies is one that works.

mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use ko_matrix::services::binaries::ServiceBinaries;

// README example begins
use std::sync::Arc;

use ko_matrix_emulators::aws::{state::AwsSpec, AwsWorld};
use ko_matrix_emulators::gateway::{Gateway, Route};
use ko_matrix_emulators::pki::Ca;
use ko_matrix_emulators::vendor::{Backing, WorldPart};

/// Pushes the image tarball `image` with `crane` to an emulated ECR that stores what it is
/// given in the distribution registry at `registry`; returns the pushed reference and what
/// the gateway saw, one `METHOD host/path → status` a line.
async fn push_to_emulated_ecr(
    registry: SocketAddr,
    crane: &Path,
    image: &Path,
    dir: &Path,
) -> Result<(String, Vec<String>), Box<dyn std::error::Error>> {
    // ECR for account 123456789012 in us-east-1, with the repository `app`.
    let spec = AwsSpec::default();
    let ecr = AwsWorld::start(Backing { registry, aws: vec![spec.clone()] }).await?;

    // The client reaches ECR's hosts only through the gateway, which terminates TLS for them
    // with certificates from its CA.
    let ca = Arc::new(Ca::new()?);
    let gateway = Gateway::new(ca.clone());
    for (host, backend) in ecr.routes() {
        gateway.route(&host, Route::Terminate { backend })?;
    }
    ca.write_bundle(&dir.join("ca.pem"))?;

    // One session per client under test: its own proxy address and request record, and its
    // own AWS account state (keys, passwords, repositories).
    let session = gateway.session().await?;
    let cell = ecr.emulator.open_cell(session.id, spec.clone()).await?;

    // Log in as `aws ecr get-login-password | docker login --username AWS` would, then push.
    let login = format!("AWS:{}", cell.login_password());
    let auth = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, login);
    let config = serde_json::json!({ "auths": { spec.registry_host(): { "auth": auth } } });
    std::fs::write(dir.join("config.json"), config.to_string())?;
    let reference = format!("{}/app:latest", spec.registry_host());
    let pushed = tokio::process::Command::new(crane)
        .args(["push", &image.display().to_string(), &reference])
        .env("HTTPS_PROXY", session.proxy_url())
        .env("SSL_CERT_FILE", dir.join("ca.pem"))
        .env("DOCKER_CONFIG", dir)
        .output()
        .await?;
    if !pushed.status.success() {
        return Err(String::from_utf8_lossy(&pushed.stderr).into_owned().into());
    }
    let record =
        session.records().iter().map(|r| format!("{} {}{} → {}", r.method, r.host, r.path, r.status)).collect();
    Ok((String::from_utf8_lossy(&pushed.stdout).trim().to_string(), record))
}
// README example ends

/// A distribution registry on a free loopback port, storing under `dir`; stopped on drop.
async fn distribution(dir: &Path) -> (tokio::process::Child, SocketAddr) {
    let binary = ServiceBinaries::like(&support::provisioner()).registry().await.unwrap_or_else(|e| panic!("{e}"));
    let addr = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
    let config = format!(
        "version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
        dir.join("storage").display()
    );
    std::fs::write(dir.join("registry.yml"), config).unwrap();
    let mut cmd = tokio::process::Command::new(binary);
    cmd.arg("serve")
        .arg(dir.join("registry.yml"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let child = cmd.spawn().unwrap();
    support::wait_for("the registry to listen", Duration::from_secs(20), || std::net::TcpStream::connect(addr).is_ok());
    (child, addr)
}

#[tokio::test(flavor = "multi_thread")]
async fn the_readmes_ecr_example_pushes_with_crane() {
    let dir = tempfile::tempdir().unwrap();
    let (_registry, addr) = distribution(dir.path()).await;
    let crane = support::crane("v0.20.7").await;
    // A one-layer image, as a tarball crane can push.
    let layer = dir.path().join("layer.tar");
    let mut tar = tar::Builder::new(std::fs::File::create(&layer).unwrap());
    let mut header = tar::Header::new_gnu();
    header.set_size(6);
    header.set_mode(0o644);
    header.set_cksum();
    tar.append_data(&mut header, "hello.txt", &b"hello\n"[..]).unwrap();
    tar.finish().unwrap();
    let image = dir.path().join("image.tar");
    let made = tokio::process::Command::new(&crane)
        .args(["append", "--new_layer"])
        .arg(&layer)
        .args(["--new_tag", "example/app:latest", "--output"])
        .arg(&image)
        .output()
        .await
        .unwrap();
    assert!(made.status.success(), "crane append: {}", String::from_utf8_lossy(&made.stderr));

    let (pushed, record) =
        push_to_emulated_ecr(addr, &crane, &image, dir.path()).await.unwrap_or_else(|e| panic!("{e}"));
    assert!(pushed.starts_with("123456789012.dkr.ecr.us-east-1.amazonaws.com/app@sha256:"), "{pushed}");
    let manifest_put = "PUT 123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/latest → 201";
    assert!(record.iter().any(|r| r == manifest_put), "{record:#?}");
}

#[test]
fn the_readmes_example_is_this_file_s() {
    let here = include_str!("emulators_readme.rs");
    let example =
        here.split("// README example begins\n").nth(1).and_then(|rest| rest.split("// README example ends").next());
    let example = example.expect("the markers are in this file");
    let readme = std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("emulators/README.md")).unwrap();
    assert!(
        readme.contains(example),
        "emulators/README.md must show the example in tests/emulators_readme.rs to the letter; copy it from there"
    );
}
