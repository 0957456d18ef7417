//! The gossip transport's and the gossip thread's counters, exported at scrape time
//! from their atomics (neither touches the metrics registry).

use probemesh_gossip::pace::Pace;
use probemesh_gossip::transport::metrics::IDENTITY_REASONS;
use probemesh_gossip::transport::{Bound, MessageKind, TransportMetrics};
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;
use std::sync::{Arc, OnceLock};

/// Exports the gossip transport's own counters at scrape time.
#[derive(Debug)]
pub struct TransportCollector(pub Arc<OnceLock<Arc<TransportMetrics>>>);

impl Collector for TransportCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(t) = self.0.get() else {
            return Ok(());
        };
        let s = t.snapshot();
        let counters: [(&str, &str, u64); 17] = [
            (
                "gossip_messages_out",
                "Gossip messages sent",
                s.messages_out,
            ),
            (
                "gossip_datagrams_out",
                "Gossip messages sent as one QUIC datagram (the others went on a stream each)",
                s.datagrams_out,
            ),
            (
                "gossip_bytes_out",
                "Bytes of gossip messages sent",
                s.bytes_out,
            ),
            (
                "gossip_messages_in",
                "Gossip messages received",
                s.messages_in,
            ),
            (
                "gossip_bytes_in",
                "Bytes of gossip messages received",
                s.bytes_in,
            ),
            (
                "gossip_dropped_send_queue_full",
                "Gossip messages dropped: peer send queue full",
                s.dropped_send_queue_full,
            ),
            (
                "gossip_dropped_recv_queue_full",
                "Gossip messages dropped: the sending peer's receive queue was full",
                s.dropped_recv_queue_full,
            ),
            (
                "gossip_dropped_recv_stale",
                "Gossip Syns dropped unanswered after waiting a gossip round in the receive queue (load shed)",
                s.dropped_recv_stale,
            ),
            (
                "gossip_empty_acks",
                "Gossip Acks received with an empty delta, taken by the transport instead of chitchat (they change nothing)",
                s.empty_acks,
            ),
            (
                "gossip_empty_acks_unsent",
                "Gossip Acks with an empty delta not sent: the peer would apply nothing",
                s.empty_acks_unsent,
            ),
            (
                "gossip_dropped_send_failed",
                "Gossip messages dropped: peer unreachable",
                s.dropped_send_failed,
            ),
            (
                "gossip_malformed_messages",
                "Gossip messages that did not decode",
                s.malformed,
            ),
            (
                "gossip_oversized_messages",
                "Gossip messages over the size limit",
                s.oversized,
            ),
            (
                "gossip_connections_dialed",
                "QUIC connections opened to peers",
                s.connections_dialed,
            ),
            (
                "gossip_connections_accepted",
                "QUIC connections accepted from peers",
                s.connections_accepted,
            ),
            (
                "gossip_handshake_failures",
                "QUIC/TLS handshakes that failed (foreign CA, timeouts)",
                s.handshake_failures,
            ),
            (
                "gossip_connections_replaced",
                "QUIC connections closed because a newer one from the same peer address replaced them",
                s.connections_replaced,
            ),
        ];
        for (name, help, value) in counters {
            let c = ConstCounter::new(value);
            let enc = encoder.encode_descriptor(name, help, None, c.metric_type())?;
            c.encode(enc)?;
        }
        let mut enc = encoder.encode_descriptor(
            "gossip_bytes_out_by_kind",
            "Bytes of gossip messages sent, by chitchat message kind (syn: digest; synack, ack: digest and deltas)",
            None,
            MetricType::Counter,
        )?;
        for (kind, value) in MessageKind::ALL.iter().zip(s.bytes_out_by_kind) {
            let c = ConstCounter::new(value);
            c.encode(enc.encode_family(&[("kind", kind.as_str())])?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "gossip_identity_refused",
            "Gossip refused for speaking as another node: no_name (the certificate names no node; a connection), no_own_entry, kept_alive, unlisted, too_many_others (messages; see docs/security.md)",
            None,
            MetricType::Counter,
        )?;
        for (reason, value) in IDENTITY_REASONS.iter().zip(s.identity_refused) {
            let c = ConstCounter::new(value);
            c.encode(enc.encode_family(&[("reason", *reason)])?)?;
        }
        let mut enc = encoder.encode_descriptor(
            "gossip_bounds_hit",
            "Times a per-peer bound was hit (the message or connection was dropped): message_size, decoded_size, delta_ops, peer_queue, peer_rate, connections_per_name, handshakes; the numbers are in docs/security.md",
            None,
            MetricType::Counter,
        )?;
        for (bound, value) in Bound::ALL.iter().zip(s.bounds_hit) {
            let c = ConstCounter::new(value);
            c.encode(enc.encode_family(&[("bound", bound.as_str())])?)?;
        }
        let g = ConstGauge::new(i64::try_from(s.connections_open).unwrap_or(i64::MAX));
        let enc = encoder.encode_descriptor(
            "gossip_connections_open",
            "QUIC connections open",
            None,
            g.metric_type(),
        )?;
        g.encode(enc)
    }
}

/// Exports the gossip thread's wake-ups and the news that set its pace
/// (`probemesh_gossip::pace`) at scrape time.
#[derive(Debug)]
pub struct PaceCollector(pub Arc<OnceLock<Arc<Pace>>>);

impl Collector for PaceCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let Some(p) = self.0.get() else {
            return Ok(());
        };
        let s = p.stats();
        let mut enc = encoder.encode_descriptor(
            "gossip_thread_wakeups",
            "Wake-ups of the gossip thread, by the coalescing window in use: short while the cluster state changes, long once it has been quiet (docs/decisions.md)",
            None,
            MetricType::Counter,
        )?;
        for (window, value) in [("short", s.wakes_busy), ("long", s.wakes_idle)] {
            let c = ConstCounter::new(value);
            c.encode(enc.encode_family(&[("window", window)])?)?;
        }
        let c = ConstCounter::new(s.news);
        let enc = encoder.encode_descriptor(
            "gossip_state_changes",
            "Key changes applied to the gossip state (a peer's or this node's own); each selects the gossip thread's short window for a while",
            None,
            c.metric_type(),
        )?;
        c.encode(enc)
    }
}
