//! A read-only pass over a chitchat 0.11 message, run before chitchat decodes it.
//!
//! chitchat 0.11 decodes a delta by inflating every zstd block of its "compressed
//! stream" into one buffer, with no limit on the number of blocks (`deserialize_stream`
//! in its `serialize.rs`): a 65 KB message of blocks that each inflate to 64 KiB grows to
//! hundreds of megabytes before a single operation is read. chitchat keeps the types
//! that would let us look inside (`Delta`, `NodeDelta`, `Digest`) `pub(crate)`, so this
//! module reads the wire format itself (it is fixed: chitchat is pinned at `=0.11.2`):
//!
//! - `magic u16 = 45139`, `version u8 = 0`, `tag u8` (0 Syn, 1 SynAck, 2 Ack,
//!   3 BadCluster);
//! - a digest is `count u16` then per node a chitchat id and three `u64` (heartbeat,
//!   last GC version, max version);
//! - a chitchat id is `node_id` (`u16` length + UTF-8), `generation u64`, and an address
//!   (`4` + 4 bytes or `6` + 16 bytes, then `port u16`);
//! - a delta is a sequence of blocks, each `type u8` (0 end, 1 zstd, 2 raw) and
//!   `len u16` + bytes, whose concatenated contents are operations: `0` node (chitchat
//!   id, last GC version, from version), `1` key-value (key, value, version, status
//!   `u8`), `2` set max version (`u64`).
//!
//! Each block is inflated here exactly as chitchat does it (into a 65,535-byte buffer),
//! one at a time into a reused scratch buffer, and the total is counted: a message whose
//! delta would inflate past [`MAX_DECODED`] bytes, or hold more than [`MAX_DELTA_OPS`]
//! operations, is refused before chitchat allocates anything for it. The same pass
//! yields the chitchat ids the message speaks about, for the identity checks.

use super::metrics::MessageKind;
use std::cell::RefCell;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};

/// Largest total size a delta may inflate to: 16 times the largest message. Honest
/// deltas carry worker ids (64 random bits each) in every key, which zstd cannot shrink
/// much; they inflate about 2 to 4 times.
pub const MAX_DECODED: usize = 1 << 20;

/// Most operations one delta may hold. An honest operation carries at least a worker id
/// (8 incompressible bytes), so a 65,507-byte message holds at most about 8,000.
pub const MAX_DELTA_OPS: usize = 16_384;

/// Bytes of memory chitchat's decoded form costs per operation, at most (its `DeltaOp`
/// enum with vector growth, then the node delta's key-value entry): used to weigh queued
/// messages, not to allocate.
pub const OP_COST: usize = 160;

/// chitchat's magic number.
const MAGIC: u16 = 45_139;
/// chitchat inflates each block into a buffer this large; a larger block fails there.
const BLOCK_BUFFER: usize = u16::MAX as usize;

/// A chitchat id as it appears on the wire.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WireId {
    /// The node id.
    pub node_id: String,
    /// The generation (start time in probemesh).
    pub generation: u64,
    /// The gossip address it advertises.
    pub addr: SocketAddr,
}

/// What one message says, as far as the transport needs to know.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The message kind.
    pub kind: MessageKind,
    /// Digest entries (Syn, SynAck) with their heartbeats.
    pub digest: Vec<(WireId, u64)>,
    /// The nodes the delta (SynAck, Ack) carries state for.
    pub delta_nodes: Vec<WireId>,
    /// Bytes the delta inflates to.
    pub decoded_len: usize,
    /// Operations in the delta.
    pub ops: usize,
}

impl Scan {
    /// Whether this is an Ack whose delta holds no operation (not even a node header):
    /// an Ack has no answer and an empty delta changes no state, so chitchat would
    /// apply nothing. In a converged cluster most Acks are empty.
    pub fn is_empty_ack(&self) -> bool {
        self.kind == MessageKind::Ack && self.ops == 0
    }

    /// An upper estimate of the memory the decoded message holds, for queue budgets:
    /// the wire bytes, the inflated delta and [`OP_COST`] per operation.
    pub fn cost(&self, wire_len: usize) -> usize {
        wire_len + self.decoded_len + self.ops * OP_COST
    }
}

