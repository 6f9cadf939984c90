//! `Data.fs.index`: the saved oid → position index, in Python's format so
//! that Python ZODB and bbru both open a large file without a full scan
//! (`filestorage-format.md` §10).
//!
//! ```text
//! index_file = pickle(pos) pickle((prefix6, data))* pickle(None)
//! data       = suffix2 * n ‖ pos6 * n          -- suffixes ascending, positions big-endian
//! ```
//!
//! Each pickle is protocol 3 without memo opcodes. Writing is done by hand
//! here (the shapes are fixed and the file can hold millions of entries);
//! reading goes through the general pickle decoder.

use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};

use zodb_pickle::Value;

use super::oid_index::{OidIndex, POS_LIMIT};
use crate::error::{Result, StorageError};

pub fn index_path(data_fs: &Path) -> PathBuf {
    sibling(data_fs, ".index")
}

pub fn sibling(data_fs: &Path, suffix: &str) -> PathBuf {
    let mut s = data_fs.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Appends a protocol-3 integer pickle opcode (BININT1/BININT2/BININT/LONG1).
fn push_int(out: &mut Vec<u8>, v: u64) {
    if v < 256 {
        out.extend_from_slice(&[0x4b, v as u8]);
    } else if v < 65536 {
        out.push(0x4d);
        out.extend_from_slice(&(v as u16).to_le_bytes());
    } else if v < (1 << 31) {
        out.push(0x4a);
        out.extend_from_slice(&(v as u32).to_le_bytes());
    } else {
        // LONG1: minimal little-endian two's complement.
        let mut bytes = v.to_le_bytes().to_vec();
        while bytes.len() > 1 && bytes[bytes.len() - 1] == 0 && bytes[bytes.len() - 2] & 0x80 == 0 {
            bytes.pop();
        }
        if bytes[bytes.len() - 1] & 0x80 != 0 {
            bytes.push(0);
        }
        out.extend_from_slice(&[0x8a, bytes.len() as u8]);
        out.extend_from_slice(&bytes);
    }
}

fn push_bytes(out: &mut Vec<u8>, b: &[u8]) {
    if b.len() < 256 {
        out.extend_from_slice(&[0x43, b.len() as u8]);
    } else {
        out.push(0x42);
        out.extend_from_slice(&(b.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(b);
}

/// Encodes the index covering the file up to `end`.
pub fn encode(end: u64, index: &OidIndex) -> Vec<u8> {
    let mut out = Vec::with_capacity(index.len() * 8 + 64);
    out.extend_from_slice(&[0x80, 0x03]);
    push_int(&mut out, end);
    out.push(0x2e);
    let mut suffixes = Vec::new();
    let mut positions = Vec::new();
    for (high, entries) in index.groups() {
        suffixes.clear();
        positions.clear();
        for (suffix, pos) in entries {
            assert!(
                pos < POS_LIMIT,
                "position {pos} does not fit the index format"
            );
            suffixes.extend_from_slice(&suffix.to_be_bytes());
            positions.extend_from_slice(&pos.to_be_bytes()[2..]);
        }
        suffixes.extend_from_slice(&positions);
        out.extend_from_slice(&[0x80, 0x03]);
        push_bytes(&mut out, &(high << 16).to_be_bytes()[..6]);
        push_bytes(&mut out, &suffixes);
        out.extend_from_slice(&[0x86, 0x2e]);
    }
    out.extend_from_slice(&[0x80, 0x03, 0x4e, 0x2e]);
    out
}

/// Why a saved index was not used.
#[derive(Debug)]
pub struct Unusable(pub String);

/// Decodes an index file: the end position it covers and the entries.
pub fn decode(bytes: &[u8]) -> std::result::Result<(u64, OidIndex), Unusable> {
    let bad = |what: &str| Unusable(what.to_string());
    let (first, mut at) = zodb_pickle::decode(bytes).map_err(|e| Unusable(e.to_string()))?;
    let end = match first {
        Value::Int(v) if v >= 0 => v as u64,
        Value::Dict(_) => return Err(bad("old-style index (a dict); rebuilding")),
        _ => return Err(bad("first pickle is not a position")),
    };
    let mut index = OidIndex::new();
    loop {
        let rest = bytes.get(at..).ok_or_else(|| bad("truncated"))?;
        if let Some((prefix, data, used)) = bucket_as_written(rest) {
            at += used;
            add_bucket(&mut index, prefix, data)?;
            continue;
        }
        let (value, used) = zodb_pickle::decode(rest).map_err(|e| Unusable(e.to_string()))?;
        at += used;
        match value {
            Value::None => break,
            Value::Tuple(items) => {
                let [Value::Bytes(prefix), Value::Bytes(data)] = items.as_slice() else {
                    return Err(bad("bucket is not (bytes, bytes)"));
                };
                add_bucket(&mut index, prefix, data)?;
            }
            _ => return Err(bad("unexpected pickle in the index")),
        }
    }
    Ok((end, index))
}

/// One bucket `(prefix, data)` into `index`.
fn add_bucket(index: &mut OidIndex, prefix: &[u8], data: &[u8]) -> Result<(), Unusable> {
    if prefix.len() != 6 || !data.len().is_multiple_of(8) {
        return Err(Unusable("bucket of the wrong size".into()));
    }
    let mut p = [0u8; 8];
    p[..6].copy_from_slice(prefix);
    index.extend_group_raw(u64::from_be_bytes(p) >> 16, data);
    Ok(())
}

/// A bucket pickle exactly as Python's `fsIndex.save` and [`encode`] write it (`PROTO 3`,
/// the prefix and the data as bytes, `TUPLE2`, `STOP`; no memo, the pickler being
/// `fast`): the two byte strings, borrowed, and the pickle's length.  `None` for any other
/// shape, which the general decoder then reads: the saved index of a million objects is
/// 8 MB of such pickles, and copying each into a value tree first doubled the time of
/// opening the file.
fn bucket_as_written(bytes: &[u8]) -> Option<(&[u8], &[u8], usize)> {
    fn bytes_at(b: &[u8], at: usize) -> Option<(&[u8], usize)> {
        let (len, start) = match *b.get(at)? {
            0x43 => (usize::from(*b.get(at + 1)?), at + 2),
            0x42 => {
                let n: [u8; 4] = b.get(at + 1..at + 5)?.try_into().ok()?;
                (usize::try_from(u32::from_le_bytes(n)).ok()?, at + 5)
            }
            _ => return None,
        };
        let end = start.checked_add(len)?;
        Some((b.get(start..end)?, end))
    }
    if bytes.get(..2)? != [0x80, 0x03] {
        return None;
    }
    let (prefix, at) = bytes_at(bytes, 2)?;
    let (data, at) = bytes_at(bytes, at)?;
    (bytes.get(at..at + 2)? == [0x86, 0x2e]).then_some((prefix, data, at + 2))
}

/// Writes the index next to `data_fs` through a temporary file and a
/// rename, so a crash leaves the old index or the new one, never half.
pub fn save(data_fs: &Path, end: u64, index: &OidIndex) -> Result<()> {
    let path = index_path(data_fs);
    let tmp = sibling(data_fs, ".index.index_tmp");
    let bytes = encode(end, index);
    let write = || -> std::io::Result<()> {
        let mut f = super::private_options()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)?;
        f.write_all(&bytes)?;
        f.sync_all()?;
        fs::rename(&tmp, &path)
    };
    write().map_err(|e| StorageError::io(format!("{}: saving the index", path.display()), e))
}

/// Removes a saved index that no longer describes the file.
pub fn remove(data_fs: &Path) -> Result<()> {
    let path = index_path(data_fs);
    match fs::remove_file(&path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StorageError::io(
            format!("{}: removing a stale index", path.display()),
            e,
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_large_and_sparse_indexes() {
        let mut index = OidIndex::new();
        for oid in 0..70_000u64 {
            index.insert(oid, 4 + oid * 100);
        }
        index.insert(u64::MAX, 123);
        index.insert(1 << 40, (1 << 47) + 5);
        let bytes = encode(1 << 33, &index);
        let (end, back) = decode(&bytes).unwrap();
        assert_eq!(end, 1 << 33);
        assert_eq!(back, index);
    }

    #[test]
    fn matches_python_bytes_for_a_small_index() {
        // Data.fs.index of the packed fixture (filestorage-format.md §10.1).
        let fixture = std::fs::read(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/zodb/Data.fs.index"
        ))
        .unwrap();
        let (end, index) = decode(&fixture).unwrap();
        assert_eq!(end, 1850);
        assert_eq!(encode(end, &index), fixture);
    }
}
