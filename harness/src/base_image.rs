//! The base image ko builds on: a minimal, valid OCI image index (linux/amd64 and
//! linux/arm64, one small layer each), made here and pushed to an anonymous loopback
//! registry that ko reaches over plain HTTP (go-containerregistry uses HTTP for loopback).

use std::io::Write;

use serde_json::json;
use sha2::{Digest, Sha256};

pub(crate) const INDEX_MEDIA_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub(crate) const MANIFEST_MEDIA_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
const CONFIG_MEDIA_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const LAYER_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// The repository the base image is pushed to.
pub(crate) const BASE_REPOSITORY: &str = "ko-matrix/base";

#[derive(Debug, thiserror::Error)]
pub enum BaseImageError {
    #[error("pushing the base image to {url} failed: {detail}")]
    Push { url: String, detail: String },
}

/// A content-addressed blob.
pub(crate) struct Blob {
    pub media_type: &'static str,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &'static str, bytes: Vec<u8>) -> Blob {
        Blob { media_type, bytes }
    }

    pub fn digest(&self) -> String {
        digest(&self.bytes)
    }

    fn descriptor(&self) -> serde_json::Value {
        json!({ "mediaType": self.media_type, "digest": self.digest(), "size": self.bytes.len() })
    }
}

pub fn digest(bytes: &[u8]) -> String {
    format!("sha256:{}", hex::encode(Sha256::digest(bytes)))
}

/// The image, ready to push: layers and configs, per-platform manifests, the index.
pub(crate) struct BaseImage {
    pub blobs: Vec<Blob>,
    pub manifests: Vec<Blob>,
    pub index: Blob,
}

/// The tag an image is pushed under ([`BaseImage::push_with`]).
pub(crate) const TAG: &str = "latest";

impl BaseImage {
    pub fn build() -> BaseImage {
        BaseImage::of(|arch| vec![layer_tar(arch)])
    }

    /// The image a copy's source holds: an index of the same two platforms, each of three
    /// layers — one both share (a tool may mount or skip it the second time), one of its
    /// platform's, and an application layer — so a copy moves several blobs per manifest.
    pub fn copy_source() -> BaseImage {
        BaseImage::of(|arch| {
            vec![
                one_file_tar("etc/ko-matrix-shared", "a layer both platforms of the copied image share\n"),
                one_file_tar("etc/ko-matrix-platform", &format!("the copied image's linux/{arch} layer\n")),
                tar_of(&[("app/README", format!("copied by ko-matrix for linux/{arch}\n").as_bytes())]),
            ]
        })
    }

    /// An index of linux/amd64 and linux/arm64 images whose layers (tars) `layers` makes.
    fn of(layers: impl Fn(&str) -> Vec<Vec<u8>>) -> BaseImage {
        let mut blobs = Vec::new();
        let mut manifests = Vec::new();
        let mut entries = Vec::new();
        for arch in ["amd64", "arm64"] {
            let tars = layers(arch);
            let diff_ids: Vec<String> = tars.iter().map(|tar| digest(tar)).collect();
            let layers: Vec<Blob> = tars.iter().map(|tar| Blob::new(LAYER_MEDIA_TYPE, gzip(tar))).collect();
            let config = Blob::new(
                CONFIG_MEDIA_TYPE,
                serde_json::to_vec(&json!({
                    "architecture": arch,
                    "os": "linux",
                    "config": { "Env": ["PATH=/usr/local/bin:/usr/bin:/bin"] },
                    "rootfs": { "type": "layers", "diff_ids": diff_ids },
                    "history": [{ "created_by": "ko-matrix base image" }],
                }))
                .expect("config serialises"),
            );
            let manifest = Blob::new(
                MANIFEST_MEDIA_TYPE,
                serde_json::to_vec(&json!({
                    "schemaVersion": 2,
                    "mediaType": MANIFEST_MEDIA_TYPE,
                    "config": config.descriptor(),
                    "layers": layers.iter().map(Blob::descriptor).collect::<Vec<_>>(),
                }))
                .expect("manifest serialises"),
            );
            let mut entry = manifest.descriptor();
            entry["platform"] = json!({ "architecture": arch, "os": "linux" });
            entries.push(entry);
            blobs.extend(layers);
            blobs.push(config);
            manifests.push(manifest);
        }
        let index = Blob::new(
            INDEX_MEDIA_TYPE,
            serde_json::to_vec(&json!({ "schemaVersion": 2, "mediaType": INDEX_MEDIA_TYPE, "manifests": entries }))
                .expect("index serialises"),
        );
        BaseImage { blobs, manifests, index }
    }

