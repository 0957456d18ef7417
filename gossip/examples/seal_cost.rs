//! CPU and size of sealing steady-state gossip (`transport::envelope::seal`) against
//! zstd at other levels, on the same messages in the same run.
//!
//! The messages have the shape of chitchat's Syn at 64 members: per member an id, a
//! generation, an IPv4 address and three u64 counters (heartbeat, last GC version, max
//! version), the heartbeats moving from one round to the next. Run by
//! `bench/seal_cost.sh`.

use probemesh_gossip::transport::envelope;
use std::time::Instant;

struct Member {
    id: String,
    generation: u64,
    port: u16,
}

fn syn(members: &[Member], round: u64) -> Vec<u8> {
    let mut out = vec![0x53, 0xb0, 0x00, 0x00];
    out.extend_from_slice(&9u16.to_le_bytes());
    out.extend_from_slice(b"probemesh");
    out.extend_from_slice(&(members.len() as u16).to_le_bytes());
    for (i, m) in members.iter().enumerate() {
        out.extend_from_slice(&(m.id.len() as u16).to_le_bytes());
        out.extend_from_slice(m.id.as_bytes());
        out.extend_from_slice(&m.generation.to_le_bytes());
        out.push(4);
        out.extend_from_slice(&[127, 0, 0, 1]);
        out.extend_from_slice(&m.port.to_le_bytes());
        let heartbeat = 9 * round + i as u64 * 31;
        for counter in [heartbeat, 0, 4 + (i as u64 % 3)] {
            out.extend_from_slice(&counter.to_le_bytes());
        }
    }
    out
}

/// Microseconds per message and mean bytes, best of `runs` passes over `messages`.
fn measure(messages: &[Vec<u8>], runs: usize, mut f: impl FnMut(&[u8]) -> usize) -> (f64, f64) {
    let mut best = f64::MAX;
    let mut bytes = 0;
    for _ in 0..runs {
        bytes = 0;
        let start = Instant::now();
        for m in messages {
            bytes += f(m);
        }
        best = best.min(start.elapsed().as_secs_f64());
    }
    let n = messages.len() as f64;
    (best * 1e6 / n, bytes as f64 / n)
}

fn main() {
    let members: Vec<Member> = (0..64)
        .map(|i| Member {
            id: format!("gateway-{i}"),
            generation: 1_795_884_924_851 + i * 977,
            port: 40_000 + i as u16 * 3,
        })
        .collect();
    let messages: Vec<Vec<u8>> = (0..500).map(|round| syn(&members, round)).collect();
    let runs = 20;
    println!(
        "64-member Syn, {} bytes; best of {runs} passes over {} messages",
        messages[0].len(),
        messages.len()
    );
    let (us, bytes) = measure(&messages, runs, |m| envelope::seal(m).len());
    println!(
        "seal (level {}): {us:.2} us per message, {bytes:.0} bytes",
        envelope::LEVEL
    );
    for level in [1, -3, 3] {
        let mut c = zstd::bulk::Compressor::new(level).expect("zstd context");
        let (us, bytes) = measure(&messages, runs, |m| {
            c.compress(m).map(|v| v.len()).unwrap_or(m.len())
        });
        println!("zstd level {level} (reference): {us:.2} us per message, {bytes:.0} bytes");
    }
}
