//! Go tools from the Go module proxy: module path + version → verified, cached binary.
//!
//! ko is the main user; the registry, credential helpers and crane come the same way.
//! Builds mirror how releases are made (`CGO_ENABLED=0`, `-trimpath`, `-s -w`, the version
//! stamped with `-X`) and, by default, use the Go toolchain the module asks for, fetched by
//! Go itself through the module proxy (`GOTOOLCHAIN`): old ko releases do not build with a
//! current Go (their golang.org/x/tools predates Go 1.22).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::Deserialize;
use tokio::process::Command;
use tokio::sync::OnceCell;

use crate::cache::{self, Cache, Installed, Manifest};
use crate::events::{ProvisionEvent, ProvisionObserver};
use crate::process::{self, output_tail, RunError};

/// A Go program the harness can build from the module proxy.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GoTool {
    /// Binary name, also the cache directory.
    pub name: &'static str,
    pub module: &'static str,
    /// The main package, inside `module`.
    pub package: &'static str,
    /// `-X` target that holds the version string, as release builds set it.
    pub version_var: Option<&'static str>,
    /// Arguments that make the binary print its version; empty: no check possible.
    pub version_args: &'static [&'static str],
}

/// The name `go install` gives `package`'s binary: its last element, or the one before a
/// major-version suffix (`…/cmd/tool/v2`).
fn installed_name(package: &str) -> &str {
    let mut elements = package.rsplit('/');
    let last = elements.next().unwrap_or(package);
    let is_major = last.len() > 1 && last.starts_with('v') && last[1..].chars().all(|c| c.is_ascii_digit());
    match elements.next() {
        Some(before) if is_major => before,
        _ => last,
    }
}

/// Which Go toolchain builds a tool.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToolchainPolicy {
    /// What the module asks for: its go.mod `toolchain` line, else the newest patch release
    /// of its `go` line (the local Go when it already is that minor release).
    Auto,
    /// The `go` on PATH, whatever it is.
    Local,
    /// A named toolchain such as `go1.21.13`.
    Exact(String),
}

impl ToolchainPolicy {
    pub fn parse(text: &str) -> Option<ToolchainPolicy> {
        match text {
            "auto" => Some(ToolchainPolicy::Auto),
            "local" => Some(ToolchainPolicy::Local),
            exact if exact.starts_with("go") && GoVersion::parse(exact).is_some() => {
                Some(ToolchainPolicy::Exact(exact.to_string()))
            }
            _ => None,
        }
    }

    /// Part of the cache key, so builds by different policies do not mix.
    fn key_suffix(&self) -> String {
        match self {
            ToolchainPolicy::Auto => String::new(),
            ToolchainPolicy::Local => "-local".into(),
            ToolchainPolicy::Exact(name) => format!("-{name}"),
        }
    }
}

/// A Go release number, e.g. 1.21.13 (`go 1.21` reads as 1.21.0).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct GoVersion {
    pub major: u32,
    pub minor: u32,
    pub patch: u32,
}

impl GoVersion {
    /// Parses `1.21`, `1.21.3`, `go1.21.3`, `go1.22rc1` (a release candidate counts as .0).
    pub fn parse(text: &str) -> Option<GoVersion> {
        let text = text.trim().trim_start_matches("go");
        let mut parts = text.splitn(3, '.');
        let major = parts.next()?.parse().ok()?;
        let minor_text = parts.next()?;
        let minor_digits: String = minor_text.chars().take_while(char::is_ascii_digit).collect();
        let minor = minor_digits.parse().ok()?;
        let patch = match parts.next() {
            Some(p) => p.chars().take_while(char::is_ascii_digit).collect::<String>().parse().ok()?,
            None => 0,
        };
        Some(GoVersion { major, minor, patch })
    }

    fn same_minor(&self, other: &GoVersion) -> bool {
        (self.major, self.minor) == (other.major, other.minor)
    }
}

impl std::fmt::Display for GoVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.major, self.minor, self.patch)
    }
}

/// The oldest Go that can switch toolchains by itself (`GOTOOLCHAIN`).
const MIN_LOCAL_GO: GoVersion = GoVersion { major: 1, minor: 21, patch: 0 };

