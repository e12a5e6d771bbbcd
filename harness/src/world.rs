//! The push world of one run: the run's CA, the gateway, the registries each flavour needs,
//! the token server, the base image. Started once per run, stopped when dropped.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::base_image::{self, BaseImage};
use crate::config::ServicesConfig;
use crate::credential_files::{self, CellFile, EcrToken};
use crate::leak_check::{HostKeys, LeakCheck};
use crate::outcome::NotFetched;
use crate::provision::GoProvisioner;
use crate::scenario::{Credential, Flavour, Scenario, Side, TOKEN_AUTH_HOST};
use crate::services::binaries::ServiceBinaries;
use crate::services::localstack::{self, EcrBackend, Facilities, LocalStack, LocalStackError};
use crate::services::registry::{RegistryAuth, RegistrySpec};
use crate::services::runtime::{self, RunningRegistry, ServiceError};
use ko_matrix_emulators::aws::oidc;
use ko_matrix_emulators::aws::state::{AwsCell, AwsSpec, CachedToken, WebIdentity};
use ko_matrix_emulators::aws::{AwsWorld, Emulator};
use ko_matrix_emulators::bearer::{AccountSpec, CellTables};
use ko_matrix_emulators::gateway::{error_chain, Backend, BlobRedirect, Gateway, GatewayError, Route, Session};
use ko_matrix_emulators::loopback::LoopbackServer;
use ko_matrix_emulators::pki::{Ca, PkiError};
use ko_matrix_emulators::storage::{Storage, Store};
use ko_matrix_emulators::token_server::TokenIssuer;
pub use ko_matrix_emulators::vendor::VendorCell;
use ko_matrix_emulators::vendor::{self, Backing, CellSpec, Start, StartError, WorldPart};

