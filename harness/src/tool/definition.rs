//! `tools/<name>.toml`: a push tool as data (docs/tool-definitions.md has every key and a
//! worked example). The file's name is the tool's; mistakes are located like matrix.toml's.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::Path;

use serde::Deserialize;
use toml::Spanned;

use super::hooks::Hook;
use super::release::{Checksums, Packaging, ReleaseLayout};
use super::{CopyCommand, CopySide, Tool};
use crate::located::ConfigError;
use crate::outcome::FailClass;
use crate::provision::GoTool;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDefinition {
    module: String,
    /// The main package; the module's root by default.
    package: Option<String>,
    version_var: Option<String>,
    version_args: Option<Vec<String>>,
    release: RawRelease,
    payload: PayloadKind,
    push: Vec<Spanned<String>>,
    /// A pattern over the tool's output; or, with `resolve_tag`, none.
    digest: Option<Spanned<String>>,
    /// The tag to resolve after the push when the tool prints no digest.
    resolve_tag: Option<Spanned<String>>,
    #[serde(default)]
    commands: BTreeMap<String, Vec<String>>,
    /// A scenario step's option in the tool's words: `{ "--username" = "--user" }`.
    #[serde(default)]
    flags: BTreeMap<String, String>,
    /// Commands (after the program) the tool runs in every cell before the scenario's steps.
    #[serde(default)]
    setup: Vec<Vec<Spanned<String>>>,
    /// Variables every command of the tool gets.
    #[serde(default)]
    env: BTreeMap<String, String>,
    #[serde(default)]
    insecure: RawInsecure,
    #[serde(default)]
    failures: Vec<RawFailure>,
    hook: Option<Spanned<Hook>>,
    /// The copy command's arguments, with `{source}` and `{target}`; none: the tool copies nothing.
    copy: Option<Spanned<Vec<Spanned<String>>>>,
    copy_source: Option<Spanned<RawCopySide>>,
    copy_target: Option<Spanned<RawCopySide>>,
}

/// The copy command's options for one side.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCopySide {
    /// The switch for this side's plain-HTTP registry (`--from-plain-http`).
    insecure: Option<Vec<String>>,
    /// This side's credentials as flags, with `{user}` and `{password}`.
    credentials: Option<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRelease {
    github: String,
    /// Both or neither: without them the releases publish nothing the harness can verify.
    asset: Option<String>,
    checksums: Option<String>,
    /// The executable's name inside the archive; the tool's name by default.
    binary: Option<String>,
    /// Where the assets are when not on the GitHub release.
    download: Option<Spanned<String>>,
    /// A release's directory below `download`; `v{version}` by default.
    dir: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsecure {
    #[serde(default)]
    switch: Vec<String>,
    commands: Option<Vec<String>>,
    /// Commands (after the program) that set the registry up as plain HTTP before anything runs.
    #[serde(default)]
    setup: Vec<Vec<Spanned<String>>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    class: FailClass,
    patterns: Vec<String>,
}

/// Where the harness learns the digest the tool pushed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DigestSource {
    /// A whole-line pattern over the tool's output whose first group is the digest;
    /// `{repository}` stands for the repository under any name the tool may print for it.
    Printed(String),
    /// The tag the tool pushed, resolved in the registry after it exited 0 (placeholders filled
    /// per cell); the cell's gateway record must show the tool's own PUT of that tag.
    Tag(String),
    /// Both keys: the printed digest where the tool prints one, else the tag (releases that
    /// printed nothing yet: crane before v0.15.0).
    PrintedElseTag(String, String),
}

