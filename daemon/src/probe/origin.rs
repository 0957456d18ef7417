//! Where a probe connects: the scheme, host and port of its URL. Connections are kept
//! per origin, so two workers behind one address and port (different path prefixes)
//! share a kept connection, one at a time.

use std::net::IpAddr;

/// The host of an origin: an address dialled as it is, or a name to resolve.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Host {
    /// An IP literal.
    Ip(IpAddr),
    /// A DNS name.
    Name(Box<str>),
}

/// Scheme, host and port of a probe URL.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Origin {
    /// `https`.
    pub tls: bool,
    /// The host.
    pub host: Host,
    /// The port, the scheme's default filled in.
    pub port: u16,
}

impl Origin {
    /// The origin of an `http` or `https` URL with a host; `None` for anything else.
    pub fn of(url: &url::Url) -> Option<Origin> {
        let tls = match url.scheme() {
            "http" => false,
            "https" => true,
            _ => return None,
        };
        let host = match url.host()? {
            url::Host::Ipv4(ip) => Host::Ip(IpAddr::V4(ip)),
            url::Host::Ipv6(ip) => Host::Ip(IpAddr::V6(ip)),
            url::Host::Domain(name) if !name.is_empty() => Host::Name(name.into()),
            url::Host::Domain(_) => return None,
        };
        Some(Origin {
            tls,
            host,
            port: url.port_or_known_default()?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn origin(s: &str) -> Option<Origin> {
        Origin::of(&url::Url::parse(s).unwrap())
    }

    #[test]
    fn origins_fill_in_default_ports_and_keep_the_host_kind() {
        let o = origin("http://10.0.0.1/health").unwrap();
        assert_eq!(o.port, 80);
        assert_eq!(o.host, Host::Ip("10.0.0.1".parse().unwrap()));
        let o = origin("https://worker.example:8443/x").unwrap();
        assert!(o.tls);
        assert_eq!(o.host, Host::Name("worker.example".into()));
        assert_eq!(origin("http://a:1/p"), origin("http://a:1/q"));
        assert_ne!(origin("http://a:1/"), origin("https://a:1/"));
        assert_eq!(origin("ftp://a/"), None);
    }
}
