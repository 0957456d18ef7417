//! `--allow-worker-cidr` where it matters: at the address a probe actually dials.
//!
//! The node refuses workers outside the allowlist before they are registered,
//! imported or scheduled (`Node::allowed`, which also refuses DNS names while a list is
//! set). This module is the second wall, in the probe client itself, so that no path
//! (a bug, a record that slipped past a check) can make a probe connect outside the
//! list:
//! - an IP-literal URL is checked here, on the socket address it names, before the
//!   request starts (the HTTP client dials literals without asking a resolver);
//! - every DNS name goes through [`AllowlistResolver`], which keeps only resolved
//!   addresses inside the list, so a name that resolves (or rebinds) outside is never
//!   dialled.
//!
//! A probe refused here is a failure with the result `not_allowed`.

use ipnet::IpNet;
use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

/// The networks probes may reach; empty allows every address.
#[derive(Clone, Debug, Default)]
pub struct Allowlist(Arc<Vec<IpNet>>);

impl Allowlist {
    /// The list `--allow-worker-cidr` gave.
    pub fn new(nets: Vec<IpNet>) -> Allowlist {
        Allowlist(Arc::new(nets))
    }

    /// Whether no list is set (every address allowed).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether a probe may connect to `ip`. Addresses are compared exactly: an
    /// IPv4-mapped IPv6 address is not inside an IPv4 network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.is_empty() || self.0.iter().any(|net| net.contains(&ip))
    }

    /// Whether a probe of `url` may start: for an IP literal, whether the socket
    /// address it dials is inside the list; for a DNS name, yes (the resolver filters
    /// what it dials); without a host, no.
    pub fn permits(&self, url: &reqwest::Url) -> bool {
        if self.is_empty() {
            return true;
        }
        let port = url.port_or_known_default().unwrap_or(0);
        let dialled = match url.host() {
            Some(url::Host::Ipv4(ip)) => SocketAddr::new(IpAddr::V4(ip), port),
            Some(url::Host::Ipv6(ip)) => SocketAddr::new(IpAddr::V6(ip), port),
            Some(url::Host::Domain(_)) => return true,
            None => return false,
        };
        self.contains(dialled.ip())
    }
}

/// The error a refused resolution fails with; found in the client's cause chain to
/// report `not_allowed`.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` resolves to no address inside --allow-worker-cidr")]
pub struct NotAllowed {
    host: String,
}

/// Resolves names with the system resolver and keeps only addresses inside the
/// allowlist; none left is an error ([`NotAllowed`]).
#[derive(Debug)]
pub struct AllowlistResolver {
    allow: Allowlist,
}

impl AllowlistResolver {
    /// A resolver for `allow`.
    pub fn new(allow: Allowlist) -> AllowlistResolver {
        AllowlistResolver { allow }
    }
}

impl Resolve for AllowlistResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let allow = self.allow.clone();
        let host = name.as_str().to_string();
        Box::pin(async move {
            // Port 0: the client puts the URL's port on every address it keeps.
            let resolved = tokio::net::lookup_host((host.as_str(), 0)).await?;
            let kept: Vec<SocketAddr> = resolved.filter(|a| allow.contains(a.ip())).collect();
            if kept.is_empty() {
                return Err(Box::new(NotAllowed { host }) as Box<_>);
            }
            Ok(Box::new(kept.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list(nets: &[&str]) -> Allowlist {
        Allowlist::new(nets.iter().map(|n| n.parse().unwrap()).collect())
    }

    #[test]
    fn literals_are_checked_on_the_address_dialled() {
        let ten = list(&["10.0.0.0/8", "fd00::/8"]);
        let url = |s: &str| reqwest::Url::parse(s).unwrap();
        assert!(ten.permits(&url("http://10.1.2.3:9/x")));
        assert!(ten.permits(&url("http://[fd00::1]/x")));
        assert!(!ten.permits(&url("http://127.0.0.1:47860/pwned")));
        assert!(!ten.permits(&url("http://[::ffff:10.0.0.1]/")));
        assert!(
            ten.permits(&url("http://name.example:80/")),
            "left to the resolver"
        );
        assert!(Allowlist::default().permits(&url("http://127.0.0.1/")));
    }

    #[tokio::test]
    async fn names_resolving_outside_the_list_are_refused() {
        let r = AllowlistResolver::new(list(&["10.0.0.0/8"]));
        let err = r
            .resolve("localhost".parse().unwrap())
            .await
            .err()
            .expect("localhost is outside 10/8");
        assert!(err.downcast_ref::<NotAllowed>().is_some(), "{err}");
        let r = AllowlistResolver::new(list(&["127.0.0.0/8"]));
        let kept: Vec<SocketAddr> = r
            .resolve("localhost".parse().unwrap())
            .await
            .expect("127.0.0.1 is inside")
            .collect();
        assert!(!kept.is_empty());
        assert!(
            kept.iter().all(|a| a.ip().is_loopback() && a.is_ipv4()),
            "{kept:?}"
        );
    }
}