/// What a tool pushes, which the run provides.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum PayloadKind {
    /// The Go app (the scenarios folder's `app/`), built by the tool; the push runs in it.
    App,
    /// A prebuilt single-layer image as a `docker save` tarball.
    ImageTarball,
    /// A small text file, pushed as an artifact of media type `{media_type}`.
    File,
    /// A Helm chart the harness packs per cell (`<name>-<version>.tgz`), named after the last
    /// component of the cell's repository so that it lands there (`{namespace}` is the rest).
    Chart,
    /// An image the harness pushed into the cell's repository just before (`{image}`, by
    /// digest), which the tool acts on: signs it, attaches to it.
    PushedImage,
}

/// Placeholders every command of a definition may hold.
const COMMON: [&str; 3] = ["repository", "registry", "namespace"];

impl PayloadKind {
    /// As a definition spells it.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            PayloadKind::App => "app",
            PayloadKind::ImageTarball => "image-tarball",
            PayloadKind::File => "file",
            PayloadKind::Chart => "chart",
            PayloadKind::PushedImage => "pushed-image",
        }
    }

    /// The placeholders a push argument may hold with this payload, beside [`COMMON`].
    fn placeholders(self) -> &'static [&'static str] {
        match self {
            PayloadKind::File => &["payload", "media_type"],
            PayloadKind::App | PayloadKind::ImageTarball | PayloadKind::Chart => &["payload"],
            PayloadKind::PushedImage => &["image"],
        }
    }

    /// The placeholders `resolve_tag` may hold with this payload.
    fn tag_placeholders(self) -> &'static [&'static str] {
        match self {
            PayloadKind::PushedImage => &["image_hex"],
            _ => &[],
        }
    }
}

