//! The matrix as `cargo test`: one named test per cell (`ko@v0.15.2::registry/basic-auths`),
//! so the usual filters work (`cargo test --test matrix -- crane@`, `-- v0.15.2::`,
//! `-- registry/`), and `--list` lists the cells. Services start once per test process, on
//! the first cell run.
//!
//! Each cell is compared with the committed snapshot of its tool and family
//! (`results/<tool>/<family>.snap`): a changed cell fails with old → new, its class, the
//! tool's deciding line and the log path; a cell missing from the snapshot (a new tool version
//! or scenario) fails as pending; a cell the harness skips, as recorded, shows as ignored with
//! its reason (it did not run, so it never reads as passed). When
//! every cell of a family ran, the family's whole snapshot is checked with insta, so
//! `cargo insta review` accepts a new matrix like any insta change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::events::Silent;
use ko_matrix::report::{self, family, CellResult, MatrixReport, Snapshots};
use ko_matrix::run::{Runner, RunnerOptions};
use ko_matrix::scenario::Scenario;
use ko_matrix::tool::{versions, Tool, ToolBinary, ToolFetcher};
use libtest_mimic::{Arguments, Completion, Failed, Trial};

fn root() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

/// What every cell shares, started by the first cell that runs.
struct Shared {
    runtime: tokio::runtime::Runtime,
    fetchers: Vec<ToolFetcher>,
    runner: Runner,
    /// `tool@version` → binary.
    binaries: Mutex<BTreeMap<String, ToolBinary>>,
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();
static RESULTS: Mutex<Vec<CellResult>> = Mutex::new(Vec::new());

fn shared(matrix: &Matrix, scenarios: &[Scenario]) -> Result<&'static Shared, Failed> {
    let shared = SHARED.get_or_init(|| {
        let runtime = tokio::runtime::Runtime::new().map_err(|e| e.to_string())?;
        let cache = Cache::from_env().map_err(|e| e.to_string())?;
        let fetchers: Vec<ToolFetcher> = matrix
            .tools
            .iter()
            .map(|t| ToolFetcher::new(t.tool, cache.clone(), t.fetch.clone(), Arc::new(Silent)))
            .collect();
        let options = RunnerOptions {
            scenarios: scenarios.to_vec(),
            services: matrix.services.clone(),
            cell_timeout: matrix.cell_timeout,
            out_dir: root().join("results/latest"),
            app_source: root().join("scenarios/app"),
            helper: PathBuf::from(env!("CARGO_BIN_EXE_ko-matrix")),
            baseline: ko_matrix::run::committed_snapshots(matrix).map_err(|e| e.to_string())?,
            // libtest-mimic orders the cells itself.
            durations: None,
        };
        let runner = runtime
            .block_on(Runner::start(&options, fetchers[0].go()))
            .map_err(|e| format!("services did not start: {e}"))?;
        Ok(Shared { runtime, fetchers, runner, binaries: Mutex::new(BTreeMap::new()) })
    });
    shared.as_ref().map_err(|e| Failed::from(format!("infra-error: {e}")))
}

fn binary(shared: &Shared, tool: &Tool, version: &str) -> Result<ToolBinary, Failed> {
    let key = format!("{}@{version}", tool.name());
    if let Some(binary) = shared.binaries.lock().unwrap().get(&key) {
        return Ok(binary.clone());
    }
    let fetcher = shared.fetchers.iter().find(|f| f.tool().name() == tool.name()).expect("a fetcher per tool");
    let binary = shared
        .runtime
        .block_on(fetcher.fetch(version))
        .map_err(|e| Failed::from(format!("infra-error: could not get {key}: {e}")))?;
    shared.binaries.lock().unwrap().insert(key, binary.clone());
    Ok(binary)
}

/// The label a cell is compared by: a flaky cell one of whose runs gave the expected label
/// counts as that label (flaky is reported, never a regression).
fn effective_label(result: &CellResult, expected: Option<&str>) -> String {
    match expected {
        Some(old)
            if result.outcome == ko_matrix::outcome::Outcome::Flaky && result.attempts.iter().any(|a| a == old) =>
        {
            old.to_string()
        }
        _ => result.label(),
    }
}

