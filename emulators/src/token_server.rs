//! A Docker-Hub-style token server: clients present Basic credentials (or none) to
//! `GET /token?service=…&scope=repository:<name>:push,pull` and get a JWT that distribution
//! verifies against the run's CA (`x5c` header with the signing certificate).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
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

    /// Serves `/token` on a free loopback port until the returned handle drops.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<LoopbackServer> {
        crate::loopback::serve(move |req| {
            let issuer = self.clone();
            async move { issuer.handle(req) }
        })
        .await
    }

    fn handle<B>(&self, req: Request<B>) -> Response<Body> {
        let respond = |status: StatusCode, body: serde_json::Value| json_as(status, "application/json", &body);
        if req.uri().path() != "/token" {
            return respond(
                StatusCode::NOT_FOUND,
                serde_json::json!({"errors": [{"code": "NOT_FOUND", "message": "only /token is served"}]}),
            );
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
}
