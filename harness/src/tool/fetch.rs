//! Getting a tool's binaries: every route (release download, build from the module proxy,
//! a binary the user has), one verified cache, one answer: a [`ToolBinary`].

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use super::release::{ReleaseError, ReleaseLayout, ReleaseSite};
use super::Tool;
use crate::cache::{self, Cache, Installed};
use crate::events::{ProvisionEvent, ProvisionObserver};
use crate::provision::{self, GoProvisioner, GoTool, ProvisionError, ToolchainPolicy};

/// How a tool's versions are obtained.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Source {
    /// `release` when the release host answers, else `go`.
    #[default]
    Auto,
    Release,
    Go,
    Path,
}

impl Source {
    pub const CHOICES: &'static str = "auto, release, go, path";
}

/// Everything that decides where a tool's binaries come from.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    pub source: Source,
    /// `None`: the tool's GitHub releases.
    pub release_base_url: Option<String>,
    /// The binary for `source = "path"`.
    pub path: Option<PathBuf>,
    pub go_toolchain: ToolchainPolicy,
    pub build_timeout: Duration,
    /// How long a download may receive nothing before it is abandoned.
    pub stall_timeout: Duration,
}

impl Default for FetchSettings {
    fn default() -> Self {
        FetchSettings {
            source: Source::Auto,
            release_base_url: None,
            path: None,
            go_toolchain: ToolchainPolicy::Auto,
            build_timeout: Duration::from_secs(30 * 60),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// A verified binary of a tool, ready to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ToolBinary {
    #[serde(serialize_with = "tool_name", deserialize_with = "tool_by_name")]
    pub tool: &'static Tool,
    /// What was asked for (`v0.15.2`, `latest`, `main`).
    pub requested: String,
    /// The exact version the binary is.
    pub version: String,
    pub path: PathBuf,
    pub sha256: String,
    /// `release`, `go` or `path`.
    pub route: String,
    pub go_version: Option<String>,
    /// Modules the Go checksum database could not vouch for (go route).
    pub sumdb_gaps: Vec<String>,
    pub origin: String,
    pub from_cache: bool,
}

fn tool_name<S: serde::Serializer>(tool: &&'static Tool, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str(tool.name())
}

fn tool_by_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<&'static Tool, D::Error> {
    let name = String::deserialize(deserializer)?;
    super::by_name(&name).ok_or_else(|| serde::de::Error::custom(format!("unknown tool `{name}`")))
}

impl ToolBinary {
    /// The cached binary `installed` of `tool`, as asked for by `requested`.
    pub(crate) fn from_installed(tool: &'static Tool, requested: String, installed: Installed) -> ToolBinary {
        ToolBinary {
            tool,
            requested,
            version: installed.manifest.version,
            path: installed.path,
            sha256: installed.manifest.sha256,
            route: installed.manifest.route,
            go_version: installed.manifest.go_version,
            sumdb_gaps: installed.manifest.sumdb_gaps,
            origin: installed.manifest.origin,
            from_cache: installed.from_cache,
        }
    }

