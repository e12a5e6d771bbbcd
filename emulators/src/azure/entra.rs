//! Microsoft Entra ID (Azure AD) and the Azure instance metadata service, as emulated
//! for ACR: the token endpoint at `login.microsoftonline.com/<tenant>/
//! oauth2/token` (v1, `resource`: what go-autorest's `adal` sends, ko's ACR helper) and
//! `…/oauth2/v2.0/token` (v2, `scope`: MSAL, azure-identity), with client credentials — a
//! secret, or a federated token (`client_assertion`, workload identity) — and IMDS's managed
//! identity endpoint `169.254.169.254/metadata/identity/oauth2/token` (`Metadata: true`
//! enforced). Refusals carry Entra's AADSTS codes and wording; the wire facts and their sources
//! are in `docs/keychains-wire-reference.md` (Azure).
//!
//! Each cell (by the gateway's session header) has its own tenant, application and
//! identity; the access tokens minted here are checked by ACR's `/oauth2/exchange`
//! ([`super::Acr`]). The IMDS address is shared with AWS's: any other path there is handed on
//! to the AWS emulator when one runs (`share_host`).

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};

use bytes::Bytes;
use futures_util::future::BoxFuture;
use http_body_util::BodyExt;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use serde::Deserialize;

use crate::aws::oidc::OidcIssuer;
use crate::bearer::{Account, CellIdentity, CellTables, IdentityService};
use crate::cells::Cells;
use crate::grants::{Minted, Refusal};
use crate::wire::{full, json_as, mark_infra, Body, Form};

/// Entra ID's public-cloud login host.
pub const LOGIN_HOST: &str = "login.microsoftonline.com";
/// The instance metadata service's address (Azure's and AWS's alike).
pub const IMDS_HOST: &str = "169.254.169.254";
/// The audience Entra ID expects of a federated token (workload identity, GitHub OIDC).
pub const FEDERATED_AUDIENCE: &str = "api://AzureADTokenExchange";
/// Azure Resource Manager: the resource go-autorest asks tokens for by default.
pub const ARM_RESOURCE: &str = "https://management.azure.com/";
/// ACR's own AAD audience.
pub const ACR_RESOURCE: &str = "https://containerregistry.azure.net";
/// Lifetime of access tokens (Entra's default is about an hour).
const ACCESS_TOKEN_TTL: time::Duration = time::Duration::hours(1);

/// How the cell's workload signs in to Entra ID.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Identity {
    /// An application (service principal) with a client secret.
    #[default]
    ServicePrincipal,
    /// An application trusting the emulated OIDC issuer: a federated token in a file.
    WorkloadIdentity,
    /// A user-assigned managed identity of the machine, through IMDS.
    ManagedIdentity,
}

/// The ACR role the identity holds on the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Role {
    /// Pull and push.
    #[default]
    AcrPush,
    /// Pull only.
    AcrPull,
}

impl Role {
    /// The Distribution actions the role allows.
    pub fn actions(self) -> Vec<String> {
        match self {
            Role::AcrPush => vec!["pull".into(), "push".into()],
            Role::AcrPull => vec!["pull".into()],
        }
    }
}

/// Whether the identity's credential (client secret, federated token) is still good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialState {
    #[default]
    Valid,
    /// Ended before the cell ran.
    Expired,
}

/// A scenario's `[azure]` table: who the cell is in Entra ID.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AzureSpec {
    #[serde(default)]
    pub identity: Identity,
    #[serde(default)]
    pub role: Role,
    #[serde(default)]
    pub credential: CredentialState,
}

/// What an Entra access token was issued to and for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AadToken {
    pub tenant: String,
    pub client_id: String,
    pub role: Role,
    /// The resource (v1) or scope without `/.default` (v2).
    pub audience: String,
}