/// Parses the definition `text` of the tool named by `file`'s stem.
pub fn parse(file: &Path, text: &str) -> Result<Tool, ConfigError> {
    let err = |span: Range<usize>, message: String| ConfigError::at(file, text, span, message);
    let name = file.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    let valid_name = name.starts_with(|c: char| c.is_ascii_lowercase())
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid_name {
        return Err(err(
            0..0,
            format!("`{name}` cannot name a tool (the file's name is the tool's and its binary's): use lower-case letters, digits, - and _, starting with a letter"),
        ));
    }
    let raw: RawDefinition = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;

    let with_common =
        |specific: &[&'static str]| -> Vec<&'static str> { COMMON.iter().chain(specific).copied().collect() };
    let push_valid = with_common(raw.payload.placeholders());
    for arg in &raw.push {
        check_placeholders(arg.get_ref(), &push_valid).map_err(|valid| {
            err(arg.span(), format!("{valid} in `push` with payload = \"{}\"", raw.payload.as_str()))
        })?;
    }
    let setup_valid = with_common(&[]);
    for (key, commands) in [("setup", &raw.setup), ("insecure.setup", &raw.insecure.setup)] {
        for arg in commands.iter().flatten() {
            check_placeholders(arg.get_ref(), &setup_valid)
                .map_err(|valid| err(arg.span(), format!("{valid} in `{key}`")))?;
        }
        if let Some(empty) = commands.iter().position(Vec::is_empty) {
            return Err(err(
                0..0,
                format!(
                    "`{key}` command {} is empty; give its arguments after the program, e.g. [\"registry\", \"set\"]",
                    empty + 1
                ),
            ));
        }
    }
    let pattern = match raw.digest {
        Some(digest) => {
            check_placeholders(digest.get_ref(), &["repository"])
                .map_err(|valid| err(digest.span(), format!("{valid} in `digest`")))?;
            match regex::Regex::new(&whole_line(digest.get_ref(), "reg.test/app")) {
                Ok(re) if re.captures_len() > 1 => {}
                Ok(_) => {
                    return Err(err(
                        digest.span(),
                        "`digest` needs a group around the digest, e.g. \"Digest: (sha256:[0-9a-f]{64})\"".into(),
                    ))
                }
                Err(e) => return Err(err(digest.span(), format!("`digest` is not a valid pattern: {e}"))),
            }
            Some(digest.into_inner())
        }
        None => None,
    };
    let tag = match raw.resolve_tag {
        Some(tag) => {
            check_placeholders(tag.get_ref(), raw.payload.tag_placeholders()).map_err(|valid| {
                err(tag.span(), format!("{valid} in `resolve_tag` with payload = \"{}\"", raw.payload.as_str()))
            })?;
            let filled = fill(tag.get_ref(), &[("image_hex", &"a".repeat(64))]);
            if !is_tag(&filled) {
                return Err(err(tag.span(), format!("`resolve_tag` must be a tag (letters, digits, _ . -, up to 128, not starting with . or -); `{filled}` is not")));
            }
            Some(tag.into_inner())
        }
        None => None,
    };
    let digest = match (pattern, tag) {
        (Some(pattern), None) => DigestSource::Printed(pattern),
        (None, Some(tag)) => DigestSource::Tag(tag),
        (Some(pattern), Some(tag)) => DigestSource::PrintedElseTag(pattern, tag),
        (None, None) => {
            return Err(err(0..0, "missing field `digest` (a pattern over the tool's output naming the pushed digest), or `resolve_tag` (a tag to resolve after the push)".into()))
        }
    };
    let copy = copy_command(raw.copy, raw.copy_source, raw.copy_target, &err)?;
    if let Some(hook) = &raw.hook {
        let needs = hook.get_ref().needs();
        if needs != raw.payload {
            return Err(err(hook.span(), format!("this hook works on payload = \"{}\"", needs.as_str())));
        }
    }
    if let Some(download) = &raw.release.download {
        let valid = download.get_ref().starts_with("http://") || download.get_ref().starts_with("https://");
        if !valid {
            return Err(err(
                download.span(),
                "`download` must be an http:// or https:// URL, e.g. https://get.helm.sh".into(),
            ));
        }
    }

    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let name = leak(name.to_string());
    let version_args = raw.version_args.unwrap_or_else(|| vec!["version".into()]);
    let go = GoTool {
        name,
        package: leak(raw.package.unwrap_or_else(|| raw.module.clone())),
        module: leak(raw.module),
        version_var: raw.version_var.map(leak),
        version_args: Box::leak(version_args.into_iter().map(leak).collect::<Vec<_>>().into_boxed_slice()),
    };
    let release = release_layout(raw.release, name).map_err(|message| err(0..0, message))?;
    let commands = |commands: Vec<Vec<Spanned<String>>>| -> Vec<Vec<String>> {
        commands.into_iter().map(|c| c.into_iter().map(Spanned::into_inner).collect()).collect()
    };
    Ok(Tool {
        go,
        release,
        payload: raw.payload,
        push: raw.push.into_iter().map(Spanned::into_inner).collect(),
        commands: raw.commands,
        flags: raw.flags,
        setup: commands(raw.setup),
        env: raw.env,
        insecure: raw.insecure.switch,
        insecure_commands: raw.insecure.commands,
        insecure_setup: commands(raw.insecure.setup),
        digest,
        failures: raw.failures.into_iter().map(|f| (f.class, f.patterns)).collect(),
        hook: raw.hook.map(Spanned::into_inner),
        copy,
    })
}

/// The copy command of a definition: its arguments hold `{source}` and `{target}` once each,
/// and each side's credential flags `{user}` and `{password}`; side options need a `copy`.
fn copy_command(
    args: Option<Spanned<Vec<Spanned<String>>>>,
    source: Option<Spanned<RawCopySide>>,
    target: Option<Spanned<RawCopySide>>,
    err: &impl Fn(Range<usize>, String) -> ConfigError,
) -> Result<Option<CopyCommand>, ConfigError> {
    let Some(args) = args else {
        return match source.iter().chain(&target).next() {
            Some(side) => Err(err(
                side.span(),
                "copy options need a `copy` command: copy = [\"copy\", \"{source}\", \"{target}\"]".into(),
            )),
            None => Ok(None),
        };
    };
    for arg in args.get_ref() {
        check_placeholders(arg.get_ref(), &["source", "target"])
            .map_err(|valid| err(arg.span(), format!("{valid} in `copy`")))?;
    }
    for needed in ["source", "target"] {
        let count = args.get_ref().iter().flat_map(|a| placeholders(a.get_ref())).filter(|p| *p == needed).count();
        if count != 1 {
            return Err(err(args.span(), format!("`copy` names `{{{needed}}}` once (found {count} times)")));
        }
    }
    let side = |raw: Option<Spanned<RawCopySide>>| -> Result<CopySide, ConfigError> {
        let Some(raw) = raw.map(Spanned::into_inner) else { return Ok(CopySide::default()) };
        let credentials = match raw.credentials {
            Some(flags) => {
                for flag in &flags {
                    check_placeholders(flag.get_ref(), &["user", "password"])
                        .map_err(|valid| err(flag.span(), format!("{valid} in `credentials`")))?;
                }
                Some(flags.into_iter().map(Spanned::into_inner).collect())
            }
            None => None,
        };
        Ok(CopySide { insecure: raw.insecure, credentials })
    };
    Ok(Some(CopyCommand {
        args: args.into_inner().into_iter().map(Spanned::into_inner).collect(),
        source: side(source)?,
        target: side(target)?,
    }))
}

/// The release layout a definition's `release` describes: a `.tar.gz` asset holds the
/// executable, any other is the executable; `checksums = "{asset}.sha256"` is a file beside
/// each asset, any other name one list for the release.
fn release_layout(raw: RawRelease, name: &'static str) -> Result<ReleaseLayout, String> {
    let leak = |s: String| -> &'static str { Box::leak(s.into_boxed_str()) };
    let (asset, checksums) = match (raw.asset, raw.checksums) {
        (Some(asset), Some(checksums)) if checksums == "{asset}.sha256" => (asset, Checksums::Sidecar),
        (Some(asset), Some(checksums)) => (asset, Checksums::List(leak(checksums))),
        (None, None) => (String::new(), Checksums::Unpublished),
        _ => return Err("`release` needs `asset` and `checksums` together (neither: the releases publish no binary the harness can verify, and only the go route builds the tool)".into()),
    };
    let packaging =
        if asset.ends_with(".tar.gz") || asset.ends_with(".tgz") { Packaging::TarGz } else { Packaging::Bare };
    Ok(ReleaseLayout {
        github_repo: leak(raw.github),
        download_base: raw.download.map(|d| leak(d.into_inner().trim_end_matches('/').to_string())),
        dir: leak(raw.dir.unwrap_or_else(|| "v{version}".into())),
        asset: leak(asset),
        checksums,
        packaging,
        binary: raw.binary.map_or(name, leak),
    })
}

/// Whether `text` is a valid tag in the distribution spec's grammar.
fn is_tag(text: &str) -> bool {
    let first_ok = text.chars().next().is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    first_ok && text.len() <= 128 && text.chars().all(|c| c.is_ascii_alphanumeric() || "_.-".contains(c))
}

/// Every `*.toml` in `dir`, in file-name order; none when `dir` does not exist.
pub(crate) fn read_dir(dir: &Path) -> Result<Vec<Tool>, ConfigError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(ConfigError::unreadable(dir, &e)),
    };
    let mut files: Vec<_> =
        entries.flatten().map(|e| e.path()).filter(|p| p.extension().is_some_and(|e| e == "toml")).collect();
    files.sort();
    files
        .iter()
        .map(|file| {
            let text = std::fs::read_to_string(file).map_err(|e| ConfigError::unreadable(file, &e))?;
            parse(file, &text)
        })
        .collect()
}

