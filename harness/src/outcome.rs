//! What happened in a cell, decided from evidence: the tool's exit and output, the gateway's
//! request record, whether the pushed manifest could be fetched back, and which of the
//! harness's services were down. Pure functions, so the rules are unit-tested on their own.
//!
//! A failure class comes only from the tool's behaviour: its exit, its deciding line and what the
//! registries really answered. When the harness itself failed (an answer the gateway or the
//! ECR front made because a service was unreachable, a fetch-back that could not reach the
//! registry, a service found down after the cell), a cell that did not pass is `infra-error`
//! naming the service, never `fail`.

use serde::{Deserialize, Serialize};

use ko_matrix_emulators::gateway::Record;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Outcome {
    Pass,
    Fail,
    /// The harness itself failed (a service, a port, a file): never the tool's failure.
    InfraError,
    Skipped,
    /// A failure that the retry did not repeat: reported as such, never as a regression.
    Flaky,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum FailClass {
    /// The tool could not resolve credentials on its own machine: a credential helper it
    /// could not run or that failed, a config file it could not read.
    Credentials,
    Unauthorized,
    Denied,
    NameUnknown,
    /// The registry refused to move an existing tag: the repository's tags are immutable.
    TagImmutable,
    /// The tool refused the repository name itself, before sending a request (upper-case
    /// letters, characters no registry accepts).
    InvalidName,
    /// The tool refused to follow the registry's token realm (plain HTTP for an HTTPS
    /// registry, a private address): a safeguard of the tool's, before any token request.
    RealmRefused,
    /// The registry refused an operation the tool relies on (a chunked upload, an OCI index,
    /// a manifest's size): the registry's own limits, not the credentials.
    Unsupported,
    /// The object store a registry redirected a blob download to refused it (credentials
    /// forwarded along with a presigned URL, an expired or mis-signed URL).
    StorageRefused,
    Tls,
    Network,
    Build,
    Timeout,
    Other,
}

impl FailClass {
    pub fn as_str(self) -> &'static str {
        match self {
            FailClass::Credentials => "credentials",
            FailClass::Unauthorized => "unauthorized",
            FailClass::Denied => "denied",
            FailClass::NameUnknown => "name-unknown",
            FailClass::TagImmutable => "tag-immutable",
            FailClass::InvalidName => "invalid-name",
            FailClass::RealmRefused => "realm-refused",
            FailClass::Unsupported => "unsupported",
            FailClass::StorageRefused => "storage-refused",
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
pub(crate) struct Evidence<'a> {
    /// The tool under test: its name and its own failure wording.
    pub tool: &'a str,
    /// The tool's own failure wording, tried before the wording every tool shares.
    pub patterns: &'a [(FailClass, Vec<String>)],
    /// The tool's exit code; `None` when it was killed.
    pub exit_code: Option<i32>,
    pub timed_out: bool,
    /// The tool's combined output.
    pub output: &'a str,
    /// The host the tool pushed (or copied) to: only its answers, and a copy's source's,
    /// decide a class.
    pub registry: &'a str,
    /// A copy's source host.
    pub source: Option<&'a str>,
    pub records: &'a [Record],
    /// The pushed manifest fetched back by digest (`Ok`), or why not.
    pub fetched_back: Result<String, NotFetched>,
    /// Services of the run that did not answer a probe after the cell, each as
    /// `<service> <addr> unreachable: <why>`.
    pub unreachable: &'a [String],
    /// Access key ids the tool signed with that the cell was not given (the run's leak check
    /// says how it tells, [`crate::leak_check`]): credentials from outside the cell.
    pub foreign_keys: &'a [String],
}

/// The SigV4 access key ids in `records` that `known` does not vouch for, once each.
pub(crate) fn foreign_key_ids(records: &[Record], known: impl Fn(&str) -> bool) -> Vec<String> {
    let mut foreign: Vec<String> = Vec::new();
    for id in records.iter().filter_map(Record::access_key_id) {
        if !known(id) && !foreign.iter().any(|f| f == id) {
            foreign.push(id.to_string());
        }
    }
    foreign
}

/// Why the pushed manifest was not fetched back.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum NotFetched {
    /// The registry answered, without the manifest the tool named (or it named none): about the tool.
    Missing(String),
    /// The harness could not reach its own registry: `<service> <what happened>`.
    Unreachable(String),
}

impl std::fmt::Display for NotFetched {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            NotFetched::Missing(why) | NotFetched::Unreachable(why) => f.write_str(why),
        }
    }
}

