//! Test support: a world of its own for a test ([`world_for`]), a loopback file server that can
//! also misbehave, fake ko releases, and the one rule for what a test needs from the machine.
//!
//! The rule: a check that did not run never reads as passed.
//! - What `scripts/install-deps` installs (the AWS CLI, the Python SDKs, Chromium, curl, …) is
//!   required: without it the test fails, naming the package and the step ([`python_importing`],
//!   [`program`]).
//! - What this project cannot provide on its own machines (a Docker engine, a LocalStack token,
//!   user namespaces the kernel refuses, Go or its module proxy) makes the test *ignored* in the
//!   runner's own summary, with the reason printed (libtest-mimic's `with_ignored_flag`).
#![allow(dead_code)] // Each test binary uses a different part.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use ko_matrix::cache::Cache;
use ko_matrix::config::{RuntimeChoice, ServicesConfig};
use ko_matrix::events::Silent;
use ko_matrix::provision::{GoProvisioner, ToolchainPolicy};
use ko_matrix::scenario::Scenario;
use ko_matrix::world::World;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// The provisioner tests build Go tools with (crane, credential helpers, the conformance suite,
/// the world's own services): the shared cache, Go's `auto` toolchain, half an hour per build.
pub fn provisioner() -> GoProvisioner {
    GoProvisioner::new(Cache::from_env().unwrap(), ToolchainPolicy::Auto, Duration::from_secs(1800), Arc::new(Silent))
}

/// The scenario `name` (read as from `<name>.toml`) that `toml` holds; panics if it is not one.
pub fn scenario(name: &str, toml: &str) -> Scenario {
    Scenario::parse(name, Path::new(&format!("{name}.toml")), toml).unwrap_or_else(|e| panic!("{e}"))
}

/// How a test runs `scenarios` with the repository's app and `matrix`'s services: logs below
/// `out`, each cell within `cell_timeout`, no baseline (a cell runs once), in the given order.
pub fn runner_options(
    matrix: &ko_matrix::config::Matrix,
    scenarios: &[Scenario],
    out: &Path,
    cell_timeout: Duration,
) -> ko_matrix::run::RunnerOptions {
    ko_matrix::run::RunnerOptions {
        scenarios: scenarios.to_vec(),
        services: matrix.services.clone(),
        cell_timeout,
        out_dir: out.to_path_buf(),
        app_source: Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios/app"),
        helper: env!("CARGO_BIN_EXE_ko-matrix").into(),
        baseline: None,
        durations: None,
    }
}

