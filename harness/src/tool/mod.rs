//! The tool under test. A [`Tool`] holds everything tool-specific: how to get it (Go module,
//! release assets, version check), what a cell prepares for it, its push and login
//! commands, where its output names the pushed digest, and its own failure wording. ko, crane
//! and oras are built-in definitions; nothing outside a definition names its tool.
//!
//! Getting binaries for any tool: [`fetch`] (routes and cache), [`release`] (GitHub release
//! assets), [`versions`] (selectors and release lists).

mod crane;
pub mod fetch;
mod ko;
mod oras;
pub mod release;
pub mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::outcome::FailClass;
use crate::payload::Payload;
use crate::provision::GoTool;
pub use fetch::{BinaryFetcher, FetchError, FetchSettings, Program, Source, ToolBinary, ToolFetcher};
pub use release::ReleaseLayout;

/// One push tool, as ko-matrix drives it.
pub trait Tool: Send + Sync + 'static {
    /// How to build it from the Go module proxy, and how it reports its version.
    fn go(&self) -> &'static GoTool;
    /// Where its release binaries are published.
    fn release(&self) -> &'static ReleaseLayout;
    /// Its name (its binary's): `[tools.<name>]` in matrix.toml, `<name>@<version>::<scenario>`
    /// cell ids, `results/<name>/` snapshots, and what a scenario step may name instead of `${TOOL}`.
    fn name(&self) -> &'static str {
        self.go().name
    }
    /// What a cell writes and sets so the tool pushes to `push.repository`. By default
    /// nothing: the push runs where the run's prebuilt image and artifact are.
    fn prepare(&self, push: &PushContext) -> Prepared {
        Prepared { cwd: push.payload.files_dir.clone(), ..Prepared::default() }
    }
    /// The push command's arguments (after the program).
    fn push_args(&self, push: &PushContext) -> Vec<String>;
    /// A scenario's `${TOOL} <word> …` as the tool spells it: `login` is `auth login` for crane.
    fn subcommand(&self, word: &str) -> Vec<String> {
        vec![word.to_string()]
    }
    /// The tool's own switch for a registry that speaks plain HTTP (or has a certificate the
    /// user does not verify), as passed to `command`: `push`, or a scenario step's subcommand
    /// word (`login`). Empty where that command has none.
    fn insecure_switch(&self, _command: &str) -> &'static [&'static str] {
        &[]
    }
    /// The digest the tool says it pushed to `repository` (`host/path`), from its output.
    fn pushed_digest(&self, output: &str, repository: &str) -> Option<String>;
    /// Classes the tool's own wording decides before the registry patterns every tool shares
    /// (ko's build failures, for example).
    fn failure_patterns(&self) -> &'static [(FailClass, &'static [&'static str])] {
        &[]
    }
}

impl std::fmt::Debug for dyn Tool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// Every built-in tool, the shorthand one first.
pub(crate) fn builtins() -> [&'static dyn Tool; 3] {
    [&ko::Ko, &crane::Crane, &oras::Oras]
}

/// The tool that a matrix.toml's `[ko]` table, a bare `v0.15.2` and an older matrix.json's
/// tool-less cells mean.
pub fn shorthand() -> &'static dyn Tool {
    &ko::Ko
}

/// The built-in tool called `name`.
pub fn by_name(name: &str) -> Option<&'static dyn Tool> {
    builtins().into_iter().find(|t| t.name() == name)
}

/// The built-in tools' names, for error messages.
pub fn names() -> String {
    builtins().map(|t| t.name()).join(", ")
}

/// Where a cell pushes and what it has to push with.
pub struct PushContext<'a> {
    /// `host/path` of the repository the tool pushes to.
    pub repository: String,
    /// The cell's own directory: tool configuration goes below it.
    pub cell_dir: &'a Path,
    /// What the run pushes: the app to build, or a prebuilt image or file.
    pub payload: &'a Payload,
}

/// What a tool needs in its cell.
#[derive(Debug, Default)]
pub struct Prepared {
    pub env: BTreeMap<String, String>,
    /// Text files to write (shown in the cell's log).
    pub files: Vec<(PathBuf, String)>,
    /// Directory the push runs in.
    pub cwd: PathBuf,
    /// Directories to put on PATH ahead of the system's.
    pub path: Vec<PathBuf>,
}

/// The push reference's digest on a line of its own: `<repository>@sha256:…`, as ko and crane
/// print it (under any name the tool may print for it: `index.docker.io/…` for `docker.io/…`).
fn digest_after_reference(output: &str, repository: &str) -> Option<String> {
    let prefixes: Vec<String> =
        ko_matrix_emulators::dockerhub::printed_names(repository).into_iter().map(|name| format!("{name}@")).collect();
    output
        .lines()
        .rev()
        .find_map(|l| prefixes.iter().find_map(|prefix| l.trim().strip_prefix(prefix.as_str())).map(str::to_string))
        .filter(|d| d.starts_with("sha256:"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_by_name() {
        assert_eq!(names(), "ko, crane, oras");
        for tool in builtins() {
            assert_eq!(by_name(tool.name()).map(|t| t.name()), Some(tool.name()));
            assert_eq!(tool.go().name, tool.name(), "the binary is named like the tool");
        }
        assert!(by_name("docker").is_none());
    }

    #[test]
    fn digests_are_read_after_the_reference() {
        let output = "2024/01/01 pushed blob: sha256:aa\nreg.test/app@sha256:bb\n";
        assert_eq!(digest_after_reference(output, "reg.test/app"), Some("sha256:bb".into()));
        assert_eq!(digest_after_reference(output, "reg.test/other"), None);
        assert_eq!(digest_after_reference("reg.test/app@latest\n", "reg.test/app"), None);
        assert_eq!(
            digest_after_reference("index.docker.io/u/app@sha256:cc\n", "docker.io/u/app"),
            Some("sha256:cc".into())
        );
    }
}
