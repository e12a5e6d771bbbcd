//! One plain sentence for a cell that failed, saying why in terms of what went over the
//! wire. A table of rules reads the cell's evidence — the gateway's record, the tool's exit
//! and its deciding line — and never the version or the scenario's name, so the same rule
//! explains the same behaviour in any tool, version or scenario. Pure.

use crate::outcome::{failed, FailClass, Outcome, Verdict};
use ko_matrix_emulators::gateway::Record;

/// What a diagnosis may read.
pub(crate) struct Facts<'a> {
    pub tool: &'a str,
    /// The host the tool pushed (or copied) to.
    pub registry: &'a str,
    /// A copy's source host.
    pub source: Option<&'a str>,
    pub verdict: &'a Verdict,
    /// The tool's deciding line.
    pub line: Option<&'a str>,
    pub records: &'a [Record],
}

/// The sentence for a failed cell; `None` for other outcomes, and when no rule applies. A
/// rule's sentence that does not name a cause the refusal names in its own words (an expiry
/// read as a missing permission) does not apply; when none agrees, the refusal is quoted.
pub(crate) fn diagnose(f: &Facts) -> Option<String> {
    if f.verdict.outcome != Outcome::Fail {
        return None;
    }
    let causes = refusal_causes(&f.verdict.detail);
    RULES
        .iter()
        .filter_map(|rule| rule(f))
        .find(|sentence| causes.iter().all(|cause| cause.is_named_in(sentence)))
        .or_else(|| in_its_own_words(&f.verdict.detail, &causes))
}

/// A cause a refusal can name in its own words; a diagnosis of that refusal must name it too.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    Expired,
    NotAuthorized,
    NotFound,
    Invalid,
}

impl Cause {
    const ALL: [Cause; 4] = [Cause::Expired, Cause::NotAuthorized, Cause::NotFound, Cause::Invalid];

    /// The words that name it, in a refusal or in a diagnosis (lower case).
    fn words(self) -> &'static [&'static str] {
        match self {
            Cause::Expired => &["expired"],
            Cause::NotAuthorized => &["not authorized to perform"],
            // oras's `basic credential not found` is the same cause as "found none".
            Cause::NotFound => &["not found", "does not exist", "found none"],
            Cause::Invalid => &["invalid"],
        }
    }

    pub fn is_named_in(self, text: &str) -> bool {
        let text = text.to_ascii_lowercase();
        self.words().iter().any(|w| text.contains(w))
    }
}

/// The causes a cell's refusal names in its own words. `detail` is the cell's detail: the tool's
/// deciding line, perhaps the gateway's record (`(gateway: …)`) and AWS's refusal (`[AWS: …]`).
/// Of the line only what follows its last URL is the answer's message: a URL holds repository
/// and scenario names (`…/expired-token/…`), not causes.
pub fn refusal_causes(detail: &str) -> Vec<Cause> {
    let refusal = Refusal::read(detail);
    Cause::ALL
        .into_iter()
        .filter(|c| c.is_named_in(refusal.message) || refusal.aws.is_some_and(|aws| c.is_named_in(aws)))
        .collect()
}

/// A cell's refusal in its own words, out of its detail: the answer's message (what follows
/// the deciding line's last URL, without the gateway's record) and AWS's refusal, if any.
struct Refusal<'a> {
    message: &'a str,
    aws: Option<&'a str>,
}

impl Refusal<'_> {
    fn read(detail: &str) -> Refusal<'_> {
        let (line, aws) = match detail.split_once(" [AWS: ") {
            Some((line, aws)) => (line, Some(aws.trim_end_matches(']'))),
            None => (detail, None),
        };
        Refusal { message: own_message(line.split(" (gateway: ").next().unwrap_or_default()), aws }
    }
}

/// The answer's own message in a tool's line: what follows its last `http(s)://…` (the whole
/// line when it has none), without the separator (`DENIED: Your authorization token …`).
fn own_message(line: &str) -> &str {
    let after = match ["https://", "http://"].iter().filter_map(|scheme| line.rfind(scheme)).max() {
        Some(start) => {
            let rest = &line[start..];
            &rest[rest.find(|c: char| c.is_whitespace() || c == '"').unwrap_or(rest.len())..]
        }
        None => line,
    };
    after.trim_start_matches([':', '"', ' '])
}

/// The refusal's own message, when no rule's sentence named its cause.
fn in_its_own_words(detail: &str, causes: &[Cause]) -> Option<String> {
    if causes.is_empty() {
        return None;
    }
    let refusal = Refusal::read(detail);
    Some(match refusal.aws {
        Some(aws) if causes.iter().any(|c| c.is_named_in(aws)) => {
            format!("AWS refused the request in its own words: {aws}")
        }
        _ => format!("The refusal gives its own cause: {}", refusal.message),
    })
}

const RULES: [fn(&Facts) -> Option<String>; 19] = [
    credentials,
    invalid_name,
    realm_refused,
    timeout,
    injected,
    refused_mount,
    quirk,
    unknown_host,
    tls,
    nothing_listens,
    ecr,
    entra,
    identity_refused,
    token_server,
    anonymous_token,
    copy_read_refused,
    token_scope,
    registry_answer,
    build,
];

/// ECR registry hosts: `<account>.dkr.ecr.<region>.amazonaws.com`.
fn is_ecr_registry(host: &str) -> bool {
    host.contains(".dkr.ecr.")
}

fn is_ecr_api(host: &str) -> bool {
    host.starts_with("api.ecr.")
}

