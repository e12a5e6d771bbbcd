//! crane (go-containerregistry's command line): pushes a prebuilt image tarball with
//! go-containerregistry's default keychain (docker config, credential helpers, podman's
//! auth file). It has no ECR helper of its own: next to ko, that is the contrast.

use super::{digest_after_reference, PushContext, ReleaseLayout, Tool};
use crate::payload::Payload;
use crate::provision::GoTool;

pub(crate) struct Crane;

const GO: GoTool = GoTool {
    name: "crane",
    module: "github.com/google/go-containerregistry",
    package: "github.com/google/go-containerregistry/cmd/crane",
    version_var: Some("github.com/google/go-containerregistry/cmd/crane/cmd.Version"),
    version_args: &["version"],
};

const RELEASE: ReleaseLayout = ReleaseLayout::goreleaser(
    "google/go-containerregistry",
    "go-containerregistry_{Os}_{Arch}.tar.gz",
    "checksums.txt",
    "crane",
);

impl Tool for Crane {
    fn go(&self) -> &'static GoTool {
        &GO
    }

    fn release(&self) -> &'static ReleaseLayout {
        &RELEASE
    }

    /// `crane push image.tar <repository>`: the tag defaults to `latest`; crane prints the
    /// pushed reference by digest.
    fn push_args(&self, push: &PushContext) -> Vec<String> {
        vec!["push".into(), Payload::IMAGE_TARBALL.into(), push.repository.clone()]
    }

    fn subcommand(&self, word: &str) -> Vec<String> {
        match word {
            "login" | "logout" => vec!["auth".into(), word.into()],
            _ => vec![word.into()],
        }
    }

    /// crane's root command's persistent `--insecure` (cmd/crane/cmd/root.go), for every subcommand.
    fn insecure_switch(&self, _command: &str) -> &'static [&'static str] {
        &["--insecure"]
    }

    fn pushed_digest(&self, output: &str, repository: &str) -> Option<String> {
        digest_after_reference(output, repository)
    }
}
