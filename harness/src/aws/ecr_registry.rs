//! The ECR registry front (`<account>.dkr.ecr.<region>.amazonaws.com`): ECR's Basic
//! challenge, `AWS:<password>` checked against the passwords GetAuthorizationToken minted,
//! ECR's wording for expired tokens and missing repositories (ECR does not create
//! repositories on push), then the real work forwarded to a distribution registry.

use std::collections::BTreeSet;
use std::sync::Arc;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::iam;
use crate::gateway::{error_chain, INFRA_HEADER};
use super::state::{AwsCell, ImageRecord, RegistryPassword};
use super::{full, Body, Emulator};

pub(crate) const MANIFEST_TYPES: &str = "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

fn distribution_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = json!({ "errors": [{ "code": code, "message": message }] });
    let mut response = Response::new(full(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", "application/json; charset=utf-8".parse().expect("static header"));
    response.headers_mut().insert("docker-distribution-api-version", "registry/2.0".parse().expect("static header"));
    response
}

/// ECR's answer to a request without credentials.
fn challenge(host: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(b"Not Authorized\n")));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert("docker-distribution-api-version", "registry/2.0".parse().expect("static header"));
    headers.insert("www-authenticate", format!("Basic realm=\"https://{host}/\",service=\"ecr.amazonaws.com\"").parse().expect("valid header"));
    headers.insert("content-type", "text/plain; charset=utf-8".parse().expect("static header"));
    response
}

/// Splits `/v2/<name>/<kind>/<rest>` into the repository name and the rest.
fn split_repository(path: &str) -> Option<(&str, &str)> {
    let inner = path.strip_prefix("/v2/")?;
    ["/blobs/", "/manifests/", "/tags/", "/referrers/"].iter().filter_map(|marker| inner.find(marker).map(|at| (&inner[..at], &inner[at..]))).min_by_key(|(name, _)| name.len())
}

/// Checks `Authorization: Basic AWS:<password>`; `Err` is the response to send.
fn check_credentials(cell: Option<&AwsCell>, host: &str, account: &str, region: &str, req: &Request<Incoming>) -> Result<RegistryPassword, Response<Body>> {
    let Some(value) = req.headers().get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(challenge(host));
    };
    let decoded = value
        .strip_prefix("Basic ")
        .and_then(|b| base64::engine::general_purpose::STANDARD.decode(b.trim()).ok())
        .and_then(|b| String::from_utf8(b).ok());
    let Some((user, password)) = decoded.as_deref().and_then(|d| d.split_once(':')) else {
        return Err(challenge(host));
    };
    // Private ECR's answer to an unknown token is not documented; ECR Public's wording is.
    let invalid = || distribution_error(StatusCode::FORBIDDEN, "DENIED", "Your authorization token is invalid.");
    let issued = cell.and_then(|c| c.password(password)).ok_or_else(invalid)?;
    if user != "AWS" || issued.account != account || issued.region != region {
        return Err(invalid());
    }
    if issued.expires <= OffsetDateTime::now_utc() {
        return Err(distribution_error(StatusCode::FORBIDDEN, "DENIED", "Your authorization token has expired. Reauthenticate and try again."));
    }
    Ok(issued)
}

pub(crate) async fn handle(emulator: &Emulator, cell: Option<Arc<AwsCell>>, host: &str, account: &str, region: &str, req: Request<Incoming>) -> Response<Body> {
    let issued = match check_credentials(cell.as_deref(), host, account, region, &req) {
        Ok(issued) => issued,
        Err(response) => return response,
    };
    let cell = cell.expect("valid credentials belong to a cell");
    let path = req.uri().path().to_string();
    if path == "/v2/" || path == "/v2" {
        let mut response = Response::new(full(Bytes::from_static(b"{}")));
        response.headers_mut().insert("docker-distribution-api-version", "registry/2.0".parse().expect("static header"));
        return response;
    }
    let Some((repository, rest)) = split_repository(&path) else {
        return distribution_error(StatusCode::NOT_FOUND, "NOT_FOUND", "The requested resource was not found");
    };
    let repository = repository.to_string();
    let action = iam::registry_action(req.method().as_str(), rest);
    if !iam::allows(&issued.allow, action) {
        let message = iam::denial(&issued.arn, action, &format!("arn:aws:ecr:{region}:{account}:repository/{repository}"));
        cell.record_denial(message.clone());
        return distribution_error(StatusCode::FORBIDDEN, "DENIED", &message);
    }
    if !cell.repositories.lock().expect("repositories lock").contains_key(&repository) {
        let message = format!("The repository with name '{repository}' does not exist in the registry with id '{account}'");
        return distribution_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message);
    }
    forward(emulator, &cell, &repository, rest, req).await
}