/// A request to a registry's token endpoint (`/token`, gcr.io's `/v2/token`, ACR's `/oauth2/token`,
/// Harbor's `/service/token`, GitLab's `/jwt/auth`, Quay's `/v2/auth`, Artifactory's
/// `/artifactory/api/docker/<key>/v2/token`).
fn is_token_request(r: &Record) -> bool {
    let path = r.path.split('?').next().unwrap_or_default();
    let known = ["/token", "/v2/token", "/oauth2/token", "/service/token", "/jwt/auth", "/v2/auth"];
    r.method != "CONNECT"
        && (known.contains(&path) || (path.starts_with("/artifactory/api/docker/") && path.ends_with("/v2/token")))
}

/// Whether a token request carried credentials: an `Authorization`, or the OAuth2 form
/// (`POST`, the refresh token or password in the body).
fn carries_credentials(r: &Record) -> bool {
    r.auth.is_some() || r.method == "POST"
}

/// The registry's answer the push ended on, as the verdict's class read it.
fn last_registry_failure<'a>(f: &Facts<'a>) -> Option<&'a Record> {
    crate::outcome::deciding_failure(f.records, f.registry, f.source)
}

fn credentials(f: &Facts) -> Option<String> {
    if f.verdict.class != Some(FailClass::Credentials) {
        return None;
    }
    let line = f.line.unwrap_or_default();
    let purpose = if line.contains("base image") { " for the base image" } else { "" };
    if let Some(helper) = missing_program(line) {
        return Some(format!("The credential helper `{helper}` named in the docker config was not found on PATH (not installed); {} failed while resolving credentials{purpose}.", f.tool));
    }
    if let Some((_, rest)) = line.split_once("failed to decode config file at ") {
        // `<path>: invalid config format: EOF`: what the parser said, without the cell's path.
        let said = rest.split_once(": ").map_or("", |(_, said)| said);
        return Some(format!(
            "{} could not parse its docker config file ({said}) and stopped before sending a request with credentials.",
            f.tool
        ));
    }
    let said = line.split_once("err: ").map_or(line, |(_, rest)| rest);
    Some(format!("A credential helper failed while {} resolved credentials{purpose}: {said}", f.tool))
}

/// `docker-credential-x` from `exec: "docker-credential-x": executable file not found in $PATH`.
fn missing_program(line: &str) -> Option<&str> {
    let (_, rest) = line.split_once("exec: \"")?;
    let (program, rest) = rest.split_once('"')?;
    rest.contains("not found").then_some(program)
}

fn timeout(f: &Facts) -> Option<String> {
    if f.verdict.class != Some(FailClass::Timeout) {
        return None;
    }
    Some(match f.records.last() {
        Some(r) => format!(
            "{} did not finish within the cell's timeout; its last request was {} {}{} → {}.",
            f.tool, r.method, r.host, r.path, r.status
        ),
        None => format!("{} did not finish within the cell's timeout and made no request.", f.tool),
    })
}

fn injected(f: &Facts) -> Option<String> {
    let note = f.records.iter().filter_map(|r| r.note.as_deref()).find(|n| n.starts_with("injected: "))?;
    Some(format!(
        "The gateway injected a fault ({}) and {} did not recover from it.",
        note.trim_start_matches("injected: "),
        f.tool
    ))
}

/// The deciding answer is one the scenario's `[quirks]` shaped (a real registry's way,
/// docs/storage-and-quirks.md), not a verdict on the credentials the tool sent.
fn quirk(f: &Facts) -> Option<String> {
    let end = last_registry_failure(f)?;
    let note = end.note.as_deref()?.strip_prefix("quirk: ")?;
    Some(format!(
        "The registry answered {} to the {} as the scenario's [quirks] shape it ({note}), as some real registries do, and {} did not work around it.",
        end.status, end.method, f.tool
    ))
}

/// Only when the registry's own answer did not decide the class: tools also probe hosts they
/// can live without (a metadata service), and a refusal there is not why the push failed.
fn unknown_host(f: &Facts) -> Option<String> {
    if !matches!(f.verdict.class, Some(FailClass::Network | FailClass::Other)) {
        return None;
    }
    let r = f
        .records
        .iter()
        .find(|r| r.status == 403 && r.note.as_deref().is_some_and(|n| n.starts_with("unknown host")))?;
    Some(format!(
        "{} tried to reach {}, which is not part of this run; the gateway refused it, so nothing left the machine.",
        f.tool, r.host
    ))
}

/// Only for a TLS failure: clients also reset handshakes they no longer need.
fn tls(f: &Facts) -> Option<String> {
    if f.verdict.class != Some(FailClass::Tls) {
        return None;
    }
    let noted = |start: &str| f.records.iter().rev().find(|r| r.note.as_deref().is_some_and(|n| n.starts_with(start)));
    // The gateway's notes for a scheme mismatch at a site (emulators' gateway/sites.rs).
    if let Some(r) = noted("a TLS hello to a plain-HTTP registry") {
        return Some(format!(
            "{} spoke TLS to {}, which serves plain HTTP only, and did not fall back to plain HTTP: Go reports `server gave HTTP response to HTTPS client`.",
            f.tool, r.host
        ));
    }
    if let Some(r) = noted(crate::outcome::SCHEME_MISMATCH) {
        return Some(format!(
            "{} sent plain HTTP to {}, which serves HTTPS only; its TLS server answered 400 `Client sent an HTTP request to an HTTPS server.`",
            f.tool, r.host
        ));
    }
    let r = noted("handshake failed").filter(|r| r.status == 0)?;
    Some(format!(
        "The TLS handshake with {} failed: {} did not trust the certificate from the run's CA (SSL_CERT_FILE).",
        r.host, f.tool
    ))
}

