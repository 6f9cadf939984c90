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

mod check;
mod commit;
mod iter;
use iter::FileIterator;
pub mod format;
mod index_file;
mod io;
mod oid_index;
mod open;
mod pack;
mod scan;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use oid_index::OidIndex;
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
    DataRecord, HistoryEntry, RecordIterItem, Revision, Storage, TransactionIter, TransactionMeta,
    TransactionRecord, TxnHandle, TxnStatus, UndoLogEntry,
};
use commit::{CommitQueue, PackGate, Prepared};

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

/// One write of a pending transaction.
#[derive(Debug)]
enum PendingWrite {
    Store {
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        seen: Option<Seen>,
    },
    Delete {
        oid: Oid,
        expected: Tid,
        seen: Option<Seen>,
    },
    /// A copied revision: data, or the data of transaction `prev_txn`, or a
    /// deletion; never serial-checked.
    Restore {
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    },
}

impl PendingWrite {
    fn oid(&self) -> Oid {
        match self {
            PendingWrite::Store { oid, .. }
            | PendingWrite::Delete { oid, .. }
            | PendingWrite::Restore { oid, .. } => *oid,
        }
    }
}

/// A transaction of a batch, as written: its finisher's slot in the batch,
/// tid, position, and the record positions to publish (oid, pos).
#[derive(Debug)]
struct Written {
    slot: usize,
    tid: Tid,
    tpos: u64,
    positions: Vec<(u64, u64)>,
}

/// An object's current record as undo compares it with the undone one.
#[derive(Debug, Clone)]
struct CurrentRecord {
    pos: u64,
    /// Where its data are: its own position, or its backpointer (one hop,
    /// as Python compares them); `None` for a deletion.
    data_ptr: Option<u64>,
    data: Option<Vec<u8>>,
}

impl CurrentRecord {
    fn read(reader: &Reader<'_>, pos: u64, oid: Oid) -> Result<CurrentRecord> {
        let record = reader.record(pos, Some(oid))?;
        let data_ptr = match &record.payload {
            RecordPayload::Data(_) => Some(pos),
            RecordPayload::Back(0) => None,
            RecordPayload::Back(b) => Some(*b),
        };
        let data = reader.resolve(record)?.map(|(d, _)| d);
        Ok(CurrentRecord {
            pos,
            data_ptr,
            data,
        })
    }
}

#[derive(Debug)]
struct Pending {
    meta: TransactionMeta,
    writes: Vec<PendingWrite>,
    by_oid: HashMap<Oid, usize>,
    checks: Vec<(Oid, Tid)>,
    undos: Vec<Tid>,
    /// The objects undo will change, known when `undo` is called.
    undo_oids: Vec<Oid>,
    /// Set by a successful vote: the transaction holds its object locks
    /// and a place at the pack gate until finish or abort.
    voted: Option<Arc<Prepared>>,
    done: bool,
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

