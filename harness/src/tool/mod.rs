//! The tool under test. A [`Tool`] holds everything tool-specific: how to get it (Go module,
//! release assets, version check), what a cell prepares for it, its push and login
//! commands, where its output names the pushed digest, and its own failure wording. Tools are
//! data: `tools/<name>.toml` ([`definition`]; ko, crane and oras ship built in), with what
//! needs code behind a named [`hooks::Hook`]. Nothing outside a definition names its tool.
//!
//! Getting binaries for any tool: [`fetch`] (routes and cache), [`release`] (GitHub release
//! assets), [`versions`] (selectors and release lists).

pub mod definition;
pub mod fetch;
mod hooks;
pub mod release;
pub mod versions;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{OnceLock, RwLock};

use crate::located::ConfigError;
use crate::outcome::FailClass;
use crate::payload::Payload;
use crate::provision::GoTool;
pub use definition::PayloadKind;
pub use fetch::{BinaryFetcher, FetchError, FetchSettings, Program, Source, ToolBinary, ToolFetcher};
pub use release::ReleaseLayout;

/// One push tool, as its definition describes it (see [`definition`]).
#[derive(Debug, PartialEq)]
pub struct Tool {
    /// How to build it from the Go module proxy, and how it reports its version; `go.name` is
    /// the tool's name.
    go: GoTool,
    /// Where its release binaries are published.
    release: ReleaseLayout,
    payload: PayloadKind,
    /// The push command's arguments, with `{repository}`, `{payload}`, `{media_type}`.
    push: Vec<String>,
    /// A scenario step's `${TOOL} <word>` in the tool's words (`login` → `auth login`).
    commands: BTreeMap<String, Vec<String>>,
    /// The plain-HTTP switch, and the commands (`push`, step words) that take it; `None`: all.
    insecure: Vec<String>,
    insecure_commands: Option<Vec<String>>,
    /// A whole-line pattern whose first group is the pushed digest; `{repository}` stands
    /// for the repository under any name the tool may print for it.
    digest: String,
    failures: Vec<(FailClass, Vec<String>)>,
    hook: Option<hooks::Hook>,
    /// How it copies an image from one registry to another; `None`: it does not.
    copy: Option<CopyCommand>,
}

/// A tool's copy command (`copy`, `copy_source`, `copy_target` in its definition).
#[derive(Debug, PartialEq)]
pub struct CopyCommand {
    /// The arguments after the program, with `{source}` and `{target}`.
    args: Vec<String>,
    source: CopySide,
    target: CopySide,
}

/// The copy command's options for one side.
#[derive(Debug, Default, PartialEq)]
pub struct CopySide {
    /// The switch for this side's plain-HTTP registry; `None`: the tool's `insecure` switch
    /// for `copy`, given once for both sides.
    insecure: Option<Vec<String>>,
    /// This side's credentials as flags, with `{user}` and `{password}`; `None`: the tool
    /// takes none for this side.
    credentials: Option<Vec<String>>,
}

/// Which end of a copy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Source,
    Target,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Source => "source",
            Side::Target => "target",
        }
    }
}

/// One end of a copy as a cell runs it.
#[derive(Debug, Clone)]
pub struct CopyEnd {
    /// `host/path:tag`.
    pub reference: String,
    /// The registry speaks plain HTTP and the user passes the tool's switch for it.
    pub insecure: bool,
    /// `(user, password)` when the user passes this side's credentials as flags.
    pub credentials: Option<(String, String)>,
}

impl Tool {
    pub fn go(&self) -> &GoTool {
        &self.go
    }

    pub fn release(&self) -> &ReleaseLayout {
        &self.release
    }