fn ecr(f: &Facts) -> Option<String> {
    if !is_ecr_registry(f.registry) {
        return None;
    }
    let end = last_registry_failure(f)?;
    let api: Vec<&Record> = f.records.iter().filter(|r| is_ecr_api(&r.host) && r.method != "CONNECT").collect();
    let sts_refusals = f.records.iter().filter(|r| r.host.starts_with("sts.") && failed(r)).count();
    let api_ok = api.iter().any(|r| r.status == 200);
    // ECR's own message (`DENIED: Your authorization token has expired. …`), when the tool quotes it.
    let refusal = own_message(f.line.unwrap_or_default());
    let denial = f
        .verdict
        .detail
        .split_once("[AWS: ")
        .map(|(_, d)| format!(" (AWS: {})", d.trim_end_matches(']')))
        .unwrap_or_default();
    Some(match (api.is_empty(), api_ok, end.status, end.auth.as_deref()) {
        // ECR's own features refuse a token it took, however the tool got it (its own API call
        // or a login step's config.json).
        (_, _, 400, Some(_)) if refusal.contains("cannot be overwritten") => format!("ECR refused to move a tag the repository already holds: its tags are immutable ({refusal})."),
        (_, _, 403, Some(_)) if f.verdict.detail.contains("with an explicit deny in a resource-based policy") => {
            let why = if Cause::NotAuthorized.is_named_in(refusal) { format!(" ({refusal})") } else { denial.clone() };
            format!("The registry took the token, but the repository's policy explicitly denies the principal what its identity policy allows: ECR answered 403{why}.")
        }
        (_, _, 403, Some(_)) if ["ecr:CreateRepository", "ecr:BatchImportUpstreamImage"].iter().any(|a| f.verdict.detail.contains(a)) => {
            let why = if Cause::NotAuthorized.is_named_in(refusal) { format!(" ({refusal})") } else { denial.clone() };
            format!("The registry took the token, but ECR would create the repository itself (a creation template or a pull through cache) and the principal may not: ECR answered 403{why}.")
        }
        (true, _, 401, None) if sts_refusals > 0 => {
            format!("STS refused {sts_refusals} call(s){denial}, so {} had no AWS credentials for ECR; the pushes went out anonymous and ECR answered 401.", f.tool)
        }
        (true, _, 401, None) => format!("No request reached api.ecr.*: {} did not fetch an ECR token; the pushes went out anonymous and ECR answered 401.", f.tool),
        (false, false, _, _) => {
            let status = api.iter().rev().find(|r| failed(r)).map_or(0, |r| r.status);
            format!("Every ECR API call was refused (last: {status}), so {} had no registry token; ECR answered {} to the push.", f.tool, end.status)
        }
        (false, true, 403, _) if Cause::Expired.is_named_in(refusal) => format!("GetAuthorizationToken succeeded, but the registry token expired before the push ended: ECR answered 403 ({refusal}); {} did not fetch a new one.", f.tool),
        (false, true, 403, _) if Cause::NotAuthorized.is_named_in(refusal) => format!("GetAuthorizationToken succeeded, but the principal may log in and not push: ECR answered 403 ({refusal})."),
        (false, true, 403, _) => format!("GetAuthorizationToken succeeded, but the registry answered 403 DENIED: the principal may log in but not push{denial}."),
        (false, true, 401, _) => format!("{} fetched an ECR token, but the registry refused it (401): it expired or belongs to another registry.", f.tool),
        (true, _, 403, Some(_)) => format!("The registry refused the password {} sent without asking the ECR API (403 DENIED): an expired or foreign ECR token, from a login step or a cache.", f.tool),
        (false, true, 404, _) => format!("The repository does not exist and no CREATE_ON_PUSH creation template lets ECR create it on push (NAME_UNKNOWN){denial}."),
        _ => return None,
    })
}

/// The tool would not follow the token realm the registry's challenge named.
fn realm_refused(f: &Facts) -> Option<String> {
    if f.verdict.class != Some(FailClass::RealmRefused) {
        return None;
    }
    Some(format!(
        "{} refused the token realm of the registry's 401 challenge as invalid (plain HTTP for an HTTPS registry, or a private address) and asked for no token.",
        f.tool
    ))
}

/// The tool connected where nothing listens: the registry serves another port or scheme.
fn nothing_listens(f: &Facts) -> Option<String> {
    let r = f.records.iter().rev().find(|r| r.note.as_deref().is_some_and(|n| n.starts_with("nothing listens at")))?;
    let address = r.note.as_deref().unwrap_or_default().trim_start_matches("nothing listens at ");
    Some(format!(
        "{} connected to {address}, where nothing listens: the registry serves another port or scheme (without a proxy the client meets `connection refused`).",
        f.tool
    ))
}

/// The tool refused the repository name: nothing reached the registry.
fn invalid_name(f: &Facts) -> Option<String> {
    if f.verdict.class != Some(FailClass::InvalidName) {
        return None;
    }
    let sent = f
        .records
        .iter()
        .any(|r| ko_matrix_emulators::dockerhub::same_registry(f.registry, &r.host) && r.method != "CONNECT");
    let when = if sent { "" } else { " before sending a request to the registry" };
    Some(format!("{} refused the repository name as invalid{when}: repository names must be lower-case (letters, digits, `._-/`), so an owner written with capitals has to be lowered first.", f.tool))
}

/// A vendor's identity service (Google's OAuth, STS, IAM Credentials, metadata server)
/// refused what the tool asked, and the push then went out without credentials.
fn identity_refused(f: &Facts) -> Option<String> {
    let refused = f.records.iter().rev().find(|r| {
        ko_matrix_emulators::google::identity::is_identity_host(&r.host) && failed(r) && r.method != "CONNECT"
    })?;
    let end = last_registry_failure(f)?;
    if end.auth.is_some() {
        return None;
    }
    let path = refused.path.split('?').next().unwrap_or_default();
    Some(format!(
        "{} answered {} to {} {path}, so {} had no access token from it; the push went out without credentials and {} answered {}.",
        refused.host, refused.status, refused.method, f.tool, f.registry, end.status
    ))
}

