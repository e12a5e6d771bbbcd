//! A run: start the world once, run every (version, scenario) cell with bounded
//! parallelism, and hand back the results. It reports progress as events; it prints nothing.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;

use crate::cell::{self, CellEnv, CellResult, GoEnv};
use crate::ko::KoBinary;
use crate::provision::GoProvisioner;
use crate::report::MatrixReport;
use crate::scenario::Scenario;
use crate::services::runtime::RuntimeChoice;
use crate::world::{World, WorldError};

pub struct RunPlan {
    pub versions: Vec<KoBinary>,
    pub scenarios: Vec<Scenario>,
    pub jobs: usize,
    pub cell_timeout: Duration,
    pub runtime: RuntimeChoice,
    /// Where logs go (`<out>/logs/`).
    pub out_dir: PathBuf,
    /// `scenarios/app`.
    pub app_source: PathBuf,
    /// The `docker-credential-ko-matrix` binary.
    pub helper: PathBuf,
}

#[derive(Debug, Clone)]
pub enum RunEvent {
    WorldReady { runtime: &'static str, took: Duration },
    CellStarted { version: String, scenario: String },
    CellFinished(Box<CellResult>),
}

pub trait RunObserver: Send + Sync {
    fn on_run_event(&self, event: RunEvent);
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error("starting services failed: {0}")]
    World(#[from] WorldError),
    #[error("{0}")]
    Go(String),
    #[error("{action} {path}: {source}")]
    Io { action: &'static str, path: PathBuf, source: std::io::Error },
    #[error("the credential helper {0} is missing; build it with `cargo build` (it ships with ko-matrix)")]
    NoHelper(PathBuf),
}

pub async fn run(plan: RunPlan, provisioner: &GoProvisioner, observer: Arc<dyn RunObserver>) -> Result<MatrixReport, RunError> {
    let started_at = crate::cache::now_rfc3339();
    if !plan.helper.is_file() {
        return Err(RunError::NoHelper(plan.helper));
    }
    let work = tempfile::Builder::new().prefix("ko-matrix-run-").tempdir().map_err(|source| RunError::Io { action: "creating", path: std::env::temp_dir(), source })?;
    let app_dir = work.path().join("app");
    copy_dir(&plan.app_source, &app_dir).map_err(|source| RunError::Io { action: "copying", path: plan.app_source.clone(), source })?;
    let logs_dir = plan.out_dir.join("logs");
    if logs_dir.exists() {
        std::fs::remove_dir_all(&logs_dir).map_err(|source| RunError::Io { action: "clearing", path: logs_dir.clone(), source })?;
    }
    std::fs::create_dir_all(&logs_dir).map_err(|source| RunError::Io { action: "creating", path: logs_dir.clone(), source })?;

    let go = provisioner.go("the app cells build").await.map_err(|e| RunError::Go(e.to_string()))?;
    let go_env = GoEnv::detect(&go.path).await.map_err(RunError::Go)?;
    let flavours: BTreeSet<_> = plan.scenarios.iter().map(|s| s.target.registry).collect();
    let world = Arc::new(World::start(&flavours, plan.runtime, provisioner, work.path()).await?);
    observer.on_run_event(RunEvent::WorldReady { runtime: world.runtime, took: world.started_in });

    let env = CellEnv {
        world: world.clone(),
        app_dir,
        go: go_env,
        helper: plan.helper.clone(),
        work_dir: work.path().join("cells"),
        logs_dir,
        timeout: plan.cell_timeout,
    };
    let cells: Vec<(&KoBinary, &Scenario)> = plan.scenarios.iter().flat_map(|s| plan.versions.iter().map(move |v| (v, s))).collect();
    let mut results: Vec<CellResult> = futures_util::stream::iter(cells)
        .map(|(ko, scenario)| {
            let (env, observer) = (&env, observer.clone());
            async move {
                observer.on_run_event(RunEvent::CellStarted { version: ko.version.clone(), scenario: scenario.name.clone() });
                let result = cell::run_cell(env, ko, scenario).await;
                observer.on_run_event(RunEvent::CellFinished(Box::new(result.clone())));
                result
            }
        })
        .buffer_unordered(plan.jobs.max(1))
        .collect()
        .await;
    let scenario_order = |name: &str| plan.scenarios.iter().position(|s| s.name == name);
    let version_order = |v: &str| plan.versions.iter().position(|k| k.version == v);
    results.sort_by_key(|r| (scenario_order(&r.scenario), version_order(&r.version)));
    Ok(MatrixReport::new(started_at, world.runtime, &plan.versions, results))
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
