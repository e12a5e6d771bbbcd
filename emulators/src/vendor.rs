//! One part of the emulated world: a vendor's services, started against a backend registry,
//! serving its hosts behind the gateway and opening a cell per gateway session. A caller
//! starts the parts its clients need — each vendor's module has a [`Start`] (`github::start`)
//! — and treats every part alike: [`WorldPart::routes`] for the gateway, [`WorldPart::services`]
//! for health probes, [`WorldPart::open_cell`] for each client under test.
//!
//! The token-auth vendors (ghcr.io, Docker Hub, gcr.io, ACR) are all a [`Registry`]: a
//! [`Front`] with its [`Vendor`], and the vendor's [`IdentityService`] if it has one.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;

use crate::aws::state::AwsSpec;
use crate::bearer::{Account, AccountSpec, CellIdentity, CellTables, Front, IdentityService, Vendor};
use crate::gateway::{Backend, GatewayError, Session};
use crate::loopback::LoopbackServer;

/// What a part is started against.
pub struct Backing {
    /// The distribution registry (plain HTTP, anonymous) the part stores images in.
    pub registry: SocketAddr,
    /// The AWS accounts and regions the clients under test use (ECR's host names name them).
    pub aws: Vec<AwsSpec>,
}

/// Why a part did not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// One of its servers could not listen (`service`: `ghcr.io front`, `AWS emulator`).
    #[error("serving {service}: {source}")]
    Serving { service: String, source: std::io::Error },
    /// A key it needs could not be generated.
    #[error("{0}")]
    Key(String),
}

/// A part, starting.
pub type Starting = BoxFuture<'static, Result<Arc<dyn WorldPart>, StartError>>;

/// How a vendor's part starts: each vendor's module has one (`github::start`).
pub type Start = fn(Backing) -> Starting;

/// A repository anyone may pull, shared by every cell (Docker Hub's `ko-matrix/base`), which the
/// caller fills with the run's base image.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicImage {
    /// Where it lives in the backend registry.
    pub backend_repository: String,
    /// Its name as clients write it, without a tag or digest (`docker.io/ko-matrix/base`).
    pub reference: String,
}

/// Who a cell is at a part: its `[account]` and its identity tables.
#[derive(Debug, Clone, Default)]
pub struct CellSpec {
    pub account: AccountSpec,
    pub tables: CellTables,
}

/// A vendor's emulation in a run: what it serves where, and a cell per gateway session.
pub trait WorldPart: Send + Sync + 'static {
    /// What infra-error details call the registry its pushes land in (`ghcr.io front backend`).
    fn store(&self) -> String;
    /// Its servers, as infra-error details name them, in the order they are probed (the
    /// backend registry, which the caller runs, is not one).
    fn services(&self) -> Vec<(String, SocketAddr)>;
    /// Every host the gateway routes to it (the certificates the gateway makes follow), with
    /// where the host's requests go.
    fn routes(&self) -> Vec<(String, Backend)>;
    /// Another part, at `addr`, serves `host` too (AWS's IMDS shares Azure's address): `true`
    /// when this part takes the host's requests and hands on the ones it does not answer, so
    /// the gateway routes `host` here.
    fn share_host(&self, _host: &str, _addr: SocketAddr) -> bool {
        false
    }
    /// Its public repository, if it has one.
    fn public_image(&self) -> Option<PublicImage> {
        None
    }
    /// Opens the cell behind gateway `session`: its account, and its identity at the vendor's
    /// identity services; closed when the [`VendorCell`] drops. Opened again on the same
    /// session, the cell gets another account in the same registry (without identity services).
    /// `None` where the part keeps no accounts (ECR's cells are AWS accounts with keys, opened
    /// by its caller).
    fn open_cell<'a>(
        &'a self,
        _session: &'a Session,
        _cell: &'a CellSpec,
    ) -> BoxFuture<'a, Result<Option<VendorCell>, GatewayError>> {
        Box::pin(async { Ok(None) })
    }
}

/// A token-auth vendor's part: its registry front and identity services, serving until dropped.
pub struct Registry {
    /// The vendor's name (`ghcr.io`, `docker.io`): its services are `<host> front` and
    /// `<host> identity services`.
    host: &'static str,
    front: Arc<Front>,
    store: &'static str,
    identity: Option<Arc<dyn IdentityService>>,
    /// Its public repository's name (`ko-matrix/base`), if it has one.
    public: Option<&'static str>,
    /// The front's server, then the identity services'.
    servers: Vec<LoopbackServer>,
}

