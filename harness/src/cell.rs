//! Running one cell: one tool version × one scenario, in its own HOME with an environment
//! built from scratch (nothing of the harness's AWS_*, DOCKER_*, tool settings or credentials
//! leaks in), through its own gateway session, with a timeout and an evidence log.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncWriteExt;
use tokio::process::Command;

use crate::address::{self, Placement, Reach, Role};
use crate::credential_files::{self, CellFile};
use crate::outcome::{self, Evidence, FailClass, NotFetched, Outcome, Verdict};
use crate::payload::Payload;
use crate::process::{Contained, RunError};
use crate::result::CellResult;
use crate::scenario::{expand, Credential, Given, Scenario, Side, TOOL_PLACEHOLDER};
use crate::tool::{CopyEnd, PushContext, ToolBinary};
use crate::world::{AwsCellCredentials, TargetRegistry, VendorCell, World};
use ko_matrix_emulators::gateway::{authority, Backend, GatewayError, Record, Session, Site};

/// What every cell of a run shares.
pub struct CellEnv {
    pub world: Arc<World>,
    /// What the tools push.
    pub payload: Payload,
    /// The ko-matrix executable: linked into each cell's `bin/` as [`CREDENTIAL_HELPER`].
    pub helper: PathBuf,
    /// Cells' HOMEs and temp files go below this.
    pub work_dir: PathBuf,
    pub logs_dir: PathBuf,
    pub timeout: Duration,
}

/// The name under which the ko-matrix executable acts as the cells' docker credential helper.
pub const CREDENTIAL_HELPER: &str = "docker-credential-ko-matrix";

/// The variable naming the file the credential helper serves from and records calls beside.
pub const CREDENTIAL_HELPER_STORE_ENV: &str = "KO_MATRIX_HELPER_STORE";

/// Env names whose values are secrets in logs and reports.
fn is_secret_name(name: &str) -> bool {
    ["PASSWORD", "SECRET", "TOKEN", "AUTH", "CREDENTIAL"].iter().any(|s| name.to_ascii_uppercase().contains(s))
        && name != "REGISTRY_AUTH_FILE"
}

#[derive(Clone)]
struct Masker(Vec<String>);

impl Masker {
    fn mask(&self, text: &str) -> String {
        self.0.iter().filter(|s| s.len() >= 4).fold(text.to_string(), |t, s| t.replace(s.as_str(), "****"))
    }

    /// The gateway's record as reports may show it: a path or note can carry a secret (a
    /// token in a query string, a password in an error).
    fn mask_records(&self, records: Vec<Record>) -> Vec<Record> {
        let mask = |text: Option<String>| text.map(|t| self.mask(&t));
        records
            .into_iter()
            .map(|r| Record { path: self.mask(&r.path), note: mask(r.note), infra: mask(r.infra), ..r })
            .collect()
    }
}

/// Runs the cell once; `attempt` 1 is the first run, 2 the retry (its log is `*.retry.log`).
pub async fn run_cell(env: &CellEnv, tool: &ToolBinary, scenario: &Scenario, attempt: u32) -> CellResult {
    let started = Instant::now();
    let suffix = if attempt > 1 { ".retry" } else { "" };
    let log = env.logs_dir.join(format!(
        "{}@{}-{}{suffix}.log",
        scenario.name.replace('/', "__"),
        tool.tool.name(),
        tool.version
    ));
    let infra = |detail: String| CellResult {
        tool: tool.tool.name().to_string(),
        version: tool.version.clone(),
        scenario: scenario.name.clone(),
        verb: scenario.verb(),
        outcome: Outcome::InfraError,
        class: None,
        detail,
        diagnosis: None,
        duration_ms: started.elapsed().as_millis() as u64,
        tool_ms: 0,
        log: log.clone(),
        retry_log: None,
        attempts: Vec::new(),
        env: BTreeMap::new(),
        requests: Vec::new(),
    };
    match open(env, tool, scenario).await {
        Ok(open) => open.cell.run(env, tool, scenario, started, log.clone()).await,
        Err(CellSetupError::CannotRun(reason)) => {
            let _ = std::fs::write(&log, format!("skipped: {reason}\n"));
            CellResult { outcome: Outcome::Skipped, detail: reason, ..infra(String::new()) }
        }
        Err(e) => {
            let _ = std::fs::write(&log, format!("cell could not be prepared: {e}\n"));
            infra(e.to_string())
        }
    }
}

/// Prepares the cell as a run does — its HOME and files, its environment, its gateway
/// session (proxy, faults), the run's CA, its AWS state — and hands it over before anything
/// runs in it: [`run_cell`] runs its steps and push; `ko-matrix shell` opens a shell in it.
/// The cell lasts as long as the [`OpenCell`] (its directory, session and AWS state go with it).
pub async fn open(env: &CellEnv, tool: &ToolBinary, scenario: &Scenario) -> Result<OpenCell, CellSetupError> {
    let cannot = env.world.cannot_express(scenario);
    if let Some(reason) = cannot.or_else(|| other_tools_step(tool, scenario)).or_else(|| cannot_copy(tool, scenario)) {
        return Err(CellSetupError::CannotRun(reason));
    }
    let cell = Cell::prepare(env, tool, scenario).await?;
    Ok(OpenCell {
        cell,
        tool: tool.clone(),
        before: scenario.before.clone(),
        id: crate::result::cell_id(tool.tool.name(), &tool.version, &scenario.name),
        timeout: env.timeout,
    })
}

/// A prepared cell that nothing has run in yet (see [`open`]).
pub struct OpenCell {
    cell: Cell,
    tool: ToolBinary,
    before: Vec<crate::scenario::Step>,
    id: String,
    timeout: Duration,
}

/// What a cell's steps before the push came to.
#[derive(Debug, Clone)]
pub struct StepsRun {
    /// Each step as the cell log shows it: `$ command   (exit 0, 12 ms)` and its output,
    /// secrets masked.
    pub transcript: String,
    /// Whether every step exited 0 (a run stops at the first that does not).
    pub succeeded: bool,
}

impl OpenCell {
    /// `ko@v0.15.2::ecr/env-session`.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The cell's whole environment, secrets included, as the tool gets it.
    pub fn env(&self) -> &BTreeMap<String, String> {
        &self.cell.env
    }

