//! The `ko-matrix` command line.

mod credential_helper;
mod matrices;
mod progress;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::{Args, Parser, Subcommand};
use ko_matrix::cache::Cache;
use ko_matrix::config::{ConfigError, Matrix, ScenarioPattern, ServicesConfig};
use ko_matrix::outcome::Outcome;
use ko_matrix::report::render_table;
use ko_matrix::bisect;
use ko_matrix::run::{self, RunnerOptions};
use ko_matrix::services::runtime::RuntimeChoice;
use ko_matrix::ko::versions::{self, ReleaseIndex, Resolution, Selector};
use ko_matrix::ko::{FetchError, KoBinary, KoFetcher, KoSettings, Source};
use ko_matrix::provision::{Go, ToolchainPolicy};

const EXIT_CODES: &str = "\
Exit codes:
  0    the command did its job (for `run`: every cell ran, whatever its outcome)
  1    `run --fail-on-fail` and a cell failed; `diff` / `check` found changed or missing
       cells; `regressions` found a regression (not recorded in --snapshots)
  2    bad input: arguments, matrix.toml or a scenario file (the message says where)
  3    infrastructure: a download, build, cache or service failed
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); child processes are stopped first";

#[derive(Parser)]
#[command(
    name = "ko-matrix",
    version,
    about = "Version-regression matrix for ko: real ko releases, real registries, many credential setups",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The matrix file [default: matrix.toml]
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get ko binaries (download, build or cache) and verify each reports its version.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix fetch 0.15.1 0.15.2 0.15.3      # by matrix.toml's source (default: auto)\n",
        "  ko-matrix fetch --source go main          # build ko@main from the module proxy\n",
        "  ko-matrix fetch --source release --release-base-url http://127.0.0.1:8000 0.15.2\n",
        "  ko-matrix fetch --json                    # matrix.toml's versions, as JSON\n",
        "\nBinaries are cached under $KO_MATRIX_CACHE, else $XDG_CACHE_HOME/ko-matrix."
    ))]
    Fetch(FetchArgs),
    /// List ko releases, and what matrix.toml's `versions` resolve to.
    #[command(after_help = "Examples:\n  ko-matrix versions\n  ko-matrix versions --json\n  ko-matrix versions --json latest-3 main    # resolve these instead of matrix.toml's")]
    Versions {
        /// Selectors to resolve instead of matrix.toml's `versions`.
        selectors: Vec<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the matrix: every selected ko version against every selected scenario.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix run                                     # matrix.toml as it is\n",
        "  ko-matrix run --versions v0.15.1,v0.15.2 --scenarios 'registry/*'\n",
        "  ko-matrix run --jobs 1 --out /tmp/results --fail-on-fail"
    ))]
    Run(RunArgs),
    /// Write matrix.toml and the built-in scenarios (with the app they build) into DIR.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix init                 # here\n",
        "  ko-matrix init ci/ko-matrix    # then: cd ci/ko-matrix && ko-matrix run\n",
        "\nAdd your own scenarios under scenarios/<family>/ next to the built-in ones\n",
        "(scenarios/README.md lists every key). Existing files are never overwritten."
    ))]
    Init {
        #[arg(default_value = ".")]
        dir: PathBuf,
    },
    /// Re-render matrix.md, report.html and junit.xml from DIR/matrix.json.
    #[command(after_help = "Examples:\n  ko-matrix report results/latest")]
    Report {
        /// A directory holding matrix.json.
        dir: PathBuf,
        /// Committed snapshots, which decide the JUnit verdicts (when the directory exists).
        #[arg(long, default_value = matrices::SNAPSHOTS_DIR, value_name = "DIR")]
        snapshots: PathBuf,
    },
    /// Name what changed between each version and the one before it: regressions
    /// (pass → fail), fixes and changed failure classes. Exit 1 on a regression.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix regressions results/latest/matrix.json\n",
        "  ko-matrix regressions --snapshots results results/merged/matrix.json   # known ones pass\n",
        "  ko-matrix regressions --format markdown results/merged/matrix.json >> \"$GITHUB_STEP_SUMMARY\"\n",
        "\nVersions are ordered by semver, then branches and commits. Each regression line ends\n",
        "with the bisect command that explains it."
    ))]
    Regressions(matrices::RegressionsArgs),
    /// Print the cells that changed between two matrix.json files (exit 1 when any did).
    #[command(after_help = "Examples:\n  ko-matrix diff nightly-old/matrix.json results/latest/matrix.json")]
    Diff { old: PathBuf, new: PathBuf },
    /// Find which release, commit or dependency upgrade turned a cell red.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix bisect --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps\n",
        "  ko-matrix bisect --good v0.14.1 --bad v0.16.0 --scenario ecr/env-session\n",
        "  ko-matrix bisect --good v0.14.1 --bad v0.16.0 --scenario ecr/env-session --candidates v0.15.0,v0.15.1,v0.15.2,v0.15.3\n",
        "  ko-matrix bisect --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode commits --repo ~/src/ko\n",
        "\nWrites bisect.json to --out. Every build is cached, so a rerun is fast."
    ))]
    Bisect(BisectArgs),
    /// Compare a matrix.json with the committed snapshots (exit 1 on a changed, pending or missing cell).
    #[command(after_help = "Examples:\n  ko-matrix check results/merged/matrix.json\n  ko-matrix check --snapshots results results/latest/matrix.json\n  ko-matrix check --only-snapshotted-versions results/merged/matrix.json")]
    Check(matrices::CheckArgs),
    /// Join shards' matrix.json files into one matrix and write its reports.
    #[command(after_help = "Examples:\n  ko-matrix merge --out results/merged shard-1/matrix.json shard-2/matrix.json")]
    Merge {
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Where the merged matrix.json and reports go.
        #[arg(long, default_value = "results/latest", value_name = "DIR")]
        out: PathBuf,
        /// Committed snapshots, which decide the JUnit verdicts (when the directory exists).
        #[arg(long, default_value = matrices::SNAPSHOTS_DIR, value_name = "DIR")]
        snapshots: PathBuf,
    },
}

