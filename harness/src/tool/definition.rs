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
use crate::payload::Payload;
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
    digest: Spanned<String>,
    #[serde(default)]
    commands: BTreeMap<String, Vec<String>>,
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
    asset: String,
    checksums: String,
    /// The executable's name inside the archive; the tool's name by default.
    binary: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawInsecure {
    #[serde(default)]
    switch: Vec<String>,
    commands: Option<Vec<String>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFailure {
    class: FailClass,
    patterns: Vec<String>,
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
}

impl PayloadKind {
    /// What `{payload}` names, relative to where the push runs.
    pub(crate) fn file(self) -> &'static str {
        match self {
            PayloadKind::App => ".",
            PayloadKind::ImageTarball => Payload::IMAGE_TARBALL,
            PayloadKind::File => Payload::ARTIFACT_FILE,
        }
    }

    /// As a definition spells it.
    fn as_str(self) -> &'static str {
        match self {
            PayloadKind::App => "app",
            PayloadKind::ImageTarball => "image-tarball",
            PayloadKind::File => "file",
        }
    }

    /// The placeholders a push argument may hold with this payload.
    fn placeholders(self) -> &'static [&'static str] {
        match self {
            PayloadKind::File => &["repository", "payload", "media_type"],
            PayloadKind::App | PayloadKind::ImageTarball => &["repository", "payload"],
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

    for arg in &raw.push {
        check_placeholders(arg.get_ref(), raw.payload.placeholders()).map_err(|valid| {
            err(arg.span(), format!("{valid} in `push` with payload = \"{}\"", raw.payload.as_str()))
        })?;
    }
    check_placeholders(raw.digest.get_ref(), &["repository"])
        .map_err(|valid| err(raw.digest.span(), format!("{valid} in `digest`")))?;
    match regex::Regex::new(&whole_line(raw.digest.get_ref(), "reg.test/app")) {
        Ok(re) if re.captures_len() > 1 => {}
        Ok(_) => {
            return Err(err(
                raw.digest.span(),
                "`digest` needs a group around the digest, e.g. \"Digest: (sha256:[0-9a-f]{64})\"".into(),
            ))
        }
        Err(e) => return Err(err(raw.digest.span(), format!("`digest` is not a valid pattern: {e}"))),
    }
    let copy = copy_command(raw.copy, raw.copy_source, raw.copy_target, &err)?;
    if let Some(hook) = &raw.hook {
        let needs = hook.get_ref().needs();
        if needs != raw.payload {
            return Err(err(hook.span(), format!("this hook works on payload = \"{}\"", needs.as_str())));
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
    let release = ReleaseLayout {
        github_repo: leak(raw.release.github),
        download_base: None,
        dir: "v{version}",
        asset: leak(raw.release.asset),
        checksums: Checksums::List(leak(raw.release.checksums)),
        packaging: Packaging::TarGz,
        binary: raw.release.binary.map_or(name, leak),
    };
    Ok(Tool {
        go,
        release,
        payload: raw.payload,
        push: raw.push.into_iter().map(Spanned::into_inner).collect(),
        commands: raw.commands,
        insecure: raw.insecure.switch,
        insecure_commands: raw.insecure.commands,
        digest: raw.digest.into_inner(),
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
pub(crate) fn fill(template: &str, values: &[(&str, &str)]) -> String {
    values.iter().fold(template.to_string(), |text, (name, value)| text.replace(&format!("{{{name}}}"), value))
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
    fn errors_are_located_and_list_choices() {
        let with = |line: &str| format!("{MINIMAL}{line}\n");
        let cases = [
            ("pusher.toml", with("payload2 = \"file\""), "6:1: unknown field `payload2`, expected one of `module`, `package`, `version_var`, `version_args`, `release`, `payload`, `push`, `digest`, `commands`, `insecure`, `failures`, `hook`, `copy`, `copy_source`, `copy_target`"),
            ("pusher.toml", MINIMAL.replace("\"file\"", "\"chart\""), "3:11: unknown variant `chart`, expected one of `app`, `image-tarball`, `file`"),
            ("pusher.toml", MINIMAL.replace("{payload}\"]", "{media_type}\", \"{tag}\"]"), "4:56: unknown placeholder `{tag}`; valid: {repository}, {payload}, {media_type} in `push` with payload = \"file\""),
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
    fn placeholders_are_filled() {
        assert_eq!(fill("{repository}:latest", &[("repository", "reg.test/app")]), "reg.test/app:latest");
        assert_eq!(placeholders("{repository}@(sha256:[0-9a-f]{64})").collect::<Vec<_>>(), ["repository"]);
    }
}
