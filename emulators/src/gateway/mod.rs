//! The network gateway: an HTTP proxy on 127.0.0.1 that every cell and test client uses.
//!
//! It knows a set of virtual hosts (the run's registries, `*.dkr.ecr.*` and the AWS APIs,
//! gcr.io and Google's identity hosts, ghcr.io, Docker Hub's, ACR's and Entra ID's). For
//! each it either terminates TLS with a leaf certificate minted for that host by the run's
//! CA and forwards the requests to a loopback backend, or passes the bytes through to a
//! backend that speaks TLS itself. Every other host is refused and recorded: nothing leaves
//! the machine, whatever a scenario's credentials look like. Each session (one per cell)
//! has its own listener, so its request record is exactly that cell's traffic; a session
//! may also carry injected faults ([`Faults`]: throttling, a failing upload, latency) and
//! listeners of its own for hosts a client reaches without the proxy (a metadata server).

mod faults;
mod quirks;
mod redirects;
mod sites;
pub use faults::{Faults, Latency, UploadFault};
pub use quirks::{LocationForm, Quirks};
pub use redirects::BlobRedirect;
pub use sites::{authority, Scheme, Site};

use std::collections::HashMap;
use std::convert::Infallible;
use std::io::Write;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Instant;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde::{Deserialize, Serialize};
use tokio::net::{TcpListener, TcpStream};

use crate::pki::{self, Ca};
use crate::wire::{full, Body, Form, INFRA_HEADER, SESSION_HEADER};

/// Where a virtual host's traffic goes.
#[derive(Debug, Clone)]
pub enum Route {
    /// Terminate TLS here, forward requests to `backend` (`http://` or `https://` on loopback).
    Terminate { backend: Backend },
    /// Tunnel the client's bytes to `addr`, which speaks TLS itself.
    Passthrough { addr: SocketAddr },
}

#[derive(Debug, Clone)]
pub struct Backend {
    pub addr: SocketAddr,
    pub tls: bool,
    /// The `Host` the backend expects, when it is not the virtual host's own name (LocalStack
    /// serves each ECR registry under a `*.localhost.localstack.cloud` name).
    pub host_header: Option<String>,
    /// What the backend is (`registry (basic flavour)`), for infra-error records.
    pub service: Option<String>,
}

impl Backend {
    pub fn http(addr: SocketAddr) -> Backend {
        Backend { addr, tls: false, host_header: None, service: None }
    }

    pub fn https(addr: SocketAddr) -> Backend {
        Backend { addr, tls: true, host_header: None, service: None }
    }

    pub fn named(self, service: impl Into<String>) -> Backend {
        Backend { service: Some(service.into()), ..self }
    }

    /// `registry (basic flavour) 127.0.0.1:5000`, or `backend of <host> 127.0.0.1:5000`.
    fn describe(&self, host: &str) -> String {
        match &self.service {
            Some(service) => format!("{service} {}", self.addr),
            None => format!("backend of {host} {}", self.addr),
        }
    }
}

/// One request as the gateway saw it: the evidence outcomes are classified from.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Record {
    pub host: String,
    pub method: String,
    /// Path and query (empty for CONNECT).
    pub path: String,
    pub status: u16,
    /// Milliseconds since the session opened.
    pub at_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// Set when the gateway made this answer because a service of the emulated world failed:
    /// `<service> <what happened>`. Such an answer is never evidence about ko.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub infra: Option<String>,
    /// The scheme of the request's `Authorization` (`Basic`, `Bearer`, `AWS4-HMAC-SHA256`),
    /// with the access key id a SigV4 request names: whether, and as whom, the tool spoke.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub auth: Option<String>,
}

impl Record {
    /// The record as one line of a cell log's "== gateway record" section:
    /// `+12ms GET basic.ko-matrix.test/v2/ → 401 (note)`.
    pub fn log_line(&self) -> String {
        let note = self.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default();
        format!("+{}ms {} {}{} → {}{note}", self.at_ms, self.method, self.host, self.path, self.status)
    }

    /// The access key id a SigV4-signed request named, if any.
    pub fn access_key_id(&self) -> Option<&str> {
        self.auth.as_deref()?.strip_prefix("AWS4-HMAC-SHA256 ")
    }
}

/// What a request's `Authorization` header (or presigned query) says about who is asking,
/// without its secret: the scheme, and for SigV4 the access key id.
fn auth_of(authorization: Option<&str>, path: &str) -> Option<String> {
    let sigv4_key = |credential: &str| credential.split('/').next().map(str::to_string);
    if let Some(value) = authorization {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        if scheme == "AWS4-HMAC-SHA256" {
            let key = rest.split(',').find_map(|part| part.trim().strip_prefix("Credential=")).and_then(sigv4_key);
            return Some(format!("{scheme} {}", key.unwrap_or_default()));
        }
        return Some(scheme.to_string());
    }
    let query = path.split_once('?')?.1;
    let query = Form::parse(query);
    Some(format!("AWS4-HMAC-SHA256 {}", sigv4_key(query.get("X-Amz-Credential")?)?))
}

#[derive(Clone)]
pub struct Gateway {
    inner: Arc<Inner>,
}

struct Inner {
    ca: Arc<Ca>,
    routes: RwLock<HashMap<String, Route>>,
    tls_configs: Mutex<HashMap<String, Arc<rustls::ServerConfig>>>,
    plain: Client<HttpConnector, Incoming>,
    tls: Client<hyper_rustls::HttpsConnector<HttpConnector>, Incoming>,
}

#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    #[error("the gateway could not listen on {addr}: {source}")]
    Listen { addr: String, source: std::io::Error },
    #[error("the gateway forwards only to loopback; {host} was to go to {addr}")]
    NotLoopback { host: String, addr: SocketAddr },
}

