//! A full check of a `Data.fs`, for `bbru-zeo check`: everything Python's
//! `fstest` checks, plus what it leaves out (serials equal to their
//! transaction's tid, `prev` and backpointer targets, records filling
//! their transaction exactly, record pickles whose references can be read).
//!
//! Read-only, never changes the file, and reports the first problem with
//! its offset.

use std::fs::File;
use std::path::Path;

use rustc_hash::FxHashMap;

use super::format::{
    MAGIC, MAGIC_PY2, STATUS_CHECKPOINT, STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE,
};
use super::io::{Reader, RecordPayload};
use crate::error::{Result, StorageError};
use crate::ids::Tid;

/// What a clean check counted.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CheckReport {
    pub transactions: u64,
    pub records: u64,
    pub objects: u64,
    pub size: u64,
    pub last_tid: Tid,
}

/// Checks every transaction and record of the file at `path`.
pub fn check_file(path: &Path) -> Result<CheckReport> {
    let file =
        File::open(path).map_err(|e| StorageError::io(format!("{}: open", path.display()), e))?;
    let size = file
        .metadata()
        .map_err(|e| StorageError::io(format!("{}: stat", path.display()), e))?
        .len();
    let reader = Reader {
        file: &file,
        path,
        end: size,
    };
    let magic = reader.read_exact(0, 4, "file magic")?;
    if magic != MAGIC && magic != MAGIC_PY2 {
        return Err(StorageError::Format {
            path: path.to_path_buf(),
            reason: "not a FileStorage".into(),
        });
    }
    let mut report = CheckReport {
        size,
        ..CheckReport::default()
    };
    // oid → (position, serial) of its newest record so far.
    let mut newest: FxHashMap<u64, u64> = FxHashMap::default();
    let mut pos = 4u64;
    let mut last_tid = Tid::ZERO;
    while pos < size {
        if size - pos < 23 {
            return Err(reader.corrupted(pos, format!("truncated at {pos}")));
        }
        let h = reader.txn_header(pos)?;
        if h.tid <= last_tid {
            return Err(reader.corrupted(
                pos,
                format!("time-stamp reduction: {} after {}", h.tid, last_tid),
            ));
        }
        last_tid = h.tid;
        let next = h.next_pos(pos);
        if next > size {
            return Err(reader.corrupted(
                pos,
                format!("truncated possibly because of damaged records at {pos}"),
            ));
        }
        if h.status == STATUS_CHECKPOINT {
            return Err(reader.corrupted(pos, format!("checkpoint flag was not cleared at {pos}")));
        }
        if ![STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            return Err(reader.corrupted(
                pos,
                format!(
                    "transaction at {pos} has invalid status {:?}",
                    char::from(h.status)
                ),
            ));
        }
        if h.tlen < h.header_len() {
            return Err(reader.corrupted(pos, "transaction length shorter than its header"));
        }
        if reader.u64_at(pos + h.tlen, "redundant transaction length")? != h.tlen {
            return Err(reader.corrupted(pos, "redundant transaction length check failed"));
        }
        if h.status != STATUS_UNDONE {
            let mut rpos = pos + h.header_len();
            let body_end = pos + h.tlen;
            let mut in_txn: FxHashMap<u64, u64> = FxHashMap::default();
            while rpos < body_end {
                if rpos + 42 > body_end {
                    return Err(
                        reader.corrupted(rpos, "data record header runs past its transaction")
                    );
                }
                let d = reader.data_header(rpos)?;
                if d.tloc != pos {
                    return Err(reader.corrupted(
                        rpos,
                        format!("data record names transaction {} instead of {pos}", d.tloc),
                    ));
                }
                if rpos.saturating_add(d.record_len()) > body_end {
                    return Err(reader.corrupted(rpos, "data record runs past its transaction"));
                }
                if d.serial != h.tid {
                    return Err(reader.corrupted(
                        rpos,
                        format!(
                            "record serial {} differs from its transaction's tid {}",
                            d.serial, h.tid
                        ),
                    ));
                }
                let expected_prev = newest.get(&d.oid.0).copied().unwrap_or(0);
                if d.prev != 0 && d.prev != expected_prev {
                    // Python's own files may have this after certain undos;
                    // it is only an error when the chain goes nowhere.
                    let p = reader.data_header(d.prev)?;
                    if p.oid != d.oid {
                        return Err(reader.corrupted(
                            rpos,
                            format!("previous record at {} belongs to another object", d.prev),
                        ));
                    }
                }
                let r = reader.record(rpos, Some(d.oid))?;
                if let RecordPayload::Back(back) = r.payload
                    && back >= rpos
                {
                    return Err(reader.corrupted(rpos, "backpointer does not point backwards"));
                }
                if let Some((data, dpos)) = reader.resolve(r)?
                    && let Err(e) = zodb_pickle::strong_references(&data)
                {
                    return Err(reader.corrupted(
                        dpos,
                        format!("record of object {} cannot be read: {e}", d.oid),
                    ));
                }
                in_txn.insert(d.oid.0, rpos);
                report.records += 1;
                rpos += d.record_len();
            }
            if rpos != body_end {
                return Err(reader.corrupted(pos, "data records don't add up"));
            }
            newest.extend(in_txn);
        }
        report.transactions += 1;
        pos = next;
    }
    report.objects = newest.len() as u64;
    report.last_tid = last_tid;
    Ok(report)
}
