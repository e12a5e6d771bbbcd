//! Google's identity services, as Application Default Credentials reach them:
//!
//! - `oauth2.googleapis.com/token`: the JWT-bearer grant of a service-account key file
//!   (`GOOGLE_APPLICATION_CREDENTIALS`). The assertion's RS256 signature is checked against the
//!   key the emulator generated, by its `kid`; `iss` must be the key's service account and `aud`
//!   the token URI. A key of a deleted service account is refused `invalid_grant: Invalid grant:
//!   account not found`.
//! - `sts.googleapis.com/v1/token`: Workload Identity Federation's token exchange, from a
//!   GitHub Actions ID token ([`crate::github::actions`]), as the credentials file
//!   `google-github-actions/auth` writes drives it. The provider checks the token's issuer,
//!   signature and audience.
//! - `iamcredentials.googleapis.com`: `generateAccessToken`, which turns the federated token
//!   into the service account's access token (impersonation).
//! - `cloudresourcemanager.googleapis.com`: `projects.get`, which google-auth calls to name an
//!   external account's project.
//! - `metadata.google.internal`: the GCE metadata server, with `Metadata-Flavor: Google`
//!   enforced, reached through the cell's `GCE_METADATA_HOST` listener.
//!
//! Access tokens for the service account are minted into the cell's registry [`Account`], so
//! `gcr.io`'s token endpoint checks them like any other credential of the account.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use hyper::http::request::Parts;
use hyper::{Method, Response, StatusCode};
use rsa::pkcs8::{EncodePrivateKey, EncodePublicKey, LineEnding};
use serde::Deserialize;
use serde_json::json;

use crate::aws::oidc::OidcIssuer;
use crate::bearer::{Account, BadCredentials, CellIdentity, CellTables, CredentialKind, IdentityService, Principal};
use crate::cells::Cells;
use crate::grants::{random_b64, Minted, Refusal};
use crate::wire::{full, json, Body, Form};

pub const OAUTH_HOST: &str = "oauth2.googleapis.com";
pub const STS_HOST: &str = "sts.googleapis.com";
pub const IAM_CREDENTIALS_HOST: &str = "iamcredentials.googleapis.com";
pub const METADATA_HOST: &str = "metadata.google.internal";
/// Resource Manager: google-auth looks up an external account's project there.
pub const RESOURCE_MANAGER_HOST: &str = "cloudresourcemanager.googleapis.com";
/// Whether `host` is one of Google's identity services (for explaining a failed cell).
pub fn is_identity_host(host: &str) -> bool {
    [OAUTH_HOST, STS_HOST, IAM_CREDENTIALS_HOST, METADATA_HOST].contains(&host)
}

const TOKEN_URI: &str = "https://oauth2.googleapis.com/token";
const JWT_BEARER: &str = "urn:ietf:params:oauth:grant-type:jwt-bearer";
const TOKEN_EXCHANGE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
/// Google's access tokens live an hour.
const ACCESS_TOKEN_TTL: time::Duration = time::Duration::hours(1);
/// The workload identity pool and provider every cell's project has for GitHub Actions.
const POOL: &str = "github";

/// One cell's Google project: its service account, key and federation.
struct GoogleCell {
    account: Arc<Account>,
    project: String,
    project_number: u64,
    service_account: String,
    key_id: String,
    /// The service account was deleted (its keys with it): a scenario's `credential = "revoked"`.
    deleted: bool,
    /// The cell runs on a GCE VM with the service account attached.
    attached: bool,
    /// The principal's registry actions (`roles/artifactregistry.writer` or `.reader`).
    allow: Vec<String>,
    /// `ACTIONS_ID_TOKEN_REQUEST_TOKEN` of the cell's GitHub Actions job.
    request_token: String,
    /// Federated access tokens STS issued, with the subject they stand for.
    federated: Minted<String>,
}

impl GoogleCell {
    fn provider(&self) -> String {
        format!("projects/{}/locations/global/workloadIdentityPools/{POOL}/providers/{POOL}", self.project_number)
    }

    /// The audience the provider accepts in ID tokens (its default: the provider's URL).
    fn id_token_audience(&self) -> String {
        format!("https://iam.googleapis.com/{}", self.provider())
    }

