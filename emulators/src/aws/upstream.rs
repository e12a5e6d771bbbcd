//! The upstream registry ECR's pull through cache reads from, inside the emulated world: an
//! emulated Amazon ECR Public (`public.ecr.aws`) whose one repository, `ko-matrix/base`, the
//! caller fills with the run's base image ([`crate::vendor::WorldPart::public_image`]). It
//! lives in the ECR backend registry below `upstream/`, so importing an image into a cell's
//! repository is a copy inside one distribution registry: blobs mounted, manifests copied.
//! Nothing is ever fetched from the internet.

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Method, Request, StatusCode};
use serde_json::Value;

use crate::registry_front::Backend;
use crate::wire::full;

/// The upstream registry the emulated world holds images of.
pub const PUBLIC_ECR: &str = "public.ecr.aws";
/// Its one repository: the run's base image.
pub const PUBLIC_BASE: &str = "ko-matrix/base";

/// Whether the world holds images of upstream registry `url`.
pub fn held(url: &str) -> bool {
    url == PUBLIC_ECR
}

/// Where upstream `url`'s `repository` lives in the ECR backend registry.
pub fn backend_repository(url: &str, repository: &str) -> String {
    format!("upstream/{url}/{repository}")
}

/// Why a copy failed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum CopyError {
    /// The source has no such manifest.
    #[error("{0} answered 404")]
    NotFound(String),
    /// The backend registry failed: the emulated world's fault, not the client's.
    #[error("{0}")]
    Backend(String),
}

/// A manifest the copy wrote.
pub(crate) struct Copied {
    pub digest: String,
    pub media_type: String,
    pub manifest: Bytes,
}

async fn send(
    backend: &Backend,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Bytes,
) -> Result<(StatusCode, hyper::HeaderMap, Bytes), CopyError> {
    let uri = format!("http://{}{path}", backend.addr);
    let mut req = Request::builder().method(method.clone()).uri(&uri);
    for (name, value) in headers {
        req = req.header(*name, *value);
    }
    let req = req.body(full(body)).map_err(|e| CopyError::Backend(format!("{method} {uri}: {e}")))?;
    let response =
        backend.client().request(req).await.map_err(|e| CopyError::Backend(format!("{method} {uri}: {e}")))?;
    let (parts, body) = response.into_parts();
    let body = body.collect().await.map_err(|e| CopyError::Backend(format!("{method} {uri}: {e}")))?.to_bytes();
    if parts.status.is_server_error() {
        return Err(CopyError::Backend(format!("{method} {uri} answered {}", parts.status)));
    }
    Ok((parts.status, parts.headers, body))
}

/// Copies the manifest `reference` of backend repository `from` (for an index, every child
/// too) into `to`, under `tag` when given; returns every manifest written, the top one first.
pub(crate) async fn copy(
    backend: &Backend,
    from: &str,
    to: &str,
    reference: &str,
    tag: Option<&str>,
) -> Result<Vec<Copied>, CopyError> {
    let mut copied = Vec::new();
    let mut pending = vec![(reference.to_string(), tag.map(str::to_string))];
    while let Some((reference, tag)) = pending.pop() {
        let path = format!("/v2/{from}/manifests/{reference}");
        let (status, headers, manifest) =
            send(backend, Method::GET, &path, &[("accept", super::ecr_registry::MANIFEST_TYPES)], Bytes::new()).await?;
        if status == StatusCode::NOT_FOUND {
            return Err(CopyError::NotFound(format!("GET {path}")));
        }
        let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let (media_type, digest) = (header("content-type"), header("docker-content-digest"));
        let parsed: Value = serde_json::from_slice(&manifest).unwrap_or_default();
        let blobs = parsed["layers"].as_array().into_iter().flatten().chain([&parsed["config"]]);
        for blob in blobs.filter_map(|d| d["digest"].as_str()) {
            let mount = format!("/v2/{to}/blobs/uploads/?mount={blob}&from={from}");
            let (status, _, _) = send(backend, Method::POST, &mount, &[], Bytes::new()).await?;
            if status != StatusCode::CREATED {
                return Err(CopyError::Backend(format!("POST {mount} answered {status}, not a mount")));
            }
        }
        // Children before their index: a registry may check that an index's manifests exist.
        let children: Vec<String> = parsed["manifests"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|m| m["digest"].as_str().map(str::to_string))
            .filter(|d| !copied.iter().any(|c: &Copied| &c.digest == d))
            .collect();
        if !children.is_empty() {
            pending.push((reference, tag));
            pending.extend(children.into_iter().map(|d| (d, None)));
            continue;
        }
        let put = format!("/v2/{to}/manifests/{}", tag.as_deref().unwrap_or(&digest));
        let (status, _, body) =
            send(backend, Method::PUT, &put, &[("content-type", &media_type)], manifest.clone()).await?;
        if status != StatusCode::CREATED {
            return Err(CopyError::Backend(format!("PUT {put} answered {status}: {}", String::from_utf8_lossy(&body))));
        }
        copied.push(Copied { digest, media_type, manifest });
    }
    copied.reverse();
    Ok(copied)
}
