//! chitchat over the QUIC transport on loopback: convergence, CA isolation, garbage
//! packets and restarts.

use probemesh_gossip::cluster::MemberState;
use probemesh_gossip::model::{Registration, WorkerSpec, WorkerUrl};
use probemesh_gossip::node::{GossipConfig, GossipHandle, spawn_gossip};
use probemesh_gossip::tls::{self, TlsMaterial};
use probemesh_gossip::transport::{QuicSettings, QuicTransport, TransportMetrics};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

fn free_udp_addr() -> SocketAddr {
    let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    s.local_addr().unwrap()
}

fn material(ca_dir: &Path, node: &str) -> TlsMaterial {
    let out = ca_dir.join("nodes");
    let (c, k) = tls::create_node_cert(ca_dir, node, &[], &[], &out).unwrap();
    TlsMaterial::load(&ca_dir.join(tls::CA_CERT_FILE), &c, &k).unwrap()
}

async fn start(
    tls: TlsMaterial,
    node: &str,
    addr: SocketAddr,
    seeds: &[SocketAddr],
    generation: u64,
) -> (GossipHandle, Arc<TransportMetrics>) {
    let transport = QuicTransport::new(tls, QuicSettings::default());
    let metrics = transport.metrics();
    let config = GossipConfig {
        node_id: node.into(),
        generation,
        cluster_id: "test".into(),
        listen: addr,
        advertise: addr,
        seeds: seeds.iter().map(|s| s.to_string()).collect(),
        interval: Duration::from_millis(100),
        dead_node_grace_period: Duration::from_secs(60),
        version: "test".into(),
        identities: Some(transport.identities()),
        verdict_hold: probemesh_gossip::publication::MIN_VERDICT_HOLD,
    };
    (spawn_gossip(config, &transport).await.unwrap(), metrics)
}

async fn publish(h: &GossipHandle, reg: &Registration) {
    let value = probemesh_gossip::keys::encode_registration(reg).unwrap();
    h.update_keys(vec![(
        probemesh_gossip::keys::reg_key(&reg.id),
        Some(value),
    )])
    .await;
}

fn registration(port: u16) -> Registration {
    let url = WorkerUrl::parse(&format!("http://10.0.0.1:{port}")).unwrap();
    Registration {
        id: url.id(),
        generation: 1,
        owner: "a".into(),
        registered_at_ms: 0,
        revision: 0,
        spec: WorkerSpec::new(url),
    }
}

