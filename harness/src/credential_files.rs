//! The credential files a cell gets, rendered from its scenario and placeholder values without touching disk, so each layout is pinned by a test.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use base64::Engine;
use time::OffsetDateTime;

use crate::scenario::{expand, Credential, DockerConfig, DockerConfigLocation, Podman, PodmanFile};
use ko_matrix_emulators::aws::state::{ecr_login_cache_keys, AwsSpec};

/// The `auth` value a docker config `auths` entry carries for `credential`.
pub(crate) fn basic_auth_value(credential: &Credential) -> String {
    base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", credential.username, credential.password))
}

/// The cell's HOME, relative to the cell's directory: where tools look for their defaults.
pub const HOME: &str = "home";

/// The credential helper's store, relative to the cell's directory; the helper logs its calls beside it.
pub(crate) const HELPER_STORE: &str = "helper-store.json";

/// A file for a cell, relative to the cell's directory, so renderers stay independent of where cells live.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CellFile {
    pub path: PathBuf,
    pub contents: String,
    /// The variable tools need to find the file (name, path relative to the cell's directory).
    pub env: Option<(&'static str, PathBuf)>,
    /// What the contents hold that logs and reports must not show.
    pub secrets: Vec<String>,
}

/// A registry token as GetAuthorizationToken minted it, for seeding the ECR helper's cache.
#[derive(Debug, Clone)]
pub(crate) struct EcrToken {
    pub password: String,
    pub requested: OffsetDateTime,
    pub expires: OffsetDateTime,
}

/// Docker's `config.json`, in `$HOME/.docker` or in the directory `DOCKER_CONFIG` names; empty sections are left out as docker leaves them out.
pub(crate) fn docker_config(config: &DockerConfig, values: &BTreeMap<&str, String>) -> CellFile {
    let (dir, env) = match config.location {
        DockerConfigLocation::Home => (Path::new(HOME).join(".docker"), None),
        DockerConfigLocation::Elsewhere => {
            (PathBuf::from("ci-docker-config"), Some(("DOCKER_CONFIG", PathBuf::from("ci-docker-config"))))
        }
    };
    let mut json = serde_json::json!({});
    let mut secrets = Vec::new();
    if !config.auths.is_empty() {
        let (auths, auth_secrets) = auths_json(&config.auths, values);
        json["auths"] = auths;
        secrets = auth_secrets;
    }
    if let Some(store) = &config.creds_store {
        json["credsStore"] = expand(store, values).into();
    }
    if !config.cred_helpers.is_empty() {
        let helpers: serde_json::Map<String, serde_json::Value> =
            config.cred_helpers.iter().map(|(h, v)| (expand(h, values), expand(v, values).into())).collect();
        json["credHelpers"] = helpers.into();
    }
    CellFile { path: dir.join("config.json"), contents: pretty(&json), env, secrets }
}

/// The store the harness's credential helper serves (`{ server: { Username, Secret } }`); none when the scenario gives the helper nothing.
pub(crate) fn helper_store(
    entries: &BTreeMap<String, Credential>,
    values: &BTreeMap<&str, String>,
) -> Option<CellFile> {
    if entries.is_empty() {
        return None;
    }
    let mut secrets = Vec::new();
    let store: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(server, c)| {
            let (c, secret) = expand_credential(c, values);
            secrets.extend(secret.then(|| c.password.clone()));
            (expand(server, values), serde_json::json!({ "Username": c.username, "Secret": c.password }))
        })
        .collect();
    Some(CellFile { path: HELPER_STORE.into(), contents: pretty(&store.into()), env: None, secrets })
}

/// A containers `auth.json` (podman, buildah, skopeo), where `podman.file` says: named by
/// `REGISTRY_AUTH_FILE`, under `XDG_RUNTIME_DIR` or `XDG_CONFIG_HOME`, or in `~/.config`.
pub(crate) fn podman_auth(podman: &Podman, values: &BTreeMap<&str, String>) -> CellFile {
    let (path, env) = match podman.file {
        PodmanFile::RegistryAuthFile => {
            (PathBuf::from("podman-auth.json"), Some(("REGISTRY_AUTH_FILE", PathBuf::from("podman-auth.json"))))
        }
        PodmanFile::XdgRuntime => {
            (PathBuf::from("run-user/containers/auth.json"), Some(("XDG_RUNTIME_DIR", PathBuf::from("run-user"))))
        }
        PodmanFile::XdgConfig => {
            (PathBuf::from("xdg-config/containers/auth.json"), Some(("XDG_CONFIG_HOME", PathBuf::from("xdg-config"))))
        }
        PodmanFile::HomeConfig => (Path::new(HOME).join(".config/containers/auth.json"), None),
    };
    let (auths, secrets) = auths_json(&podman.auths, values);
    CellFile { path, contents: pretty(&serde_json::json!({ "auths": auths })), env, secrets }
}

