//! The real-world route: a tool's GitHub release assets, verified against its checksums file.
//!
//! `<base>/v<version>/<asset>` and `<base>/v<version>/<checksums>`, named by the tool's
//! [`ReleaseLayout`] (goreleaser's layouts). The base URL is configurable so a mirror or a
//! local file server works the same way.

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

use crate::events::{ProvisionEvent, ProvisionObserver};

/// How a program publishes release binaries. `dir`, `asset` and `checksums` may hold
/// `{version}` (without the `v`), `{Os}`/`{Arch}` (goreleaser's `Linux`/`x86_64`) and
/// `{os}`/`{arch}` (Go's `linux`/`amd64`).
#[derive(Debug, PartialEq)]
pub struct ReleaseLayout {
    /// `owner/name` on GitHub: the release list, and the default download base.
    pub github_repo: &'static str,
    /// Where the files are when not on the GitHub release (an S3 bucket, say).
    pub download_base: Option<&'static str>,
    /// A release's directory below the download base: `v{version}` on GitHub.
    pub dir: &'static str,
    pub asset: &'static str,
    pub checksums: Checksums,
    pub packaging: Packaging,
    /// The executable's file name (inside the archive, or of the bare download).
    pub binary: &'static str,
}

/// Where a release publishes the SHA-256 of its asset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Checksums {
    /// A file of `<sha256>  <file>` lines for every asset (goreleaser's `checksums.txt`).
    List(&'static str),
    /// `<asset>.sha256` next to the asset: the digest, optionally followed by a file name.
    Sidecar,
    /// None that the harness can check the binaries against (regclient's releases are bare
    /// binaries signed with cosign): the release route refuses, `auto` builds from the proxy.
    Unpublished,
}

/// What the asset is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Packaging {
    /// A `.tar.gz` holding the executable.
    TarGz,
    /// The executable itself.
    Bare,
}

impl ReleaseLayout {
    /// goreleaser's layout on a GitHub release: `v{version}/<asset>.tar.gz` and a checksums list.
    pub const fn goreleaser(
        github_repo: &'static str,
        asset: &'static str,
        checksums: &'static str,
        binary: &'static str,
    ) -> ReleaseLayout {
        ReleaseLayout {
            github_repo,
            download_base: None,
            dir: "v{version}",
            asset,
            checksums: Checksums::List(checksums),
            packaging: Packaging::TarGz,
            binary,
        }
    }

    pub(crate) fn default_base_url(&self) -> String {
        match self.download_base {
            Some(base) => base.to_string(),
            None => format!("https://github.com/{}/releases/download", self.github_repo),
        }
    }

    pub(crate) fn releases_api(&self) -> String {
        format!("https://api.github.com/repos/{}/releases?per_page=100", self.github_repo)
    }

    /// The asset for this machine at `version`.
    pub fn asset_name(&self, version: &str) -> Result<String, ReleaseError> {
        expand(self.asset, version)
    }

    /// The file that holds the asset's checksum.
    pub fn checksums_name(&self, version: &str) -> Result<String, ReleaseError> {
        match self.checksums {
            Checksums::List(name) => expand(name, version),
            Checksums::Sidecar => Ok(format!("{}.sha256", self.asset_name(version)?)),
            Checksums::Unpublished => Err(ReleaseError::Unverifiable { github: self.github_repo.to_string() }),
        }
    }

    /// The release's directory below the download base.
    pub fn dir_name(&self, version: &str) -> Result<String, ReleaseError> {
        expand(self.dir, version)
    }

    /// The digest `checksums` (the text of [`Self::checksums_name`]) gives for `asset`.
    pub(crate) fn checksum_in(&self, checksums: &str, asset: &str) -> Option<String> {
        match self.checksums {
            Checksums::List(_) => checksum_for(checksums, asset),
            Checksums::Unpublished => None,
            Checksums::Sidecar => {
                let mut words = checksums.split_whitespace();
                let digest = words.next()?;
                let names_asset =
                    words.next().is_none_or(|name| name.trim_start_matches('*').rsplit('/').next() == Some(asset));
                (names_asset && digest.len() == 64 && digest.chars().all(|c| c.is_ascii_hexdigit()))
                    .then(|| digest.to_ascii_lowercase())
            }
        }
    }
}