#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("`go` was not found on PATH; install Go {MIN_LOCAL_GO} or newer (https://go.dev/dl/, or `apt-get install golang`) to build {what}")]
    GoMissing { what: String },
    #[error("{what} needs Go {need} (the `go` line of its go.mod) but {go} is go{have}; install a newer Go or set go_toolchain = \"auto\"")]
    GoTooOld { what: String, need: GoVersion, have: GoVersion, go: PathBuf },
    #[error("`{command}` failed:\n{output}")]
    GoCommand { command: String, output: String },
    /// The proxy's final answer (unknown revision, 404/410, "not available"): the version
    /// does not exist there; `known` is what it lists instead.
    #[error("the Go module proxy does not know {module}@{query}: {message}{}", versions_hint(.query, .known))]
    UnknownVersion { module: String, query: String, message: String, known: Vec<String> },
    #[error(
        "asking the Go module proxy for {module}@{query} failed: {message}; check the network and GOPROXY, then retry"
    )]
    ProxyFailed { module: String, query: String, message: String },
    #[error("building {target} with {toolchain} failed; `{command}` said:\n{output}")]
    BuildFailed { target: String, toolchain: String, command: String, output: String },
    #[error("{path} reports version {reported:?} but {expected} was requested; it was not kept")]
    VersionMismatch { path: PathBuf, expected: String, reported: String },
    #[error("running {path} to check its version failed: {output}")]
    VersionCheckFailed { path: PathBuf, output: String },
    #[error(transparent)]
    Run(#[from] RunError),
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

/// Whether `go mod download`'s error is the proxy's final word that the version does not exist
/// (as opposed to not reaching it, where a retry may succeed).
fn is_final_answer(message: &str) -> bool {
    const UNREACHED: [&str; 8] = [
        "dial tcp",
        "no such host",
        "connection refused",
        "connection reset",
        "i/o timeout",
        "TLS handshake",
        "Could not resolve host",
        "unable to access",
    ];
    const FINAL: [&str; 5] = ["unknown revision", "404 Not Found", "410 Gone", "not available", "no matching versions"];
    !UNREACHED.iter().any(|m| message.contains(m)) && FINAL.iter().any(|m| message.contains(m))
}

/// The releases nearest `query` and the newest ones among `known` (what the proxy lists), and
/// where to see them all.
fn versions_hint(query: &str, known: &[String]) -> String {
    let mut releases: Vec<semver::Version> = known
        .iter()
        .filter_map(|v| semver::Version::parse(v.trim_start_matches('v')).ok())
        .filter(|v| v.pre.is_empty())
        .collect();
    releases.sort();
    if releases.is_empty() {
        return "; `ko-matrix versions` lists the releases".into();
    }
    let show = |v: &semver::Version| format!("v{v}");
    let newest: Vec<String> = releases.iter().rev().take(3).rev().map(show).collect();
    let mut hint = format!("; the proxy lists {} release(s), the newest {}", releases.len(), newest.join(", "));
    if let Ok(wanted) = semver::Version::parse(query.trim_start_matches('v')) {
        let below = releases.iter().rev().find(|v| **v < wanted).map(show);
        let above = releases.iter().find(|v| **v > wanted).map(show);
        let nearest: Vec<String> = below.into_iter().chain(above).collect();
        if !nearest.is_empty() {
            hint += &format!(" (nearest to {query}: {})", nearest.join(", "));
        }
    }
    hint + "; `ko-matrix versions` lists them all (exact versions it does not list may still exist)"
}

/// A module version as the proxy resolved it.
#[derive(Debug, Clone)]
pub struct ModuleVersion {
    pub module: String,
    pub version: String,
    /// The `go` line of its go.mod.
    pub go_directive: Option<GoVersion>,
    /// The `toolchain` line of its go.mod, e.g. `go1.22.5`.
    pub toolchain_directive: Option<String>,
    /// Modules the checksum database had no entry for (see [`run_go_checked`]).
    pub sumdb_gaps: Vec<String>,
    /// The module's go.mod, as the proxy serves it.
    pub go_mod: String,
}

/// The local `go` command.
#[derive(Debug, Clone)]
pub struct Go {
    pub path: PathBuf,
    pub version: GoVersion,
    goos: String,
    goarch: String,
}

const GO_QUERY_TIMEOUT: Duration = Duration::from_secs(300);

impl Go {
    /// Finds `go` on PATH and asks its version and platform.
    pub async fn find(what: &str) -> Result<Go, ProvisionError> {
        let path = which::which("go").map_err(|_| ProvisionError::GoMissing { what: what.to_string() })?;
        let out = run_go(&path, &["env", "GOVERSION", "GOOS", "GOARCH"], &[], None, Duration::from_secs(60)).await?;
        let mut lines = out.lines();
        let version_line = lines.next().unwrap_or_default();
        let version = GoVersion::parse(version_line).ok_or_else(|| ProvisionError::GoCommand {
            command: format!("{} env GOVERSION", path.display()),
            output: format!("unexpected version {version_line:?}"),
        })?;
        if version < MIN_LOCAL_GO {
            return Err(ProvisionError::GoTooOld {
                what: what.to_string(),
                need: MIN_LOCAL_GO,
                have: version,
                go: path,
            });
        }
        let goos = lines.next().unwrap_or("linux").to_string();
        let goarch = lines.next().unwrap_or("amd64").to_string();
        Ok(Go { path, version, goos, goarch })
    }

    /// Resolves `module@query` (a tag, `latest`, a branch, a commit, a pseudo-version).
    pub async fn resolve(&self, module: &str, query: &str) -> Result<ModuleVersion, ProvisionError> {
        #[derive(Deserialize)]
        #[serde(rename_all = "PascalCase")]
        struct Download {
            version: Option<String>,
            go_mod: Option<PathBuf>,
            error: Option<String>,
        }
        let target = format!("{module}@{query}");
        let mut sumdb_gaps = Vec::new();
        let args = ["mod", "download", "-json", &target];
        let out = run_go_checked(&self.path, &args, &[], None, GO_QUERY_TIMEOUT, &mut sumdb_gaps).await?;
        let parsed: Option<Download> = serde_json::from_slice(&out.stdout).ok();
        match parsed {
            Some(Download { version: Some(version), go_mod: Some(go_mod), error: None }) => {
                let text = std::fs::read_to_string(&go_mod).unwrap_or_default();
                Ok(ModuleVersion {
                    module: module.to_string(),
                    version,
                    go_directive: directive(&text, "go").and_then(GoVersion::parse),
                    toolchain_directive: directive(&text, "toolchain").map(str::to_string),
                    sumdb_gaps,
                    go_mod: text,
                })
            }
            Some(Download { error: Some(message), .. }) if is_final_answer(&message) => {
                // What the proxy has instead, for the message; a failure to list leaves it out.
                let known = self.list_versions(module).await.unwrap_or_default();
                let message = message.trim_end().trim_end_matches('.').to_string();
                Err(ProvisionError::UnknownVersion { module: module.into(), query: query.into(), message, known })
            }
            Some(Download { error: Some(message), .. }) => {
                Err(ProvisionError::ProxyFailed { module: module.into(), query: query.into(), message })
            }
            _ => Err(ProvisionError::GoCommand {
                command: format!("go mod download -json {target}"),
                output: output_tail(&out, 20),
            }),
        }
    }

    /// Every version of `module` the proxy lists (it may list only some).
    pub async fn list_versions(&self, module: &str) -> Result<Vec<String>, ProvisionError> {
        let out = run_go(&self.path, &["list", "-m", "-versions", module], &[], None, GO_QUERY_TIMEOUT).await?;
        Ok(out.split_whitespace().skip(1).map(str::to_string).collect())
    }

    /// The toolchain to build `module` with, as a `GOTOOLCHAIN` value.
    async fn pick_toolchain(
        &self,
        module: &ModuleVersion,
        policy: &ToolchainPolicy,
        toolchains: &OnceCell<Vec<GoVersion>>,
    ) -> Result<String, ProvisionError> {
        let what = format!("{}@{}", module.module, module.version);
        let need = module.go_directive.unwrap_or(MIN_LOCAL_GO);
        self.toolchain_for(what, need, module.toolchain_directive.as_deref(), policy, toolchains).await
    }

    /// The toolchain for a build that needs Go `need` (and names `toolchain_directive`, if any).
    async fn toolchain_for(
        &self,
        what: String,
        need: GoVersion,
        toolchain_directive: Option<&str>,
        policy: &ToolchainPolicy,
        toolchains: &OnceCell<Vec<GoVersion>>,
    ) -> Result<String, ProvisionError> {
        match policy {
            ToolchainPolicy::Local if self.version < need => {
                Err(ProvisionError::GoTooOld { what, need, have: self.version, go: self.path.clone() })
            }
            ToolchainPolicy::Local => Ok("local".into()),
            ToolchainPolicy::Exact(name) => Ok(name.clone()),
            ToolchainPolicy::Auto => {
                if let Some(toolchain) = toolchain_directive.filter(|t| GoVersion::parse(t).is_some_and(|t| t >= need))
                {
                    return Ok(toolchain.to_string());
                }
                if self.version.same_minor(&need) && self.version >= need {
                    return Ok("local".into());
                }
                let available = toolchains.get_or_try_init(|| self.available_toolchains()).await?;
                match oldest_minor_newest_patch(available, need) {
                    Some(pick) => Ok(format!("go{pick}")),
                    None if self.version >= need => Ok("local".into()),
                    None => Err(ProvisionError::GoTooOld { what, need, have: self.version, go: self.path.clone() }),
                }
            }
        }
    }

    /// Go releases the proxy offers as toolchain modules for this platform.
    async fn available_toolchains(&self) -> Result<Vec<GoVersion>, ProvisionError> {
        let suffix = format!(".{}-{}", self.goos, self.goarch);
        let versions = self.list_versions("golang.org/toolchain").await?;
        Ok(versions
            .iter()
            .filter_map(|v| v.strip_prefix("v0.0.1-go")?.strip_suffix(&suffix))
            .filter(|v| !v.contains("rc") && !v.contains("beta"))
            .filter_map(GoVersion::parse)
            .collect())
    }

    /// What `go install` of `tool` at `version` would download, and nothing built:
    /// `install -n` resolves exactly as the build will, then only prints the build's
    /// commands. Its failure is not reported here; the build meets it again and says why.
    async fn download(
        &self,
        tool: &GoTool,
        version: &str,
        toolchain: &str,
        timeout: Duration,
        sumdb_gaps: &mut Vec<String>,
    ) {
        let target = format!("{}@{version}", tool.package);
        let env = [("GOTOOLCHAIN", toolchain.as_ref())];
        let _ =
            run_go_checked(&self.path, &["install", "-n", "-trimpath", &target], &env, None, timeout, sumdb_gaps).await;
    }

    /// `go install`s `tool` at `version` into `bin_dir`, release-style; returns the binary.
    async fn build(
        &self,
        tool: &GoTool,
        version: &str,
        toolchain: &str,
        bin_dir: &Path,
        timeout: Duration,
        sumdb_gaps: &mut Vec<String>,
    ) -> Result<PathBuf, ProvisionError> {
        let ldflags = release_ldflags(tool, version);
        let target = format!("{}@{version}", tool.package);
        let args = ["install", "-trimpath", "-ldflags", &ldflags, &target];
        let env = [("GOBIN", bin_dir.as_os_str()), ("GOTOOLCHAIN", toolchain.as_ref())];
        let out = run_go_checked(&self.path, &args, &env, Some(bin_dir), timeout, sumdb_gaps).await?;
        if !out.status.success() {
            return Err(ProvisionError::BuildFailed {
                target: target.clone(),
                toolchain: toolchain.to_string(),
                command: format!("go {}", shell_words(&args)),
                output: output_tail(&out, 40),
            });
        }
        // `go install` names the binary after the package; a tool may be named otherwise.
        let (installed, binary) = (bin_dir.join(installed_name(tool.package)), bin_dir.join(tool.name));
        if installed != binary {
            std::fs::rename(&installed, &binary).map_err(|source| cache::CacheError::Io {
                action: "renaming",
                path: installed,
                source,
            })?;
        }
        Ok(binary)
    }

    /// The version string of a `GOTOOLCHAIN` value, for the manifest.
    fn describe_toolchain(&self, toolchain: &str) -> String {
        if toolchain == "local" {
            format!("go{}", self.version)
        } else {
            toolchain.to_string()
        }
    }
}

/// How many Go builds run at once in this process: `KO_MATRIX_BUILD_JOBS`, else one per four
/// cores (at least one), fewer where memory is short (a build of ko peaks near 1.5 GiB).
/// A Go build already keeps every core busy, and two builds of overlapping module sets (two
/// ko releases) compile their shared packages twice: Go's build cache helps only the build
/// that comes after. Measured on 2 cores, ko v0.15.1 + v0.15.2 + crane into empty caches took
/// 692 s side by side against 608 s one after another.
pub fn build_jobs() -> usize {
    if let Some(jobs) = std::env::var(BUILD_JOBS_ENV).ok().and_then(|v| v.parse::<usize>().ok()) {
        return jobs.max(1);
    }
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
    let available_mib = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find_map(|l| l.strip_prefix("MemAvailable:")?.trim().strip_suffix("kB")?.trim().parse::<u64>().ok())
        })
        .map(|kib| kib / 1024);
    let by_memory = available_mib.map_or(usize::MAX, |mib| (mib / 1536) as usize);
    (cores / 4).min(by_memory).max(1)
}

