//! The OCI distribution-spec conformance suite (pinned, built from the module proxy) against
//! every registry flavour and the ECR front, through the gateway with the proxy and CA
//! variables a cell has. Each flavour's per-check results are snapshotted
//! (`tests/snapshots/conformance__<flavour>.snap`): a change in the gateway's or the
//! emulator's wire behaviour is a diff there. The suite's failures are recorded, not hidden:
//! distribution has its own gaps (sha512 digests, OCI-Subject, referrers), and the ECR front
//! deviates where ECR does (docs/ecr-conformance.md).
//!
//! Only where Go cannot build modules at all (no `go`, or `GOPROXY=off`) does every flavour
//! show as ignored, with the reason printed; with Go and a module proxy, a suite that does not
//! build fails every flavour. Snapshots are kept per registry binary
//! (`conformance__<flavour>@<registry>.snap`): distribution 2.8.2 (Debian's) and v3.0.0 (built
//! from the module proxy where Debian's is not installed) answer differently.

mod support;

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::Arc;
use std::time::Instant;

use ko_matrix::conformance::{self, Target, SUITE, SUITE_VERSION};
use ko_matrix::scenario::Flavour;
use libtest_mimic::{Arguments, Failed, Trial};
use support::TestWorld;

const FLAVOURS: [Flavour; 8] = [
    Flavour::Anonymous,
    Flavour::Basic,
    Flavour::Token,
    Flavour::Ecr,
    Flavour::Ghcr,
    Flavour::Dockerhub,
    Flavour::Gcp,
    Flavour::Azure,
];
const REPOSITORIES: [&str; 2] = ["conformance/repo1", "conformance/repo2"];

fn main() {
    let args = Arguments::from_args();
    let selected = |name: &str| match &args.filter {
        Some(filter) if args.exact => name == filter,
        Some(filter) => name.contains(filter.as_str()),
        None => true,
    };
    let wanted = !args.list && FLAVOURS.iter().any(|f| selected(f.name()));
    // Only a machine that cannot build Go modules at all skips; there, a failed build is a failure.
    let unavailable = if wanted { go_unavailable() } else { None };
    if let Some(reason) = &unavailable {
        eprintln!("SKIPPED conformance suite: {reason}");
    }
    // Built once for every flavour; only when a flavour is going to run.
    let suite: Option<Result<PathBuf, String>> = (wanted && unavailable.is_none()).then(|| {
        let rt = tokio::runtime::Runtime::new().unwrap();
        rt.block_on(support::provisioner().install(&SUITE, SUITE_VERSION)).map(|installed| installed.path).map_err(
            |e| format!("{}@{SUITE_VERSION} did not build, on a machine with Go and a module proxy: {e}", SUITE.module),
        )
    });
    let suite = Arc::new(suite);
    let trials = FLAVOURS
        .iter()
        .map(|&flavour| {
            let suite = suite.clone();
            Trial::test(flavour.name(), move || match suite.as_ref() {
                Some(Ok(binary)) => check_flavour(flavour, binary),
                Some(Err(e)) => Err(e.as_str().into()),
                None => Err("the suite was not built".into()),
            })
            .with_ignored_flag(unavailable.is_some())
        })
        .collect();
    libtest_mimic::run(&args, trials).exit();
}

/// Why this machine cannot build a Go module at all: no `go`, or Go told to use no module
/// proxy. `None` where it can.
fn go_unavailable() -> Option<String> {
    let go = match which::which("go") {
        Ok(go) => go,
        Err(e) => return Some(format!("no `go` on PATH ({e}): the suite is built from the module proxy")),
    };
    let out = std::process::Command::new(go).args(["env", "GOPROXY"]).stdin(Stdio::null()).output();
    match out {
        Ok(out) if out.status.success() => {
            let proxy = String::from_utf8_lossy(&out.stdout).trim().to_string();
            (proxy == "off").then(|| "GOPROXY=off: Go may reach no module proxy to build the suite".to_string())
        }
        Ok(out) => Some(format!("`go env GOPROXY` failed: {}", String::from_utf8_lossy(&out.stderr).trim())),
        Err(e) => Some(format!("`go env GOPROXY` could not run: {e}")),
    }
}

/// Runs the suite against `flavour` in a world of its own and compares with its snapshot.
fn check_flavour(flavour: Flavour, suite: &Path) -> Result<(), Failed> {
    let rt = tokio::runtime::Runtime::new().unwrap();
    let started = Instant::now();
    let report = rt.block_on(run_against(flavour, suite))?;
    eprintln!(
        "conformance {}: {} in {:.0?}; the suite's reports are in {}",
        flavour.name(),
        report.summary(),
        started.elapsed(),
        report.results_dir.display()
    );
    // The results are the registry's as much as the gateway's: a different distribution
    // (another binary on PATH) shows as a changed first line, not as unexplained diffs.
    let registry = rt.block_on(registry_version())?;
    let text = format!(
        "suite {}@{SUITE_VERSION}, spec {}\nregistry {registry}\n{}",
        SUITE.module,
        conformance::SPEC_VERSION,
        report.lines()
    );
    let name = format!("{}@{}", flavour.name(), registry_slug(&registry));
    let recorded = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/snapshots/conformance__{name}.snap"));
    if !recorded.exists() && std::env::var_os("INSTA_UPDATE").is_none_or(|v| v == "no") {
        return Err(format!(
            "no conformance results are recorded for registry {registry} ({}): the snapshots name the registry \
             they were recorded against; record this one with INSTA_UPDATE=always and review it",
            recorded.display()
        )
        .into());
    }
    insta::assert_snapshot!(name, text);
    Ok(())
}