/// Sends the request to the backend under the cell's prefix and maps the answer back.
async fn forward(emulator: &Emulator, cell: &AwsCell, repository: &str, rest: &str, req: Request<Incoming>) -> Response<Body> {
    let backend_repository = format!("{}/{repository}", cell.backend_prefix);
    // Cross-repository mounting is off unless a registry enables BLOB_MOUNTING: drop the
    // mount request so the backend opens a normal upload, as ECR does.
    let query: Vec<&str> = req.uri().query().unwrap_or("").split('&').filter(|p| !p.is_empty() && !p.starts_with("mount=") && !p.starts_with("from=")).collect();
    let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
    let uri = format!("http://{}/v2/{backend_repository}{rest}{query}", emulator.backend);
    let (mut parts, body) = req.into_parts();
    let method = parts.method.clone();
    let is_manifest_put = method == Method::PUT && rest.starts_with("/manifests/");
    parts.uri = uri.parse().expect("a loopback URI parses");
    parts.headers.remove("authorization");
    parts.headers.insert("x-forwarded-proto", "https".parse().expect("static header"));
    let (body, manifest): (Body, Option<Bytes>) = if is_manifest_put {
        match Limited::new(body, 16 << 20).collect().await {
            Ok(collected) => {
                let bytes = collected.to_bytes();
                (full(bytes.clone()), Some(bytes))
            }
            Err(_) => return distribution_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest too large"),
        }
    } else {
        (body.boxed(), None)
    };
    let content_type = parts.headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
    let response = match emulator.client.request(Request::from_parts(parts, body)).await {
        Ok(response) => response,
        Err(e) => {
            let mut response = distribution_error(StatusCode::BAD_GATEWAY, "UNAVAILABLE", &format!("ko-matrix: the backend registry failed: {e}"));
            mark_infra(&mut response, format!("ECR front backend {} unreachable: {}", emulator.backend, error_chain(&e)));
            return response;
        }
    };
    let (mut parts, body) = response.into_parts();
    // The backend is the harness's own registry: a server error there is the harness's fault.
    if parts.status.is_server_error() {
        let what = format!("ECR front backend {} answered {}", emulator.backend, parts.status);
        let mut response = Response::from_parts(parts, body.boxed());
        mark_infra(&mut response, what);
        return response;
    }
    // The backend's layout (the cell's prefix) must not show: URLs it names, and the name
    // in a tag list, are the repository's as the client named it.
    for header in ["location", "link"] {
        if let Some(value) = parts.headers.get(header).and_then(|v| v.to_str().ok()) {
            let mapped = value.replace(&format!("/v2/{backend_repository}/"), &format!("/v2/{repository}/"));
            parts.headers.insert(header, mapped.parse().expect("a rewritten URL header is a valid header"));
        }
    }
    if method == Method::GET && rest.starts_with("/tags/list") && parts.status.is_success() {
        return match Limited::new(body, 16 << 20).collect().await {
            Ok(collected) => {
                let listed = tag_list_as_named(&collected.to_bytes(), repository);
                parts.headers.insert("content-length", listed.len().into());
                Response::from_parts(parts, full(listed))
            }
            Err(e) => {
                let mut response = distribution_error(StatusCode::BAD_GATEWAY, "UNAVAILABLE", "ko-matrix: the backend's tag list could not be read");
                mark_infra(&mut response, format!("ECR front backend {} sent an unreadable tag list: {e}", emulator.backend));
                response
            }
        };
    }
    // ECR answers an upload PATCH with 201 where distribution says 202.
    if method == Method::PATCH && parts.status == StatusCode::ACCEPTED {
        parts.status = StatusCode::CREATED;
    }
    if let (Some(manifest), true) = (manifest, parts.status == StatusCode::CREATED) {
        let digest = parts.headers.get("docker-content-digest").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let reference = rest.trim_start_matches("/manifests/");
        record_image(cell, repository, &digest, reference, &content_type, &manifest);
    }
    Response::from_parts(parts, body.boxed())
}

