//! Azure Container Registry under a real name, `komatrix.azurecr.io`, with Entra ID and the
//! instance metadata service beside it ([`entra`]), so ko's ACR link
//! (`github.com/chrismellard/docker-credential-acr-env`, over go-autorest's `adal`) and
//! docker-config credentials engage unmodified. The wire facts and their sources are in
//! `docs/keychains-wire-reference.md` (Azure).
//!
//! - `/v2/` without a token answers 401 `Bearer realm="https://komatrix.azurecr.io/oauth2/token",
//!   service="komatrix.azurecr.io"` (with the request's `scope` on repository requests).
//! - `POST /oauth2/exchange` (`grant_type=access_token`, `service`, `tenant`, `access_token`)
//!   takes an Entra access token issued to the cell (audience Resource Manager or ACR, tenant
//!   as given) and answers `{"refresh_token": …}`, an ACR refresh token carrying the identity's
//!   role (AcrPush: pull and push; AcrPull: pull).
//! - `/oauth2/token` answers registry tokens: `GET` with Basic `<admin user>:<admin password>` or
//!   `00000000-0000-0000-0000-000000000000:<refresh token>`, and `POST grant_type=refresh_token`
//!   (go-containerregistry's form for a helper's identity token).
//! - Refusals in ACR's words: 401 `UNAUTHORIZED: authentication required, visit
//!   https://aka.ms/acr/authorization for more information.`

pub mod entra;

use std::sync::Arc;

use hyper::http::request::Parts;
use hyper::{Response, StatusCode};

use crate::bearer::{json, unauthorized, Account, BadCredentials, Grant, Principal, Vendor};
use crate::grants::{allows, Refusal};
use crate::registry_front::{distribution_error, Body};
pub use entra::{AzureSpec, Entra, EntraCell};

/// The registry's name and host.
pub const REGISTRY_NAME: &str = "komatrix";
pub const HOST: &str = "komatrix.azurecr.io";
/// The user name ACR's refresh tokens go with (`az acr login --expose-token`).
pub const TOKEN_USER: &str = "00000000-0000-0000-0000-000000000000";
/// ACR's refresh tokens live three hours.
const REFRESH_TOKEN_TTL: time::Duration = time::Duration::hours(3);
/// ACR's answer to a request it does not authorize, whatever the reason.
pub const UNAUTHORIZED_MESSAGE: &str =
    "authentication required, visit https://aka.ms/acr/authorization for more information.";

/// ACR's token flow, with Entra ID behind its exchange.
pub(crate) struct Acr {
    pub entra: Arc<Entra>,
}

impl Acr {
    /// `POST /oauth2/exchange`: an Entra access token for an ACR refresh token.
    fn exchange(&self, session: Option<u64>, account: Option<&Account>, body: &[u8]) -> Response<Body> {
        let form: Vec<(String, String)> = url::form_urlencoded::parse(body).into_owned().collect();
        let field =
            |name: &str| form.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str()).filter(|v| !v.is_empty());
        if field("grant_type") != Some("access_token") {
            return distribution_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                &format!("grant_type {:?} is not supported", field("grant_type").unwrap_or_default()),
            );
        }
        if field("service") != Some(HOST) {
            return distribution_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                &format!("unknown service {:?}", field("service").unwrap_or_default()),
            );
        }
        let refused = || distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE);
        let (Some(account), Some(access_token)) = (account, field("access_token")) else { return refused() };
        let token = match self.entra.check_token(session, access_token) {
            Ok(token) => token,
            Err(Refusal::Unknown | Refusal::Expired) => return refused(),
        };
        let audience = token.audience.trim_end_matches('/');
        if ![entra::ARM_RESOURCE, entra::ACR_RESOURCE].iter().any(|a| a.trim_end_matches('/') == audience) {
            return refused();
        }
        if field("tenant").is_some_and(|t| !t.eq_ignore_ascii_case(&token.tenant)) {
            return refused();
        }
        let refresh_token =
            account.issue(Principal { user: TOKEN_USER.into(), allow: token.role.actions() }, REFRESH_TOKEN_TTL);
        json(StatusCode::OK, serde_json::json!({ "refresh_token": refresh_token }))
    }
}

