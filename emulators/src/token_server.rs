//! A Docker-Hub-style token server: clients present Basic credentials (or none) to
//! `GET /token?service=…&scope=repository:<name>:push,pull`, or post the OAuth2 password grant
//! to `/token`, and get a JWT that distribution verifies against the run's CA (`x5c` header
//! with the signing certificate).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::{Request, Response, StatusCode};
use serde::Serialize;

use crate::bearer::{parse_scope, Access};
use crate::loopback::LoopbackServer;
use crate::pki::{Ca, Issued, PkiError};
use crate::wire::{challenge, json_as, Body, Form};

/// Who may get tokens, and how they are signed.
pub struct TokenIssuer {
    pub issuer: String,
    pub service: String,
    users: BTreeMap<String, String>,
    signer: Issued,
    encoding_key: jsonwebtoken::EncodingKey,
}

#[derive(Debug, Serialize)]
struct Claims {
    iss: String,
    sub: String,
    aud: String,
    exp: u64,
    nbf: u64,
    iat: u64,
    jti: String,
    access: Vec<Access>,
}

const TOKEN_TTL_SECS: u64 = 300;

impl TokenIssuer {
    pub fn new(ca: &Ca, issuer: &str, service: &str, users: BTreeMap<String, String>) -> Result<TokenIssuer, PkiError> {
        let signer = ca.issue(&[issuer], &[])?;
        let encoding_key =
            jsonwebtoken::EncodingKey::from_ec_pem(signer.key_pem.as_bytes()).expect("rcgen writes PKCS#8 P-256 keys");
        Ok(TokenIssuer { issuer: issuer.into(), service: service.into(), users, signer, encoding_key })
    }

