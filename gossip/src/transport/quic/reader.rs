//! The receiving side: accepting connections, binding each to its certificate name, and
//! admitting messages into chitchat's queue.
//!
//! Every received stream or datagram goes through [`admit`], cheapest check first, and is dropped
//! and counted at the first one it fails: the sender's message rate, the size on the
//! wire, the transport envelope, the scan of chitchat's framing (inflated size and
//! operation count, before chitchat decodes anything), the identity rules, chitchat's
//! own decoder, and the sender's queue. An Ack with an empty delta stops after the
//! identity rules ([`absorbs`]).

use super::Shared;
use super::conns::{Closed, Side};
use crate::tls;
use crate::transport::MAX_MESSAGE;
use crate::transport::envelope;
use crate::transport::metrics::{Bound, add, dec, inc};
use crate::transport::scan::{self, ScanError, ScanLimits};
use chitchat::{ChitchatMessage, Deserializable};
use rustls::pki_types::CertificateDer;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The node name in the certificate the peer presented on `conn`.
fn peer_name(conn: &quinn::Connection) -> Option<String> {
    let identity = conn.peer_identity()?;
    let chain = identity.downcast::<Vec<CertificateDer<'static>>>().ok()?;
    tls::node_name(chain.first()?).ok()
}

/// Binds a new connection to its certificate name, caches it and starts its reader.
/// A connection whose certificate names no node is closed.
pub(super) fn adopt(shared: &Arc<Shared>, conn: quinn::Connection, side: Side) -> bool {
    let remote = conn.remote_address();
    let Some(name) = peer_name(&conn) else {
        shared.metrics.identity_refused("no_name");
        tracing::warn!(peer = %remote, "closed a gossip connection whose certificate names no node (no usable CN)");
        conn.close(1u32.into(), b"certificate names no node");
        return false;
    };
    let name: Arc<str> = Arc::from(name);
    shared.identities.attest(&name, remote);
    inc(&shared.metrics.connections_open);
    let closed = shared.conns().insert(conn.clone(), Arc::clone(&name), side);
    for (old, why) in closed {
        match why {
            Closed::Replaced => inc(&shared.metrics.connections_replaced),
            Closed::TooManyForName => {
                shared.metrics.bound_hit(Bound::ConnectionsPerName);
                tracing::debug!(peer = %old.remote_address(), name = %name, "closed the oldest connection of a peer over its connection limit");
            }
        }
        old.close(0u32.into(), b"replaced");
    }
    tokio::spawn(read_loop(Arc::clone(shared), conn, name));
    true
}

pub(super) async fn accept_loop(shared: Arc<Shared>) {
    loop {
        let incoming = tokio::select! {
            () = shared.stop.cancelled() => break,
            i = shared.endpoint.accept() => match i { Some(i) => i, None => break },
        };
        // A handshake costs CPU and memory before the peer has proven anything, so only
        // a bounded number run at once.
        let Ok(permit) = Arc::clone(&shared.handshakes).try_acquire_owned() else {
            shared.metrics.bound_hit(Bound::Handshakes);
            incoming.refuse();
            continue;
        };
        let shared = Arc::clone(&shared);
        tokio::spawn(async move {
            let remote = incoming.remote_address();
            let outcome = tokio::time::timeout(shared.settings.connect_timeout, incoming).await;
            drop(permit);
            match outcome {
                Ok(Ok(conn)) => {
                    inc(&shared.metrics.connections_accepted);
                    adopt(&shared, conn, Side::Accepted);
                }
                Ok(Err(e)) => {
                    inc(&shared.metrics.handshake_failures);
                    tracing::debug!(peer = %remote, error = %e, "refused a gossip connection");
                }
                Err(_) => {
                    inc(&shared.metrics.handshake_failures);
                    tracing::debug!(peer = %remote, "a gossip handshake timed out");
                }
            }
        });
    }
}

async fn read_loop(shared: Arc<Shared>, conn: quinn::Connection, name: Arc<str>) {
    let from = conn.remote_address();
    let mut warned = false;
    loop {
        let arrived = tokio::select! {
            () = shared.stop.cancelled() => break,
            s = conn.accept_uni() => match s { Ok(s) => Arrived::Stream(s), Err(_) => break },
            d = conn.read_datagram() => match d { Ok(d) => Arrived::Datagram(d), Err(_) => break },
        };
        // The rate check comes before reading: a flooding peer costs a stream reset
        // (or a dropped datagram), not a decode.
        if !shared.conns().take_token(&name, Instant::now()) {
            shared.metrics.bound_hit(Bound::PeerRate);
            if let Arrived::Stream(mut stream) = arrived {
                let _ = stream.stop(0u32.into());
            }
            continue;
        }
        let bytes: bytes::Bytes = match arrived {
            // A datagram is at most the connection's datagram size, far below
            // MAX_MESSAGE.
            Arrived::Datagram(d) => d,
            Arrived::Stream(mut stream) => {
                let read = tokio::time::timeout(
                    shared.settings.read_timeout,
                    stream.read_to_end(MAX_MESSAGE),
                )
                .await;
                match read {
                    Ok(Ok(b)) => b.into(),
                    Ok(Err(quinn::ReadToEndError::TooLong)) => {
                        inc(&shared.metrics.oversized);
                        shared.metrics.bound_hit(Bound::MessageSize);
                        continue;
                    }
                    Ok(Err(_)) | Err(_) => continue,
                }
            }
        };
        match admit(&shared, &name, from, &bytes) {
            Ok(()) => {}
            Err(Dropped::Identity(refusal)) => {
                shared.metrics.identity_refused(refusal.reason());
                if !warned {
                    warned = true;
                    tracing::warn!(peer = %from, certificate = %name, claimed = refusal.claimed(), reason = refusal.reason(), "refused gossip from a peer speaking as another node; its messages are dropped");
                }
            }
            Err(Dropped::Bound(bound)) => shared.metrics.bound_hit(bound),
            Err(Dropped::Malformed) => {
                inc(&shared.metrics.malformed);
                tracing::debug!(peer = %from, len = bytes.len(), "dropped a malformed gossip message");
            }
        }
    }
    dec(&shared.metrics.connections_open);
    shared.conns().remove(&conn);
}

