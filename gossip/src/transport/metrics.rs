//! Counters of the gossip transport, read by the daemon's `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, updated by the transport tasks.
#[derive(Debug, Default)]
pub struct TransportMetrics {
    pub(crate) messages_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) dropped_send_queue_full: AtomicU64,
    pub(crate) dropped_recv_queue_full: AtomicU64,
    pub(crate) dropped_send_failed: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) connections_dialed: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) bytes_out_by_kind: [AtomicU64; MessageKind::ALL.len()],
}

/// The kinds of chitchat messages, for per-kind traffic counters: a large share of
/// `ack`/`synack` bytes means deltas (state changing or a peer catching up), a large
/// share of `syn` bytes means digests (many members).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MessageKind {
    /// Digest sent to start a round.
    Syn,
    /// Digest and delta sent in answer to a `syn`.
    SynAck,
    /// Delta that ends a round.
    Ack,
    /// Refusal of a peer from another cluster.
    BadCluster,
}

impl MessageKind {
    /// Every kind, in counter order.
    pub const ALL: [MessageKind; 4] = [
        MessageKind::Syn,
        MessageKind::SynAck,
        MessageKind::Ack,
        MessageKind::BadCluster,
    ];

    /// The kind of `msg`.
    pub fn of(msg: &chitchat::ChitchatMessage) -> MessageKind {
        match msg {
            chitchat::ChitchatMessage::Syn { .. } => MessageKind::Syn,
            chitchat::ChitchatMessage::SynAck { .. } => MessageKind::SynAck,
            chitchat::ChitchatMessage::Ack { .. } => MessageKind::Ack,
            chitchat::ChitchatMessage::BadCluster => MessageKind::BadCluster,
        }
    }

    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            MessageKind::Syn => "syn",
            MessageKind::SynAck => "synack",
            MessageKind::Ack => "ack",
            MessageKind::BadCluster => "bad_cluster",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// A point-in-time copy of [`TransportMetrics`].
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TransportStats {
    /// Messages written to peers.
    pub messages_out: u64,
    /// Bytes of messages written to peers.
    pub bytes_out: u64,
    /// Messages received and decoded.
    pub messages_in: u64,
    /// Bytes of messages received.
    pub bytes_in: u64,
    /// Messages dropped because a peer's send queue was full.
    pub dropped_send_queue_full: u64,
    /// Messages dropped because the receive queue was full.
    pub dropped_recv_queue_full: u64,
    /// Messages dropped because the peer could not be reached.
    pub dropped_send_failed: u64,
    /// Received messages that did not decode.
    pub malformed: u64,
    /// Messages over the size limit (either direction).
    pub oversized: u64,
    /// Connections this node opened.
    pub connections_dialed: u64,
    /// Connections peers opened to this node.
    pub connections_accepted: u64,
    /// Connections currently open.
    pub connections_open: u64,
    /// Handshakes that failed (TLS refused, timeout, protocol error).
    pub handshake_failures: u64,
    /// Bytes sent per message kind, indexed like [`MessageKind::ALL`].
    pub bytes_out_by_kind: [u64; MessageKind::ALL.len()],
}

impl TransportMetrics {
    /// Copies the counters.
    pub fn snapshot(&self) -> TransportStats {
        TransportStats {
            messages_out: self.messages_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            dropped_send_queue_full: self.dropped_send_queue_full.load(Relaxed),
            dropped_recv_queue_full: self.dropped_recv_queue_full.load(Relaxed),
            dropped_send_failed: self.dropped_send_failed.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            connections_dialed: self.connections_dialed.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            bytes_out_by_kind: std::array::from_fn(|i| self.bytes_out_by_kind[i].load(Relaxed)),
        }
    }

    pub(crate) fn sent(&self, kind: MessageKind, bytes: usize) {
        inc(&self.messages_out);
        add(&self.bytes_out, bytes);
        add(&self.bytes_out_by_kind[kind.index()], bytes);
    }
}

pub(crate) fn inc(c: &AtomicU64) {
    c.fetch_add(1, Relaxed);
}

pub(crate) fn add(c: &AtomicU64, n: usize) {
    c.fetch_add(n as u64, Relaxed);
}

pub(crate) fn dec(c: &AtomicU64) {
    c.fetch_sub(1, Relaxed);
}