/// A file-name form of the registry's version words: `github.com/docker/distribution
/// 2.8.2+ds1` → `docker-distribution-2.8.2-ds1`.
fn registry_slug(version: &str) -> String {
    let words = version.trim_start_matches("github.com/");
    let slug: String = words.chars().map(|c| if c.is_ascii_alphanumeric() || c == '.' { c } else { '-' }).collect();
    slug.split('-').filter(|part| !part.is_empty()).collect::<Vec<_>>().join("-")
}

/// What the world's distribution binary says of its version (`--version`).
async fn registry_version() -> Result<String, Failed> {
    let binary = ko_matrix::services::binaries::ServiceBinaries::like(&support::provisioner())
        .registry()
        .await
        .map_err(|e| e.to_string())?;
    let out = std::process::Command::new(&binary)
        .arg("--version")
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("{}: {e}", binary.display()))?;
    let said = String::from_utf8_lossy(&out.stdout).trim().to_string();
    // Only the version words: `docker-registry github.com/docker/distribution 2.8.2+ds1`.
    Ok(said.split_whitespace().skip(1).collect::<Vec<_>>().join(" "))
}

async fn run_against(flavour: Flavour, suite: &Path) -> Result<conformance::Report, Failed> {
    let extra = match flavour {
        Flavour::Ecr => "[aws]\ncredentials = \"static\"\n",
        _ if flavour.is_vendor() => "[account]\n",
        _ => "",
    };
    let text = format!("description = \"conformance\"\n[target]\nregistry = \"{}\"\n{extra}", flavour.name());
    let TestWorld { world, scenario, dir } = support::try_world_for(&text).await?;
    let session = world.gateway.session().await.map_err(|e| e.to_string())?;
    let no_other_certs = dir.path().join("no-other-certs");
    std::fs::create_dir_all(&no_other_certs).unwrap();
    let network = world.client_network(&session, &no_other_certs);
    let repositories = REPOSITORIES.map(String::from);
    // A vendor account lives as long as the world; it is opened only for vendor flavours.
    let mut vendor_cell = None;
    let target = match flavour {
        Flavour::Anonymous => Target { registry: flavour.host().into(), login: None, repositories },
        Flavour::Basic | Flavour::Token => {
            let user = &world.targets[&flavour].user;
            Target {
                registry: flavour.host().into(),
                login: Some((user.username.clone(), user.password.clone())),
                repositories,
            }
        }
        Flavour::Ghcr
        | Flavour::Dockerhub
        | Flavour::Gcp
        | Flavour::Azure
        | Flavour::Harbor
        | Flavour::Gitlab
        | Flavour::Quay
        | Flavour::Artifactory
        | Flavour::Nexus => {
            let cell = vendor_cell
                .insert(world.vendors[&flavour].open_cell(&session, &scenario).await.map_err(|e| e.to_string())?);
            let values = cell.values();
            // The account may push only under its own namespace, as at the vendor.
            let repositories = REPOSITORIES.map(|r| cell.repositories(r).0);
            // gcr.io takes an access token under the user name `docker login` uses for one.
            let user = if flavour == Flavour::Gcp { "oauth2accesstoken".to_string() } else { values["USER"].clone() };
            Target {
                registry: values["REGISTRY"].clone(),
                login: Some((user, values["PASSWORD"].clone())),
                repositories,
            }
        }
        Flavour::Ecr => {
            let spec = scenario.aws.clone().expect("an ECR scenario has an [aws] table");
            let cell = world
                .aws
                .as_ref()
                .and_then(|a| a.emulator())
                .expect("the embedded emulator")
                .open_cell(session.id, spec.clone())
                .await
                .expect("the cell's AWS world opens");
            // As a user would: the AWS CLI's login password (GetAuthorizationToken) and its
            // create-repository (ECR creates no repository on push), through the gateway.
            let aws = |args: &[&str]| {
                let mut cmd = std::process::Command::new(support::program("aws", "the AWS CLI, awscli from PyPI"));
                cmd.env_clear()
                    .envs(network.iter().map(|(k, v)| (k.as_str(), v.as_str())))
                    .env("PATH", "/usr/local/bin:/usr/bin:/bin")
                    .env("HOME", dir.path())
                    .env("AWS_CA_BUNDLE", &world.ca_bundle)
                    .env("AWS_CONFIG_FILE", dir.path().join("no-aws-config"))
                    .env("AWS_SHARED_CREDENTIALS_FILE", dir.path().join("no-aws-credentials"))
                    .env("AWS_ACCESS_KEY_ID", &cell.key.id)
                    .env("AWS_SECRET_ACCESS_KEY", &cell.key.secret)
                    .env("AWS_REGION", &spec.region)
                    .env("AWS_DEFAULT_REGION", &spec.region)
                    .args(args)
                    .stdin(Stdio::null());
                let out = cmd.output().unwrap();
                assert!(out.status.success(), "aws {}: {}", args.join(" "), String::from_utf8_lossy(&out.stderr));
                String::from_utf8(out.stdout).unwrap()
            };
            let password = aws(&["ecr", "get-login-password"]).trim().to_string();
            for repository in REPOSITORIES {
                aws(&["ecr", "create-repository", "--repository-name", repository]);
            }
            Target { registry: spec.registry_host(), login: Some(("AWS".into(), password)), repositories }
        }
    };
    // Kept after the test (replacing the last run's): junit.xml, results.yaml and report.html
    // say why a check failed.
    let kept = Path::new(env!("CARGO_TARGET_TMPDIR")).join("conformance").join(flavour.name());
    let _ = std::fs::remove_dir_all(&kept);
    std::fs::create_dir_all(&kept).unwrap();
    Ok(conformance::run(suite, &target, &network, &kept, conformance::RUN_TIMEOUT).await.map_err(|e| e.to_string())?)
}
