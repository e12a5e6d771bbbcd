//! Google's registry under its real name, `gcr.io` (today served by Artifact Registry), with
//! the Google services that hand out the access tokens it takes ([`identity`]): OAuth's
//! JWT-bearer grant, STS and IAM Credentials for Workload Identity Federation, and the GCE
//! metadata server. So go-containerregistry's Google keychain (`pkg/v1/google`: Application
//! Default Credentials through golang.org/x/oauth2) and docker-config credentials engage
//! unmodified. The wire facts and their sources are in `docs/keychains-wire-reference.md`.
//!
//! - `/v2/` without a token answers 401 `Bearer realm="https://gcr.io/v2/token",service="gcr.io"`.
//! - `/v2/token` takes Basic `<user>:<Google access token>` (`_token` from ggcr's keychain,
//!   `oauth2accesstoken` from `docker login`); the user name is not checked. An access token
//!   Google does not know, or that expired, is refused with 401 `UNAUTHORIZED: Not Authorized.`
//! - A push scope the principal may not have is refused at the token endpoint, 403
//!   `DENIED: Permission "artifactregistry.repositories.uploadArtifacts" denied on resource
//!   "projects/<p>/locations/us/repositories/gcr.io" (or it may not exist)`; an anonymous
//!   caller gets the `Unauthenticated request. …` variant.

pub mod identity;

use std::sync::Arc;

use hyper::{Response, StatusCode};

use crate::bearer::{Account, BadCredentials, Grant, Principal, Vendor};
use crate::wire::{distribution_error, Body};

/// The registry's (and token endpoint's) host.
pub const HOST: &str = "gcr.io";

/// gcr.io's token flow; Google's identity services vouch for self-signed tokens.
pub struct Gcr {
    pub identity: Arc<identity::GoogleIdentity>,
}

/// The Artifact Registry permission an action needs.
fn permission(action: &str) -> &'static str {
    if action == "push" {
        "artifactregistry.repositories.uploadArtifacts"
    } else {
        "artifactregistry.repositories.downloadArtifacts"
    }
}

/// Artifact Registry's refusal of `action` on `repository` (`<project>/…`).
fn denied(authenticated: bool, repository: &str, action: &str) -> Response<Body> {
    let project = repository.split('/').next().unwrap_or_default();
    let resource = format!("projects/{project}/locations/us/repositories/gcr.io");
    let message = if authenticated {
        format!("Permission \"{}\" denied on resource \"{resource}\" (or it may not exist)", permission(action))
    } else {
        format!("Unauthenticated request. Unauthenticated requests do not have permission \"{}\" on resource \"{resource}\" (or it may not exist)", permission(action))
    };
    distribution_error(StatusCode::FORBIDDEN, "DENIED", &message)
}

impl Vendor for Gcr {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn token_path(&self) -> &'static str {
        "/v2/token"
    }

    fn checks_user(&self) -> bool {
        false
    }

    fn other_credential(&self, account: &Account, secret: &str) -> Option<Result<Principal, BadCredentials>> {
        self.identity.self_signed(account, secret)
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", "Not Authorized.")
    }

    fn refuse_token(
        &self,
        principal: Option<&Principal>,
        repository: &str,
        requested: &[String],
        granted: &[String],
    ) -> Option<Response<Body>> {
        let missing = requested.iter().find(|action| !granted.contains(action))?;
        Some(denied(principal.is_some(), repository, missing))
    }

    fn refuse_action(&self, grant: &Grant, repository: &str, action: &str) -> Response<Body> {
        denied(!grant.subject.is_empty(), repository, action)
    }
}

/// gcr.io's part of a world ([`crate::vendor`]), with Google's identity services.
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        // RSA key generation takes a while: off the runtime's threads.
        let generated =
            tokio::task::spawn_blocking(identity::GoogleIdentity::new).await.expect("key generation does not panic");
        let identity = Arc::new(generated.map_err(|e| {
            crate::vendor::StartError::Key(format!("generating the run's Google service-account key: {e}"))
        })?);
        let gcr = Box::new(Gcr { identity: identity.clone() });
        let registry = crate::vendor::Registry::start(HOST, gcr, "gcr.io front backend", Some(identity), &backing);
        Ok(Arc::new(registry.await?) as Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gcr() -> Gcr {
        Gcr { identity: Arc::new(identity::GoogleIdentity::new().unwrap()) }
    }

    #[test]
    fn the_challenge_names_gcrs_token_endpoint() {
        let gcr = gcr();
        assert_eq!(gcr.challenge(None), r#"Bearer realm="https://gcr.io/v2/token",service="gcr.io""#);
        assert!(gcr.challenge(Some("repository:p/app:push,pull")).ends_with(r#",scope="repository:p/app:push,pull""#));
    }

    #[tokio::test]
    async fn a_push_scope_the_principal_lacks_is_refused_at_the_token_endpoint() {
        use http_body_util::BodyExt;
        let gcr = gcr();
        let reader = Principal { user: "ci@p.iam.gserviceaccount.com".into(), allow: vec!["pull".into()] };
        let asked = ["push".to_string(), "pull".to_string()];
        let granted = gcr.grant("p", Some(&reader), "p/app", &asked);
        assert_eq!(granted, ["pull"]);
        let refusal = gcr.refuse_token(Some(&reader), "p/app", &asked, &granted).expect("push is missing");
        assert_eq!(refusal.status(), StatusCode::FORBIDDEN);
        let body = String::from_utf8(refusal.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert_eq!(
            body,
            r#"{"errors":[{"code":"DENIED","message":"Permission \"artifactregistry.repositories.uploadArtifacts\" denied on resource \"projects/p/locations/us/repositories/gcr.io\" (or it may not exist)"}]}"#
        );
        let anonymous = gcr.refuse_token(None, "p/app", &asked, &[]).unwrap();
        let body = String::from_utf8(anonymous.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap();
        assert!(body.contains("Unauthenticated request. Unauthenticated requests do not have permission"), "{body}");
        assert!(gcr.refuse_token(Some(&reader), "p/app", &["pull".to_string()], &["pull".to_string()]).is_none());
    }
}
