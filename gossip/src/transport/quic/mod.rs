//! chitchat over QUIC with mutual TLS.
//!
//! One quinn endpoint per node both serves and dials, so a peer's connection comes from
//! its gossip address and replies can reuse it. Every connection, dialed or accepted,
//! is bound to the node name in the peer's certificate and has a reader ([`reader`]).
//! Each gossip message travels as one QUIC datagram when it fits one (most digests and
//! acks do), else on its own unidirectional stream, compressed when that is smaller
//! (see [`super::envelope`]).
//!
//! `send` never waits on the network: it hands the encoded message to a per-peer queue
//! (a full queue drops and counts) served by that peer's writer task. Received messages
//! wait in one small queue per peer, served round-robin ([`super::fair`]), so `recv` is
//! cancel-safe and no peer can crowd out the others. What one peer can make this node
//! hold is bounded by [`config`], [`conns`], [`super::scan`] and [`super::fair`]; every
//! bound hit is counted. A stable stateless-reset key (derived from the node's private
//! key) and connection ids accepted from any process let a restarted peer reset stale
//! connections at once, so peers talk to it again within a second or two.

pub mod config;
pub mod conns;
mod reader;

pub use config::QuicError;

use super::MAX_MESSAGE;
use super::envelope;
use super::fair::{FairQueue, PEER_QUEUE_BYTES, PEER_QUEUE_MESSAGES};
use super::identity::{PeerIdentities, SpeakerBook};
use super::metrics::{Carrier, MessageKind, TransportMetrics, inc};
use super::scan;
use crate::tls::{SERVER_NAME, TlsMaterial};
use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Serializable};
use conns::{Conns, Side};
use quinn::Endpoint;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::{Semaphore, mpsc};
use tokio_util::sync::CancellationToken;

/// Attestation checks (dials) run at once.
const CHECKS_AT_ONCE: usize = 8;
/// Attestation checks waiting to run; more are asked for again later.
const CHECK_QUEUE: usize = 256;

/// Tunables of the QUIC transport.
#[derive(Clone, Debug)]
pub struct QuicSettings {
    /// Messages queued per peer for sending before new ones are dropped.
    pub peer_queue: usize,
    /// Received messages queued per peer before its new ones are dropped.
    pub peer_recv_messages: usize,
    /// Estimated bytes of received messages queued per peer (see `Scan::cost`).
    pub peer_recv_bytes: usize,
    /// A received Syn not handed to chitchat within this long is dropped (one gossip
    /// round: its sender has sent a newer digest by then; see [`super::fair`]).
    pub syn_max_wait: Duration,
    /// Messages per second one peer (certificate name) may send; more are dropped
    /// before they are decoded.
    pub peer_rate: u32,
    /// Messages one peer may send at once above its rate.
    pub peer_burst: u32,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Keep-alive interval on open connections.
    pub keep_alive: Duration,
    /// Longest wait for a handshake, dialing or accepting.
    pub connect_timeout: Duration,
    /// Longest wait for one message's stream to be read.
    pub read_timeout: Duration,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings::for_gossip_interval(Duration::from_millis(200))
    }
}

impl QuicSettings {
    /// Settings for nodes that gossip every `interval`. A peer sends this node at most
    /// three messages a round (a Syn, the SynAck to this node's Syn, the Ack to this
    /// node's SynAck); the rate allows ten a round, and never fewer than 50 a second.
    pub fn for_gossip_interval(interval: Duration) -> QuicSettings {
        let per_round = 10.0 / interval.as_secs_f64().max(0.001);
        let rate = per_round.clamp(50.0, 10_000.0) as u32;
        QuicSettings {
            peer_queue: 64,
            peer_recv_messages: PEER_QUEUE_MESSAGES,
            peer_recv_bytes: PEER_QUEUE_BYTES,
            syn_max_wait: interval,
            peer_rate: rate,
            peer_burst: rate,
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(2),
            connect_timeout: Duration::from_secs(2),
            read_timeout: Duration::from_secs(5),
        }
    }
}