/// One cell of the matrix, as a test.
struct CellCase {
    tool: &'static Tool,
    version: String,
    scenario: Scenario,
    expected: Option<String>,
}

/// A cell the harness skips (a copy with per-side flags the tool does not have) is compared like
/// any other, and shows as ignored with its reason: it did not run, so it never reads as passed.
fn run_cell(matrix: &Matrix, scenarios: &[Scenario], case: &CellCase) -> Result<Completion, Failed> {
    let shared = shared(matrix, scenarios)?;
    let binary = binary(shared, case.tool, &case.version)?;
    let result = shared.runtime.block_on(shared.runner.run_cell(&binary, &case.scenario));
    RESULTS.lock().unwrap().push(result.clone());
    let label = effective_label(&result, case.expected.as_deref());
    let snapshot = format!("results/{}/{}.snap", case.tool.name(), family(&case.scenario.name));
    let id = result.id();
    // Where the refusal names its cause (expired, not authorized to perform, not found,
    // invalid), the diagnosis names the same one: an explanation never contradicts the answer.
    if result.outcome == ko_matrix::outcome::Outcome::Fail {
        let said = result.diagnosis.as_deref().unwrap_or_default();
        let unnamed: Vec<_> = ko_matrix::diagnosis::refusal_causes(&result.detail)
            .into_iter()
            .filter(|cause| !cause.is_named_in(said))
            .collect();
        if !unnamed.is_empty() {
            return Err(format!(
                "{id}: the refusal names {unnamed:?} and the diagnosis does not\n  detail: {}\n  diagnosis: {said}",
                result.detail
            )
            .into());
        }
    }
    if result.outcome == ko_matrix::outcome::Outcome::Flaky {
        eprintln!("flaky: {id}: runs {} ({})", result.attempts.join(" → "), result.detail);
    }
    match &case.expected {
        Some(old) if *old == label && result.outcome == ko_matrix::outcome::Outcome::Skipped => {
            Ok(Completion::ignored_with(format!("skipped, as recorded: {}", result.detail)))
        }
        Some(old) if *old == label => Ok(Completion::Completed),
        Some(old) => Err(format!(
            "{id}: {old} → {label}\n  detail: {}\n  log: {}\n  (accept the new matrix with `cargo insta review`)",
            result.detail,
            result.log.display()
        )
        .into()),
        None => Err(format!(
            "pending: {id} = {label} is not in {snapshot} yet\n  detail: {}\n  log: {}\n  (review and accept with `cargo insta review`)",
            result.detail,
            result.log.display()
        )
        .into()),
    }
}

