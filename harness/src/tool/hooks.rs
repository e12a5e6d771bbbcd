//! What a tool definition cannot say as data: a named hook adds it to the cell's preparation.

use serde::Deserialize;

use super::{Prepared, PushContext};

/// A hook a definition names with `hook = "<name>"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Hook {
    /// ko builds the app with Go (offline, from the shared caches) onto the harness's base
    /// image, and pushes to `KO_DOCKER_REPO`.
    Ko,
}

impl Hook {
    /// The payload the hook works on.
    pub(crate) fn needs(self) -> super::PayloadKind {
        match self {
            Hook::Ko => super::PayloadKind::App,
        }
    }

    pub(crate) fn prepare(self, push: &PushContext, prepared: &mut Prepared) {
        match self {
            Hook::Ko => {
                let config_dir = push.cell_dir.join("ko-config");
                let go = &push.payload.go;
                let env = [
                    ("KO_DOCKER_REPO", push.repository.clone()),
                    ("KO_CONFIG_PATH", config_dir.display().to_string()),
                    ("GOCACHE", go.gocache.display().to_string()),
                    ("GOMODCACHE", go.gomodcache.display().to_string()),
                    ("GOTOOLCHAIN", "local".into()),
                    ("GOPROXY", "off".into()),
                ];
                prepared.env.extend(env.into_iter().map(|(k, v)| (k.to_string(), v)));
                prepared
                    .files
                    .push((config_dir.join(".ko.yaml"), format!("defaultBaseImage: {}\n", push.payload.base_image)));
                prepared.path.push(go.bin_dir.clone());
            }
        }
    }
}
