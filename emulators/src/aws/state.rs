//! The AWS state one cell sees: its account, region, repositories, credentials, the
//! registry passwords GetAuthorizationToken minted, and the images pushed. Each cell gets
//! its own, so cells running at once cannot see each other's keys or images.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use serde::Deserialize;
use time::OffsetDateTime;

use crate::grants::{random_b64, Minted, Refusal};

use super::policy::Policy;

/// Which AWS credentials a scenario's cell is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CredentialKind {
    /// An IAM user's long-term access key (`AKIA…`).
    #[default]
    Static,
    /// Temporary credentials with a session token (`ASIA…`), valid for an hour: what
    /// aws-actions/configure-aws-credentials exports after OIDC.
    Session,
    /// Temporary credentials whose session ended an hour ago.
    ExpiredSession,
}

/// A scenario's `[aws]` table: the AWS world it needs.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AwsSpec {
    #[serde(default = "default_account")]
    pub account: String,
    #[serde(default = "default_region")]
    pub region: String,
    /// Repositories that exist before the cell runs.
    #[serde(default = "default_repositories")]
    pub repositories: Vec<String>,
    /// The repository the tool pushes to: `<registry host>/<push_to>`.
    #[serde(default = "default_push_to")]
    pub push_to: String,
    #[serde(default)]
    pub credentials: CredentialKind,
    /// Lifetime of registry passwords from GetAuthorizationToken (AWS: 12 hours).
    #[serde(default = "default_token_ttl", with = "humantime_serde_compat")]
    pub token_ttl: Duration,
    /// Actions the cell's own identity may perform (IAM-lite; default everything).
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
    /// A role the scenario's credentials lead to (AssumeRole, web identity, IMDS, ECS).
    pub role: Option<RoleSpec>,
    /// The web identity token the emulated OIDC issuer ([`super::oidc`]) mints for the cell.
    pub web_identity: Option<WebIdentity>,
    /// Serve the role's credentials from the instance metadata service.
    pub imds: Option<ImdsMode>,
    /// Serve the role's credentials from an ECS/EKS container credentials endpoint.
    #[serde(default)]
    pub container_credentials: bool,
    /// Seed the ECR credential helper's token cache (`~/.ecr/cache.json`) for the cell's
    /// access key with a still-valid or an expired registry token.
    pub ecr_cache: Option<CachedToken>,
    /// The tag mutability of the repositories that exist before the cell runs.
    #[serde(default)]
    pub tag_mutability: TagMutability,
    /// Tags those repositories already hold, each the run's base image (as pulled from the
    /// emulated `public.ecr.aws`): what an earlier push left there.
    #[serde(default)]
    pub images: Vec<String>,
    /// The repository policy of those repositories (its JSON text, as `SetRepositoryPolicy`
    /// takes it).
    #[serde(default, deserialize_with = "policy_text")]
    pub repository_policy: Option<Policy>,
    /// Repository creation templates (`CreateRepositoryCreationTemplate`).
    #[serde(default)]
    pub creation_templates: Vec<CreationTemplate>,
    /// Pull through cache rules (`CreatePullThroughCacheRule`).
    #[serde(default)]
    pub pull_through_cache: Vec<PullThroughRule>,
}

/// ECR's `imageTagMutability`. The `*_WITH_EXCLUSION` settings (with their tag filters) are
/// not modelled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum TagMutability {
    #[default]
    Mutable,
    Immutable,
}

impl TagMutability {
    pub fn as_str(self) -> &'static str {
        match self {
            TagMutability::Mutable => "MUTABLE",
            TagMutability::Immutable => "IMMUTABLE",
        }
    }
}

/// What a repository creation template applies to (`RCTAppliedFor`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AppliedFor {
    Replication,
    PullThroughCache,
    CreateOnPush,
}

impl AppliedFor {
    pub fn as_str(self) -> &'static str {
        match self {
            AppliedFor::Replication => "REPLICATION",
            AppliedFor::PullThroughCache => "PULL_THROUGH_CACHE",
            AppliedFor::CreateOnPush => "CREATE_ON_PUSH",
        }
    }
}

/// A repository creation template: the settings of repositories ECR creates itself below
/// `prefix` (`ROOT`: any repository no other template's prefix covers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreationTemplate {
    pub prefix: String,
    pub applied_for: Vec<AppliedFor>,
    #[serde(default)]
    pub image_tag_mutability: TagMutability,
    #[serde(default, deserialize_with = "policy_text")]
    pub repository_policy: Option<Policy>,
}

