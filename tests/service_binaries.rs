//! The services' programs by the same routes as tools, against a real HTTP server on
//! loopback: distribution's release archive with its `.sha256`, Amazon's bare helper binary
//! with its `.sha256`, a tampered download refused, and `auto` building from the Go module
//! proxy (here a module proxy in a directory) when the release host has no such asset.

mod support;

use std::path::Path;
use std::sync::{Arc, Once};
use std::time::Duration;

use ko_matrix::cache::Cache;
use ko_matrix::events::Silent;
use ko_matrix::provision::ToolchainPolicy;
use ko_matrix::services::binaries::{ECR_LOGIN, REGISTRY, REGISTRY_VERSION};
use ko_matrix::tool::release::ReleaseError;
use ko_matrix::tool::{BinaryFetcher, FetchError, FetchSettings, Program, Source};
use sha2::{Digest, Sha256};
use support::{tree, Behaviour, FileServer};

/// A fake distribution module served by a `file://` module proxy, with a module cache of its
/// own: nothing of it may reach the real module cache. Set once, before any test runs `go`.
fn fake_module_proxy() {
    static SET: Once = Once::new();
    SET.call_once(|| {
        let root = std::env::temp_dir().join(format!("ko-matrix-test-proxy-{}", std::process::id()));
        let proxy = root.join("proxy");
        let module = "github.com/distribution/distribution/v3";
        let tree = root.join("zip").join(format!("{module}@{REGISTRY_VERSION}"));
        std::fs::create_dir_all(tree.join("cmd/registry")).unwrap();
        std::fs::create_dir_all(tree.join("version")).unwrap();
        let go_mod = format!("module {module}\n\ngo 1.21\n");
        std::fs::write(tree.join("go.mod"), &go_mod).unwrap();
        std::fs::write(tree.join("version/version.go"), "package version\n\nvar version = \"unset\"\n\nfunc Version() string { return version }\n").unwrap();
        let main = format!("package main\n\nimport (\n\t\"fmt\"\n\t\"os\"\n\n\t\"{module}/version\"\n)\n\nfunc main() {{\n\tif len(os.Args) > 1 && os.Args[1] == \"--version\" {{\n\t\tfmt.Println(\"registry {module}\", version.Version())\n\t\treturn\n\t}}\n\tos.Exit(2)\n}}\n");
        std::fs::write(tree.join("cmd/registry/main.go"), main).unwrap();
        let at_v = proxy.join(module).join("@v");
        std::fs::create_dir_all(&at_v).unwrap();
        let zip = std::process::Command::new("zip")
            .args(["-qrD", at_v.join(format!("{REGISTRY_VERSION}.zip")).to_str().unwrap(), &format!("{module}@{REGISTRY_VERSION}")])
            .current_dir(root.join("zip"))
            .status()
            .expect("zip (scripts/install-deps) makes the module zip");
        assert!(zip.success());
        std::fs::write(at_v.join("list"), format!("{REGISTRY_VERSION}\n")).unwrap();
        std::fs::write(at_v.join(format!("{REGISTRY_VERSION}.info")), format!("{{\"Version\":\"{REGISTRY_VERSION}\",\"Time\":\"2025-04-02T00:00:00Z\"}}")).unwrap();
        std::fs::write(at_v.join(format!("{REGISTRY_VERSION}.mod")), go_mod).unwrap();
        // Edition 2021: set before any test spawns `go` (every test calls this first).
        std::env::set_var("GOPROXY", format!("file://{}", proxy.display()));
        std::env::set_var("GOSUMDB", "off");
        std::env::set_var("GOMODCACHE", root.join("modcache"));
    });
}

fn fetcher(program: Program, source: Source, cache: &Path, server: &FileServer) -> BinaryFetcher {
    fake_module_proxy();
    let settings = FetchSettings {
        source,
        release_base_url: Some(server.url()),
        go_toolchain: ToolchainPolicy::Local,
        stall_timeout: Duration::from_secs(2),
        build_timeout: Duration::from_secs(300),
        ..FetchSettings::default()
    };
    BinaryFetcher::new(program, Cache::at(cache), &settings, Arc::new(Silent))
}

/// distribution's release for 3.0.0 under `root/v3.0.0/`: a tar.gz holding `registry` (a
/// script answering `--version` with `reports`), LICENSE and README.md, and the archive's
/// digest alone in `<archive>.sha256`. Returns the archive's path.
fn write_registry_release(root: &Path, reports: &str) -> std::path::PathBuf {
    let dir = root.join(format!("v{}", REGISTRY_VERSION.trim_start_matches('v')));
    std::fs::create_dir_all(&dir).unwrap();
    let asset = REGISTRY.release.asset_name(REGISTRY_VERSION).unwrap();
    let archive = dir.join(&asset);
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    let script = format!("#!/bin/sh\n[ \"$1\" = --version ] && {{ echo 'registry github.com/distribution/distribution/v3 {reports}'; exit 0; }}\nexit 2\n");
    for (name, data, mode) in [
        ("LICENSE", "Apache License 2.0\n", 0o644),
        ("README.md", "# distribution\n", 0o644),
        ("registry", script.as_str(), 0o755),
    ] {
        let mut header = tar::Header::new_gnu();
        header.set_size(data.len() as u64);
        header.set_mode(mode);
        header.set_cksum();
        tar.append_data(&mut header, name, data.as_bytes()).unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap();
    std::fs::write(dir.join(format!("{asset}.sha256")), hex::encode(Sha256::digest(std::fs::read(&archive).unwrap())))
        .unwrap();
    archive
}

fn release_error(result: Result<ko_matrix::cache::Installed, FetchError>) -> ReleaseError {
    match result {
        Err(FetchError::Release { source, .. }) => *source,
        other => panic!("expected a release error, got {other:?}"),
    }
}

#[test]
fn the_published_names_are_used() {
    if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
        assert_eq!(REGISTRY.release.asset_name("v3.0.0").unwrap(), "registry_3.0.0_linux_amd64.tar.gz");
        assert_eq!(REGISTRY.release.checksums_name("v3.0.0").unwrap(), "registry_3.0.0_linux_amd64.tar.gz.sha256");
        assert_eq!(REGISTRY.release.dir_name("v3.0.0").unwrap(), "v3.0.0");
        assert_eq!(ECR_LOGIN.release.dir_name("v0.9.1").unwrap(), "0.9.1/linux-amd64");
        assert_eq!(ECR_LOGIN.release.checksums_name("v0.9.1").unwrap(), "docker-credential-ecr-login.sha256");
    }
}

