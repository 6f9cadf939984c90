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

/// Bytes read at a time by [`load`]: more than the largest bucket as written (65,536
/// entries of 8 bytes and the pickle around them), so a refilled piece always holds a
/// whole one.
const READ_PIECE_BYTES: usize = 1 << 20;

/// The largest bucket pickle as written: 2 + 2 + 6 + 5 + 65,536 × 8 + 2 bytes.
const BUCKET_BYTES_MAX: usize = 2 + 2 + 6 + 5 + (1 << 16) * 8 + 2;

/// Reads and decodes the index file `path` (`Ok(None)`: there is none).  Buckets as
/// written are added as each piece of [`READ_PIECE_BYTES`] arrives: the parsing
/// overlaps the kernel's read-ahead, and no copy of the whole file is made (a
/// million objects' index is 8 MB).  Any other shape is read whole and [`decode`]d.
pub fn load(
    path: &Path,
) -> std::io::Result<Option<std::result::Result<(u64, OidIndex), Unusable>>> {
    load_in_pieces(path, READ_PIECE_BYTES)
}

fn load_in_pieces(
    path: &Path,
    piece: usize,
) -> std::io::Result<Option<std::result::Result<(u64, OidIndex), Unusable>>> {
    use std::io::Read;
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut buf: Vec<u8> = Vec::with_capacity(piece + BUCKET_BYTES_MAX);
    let mut eof = false;
    // Tops `buf` up with one more piece (or to the end of the file).
    let mut fill = |buf: &mut Vec<u8>, eof: &mut bool| -> std::io::Result<()> {
        let start = buf.len();
        buf.resize(start + piece, 0);
        let mut got = 0;
        while got < piece {
            match file.read(&mut buf[start + got..]) {
                Ok(0) => {
                    *eof = true;
                    break;
                }
                Ok(n) => got += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        buf.truncate(start + got);
        Ok(())
    };
    fill(&mut buf, &mut eof)?;
    let whole = |file_path: &Path| -> std::io::Result<_> {
        let bytes = fs::read(file_path)?;
        Ok(Some(decode(&bytes)))
    };
    let end = match zodb_pickle::decode(&buf) {
        Ok((Value::Int(v), used)) if v >= 0 => {
            buf.drain(..used);
            v as u64
        }
        _ => return whole(path),
    };
    let mut index = OidIndex::new();
    let mut at = 0;
    loop {
        if let Some((prefix, data, used)) = bucket_as_written(&buf[at..]) {
            at += used;
            if let Err(e) = add_bucket(&mut index, prefix, data) {
                return Ok(Some(Err(e)));
            }
            continue;
        }
        if !eof && buf.len() - at < BUCKET_BYTES_MAX {
            // Perhaps a bucket cut by the piece's end: keep the rest, read on.
            buf.drain(..at);
            at = 0;
            fill(&mut buf, &mut eof)?;
            continue;
        }
        return match zodb_pickle::decode(&buf[at..]) {
            Ok((Value::None, _)) => Ok(Some(Ok((end, index)))),
            // Another shape (an older writer's): the general decoder reads it all.
            _ => whole(path),
        };
    }
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

    #[test]
    fn an_index_read_in_pieces_is_the_index_decoded_whole() {
        let dir = tempfile::tempdir().unwrap();
        let data_fs = dir.path().join("Data.fs");
        let mut index = OidIndex::new();
        for oid in (0..300_000u64).step_by(3) {
            index.insert(oid, oid * 7 + 4);
        }
        save(&data_fs, 123_456, &index).unwrap();
        let path = index_path(&data_fs);
        let whole = decode(&fs::read(&path).unwrap()).unwrap();
        // Pieces smaller than a bucket of 65,536 entries would split one: the
        // smallest here still holds the largest bucket of this index.
        for piece in [600_000, 1 << 20, 1 << 24] {
            let (end, read) = load_in_pieces(&path, piece).unwrap().unwrap().unwrap();
            assert_eq!((end, &read), (whole.0, &whole.1), "piece {piece}");
        }
        assert!(load(&dir.path().join("missing.index")).unwrap().is_none());
        // Python's own file reads the same in pieces as whole.
        let fixture = std::path::Path::new(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../tests/fixtures/zodb/Data.fs.index"
        ));
        let (end, read) = load(fixture).unwrap().unwrap().unwrap();
        let expected = decode(&fs::read(fixture).unwrap()).unwrap();
        assert_eq!((end, read), expected);
        // A bucket pickled another way (a memo opcode after the prefix) is read by the
        // general decoder, the whole file then.
        let mut other = vec![0x80, 0x03, 0x4b, 4, 0x2e];
        other.extend_from_slice(&[0x80, 0x03, 0x43, 6, 0, 0, 0, 0, 0, 1, 0x71, 0]);
        other.extend_from_slice(&[0x43, 8, 0, 7, 0, 0, 0, 0, 0, 42, 0x86, 0x2e]);
        other.extend_from_slice(&[0x80, 0x03, 0x4e, 0x2e]);
        let other_path = dir.path().join("other.index");
        fs::write(&other_path, &other).unwrap();
        let (end, read) = load(&other_path).unwrap().unwrap().unwrap();
        assert_eq!(end, 4);
        assert_eq!(read.get((1 << 16) | 7), Some(42));
    }
}