/// The repository's scenario `name` (`scenarios/<name>.toml`); panics if there is none.
pub fn repo_scenario(name: &str) -> Scenario {
    ko_matrix::scenario::discover(&Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios"))
        .unwrap_or_else(|e| panic!("{e}"))
        .into_iter()
        .find(|s| s.name == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
}

/// A world started for one scenario, with what a test then needs of it.
pub struct TestWorld {
    pub world: World,
    /// The scenario it was started for: its `[aws]`, `[account]`, … open the cells.
    pub scenario: Scenario,
    /// The world's work dir, also the test's own scratch space; removed when dropped (after
    /// the world, which is declared first).
    pub dir: tempfile::TempDir,
}

/// A world of its own (local processes, no Docker) for the scenario `toml` holds (a whole
/// scenario file: `description`, `[target]`, and whatever tables the test needs). Panics if
/// it does not start; see [`try_world_for`].
pub async fn world_for(toml: &str) -> TestWorld {
    try_world_for(toml).await.unwrap_or_else(|e| panic!("{e}"))
}

/// [`world_for`], with why the scenario or the world failed instead of a panic.
pub async fn try_world_for(toml: &str) -> Result<TestWorld, String> {
    let scenario = Scenario::parse("test/world", Path::new("world.toml"), toml).map_err(|e| e.to_string())?;
    let dir = tempfile::tempdir().map_err(|e| format!("a temp dir for the world: {e}"))?;
    let services = ServicesConfig { runtime: RuntimeChoice::Process, ..ServicesConfig::default() };
    let world = World::start(std::slice::from_ref(&scenario), &services, &provisioner(), dir.path())
        .await
        .map_err(|e| e.to_string())?;
    Ok(TestWorld { world, scenario, dir })
}

/// How the server answers a file request.
#[derive(Debug, Clone, Copy)]
pub enum Behaviour {
    /// Send the file.
    Serve,
    /// Announce the full length but close after `n` bytes of a `.tar.gz`.
    TruncateArchive(usize),
    /// Send `n` bytes of a `.tar.gz`, then go silent for a long time.
    StallArchive(usize),
    /// Send a `.tar.gz` in 64 KiB pieces with this pause between them.
    ThrottleArchive(Duration),
}

/// crane at `version`, as the matrix gets it (the harness's own definition of the tool), from
/// the cache or built from the module proxy.
pub async fn crane(version: &str) -> PathBuf {
    let go = ko_matrix::tool::by_name("crane").expect("crane is a built-in tool definition").go();
    provisioner().install(go, version).await.unwrap_or_else(|e| panic!("{e}")).path
}

/// The `python3` on PATH (its `sys.executable`), which must import `modules` (`"google.auth,
/// requests"`); `packages` names what to install. Panics otherwise: install-deps provides them.
pub fn python_importing(modules: &str, packages: &str) -> String {
    let probe = std::process::Command::new("python3")
        .args(["-c", &format!("import sys, {modules}; print(sys.executable)")])
        .stdin(std::process::Stdio::null())
        .output();
    let why = match probe {
        Ok(out) if out.status.success() => return String::from_utf8_lossy(&out.stdout).trim().to_string(),
        Ok(out) => String::from_utf8_lossy(&out.stderr).lines().last().unwrap_or("no error output").to_string(),
        Err(e) => format!("python3: {e}"),
    };
    panic!(
        "this cross-check needs python3 to import {modules} ({why}): run `scripts/install-deps` \
         (or `python3 -m pip install {packages}`); it fails rather than passing unchecked"
    )
}

/// The program `name` from PATH, installed by `scripts/install-deps` as `package`. Panics
/// otherwise.
pub fn program(name: &str, package: &str) -> PathBuf {
    which::which(name).unwrap_or_else(|e| {
        panic!("this test needs `{name}` ({e}): run `scripts/install-deps` (it installs {package}); it fails rather than passing unchecked")
    })
}

/// An HTTP/1.1 file server on 127.0.0.1, serving `root`.
pub struct FileServer {
    pub addr: SocketAddr,
    task: tokio::task::JoinHandle<()>,
}

impl FileServer {
    pub async fn start(root: &Path, behaviour: Behaviour) -> FileServer {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let root = Arc::new(root.to_path_buf());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let root = root.clone();
                tokio::spawn(async move {
                    let _ = serve_one(stream, &root, behaviour).await;
                });
            }
        });
        FileServer { addr, task }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for FileServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_one(mut stream: tokio::net::TcpStream, root: &Path, behaviour: Behaviour) -> std::io::Result<()> {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut buf).await?;
        if n == 0 {
            return Ok(());
        }
        request.extend_from_slice(&buf[..n]);
    }
    let head = String::from_utf8_lossy(&request);
    let mut words = head.split_whitespace();
    let method = words.next().unwrap_or_default().to_string();
    let path = words.next().unwrap_or("/").trim_start_matches('/').to_string();
    let file = root.join(&path);
    let body = if path.is_empty() {
        Some(b"release index".to_vec())
    } else {
        std::fs::read(&file).ok().filter(|_| file.is_file())
    };
    let Some(body) = body else {
        stream.write_all(b"HTTP/1.1 404 Not Found\r\ncontent-length: 9\r\nconnection: close\r\n\r\nnot found").await?;
        return Ok(());
    };
    let header = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n", body.len());
    stream.write_all(header.as_bytes()).await?;
    if method == "HEAD" {
        return Ok(());
    }
    let archive = path.ends_with(".tar.gz");
    match behaviour {
        Behaviour::TruncateArchive(n) if archive => stream.write_all(&body[..n.min(body.len())]).await?,
        Behaviour::StallArchive(n) if archive => {
            stream.write_all(&body[..n.min(body.len())]).await?;
            stream.flush().await?;
            tokio::time::sleep(Duration::from_secs(600)).await;
        }
        Behaviour::ThrottleArchive(pause) if archive => {
            for piece in body.chunks(64 * 1024) {
                stream.write_all(piece).await?;
                stream.flush().await?;
                tokio::time::sleep(pause).await;
            }
        }
        _ => stream.write_all(&body).await?,
    }
    stream.shutdown().await
}

/// Writes a goreleaser-style ko release for `version` (no `v`) under `root/v<version>/`:
/// a real tar.gz holding an executable `ko` that prints `reports` for `ko version`, plus
/// `checksums.txt`. Returns the archive's path.
pub fn write_release(root: &Path, version: &str, reports: &str) -> PathBuf {
    let script = format!(
        "#!/bin/sh\nif [ \"$1\" = version ]; then echo {reports}; exit 0; fi\necho \"fake ko: $*\" >&2\nexit 2\n"
    );
    write_release_of(root, version, &script)
}

