//! STS (awsQuery, XML) at `sts.amazonaws.com` and `sts.<region>.amazonaws.com`:
//! GetCallerIdentity and AssumeRole (signed), AssumeRoleWithWebIdentity (unsigned, the web
//! identity token verified against the emulated OIDC issuer). Issued session credentials
//! are then accepted by ECR until they expire.

use bytes::Bytes;
use hyper::http::request::Parts;
use hyper::{Response, StatusCode};
use time::OffsetDateTime;

use super::auth::{authenticate, AuthFailure};
use super::state::{AccessKey, AwsCell, Trust};
use super::{http_date, request_id, Emulator};
use crate::wire::{Body, Form};

const NAMESPACE: &str = "https://sts.amazonaws.com/doc/2011-06-15/";

fn xml_escape(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

fn xml(status: StatusCode, body: String) -> Response<Body> {
    let mut response = Response::new(crate::wire::full(Bytes::from(body)));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert("content-type", "text/xml".parse().expect("static header"));
    headers.insert("x-amzn-requestid", request_id().parse().expect("hex header"));
    headers.insert("date", http_date(OffsetDateTime::now_utc()).parse().expect("date header"));
    response
}

fn error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    let kind = if status.is_server_error() { "Receiver" } else { "Sender" };
    xml(
        status,
        format!(
            "<ErrorResponse xmlns=\"{NAMESPACE}\">\n  <Error>\n    <Type>{kind}</Type>\n    <Code>{code}</Code>\n    <Message>{}</Message>\n  </Error>\n  <RequestId>{}</RequestId>\n</ErrorResponse>\n",
            xml_escape(message),
            request_id()
        ),
    )
}

fn result(action: &str, inner: String) -> Response<Body> {
    xml(
        StatusCode::OK,
        format!("<{action}Response xmlns=\"{NAMESPACE}\">\n  <{action}Result>\n{inner}  </{action}Result>\n  <ResponseMetadata>\n    <RequestId>{}</RequestId>\n  </ResponseMetadata>\n</{action}Response>\n", request_id()),
    )
}

fn credentials_xml(key: &AccessKey, role_name: &str, session: &str) -> String {
    format!(
        "    <Credentials>\n      <AccessKeyId>{}</AccessKeyId>\n      <SecretAccessKey>{}</SecretAccessKey>\n      <SessionToken>{}</SessionToken>\n      <Expiration>{}</Expiration>\n    </Credentials>\n    <AssumedRoleUser>\n      <AssumedRoleId>AROAKOMATRIX{}:{session}</AssumedRoleId>\n      <Arn>{}</Arn>\n    </AssumedRoleUser>\n",
        key.id,
        key.secret,
        key.session_token.as_deref().unwrap_or_default(),
        crate::wire::iso8601(key.expires.unwrap_or_else(OffsetDateTime::now_utc)),
        role_name.to_ascii_uppercase(),
        key.arn
    )
}

fn auth_error(failure: AuthFailure) -> Response<Body> {
    match failure {
        AuthFailure::Missing => error(StatusCode::FORBIDDEN, "MissingAuthenticationToken", &failure.message()),
        AuthFailure::Incomplete(m) => error(StatusCode::BAD_REQUEST, "IncompleteSignature", &m),
        AuthFailure::UnknownKey => error(StatusCode::FORBIDDEN, "InvalidClientTokenId", &failure.message()),
        AuthFailure::Expired => error(StatusCode::FORBIDDEN, "ExpiredToken", &failure.message()),
        other => error(StatusCode::FORBIDDEN, "SignatureDoesNotMatch", &other.message()),
    }
}

pub(crate) fn handle(
    emulator: &Emulator,
    cell: Option<&AwsCell>,
    region: &str,
    parts: &Parts,
    body: &[u8],
) -> Response<Body> {
    let params = Form::parse(body);
    let param = |name: &str| params.get(name);
    let action = param("Action").unwrap_or_default();
    if action == "AssumeRoleWithWebIdentity" {
        return assume_role_with_web_identity(emulator, cell, &param);
    }
    let key = match authenticate(cell, region, "sts", parts, body) {
        Ok(key) => key,
        Err(failure) => return auth_error(failure),
    };
    let cell = cell.expect("an authenticated key belongs to a cell");
    match action {
        "GetCallerIdentity" => {
            let user_id = key.arn.rsplit('/').next().unwrap_or_default();
            result(
                "GetCallerIdentity",
                format!(
                    "    <Arn>{}</Arn>\n    <UserId>AIDAKOMATRIX:{user_id}</UserId>\n    <Account>{}</Account>\n",
                    key.arn, key.account
                ),
            )
        }
        "AssumeRole" => {
            let role_arn = param("RoleArn").unwrap_or_default();
            let session = param("RoleSessionName").unwrap_or("session");
            let role = cell.spec.role.as_ref().filter(|_| Some(role_arn.to_string()) == cell.role_arn());
            let trusted = role.is_some_and(|r| r.trust == Trust::User) && !key.arn.contains(":assumed-role/");
            match role {
                Some(role) if trusted => {
                    let issued = cell.issue_role_session(session, time::Duration::hours(1)).expect("the role exists");
                    result("AssumeRole", credentials_xml(&issued, &role.name, session))
                }
                _ => {
                    let message = format!(
                        "User: {} is not authorized to perform: sts:AssumeRole on resource: {role_arn}",
                        key.arn
                    );
                    cell.record_denial(message.clone());
                    error(StatusCode::FORBIDDEN, "AccessDenied", &message)
                }
            }
        }
        other => error(
            StatusCode::BAD_REQUEST,
            "InvalidAction",
            &format!("Could not find operation {other} for version 2011-06-15"),
        ),
    }
}

fn assume_role_with_web_identity<'a>(
    emulator: &Emulator,
    cell: Option<&AwsCell>,
    param: &dyn Fn(&str) -> Option<&'a str>,
) -> Response<Body> {
    let token = param("WebIdentityToken").unwrap_or_default();
    let role_arn = param("RoleArn").unwrap_or_default();
    let session = param("RoleSessionName").unwrap_or("web-identity");
    let claims = match emulator.oidc.verify(token) {
        Ok(claims) => claims,
        Err((code, message)) => return error(StatusCode::BAD_REQUEST, code, &message),
    };
    let Some(cell) = cell else {
        return error(StatusCode::FORBIDDEN, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
    };
    let role =
        cell.spec.role.as_ref().filter(|r| r.trust == Trust::Oidc && Some(role_arn.to_string()) == cell.role_arn());
    let Some(role) = role else {
        cell.record_denial(format!("Not authorized to perform sts:AssumeRoleWithWebIdentity on {role_arn}"));
        return error(StatusCode::FORBIDDEN, "AccessDenied", "Not authorized to perform sts:AssumeRoleWithWebIdentity");
    };
    let issued = cell.issue_role_session(session, time::Duration::hours(1)).expect("the role exists");
    let extra = format!(
        "    <SubjectFromWebIdentityToken>{}</SubjectFromWebIdentityToken>\n    <Audience>{}</Audience>\n    <Provider>{}</Provider>\n",
        xml_escape(&claims.sub),
        xml_escape(&claims.aud),
        super::oidc::ISSUER.trim_start_matches("https://")
    );
    result("AssumeRoleWithWebIdentity", format!("{}{extra}", credentials_xml(&issued, &role.name, session)))
}
