//! Registry fronts that speak the Docker token flow under a vendor's real host names — ghcr.io
//! ([`crate::github`]) and Docker Hub ([`crate::dockerhub`]); Google's and Azure's registries
//! speak it too. What the vendors share lives here: the `/v2/` challenge, the token endpoint
//! that takes Basic `user:secret` and answers a registry token scoped to what was asked and
//! what the account may do, the check of that token on every registry request, and the
//! forwarding to the caller's distribution registry. What differs — host names, who may
//! push where, and the wording of every refusal — is the vendor's [`Vendor`].
//!
//! Each cell has its own [`Account`] (found by the gateway's session header), so cells never
//! see each other's secrets or images; a cell may hold a second account at the same vendor
//! (a copy between two namespaces of one registry, each with its own credential), and both
//! live in the cell's one registry.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use serde::Deserialize;

use crate::cells::Cells;
use crate::grants::{allows, Minted, Refusal};
use crate::loopback::LoopbackServer;
use crate::registry_front::{self, Backend, Gate, Route, Verdict};
use crate::wire::{self, distribution_error, json, Body, Form};

/// Lifetime of registry tokens the token endpoints mint (Docker Hub's `expires_in`: 300 s).
const REGISTRY_TOKEN_TTL: time::Duration = time::Duration::minutes(5);

/// The credential a scenario's account holds (its `[account]` table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// May pull and push (a PAT with `write:packages`, `GITHUB_TOKEN` with `packages: write`,
    /// a Docker Hub password or read-write access token).
    #[default]
    Write,
    /// May pull only (a PAT with `read:packages`, a read-only access token).
    ReadOnly,
    /// Expired before the cell ran.
    Expired,
    /// Revoked before the cell ran: the vendor no longer knows it (at Google: the service
    /// account was deleted, with its keys).
    Revoked,
    /// Valid, but the federated token the setup presents is for another audience than the
    /// vendor's federation expects (Google's Workload Identity Federation).
    WrongAudience,
}

/// A scenario's `[account]` table: who the cell is at a token-auth vendor registry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// The login (`GITHUB_ACTOR`, the Docker Hub username).
    #[serde(default = "default_user")]
    pub user: String,
    /// The namespace pushed to (`ghcr.io/<owner>/…`); default: the user's.
    pub owner: Option<String>,
    #[serde(default)]
    pub credential: CredentialKind,
    /// The cell runs on the vendor's compute with this identity attached, reachable through
    /// its metadata server (a GCE VM's service account).
    #[serde(default)]
    pub attached_identity: bool,
    /// The vendor's CLI is on PATH, logged in as the account (Google's `gcloud`: the caller's
    /// stand-in that answers `gcloud config config-helper` as the Cloud SDK does).
    #[serde(default)]
    pub cli_login: bool,
}

fn default_user() -> String {
    "ko-matrix-bot".into()
}

impl Default for AccountSpec {
    fn default() -> Self {
        AccountSpec {
            user: default_user(),
            owner: None,
            credential: CredentialKind::default(),
            attached_identity: false,
            cli_login: false,
        }
    }
}

impl AccountSpec {
    pub fn owner(&self) -> &str {
        self.owner.as_deref().unwrap_or(&self.user)
    }
}

/// What a credential the vendor issued may do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    /// The account it belongs to.
    pub user: String,
    /// Distribution actions (`pull`, `push`) it may perform in the account's namespace.
    pub allow: Vec<String>,
}

impl Principal {
    /// The `requested` actions its allow list covers.
    pub fn granted(&self, requested: &[String]) -> Vec<String> {
        requested.iter().filter(|action| allows(&self.allow, action)).cloned().collect()
    }
}

/// What a registry token grants: the subject, and actions per repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The account, or empty for an anonymous caller.
    pub subject: String,
    /// What the credential behind the token may do anywhere (empty: anonymous).
    pub allow: Vec<String>,
    /// The namespace of the account the token was minted in (its `[account] owner`).
    pub namespace: String,
    /// The namespaces the cell's other accounts hold in the same registry ([`Vendor::holds`]):
    /// they exist, whether or not this token reaches them.
    pub namespaces: Vec<String>,
    pub access: Vec<Access>,
}

impl Grant {
    fn permits(&self, repository: &str, action: &str) -> bool {
        self.access
            .iter()
            .any(|a| a.kind == "repository" && a.name == repository && a.actions.iter().any(|x| x == action))
    }
}

/// One `type:name:actions` entry of a token request's `scope`, as token claims carry it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Access {
    #[serde(rename = "type")]
    pub kind: String,
    pub name: String,
    pub actions: Vec<String>,
}

/// `repository:team/app:push,pull` → access entry (names may hold `/`, and registries'
/// names may carry a port: the actions are after the last `:`).
pub(crate) fn parse_scope(scope: &str) -> Option<Access> {
    let (kind, rest) = scope.split_once(':')?;
    let (name, actions) = rest.rsplit_once(':')?;
    Some(Access {
        kind: kind.into(),
        name: name.into(),
        actions: actions.split(',').filter(|a| !a.is_empty()).map(str::to_string).collect(),
    })
}