/// The `{name}` placeholders of `template` (braces around anything else, such as a pattern's
/// `{64}`, are left alone).
fn placeholders(template: &str) -> impl Iterator<Item = &str> {
    template.split('{').skip(1).filter_map(|rest| {
        let name = rest.split_once('}')?.0;
        (!name.is_empty() && name.chars().all(|c| c.is_ascii_lowercase() || c == '_')).then_some(name)
    })
}

fn check_placeholders(template: &str, valid: &[&str]) -> Result<(), String> {
    match placeholders(template).find(|p| !valid.contains(p)) {
        Some(unknown) => Err(format!(
            "unknown placeholder `{{{unknown}}}`; valid: {}",
            valid.iter().map(|v| format!("{{{v}}}")).collect::<Vec<_>>().join(", ")
        )),
        None => Ok(()),
    }
}

/// `template` with each `{name}` of `values` filled in.
pub(crate) fn fill<V: AsRef<str>>(template: &str, values: &[(&str, V)]) -> String {
    values.iter().fold(template.to_string(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value.as_ref()))
}

/// A digest pattern as a whole-line regular expression, `{repository}` standing for any name
/// the tool may print for `repository` (`index.docker.io/…` for `docker.io/…`).
fn whole_line(pattern: &str, repository: &str) -> String {
    let names: Vec<String> = ko_matrix_emulators::dockerhub::printed_names(repository)
        .into_iter()
        .map(|name| regex::escape(&name))
        .collect();
    format!("^(?:{})$", pattern.replace("{repository}", &format!("(?:{})", names.join("|"))))
}

