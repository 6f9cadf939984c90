//! `MemoryStorage`: the [`Storage`] semantics of FileStorage, kept in memory.
//!
//! It exists so that everything above the storage layer (the ZEO server,
//! the persistence layer, the conformance suite itself) can be tested
//! without files, and so that [`DemoStorage`](crate::demo::DemoStorage) has
//! a writable overlay: over a layer below ([`Below`]: three questions,
//! answered by `demo.rs` for its base), whose revisions count as this
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use parking_lot::{Mutex, RwLock};

use crate::commit_lock::CommitLock;

use crate::error::{ConflictError, Result, StorageError};
use crate::gc::reachable_from_root;
use crate::ids::{Oid, Tid, TidClock};
use crate::limits;
use crate::listeners::{InvalidationListener, Listeners};
use crate::storage::{
    DataRecord, HistoryEntry, Revision, Storage, TransactionIter, TransactionMeta,
    TransactionRecord, TxnHandle, TxnStatus, UndoLogEntry,
};

/// Undo messages, the same text Python's `UndoError` carries.
const UNDO_INVALID_TID: &str = "Invalid undo transaction id";
const UNDO_NOT_UNDOABLE: &str = "non-undoable transaction";
const UNDO_MODIFIED_LATER: &str = "Some data were modified by a later transaction";
const UNDO_ADD_CONFLICT: &str =
    "Can't undo an add transaction followed by conflicting transactions";

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

/// One buffered operation of an open transaction, replayed at vote.
#[derive(Debug)]
enum Op {
    Store {
        oid: Oid,
        expected: Tid,
        data: Arc<Vec<u8>>,
    },
    Delete {
        oid: Oid,
        expected: Tid,
    },
    Check {
        oid: Oid,
        expected: Tid,
    },
    Undo(Tid),
}

/// What a successful vote computed: the tid and the revisions to publish.
#[derive(Debug)]
struct Voted {
    tid: Tid,
    records: Vec<(Oid, Rev)>,
}

#[derive(Debug)]
struct Pending {
    meta: TransactionMeta,
    ops: Vec<Op>,
    voted: Option<Voted>,
    /// Set by abort and finish; a vote that was waiting then gives up.
    done: bool,
}

/// The revisions one transaction writes, in first-written order; a later
/// write of the same oid replaces the earlier one.
#[derive(Debug, Default)]
struct TxnWrites {
    order: Vec<Oid>,
    revs: HashMap<Oid, Rev>,
}

impl TxnWrites {
    fn put(&mut self, oid: Oid, rev: Rev) {
        if self.revs.insert(oid, rev).is_none() {
            self.order.push(oid);
        }
    }

    fn into_records(mut self, tid: Tid) -> Vec<(Oid, Rev)> {
        self.order
            .into_iter()
            .filter_map(|oid| {
                self.revs.remove(&oid).map(|mut rev| {
                    rev.tid = tid;
                    (oid, rev)
                })
            })
            .collect()
    }
}

/// Why one record of an undo cannot be undone.
enum UndoFailure {
    /// A later transaction changed the object.
    Modified(Oid),
    /// The same, and the undone revision is the first this storage has of
    /// the object: a creation unless the lower storage had the object.
    FirstHere(Oid),
}

/// One record of an undo, before the lower storage (if any) is consulted.
enum UndoStep {
    Ready(Oid, Rev),
    /// The undone revision is the oid's first here; the revision to return
    /// to is the lower storage's one before `tid`, or none (a creation).
    FromLower(Oid, Tid),
}

/// What a `MemoryStorage` used as an overlay asks of the layer below it.
/// The layer is DemoStorage's base; how a base answers (through which
/// `Storage` calls, with which errors meaning "none") is `demo.rs`'s
/// business. This storage only needs, for an oid it has no revision of (or
/// whose first revision here an undo removes), what was there before it.
pub(crate) trait Below: Send + Sync {
    /// The tid of the current revision below (a deletion included), `None`
    /// when the object never had one there.
    fn serial(&self, oid: Oid) -> Result<Option<Tid>>;

