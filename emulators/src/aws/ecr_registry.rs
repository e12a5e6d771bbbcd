//! The ECR registry front (`<account>.dkr.ecr.<region>.amazonaws.com`): ECR's Basic
//! challenge, `AWS:<password>` checked against the passwords GetAuthorizationToken minted,
//! ECR's wording for expired tokens and missing repositories (ECR does not create
//! repositories on push), then the real work forwarded to a distribution registry.

use std::collections::BTreeSet;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use time::OffsetDateTime;

use crate::grants::Refusal;

use super::iam;
use super::state::{AwsCell, ImageRecord, RegistryPassword};
use super::Emulator;
use crate::registry_front::{judge, Gate, Route, Verdict};
use crate::wire::{challenge, distribution_error, full, Body, INFRA_HEADER};

pub(crate) const MANIFEST_TYPES: &str =
    "application/vnd.oci.image.index.v1+json, application/vnd.oci.image.manifest.v1+json, \
     application/vnd.docker.distribution.manifest.list.v2+json, application/vnd.docker.distribution.manifest.v2+json";

/// ECR's answer to a request without credentials.
fn not_authorized(host: &str) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from_static(b"Not Authorized\n")));
    *response.status_mut() = StatusCode::UNAUTHORIZED;
    let headers = response.headers_mut();
    headers.insert("docker-distribution-api-version", "registry/2.0".parse().expect("static header"));
    headers.insert(
        "www-authenticate",
        challenge("Basic", &format!("https://{host}/"), &[("service", "ecr.amazonaws.com")])
            .parse()
            .expect("valid header"),
    );
    headers.insert("content-type", "text/plain; charset=utf-8".parse().expect("static header"));
    response
}

/// Checks `Authorization: Basic AWS:<password>`; `Err` is the response to send.
fn check_credentials(
    cell: Option<&AwsCell>,
    host: &str,
    account: &str,
    region: &str,
    parts: &Parts,
) -> Result<RegistryPassword, Box<Response<Body>>> {
    let Some(value) = parts.headers.get("authorization").and_then(|v| v.to_str().ok()) else {
        return Err(Box::new(not_authorized(host)));
    };
    let Some((user, password)) = crate::registry_front::basic_credentials(value) else {
        return Err(Box::new(not_authorized(host)));
    };
    // Private ECR's answer to an unknown token is not documented; ECR Public's wording is.
    let invalid = || distribution_error(StatusCode::FORBIDDEN, "DENIED", "Your authorization token is invalid.");
    let Some(cell) = cell else { return Err(Box::new(invalid())) };
    let issued = match cell.check_password(&password) {
        Ok(issued) => issued,
        Err(Refusal::Unknown) => return Err(Box::new(invalid())),
        Err(Refusal::Expired) => {
            return Err(Box::new(distribution_error(
                StatusCode::FORBIDDEN,
                "DENIED",
                "Your authorization token has expired. Reauthenticate and try again.",
            )))
        }
    };
    if user != "AWS" || issued.account != account || issued.region != region {
        return Err(Box::new(invalid()));
    }
    Ok(issued)
}

/// ECR's gate: Basic `AWS:<password>` with a password GetAuthorizationToken minted for this
/// registry, IAM allowing the request's ECR action, and a repository that exists.
struct EcrGate<'a> {
    cell: Option<Arc<AwsCell>>,
    host: &'a str,
    account: &'a str,
    region: &'a str,
}

impl Gate for EcrGate<'_> {
    type Caller = (Arc<AwsCell>, RegistryPassword);

    fn admit(&self, parts: &Parts, _: &Route) -> Result<Self::Caller, Box<Response<Body>>> {
        let issued = check_credentials(self.cell.as_deref(), self.host, self.account, self.region, parts)?;
        Ok((self.cell.clone().expect("valid credentials belong to a cell"), issued))
    }

    fn base(&self, _: Self::Caller) -> Response<Body> {
        let mut response = Response::new(full(Bytes::from_static(b"{}")));
        response
            .headers_mut()
            .insert("docker-distribution-api-version", "registry/2.0".parse().expect("static header"));
        response
    }

    fn authorize(
        &self,
        (cell, issued): &Self::Caller,
        parts: &Parts,
        repository: &str,
        rest: &str,
    ) -> Result<String, Box<Response<Body>>> {
        let (account, region) = (self.account, self.region);
        let action = iam::registry_action(parts.method.as_str(), rest);
        if !iam::allows(&issued.allow, action) {
            let message =
                iam::denial(&issued.arn, action, &format!("arn:aws:ecr:{region}:{account}:repository/{repository}"));
            cell.record_denial(message.clone());
            return Err(Box::new(distribution_error(StatusCode::FORBIDDEN, "DENIED", &message)));
        }
        if !cell.repositories.lock().expect("repositories lock").contains_key(repository) {
            let message =
                format!("The repository with name '{repository}' does not exist in the registry with id '{account}'");
            return Err(Box::new(distribution_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message)));
        }
        Ok(cell.backend_prefix.clone())
    }
}

pub(crate) async fn handle(
    emulator: &Emulator,
    cell: Option<Arc<AwsCell>>,
    host: &str,
    account: &str,
    region: &str,
    req: Request<Incoming>,
) -> Response<Body> {
    let (parts, body) = req.into_parts();
    match judge(&EcrGate { cell, host, account, region }, &parts) {
        Verdict::Answer(answer) => answer,
        Verdict::Forward { caller: (cell, _), prefix, repository, rest } => {
            forward(emulator, &cell, &prefix, &repository, &rest, parts, body).await
        }
    }
}

/// Sends the request to the backend under `prefix`, with ECR's own touches: a PATCH
/// answered 201, pushed manifests remembered for the API.
async fn forward(
    emulator: &Emulator,
    cell: &AwsCell,
    prefix: &str,
    repository: &str,
    rest: &str,
    parts: Parts,
    body: Incoming,
) -> Response<Body> {
    let method = parts.method.clone();
    let is_manifest_put = method == Method::PUT && rest.starts_with("/manifests/");
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
    let response = emulator.backend.forward(prefix, repository, rest, parts, body).await;
    let (mut parts, body) = response.into_parts();
    if parts.headers.contains_key(INFRA_HEADER) {
        return Response::from_parts(parts, body);
    }
    // ECR answers an upload PATCH with 201 where distribution says 202.
    if method == Method::PATCH && parts.status == StatusCode::ACCEPTED {
        parts.status = StatusCode::CREATED;
    }
    if let (Some(manifest), true) = (manifest, parts.status == StatusCode::CREATED) {
        let digest =
            parts.headers.get("docker-content-digest").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let reference = rest.trim_start_matches("/manifests/");
        record_image(cell, repository, &digest, reference, &content_type, &manifest);
    }
    Response::from_parts(parts, body)
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
