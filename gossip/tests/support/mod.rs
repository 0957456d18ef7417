//! Shared pieces of the in-process transport tests: certificates from one CA, honest
//! nodes on loopback, and a raw hostile peer that holds a CA-signed certificate and
//! writes whatever bytes it likes on QUIC streams.

#![allow(dead_code)]

use probemesh_gossip::cluster::MemberState;
use probemesh_gossip::node::{GossipConfig, GossipHandle, spawn_gossip};
use probemesh_gossip::tls::{self, TlsMaterial};
use probemesh_gossip::transport::{QuicSettings, QuicTransport, TransportMetrics};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// Gossip interval of test nodes.
pub const INTERVAL: Duration = Duration::from_millis(100);

pub fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

/// A certificate for `node` from the CA in `ca_dir` (made once per name).
pub fn material(ca_dir: &Path, node: &str) -> TlsMaterial {
    let out = ca_dir.join("nodes");
    let cert = out.join(format!("{node}.pem"));
    let key = out.join(format!("{node}-key.pem"));
    if !cert.exists() {
        tls::create_node_cert(ca_dir, node, &[], &[], &out).unwrap();
    }
    TlsMaterial::load(&ca_dir.join(tls::CA_CERT_FILE), &cert, &key).unwrap()
}

/// A CA in a fresh temporary directory.
pub fn ca() -> tempfile::TempDir {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    tls::create_ca(dir.path()).unwrap();
    dir
}

/// A node gossiping as `node_id` with `tls` (whatever name the certificate carries).
pub async fn node(
    tls: TlsMaterial,
    node_id: &str,
    addr: SocketAddr,
    seeds: &[SocketAddr],
    settings: QuicSettings,
) -> (GossipHandle, Arc<TransportMetrics>) {
    let transport = QuicTransport::new(tls, settings);
    let metrics = transport.metrics();
    let config = GossipConfig {
        node_id: node_id.into(),
        generation: 1,
        cluster_id: "test".into(),
        listen: addr,
        advertise: addr,
        seeds: seeds.iter().map(|s| s.to_string()).collect(),
        interval: INTERVAL,
        dead_node_grace_period: Duration::from_secs(60),
        version: "test".into(),
        identities: Some(transport.identities()),
        verdict_hold: probemesh_gossip::publication::MIN_VERDICT_HOLD,
    };
    (spawn_gossip(config, &transport).await.unwrap(), metrics)
}

pub async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, mut f: F) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

pub async fn alive_ids(h: &GossipHandle) -> Vec<String> {
    h.snapshot()
        .await
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .map(|m| m.node_id.clone())
        .collect()
}

/// Peak resident memory of this process so far (`VmHWM`), in KiB.
pub fn peak_rss_kib() -> u64 {
    field_kib("VmHWM:")
}

/// Resident memory of this process now (`VmRSS`), in KiB.
pub fn rss_kib() -> u64 {
    field_kib("VmRSS:")
}

fn field_kib(name: &str) -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix(name))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .unwrap_or(0)
}

/// A hostile member: a raw QUIC client with a CA-signed certificate.
pub struct RawPeer {
    pub endpoint: quinn::Endpoint,
    pub conn: quinn::Connection,
}

impl RawPeer {
    /// Connects to `to` from a fresh local port with `tls`.
    pub async fn connect(tls: &TlsMaterial, to: SocketAddr) -> RawPeer {
        let client = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config().unwrap())
                .unwrap(),
        ));
        let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
        endpoint.set_default_client_config(client);
        let conn = endpoint
            .connect(to, tls::SERVER_NAME)
            .unwrap()
            .await
            .unwrap();
        RawPeer { endpoint, conn }
    }

    /// Where the victim sees it.
    pub fn addr(&self) -> SocketAddr {
        self.endpoint.local_addr().unwrap()
    }

    /// Sends `bytes` as one message (one stream, finished). `false` if the stream was
    /// refused or reset.
    pub async fn send(&self, bytes: &[u8]) -> bool {
        let Ok(mut s) = self.conn.open_uni().await else {
            return false;
        };
        s.write_all(bytes).await.is_ok() && s.finish().is_ok()
    }
}
