//! The OCI distribution-spec conformance suite as a peer check of the world's wire behaviour:
//! the suite runs as one more client of the gateway, against each registry flavour and the ECR
//! front, and its per-check results are what a change in the gateway or the emulator shows up
//! in.
//!
//! The suite is a Go program from the module proxy, built and cached like every Go tool
//! ([`crate::provision`]). The proxy serves no tag of the `conformance` module, only commits as
//! pseudo-versions; the pinned one is the newest it serves. That version is a `main` package
//! (`go test` still runs it through a deprecated `TestLegacy`), so it is built with
//! `go install` like the other tools, and told which spec version to hold a registry to with
//! `OCI_VERSION`.

use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::process::Command;

use crate::process::{self, output_tail, RunError};
use crate::provision::GoTool;

/// The suite: `github.com/opencontainers/distribution-spec/conformance`.
pub const SUITE: GoTool = GoTool {
    name: "conformance",
    module: "github.com/opencontainers/distribution-spec/conformance",
    package: "github.com/opencontainers/distribution-spec/conformance",
    version_var: None,
    // It has no version flag: it runs the whole suite whatever its arguments.
    version_args: &[],
};

/// The commit of 2026-08-31, the newest the module proxy serves (it serves no tag of this
/// module). Moving it changes every snapshot of `tests/conformance.rs`.
pub const SUITE_VERSION: &str = "v0.0.0-20260831232431-97274622c111";

/// The distribution-spec version the suite holds registries to (`OCI_VERSION`).
pub const SPEC_VERSION: &str = "1.1";

/// The name the suite gives its root; every check's name starts with it.
const ROOT: &str = "OCI Conformance Test/";

/// Where the suite pushes and what it logs in with.
#[derive(Debug, Clone)]
pub struct Target {
    /// `host[:port]` as a client names the registry (a virtual host of the gateway).
    pub registry: String,
    /// Basic credentials; `None` for an anonymous registry.
    pub login: Option<(String, String)>,
    /// The repositories it pushes to; the second receives cross-repository mounts.
    pub repositories: [String; 2],
}

/// One leaf check of the suite and how it came out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    /// Its path below the suite's root: `sha256 blobs/range requests/range 500-0`.
    pub name: String,
    pub status: Status,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Status {
    Pass,
    Fail,
    /// Skipped by the suite (the registry lacks an optional feature) or disabled by its
    /// configuration.
    Skip,
    /// The suite itself failed to run the check.
    Error,
}

impl Status {
    /// The JUnit `status` attribute the suite writes.
    fn from_junit(status: &str) -> Option<Status> {
        match status {
            "passed" => Some(Status::Pass),
            "failure" => Some(Status::Fail),
            "skipped" => Some(Status::Skip),
            "error" => Some(Status::Error),
            _ => None,
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Fail => "fail",
            Status::Skip => "skip",
            Status::Error => "error",
        }
    }
}

/// The suite's results against one registry.
#[derive(Debug, Clone)]
pub struct Report {
    /// Every leaf check, in the order the suite ran them (names may repeat: a teardown step
    /// runs once per repository).
    pub checks: Vec<Check>,
    /// Where the suite wrote `junit.xml`, `results.yaml` and `report.html`.
    pub results_dir: PathBuf,
}

impl Report {
    /// How many checks came out `status`.
    pub fn count(&self, status: Status) -> usize {
        self.checks.iter().filter(|c| c.status == status).count()
    }

    /// `612 pass, 99 fail, 44 skip, 0 error`.
    pub fn summary(&self) -> String {
        [Status::Pass, Status::Fail, Status::Skip, Status::Error]
            .map(|s| format!("{} {}", self.count(s), s.label()))
            .join(", ")
    }

