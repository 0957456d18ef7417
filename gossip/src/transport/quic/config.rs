//! The QUIC endpoint's configuration and the per-connection limits that bound what one
//! peer can make this node buffer.
//!
//! quinn's defaults suit bulk transfer (100 concurrent streams of 1.25 MB windows and an
//! unlimited connection window: 256 streams of ours let one connection buffer about
//! 320 MB). Gossip needs one small message at a time, so the windows are cut to what a
//! message needs, which makes the worst case per connection [`CONNECTION_WINDOW`] bytes
//! of stream data plus quinn's own state.

use super::QuicSettings;
use crate::tls::{TlsError, TlsMaterial};
use quinn::{ConnectionId, ConnectionIdGenerator, Endpoint, EndpointConfig, TransportConfig};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Unidirectional streams a peer may have open at once on one connection (one message
/// each). Bidirectional streams are not allowed at all.
pub const MAX_UNI_STREAMS: u32 = 8;
/// Bytes a peer may send on one stream before it is read: one largest message.
pub const STREAM_WINDOW: u32 = 65_536;
/// Bytes a peer may send on one connection, all streams together, before they are read.
pub const CONNECTION_WINDOW: u32 = 262_144;
/// Unacknowledged bytes this node keeps for sending on one connection.
pub const SEND_WINDOW: u64 = 1 << 20;
/// Bytes of datagrams received on one connection and not yet read; past it quinn
/// drops the oldest (a few dozen small messages: the reader keeps up or sheds).
pub const DATAGRAM_RECEIVE_BUFFER: usize = 64 << 10;
/// Bytes of datagrams queued for sending on one connection; past it quinn drops the
/// oldest.
pub const DATAGRAM_SEND_BUFFER: usize = 64 << 10;
/// Connection attempts waiting to be handled; more are refused by quinn.
pub const MAX_INCOMING: usize = 256;
/// Bytes buffered for one connection attempt before its handshake starts.
pub const INCOMING_BUFFER: u64 = 64 << 10;
/// Bytes buffered for all connection attempts together.
pub const INCOMING_BUFFER_TOTAL: u64 = 4 << 20;
/// Handshakes this node runs at once for peers that dialed it; more are refused.
pub const MAX_HANDSHAKES: usize = 64;

/// Why the endpoint could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum QuicError {
    /// The idle timeout does not fit QUIC's encoding.
    #[error("the idle timeout {0:?} is out of range")]
    IdleTimeout(Duration),
    /// The TLS material could not be turned into a rustls configuration.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// rustls' configuration is unusable for QUIC (no TLS 1.3 cipher suite).
    #[error("TLS configuration unusable for QUIC: {0}")]
    Crypto(String),
    /// The gossip address could not be bound.
    #[error(
        "cannot bind the gossip address {addr}/udp: {source}; is another agent running? Choose another --gossip-listen"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// quinn refused the socket.
    #[error("cannot start the QUIC endpoint: {0}")]
    Endpoint(std::io::Error),
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

fn transport_config(s: &QuicSettings) -> Result<Arc<TransportConfig>, QuicError> {
    let mut t = TransportConfig::default();
    t.max_idle_timeout(Some(
        s.idle_timeout
            .try_into()
            .map_err(|_| QuicError::IdleTimeout(s.idle_timeout))?,
    ));
    t.keep_alive_interval(Some(s.keep_alive));
    t.max_concurrent_bidi_streams(0u32.into());
    t.max_concurrent_uni_streams(MAX_UNI_STREAMS.into());
    t.stream_receive_window(STREAM_WINDOW.into());
    t.receive_window(CONNECTION_WINDOW.into());
    t.send_window(SEND_WINDOW);
    // Ask the peer to acknowledge at most every tenth ack-eliciting packet or after
    // 50 ms: a gossip exchange is three messages, each answered by the next, so most
    // acknowledgements ride on the answer, and pure ACK packets were a large share of
    // the packets at 64 members (docs/benchmarks.md).
    let mut ack = quinn::AckFrequencyConfig::default();
    ack.ack_eliciting_threshold(9u32.into())
        .max_ack_delay(Some(Duration::from_millis(50)));
    t.ack_frequency_config(Some(ack));
    // Messages that fit one datagram travel as one (`super::write_message`).
    t.datagram_receive_buffer_size(Some(DATAGRAM_RECEIVE_BUFFER));
    t.datagram_send_buffer_size(DATAGRAM_SEND_BUFFER);
    Ok(Arc::new(t))
}

/// Binds `listen` and builds the endpoint: server and client sides with `tls`, the
/// limits above, a stateless-reset key stable across restarts.
pub(super) fn endpoint(
    tls: &TlsMaterial,
    settings: &QuicSettings,
    listen: SocketAddr,
) -> Result<Endpoint, QuicError> {
    let tconf = transport_config(settings)?;
    let crypto_err =
        |e: quinn::crypto::rustls::NoInitialCipherSuite| QuicError::Crypto(e.to_string());
    let mut server = quinn::ServerConfig::with_crypto(Arc::new(
        quinn::crypto::rustls::QuicServerConfig::try_from(tls.server_config()?)
            .map_err(crypto_err)?,
    ));
    server.transport_config(Arc::clone(&tconf));
    // A connection stays bound to the address it came from: its certificate name and
    // that address together say who speaks on it.
    server.migration(false);
    server.max_incoming(MAX_INCOMING);
    server.incoming_buffer_size(INCOMING_BUFFER);
    server.incoming_buffer_size_total(INCOMING_BUFFER_TOTAL);
    let mut client = quinn::ClientConfig::new(Arc::new(
        quinn::crypto::rustls::QuicClientConfig::try_from(tls.client_config()?)
            .map_err(crypto_err)?,
    ));
    client.transport_config(tconf);

    let digest = ring::digest::digest(&ring::digest::SHA256, tls.stable_secret());
    let reset_key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, digest.as_ref());
    let mut econf = EndpointConfig::new(Arc::new(reset_key));
    econf.cid_generator(|| Box::new(AnyCidGenerator));

    let socket = std::net::UdpSocket::bind(listen).map_err(|source| QuicError::Bind {
        addr: listen,
        source,
    })?;
    let mut endpoint = Endpoint::new(econf, Some(server), socket, Arc::new(quinn::TokioRuntime))
        .map_err(QuicError::Endpoint)?;
    endpoint.set_default_client_config(client);
    Ok(endpoint)
}
