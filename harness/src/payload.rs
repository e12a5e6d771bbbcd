//! What a run gives the tools to push, made once per run: the Go app and its base image (for
//! tools that build), a prebuilt single-layer image as a `docker save` tarball (for tools
//! that push images), and a small file (for tools that push artifacts); a Helm chart packed
//! per cell ([`Chart`]). And what the manifest fetched back after a push must show to be the
//! payload the tool was given ([`Expectation`]).

use std::future::Future;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::json;
use tokio::process::Command;

use crate::base_image::{digest, gzip, one_file_tar, tar_of};
use crate::outcome::NotFetched;

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
    /// What [`Payload::ARTIFACT_FILE`] holds.
    pub(crate) const ARTIFACT_TEXT: &'static str = "pushed by ko-matrix\n";

    /// Writes the image tarball and the artifact into `files_dir`.
    pub(crate) fn write_files(files_dir: &Path) -> std::io::Result<()> {
        std::fs::create_dir_all(files_dir)?;
        std::fs::write(files_dir.join(Self::IMAGE_TARBALL), image_tarball())?;
        std::fs::write(files_dir.join(Self::ARTIFACT_FILE), Self::ARTIFACT_TEXT)
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

/// A Helm chart (apiVersion v2: `Chart.yaml`, `values.yaml`, a template) as `helm package`
/// writes it: a gzipped tar of `<name>/…`, the same bytes every time for the same name.
#[derive(Debug, Clone)]
pub struct Chart {
    pub name: String,
    pub bytes: Vec<u8>,
}

impl Chart {
    /// Every chart's version, which `helm push` makes the tag.
    pub const VERSION: &'static str = "0.1.0";
    /// The config media type of a chart in an OCI registry (helm's pkg/registry/constants.go).
    pub const CONFIG_MEDIA_TYPE: &'static str = "application/vnd.cncf.helm.config.v1+json";

    pub fn named(name: &str) -> Chart {
        // A JSON string is a YAML double-quoted scalar: a name such as `1.0` stays a string.
        let quoted = serde_json::to_string(name).expect("a string serialises");
        let chart_yaml = format!(
            "apiVersion: v2\nname: {quoted}\ndescription: A chart ko-matrix packs for each cell for the tool under test to push\ntype: application\nversion: {}\nappVersion: \"1.0.0\"\n",
            Chart::VERSION
        );
        let values = "message: pushed by ko-matrix\n";
        let template = "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-{{ .Chart.Name }}\ndata:\n  message: {{ .Values.message | quote }}\n";
        let files = [
            (format!("{name}/Chart.yaml"), chart_yaml.into_bytes()),
            (format!("{name}/values.yaml"), values.as_bytes().to_vec()),
            (format!("{name}/templates/configmap.yaml"), template.as_bytes().to_vec()),
        ];
        let entries: Vec<(&str, &[u8])> = files.iter().map(|(path, bytes)| (path.as_str(), bytes.as_slice())).collect();
        Chart { name: name.to_string(), bytes: gzip(&tar_of(&entries)) }
    }

    /// `<name>-<version>.tgz`, as `helm package` names it.
    pub fn file_name(&self) -> String {
        format!("{}-{}.tgz", self.name, Chart::VERSION)
    }

    /// A chart manifest holding this chart as a layer.
    pub(crate) fn expectation(&self) -> Expectation {
        Expectation::Layer { digest: digest(&self.bytes), config_media_type: Some(Chart::CONFIG_MEDIA_TYPE) }
    }
}

/// What the manifest fetched back after a push must show to be what the tool was given.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum Expectation {
    /// Any manifest: the tool built or re-packed the image (ko's build, crane's tarball).
    #[default]
    Any,
    /// A layer with exactly the payload's bytes (a file artifact, a chart), and the config's
    /// media type where the tool's format fixes one.
    Layer { digest: String, config_media_type: Option<&'static str> },
    /// A manifest about the image `image` (a digest): its `subject`, or a small layer naming
    /// it (cosign's signature payload names the signed digest in
    /// `critical.image.docker-manifest-digest`).
    RefersTo { image: String },
}

/// Layers larger than this are not read for the image's digest (signature payloads are tiny).
const REFERRING_LAYER_LIMIT: u64 = 64 * 1024;

impl Expectation {
    /// The file artifact's: a layer holding [`Payload::ARTIFACT_TEXT`].
    pub(crate) fn artifact_file() -> Expectation {
        Expectation::Layer { digest: digest(Payload::ARTIFACT_TEXT.as_bytes()), config_media_type: None }
    }

    /// Checks `manifest` (its bytes as fetched back); `blob` fetches a blob of its repository.
    pub(crate) async fn check<F, Fut>(&self, manifest: &[u8], blob: F) -> Result<(), NotFetched>
    where
        F: Fn(String) -> Fut,
        Fut: Future<Output = Result<Vec<u8>, NotFetched>>,
    {
        if *self == Expectation::Any {
            return Ok(());
        }
        let parsed: serde_json::Value = serde_json::from_slice(manifest)
            .map_err(|e| NotFetched::Missing(format!("the manifest fetched back is not JSON: {e}")))?;
        let layers: Vec<(&str, u64)> = parsed["layers"]
            .as_array()
            .map(|layers| {
                layers.iter().filter_map(|l| Some((l["digest"].as_str()?, l["size"].as_u64().unwrap_or(0)))).collect()
            })
            .unwrap_or_default();
        let listed = || layers.iter().map(|(d, _)| *d).collect::<Vec<_>>().join(", ");
        match self {
            Expectation::Any => Ok(()),
            Expectation::Layer { digest, config_media_type } => {
                let config = parsed["config"]["mediaType"].as_str().unwrap_or("(none)");
                if let Some(want) = config_media_type.filter(|want| *want != config) {
                    return Err(NotFetched::Missing(format!(
                        "the manifest fetched back has config media type {config}, not {want}"
                    )));
                }
                match layers.iter().any(|(d, _)| d == digest) {
                    true => Ok(()),
                    false => Err(NotFetched::Missing(format!(
                        "the manifest fetched back has no layer {digest} (the payload the tool was given); layers: {}",
                        listed()
                    ))),
                }
            }
            Expectation::RefersTo { image } => {
                if parsed["subject"]["digest"].as_str() == Some(image.as_str()) {
                    return Ok(());
                }
                for (layer, _) in layers.iter().filter(|(_, size)| *size <= REFERRING_LAYER_LIMIT) {
                    if String::from_utf8_lossy(&blob(layer.to_string()).await?).contains(image.as_str()) {
                        return Ok(());
                    }
                }
                Err(NotFetched::Missing(format!(
                    "the manifest fetched back does not refer to {image} (no subject, no layer naming it; layers: {})",
                    listed()
                )))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_image_tarball_is_docker_save_format() {
        let bytes = image_tarball();
        assert_eq!(bytes, image_tarball(), "deterministic");
        let files = entries(bytes.as_slice());
        let manifest: serde_json::Value = serde_json::from_slice(&files["manifest.json"]).unwrap();
        let config_name = manifest[0]["Config"].as_str().unwrap();
        let config: serde_json::Value = serde_json::from_slice(&files[config_name]).unwrap();
        assert_eq!(config["rootfs"]["diff_ids"][0], digest(&files["layer.tar"]), "the config names the layer it ships");
        assert_eq!(format!("sha256:{}", config_name.trim_end_matches(".json")), digest(&files[config_name]));
    }

    /// A tar's files by path.
    fn entries(tar: impl std::io::Read) -> std::collections::BTreeMap<String, Vec<u8>> {
        let mut archive = tar::Archive::new(tar);
        let mut files = std::collections::BTreeMap::new();
        for entry in archive.entries().unwrap() {
            let mut entry = entry.unwrap();
            let mut content = Vec::new();
            std::io::Read::read_to_end(&mut entry, &mut content).unwrap();
            files.insert(entry.path().unwrap().display().to_string(), content);
        }
        files
    }

    #[test]
    fn a_chart_is_a_gzipped_tar_of_its_directory() {
        let chart = Chart::named("v3.13.3");
        assert_eq!(chart.bytes, Chart::named("v3.13.3").bytes, "deterministic");
        assert_eq!(chart.file_name(), "v3.13.3-0.1.0.tgz");
        let files = entries(flate2::read::GzDecoder::new(chart.bytes.as_slice()));
        assert_eq!(
            files.keys().collect::<Vec<_>>(),
            ["v3.13.3/Chart.yaml", "v3.13.3/templates/configmap.yaml", "v3.13.3/values.yaml"]
        );
        let chart_yaml = String::from_utf8_lossy(&files["v3.13.3/Chart.yaml"]);
        assert!(chart_yaml.contains("name: \"v3.13.3\"\n"), "quoted: a YAML string whatever the name");
        assert!(chart_yaml.contains("version: 0.1.0\n"));
    }

    fn block_on<F: Future>(future: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().unwrap().block_on(future)
    }

    #[test]
    fn what_comes_back_is_checked_against_what_was_given() {
        let no_blobs = |d: String| async move { Err(NotFetched::Missing(format!("no blob {d}"))) };
        let chart = Chart::named("app");
        let manifest = |config: &str, layer: &str| {
            serde_json::to_vec(&json!({
                "config": { "mediaType": config, "digest": "sha256:c", "size": 2 },
                "layers": [{ "mediaType": "x", "digest": layer, "size": 10 }],
            }))
            .unwrap()
        };
        let expect = chart.expectation();
        let ok = manifest(Chart::CONFIG_MEDIA_TYPE, &digest(&chart.bytes));
        assert_eq!(block_on(expect.check(&ok, no_blobs)), Ok(()));
        let other_layer = manifest(Chart::CONFIG_MEDIA_TYPE, "sha256:00");
        assert!(
            matches!(block_on(expect.check(&other_layer, no_blobs)), Err(NotFetched::Missing(m)) if m.contains("has no layer"))
        );
        let not_a_chart = manifest("application/vnd.oci.image.config.v1+json", &digest(&chart.bytes));
        assert!(
            matches!(block_on(expect.check(&not_a_chart, no_blobs)), Err(NotFetched::Missing(m)) if m.contains("config media type"))
        );

        let file = Expectation::artifact_file();
        let artifact = manifest("application/vnd.unknown.config.v1+json", &digest(Payload::ARTIFACT_TEXT.as_bytes()));
        assert_eq!(block_on(file.check(&artifact, no_blobs)), Ok(()), "any config for a file artifact");

        let image = format!("sha256:{}", "e".repeat(64));
        let refers = Expectation::RefersTo { image: image.clone() };
        let signature = manifest("application/vnd.oci.image.config.v1+json", "sha256:5e");
        let payload = format!(r#"{{"critical":{{"image":{{"docker-manifest-digest":"{image}"}}}}}}"#);
        let with_payload = |d: String| {
            let payload = payload.clone();
            async move {
                if d == "sha256:5e" {
                    Ok(payload.into_bytes())
                } else {
                    Err(NotFetched::Missing(d))
                }
            }
        };
        assert_eq!(block_on(refers.check(&signature, with_payload)), Ok(()));
        let unrelated = |_: String| async move { Ok(b"{}".to_vec()) };
        assert!(
            matches!(block_on(refers.check(&signature, unrelated)), Err(NotFetched::Missing(m)) if m.contains("does not refer"))
        );
        let subject = serde_json::to_vec(&json!({ "subject": { "digest": image }, "layers": [] })).unwrap();
        assert_eq!(block_on(refers.check(&subject, no_blobs)), Ok(()), "an OCI referrer by its subject");
        assert_eq!(block_on(Expectation::Any.check(b"not json", no_blobs)), Ok(()));
    }
}