/// `template` with the version and this machine's platform filled in.
fn expand(template: &str, version: &str) -> Result<String, ReleaseError> {
    let (title_os, go_os) = match std::env::consts::OS {
        "linux" => ("Linux", "linux"),
        "macos" => ("Darwin", "darwin"),
        "windows" => ("Windows", "windows"),
        other => return Err(unsupported(other)),
    };
    let (title_arch, go_arch) = match std::env::consts::ARCH {
        "x86_64" => ("x86_64", "amd64"),
        "aarch64" => ("arm64", "arm64"),
        "x86" => ("i386", "386"),
        "s390x" => ("s390x", "s390x"),
        "powerpc64" if cfg!(target_endian = "little") => ("ppc64le", "ppc64le"),
        _ => return Err(unsupported(go_os)),
    };
    Ok(template
        .replace("{version}", version.trim_start_matches('v'))
        .replace("{Os}", title_os)
        .replace("{Arch}", title_arch)
        .replace("{os}", go_os)
        .replace("{arch}", go_arch))
}

#[derive(Debug, thiserror::Error)]
pub enum ReleaseError {
    #[error("no release binary is published for {os}/{arch}; use source = \"go\"")]
    UnsupportedPlatform { os: String, arch: String },
    #[error("{url} is missing (HTTP {status}); check the version and release_base_url")]
    Missing { url: String, status: u16 },
    #[error("{url} answered HTTP {status}")]
    Status { url: String, status: u16 },
    #[error("could not reach {url}: {cause}")]
    Unreachable { url: String, cause: String },
    #[error("download of {url} was cut short after {received} of {} bytes: {cause}", expected.map_or("?".to_string(), |n| n.to_string()))]
    Interrupted { url: String, received: u64, expected: Option<u64>, cause: String },
    #[error("{checksums_url} lists no checksum for {asset}")]
    ChecksumMissing { checksums_url: String, asset: String },
    #[error("checksum mismatch for {url}: the checksums file says sha256 {expected}, the download has {actual}; nothing was kept")]
    ChecksumMismatch { url: String, expected: String, actual: String },
    #[error("{url} holds no usable executable: {detail}")]
    BadArchive { url: String, detail: String },
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the releases of {github} publish no checksums to verify a binary against (the definition's `release` has none); use source = \"go\"")]
    Unverifiable { github: String },
}

impl ReleaseError {
    /// The release host answered but has no such asset (a version without release binaries),
    /// or the tool publishes none the harness can verify: either way, build it instead.
    pub fn is_missing(&self) -> bool {
        matches!(self, ReleaseError::Missing { .. } | ReleaseError::Unverifiable { .. })
    }
}

/// A release binary fetched and checked, waiting in a staging dir.
#[derive(Debug)]
pub(crate) struct Downloaded {
    pub binary: PathBuf,
    pub url: String,
}

#[derive(Debug, Clone)]
pub(crate) struct ReleaseSite {
    base_url: String,
    client: reqwest::Client,
}

impl ReleaseSite {
    /// `stall_timeout`: how long a download may go without receiving a byte.
    pub fn new(base_url: &str, stall_timeout: Duration) -> ReleaseSite {
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .read_timeout(stall_timeout)
            .user_agent(concat!("ko-matrix/", env!("CARGO_PKG_VERSION")))
            .build()
            .expect("static reqwest configuration is valid");
        ReleaseSite { base_url: base_url.trim_end_matches('/').to_string(), client }
    }

    pub(crate) fn base_url(&self) -> &str {
        &self.base_url
    }

    /// Whether the release host answers at all (any HTTP status counts).
    pub async fn answers(&self) -> bool {
        let probe = self.client.head(&self.base_url).send();
        matches!(tokio::time::timeout(Duration::from_secs(10), probe).await, Ok(Ok(_)))
    }

    fn release_url(&self, layout: &ReleaseLayout, version: &str, file: &str) -> Result<String, ReleaseError> {
        match layout.dir_name(version)?.as_str() {
            "" => Ok(format!("{}/{file}", self.base_url)),
            dir => Ok(format!("{}/{dir}/{file}", self.base_url)),
        }
    }

