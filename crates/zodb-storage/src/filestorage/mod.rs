//! `FileStorage`: a ZODB FileStorage engine over one `Data.fs`.
//!
//! The file is an append-only log of transactions
//! (`docs/spec/filestorage-format.md`); an in-memory index maps each oid to
//! the position of its newest record, and every older revision is reached
//! through the records' `prev` pointers. Python ZODB opens the files this
//! engine writes, and this engine opens Python's.
//!
//! Concurrency: readers take the snapshot lock only to look a position up,
//! then read with `pread` on a shared file handle; committed bytes never
//! change (except a status byte and a pack's switch to a new file, which
//! readers of the old handle never see). `vote` locks the transaction's
//! objects, checks serials and prepares its records, writing nothing; `finish`
//! hands it to the group commit (`commit.rs`), which writes it with status
//! `'c'`, flips the status, fsyncs and publishes; `abort` drops it and its
//! locks. Transactions touching different objects never wait for each other.
//!
//! Listeners ([`crate::listeners`]) are told of each transaction by the group
//! commit's writer, after the batch is published and before any of its
//! finishers is answered. There is one writer at a time and it writes batches
//! in tid order, so reports come out in tid order however many threads finish
//! at once.
//!
//! Pieces: this file holds the struct, its shared helpers and a thin `impl
//! Storage`; `open.rs` opens (and recovers) a file, `reads.rs` answers loads,
//! history and the undo log, `txn.rs` buffers and checks a transaction's writes
//! up to its vote, `commit.rs` prepares voted transactions and runs the group
//! commit, `iter.rs` iterates transactions, `pack.rs` packs, `check.rs` verifies
//! a file, and `format.rs`, `io.rs`, `scan.rs`, `index_file.rs` and
//! `oid_index.rs` hold the byte layout, record reads, file scans, the saved
//! index and the in-memory index.

mod check;
mod commit;
pub(crate) mod format;
mod index_file;
mod io;
mod iter;
mod oid_index;
mod open;
mod pack;
mod reads;
mod recent;
mod record_cache;
mod scan;
mod txn;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub(crate) use oid_index::OidIndex;
use parking_lot::{Mutex, RwLock};

pub use check::{CheckReport, check_file};
use format::{
    MAGIC, MAGIC_PY2, STATUS_CHECKPOINT, STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE,
    TXN_HEADER_SIZE, TXN_STATUS, TxnBuilder, TxnHeader,
};
use io::{Reader, Record, RecordPayload};

use crate::error::{ConflictError, Result, StorageError};
use crate::ids::{Oid, Tid, TidClock};
use crate::limits;
use crate::listeners::{InvalidationListener, Listeners};
use crate::object_locks::ObjectLocks;
use crate::storage::{
    DataRecord, HistoryEntry, RecordIterItem, Revision, RevisionRef, Storage, TransactionIter,
    TransactionMeta, TransactionRecord, TxnHandle, TxnStatus, UndoLogEntry,
};
use commit::{CommitQueue, PackGate, Prepared};
use iter::FileIterator;
use recent::RecentTxns;
use record_cache::RecordCache;
use txn::{CurrentRecord, Pending, PendingWrite};

/// How to open a file.
#[derive(Debug, Clone, Default)]
pub struct Options {
    /// Open without the lock, refuse writes, and never change the file.
    pub read_only: bool,
    /// Refuse to create a missing file.
    pub must_exist: bool,
    /// Keep `Data.fs.old` after a pack (Python's default).
    pub pack_discard_old: bool,
    /// How long a vote waits for objects another transaction is
    /// committing before it fails (`None`: as long as it takes).
    pub lock_timeout: Option<std::time::Duration>,
    /// The blob directory (ZODB's `blob_dir`), laid out as ZODB's; `None`: no blobs.
    pub blob_dir: Option<PathBuf>,
    /// The blob directory's layout; `None`: its marker, or ZODB's choice.
    pub blob_layout: Option<crate::blob::Layout>,
}