impl Vendor for Acr {
    fn name(&self) -> &'static str {
        HOST
    }

    fn relative_locations(&self) -> bool {
        true
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn token_path(&self) -> &'static str {
        "/oauth2/token"
    }

    /// The admin user is the registry's name; refresh tokens go with [`TOKEN_USER`].
    fn checks_user(&self) -> bool {
        true
    }

    fn refresh_tokens(&self) -> bool {
        true
    }

    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", UNAUTHORIZED_MESSAGE)
    }

    /// Any repository of the registry, as far as the role reaches (ACR roles are registry-wide).
    fn grant(
        &self,
        _owner: &str,
        principal: Option<&Principal>,
        _repository: &str,
        requested: &[String],
    ) -> Vec<String> {
        let Some(principal) = principal else { return Vec::new() };
        requested.iter().filter(|action| allows(&principal.allow, action)).cloned().collect()
    }

    fn extra_endpoint(
        &self,
        session: Option<u64>,
        account: Option<&Account>,
        parts: &Parts,
        body: &[u8],
    ) -> Option<Response<Body>> {
        (parts.uri.path() == "/oauth2/exchange").then(|| match parts.method {
            hyper::Method::POST => self.exchange(session, account, body),
            _ => distribution_error(StatusCode::METHOD_NOT_ALLOWED, "UNSUPPORTED", "The operation is unsupported."),
        })
    }

    /// ACR answers a token without the action as it answers no token: 401 with the challenge.
    fn refuse_action(&self, _grant: &Grant, repository: &str, action: &str) -> Response<Body> {
        let scope = format!("repository:{repository}:{}", if action == "push" { "push,pull" } else { "pull" });
        unauthorized(self.challenge(Some(&scope)), UNAUTHORIZED_MESSAGE)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer::{AccountSpec, Front};
    use base64::Engine;

    #[test]
    fn the_challenge_names_acrs_token_endpoint() {
        let acr = Acr { entra: Entra::new() };
        assert_eq!(
            acr.challenge(None),
            r#"Bearer realm="https://komatrix.azurecr.io/oauth2/token",service="komatrix.azurecr.io""#
        );
        assert!(acr.challenge(Some("repository:a:pull")).ends_with(r#",scope="repository:a:pull""#));
        let pull = Principal { user: TOKEN_USER.into(), allow: entra::Role::AcrPull.actions() };
        let wanted = vec!["push".to_string(), "pull".to_string()];
        assert_eq!(acr.grant("anyone", Some(&pull), "any/repo", &wanted), ["pull"]);
        assert!(acr.grant("anyone", None, "any/repo", &wanted).is_empty());
    }

    /// ko's whole ACR flow over HTTP: Entra ID (v1, client secret), the exchange, the
    /// OAuth2 refresh-token form, then the registry; and an AcrPull principal's push refused.
    #[tokio::test]
    async fn the_token_flow_over_http() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let entra = Entra::new();
        let entra_server = crate::bearer::serve_identity(entra.clone()).await.unwrap();
        let front = Front::new(Box::new(Acr { entra: entra.clone() }), closed, "ACR front backend");
        let server = front.clone().serve().await.unwrap();
        let account = front.open_cell(1, AccountSpec { user: REGISTRY_NAME.into(), ..AccountSpec::default() });
        let pusher = entra.open_identity(1, AzureSpec::default());
        front.open_cell(2, AccountSpec::default());
        let reader = entra.open_identity(2, AzureSpec { role: entra::Role::AcrPull, ..AzureSpec::default() });
        let client = reqwest::Client::new();
        let to = |addr: std::net::SocketAddr, host: &str, method: reqwest::Method, path: &str, session: u64| {
            client
                .request(method, format!("http://{addr}{path}"))
                .header("host", host)
                .header(crate::gateway::SESSION_HEADER, session.to_string())
        };

        let aad_token = |cell: &EntraCell, session: u64| {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("client_id", cell.client_id.as_str()),
                    ("resource", entra::ARM_RESOURCE),
                    ("grant_type", "client_credentials"),
                    ("client_secret", cell.client_secret.as_str()),
                ])
                .finish();
            to(
                entra_server.addr,
                entra::LOGIN_HOST,
                reqwest::Method::POST,
                &format!("/{}/oauth2/token?api-version=1.0", cell.tenant),
                session,
            )
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
        };
        let answer: serde_json::Value = aad_token(&pusher, 1).send().await.unwrap().json().await.unwrap();
        let access_token = answer["access_token"].as_str().unwrap().to_string();
        let exchange = |session: u64, tenant: &str, token: &str| {
            let body = url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs([
                    ("grant_type", "access_token"),
                    ("service", HOST),
                    ("tenant", tenant),
                    ("access_token", token),
                ])
                .finish();
            to(server.addr, HOST, reqwest::Method::POST, "/oauth2/exchange", session)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        };
        let refused = exchange(1, "another-tenant", &access_token).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            exchange(2, &pusher.tenant, &access_token).send().await.unwrap().status(),
            401,
            "an Entra token is the cell's own"
        );
        let answer: serde_json::Value =
            exchange(1, &pusher.tenant, &access_token).send().await.unwrap().json().await.unwrap();
        let refresh_token = answer["refresh_token"].as_str().unwrap().to_string();

        let ping = to(server.addr, HOST, reqwest::Method::GET, "/v2/", 1).send().await.unwrap();
        assert_eq!(
            (ping.status().as_u16(), ping.headers()["www-authenticate"].to_str().unwrap()),
            (401, r#"Bearer realm="https://komatrix.azurecr.io/oauth2/token",service="komatrix.azurecr.io""#)
        );
        let form = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", "refresh_token"),
                ("refresh_token", refresh_token.as_str()),
                ("service", HOST),
                ("scope", "repository:team/app:push,pull"),
                ("client_id", "go-containerregistry"),
            ])
            .finish();
        let answer: serde_json::Value = to(server.addr, HOST, reqwest::Method::POST, "/oauth2/token", 1)
            .header("content-type", "application/x-www-form-urlencoded")
            .body(form)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let bearer = answer["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            to(server.addr, HOST, reqwest::Method::GET, "/v2/", 1).bearer_auth(&bearer).send().await.unwrap().status(),
            200
        );

        // GET with Basic: the zero GUID and the refresh token, or the admin user.
        let basic = |user: &str, secret: &str| {
            format!("Basic {}", base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}")))
        };
        let scope = "/oauth2/token?service=komatrix.azurecr.io&scope=repository%3Ateam%2Fapp%3Apush%2Cpull";
        assert_eq!(
            to(server.addr, HOST, reqwest::Method::GET, scope, 1)
                .header("authorization", basic(TOKEN_USER, &refresh_token))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        assert_eq!(
            to(server.addr, HOST, reqwest::Method::GET, scope, 1)
                .header("authorization", basic(REGISTRY_NAME, &account.secret))
                .send()
                .await
                .unwrap()
                .status(),
            200
        );
        let wrong = to(server.addr, HOST, reqwest::Method::GET, scope, 1)
            .header("authorization", basic(REGISTRY_NAME, "wrong"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            (wrong.status().as_u16(), wrong.text().await.unwrap()),
            (401, format!(r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{UNAUTHORIZED_MESSAGE}"}}]}}"#))
        );

        // AcrPull: a pull-only token, and the push refused in ACR's words.
        let answer: serde_json::Value = aad_token(&reader, 2).send().await.unwrap().json().await.unwrap();
        let answer: serde_json::Value = exchange(2, &reader.tenant, answer["access_token"].as_str().unwrap())
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let read_refresh = answer["refresh_token"].as_str().unwrap();
        let answer: serde_json::Value = to(server.addr, HOST, reqwest::Method::GET, scope, 2)
            .header("authorization", basic(TOKEN_USER, read_refresh))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let upload = to(server.addr, HOST, reqwest::Method::POST, "/v2/team/app/blobs/uploads/", 2)
            .bearer_auth(answer["token"].as_str().unwrap())
            .send()
            .await
            .unwrap();
        assert_eq!(upload.status(), 401);
        assert!(upload.headers()["www-authenticate"]
            .to_str()
            .unwrap()
            .ends_with(r#"scope="repository:team/app:push,pull""#));
        assert!(upload.text().await.unwrap().contains(UNAUTHORIZED_MESSAGE));
    }
}