    fn subject(&self) -> String {
        format!("repo:{}/app:ref:refs/heads/main", self.project)
    }

    /// A new access token of the service account.
    fn access_token(&self) -> String {
        self.account
            .issue(Principal { user: self.service_account.clone(), allow: self.allow.clone() }, ACCESS_TOKEN_TTL)
    }
}

/// Google's identity services for every cell of the run.
pub struct GoogleIdentity {
    /// One RSA key for the run's service-account keys (each cell's key has its own id).
    private_key_pem: String,
    decoding: jsonwebtoken::DecodingKey,
    /// GitHub Actions' OIDC issuer, for federation.
    github: OidcIssuer,
    cells: Cells<GoogleCell>,
}

impl GoogleIdentity {
    /// Generates the run's service-account key (RSA 2048, as Google's are).
    pub fn new() -> Result<GoogleIdentity, rsa::Error> {
        let key = rsa::RsaPrivateKey::new(&mut rand_core::OsRng, 2048)?;
        let private_key_pem = key.to_pkcs8_pem(LineEnding::LF).map_err(rsa::Error::Pkcs8)?.to_string();
        let public = key.to_public_key().to_public_key_pem(LineEnding::LF).map_err(|_| rsa::Error::Internal)?;
        let decoding = jsonwebtoken::DecodingKey::from_rsa_pem(public.as_bytes()).map_err(|_| rsa::Error::Internal)?;
        Ok(GoogleIdentity { private_key_pem, decoding, github: OidcIssuer::new(), cells: Cells::default() })
    }

    fn cell(&self, session: Option<u64>) -> Option<Arc<GoogleCell>> {
        session.and_then(|s| self.cells.get(s))
    }

    /// The key file `gcloud iam service-accounts keys create` writes.
    fn key_file(&self, cell: &GoogleCell) -> serde_json::Value {
        json!({
            "type": "service_account",
            "project_id": cell.project,
            "private_key_id": cell.key_id,
            "private_key": self.private_key_pem,
            "client_email": cell.service_account,
            "client_id": cell.project_number.to_string(),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": TOKEN_URI,
            "auth_provider_x509_cert_url": "https://www.googleapis.com/oauth2/v1/certs",
            "client_x509_cert_url": format!("https://www.googleapis.com/robot/v1/metadata/x509/{}", cell.service_account.replace('@', "%40")),
            "universe_domain": "googleapis.com",
        })
    }

    /// The credentials file `google-github-actions/auth` writes for Workload Identity
    /// Federation through a service account; `audience` is the ID token audience it asks for.
    fn external_account_file(cell: &GoogleCell, audience: &str) -> serde_json::Value {
        let url = format!(
            "{}&audience={}",
            crate::github::actions::request_url(),
            url::form_urlencoded::byte_serialize(audience.as_bytes()).collect::<String>()
        );
        json!({
            "type": "external_account",
            "audience": format!("//iam.googleapis.com/{}", cell.provider()),
            "subject_token_type": "urn:ietf:params:oauth:token-type:jwt",
            "token_url": format!("https://{STS_HOST}/v1/token"),
            "service_account_impersonation_url": format!("https://{IAM_CREDENTIALS_HOST}/v1/projects/-/serviceAccounts/{}:generateAccessToken", cell.service_account),
            "credential_source": {
                "url": url,
                "headers": { "Authorization": format!("Bearer {}", cell.request_token) },
                "format": { "type": "json", "subject_token_field_name": "value" },
            },
        })
    }
}

/// The claims of a self-signed service-account JWT (cloud.google.com/go/auth's
/// `UseSelfSignedJWT`: `iss` = `sub` = the account, `scope` or `aud`, an hour at most).
#[derive(Debug, Deserialize)]
struct SelfSigned {
    iss: String,
    sub: String,
    exp: i64,
    iat: i64,
}

