//! What every emulated registry front (ECR's, gcr.io's, ghcr.io's, ACR's, Docker Hub's) shares: reading the
//! repository out of a Distribution route, answering in Distribution's error format, and
//! forwarding the real work to the caller's distribution registry under a per-cell
//! prefix, so that cells pushing to the same name never meet. The fronts themselves decide
//! who may do what, in their vendor's wording: each is a [`Gate`], which [`judge`] asks.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::http::request::Parts;
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};

use crate::gateway::error_chain;
use crate::wire::{distribution_error, full, mark_infra, Body};

/// Splits `/v2/<name>/<kind>/<rest>` into the repository name and the rest. The name is
/// percent-decoded: some clients (Azure's registry SDK) send `team%2Fapp`.
pub(crate) fn split_repository(path: &str) -> Option<(String, &str)> {
    let inner = path.strip_prefix("/v2/")?;
    let decoded = |name: &str| percent_encoding::percent_decode_str(name).decode_utf8_lossy().into_owned();
    let (name, rest) = ["/blobs/", "/manifests/", "/tags/", "/referrers/"]
        .iter()
        .filter_map(|marker| inner.find(marker).map(|at| (&inner[..at], &inner[at..])))
        .min_by_key(|(name, _)| name.len())?;
    Some((decoded(name), rest))
}

/// What a request on a front's registry host asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Route {
    /// `/v2/`: whether the caller may use the registry at all.
    Base,
    /// `/v2/<name>/<kind>/…`: the repository (percent-decoded) and the rest of the route.
    Repository { name: String, rest: String },
    /// Any other path.
    Other,
}

impl Route {
    pub(crate) fn of(path: &str) -> Route {
        match split_repository(path) {
            Some((name, rest)) => Route::Repository { name, rest: rest.to_string() },
            None if path == "/v2/" || path == "/v2" => Route::Base,
            None => Route::Other,
        }
    }
}

/// How a front decides who may do what on its registry host, in its vendor's wording; the
/// rest — routing, Distribution's answers, where the repository lives — is [`judge`]'s.
pub(crate) trait Gate {
    /// What the front knows of a caller it let in.
    type Caller;
    /// Who is asking for `route`, or the answer to one who may not ask.
    fn admit(&self, parts: &Parts, route: &Route) -> Result<Self::Caller, Box<Response<Body>>>;
    /// The answer to `/v2/` for a caller let in.
    fn base(&self, caller: Self::Caller) -> Response<Body>;
    /// The backend prefix `repository` lives under for `caller`'s request (`rest` of its
    /// route), or the refusal.
    fn authorize(
        &self,
        caller: &Self::Caller,
        parts: &Parts,
        repository: &str,
        rest: &str,
    ) -> Result<String, Box<Response<Body>>>;
}

/// What a front does with a registry request.
pub(crate) enum Verdict<C> {
    /// Answer it so.
    Answer(Response<Body>),
    /// Forward it to the backend ([`Backend::forward`]) as `repository` under `prefix`.
    Forward { caller: C, prefix: String, repository: String, rest: String },
}

/// The front's decision on a registry request: `gate` lets the caller in (or answers), then
/// `/v2/` is the gate's, a repository route is forwarded where the gate allows it, and any
/// other path is not found.
pub(crate) fn judge<G: Gate>(gate: &G, parts: &Parts) -> Verdict<G::Caller> {
    let route = Route::of(parts.uri.path());
    let caller = match gate.admit(parts, &route) {
        Ok(caller) => caller,
        Err(answer) => return Verdict::Answer(*answer),
    };
    match route {
        Route::Base => Verdict::Answer(gate.base(caller)),
        Route::Other => Verdict::Answer(distribution_error(
            StatusCode::NOT_FOUND,
            "NOT_FOUND",
            "The requested resource was not found",
        )),
        Route::Repository { name, rest } => match gate.authorize(&caller, parts, &name, &rest) {
            Ok(prefix) => Verdict::Forward { caller, prefix, repository: name, rest },
            Err(answer) => Verdict::Answer(*answer),
        },
    }
}

/// The Distribution action a registry request needs: `push` for uploads and manifest PUTs,
/// `pull` for everything else.
pub(crate) fn action(method: &hyper::Method, rest: &str) -> &'static str {
    match method.as_str() {
        "POST" | "PUT" | "PATCH" | "DELETE" => "push",
        _ if rest.starts_with("/blobs/uploads") => "push",
        _ => "pull",
    }
}

/// `(user, password)` from an `Authorization: Basic base64(user:password)` value; None when it
/// is not one.
pub(crate) fn basic_credentials(authorization: &str) -> Option<(String, String)> {
    use base64::Engine;
    let decoded =
        base64::engine::general_purpose::STANDARD.decode(authorization.strip_prefix("Basic ")?.trim()).ok()?;
    let (user, password) =
        String::from_utf8(decoded).ok()?.split_once(':').map(|(u, p)| (u.to_string(), p.to_string()))?;
    Some((user, password))
}