/// What open found and did, for logs and tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OpenReport {
    /// The saved index was used (only the tail after it was scanned).
    pub used_saved_index: bool,
    pub scanned_transactions: u64,
    /// Position where a damaged tail was cut off, and why.
    pub cut: Option<(u64, String)>,
    /// Where the cut bytes were saved (`Data.fs.trN`).
    pub saved_tail: Option<PathBuf>,
    pub warnings: Vec<String>,
}

/// What readers see: the file, the index of committed records, and where
/// committed data end. Replaced as a whole by a pack.
#[derive(Debug)]
struct Snapshot {
    file: Arc<File>,
    index: OidIndex,
    end: u64,
    last_tid: Tid,
    /// The newest transactions written to `file`: serials without reads.
    recent: RecentTxns,
    /// Records of `file` loads read lately (shared with loads that took it before a
    /// pack replaced this snapshot: what they put in goes with the old file).
    records: Arc<RecordCache>,
}

/// The committed revision a store or deletion was checked against: its
/// record's position in `file` and its serial.  `prepare` trusts the serial
/// while the index still points at that record of that file (a commit moves
/// the index to a new position, a pack to a new file), and so does not read
/// the record's header a second time.  The `Arc` keeps the file's address
/// from being reused by another file while the pending write holds it.
#[derive(Debug)]
struct Seen {
    file: Arc<File>,
    pos: u64,
    serial: Tid,
}

impl Seen {
    /// The serial at `pos` of `file`, if that is the record this was read from.
    fn serial_at(seen: &Option<Seen>, file: &Arc<File>, pos: u64) -> Option<Tid> {
        seen.as_ref()
            .filter(|s| s.pos == pos && Arc::ptr_eq(&s.file, file))
            .map(|s| s.serial)
    }
}

/// A transaction of a batch, as written: its finisher's slot in the batch,
/// tid, position, and the record positions to publish (oid, pos).
#[derive(Debug)]
struct Written {
    slot: usize,
    tid: Tid,
    tpos: u64,
    /// The status byte written once every byte is in place.
    status: u8,
    positions: Vec<(u64, u64)>,
}

/// A ZODB FileStorage.
#[derive(Debug)]
pub struct FileStorage {
    path: PathBuf,
    read_only: bool,
    options: Options,
    snap: RwLock<Snapshot>,
    /// Taken by a vote on the objects its transaction writes or checks,
    /// released at finish or abort.
    object_locks: ObjectLocks,
    /// Keeps a pack's file switch apart from voted transactions.
    gate: PackGate,
    /// Where finishers meet to share a write and an fsync.
    commits: CommitQueue,
    pending: Mutex<HashMap<u64, Arc<Mutex<Pending>>>>,
    next_handle: AtomicU64,
    /// The largest oid handed out or seen.
    max_oid: Mutex<u64>,
    clock: Mutex<TidClock>,
    /// Set after a failed fsync (or a failed write that could not be cut
    /// off): commits are refused until reopen.
    poisoned: Mutex<Option<String>>,
    /// Unit tests make the next fsyncs of a commit fail (a test double for
    /// the sync call: no file system here fails one on demand).
    #[cfg(test)]
    fail_syncs: AtomicBool,
    lock_file: Mutex<Option<File>>,
    closed: AtomicBool,
    packing: AtomicBool,
    open_report: OpenReport,
    /// Told of each commit by `write_batch` (see the module documentation).
    listeners: Listeners,
    /// Where blob revisions live, if this storage has blobs.
    blobs: Option<crate::blob::BlobDir>,
}

/// Permissions of every file the engine creates (`Data.fs`, its index, lock, pack and
/// saved tails): the owner's only.  The database holds everything of value, the
/// application's secrets included, so no other local user may read it.  (Files that
/// exist already keep their mode.)
pub const FILE_MODE: u32 = 0o600;

/// `OpenOptions` that create files with [`FILE_MODE`].
pub(crate) fn private_options() -> OpenOptions {
    let mut o = OpenOptions::new();
    o.mode(FILE_MODE);
    o
}