/// Entra ID (or Azure's IMDS) refused every token request, so nothing reached ACR's exchange:
/// an ACR helper's failure reaches go-containerregistry as anonymous credentials.
fn entra(f: &Facts) -> Option<String> {
    let azure = |r: &&Record| {
        r.method != "CONNECT"
            && (r.host == ko_matrix_emulators::azure::entra::LOGIN_HOST
                || (r.host == ko_matrix_emulators::azure::entra::IMDS_HOST
                    && r.path.starts_with("/metadata/identity/")))
    };
    let asked: Vec<&Record> = f.records.iter().filter(azure).collect();
    if asked.is_empty()
        || asked.iter().any(|r| !failed(r))
        || f.records.iter().any(|r| r.path.starts_with("/oauth2/exchange") && !failed(r))
    {
        return None;
    }
    let end = last_registry_failure(f)?;
    let last = asked.last().expect("not empty");
    (end.status == 401).then(|| {
        format!(
            "{} refused {} token request(s) (last: {} {}), so {}'s ACR helper had nothing to exchange at /oauth2/exchange; the pushes went out anonymous and the registry answered 401.",
            last.host,
            asked.len(),
            last.status,
            last.path.split('?').next().unwrap_or_default(),
            f.tool
        )
    })
}

fn token_server(f: &Facts) -> Option<String> {
    let r = f.records.iter().rev().find(|r| is_token_request(r) && failed(r))?;
    Some(match (r.status, carries_credentials(r)) {
        // Artifact Registry names the permission the principal lacks.
        (403, true) if f.verdict.detail.contains("denied on resource") => format!("The token server {} accepted the credentials {} sent but refused to grant the push (403 DENIED): the principal may not push there.", r.host, f.tool),
        (_, true) => format!("The token server {} refused the credentials it sent ({}), so {} had no token to push with.", r.host, r.status, f.tool),
        (_, false) => format!("{} found no credentials for {}: the token server {} refused an anonymous request ({}), so it had no token to push with.", f.tool, f.registry, r.host, r.status),
    })
}

/// A token flow without credentials: the token endpoint answered an anonymous request, and
/// the registry refused what that token allowed.
fn anonymous_token(f: &Facts) -> Option<String> {
    let tokens: Vec<&Record> = f.records.iter().filter(|r| is_token_request(r)).collect();
    if tokens.is_empty() || tokens.iter().any(|r| carries_credentials(r) || failed(r)) {
        return None;
    }
    let end = last_registry_failure(f)?;
    (end.status == 401).then(|| {
        format!(
            "The push went out without credentials: {} found none for {}, got a token from {} anonymously, and the registry answered 401 to what that token did not allow.",
            f.tool, f.registry, tokens[0].host
        )
    })
}

/// The registry refused a cross-repository mount (`POST …/blobs/uploads/?mount=…&from=…`) and
/// the tool gave up there instead of uploading the blob.
fn refused_mount(f: &Facts) -> Option<String> {
    let end = last_registry_failure(f)?;
    let query = end.path.split_once('?').map(|(_, q)| q).filter(|q| q.split('&').any(|p| p.starts_with("mount=")))?;
    if end.method != "POST" {
        return None;
    }
    let from = query.split('&').find_map(|p| p.strip_prefix("from=")).unwrap_or("?").replace("%2F", "/");
    let why = end.note.as_deref().map(|n| format!(" ({n})")).unwrap_or_default();
    Some(format!(
        "{} refused the cross-repository mount {} asked for from {from} ({}){why}, and {} stopped there instead of uploading the blob.",
        end.host, f.tool, end.status, f.tool
    ))
}

/// In a copy, a registry refused the tool a read (a manifest or blob it had to copy): the
/// credential the tool sent there does not reach that repository.
fn copy_read_refused(f: &Facts) -> Option<String> {
    f.source?;
    let end = last_registry_failure(f)?;
    let read = matches!(end.method.as_str(), "GET" | "HEAD");
    let path = end.path.split('?').next().unwrap_or_default().strip_prefix("/v2/")?;
    let repository = ["/manifests/", "/blobs/"].iter().find_map(|kind| path.split_once(kind).map(|(name, _)| name))?;
    let sent = match end.auth.as_deref() {
        Some(scheme) => format!("the {scheme} credential {} sent there does not reach it", f.tool),
        None => format!("{} sent no credential there", f.tool),
    };
    (read && matches!(end.status, 401 | 403)).then(|| {
        format!(
            "{} refused {} the read of {repository} ({} to {}): {sent}, so there was nothing to copy.",
            end.host, f.tool, end.status, end.method
        )
    })
}

/// Credentials the token endpoint accepted, and a token that does not cover the push: the
/// registry's 401 (insufficient scope) to a write.
fn token_scope(f: &Facts) -> Option<String> {
    let token = f.records.iter().rev().find(|r| is_token_request(r) && carries_credentials(r) && r.status == 200)?;
    let end = last_registry_failure(f)?;
    let write = matches!(end.method.as_str(), "POST" | "PUT" | "PATCH");
    (end.status == 401 && write).then(|| {
        format!(
            "{} accepted the credentials {} sent and issued a token, but not for pushing: the registry answered 401 to the {} (insufficient scope), so the credential may pull but not push.",
            token.host, f.tool, end.method
        )
    })
}

