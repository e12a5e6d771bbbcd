//! JFrog Artifactory, self-hosted under `artifactory.example.com`, its Docker repositories
//! reached by the Repository Path method: `artifactory.example.com/<repository key>/<image>`.
//! The wire facts and their sources (and what is unconfirmed) are in
//! `docs/selfhosted-wire-reference.md` (Artifactory).
//!
//! - Docker clients speak the token flow: `/v2/` answers 401 with a Bearer challenge; the
//!   token endpoints are `/artifactory/api/docker/<key>/v2/token` (`null` for the ping, which
//!   names no repository), and a repository request's challenge names its repository's endpoint
//!   and a scope without the key.
//! - The token endpoints take Basic `<user>:<password>`, or the user's identity token in place
//!   of the password; a bad one is 401 `{"statusCode":401,"details":"BAD_CREDENTIAL"}`, no
//!   credentials at all 406 (anonymous access off).
//! - The cell's Artifactory has one local Docker repository, the account's `owner`.
//! - A missing tag is 404 `MANIFEST_UNKNOWN` `The named manifest is not known to the registry.`
//!   with the image in `detail`.

use hyper::{Response, StatusCode};

use crate::bearer::{unauthorized, BadCredentials, Grant, Principal, Vendor};
use crate::wire::{full, json, json_as, Body};

/// The host users push to.
pub const HOST: &str = "artifactory.example.com";
/// The repository key of token endpoints that name none (the ping's challenge).
const NO_KEY: &str = "null";

/// The key of a token endpoint path `/artifactory/api/docker/<key>/v2/token`.
fn token_key(path: &str) -> Option<&str> {
    let key = path.strip_prefix("/artifactory/api/docker/")?.strip_suffix("/v2/token")?;
    (!key.is_empty() && !key.contains('/')).then_some(key)
}

fn realm(key: &str) -> String {
    format!("https://{HOST}/artifactory/api/docker/{key}/v2/token")
}

/// Artifactory's token flow.
pub struct Artifactory;

impl Vendor for Artifactory {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn is_token_path(&self, path: &str) -> bool {
        token_key(path).is_some()
    }

    /// A repository's own token endpoint takes image names relative to its key; the `null` one
    /// takes whole paths.
    fn scope_repository(&self, token_path: &str, name: &str) -> String {
        match token_key(token_path) {
            Some(key) if key != NO_KEY => format!("{key}/{name}"),
            _ => name.to_string(),
        }
    }

    fn challenge(&self, scope: Option<&str>) -> String {
        let mut params = vec![("service", HOST)];
        params.extend(scope.map(|scope| ("scope", scope)));
        crate::wire::challenge("Bearer", &realm(NO_KEY), &params)
    }

    fn repository_challenge(&self, repository: &str, actions: &str) -> String {
        let (key, image) = repository.split_once('/').unwrap_or((repository, ""));
        let scope = format!("repository:{image}:{actions}");
        crate::wire::challenge("Bearer", &realm(key), &[("service", HOST), ("scope", &scope)])
    }

    /// The identity token belongs to its user: it goes with the user's name.
    fn checks_user(&self) -> bool {
        true
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        let body = serde_json::json!({ "statusCode": 401, "details": "BAD_CREDENTIAL" });
        json_as(StatusCode::UNAUTHORIZED, "application/json", &body)
    }

    /// Anonymous access off: a token request without credentials is not acceptable.
    fn refuse_anonymous(&self, _scoped: bool) -> Option<Response<Body>> {
        let mut response = Response::new(full(bytes::Bytes::new()));
        *response.status_mut() = StatusCode::NOT_ACCEPTABLE;
        Some(response)
    }

    /// What the user may do in the cell's repository (the account's `owner` key).
    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        let own = repository.split_once('/').is_some_and(|(key, _)| key == owner);
        principal.filter(|_| own).map_or_else(Vec::new, |p| p.granted(requested))
    }

    /// Unconfirmed wording: distribution's `authentication required` under the repository's
    /// challenge.
    fn refuse_action(&self, _: &Grant, repository: &str, action: &str) -> Response<Body> {
        let actions = if action == "push" { "push,pull" } else { "pull" };
        unauthorized(self.repository_challenge(repository, actions), "authentication required")
    }

    fn manifest_unknown(&self, repository: &str, _reference: &str) -> Option<Response<Body>> {
        let image = repository.split_once('/').map_or(repository, |(_, image)| image);
        let body = serde_json::json!({ "errors": [{ "code": "MANIFEST_UNKNOWN", "message": "The named manifest is not known to the registry.", "detail": { "manifest": image } }] });
        Some(json(StatusCode::NOT_FOUND, body))
    }
}

/// Artifactory's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry =
            crate::vendor::Registry::start(HOST, Box::new(Artifactory), "Artifactory front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    #[test]
    fn token_endpoints_are_per_repository_key() {
        assert_eq!(token_key("/artifactory/api/docker/docker-local/v2/token"), Some("docker-local"));
        assert_eq!(token_key("/artifactory/api/docker/null/v2/token"), Some("null"));
        assert_eq!(token_key("/artifactory/api/docker//v2/token"), None);
        assert_eq!(token_key("/v2/token"), None);
        assert_eq!(
            Artifactory.scope_repository("/artifactory/api/docker/docker-local/v2/token", "team/app"),
            "docker-local/team/app"
        );
        assert_eq!(
            Artifactory.scope_repository("/artifactory/api/docker/null/v2/token", "docker-local/team/app"),
            "docker-local/team/app"
        );
    }

    #[test]
    fn challenges_name_the_repositorys_token_endpoint() {
        assert_eq!(
            Artifactory.challenge(None),
            r#"Bearer realm="https://artifactory.example.com/artifactory/api/docker/null/v2/token",service="artifactory.example.com""#
        );
        assert_eq!(
            Artifactory.repository_challenge("docker-local/team/app", "pull"),
            r#"Bearer realm="https://artifactory.example.com/artifactory/api/docker/docker-local/v2/token",service="artifactory.example.com",scope="repository:team/app:pull""#
        );
    }

    #[test]
    fn grants_cover_the_cells_repository_key() {
        let user = Principal { user: "ci".into(), allow: vec!["pull".into(), "push".into()] };
        let asked = ["push".to_string(), "pull".to_string()];
        assert_eq!(Artifactory.grant("docker-local", Some(&user), "docker-local/app", &asked), asked);
        assert!(Artifactory.grant("docker-local", Some(&user), "docker-remote/app", &asked).is_empty());
        assert!(Artifactory.grant("docker-local", None, "docker-local/app", &asked).is_empty());
    }

    #[tokio::test]
    async fn answers_in_artifactorys_words() {
        let bad = Artifactory.refuse_credentials(BadCredentials::Unknown);
        assert_eq!(bad.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(
            &bad.into_body().collect().await.unwrap().to_bytes()[..],
            br#"{"details":"BAD_CREDENTIAL","statusCode":401}"#
        );
        assert_eq!(Artifactory.refuse_anonymous(true).unwrap().status(), StatusCode::NOT_ACCEPTABLE);
        let unknown = Artifactory.manifest_unknown("docker-local/team/app", "latest").unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            &unknown.into_body().collect().await.unwrap().to_bytes()[..],
            br#"{"errors":[{"code":"MANIFEST_UNKNOWN","detail":{"manifest":"team/app"},"message":"The named manifest is not known to the registry."}]}"#
        );
    }
}