/// Why a message was refused by the scan.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    /// Not a chitchat 0.11 message.
    #[error("malformed chitchat message: {0}")]
    Malformed(&'static str),
    /// The delta would inflate past [`MAX_DECODED`].
    #[error("delta inflates to more than {MAX_DECODED} bytes")]
    DecodedTooLarge,
    /// The delta holds more than [`MAX_DELTA_OPS`] operations.
    #[error("delta holds more than {MAX_DELTA_OPS} operations")]
    TooManyOps,
}

/// Limits of one scan (the constants above in production; tests may lower them).
#[derive(Debug, Clone, Copy)]
pub struct ScanLimits {
    /// See [`MAX_DECODED`].
    pub max_decoded: usize,
    /// See [`MAX_DELTA_OPS`].
    pub max_ops: usize,
}

impl Default for ScanLimits {
    fn default() -> Self {
        ScanLimits {
            max_decoded: MAX_DECODED,
            max_ops: MAX_DELTA_OPS,
        }
    }
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], ScanError> {
        if self.0.len() < n {
            return Err(ScanError::Malformed(what));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }

    fn u8(&mut self) -> Result<u8, ScanError> {
        Ok(self.take(1, "truncated")?[0])
    }

    fn u16(&mut self) -> Result<u16, ScanError> {
        let b = self.take(2, "truncated")?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u64(&mut self) -> Result<u64, ScanError> {
        let b = self.take(8, "truncated")?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }

    fn bytes(&mut self) -> Result<&'a [u8], ScanError> {
        let len = usize::from(self.u16()?);
        self.take(len, "truncated string")
    }

    fn str(&mut self) -> Result<&'a str, ScanError> {
        std::str::from_utf8(self.bytes()?).map_err(|_| ScanError::Malformed("string not UTF-8"))
    }

    fn addr(&mut self) -> Result<SocketAddr, ScanError> {
        let ip = match self.u8()? {
            4 => {
                let b = self.take(4, "truncated address")?;
                Ipv4Addr::new(b[0], b[1], b[2], b[3]).into()
            }
            6 => {
                let mut a = [0u8; 16];
                a.copy_from_slice(self.take(16, "truncated address")?);
                Ipv6Addr::from(a).into()
            }
            _ => return Err(ScanError::Malformed("bad IP version")),
        };
        Ok(SocketAddr::new(ip, self.u16()?))
    }

    fn id(&mut self) -> Result<WireId, ScanError> {
        let node_id = self.str()?.to_string();
        let generation = self.u64()?;
        let addr = self.addr()?;
        Ok(WireId {
            node_id,
            generation,
            addr,
        })
    }
}

/// Scans `msg` (chitchat's encoding, after the transport envelope is opened).
pub fn scan(msg: &[u8], limits: ScanLimits) -> Result<Scan, ScanError> {
    let mut r = Reader(msg);
    if r.u16()? != MAGIC {
        return Err(ScanError::Malformed("bad magic number"));
    }
    if r.u8()? != 0 {
        return Err(ScanError::Malformed("unknown protocol version"));
    }
    let mut s = Scan {
        kind: MessageKind::BadCluster,
        digest: Vec::new(),
        delta_nodes: Vec::new(),
        decoded_len: 0,
        ops: 0,
    };
    match r.u8()? {
        0 => {
            s.kind = MessageKind::Syn;
            s.digest = digest(&mut r)?;
            r.str()?;
        }
        1 => {
            s.kind = MessageKind::SynAck;
            s.digest = digest(&mut r)?;
            delta(&mut r, limits, &mut s)?;
        }
        2 => {
            s.kind = MessageKind::Ack;
            delta(&mut r, limits, &mut s)?;
        }
        3 => s.kind = MessageKind::BadCluster,
        _ => return Err(ScanError::Malformed("unknown message type")),
    }
    Ok(s)
}

fn digest(r: &mut Reader<'_>) -> Result<Vec<(WireId, u64)>, ScanError> {
    let count = usize::from(r.u16()?);
    // Each entry takes at least 33 bytes, so a count the message cannot hold is damage;
    // checking first keeps the allocation proportional to the bytes received.
    if count.saturating_mul(33) > r.0.len() {
        return Err(ScanError::Malformed("digest count exceeds the message"));
    }
    let mut entries = Vec::with_capacity(count);
    for _ in 0..count {
        let id = r.id()?;
        let heartbeat = r.u64()?;
        r.u64()?; // last GC version
        r.u64()?; // max version
        entries.push((id, heartbeat));
    }
    Ok(entries)
}

