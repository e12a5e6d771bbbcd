//! Scenario files: which registry a cell pushes to and the credential setup it pushes with.
//! `scenarios/README.md` documents every key; this module parses and validates them with
//! the same located errors as matrix.toml.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::address::{Address, Scheme, TokenService};
use crate::located::ConfigError;
pub use crate::result::Verb;
use ko_matrix_emulators::aws::state::AwsSpec;
use ko_matrix_emulators::bearer::AccountSpec;
pub use ko_matrix_emulators::gateway::{Faults, Latency, Quirks, UploadFault};

/// The placeholders scenario strings may use, filled in per cell.
pub(crate) const PLACEHOLDERS: [&str; 29] = [
    "HOME",
    "TOOL",
    "AWS_ROLE_ARN",
    "AWS_WEB_IDENTITY_TOKEN_FILE",
    "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    "AWS_CONTAINER_AUTHORIZATION_TOKEN",
    "REGISTRY",
    "USER",
    "PASSWORD",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_ACCOUNT",
    "AWS_REGION",
    "ECR_PASSWORD",
    "ECR_EXPIRED_PASSWORD",
    "GOOGLE_PROJECT",
    "GOOGLE_SERVICE_ACCOUNT_KEY",
    "GOOGLE_EXTERNAL_ACCOUNT",
    "GCE_METADATA_HOST",
    "ACTIONS_ID_TOKEN_REQUEST_URL",
    "ACTIONS_ID_TOKEN_REQUEST_TOKEN",
    "AZURE_TENANT_ID",
    "AZURE_CLIENT_ID",
    "AZURE_CLIENT_SECRET",
    "AZURE_FEDERATED_TOKEN",
    "SOURCE_REGISTRY",
    "SOURCE_USER",
    "SOURCE_PASSWORD",
];

/// The host of the token server that the token registry's challenge names.
pub(crate) const TOKEN_AUTH_HOST: &str = "auth.ko-matrix.test";

/// Which kind of registry the cell pushes to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Flavour {
    /// No authentication.
    Anonymous,
    /// htpasswd Basic auth over TLS.
    Basic,
    /// Bearer tokens from the harness's token server (the Docker Hub flow).
    Token,
    /// Amazon ECR, emulated under its real host names (the scenario's `[aws]` table).
    Ecr,
    /// The GitHub Container Registry under its real name (the scenario's `[account]` table).
    Ghcr,
    /// Docker Hub under its real names (the scenario's `[account]` table).
    Dockerhub,
    /// Google's registry `gcr.io` with Google's OAuth, STS and metadata server (the
    /// scenario's `[account]` table: the service account and its project).
    Gcp,
    /// Azure Container Registry with Entra ID (the scenario's `[account]` and `[azure]` tables).
    Azure,
    /// Self-hosted Harbor (`[account]`: a user or a robot account, and the project).
    Harbor,
    /// Self-hosted GitLab's container registry, tokens from GitLab (`[account]`).
    Gitlab,
    /// Self-hosted Quay (`[account]`: a user or a robot account, and the organisation).
    Quay,
    /// Self-hosted JFrog Artifactory (`[account]`: the user, and the repository key as owner).
    Artifactory,
    /// Self-hosted Sonatype Nexus, Basic auth on its Docker connector (`[account]`).
    Nexus,
}

