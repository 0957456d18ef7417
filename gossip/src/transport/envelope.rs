//! How a chitchat message travels on a QUIC stream: as chitchat encodes it, or as one
//! zstd frame of that encoding when that is smaller.
//!
//! chitchat compresses the key-values of its deltas but not its digests, and a digest
//! (one entry per member, mostly fixed-width integers) is most of the steady-state
//! traffic: at 16 members a digest of about 700 bytes compresses to about 250. The two
//! forms cannot be confused: a chitchat message starts with its magic number (bytes
//! `53 b0`), a zstd frame with the bytes `28 b5 2f fd`.

use super::MAX_MESSAGE;
use std::cell::RefCell;

/// The first bytes of every zstd frame.
const ZSTD_MAGIC: [u8; 4] = [0x28, 0xb5, 0x2f, 0xfd];

/// Messages shorter than this are sent as they are (an empty ack, for example).
const COMPRESS_FROM: usize = 64;

/// zstd level. At negative levels zstd stores literals as they are instead of building
/// Huffman and FSE tables for every frame, which for a message of a few KB is most of
/// the work; what makes a digest compress (runs of zero bytes in its fixed-width
/// counters, repeated id prefixes) is found by the match finder either way. For a
/// 64-member Syn of 3.3 KB: 4.6 us at level -1 against 7.9 us at level 1, both 642
/// bytes; -3 is no faster and sends 17% more (`bench/seal_cost.sh`,
/// docs/benchmarks.md). Any zstd decoder reads these frames, so peers that still seal
/// at level 1 and peers that seal at -1 read each other.
pub const LEVEL: i32 = -1;

/// Why a received stream was not a message.
#[derive(Debug, thiserror::Error)]
pub enum EnvelopeError {
    /// A zstd frame that does not decompress, or decompresses to more than a message
    /// may hold.
    #[error("compressed gossip message is damaged or larger than {MAX_MESSAGE} bytes")]
    BadCompression,
}

thread_local! {
    // One zstd context per thread, reused for every message: creating a context (and
    // zeroing its tables) cost more than compressing a digest, and at 64 members and
    // 100 ms rounds a node seals and opens about 170 messages a second
    // (docs/benchmarks.md). zstd resets a context at the start of each frame.
    static COMPRESSOR: RefCell<Option<zstd::bulk::Compressor<'static>>> =
        const { RefCell::new(None) };
    static DECOMPRESSOR: RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { RefCell::new(None) };
}

/// Wraps an encoded chitchat message for the wire: compressed when that saves bytes.
pub fn seal(message: &[u8]) -> Vec<u8> {
    if message.len() >= COMPRESS_FROM
        && let Some(compressed) = compress(message)
        && compressed.len() < message.len()
    {
        return compressed;
    }
    message.to_vec()
}

fn compress(message: &[u8]) -> Option<Vec<u8>> {
    COMPRESSOR.with(|cell| {
        let mut slot = cell.try_borrow_mut().ok()?;
        if slot.is_none() {
            *slot = zstd::bulk::Compressor::new(LEVEL).ok();
        }
        slot.as_mut()?.compress(message).ok()
    })
}

