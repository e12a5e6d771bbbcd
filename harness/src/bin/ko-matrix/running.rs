//! `ko-matrix run`: every selected tool version against every selected scenario.

use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use clap::Args;
use futures_util::{Stream, StreamExt};
use ko_matrix::config::{RuntimeChoice, ScenarioPattern, ServicesConfig};
use ko_matrix::containment::{self, Containment, Wanted};
use ko_matrix::outcome::Outcome;
use ko_matrix::report::{render_table, MatrixReport};
use ko_matrix::run::{self, RunError, RunEvent, RunObserver, RunPlan, RunnerOptions, Scheduling};
use ko_matrix::schedule::ShardPlan;
use ko_matrix::timings::{BuildRecorder, Clock, Timings};
use ko_matrix::tool::fetch::fetch_each;
use ko_matrix::tool::{FetchError, ToolBinary, ToolFetcher};
use ko_matrix::world::WorldPlan;
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

use crate::handoff::{self, Feed};
use crate::progress::{self, Progress, Stream as Output};
use crate::signals::Signals;
use crate::tools::{self, SourceArgs};
use crate::{load_matrix, BadInput};

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
    /// Print where the run's time went at the end: resolving, each download and build,
    /// services, cells (first and last result), reports. matrix.json records it either way.
    #[arg(long)]
    timings: bool,
    /// Internal: this is the run inside the namespace; it gets `--versions`' binaries from the
    /// run that started it (see handoff.rs).
    #[arg(long, hide = true)]
    contained: bool,
    /// Internal: the start of the run that started this contained one, on CLOCK_MONOTONIC (ms).
    #[arg(long, hide = true, requires = "contained")]
    clock_origin: Option<u64>,
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
    // The run's start: the contained run reads the clock of the run that started it.
    let clock = args.clock_origin.map_or_else(Clock::start, Clock::from_origin);
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
    let progress = Arc::new(progress::Progress::for_stderr());
    // Every program's phases, for the run's timings, on their way to the display.
    let recorder = Arc::new(BuildRecorder::new(clock, progress.clone()));
    let plans = tools::plan(Some(&matrix), &args.tools, &args.versions, &args.source)?;
    let fetchers = plans.iter().map(|p| tools::fetcher(p, recorder.clone())).collect::<anyhow::Result<Vec<_>>>()?;
    let services = ServicesConfig {
        runtime: args.runtime.unwrap_or(matrix.services.runtime),
        contained: args.contained,
        ..matrix.services.clone()
    };
    let go = fetchers[0].go();
    // The scenarios first: a selection no tool runs is the user's to fix, before anything starts.
    let tools: Vec<_> = plans.iter().map(|p| p.tool).collect();
    let run::SelectedScenarios { scenarios, tool_scenarios, notes } = run::select_scenarios(&matrix, &tools)?;
    // Until cells run there is nothing to keep: a signal just stops.
    let resolved = async {
        let mut versions = Vec::new();
        for (plan, fetcher) in plans.iter().zip(&fetchers) {
            let resolution = tools::resolve(plan).await?;
            if !args.contained {
                eprintln!("versions: {} {}", plan.tool.name(), resolution.versions.join(", "));
            }
            versions.push((fetcher, resolution.versions));
        }
        anyhow::Ok(versions)
    };
    let versions = tokio::select! {
        versions = resolved => versions?,
        code = signals.received() => return Ok(code),
    };
    let resolve = clock.since(0);
    if !args.contained {
        eprintln!("scenarios: {}", scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
    }
    let plan = RunPlan {
        versions: versions.iter().flat_map(|(f, vs)| vs.iter().map(|v| (f.tool(), v.clone()))).collect(),
        scenarios,
        tool_scenarios,
        notes,
    };
    let options = RunnerOptions {
        scenarios: plan.scenarios.clone(),
        services: services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: baseline.clone(),
        durations: Some(ko_matrix::cache::Cache::from_env()?.root().join("durations.json")),
    };
    let jobs = args.jobs.unwrap_or(matrix.jobs);
    let finish = Finish { args: &args, baseline: baseline.as_ref(), clock, signals: signals.clone() };
    let stop = {
        let signals = signals.clone();
        async move {
            signals.received().await;
        }
    };
    if args.contained {
        // Everything that needs the network is the outer run's: it sends the versions.
        let fetched = Arc::new(Mutex::new(Timings::default()));
        let (arrivals, compiling) = handoff::versions_from_stdin(fetched.clone())
            .context("reading the versions the run outside the namespace sends")?;
        let scheduling = Scheduling { shard: shard.as_ref(), jobs, clock, compiling: Some(compiling) };
        let events = handoff::EventSink::open().with_context(|| {
            format!("opening descriptor {}, where the run outside the namespace reads events", handoff::EVENTS_FD)
        })?;
        let report = match run::run(&plan, arrivals, scheduling, &options, go, Arc::new(events), stop).await {
            // The outer run tells why (a build failed) and exits as it calls for.
            Err(RunError::Abandoned(_)) => return Ok(3),
            report => report?,
        };
        let fetched = fetched.lock().expect("timings lock").clone();
        return finish.report(report, fetched, Containment::Namespace);
    }

    // The tools come, each as soon as it is ready, while the world's programs do: on a fresh
    // machine both are downloads or builds (Go builds take turns: KO_MATRIX_BUILD_JOBS).
    let requests: Vec<(&ToolFetcher, String)> =
        versions.iter().flat_map(|(f, vs)| vs.iter().map(|v| (*f, v.clone()))).collect();
    let mut fetches: Fetches = Some(Box::pin(fetch_each(&requests)));
    let world = async {
        let plan = WorldPlan::decide(&plan.scenarios, &services).await.map_err(RunError::from)?;
        plan.provision(go).await.map_err(RunError::from)?;
        if wanted == Wanted::ProxyOnly {
            return anyhow::Ok(Err(format!("forced by {}=proxy-only", containment::ENV)));
        }
        Ok(plan.host_network().map_or(Ok(()), Err))
    };
    futures_util::pin_mut!(world);
    // Nothing starts before the world's programs and a first version are there.
    let mut arrived = Vec::new();
    let mut ready = None;
    while ready.is_none() || arrived.is_empty() && fetches.is_some() {
        tokio::select! {
            biased;
            code = signals.received() => return Ok(code),
            world = &mut world, if ready.is_none() => ready = Some(world?),
            next = next_of(&mut fetches) => match next {
                Some(Ok(binary)) => arrived.push(binary),
                Some(Err(e)) => return Err(e.into()),
                None => fetches = None,
            },
        }
    }
    let fetched = || Timings { resolve: Some(resolve), builds: recorder.builds(), ..Timings::default() };
    // Everything that needs the network happens out here; the run itself goes into a
    // namespace of its own, as a second ko-matrix process.
    let reason = match ready.expect("the loop ends with the world ready") {
        Ok(()) => match spawn_contained(config, &args, &plan, clock) {
            Ok(contained) => {
                let feed = Feeding { arrived, fetches, fetched: &fetched };
                return contained.drive(feed, &progress, signals).await;
            }
            Err(SpawnFailure::Refused(refused)) => format!("the kernel refused a user namespace: {refused}"),
            Err(SpawnFailure::Other(e)) => return Err(e),
        },
        Err(reason) => reason,
    };
    let containment = Containment::ProxyOnly(reason);
    progress.note(format!("containment: {containment}: cells are kept off the network by proxy variables only"));
    let coming = futures_util::stream::iter(fetches).flatten().map(|next| next.map_err(RunError::from));
    let arrivals = futures_util::stream::iter(arrived.into_iter().map(Ok)).chain(coming);
    let scheduling =
        Scheduling { shard: shard.as_ref(), jobs, clock, compiling: Some(ko_matrix::provision::builds_compiling()) };
    let report = run::run(&plan, arrivals, scheduling, &options, go, progress.clone(), stop).await?;
    finish.report(report, fetched(), containment)
}