/// Sets [`build_jobs`].
pub const BUILD_JOBS_ENV: &str = "KO_MATRIX_BUILD_JOBS";

/// Build turns, [`build_jobs`] at a time, first come first served, except that builds of the
/// world's programs (a registry, a credential helper) go before tool versions waiting with
/// them: no cell can start before the world's programs are there, while each tool version's
/// cells start as soon as that version is.
struct Turns {
    queue: std::sync::Mutex<TurnQueue>,
    freed: tokio::sync::Notify,
    /// How many builds hold a turn (are compiling) now.
    compiling: tokio::sync::watch::Sender<usize>,
}

struct TurnQueue {
    free: usize,
    next: u64,
    /// (`false` for the world's programs, so they sort first; arrival).
    waiting: std::collections::BTreeSet<(bool, u64)>,
}

/// A build's turn; it ends when this drops.
struct Turn(&'static Turns);

impl Drop for Turn {
    fn drop(&mut self) {
        self.0.queue.lock().expect("turns lock").free += 1;
        self.0.compiling.send_modify(|n| *n -= 1);
        self.0.freed.notify_waiters();
    }
}

/// A place in the queue, given up if the build stops waiting (its run was stopped).
struct Waiting(&'static Turns, Option<(bool, u64)>);

impl Drop for Waiting {
    fn drop(&mut self) {
        if let Some(place) = self.1.take() {
            self.0.queue.lock().expect("turns lock").waiting.remove(&place);
            self.0.freed.notify_waiters();
        }
    }
}

impl Turns {
    fn new(jobs: usize) -> Turns {
        Turns {
            queue: std::sync::Mutex::new(TurnQueue { free: jobs, next: 0, waiting: Default::default() }),
            freed: tokio::sync::Notify::new(),
            compiling: tokio::sync::watch::Sender::new(0),
        }
    }

    /// A turn taken (its place in the queue already given up).
    fn turn(&'static self, queue: &mut TurnQueue) -> Turn {
        queue.free -= 1;
        self.compiling.send_modify(|n| *n += 1);
        Turn(self)
    }

    /// Waits for a turn; `waits` is called first when another build has it.
    async fn take(&'static self, world_program: bool, waits: impl FnOnce()) -> Turn {
        let place = {
            let mut queue = self.queue.lock().expect("turns lock");
            if queue.free > 0 && queue.waiting.is_empty() {
                return self.turn(&mut queue);
            }
            queue.next += 1;
            let place = (!world_program, queue.next);
            queue.waiting.insert(place);
            place
        };
        waits();
        let mut waiting = Waiting(self, Some(place));
        loop {
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            {
                let mut queue = self.queue.lock().expect("turns lock");
                if queue.free > 0 && queue.waiting.first() == Some(&place) {
                    queue.waiting.remove(&place);
                    waiting.1 = None;
                    return self.turn(&mut queue);
                }
            }
            freed.await;
        }
    }
}

/// This process's build turns.
fn turns() -> &'static Turns {
    static TURNS: std::sync::OnceLock<Turns> = std::sync::OnceLock::new();
    TURNS.get_or_init(|| Turns::new(build_jobs()))
}

/// Waits for a turn to build (see [`Turns`]); the turn ends when the guard drops.
async fn build_turn(world_program: bool, waits: impl FnOnce()) -> Turn {
    turns().take(world_program, waits).await
}

/// How many of this process's builds are compiling (hold a turn), now and as it changes: a
/// run gives them room (see `run::Scheduling::compiling`).
pub fn builds_compiling() -> tokio::sync::watch::Receiver<usize> {
    turns().compiling.subscribe()
}

/// The newest patch release of the oldest Go minor release at or above `need`: what a
/// release of that time was built with. (Toolchain modules exist from Go 1.21 on, so a
/// `go 1.20` module gets the newest Go 1.21.)
fn oldest_minor_newest_patch(available: &[GoVersion], need: GoVersion) -> Option<GoVersion> {
    let oldest_minor = available.iter().filter(|v| **v >= need).map(|v| (v.major, v.minor)).min()?;
    available.iter().filter(|v| (v.major, v.minor) == oldest_minor && **v >= need).max().copied()
}

fn directive<'a>(go_mod: &'a str, name: &str) -> Option<&'a str> {
    go_mod.lines().find_map(|line| {
        let rest = line.trim().strip_prefix(name)?;
        rest.starts_with(char::is_whitespace).then(|| rest.trim())
    })
}

