//! The matrix as `cargo test`: one named test per cell (`v0.15.2::registry/basic-auths`),
//! so the usual filters work (`cargo test --test matrix -- v0.15.2`, `-- registry/`), and
//! `--list` lists the cells. Services start once per test process, on the first cell run.
//!
//! Each cell is compared with the committed snapshot of its family (`results/<family>.snap`):
//! a changed cell fails with old → new, its class, ko's deciding line and the log path; a
//! cell missing from the snapshot (a new ko version or scenario) fails as pending. When
//! every cell of a family ran, the family's whole snapshot is checked with insta, so
//! `cargo insta review` accepts a new matrix like any insta change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ko_matrix::cache::Cache;
use ko_matrix::cell::CellResult;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::ko::{versions, KoBinary, KoFetcher};
use ko_matrix::report::{self, cell_label, family, MatrixReport};
use ko_matrix::run::{Runner, RunnerOptions};
use ko_matrix::scenario::{self, Scenario};
use libtest_mimic::{Arguments, Failed, Trial};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What every cell shares, started by the first cell that runs.
struct Shared {
    runtime: tokio::runtime::Runtime,
    fetcher: KoFetcher,
    runner: Runner,
    binaries: Mutex<BTreeMap<String, KoBinary>>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static RESULTS: Mutex<Vec<CellResult>> = Mutex::new(Vec::new());

fn shared(matrix: &Matrix, scenarios: &[Scenario]) -> Result<&'static Shared, Failed> {
    let shared = SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let fetcher = KoFetcher::new(Cache::from_env().map_err(|e| e.to_string())?, matrix.ko.clone(), Arc::new(Silent));
        let options = RunnerOptions {
            scenarios: scenarios.to_vec(),
            services: matrix.services.clone(),
            cell_timeout: matrix.cell_timeout,
            out_dir: root().join("results/latest"),
            app_source: root().join("scenarios/app"),
            helper: PathBuf::from(env!("CARGO_BIN_EXE_ko-matrix")),
            baseline: ko_matrix::run::committed_snapshots(matrix).map_err(|e| e.to_string())?,
        };
        let runner = runtime.block_on(Runner::start(&options, fetcher.go())).map_err(|e| format!("services did not start: {e}"))?;
        Ok(Shared { runtime, fetcher, runner, binaries: Mutex::new(BTreeMap::new()) })
    });
    shared.as_ref().map_err(|e| Failed::from(format!("infra-error: {e}")))
}

fn ko(shared: &Shared, version: &str) -> Result<KoBinary, Failed> {
    if let Some(ko) = shared.binaries.lock().unwrap().get(version) {
        return Ok(ko.clone());
    }
    let ko = shared.runtime.block_on(shared.fetcher.fetch(version)).map_err(|e| Failed::from(format!("infra-error: could not get ko {version}: {e}")))?;
    shared.binaries.lock().unwrap().insert(version.to_string(), ko.clone());
    Ok(ko)
}

/// The label a cell is compared by: a flaky cell one of whose runs gave the expected label
/// counts as that label (flaky is reported, never a regression).
fn effective_label(result: &CellResult, expected: Option<&str>) -> String {
    match expected {
        Some(old) if result.outcome == ko_matrix::outcome::Outcome::Flaky && result.attempts.iter().any(|a| a == old) => old.to_string(),
        _ => cell_label(result),
    }
}