    /// Its name (its binary's): `[tools.<name>]` in matrix.toml, `<name>@<version>::<scenario>`
    /// cell ids, `results/<name>/` snapshots, and what a scenario step may name instead of `${TOOL}`.
    pub fn name(&self) -> &'static str {
        self.go.name
    }

    /// What a cell writes and sets so the tool pushes to `push.repository`: the push runs
    /// where its payload is, and its hook adds what needs code.
    pub fn prepare(&self, push: &PushContext) -> Prepared {
        let cwd = match self.payload {
            PayloadKind::App => push.payload.app_dir.clone(),
            PayloadKind::ImageTarball | PayloadKind::File => push.payload.files_dir.clone(),
        };
        let mut prepared = Prepared { cwd, ..Prepared::default() };
        if let Some(hook) = self.hook {
            hook.prepare(push, &mut prepared);
        }
        prepared
    }

    /// The push command's arguments (after the program).
    pub fn push_args(&self, push: &PushContext) -> Vec<String> {
        let values = [
            ("repository", push.repository.as_str()),
            ("payload", self.payload.file()),
            ("media_type", Payload::ARTIFACT_MEDIA_TYPE),
        ];
        self.push.iter().map(|arg| definition::fill(arg, &values)).collect()
    }

    /// A scenario's `${TOOL} <word> …` as the tool spells it: `login` is `auth login` for crane.
    pub fn subcommand(&self, word: &str) -> Vec<String> {
        self.commands.get(word).cloned().unwrap_or_else(|| vec![word.to_string()])
    }

    /// The tool's own switch for a registry that speaks plain HTTP (or has a certificate the
    /// user does not verify), as passed to `command`: `push`, or a scenario step's subcommand
    /// word (`login`). Empty where that command has none.
    pub fn insecure_switch(&self, command: &str) -> &[String] {
        match &self.insecure_commands {
            Some(commands) if !commands.iter().any(|c| c == command) => &[],
            _ => &self.insecure,
        }
    }

    /// The digest the tool says it pushed to `repository` (`host/path`): the last line of its
    /// output that the definition's pattern matches.
    pub fn pushed_digest(&self, output: &str, repository: &str) -> Option<String> {
        let pattern = definition::digest_regex(&self.digest, repository);
        output.lines().rev().find_map(|l| Some(pattern.captures(l.trim())?.get(1)?.as_str().to_string()))
    }

    /// Whether the definition has a copy command.
    pub fn copies(&self) -> bool {
        self.copy.is_some()
    }

    /// Why the tool cannot run a copy whose sides are `source` and `target`, as a skip reason:
    /// it has no copy command, or takes no credential flags for a side that gives them so.
    pub fn cannot_copy(&self, source: &CopyEnd, target: &CopyEnd) -> Option<String> {
        let Some(copy) = &self.copy else {
            return Some(format!("{} copies nothing: tools/{}.toml has no `copy` command", self.name(), self.name()));
        };
        [(Side::Source, source, &copy.source), (Side::Target, target, &copy.target)]
            .into_iter()
            .find(|(_, end, side)| end.credentials.is_some() && side.credentials.is_none())
            .map(|(side, _, _)| {
                format!(
                    "the scenario gives the {0}'s credentials as flags, and {1} takes none for its {0} (no `copy_{0}.credentials` in tools/{1}.toml)",
                    side.as_str(),
                    self.name()
                )
            })
    }

    /// The copy command's arguments (after the program) from `source` to `target`: the
    /// definition's, then each side's plain-HTTP switch and credential flags. `None` where
    /// [`Tool::cannot_copy`] says why.
    pub fn copy_args(&self, source: &CopyEnd, target: &CopyEnd) -> Option<Vec<String>> {
        if self.cannot_copy(source, target).is_some() {
            return None;
        }
        let copy = self.copy.as_ref()?;
        let values = [("source", source.reference.as_str()), ("target", target.reference.as_str())];
        let mut args: Vec<String> = copy.args.iter().map(|a| definition::fill(a, &values)).collect();
        let sides = [(source, &copy.source), (target, &copy.target)];
        // A tool without a switch per side takes its one switch once, for either side.
        let shared = sides.iter().any(|(end, side)| end.insecure && side.insecure.is_none());
        if shared {
            args.extend(self.insecure_switch("copy").iter().cloned());
        }
        for (end, side) in sides {
            if let (true, Some(switch)) = (end.insecure, &side.insecure) {
                args.extend(switch.iter().cloned());
            }
            if let (Some((user, password)), Some(flags)) = (&end.credentials, &side.credentials) {
                let values = [("user", user.as_str()), ("password", password.as_str())];
                args.extend(flags.iter().map(|f| definition::fill(f, &values)));
            }
        }
        Some(args)
    }

    /// Classes the tool's own wording decides before the registry patterns every tool shares
    /// (ko's build failures, for example).
    pub fn failure_patterns(&self) -> &[(FailClass, Vec<String>)] {
        &self.failures
    }
}