    /// The cell's own directory (its HOME and files are below it); removed with the cell.
    pub fn dir(&self) -> &Path {
        self.cell.dir.path()
    }

    /// The cell's own `/etc/hosts`, when names of its registry resolve through a hosts entry:
    /// commands run as the cell's must see it ([`crate::containment::with_hosts_file`]).
    pub fn hosts_file(&self) -> Option<&Path> {
        self.cell.hosts_file.as_deref()
    }

    /// `host/path` the push goes to, the host as clients write it (`localhost:38211`).
    pub fn push_repository(&self) -> &str {
        &self.cell.push_repository
    }

    /// Where the push runs.
    pub fn work_dir(&self) -> &Path {
        &self.cell.push_dir
    }

    /// The push (or a copy's command), as the tool's definition spells it: the program's name,
    /// then its arguments.
    pub fn push_command(&self) -> Vec<String> {
        self.cell.push.clone()
    }

    /// The cell's gateway session: its proxy and its record.
    pub fn session(&self) -> &ko_matrix_emulators::gateway::Session {
        &self.cell.session
    }

    /// `text` with the cell's secrets masked, as its log shows them.
    pub fn mask(&self, text: &str) -> String {
        self.cell.masker.mask(text)
    }

    /// Writes the gateway record to `path` as it is made, one line a request as the cell
    /// log's "== gateway record" section has them, secrets masked.
    pub fn record_to_file(&self, path: &Path) -> std::io::Result<()> {
        let masker = self.cell.masker.clone();
        self.cell.session.record_to_file(path, move |line| masker.mask(line))
    }

    /// Runs the scenario's steps before the push (a `${TOOL} login`, say) as a run does, up
    /// to the first that fails, within the cell timeout.
    pub async fn run_before_steps(&self) -> StepsRun {
        let steps = self.cell.run_steps(&self.tool, &self.before, false, Instant::now() + self.timeout).await;
        StepsRun {
            transcript: steps.transcript,
            succeeded: matches!(steps.last, StepOutcome::Done { code: Some(0), .. }),
        }
    }
}

/// Why a scenario cannot run with `tool`: a step that names another tool's program (write
/// `${TOOL}` to mean the tool under test).
fn other_tools_step(tool: &ToolBinary, scenario: &Scenario) -> Option<String> {
    let named = scenario
        .before
        .iter()
        .filter_map(|s| s.run.first())
        .find(|p| *p != tool.tool.name() && crate::tool::by_name(p).is_some())?;
    Some(format!(
        "a step runs `{named}`, another tool than {}; write `{TOOL_PLACEHOLDER}` for the tool under test",
        tool.tool.name()
    ))
}

/// Why a copy scenario cannot run with `tool`: it has no copy command, or takes no credential
/// flags for a side whose credentials the scenario gives so.
fn cannot_copy(tool: &ToolBinary, scenario: &Scenario) -> Option<String> {
    let source = scenario.source.as_ref()?;
    let end = |side: &Side| CopyEnd {
        reference: String::new(),
        insecure: side.insecure,
        credentials: (side.credentials == Given::Flags).then(Default::default),
    };
    tool.tool.cannot_copy(&end(source), &end(&scenario.target))
}

/// The tag a copy reads at its source (where the harness pushed its image) and writes at its target.
const COPY_TAG: &str = crate::base_image::TAG;

