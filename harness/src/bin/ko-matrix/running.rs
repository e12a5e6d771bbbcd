//! `ko-matrix run`: every selected tool version against every selected scenario.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ko_matrix::config::{RuntimeChoice, ScenarioPattern, ServicesConfig};
use ko_matrix::containment::{self, Containment, Wanted};
use ko_matrix::outcome::Outcome;
use ko_matrix::report::render_table;
use ko_matrix::run::{self, RunError, RunnerOptions, Selection};
use ko_matrix::schedule::ShardPlan;
use ko_matrix::world::WorldPlan;

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
    #[arg(long, value_parser = parse_jobs)]
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
    /// With --shard: the cells each shard runs, as `ko-matrix plan --out` wrote them.
    #[arg(long, requires = "shard", value_name = "FILE")]
    plan: Option<PathBuf>,
    /// How services run: auto, process or docker (overrides matrix.toml).
    #[arg(long, value_parser = parse_runtime)]
    runtime: Option<RuntimeChoice>,
    #[command(flatten)]
    source: SourceArgs,
    /// Internal: this is the run inside the namespace; `--versions` are exact and in order.
    #[arg(long, hide = true)]
    contained: bool,
}

fn parse_jobs(text: &str) -> Result<usize, String> {
    match text.parse::<usize>() {
        Ok(0) => Err("at least 1 cell must run at a time; give 1 or more".into()),
        Ok(jobs) => Ok(jobs),
        Err(_) => Err(format!("`{text}` is not a number of cells; give 1 or more")),
    }
}

fn parse_runtime(text: &str) -> Result<RuntimeChoice, String> {
    serde_json::from_value(serde_json::Value::String(text.into()))
        .map_err(|_| format!("expected one of: {}", RuntimeChoice::CHOICES))
}

pub async fn run(config: Option<&Path>, args: RunArgs, signals: Signals) -> anyhow::Result<u8> {
    let wanted = Wanted::from_env().map_err(BadInput)?;
    crate::check_out_dir(&args.out)?;
    if args.contained {
        // What the report will record must be true: only loopback here.
        let seen = containment::interfaces().context("listing network interfaces")?;
        if seen != ["lo"] {
            return Err(BadInput(format!(
                "--contained is for the run ko-matrix starts in its own network namespace; this process sees {}",
                seen.join(", ")
            ))
            .into());
        }
    }
    let shard = match (&args.shard, &args.plan) {
        (Some(shard), Some(plan)) => Some(shard.clone().with_plan(ShardPlan::read(plan)?).map_err(BadInput)?),
        (shard, _) => shard.clone(),
    };
    let mut matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    if !args.scenarios.is_empty() {
        matrix.scenarios = Some(
            args.scenarios.iter().map(|p| ScenarioPattern::from_cli(p)).collect::<Result<_, _>>().map_err(BadInput)?,
        );
    }
    let baseline = run::committed_snapshots(&matrix)?;
    let observer = Arc::new(progress::Progress::for_stderr());
    let plans = tools::plan(Some(&matrix), &args.tools, &args.versions, &args.source)?;
    let fetchers = plans.iter().map(|p| tools::fetcher(p, observer.clone())).collect::<anyhow::Result<Vec<_>>>()?;
    let services = ServicesConfig {
        runtime: args.runtime.unwrap_or(matrix.services.runtime),
        contained: args.contained,
        ..matrix.services.clone()
    };
    let go = fetchers[0].go();
    // The scenarios first: a selection no tool runs is the user's to fix, before anything starts.
    let tools: Vec<_> = plans.iter().map(|p| p.tool).collect();
    let scenarios = run::select_scenarios(&matrix, &tools)?.scenarios;
    // Until cells run there is nothing to keep: a signal just stops.
    let prepared = async {
        let mut versions = Vec::new();
        for (plan, fetcher) in plans.iter().zip(&fetchers) {
            let resolution = tools::resolve(plan).await?;
            if !args.contained {
                eprintln!("versions: {} {}", plan.tool.name(), resolution.versions.join(", "));
            }
            versions.push((fetcher, resolution.versions));
        }
        // The world's programs come while the tools do: on a fresh machine both are
        // downloads or builds (Go builds take turns: KO_MATRIX_BUILD_JOBS).
        let world = async {
            if args.contained {
                // Everything that needs the network was done by the outer run.
                return anyhow::Ok(Ok(()));
            }
            let plan = WorldPlan::decide(&scenarios, &services).await.map_err(RunError::from)?;
            plan.provision(go).await.map_err(RunError::from)?;
            if wanted == Wanted::ProxyOnly {
                return Ok(Err(format!("forced by {}=proxy-only", containment::ENV)));
            }
            Ok(plan.host_network().map_or(Ok(()), Err))
        };
        let (selection, world) = tokio::join!(run::select(&matrix, &versions), world);
        let mut selection = selection?;
        if args.contained {
            // The order the outer run resolved (an exact pseudo-version sorts differently
            // from the branch it was resolved from).
            let position = |label: &str| args.versions.iter().position(|v| v == label);
            selection.versions.sort_by_key(|b| position(&b.label()));
        } else {
            eprintln!(
                "scenarios: {}",
                selection.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", ")
            );
        }
        anyhow::Ok((selection, world?))
    };
    let (selection, ready) = tokio::select! {
        prepared = prepared => prepared?,
        code = signals.received() => return Ok(code),
    };
    let containment = if args.contained {
        eprintln!("containment: {}: services and cells reach nothing but loopback", containment::NAMESPACE);
        Containment::Namespace
    } else {
        // Everything that needs the network happened out here; then the run itself goes
        // into a namespace of its own, as a second ko-matrix process.
        let reason = match ready {
            Ok(()) => match containment::spawn(contained_run(config, &args, &plans, &selection)?) {
                Ok(child) => return wait_contained(child, signals).await,
                Err(containment::SpawnError::Refused(refused)) => {
                    format!("the kernel refused a user namespace: {refused}")
                }
                Err(e) => return Err(e.into()),
            },
            Err(reason) => reason,
        };
        let containment = Containment::ProxyOnly(reason);
        eprintln!("containment: {containment}: cells are kept off the network by proxy variables only");
        containment
    };
    let options = RunnerOptions {
        scenarios: selection.scenarios.clone(),
        services,
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
    let mut report =
        run::run(&selection, shard.as_ref(), &options, args.jobs.unwrap_or(matrix.jobs), go, observer, stop).await?;
    report.containment = containment.to_string();
    let json = report.write_all(&args.out, baseline.as_ref())?;
    println!("{}", render_table(&report));
    eprintln!(
        "{}; containment: {}; leak check: {}; {} (and matrix.md, report.html, junit.xml)",
        report.summary(),
        report.containment,
        report.leak_check,
        json.display()
    );
    // A flaky cell fails nothing, so the summary names each one.
    eprint!("{}", ko_matrix::report::flaky::listing(&report));
    if let Some(code) = signals.code() {
        return Ok(code);
    }
    if report.count(Outcome::InfraError) > 0 {
        return Ok(3);
    }
    Ok(if args.fail_on_fail && report.count(Outcome::Fail) > 0 { 1 } else { 0 })
}

