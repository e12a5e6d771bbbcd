//! What a run gives the tools to push, made once per run: the Go app and its base image (for
//! tools that build), a prebuilt single-layer image as a `docker save` tarball (for tools
//! that push images), and a small file (for tools that push artifacts).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::base_image::{digest, one_file_tar, tar_of};

/// Everything a cell's tool may push with.
#[derive(Debug, Clone)]
pub struct Payload {
    /// The Go app, outside any git checkout.
    pub app_dir: PathBuf,
    /// The base image the app builds on, in the harness's registry, pinned by digest.
    pub base_image: String,
    pub go: GoEnv,
    /// Holds [`Payload::IMAGE_TARBALL`] and [`Payload::ARTIFACT_FILE`].
    pub files_dir: PathBuf,
}

impl Payload {
    pub(crate) const IMAGE_TARBALL: &'static str = "image.tar";
    pub(crate) const ARTIFACT_FILE: &'static str = "artifact.txt";
    pub(crate) const ARTIFACT_MEDIA_TYPE: &'static str = "application/vnd.ko-matrix.artifact.v1+text";

    /// Writes the image tarball and the artifact into `files_dir`.
    pub(crate) fn write_files(files_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(files_dir)?;
        std::fs::write(files_dir.join(Self::IMAGE_TARBALL), image_tarball())?;
        std::fs::write(files_dir.join(Self::ARTIFACT_FILE), "pushed by ko-matrix\n")
    }
}

/// The Go installation that tools building the app use, with caches every cell shares.
#[derive(Debug, Clone)]
pub struct GoEnv {
    pub bin_dir: PathBuf,
    pub gocache: PathBuf,
    pub gomodcache: PathBuf,
}

#[derive(Debug, thiserror::Error)]
#[error("`go env GOROOT GOCACHE GOMODCACHE` failed: {0}")]
pub struct GoEnvError(String);

impl GoEnv {
    pub(crate) async fn detect(go: &Path) -> Result<GoEnv, GoEnvError> {
        let mut cmd = Command::new(go);
        cmd.args(["env", "GOROOT", "GOCACHE", "GOMODCACHE"]).env("GOTOOLCHAIN", "local");
        let out = crate::process::output(cmd, Duration::from_secs(60)).await.map_err(|e| GoEnvError(e.to_string()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        let mut lines = text.lines().map(PathBuf::from);
        match (lines.next(), lines.next(), lines.next()) {
            (Some(root), Some(gocache), Some(gomodcache)) if out.status.success() => {
                Ok(GoEnv { bin_dir: root.join("bin"), gocache, gomodcache })
            }
            _ => Err(GoEnvError(crate::process::output_tail(&out, 5))),
        }
    }
}

/// A linux/amd64 image with one layer, as `docker save` writes it (`manifest.json`, the
/// config, an uncompressed layer): the format every image-pushing tool reads.
pub(crate) fn image_tarball() -> Vec<u8> {
    let layer = one_file_tar("etc/ko-matrix-payload", "pushed by ko-matrix\n");
    let config = serde_json::to_vec(&json!({
        "architecture": "amd64",
        "os": "linux",
        "config": { "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] },
        "rootfs": { "type": "layers", "diff_ids": [digest(&layer)] },
        "history": [{ "created_by": "ko-matrix payload" }],
    }))
    .expect("config serialises");
    let config_name = format!("{}.json", digest(&config).trim_start_matches("sha256:"));
    let manifest = serde_json::to_vec(&json!([{ "Config": config_name, "RepoTags": [], "Layers": ["layer.tar"] }]))
        .expect("manifest serialises");
    tar_of(&[("manifest.json", &manifest), (&config_name, &config), ("layer.tar", &layer)])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_tarball_is_docker_save_format() {
        let bytes = image_tarball();
        assert_eq!(bytes, image_tarball(), "deterministic");
        let mut archive = tar::Archive::new(bytes.as_slice());
        let mut files = std::collections::BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), content);
        }
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(&files[config_name]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(&files["layer.tar"]), "the config names the layer it ships");
        assert_eq!(format!("sha256:{}", config_name.trim_end_matches(".json")), digest(&files[config_name]));
    }
}