/// Local credential resolution failing, in any tool's words. It decides before anything
/// else: a helper's output may quote a registry's 401, and ko reports a helper it could not
/// run for the base image as a build error.
const CREDENTIAL_PATTERNS: (FailClass, &[&str]) = (
    FailClass::Credentials,
    &["error getting credentials", "failed to resolve credential", "failed to decode config file"],
);

/// Registry and transport wording every Go push tool shares, in priority order, after the
/// tool's own patterns: the first class whose pattern the deciding line holds.
const PATTERNS: [(FailClass, &[&str]); 10] = [
    // go-containerregistry's name checks (ko, crane) and oras's, all before any request.
    (
        FailClass::InvalidName,
        &[
            "repository can only contain the characters",
            "could not parse reference",
            "invalid reference: invalid repository",
            "repository name must be lowercase",
        ],
    ),
    // go-containerregistry's and oras's checks of a `WWW-Authenticate` realm, before they
    // follow it (docs/registry-topologies.md): ggcr's pkg/v1/remote/transport/bearer.go
    // (v0.21.4 on; its token-server redirect check from v0.21.6), oras-go's
    // registry/remote/auth/client.go validateRealm (v2.6.2 on, in oras v1.3.3; reworded by v1.3.5).
    (
        FailClass::RealmRefused,
        &[
            "invalid realm in www-authenticate",
            "refusing token-server redirect",
            "uses http but registry was contacted over https",
            "uses unsupported scheme",
            // v2.6.2: "… is a loopback, link-local, private, or unspecified address"; later
            // (oras v1.3.5): "…, unspecified, or carrier-grade NAT address".
            "is a loopback, link-local, private,",
        ],
    ),
    // The scheme mismatches in Go's words: its TLS client at a plain-HTTP server, and its TLS
    // server's answer to a plain request (docs/registry-topologies.md).
    (
        FailClass::Tls,
        &[
            "x509:",
            "tls:",
            "certificate signed by unknown authority",
            "certificate is not valid",
            "server gave HTTP response to HTTPS client",
            "Client sent an HTTP request to an HTTPS server",
        ],
    ),
    // The object stores' refusals after a blob redirect, in S3's and Azure Storage's words
    // (docs/storage-and-quirks.md); before `denied`, as they come with a 403.
    (
        FailClass::StorageRefused,
        &[
            "Only one auth mechanism allowed",
            "Request has expired",
            "SignatureDoesNotMatch",
            "Signature not valid in the specified time frame",
            "AuthenticationFailed",
        ],
    ),
    // Distribution's words for an operation the registry does not take (docs/storage-and-quirks.md).
    (FailClass::Unsupported, &["UNSUPPORTED", "MANIFEST_INVALID", "413 Request Entity Too Large", "status code 413"]),
    (
        FailClass::NameUnknown,
        &["NAME_UNKNOWN", "name unknown", "does not exist in the registry", "repository name not known"],
    ),
    // ECR's refusal to overwrite a tag (TAG_INVALID, aws-ecr-wire-reference §7.3): its words,
    // not the code, which distribution also uses for a tag that does not match the manifest.
    (FailClass::TagImmutable, &["cannot be overwritten because the repository is immutable"]),
    (
        FailClass::Denied,
        &["DENIED", "denied:", "403 Forbidden", "status code 403", "AccessDenied", "not authorized to perform"],
    ),
    (
        FailClass::Unauthorized,
        &[
            "UNAUTHORIZED",
            "unauthorized",
            "401 Unauthorized",
            "status code 401",
            "authentication required",
            "no basic auth credentials",
        ],
    ),
    // `Bad Gateway`: the gateway's answer to a CONNECT where nothing listens, which a client
    // without a proxy meets as `connection refused`.
    (
        FailClass::Network,
        &[
            "proxyconnect",
            "dial tcp",
            "connection refused",
            "no such host",
            "i/o timeout",
            "connection reset",
            "EOF",
            "Bad Gateway",
        ],
    ),
];