impl Flavour {
    /// The virtual host cells push to (ECR's depends on the scenario's account and region).
    pub fn host(self) -> &'static str {
        match self {
            Flavour::Anonymous => "anonymous.ko-matrix.test",
            Flavour::Basic => "basic.ko-matrix.test",
            Flavour::Token => "token.ko-matrix.test",
            Flavour::Ecr => "<account>.dkr.ecr.<region>.amazonaws.com",
            Flavour::Ghcr => ko_matrix_emulators::github::HOST,
            Flavour::Dockerhub => ko_matrix_emulators::dockerhub::HOST,
            Flavour::Gcp => ko_matrix_emulators::google::HOST,
            Flavour::Azure => ko_matrix_emulators::azure::HOST,
            Flavour::Harbor => ko_matrix_emulators::harbor::HOST,
            Flavour::Gitlab => ko_matrix_emulators::gitlab::HOST,
            Flavour::Quay => ko_matrix_emulators::quay::HOST,
            Flavour::Artifactory => ko_matrix_emulators::artifactory::HOST,
            Flavour::Nexus => ko_matrix_emulators::nexus::HOST,
        }
    }

    /// The host of its token service, for a registry whose deployment chooses where that
    /// sits (`[target] token_service`).
    pub fn token_host(self) -> Option<&'static str> {
        match self {
            Flavour::Token => Some(TOKEN_AUTH_HOST),
            // Harbor's and Quay's token services are on the registry's own host, GitLab's on the
            // GitLab host, Artifactory's under each repository key (docs/selfhosted-wire-reference.md).
            Flavour::Harbor => Some(ko_matrix_emulators::harbor::HOST),
            Flavour::Gitlab => Some(ko_matrix_emulators::gitlab::GITLAB_HOST),
            Flavour::Quay => Some(ko_matrix_emulators::quay::HOST),
            Flavour::Artifactory => Some(ko_matrix_emulators::artifactory::HOST),
            _ => None,
        }
    }

    /// Whether the hosted registry answers blob downloads with a redirect to its object store
    /// (docs/storage-and-quirks.md): ECR, Docker Hub, gcr.io, ACR and ghcr.io do; distribution
    /// on a filesystem (the run's own registries) never does, and the self-hosted products'
    /// storage is their operator's choice.
    pub fn redirects(self) -> bool {
        matches!(self, Flavour::Ecr | Flavour::Dockerhub | Flavour::Gcp | Flavour::Azure | Flavour::Ghcr)
    }

    pub fn name(self) -> &'static str {
        match self {
            Flavour::Anonymous => "anonymous",
            Flavour::Basic => "basic",
            Flavour::Token => "token",
            Flavour::Ecr => "ecr",
            Flavour::Ghcr => "ghcr",
            Flavour::Dockerhub => "dockerhub",
            Flavour::Gcp => "gcp",
            Flavour::Azure => "azure",
            Flavour::Harbor => "harbor",
            Flavour::Gitlab => "gitlab",
            Flavour::Quay => "quay",
            Flavour::Artifactory => "artifactory",
            Flavour::Nexus => "nexus",
        }
    }

    /// Whether cells push to a vendor's registry under its real (or, self-hosted, a realistic)
    /// name, with an `[account]` there ([`ko_matrix_emulators::bearer`]).
    pub fn is_vendor(self) -> bool {
        matches!(
            self,
            Flavour::Ghcr
                | Flavour::Dockerhub
                | Flavour::Gcp
                | Flavour::Azure
                | Flavour::Harbor
                | Flavour::Gitlab
                | Flavour::Quay
                | Flavour::Artifactory
                | Flavour::Nexus
        )
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Credential {
    pub username: String,
    pub password: String,
}

/// Where the docker config goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DockerConfigLocation {
    /// `$HOME/.docker/config.json`, found without `DOCKER_CONFIG`.
    #[default]
    Home,
    /// A separate directory that `DOCKER_CONFIG` points to.
    Elsewhere,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DockerConfig {
    #[serde(default)]
    pub location: DockerConfigLocation,
    #[serde(default)]
    pub auths: BTreeMap<String, Credential>,
    #[serde(rename = "credsStore")]
    pub creds_store: Option<String>,
    #[serde(default, rename = "credHelpers")]
    pub cred_helpers: BTreeMap<String, String>,
}

/// Where a podman-style `auth.json` goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PodmanFile {
    /// A file named by `REGISTRY_AUTH_FILE`.
    RegistryAuthFile,
    /// `$XDG_RUNTIME_DIR/containers/auth.json`.
    XdgRuntime,
    /// `$XDG_CONFIG_HOME/containers/auth.json`.
    XdgConfig,
    /// `~/.config/containers/auth.json` (no XDG variable set).
    HomeConfig,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Podman {
    pub file: PodmanFile,
    pub auths: BTreeMap<String, Credential>,
}

/// A command run before `ko build`, e.g. `ko login`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Step {
    pub run: Vec<String>,
    pub stdin: Option<String>,
}

/// A registry a cell meets, and how the user reaches it: the `[target]` it pushes (or copies)
/// to, and a copy's `[source]`. Both take the same keys; `base_image` is the target's (ko's
/// base image), `account` and `aws` a source's (the target's are the top-level tables).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Side {
    pub registry: Flavour,
    /// Where ko's base image comes from (the target's only; default `run`).
    pub base_image: Option<BaseImageFrom>,
    /// The form of the registry's address (`localhost:<port>`, `registry.local:5000`, …).
    #[serde(default)]
    pub address: Address,
    /// What the registry speaks: `https` (default) or `http`.
    #[serde(default = "https")]
    pub scheme: Scheme,
    /// Whether the user passed the tool's own switch for an insecure registry
    /// (`crane --insecure`, `oras --plain-http`, `ko build --insecure-registry`; for a copy's
    /// side, `oras cp --from-plain-http`).
    #[serde(default)]
    pub insecure: bool,
    /// Where a `token` registry's token service sits.
    #[serde(default)]
    pub token_service: TokenService,
    /// Whether blob downloads are redirected to the vendor's object store (default: where the
    /// vendor redirects, [`Flavour::redirects`]).
    pub redirects: Option<Toggle>,
    /// How the user gives the tool this registry's credentials (a copy's sides only).
    #[serde(default)]
    pub credentials: Given,
    /// A copy source's account at a vendor registry (defaults when absent).
    pub account: Option<AccountSpec>,
    /// A copy source's AWS world when it is ECR (defaults when absent).
    pub aws: Option<AwsSpec>,
}

/// How the user gives the tool a copy side's credentials.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Given {
    /// What the scenario's docker config, helper, podman file or steps hold: the tool looks
    /// them up by registry, one credential per registry host.
    #[default]
    Config,
    /// On the command line, with the tool's flags for that side (`oras cp --from-username …`).
    Flags,
}

/// A switch a scenario turns `on` or `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Toggle {
    On,
    Off,
}

impl Side {
    /// Whether the side's blob downloads go to the vendor's object store.
    pub fn redirects(&self) -> bool {
        self.redirects.map_or(self.registry.redirects(), |t| t == Toggle::On)
    }

    /// Where ko's base image comes from (the target's).
    pub fn base_image(&self) -> BaseImageFrom {
        self.base_image.unwrap_or_default()
    }

    /// Whether clients reach both at one address: one registry, not two.
    pub fn same_address(&self, other: &Side) -> bool {
        (self.registry, self.address, self.scheme, self.token_service)
            == (other.registry, other.address, other.scheme, other.token_service)
    }
}

fn https() -> Scheme {
    Scheme::Https
}