/// The chitchat transport over QUIC with mutual TLS.
pub struct QuicTransport {
    tls: TlsMaterial,
    settings: QuicSettings,
    metrics: Arc<TransportMetrics>,
    identities: Arc<PeerIdentities>,
}

impl QuicTransport {
    /// A transport using `tls` for every connection.
    pub fn new(tls: TlsMaterial, settings: QuicSettings) -> QuicTransport {
        QuicTransport {
            tls,
            settings,
            metrics: Arc::new(TransportMetrics::default()),
            identities: PeerIdentities::new(),
        }
    }

    /// The transport's counters.
    pub fn metrics(&self) -> Arc<TransportMetrics> {
        Arc::clone(&self.metrics)
    }

    /// The member instances seen first-hand over this transport (for the cluster view,
    /// see `GossipConfig::identities`).
    pub fn identities(&self) -> Arc<PeerIdentities> {
        Arc::clone(&self.identities)
    }
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let endpoint = config::endpoint(&self.tls, &self.settings, listen_addr)?;
        let s = &self.settings;
        let (check_tx, check_rx) = mpsc::channel(CHECK_QUEUE);
        let shared = Arc::new(Shared {
            endpoint,
            conns: Mutex::new(Conns::new(s.peer_rate, s.peer_burst)),
            inbox: FairQueue::new(s.peer_recv_messages, s.peer_recv_bytes),
            speakers: Mutex::new(SpeakerBook::default()),
            identities: Arc::clone(&self.identities),
            metrics: Arc::clone(&self.metrics),
            settings: s.clone(),
            handshakes: Arc::new(Semaphore::new(config::MAX_HANDSHAKES)),
            stop: CancellationToken::new(),
        });
        self.identities.set_dialer(check_tx);
        tokio::spawn(reader::accept_loop(Arc::clone(&shared)));
        tokio::spawn(check_loop(Arc::clone(&shared), check_rx));
        Ok(Box::new(QuicSocket {
            shared,
            peers: HashMap::new(),
            buf: Vec::with_capacity(MAX_MESSAGE),
        }))
    }
}

/// State shared by the socket and its tasks.
struct Shared {
    endpoint: Endpoint,
    conns: Mutex<Conns>,
    /// Received messages, per peer, for chitchat.
    inbox: FairQueue<(SocketAddr, ChitchatMessage)>,
    speakers: Mutex<SpeakerBook>,
    identities: Arc<PeerIdentities>,
    metrics: Arc<TransportMetrics>,
    settings: QuicSettings,
    handshakes: Arc<Semaphore>,
    stop: CancellationToken,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, Conns> {
        // Every critical section leaves the table consistent; a poisoned one is valid.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn speakers(&self) -> std::sync::MutexGuard<'_, SpeakerBook> {
        self.speakers.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A live connection to `to`, dialing if there is none.
    async fn connection(self: &Arc<Self>, to: SocketAddr) -> Result<quinn::Connection, String> {
        if let Some(c) = self.conns().best(to) {
            return Ok(c);
        }
        let connecting = self
            .endpoint
            .connect(to, SERVER_NAME)
            .map_err(|e| format!("cannot dial {to}: {e}"))?;
        let conn = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                inc(&self.metrics.handshake_failures);
                return Err(format!("handshake with {to} failed: {e}"));
            }
            Err(_) => {
                inc(&self.metrics.handshake_failures);
                return Err(format!("handshake with {to} timed out"));
            }
        };
        inc(&self.metrics.connections_dialed);
        if !reader::adopt(self, conn.clone(), Side::Dialed) {
            return Err(format!("{to} presented a certificate that names no node"));
        }
        Ok(conn)
    }
}

