//! `matrix.toml`: which tools at which versions, from where, which scenarios, how hard to run.
//!
//! Every mistake is reported as `file:line:col: message` with the offending line, what was
//! expected and the valid choices; unknown keys are errors, not silently ignored.
//!
//! The choices users write (`services.runtime`, `ecr.backend`) are defined here; the code
//! acting on them imports them from here, never the other way, so config has no cycle.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::located::ConfigError;
use crate::provision::ToolchainPolicy;
use crate::tool::versions::{Selector, SELECTOR_FORMS};
use crate::tool::{FetchSettings, Source, Tool};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMatrix {
    /// `[ko]`: shorthand for `[tools.ko]`, as matrix files had it before tools were a parameter.
    ko: Option<Spanned<RawTool>>,
    tools: Option<std::collections::BTreeMap<String, Spanned<RawTool>>>,
    #[serde(default)]
    run: RawRun,
    #[serde(default)]
    services: RawServices,
    #[serde(default)]
    ecr: RawEcr,
    /// `[profiles.<name>]`: other versions for the same tools and scenarios (`--profile`).
    profiles: Option<std::collections::BTreeMap<String, Spanned<RawProfile>>>,
}

/// One `[profiles.<name>]` table: `<tool> = [versions]` for tools that have a table.
type RawProfile = std::collections::BTreeMap<String, Spanned<Vec<Spanned<String>>>>;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawServices {
    #[serde(default)]
    runtime: RuntimeChoice,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEcr {
    #[serde(default)]
    backend: EcrBackendChoice,
    localstack_image: Option<Spanned<String>>,
    localstack_endpoint: Option<Spanned<String>>,
}

/// `services.runtime`: how registries run (`services::runtime` acts on it).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RuntimeChoice {
    /// Docker when an engine answers, else a local process.
    #[default]
    Auto,
    Process,
    Docker,
}

impl RuntimeChoice {
    pub const CHOICES: &'static str = "auto, process, docker";

    /// As matrix.toml and `--runtime` spell it.
    pub fn name(self) -> &'static str {
        match self {
            RuntimeChoice::Auto => "auto",
            RuntimeChoice::Process => "process",
            RuntimeChoice::Docker => "docker",
        }
    }
}

/// `ecr.backend`: which ECR backend ECR scenarios run against (`aws::localstack` picks
/// one for this machine).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EcrBackendChoice {
    /// LocalStack where it can run (an endpoint, or a token and a Docker engine), else embedded.
    Auto,
    #[default]
    Embedded,
    Localstack,
}

/// The LocalStack image and pinned tag used unless `ecr.localstack_image` says otherwise.
pub const DEFAULT_LOCALSTACK_IMAGE: &str = "localstack/localstack-pro:4.4.0";

/// How a run's services are provided.
#[derive(Debug, Clone, Default)]
pub struct ServicesConfig {
    /// `auto`, `process` or `docker` for the registries.
    pub runtime: RuntimeChoice,
    pub ecr: EcrSettings,
    /// The run is inside a network namespace of its own (see [`crate::containment`]): a
    /// world that needs the host's network (Docker, LocalStack) is refused, not started.
    pub contained: bool,
}

/// `[ecr]`: which ECR backend ECR scenarios run against.
#[derive(Debug, Clone)]
pub struct EcrSettings {
    pub backend: EcrBackendChoice,
    /// `name:tag`, pinned.
    pub localstack_image: String,
    /// A running LocalStack's edge endpoint to attach to.
    pub localstack_endpoint: Option<String>,
}