/// Where a cell's base image is pulled from (it matters to tools that build on one: ko).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum BaseImageFrom {
    /// The run's own base-image registry (anonymous, a host of its own).
    #[default]
    Run,
    /// A public repository of the target vendor registry (`docker.io/ko-matrix/base`), pulled
    /// through the same front the push goes to; at ECR, the base image through the first pull
    /// through cache rule (`<registry>/<prefix>/ko-matrix/base`).
    Target,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawScenario {
    description: String,
    expect: Option<String>,
    target: Side,
    source: Option<Side>,
    docker_config: Option<DockerConfig>,
    #[serde(default)]
    helper: BTreeMap<String, Credential>,
    podman: Option<Podman>,
    aws: Option<AwsSpec>,
    account: Option<AccountSpec>,
    azure: Option<ko_matrix_emulators::azure::AzureSpec>,
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    files: BTreeMap<String, String>,
    #[serde(default)]
    before: Vec<Step>,
    #[serde(default)]
    faults: Faults,
    #[serde(default)]
    tty: bool,
    #[serde(default)]
    quirks: Quirks,
}

/// A validated scenario.
#[derive(Debug, Clone)]
pub struct Scenario {
    /// Path below `scenarios/` without `.toml`, e.g. `registry/basic-auths`.
    pub name: String,
    pub file: PathBuf,
    /// The real-world setup it stands for, in one line.
    pub description: String,
    /// What the author expects (documentation only: the harness reports what happened).
    pub expect: Option<String>,
    /// A copy's source registry: with one, the cell copies an image the harness put there to
    /// the target instead of pushing.
    pub source: Option<Side>,
    pub target: Side,
    pub docker_config: Option<DockerConfig>,
    /// What the harness's credential helper (`docker-credential-ko-matrix`) holds.
    pub helper: BTreeMap<String, Credential>,
    pub podman: Option<Podman>,
    /// The AWS world an ECR scenario needs (defaults when the table is absent).
    pub aws: Option<AwsSpec>,
    /// The cell's account at a vendor registry (ghcr): defaults when the table is absent.
    pub account: Option<AccountSpec>,
    /// Who the cell is in Entra ID (azure scenarios): defaults when the table is absent.
    pub azure: Option<ko_matrix_emulators::azure::AzureSpec>,
    pub env: BTreeMap<String, String>,
    /// Files written below the cell's HOME (path → contents), e.g. `.aws/config`.
    pub files: BTreeMap<String, String>,
    pub before: Vec<Step>,
    /// What the gateway injects into the cell's traffic (nothing by default).
    pub faults: Faults,
    /// Whether the cell's commands run on a terminal (a pseudo-terminal on stdin, stdout and
    /// stderr), as on a developer's laptop.
    pub tty: bool,
    /// How the cell's registries depart from distribution's answers (none by default).
    pub quirks: Quirks,
}