fn registry_answer(f: &Facts) -> Option<String> {
    let end = last_registry_failure(f)?;
    let tool = f.tool;
    Some(match (end.status, end.auth.as_deref()) {
        (401, None) => format!(
            "The push went out without credentials: {tool} found none for {} and the registry answered 401.",
            f.registry
        ),
        (401, Some("Basic")) => {
            format!("The registry refused the Basic credentials {tool} sent (401): a wrong user or password.")
        }
        (401, Some(scheme)) => format!("The registry refused the {scheme} credentials {tool} sent (401)."),
        (403, _) => {
            format!("The registry answered 403 DENIED to an authenticated {tool}: the account may read but not write.")
        }
        (404, _) => {
            "The repository does not exist and the registry does not create it on push (NAME_UNKNOWN).".to_string()
        }
        (0, _) => format!("The connection to {} closed without an answer and {tool} gave up.", f.registry),
        (status, _) if status >= 500 => format!("The registry answered {status} and {tool} gave up."),
        _ => return None,
    })
}

fn build(f: &Facts) -> Option<String> {
    (f.verdict.class == Some(FailClass::Build)).then(|| {
        format!("{} could not build the image before pushing: {}", f.tool, f.line.unwrap_or("(no error line)"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const ECR: &str = "123456789012.dkr.ecr.us-east-1.amazonaws.com";
    const API: &str = "api.ecr.us-east-1.amazonaws.com";

    fn r(method: &str, host: &str, path: &str, status: u16, auth: Option<&str>, note: Option<&str>) -> Record {
        Record {
            host: host.into(),
            method: method.into(),
            path: path.into(),
            status,
            at_ms: 1,
            note: note.map(String::from),
            infra: None,
            auth: auth.map(String::from),
        }
    }

    fn fail(class: FailClass, detail: &str) -> Verdict {
        Verdict { outcome: Outcome::Fail, class: Some(class), detail: detail.into() }
    }

    fn says(registry: &str, verdict: Verdict, line: &str, records: &[Record]) -> Option<String> {
        diagnose(&Facts {
            tool: crate::tool::shorthand().name(),
            registry,
            source: None,
            verdict: &verdict,
            line: Some(line),
            records,
        })
    }

    // As recorded for oras v1.2.3 × copy/mount-refused-same-registry and crane v0.22.1 ×
    // copy/harbor-one-login-two-projects.
    #[test]
    fn a_copy_ends_at_a_refused_mount_or_a_refused_read() {
        let (basic, harbor) = ("basic.ko-matrix.test", "harbor.example.com");
        let quirk = "quirk: mount refused with 401, as Harbor refuses a token without pull on `from` (goharbor/harbor src/server/middleware/v2auth/access.go)";
        let mount = r(
            "POST",
            basic,
            "/v2/cells/c/blobs/uploads/?mount=sha256:ab&from=source/copy/x",
            401,
            Some("Basic"),
            Some(quirk),
        );
        let records = [r("HEAD", basic, "/v2/cells/c/blobs/sha256:ab", 404, Some("Basic"), None), mount];
        let copy = |registry, line, records: &[Record]| {
            diagnose(&Facts {
                tool: "oras",
                registry,
                source: Some(registry),
                verdict: &fail(FailClass::Unauthorized, line),
                line: Some(line),
                records,
            })
        };
        assert_eq!(
            copy(basic, "Error response from registry: unauthorized: unauthorized to access repository", &records).unwrap(),
            format!("basic.ko-matrix.test refused the cross-repository mount oras asked for from source/copy/x (401) ({quirk}), and oras stopped there instead of uploading the blob.")
        );
        let read = [r("GET", harbor, "/v2/team-a/src/manifests/latest", 401, Some("Bearer"), None)];
        assert_eq!(
            copy(harbor, "Error: fetching: unauthorized", &read).unwrap(),
            "harbor.example.com refused oras the read of team-a/src (401 to GET): the Bearer credential oras sent there does not reach it, so there was nothing to copy."
        );
        // A push is not a copy: the read rule stays out of it.
        let push = says(harbor, fail(FailClass::Unauthorized, "x"), "Error: unauthorized", &read).unwrap();
        assert_eq!(push, "The registry refused the Bearer credentials ko sent (401).");
    }

    // As recorded for ko v0.15.2 × ecr/env-session: no API call, anonymous pushes, ECR's 401.
    #[test]
    fn the_seed_regression_is_a_token_never_fetched() {
        let records = [
            r("CONNECT", ECR, "", 200, None, None),
            r("GET", ECR, "/v2/", 401, None, None),
            r("HEAD", ECR, "/v2/app/manifests/latest", 401, None, None),
        ];
        assert_eq!(
            says(ECR, fail(FailClass::Unauthorized, "ko exited 1: …"), "Error: … 401 Unauthorized", &records).unwrap(),
            "No request reached api.ecr.*: ko did not fetch an ECR token; the pushes went out anonymous and ECR answered 401."
        );
    }

    // As recorded for ko v0.14.0 × quirks/missing-manifest-head-401: the registry answers 401
    // to a HEAD of the tag not yet pushed, with good Basic credentials.
    #[test]
    fn an_answer_a_quirk_shaped_is_not_blamed_on_the_credentials() {
        let basic = "basic.ko-matrix.test";
        let records = [
            r("GET", basic, "/v2/", 200, Some("Basic"), None),
            r(
                "HEAD",
                basic,
                "/v2/app/manifests/latest",
                401,
                Some("Basic"),
                Some("quirk: missing manifest answered 401"),
            ),
        ];
        assert_eq!(
            says(basic, fail(FailClass::Unauthorized, "ko exited 1: …"), "Error: HEAD …: 401 Unauthorized", &records)
                .unwrap(),
            "The registry answered 401 to the HEAD as the scenario's [quirks] shape it (missing manifest answered 401), as some real registries do, and ko did not work around it."
        );
        // Without the note, the same 401 is the credentials'.
        let plain = [records[0].clone(), r("HEAD", basic, "/v2/app/manifests/latest", 401, Some("Basic"), None)];
        assert!(says(basic, fail(FailClass::Unauthorized, "…"), "Error: 401", &plain)
            .unwrap()
            .contains("wrong user or password"));
    }

    #[test]
    fn ecr_rules() {
        let token = r("POST", API, "/", 200, Some("AWS4-HMAC-SHA256 ASIAKEY"), None);
        let denied = [token.clone(), r("PUT", ECR, "/v2/app/manifests/latest", 403, Some("Basic"), None)];
        let detail = "ko exited 1: DENIED [AWS: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:PutImage]";
        assert_eq!(
            says(ECR, fail(FailClass::Denied, detail), "Error: DENIED", &denied).unwrap(),
            "GetAuthorizationToken succeeded, but the registry answered 403 DENIED: the principal may log in but not push (AWS: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:PutImage)."
        );

        // As in faults/ecr-token-expires-mid-push: the token expires between two PATCHes. The
        // refusal's own words decide over the IAM reading of a 403.
        let line = "Error: failed to publish images: error publishing ko://example.com/app: PATCH https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/blobs/uploads/1?_state=REDACTED: DENIED: Your authorization token has expired. Reauthenticate and try again.";
        let expired = [token.clone(), r("PATCH", ECR, "/v2/app/blobs/uploads/1", 403, Some("Basic"), None)];
        assert_eq!(
            says(ECR, fail(FailClass::Denied, &format!("ko exited 1: {line}")), line, &expired).unwrap(),
            "GetAuthorizationToken succeeded, but the registry token expired before the push ended: ECR answered 403 (DENIED: Your authorization token has expired. Reauthenticate and try again.); ko did not fetch a new one."
        );

        let refused = [
            r("POST", API, "/", 400, Some("AWS4-HMAC-SHA256 AKIAUNKNOWN"), None),
            r("HEAD", ECR, "/v2/app/manifests/latest", 401, None, None),
        ];
        assert!(says(ECR, fail(FailClass::Unauthorized, ""), "", &refused)
            .unwrap()
            .starts_with("Every ECR API call was refused (last: 400)"));
        let sts = [
            r("POST", "sts.amazonaws.com", "/", 403, None, None),
            r("HEAD", ECR, "/v2/app/manifests/latest", 401, None, None),
        ];
        assert!(says(ECR, fail(FailClass::Unauthorized, ""), "", &sts).unwrap().starts_with("STS refused 1 call(s)"));
        let stale = [r("HEAD", ECR, "/v2/app/blobs/sha256:a", 403, Some("Basic"), None)];
        assert!(says(ECR, fail(FailClass::Denied, ""), "", &stale)
            .unwrap()
            .starts_with("The registry refused the password ko sent without asking the ECR API"));
        let missing = [token.clone(), r("PUT", ECR, "/v2/nope/manifests/latest", 404, Some("Basic"), None)];
        assert!(says(ECR, fail(FailClass::NameUnknown, ""), "", &missing)
            .unwrap()
            .starts_with("The repository does not exist and no CREATE_ON_PUSH creation template"));
        let immutable = [token.clone(), r("PUT", ECR, "/v2/app/manifests/latest", 400, Some("Basic"), None)];
        let line = "Error: PUT https://123456789012.dkr.ecr.us-east-1.amazonaws.com/v2/app/manifests/latest: TAG_INVALID: The image tag 'latest' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.";
        assert_eq!(
            says(ECR, fail(FailClass::TagImmutable, &format!("crane exited 1: {line}")), line, &immutable).unwrap(),
            "ECR refused to move a tag the repository already holds: its tags are immutable (TAG_INVALID: The image tag 'latest' already exists in the 'app' repository and cannot be overwritten because the repository is immutable.)."
        );
        let policy = [token.clone(), r("HEAD", ECR, "/v2/app/blobs/sha256:a", 403, Some("Basic"), None)];
        let detail = "ko exited 1: … 403 Forbidden [AWS: User: arn:aws:iam::123456789012:user/ci is not authorized to perform: ecr:BatchCheckLayerAvailability on resource: arn:aws:ecr:us-east-1:123456789012:repository/app with an explicit deny in a resource-based policy]";
        assert!(says(ECR, fail(FailClass::Denied, detail), "Error: … 403 Forbidden", &policy)
            .unwrap()
            .starts_with("The registry took the token, but the repository's policy explicitly denies"));
    }

    #[test]
    fn causes_are_read_from_the_message_not_the_url() {
        let ghcr = "ko exited 1: Error: GET https://ghcr.io/token?scope=repository%3Aocto%2Fcells%2Fghcr%2Fexpired-token%3Apush&service=ghcr.io: DENIED: denied";
        assert_eq!(refusal_causes(ghcr), [], "the scenario's name in the URL is no cause");
        let oras = "oras exited 1: Error response from registry: recognizable error message not found: HEAD \"https://r/v2/a/manifests/x\": response status code 401: Unauthorized";
        assert_eq!(refusal_causes(oras), []);
        let gateway = "ko exited 1: panic: odd (gateway: GET r/v2/cells/expired-token/x → 401)";
        assert_eq!(refusal_causes(gateway), []);
        let sts = "ko exited 1: Error: HEAD https://r/v2/app/manifests/latest: unexpected status code 401 Unauthorized [AWS: User: arn:aws:iam::1:user/ci is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::1:role/r]";
        assert_eq!(refusal_causes(sts), [Cause::NotAuthorized]);
        assert_eq!(
            refusal_causes(
                "crane exited 1: Error: PUT https://r/v2/a/manifests/l: DENIED: Your authorization token has expired."
            ),
            [Cause::Expired]
        );
        assert_eq!(refusal_causes("oras exited 1: Error: basic credential not found"), [Cause::NotFound]);
    }

    // A rule whose sentence misses the refusal's cause does not apply; with none left, the
    // refusal is quoted.
    #[test]
    fn a_diagnosis_never_contradicts_the_refusal() {
        let line = "Error: PUT https://basic.ko-matrix.test/v2/app/manifests/latest: DENIED: the token is invalid";
        let records = [r("PUT", "basic.ko-matrix.test", "/v2/app/manifests/latest", 403, Some("Bearer"), None)];
        let said =
            says("basic.ko-matrix.test", fail(FailClass::Denied, &format!("ko exited 1: {line}")), line, &records);
        assert_eq!(said.as_deref(), Some("The refusal gives its own cause: DENIED: the token is invalid"));
    }

    #[test]
    fn credential_helpers() {
        let line = "Error: failed to publish images: error building \"ko://example.com/app\": fetching base image: error getting credentials - err: exec: \"docker-credential-desktop\": executable file not found in $PATH, out: ``";
        assert_eq!(
            says("anonymous.ko-matrix.test", fail(FailClass::Credentials, ""), line, &[]).unwrap(),
            "The credential helper `docker-credential-desktop` named in the docker config was not found on PATH (not installed); ko failed while resolving credentials for the base image."
        );
        let decode = "Error: failed to decode config file at /home/.docker/config.json: invalid config format: EOF";
        assert!(says("anonymous.ko-matrix.test", fail(FailClass::Credentials, ""), decode, &[])
            .unwrap()
            .starts_with("ko could not parse its docker config file"));
        let failing = "Error: error getting credentials - err: exit status 1, out: `no key`";
        assert_eq!(
            says("h", fail(FailClass::Credentials, ""), failing, &[]).unwrap(),
            "A credential helper failed while ko resolved credentials: exit status 1, out: `no key`"
        );
    }

    #[test]
    fn registry_rules() {
        let basic = "basic.ko-matrix.test";
        let anonymous =
            [r("CONNECT", basic, "", 200, None, None), r("POST", basic, "/v2/app/blobs/uploads/", 401, None, None)];
        assert_eq!(
            says(basic, fail(FailClass::Unauthorized, ""), "", &anonymous).unwrap(),
            "The push went out without credentials: ko found none for basic.ko-matrix.test and the registry answered 401."
        );
        let wrong = [r("POST", basic, "/v2/app/blobs/uploads/", 401, Some("Basic"), None)];
        assert!(says(basic, fail(FailClass::Unauthorized, ""), "", &wrong)
            .unwrap()
            .contains("a wrong user or password"));
        let token = [
            r("GET", "auth.ko-matrix.test", "/token?scope=repository:app:push", 401, Some("Basic"), None),
            r("POST", "token.ko-matrix.test", "/v2/app/blobs/uploads/", 401, None, None),
        ];
        assert_eq!(
            says("token.ko-matrix.test", fail(FailClass::Unauthorized, ""), "", &token).unwrap(),
            "The token server auth.ko-matrix.test refused the credentials it sent (401), so ko had no token to push with."
        );
        let dropped = [r(
            "POST",
            basic,
            "/v2/app/blobs/uploads/",
            0,
            Some("Basic"),
            Some("injected: connection dropped on blob upload 1"),
        )];
        assert_eq!(
            says(basic, fail(FailClass::Network, ""), "", &dropped).unwrap(),
            "The gateway injected a fault (connection dropped on blob upload 1) and ko did not recover from it."
        );
        let away =
            [r("CONNECT", "index.docker.io", "", 403, None, Some("unknown host: refused, nothing left the machine"))];
        assert!(says(basic, fail(FailClass::Network, ""), "", &away)
            .unwrap()
            .starts_with("ko tried to reach index.docker.io, which is not part of this run"));
    }

    #[test]
    fn google_flows() {
        let gcr = "gcr.io";
        let token = |status, auth| {
            r("GET", gcr, "/v2/token?scope=repository:p/app:push,pull&service=gcr.io", status, auth, None)
        };
        let deleted = [
            r("POST", "oauth2.googleapis.com", "/token", 400, None, None),
            r("GET", gcr, "/v2/", 401, None, None),
            token(403, None),
        ];
        assert_eq!(
            says(gcr, fail(FailClass::Denied, ""), "", &deleted).unwrap(),
            "oauth2.googleapis.com answered 400 to POST /token, so ko had no access token from it; the push went out without credentials and gcr.io answered 403."
        );
        let detail = "ko exited 1: GET https://gcr.io/v2/token?…: DENIED: Permission \"artifactregistry.repositories.uploadArtifacts\" denied on resource \"projects/p/locations/us/repositories/gcr.io\" (or it may not exist)";
        assert!(says(gcr, fail(FailClass::Denied, detail), "", &[token(403, Some("Basic"))])
            .unwrap()
            .contains("refused to grant the push (403 DENIED)"));
        assert_eq!(
            says(gcr, fail(FailClass::Unauthorized, ""), "", &[token(401, Some("Basic"))]).unwrap(),
            "The token server gcr.io refused the credentials it sent (401), so ko had no token to push with."
        );
        assert!(says(gcr, fail(FailClass::Denied, ""), "", &[token(403, None)]).unwrap().starts_with(
            "ko found no credentials for gcr.io: the token server gcr.io refused an anonymous request (403)"
        ));
    }

    #[test]
    fn vendor_token_flows() {
        let ghcr = "ghcr.io";
        let anonymous = [
            r("GET", ghcr, "/v2/", 401, None, None),
            r("GET", ghcr, "/token?scope=repository:o/app:pull&service=ghcr.io", 200, None, None),
            r("HEAD", ghcr, "/v2/o/app/manifests/latest", 401, Some("Bearer"), None),
        ];
        // ACR: Entra refused the helper, which left ko anonymous.
        let acr = "komatrix.azurecr.io";
        let wrong_tenant = [
            r("POST", "login.microsoftonline.com", "/8f0d/oauth2/token?api-version=1.0", 400, None, None),
            r(
                "GET",
                acr,
                "/oauth2/token?scope=repository:o/app:push,pull&service=komatrix.azurecr.io",
                200,
                None,
                None,
            ),
            r("HEAD", acr, "/v2/o/app/manifests/latest", 401, Some("Bearer"), None),
        ];
        assert_eq!(
            says(acr, fail(FailClass::Unauthorized, ""), "", &wrong_tenant).unwrap(),
            "login.microsoftonline.com refused 1 token request(s) (last: 400 /8f0d/oauth2/token), so ko's ACR helper had nothing to exchange at /oauth2/exchange; the pushes went out anonymous and the registry answered 401."
        );
        // ACR: a refresh token by the OAuth2 form (no Authorization) for pull only.
        let pull_only = [
            r("POST", "login.microsoftonline.com", "/t/oauth2/token?api-version=1.0", 200, None, None),
            r("POST", acr, "/oauth2/exchange", 200, Some("Bearer"), None),
            r("POST", acr, "/oauth2/token", 200, None, None),
            r("POST", acr, "/v2/o/app/blobs/uploads/", 401, Some("Bearer"), None),
        ];
        assert!(says(acr, fail(FailClass::Unauthorized, ""), "", &pull_only).unwrap().starts_with(
            "komatrix.azurecr.io accepted the credentials ko sent and issued a token, but not for pushing"
        ));
        assert_eq!(
            says(ghcr, fail(FailClass::Unauthorized, ""), "", &anonymous).unwrap(),
            "The push went out without credentials: ko found none for ghcr.io, got a token from ghcr.io anonymously, and the registry answered 401 to what that token did not allow."
        );
        // A refused upload, then an existence check that ended later: the refusal decides.
        let read_only = [
            r("GET", ghcr, "/token?scope=repository:o/app:push,pull&service=ghcr.io", 200, Some("Basic"), None),
            r("POST", ghcr, "/v2/o/app/blobs/uploads/", 403, Some("Bearer"), None),
            r("HEAD", ghcr, "/v2/o/app/blobs/sha256:ab", 404, Some("Bearer"), None),
        ];
        assert!(says(ghcr, fail(FailClass::Denied, ""), "", &read_only)
            .unwrap()
            .starts_with("The registry answered 403 DENIED to an authenticated ko"));
        let reset = [
            read_only[0].clone(),
            read_only[1].clone(),
            r("TLS", ghcr, "", 0, None, Some("handshake failed: Connection reset by peer (os error 104)")),
        ];
        assert!(
            says(ghcr, fail(FailClass::Denied, ""), "", &reset)
                .unwrap()
                .starts_with("The registry answered 403 DENIED"),
            "a reset spare connection is not the answer"
        );
        let hub = [
            r(
                "GET",
                "auth.docker.io",
                "/token?scope=repository:u/app:pull,push&service=registry.docker.io",
                200,
                None,
                None,
            ),
            r("POST", "index.docker.io", "/v2/u/app/blobs/uploads/", 401, Some("Bearer"), None),
        ];
        assert!(says("docker.io", fail(FailClass::Unauthorized, ""), "", &hub)
            .unwrap()
            .contains("found none for docker.io, got a token from auth.docker.io anonymously"));
        let scoped = [
            r(
                "GET",
                "auth.docker.io",
                "/token?scope=repository:u/app:pull,push&service=registry.docker.io",
                200,
                Some("Basic"),
                None,
            ),
            r("POST", "index.docker.io", "/v2/u/app/blobs/uploads/", 401, Some("Bearer"), None),
        ];
        assert_eq!(
            says("docker.io", fail(FailClass::Unauthorized, ""), "", &scoped).unwrap(),
            "auth.docker.io accepted the credentials ko sent and issued a token, but not for pushing: the registry answered 401 to the POST (insufficient scope), so the credential may pull but not push."
        );
        let line = "Error: error creating publisher: failed to parse \"ghcr.io/Octo-Org/app\" as repository: repository can only contain the characters `abcdefghijklmnopqrstuvwxyz0123456789_-./`: Octo-Org/app";
        assert_eq!(
            says(ghcr, fail(FailClass::InvalidName, ""), line, &[]).unwrap(),
            "ko refused the repository name as invalid before sending a request to the registry: repository names must be lower-case (letters, digits, `._-/`), so an owner written with capitals has to be lowered first."
        );
    }

    #[test]
    fn a_reset_handshake_is_not_a_tls_failure() {
        let records = [
            r("TLS", ECR, "", 0, None, Some("handshake failed: Connection reset by peer (os error 104)")),
            r("HEAD", ECR, "/v2/app/manifests/latest", 401, None, None),
        ];
        assert!(says(ECR, fail(FailClass::Unauthorized, ""), "", &records)
            .unwrap()
            .starts_with("No request reached api.ecr.*"));
        let untrusted =
            [r("TLS", "basic.ko-matrix.test", "", 0, None, Some("handshake failed: received fatal alert: UnknownCA"))];
        assert!(says(
            "basic.ko-matrix.test",
            fail(FailClass::Tls, ""),
            "x509: certificate signed by unknown authority",
            &untrusted
        )
        .unwrap()
        .starts_with("The TLS handshake with basic.ko-matrix.test failed"));
    }

    #[test]
    fn only_failures_are_diagnosed() {
        let pass = Verdict { outcome: Outcome::Pass, class: None, detail: String::new() };
        assert_eq!(
            diagnose(&Facts {
                tool: crate::tool::shorthand().name(),
                registry: "h",
                source: None,
                verdict: &pass,
                line: None,
                records: &[]
            }),
            None
        );
        assert_eq!(says("h", fail(FailClass::Other, "odd"), "odd", &[]), None, "no rule, no sentence");
    }
}