#[derive(Args)]
struct RunArgs {
    /// Versions to run instead of matrix.toml's (comma-separated selectors).
    #[arg(long, value_delimiter = ',')]
    versions: Vec<String>,
    /// Scenario names or globs instead of matrix.toml's (comma-separated).
    #[arg(long, value_delimiter = ',')]
    scenarios: Vec<String>,
    /// Cells at once [default: matrix.toml's, else the number of cores].
    #[arg(long)]
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
    /// How services run: auto, process or docker (overrides matrix.toml).
    #[arg(long, value_parser = parse_runtime)]
    runtime: Option<RuntimeChoice>,
    #[command(flatten)]
    source: SourceArgs,
}

fn parse_runtime(text: &str) -> Result<RuntimeChoice, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| format!("expected one of: {}", RuntimeChoice::CHOICES))
}

#[derive(Args)]
struct BisectArgs {
    #[arg(long)]
    good: String,
    #[arg(long)]
    bad: String,
    /// The scenario whose cell differs between good and bad.
    #[arg(long)]
    scenario: String,
    /// releases, commits or deps.
    #[arg(long, default_value = "releases", value_parser = parse_mode)]
    mode: bisect::Mode,
    /// Releases mode: the versions to search (default: the release list).
    #[arg(long, value_delimiter = ',')]
    candidates: Option<Vec<String>>,
    /// Commits mode: a local clone of ko to list commits from.
    #[arg(long, value_name = "PATH")]
    repo: Option<PathBuf>,
    #[arg(long, default_value = "results/latest", value_name = "DIR")]
    out: PathBuf,
}

fn parse_mode(text: &str) -> Result<bisect::Mode, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| "expected one of: releases, commits, deps".into())
}

