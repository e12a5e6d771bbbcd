//! ko (github.com/google/ko): builds the Go app into an image on a base image it pulls, and
//! pushes it with its own credential chain (the ECR helper built in, the docker keychain,
//! Google's, GitHub's and Azure's).

use super::{digest_after_reference, Prepared, PushContext, ReleaseLayout, Tool};
use crate::outcome::FailClass;
use crate::provision::GoTool;

pub(crate) struct Ko;

const GO: GoTool = GoTool {
    name: "ko",
    module: "github.com/google/ko",
    package: "github.com/google/ko",
    version_var: Some("github.com/google/ko/pkg/commands.Version"),
    version_args: &["version"],
};

const RELEASE: ReleaseLayout =
    ReleaseLayout::goreleaser("ko-build/ko", "ko_{version}_{Os}_{Arch}.tar.gz", "checksums.txt", "ko");

impl Tool for Ko {
    fn go(&self) -> &'static GoTool {
        &GO
    }

    fn release(&self) -> &'static ReleaseLayout {
        &RELEASE
    }

    /// ko builds the app with Go (offline, from the shared caches) onto the harness's base
    /// image, and pushes to `KO_DOCKER_REPO`.
    fn prepare(&self, push: &PushContext) -> Prepared {
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
        Prepared {
            env: env.into_iter().map(|(k, v)| (k.to_string(), v)).collect(),
            files: vec![(config_dir.join(".ko.yaml"), format!("defaultBaseImage: {}\n", push.payload.base_image))],
            cwd: push.payload.app_dir.clone(),
            path: vec![go.bin_dir.clone()],
        }
    }

    fn push_args(&self, _: &PushContext) -> Vec<String> {
        ["build", "--bare", "."].map(String::from).to_vec()
    }

    /// `ko build --insecure-registry` (pkg/commands/options/publish.go); `ko login` has none.
    fn insecure_switch(&self, command: &str) -> &'static [&'static str] {
        match command {
            "push" => &["--insecure-registry"],
            _ => &[],
        }
    }

    fn pushed_digest(&self, output: &str, repository: &str) -> Option<String> {
        digest_after_reference(output, repository)
    }

    fn failure_patterns(&self) -> &'static [(FailClass, &'static [&'static str])] {
        &[(FailClass::Build, &["build: go build", "error building", "go build:"])]
    }
}
