//! Docker Hub under its real names: the registry API at `registry-1.docker.io` (what the
//! docker CLI and oras call `docker.io`) and `index.docker.io` (go-containerregistry's name
//! for it), tokens from `auth.docker.io`, so every client's mapping of `docker.io` names and of
//! the classic config.json key `https://index.docker.io/v1/` engages unmodified. The wire facts
//! and their sources are in `docs/keychains-wire-reference.md`.
//!
//! - `/v2/` without a token answers 401 `Bearer realm="https://auth.docker.io/token",
//!   service="registry.docker.io"`.
//! - `auth.docker.io/token` checks Basic `user:password` (or `user:<access token>`) and
//!   answers 401 `{"details":"incorrect username or password"}` otherwise; anonymous callers
//!   get pull on public repositories only.
//! - A push the token does not cover answers 401 `UNAUTHORIZED: authentication required`
//!   with `error="insufficient_scope"` in the challenge (the docker CLI shows it as `denied:
//!   requested access to the resource is denied`).

use hyper::{Response, StatusCode};

use crate::bearer::{insufficient_scope, BadCredentials, Grant, Vendor};
use crate::wire::{json, Body};

/// The name users write (`docker.io/user/app`) and docker config keys may hold.
pub const HOST: &str = "docker.io";
/// The registry API hosts: the docker CLI's and oras's, then go-containerregistry's.
pub const REGISTRY_HOSTS: [&str; 2] = ["registry-1.docker.io", "index.docker.io"];
/// The token service's host.
pub const AUTH_HOST: &str = "auth.docker.io";
/// The public repository the run's base image is served from.
pub const PUBLIC_BASE: &str = "ko-matrix/base";

/// Whether a request to `host` is a request to the registry users call `registry` (every
/// Docker Hub name means the same registry).
pub fn same_registry(registry: &str, host: &str) -> bool {
    let hub = |h: &str| h == HOST || REGISTRY_HOSTS.contains(&h);
    registry == host || (hub(registry) && hub(host))
}

/// The names a tool may print for `repository` (`docker.io/u/app`): go-containerregistry
/// writes Docker Hub's as `index.docker.io/u/app`.
pub fn printed_names(repository: &str) -> Vec<String> {
    let mut names = vec![repository.to_string()];
    if let Some(path) = repository.strip_prefix("docker.io/") {
        names.push(format!("index.docker.io/{path}"));
    }
    names
}

/// Docker Hub's token flow.
pub struct DockerHub;

const SERVICE: &str = "registry.docker.io";

impl Vendor for DockerHub {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &REGISTRY_HOSTS
    }

    fn auth_host(&self) -> &'static str {
        AUTH_HOST
    }

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn checks_user(&self) -> bool {
        true
    }

    /// The distribution spec's OAuth2 document is Docker Hub's flow (its example posts
    /// `service=hub.docker.io&client_id=dockerengine`), and docker's own client posts the
    /// password grant to auth.docker.io (distribution's registry/client/auth/session.go,
    /// fetchTokenWithOAuth, with offline access).
    fn password_grant(&self) -> bool {
        true
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        let mut response =
            json(StatusCode::UNAUTHORIZED, serde_json::json!({ "details": "incorrect username or password" }));
        response.headers_mut().remove("docker-distribution-api-version");
        response
    }

    fn nested_names(&self) -> bool {
        false
    }

    fn is_public(&self, repository: &str) -> bool {
        repository == PUBLIC_BASE || repository.starts_with("library/")
    }

    fn refuse_action(&self, _: &Grant, repository: &str, action: &str) -> Response<Body> {
        insufficient_scope(self, repository, action)
    }
}

