//! The ECR registry front (`<account>.dkr.ecr.<region>.amazonaws.com`): ECR's Basic
//! challenge, `AWS:<password>` checked against the passwords GetAuthorizationToken minted,
//! ECR's wording for expired tokens, missing repositories (created on push only where a
//! `CREATE_ON_PUSH` template covers them), immutable tags and repository policies, pull
//! through cache imports, then the real work forwarded to a distribution registry.

use std::sync::Arc;

use crate::grants::Refusal;
use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};

use super::iam;
use super::state::{AppliedFor, AwsCell, RegistryPassword, Repository, TagMutability};
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
        let resource = format!("arn:aws:ecr:{region}:{account}:repository/{repository}");
        let refuse = |message: String| {
            cell.record_denial(message.clone());
            Box::new(distribution_error(StatusCode::FORBIDDEN, "DENIED", &message))
        };
        let identity = |action: &str| iam::authorize(&issued.allow, None, &issued.arn, action, &resource);
        let mut repos = cell.repositories.lock().expect("repositories lock");
        let Some(repo) = repos.get(repository) else {
            identity(action).map_err(refuse)?;
            let reference = rest.strip_prefix("/manifests/");
            // A pull through cache's first pull creates the repository and imports the image
            // (`forward` does): the puller needs both permissions (registry-shapes-reference §5).
            if let (Some(_), "ecr:BatchGetImage", Some(_)) = (cell.pull_through(repository), action, reference) {
                identity("ecr:CreateRepository").map_err(refuse)?;
                identity("ecr:BatchImportUpstreamImage").map_err(refuse)?;
                return Ok(cell.backend_prefix.clone());
            }
            // CREATE_ON_PUSH: the first write creates the repository with the template's
            // settings, when the pusher may create repositories (UNCONFIRMED: which request
            // creates it, and whose permission counts; docs/ecr-features.md).
            match cell.template_for(repository, AppliedFor::CreateOnPush) {
                Some(template) if iam::is_write(action) => {
                    identity("ecr:CreateRepository").map_err(refuse)?;
                    let repo = Repository::new(template.image_tag_mutability, template.repository_policy);
                    repos.insert(repository.to_string(), repo);
                }
                _ => {
                    let message = format!(
                        "The repository with name '{repository}' does not exist in the registry with id '{account}'"
                    );
                    return Err(Box::new(distribution_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message)));
                }
            }
            return Ok(cell.backend_prefix.clone());
        };
        iam::authorize(&issued.allow, repo.policy.as_ref(), &issued.arn, action, &resource).map_err(refuse)?;
        let reference = rest.strip_prefix("/manifests/");
        // A pull of an image the cache does not hold yet imports it.
        if let (Some(_), "ecr:BatchGetImage", Some(reference)) = (cell.pull_through(repository), action, reference) {
            if !repo.holds(reference) {
                iam::authorize(
                    &issued.allow,
                    repo.policy.as_ref(),
                    &issued.arn,
                    "ecr:BatchImportUpstreamImage",
                    &resource,
                )
                .map_err(refuse)?;
            }
        }
        if let (TagMutability::Immutable, "ecr:PutImage", Some(tag)) = (repo.tag_mutability, action, reference) {
            if !tag.starts_with("sha256:") && repo.images.iter().any(|i| i.tags.contains(tag)) {
                // ECR's words (aws-ecr-wire-reference §7.3; the status is UNCONFIRMED, 400 is
                // distribution's for TAG_INVALID).
                let message = format!("The image tag '{tag}' already exists in the '{repository}' repository and cannot be overwritten because the repository is immutable.");
                return Err(Box::new(distribution_error(StatusCode::BAD_REQUEST, "TAG_INVALID", &message)));
            }
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
    let reference = rest.strip_prefix("/manifests/");
    if let (Some((rule, upstream)), true, Some(reference)) =
        (cell.pull_through(repository), method == Method::GET || method == Method::HEAD, reference)
    {
        let held =
            cell.repositories.lock().expect("repositories lock").get(repository).is_some_and(|r| r.holds(reference));
        if !held {
            match emulator.import(cell, &rule.upstream_registry_url, &upstream, repository, reference).await {
                Ok(true) => {}
                // Nothing upstream: ECR's answer is UNCONFIRMED; a repository that was not
                // there stays missing, in ECR's words.
                Ok(false) if !cell.repositories.lock().expect("repositories lock").contains_key(repository) => {
                    let message = format!(
                        "The repository with name '{repository}' does not exist in the registry with id '{}'",
                        cell.spec.account
                    );
                    return distribution_error(StatusCode::NOT_FOUND, "NAME_UNKNOWN", &message);
                }
                Ok(false) => {}
                Err(e) => {
                    let mut response = distribution_error(
                        StatusCode::BAD_GATEWAY,
                        "UNAVAILABLE",
                        &format!("ko-matrix: importing from the upstream failed: {e}"),
                    );
                    crate::wire::mark_infra(&mut response, format!("ECR front backend: {e}"));
                    return response;
                }
            }
        }
    }
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
        let tag = (!reference.starts_with("sha256:")).then_some(reference);
        if let Some(repo) = cell.repositories.lock().expect("repositories lock").get_mut(repository) {
            repo.record(&digest, tag, &content_type, &manifest);
        }
    }
    Response::from_parts(parts, body)
}
