//! `ko-matrix shell CELL` and `ko-matrix serve`: a cell, or just the world, kept up for a
//! person to work in.

use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::sync::Arc;

use anyhow::Context;
use clap::Args;
use ko_matrix::cache::Cache;
use ko_matrix::config::Matrix;
use ko_matrix::process::{Foreground, Reaper};
use ko_matrix::run::{self, RunnerOptions};
use ko_matrix::scenario::{Flavour, Scenario};
use ko_matrix::tool::{self, ToolFetcher};
use ko_matrix::world::World;

use crate::tools::{self, SourceArgs};
use crate::{load_matrix, progress, BadInput};

/// The variable naming the file the gateway record is written to, live.
const GATEWAY_RECORD_ENV: &str = "KO_MATRIX_GATEWAY_RECORD";

/// The variable naming the repository the cell's push goes to (`localhost:38211/cells/…`).
const REPOSITORY_ENV: &str = "KO_MATRIX_REPOSITORY";

/// The proxy variables, in both spellings tools read.
const PROXY_VARS: [&str; 4] = ["HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"];

#[derive(Args)]
pub struct ShellArgs {
    /// The cell: `tool@version::scenario`, or `version::scenario` for matrix.toml's first tool.
    #[arg(value_name = "CELL")]
    cell: String,
    /// A command to run in the cell instead of $SHELL; ko-matrix exits with its code.
    #[arg(last = true, value_name = "CMD")]
    command: Vec<String>,
    #[command(flatten)]
    source: SourceArgs,
}

#[derive(Args)]
pub struct ServeArgs {
    /// The scenario whose world to start: its registry and, for an ECR scenario, an AWS
    /// identity of its kind [default: the anonymous, basic and token registries].
    #[arg(long, value_name = "NAME")]
    scenario: Option<String>,
}

/// The scenario called `name` under matrix.toml's scenarios/, or bad input listing them all.
fn scenario_named(matrix: &Matrix, name: &str) -> anyhow::Result<Scenario> {
    let known = ko_matrix::scenario::discover(&run::scenarios_dir(matrix))?;
    let names: Vec<&str> = known.iter().map(|s| s.name.as_str()).collect();
    if let Some(found) = known.iter().find(|s| s.name == name) {
        return Ok(found.clone());
    }
    Err(BadInput(format!("no scenario `{name}`; known scenarios: {}", names.join(", "))).into())
}