impl Gateway {
    pub fn new(ca: Arc<Ca>) -> Gateway {
        let tls_client = rustls::ClientConfig::builder_with_provider(pki::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_root_certificates(ca.root_store())
            .with_no_client_auth();
        let https =
            hyper_rustls::HttpsConnectorBuilder::new().with_tls_config(tls_client).https_only().enable_http1().build();
        let executor = TokioExecutor::new();
        Gateway {
            inner: Arc::new(Inner {
                ca,
                routes: RwLock::new(HashMap::new()),
                tls_configs: Mutex::new(HashMap::new()),
                plain: Client::builder(executor.clone()).build_http(),
                tls: Client::builder(executor).build(https),
            }),
        }
    }

    /// Serves `host` (a name without port) by `route` from now on. Upstreams must be on
    /// loopback, so that no route can carry a cell's traffic off the machine.
    pub fn route(&self, host: &str, route: Route) -> Result<(), GatewayError> {
        let addr = match &route {
            Route::Terminate { backend } => backend.addr,
            Route::Passthrough { addr } => *addr,
        };
        loopback_only(host, addr)?;
        self.inner.routes.write().expect("routes lock").insert(host.to_ascii_lowercase(), route);
        Ok(())
    }

    /// Where the run's virtual host `host` sends its requests: a site elsewhere may send them
    /// there too. `None` for a host the gateway only tunnels, or does not know.
    pub fn backend_of(&self, host: &str) -> Option<Backend> {
        match self.inner.routes.read().expect("routes lock").get(&host.to_ascii_lowercase())? {
            Route::Terminate { backend } => Some(backend.clone()),
            Route::Passthrough { .. } => None,
        }
    }

    pub fn ca(&self) -> &Arc<Ca> {
        &self.inner.ca
    }

    /// A new listener whose traffic is recorded separately.
    pub async fn session(&self) -> Result<Session, GatewayError> {
        let listener = bind("127.0.0.1:0".parse().expect("a socket address")).await?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Listen { addr: "127.0.0.1".into(), source })?;
        static NEXT_ID: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
        let id = NEXT_ID.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let faults = Arc::new(Injector::default());
        let recorder = Recorder {
            records: Arc::new(Mutex::new(Vec::new())),
            sink: Arc::new(RwLock::new(None)),
            opened: Instant::now(),
            session: id,
            faults: faults.clone(),
            sites: sites::Sites::default(),
            redirects: redirects::Redirects::default(),
            quirks: Arc::new(RwLock::new(Quirks::default())),
        };
        let inner = self.inner.clone();
        let (records, sink) = (recorder.records.clone(), recorder.sink.clone());
        let task = tokio::spawn(accept_loop(listener, inner.clone(), recorder.clone(), None));
        Ok(Session { addr, id, records, sink, faults, tasks: Mutex::new(vec![task]), inner, recorder })
    }
}

async fn bind(addr: SocketAddr) -> Result<TcpListener, GatewayError> {
    TcpListener::bind(addr).await.map_err(|source| GatewayError::Listen { addr: addr.to_string(), source })
}

/// Refuses an address off loopback, where a cell's traffic could leave the machine.
fn loopback_only(host: &str, addr: SocketAddr) -> Result<(), GatewayError> {
    match addr.ip().is_loopback() {
        true => Ok(()),
        false => Err(GatewayError::NotLoopback { host: host.to_string(), addr }),
    }
}

/// Serves a listener's connections as the session's, as a proxy, or for one virtual host
/// when `host` is set.
async fn accept_loop(listener: TcpListener, inner: Arc<Inner>, recorder: Recorder, host: Option<Arc<str>>) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { return };
        tokio::spawn(serve_proxy_connection(stream, inner.clone(), recorder.clone(), host.clone()));
    }
}

/// Receives each of a session's records as the gateway makes it: a live view of the traffic
/// (a file a person tails while a tool runs), beside the list [`Session::records`] returns.
pub type Sink = Box<dyn Fn(&Record) + Send + Sync>;

/// A gateway listener for one cell; closes when dropped.
pub struct Session {
    pub addr: SocketAddr,
    /// Unique within the process; sent to backends as [`SESSION_HEADER`].
    pub id: u64,
    records: Arc<Mutex<Vec<Record>>>,
    sink: Arc<RwLock<Option<Sink>>>,
    faults: Arc<Injector>,
    tasks: Mutex<Vec<tokio::task::JoinHandle<()>>>,
    inner: Arc<Inner>,
    recorder: Recorder,
}