fn main() {
    let args = Arguments::from_args();
    let matrix = Matrix::load(&root().join("matrix.toml")).unwrap_or_else(|e| panic!("{e}"));
    // The run's own selection: each tool's scenarios, copies only for tools that copy.
    let tools: Vec<&'static Tool> = matrix.tools.iter().map(|t| t.tool).collect();
    let selected = ko_matrix::run::select_scenarios(&matrix, &tools).unwrap_or_else(|e| panic!("{e}"));
    let listing_runtime = tokio::runtime::Runtime::new().unwrap();
    // Per tool: its versions and its scenarios.
    let mut plan: Vec<(&'static Tool, Vec<String>, Vec<String>)> = Vec::new();
    for config in &matrix.tools {
        let resolution = listing_runtime
            .block_on(versions::resolve_listing(config.tool, &config.versions))
            .unwrap_or_else(|e| panic!("{e}"));
        let tool_scenarios = selected.tool_scenarios.iter().find(|(t, _)| *t == config.tool.name());
        plan.push((config.tool, resolution.versions, tool_scenarios.map(|(_, s)| s.clone()).unwrap_or_default()));
    }
    let scenarios: Vec<Scenario> = selected.scenarios;

    let matrix = Arc::new(matrix);
    let scenarios = Arc::new(scenarios);
    let snapshots = report::read_snapshots(&root().join("results")).unwrap_or_else(|e| panic!("{e}"));
    let mut trials = Vec::new();
    // (tool, family) → how many cells the matrix has there.
    let mut cells_per_family: BTreeMap<(&'static str, String), usize> = BTreeMap::new();
    for (tool, tool_versions, tool_scenarios) in &plan {
        for scenario in scenarios.iter().filter(|s| tool_scenarios.contains(&s.name)) {
            let family = family(&scenario.name).to_string();
            for version in tool_versions {
                *cells_per_family.entry((tool.name(), family.clone())).or_default() += 1;
                let expected = snapshots.label(tool.name(), version, &scenario.name).map(String::from);
                let case = CellCase { tool, version: version.clone(), scenario: scenario.clone(), expected };
                let (matrix, all) = (matrix.clone(), scenarios.clone());
                let name = ko_matrix::report::cell_id(tool.name(), version, &scenario.name);
                trials.push(
                    Trial::ignorable_test(name, move || run_cell(&matrix, &all, &case))
                        .with_kind(format!("{}/{family}", tool.name())),
                );
            }
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
        let shared = SHARED.get().and_then(|s| s.as_ref().ok());
        let versions: Vec<ToolBinary> =
            shared.map(|s| s.binaries.lock().unwrap().values().cloned().collect()).unwrap_or_default();
        let report = MatrixReport::new(
            ko_matrix::cache::now_rfc3339(),
            shared.map_or("?", |s| s.runner.world().runtime),
            &versions,
            scenarios.iter().map(|s| s.name.clone()).collect(),
            results.clone(),
        );
        if let Err(e) = report.write_all(&root().join("results/latest"), Some(&snapshots)) {
            eprintln!("could not write the reports in results/latest: {e}");
        }
        snapshot_ok = check_family_snapshots(&results, &plan, &scenarios, &cells_per_family, &snapshots);
        // The per-cell lines are lost among the tests'; flaky cells pass, so name them again.
        eprintln!("\n{}", report.summary());
        eprint!("{}", ko_matrix::report::flaky::listing(&report));
    }
    if !snapshot_ok && conclusion.num_failed == 0 {
        std::process::exit(101);
    }
    conclusion.exit();
}

/// For each tool's family whose every cell ran, compares its whole snapshot through insta.
fn check_family_snapshots(
    results: &[CellResult],
    plan: &[(&'static Tool, Vec<String>, Vec<String>)],
    scenarios: &[Scenario],
    cells_per_family: &BTreeMap<(&'static str, String), usize>,
    snapshots: &Snapshots,
) -> bool {
    let mut ok = true;
    for ((tool, family_name), expected_cells) in cells_per_family {
        let (_, versions, tool_scenarios) = plan.iter().find(|(t, _, _)| t.name() == *tool).expect("planned tool");
        let mut cells: Vec<(String, String, String)> = Vec::new();
        for version in versions {
            for scenario in
                scenarios.iter().filter(|s| family(&s.name) == family_name && tool_scenarios.contains(&s.name))
            {
                if let Some(r) =
                    results.iter().find(|r| r.tool == *tool && &r.version == version && r.scenario == scenario.name)
                {
                    let expected = snapshots.label(tool, version, &scenario.name);
                    cells.push((version.clone(), scenario.name.clone(), effective_label(r, expected)));
                }
            }
        }
        if cells.len() != *expected_cells {
            continue; // A filtered run: the per-cell comparisons are the verdict.
        }
        let body = report::render_snapshot(&cells);
        let mut settings = insta::Settings::clone_current();
        settings.set_snapshot_path(report::snapshot_dir(&root().join("results"), tool));
        settings.set_prepend_module_to_snapshot(false);
        settings.set_omit_expression(true);
        settings
            .set_description(format!("ko-matrix: {family_name} scenarios × {tool} versions (pass / fail(<class>))"));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            settings.bind(|| insta::assert_snapshot!(family_name.as_str(), body))
        }));
        if outcome.is_err() {
            ok = false;
        }
    }
    ok
}