/// The built-in definitions (the repository's `tools/`), the shorthand one first.
pub(crate) fn builtins() -> &'static [&'static Tool] {
    static BUILTINS: OnceLock<Vec<&'static Tool>> = OnceLock::new();
    BUILTINS.get_or_init(|| {
        let mut tools: Vec<&'static Tool> = crate::builtin::tool_definitions()
            .map(|(file, text)| {
                let tool = definition::parse(&file, text).unwrap_or_else(|e| panic!("a built-in tool definition: {e}"));
                &*Box::leak(Box::new(tool))
            })
            .collect();
        tools.sort_by_key(|t| (t.name() != SHORTHAND, t.name()));
        tools
    })
}

const SHORTHAND: &str = "ko";

/// Definitions loaded from a matrix's `tools/` folder, by name. Cells, plans and reports name
/// tools by name, so once loaded a tool resolves anywhere in the process.
static LOADED: RwLock<Vec<&'static Tool>> = RwLock::new(Vec::new());

/// Reads every `<name>.toml` in `dir` and makes each the tool of that name (in place of a
/// built-in one of the same name). Returns them in file-name order.
pub fn load_dir(dir: &Path) -> Result<Vec<&'static Tool>, ConfigError> {
    let mut loaded = Vec::new();
    for tool in definition::read_dir(dir)? {
        let mut registry = LOADED.write().unwrap_or_else(|e| e.into_inner());
        let known = by_name_in(&registry, tool.name()).filter(|known| **known == tool);
        let tool: &'static Tool = match known {
            Some(known) => known,
            None => {
                let tool: &'static Tool = Box::leak(Box::new(tool));
                registry.retain(|t| t.name() != tool.name());
                registry.push(tool);
                tool
            }
        };
        loaded.push(tool);
    }
    Ok(loaded)
}

fn by_name_in(loaded: &[&'static Tool], name: &str) -> Option<&'static Tool> {
    loaded.iter().chain(builtins()).find(|t| t.name() == name).copied()
}

/// The tool that a matrix.toml's `[ko]` table, a bare `v0.15.2` and an older matrix.json's
/// tool-less cells mean.
pub fn shorthand() -> &'static Tool {
    builtins()[0]
}

/// The tool called `name`: loaded from a `tools/` folder, else built in.
pub fn by_name(name: &str) -> Option<&'static Tool> {
    by_name_in(&LOADED.read().unwrap_or_else(|e| e.into_inner()), name)
}

/// The known tools' names, for error messages.
pub fn names() -> String {
    let loaded = LOADED.read().unwrap_or_else(|e| e.into_inner());
    let mut names: Vec<&str> = builtins().iter().map(|t| t.name()).collect();
    names.extend(loaded.iter().map(|t| t.name()).filter(|n| !names.contains(n)).collect::<Vec<_>>());
    names.join(", ")
}

