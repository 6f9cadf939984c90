//! `MemoryStorage`: the [`Storage`] semantics of FileStorage, kept in memory.
//!
//! It exists so that everything above the storage layer (the ZEO server,
//! the persistence layer, the conformance suite itself) can be tested
//! without files, and so that [`DemoStorage`](crate::demo::DemoStorage) has
//! a writable overlay: over a layer below ([`Below`]: three questions,
//! answered by `demo/below.rs` for the base), whose revisions count as this
//! storage's predecessors for serial checks, undo and pack. It owns:
//!
//! - the committed state: per oid, its revisions in tid order (oldest first
//!   in the vector, so lookups walk it from the end, newest first), and the
//!   transactions (tid, status, metadata, oids written) in tid order;
//! - the open transactions, each buffering its operations until `vote`;
//! - the commit lock (who has voted and not yet finished or aborted), the
//!   tid clock and the oid allocator.
//!
//! Semantics follow `docs/spec/filestorage-format.md`: `loadBefore` §5.4,
//! history / undo log / iterator §5.5, commit §8, undo §12, pack §13. A
//! revision written by undo reuses an earlier revision's data the way a
//! FileStorage backpointer does: it carries `data_txn` = the tid of the
//! revision it points at (one hop, as `FileIterator` reports it), its
//! history size is 0, and in memory it simply shares the data (`Arc`).
//!
//! Choices where the spec leaves room, made to match FileStorage:
//!
//! - a store of an oid that has never had a record is not checked (Python
//!   passes `z64`, but any serial is accepted); one whose current revision
//!   is a deletion must be based on the deletion's tid;
//! - `check_current_serial` of an oid without a record compares with
//!   `Tid::ZERO`;
//! - undo may copy when the current data are byte-equal to the undone
//!   data (§12); each failing record gives a message
//!   `"object <oid>: <Python's UndoError text>"`;
//! - a pack that would free nothing changes nothing, statuses included, as
//!   FileStorage leaves the file alone then; the effective pack time is at
//!   most the last tid when the pack starts;
//! - after a pack, revisions before the pack time other than the newest
//!   kept one are kept only as data for later undo revisions ("detached"):
//!   the iterator shows them, `load_before`, `load_serial` and `history`
//!   do not, exactly as FileStorage's records with `prev = 0` behave.
//!
//! Locking: the committed state sits behind one `RwLock` that writers hold
//! only to publish a finished transaction or to apply a computed pack, so a
//! reader never waits longer than those map updates. Votes are serialised by
//! the FIFO commit lock (`crate::commit_lock`), which is a flag rather than
//! a held guard: no state lock is held while a vote waits for it. Lock order, where several are taken:
//! commit lock, then one transaction's mutex, then the state lock.
//!
//! Listeners ([`crate::listeners`]) are told of a transaction by its `finish`,
//! after the state lock is released (so loads see it) and before the commit
//! lock is: the commit lock serialises vote-to-finish, and tids are chosen at
//! vote, so reports come out in tid order.
//!
//! Pieces: this file holds the committed state, the struct, the serial checks
//! and a thin `impl Storage`; `txn.rs` buffers a transaction and runs its
//! two-phase commit, `reads.rs` answers loads, history, the undo log and the
//! iterator, `undo.rs` works out what an undo writes, and `pack.rs` packs.

mod pack;
mod reads;
mod txn;
mod undo;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::commit_lock::CommitLock;
use crate::demo::below::Below;
use crate::error::{ConflictError, Result, StorageError};
use crate::ids::{Oid, Tid, TidClock};
use crate::limits;
use crate::listeners::{InvalidationListener, Listeners};
use crate::storage::{
    HistoryEntry, Revision, Storage, TransactionIter, TransactionMeta, TxnHandle, TxnStatus,
    UndoLogEntry,
};
use txn::Pending;

/// Bytes of a FileStorage transaction header and data record header; used
/// only to report sizes the way FileStorage would (`size`, `undo_log`).
const TXN_HEADER_LEN: u64 = 23;
const DATA_HEADER_LEN: u64 = 42;

/// One revision of one object.
#[derive(Debug, Clone)]
struct Rev {
    tid: Tid,
    /// The record, or `None` for a revision that deletes the object.
    data: Option<Arc<Vec<u8>>>,
    /// For a revision made by undo: the tid of the revision whose data it
    /// reuses (FileStorage's backpointer target). Its `data` is a shared
    /// copy of that revision's data, so reads never follow a chain.
    data_txn: Option<Tid>,
    /// Kept by pack only as the data source of a later undo revision. Like
    /// a FileStorage record before the pack time that no `prev` chain
    /// reaches, it is seen by the iterator (in its transaction) but not by
    /// `load_before`, `load_serial`, `history` or undo. Detached revisions
    /// are always the oldest of their oid (a prefix of its vector).
    detached: bool,
}