/// Docker Hub's part of a world ([`crate::vendor`]), with its public `ko-matrix/base`.
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry =
            crate::vendor::Registry::start(HOST, Box::new(DockerHub), "Docker Hub front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?.with_public(PUBLIC_BASE))
            as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer::Principal;

    #[test]
    fn every_hub_name_is_one_registry() {
        assert!(same_registry("docker.io", "index.docker.io"));
        assert!(same_registry("docker.io", "registry-1.docker.io"));
        assert!(!same_registry("docker.io", "auth.docker.io"));
        assert!(!same_registry("ghcr.io", "index.docker.io"));
        assert!(same_registry("ghcr.io", "ghcr.io"));
        assert_eq!(printed_names("docker.io/u/app"), ["docker.io/u/app", "index.docker.io/u/app"]);
        assert_eq!(printed_names("ghcr.io/u/app"), ["ghcr.io/u/app"]);
    }

    #[test]
    fn challenges_and_refusals_in_hubs_words() {
        assert_eq!(
            DockerHub.challenge(None),
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io""#
        );
        let grant = Grant {
            subject: "u".into(),
            allow: vec!["pull".into()],
            namespace: "u".into(),
            namespaces: Vec::new(),
            access: Vec::new(),
        };
        let refused = DockerHub.refuse_action(&grant, "u/app", "push");
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            refused.headers()["www-authenticate"],
            r#"Bearer realm="https://auth.docker.io/token",service="registry.docker.io",scope="repository:u/app:pull,push",error="insufficient_scope""#
        );
        assert_eq!(DockerHub.refuse_credentials(BadCredentials::Unknown).status(), StatusCode::UNAUTHORIZED);
    }

    #[test]
    fn only_the_users_namespace_is_writable_and_public_images_are_readable() {
        let principal = Principal { user: "u".into(), allow: vec!["pull".into(), "push".into()] };
        let push_pull = vec!["push".to_string(), "pull".to_string()];
        assert_eq!(DockerHub.grant("u", Some(&principal), "u/app", &push_pull), push_pull);
        assert!(DockerHub.grant("u", Some(&principal), "other/app", &push_pull).is_empty());
        assert!(
            DockerHub.is_public(PUBLIC_BASE) && DockerHub.is_public("library/alpine") && !DockerHub.is_public("u/app")
        );
    }

    /// The OAuth2 password grant at auth.docker.io, as regclient before v0.8 posts it first;
    /// ghcr.io takes no OAuth2 form and answers 404, which tells a client to use GET.
    #[tokio::test]
    async fn the_password_grant_where_the_vendor_takes_it() {
        use crate::bearer::{AccountSpec, Front};
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let hub = Front::new(Box::new(DockerHub), closed, "Docker Hub front backend");
        let ghcr = Front::new(Box::new(crate::github::Ghcr), closed, "ghcr.io front backend");
        let (hub_server, ghcr_server) = (hub.clone().serve().await.unwrap(), ghcr.clone().serve().await.unwrap());
        let account = hub.open_cell(1, AccountSpec { user: "kobuilder".into(), ..AccountSpec::default() });
        let ghcr_account = ghcr.open_cell(1, AccountSpec { user: "octocat".into(), ..AccountSpec::default() });
        let client = reqwest::Client::new();
        let post = |addr: std::net::SocketAddr, host: &str, pairs: Vec<(&'static str, String)>| {
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            client
                .post(format!("http://{addr}/token"))
                .header("host", host)
                .header(crate::wire::SESSION_HEADER, "1")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
                .send()
        };
        let form = |user: &'static str, password: String| {
            vec![
                ("grant_type", "password".to_string()),
                ("username", user.to_string()),
                ("password", password),
                ("service", SERVICE.to_string()),
                ("scope", "repository:kobuilder/app:pull,push".to_string()),
                ("client_id", "regclient".to_string()),
            ]
        };

        let granted = post(hub_server.addr, AUTH_HOST, form("kobuilder", account.secret.clone())).await.unwrap();
        assert_eq!(granted.status(), 200);
        let token: serde_json::Value = granted.json().await.unwrap();
        let ping = client
            .get(format!("http://{}/v2/", hub_server.addr))
            .header("host", "registry-1.docker.io")
            .header(crate::wire::SESSION_HEADER, "1")
            .header("authorization", format!("Bearer {}", token["access_token"].as_str().unwrap()))
            .send()
            .await
            .unwrap();
        assert_eq!(ping.status(), 200, "the registry takes the token");

        let wrong = post(hub_server.addr, AUTH_HOST, form("kobuilder", "nope".into())).await.unwrap();
        assert_eq!(wrong.status(), 401);
        let other_user = post(hub_server.addr, AUTH_HOST, form("someone", account.secret.clone())).await.unwrap();
        assert_eq!(other_user.status(), 401, "Docker Hub checks the user name");

        let not_here =
            post(ghcr_server.addr, crate::github::HOST, form("octocat", ghcr_account.secret.clone())).await.unwrap();
        assert_eq!(not_here.status(), 404);
    }
}
