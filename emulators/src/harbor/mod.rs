//! Harbor, self-hosted, under `harbor.example.com`: the registry API and its token service
//! (`/service/token`) on one host, as Harbor's core serves them. The wire facts and their
//! sources are in `docs/selfhosted-wire-reference.md` (Harbor); most are read from Harbor's
//! source, not seen in a capture.
//!
//! - `/v2/` and repository requests without `Authorization` answer 401 `Bearer
//!   realm="https://harbor.example.com/service/token",service="harbor-registry"` (with the
//!   request's scope on repository requests).
//! - The namespace pushed to is a project. The cell's Harbor holds a project per account: the
//!   robot account's own (`robot$<project>+<name>`), or the account's `owner` for a user (a
//!   copy's cell may have two accounts there, each reaching only its own project).
//! - The token service never refuses a scope: it grants what the credential may do in an
//!   existing project and nothing in a missing one; credentials it does not accept leave the
//!   caller anonymous (a failed login yields no security context, not an error).
//! - The registry answers a request its token does not cover with 401 `UNAUTHORIZED` and the
//!   message doubled (`unauthorized to access repository: <r>, action: <a>: <the same>`) under
//!   `Basic realm="harbor"`; for a missing project `project <p> not found: project <p> not
//!   found` with an empty `Www-Authenticate`.
//! - A missing manifest is 404 `NOT_FOUND` `artifact <repo>:<tag> not found`.

use hyper::header::HeaderValue;
use hyper::{Response, StatusCode};

use crate::bearer::{AccountSpec, BadCredentials, Grant, Principal, Vendor};
use crate::wire::{distribution_error, Body};

/// The host users push to, and Harbor's external URL.
pub const HOST: &str = "harbor.example.com";
/// The token service's `service`, whatever the host.
const SERVICE: &str = "harbor-registry";
/// Harbor's default `robot_name_prefix`.
const ROBOT_PREFIX: &str = "robot$";

/// The project of a project robot account, `robot$<project>+<name>`; `None` for a user or a
/// system robot (`robot$<name>`).
pub fn robot_project(user: &str) -> Option<&str> {
    let (project, name) = user.strip_prefix(ROBOT_PREFIX)?.split_once('+')?;
    (!project.is_empty() && !name.is_empty()).then_some(project)
}

/// The project the cell's Harbor holds for an account whose namespace is `namespace`: a robot's
/// own project, else the namespace.
fn existing_project<'a>(subject: &'a str, namespace: &'a str) -> &'a str {
    robot_project(subject).unwrap_or(namespace)
}

/// Harbor's error answer: its errors package appends the cause to the message, and the
/// middleware passes the cause as both.
fn doubled(message: &str, challenge: &'static str) -> Response<Body> {
    let mut response = distribution_error(StatusCode::UNAUTHORIZED, "UNAUTHORIZED", &format!("{message}: {message}"));
    response.headers_mut().insert("www-authenticate", HeaderValue::from_static(challenge));
    response
}

/// Harbor's token flow.
pub struct Harbor;

impl Vendor for Harbor {
    fn name(&self) -> &'static str {
        HOST
    }

    fn registry_hosts(&self) -> &'static [&'static str] {
        &[HOST]
    }

    fn token_path(&self) -> &'static str {
        "/service/token"
    }

    fn service(&self) -> &'static str {
        SERVICE
    }

    fn checks_user(&self) -> bool {
        true
    }

    /// Never reached for a bad login ([`Vendor::anonymous_on_bad_credentials`]); an unknown
    /// session is Harbor's unauthorized token request: 401 with an empty body.
    fn refuse_credentials(&self, _: BadCredentials) -> Response<Body> {
        let mut response = Response::new(crate::wire::full(bytes::Bytes::new()));
        *response.status_mut() = StatusCode::UNAUTHORIZED;
        response
    }

    fn anonymous_on_bad_credentials(&self) -> bool {
        true
    }

    /// `docker login` (no scope) without a working credential: 401, empty body.
    fn refuse_anonymous(&self, scoped: bool) -> Option<Response<Body>> {
        (!scoped).then(|| self.refuse_credentials(BadCredentials::Unknown))
    }

    /// What the credential may do in the project, when the project exists; nothing otherwise.
    fn grant(&self, owner: &str, principal: Option<&Principal>, repository: &str, requested: &[String]) -> Vec<String> {
        let project = repository.split('/').next().unwrap_or_default();
        principal
            .filter(|p| project == existing_project(&p.user, owner))
            .map_or_else(Vec::new, |p| p.granted(requested))
    }

    fn holds(&self, account: &AccountSpec) -> String {
        existing_project(&account.user, account.owner()).to_string()
    }

    fn refuse_action(&self, grant: &Grant, repository: &str, action: &str) -> Response<Body> {
        let project = repository.split('/').next().unwrap_or_default();
        let exists = project == existing_project(&grant.subject, &grant.namespace)
            || grant.namespaces.iter().any(|n| n == project);
        if !exists {
            return doubled(&format!("project {project} not found"), "");
        }
        doubled(
            &format!("unauthorized to access repository: {repository}, action: {action}"),
            r#"Basic realm="harbor""#,
        )
    }

    fn manifest_unknown(&self, repository: &str, reference: &str) -> Option<Response<Body>> {
        let separator = if reference.contains(':') { "@" } else { ":" };
        let message = format!("artifact {repository}{separator}{reference} not found");
        Some(distribution_error(StatusCode::NOT_FOUND, "NOT_FOUND", &message))
    }
}