    /// The committed revision of `oid`: where it is and its serial.
    fn committed(&self, oid: Oid) -> Result<Option<Seen>> {
        match self.locate(oid) {
            Ok((file, pos, end)) => {
                let serial = self.reader(&file, end).data_header(pos)?.serial;
                Ok(Some(Seen { file, pos, serial }))
            }
            Err(e) if e.is_pos_key() => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn pending(&self, txn: &TxnHandle) -> Result<Arc<Mutex<Pending>>> {
        self.pending.lock().get(&txn.id()).cloned().ok_or_else(|| {
            StorageError::Transaction(format!("{txn:?} is not a transaction of this storage"))
        })
    }

    /// Finds the transaction `tid` by walking back from the end.
    fn find_transaction(reader: &Reader<'_>, tid: Tid) -> Result<Option<(u64, TxnHeader)>> {
        let mut end = reader.end;
        while end > 4 {
            let tlen = reader.u64_at(end - 8, "redundant transaction length")?;
            let tpos = end
                .checked_sub(8 + tlen)
                .filter(|p| *p >= 4)
                .ok_or_else(|| {
                    reader.corrupted(end - 8, "transaction length points before the file start")
                })?;
            let h = reader.txn_header(tpos)?;
            if h.tlen != tlen {
                return Err(reader.corrupted(tpos, "redundant transaction length check failed"));
            }
            if h.tid == tid {
                return Ok(Some((tpos, h)));
            }
            if h.tid < tid {
                return Ok(None);
            }
            end = tpos;
        }
        Ok(None)
    }

    /// The data records of the transaction at `tpos`.
    fn transaction_records(reader: &Reader<'_>, tpos: u64, h: &TxnHeader) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        if h.status == STATUS_UNDONE {
            return Ok(records);
        }
        let mut pos = tpos + h.header_len();
        let body_end = tpos + h.tlen;
        while pos < body_end {
            let r = reader.record(pos, None)?;
            if r.header.tloc != tpos {
                return Err(reader.corrupted(pos, "data record belongs to another transaction"));
            }
            pos += r.header.record_len();
            records.push(r);
        }
        Ok(records)
    }

    fn read_meta(
        reader: &Reader<'_>,
        tpos: u64,
        h: &TxnHeader,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let at = tpos + TXN_HEADER_SIZE as u64;
        let meta = reader.read_exact(
            at,
            (h.header_len() - TXN_HEADER_SIZE as u64) as usize,
            "transaction metadata",
        )?;
        let (user, rest) = meta.split_at(usize::from(h.ulen));
        let (description, extension) = rest.split_at(usize::from(h.dlen));
        Ok((user.to_vec(), description.to_vec(), extension.to_vec()))
    }

    /// Buffers a write in the open transaction `txn` (before its vote).
    fn add_write(&self, txn: &TxnHandle, what: &str, w: PendingWrite) -> Result<()> {
        let oid = w.oid();
        let p = self.pending(txn)?;
        let mut p = p.lock();
        if p.voted.is_some() {
            return Err(StorageError::Transaction(format!("{what} after vote")));
        }
        push_write(&mut p, w);
        drop(p);
        let mut max = self.max_oid.lock();
        *max = (*max).max(oid.0);
        Ok(())
    }

    /// The position of `oid`'s record written by transaction `tid`, walking
    /// the object's chain back from `pos`.
    fn record_of_transaction(
        reader: &Reader<'_>,
        mut pos: u64,
        oid: Oid,
        tid: Tid,
    ) -> Result<Option<u64>> {
        while pos != 0 {
            let h = reader.data_header(pos)?;
            if h.oid != oid {
                return Err(reader.corrupted(pos, format!("expected a record of oid {oid}")));
            }
            if h.serial == tid {
                return Ok(Some(pos));
            }
            if h.serial < tid || h.prev >= pos {
                return Ok(None);
            }
            pos = h.prev;
        }
        Ok(None)
    }

    /// Checks that an undo of `tid` is possible now; returns its oids.
    fn undo_oids(&self, tid: Tid) -> Result<Vec<Oid>> {
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let Some((tpos, h)) = Self::find_transaction(&reader, tid)? else {
            return Err(StorageError::Undo(vec![
                "Invalid undo transaction id".into(),
            ]));
        };
        if h.status != STATUS_COMMITTED {
            return Err(StorageError::Undo(vec!["non-undoable transaction".into()]));
        }
        let mut oids: Vec<Oid> = Self::transaction_records(&reader, tpos, &h)?
            .iter()
            .map(|r| r.header.oid)
            .collect();
        oids.dedup();
        Ok(oids)
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
        let (file, pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        let r = reader.record(pos, Some(oid))?;
        let serial = r.header.serial;
        match reader.resolve(r)? {
            Some((data, _)) => Ok((data, serial)),
            None => Err(StorageError::pos_key(oid)),
        }
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        let (file, mut pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        let mut next_serial = None;
        // The current record is read whole at once, since it is usually
        // the answer; older ones header first.
        let mut current = Some(reader.record(pos, Some(oid))?);
        loop {
            let h = match &current {
                Some(r) => r.header,
                None => reader.data_header(pos)?,
            };
            if h.oid != oid {
                return Err(reader.corrupted(pos, format!("expected a record of oid {oid}")));
            }
            if h.serial < before {
                let r = match current.take() {
                    Some(r) => r,
                    None => reader.record(pos, Some(oid))?,
                };
                return match reader.resolve(r)? {
                    Some((data, _)) => Ok(Some(Revision {
                        data,
                        start: h.serial,
                        end: next_serial,
                    })),
                    None => Err(StorageError::PosKey {
                        oid,
                        detail: Some(format!("deleted as of {}", h.serial)),
                    }),
                };
            }
            next_serial = Some(h.serial);
            current = None;
            if h.prev == 0 {
                return Ok(None);
            }
            if h.prev >= pos {
                return Err(
                    reader.corrupted(pos, "previous record pointer does not point backwards")
                );
            }
            pos = h.prev;
        }
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        let (file, mut pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        loop {
            let h = reader.data_header(pos)?;
            if h.serial == serial {
                let r = reader.record(pos, Some(oid))?;
                return reader
                    .resolve(r)?
                    .map(|(d, _)| d)
                    .ok_or_else(|| StorageError::PosKey {
                        oid,
                        detail: Some(format!("revision {serial} is a deletion")),
                    });
            }
            if h.serial < serial || h.prev == 0 || h.prev >= pos {
                return Err(StorageError::PosKey {
                    oid,
                    detail: Some(format!("no revision {serial}")),
                });
            }
            pos = h.prev;
        }
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
        self.check_writable()?;
        for (what, field) in [
            ("user name", &meta.user),
            ("description", &meta.description),
            ("extension", &meta.extension),
        ] {
            if field.len() > limits::TXN_META_FIELD_SIZE_MAX {
                return Err(StorageError::Limit(format!(
                    "{what} too long ({} bytes)",
                    field.len()
                )));
            }
        }
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let p = Pending {
            meta,
            writes: Vec::new(),
            by_oid: HashMap::new(),
            checks: Vec::new(),
            undos: Vec::new(),
            undo_oids: Vec::new(),
            voted: None,
            done: false,
        };
        self.pending.lock().insert(id, Arc::new(Mutex::new(p)));
        Ok(TxnHandle::new(id))
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        self.check_writable()?;
        if data.len() as u64 > limits::RECORD_SIZE_MAX {
            return Err(StorageError::Limit(format!(
                "record of {} bytes over the limit",
                data.len()
            )));
        }
        if data.is_empty() {
            return Err(StorageError::Limit(
                "an object record cannot be empty".into(),
            ));
        }
        self.pending(txn)?;
        // An oid without a record is not checked, as in Python.
        let seen = self.committed(oid)?;
        if let Some(committed) = &seen {
            check_serial(oid, committed.serial, expected, false)?;
        }
        let write = PendingWrite::Store {
            oid,
            expected,
            data,
            seen,
        };
        self.add_write(txn, "store", write)
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_writable()?;
        self.pending(txn)?;
        let seen = self
            .committed(oid)?
            .ok_or_else(|| StorageError::pos_key(oid))?;
        check_serial(oid, seen.serial, expected, false)?;
        let write = PendingWrite::Delete {
            oid,
            expected,
            seen: Some(seen),
        };
        self.add_write(txn, "delete", write)
    }

    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.check_writable()?;
        if let Some(d) = &data
            && (d.is_empty() || d.len() as u64 > limits::RECORD_SIZE_MAX)
        {
            return Err(StorageError::Limit(format!(
                "cannot restore a record of {} bytes",
                d.len()
            )));
        }
        let write = PendingWrite::Restore {
            oid,
            data,
            prev_txn,
        };
        self.add_write(txn, "restore", write)
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
        self.check_writable()?;
        let p = self.pending(txn)?;
        let committed = self.committed_serial(oid)?.unwrap_or(Tid::ZERO);
        check_serial(oid, committed, expected, true)?;
        p.lock().checks.push((oid, expected));
        Ok(())
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.check_writable()?;
        if self.packing.load(Ordering::Acquire) {
            return Err(StorageError::Undo(vec![
                "undo is not allowed while packing".into(),
            ]));
        }
        let p = self.pending(txn)?;
        let oids = self.undo_oids(tid)?;
        let mut p = p.lock();
        if p.voted.is_some() {
            return Err(StorageError::Transaction("undo after vote".into()));
        }
        p.undos.push(tid);
        p.undo_oids.extend_from_slice(&oids);
        Ok(oids)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.check_writable()?;
        let p = self.pending(txn)?;
        let mut p = p.lock();
        if p.done {
            return Err(StorageError::Transaction("the transaction is over".into()));
        }
        if p.voted.is_some() {
            return Ok(());
        }
        let mut oids: Vec<Oid> = p.writes.iter().map(PendingWrite::oid).collect();
        oids.extend(p.checks.iter().map(|(o, _)| *o));
        oids.extend_from_slice(&p.undo_oids);
        oids.sort();
        oids.dedup();
        self.gate.enter();
        if let Err(e) = self
            .object_locks
            .acquire(txn.id(), &oids, self.options.lock_timeout)
        {
            self.gate.leave();
            return Err(e);
        }
        match self.check_writable().and_then(|()| self.prepare(&p)) {
            Ok(prepared) => {
                p.voted = Some(Arc::new(prepared));
                Ok(())
            }
            Err(e) => {
                self.object_locks.release(txn.id());
                self.gate.leave();
                Err(e)
            }
        }
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.vote(txn)?;
        let p = self.pending(txn)?;
        let mut p = p.lock();
        let Some(prepared) = p.voted.take() else {
            return Err(StorageError::Transaction("finish without a vote".into()));
        };
        let result = self
            .commits
            .commit(prepared, |batch| self.write_batch(batch));
        p.done = true;
        drop(p);
        self.pending.lock().remove(&txn.id());
        self.object_locks.release(txn.id());
        self.gate.leave();
        result
    }

    fn abort(&self, txn: &TxnHandle) {
        let Some(p) = self.pending.lock().remove(&txn.id()) else {
            return;
        };
        let mut p = p.lock();
        p.done = true;
        // Nothing was written before finish: giving the locks back is all.
        if p.voted.take().is_some() {
            self.object_locks.release(txn.id());
            self.gate.leave();
        }
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        let (file, mut pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        let size = size.min(limits::HISTORY_SIZE_MAX);
        let mut out = Vec::new();
        while out.len() < size {
            let h = reader.data_header(pos)?;
            let th = reader.txn_header(h.tloc)?;
            let (user, description, extension) = Self::read_meta(&reader, h.tloc, &th)?;
            out.push(HistoryEntry {
                tid: h.serial,
                time: h.serial.unix_seconds(),
                user,
                description,
                extension,
                size: h.plen,
            });
            if h.prev == 0 {
                break;
            }
            if h.prev >= pos {
                return Err(
                    reader.corrupted(pos, "previous record pointer does not point backwards")
                );
            }
            pos = h.prev;
        }
        Ok(out)
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.check_open()?;
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let mut out = Vec::new();
        let mut i = 0usize;
        let mut tend = end;
        while tend > 4 && i < last {
            let tlen = reader.u64_at(tend - 8, "redundant transaction length")?;
            let tpos = tend
                .checked_sub(8 + tlen)
                .filter(|p| *p >= 4)
                .ok_or_else(|| {
                    reader.corrupted(tend - 8, "transaction length points before the file start")
                })?;
            let h = reader.txn_header(tpos)?;
            tend = tpos;
            if h.status == STATUS_PACKED {
                break;
            }
            if h.status != STATUS_COMMITTED {
                continue;
            }
            if i >= first {
                let (user, description, extension) = Self::read_meta(&reader, tpos, &h)?;
                out.push(UndoLogEntry {
                    tid: h.tid,
                    time: h.tid.unix_seconds(),
                    user,
                    description,
                    extension,
                    size: h.tlen,
                });
            }
            i += 1;
        }
        Ok(out)
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
        let result = pack::pack(self, pack_time, gc);
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

/// A conflict unless `committed == expected`.
fn check_serial(oid: Oid, committed: Tid, expected: Tid, read_conflict: bool) -> Result<()> {
    if committed == expected {
        return Ok(());
    }
    Err(ConflictError {
        oid,
        committed,
        expected,
        read_conflict,
    }
    .into())
}

fn push_write(p: &mut Pending, w: PendingWrite) {
    let oid = w.oid();
    if matches!(w, PendingWrite::Restore { .. }) {
        // Copied transactions keep every record they had, even several of
        // one object (an undo of several transactions writes such).
        p.writes.push(w);
        return;
    }
    match p.by_oid.get(&oid) {
        // The last store of an oid in a transaction wins.
        Some(&i) => p.writes[i] = w,
        None => {
            p.by_oid.insert(oid, p.writes.len());
            p.writes.push(w);
        }
    }
}

impl Drop for FileStorage {
    fn drop(&mut self) {
        if let Err(e) = self.close() {
            tracing::warn!(path = %self.path.display(), "closing: {e}");
        }
    }
}