impl Session {
    /// A second listener of this session that takes plain requests as if they were for virtual
    /// host `host`: for clients that ignore `HTTP_PROXY` but take a server address from the
    /// environment (Google's metadata client reads `GCE_METADATA_HOST`). Its traffic is
    /// recorded and routed like the proxy's, so it never leaves the machine either.
    pub async fn serve_as(&self, host: &str) -> Result<SocketAddr, GatewayError> {
        let listener = bind("127.0.0.1:0".parse().expect("a socket address")).await?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Listen { addr: "127.0.0.1".into(), source })?;
        let task = tokio::spawn(accept_loop(
            listener,
            self.inner.clone(),
            self.recorder.clone(),
            Some(host.to_ascii_lowercase().into()),
        ));
        self.tasks.lock().expect("session tasks lock").push(task);
        Ok(addr)
    }

    /// Serves `site` at `host:port` through this session's proxy from then on; the run's
    /// virtual host of that name, if any, no longer answers this session (see [`sites`]).
    pub fn open_site(&self, host: &str, port: u16, site: Site) -> Result<(), GatewayError> {
        loopback_only(host, site.backend.addr)?;
        self.recorder.sites.insert(host, port, site);
        Ok(())
    }

    /// Serves `site` at a listener of this session bound to `bind` (port 0: any free port), for
    /// an address clients dial directly: a loopback one, which Go never proxies, or the address a
    /// name resolves to inside the cell. Records name it `<host>:<port>` (`localhost:38211`),
    /// and its certificate is for `host`. Returns the bound address.
    pub async fn listen(&self, bind: SocketAddr, host: &str, site: Site) -> Result<SocketAddr, GatewayError> {
        loopback_only(host, bind)?;
        loopback_only(host, site.backend.addr)?;
        let listener = self::bind(bind).await?;
        let addr = listener.local_addr().map_err(|source| GatewayError::Listen { addr: bind.to_string(), source })?;
        let (inner, recorder) = (self.inner.clone(), self.recorder.clone());
        let (name, host) = (sites::authority(host, addr.port()), host.to_ascii_lowercase());
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { return };
                let (site, name, host) = (site.clone(), name.clone(), host.clone());
                tokio::spawn(sites::serve_connection(stream, site, name, host, inner.clone(), recorder.clone()));
            }
        });
        self.tasks.lock().expect("session tasks lock").push(task);
        Ok(addr)
    }

    /// From now on, inject `faults` (their placeholders already expanded) into this
    /// session's traffic.
    pub fn inject(&self, faults: Faults) {
        *self.faults.faults.write().expect("faults lock") = faults;
    }

    /// From now on, blob downloads from `redirect`'s hosts are answered with a redirect to its store.
    pub fn redirect_blobs(&self, redirect: BlobRedirect) {
        self.recorder.redirects.add(redirect);
    }

    /// From now on, every registry of this session answers with `quirks`.
    pub fn quirks(&self, quirks: Quirks) {
        *self.recorder.quirks.write().expect("quirks lock") = quirks;
    }

    /// The value for `HTTP_PROXY` / `HTTPS_PROXY`.
    pub fn proxy_url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn records(&self) -> Vec<Record> {
        self.records.lock().expect("records lock").clone()
    }

    /// Hands `sink` the records made so far, then every later one as it is made (replacing
    /// any sink set before). No record is missed or given twice.
    pub fn on_record(&self, sink: impl Fn(&Record) + Send + Sync + 'static) {
        // Holding the sink's lock keeps the recorder from pushing (and so from handing on) a
        // record between the replay and the sink's installation.
        let mut installed = self.sink.write().expect("sink lock");
        for record in self.records.lock().expect("records lock").iter() {
            sink(record);
        }
        *installed = Some(Box::new(sink));
    }

    /// Appends every record to `path` (created if absent), one [`Record::log_line`] a line,
    /// each passed through `mask` first, written as it is made.
    pub fn record_to_file(
        &self,
        path: &Path,
        mask: impl Fn(&str) -> String + Send + Sync + 'static,
    ) -> std::io::Result<()> {
        let file = Mutex::new(std::fs::OpenOptions::new().create(true).append(true).open(path)?);
        self.on_record(move |record| {
            let line = format!("{}\n", mask(&record.log_line()));
            // A live view only: the record itself is kept in memory whatever the file does.
            let _ = file.lock().expect("record file lock").write_all(line.as_bytes());
        });
        Ok(())
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        for task in self.tasks.lock().expect("session tasks lock").iter() {
            task.abort();
        }
    }
}

#[derive(Clone)]
struct Recorder {
    records: Arc<Mutex<Vec<Record>>>,
    sink: Arc<RwLock<Option<Sink>>>,
    opened: Instant,
    session: u64,
    faults: Arc<Injector>,
    /// The session's own addresses, which the proxy serves before the run's virtual hosts.
    sites: sites::Sites,
    /// Registries whose blob downloads go to their object store.
    redirects: redirects::Redirects,
    quirks: Arc<RwLock<Quirks>>,
}

/// A session's faults and how many matching requests it has seen.
#[derive(Default)]
struct Injector {
    faults: RwLock<Faults>,
    counts: Mutex<Counts>,
}

#[derive(Default)]
struct Counts {
    ecr_api_calls: u32,
    blob_uploads: u32,
}

/// What the injector does with one request.
#[derive(Debug, PartialEq, Eq)]
enum Injected {
    /// Answer with this status and body, recorded with `note`.
    Answer { status: u16, content_type: &'static str, body: String, note: String },
    /// Close the connection without an answer.
    Drop { note: String },
}

impl Injector {
    fn delay(&self, host: &str) -> Option<std::time::Duration> {
        self.faults
            .read()
            .expect("faults lock")
            .latency
            .iter()
            .find(|l| l.host.eq_ignore_ascii_case(host))
            .map(|l| l.delay)
    }

    /// Counts `method host path` against the faults and says what, if anything, to inject.
    fn inject(&self, host: &str, method: &str, path: &str) -> Option<Injected> {
        let faults = self.faults.read().expect("faults lock");
        let mut counts = self.counts.lock().expect("fault counts lock");
        if host.starts_with("api.ecr.") {
            counts.ecr_api_calls += 1;
            let n = counts.ecr_api_calls;
            if n <= faults.ecr_throttle {
                return Some(Injected::Answer {
                    status: 400,
                    content_type: "application/x-amz-json-1.1",
                    body: r#"{"__type":"ThrottlingException","message":"Rate exceeded"}"#.into(),
                    note: format!(
                        "injected: ThrottlingException, ECR API call {n} of the first {}",
                        faults.ecr_throttle
                    ),
                });
            }
        }
        if method == "POST" && path.split('?').next().is_some_and(|p| p.ends_with("/blobs/uploads/")) {
            counts.blob_uploads += 1;
            let n = counts.blob_uploads;
            if let Some(fault) = faults.blob_upload.as_ref().filter(|f| f.nth == n) {
                return Some(match fault.status {
                    Some(status) => Injected::Answer {
                        status,
                        content_type: "application/json",
                        body: r#"{"errors":[{"code":"UNAVAILABLE","message":"service unavailable","detail":"injected by ko-matrix"}]}"#.into(),
                        note: format!("injected: {status} on blob upload {n}"),
                    },
                    None => Injected::Drop { note: format!("injected: connection dropped on blob upload {n}") },
                });
            }
        }
        None
    }
}

/// A connection closed on purpose, without an answer.
#[derive(Debug, thiserror::Error)]
#[error("connection dropped by an injected fault")]
struct DroppedOnPurpose;

impl Recorder {
    fn record(&self, host: &str, method: &str, path: &str, status: u16, note: Option<String>) {
        self.push_answer(host, method, path, status, note, None);
    }

    /// Records an answer the gateway made because `infra` (`<service> <what happened>`).
    fn record_infra(&self, host: &str, method: &str, path: &str, status: u16, infra: String) {
        self.push_answer(host, method, path, status, None, Some(infra));
    }