/// A backend tag list (`{"name":"cell-3/app","tags":[…]}`) as ECR answers it: under the
/// repository's own name. A body that is not a tag list passes unchanged.
fn tag_list_as_named(body: &[u8], repository: &str) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut list) if list.get("name").is_some() => {
            list["name"] = json!(repository);
            Bytes::from(list.to_string())
        }
        _ => Bytes::copy_from_slice(body),
    }
}

/// Tells the gateway that this answer comes from the harness's failure (see [`INFRA_HEADER`]).
fn mark_infra(response: &mut Response<Body>, what: String) {
    let value = hyper::header::HeaderValue::from_str(&what.replace(['\r', '\n'], " ")).unwrap_or_else(|_| hyper::header::HeaderValue::from_static("ECR front backend failed"));
    response.headers_mut().insert(INFRA_HEADER, value);
}

/// Remembers a pushed manifest for DescribeImages / ListImages / BatchGetImage.
fn record_image(cell: &AwsCell, repository: &str, digest: &str, reference: &str, media_type: &str, manifest: &[u8]) {
    let parsed: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
    let layers: u64 = parsed["layers"].as_array().map_or(0, |l| l.iter().filter_map(|d| d["size"].as_u64()).sum());
    let size = if layers > 0 { layers + parsed["config"]["size"].as_u64().unwrap_or(0) } else { manifest.len() as u64 };
    let mut repos = cell.repositories.lock().expect("repositories lock");
    let Some(repo) = repos.get_mut(repository) else { return };
    let tag = (!reference.starts_with("sha256:")).then(|| reference.to_string());
    if let Some(tag) = &tag {
        for image in repo.images.iter_mut() {
            image.tags.remove(tag);
        }
    }
    match repo.images.iter_mut().find(|i| i.digest == digest) {
        Some(image) => image.tags.extend(tag),
        None => repo.images.push(ImageRecord {
            digest: digest.to_string(),
            tags: tag.into_iter().collect::<BTreeSet<_>>(),
            media_type: media_type.to_string(),
            size,
            pushed_at: OffsetDateTime::now_utc(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repository_names_are_split_from_the_route() {
        assert_eq!(split_repository("/v2/app/blobs/uploads/"), Some(("app", "/blobs/uploads/")));
        assert_eq!(split_repository("/v2/team/app/manifests/latest"), Some(("team/app", "/manifests/latest")));
        assert_eq!(split_repository("/v2/team/app/tags/list"), Some(("team/app", "/tags/list")));
        assert_eq!(split_repository("/v2/team/app/referrers/sha256:ab"), Some(("team/app", "/referrers/sha256:ab")), "ECR serves the referrers API");
        assert_eq!(split_repository("/v2/"), None);
    }

    #[test]
    fn tag_lists_name_the_repository_not_the_backend_prefix() {
        let listed = tag_list_as_named(br#"{"name":"cell-3/conformance/repo1","tags":["a","b"]}"#, "conformance/repo1");
        let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
        assert_eq!(listed, json!({"name": "conformance/repo1", "tags": ["a", "b"]}));
        assert_eq!(&tag_list_as_named(b"not json", "x")[..], b"not json");
    }
}