#[tokio::test]
async fn auto_takes_distributions_release_archive_checked_against_its_sha256() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    write_registry_release(site.path(), "3.0.0");
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let registry = fetcher(REGISTRY, Source::Auto, cache.path(), &server).install(REGISTRY_VERSION).await.unwrap();
    assert_eq!((registry.manifest.route.as_str(), registry.manifest.version.as_str()), ("release", "v3.0.0"));
    assert_eq!(registry.manifest.origin, format!("{}/v3.0.0/registry_3.0.0_linux_amd64.tar.gz", server.url()));
    let out = std::process::Command::new(&registry.path).arg("--version").output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "registry github.com/distribution/distribution/v3 3.0.0");
    assert_eq!(
        tree(cache.path()),
        [
            "tools/registry/.v3.0.0-release.lock",
            "tools/registry/v3.0.0-release/manifest.json",
            "tools/registry/v3.0.0-release/registry",
            "tools/registry/v3.0.0-release/verified"
        ]
    );

    drop(server); // Cached: no host needed.
    let dead = FileServer::start(tempfile::tempdir().unwrap().path(), Behaviour::Serve).await;
    let again = fetcher(REGISTRY, Source::Auto, cache.path(), &dead).install(REGISTRY_VERSION).await.unwrap();
    assert!(again.from_cache);
}

#[tokio::test]
async fn a_tampered_archive_is_refused_and_nothing_is_kept() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let archive = write_registry_release(site.path(), "3.0.0");
    let mut bytes = std::fs::read(&archive).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    std::fs::write(&archive, &bytes).unwrap();
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    // Even `auto` does not fall back to building over a mismatch: it is an error to see.
    let err = release_error(fetcher(REGISTRY, Source::Auto, cache.path(), &server).install(REGISTRY_VERSION).await);
    let ReleaseError::ChecksumMismatch { expected, actual, .. } = &err else { panic!("{err}") };
    assert_eq!(actual, &hex::encode(Sha256::digest(&bytes)));
    assert_ne!(expected, actual);
    assert_eq!(tree(cache.path()), ["tools/registry/.v3.0.0-release.lock"]);
}

#[tokio::test]
async fn the_ecr_helper_is_a_bare_binary_with_a_sidecar_naming_it() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let dir = site.path().join(ECR_LOGIN.release.dir_name("v0.9.1").unwrap());
    std::fs::create_dir_all(&dir).unwrap();
    let binary = b"#!/bin/sh\necho ecr-login fake\n";
    std::fs::write(dir.join("docker-credential-ecr-login"), binary).unwrap();
    let digest = hex::encode(Sha256::digest(binary));
    std::fs::write(dir.join("docker-credential-ecr-login.sha256"), format!("{digest}  docker-credential-ecr-login\n"))
        .unwrap();
    let server = FileServer::start(site.path(), Behaviour::Serve).await;

    let helper = fetcher(ECR_LOGIN, Source::Release, cache.path(), &server).install("v0.9.1").await.unwrap();
    assert_eq!(helper.manifest.origin, format!("{}/0.9.1/linux-amd64/docker-credential-ecr-login", server.url()));
    assert_eq!(helper.manifest.sha256, digest);
    let out = std::process::Command::new(&helper.path).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "ecr-login fake", "kept executable, as downloaded");

    // A sidecar that names another file vouches for nothing.
    let (cache2, other) = (tempfile::tempdir().unwrap(), format!("{digest}  docker-credential-ecr-login.exe\n"));
    std::fs::write(dir.join("docker-credential-ecr-login.sha256"), other).unwrap();
    let err = release_error(fetcher(ECR_LOGIN, Source::Release, cache2.path(), &server).install("v0.9.1").await);
    assert!(matches!(err, ReleaseError::ChecksumMissing { .. }), "{err}");
}

#[tokio::test]
async fn auto_builds_from_the_module_proxy_when_the_release_has_no_such_asset() {
    let (site, cache) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let server = FileServer::start(site.path(), Behaviour::Serve).await; // Answers, but 404s.

    let err = release_error(fetcher(REGISTRY, Source::Release, cache.path(), &server).install(REGISTRY_VERSION).await);
    assert!(err.is_missing(), "{err}");
    let built = fetcher(REGISTRY, Source::Auto, cache.path(), &server)
        .install(REGISTRY_VERSION)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(
        (built.manifest.route.as_str(), built.manifest.origin.as_str()),
        ("go", "github.com/distribution/distribution/v3/cmd/registry@v3.0.0")
    );
    let out = std::process::Command::new(&built.path).arg("--version").output().unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "registry github.com/distribution/distribution/v3 3.0.0",
        "stamped release-style"
    );
}