    /// Pushes everything to `registry` (`http://127.0.0.1:port`) and returns the reference
    /// ko should use, pinned by digest.
    pub async fn push(&self, client: &reqwest::Client, registry: &str) -> Result<String, BaseImageError> {
        self.push_as(client, registry, BASE_REPOSITORY).await?;
        let host = registry.trim_start_matches("http://").trim_start_matches("https://");
        Ok(format!("{host}/{BASE_REPOSITORY}@{}", self.index.digest()))
    }

    /// Pushes everything to `repository` in `registry`; returns the index's digest.
    pub(crate) async fn push_as(
        &self,
        client: &reqwest::Client,
        registry: &str,
        repository: &str,
    ) -> Result<String, BaseImageError> {
        self.push_with(client, registry, repository, &|request| request).await
    }

    /// Like [`Self::push_as`], each request passed through `decorate` first (credentials, a
    /// `Host` header).
    pub(crate) async fn push_with(
        &self,
        client: &reqwest::Client,
        registry: &str,
        repository: &str,
        decorate: &Decorate<'_>,
    ) -> Result<String, BaseImageError> {
        let to = Destination { client, registry, repository, decorate };
        for blob in &self.blobs {
            to.push_blob(blob).await?;
        }
        for manifest in &self.manifests {
            to.put_manifest(&manifest.digest(), manifest).await?;
        }
        to.put_manifest(TAG, &self.index).await?;
        Ok(self.index.digest())
    }

    /// Every blob the image's manifests name (configs and layers), each once, in order.
    pub(crate) fn blob_digests(&self) -> Vec<String> {
        let mut digests: Vec<String> = Vec::new();
        for blob in &self.blobs {
            if !digests.contains(&blob.digest()) {
                digests.push(blob.digest());
            }
        }
        digests
    }
}

fn layer_tar(arch: &str) -> Vec<u8> {
    one_file_tar("etc/ko-matrix-base", &format!("ko-matrix base image for linux/{arch}\n"))
}

/// A tar holding one file: an image layer.
pub(crate) fn one_file_tar(path: &str, text: &str) -> Vec<u8> {
    tar_of(&[(path, text.as_bytes())])
}

/// A tar of `files` (path, contents), the same bytes every time (no times, no owners).
pub(crate) fn tar_of(files: &[(&str, &[u8])]) -> Vec<u8> {
    let mut tar = tar::Builder::new(Vec::new());
    for (path, bytes) in files {
        let mut header = tar::Header::new_gnu();
        header.set_size(bytes.len() as u64);
        header.set_mode(0o644);
        header.set_mtime(0);
        header.set_cksum();
        tar.append_data(&mut header, path, *bytes).expect("writing to memory");
    }
    tar.into_inner().expect("writing to memory")
}

pub(crate) fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut gz = flate2::GzBuilder::new().mtime(0).write(Vec::new(), flate2::Compression::default());
    gz.write_all(bytes).expect("writing to memory");
    gz.finish().expect("writing to memory")
}

fn push_err(url: &str, detail: impl std::fmt::Display) -> BaseImageError {
    BaseImageError::Push { url: url.to_string(), detail: detail.to_string() }
}

/// What every request of a push goes through (credentials, a `Host` header).
pub(crate) type Decorate<'a> = dyn Fn(reqwest::RequestBuilder) -> reqwest::RequestBuilder + Send + Sync + 'a;