/// The compiled digest pattern for `repository` (validated when the definition was parsed).
pub(crate) fn digest_regex(pattern: &str, repository: &str) -> regex::Regex {
    regex::Regex::new(&whole_line(pattern, repository)).expect("digest patterns are validated at parse time")
}

#[cfg(test)]
mod tests {
    use super::*;

    const MINIMAL: &str = "module = \"example.com/pusher\"\nrelease = { github = \"example/pusher\", asset = \"pusher_{os}_{arch}.tar.gz\", checksums = \"checksums.txt\" }\npayload = \"file\"\npush = [\"push\", \"{repository}:latest\", \"{payload}\"]\ndigest = \"Digest: (sha256:[0-9a-f]{64})\"\n";

    fn error(name: &str, text: &str) -> String {
        let e = parse(Path::new(name), text).unwrap_err();
        format!("{}:{}: {}", e.line, e.column, e.message)
    }

    #[test]
    fn a_minimal_definition() {
        let tool = parse(Path::new("tools/pusher.toml"), MINIMAL).unwrap();
        assert_eq!(
            (tool.name(), tool.go().package, tool.go().version_args),
            ("pusher", "example.com/pusher", &["version"][..])
        );
        assert_eq!(tool.release().binary, "pusher");
        assert!(tool.insecure_switch("push").is_empty() && tool.failure_patterns().is_empty());
        assert_eq!(tool.subcommand("login"), ["login"]);
    }

    #[test]
    fn a_printed_digest_wins_and_the_tag_stands_in_where_none_is_printed() {
        let text = format!("{MINIMAL}resolve_tag = \"latest\"\n");
        let tool = parse(Path::new("tools/pusher.toml"), &text).unwrap();
        assert_eq!(tool.digest, DigestSource::PrintedElseTag("Digest: (sha256:[0-9a-f]{64})".into(), "latest".into()));
    }

