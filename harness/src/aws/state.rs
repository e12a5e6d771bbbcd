//! The AWS state one cell sees: its account, region, repositories, credentials, the
//! registry passwords GetAuthorizationToken minted, and the images pushed. Each cell gets
//! its own, so cells running at once cannot see each other's keys or images.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Mutex;
use std::time::Duration;

use base64::Engine;
use serde::Deserialize;
use time::OffsetDateTime;

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
    /// The repository ko pushes to (`KO_DOCKER_REPO` = `<registry host>/<push_to>`).
    #[serde(default = "default_push_to")]
    pub push_to: String,
    #[serde(default)]
    pub credentials: CredentialKind,
    /// Lifetime of registry passwords from GetAuthorizationToken (AWS: 12 hours).
    #[serde(default = "default_token_ttl", with = "humantime_serde_compat")]
    pub token_ttl: Duration,
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
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<std::time::Duration, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map_err(|e| serde::de::Error::custom(format!("`{text}` is not a duration ({e}); write e.g. \"12h\" or \"90s\"")))
    }
}

impl AwsSpec {
    pub fn registry_host(&self) -> String {
        format!("{}.dkr.ecr.{}.amazonaws.com", self.account, self.region)
    }
    pub fn api_host(&self) -> String {
        format!("api.ecr.{}.amazonaws.com", self.region)
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
}

/// A registry password minted by GetAuthorizationToken.
#[derive(Debug, Clone)]
pub struct RegistryPassword {
    pub account: String,
    pub region: String,
    pub expires: OffsetDateTime,
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
}

pub struct AwsCell {
    pub spec: AwsSpec,
    /// Where this cell's repositories live in the backend registry (`cell-<n>`), so cells
    /// that push to the same repository name never meet.
    pub backend_prefix: String,
    /// The cell's own key (what its environment gets).
    pub key: AccessKey,
    keys: Mutex<HashMap<String, AccessKey>>,
    passwords: Mutex<HashMap<String, RegistryPassword>>,
    pub repositories: Mutex<BTreeMap<String, Repository>>,
}

fn random_chars(alphabet: &[u8], n: usize) -> String {
    (0..n).map(|_| alphabet[rand::random_range(0..alphabet.len())] as char).collect()
}

const UPPER_ALNUM: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZ234567";

fn random_b64(bytes: usize) -> String {
    let raw: Vec<u8> = (0..bytes).map(|_| rand::random::<u8>()).collect();
    base64::engine::general_purpose::STANDARD.encode(raw)
}

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
            },
            kind => AccessKey {
                id: format!("ASIA{}", random_chars(UPPER_ALNUM, 16)),
                secret: random_b64(30),
                session_token: Some(random_b64(240)),
                expires: Some(if kind == CredentialKind::Session { now + time::Duration::hours(1) } else { now - time::Duration::hours(1) }),
                arn: format!("arn:aws:sts::{}:assumed-role/ko-matrix-ci/GitHubActions", spec.account),
                account: spec.account.clone(),
            },
        };
        let repositories = spec.repositories.iter().map(|r| (r.clone(), Repository { created_at: now, images: Vec::new() })).collect();
        AwsCell {
            keys: Mutex::new(HashMap::from([(key.id.clone(), key.clone())])),
            key,
            spec,
            backend_prefix,
            passwords: Mutex::new(HashMap::new()),
            repositories: Mutex::new(repositories),
        }
    }

    pub fn key(&self, id: &str) -> Option<AccessKey> {
        self.keys.lock().expect("keys lock").get(id).cloned()
    }

    /// Mints a registry password for `account`/`region` valid for `ttl` (negative: already
    /// expired). Standard base64 never contains `:`, which the AWS CLI cannot split.
    pub fn mint_password(&self, account: &str, region: &str, ttl: time::Duration) -> (String, OffsetDateTime) {
        let password = random_b64(96);
        let expires = OffsetDateTime::now_utc() + ttl;
        let entry = RegistryPassword { account: account.into(), region: region.into(), expires };
        self.passwords.lock().expect("passwords lock").insert(password.clone(), entry);
        (password, expires)
    }

    pub fn password(&self, password: &str) -> Option<RegistryPassword> {
        self.passwords.lock().expect("passwords lock").get(password).cloned()
    }

    /// The lifetime of a new registry password for `key`: the scenario's TTL, capped by what
    /// remains of temporary credentials (as AWS does).
    pub fn token_lifetime(&self, key: &AccessKey) -> time::Duration {
        let ttl = time::Duration::try_from(self.spec.token_ttl).unwrap_or(time::Duration::hours(12));
        match key.expires {
            Some(expires) => ttl.min(expires - OffsetDateTime::now_utc()),
            None => ttl,
        }
    }
}
