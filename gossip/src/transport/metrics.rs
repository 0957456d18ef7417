//! Counters of the gossip transport, read by the daemon's `/metrics`.
//!
//! Plain atomics, so the transport's tasks never wait on a metrics lock; the daemon copies
//! them with [`TransportMetrics::snapshot`] at scrape time.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

/// Live counters, updated by the transport tasks.
#[derive(Debug, Default)]
pub struct TransportMetrics {
    pub(crate) messages_out: AtomicU64,
    pub(crate) datagrams_out: AtomicU64,
    pub(crate) bytes_out: AtomicU64,
    pub(crate) messages_in: AtomicU64,
    pub(crate) bytes_in: AtomicU64,
    pub(crate) dropped_send_queue_full: AtomicU64,
    pub(crate) dropped_recv_queue_full: AtomicU64,
    pub(crate) dropped_recv_stale: AtomicU64,
    pub(crate) empty_acks: AtomicU64,
    pub(crate) empty_acks_unsent: AtomicU64,
    pub(crate) dropped_send_failed: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) oversized: AtomicU64,
    pub(crate) connections_dialed: AtomicU64,
    pub(crate) connections_accepted: AtomicU64,
    pub(crate) connections_open: AtomicU64,
    pub(crate) handshake_failures: AtomicU64,
    pub(crate) connections_replaced: AtomicU64,
    pub(crate) bytes_out_by_kind: [AtomicU64; MessageKind::ALL.len()],
    pub(crate) identity_refused: [AtomicU64; IDENTITY_REASONS.len()],
    pub(crate) bounds_hit: [AtomicU64; Bound::ALL.len()],
}

/// Reasons a message or connection is refused for speaking as another node, in counter
/// order: `no_name` (the certificate names no node) and the rules of
/// [`super::identity`].
pub const IDENTITY_REASONS: [&str; 5] = [
    "no_name",
    "no_own_entry",
    "kept_alive",
    "unlisted",
    "too_many_others",
];

/// The bounds on what one peer can make this node hold or do, each counted when hit
/// (`probemesh_gossip_bounds_hit_total{bound}`). The numbers are in docs/security.md.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bound {
    /// A stream longer than the largest message.
    MessageSize,
    /// A delta that would inflate past `scan::MAX_DECODED`.
    DecodedSize,
    /// A delta with more than `scan::MAX_DELTA_OPS` operations.
    DeltaOps,
    /// The peer's receive queue was full.
    PeerQueue,
    /// The peer sent faster than its message rate.
    PeerRate,
    /// The peer's certificate name had more connections than allowed (the oldest was
    /// closed).
    ConnectionsPerName,
    /// Too many handshakes at once (the new one was refused).
    Handshakes,
}

impl Bound {
    /// Every bound, in counter order.
    pub const ALL: [Bound; 7] = [
        Bound::MessageSize,
        Bound::DecodedSize,
        Bound::DeltaOps,
        Bound::PeerQueue,
        Bound::PeerRate,
        Bound::ConnectionsPerName,
        Bound::Handshakes,
    ];

