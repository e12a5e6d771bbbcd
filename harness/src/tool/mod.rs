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
use crate::payload::{Chart, Expectation, Payload};
use crate::provision::GoTool;
pub use definition::{DigestSource, PayloadKind};
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
    /// The push command's arguments, with placeholders ([`PushContext::values`]).
    push: Vec<String>,
    /// A scenario step's `${TOOL} <word>` in the tool's words (`login` → `auth login`).
    commands: BTreeMap<String, Vec<String>>,
    /// A scenario step's options in the tool's words (`--username` → `--user`).
    flags: BTreeMap<String, String>,
    /// Commands (after the program) run in every cell before the scenario's steps.
    setup: Vec<Vec<String>>,
    /// Variables every command of the tool gets.
    env: BTreeMap<String, String>,
    /// The plain-HTTP switch, and the commands (`push`, step words) that take it; `None`: all.
    insecure: Vec<String>,
    insecure_commands: Option<Vec<String>>,
    /// Commands (after the program) that make the registry plain HTTP for the tool.
    insecure_setup: Vec<Vec<String>>,
    /// Where the pushed digest comes from.
    digest: DigestSource,
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

    /// What it pushes.
    pub fn payload(&self) -> PayloadKind {
        self.payload
    }

    /// What a cell writes and sets so the tool pushes to `push.repository`: the push runs
    /// where its payload is (a directory of the cell's own when the payload is made per
    /// cell), with the definition's variables; its hook adds what needs code.
    pub fn prepare(&self, push: &PushContext) -> Prepared {
        let own_dir = push.cell_dir.join(CELL_PAYLOAD_DIR);
        let (cwd, blobs, expect) = match self.payload {
            PayloadKind::App => (push.payload.app_dir.clone(), Vec::new(), Expectation::Any),
            PayloadKind::ImageTarball => (push.payload.files_dir.clone(), Vec::new(), Expectation::Any),
            PayloadKind::File => (push.payload.files_dir.clone(), Vec::new(), Expectation::artifact_file()),
            PayloadKind::Chart => {
                let chart = Chart::named(push.chart_name());
                let expect = chart.expectation();
                (own_dir.clone(), vec![(own_dir.join(chart.file_name()), chart.bytes)], expect)
            }
            PayloadKind::PushedImage => {
                let image = push.image.as_ref().map(|(_, digest)| digest.clone()).unwrap_or_default();
                (own_dir, Vec::new(), Expectation::RefersTo { image })
            }
        };
        let mut prepared = Prepared { cwd, blobs, expect, env: self.env.clone(), ..Prepared::default() };
        if let Some(hook) = self.hook {
            hook.prepare(push, &mut prepared);
        }
        prepared
    }

    /// The push command's arguments (after the program).
    pub fn push_args(&self, push: &PushContext) -> Vec<String> {
        let values = push.values(self.payload);
        self.push.iter().map(|arg| definition::fill(arg, &values)).collect()
    }

    /// The commands (after the program) a cell runs with the tool before the scenario's
    /// steps: the definition's `setup`, then, for a plain-HTTP registry the user told the
    /// tool about (`insecure`), its `insecure.setup`.
    pub fn setup_commands(&self, push: &PushContext, insecure: bool) -> Vec<Vec<String>> {
        let values = push.values(self.payload);
        let setup = self.setup.iter().map(|command| command.iter().map(|arg| definition::fill(arg, &values)).collect());
        setup.chain(if insecure { self.insecure_setup(push) } else { Vec::new() }).collect()
    }

    /// The definition's `insecure.setup` for `push`'s registry: what tells the tool that
    /// registry is plain HTTP (a copy's plain-HTTP source gets it too).
    pub fn insecure_setup(&self, push: &PushContext) -> Vec<Vec<String>> {
        let values = push.values(self.payload);
        self.insecure_setup
            .iter()
            .map(|command| command.iter().map(|arg| definition::fill(arg, &values)).collect())
            .collect()
    }

    /// Where the pushed digest comes from.
    pub fn digest_source(&self) -> &DigestSource {
        &self.digest
    }

    /// The tag to resolve after the push when the tool printed no digest, for a definition
    /// with `resolve_tag`.
    pub fn tag_to_resolve(&self, push: &PushContext) -> Option<String> {
        match &self.digest {
            DigestSource::Tag(tag) | DigestSource::PrintedElseTag(_, tag) => {
                Some(definition::fill(tag, &push.values(self.payload)))
            }
            DigestSource::Printed(_) => None,
        }
    }

    /// A scenario's `${TOOL} <word> …` as the tool spells it: `login` is `auth login` for crane.
    pub fn subcommand(&self, word: &str) -> Vec<String> {
        self.commands.get(word).cloned().unwrap_or_else(|| vec![word.to_string()])
    }

    /// A scenario step's argument as the tool spells it: an option the definition's `flags`
    /// renames (`--password-stdin` is `--pass-stdin` for regctl, also in `--option=value`).
    pub fn flag(&self, arg: &str) -> String {
        let (option, value) = match arg.split_once('=') {
            Some((option, value)) if option.starts_with('-') => (option, Some(value)),
            _ => (arg, None),
        };
        match (self.flags.get(option), value) {
            (Some(renamed), Some(value)) => format!("{renamed}={value}"),
            (Some(renamed), None) => renamed.clone(),
            (None, _) => arg.to_string(),
        }
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
    /// output that the definition's pattern matches (`None` also for a `resolve_tag` tool).
    pub fn pushed_digest(&self, output: &str, repository: &str) -> Option<String> {
        let (DigestSource::Printed(digest) | DigestSource::PrintedElseTag(digest, _)) = &self.digest else {
            return None;
        };
        let pattern = definition::digest_regex(digest, repository);
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

/// The directory below a cell's own where a payload made per cell is written and pushed from.
const CELL_PAYLOAD_DIR: &str = "payload";

/// Where a cell pushes and what it has to push with.
pub struct PushContext<'a> {
    /// `host/path` of the repository the tool pushes to.
    pub repository: String,
    /// The cell's own directory: tool configuration goes below it.
    pub cell_dir: &'a Path,
    /// What the run pushes: the app to build, or a prebuilt image or file.
    pub payload: &'a Payload,
    /// With payload = "pushed-image": the image the harness pushed into the repository, as
    /// `host/path@digest`, and its digest.
    pub image: Option<(String, String)>,
}

impl PushContext<'_> {
    /// The registry's host as clients write it (`localhost:38211`).
    pub fn registry(&self) -> &str {
        self.repository.split('/').next().unwrap_or_default()
    }

    /// The repository without its last component (the host alone for `host/app`): where a
    /// chart named after that component is pushed to.
    pub fn namespace(&self) -> &str {
        self.repository.rsplit_once('/').map_or(self.repository.as_str(), |(namespace, _)| namespace)
    }

    /// The chart's name: the repository's last component.
    fn chart_name(&self) -> &str {
        self.repository.rsplit('/').next().unwrap_or_default()
    }

    /// Every placeholder's value for a tool pushing `payload` (docs/tool-definitions.md).
    fn values(&self, payload: PayloadKind) -> Vec<(&'static str, String)> {
        let mut values = vec![
            ("repository", self.repository.clone()),
            ("registry", self.registry().to_string()),
            ("namespace", self.namespace().to_string()),
        ];
        match payload {
            PayloadKind::App => values.push(("payload", ".".into())),
            PayloadKind::ImageTarball => values.push(("payload", Payload::IMAGE_TARBALL.into())),
            PayloadKind::File => values.extend([
                ("payload", Payload::ARTIFACT_FILE.to_string()),
                ("media_type", Payload::ARTIFACT_MEDIA_TYPE.to_string()),
            ]),
            PayloadKind::Chart => values.push(("payload", Chart::named(self.chart_name()).file_name())),
            PayloadKind::PushedImage => {
                let (image, digest) = self.image.clone().unwrap_or_default();
                let hex = digest.split_once(':').map_or(digest.as_str(), |(_, hex)| hex).to_string();
                values.extend([("image", image), ("image_hex", hex)]);
            }
        }
        values
    }
}

