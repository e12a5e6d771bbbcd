//! The commands that read matrix.json files and never run a cell: report, diff, check,
//! merge and regressions.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, ValueEnum};
use ko_matrix::report::regressions::{self, Mark};
use ko_matrix::report::{self, cell_id, markdown, render_table, CheckScope, MatrixReport};
use ko_matrix::report::{flaky, history};
use ko_matrix::run::Shard;
use ko_matrix::schedule::{Durations, ShardPlan};

use crate::BadInput;

/// Where committed snapshots live by default: `results/` next to the matrix file.
pub const SNAPSHOTS_DIR: &str = "results";

pub fn report_command(dir: &Path, snapshots: &Path) -> anyhow::Result<u8> {
    let report = MatrixReport::read(&dir.join("matrix.json"))?;
    report.write_all(dir, report::read_baseline(snapshots)?.as_ref())?;
    println!("{}", render_table(&report));
    Ok(0)
}

pub fn diff(old: &Path, new: &Path) -> anyhow::Result<u8> {
    let changes = report::diff(&MatrixReport::read(old)?, &MatrixReport::read(new)?);
    for change in &changes {
        println!("{change}");
    }
    eprintln!("{} cell(s) changed", changes.len());
    Ok(if changes.is_empty() { 0 } else { 1 })
}

#[derive(Args)]
pub struct RecordArgs {
    matrix: PathBuf,
    /// The committed snapshots: the history goes to DIR/history/.
    #[arg(long, default_value = SNAPSHOTS_DIR, value_name = "DIR")]
    snapshots: PathBuf,
}

pub fn record(args: RecordArgs) -> anyhow::Result<u8> {
    let report = MatrixReport::read(&args.matrix)?;
    match history::record(&report, &args.snapshots) {
        Ok(recorded) => {
            for (path, cells) in &recorded.files {
                println!("{} ({cells} cells)", path.display());
            }
            println!(
                "recorded {} new or changed cell(s); {} cell(s) of pinned versions left to {}/<tool>/",
                recorded.cells,
                recorded.pinned,
                args.snapshots.display()
            );
            Ok(0)
        }
        Err(history::RecordError::Report(e)) => Err(e.into()),
        Err(e @ history::RecordError::NotTheTools(_)) => {
            eprintln!("{e}");
            Ok(1)
        }
    }
}

#[derive(Args)]
pub struct CheckArgs {
    matrix: PathBuf,
    /// Where the committed `<tool>/<family>.snap` files are.
    #[arg(long, default_value = SNAPSHOTS_DIR, value_name = "DIR")]
    snapshots: PathBuf,
    /// Compare only the versions the snapshots record; leave the others (latest-N, main) to
    /// `ko-matrix regressions`.
    #[arg(long)]
    only_snapshotted_versions: bool,
}

pub fn check(args: CheckArgs) -> anyhow::Result<u8> {
    let snapshots = report::read_snapshots(&args.snapshots)?;
    let scope = if args.only_snapshotted_versions { CheckScope::SnapshottedVersions } else { CheckScope::All };
    let changes = report::check_against(&MatrixReport::read(&args.matrix)?, &snapshots, scope);
    for change in &changes {
        match (&change.old, &change.new) {
            (Some(_), Some(_)) => println!("changed: {change}"),
            (None, new) => println!(
                "pending: {} = {} is not in the snapshots yet",
                cell_id(&change.tool, &change.version, &change.scenario),
                new.clone().unwrap_or_default()
            ),
            (Some(old), None) => println!(
                "missing: {} (snapshot: {old}) did not run; a shard or the run may have stopped early",
                cell_id(&change.tool, &change.version, &change.scenario)
            ),
        }
    }
    eprintln!("{} cell(s) differ from {}", changes.len(), args.snapshots.display());
    Ok(if changes.is_empty() { 0 } else { 1 })
}

