//! `ko-matrix bisect`: which release, commit or dependency upgrade of a tool turned a cell red.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use ko_matrix::bisect;
use ko_matrix::run::{self, RunnerOptions};
use ko_matrix::tool::{self, Source, ToolFetcher};

use crate::{load_matrix, progress, BadInput};

#[derive(Args)]
pub struct BisectArgs {
    /// The tool to bisect [default: matrix.toml's first].
    #[arg(long)]
    tool: Option<String>,
    #[arg(long)]
    good: String,
    #[arg(long)]
    bad: String,
    /// The scenario whose cell differs between good and bad.
    #[arg(long)]
    scenario: String,
    /// releases, commits or deps.
    #[arg(long, default_value = "releases", value_parser = parse_mode)]
    mode: bisect::Mode,
    /// Releases mode: the versions to search (default: the release list).
    #[arg(long, value_delimiter = ',')]
    candidates: Option<Vec<String>>,
    /// Commits mode: a local clone of the tool to list commits from.
    #[arg(long, value_name = "PATH")]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "results/latest", value_name = "DIR")]
    out: PathBuf,
}

fn parse_mode(text: &str) -> Result<bisect::Mode, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| "expected one of: releases, commits, deps".into())
}

pub async fn bisect(config: Option<&Path>, args: BisectArgs) -> anyhow::Result<u8> {
    let (good, bad) = (tool::fetch::normalize(&args.good), tool::fetch::normalize(&args.bad));
    if good == bad {
        return Err(BadInput(format!(
            "--good and --bad are both {good}: a bisection needs a good and a bad version whose cells differ"
        ))
        .into());
    }
    crate::check_out_dir(&args.out)?;
    let matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    let known = ko_matrix::scenario::discover(&run::scenarios_dir(&matrix))?;
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let scenario = known
        .into_iter()
        .find(|s| s.name == args.scenario)
        .ok_or_else(|| BadInput(format!("no scenario `{}`; known scenarios: {}", args.scenario, names.join(", "))))?;
    let tool = match &args.tool {
        Some(name) => tool::by_name(name)
            .ok_or_else(|| BadInput(format!("unknown tool `{name}`; built-in tools: {}", tool::names())))?,
        None => matrix.tools[0].tool,
    };
    let progress = Arc::new(progress::Progress::for_stderr());
    let mut settings = matrix.tool(tool.name()).map(|t| t.fetch.clone()).unwrap_or_default();
    if args.mode == bisect::Mode::Commits {
        settings.source = Source::Go;
    }
    let fetcher = ToolFetcher::new(tool, ko_matrix::cache::Cache::from_env()?, settings, progress.clone());
    let options = RunnerOptions {
        scenarios: vec![scenario.clone()],
        services: matrix.services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: None,
        durations: None,
    };
    let runner = run::Runner::start(&options, fetcher.go()).await?;
    let mut bisector = bisect::Bisect::new(&runner, &fetcher, &scenario, progress.as_ref());
    let report = match args.mode {
        bisect::Mode::Releases => {
            let candidates = bisect::releases_between(tool, &good, &bad, args.candidates).await?;
            eprintln!(
                "bisect: {} {} release(s) between {good} and {bad}: {}",
                tool.name(),
                candidates.len(),
                candidates.join(", ")
            );
            bisector.ordered(bisect::Mode::Releases, &good, &bad, candidates).await?
        }
        bisect::Mode::Commits => {
            let repo = args.repo.ok_or_else(|| {
                BadInput(format!(
                    "--mode commits needs --repo PATH, a local clone of {} with both ends' tags",
                    tool.name()
                ))
            })?;
            let commits = bisect::commits_between(&repo, &good, &bad)?;
            eprintln!("bisect: {} commit(s) between {good} and {bad}", commits.len());
            bisector.ordered(bisect::Mode::Commits, &good, &bad, commits).await?
        }
        bisect::Mode::Deps => bisector.dependencies(&good, &bad).await?,
    };
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("bisect.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!(
        "bisect ({:?}) of {} {} between {} ({}) and {} ({}):",
        report.mode, report.tool, report.scenario, report.good, report.good_outcome, report.bad, report.bad_outcome
    );
    for probe in &report.probes {
        println!(
            "  {:>2}. {:<5} {:<24} {:>6.1}s  {}",
            probe.k,
            format!("{:?}", probe.verdict).to_lowercase(),
            probe.outcome,
            probe.duration_ms as f64 / 1000.0,
            probe.what
        );
    }
    println!("culprit: {}", report.culprit);
    match &report.narrowing {
        Some(narrowing) => print_narrowing(narrowing),
        None => {
            for (module, good_versions, bad_versions) in &report.separating_modules {
                let shown =
                    |versions: &[String]| if versions.is_empty() { "(absent)".to_string() } else { versions.join(",") };
                println!(
                    "  separates the builds: {module}: passing {} / failing {}",
                    shown(good_versions),
                    shown(bad_versions)
                );
            }
        }
    }
    println!(
        "{} probes, {} builds run, {:.1}s; {}",
        report.probes.len(),
        report.builds,
        report.wall_ms as f64 / 1000.0,
        path.display()
    );
    Ok(0)
}

/// The second stage, ranked: the modules that break the cell, then what MVS brings along with
/// them; the rest of the delta is counted (bisect.json lists it).
fn print_narrowing(narrowing: &bisect::Narrowing) {
    println!("chain: {}", narrowing.chain);
    let mut rank = 0;
    for (upgrade, role) in narrowing
        .culprit
        .iter()
        .map(|u| (u, "breaks the cell"))
        .chain(narrowing.carried.iter().map(|u| (u, "brought along by MVS")))
    {
        rank += 1;
        println!("  {rank:>2}. {:<64} {role}", upgrade.to_string());
    }
    let shown = |module: &str| narrowing.culprit.iter().chain(&narrowing.carried).any(|u| u.module == module);
    let rest = narrowing.raised.iter().chain(&narrowing.added).filter(|u| !shown(&u.module)).count();
    if rest > 0 {
        println!("  and {rest} more raised or added module(s) that do not break it: bisect.json (narrowing.raised, narrowing.added)");
    }
}
