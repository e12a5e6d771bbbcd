//! Getting ko binaries: every route (release download, build from the module proxy, a
//! binary the user has), one verified cache, one answer: a [`KoBinary`].

pub mod release;
pub mod versions;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::OnceCell;

use crate::cache::{self, Cache, Installed};
use crate::events::{ProvisionEvent, ProvisionObserver};
use crate::provision::{self, GoProvisioner, GoTool, ProvisionError, ToolchainPolicy};
use release::{ReleaseError, ReleaseSite};

pub const KO: GoTool = GoTool {
    name: "ko",
    module: "github.com/google/ko",
    package: "github.com/google/ko",
    version_var: Some("github.com/google/ko/pkg/commands.Version"),
    version_args: &["version"],
};

/// How a ko version is obtained.
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

/// Everything that decides where ko binaries come from.
#[derive(Debug, Clone)]
pub struct KoSettings {
    pub source: Source,
    pub release_base_url: String,
    /// The binary for `source = "path"`.
    pub path: Option<PathBuf>,
    pub go_toolchain: ToolchainPolicy,
    pub build_timeout: Duration,
    /// How long a download may receive nothing before it is abandoned.
    pub stall_timeout: Duration,
}

impl Default for KoSettings {
    fn default() -> Self {
        KoSettings {
            source: Source::Auto,
            release_base_url: release::DEFAULT_BASE_URL.into(),
            path: None,
            go_toolchain: ToolchainPolicy::Auto,
            build_timeout: Duration::from_secs(30 * 60),
            stall_timeout: Duration::from_secs(60),
        }
    }
}

/// A verified ko binary, ready to run.
#[derive(Debug, Clone, Serialize)]
pub struct KoBinary {
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

impl KoBinary {
    /// The cached binary `installed`, as asked for by `requested`.
    pub fn from_installed(requested: String, installed: Installed) -> KoBinary {
        KoBinary {
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
}

#[derive(Debug, thiserror::Error)]
pub enum FetchError {
    #[error("source = \"path\" needs `path` set to a ko binary")]
    PathNotSet,
    #[error("source = \"release\" takes release versions like v0.15.2, not `{query}`; use source = \"go\" for branches and commits")]
    NotARelease { query: String },
    #[error("ko {version}: {source}")]
    Release { version: String, source: ReleaseError },
    #[error("ko {version}: {source}")]
    Provision { version: String, source: ProvisionError },
    #[error(transparent)]
    Cache(#[from] cache::CacheError),
}

impl FetchError {
    /// The request itself was wrong (as opposed to a download or build failing).
    pub fn is_bad_input(&self) -> bool {
        matches!(self, FetchError::PathNotSet | FetchError::NotARelease { .. })
    }
}

/// Fetches ko versions by the configured route, through the cache.
pub struct KoFetcher {
    settings: KoSettings,
    cache: Cache,
    release: ReleaseSite,
    go: GoProvisioner,
    observer: Arc<dyn ProvisionObserver>,
    release_answers: OnceCell<bool>,
}

impl KoFetcher {
    pub fn new(cache: Cache, settings: KoSettings, observer: Arc<dyn ProvisionObserver>) -> KoFetcher {
        let release = ReleaseSite::new(&settings.release_base_url, settings.stall_timeout);
        let go = GoProvisioner::new(cache.clone(), settings.go_toolchain.clone(), settings.build_timeout, observer.clone());
        KoFetcher { settings, cache, release, go, observer, release_answers: OnceCell::new() }
    }

    pub fn go(&self) -> &GoProvisioner {
        &self.go
    }

    /// ko at `query` (`v0.15.2`, `0.15.2`, `latest`, a commit, a pseudo-version).
    pub async fn fetch(&self, query: &str) -> Result<KoBinary, FetchError> {
        let query = normalize(query);
        let provision = |source| FetchError::Provision { version: query.clone(), source };
        let installed = match self.settings.source {
            Source::Path => return self.from_path(&query).await,
            Source::Release => {
                if !provision::is_canonical(&query) {
                    return Err(FetchError::NotARelease { query });
                }
                self.from_release(&query).await?
            }
            Source::Go => self.go.install(&KO, &query).await.map_err(provision)?,
            Source::Auto => self.auto(&query).await?,
        };
        Ok(KoBinary::from_installed(query, installed))
    }

    async fn auto(&self, query: &str) -> Result<Installed, FetchError> {
        let provision = |source| FetchError::Provision { version: query.to_string(), source };
        if !provision::is_canonical(query) {
            return self.go.install(&KO, query).await.map_err(provision);
        }
        if let Some(hit) = self.release_entry(query).lookup()? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        if let Some(hit) = self.go.cached(&KO, query).map_err(provision)? {
            self.cache_hit(&hit);
            return Ok(hit);
        }
        if !*self.release_answers.get_or_init(|| self.release.answers()).await {
            self.note(query, format!("{} did not answer; building from the Go module proxy", self.release.base_url()));
            return self.go.install(&KO, query).await.map_err(provision);
        }
        match self.from_release(query).await {
            Err(FetchError::Release { source, .. }) if source.is_missing() => {
                self.note(query, format!("no release binary ({source}); building from the Go module proxy"));
                self.go.install(&KO, query).await.map_err(provision)
            }
            other => other,
        }
    }

    fn release_entry(&self, version: &str) -> cache::Entry {
        self.cache.entry(KO.name, &format!("{version}-release"))
    }

    async fn from_release(&self, version: &str) -> Result<Installed, FetchError> {
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
        let release_err = |source| FetchError::Release { version: version.to_string(), source };
        let result = async {
            let downloaded = self.release.download_ko(version, staging.path(), self.observer.as_ref()).await.map_err(release_err)?;
            self.observer.on_event(ProvisionEvent::Verifying { tool: KO.name.into(), version: version.into() });
            provision::verified_manifest(&KO, &downloaded.binary, version, "release", None, Vec::new(), downloaded.url)
                .await
                .map_err(|source| FetchError::Provision { version: version.to_string(), source })
        }
        .await;
        let manifest = match result {
            Ok(manifest) => manifest,
            Err(e) => {
                self.observer.on_event(ProvisionEvent::Failed { tool: KO.name.into(), version: version.into() });
                return Err(e);
            }
        };
        let installed = entry.commit(staging, manifest, &lock)?;
        self.observer.on_event(ProvisionEvent::Installed {
            tool: KO.name.into(),
            version: version.into(),
            route: "release".into(),
            elapsed: started.elapsed(),
        });
        Ok(installed)
    }

    async fn from_path(&self, query: &str) -> Result<KoBinary, FetchError> {
        let path = self.settings.path.clone().ok_or(FetchError::PathNotSet)?;
        let provision = |source| FetchError::Provision { version: query.to_string(), source };
        provision::verify_version(&KO, &path, query).await.map_err(provision)?;
        let sha256 = cache::sha256_file(&path)
            .map_err(|source| provision(ProvisionError::Cache(cache::CacheError::Io { action: "hashing", path: path.clone(), source })))?;
        Ok(KoBinary {
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

    fn cache_hit(&self, hit: &Installed) {
        self.observer.on_event(ProvisionEvent::CacheHit {
            tool: KO.name.into(),
            version: hit.manifest.version.clone(),
            route: hit.manifest.route.clone(),
        });
    }

    fn note(&self, version: &str, message: String) {
        self.observer.on_event(ProvisionEvent::Note { tool: KO.name.into(), version: version.into(), message });
    }
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