impl Rev {
    /// A revision of a transaction being voted; the tid is set at the end.
    fn pending(data: Option<Arc<Vec<u8>>>, data_txn: Option<Tid>) -> Rev {
        Rev {
            tid: Tid::ZERO,
            data,
            data_txn,
            detached: false,
        }
    }

    /// What FileStorage would report as this record's `plen`: 0 for a
    /// backpointer or a deletion.
    fn stored_len(&self) -> u64 {
        match (&self.data, self.data_txn) {
            (Some(d), None) => d.len() as u64,
            _ => 0,
        }
    }

    /// Length of the equivalent FileStorage data record.
    fn record_len(&self) -> u64 {
        let plen = self.stored_len();
        DATA_HEADER_LEN + if plen == 0 { 8 } else { plen }
    }
}

/// One committed transaction.
#[derive(Debug, Clone)]
struct Txn {
    status: TxnStatus,
    user: Vec<u8>,
    description: Vec<u8>,
    extension: Vec<u8>,
    /// The oids this transaction wrote, each once, in the order written.
    oids: Vec<Oid>,
}

/// Everything committed. Invariant: every revision's tid names a
/// transaction in `txns` whose `oids` list the revision's oid, and the other
/// way round.
#[derive(Debug, Clone, Default)]
struct State {
    /// Revisions per oid, ascending tid.
    objects: HashMap<Oid, Vec<Rev>>,
    txns: BTreeMap<Tid, Txn>,
    /// The last committed tid, or the floor given at creation (an overlay
    /// starts after its base).
    last_tid: Tid,
    /// FileStorage-equivalent size in bytes, kept up to date.
    size: u64,
}

/// The revisions of an oid that its history chain reaches: all but the
/// detached prefix.
fn visible(revs: &[Rev]) -> &[Rev] {
    revs.get(revs.partition_point(|r| r.detached)..)
        .unwrap_or_default()
}

impl State {
    /// The oid's revisions on its history chain, oldest first.
    fn chain(&self, oid: Oid) -> Option<&[Rev]> {
        self.objects.get(&oid).map(|revs| visible(revs))
    }

    /// The revision `tid` wrote of `oid`, detached or not (for the
    /// iterator and sizes).
    fn revision(&self, oid: Oid, tid: Tid) -> Option<&Rev> {
        let revs = self.objects.get(&oid)?;
        revs.binary_search_by(|r| r.tid.cmp(&tid))
            .ok()
            .and_then(|i| revs.get(i))
    }

    /// Length of the equivalent FileStorage transaction record (`tlen`).
    fn txn_len(&self, tid: Tid, txn: &Txn) -> u64 {
        let records: u64 = txn
            .oids
            .iter()
            .filter_map(|oid| self.revision(*oid, tid))
            .map(Rev::record_len)
            .sum();
        TXN_HEADER_LEN
            + txn.user.len() as u64
            + txn.description.len() as u64
            + txn.extension.len() as u64
            + records
    }

    /// The file size FileStorage would have: magic, then each transaction
    /// with its trailing length.
    fn compute_size(&self) -> u64 {
        4 + self
            .txns
            .iter()
            .map(|(tid, txn)| self.txn_len(*tid, txn) + 8)
            .sum::<u64>()
    }
}

/// ZODB storage semantics in memory. See the module documentation.
pub struct MemoryStorage {
    name: String,
    state: RwLock<State>,
    pending: Mutex<HashMap<u64, Arc<Mutex<Pending>>>>,
    next_handle: AtomicU64,
    /// The handle id holding the commit lock (voted, not yet finished).
    commit_lock: CommitLock,
    clock: Mutex<TidClock>,
    /// The next oid `new_oids` hands out; never 0 (the root is not
    /// allocated, it is stored by whoever creates the database).
    next_oid: Mutex<u64>,
    /// Serialises packs.
    pack_lock: Mutex<()>,
    closed: AtomicBool,
    /// The layer this one overlays (DemoStorage's base), never written; it
    /// is consulted for the committed serial of an oid this storage has no
    /// revision of, for the revision an undo returns to when the undone
    /// revision is this storage's first, for reachability when packing, and
    /// for the tid floor.
    lower: Below,
    /// Told of each commit by `finish` (see the module documentation).
    listeners: Listeners,
}

