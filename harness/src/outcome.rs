//! What happened in a cell, decided from evidence: ko's exit and output, the gateway's
//! request record, and whether the pushed manifest could be fetched back. Pure functions,
//! so the rules are unit-tested on their own.

use serde::{Deserialize, Serialize};

use crate::gateway::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The harness itself failed (a service, a port, a file): never a ko failure.
    InfraError,
    Skipped,
    /// A failure that the retry did not repeat: reported as such, never as a regression.
    Flaky,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailClass {
    Unauthorized,
    Denied,
    NameUnknown,
    Tls,
    Network,
    Build,
    Timeout,
    Other,
}

impl FailClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailClass::Unauthorized => "unauthorized",
            FailClass::Denied => "denied",
            FailClass::NameUnknown => "name-unknown",
            FailClass::Tls => "tls",
            FailClass::Network => "network",
            FailClass::Build => "build",
            FailClass::Timeout => "timeout",
            FailClass::Other => "other",
        }
    }
}

/// The verdict on one cell.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verdict {
    pub outcome: Outcome,
    pub class: Option<FailClass>,
    /// Why, quoting the deciding line.
    pub detail: String,
}

/// What the cell observed.
pub struct Evidence<'a> {
    /// ko's exit code; `None` when it was killed.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// ko's combined output.
    pub output: &'a str,
    pub records: &'a [Record],
    /// The pushed manifest fetched back by digest (`Ok`), or why not.
    pub fetched_back: Result<String, String>,
}

/// Text patterns, in priority order: the first class whose pattern the deciding line holds.
const PATTERNS: [(FailClass, &[&str]); 6] = [
    (FailClass::Build, &["build: go build", "error building", "go build:"]),
    (FailClass::Tls, &["x509:", "tls:", "certificate signed by unknown authority", "certificate is not valid"]),
    (FailClass::NameUnknown, &["NAME_UNKNOWN", "name unknown", "does not exist in the registry", "repository name not known"]),
    (FailClass::Denied, &["DENIED", "denied:", "403 Forbidden", "status code 403", "AccessDenied", "not authorized to perform"]),
    (FailClass::Unauthorized, &["UNAUTHORIZED", "unauthorized", "401 Unauthorized", "status code 401", "authentication required", "no basic auth credentials"]),
    (FailClass::Network, &["proxyconnect", "dial tcp", "connection refused", "no such host", "i/o timeout", "connection reset", "EOF"]),
];

pub fn classify(e: &Evidence) -> Verdict {
    let line = deciding_line(e.output);
    if e.timed_out {
        return fail(FailClass::Timeout, format!("ko did not finish in time; last line: {}", line.unwrap_or("(no output)")));
    }
    if e.exit_code == Some(0) {
        return match &e.fetched_back {
            Ok(digest) => Verdict { outcome: Outcome::Pass, class: None, detail: format!("pushed and fetched back {digest}") },
            Err(why) => fail(FailClass::Other, format!("ko exited 0 but the pushed image could not be fetched back: {why}")),
        };
    }
    let exit = e.exit_code.map_or("was killed".to_string(), |c| format!("exited {c}"));
    if let Some(line) = line {
        for (class, patterns) in PATTERNS {
            if patterns.iter().any(|p| line.contains(p)) {
                return fail(class, format!("ko {exit}: {line}"));
            }
        }
    }
    let quoted = line.unwrap_or("(no error line)");
    if let Some(class) = class_from_records(e.records) {
        return fail(class, format!("ko {exit}: {quoted} (gateway: {})", last_failure(e.records).unwrap_or_default()));
    }
    fail(FailClass::Other, format!("ko {exit}: {quoted}"))
}

fn fail(class: FailClass, detail: String) -> Verdict {
    Verdict { outcome: Outcome::Fail, class: Some(class), detail }
}

/// ko's own error line: the last `Error:` line (cobra's), else the last line mentioning an
/// error, else the last non-empty line.
pub fn deciding_line(output: &str) -> Option<&str> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .or_else(|| lines.iter().rev().find(|l| l.to_ascii_lowercase().contains("error")))
        .or(lines.last())
        .copied()
}

/// When ko's text says nothing recognisable, the gateway's record may: the last refusal.
fn class_from_records(records: &[Record]) -> Option<FailClass> {
    let last = records.iter().rev().find(|r| r.status == 0 || r.status >= 400)?;
    Some(match last.status {
        0 => FailClass::Tls,
        401 => FailClass::Unauthorized,
        403 if last.note.as_deref().is_some_and(|n| n.starts_with("unknown host")) => FailClass::Network,
        403 => FailClass::Denied,
        404 => FailClass::NameUnknown,
        _ => FailClass::Network,
    })
}