/// `/v2/…?…` of `https://host/v2/…?…`; a path stays as it is.
fn path_of_url(url: &str) -> &str {
    match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("/", |at| &rest[at..]),
        None => url,
    }
}

/// The distribution registry behind a front.
pub(crate) struct Backend {
    pub addr: SocketAddr,
    /// What it is, for infra-error details (`ECR front backend`).
    pub service: &'static str,
    /// Whether upload `Location`s go out as paths (`/v2/…`), as ACR's do, rather than the
    /// absolute URLs distribution writes; Azure's SDK joins them to the registry's URL.
    relative_locations: bool,
    client: Client<HttpConnector, Body>,
}

impl Backend {
    pub(crate) fn new(addr: SocketAddr, service: &'static str) -> Backend {
        Backend {
            addr,
            service,
            relative_locations: false,
            client: Client::builder(hyper_util::rt::TokioExecutor::new()).build_http(),
        }
    }

    /// The same backend, answering upload `Location`s as paths.
    pub(crate) fn with_relative_locations(self) -> Backend {
        Backend { relative_locations: true, ..self }
    }

    /// Sends a request for `repository` (with `rest` of its route) to the backend as
    /// `<prefix>/<repository>`, without the client's credentials, and maps the answer back so
    /// the prefix never shows: `Location` and `Link` URLs, and the name in a tag list.
    /// Cross-repository mount requests are dropped (the fronts' registries do not mount across
    /// repositories of other owners), so the backend opens a normal upload. A backend that
    /// cannot be reached or answers 5xx is the emulated world's failure: the answer is marked so.
    pub(crate) async fn forward(
        &self,
        prefix: &str,
        repository: &str,
        rest: &str,
        mut parts: Parts,
        body: Body,
    ) -> Response<Body> {
        let backend_repository = format!("{prefix}/{repository}");
        let query: Vec<&str> = parts
            .uri
            .query()
            .unwrap_or("")
            .split('&')
            .filter(|p| !p.is_empty() && !p.starts_with("mount=") && !p.starts_with("from="))
            .collect();
        let query = if query.is_empty() { String::new() } else { format!("?{}", query.join("&")) };
        parts.uri = format!("http://{}/v2/{backend_repository}{rest}{query}", self.addr)
            .parse()
            .expect("a loopback URI parses");
        parts.headers.remove("authorization");
        let method = parts.method.clone();
        parts.headers.insert("x-forwarded-proto", "https".parse().expect("static header"));
        let response = match self.client.request(Request::from_parts(parts, body)).await {
            Ok(response) => response,
            Err(e) => {
                let mut response = distribution_error(
                    StatusCode::BAD_GATEWAY,
                    "UNAVAILABLE",
                    &format!("ko-matrix: the backend registry failed: {e}"),
                );
                mark_infra(&mut response, format!("{} {} unreachable: {}", self.service, self.addr, error_chain(&e)));
                return response;
            }
        };
        // The front streams to the gateway: a backend error answer shorter than announced
        // would cut that connection before the gateway could reframe it, so reframe it here.
        let (response, _) = crate::gateway::reframe_error_answer(method.as_str(), response).await;
        let (mut parts, body) = response.into_parts();
        if parts.status.is_server_error() {
            let what = format!("{} {} answered {}", self.service, self.addr, parts.status);
            let mut response = Response::from_parts(parts, body.boxed());
            mark_infra(&mut response, what);
            return response;
        }
        for header in ["location", "link"] {
            if let Some(value) = parts.headers.get(header).and_then(|v| v.to_str().ok()) {
                let mut mapped = value.replace(&format!("/v2/{backend_repository}/"), &format!("/v2/{repository}/"));
                if header == "location" && self.relative_locations {
                    mapped = path_of_url(&mapped).to_string();
                }
                parts.headers.insert(header, mapped.parse().expect("a rewritten URL header is a valid header"));
            }
        }
        if rest.starts_with("/tags/list") && parts.status.is_success() {
            return match http_body_util::Limited::new(body, 16 << 20).collect().await {
                Ok(collected) => {
                    let listed = tag_list_as_named(&collected.to_bytes(), repository);
                    parts.headers.insert("content-length", listed.len().into());
                    Response::from_parts(parts, full(listed))
                }
                Err(e) => {
                    let mut response = distribution_error(
                        StatusCode::BAD_GATEWAY,
                        "UNAVAILABLE",
                        "ko-matrix: the backend's tag list could not be read",
                    );
                    mark_infra(
                        &mut response,
                        format!("{} {} sent an unreadable tag list: {e}", self.service, self.addr),
                    );
                    response
                }
            };
        }
        Response::from_parts(parts, body.boxed())
    }