impl Scenario {
    pub fn parse(name: &str, file: &Path, text: &str) -> Result<Scenario, ConfigError> {
        check_placeholders(file, text)?;
        let raw: RawScenario = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;
        if raw.description.trim().is_empty() || raw.description.contains('\n') {
            let at = text.find("description").unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + 11,
                "`description` must be one line saying which real-world setup this stands for",
            ));
        }
        if let Some(path) = raw.files.keys().find(|p| p.starts_with('/') || p.split('/').any(|c| c == "..")) {
            let at = text.find(path.as_str()).unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + path.len(),
                format!("`files` paths are relative to the cell's HOME and stay inside it, not `{path}`"),
            ));
        }
        if let Some(step) = raw.before.iter().find(|s| s.run.is_empty()) {
            let at = text.find("run").unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + 3,
                format!("a `before` step needs a command in `run` (got {:?})", step.run),
            ));
        }
        if let Some(upload) = &raw.faults.blob_upload {
            let at = text.find("blob_upload").unwrap_or(0);
            if upload.nth == 0 {
                return Err(ConfigError::at(
                    file,
                    text,
                    at..at + 11,
                    "`blob_upload.nth` counts from 1 (the first blob upload)",
                ));
            }
            if upload.status.is_some_and(|s| !(400..600).contains(&s)) {
                return Err(ConfigError::at(file, text, at..at + 11, "`blob_upload.status` is an HTTP error status (400–599); leave it out to drop the connection instead"));
            }
        }
        let aws = match (raw.target.registry, raw.aws) {
            (Flavour::Ecr, aws) => {
                Some(aws.unwrap_or_else(|| toml::from_str("").expect("an empty [aws] table takes the defaults")))
            }
            (_, Some(_)) => {
                let at = text.find("[aws]").unwrap_or(0);
                return Err(ConfigError::at(
                    file,
                    text,
                    at..at + 5,
                    "an [aws] table only applies with target.registry = \"ecr\"",
                ));
            }
            (_, None) => None,
        };
        let pull_through = aws.as_ref().is_some_and(|a| !a.pull_through_cache.is_empty());
        if raw.target.base_image() == BaseImageFrom::Target
            && raw.target.registry != Flavour::Dockerhub
            && !pull_through
        {
            let at = text.find("base_image").unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + 10,
                "`base_image = \"target\"` needs a registry with public images (target.registry = \"dockerhub\") or an ECR pull through cache ([aws] pull_through_cache)",
            ));
        }
        if let Some(status) = raw.quirks.missing_manifest_head.filter(|s| ![401, 403, 404].contains(s)) {
            let at = text.find("missing_manifest_head").unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + 21,
                format!("`missing_manifest_head` is 404, 401 or 403 (the answers real registries give), not {status}"),
            ));
        }
        if let Some(status) = raw.quirks.mount_refused.filter(|s| ![401, 403, 405].contains(s)) {
            let at = text.find("mount_refused").unwrap_or(0);
            return Err(ConfigError::at(
                file,
                text,
                at..at + 13,
                format!("`mount_refused` is 401, 403 or 405, not {status}"),
            ));
        }
        check_side(file, text, "[target]", &raw.target)?;
        for (key, table) in [("account", raw.target.account.is_some()), ("aws", raw.target.aws.is_some())] {
            if table {
                let at = find_in(text, "[target", key);
                return Err(ConfigError::at(file, text, at..at + key.len(), format!("the target's `{key}` is the top-level [{key}] table; `{key}` in a side's table is a copy [source]'s")));
            }
        }
        let source = match raw.source {
            Some(source) => Some(check_source(file, text, source, &raw.target)?),
            None => {
                if raw.target.credentials == Given::Flags {
                    let at = find_in(text, "[target]", "credentials");
                    return Err(ConfigError::at(file, text, at..at + 11, "`credentials = \"flags\"` gives a copy's credentials on the command line: it needs a [source] to copy from"));
                }
                None
            }
        };
        let account = match (raw.target.registry.is_vendor(), raw.account) {
            (true, account) => Some(account.unwrap_or_default()),
            (false, Some(_)) => {
                let at = text.find("[account]").unwrap_or(0);
                return Err(ConfigError::at(file, text, at..at + 9, "an [account] table only applies with a vendor's target.registry (not anonymous, basic, token or ecr)"));
            }
            (false, None) => None,
        };
        let azure = match (raw.target.registry, raw.azure) {
            (Flavour::Azure, azure) => Some(azure.unwrap_or_default()),
            (_, Some(_)) => {
                let at = text.find("[azure]").unwrap_or(0);
                return Err(ConfigError::at(
                    file,
                    text,
                    at..at + 7,
                    "an [azure] table only applies with target.registry = \"azure\"",
                ));
            }
            (_, None) => None,
        };
        Ok(Scenario {
            aws,
            account,
            azure,
            name: name.to_string(),
            file: file.to_path_buf(),
            description: raw.description,
            expect: raw.expect,
            source,
            target: raw.target,
            docker_config: raw.docker_config,
            helper: raw.helper,
            podman: raw.podman,
            env: raw.env,
            files: raw.files,
            before: raw.before,
            faults: raw.faults,
            tty: raw.tty,
            quirks: raw.quirks,
        })
    }

    /// The registries the cell meets: its target's, and a copy's source's.
    pub fn registries(&self) -> impl Iterator<Item = Flavour> + '_ {
        std::iter::once(self.target.registry).chain(self.source.as_ref().map(|s| s.registry))
    }

    /// The cell's AWS world, for its ECR side (the target's `[aws]`, or a copy's source's).
    pub fn aws_spec(&self) -> Option<&AwsSpec> {
        self.aws.as_ref().or_else(|| self.source.as_ref().and_then(|s| s.aws.as_ref()))
    }

    /// What the cell does: push the tool's payload, or copy from `[source]`.
    pub fn verb(&self) -> Verb {
        match self.source {
            Some(_) => Verb::Copy,
            None => Verb::Push,
        }
    }

    /// The access key ids the scenario gives its cell literally: `AWS_ACCESS_KEY_ID` (or the
    /// older `AWS_ACCESS_KEY`) in `[env]`, and in the files it writes `aws_access_key_id`
    /// lines (shared credentials and config) and a `credential_process` JSON's `AccessKeyId`.
    /// The only keys a scenario vouches for: an id in a comment or anywhere else sets nothing.
    /// Placeholders are left out: `${AWS_ACCESS_KEY_ID}` is the key the run mints for the cell.
    pub fn stated_access_key_ids(&self) -> BTreeSet<String> {
        let from_env = ["AWS_ACCESS_KEY_ID", "AWS_ACCESS_KEY"].into_iter().filter_map(|name| self.env.get(name));
        let from_files = self.files.values().flat_map(|text| {
            let process = serde_json::from_str::<serde_json::Value>(text)
                .ok()
                .and_then(|json| json["AccessKeyId"].as_str().map(str::to_string));
            ko_matrix_emulators::aws::shared_file_access_key_ids(text).map(str::to_string).chain(process)
        });
        from_env.cloned().chain(from_files).filter(|id| !id.is_empty() && !id.contains("${")).collect()
    }
}

/// Where `key` is written in `section` (`[target]`), for an error's location: its first
/// occurrence after the section's header, else after the start.
fn find_in(text: &str, section: &str, key: &str) -> usize {
    let from = text.find(section).unwrap_or(0);
    text[from..].find(key).map_or_else(|| text.find(key).unwrap_or(0), |at| from + at)
}

