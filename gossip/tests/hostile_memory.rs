//! What one hostile member can make a node hold (SPEC S10 "Bounded peers"), measured
//! as this process's peak resident memory. One test in its own binary, so no other test
//! shares the process and its memory: decompression bombs, oversized and inflating
//! messages, too many operations, then a stream flood with large writes.

mod support;

use probemesh_gossip::transport::craft::{self, Encoding, Op};
use probemesh_gossip::transport::quic::config::{
    CONNECTION_WINDOW, MAX_UNI_STREAMS, STREAM_WINDOW,
};
use probemesh_gossip::transport::scan::{MAX_DELTA_OPS, WireId};
use probemesh_gossip::transport::{Bound, QuicSettings};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use support::*;

const MIB: u64 = 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_messages_and_streams_keep_memory_bounded() {
    let dir = ca();
    let va = free_udp_addr();
    // No rate limit here: every message is decoded as far as the bounds allow.
    let settings = QuicSettings {
        peer_rate: 1_000_000,
        peer_burst: 1_000_000,
        ..QuicSettings::default()
    };
    let (victim, vm) = node(material(dir.path(), "victim"), "victim", va, &[], settings).await;
    let tls = material(dir.path(), "mallory");
    let mallory = RawPeer::connect(&tls, va).await;
    // Built before the baseline: the test's own buffers are not the victim's.
    let envelope_bomb = zstd::bulk::compress(&vec![0u8; 20 << 20], 3).unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let base_peak = peak_rss_kib();

    // 1. Decompression bombs: 65 KB on the wire, about 180 MB once inflated.
    let bomb = craft::bomb(65_000);
    let inflated_mb = (bomb.len() / 23) * 65_535 / 1_000_000;
    const BOMBS: u64 = 40;
    for _ in 0..BOMBS {
        assert!(mallory.send(&bomb).await);
    }
    // 2. Streams longer than a message, and a transport envelope that inflates.
    for _ in 0..5 {
        mallory.send(&vec![0x53u8; 100_000]).await;
        mallory.send(&envelope_bomb).await;
    }
    // 3. A delta of more operations than allowed, small on the wire.
    let ops: Vec<Op> = std::iter::once(Op::Node(WireId {
        node_id: "mallory".into(),
        generation: 1,
        addr: mallory.addr(),
    }))
    .chain((0..(MAX_DELTA_OPS as u64 + 10)).map(Op::MaxVersion))
    .collect();
    let many = craft::ack(&craft::blocks(&ops, Encoding::Zstd));
    for _ in 0..5 {
        mallory.send(&many).await;
    }
    // A large delta within the limits is still taken in (the bounds are not a wall
    // for honest traffic): 6,000 key-values, about 500 KB inflated.
    let fits: Vec<Op> = std::iter::once(Op::Node(WireId {
        node_id: "mallory".into(),
        generation: 1,
        addr: mallory.addr(),
    }))
    .chain((1..=6_000u64).map(|v| Op::Kv(format!("k{v}"), "x".repeat(60), v)))
    .collect();
    let fits = craft::ack(&craft::blocks(&fits, Encoding::Zstd));
    assert!(fits.len() < 65_507, "{}", fits.len());
    let before = vm.snapshot().messages_in;
    mallory.send(&fits).await;
    assert!(
        eventually(Duration::from_secs(10), async || {
            let s = vm.snapshot();
            s.bound(Bound::DecodedSize) == BOMBS
                && s.bound(Bound::DeltaOps) == 5
                && s.bound(Bound::MessageSize) >= 5
                && s.messages_in > before
        })
        .await,
        "{:?}",
        vm.snapshot()
    );
    let s = vm.snapshot();
    let after_bombs = peak_rss_kib();
    eprintln!(
        "bombs: {BOMBS} x {} bytes (each would inflate to ~{inflated_mb} MB in chitchat): peak RSS {} -> {} MiB; dropped: decoded_size {}, delta_ops {}, message_size {}, malformed {}",
        bomb.len(),
        base_peak / MIB,
        after_bombs / MIB,
        s.bound(Bound::DecodedSize),
        s.bound(Bound::DeltaOps),
        s.bound(Bound::MessageSize),
        s.malformed
    );
    assert!(
        after_bombs - base_peak < 64 * MIB,
        "peak RSS grew by {} MiB",
        (after_bombs - base_peak) / MIB
    );

    // 4. A stream flood: as many streams as QUIC lets it open, each holding just under
    // a message (60,000 bytes) and never finished, so the victim's reader waits on the
    // first while the others sit in its buffers.
    let opened = Arc::new(AtomicU64::new(0));
    let written = Arc::new(AtomicU64::new(0));
    let conn = RawPeer::connect(&tls, va).await.conn;
    let mut writers = Vec::new();
    for _ in 0..64 {
        let Ok(Ok(mut s)) = tokio::time::timeout(Duration::from_millis(200), conn.open_uni()).await
        else {
            break;
        };
        opened.fetch_add(1, Ordering::Relaxed);
        let written = Arc::clone(&written);
        writers.push(tokio::spawn(async move {
            let chunk = vec![0x53u8; 4_000];
            for _ in 0..15 {
                match s.write(&chunk).await {
                    Ok(n) => written.fetch_add(n as u64, Ordering::Relaxed),
                    Err(_) => break,
                };
            }
            // Held open, never finished.
            tokio::time::sleep(Duration::from_secs(30)).await;
            drop(s);
        }));
    }
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    let opened = opened.load(Ordering::Relaxed);
    let written = written.load(Ordering::Relaxed);
    let after_flood = peak_rss_kib();
    eprintln!(
        "stream flood: {opened} streams opened (limit {MAX_UNI_STREAMS}), {} KiB of {} KiB tried accepted (connection window {} KiB); peak RSS {} MiB",
        written / 1024,
        opened * 60_000 / 1024,
        CONNECTION_WINDOW / 1024,
        after_flood / MIB
    );
    assert!(
        opened <= u64::from(MAX_UNI_STREAMS),
        "{opened} streams open at once"
    );
    // The stream being read returns its credit as it is read; the others share the
    // connection window.
    assert!(
        written <= u64::from(CONNECTION_WINDOW) + u64::from(STREAM_WINDOW),
        "{written} bytes accepted"
    );
    assert!(
        after_flood - base_peak < 64 * MIB,
        "peak RSS grew by {} MiB",
        (after_flood - base_peak) / MIB
    );
    for w in writers {
        w.abort();
    }
    drop(conn);

    // The victim still works: an honest node joins and is seen.
    let ba = free_udp_addr();
    let (b, _) = node(
        material(dir.path(), "b"),
        "b",
        ba,
        &[va],
        QuicSettings::default(),
    )
    .await;
    assert!(
        eventually(Duration::from_secs(10), async || alive_ids(&victim)
            .await
            .contains(&"b".to_string())
            && alive_ids(&b).await.contains(&"victim".to_string()))
        .await,
        "the victim no longer gossips"
    );

    // For contrast, what the transport no longer lets through: chitchat's own decoder
    // inflating one bomb.
    let before = peak_rss_kib();
    let decoded =
        <chitchat::ChitchatMessage as chitchat::Deserializable>::deserialize(&mut &bomb[..]);
    let after = peak_rss_kib();
    eprintln!(
        "for contrast, chitchat decoding one bomb itself: peak RSS {} -> {} MiB ({})",
        before / MIB,
        after / MIB,
        if decoded.is_ok() {
            "decoded"
        } else {
            "refused after inflating"
        }
    );
}