    /// The plain client, for fronts that read the backend themselves.
    pub(crate) fn client(&self) -> &Client<HttpConnector, Body> {
        &self.client
    }
}

/// A backend tag list (`{"name":"cell-3/app","tags":[…]}`) as the front answers it: under the
/// repository's own name. A body that is not a tag list passes unchanged.
fn tag_list_as_named(body: &[u8], repository: &str) -> Bytes {
    match serde_json::from_slice::<serde_json::Value>(body) {
        Ok(mut list) if list.get("name").is_some() => {
            list["name"] = serde_json::json!(repository);
            Bytes::from(list.to_string())
        }
        _ => Bytes::copy_from_slice(body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::INFRA_HEADER;

    #[test]
    fn tag_lists_name_the_repository_not_the_backend_prefix() {
        let listed = tag_list_as_named(br#"{"name":"cell-3/conformance/repo1","tags":["a","b"]}"#, "conformance/repo1");
        let listed: serde_json::Value = serde_json::from_slice(&listed).unwrap();
        assert_eq!(listed, serde_json::json!({"name": "conformance/repo1", "tags": ["a", "b"]}));
        assert_eq!(&tag_list_as_named(b"not json", "x")[..], b"not json");
    }

    #[test]
    fn repository_names_are_split_from_the_route() {
        let split = |path| split_repository(path).map(|(name, rest)| (name, rest.to_string()));
        let owned = |name: &str, rest: &str| Some((name.to_string(), rest.to_string()));
        assert_eq!(split("/v2/app/blobs/uploads/"), owned("app", "/blobs/uploads/"));
        assert_eq!(split("/v2/team/app/manifests/latest"), owned("team/app", "/manifests/latest"));
        assert_eq!(split("/v2/team/app/tags/list"), owned("team/app", "/tags/list"));
        assert_eq!(
            split("/v2/team/app/referrers/sha256:ab"),
            owned("team/app", "/referrers/sha256:ab"),
            "ECR serves the referrers API"
        );
        assert_eq!(
            split("/v2/team%2Fapp/blobs/uploads/"),
            owned("team/app", "/blobs/uploads/"),
            "Azure's SDK encodes the slash"
        );
        assert_eq!(path_of_url("https://r.io/v2/a/blobs/uploads/u?_state=x"), "/v2/a/blobs/uploads/u?_state=x");
        assert_eq!(path_of_url("/v2/a/blobs/uploads/u"), "/v2/a/blobs/uploads/u");
        assert_eq!(split_repository("/v2/"), None);
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_the_harness_fault_naming_the_service() {
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap();
        let backend = Backend::new(closed, "ghcr.io front backend");
        let (parts, _) = Request::get("http://ghcr.io/v2/o/app/manifests/latest").body(()).unwrap().into_parts();
        let response = backend.forward("p", "o/app", "/manifests/latest", parts, full(Bytes::new())).await;
        assert_eq!(response.status(), StatusCode::BAD_GATEWAY);
        let infra = response.headers()[INFRA_HEADER].to_str().unwrap();
        assert!(infra.starts_with(&format!("ghcr.io front backend {closed} unreachable")), "{infra}");
    }

    #[test]
    fn routes_are_the_base_a_repository_or_other() {
        assert_eq!(Route::of("/v2/"), Route::Base);
        assert_eq!(Route::of("/v2"), Route::Base);
        assert_eq!(
            Route::of("/v2/team/app/manifests/latest"),
            Route::Repository { name: "team/app".into(), rest: "/manifests/latest".into() }
        );
        assert_eq!(Route::of("/v2/_catalog"), Route::Other);
        assert_eq!(Route::of("/token"), Route::Other);
    }

    #[test]
    fn basic_credentials_split_at_the_first_colon() {
        assert_eq!(basic_credentials("Basic dTpwOnE="), Some(("u".into(), "p:q".into())));
        assert_eq!(basic_credentials("Bearer dTpw"), None);
        assert_eq!(basic_credentials("Basic bm9jb2xvbg=="), None, "no colon");
        assert_eq!(basic_credentials("Basic !!"), None);
    }

    #[test]
    fn writes_need_push() {
        use hyper::Method;
        assert_eq!(action(&Method::HEAD, "/blobs/sha256:ab"), "pull");
        assert_eq!(action(&Method::GET, "/manifests/latest"), "pull");
        assert_eq!(action(&Method::POST, "/blobs/uploads/"), "push");
        assert_eq!(action(&Method::PATCH, "/blobs/uploads/u"), "push");
        assert_eq!(action(&Method::PUT, "/manifests/latest"), "push");
        assert_eq!(action(&Method::GET, "/blobs/uploads/u"), "push");
    }
}
