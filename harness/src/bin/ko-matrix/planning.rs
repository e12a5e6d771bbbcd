//! `ko-matrix plan --shards N`: split the run's cells into shards of equal predicted time from
//! each cell's recorded duration, for `run --shard I/N --plan FILE`.

use std::path::{Path, PathBuf};

use clap::Args;
use ko_matrix::config::ScenarioPattern;
use ko_matrix::report::cell_id;
use ko_matrix::run;
use ko_matrix::schedule::{Durations, ShardPlan};

use crate::tools::{self, SourceArgs};
use crate::{load_matrix, BadInput};

#[derive(Args)]
pub struct PlanArgs {
    /// How many shards.
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    shards: u32,
    /// The versions the run will have (comma-separated, as `run --versions`).
    #[arg(long, value_delimiter = ',')]
    versions: Vec<String>,
    /// Only these tools, at matrix.toml's versions (as `run --tools`).
    #[arg(long, value_delimiter = ',')]
    tools: Vec<String>,
    /// Scenario names or globs instead of matrix.toml's (as `run --scenarios`).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Recorded durations [default: durations.json in the cache, which every run updates].
    #[arg(long, value_name = "FILE")]
    durations: Option<PathBuf>,
    /// Write the plan here, for `run --shard I/N --plan FILE`.
    #[arg(long, value_name = "FILE")]
    out: Option<PathBuf>,
}

pub async fn plan(config: Option<&Path>, args: PlanArgs) -> anyhow::Result<u8> {
    let mut matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    if !args.scenarios.is_empty() {
        matrix.scenarios = Some(
            args.scenarios.iter().map(|p| ScenarioPattern::from_cli(p)).collect::<Result<_, _>>().map_err(BadInput)?,
        );
    }
    let plans = tools::plan(Some(&matrix), &args.tools, &args.versions, &SourceArgs::default())?;
    let tool_scenarios =
        run::select_scenarios(&matrix, &plans.iter().map(|p| p.tool).collect::<Vec<_>>())?.tool_scenarios;
    let mut cells = Vec::new();
    for plan in &plans {
        let versions = tools::resolve(plan).await?.versions;
        let scenarios = tool_scenarios.iter().find(|(t, _)| *t == plan.tool.name()).map(|(_, s)| s.as_slice());
        for scenario in scenarios.unwrap_or_default() {
            cells.extend(versions.iter().map(|v| cell_id(plan.tool.name(), v, scenario)));
        }
    }
    let path = match args.durations {
        Some(path) if !path.is_file() => {
            return Err(BadInput(format!("--durations {}: no such file", path.display())).into())
        }
        Some(path) => path,
        None => ko_matrix::cache::Cache::from_env()?.root().join("durations.json"),
    };
    let durations = Durations::load(&path);
    if durations.is_empty() {
        eprintln!("note: no recorded durations in {}; every cell counts alike", path.display());
    }
    let shard_plan = ShardPlan::assign(&cells, &durations, args.shards);
    for (i, ms) in shard_plan.predicted_ms.iter().enumerate() {
        let count = shard_plan.cells.values().filter(|s| **s == i as u32 + 1).count();
        println!("shard {}/{}: {count} cells, predicted {}", i + 1, args.shards, seconds(*ms));
    }
    let mean = shard_plan.predicted_ms.iter().sum::<u64>() / u64::from(args.shards);
    println!(
        "makespan {} (mean shard {}, largest/mean {:.3}); {} of {} cells never timed, estimated from {}",
        seconds(shard_plan.makespan_ms()),
        seconds(mean),
        shard_plan.balance(),
        shard_plan.estimated,
        cells.len(),
        path.display()
    );
    if let Some(out) = &args.out {
        shard_plan.write(out)?;
        eprintln!("wrote {}: run each shard with --shard I/{} --plan {}", out.display(), args.shards, out.display());
    }
    Ok(0)
}

fn seconds(ms: u64) -> String {
    format!("{:.1}s", ms as f64 / 1000.0)
}
