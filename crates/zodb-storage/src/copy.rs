//! Copying a storage's history into another (ZODB's `copyTransactionsFrom`, what
//! zodbconvert runs): every transaction with its tid, status, user, description and
//! extension; every record as `restore` takes it, with the tid its data came from so
//! the copy keeps its backpointers; every blob revision's file with `restore_blob`.
//!
//! A blob record whose file the source no longer has (packed away) is copied without
//! one, as Python does.  A destination without blobs refuses a source's blob file
//! instead of dropping it: nothing is lost silently.

use std::path::Path;

use crate::error::{Result, StorageError};
use crate::ids::Tid;
use crate::storage::{DataRecord, Storage, TransactionMeta, TransactionRecord};

/// What [`copy_transactions`] copied.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CopyStats {
    pub transactions: u64,
    pub records: u64,
    /// Blob files copied (one per blob revision that had a file).
    pub blobs: u64,
}

/// Copies the transactions of `source` from `start` on (all of them with `None`) into
/// `dest`, in tid order, each committed before the next begins; `progress` hears the
/// running totals after each.  `dest` must hold nothing later than the first copied
/// tid (its vote fails otherwise).  A failure aborts the transaction being copied and
/// is returned; the ones before it stay committed, so a copy can resume from
/// `dest.last_transaction()`.
pub fn copy_transactions(
    source: &dyn Storage,
    dest: &dyn Storage,
    start: Option<Tid>,
    mut progress: impl FnMut(&CopyStats),
) -> Result<CopyStats> {
    let mut stats = CopyStats::default();
    for txn in source.iterator(start, None)? {
        let txn = txn?;
        copy_one(source, dest, txn, &mut stats)?;
        stats.transactions += 1;
        progress(&stats);
    }
    Ok(stats)
}

fn copy_one(
    source: &dyn Storage,
    dest: &dyn Storage,
    txn: TransactionRecord,
    stats: &mut CopyStats,
) -> Result<()> {
    let meta = TransactionMeta {
        user: txn.user,
        description: txn.description,
        extension: txn.extension,
        tid: Some(txn.tid),
        status: txn.status,
    };
    let handle = dest.tpc_begin(meta)?;
    let copied = (|| {
        for record in txn.records {
            stats.blobs += u64::from(copy_record(source, dest, &handle, record)?);
            stats.records += 1;
        }
        dest.vote(&handle)?;
        dest.finish(&handle)
    })();
    if copied.is_err() {
        dest.abort(&handle);
    }
    copied.map(|_| ())
}

/// Restores one record; whether it carried a blob file.
fn copy_record(
    source: &dyn Storage,
    dest: &dyn Storage,
    handle: &crate::storage::TxnHandle,
    record: DataRecord,
) -> Result<bool> {
    let DataRecord {
        oid,
        tid,
        data,
        data_txn,
    } = record;
    let data = match data {
        Some(data) if is_blob_record(&data) => data,
        data => {
            dest.restore(handle, oid, data, data_txn)?;
            return Ok(false);
        }
    };
    let file = match source.load_blob(oid, tid) {
        Ok(file) => file,
        Err(StorageError::PosKey { .. }) => {
            dest.restore(handle, oid, Some(data), data_txn)?;
            return Ok(false);
        }
        Err(e) => return Err(e),
    };
    let Some(blobs) = dest.blobs() else {
        return Err(StorageError::Unsupported(format!(
            "{} has no blob directory: the blob file of {oid} in transaction {tid} would be lost",
            dest.name()
        )));
    };
    // A copy in the destination's own temporary directory, which `restore_blob` moves
    // into place (the source's file stays where it is).
    let copy = copy_into(&file, &blobs.tmp_dir())
        .map_err(|e| StorageError::io(format!("copying blob file {}", file.display()), e))?;
    dest.restore_blob(handle, oid, data, &copy, data_txn)?;
    Ok(true)
}

fn copy_into(file: &Path, dir: &Path) -> std::io::Result<tempfile::TempPath> {
    let mut to = tempfile::Builder::new()
        .prefix("copy-")
        .suffix(".tmp")
        .tempfile_in(dir)?;
    let mut from = std::fs::File::open(file)?;
    std::io::copy(&mut from, to.as_file_mut())?;
    Ok(to.into_temp_path())
}

/// Whether `record` is a `ZODB.blob.Blob`'s (its class, read from the pickle).
pub fn is_blob_record(record: &[u8]) -> bool {
    zodb_pickle::class_of(record)
        .is_some_and(|(module, name)| module == "ZODB.blob" && name == "Blob")
}
