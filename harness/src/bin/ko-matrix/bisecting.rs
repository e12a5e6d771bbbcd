//! `ko-matrix bisect`: which release, commit or dependency upgrade of a tool turned a cell red.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ko_matrix::bisect::{self, cells, cells::Cells, cells::CellsError};
use ko_matrix::config::ServicesConfig;
use ko_matrix::containment::{self, Containment, Wanted};
use ko_matrix::run::{self, RunError, RunnerOptions};
use ko_matrix::scenario::Scenario;
use ko_matrix::tool::{self, FetchError, Source, Tool, ToolFetcher};
use ko_matrix::world::WorldPlan;

use crate::signals::Signals;
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
    /// Internal: this is the bisection's world inside the namespace; it runs the cell for each
    /// tool binary on stdin and answers on stdout.
    #[arg(long, hide = true)]
    contained: bool,
}

fn parse_mode(text: &str) -> Result<bisect::Mode, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| "expected one of: releases, commits, deps".into())
}

pub async fn bisect(config: Option<&Path>, args: BisectArgs, signals: Signals) -> anyhow::Result<u8> {
    let (good, bad) = (tool::fetch::normalize(&args.good), tool::fetch::normalize(&args.bad));
    if good == bad {
        return Err(BadInput(format!(
            "--good and --bad are both {good}: a bisection needs a good and a bad version whose cells differ"
        ))
        .into());
    }
    crate::check_out_dir(&args.out)?;
    if args.mode == bisect::Mode::Commits && args.repo.is_none() {
        return Err(BadInput(
            "--mode commits needs --repo PATH, a local clone of the tool with both ends' tags".into(),
        )
        .into());
    }
    let wanted = Wanted::from_env().map_err(BadInput)?;
    if args.contained {
        // Like `run --contained`: what bisect.json will record must be true.
        let seen = containment::interfaces().context("listing network interfaces")?;
        if seen != ["lo"] {
            return Err(BadInput(format!(
                "--contained is for the bisect process ko-matrix starts in its own network namespace; this process sees {}",
                seen.join(", ")
            ))
            .into());
        }
    }
    let matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    let known = ko_matrix::scenario::discover(&run::scenarios_dir(&matrix))?;
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let scenario = known
        .into_iter()
        .find(|s| s.name == args.scenario)
        .ok_or_else(|| BadInput(format!("no scenario `{}`; known scenarios: {}", args.scenario, names.join(", "))))?;
    let tool = match &args.tool {
        Some(name) => tool::by_name(name).ok_or_else(|| BadInput(tool::unknown_tool(name)))?,
        None => matrix.tools[0].tool,
    };
    let progress = Arc::new(progress::Progress::for_stderr());
    let mut settings = matrix.tool(tool.name()).map(|t| t.fetch.clone()).unwrap_or_default();
    if args.mode == bisect::Mode::Commits {
        settings.source = Source::Go;
    }
    let fetcher = ToolFetcher::new(tool, ko_matrix::cache::Cache::from_env()?, settings, progress.clone());
    let services = ServicesConfig { contained: args.contained, ..matrix.services.clone() };
    let options = RunnerOptions {
        scenarios: vec![scenario.clone()],
        services: services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: None,
        durations: None,
    };
    if args.contained {
        // A signal stops the cells and the world (and removes its files) by dropping them.
        let serving = async {
            let runner = run::Runner::start(&options, fetcher.go()).await?;
            let stdin = tokio::io::BufReader::new(tokio::io::stdin());
            cells::serve(&runner, &scenario, stdin, tokio::io::stdout()).await.context("serving the bisection's cells")
        };
        return tokio::select! {
            served = serving => served.map(|()| 0),
            code = signals.received() => Ok(code),
        };
    }
    // Everything that needs the network (the world's programs now, each probe's fetch or build
    // later) happens in this process; the world and the cells go into a namespace of their own.
    let starting = async {
        // The ends first, one after the other, before any world starts: a version that does not
        // exist is bad input, and what is fetched here the search finds in the cache.
        for end in [&good, &bad] {
            if args.mode == bisect::Mode::Deps {
                let provision = |source| FetchError::Provision { tool: tool.name(), version: end.clone(), source };
                fetcher.go().resolve(tool.go(), end).await.map_err(|e| provision(Box::new(e)))?;
            } else {
                fetcher.fetch(end).await?;
            }
        }
        let plan = WorldPlan::decide(std::slice::from_ref(&scenario), &services).await.map_err(RunError::from)?;
        plan.provision(fetcher.go()).await.map_err(RunError::from)?;
        let reason = match (wanted, plan.host_network()) {
            (Wanted::ProxyOnly, _) => format!("forced by {}=proxy-only", containment::ENV),
            (Wanted::Auto, Some(reason)) => reason,
            (Wanted::Auto, None) => match containment::spawn(contained_bisect(config, &args)?) {
                Ok(child) => match Cells::contained(child).await {
                    Ok(cells) => return Ok(Ok(cells)),
                    // It said why on stderr; exit as it did.
                    Err(CellsError::Exited { status }) => return Ok(Err(status.code().map_or(3, |c| c as u8))),
                    Err(e) => return Err(e.into()),
                },
                Err(containment::SpawnError::Refused(refused)) => {
                    format!("the kernel refused a user namespace: {refused}")
                }
                Err(e) => return Err(e.into()),
            },
        };
        let runner = run::Runner::start(&options, fetcher.go()).await?;
        anyhow::Ok(Ok(Cells::here(runner, Containment::ProxyOnly(reason))))
    };
    let cells = tokio::select! {
        started = starting => match started? {
            Ok(cells) => cells,
            Err(code) => return Ok(code),
        },
        code = signals.received() => return Ok(code),
    };
    bisect_with(cells, args, tool, &scenario, &fetcher, progress.as_ref(), signals).await
}