impl FileStorage {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// What open found: saved index used, damaged tail cut, warnings.
    pub fn open_report(&self) -> &OpenReport {
        &self.open_report
    }

    /// Where committed data end (the size of the committed file).
    pub fn end(&self) -> u64 {
        self.snap.read().end
    }

    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn check_writable(&self) -> Result<()> {
        self.check_open()?;
        if self.read_only {
            return Err(StorageError::ReadOnly);
        }
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(StorageError::Poisoned(why));
        }
        Ok(())
    }

    fn poison(&self, why: String) {
        tracing::error!(path = %self.path.display(), "refusing further writes: {why}");
        self.poisoned.lock().get_or_insert(why);
    }

    /// The file, the position of `oid`'s newest record, and the end.
    fn locate(&self, oid: Oid) -> Result<(Arc<File>, u64, u64)> {
        self.check_open()?;
        let snap = self.snap.read();
        let pos = snap
            .index
            .get(oid.0)
            .ok_or_else(|| StorageError::pos_key(oid))?;
        Ok((Arc::clone(&snap.file), pos, snap.end))
    }

    fn reader<'a>(&'a self, file: &'a File, end: u64) -> Reader<'a> {
        Reader {
            file,
            path: &self.path,
            end,
        }
    }

    /// The serial of `oid`'s committed current record, `None` if it has none.
    fn committed_serial(&self, oid: Oid) -> Result<Option<Tid>> {
        Ok(self.committed(oid)?.map(|seen| seen.serial))
    }

    /// The committed revision of `oid`: where it is and its serial (read from the file
    /// only when its transaction is not a recent one).
    fn committed(&self, oid: Oid) -> Result<Option<Seen>> {
        self.check_open()?;
        let (file, pos, end, serial) = {
            let snap = self.snap.read();
            let Some(pos) = snap.index.get(oid.0) else {
                return Ok(None);
            };
            let serial = snap.recent.serial_at(pos);
            (Arc::clone(&snap.file), pos, snap.end, serial)
        };
        let serial = match serial {
            Some(serial) => serial,
            None => self.reader(&file, end).data_header(pos)?.serial,
        };
        Ok(Some(Seen { file, pos, serial }))
    }

    /// Saves the index (as Python does on close) so the next open is fast.
    fn save_index(&self) -> Result<()> {
        if self.read_only {
            return Ok(());
        }
        let snap = self.snap.read();
        index_file::save(&self.path, snap.end, &snap.index)
    }

    /// Verifies the whole file like Python's `fstest`, and more.
    pub fn check(&self) -> Result<CheckReport> {
        check_file(&self.path)
    }
}

impl Storage for FileStorage {
    fn name(&self) -> String {
        self.path.display().to_string()
    }

    fn location(&self) -> crate::StorageLocation {
        crate::StorageLocation {
            kind: "file",
            location: self.path.display().to_string(),
        }
    }

    fn is_read_only(&self) -> bool {
        self.read_only
    }

    fn last_transaction(&self) -> Tid {
        self.snap.read().last_tid
    }

    fn len(&self) -> usize {
        self.snap.read().index.len()
    }

    fn size(&self) -> u64 {
        self.snap.read().end
    }

    fn load(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        self.read_current(oid)
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        self.read_before(oid, before)
    }