impl Registry {
    /// Starts `vendor`'s front (`store` names its backend registry) and `identity`.
    pub async fn start(
        host: &'static str,
        vendor: Box<dyn Vendor>,
        store: &'static str,
        identity: Option<Arc<dyn IdentityService>>,
        backing: &Backing,
    ) -> Result<Registry, StartError> {
        let front = Front::new(vendor, backing.registry, store);
        let serving = |service: String| move |source| StartError::Serving { service, source };
        let mut servers = vec![front.clone().serve().await.map_err(serving(format!("{host} front")))?];
        if let Some(identity) = &identity {
            let server = crate::bearer::serve_identity(identity.clone())
                .await
                .map_err(serving(format!("{host} identity services")))?;
            servers.push(server);
        }
        Ok(Registry { host, front, store, identity, public: None, servers })
    }

    /// The vendor has a public repository `name` (Docker Hub's `ko-matrix/base`).
    pub fn with_public(self, name: &'static str) -> Registry {
        Registry { public: Some(name), ..self }
    }

    fn identity_service(&self) -> String {
        format!("{} identity services", self.host)
    }
}

impl WorldPart for Registry {
    fn store(&self) -> String {
        self.store.into()
    }

    fn services(&self) -> Vec<(String, SocketAddr)> {
        let mut services = vec![(format!("{} front", self.host), self.servers[0].addr)];
        services.extend(self.servers.get(1).map(|s| (self.identity_service(), s.addr)));
        services
    }

    fn routes(&self) -> Vec<(String, Backend)> {
        let front = Backend::http(self.servers[0].addr).named(format!("{} front", self.host));
        let mut routes: Vec<(String, Backend)> =
            self.front.hosts().iter().map(|h| (h.to_string(), front.clone())).collect();
        if let (Some(identity), Some(server)) = (&self.identity, self.servers.get(1)) {
            let backend = Backend::http(server.addr).named(self.identity_service());
            routes.extend(identity.hosts().iter().map(|h| (h.to_string(), backend.clone())));
        }
        routes
    }

    fn share_host(&self, host: &str, addr: SocketAddr) -> bool {
        match &self.identity {
            Some(identity) if identity.hosts().contains(&host) => {
                identity.share_host(host, addr);
                true
            }
            _ => false,
        }
    }

    fn public_image(&self) -> Option<PublicImage> {
        self.public.map(|name| PublicImage {
            backend_repository: format!("{}/{name}", self.front.public_prefix()),
            reference: format!("{}/{name}", self.host),
        })
    }

    fn open_cell<'a>(
        &'a self,
        session: &'a Session,
        cell: &'a CellSpec,
    ) -> BoxFuture<'a, Result<Option<VendorCell>, GatewayError>> {
        Box::pin(async move {
            // A second account of the cell (a copy within one registry) has its registry
            // credential only: the identity services keep the first account's cell.
            let second = self.front.has_cell(session.id);
            let account = self.front.open_cell(session.id, cell.account.clone());
            let identity_values = match &self.identity {
                Some(_) if second => CellIdentity::default(),
                Some(identity) => {
                    let direct = match identity.direct_host() {
                        Some(host) => Some(session.serve_as(host).await?),
                        None => None,
                    };
                    identity.open_cell(session.id, account.clone(), &cell.tables, direct)
                }
                None => CellIdentity::default(),
            };
            Ok(Some(VendorCell {
                account,
                front: self.front.clone(),
                identity: self.identity.clone().filter(|_| !second),
                session: session.id,
                identity_values,
            }))
        })
    }
}

/// A cell's account at a vendor registry; dropping it closes the account.
pub struct VendorCell {
    front: Arc<Front>,
    identity: Option<Arc<dyn IdentityService>>,
    session: u64,
    pub account: Arc<Account>,
    /// What the vendor's identity services gave the cell.
    pub identity_values: CellIdentity,
}