/// The bisection itself, its probes run by `cells`; writes bisect.json and prints the answer.
async fn bisect_with(
    cells: Cells,
    args: BisectArgs,
    tool: &'static Tool,
    scenario: &Scenario,
    fetcher: &ToolFetcher,
    progress: &progress::Progress,
    signals: Signals,
) -> anyhow::Result<u8> {
    match &cells.containment {
        Containment::Namespace => {
            // The contained process gets a terminal's signal too, and says so itself.
            signals.delegate();
            eprintln!("containment: {}: the world and the cells reach nothing but loopback", containment::NAMESPACE)
        }
        proxy_only => eprintln!("containment: {proxy_only}: cells are kept off the network by proxy variables only"),
    }
    let result = tokio::select! {
        result = search(&cells, args, tool, scenario, fetcher, progress) => result,
        code = signals.received() => {
            // Passed on, so that a SIGTERM sent to this process alone stops the contained one too.
            cells.signal(if code == 130 { libc::SIGINT } else { libc::SIGTERM });
            Ok(code)
        }
    };
    // Whatever the answer, a contained world stops by itself and removes its files.
    let stopped = cells.stop().await;
    let code = result?;
    stopped?;
    Ok(code)
}

async fn search(
    cells: &Cells,
    args: BisectArgs,
    tool: &'static Tool,
    scenario: &Scenario,
    fetcher: &ToolFetcher,
    progress: &progress::Progress,
) -> anyhow::Result<u8> {
    let (good, bad) = (tool::fetch::normalize(&args.good), tool::fetch::normalize(&args.bad));
    let mut bisector = bisect::Bisect::new(cells, fetcher, scenario, progress);
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
            let repo = args.repo.expect("checked before anything started");
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
        "{} probes, {} builds run, {:.1}s; containment: {}; {}",
        report.probes.len(),
        report.builds,
        report.wall_ms as f64 / 1000.0,
        report.containment,
        path.display()
    );
    Ok(0)
}

/// This bisection again, as the process that runs its world and cells inside the namespace.
fn contained_bisect(config: Option<&Path>, args: &BisectArgs) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().context("finding the ko-matrix executable")?);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["bisect", "--contained", "--good", &args.good, "--bad", &args.bad, "--scenario", &args.scenario]);
    if let Some(tool) = &args.tool {
        cmd.args(["--tool", tool]);
    }
    cmd.arg("--out").arg(&args.out);
    cmd.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::piped());
    // Should this process end without waiting for it, it does not run on alone.
    cmd.kill_on_drop(true);
    Ok(cmd)
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
