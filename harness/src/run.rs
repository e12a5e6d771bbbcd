//! A run: start the world once, run every (tool version, scenario) cell with bounded
//! parallelism, and hand back the results. It reports progress as events; it prints nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use futures_util::{FutureExt, Stream, StreamExt};
use serde::{Deserialize, Serialize};

use crate::cell::{self, CellEnv};
use crate::config::{Matrix, ServicesConfig};
use crate::located::ConfigError;
use crate::outcome::Outcome;
use crate::payload::{GoEnv, GoEnvError, Payload};
use crate::provision::{GoProvisioner, ProvisionError};
use crate::report::{MatrixReport, ReportError, Snapshots};
use crate::result::{cell_id, CellResult, Verb};
use crate::scenario::{self, Scenario};
use crate::schedule::{Durations, ShardPlan};
use crate::timings::{CellTimings, Clock, Timings};
use crate::tool::versions::VersionError;
use crate::tool::{FetchError, Tool, ToolBinary};
use crate::world::{World, WorldError};

/// What a run's cells are doing (the run's own events; a version's fetching tells its own,
/// [`crate::events::ProvisionEvent`]). A contained run sends these to the run that started it
/// (one JSON object a line), which shows them, so they serialise.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum RunEvent {
    /// The run expects to run `cells` cells (sent again when a version's arrival changes the count).
    Planned {
        cells: usize,
    },
    /// Services are up; `notes` are choices an `auto` setting made, and what the selection
    /// left out.
    WorldReady {
        runtime: String,
        took: Duration,
        notes: Vec<String>,
    },
    /// `cell` is the cell's id, `ko@v0.15.2::ecr/env-session`.
    CellStarted {
        cell: String,
    },
    CellFinished(Box<CellResult>),
}