/// What a fake ko release does with `ko build`.
pub enum FakeKo {
    /// Pushes a small image to `KO_DOCKER_REPO` (through the cell's proxy, trusting its CA, with
    /// no credentials: an anonymous registry) and prints its digest, as ko does: the cell passes.
    Pushes,
    /// Fails the way ko does when the registry refuses it: the cell fails.
    Fails,
    /// Fails the first time (marking this file), pushes after: the cell is flaky.
    FailsOnce(PathBuf),
    /// Marks this file and hangs: a cell to interrupt.
    Hangs(PathBuf),
}

/// A ko release (as [`write_release`]) whose `ko build` really pushes or fails ([`FakeKo`]).
pub fn write_fake_ko(root: &Path, version: &str, behaviour: FakeKo) -> PathBuf {
    let fail = "echo 'Error: failed to publish images: unexpected status code 401 Unauthorized (fake ko)' >&2; exit 1";
    let before_push = match behaviour {
        FakeKo::Pushes => String::new(),
        FakeKo::Fails => format!("{fail}\n"),
        FakeKo::FailsOnce(mark) => {
            let mark = mark.display();
            format!("if [ ! -e '{mark}' ]; then : > '{mark}'; {fail}; fi\n")
        }
        FakeKo::Hangs(mark) => format!(": > '{}'; sleep 600\n", mark.display()),
    };
    let script = format!(
        r#"#!/bin/sh
if [ "$1" = version ]; then echo {version}; exit 0; fi
{before_push}set -e
host="${{KO_DOCKER_REPO%%/*}}"; name="${{KO_DOCKER_REPO#*/}}"
api() {{ curl -sS --fail --proxy "$HTTPS_PROXY" --cacert "$SSL_CERT_FILE" "$@"; }}
push() {{ # file media-type: a blob, or with `manifest` the manifest
  digest="sha256:$(sha256sum "$1" | cut -d' ' -f1)"
  if [ "$2" = manifest ]; then
    api -X PUT -H "Content-Type: application/vnd.oci.image.manifest.v1+json" --data-binary @"$1" "https://$host/v2/$name/manifests/latest" >/dev/null
    return
  fi
  location=$(api -X POST -D - -o /dev/null "https://$host/v2/$name/blobs/uploads/" | tr -d '\r' | sed -n 's/^[Ll]ocation: *//p')
  case "$location" in http*) ;; *) location="https://$host$location" ;; esac
  case "$location" in *\?*) sep='&' ;; *) sep='?' ;; esac
  api -X PUT -H "Content-Type: application/octet-stream" --data-binary @"$1" "$location${{sep}}digest=$digest" >/dev/null
}}
cd "$TMPDIR"
printf '{{"architecture":"amd64","os":"linux","rootfs":{{"type":"layers","diff_ids":[]}},"config":{{}}}}' > config.json
push config.json
printf '{{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"%s","size":%s}},"layers":[]}}' "$digest" "$(wc -c < config.json)" > manifest.json
push manifest.json manifest
echo "$KO_DOCKER_REPO@$digest"
"#
    );
    write_release_of(root, version, &script)
}

fn write_release_of(root: &Path, version: &str, script: &str) -> PathBuf {
    let dir = root.join(format!("v{version}"));
    std::fs::create_dir_all(&dir).unwrap();
    let asset = ko_matrix::tool::shorthand().release().asset_name(version).unwrap();
    let archive_path = dir.join(&asset);
    let gz = flate2::write::GzEncoder::new(std::fs::File::create(&archive_path).unwrap(), flate2::Compression::fast());
    let mut tar = tar::Builder::new(gz);
    append(&mut tar, "ko", script.as_bytes(), 0o755);
    append(&mut tar, "LICENSE", b"Apache License 2.0\n", 0o644);
    // Incompressible padding so downloads are long enough to cut or stall in the middle.
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let padding: Vec<u8> = (0..2_000_000)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    append(&mut tar, "README.md", &padding, 0o644);
    tar.into_inner().unwrap().finish().unwrap().flush().unwrap();

    let digest = hex::encode(Sha256::digest(std::fs::read(&archive_path).unwrap()));
    let other = "0".repeat(64);
    let sums = format!("{other}  ko_{version}_Darwin_arm64.tar.gz\n{digest}  {asset}\n");
    std::fs::write(dir.join("checksums.txt"), sums).unwrap();
    archive_path
}

