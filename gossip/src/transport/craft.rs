//! Builds chitchat 0.11 wire messages byte by byte, hostile ones included: the format
//! [`super::scan`] reads. For tests of hostile input (this crate's unit and integration
//! tests); a node never uses it, and it is not part of the supported API.

use super::scan::WireId;

/// A delta operation.
#[derive(Clone, Debug)]
pub enum Op {
    /// Starts a node's state.
    Node(WireId),
    /// A key set to a value, at a version.
    Kv(String, String, u64),
    /// The node's max version (after a node without key-values).
    MaxVersion(u64),
}

/// How [`blocks`] frames the operations.
#[derive(Clone, Copy, Debug)]
pub enum Encoding {
    /// zstd-compressed blocks, as chitchat writes them.
    Zstd,
    /// Raw blocks.
    Raw,
}

/// One encoded block of a delta stream (type, length, bytes).
#[derive(Clone, Debug)]
pub struct Block(Vec<u8>);

impl Block {
    /// A zstd block of `data` (compressed as chitchat does, level 0).
    pub fn zstd(data: &[u8]) -> Block {
        let z = zstd::bulk::compress(data, 0).unwrap_or_default();
        let mut b = vec![1u8];
        b.extend_from_slice(&(z.len() as u16).to_le_bytes());
        b.extend_from_slice(&z);
        Block(b)
    }

    /// A raw block of `data` (at most 65,535 bytes).
    pub fn raw(data: &[u8]) -> Block {
        let mut b = vec![2u8];
        b.extend_from_slice(&(data.len() as u16).to_le_bytes());
        b.extend_from_slice(data);
        Block(b)
    }

    /// A zstd block that inflates to `n` zero bytes (a few dozen bytes on the wire).
    pub fn zeros_zstd(n: usize) -> Block {
        Block::zstd(&vec![0u8; n])
    }

    /// The encoded length.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// Whether it is empty (never, for a built block).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

fn put_str(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(&(s.len() as u16).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

fn put_id(out: &mut Vec<u8>, id: &WireId) {
    put_str(out, &id.node_id);
    out.extend_from_slice(&id.generation.to_le_bytes());
    match id.addr.ip() {
        std::net::IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        std::net::IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&id.addr.port().to_le_bytes());
}

/// The operations encoded and cut into blocks of 16 KiB, as chitchat does.
pub fn blocks(ops: &[Op], encoding: Encoding) -> Vec<Block> {
    let mut plain = Vec::new();
    for op in ops {
        match op {
            Op::Node(id) => {
                plain.push(0);
                put_id(&mut plain, id);
                plain.extend_from_slice(&0u64.to_le_bytes());
                plain.extend_from_slice(&0u64.to_le_bytes());
            }
            Op::Kv(k, v, version) => {
                plain.push(1);
                put_str(&mut plain, k);
                put_str(&mut plain, v);
                plain.extend_from_slice(&version.to_le_bytes());
                plain.push(0);
            }
            Op::MaxVersion(v) => {
                plain.push(2);
                plain.extend_from_slice(&v.to_le_bytes());
            }
        }
    }
    plain
        .chunks(16_384)
        .map(|c| match encoding {
            Encoding::Zstd => Block::zstd(c),
            Encoding::Raw => Block::raw(c),
        })
        .collect()
}

fn header(tag: u8) -> Vec<u8> {
    let mut m = 45_139u16.to_le_bytes().to_vec();
    m.push(0);
    m.push(tag);
    m
}

fn put_digest(out: &mut Vec<u8>, digest: &[(WireId, u64)]) {
    out.extend_from_slice(&(digest.len() as u16).to_le_bytes());
    for (id, heartbeat) in digest {
        put_id(out, id);
        out.extend_from_slice(&heartbeat.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
        out.extend_from_slice(&0u64.to_le_bytes());
    }
}

fn put_blocks(out: &mut Vec<u8>, blocks: &[Block]) {
    for b in blocks {
        out.extend_from_slice(&b.0);
    }
    out.push(0);
}

/// A Syn with this digest.
pub fn syn(cluster_id: &str, digest: &[(WireId, u64)]) -> Vec<u8> {
    let mut m = header(0);
    put_digest(&mut m, digest);
    put_str(&mut m, cluster_id);
    m
}

/// A SynAck with this digest and delta.
pub fn syn_ack(digest: &[(WireId, u64)], delta: &[Block]) -> Vec<u8> {
    let mut m = header(1);
    put_digest(&mut m, digest);
    put_blocks(&mut m, delta);
    m
}

/// An Ack with this delta.
pub fn ack(delta: &[Block]) -> Vec<u8> {
    let mut m = header(2);
    put_blocks(&mut m, delta);
    m
}

/// A decompression bomb: an Ack of about `wire_len` bytes made of zstd blocks that each
/// inflate to 65,535 zero bytes (about 180 MB for a 65 KB message).
pub fn bomb(wire_len: usize) -> Vec<u8> {
    let block = Block::zeros_zstd(u16::MAX as usize);
    let n = wire_len.saturating_sub(5) / block.len().max(1);
    ack(&vec![block; n])
}
