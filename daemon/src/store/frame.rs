//! Length- and checksum-framed records: `len u32 LE | crc32 u32 LE | payload`.
//!
//! A frame that is cut short or fails its checksum ends the readable part of a file;
//! everything before it is intact.

#[cfg(test)]
use std::io::Write;

/// Bytes before a payload.
pub const FRAME_HEADER: usize = 8;
/// Largest payload accepted; anything longer is treated as damage.
pub const MAX_FRAME: usize = 256 << 20;

/// Why reading stopped before the end of the input.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than a header or than the declared length.
    Truncated,
    /// A declared length above [`MAX_FRAME`].
    Oversized(u32),
    /// The payload does not match its checksum.
    Checksum,
    /// A zero length: never written (every record has a header), so zero-filled space.
    Empty,
}

/// The frames read from a buffer.
#[derive(Debug)]
pub struct Frames<'a> {
    /// Payloads of the intact frames, in order.
    pub payloads: Vec<&'a [u8]>,
    /// Bytes covered by intact frames.
    pub valid_len: u64,
    /// Why reading stopped early, if it did.
    pub stop: Option<FrameError>,
}

/// Reads intact frames from the start of `buf`.
pub fn read_frames(buf: &[u8]) -> Frames<'_> {
    let mut payloads = Vec::new();
    let mut pos = 0usize;
    let mut stop = None;
    while pos < buf.len() {
        let rest = &buf[pos..];
        if rest.len() < FRAME_HEADER {
            stop = Some(FrameError::Truncated);
            break;
        }
        let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]);
        let crc = u32::from_le_bytes([rest[4], rest[5], rest[6], rest[7]]);
        if len == 0 {
            stop = Some(FrameError::Empty);
            break;
        }
        if len as usize > MAX_FRAME {
            stop = Some(FrameError::Oversized(len));
            break;
        }
        let end = FRAME_HEADER + len as usize;
        if rest.len() < end {
            stop = Some(FrameError::Truncated);
            break;
        }
        let payload = &rest[FRAME_HEADER..end];
        if crc32fast::hash(payload) != crc {
            stop = Some(FrameError::Checksum);
            break;
        }
        payloads.push(payload);
        pos += end;
    }
    Frames {
        payloads,
        valid_len: pos as u64,
        stop,
    }
}

/// Whether the unreadable rest of `buf` (after `frames.valid_len`) can only be an
/// append that a crash interrupted: nothing unreadable at all; a frame cut short; a
/// damaged frame that is the last thing in the file; or a zero-filled tail (what some
/// file systems leave after a crash). Anything else means acknowledged records would be
/// lost by cutting, and the caller must refuse instead.
pub fn is_torn_tail(buf: &[u8], frames: &Frames<'_>) -> bool {
    let start = usize::try_from(frames.valid_len)
        .unwrap_or(usize::MAX)
        .min(buf.len());
    let rest = &buf[start..];
    match frames.stop {
        None | Some(FrameError::Truncated) => true,
        _ if rest.iter().all(|b| *b == 0) => true,
        Some(FrameError::Checksum) => {
            let len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
            FRAME_HEADER + len >= rest.len()
        }
        Some(FrameError::Oversized(_) | FrameError::Empty) => false,
    }
}

/// Appends one frame holding `payload` to `out`, returning the bytes added.
pub fn push_frame(out: &mut Vec<u8>, payload: &[u8]) -> std::io::Result<u64> {
    let len = u32::try_from(payload.len())
        .ok()
        .filter(|&l| l > 0 && l as usize <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "record too large"))?;
    out.reserve(FRAME_HEADER + payload.len());
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
    Ok((FRAME_HEADER + payload.len()) as u64)
}

/// Writes one frame in a single `write_all`, returning the bytes written.
#[cfg(test)]
pub fn write_frame(w: &mut impl Write, payload: &[u8]) -> std::io::Result<u64> {
    let mut buf = Vec::new();
    let n = push_frame(&mut buf, payload)?;
    w.write_all(&buf)?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            write_frame(&mut out, p).unwrap();
        }
        out
    }

    #[test]
    fn reads_back_what_was_written() {
        let buf = framed(&[b"one", b"2", b"three"]);
        let f = read_frames(&buf);
        assert_eq!(f.payloads, vec![&b"one"[..], b"2", b"three"]);
        assert_eq!(f.valid_len, buf.len() as u64);
        assert_eq!(f.stop, None);
    }

    #[test]
    fn every_truncation_keeps_the_intact_prefix() {
        let buf = framed(&[b"alpha", b"beta"]);
        let first = FRAME_HEADER + 5;
        for cut in 0..buf.len() {
            let f = read_frames(&buf[..cut]);
            let want = if cut >= first { 1 } else { 0 };
            assert_eq!(f.payloads.len(), want, "cut at {cut}");
            assert_eq!(f.valid_len, if want == 1 { first as u64 } else { 0 });
        }
    }

    #[test]
    fn only_a_damaged_last_frame_or_zero_fill_counts_as_torn() {
        let mut buf = framed(&[b"alpha", b"beta", b"gamma"]);
        let f = read_frames(&buf);
        assert!(is_torn_tail(&buf, &f));
        // Damage in the middle with an intact frame after it: not torn.
        buf[FRAME_HEADER + 5 + FRAME_HEADER] ^= 0xff;
        let f = read_frames(&buf);
        assert_eq!(f.stop, Some(FrameError::Checksum));
        assert!(!is_torn_tail(&buf, &f));
        // Damage in the last frame: torn.
        let mut last = framed(&[b"alpha", b"beta"]);
        let n = last.len();
        last[n - 1] ^= 0xff;
        assert!(is_torn_tail(&last, &read_frames(&last)));
        // A zero-filled tail: torn.
        let mut zeros = framed(&[b"alpha"]);
        zeros.extend_from_slice(&[0u8; 64]);
        let f = read_frames(&zeros);
        assert_eq!(f.payloads.len(), 1);
        assert!(is_torn_tail(&zeros, &f));
    }

    #[test]
    fn corruption_stops_at_the_damaged_frame() {
        let mut buf = framed(&[b"alpha", b"beta"]);
        let last = buf.len() - 1;
        buf[last] ^= 0xff;
        let f = read_frames(&buf);
        assert_eq!(f.payloads.len(), 1);
        assert_eq!(f.stop, Some(FrameError::Checksum));
        assert!(
            !is_torn_tail(&buf, &f) || buf.len() == f.valid_len as usize + FRAME_HEADER + 4,
            "last frame damaged: torn"
        );
        let mut huge = framed(&[b"x"]);
        huge.extend_from_slice(&u32::MAX.to_le_bytes());
        huge.extend_from_slice(&[0; 4]);
        assert_eq!(
            read_frames(&huge).stop,
            Some(FrameError::Oversized(u32::MAX))
        );
    }
}
