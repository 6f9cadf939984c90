//! Walking a `Data.fs` forward to build the oid → position index, with the
//! recovery rules Python's `read_index` applies
//! (`filestorage-format.md` §5.2 and §11).
//!
//! Recovery is a documented mode, not a guess: an incomplete final
//! transaction, one left with the checkpoint status `'c'`, junk after the
//! last transaction, or a final transaction whose records do not hold
//! together (a write torn by a crash before its fsync completed) is cut off;
//! an inconsistency anywhere before the final transaction is damage, reported
//! with its offset, and the file is not opened.

use std::fs::File;
use std::path::Path;

use super::format::{
    DATA_HEADER_SIZE, DataHeader, POS_SIZE, STATUS_CHECKPOINT, STATUS_COMMITTED, STATUS_PACKED,
    STATUS_UNDONE, TXN_HEADER_SIZE, TxnHeader,
};
use super::io::ScanBuffer;
use super::oid_index::OidIndex;
use crate::error::{Result, StorageError};
use crate::ids::Tid;

/// Where and why the file must be cut.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Cut {
    pub pos: u64,
    pub reason: String,
    /// Whether the cut bytes are worth saving to a `.trN` file (they hold a
    /// whole or partial transaction, not just a few header bytes).
    pub save_tail: bool,
}

#[derive(Debug, Default)]
pub struct ScanResult {
    /// Just after the last good transaction.
    pub end: u64,
    /// The tid of the last transaction header read, including one cut off
    /// (never reissue a tid that reached the disk).
    pub last_tid: Tid,
    pub cut: Option<Cut>,
    pub warnings: Vec<String>,
    pub transactions: u64,
}

/// Scans from `pos` (a transaction boundary) to the end of the file,
/// adding every data record to `index`. `last_tid` is the tid of the
/// transaction before `pos`.
pub fn scan(
    file: &File,
    path: &Path,
    size: u64,
    mut pos: u64,
    mut last_tid: Tid,
    index: &mut OidIndex,
) -> Result<ScanResult> {
    let mut buf = ScanBuffer::new(file, path, size);
    let mut result = ScanResult::default();
    let corrupted = |offset: u64, reason: String| StorageError::Corrupted {
        path: path.to_path_buf(),
        offset,
        reason,
    };
    let mut tindex: Vec<(u64, u64)> = Vec::new();
    loop {
        if pos == size {
            break;
        }
        if size - pos < TXN_HEADER_SIZE as u64 {
            result.cut = Some(Cut {
                pos,
                reason: format!("truncated at {pos}"),
                save_tail: false,
            });
            break;
        }
        let header: [u8; TXN_HEADER_SIZE] = buf
            .get(pos, TXN_HEADER_SIZE)?
            .try_into()
            .map_err(|_| corrupted(pos, "short transaction header".into()))?;
        let h = TxnHeader::decode(&header);
        if h.tid <= last_tid && last_tid != Tid::ZERO {
            result.warnings.push(format!(
                "time-stamp reduction at {pos}: {} <= {}",
                h.tid, last_tid
            ));
        }
        last_tid = h.tid;
        let next = h.next_pos(pos);
        if next > size || h.status == STATUS_CHECKPOINT {
            result.cut = Some(Cut {
                pos,
                reason: format!("truncated, possibly due to damaged records at {pos}"),
                save_tail: true,
            });
            break;
        }
        if ![STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            result.warnings.push(format!(
                "transaction at {pos} has invalid status {:?}",
                char::from(h.status)
            ));
        }
        let is_last = next == size;
        match check_transaction(&mut buf, pos, &h, &mut tindex) {
            Ok(()) => {}
            Err(reason) if is_last => {
                result.cut = Some(Cut {
                    pos,
                    reason: format!("final transaction at {pos} is torn ({reason})"),
                    save_tail: true,
                });
                break;
            }
            Err(reason) if h.tlen < h.header_len() => {
                // Python's test for junk after the last transaction: does the
                // file's last length word still lead back to or past `pos`?
                let last_len = u64::from_be_bytes(
                    buf.get(size - POS_SIZE as u64, POS_SIZE)?
                        .try_into()
                        .unwrap_or([0xff; 8]),
                );
                let mid_file = last_len >= TXN_HEADER_SIZE as u64
                    && size.checked_sub(last_len).is_some_and(|s| s >= pos);
                if mid_file {
                    return Err(corrupted(pos, reason));
                }
                result.cut = Some(Cut {
                    pos,
                    reason: format!("junk at {pos}: {reason}"),
                    save_tail: true,
                });
                break;
            }
            Err(reason) => return Err(corrupted(pos, reason)),
        }
        for (oid, rpos) in tindex.drain(..) {
            index.insert(oid, rpos);
        }
        result.transactions += 1;
        pos = next;
    }
    result.end = pos;
    result.last_tid = last_tid;
    Ok(result)
}

/// Checks one transaction's structure and collects its records; the error is
/// the reason, without the offset of the transaction (the caller adds it).
fn check_transaction(
    buf: &mut ScanBuffer<'_>,
    pos: u64,
    h: &TxnHeader,
    tindex: &mut Vec<(u64, u64)>,
) -> std::result::Result<(), String> {
    tindex.clear();
    let io_err = |e: StorageError| e.to_string();
    if h.tlen < h.header_len() {
        return Err(format!(
            "transaction length {} shorter than its header {}",
            h.tlen,
            h.header_len()
        ));
    }
    let body_end = pos + h.tlen;
    if h.status != STATUS_UNDONE {
        let mut rpos = pos + h.header_len();
        while rpos < body_end {
            if rpos + DATA_HEADER_SIZE as u64 > body_end {
                return Err(format!(
                    "data record header at {rpos} runs past the transaction"
                ));
            }
            let bytes: [u8; DATA_HEADER_SIZE] = buf
                .get(rpos, DATA_HEADER_SIZE)
                .map_err(io_err)?
                .try_into()
                .map_err(|_| "short read".to_string())?;
            let d = DataHeader::decode(&bytes);
            if d.tloc != pos {
                return Err(format!(
                    "data record at {rpos} names transaction {} instead",
                    d.tloc
                ));
            }
            if d.vlen != 0 {
                return Err(format!("data record at {rpos} has a version length"));
            }
            if d.prev >= rpos {
                return Err(format!(
                    "data record at {rpos} has a previous record at {} not before it",
                    d.prev
                ));
            }
            let rend = rpos.saturating_add(d.record_len());
            if rend > body_end {
                return Err(format!("data record at {rpos} runs past the transaction"));
            }
            tindex.push((d.oid.0, rpos));
            rpos = rend;
        }
        if rpos != body_end {
            return Err("data records don't add up".into());
        }
    }
    let trailing = u64::from_be_bytes(
        buf.get(body_end, POS_SIZE)
            .map_err(io_err)?
            .try_into()
            .map_err(|_| "short read".to_string())?,
    );
    if trailing != h.tlen {
        return Err("redundant transaction length check failed".into());
    }
    Ok(())
}