/// A repository pushed to: the client, the registry's origin, and how requests are decorated.
struct Destination<'a> {
    client: &'a reqwest::Client,
    registry: &'a str,
    repository: &'a str,
    decorate: &'a Decorate<'a>,
}

impl Destination<'_> {
    async fn push_blob(&self, blob: &Blob) -> Result<(), BaseImageError> {
        let (registry, repository) = (self.registry, self.repository);
        let start = format!("{registry}/v2/{repository}/blobs/uploads/");
        let response = (self.decorate)(self.client.post(&start)).send().await.map_err(|e| push_err(&start, e))?;
        if response.status() != reqwest::StatusCode::ACCEPTED {
            return Err(push_err(&start, format!("HTTP {}", response.status())));
        }
        let location = response
            .headers()
            .get("location")
            .and_then(|l| l.to_str().ok())
            .ok_or_else(|| push_err(&start, "no Location header"))?;
        // The backend may name itself otherwise (the Host it was sent): keep only the path.
        let base = reqwest::Url::parse(registry).map_err(|e| push_err(&start, e))?;
        let named = base.join(location).map_err(|e| push_err(&start, e))?;
        let mut upload = base.join(named.path()).map_err(|e| push_err(&start, e))?;
        upload.set_query(named.query());
        upload.query_pairs_mut().append_pair("digest", &blob.digest());
        let request =
            self.client.put(upload.clone()).header("content-type", "application/octet-stream").body(blob.bytes.clone());
        let response = (self.decorate)(request).send().await.map_err(|e| push_err(upload.as_str(), e))?;
        if response.status() != reqwest::StatusCode::CREATED {
            return Err(push_err(upload.as_str(), format!("HTTP {}", response.status())));
        }
        Ok(())
    }

    async fn put_manifest(&self, reference: &str, manifest: &Blob) -> Result<(), BaseImageError> {
        let url = format!("{}/v2/{}/manifests/{reference}", self.registry, self.repository);
        let request = self.client.put(&url).header("content-type", manifest.media_type).body(manifest.bytes.clone());
        let response = (self.decorate)(request).send().await.map_err(|e| push_err(&url, e))?;
        if response.status() != reqwest::StatusCode::CREATED {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            return Err(push_err(&url, format!("HTTP {status}: {body}")));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_references_both_platforms_by_digest() {
        let image = BaseImage::build();
        let index: serde_json::Value = serde_json::from_slice(&image.index.bytes).unwrap();
        let manifests = index["manifests"].as_array().unwrap();
        assert_eq!(manifests.len(), 2);
        for (entry, manifest) in manifests.iter().zip(&image.manifests) {
            assert_eq!(entry["digest"], manifest.digest());
            assert_eq!(entry["size"], manifest.bytes.len());
        }
        assert_eq!(manifests[1]["platform"]["architecture"], "arm64");
        // Deterministic: the same bytes every run, so the digest is stable.
        assert_eq!(BaseImage::build().index.digest(), image.index.digest());
    }

    #[test]
    fn the_copied_image_has_several_layers_one_shared_by_both_platforms() {
        let image = BaseImage::copy_source();
        let layers = |i: usize| -> Vec<String> {
            let manifest: serde_json::Value = serde_json::from_slice(&image.manifests[i].bytes).unwrap();
            manifest["layers"].as_array().unwrap().iter().map(|l| l["digest"].as_str().unwrap().to_string()).collect()
        };
        let (amd64, arm64) = (layers(0), layers(1));
        assert_eq!((amd64.len(), arm64.len()), (3, 3));
        assert_eq!(amd64[0], arm64[0], "the first layer is shared");
        assert_ne!(amd64[1], arm64[1]);
        // 5 distinct layers and 2 configs.
        assert_eq!(image.blob_digests().len(), 7);
        assert_ne!(image.index.digest(), BaseImage::build().index.digest());
    }
}