/// `~/.ecr/cache.json` as `docker-credential-ecr-login` keeps it: `token` filed under both helper generations' keys for `access_key_id`.
pub(crate) fn ecr_login_cache(spec: &AwsSpec, access_key_id: &str, token: &EcrToken) -> CellFile {
    let rfc3339 = |t: OffsetDateTime| t.format(&time::format_description::well_known::Rfc3339).expect("UTC formats");
    let authorization = basic_auth_value(&Credential { username: "AWS".into(), password: token.password.clone() });
    let entry = serde_json::json!({
        "AuthorizationToken": authorization,
        "RequestedAt": rfc3339(token.requested),
        "ExpiresAt": rfc3339(token.expires),
        "ProxyEndpoint": format!("https://{}", spec.registry_host()),
        "Service": "ecr",
    });
    let registries: serde_json::Map<String, serde_json::Value> =
        ecr_login_cache_keys(&spec.region, access_key_id, &spec.account)
            .into_iter()
            .map(|k| (k, entry.clone()))
            .collect();
    CellFile {
        path: Path::new(HOME).join(".ecr/cache.json"),
        contents: pretty(&serde_json::json!({ "Registries": registries, "Version": "1.0" })),
        env: None,
        secrets: vec![token.password.clone(), authorization],
    }
}

/// The `auths` map docker and podman share (`{ host: { auth: base64(user:password) } }`) and its secrets.
fn auths_json(
    entries: &BTreeMap<String, Credential>,
    values: &BTreeMap<&str, String>,
) -> (serde_json::Value, Vec<String>) {
    let mut secrets = Vec::new();
    let map: serde_json::Map<String, serde_json::Value> = entries
        .iter()
        .map(|(host, c)| {
            let (c, secret) = expand_credential(c, values);
            let auth = basic_auth_value(&c);
            secrets.extend(secret.then(|| auth.clone()));
            (expand(host, values), serde_json::json!({ "auth": auth }))
        })
        .collect();
    (map.into(), secrets)
}

/// The credential with its placeholders filled, and whether its password came from the cell
/// (a secret) rather than from the scenario's text (a deliberate wrong guess, kept visible).
fn expand_credential(c: &Credential, values: &BTreeMap<&str, String>) -> (Credential, bool) {
    let expanded = Credential { username: expand(&c.username, values), password: expand(&c.password, values) };
    let secret = expanded.password != c.password;
    (expanded, secret)
}