pub async fn shell(config: Option<&Path>, args: ShellArgs) -> anyhow::Result<u8> {
    // First, so that it drops last: whatever the shell leaves running dies with the world.
    let _reaper = Reaper::adopt().context("becoming the reaper of the shell's processes")?;
    let matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    let first_tool = matrix.tools.first().map_or_else(|| tool::shorthand().name(), |t| t.tool.name());
    let Some((version, scenario)) = args.cell.split_once("::") else {
        return Err(BadInput(format!(
            "`{}` is not a cell; name one as tool@version::scenario (ko@v0.15.2::ecr/env-session), or version::scenario for {first_tool}",
            args.cell
        ))
        .into());
    };
    let scenario = scenario_named(&matrix, scenario)?;
    let plans = tools::plan(Some(&matrix), &[], &[version.to_string()], &args.source)?;
    let plan = plans.first().expect("one version names one tool");
    let resolution = tools::resolve(plan).await?;
    let [version] = resolution.versions.as_slice() else {
        return Err(BadInput(format!(
            "`{version}` selects {} versions of {} ({}); a cell is one version",
            resolution.versions.len(),
            plan.tool.name(),
            resolution.versions.join(", ")
        ))
        .into());
    };
    let observer = Arc::new(progress::Progress::for_stderr());
    let fetcher = tools::fetcher(plan, observer)?;
    let binary = fetcher.fetch(version).await?;

    // A run's logs directory; the shell writes no log, the cell lives in the shell.
    let logs =
        tempfile::Builder::new().prefix("ko-matrix-shell-").tempdir().context("creating a temporary directory")?;
    let options = RunnerOptions {
        scenarios: vec![scenario.clone()],
        services: matrix.services.clone(),
        cell_timeout: matrix.cell_timeout,
        out_dir: logs.path().to_path_buf(),
        app_source: run::scenarios_dir(&matrix).join("app"),
        helper: std::env::current_exe().context("finding the ko-matrix executable")?,
        baseline: None,
        durations: None,
    };
    let runner = run::Runner::start(&options, fetcher.go()).await?;
    let cell = runner
        .open_cell(&binary, &scenario)
        .await
        .with_context(|| format!("opening {}::{}", binary.label(), scenario.name))?;
    let record = cell.dir().join("gateway.log");
    cell.record_to_file(&record).with_context(|| format!("creating {}", record.display()))?;
    let before = if scenario.before.is_empty() { None } else { Some(cell.run_before_steps().await) };

    // The tool under its own name, first on PATH: the push command runs as printed.
    let name = binary.tool.name();
    let tool_dir = cell.dir().join("tool");
    std::fs::create_dir_all(&tool_dir).with_context(|| format!("creating {}", tool_dir.display()))?;
    std::os::unix::fs::symlink(&binary.path, tool_dir.join(name))
        .with_context(|| format!("linking {name} into {}", tool_dir.display()))?;
    let mut env = cell.env().clone();
    let path =
        env.get("PATH").map_or_else(|| tool_dir.display().to_string(), |p| format!("{}:{p}", tool_dir.display()));
    env.insert("PATH".into(), path);
    env.insert(GATEWAY_RECORD_ENV.into(), record.display().to_string());
    env.insert(REPOSITORY_ENV.into(), cell.push_repository().to_string());
    if let Ok(term) = std::env::var("TERM") {
        env.insert("TERM".into(), term);
    }

    let interactive = args.command.is_empty();
    eprintln!("cell      {} ({})", cell.id(), scenario.description);
    if let Some(steps) = &before {
        let verdict = if steps.succeeded { "ran" } else { "FAILED (a run would stop here)" };
        eprintln!("before    the scenario's steps before the push {verdict}:");
        for line in steps.transcript.trim_end().lines() {
            eprintln!("{}", format!("            {line}").trim_end());
        }
    }
    let command = cell.push_command().iter().map(|a| shell_quote(a)).collect::<Vec<_>>().join(" ");
    eprintln!("{:<10}{command}", scenario.verb().as_str());
    eprintln!("          in {}, with {name} {} first on PATH", cell.work_dir().display(), binary.version);
    eprintln!(
        "record    {} (${GATEWAY_RECORD_ENV}: each request through the gateway, as it happens)",
        record.display()
    );
    eprintln!("repo      {} (${REPOSITORY_ENV})", cell.push_repository());
    let (program, program_args) = if interactive {
        let shell = std::env::var("SHELL").ok().filter(|s| !s.is_empty()).unwrap_or_else(|| "/bin/sh".into());
        env.insert("PS1".into(), format!("({}) $ ", cell.id()));
        eprintln!("exit the shell to stop the world");
        (shell, Vec::new())
    } else {
        (args.command[0].clone(), args.command[1..].to_vec())
    };

    let mut cmd = tokio::process::Command::new(&program);
    cmd.args(&program_args).env_clear().envs(&env).current_dir(cell.work_dir());
    if let Some(hosts) = cell.hosts_file() {
        ko_matrix::containment::with_hosts_file(&mut cmd, hosts)
            .with_context(|| format!("giving the shell the cell's hosts file {}", hosts.display()))?;
    }
    let mut child = Foreground::spawn(cmd).map_err(|e| match e {
        ko_matrix::process::RunError::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            anyhow::Error::from(BadInput(format!("`{program}` was not found")))
        }
        e => e.into(),
    })?;
    let status = child.wait(&program).await?;
    Ok(match (status.code(), status.signal()) {
        (Some(code), _) => code as u8,
        (None, Some(signal)) => (128 + signal) as u8,
        (None, None) => 3,
    })
}

