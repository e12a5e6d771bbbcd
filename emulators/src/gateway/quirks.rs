//! Registries that answer the Distribution API their own way, each modelled on a named real
//! registry (sources in ko-matrix's `docs/storage-and-quirks.md`), applied by the gateway to one
//! session's traffic on any registry: read by the caller (ko-matrix: a scenario's `[quirks]`).
//! Unlike [`super::Faults`], a quirk is how a registry always behaves, not a passing failure.

use bytes::Bytes;
use hyper::header::HeaderValue;
use hyper::{HeaderMap, Response, StatusCode};
use serde::Deserialize;

use crate::wire::{distribution_error, full, Body, Form};

/// How the registry departs from distribution's answers (every key optional: distribution's).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Quirks {
    /// The status of a `HEAD` for a manifest the registry does not hold: 404 (the spec,
    /// distribution), 401 (Docker Hub, for a repository the token does not reach), 403
    /// (Artifactory's virtual repositories).
    pub missing_manifest_head: Option<u16>,
    /// The status a cross-repository mount (`POST …/blobs/uploads/?mount=…&from=…`) is refused
    /// with, instead of a mount or a plain upload: 401 (Harbor without pull on `from`). A mount
    /// without `from` is not refused (it asks for no access to another repository).
    pub mount_refused: Option<u16>,
    /// Whether chunked uploads (`PATCH` to an upload) are taken; `false`: 405 `UNSUPPORTED`.
    #[serde(default = "yes")]
    pub chunked_uploads: bool,
    /// Whether manifest answers carry `Docker-Content-Digest` (ECR's manifest answers long did not).
    #[serde(default = "yes")]
    pub content_digest: bool,
    /// Whether an OCI image index is taken as a manifest; `false`: 400 `MANIFEST_INVALID`, as
    /// registries that know only Docker manifest lists answer.
    #[serde(default = "yes")]
    pub oci_index: bool,
    /// The largest manifest taken, in bytes; a larger one gets 413 (the OCI spec's answer).
    pub manifest_limit: Option<u64>,
    /// How upload `Location`s are written: `absolute` (distribution) or `relative` (ACR).
    pub location: Option<LocationForm>,
}

fn yes() -> bool {
    true
}