/// Why `name` is no tool: the known ones, and how to define it.
pub fn unknown_tool(name: &str) -> String {
    format!("unknown tool `{name}`; known tools: {} (define one in tools/{name}.toml beside matrix.toml: docs/tool-definitions.md)", names())
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_by_name() {
        assert_eq!(builtins().iter().map(|t| t.name()).collect::<Vec<_>>(), ["ko", "crane", "oras"]);
        assert_eq!(shorthand().name(), "ko");
        for tool in builtins() {
            assert_eq!(by_name(tool.name()).map(|t| t.name()), Some(tool.name()));
        }
        assert!(by_name("docker").is_none());
    }

    #[test]
    fn digests_are_read_after_the_reference() {
        let crane = by_name("crane").unwrap();
        let (aa, bb, cc) = ("a".repeat(64), "b".repeat(64), "c".repeat(64));
        let output = format!("2024/01/01 pushed blob: sha256:{aa}\nreg.test/app@sha256:{bb}\n");
        assert_eq!(crane.pushed_digest(&output, "reg.test/app"), Some(format!("sha256:{bb}")));
        assert_eq!(crane.pushed_digest(&output, "reg.test/other"), None);
        assert_eq!(crane.pushed_digest("reg.test/app@latest\n", "reg.test/app"), None);
        assert_eq!(
            crane.pushed_digest(&format!("index.docker.io/u/app@sha256:{cc}\n"), "docker.io/u/app"),
            Some(format!("sha256:{cc}"))
        );
    }

    #[test]
    fn oras_names_its_digest_on_a_line_of_its_own() {
        let oras = by_name("oras").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let output = format!("Uploading 1f2a artifact.txt\nPushed [registry] reg.test/app:latest\nArtifactType: application/vnd.unknown.artifact.v1\nDigest: {digest}\n");
        assert_eq!(oras.pushed_digest(&output, "reg.test/app"), Some(digest));
        assert_eq!(oras.pushed_digest("Error: unauthorized\n", "reg.test/app"), None);
    }

    #[test]
    fn commands_and_switches_in_the_tools_words() {
        let (ko, crane, oras) = (shorthand(), by_name("crane").unwrap(), by_name("oras").unwrap());
        assert_eq!(crane.subcommand("login"), ["auth", "login"]);
        assert_eq!(oras.subcommand("login"), ["login"]);
        assert_eq!(
            (crane.insecure_switch("push"), crane.insecure_switch("login")),
            (&["--insecure".to_string()][..], &["--insecure".to_string()][..])
        );
        assert_eq!(ko.insecure_switch("push"), ["--insecure-registry"]);
        assert!(ko.insecure_switch("login").is_empty());
        assert_eq!(oras.insecure_switch("login"), ["--plain-http"]);
        assert!(oras.insecure_switch("logout").is_empty());
    }

    #[test]
    fn copies_in_the_tools_words_with_switches_and_flags_per_side() {
        let (ko, crane, oras) = (shorthand(), by_name("crane").unwrap(), by_name("oras").unwrap());
        let end = |reference: &str, insecure, credentials: Option<(&str, &str)>| CopyEnd {
            reference: reference.into(),
            insecure,
            credentials: credentials.map(|(u, p)| (u.into(), p.into())),
        };
        let (plain, secure) = (end("a.test/src:latest", true, None), end("b.test/dst:latest", false, None));
        assert!(!ko.copies());
        assert_eq!(ko.copy_args(&plain, &secure), None);
        assert!(ko.cannot_copy(&plain, &secure).unwrap().contains("no `copy` command"));
        assert_eq!(
            crane.copy_args(&plain, &secure).unwrap(),
            ["copy", "a.test/src:latest", "b.test/dst:latest", "--insecure"],
            "crane's one switch covers both sides"
        );
        assert_eq!(
            oras.copy_args(&plain, &secure).unwrap(),
            ["cp", "a.test/src:latest", "b.test/dst:latest", "--from-plain-http"]
        );
        let flags = (
            end("a.test/src:latest", false, Some(("reader", "r-secret"))),
            end("b.test/dst:latest", true, Some(("writer", "w-secret"))),
        );
        assert_eq!(
            oras.copy_args(&flags.0, &flags.1).unwrap(),
            [
                "cp",
                "a.test/src:latest",
                "b.test/dst:latest",
                "--from-username",
                "reader",
                "--from-password",
                "r-secret",
                "--to-plain-http",
                "--to-username",
                "writer",
                "--to-password",
                "w-secret"
            ]
        );
        assert_eq!(crane.copy_args(&flags.0, &secure), None);
        assert_eq!(
            crane.cannot_copy(&flags.0, &secure).unwrap(),
            "the scenario gives the source's credentials as flags, and crane takes none for its source (no `copy_source.credentials` in tools/crane.toml)"
        );
    }
}