impl CreationTemplate {
    /// How closely the template covers `repository`: the length of its prefix, 0 for `ROOT`;
    /// `None` when it does not cover it.
    fn covers(&self, repository: &str) -> Option<usize> {
        let prefix = self.prefix.trim_end_matches('/');
        if prefix == "ROOT" {
            return Some(0);
        }
        repository.strip_prefix(prefix).is_some_and(|rest| rest.starts_with('/')).then_some(prefix.len())
    }
}

/// A pull through cache rule: repositories below `ecr_repository_prefix` cache the upstream
/// registry's repositories of the same name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PullThroughRule {
    pub ecr_repository_prefix: String,
    #[serde(deserialize_with = "held_upstream")]
    pub upstream_registry_url: String,
}

impl PullThroughRule {
    /// The upstream repository `repository` caches under this rule, if it is one of its.
    pub fn upstream_repository<'a>(&self, repository: &'a str) -> Option<&'a str> {
        match self.ecr_repository_prefix.trim_end_matches('/') {
            "ROOT" => Some(repository),
            prefix => repository.strip_prefix(prefix)?.strip_prefix('/').filter(|r| !r.is_empty()),
        }
    }
}

fn policy_text<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Policy>, D::Error> {
    let text = String::deserialize(d)?;
    Policy::parse(&text).map(Some).map_err(serde::de::Error::custom)
}

fn held_upstream<'de, D: serde::Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    let url = String::deserialize(d)?;
    match super::upstream::held(&url) {
        true => Ok(url),
        false => Err(serde::de::Error::custom(format!(
            "the emulated world holds images of `{}` only, not `{url}`",
            super::upstream::PUBLIC_ECR
        ))),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum CachedToken {
    Valid,
    Expired,
}

/// The cache keys `docker-credential-ecr-login` files an entry under for `access_key_id`:
/// `<region>-<checksum>-<registry id>`, with the checksum of the helper pinned by ko 0.15.x
/// (base64 of the key's bytes followed by the MD5 of nothing, a quirk of `hasher.Sum(data)`)
/// and of newer helpers (base64 of its SHA-256).
pub fn ecr_login_cache_keys(region: &str, access_key_id: &str, registry_id: &str) -> [String; 2] {
    use base64::Engine;
    use sha2::Digest;
    const MD5_OF_NOTHING: [u8; 16] =
        [0xd4, 0x1d, 0x8c, 0xd9, 0x8f, 0x00, 0xb2, 0x04, 0xe9, 0x80, 0x09, 0x98, 0xec, 0xf8, 0x42, 0x7e];
    let b64 = base64::engine::general_purpose::STANDARD;
    let mut legacy = access_key_id.as_bytes().to_vec();
    legacy.extend_from_slice(&MD5_OF_NOTHING);
    [
        format!("{region}-{}-{registry_id}", b64.encode(legacy)),
        format!("{region}-{}-{registry_id}", b64.encode(sha2::Sha256::digest(access_key_id.as_bytes()))),
    ]
}

/// What an empty `[aws]` table gives: account 123456789012 in us-east-1, a user key allowed
/// everything, and the repository `app`, which pushes go to.
impl Default for AwsSpec {
    fn default() -> AwsSpec {
        AwsSpec {
            account: default_account(),
            region: default_region(),
            repositories: default_repositories(),
            push_to: default_push_to(),
            credentials: CredentialKind::default(),
            token_ttl: default_token_ttl(),
            allow: default_allow(),
            role: None,
            web_identity: None,
            imds: None,
            container_credentials: false,
            ecr_cache: None,
            tag_mutability: TagMutability::default(),
            images: Vec::new(),
            repository_policy: None,
            creation_templates: Vec::new(),
            pull_through_cache: Vec::new(),
        }
    }
}

fn default_allow() -> Vec<String> {
    vec!["*".into()]
}

/// Who may assume a role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Trust {
    /// The cell's own IAM user (AssumeRole from a source profile).
    User,
    /// Tokens from the emulated OIDC issuer (AssumeRoleWithWebIdentity).
    Oidc,
    /// Nobody: every attempt is refused.
    Nobody,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleSpec {
    #[serde(default = "default_role_name")]
    pub name: String,
    pub trust: Trust,
    #[serde(default = "default_allow")]
    pub allow: Vec<String>,
}

fn default_role_name() -> String {
    "ko-pusher".into()
}

/// The web identity token a scenario's cell gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum WebIdentity {
    Valid,
    Expired,
    /// Minted for another audience than `sts.amazonaws.com`.
    WrongAudience,
}