/// The scopes a token request asks for: one per `scope` parameter, as docker clients send
/// them, or several in one, space-separated as OAuth2 writes a scope list and as a registry's
/// challenge names them (the OCI conformance suite passes the challenge's list on as is).
pub(crate) fn requested_scopes(form: &Form) -> Vec<String> {
    form.all("scope").flat_map(str::split_whitespace).map(str::to_string).collect()
}

fn scopes_of(form: &Form) -> Vec<Access> {
    requested_scopes(form).iter().filter_map(|s| parse_scope(s)).collect()
}

/// One cell's account at the vendor.
pub struct Account {
    pub spec: AccountSpec,
    /// The gateway session of the cell it belongs to.
    pub session: u64,
    /// Where the cell's repositories live in the backend registry (`<vendor>-cell-<n>`).
    pub backend_prefix: String,
    /// The credential the cell holds (`${PASSWORD}`), minted per [`AccountSpec::credential`].
    pub secret: String,
    credentials: Minted<Principal>,
    /// Refresh tokens the vendor minted for the token endpoint's OAuth2 form (ACR's
    /// `/oauth2/exchange`): the only secrets that form takes.
    refresh_tokens: Minted<Principal>,
    tokens: Minted<Grant>,
}

impl Account {
    fn new(spec: AccountSpec, session: u64, backend_prefix: String) -> Account {
        let credentials = Minted::default();
        let allow: Vec<String> = match spec.credential {
            CredentialKind::ReadOnly => vec!["pull".into()],
            _ => vec!["pull".into(), "push".into()],
        };
        let ttl = if spec.credential == CredentialKind::Expired {
            -time::Duration::days(1)
        } else {
            time::Duration::days(30)
        };
        let (secret, _) = credentials.mint(Principal { user: spec.user.clone(), allow }, 30, ttl);
        if spec.credential == CredentialKind::Revoked {
            credentials.revoke(&secret);
        }
        Account {
            spec,
            session,
            backend_prefix,
            secret,
            credentials,
            refresh_tokens: Minted::default(),
            tokens: Minted::default(),
        }
    }
}

impl Account {
    /// A new credential of this account for `principal`, good for `ttl` (negative: already
    /// expired): what the vendor hands out beside the login secret (Google's access tokens;
    /// refresh tokens are [`Account::issue_refresh_token`]'s).
    pub(crate) fn issue(&self, principal: Principal, ttl: time::Duration) -> String {
        self.credentials.mint(principal, 48, ttl).0
    }

    /// What `secret` grants now, if it is a live credential of this account.
    pub(crate) fn check_credential(&self, secret: &str) -> Option<Principal> {
        self.credentials.check(secret).ok()
    }

    /// A new refresh token of this account for `principal`, good for `ttl` (negative: already
    /// expired): what the vendor's exchange hands out (ACR's `/oauth2/exchange`). The token
    /// endpoint's OAuth2 form takes these and nothing else; Basic takes them like any
    /// credential (ACR's `00000000-0000-0000-0000-000000000000:<refresh token>`).
    pub(crate) fn issue_refresh_token(&self, principal: Principal, ttl: time::Duration) -> String {
        self.refresh_tokens.mint(principal, 48, ttl).0
    }
}

/// Why the token endpoint refused credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BadCredentials {
    /// Not `Basic user:secret`.
    Malformed,
    /// A secret the vendor does not know (never issued, or revoked).
    Unknown,
    Expired,
    /// A known secret under another account's user name.
    WrongUser,
}

