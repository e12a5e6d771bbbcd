//! A session's own registry addresses ("sites"): a registry that listens at one `host:port`
//! and speaks one scheme, as users run them (`localhost:5000` over plain HTTP, Harbor on a
//! private IP, a token service on another port). A site is reached through the proxy (a name
//! or address Go proxies) or at a listener of the session itself (a loopback address, which Go
//! never proxies), and every request is recorded like the proxy's.
//!
//! Unlike the run's virtual hosts, a site never papers over a scheme mismatch: a TLS client
//! at a plain-HTTP site gets the bytes a Go HTTP server sends it, and a plain client at an
//! HTTPS site gets the bytes a Go TLS server sends it (both observed from distribution,
//! `docs/registry-topologies.md`), so each client fails with its own real error. Ports a site
//! does not serve answer as closed.

use std::collections::HashMap;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};

use hyper::body::Incoming;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};

use super::{forward, Backend, DroppedOnPurpose, Inner, Recorder};
use crate::wire::Body;

/// What a site speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scheme {
    Http,
    Https,
}

impl Scheme {
    pub fn as_str(self) -> &'static str {
        match self {
            Scheme::Http => "http",
            Scheme::Https => "https",
        }
    }

    /// The port a URL of this scheme means when it names none.
    pub fn default_port(self) -> u16 {
        match self {
            Scheme::Http => 80,
            Scheme::Https => 443,
        }
    }
}

/// A registry (or token service) at one address of a session.
#[derive(Debug, Clone)]
pub struct Site {
    pub backend: Backend,
    pub scheme: Scheme,
    /// Replaces the scheme and authority of the `realm` in the backend's `WWW-Authenticate`
    /// challenges (`https://10.90.0.9:5001`), keeping its path: the token service
    /// the deployment's configuration names (another host, another port, an IP literal).
    pub realm: Option<String>,
}

/// What Go's `net/http` server writes to a connection whose first bytes are not HTTP (a TLS
/// ClientHello), then closes it: golang/go `src/net/http/server.go` (`(*conn).serve`).
pub(crate) const HTTP_SERVER_ANSWER_TO_TLS: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n400 Bad Request";

/// What Go's TLS server writes to a plain-HTTP request, then closes: the same file.
pub(crate) const TLS_SERVER_ANSWER_TO_HTTP: &[u8] =
    b"HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n";

/// The body of [`TLS_SERVER_ANSWER_TO_HTTP`], for a plain request that came through the proxy.
pub(crate) const TLS_SERVER_REFUSAL: &str = "Client sent an HTTP request to an HTTPS server.\n";

/// The first byte of a TLS record carrying a handshake (RFC 8446 §5.1, `ContentType`).
const TLS_HANDSHAKE: u8 = 0x16;

/// A session's sites, by `host:port` (lower case).
#[derive(Default, Clone)]
pub(crate) struct Sites(Arc<RwLock<HashMap<String, Site>>>);

impl Sites {
    pub(crate) fn insert(&self, host: &str, port: u16, site: Site) {
        self.0.write().expect("sites lock").insert(key(host, port), site);
    }

    pub(crate) fn get(&self, host: &str, port: u16) -> Option<Site> {
        self.0.read().expect("sites lock").get(&key(host, port)).cloned()
    }

    /// Whether some site of the session has this host name: its other ports are closed, and
    /// the run's virtual host of the same name does not answer for it.
    pub(crate) fn has_host(&self, host: &str) -> bool {
        let prefix = format!("{}:", host.to_ascii_lowercase());
        self.0.read().expect("sites lock").keys().any(|k| k.starts_with(&prefix))
    }
}

fn key(host: &str, port: u16) -> String {
    format!("{}:{port}", host.to_ascii_lowercase())
}

/// How records name an address: the host alone at its scheme's usual ports, as clients
/// write it (`registry.local:5000`, `anonymous.ko-matrix.test`).
pub fn authority(host: &str, port: u16) -> String {
    match port {
        80 | 443 => host.to_string(),
        _ if host.contains(':') => format!("[{host}]:{port}"),
        _ => format!("{host}:{port}"),
    }
}

