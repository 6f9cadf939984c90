//! The leaf values of a protocol 3 pickle, written as [`crate::encode`] writes them: the
//! one place that chooses each value's opcode, shared with writers that do not go
//! through a [`crate::Value`] (the persistence layer writes records straight from its
//! types and must write the encoder's bytes).

use crate::error::PickleError;
use crate::opcodes as op;
use crate::text;

/// Python's choice: `K` for 0..=255, `M` for 256..=65535, `J` for the rest of the i32
/// range, `LONG1` beyond.
pub fn int(out: &mut Vec<u8>, i: i64) {
    if let Ok(small) = u8::try_from(i) {
        out.extend_from_slice(&[op::BININT1, small]);
    } else if let Ok(medium) = u16::try_from(i) {
        out.push(op::BININT2);
        out.extend_from_slice(&medium.to_le_bytes());
    } else if let Ok(word) = i32::try_from(i) {
        out.push(op::BININT);
        out.extend_from_slice(&word.to_le_bytes());
    } else {
        let bytes = i.to_le_bytes();
        let minimal = text::minimal_twos_complement(&bytes);
        out.push(op::LONG1);
        // At most 8 bytes, so the length fits.
        out.push(u8::try_from(minimal.len()).unwrap_or(8));
        out.extend_from_slice(minimal);
    }
}

/// `BINFLOAT`, big-endian.
pub fn float(out: &mut Vec<u8>, f: f64) {
    out.push(op::BINFLOAT);
    out.extend_from_slice(&f.to_be_bytes());
}

/// A str as `BINUNICODE`.
pub fn str(out: &mut Vec<u8>, s: &str) -> Result<(), PickleError> {
    let n = length_u32(s.len())?;
    out.push(op::BINUNICODE);
    out.extend_from_slice(&n.to_le_bytes());
    out.extend_from_slice(s.as_bytes());
    Ok(())
}

/// Bytes as `SHORT_BINBYTES` up to 255 of them, `BINBYTES` beyond.
pub fn bytes(out: &mut Vec<u8>, b: &[u8]) -> Result<(), PickleError> {
    match u8::try_from(b.len()) {
        Ok(n) => out.extend_from_slice(&[op::SHORT_BINBYTES, n]),
        Err(_) => {
            let n = length_u32(b.len())?;
            out.push(op::BINBYTES);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
    out.extend_from_slice(b);
    Ok(())
}

/// A length for a 4-byte field.
pub(crate) fn length_u32(len: usize) -> Result<u32, PickleError> {
    u32::try_from(len).map_err(|_| PickleError::NotEncodable("longer than 4 GiB".into()))
}