    /// The summary, then one line per check (`fail  sha256 blobs/range requests/range 500-0`),
    /// sorted by name: text to snapshot, so that any change of a check's outcome is a one-line
    /// diff. (The suite's own order of sibling checks changes from run to run.)
    pub fn lines(&self) -> String {
        let mut text = format!("{}\n", self.summary());
        let mut checks: Vec<&Check> = self.checks.iter().collect();
        checks.sort_by(|a, b| (&a.name, a.status).cmp(&(&b.name, b.status)));
        for check in checks {
            text.push_str(&format!("{:<5} {}\n", check.status.label(), check.name));
        }
        text
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConformanceError {
    #[error("running the conformance suite against {registry}: {source}")]
    Run { registry: String, source: RunError },
    #[error("the conformance suite against {registry} wrote no {path} (is {binary} the suite at {SUITE_VERSION}?); its output ends:\n{tail}")]
    NoReport { registry: String, binary: PathBuf, path: PathBuf, tail: String },
    #[error("{path} is not the suite's JUnit report ({detail}); rebuild the suite (delete its cache entry) and look at the file")]
    BadReport { path: PathBuf, detail: String },
    #[error("preparing {path} for the conformance suite: {source}")]
    Io { path: PathBuf, source: std::io::Error },
}

/// How long one run of the suite may take (about a minute against a loopback registry).
pub const RUN_TIMEOUT: Duration = Duration::from_secs(600);

/// Runs the suite `binary` against `target`, as a client with `network` (the proxy and CA
/// variables a cell gets), in `dir` (its results go to `dir/results`).
pub async fn run(
    binary: &Path,
    target: &Target,
    network: &[(String, String)],
    dir: &Path,
    timeout: Duration,
) -> Result<Report, ConformanceError> {
    let results_dir = dir.join("results");
    let home = dir.join("home");
    for d in [&results_dir, &home] {
        std::fs::create_dir_all(d).map_err(|source| ConformanceError::Io { path: d.clone(), source })?;
    }
    let mut cmd = Command::new(binary);
    // Only what is set here: no OCI_* of the caller's, and a working directory without an
    // `oci-conformance.yaml` (the suite reads one from there when present).
    cmd.env_clear()
        .current_dir(dir)
        .env("PATH", "/usr/local/bin:/usr/bin:/bin")
        .env("HOME", &home)
        .envs(network.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("OCI_VERSION", SPEC_VERSION)
        .env("OCI_REGISTRY", &target.registry)
        .env("OCI_TLS", "enabled")
        .env("OCI_REPO1", &target.repositories[0])
        .env("OCI_REPO2", &target.repositories[1])
        .env("OCI_RESULTS_DIR", &results_dir)
        .env("OCI_LOG", "warn");
    if let Some((username, password)) = &target.login {
        cmd.env("OCI_USERNAME", username).env("OCI_PASSWORD", password);
    }
    let registry = target.registry.clone();
    // It exits 1 when any check failed: the report, not the exit code, is the result.
    let out = process::output(cmd, timeout)
        .await
        .map_err(|source| ConformanceError::Run { registry: registry.clone(), source })?;
    let junit = results_dir.join("junit.xml");
    let Ok(text) = std::fs::read_to_string(&junit) else {
        return Err(ConformanceError::NoReport {
            registry,
            binary: binary.to_path_buf(),
            path: junit,
            tail: output_tail(&out, 20),
        });
    };
    let checks = parse_junit(&text).map_err(|detail| ConformanceError::BadReport { path: junit, detail })?;
    Ok(Report { checks, results_dir })
}

/// The leaf checks of the suite's `junit.xml` (as Go's encoding/xml writes it: one
/// `<testcase name=… status=…>` per leaf, attribute values escaped).
fn parse_junit(xml: &str) -> Result<Vec<Check>, String> {
    let mut checks = Vec::new();
    for (at, _) in xml.match_indices("<testcase ") {
        let tag = &xml[at..];
        let end = tag.find('>').ok_or_else(|| format!("an unterminated <testcase> at byte {at}"))?;
        let tag = &tag[..end];
        let name = attribute(tag, "name").ok_or_else(|| format!("a <testcase> without a name at byte {at}"))?;
        let status = attribute(tag, "status").ok_or_else(|| format!("the testcase {name:?} has no status"))?;
        let status = Status::from_junit(&status)
            .ok_or_else(|| format!("the testcase {name:?} has the unknown status {status:?}"))?;
        let name = name.strip_prefix(ROOT).unwrap_or(&name).to_string();
        checks.push(Check { name, status });
    }
    if checks.is_empty() {
        return Err("it holds no <testcase>".into());
    }
    Ok(checks)
}

/// The unescaped value of `name="…"` in a start tag.
fn attribute(tag: &str, name: &str) -> Option<String> {
    let needle = format!(" {name}=\"");
    let start = tag.find(&needle)? + needle.len();
    let len = tag[start..].find('"')?;
    Some(unescape(&tag[start..start + len]))
}

/// XML character references and the five predefined entities.
fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(amp) = rest.find('&') {
        out.push_str(&rest[..amp]);
        rest = &rest[amp..];
        let Some(semi) = rest.find(';') else { break };
        let entity = &rest[1..semi];
        let decoded = match entity {
            "amp" => Some('&'),
            "lt" => Some('<'),
            "gt" => Some('>'),
            "quot" => Some('"'),
            "apos" => Some('\''),
            _ => entity
                .strip_prefix("#x")
                .map(|hex| u32::from_str_radix(hex, 16))
                .or_else(|| entity.strip_prefix('#').map(str::parse))
                .and_then(Result::ok)
                .and_then(char::from_u32),
        };
        match decoded {
            Some(c) => {
                out.push(c);
                rest = &rest[semi + 1..];
            }
            None => {
                out.push('&');
                rest = &rest[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn junit_leaves_with_their_status() {
        let xml = r#"<testsuites time="30.0" tests="3">
  <testsuite name="OCI Conformance Test" tests="3">
    <properties><property name="Config" value="registry: x&#xA;"></property></properties>
    <testcase name="OCI Conformance Test/ping" classname="" time="0.004898" status="passed"></testcase>
    <testcase name="OCI Conformance Test/sha256 blobs/range requests/range 500-0" classname="" time="0.1" status="failure">
      <system-out>blob get failed: &#34;unexpected EOF&#34;</system-out>
    </testcase>
    <testcase name="OCI Conformance Test/tag &#34;list&#34; &amp; more" classname="" status="skipped"></testcase>
    <testcase name="OCI Conformance Test/engine" classname="" status="error"></testcase>
  </testsuite>
</testsuites>"#;
        let checks = parse_junit(xml).unwrap();
        let got: Vec<(&str, Status)> = checks.iter().map(|c| (c.name.as_str(), c.status)).collect();
        assert_eq!(
            got,
            [
                ("ping", Status::Pass),
                ("sha256 blobs/range requests/range 500-0", Status::Fail),
                ("tag \"list\" & more", Status::Skip),
                ("engine", Status::Error),
            ]
        );
        let report = Report { checks, results_dir: PathBuf::new() };
        assert_eq!(report.summary(), "1 pass, 1 fail, 1 skip, 1 error");
        assert_eq!(
            report.lines().lines().collect::<Vec<_>>()[1..],
            [
                "error engine",
                "pass  ping",
                "fail  sha256 blobs/range requests/range 500-0",
                "skip  tag \"list\" & more"
            ],
            "sorted by name"
        );
    }

    #[test]
    fn a_report_that_is_not_the_suites_is_refused() {
        assert!(parse_junit("<testsuites></testsuites>").unwrap_err().contains("no <testcase>"));
        assert!(parse_junit(r#"<testcase name="x" status="flaky">"#).unwrap_err().contains("unknown status \"flaky\""));
        assert!(parse_junit(r#"<testcase name="x">"#).unwrap_err().contains("has no status"));
    }

    #[test]
    fn entities_unescape() {
        assert_eq!(unescape("a&#xA;b&#9;c&lt;d&gt;&apos;"), "a\nb\tc<d>'");
        assert_eq!(unescape("R&D; & co"), "R&D; & co", "unknown entities stay as written");
    }
}