    #[test]
    fn errors_are_located_and_list_choices() {
        let with = |line: &str| format!("{MINIMAL}{line}\n");
        let cases = [
            ("pusher.toml", with("payload2 = \"file\""), "6:1: unknown field `payload2`, expected one of `module`, `package`, `version_var`, `version_args`, `release`, `payload`, `push`, `digest`, `resolve_tag`, `commands`, `flags`, `setup`, `env`, `insecure`, `failures`, `hook`, `copy`, `copy_source`, `copy_target`"),
            ("pusher.toml", MINIMAL.replace("\"file\"", "\"helm-chart\""), "3:11: unknown variant `helm-chart`, expected one of `app`, `image-tarball`, `file`, `chart`, `pushed-image`"),
            ("pusher.toml", MINIMAL.replace("{payload}\"]", "{media_type}\", \"{tag}\"]"), "4:56: unknown placeholder `{tag}`; valid: {repository}, {registry}, {namespace}, {payload}, {media_type} in `push` with payload = \"file\""),
            ("pusher.toml", MINIMAL.replace("\"file\"", "\"chart\"").replace("{payload}\"]", "{image}\"]"), "4:40: unknown placeholder `{image}`; valid: {repository}, {registry}, {namespace}, {payload} in `push` with payload = \"chart\""),
            ("pusher.toml", with("setup = [[\"registry\", \"set\", \"{payload}\"]]"), "6:30: unknown placeholder `{payload}`; valid: {repository}, {registry}, {namespace} in `setup`"),
            ("pusher.toml", with("insecure = { setup = [[]] }"), "1:1: `insecure.setup` command 1 is empty; give its arguments after the program, e.g. [\"registry\", \"set\"]"),
            ("pusher.toml", with("resolve_tag = \"v1:latest\""), "6:15: `resolve_tag` must be a tag (letters, digits, _ . -, up to 128, not starting with . or -); `v1:latest` is not"),
            ("pusher.toml", MINIMAL.replace("digest = \"Digest: (sha256:[0-9a-f]{64})\"", "resolve_tag = \"sha256-{image_hex}.sig\""), "5:15: unknown placeholder `{image_hex}`; valid:  in `resolve_tag` with payload = \"file\""),
            ("pusher.toml", MINIMAL.replace("digest = \"Digest: (sha256:[0-9a-f]{64})\"", "resolve_tag = \"v1:latest\""), "5:15: `resolve_tag` must be a tag (letters, digits, _ . -, up to 128, not starting with . or -); `v1:latest` is not"),
            ("pusher.toml", MINIMAL.replace("digest = \"Digest: (sha256:[0-9a-f]{64})\"\n", ""), "1:1: missing field `digest` (a pattern over the tool's output naming the pushed digest), or `resolve_tag` (a tag to resolve after the push)"),
            ("pusher.toml", MINIMAL.replace(", checksums = \"checksums.txt\"", ""), "1:1: `release` needs `asset` and `checksums` together (neither: the releases publish no binary the harness can verify, and only the go route builds the tool)"),
            ("pusher.toml", MINIMAL.replace("release = { ", "release = { download = \"get.example.com\", "), "2:24: `download` must be an http:// or https:// URL, e.g. https://get.helm.sh"),
            ("pusher.toml", MINIMAL.replace("(sha256:[0-9a-f]{64})", "sha256:[0-9a-f]{64}"), "5:10: `digest` needs a group around the digest, e.g. \"Digest: (sha256:[0-9a-f]{64})\""),
            ("pusher.toml", MINIMAL.replace("Digest: (", "{image}@("), "5:10: unknown placeholder `{image}`; valid: {repository} in `digest`"),
            ("pusher.toml", with("hook = \"ko\""), "6:8: this hook works on payload = \"app\""),
            ("pusher.toml", with("hook = \"helm\""), "6:8: unknown variant `helm`, expected `ko`"),
            ("pusher.toml", with("failures = [{ class = \"nope\", patterns = [\"x\"] }]"), "6:23: unknown variant `nope`, expected one of `credentials`, `unauthorized`, `denied`, `name-unknown`, `tag-immutable`, `invalid-name`, `realm-refused`, `unsupported`, `storage-refused`, `tls`, `network`, `build`, `timeout`, `other`"),
            ("pusher.toml", MINIMAL.replace("module = \"example.com/pusher\"\n", ""), "1:1: missing field `module`"),
            ("pusher.toml", with("copy = [\"cp\", \"{source}\", \"{dest}\"]"), "6:27: unknown placeholder `{dest}`; valid: {source}, {target} in `copy`"),
            ("pusher.toml", with("copy = [\"cp\", \"{source}\"]"), "6:8: `copy` names `{target}` once (found 0 times)"),
            ("pusher.toml", with("copy_source = { insecure = [\"--from-plain-http\"] }"), "6:15: copy options need a `copy` command: copy = [\"copy\", \"{source}\", \"{target}\"]"),
            ("pusher.toml", with("copy = [\"cp\", \"{source}\", \"{target}\"]\ncopy_target = { credentials = [\"--to-user\", \"{username}\"] }"), "7:45: unknown placeholder `{username}`; valid: {user}, {password} in `credentials`"),
            ("Pusher.toml", MINIMAL.to_string(), "1:1: `Pusher` cannot name a tool (the file's name is the tool's and its binary's): use lower-case letters, digits, - and _, starting with a letter"),
        ];
        for (name, text, want) in cases {
            assert_eq!(error(name, &text), want, "for:\n{text}");
        }
    }