/// One cell's directory: its tenant, its application or managed identity, and the tokens
/// issued to it.
pub struct EntraCell {
    pub spec: AzureSpec,
    pub tenant: String,
    pub client_id: String,
    /// The client secret (`${AZURE_CLIENT_SECRET}`); empty unless a service principal.
    pub client_secret: String,
    /// The federated token (`${AZURE_FEDERATED_TOKEN}`); empty unless workload identity.
    pub federated_token: String,
    /// The subject the application's federated credential trusts.
    subject: String,
    secrets: Minted<()>,
    tokens: Minted<AadToken>,
}

fn guid() -> String {
    let h = format!("{:032x}", rand::random::<u128>());
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

impl EntraCell {
    fn new(spec: AzureSpec, oidc: &OidcIssuer) -> EntraCell {
        let (tenant, client_id) = (guid(), guid());
        let secrets = Minted::default();
        let expired = spec.credential == CredentialState::Expired;
        let client_secret = match spec.identity {
            Identity::ServicePrincipal => {
                secrets.mint((), 30, if expired { -time::Duration::days(1) } else { time::Duration::days(180) }).0
            }
            _ => String::new(),
        };
        let subject = format!("system:serviceaccount:ci:{client_id}");
        let federated_token = match spec.identity {
            Identity::WorkloadIdentity => oidc.mint(&subject, FEDERATED_AUDIENCE, if expired { -3600 } else { 3600 }),
            _ => String::new(),
        };
        EntraCell {
            spec,
            tenant,
            client_id,
            client_secret,
            federated_token,
            subject,
            secrets,
            tokens: Minted::default(),
        }
    }

    /// The placeholders a scenario may use for this identity.
    pub fn values(&self) -> Vec<(&'static str, String)> {
        vec![
            ("AZURE_TENANT_ID", self.tenant.clone()),
            ("AZURE_CLIENT_ID", self.client_id.clone()),
            ("AZURE_CLIENT_SECRET", self.client_secret.clone()),
            ("AZURE_FEDERATED_TOKEN", self.federated_token.clone()),
        ]
    }

    /// What a cell log must never show.
    pub fn secrets(&self) -> Vec<String> {
        [&self.client_secret, &self.federated_token].into_iter().filter(|s| !s.is_empty()).cloned().collect()
    }

    fn issue(&self, audience: &str) -> (String, time::OffsetDateTime) {
        let token = AadToken {
            tenant: self.tenant.clone(),
            client_id: self.client_id.clone(),
            role: self.spec.role,
            audience: audience.to_string(),
        };
        self.tokens.mint(token, 48, ACCESS_TOKEN_TTL)
    }
}

/// The Entra ID and IMDS emulator, one per run.
pub struct Entra {
    cells: Cells<EntraCell>,
    oidc: OidcIssuer,
    /// Where other IMDS paths go (the AWS emulator, when the run has one).
    imds_fallback: OnceLock<SocketAddr>,
    client: Client<HttpConnector, Body>,
}

/// An Entra error answer: `{"error", "error_description": "AADSTS…: …", "error_codes", …}`.
pub(crate) fn aad_error(status: StatusCode, error: &str, code: u32, message: &str) -> Response<Body> {
    let now = time::OffsetDateTime::now_utc();
    let timestamp = now
        .format(&time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second]Z"))
        .expect("UTC formats");
    let (trace, correlation) = (guid(), guid());
    let body = serde_json::json!({
        "error": error,
        "error_description": format!("AADSTS{code}: {message} Trace ID: {trace} Correlation ID: {correlation} Timestamp: {timestamp}"),
        "error_codes": [code],
        "timestamp": timestamp,
        "trace_id": trace,
        "correlation_id": correlation,
        "error_uri": format!("https://{LOGIN_HOST}/error?code={code}"),
    });
    json(status, body)
}

/// Entra's JSON answers: `application/json; charset=utf-8`.
fn json(status: StatusCode, body: serde_json::Value) -> Response<Body> {
    json_as(status, "application/json; charset=utf-8", &body)
}

/// Which token endpoint a path names: `(tenant, v2)`.
pub(crate) fn token_endpoint(path: &str) -> Option<(&str, bool)> {
    let rest = path.strip_prefix('/')?;
    let (tenant, endpoint) = rest.split_once('/')?;
    match endpoint {
        "oauth2/token" => Some((tenant, false)),
        "oauth2/v2.0/token" => Some((tenant, true)),
        _ => None,
    }
}

impl Entra {
    pub fn new() -> Arc<Entra> {
        Arc::new(Entra {
            cells: Cells::default(),
            oidc: OidcIssuer::new(),
            imds_fallback: OnceLock::new(),
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        })
    }

    /// Gives the cell behind gateway session `session` its identity.
    pub fn open_identity(&self, session: u64, spec: AzureSpec) -> Arc<EntraCell> {
        let cell = Arc::new(EntraCell::new(spec, &self.oidc));
        self.cells.open(session, cell)
    }

    /// What access token `token` of the cell behind `session` was issued for.
    pub(crate) fn check_token(&self, session: Option<u64>, token: &str) -> Result<AadToken, Refusal> {
        let cell = session.and_then(|s| self.cells.get(s)).ok_or(Refusal::Unknown)?;
        cell.tokens.check(token)
    }

    /// An IMDS request that is not Azure's: the AWS emulator's, when the run has one.
    async fn hand_on(&self, mut parts: Parts, body: Bytes) -> Response<Body> {
        let Some(addr) = self.imds_fallback.get() else {
            return json(
                StatusCode::NOT_FOUND,
                serde_json::json!({"error": "not_found", "error_description": "ko-matrix Azure IMDS: no such path"}),
            );
        };
        let path = parts.uri.path_and_query().map(|p| p.as_str()).unwrap_or("/").to_string();
        parts.uri = format!("http://{addr}{path}").parse().expect("a loopback URI parses");
        match self.client.request(Request::from_parts(parts, full(body))).await {
            Ok(response) => response.map(|b| b.boxed()),
            Err(e) => {
                let mut response = json(
                    StatusCode::BAD_GATEWAY,
                    serde_json::json!({"error": "ko-matrix: the AWS emulator could not be reached"}),
                );
                mark_infra(
                    &mut response,
                    format!("AWS emulator {addr} unreachable: {}", crate::gateway::error_chain(&e)),
                );
                response
            }
        }
    }
}

impl IdentityService for Entra {
    fn hosts(&self) -> &'static [&'static str] {
        &[LOGIN_HOST, IMDS_HOST]
    }

    fn open_cell(&self, session: u64, _: Arc<Account>, tables: &CellTables, _: Option<SocketAddr>) -> CellIdentity {
        let cell = self.open_identity(session, tables.azure.clone().unwrap_or_default());
        CellIdentity { values: cell.values().into_iter().collect(), secrets: cell.secrets(), ..CellIdentity::default() }
    }

    fn close_cell(&self, session: u64) {
        self.cells.close(session);
    }

    fn share_host(&self, host: &str, addr: SocketAddr) {
        if host == IMDS_HOST {
            let _ = self.imds_fallback.set(addr);
        }
    }

    fn handle(&self, session: Option<u64>, parts: Parts, body: Bytes) -> BoxFuture<'_, Response<Body>> {
        Box::pin(async move {
            let host = crate::wire::host(&parts.headers);
            let cell = session.and_then(|s| self.cells.get(s));
            if host == IMDS_HOST {
                if parts.uri.path() == "/metadata/identity/oauth2/token" {
                    return imds_token(cell.as_deref(), &parts);
                }
                return self.hand_on(parts, body).await;
            }
            if host != LOGIN_HOST {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": format!("ko-matrix Entra ID emulator: no service at {host}")}),
                );
            }
            if parts.uri.path() == "/common/discovery/instance" {
                return instance_discovery(&parts);
            }
            if let Some(tenant) = parts
                .uri
                .path()
                .strip_prefix('/')
                .and_then(|p| p.strip_suffix("/v2.0/.well-known/openid-configuration"))
            {
                return openid_configuration(cell.as_deref(), tenant);
            }
            let Some((tenant, v2)) = token_endpoint(parts.uri.path()) else {
                return json(
                    StatusCode::NOT_FOUND,
                    serde_json::json!({"error": format!("ko-matrix Entra ID emulator: no endpoint {}", parts.uri.path())}),
                );
            };
            if parts.method != hyper::Method::POST {
                return aad_error(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "invalid_request",
                    900561,
                    "The endpoint only accepts POST requests. Received a GET request.",
                );
            }
            token(&self.oidc, cell.as_deref(), tenant, v2, &body)
        })
    }
}