    /// A signed token for `subject` with the access each scope asks for; anonymous callers
    /// (`subject` empty) get a token that grants nothing, as a private registry does.
    pub fn token(&self, subject: &str, scopes: &[String]) -> String {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_secs();
        let access =
            if subject.is_empty() { Vec::new() } else { scopes.iter().filter_map(|s| parse_scope(s)).collect() };
        let claims = Claims {
            iss: self.issuer.clone(),
            sub: subject.into(),
            aud: self.service.clone(),
            exp: now + TOKEN_TTL_SECS,
            nbf: now.saturating_sub(5),
            iat: now,
            jti: format!("{:032x}", rand::random::<u128>()),
            access,
        };
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::ES256);
        header.x5c = Some(vec![base64::engine::general_purpose::STANDARD.encode(self.signer.cert_der.as_ref())]);
        jsonwebtoken::encode(&header, &claims, &self.encoding_key).expect("ES256 signing with a valid key succeeds")
    }

    /// `Ok(subject)` for valid or absent credentials (absent: empty subject), `Err` otherwise.
    fn authenticate(&self, authorization: Option<&str>) -> Result<String, ()> {
        let Some(value) = authorization else { return Ok(String::new()) };
        let (user, password) = crate::registry_front::basic_credentials(value).ok_or(())?;
        match self.users.get(&user) {
            Some(expected) if *expected == password => Ok(user),
            _ => Err(()),
        }
    }

    /// `POST /token` with the OAuth2 form, as the distribution spec's OAuth2 document describes
    /// it (spec/auth/oauth.md): `grant_type=password` with `username` and `password` (and
    /// `service`, `scope`, `client_id`) gets a token for them, as GET with Basic credentials
    /// does. This server mints no refresh tokens, so `grant_type=refresh_token` is refused.
    fn oauth2(&self, form: &Form) -> Response<Body> {
        let respond = |status: StatusCode, body: serde_json::Value| json_as(status, "application/json", &body);
        if form.get("service").is_some_and(|s| s != self.service) {
            return respond(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"details": format!("unknown service {:?}", form.get("service"))}),
            );
        }
        match form.get("grant_type") {
            Some("password") => {}
            Some("refresh_token") => {
                return respond(
                    StatusCode::UNAUTHORIZED,
                    serde_json::json!({"error": "invalid_grant", "error_description": "unknown refresh token"}),
                )
            }
            other => {
                return respond(
                    StatusCode::BAD_REQUEST,
                    serde_json::json!({"error": "unsupported_grant_type", "error_description": format!("grant_type {other:?}")}),
                )
            }
        }
        let (user, password) = (form.get("username").unwrap_or_default(), form.get("password").unwrap_or_default());
        match self.users.get(user) {
            Some(expected) if expected == password => {
                let token = self.token(user, &crate::bearer::requested_scopes(form));
                respond(StatusCode::OK, serde_json::json!({ "access_token": token, "expires_in": TOKEN_TTL_SECS }))
            }
            _ => respond(StatusCode::UNAUTHORIZED, serde_json::json!({"details": "incorrect username or password"})),
        }
    }

    /// Serves `/token` on a free loopback port until the returned handle drops.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<LoopbackServer> {
        crate::loopback::serve(move |req: Request<hyper::body::Incoming>| {
            let issuer = self.clone();
            async move {
                let (parts, body) = req.into_parts();
                // Token forms are small; a body that cannot be read is an empty form.
                let body = http_body_util::Limited::new(body, 1 << 20)
                    .collect()
                    .await
                    .map(|collected| collected.to_bytes())
                    .unwrap_or_default();
                issuer.handle(Request::from_parts(parts, body))
            }
        })
        .await
    }

    fn handle(&self, req: Request<Bytes>) -> Response<Body> {
        let respond = |status: StatusCode, body: serde_json::Value| json_as(status, "application/json", &body);
        if req.uri().path() != "/token" {
            return respond(
                StatusCode::NOT_FOUND,
                serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "only /token is served"}]}),
            );
        }
        if req.method() == hyper::Method::POST {
            return self.oauth2(&Form::parse(req.body()));
        }
        let query = Form::parse(req.uri().query().unwrap_or_default());
        let scopes = crate::bearer::requested_scopes(&query);
        let service = query.get("service");
        if service.is_some_and(|s| s != self.service) {
            return respond(
                StatusCode::BAD_REQUEST,
                serde_json::json!({"details": format!("unknown service {service:?}")}),
            );
        }
        let authorization = req.headers().get("authorization").and_then(|v| v.to_str().ok());
        match self.authenticate(authorization) {
            Ok(subject) => {
                let token = self.token(&subject, &scopes);
                respond(
                    StatusCode::OK,
                    serde_json::json!({ "token": token, "access_token": token, "expires_in": TOKEN_TTL_SECS }),
                )
            }
            Err(()) => {
                let mut response =
                    respond(StatusCode::UNAUTHORIZED, serde_json::json!({"details": "incorrect username or password"}));
                response.headers_mut().insert(
                    "www-authenticate",
                    challenge("Basic", "ko-matrix token server", &[]).parse().expect("a valid header"),
                );
                response
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_carry_the_signing_chain_and_access() {
        let ca = Ca::new().unwrap();
        let issuer = TokenIssuer::new(
            &ca,
            "ko-matrix-token",
            "token.ko-matrix.test",
            BTreeMap::from([("u".into(), "p".into())]),
        )
        .unwrap();
        let token = issuer.token("u", &["repository:app:push,pull".into()]);
        let header = jsonwebtoken::decode_header(&token).unwrap();
        assert_eq!(header.alg, jsonwebtoken::Algorithm::ES256);
        assert_eq!(header.x5c.unwrap().len(), 1);
        let payload = token.split('.').nth(1).unwrap();
        let claims: serde_json::Value =
            serde_json::from_slice(&base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
        assert_eq!(claims["aud"], "token.ko-matrix.test");
        assert_eq!(claims["access"][0]["actions"], serde_json::json!(["push", "pull"]));
        assert_eq!(issuer.authenticate(Some("Basic dTpw")), Ok("u".into()));
        assert_eq!(issuer.authenticate(Some("Basic dTp4")), Err(()));
        assert_eq!(issuer.authenticate(None), Ok(String::new()));
        assert!(issuer.token("", &["repository:app:push".into()]).len() > 10);
    }

    #[test]
    fn the_oauth2_password_grant() {
        let ca = Ca::new().unwrap();
        let users = BTreeMap::from([("u".to_string(), "p".to_string())]);
        let issuer = TokenIssuer::new(&ca, "issuer", "token.ko-matrix.test", users).unwrap();
        let post = |body: &str| {
            let request = Request::post("/token").body(Bytes::from(body.to_string())).expect("a valid request");
            issuer.handle(request).status()
        };
        let scope = "scope=repository%3Aapp%3Apull%2Cpush&service=token.ko-matrix.test";
        assert_eq!(post(&format!("grant_type=password&username=u&password=p&{scope}")), StatusCode::OK);
        assert_eq!(post(&format!("grant_type=password&username=u&password=x&{scope}")), StatusCode::UNAUTHORIZED);
        assert_eq!(post(&format!("grant_type=refresh_token&refresh_token=r&{scope}")), StatusCode::UNAUTHORIZED);
        assert_eq!(post(&format!("grant_type=client_credentials&{scope}")), StatusCode::BAD_REQUEST);
        assert_eq!(post("grant_type=password&username=u&password=p&service=elsewhere"), StatusCode::BAD_REQUEST);
    }
}
