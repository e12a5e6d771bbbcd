//! First results while tools still build: the cells of a version already there start while a
//! later version is still being built, and the run's timings show it. For real: crane v0.20.7
//! from a cache of this test's own, crane v0.19.1 built from the Go module proxy with an empty
//! Go build cache (a fresh machine's: a minute or more of compiling), the Go module cache as it
//! is. (Needs Go and the module proxy.) And while a build compiles, cells make room for it.

mod support;

use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::run::{self, RunEvent, RunObserver, RunPlan, Scheduling};
use ko_matrix::scenario::{self, Scenario};
use ko_matrix::timings::Clock;
use ko_matrix::tool::ToolFetcher;
use support::ko_matrix;

/// Runs `command` (a `run` writing to `out`), which must exit 0: its stderr and its matrix.json.
fn ran(mut command: std::process::Command, out: &Path) -> (String, serde_json::Value) {
    let output = command.output().unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr).into_owned();
    assert_eq!(output.status.code(), Some(0), "{stderr}");
    let report = serde_json::from_slice(&std::fs::read(out.join("matrix.json")).unwrap()).unwrap();
    (stderr, report)
}

#[test]
fn cells_of_a_ready_version_finish_before_a_later_version_is_built() {
    let (dir, cache, gocache) =
        (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    // The version already there: fetched into this test's cache first (with Go's build cache
    // as it is, so quick where crane was built before).
    let fetched = ko_matrix()
        .current_dir(repo)
        .env("KO_MATRIX_CACHE", cache.path())
        .args(["fetch", "crane@v0.20.7"])
        .output()
        .unwrap();
    assert!(fetched.status.success(), "{}", String::from_utf8_lossy(&fetched.stderr));

    let out = dir.path().join("out");
    let mut command = ko_matrix();
    command
        .current_dir(repo)
        .env("KO_MATRIX_CACHE", cache.path())
        .env("GOCACHE", gocache.path())
        .args([
            "run",
            "--versions",
            "crane@v0.20.7,crane@v0.19.1",
            "--scenarios",
            "registry/anonymous,registry/basic-auths",
            "--timings",
            "--out",
        ])
        .arg(&out);
    let (stderr, report) = ran(command, &out);
    let outcomes: Vec<(&str, &str)> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["version"].as_str().unwrap(), c["outcome"].as_str().unwrap()))
        .collect();
    assert_eq!(outcomes.len(), 4, "{stderr}");
    assert!(outcomes.iter().all(|(_, outcome)| *outcome == "pass"), "{outcomes:?}");

    // The timings: the cached version took no time, the other was downloaded and compiled, and
    // the first cell's result came before that compile ended.
    let timings = &report["timings"];
    let build = |version: &str| {
        timings["builds"]
            .as_array()
            .unwrap()
            .iter()
            .find(|b| b["program"] == "crane" && b["version"] == version)
            .unwrap_or_else(|| panic!("no timing for crane {version}: {timings}"))
            .clone()
    };
    let (cached, built) = (build("v0.20.7"), build("v0.19.1"));
    assert_eq!((cached["route"].as_str(), built["route"].as_str()), (Some("cache"), Some("go")), "{timings}");
    let ms = |value: &serde_json::Value| value.as_u64().unwrap_or_else(|| panic!("not a time: {value} in {timings}"));
    let (download, compile) = (&built["download"], &built["compile"]);
    let compile_end = ms(&compile["start_ms"]) + ms(&compile["duration_ms"]);
    assert!(ms(&download["start_ms"]) + ms(&download["duration_ms"]) <= ms(&compile["start_ms"]), "{timings}");
    let build_end = ms(&built["total"]["start_ms"]) + ms(&built["total"]["duration_ms"]);
    assert!(compile_end <= build_end, "{timings}");
    let first_result = ms(&timings["cells"]["first_result_ms"]);
    let last_result = ms(&timings["cells"]["last_result_ms"]);
    assert!(first_result < compile_end, "the first cell came after the build ({timings})");
    assert!(last_result > build_end, "v0.19.1's cells ran after it was built ({timings})");
    assert_eq!(timings["cells"]["count"], 4, "{timings}");

    // What was printed, in the order it happened: v0.20.7's cells before v0.19.1 was built.
    let at = |needle: &str| stderr.find(needle).unwrap_or_else(|| panic!("no {needle:?} in {stderr}"));
    let built_line = at("crane v0.19.1: built and verified in");
    assert!(at("crane@v0.20.7::registry/anonymous: pass") < built_line, "{stderr}");
    assert!(at("crane@v0.20.7::registry/basic-auths: pass") < built_line, "{stderr}");
    assert!(at("crane v0.19.1: downloading its modules and go1.") < built_line, "{stderr}");
    assert!(built_line < at("crane@v0.19.1::registry/anonymous: pass"), "{stderr}");
    // `--timings` ends with the table and the line that compares the two.
    assert!(stderr.contains("\ncrane v0.19.1 (built) "), "{stderr}");
    assert!(stderr.contains("  compile "), "{stderr}");
    let closing = stderr.lines().last().unwrap_or_default();
    assert!(
        closing.starts_with("first cell result at ") && closing.contains(" before the last build ended (at "),
        "{stderr}"
    );
}