/// This run again, as the process that runs inside the namespace: the same matrix, scenarios
/// and output, with the versions already resolved and fetched (it needs no network).
fn contained_run(
    config: Option<&Path>,
    args: &RunArgs,
    plans: &[tools::ToolPlan],
    selection: &Selection,
) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().context("finding the ko-matrix executable")?);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["run", "--contained"]);
    let tools: Vec<&str> = plans.iter().map(|p| p.tool.name()).collect();
    cmd.arg(format!("--tools={}", tools.join(",")));
    cmd.arg(format!("--versions={}", selection.versions.iter().map(|b| b.label()).collect::<Vec<_>>().join(",")));
    for pattern in &args.scenarios {
        cmd.arg(format!("--scenarios={pattern}"));
    }
    if let Some(jobs) = args.jobs {
        cmd.arg(format!("--jobs={jobs}"));
    }
    cmd.arg("--out").arg(&args.out);
    if args.fail_on_fail {
        cmd.arg("--fail-on-fail");
    }
    if let Some(shard) = &args.shard {
        cmd.arg(format!("--shard={}/{}", shard.index, shard.count));
    }
    if let Some(plan) = &args.plan {
        cmd.arg("--plan").arg(plan);
    }
    if let Some(runtime) = args.runtime {
        cmd.arg(format!("--runtime={}", runtime.name()));
    }
    cmd.args(args.source.to_args());
    // Should this process end without waiting for it, it does not run on alone.
    cmd.kill_on_drop(true);
    Ok(cmd)
}

/// Waits for the contained run, passing it a Ctrl-C or SIGTERM (it stops its cells and
/// writes its reports, and says so), and exits as it did.
async fn wait_contained(mut child: tokio::process::Child, signals: Signals) -> anyhow::Result<u8> {
    signals.delegate();
    let pid = child.id().map(|pid| pid as i32);
    let mut forwarded = false;
    loop {
        tokio::select! {
            status = child.wait() => {
                let status = status.context("waiting for the contained run")?;
                return Ok(match (status.code(), status.signal()) {
                    (Some(code), _) => code as u8,
                    (None, Some(signal)) => (128 + signal) as u8,
                    (None, None) => 3,
                });
            }
            code = signals.received(), if !forwarded => {
                forwarded = true;
                if let Some(pid) = pid {
                    let signal = if code == 130 { libc::SIGINT } else { libc::SIGTERM };
                    // SAFETY: signalling our own child, which has not been reaped yet.
                    unsafe { libc::kill(pid, signal) };
                }
            }
        }
    }
}
