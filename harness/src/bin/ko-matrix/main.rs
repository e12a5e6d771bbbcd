//! The `ko-matrix` command line.

mod bisecting;
mod credential_helper;
mod handoff;
mod matrices;
mod planning;
mod progress;
mod publishing;
mod running;
mod shell;
mod signals;
mod tools;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use ko_matrix::bisect;
use ko_matrix::config::Matrix;
use ko_matrix::located::ConfigError;
use ko_matrix::run;
use ko_matrix::services::localstack::LocalStackError;
use ko_matrix::tool::FetchError;
use ko_matrix::world::WorldError;

use signals::Signals;

const EXIT_CODES: &str = "\
Exit codes:
  0    the command did its job (for `run`: every cell ran, whatever its outcome)
       `shell` exits with its shell's or command's own code
  1    `run --fail-on-fail` and a cell failed; `diff` / `check` found changed or missing
       cells; `regressions` found a regression (not recorded in --snapshots); flaky
       cells, on consecutive nights or not, are reported and never fail a command
  2    bad input: arguments, matrix.toml or a scenario file (the message says where), a
       version the Go module proxy does not have, ecr.backend = \"localstack\" without
       LOCALSTACK_AUTH_TOKEN; `bisect` ends that do not differ, or a flaky or skipped end
  3    infrastructure: a download, build, cache or service failed
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM); child processes are stopped first";