/// How a message arrived.
enum Arrived {
    Stream(quinn::RecvStream),
    Datagram(bytes::Bytes),
}

/// Why a received message was dropped.
enum Dropped {
    Malformed,
    Bound(Bound),
    Identity(crate::transport::identity::Refusal),
}

/// Checks one received message and queues it for chitchat.
fn admit(shared: &Shared, name: &str, from: SocketAddr, wire: &[u8]) -> Result<(), Dropped> {
    let inner = envelope::open(wire).map_err(|_| Dropped::Malformed)?;
    let scanned = scan::scan(&inner, ScanLimits::default()).map_err(|e| match e {
        ScanError::Malformed(_) => Dropped::Malformed,
        ScanError::DecodedTooLarge => Dropped::Bound(Bound::DecodedSize),
        ScanError::TooManyOps => Dropped::Bound(Bound::DeltaOps),
    })?;
    shared
        .speakers()
        .check(name, from, &scanned)
        .map_err(Dropped::Identity)?;
    // What the sender says about its own name is first-hand.
    for (id, _) in scanned.digest.iter().filter(|(id, _)| id.node_id == name) {
        shared.identities.attest(name, id.addr);
    }
    let msg = if absorbs(&scanned) {
        None
    } else {
        Some(ChitchatMessage::deserialize(&mut &inner[..]).map_err(|_| Dropped::Malformed)?)
    };
    inc(&shared.metrics.messages_in);
    add(&shared.metrics.bytes_in, wire.len());
    let Some(msg) = msg else {
        inc(&shared.metrics.empty_acks);
        return Ok(());
    };
    let cost = scanned.cost(inner.len());
    let queued = match deadline_for(scanned.kind, Instant::now(), shared.settings.syn_max_wait) {
        Some(deadline) => shared
            .inbox
            .push_expiring(name, (from, msg), cost, deadline),
        None => shared.inbox.push(name, (from, msg), cost),
    };
    queued.map_err(|_| {
        inc(&shared.metrics.dropped_recv_queue_full);
        Dropped::Bound(Bound::PeerQueue)
    })
}

/// Whether the transport can take a received message in chitchat's place: an empty Ack
/// ([`scan::Scan::is_empty_ack`]). chitchat would decode it (zeroing a 64 KiB buffer
/// for the empty delta), queue it, wake its task, take its lock and apply nothing. This
/// node's transport does not send such Acks at all (see `QuicSocket::send`); peers
/// running a release before that change still do.
fn absorbs(scanned: &scan::Scan) -> bool {
    scanned.is_empty_ack()
}

/// Until when a received message of `kind` is worth handing to chitchat: a Syn for
/// `max_wait` (then its sender has sent a newer digest; see [`super::super::fair`]),
/// anything else (state this node asked for) always.
fn deadline_for(
    kind: crate::transport::MessageKind,
    now: Instant,
    max_wait: Duration,
) -> Option<Instant> {
    (kind == crate::transport::MessageKind::Syn).then(|| now + max_wait)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transport::MessageKind;

    #[test]
    fn only_acks_with_empty_deltas_are_absorbed() {
        use crate::transport::craft::{self, Encoding, Op};
        use crate::transport::scan::WireId;
        let scanned = |m: &[u8]| scan::scan(m, ScanLimits::default()).unwrap();
        assert!(absorbs(&scanned(&craft::ack(&[]))));
        let id = WireId {
            node_id: "a".into(),
            generation: 1,
            addr: "127.0.0.1:7000".parse().unwrap(),
        };
        let ops = [Op::Node(id.clone()), Op::Kv("k".into(), "v".into(), 1)];
        for encoding in [Encoding::Raw, Encoding::Zstd] {
            let delta = craft::blocks(&ops, encoding);
            assert!(!absorbs(&scanned(&craft::ack(&delta))), "{encoding:?}");
        }
        // A node header alone is an operation (chitchat may reset that node's state).
        let header_only = craft::blocks(&[Op::Node(id.clone())], Encoding::Raw);
        assert!(!absorbs(&scanned(&craft::ack(&header_only))));
        // SynAcks and Syns are answered, whatever their delta.
        assert!(!absorbs(&scanned(&craft::syn_ack(&[(id.clone(), 1)], &[]))));
        assert!(!absorbs(&scanned(&craft::syn("test", &[(id, 1)]))));
    }

    #[test]
    fn only_syns_expire_in_the_receive_queue() {
        let now = Instant::now();
        let wait = Duration::from_millis(200);
        assert_eq!(deadline_for(MessageKind::Syn, now, wait), Some(now + wait));
        for kind in [
            MessageKind::SynAck,
            MessageKind::Ack,
            MessageKind::BadCluster,
        ] {
            assert_eq!(deadline_for(kind, now, wait), None, "{kind:?}");
        }
    }
}