async fn eventually<F: AsyncFnMut() -> bool>(within: Duration, mut f: F) -> bool {
    let end = Instant::now() + within;
    while Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn alive_members(h: &GossipHandle) -> usize {
    h.snapshot()
        .await
        .members
        .iter()
        .filter(|m| m.state == MemberState::Alive)
        .count()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_converge_and_share_registrations() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    tls::create_ca(dir.path()).unwrap();
    let addrs: Vec<SocketAddr> = (0..3).map(|_| free_udp_addr()).collect();
    let (a, am) = start(material(dir.path(), "a"), "a", addrs[0], &[], 1).await;
    let (b, _) = start(material(dir.path(), "b"), "b", addrs[1], &[addrs[0]], 1).await;
    let (c, _) = start(material(dir.path(), "c"), "c", addrs[2], &[addrs[0]], 1).await;
    let reg = registration(8000);
    publish(&a, &reg).await;
    for h in [&a, &b, &c] {
        assert!(
            eventually(Duration::from_secs(10), async || alive_members(h).await
                == 3)
            .await,
            "membership did not converge"
        );
        assert!(
            eventually(Duration::from_secs(10), async || h
                .snapshot()
                .await
                .registrations
                .get(&reg.id)
                .is_some_and(|adv| *adv.reg == reg && adv.by == "a"))
            .await,
            "registration did not spread"
        );
    }
    let stats = am.snapshot();
    assert!(stats.messages_in > 0 && stats.messages_out > 0 && stats.bytes_out > 0);
    assert_eq!(stats.malformed, 0);
    // Once the three agree, most Acks carry an empty delta, and the transport does not
    // send them: none reaches a peer, so none is absorbed on arrival.
    assert!(
        eventually(Duration::from_secs(10), async || am
            .snapshot()
            .empty_acks_unsent
            > 0)
        .await,
        "no empty Ack was left unsent: {:?}",
        am.snapshot()
    );
    assert_eq!(am.snapshot().empty_acks, 0, "{:?}", am.snapshot());
    // Small messages (digests, acks) go as datagrams.
    assert!(
        stats.datagrams_out > 0 && stats.datagrams_out <= stats.messages_out,
        "{stats:?}"
    );

    // A registration too large for one datagram still spreads: its delta goes on a
    // stream. Label values that do not compress keep the message over a datagram.
    let mut big = registration(8001);
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for i in 0..16 {
        let value: String = (0..200)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                char::from(b'a' + (x % 26) as u8)
            })
            .collect();
        big.spec.labels.insert(format!("k{i}"), value);
    }
    let before = am.snapshot();
    publish(&a, &big).await;
    for h in [&b, &c] {
        assert!(
            eventually(Duration::from_secs(10), async || h
                .snapshot()
                .await
                .registrations
                .get(&big.id)
                .is_some_and(|adv| *adv.reg == big))
            .await,
            "the large registration did not spread"
        );
    }
    let after = am.snapshot();
    let streams =
        |s: &probemesh_gossip::transport::TransportStats| s.messages_out - s.datagrams_out;
    assert!(
        streams(&after) > streams(&before),
        "no message went on a stream: {after:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_with_a_foreign_ca_is_isolated_both_ways() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let good = tempfile::tempdir().unwrap();
    let evil = tempfile::tempdir().unwrap();
    tls::create_ca(good.path()).unwrap();
    tls::create_ca(evil.path()).unwrap();
    let (aa, ba, ea) = (free_udp_addr(), free_udp_addr(), free_udp_addr());
    let (a, am) = start(material(good.path(), "a"), "a", aa, &[], 1).await;
    let (b, _) = start(material(good.path(), "b"), "b", ba, &[aa], 1).await;
    // The intruder seeds both honest nodes and is seeded by one of them.
    let (e, _) = start(material(evil.path(), "e"), "e", ea, &[aa, ba], 1).await;
    publish(&e, &registration(6666)).await;
    publish(&a, &registration(7777)).await;
    assert!(
        eventually(Duration::from_secs(10), async || alive_members(&b).await
            == 2)
        .await
    );
    // Give the intruder plenty of rounds to try.
    tokio::time::sleep(Duration::from_secs(3)).await;
    for h in [&a, &b] {
        let snap = h.snapshot().await;
        assert!(
            snap.members.iter().all(|m| m.node_id != "e"),
            "intruder became a member"
        );
        assert!(
            !snap.registrations.contains_key(&registration(6666).id),
            "intruder changed state"
        );
    }
    let snap = e.snapshot().await;
    assert_eq!(
        snap.members.len(),
        1,
        "intruder learned members: {:?}",
        snap.members
    );
    assert!(
        !snap.registrations.contains_key(&registration(7777).id),
        "intruder read state"
    );
    assert!(
        am.snapshot().handshake_failures > 0,
        "the refusals are counted"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_udp_on_the_gossip_port_does_no_harm() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    tls::create_ca(dir.path()).unwrap();
    let (aa, ba) = (free_udp_addr(), free_udp_addr());
    let (a, _) = start(material(dir.path(), "a"), "a", aa, &[], 1).await;
    let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let mut seed = 0x1234_5678u32;
    for len in [0usize, 1, 7, 64, 1200, 1500, 9000] {
        let mut junk = vec![0u8; len];
        for b in junk.iter_mut() {
            seed = seed.wrapping_mul(1_103_515_245).wrapping_add(12345);
            *b = (seed >> 16) as u8;
        }
        // A QUIC long header with garbage after it, and plain garbage.
        let _ = sender.send_to(&junk, aa);
        if len > 0 {
            junk[0] = 0xc0;
            let _ = sender.send_to(&junk, aa);
        }
    }
    let (b, _) = start(material(dir.path(), "b"), "b", ba, &[aa], 1).await;
    publish(&a, &registration(1)).await;
    assert!(
        eventually(Duration::from_secs(10), async || b
            .snapshot()
            .await
            .registrations
            .contains_key(&registration(1).id))
        .await
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_peer_restarted_on_the_same_address_is_heard_again_within_two_seconds() {
    let _ = rustls::crypto::ring::default_provider().install_default();
    let dir = tempfile::tempdir().unwrap();
    tls::create_ca(dir.path()).unwrap();
    let (aa, ba) = (free_udp_addr(), free_udp_addr());
    let b_tls = material(dir.path(), "b");
    let (a, _) = start(material(dir.path(), "a"), "a", aa, &[], 1).await;
    let (b, _) = start(b_tls.clone(), "b", ba, &[aa], 1).await;
    assert!(
        eventually(Duration::from_secs(10), async || alive_members(&a).await
            == 2)
        .await
    );
    b.shutdown().await.unwrap();
    // The restarted node has no seeds: only A's gossip, sent to B's known address, can
    // bring them together again. The old endpoint releases its port once its
    // connections have drained; wait for that like a restarting process would.
    let mut b2 = None;
    for _ in 0..100 {
        let transport = QuicTransport::new(b_tls.clone(), QuicSettings::default());
        let config = GossipConfig {
            node_id: "b".into(),
            generation: 2,
            cluster_id: "test".into(),
            listen: ba,
            advertise: ba,
            seeds: vec![],
            interval: Duration::from_millis(100),
            dead_node_grace_period: Duration::from_secs(60),
            version: "test".into(),
            identities: Some(transport.identities()),
            verdict_hold: probemesh_gossip::publication::MIN_VERDICT_HOLD,
        };
        if let Ok(h) = spawn_gossip(config, &transport).await {
            b2 = Some(h);
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let b2 = b2.expect("the restarted node could not bind its old address");
    let started = Instant::now();
    let reg = registration(4242);
    publish(&b2, &reg).await;
    assert!(
        eventually(Duration::from_secs(2), async || a
            .snapshot()
            .await
            .registrations
            .contains_key(&reg.id))
        .await,
        "A did not hear the restarted B within 2 s"
    );
    eprintln!("restarted peer heard again after {:?}", started.elapsed());
}