/// The chitchat-facing socket.
struct QuicSocket {
    shared: Arc<Shared>,
    peers: HashMap<SocketAddr, mpsc::Sender<(MessageKind, Bytes)>>,
    buf: Vec<u8>,
}

impl Drop for QuicSocket {
    fn drop(&mut self) {
        self.shared.stop.cancel();
        self.shared.inbox.close();
        self.shared.endpoint.close(0u32.into(), b"shutdown");
    }
}

#[async_trait]
impl Socket for QuicSocket {
    async fn send(&mut self, to: SocketAddr, msg: ChitchatMessage) -> anyhow::Result<()> {
        let kind = MessageKind::of(&msg);
        self.buf.clear();
        msg.serialize(&mut self.buf);
        if self.buf.len() > MAX_MESSAGE {
            inc(&self.shared.metrics.oversized);
            return Ok(());
        }
        if kind == MessageKind::Ack && is_empty_ack(&self.buf) {
            inc(&self.shared.metrics.empty_acks_unsent);
            return Ok(());
        }
        let bytes = Bytes::from(envelope::seal(&self.buf));
        let shared = &self.shared;
        let queue = self
            .peers
            .entry(to)
            .or_insert_with(|| spawn_writer(Arc::clone(shared), to));
        match queue.try_send((kind, bytes)) {
            Ok(()) => {}
            Err(mpsc::error::TrySendError::Full(_)) => inc(&shared.metrics.dropped_send_queue_full),
            Err(mpsc::error::TrySendError::Closed(message)) => {
                // The writer ended (it only does on shutdown); start a new one.
                let q = spawn_writer(Arc::clone(shared), to);
                let _ = q.try_send(message);
                self.peers.insert(to, q);
            }
        }
        Ok(())
    }

    async fn recv(&mut self) -> anyhow::Result<(SocketAddr, ChitchatMessage)> {
        let got = self.shared.inbox.recv().await;
        self.shared.metrics.dropped_recv_stale.store(
            self.shared.inbox.expired(),
            std::sync::atomic::Ordering::Relaxed,
        );
        got.ok_or_else(|| anyhow::anyhow!("the QUIC endpoint stopped"))
    }
}

/// Whether `encoded` is an Ack that carries nothing: the peer would apply nothing, so it
/// is not sent. That is a third of a converged node's messages, each a packet to
/// encrypt, send, receive, decrypt and scan, and a wake-up on both sides
/// (docs/benchmarks.md). Only short messages are scanned: an empty Ack is a few bytes,
/// and an Ack with one operation is longer than [`EMPTY_ACK_MAX`] (a node header alone
/// carries a chitchat id), so a delta is never inflated here.
fn is_empty_ack(encoded: &[u8]) -> bool {
    encoded.len() <= EMPTY_ACK_MAX
        && scan::scan(encoded, scan::ScanLimits::default()).is_ok_and(|s| s.is_empty_ack())
}

/// Longest encoding scanned for emptiness before an Ack is sent.
const EMPTY_ACK_MAX: usize = 64;

fn spawn_writer(shared: Arc<Shared>, to: SocketAddr) -> mpsc::Sender<(MessageKind, Bytes)> {
    let (tx, mut rx) = mpsc::channel::<(MessageKind, Bytes)>(shared.settings.peer_queue.max(1));
    tokio::spawn(async move {
        loop {
            let (kind, msg) = tokio::select! {
                () = shared.stop.cancelled() => break,
                m = rx.recv() => match m { Some(m) => m, None => break },
            };
            // One retry on a fresh connection: a cached connection may have died
            // (peer restarted) without us noticing yet.
            let mut sent = None;
            for _ in 0..2 {
                match shared.connection(to).await {
                    Ok(conn) => match write_message(&conn, &msg).await {
                        Ok(how) => {
                            sent = Some(how);
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %to, error = %e, "gossip write failed; reconnecting");
                            conn.close(0u32.into(), b"write failed");
                            shared.conns().remove(&conn);
                        }
                    },
                    Err(e) => {
                        tracing::debug!(peer = %to, error = %e, "cannot reach peer");
                        break;
                    }
                }
            }
            match sent {
                Some(how) => shared.metrics.sent(kind, msg.len(), how),
                None => inc(&shared.metrics.dropped_send_failed),
            }
        }
    });
    tx
}