pub fn merge(shards: &[PathBuf], out: &Path, snapshots: &Path, plan: Option<&Path>) -> anyhow::Result<u8> {
    let parts = shards.iter().map(|p| MatrixReport::read(p)).collect::<Result<Vec<_>, _>>()?;
    let plan = plan.map(ShardPlan::read).transpose()?.map(Arc::new);
    let merged = report::merge(&parts).map_err(|e| BadInput(e.to_string()))?;
    let json = merged.write_all(out, report::read_baseline(snapshots)?.as_ref())?;
    println!("{}", render_table(&merged));
    // The merged cells' durations are what the next plan splits by, as a whole run's would be.
    let mut durations = Durations::load(&ko_matrix::cache::Cache::from_env()?.root().join("durations.json"));
    if let Err(e) = durations.record(&merged.cells) {
        eprintln!("warning: the cells' durations were not kept for the next plan: {e}");
    }
    for line in absent_by_shard(shards, &parts, &merged.absent_cells(), plan) {
        eprintln!("warning: {line}");
    }
    eprintln!("merged {} shards, {} cells: {}", parts.len(), merged.cells.len(), json.display());
    Ok(0)
}

/// Where the selected cells that no shard reported should have come from: a line per shard
/// (given or missing), naming a few of them.
fn absent_by_shard(
    paths: &[PathBuf],
    parts: &[MatrixReport],
    absent: &[String],
    plan: Option<Arc<ShardPlan>>,
) -> Vec<String> {
    if absent.is_empty() {
        return Vec::new();
    }
    let count = parts.iter().filter_map(|p| p.shard.as_deref()).find_map(|s| Shard::parse(s).ok()).map(|s| s.count);
    let Some(count) = count else {
        return vec![format!("{} selected cell(s) are in no matrix given: {}", absent.len(), examples(absent.iter()))];
    };
    let mut lines = Vec::new();
    for index in 1..=count {
        let shard = Shard { index, count, plan: plan.clone() };
        let missing: Vec<&String> = absent.iter().filter(|id| shard.contains(id)).collect();
        if missing.is_empty() {
            continue;
        }
        let given =
            parts.iter().zip(paths).find(|(p, _)| p.shard.as_deref() == Some(format!("{index}/{count}").as_str()));
        lines.push(match given {
            Some((part, path)) => format!(
                "shard {index}/{count} ({}) lacks {} of its cells{}: {}",
                path.display(),
                missing.len(),
                if part.interrupted { " (it was interrupted)" } else { "; it may have crashed" },
                examples(missing.into_iter())
            ),
            None => format!(
                "shard {index}/{count}: no matrix.json given, so its {} cells are absent: {}",
                missing.len(),
                examples(missing.into_iter())
            ),
        });
    }
    lines
}

fn examples<'a>(ids: impl Iterator<Item = &'a String>) -> String {
    let ids: Vec<&String> = ids.collect();
    let shown: Vec<&str> = ids.iter().take(3).map(|s| s.as_str()).collect();
    if ids.len() > shown.len() {
        format!("{}, …", shown.join(", "))
    } else {
        shown.join(", ")
    }
}

#[derive(Clone, Copy, ValueEnum)]
pub enum Format {
    Text,
    Markdown,
    /// GitHub workflow commands: `::error` per new regression, `::warning` per flaky cell and
    /// per cell flaky on consecutive nights.
    Github,
}

#[derive(Args)]
pub struct RegressionsArgs {
    /// A matrix.json (a run's, or merged shards').
    matrix: PathBuf,
    /// Committed snapshots: a regression they already record is reported as known and does
    /// not fail the command (without this, every regression does).
    #[arg(long, value_name = "DIR")]
    snapshots: Option<PathBuf>,
    /// Earlier nights' matrix.json, to find cells flaky on consecutive nights: a file, or a
    /// directory holding them (DIR/*.json, DIR/*/matrix.json). Repeatable. With MATRIX they are
    /// ordered by their `started` time.
    #[arg(long, value_name = "FILE|DIR")]
    history: Vec<PathBuf>,
    #[arg(long, value_enum, default_value = "text")]
    format: Format,
}