    #[test]
    fn new_keys_are_read() {
        let text = MINIMAL
            .replace("\"file\"", "\"pushed-image\"")
            .replace("\"{repository}:latest\", \"{payload}\"", "\"{image}\"")
            .replace("digest = \"Digest: (sha256:[0-9a-f]{64})\"", "resolve_tag = \"sha256-{image_hex}.sig\"")
            + "setup = [[\"generate-key-pair\"]]\nenv = { PUSHER_PASSWORD = \"x\" }\nflags = { \"--username\" = \"--user\" }\ninsecure = { setup = [[\"registry\", \"set\", \"{registry}\"]] }\n";
        let tool = parse(Path::new("tools/pusher.toml"), &text).unwrap();
        assert_eq!(tool.payload(), PayloadKind::PushedImage);
        assert_eq!(tool.digest_source(), &DigestSource::Tag("sha256-{image_hex}.sig".into()));
        assert_eq!(tool.flag("--username"), "--user");
        assert_eq!(tool.flag("--username=u"), "--user=u");
        assert_eq!(tool.flag("--password-stdin"), "--password-stdin");
        assert_eq!(tool.flag("user=--username"), "user=--username", "only options are renamed");
        assert!(tool.insecure_switch("push").is_empty());
    }

    #[test]
    fn release_layouts() {
        let release = |table: &str| {
            let text = MINIMAL.replace(
                "release = { github = \"example/pusher\", asset = \"pusher_{os}_{arch}.tar.gz\", checksums = \"checksums.txt\" }",
                table,
            );
            let tool = parse(Path::new("tools/pusher.toml"), &text).unwrap();
            let r = tool.release();
            (r.download_base, r.dir, r.asset, r.checksums, r.packaging)
        };
        assert_eq!(
            release("release = { github = \"helm/helm\", download = \"https://get.helm.sh/\", dir = \"\", asset = \"helm-v{version}-{os}-{arch}.tar.gz\", checksums = \"{asset}.sha256\" }"),
            (Some("https://get.helm.sh"), "", "helm-v{version}-{os}-{arch}.tar.gz", Checksums::Sidecar, Packaging::TarGz)
        );
        assert_eq!(
            release("release = { github = \"sigstore/cosign\", asset = \"cosign-{os}-{arch}\", checksums = \"cosign_checksums.txt\" }"),
            (None, "v{version}", "cosign-{os}-{arch}", Checksums::List("cosign_checksums.txt"), Packaging::Bare)
        );
        assert_eq!(release("release = { github = \"regclient/regclient\" }").3, Checksums::Unpublished);
    }

    #[test]
    fn placeholders_are_filled() {
        assert_eq!(fill("{repository}:latest", &[("repository", "reg.test/app")]), "reg.test/app:latest");
        assert_eq!(placeholders("{repository}@(sha256:[0-9a-f]{64})").collect::<Vec<_>>(), ["repository"]);
    }
}
