//! Positioned reads over a `Data.fs`, turning short files into errors that
//! name the offset.
//!
//! Readers share one `File` and never seek: every read is a `pread`, so
//! any number of threads read at once without a lock.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use super::format::{DATA_HEADER_SIZE, DataHeader, POS_SIZE, TXN_HEADER_SIZE, TxnHeader};
use crate::error::{Result, StorageError};
use crate::ids::Oid;
use crate::limits;

/// Bytes read at once for a data record: its header and, usually, its data.  Most
/// object records are a few hundred bytes; reading (and first zeroing) 4 KiB for each
/// cost more than the read itself, while a larger record pays one more `pread` for its
/// rest, small beside decoding it.
const RECORD_READ_AHEAD: usize = 1024;

/// Reads the committed part of a file: `[0, end)`.
#[derive(Debug, Clone, Copy)]
pub struct Reader<'a> {
    pub file: &'a File,
    pub path: &'a Path,
    pub end: u64,
}

/// A data record with its payload read.
#[derive(Debug, Clone)]
pub struct Record {
    pub pos: u64,
    pub header: DataHeader,
    /// The data, or the backpointer when `header.plen == 0`.
    pub payload: RecordPayload,
}

#[derive(Debug, Clone)]
pub enum RecordPayload {
    Data(Vec<u8>),
    Back(u64),
}

impl<'a> Reader<'a> {
    pub fn corrupted(&self, offset: u64, reason: impl Into<String>) -> StorageError {
        StorageError::Corrupted {
            path: self.path.to_path_buf(),
            offset,
            reason: reason.into(),
        }
    }