/// Without the namespace (forced here; also where the kernel refuses one or the services need
/// the host's network) the run fetches and runs cells in one process: versions all there
/// before the services are still each run, and the timings are recorded the same way.
#[test]
fn a_run_without_the_namespace_runs_every_version_that_came() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let mut command = ko_matrix();
    command
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .env("KO_MATRIX_CONTAINMENT", "proxy-only")
        .args(["run", "--versions", "crane@v0.20.7,crane@v0.22.1,oras@v1.3.6", "--scenarios", "registry/anonymous"])
        .arg("--out")
        .arg(&out);
    let (stderr, report) = ran(command, &out);
    let cells: Vec<String> = report["cells"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| {
            format!(
                "{}@{} {}",
                c["tool"].as_str().unwrap(),
                c["version"].as_str().unwrap(),
                c["outcome"].as_str().unwrap()
            )
        })
        .collect();
    assert_eq!(cells, ["crane@v0.20.7 pass", "crane@v0.22.1 pass", "oras@v1.3.6 pass"], "{stderr}");
    let timings = &report["timings"];
    let programs: Vec<&str> =
        timings["builds"].as_array().unwrap().iter().map(|b| b["program"].as_str().unwrap()).collect();
    assert_eq!(programs.iter().filter(|p| **p == "crane").count(), 2, "{timings}");
    assert!(programs.contains(&"oras"), "{timings}");
    for phase in ["resolve", "services", "reports"] {
        assert!(timings[phase]["duration_ms"].is_u64(), "{phase}: {timings}");
    }
    assert_eq!(timings["cells"]["count"], 3, "{timings}");
    assert!(!stderr.contains("first cell result at"), "no --timings, no table: {stderr}");
}

/// Counts the cells a run has running, while the test says a build compiles and after.
struct Pace {
    running: AtomicUsize,
    finished: AtomicUsize,
    most_while_building: AtomicUsize,
    most_after: AtomicUsize,
    /// The build ends once this many cells finished.
    build_ends_after: usize,
    compiling: tokio::sync::watch::Sender<usize>,
}

impl RunObserver for Pace {
    fn on_run_event(&self, event: RunEvent) {
        match event {
            RunEvent::CellStarted { .. } => {
                let now = self.running.fetch_add(1, Ordering::SeqCst) + 1;
                let most = if *self.compiling.borrow() > 0 { &self.most_while_building } else { &self.most_after };
                most.fetch_max(now, Ordering::SeqCst);
            }
            RunEvent::CellFinished(_) => {
                self.running.fetch_sub(1, Ordering::SeqCst);
                if self.finished.fetch_add(1, Ordering::SeqCst) + 1 == self.build_ends_after {
                    self.compiling.send_replace(0);
                }
            }
            RunEvent::Planned { .. } | RunEvent::WorldReady { .. } => {}
        }
    }
}

/// While a build compiles, cells make room for it: half the jobs, at least one (here 1 of 2);
/// once it has ended, all of them. The run's own scheduler, with real cells of crane v0.20.7,
/// is told a build compiles (as this process's builds tell it, or the run outside the
/// namespace), and every start and end it reports is counted.
#[tokio::test(flavor = "multi_thread")]
async fn while_a_build_compiles_cells_run_at_half_the_jobs() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"));
    let matrix = Matrix::load(&root.join("matrix.toml")).unwrap();
    let crane = ko_matrix::tool::by_name("crane").unwrap();
    let scenarios: Vec<Scenario> = scenario::discover(&root.join("scenarios"))
        .unwrap()
        .into_iter()
        .filter(|s| s.name.starts_with("registry/"))
        .collect();
    let names: Vec<String> = scenarios.iter().map(|s| s.name.clone()).collect();
    let settings = matrix.tools.iter().find(|t| t.tool.name() == "crane").unwrap().fetch.clone();
    let fetcher = ToolFetcher::new(crane, Cache::from_env().unwrap(), settings, Arc::new(Silent));
    let binary = fetcher.fetch("v0.20.7").await.unwrap_or_else(|e| panic!("{e}"));
    let out = tempfile::tempdir().unwrap();
    let options = support::runner_options(&matrix, &scenarios, out.path(), matrix.cell_timeout);
    let plan = RunPlan {
        versions: vec![(crane, "v0.20.7".into())],
        scenarios,
        tool_scenarios: vec![("crane", names)],
        notes: Vec::new(),
    };
    let (compiling, builds) = tokio::sync::watch::channel(1);
    let pace = Arc::new(Pace {
        running: AtomicUsize::new(0),
        finished: AtomicUsize::new(0),
        most_while_building: AtomicUsize::new(0),
        most_after: AtomicUsize::new(0),
        build_ends_after: 6,
        compiling,
    });
    let scheduling = Scheduling { shard: None, jobs: 2, clock: Clock::start(), compiling: Some(builds) };
    let arrivals = futures_util::stream::iter([Ok(binary)]);
    let report = run::run(&plan, arrivals, scheduling, &options, fetcher.go(), pace.clone(), std::future::pending())
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(report.cells.len(), 18, "{}", report.summary());
    assert!(report.cells.iter().all(|c| c.outcome != ko_matrix::outcome::Outcome::InfraError), "{}", report.summary());
    assert_eq!(pace.most_while_building.load(Ordering::SeqCst), 1, "one cell at a time beside the build");
    assert_eq!(pace.most_after.load(Ordering::SeqCst), 2, "both jobs once it ended");
    assert_eq!(ko_matrix::run::jobs_beside_builds(8), 4);
}