/// Serves one connection to `site` (after a CONNECT, or at a listener of the session): TLS or
/// plain as the site speaks, and a client speaking the other answered as a Go server would.
/// `name` is how records name the site; `tls_host` is the name its certificate is for.
pub(crate) async fn serve_connection<S>(
    stream: S,
    site: Site,
    name: String,
    tls_host: String,
    inner: Arc<Inner>,
    recorder: Recorder,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut stream = Prefixed { first: None, stream };
    let mut first = [0u8; 1];
    // A client that hangs up before sending anything (a spare connection) made no request.
    if stream.stream.read_exact(&mut first).await.is_err() {
        return;
    }
    stream.first = Some(first[0]);
    let hello = first[0] == TLS_HANDSHAKE;
    match (site.scheme, hello) {
        (Scheme::Http, true) => {
            recorder.record(
                &name,
                "TLS",
                "",
                400,
                Some("a TLS hello to a plain-HTTP registry: answered 400 as Go's HTTP server does".into()),
            );
            let _ = stream.write_all(HTTP_SERVER_ANSWER_TO_TLS).await;
            let _ = stream.shutdown().await;
        }
        (Scheme::Https, false) => {
            let (method, path) = request_line(&mut stream).await;
            recorder.record(
                &name,
                &method,
                &path,
                400,
                Some("plain HTTP to an HTTPS registry: answered 400 as Go's TLS server does".into()),
            );
            let _ = stream.write_all(TLS_SERVER_ANSWER_TO_HTTP).await;
            let _ = stream.shutdown().await;
        }
        (Scheme::Http, false) => serve_requests(stream, site, name, inner, recorder).await,
        (Scheme::Https, true) => {
            let config = match inner.tls_config(&tls_host) {
                Ok(config) => config,
                Err(e) => {
                    let failure = format!("gateway could not mint a certificate for {tls_host}: {e}");
                    recorder.record_infra(&name, "TLS", "", 500, failure);
                    return;
                }
            };
            match tokio_rustls::TlsAcceptor::from(config).accept(stream).await {
                Ok(tls) => serve_requests(tls, site, name, inner, recorder).await,
                Err(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => {
                    recorder.record(&name, "TLS", "", 0, Some(format!("handshake failed: {e}")));
                }
                Err(_) => {}
            }
        }
    }
}

/// The method and path of a plain request's first line, as far as it arrived (for the record).
async fn request_line<S: AsyncRead + Unpin>(stream: &mut S) -> (String, String) {
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let read = async {
        while line.len() < 1024 && stream.read_exact(&mut byte).await.is_ok() && byte[0] != b'\n' {
            line.push(byte[0]);
        }
    };
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), read).await;
    let line = String::from_utf8_lossy(&line).into_owned();
    let mut words = line.split_whitespace();
    let method = words.next().unwrap_or("PLAIN").to_string();
    (method, words.next().unwrap_or_default().to_string())
}

async fn serve_requests<S>(stream: S, site: Site, name: String, inner: Arc<Inner>, recorder: Recorder)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let scheme = site.scheme.as_str();
    let service = hyper::service::service_fn(move |req: Request<Incoming>| {
        let (inner, recorder, name, site) = (inner.clone(), recorder.clone(), name.clone(), site.clone());
        async move { serve_request(req, &name, scheme, &site, &inner, &recorder).await }
    });
    let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
}

/// One request to a site, arrived in the scheme the site speaks.
pub(crate) async fn serve_request(
    req: Request<Incoming>,
    name: &str,
    scheme: &str,
    site: &Site,
    inner: &Inner,
    recorder: &Recorder,
) -> Result<Response<Body>, DroppedOnPurpose> {
    let mut response = forward(req, name, scheme, &site.backend, inner, recorder).await?;
    if let Some(realm) = &site.realm {
        let rewritten: Vec<_> = response
            .headers()
            .get_all(hyper::header::WWW_AUTHENTICATE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(|challenge| with_realm(challenge, realm))
            .collect();
        if !rewritten.is_empty() {
            response.headers_mut().remove(hyper::header::WWW_AUTHENTICATE);
            for value in rewritten.into_iter().filter_map(|v| hyper::header::HeaderValue::from_str(&v).ok()) {
                response.headers_mut().append(hyper::header::WWW_AUTHENTICATE, value);
            }
        }
    }
    Ok(response)
}

/// `challenge` with the scheme and authority of its `realm="…"` replaced by `origin`.
pub(crate) fn with_realm(challenge: &str, origin: &str) -> String {
    let Some(start) = challenge.find("realm=\"") else { return challenge.to_string() };
    let value = start + "realm=\"".len();
    let Some(len) = challenge[value..].find('"') else { return challenge.to_string() };
    let realm = &challenge[value..value + len];
    let path = realm.split_once("://").map_or("", |(_, rest)| rest.find('/').map_or("", |at| &rest[at..]));
    format!("{}{origin}{path}{}", &challenge[..value], &challenge[value + len..])
}

/// A stream whose first byte was read ahead to tell TLS from plain HTTP, and is given back.
struct Prefixed<S> {
    first: Option<u8>,
    stream: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Prefixed<S> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        if let Some(first) = self.first.take() {
            buf.put_slice(&[first]);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.stream).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Prefixed<S> {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_name_the_configured_realm() {
        let challenge = r#"Bearer realm="https://auth.ko-matrix.test/token",service="token.ko-matrix.test",scope="repository:a:pull""#;
        assert_eq!(
            with_realm(challenge, "http://10.89.0.9:5001"),
            r#"Bearer realm="http://10.89.0.9:5001/token",service="token.ko-matrix.test",scope="repository:a:pull""#
        );
        assert_eq!(with_realm("Basic", "x"), "Basic");
        let harbor = r#"Bearer realm="https://harbor.example.internal/service/token",service="harbor-registry""#;
        assert_eq!(
            with_realm(harbor, "https://harbor.example.internal:5001"),
            r#"Bearer realm="https://harbor.example.internal:5001/service/token",service="harbor-registry""#
        );
    }

    #[test]
    fn addresses_are_named_as_clients_write_them() {
        assert_eq!(authority("registry.local", 5000), "registry.local:5000");
        assert_eq!(authority("anonymous.ko-matrix.test", 443), "anonymous.ko-matrix.test");
        assert_eq!(authority("anonymous.ko-matrix.test", 80), "anonymous.ko-matrix.test");
        assert_eq!(authority("::1", 5000), "[::1]:5000");
    }
}