#[derive(Debug, thiserror::Error)]
pub enum WorldError {
    #[error(transparent)]
    Service(#[from] ServiceError),
    #[error(transparent)]
    Pki(#[from] PkiError),
    #[error(transparent)]
    Gateway(#[from] ko_matrix_emulators::gateway::GatewayError),
    #[error(transparent)]
    BaseImage(#[from] base_image::BaseImageError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    LocalStack(#[from] LocalStackError),
    #[error("{0}, which the run's network namespace cannot reach; run with {env}=proxy-only", env = crate::containment::ENV)]
    HostNetwork(String),
    #[error("{0}")]
    Key(String),
}

/// How the harness itself reads from a target registry (to verify pushes).
enum Admin {
    None,
    Basic(Credential),
    Token(Arc<TokenIssuer>),
}

/// Why the harness could not push an image into a cell's repository before the tool ran.
#[derive(Debug, thiserror::Error)]
pub enum SeedError {
    #[error("the run has no {0} registry")]
    NoRegistry(&'static str),
    #[error("pushing the image the tool acts on into {service}: {source}")]
    Push { service: String, source: base_image::BaseImageError },
}

/// A registry cells push to, behind the gateway.
pub struct TargetRegistry {
    pub flavour: Flavour,
    pub backend: SocketAddr,
    /// The `Host` to send to the backend (LocalStack's per-registry names).
    pub host_header: Option<String>,
    pub tls: bool,
    /// What it is, for infra-error details (`registry (basic flavour)`).
    pub service: String,
    /// The credentials that work (scenarios' `${USER}` / `${PASSWORD}`).
    pub user: Credential,
    admin: Admin,
}

impl TargetRegistry {
    /// `https://<backend>` or `http://<backend>`: where the harness reaches it directly.
    fn origin(&self) -> String {
        format!("{}://{}", if self.tls { "https" } else { "http" }, self.backend)
    }

    /// `request` to the backend as the harness's admin, for `actions` (`pull`, `pull,push`) on
    /// `repository`, with the `Host` the backend expects.
    fn as_admin(&self, request: reqwest::RequestBuilder, repository: &str, actions: &str) -> reqwest::RequestBuilder {
        let request = match &self.host_header {
            Some(host) => request.header("host", host),
            None => request,
        };
        match &self.admin {
            Admin::None => request,
            Admin::Basic(admin) => request.basic_auth(&admin.username, Some(&admin.password)),
            Admin::Token(issuer) => {
                request.bearer_auth(issuer.token("ko-matrix-admin", &[format!("repository:{repository}:{actions}")]))
            }
        }
    }
}

/// The AWS side of a run.
pub struct Aws {
    pub backend: AwsBackend,
    /// `docker-credential-ecr-login`, for scenarios whose docker config names it.
    pub ecr_login: PathBuf,
}

/// Where ECR scenarios' AWS traffic goes.
pub enum AwsBackend {
    /// The embedded emulator (per-cell AWS state).
    Embedded(Arc<AwsWorld>),
    /// LocalStack: one shared account state; some scenarios cannot be expressed.
    LocalStack(Arc<LocalStackEcr>),
}

impl Aws {
    pub fn emulator(&self) -> Option<&Arc<Emulator>> {
        match &self.backend {
            AwsBackend::Embedded(aws) => Some(&aws.emulator),
            AwsBackend::LocalStack(_) => None,
        }
    }
}

/// LocalStack as the world's ECR part: the ECR hosts of the run's AWS accounts, routed to it.
pub struct LocalStackEcr {
    localstack: LocalStack,
    specs: Vec<AwsSpec>,
}

impl WorldPart for LocalStackEcr {
    fn store(&self) -> String {
        "LocalStack".into()
    }

    fn services(&self) -> Vec<(String, SocketAddr)> {
        vec![("LocalStack".into(), self.localstack.endpoint)]
    }

    fn routes(&self) -> Vec<(String, Backend)> {
        let backend = Backend::http(self.localstack.endpoint).named("LocalStack");
        let registry = |spec: &AwsSpec| Backend {
            host_header: Some(LocalStack::registry_host(&spec.account, &spec.region)),
            ..backend.clone()
        };
        let routes = self
            .specs
            .iter()
            .flat_map(|spec| [(spec.api_host(), backend.clone()), (spec.registry_host(), registry(spec))]);
        routes.collect()
    }
}

/// The subject of the web identity tokens cells get: a GitHub Actions workflow on main.
const WEB_IDENTITY_SUBJECT: &str = "repo:ko-matrix/app:ref:refs/heads/main";

/// The web identity token's file, relative to the cell's directory.
const WEB_IDENTITY_TOKEN: &str = "web-identity-token";

/// The placeholders whose values are AWS secrets, masked with their `AWS:<value>` encodings.
const SECRET_VALUES: [&str; 5] = [
    "PASSWORD",
    "ECR_EXPIRED_PASSWORD",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
];

/// Everything a cell needs from the AWS backend, so the cell never reaches into it; dropping
/// it closes the cell's AWS world.
pub struct AwsCellCredentials {
    /// REGISTRY, USER, PASSWORD, ECR_PASSWORD, ECR_EXPIRED_PASSWORD, the AWS_* keys, account,
    /// region and the identity variables (role, web identity, container credentials).
    pub values: BTreeMap<&'static str, String>,
    /// Where the push lands in the backend registry, for fetching it back.
    pub backend_repository: String,
    /// Files the cell gets that its log does not list (the web identity token: all secret).
    pub files: Vec<CellFile>,
    /// The secrets among `values`, with their `AWS:<value>` encodings.
    pub secrets: Vec<String>,
    /// The token seeding the ECR helper's cache, when the scenario asks for one.
    ecr_cache: Option<(AwsSpec, EcrToken)>,
    /// The embedded emulator's state for the cell (LocalStack keeps none per cell).
    emulator: Option<EmulatorCell>,
}

/// A cell's state in the embedded emulator, removed when the cell ends.
struct EmulatorCell {
    emulator: Arc<Emulator>,
    session: u64,
    cell: Arc<AwsCell>,
}

impl Drop for EmulatorCell {
    fn drop(&mut self) {
        self.emulator.close_cell(self.session);
    }
}

impl AwsCellCredentials {
    /// Whether this run minted the access key `id` for the cell (its own key, or a role
    /// session it issued since); `None` where the backend cannot tell (LocalStack mints its
    /// own: only the key the cell was given is known to be the cell's).
    pub fn minted(&self, id: &str) -> Option<bool> {
        match &self.emulator {
            Some(e) => Some(e.cell.key(id).is_some()),
            None => self.values.get("AWS_ACCESS_KEY_ID").is_some_and(|own| own == id).then_some(true),
        }
    }

    /// AWS's last refusal in this cell: the tool may not show it (HEAD responses have no body).
    pub(crate) fn last_denial(&self) -> Option<String> {
        self.emulator.as_ref().and_then(|e| e.cell.last_denial())
    }

    /// `~/.ecr/cache.json` seeded for the access key the cell's environment names (a scenario
    /// may name one AWS no longer knows), else for the cell's own.
    pub(crate) fn ecr_login_cache(&self, env: &BTreeMap<String, String>) -> Option<CellFile> {
        let (spec, token) = self.ecr_cache.as_ref()?;
        let key = env.get("AWS_ACCESS_KEY_ID").unwrap_or(&self.values["AWS_ACCESS_KEY_ID"]);
        Some(credential_files::ecr_login_cache(spec, key, token))
    }
}

impl AwsBackend {
    /// Opens the AWS world of the cell behind gateway session `session` (its files go below
    /// `cell_dir`). LocalStack mints no expired password: cells needing one are skipped.
    pub async fn open_cell(&self, session: u64, spec: &AwsSpec, cell_dir: &Path) -> Result<AwsCellCredentials, String> {
        let mut values = BTreeMap::from([
            ("REGISTRY", spec.registry_host()),
            ("USER", "AWS".to_string()),
            ("AWS_ACCOUNT", spec.account.clone()),
            ("AWS_REGION", spec.region.clone()),
        ]);
        let mut files = Vec::new();
        let (backend_repository, ecr_cache, emulator) = match self {
            AwsBackend::Embedded(aws) => {
                let (emulator, addr) = (&aws.emulator, aws.addr());
                let opened = EmulatorCell {
                    cell: emulator.open_cell(session, spec.clone()).await?,
                    emulator: emulator.clone(),
                    session,
                };
                let cell = &opened.cell;
                let mint = |ttl| cell.mint_password(&cell.key, &spec.account, &spec.region, ttl);
                let (password, _) = mint(time::Duration::hours(12));
                values.extend([
                    ("PASSWORD", password.clone()),
                    ("ECR_PASSWORD", password),
                    ("ECR_EXPIRED_PASSWORD", mint(-time::Duration::hours(1)).0),
                    ("AWS_ACCESS_KEY_ID", cell.key.id.clone()),
                    ("AWS_SECRET_ACCESS_KEY", cell.key.secret.clone()),
                    ("AWS_SESSION_TOKEN", cell.key.session_token.clone().unwrap_or_default()),
                    (
                        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
                        format!("http://{}{}", addr, Emulator::container_credentials_path(session)),
                    ),
                    ("AWS_CONTAINER_AUTHORIZATION_TOKEN", cell.container_token.clone()),
                ]);
                values.extend(cell.role_arn().map(|arn| ("AWS_ROLE_ARN", arn)));
                if let Some(kind) = spec.web_identity {
                    let (audience, ttl) = match kind {
                        WebIdentity::Valid => (oidc::STS_AUDIENCE, 3600),
                        WebIdentity::Expired => (oidc::STS_AUDIENCE, -600),
                        WebIdentity::WrongAudience => ("api://AzureADTokenExchange", 3600),
                    };
                    let token = emulator.oidc.mint(WEB_IDENTITY_SUBJECT, audience, ttl);
                    values
                        .insert("AWS_WEB_IDENTITY_TOKEN_FILE", cell_dir.join(WEB_IDENTITY_TOKEN).display().to_string());
                    files.push(CellFile {
                        path: WEB_IDENTITY_TOKEN.into(),
                        contents: token.clone(),
                        env: None,
                        secrets: vec![token],
                    });
                }
                let ecr_cache = spec.ecr_cache.map(|seed| {
                    let now = time::OffsetDateTime::now_utc();
                    let (requested, ttl) = match seed {
                        CachedToken::Valid => (now, time::Duration::hours(12)),
                        CachedToken::Expired => (now - time::Duration::hours(13), -time::Duration::hours(1)),
                    };
                    let (password, expires) = mint(ttl);
                    (spec.clone(), EcrToken { password, requested, expires })
                });
                let backend_repository = format!("{}/{}", cell.backend_prefix, spec.push_to);
                (backend_repository, ecr_cache, Some(opened))
            }
            AwsBackend::LocalStack(localstack) => {
                let cell = localstack.localstack.prepare(spec).await?;
                values.extend([
                    ("PASSWORD", cell.password.clone()),
                    ("ECR_PASSWORD", cell.password),
                    ("ECR_EXPIRED_PASSWORD", String::new()),
                    ("AWS_ACCESS_KEY_ID", cell.access_key_id),
                    ("AWS_SECRET_ACCESS_KEY", cell.secret),
                    ("AWS_SESSION_TOKEN", cell.session_token.unwrap_or_default()),
                ]);
                (spec.push_to.clone(), None, None)
            }
        };
        let secrets = SECRET_VALUES
            .iter()
            .filter_map(|name| values.get(name))
            .flat_map(|value| {
                [
                    value.clone(),
                    credential_files::basic_auth_value(&Credential {
                        username: values["USER"].clone(),
                        password: value.clone(),
                    }),
                ]
            })
            .collect();
        Ok(AwsCellCredentials { values, backend_repository, files, secrets, ecr_cache, emulator })
    }
}

/// A vendor registry of the run (ghcr.io): its part of the world, serving until dropped.
pub struct VendorRegistry {
    part: Arc<dyn WorldPart>,
    /// The run's base image as the vendor's public repository (`docker.io/ko-matrix/base@…`),
    /// where the vendor has public images.
    pub public_base: Option<String>,
}

impl VendorRegistry {
    /// Opens the account of the cell behind gateway session `session` (the scenario's
    /// `[account]`), and its identity at the vendor's identity services.
    pub async fn open_cell(&self, session: &Session, scenario: &Scenario) -> Result<VendorCell, GatewayError> {
        let account = scenario.account.clone().unwrap_or_default();
        self.open_account(session, &account, scenario.azure.clone()).await
    }

    /// Opens `account` for the cell behind gateway session `session` (a scenario's `[account]`,
    /// or a copy source's), and its identity at the vendor's identity services (`azure`: who it
    /// is in Entra ID). A second account of the cell at the vendor gets no identity there.
    pub async fn open_account(
        &self,
        session: &Session,
        account: &AccountSpec,
        azure: Option<ko_matrix_emulators::azure::AzureSpec>,
    ) -> Result<VendorCell, GatewayError> {
        let cell = CellSpec { account: account.clone(), tables: CellTables { azure } };
        Ok(self.part.open_cell(session, &cell).await?.expect("a vendor registry's part opens accounts"))
    }
}

/// A part of the world as started, with the registry its pushes land in.
struct StartedPart {
    flavour: Flavour,
    part: Arc<dyn WorldPart>,
    /// The backend registry the harness runs for it (LocalStack is its own).
    registry: Option<RunningRegistry>,
    /// Where its pushes land, for fetching them back.
    store: SocketAddr,
}

/// The vendors' parts, in the order their services are listed: adding a vendor is adding its
/// module to the emulators and a line here. ECR's part comes after them, on the backend
/// [`WorldPlan`] chose.
const VENDORS: [(Flavour, Start); 9] = [
    (Flavour::Ghcr, ko_matrix_emulators::github::start),
    (Flavour::Dockerhub, ko_matrix_emulators::dockerhub::start),
    (Flavour::Gcp, ko_matrix_emulators::google::start),
    (Flavour::Azure, ko_matrix_emulators::azure::start),
    (Flavour::Harbor, ko_matrix_emulators::harbor::start),
    (Flavour::Gitlab, ko_matrix_emulators::gitlab::start),
    (Flavour::Quay, ko_matrix_emulators::quay::start),
    (Flavour::Artifactory, ko_matrix_emulators::artifactory::start),
    (Flavour::Nexus, ko_matrix_emulators::nexus::start),
];

fn start_error(error: StartError) -> WorldError {
    match error {
        StartError::Serving { service, source } => WorldError::Io { action: "serving", path: service.into(), source },
        StartError::Key(message) => WorldError::Key(message),
    }
}

pub struct World {
    pub ca: Arc<Ca>,
    pub gateway: Gateway,
    /// `SSL_CERT_FILE` for cells: the run's CA.
    pub ca_bundle: PathBuf,
    /// The base image reference for `.ko.yaml`.
    pub base_image: String,
    /// What a copy's source holds: the harness puts it there before the tool copies it.
    copy_image: BaseImage,
    pub targets: BTreeMap<Flavour, TargetRegistry>,
    /// `process` or `docker`.
    pub runtime: &'static str,
    pub started_in: Duration,
    client: reqwest::Client,
    /// The AWS side, when an ECR scenario runs.
    pub aws: Option<Aws>,
    /// The vendor registries under their real names (ghcr.io), when their scenarios run.
    pub vendors: BTreeMap<Flavour, VendorRegistry>,
    /// Choices the user should hear about once (an `auto` setting falling back).
    pub notes: Vec<String>,
    /// How cells' AWS keys are checked for leaks, which depends on the AWS backend.
    pub leak_check: LeakCheck,
    /// Every service cells depend on, for [`World::unreachable_services`].
    pub services: Vec<Service>,
    _registries: Vec<RunningRegistry>,
    _token_server: Option<LoopbackServer>,
    /// The vendors' object stores, where their blob downloads are redirected.
    storage: Arc<Storage>,
}

/// What a run's world is made of, decided before anything starts: how the registries run
/// and which backend serves ECR scenarios.
pub struct WorldPlan {
    /// `process` or `docker`.
    pub runtime: &'static str,
    ecr_backend: Option<EcrBackend>,
    /// Choices the user should hear about once (an `auto` setting falling back).
    pub notes: Vec<String>,
}

impl WorldPlan {
    /// Resolves `services`' `auto` settings for `scenarios` (asking whether a Docker engine
    /// answers); fails when an explicit choice cannot be met.
    pub async fn decide(scenarios: &[Scenario], services: &ServicesConfig) -> Result<WorldPlan, WorldError> {
        let (runtime, runtime_note) = runtime::resolve_runtime(services.runtime).await?;
        let mut notes: Vec<String> = runtime_note.into_iter().collect();
        let ecr_backend = if scenarios.iter().any(|s| s.registries().any(|r| r == Flavour::Ecr)) {
            let facilities = Facilities {
                auth_token: std::env::var_os(localstack::AUTH_TOKEN_ENV).is_some(),
                docker: runtime::docker_engine().await,
            };
            let (backend, note) = localstack::choose(
                services.ecr.backend,
                services.ecr.localstack_endpoint.as_deref(),
                &services.ecr.localstack_image,
                facilities,
            )?;
            notes.extend(note);
            Some(backend)
        } else {
            None
        };
        Ok(WorldPlan { runtime, ecr_backend, notes })
    }

    /// Why this world needs the host's network, if it does: Docker publishes containers'
    /// ports on the host, and an attached LocalStack listens on the host's loopback. Such a
    /// world cannot run inside a network namespace of its own.
    pub fn host_network(&self) -> Option<String> {
        if self.runtime == "docker" {
            return Some("the registries run as Docker containers, whose ports are on the host network".into());
        }
        match &self.ecr_backend {
            Some(EcrBackend::Container { .. }) => {
                Some("the LocalStack ECR backend runs as a Docker container, whose port is on the host network".into())
            }
            Some(EcrBackend::Attach { endpoint }) => {
                Some(format!("the LocalStack ECR backend at {endpoint} is on the host's loopback"))
            }
            Some(EcrBackend::Embedded) | None => None,
        }
    }

    /// Installs the programs this world runs (a registry binary for local processes, Amazon's
    /// credential helper for ECR scenarios) unless installed already, so that starting it
    /// needs no network: a canonical version in the cache is answered without the proxy.
    pub async fn provision(&self, provisioner: &GoProvisioner) -> Result<(), WorldError> {
        let binaries = ServiceBinaries::like(provisioner);
        let registry = async {
            if self.runtime == "process" {
                binaries.registry().await?;
            }
            Ok::<_, ServiceError>(())
        };
        let ecr_login = async {
            if self.ecr_backend.is_some() {
                binaries.ecr_login().await?;
            }
            Ok::<_, ServiceError>(())
        };
        let (registry, ecr_login) = tokio::join!(registry, ecr_login);
        registry?;
        ecr_login?;
        Ok(())
    }
}

/// Starts the run's registries, as local processes or Docker containers, and the parts of the
/// world in front of them.
struct Starter {
    /// The registry binary, for local processes; `None`: Docker containers.
    binary: Option<PathBuf>,
    ca: Arc<Ca>,
}

impl Starter {
    async fn start(&self, spec: RegistrySpec) -> Result<RunningRegistry, ServiceError> {
        match &self.binary {
            Some(binary) => runtime::start_process(&spec, binary, &self.ca).await,
            None => runtime::start_container(&spec, &self.ca).await,
        }
    }

    /// A registry anyone may push to, over plain HTTP: the base image's, the anonymous
    /// flavour's, and each part's backend.
    async fn anonymous(&self) -> Result<RunningRegistry, ServiceError> {
        self.start(RegistrySpec { auth: RegistryAuth::Anonymous, tls: None }).await
    }

    /// The basic flavour's registry: `users`' passwords, over TLS.
    async fn basic(&self, users: &BTreeMap<String, String>) -> Result<RunningRegistry, WorldError> {
        let tls =
            self.ca.issue(&[Flavour::Basic.host(), "127.0.0.1"], &[rcgen::ExtendedKeyUsagePurpose::ServerAuth])?;
        let spec = RegistrySpec { auth: RegistryAuth::Htpasswd { users: users.clone() }, tls: Some(tls) };
        Ok(self.start(spec).await?)
    }

    /// The token flavour's registry, and the token server that takes `users`' passwords.
    async fn token(
        &self,
        users: &BTreeMap<String, String>,
    ) -> Result<(RunningRegistry, Arc<TokenIssuer>, LoopbackServer), WorldError> {
        let issuer =
            Arc::new(TokenIssuer::new(&self.ca, "ko-matrix-token-issuer", Flavour::Token.host(), users.clone())?);
        let server = issuer.clone().serve().await.map_err(|source| WorldError::Io {
            action: "serving",
            path: "token server".into(),
            source,
        })?;
        let spec = RegistrySpec {
            auth: RegistryAuth::Token {
                realm: format!("https://{TOKEN_AUTH_HOST}/token"),
                service: issuer.service.clone(),
                issuer: issuer.issuer.clone(),
                root_pem: self.ca.cert_pem(),
            },
            tls: None,
        };
        Ok((self.start(spec).await?, issuer, server))
    }

    /// The vendors' parts `flavours` name, in [`VENDORS`]' order, each against a backend
    /// registry of its own.
    async fn vendors(&self, flavours: &BTreeSet<Flavour>, aws: &[AwsSpec]) -> Result<Vec<StartedPart>, WorldError> {
        let mut parts = Vec::new();
        for (flavour, start) in VENDORS.into_iter().filter(|(f, _)| flavours.contains(f)) {
            let registry = self.anonymous().await?;
            let part = start(Backing { registry: registry.addr, aws: aws.to_vec() }).await.map_err(start_error)?;
            parts.push(StartedPart { flavour, part, store: registry.addr, registry: Some(registry) });
        }
        Ok(parts)
    }

    /// ECR's part on the backend `choice` (the embedded emulator against a backend registry,
    /// or LocalStack), and the AWS side its cells open in.
    async fn ecr(
        &self,
        choice: &EcrBackend,
        binaries: &ServiceBinaries,
        aws: &[AwsSpec],
    ) -> Result<(StartedPart, Aws), WorldError> {
        let ecr_login = binaries.ecr_login().await?;
        let localstack = |localstack: LocalStack| {
            let store = localstack.endpoint;
            let part = Arc::new(LocalStackEcr { localstack, specs: aws.to_vec() });
            let started = StartedPart { flavour: Flavour::Ecr, part: part.clone(), registry: None, store };
            (started, AwsBackend::LocalStack(part))
        };
        let (part, backend) = match choice {
            EcrBackend::Embedded => {
                let registry = self.anonymous().await?;
                let backing = Backing { registry: registry.addr, aws: aws.to_vec() };
                let aws = AwsWorld::start(backing).await.map_err(start_error)?;
                let (part, store) = (aws.clone(), registry.addr);
                (
                    StartedPart { flavour: Flavour::Ecr, part, store, registry: Some(registry) },
                    AwsBackend::Embedded(aws),
                )
            }
            EcrBackend::Container { image } => localstack(LocalStack::start(image).await?),
            EcrBackend::Attach { endpoint } => localstack(LocalStack::attach(*endpoint)),
        };
        Ok((part, Aws { backend, ecr_login }))
    }
}

/// A service of the run, as infra-error details name it.
#[derive(Debug, Clone)]
pub struct Service {
    /// `base-image registry`, `registry (basic flavour)`, `ECR front backend`, …
    pub name: String,
    pub addr: SocketAddr,
    pub tls: bool,
}

/// How long the health probe waits for each service.
const PROBE_TIMEOUT: Duration = Duration::from_secs(5);

fn random_secret() -> String {
    format!("{:024x}", rand::random::<u128>() >> 32)
}

impl World {
    /// Starts what `scenarios` need, under `dir` (the run's work dir).
    pub async fn start(
        scenarios: &[Scenario],
        services: &ServicesConfig,
        provisioner: &GoProvisioner,
        dir: &Path,
    ) -> Result<World, WorldError> {
        let started = Instant::now();
        let plan = WorldPlan::decide(scenarios, services).await?;
        if services.contained {
            if let Some(reason) = plan.host_network() {
                return Err(WorldError::HostNetwork(reason));
            }
        }
        let WorldPlan { runtime, ecr_backend, notes } = plan;
        let flavours: BTreeSet<Flavour> = scenarios.iter().flat_map(Scenario::registries).collect();
        let aws_specs: Vec<AwsSpec> = scenarios.iter().filter_map(|s| s.aws_spec().cloned()).collect();
        let ca = Arc::new(Ca::new()?);
        let ca_bundle = dir.join("ca.pem");
        ca.write_bundle(&ca_bundle)?;
        let gateway = Gateway::new(ca.clone());
        let binaries = ServiceBinaries::like(provisioner);
        let binary = if runtime == "process" { Some(binaries.registry().await?) } else { None };
        let starter = Starter { binary, ca: ca.clone() };

        let user = Credential { username: "ko-matrix-user".into(), password: random_secret() };
        let admin = Credential { username: "ko-matrix-admin".into(), password: random_secret() };
        let users = BTreeMap::from([
            (user.username.clone(), user.password.clone()),
            (admin.username.clone(), admin.password.clone()),
        ]);

        // The base image lives in a registry of its own, so pushes cannot mount its blobs
        // across what would be different registries in real life.
        let base = starter.anonymous();
        let anonymous = starter.anonymous();
        let basic = async {
            match flavours.contains(&Flavour::Basic) {
                true => starter.basic(&users).await.map(Some),
                false => Ok(None),
            }
        };
        let token = async {
            match flavours.contains(&Flavour::Token) {
                true => starter.token(&users).await.map(Some),
                false => Ok(None),
            }
        };
        let vendors = starter.vendors(&flavours, &aws_specs);
        let ecr = async {
            match &ecr_backend {
                Some(choice) => starter.ecr(choice, &binaries, &aws_specs).await.map(Some),
                None => Ok(None),
            }
        };
        let (base, anonymous, basic, token, ecr, vendors) = tokio::join!(base, anonymous, basic, token, ecr, vendors);
        let (base, anonymous, basic, token, ecr, vendors) = (base?, anonymous?, basic?, token?, ecr?, vendors?);

        let client = runtime::registry_client(&ca);
        let built = BaseImage::build();
        let base_image = built.push(&client, &format!("http://{}", base.addr)).await?;

        let mut targets = BTreeMap::new();
        let mut services = vec![Service { name: "base-image registry".into(), addr: base.addr, tls: base.tls }];
        let mut registries = vec![base];
        let mut target = |flavour: Flavour, backend: SocketAddr, tls: bool, service: String, admin: Admin| {
            let user = user.clone();
            targets.insert(flavour, TargetRegistry { flavour, backend, tls, host_header: None, service, user, admin });
        };
        let mut add = |flavour: Flavour, registry: RunningRegistry, admin: Admin| {
            let service = format!("registry ({} flavour)", flavour.name());
            let backend = if registry.tls { Backend::https(registry.addr) } else { Backend::http(registry.addr) };
            gateway.route(flavour.host(), Route::Terminate { backend: backend.named(&service) })?;
            services.push(Service { name: service.clone(), addr: registry.addr, tls: registry.tls });
            target(flavour, registry.addr, registry.tls, service, admin);
            registries.push(registry);
            Ok::<_, WorldError>(())
        };
        add(Flavour::Anonymous, anonymous, Admin::None)?;
        if let Some(basic) = basic {
            add(Flavour::Basic, basic, Admin::Basic(admin.clone()))?;
        }
        let mut token_server = None;
        if let Some((registry, issuer, server)) = token {
            gateway.route(
                TOKEN_AUTH_HOST,
                Route::Terminate { backend: Backend::http(server.addr).named("token server") },
            )?;
            add(Flavour::Token, registry, Admin::Token(issuer))?;
            services.push(Service { name: "token server".into(), addr: server.addr, tls: false });
            token_server = Some(server);
        }

        // The vendors' parts, then ECR's: each routed, probed, a target, and a vendor registry
        // where its cells have accounts.
        let (ecr, aws) = ecr.map(|(part, aws)| (Some(part), Some(aws))).unwrap_or_default();
        let parts: Vec<StartedPart> = vendors.into_iter().chain(ecr).collect();
        for (host, backend) in vendor::routes(&parts.iter().map(|p| p.part.clone()).collect::<Vec<_>>()) {
            gateway.route(&host, Route::Terminate { backend })?;
        }
        let storage = Storage::start().await.map_err(|source| WorldError::Io {
            action: "serving",
            path: "object storage".into(),
            source,
        })?;
        let regions: BTreeSet<String> = aws_specs.iter().map(|s| s.region.clone()).collect();
        for (host, backend) in storage.routes(&regions.into_iter().collect::<Vec<_>>()) {
            gateway.route(&host, Route::Terminate { backend })?;
        }
        services.push(Service { name: "object storage".into(), addr: storage.backend().addr, tls: false });
        let mut vendor_registries = BTreeMap::new();
        for StartedPart { flavour, part, registry, store } in parts {
            services.extend(part.services().into_iter().map(|(name, addr)| Service { name, addr, tls: false }));
            services.extend(registry.iter().map(|r| Service { name: part.store(), addr: r.addr, tls: false }));
            registries.extend(registry);
            target(flavour, store, false, part.store(), Admin::None);
            let public_base = match part.public_image() {
                Some(image) => {
                    let store = format!("http://{store}");
                    let digest = built.push_as(&client, &store, &image.backend_repository).await?;
                    Some(format!("{}@{digest}", image.reference))
                }
                None => None,
            };
            if flavour.is_vendor() {
                vendor_registries.insert(flavour, VendorRegistry { part, public_base });
            }
        }
        let leak_check = match aws.as_ref().map(|a| &a.backend) {
            Some(AwsBackend::Embedded(_)) => LeakCheck::Minted,
            // This process's own environment and files, before any cell runs: a LocalStack
            // run needs the host network, so it is never the namespaced re-execution.
            Some(AwsBackend::LocalStack(_)) => LeakCheck::HostKeys(HostKeys::collect(|name| std::env::var(name).ok())),
            None => LeakCheck::NoAws,
        };
        Ok(World {
            ca,
            gateway,
            ca_bundle,
            base_image,
            copy_image: BaseImage::copy_source(),
            targets,
            runtime,
            started_in: started.elapsed(),
            client,
            aws,
            vendors: vendor_registries,
            notes,
            leak_check,
            services,
            _registries: registries,
            _token_server: token_server,
            storage,
        })
    }

    /// The variables that send a client's traffic through gateway `session` and make it trust
    /// the run's CA and nothing else (`no_other_certs` is an empty directory): what every cell
    /// gets, and what any other client of the world (the conformance suite) gets the same way.
    pub fn client_network(&self, session: &Session, no_other_certs: &Path) -> Vec<(String, String)> {
        let proxy = session.proxy_url();
        let mut vars: Vec<(String, String)> = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"]
            .iter()
            .map(|k| (k.to_string(), proxy.clone()))
            .collect();
        vars.push(("SSL_CERT_FILE".into(), self.ca_bundle.display().to_string()));
        vars.push(("SSL_CERT_DIR".into(), no_other_certs.display().to_string()));
        vars
    }

    /// Fetches the manifest `repository:reference` (a digest or a tag) straight from the
    /// target's backend (not through the gateway): its digest and bytes. By digest, the bytes
    /// must hash to it.
    pub(crate) async fn fetch_manifest(
        &self,
        flavour: Flavour,
        repository: &str,
        reference: &str,
    ) -> Result<(String, Vec<u8>), NotFetched> {
        let accept = [
            base_image::INDEX_MEDIA_TYPE,
            base_image::MANIFEST_MEDIA_TYPE,
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.docker.distribution.manifest.v2+json",
        ]
        .join(", ");
        let (url, body) = self.fetch(flavour, repository, &format!("manifests/{reference}"), &accept).await?;
        let actual = base_image::digest(&body);
        if reference.starts_with("sha256:") && actual != reference {
            return Err(NotFetched::Missing(format!("GET {url} returned content with digest {actual}")));
        }
        Ok((actual, body))
    }

    /// Fetches the blob `repository@digest` from the target's backend.
    pub(crate) async fn fetch_blob(
        &self,
        flavour: Flavour,
        repository: &str,
        digest: &str,
    ) -> Result<Vec<u8>, NotFetched> {
        let (url, body) = self.fetch(flavour, repository, &format!("blobs/{digest}"), "*/*").await?;
        match base_image::digest(&body) == digest {
            true => Ok(body),
            false => Err(NotFetched::Missing(format!("GET {url} returned content of another digest"))),
        }
    }

    /// `GET /v2/<repository>/<path>` at the target's backend as the harness's admin: the
    /// URL asked and the body. A 2xx is the body; 4xx is about the push; not reaching the
    /// backend, or a 5xx, is the harness's failure.
    async fn fetch(
        &self,
        flavour: Flavour,
        repository: &str,
        path: &str,
        accept: &str,
    ) -> Result<(String, Vec<u8>), NotFetched> {
        let target = self
            .targets
            .get(&flavour)
            .ok_or_else(|| NotFetched::Unreachable(format!("{} registry not started in this run", flavour.name())))?;
        let url = format!("{}/v2/{repository}/{path}", target.origin());
        let request = target.as_admin(self.client.get(&url).header("accept", accept), repository, "pull");
        // Not reaching its own registry, or reaching a broken one, is the harness's failure.
        let unreachable = |e: reqwest::Error| {
            NotFetched::Unreachable(format!(
                "{} {} unreachable: GET {url}: {}",
                target.service,
                target.backend,
                error_chain(&e)
            ))
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let body = response.bytes().await.map_err(unreachable)?;
        if status.is_server_error() {
            return Err(NotFetched::Unreachable(format!(
                "{} {} answered {status} to GET {url}",
                target.service, target.backend
            )));
        }
        if !status.is_success() {
            return Err(NotFetched::Missing(format!(
                "GET {url} answered {status}: {}",
                String::from_utf8_lossy(&body).trim()
            )));
        }
        Ok((url, body.to_vec()))
    }

    /// Pushes an image (the run's base image: an index of two platforms) into `repository`
    /// of the target's backend as the harness's admin, tagged `latest`, for a tool that acts
    /// on an image already in the registry. Returns its digest.
    pub(crate) async fn seed_image(&self, flavour: Flavour, repository: &str) -> Result<String, SeedError> {
        self.seed(&BaseImage::build(), flavour, repository).await
    }

    /// Pushes the image a copy's source holds ([`BaseImage::copy_source`]: three layers a
    /// platform, one shared) into `repository` of `flavour`'s backend as the harness's admin,
    /// tagged `latest`, before the tool copies it. Returns its digest.
    pub(crate) async fn seed_copy_source(&self, flavour: Flavour, repository: &str) -> Result<String, SeedError> {
        self.seed(&self.copy_image, flavour, repository).await
    }

    async fn seed(&self, image: &BaseImage, flavour: Flavour, repository: &str) -> Result<String, SeedError> {
        let target = self.targets.get(&flavour).ok_or(SeedError::NoRegistry(flavour.name()))?;
        let decorate = |request: reqwest::RequestBuilder| target.as_admin(request, repository, "pull,push");
        image
            .push_with(&self.client, &target.origin(), repository, &decorate)
            .await
            .map_err(|source| SeedError::Push { service: format!("{} {}", target.service, target.backend), source })
    }

    /// Checks that `repository:tag` of `flavour`'s registry is the image a copy's source held,
    /// straight from the backend: the tag names the source's index (its digest), and each of its
    /// manifests and every blob they name is there. `Ok(digest)` of the index when so.
    pub(crate) async fn fetch_copy(&self, flavour: Flavour, repository: &str, tag: &str) -> Result<String, NotFetched> {
        let expected = self.copy_image.index.digest();
        let (digest, _) = self.fetch_manifest(flavour, repository, tag).await?;
        if digest != expected {
            return Err(NotFetched::Missing(format!(
                "{repository}:{tag} at the target is the manifest {digest}, not the source's {expected}"
            )));
        }
        for manifest in &self.copy_image.manifests {
            self.fetch_manifest(flavour, repository, &manifest.digest()).await?;
        }
        for blob in self.copy_image.blob_digests() {
            self.fetch_blob(flavour, repository, &blob).await?;
        }
        Ok(digest)
    }

    /// Where a side's registry (at `aws` when it is ECR) redirects blob downloads, if its
    /// cell's do (`redirects`): the registry's hosts and its object store.
    pub fn blob_redirect(&self, side: &Side, aws: Option<&AwsSpec>) -> Option<BlobRedirect> {
        use ko_matrix_emulators::{azure, dockerhub, github, google};
        if !side.redirects() {
            return None;
        }
        let (hosts, store) = match side.registry {
            Flavour::Ecr => {
                let aws = aws?;
                (vec![aws.registry_host()], Store::S3 { region: aws.region.clone(), account: aws.account.clone() })
            }
            Flavour::Dockerhub => (dockerhub::REGISTRY_HOSTS.map(String::from).to_vec(), Store::Cloudflare),
            Flavour::Gcp => (vec![google::HOST.into()], Store::ArtifactRegistry),
            Flavour::Azure => (vec![azure::HOST.into()], Store::AzureBlob),
            Flavour::Ghcr => (vec![github::HOST.into()], Store::Ghcr),
            _ => return None,
        };
        Some(BlobRedirect { hosts, store, storage: self.storage.clone() })
    }

    /// The services that do not answer now, each as `<service> <addr> unreachable: <why>`;
    /// asked after a cell failed, so that a dead service is never read as ko's failure.
    pub async fn unreachable_services(&self) -> Vec<String> {
        let probes = self.services.iter().map(|service| async move {
            let url = format!("{}://{}/v2/", if service.tls { "https" } else { "http" }, service.addr);
            match self.client.get(&url).timeout(PROBE_TIMEOUT).send().await {
                Ok(_) => None,
                Err(e) => Some(format!("{} {} unreachable: {}", service.name, service.addr, error_chain(&e))),
            }
        });
        futures_util::future::join_all(probes).await.into_iter().flatten().collect()
    }

    /// Why this run cannot run `scenario` faithfully, if it cannot (a skip, with the reason).
    pub(crate) fn cannot_express(&self, scenario: &Scenario) -> Option<String> {
        match self.aws.as_ref().map(|a| &a.backend) {
            Some(AwsBackend::LocalStack(_)) => localstack::cannot_express(scenario),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_world_on_docker_or_localstack_needs_the_host_network() {
        let plan = |runtime, ecr_backend| WorldPlan { runtime, ecr_backend, notes: Vec::new() };
        assert_eq!(plan("process", None).host_network(), None);
        assert_eq!(
            plan("process", Some(EcrBackend::Embedded)).host_network(),
            None,
            "the embedded ECR emulator is in-process"
        );
        assert!(plan("docker", None).host_network().unwrap().contains("Docker containers"));
        let container = plan("process", Some(EcrBackend::Container { image: "localstack/localstack-pro:4".into() }));
        assert!(container.host_network().unwrap().contains("LocalStack"));
        let attached = plan("process", Some(EcrBackend::Attach { endpoint: "127.0.0.1:4566".parse().unwrap() }));
        assert_eq!(
            attached.host_network().unwrap(),
            "the LocalStack ECR backend at 127.0.0.1:4566 is on the host's loopback"
        );
    }
}