/// How one vendor's registry speaks the token flow.
pub trait Vendor: Send + Sync + 'static {
    /// `ghcr.io`, for infra-error details and the backend prefix.
    fn name(&self) -> &'static str;
    /// Host names that serve the registry API.
    fn registry_hosts(&self) -> &'static [&'static str];
    /// The host that serves the token endpoint at [`Vendor::token_path`] (default: the
    /// registry's own host).
    fn auth_host(&self) -> &'static str {
        self.registry_hosts()[0]
    }
    /// The token endpoint's path on [`Vendor::auth_host`].
    fn token_path(&self) -> &'static str {
        "/token"
    }
    /// Whether `path` is the token endpoint (default: [`Vendor::token_path`] exactly); a vendor
    /// with a token endpoint per repository (Artifactory's) matches a pattern.
    fn is_token_path(&self, path: &str) -> bool {
        path == self.token_path()
    }
    /// The repository a token request's scope names, as the registry names it: `name` as the
    /// scope wrote it, asked at `token_path` (default: `name`; Artifactory's per-repository token
    /// endpoints take names relative to the repository key).
    fn scope_repository(&self, _token_path: &str, name: &str) -> String {
        name.to_string()
    }
    /// Whether the registry itself takes Basic credentials on every request, without a token
    /// endpoint (Nexus with "force basic authentication"): the challenge is then the Basic one.
    fn registry_takes_basic(&self) -> bool {
        false
    }
    /// Whether the token endpoint treats credentials it does not accept as none and goes on
    /// anonymously (Harbor: a failed login leaves the security context anonymous).
    fn anonymous_on_bad_credentials(&self) -> bool {
        false
    }
    /// The token endpoint's answer to an anonymous caller, when it refuses one; `scoped`: the
    /// request asked for a scope (default: `None`, issue a token granting what anonymous may).
    fn refuse_anonymous(&self, _scoped: bool) -> Option<Response<Body>> {
        None
    }
    /// The vendor's answer to a manifest the registry does not hold (the backend answered 404 to
    /// `reference` of `repository`); `None`: distribution's own answer goes out.
    fn manifest_unknown(&self, _repository: &str, _reference: &str) -> Option<Response<Body>> {
        None
    }
    /// Whether the token endpoint also takes the OAuth2 form (`POST`, `grant_type=refresh_token`,
    /// `refresh_token`, `service`, `scope`): what go-containerregistry sends when a credential
    /// helper answers the user `<token>` (an identity token). The form takes only refresh tokens
    /// the vendor minted ([`Account::issue_refresh_token`]), never the account's other
    /// credentials (ACR's admin password).
    fn refresh_tokens(&self) -> bool {
        false
    }
    /// Whether the token endpoint takes the OAuth2 password grant (`POST`,
    /// `grant_type=password`, `username`, `password`, `service`, `scope`), as the distribution
    /// spec's OAuth2 document describes it with Docker Hub's names (spec/auth/oauth.md). A vendor
    /// taking neither grant answers a `POST` 404, which the spec tells clients to take as "no
    /// OAuth2 here, use GET".
    fn password_grant(&self) -> bool {
        false
    }
    /// An endpoint of the vendor's own outside `/v2/` and the token endpoint (ACR's
    /// `/oauth2/exchange`), given the whole request: `None` when `path` is not one. `session`
    /// is the gateway session the request came from.
    fn extra_endpoint(
        &self,
        _session: Option<u64>,
        _account: Option<&Account>,
        _parts: &hyper::http::request::Parts,
        _body: &[u8],
    ) -> Option<Response<Body>> {
        None
    }
    /// The `service` of the challenge and of token requests (default: the registry's host).
    fn service(&self) -> &'static str {
        self.registry_hosts()[0]
    }
    /// What a secret the account never minted grants, for vendors that also take credentials
    /// the client makes itself (Google's self-signed service-account JWTs); `None`: not one.
    fn other_credential(&self, _account: &Account, _secret: &str) -> Option<Result<Principal, BadCredentials>> {
        None
    }
    /// The `WWW-Authenticate` value for a request without a usable token; `scope` is what the
    /// request needed, when it was for a repository (default: the token endpoint as realm, the
    /// service, and the scope when there is one).
    fn challenge(&self, scope: Option<&str>) -> String {
        let realm = format!("https://{}{}", self.auth_host(), self.token_path());
        let mut params = vec![("service", self.service())];
        params.extend(scope.map(|scope| ("scope", scope)));
        wire::challenge("Bearer", &realm, &params)
    }
    /// The challenge of a request for `actions` (`pull`, `push,pull`) on `repository` without a
    /// usable token (default: [`Vendor::challenge`] with that scope).
    fn repository_challenge(&self, repository: &str, actions: &str) -> String {
        self.challenge(Some(&format!("repository:{repository}:{actions}")))
    }
    /// Whether the token endpoint checks the user name against the secret's account.
    fn checks_user(&self) -> bool;
    /// The token endpoint's answer to credentials it does not accept.
    fn refuse_credentials(&self, why: BadCredentials) -> Response<Body>;
    /// Which `requested` actions on `repository` a caller gets: `principal` is `None` for an
    /// anonymous one; `owner` is the account's namespace.
    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        let own = repository.split('/').next() == Some(owner);
        principal.filter(|_| own).map_or_else(Vec::new, |p| p.granted(requested))
    }
    /// The namespace the registry holds for an account (default: its owner; a Harbor robot's is
    /// its own project).
    fn holds(&self, account: &AccountSpec) -> String {
        account.owner().to_string()
    }
    /// Whether the registry answers upload `Location`s as paths (ACR) rather than URLs.
    fn relative_locations(&self) -> bool {
        false
    }
    /// Whether repository names may have more than two parts (`owner/a/b`); Docker Hub's
    /// are `namespace/name`.
    fn nested_names(&self) -> bool {
        true
    }
    /// Repositories anyone may pull, shared by every cell (Docker Hub's public images).
    fn is_public(&self, _repository: &str) -> bool {
        false
    }
    /// The token endpoint's refusal when it grants less than was asked (`granted` of
    /// `requested` on `repository`), for registries that refuse rather than scope down (gcr.io
    /// answers a push scope the principal lacks with 403); `None`: answer with what was granted.
    fn refuse_token(
        &self,
        _principal: Option<&Principal>,
        _repository: &str,
        _requested: &[String],
        _granted: &[String],
    ) -> Option<Response<Body>> {
        None
    }
    /// The registry's answer to a request whose token (`grant`) does not grant `action` on
    /// `repository`.
    fn refuse_action(&self, grant: &Grant, repository: &str, action: &str) -> Response<Body>;
}

