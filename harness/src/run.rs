//! A run: start the world once, run every (version, scenario) cell with bounded
//! parallelism, and hand back the results. It reports progress as events; it prints nothing.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use std::future::Future;

use futures_util::{FutureExt, StreamExt};

use crate::cell::{self, CellEnv, CellResult, GoEnv};
use crate::config::{ConfigError, Matrix, ServicesConfig};
use crate::ko::versions::VersionError;
use crate::ko::{FetchError, KoBinary, KoFetcher};
use crate::provision::GoProvisioner;
use crate::outcome::Outcome;
use crate::report::{cell_label, family, MatrixReport, ReportError, Snapshots};
use crate::scenario::{self, Scenario};
use crate::world::{World, WorldError};

#[derive(Debug, Clone)]
pub enum RunEvent {
    /// The run is about to start `cells` cells.
    Planned { cells: usize },
    /// Services are up; `notes` are choices an `auto` setting made.
    WorldReady { runtime: &'static str, took: Duration, notes: Vec<String> },
    CellStarted { version: String, scenario: String },
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
    #[error("{0}")]
    Go(String),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("writing the built-in app: {0}")]
    BuiltinApp(crate::builtin::InitError),
    #[error("the ko-matrix executable {0} (the cells' credential helper) is missing")]
    NoHelper(PathBuf),
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

/// `--shard i/n`: a deterministic slice of the cells. A cell's shard depends only on its
/// own name, so adding a scenario or version never moves other cells between shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 1-based.
    pub index: u32,
    pub count: u32,
}

impl Shard {
    pub fn parse(text: &str) -> Result<Shard, String> {
        let bad = || format!("--shard takes i/n with 1 <= i <= n, e.g. 2/4 (got {text:?})");
        let (i, n) = text.split_once('/').ok_or_else(bad)?;
        let (index, count): (u32, u32) = (i.trim().parse().map_err(|_| bad())?, n.trim().parse().map_err(|_| bad())?);
        if index == 0 || count == 0 || index > count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    pub fn contains(&self, version: &str, scenario: &str) -> bool {
        // FNV-1a: stable across platforms and releases, unlike std's hasher.
        let hash = format!("{version}::{scenario}").bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| (h ^ b as u64).wrapping_mul(0x0100_0000_01b3));
        hash % self.count as u64 == (self.index - 1) as u64
    }
}

/// The cells a matrix selects: its ko binaries (fetched) and its scenarios.
pub struct Selection {
    pub versions: Vec<KoBinary>,
    pub scenarios: Vec<Scenario>,
}

/// `scenarios/` next to matrix.toml.
pub fn scenarios_dir(matrix: &Matrix) -> PathBuf {
    matrix.file.parent().map_or_else(|| PathBuf::from("scenarios"), |d| d.join("scenarios"))
}

/// `results/*.snap` next to matrix.toml, when there are any: the baseline that decides which
/// cells are worth a retry and which JUnit testcases fail.
pub fn committed_snapshots(matrix: &Matrix) -> Result<Option<Snapshots>, ReportError> {
    crate::report::read_baseline(&matrix.file.parent().unwrap_or(Path::new(".")).join("results"))
}

