//! chitchat over QUIC with mutual TLS.
//!
//! One quinn endpoint per node both serves and dials, so a peer's connection comes from
//! its gossip address and replies can reuse it. Connections are cached by remote
//! address and reused; every connection, dialed or accepted, has a reader. Each gossip
//! message travels on its own unidirectional stream (messages exceed a datagram),
//! compressed when that is smaller (see [`envelope`]).
//!
//! `send` never waits on the network: it hands the encoded message to a per-peer queue
//! (a full queue drops and counts) served by that peer's writer task. `recv` reads a
//! channel, so it is cancel-safe. Malformed or oversized messages are dropped and
//! counted. A stable stateless-reset key (derived from the node's private key) and
//! connection ids that are accepted from any process let a restarted peer reset stale
//! connections at once, so peers talk to it again within a second or two.

use super::MAX_MESSAGE;
use super::envelope;
use super::metrics::{MessageKind, TransportMetrics, add, dec, inc};
use crate::tls::{SERVER_NAME, TlsMaterial};
use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use chitchat::transport::{Socket, Transport};
use chitchat::{ChitchatMessage, Deserializable, Serializable};
use quinn::{ConnectionId, ConnectionIdGenerator, Endpoint, EndpointConfig, TransportConfig};
use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

/// Tunables of the QUIC transport.
#[derive(Clone, Debug)]
pub struct QuicSettings {
    /// Messages queued per peer before new ones are dropped.
    pub peer_queue: usize,
    /// Received messages queued for chitchat before new ones are dropped.
    pub recv_queue: usize,
    /// A connection silent this long is closed.
    pub idle_timeout: Duration,
    /// Keep-alive interval on open connections.
    pub keep_alive: Duration,
    /// Longest wait for a handshake when dialing.
    pub connect_timeout: Duration,
    /// Longest wait for one message's stream to be read.
    pub read_timeout: Duration,
}

impl Default for QuicSettings {
    fn default() -> Self {
        QuicSettings {
            peer_queue: 64,
            recv_queue: 1024,
            idle_timeout: Duration::from_secs(5),
            keep_alive: Duration::from_secs(1),
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
}

impl QuicTransport {
    /// A transport using `tls` for every connection.
    pub fn new(tls: TlsMaterial, settings: QuicSettings) -> QuicTransport {
        QuicTransport {
            tls,
            settings,
            metrics: Arc::new(TransportMetrics::default()),
        }
    }

    /// The transport's counters.
    pub fn metrics(&self) -> Arc<TransportMetrics> {
        Arc::clone(&self.metrics)
    }
}

/// Random 8-byte connection ids whose validity any process accepts, so that a restarted
/// node answers packets for its predecessor's connections with a stateless reset.
struct AnyCidGenerator;

impl ConnectionIdGenerator for AnyCidGenerator {
    fn generate_cid(&mut self) -> ConnectionId {
        let bytes: [u8; 8] = rand::random();
        ConnectionId::new(&bytes)
    }
    fn cid_len(&self) -> usize {
        8
    }
    fn cid_lifetime(&self) -> Option<Duration> {
        None
    }
}

fn transport_config(s: &QuicSettings) -> anyhow::Result<Arc<TransportConfig>> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(
        s.idle_timeout
            .try_into()
            .context("idle timeout out of range")?,
    ));
    t.keep_alive_interval(Some(s.keep_alive));
    // Gossip needs uni streams only.
    t.max_concurrent_bidi_streams(0u32.into());
    t.max_concurrent_uni_streams(256u32.into());
    t.datagram_receive_buffer_size(None);
    Ok(Arc::new(t))
}

#[async_trait]
impl Transport for QuicTransport {
    async fn open(&self, listen_addr: SocketAddr) -> anyhow::Result<Box<dyn Socket>> {
        let tconf = transport_config(&self.settings)?;
        let mut server = quinn::ServerConfig::with_crypto(Arc::new(
            quinn::crypto::rustls::QuicServerConfig::try_from(self.tls.server_config()?)
                .context("TLS server configuration unusable for QUIC")?,
        ));
        server.transport_config(Arc::clone(&tconf));
        let mut client = quinn::ClientConfig::new(Arc::new(
            quinn::crypto::rustls::QuicClientConfig::try_from(self.tls.client_config()?)
                .context("TLS client configuration unusable for QUIC")?,
        ));
        client.transport_config(tconf);

        let digest = ring::digest::digest(&ring::digest::SHA256, self.tls.stable_secret());
        let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref());
        let mut econf = EndpointConfig::new(Arc::new(reset_key));
        econf.cid_generator(|| Box::new(AnyCidGenerator));

        let socket = std::net::UdpSocket::bind(listen_addr)
            .with_context(|| format!("cannot bind the gossip address {listen_addr}/udp; is another agent running? Choose another --gossip-listen"))?;
        let mut endpoint =
            Endpoint::new(econf, Some(server), socket, Arc::new(quinn::TokioRuntime))
                .context("cannot start the QUIC endpoint")?;
        endpoint.set_default_client_config(client);

        let (incoming_tx, incoming_rx) = mpsc::channel(self.settings.recv_queue.max(1));
        let shared = Arc::new(Shared {
            endpoint,
            conns: Mutex::new(HashMap::new()),
            incoming_tx,
            metrics: Arc::clone(&self.metrics),
            settings: self.settings.clone(),
            stop: CancellationToken::new(),
        });
        tokio::spawn(accept_loop(Arc::clone(&shared)));
        Ok(Box::new(QuicSocket {
            shared,
            incoming_rx,
            peers: HashMap::new(),
            buf: Vec::with_capacity(MAX_MESSAGE),
        }))
    }
}