    /// Downloads, checks and unpacks `layout`'s binary at `version` into `dest`.
    pub async fn download(
        &self,
        layout: &ReleaseLayout,
        version: &str,
        dest: &Path,
        observer: &dyn ProvisionObserver,
    ) -> Result<Downloaded, ReleaseError> {
        let asset = layout.asset_name(version)?;
        let checksums_url = self.release_url(layout, version, &layout.checksums_name(version)?)?;
        let checksums = self.get_text(&checksums_url).await?;
        let expected = layout.checksum_in(&checksums, &asset).ok_or_else(|| ReleaseError::ChecksumMissing {
            checksums_url: checksums_url.clone(),
            asset: asset.clone(),
        })?;

        let url = self.release_url(layout, version, &asset)?;
        let binary = dest.join(layout.binary);
        let download = match layout.packaging {
            Packaging::TarGz => dest.join(&asset),
            Packaging::Bare => binary.clone(),
        };
        let actual = self.stream_to_file(&url, &download, layout.binary, version, observer).await?;
        if actual != expected {
            return Err(ReleaseError::ChecksumMismatch { url, expected, actual });
        }
        match layout.packaging {
            Packaging::TarGz => {
                let (from, to, url_for_err, name) = (download.clone(), binary.clone(), url.clone(), layout.binary);
                tokio::task::spawn_blocking(move || extract(&from, name, &to, &url_for_err))
                    .await
                    .expect("extraction task does not panic")?;
                std::fs::remove_file(&download).map_err(|source| ReleaseError::Io {
                    action: "removing",
                    path: download,
                    source,
                })?;
            }
            Packaging::Bare => make_executable(&binary)?,
        }
        Ok(Downloaded { binary, url })
    }

    async fn send(&self, url: &str) -> Result<reqwest::Response, ReleaseError> {
        let response = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| ReleaseError::Unreachable { url: url.to_string(), cause: error_chain(&e) })?;
        match response.status().as_u16() {
            200..=299 => Ok(response),
            status @ (404 | 410) => Err(ReleaseError::Missing { url: url.to_string(), status }),
            status => Err(ReleaseError::Status { url: url.to_string(), status }),
        }
    }

    async fn get_text(&self, url: &str) -> Result<String, ReleaseError> {
        let response = self.send(url).await?;
        let expected = response.content_length();
        response.text().await.map_err(|e| ReleaseError::Interrupted {
            url: url.to_string(),
            received: 0,
            expected,
            cause: error_chain(&e),
        })
    }

    /// Streams `url` into `path`, returning the hex SHA-256 of what arrived.
    async fn stream_to_file(
        &self,
        url: &str,
        path: &Path,
        tool: &str,
        version: &str,
        observer: &dyn ProvisionObserver,
    ) -> Result<String, ReleaseError> {
        let response = self.send(url).await?;
        let total = response.content_length();
        let io = |action: &'static str| move |source| ReleaseError::Io { action, path: path.to_path_buf(), source };
        let mut file = tokio::fs::File::create(path).await.map_err(io("creating"))?;
        let mut hasher = Sha256::new();
        let mut received = 0u64;
        let mut body = response.bytes_stream();
        while let Some(chunk) = body.next().await {
            let chunk = chunk.map_err(|e| ReleaseError::Interrupted {
                url: url.to_string(),
                received,
                expected: total,
                cause: error_chain(&e),
            })?;
            hasher.update(&chunk);
            file.write_all(&chunk).await.map_err(io("writing"))?;
            received += chunk.len() as u64;
            observer.on_event(ProvisionEvent::Downloading {
                tool: tool.into(),
                version: version.into(),
                url: url.into(),
                received,
                total,
            });
        }
        if total.is_some_and(|total| received < total) {
            return Err(ReleaseError::Interrupted {
                url: url.into(),
                received,
                expected: total,
                cause: "connection closed early".into(),
            });
        }
        file.sync_all().await.map_err(io("syncing"))?;
        Ok(hex::encode(hasher.finalize()))
    }
}

fn unsupported(os: &str) -> ReleaseError {
    ReleaseError::UnsupportedPlatform { os: os.to_string(), arch: std::env::consts::ARCH.to_string() }
}

