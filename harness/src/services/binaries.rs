//! The programs the world runs: distribution's registry (for registries run as local
//! processes) and Amazon's ECR credential helper (for ECR scenarios). One installed on PATH
//! is used as it is; otherwise each comes the way tools come ([`BinaryFetcher`], `auto`):
//! its release binary, checked against the published checksum, where the release host
//! answers, else built from the Go module proxy.

use std::path::PathBuf;
use std::sync::Arc;

use crate::cache::{Cache, Installed};
use crate::events::ProvisionObserver;
use crate::provision::{GoProvisioner, GoTool};
use crate::tool::release::{Checksums, Packaging};
use crate::tool::{BinaryFetcher, FetchError, FetchSettings, Program, ReleaseLayout, Source};

use super::registry::{REGISTRY_RELEASE, REGISTRY_TOOL};
use super::runtime::ServiceError;

/// distribution's registry, at the version a run uses.
pub const REGISTRY: Program = Program { go: &REGISTRY_TOOL, release: &REGISTRY_RELEASE };
pub const REGISTRY_VERSION: &str = "v3.0.0";

/// Amazon's credential helper (amazon-ecr-credential-helper).
pub const ECR_LOGIN_TOOL: GoTool = GoTool {
    name: "docker-credential-ecr-login",
    module: "github.com/awslabs/amazon-ecr-credential-helper/ecr-login",
    package: "github.com/awslabs/amazon-ecr-credential-helper/ecr-login/cli/docker-credential-ecr-login",
    version_var: Some("github.com/awslabs/amazon-ecr-credential-helper/ecr-login/version.Version"),
    version_args: &[],
};

/// Its releases are bare executables in an S3 bucket, each with a `.sha256` beside it:
/// `<bucket>/0.9.1/linux-amd64/docker-credential-ecr-login{,.sha256}`.
pub const ECR_LOGIN_RELEASE: ReleaseLayout = ReleaseLayout {
    github_repo: "awslabs/amazon-ecr-credential-helper",
    download_base: Some("https://amazon-ecr-credential-helper-releases.s3.us-east-2.amazonaws.com"),
    dir: "{version}/{os}-{arch}",
    asset: "docker-credential-ecr-login",
    checksums: Checksums::Sidecar,
    packaging: Packaging::Bare,
    binary: "docker-credential-ecr-login",
};

pub const ECR_LOGIN: Program = Program { go: &ECR_LOGIN_TOOL, release: &ECR_LOGIN_RELEASE };
pub const ECR_LOGIN_VERSION: &str = "v0.9.1";

/// The service programs of a run, each found on PATH or fetched through the cache.
pub struct ServiceBinaries {
    registry: BinaryFetcher,
    ecr_login: BinaryFetcher,
}

impl ServiceBinaries {
    /// `settings` as for a tool; `path` does not apply (PATH is looked at first anyway).
    pub fn new(cache: Cache, settings: &FetchSettings, observer: Arc<dyn ProvisionObserver>) -> ServiceBinaries {
        ServiceBinaries {
            registry: BinaryFetcher::new(REGISTRY, cache.clone(), settings, observer.clone()).for_world_programs(),
            ecr_login: BinaryFetcher::new(ECR_LOGIN, cache, settings, observer).for_world_programs(),
        }
    }

    /// By the `auto` route, into `provisioner`'s cache, with its Go settings.
    pub fn like(provisioner: &GoProvisioner) -> ServiceBinaries {
        let settings = FetchSettings {
            source: Source::Auto,
            go_toolchain: provisioner.policy().clone(),
            build_timeout: provisioner.build_timeout(),
            ..FetchSettings::default()
        };
        ServiceBinaries::new(provisioner.cache().clone(), &settings, provisioner.observer())
    }

    /// `registry` or Debian's `docker-registry` on PATH, else distribution at [`REGISTRY_VERSION`].
    pub async fn registry(&self) -> Result<PathBuf, ServiceError> {
        match on_path(&["registry", "docker-registry"]) {
            Some(path) => Ok(path),
            None => fetch(&self.registry, "registry", REGISTRY_VERSION).await,
        }
    }

    /// `docker-credential-ecr-login` on PATH, else the helper at [`ECR_LOGIN_VERSION`].
    pub async fn ecr_login(&self) -> Result<PathBuf, ServiceError> {
        match on_path(&["docker-credential-ecr-login"]) {
            Some(path) => Ok(path),
            None => fetch(&self.ecr_login, "ECR credential helper", ECR_LOGIN_VERSION).await,
        }
    }
}

impl ServiceBinaries {
    /// Both programs by their fetch route, whatever PATH holds, at once: to provision a
    /// machine ahead of runs, or to measure doing so.
    pub async fn fetch_all(&self) -> Result<Vec<(&'static str, Installed)>, FetchError> {
        let (registry, ecr_login) =
            tokio::join!(self.registry.install(REGISTRY_VERSION), self.ecr_login.install(ECR_LOGIN_VERSION));
        Ok(vec![(REGISTRY.go.name, registry?), (ECR_LOGIN.go.name, ecr_login?)])
    }
}

fn on_path(names: &[&str]) -> Option<PathBuf> {
    names.iter().find_map(|name| which::which(name).ok())
}

async fn fetch(fetcher: &BinaryFetcher, what: &'static str, version: &str) -> Result<PathBuf, ServiceError> {
    fetcher
        .install(version)
        .await
        .map(|installed| installed.path)
        .map_err(|source: FetchError| ServiceError::NoBinary { what, source: Box::new(source) })
}