impl std::fmt::Debug for MemoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryStorage")
            .field("name", &self.name)
            .field("last_tid", &self.state.read().last_tid)
            .field("closed", &self.closed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl MemoryStorage {
    /// An empty storage.
    pub fn new(name: impl Into<String>) -> MemoryStorage {
        MemoryStorage::build(name.into(), Below::nothing())
    }

    /// An empty overlay over `lower` (see the `lower` field): its tids come
    /// after the lower storage's last one.
    pub(crate) fn overlay(name: impl Into<String>, lower: Below) -> MemoryStorage {
        MemoryStorage::build(name.into(), lower)
    }

    fn build(name: String, lower: Below) -> MemoryStorage {
        let floor = lower.last_transaction();
        MemoryStorage {
            name,
            state: RwLock::new(State {
                last_tid: floor,
                size: 4,
                ..State::default()
            }),
            pending: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            commit_lock: CommitLock::new(),
            clock: Mutex::new(TidClock::new(floor)),
            next_oid: Mutex::new(1),
            pack_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            lower,
            listeners: Listeners::new(),
        }
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    // ----- pieces DemoStorage builds on ---------------------------------

    /// The tid of this storage's oldest revision of `oid`, if it has any.
    pub(crate) fn first_revision_tid(&self, oid: Oid) -> Option<Tid> {
        self.state
            .read()
            .chain(oid)
            .and_then(|revs| revs.first())
            .map(|r| r.tid)
    }

    /// The oids this storage has revisions of.
    pub(crate) fn oids(&self) -> Vec<Oid> {
        self.state.read().objects.keys().copied().collect()
    }

    /// The oid `new_oids` would hand out next.
    pub(crate) fn next_oid_hint(&self) -> u64 {
        *self.next_oid.lock()
    }

    /// Whether this storage has its own revisions of `oid`.
    pub(crate) fn has_oid(&self, oid: Oid) -> bool {
        self.state.read().objects.contains_key(&oid)
    }

    // ----- serials and the lower storage --------------------------------

    /// The serial a store of `oid` must be based on: the tid of the current
    /// revision (a deletion included), `None` when the object has never
    /// had a record (then, as in FileStorage, no check is made).
    fn committed_serial(&self, oid: Oid) -> Result<Option<Tid>> {
        if let Some(rev) = self.state.read().chain(oid).and_then(|revs| revs.last()) {
            return Ok(Some(rev.tid));
        }
        self.lower.serial(oid)
    }

    fn check_serial(&self, oid: Oid, expected: Tid) -> Result<()> {
        match self.committed_serial(oid)? {
            Some(committed) if committed != expected => {
                Err(conflict(oid, committed, expected, false))
            }
            _ => Ok(()),
        }
    }

    fn check_read_serial(&self, oid: Oid, expected: Tid) -> Result<()> {
        let committed = self.committed_serial(oid)?.unwrap_or(Tid::ZERO);
        if committed == expected {
            Ok(())
        } else {
            Err(conflict(oid, committed, expected, true))
        }
    }

    fn check_delete(&self, oid: Oid, expected: Tid) -> Result<()> {
        match self.committed_serial(oid)? {
            None => Err(StorageError::PosKey {
                oid,
                detail: Some("cannot delete an object that has no record".into()),
            }),
            Some(committed) if committed != expected => {
                Err(conflict(oid, committed, expected, false))
            }
            Some(_) => Ok(()),
        }
    }
}

fn unknown_handle(txn: &TxnHandle) -> StorageError {
    StorageError::Transaction(format!(
        "{txn:?} is not an open transaction of this storage"
    ))
}

fn conflict(oid: Oid, committed: Tid, expected: Tid, read_conflict: bool) -> StorageError {
    StorageError::Conflict(ConflictError {
        oid,
        committed,
        expected,
        read_conflict,
    })
}

fn check_meta_field(what: &str, value: &[u8]) -> Result<()> {
    if value.len() > limits::TXN_META_FIELD_SIZE_MAX {
        return Err(StorageError::Limit(format!(
            "transaction {what} is {} bytes; at most {} are allowed",
            value.len(),
            limits::TXN_META_FIELD_SIZE_MAX
        )));
    }
    Ok(())
}

impl Storage for MemoryStorage {
    fn name(&self) -> String {
        self.name.clone()
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn last_transaction(&self) -> Tid {
        self.state.read().last_tid
    }

    /// Oids with any revision, deleted ones included, as FileStorage counts
    /// its index entries.
    fn len(&self) -> usize {
        self.state.read().objects.len()
    }

    fn size(&self) -> u64 {
        self.state.read().size
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        self.read_before(oid, before)
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.read_serial(oid, serial)
    }

    fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        self.check_open()?;
        if count > limits::NEW_OIDS_COUNT_MAX {
            return Err(StorageError::Limit(format!(
                "{count} new oids asked for; at most {} per call",
                limits::NEW_OIDS_COUNT_MAX
            )));
        }
        let mut next = self.next_oid.lock();
        let first = *next;
        let end = first
            .checked_add(count as u64)
            .ok_or_else(|| StorageError::Limit("the oid space is exhausted".into()))?;
        *next = end;
        Ok((first..end).map(Oid).collect())
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

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_txn(txn, oid, expected)
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.undo_txn(txn, tid)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.vote_txn(txn)
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
        self.read_iterator(start, stop)
    }

    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.pack_state(pack_time, gc)
    }

    fn close(&self) -> Result<()> {
        self.closed.store(true, Ordering::Release);
        // Wake votes waiting for the commit lock so they can fail.
        self.commit_lock.close();
        Ok(())
    }

    fn add_listener(&self, listener: std::sync::Weak<dyn InvalidationListener>) {
        self.listeners.add(listener);
    }
}