pub async fn serve(config: Option<&Path>, args: ServeArgs) -> anyhow::Result<u8> {
    let matrix = load_matrix(config, false)?.expect("a required matrix is loaded or an error");
    let scenarios = match &args.scenario {
        Some(name) => vec![scenario_named(&matrix, name)?],
        None => ko_matrix::scenario::discover(&run::scenarios_dir(&matrix))?
            .into_iter()
            .filter(|s| s.registries().all(|r| r != Flavour::Ecr && !r.is_vendor()))
            .collect(),
    };
    // Only the Go provisioner, for a registry binary or Amazon's helper when none is installed.
    let settings = matrix.tools.first().map(|t| t.fetch.clone()).unwrap_or_default();
    let fetcher =
        ToolFetcher::new(tool::shorthand(), Cache::from_env()?, settings, Arc::new(progress::Progress::for_stderr()));
    let work =
        tempfile::Builder::new().prefix("ko-matrix-serve-").tempdir().context("creating a temporary directory")?;
    let world =
        World::start(&scenarios, &matrix.services, fetcher.go(), work.path()).await.map_err(run::RunError::from)?;
    let session = world.gateway.session().await?;
    let record = work.path().join("gateway.log");
    session.record_to_file(&record, str::to_string).with_context(|| format!("creating {}", record.display()))?;
    let aws_spec = scenarios.iter().find_map(|s| s.aws.as_ref());
    let aws = match (aws_spec, &world.aws) {
        (Some(spec), Some(aws)) => Some(
            aws.backend
                .open_cell(session.id, spec, work.path())
                .await
                .map_err(|e| anyhow::anyhow!("the AWS backend could not open an identity: {e}"))?,
        ),
        _ => None,
    };

    let mut exports: Vec<(String, String)> = PROXY_VARS.iter().map(|k| (k.to_string(), session.proxy_url())).collect();
    exports.push(("SSL_CERT_FILE".into(), world.ca_bundle.display().to_string()));
    // curl reads its own variable (its built-in bundle otherwise wins over SSL_CERT_FILE).
    exports.push(("CURL_CA_BUNDLE".into(), world.ca_bundle.display().to_string()));
    exports.push((GATEWAY_RECORD_ENV.into(), record.display().to_string()));
    for flavour in world.targets.keys().filter(|f| **f != Flavour::Ecr && !f.is_vendor()) {
        exports
            .push((format!("KO_MATRIX_REGISTRY_{}", flavour.name().to_ascii_uppercase()), flavour.host().to_string()));
    }
    if let Some(target) =
        world.targets.iter().find(|(f, _)| matches!(f, Flavour::Basic | Flavour::Token)).map(|(_, t)| t)
    {
        exports.push(("KO_MATRIX_USER".into(), target.user.username.clone()));
        exports.push(("KO_MATRIX_PASSWORD".into(), target.user.password.clone()));
    }
    // A vendor registry's account (ghcr.io, Docker Hub) belongs to this session, as a cell's does.
    let vendor = scenarios.iter().find_map(|s| Some((s.target.registry, world.vendors.get(&s.target.registry)?, s)));
    let vendor = match vendor {
        Some((flavour, registry, scenario)) => Some((flavour, registry.open_cell(&session, scenario).await?)),
        None => None,
    };
    if let Some((flavour, cell)) = &vendor {
        let name = flavour.name().to_ascii_uppercase();
        let values = cell.values();
        exports.push((format!("KO_MATRIX_REGISTRY_{name}"), values["REGISTRY"].clone()));
        exports.push((format!("KO_MATRIX_{name}_USER"), values["USER"].clone()));
        exports.push((format!("KO_MATRIX_{name}_PASSWORD"), values["PASSWORD"].clone()));
        // What every cell of the vendor has in its environment (GCE_METADATA_HOST).
        exports.extend(cell.identity_values.env.clone());
    }
    if let Some(aws) = &aws {
        let values = &aws.values;
        exports.push(("KO_MATRIX_REGISTRY_ECR".into(), values["REGISTRY"].clone()));
        exports.push(("KO_MATRIX_ECR_USER".into(), values["USER"].clone()));
        exports.push(("KO_MATRIX_ECR_PASSWORD".into(), values["PASSWORD"].clone()));
        for key in ["AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN"] {
            if let Some(value) = values.get(key).filter(|v| !v.is_empty()) {
                exports.push((key.into(), value.to_string()));
            }
        }
        exports.push(("AWS_REGION".into(), values["AWS_REGION"].clone()));
        exports.push(("AWS_DEFAULT_REGION".into(), values["AWS_REGION"].clone()));
        // The AWS CLI and SDKs read their CA bundle from here, not SSL_CERT_FILE.
        exports.push(("AWS_CA_BUNDLE".into(), world.ca_bundle.display().to_string()));
    }
    let registries: Vec<&str> = world.targets.keys().map(|f| f.name()).collect();
    eprintln!(
        "serving the {} registries ({} runtime); export this in any client (it holds their credentials):",
        registries.join(", "),
        world.runtime
    );
    for (key, value) in &exports {
        println!("export {key}={}", shell_quote(value));
    }
    eprintln!("Ctrl-C or SIGTERM stops the world");
    // Until the signal (main stops the command on it, dropping the world).
    std::future::pending::<()>().await;
    unreachable!("pending never completes")
}

/// `text` as one word of a POSIX shell command line.
fn shell_quote(text: &str) -> String {
    let plain = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || "@%+=:,./_-".contains(c));
    if plain {
        text.to_string()
    } else {
        format!("'{}'", text.replace('\'', r"'\''"))
    }
}

#[cfg(test)]
mod tests {
    use super::shell_quote;

    #[test]
    fn words_are_quoted_only_when_they_need_it() {
        assert_eq!(shell_quote("basic.ko-matrix.test/cells/app:latest"), "basic.ko-matrix.test/cells/app:latest");
        assert_eq!(
            shell_quote("artifact.txt:application/vnd.ko-matrix.test+text"),
            "artifact.txt:application/vnd.ko-matrix.test+text"
        );
        assert_eq!(shell_quote("a b"), "'a b'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }
}