fn append<W: Write>(tar: &mut tar::Builder<W>, name: &str, data: &[u8], mode: u32) {
    let mut header = tar::Header::new_gnu();
    header.set_size(data.len() as u64);
    header.set_mode(mode);
    header.set_cksum();
    tar.append_data(&mut header, name, data).unwrap();
}

/// Every file below `dir`, relative, sorted: what a cache holds.
pub fn tree(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    fn walk(base: &Path, dir: &Path, out: &mut Vec<String>) {
        let Ok(entries) = std::fs::read_dir(dir) else { return };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.is_dir() {
                walk(base, &path, out);
            } else {
                out.push(path.strip_prefix(base).unwrap().display().to_string());
            }
        }
    }
    walk(dir, dir, &mut out);
    out.sort();
    out
}

/// The `ko-matrix` binary under test.
pub fn ko_matrix() -> std::process::Command {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_ko-matrix"));
    cmd.env_remove("KO_MATRIX_CACHE");
    cmd
}

/// Waits until `probe` holds, polling; panics with `what` after `timeout`.
pub fn wait_for(what: &str, timeout: Duration, mut probe: impl FnMut() -> bool) {
    let started = std::time::Instant::now();
    while !probe() {
        assert!(started.elapsed() < timeout, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Processes whose environment mentions `needle` (e.g. a test's private cache dir).
pub fn processes_with_env(needle: &str) -> Vec<u32> {
    let me = std::process::id();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else { continue };
        if pid == me {
            continue;
        }
        if let Ok(environ) = std::fs::read(entry.path().join("environ")) {
            if environ.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                found.push(pid);
            }
        }
    }
    found
}

/// Staging dirs (in-progress installs) below a cache root.
pub fn staging_dirs(cache: &Path) -> Vec<PathBuf> {
    let dir = cache.join("tools/ko");
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.file_name().unwrap().to_string_lossy().starts_with(".staging-"))
        .collect()
}

/// The process listening on `addr` (TCP, IPv4), found through /proc: how a test kills one
/// service of a running world without any hook in the harness.
pub fn pid_listening_on(addr: SocketAddr) -> Option<u32> {
    let std::net::IpAddr::V4(ip) = addr.ip() else { return None };
    let local = format!("{:08X}:{:04X}", u32::from_le_bytes(ip.octets()), addr.port());
    let table = std::fs::read_to_string("/proc/net/tcp").ok()?;
    let inode = table.lines().skip(1).find_map(|line| {
        let fields: Vec<&str> = line.split_whitespace().collect();
        // st 0A is LISTEN.
        (fields.get(1) == Some(&local.as_str()) && fields.get(3) == Some(&"0A")).then(|| fields[9].to_string())
    })?;
    let socket = format!("socket:[{inode}]");
    std::fs::read_dir("/proc").ok()?.flatten().find_map(|entry| {
        let pid: u32 = entry.file_name().to_string_lossy().parse().ok()?;
        let fds = std::fs::read_dir(entry.path().join("fd")).ok()?;
        fds.flatten()
            .any(|fd| std::fs::read_link(fd.path()).is_ok_and(|l| l.to_string_lossy() == socket))
            .then_some(pid)
    })
}

/// SIGKILLs the process listening on `addr` and waits until the port refuses connections.
pub fn kill_listener(addr: SocketAddr) {
    let pid = pid_listening_on(addr).unwrap_or_else(|| panic!("nothing listens on {addr}"));
    // SAFETY: plain syscall on a pid we just looked up.
    unsafe {
        libc::kill(pid as i32, libc::SIGKILL);
    }
    wait_for(&format!("{addr} to refuse connections"), Duration::from_secs(10), || {
        std::net::TcpStream::connect(addr).is_err()
    });
}

/// Headless Chromium (`chromium`, from [`program`]) on `page` with `extra` arguments, with its
/// profile in `profile`; panics when it fails.
pub fn chromium(chromium: &Path, profile: &Path, page: &str, extra: &[&str]) -> std::process::Output {
    let out = std::process::Command::new(chromium)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(extra)
        .arg(page)
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    out
}

/// The DOM of `page` after its scripts ran, from headless Chromium.
pub fn chromium_dom(chromium: &Path, profile: &Path, page: &str) -> String {
    String::from_utf8_lossy(
        &self::chromium(chromium, profile, page, &["--dump-dom", "--virtual-time-budget=3000"]).stdout,
    )
    .into_owned()
}
