//! The embedded AWS emulator: ECR's API and registry front, reached only through the
//! gateway under the real AWS hostnames, so unmodified clients (ko's built-in ECR helper,
//! `docker-credential-ecr-login`, the AWS CLI, crane) engage exactly as in production.
//!
//! One loopback server answers every AWS host; the gateway tells it which cell a request
//! belongs to (the `x-ko-matrix-session` header it adds), and each cell has its own AWS
//! state ([`state::AwsCell`]): its keys, passwords, repositories and images.

pub mod auth;
pub mod ecr_api;
pub mod ecr_registry;
pub mod iam;
pub mod instance;
pub mod oidc;
pub mod policy;
pub mod sigv4;
pub mod state;
pub mod sts;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use time::OffsetDateTime;

use crate::loopback::LoopbackServer;
use crate::registry_front::Backend;
use state::{AwsCell, AwsSpec};

use crate::cells::Cells;
use crate::wire::{self, full, Body};

/// `Date` header format.
pub(crate) fn http_date(t: OffsetDateTime) -> String {
    let f = time::macros::format_description!(
        "[weekday repr:short], [day] [month repr:short] [year] [hour]:[minute]:[second] GMT"
    );
    t.format(&f).expect("UTC formats")
}

pub(crate) fn request_id() -> String {
    let n: u128 = rand::random();
    let h = format!("{n:032x}");
    format!("{}-{}-{}-{}-{}", &h[..8], &h[8..12], &h[12..16], &h[16..20], &h[20..])
}

/// What an AWS host name means.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AwsHost {
    /// `api.ecr.<region>.amazonaws.com`
    EcrApi { region: String },
    /// `<account>.dkr.ecr.<region>.amazonaws.com`
    EcrRegistry { account: String, region: String },
    /// `sts.amazonaws.com` (signed for us-east-1) or `sts.<region>.amazonaws.com`
    Sts { region: String },
    /// The instance metadata service.
    Imds,
}

/// `amazonaws.com`, or `amazonaws.com.cn` in the China partition.
pub(crate) fn dns_suffix(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    }
}

/// The ARN partition of a region.
pub(crate) fn partition(region: &str) -> &'static str {
    if region.starts_with("cn-") {
        "aws-cn"
    } else {
        "aws"
    }
}

/// The IMDS address SDKs use.
pub const IMDS_HOST: &str = "169.254.169.254";

impl AwsHost {
    pub(crate) fn parse(host: &str) -> Option<AwsHost> {
        let host = host.split(':').next().unwrap_or(host).to_ascii_lowercase();
        if host == IMDS_HOST {
            return Some(AwsHost::Imds);
        }
        if host == "sts.amazonaws.com" {
            return Some(AwsHost::Sts { region: "us-east-1".into() });
        }
        if let Some(region) = host.strip_prefix("sts.").and_then(|r| r.strip_suffix(".amazonaws.com")) {
            return Some(AwsHost::Sts { region: region.into() });
        }
        // Partition suffixes the ECR helper recognises for these names.
        let rest = host.strip_suffix(".amazonaws.com").or_else(|| host.strip_suffix(".amazonaws.com.cn"))?;
        if let Some(region) = rest.strip_prefix("api.ecr.").or_else(|| rest.strip_prefix("api.ecr-fips.")) {
            return (!region.contains('.')).then(|| AwsHost::EcrApi { region: region.into() });
        }
        let (account, region) = rest.split_once(".dkr.ecr.").or_else(|| rest.split_once(".dkr.ecr-fips."))?;
        (account.len() == 12 && account.chars().all(|c| c.is_ascii_digit()) && !region.contains('.'))
            .then(|| AwsHost::EcrRegistry { account: account.into(), region: region.into() })
    }
}

pub struct Emulator {
    cells: Cells<AwsCell>,
    /// Mints and verifies web identity tokens.
    pub oidc: oidc::OidcIssuer,
    /// The distribution registry behind every emulated ECR registry (plain HTTP, anonymous).
    backend: Backend,
}

