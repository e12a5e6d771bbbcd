//! Sonatype Nexus Repository, self-hosted: one Docker hosted repository behind its own
//! subdomain connector, `docker-hosted.nexus.example.com`, with "force basic authentication"
//! on (the default of new Docker repositories): the registry takes Basic `<user>:<password>` on
//! every request and has no token endpoint. The wire facts and their sources are in
//! `docs/selfhosted-wire-reference.md` (Nexus).
//!
//! - A request without working credentials answers 401 `BASIC realm="Sonatype Nexus Repository
//!   Manager"` with `{"errors":[{"code":"UNAUTHORIZED","message":"access to the requested
//!   resource is not authorized","detail":null}]}`.
//! - The connector is the repository: any name below it is the user's to push to, as far as
//!   the user's privileges reach.

use hyper::{Response, StatusCode};

use crate::bearer::{BadCredentials, Grant, Principal, Vendor};
use crate::wire::{json, Body};

/// The hosted repository's connector host.
pub const HOST: &str = "docker-hosted.nexus.example.com";
const CHALLENGE: &str = r#"BASIC realm="Sonatype Nexus Repository Manager""#;

/// Nexus's 401: the Basic challenge and Distribution's unauthorized error, `detail` null.
fn unauthorized() -> Response<Body> {
    let body = serde_json::json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "access to the requested resource is not authorized", "detail": null }] });
    let mut response = json(StatusCode::UNAUTHORIZED, body);
    response.headers_mut().insert("www-authenticate", hyper::header::HeaderValue::from_static(CHALLENGE));
    response
}

/// Nexus's Basic-authenticated Docker connector.
pub struct Nexus;

impl Vendor for Nexus {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn registry_takes_basic(&self) -> bool {
        true
    }

    fn challenge(&self, _scope: Option<&str>) -> String {
        CHALLENGE.into()
    }

    fn checks_user(&self) -> bool {
        true
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        unauthorized()
    }

    /// Any repository behind the connector, as far as the user's privileges reach.
    fn grant(
        &self,
        _owner: &str,
        principal: Option<&Principal>,
        _repository: &str,
        requested: &[String],
    ) -> Vec<String> {
        principal.map_or_else(Vec::new, |p| p.granted(requested))
    }

    /// Unconfirmed: what Nexus answers a user whose privileges lack the action; the 401 it
    /// answers without credentials.
    fn refuse_action(&self, _: &Grant, _repository: &str, _action: &str) -> Response<Body> {
        unauthorized()
    }
}

/// Nexus's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry = crate::vendor::Registry::start(HOST, Box::new(Nexus), "Nexus front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer::{AccountSpec, Front};
    use base64::Engine;

    #[tokio::test]
    async fn the_connector_takes_basic_on_every_request() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let front = Front::new(Box::new(Nexus), closed, "Nexus front backend");
        let server = front.clone().serve().await.unwrap();
        let account = front.open_cell(1, AccountSpec { user: "ci".into(), ..AccountSpec::default() });
        let client = reqwest::Client::new();
        let get = |path: &str| {
            client
                .get(format!("http://{}{path}", server.addr))
                .header("host", HOST)
                .header(crate::wire::SESSION_HEADER, "1")
        };
        let basic = |user: &str, secret: &str| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
        };
        let anonymous = get("/v2/").send().await.unwrap();
        assert_eq!(anonymous.status(), 401);
        assert_eq!(anonymous.headers()["www-authenticate"], CHALLENGE);
        assert_eq!(
            anonymous.text().await.unwrap(),
            r#"{"errors":[{"code":"UNAUTHORIZED","detail":null,"message":"access to the requested resource is not authorized"}]}"#
        );
        let wrong = get("/v2/").header("authorization", basic("ci", "wrong")).send().await.unwrap();
        assert_eq!(wrong.status(), 401);
        let other_user = get("/v2/").header("authorization", basic("admin", &account.secret)).send().await.unwrap();
        assert_eq!(other_user.status(), 401, "the password is the user's");
        let ok = get("/v2/").header("authorization", basic("ci", &account.secret)).send().await.unwrap();
        assert_eq!(ok.status(), 200);
        let token = get("/token?scope=repository:ci/app:pull").header("authorization", basic("ci", &account.secret));
        assert_eq!(token.send().await.unwrap().status(), 404, "no token endpoint");
    }
}