/// What a vendor runs beside its registry to hand out the credentials the registry takes
/// (Google's OAuth, STS, IAM Credentials and metadata server; Entra ID and Azure's IMDS), on
/// its own host names behind the gateway. Its per-cell state mints into, or is checked by, the
/// cell's [`Account`].
pub trait IdentityService: Send + Sync + 'static {
    /// Host names the gateway routes to the service.
    fn hosts(&self) -> &'static [&'static str];
    /// A host that clients reach without the proxy, at an address they take from the
    /// environment (Google's metadata client ignores `HTTP_PROXY` and reads
    /// `GCE_METADATA_HOST`): each cell gets a gateway listener serving it, see
    /// [`crate::gateway::Session::serve_as`].
    fn direct_host(&self) -> Option<&'static str> {
        None
    }
    /// Sets up the cell behind gateway session `session`, whose account is `account` and
    /// whose identity tables are `tables`; `direct` is its listener for
    /// [`IdentityService::direct_host`].
    fn open_cell(
        &self,
        session: u64,
        account: Arc<Account>,
        tables: &CellTables,
        direct: Option<SocketAddr>,
    ) -> CellIdentity;
    fn close_cell(&self, session: u64);
    /// Another service of the run, at `addr`, serves `host` too (AWS's IMDS shares Azure's
    /// address): requests on `host` this service does not answer go there.
    fn share_host(&self, _host: &str, _addr: SocketAddr) {}
    /// Answers one request of the cell behind `session` (whose body is `body`).
    fn handle(
        &self,
        session: Option<u64>,
        parts: hyper::http::request::Parts,
        body: Bytes,
    ) -> futures_util::future::BoxFuture<'_, Response<Body>>;
}

/// What a cell asks of the identity services beyond its registry account: its identity in
/// a vendor's directory (a scenario's `[azure]` table).
#[derive(Debug, Clone, Default)]
pub struct CellTables {
    pub azure: Option<crate::azure::AzureSpec>,
}

/// What an [`IdentityService`] gives a cell.
#[derive(Debug, Default)]
pub struct CellIdentity {
    /// Placeholder values (`${GOOGLE_SERVICE_ACCOUNT_KEY}`).
    pub values: std::collections::BTreeMap<&'static str, String>,
    /// Variables every cell of the vendor has, before the scenario's own (`GCE_METADATA_HOST`).
    pub env: std::collections::BTreeMap<String, String>,
    /// Values to mask in logs and reports (keys, tokens).
    pub secrets: Vec<String>,
    /// Programs on the cell's PATH (name → shell script): stand-ins for a vendor's CLI.
    pub programs: std::collections::BTreeMap<String, String>,
}

/// Largest request body an identity service reads (token forms and JSON are small).
const IDENTITY_BODY_LIMIT: usize = 1 << 20;

/// Serves `service` on a loopback port.
pub async fn serve_identity(service: Arc<dyn IdentityService>) -> std::io::Result<LoopbackServer> {
    crate::loopback::serve(move |req: Request<Incoming>| {
        let service = service.clone();
        async move {
            let session = wire::session(req.headers());
            let (parts, body) = req.into_parts();
            match http_body_util::Limited::new(body, IDENTITY_BODY_LIMIT).collect().await {
                Ok(body) => service.handle(session, parts, body.to_bytes()).await,
                Err(e) => json(StatusCode::BAD_REQUEST, serde_json::json!({ "error": "invalid_request", "error_description": format!("ko-matrix: unreadable request body: {e}") })),
            }
        }
    })
    .await
}

/// Distribution's refusal of a token that does not cover `action` on `repository`: 401 with
/// `error="insufficient_scope"` added to `vendor`'s challenge for the repository (which names
/// the scope) and the access that was missing, as Docker Hub and distribution's token access
/// controller answer.
pub(crate) fn insufficient_scope(vendor: &(impl Vendor + ?Sized), repository: &str, action: &str) -> Response<Body> {
    let actions = if action == "push" { "pull,push" } else { "pull" };
    let challenge = vendor.repository_challenge(repository, actions);
    let challenge = format!("{challenge},error=\"insufficient_scope\"");
    let body = serde_json::json!({ "errors": [{ "code": "UNAUTHORIZED", "message": "authentication required", "detail": [{ "Type": "repository", "Class": "", "Name": repository, "Action": action }] }] });
    let mut response = json(StatusCode::UNAUTHORIZED, body);
    response.headers_mut().insert("www-authenticate", challenge.parse().expect("a challenge is a valid header"));
    response
}

/// The `401` a registry host answers with `challenge` and a Distribution error body.
pub(crate) fn unauthorized(challenge: String, message: &str) -> Response<Body> {
    let mut response = distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", message);
    response.headers_mut().insert("www-authenticate", challenge.parse().expect("a challenge is a valid header"));
    response
}