/// How the instance metadata service behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum ImdsMode {
    /// IMDSv2: a session token is required.
    V2,
    /// Only IMDSv1: the token endpoint is not there.
    V1Only,
}

fn default_account() -> String {
    "123456789012".into()
}
fn default_region() -> String {
    "us-east-1".into()
}
fn default_repositories() -> Vec<String> {
    vec!["app".into()]
}
fn default_push_to() -> String {
    "app".into()
}
fn default_token_ttl() -> Duration {
    Duration::from_secs(12 * 3600)
}

mod humantime_serde_compat {
    use serde::{Deserialize, Deserializer};
    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| {
            serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write e.g. \"12h\" or \"90s\""))
        })
    }
}

impl AwsSpec {
    /// `<account>.dkr.ecr.<region>.amazonaws.com`: where a client of this identity pushes.
    pub fn registry_host(&self) -> String {
        format!("{}.dkr.ecr.{}.{}", self.account, self.region, super::dns_suffix(&self.region))
    }
    /// The run's base image (`…@<digest>`) as clients pull it through the first pull through
    /// cache rule: `<registry>/<prefix>/ko-matrix/base@<digest>` (the emulated
    /// `public.ecr.aws/ko-matrix/base` holds that image).
    pub fn pull_through_base(&self, base_image: &str) -> Option<String> {
        let rule = self.pull_through_cache.first()?;
        let (_, digest) = base_image.rsplit_once('@')?;
        let host = self.registry_host();
        let base = super::upstream::PUBLIC_BASE;
        Some(match rule.ecr_repository_prefix.trim_end_matches('/') {
            "ROOT" => format!("{host}/{base}@{digest}"),
            prefix => format!("{host}/{prefix}/{base}@{digest}"),
        })
    }

    pub fn api_host(&self) -> String {
        format!("api.ecr.{}.{}", self.region, super::dns_suffix(&self.region))
    }
}

/// An access key the emulator knows.
#[derive(Debug, Clone)]
pub struct AccessKey {
    pub id: String,
    pub secret: String,
    pub session_token: Option<String>,
    pub expires: Option<OffsetDateTime>,
    /// The principal the key acts as, for error messages.
    pub arn: String,
    pub account: String,
    /// What it may do (IAM-lite).
    pub allow: Vec<String>,
}

/// What a registry password minted by GetAuthorizationToken grants.
#[derive(Debug, Clone)]
pub struct RegistryPassword {
    pub account: String,
    pub region: String,
    /// Who asked for it, and what they may do: the registry front enforces it.
    pub arn: String,
    pub allow: Vec<String>,
}

/// An image pushed through the registry front.
#[derive(Debug, Clone)]
pub struct ImageRecord {
    pub digest: String,
    pub tags: BTreeSet<String>,
    pub media_type: String,
    pub size: u64,
    pub pushed_at: OffsetDateTime,
}

#[derive(Debug, Clone)]
pub struct Repository {
    pub created_at: OffsetDateTime,
    pub images: Vec<ImageRecord>,
    pub tag_mutability: TagMutability,
    pub policy: Option<Policy>,
}

impl Repository {
    pub fn new(tag_mutability: TagMutability, policy: Option<Policy>) -> Repository {
        Repository { created_at: OffsetDateTime::now_utc(), images: Vec::new(), tag_mutability, policy }
    }

    /// Remembers a pushed manifest for DescribeImages / ListImages / BatchGetImage; a tag
    /// moves to it from any image that held it.
    pub fn record(&mut self, digest: &str, tag: Option<&str>, media_type: &str, manifest: &[u8]) {
        let parsed: serde_json::Value = serde_json::from_slice(manifest).unwrap_or_default();
        let layers: u64 = parsed["layers"].as_array().map_or(0, |l| l.iter().filter_map(|d| d["size"].as_u64()).sum());
        let size =
            if layers > 0 { layers + parsed["config"]["size"].as_u64().unwrap_or(0) } else { manifest.len() as u64 };
        if let Some(tag) = tag {
            for image in self.images.iter_mut() {
                image.tags.remove(tag);
            }
        }
        match self.images.iter_mut().find(|i| i.digest == digest) {
            Some(image) => image.tags.extend(tag.map(str::to_string)),
            None => self.images.push(ImageRecord {
                digest: digest.to_string(),
                tags: tag.map(str::to_string).into_iter().collect::<BTreeSet<_>>(),
                media_type: media_type.to_string(),
                size,
                pushed_at: OffsetDateTime::now_utc(),
            }),
        }
    }