    fn load_before_with(
        &self,
        oid: Oid,
        before: Tid,
        f: &mut dyn FnMut(Option<RevisionRef<'_>>),
    ) -> Result<()> {
        self.read_before_with(oid, before, f)
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.read_serial(oid, serial)
    }

    fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        self.check_writable()?;
        if count > limits::NEW_OIDS_COUNT_MAX {
            return Err(StorageError::Limit(format!(
                "at most {} oids per call",
                limits::NEW_OIDS_COUNT_MAX
            )));
        }
        let mut max = self.max_oid.lock();
        let start = *max + 1;
        *max += count as u64;
        Ok((start..start + count as u64).map(Oid).collect())
    }

    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        self.begin_txn(meta)
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        self.store_txn(txn, oid, expected, data)
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.delete_txn(txn, oid, expected)
    }

    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.restore_txn(txn, oid, data, prev_txn)
    }

    fn record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>> {
        self.check_open()?;
        let (oid, next) = {
            let snap = self.snap.read();
            let Some(oid) = snap.index.first_at_or_after(from.0) else {
                return Ok(None);
            };
            let next = oid
                .checked_add(1)
                .and_then(|n| snap.index.first_at_or_after(n));
            (oid, next)
        };
        let (data, tid) = self.load(Oid(oid))?;
        Ok(Some(RecordIterItem {
            oid: Oid(oid),
            tid,
            data,
            next: next.map(Oid),
        }))
    }

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_txn(txn, oid, expected)
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.undo_txn(txn, tid)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.vote_txn(txn, true).map(drop)
    }

    fn vote_without_waiting(&self, txn: &TxnHandle) -> Result<bool> {
        self.vote_txn(txn, false)
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.finish_txn(txn)
    }

    fn abort(&self, txn: &TxnHandle) {
        self.abort_txn(txn)
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        self.read_history(oid, size)
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.read_undo_log(first, last)
    }

    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter> {
        self.check_open()?;
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        Ok(Box::new(FileIterator {
            file,
            path: self.path.clone(),
            end,
            pos: 4,
            start,
            stop,
            done: false,
        }))
    }

    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.check_writable()?;
        if pack_time == Tid::ZERO {
            return Err(StorageError::Pack(
                "the pack time must be after the epoch of tids".into(),
            ));
        }
        if self.packing.swap(true, Ordering::AcqRel) {
            return Err(StorageError::Pack("Already packing".into()));
        }
        let result = pack::pack(self, pack_time, gc).and_then(|()| self.pack_blobs(pack_time));
        self.packing.store(false, Ordering::Release);
        result
    }

    fn close(&self) -> Result<()> {
        if self.closed.swap(true, Ordering::AcqRel) {
            return Ok(());
        }
        // Fail votes waiting for object locks first: they hold their
        // transaction's mutex, which abort needs.
        self.object_locks.close();
        let open: Vec<u64> = self.pending.lock().keys().copied().collect();
        for id in open {
            self.abort(&TxnHandle::new(id));
        }
        let saved = if self.poisoned.lock().is_none() {
            self.save_index()
        } else {
            Ok(())
        };
        // Dropping the lock file releases the flock.
        self.lock_file.lock().take();
        saved
    }

    fn blobs(&self) -> Option<&crate::blob::BlobDir> {
        self.blobs.as_ref()
    }

    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        blob: &Path,
    ) -> Result<()> {
        self.store_blob_txn(txn, oid, expected, data, blob)
    }

    fn restore_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Vec<u8>,
        blob: &Path,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.restore_blob_txn(txn, oid, data, blob, prev_txn)
    }

    fn load_blob(&self, oid: Oid, serial: Tid) -> Result<PathBuf> {
        self.load_blob_file(oid, serial)
    }

    fn add_listener(&self, listener: std::sync::Weak<dyn InvalidationListener>) {
        self.listeners.add(listener);
    }

    /// Open, not poisoned, and the file's magic still reads back (one `pread` of 4
    /// bytes, from the page cache as a rule: a disk that vanished or a file system
    /// gone bad answers with an I/O error). `within` is not needed: nothing here waits
    /// for anybody.
    fn check_health(&self, _within: std::time::Duration) -> Result<()> {
        self.check_open()?;
        if let Some(why) = self.poisoned.lock().clone() {
            return Err(StorageError::Poisoned(why));
        }
        let (file, end) = {
            let snap = self.snap.read();
            (Arc::clone(&snap.file), snap.end)
        };
        let magic =
            self.reader(&file, end)
                .read_exact(0, format::MAGIC.len(), "the file header")?;
        if magic != format::MAGIC.as_slice() && magic != format::MAGIC_PY2.as_slice() {
            return Err(self
                .reader(&file, end)
                .corrupted(0, "the file header is not a FileStorage's any more"));
        }
        Ok(())
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(path = %self.path.display(), "closing: {e}");
        }
    }
}
