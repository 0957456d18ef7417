//! Transports for chitchat: [`quic`] for real nodes (mutual TLS over QUIC), and
//! chitchat's own in-memory `ChannelTransport` for simulations.

#[doc(hidden)]
pub mod craft;
pub mod envelope;
pub mod fair;
pub mod identity;
pub mod metrics;
pub mod quic;
pub mod scan;

pub use identity::{Attestation, PeerIdentities};
pub use metrics::{Bound, MessageKind, TransportMetrics, TransportStats};
pub use quic::{QuicSettings, QuicTransport};

/// Largest gossip message accepted on a stream. chitchat caps its own messages at
/// 65,507 bytes; anything longer is damage or abuse and is dropped.
pub const MAX_MESSAGE: usize = 65_507;