    /// Reads exactly `len` bytes at `pos`, all inside `[0, end)`.
    pub fn read_exact(&self, pos: u64, len: usize, what: &str) -> Result<Vec<u8>> {
        let stop = pos.checked_add(len as u64);
        if stop.is_none_or(|s| s > self.end) {
            return Err(self.corrupted(pos, format!("{what} ({len} bytes) runs past the end")));
        }
        let mut buf = vec![0u8; len];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| StorageError::io(format!("{}: read at {pos}", self.path.display()), e))?;
        Ok(buf)
    }

    fn read_array<const N: usize>(&self, pos: u64, what: &str) -> Result<[u8; N]> {
        let stop = pos.checked_add(N as u64);
        if stop.is_none_or(|s| s > self.end) {
            return Err(self.corrupted(pos, format!("{what} runs past the end")));
        }
        let mut buf = [0u8; N];
        self.file
            .read_exact_at(&mut buf, pos)
            .map_err(|e| StorageError::io(format!("{}: read at {pos}", self.path.display()), e))?;
        Ok(buf)
    }

    pub fn txn_header(&self, pos: u64) -> Result<TxnHeader> {
        Ok(TxnHeader::decode(&self.read_array::<TXN_HEADER_SIZE>(
            pos,
            "transaction header",
        )?))
    }

    pub fn data_header(&self, pos: u64) -> Result<DataHeader> {
        let h =
            DataHeader::decode(&self.read_array::<DATA_HEADER_SIZE>(pos, "data record header")?);
        if h.vlen != 0 {
            return Err(self.corrupted(pos, "data record with a non-zero version length"));
        }
        Ok(h)
    }

    pub fn u64_at(&self, pos: u64, what: &str) -> Result<u64> {
        Ok(u64::from_be_bytes(self.read_array::<POS_SIZE>(pos, what)?))
    }

    /// The data record at `pos`, which must belong to `oid` if given.
    pub fn record(&self, pos: u64, oid: Option<Oid>) -> Result<Record> {
        // One read for the header and, for the usual small record, its data
        // too; a larger record costs a second read of the rest.
        let window = (self.end.saturating_sub(pos)).min(RECORD_READ_AHEAD as u64) as usize;
        if window < DATA_HEADER_SIZE {
            return Err(self.corrupted(pos, "data record header runs past the end"));
        }
        // On the stack: a heap buffer of this size would be a large allocation per
        // load (one that also makes glibc's malloc sweep its small free chunks).
        let mut ahead = [0u8; RECORD_READ_AHEAD];
        let buf = &mut ahead[..window];
        self.file
            .read_exact_at(buf, pos)
            .map_err(|e| StorageError::io(format!("{}: read at {pos}", self.path.display()), e))?;
        self.record_in(pos, oid, buf)
    }

    /// The data record at `pos` from `buf`, the file's bytes from `pos` on (at least
    /// its header); what `buf` lacks of the record is read from the file.
    pub fn record_in(&self, pos: u64, oid: Option<Oid>, buf: &[u8]) -> Result<Record> {
        if buf.len() < DATA_HEADER_SIZE {
            return Err(self.corrupted(pos, "data record header runs past the end"));
        }
        let (head, rest) = buf.split_at(DATA_HEADER_SIZE);
        let head: &[u8; DATA_HEADER_SIZE] = head.try_into().expect("split at the header size");
        let header = DataHeader::decode(head);
        if header.vlen != 0 {
            return Err(self.corrupted(pos, "data record with a non-zero version length"));
        }
        if let Some(oid) = oid
            && header.oid != oid
        {
            return Err(self.corrupted(
                pos,
                format!("expected a record of oid {oid}, found oid {}", header.oid),
            ));
        }
        let body = pos + DATA_HEADER_SIZE as u64;
        let payload = if header.plen > 0 {
            if header.plen > limits::RECORD_SIZE_MAX {
                return Err(
                    self.corrupted(pos, format!("record length {} over the limit", header.plen))
                );
            }
            let plen = header.plen as usize;
            if plen <= rest.len() {
                RecordPayload::Data(rest[..plen].to_vec())
            } else {
                RecordPayload::Data(self.read_exact(body, plen, "record data")?)
            }
        } else if rest.len() >= POS_SIZE {
            let mut b = [0u8; POS_SIZE];
            b.copy_from_slice(&rest[..POS_SIZE]);
            RecordPayload::Back(u64::from_be_bytes(b))
        } else {
            RecordPayload::Back(self.u64_at(body, "backpointer")?)
        };
        Ok(Record {
            pos,
            header,
            payload,
        })
    }

    /// Follows backpointers from the record at `pos` to the data it stands
    /// for. `Ok(None)`: the chain ends in a deletion (`back == 0`).
    /// Returns the data and the position of the record that holds them.
    pub fn resolve(&self, record: Record) -> Result<Option<(Vec<u8>, u64)>> {
        let oid = record.header.oid;
        let mut current = record;
        for _ in 0..limits::BACKPOINTER_CHAIN_LENGTH_MAX {
            match current.payload {
                RecordPayload::Data(d) => return Ok(Some((d, current.pos))),
                RecordPayload::Back(0) => return Ok(None),
                RecordPayload::Back(back) => {
                    if back >= current.pos {
                        return Err(self.corrupted(
                            current.pos,
                            format!("backpointer {back} does not point backwards"),
                        ));
                    }
                    current = self.record(back, Some(oid))?;
                }
            }
        }
        Err(self.corrupted(current.pos, "backpointer chain too long"))
    }
}

/// Sequential reads over a large file through a big buffer, for scans that
/// visit every header: one `pread` per megabyte instead of one per record.
#[derive(Debug)]
pub struct ScanBuffer<'a> {
    file: &'a File,
    path: &'a Path,
    size: u64,
    buf: Vec<u8>,
    buf_pos: u64,
}

const SCAN_BUFFER_SIZE: usize = 1 << 20;

impl<'a> ScanBuffer<'a> {
    pub fn new(file: &'a File, path: &'a Path, size: u64) -> ScanBuffer<'a> {
        ScanBuffer {
            file,
            path,
            size,
            buf: Vec::new(),
            buf_pos: 0,
        }
    }

    /// `len` bytes at `pos`; the caller has checked `pos + len <= size`.
    pub fn get(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        let in_buf =
            pos >= self.buf_pos && pos + len as u64 <= self.buf_pos + self.buf.len() as u64;
        if !in_buf {
            let want = len
                .max(SCAN_BUFFER_SIZE)
                .min((self.size - pos) as usize)
                .max(len);
            self.buf.resize(want, 0);
            self.file.read_exact_at(&mut self.buf, pos).map_err(|e| {
                StorageError::io(format!("{}: read at {pos}", self.path.display()), e)
            })?;
            self.buf_pos = pos;
        }
        let start = (pos - self.buf_pos) as usize;
        Ok(&self.buf[start..start + len])
    }
}
