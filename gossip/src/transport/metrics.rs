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
        }
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