/// A cell's accounts at a vendor, the first opened first; one registry holds them all.
type Accounts = Vec<Arc<Account>>;

/// A token-auth vendor's registry, with per-cell accounts behind each gateway session.
pub struct Front {
    vendor: Box<dyn Vendor>,
    cells: Cells<Accounts>,
    backend: Backend,
}

impl Front {
    pub fn new(vendor: Box<dyn Vendor>, backend: SocketAddr, service: &'static str) -> Arc<Front> {
        let backend = if vendor.relative_locations() {
            Backend::new(backend, service).with_relative_locations()
        } else {
            Backend::new(backend, service)
        };
        Arc::new(Front { vendor, cells: Cells::default(), backend })
    }

    /// Every host name the gateway must route here.
    pub fn hosts(&self) -> Vec<&'static str> {
        let mut hosts = self.vendor.registry_hosts().to_vec();
        if !hosts.contains(&self.vendor.auth_host()) {
            hosts.push(self.vendor.auth_host());
        }
        hosts
    }

    /// The host cells push to (the first registry host).
    pub fn registry_host(&self) -> &'static str {
        self.vendor.registry_hosts()[0]
    }

    /// The repository a cell pushes to for `path` (`cells/<scenario>/<tool>/<version>`):
    /// `<owner>/<path>`, flattened to one name where the vendor allows no nesting.
    pub fn repository_for(&self, owner: &str, path: &str) -> String {
        if self.vendor.nested_names() {
            format!("{owner}/{path}")
        } else {
            format!("{owner}/{}", path.replace('/', "-"))
        }
    }

    /// Where the public repositories live in the backend, shared by every cell.
    pub fn public_prefix(&self) -> String {
        format!("{}-public", self.vendor.name().replace('.', "-"))
    }

    /// The backend registry's address.
    pub fn backend(&self) -> SocketAddr {
        self.backend.addr
    }

    /// Gives the cell behind gateway session `session` an account: its first, or another one
    /// beside those it has (the same registry, so the same backend prefix).
    pub fn open_cell(&self, session: u64, spec: AccountSpec) -> Arc<Account> {
        let account =
            Arc::new(Account::new(spec, session, format!("{}-cell-{session}", self.vendor.name().replace('.', "-"))));
        let mut accounts = self.cells.get(session).map(|a| a.as_ref().clone()).unwrap_or_default();
        accounts.push(account.clone());
        self.cells.open(session, Arc::new(accounts));
        account
    }

    /// The namespaces the registry holds for the cell's accounts other than `account`.
    fn others(&self, account: &Account, accounts: &[Arc<Account>]) -> Vec<String> {
        let others = accounts.iter().filter(|a| !std::ptr::eq(a.as_ref(), account));
        others.map(|a| self.vendor.holds(&a.spec)).collect()
    }

    /// Whether the cell behind `session` has an account here already.
    pub fn has_cell(&self, session: u64) -> bool {
        self.cells.get(session).is_some()
    }

    pub fn close_cell(&self, session: u64) {
        self.cells.close(session);
    }

    pub async fn serve(self: Arc<Self>) -> std::io::Result<LoopbackServer> {
        crate::loopback::serve(move |req| {
            let front = self.clone();
            async move { front.dispatch(req).await }
        })
        .await
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        let host = wire::host(req.headers());
        let session = wire::session(req.headers());
        let accounts = session.and_then(|s| self.cells.get(s)).unwrap_or_default();
        // The cell's first account answers the vendor's own endpoints.
        let account = accounts.first().cloned();
        let path = req.uri().path().to_string();
        let token_endpoint =
            !self.vendor.registry_takes_basic() && host == self.vendor.auth_host() && self.vendor.is_token_path(&path);
        if token_endpoint || !path.starts_with("/v2") {
            // Token and vendor endpoints: small form requests, read whole.
            let (parts, body) = req.into_parts();
            let body = match http_body_util::Limited::new(body, 1 << 20).collect().await {
                Ok(collected) => collected.to_bytes(),
                Err(_) => {
                    return distribution_error(
                        StatusCode::BAD_REQUEST,
                        "UNSUPPORTED",
                        "ko-matrix: the request body could not be read",
                    )
                }
            };
            if let Some(response) = self.vendor.extra_endpoint(session, account.as_deref(), &parts, &body) {
                return response;
            }
            if token_endpoint {
                if parts.method == hyper::Method::POST {
                    return self.oauth2_token(account.as_deref(), parts.uri.path(), &body);
                }
                return self.token(&accounts, &parts);
            }
            return distribution_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("ko-matrix: {} serves no {host}{path}", self.vendor.name()),
            );
        }
        if !self.vendor.registry_hosts().contains(&host.as_str()) {
            return distribution_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("ko-matrix: {} serves no {host}{path}", self.vendor.name()),
            );
        }
        self.registry(accounts, req).await
    }

    /// `POST <token path>` with the OAuth2 form: `grant_type=refresh_token&refresh_token=…&
    /// service=…&scope=…` where the vendor takes refresh tokens (the refresh token must be one
    /// the vendor minted for this account, [`Account::issue_refresh_token`], and still live; any
    /// other secret of the account, the admin password or a vendor access token, is refused as
    /// unknown), `grant_type=password&username=…&password=…` where it takes the password grant
    /// (checked like Basic credentials at GET). A vendor taking neither answers 404.
    fn oauth2_token(&self, account: Option<&Account>, path: &str, body: &[u8]) -> Response<Body> {
        if !self.vendor.refresh_tokens() && !self.vendor.password_grant() {
            return distribution_error(
                StatusCode::NOT_FOUND,
                "NOT_FOUND",
                &format!("ko-matrix: {} takes no OAuth2 form at its token endpoint; use GET", self.vendor.name()),
            );
        }
        let form = Form::parse(body);
        let field = |name: &str| form.get(name).map(str::to_string);
        let grant_type = field("grant_type");
        let supported = match grant_type.as_deref() {
            Some("refresh_token") => self.vendor.refresh_tokens(),
            Some("password") => self.vendor.password_grant(),
            _ => false,
        };
        if !supported {
            return distribution_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                &format!("ko-matrix: grant_type {grant_type:?} is not supported here"),
            );
        }
        if field("service").as_deref().is_some_and(|s| s != self.vendor.service()) {
            return distribution_error(
                StatusCode::BAD_REQUEST,
                "UNSUPPORTED",
                &format!("unknown service {:?}", field("service")),
            );
        }
        let Some(account) = account else { return self.vendor.refuse_credentials(BadCredentials::Unknown) };
        let principal = match grant_type.as_deref() {
            Some("password") => {
                let (user, secret) = (field("username").unwrap_or_default(), field("password").unwrap_or_default());
                match self.principal(account, &secret) {
                    Ok(principal) if self.vendor.checks_user() && !user.eq_ignore_ascii_case(&principal.user) => {
                        return self.vendor.refuse_credentials(BadCredentials::WrongUser)
                    }
                    Ok(principal) => principal,
                    Err(why) => return self.vendor.refuse_credentials(why),
                }
            }
            _ => match account.refresh_tokens.check(&field("refresh_token").unwrap_or_default()) {
                Ok(principal) => principal,
                Err(Refusal::Expired) => return self.vendor.refuse_credentials(BadCredentials::Expired),
                Err(Refusal::Unknown) => return self.vendor.refuse_credentials(BadCredentials::Unknown),
            },
        };
        match self.issue(account, Some(principal), path, scopes_of(&form)) {
            Ok(token) => json(
                StatusCode::OK,
                serde_json::json!({ "access_token": token, "expires_in": REGISTRY_TOKEN_TTL.whole_seconds() }),
            ),
            Err(refusal) => *refusal,
        }
    }

    /// A registry token for `principal` (None: anonymous) covering what it may do of `scopes`
    /// (asked at `token_path`), or the vendor's refusal where it refuses rather than grants less.
    fn issue(
        &self,
        account: &Account,
        principal: Option<Principal>,
        token_path: &str,
        scopes: Vec<Access>,
    ) -> Result<String, Box<Response<Body>>> {
        self.issue_among(account, &[], principal, token_path, scopes)
    }

    /// [`Front::issue`] in a cell whose registry holds the namespaces of `accounts` too.
    fn issue_among(
        &self,
        account: &Account,
        accounts: &[Arc<Account>],
        principal: Option<Principal>,
        token_path: &str,
        scopes: Vec<Access>,
    ) -> Result<String, Box<Response<Body>>> {
        let owner = account.spec.owner();
        let mut access = Vec::new();
        for mut asked in scopes.into_iter().filter(|a| a.kind == "repository") {
            asked.name = self.vendor.scope_repository(token_path, &asked.name);
            let mut actions = self.vendor.grant(owner, principal.as_ref(), &asked.name, &asked.actions);
            if self.vendor.is_public(&asked.name)
                && asked.actions.iter().any(|x| x == "pull")
                && !actions.iter().any(|x| x == "pull")
            {
                actions.push("pull".into());
            }
            if let Some(refusal) = self.vendor.refuse_token(principal.as_ref(), &asked.name, &asked.actions, &actions) {
                return Err(Box::new(refusal));
            }
            access.push(Access { actions, ..asked });
        }
        let (subject, allow) = principal.map(|p| (p.user, p.allow)).unwrap_or_default();
        let namespaces = self.others(account, accounts);
        let grant = Grant { subject, allow, namespace: owner.to_string(), namespaces, access };
        Ok(account.tokens.mint(grant, 48, REGISTRY_TOKEN_TTL).0)
    }

    /// `GET <token path>?service=…&scope=…` with Basic credentials or none: the token is the
    /// account's whose credential they are (an anonymous one, the cell's first account's).
    fn token(&self, accounts: &[Arc<Account>], parts: &hyper::http::request::Parts) -> Response<Body> {
        let query = Form::parse(parts.uri.query().unwrap_or_default());
        let service = query.get("service");
        if service.is_some_and(|s| s != self.vendor.service()) {
            return distribution_error(StatusCode::BAD_REQUEST, "UNSUPPORTED", &format!("unknown service {service:?}"));
        }
        let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        let (account, principal) = match authorization {
            None => (accounts.first(), None),
            Some(value) => match self.authenticate(accounts, value) {
                Ok((account, principal)) => (Some(account), Some(principal)),
                Err(_) if self.vendor.anonymous_on_bad_credentials() => (accounts.first(), None),
                Err(why) => return self.vendor.refuse_credentials(why),
            },
        };
        let Some(account) = account else {
            // No cell behind this session: nobody the vendor knows, with or without credentials.
            return self.vendor.refuse_credentials(BadCredentials::Unknown);
        };
        let scopes = scopes_of(&query);
        if principal.is_none() {
            if let Some(refusal) = self.vendor.refuse_anonymous(!scopes.is_empty()) {
                return refusal;
            }
        }
        let token = match self.issue_among(account, accounts, principal, parts.uri.path(), scopes) {
            Ok(token) => token,
            Err(refusal) => return *refusal,
        };
        let issued_at = wire::iso8601(time::OffsetDateTime::now_utc());
        json(
            StatusCode::OK,
            serde_json::json!({ "token": token, "access_token": token, "expires_in": REGISTRY_TOKEN_TTL.whole_seconds(), "issued_at": issued_at }),
        )
    }

    /// The account among `accounts` whose credential `authorization` (Basic) holds, and what it
    /// grants; else why none takes it (an expired credential of one says so even when another
    /// does not know it).
    fn authenticate<'a>(
        &self,
        accounts: &'a [Arc<Account>],
        authorization: &str,
    ) -> Result<(&'a Arc<Account>, Principal), BadCredentials> {
        let (user, secret) =
            crate::registry_front::basic_credentials(authorization).ok_or(BadCredentials::Malformed)?;
        let mut why = BadCredentials::Unknown;
        for account in accounts {
            match self.principal(account, &secret) {
                Ok(principal) if self.vendor.checks_user() && !user.eq_ignore_ascii_case(&principal.user) => {
                    why = BadCredentials::WrongUser
                }
                Ok(principal) => return Ok((account, principal)),
                Err(BadCredentials::Unknown) => {}
                Err(other) => why = other,
            }
        }
        Err(why)
    }

    /// What `secret`, a credential of `account` (minted by the vendor, a refresh token
    /// included, or vouched for by it), grants now.
    fn principal(&self, account: &Account, secret: &str) -> Result<Principal, BadCredentials> {
        let minted = match account.credentials.check(secret) {
            Err(Refusal::Unknown) => account.refresh_tokens.check(secret),
            known => known,
        };
        match minted {
            Ok(principal) => Ok(principal),
            Err(Refusal::Expired) => Err(BadCredentials::Expired),
            Err(Refusal::Unknown) => {
                self.vendor.other_credential(account, secret).unwrap_or(Err(BadCredentials::Unknown))
            }
        }
    }

    async fn registry(&self, accounts: Arc<Accounts>, req: Request<Incoming>) -> Response<Body> {
        let (parts, body) = req.into_parts();
        match registry_front::judge(&TokenGate { front: self, accounts }, &parts) {
            Verdict::Answer(answer) => answer,
            Verdict::Forward { prefix, repository, rest, .. } => {
                let head = parts.method == hyper::Method::HEAD;
                let answer = self.backend.forward(&prefix, &repository, &rest, parts, body.boxed()).await;
                let reference = rest.strip_prefix("/manifests/").filter(|_| answer.status() == StatusCode::NOT_FOUND);
                match reference.and_then(|reference| self.vendor.manifest_unknown(&repository, reference)) {
                    // A HEAD answer carries the status and headers only.
                    Some(unknown) if head => {
                        let (parts, _) = unknown.into_parts();
                        Response::from_parts(parts, wire::full(Bytes::new()))
                    }
                    Some(unknown) => unknown,
                    None => answer,
                }
            }
        }
    }
}

