//! Framing (spec §1.1): the connection is a stream of sized messages, the same both ways
//! and from the first byte (the handshake is framed too).
//!
//! ```text
//! +----------------+---------------------+
//! | N: u32, BE     | N payload bytes     |
//! +----------------+---------------------+
//!   00 00 00 02      5a 35                  ("Z5", the server's announcement)
//! ```
//!
//! No flags, no checksum.  Python sets no size limit; we refuse a frame whose announced
//! length exceeds the caller's maximum as soon as the 4 length bytes are in, so a peer
//! cannot make us buffer more than that.  Pure functions over the caller's read buffer:
//! first check a whole frame has arrived, then hand back where its payload lies.

use std::ops::Range;

use super::error::FrameError;

/// Size of the length prefix.
pub const LENGTH_PREFIX_SIZE: usize = 4;

/// Looks for one whole frame at the start of `buf`.
///
/// Returns `Ok(None)` while the frame is incomplete (read more and call again),
/// `Ok(Some((payload, consumed)))` once it is whole: `buf[payload]` is the payload and
/// `consumed` the frame's total size (prefix + payload) to drop from the buffer.  The
/// length is judged against `max_size` from the 4 prefix bytes alone, before the payload
/// has arrived.
pub fn parse_frame(
    buf: &[u8],
    max_size: usize,
) -> Result<Option<(Range<usize>, usize)>, FrameError> {
    // Layout: [N: u32 big-endian][N bytes]
    let Some((prefix, rest)) = buf.split_first_chunk::<LENGTH_PREFIX_SIZE>() else {
        return Ok(None);
    };
    let announced = u32::from_be_bytes(*prefix);
    let size = usize::try_from(announced).unwrap_or(usize::MAX);
    if size > max_size {
        return Err(FrameError::TooLarge {
            size: u64::from(announced),
            max: u64::try_from(max_size).unwrap_or(u64::MAX),
        });
    }
    if rest.len() < size {
        return Ok(None);
    }
    // `size <= rest.len() < buf.len()`, so neither sum overflows.
    let end = LENGTH_PREFIX_SIZE + size;
    Ok(Some((LENGTH_PREFIX_SIZE..end, end)))
}

/// Appends one frame holding `payload` to `out`.
///
/// Fails only for a payload longer than the 4-byte length can say (4 GiB - 1).
pub fn write_frame(out: &mut Vec<u8>, payload: &[u8]) -> Result<(), FrameError> {
    let n = length_prefix(payload.len())?;
    out.reserve(LENGTH_PREFIX_SIZE.saturating_add(payload.len()));
    out.extend_from_slice(&n);
    out.extend_from_slice(payload);
    Ok(())
}

/// The 4 prefix bytes for a payload of `len` bytes.
pub(crate) fn length_prefix(len: usize) -> Result<[u8; LENGTH_PREFIX_SIZE], FrameError> {
    u32::try_from(len)
        .map(u32::to_be_bytes)
        .map_err(|_| FrameError::TooLarge {
            size: u64::try_from(len).unwrap_or(u64::MAX),
            max: u64::from(u32::MAX),
        })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn handshake_frame_observed() {
        // [obs] spec §1.2: the server's `Z5` announcement.
        let wire = [0x00, 0x00, 0x00, 0x02, 0x5a, 0x35];
        let (payload, consumed) = parse_frame(&wire, 100).unwrap().unwrap();
        assert_eq!(&wire[payload], b"Z5");
        assert_eq!(consumed, 6);
        let mut out = Vec::new();
        write_frame(&mut out, b"Z5").unwrap();
        assert_eq!(out, wire);
    }

    #[test]
    fn incomplete_is_none() {
        let wire = [0x00, 0x00, 0x00, 0x03, b'a', b'b', b'c'];
        for cut in 0..wire.len() {
            assert_eq!(parse_frame(&wire[..cut], 100), Ok(None), "cut {cut}");
        }
        assert_eq!(parse_frame(&wire, 100), Ok(Some((4..7, 7))));
    }

    #[test]
    fn empty_payload() {
        assert_eq!(parse_frame(&[0, 0, 0, 0, 9], 0), Ok(Some((4..4, 4))));
    }

    #[test]
    fn too_large_decided_from_prefix_alone() {
        let err = parse_frame(&[0xff, 0xff, 0xff, 0xff], 64 << 20).unwrap_err();
        assert_eq!(
            err,
            FrameError::TooLarge {
                size: 0xffff_ffff,
                max: 64 << 20
            }
        );
        assert!(parse_frame(&[0, 0, 0, 11], 10).is_err());
        assert_eq!(parse_frame(&[0, 0, 0, 10], 10), Ok(None));
    }

    #[test]
    fn coalesced_frames() {
        // The Python client writes the handshake and `register` back to back.
        let mut buf = Vec::new();
        write_frame(&mut buf, b"Z5").unwrap();
        write_frame(&mut buf, b"hello").unwrap();
        let (p1, c1) = parse_frame(&buf, 100).unwrap().unwrap();
        assert_eq!(&buf[p1], b"Z5");
        let rest = &buf[c1..];
        let (p2, c2) = parse_frame(rest, 100).unwrap().unwrap();
        assert_eq!(&rest[p2], b"hello");
        assert_eq!(c2, rest.len());
    }

    proptest! {
        #[test]
        fn roundtrip(payload in proptest::collection::vec(any::<u8>(), 0..300),
                     tail in proptest::collection::vec(any::<u8>(), 0..10)) {
            let mut buf = Vec::new();
            write_frame(&mut buf, &payload).unwrap();
            let framed = buf.len();
            buf.extend_from_slice(&tail);
            let (range, consumed) = parse_frame(&buf, 300).unwrap().unwrap();
            prop_assert_eq!(&buf[range], &payload[..]);
            prop_assert_eq!(consumed, framed);
        }

        #[test]
        fn arbitrary_bytes_never_panic(buf in proptest::collection::vec(any::<u8>(), 0..64),
                                       max in 0usize..100) {
            if let Ok(Some((range, consumed))) = parse_frame(&buf, max) {
                prop_assert!(range.end == consumed && consumed <= buf.len());
                prop_assert!(range.len() <= max);
            }
        }
    }
}