/// The checks every side's registry takes (`[target]`, `[source]`): redirects only where the
/// vendor's blobs live in an object store, addresses and schemes for the run's own registries,
/// a token service placed only where the registry has one.
fn check_side(file: &Path, text: &str, section: &str, s: &Side) -> Result<(), ConfigError> {
    let (registry, address, scheme, token_service, redirects) =
        (s.registry, s.address, s.scheme, s.token_service, s.redirects);
    let side = section.trim_matches(['[', ']']);
    if redirects == Some(Toggle::On) && !registry.redirects() {
        let at = find_in(text, section, "redirects");
        return Err(ConfigError::at(
            file,
            text,
            at..at + 9,
            format!(
                "`redirects = \"on\"` needs a registry whose blobs live in an object store (ecr, dockerhub, gcp, azure, ghcr); {} serves them itself",
                registry.name()
            ),
        ));
    }
    let own_registry = matches!(registry, Flavour::Anonymous | Flavour::Basic | Flavour::Token);
    if !own_registry && (address != Address::Name || scheme != Scheme::Https) {
        let key = if address != Address::Name { "address" } else { "scheme" };
        let at = find_in(text, section, key);
        return Err(ConfigError::at(
            file,
            text,
            at..at + key.len(),
            format!(
                "`{key}` applies to the run's own registries ({side}.registry = \"anonymous\", \"basic\" or \"token\"); {} is reached only under its real name over HTTPS",
                registry.name()
            ),
        ));
    }
    if token_service != TokenService::OtherHost && registry.token_host().is_none() {
        let at = find_in(text, section, "token_service");
        return Err(ConfigError::at(
            file,
            text,
            at..at + 13,
            format!("`token_service` places the token service of a bearer-token registry: {side}.registry = \"token\""),
        ));
    }
    Ok(())
}

/// A copy's `[source]`, checked as a side and against the `[target]`; its account or AWS world
/// filled in with the defaults where its registry needs one.
fn check_source(file: &Path, text: &str, mut source: Side, target: &Side) -> Result<Side, ConfigError> {
    check_side(file, text, "[source]", &source)?;
    let table_error = |key: &str, message: &str| {
        let at = find_in(text, "[source", key);
        Err(ConfigError::at(file, text, at..at + key.len(), message.to_string()))
    };
    if source.base_image.is_some() {
        return table_error("base_image", "`base_image` is ko's base image, the [target]'s; a copy's source has none");
    }
    source.aws = match (source.registry, source.aws.take()) {
        (Flavour::Ecr, _) if target.registry == Flavour::Ecr => {
            return table_error("registry", "a cell has one AWS world: [source] and [target] cannot both be ecr");
        }
        (Flavour::Ecr, aws) => {
            Some(aws.unwrap_or_else(|| toml::from_str("").expect("an empty [aws] table takes the defaults")))
        }
        (_, Some(_)) => return table_error("aws", "a [source] aws table only applies with source.registry = \"ecr\""),
        (_, None) => None,
    };
    source.account =
        match (source.registry.is_vendor(), source.account.take()) {
            (true, account) => Some(account.unwrap_or_default()),
            (false, Some(_)) => return table_error(
                "account",
                "a [source] account only applies with a vendor's source.registry (not anonymous, basic, token or ecr)",
            ),
            (false, None) => None,
        };
    Ok(source)
}

/// Every `${NAME}` must be a known placeholder.
fn check_placeholders(file: &Path, text: &str) -> Result<(), ConfigError> {
    for (at, _) in text.match_indices("${") {
        let rest = &text[at + 2..];
        let end = rest.find('}').filter(|&e| !rest[..e].contains('\n'));
        let Some(end) = end else {
            return Err(ConfigError::at(file, text, at..at + 2, "unclosed `${`; placeholders look like ${REGISTRY}"));
        };
        let name = &rest[..end];
        if !PLACEHOLDERS.contains(&name) {
            let choices = PLACEHOLDERS.map(|p| format!("${{{p}}}")).join(", ");
            return Err(ConfigError::at(
                file,
                text,
                at..at + end + 3,
                format!("unknown placeholder `${{{name}}}`; known: {choices}"),
            ));
        }
    }
    Ok(())
}

/// A step's program that means the tool under test: `run = ["${TOOL}", "login", …]`.
pub(crate) const TOOL_PLACEHOLDER: &str = "${TOOL}";

/// Replaces every `${NAME}` in `text` by its value.
pub(crate) fn expand(text: &str, values: &BTreeMap<&str, String>) -> String {
    let mut out = text.to_string();
    for (name, value) in values {
        out = out.replace(&format!("${{{name}}}"), value);
    }
    out
}