#[derive(Args)]
struct FetchArgs {
    /// Versions or selectors (v0.15.2, 0.15.2, latest, main, a commit); default: matrix.toml's.
    versions: Vec<String>,
    /// Print the result as JSON on stdout.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Args)]
struct SourceArgs {
    /// Route: auto, release, go or path (overrides matrix.toml).
    #[arg(long, value_parser = parse_source)]
    source: Option<Source>,
    /// Where release assets live (a mirror or local file server).
    #[arg(long, value_name = "URL")]
    release_base_url: Option<String>,
    /// Go toolchain for builds: auto, local or e.g. go1.21.13.
    #[arg(long, value_name = "TOOLCHAIN", value_parser = parse_toolchain)]
    go_toolchain: Option<ToolchainPolicy>,
    /// The ko binary for --source path.
    #[arg(long, value_name = "FILE")]
    path: Option<PathBuf>,
}

fn parse_source(text: &str) -> Result<Source, String> {
    serde_json::from_value(serde_json::Value::String(text.into())).map_err(|_| format!("expected one of: {}", Source::CHOICES))
}

fn parse_toolchain(text: &str) -> Result<ToolchainPolicy, String> {
    ToolchainPolicy::parse(text).ok_or_else(|| "expected auto, local or a Go release such as go1.21.13".into())
}

/// An error the user caused (exit 2), as opposed to the infrastructure failing (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

/// Ctrl-C or SIGTERM, as the exit code it calls for (130 / 143). Cloned freely; every clone
/// sees the one signal.
#[derive(Clone)]
struct Signals(tokio::sync::watch::Receiver<Option<u8>>);

impl Signals {
    fn install() -> Signals {
        let (tx, rx) = tokio::sync::watch::channel(None);
        let mut sigterm = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler installs");
        tokio::spawn(async move {
            let code = tokio::select! {
                _ = tokio::signal::ctrl_c() => { eprintln!("interrupted; stopping child processes"); 130 }
                _ = sigterm.recv() => { eprintln!("terminated; stopping child processes"); 143 }
            };
            let _ = tx.send(Some(code));
        });
        Signals(rx)
    }

    /// Waits for the signal.
    async fn received(&self) -> u8 {
        let mut rx = self.0.clone();
        let code = *rx.wait_for(Option::is_some).await.expect("the signal task outlives the command");
        code.expect("waited for Some")
    }