fn run_cell(matrix: &Matrix, scenarios: &[Scenario], scenario: &Scenario, version: &str, expected: Option<String>) -> Result<(), Failed> {
    let shared = shared(matrix, scenarios)?;
    let ko = ko(shared, version)?;
    let result = shared.runtime.block_on(shared.runner.run_cell(&ko, scenario));
    RESULTS.lock().unwrap().push(result.clone());
    let label = effective_label(&result, expected.as_deref());
    let snapshot = format!("results/{}.snap", family(&scenario.name));
    if result.outcome == ko_matrix::outcome::Outcome::Flaky {
        eprintln!("flaky: {version} × {}: runs {} ({})", scenario.name, result.attempts.join(" → "), result.detail);
    }
    match expected {
        Some(old) if old == label => Ok(()),
        Some(old) => Err(format!(
            "{version} × {}: {old} → {label}\n  detail: {}\n  log: {}\n  (accept the new matrix with `cargo insta review`)",
            scenario.name,
            result.detail,
            result.log.display()
        )
        .into()),
        None => Err(format!(
            "pending: {version} × {} = {label} is not in {snapshot} yet\n  detail: {}\n  log: {}\n  (review and accept with `cargo insta review`)",
            scenario.name,
            result.detail,
            result.log.display()
        )
        .into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let matrix = Matrix::load(&root().join("matrix.toml")).unwrap_or_else(|e| panic!("{e}"));
    let known = scenario::discover(&root().join("scenarios")).unwrap_or_else(|e| panic!("{e}"));
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let selected = matrix.select_scenarios(&names).unwrap_or_else(|e| panic!("{e}"));
    let scenarios: Vec<Scenario> = known.into_iter().filter(|s| selected.contains(&s.name)).collect();
    let resolution = tokio::runtime::Runtime::new().unwrap().block_on(versions::resolve_listing(&matrix.versions)).unwrap_or_else(|e| panic!("{e}"));

    let matrix = Arc::new(matrix);
    let scenarios = Arc::new(scenarios);
    let mut snapshots = report::read_snapshots(&root().join("results")).unwrap_or_else(|e| panic!("{e}"));
    let mut trials = Vec::new();
    let mut cells_per_family: BTreeMap<String, usize> = BTreeMap::new();
    for scenario in scenarios.iter() {
        let family = family(&scenario.name).to_string();
        let expected = snapshots.entry(family.clone()).or_default();
        for version in &resolution.versions {
            *cells_per_family.entry(family.clone()).or_default() += 1;
            let old = expected.get(&(version.clone(), scenario.name.clone())).cloned();
            let (matrix, scenarios, scenario, version) = (matrix.clone(), scenarios.clone(), scenario.clone(), version.clone());
            trials.push(Trial::test(format!("{version}::{}", scenario.name), move || run_cell(&matrix, &scenarios, &scenario, &version, old)).with_kind(family.clone()));
        }
    }
    let listing = args.list;
    let conclusion = libtest_mimic::run(&args, trials);
    if listing {
        conclusion.exit();
    }

    let results = std::mem::take(&mut *RESULTS.lock().unwrap());
    let mut snapshot_ok = true;
    if !results.is_empty() {
        let versions: Vec<KoBinary> = SHARED.get().and_then(|s| s.as_ref().ok()).map(|s| s.binaries.lock().unwrap().values().cloned().collect()).unwrap_or_default();
        let report = MatrixReport::new(ko_matrix::cache::now_rfc3339(), SHARED.get().and_then(|s| s.as_ref().ok()).map_or("?", |s| s.runner.world().runtime), &versions, scenarios.iter().map(|s| s.name.clone()).collect(), results.clone());
        if let Err(e) = report.write_all(&root().join("results/latest"), Some(&snapshots)) {
            eprintln!("could not write the reports in results/latest: {e}");
        }
        snapshot_ok = check_family_snapshots(&results, &resolution.versions, &scenarios, &cells_per_family, &snapshots);
    }
    if !snapshot_ok && conclusion.num_failed == 0 {
        std::process::exit(101);
    }
    conclusion.exit();
}

/// For each family whose every cell ran, compares its whole snapshot through insta.
fn check_family_snapshots(
    results: &[CellResult],
    versions: &[String],
    scenarios: &[Scenario],
    cells_per_family: &BTreeMap<String, usize>,
    snapshots: &BTreeMap<String, BTreeMap<(String, String), String>>,
) -> bool {
    let mut ok = true;
    for (family_name, expected_cells) in cells_per_family {
        let mut cells: Vec<(String, String, String)> = Vec::new();
        for version in versions {
            for scenario in scenarios.iter().filter(|s| family(&s.name) == family_name) {
                if let Some(r) = results.iter().find(|r| &r.version == version && r.scenario == scenario.name) {
                    let expected = snapshots.get(family_name).and_then(|s| s.get(&(version.clone(), scenario.name.clone())));
                    cells.push((version.clone(), scenario.name.clone(), effective_label(r, expected.map(String::as_str))));
                }
            }
        }
        if cells.len() != *expected_cells {
            continue; // A filtered run: the per-cell comparisons are the verdict.
        }
        let body = report::render_snapshot(&cells);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(root().join("results"));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings.set_description(format!("ko-matrix: {family_name} scenarios × ko versions (pass / fail(<class>))"));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| settings.bind(|| insta::assert_snapshot!(family_name.as_str(), body))));
        if outcome.is_err() {
            ok = false;
        }
    }
    ok
}