pub(crate) fn classify(e: &Evidence) -> Verdict {
    let line = deciding_line(e.output);
    // Even a pass is not the cell's own when it used someone else's credentials.
    if !e.foreign_keys.is_empty() {
        let detail = format!(
            "infra-error: the cell leaked: {} signed AWS requests with access key id(s) {} that the cell was not given (not minted for it, not set by its scenario); find where the tool read them (a file or variable outside the cell)",
            e.tool,
            e.foreign_keys.join(", ")
        );
        return Verdict { outcome: Outcome::InfraError, class: None, detail };
    }
    if let (Some(0), false, Ok(digest)) = (e.exit_code, e.timed_out, &e.fetched_back) {
        let done = if e.source.is_some() { "copied" } else { "pushed" };
        return Verdict { outcome: Outcome::Pass, class: None, detail: format!("{done} and fetched back {digest}") };
    }
    let tool = e.tool;
    if let Some(fault) = infra_fault(e) {
        let what = match (e.timed_out, e.exit_code) {
            (true, _) => format!("{tool} did not finish in time"),
            (false, Some(code)) => format!("{tool} exited {code}"),
            (false, None) => format!("{tool} was killed"),
        };
        return Verdict {
            outcome: Outcome::InfraError,
            class: None,
            detail: format!("infra-error: {fault}; {what}: {}", line.unwrap_or("(no output)")),
        };
    }
    if e.timed_out {
        return fail(
            FailClass::Timeout,
            format!("{tool} did not finish in time; last line: {}", line.unwrap_or("(no output)")),
        );
    }
    if e.exit_code == Some(0) {
        let why = e.fetched_back.as_ref().err().map(ToString::to_string).unwrap_or_default();
        return fail(FailClass::Other, format!("{tool} exited 0 but what it pushed could not be fetched back: {why}"));
    }
    let exit = e.exit_code.map_or("was killed".to_string(), |c| format!("exited {c}"));
    if let Some(line) = line {
        let own =
            e.patterns.iter().map(|(class, patterns)| (*class, patterns.iter().any(|p| line.contains(p.as_str()))));
        let shared = |list: &'static [(FailClass, &[&str])]| {
            list.iter().map(|(class, patterns)| (*class, patterns.iter().any(|p| line.contains(p))))
        };
        // Credentials first, then the tool's own wording, then the wording every tool shares.
        let decided = shared(std::slice::from_ref(&CREDENTIAL_PATTERNS))
            .chain(own)
            .chain(shared(&PATTERNS))
            .find_map(|(class, hit)| hit.then_some(class));
        if let Some(class) = decided {
            return fail(class, format!("{tool} {exit}: {line}"));
        }
    }
    let quoted = line.unwrap_or("(no error line)");
    if let Some(answer) = deciding_failure(e.records, e.registry, e.source) {
        return fail(class_from_record(answer), format!("{tool} {exit}: {quoted} (gateway: {})", shown(answer)));
    }
    fail(FailClass::Other, format!("{tool} {exit}: {quoted}"))
}

/// The harness's own failure among the evidence, as `<service> <what happened>`.
fn infra_fault(e: &Evidence) -> Option<String> {
    if let Err(NotFetched::Unreachable(why)) = &e.fetched_back {
        return Some(why.clone());
    }
    if let Some(r) = e.records.iter().find(|r| r.infra.is_some()) {
        return Some(format!(
            "{} (answering {} {}{})",
            r.infra.as_deref().unwrap_or_default(),
            r.method,
            r.host,
            r.path
        ));
    }
    // The cell's files and the world's storage live on the harness's disk: a tool that could not
    // write to it (its build, a registry's backend) failed for the machine, not for itself.
    if e.output.contains("no space left on device") {
        return Some("the machine's disk is full (no space left on device); free space and run again".into());
    }
    (!e.unreachable.is_empty()).then(|| e.unreachable.join("; "))
}

fn fail(class: FailClass, detail: String) -> Verdict {
    Verdict { outcome: Outcome::Fail, class: Some(class), detail }
}

/// The tool's own error line: the last `Error:` line (cobra's, which ko, crane and oras all
/// print), else the last line mentioning an error, else the last non-empty line.
pub(crate) fn deciding_line(output: &str) -> Option<&str> {
    let lines: Vec<&str> = output.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
    lines
        .iter()
        .rev()
        .find(|l| l.starts_with("Error:"))
        .or_else(|| lines.iter().rev().find(|l| l.to_ascii_lowercase().contains("error")))
        .or(lines.last())
        .copied()
}