pub fn regressions(args: RegressionsArgs) -> anyhow::Result<u8> {
    let report = MatrixReport::read(&args.matrix)?;
    let baseline = args.snapshots.as_deref().map(report::read_snapshots).transpose()?;
    let analysis = regressions::analyse(&report, baseline.as_ref());
    let earlier = read_history(&args.history, &args.matrix)?;
    let mut given: Vec<(&Path, &MatrixReport)> = earlier.iter().map(|(p, r)| (p.as_path(), r)).collect();
    given.push((&args.matrix, &report));
    let nights = flaky::nights(&given).map_err(BadInput)?;
    let streaks = flaky::streaks(&nights);
    match args.format {
        Format::Markdown => {
            print!("{}", markdown::render_transitions(analysis.transitions.iter()));
            print!("{}", markdown::render_streaks(&streaks));
        }
        Format::Github => {
            for t in analysis.new_regressions() {
                let message = format!(
                    "{}: {} → {}: {} (explain it: {})",
                    t.name(),
                    t.from_label,
                    t.to_label,
                    t.detail,
                    t.bisect_command()
                );
                println!("{}", flaky::workflow_command(true, "regression", &message));
            }
            for cell in flaky::cells(&report) {
                println!("{}", flaky::annotation(cell));
            }
            for streak in &streaks {
                println!("{}", streak.annotation());
            }
        }
        Format::Text => {
            for t in &analysis.transitions {
                let known = if t.known { " (known: in the snapshots)" } else { "" };
                let change = format!(
                    "{:<12} {}  {}@{} {} → {} {}{known}",
                    t.mark.as_str(),
                    t.scenario,
                    t.tool,
                    t.from_version,
                    t.from_label,
                    t.to_version,
                    t.to_label
                );
                match t.mark {
                    Mark::Regression => println!("{change}  {}\n    {}", t.bisect_command(), t.detail),
                    Mark::ClassChange => println!("{change}\n    {}", t.detail),
                    _ => println!("{change}"),
                }
            }
            for streak in &streaks {
                println!("{}", streak.sentence());
            }
        }
    }
    let new = analysis.new_regressions().count();
    let known = analysis.regressions().count() - new;
    let axes: Vec<String> = report
        .tools()
        .into_iter()
        .map(|tool| format!("{tool} {}", regressions::version_axis(&report, tool).join(" → ")))
        .collect();
    eprintln!(
        "{} regression(s){}, {} fix(es), {} class change(s) along {}",
        new + known,
        if known > 0 { format!(" ({known} known from the snapshots)") } else { String::new() },
        analysis.count(Mark::Fix),
        analysis.count(Mark::ClassChange),
        axes.join("; ")
    );
    if !args.history.is_empty() {
        let names: Vec<&str> = nights.iter().map(|n| n.name.as_str()).collect();
        eprintln!(
            "{} cell(s) flaky on consecutive nights, across {} night(s): {}",
            streaks.len(),
            nights.len(),
            names.join(", ")
        );
    }
    // Flaky cells are reported, never a regression: they do not change the exit code.
    Ok(if new > 0 { 1 } else { 0 })
}

/// The matrices `--history` names, each file once (`matrix`, given separately, is left out).
fn read_history(paths: &[PathBuf], matrix: &Path) -> anyhow::Result<Vec<(PathBuf, MatrixReport)>> {
    let mut files: Vec<PathBuf> = Vec::new();
    for path in paths {
        if path.is_dir() {
            let found = matrices_in(path)?;
            if found.is_empty() {
                eprintln!("note: {} holds no matrix.json (DIR/*.json, DIR/*/matrix.json)", path.display());
            }
            files.extend(found);
        } else if path.is_file() {
            files.push(path.clone());
        } else {
            return Err(BadInput(format!("--history {}: no such file or directory", path.display())).into());
        }
    }
    let same = |a: &Path, b: &Path| a.canonicalize().ok().is_some_and(|a| b.canonicalize().is_ok_and(|b| a == b));
    let mut unique: Vec<PathBuf> = Vec::new();
    for file in files {
        if !same(&file, matrix) && !unique.iter().any(|u| same(u, &file)) {
            unique.push(file);
        }
    }
    unique
        .into_iter()
        .map(|p| {
            let report = MatrixReport::read(&p).with_context(|| format!("reading --history {}", p.display()))?;
            Ok((p, report))
        })
        .collect()
}

/// `dir/*.json` and `dir/*/matrix.json`, sorted by path.
fn matrices_in(dir: &Path) -> anyhow::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading --history {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading --history {}", dir.display()))?.path();
        if path.is_dir() && path.join("matrix.json").is_file() {
            found.push(path.join("matrix.json"));
        } else if path.is_file() && path.extension().is_some_and(|e| e == "json") {
            found.push(path);
        }
    }
    found.sort();
    Ok(found)
}
