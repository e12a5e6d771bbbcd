//! Blob downloads as hosted registries serve them: a `GET` of a layer or config that the
//! registry would answer with the bytes is answered `307 Temporary Redirect` to the vendor's
//! object store ([`crate::storage`]), which then serves them. Per session, so a caller turns it on
//! for the clients that meet the vendor (ko-matrix: a scenario's `[target] redirects`).
//!
//! `HEAD` is answered by the registry itself: whether ECR, Docker Hub or ghcr.io redirect a
//! `HEAD` is unconfirmed (`registry-shapes-reference.md` §1.2), and Quay answers it directly.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use super::Backend;
use crate::storage::{Storage, Store, ARTIFACT_DOWNLOADS};
use crate::wire::{full, Body};

/// The largest blob the gateway hands to an object store (the run's layers are a few MB).
const BLOB_LIMIT: usize = 512 << 20;

/// One registry's redirects in a session: its hosts, and the store their blobs go to.
#[derive(Clone)]
pub struct BlobRedirect {
    /// The registry's host names (`registry-1.docker.io`, `index.docker.io`).
    pub hosts: Vec<String>,
    pub store: Store,
    pub storage: Arc<Storage>,
}

impl BlobRedirect {
    fn serves(&self, host: &str) -> bool {
        self.hosts.iter().any(|h| h.eq_ignore_ascii_case(host))
    }
}

/// `(repository, digest)` of `/v2/<repository>/blobs/sha256:<hex>`, not of an upload.
fn blob_of(path: &str) -> Option<(&str, &str)> {
    let path = path.split('?').next()?.strip_prefix("/v2/")?;
    let (repository, digest) = path.rsplit_once("/blobs/")?;
    let hex = digest.strip_prefix("sha256:")?;
    (hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit())).then_some((repository, digest))
}

/// A session's redirects.
#[derive(Default, Clone)]
pub(crate) struct Redirects(Arc<std::sync::RwLock<Vec<BlobRedirect>>>);

impl Redirects {
    pub(crate) fn add(&self, redirect: BlobRedirect) {
        self.0.write().expect("redirects lock").push(redirect);
    }

    fn find(&self, host: &str) -> Option<BlobRedirect> {
        self.0.read().expect("redirects lock").iter().find(|r| r.serves(host)).cloned()
    }

    /// Where a request on a registry's own host goes when it is its store's (Artifact
    /// Registry's download path), instead of the registry.
    pub(crate) fn store_backend(&self, host: &str, path: &str) -> Option<Backend> {
        let redirect = self.find(host).filter(|r| r.store == Store::ArtifactRegistry)?;
        path.starts_with(ARTIFACT_DOWNLOADS).then(|| redirect.storage.backend())
    }

    /// The registry's answer `response` to `method host path`, as the vendor sends it: a blob it
    /// serves becomes a redirect to its store (with the note the record carries).
    pub(crate) async fn answer(
        &self,
        host: &str,
        method: &str,
        path: &str,
        response: Response<Incoming>,
    ) -> (Response<Body>, Option<String>) {
        let redirect = self.find(host).filter(|_| method == "GET" && response.status() == StatusCode::OK);
        let (Some(redirect), Some((repository, digest))) = (redirect, blob_of(path)) else {
            return (response.map(|b| b.boxed()), None);
        };
        let (parts, body) = response.into_parts();
        let bytes = match http_body_util::Limited::new(body, BLOB_LIMIT).collect().await {
            Ok(collected) => collected.to_bytes(),
            Err(e) => {
                let note = format!("the registry's blob could not be read for its store: {e}");
                let mut failed = Response::new(full(Bytes::new()));
                *failed.status_mut() = StatusCode::BAD_GATEWAY;
                return (failed, Some(note));
            }
        };
        let now = time::OffsetDateTime::now_utc();
        let location = redirect.storage.redirect(&redirect.store, host, repository, digest, bytes, now);
        let mut answer = Response::new(full(Bytes::new()));
        *answer.status_mut() = StatusCode::TEMPORARY_REDIRECT;
        let headers = answer.headers_mut();
        headers.insert("location", HeaderValue::from_str(&location).expect("a store URL is a valid header"));
        headers.insert("content-type", HeaderValue::from_static("application/octet-stream"));
        if let Some(version) = parts.headers.get("docker-distribution-api-version") {
            headers.insert("docker-distribution-api-version", version.clone());
        }
        let to = location.split_once("://").map_or(host, |(_, rest)| rest.split('/').next().unwrap_or(host));
        (answer, Some(format!("blob redirected to {to}")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_blob_downloads_are_blobs() {
        let hex = "a".repeat(64);
        assert_eq!(blob_of(&format!("/v2/o/app/blobs/sha256:{hex}")), Some(("o/app", &*format!("sha256:{hex}"))));
        assert_eq!(blob_of("/v2/o/app/blobs/uploads/"), None);
        assert_eq!(blob_of(&format!("/v2/o/app/manifests/sha256:{hex}")), None);
        assert_eq!(blob_of("/v2/o/app/blobs/sha256:abc"), None);
    }
}
