//! Which tools and versions a command means, and the commands that only get binaries:
//! `fetch` and `versions`.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::ProvisionObserver;
use ko_matrix::provision::{Go, ToolchainPolicy};
use ko_matrix::services::binaries::ServiceBinaries;
use ko_matrix::tool::versions::{self, ReleaseIndex, Resolution, Selector};
use ko_matrix::tool::{self, FetchSettings, Source, Tool, ToolBinary, ToolFetcher};

use crate::{load_matrix, progress, BadInput, DEFAULT_CONFIG};

#[derive(Args)]
pub struct FetchArgs {
    /// Versions or selectors (v0.15.2, 0.15.2, latest, main, a commit), as `tool@selector` or
    /// bare for the first tool; default: matrix.toml's.
    versions: Vec<String>,
    /// Only these tools (comma-separated).
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    /// Also the world's programs (distribution's registry, Amazon's ECR helper) by their
    /// fetch route, whatever PATH holds: to provision a machine ahead of runs.
    #[arg(long)]
    services: bool,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Args, Default)]
pub struct SourceArgs {
    /// Route: auto, release, go or path (overrides matrix.toml).
    #[arg(long, value_parser = parse_source)]
    source: Option<Source>,
    /// Where release assets live (a mirror or local file server).
    #[arg(long, value_name = "URL")]
    release_base_url: Option<String>,
    /// Go toolchain for builds: auto, local or e.g. go1.21.13.
    #[arg(long, value_name = "TOOLCHAIN", value_parser = parse_toolchain)]
    go_toolchain: Option<ToolchainPolicy>,
    /// The tool's binary for --source path (one tool only).
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
}

impl SourceArgs {
    /// These arguments as given, for a command line that repeats them.
    pub fn to_args(&self) -> Vec<std::ffi::OsString> {
        let mut args: Vec<std::ffi::OsString> = Vec::new();
        if let Some(source) = self.source {
            let name = serde_json::to_value(source).ok().and_then(|v| v.as_str().map(String::from)).unwrap_or_default();
            args.extend(["--source".into(), name.into()]);
        }
        if let Some(url) = &self.release_base_url {
            args.extend(["--release-base-url".into(), url.into()]);
        }
        if let Some(toolchain) = &self.go_toolchain {
            let text = match toolchain {
                ToolchainPolicy::Auto => "auto".to_string(),
                ToolchainPolicy::Local => "local".to_string(),
                ToolchainPolicy::Exact(name) => name.clone(),
            };
            args.extend(["--go-toolchain".into(), text.into()]);
        }
        if let Some(path) = &self.path {
            args.extend(["--path".into(), path.into()]);
        }
        args
    }
}

fn parse_source(text: &str) -> Result<Source, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("expected one of: {}", Source::CHOICES))
}

fn parse_toolchain(text: &str) -> Result<ToolchainPolicy, String> {
    ToolchainPolicy::parse(text).ok_or_else(|| "expected auto, local or a Go release such as go1.21.13".into())
}

/// One tool a command works on: where its binaries come from and which versions.
pub struct ToolPlan {
    pub tool: &'static Tool,
    pub fetch: FetchSettings,
    pub selectors: Vec<(String, Selector)>,
}

fn tool_named(name: &str) -> Result<&'static Tool, BadInput> {
    tool::by_name(name).ok_or_else(|| BadInput(tool::unknown_tool(name)))
}