    fn code(&self) -> Option<u8> {
        *self.0.borrow()
    }
}

fn main() -> ExitCode {
    // Invoked through a cell's `docker-credential-ko-matrix` link: act as the helper.
    if std::env::args_os().next().is_some_and(|argv0| Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new(ko_matrix::cell::CREDENTIAL_HELPER))) {
        return credential_helper::main();
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let code = runtime.block_on(async {
        let signals = Signals::install();
        // `run` stops itself on a signal, so it can keep the cells that finished; every
        // other command just stops.
        let graceful = matches!(cli.command, Command::Run(_));
        let result = if graceful {
            dispatch(cli, signals).await
        } else {
            tokio::select! {
                result = dispatch(cli, signals.clone()) => result,
                code = signals.received() => Ok(code),
            }
        };
        result.unwrap_or_else(|error| report(&error))
    });
    // Dropping the runtime drops every task, and with them the handles that kill children.
    drop(runtime);
    ExitCode::from(code)
}

fn report(error: &anyhow::Error) -> u8 {
    eprintln!("error: {error:#}");
    let bad_input = error.chain().any(|e| {
        let report_parse = matches!(e.downcast_ref::<ko_matrix::report::ReportError>(), Some(ko_matrix::report::ReportError::Parse { .. }));
        report_parse
            || matches!(e.downcast_ref::<bisect::BisectError>(), Some(bisect::BisectError::NoDifference { .. } | bisect::BisectError::NotInDependencies { .. }))
            || e.is::<ConfigError>()
            || e.is::<BadInput>()
            || matches!(e.downcast_ref::<ko_matrix::builtin::InitError>(), Some(ko_matrix::builtin::InitError::Exists { .. }))
            || e.downcast_ref::<FetchError>().is_some_and(FetchError::is_bad_input)
            || e.downcast_ref::<run::RunError>().is_some_and(run::RunError::is_bad_input)
    });
    if bad_input {
        2
    } else {
        3
    }
}

const DEFAULT_CONFIG: &str = "matrix.toml";

async fn dispatch(cli: Cli, signals: Signals) -> anyhow::Result<u8> {
    let config = cli.config.as_deref();
    match cli.command {
        Command::Init { dir } => init(&dir),
        Command::Fetch(args) => fetch(config, args).await,
        Command::Versions { selectors, json } => list_versions(config, &selectors, json).await,
        Command::Run(args) => run(config, args, signals).await,
        Command::Report { dir, snapshots } => matrices::report_command(&dir, &snapshots),
        Command::Diff { old, new } => matrices::diff(&old, &new),
        Command::Regressions(args) => matrices::regressions(args),
        Command::Bisect(args) => bisect_command(config, args).await,
        Command::Check(args) => matrices::check(args),
        Command::Merge { shards, out, snapshots } => matrices::merge(&shards, &out, &snapshots),
    }
}

fn init(dir: &Path) -> anyhow::Result<u8> {
    let written = ko_matrix::builtin::init(dir)?;
    let scenarios = written.iter().filter(|p| p.extension().is_some_and(|e| e == "toml") && p.starts_with("scenarios")).count();
    println!("wrote {} and {scenarios} scenarios under {} (with the app they build)", dir.join(DEFAULT_CONFIG).display(), dir.join("scenarios").display());
    println!("next: {}ko-matrix run", if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) });
    Ok(0)
}

/// The matrix file: `--config` (which must exist), else ./matrix.toml, which may be absent
/// when the command can do without it (`optional`).
fn load_matrix(config: Option<&Path>, optional: bool) -> anyhow::Result<Option<Matrix>> {
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    if config.is_none() && !path.exists() {
        if optional {
            return Ok(None);
        }
        return Err(BadInput(format!("no {DEFAULT_CONFIG} here; `ko-matrix init` writes one with the built-in scenarios, or pass --config FILE")).into());
    }
    Ok(Some(Matrix::load(path)?))
}

fn settings(matrix: Option<&Matrix>, args: &SourceArgs) -> KoSettings {
    let mut ko = matrix.map(|m| m.ko.clone()).unwrap_or_default();
    if let Some(source) = args.source {
        ko.source = source;
    }
    if let Some(url) = &args.release_base_url {
        ko.release_base_url = url.clone();
    }
    if let Some(toolchain) = &args.go_toolchain {
        ko.go_toolchain = toolchain.clone();
    }
    if let Some(path) = &args.path {
        ko.path = Some(path.clone());
    }
    ko
}

fn selectors(matrix: Option<&Matrix>, cli_versions: &[String]) -> anyhow::Result<Vec<(String, Selector)>> {
    if cli_versions.is_empty() {
        return Ok(matrix.map(|m| m.versions.clone()).unwrap_or_default());
    }
    cli_versions
        .iter()
        .map(|text| Selector::parse(text).map(|s| (text.clone(), s)).map_err(|m| BadInput(m).into()))
        .collect()
}

async fn resolve(selectors: &[(String, Selector)]) -> anyhow::Result<Resolution> {
    let resolution = versions::resolve_listing(selectors).await.context("resolving ko versions")?;
    for ((selector, picked), (_, parsed)) in resolution.steps.iter().zip(selectors) {
        if !matches!(parsed, Selector::Exact(_)) {
            eprintln!("versions: {selector} → {}", picked.join(", "));
        }
    }
    if let Some(source) = resolution.index_source {
        eprintln!("versions: release list from {source}");
    }
    Ok(resolution)
}