/// Why a cell could not be prepared; its outcome is infra-error with this as the detail,
/// except for [`CellSetupError::CannotRun`] (skipped).
#[derive(Debug, thiserror::Error)]
pub enum CellSetupError {
    /// This run cannot run the scenario with this tool faithfully: the cell is skipped.
    #[error("{0}")]
    CannotRun(String),
    #[error("the run has no {0} registry")]
    NoRegistry(&'static str),
    #[error("the run has no AWS backend")]
    NoAwsBackend,
    #[error("opening the cell's gateway session: {0}")]
    Session(#[from] GatewayError),
    #[error("the AWS backend could not open the cell: {0}")]
    Aws(String),
    #[error("{step} {path}: {source}")]
    Io { step: &'static str, path: PathBuf, source: std::io::Error },
    /// The harness could not put the image the tool acts on (a copy's source, a pushed image)
    /// into its registry.
    #[error(transparent)]
    Seed(#[from] crate::world::SeedError),
}

/// The `map_err` for an I/O `step` on `path`.
fn io_error(step: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> CellSetupError {
    let path = path.to_path_buf();
    move |source| CellSetupError::Io { step, path, source }
}

/// The placement of a side's registry: where its `[target]` (or `[source]`) puts it and its
/// token service.
fn address_placement(target: &TargetRegistry, side: &Side, session: u64) -> Placement {
    let token_host = target.flavour.token_host().unwrap_or_default();
    address::place(side.address, side.scheme, side.token_service, target.flavour.host(), token_host, session)
}

/// How far apart the cell numbers of two tries at a free address are (moves both varying
/// bytes of a cell's loopback address).
const ADDRESS_STRIDE: u64 = 255;

/// Opens the cell's registry (and token service) at the addresses `[target]` names on its
/// session: the registry's address as clients write it (`${REGISTRY}`), and where it went.
/// Another process on the machine's loopback (a second run, a `shell`) may hold the address a
/// cell number gives: then the next one is tried.
async fn open_address(
    world: &World,
    target: &TargetRegistry,
    side: &Side,
    session: &Session,
) -> Result<(String, Placement), CellSetupError> {
    let mut attempt = 0;
    loop {
        let placement = address_placement(target, side, session.id + attempt * ADDRESS_STRIDE);
        match open_placement(world, target, &placement, session).await {
            Err(CellSetupError::Session(GatewayError::Listen { source, .. }))
                if source.kind() == std::io::ErrorKind::AddrInUse && attempt < 16 =>
            {
                attempt += 1
            }
            opened => return opened.map(|registry| (registry, placement)),
        }
    }
}

/// Opens `placement`'s addresses on `session`; returns the registry's as clients write it.
async fn open_placement(
    world: &World,
    target: &TargetRegistry,
    placement: &Placement,
    session: &Session,
) -> Result<String, CellSetupError> {
    let mut realm = None;
    let mut registry = target.flavour.host().to_string();
    for plan in &placement.sites {
        // Each served as the run's virtual host is. The registry sees the Host its client sent
        // (distribution writes it into upload locations); a token service elsewhere is told it
        // was asked under its own name (a vendor's front answers by name).
        let backend = match plan.role {
            Role::Registry => world
                .gateway
                .backend_of(target.flavour.host())
                .ok_or(CellSetupError::NoRegistry(target.flavour.name()))?,
            Role::TokenService => target
                .flavour
                .token_host()
                .and_then(|host| {
                    let backend = world.gateway.backend_of(host)?;
                    Some(Backend { host_header: backend.host_header.clone().or(Some(host.to_string())), ..backend })
                })
                .ok_or(CellSetupError::NoRegistry("token service"))?,
        };
        let realm_here = if plan.role == Role::Registry { realm.clone() } else { None };
        let site = Site { backend, scheme: plan.scheme, realm: realm_here };
        let mut first = None;
        for reach in &plan.reach {
            let opened = match reach {
                Reach::Proxied { host, port } => {
                    session.open_site(host, *port, site.clone())?;
                    authority(host, *port)
                }
                Reach::Direct { bind, host } => {
                    authority(host, session.listen(*bind, host, site.clone()).await?.port())
                }
            };
            first.get_or_insert(opened);
        }
        let first = first.expect("every site has an address");
        match plan.role {
            Role::TokenService => realm = Some(address::origin(plan.scheme, &first)),
            Role::Registry => registry = first,
        }
    }
    Ok(registry)
}

/// A copy's source as its cell opened it: where the image is, and what the cell's placeholders,
/// hosts file, masking and AWS world get from it.
struct OpenSource {
    /// `host/path` the tool copies from (at [`COPY_TAG`]).
    repository: String,
    /// The registry's host as clients write it.
    host: String,
    /// SOURCE_REGISTRY, SOURCE_USER, SOURCE_PASSWORD; an ECR source's AWS values and a vendor's
    /// identity values under their own names.
    values: BTreeMap<&'static str, String>,
    /// Its `/etc/hosts` lines, when its address is a name the cell resolves itself.
    hosts: Vec<(std::net::IpAddr, String)>,
    /// An ECR source's AWS world, until the cell takes it as its own.
    aws: Option<AwsCellCredentials>,
    /// Its account at a vendor, closed with the cell.
    vendor: Option<VendorCell>,
    secrets: Vec<String>,
}

/// Opens `source` on the cell's `session` (its files below `root`): an ECR source's AWS world, a
/// vendor source's account (a second one when the target is the same vendor), or the run's own
/// registry at its address (the target's, when both are one registry at `target_host`); then
/// puts the image to copy there, as the harness.
async fn open_source(
    world: &World,
    tool: &ToolBinary,
    scenario: &Scenario,
    source: &Side,
    session: &Session,
    root: &Path,
    target_host: &str,
) -> Result<OpenSource, CellSetupError> {
    let registry = world.targets.get(&source.registry).ok_or(CellSetupError::NoRegistry(source.registry.name()))?;
    let path = cell_path("source", scenario, tool);
    let mut hosts = Vec::new();
    let mut secrets = Vec::new();
    let (host, repository, backend_repository, own, aws, vendor) = match (&source.aws, &source.account) {
        (Some(spec), _) => {
            let backend = &world.aws.as_ref().ok_or(CellSetupError::NoAwsBackend)?.backend;
            let aws = backend.open_cell(session.id, spec, root).await.map_err(CellSetupError::Aws)?;
            let backend_repository = aws.backend_repository.clone();
            (spec.registry_host(), spec.push_to.clone(), backend_repository, aws.values.clone(), Some(aws), None)
        }
        (None, Some(account)) => {
            let vendors =
                world.vendors.get(&source.registry).ok_or(CellSetupError::NoRegistry(source.registry.name()))?;
            let cell = vendors.open_account(session, account, None).await?;
            let (repository, backend_repository) = cell.repositories(&path);
            let values = cell.values();
            let credential =
                Credential { username: cell.account.spec.user.clone(), password: cell.account.secret.clone() };
            secrets.extend([credential.password.clone(), credential_files::basic_auth_value(&credential)]);
            secrets.extend(cell.identity_values.secrets.iter().cloned());
            // Its name as users write it (`docker.io`), as a target's.
            (source.registry.host().to_string(), repository, backend_repository, values, None, Some(cell))
        }
        (None, None) => {
            let host = match source.same_address(&scenario.target) {
                true => target_host.to_string(),
                false => {
                    let (host, placement) = open_address(world, registry, source, session).await?;
                    hosts = placement.hosts;
                    host
                }
            };
            let values = BTreeMap::from([
                ("REGISTRY", host.clone()),
                ("USER", registry.user.username.clone()),
                ("PASSWORD", registry.user.password.clone()),
            ]);
            secrets.extend([registry.user.password.clone(), credential_files::basic_auth_value(&registry.user)]);
            (host, path.clone(), path, values, None, None)
        }
    };
    world.seed_copy_source(source.registry, &backend_repository).await?;
    let values = own
        .into_iter()
        .map(|(name, value)| match name {
            "REGISTRY" => ("SOURCE_REGISTRY", value),
            "USER" => ("SOURCE_USER", value),
            "PASSWORD" => ("SOURCE_PASSWORD", value),
            other => (other, value),
        })
        .collect();
    Ok(OpenSource { repository: format!("{host}/{repository}"), host, values, hosts, aws, vendor, secrets })
}

impl OpenSource {
    /// `host/path:tag` the tool copies from.
    fn reference(&self) -> String {
        format!("{}:{COPY_TAG}", self.repository)
    }

    /// `host/path` the tool copies from.
    fn repository(&self) -> String {
        self.repository.clone()
    }
}

/// `<kind>/<scenario>/<tool>/<version>` as a repository path (`cells/…` for a cell's target,
/// `source/…` for a copy's source): lower case, other characters as `-`.
fn cell_path(kind: &str, scenario: &Scenario, tool: &ToolBinary) -> String {
    format!("{kind}/{}/{}/{}", scenario.name, tool.tool.name(), tool.version)
        .to_ascii_lowercase()
        .replace(|c: char| !(c.is_ascii_alphanumeric() || "._-/".contains(c)), "-")
}

/// The host's `/etc/hosts` with the cell's entries after it, as a CI step adding them leaves it.
fn hosts_file(entries: &[(std::net::IpAddr, String)]) -> String {
    let mut text = std::fs::read_to_string("/etc/hosts").unwrap_or_default();
    if !text.is_empty() && !text.ends_with('\n') {
        text.push('\n');
    }
    for (ip, name) in entries {
        text.push_str(&format!("{ip}\t{name}\n"));
    }
    text
}

/// Writes a file with its directory: renderers name files, not the directories they need.
fn write_file(file: &Path, contents: &str) -> Result<(), CellSetupError> {
    let dir = file.parent().expect("files have parents");
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    std::fs::write(file, contents).map_err(io_error("writing", file))
}

/// Writes a binary file with its directory.
fn write_bytes(file: &Path, bytes: &[u8]) -> Result<(), CellSetupError> {
    let dir = file.parent().expect("files have parents");
    std::fs::create_dir_all(dir).map_err(io_error("creating", dir))?;
    std::fs::write(file, bytes).map_err(io_error("writing", file))
}

/// A prepared cell: its files written, its environment built.
struct Cell {
    dir: tempfile::TempDir,
    env: BTreeMap<String, String>,
    values: BTreeMap<&'static str, String>,
    /// The repository in the backend registry, for fetching the push back.
    repository: String,
    session: ko_matrix_emulators::gateway::Session,
    masker: Masker,
    /// The files its log lists.
    files: Vec<(PathBuf, String)>,
    aws: Option<AwsCellCredentials>,
    /// The cell's account at a vendor registry, closed with the cell.
    _vendor: Option<VendorCell>,
    /// Where the tool's push (or copy) runs, and its command: the tool's name, then its arguments.
    push_dir: PathBuf,
    push: Vec<String>,
    /// The tool's own commands before the scenario's steps (its definition's `setup`), each
    /// the tool's name, then its arguments.
    setup: Vec<Vec<String>>,
    /// The tag to resolve after the push, for a tool that prints no digest.
    resolve_tag: Option<String>,
    /// What the manifest fetched back must show.
    expect: crate::payload::Expectation,
    /// `host/path` the tool pushes (or copies) to.
    push_repository: String,
    /// A copy's source, opened and seeded: what the fetch back checks the target against.
    copy: Option<OpenSource>,
    /// Whether `${TOOL}` steps get the tool's insecure switch (the scenario's `insecure`).
    insecure: bool,
    /// A copy's plain-HTTP source host: `${TOOL}` steps naming it get the switch too.
    insecure_source: Option<String>,
    /// The cell's own `/etc/hosts`, when its registry's name resolves through a hosts entry.
    hosts_file: Option<PathBuf>,
    /// Whether its commands run on a pseudo-terminal (the scenario's `tty`).
    tty: bool,
}

impl Cell {
    async fn prepare(env: &CellEnv, tool: &ToolBinary, scenario: &Scenario) -> Result<Cell, CellSetupError> {
        let world = &env.world;
        let target = world
            .targets
            .get(&scenario.target.registry)
            .ok_or(CellSetupError::NoRegistry(scenario.target.registry.name()))?;
        std::fs::create_dir_all(&env.work_dir).map_err(io_error("creating", &env.work_dir))?;
        let dir = tempfile::Builder::new()
            .prefix("cell-")
            .tempdir_in(&env.work_dir)
            .map_err(io_error("creating a cell directory in", &env.work_dir))?;
        let root = dir.path();
        let home = root.join(credential_files::HOME);
        let session = world.gateway.session().await?;
        let mut placement = Placement::default();
        let (host, repository, backend_repository, mut values, aws) = match &scenario.aws {
            Some(spec) => {
                let backend = &world.aws.as_ref().ok_or(CellSetupError::NoAwsBackend)?.backend;
                let aws = backend.open_cell(session.id, spec, root).await.map_err(CellSetupError::Aws)?;
                (
                    spec.registry_host(),
                    spec.push_to.clone(),
                    aws.backend_repository.clone(),
                    aws.values.clone(),
                    Some(aws),
                )
            }
            None => {
                let repository = cell_path("cells", scenario, tool);
                let host;
                (host, placement) = open_address(world, target, &scenario.target, &session).await?;
                let values = BTreeMap::from([
                    ("REGISTRY", host.clone()),
                    ("USER", target.user.username.clone()),
                    ("PASSWORD", target.user.password.clone()),
                ]);
                (host, repository.clone(), repository, values, None)
            }
        };
        // A vendor registry's cell pushes below its account's owner, with the account's credential.
        let vendor = match (&scenario.account, world.vendors.get(&scenario.target.registry)) {
            (Some(account), Some(registry)) => {
                Some(registry.open_account(&session, account, scenario.azure.clone()).await?)
            }
            (Some(_), None) => return Err(CellSetupError::NoRegistry(scenario.target.registry.name())),
            _ => None,
        };
        let (repository, backend_repository) = match &vendor {
            Some(vendor) => {
                values.extend(vendor.values());
                vendor.repositories(&repository)
            }
            None => (repository, backend_repository),
        };
        // A copy's source: opened on the cell's session beside the target, and seeded.
        let mut copy = match &scenario.source {
            Some(source) => Some(open_source(world, tool, scenario, source, &session, root, &host).await?),
            None => None,
        };
        let (mut aws, mut hosts) = (aws, placement.hosts);
        if let Some(copy) = &mut copy {
            for (name, value) in &copy.values {
                values.entry(name).or_insert_with(|| value.clone());
            }
            hosts.extend(copy.hosts.iter().cloned());
            // A cell has one AWS world: the target's, or an ECR source's.
            aws = aws.or(copy.aws.take());
        }
        let hosts_file = match hosts.is_empty() {
            true => None,
            false => {
                let file = root.join("etc-hosts");
                write_file(&file, &hosts_file(&hosts))?;
                Some(file)
            }
        };
        values.insert("HOME", home.display().to_string());
        values.insert("TOOL", tool.tool.name().to_string());
        let latency = scenario
            .faults
            .latency
            .iter()
            .map(|l| ko_matrix_emulators::gateway::Latency { host: expand(&l.host, &values), delay: l.delay })
            .collect();
        session.inject(ko_matrix_emulators::gateway::Faults { latency, ..scenario.faults.clone() });
        session.quirks(scenario.quirks.clone());
        if let Some(redirect) = world.blob_redirect(&scenario.target, scenario.aws.as_ref()) {
            session.redirect_blobs(redirect);
        }
        if let Some(source) = &scenario.source {
            if let Some(redirect) = world.blob_redirect(source, source.aws.as_ref()) {
                session.redirect_blobs(redirect);
            }
        }

        let mut vars: BTreeMap<String, String> =
            world.client_network(&session, &root.join("no-other-certs")).into_iter().collect();
        let push_repository = format!("{host}/{repository}");
        // A scenario may have ko pull its base image through the target vendor's front, or
        // through an ECR pull through cache.
        let pull_through = scenario.aws.as_ref().and_then(|a| a.pull_through_base(&env.payload.base_image));
        let payload = match (
            scenario.target.base_image(),
            world.vendors.get(&scenario.target.registry).and_then(|v| v.public_base.clone()).or(pull_through),
        ) {
            (crate::scenario::BaseImageFrom::Target, Some(base_image)) => {
                std::borrow::Cow::Owned(crate::payload::Payload { base_image, ..env.payload.clone() })
            }
            _ => std::borrow::Cow::Borrowed(&env.payload),
        };
        // A tool acting on an image in the registry finds it there, pushed by the harness.
        let image = match tool.tool.payload() {
            crate::tool::PayloadKind::PushedImage => {
                let digest = world.seed_image(scenario.target.registry, &backend_repository).await?;
                Some((format!("{push_repository}@{digest}"), digest))
            }
            _ => None,
        };
        let push = PushContext { repository: push_repository.clone(), cell_dir: root, payload: &payload, image };
        let prepared = tool.tool.prepare(&push);
        let mut path: Vec<String> =
            [root.join("bin")].iter().chain(&prepared.path).map(|d| d.display().to_string()).collect();
        path.push("/usr/local/bin:/usr/bin:/bin".into());
        vars.insert("PATH".into(), path.join(":"));
        vars.insert("HOME".into(), home.display().to_string());
        vars.insert("TMPDIR".into(), root.join("tmp").display().to_string());
        vars.insert(
            CREDENTIAL_HELPER_STORE_ENV.into(),
            root.join(credential_files::HELPER_STORE).display().to_string(),
        );
        vars.extend(prepared.env);
        let vendors: Vec<&VendorCell> = vendor.iter().chain(copy.as_ref().and_then(|c| c.vendor.as_ref())).collect();
        for vendor in &vendors {
            vars.extend(vendor.identity_values.env.clone());
        }
        let mut rendered: Vec<CellFile> = [
            scenario.docker_config.as_ref().map(|c| credential_files::docker_config(c, &values)),
            credential_files::helper_store(&scenario.helper, &values),
            scenario.podman.as_ref().map(|p| credential_files::podman_auth(p, &values)),
        ]
        .into_iter()
        .flatten()
        .collect();
        // Before the scenario's own variables, which may override where the files are found.
        for (name, path) in rendered.iter().filter_map(|f| f.env.as_ref()) {
            vars.insert(name.to_string(), root.join(path).display().to_string());
        }
        for (key, value) in &scenario.env {
            vars.insert(key.clone(), expand(value, &values));
        }
        rendered.extend(scenario.files.iter().map(|(path, contents)| CellFile {
            path: Path::new(credential_files::HOME).join(expand(path, &values)),
            contents: expand(contents, &values),
            env: None,
            secrets: Vec::new(),
        }));
        rendered.extend(aws.as_ref().and_then(|a| a.ecr_login_cache(&vars)));

        for d in [home, root.join("tmp"), root.join("bin"), root.join("no-other-certs")] {
            std::fs::create_dir_all(&d).map_err(io_error("creating", &d))?;
        }
        for (name, script) in vendors.iter().flat_map(|v| &v.identity_values.programs) {
            let program = root.join("bin").join(name);
            write_file(&program, script)?;
            std::fs::set_permissions(&program, std::os::unix::fs::PermissionsExt::from_mode(0o755))
                .map_err(io_error("making executable", &program))?;
        }
        let link = root.join("bin").join(CREDENTIAL_HELPER);
        std::os::unix::fs::symlink(&env.helper, &link).map_err(io_error("linking", &link))?;
        if let Some(world_aws) = &world.aws {
            let link = root.join("bin/docker-credential-ecr-login");
            std::os::unix::fs::symlink(&world_aws.ecr_login, &link).map_err(io_error("linking", &link))?;
        }
        let files: Vec<(PathBuf, String)> = prepared
            .files
            .into_iter()
            .chain(rendered.iter().map(|f| (root.join(&f.path), f.contents.clone())))
            .collect();
        let unlisted: Vec<&CellFile> = aws.iter().flat_map(|a| &a.files).collect();
        for (file, contents) in &files {
            write_file(file, contents)?;
        }
        for (file, bytes) in &prepared.blobs {
            write_bytes(file, bytes)?;
        }
        let files: Vec<(PathBuf, String)> = files
            .into_iter()
            .chain(prepared.blobs.iter().map(|(file, bytes)| {
                (file.clone(), format!("({} bytes, {})", bytes.len(), crate::base_image::digest(bytes)))
            }))
            .collect();
        std::fs::create_dir_all(&prepared.cwd).map_err(io_error("creating", &prepared.cwd))?;
        for f in &unlisted {
            write_file(&root.join(&f.path), &f.contents)?;
        }
        let mut secrets = vec![target.user.password.clone(), crate::credential_files::basic_auth_value(&target.user)];
        for vendor in &vendors {
            let credential =
                Credential { username: vendor.account.spec.user.clone(), password: vendor.account.secret.clone() };
            secrets.extend([credential.password.clone(), crate::credential_files::basic_auth_value(&credential)]);
            secrets.extend(vendor.identity_values.secrets.iter().cloned());
        }
        secrets.extend(copy.iter().flat_map(|c| c.secrets.iter().cloned()));
        secrets.extend(rendered.iter().chain(unlisted).flat_map(|f| f.secrets.iter().cloned()));
        secrets.extend(aws.iter().flat_map(|a| a.secrets.iter().cloned()));
        secrets.extend(vars.iter().filter(|(k, _)| is_secret_name(k)).map(|(_, v)| v.clone()));
        let args = match (&copy, &scenario.source) {
            (Some(copy), Some(source)) => {
                let flags = |side: &Side, user: &str, password: &str| {
                    (side.credentials == Given::Flags).then(|| (values[user].clone(), values[password].clone()))
                };
                let from = CopyEnd {
                    reference: copy.reference(),
                    insecure: source.insecure,
                    credentials: flags(source, "SOURCE_USER", "SOURCE_PASSWORD"),
                };
                let to = CopyEnd {
                    reference: format!("{push_repository}:{COPY_TAG}"),
                    insecure: scenario.target.insecure,
                    credentials: flags(&scenario.target, "USER", "PASSWORD"),
                };
                tool.tool
                    .copy_args(&from, &to)
                    .ok_or_else(|| CellSetupError::CannotRun(tool.tool.cannot_copy(&from, &to).unwrap_or_default()))?
            }
            _ => {
                let insecure: &[String] =
                    if scenario.target.insecure { tool.tool.insecure_switch("push") } else { &[] };
                tool.tool.push_args(&push).into_iter().chain(insecure.iter().cloned()).collect()
            }
        };
        let push_command = [tool.tool.name().to_string()].into_iter().chain(args).collect();
        let insecure_source =
            copy.as_ref().filter(|_| scenario.source.as_ref().is_some_and(|s| s.insecure)).map(|c| c.host.clone());
        let mut setup = tool.tool.setup_commands(&push, scenario.target.insecure);
        // A copy's plain-HTTP source is set up as the target would be (regctl's `registry set`).
        if let (Some(copy), Some(true)) = (&copy, scenario.source.as_ref().map(|s| s.insecure)) {
            let from = PushContext { repository: copy.repository(), image: None, ..push };
            setup.extend(tool.tool.insecure_setup(&from));
        }
        let setup =
            setup.into_iter().map(|args| [tool.tool.name().to_string()].into_iter().chain(args).collect()).collect();
        let resolve_tag = tool.tool.tag_to_resolve(&push);
        Ok(Cell {
            dir,
            env: vars,
            values,
            repository: backend_repository,
            session,
            masker: Masker(secrets),
            files,
            aws,
            _vendor: vendor,
            push_dir: prepared.cwd,
            push: push_command,
            copy,
            setup,
            resolve_tag,
            expect: prepared.expect,
            insecure: scenario.target.insecure,
            insecure_source,
            hosts_file,
            tty: scenario.tty,
            push_repository,
        })
    }

    async fn run(
        self,
        env: &CellEnv,
        tool: &ToolBinary,
        scenario: &Scenario,
        started: Instant,
        log_path: PathBuf,
    ) -> CellResult {
        let Steps { transcript, tool_time, last: outcome_of_steps } =
            self.run_steps(tool, &scenario.before, true, started + env.timeout).await;
        let name = tool.tool.name();
        let registry = self.push_repository.split('/').next().unwrap_or_default();
        let source = self.copy.as_ref().map(|c| c.host.as_str());
        let (verdict, fetch_note) = match &outcome_of_steps {
            StepOutcome::Failed(e) => (
                Verdict {
                    outcome: Outcome::InfraError,
                    class: None,
                    detail: format!("infra-error: the harness could not run a step: {e}"),
                },
                String::new(),
            ),
            StepOutcome::TimedOut { output } => {
                let unreachable = env.world.unreachable_services().await;
                let records = self.session.records();
                let foreign = self.foreign_keys(env, &records, scenario);
                let evidence = Evidence {
                    tool: tool.tool.name(),
                    patterns: tool.tool.failure_patterns(),
                    exit_code: None,
                    timed_out: true,
                    output,
                    registry,
                    source,
                    records: &records,
                    fetched_back: Err(NotFetched::Missing("timed out".into())),
                    unreachable: &unreachable,
                    foreign_keys: &foreign,
                };
                (outcome::classify(&evidence), String::new())
            }
            StepOutcome::Done { code, output } => {
                let fetched_back = if *code == Some(0) {
                    self.fetch_back(env, tool, scenario, output).await
                } else {
                    Err(NotFetched::Missing(format!("{name} failed")))
                };
                let note = match &fetched_back {
                    Ok(d) => format!("fetched back {d}"),
                    Err(e) => e.to_string(),
                };
                // Only a failure needs the probe: a dead service must not read as the tool's failure.
                let unreachable =
                    if fetched_back.is_ok() { Vec::new() } else { env.world.unreachable_services().await };
                let records = self.session.records();
                let foreign = self.foreign_keys(env, &records, scenario);
                let evidence = Evidence {
                    tool: tool.tool.name(),
                    patterns: tool.tool.failure_patterns(),
                    exit_code: *code,
                    timed_out: false,
                    output,
                    registry,
                    source,
                    records: &records,
                    fetched_back,
                    unreachable: &unreachable,
                    foreign_keys: &foreign,
                };
                (outcome::classify(&evidence), note)
            }
        };
        let records = self.masker.mask_records(self.session.records());
        let env_shown: BTreeMap<String, String> = self
            .env
            .iter()
            .map(|(k, v)| (k.clone(), if is_secret_name(k) { "****".into() } else { self.masker.mask(v) }))
            .collect();
        // AWS's refusal names the principal; the tool may not show it (HEAD responses have no body).
        let denial = self.aws.as_ref().and_then(AwsCellCredentials::last_denial);
        let detail = match denial {
            Some(denial) if verdict.outcome == Outcome::Fail && !verdict.detail.contains(&denial) => {
                self.masker.mask(&format!("{} [AWS: {denial}]", verdict.detail))
            }
            _ => self.masker.mask(&verdict.detail),
        };
        let output = match &outcome_of_steps {
            StepOutcome::Done { output, .. } | StepOutcome::TimedOut { output } => output.as_str(),
            StepOutcome::Failed(_) => "",
        };
        let facts = crate::diagnosis::Facts {
            tool: name,
            registry,
            source,
            verdict: &Verdict { detail: detail.clone(), ..verdict.clone() },
            line: outcome::deciding_line(output),
            records: &records,
        };
        let diagnosis = crate::diagnosis::diagnose(&facts).map(|d| self.masker.mask(&d));
        let log = self.render_log(tool, scenario, &env_shown, &transcript, &records, &fetch_note, &verdict, &detail);
        let _ = std::fs::create_dir_all(&env.logs_dir);
        let log_written = std::fs::write(&log_path, log);
        let mut result = CellResult {
            tool: name.to_string(),
            version: tool.version.clone(),
            scenario: scenario.name.clone(),
            verb: scenario.verb(),
            outcome: verdict.outcome,
            class: verdict.class,
            detail,
            diagnosis,
            duration_ms: started.elapsed().as_millis() as u64,
            tool_ms: tool_time.as_millis() as u64,
            log: log_path,
            retry_log: None,
            attempts: Vec::new(),
            env: env_shown,
            requests: records,
        };
        if let Err(e) = log_written {
            result.detail.push_str(&format!(" (log not written: {e})"));
        }
        drop(self.dir);
        result
    }

    /// Runs `before` and then, when `push`, the tool's push, up to the first command that
    /// does not exit 0, each until `deadline`.
    async fn run_steps(
        &self,
        tool: &ToolBinary,
        before: &[crate::scenario::Step],
        push: bool,
        deadline: Instant,
    ) -> Steps {
        let mut transcript = String::new();
        let mut tool_time = Duration::ZERO;
        let mut outcome_of_steps = StepOutcome::Done { code: Some(0), output: String::new() };
        let name = tool.tool.name();
        let push = push.then(|| (self.push.clone(), None));
        let setup = self.setup.iter().map(|argv| (argv.clone(), None));
        let commands = setup.chain(before.iter().map(|s| (s.run.clone(), s.stdin.clone()))).chain(push);
        for (argv, stdin) in commands {
            // `${TOOL} login …` is the tool under test, in its own words for the subcommand.
            let placeholder = argv[0] == TOOL_PLACEHOLDER;
            let mut argv: Vec<String> = argv.iter().map(|a| expand(a, &self.values)).collect();
            let stdin = stdin.map(|s| expand(&s, &self.values));
            let is_tool = argv[0] == name;
            if placeholder {
                let word = argv.get(1).cloned().unwrap_or_default();
                let words = tool.tool.subcommand(&word);
                let names_source = self.insecure_source.as_ref().is_some_and(|h| argv.iter().any(|a| a.contains(h)));
                let insecure: &[String] =
                    if self.insecure || names_source { tool.tool.insecure_switch(&word) } else { &[] };
                argv = [name.to_string()]
                    .into_iter()
                    .chain(words)
                    .chain(insecure.iter().map(|s| s.to_string()))
                    .chain(argv.iter().skip(2).map(|arg| tool.tool.flag(arg)))
                    .collect();
            }
            let program = if is_tool { tool.path.clone() } else { PathBuf::from(&argv[0]) };
            let step_started = Instant::now();
            let result = self.exec(&program, &argv[1..], stdin.as_deref(), &self.push_dir, deadline).await;
            let elapsed = step_started.elapsed();
            if is_tool {
                tool_time += elapsed;
            }
            let shown = self.masker.mask(&argv.join(" "));
            let (code, output) = match &result {
                StepOutcome::Done { code, output } => (*code, output.clone()),
                StepOutcome::TimedOut { output } => (None, output.clone()),
                StepOutcome::Failed(e) => (None, e.clone()),
            };
            transcript.push_str(&format!(
                "$ {shown}   (exit {}, {} ms)\n{}\n",
                code.map_or("-".into(), |c| c.to_string()),
                elapsed.as_millis(),
                self.masker.mask(&output)
            ));
            let ok = matches!(result, StepOutcome::Done { code: Some(0), .. });
            outcome_of_steps = result;
            if !ok {
                break;
            }
        }
        Steps { transcript, tool_time, last: outcome_of_steps }
    }

    async fn exec(
        &self,
        program: &Path,
        args: &[String],
        stdin: Option<&str>,
        cwd: &Path,
        deadline: Instant,
    ) -> StepOutcome {
        let mut cmd = Command::new(program);
        cmd.args(args).env_clear().envs(&self.env).current_dir(cwd).stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        });
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let pty = match self.tty.then(crate::pty::Pty::open).transpose() {
            Ok(pty) => pty,
            Err(e) => return StepOutcome::Failed(format!("opening a pseudo-terminal for the cell: {e}")),
        };
        if let Some(pty) = &pty {
            if let Err(e) = pty.attach(&mut cmd) {
                return StepOutcome::Failed(format!("giving the command the cell's terminal: {e}"));
            }
        }
        if let Some(hosts) = &self.hosts_file {
            if let Err(e) = crate::containment::with_hosts_file(&mut cmd, hosts) {
                return StepOutcome::Failed(format!("giving the cell its hosts file: {e}"));
            }
        }
        let mut child = match Contained::spawn(cmd) {
            Ok(child) => child,
            Err(e) => return StepOutcome::Failed(e.to_string()),
        };
        // On a terminal, what the step types goes in through it; otherwise through a pipe.
        let terminal = pty.map(|pty| pty.read(stdin));
        if let (Some(text), Some(mut pipe)) = (stdin, child.child_mut().stdin.take()) {
            let _ = pipe.write_all(text.as_bytes()).await;
            drop(pipe);
        }
        let remaining = deadline.saturating_duration_since(Instant::now());
        let captured = child.capture(&program.display().to_string(), remaining).await;
        let on_terminal = match terminal {
            Some(reading) => reading.output().await,
            None => Vec::new(),
        };
        let output = format!(
            "{}{}{}",
            String::from_utf8_lossy(&captured.stdout),
            String::from_utf8_lossy(&captured.stderr),
            String::from_utf8_lossy(&on_terminal)
        );
        match captured.status {
            Ok(status) => StepOutcome::Done { code: status.code(), output },
            Err(RunError::Timeout { .. }) => StepOutcome::TimedOut { output },
            Err(e) => StepOutcome::Failed(e.to_string()),
        }
    }

    /// Access key ids the tool signed with that the cell was not given, as far as the run's
    /// leak check can tell (see [`crate::leak_check`]); a key the scenario sets is the cell's
    /// (a scenario may use a made-up key on purpose).
    fn foreign_keys(&self, env: &CellEnv, records: &[Record], scenario: &Scenario) -> Vec<String> {
        // A cell without an AWS world was minted nothing.
        let minted = |id: &str| self.aws.as_ref().map_or(Some(false), |aws| aws.minted(id));
        env.world.leak_check.foreign_keys(records, &scenario.stated_access_key_ids(), minted)
    }

    /// Reads the digest the tool says it pushed (or resolves the tag it pushed, when the
    /// gateway saw it push that tag in this cell), fetches that manifest back and checks it
    /// is what the tool was given; for a copy, checks that the target holds the source's image
    /// under the tag copied to.
    async fn fetch_back(
        &self,
        env: &CellEnv,
        tool: &ToolBinary,
        scenario: &Scenario,
        output: &str,
    ) -> Result<String, NotFetched> {
        if self.copy.is_some() {
            return env.world.fetch_copy(scenario.target.registry, &self.repository, COPY_TAG).await;
        }
        let name = tool.tool.name();
        let flavour = scenario.target.registry;
        let printed = tool.tool.pushed_digest(output, &self.push_repository);
        let (digest, manifest) = match (printed, &self.resolve_tag) {
            (Some(digest), _) => env.world.fetch_manifest(flavour, &self.repository, &digest).await?,
            (None, Some(tag)) => {
                if !pushed_tag(&self.session.records(), tag) {
                    return Err(NotFetched::Missing(format!(
                        "{name} exited 0, but the gateway saw no PUT of {}:{tag} in this cell",
                        self.push_repository
                    )));
                }
                env.world.fetch_manifest(flavour, &self.repository, tag).await?
            }
            (None, None) => {
                return Err(NotFetched::Missing(format!("{name} named no pushed digest for {}", self.push_repository)))
            }
        };
        let blob = |digest: String| async move { env.world.fetch_blob(flavour, &self.repository, &digest).await };
        self.expect.check(&manifest, blob).await?;
        Ok(digest)
    }

    #[allow(clippy::too_many_arguments)]
    fn render_log(
        &self,
        tool: &ToolBinary,
        scenario: &Scenario,
        env: &BTreeMap<String, String>,
        transcript: &str,
        records: &[Record],
        fetch_note: &str,
        verdict: &Verdict,
        detail: &str,
    ) -> String {
        let mut log = format!(
            "cell: {}\nscenario: {}\n{}: {} (route {}, sha256 {})\n",
            crate::result::cell_id(tool.tool.name(), &tool.version, &scenario.name),
            scenario.description,
            tool.tool.name(),
            tool.path.display(),
            tool.route,
            tool.sha256
        );
        if let Some(copy) = &self.copy {
            let target = format!("{}:{COPY_TAG}", self.push_repository);
            log.push_str(&format!("copy: {} → {target} (the harness put the image there first)\n", copy.reference()));
        }
        log.push_str("\n== environment (secrets masked)\n");
        for (k, v) in env {
            log.push_str(&format!("{k}={v}\n"));
        }
        log.push_str("\n== files written\n");
        for (file, contents) in &self.files {
            let shown = file.strip_prefix(self.dir.path()).unwrap_or(file);
            log.push_str(&format!("--- {}\n{}\n", shown.display(), self.masker.mask(contents).trim_end()));
        }
        log.push_str("\n== commands\n");
        log.push_str(transcript);
        let helper_calls = std::fs::read_to_string(self.dir.path().join("helper-store.calls")).unwrap_or_default();
        if !helper_calls.is_empty() {
            log.push_str(&format!("\n== credential helper calls\n{helper_calls}"));
        }
        log.push_str("\n== gateway record\n");
        for r in records {
            log.push_str(&format!("{}\n", r.log_line()));
        }
        log.push_str(&format!(
            "\n== fetch back\n{fetch_note}\n\n== verdict\n{:?} {}: {detail}\n",
            verdict.outcome,
            verdict.class.map_or("", FailClass::as_str)
        ));
        log
    }
}

/// Whether `records` show a manifest PUT to `…/manifests/<tag>` that the registry took.
fn pushed_tag(records: &[Record], tag: &str) -> bool {
    let suffix = format!("/manifests/{tag}");
    records.iter().any(|r| {
        let path = r.path.split('?').next().unwrap_or_default();
        r.method == "PUT" && path.ends_with(&suffix) && (200..300).contains(&r.status)
    })
}

/// What a cell's commands came to: the transcript its log shows, the time spent in the tool,
/// and how the last command that ran ended.
struct Steps {
    transcript: String,
    tool_time: Duration,
    last: StepOutcome,
}

enum StepOutcome {
    Done {
        code: Option<i32>,
        output: String,
    },
    TimedOut {
        output: String,
    },
    /// The harness could not run the step at all.
    Failed(String),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_masked_for_reports() {
        let masker = Masker(vec!["s3cr3t-web-identity".into(), "hunter22".into()]);
        let record = |path: &str, note: Option<&str>, infra: Option<&str>| Record {
            host: "sts.amazonaws.com".into(),
            method: "GET".into(),
            path: path.into(),
            status: 502,
            at_ms: 3,
            note: note.map(String::from),
            infra: infra.map(String::from),
            auth: None,
        };
        let masked = masker.mask_records(vec![record(
            "/?Action=AssumeRoleWithWebIdentity&WebIdentityToken=s3cr3t-web-identity",
            Some("refused hunter22"),
            Some("AWS emulator 127.0.0.1:1 unreachable: hunter22"),
        )]);
        assert_eq!(
            masked,
            [record(
                "/?Action=AssumeRoleWithWebIdentity&WebIdentityToken=****",
                Some("refused ****"),
                Some("AWS emulator 127.0.0.1:1 unreachable: ****")
            )]
        );
    }
}
