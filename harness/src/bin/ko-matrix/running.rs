//! `ko-matrix run`: every selected tool version against every selected scenario.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use clap::Args;
use ko_matrix::config::{RuntimeChoice, ScenarioPattern, ServicesConfig};
use ko_matrix::outcome::Outcome;
use ko_matrix::report::render_table;
use ko_matrix::run::{self, RunnerOptions};

use crate::signals::Signals;
use crate::tools::{self, SourceArgs};
use crate::{load_matrix, progress, BadInput};

#[derive(Args)]
pub struct RunArgs {
    /// Versions to run instead of matrix.toml's (comma-separated): `tool@selector`, or a bare
    /// selector for the first tool. Only the tools named run.
    #[arg(long, value_delimiter = ',')]
    versions: Vec<String>,
    /// Only these tools (comma-separated), at matrix.toml's versions.
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Scenario names or globs instead of matrix.toml's (comma-separated).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Cells at once [default: matrix.toml's, else the number of cores].
    #[arg(long)]
    jobs: Option<usize>,
    /// Where matrix.json and the logs go.
    #[arg(long, default_value = "results/latest", value_name = "DIR")]
    out: PathBuf,
    /// Exit 1 when any cell failed.
    #[arg(long)]
    fail_on_fail: bool,
    /// Run only slice i of n (e.g. 2/4); merge the shards with `ko-matrix merge`.
    #[arg(long, value_parser = run::Shard::parse, value_name = "I/N")]
    shard: Option<run::Shard>,
    /// How services run: auto, process or docker (overrides matrix.toml).
    #[arg(long, value_parser = parse_runtime)]
    runtime: Option<RuntimeChoice>,
    #[command(flatten)]
    source: SourceArgs,
}

fn parse_runtime(text: &str) -> Result<RuntimeChoice, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| format!("expected one of: {}", RuntimeChoice::CHOICES))
}

pub async fn run(config: Option<&Path>, args: RunArgs, signals: Signals) -> anyhow::Result<u8> {
    let mut matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    if !args.scenarios.is_empty() {
        matrix.scenarios = Some(args.scenarios.iter().map(|p| ScenarioPattern::from_cli(p)).collect::<Result<_, _>>().map_err(BadInput)?);
    }
    let baseline = run::committed_snapshots(&matrix)?;
    let observer = Arc::new(progress::Progress::for_stderr());
    let plans = tools::plan(Some(&matrix), &args.tools, &args.versions, &args.source)?;
    let fetchers = plans.iter().map(|p| tools::fetcher(p, observer.clone())).collect::<anyhow::Result<Vec<_>>>()?;
    // Until cells run there is nothing to keep: a signal just stops.
    let prepared = async {
        let mut versions = Vec::new();
        for (plan, fetcher) in plans.iter().zip(&fetchers) {
            let resolution = tools::resolve(plan).await?;
            eprintln!("versions: {} {}", plan.tool.name(), resolution.versions.join(", "));
            versions.push((fetcher, resolution.versions));
        }
        let selection = run::select(&matrix, &versions).await?;
        eprintln!("scenarios: {}", selection.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
        anyhow::Ok(selection)
    };
    let selection = tokio::select! {
        selection = prepared => selection?,
        code = signals.received() => return Ok(code),
    };
    let options = RunnerOptions {
        scenarios: selection.scenarios.clone(),
        services: ServicesConfig { runtime: args.runtime.unwrap_or(matrix.services.runtime), ..matrix.services.clone() },
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: baseline.clone(),
        durations: Some(ko_matrix::cache::Cache::from_env()?.root().join("durations.json")),
    };
    let stop = {
        let signals = signals.clone();
        async move {
            signals.received().await;
        }
    };
    let go = fetchers[0].go();
    let report = run::run(&selection, args.shard, &options, args.jobs.unwrap_or(matrix.jobs), go, observer, stop).await?;
    let json = report.write_all(&args.out, baseline.as_ref())?;
    println!("{}", render_table(&report));
    eprintln!("{}; {} (and matrix.md, report.html, junit.xml)", report.summary(), json.display());
    if let Some(code) = signals.code() {
        return Ok(code);
    }
    if report.count(Outcome::InfraError) > 0 {
        return Ok(3);
    }
    Ok(if args.fail_on_fail && report.count(Outcome::Fail) > 0 { 1 } else { 0 })
}