/// Sends one message: as one QUIC datagram when it fits (the peer takes datagrams and
/// the path's datagram size holds it), else on a stream of its own. A datagram costs
/// one frame and no stream state on either side; gossip tolerates the loss of one, as
/// chitchat over plain UDP does.
async fn write_message(conn: &quinn::Connection, msg: &Bytes) -> Result<Carrier, String> {
    if conn.max_datagram_size().is_some_and(|max| msg.len() <= max)
        && conn.send_datagram(msg.clone()).is_ok()
    {
        return Ok(Carrier::Datagram);
    }
    let mut stream = conn.open_uni().await.map_err(|e| e.to_string())?;
    stream.write_all(msg).await.map_err(|e| e.to_string())?;
    stream.finish().map_err(|e| e.to_string())?;
    Ok(Carrier::Stream)
}

/// Runs attestation checks: dials the address a member instance advertises; the
/// connection's certificate name attests it (in `reader::adopt`) or it is refuted.
async fn check_loop(shared: Arc<Shared>, mut rx: mpsc::Receiver<(String, SocketAddr)>) {
    let slots = Arc::new(Semaphore::new(CHECKS_AT_ONCE));
    loop {
        let (node_id, addr) = tokio::select! {
            () = shared.stop.cancelled() => break,
            r = rx.recv() => match r { Some(r) => r, None => break },
        };
        let Ok(permit) = Arc::clone(&slots).acquire_owned().await else {
            break;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            if let Err(e) = shared.connection(addr).await {
                tracing::debug!(member = %node_id, addr = %addr, error = %e, "could not check a member's certificate");
            }
            shared.identities.check_done(&node_id, addr);
            drop(permit);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::craft::{self, Encoding, Op};
    use crate::transport::scan::WireId;
    use chitchat::Deserializable;

    fn id(name: &str) -> WireId {
        WireId {
            node_id: name.into(),
            generation: 1,
            addr: "127.0.0.1:7000".parse().unwrap(),
        }
    }

    /// The bytes chitchat itself writes for `wire` (decoded, then encoded again; only
    /// for an empty delta, as chitchat asserts in debug builds that a delta encodes to
    /// the length it was decoded from, which a recompressed block need not).
    fn as_chitchat_writes_it(wire: &[u8]) -> Vec<u8> {
        let msg = ChitchatMessage::deserialize(&mut &wire[..]).unwrap();
        let mut out = Vec::new();
        msg.serialize(&mut out);
        out
    }

    #[test]
    fn only_acks_that_carry_nothing_are_left_unsent() {
        assert!(is_empty_ack(&as_chitchat_writes_it(&craft::ack(&[]))));
        // A node header alone is state (chitchat may reset that node), and so is a
        // key-value, raw or compressed: all are sent.
        let header = [Op::Node(id("a"))];
        let key_value = [Op::Node(id("a")), Op::Kv("k".into(), "v".into(), 1)];
        for ops in [&header[..], &key_value[..]] {
            for encoding in [Encoding::Raw, Encoding::Zstd] {
                let ack = craft::ack(&craft::blocks(ops, encoding));
                assert!(!is_empty_ack(&ack), "{ops:?} {encoding:?}");
            }
        }
        // Syns and SynAcks are answered, whatever their delta.
        assert!(!is_empty_ack(&craft::syn_ack(&[(id("a"), 1)], &[])));
        assert!(!is_empty_ack(&craft::syn("test", &[(id("a"), 1)])));
        // Not a chitchat message at all: sent (the peer counts it malformed).
        assert!(!is_empty_ack(&[0u8; 4]));
    }
}