    /// An answer the gateway made itself (no `Authorization` read).
    fn push_answer(
        &self,
        host: &str,
        method: &str,
        path: &str,
        status: u16,
        note: Option<String>,
        infra: Option<String>,
    ) {
        let (host, method, path) = (host.into(), method.into(), path.into());
        self.push(Record { host, method, path, status, at_ms: 0, note, infra, auth: None });
    }

    /// Appends `record`, stamped with the time since the session opened.
    fn push(&self, record: Record) {
        let at_ms = self.opened.elapsed().as_millis() as u64;
        let record = Record { at_ms, ..record };
        let sink = self.sink.read().expect("sink lock");
        self.records.lock().expect("records lock").push(record.clone());
        if let Some(sink) = sink.as_ref() {
            sink(&record);
        }
    }
}

async fn serve_proxy_connection(stream: TcpStream, inner: Arc<Inner>, recorder: Recorder, host: Option<Arc<str>>) {
    let service = hyper::service::service_fn(move |mut req: Request<Incoming>| {
        if let Some(host) = &host {
            if let Ok(value) = HeaderValue::from_str(host) {
                req.headers_mut().insert(HOST, value);
            }
        }
        proxy_request(req, inner.clone(), recorder.clone())
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .preserve_header_case(true)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades()
        .await;
}

fn text(status: StatusCode, message: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(message.into())));
    *response.status_mut() = status;
    response
}

/// Splits `host[:port]`, lowercasing the host.
fn host_of(authority: &str) -> String {
    let host = match authority.rsplit_once(':') {
        Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
        _ => authority,
    };
    host.trim_start_matches('[').trim_end_matches(']').to_ascii_lowercase()
}

async fn proxy_request(
    req: Request<Incoming>,
    inner: Arc<Inner>,
    recorder: Recorder,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let authority = req
        .uri()
        .authority()
        .map(|a| a.to_string())
        .or_else(|| req.headers().get(HOST).and_then(|h| h.to_str().ok()).map(str::to_string));
    let Some(authority) = authority else {
        return Ok(text(StatusCode::BAD_REQUEST, "ko-matrix gateway: a proxy request needs a host"));
    };
    let host = host_of(&authority);
    let connect = req.method() == Method::CONNECT;
    let port = port_of(&authority, if connect { 443 } else { 80 });
    if let Some(site) = recorder.sites.get(&host, port) {
        return serve_site(req, site, host, port, inner, recorder).await;
    }
    if recorder.sites.has_host(&host) {
        // A real client would get "connection refused"; through a proxy it gets the proxy's 502.
        let path = if connect { String::new() } else { path_of(&req) };
        let name = sites::authority(&host, port);
        recorder.record(&name, req.method().as_str(), &path, 502, Some(format!("nothing listens at {host}:{port}")));
        return Ok(text(
            StatusCode::BAD_GATEWAY,
            format!("ko-matrix gateway: connecting to {host}:{port}: connection refused"),
        ));
    }
    let route = inner.routes.read().expect("routes lock").get(&host).cloned();
    let Some(route) = route else {
        let path = if req.method() == Method::CONNECT { String::new() } else { path_of(&req) };
        recorder.record(
            &host,
            req.method().as_str(),
            &path,
            403,
            Some("unknown host: refused, nothing left the machine".into()),
        );
        return Ok(text(
            StatusCode::FORBIDDEN,
            format!("ko-matrix gateway: {host} is not a host of this run; refused"),
        ));
    };
    if req.method() == Method::CONNECT {
        recorder.record(&host, "CONNECT", "", 200, None);
        tokio::spawn(tunnel(req, host, route, inner, recorder));
        return Ok(Response::new(http_body_util::Empty::new().map_err(|never: Infallible| match never {}).boxed()));
    }
    match route {
        Route::Terminate { backend } => forward(req, &host, "http", &backend, &inner, &recorder).await,
        Route::Passthrough { .. } => {
            recorder.record(
                &host,
                req.method().as_str(),
                &path_of(&req),
                400,
                Some("plain HTTP to a TLS-only host".into()),
            );
            Ok(text(StatusCode::BAD_REQUEST, format!("ko-matrix gateway: {host} only speaks TLS")))
        }
    }
}

/// The port of `host[:port]`, or `default`.
fn port_of(authority: &str, default: u16) -> u16 {
    authority.rsplit_once(':').and_then(|(_, port)| port.parse().ok()).unwrap_or(default)
}

/// A proxied request to one of the session's sites: a CONNECT becomes a connection to the site,
/// a plain request is served if the site speaks plain HTTP and refused as its TLS server would
/// if it does not.
async fn serve_site(
    req: Request<Incoming>,
    site: Site,
    host: String,
    port: u16,
    inner: Arc<Inner>,
    recorder: Recorder,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let name = sites::authority(&host, port);
    if req.method() == Method::CONNECT {
        recorder.record(&name, "CONNECT", "", 200, None);
        tokio::spawn(async move {
            let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
            sites::serve_connection(TokioIo::new(upgraded), site, name, host, inner, recorder).await;
        });
        return Ok(Response::new(http_body_util::Empty::new().map_err(|never: Infallible| match never {}).boxed()));
    }
    match site.scheme {
        Scheme::Http => sites::serve_request(req, &name, "http", &site, &inner, &recorder).await,
        Scheme::Https => {
            let note = "plain HTTP to an HTTPS registry: answered 400 as Go's TLS server does";
            recorder.record(&name, req.method().as_str(), &path_of(&req), 400, Some(note.into()));
            Ok(text(StatusCode::BAD_REQUEST, sites::TLS_SERVER_REFUSAL))
        }
    }
}

fn path_of<B>(req: &Request<B>) -> String {
    req.uri().path_and_query().map_or("/".to_string(), |p| p.to_string())
}

/// After a CONNECT: terminate TLS and serve requests, or splice bytes to a TLS backend.
async fn tunnel(req: Request<Incoming>, host: String, route: Route, inner: Arc<Inner>, recorder: Recorder) {
    let Ok(upgraded) = hyper::upgrade::on(req).await else { return };
    let client = TokioIo::new(upgraded);
    match route {
        Route::Passthrough { addr } => {
            let mut backend = match TcpStream::connect(addr).await {
                Ok(backend) => backend,
                Err(e) => {
                    recorder.record_infra(
                        &host,
                        "TUNNEL",
                        "",
                        502,
                        format!("passthrough backend of {host} {addr} unreachable: {e}"),
                    );
                    return;
                }
            };
            let mut client = client;
            let _ = tokio::io::copy_bidirectional(&mut client, &mut backend).await;
        }
        Route::Terminate { backend } => {
            let config = match inner.tls_config(&host) {
                Ok(config) => config,
                Err(e) => {
                    recorder.record_infra(
                        &host,
                        "TLS",
                        "",
                        500,
                        format!("gateway could not mint a certificate for {host}: {e}"),
                    );
                    return;
                }
            };
            let tls = match tokio_rustls::TlsAcceptor::from(config).accept(client).await {
                Ok(tls) => tls,
                Err(e) => {
                    // The client rejected our certificate or spoke something else: evidence for
                    // `tls`. A client hanging up before its hello (an unused connection) is not.
                    if e.kind() != std::io::ErrorKind::UnexpectedEof {
                        recorder.record(&host, "TLS", "", 0, Some(format!("handshake failed: {e}")));
                    }
                    return;
                }
            };
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let (inner, recorder, host, backend) = (inner.clone(), recorder.clone(), host.clone(), backend.clone());
                async move { forward(req, &host, "https", &backend, &inner, &recorder).await }
            });
            let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tls), service).await;
        }
    }
}

