//! The gossip address peers dial, when `--gossip-advertise` is not given.
//!
//! Derived after the configuration is loaded and checked, by the caller (`main`),
//! because finding the outward interface asks the network stack and loading does not
//! touch the network. A failure is still a configuration problem (exit 2): the
//! operator has to set `--gossip-advertise`.

use crate::config::{ClusterConfig, ConfigError, ConfigProblem};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// The address to advertise for `cluster`: `--gossip-advertise` if given, else
/// [`derive`] with the host's outward address.
pub fn resolve(cluster: &ClusterConfig) -> Result<SocketAddr, ConfigError> {
    if let Some(given) = cluster.gossip_advertise {
        return Ok(given);
    }
    derive(
        cluster.gossip_listen,
        !cluster.seeds.is_empty(),
        outbound_ip,
    )
    .map_err(|e| ConfigError(vec![ConfigProblem::new(format!("gossip_advertise: {e}"))]))
}

/// The advertise address when none is given: the listen address if it is concrete;
/// else the outward address (`outbound`, asked only then) with the listen port; else,
/// for a node without seeds, loopback (a single-node cluster works).
pub fn derive(
    listen: SocketAddr,
    has_seeds: bool,
    outbound: impl FnOnce() -> Option<IpAddr>,
) -> Result<SocketAddr, String> {
    if !listen.ip().is_unspecified() {
        return Ok(listen);
    }
    match outbound().filter(|ip| !ip.is_loopback() && !ip.is_unspecified()) {
        Some(ip) => Ok(SocketAddr::new(ip, listen.port())),
        None if !has_seeds => Ok(SocketAddr::new(Ipv4Addr::LOCALHOST.into(), listen.port())),
        None => Err(format!(
            "cannot find a non-loopback address to advertise for {listen}; set --gossip-advertise to the address peers should dial"
        )),
    }
}

/// The address of the interface that routes outward: a UDP socket "connected" to a
/// documentation address (192.0.2.1, TEST-NET-1) picks its source address from the
/// routing table without sending a packet.
pub fn outbound_ip() -> Option<IpAddr> {
    std::net::UdpSocket::bind(("0.0.0.0", 0))
        .and_then(|s| s.connect(("192.0.2.1", 9)).map(|()| s))
        .and_then(|s| s.local_addr())
        .ok()
        .map(|a| a.ip())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    #[test]
    fn a_concrete_listen_address_is_advertised_without_asking_the_network() {
        let got = derive(addr("10.0.0.2:7800"), true, || panic!("asked the network"));
        assert_eq!(got, Ok(addr("10.0.0.2:7800")));
    }

    #[test]
    fn an_unspecified_listen_address_takes_the_outward_address_and_its_port() {
        let ip = || Some("192.168.1.9".parse().unwrap());
        assert_eq!(
            derive(addr("0.0.0.0:17800"), true, ip),
            Ok(addr("192.168.1.9:17800"))
        );
    }

    #[test]
    fn without_an_outward_address_a_lone_node_uses_loopback_and_a_seeded_one_fails() {
        let loopback = || Some(IpAddr::from(Ipv4Addr::LOCALHOST));
        assert_eq!(
            derive(addr("0.0.0.0:7800"), false, loopback),
            Ok(addr("127.0.0.1:7800"))
        );
        let msg = derive(addr("[::]:7800"), true, || None).unwrap_err();
        assert!(msg.contains("set --gossip-advertise"), "{msg}");
    }
}