fn last_failure(records: &[Record]) -> Option<String> {
    let r = records.iter().rev().find(|r| r.status == 0 || r.status >= 400)?;
    Some(format!("{} {}{} → {}{}", r.method, r.host, r.path, r.status, r.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, status: u16, note: Option<&str>) -> Record {
        Record { host: host.into(), method: "POST".into(), path: "/v2/app/blobs/uploads/".into(), status, at_ms: 1, note: note.map(String::from) }
    }

    fn verdict(exit: Option<i32>, output: &str, records: &[Record]) -> Verdict {
        classify(&Evidence { exit_code: exit, timed_out: false, output, records, fetched_back: Err("not pushed".into()) })
    }

    #[test]
    fn a_pass_needs_exit_zero_and_the_manifest_back() {
        let ok = Evidence { exit_code: Some(0), timed_out: false, output: "", records: &[], fetched_back: Ok("sha256:ab".into()) };
        assert_eq!(classify(&ok).outcome, Outcome::Pass);
        let missing = Evidence { fetched_back: Err("404 from the registry".into()), ..ok };
        let v = classify(&missing);
        assert_eq!((v.outcome, v.class), (Outcome::Fail, Some(FailClass::Other)));
        assert!(v.detail.contains("404 from the registry"));
    }

    #[test]
    fn ko_error_lines_decide_the_class() {
        let cases = [
            ("Error: failed to publish images: error publishing ko://example.com/app: POST https://basic.ko-matrix.test/v2/app/blobs/uploads/: UNAUTHORIZED: authentication required; [map[Action:push Class: Name:app Type:repository]]", FailClass::Unauthorized),
            ("Error: failed to publish images: error publishing ko://x: HEAD https://1.dkr.ecr.us-east-1.amazonaws.com/v2/app/blobs/sha256:1: unexpected status code 403 Forbidden (HEAD responses have no body, use GET for details)", FailClass::Denied),
            ("Error: failed to publish images: PUT https://r/v2/app/manifests/latest: NAME_UNKNOWN: The repository with name 'app' does not exist in the registry with id '123456789012'", FailClass::NameUnknown),
            ("Error: failed to publish images: Get \"https://basic.ko-matrix.test/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority", FailClass::Tls),
            ("Error: failed to publish images: Get \"https://basic.ko-matrix.test/v2/\": proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused", FailClass::Network),
            ("Error: error building \"ko://example.com/app\": build: go build: exit status 1: ./main.go:3:1: syntax error", FailClass::Build),
            ("Error: failed to publish images: error publishing: something nobody expected", FailClass::Other),
        ];
        for (line, class) in cases {
            let output = format!("2024/01/01 00:00:00 Using base 127.0.0.1:5000/base\n{line}\n");
            let v = verdict(Some(1), &output, &[]);
            assert_eq!(v.class, Some(class), "{line}");
            assert_eq!(v.detail, format!("ko exited 1: {line}"));
        }
    }

    #[test]
    fn the_gateway_record_decides_when_the_text_does_not() {
        let v = verdict(Some(1), "Error: failed to publish images: something odd", &[record("basic.ko-matrix.test", 202, None), record("basic.ko-matrix.test", 401, None)]);
        assert_eq!(v.class, Some(FailClass::Unauthorized), "an unrecognisable line with a 401 record: {v:?}");
        assert!(v.detail.ends_with("(gateway: POST basic.ko-matrix.test/v2/app/blobs/uploads/ → 401)"), "{}", v.detail);
        let v = verdict(Some(1), "panic: runtime error", &[record("evil.example.com", 403, Some("unknown host: refused"))]);
        assert_eq!(v.class, Some(FailClass::Network));
        assert!(v.detail.contains("evil.example.com"), "{}", v.detail);
        let v = verdict(Some(2), "panic: runtime error", &[record("basic.ko-matrix.test", 401, None)]);
        assert_eq!(v.class, Some(FailClass::Unauthorized));
    }

    #[test]
    fn timeouts_and_kills() {
        let e = Evidence { exit_code: None, timed_out: true, output: "2024/01/01 Building example.com/app for linux/amd64", records: &[], fetched_back: Err(String::new()) };
        let v = classify(&e);
        assert_eq!(v.class, Some(FailClass::Timeout));
        assert!(v.detail.ends_with("Building example.com/app for linux/amd64"));
    }

    #[test]
    fn the_deciding_line_prefers_cobras_error() {
        assert_eq!(deciding_line("a\nsome error happened\nError: the real one\nUsage: ko build\n"), Some("Error: the real one"));
        assert_eq!(deciding_line("a\nan error here\nlast"), Some("an error here"));
        assert_eq!(deciding_line("\n\n"), None);
    }
}
