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
//!   (go-containerregistry's form for a helper's identity token), which takes only a live refresh
//!   token the cell's exchange minted: not the admin password, not an Entra token.
//! - Refusals in ACR's words: 401 `UNAUTHORIZED: authentication required, visit
//!   https://aka.ms/acr/authorization for more information.`

pub mod entra;

use std::sync::Arc;

use hyper::http::request::Parts;
use hyper::{Response, StatusCode};

use crate::bearer::{unauthorized, Account, BadCredentials, Grant, Principal, Vendor};
use crate::grants::Refusal;
use crate::wire::{distribution_error, json, Body, Form};
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
pub struct Acr {
    pub entra: Arc<Entra>,
}

impl Acr {
    /// `POST /oauth2/exchange`: an Entra access token for an ACR refresh token.
    fn exchange(&self, session: Option<u64>, account: Option<&Account>, body: &[u8]) -> Response<Body> {
        let form = Form::parse(body);
        let field = |name: &str| form.get(name).filter(|v| !v.is_empty());
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
        let refresh_token = account
            .issue_refresh_token(Principal { user: TOKEN_USER.into(), allow: token.role.actions() }, REFRESH_TOKEN_TTL);
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
        principal.map_or_else(Vec::new, |p| p.granted(requested))
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

/// ACR's part of a world ([`crate::vendor`]), with Entra ID and Azure's IMDS.
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let entra = Entra::new();
        let acr = Box::new(Acr { entra: entra.clone() });
        let registry = crate::vendor::Registry::start(HOST, acr, "ACR front backend", Some(entra), &backing);
        Ok(Arc::new(registry.await?) as Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer::{AccountSpec, Front};
    use crate::loopback::LoopbackServer;
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

    /// ACR's front and Entra ID on loopback, reached as a cell reaches them: the real host
    /// names in `Host` and the cell's gateway session.
    struct Azure {
        entra: Arc<Entra>,
        front: Arc<Front>,
        entra_server: LoopbackServer,
        server: LoopbackServer,
        client: reqwest::Client,
    }

    /// The scope the tests ask registry tokens for.
    const SCOPE: &str = "repository:team/app:push,pull";

    impl Azure {
        async fn start() -> Azure {
            let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
            let entra = Entra::new();
            let entra_server = crate::bearer::serve_identity(entra.clone()).await.unwrap();
            let front = Front::new(Box::new(Acr { entra: entra.clone() }), closed, "ACR front backend");
            let server = front.clone().serve().await.unwrap();
            Azure { entra, front, entra_server, server, client: reqwest::Client::new() }
        }

        fn to(&self, entra: bool, method: reqwest::Method, path: &str, session: u64) -> reqwest::RequestBuilder {
            let (addr, host) =
                if entra { (self.entra_server.addr, entra::LOGIN_HOST) } else { (self.server.addr, HOST) };
            self.client
                .request(method, format!("http://{addr}{path}"))
                .header("host", host)
                .header(crate::wire::SESSION_HEADER, session.to_string())
        }

        fn form(&self, entra: bool, path: &str, session: u64, pairs: &[(&str, &str)]) -> reqwest::RequestBuilder {
            let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
            self.to(entra, reqwest::Method::POST, path, session)
                .header("content-type", "application/x-www-form-urlencoded")
                .body(body)
        }

        /// Entra ID v1 with a client secret, as adal asks: the access token.
        async fn aad_token(&self, cell: &EntraCell, session: u64) -> String {
            let answer: serde_json::Value = self
                .form(
                    true,
                    &format!("/{}/oauth2/token?api-version=1.0", cell.tenant),
                    session,
                    &[
                        ("client_id", cell.client_id.as_str()),
                        ("resource", entra::ARM_RESOURCE),
                        ("grant_type", "client_credentials"),
                        ("client_secret", cell.client_secret.as_str()),
                    ],
                )
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            answer["access_token"].as_str().unwrap().to_string()
        }

        /// `POST /oauth2/exchange` as the ACR helper sends it.
        fn exchange(&self, session: u64, tenant: &str, token: &str) -> reqwest::RequestBuilder {
            self.form(
                false,
                "/oauth2/exchange",
                session,
                &[("grant_type", "access_token"), ("service", HOST), ("tenant", tenant), ("access_token", token)],
            )
        }

        /// The exchange's refresh token for `token` (which it must take).
        async fn refresh_token(&self, session: u64, tenant: &str, token: &str) -> String {
            let answer: serde_json::Value =
                self.exchange(session, tenant, token).send().await.unwrap().json().await.unwrap();
            answer["refresh_token"].as_str().unwrap().to_string()
        }

        /// `POST /oauth2/token` with the refresh-token form, as go-containerregistry sends it.
        fn oauth2_token(&self, session: u64, refresh_token: &str) -> reqwest::RequestBuilder {
            self.form(
                false,
                "/oauth2/token",
                session,
                &[
                    ("grant_type", "refresh_token"),
                    ("refresh_token", refresh_token),
                    ("service", HOST),
                    ("scope", SCOPE),
                    ("client_id", "go-containerregistry"),
                ],
            )
        }

        /// `GET /oauth2/token` with Basic `user:secret`, as a docker login sends it.
        fn basic_token(&self, session: u64, user: &str, secret: &str) -> reqwest::RequestBuilder {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            let path = "/oauth2/token?service=komatrix.azurecr.io&scope=repository%3Ateam%2Fapp%3Apush%2Cpull";
            self.to(false, reqwest::Method::GET, path, session).header("authorization", format!("Basic {basic}"))
        }
    }

    /// ACR's refusal body, as the token endpoint answers it.
    fn refusal() -> String {
        format!(r#"{{"errors":[{{"code":"UNAUTHORIZED","message":"{UNAUTHORIZED_MESSAGE}"}}]}}"#)
    }

    /// ko's whole ACR flow over HTTP: Entra ID (v1, client secret), the exchange, the
    /// OAuth2 refresh-token form, then the registry; and an AcrPull principal's push refused.
    #[tokio::test]
    async fn the_token_flow_over_http() {
        let azure = Azure::start().await;
        let account = azure.front.open_cell(1, AccountSpec { user: REGISTRY_NAME.into(), ..AccountSpec::default() });
        let pusher = azure.entra.open_identity(1, AzureSpec::default());
        azure.front.open_cell(2, AccountSpec::default());
        let reader = azure.entra.open_identity(2, AzureSpec { role: entra::Role::AcrPull, ..AzureSpec::default() });

        let access_token = azure.aad_token(&pusher, 1).await;
        let refused = azure.exchange(1, "another-tenant", &access_token).send().await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(
            azure.exchange(2, &pusher.tenant, &access_token).send().await.unwrap().status(),
            401,
            "an Entra token is the cell's own"
        );
        let refresh_token = azure.refresh_token(1, &pusher.tenant, &access_token).await;

        let ping = azure.to(false, reqwest::Method::GET, "/v2/", 1).send().await.unwrap();
        assert_eq!(
            (ping.status().as_u16(), ping.headers()["www-authenticate"].to_str().unwrap()),
            (401, r#"Bearer realm="https://komatrix.azurecr.io/oauth2/token",service="komatrix.azurecr.io""#)
        );
        let answer: serde_json::Value =
            azure.oauth2_token(1, &refresh_token).send().await.unwrap().json().await.unwrap();
        let bearer = answer["access_token"].as_str().unwrap().to_string();
        assert_eq!(
            azure.to(false, reqwest::Method::GET, "/v2/", 1).bearer_auth(&bearer).send().await.unwrap().status(),
            200
        );

        // GET with Basic: the zero GUID and the refresh token, or the admin user.
        assert_eq!(azure.basic_token(1, TOKEN_USER, &refresh_token).send().await.unwrap().status(), 200);
        assert_eq!(azure.basic_token(1, REGISTRY_NAME, &account.secret).send().await.unwrap().status(), 200);
        let wrong = azure.basic_token(1, REGISTRY_NAME, "wrong").send().await.unwrap();
        assert_eq!((wrong.status().as_u16(), wrong.text().await.unwrap()), (401, refusal()));

        // AcrPull: a pull-only token, and the push refused in ACR's words.
        let access_token = azure.aad_token(&reader, 2).await;
        let read_refresh = azure.refresh_token(2, &reader.tenant, &access_token).await;
        let answer: serde_json::Value =
            azure.basic_token(2, TOKEN_USER, &read_refresh).send().await.unwrap().json().await.unwrap();
        let upload = azure
            .to(false, reqwest::Method::POST, "/v2/team/app/blobs/uploads/", 2)
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

    /// The refresh-token form takes what this registry's `/oauth2/exchange` minted for the
    /// cell, while it lives, and nothing else: not the admin password (Basic's secret), not the
    /// Entra token the exchange took, not another cell's refresh token, not a made-up string.
    /// Each refusal is ACR's 401; the admin user's Basic login is untouched.
    #[tokio::test]
    async fn the_refresh_token_form_takes_only_the_exchanges_tokens() {
        let azure = Azure::start().await;
        let account = azure.front.open_cell(1, AccountSpec { user: REGISTRY_NAME.into(), ..AccountSpec::default() });
        let identity = azure.entra.open_identity(1, AzureSpec::default());
        azure.front.open_cell(2, AccountSpec { user: REGISTRY_NAME.into(), ..AccountSpec::default() });
        let neighbour = azure.entra.open_identity(2, AzureSpec::default());

        let access_token = azure.aad_token(&identity, 1).await;
        let refresh_token = azure.refresh_token(1, &identity.tenant, &access_token).await;
        let answer = azure.oauth2_token(1, &refresh_token).send().await.unwrap();
        assert_eq!(answer.status(), 200, "a refresh token the exchange just minted");
        assert!(answer.json::<serde_json::Value>().await.unwrap()["access_token"].is_string());

        let neighbours = azure.refresh_token(2, &neighbour.tenant, &azure.aad_token(&neighbour, 2).await).await;
        let expired = account.issue_refresh_token(
            Principal { user: TOKEN_USER.into(), allow: entra::Role::AcrPush.actions() },
            -time::Duration::minutes(1),
        );
        for (what, secret) in [
            ("the admin password", account.secret.as_str()),
            ("the Entra access token", access_token.as_str()),
            ("another cell's refresh token", neighbours.as_str()),
            ("an expired refresh token", expired.as_str()),
            ("a made-up string", "not-a-refresh-token"),
            ("nothing", ""),
        ] {
            let answer = azure.oauth2_token(1, secret).send().await.unwrap();
            assert_eq!((answer.status().as_u16(), answer.text().await.unwrap()), (401, refusal()), "{what}");
        }

        // The admin user still logs in with Basic; its password under the zero GUID does not.
        assert_eq!(azure.basic_token(1, REGISTRY_NAME, &account.secret).send().await.unwrap().status(), 200);
        assert_eq!(azure.basic_token(1, TOKEN_USER, &account.secret).send().await.unwrap().status(), 401);
        assert_eq!(azure.basic_token(1, TOKEN_USER, &expired).send().await.unwrap().status(), 401);
    }
}
