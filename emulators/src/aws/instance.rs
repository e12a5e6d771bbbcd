//! Where SDKs find credentials on AWS compute: the EC2 instance metadata service (IMDS, at
//! 169.254.169.254 through the gateway, v2 token flow and the v1 fallback) and the ECS/EKS
//! container credentials endpoint (`AWS_CONTAINER_CREDENTIALS_FULL_URI` on loopback, with
//! its authorization token). Both hand out the scenario's role credentials.

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use serde_json::json;
use time::OffsetDateTime;

use super::plain;
use super::state::{AccessKey, AwsCell, ImdsMode};
use crate::wire::{iso8601, json_as, Body};

const TOKEN_TTL_HEADER: &str = "x-aws-ec2-metadata-token-ttl-seconds";
const TOKEN_HEADER: &str = "x-aws-ec2-metadata-token";
const CREDENTIALS_PATH: &str = "/latest/meta-data/iam/security-credentials/";

fn json_response(status: StatusCode, value: serde_json::Value) -> Response<Body> {
    json_as(status, "application/json", &value)
}

fn role_credentials(key: &AccessKey) -> serde_json::Value {
    json!({
        "Code": "Success",
        "LastUpdated": iso8601(OffsetDateTime::now_utc()),
        "Type": "AWS-HMAC",
        "AccessKeyId": key.id,
        "SecretAccessKey": key.secret,
        "Token": key.session_token,
        "Expiration": iso8601(key.expires.unwrap_or_else(OffsetDateTime::now_utc)),
    })
}

/// IMDS for the cell: 404s for cells that run "off EC2" (no `imds` in the scenario).
pub fn imds(cell: Option<&AwsCell>, parts: &Parts) -> Response<Body> {
    let not_found = || plain(StatusCode::NOT_FOUND, "Not Found");
    let Some(cell) = cell.filter(|c| c.spec.imds.is_some() && c.spec.role.is_some()) else { return not_found() };
    let mode = cell.spec.imds.expect("filtered above");
    let path = parts.uri.path();
    if parts.method == Method::PUT && path == "/latest/api/token" {
        if mode == ImdsMode::V1Only {
            return plain(StatusCode::FORBIDDEN, "Forbidden");
        }
        let Some(ttl) = parts.headers.get(TOKEN_TTL_HEADER).cloned() else {
            return plain(StatusCode::BAD_REQUEST, "Bad Request");
        };
        let token = cell.imds_token();
        let mut response = plain(StatusCode::OK, token);
        response.headers_mut().insert(TOKEN_TTL_HEADER, ttl);
        return response;
    }
    if mode == ImdsMode::V2 {
        let presented = parts.headers.get(TOKEN_HEADER).and_then(|v| v.to_str().ok());
        if presented != Some(cell.imds_token().as_str()) {
            return plain(StatusCode::UNAUTHORIZED, "Unauthorized");
        }
    }
    let role = &cell.spec.role.as_ref().expect("filtered above").name;
    match path.strip_prefix(CREDENTIALS_PATH) {
        Some("") => plain(StatusCode::OK, role.clone()),
        Some(name) if name == role => {
            let key =
                cell.issue_role_session("i-0ko0matrix0instance", time::Duration::hours(6)).expect("the role exists");
            json_response(StatusCode::OK, role_credentials(&key))
        }
        _ => not_found(),
    }
}

/// The container credentials endpoint: `GET /ecs/<session>/credentials` with the token.
pub(crate) fn container_credentials(cell: Option<&AwsCell>, parts: &Parts) -> Response<Body> {
    let denied =
        |message: &str| json_response(StatusCode::UNAUTHORIZED, json!({ "code": "AccessDenied", "message": message }));
    let Some(cell) = cell.filter(|c| c.spec.container_credentials && c.spec.role.is_some()) else {
        return json_response(
            StatusCode::NOT_FOUND,
            json!({ "code": "NotFound", "message": "no container credentials for this cell" }),
        );
    };
    let presented = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
    if presented != Some(cell.container_token.as_str()) {
        return denied("the authorization token does not match");
    }
    let key = cell.issue_role_session("ecs-task", time::Duration::hours(6)).expect("the role exists");
    let mut body = role_credentials(&key);
    body["RoleArn"] = json!(cell.role_arn());
    json_response(StatusCode::OK, body)
}