/// `GET /common/discovery/instance?api-version=1.1&authorization_endpoint=…`: the public
/// cloud's host aliases, which MSAL asks for (`ClientApplication._get_instance_metadata`) to
/// match cached tokens, e.g. after a refused token request.
fn instance_discovery(parts: &Parts) -> Response<Body> {
    let query = Form::parse(parts.uri.query().unwrap_or_default());
    let authorize = query
        .get("authorization_endpoint")
        .map(str::to_string)
        .unwrap_or_else(|| format!("https://{LOGIN_HOST}/common/oauth2/authorize"));
    let tenant_discovery = authorize
        .replace("/oauth2/authorize", "/v2.0/.well-known/openid-configuration")
        .replace("/oauth2/v2.0/authorize", "/v2.0/.well-known/openid-configuration");
    json(
        StatusCode::OK,
        serde_json::json!({
            "tenant_discovery_endpoint": tenant_discovery,
            "api-version": "1.1",
            "metadata": [
                { "preferred_network": LOGIN_HOST, "preferred_cache": "login.windows.net", "aliases": [LOGIN_HOST, "login.windows.net", "login.microsoft.com", "sts.windows.net"] },
            ],
        }),
    )
}

/// `GET /<tenant>/v2.0/.well-known/openid-configuration`: the tenant's endpoints, which MSAL
/// (azure-identity) reads before asking for a token.
fn openid_configuration(cell: Option<&EntraCell>, tenant: &str) -> Response<Body> {
    let Some(cell) = cell.filter(|c| c.tenant.eq_ignore_ascii_case(tenant)) else { return tenant_not_found(tenant) };
    let base = format!("https://{LOGIN_HOST}/{}", cell.tenant);
    json(
        StatusCode::OK,
        serde_json::json!({
            "token_endpoint": format!("{base}/oauth2/v2.0/token"),
            "authorization_endpoint": format!("{base}/oauth2/v2.0/authorize"),
            "device_authorization_endpoint": format!("{base}/oauth2/v2.0/devicecode"),
            "issuer": format!("{base}/v2.0"),
            "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "tenant_region_scope": "EU",
        }),
    )
}