/// The tool versions still coming; `None` once every one came (or they stopped).
type Fetches<'a> = Option<Pin<Box<dyn Stream<Item = Result<ToolBinary, FetchError>> + 'a>>>;

/// The next version of `fetches`; never, when there are none.
async fn next_of(fetches: &mut Fetches<'_>) -> Option<Result<ToolBinary, FetchError>> {
    match fetches {
        Some(fetches) => fetches.next().await,
        None => std::future::pending().await,
    }
}

/// The end of a run that ran here: its reports written, its table and summary printed.
struct Finish<'a> {
    args: &'a RunArgs,
    baseline: Option<&'a ko_matrix::report::Snapshots>,
    clock: Clock,
    signals: Signals,
}

impl Finish<'_> {
    /// `fetched`: the phases of resolving and fetching, which happened before (or, for the
    /// contained run, outside) the run itself.
    fn report(&self, mut report: MatrixReport, fetched: Timings, containment: Containment) -> anyhow::Result<u8> {
        let timings = report.timings.get_or_insert_with(Timings::default);
        timings.resolve = fetched.resolve;
        timings.builds = fetched.builds;
        report.containment = containment.to_string();
        let json = report.write_run(&self.args.out, self.baseline, &self.clock)?;
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
        if let Some(timings) = report.timings.as_ref().filter(|_| self.args.timings) {
            eprint!("{}", ko_matrix::report::timings::render(timings));
        }
        if let Some(code) = self.signals.code() {
            return Ok(code);
        }
        if report.count(Outcome::InfraError) > 0 {
            return Ok(3);
        }
        Ok(if self.args.fail_on_fail && report.count(Outcome::Fail) > 0 { 1 } else { 0 })
    }
}

