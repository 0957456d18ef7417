//! `--allow-worker-cidr` where it matters: at the address a probe actually dials.
//!
//! The node refuses workers outside the allowlist before they are registered,
//! imported or scheduled (`Node::allowed`, which also refuses DNS names while a list is
//! set). This module is the second wall, in the probe client itself, so that no path
//! (a bug, a record that slipped past a check) can make a probe connect outside the
//! list:
//! - an IP-literal URL is checked here, on the socket address it names, before the
//!   probe starts;
//! - every DNS name goes through the probe resolver ([`super::dns`]), which keeps only
//!   resolved addresses inside the list, so a name that resolves (or rebinds) outside
//!   is never dialled;
//! - and the dialler itself ([`super::conn::Dialer::connect`]) refuses any address
//!   outside the list before it connects, whatever path gave it the address; a kept
//!   connection is reused only while its address is in the name's current answer.
//!
//! A probe refused here is a failure with the result `not_allowed`.

use ipnet::IpNet;
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

/// A host refused by the allowlist: a name that resolves to no address inside it, or
/// an address outside it. Reported as `not_allowed`.
#[derive(Debug, thiserror::Error)]
#[error("`{host}` is, or resolves to, no address inside --allow-worker-cidr")]
pub struct NotAllowed {
    host: String,
}

impl NotAllowed {
    /// The refusal of `host` (a name or an address).
    pub fn new(host: &str) -> NotAllowed {
        NotAllowed {
            host: host.to_string(),
        }
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
}