impl Emulator {
    pub fn new(backend: SocketAddr) -> Arc<Emulator> {
        Arc::new(Emulator {
            cells: Cells::default(),
            oidc: oidc::OidcIssuer::new(),
            backend: Backend::new(backend, "ECR front backend"),
        })
    }

    /// Gives the cell behind gateway session `session` its AWS world: its repositories hold
    /// the scenario's `images`, each tag the upstream base image. `Err` is the backend
    /// registry's failure to take them.
    pub async fn open_cell(&self, session: u64, spec: AwsSpec) -> Result<Arc<AwsCell>, String> {
        let cell = Arc::new(AwsCell::new(spec, format!("cell-{session}")));
        let from = upstream::backend_repository(upstream::PUBLIC_ECR, upstream::PUBLIC_BASE);
        for repository in &cell.spec.repositories {
            for tag in &cell.spec.images {
                let to = format!("{}/{repository}", cell.backend_prefix);
                let copied = upstream::copy(&self.backend, &from, &to, "latest", Some(tag))
                    .await
                    .map_err(|e| format!("seeding {repository}:{tag} from {from}: {e}"))?;
                let mut repos = cell.repositories.lock().expect("repositories lock");
                let repo = repos.get_mut(repository).expect("the spec's repositories exist");
                for (i, c) in copied.iter().enumerate() {
                    repo.record(&c.digest, (i == 0).then_some(tag.as_str()), &c.media_type, &c.manifest);
                }
            }
        }
        Ok(self.cells.open(session, cell))
    }

    /// Imports upstream `upstream_repository`'s `reference` into the cell's `repository`
    /// (a pull through cache's first pull of it), creating the repository with the settings
    /// of a `PULL_THROUGH_CACHE` template. `Ok(false)`: the upstream has no such image.
    pub(crate) async fn import(
        &self,
        cell: &AwsCell,
        url: &str,
        upstream_repository: &str,
        repository: &str,
        reference: &str,
    ) -> Result<bool, String> {
        let from = upstream::backend_repository(url, upstream_repository);
        let to = format!("{}/{repository}", cell.backend_prefix);
        let tag = (!reference.starts_with("sha256:")).then_some(reference);
        let copied = match upstream::copy(&self.backend, &from, &to, reference, tag).await {
            Ok(copied) => copied,
            Err(upstream::CopyError::NotFound(_)) => return Ok(false),
            Err(e) => return Err(e.to_string()),
        };
        let template = cell.template_for(repository, state::AppliedFor::PullThroughCache);
        let mut repos = cell.repositories.lock().expect("repositories lock");
        let repo = repos.entry(repository.to_string()).or_insert_with(|| match template {
            Some(t) => state::Repository::new(t.image_tag_mutability, t.repository_policy),
            None => state::Repository::new(state::TagMutability::Mutable, None),
        });
        for (i, c) in copied.iter().enumerate() {
            repo.record(&c.digest, if i == 0 { tag } else { None }, &c.media_type, &c.manifest);
        }
        Ok(true)
    }

    pub fn close_cell(&self, session: u64) {
        self.cells.close(session);
    }

    fn cell_for<B>(&self, req: &Request<B>) -> Option<Arc<AwsCell>> {
        let session = wire::session(req.headers())?;
        self.cells.get(session)
    }

    /// Serves every emulated AWS host on a free loopback port.
    pub async fn serve(self: Arc<Self>) -> std::io::Result<LoopbackServer> {
        crate::loopback::serve(move |req| {
            let emulator = self.clone();
            async move { emulator.dispatch(req).await }
        })
        .await
    }

    /// The path of a cell's container credentials endpoint on this server.
    pub fn container_credentials_path(session: u64) -> String {
        format!("/ecs/{session}/credentials")
    }