/// What a tool needs in its cell.
#[derive(Debug, Default)]
pub struct Prepared {
    pub env: BTreeMap<String, String>,
    /// Text files to write (shown in the cell's log).
    pub files: Vec<(PathBuf, String)>,
    /// Binary files to write (the log names each with its digest): a chart.
    pub blobs: Vec<(PathBuf, Vec<u8>)>,
    /// Directory the push runs in.
    pub cwd: PathBuf,
    /// Directories to put on PATH ahead of the system's.
    pub path: Vec<PathBuf>,
    /// What the manifest fetched back must show to be what the tool was given.
    pub expect: Expectation,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tools_are_found_by_name() {
        assert_eq!(
            builtins().iter().map(|t| t.name()).collect::<Vec<_>>(),
            ["ko", "cosign", "crane", "helm", "oras", "regctl"]
        );
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

    fn payload() -> Payload {
        Payload {
            app_dir: "/run/app".into(),
            base_image: "127.0.0.1:1/ko-matrix/base@sha256:00".into(),
            go: crate::payload::GoEnv { bin_dir: "/go/bin".into(), gocache: "/c".into(), gomodcache: "/m".into() },
            files_dir: "/run/payload".into(),
        }
    }

    #[test]
    fn placeholders_per_payload() {
        let payload = payload();
        let cell = Path::new("/cells/cell-1");
        let push = |repository: &str, image: Option<(String, String)>| PushContext {
            repository: repository.into(),
            cell_dir: cell,
            payload: &payload,
            image,
        };
        let helm = by_name("helm").unwrap();
        let to = push("basic.ko-matrix.test/cells/registry/basic-auths/helm/v3.13.3", None);
        assert_eq!(
            helm.push_args(&to),
            ["push", "v3.13.3-0.1.0.tgz", "oci://basic.ko-matrix.test/cells/registry/basic-auths/helm"]
        );
        let prepared = helm.prepare(&to);
        assert_eq!(prepared.cwd, cell.join("payload"));
        assert_eq!(prepared.blobs[0].0, cell.join("payload/v3.13.3-0.1.0.tgz"));
        assert!(matches!(prepared.expect, Expectation::Layer { config_media_type: Some(_), .. }));
        // A repository of one component: the chart goes to the registry's root.
        assert_eq!(helm.push_args(&push("localhost:5000/app", None))[2], "oci://localhost:5000");

        let cosign = by_name("cosign").unwrap();
        let digest = format!("sha256:{}", "a".repeat(64));
        let to = push("reg.test/app", Some((format!("reg.test/app@{digest}"), digest.clone())));
        assert_eq!(cosign.push_args(&to).last().unwrap(), &format!("reg.test/app@{digest}"));
        assert_eq!(cosign.tag_to_resolve(&to), Some(format!("sha256-{}.sig", "a".repeat(64))));
        assert_eq!(cosign.setup_commands(&to, false), [["generate-key-pair"]]);
        assert_eq!(cosign.prepare(&to).expect, Expectation::RefersTo { image: digest });
        assert_eq!(cosign.prepare(&to).env.keys().collect::<Vec<_>>(), ["COSIGN_PASSWORD"]);

        let regctl = by_name("regctl").unwrap();
        let to = push("localhost:5000/cells/x", None);
        assert_eq!(regctl.tag_to_resolve(&to).as_deref(), Some("latest"));
        assert!(regctl.setup_commands(&to, false).is_empty());
        assert_eq!(regctl.setup_commands(&to, true), [["registry", "set", "--tls", "disabled", "localhost:5000"]]);
        assert_eq!(regctl.prepare(&to).cwd, Path::new("/run/payload"), "the run's file, shared");
        assert_eq!(
            (regctl.flag("--username"), regctl.subcommand("login")),
            ("--user".into(), vec!["registry".to_string(), "login".into()])
        );
        let oras = by_name("oras").unwrap();
        assert_eq!(oras.push_args(&to)[2], "artifact.txt:application/vnd.ko-matrix.artifact.v1+text");
        assert!(oras.tag_to_resolve(&to).is_none() && oras.setup_commands(&to, true).is_empty());
    }
}
