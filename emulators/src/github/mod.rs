//! The GitHub Container Registry under its real name, `ghcr.io`: registry API and token
//! endpoint on one host, as GitHub serves them, so go-containerregistry's GitHub keychain
//! (`pkg/authn/github`: `GITHUB_TOKEN`, `GITHUB_ACTOR` or `unset`) and docker-config
//! credentials engage unmodified. The wire facts and their sources are in
//! `docs/keychains-wire-reference.md`.
//!
//! - `/v2/` without a token answers 401 with `Bearer realm="https://ghcr.io/token",
//!   service="ghcr.io",scope="repository:user/image:pull"` (ghcr names that placeholder scope).
//! - `/token` takes Basic `<anything>:<token>` — ghcr ignores the user name, which is why the
//!   keychain can send `unset` — and refuses a token it does not know, or that expired, with
//!   403 `DENIED: denied`.
//! - A token without `packages: write` is granted pull only; a push then answers 403
//!   `DENIED: permission_denied: The token provided does not match expected scopes.`
//! - A repository outside the token's owner, or with upper-case letters (ghcr's package
//!   names are lower-case), is never granted push: 403 `DENIED: permission_denied:
//!   write_package`.

pub mod actions;

use hyper::{Response, StatusCode};

use crate::bearer::{unauthorized, BadCredentials, Grant, Principal, Vendor};
use crate::wire::{distribution_error, Body};

/// The registry's (and token endpoint's) host.
pub const HOST: &str = "ghcr.io";

/// ghcr.io's token flow.
pub struct Ghcr;

impl Vendor for Ghcr {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn challenge(&self, scope: Option<&str>) -> String {
        let scope = scope.unwrap_or("repository:user/image:pull");
        crate::wire::challenge("Bearer", &format!("https://{HOST}/token"), &[("service", HOST), ("scope", scope)])
    }

    fn checks_user(&self) -> bool {
        false
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        distribution_error(StatusCode::FORBIDDEN, "DENIED", "denied")
    }

    /// Pull and push in the owner's namespace, as far as the token's permissions reach; push
    /// never on a name with upper-case letters.
    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        let Some(principal) = principal else { return Vec::new() };
        let own = repository.split('/').next().is_some_and(|first| first.eq_ignore_ascii_case(owner));
        let lower = !repository.chars().any(|c| c.is_ascii_uppercase());
        requested
            .iter()
            .filter(|action| own && crate::grants::allows(&principal.allow, action) && (lower || *action != "push"))
            .cloned()
            .collect()
    }

    fn refuse_action(&self, grant: &Grant, repository: &str, action: &str) -> Response<Body> {
        if grant.subject.is_empty() {
            let scope = format!("repository:{repository}:{}", if action == "push" { "push,pull" } else { "pull" });
            return unauthorized(self.challenge(Some(&scope)), "authentication required");
        }
        if action == "push" && !crate::grants::allows(&grant.allow, "push") {
            return distribution_error(
                StatusCode::FORBIDDEN,
                "DENIED",
                "permission_denied: The token provided does not match expected scopes.",
            );
        }
        if action == "push" {
            return distribution_error(StatusCode::FORBIDDEN, "DENIED", "permission_denied: write_package");
        }
        distribution_error(StatusCode::FORBIDDEN, "DENIED", "permission_denied: read_package")
    }
}