/// Every scenario file below `dir` (`*.toml`, any depth), sorted by name.
pub fn discover(dir: &Path) -> Result<Vec<Scenario>, ConfigError> {
    let mut files = Vec::new();
    collect(dir, &mut files).map_err(|e| ConfigError::unreadable(dir, &e))?;
    files.sort();
    let mut scenarios = Vec::new();
    for file in files {
        let relative = file.strip_prefix(dir).expect("found below dir").with_extension("");
        let name = relative.components().map(|c| c.as_os_str().to_string_lossy()).collect::<Vec<_>>().join("/");
        let text = std::fs::read_to_string(&file).map_err(|e| ConfigError::unreadable(&file, &e))?;
        scenarios.push(Scenario::parse(&name, &file, &text)?);
    }
    Ok(scenarios)
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.is_dir() {
            collect(&path, files)?;
        } else if path.extension().is_some_and(|e| e == "toml") {
            files.push(path);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ConfigError> {
        Scenario::parse("registry/x", Path::new("scenarios/registry/x.toml"), text)
    }

    #[test]
    fn redirects_default_to_the_vendors_that_redirect_and_quirks_take_real_statuses() {
        let target = |registry: &str, redirects: &str| {
            parse(&format!("description = \"d\"\n[target]\nregistry = \"{registry}\"\n{redirects}"))
        };
        assert!(target("ghcr", "").unwrap().target.redirects(), "ghcr.io redirects by default");
        assert!(!target("ghcr", "redirects = \"off\"").unwrap().target.redirects());
        assert!(!target("basic", "").unwrap().target.redirects(), "distribution on a filesystem never redirects");
        let on = target("basic", "redirects = \"on\"").unwrap_err().to_string();
        assert!(on.contains("serves them itself"), "{on}");
        let quirks = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[quirks]\nmissing_manifest_head = 403\nchunked_uploads = false\n").unwrap().quirks;
        assert_eq!((quirks.missing_manifest_head, quirks.chunked_uploads, quirks.oci_index), (Some(403), false, true));
        let odd = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[quirks]\nmissing_manifest_head = 500\n")
            .unwrap_err();
        assert!(odd.to_string().contains("404, 401 or 403"), "{odd}");
    }

    #[test]
    fn a_full_scenario_parses() {
        let s = parse(
            r#"
description = "docker login wrote auths"
expect = "pass"
[target]
registry = "basic"
[docker_config]
location = "elsewhere"
auths = { "${REGISTRY}" = { username = "${USER}", password = "${PASSWORD}" } }
credsStore = "ko-matrix"
credHelpers = { "${REGISTRY}" = "ko-matrix" }
[helper]
"${REGISTRY}" = { username = "${USER}", password = "${PASSWORD}" }
[podman]
file = "xdg-runtime"
auths = { "${REGISTRY}" = { username = "${USER}", password = "${PASSWORD}" } }
[env]
GODEBUG = "x509sha1=1"
[[before]]
run = ["${TOOL}", "login", "${REGISTRY}", "-u", "${USER}", "--password-stdin"]
stdin = "${PASSWORD}"
"#,
        )
        .unwrap();
        assert_eq!(s.target.registry, Flavour::Basic);
        let config = s.docker_config.unwrap();
        assert_eq!(config.location, DockerConfigLocation::Elsewhere);
        assert_eq!(config.creds_store.as_deref(), Some("ko-matrix"));
        assert_eq!(s.podman.unwrap().file, PodmanFile::XdgRuntime);
        assert_eq!(s.before[0].run[1], "login");
    }

    #[test]
    fn faults_parse_and_refuse_what_cannot_happen() {
        let s = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[faults]\necr_throttle = 3\nblob_upload = { nth = 2, status = 503 }\n[[faults.latency]]\nhost = \"${REGISTRY}\"\ndelay = \"250ms\"\n").unwrap();
        assert_eq!(s.faults.ecr_throttle, 3);
        assert_eq!(s.faults.blob_upload, Some(UploadFault { nth: 2, status: Some(503) }));
        assert_eq!(
            s.faults.latency,
            [Latency { host: "${REGISTRY}".into(), delay: std::time::Duration::from_millis(250) }]
        );
        assert_eq!(parse("description = \"d\"\n[target]\nregistry = \"basic\"\n").unwrap().faults, Faults::default());
        let zeroth =
            parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[faults]\nblob_upload = { nth = 0 }\n")
                .unwrap_err();
        assert_eq!(
            (zeroth.line, zeroth.message.as_str()),
            (5, "`blob_upload.nth` counts from 1 (the first blob upload)")
        );
        let ok_status = parse(
            "description = \"d\"\n[target]\nregistry = \"basic\"\n[faults]\nblob_upload = { nth = 1, status = 200 }\n",
        )
        .unwrap_err();
        assert!(
            ok_status.message.starts_with("`blob_upload.status` is an HTTP error status (400–599)"),
            "{}",
            ok_status.message
        );
        let bad_delay = parse(
            "description = \"d\"\n[target]\nregistry = \"basic\"\n[[faults.latency]]\nhost = \"h\"\ndelay = \"soon\"\n",
        )
        .unwrap_err();
        assert!(bad_delay.message.contains("`soon` is not a duration"), "{}", bad_delay.message);
    }

    #[test]
    fn addresses_and_token_services_are_checked() {
        let head = "description = \"d\"\n[target]\n";
        let s = parse(&format!("{head}registry = \"token\"\naddress = \"single-label\"\nscheme = \"http\"\ninsecure = true\ntoken_service = \"other-port\"\n")).unwrap();
        assert_eq!(
            (s.target.address, s.target.scheme, s.target.insecure, s.target.token_service),
            (Address::SingleLabel, Scheme::Http, true, TokenService::OtherPort)
        );
        let d = parse(&format!("{head}registry = \"basic\"\n")).unwrap().target;
        assert_eq!(
            (d.address, d.scheme, d.insecure, d.token_service),
            (Address::Name, Scheme::Https, false, TokenService::OtherHost)
        );
        let e = parse(&format!("{head}registry = \"basic\"\naddress = \"laptop\"\n")).unwrap_err();
        assert_eq!((e.line, e.column), (4, 11));
        assert!(
            e.message.starts_with("unknown variant `laptop`, expected one of `name`, `localhost`, `127.0.0.1`"),
            "{}",
            e.message
        );
        let e = parse(&format!("{head}registry = \"ghcr\"\naddress = \"localhost\"\n")).unwrap_err();
        assert_eq!((e.line, e.column), (4, 1));
        assert!(e.message.contains("ghcr is reached only under its real name over HTTPS"), "{}", e.message);
        let e = parse(&format!("{head}registry = \"basic\"\ntoken_service = \"plain-http\"\n")).unwrap_err();
        assert!(e.message.contains("target.registry = \"token\""), "{}", e.message);
        let e = parse(&format!("{head}registry = \"anonymous\"\nscheme = \"ftp\"\n")).unwrap_err();
        assert_eq!(e.message, "unknown variant `ftp`, expected `http` or `https`");
    }

    #[test]
    fn errors_are_located() {
        let e = parse("description = \"d\"\n[target]\nregistry = \"harbour\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (3, 12));
        assert_eq!(e.message, "unknown variant `harbour`, expected one of `anonymous`, `basic`, `token`, `ecr`, `ghcr`, `dockerhub`, `gcp`, `azure`, `harbor`, `gitlab`, `quay`, `artifactory`, `nexus`");
        let e = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[docker_config]\nauths = { \"${REGISTY}\" = { username = \"u\", password = \"p\" } }\n").unwrap_err();
        assert_eq!((e.line, e.column), (5, 12));
        assert!(
            e.message.starts_with("unknown placeholder `${REGISTY}`; known: ${HOME}, ${TOOL}, ${AWS_ROLE_ARN}"),
            "{}",
            e.message
        );
        let e = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[files]\n\"../x\" = \"y\"\n").unwrap_err();
        assert_eq!(e.message, "`files` paths are relative to the cell's HOME and stay inside it, not `../x`");
        let e = parse("description = \"d\"\ncolour = 1\n[target]\nregistry = \"basic\"\n").unwrap_err();
        assert!(
            e.message.starts_with("unknown field `colour`, expected one of `description`, `expect`, `target`"),
            "{}",
            e.message
        );
        let e = parse("[target]\nregistry = \"basic\"\n").unwrap_err();
        assert_eq!(e.message, "missing field `description`");
    }

    #[test]
    fn a_source_makes_a_copy_with_its_own_account_and_checks() {
        let copy = parse("description = \"d\"\n[source]\nregistry = \"harbor\"\ncredentials = \"flags\"\naccount = { user = \"robot$team-a+reader\", owner = \"team-a\", credential = \"read-only\" }\n[target]\nregistry = \"harbor\"\ncredentials = \"flags\"\n[account]\nuser = \"robot$team-b+writer\"\nowner = \"team-b\"\n").unwrap();
        assert_eq!(copy.verb(), Verb::Copy);
        let source = copy.source.as_ref().unwrap();
        assert_eq!(source.account.as_ref().unwrap().owner(), "team-a");
        assert_eq!((source.credentials, copy.target.credentials), (Given::Flags, Given::Flags));
        assert!(source.same_address(&copy.target), "one Harbor");
        let plain = parse("description = \"d\"\n[source]\nregistry = \"anonymous\"\nscheme = \"http\"\ninsecure = true\n[target]\nregistry = \"basic\"\n").unwrap();
        let side = plain.source.as_ref().unwrap();
        assert_eq!((side.scheme, side.insecure, side.redirects()), (Scheme::Http, true, false));
        assert!(!side.same_address(&plain.target));
        assert_eq!(parse("description = \"d\"\n[target]\nregistry = \"basic\"\n").unwrap().verb(), Verb::Push);
        let ecr = parse("description = \"d\"\n[source]\nregistry = \"ecr\"\n[target]\nregistry = \"ghcr\"\n").unwrap();
        assert_eq!(ecr.source.unwrap().aws.unwrap().region, "us-east-1", "an ECR source gets an AWS world");

        let head = "description = \"d\"\n[source]\n";
        let e = parse(&format!("{head}registry = \"ecr\"\n[target]\nregistry = \"ecr\"\n")).unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (3, "a cell has one AWS world: [source] and [target] cannot both be ecr")
        );
        let e = parse(&format!("{head}registry = \"ghcr\"\naddress = \"localhost\"\n[target]\nregistry = \"basic\"\n"))
            .unwrap_err();
        assert_eq!((e.line, e.column), (4, 1));
        assert!(
            e.message.starts_with("`address` applies to the run's own registries (source.registry = "),
            "{}",
            e.message
        );
        let e = parse(&format!(
            "{head}registry = \"basic\"\naccount = {{ user = \"u\" }}\n[target]\nregistry = \"basic\"\n"
        ))
        .unwrap_err();
        assert_eq!(e.line, 4);
        assert!(
            e.message.starts_with("a [source] account only applies with a vendor's source.registry"),
            "{}",
            e.message
        );
        let e =
            parse(&format!("{head}registry = \"basic\"\nbase_image = \"target\"\n[target]\nregistry = \"basic\"\n"))
                .unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (4, "`base_image` is ko's base image, the [target]'s; a copy's source has none")
        );
        let e = parse("description = \"d\"\n[target]\nregistry = \"ghcr\"\naccount = { user = \"u\" }\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (4, "the target's `account` is the top-level [account] table; `account` in a side's table is a copy [source]'s"));
        let e =
            parse(&format!("{head}registry = \"basic\"\ncolour = 1\n[target]\nregistry = \"basic\"\n")).unwrap_err();
        assert!(
            e.message.starts_with("unknown field `colour`, expected one of `registry`, `base_image`, `address`"),
            "{}",
            e.message
        );
        let e = parse("description = \"d\"\n[target]\nregistry = \"basic\"\ncredentials = \"flags\"\n").unwrap_err();
        assert_eq!(e.line, 4);
        assert!(e.message.contains("it needs a [source] to copy from"), "{}", e.message);
        let e = parse("description = \"d\"\n[source]\nregistry = \"basic\"\n[target]\nregistry = \"basic\"\n[docker_config]\nauths = { \"${SOURCE_REGISTY}\" = { username = \"u\", password = \"p\" } }\n").unwrap_err();
        assert!(e.message.starts_with("unknown placeholder `${SOURCE_REGISTY}`"), "{}", e.message);
    }

    #[test]
    fn ecr_scenarios_get_an_aws_world() {
        let s = parse("description = \"d\"\n[target]\nregistry = \"ecr\"\n[aws]\nregion = \"eu-west-1\"\ncredentials = \"session\"\ntoken_ttl = \"1h\"\n").unwrap();
        let aws = s.aws.unwrap();
        assert_eq!(
            (aws.account.as_str(), aws.region.as_str(), aws.repositories.as_slice()),
            ("123456789012", "eu-west-1", ["app".to_string()].as_slice())
        );
        assert_eq!(aws.token_ttl, std::time::Duration::from_secs(3600));
        assert_eq!(aws.registry_host(), "123456789012.dkr.ecr.eu-west-1.amazonaws.com");
        let defaults = parse("description = \"d\"\n[target]\nregistry = \"ecr\"\n").unwrap();
        assert_eq!(defaults.aws.unwrap().region, "us-east-1");
        let e =
            parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[aws]\nregion = \"eu-west-1\"\n").unwrap_err();
        assert_eq!((e.line, e.message.as_str()), (4, "an [aws] table only applies with target.registry = \"ecr\""));
        let e =
            parse("description = \"d\"\n[target]\nregistry = \"ecr\"\n[aws]\ncredentials = \"root\"\n").unwrap_err();
        assert_eq!(e.message, "unknown variant `root`, expected one of `static`, `session`, `expired-session`");
    }

    #[test]
    fn vendor_scenarios_get_an_account() {
        let s = parse("description = \"d\"\n[target]\nregistry = \"ghcr\"\n[account]\nuser = \"octocat\"\nowner = \"Octo-Org\"\ncredential = \"read-only\"\n").unwrap();
        let account = s.account.unwrap();
        assert_eq!(
            (account.user.as_str(), account.owner(), account.credential),
            ("octocat", "Octo-Org", ko_matrix_emulators::bearer::CredentialKind::ReadOnly)
        );
        assert_eq!(
            parse("description = \"d\"\n[target]\nregistry = \"ghcr\"\n").unwrap().account.unwrap().owner(),
            "ko-matrix-bot"
        );
        let e = parse("description = \"d\"\n[target]\nregistry = \"basic\"\n[account]\nuser = \"u\"\n").unwrap_err();
        assert_eq!(
            (e.line, e.message.as_str()),
            (4, "an [account] table only applies with a vendor's target.registry (not anonymous, basic, token or ecr)")
        );
        let e = parse("description = \"d\"\n[target]\nregistry = \"ghcr\"\n[account]\ncredential = \"admin\"\n")
            .unwrap_err();
        assert_eq!(
            e.message,
            "unknown variant `admin`, expected one of `write`, `read-only`, `expired`, `revoked`, `wrong-audience`"
        );
    }

    #[test]
    fn only_keys_meant_for_the_cell_vouch() {
        let ids = |text: &str| parse(text).unwrap().stated_access_key_ids().into_iter().collect::<Vec<_>>();
        // In a comment (or a description), an id sets nothing.
        let commented = "# the host's AKIAONLYINACOMMENT01 must not be used\ndescription = \"not AKIAINTHEDESCRIPTION\"\n[target]\nregistry = \"ecr\"\n";
        assert!(ids(commented).is_empty(), "{:?}", ids(commented));
        let in_env = "description = \"d\"\n[target]\nregistry = \"ecr\"\n[env]\nAWS_ACCESS_KEY_ID = \"AKIAKOMATRIXUNKNOWN0\"\nAWS_REGION = \"${AWS_REGION}\"\n";
        assert_eq!(ids(in_env), ["AKIAKOMATRIXUNKNOWN0"]);
        // Written credentials: every profile's key, not a commented-out one, not a placeholder.
        let written = r#"description = "d"
[target]
registry = "ecr"
[files]
".aws/credentials" = "[default]\naws_access_key_id = AKIAKOMATRIXWRONG000\n# aws_access_key_id = AKIACOMMENTEDOUT0001\n[ci]\naws_access_key_id = ${AWS_ACCESS_KEY_ID}\n"
".aws/process.json" = "{\"Version\": 1, \"AccessKeyId\": \"AKIAFROMAPROCESS0001\", \"SecretAccessKey\": \"s\"}"
"notes.txt" = "AKIAJUSTMENTIONED001"
"#;
        assert_eq!(ids(written), ["AKIAFROMAPROCESS0001", "AKIAKOMATRIXWRONG000"]);
        // The repository's own: profile-named writes its wrong default key.
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let named = discover(&dir).unwrap().into_iter().find(|s| s.name == "ecr/profile-named").unwrap();
        assert_eq!(named.stated_access_key_ids().into_iter().collect::<Vec<_>>(), ["AKIAKOMATRIXWRONG000"]);
    }

    #[test]
    fn placeholders_expand() {
        let values = BTreeMap::from([("REGISTRY", "basic.ko-matrix.test".to_string()), ("USER", "pusher".to_string())]);
        assert_eq!(expand("${USER}@${REGISTRY}", &values), "pusher@basic.ko-matrix.test");
    }

    #[test]
    fn the_repository_scenarios_are_valid() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios");
        let scenarios = discover(&dir).unwrap();
        assert!(
            scenarios.iter().any(|s| s.name == "registry/anonymous"),
            "{:?}",
            scenarios.iter().map(|s| &s.name).collect::<Vec<_>>()
        );
    }
}