/// A token-flow registry's gate: a registry token the cell's account minted, granting the
/// request's action on its repository; or, where the registry takes Basic itself, the
/// account's credential, granting what the vendor grants it on the request's repository.
struct TokenGate<'a> {
    front: &'a Front,
    /// The cell's accounts (none for a request of no cell).
    accounts: Arc<Accounts>,
}

impl TokenGate<'_> {
    /// The grant of a request with Basic credentials, or the vendor's refusal of them.
    fn admit_basic(&self, parts: &Parts, route: &Route) -> Result<Option<Grant>, Box<Response<Body>>> {
        let vendor = &self.front.vendor;
        let authorization = parts.headers.get("authorization").and_then(|v| v.to_str().ok());
        let (account, principal) = match authorization {
            Some(value) => self.front.authenticate(&self.accounts, value),
            None => Err(BadCredentials::Malformed),
        }
        .map_err(|why| Box::new(vendor.refuse_credentials(why)))?;
        let owner = account.spec.owner();
        let access = match route {
            Route::Repository { name, .. } => {
                let actions = vendor.grant(owner, Some(&principal), name, &["pull".into(), "push".into()]);
                vec![Access { kind: "repository".into(), name: name.clone(), actions }]
            }
            _ => Vec::new(),
        };
        let namespaces = self.front.others(account, &self.accounts);
        Ok(Some(Grant { subject: principal.user, allow: principal.allow, namespace: owner.into(), namespaces, access }))
    }
}

