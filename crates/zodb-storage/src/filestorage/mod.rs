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
pub mod format;
mod index_file;
mod io;
mod oid_index;
mod pack;
mod scan;

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

pub use oid_index::OidIndex;
use parking_lot::{Mutex, RwLock};

pub use check::{CheckReport, check_file};
use format::{
    MAGIC, MAGIC_PY2, Payload, STATUS_CHECKPOINT, STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE,
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
use commit::{CommitQueue, PackGate, Prepared, Slot};

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

/// One write of a pending transaction.
#[derive(Debug)]
enum PendingWrite {
    Store {
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
    },
    Delete {
        oid: Oid,
        expected: Tid,
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
    /// Set after a failed write or fsync: commits are refused until reopen.
    poisoned: Mutex<Option<String>>,
    lock_file: Mutex<Option<File>>,
    closed: AtomicBool,
    packing: AtomicBool,
    open_report: OpenReport,
    /// Told of each commit by `write_batch` (see the module documentation).
    listeners: Listeners,
}

impl FileStorage {
    /// Opens (creating if missing) `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<FileStorage> {
        FileStorage::open_with(path, Options::default())
    }

    pub fn open_read_only(path: impl AsRef<Path>) -> Result<FileStorage> {
        FileStorage::open_with(
            path,
            Options {
                read_only: true,
                ..Options::default()
            },
        )
    }

    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<FileStorage> {
        let path = path.as_ref().to_path_buf();
        let io_err = |what: &str, e| StorageError::io(format!("{}: {what}", path.display()), e);
        if options.must_exist && !options.read_only && !path.exists() {
            return Err(io_err("open", std::io::ErrorKind::NotFound.into()));
        }
        let lock_file = if options.read_only {
            None
        } else {
            Some(take_lock(&path)?)
        };
        let file = if options.read_only {
            File::open(&path).map_err(|e| io_err("open", e))?
        } else {
            OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_err("open", e))?
        };
        let mut size = file.metadata().map_err(|e| io_err("stat", e))?.len();
        if size == 0 && !options.read_only {
            file.write_all_at(MAGIC, 0)
                .map_err(|e| io_err("write the magic", e))?;
            file.sync_all().map_err(|e| io_err("fsync", e))?;
            size = MAGIC.len() as u64;
        }
        let mut magic = [0u8; 4];
        if size < 4 {
            return Err(StorageError::Format {
                path,
                reason: "too short to be a FileStorage".into(),
            });
        }
        file.read_exact_at(&mut magic, 0)
            .map_err(|e| io_err("read the magic", e))?;
        if &magic == MAGIC_PY2 {
            if !options.read_only {
                return Err(StorageError::Format {
                    path,
                    reason: "a Python 2 FileStorage (FS21): open it read-only, or convert it with zodbupdate --convert-py3".into(),
                });
            }
        } else if &magic != MAGIC {
            return Err(StorageError::Format {
                path,
                reason: format!("not a FileStorage (magic {magic:?})"),
            });
        }

        let mut report = OpenReport::default();
        let (mut index, start, start_tid) = match load_saved_index(&file, &path, size) {
            Ok(Some((end, index, tid))) => {
                report.used_saved_index = true;
                (index, end, tid)
            }
            Ok(None) => (OidIndex::new(), 4, Tid::ZERO),
            Err(reason) => {
                report
                    .warnings
                    .push(format!("ignoring the saved index: {reason}"));
                (OidIndex::new(), 4, Tid::ZERO)
            }
        };
        let scanned = scan::scan(&file, &path, size, start, start_tid, &mut index)?;
        report.scanned_transactions = scanned.transactions;
        report.warnings.extend(scanned.warnings);
        for w in &report.warnings {
            tracing::warn!(path = %path.display(), "{w}");
        }
        let end = scanned.end;
        if let Some(cut) = &scanned.cut {
            report.cut = Some((cut.pos, cut.reason.clone()));
            if options.read_only {
                tracing::warn!(path = %path.display(), "{}; read-only, so reading up to {}", cut.reason, cut.pos);
            } else {
                tracing::warn!(path = %path.display(), "{}; cutting the file at {}", cut.reason, cut.pos);
                if cut.save_tail {
                    report.saved_tail = Some(save_tail(&file, &path, cut.pos, size)?);
                }
                file.set_len(cut.pos).map_err(|e| io_err("truncate", e))?;
                file.sync_all().map_err(|e| io_err("fsync", e))?;
                index_file::remove(&path)?;
            }
        }
        if !options.read_only && (!report.used_saved_index || report.cut.is_some()) && end > 4 {
            index_file::save(&path, end, &index)?;
        }
        index.shrink_to_fit();
        let max_oid = index.max_oid().unwrap_or(0);
        let last_tid = scanned.last_tid;
        Ok(FileStorage {
            read_only: options.read_only,
            options,
            snap: RwLock::new(Snapshot {
                file: Arc::new(file),
                index,
                end,
                last_tid,
            }),
            object_locks: ObjectLocks::new(),
            gate: PackGate::default(),
            commits: CommitQueue::default(),
            pending: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            max_oid: Mutex::new(max_oid),
            clock: Mutex::new(TidClock::new(last_tid)),
            poisoned: Mutex::new(None),
            lock_file: Mutex::new(lock_file),
            closed: AtomicBool::new(false),
            packing: AtomicBool::new(false),
            open_report: report,
            listeners: Listeners::new(),
            path,
        })
    }

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
        match self.locate(oid) {
            Ok((file, pos, end)) => Ok(Some(self.reader(&file, end).data_header(pos)?.serial)),
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

    /// With `p`'s objects locked: checks serials and computes the records
    /// (undo's backpointers included) that `finish` will write.
    fn prepare(&self, p: &Pending) -> Result<Prepared> {
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let index_pos = |oid: Oid| self.snap.read().index.get(oid.0);

        // Serials: stores and deletions (all conflicts are reported
        // together), then read checks. A store of an oid that has no record
        // yet is not checked, as in Python.
        let mut conflicts = Vec::new();
        for w in &p.writes {
            let (oid, expected) = match w {
                PendingWrite::Store { oid, expected, .. }
                | PendingWrite::Delete { oid, expected } => (*oid, *expected),
                PendingWrite::Restore { .. } => continue,
            };
            if let Some(pos) = index_pos(oid) {
                let committed = reader.data_header(pos)?.serial;
                if committed != expected {
                    conflicts.push(ConflictError {
                        oid,
                        committed,
                        expected,
                        read_conflict: false,
                    });
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(StorageError::from_conflicts(conflicts));
        }
        for &(oid, expected) in &p.checks {
            let committed = match index_pos(oid) {
                Some(pos) => reader.data_header(pos)?.serial,
                None => Tid::ZERO,
            };
            if committed != expected {
                return Err(ConflictError {
                    oid,
                    committed,
                    expected,
                    read_conflict: true,
                }
                .into());
            }
        }

        // Records in file order. In-transaction positions are not known
        // yet: undo compares against the records it writes itself through
        // `undo_written`, with a position no file record can have.
        let mut records: Vec<(Oid, commit::Payload)> = Vec::with_capacity(p.writes.len());
        const UNWRITTEN: u64 = u64::MAX;
        // Positions written by this transaction, which undo records must
        // treat as current.
        let mut written: HashMap<Oid, u64> = HashMap::new();
        for w in &p.writes {
            let oid = w.oid();
            let prev = index_pos(oid).unwrap_or(0);
            let payload = match w {
                PendingWrite::Store { data, .. } => commit::Payload::Data(data.clone()),
                PendingWrite::Delete { .. } => commit::Payload::Back(0),
                PendingWrite::Restore {
                    data: Some(data), ..
                } => commit::Payload::Data(data.clone()),
                PendingWrite::Restore {
                    data: None,
                    prev_txn,
                    ..
                } => {
                    // Point at this object's record of `prev_txn`, if the
                    // copy has it; otherwise the revision is a deletion.
                    let back = match prev_txn {
                        Some(t) => {
                            Self::record_of_transaction(&reader, prev, oid, *t)?.unwrap_or(0)
                        }
                        None => 0,
                    };
                    commit::Payload::Back(back)
                }
            };
            records.push((oid, payload));
            written.insert(oid, UNWRITTEN);
        }
        let mut problems = Vec::new();
        // When one transaction undoes several, a later undo must see the
        // record an earlier one wrote as the current one; those records are
        // not in the file yet, so they are remembered here.
        let mut undo_written: HashMap<Oid, CurrentRecord> = HashMap::new();
        for undo_tid in &p.undos {
            let Some((utpos, uh)) = Self::find_transaction(&reader, *undo_tid)? else {
                problems.push("Invalid undo transaction id".to_string());
                continue;
            };
            if uh.status != STATUS_COMMITTED {
                problems.push("non-undoable transaction".to_string());
                continue;
            }
            // A failure is forgiven when a later record of the same object
            // in the undone transaction can be undone (Python's "second
            // chance": the later record is the one that counts).
            let mut failures: Vec<(Oid, String)> = Vec::new();
            for r in Self::transaction_records(&reader, utpos, &uh)? {
                let oid = r.header.oid;
                failures.retain(|(o, _)| *o != oid);
                if written.contains_key(&oid) && !undo_written.contains_key(&oid) {
                    problems.push(format!(
                        "object {oid} is both stored and undone in one transaction"
                    ));
                    continue;
                }
                let cur = match undo_written.get(&oid) {
                    Some(c) => c.clone(),
                    None => match index_pos(oid) {
                        Some(cpos) => CurrentRecord::read(&reader, cpos, oid)?,
                        None => CurrentRecord {
                            pos: 0,
                            data_ptr: None,
                            data: None,
                        },
                    },
                };
                let undone_data = reader.resolve(r.clone())?.map(|(d, _)| d);
                let copyable = cur.pos == r.pos
                    || cur.data_ptr == Some(r.pos)
                    || (undone_data.is_some() && undone_data == cur.data);
                if !copyable {
                    failures.push((oid, if r.header.prev == 0 {
                        format!("Can't undo an add transaction followed by conflicting transactions (object {oid})")
                    } else {
                        format!("Some data were modified by a later transaction (object {oid})")
                    }));
                    continue;
                }
                let back = r.header.prev;
                records.push((oid, commit::Payload::Back(back)));
                let pos = UNWRITTEN;
                let data = match back {
                    0 => None,
                    back => reader
                        .resolve(reader.record(back, Some(oid))?)?
                        .map(|(d, _)| d),
                };
                let data_ptr = (back > 0).then_some(back);
                undo_written.insert(
                    oid,
                    CurrentRecord {
                        pos,
                        data_ptr,
                        data,
                    },
                );
                written.insert(oid, pos);
            }
            problems.extend(failures.into_iter().map(|(_, why)| why));
        }
        if !problems.is_empty() {
            return Err(StorageError::Undo(problems));
        }

        Ok(Prepared {
            meta: p.meta.clone(),
            records,
        })
    }

    /// Writes a batch of voted transactions at the end of the file, each
    /// with status `'c'`, then flips their statuses, makes it all durable
    /// with one `fdatasync`, publishes it, reports it to the listeners, and
    /// fills every finisher's slot. Tids are chosen here, in batch order.
    fn write_batch(&self, batch: &[(Arc<Prepared>, Arc<Slot>)]) {
        if let Err(e) = self.check_writable() {
            let why = e.to_string();
            for (_, slot) in batch {
                slot.set(Err(StorageError::Transaction(why.clone())));
            }
            return;
        }
        let (file, start, mut last_tid) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end, s.last_tid)
        };
        let mut buf: Vec<u8> = Vec::new();
        // oid -> position of its record in an earlier transaction of this
        // batch.
        let mut in_batch: HashMap<u64, u64> = HashMap::new();
        let mut written: Vec<Written> = Vec::new();
        let mut clock = self.clock.lock();
        clock.observe(last_tid);
        for (i, (prepared, slot)) in batch.iter().enumerate() {
            let tid = match prepared.meta.tid {
                Some(t) if t <= last_tid => {
                    slot.set(Err(StorageError::Transaction(format!(
                        "tid {t} is not later than the last transaction {last_tid}"
                    ))));
                    continue;
                }
                Some(t) => {
                    clock.observe(t);
                    t
                }
                None => clock.next_tid(),
            };
            last_tid = tid;
            let tpos = start + buf.len() as u64;
            let m = &prepared.meta;
            let mut b = TxnBuilder::new(
                tpos,
                tid,
                STATUS_CHECKPOINT,
                &m.user,
                &m.description,
                &m.extension,
            );
            let mut positions = Vec::with_capacity(prepared.records.len());
            {
                let snap = self.snap.read();
                for (oid, payload) in &prepared.records {
                    let prev = in_batch
                        .get(&oid.0)
                        .copied()
                        .or_else(|| snap.index.get(oid.0))
                        .unwrap_or(0);
                    let pos = match payload {
                        commit::Payload::Data(d) => b.push(*oid, tid, prev, &Payload::Data(d)),
                        commit::Payload::Back(back) => {
                            b.push(*oid, tid, prev, &Payload::Back(*back))
                        }
                    };
                    positions.push((oid.0, pos));
                }
            }
            buf.extend_from_slice(&b.finish());
            // `prev` points at the object's record in an earlier
            // transaction, never at one of this transaction (as Python
            // writes it, and as undo of such a transaction expects).
            in_batch.extend(positions.iter().copied());
            written.push(Written {
                slot: i,
                tid,
                tpos,
                positions,
            });
        }
        drop(clock);
        let end = start + buf.len() as u64;
        let durable = file.write_all_at(&buf, start).and_then(|()| {
            // The statuses flip only once every byte is in place, and the
            // one fsync covers them all.
            for w in &written {
                file.write_all_at(&[STATUS_COMMITTED], w.tpos + TXN_STATUS as u64)?;
            }
            file.sync_data()
        });
        if let Err(e) = durable {
            // Cut the batch back off; if even that fails, nobody knows what
            // the tail holds, so refuse writes from now on.
            match file.set_len(start).and_then(|()| file.sync_data()) {
                Ok(()) => {
                    tracing::error!(path = %self.path.display(), "a commit failed and was cut off: {e}")
                }
                Err(e2) => self.poison(format!(
                    "a commit failed ({e}) and cutting it off failed ({e2})"
                )),
            }
            for w in &written {
                batch[w.slot].1.set(Err(StorageError::io(
                    format!("{}: writing a transaction at {start}", self.path.display()),
                    std::io::Error::new(e.kind(), e.to_string()),
                )));
            }
            return;
        }
        {
            let mut snap = self.snap.write();
            for w in &written {
                for (oid, pos) in &w.positions {
                    snap.index.insert(*oid, *pos);
                }
                snap.last_tid = w.tid;
            }
            snap.end = end;
        }
        // Loads see the batch now, and nobody has been answered yet. The
        // commit queue runs one `write_batch` at a time, each batch's tids
        // after the previous batch's, and `written` is in tid order: so the
        // reports come out in tid order, each before its `finish` returns.
        if !self.listeners.is_empty() {
            for w in &written {
                let mut oids: Vec<Oid> = w.positions.iter().map(|&(oid, _)| Oid(oid)).collect();
                // A transaction may hold several records of one oid.
                oids.sort_unstable();
                oids.dedup();
                self.listeners.committed(w.tid, &oids);
            }
        }
        for w in written {
            batch[w.slot].1.set(Ok(w.tid));
        }
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

/// Takes `Data.fs.lock` with `flock`, as zc.lockfile does, so Python and
/// Rust processes exclude each other.
fn take_lock(path: &Path) -> Result<File> {
    let lock_path = index_file::sibling(path, ".lock");
    let mut f = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StorageError::io(format!("{}: open", lock_path.display()), e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StorageError::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(StorageError::io(
                format!("{}: lock", lock_path.display()),
                e,
            ));
        }
    }
    // zc.lockfile writes " <pid>\n"; a diagnostic only.
    let _ = f.set_len(0);
    let _ = f.write_all(format!(" {}\n", std::process::id()).as_bytes());
    let _ = f.flush();
    Ok(f)
}

/// Copies `[pos, size)` to the first free `Data.fs.trN`.
fn save_tail(file: &File, path: &Path, pos: u64, size: u64) -> Result<PathBuf> {
    let mut n = 0;
    let target = loop {
        let candidate = index_file::sibling(path, &format!(".tr{n}"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    let mut buf = vec![0u8; (size - pos) as usize];
    file.read_exact_at(&mut buf, pos)
        .map_err(|e| StorageError::io(format!("{}: read the damaged tail", path.display()), e))?;
    let mut out = File::create(&target)
        .map_err(|e| StorageError::io(format!("{}: create", target.display()), e))?;
    out.write_all(&buf)
        .and_then(|()| out.sync_all())
        .map_err(|e| StorageError::io(format!("{}: write", target.display()), e))?;
    Ok(target)
}

/// Loads `Data.fs.index` and checks it against the file as Python's
/// `_check_sanity` does. `Ok(None)`: no saved index. `Err`: unusable.
fn load_saved_index(
    file: &File,
    path: &Path,
    size: u64,
) -> std::result::Result<Option<(u64, OidIndex, Tid)>, String> {
    let bytes = match fs::read(index_file::index_path(path)) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    let (end, index) = index_file::decode(&bytes).map_err(|u| u.0)?;
    if end < 4 || end > size {
        return Err(format!("it covers up to {end}, the file has {size} bytes"));
    }
    if end == 4 {
        return Ok(Some((end, index, Tid::ZERO)));
    }
    let reader = Reader { file, path, end };
    let err = |e: StorageError| e.to_string();
    // The transaction just before `end` must be whole, and the last few
    // records of the last non-empty transaction must be where the index
    // says.
    let mut tend = end;
    let mut last_tid = None;
    while tend > 4 {
        let tlen = reader.u64_at(tend - 8, "length").map_err(err)?;
        let tpos = tend
            .checked_sub(8 + tlen)
            .filter(|p| *p >= 4)
            .ok_or("bad trailing length")?;
        let h = reader.txn_header(tpos).map_err(err)?;
        if h.tlen != tlen || ![STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            return Err(format!("no whole transaction ends at {tend}"));
        }
        last_tid.get_or_insert(h.tid);
        if h.status == STATUS_UNDONE || h.tlen == h.header_len() {
            tend = tpos;
            continue;
        }
        let records = FileStorage::transaction_records(&reader, tpos, &h).map_err(err)?;
        for r in records.iter().rev().take(5) {
            // A later record of the same oid in this transaction wins.
            let newest = records
                .iter()
                .rfind(|x| x.header.oid == r.header.oid)
                .map(|x| x.pos);
            if index.get(r.header.oid.0) != newest {
                return Err(format!(
                    "the entry of oid {} does not match the file",
                    r.header.oid
                ));
            }
        }
        break;
    }
    Ok(Some((end, index, last_tid.unwrap_or(Tid::ZERO))))
}

impl Storage for FileStorage {
    fn name(&self) -> String {
        self.path.display().to_string()
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
        if let Some(committed) = self.committed_serial(oid)? {
            check_serial(oid, committed, expected, false)?;
        }
        let write = PendingWrite::Store {
            oid,
            expected,
            data,
        };
        self.add_write(txn, "store", write)
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_writable()?;
        self.pending(txn)?;
        let committed = self
            .committed_serial(oid)?
            .ok_or_else(|| StorageError::pos_key(oid))?;
        check_serial(oid, committed, expected, false)?;
        self.add_write(txn, "delete", PendingWrite::Delete { oid, expected })
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

/// Walks transactions forward over a snapshot of the file.
#[derive(Debug)]
struct FileIterator {
    file: Arc<File>,
    path: PathBuf,
    end: u64,
    pos: u64,
    start: Option<Tid>,
    stop: Option<Tid>,
    done: bool,
}

impl FileIterator {
    fn next_transaction(&mut self) -> Result<Option<TransactionRecord>> {
        let reader = Reader {
            file: &self.file,
            path: &self.path,
            end: self.end,
        };
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let tpos = self.pos;
            let h = reader.txn_header(tpos)?;
            if h.status == STATUS_CHECKPOINT {
                return Ok(None);
            }
            self.pos = h.next_pos(tpos);
            if self.stop.is_some_and(|s| h.tid > s) {
                return Ok(None);
            }
            if self.start.is_some_and(|s| h.tid < s) {
                continue;
            }
            let (user, description, extension) = FileStorage::read_meta(&reader, tpos, &h)?;
            let status = match h.status {
                STATUS_PACKED => TxnStatus::Packed,
                STATUS_UNDONE => TxnStatus::Undone,
                _ => TxnStatus::Committed,
            };
            let mut records = Vec::new();
            for r in FileStorage::transaction_records(&reader, tpos, &h)? {
                let oid = r.header.oid;
                let data_txn = match r.payload {
                    RecordPayload::Back(b) if b > 0 => Some(reader.data_header(b)?.serial),
                    _ => None,
                };
                let data = reader.resolve(r)?.map(|(d, _)| d);
                records.push(DataRecord {
                    oid,
                    tid: h.tid,
                    data,
                    data_txn,
                });
            }
            return Ok(Some(TransactionRecord {
                tid: h.tid,
                status,
                user,
                description,
                extension,
                records,
            }));
        }
    }
}

impl Iterator for FileIterator {
    type Item = Result<TransactionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_transaction() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