    /// The label value used in metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Bound::MessageSize => "message_size",
            Bound::DecodedSize => "decoded_size",
            Bound::DeltaOps => "delta_ops",
            Bound::PeerQueue => "peer_queue",
            Bound::PeerRate => "peer_rate",
            Bound::ConnectionsPerName => "connections_per_name",
            Bound::Handshakes => "handshakes",
        }
    }
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
    /// Of those, messages sent as one QUIC datagram (the rest went on streams).
    pub datagrams_out: u64,
    /// Bytes of messages written to peers.
    pub bytes_out: u64,
    /// Messages received and decoded.
    pub messages_in: u64,
    /// Bytes of messages received.
    pub bytes_in: u64,
    /// Messages dropped because a peer's send queue was full.
    pub dropped_send_queue_full: u64,
    /// Messages dropped because the sending peer's receive queue was full.
    pub dropped_recv_queue_full: u64,
    /// Syns dropped because they waited a whole gossip round in the receive queue
    /// (load shed: their answer would resend what the sender already has).
    pub dropped_recv_stale: u64,
    /// Of the messages received, Acks with an empty delta, which the transport takes in
    /// chitchat's place (applying one changes nothing).
    pub empty_acks: u64,
    /// Acks with an empty delta that chitchat asked to send and the transport did not
    /// send: the peer would take them in chitchat's place and apply nothing (not counted
    /// in `messages_out`).
    pub empty_acks_unsent: u64,
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
    /// Connections closed because a newer one from the same address replaced them.
    pub connections_replaced: u64,
    /// Bytes sent per message kind, indexed like [`MessageKind::ALL`].
    pub bytes_out_by_kind: [u64; MessageKind::ALL.len()],
    /// Messages (or connections, for `no_name`) refused for speaking as another node,
    /// indexed like [`IDENTITY_REASONS`].
    pub identity_refused: [u64; IDENTITY_REASONS.len()],
    /// Times each bound was hit, indexed like [`Bound::ALL`].
    pub bounds_hit: [u64; Bound::ALL.len()],
}

impl TransportStats {
    /// All identity refusals.
    pub fn identity_refused_total(&self) -> u64 {
        self.identity_refused.iter().sum()
    }

    /// How often `bound` was hit.
    pub fn bound(&self, bound: Bound) -> u64 {
        self.bounds_hit[bound as usize]
    }
}

impl TransportMetrics {
    /// Copies the counters.
    pub fn snapshot(&self) -> TransportStats {
        TransportStats {
            messages_out: self.messages_out.load(Relaxed),
            datagrams_out: self.datagrams_out.load(Relaxed),
            bytes_out: self.bytes_out.load(Relaxed),
            messages_in: self.messages_in.load(Relaxed),
            bytes_in: self.bytes_in.load(Relaxed),
            dropped_send_queue_full: self.dropped_send_queue_full.load(Relaxed),
            dropped_recv_queue_full: self.dropped_recv_queue_full.load(Relaxed),
            dropped_recv_stale: self.dropped_recv_stale.load(Relaxed),
            empty_acks: self.empty_acks.load(Relaxed),
            empty_acks_unsent: self.empty_acks_unsent.load(Relaxed),
            dropped_send_failed: self.dropped_send_failed.load(Relaxed),
            malformed: self.malformed.load(Relaxed),
            oversized: self.oversized.load(Relaxed),
            connections_dialed: self.connections_dialed.load(Relaxed),
            connections_accepted: self.connections_accepted.load(Relaxed),
            connections_open: self.connections_open.load(Relaxed),
            handshake_failures: self.handshake_failures.load(Relaxed),
            connections_replaced: self.connections_replaced.load(Relaxed),
            bytes_out_by_kind: std::array::from_fn(|i| self.bytes_out_by_kind[i].load(Relaxed)),
            identity_refused: std::array::from_fn(|i| self.identity_refused[i].load(Relaxed)),
            bounds_hit: std::array::from_fn(|i| self.bounds_hit[i].load(Relaxed)),
        }
    }

    pub(crate) fn bound_hit(&self, bound: Bound) {
        inc(&self.bounds_hit[bound as usize]);
    }

    pub(crate) fn identity_refused(&self, reason: &str) {
        if let Some(i) = IDENTITY_REASONS.iter().position(|r| *r == reason) {
            inc(&self.identity_refused[i]);
        }
    }

    pub(crate) fn sent(&self, kind: MessageKind, bytes: usize, how: Carrier) {
        inc(&self.messages_out);
        if how == Carrier::Datagram {
            inc(&self.datagrams_out);
        }
        add(&self.bytes_out, bytes);
        add(&self.bytes_out_by_kind[kind.index()], bytes);
    }
}

/// How a message went to its peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Carrier {
    /// One QUIC datagram.
    Datagram,
    /// A unidirectional stream of its own.
    Stream,
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
