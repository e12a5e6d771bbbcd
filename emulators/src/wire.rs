//! What every emulated service shares on the wire: the response body type and the ways to
//! answer (plain bytes, JSON, Distribution's error format), the headers by which the gateway
//! and the services behind it talk (the session, infra failures), the OAuth/Query form
//! parser, the `WWW-Authenticate` challenge, and the ISO-8601 time format the clouds write.

use std::convert::Infallible;

use bytes::Bytes;
use http_body_util::{combinators::BoxBody, BodyExt, Full};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::{Response, StatusCode};
use time::OffsetDateTime;

/// The body of every answer the emulators make or pass on.
pub(crate) type Body = BoxBody<Bytes, hyper::Error>;

/// The header the gateway adds to every forwarded request: which session (cell) it came
/// from, so in-process services such as the AWS emulator can keep per-cell state.
pub(crate) const SESSION_HEADER: &str = "x-ko-matrix-session";

/// A response header by which a service of the emulated world behind the gateway (the ECR front) says it
/// made this answer because a service of its own failed: `<service> <what happened>`. The
/// gateway moves it into the [`crate::gateway::Record`] and does not pass it on.
pub(crate) const INFRA_HEADER: &str = "x-ko-matrix-infra";

/// The gateway session a request came from ([`SESSION_HEADER`]), if it names one.
pub(crate) fn session(headers: &HeaderMap) -> Option<u64> {
    headers.get(SESSION_HEADER)?.to_str().ok()?.parse().ok()
}

/// The host a request names (`Host`, without a port, lower case): which service it is for.
pub(crate) fn host(headers: &HeaderMap) -> String {
    let host = headers.get("host").and_then(|h| h.to_str().ok()).unwrap_or_default();
    host.split(':').next().unwrap_or_default().to_ascii_lowercase()
}

pub(crate) fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never: Infallible| match never {}).boxed()
}

/// A `status` answer with `value` as its body, of `content_type`.
pub(crate) fn json_as(status: StatusCode, content_type: &'static str, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(value.to_string())));
    *response.status_mut() = status;
    response.headers_mut().insert("content-type", HeaderValue::from_static(content_type));
    response
}

/// A registry host's JSON answer (its token endpoint's, its vendor's identity services'):
/// `application/json`, with Distribution's API version.
pub(crate) fn json(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    let mut response = json_as(status, "application/json", &value);
    response.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    response
}

/// A Distribution error answer: `{"errors":[{"code":…,"message":…}]}`.
pub(crate) fn distribution_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let body = serde_json::json!({ "errors": [{ "code": code, "message": message }] });
    let mut response = json_as(status, "application/json; charset=utf-8", &body);
    response.headers_mut().insert("docker-distribution-api-version", HeaderValue::from_static("registry/2.0"));
    response
}

/// Tells the gateway that this answer comes from the emulated world's own failure (see [`INFRA_HEADER`]).
pub(crate) fn mark_infra(response: &mut Response<Body>, what: String) {
    let value = HeaderValue::from_str(&what.replace(['\r', '\n'], " "))
        .unwrap_or_else(|_| HeaderValue::from_static("registry front backend failed"));
    response.headers_mut().insert(INFRA_HEADER, value);
}

/// A `WWW-Authenticate` value: `<scheme> realm="<realm>"`, then `,<name>="<value>"` for each
/// of `params` (`service`, `scope`, `error`) in order.
pub(crate) fn challenge(scheme: &str, realm: &str, params: &[(&str, &str)]) -> String {
    let mut value = format!("{scheme} realm=\"{realm}\"");
    for (name, param) in params {
        value.push_str(&format!(",{name}=\"{param}\""));
    }
    value
}

/// `2024-01-01T00:00:00Z`, as STS, IMDS, container credentials and Google's IAM Credentials
/// write expirations, and Docker's token endpoints `issued_at`.
pub(crate) fn iso8601(t: OffsetDateTime) -> String {
    t.format(&time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z")).expect("UTC formats")
}

/// An `application/x-www-form-urlencoded` body or URL query, decoded, its fields in order and
/// repeated names kept (a token request may name several `scope`s).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Form(Vec<(String, String)>);

impl Form {
    pub(crate) fn parse(encoded: impl AsRef<[u8]>) -> Form {
        Form(url::form_urlencoded::parse(encoded.as_ref()).into_owned().collect())
    }

    /// The first value of `name`.
    pub(crate) fn get(&self, name: &str) -> Option<&str> {
        self.0.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// The last value of `name`: a form read as a map, where a later field overwrites.
    pub(crate) fn last(&self, name: &str) -> Option<&str> {
        self.0.iter().rev().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
    }

    /// Every value of `name`, in order.
    pub(crate) fn all<'a>(&'a self, name: &'a str) -> impl Iterator<Item = &'a str> + 'a {
        self.0.iter().filter(move |(k, _)| k == name).map(|(_, v)| v.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forms_decode_and_keep_repeated_fields_in_order() {
        let form = Form::parse("scope=repository%3Aa%2Fb%3Apull+x&grant_type=refresh_token&scope=repository:d:pull&e=");
        assert_eq!(form.get("scope"), Some("repository:a/b:pull x"));
        assert_eq!(form.last("scope"), Some("repository:d:pull"));
        assert_eq!(form.all("scope").count(), 2);
        assert_eq!(form.get("grant_type"), Some("refresh_token"));
        assert_eq!(form.get("e"), Some(""));
        assert_eq!(form.get("missing"), None);
        assert_eq!(Form::parse(b""), Form::default());
    }

    #[test]
    fn challenges_name_realm_then_params() {
        assert_eq!(challenge("Basic", "ko-matrix token server", &[]), r#"Basic realm="ko-matrix token server""#);
        assert_eq!(
            challenge("Bearer", "https://ghcr.io/token", &[("service", "ghcr.io"), ("scope", "repository:a:pull")]),
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:a:pull""#
        );
    }

    #[test]
    fn sessions_are_read_from_the_gateway_header() {
        let mut headers = HeaderMap::new();
        assert_eq!(session(&headers), None);
        headers.insert(SESSION_HEADER, HeaderValue::from_static("7"));
        assert_eq!(session(&headers), Some(7));
        headers.insert(SESSION_HEADER, HeaderValue::from_static("x"));
        assert_eq!(session(&headers), None);
    }
}