#[derive(Parser)]
#[command(
    name = "ko-matrix",
    version,
    about = "Version-regression matrix for Go push tools (ko, crane, oras): real releases, real registries, many credential setups",
    after_help = EXIT_CODES
)]
struct Cli {
    /// The matrix file [default: matrix.toml]
    #[arg(long, short, global = true, value_name = "FILE")]
    config: Option<PathBuf>,
    /// Use the matrix file's `[profiles.NAME]` versions instead of the tools' own (e.g.
    /// `history`: every release the module proxy serves)
    #[arg(long, global = true, value_name = "NAME")]
    profile: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Get tool binaries (download, build or cache) and verify each reports its version.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix fetch 0.15.1 0.15.2 0.15.3      # the first tool's, by matrix.toml's source (default: auto)\n",
        "  ko-matrix fetch crane@v0.20.2 oras@v1.2.0\n",
        "  ko-matrix fetch --source go main          # build the first tool's main from the module proxy\n",
        "  ko-matrix fetch --source release --release-base-url http://127.0.0.1:8000 0.15.2\n",
        "  ko-matrix fetch --json                    # matrix.toml's versions, as JSON\n",
        "\nBinaries are cached under $KO_MATRIX_CACHE, else $XDG_CACHE_HOME/ko-matrix."
    ))]
    Fetch(tools::FetchArgs),
    /// List a tool's releases, and what matrix.toml's `versions` resolve to.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix versions\n",
        "  ko-matrix versions --json                   # `selected`: every tool's, as tool@version\n",
        "  ko-matrix versions --json latest-3 main     # resolve these (the first tool's) instead\n",
        "  ko-matrix versions --tool crane"
    ))]
    Versions {
        /// Selectors to resolve instead of matrix.toml's `versions` (`tool@selector` or bare).
        selectors: Vec<String>,
        /// Only this tool.
        #[arg(long)]
        tool: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Run the matrix: every selected tool version against every selected scenario.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix run                                     # matrix.toml as it is\n",
        "  ko-matrix run --versions v0.15.1,v0.15.2 --scenarios 'registry/*'\n",
        "  ko-matrix run --versions ko@v0.15.2,crane@v0.20.2 --scenarios 'ecr/*'\n",
        "  ko-matrix run --tools oras --jobs 1 --out /tmp/results --fail-on-fail\n",
        "  KO_MATRIX_CONTAINMENT=proxy-only ko-matrix run    # no network namespace, proxy variables only\n",
        "\nServices and cells run in a user+network namespace with only loopback where the kernel\n",
        "allows one; matrix.json records the containment a run had."
    ))]
    Run(running::RunArgs),
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
    /// (pass → fail), fixes and changed failure classes, and (with --history) cells flaky on
    /// consecutive nights. Exit 1 on a regression.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix regressions results/latest/matrix.json\n",
        "  ko-matrix regressions --snapshots results results/merged/matrix.json   # known ones pass\n",
        "  ko-matrix regressions --format markdown results/merged/matrix.json >> \"$GITHUB_STEP_SUMMARY\"\n",
        "  ko-matrix regressions --format github --snapshots results results/merged/matrix.json\n",
        "  ko-matrix regressions --history nights/ --history old/matrix.json results/merged/matrix.json\n",
        "\nVersions are ordered by semver, then branches and commits. Each regression line ends\n",
        "with the bisect command that explains it.\n",
        "\n--history names earlier nights' matrix.json files (or directories of them: DIR/*.json,\n",
        "DIR/*/matrix.json). With MATRIX they are ordered by their `started` time (the order given\n",
        "when a time does not parse), and each cell flaky on two or more adjacent nights is reported:\n",
        "  flaky on 2 nights in a row: ko@v0.15.2::ecr/env-session (2026-11-30, 2026-12-01)\n",
        "A night where the cell was not flaky, or did not run, ends the streak. Flaky cells never\n",
        "change the exit code. --format github prints workflow commands for a CI log: ::error per\n",
        "new regression, ::warning per flaky cell of MATRIX and per cell flaky on consecutive nights."
    ))]
    Regressions(matrices::RegressionsArgs),
    /// Print the cells that changed between two matrix.json files (exit 1 when any did).
    #[command(after_help = "Examples:\n  ko-matrix diff nightly-old/matrix.json results/latest/matrix.json")]
    Diff { old: PathBuf, new: PathBuf },
    /// Find which release, commit or dependency upgrade turned a cell red.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix bisect --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode deps\n",
        "  ko-matrix bisect --tool crane --good v0.19.0 --bad v0.20.2 --scenario registry/podman-xdg-runtime --mode deps\n",
        "  ko-matrix bisect --good v0.14.1 --bad v0.16.0 --scenario ecr/env-session\n",
        "  ko-matrix bisect --good v0.14.1 --bad v0.16.0 --scenario ecr/env-session --candidates v0.15.0,v0.15.1,v0.15.2,v0.15.3\n",
        "  ko-matrix bisect --good v0.15.1 --bad v0.15.2 --scenario ecr/env-session --mode commits --repo ~/src/ko\n",
        "\nWrites bisect.json to --out. Every build is cached, so a rerun is fast. The probes' world\n",
        "and cells run in a user+network namespace as `run`'s do (KO_MATRIX_CONTAINMENT=proxy-only\n",
        "forces proxy-only); bisect.json records which as `containment`. Ends that give the same\n",
        "label, or a flaky or skipped one, are refused (exit 2); an infra-error end exits 3."
    ))]
    Bisect(bisecting::BisectArgs),
    /// Compare a matrix.json with the committed snapshots (exit 1 on a changed, pending or missing cell).
    #[command(
        after_help = "Examples:\n  ko-matrix check results/merged/matrix.json\n  ko-matrix check --snapshots results results/latest/matrix.json\n  ko-matrix check --only-snapshotted-versions results/merged/matrix.json"
    )]
    Check(matrices::CheckArgs),
    /// Record a history run's cells in results/history/<tool>/<family>.snap, beside the pinned
    /// snapshots (whose versions it leaves to them), so `check` and `regressions` know them.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix --profile history run --out results/history-run\n",
        "  ko-matrix record results/history-run/matrix.json\n",
        "  ko-matrix record --snapshots results results/merged/matrix.json\n",
        "\nCells of other runs already recorded stay (a run of one family adds to the files). A matrix\n",
        "with infra-error or flaky cells is refused (exit 1): the history records only the tools'\n",
        "own outcomes."
    ))]
    Record(matrices::RecordArgs),
    /// Open a shell in one cell, prepared exactly as a run prepares it, with its world up.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix shell ko@v0.15.2::ecr/env-session\n",
        "  ko-matrix shell v0.15.2::ecr/env-session      # matrix.toml's first tool\n",
        "  ko-matrix shell ko@v0.15.1::registry/basic-auths -- \\\n",
        "      sh -c 'ko build --bare . && cat \"$KO_MATRIX_GATEWAY_RECORD\"'\n",
        "  ko-matrix shell crane@v0.20.7::registry/tool-login -- crane catalog basic.ko-matrix.test\n",
        "\nThe shell ($SHELL, else /bin/sh) starts where the push runs, with the cell's HOME, files\n",
        "and environment (its proxy, CA and credentials), the scenario's steps before the push\n",
        "already run, and the tool first on PATH under its own name. Before it starts, ko-matrix\n",
        "prints the cell, the push command to reproduce, and the file ($KO_MATRIX_GATEWAY_RECORD)\n",
        "the gateway writes each request to as it happens. With `-- CMD…` it runs CMD instead and\n",
        "exits with its code. Leaving stops the world and every process started in the cell. The\n",
        "cell's secrets stay in its environment and files; nothing prints them."
    ))]
    Shell(shell::ShellArgs),
    /// Keep a world up and print the environment any client needs to use it, credentials included.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix serve                              # the anonymous, basic and token registries\n",
        "  ko-matrix serve --scenario ecr/env-session   # its ECR registry, with an AWS identity\n",
        "  ko-matrix serve > world.env &                # then, in any shell:\n",
        "      . ./world.env; curl \"https://$KO_MATRIX_REGISTRY_ANONYMOUS/v2/\"\n",
        "\nPrints `export NAME=value` lines on stdout: the proxy (HTTPS_PROXY and its other\n",
        "spellings), SSL_CERT_FILE and CURL_CA_BUNDLE (the run's CA), KO_MATRIX_GATEWAY_RECORD (a file\n",
        "the gateway writes each request to as it happens), each registry's host\n",
        "(KO_MATRIX_REGISTRY_<FLAVOUR>) and the credentials that work there (KO_MATRIX_USER and\n",
        "KO_MATRIX_PASSWORD; for ECR, KO_MATRIX_ECR_PASSWORD and the AWS_* keys). Printing these\n",
        "secrets is what serve is for: keep its output where you keep credentials. Runs until\n",
        "Ctrl-C or SIGTERM (exit 130 / 143), then stops every service. Scenario faults are not\n",
        "injected."
    ))]
    Serve(shell::ServeArgs),
    /// Build the static compatibility site from every night's matrix.json.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix publish nights/ --out site\n",
        "  ko-matrix publish history/ --out site --logs results/shards/shard-1/logs\n",
        "\nPages: index.html (tools, nights, every scenario with a search box), tools/<tool>.html\n",
        "(every release × scenario by family, alike releases in one column, first bad and first\n",
        "fixed release per scenario, pass rate per release), releases/<tool>/<version>.html (what\n",
        "changed against the release before, with diagnosis, deciding line, bisect command and any\n",
        "bisect.json's chain), cells/<tool>/<version>/<scenario>.html (its history over the nights),\n",
        "badges/<tool>/<version>[/<scenario>].svg. No server, no external assets."
    ))]
    Publish(publishing::PublishArgs),
    /// Split the run's cells into shards of equal predicted time, from recorded durations.
    #[command(after_help = concat!(
        "Examples:\n",
        "  ko-matrix plan --shards 4                          # matrix.toml's cells\n",
        "  ko-matrix plan --shards 4 --versions ko@v0.15.2,crane@v0.20.7 --out shards.json\n",
        "  ko-matrix run --shard 2/4 --plan shards.json        # then, on each runner\n",
        "\nLongest cell first onto the least-loaded shard. Durations are each cell's last run, kept in\n",
        "the cache as durations.json (every run and merge updates it); a cell never timed counts as\n",
        "the median of its scenario's timed cells, else of all. Prints each shard's predicted time\n",
        "and the makespan. A cell the plan does not name is placed by its name, as without a plan."
    ))]
    Plan(planning::PlanArgs),
    /// Join shards' matrix.json files into one matrix and write its reports.
    #[command(
        after_help = "Examples:\n  ko-matrix merge --out results/merged shard-1/matrix.json shard-2/matrix.json"
    )]
    Merge {
        #[arg(required = true)]
        shards: Vec<PathBuf>,
        /// Where the merged matrix.json and reports go.
        #[arg(long, default_value = "results/latest", value_name = "DIR")]
        out: PathBuf,
        /// Committed snapshots, which decide the JUnit verdicts (when the directory exists).
        #[arg(long, default_value = matrices::SNAPSHOTS_DIR, value_name = "DIR")]
        snapshots: PathBuf,
        /// The plan the shards ran (`run --plan`), to say which shard an absent cell was in.
        #[arg(long, value_name = "FILE")]
        plan: Option<PathBuf>,
    },
}