    async fn dispatch(&self, req: Request<Incoming>) -> Response<Body> {
        let host = req.headers().get("host").and_then(|h| h.to_str().ok()).unwrap_or_default().to_string();
        // Container credentials are fetched straight from loopback (SDKs never proxy it),
        // so the cell is named in the path rather than by the gateway.
        if let Some(session) = req
            .uri()
            .path()
            .strip_prefix("/ecs/")
            .and_then(|r| r.strip_suffix("/credentials"))
            .and_then(|s| s.parse::<u64>().ok())
        {
            let cell = self.cells.get(session);
            return instance::container_credentials(cell.as_deref(), &req.into_parts().0);
        }
        let cell = self.cell_for(&req);
        match AwsHost::parse(&host) {
            Some(AwsHost::Imds) => instance::imds(cell.as_deref(), &req.into_parts().0),
            Some(AwsHost::Sts { region }) => {
                let (parts, body) = req.into_parts();
                match Limited::new(body, 1 << 20).collect().await {
                    Ok(body) => sts::handle(self, cell.as_deref(), &region, &parts, &body.to_bytes()),
                    Err(_) => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                }
            }
            Some(AwsHost::EcrApi { region }) => {
                let (parts, body) = req.into_parts();
                match Limited::new(body, 1 << 20).collect().await {
                    Ok(body) => ecr_api::handle(self, cell.as_deref(), &region, &parts, body.to_bytes()).await,
                    Err(_) => plain(StatusCode::PAYLOAD_TOO_LARGE, "request body too large"),
                }
            }
            Some(AwsHost::EcrRegistry { account, region }) => {
                ecr_registry::handle(self, cell, &host, &account, &region, req).await
            }
            None => plain(StatusCode::NOT_FOUND, format!("ko-matrix AWS emulator: no service at {host}")),
        }
    }

    /// The manifest stored for `cell`'s `repository` at `reference`, with its media type.
    pub(crate) async fn backend_manifest(
        &self,
        cell: &AwsCell,
        repository: &str,
        reference: &str,
    ) -> Result<(String, String), String> {
        let uri = format!("http://{}/v2/{}/{repository}/manifests/{reference}", self.backend.addr, cell.backend_prefix);
        let req = Request::get(&uri)
            .header("accept", ecr_registry::MANIFEST_TYPES)
            .body(full(Bytes::new()))
            .expect("a valid request");
        let response = self.backend.client().request(req).await.map_err(|e| format!("GET {uri}: {e}"))?;
        let media_type =
            response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or_default().to_string();
        let status = response.status();
        let body = response.into_body().collect().await.map_err(|e| format!("GET {uri}: {e}"))?.to_bytes();
        if !status.is_success() {
            return Err(format!("GET {uri} answered {status}"));
        }
        Ok((String::from_utf8_lossy(&body).into_owned(), media_type))
    }
}

pub(crate) fn plain(status: StatusCode, text: impl Into<String>) -> Response<Body> {
    let mut response = Response::new(full(Bytes::from(text.into())));
    *response.status_mut() = status;
    response
}

/// The `aws_access_key_id = …` values of an AWS shared config or credentials file; a
/// commented-out line sets nothing.
pub fn shared_file_access_key_ids(text: &str) -> impl Iterator<Item = &str> {
    text.lines().filter_map(|line| {
        let (key, value) = line.trim().split_once('=')?;
        let id = value.split_whitespace().next()?;
        key.trim().eq_ignore_ascii_case("aws_access_key_id").then_some(id)
    })
}

/// The AWS part of a world ([`crate::vendor`]): the emulator, serving every AWS host the
/// clients' accounts and regions name, and IMDS.
pub struct AwsWorld {
    pub emulator: Arc<Emulator>,
    server: LoopbackServer,
    /// The distribution registry behind every emulated ECR registry.
    registry: SocketAddr,
    hosts: std::collections::BTreeSet<String>,
}