/// Pretty JSON, so the cell's log shows each file readably.
fn pretty(json: &serde_json::Value) -> String {
    serde_json::to_string_pretty(json).expect("json serialises")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<&'static str, String> {
        BTreeMap::from([
            ("REGISTRY", "basic.ko-matrix.test".to_string()),
            ("USER", "pusher".to_string()),
            ("PASSWORD", "hunter22".to_string()),
        ])
    }

    fn file(path: &str, env: Option<(&'static str, &str)>, contents: &str, secrets: &[&str]) -> CellFile {
        CellFile {
            path: path.into(),
            contents: contents.to_string(),
            env: env.map(|(name, path)| (name, PathBuf::from(path))),
            secrets: secrets.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn docker_config_layouts() {
        let cases = [
            (
                "auths in HOME, from placeholders",
                r#"auths = { "${REGISTRY}" = { username = "${USER}", password = "${PASSWORD}" } }"#,
                file(
                    "home/.docker/config.json",
                    None,
                    "{\n  \"auths\": {\n    \"basic.ko-matrix.test\": {\n      \"auth\": \"cHVzaGVyOmh1bnRlcjIy\"\n    }\n  }\n}",
                    &["cHVzaGVyOmh1bnRlcjIy"],
                ),
            ),
            (
                "elsewhere via DOCKER_CONFIG, a literal wrong password stays visible",
                r#"location = "elsewhere"
auths = { "${REGISTRY}" = { username = "${USER}", password = "not-the-password" } }"#,
                file(
                    "ci-docker-config/config.json",
                    Some(("DOCKER_CONFIG", "ci-docker-config")),
                    "{\n  \"auths\": {\n    \"basic.ko-matrix.test\": {\n      \"auth\": \"cHVzaGVyOm5vdC10aGUtcGFzc3dvcmQ=\"\n    }\n  }\n}",
                    &[],
                ),
            ),
            (
                "credsStore and credHelpers expanded, the empty auths left out",
                r#"credsStore = "ko-matrix"
credHelpers = { "${REGISTRY}" = "ecr-login", "other.example" = "ko-matrix" }"#,
                file(
                    "home/.docker/config.json",
                    None,
                    "{\n  \"credHelpers\": {\n    \"basic.ko-matrix.test\": \"ecr-login\",\n    \"other.example\": \"ko-matrix\"\n  },\n  \"credsStore\": \"ko-matrix\"\n}",
                    &[],
                ),
            ),
            ("nothing at all", "", file("home/.docker/config.json", None, "{}", &[])),
        ];
        for (case, toml_text, expected) in cases {
            let config: DockerConfig = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(docker_config(&config, &values()), expected, "{case}");
        }
    }

    #[test]
    fn helper_store_layouts() {
        let cases = [
            ("no entries, no file", "", None),
            (
                "an entry from placeholders",
                r#""${REGISTRY}" = { username = "${USER}", password = "${PASSWORD}" }"#,
                Some(file("helper-store.json", None, "{\n  \"basic.ko-matrix.test\": {\n    \"Secret\": \"hunter22\",\n    \"Username\": \"pusher\"\n  }\n}", &["hunter22"])),
            ),
            (
                "a literal password stays visible",
                r#""other.example" = { username = "someone", password = "guess" }"#,
                Some(file("helper-store.json", None, "{\n  \"other.example\": {\n    \"Secret\": \"guess\",\n    \"Username\": \"someone\"\n  }\n}", &[])),
            ),
        ];
        for (case, toml_text, expected) in cases {
            let entries: BTreeMap<String, Credential> =
                toml::from_str(toml_text).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(helper_store(&entries, &values()), expected, "{case}");
        }
    }

    #[test]
    fn podman_auth_layouts() {
        let cases = [
            (
                "REGISTRY_AUTH_FILE",
                r#"file = "registry-auth-file"
auths = { "${REGISTRY}" = { username = "someone", password = "${PASSWORD}" } }"#,
                file(
                    "podman-auth.json",
                    Some(("REGISTRY_AUTH_FILE", "podman-auth.json")),
                    "{\n  \"auths\": {\n    \"basic.ko-matrix.test\": {\n      \"auth\": \"c29tZW9uZTpodW50ZXIyMg==\"\n    }\n  }\n}",
                    &["c29tZW9uZTpodW50ZXIyMg=="],
                ),
            ),
            (
                "XDG_RUNTIME_DIR, an empty auths map kept",
                r#"file = "xdg-runtime"
auths = {}"#,
                file("run-user/containers/auth.json", Some(("XDG_RUNTIME_DIR", "run-user")), "{\n  \"auths\": {}\n}", &[]),
            ),
            (
                "XDG_CONFIG_HOME",
                r#"file = "xdg-config"
auths = {}"#,
                file("xdg-config/containers/auth.json", Some(("XDG_CONFIG_HOME", "xdg-config")), "{\n  \"auths\": {}\n}", &[]),
            ),
            ("~/.config, no variable", "file = \"home-config\"\nauths = {}", file("home/.config/containers/auth.json", None, "{\n  \"auths\": {}\n}", &[])),
        ];
        for (case, toml_text, expected) in cases {
            let podman: Podman = toml::from_str(toml_text).unwrap_or_else(|e| panic!("{case}: {e}"));
            assert_eq!(podman_auth(&podman, &values()), expected, "{case}");
        }
    }

    #[test]
    fn ecr_login_cache_layouts() {
        let spec: AwsSpec = toml::from_str("").unwrap();
        let at =
            |rfc3339: &str| OffsetDateTime::parse(rfc3339, &time::format_description::well_known::Rfc3339).unwrap();
        let entry = |requested: &str, expires: &str| {
            format!(
                "{{\n      \"AuthorizationToken\": \"QVdTOnMzY3IzdC1yZWdpc3RyeS1wYXNzd29yZA==\",\n      \"ExpiresAt\": \"{expires}\",\n      \"ProxyEndpoint\": \"https://123456789012.dkr.ecr.us-east-1.amazonaws.com\",\n      \"RequestedAt\": \"{requested}\",\n      \"Service\": \"ecr\"\n    }}"
            )
        };
        let cache = |requested: &str, expires: &str| {
            format!(
                "{{\n  \"Registries\": {{\n    \"us-east-1-QUtJREVYQU1QTEXUHYzZjwCyBOmACZjs+EJ+-123456789012\": {entry},\n    \"us-east-1-eomOUNvVuDBRScNARtFZ99ArXR/gIdTeZAhC04NftUk=-123456789012\": {entry}\n  }},\n  \"Version\": \"1.0\"\n}}",
                entry = entry(requested, expires)
            )
        };
        let cases = [
            ("valid for 12 hours", "2024-05-01T12:00:00Z", "2024-05-02T00:00:00Z"),
            ("expired an hour ago", "2024-04-30T23:00:00Z", "2024-05-01T11:00:00Z"),
        ];
        for (case, requested, expires) in cases {
            let token = EcrToken {
                password: "s3cr3t-registry-password".into(),
                requested: at(requested),
                expires: at(expires),
            };
            let expected = file(
                "home/.ecr/cache.json",
                None,
                &cache(requested, expires),
                &["s3cr3t-registry-password", "QVdTOnMzY3IzdC1yZWdpc3RyeS1wYXNzd29yZA=="],
            );
            assert_eq!(ecr_login_cache(&spec, "AKIDEXAMPLE", &token), expected, "{case}");
        }
    }
}