    /// The revision below current before `before`, `None` when there is
    /// none (absent, deleted, or not created yet then).
    fn revision_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>>;

    /// The newest tid below: this storage's tids come after it.
    fn last_transaction(&self) -> Tid;
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
    lower: Option<Box<dyn Below>>,
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
        MemoryStorage::build(name.into(), None)
    }

    /// An empty overlay over `lower` (see the `lower` field): its tids come
    /// after the lower storage's last one.
    pub(crate) fn overlay(name: impl Into<String>, lower: Box<dyn Below>) -> MemoryStorage {
        MemoryStorage::build(name.into(), Some(lower))
    }

    fn build(name: String, lower: Option<Box<dyn Below>>) -> MemoryStorage {
        let floor = lower.as_ref().map_or(Tid::ZERO, |l| l.last_transaction());
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

    fn pending(&self, txn: &TxnHandle) -> Result<Arc<Mutex<Pending>>> {
        self.pending
            .lock()
            .get(&txn.id())
            .cloned()
            .ok_or_else(|| unknown_handle(txn))
    }

    /// Runs `f` on an open, not yet voted transaction.
    fn with_unvoted<T>(&self, txn: &TxnHandle, f: impl FnOnce(&mut Pending) -> T) -> Result<T> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let mut p = pending.lock();
        if p.done {
            return Err(unknown_handle(txn));
        }
        if p.voted.is_some() {
            return Err(StorageError::Transaction(format!(
                "{txn:?} has already voted; no more changes"
            )));
        }
        Ok(f(&mut p))
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
        self.lower_serial(oid)
    }

    fn lower_serial(&self, oid: Oid) -> Result<Option<Tid>> {
        match &self.lower {
            Some(lower) => lower.serial(oid),
            None => Ok(None),
        }
    }

    /// The lower layer's revision current before `before` (see [`Below`]).
    fn lower_revision_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        match &self.lower {
            Some(lower) => lower.revision_before(oid, before),
            None => Ok(None),
        }
    }

    fn lower_has(&self, oid: Oid) -> Result<bool> {
        Ok(self.lower_serial(oid)?.is_some())
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

    // ----- undo ---------------------------------------------------------

    /// The revisions undoing transaction `tid` writes, given what the
    /// undoing transaction has written so far (§12): for each record of
    /// the undone transaction, if the object's current revision is the
    /// undone one, reuses its data, or has byte-equal data, the new
    /// revision returns to the revision before the undone one (or deletes
    /// the object when the undone one created it); otherwise the undo
    /// fails. Errors of all records are collected.
    fn undo_records(&self, tid: Tid, written: &TxnWrites) -> Result<Vec<(Oid, Rev)>> {
        let mut steps = Vec::new();
        let mut failures = Vec::new();
        {
            let st = self.state.read();
            let Some(txn) = st.txns.get(&tid) else {
                return Err(StorageError::Undo(vec![UNDO_INVALID_TID.to_string()]));
            };
            if txn.status != TxnStatus::Committed {
                return Err(StorageError::Undo(vec![UNDO_NOT_UNDOABLE.to_string()]));
            }
            for &oid in &txn.oids {
                let revs = st.chain(oid).unwrap_or_default();
                let Some(undone) = revs
                    .binary_search_by(|r| r.tid.cmp(&tid))
                    .ok()
                    .and_then(|i| revs.get(i))
                else {
                    // Revisions of a transaction that is still `Committed`
                    // are never removed, so this means a broken invariant;
                    // refuse rather than guess.
                    failures.push(UndoFailure::Modified(oid));
                    continue;
                };
                let previous = revs.iter().rev().find(|r| r.tid < tid);
                let same_data = |rev: &Rev| match (&rev.data, &undone.data) {
                    (Some(a), Some(b)) => a == b,
                    _ => false,
                };
                let copyable = match written.revs.get(&oid) {
                    Some(rev) => rev.data_txn == Some(tid) || same_data(rev),
                    None => {
                        // `revs` holds at least the undone revision.
                        let current = revs.last().unwrap_or(undone);
                        current.tid == tid || current.data_txn == Some(tid) || same_data(current)
                    }
                };
                match (copyable, previous) {
                    (true, Some(prev)) => steps.push(UndoStep::Ready(
                        oid,
                        Rev::pending(prev.data.clone(), Some(prev.tid)),
                    )),
                    (true, None) => steps.push(UndoStep::FromLower(oid, tid)),
                    (false, Some(_)) => failures.push(UndoFailure::Modified(oid)),
                    (false, None) => failures.push(UndoFailure::FirstHere(oid)),
                }
            }
        }
        // The lower storage is asked without holding the state lock.
        if !failures.is_empty() {
            let mut messages = Vec::with_capacity(failures.len());
            for failure in failures {
                let (oid, message) = match failure {
                    UndoFailure::Modified(oid) => (oid, UNDO_MODIFIED_LATER),
                    UndoFailure::FirstHere(oid) => {
                        if self.lower_revision_before(oid, tid)?.is_some() {
                            (oid, UNDO_MODIFIED_LATER)
                        } else {
                            (oid, UNDO_ADD_CONFLICT)
                        }
                    }
                };
                messages.push(format!("object {oid}: {message}"));
            }
            return Err(StorageError::Undo(messages));
        }
        steps
            .into_iter()
            .map(|step| match step {
                UndoStep::Ready(oid, rev) => Ok((oid, rev)),
                UndoStep::FromLower(oid, before) => {
                    let rev = match self.lower_revision_before(oid, before)? {
                        Some(r) => Rev::pending(Some(Arc::new(r.data)), Some(r.start)),
                        None => Rev::pending(None, None),
                    };
                    Ok((oid, rev))
                }
            })
            .collect()
    }

    // ----- two-phase commit ---------------------------------------------

    /// Waits for the commit lock and takes it for `id`.
    fn acquire_commit_lock(&self, id: u64) -> Result<()> {
        self.check_open()?;
        self.commit_lock.acquire(id, None)
    }

    /// Releases the commit lock if `id` holds it.
    fn release_commit_lock(&self, id: u64) {
        self.commit_lock.release(id);
    }

    /// Replays the transaction's operations against the committed state
    /// (the caller holds the commit lock, so nothing commits meanwhile) and
    /// chooses the tid.
    fn prepare(&self, p: &Pending) -> Result<Voted> {
        let mut writes = TxnWrites::default();
        let mut conflicts = Vec::new();
        for op in &p.ops {
            match op {
                Op::Store {
                    oid,
                    expected,
                    data,
                } => {
                    match self.check_serial(*oid, *expected) {
                        Err(StorageError::Conflict(c)) => conflicts.push(c),
                        other => other?,
                    }
                    writes.put(*oid, Rev::pending(Some(Arc::clone(data)), None));
                }
                Op::Delete { oid, expected } => {
                    self.check_delete(*oid, *expected)?;
                    writes.put(*oid, Rev::pending(None, None));
                }
                Op::Check { oid, expected } => self.check_read_serial(*oid, *expected)?,
                Op::Undo(tid) => {
                    for (oid, rev) in self.undo_records(*tid, &writes)? {
                        writes.put(oid, rev);
                    }
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(StorageError::from_conflicts(conflicts));
        }
        let mut floor = self.state.read().last_tid;
        if let Some(lower) = &self.lower {
            floor = floor.max(lower.last_transaction());
        }
        let tid = match p.meta.tid {
            Some(tid) if tid > floor => {
                self.clock.lock().observe(tid);
                tid
            }
            Some(tid) => {
                return Err(StorageError::Transaction(format!(
                    "the given tid {tid} is not later than the last transaction {floor}"
                )));
            }
            None => {
                let mut clock = self.clock.lock();
                clock.observe(floor);
                clock.next_tid()
            }
        };
        Ok(Voted {
            tid,
            records: writes.into_records(tid),
        })
    }

    // ----- pack ---------------------------------------------------------

    /// The strong references of `oid`'s revision current at `pack_tid`, or
    /// `None` when the object does not exist then. `snapshot` is the state
    /// the pack works on.
    fn refs_at(&self, snapshot: &State, oid: Oid, pack_tid: Tid) -> Result<Option<Vec<Oid>>> {
        let revs = snapshot.chain(oid).unwrap_or_default();
        let n = revs.partition_point(|r| r.tid <= pack_tid);
        if let Some(rev) = n.checked_sub(1).and_then(|i| revs.get(i)) {
            return match &rev.data {
                Some(data) => record_refs(oid, data).map(Some),
                None => Ok(None),
            };
        }
        let before = Tid(pack_tid.0.saturating_add(1));
        match self.lower_revision_before(oid, before)? {
            Some(rev) => record_refs(oid, &rev.data).map(Some),
            None => Ok(None),
        }
    }

    /// Works out which revisions at or before `pack_tid` survive (§13):
    /// the one current at `pack_tid` (with `gc`, only for objects reachable
    /// from the root), plus those that later undo revisions reuse data
    /// from. A current deletion survives only where it hides an object of
    /// the lower storage. Returns, per oid, the tids to keep.
    fn pack_plan(
        &self,
        snapshot: &State,
        pack_tid: Tid,
        gc: bool,
    ) -> Result<HashMap<Oid, HashSet<Tid>>> {
        let mut keep: HashMap<Oid, HashSet<Tid>> = HashMap::new();
        let mut current: HashMap<Oid, Tid> = HashMap::new();
        let mut extras: Vec<(Oid, Tid)> = Vec::new();
        for (&oid, revs) in &snapshot.objects {
            let chain = visible(revs);
            let n = chain.partition_point(|r| r.tid <= pack_tid);
            if let Some(rev) = n.checked_sub(1).and_then(|i| chain.get(i)) {
                if rev.data.is_some() {
                    current.insert(oid, rev.tid);
                } else if self.lower_has(oid)? {
                    keep.entry(oid).or_default().insert(rev.tid);
                }
            }
            for later in chain.iter().skip(n) {
                if let Some(target) = later.data_txn
                    && target <= pack_tid
                    && revs.binary_search_by(|r| r.tid.cmp(&target)).is_ok()
                {
                    extras.push((oid, target));
                }
            }
        }
        for &(oid, tid) in &extras {
            keep.entry(oid).or_default().insert(tid);
        }
        if !gc {
            for (oid, tid) in current {
                keep.entry(oid).or_default().insert(tid);
            }
            return Ok(keep);
        }

        // Reachability at the pack time. Revisions kept for later undo
        // revisions of reachable objects contribute their references too
        // (Python's step 2), which may make more objects reachable, hence
        // the loop; it ends because each round follows at least one more of
        // the finitely many extras.
        let mut refs_cache: HashMap<Oid, Option<Vec<Oid>>> = HashMap::new();
        let mut extra_refs: Vec<Oid> = Vec::new();
        let mut followed: HashSet<(Oid, Tid)> = HashSet::new();
        let reachable = loop {
            let reachable = reachable_from_root(|oid| {
                let refs = match refs_cache.get(&oid) {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.refs_at(snapshot, oid, pack_tid)?;
                        refs_cache.insert(oid, r.clone());
                        r
                    }
                };
                Ok(match refs {
                    Some(mut r) if oid == Oid::ROOT => {
                        r.extend_from_slice(&extra_refs);
                        Some(r)
                    }
                    other => other,
                })
            })?;
            let mut grew = false;
            for &(oid, tid) in &extras {
                if reachable.contains(&oid) && followed.insert((oid, tid)) {
                    if let Some(data) = snapshot.revision(oid, tid).and_then(|r| r.data.clone()) {
                        extra_refs.extend(record_refs(oid, &data)?);
                    }
                    grew = true;
                }
            }
            if !grew {
                break reachable;
            }
        };
        for (oid, tid) in current {
            if reachable.contains(&oid) {
                keep.entry(oid).or_default().insert(tid);
            }
        }
        Ok(keep)
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

fn record_refs(oid: Oid, data: &[u8]) -> Result<Vec<Oid>> {
    zodb_pickle::strong_references(data)
        .map(|refs| refs.into_iter().map(Oid).collect())
        .map_err(|e| StorageError::Pack(format!("cannot read the references of object {oid}: {e}")))
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
        self.check_open()?;
        let st = self.state.read();
        let Some(revs) = st.chain(oid) else {
            return Err(StorageError::pos_key(oid));
        };
        let n = revs.partition_point(|r| r.tid < before);
        let Some(rev) = n.checked_sub(1).and_then(|i| revs.get(i)) else {
            return Ok(None);
        };
        match &rev.data {
            Some(data) => Ok(Some(Revision {
                data: data.as_ref().clone(),
                start: rev.tid,
                end: revs.get(n).map(|r| r.tid),
            })),
            None => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("deleted by transaction {}", rev.tid)),
            }),
        }
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.check_open()?;
        let st = self.state.read();
        let revision = st.chain(oid).and_then(|revs| {
            revs.binary_search_by(|r| r.tid.cmp(&serial))
                .ok()
                .and_then(|i| revs.get(i))
        });
        match revision {
            Some(Rev {
                data: Some(data), ..
            }) => Ok(data.as_ref().clone()),
            Some(_) => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("revision {serial} deletes the object")),
            }),
            None => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("no revision {serial}")),
            }),
        }
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
        self.check_open()?;
        check_meta_field("user", &meta.user)?;
        check_meta_field("description", &meta.description)?;
        check_meta_field("extension", &meta.extension)?;
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            meta,
            ops: Vec::new(),
            voted: None,
            done: false,
        };
        self.pending
            .lock()
            .insert(id, Arc::new(Mutex::new(pending)));
        Ok(TxnHandle::new(id))
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        if data.len() as u64 > limits::RECORD_SIZE_MAX {
            return Err(StorageError::Limit(format!(
                "object {oid}: a record of {} bytes is over the limit of {}",
                data.len(),
                limits::RECORD_SIZE_MAX
            )));
        }
        self.with_unvoted(txn, |_| ())?;
        self.check_serial(oid, expected)?;
        {
            let mut next = self.next_oid.lock();
            if oid.0 >= *next {
                *next = oid.0.saturating_add(1);
            }
        }
        self.with_unvoted(txn, |p| {
            p.ops.push(Op::Store {
                oid,
                expected,
                data: Arc::new(data),
            });
        })
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.with_unvoted(txn, |_| ())?;
        self.check_delete(oid, expected)?;
        self.with_unvoted(txn, |p| p.ops.push(Op::Delete { oid, expected }))
    }

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.with_unvoted(txn, |_| ())?;
        self.check_read_serial(oid, expected)?;
        self.with_unvoted(txn, |p| p.ops.push(Op::Check { oid, expected }))
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let p = pending.lock();
        if p.done || p.voted.is_some() {
            return Err(StorageError::Transaction(format!(
                "{txn:?} is not open for changes"
            )));
        }
        // Check now against what this transaction has written so far; the
        // records are computed again at vote, when later commits are known.
        let mut writes = TxnWrites::default();
        for op in &p.ops {
            match op {
                Op::Store { oid, data, .. } => {
                    writes.put(*oid, Rev::pending(Some(Arc::clone(data)), None))
                }
                Op::Delete { oid, .. } => writes.put(*oid, Rev::pending(None, None)),
                Op::Check { .. } => {}
                Op::Undo(t) => {
                    for (oid, rev) in self.undo_records(*t, &writes)? {
                        writes.put(oid, rev);
                    }
                }
            }
        }
        let oids = self
            .undo_records(tid, &writes)?
            .into_iter()
            .map(|(oid, _)| oid)
            .collect();
        drop(p);
        self.with_unvoted(txn, |p| p.ops.push(Op::Undo(tid)))?;
        Ok(oids)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        {
            let p = pending.lock();
            if p.done {
                return Err(unknown_handle(txn));
            }
            if p.voted.is_some() {
                return Ok(());
            }
        }
        let id = txn.id();
        self.acquire_commit_lock(id)?;
        let mut p = pending.lock();
        if p.done {
            // Aborted while we waited; abort released what it could.
            drop(p);
            self.release_commit_lock(id);
            return Err(unknown_handle(txn));
        }
        if p.voted.is_some() {
            return Ok(());
        }
        match self.prepare(&p) {
            Ok(voted) => {
                p.voted = Some(voted);
                Ok(())
            }
            Err(e) => {
                drop(p);
                self.release_commit_lock(id);
                Err(e)
            }
        }
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let voted_already = pending.lock().voted.is_some();
        if !voted_already {
            self.vote(txn)?;
        }
        let mut p = pending.lock();
        let Some(voted) = p.voted.take() else {
            return Err(unknown_handle(txn));
        };
        let tid = voted.tid;
        // Every oid the transaction wrote, each once (the records are unique per oid).
        let reported: Option<Vec<Oid>> = (!self.listeners.is_empty())
            .then(|| voted.records.iter().map(|(oid, _)| *oid).collect());
        {
            let mut st = self.state.write();
            let txn_rec = Txn {
                status: TxnStatus::Committed,
                user: std::mem::take(&mut p.meta.user),
                description: std::mem::take(&mut p.meta.description),
                extension: std::mem::take(&mut p.meta.extension),
                oids: voted.records.iter().map(|(oid, _)| *oid).collect(),
            };
            for (oid, rev) in voted.records {
                st.objects.entry(oid).or_default().push(rev);
            }
            let added = st.txn_len(tid, &txn_rec) + 8;
            st.txns.insert(tid, txn_rec);
            st.last_tid = tid;
            st.size += added;
        }
        p.done = true;
        p.ops.clear();
        drop(p);
        self.pending.lock().remove(&txn.id());
        // Published (loads see it) and still holding the commit lock: the next
        // transaction, with a later tid, cannot be reported before this one.
        if let Some(oids) = reported {
            self.listeners.committed(tid, &oids);
        }
        self.release_commit_lock(txn.id());
        Ok(tid)
    }

    fn abort(&self, txn: &TxnHandle) {
        let removed = self.pending.lock().remove(&txn.id());
        if let Some(pending) = removed {
            let mut p = pending.lock();
            p.done = true;
            p.voted = None;
            p.ops.clear();
        }
        self.release_commit_lock(txn.id());
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        self.check_open()?;
        let st = self.state.read();
        let Some(revs) = st.chain(oid) else {
            return Err(StorageError::pos_key(oid));
        };
        let size = size.min(limits::HISTORY_SIZE_MAX);
        Ok(revs
            .iter()
            .rev()
            .take(size)
            .map(|rev| {
                let txn = st.txns.get(&rev.tid);
                HistoryEntry {
                    tid: rev.tid,
                    time: rev.tid.unix_seconds(),
                    user: txn.map(|t| t.user.clone()).unwrap_or_default(),
                    description: txn.map(|t| t.description.clone()).unwrap_or_default(),
                    extension: txn.map(|t| t.extension.clone()).unwrap_or_default(),
                    size: rev.stored_len(),
                }
            })
            .collect())
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.check_open()?;
        let st = self.state.read();
        let mut out = Vec::new();
        let mut index = 0usize;
        for (&tid, txn) in st.txns.iter().rev() {
            if index >= last {
                break;
            }
            match txn.status {
                TxnStatus::Packed => break,
                TxnStatus::Undone => continue,
                TxnStatus::Committed => {}
            }
            if index >= first {
                out.push(UndoLogEntry {
                    tid,
                    time: tid.unix_seconds(),
                    user: txn.user.clone(),
                    description: txn.description.clone(),
                    extension: txn.extension.clone(),
                    size: st.txn_len(tid, txn),
                });
            }
            index += 1;
        }
        Ok(out)
    }

    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter> {
        self.check_open()?;
        let start = start.unwrap_or(Tid::ZERO);
        let stop = stop.unwrap_or(Tid(u64::MAX));
        if start > stop {
            return Ok(Box::new(std::iter::empty()));
        }
        let st = self.state.read();
        let snapshot: Vec<Result<TransactionRecord>> = st
            .txns
            .range(start..=stop)
            .map(|(&tid, txn)| {
                let records = txn
                    .oids
                    .iter()
                    .filter_map(|&oid| {
                        st.revision(oid, tid).map(|rev| DataRecord {
                            oid,
                            tid,
                            data: rev.data.as_ref().map(|d| d.as_ref().clone()),
                            data_txn: rev.data_txn,
                        })
                    })
                    .collect();
                Ok(TransactionRecord {
                    tid,
                    status: txn.status,
                    user: txn.user.clone(),
                    description: txn.description.clone(),
                    extension: txn.extension.clone(),
                    records,
                })
            })
            .collect();
        Ok(Box::new(snapshot.into_iter()))
    }

    /// Packs a copy of the state taken at the start, then applies the
    /// result. The effective pack time is at most the last tid of that
    /// copy, so transactions committed meanwhile are all after it and pack
    /// leaves them alone, as FileStorage copies its tail unchanged.
    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.check_open()?;
        let _packing = self.pack_lock.lock();
        let snapshot = self.state.read().clone();
        let pack_tid = pack_time.min(snapshot.last_tid);
        if snapshot.txns.range(..=pack_tid).next().is_none() {
            return Ok(());
        }
        let keep = self.pack_plan(&snapshot, pack_tid, gc)?;
        let kept = |oid: Oid, tid: Tid| keep.get(&oid).is_some_and(|tids| tids.contains(&tid));

        // As FileStorage does, a pack that would free nothing changes
        // nothing (statuses stay as they were, so those transactions stay
        // undoable). Inlining a backpointer counts as a change.
        let changes = snapshot.objects.iter().any(|(&oid, revs)| {
            revs.iter()
                .take_while(|r| r.tid <= pack_tid)
                .any(|r| !kept(oid, r.tid) || r.data_txn.is_some())
        });
        if !changes {
            return Ok(());
        }

        let mut st = self.state.write();
        // An undo that finished after the snapshot may reuse the data of a
        // revision the plan drops; such revisions stay, as in the plan.
        let reused_late: HashSet<(Oid, Tid)> = st
            .objects
            .iter()
            .flat_map(|(&oid, revs)| {
                revs.iter()
                    .filter(|r| r.tid > snapshot.last_tid)
                    .filter_map(move |r| r.data_txn.map(|t| (oid, t)))
            })
            .filter(|&(_, t)| t <= pack_tid)
            .collect();
        let kept = |oid: Oid, tid: Tid| kept(oid, tid) || reused_late.contains(&(oid, tid));
        st.objects.retain(|&oid, revs| {
            revs.retain(|r| r.tid > pack_tid || kept(oid, r.tid));
            // Before the pack time every kept record holds its data, and
            // only the newest is on the history chain (FileStorage writes
            // those records with `prev = 0`; only the index or the first
            // later record points at the newest).
            let n = revs.partition_point(|r| r.tid <= pack_tid);
            for (i, rev) in revs.iter_mut().take(n).enumerate() {
                rev.data_txn = None;
                rev.detached = i + 1 < n;
            }
            !revs.is_empty()
        });
        st.txns.retain(|&tid, txn| {
            if tid > pack_tid {
                return true;
            }
            txn.status = TxnStatus::Packed;
            txn.oids.retain(|&oid| kept(oid, tid));
            !txn.oids.is_empty()
        });
        st.size = st.compute_size();
        tracing::debug!(storage = %self.name, pack_tid = %pack_tid, gc, "packed");
        Ok(())
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