async fn fetch_all(settings: KoSettings, versions: &[String]) -> anyhow::Result<Vec<KoBinary>> {
    let cache = Cache::from_env()?;
    let fetcher = KoFetcher::new(cache, settings, Arc::new(progress::Progress::for_stderr()));
    let mut binaries = Vec::new();
    for version in versions {
        binaries.push(fetcher.fetch(version).await?);
    }
    Ok(binaries)
}

async fn fetch(config: Option<&Path>, args: FetchArgs) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, !args.versions.is_empty())?;
    let selectors = selectors(matrix.as_ref(), &args.versions)?;
    let resolution = resolve(&selectors).await?;
    let binaries = fetch_all(settings(matrix.as_ref(), &args.source), &resolution.versions).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&binaries)?);
    } else {
        for ko in &binaries {
            let origin = if ko.from_cache { "cache" } else { "new" };
            println!("{}\t{}\t{}\tsha256:{}\t{}", ko.version, ko.route, origin, ko.sha256, ko.path.display());
        }
    }
    Ok(0)
}

async fn list_versions(config: Option<&Path>, cli_selectors: &[String], json: bool) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, true)?;
    let go = Go::find("the ko release list").await.ok();
    let index = ReleaseIndex::fetch(go.as_ref()).await?;
    let wanted = selectors(matrix.as_ref(), cli_selectors)?;
    let resolution = (matrix.is_some() || !cli_selectors.is_empty()).then(|| versions::resolve(&wanted, Some(&index))).transpose()?;
    let releases: Vec<String> = index.versions.iter().map(|v| format!("v{v}")).collect();
    if json {
        let value = serde_json::json!({
            "source": index.source.to_string(),
            "releases": releases,
            "selected": resolution.as_ref().map(|r| &r.versions),
        });
        println!("{}", serde_json::to_string_pretty(&value)?);
        return Ok(0);
    }
    println!("ko releases ({}):", index.source);
    for release in &releases {
        println!("  {release}");
    }
    if index.source == versions::IndexSource::GoProxy {
        println!("(a Go module proxy may list only the versions it has served; exact versions work whether listed or not)");
    }
    if let Some(resolution) = resolution {
        let by = if cli_selectors.is_empty() { matrix.as_ref().map_or(Path::new(DEFAULT_CONFIG), |m| m.file.as_path()).display().to_string() } else { "the selectors given".into() };
        println!("{by} select(s):");
        for (selector, picked) in &resolution.steps {
            println!("  {selector} → {}", picked.join(", "));
        }
    }
    Ok(0)
}

async fn run(config: Option<&Path>, args: RunArgs, signals: Signals) -> anyhow::Result<u8> {
    let mut matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    if !args.scenarios.is_empty() {
        matrix.scenarios = Some(args.scenarios.iter().map(|p| ScenarioPattern::from_cli(p)).collect::<Result<_, _>>().map_err(BadInput)?);
    }
    let baseline = run::committed_snapshots(&matrix)?;
    let observer = Arc::new(progress::Progress::for_stderr());
    let fetcher = KoFetcher::new(Cache::from_env()?, settings(Some(&matrix), &args.source), observer.clone());
    // Until cells run there is nothing to keep: a signal just stops.
    let prepared = async {
        let selectors = selectors(Some(&matrix), &args.versions)?;
        let resolution = resolve(&selectors).await?;
        let selection = run::select(&matrix, &resolution.versions, &fetcher).await?;
        eprintln!("versions: {}", resolution.versions.join(", "));
        eprintln!("scenarios: {}", selection.scenarios.iter().map(|s| s.name.as_str()).collect::<Vec<_>>().join(", "));
        anyhow::Ok(selection)
    };
    let selection = tokio::select! {
        selection = prepared => selection?,
        code = signals.received() => return Ok(code),
    };
    let options = RunnerOptions {
        scenarios: selection.scenarios.clone(),
        services: ServicesConfig { runtime: args.runtime.unwrap_or(matrix.services.runtime), ..matrix.services.clone() },
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: baseline.clone(),
    };
    let stop = {
        let signals = signals.clone();
        async move {
            signals.received().await;
        }
    };
    let report = run::run(&selection, args.shard, &options, args.jobs.unwrap_or(matrix.jobs), fetcher.go(), observer, stop).await?;
    let json = report.write_all(&args.out, baseline.as_ref())?;
    println!("{}", render_table(&report));
    eprintln!("{}; {} (and matrix.md, report.html, junit.xml)", report.summary(), json.display());
    if let Some(code) = signals.code() {
        return Ok(code);
    }
    if report.count(Outcome::InfraError) > 0 {
        return Ok(3);
    }
    Ok(if args.fail_on_fail && report.count(Outcome::Fail) > 0 { 1 } else { 0 })
}