fn tenant_not_found(tenant: &str) -> Response<Body> {
    aad_error(StatusCode::BAD_REQUEST, "invalid_tenant", 90002, &format!("Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud. Check with your subscription administrator, this may happen if there are no active subscriptions for the tenant."))
}

/// `POST /<tenant>/oauth2[/v2.0]/token` with the client credentials grant.
fn token(oidc: &OidcIssuer, cell: Option<&EntraCell>, tenant: &str, v2: bool, body: &[u8]) -> Response<Body> {
    let form = Form::parse(body);
    let field = |name: &str| form.get(name).filter(|v| !v.is_empty());
    let Some(cell) = cell.filter(|c| c.tenant.eq_ignore_ascii_case(tenant)) else { return tenant_not_found(tenant) };
    if field("grant_type") != Some("client_credentials") {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{}'.", field("grant_type").unwrap_or_default()),
        );
    }
    let client_id = field("client_id").unwrap_or_default();
    if client_id != cell.client_id || cell.spec.identity == Identity::ManagedIdentity {
        return aad_error(StatusCode::BAD_REQUEST, "unauthorized_client", 700016, &format!("Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant."));
    }
    let audience = if v2 {
        // MSAL may add OIDC scopes (`openid profile offline_access`) beside the resource's.
        match field("scope").and_then(|s| s.split_whitespace().find_map(|s| s.strip_suffix("/.default"))) {
            Some(resource) => resource.to_string(),
            None => return aad_error(StatusCode::BAD_REQUEST, "invalid_scope", 1002012, &format!("The provided value for scope {} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI).", field("scope").unwrap_or_default())),
        }
    } else {
        match field("resource") {
            Some(resource) => resource.to_string(),
            None => {
                return aad_error(
                    StatusCode::BAD_REQUEST,
                    "invalid_request",
                    900144,
                    "The request body must contain the following parameter: 'resource'.",
                )
            }
        }
    };
    if let Some(secret) = field("client_secret") {
        match cell.secrets.check(secret) {
            Ok(()) => {}
            Err(Refusal::Expired) => {
                return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000222, &format!("The provided client secret keys for app '{client_id}' are expired. Visit the Azure portal to create new keys for your app: https://aka.ms/NewClientSecret, or consider using certificate credentials for added security: https://aka.ms/certCreds."))
            }
            Err(Refusal::Unknown) => {
                return aad_error(StatusCode::UNAUTHORIZED, "invalid_client", 7000215, &format!("Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."))
            }
        }
    } else if let Some(assertion) = field("client_assertion") {
        if field("client_assertion_type") != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer") {
            return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 50027, "Invalid JWT token. The client_assertion_type must be urn:ietf:params:oauth:client-assertion-type:jwt-bearer.");
        }
        match oidc.decode(assertion, FEDERATED_AUDIENCE) {
            Ok(claims) if claims.sub == cell.subject && cell.spec.identity == Identity::WorkloadIdentity => {}
            Ok(claims) => {
                return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 70021, &format!("No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.", claims.iss, claims.sub, claims.aud))
            }
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => {
                let exp = crate::aws::oidc::unverified_exp(assertion).unwrap_or_default();
                let now = time::OffsetDateTime::now_utc().unix_timestamp();
                return aad_error(StatusCode::BAD_REQUEST, "invalid_client", 700024, &format!("Client assertion is not within its valid time range. Current time: {now}, expiry time of assertion {exp}."));
            }
            Err(_) => return aad_error(StatusCode::BAD_REQUEST, "invalid_request", 70021, "No matching federated identity record found for presented assertion."),
        }
    } else {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let (access_token, expires) = cell.issue(&audience);
    let expires_in = ACCESS_TOKEN_TTL.whole_seconds();
    if v2 {
        json(
            StatusCode::OK,
            serde_json::json!({ "token_type": "Bearer", "expires_in": expires_in, "ext_expires_in": expires_in, "access_token": access_token }),
        )
    } else {
        // v1 writes its numbers as strings.
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        json(
            StatusCode::OK,
            serde_json::json!({ "token_type": "Bearer", "expires_in": expires_in.to_string(), "ext_expires_in": expires_in.to_string(), "expires_on": expires.unix_timestamp().to_string(), "not_before": now.to_string(), "resource": audience, "access_token": access_token }),
        )
    }
}