fn shell_words(args: &[&str]) -> String {
    args.iter().map(|a| if a.contains(' ') { format!("{a:?}") } else { a.to_string() }).collect::<Vec<_>>().join(" ")
}

/// Runs `go` with a build environment that does not depend on the caller's settings.
async fn run_go_raw(
    go: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<std::process::Output, ProvisionError> {
    let mut cmd = Command::new(go);
    cmd.args(args)
        .env("CGO_ENABLED", "0")
        // An empty GOFLAGS counts as unset, so the machine's `go env -w` file would still
        // apply, and a flag newer than an old toolchain (`-buildvcs`, go1.18) stops it: a
        // flag every build passes anyway replaces the file's.
        .env("GOFLAGS", "-trimpath")
        .env("GOWORK", "off")
        .env("GOTOOLCHAIN", "local")
        .env_remove("GOOS")
        .env_remove("GOARCH");
    for (key, value) in env {
        cmd.env(key, value);
    }
    // Outside any module, so a go.mod around the caller cannot interfere.
    cmd.current_dir(cwd.map(Path::to_path_buf).unwrap_or_else(std::env::temp_dir));
    Ok(process::output(cmd, timeout).await?)
}

/// Runs `go` like [`run_go_raw`], but when the checksum database has *no entry* for a module
/// (a lookup answered 404/410, as a partial mirror does) retries with that module in
/// `GONOSUMDB`, recording it in `gaps`. A checksum *mismatch* is never bypassed.
async fn run_go_checked(
    go: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    cwd: Option<&Path>,
    timeout: Duration,
    gaps: &mut Vec<String>,
) -> Result<std::process::Output, ProvisionError> {
    loop {
        let nosumdb = gaps.iter().map(|g| g.split('@').next().unwrap_or(g)).collect::<Vec<_>>().join(",");
        let mut env = env.to_vec();
        env.push(("GONOSUMDB", nosumdb.as_ref()));
        let out = run_go_raw(go, args, &env, cwd, timeout).await?;
        let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
        match sumdb_gap(&text) {
            Some(gap) if !gaps.contains(&gap) && gaps.len() < 20 => gaps.push(gap),
            _ => return Ok(out),
        }
    }
}

/// `module@version` from Go's "reading …/sumdb/<db>/lookup/<module>@<version>: 404 Not Found".
fn sumdb_gap(output: &str) -> Option<String> {
    if output.contains("SECURITY ERROR") || output.contains("checksum mismatch") {
        return None;
    }
    output.match_indices("/lookup/").find_map(|(at, marker)| {
        let rest = &output[at + marker.len()..];
        let (target, after) = rest.split_once(": ")?;
        let missing = after.starts_with("404 Not Found") || after.starts_with("410 Gone");
        (missing && target.contains('@') && !target.contains(char::is_whitespace)).then(|| target.to_string())
    })
}

async fn run_go(
    go: &Path,
    args: &[&str],
    env: &[(&str, &std::ffi::OsStr)],
    cwd: Option<&Path>,
    timeout: Duration,
) -> Result<String, ProvisionError> {
    let out = run_go_raw(go, args, env, cwd, timeout).await?;
    if !out.status.success() {
        return Err(ProvisionError::GoCommand {
            command: format!("go {}", shell_words(args)),
            output: output_tail(&out, 20),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// True when `output` names `version` as one of its words (with or without a leading `v`).
pub(crate) fn reports_version(output: &str, version: &str) -> bool {
    let want = version.trim_start_matches('v');
    // Build metadata (`1.2.0+unreleased`) does not change the version.
    output.split_whitespace().any(|word| word.trim_start_matches('v').split('+').next() == Some(want))
}

/// Runs `<binary> <version_args>` and checks it names `version`; the first line it printed
/// is returned for error messages.
pub(crate) async fn verify_version(tool: &GoTool, binary: &Path, version: &str) -> Result<(), ProvisionError> {
    if tool.version_args.is_empty() {
        return Ok(());
    }
    let mut cmd = Command::new(binary);
    cmd.args(tool.version_args).env_clear().env("HOME", std::env::temp_dir());
    let out = process::output(cmd, Duration::from_secs(60))
        .await
        .map_err(|e| ProvisionError::VersionCheckFailed { path: binary.to_path_buf(), output: e.to_string() })?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(ProvisionError::VersionCheckFailed { path: binary.to_path_buf(), output: output_tail(&out, 10) });
    }
    if !reports_version(&stdout, version) {
        return Err(ProvisionError::VersionMismatch {
            path: binary.to_path_buf(),
            expected: version.to_string(),
            reported: stdout.trim().to_string(),
        });
    }
    Ok(())
}

/// The release-style `-ldflags` for `tool` at `version`: stripped, version stamped.
fn release_ldflags(tool: &GoTool, version: &str) -> String {
    match tool.version_var {
        Some(var) => format!("-s -w -X {var}={}", version.trim_start_matches('v')),
        None => "-s -w".to_string(),
    }
}

/// Checks that `binary` reports `version` and describes it for the cache.
pub(crate) async fn verified_manifest(
    tool: &GoTool,
    binary: &Path,
    version: &str,
    route: &str,
    go_version: Option<String>,
    sumdb_gaps: Vec<String>,
    origin: String,
) -> Result<Manifest, ProvisionError> {
    verify_version(tool, binary, version).await?;
    let sha256 = cache::sha256_file(binary).map_err(|source| cache::CacheError::Io {
        action: "hashing",
        path: binary.to_path_buf(),
        source,
    })?;
    Ok(Manifest {
        tool: tool.name.into(),
        version: version.into(),
        route: route.into(),
        sha256,
        go_version,
        sumdb_gaps,
        origin,
        installed_at: cache::now_rfc3339(),
        binary: binary.file_name().map_or_else(|| tool.name.to_string(), |n| n.to_string_lossy().into_owned()),
    })
}

/// Is `query` already an exact module version (so the cache can answer without the proxy)?
pub(crate) fn is_canonical(query: &str) -> bool {
    query.starts_with('v') && semver::Version::parse(&query[1..]).is_ok()
}

/// Builds and caches Go tools.
pub struct GoProvisioner {
    cache: Cache,
    policy: ToolchainPolicy,
    build_timeout: Duration,
    observer: Arc<dyn ProvisionObserver>,
    go: OnceCell<Go>,
    toolchains: OnceCell<Vec<GoVersion>>,
    /// It builds the world's programs, whose builds take their turns first (see [`Turns`]).
    world_programs: bool,
}

/// How long a cache lock may be held by another process before we give up: a cold build.
pub(crate) const LOCK_TIMEOUT: Duration = Duration::from_secs(30 * 60);

impl GoProvisioner {
    pub fn new(
        cache: Cache,
        policy: ToolchainPolicy,
        build_timeout: Duration,
        observer: Arc<dyn ProvisionObserver>,
    ) -> GoProvisioner {
        GoProvisioner {
            cache,
            policy,
            build_timeout,
            observer,
            go: OnceCell::new(),
            toolchains: OnceCell::new(),
            world_programs: false,
        }
    }

    /// This provisioner, for the world's programs: its builds go first when builds wait.
    pub(crate) fn for_world_programs(self) -> GoProvisioner {
        GoProvisioner { world_programs: true, ..self }
    }

    pub(crate) fn cache(&self) -> &Cache {
        &self.cache
    }

    pub(crate) fn policy(&self) -> &ToolchainPolicy {
        &self.policy
    }

    pub(crate) fn build_timeout(&self) -> Duration {
        self.build_timeout
    }

    pub(crate) fn observer(&self) -> Arc<dyn ProvisionObserver> {
        self.observer.clone()
    }

    pub async fn go(&self, what: &str) -> Result<&Go, ProvisionError> {
        self.go.get_or_try_init(|| Go::find(what)).await
    }

    fn key(&self, version: &str) -> String {
        format!("{version}-go{}", self.policy.key_suffix())
    }

    /// The cached build of `tool` at exactly `version`, if there is one.
    pub fn cached(&self, tool: &GoTool, version: &str) -> Result<Option<Installed>, ProvisionError> {
        Ok(self.cache.entry(tool.name, &self.key(version)).lookup()?)
    }

    /// Resolves `query` through the proxy (unless it is already exact).
    pub async fn resolve(&self, tool: &GoTool, query: &str) -> Result<ModuleVersion, ProvisionError> {
        let go = self.go(&format!("{}@{query}", tool.module)).await?;
        go.resolve(tool.module, query).await
    }

    /// `tool` at `query`: from the cache, or built and verified now.
    pub async fn install(&self, tool: &GoTool, query: &str) -> Result<Installed, ProvisionError> {
        if is_canonical(query) {
            if let Some(hit) = self.cached(tool, query)? {
                self.event_cache_hit(tool, &hit);
                return Ok(hit);
            }
        }
        let module = self.resolve(tool, query).await?;
        if module.version != query {
            self.observer.on_event(ProvisionEvent::Resolved {
                tool: tool.name.into(),
                query: query.into(),
                version: module.version.clone(),
            });
        }
        let entry = self.cache.entry(tool.name, &self.key(&module.version));
        let lock = entry.lock(LOCK_TIMEOUT).await?;
        if let Some(hit) = entry.lookup()? {
            self.event_cache_hit(tool, &hit);
            return Ok(hit);
        }
        // Downloading needs no build turn: one tool's modules come while another compiles.
        let started = Instant::now();
        let downloaded = self.download(tool, &module).await;
        let downloading = started.elapsed();
        let turn = build_turn(self.world_programs, || {
            self.observer
                .on_event(ProvisionEvent::AwaitingTurn { tool: tool.name.into(), version: module.version.clone() })
        })
        .await;
        let started = Instant::now();
        let result = async {
            let (toolchain, sumdb_gaps) = downloaded?;
            self.build_into(tool, &module, toolchain, sumdb_gaps, &entry, &lock).await
        }
        .await;
        drop(turn);
        match &result {
            Ok(installed) => self.observer.on_event(ProvisionEvent::Installed {
                tool: tool.name.into(),
                version: installed.manifest.version.clone(),
                route: "go".into(),
                elapsed: downloading + started.elapsed(),
            }),
            Err(_) => self
                .observer
                .on_event(ProvisionEvent::Failed { tool: tool.name.into(), version: module.version.clone() }),
        }
        result
    }

    /// Picks the toolchain for `module` and fills Go's module cache with everything its
    /// build needs (the toolchain included), returning the toolchain and the checksum
    /// database's gaps met. A failed download is left for the build to report.
    async fn download(&self, tool: &GoTool, module: &ModuleVersion) -> Result<(String, Vec<String>), ProvisionError> {
        let go = self.go(tool.name).await?;
        let toolchain = go.pick_toolchain(module, &self.policy, &self.toolchains).await?;
        self.observer.on_event(ProvisionEvent::DownloadingModules {
            tool: tool.name.into(),
            version: module.version.clone(),
            toolchain: go.describe_toolchain(&toolchain),
        });
        let mut sumdb_gaps = module.sumdb_gaps.clone();
        go.download(tool, &module.version, &toolchain, self.build_timeout, &mut sumdb_gaps).await;
        Ok((toolchain, sumdb_gaps))
    }

    async fn build_into(
        &self,
        tool: &GoTool,
        module: &ModuleVersion,
        toolchain: String,
        mut sumdb_gaps: Vec<String>,
        entry: &cache::Entry,
        lock: &cache::EntryLock,
    ) -> Result<Installed, ProvisionError> {
        let go = self.go(tool.name).await?;
        let go_version = go.describe_toolchain(&toolchain);
        self.observer.on_event(ProvisionEvent::Building {
            tool: tool.name.into(),
            version: module.version.clone(),
            toolchain: go_version.clone(),
        });
        let staging = entry.stage(lock)?;
        let binary =
            go.build(tool, &module.version, &toolchain, staging.path(), self.build_timeout, &mut sumdb_gaps).await?;
        if !sumdb_gaps.is_empty() {
            self.observer.on_event(ProvisionEvent::Note {
                tool: tool.name.into(),
                version: module.version.clone(),
                message: format!(
                    "the Go checksum database has no entry for {}; built without its verification of those",
                    sumdb_gaps.join(", ")
                ),
            });
        }
        self.observer.on_event(ProvisionEvent::Verifying { tool: tool.name.into(), version: module.version.clone() });
        let origin = format!("{}@{}", tool.package, module.version);
        let manifest =
            verified_manifest(tool, &binary, &module.version, "go", Some(go_version), sumdb_gaps, origin).await?;
        Ok(entry.commit(staging, manifest, lock)?)
    }

    /// `tool` with its module at `version` plus `extra` requirements (`module@version`),
    /// built in a wrapper module so minimal version selection resolves them together.
    /// Returns the binary and the resolved build list (module and version of every package
    /// compiled in); builds are cached
    /// by the exact build list, so a rerun is instant.
    pub(crate) async fn install_with_requirements(
        &self,
        tool: &GoTool,
        version: &str,
        extra: &[String],
    ) -> Result<(Installed, Vec<String>), ProvisionError> {
        let go = self.go(tool.name).await?;
        let module = go.resolve(tool.module, version).await?;
        let toolchain = go.pick_toolchain(&module, &self.policy, &self.toolchains).await?;
        let wrapper = tempfile::Builder::new()
            .prefix("ko-matrix-wrapper-")
            .tempdir()
            .map_err(|source| cache::CacheError::Io { action: "creating", path: std::env::temp_dir(), source })?;
        let go_mod = format!(
            "module ko-matrix.local/wrapper\n\ngo {}\n",
            module.go_directive.map_or("1.21".to_string(), |v| format!("{}.{}", v.major, v.minor))
        );
        std::fs::write(wrapper.path().join("go.mod"), go_mod).map_err(|source| cache::CacheError::Io {
            action: "writing",
            path: wrapper.path().join("go.mod"),
            source,
        })?;
        // The upgrades may need a newer Go than the tool at `version` does (a module whose go
        // line is newer). A Go that knows toolchains (1.21+) raises the wrapper's go line to
        // what they need as it resolves them (switching itself if it is older, under `auto`),
        // and the build takes the toolchain for that line, as `go build` in the tool's own
        // repository would after the same `go get`.
        let get_toolchain = match self.policy {
            ToolchainPolicy::Auto if go.version >= MIN_LOCAL_GO => "auto".to_string(),
            _ => toolchain.clone(),
        };
        let get_env =
            [("GOTOOLCHAIN", std::ffi::OsStr::new(&get_toolchain)), ("GOFLAGS", std::ffi::OsStr::new("-mod=mod"))];
        let mut gaps = module.sumdb_gaps.clone();
        let target = format!("{}@{}", tool.module, module.version);
        let mut get: Vec<&str> = vec!["get", &target];
        get.extend(extra.iter().map(String::as_str));
        let out = run_go_checked(&go.path, &get, &get_env, Some(wrapper.path()), GO_QUERY_TIMEOUT, &mut gaps).await?;
        if !out.status.success() {
            return Err(ProvisionError::BuildFailed {
                target: target.clone(),
                toolchain: get_toolchain,
                command: format!("go {}", shell_words(&get)),
                output: output_tail(&out, 30),
            });
        }
        let raised = std::fs::read_to_string(wrapper.path().join("go.mod"))
            .ok()
            .and_then(|text| directive(&text, "go").and_then(GoVersion::parse))
            .filter(|line| module.go_directive.is_none_or(|own| *line > own));
        let toolchain = match (raised, &self.policy) {
            (Some(need), ToolchainPolicy::Auto | ToolchainPolicy::Local) => {
                let what = format!("{target} + {} upgrade(s)", extra.len());
                go.toolchain_for(what, need, None, &self.policy, &self.toolchains).await?
            }
            _ => toolchain,
        };
        let env = [("GOTOOLCHAIN", std::ffi::OsStr::new(&toolchain)), ("GOFLAGS", std::ffi::OsStr::new("-mod=mod"))];
        // The modules whose packages the binary is built from (`go list -m all` would also
        // want metadata for every module in the graph, which a partial proxy may refuse).
        let list_args = ["list", "-deps", "-f", "{{with .Module}}{{.Path}} {{.Version}}{{end}}", tool.package];
        let listed =
            run_go_checked(&go.path, &list_args, &env, Some(wrapper.path()), GO_QUERY_TIMEOUT, &mut gaps).await?;
        if !listed.status.success() {
            return Err(ProvisionError::BuildFailed {
                target: target.clone(),
                toolchain,
                command: format!("go {}", shell_words(&list_args)),
                output: output_tail(&listed, 30),
            });
        }
        let mut build_list: Vec<String> =
            String::from_utf8_lossy(&listed.stdout).lines().filter(|l| l.contains(' ')).map(str::to_string).collect();
        build_list.sort();
        build_list.dedup();
        let digest = hex::encode(<sha2::Sha256 as sha2::Digest>::digest(build_list.join("\n").as_bytes()));
        let entry = self.cache.entry(tool.name, &format!("{}-deps-{}", module.version, &digest[..16]));
        let lock = entry.lock(LOCK_TIMEOUT).await?;
        if let Some(hit) = entry.lookup()? {
            return Ok((hit, build_list));
        }
        let staging = entry.stage(&lock)?;
        let ldflags = release_ldflags(tool, &module.version);
        let output = staging.path().join(tool.name);
        let output_text = output.display().to_string();
        let build = ["build", "-trimpath", "-ldflags", &ldflags, "-o", &output_text, tool.package];
        self.observer.on_event(ProvisionEvent::Building {
            tool: tool.name.into(),
            version: format!("{} + {} upgrade(s)", module.version, extra.len()),
            toolchain: go.describe_toolchain(&toolchain),
        });
        let turn = build_turn(self.world_programs, || {}).await;
        let out = run_go_checked(&go.path, &build, &env, Some(wrapper.path()), self.build_timeout, &mut gaps).await?;
        drop(turn);
        if !out.status.success() {
            return Err(ProvisionError::BuildFailed {
                target,
                toolchain,
                command: format!("go {}", shell_words(&build)),
                output: output_tail(&out, 30),
            });
        }
        let origin = format!("{target} + [{}]", extra.join(", "));
        let manifest = verified_manifest(
            tool,
            &output,
            &module.version,
            "go-deps",
            Some(go.describe_toolchain(&toolchain)),
            gaps,
            origin,
        )
        .await?;
        Ok((entry.commit(staging, manifest, &lock)?, build_list))
    }

    fn event_cache_hit(&self, tool: &GoTool, hit: &Installed) {
        self.observer.on_event(ProvisionEvent::CacheHit {
            tool: tool.name.into(),
            version: hit.manifest.version.clone(),
            route: hit.manifest.route.clone(),
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn builds_take_turns_the_world_programs_first_then_in_order_of_arrival() {
        let turns: &'static Turns = Box::leak(Box::new(Turns::new(1)));
        let held = turns.take(false, || panic!("the first build does not wait")).await;
        let order = Arc::new(std::sync::Mutex::new(Vec::new()));
        let mut builds = Vec::new();
        for (name, world_program) in [("ko", false), ("crane", false), ("registry", true)] {
            let (queued, is_queued) = tokio::sync::oneshot::channel();
            let order = order.clone();
            builds.push(tokio::spawn(async move {
                let turn = turns.take(world_program, move || queued.send(()).unwrap()).await;
                order.lock().unwrap().push(name);
                drop(turn);
            }));
            is_queued.await.unwrap();
        }
        // A build that stops waiting (its run was stopped) gives up its place.
        let (queued, is_queued) = tokio::sync::oneshot::channel();
        let stopped = tokio::spawn(turns.take(true, move || queued.send(()).unwrap()));
        is_queued.await.unwrap();
        stopped.abort();
        let _ = stopped.await;
        drop(held);
        for build in builds {
            tokio::time::timeout(Duration::from_secs(10), build).await.expect("every build gets its turn").unwrap();
        }
        assert_eq!(*order.lock().unwrap(), ["registry", "ko", "crane"]);
        assert_eq!(turns.queue.lock().unwrap().free, 1, "every turn came back");
        assert_eq!(*turns.compiling.borrow(), 0);
        let turn = turns.take(false, || {}).await;
        assert_eq!(*turns.compiling.borrow(), 1, "a build holding its turn is compiling");
        drop(turn);
        assert_eq!(*turns.compiling.borrow(), 0);
    }

    #[test]
    fn go_install_names_binaries_after_the_package() {
        assert_eq!(installed_name("github.com/google/go-containerregistry/cmd/crane"), "crane");
        assert_eq!(installed_name("github.com/google/ko"), "ko");
        assert_eq!(installed_name("example.com/tool/v2"), "tool");
        assert_eq!(installed_name("oras.land/oras/cmd/oras"), "oras");
    }

    #[test]
    fn the_proxys_final_answers_are_told_from_not_reaching_it() {
        for answer in [
            "github.com/google/ko@v9.9.9: reading https://proxy.golang.org/github.com/google/ko/@v/v9.9.9.info: 403 Forbidden\n\tserver response: This module version is not available.",
            "github.com/google/ko@v9.9.9: reading https://proxy.golang.org/github.com/google/ko/@v/v9.9.9.info: 410 Gone\n\tserver response: not found: github.com/google/ko@v9.9.9: invalid version: unknown revision v9.9.9",
            "github.com/google/ko@nope: invalid version: unknown revision nope",
        ] {
            assert!(is_final_answer(answer), "{answer}");
        }
        for failure in [
            "github.com/google/ko@v9.9.9: Get \"http://127.0.0.1:1/github.com/google/ko/@v/v9.9.9.info\": dial tcp 127.0.0.1:1: connect: connection refused",
            "github.com/google/ko@v9.9.9: invalid version: git ls-remote -q origin: exit status 128:\n\tfatal: unable to access 'https://github.com/google/ko/': Could not resolve host: github.com",
            "github.com/google/ko@v9.9.9: reading https://proxy.golang.org/github.com/google/ko/@v/v9.9.9.info: 502 Bad Gateway",
        ] {
            assert!(!is_final_answer(failure), "{failure}");
        }
    }

    #[test]
    fn an_unknown_version_names_the_nearest_and_newest_releases() {
        let known: Vec<String> =
            ["v0.14.1", "v0.15.0", "v0.16.0-rc1", "v0.16.0", "v0.17.0", "v0.18.1"].map(String::from).into();
        assert_eq!(
            versions_hint("v0.15.9", &known),
            "; the proxy lists 5 release(s), the newest v0.16.0, v0.17.0, v0.18.1 (nearest to v0.15.9: v0.15.0, v0.16.0); `ko-matrix versions` lists them all (exact versions it does not list may still exist)"
        );
        assert!(versions_hint("v9.9.9", &known).contains("(nearest to v9.9.9: v0.18.1)"));
        assert!(versions_hint("main", &known).contains("the newest v0.16.0, v0.17.0, v0.18.1; `ko-matrix versions`"));
        assert_eq!(versions_hint("v1.0.0", &[]), "; `ko-matrix versions` lists the releases");
    }

    #[test]
    fn go_versions_parse_and_order() {
        assert_eq!(GoVersion::parse("go1.21.13"), Some(GoVersion { major: 1, minor: 21, patch: 13 }));
        assert_eq!(GoVersion::parse("1.21"), Some(GoVersion { major: 1, minor: 21, patch: 0 }));
        assert_eq!(GoVersion::parse("go1.22rc1"), Some(GoVersion { major: 1, minor: 22, patch: 0 }));
        assert_eq!(GoVersion::parse("devel"), None);
        assert!(GoVersion::parse("1.9").unwrap() < GoVersion::parse("1.21").unwrap());
    }

    #[test]
    fn release_like_toolchains() {
        let v = |t: &str| GoVersion::parse(t).unwrap();
        let available: Vec<GoVersion> =
            ["1.21.0", "1.21.13", "1.22.12", "1.26.3", "1.26.11"].iter().map(|t| v(t)).collect();
        assert_eq!(oldest_minor_newest_patch(&available, v("1.21")), Some(v("1.21.13")));
        assert_eq!(
            oldest_minor_newest_patch(&available, v("1.20")),
            Some(v("1.21.13")),
            "no 1.20 toolchain module: the next minor"
        );
        assert_eq!(oldest_minor_newest_patch(&available, v("1.26.3")), Some(v("1.26.11")));
        assert_eq!(oldest_minor_newest_patch(&available, v("1.27")), None);
    }

    #[test]
    fn go_mod_directives() {
        let go_mod = "module github.com/google/ko\n\ngo 1.21\n\ntoolchain go1.21.5\n\nrequire (\n\tgolang.org/x/tools v0.15.0\n)\n";
        assert_eq!(directive(go_mod, "go"), Some("1.21"));
        assert_eq!(directive(go_mod, "toolchain"), Some("go1.21.5"));
        assert_eq!(directive("module x\n", "go"), None);
        // `golang.org/...` inside require must not read as a `go` line.
        assert_eq!(directive("require (\n\tgo.uber.org/x v1\n)\n", "go"), None);
    }

    #[test]
    fn sumdb_gaps_are_recognised_but_mismatches_are_not() {
        let gap = "go: github.com/google/ko@v0.15.3: verifying go.mod: github.com/google/ko@v0.15.3/go.mod: reading https://proxy.golang.org/sumdb/sum.golang.org/lookup/github.com/google/ko@v0.15.3: 404 Not Found\n\tserver response: not found";
        assert_eq!(sumdb_gap(gap), Some("github.com/google/ko@v0.15.3".into()));
        let mismatch = "verifying github.com/x/y@v1.0.0: checksum mismatch\n\tdownloaded: h1:a\n\tsum.golang.org: h1:b\n\nSECURITY ERROR";
        assert_eq!(sumdb_gap(mismatch), None);
        assert_eq!(
            sumdb_gap("reading https://proxy.golang.org/sumdb/sum.golang.org/lookup/x@v1: 500 Internal Server Error"),
            None
        );
    }

    #[test]
    fn version_reports() {
        assert!(reports_version("0.15.2\n", "v0.15.2"));
        assert!(reports_version("registry github.com/distribution/distribution/v3 v3.0.0", "v3.0.0"));
        assert!(!reports_version("0.15.21\n", "v0.15.2"));
        assert!(!reports_version("", "v0.15.2"));
        assert!(
            reports_version("Version:    1.2.0+unreleased\nGo version: go1.22.3\n", "v1.2.0"),
            "build metadata is not part of the version"
        );
    }

    #[test]
    fn toolchain_policy_parses() {
        assert_eq!(ToolchainPolicy::parse("auto"), Some(ToolchainPolicy::Auto));
        assert_eq!(ToolchainPolicy::parse("go1.21.13"), Some(ToolchainPolicy::Exact("go1.21.13".into())));
        assert_eq!(ToolchainPolicy::parse("1.21"), None);
        assert!(is_canonical("v0.15.2"));
        assert!(is_canonical("v0.0.0-20240217000000-348ca2d9731d"));
        assert!(!is_canonical("latest"));
        assert!(!is_canonical("348ca2d"));
    }
}