/// Harbor's part of a world ([`crate::vendor`]).
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move {
        let registry = crate::vendor::Registry::start(HOST, Box::new(Harbor), "Harbor front backend", None, &backing);
        Ok(std::sync::Arc::new(registry.await?) as std::sync::Arc<dyn crate::vendor::WorldPart>)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::BodyExt;

    fn principal(user: &str) -> Principal {
        Principal { user: user.into(), allow: vec!["pull".into(), "push".into()] }
    }

    async fn text(response: Response<Body>) -> String {
        String::from_utf8(response.into_body().collect().await.unwrap().to_bytes().to_vec()).unwrap()
    }

    #[test]
    fn robot_names_carry_their_project() {
        assert_eq!(robot_project("robot$ko-matrix+ci"), Some("ko-matrix"));
        assert_eq!(robot_project("robot$team+a+b"), Some("team"), "the project ends at the first +");
        assert_eq!(robot_project("robot$system-wide"), None, "a system robot has no project");
        assert_eq!(robot_project("ko-matrix+ci"), None);
        assert_eq!(robot_project("robot$+ci"), None);
    }

    #[test]
    fn the_challenge_names_the_token_service() {
        assert_eq!(
            Harbor.challenge(None),
            r#"Bearer realm="https://harbor.example.com/service/token",service="harbor-registry""#
        );
        assert_eq!(
            Harbor.repository_challenge("p/app", "push,pull"),
            r#"Bearer realm="https://harbor.example.com/service/token",service="harbor-registry",scope="repository:p/app:push,pull""#
        );
    }

    #[test]
    fn grants_stop_at_the_project() {
        let asked = ["push".to_string(), "pull".to_string()];
        assert_eq!(Harbor.grant("p", Some(&principal("dev")), "p/app/x", &asked), asked);
        assert!(Harbor.grant("p", Some(&principal("dev")), "q/app", &asked).is_empty());
        let robot = principal("robot$p+ci");
        assert_eq!(Harbor.grant("elsewhere", Some(&robot), "p/app", &asked), asked, "a robot's project exists");
        assert!(Harbor.grant("elsewhere", Some(&robot), "elsewhere/app", &asked).is_empty(), "missing project");
        let reader = Principal { user: "robot$p+read".into(), allow: vec!["pull".into()] };
        assert_eq!(Harbor.grant("p", Some(&reader), "p/app", &asked), ["pull"]);
        assert!(Harbor.grant("p", None, "p/app", &asked).is_empty());
    }

    #[tokio::test]
    async fn refusals_in_harbors_words() {
        let grant = |subject: &str, namespace: &str| Grant {
            subject: subject.into(),
            allow: vec!["pull".into(), "push".into()],
            namespace: namespace.into(),
            namespaces: Vec::new(),
            access: Vec::new(),
        };
        let missing = Harbor.refuse_action(&grant("robot$p+ci", "nope"), "nope/app", "push");
        assert_eq!(missing.status(), StatusCode::UNAUTHORIZED);
        assert_eq!(missing.headers()["www-authenticate"], "");
        assert_eq!(
            text(missing).await,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"project nope not found: project nope not found"}]}"#
        );
        let denied = Harbor.refuse_action(&grant("", "p"), "p/app", "pull");
        assert_eq!(denied.headers()["www-authenticate"], r#"Basic realm="harbor""#);
        assert_eq!(
            text(denied).await,
            r#"{"errors":[{"code":"UNAUTHORIZED","message":"unauthorized to access repository: p/app, action: pull: unauthorized to access repository: p/app, action: pull"}]}"#
        );
        // A project of the cell's other account exists: the robot is refused access, not told it is missing.
        let other = Grant { namespaces: vec!["q".into()], ..grant("robot$p+ci", "p") };
        let refused = Harbor.refuse_action(&other, "q/app", "pull");
        assert_eq!(refused.headers()["www-authenticate"], r#"Basic realm="harbor""#);
        assert!(text(refused).await.contains("unauthorized to access repository: q/app, action: pull"));
        let unknown = Harbor.manifest_unknown("p/app", "latest").unwrap();
        assert_eq!(unknown.status(), StatusCode::NOT_FOUND);
        assert_eq!(
            text(unknown).await,
            r#"{"errors":[{"code":"NOT_FOUND","message":"artifact p/app:latest not found"}]}"#
        );
        assert!(Harbor.refuse_anonymous(true).is_none(), "a scoped anonymous request gets a token");
        assert_eq!(Harbor.refuse_anonymous(false).unwrap().status(), StatusCode::UNAUTHORIZED);
    }

    /// A copy's cell with two robot accounts at one Harbor: each credential gets tokens for its own
    /// project, and a token refused on the other project is refused access (that project exists).
    #[tokio::test]
    async fn two_accounts_of_a_cell_each_reach_their_own_project() {
        use crate::bearer::{CredentialKind, Front};
        use base64::Engine;
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let front = Front::new(Box::new(Harbor), closed, "Harbor front backend");
        let server = front.clone().serve().await.unwrap();
        let robot = |user: &str, owner: &str, credential| AccountSpec {
            user: user.into(),
            owner: Some(owner.into()),
            credential,
            ..AccountSpec::default()
        };
        let reader = front.open_cell(7, robot("robot$team-a+reader", "team-a", CredentialKind::ReadOnly));
        let writer = front.open_cell(7, robot("robot$team-b+writer", "team-b", CredentialKind::Write));
        assert_eq!(reader.backend_prefix, writer.backend_prefix, "one registry holds both projects");
        let client = reqwest::Client::new();
        let request = |method: reqwest::Method, path: &str| {
            client
                .request(method, format!("http://{}{path}", server.addr))
                .header("host", HOST)
                .header(crate::wire::SESSION_HEADER, "7")
        };
        let token = |user: &str, secret: &str, scope: &str| {
            let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{secret}"));
            let path = format!("/service/token?service=harbor-registry&scope={scope}");
            let request = request(reqwest::Method::GET, &path).header("authorization", format!("Basic {basic}"));
            async move {
                let answer: serde_json::Value = request.send().await.unwrap().json().await.unwrap();
                answer["token"].as_str().unwrap().to_string()
            }
        };
        let both = "repository%3Ateam-b%2Fmirror%3Apush%2Cpull&scope=repository%3Ateam-a%2Fsrc%3Apull";
        let writers = token("robot$team-b+writer", &writer.secret, both).await;
        let head = |path: &str, bearer: &str| request(reqwest::Method::HEAD, path).bearer_auth(bearer).send();
        let refused = head("/v2/team-a/src/manifests/latest", &writers).await.unwrap();
        assert_eq!(refused.status(), 401);
        assert_eq!(refused.headers()["www-authenticate"], r#"Basic realm="harbor""#, "team-a exists: access refused");
        let readers = token("robot$team-a+reader", &reader.secret, "repository%3Ateam-a%2Fsrc%3Apull").await;
        let upload = request(reqwest::Method::POST, "/v2/team-b/mirror/blobs/uploads/").bearer_auth(&readers).send();
        assert_eq!(upload.await.unwrap().status(), 401, "the reader's token reaches team-a only");
        let other_cell = client
            .head(format!("http://{}/v2/team-b/mirror/manifests/latest", server.addr))
            .header("host", HOST)
            .header(crate::wire::SESSION_HEADER, "8")
            .bearer_auth(&writers)
            .send();
        assert_eq!(other_cell.await.unwrap().status(), 401, "another cell knows neither");
    }
}
