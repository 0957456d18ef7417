//! Transports for chitchat: [`quic`] for real nodes (mutual TLS over QUIC), and
//! chitchat's own in-memory `ChannelTransport` for simulations.

pub mod envelope;
pub mod metrics;
pub mod quic;

pub use metrics::{MessageKind, TransportMetrics, TransportStats};
pub use quic::{QuicSettings, QuicTransport};

/// Largest gossip message accepted on a stream. chitchat caps its own messages at
/// 65,507 bytes; anything longer is damage or abuse and is dropped.
pub const MAX_MESSAGE: usize = 65_507;
