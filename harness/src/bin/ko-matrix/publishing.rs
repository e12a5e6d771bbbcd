//! `ko-matrix publish HISTORY_DIR --out SITE`: the static compatibility site from every
//! night's matrix.json.

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::Args;
use ko_matrix::report::publish::{self, Bisection, History};
use ko_matrix::report::MatrixReport;

use crate::BadInput;

#[derive(Args)]
pub struct PublishArgs {
    /// Nights' results: DIR/*.json and DIR/*/matrix.json (merged or shards), and bisect.json
    /// files beside them (DIR/*bisect.json, DIR/*/bisect.json).
    history: PathBuf,
    /// Where the site goes: a new or empty directory, or an earlier site (replaced).
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// More directories to find the newest runs' logs in, by file name (each matrix's own
    /// `logs/` beside it is searched too).
    #[arg(long, value_name = "DIR")]
    logs: Vec<PathBuf>,
}

pub fn publish(args: PublishArgs) -> anyhow::Result<u8> {
    if !args.history.is_dir() {
        return Err(BadInput(format!("{}: not a directory of matrix.json files", args.history.display())).into());
    }
    let (matrices, bisect_files) = history_files(&args.history)?;
    if matrices.is_empty() {
        return Err(BadInput(format!(
            "{} holds no matrix.json (DIR/*.json, DIR/*/matrix.json)",
            args.history.display()
        ))
        .into());
    }
    let mut files = Vec::new();
    for path in &matrices {
        files.push((path.clone(), MatrixReport::read(path)?));
    }
    let bisections = bisect_files
        .iter()
        .map(|p| Bisection::read(p).map_err(|e| BadInput(e.to_string())))
        .collect::<Result<Vec<_>, _>>()?;
    let history = History::new(files, bisections).map_err(|e| BadInput(e.to_string()))?;
    let mut log_dirs = args.logs.clone();
    log_dirs.extend(matrices.iter().filter_map(|p| p.parent()).map(|d| d.join("logs")));
    let site =
        publish::site(&history, |cell| publish::find_log(&cell.log, &log_dirs).and_then(|p| std::fs::read(p).ok()));
    prepare_out(&args.out)?;
    let mut bytes = 0;
    for file in &site {
        let path = args.out.join(&file.path);
        std::fs::create_dir_all(path.parent().expect("a file under the site"))
            .with_context(|| format!("creating {}", path.display()))?;
        std::fs::write(&path, &file.content).with_context(|| format!("writing {}", path.display()))?;
        bytes += file.content.len();
    }
    let count =
        |prefix: &str, ext: &str| site.iter().filter(|f| f.path.starts_with(prefix) && f.path.ends_with(ext)).count();
    eprintln!(
        "published {} night(s) from {} file(s): {} tool, {} release, {} cell page(s), {} badge(s), {} log(s); {} files, {} KiB: {}",
        history.nights.len(),
        matrices.len(),
        count("tools/", ".html"),
        count("releases/", ".html"),
        count("cells/", ".html"),
        count("badges/", ".svg"),
        count("logs/", ".log"),
        site.len(),
        bytes / 1024,
        args.out.join("index.html").display()
    );
    Ok(0)
}

/// The matrix.json and bisect.json files under `dir`, each sorted by path.
fn history_files(dir: &Path) -> anyhow::Result<(Vec<PathBuf>, Vec<PathBuf>)> {
    let is_bisect = |p: &Path| p.file_name().is_some_and(|n| n.to_string_lossy().ends_with("bisect.json"));
    let (mut matrices, mut bisections) = (Vec::new(), Vec::new());
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry.with_context(|| format!("reading {}", dir.display()))?.path();
        let found: Vec<PathBuf> = if path.is_dir() {
            [path.join("matrix.json"), path.join("bisect.json")].into_iter().filter(|p| p.is_file()).collect()
        } else if path.extension().is_some_and(|e| e == "json") {
            vec![path]
        } else {
            Vec::new()
        };
        for path in found {
            if is_bisect(&path) {
                bisections.push(path);
            } else {
                matrices.push(path);
            }
        }
    }
    matrices.sort();
    bisections.sort();
    Ok((matrices, bisections))
}

/// An empty `out`, refusing to clear a directory that is not an earlier site.
fn prepare_out(out: &Path) -> anyhow::Result<()> {
    if out.is_dir() && std::fs::read_dir(out)?.next().is_some() {
        if !out.join("index.html").is_file() || !out.join("site.css").is_file() {
            return Err(BadInput(format!(
                "--out {}: not empty and not an earlier site (no index.html and site.css); give a new or empty directory",
                out.display()
            ))
            .into());
        }
        std::fs::remove_dir_all(out).with_context(|| format!("clearing the earlier site in {}", out.display()))?;
    }
    crate::check_out_dir(out)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))
}