/// The digest `checksums.txt` gives for `asset` (`<sha256>  <file>` lines).
pub(crate) fn checksum_for(checksums: &str, asset: &str) -> Option<String> {
    checksums.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let digest = words.next()?;
        let name = words.next()?.trim_start_matches('*');
        (name == asset && digest.len() == 64).then(|| digest.to_ascii_lowercase())
    })
}

fn make_executable(path: &Path) -> Result<(), ReleaseError> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).map_err(|source| ReleaseError::Io {
        action: "making executable",
        path: path.to_path_buf(),
        source,
    })
}

fn extract(archive: &Path, name: &str, dest: &Path, url: &str) -> Result<(), ReleaseError> {
    let bad = |detail: String| ReleaseError::BadArchive { url: url.to_string(), detail };
    let file = std::fs::File::open(archive).map_err(|source| ReleaseError::Io {
        action: "opening",
        path: archive.to_path_buf(),
        source,
    })?;
    let mut tar = tar::Archive::new(flate2::read::GzDecoder::new(file));
    for entry in tar.entries().map_err(|e| bad(e.to_string()))? {
        let mut entry = entry.map_err(|e| bad(e.to_string()))?;
        let is_binary = entry.path().map_err(|e| bad(e.to_string()))?.file_name().is_some_and(|n| n == name);
        if is_binary && entry.header().entry_type().is_file() {
            entry.unpack(dest).map_err(|e| bad(e.to_string()))?;
            return make_executable(dest);
        }
    }
    Err(bad(format!("no file named `{name}` in the archive")))
}

/// An error and its causes on one line: reqwest's top-level message alone hides the reason.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn asset_names_follow_each_tools_layout() {
        if cfg!(all(target_os = "linux", target_arch = "x86_64")) {
            let names: Vec<(&str, String, String)> = crate::tool::builtins()
                .iter()
                .map(|t| {
                    let release = t.release();
                    let checksums = release.checksums_name("v1.2.3").map_err(|e| e.to_string());
                    (t.name(), release.asset_name("v1.2.3").unwrap(), checksums.unwrap_or_else(|e| e))
                })
                .collect();
            assert_eq!(
                names,
                [
                    ("ko", "ko_1.2.3_Linux_x86_64.tar.gz".into(), "checksums.txt".into()),
                    ("cosign", "cosign-linux-amd64".into(), "cosign_checksums.txt".into()),
                    ("crane", "go-containerregistry_Linux_x86_64.tar.gz".into(), "checksums.txt".into()),
                    ("helm", "helm-v1.2.3-linux-amd64.tar.gz".into(), "helm-v1.2.3-linux-amd64.tar.gz.sha256".into()),
                    ("oras", "oras_1.2.3_linux_amd64.tar.gz".into(), "oras_1.2.3_checksums.txt".into()),
                    ("regctl", "".into(), "the releases of regclient/regclient publish no checksums to verify a binary against (the definition's `release` has none); use source = \"go\"".into()),
                ]
            );
        }
    }

    #[test]
    fn a_release_dir_may_be_empty() {
        let site = ReleaseSite::new("https://get.helm.sh/", Duration::from_secs(1));
        let helm = crate::tool::by_name("helm").unwrap().release();
        assert_eq!(
            site.release_url(helm, "v3.13.3", "helm-v3.13.3-linux-amd64.tar.gz").unwrap(),
            "https://get.helm.sh/helm-v3.13.3-linux-amd64.tar.gz"
        );
        let crane = crate::tool::by_name("crane").unwrap().release();
        assert_eq!(site.release_url(crane, "v0.20.7", "x").unwrap(), "https://get.helm.sh/v0.20.7/x");
    }

    #[test]
    fn checksum_lines() {
        let sums = format!(
            "{}  ko_0.15.2_Darwin_arm64.tar.gz\n{}  ko_0.15.2_Linux_x86_64.tar.gz\n",
            "a".repeat(64),
            "B".repeat(64)
        );
        assert_eq!(checksum_for(&sums, "ko_0.15.2_Linux_x86_64.tar.gz"), Some("b".repeat(64)));
        assert_eq!(checksum_for(&sums, "ko_0.15.2_Linux_i386.tar.gz"), None);
        assert_eq!(checksum_for("short  ko.tar.gz\n", "ko.tar.gz"), None);
    }
}