impl Default for EcrSettings {
    fn default() -> Self {
        EcrSettings {
            backend: EcrBackendChoice::Embedded,
            localstack_image: DEFAULT_LOCALSTACK_IMAGE.into(),
            localstack_endpoint: None,
        }
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTool {
    versions: Spanned<Vec<Spanned<String>>>,
    /// Globs narrowing the run's scenarios for this tool.
    scenarios: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    source: Source,
    release_base_url: Option<Spanned<String>>,
    path: Option<Spanned<String>>,
    go_toolchain: Option<Spanned<String>>,
    build_timeout: Option<Spanned<String>>,
    download_stall_timeout: Option<Spanned<String>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRun {
    scenarios: Option<Vec<Spanned<String>>>,
    jobs: Option<Spanned<i64>>,
    cell_timeout: Option<Spanned<String>>,
}

/// A scenario name or glob as written, kept with its place in the file.
#[derive(Debug, Clone)]
pub struct ScenarioPattern {
    pub pattern: String,
    /// Where in matrix.toml; `None` for `--scenarios`.
    span: Option<Range<usize>>,
}

impl ScenarioPattern {
    /// A pattern given on the command line (no place in a file).
    pub fn from_cli(pattern: &str) -> Result<ScenarioPattern, String> {
        globset::Glob::new(pattern.strip_prefix('!').unwrap_or(pattern))
            .map_err(|e| format!("--scenarios {pattern:?} is not a valid glob: {e}"))?;
        Ok(ScenarioPattern { pattern: pattern.to_string(), span: None })
    }
}

/// One `[tools.<name>]` table: a tool, its versions, where they come from, its scenarios.
#[derive(Debug, Clone)]
pub struct ToolConfig {
    pub tool: &'static Tool,
    pub versions: Vec<(String, Selector)>,
    pub fetch: FetchSettings,
    /// `None`: every scenario the run selects.
    pub scenarios: Option<Vec<ScenarioPattern>>,
}

/// A validated `matrix.toml`.
#[derive(Debug, Clone)]
pub struct Matrix {
    pub file: PathBuf,
    /// In the file's order; the first is the one bare versions (`--versions v0.15.2`) mean.
    pub tools: Vec<ToolConfig>,
    /// `None`: every scenario.
    pub scenarios: Option<Vec<ScenarioPattern>>,
    pub jobs: usize,
    pub cell_timeout: Duration,
    pub services: ServicesConfig,
    /// `[profiles.<name>]`, validated: each tool's versions in that profile.
    profiles: Vec<Profile>,
    text: String,
}

/// A named set of versions that replaces the tools' own (`ko-matrix --profile NAME`): the
/// full release history, say, for the same tools and scenarios.
#[derive(Debug, Clone)]
struct Profile {
    name: String,
    versions: Vec<(&'static Tool, Vec<(String, Selector)>)>,
}

pub(crate) const DEFAULT_CELL_TIMEOUT: Duration = Duration::from_secs(300);

impl Matrix {
    /// Reads `file`, after the tool definitions in `tools/` beside it (which its tables may name).
    pub fn load(file: &Path) -> Result<Matrix, ConfigError> {
        let text = std::fs::read_to_string(file).map_err(|e| ConfigError::unreadable(file, &e))?;
        crate::tool::load_dir(&file.parent().unwrap_or(Path::new(".")).join("tools"))?;
        Matrix::parse(file, &text)
    }

    pub fn parse(file: &Path, text: &str) -> Result<Matrix, ConfigError> {
        let err = |span: Range<usize>, message: String| ConfigError::at(file, text, span, message);
        let raw: RawMatrix = toml::from_str(text).map_err(|e| ConfigError::from_toml(file, text, &e))?;

        let mut tables: Vec<(&'static Tool, &Spanned<RawTool>)> = Vec::new();
        if let Some(table) = &raw.ko {
            tables.push((crate::tool::shorthand(), table));
        }
        for (name, table) in raw.tools.iter().flatten() {
            let tool = crate::tool::by_name(name).ok_or_else(|| err(table.span(), crate::tool::unknown_tool(name)))?;
            if tables.iter().any(|(t, _)| t.name() == tool.name()) {
                return Err(err(table.span(), format!("[tools.{name}] repeats the [{name}] table; keep one of them")));
            }
            tables.push((tool, table));
        }
        // A TOML table's keys come back sorted: the file's order is the tables' order.
        tables.sort_by_key(|(_, table)| table.span().start);
        if tables.is_empty() {
            return Err(err(
                0..0,
                format!(
                    "no tool to test: add a [tools.<name>] table with `versions` (known tools: {})",
                    crate::tool::names()
                ),
            ));
        }
        let tools = tables
            .into_iter()
            .map(|(tool, table)| tool_config(file, text, tool, table.get_ref()))
            .collect::<Result<Vec<_>, _>>()?;

        let mut profiles = Vec::new();
        for (name, table) in raw.profiles.iter().flatten() {
            let mut versions = Vec::new();
            for (tool_name, list) in table.get_ref() {
                let config = tools.iter().find(|t| t.tool.name() == tool_name).ok_or_else(|| {
                    let names: Vec<&str> = tools.iter().map(|t| t.tool.name()).collect();
                    err(
                        list.span(),
                        format!(
                            "[profiles.{name}] names `{tool_name}`, which has no [tools.{tool_name}] table here; \
                             a profile changes the versions of this file's tools: {}",
                            names.join(", ")
                        ),
                    )
                })?;
                versions.push((config.tool, selectors(file, text, list)?));
            }
            if versions.is_empty() {
                return Err(err(table.span(), format!("[profiles.{name}] is empty; give `<tool> = [versions]`")));
            }
            profiles.push(Profile { name: name.clone(), versions });
        }

        let jobs = match &raw.run.jobs {
            Some(jobs) if *jobs.get_ref() < 1 => return Err(err(jobs.span(), "`jobs` must be 1 or more".into())),
            Some(jobs) => *jobs.get_ref() as usize,
            None => std::thread::available_parallelism().map_or(2, |n| n.get()),
        };
        let cell_timeout = match &raw.run.cell_timeout {
            Some(d) => duration(d).map_err(|m| err(d.span(), m))?,
            None => DEFAULT_CELL_TIMEOUT,
        };
        let scenarios = raw.run.scenarios.as_ref().map(|list| scenario_patterns(file, text, list)).transpose()?;
        let mut ecr = EcrSettings { backend: raw.ecr.backend, ..EcrSettings::default() };
        if let Some(image) = &raw.ecr.localstack_image {
            if !image.get_ref().contains(':') || image.get_ref().ends_with(":latest") {
                return Err(err(
                    image.span(),
                    format!(
                        "localstack_image must be pinned as name:tag (not latest), e.g. {}",
                        DEFAULT_LOCALSTACK_IMAGE
                    ),
                ));
            }
            ecr.localstack_image = image.get_ref().clone();
        }
        if let Some(endpoint) = &raw.ecr.localstack_endpoint {
            if !endpoint.get_ref().starts_with("http://127.") && !endpoint.get_ref().starts_with("http://localhost") {
                return Err(err(
                    endpoint.span(),
                    "localstack_endpoint must be an http:// address on loopback, e.g. http://127.0.0.1:4566".into(),
                ));
            }
            ecr.localstack_endpoint = Some(endpoint.get_ref().replace("localhost", "127.0.0.1"));
        }
        let services = ServicesConfig { runtime: raw.services.runtime, ecr, contained: false };
        Ok(Matrix {
            file: file.to_path_buf(),
            tools,
            scenarios,
            jobs,
            cell_timeout,
            services,
            profiles,
            text: text.to_string(),
        })
    }

    /// This matrix with profile `name`'s versions in place of the tools' own; a tool the
    /// profile does not name keeps its versions.
    pub fn with_profile(mut self, name: &str) -> Result<Matrix, ConfigError> {
        let Some(profile) = self.profiles.iter().find(|p| p.name == name) else {
            let known: Vec<&str> = self.profiles.iter().map(|p| p.name.as_str()).collect();
            let choices =
                if known.is_empty() { "none: add a [profiles.<name>] table".into() } else { known.join(", ") };
            return Err(ConfigError {
                file: self.file.clone(),
                line: 0,
                column: 0,
                message: format!("--profile {name}: no [profiles.{name}] in this file; its profiles: {choices}"),
                excerpt: String::new(),
            });
        };
        for (tool, versions) in profile.versions.clone() {
            if let Some(config) = self.tools.iter_mut().find(|t| t.tool.name() == tool.name()) {
                config.versions = versions;
            }
        }
        Ok(self)
    }

    /// The names of the `[profiles.*]` tables.
    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.iter().map(|p| p.name.as_str())
    }

    /// The table of the tool called `name`.
    pub fn tool(&self, name: &str) -> Option<&ToolConfig> {
        self.tools.iter().find(|t| t.tool.name() == name)
    }

    /// `tool`'s scenarios out of `selected` (the run's): narrowed by its `scenarios` globs,
    /// which must each match a scenario of `known`.
    pub fn tool_scenarios(
        &self,
        tool: &ToolConfig,
        known: &[String],
        selected: &[String],
    ) -> Result<Vec<String>, ConfigError> {
        let Some(patterns) = &tool.scenarios else {
            return Ok(selected.to_vec());
        };
        let in_tool = self.matching(patterns, known)?;
        Ok(selected.iter().filter(|s| in_tool.contains(s)).cloned().collect())
    }

    /// An error at the first of `tool`'s own `scenarios` patterns that takes in only scenarios
    /// of `known` that `refused` (a pattern naming copies for a tool that copies nothing):
    /// `why` the tool cannot run them. A pattern that also takes in others is no error.
    pub fn refuse_only(
        &self,
        tool: &ToolConfig,
        known: &[String],
        refused: impl Fn(&str) -> bool,
        why: &str,
    ) -> Result<(), ConfigError> {
        for p in tool.scenarios.iter().flatten().filter(|p| !p.pattern.starts_with('!')) {
            let matcher = globset::Glob::new(&p.pattern).expect("validated at parse time").compile_matcher();
            let matched: Vec<&String> = known.iter().filter(|name| matcher.is_match(name.as_str())).collect();
            if !matched.is_empty() && matched.iter().all(|name| refused(name)) {
                let message = format!(
                    "`{}` names scenarios {why}; remove it, or write `!{}` to leave them out",
                    p.pattern, p.pattern
                );
                return Err(match &p.span {
                    Some(span) => ConfigError::at(&self.file, &self.text, span.clone(), message),
                    None => {
                        ConfigError { file: self.file.clone(), line: 0, column: 0, message, excerpt: String::new() }
                    }
                });
            }
        }
        Ok(())
    }

    /// The scenarios this matrix selects out of `known`, in `known`'s order. A name or glob
    /// that matches nothing is an error that lists the known scenarios.
    pub fn select_scenarios(&self, known: &[String]) -> Result<Vec<String>, ConfigError> {
        match &self.scenarios {
            Some(patterns) => self.matching(patterns, known),
            None => Ok(known.to_vec()),
        }
    }

    fn matching(&self, patterns: &[ScenarioPattern], known: &[String]) -> Result<Vec<String>, ConfigError> {
        // In order: a pattern selects what it matches, `!pattern` leaves it out again; a list
        // that starts with an exclusion starts from every scenario.
        let mut selected = vec![patterns.first().is_some_and(|p| p.pattern.starts_with('!')); known.len()];
        for p in patterns {
            let (keep, glob) = p.pattern.strip_prefix('!').map_or((true, p.pattern.as_str()), |glob| (false, glob));
            let matcher = globset::Glob::new(glob).expect("validated at parse time").compile_matcher();
            let mut any = false;
            for (i, name) in known.iter().enumerate() {
                if matcher.is_match(name) {
                    selected[i] = keep;
                    any = true;
                }
            }
            if !any {
                let choices = if known.is_empty() { "(none found)".to_string() } else { known.join(", ") };
                let message = format!("no scenario matches `{}`; known scenarios: {choices}", p.pattern);
                return Err(match &p.span {
                    Some(span) => ConfigError::at(&self.file, &self.text, span.clone(), message),
                    None => {
                        ConfigError { file: "--scenarios".into(), line: 0, column: 0, message, excerpt: String::new() }
                    }
                });
            }
        }
        Ok(known.iter().zip(selected).filter(|(_, s)| *s).map(|(n, _)| n.clone()).collect())
    }
}

/// Validates one tool's table.
fn tool_config(file: &Path, text: &str, tool: &'static Tool, raw: &RawTool) -> Result<ToolConfig, ConfigError> {
    let err = |span: Range<usize>, message: String| ConfigError::at(file, text, span, message);
    let versions = selectors(file, text, &raw.versions)?;

    let mut fetch = FetchSettings { source: raw.source, ..FetchSettings::default() };
    if let Some(url) = &raw.release_base_url {
        let valid = url.get_ref().starts_with("http://") || url.get_ref().starts_with("https://");
        if !valid {
            return Err(err(
                url.span(),
                format!(
                    "release_base_url must be an http:// or https:// URL, e.g. {}",
                    tool.release().default_base_url()
                ),
            ));
        }
        fetch.release_base_url = Some(url.get_ref().clone());
    }
    match (&raw.path, fetch.source) {
        (Some(path), Source::Path) => {
            let base = file.parent().unwrap_or(Path::new("."));
            fetch.path = Some(base.join(path.get_ref()));
            if versions.len() != 1 || !matches!(versions[0].1, Selector::Exact(_)) {
                return Err(err(
                    raw.versions.span(),
                    "with source = \"path\", `versions` names exactly the one version the binary is".into(),
                ));
            }
        }
        (Some(path), _) => return Err(err(path.span(), "`path` only applies with source = \"path\"".into())),
        (None, Source::Path) => {
            return Err(err(
                raw.versions.span(),
                format!("source = \"path\" needs `path = \"/path/to/{0}\"` in the {0} table", tool.name()),
            ));
        }
        (None, _) => {}
    }
    if let Some(toolchain) = &raw.go_toolchain {
        fetch.go_toolchain = ToolchainPolicy::parse(toolchain.get_ref()).ok_or_else(|| {
            err(
                toolchain.span(),
                format!(
                    "unknown go_toolchain `{}`; expected auto, local, or a Go release such as go1.21.13",
                    toolchain.get_ref()
                ),
            )
        })?;
    }
    if let Some(d) = &raw.build_timeout {
        fetch.build_timeout = duration(d).map_err(|m| err(d.span(), m))?;
    }
    if let Some(d) = &raw.download_stall_timeout {
        fetch.stall_timeout = duration(d).map_err(|m| err(d.span(), m))?;
    }
    let scenarios = raw.scenarios.as_ref().map(|list| scenario_patterns(file, text, list)).transpose()?;
    Ok(ToolConfig { tool, versions, fetch, scenarios })
}

/// A `versions` list: one or more selectors, each checked where it is written.
fn selectors(
    file: &Path,
    text: &str,
    list: &Spanned<Vec<Spanned<String>>>,
) -> Result<Vec<(String, Selector)>, ConfigError> {
    let err = |span: Range<usize>, message: String| ConfigError::at(file, text, span, message);
    let mut versions = Vec::new();
    for entry in list.get_ref() {
        let selector = Selector::parse(entry.get_ref()).map_err(|m| err(entry.span(), m))?;
        versions.push((entry.get_ref().clone(), selector));
    }
    if versions.is_empty() {
        return Err(err(list.span(), format!("`versions` is empty; expected one or more of: {SELECTOR_FORMS}")));
    }
    Ok(versions)
}

fn scenario_patterns(file: &Path, text: &str, list: &[Spanned<String>]) -> Result<Vec<ScenarioPattern>, ConfigError> {
    list.iter()
        .map(|entry| {
            let glob = entry.get_ref().strip_prefix('!').unwrap_or(entry.get_ref());
            globset::Glob::new(glob)
                .map_err(|e| ConfigError::at(file, text, entry.span(), format!("not a valid glob: {e}")))?;
            Ok(ScenarioPattern { span: Some(entry.span()), pattern: entry.get_ref().clone() })
        })
        .collect()
}

fn duration(value: &Spanned<String>) -> Result<Duration, String> {
    humantime::parse_duration(value.get_ref())
        .map_err(|e| format!("`{}` is not a duration ({e}); write e.g. \"90s\", \"5m\" or \"1h 30m\"", value.get_ref()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Matrix, ConfigError> {
        Matrix::parse(Path::new("matrix.toml"), text)
    }

    fn error(text: &str) -> String {
        let e = parse(text).unwrap_err();
        format!("{}:{}: {}", e.line, e.column, e.message)
    }

    #[test]
    fn a_full_file_parses() {
        let m = parse(
            r#"
[ko]
versions = ["v0.15.1", "0.15.2", ">=0.15, <0.17", "latest-2", "main"]
source = "go"
go_toolchain = "go1.21.13"
build_timeout = "20m"

[run]
scenarios = ["registry/*", "ecr/env-session"]
jobs = 3
cell_timeout = "90s"

[services]
runtime = "process"

[ecr]
backend = "localstack"
localstack_image = "localstack/localstack-pro:4.3.0"
"#,
        )
        .unwrap();
        let ko = &m.tools[0];
        assert_eq!(ko.tool.name(), crate::tool::shorthand().name(), "[ko] is shorthand for [tools.ko]");
        assert_eq!(ko.versions.len(), 5);
        assert_eq!(ko.versions[1].1, Selector::Exact("v0.15.2".into()));
        assert_eq!(ko.fetch.source, Source::Go);
        assert_eq!(ko.fetch.go_toolchain, ToolchainPolicy::Exact("go1.21.13".into()));
        assert_eq!(ko.fetch.build_timeout, Duration::from_secs(1200));
        assert_eq!((m.jobs, m.cell_timeout), (3, Duration::from_secs(90)));
        assert_eq!(m.services.runtime, RuntimeChoice::Process);
        assert_eq!(m.services.ecr.backend, EcrBackendChoice::Localstack);
        assert_eq!(m.services.ecr.localstack_image, "localstack/localstack-pro:4.3.0");
    }

    #[test]
    fn a_profile_replaces_the_versions_of_the_tools_it_names() {
        let text = r#"
[tools.ko]
versions = ["v0.15.1"]
scenarios = ["registry/*"]

[tools.crane]
versions = ["v0.20.7"]

[profiles.history]
ko = ["v0.12.0", "v0.15.1", ">=0.16"]
"#;
        let m = parse(text).unwrap();
        assert_eq!(m.profile_names().collect::<Vec<_>>(), ["history"]);
        let history = m.clone().with_profile("history").unwrap();
        let ko = history.tool("ko").unwrap();
        assert_eq!(
            ko.versions.iter().map(|(text, _)| text.as_str()).collect::<Vec<_>>(),
            ["v0.12.0", "v0.15.1", ">=0.16"]
        );
        assert_eq!(ko.scenarios.as_ref().map(Vec::len), Some(1), "a profile keeps the tool's scenarios");
        assert_eq!(
            history.tool("crane").unwrap().versions,
            m.tool("crane").unwrap().versions,
            "an unnamed tool keeps its own"
        );

        let unknown = m.with_profile("nightly").unwrap_err().to_string();
        assert_eq!(
            unknown,
            "matrix.toml: --profile nightly: no [profiles.nightly] in this file; its profiles: history"
        );
    }

    #[test]
    fn profile_mistakes_are_located() {
        let base = "[tools.ko]\nversions = [\"v0.15.1\"]\n";
        assert_eq!(
            error(&format!("{base}[profiles.history]\noras = [\"v1.2.3\"]\n")),
            "4:8: [profiles.history] names `oras`, which has no [tools.oras] table here; a profile changes the versions of this file's tools: ko"
        );
        assert_eq!(
            error(&format!("{base}[profiles.history]\nko = [\"v0 15\"]\n")),
            format!("4:7: `v0 15` is not a version; expected {SELECTOR_FORMS}")
        );
        assert_eq!(
            error(&format!("{base}[profiles.history]\nko = []\n")),
            format!("4:6: `versions` is empty; expected one or more of: {SELECTOR_FORMS}")
        );
        assert_eq!(
            error(&format!("{base}[profiles.history]\n")),
            "3:1: [profiles.history] is empty; give `<tool> = [versions]`"
        );
    }

    #[test]
    fn errors_are_located_and_list_choices() {
        let cases = [
            ("[ko]\nversions = [\"v0.15.1\"]\nsource = \"docker\"\n", "3:10: unknown variant `docker`, expected one of `auto`, `release`, `go`, `path`"),
            ("[ko]\nversions = [\"v0.15.1\"]\nsorce = \"go\"\n", "3:1: unknown field `sorce`, expected one of `versions`, `scenarios`, `source`, `release_base_url`, `path`, `go_toolchain`, `build_timeout`, `download_stall_timeout`"),
            ("[ko]\nversions = [\"v0.15.1\", \"v 1\"]\n", "2:24: `v 1` is not a version; expected an exact version (v0.15.2), a semver range (\">=0.15, <0.17\"), latest, latest-N, or a branch/commit (main, 348ca2d)"),
            ("[ko]\nversions = []\n", "2:12: `versions` is empty; expected one or more of: an exact version (v0.15.2), a semver range (\">=0.15, <0.17\"), latest, latest-N, or a branch/commit (main, 348ca2d)"),
            ("[ko]\nversions = [\"latest\"]\n[run]\ncell_timeout = \"soon\"\n", "4:16: `soon` is not a duration (expected number at 0); write e.g. \"90s\", \"5m\" or \"1h 30m\""),
            ("[ko]\nversions = [\"latest\"]\ngo_toolchain = \"1.21\"\n", "3:16: unknown go_toolchain `1.21`; expected auto, local, or a Go release such as go1.21.13"),
            ("[ko]\nversions = [\"latest\"]\n[run]\njobs = 0\n", "4:8: `jobs` must be 1 or more"),
            ("[ko]\nversions = [\"latest\"]\npath = \"/bin/ko\"\n", "3:8: `path` only applies with source = \"path\""),
            ("[ko]\nversions = \"latest\"\n", "2:12: invalid type: string \"latest\", expected a sequence"),
            ("[ko\n", "1:4: invalid table header\nexpected `.`, `]`"),
            ("[ko]\nversions = [\"latest\"]\n[ecr]\nbackend = \"moto\"\n", "4:11: unknown variant `moto`, expected one of `auto`, `embedded`, `localstack`"),
            ("[ko]\nversions = [\"latest\"]\n[ecr]\nlocalstack_image = \"localstack/localstack-pro:latest\"\n", "4:20: localstack_image must be pinned as name:tag (not latest), e.g. localstack/localstack-pro:4.4.0"),
            ("[ko]\nversions = [\"latest\"]\n[ecr]\nlocalstack_endpoint = \"http://10.1.1.1:4566\"\n", "4:23: localstack_endpoint must be an http:// address on loopback, e.g. http://127.0.0.1:4566"),
            ("[tools.docker]\nversions = [\"latest\"]\n", "1:1: unknown tool `docker`; known tools: ko, cosign, crane, helm, oras, regctl (define one in tools/docker.toml beside matrix.toml: docs/tool-definitions.md)"),
            ("[ko]\nversions = [\"latest\"]\n[tools.ko]\nversions = [\"v0.15.1\"]\n", "3:1: [tools.ko] repeats the [ko] table; keep one of them"),
            ("[run]\njobs = 2\n", "1:1: no tool to test: add a [tools.<name>] table with `versions` (known tools: ko, cosign, crane, helm, oras, regctl)"),
            ("[tools.crane]\nversions = [\"v0.20.2\"]\nscenarios = [\"[\"]\n", "3:14: not a valid glob: error parsing glob '[': unclosed character class; missing ']'"),
            ("[tools.oras]\nversions = [\"v1.2.0\"]\nsource = \"path\"\n", "2:12: source = \"path\" needs `path = \"/path/to/oras\"` in the oras table"),
        ];
        for (text, want) in cases {
            assert_eq!(error(text), want, "for:\n{text}");
        }
    }

    #[test]
    fn a_pattern_naming_only_what_a_tool_cannot_run_is_located() {
        let m = parse("[tools.ko]\nversions = [\"v0.15.2\"]\nscenarios = [\"registry/*\", \"copy/*\"]\n").unwrap();
        let known = ["registry/anonymous".to_string(), "copy/same-registry".to_string()];
        let copies = |name: &str| name.starts_with("copy/");
        let e = m.refuse_only(&m.tools[0], &known, copies, "ko cannot run").unwrap_err();
        assert_eq!((e.line, e.column), (3, 28));
        assert_eq!(
            e.message,
            "`copy/*` names scenarios ko cannot run; remove it, or write `!copy/*` to leave them out"
        );
        let wide = parse("[tools.ko]\nversions = [\"v0.15.2\"]\nscenarios = [\"*\", \"!copy/*\"]\n").unwrap();
        assert!(
            wide.refuse_only(&wide.tools[0], &known, copies, "x").is_ok(),
            "a pattern taking in others too is no error"
        );
    }

    #[test]
    fn tools_keep_the_files_order_and_their_own_scenarios() {
        let m = parse("[tools.oras]\nversions = [\"v1.2.0\"]\nscenarios = [\"registry/*\"]\n\n[tools.ko]\nversions = [\"v0.15.2\"]\n\n[tools.crane]\nversions = [\"v0.20.2\"]\nsource = \"go\"\n").unwrap();
        let names: Vec<&str> = m.tools.iter().map(|t| t.tool.name()).collect();
        assert_eq!(names, ["oras", crate::tool::shorthand().name(), "crane"]);
        assert_eq!(m.tools[2].fetch.source, Source::Go);
        let known: Vec<String> =
            ["registry/anonymous", "registry/basic-auths", "ecr/env-session"].map(String::from).to_vec();
        let selected = ["registry/basic-auths".to_string(), "ecr/env-session".to_string()];
        assert_eq!(
            m.tool_scenarios(&m.tools[0], &known, &selected).unwrap(),
            ["registry/basic-auths"],
            "the tool's globs narrow the run's selection"
        );
        assert_eq!(
            m.tool_scenarios(&m.tools[1], &known, &selected).unwrap(),
            selected,
            "no globs: the run's selection"
        );
        let typo = parse("[tools.crane]\nversions = [\"v0.20.2\"]\nscenarios = [\"ecr/env-sesion\"]\n").unwrap();
        let e = typo.tool_scenarios(&typo.tools[0], &known, &selected).unwrap_err();
        assert_eq!((e.line, e.column), (3, 14));
        assert!(e.message.starts_with("no scenario matches `ecr/env-sesion`; known scenarios: "), "{}", e.message);
    }

    #[test]
    fn the_excerpt_points_at_the_span() {
        let e = parse("[ko]\nversions = [\"v0.15.1\"]\nsource = \"docker\"\n").unwrap_err();
        assert_eq!(e.excerpt, "  |\n3 | source = \"docker\"\n  |          ^^^^^^^^");
        assert!(e.to_string().starts_with("matrix.toml:3:10: unknown variant `docker`"));
    }

    #[test]
    fn scenario_selection_by_name_and_glob() {
        let known: Vec<String> =
            ["registry/anonymous", "registry/basic-auths", "ecr/env-session"].map(String::from).to_vec();
        let m =
            parse("[ko]\nversions = [\"latest\"]\n[run]\nscenarios = [\"ecr/env-session\", \"registry/*\"]\n").unwrap();
        assert_eq!(m.select_scenarios(&known).unwrap(), known);
        let m = parse("[ko]\nversions = [\"latest\"]\n[run]\nscenarios = [\"ecr/env-sesion\"]\n").unwrap();
        let e = m.select_scenarios(&known).unwrap_err();
        assert_eq!((e.line, e.column), (4, 14));
        assert_eq!(e.message, "no scenario matches `ecr/env-sesion`; known scenarios: registry/anonymous, registry/basic-auths, ecr/env-session");
        let all = parse("[ko]\nversions = [\"latest\"]\n").unwrap();
        assert_eq!(all.select_scenarios(&known).unwrap().len(), 3);
        // `!pattern` leaves out again; first in the list, it starts from every scenario.
        let but = parse("[ko]\nversions = [\"latest\"]\n[run]\nscenarios = [\"!registry/basic-*\"]\n").unwrap();
        assert_eq!(but.select_scenarios(&known).unwrap(), ["registry/anonymous", "ecr/env-session"]);
        let then =
            parse("[ko]\nversions = [\"latest\"]\n[run]\nscenarios = [\"registry/*\", \"!*/anonymous\"]\n").unwrap();
        assert_eq!(then.select_scenarios(&known).unwrap(), ["registry/basic-auths"]);
        let typo = parse("[ko]\nversions = [\"latest\"]\n[run]\nscenarios = [\"!registry/nothing\"]\n").unwrap();
        assert!(typo
            .select_scenarios(&known)
            .unwrap_err()
            .message
            .starts_with("no scenario matches `!registry/nothing`"));
    }

    #[test]
    fn the_repository_matrix_is_valid() {
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join("matrix.toml");
        Matrix::load(&file).unwrap();
    }
}