impl VendorCell {
    /// REGISTRY, USER and PASSWORD (the account's credential), and the identity services'
    /// placeholders, for scenarios.
    pub fn values(&self) -> BTreeMap<&'static str, String> {
        let mut values = BTreeMap::from([
            ("REGISTRY", self.front.registry_host().to_string()),
            ("USER", self.account.spec.user.clone()),
            ("PASSWORD", self.account.secret.clone()),
        ]);
        values.extend(self.identity_values.values.clone());
        values
    }

    /// The repository the cell pushes to, `<owner>/<path>`, and where it lands in the backend.
    pub fn repositories(&self, path: &str) -> (String, String) {
        let repository = self.front.repository_for(self.account.spec.owner(), path);
        let backend = format!("{}/{repository}", self.account.backend_prefix);
        (repository, backend)
    }
}

impl Drop for VendorCell {
    fn drop(&mut self) {
        self.front.close_cell(self.session);
        if let Some(identity) = &self.identity {
            identity.close_cell(self.session);
        }
    }
}

/// The gateway's routes for `parts`, each host once: where two parts serve a host, the one that
/// shares it ([`WorldPart::share_host`]) takes it, else the later part.
pub fn routes(parts: &[Arc<dyn WorldPart>]) -> Vec<(String, Backend)> {
    let mut routed: BTreeMap<String, (usize, Backend)> = BTreeMap::new();
    for (i, part) in parts.iter().enumerate() {
        for (host, backend) in part.routes() {
            let taken = match routed.get(&host) {
                Some((j, other)) if *j != i => {
                    if parts[*j].share_host(&host, backend.addr) {
                        None
                    } else {
                        part.share_host(&host, other.addr);
                        Some((i, backend))
                    }
                }
                _ => Some((i, backend)),
            };
            if let Some(route) = taken {
                routed.insert(host, route);
            }
        }
    }
    routed.into_iter().map(|(host, (_, backend))| (host, backend)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    /// A part serving `hosts` at `addr`, sharing `shares` (and noting what it was handed).
    struct Fake {
        addr: SocketAddr,
        hosts: &'static [&'static str],
        shares: Option<&'static str>,
        shared: Mutex<Vec<(String, SocketAddr)>>,
    }

    impl WorldPart for Fake {
        fn store(&self) -> String {
            "fake".into()
        }
        fn services(&self) -> Vec<(String, SocketAddr)> {
            Vec::new()
        }
        fn routes(&self) -> Vec<(String, Backend)> {
            self.hosts.iter().map(|h| (h.to_string(), Backend::http(self.addr))).collect()
        }
        fn share_host(&self, host: &str, addr: SocketAddr) -> bool {
            let shares = self.shares == Some(host);
            if shares {
                self.shared.lock().unwrap().push((host.into(), addr));
            }
            shares
        }
    }

    fn fake(port: u16, hosts: &'static [&'static str], shares: Option<&'static str>) -> Arc<Fake> {
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        Arc::new(Fake { addr, hosts, shares, shared: Mutex::new(Vec::new()) })
    }

    fn routed(parts: &[Arc<dyn WorldPart>]) -> Vec<(String, u16)> {
        routes(parts).into_iter().map(|(host, backend)| (host, backend.addr.port())).collect()
    }

    #[test]
    fn a_shared_host_goes_to_the_part_that_shares_it_whichever_starts_first() {
        let imds = "169.254.169.254";
        for azure_first in [true, false] {
            let azure = fake(1, &["login.example", "169.254.169.254"], Some(imds));
            let aws = fake(2, &["sts.example", "169.254.169.254"], None);
            let parts: Vec<Arc<dyn WorldPart>> =
                if azure_first { vec![azure.clone(), aws.clone()] } else { vec![aws.clone(), azure.clone()] };
            assert_eq!(
                routed(&parts),
                [("169.254.169.254".into(), 1), ("login.example".into(), 1), ("sts.example".into(), 2)]
            );
            assert_eq!(*azure.shared.lock().unwrap(), [(imds.to_string(), aws.addr)], "AWS answers the rest");
        }
    }

    #[test]
    fn hosts_no_part_shares_go_to_the_later_part() {
        let parts: Vec<Arc<dyn WorldPart>> = vec![fake(1, &["a", "b"], None), fake(2, &["b"], None)];
        assert_eq!(routed(&parts), [("a".into(), 1), ("b".into(), 2)]);
    }
}
