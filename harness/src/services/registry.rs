//! The CNCF distribution registry, as a definition: its config and the files it needs.

use std::collections::BTreeMap;

use serde_json::json;

use crate::provision::GoTool;
use crate::tool::release::{Checksums, Packaging};
use crate::tool::ReleaseLayout;
use ko_matrix_emulators::pki::Issued;

/// How distribution builds from the module proxy (see [`super::binaries`] for when).
pub const REGISTRY_TOOL: GoTool = GoTool {
    name: "registry",
    module: "github.com/distribution/distribution/v3",
    package: "github.com/distribution/distribution/v3/cmd/registry",
    version_var: Some("github.com/distribution/distribution/v3/version.version"),
    version_args: &["--version"],
};

/// distribution's GitHub releases: `registry_3.0.0_linux_amd64.tar.gz`, its digest alone in
/// `registry_3.0.0_linux_amd64.tar.gz.sha256` (as its Dockerfile's releaser stage writes them).
pub const REGISTRY_RELEASE: ReleaseLayout = ReleaseLayout {
    github_repo: "distribution/distribution",
    download_base: None,
    dir: "v{version}",
    asset: "registry_{version}_{os}_{arch}.tar.gz",
    checksums: Checksums::Sidecar,
    packaging: Packaging::TarGz,
    binary: "registry",
};

/// The pinned container image for the docker runtime.
#[cfg(feature = "docker")]
pub(crate) const REGISTRY_IMAGE: (&str, &str) = ("registry", "2.8.3");

/// How clients authenticate to a registry.
#[derive(Debug, Clone)]
pub enum RegistryAuth {
    Anonymous,
    /// Basic auth against an htpasswd file (bcrypt), served over TLS.
    Htpasswd {
        users: BTreeMap<String, String>,
    },
    /// Docker-Hub-style bearer tokens from a token server; `signer` is the certificate whose
    /// key signs tokens, `root_pem` the CA that vouches for it.
    Token {
        realm: String,
        service: String,
        issuer: String,
        root_pem: String,
    },
}

/// Everything that defines one registry instance, independent of how it runs.
#[derive(Clone)]
pub struct RegistrySpec {
    pub auth: RegistryAuth,
    /// Serve TLS with this certificate (from the run's CA).
    pub tls: Option<Issued>,
}

/// A file the registry reads, by name inside its files dir.
pub struct RegistryFile {
    pub name: &'static str,
    pub contents: Vec<u8>,
}

impl RegistrySpec {
    /// The files the config refers to (relative names, placed in one dir by the runtime).
    pub fn files(&self) -> Result<Vec<RegistryFile>, bcrypt::BcryptError> {
        let mut files = Vec::new();
        if let Some(tls) = &self.tls {
            files.push(RegistryFile { name: "tls.crt", contents: tls.cert_pem.clone().into_bytes() });
            files.push(RegistryFile { name: "tls.key", contents: tls.key_pem.clone().into_bytes() });
        }
        match &self.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Htpasswd { users } => {
                let mut htpasswd = String::new();
                for (user, password) in users {
                    // Cost 4: the lowest bcrypt allows; these are throwaway test passwords.
                    htpasswd.push_str(&format!("{user}:{}\n", bcrypt::hash(password, 4)?));
                }
                files.push(RegistryFile { name: "htpasswd", contents: htpasswd.into_bytes() });
            }
            RegistryAuth::Token { root_pem, .. } => {
                files.push(RegistryFile { name: "token-root.crt", contents: root_pem.clone().into_bytes() });
            }
        }
        Ok(files)
    }

    /// The distribution config (JSON, which is YAML) for a registry listening on `listen`,
    /// storing under `storage`, reading its files from `files_dir`.
    pub fn config(&self, listen: &str, storage: &str, files_dir: &str) -> serde_json::Value {
        let mut http = json!({
            "addr": listen,
            "secret": "ko-matrix-run-local-secret",
            "headers": { "X-Content-Type-Options": ["nosniff"] },
        });
        if self.tls.is_some() {
            http["tls"] =
                json!({ "certificate": format!("{files_dir}/tls.crt"), "key": format!("{files_dir}/tls.key") });
        }
        let mut config = json!({
            "version": "0.1",
            "log": { "level": "info", "formatter": "text" },
            "storage": {
                "filesystem": { "rootdirectory": storage },
                "delete": { "enabled": true },
                "maintenance": { "uploadpurging": { "enabled": false } },
            },
            "http": http,
        });
        match &self.auth {
            RegistryAuth::Anonymous => {}
            RegistryAuth::Htpasswd { .. } => {
                config["auth"] =
                    json!({ "htpasswd": { "realm": "ko-matrix", "path": format!("{files_dir}/htpasswd") } });
            }
            RegistryAuth::Token { realm, service, issuer, .. } => {
                config["auth"] = json!({ "token": {
                    "realm": realm, "service": service, "issuer": issuer,
                    "rootcertbundle": format!("{files_dir}/token-root.crt"),
                }});
            }
        }
        config
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn token_config_points_at_the_token_server() {
        let spec = RegistrySpec {
            auth: RegistryAuth::Token {
                realm: "https://auth.test/token".into(),
                service: "reg".into(),
                issuer: "iss".into(),
                root_pem: "PEM".into(),
            },
            tls: None,
        };
        let config = spec.config("127.0.0.1:5000", "/s", "/f");
        assert_eq!(config["auth"]["token"]["realm"], "https://auth.test/token");
        assert_eq!(config["auth"]["token"]["rootcertbundle"], "/f/token-root.crt");
        assert!(config["http"].get("tls").is_none());
        assert_eq!(spec.files().unwrap()[0].name, "token-root.crt");
    }

    #[test]
    fn htpasswd_entries_are_bcrypt() {
        let users = BTreeMap::from([("alice".to_string(), "pw".to_string())]);
        let spec = RegistrySpec { auth: RegistryAuth::Htpasswd { users }, tls: None };
        let files = spec.files().unwrap();
        let line = String::from_utf8(files[0].contents.clone()).unwrap();
        let (user, hash) = line.trim().split_once(':').unwrap();
        assert_eq!(user, "alice");
        assert!(bcrypt::verify("pw", hash).unwrap());
    }
}