impl GoogleIdentity {
    /// What a self-signed JWT of the cell's service account grants, as Google's APIs take
    /// one in place of an access token (docker-credential-gcr makes them); `None` when `token`
    /// is not a JWT signed with the cell's key id.
    pub(crate) fn self_signed(&self, account: &Account, token: &str) -> Option<Result<Principal, BadCredentials>> {
        let cell = self.cell(Some(account.session))?;
        let header = jsonwebtoken::decode_header(token).ok()?;
        if header.kid.as_deref() != Some(cell.key_id.as_str()) {
            return None;
        }
        if cell.deleted {
            return Some(Err(BadCredentials::Unknown));
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.validate_aud = false;
        let refused = match jsonwebtoken::decode::<SelfSigned>(token, &self.decoding, &validation) {
            Ok(data) => {
                let claims = data.claims;
                let own = claims.iss == cell.service_account && claims.sub == cell.service_account;
                return Some(if own && claims.exp - claims.iat <= 3600 {
                    Ok(Principal { user: cell.service_account.clone(), allow: cell.allow.clone() })
                } else {
                    Err(BadCredentials::Unknown)
                });
            }
            Err(e) if *e.kind() == jsonwebtoken::errors::ErrorKind::ExpiredSignature => BadCredentials::Expired,
            Err(_) => BadCredentials::Unknown,
        };
        Some(Err(refused))
    }
}

impl IdentityService for GoogleIdentity {
    fn hosts(&self) -> &'static [&'static str] {
        &[
            OAUTH_HOST,
            STS_HOST,
            IAM_CREDENTIALS_HOST,
            RESOURCE_MANAGER_HOST,
            METADATA_HOST,
            crate::github::actions::ID_TOKEN_HOST,
        ]
    }

    fn direct_host(&self) -> Option<&'static str> {
        Some(METADATA_HOST)
    }

    fn open_cell(
        &self,
        session: u64,
        account: Arc<Account>,
        _: &CellTables,
        direct: Option<SocketAddr>,
    ) -> CellIdentity {
        let spec = account.spec.clone();
        let project = spec.owner().to_string();
        let cell = Arc::new(GoogleCell {
            service_account: format!("{}@{project}.iam.gserviceaccount.com", spec.user),
            project,
            project_number: 100_000_000_000 + u64::from(rand::random::<u32>()),
            key_id: hex::encode((0..20).map(|_| rand::random::<u8>()).collect::<Vec<_>>()),
            deleted: spec.credential == CredentialKind::Revoked,
            attached: spec.attached_identity,
            allow: if spec.credential == CredentialKind::ReadOnly {
                vec!["pull".into()]
            } else {
                vec!["pull".into(), "push".into()]
            },
            request_token: random_b64(24),
            federated: Minted::default(),
            account,
        });
        let audience = if spec.credential == CredentialKind::WrongAudience {
            format!("https://github.com/{}", cell.project)
        } else {
            cell.id_token_audience()
        };
        let key_file = self.key_file(&cell).to_string();
        let external = Self::external_account_file(&cell, &audience).to_string();
        let mut identity = CellIdentity::default();
        identity.values.extend([
            ("GOOGLE_PROJECT", cell.project.clone()),
            ("GOOGLE_SERVICE_ACCOUNT_KEY", key_file),
            ("GOOGLE_EXTERNAL_ACCOUNT", external),
            ("ACTIONS_ID_TOKEN_REQUEST_URL", crate::github::actions::request_url()),
            ("ACTIONS_ID_TOKEN_REQUEST_TOKEN", cell.request_token.clone()),
        ]);
        // Always set: without it the metadata client probes 169.254.169.254 directly, past
        // the proxy, wherever no other credentials are found.
        if let Some(direct) = direct {
            identity.values.insert("GCE_METADATA_HOST", direct.to_string());
            identity.env.insert("GCE_METADATA_HOST".into(), direct.to_string());
        }
        if spec.cli_login {
            let token = cell.access_token();
            identity.programs.insert("gcloud".into(), gcloud_stand_in(&cell.service_account, &token));
            identity.secrets.push(token);
        }
        let escaped_key = serde_json::to_string(&self.private_key_pem).expect("a string serialises");
        identity.secrets.extend([
            self.private_key_pem.clone(),
            escaped_key.trim_matches('"').to_string(),
            cell.request_token.clone(),
        ]);
        self.cells.open(session, cell);
        identity
    }

    fn close_cell(&self, session: u64) {
        self.cells.close(session);
    }

    fn handle(
        &self,
        session: Option<u64>,
        parts: Parts,
        body: bytes::Bytes,
    ) -> futures_util::future::BoxFuture<'_, Response<Body>> {
        Box::pin(std::future::ready(self.answer(session, &parts, &body)))
    }
}