/// The tools and versions a command means. Start from matrix.toml's tools (or, without one,
/// the shorthand tool); `--tools` keeps only those named; `--versions` replaces the versions,
/// each `tool@selector` or a bare selector for the first tool, and then only the tools it
/// names run. `source` overrides apply to every tool.
pub fn plan(
    matrix: Option<&Matrix>,
    tools: &[String],
    cli_versions: &[String],
    source: &SourceArgs,
) -> Result<Vec<ToolPlan>, BadInput> {
    let mut plans: Vec<ToolPlan> = match matrix {
        Some(m) => m
            .tools
            .iter()
            .map(|t| ToolPlan { tool: t.tool, fetch: t.fetch.clone(), selectors: t.versions.clone() })
            .collect(),
        None => Vec::new(),
    };
    let named = |name: &str| -> Result<ToolPlan, BadInput> {
        Ok(ToolPlan { tool: tool_named(name)?, fetch: FetchSettings::default(), selectors: Vec::new() })
    };
    if !tools.is_empty() {
        let mut kept = Vec::new();
        for name in tools {
            let position = plans.iter().position(|p| p.tool.name() == name);
            kept.push(match position {
                Some(i) => plans.remove(i),
                None => named(name)?,
            });
        }
        plans = kept;
    }
    if plans.is_empty() {
        plans.push(ToolPlan { tool: tool::shorthand(), fetch: FetchSettings::default(), selectors: Vec::new() });
    }
    if !cli_versions.is_empty() {
        let mut wanted: Vec<(&'static Tool, (String, Selector))> = Vec::new();
        for text in cli_versions {
            let (tool, selector) = match text.split_once('@') {
                Some((name, selector)) => (tool_named(name)?, selector),
                None => (plans[0].tool, text.as_str()),
            };
            wanted.push((tool, (selector.to_string(), Selector::parse(selector).map_err(BadInput)?)));
        }
        for (tool, _) in &wanted {
            if !plans.iter().any(|p| p.tool.name() == tool.name()) {
                plans.push(named(tool.name())?);
            }
        }
        for plan in &mut plans {
            plan.selectors =
                wanted.iter().filter(|(t, _)| t.name() == plan.tool.name()).map(|(_, s)| s.clone()).collect();
        }
        plans.retain(|p| !p.selectors.is_empty());
    }
    if source.path.is_some() && plans.len() > 1 {
        return Err(BadInput("--path names one binary; choose its tool with --tools".into()));
    }
    for plan in &mut plans {
        if plan.selectors.is_empty() {
            return Err(BadInput(format!(
                "no versions of {0}: give them with --versions {0}@v1.2.3, or in [tools.{0}] in {DEFAULT_CONFIG}",
                plan.tool.name()
            )));
        }
        if let Some(source) = source.source {
            plan.fetch.source = source;
        }
        if let Some(url) = &source.release_base_url {
            plan.fetch.release_base_url = Some(url.clone());
        }
        if let Some(toolchain) = &source.go_toolchain {
            plan.fetch.go_toolchain = toolchain.clone();
        }
        if let Some(path) = &source.path {
            plan.fetch.path = Some(path.clone());
        }
    }
    Ok(plans)
}

/// Resolves a plan's selectors, saying on stderr what ranges and `latest` became.
pub async fn resolve(plan: &ToolPlan) -> anyhow::Result<Resolution> {
    let name = plan.tool.name();
    let resolution = versions::resolve_listing(plan.tool, &plan.selectors)
        .await
        .with_context(|| format!("resolving {name} versions"))?;
    for ((selector, picked), (_, parsed)) in resolution.steps.iter().zip(&plan.selectors) {
        if !matches!(parsed, Selector::Exact(_)) {
            eprintln!("versions: {name} {selector} → {}", picked.join(", "));
        }
    }
    if let Some(source) = resolution.index_source {
        eprintln!("versions: {name} release list from {source}");
    }
    Ok(resolution)
}

pub fn fetcher(plan: &ToolPlan, observer: Arc<dyn ProvisionObserver>) -> anyhow::Result<ToolFetcher> {
    Ok(ToolFetcher::new(plan.tool, Cache::from_env()?, plan.fetch.clone(), observer))
}

pub async fn fetch(config: Option<&Path>, args: FetchArgs) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, !args.versions.is_empty())?;
    let plans = plan(matrix.as_ref(), &args.tools, &args.versions, &args.source)?;
    let progress = Arc::new(progress::Progress::for_stderr());
    let mut fetchers = Vec::new();
    for plan in &plans {
        fetchers.push((fetcher(plan, progress.clone())?, resolve(plan).await?.versions));
    }
    let requests: Vec<(&ToolFetcher, String)> =
        fetchers.iter().flat_map(|(f, versions)| versions.iter().map(move |v| (f, v.clone()))).collect();
    let services = async {
        let Some(plan) = plans.first().filter(|_| args.services) else { return anyhow::Ok(Vec::new()) };
        // The tools' Go settings; their release host and path are theirs alone.
        let settings = FetchSettings { release_base_url: None, path: None, ..plan.fetch.clone() };
        Ok(ServiceBinaries::new(Cache::from_env()?, &settings, progress.clone()).fetch_all().await?)
    };
    let (binaries, services) = tokio::join!(tool::fetch::fetch_all(&requests), services);
    let (binaries, services): (Vec<ToolBinary>, _) = (binaries?, services?);
    if args.json {
        let mut listed: Vec<serde_json::Value> = binaries.iter().map(serde_json::to_value).collect::<Result<_, _>>()?;
        listed.extend(services.iter().map(|(name, installed)| {
            let m = &installed.manifest;
            serde_json::json!({ "tool": name, "version": m.version, "path": installed.path, "sha256": m.sha256, "route": m.route, "origin": m.origin, "from_cache": installed.from_cache })
        }));
        println!("{}", serde_json::to_string_pretty(&listed)?);
    } else {
        for binary in &binaries {
            let origin = if binary.from_cache { "cache" } else { "new" };
            println!(
                "{}\t{}\t{}\tsha256:{}\t{}",
                binary.label(),
                binary.route,
                origin,
                binary.sha256,
                binary.path.display()
            );
        }
        for (name, installed) in &services {
            let (m, origin) = (&installed.manifest, if installed.from_cache { "cache" } else { "new" });
            println!("{name}@{}\t{}\t{origin}\tsha256:{}\t{}", m.version, m.route, m.sha256, installed.path.display());
        }
    }
    Ok(0)
}