/// `GET /metadata/identity/oauth2/token?api-version=…&resource=…[&client_id=…]` with
/// `Metadata: true`.
fn imds_token(cell: Option<&EntraCell>, parts: &Parts) -> Response<Body> {
    let refuse = |status: StatusCode, error: &str, description: &str| {
        json(status, serde_json::json!({ "error": error, "error_description": description }))
    };
    if parts.headers.get("metadata").and_then(|v| v.to_str().ok()) != Some("true") {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required metadata header not specified");
    }
    let query = Form::parse(parts.uri.query().unwrap_or_default());
    let field = |name: &str| query.get(name).filter(|v| !v.is_empty());
    if field("api-version").is_none() {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required query variable 'api-version' is missing");
    }
    let Some(resource) = field("resource") else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Required query variable 'resource' is missing");
    };
    let Some(cell) = cell.filter(|c| c.spec.identity == Identity::ManagedIdentity) else {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Identity not found");
    };
    if field("client_id").is_some_and(|id| id != cell.client_id) {
        return refuse(StatusCode::BAD_REQUEST, "invalid_request", "Identity not found");
    }
    let (access_token, expires) = cell.issue(resource);
    let now = time::OffsetDateTime::now_utc().unix_timestamp();
    let expires_in = ACCESS_TOKEN_TTL.whole_seconds().to_string();
    json(
        StatusCode::OK,
        serde_json::json!({ "access_token": access_token, "client_id": cell.client_id, "expires_in": expires_in, "expires_on": expires.unix_timestamp().to_string(), "ext_expires_in": expires_in, "not_before": now.to_string(), "resource": resource, "token_type": "Bearer" }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn answer(response: Response<Body>) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        (status, serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap())
    }

    fn form(pairs: &[(&str, &str)]) -> Vec<u8> {
        url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish().into_bytes()
    }

    fn cell(identity: Identity, credential: CredentialState, oidc: &OidcIssuer) -> EntraCell {
        EntraCell::new(AzureSpec { identity, role: Role::AcrPush, credential }, oidc)
    }

    #[test]
    fn token_endpoints_v1_and_v2() {
        assert_eq!(token_endpoint("/t-1/oauth2/token"), Some(("t-1", false)));
        assert_eq!(token_endpoint("/t-1/oauth2/v2.0/token"), Some(("t-1", true)));
        assert_eq!(token_endpoint("/t-1/oauth2/authorize"), None);
        assert_eq!(token_endpoint("/"), None);
    }

    #[tokio::test]
    async fn client_secrets_as_adal_sends_them_v1() {
        let oidc = OidcIssuer::new();
        let sp = cell(Identity::ServicePrincipal, CredentialState::Valid, &oidc);
        let good = form(&[
            ("client_id", &sp.client_id),
            ("resource", ARM_RESOURCE),
            ("grant_type", "client_credentials"),
            ("client_secret", &sp.client_secret),
        ]);
        let (status, body) = answer(token(&oidc, Some(&sp), &sp.tenant, false, &good)).await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            (body["resource"].as_str(), body["expires_in"].as_str()),
            (Some(ARM_RESOURCE), Some("3600")),
            "v1 numbers are strings"
        );
        let issued = sp.tokens.check(body["access_token"].as_str().unwrap()).unwrap();
        assert_eq!((issued.audience.as_str(), issued.tenant == sp.tenant), (ARM_RESOURCE, true));

        let (status, body) = answer(token(&oidc, Some(&sp), "wrong-tenant", false, &good)).await;
        assert_eq!((status, body["error"].as_str()), (400, Some("invalid_tenant")));
        assert!(body["error_description"]
            .as_str()
            .unwrap()
            .starts_with("AADSTS90002: Tenant 'wrong-tenant' not found."));

        let wrong = form(&[
            ("client_id", &sp.client_id),
            ("resource", ARM_RESOURCE),
            ("grant_type", "client_credentials"),
            ("client_secret", "nope"),
        ]);
        let (status, body) = answer(token(&oidc, Some(&sp), &sp.tenant, false, &wrong)).await;
        assert_eq!((status, body["error_codes"][0].as_u64()), (401, Some(7000215)));

        let stale = cell(Identity::ServicePrincipal, CredentialState::Expired, &oidc);
        let expired = form(&[
            ("client_id", &stale.client_id),
            ("resource", ARM_RESOURCE),
            ("grant_type", "client_credentials"),
            ("client_secret", &stale.client_secret),
        ]);
        let (status, body) = answer(token(&oidc, Some(&stale), &stale.tenant, false, &expired)).await;
        assert_eq!(
            (status, body["error"].as_str(), body["error_codes"][0].as_u64()),
            (401, Some("invalid_client"), Some(7000222))
        );

        let other_app = form(&[
            ("client_id", "someone-else"),
            ("resource", ARM_RESOURCE),
            ("grant_type", "client_credentials"),
            ("client_secret", &sp.client_secret),
        ]);
        assert_eq!(
            answer(token(&oidc, Some(&sp), &sp.tenant, false, &other_app)).await.1["error_codes"][0].as_u64(),
            Some(700016)
        );
    }

    #[tokio::test]
    async fn federated_tokens_v2() {
        let oidc = OidcIssuer::new();
        let wi = cell(Identity::WorkloadIdentity, CredentialState::Valid, &oidc);
        let assertion = |jwt: &str| {
            form(&[
                ("client_id", &wi.client_id),
                ("scope", "https://management.azure.com//.default"),
                ("grant_type", "client_credentials"),
                ("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"),
                ("client_assertion", jwt),
            ])
        };
        let (status, body) = answer(token(&oidc, Some(&wi), &wi.tenant, true, &assertion(&wi.federated_token))).await;
        assert_eq!((status, body["expires_in"].as_i64()), (200, Some(3600)), "{body}");
        assert_eq!(
            wi.tokens.check(body["access_token"].as_str().unwrap()).unwrap().audience,
            "https://management.azure.com/"
        );

        let expired = oidc.mint(&wi.subject, FEDERATED_AUDIENCE, -60);
        assert_eq!(
            answer(token(&oidc, Some(&wi), &wi.tenant, true, &assertion(&expired))).await.1["error_codes"][0].as_u64(),
            Some(700024)
        );
        let stranger = oidc.mint("repo:someone/else:ref:refs/heads/main", FEDERATED_AUDIENCE, 600);
        let (_, body) = answer(token(&oidc, Some(&wi), &wi.tenant, true, &assertion(&stranger))).await;
        assert_eq!(body["error_codes"][0].as_u64(), Some(70021));
        let wrong_audience = oidc.mint(&wi.subject, "sts.amazonaws.com", 600);
        assert_eq!(
            answer(token(&oidc, Some(&wi), &wi.tenant, true, &assertion(&wrong_audience))).await.1["error_codes"][0]
                .as_u64(),
            Some(70021)
        );
        let no_default = form(&[
            ("client_id", &wi.client_id),
            ("scope", "https://management.azure.com/"),
            ("grant_type", "client_credentials"),
            ("client_assertion", &wi.federated_token),
        ]);
        assert_eq!(
            answer(token(&oidc, Some(&wi), &wi.tenant, true, &no_default)).await.1["error"].as_str(),
            Some("invalid_scope")
        );
    }

    #[tokio::test]
    async fn imds_needs_the_metadata_header_and_a_managed_identity() {
        let oidc = OidcIssuer::new();
        let mi = cell(Identity::ManagedIdentity, CredentialState::Valid, &oidc);
        let request = |uri: &str, metadata: bool| {
            let mut builder = Request::get(uri);
            if metadata {
                builder = builder.header("Metadata", "true");
            }
            builder.body(()).unwrap().into_parts().0
        };
        let uri = format!("http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=https%3A%2F%2Fmanagement.azure.com%2F&client_id={}", mi.client_id);
        let (status, body) = answer(imds_token(Some(&mi), &request(&uri, false))).await;
        assert_eq!((status, body["error_description"].as_str()), (400, Some("Required metadata header not specified")));
        let (status, body) = answer(imds_token(Some(&mi), &request(&uri, true))).await;
        assert_eq!((status, body["client_id"].as_str()), (200, Some(mi.client_id.as_str())), "{body}");
        assert_eq!(mi.tokens.check(body["access_token"].as_str().unwrap()).unwrap().audience, ARM_RESOURCE);
        let other =
            "http://169.254.169.254/metadata/identity/oauth2/token?api-version=2018-02-01&resource=x&client_id=nobody";
        assert_eq!(
            answer(imds_token(Some(&mi), &request(other, true))).await.1["error_description"].as_str(),
            Some("Identity not found")
        );
        let sp = cell(Identity::ServicePrincipal, CredentialState::Valid, &oidc);
        assert_eq!(
            answer(imds_token(Some(&sp), &request(&uri, true))).await.0,
            400,
            "a machine without a managed identity"
        );
    }
}