impl Default for Quirks {
    fn default() -> Self {
        Quirks {
            missing_manifest_head: None,
            mount_refused: None,
            chunked_uploads: true,
            content_digest: true,
            oci_index: true,
            manifest_limit: None,
            location: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LocationForm {
    Absolute,
    Relative,
}

const OCI_INDEX: &str = "application/vnd.oci.image.index.v1+json";

fn is_upload(path: &str) -> bool {
    path.split('?').next().is_some_and(|p| p.contains("/blobs/uploads/"))
}

fn is_manifest(path: &str) -> bool {
    path.split('?').next().is_some_and(|p| p.starts_with("/v2/") && p.contains("/manifests/"))
}

/// Where Harbor's refusal of a mount without pull on `from` is read from.
const HARBOR_MOUNT_SOURCE: &str = "goharbor/harbor src/server/middleware/v2auth/access.go";

/// A cross-repository mount (from `from`) refused with `status`, as the registry that status is
/// modelled on answers it, and the record's note naming that registry and where its answer is
/// read from. 401 is Harbor's: a mount needs pull on `from` too, and a token without it gets
/// the v2auth middleware's 401, its message doubled, under `Basic realm="harbor"` when the
/// request carried credentials (`authorized`); distribution's token access controller asks the
/// same pull (`registry/handlers/app.go`). No registry is known to refuse a mount with 403 or
/// 405: those keep distribution's generic codes and say so.
fn refused_mount(status: u16, from: &str, authorized: bool) -> (Response<Body>, String) {
    if status == 401 {
        let message = format!("unauthorized to access repository: {from}, action: pull");
        let mut answer = distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &format!("{message}: {message}"));
        if authorized {
            answer.headers_mut().insert("www-authenticate", HeaderValue::from_static(r#"Basic realm="harbor""#));
        }
        let note = format!(
            "quirk: mount refused with 401, as Harbor refuses a token without pull on `from` ({HARBOR_MOUNT_SOURCE})"
        );
        return (answer, note);
    }
    let (code, message) = match status {
        403 => ("DENIED", "requested access to the resource is denied"),
        _ => ("UNSUPPORTED", "The operation is unsupported."),
    };
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::UNAUTHORIZED);
    let note = format!("quirk: mount refused with {status} (no registry is known to answer so: UNCONFIRMED)");
    (distribution_error(status, code, message), note)
}

impl Quirks {
    /// The registry's answer to a request it refuses before looking further, with the record's
    /// note; `None`: the request goes on to the registry.
    pub(crate) fn refuse(&self, method: &str, path: &str, headers: &HeaderMap) -> Option<(Response<Body>, String)> {
        let query = path.split_once('?').map_or("", |(_, q)| q);
        // A mount names the repository it mounts from; one without `from` (regclient's
        // "anonymous" mount) asks for no access there, and distribution opens a plain upload.
        let form = Form::parse(query);
        if let (true, Some(status), Some(_), Some(from)) =
            (method == "POST" && is_upload(path), self.mount_refused, form.get("mount"), form.get("from"))
        {
            return Some(refused_mount(status, from, headers.contains_key(hyper::header::AUTHORIZATION)));
        }
        if method == "PATCH" && is_upload(path) && !self.chunked_uploads {
            let refusal =
                distribution_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "The operation is unsupported.");
            return Some((refusal, "quirk: chunked uploads refused".into()));
        }
        if method == "PUT" && is_manifest(path) {
            let content_type = headers.get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default();
            if !self.oci_index && content_type.starts_with(OCI_INDEX) {
                let refusal = distribution_error(StatusCode::BAD_REQUEST, "MANIFEST_INVALID", "manifest invalid");
                return Some((refusal, "quirk: OCI index refused".into()));
            }
            let length =
                headers.get("content-length").and_then(|v| v.to_str().ok()).and_then(|v| v.parse::<u64>().ok());
            if let (Some(limit), Some(length)) = (self.manifest_limit, length) {
                if length > limit {
                    let refusal = distribution_error(
                        StatusCode::PAYLOAD_TOO_LARGE,
                        "MANIFEST_INVALID",
                        &format!("manifest invalid: {length} bytes exceed the limit of {limit}"),
                    );
                    return Some((refusal, format!("quirk: manifest over {limit} bytes refused")));
                }
            }
        }
        None
    }

    /// The registry's answer `response` to `method path` (on `origin`, `https://host`), as this
    /// registry words it, with the record's note when a quirk changed it.
    pub(crate) fn reword(
        &self,
        method: &str,
        path: &str,
        origin: &str,
        mut response: Response<Body>,
    ) -> (Response<Body>, Option<String>) {
        let mut notes = Vec::new();
        if method == "HEAD" && is_manifest(path) && response.status() == StatusCode::NOT_FOUND {
            if let Some(status) = self.missing_manifest_head.filter(|s| *s != 404) {
                let (mut parts, _) = response.into_parts();
                parts.status = StatusCode::from_u16(status).unwrap_or(StatusCode::NOT_FOUND);
                parts.headers.remove("content-length");
                response = Response::from_parts(parts, full(Bytes::new()));
                notes.push(format!("quirk: missing manifest answered {status}"));
            }
        }
        if is_manifest(path) && !self.content_digest && response.headers_mut().remove("docker-content-digest").is_some()
        {
            notes.push("quirk: no Docker-Content-Digest".to_string());
        }
        if let (Some(form), true) = (self.location, is_upload(path)) {
            let location = response.headers().get("location").and_then(|v| v.to_str().ok()).map(str::to_string);
            if let Some(location) = location {
                let rewritten = match (form, location.split_once("://")) {
                    (LocationForm::Relative, Some((_, rest))) => rest.find('/').map(|at| rest[at..].to_string()),
                    (LocationForm::Absolute, None) => Some(format!("{origin}{location}")),
                    _ => None,
                };
                if let Some(value) = rewritten.and_then(|r| HeaderValue::from_str(&r).ok()) {
                    response.headers_mut().insert("location", value);
                    notes.push(format!("quirk: {form:?} Location").to_lowercase());
                }
            }
        }
        (response, (!notes.is_empty()).then(|| notes.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)]) -> Response<Body> {
        let mut response = Response::new(full(Bytes::from_static(b"{}")));
        *response.status_mut() = StatusCode::from_u16(status).unwrap();
        for (k, v) in headers {
            response.headers_mut().insert(*k, v.parse().unwrap());
        }
        response
    }

    #[test]
    fn refusals_come_before_the_registry() {
        let quirks = Quirks {
            mount_refused: Some(401),
            chunked_uploads: false,
            oci_index: false,
            manifest_limit: Some(100),
            ..Quirks::default()
        };
        let none = HeaderMap::new();
        let status = |m: &str, p: &str, h: &HeaderMap| quirks.refuse(m, p, h).map(|(r, _)| r.status().as_u16());
        assert_eq!(status("POST", "/v2/a/blobs/uploads/?mount=sha256:ab&from=b", &none), Some(401));
        let mut authorized = HeaderMap::new();
        authorized.insert("authorization", "Bearer t".parse().unwrap());
        let (harbor, note) =
            quirks.refuse("POST", "/v2/a/blobs/uploads/?mount=sha256:ab&from=team%2Fsrc", &authorized).unwrap();
        assert_eq!(harbor.headers()["www-authenticate"], r#"Basic realm="harbor""#);
        assert_eq!(note, format!("quirk: mount refused with 401, as Harbor refuses a token without pull on `from` ({HARBOR_MOUNT_SOURCE})"));
        assert!(quirks
            .refuse("POST", "/v2/a/blobs/uploads/?mount=sha256:ab&from=b", &none)
            .unwrap()
            .0
            .headers()
            .get("www-authenticate")
            .is_none());
        assert_eq!(status("POST", "/v2/a/blobs/uploads/", &none), None);
        assert_eq!(status("POST", "/v2/a/blobs/uploads/?mount=sha256:ab", &none), None, "a mount without from");
        assert_eq!(status("PATCH", "/v2/a/blobs/uploads/u1?_state=x", &none), Some(405));
        let mut index = HeaderMap::new();
        index.insert("content-type", OCI_INDEX.parse().unwrap());
        assert_eq!(status("PUT", "/v2/a/manifests/latest", &index), Some(400));
        let mut big = HeaderMap::new();
        big.insert("content-length", "101".parse().unwrap());
        assert_eq!(status("PUT", "/v2/a/manifests/latest", &big), Some(413));
        assert_eq!(Quirks::default().refuse("PATCH", "/v2/a/blobs/uploads/u1", &none).map(|_| ()), None);
    }

    #[test]
    fn answers_are_reworded() {
        let quirks = Quirks {
            missing_manifest_head: Some(403),
            content_digest: false,
            location: Some(LocationForm::Relative),
            ..Quirks::default()
        };
        let (head, note) = quirks.reword("HEAD", "/v2/a/manifests/latest", "https://r", answer(404, &[]));
        assert_eq!((head.status().as_u16(), note.as_deref()), (403, Some("quirk: missing manifest answered 403")));
        let (get, _) = quirks.reword("GET", "/v2/a/manifests/latest", "https://r", answer(404, &[]));
        assert_eq!(get.status(), 404, "only HEAD");
        let (put, _) = quirks.reword(
            "PUT",
            "/v2/a/manifests/latest",
            "https://r",
            answer(201, &[("docker-content-digest", "sha256:ab")]),
        );
        assert!(!put.headers().contains_key("docker-content-digest"));
        let upload = answer(202, &[("location", "https://r/v2/a/blobs/uploads/u1?_state=x")]);
        let (upload, _) = quirks.reword("POST", "/v2/a/blobs/uploads/", "https://r", upload);
        assert_eq!(upload.headers()["location"], "/v2/a/blobs/uploads/u1?_state=x");
        let absolute = Quirks { location: Some(LocationForm::Absolute), ..Quirks::default() };
        let (upload, _) = absolute.reword(
            "POST",
            "/v2/a/blobs/uploads/",
            "https://r",
            answer(202, &[("location", "/v2/a/blobs/uploads/u1")]),
        );
        assert_eq!(upload.headers()["location"], "https://r/v2/a/blobs/uploads/u1");
    }
}
