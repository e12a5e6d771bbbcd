//! oras (oras.land/oras): pushes a file as an OCI artifact, with its own handling of the
//! docker config and credential helpers.

use super::{PushContext, ReleaseLayout, Tool};
use crate::outcome::FailClass;
use crate::payload::Payload;
use crate::provision::GoTool;

pub(crate) struct Oras;

const GO: GoTool = GoTool {
    name: "oras",
    module: "oras.land/oras",
    package: "oras.land/oras/cmd/oras",
    // oras keeps its version in source; builds outside its release pipeline add
    // `+unreleased`, which the version check ignores as build metadata.
    version_var: None,
    version_args: &["version"],
};

const RELEASE: ReleaseLayout = ReleaseLayout::goreleaser(
    "oras-project/oras",
    "oras_{version}_{os}_{arch}.tar.gz",
    "oras_{version}_checksums.txt",
    "oras",
);

impl Tool for Oras {
    fn go(&self) -> &'static GoTool {
        &GO
    }

    fn release(&self) -> &'static ReleaseLayout {
        &RELEASE
    }

    /// `oras push <repository>:latest artifact.txt:<media type>`: oras prints `Digest: sha256:…`.
    fn push_args(&self, push: &PushContext) -> Vec<String> {
        vec![
            "push".into(),
            format!("{}:latest", push.repository),
            format!("{}:{}", Payload::ARTIFACT_FILE, Payload::ARTIFACT_MEDIA_TYPE),
        ]
    }

    /// oras's own words for a push without credentials: `credential required for basic auth`
    /// (v1.1), `basic credential not found` (v1.2 and later).
    /// `--plain-http`, a remote option of `oras push` and `oras login` (cmd/oras/internal/option/remote.go).
    fn insecure_switch(&self, command: &str) -> &'static [&'static str] {
        match command {
            "push" | "login" => &["--plain-http"],
            _ => &[],
        }
    }

    fn failure_patterns(&self) -> &'static [(FailClass, &'static [&'static str])] {
        &[(FailClass::Unauthorized, &["basic credential not found", "credential required for basic auth"])]
    }

    fn pushed_digest(&self, output: &str, _repository: &str) -> Option<String> {
        output
            .lines()
            .rev()
            .find_map(|l| l.trim().strip_prefix("Digest:"))
            .map(|d| d.trim().to_string())
            .filter(|d| d.starts_with("sha256:"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_digest_line() {
        let output = "Uploading 1f2a artifact.txt\nPushed [registry] reg.test/app:latest\nArtifactType: application/vnd.unknown.artifact.v1\nDigest: sha256:abc\n";
        assert_eq!(Oras.pushed_digest(output, "reg.test/app"), Some("sha256:abc".into()));
        assert_eq!(Oras.pushed_digest("Error: unauthorized\n", "reg.test/app"), None);
    }
}