/// `versions [--tool T] [SELECTORS]`: the releases of each tool and what the selectors pick.
pub async fn list_versions(
    config: Option<&Path>,
    tool: Option<&str>,
    cli_selectors: &[String],
    json: bool,
) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, true)?;
    let tools: Vec<String> = tool.map(String::from).into_iter().collect();
    let none = SourceArgs { source: None, release_base_url: None, go_toolchain: None, path: None };
    let selectors_given = !cli_selectors.is_empty();
    let plans = if matrix.is_some() || selectors_given {
        plan(matrix.as_ref(), &tools, cli_selectors, &none)?
    } else {
        let tool = tool.map(tool_named).transpose()?.unwrap_or_else(tool::shorthand);
        vec![ToolPlan { tool, fetch: FetchSettings::default(), selectors: Vec::new() }]
    };
    let mut listed = Vec::new();
    let mut selected: Vec<String> = Vec::new();
    for plan in &plans {
        let go = Go::find(&format!("the {} release list", plan.tool.name())).await.ok();
        let index = ReleaseIndex::fetch(plan.tool, go.as_ref()).await?;
        let resolution = (!plan.selectors.is_empty())
            .then(|| versions::resolve(plan.tool, &plan.selectors, Some(&index)))
            .transpose()?;
        selected.extend(resolution.iter().flat_map(|r| r.versions.iter().map(|v| format!("{}@{v}", plan.tool.name()))));
        listed.push((plan.tool, index, resolution));
    }
    if json {
        let tools: Vec<serde_json::Value> = listed
            .iter()
            .map(|(tool, index, resolution)| {
                serde_json::json!({
                    "tool": tool.name(),
                    "source": index.source.to_string(),
                    "releases": index.versions.iter().map(|v| format!("v{v}")).collect::<Vec<_>>(),
                    "selected": resolution.as_ref().map(|r| &r.versions),
                })
            })
            .collect();
        // `selected`: every cell version, as `tool@version`, ready for `run --versions`.
        println!("{}", serde_json::to_string_pretty(&serde_json::json!({ "tools": tools, "selected": selected }))?);
        return Ok(0);
    }
    for (tool, index, resolution) in &listed {
        println!("{} releases ({}):", tool.name(), index.source);
        for release in &index.versions {
            println!("  v{release}");
        }
        if index.source == versions::IndexSource::GoProxy {
            println!("(a Go module proxy may list only the versions it has served; exact versions work whether listed or not)");
        }
        if let Some(resolution) = resolution {
            let by = if selectors_given {
                "the selectors given".to_string()
            } else {
                matrix.as_ref().map_or(Path::new(DEFAULT_CONFIG), |m| m.file.as_path()).display().to_string()
            };
            println!("{by} select(s):");
            for (selector, picked) in &resolution.steps {
                println!("  {selector} → {}", picked.join(", "));
            }
        }
    }
    Ok(0)
}
