//! How a cell addresses its registry and where its token service sits: the forms users write
//! (`localhost:5000`, `registry.local:5000`, `10.89.0.5:5000`, …), which of them a Go client
//! sends through the proxy and which it dials itself, and the names a hosts entry resolves
//! inside the cell. Pure: the cell opens what [`Placement`] says on its gateway session.
//!
//! Go never proxies `localhost` or a loopback IP literal (x/net `httpproxy.useProxy`), so those
//! forms get a listener of the cell's own session on the very address; every other form goes
//! through the proxy, which serves it as a site of the session. Names a CI runner would resolve
//! through a hosts entry also resolve inside the cell (its own `/etc/hosts`), to a loopback
//! address where the session listens too. `docs/registry-topologies.md` cites each rule.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use serde::Deserialize;

pub use ko_matrix_emulators::gateway::Scheme;

/// The form of the registry's address, `[target] address`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
pub enum Address {
    /// The flavour's own DNS name (`basic.ko-matrix.test`), at the scheme's usual port.
    #[default]
    #[serde(rename = "name")]
    Name,
    /// `localhost:<port>` (kind's local-registry recipe): dialled directly.
    #[serde(rename = "localhost")]
    Localhost,
    /// `127.0.0.1:<port>`: dialled directly.
    #[serde(rename = "127.0.0.1")]
    Loopback,
    /// Another loopback address, `127.77.<a>.<b>:5000`: dialled directly.
    #[serde(rename = "loopback-ip")]
    OtherLoopback,
    /// A private network's address, `10.89.<a>.<b>:5000` (RFC 1918): through the proxy.
    #[serde(rename = "private-ip")]
    PrivateIp,
    /// `registry.localhost:5000`: through the proxy (only `localhost` itself is exempt).
    #[serde(rename = "dot-localhost")]
    DotLocalhost,
    /// `registry.local:5000` (mDNS-style laptop name): through the proxy; a hosts entry.
    #[serde(rename = "dot-local")]
    DotLocal,
    /// `kind-registry:5000`, a bare single-label host name: through the proxy; a hosts entry.
    #[serde(rename = "single-label")]
    SingleLabel,
}

impl Address {
    pub const CHOICES: &'static str =
        "name, localhost, 127.0.0.1, loopback-ip, private-ip, dot-localhost, dot-local, single-label";
}

/// Where the token service of a `token` registry sits, `[target] token_service`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TokenService {
    /// A name of its own over HTTPS (`https://auth.ko-matrix.test/token`), as Docker Hub's.
    #[default]
    OtherHost,
    /// The registry's host at port 5001 (`https://registry.local:5001/token`).
    OtherPort,
    /// A private IP literal (`https://10.90.<a>.<b>:5001/token`).
    IpLiteral,
    /// Its own name over plain HTTP (`http://auth.ko-matrix.test/token`).
    PlainHttp,
}

/// The port registries in these recipes listen on (kind's, distribution's default).
const REGISTRY_PORT: u16 = 5000;
/// Where a token service beside the registry listens.
const TOKEN_PORT: u16 = 5001;

/// How a client reaches one address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    /// Through the proxy, as the session's site `host:port`.
    Proxied { host: String, port: u16 },
    /// At a listener of the session bound to `bind` (port 0: any free port), named `host`.
    Direct { bind: SocketAddr, host: String },
}

/// Which service of the world a site stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    Registry,
    TokenService,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SitePlan {
    pub role: Role,
    pub scheme: Scheme,
    pub reach: Vec<Reach>,
}

/// What a cell opens for its registry's address, and what its `/etc/hosts` adds.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Placement {
    /// The token service first (the registry's challenges name where it ended up), then the
    /// registry; the registry's address as clients write it is its first reach's.
    pub sites: Vec<SitePlan>,
    /// `(address, name)` lines for the cell's own hosts file.
    pub hosts: Vec<(IpAddr, String)>,
}

/// What `address` / `scheme` / `token_service` need opened for a cell of gateway session
/// `session` whose flavour's own name is `flavour_host` (its token service's: `token_host`);
/// empty for the run's default shape, which the run's virtual hosts serve.
pub fn place(
    address: Address,
    scheme: Scheme,
    token_service: TokenService,
    flavour_host: &str,
    token_host: &str,
    session: u64,
) -> Placement {
    if address == Address::Name && scheme == Scheme::Https && token_service == TokenService::OtherHost {
        return Placement::default();
    }
    let loopback = cell_loopback(session);
    let mut hosts = Vec::new();
    let registry = match address {
        Address::Name => vec![proxied(flavour_host, scheme.default_port())],
        Address::Localhost => vec![direct(Ipv4Addr::LOCALHOST.into(), 0, "localhost")],
        Address::Loopback => vec![direct(Ipv4Addr::LOCALHOST.into(), 0, "127.0.0.1")],
        Address::OtherLoopback => vec![direct(loopback, REGISTRY_PORT, &loopback.to_string())],
        Address::PrivateIp => vec![proxied(&private_ip(89, session).to_string(), REGISTRY_PORT)],
        Address::DotLocalhost | Address::DotLocal | Address::SingleLabel => {
            let host = match address {
                Address::DotLocalhost => "registry.localhost",
                Address::DotLocal => "registry.local",
                _ => "kind-registry",
            };
            hosts.push((loopback, host.to_string()));
            vec![proxied(host, REGISTRY_PORT), direct(loopback, REGISTRY_PORT, host)]
        }
    };
    let token = match token_service {
        TokenService::OtherHost => None,
        // Beside the registry: the same host, dialled or proxied as the registry is.
        TokenService::OtherPort => Some((
            Scheme::Https,
            registry
                .iter()
                .map(|r| match r {
                    Reach::Proxied { host, .. } => proxied(host, TOKEN_PORT),
                    Reach::Direct { bind, host } if bind.port() == 0 => direct(bind.ip(), 0, host),
                    Reach::Direct { bind, host } => direct(bind.ip(), TOKEN_PORT, host),
                })
                .collect(),
        )),
        TokenService::IpLiteral => {
            Some((Scheme::Https, vec![proxied(&private_ip(90, session).to_string(), TOKEN_PORT)]))
        }
        TokenService::PlainHttp => Some((Scheme::Http, vec![proxied(token_host, Scheme::Http.default_port())])),
    };
    let token = token.map(|(scheme, reach)| SitePlan { role: Role::TokenService, scheme, reach });
    let sites = token.into_iter().chain([SitePlan { role: Role::Registry, scheme, reach: registry }]).collect();
    Placement { sites, hosts }
}