impl GoogleIdentity {
    /// The answer to one request of the cell behind `session`.
    fn answer(&self, session: Option<u64>, parts: &Parts, body: &[u8]) -> Response<Body> {
        let host = crate::wire::host(&parts.headers);
        let Some(cell) = self.cell(session) else {
            return oauth_error(
                StatusCode::UNAUTHORIZED,
                "unauthorized_client",
                "ko-matrix: no cell behind this request",
            );
        };
        let form = || Form::parse(body);
        match (host.as_str(), &parts.method, parts.uri.path()) {
            (OAUTH_HOST, &Method::POST, "/token") => self.jwt_bearer(&cell, &form()),
            (STS_HOST, &Method::POST, "/v1/token") => self.exchange(&cell, &form()),
            (IAM_CREDENTIALS_HOST, &Method::POST, path) => generate_access_token(&cell, parts, path),
            (RESOURCE_MANAGER_HOST, &Method::GET, path) => project(&cell, parts, path),
            (METADATA_HOST, _, _) => metadata(&cell, parts),
            (crate::github::actions::ID_TOKEN_HOST, _, _) => {
                crate::github::actions::answer(&self.github, parts, &cell.request_token, &cell.subject())
            }
            _ => json(
                StatusCode::NOT_FOUND,
                json!({ "error": { "code": 404, "message": format!("ko-matrix: {host} serves no {} {}", parts.method, parts.uri.path()), "status": "NOT_FOUND" } }),
            ),
        }
    }
}

/// A `gcloud` logged in as `account`, for the one command go-containerregistry's Google
/// keychain runs: `gcloud config config-helper --force-auth-refresh --format=json(credential)`.
/// A stand-in, not the Cloud SDK: it prints what that command prints, with `token`.
fn gcloud_stand_in(account: &str, token: &str) -> String {
    let expiry = (time::OffsetDateTime::now_utc() + ACCESS_TOKEN_TTL)
        .format(&time::format_description::well_known::Rfc3339)
        .expect("a UTC time formats");
    let answer = json!({ "credential": { "access_token": token, "token_expiry": expiry } });
    format!(
        "#!/bin/sh\n# ko-matrix's stand-in for the Google Cloud SDK's gcloud, logged in as {account}.\n# It answers `gcloud config config-helper` as gcloud does, nothing else.\nif [ \"$1 $2\" = \"config config-helper\" ]; then\n  printf '%s\\n' '{answer}'\n  exit 0\nfi\necho \"ko-matrix's gcloud stand-in answers only 'gcloud config config-helper' (asked: $*)\" >&2\nexit 2\n"
    )
}

/// OAuth 2.0's error answer, as Google words it.
fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json(status, json!({ "error": error, "error_description": description }))
}

/// The claims of a service-account assertion golang.org/x/oauth2/jwt signs.
#[derive(Debug, Deserialize)]
struct Assertion {
    iss: String,
    #[allow(dead_code)] // checked by jsonwebtoken's validation
    aud: String,
    exp: i64,
    iat: i64,
}