    /// `ko@v0.15.2`.
    pub fn label(&self) -> String {
        format!("{}@{}", self.tool.name(), self.version)
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("source = \"path\" needs `path` set to a {tool} binary")]
    PathNotSet { tool: &'static str },
    #[error("source = \"release\" takes release versions like v0.15.2, not `{query}`; use source = \"go\" for branches and commits")]
    NotARelease { query: String },
    #[error("{tool} {version}: {source}")]
    Release { tool: &'static str, version: String, source: Box<ReleaseError> },
    #[error("{tool} {version}: {source}")]
    Provision { tool: &'static str, version: String, source: Box<ProvisionError> },
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

impl FetchError {
    /// The request itself was wrong (as opposed to a download or build failing): the proxy's
    /// final "no such version" is one.
    pub fn is_bad_input(&self) -> bool {
        match self {
            FetchError::PathNotSet { .. } | FetchError::NotARelease { .. } => true,
            FetchError::Provision { source, .. } => matches!(**source, ProvisionError::UnknownVersion { .. }),
            _ => false,
        }
    }
}

/// A program binaries are fetched for, a tool or a service: how to build it from the Go module
/// proxy, and where its release binaries are.
#[derive(Debug, Clone, Copy)]
pub struct Program {
    pub go: &'static GoTool,
    pub release: &'static ReleaseLayout,
}

impl Program {
    fn name(&self) -> &'static str {
        self.go.name
    }
}

/// Fetches one program's versions by the release or go route (or `auto`: release where the
/// host answers, else go), through the cache. The one mechanism behind tools and services.
pub struct BinaryFetcher {
    program: Program,
    source: Source,
    cache: Cache,
    release: ReleaseSite,
    go: GoProvisioner,
    observer: Arc<dyn ProvisionObserver>,
    release_answers: OnceCell<bool>,
}

impl BinaryFetcher {
    /// `settings.source = path` is the caller's to handle: it is treated as `auto` here.
    pub fn new(
        program: Program,
        cache: Cache,
        settings: &FetchSettings,
        observer: Arc<dyn ProvisionObserver>,
    ) -> BinaryFetcher {
        let base_url = settings.release_base_url.clone().unwrap_or_else(|| program.release.default_base_url());
        let release = ReleaseSite::new(&base_url, settings.stall_timeout);
        let go =
            GoProvisioner::new(cache.clone(), settings.go_toolchain.clone(), settings.build_timeout, observer.clone());
        let source = if settings.source == Source::Path { Source::Auto } else { settings.source };
        BinaryFetcher { program, source, cache, release, go, observer, release_answers: OnceCell::new() }
    }

    pub fn go(&self) -> &GoProvisioner {
        &self.go
    }

    /// This fetcher, for one of the world's programs: its builds take their turns first.
    pub(crate) fn for_world_programs(self) -> BinaryFetcher {
        BinaryFetcher { go: self.go.for_world_programs(), ..self }
    }

    /// The program at `query` (normalised: `v0.15.2`, `latest`, a commit, a pseudo-version).
    pub async fn install(&self, query: &str) -> Result<Installed, FetchError> {
        let provision = |source| FetchError::Provision {
            tool: self.program.name(),
            version: query.to_string(),
            source: Box::new(source),
        };
        match self.source {
            Source::Release if !provision::is_canonical(query) => {
                Err(FetchError::NotARelease { query: query.to_string() })
            }
            Source::Release => self.by_release(query).await,
            Source::Go => self.go.install(self.program.go, query).await.map_err(provision),
            Source::Auto | Source::Path => self.auto(query).await,
        }
    }

    async fn auto(&self, query: &str) -> Result<Installed, FetchError> {
        let provision = |source| FetchError::Provision {
            tool: self.program.name(),
            version: query.to_string(),
            source: Box::new(source),
        };
        let go_tool = self.program.go;
        if !provision::is_canonical(query) {
            return self.go.install(go_tool, query).await.map_err(provision);
        }
        if let Some(hit) = self.release_entry(query).lookup()? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        if let Some(hit) = self.go.cached(go_tool, query).map_err(provision)? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        if !*self.release_answers.get_or_init(|| self.release.answers()).await {
            self.note(query, format!("{} did not answer; building from the Go module proxy", self.release.base_url()));
            return self.go.install(go_tool, query).await.map_err(provision);
        }
        match self.by_release(query).await {
            Err(FetchError::Release { source, .. }) if source.is_missing() => {
                self.note(query, format!("no release binary ({source}); building from the Go module proxy"));
                self.go.install(go_tool, query).await.map_err(provision)
            }
            other => other,
        }
    }

    fn release_entry(&self, version: &str) -> cache::Entry {
        self.cache.entry(self.program.name(), &format!("{version}-release"))
    }

    async fn by_release(&self, version: &str) -> Result<Installed, FetchError> {
        let entry = self.release_entry(version);
        if let Some(hit) = entry.lookup()? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        let lock = entry.lock(provision::LOCK_TIMEOUT).await?;
        if let Some(hit) = entry.lookup()? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        let started = Instant::now();
        let staging = entry.stage(&lock)?;
        let tool = self.program.name();
        let release_err = |source| FetchError::Release { tool, version: version.to_string(), source: Box::new(source) };
        let result = async {
            let downloaded = self
                .release
                .download(self.program.release, version, staging.path(), self.observer.as_ref())
                .await
                .map_err(release_err)?;
            self.observer.on_event(ProvisionEvent::Verifying { tool: tool.into(), version: version.into() });
            provision::verified_manifest(
                self.program.go,
                &downloaded.binary,
                version,
                "release",
                None,
                Vec::new(),
                downloaded.url,
            )
            .await
            .map_err(|source| FetchError::Provision {
                tool,
                version: version.to_string(),
                source: Box::new(source),
            })
        }
        .await;
        let manifest = match result {
            Ok(manifest) => manifest,
            Err(e) => {
                self.observer.on_event(ProvisionEvent::Failed { tool: tool.into(), version: version.into() });
                return Err(e);
            }
        };
        let installed = entry.commit(staging, manifest, &lock)?;
        self.observer.on_event(ProvisionEvent::Installed {
            tool: tool.into(),
            version: version.into(),
            route: "release".into(),
            elapsed: started.elapsed(),
        });
        Ok(installed)
    }

    fn cache_hit(&self, hit: &Installed) {
        self.observer.on_event(ProvisionEvent::CacheHit {
            tool: self.program.name().into(),
            version: hit.manifest.version.clone(),
            route: hit.manifest.route.clone(),
        });
    }

    fn note(&self, version: &str, message: String) {
        self.observer.on_event(ProvisionEvent::Note {
            tool: self.program.name().into(),
            version: version.into(),
            message,
        });
    }
}

/// Fetches a tool's versions by the configured route, through the cache; `path` is a binary
/// the user has.
pub struct ToolFetcher {
    tool: &'static Tool,
    path: Option<PathBuf>,
    source: Source,
    binaries: BinaryFetcher,
}

impl ToolFetcher {
    pub fn new(
        tool: &'static Tool,
        cache: Cache,
        settings: FetchSettings,
        observer: Arc<dyn ProvisionObserver>,
    ) -> ToolFetcher {
        let binaries =
            BinaryFetcher::new(Program { go: tool.go(), release: tool.release() }, cache, &settings, observer);
        ToolFetcher { tool, path: settings.path, source: settings.source, binaries }
    }

    pub fn tool(&self) -> &'static Tool {
        self.tool
    }

    pub fn go(&self) -> &GoProvisioner {
        self.binaries.go()
    }

    /// The tool at `query` (`v0.15.2`, `0.15.2`, `latest`, a commit, a pseudo-version).
    pub async fn fetch(&self, query: &str) -> Result<ToolBinary, FetchError> {
        let query = normalize(query);
        if self.source == Source::Path {
            return self.by_path(&query).await;
        }
        let installed = self.binaries.install(&query).await?;
        Ok(ToolBinary::from_installed(self.tool, query, installed))
    }

    async fn by_path(&self, query: &str) -> Result<ToolBinary, FetchError> {
        let path = self.path.clone().ok_or(FetchError::PathNotSet { tool: self.tool.name() })?;
        let provision = |source| FetchError::Provision {
            tool: self.tool.name(),
            version: query.to_string(),
            source: Box::new(source),
        };
        provision::verify_version(self.tool.go(), &path, query).await.map_err(provision)?;
        let sha256 = cache::sha256_file(&path).map_err(|source| {
            provision(ProvisionError::Cache(cache::CacheError::Io { action: "hashing", path: path.clone(), source }))
        })?;
        Ok(ToolBinary {
            tool: self.tool,
            requested: query.into(),
            version: query.into(),
            origin: path.display().to_string(),
            path,
            sha256,
            route: "path".into(),
            go_version: None,
            sumdb_gaps: Vec::new(),
            from_cache: false,
        })
    }
}

/// Each `(fetcher, version)` fetched, all at once (downloads side by side; Go builds take
/// turns, see [`provision::build_jobs`]), in the order given; the first error stops the rest.
pub async fn fetch_all(requests: &[(&ToolFetcher, String)]) -> Result<Vec<ToolBinary>, FetchError> {
    futures_util::future::try_join_all(requests.iter().map(|(fetcher, version)| fetcher.fetch(version))).await
}

/// Each `(fetcher, version)` fetched, all at once as [`fetch_all`] does, each binary given as
/// soon as it is ready. Dropping the stream stops the fetches still going.
pub fn fetch_each<'a>(
    requests: &'a [(&'a ToolFetcher, String)],
) -> impl futures_util::Stream<Item = Result<ToolBinary, FetchError>> + 'a {
    requests
        .iter()
        .map(|(fetcher, version)| fetcher.fetch(version))
        .collect::<futures_util::stream::FuturesUnordered<_>>()
}

/// `0.15.2` → `v0.15.2`; anything else unchanged.
pub fn normalize(query: &str) -> String {
    let query = query.trim();
    if semver::Version::parse(query).is_ok() {
        format!("v{query}")
    } else {
        query.to_string()
    }
}