pub trait RunObserver: Send + Sync {
    fn on_run_event(&self, event: RunEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Versions(#[from] VersionError),
    #[error(transparent)]
    Fetch(#[from] FetchError),
    #[error("starting services failed: {0}")]
    World(#[from] WorldError),
    #[error("finding the Go that builds the app: {0}")]
    Go(#[from] ProvisionError),
    #[error(transparent)]
    GoEnv(#[from] GoEnvError),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("writing the built-in app: {0}")]
    BuiltinApp(crate::builtin::InitError),
    #[error("the ko-matrix executable {0} (the cells' credential helper) is missing")]
    NoHelper(PathBuf),
    /// What started this run stopped giving it versions (a build failed there, and says so).
    #[error("the run was abandoned: {0}")]
    Abandoned(String),
    #[error("{0} arrived, a version this run did not plan")]
    Unplanned(String),
}

impl RunError {
    /// The user's input was wrong (exit 2), rather than the infrastructure (exit 3).
    pub fn is_bad_input(&self) -> bool {
        match self {
            RunError::Config(_) => true,
            RunError::Fetch(e) => e.is_bad_input(),
            _ => false,
        }
    }
}

/// `--shard i/n`: a deterministic slice of the cells. Without a plan a cell's shard depends
/// only on its own name, so adding a scenario or version never moves other cells between
/// shards; with one (`--plan`, from recorded durations) the plan decides the cells it names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
    pub plan: Option<Arc<ShardPlan>>,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard takes i/n with 1 <= i <= n, e.g. 2/4 (got {text:?})");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count, plan: None })
    }

    /// This shard of `plan`, which must split the run into as many shards.
    pub fn with_plan(self, plan: ShardPlan) -> Result<Shard, String> {
        if plan.shards() != self.count {
            return Err(format!("the plan splits the run into {} shards, --shard says {}", plan.shards(), self.count));
        }
        Ok(Shard { plan: Some(Arc::new(plan)), ..self })
    }

    /// Whether the cell called `id` (`ko@v0.15.2::ecr/env-session`) is in this shard. A cell
    /// the plan does not name (a scenario added since) goes by its name, as without a plan.
    pub fn contains(&self, id: &str) -> bool {
        if let Some(shard) = self.plan.as_ref().and_then(|p| p.shard_of(id)) {
            return shard == self.index;
        }
        // FNV-1a: stable across platforms and releases, unlike std's hasher.
        let hash = id.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        hash % self.count as u64 == (self.index - 1) as u64
    }
}

/// What a run sets out to do: its tool versions, in the report's order, and its scenarios.
/// The versions' binaries arrive while it runs (see [`run`]).
pub struct RunPlan {
    /// Each tool version as its selectors resolved it (`v0.15.2`, or a branch such as `main`,
    /// whose exact version its binary tells), tools in the matrix's order.
    pub versions: Vec<(&'static Tool, String)>,
    /// Every scenario any tool runs.
    pub scenarios: Vec<Scenario>,
    /// Tool name → the names of its scenarios.
    pub tool_scenarios: ToolScenarios,
    /// What the selection left out that the user should hear about (copies for a tool that
    /// copies nothing).
    pub notes: Vec<String>,
}

/// The scenarios a matrix selects for its tools (see [`select_scenarios`]).
pub struct SelectedScenarios {
    /// Every scenario any tool runs.
    pub scenarios: Vec<Scenario>,
    /// Tool name → the names of its scenarios.
    pub tool_scenarios: ToolScenarios,
    /// What was left out, to tell the user.
    pub notes: Vec<String>,
}

/// Per tool (by name), the names of the scenarios it runs.
pub type ToolScenarios = Vec<(&'static str, Vec<String>)>;

impl RunPlan {
    /// Which of [`RunPlan::versions`] `binary` is.
    fn position(&self, binary: &ToolBinary) -> Option<usize> {
        self.versions.iter().position(|(tool, version)| {
            tool.name() == binary.tool.name() && crate::tool::fetch::normalize(version) == binary.requested
        })
    }

    /// The cells of `tool` at `version` (in `shard`, when given): each with its scenario's
    /// place in [`RunPlan::scenarios`].
    fn cells_of(&self, tool: &Tool, version: &str, shard: Option<&Shard>) -> Vec<(usize, &Scenario)> {
        let names = self.tool_scenarios.iter().find(|(t, _)| *t == tool.name()).map(|(_, names)| names);
        self.scenarios
            .iter()
            .enumerate()
            .filter(|(_, s)| names.is_some_and(|names| names.contains(&s.name)))
            .filter(|(_, s)| shard.is_none_or(|shard| shard.contains(&cell_id(tool.name(), version, &s.name))))
            .collect()
    }
}

/// `scenarios/` next to matrix.toml.
pub fn scenarios_dir(matrix: &Matrix) -> PathBuf {
    matrix.file.parent().map_or_else(|| PathBuf::from("scenarios"), |d| d.join("scenarios"))
}

/// `results/<tool>/*.snap` next to matrix.toml, when there are any: the baseline that decides which
/// cells are worth a retry and which JUnit testcases fail.
pub fn committed_snapshots(matrix: &Matrix) -> Result<Option<Snapshots>, ReportError> {
    crate::report::read_baseline(&matrix.file.parent().unwrap_or(Path::new(".")).join("results"))
}

/// The scenarios each of `tools` runs: every scenario any runs, and per tool the names of its.
/// A tool without a copy command runs no copy scenario: one its own `scenarios` in matrix.toml
/// name on purpose (a pattern matching only copies) is an error there; those a wider selection
/// takes in are left out, with a note saying so.
pub fn select_scenarios(matrix: &Matrix, tools: &[&'static Tool]) -> Result<SelectedScenarios, RunError> {
    let known = scenario::discover(&scenarios_dir(matrix))?;
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let selected = matrix.select_scenarios(&names)?;
    let copies: Vec<&str> = known.iter().filter(|s| s.verb() == Verb::Copy).map(|s| s.name.as_str()).collect();
    let mut tool_scenarios = Vec::new();
    let mut notes = Vec::new();
    for tool in tools {
        let mut scenarios = match matrix.tool(tool.name()) {
            Some(config) => {
                if !tool.copies() {
                    let why = format!(
                        "{} copies nothing (tools/{}.toml has no `copy` command; docs/tool-definitions.md)",
                        tool.name(),
                        tool.name()
                    );
                    matrix.refuse_only(config, &names, |name| copies.contains(&name), &why)?;
                }
                matrix.tool_scenarios(config, &names, &selected)?
            }
            None => selected.clone(),
        };
        if !tool.copies() {
            let before = scenarios.len();
            scenarios.retain(|name| !copies.contains(&name.as_str()));
            if scenarios.len() < before {
                notes.push(format!(
                    "{}: {} copy scenario(s) left out: {} copies nothing (tools/{}.toml has no `copy` command)",
                    tool.name(),
                    before - scenarios.len(),
                    tool.name(),
                    tool.name()
                ));
            }
        }
        tool_scenarios.push((tool.name(), scenarios));
    }
    // A run of no cell would read as a clean pass.
    if !tools.is_empty() && tool_scenarios.iter().all(|(_, names)| names.is_empty()) {
        let tools = tool_scenarios.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ");
        let mut message = format!(
            "no cell to run: the selected scenarios ({}) are outside the `scenarios` of every selected tool ({tools}); select scenarios those tools run, or widen their `scenarios` in this file",
            selected.join(", ")
        );
        for note in &notes {
            message.push_str(&format!("; {note}"));
        }
        return Err(
            ConfigError { file: matrix.file.clone(), line: 0, column: 0, message, excerpt: String::new() }.into()
        );
    }
    let scenarios =
        known.into_iter().filter(|s| tool_scenarios.iter().any(|(_, names)| names.contains(&s.name))).collect();
    Ok(SelectedScenarios { scenarios, tool_scenarios, notes })
}

/// How to set up the services and cells of a run.
pub struct RunnerOptions {
    pub scenarios: Vec<Scenario>,
    pub services: ServicesConfig,
    pub cell_timeout: Duration,
    /// Where logs go (`<out>/logs/`).
    pub out_dir: PathBuf,
    /// `scenarios/app`; when absent, the built-in app.
    pub app_source: PathBuf,
    /// The ko-matrix executable, which cells run as their credential helper.
    pub helper: PathBuf,
    /// What each cell gave before (the committed snapshots): a cell is run again only when
    /// its first run differs from this, or, without a baseline for it, failed.
    pub baseline: Option<Snapshots>,
    /// Where each cell's last duration is kept, to start the longest first; `None`: in the
    /// given order.
    pub durations: Option<PathBuf>,
}

/// Started services plus everything cells share; cells can then run in any order.
pub struct Runner {
    env: CellEnv,
    baseline: Snapshots,
    _work: tempfile::TempDir,
}

impl Runner {
    pub async fn start(options: &RunnerOptions, provisioner: &GoProvisioner) -> Result<Runner, RunError> {
        if !options.helper.is_file() {
            return Err(RunError::NoHelper(options.helper.clone()));
        }
        let io = |action, path: &Path| {
            let path = path.to_path_buf();
            move |source| RunError::Io { action, path, source }
        };
        let work = tempfile::Builder::new()
            .prefix("ko-matrix-run-")
            .tempdir()
            .map_err(io("creating", &std::env::temp_dir()))?;
        let app_dir = work.path().join("app");
        if options.app_source.is_dir() {
            copy_dir(&options.app_source, &app_dir).map_err(io("copying", &options.app_source))?;
        } else {
            crate::builtin::write_app(&app_dir).map_err(RunError::BuiltinApp)?;
        }
        let logs_dir = options.out_dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(io("creating", &logs_dir))?;

        let files_dir = work.path().join("payload");
        Payload::write_files(&files_dir).map_err(io("writing", &files_dir))?;
        let go = async {
            let go = provisioner.go("the app cells build").await?;
            Ok::<_, RunError>(GoEnv::detect(&go.path).await?)
        };
        let (go, world) =
            tokio::join!(go, World::start(&options.scenarios, &options.services, provisioner, work.path()));
        let (go, world) = (go?, Arc::new(world?));
        let payload = Payload { app_dir, base_image: world.base_image.clone(), go, files_dir };
        let env = CellEnv {
            world,
            payload,
            helper: options.helper.clone(),
            work_dir: work.path().join("cells"),
            logs_dir,
            timeout: options.cell_timeout,
        };
        Ok(Runner { env, baseline: options.baseline.clone().unwrap_or_default(), _work: work })
    }

    pub fn world(&self) -> &World {
        &self.env.world
    }

    /// The cell `tool` × `scenario` prepared exactly as [`Runner::run_cell`] prepares it, with
    /// nothing run in it yet: for a person to reproduce it by hand (see [`cell::open`]).
    pub async fn open_cell(
        &self,
        tool: &ToolBinary,
        scenario: &Scenario,
    ) -> Result<cell::OpenCell, cell::CellSetupError> {
        cell::open(&self.env, tool, scenario).await
    }

    /// Runs a cell, and once more when the first run would change the record (see
    /// [`needs_retry`]); [`settle`] makes one result of the two runs, keeping both logs.
    pub async fn run_cell(&self, tool: &ToolBinary, scenario: &Scenario) -> CellResult {
        let mut first = cell::run_cell(&self.env, tool, scenario, 1).await;
        first.attempts = vec![first.label()];
        let baseline = self.baseline.label(tool.tool.name(), &tool.version, &scenario.name);
        if !needs_retry(&first, baseline) {
            return first;
        }
        let retry = cell::run_cell(&self.env, tool, scenario, 2).await;
        settle(first, retry)
    }
}

/// Whether a cell's first run is worth repeating: only when it would change the record, that
/// is when its label differs from the cell's `baseline`, or, with no baseline, it failed. A
/// harness fault is not retried: either run's fault makes the cell `infra-error` anyway.
pub(crate) fn needs_retry(first: &CellResult, baseline: Option<&str>) -> bool {
    match (first.outcome, baseline) {
        (Outcome::Pass | Outcome::Fail, Some(label)) => first.label() != label,
        (outcome, None) => outcome == Outcome::Fail,
        (Outcome::InfraError | Outcome::Skipped | Outcome::Flaky, Some(_)) => false,
    }
}

/// One result from a cell's two runs: `infra-error` when either run hit a harness fault;
/// `flaky` only when both reached a verdict about ko (pass or fail) and the verdicts differ;
/// else the first run. Both labels and both logs are kept, and the times are both runs'.
pub(crate) fn settle(mut first: CellResult, retry: CellResult) -> CellResult {
    let (first_label, retry_label) = (first.label(), retry.label());
    first.attempts = vec![first_label.clone(), retry_label.clone()];
    first.retry_log = Some(retry.log.clone());
    first.duration_ms += retry.duration_ms;
    first.tool_ms += retry.tool_ms;
    let verdict = |outcome| matches!(outcome, Outcome::Pass | Outcome::Fail);
    if first.outcome == Outcome::InfraError {
        first.detail = format!("{} (retry: {retry_label})", first.detail);
    } else if retry.outcome == Outcome::InfraError {
        first.detail = format!("{} (on the retry; first run {first_label}: {})", retry.detail, first.detail);
        first.outcome = Outcome::InfraError;
        first.class = None;
    } else if verdict(first.outcome) && verdict(retry.outcome) && first_label != retry_label {
        first.detail =
            format!("flaky: first run {first_label}: {}; retry {retry_label}: {}", first.detail, retry.detail);
        first.outcome = Outcome::Flaky;
        first.class = None;
    }
    first
}

/// How a run schedules its cells.
pub struct Scheduling<'a> {
    /// Only this slice of the cells.
    pub shard: Option<&'a Shard>,
    /// Cells at once.
    pub jobs: usize,
    /// The run's clock, started when the run was (by whatever started it).
    pub clock: Clock,
    /// How many tool builds are compiling, as it changes ([`crate::provision::builds_compiling`],
    /// or as the run outside the namespace tells it); `None`: not watched. While one compiles,
    /// cells run [`jobs_beside_builds`] at a time.
    pub compiling: Option<tokio::sync::watch::Receiver<usize>>,
}

/// Cells at once while a build compiles: half of `jobs`, at least one. A Go build keeps every
/// core busy, and it holds back the cells of its version and of those after it, so a cell that
/// slows it costs more than it gives: measured on 2 cores (a cold ko v0.15.2 build, 2m14s
/// alone), ko cells beside it at 2 at a time made it take 4m27s and did 26 cells a minute, at 1
/// at a time 2m58s and 20 a minute (README, Cold and warm runs).
pub fn jobs_beside_builds(jobs: usize) -> usize {
    (jobs / 2).max(1)
}

/// Waits until `compiling` changes; never when it is not watched, and once its sender is gone
/// it is no longer watched.
async fn compiling_changed(compiling: &mut Option<tokio::sync::watch::Receiver<usize>>) {
    let Some(receiver) = compiling else { return std::future::pending().await };
    if receiver.changed().await.is_err() {
        *compiling = None;
    }
}

/// A cell waiting for a free job, with its place in the order cells start.
struct Queued<'p> {
    /// Longest last time first (never timed: first of all), then the report's order.
    order: (std::cmp::Reverse<u64>, usize, usize, usize),
    binary: Arc<ToolBinary>,
    scenario: &'p Scenario,
}

/// The cells whose versions arrived and that wait for a free job, longest first.
struct CellQueue<'p> {
    plan: &'p RunPlan,
    shard: Option<&'p Shard>,
    /// Per version of the plan, its cells: counted by the version asked for until it arrives
    /// (a branch's exact version may fall into another shard).
    expected: Vec<usize>,
    binaries: Vec<Option<Arc<ToolBinary>>>,
    queue: Vec<Queued<'p>>,
}

impl<'p> CellQueue<'p> {
    fn planned(&self) -> usize {
        self.expected.iter().sum()
    }

    /// Queues the cells of `binary`, in the order cells start: longest first by `durations`.
    fn arrive(
        &mut self,
        binary: ToolBinary,
        durations: &Durations,
        observer: &dyn RunObserver,
    ) -> Result<(), RunError> {
        let plan = self.plan;
        let index = plan.position(&binary).ok_or_else(|| RunError::Unplanned(binary.label()))?;
        let binary = Arc::new(binary);
        let tool = plan.tool_scenarios.iter().position(|(t, _)| *t == binary.tool.name()).unwrap_or(usize::MAX);
        let cells = plan.cells_of(binary.tool, &binary.version, self.shard);
        if cells.len() != self.expected[index] {
            self.expected[index] = cells.len();
            observer.on_run_event(RunEvent::Planned { cells: self.planned() });
        }
        for (scenario_index, scenario) in cells {
            let rank = durations.rank(&cell_id(binary.tool.name(), &binary.version, &scenario.name));
            let order = (rank, tool, scenario_index, index);
            self.queue.push(Queued { order, binary: binary.clone(), scenario });
        }
        self.queue.sort_by_key(|q| q.order);
        self.binaries[index] = Some(binary);
        Ok(())
    }
}

/// Runs the cells of `plan` (of a shard, when given), `jobs` at a time (fewer while a build
/// compiles, see [`Scheduling::compiling`]), longest first, as its versions' binaries arrive:
/// the cells of a version start once it and the services are there, while later versions are
/// still being fetched or built. The services start with the first
/// version; nothing starts before one. An error among the arrivals (a failed build) stops the
/// cells running and is the run's error. When `stop` completes (a signal), cells still running
/// are stopped and the report holds the finished ones, marked `interrupted`.
pub async fn run(
    plan: &RunPlan,
    arrivals: impl Stream<Item = Result<ToolBinary, RunError>>,
    scheduling: Scheduling<'_>,
    options: &RunnerOptions,
    provisioner: &GoProvisioner,
    observer: Arc<dyn RunObserver>,
    stop: impl Future<Output = ()>,
) -> Result<MatrixReport, RunError> {
    let Scheduling { shard, jobs, clock, mut compiling } = scheduling;
    let stop = stop.shared();
    let started_at = crate::cache::now_rfc3339();
    let mut durations = options.durations.as_deref().map(Durations::load).unwrap_or_default();
    let expected: Vec<usize> =
        plan.versions.iter().map(|(tool, version)| plan.cells_of(tool, version, shard).len()).collect();
    observer.on_run_event(RunEvent::Planned { cells: expected.iter().sum() });
    let arrivals = arrivals.fuse();
    futures_util::pin_mut!(arrivals);
    let mut cells = CellQueue { plan, shard, expected, binaries: vec![None; plan.versions.len()], queue: Vec::new() };
    // Nothing starts (not even the services) before there is a version to run.
    let first = tokio::select! {
        biased;
        () = stop.clone() => None,
        first = arrivals.next() => Some(first),
    };
    let mut arrivals_done = match first {
        Some(Some(Ok(binary))) => {
            cells.arrive(binary, &durations, observer.as_ref())?;
            false
        }
        Some(Some(Err(e))) => return Err(e),
        // Stopped, or no version at all.
        None | Some(None) => {
            let mut report = new_report(plan, &[], shard, started_at, "not started", Vec::new());
            report.interrupted = cells.planned() > 0;
            return Ok(report);
        }
    };

    let logs_dir = options.out_dir.join("logs");
    if logs_dir.exists() {
        std::fs::remove_dir_all(&logs_dir).map_err(|source| RunError::Io {
            action: "clearing",
            path: logs_dir.clone(),
            source,
        })?;
    }
    let mut timings = Timings::default();
    let services_start = clock.now_ms();
    let starting = Runner::start(options, provisioner).fuse();
    futures_util::pin_mut!(starting);
    let mut runner: Option<Arc<Runner>> = None;
    let mut running = futures_util::stream::FuturesUnordered::new();
    let mut results: Vec<CellResult> = Vec::new();
    let mut cell_timings: Option<CellTimings> = None;
    let mut first_start: Option<u64> = None;
    loop {
        if let Some(runner) = &runner {
            let building = compiling.as_ref().is_some_and(|c| *c.borrow() > 0);
            let jobs = if building { jobs_beside_builds(jobs) } else { jobs.max(1) };
            while running.len() < jobs && !cells.queue.is_empty() {
                let Queued { binary, scenario, .. } = cells.queue.remove(0);
                observer.on_run_event(RunEvent::CellStarted {
                    cell: cell_id(binary.tool.name(), &binary.version, &scenario.name),
                });
                first_start.get_or_insert_with(|| clock.now_ms());
                let runner = runner.clone();
                running.push(async move { runner.run_cell(&binary, scenario).await });
            }
            if arrivals_done && cells.queue.is_empty() && running.is_empty() {
                break;
            }
        }
        tokio::select! {
            biased;
            () = stop.clone() => break,
            started = &mut starting, if runner.is_none() => {
                let started = started?;
                timings.services = Some(clock.since(services_start));
                observer.on_run_event(RunEvent::WorldReady {
                    runtime: started.world().runtime.to_string(),
                    took: started.world().started_in,
                    notes: started.world().notes.iter().chain(&plan.notes).cloned().collect(),
                });
                runner = Some(Arc::new(started));
            }
            Some(result) = running.next(), if !running.is_empty() => {
                let now = clock.now_ms();
                let first_start = first_start.unwrap_or(now);
                let timing = cell_timings.get_or_insert(CellTimings {
                    count: 0,
                    first_start_ms: first_start,
                    first_result_ms: now,
                    last_result_ms: now,
                });
                timing.count += 1;
                timing.last_result_ms = now;
                observer.on_run_event(RunEvent::CellFinished(Box::new(result.clone())));
                results.push(result);
            }
            // A build began or ended: fewer or more cells at once.
            () = compiling_changed(&mut compiling) => {}
            next = arrivals.next(), if !arrivals_done => match next {
                Some(Ok(binary)) => cells.arrive(binary, &durations, observer.as_ref())?,
                // Dropping the running cells stops them.
                Some(Err(e)) => return Err(e),
                None => arrivals_done = true,
            },
        }
    }
    drop(running);
    timings.cells = cell_timings;
    let binaries = cells.binaries;
    let order = |r: &CellResult| {
        let tool = plan.tool_scenarios.iter().position(|(t, _)| *t == r.tool);
        let scenario = plan.scenarios.iter().position(|s| s.name == r.scenario);
        let version =
            binaries.iter().position(|b| b.as_ref().is_some_and(|b| b.tool.name() == r.tool && b.version == r.version));
        (tool, scenario, version)
    };
    results.sort_by_key(order);
    // Only a hint for the next run's order: failing to keep it loses no result.
    let _ = durations.record(&results);
    let arrived: Vec<ToolBinary> = binaries.iter().flatten().map(|b| (**b).clone()).collect();
    let runtime = runner.as_ref().map_or("not started", |r| r.world().runtime);
    let planned: usize = cells.expected.iter().sum();
    let mut report = new_report(plan, &arrived, shard, started_at, runtime, results);
    if let Some(runner) = &runner {
        report.leak_check = runner.world().leak_check.to_string();
    }
    report.interrupted = report.cells.len() < planned;
    let cleanup = clock.now_ms();
    drop(runner);
    timings.cleanup = Some(clock.since(cleanup));
    report.timings = Some(timings);
    Ok(report)
}

/// The report of `plan`'s run, saying what it set out to run.
fn new_report(
    plan: &RunPlan,
    versions: &[ToolBinary],
    shard: Option<&Shard>,
    started: String,
    runtime: &str,
    cells: Vec<CellResult>,
) -> MatrixReport {
    let names = plan.scenarios.iter().map(|s| s.name.clone()).collect::<Vec<_>>();
    let mut report = MatrixReport::new(started, runtime, versions, names.clone(), cells);
    report.tool_scenarios =
        plan.tool_scenarios.iter().filter(|(_, s)| *s != names).map(|(t, s)| (t.to_string(), s.clone())).collect();
    report.shard = shard.map(|s| format!("{}/{}", s.index, s.count));
    report
}

fn copy_dir(from: &Path, to: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(to)?;
    for entry in std::fs::read_dir(from)? {
        let entry = entry?;
        let target = to.join(entry.file_name());
        if entry.file_type()?.is_dir() {
            copy_dir(&entry.path(), &target)?;
        } else {
            std::fs::copy(entry.path(), target)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::outcome::FailClass;

    fn result(outcome: Outcome, class: Option<FailClass>, detail: &str, log: &str) -> CellResult {
        CellResult {
            tool: crate::result::shorthand_tool(),
            version: "v0.15.2".into(),
            scenario: "ecr/env-session".into(),
            verb: crate::result::Verb::Push,
            outcome,
            class,
            detail: detail.into(),
            diagnosis: None,
            duration_ms: 1,
            tool_ms: 1,
            log: log.into(),
            retry_log: None,
            attempts: Vec::new(),
            env: Default::default(),
            requests: Vec::new(),
        }
    }

    fn pass(log: &str) -> CellResult {
        result(Outcome::Pass, None, "pushed and fetched back sha256:ab", log)
    }

    fn unauthorized(log: &str) -> CellResult {
        result(Outcome::Fail, Some(FailClass::Unauthorized), "ko exited 1: Error: UNAUTHORIZED", log)
    }

    fn infra(log: &str) -> CellResult {
        result(Outcome::InfraError, None, "infra-error: registry (basic flavour) 127.0.0.1:5000 unreachable: connection refused; ko exited 1: Error: 502", log)
    }

    #[test]
    fn a_retry_happens_only_when_it_could_change_the_record() {
        // Against a baseline: whatever differs from it, pass or fail.
        assert!(!needs_retry(&unauthorized("a"), Some("fail(unauthorized)")), "an expected failure is not run twice");
        assert!(needs_retry(&unauthorized("a"), Some("pass")));
        assert!(needs_retry(&unauthorized("a"), Some("fail(denied)")));
        assert!(needs_retry(&pass("a"), Some("fail(unauthorized)")));
        assert!(!needs_retry(&pass("a"), Some("pass")));
        // No baseline for the cell: failures only.
        assert!(needs_retry(&unauthorized("a"), None));
        assert!(!needs_retry(&pass("a"), None));
        // A harness fault or a skip: never.
        for baseline in [None, Some("pass"), Some("fail(unauthorized)")] {
            assert!(!needs_retry(&infra("a"), baseline), "{baseline:?}");
            assert!(!needs_retry(&result(Outcome::Skipped, None, "LocalStack", "a"), baseline), "{baseline:?}");
        }
    }

    #[test]
    fn two_runs_settle_honestly() {
        // The same verdict twice: that verdict, both runs noted.
        let same = settle(unauthorized("first.log"), unauthorized("retry.log"));
        assert_eq!((same.outcome, same.class), (Outcome::Fail, Some(FailClass::Unauthorized)));
        assert_eq!(same.attempts, ["fail(unauthorized)", "fail(unauthorized)"]);
        assert_eq!(
            (same.log.to_str(), same.retry_log.as_deref().and_then(|p| p.to_str())),
            (Some("first.log"), Some("retry.log"))
        );
        assert_eq!((same.duration_ms, same.tool_ms), (2, 2), "a cell's times are both runs'");

        // Two different verdicts about ko: flaky.
        let flaky = settle(unauthorized("first.log"), pass("retry.log"));
        assert_eq!((flaky.outcome, flaky.class), (Outcome::Flaky, None));
        assert_eq!(flaky.attempts, ["fail(unauthorized)", "pass"]);
        assert!(flaky.detail.starts_with("flaky: first run fail(unauthorized): ko exited 1"), "{}", flaky.detail);

        // A harness fault in the retry hides nothing: the cell is infra-error, not flaky.
        let hidden = settle(unauthorized("first.log"), infra("retry.log"));
        assert_eq!((hidden.outcome, hidden.class), (Outcome::InfraError, None));
        assert_eq!(hidden.attempts, ["fail(unauthorized)", "infra-error"]);
        assert!(
            hidden.detail.starts_with("infra-error: registry (basic flavour) 127.0.0.1:5000 unreachable"),
            "{}",
            hidden.detail
        );
        assert!(
            hidden.detail.contains("first run fail(unauthorized): ko exited 1: Error: UNAUTHORIZED"),
            "{}",
            hidden.detail
        );
        let after_pass = settle(pass("first.log"), infra("retry.log"));
        assert_eq!(after_pass.outcome, Outcome::InfraError);

        // A harness fault in the first run: infra-error whatever the retry said.
        for retry in [pass("retry.log"), unauthorized("retry.log")] {
            let settled = settle(infra("first.log"), retry);
            assert_eq!((settled.outcome, settled.class), (Outcome::InfraError, None));
            assert!(settled.detail.starts_with("infra-error: registry (basic flavour)"), "{}", settled.detail);
        }
    }

    #[test]
    fn shards_partition_the_cells_and_stay_put() {
        let cells: Vec<String> = (0..40)
            .flat_map(|s| ["ko@v0.15.1", "ko@v0.15.2", "crane@v0.20.2"].map(|v| format!("{v}::registry/s{s}")))
            .collect();
        let shards: Vec<Shard> = (1..=4).map(|i| Shard::parse(&format!("{i}/4")).unwrap()).collect();
        for id in &cells {
            assert_eq!(shards.iter().filter(|sh| sh.contains(id)).count(), 1, "{id} is in exactly one shard");
        }
        let sizes: Vec<usize> = shards.iter().map(|sh| cells.iter().filter(|id| sh.contains(id)).count()).collect();
        assert!(sizes.iter().all(|&n| n >= 15), "roughly even: {sizes:?}");
        assert!(Shard::parse("0/4").is_err() && Shard::parse("5/4").is_err() && Shard::parse("x").is_err());
    }

    #[test]
    fn a_plan_decides_the_cells_it_names_and_the_hash_the_rest() {
        let plan = ShardPlan {
            cells: [("ko@v1::a/slow".to_string(), 2), ("ko@v1::a/fast".to_string(), 1)].into(),
            predicted_ms: vec![10, 90],
            estimated: 0,
        };
        let shards: Vec<Shard> =
            (1..=2).map(|i| Shard::parse(&format!("{i}/2")).unwrap().with_plan(plan.clone()).unwrap()).collect();
        assert!(shards[1].contains("ko@v1::a/slow") && !shards[0].contains("ko@v1::a/slow"));
        assert!(shards[0].contains("ko@v1::a/fast") && !shards[1].contains("ko@v1::a/fast"));
        let unplanned = "ko@v2::a/new";
        let by_name = Shard::parse("1/2").unwrap().contains(unplanned);
        assert_eq!(shards[0].contains(unplanned), by_name);
        assert_eq!(shards[1].contains(unplanned), !by_name);
        let error = Shard::parse("1/3").unwrap().with_plan(plan).unwrap_err();
        assert_eq!(error, "the plan splits the run into 2 shards, --shard says 3");
    }
}