/// State shared by the socket and its tasks.
struct Shared {
    endpoint: Endpoint,
    conns: Mutex<HashMap<SocketAddr, quinn::Connection>>,
    incoming_tx: mpsc::Sender<(SocketAddr, ChitchatMessage)>,
    metrics: Arc<TransportMetrics>,
    settings: QuicSettings,
    stop: CancellationToken,
}

impl Shared {
    fn conns(&self) -> std::sync::MutexGuard<'_, HashMap<SocketAddr, quinn::Connection>> {
        // Only inserts and removes happen under this lock; a poisoned map is still valid.
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Caches `conn` for its remote address and starts its reader.
    fn adopt(self: &Arc<Self>, conn: quinn::Connection) {
        inc(&self.metrics.connections_open);
        self.conns().insert(conn.remote_address(), conn.clone());
        tokio::spawn(read_loop(Arc::clone(self), conn));
    }

    /// A live connection to `to`, dialing if there is none.
    async fn connection(self: &Arc<Self>, to: SocketAddr) -> anyhow::Result<quinn::Connection> {
        if let Some(c) = self.conns().get(&to)
            && c.close_reason().is_none()
        {
            return Ok(c.clone());
        }
        let connecting = self.endpoint.connect(to, SERVER_NAME)?;
        let conn = match tokio::time::timeout(self.settings.connect_timeout, connecting).await {
            Ok(Ok(c)) => c,
            Ok(Err(e)) => {
                inc(&self.metrics.handshake_failures);
                return Err(e).with_context(|| format!("handshake with {to} failed"));
            }
            Err(_) => {
                inc(&self.metrics.handshake_failures);
                anyhow::bail!("handshake with {to} timed out");
            }
        };
        inc(&self.metrics.connections_dialed);
        self.adopt(conn.clone());
        Ok(conn)
    }
}

/// The chitchat-facing socket.
struct QuicSocket {
    shared: Arc<Shared>,
    incoming_rx: mpsc::Receiver<(SocketAddr, ChitchatMessage)>,
    peers: HashMap<SocketAddr, mpsc::Sender<(MessageKind, Bytes)>>,
    buf: Vec<u8>,
}

impl Drop for QuicSocket {
    fn drop(&mut self) {
        self.shared.stop.cancel();
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
        self.incoming_rx
            .recv()
            .await
            .context("the QUIC endpoint stopped")
    }
}

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
            let mut sent = false;
            for _ in 0..2 {
                match shared.connection(to).await {
                    Ok(conn) => match write_message(&conn, &msg).await {
                        Ok(()) => {
                            sent = true;
                            break;
                        }
                        Err(e) => {
                            tracing::debug!(peer = %to, error = %e, "gossip write failed; reconnecting");
                            conn.close(0u32.into(), b"write failed");
                            forget(&shared, &conn);
                        }
                    },
                    Err(e) => {
                        tracing::debug!(peer = %to, error = %e, "cannot reach peer");
                        break;
                    }
                }
            }
            if sent {
                shared.metrics.sent(kind, msg.len());
            } else {
                inc(&shared.metrics.dropped_send_failed);
            }
        }
    });
    tx
}

async fn write_message(conn: &quinn::Connection, msg: &[u8]) -> anyhow::Result<()> {
    let mut stream = conn.open_uni().await?;
    stream.write_all(msg).await?;
    stream.finish()?;
    Ok(())
}

/// Removes `conn` from the cache if it is still the cached one.
fn forget(shared: &Shared, conn: &quinn::Connection) {
    let mut conns = shared.conns();
    if conns
        .get(&conn.remote_address())
        .is_some_and(|c| c.stable_id() == conn.stable_id())
    {
        conns.remove(&conn.remote_address());
    }
}

async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            () = shared.stop.cancelled() => break,
            i = shared.endpoint.accept() => match i { Some(i) => i, None => break },
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            match incoming.await {
                Ok(conn) => {
                    inc(&shared.metrics.connections_accepted);
                    shared.adopt(conn);
                }
                Err(e) => {
                    inc(&shared.metrics.handshake_failures);
                    tracing::debug!(peer = %remote, error = %e, "refused a gossip connection");
                }
            }
        });
    }
}

async fn read_loop(shared: Arc<Shared>, conn: quinn::Connection) {
    let from = conn.remote_address();
    loop {
        let stream = tokio::select! {
            () = shared.stop.cancelled() => break,
            s = conn.accept_uni() => match s { Ok(s) => s, Err(_) => break },
        };
        let mut stream = stream;
        let read = tokio::time::timeout(
            shared.settings.read_timeout,
            stream.read_to_end(MAX_MESSAGE),
        )
        .await;
        let bytes = match read {
            Ok(Ok(b)) => b,
            Ok(Err(quinn::ReadToEndError::TooLong)) => {
                inc(&shared.metrics.oversized);
                continue;
            }
            Ok(Err(_)) | Err(_) => continue,
        };
        let Ok(msg) = envelope::open(&bytes)
            .map_err(anyhow::Error::from)
            .and_then(|m| ChitchatMessage::deserialize(&mut &m[..]))
        else {
            inc(&shared.metrics.malformed);
            tracing::debug!(peer = %from, len = bytes.len(), "dropped a malformed gossip message");
            continue;
        };
        inc(&shared.metrics.messages_in);
        add(&shared.metrics.bytes_in, bytes.len());
        if shared.incoming_tx.try_send((from, msg)).is_err() {
            inc(&shared.metrics.dropped_recv_queue_full);
        }
    }
    dec(&shared.metrics.connections_open);
    forget(&shared, &conn);
}