impl Gate for TokenGate<'_> {
    /// The grant of the request's token; None only for a path that is no registry route.
    type Caller = Option<Grant>;

    fn admit(&self, parts: &Parts, route: &Route) -> Result<Option<Grant>, Box<Response<Body>>> {
        if self.front.vendor.registry_takes_basic() {
            return self.admit_basic(parts, route);
        }
        let bearer = parts
            .headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(|t| t.trim().to_string());
        let grant = bearer.and_then(|token| self.accounts.iter().find_map(|a| a.tokens.check(&token).ok()));
        match (grant, route) {
            (Some(grant), _) => Ok(Some(grant)),
            (None, Route::Other) => Ok(None),
            (None, Route::Base) => {
                Err(Box::new(unauthorized(self.front.vendor.challenge(None), "authentication required")))
            }
            (None, Route::Repository { name, rest }) => {
                let action = registry_front::action(&parts.method, rest);
                let actions = if action == "push" { "push,pull" } else { "pull" };
                let challenge = self.front.vendor.repository_challenge(name, actions);
                Err(Box::new(unauthorized(challenge, "authentication required")))
            }
        }
    }

    fn base(&self, _: Option<Grant>) -> Response<Body> {
        json(StatusCode::OK, serde_json::json!({}))
    }

    fn authorize(
        &self,
        grant: &Option<Grant>,
        parts: &Parts,
        repository: &str,
        rest: &str,
    ) -> Result<String, Box<Response<Body>>> {
        let grant = grant.as_ref().expect("a repository route is let in only with a grant");
        let action = registry_front::action(&parts.method, rest);
        if !grant.permits(repository, action) {
            return Err(Box::new(self.front.vendor.refuse_action(grant, repository, action)));
        }
        let account = self.accounts.first().expect("a valid token belongs to a cell");
        Ok(if self.front.vendor.is_public(repository) {
            self.front.public_prefix()
        } else {
            account.backend_prefix.clone()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_parse_including_names_with_slashes_and_lists() {
        let access = parse_scope("repository:team/app:push,pull").unwrap();
        assert_eq!((access.kind.as_str(), access.name.as_str()), ("repository", "team/app"));
        assert_eq!(access.actions, ["push", "pull"]);
        assert_eq!(parse_scope("repository:app:").unwrap().actions, Vec::<String>::new());
        assert_eq!(parse_scope("nonsense"), None);
        let many = scopes_of(&Form::parse("service=ghcr.io&scope=repository%3Aa%2Fb%3Apull%20repository%3Aa%2Fc%3Apush%2Cpull&scope=repository:d:pull"));
        assert_eq!(many.iter().map(|a| a.name.as_str()).collect::<Vec<_>>(), ["a/b", "a/c", "d"]);
        assert_eq!(many[1].actions, ["push", "pull"]);
    }

    #[test]
    fn accounts_hold_the_credential_their_spec_names() {
        let account = |credential| Account::new(AccountSpec { credential, ..AccountSpec::default() }, 1, "p".into());
        let write = account(CredentialKind::Write);
        assert_eq!(write.credentials.check(&write.secret).unwrap().allow, ["pull", "push"]);
        let read = account(CredentialKind::ReadOnly);
        assert_eq!(read.credentials.check(&read.secret).unwrap().allow, ["pull"]);
        let expired = account(CredentialKind::Expired);
        assert_eq!(expired.credentials.check(&expired.secret), Err(Refusal::Expired));
        let revoked = account(CredentialKind::Revoked);
        assert_eq!(revoked.credentials.check(&revoked.secret), Err(Refusal::Unknown));
        assert_eq!(AccountSpec { owner: Some("Org".into()), ..AccountSpec::default() }.owner(), "Org");
        assert_eq!(AccountSpec::default().owner(), "ko-matrix-bot");
    }

    #[test]
    fn grants_name_exact_repositories_and_actions() {
        let grant = Grant {
            subject: "u".into(),
            allow: vec!["pull".into()],
            namespace: "u".into(),
            namespaces: Vec::new(),
            access: vec![Access { kind: "repository".into(), name: "u/app".into(), actions: vec!["pull".into()] }],
        };
        assert!(grant.permits("u/app", "pull"));
        assert!(!grant.permits("u/app", "push"));
        assert!(!grant.permits("u/other", "pull"));
    }
}