impl GoogleIdentity {
    /// `grant_type=urn:ietf:params:oauth:grant-type:jwt-bearer&assertion=<JWT>`.
    fn jwt_bearer(&self, cell: &GoogleCell, form: &Form) -> Response<Body> {
        if form.last("grant_type") != Some(JWT_BEARER) {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid grant_type: ");
        }
        let Some(assertion) = form.last("assertion") else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "Missing required parameter: assertion");
        };
        let header = jsonwebtoken::decode_header(assertion);
        if header.as_ref().ok().and_then(|h| h.kid.as_deref()) != Some(cell.key_id.as_str()) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT Signature.");
        }
        if cell.deleted {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid grant: account not found");
        }
        let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        validation.set_audience(&[TOKEN_URI]);
        validation.set_issuer(&[cell.service_account.as_str()]);
        let claims = match jsonwebtoken::decode::<Assertion>(assertion, &self.decoding, &validation) {
            Ok(data) => data.claims,
            Err(e) => {
                let description = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidSignature => "Invalid JWT Signature.".to_string(),
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.".to_string(),
                    _ => format!("Invalid JWT: {e}"),
                };
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", &description);
            }
        };
        if claims.exp - claims.iat > 3600 || claims.iss != cell.service_account {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "Invalid JWT: Token must be a short-lived token (60 minutes) and in a reasonable timeframe. Check your iat and exp values in the JWT claim.");
        }
        access_token_answer(cell.access_token())
    }

    /// STS's token exchange: a GitHub ID token for a federated access token.
    fn exchange(&self, cell: &GoogleCell, form: &Form) -> Response<Body> {
        if form.last("grant_type") != Some(TOKEN_EXCHANGE) {
            return oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "Invalid value for \"grant_type\".");
        }
        let audience = form.last("audience").unwrap_or_default();
        if audience != format!("//iam.googleapis.com/{}", cell.provider()) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_target", "The target service indicated by the \"audience\" parameters is invalid. This might either be because the pool or provider is disabled or deleted or because it doesn't exist.");
        }
        let token = form.last("subject_token").unwrap_or_default();
        let claims = match self.github.decode(token, &cell.id_token_audience()) {
            Ok(claims) => claims,
            Err(e) => {
                let description = match e.kind() {
                    jsonwebtoken::errors::ErrorKind::InvalidAudience => {
                        "The audience in JWT does not match the expected values."
                    }
                    jsonwebtoken::errors::ErrorKind::ExpiredSignature => "The provided JWT has expired.",
                    _ => "Unable to verify the ID Token signature.",
                };
                return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", description);
            }
        };
        let (token, _) = cell.federated.mint(claims.sub, 48, ACCESS_TOKEN_TTL);
        json(
            StatusCode::OK,
            json!({ "access_token": token, "issued_token_type": "urn:ietf:params:oauth:token-type:access_token", "token_type": "Bearer", "expires_in": ACCESS_TOKEN_TTL.whole_seconds() }),
        )
    }
}

/// `{"access_token":…,"expires_in":3599,"token_type":"Bearer"}`.
fn access_token_answer(token: String) -> Response<Body> {
    json(
        StatusCode::OK,
        json!({ "access_token": token, "expires_in": ACCESS_TOKEN_TTL.whole_seconds() - 1, "token_type": "Bearer" }),
    )
}

/// Google's JSON error envelope (`{"error":{"code":…,"message":…,"status":…}}`).
fn google_error(status: StatusCode, reason: &str, message: &str) -> Response<Body> {
    json(status, json!({ "error": { "code": status.as_u16(), "message": message, "status": reason } }))
}

/// `POST /v1/projects/-/serviceAccounts/<email>:generateAccessToken` with a federated token.
fn generate_access_token(cell: &GoogleCell, parts: &Parts, path: &str) -> Response<Body> {
    let Some(email) =
        path.strip_prefix("/v1/projects/-/serviceAccounts/").and_then(|rest| rest.strip_suffix(":generateAccessToken"))
    else {
        return google_error(StatusCode::NOT_FOUND, "NOT_FOUND", "ko-matrix: only generateAccessToken is served");
    };
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    match cell.federated.check(bearer) {
        Ok(_) => {}
        Err(Refusal::Unknown) | Err(Refusal::Expired) => {
            return google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.");
        }
    }
    let email = Form::parse(format!("e={email}")).get("e").unwrap_or_default().to_string();
    if email != cell.service_account || cell.deleted {
        return google_error(
            StatusCode::FORBIDDEN,
            "PERMISSION_DENIED",
            "Permission 'iam.serviceAccounts.getAccessToken' denied on resource (or it may not exist).",
        );
    }
    let expires = time::OffsetDateTime::now_utc() + ACCESS_TOKEN_TTL;
    json(StatusCode::OK, json!({ "accessToken": cell.access_token(), "expireTime": crate::wire::iso8601(expires) }))
}

/// `GET /v1/projects/<number or id>` with a token of the cell's service account or federation.
fn project(cell: &GoogleCell, parts: &Parts, path: &str) -> Response<Body> {
    let bearer = parts
        .headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    if cell.account.check_credential(bearer).is_none() && cell.federated.check(bearer).is_err() {
        return google_error(StatusCode::UNAUTHORIZED, "UNAUTHENTICATED", "Request had invalid authentication credentials. Expected OAuth 2 access token, login cookie or other valid authentication credential.");
    }
    let asked = path.trim_start_matches("/v1/projects/");
    if asked != cell.project && asked != cell.project_number.to_string() {
        return google_error(StatusCode::FORBIDDEN, "PERMISSION_DENIED", "The caller does not have permission");
    }
    let number = cell.project_number.to_string();
    json(
        StatusCode::OK,
        json!({ "projectNumber": number, "projectId": cell.project, "lifecycleState": "ACTIVE", "name": cell.project }),
    )
}