/// The last request to the registry (or a copy's `source`) that failed: the answer the push
/// or copy ended on. A 404 to a
/// HEAD is how clients ask whether a blob or manifest exists, so it decides only when nothing
/// else failed (tools push blobs in parallel: an existence check may come after the refusal).
/// A handshake the client reset is not an answer (it gave up on a spare connection), and
/// neither is a refusal from another host (a token service, the gateway's unknown-host 403).
/// The verdict's class and the diagnosis both read this one record.
pub(crate) fn deciding_failure<'a>(records: &'a [Record], registry: &str, source: Option<&str>) -> Option<&'a Record> {
    let failures = || {
        records.iter().rev().filter(|r| failed(r)).filter(|r| {
            let either = std::iter::once(registry).chain(source);
            either.into_iter().any(|host| ko_matrix_emulators::dockerhub::same_registry(host, &r.host))
                && r.method != "CONNECT"
                && r.method != "TLS"
        })
    };
    failures().find(|r| !(r.method == "HEAD" && r.status == 404)).or_else(|| failures().next())
}

/// A request that got no answer (status 0: a connection that closed, a failed handshake) or
/// an error status.
pub(crate) fn failed(r: &Record) -> bool {
    r.status == 0 || r.status >= 400
}

/// How the gateway notes a plain request its HTTPS site refused (emulators' gateway/sites.rs).
pub(crate) const SCHEME_MISMATCH: &str = "plain HTTP to an HTTPS registry";

/// When the tool's text says nothing recognisable, the registry's deciding answer may.
fn class_from_record(r: &Record) -> FailClass {
    if r.note.as_deref().is_some_and(|n| n.starts_with(SCHEME_MISMATCH)) {
        return FailClass::Tls;
    }
    match r.status {
        401 => FailClass::Unauthorized,
        403 => FailClass::Denied,
        404 => FailClass::NameUnknown,
        405 | 413 => FailClass::Unsupported,
        // No HTTP answer (a connection that closed), or a server error.
        _ => FailClass::Network,
    }
}