    /// Whether the repository holds `reference` (a tag or a digest).
    pub fn holds(&self, reference: &str) -> bool {
        self.images.iter().any(|i| i.digest == reference || i.tags.contains(reference))
    }
}

/// A template as created, with when.
#[derive(Debug, Clone)]
pub struct StoredTemplate {
    pub template: CreationTemplate,
    pub created_at: OffsetDateTime,
}

/// A pull through cache rule as created, with when.
#[derive(Debug, Clone)]
pub struct StoredRule {
    pub rule: PullThroughRule,
    pub created_at: OffsetDateTime,
}

pub struct AwsCell {
    pub spec: AwsSpec,
    /// Where this cell's repositories live in the backend registry (`cell-<n>`), so cells
    /// that push to the same repository name never meet.
    pub backend_prefix: String,
    /// The cell's own key (what its environment gets).
    pub key: AccessKey,
    keys: Mutex<HashMap<String, AccessKey>>,
    passwords: Minted<RegistryPassword>,
    pub repositories: Mutex<BTreeMap<String, Repository>>,
    pub templates: Mutex<Vec<StoredTemplate>>,
    pub pull_through_rules: Mutex<Vec<StoredRule>>,
    last_denial: Mutex<Option<String>>,
    /// The IMDSv2 session token (one per cell is enough: each cell is one "instance").
    imds_token: String,
    /// What `AWS_CONTAINER_AUTHORIZATION_TOKEN` must hold.
    pub container_token: String,
}