/// ghcr.io's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry = crate::vendor::Registry::start(HOST, Box::new(Ghcr), "ghcr.io front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn principal(allow: &[&str]) -> Principal {
        Principal { user: "octocat".into(), allow: allow.iter().map(|a| a.to_string()).collect() }
    }

    fn actions(list: &[&str]) -> Vec<String> {
        list.iter().map(|a| a.to_string()).collect()
    }

    async fn body(response: Response<Body>) -> (u16, String) {
        let status = response.status().as_u16();
        (status, String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap())
    }

    #[test]
    fn the_challenge_names_ghcrs_token_endpoint() {
        assert_eq!(
            Ghcr.challenge(None),
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:user/image:pull""#
        );
        assert!(Ghcr.challenge(Some("repository:o/app:push,pull")).ends_with(r#"scope="repository:o/app:push,pull""#));
    }

    #[test]
    fn grants_follow_owner_permissions_and_case() {
        let push_pull = actions(&["push", "pull"]);
        assert_eq!(Ghcr.grant("octocat", Some(&principal(&["pull", "push"])), "octocat/app", &push_pull), push_pull);
        assert_eq!(
            Ghcr.grant("OctoCat", Some(&principal(&["pull", "push"])), "octocat/app", &push_pull),
            push_pull,
            "owners compare without case"
        );
        assert_eq!(Ghcr.grant("octocat", Some(&principal(&["pull"])), "octocat/app", &push_pull), ["pull"]);
        assert_eq!(
            Ghcr.grant("octocat", Some(&principal(&["pull", "push"])), "OctoCat/app", &push_pull),
            ["pull"],
            "no push to an upper-case name"
        );
        assert!(Ghcr.grant("octocat", Some(&principal(&["pull", "push"])), "someone-else/app", &push_pull).is_empty());
        assert!(Ghcr.grant("octocat", None, "octocat/app", &push_pull).is_empty());
    }

    /// The whole flow over HTTP, as a client behind the gateway sees it.
    #[tokio::test]
    async fn the_token_flow_over_http() {
        use crate::bearer::{AccountSpec, CredentialKind, Front};
        use base64::Engine;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let front = Front::new(Box::new(Ghcr), closed, "ghcr.io front backend");
        let server = front.clone().serve().await.unwrap();
        let read_only = front.open_cell(
            1,
            AccountSpec { user: "octocat".into(), credential: CredentialKind::ReadOnly, ..AccountSpec::default() },
        );
        let expired = front.open_cell(2, AccountSpec { credential: CredentialKind::Expired, ..AccountSpec::default() });
        let client = reqwest::Client::new();
        let get = |path: &str, session: u64| {
            client
                .get(format!("http://{}{path}", server.addr))
                .header("host", HOST)
                .header(crate::wire::SESSION_HEADER, session.to_string())
        };
        let ping = get("/v2/", 1).send().await.unwrap();
        assert_eq!(ping.status(), 401);
        assert_eq!(ping.headers()["www-authenticate"], Ghcr.challenge(None));
        let basic = |user: &str, secret: &str| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
        };
        let scope = "/token?scope=repository%3Aoctocat%2Fapp%3Apush%2Cpull&service=ghcr.io";
        // Any user name: ghcr checks the token only (go-containerregistry may send `unset`).
        let answer: serde_json::Value = get(scope, 1)
            .header("authorization", basic("unset", &read_only.secret))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let token = answer["token"].as_str().unwrap().to_string();
        let bearer = format!("Bearer {token}");
        assert_eq!(get("/v2/", 1).header("authorization", &bearer).send().await.unwrap().status(), 200);
        let upload = client
            .post(format!("http://{}/v2/octocat/app/blobs/uploads/", server.addr))
            .header("host", HOST)
            .header(crate::wire::SESSION_HEADER, "1")
            .header("authorization", &bearer)
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 403);
        assert!(upload.text().await.unwrap().contains("The token provided does not match expected scopes."));
        assert_eq!(
            get("/v2/", 2).header("authorization", &bearer).send().await.unwrap().status(),
            401,
            "a token is the cell's own"
        );
        let refused = get(scope, 2).header("authorization", basic("octocat", &expired.secret)).send().await.unwrap();
        assert_eq!(
            (refused.status().as_u16(), refused.text().await.unwrap()),
            (403, r#"{"errors":[{"code":"DENIED","message":"denied"}]}"#.to_string())
        );
        let anonymous: serde_json::Value = get(scope, 1).send().await.unwrap().json().await.unwrap();
        let head = client
            .head(format!("http://{}/v2/octocat/app/manifests/latest", server.addr))
            .header("host", HOST)
            .header(crate::wire::SESSION_HEADER, "1")
            .bearer_auth(anonymous["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(head.status(), 401, "an anonymous token grants nothing private");
    }

    #[tokio::test]
    async fn refusals_in_ghcrs_words() {
        let grant = |allow: &[&str], subject: &str| Grant {
            subject: subject.into(),
            allow: actions(allow),
            namespace: subject.into(),
            namespaces: Vec::new(),
            access: Vec::new(),
        };
        let (status, text) = body(Ghcr.refuse_action(&grant(&["pull"], "octocat"), "octocat/app", "push")).await;
        assert_eq!(
            (status, text.as_str()),
            (
                403,
                r#"{"errors":[{"code":"DENIED","message":"permission_denied: The token provided does not match expected scopes."}]}"#
            )
        );
        let (status, text) =
            body(Ghcr.refuse_action(&grant(&["pull", "push"], "octocat"), "OctoCat/app", "push")).await;
        assert_eq!((status, text.contains("permission_denied: write_package")), (403, true));
        let anonymous = Ghcr.refuse_action(&grant(&[], ""), "octocat/app", "push");
        assert_eq!(
            anonymous.headers()["www-authenticate"],
            r#"Bearer realm="https://ghcr.io/token",service="ghcr.io",scope="repository:octocat/app:push,pull""#
        );
        let (status, text) = body(Ghcr.refuse_credentials(BadCredentials::Expired)).await;
        assert_eq!((status, text.as_str()), (403, r#"{"errors":[{"code":"DENIED","message":"denied"}]}"#));
    }
}