const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "proxy-connection",
    "keep-alive",
    "proxy-authorization",
    "proxy-authenticate",
    "te",
    "trailer",
    "upgrade",
];

/// Sends `req` to `backend` as if it had been addressed to `host` over `scheme`, unless the
/// session's faults answer it (or drop the connection) instead.
async fn forward(
    req: Request<Incoming>,
    host: &str,
    scheme: &str,
    backend: &Backend,
    inner: &Inner,
    recorder: &Recorder,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let method = req.method().to_string();
    let path = path_of(&req);
    let authorization = req.headers().get(hyper::header::AUTHORIZATION).and_then(|v| v.to_str().ok());
    // A store URL's query signature is the registry's, never the client's own.
    let auth = match crate::storage::is_storage_host(host) {
        true => auth_of(authorization, ""),
        false => auth_of(authorization, &path),
    };
    if let Some(delay) = recorder.faults.delay(host) {
        tokio::time::sleep(delay).await;
    }
    match recorder.faults.inject(host, &method, &path) {
        Some(Injected::Answer { status, content_type, body, note }) => {
            recorder.push(Record {
                host: host.into(),
                method: method.clone(),
                path: path.clone(),
                status,
                at_ms: 0,
                note: Some(note),
                infra: None,
                auth,
            });
            let mut response = text(StatusCode::from_u16(status).expect("validated status"), body);
            response.headers_mut().insert(hyper::header::CONTENT_TYPE, HeaderValue::from_static(content_type));
            return Ok(response);
        }
        Some(Injected::Drop { note }) => {
            recorder.push(Record {
                host: host.into(),
                method,
                path,
                status: 0,
                at_ms: 0,
                note: Some(note),
                infra: None,
                auth,
            });
            return Err(DroppedOnPurpose);
        }
        None => {}
    }
    let quirks = recorder.quirks.read().expect("quirks lock").clone();
    if let Some((answer, note)) = quirks.refuse(&method, &path, req.headers()) {
        let status = answer.status().as_u16();
        recorder.push(Record {
            host: host.into(),
            method,
            path,
            status,
            at_ms: 0,
            note: Some(note),
            infra: None,
            auth,
        });
        return Ok(answer);
    }
    let store = recorder.redirects.store_backend(host, &path);
    let backend = store.as_ref().unwrap_or(backend);
    let (mut parts, body) = req.into_parts();
    let backend_scheme = if backend.tls { "https" } else { "http" };
    parts.uri = format!("{backend_scheme}://{}{path}", backend.addr).parse().expect("a loopback URI parses");
    for name in HOP_BY_HOP {
        parts.headers.remove(name);
    }
    let host_header = match &backend.host_header {
        Some(rewritten) => HeaderValue::from_str(rewritten).expect("a configured Host is a valid header"),
        None => parts
            .headers
            .get(HOST)
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_str(host).expect("host is a valid header")),
    };
    parts.headers.insert(HOST, host_header);
    parts
        .headers
        .insert("x-forwarded-proto", HeaderValue::from_static(if scheme == "https" { "https" } else { "http" }));
    parts.headers.insert(SESSION_HEADER, HeaderValue::from(recorder.session));
    let request = Request::from_parts(parts, body);
    let result = if backend.tls { inner.tls.request(request).await } else { inner.plain.request(request).await };
    match result {
        Ok(mut response) => {
            let infra =
                response.headers_mut().remove(INFRA_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            let (response, note) = match response.status().is_success() {
                true => recorder.redirects.answer(host, &method, &path, response).await,
                false => reframe_error_answer(&method, response).await,
            };
            let (response, quirk) = quirks.reword(&method, &path, &format!("{scheme}://{host}"), response);
            let note = [note, quirk].into_iter().flatten().reduce(|a, b| format!("{a}; {b}"));
            let status = response.status().as_u16();
            recorder.push(Record { host: host.into(), method, path, status, at_ms: 0, note, infra, auth });
            Ok(response)
        }
        Err(e) => {
            let failure = format!("{} unreachable: {}", backend.describe(host), error_chain(&e));
            recorder.record_infra(host, &method, &path, 502, failure.clone());
            Ok(text(StatusCode::BAD_GATEWAY, format!("ko-matrix gateway: {failure}")))
        }
    }
}