async fn bisect_command(config: Option<&Path>, args: BisectArgs) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    let known = ko_matrix::scenario::discover(&run::scenarios_dir(&matrix))?;
    let names: Vec<String> = known.iter().map(|s| s.name.clone()).collect();
    let scenario = known
        .into_iter()
        .find(|s| s.name == args.scenario)
        .ok_or_else(|| BadInput(format!("no scenario `{}`; known scenarios: {}", args.scenario, names.join(", "))))?;
    let progress = Arc::new(progress::Progress::for_stderr());
    let mut settings = matrix.ko.clone();
    if args.mode == bisect::Mode::Commits {
        settings.source = Source::Go;
    }
    let fetcher = KoFetcher::new(Cache::from_env()?, settings, progress.clone());
    let options = RunnerOptions {
        scenarios: vec![scenario.clone()],
        services: matrix.services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: args.out.clone(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe()?,
        baseline: None,
    };
    let runner = run::Runner::start(&options, fetcher.go()).await?;
    let mut bisector = bisect::Bisect::new(&runner, &fetcher, &scenario, progress.as_ref());
    let (good, bad) = (ko_matrix::ko::normalize(&args.good), ko_matrix::ko::normalize(&args.bad));
    let report = match args.mode {
        bisect::Mode::Releases => {
            let candidates = bisect::releases_between(&good, &bad, args.candidates).await?;
            eprintln!("bisect: {} release(s) between {good} and {bad}: {}", candidates.len(), candidates.join(", "));
            bisector.ordered(bisect::Mode::Releases, &good, &bad, candidates).await?
        }
        bisect::Mode::Commits => {
            let repo = args.repo.ok_or_else(|| BadInput("--mode commits needs --repo PATH, a local clone of ko with both ends' tags".into()))?;
            let commits = bisect::commits_between(&repo, &good, &bad)?;
            eprintln!("bisect: {} commit(s) between {good} and {bad}", commits.len());
            bisector.ordered(bisect::Mode::Commits, &good, &bad, commits).await?
        }
        bisect::Mode::Deps => bisector.dependencies(&good, &bad).await?,
    };
    std::fs::create_dir_all(&args.out)?;
    let path = args.out.join("bisect.json");
    std::fs::write(&path, serde_json::to_vec_pretty(&report)?)?;
    println!("bisect ({:?}) of {} between {} ({}) and {} ({}):", report.mode, report.scenario, report.good, report.good_outcome, report.bad, report.bad_outcome);
    for probe in &report.probes {
        println!("  {:>2}. {:<5} {:<24} {:>6.1}s  {}", probe.k, format!("{:?}", probe.verdict).to_lowercase(), probe.outcome, probe.duration_ms as f64 / 1000.0, probe.what);
    }
    println!("culprit: {}", report.culprit);
    for (module, good_versions, bad_versions) in &report.separating_modules {
        let shown = |versions: &[String]| if versions.is_empty() { "(absent)".to_string() } else { versions.join(",") };
        println!("  separates the builds: {module}: passing {} / failing {}", shown(good_versions), shown(bad_versions));
    }
    println!("{} probes, {} builds run, {:.1}s; {}", report.probes.len(), report.builds, report.wall_ms as f64 / 1000.0, path.display());
    Ok(0)
}