/// This run again, as the process that runs inside the namespace: the same matrix, scenarios
/// and output, with the versions already resolved; it gets their binaries from this one (it
/// needs no network), on the run's clock.
fn contained_run(
    config: Option<&Path>,
    args: &RunArgs,
    plan: &RunPlan,
    clock: Clock,
) -> anyhow::Result<tokio::process::Command> {
    let mut cmd = tokio::process::Command::new(std::env::current_exe().context("finding the ko-matrix executable")?);
    if let Some(config) = config {
        cmd.arg("--config").arg(config);
    }
    cmd.args(["run", "--contained"]);
    let mut tools: Vec<&str> = Vec::new();
    for (tool, _) in &plan.versions {
        if !tools.contains(&tool.name()) {
            tools.push(tool.name());
        }
    }
    cmd.arg(format!("--tools={}", tools.join(",")));
    let versions: Vec<String> = plan.versions.iter().map(|(tool, v)| format!("{}@{v}", tool.name())).collect();
    cmd.arg(format!("--versions={}", versions.join(",")));
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
    if args.timings {
        cmd.arg("--timings");
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
    cmd.arg(format!("--clock-origin={}", clock.origin_ms()));
    // The versions go in, the events and what it prints come out through this process.
    cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Should this process end without waiting for it, it does not run on alone.
    cmd.kill_on_drop(true);
    Ok(cmd)
}

enum SpawnFailure {
    /// The kernel refused the namespace: the run goes on proxy-only.
    Refused(containment::Refused),
    Other(anyhow::Error),
}

/// The contained run, started.
struct ContainedRun {
    child: tokio::process::Child,
    feed: tokio::process::ChildStdin,
    events: tokio::net::unix::pipe::Receiver,
}

fn spawn_contained(
    config: Option<&Path>,
    args: &RunArgs,
    plan: &RunPlan,
    clock: Clock,
) -> Result<ContainedRun, SpawnFailure> {
    let other = |e: anyhow::Error| SpawnFailure::Other(e);
    let mut cmd = contained_run(config, args, plan, clock).map_err(other)?;
    // Close-on-exec both; the contained run writes its end blocking, as a plain file.
    let (events_write, events) = tokio::net::unix::pipe::pipe().context("creating the events pipe").map_err(other)?;
    let events_write = events_write.into_blocking_fd().context("creating the events pipe").map_err(other)?;
    handoff::pass_events(&mut cmd, &events_write);
    let mut child = match containment::spawn(cmd) {
        Ok(child) => child,
        Err(containment::SpawnError::Refused(refused)) => return Err(SpawnFailure::Refused(refused)),
        Err(e) => return Err(other(e.into())),
    };
    // Only the contained run writes events: their end is its end.
    drop(events_write);
    let feed = child.stdin.take().expect("stdin is piped");
    Ok(ContainedRun { child, feed, events })
}

/// What the outer run feeds the contained one: the versions already there, those still coming,
/// and, once all came, the phases of getting them.
struct Feeding<'a, 'f> {
    arrived: Vec<ToolBinary>,
    fetches: Fetches<'a>,
    fetched: &'f dyn Fn() -> Timings,
}

/// The number of builds compiling, once it changes; never when not watched.
async fn compiled(compiling: &mut Option<tokio::sync::watch::Receiver<usize>>) -> usize {
    let Some(receiver) = compiling else { return std::future::pending().await };
    match receiver.changed().await {
        Ok(()) => *receiver.borrow_and_update(),
        Err(_) => {
            *compiling = None;
            0
        }
    }
}

/// Sends the contained run `message`. Gone, it has nothing more to read; its exit says why.
async fn send(feed: &mut tokio::process::ChildStdin, message: Feed) {
    let _ = feed.write_all(&message.line()).await;
}

/// How long what the contained run wrote may take to come through once it has exited (its
/// own children, which may hold its output, die with it).
const DRAIN: Duration = Duration::from_secs(10);

impl ContainedRun {
    /// Feeds the contained run its versions as they come, shows its events and passes on what
    /// it prints, passes it a Ctrl-C or SIGTERM (it stops its cells and writes its reports,
    /// and says so; the fetches here stop), and exits as it did. A failed fetch stops it, and
    /// is this run's error, as in a run without a namespace.
    async fn drive(mut self, feeding: Feeding<'_, '_>, progress: &Progress, signals: Signals) -> anyhow::Result<u8> {
        signals.delegate();
        progress
            .note(format!("containment: {}: services and cells reach nothing but loopback", containment::NAMESPACE));
        let Feeding { arrived, mut fetches, fetched } = feeding;
        let feed = &mut self.feed;
        let ready = |binary| Feed::Ready { binary: Box::new(binary), fetched: fetched().into() };
        for binary in arrived {
            send(feed, ready(binary)).await;
        }
        if fetches.is_none() {
            send(feed, Feed::Done(fetched().into())).await;
        }
        let mut events = BufReader::new(self.events).lines();
        let mut stdout = BufReader::new(self.child.stdout.take().expect("stdout is piped")).lines();
        let mut stderr = BufReader::new(self.child.stderr.take().expect("stderr is piped")).lines();
        let (mut events_open, mut stdout_open, mut stderr_open) = (true, true, true);
        let pid = self.child.id().map(|pid| pid as i32);
        let mut failure: Option<FetchError> = None;
        let mut forwarded = false;
        // The contained run makes room for the builds compiling here.
        let mut compiling = Some(ko_matrix::provision::builds_compiling());
        if fetches.is_some() {
            let now = *compiling.as_mut().expect("just made").borrow_and_update();
            send(feed, Feed::Compiling(now)).await;
        }
        let mut exited: Option<std::process::ExitStatus> = None;
        let mut drained_by: Option<tokio::time::Instant> = None;
        while events_open || stdout_open || stderr_open || exited.is_none() {
            let deadline = drained_by.unwrap_or_else(|| tokio::time::Instant::now() + DRAIN);
            tokio::select! {
                biased;
                // Events before what it prints: a cell's line before the summary after it.
                line = events.next_line(), if events_open => match line {
                    Ok(Some(line)) => match serde_json::from_str::<RunEvent>(&line) {
                        Ok(event) => progress.on_run_event(event),
                        Err(e) => progress.note(format!("an unreadable event from the contained run ({e}): {line}")),
                    },
                    _ => events_open = false,
                },
                line = stdout.next_line(), if stdout_open => match line {
                    Ok(Some(line)) => progress.forward(Output::Stdout, &line),
                    _ => stdout_open = false,
                },
                line = stderr.next_line(), if stderr_open => match line {
                    Ok(Some(line)) => progress.forward(Output::Stderr, &line),
                    _ => stderr_open = false,
                },
                status = self.child.wait(), if exited.is_none() => {
                    exited = Some(status.context("waiting for the contained run")?);
                    drained_by = Some(tokio::time::Instant::now() + DRAIN);
                    // Nothing more to feed.
                    fetches = None;
                }
                code = signals.received(), if !forwarded => {
                    forwarded = true;
                    // Builds stop here; the contained run stops its cells and reports.
                    fetches = None;
                    if let Some(pid) = pid {
                        let signal = if code == 130 { libc::SIGINT } else { libc::SIGTERM };
                        // SAFETY: signalling our own child, which has not been reaped yet.
                        unsafe { libc::kill(pid, signal) };
                    }
                }
                now = compiled(&mut compiling), if fetches.is_some() => send(feed, Feed::Compiling(now)).await,
                next = next_of(&mut fetches) => match next {
                    Some(Ok(binary)) => send(feed, ready(binary)).await,
                    Some(Err(e)) => {
                        send(feed, Feed::Abandon(e.to_string())).await;
                        failure = Some(e);
                        fetches = None;
                    }
                    None => {
                        send(feed, Feed::Done(fetched().into())).await;
                        fetches = None;
                    }
                },
                () = tokio::time::sleep_until(deadline), if drained_by.is_some() => break,
            }
        }
        if let Some(failure) = failure {
            return Err(failure.into());
        }
        let status = exited.expect("the loop ends after the exit");
        Ok(match (status.code(), status.signal()) {
            (Some(code), _) => code as u8,
            (None, Some(signal)) => (128 + signal) as u8,
            (None, None) => 3,
        })
    }
}
