//! The GitLab container registry, self-hosted: the registry at `registry.gitlab.example.com`,
//! its tokens from GitLab itself at `gitlab.example.com/jwt/auth` (service
//! `container_registry`), not from the registry host. The wire facts and their sources are in
//! `docs/selfhosted-wire-reference.md` (GitLab).
//!
//! - Credentials: a user's password or personal access token, a deploy token (login
//!   `gitlab+deploy-token-<n>`, scopes `read_registry`, `write_registry`) or a CI job token
//!   (login `gitlab-ci-token`, password `$CI_JOB_TOKEN`); the login must be the credential's.
//!   `/jwt/auth` refuses others with 401 `UNAUTHORIZED: HTTP Basic: Access denied`.
//! - A repository belongs to the project its path starts with (`<group>/<project>[/<image>]`);
//!   each credential reaches its own project only (a job token: its job's project).
//! - Actions the credential may not take are dropped from the token silently; the registry
//!   then answers 401 with `error="insufficient_scope"` (distribution's token access
//!   controller; GitLab's fork's exact body is unconfirmed).

use hyper::{Response, StatusCode};

use crate::bearer::{insufficient_scope, BadCredentials, Grant, Principal, Vendor};
use crate::wire::{distribution_error, Body};

/// The registry host users push to.
pub const HOST: &str = "registry.gitlab.example.com";
/// GitLab itself, where `/jwt/auth` is.
pub const GITLAB_HOST: &str = "gitlab.example.com";
const SERVICE: &str = "container_registry";

/// Whether `repository` lies in `project` (`group/project`): the project itself or an image
/// below it.
fn in_project(repository: &str, project: &str) -> bool {
    repository.strip_prefix(project).is_some_and(|rest| rest.is_empty() || rest.starts_with('/'))
}

/// GitLab's token flow.
pub struct Gitlab;

impl Vendor for Gitlab {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn auth_host(&self) -> &'static str {
        GITLAB_HOST
    }

    fn token_path(&self) -> &'static str {
        "/jwt/auth"
    }

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn checks_user(&self) -> bool {
        true
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "HTTP Basic: Access denied")
    }

    /// The credential's own project only, as far as its abilities reach.
    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        principal.filter(|_| in_project(repository, owner)).map_or_else(Vec::new, |p| p.granted(requested))
    }

    fn refuse_action(&self, _: &Grant, repository: &str, action: &str) -> Response<Body> {
        insufficient_scope(self, repository, action)
    }
}

/// GitLab's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry =
            crate::vendor::Registry::start(HOST, Box::new(Gitlab), "GitLab registry front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_challenge_names_gitlab_not_the_registry() {
        assert_eq!(
            Gitlab.challenge(None),
            r#"Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry""#
        );
    }

    #[test]
    fn credentials_reach_their_own_project_only() {
        let writer = Principal { user: "gitlab-ci-token".into(), allow: vec!["pull".into(), "push".into()] };
        let asked = ["push".to_string(), "pull".to_string()];
        assert_eq!(Gitlab.grant("g/app", Some(&writer), "g/app", &asked), asked);
        assert_eq!(Gitlab.grant("g/app", Some(&writer), "g/app/cells/x", &asked), asked);
        assert!(Gitlab.grant("g/app", Some(&writer), "g/application", &asked).is_empty(), "another project");
        assert!(Gitlab.grant("g/app", Some(&writer), "g/other", &asked).is_empty());
        let read_registry = Principal { user: "gitlab+deploy-token-1".into(), allow: vec!["pull".into()] };
        assert_eq!(Gitlab.grant("g/app", Some(&read_registry), "g/app", &asked), ["pull"], "push dropped silently");
    }

    #[tokio::test]
    async fn refusals_in_gitlabs_words() {
        use http_body_util::BodyExt;
        let refused = Gitlab.refuse_credentials(BadCredentials::Unknown);
        assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
        let body = refused.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(&body[..], br#"{"errors":[{"code":"UNAUTHORIZED","message":"HTTP Basic: Access denied"}]}"#);
        let grant = Grant {
            subject: "u".into(),
            allow: vec!["pull".into()],
            namespace: "g/app".into(),
            namespaces: Vec::new(),
            access: Vec::new(),
        };
        let denied = Gitlab.refuse_action(&grant, "g/app", "push");
        assert_eq!(
            denied.headers()["www-authenticate"],
            r#"Bearer realm="https://gitlab.example.com/jwt/auth",service="container_registry",scope="repository:g/app:pull,push",error="insufficient_scope""#
        );
    }
}