fn shown(r: &Record) -> String {
    format!(
        "{} {}{} → {}{}",
        r.method,
        r.host,
        r.path,
        r.status,
        r.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(host: &str, status: u16, note: Option<&str>) -> Record {
        Record {
            host: host.into(),
            method: "POST".into(),
            path: "/v2/app/blobs/uploads/".into(),
            status,
            at_ms: 1,
            note: note.map(String::from),
            infra: None,
            auth: None,
        }
    }

    fn ko() -> &'static crate::tool::Tool {
        crate::tool::shorthand()
    }

    fn not_pushed() -> Result<String, NotFetched> {
        Err(NotFetched::Missing("ko failed".into()))
    }

    fn verdict(exit: Option<i32>, output: &str, records: &[Record]) -> Verdict {
        classify(&Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: exit,
            timed_out: false,
            output,
            registry: "basic.ko-matrix.test",
            source: None,
            records,
            fetched_back: not_pushed(),
            unreachable: &[],
            foreign_keys: &[],
        })
    }

    #[test]
    fn a_pass_needs_exit_zero_and_the_manifest_back() {
        let ok = Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: Some(0),
            timed_out: false,
            output: "",
            registry: "basic.ko-matrix.test",
            source: None,
            records: &[],
            fetched_back: Ok("sha256:ab".into()),
            unreachable: &[],
            foreign_keys: &[],
        };
        assert_eq!(classify(&ok).outcome, Outcome::Pass);
        let missing = Evidence { fetched_back: Err(NotFetched::Missing("404 from the registry".into())), ..ok };
        let v = classify(&missing);
        assert_eq!((v.outcome, v.class), (Outcome::Fail, Some(FailClass::Other)));
        assert!(v.detail.contains("404 from the registry"));
    }

    #[test]
    fn registry_limits_and_object_store_refusals_have_classes_of_their_own() {
        let cases = [
            ("Error: PATCH https://r/v2/a/blobs/uploads/u?_state=x: UNSUPPORTED: The operation is unsupported.", FailClass::Unsupported),
            ("Error: PUT https://r/v2/a/manifests/latest: MANIFEST_INVALID: manifest invalid", FailClass::Unsupported),
            ("Error: GET https://prod-us-east-1-starport-layer-bucket.s3.us-east-1.amazonaws.com/x?X-Amz-Signature=s: unexpected status code 400 Bad Request: <Error><Code>InvalidArgument</Code><Message>Only one auth mechanism allowed; only the X-Amz-Algorithm query parameter, Signature query string parameter or the Authorization header should be specified</Message></Error>", FailClass::StorageRefused),
            ("Error: GET https://s3/x: unexpected status code 403 Forbidden: <Error><Code>AccessDenied</Code><Message>Request has expired</Message></Error>", FailClass::StorageRefused),
        ];
        for (line, class) in cases {
            assert_eq!(verdict(Some(1), line, &[]).class, Some(class), "{line}");
        }
        let refused = record("basic.ko-matrix.test", 405, Some("quirk: chunked uploads refused"));
        assert_eq!(verdict(Some(1), "Error: something unrecognisable", &[refused]).class, Some(FailClass::Unsupported));
    }

    #[test]
    fn a_refused_realm_is_named_in_each_clients_words_even_after_a_401() {
        // The first 401 carried the realm the client then refused to follow.
        let challenge = record("harbor.ko-matrix.test", 401, None);
        let lines = [
            // oras v1.3.3–v1.3.5 (oras-go registry/remote/auth/client.go validateRealm, two wordings)
            "Error: failed to init auth: bearer realm host \"10.89.1.2\" is a loopback, link-local, private, or unspecified address",
            "Error: HEAD \"https://r/v2/a/manifests/latest\": bearer realm host \"10.90.3.230\" is a loopback, link-local, private, unspecified, or carrier-grade NAT address",
            "Error: bearer realm \"ftp://10.89.1.2/service/token\" uses unsupported scheme \"ftp\"",
            "Error: bearer realm \"http://gitlab.ko-matrix.test/jwt/auth\" uses http but registry was contacted over https",
            // go-containerregistry v0.21.4 on (pkg/v1/remote/transport/bearer.go)
            "Error: invalid realm in www-authenticate: realm host \"10.89.1.2\" is a private or link-local address",
            "Error: refusing token-server redirect to \"http://10.89.1.2/token\": realm host \"10.89.1.2\" is a private or link-local address",
        ];
        for line in lines {
            assert_eq!(
                verdict(Some(1), line, std::slice::from_ref(&challenge)).class,
                Some(FailClass::RealmRefused),
                "{line}"
            );
        }
    }

    #[test]
    fn a_build_failure_is_a_class_of_the_tool_that_builds() {
        let line = "Error: error building \"ko://example.com/app\": build: go build: exit status 1";
        let crane = crate::tool::by_name("crane").unwrap();
        let by_crane = classify(&Evidence {
            tool: "crane",
            patterns: crane.failure_patterns(),
            exit_code: Some(1),
            timed_out: false,
            output: line,
            registry: "basic.ko-matrix.test",
            source: None,
            records: &[],
            fetched_back: not_pushed(),
            unreachable: &[],
            foreign_keys: &[],
        });
        assert_eq!(by_crane.class, Some(FailClass::Other), "crane builds nothing: {by_crane:?}");
        assert!(by_crane.detail.starts_with("crane exited 1: "), "{}", by_crane.detail);
        assert_eq!(verdict(Some(1), line, &[]).class, Some(FailClass::Build));
    }

    #[test]
    fn ko_error_lines_decide_the_class() {
        let cases = [
            ("Error: failed to publish images: error publishing ko://example.com/app: POST https://basic.ko-matrix.test/v2/app/blobs/uploads/: UNAUTHORIZED: authentication required; [map[Action:push Class: Name:app Type:repository]]", FailClass::Unauthorized),
            ("Error: failed to publish images: error publishing ko://x: HEAD https://1.dkr.ecr.us-east-1.amazonaws.com/v2/app/blobs/sha256:1: unexpected status code 403 Forbidden (HEAD responses have no body, use GET for details)", FailClass::Denied),
            ("Error: failed to publish images: PUT https://r/v2/app/manifests/latest: NAME_UNKNOWN: The repository with name 'app' does not exist in the registry with id '123456789012'", FailClass::NameUnknown),
            ("Error: PUT https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/latest: TAG_INVALID: The image tag 'latest' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.", FailClass::TagImmutable),
            ("Error: failed to publish images: Get \"https://basic.ko-matrix.test/v2/\": tls: failed to verify certificate: x509: certificate signed by unknown authority", FailClass::Tls),
            ("Error: failed to publish images: Get \"https://basic.ko-matrix.test/v2/\": proxyconnect tcp: dial tcp 127.0.0.1:1: connect: connection refused", FailClass::Network),
            ("Error: error building \"ko://example.com/app\": build: go build: exit status 1: ./main.go:3:1: syntax error", FailClass::Build),
            // Names refused before any request, in ggcr's (ko, crane) and oras's words.
            ("Error: error creating publisher: failed to parse \"ghcr.io/Octo-Org/app\" as repository: repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Octo-Org/app", FailClass::InvalidName),
            ("Error: could not parse reference: ghcr.io/Octo-Org/app", FailClass::InvalidName),
            ("Error: \"ghcr.io/Octo-Org/app:latest\": invalid reference: invalid repository \"Octo-Org/app\"", FailClass::InvalidName),
            // ghcr's refusals: a token endpoint that does not know the token, a token without write.
            ("Error: GET https://ghcr.io/token?scope=repository%3Ao%2Fapp%3Apush%2Cpull&service=ghcr.io: DENIED: denied", FailClass::Denied),
            ("Error: POST https://ghcr.io/v2/o/app/blobs/uploads/: DENIED: permission_denied: The token provided does not match expected scopes.", FailClass::Denied),
            ("Error: failed to publish images: error publishing: something nobody expected", FailClass::Other),
            // A helper's failure is the tool's own, even when the helper quotes a registry's answer.
            ("Error: failed to publish images: error getting credentials - err: exec: \"docker-credential-desktop\": executable file not found in $PATH, out: ``", FailClass::Credentials),
            ("Error: failed to publish images: error getting credentials - err: exit status 1, out: `GetAuthorizationToken 401 Unauthorized`", FailClass::Credentials),
            ("Error: error building \"ko://example.com/app\": fetching base image: error getting credentials - err: exec: \"docker-credential-desktop\": executable file not found in $PATH, out: ``", FailClass::Credentials),
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
        let v = verdict(
            Some(1),
            "Error: failed to publish images: something odd",
            &[record("basic.ko-matrix.test", 202, None), record("basic.ko-matrix.test", 401, None)],
        );
        assert_eq!(v.class, Some(FailClass::Unauthorized), "an unrecognisable line with a 401 record: {v:?}");
        assert!(v.detail.ends_with("(gateway: POST basic.ko-matrix.test/v2/app/blobs/uploads/ → 401)"), "{}", v.detail);
        // Another host's refusal (the gateway's unknown-host 403) is not the registry's answer.
        let v =
            verdict(Some(1), "panic: runtime error", &[record("evil.example.com", 403, Some("unknown host: refused"))]);
        assert_eq!(v.class, Some(FailClass::Other), "{v:?}");
        let v = verdict(Some(2), "panic: runtime error", &[record("basic.ko-matrix.test", 401, None)]);
        assert_eq!(v.class, Some(FailClass::Unauthorized));
    }

    // They used to disagree: the class took the last failed record of any kind (here the
    // unknown host's 403, read as `network`), the diagnosis the registry's refusal.
    #[test]
    fn the_class_and_the_diagnosis_read_the_same_answer() {
        let registry = "basic.ko-matrix.test";
        let mut put = record(registry, 403, None);
        (put.method, put.path) = ("PUT".into(), "/v2/app/manifests/latest".into());
        put.auth = Some("Bearer".into());
        let mut exists = record(registry, 404, None);
        (exists.method, exists.path) = ("HEAD".into(), "/v2/app/blobs/sha256:1".into());
        let mut reset = record(registry, 0, Some("handshake failed: Connection reset by peer (os error 104)"));
        reset.method = "TLS".into();
        let elsewhere = record("evil.example.com", 403, Some("unknown host: refused"));
        let records = [put, exists, reset, elsewhere];

        let v = verdict(Some(1), "panic: something odd", &records);
        assert_eq!(v.class, Some(FailClass::Denied), "{v:?}");
        assert!(
            v.detail.ends_with("(gateway: PUT basic.ko-matrix.test/v2/app/manifests/latest → 403)"),
            "{}",
            v.detail
        );
        let facts = crate::diagnosis::Facts {
            tool: "ko",
            registry,
            source: None,
            verdict: &v,
            line: Some("panic: something odd"),
            records: &records,
        };
        let said = crate::diagnosis::diagnose(&facts).unwrap_or_default();
        assert!(said.contains("403"), "the diagnosis explains the same 403: {said}");
    }

    #[test]
    fn timeouts_and_kills() {
        let e = Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: None,
            timed_out: true,
            output: "2024/01/01 Building example.com/app for linux/amd64",
            registry: "basic.ko-matrix.test",
            source: None,
            records: &[],
            fetched_back: not_pushed(),
            unreachable: &[],
            foreign_keys: &[],
        };
        let v = classify(&e);
        assert_eq!(v.class, Some(FailClass::Timeout));
        assert!(v.detail.ends_with("Building example.com/app for linux/amd64"));
    }

    // Evidence as recorded when the basic registry was killed between cells (ko v0.15.1):
    // ko ends on the gateway's 502, whose text alone would read as `fail(network)`.
    #[test]
    fn an_answer_the_gateway_made_is_infra_error_naming_the_service() {
        let line = "Error: failed to publish images: error publishing ko://example.com/ko-matrix-app: writing sbom: GET https://basic.ko-matrix.test/v2/: unexpected status code 502 Bad Gateway";
        let output =
            format!("2024/01/01 00:00:00 Publishing basic.ko-matrix.test/cells/registry/basic-auths/v0.15.1\n{line}\n");
        let mut gateway_made = record("basic.ko-matrix.test", 502, None);
        (gateway_made.method, gateway_made.path) = ("GET".into(), "/v2/".into());
        gateway_made.infra = Some("registry (basic flavour) 127.0.0.1:45481 unreachable: client error (Connect): tcp connect error: Connection refused (os error 111)".into());
        let records = [record("basic.ko-matrix.test", 200, None), gateway_made];
        let v = verdict(Some(1), &output, &records);
        assert_eq!((v.outcome, v.class), (Outcome::InfraError, None), "{v:?}");
        assert_eq!(
            v.detail,
            format!("infra-error: registry (basic flavour) 127.0.0.1:45481 unreachable: client error (Connect): tcp connect error: Connection refused (os error 111) (answering GET basic.ko-matrix.test/v2/); ko exited 1: {line}")
        );

        // The same 502 as the registry's own answer (no infra mark) is ko's evidence.
        let plain = [record("basic.ko-matrix.test", 502, None)];
        assert_eq!(
            verdict(Some(1), "Error: failed to publish images: something odd", &plain).class,
            Some(FailClass::Network)
        );
    }

    #[test]
    fn a_full_disk_is_the_machines_failure_not_the_tools() {
        let output = "Error: failed to publish images: error building \"ko://example.com/app\": build: mkdir /tmp/ko-matrix-run-x/cells/cell-y/tmp/ko1: no space left on device";
        let verdict = verdict(Some(1), output, &[]);
        assert_eq!(verdict.outcome, Outcome::InfraError, "{verdict:?}");
        assert!(verdict.detail.starts_with("infra-error: the machine's disk is full"), "{}", verdict.detail);
    }

    #[test]
    fn an_ecr_front_whose_backend_failed_is_infra_error() {
        // As recorded with the ECR backend answering 500 (ko v0.15.1); the text alone says 500.
        let mut front = record("123456789012.dkr.ecr.us-east-1.amazonaws.com", 500, None);
        (front.method, front.path) = ("HEAD".into(), "/v2/app/manifests/latest".into());
        front.infra = Some("ECR front backend 127.0.0.1:38245 answered 500 Internal Server Error".into());
        let output = "Error: failed to publish images: error publishing ko://example.com/ko-matrix-app: HEAD https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/latest: unexpected status code 500 Internal Server Error (HEAD responses have no body, use GET for details)";
        let v = verdict(Some(1), output, &[front]);
        assert_eq!(v.outcome, Outcome::InfraError);
        assert!(v.detail.starts_with("infra-error: ECR front backend 127.0.0.1:38245 answered 500 Internal Server Error (answering HEAD 123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/latest); ko exited 1: "), "{}", v.detail);
    }

    #[test]
    fn a_fetch_back_that_cannot_reach_the_registry_is_infra_error() {
        let e = Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: Some(0),
            timed_out: false,
            output: "basic.ko-matrix.test/cells/app@sha256:ab",
            registry: "basic.ko-matrix.test",
            source: None,
            records: &[],
            fetched_back: Err(NotFetched::Unreachable("registry (basic flavour) 127.0.0.1:41234 unreachable: GET https://127.0.0.1:41234/v2/cells/app/manifests/sha256:ab: error sending request".into())),
            unreachable: &[],
            foreign_keys: &[],
        };
        let v = classify(&e);
        assert_eq!((v.outcome, v.class), (Outcome::InfraError, None));
        assert!(
            v.detail.starts_with("infra-error: registry (basic flavour) 127.0.0.1:41234 unreachable: GET"),
            "{}",
            v.detail
        );
    }

    // Evidence as recorded when the base-image registry was killed (ko v0.15.1): ko never
    // reaches the gateway (it pulls the base from loopback directly) and its line would read
    // as `fail(build)`.
    #[test]
    fn a_service_found_down_after_a_failure_is_infra_error() {
        let down = ["base-image registry 127.0.0.1:46851 unreachable: error sending request for url (http://127.0.0.1:46851/v2/): client error (Connect): tcp connect error: Connection refused (os error 111)".to_string()];
        let output = "Error: failed to publish images: error building \"ko://example.com/ko-matrix-app\": fetching base image: pulling 127.0.0.1:46851/ko-matrix/base@sha256:57038ae4359e74f7d9517459e502ffbe8c8d12de6ecd7f44bccd823675972894: Get \"https://127.0.0.1:46851/v2/\": dial tcp 127.0.0.1:46851: connect: connection refused; Get \"http://127.0.0.1:46851/v2/\": dial tcp 127.0.0.1:46851: connect: connection refused";
        assert_eq!(
            verdict(Some(1), output, &[]).class,
            Some(FailClass::Build),
            "without the probe it would read as ko's failure"
        );
        let failed = Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: Some(1),
            timed_out: false,
            output,
            registry: "basic.ko-matrix.test",
            source: None,
            records: &[],
            fetched_back: not_pushed(),
            unreachable: &down,
            foreign_keys: &[],
        };
        let v = classify(&failed);
        assert_eq!((v.outcome, v.class), (Outcome::InfraError, None));
        assert!(v.detail.starts_with("infra-error: base-image registry 127.0.0.1:46851 unreachable"), "{}", v.detail);
        let timed_out = Evidence { exit_code: None, timed_out: true, ..failed };
        assert!(
            classify(&timed_out).detail.contains("; ko did not finish in time: "),
            "{}",
            classify(&timed_out).detail
        );
        // ko that got its image through regardless passed: that is what ko did.
        let passed =
            Evidence { exit_code: Some(0), timed_out: false, fetched_back: Ok("sha256:ab".into()), ..timed_out };
        assert_eq!(classify(&passed).outcome, Outcome::Pass);
    }

    #[test]
    fn credentials_from_outside_the_cell_void_the_verdict() {
        let mut signed = record("api.ecr.us-east-1.amazonaws.com", 200, None);
        signed.auth = Some("AWS4-HMAC-SHA256 AKIAREALHOSTKEY".into());
        let mut own = record("api.ecr.us-east-1.amazonaws.com", 200, None);
        own.auth = Some("AWS4-HMAC-SHA256 ASIAKOMATRIXCELL".into());
        let records = [own, signed.clone(), signed];
        let foreign = foreign_key_ids(&records, |id| id.starts_with("ASIAKOMATRIX"));
        assert_eq!(foreign, ["AKIAREALHOSTKEY"], "once each, the cell's own key vouched for");
        let passed = Evidence {
            tool: "ko",
            patterns: ko().failure_patterns(),
            exit_code: Some(0),
            timed_out: false,
            output: "",
            registry: "basic.ko-matrix.test",
            source: None,
            records: &records,
            fetched_back: Ok("sha256:ab".into()),
            unreachable: &[],
            foreign_keys: &foreign,
        };
        let v = classify(&passed);
        assert_eq!((v.outcome, v.class), (Outcome::InfraError, None));
        assert!(
            v.detail.starts_with(
                "infra-error: the cell leaked: ko signed AWS requests with access key id(s) AKIAREALHOSTKEY"
            ),
            "{}",
            v.detail
        );
    }

    #[test]
    fn the_deciding_line_prefers_cobras_error() {
        assert_eq!(
            deciding_line("a\nsome error happened\nError: the real one\nUsage: ko build\n"),
            Some("Error: the real one")
        );
        assert_eq!(deciding_line("a\nan error here\nlast"), Some("an error here"));
        assert_eq!(deciding_line("\n\n"), None);
    }
}