/// An error the user caused (exit 2), as opposed to the infrastructure failing (exit 3).
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct BadInput(String);

fn main() -> ExitCode {
    // Invoked through a cell's `docker-credential-ko-matrix` link: act as the helper.
    if std::env::args_os().next().is_some_and(|argv0| {
        Path::new(&argv0).file_name() == Some(std::ffi::OsStr::new(ko_matrix::cell::CREDENTIAL_HELPER))
    }) {
        return credential_helper::main();
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Runtime::new().expect("tokio runtime starts");
    let code = runtime.block_on(async {
        let signals = Signals::install();
        // `run` stops itself on a signal, so it can keep the cells that finished, and `bisect`
        // so that its contained world can stop and clean up; every other command just stops.
        let graceful = matches!(cli.command, Command::Run(_) | Command::Bisect(_));
        let result = if graceful {
            dispatch(cli, signals).await
        } else {
            tokio::select! {
                result = dispatch(cli, signals.clone()) => result,
                code = signals.received() => Ok(code),
            }
        };
        result.unwrap_or_else(|error| {
            eprintln!("error: {}", with_causes(&error));
            exit_code(&error)
        })
    });
    // Dropping the runtime drops every task, and with them the handles that kill children.
    drop(runtime);
    ExitCode::from(code)
}

/// The message and its causes, each once: most messages already embed their cause, which
/// `{:#}` would print again.
fn with_causes(error: &anyhow::Error) -> String {
    let mut text = error.to_string();
    for cause in error.chain().skip(1).map(ToString::to_string) {
        if !text.contains(&cause) {
            text = format!("{text}: {cause}");
        }
    }
    text
}

/// The one place errors become exit codes: 2 for what the user can fix in their input, else 3.
fn exit_code(error: &anyhow::Error) -> u8 {
    let bad_input = error.chain().any(|e| {
        let report_parse = matches!(e.downcast_ref::<ko_matrix::report::ReportError>(), Some(ko_matrix::report::ReportError::Parse { .. }));
        report_parse
            || matches!(e.downcast_ref::<bisect::BisectError>(), Some(bisect::BisectError::NoDifference { .. } | bisect::BisectError::NotInDependencies { .. }))
            // A flaky end is a wrong premise; an end that is infra-error, the harness's fault.
            || e.downcast_ref::<bisect::BisectError>().is_some_and(|b| matches!(b, bisect::BisectError::UnreliableEnd { .. }) && !b.is_infrastructure())
            || matches!(e.downcast_ref::<ko_matrix::schedule::PlanError>(), Some(ko_matrix::schedule::PlanError::Parse { .. }))
            || e.is::<ConfigError>()
            || e.is::<BadInput>()
            || matches!(e.downcast_ref::<ko_matrix::builtin::InitError>(), Some(ko_matrix::builtin::InitError::Exists { .. }))
            || e.downcast_ref::<FetchError>().is_some_and(FetchError::is_bad_input)
            || e.downcast_ref::<run::RunError>().is_some_and(run::RunError::is_bad_input)
            // A cell this scenario cannot make with this tool (`shell`).
            || matches!(e.downcast_ref::<ko_matrix::cell::CellSetupError>(), Some(ko_matrix::cell::CellSetupError::CannotRun(_)))
            // The LocalStack settings are the user's to fix; a missing Docker engine or a
            // container that does not start is this machine's.
            || matches!(
                e.downcast_ref::<WorldError>(),
                Some(WorldError::LocalStack(LocalStackError::BadEndpoint(_) | LocalStackError::NotLoopback(_) | LocalStackError::Unpinned(_) | LocalStackError::NoToken))
            )
            // Docker asked of a build without the `docker` feature.
            || matches!(e.downcast_ref::<WorldError>(), Some(WorldError::Service(ko_matrix::services::runtime::ServiceError::DockerNotBuilt)))
    });
    if bad_input {
        2
    } else {
        3
    }
}

const DEFAULT_CONFIG: &str = "matrix.toml";

/// `--profile`: which `[profiles.*]` versions every command that loads the matrix uses.
static PROFILE: std::sync::OnceLock<String> = std::sync::OnceLock::new();

async fn dispatch(cli: Cli, signals: Signals) -> anyhow::Result<u8> {
    let config = cli.config.as_deref();
    if let Some(profile) = cli.profile {
        PROFILE.set(profile).expect("the profile is set once, before any command runs");
    }
    // Every command knows the tools defined beside the matrix file (reports and snapshots
    // name them too), whether or not it reads the matrix.
    let beside = config.unwrap_or(Path::new(DEFAULT_CONFIG)).parent().unwrap_or(Path::new("."));
    ko_matrix::tool::load_dir(&beside.join("tools"))?;
    match cli.command {
        Command::Init { dir } => init(&dir),
        Command::Fetch(args) => tools::fetch(config, args).await,
        Command::Versions { selectors, tool, json } => {
            tools::list_versions(config, tool.as_deref(), &selectors, json).await
        }
        Command::Run(args) => running::run(config, args, signals).await,
        Command::Report { dir, snapshots } => matrices::report_command(&dir, &snapshots),
        Command::Diff { old, new } => matrices::diff(&old, &new),
        Command::Regressions(args) => matrices::regressions(args),
        Command::Bisect(args) => bisecting::bisect(config, args, signals).await,
        Command::Check(args) => matrices::check(args),
        Command::Record(args) => matrices::record(args),
        Command::Merge { shards, out, snapshots, plan } => matrices::merge(&shards, &out, &snapshots, plan.as_deref()),
        Command::Plan(args) => planning::plan(config, args).await,
        Command::Publish(args) => publishing::publish(args),
        Command::Shell(args) => shell::shell(config, args).await,
        Command::Serve(args) => shell::serve(config, args).await,
    }
}

fn init(dir: &Path) -> anyhow::Result<u8> {
    let written = ko_matrix::builtin::init(dir)?;
    let scenarios =
        written.iter().filter(|p| p.extension().is_some_and(|e| e == "toml") && p.starts_with("scenarios")).count();
    println!(
        "wrote {} and {scenarios} scenarios under {} (with the app they build)",
        dir.join(DEFAULT_CONFIG).display(),
        dir.join("scenarios").display()
    );
    println!(
        "next: {}ko-matrix run",
        if dir == Path::new(".") { String::new() } else { format!("cd {} && ", dir.display()) }
    );
    Ok(0)
}

/// Refuses an `--out` that cannot be a directory (it or a parent is a file) before anything
/// starts, rather than after the services are up.
fn check_out_dir(out: &Path) -> Result<(), BadInput> {
    let Some(existing) = out.ancestors().find(|p| !p.as_os_str().is_empty() && p.exists()) else { return Ok(()) };
    if existing.is_dir() {
        return Ok(());
    }
    Err(BadInput(format!(
        "--out {}: {} is a file, not a directory; give a directory (created when missing)",
        out.display(),
        existing.display()
    )))
}

/// The matrix file: `--config` (which must exist), else ./matrix.toml, which may be absent
/// when the command can do without it (`optional`).
fn load_matrix(config: Option<&Path>, optional: bool) -> anyhow::Result<Option<Matrix>> {
    let path = config.unwrap_or(Path::new(DEFAULT_CONFIG));
    if config.is_none() && !path.exists() {
        if optional {
            return Ok(None);
        }
        return Err(BadInput(format!(
            "no {DEFAULT_CONFIG} here; `ko-matrix init` writes one with the built-in scenarios, or pass --config FILE"
        ))
        .into());
    }
    let matrix = Matrix::load(path)?;
    Ok(Some(match PROFILE.get() {
        Some(profile) => matrix.with_profile(profile)?,
        None => matrix,
    }))
}
