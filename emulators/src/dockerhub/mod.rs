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
}