/// The GCE metadata server of the cell's VM; a cell not on GCE has none (404s).
fn metadata(cell: &GoogleCell, parts: &Parts) -> Response<Body> {
    let text = |status: StatusCode, body: String| {
        let mut response = Response::new(full(body));
        *response.status_mut() = status;
        response.headers_mut().insert("metadata-flavor", "Google".parse().expect("static header"));
        response.headers_mut().insert("content-type", "application/text".parse().expect("static header"));
        response
    };
    if !cell.attached {
        return text(StatusCode::NOT_FOUND, "ko-matrix: this cell does not run on a GCE VM\n".into());
    }
    if parts.uri.path() == "/" {
        return text(StatusCode::OK, "computeMetadata/\n".into());
    }
    if parts.headers.get("metadata-flavor").and_then(|v| v.to_str().ok()) != Some("Google") {
        return text(StatusCode::FORBIDDEN, "Missing required header \"Metadata-Flavor\": \"Google\"\n".into());
    }
    let values: BTreeMap<&str, String> = BTreeMap::from([
        ("/computeMetadata/v1/project/project-id", cell.project.clone()),
        ("/computeMetadata/v1/project/numeric-project-id", cell.project_number.to_string()),
        ("/computeMetadata/v1/instance/service-accounts/default/email", cell.service_account.clone()),
        (
            "/computeMetadata/v1/instance/service-accounts/default/scopes",
            "https://www.googleapis.com/auth/cloud-platform\n".into(),
        ),
        ("/computeMetadata/v1/universe/universe_domain", "googleapis.com".into()),
    ]);
    match parts.uri.path() {
        // google-auth reads the account's description first (`?recursive=true`).
        "/computeMetadata/v1/instance/service-accounts/default/" => {
            let mut response = json(
                StatusCode::OK,
                json!({ "aliases": ["default"], "email": cell.service_account, "scopes": ["https://www.googleapis.com/auth/cloud-platform"] }),
            );
            response.headers_mut().insert("metadata-flavor", "Google".parse().expect("static header"));
            response
        }
        "/computeMetadata/v1/instance/service-accounts/default/token" => {
            let mut response = access_token_answer(cell.access_token());
            response.headers_mut().insert("metadata-flavor", "Google".parse().expect("static header"));
            response
        }
        path => match values.get(path) {
            Some(value) => text(StatusCode::OK, value.clone()),
            None => text(StatusCode::NOT_FOUND, "Not Found\n".into()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bearer::{AccountSpec, Front};
    use http_body_util::BodyExt;

    fn identity_and_front() -> (Arc<GoogleIdentity>, Arc<Front>) {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let identity = Arc::new(GoogleIdentity::new().unwrap());
        (identity.clone(), Front::new(Box::new(super::super::Gcr { identity }), closed, "gcr.io front backend"))
    }

    fn post(host: &str, path: &str, form: &[(&str, &str)]) -> (Parts, Vec<u8>) {
        let body = url::form_urlencoded::Serializer::new(String::new()).extend_pairs(form).finish();
        (
            hyper::Request::post(format!("https://{host}{path}")).header("host", host).body(()).unwrap().into_parts().0,
            body.into_bytes(),
        )
    }

    async fn answer(response: Response<Body>) -> (u16, serde_json::Value) {
        let status = response.status().as_u16();
        (status, serde_json::from_slice(&response.into_body().collect().await.unwrap().to_bytes()).unwrap_or_default())
    }

    /// Signs an assertion as golang.org/x/oauth2/jwt does.
    fn assertion(identity: &GoogleIdentity, key_file: &serde_json::Value, aud: &str) -> String {
        let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
        header.kid = key_file["private_key_id"].as_str().map(str::to_string);
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let claims = json!({ "iss": key_file["client_email"], "scope": "https://www.googleapis.com/auth/cloud-platform", "aud": aud, "exp": now + 3600, "iat": now });
        jsonwebtoken::encode(
            &header,
            &claims,
            &jsonwebtoken::EncodingKey::from_rsa_pem(identity.private_key_pem.as_bytes()).unwrap(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn a_key_files_assertion_buys_an_access_token_the_registry_account_knows() {
        let (identity, front) = identity_and_front();
        let account = front.open_cell(7, AccountSpec { owner: Some("proj".into()), ..AccountSpec::default() });
        let values = identity.open_cell(7, account.clone(), &CellTables::default(), None).values;
        let key_file: serde_json::Value = serde_json::from_str(&values["GOOGLE_SERVICE_ACCOUNT_KEY"]).unwrap();
        assert_eq!(key_file["client_email"], "ko-matrix-bot@proj.iam.gserviceaccount.com");
        let (parts, body) = post(
            OAUTH_HOST,
            "/token",
            &[("grant_type", JWT_BEARER), ("assertion", &assertion(&identity, &key_file, TOKEN_URI))],
        );
        let (status, token) = answer(identity.answer(Some(7), &parts, &body)).await;
        assert_eq!(status, 200, "{token}");
        assert_eq!(token["token_type"], "Bearer");
        let principal = account.check_credential(token["access_token"].as_str().unwrap()).unwrap();
        assert_eq!((principal.user.as_str(), principal.allow.len()), ("ko-matrix-bot@proj.iam.gserviceaccount.com", 2));

        let (parts, body) = post(
            OAUTH_HOST,
            "/token",
            &[("grant_type", JWT_BEARER), ("assertion", &assertion(&identity, &key_file, "https://elsewhere"))],
        );
        assert_eq!(answer(identity.answer(Some(7), &parts, &body)).await.1["error"], "invalid_grant");
        assert_eq!(answer(identity.answer(Some(8), &parts, &body)).await.0, 401, "another cell's request");
    }

    #[test]
    fn self_signed_jwts_of_the_cells_account_stand_for_an_access_token() {
        let (identity, front) = identity_and_front();
        let account =
            front.open_cell(3, AccountSpec { credential: CredentialKind::ReadOnly, ..AccountSpec::default() });
        let key_file: serde_json::Value = serde_json::from_str(
            &identity.open_cell(3, account.clone(), &CellTables::default(), None).values["GOOGLE_SERVICE_ACCOUNT_KEY"],
        )
        .unwrap();
        let sign = |claims: serde_json::Value| {
            let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::RS256);
            header.kid = key_file["private_key_id"].as_str().map(str::to_string);
            jsonwebtoken::encode(
                &header,
                &claims,
                &jsonwebtoken::EncodingKey::from_rsa_pem(identity.private_key_pem.as_bytes()).unwrap(),
            )
            .unwrap()
        };
        let now = time::OffsetDateTime::now_utc().unix_timestamp();
        let email = key_file["client_email"].clone();
        let good = sign(
            json!({ "iss": email, "sub": email, "scope": "https://www.googleapis.com/auth/cloud-platform", "iat": now, "exp": now + 3600 }),
        );
        assert_eq!(identity.self_signed(&account, &good).unwrap().unwrap().allow, ["pull"]);
        let stale = sign(json!({ "iss": email, "sub": email, "iat": now - 7200, "exp": now - 3600 }));
        assert_eq!(identity.self_signed(&account, &stale).unwrap(), Err(BadCredentials::Expired));
        let other = sign(
            json!({ "iss": "x@p.iam.gserviceaccount.com", "sub": "x@p.iam.gserviceaccount.com", "iat": now, "exp": now + 3600 }),
        );
        assert_eq!(identity.self_signed(&account, &other).unwrap(), Err(BadCredentials::Unknown));
        assert!(identity.self_signed(&account, "not-a-jwt").is_none());
    }

    #[tokio::test]
    async fn a_deleted_service_accounts_key_is_refused_in_googles_words() {
        let (identity, front) = identity_and_front();
        let account = front.open_cell(1, AccountSpec { credential: CredentialKind::Revoked, ..AccountSpec::default() });
        let key_file: serde_json::Value = serde_json::from_str(
            &identity.open_cell(1, account, &CellTables::default(), None).values["GOOGLE_SERVICE_ACCOUNT_KEY"],
        )
        .unwrap();
        let (parts, body) = post(
            OAUTH_HOST,
            "/token",
            &[("grant_type", JWT_BEARER), ("assertion", &assertion(&identity, &key_file, TOKEN_URI))],
        );
        let (status, error) = answer(identity.answer(Some(1), &parts, &body)).await;
        assert_eq!(
            (status, error),
            (400, json!({ "error": "invalid_grant", "error_description": "Invalid grant: account not found" }))
        );
    }

    #[tokio::test]
    async fn federation_checks_the_audience_then_impersonates_the_service_account() {
        let (identity, front) = identity_and_front();
        for (session, credential, expected) in
            [(1, CredentialKind::Write, 200), (2, CredentialKind::WrongAudience, 400)]
        {
            let account = front.open_cell(session, AccountSpec { credential, ..AccountSpec::default() });
            let file: serde_json::Value = serde_json::from_str(
                &identity.open_cell(session, account.clone(), &CellTables::default(), None).values
                    ["GOOGLE_EXTERNAL_ACCOUNT"],
            )
            .unwrap();
            let source = &file["credential_source"];
            let id_request = hyper::Request::get(source["url"].as_str().unwrap())
                .header("host", crate::github::actions::ID_TOKEN_HOST)
                .header("authorization", source["headers"]["Authorization"].as_str().unwrap())
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let (status, id_token) = answer(identity.answer(Some(session), &id_request, b"")).await;
            assert_eq!(status, 200);
            let form = [
                ("grant_type", TOKEN_EXCHANGE),
                ("audience", file["audience"].as_str().unwrap()),
                ("subject_token", id_token["value"].as_str().unwrap()),
                ("subject_token_type", "urn:ietf:params:oauth:token-type:jwt"),
            ];
            let (parts, body) = post(STS_HOST, "/v1/token", &form);
            let (status, federated) = answer(identity.answer(Some(session), &parts, &body)).await;
            assert_eq!(status, expected, "{federated}");
            if expected != 200 {
                assert_eq!(federated["error_description"], "The audience in JWT does not match the expected values.");
                continue;
            }
            let impersonate = file["service_account_impersonation_url"].as_str().unwrap();
            let path = impersonate.trim_start_matches("https://iamcredentials.googleapis.com");
            let parts = hyper::Request::post(impersonate)
                .header("host", IAM_CREDENTIALS_HOST)
                .header("authorization", format!("Bearer {}", federated["access_token"].as_str().unwrap()))
                .body(())
                .unwrap()
                .into_parts()
                .0;
            let (status, token) = answer(identity.answer(Some(session), &parts, b"{}")).await;
            assert_eq!(status, 200, "{token} for {path}");
            assert!(account.check_credential(token["accessToken"].as_str().unwrap()).is_some());
            assert!(
                account.check_credential(federated["access_token"].as_str().unwrap()).is_none(),
                "the federated token itself holds no registry role"
            );
        }
    }

    #[tokio::test]
    async fn the_metadata_server_wants_its_header_and_serves_only_vms() {
        let (identity, front) = identity_and_front();
        let on_vm = front.open_cell(1, AccountSpec { attached_identity: true, ..AccountSpec::default() });
        identity.open_cell(1, on_vm.clone(), &CellTables::default(), None);
        identity.open_cell(2, front.open_cell(2, AccountSpec::default()), &CellTables::default(), None);
        let get = |flavor: Option<&str>| {
            let mut request = hyper::Request::get(
                "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
            )
            .header("host", METADATA_HOST);
            if let Some(flavor) = flavor {
                request = request.header("metadata-flavor", flavor);
            }
            request.body(()).unwrap().into_parts().0
        };
        let (status, token) = answer(identity.answer(Some(1), &get(Some("Google")), b"")).await;
        assert_eq!(status, 200);
        assert!(on_vm.check_credential(token["access_token"].as_str().unwrap()).is_some());
        assert_eq!(identity.answer(Some(1), &get(None), b"").status(), StatusCode::FORBIDDEN);
        assert_eq!(identity.answer(Some(2), &get(Some("Google")), b"").status(), StatusCode::NOT_FOUND);
    }
}
