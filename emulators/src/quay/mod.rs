//! Quay (Red Hat Quay), self-hosted under `quay.example.com`: registry and token endpoint
//! (`/v2/auth`) on one host, `service` the server's host name. The wire facts, read from Quay's
//! source, are in `docs/selfhosted-wire-reference.md` (Quay).
//!
//! - Robot accounts are `<org>+<name>`; a robot reaches its organisation's repositories, a user
//!   the account's `owner` namespace. Repository names are `<namespace>/<name>`, one level.
//! - `/v2/auth` refuses credentials it does not accept with 401 `UNAUTHORIZED` and drops
//!   ungranted actions from the token silently.
//! - The registry answers a request its token does not cover with 401 `UNAUTHORIZED: access to
//!   the requested resource is not authorized` and the Bearer challenge for the scope.

use hyper::{Response, StatusCode};

use crate::bearer::{BadCredentials, Grant, Principal, Vendor};
use crate::wire::{json, Body};

/// The server's host name (`SERVER_HOSTNAME`).
pub const HOST: &str = "quay.example.com";

/// The organisation of a robot account `<org>+<name>`; `None` for a user.
pub fn robot_namespace(user: &str) -> Option<&str> {
    let (namespace, name) = user.split_once('+')?;
    (!namespace.is_empty() && !name.is_empty()).then_some(namespace)
}

/// Quay's error answer: `detail` is always there, `{}` when empty.
fn quay_error(status: StatusCode, code: &str, message: &str) -> Response<Body> {
    json(status, serde_json::json!({ "errors": [{ "code": code, "message": message, "detail": {} }] }))
}

/// Quay's token flow.
pub struct Quay;

impl Vendor for Quay {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn token_path(&self) -> &'static str {
        "/v2/auth"
    }

    /// A robot's token must be presented under the robot's name; a user's password under the
    /// user's.
    fn checks_user(&self) -> bool {
        true
    }

    /// `InvalidLogin` with its default message; Quay puts the authenticator's own message there
    /// when it has one (which one, per authenticator, is unconfirmed).
    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        quay_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Specified credentials are invalid")
    }

    fn nested_names(&self) -> bool {
        false
    }

    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        let own = |p: &&Principal| {
            let namespace = robot_namespace(&p.user).unwrap_or(owner);
            repository.split_once('/').is_some_and(|(first, _)| first == namespace)
        };
        principal.filter(own).map_or_else(Vec::new, |p| p.granted(requested))
    }

    fn refuse_action(&self, _: &Grant, repository: &str, action: &str) -> Response<Body> {
        let actions = if action == "push" { "push,pull" } else { "pull" };
        let mut response =
            quay_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "access to the requested resource is not authorized");
        let challenge = self.repository_challenge(repository, actions);
        response.headers_mut().insert("www-authenticate", challenge.parse().expect("a challenge is a valid header"));
        response
    }
}

/// Quay's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry = crate::vendor::Registry::start(HOST, Box::new(Quay), "Quay front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn robot_names_carry_their_organisation() {
        assert_eq!(robot_namespace("ko-matrix+ci"), Some("ko-matrix"));
        assert_eq!(robot_namespace("alice"), None);
        assert_eq!(robot_namespace("+ci"), None);
    }

    #[test]
    fn the_challenge_names_quays_auth_endpoint_and_host() {
        assert_eq!(
            Quay.challenge(None),
            r#"Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com""#
        );
    }

    #[test]
    fn robots_reach_their_organisation_and_users_their_namespace() {
        let asked = ["push".to_string(), "pull".to_string()];
        let robot = Principal { user: "org+ci".into(), allow: vec!["pull".into(), "push".into()] };
        assert_eq!(Quay.grant("elsewhere", Some(&robot), "org/app", &asked), asked);
        assert!(Quay.grant("org", Some(&robot), "other/app", &asked).is_empty());
        let user = Principal { user: "alice".into(), allow: vec!["pull".into()] };
        assert_eq!(Quay.grant("alice", Some(&user), "alice/app", &asked), ["pull"]);
        assert!(Quay.grant("alice", None, "alice/app", &asked).is_empty());
    }

    #[tokio::test]
    async fn refusals_in_quays_words() {
        use http_body_util::BodyExt;
        let grant = Grant {
            subject: "org+ci".into(),
            allow: Vec::new(),
            namespace: "org".into(),
            namespaces: Vec::new(),
            access: Vec::new(),
        };
        let denied = Quay.refuse_action(&grant, "org/app", "push");
        assert_eq!(denied.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            denied.headers()["www-authenticate"],
            r#"Bearer realm="https://quay.example.com/v2/auth",service="quay.example.com",scope="repository:org/app:push,pull""#
        );
        let body = denied.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(
            &body[..],
            br#"{"errors":[{"code":"UNAUTHORIZED","detail":{},"message":"access to the requested resource is not authorized"}]}"#
        );
    }
}