/// The origin (`https://10.90.1.2:5001`) of a token service at `authority`: the registry's
/// challenges name it, with the realm's own path.
pub fn origin(scheme: Scheme, authority: &str) -> String {
    format!("{}://{authority}", scheme.as_str())
}

fn proxied(host: &str, port: u16) -> Reach {
    Reach::Proxied { host: host.to_string(), port }
}

fn direct(ip: IpAddr, port: u16, host: &str) -> Reach {
    Reach::Direct { bind: SocketAddr::new(ip, port), host: host.to_string() }
}

/// A loopback address of the cell's own (`127.77.<a>.<b>`), so that cells running side by
/// side can each listen on port 5000.
fn cell_loopback(session: u64) -> IpAddr {
    let (a, b) = spread(session);
    Ipv4Addr::new(127, 77, a, b).into()
}

/// A private-network address of the cell's own (`10.<net>.<a>.<b>`); it never exists on the
/// machine: the proxy serves it.
fn private_ip(net: u8, session: u64) -> IpAddr {
    let (a, b) = spread(session);
    Ipv4Addr::new(10, net, a, b).into()
}

fn spread(session: u64) -> (u8, u8) {
    (1 + ((session / 254) % 254) as u8, 1 + (session % 254) as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reaches(placement: &Placement, role: Role) -> Vec<Reach> {
        placement.sites.iter().filter(|s| s.role == role).flat_map(|s| s.reach.clone()).collect()
    }

    #[test]
    fn the_default_shape_needs_nothing_of_its_own() {
        let placement = place(Address::Name, Scheme::Https, TokenService::OtherHost, "basic.test", "auth.test", 7);
        assert_eq!(placement, Placement::default());
    }

    #[test]
    fn loopback_forms_are_dialled_and_names_are_proxied() {
        let at = |address| place(address, Scheme::Http, TokenService::OtherHost, "anonymous.test", "auth.test", 300);
        let localhost = at(Address::Localhost);
        assert_eq!(reaches(&localhost, Role::Registry), [direct(Ipv4Addr::LOCALHOST.into(), 0, "localhost")]);
        assert!(localhost.hosts.is_empty());
        // Cell 300's own loopback address, port 5000: cells side by side never collide.
        assert_eq!(
            reaches(&at(Address::OtherLoopback), Role::Registry),
            [direct("127.77.2.47".parse().unwrap(), 5000, "127.77.2.47")]
        );
        assert_eq!(reaches(&at(Address::PrivateIp), Role::Registry), [proxied("10.89.2.47", 5000)]);
        assert_eq!(reaches(&at(Address::Name), Role::Registry), [proxied("anonymous.test", 80)]);
        // A hosts entry sends a client that resolves the name to the cell's listener.
        let local = at(Address::DotLocal);
        assert_eq!(
            reaches(&local, Role::Registry),
            [proxied("registry.local", 5000), direct("127.77.2.47".parse().unwrap(), 5000, "registry.local")]
        );
        assert_eq!(local.hosts, [("127.77.2.47".parse().unwrap(), "registry.local".to_string())]);
        assert_eq!(at(Address::SingleLabel).hosts[0].1, "kind-registry");
    }

    #[test]
    fn token_services_sit_where_deployments_put_them() {
        let at = |address, token| place(address, Scheme::Https, token, "token.test", "auth.test", 1);
        let other_port = at(Address::SingleLabel, TokenService::OtherPort);
        assert_eq!(other_port.sites[0].role, Role::TokenService, "opened first: the registry names it");
        assert_eq!(
            reaches(&other_port, Role::TokenService),
            [proxied("kind-registry", 5001), direct("127.77.1.2".parse().unwrap(), 5001, "kind-registry")]
        );
        assert_eq!(
            reaches(&at(Address::Localhost, TokenService::OtherPort), Role::TokenService),
            [direct(Ipv4Addr::LOCALHOST.into(), 0, "localhost")]
        );
        assert_eq!(
            reaches(&at(Address::Name, TokenService::IpLiteral), Role::TokenService),
            [proxied("10.90.1.2", 5001)]
        );
        let plain = at(Address::Name, TokenService::PlainHttp);
        assert_eq!(plain.sites[0].scheme, Scheme::Http);
        assert_eq!(reaches(&plain, Role::TokenService), [proxied("auth.test", 80)]);
        assert_eq!(origin(Scheme::Http, "auth.test"), "http://auth.test");
    }
}