impl AwsWorld {
    pub async fn start(backing: crate::vendor::Backing) -> Result<Arc<AwsWorld>, crate::vendor::StartError> {
        let emulator = Emulator::new(backing.registry);
        let server = emulator
            .clone()
            .serve()
            .await
            .map_err(|source| crate::vendor::StartError::Serving { service: "AWS emulator".into(), source })?;
        let hosts = backing
            .aws
            .iter()
            .flat_map(|a| {
                [
                    a.registry_host(),
                    a.api_host(),
                    format!("sts.{}.amazonaws.com", a.region),
                    "sts.amazonaws.com".into(),
                    IMDS_HOST.into(),
                ]
            })
            .collect();
        Ok(Arc::new(AwsWorld { emulator, server, registry: backing.registry, hosts }))
    }

    /// The emulator's address (the cells' container credentials endpoint is there).
    pub fn addr(&self) -> SocketAddr {
        self.server.addr
    }

    /// The distribution registry behind every emulated ECR registry.
    pub fn registry(&self) -> SocketAddr {
        self.registry
    }
}

impl crate::vendor::WorldPart for AwsWorld {
    fn store(&self) -> String {
        "ECR front backend".into()
    }

    /// The emulated ECR Public's base image, which pull through caches and seeded tags copy.
    fn public_image(&self) -> Option<crate::vendor::PublicImage> {
        Some(crate::vendor::PublicImage {
            backend_repository: upstream::backend_repository(upstream::PUBLIC_ECR, upstream::PUBLIC_BASE),
            reference: format!("{}/{}", upstream::PUBLIC_ECR, upstream::PUBLIC_BASE),
        })
    }

    fn services(&self) -> Vec<(String, SocketAddr)> {
        vec![("AWS emulator".into(), self.server.addr)]
    }

    fn routes(&self) -> Vec<(String, crate::gateway::Backend)> {
        let backend = crate::gateway::Backend::http(self.server.addr).named("AWS emulator");
        self.hosts.iter().map(|host| (host.clone(), backend.clone())).collect()
    }
}

/// ECR's part of a world ([`crate::vendor`]), on the embedded emulator.
pub fn start(backing: crate::vendor::Backing) -> crate::vendor::Starting {
    Box::pin(async move { Ok(AwsWorld::start(backing).await? as Arc<dyn crate::vendor::WorldPart>) })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_hosts() {
        assert_eq!(
            AwsHost::parse("api.ecr.us-east-1.amazonaws.com"),
            Some(AwsHost::EcrApi { region: "us-east-1".into() })
        );
        assert_eq!(
            AwsHost::parse("123456789012.dkr.ecr.eu-west-1.amazonaws.com:443"),
            Some(AwsHost::EcrRegistry { account: "123456789012".into(), region: "eu-west-1".into() })
        );
        assert_eq!(AwsHost::parse("12345.dkr.ecr.eu-west-1.amazonaws.com"), None);
        assert_eq!(AwsHost::parse("basic.ko-matrix.test"), None);
        assert_eq!(AwsHost::parse("sts.amazonaws.com"), Some(AwsHost::Sts { region: "us-east-1".into() }));
        assert_eq!(AwsHost::parse("sts.eu-west-1.amazonaws.com"), Some(AwsHost::Sts { region: "eu-west-1".into() }));
        assert_eq!(AwsHost::parse("169.254.169.254"), Some(AwsHost::Imds));
        assert_eq!(
            AwsHost::parse("123456789012.dkr.ecr-fips.us-gov-west-1.amazonaws.com"),
            Some(AwsHost::EcrRegistry { account: "123456789012".into(), region: "us-gov-west-1".into() })
        );
        assert_eq!(
            AwsHost::parse("123456789012.dkr.ecr.cn-north-1.amazonaws.com.cn"),
            Some(AwsHost::EcrRegistry { account: "123456789012".into(), region: "cn-north-1".into() })
        );
        assert_eq!(
            AwsHost::parse("api.ecr.cn-north-1.amazonaws.com.cn"),
            Some(AwsHost::EcrApi { region: "cn-north-1".into() })
        );
    }

    #[test]
    fn http_dates() {
        let t = OffsetDateTime::from_unix_timestamp(1_440_938_160).unwrap();
        assert_eq!(http_date(t), "Sun, 30 Aug 2015 12:36:00 GMT");
    }
}