thread_local! {
    // A zstd context and a block buffer per thread, reused for every delta: making a
    // context and zeroing 64 KiB for each received delta was a visible share of a
    // node's CPU at 64 members (docs/benchmarks.md).
    static INFLATER: RefCell<Option<(zstd::bulk::Decompressor<'static>, Vec<u8>)>> =
        const { RefCell::new(None) };
}

/// Appends the inflated zstd block `src` to `decoded`, refusing to grow it past
/// `max_decoded`. One block inflates into a buffer of [`BLOCK_BUFFER`] bytes: zstd
/// stops (and fails) rather than write past it, so one block costs at most 64 KiB of
/// output, here and in chitchat.
fn inflate_block(src: &[u8], decoded: &mut Vec<u8>, max_decoded: usize) -> Result<(), ScanError> {
    INFLATER.with(|cell| {
        let mut slot = cell
            .try_borrow_mut()
            .map_err(|_| ScanError::Malformed("zstd context busy"))?;
        if slot.is_none() {
            let z = zstd::bulk::Decompressor::new()
                .map_err(|_| ScanError::Malformed("cannot start zstd"))?;
            *slot = Some((z, vec![0u8; BLOCK_BUFFER]));
        }
        let Some((z, scratch)) = slot.as_mut() else {
            return Err(ScanError::Malformed("cannot start zstd"));
        };
        let n = z
            .decompress_to_buffer(src, &mut scratch[..])
            .map_err(|_| ScanError::Malformed("zstd block does not inflate"))?;
        append_bounded(decoded, &scratch[..n], max_decoded)
    })
}

fn append_bounded(
    decoded: &mut Vec<u8>,
    block: &[u8],
    max_decoded: usize,
) -> Result<(), ScanError> {
    if decoded.len() + block.len() > max_decoded {
        return Err(ScanError::DecodedTooLarge);
    }
    decoded.extend_from_slice(block);
    Ok(())
}

/// Inflates the delta's blocks one at a time, counting, then walks its operations.
fn delta(r: &mut Reader<'_>, limits: ScanLimits, s: &mut Scan) -> Result<(), ScanError> {
    let mut decoded: Vec<u8> = Vec::new();
    loop {
        match r.u8()? {
            0 => break,
            1 => inflate_block(r.bytes()?, &mut decoded, limits.max_decoded)?,
            2 => append_bounded(&mut decoded, r.bytes()?, limits.max_decoded)?,
            _ => return Err(ScanError::Malformed("unknown block type")),
        }
    }
    s.decoded_len = decoded.len();
    let mut ops = Reader(&decoded);
    while !ops.0.is_empty() {
        s.ops += 1;
        if s.ops > limits.max_ops {
            return Err(ScanError::TooManyOps);
        }
        match ops.u8()? {
            0 => {
                let id = ops.id()?;
                ops.u64()?; // last GC version
                ops.u64()?; // from version
                s.delta_nodes.push(id);
            }
            1 => {
                ops.bytes()?; // key
                ops.bytes()?; // value
                ops.u64()?; // version
                if ops.u8()? > 2 {
                    return Err(ScanError::Malformed("bad deletion status"));
                }
            }
            2 => {
                ops.u64()?;
            }
            _ => return Err(ScanError::Malformed("unknown delta operation")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::craft::{self, Block, Encoding, Op};
    use super::*;
    use chitchat::{ChitchatMessage, Deserializable, Serializable};

    fn id(node: &str, port: u16) -> WireId {
        WireId {
            node_id: node.into(),
            generation: 7,
            addr: SocketAddr::from(([10, 0, 0, 1], port)),
        }
    }

    /// Whether chitchat's own decoder accepts `bytes`.
    fn chitchat_accepts(bytes: &[u8]) -> bool {
        ChitchatMessage::deserialize(&mut &bytes[..]).is_ok()
    }

    #[test]
    fn messages_chitchat_makes_itself_scan_cleanly() {
        for msg in [
            ChitchatMessage::Syn {
                cluster_id: "c".into(),
                digest: Default::default(),
            },
            ChitchatMessage::SynAck {
                digest: Default::default(),
                delta: Default::default(),
            },
            ChitchatMessage::Ack {
                delta: Default::default(),
            },
            ChitchatMessage::BadCluster,
        ] {
            let bytes = msg.serialize_to_vec();
            let s = scan(&bytes, ScanLimits::default()).unwrap();
            assert_eq!(s.kind, MessageKind::of(&msg));
            assert!(s.digest.is_empty() && s.delta_nodes.is_empty());
        }
    }

    #[test]
    fn ids_heartbeats_and_delta_nodes_are_read_as_chitchat_reads_them() {
        let a = id("alpha", 7800);
        let b = id("beta", 7801);
        let ops = vec![
            Op::Node(a.clone()),
            Op::Kv("reg:1".into(), "v".into(), 1),
            Op::Kv("st:1".into(), "1:ready:5".into(), 2),
            Op::Node(b.clone()),
            Op::MaxVersion(9),
        ];
        let bytes = craft::syn_ack(
            &[(a.clone(), 41), (b.clone(), 12)],
            &craft::blocks(&ops, Encoding::Zstd),
        );
        assert!(chitchat_accepts(&bytes));
        let s = scan(&bytes, ScanLimits::default()).unwrap();
        assert_eq!(s.kind, MessageKind::SynAck);
        assert_eq!(s.digest, vec![(a.clone(), 41), (b.clone(), 12)]);
        assert_eq!(s.delta_nodes, vec![a.clone(), b]);
        assert_eq!(s.ops, 5);
        // The same delta as raw blocks, and an Ack of it.
        let ack = craft::ack(&craft::blocks(&ops, Encoding::Raw));
        assert!(chitchat_accepts(&ack));
        let s = scan(&ack, ScanLimits::default()).unwrap();
        assert_eq!((s.kind, s.delta_nodes.len()), (MessageKind::Ack, 2));
        // IPv6 addresses too.
        let v6 = WireId {
            addr: "[fd00::5]:7800".parse().unwrap(),
            ..a
        };
        let syn = craft::syn("probemesh", &[(v6.clone(), 3)]);
        assert!(chitchat_accepts(&syn));
        assert_eq!(
            scan(&syn, ScanLimits::default()).unwrap().digest,
            vec![(v6, 3)]
        );
    }

    #[test]
    fn a_decompression_bomb_is_refused_before_it_inflates() {
        let bomb = craft::bomb(65_000);
        assert!(bomb.len() <= super::super::MAX_MESSAGE, "{}", bomb.len());
        let err = scan(&bomb, ScanLimits::default()).unwrap_err();
        assert_eq!(err, ScanError::DecodedTooLarge);
        // Below the limit the same shape is accepted and measured exactly.
        let small = craft::ack(&[Block::zeros_zstd(40_000)]);
        let s = scan(
            &small,
            ScanLimits {
                max_decoded: 40_000,
                max_ops: usize::MAX,
            },
        );
        // 40,000 zero bytes are not valid operations: chitchat would refuse them too.
        assert!(matches!(s, Err(ScanError::Malformed(_))), "{s:?}");
        assert!(!chitchat_accepts(&small));
    }

    #[test]
    fn too_many_operations_are_refused() {
        let ops: Vec<Op> = std::iter::once(Op::Node(id("a", 1)))
            .chain((0..MAX_DELTA_OPS as u64).map(Op::MaxVersion))
            .collect();
        let bytes = craft::ack(&craft::blocks(&ops, Encoding::Zstd));
        assert!(bytes.len() < super::super::MAX_MESSAGE);
        assert_eq!(
            scan(&bytes, ScanLimits::default()).unwrap_err(),
            ScanError::TooManyOps
        );
        let fewer = craft::ack(&craft::blocks(&ops[..1000], Encoding::Zstd));
        assert!(chitchat_accepts(&fewer));
        assert_eq!(scan(&fewer, ScanLimits::default()).unwrap().ops, 1000);
    }

    #[test]
    fn damage_is_malformed_never_a_panic() {
        let good = craft::syn_ack(
            &[(id("alpha", 1), 1)],
            &craft::blocks(
                &[Op::Node(id("alpha", 1)), Op::Kv("k".into(), "v".into(), 1)],
                Encoding::Zstd,
            ),
        );
        for cut in 0..good.len() {
            assert!(scan(&good[..cut], ScanLimits::default()).is_err(), "{cut}");
        }
        let mut flipped = good.clone();
        for i in 0..flipped.len() {
            flipped[i] ^= 0x5a;
            let _ = scan(&flipped, ScanLimits::default());
            flipped[i] ^= 0x5a;
        }
        // A digest count the message cannot hold.
        let mut huge = craft::syn("c", &[]);
        huge[4] = 0xff;
        huge[5] = 0xff;
        assert!(matches!(
            scan(&huge, ScanLimits::default()),
            Err(ScanError::Malformed(_))
        ));
    }
}