/// The largest error answer [`reframe_error_answer`] reads whole; longer ones stream as sent.
const ERROR_ANSWER_LIMIT: u64 = 64 * 1024;
/// How long the backend may take to send an error answer's body.
const ERROR_ANSWER_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// Reads a (small) error answer whole and passes on what the backend sent, framed by what it
/// sent. A backend whose body is shorter than its `Content-Length` would otherwise leave the
/// client with a cut connection (`unexpected EOF`) instead of the answer: distribution 2.8
/// built with Go before 1.23 (Debian's `docker-registry`) answers an unsatisfiable `Range`
/// with 416, the whole blob's `Content-Length` and a 33-byte message. The note says when
/// this happened. Successes, `HEAD` answers (no body) and long answers pass unchanged.
pub(crate) async fn reframe_error_answer(
    method: &str,
    response: Response<Incoming>,
) -> (Response<Body>, Option<String>) {
    let declared = response
        .headers()
        .get(hyper::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    let status = response.status();
    let Some(declared) = declared.filter(|d| {
        *d <= ERROR_ANSWER_LIMIT && method != "HEAD" && (status.is_client_error() || status.is_server_error())
    }) else {
        return (response.map(|b| b.boxed()), None);
    };
    let (mut parts, mut body) = response.into_parts();
    let mut sent = Vec::new();
    let read = tokio::time::timeout(ERROR_ANSWER_TIMEOUT, async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => sent.extend_from_slice(frame.data_ref().map_or(&[][..], |d| &d[..])),
                Err(e) => return Err(error_chain(&e)),
            }
        }
        Ok(())
    })
    .await;
    let note = match read {
        Ok(Ok(())) if sent.len() as u64 == declared => None,
        Ok(Ok(())) => {
            Some(format!("the backend announced {declared} bytes and sent {}; passed on as sent", sent.len()))
        }
        Ok(Err(e)) => Some(format!(
            "the backend announced {declared} bytes, sent {} and then failed ({e}); passed on as sent",
            sent.len()
        )),
        Err(_) => Some(format!(
            "the backend announced {declared} bytes and sent {} in {ERROR_ANSWER_TIMEOUT:?}; passed on as sent",
            sent.len()
        )),
    };
    parts.headers.insert(hyper::header::CONTENT_LENGTH, HeaderValue::from(sent.len()));
    (Response::from_parts(parts, full(sent)), note)
}

/// An error with its sources (hyper's and reqwest's own messages hide "connection refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

impl Inner {
    /// The TLS config for `host`, minted once per host: a handshake per request stays cheap.
    fn tls_config(&self, host: &str) -> Result<Arc<rustls::ServerConfig>, pki::PkiError> {
        if let Some(config) = self.tls_configs.lock().expect("tls config cache").get(host) {
            return Ok(config.clone());
        }
        let leaf = self.ca.leaf(host)?;
        let mut config = rustls::ServerConfig::builder_with_provider(pki::provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default protocol versions")
            .with_no_client_auth()
            .with_single_cert(vec![leaf.cert_der.clone()], leaf.key_der())
            .expect("a freshly minted leaf is a valid server certificate");
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        let config = Arc::new(config);
        self.tls_configs.lock().expect("tls config cache").insert(host.to_string(), config.clone());
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_lose_ports_and_case() {
        assert_eq!(host_of("Basic.Ko-Matrix.test:443"), "basic.ko-matrix.test");
        assert_eq!(host_of("169.254.169.254"), "169.254.169.254");
        assert_eq!(host_of("[::1]:8080"), "::1");
    }

    #[test]
    fn who_is_asking_without_the_secret() {
        let sigv4 = "AWS4-HMAC-SHA256 Credential=ASIAKOMATRIX0001/20261129/us-east-1/ecr/aws4_request, SignedHeaders=host;x-amz-date, Signature=abc";
        assert_eq!(auth_of(Some(sigv4), "/").as_deref(), Some("AWS4-HMAC-SHA256 ASIAKOMATRIX0001"));
        assert_eq!(auth_of(Some("Basic QVdTOnNlY3JldA=="), "/v2/").as_deref(), Some("Basic"));
        assert_eq!(auth_of(Some("Bearer eyJhbGciOi"), "/v2/").as_deref(), Some("Bearer"));
        assert_eq!(auth_of(None, "/?Action=GetCallerIdentity&X-Amz-Credential=AKIAQUERY%2F20261129%2Fus-east-1%2Fsts%2Faws4_request&X-Amz-Signature=f").as_deref(), Some("AWS4-HMAC-SHA256 AKIAQUERY"));
        assert_eq!(auth_of(None, "/v2/"), None);
        let record = Record {
            host: "h".into(),
            method: "POST".into(),
            path: "/".into(),
            status: 200,
            at_ms: 1,
            note: None,
            infra: None,
            auth: auth_of(Some(sigv4), "/"),
        };
        assert_eq!(record.access_key_id(), Some("ASIAKOMATRIX0001"));
    }

    #[test]
    fn faults_count_their_requests() {
        use super::{Latency, UploadFault};
        let injector = Injector::default();
        *injector.faults.write().unwrap() = Faults {
            ecr_throttle: 2,
            blob_upload: Some(UploadFault { nth: 2, status: None }),
            latency: vec![Latency {
                host: "basic.ko-matrix.test".into(),
                delay: std::time::Duration::from_millis(300),
            }],
        };
        let api = "api.ecr.us-east-1.amazonaws.com";
        let throttled = |i: &Injector| matches!(i.inject(api, "POST", "/"), Some(Injected::Answer { status: 400, ref body, .. }) if body.contains("ThrottlingException"));
        assert!(throttled(&injector) && throttled(&injector), "the first two API calls");
        assert_eq!(injector.inject(api, "POST", "/"), None, "the third goes through");
        let upload = "/v2/app/blobs/uploads/";
        assert_eq!(injector.inject("basic.ko-matrix.test", "POST", upload), None, "the first upload goes through");
        assert_eq!(
            injector.inject("basic.ko-matrix.test", "HEAD", "/v2/app/blobs/sha256:ab"),
            None,
            "only upload starts count"
        );
        assert_eq!(
            injector.inject("basic.ko-matrix.test", "POST", "/v2/app/blobs/uploads/?mount=sha256:ab&from=base"),
            Some(Injected::Drop { note: "injected: connection dropped on blob upload 2".into() })
        );
        assert_eq!(injector.inject("basic.ko-matrix.test", "POST", upload), None, "only the nth");
        assert_eq!(injector.delay("Basic.Ko-Matrix.test"), Some(std::time::Duration::from_millis(300)));
        assert_eq!(injector.delay("anonymous.ko-matrix.test"), None);
        assert_eq!(Injector::default().inject(api, "POST", "/"), None, "no faults, nothing injected");
    }

    #[tokio::test]
    async fn routes_go_only_to_loopback() {
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        for addr in ["127.0.0.1:5000", "127.3.2.1:80", "[::1]:443"] {
            let addr: SocketAddr = addr.parse().unwrap();
            gateway.route("a.ko-matrix.test", Route::Terminate { backend: Backend::http(addr) }).unwrap();
            gateway.route("b.ko-matrix.test", Route::Passthrough { addr }).unwrap();
        }
        for addr in ["169.254.169.254:80", "10.0.0.1:5000", "0.0.0.0:5000", "[2001:db8::1]:443", "[::ffff:8.8.8.8]:443"]
        {
            let addr: SocketAddr = addr.parse().unwrap();
            let refused = gateway.route("evil.ko-matrix.test", Route::Terminate { backend: Backend::http(addr) });
            assert!(matches!(refused, Err(GatewayError::NotLoopback { .. })), "{addr}: {refused:?}");
            assert!(gateway.route("evil.ko-matrix.test", Route::Passthrough { addr }).is_err(), "{addr}");
        }
        assert!(!gateway.inner.routes.read().unwrap().contains_key("evil.ko-matrix.test"));
    }

    fn site(backend: SocketAddr, scheme: Scheme) -> Site {
        Site { backend: Backend::http(backend), scheme, realm: None }
    }

    async fn read_all(stream: &mut TcpStream) -> Vec<u8> {
        use tokio::io::AsyncReadExt;
        let mut answer = Vec::new();
        let _ = tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut answer)).await;
        answer
    }