/// Unwraps what [`seal`] produced into the chitchat encoding. Decompression stops at
/// [`MAX_MESSAGE`] bytes, so a small hostile frame cannot inflate into a large buffer.
pub fn open(wire: &[u8]) -> Result<std::borrow::Cow<'_, [u8]>, EnvelopeError> {
    if !wire.starts_with(&ZSTD_MAGIC) {
        return Ok(std::borrow::Cow::Borrowed(wire));
    }
    DECOMPRESSOR
        .with(|cell| {
            let mut slot = cell.try_borrow_mut().ok()?;
            if slot.is_none() {
                *slot = zstd::bulk::Decompressor::new().ok();
            }
            slot.as_mut()?.decompress(wire, MAX_MESSAGE).ok()
        })
        .map(std::borrow::Cow::Owned)
        .ok_or(EnvelopeError::BadCompression)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn digest_like(members: usize) -> Vec<u8> {
        // The shape of a chitchat Syn: magic, version, tag, then per member an id, a
        // generation, an address and three u64 counters, then the cluster id.
        let mut m = vec![0x53u8, 0xb0, 0, 0, 9, 0];
        m.extend_from_slice(b"probemesh");
        m.extend_from_slice(&(members as u16).to_le_bytes());
        for i in 0..members {
            let id = format!("gateway-{i}");
            m.extend_from_slice(&(id.len() as u16).to_le_bytes());
            m.extend_from_slice(id.as_bytes());
            m.extend_from_slice(&(1_795_884_924_851u64 + i as u64).to_le_bytes());
            m.extend_from_slice(&[4, 10, 0, 0, i as u8, 0x78, 0x1e]);
            for counter in [1_000 + i as u64 * 7, 0, 1_060 + i as u64] {
                m.extend_from_slice(&counter.to_le_bytes());
            }
        }
        m
    }

    #[test]
    fn digests_shrink_and_round_trip() {
        let m = digest_like(16);
        let sealed = seal(&m);
        assert!(sealed.starts_with(&ZSTD_MAGIC));
        assert!(
            sealed.len() * 2 < m.len(),
            "{} -> {}",
            m.len(),
            sealed.len()
        );
        assert_eq!(open(&sealed).unwrap().as_ref(), m.as_slice());
    }

    /// The type of the literals section of the first block of a zstd frame: 0 raw,
    /// 1 RLE, 2 Huffman-compressed, 3 Huffman with the previous block's table
    /// (RFC 8878, sections 3.1.1.1 and 3.1.1.3.1).
    fn first_literals_type(frame: &[u8]) -> u8 {
        let descriptor = frame[4];
        let single_segment = descriptor & 0x20 != 0;
        let dictionary_id = [0, 1, 2, 4][usize::from(descriptor & 0x03)];
        let content_size = match descriptor >> 6 {
            0 if single_segment => 1,
            0 => 0,
            1 => 2,
            2 => 4,
            _ => 8,
        };
        let block = 5 + usize::from(!single_segment) + dictionary_id + content_size;
        let block_type = (frame[block] >> 1) & 0x03;
        assert_eq!(block_type, 2, "the first block is a compressed block");
        frame[block + 3] & 0x03
    }

    #[test]
    fn digests_are_sealed_without_entropy_tables() {
        // The mechanism behind LEVEL: literals go raw, so no Huffman table is built
        // per message; the digest still shrinks to well under a third.
        let m = digest_like(64);
        let sealed = seal(&m);
        assert!(sealed.starts_with(&ZSTD_MAGIC));
        assert_eq!(first_literals_type(&sealed), 0, "literals are stored raw");
        assert!(
            sealed.len() * 3 < m.len(),
            "{} -> {}",
            m.len(),
            sealed.len()
        );
        // The parser above is right: level 1 Huffman-codes the same literals.
        let level_1 = zstd::bulk::compress(&m, 1).unwrap();
        assert_eq!(first_literals_type(&level_1), 2);
        assert_eq!(open(&sealed).unwrap().as_ref(), m.as_slice());
    }

    #[test]
    fn small_or_incompressible_messages_go_as_they_are() {
        let small = vec![0u8, 2, 1];
        assert_eq!(seal(&small), small);
        assert_eq!(open(&small).unwrap().as_ref(), small.as_slice());
        // Already-compressed bytes (a delta's payload) do not grow.
        let noisy: Vec<u8> = (0..4_000u32)
            .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
            .collect();
        let mut message = vec![0u8];
        message.extend_from_slice(&noisy);
        let sealed = seal(&message);
        assert!(sealed.len() <= message.len());
        assert_eq!(open(&sealed).unwrap().as_ref(), message.as_slice());
    }

    #[test]
    fn damaged_or_inflating_frames_are_refused() {
        let mut sealed = seal(&digest_like(16));
        let last = sealed.len() - 1;
        sealed[last] ^= 0xff;
        sealed.truncate(last - 3);
        assert!(open(&sealed).is_err());
        assert!(open(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3]).is_err());
        // A frame of a megabyte of zeros is a few dozen bytes; it must not be inflated.
        let bomb = zstd::bulk::compress(&vec![0u8; 1 << 20], 3).unwrap();
        assert!(bomb.len() < 1_000);
        assert!(open(&bomb).is_err());
        // The reused contexts still work after a refused frame.
        let m = digest_like(8);
        assert_eq!(open(&seal(&m)).unwrap().as_ref(), m.as_slice());
    }
}