/// Fetches the resolved `versions` and selects the matrix's scenarios.
pub async fn select(matrix: &Matrix, versions: &[String], fetcher: &KoFetcher) -> Result<Selection, RunError> {
    let known = scenario::discover(&scenarios_dir(matrix))?;
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let selected = matrix.select_scenarios(&names)?;
    let scenarios = known.into_iter().filter(|s| selected.contains(&s.name)).collect();
    let mut binaries = Vec::new();
    for version in versions {
        binaries.push(fetcher.fetch(version).await?);
    }
    Ok(Selection { versions: binaries, scenarios })
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
        let work = tempfile::Builder::new().prefix("ko-matrix-run-").tempdir().map_err(io("creating", &std::env::temp_dir()))?;
        let app_dir = work.path().join("app");
        if options.app_source.is_dir() {
            copy_dir(&options.app_source, &app_dir).map_err(io("copying", &options.app_source))?;
        } else {
            crate::builtin::write_app(&app_dir).map_err(RunError::BuiltinApp)?;
        }
        let logs_dir = options.out_dir.join("logs");
        std::fs::create_dir_all(&logs_dir).map_err(io("creating", &logs_dir))?;

        let go = provisioner.go("the app cells build").await.map_err(|e| RunError::Go(e.to_string()))?;
        let go_env = GoEnv::detect(&go.path).await.map_err(RunError::Go)?;
        let world = Arc::new(World::start(&options.scenarios, &options.services, provisioner, work.path()).await?);
        let env = CellEnv {
            world,
            app_dir,
            go: go_env,
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

    /// Runs a cell, and once more when the first run would change the record (see
    /// [`needs_retry`]); [`settle`] makes one result of the two runs, keeping both logs.
    pub async fn run_cell(&self, ko: &KoBinary, scenario: &Scenario) -> CellResult {
        let mut first = cell::run_cell(&self.env, ko, scenario, 1).await;
        first.attempts = vec![cell_label(&first)];
        let baseline = self.baseline.get(family(&scenario.name)).and_then(|cells| cells.get(&(ko.version.clone(), scenario.name.clone())));
        if !needs_retry(&first, baseline.map(String::as_str)) {
            return first;
        }
        let retry = cell::run_cell(&self.env, ko, scenario, 2).await;
        settle(first, retry)
    }
}

/// Whether a cell's first run is worth repeating: only when it would change the record, that
/// is when its label differs from the cell's `baseline`, or, with no baseline, it failed. A
/// harness fault is not retried: either run's fault makes the cell `infra-error` anyway.
pub fn needs_retry(first: &CellResult, baseline: Option<&str>) -> bool {
    match (first.outcome, baseline) {
        (Outcome::Pass | Outcome::Fail, Some(label)) => cell_label(first) != label,
        (outcome, None) => outcome == Outcome::Fail,
        (Outcome::InfraError | Outcome::Skipped | Outcome::Flaky, Some(_)) => false,
    }
}

/// One result from a cell's two runs: `infra-error` when either run hit a harness fault;
/// `flaky` only when both reached a verdict about ko (pass or fail) and the verdicts differ;
/// else the first run. Both labels and both logs are kept.
pub fn settle(mut first: CellResult, retry: CellResult) -> CellResult {
    let (first_label, retry_label) = (cell_label(&first), cell_label(&retry));
    first.attempts = vec![first_label.clone(), retry_label.clone()];
    first.retry_log = Some(retry.log.clone());
    let verdict = |outcome| matches!(outcome, Outcome::Pass | Outcome::Fail);
    if first.outcome == Outcome::InfraError {
        first.detail = format!("{} (retry: {retry_label})", first.detail);
    } else if retry.outcome == Outcome::InfraError {
        first.detail = format!("{} (on the retry; first run {first_label}: {})", retry.detail, first.detail);
        first.outcome = Outcome::InfraError;
        first.class = None;
    } else if verdict(first.outcome) && verdict(retry.outcome) && first_label != retry_label {
        first.detail = format!("flaky: first run {first_label}: {}; retry {retry_label}: {}", first.detail, retry.detail);
        first.outcome = Outcome::Flaky;
        first.class = None;
    }
    first
}

/// Runs every cell of `selection` (of `shard`, when given), `jobs` at a time. When `stop`
/// completes (a signal), cells still running are stopped and the report holds the finished
/// ones, marked `interrupted`.
pub async fn run(
    selection: &Selection,
    shard: Option<Shard>,
    options: &RunnerOptions,
    jobs: usize,
    provisioner: &GoProvisioner,
    observer: Arc<dyn RunObserver>,
    stop: impl Future<Output = ()>,
) -> Result<MatrixReport, RunError> {
    let stop = stop.shared();
    let started_at = crate::cache::now_rfc3339();
    let logs_dir = options.out_dir.join("logs");
    if logs_dir.exists() {
        std::fs::remove_dir_all(&logs_dir).map_err(|source| RunError::Io { action: "clearing", path: logs_dir.clone(), source })?;
    }
    let runner = tokio::select! {
        runner = Runner::start(options, provisioner) => runner?,
        () = stop.clone() => {
            let mut report = MatrixReport::new(started_at, "not started", &selection.versions, selected_names(selection), Vec::new());
            report.interrupted = true;
            return Ok(report);
        }
    };
    observer.on_run_event(RunEvent::WorldReady { runtime: runner.world().runtime, took: runner.world().started_in, notes: runner.world().notes.clone() });
    let cells: Vec<(&KoBinary, &Scenario)> = selection
        .scenarios
        .iter()
        .flat_map(|s| selection.versions.iter().map(move |v| (v, s)))
        .filter(|(v, s)| shard.is_none_or(|shard| shard.contains(&v.version, &s.name)))
        .collect();
    let planned = cells.len();
    observer.on_run_event(RunEvent::Planned { cells: planned });
    let mut results: Vec<CellResult> = futures_util::stream::iter(cells)
        .map(|(ko, scenario)| {
            let (runner, observer) = (&runner, observer.clone());
            async move {
                observer.on_run_event(RunEvent::CellStarted { version: ko.version.clone(), scenario: scenario.name.clone() });
                let result = runner.run_cell(ko, scenario).await;
                observer.on_run_event(RunEvent::CellFinished(Box::new(result.clone())));
                result
            }
        })
        .buffer_unordered(jobs.max(1))
        .take_until(stop)
        .collect()
        .await;
    let scenario_order = |name: &str| selection.scenarios.iter().position(|s| s.name == name);
    let version_order = |v: &str| selection.versions.iter().position(|k| k.version == v);
    results.sort_by_key(|r| (scenario_order(&r.scenario), version_order(&r.version)));
    let mut report = MatrixReport::new(started_at, runner.world().runtime, &selection.versions, selected_names(selection), results);
    report.interrupted = report.cells.len() < planned;
    Ok(report)
}

fn selected_names(selection: &Selection) -> Vec<String> {
    selection.scenarios.iter().map(|s| s.name.clone()).collect()
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
            version: "v0.15.2".into(),
            scenario: "ecr/env-session".into(),
            outcome,
            class,
            detail: detail.into(),
            duration_ms: 1,
            ko_ms: 1,
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
        assert_eq!((same.log.to_str(), same.retry_log.as_deref().and_then(|p| p.to_str())), (Some("first.log"), Some("retry.log")));

        // Two different verdicts about ko: flaky.
        let flaky = settle(unauthorized("first.log"), pass("retry.log"));
        assert_eq!((flaky.outcome, flaky.class), (Outcome::Flaky, None));
        assert_eq!(flaky.attempts, ["fail(unauthorized)", "pass"]);
        assert!(flaky.detail.starts_with("flaky: first run fail(unauthorized): ko exited 1"), "{}", flaky.detail);

        // A harness fault in the retry hides nothing: the cell is infra-error, not flaky.
        let hidden = settle(unauthorized("first.log"), infra("retry.log"));
        assert_eq!((hidden.outcome, hidden.class), (Outcome::InfraError, None));
        assert_eq!(hidden.attempts, ["fail(unauthorized)", "infra-error"]);
        assert!(hidden.detail.starts_with("infra-error: registry (basic flavour) 127.0.0.1:5000 unreachable"), "{}", hidden.detail);
        assert!(hidden.detail.contains("first run fail(unauthorized): ko exited 1: Error: UNAUTHORIZED"), "{}", hidden.detail);
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
        let cells: Vec<(String, String)> = (0..40).flat_map(|s| ["v0.15.1", "v0.15.2", "v0.15.3"].map(|v| (v.to_string(), format!("registry/s{s}")))).collect();
        let shards: Vec<Shard> = (1..=4).map(|i| Shard::parse(&format!("{i}/4")).unwrap()).collect();
        for (v, s) in &cells {
            assert_eq!(shards.iter().filter(|sh| sh.contains(v, s)).count(), 1, "{v}::{s} is in exactly one shard");
        }
        let sizes: Vec<usize> = shards.iter().map(|sh| cells.iter().filter(|(v, s)| sh.contains(v, s)).count()).collect();
        assert!(sizes.iter().all(|&n| n >= 15), "roughly even: {sizes:?}");
        assert!(Shard::parse("0/4").is_err() && Shard::parse("5/4").is_err() && Shard::parse("x").is_err());
    }
}