    /// A TLS hello at a plain-HTTP site, after a CONNECT: the bytes distribution (a Go HTTP
    /// server) sends, and no TLS terminated for it.
    #[tokio::test]
    async fn a_plain_http_site_answers_a_tls_hello_as_a_go_http_server() {
        use tokio::io::AsyncWriteExt;
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        let session = gateway.session().await.unwrap();
        session
            .open_site("kind-registry", 5000, site(raw_backend(b"HTTP/1.1 200 OK\r\n\r\n").await, Scheme::Http))
            .unwrap();
        let mut stream = TcpStream::connect(session.addr).await.unwrap();
        stream.write_all(b"CONNECT kind-registry:5000 HTTP/1.1\r\nHost: kind-registry:5000\r\n\r\n").await.unwrap();
        let mut established = [0u8; 19];
        tokio::io::AsyncReadExt::read_exact(&mut stream, &mut established).await.unwrap();
        assert!(established.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&established));
        // The start of a ClientHello: a handshake record.
        stream.write_all(&[0x16, 0x03, 0x01, 0x00, 0xa5, 0x01, 0x00, 0x00, 0xa1, 0x03, 0x03]).await.unwrap();
        let answer = read_all(&mut stream).await;
        let answer = String::from_utf8_lossy(&answer);
        assert!(answer.ends_with(std::str::from_utf8(sites::HTTP_SERVER_ANSWER_TO_TLS).unwrap()), "{answer}");
        let records = session.records();
        assert_eq!(records.len(), 2, "{records:?}");
        assert_eq!(
            (records[1].host.as_str(), records[1].method.as_str(), records[1].status),
            ("kind-registry:5000", "TLS", 400)
        );
    }

    /// A plain request at an HTTPS site's own listener, and through the proxy: what a Go TLS
    /// server answers, recorded with the request's method and path.
    #[tokio::test]
    async fn an_https_site_refuses_plain_http_as_a_go_tls_server() {
        use tokio::io::AsyncWriteExt;
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        let session = gateway.session().await.unwrap();
        let backend = raw_backend(b"HTTP/1.1 200 OK\r\n\r\n").await;
        let addr =
            session.listen("127.0.0.1:0".parse().unwrap(), "localhost", site(backend, Scheme::Https)).await.unwrap();
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream
            .write_all(format!("GET /v2/ HTTP/1.1\r\nHost: localhost:{}\r\n\r\n", addr.port()).as_bytes())
            .await
            .unwrap();
        assert_eq!(read_all(&mut stream).await, sites::TLS_SERVER_ANSWER_TO_HTTP);
        session.open_site("registry.local", 5000, site(backend, Scheme::Https)).unwrap();
        proxied_get(&session, "http://registry.local:5000/v2/x").await;
        let shown: Vec<String> =
            session.records().iter().map(|r| format!("{} {}{} {}", r.method, r.host, r.path, r.status)).collect();
        assert_eq!(
            shown,
            [format!("GET localhost:{}/v2/ 400", addr.port()), "GET registry.local:5000/v2/x 400".into()]
        );
    }

    /// A site's host answers at the site's ports only, whatever the run's virtual hosts serve.
    #[tokio::test]
    async fn other_ports_of_a_site_are_closed() {
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        let backend = raw_backend(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n").await;
        gateway.route("anonymous.ko-matrix.test", Route::Terminate { backend: Backend::http(backend) }).unwrap();
        let session = gateway.session().await.unwrap();
        session.open_site("anonymous.ko-matrix.test", 80, site(backend, Scheme::Http)).unwrap();
        proxied_get(&session, "http://anonymous.ko-matrix.test/v2/").await;
        proxied_get(&session, "http://anonymous.ko-matrix.test:8080/v2/").await;
        let shown: Vec<(String, u16)> = session.records().iter().map(|r| (r.host.clone(), r.status)).collect();
        assert_eq!(shown, [("anonymous.ko-matrix.test".into(), 200), ("anonymous.ko-matrix.test:8080".into(), 502)]);
        let off_loopback = session.open_site("x", 1, site("10.0.0.1:80".parse().unwrap(), Scheme::Http));
        assert!(matches!(off_loopback, Err(GatewayError::NotLoopback { .. })));
    }

    /// Sends one plain proxy request for `url` through `session` and reads the answer.
    async fn proxied_get(session: &Session, url: &str) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let mut stream = TcpStream::connect(session.addr).await.unwrap();
        let host = url.trim_start_matches("http://").split('/').next().unwrap();
        stream
            .write_all(format!("GET {url} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").as_bytes())
            .await
            .unwrap();
        let mut answer = Vec::new();
        stream.read_to_end(&mut answer).await.unwrap();
    }

    /// A backend that answers every request with `answer` and closes the connection.
    async fn raw_backend(answer: &'static [u8]) -> SocketAddr {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let mut request = Vec::new();
                let mut buf = [0u8; 1024];
                while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => request.extend_from_slice(&buf[..n]),
                    }
                }
                let _ = stream.write_all(answer).await;
                let _ = stream.shutdown().await;
            }
        });
        addr
    }

    /// Distribution 2.8 built with Go < 1.23 answers an unsatisfiable Range with the blob's
    /// Content-Length and a shorter message; through the gateway the client gets the 416 and
    /// the message, framed right, not a cut connection.
    #[tokio::test]
    async fn an_error_answer_shorter_than_announced_arrives_whole() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let answer = b"HTTP/1.1 416 Requested Range Not Satisfiable\r\nContent-Length: 58\r\nContent-Range: bytes */58\r\nContent-Type: text/plain; charset=utf-8\r\n\r\ninvalid range: failed to overlap\n";
        let backend = raw_backend(answer).await;
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        gateway.route("range.ko-matrix.test", Route::Terminate { backend: Backend::http(backend) }).unwrap();
        let session = gateway.session().await.unwrap();
        let mut stream = TcpStream::connect(session.addr).await.unwrap();
        let request = "GET http://range.ko-matrix.test/v2/r/blobs/sha256:ab HTTP/1.1\r\nHost: range.ko-matrix.test\r\nRange: bytes=500-0\r\nConnection: close\r\n\r\n";
        stream.write_all(request.as_bytes()).await.unwrap();
        let mut got = Vec::new();
        tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut got)).await.unwrap().unwrap();
        let got = String::from_utf8_lossy(&got).to_ascii_lowercase();
        let (head, body) = got.split_once("\r\n\r\n").unwrap();
        assert!(head.starts_with("http/1.1 416"), "{got}");
        assert!(
            head.contains("content-length: 33\r\n") || head.ends_with("content-length: 33"),
            "framed by what was sent: {head}"
        );
        assert!(head.contains("content-range: bytes */58"), "{head}");
        assert_eq!(body, "invalid range: failed to overlap\n");
        let records = session.records();
        assert_eq!(records.len(), 1, "{records:?}");
        assert_eq!(records[0].status, 416);
        let note = records[0].note.as_deref().unwrap_or_default();
        assert!(
            note.starts_with("the backend announced 58 bytes, sent 33 and then failed (")
                && note.ends_with("); passed on as sent"),
            "{note}"
        );
    }

    /// An error answer framed right passes unchanged, without a note; so does a success.
    #[tokio::test]
    async fn well_framed_answers_pass_unchanged() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        for (answer, status, body) in [
            (&b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found"[..], "404", "not found"),
            (
                &b"HTTP/1.1 206 Partial Content\r\nContent-Length: 5\r\nContent-Range: bytes 5-9/58\r\n\r\n worl"[..],
                "206",
                " worl",
            ),
        ] {
            let answer: &'static [u8] = Box::leak(answer.to_vec().into_boxed_slice());
            let backend = raw_backend(answer).await;
            let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
            gateway.route("ok.ko-matrix.test", Route::Terminate { backend: Backend::http(backend) }).unwrap();
            let session = gateway.session().await.unwrap();
            let mut stream = TcpStream::connect(session.addr).await.unwrap();
            stream.write_all(b"GET http://ok.ko-matrix.test/v2/ HTTP/1.1\r\nHost: ok.ko-matrix.test\r\nConnection: close\r\n\r\n").await.unwrap();
            let mut got = Vec::new();
            tokio::time::timeout(std::time::Duration::from_secs(10), stream.read_to_end(&mut got))
                .await
                .unwrap()
                .unwrap();
            let got = String::from_utf8_lossy(&got).into_owned();
            assert!(got.starts_with(&format!("HTTP/1.1 {status}")), "{got}");
            assert!(got.ends_with(&format!("\r\n\r\n{body}")), "{got}");
            assert_eq!(session.records()[0].note, None);
        }
    }

    #[tokio::test]
    async fn a_record_file_gets_every_record_once_as_it_is_made() {
        let gateway = Gateway::new(Arc::new(Ca::new().unwrap()));
        let session = gateway.session().await.unwrap();
        proxied_get(&session, "http://before.example.com/v2/?token=s3cr3t").await;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("gateway.log");
        session.record_to_file(&file, |line| line.replace("s3cr3t", "****")).unwrap();
        let lines = || std::fs::read_to_string(&file).unwrap().lines().map(String::from).collect::<Vec<_>>();
        assert_eq!(lines().len(), 1, "the records made before the file was named: {:?}", lines());
        proxied_get(&session, "http://after.example.com/v2/").await;
        // Written as it was made: no flush or end of the session needed.
        let written = lines();
        let expected: Vec<String> = session.records().iter().map(|r| r.log_line().replace("s3cr3t", "****")).collect();
        assert_eq!(written, expected);
        assert!(
            written[0].starts_with("+")
                && written[0].contains("ms GET before.example.com/v2/?token=**** → 403 (unknown host: refused"),
            "{written:?}"
        );
        assert!(written[1].contains("GET after.example.com/v2/ → 403"), "{written:?}");
    }
}