fn random_chars(alphabet: &[u8], n: usize) -> String {
    (0..n).map(|_| alphabet[rand::random_range(0..alphabet.len())] as char).collect()
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

impl AwsCell {
    pub fn new(spec: AwsSpec, backend_prefix: String) -> AwsCell {
        let now = OffsetDateTime::now_utc();
        let key = match spec.credentials {
            CredentialKind::Static => AccessKey {
                id: format!("AKIA{}", random_chars(UPPER_ALNUM, 16)),
                secret: random_b64(30),
                session_token: None,
                expires: None,
                arn: format!("arn:aws:iam::{}:user/ko-matrix-ci", spec.account),
                account: spec.account.clone(),
                allow: spec.allow.clone(),
            },
            kind => AccessKey {
                id: format!("ASIA{}", random_chars(UPPER_ALNUM, 16)),
                secret: random_b64(30),
                session_token: Some(random_b64(240)),
                expires: Some(if kind == CredentialKind::Session {
                    now + time::Duration::hours(1)
                } else {
                    now - time::Duration::hours(1)
                }),
                arn: format!("arn:aws:sts::{}:assumed-role/ko-matrix-ci/GitHubActions", spec.account),
                account: spec.account.clone(),
                allow: spec.allow.clone(),
            },
        };
        let repositories = spec
            .repositories
            .iter()
            .map(|r| (r.clone(), Repository::new(spec.tag_mutability, spec.repository_policy.clone())))
            .collect();
        let templates =
            spec.creation_templates.iter().map(|t| StoredTemplate { template: t.clone(), created_at: now }).collect();
        let rules = spec.pull_through_cache.iter().map(|r| StoredRule { rule: r.clone(), created_at: now }).collect();
        AwsCell {
            keys: Mutex::new(HashMap::from([(key.id.clone(), key.clone())])),
            key,
            spec,
            backend_prefix,
            passwords: Minted::default(),
            repositories: Mutex::new(repositories),
            templates: Mutex::new(templates),
            pull_through_rules: Mutex::new(rules),
            last_denial: Mutex::new(None),
            imds_token: random_b64(42),
            container_token: random_b64(30),
        }
    }

    /// The template that applies to a repository ECR creates itself for `purpose`: the one
    /// with the longest prefix covering it, else a `ROOT` one.
    pub fn template_for(&self, repository: &str, purpose: AppliedFor) -> Option<CreationTemplate> {
        let templates = self.templates.lock().expect("templates lock");
        let applying = templates.iter().filter(|t| t.template.applied_for.contains(&purpose));
        applying
            .filter_map(|t| Some((t.template.covers(repository)?, t)))
            .max_by_key(|(n, _)| *n)
            .map(|(_, t)| t.template.clone())
    }

    /// The pull through cache rule `repository` falls under, with the upstream repository.
    pub fn pull_through(&self, repository: &str) -> Option<(PullThroughRule, String)> {
        let rules = self.pull_through_rules.lock().expect("rules lock");
        rules.iter().find_map(|r| Some((r.rule.clone(), r.rule.upstream_repository(repository)?.to_string())))
    }

    pub fn key(&self, id: &str) -> Option<AccessKey> {
        self.keys.lock().expect("keys lock").get(id).cloned()
    }

    /// Issues temporary credentials for the scenario's role, session `session`, valid for
    /// `ttl`: what AssumeRole, web identity, IMDS and ECS hand out.
    pub(crate) fn issue_role_session(&self, session: &str, ttl: time::Duration) -> Option<AccessKey> {
        let role = self.spec.role.as_ref()?;
        let key = AccessKey {
            id: format!("ASIA{}", random_chars(UPPER_ALNUM, 16)),
            secret: random_b64(30),
            session_token: Some(random_b64(240)),
            expires: Some(OffsetDateTime::now_utc() + ttl),
            arn: format!("arn:aws:sts::{}:assumed-role/{}/{session}", self.spec.account, role.name),
            account: self.spec.account.clone(),
            allow: role.allow.clone(),
        };
        self.keys.lock().expect("keys lock").insert(key.id.clone(), key.clone());
        Some(key)
    }

    pub(crate) fn imds_token(&self) -> String {
        self.imds_token.clone()
    }

    pub fn role_arn(&self) -> Option<String> {
        self.spec.role.as_ref().map(|r| format!("arn:aws:iam::{}:role/{}", self.spec.account, r.name))
    }

    /// AWS's last refusal in this cell, for the cell's detail (ko may not show the body).
    pub(crate) fn record_denial(&self, message: String) {
        *self.last_denial.lock().expect("denial lock") = Some(message);
    }

    pub fn last_denial(&self) -> Option<String> {
        self.last_denial.lock().expect("denial lock").clone()
    }

    /// Mints a registry password for `account`/`region` valid for `ttl` (negative: already
    /// expired), acting as `key`. Standard base64 never contains `:`, which the AWS CLI
    /// cannot split.
    pub fn mint_password(
        &self,
        key: &AccessKey,
        account: &str,
        region: &str,
        ttl: time::Duration,
    ) -> (String, OffsetDateTime) {
        let grant = RegistryPassword {
            account: account.into(),
            region: region.into(),
            arn: key.arn.clone(),
            allow: key.allow.clone(),
        };
        self.passwords.mint(grant, 96, ttl)
    }

    /// A registry password for the cell's own key, as `aws ecr get-login-password` gets one
    /// (GetAuthorizationToken), valid for the spec's `token_ttl`.
    pub fn login_password(&self) -> String {
        let ttl = time::Duration::try_from(self.spec.token_ttl).unwrap_or(time::Duration::hours(12));
        self.mint_password(&self.key, &self.spec.account, &self.spec.region, ttl).0
    }

    /// What `password` was minted for, expired or not.
    pub fn password(&self, password: &str) -> Option<RegistryPassword> {
        self.passwords.get(password).map(|issued| issued.grant)
    }

    /// What `password` grants now, or why it grants nothing.
    pub(crate) fn check_password(&self, password: &str) -> Result<RegistryPassword, Refusal> {
        self.passwords.check(password)
    }

    /// The lifetime of a new registry password for `key`: the scenario's TTL, capped by what
    /// remains of temporary credentials (as AWS does).
    pub(crate) fn token_lifetime(&self, key: &AccessKey) -> time::Duration {
        let ttl = time::Duration::try_from(self.spec.token_ttl).unwrap_or(time::Duration::hours(12));
        match key.expires {
            Some(expires) => ttl.min(expires - OffsetDateTime::now_utc()),
            None => ttl,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ecr_login_cache_keys_match_both_helper_generations() {
        assert_eq!(
            ecr_login_cache_keys("us-east-1", "AKIDEXAMPLE", "123456789012"),
            [
                "us-east-1-QUtJREVYQU1QTEXUHYzZjwCyBOmACZjs+EJ+-123456789012".to_string(),
                "us-east-1-eomOUNvVuDBRScNARtFZ99ArXR/gIdTeZAhC04NftUk=-123456789012".to_string(),
            ]
        );
    }

    #[test]
    fn the_default_spec_is_an_empty_aws_table() {
        let empty: AwsSpec = toml::from_str("").unwrap();
        assert_eq!(format!("{:?}", AwsSpec::default()), format!("{empty:?}"));
    }

    #[test]
    fn session_credentials_cap_the_token_lifetime() {
        let spec: AwsSpec = toml::from_str("credentials = \"session\"").unwrap();
        let cell = AwsCell::new(spec, "cell-1".into());
        let lifetime = cell.token_lifetime(&cell.key);
        assert!(lifetime <= time::Duration::hours(1) && lifetime > time::Duration::minutes(59), "{lifetime}");
    }
}
