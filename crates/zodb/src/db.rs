//! The database: a storage, what it knows of the storage's commits, a pool of connections,
//! and the commit path they share.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::sync::Weak;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use zodb_pickle::{decode_record, encode_record};
use zodb_storage::{
    ConflictError, InvalidationListener, Oid, Revision, Storage, StorageError, Tid, TransactionMeta,
};

use crate::connection::{Connection, Core, Record, Transaction, class_name};
use crate::error::{Error, Result, Retryable};
use crate::limits;
use crate::mapping::PersistentMapping;
use crate::mvcc::Mvcc;
use crate::persistent::Persistent;
use crate::resolve::Unresolved;

/// How a [`DB`] sizes its connections.
#[derive(Debug, Clone)]
pub struct DbOptions {
    /// Objects each connection's cache keeps.
    pub cache_objects: usize,
    /// Record bytes each connection's cache keeps.
    pub cache_bytes: usize,
    /// Idle connections kept with their caches.
    pub pool_size: usize,
}

impl Default for DbOptions {
    fn default() -> Self {
        DbOptions {
            cache_objects: limits::CACHE_OBJECTS_DEFAULT,
            cache_bytes: limits::CACHE_BYTES_DEFAULT,
            pool_size: limits::POOL_SIZE_DEFAULT,
        }
    }
}

/// Counters of a database's activity since it was opened (for metrics).
#[derive(Debug, Default)]
pub(crate) struct Stats {
    pub loads: AtomicU64,
    pub hits: AtomicU64,
    pub commits: AtomicU64,
    pub conflicts: AtomicU64,
    pub resolved: AtomicU64,
}

/// A snapshot of a database's counters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct DbStats {
    /// Objects read from the storage.
    pub loads: u64,
    /// Objects found in a connection cache.
    pub cache_hits: u64,
    /// Transactions committed.
    pub commits: u64,
    /// Commits that failed with a conflict no resolver merged.
    pub conflicts: u64,
    /// Conflicting changes of one object merged by its class's resolver (the commits
    /// they were part of went on).
    pub resolved_conflicts: u64,
}

pub(crate) struct DbInner {
    pub(crate) storage: Arc<dyn Storage>,
    pub(crate) mvcc: Arc<Mvcc>,
    pub(crate) options: DbOptions,
    pub(crate) stats: Stats,
    pool: Mutex<Vec<Core>>,
}

impl DbInner {
    /// Returns a connection's core to the pool (or drops it when the pool is full).
    pub(crate) fn release(&self, mut core: Core) {
        core.flush_hits(self);
        let mut pool = self.pool.lock();
        if pool.len() < self.options.pool_size {
            pool.push(core);
        }
    }

    /// The revision of `oid` current at `snapshot`.
    pub(crate) fn load_before(&self, oid: Oid, snapshot: Tid) -> Result<Revision> {
        self.stats.loads.fetch_add(1, Ordering::Relaxed);
        match self
            .storage
            .load_before(oid, Tid(snapshot.0.saturating_add(1)))
        {
            Ok(Some(revision)) => Ok(revision),
            Ok(None) => Err(Error::NotFound(oid)),
            Err(e) if e.is_pos_key() => Err(Error::NotFound(oid)),
            Err(e) => Err(e.into()),
        }
    }

    /// Two-phase commit of encoded records, resolving write conflicts (see
    /// [`crate::resolve`]).  Returns the tid and the oids whose stored record is a merge
    /// (not the record handed in).
    ///
    /// A round stores every record and votes.  When stores or the vote report write
    /// conflicts, the round is aborted; each conflicting record is merged with what was
    /// committed (old state: the record's base serial; committed state: the serial the
    /// conflict names) and becomes the merge, based on the committed serial; and a new
    /// round starts.  Starting over, rather than storing again inside the voted
    /// transaction, is the same for every storage (local ones report conflicts at `store`,
    /// a ZEO server at `vote`).  Any conflict a resolver cannot merge (or a read conflict)
    /// fails the commit with the storage's conflict error.
    pub(crate) fn commit_records(
        &self,
        meta: &TransactionMeta,
        mut records: Vec<Record>,
        read_current: &HashMap<Oid, Tid>,
    ) -> Result<(Tid, HashSet<Oid>)> {
        let storage = &self.storage;
        let mut resolved = HashSet::new();
        let mut round = 1;
        loop {
            let txn = storage.tpc_begin(meta.clone())?;
            let error = match self.commit_round(&txn, &records, read_current) {
                Ok(tid) => {
                    self.stats.commits.fetch_add(1, Ordering::Relaxed);
                    return Ok((tid, resolved));
                }
                Err(e) => {
                    storage.abort(&txn);
                    e
                }
            };
            let conflicts = error.conflicts();
            let resolvable = !conflicts.is_empty()
                && round < limits::CONFLICT_RESOLUTION_ROUNDS_MAX
                && conflicts.iter().all(|c| !c.read_conflict);
            let merged = resolvable
                .then(|| self.resolve_all(&records, &conflicts))
                .flatten();
            let Some(merged) = merged else {
                if !conflicts.is_empty() {
                    self.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    if round >= limits::CONFLICT_RESOLUTION_ROUNDS_MAX {
                        tracing::warn!(
                            rounds = round,
                            oid = ?conflicts[0].oid,
                            "conflict resolution gave up: other commits kept changing the object"
                        );
                    }
                }
                return Err(error.into());
            };
            for (index, serial, data) in merged {
                let record = &mut records[index];
                record.serial = serial;
                record.data = data;
                resolved.insert(record.oid);
                self.stats.resolved.fetch_add(1, Ordering::Relaxed);
            }
            // Writers of one hot object meet again at the next round: a short random wait
            // spreads them out.
            std::thread::sleep(backoff(round, limits::CONFLICT_RESOLUTION_BACKOFF_MAX));
            round += 1;
        }
    }

    /// One round of [`DbInner::commit_records`]: stores, checks, votes and finishes.  Write
    /// conflicts at `store` are gathered (the other records are still stored, so a round
    /// reports as many as it can) and returned together before voting.
    fn commit_round(
        &self,
        txn: &zodb_storage::TxnHandle,
        records: &[Record],
        read_current: &HashMap<Oid, Tid>,
    ) -> std::result::Result<Tid, StorageError> {
        let storage = &self.storage;
        let mut conflicts = Vec::new();
        for record in records {
            let stored = match &record.blob {
                Some(file) => store_blob(storage.as_ref(), txn, record, file),
                None => storage.store(txn, record.oid, record.serial, record.data.clone()),
            };
            match stored {
                Ok(()) => {}
                Err(StorageError::Conflict(c)) if !c.read_conflict => conflicts.push(c),
                Err(e) => return Err(e),
            }
        }
        if !conflicts.is_empty() {
            return Err(StorageError::from_conflicts(conflicts));
        }
        for (oid, serial) in read_current {
            if !records.iter().any(|r| r.oid == *oid) {
                storage.check_current_serial(txn, *oid, *serial)?;
            }
        }
        storage.vote(txn)?;
        storage.finish(txn)
    }

    /// The merge of every conflicting record, as `(index in records, committed serial,
    /// merged record)`; `None` when any of them does not resolve.
    fn resolve_all(
        &self,
        records: &[Record],
        conflicts: &[&ConflictError],
    ) -> Option<Vec<(usize, Tid, Vec<u8>)>> {
        let mut merged = Vec::with_capacity(conflicts.len());
        for c in conflicts {
            let Some(index) = records.iter().position(|r| r.oid == c.oid) else {
                tracing::debug!(oid = ?c.oid, "conflict on an object this commit does not store");
                return None;
            };
            match self.resolve(&records[index], c.committed) {
                Ok(data) => merged.push((index, c.committed, data)),
                Err(why) => {
                    tracing::debug!(oid = ?c.oid, %why, "conflict not resolved");
                    return None;
                }
            }
        }
        Some(merged)
    }

    /// Merges `record` (based on its serial) with the revision `committed`.
    fn resolve(&self, record: &Record, committed: Tid) -> std::result::Result<Vec<u8>, Unresolved> {
        if record.serial == Tid::ZERO {
            return Err(Unresolved::new(
                "a new object collides with a committed one",
            ));
        }
        let state_at = |serial: Tid, which: &str| {
            let data = self
                .storage
                .load_serial(record.oid, serial)
                .map_err(|e| Unresolved(format!("the {which} revision {serial}: {e}")))?;
            decode_record(&data).map_err(|e| Unresolved(format!("the {which} revision: {e}")))
        };
        let (old_class, old) = state_at(record.serial, "old")?;
        let (committed_class, committed) = state_at(committed, "committed")?;
        let (_, new) =
            decode_record(&record.data).map_err(|e| Unresolved(format!("the new record: {e}")))?;
        // A class change (by a migration) is never merged.
        for class in [&old_class, &committed_class] {
            if class_name(class) != Some(record.class) {
                return Err(Unresolved::new("the class changed"));
            }
        }
        let merged = (record.resolve)(old, committed, new)?;
        encode_record(record.class, &merged).map_err(|e| Unresolved(format!("the merge: {e}")))
    }
}

/// A database: the persistence layer over one [`Storage`].  Cheap to clone (shared).
#[derive(Clone)]
pub struct DB {
    pub(crate) inner: Arc<DbInner>,
}

impl std::fmt::Debug for DB {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DB")
            .field("storage", &self.inner.storage.name())
            .finish()
    }
}

impl DB {
    /// Opens a database over `storage` with default sizes; creates the root if the storage
    /// is empty and writable.
    pub fn open(storage: Arc<dyn Storage>) -> Result<DB> {
        DB::with_options(storage, DbOptions::default())
    }

    pub fn with_options(storage: Arc<dyn Storage>, options: DbOptions) -> Result<DB> {
        let mvcc = Arc::new(Mvcc::default());
        let listener: Weak<dyn InvalidationListener> = Arc::downgrade(&mvcc) as _;
        storage.add_listener(listener);
        // Read after registering: a commit is either before this tid or reported.
        mvcc.start(storage.last_transaction());
        let db = DB {
            inner: Arc::new(DbInner {
                storage,
                mvcc,
                options,
                stats: Stats::default(),
                pool: Mutex::new(Vec::new()),
            }),
        };
        if !db.inner.storage.is_read_only() {
            db.ensure_root()?;
        }
        Ok(db)
    }

    /// Stores an empty `PersistentMapping` as oid 0 if there is none, in a transaction
    /// described as Python ZODB describes it.
    fn ensure_root(&self) -> Result<()> {
        match self.inner.load_before(Oid::ROOT, self.last_transaction()) {
            Ok(_) => return Ok(()),
            Err(Error::NotFound(_)) => {}
            Err(e) => return Err(e),
        }
        let state = PersistentMapping::new()
            .to_state()
            .map_err(|e| Error::state(Some(Oid::ROOT), e.0))?;
        let data = encode_record((PersistentMapping::MODULE, PersistentMapping::NAME), &state)
            .map_err(|e| Error::pickle(Some(Oid::ROOT), e))?;
        let meta = TransactionMeta::new("", "initial database creation");
        let record = Record {
            oid: Oid::ROOT,
            serial: Tid::ZERO,
            data,
            class: (PersistentMapping::MODULE, PersistentMapping::NAME),
            resolve: PersistentMapping::resolve_conflict,
            blob: None,
        };
        match self
            .inner
            .commit_records(&meta, vec![record], &HashMap::new())
        {
            Ok(_) => Ok(()),
            // Another process created it first.
            Err(e) if e.is_conflict() => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// A connection from the pool (with its warm cache), or a new one.
    pub fn connection(&self) -> Connection {
        let core = self
            .inner
            .pool
            .lock()
            .pop()
            .unwrap_or_else(|| Core::new(&self.inner));
        Connection::new(self.clone(), core)
    }

    /// Runs `work` in a transaction on a pooled connection, retrying on conflict with the
    /// default [`TransactionManager`].
    pub fn transact<R, E>(&self, work: impl FnMut(&Transaction<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<Error> + Retryable,
    {
        TransactionManager::default().run(&mut self.connection(), work)
    }

    pub fn storage(&self) -> &Arc<dyn Storage> {
        &self.inner.storage
    }

    /// Undoes the transactions `tids` in one storage transaction described by `meta`
    /// (ZODB's `DB.undoMultiple`): all of them or, on any failure, none.  They are undone
    /// newest first, so a transaction and later ones that changed the same objects can be
    /// undone together.  The connections' caches learn of the undo through the storage's
    /// listener, like any commit.
    ///
    /// An undo that would change the database root (oid 0) is refused: the transactions
    /// that wrote it created the database or put the application's objects in it, and
    /// undoing them would leave nothing to open.
    ///
    /// A refusal names the transaction that cannot be undone.  Storages that find it only
    /// when the undo is voted (FileStorage) are asked again without committing, with the
    /// newest 1, 2, … of `tids`, to find the first whose undo breaks the set.
    pub fn undo(&self, tids: &[Tid], meta: TransactionMeta) -> Result<Tid, UndoError> {
        let mut order = tids.to_vec();
        order.sort_unstable_by(|a, b| b.cmp(a));
        order.dedup();
        if order.is_empty() {
            return Err(UndoError {
                tid: None,
                error: StorageError::Undo(vec!["no transaction to undo was given".into()]).into(),
            });
        }
        match self.undo_in(&order, meta, true) {
            Ok(tid) => {
                self.inner.stats.commits.fetch_add(1, Ordering::Relaxed);
                Ok(tid)
            }
            Err(mut e) => {
                if e.error.is_conflict() {
                    self.inner.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                if e.tid.is_none() && matches!(e.error, Error::Storage(StorageError::Undo(_))) {
                    e.tid = (1..=order.len())
                        .find(|&n| {
                            self.undo_in(&order[..n], TransactionMeta::default(), false)
                                .is_err()
                        })
                        .and_then(|n| order.get(n - 1).copied());
                }
                // The storage may refuse such a transaction for its own reasons first
                // (later changes of the objects it created); this reason is the one to give.
                if let Some(tid) = e.tid
                    && self.wrote_root(tid)
                {
                    e.error = root_refusal().into();
                }
                Err(e)
            }
        }
    }

    /// Whether transaction `tid` is among the recent ones that wrote the database root.
    fn wrote_root(&self, tid: Tid) -> bool {
        self.inner
            .storage
            .history(Oid::ROOT, limits::ROOT_HISTORY_CHECKED)
            .is_ok_and(|entries| entries.iter().any(|e| e.tid == tid))
    }

    /// One storage transaction undoing `order` (newest first): finished when `commit`,
    /// else aborted after a successful vote (a trial).
    fn undo_in(
        &self,
        order: &[Tid],
        meta: TransactionMeta,
        commit: bool,
    ) -> Result<Tid, UndoError> {
        let whole = |error: StorageError| UndoError {
            tid: None,
            error: error.into(),
        };
        let storage = &self.inner.storage;
        let txn = storage.tpc_begin(meta).map_err(whole)?;
        let run = || -> Result<Tid, UndoError> {
            for &tid in order {
                let refused = |error: StorageError| UndoError {
                    tid: Some(tid),
                    error: error.into(),
                };
                let oids = storage.undo(&txn, tid).map_err(refused)?;
                if oids.contains(&Oid::ROOT) {
                    return Err(refused(root_refusal()));
                }
            }
            storage.vote(&txn).map_err(whole)?;
            if commit {
                storage.finish(&txn).map_err(whole)
            } else {
                storage.abort(&txn);
                Ok(Tid::ZERO)
            }
        };
        run().inspect_err(|_| storage.abort(&txn))
    }

    /// The newest tid this database has been told of (the snapshot of a transaction
    /// begun now).
    pub fn last_transaction(&self) -> Tid {
        self.inner.mvcc.current().tid
    }

    /// Idle connections the pool keeps (and so how many transactions can run at once
    /// with warm caches).
    pub fn pool_size(&self) -> usize {
        self.inner.options.pool_size
    }

    pub fn stats(&self) -> DbStats {
        let s = &self.inner.stats;
        DbStats {
            loads: s.loads.load(Ordering::Relaxed),
            cache_hits: s.hits.load(Ordering::Relaxed),
            commits: s.commits.load(Ordering::Relaxed),
            conflicts: s.conflicts.load(Ordering::Relaxed),
            resolved_conflicts: s.resolved.load(Ordering::Relaxed),
        }
    }
}

/// Stores a blob's record with a hard link to its file: the storage takes the link, and
/// the transaction keeps the file for another round of conflict resolution (it removes
/// it when it ends).
fn store_blob(
    storage: &dyn zodb_storage::Storage,
    txn: &zodb_storage::TxnHandle,
    record: &Record,
    file: &std::path::Path,
) -> std::result::Result<(), StorageError> {
    let mut link = file.as_os_str().to_owned();
    link.push(format!(".round-{}", txn.id()));
    let link = std::path::PathBuf::from(link);
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(file, &link)
        .map_err(|e| StorageError::io(format!("linking blob file {}", file.display()), e))?;
    let r = storage.store_blob(txn, record.oid, record.serial, record.data.clone(), &link);
    if r.is_err() {
        let _ = std::fs::remove_file(&link);
    }
    r
}

/// A random wait before retry `round` (1 for the first): uniform up to a millisecond
/// doubled each round, at most `max`, so that writers that collided do not collide again
/// in step.
pub(crate) fn backoff(round: u32, max: std::time::Duration) -> std::time::Duration {
    let ceiling =
        std::time::Duration::from_millis(1u64 << round.saturating_sub(1).min(20)).min(max);
    ceiling.mul_f64(rand::random::<f64>())
}

/// Why [`DB::undo`] refuses a transaction that wrote the database root.
fn root_refusal() -> StorageError {
    StorageError::Undo(vec![
        "it changed the database root (it created the database or the application's objects in it)"
            .into(),
    ])
}

/// Why [`DB::undo`] failed; nothing was undone.
#[derive(Debug, thiserror::Error)]
#[error("{}", match .tid {
    Some(tid) => format!("transaction {tid} cannot be undone: {}", .error),
    None => format!("the undo failed: {}", .error),
})]
pub struct UndoError {
    /// The transaction whose undo the storage refused (its objects were changed by later
    /// transactions, it is not undoable, it changed the root); `None` when the undo failed
    /// as a whole (when voted, e.g. because a transaction committed meanwhile changed the
    /// same objects).
    pub tid: Option<Tid>,
    /// What the storage said.
    #[source]
    pub error: Error,
}

impl UndoError {
    /// The storage's reasons, one per object that blocks the undo (or the error's text).
    pub fn reasons(&self) -> Vec<String> {
        match &self.error {
            Error::Storage(StorageError::Undo(messages)) => messages.clone(),
            other => vec![other.to_string()],
        }
    }
}

/// Runs a unit of work as a transaction and retries it, on a fresh snapshot, when it fails
/// with a conflict (Python's `transaction.manager.attempts()` loop).
///
/// Without [`TransactionManager::with_backoff`] a retry starts at once, as Python's does.
/// With it, the retry first waits a random time below a ceiling that doubles each retry
/// (1 ms, 2 ms, 4 ms, … up to the given maximum): writers that collided on one object
/// then commit one after the other instead of colliding again in step.
///
/// With [`TransactionManager::with_turns`], writers of one process that have conflicted
/// a few times take turns: each further attempt (begin, work, commit) holds a lock
/// shared by those writers, so they stop colliding with one another and meet only the
/// writers that have not conflicted yet (and other processes').
#[derive(Debug, Clone)]
pub struct TransactionManager {
    attempts: u32,
    backoff_max: std::time::Duration,
    turns: Option<(Turns, u32)>,
}

/// The lock that writers which kept conflicting share ([`TransactionManager::with_turns`]);
/// clones share one lock.
#[derive(Debug, Clone, Default)]
pub struct Turns(std::sync::Arc<parking_lot::Mutex<()>>);

impl Turns {
    pub fn new() -> Turns {
        Turns::default()
    }

    /// Waits for the turn, at most [`limits::TURN_WAIT_MAX`]; `None` past it (the
    /// attempt then runs without its turn rather than waiting without end).
    fn take(&self) -> Option<parking_lot::MutexGuard<'_, ()>> {
        self.0.try_lock_for(limits::TURN_WAIT_MAX)
    }
}

impl Default for TransactionManager {
    fn default() -> Self {
        TransactionManager::new(limits::ATTEMPTS_DEFAULT)
    }
}

impl TransactionManager {
    /// At most `attempts` tries (at least one), retried without waiting.
    pub fn new(attempts: u32) -> TransactionManager {
        TransactionManager {
            attempts: attempts.max(1),
            backoff_max: std::time::Duration::ZERO,
            turns: None,
        }
    }

    /// From the attempt after `after` conflicts on, each attempt takes its turn on
    /// `turns` (shared by the writers that should take turns: an application's
    /// requests).
    #[must_use]
    pub fn with_turns(mut self, turns: Turns, after: u32) -> TransactionManager {
        self.turns = Some((turns, after));
        self
    }

    /// Waits a random time before each retry: below 1 ms before the first, the ceiling
    /// doubling each retry, never above `max` (zero: no wait).
    #[must_use]
    pub fn with_backoff(mut self, max: std::time::Duration) -> TransactionManager {
        self.backoff_max = max;
        self
    }

    /// The number of tries.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Runs `work` in a transaction of `conn` and commits it.  A conflict, raised by `work`
    /// or by the commit, aborts and starts over on a new snapshot (after the backoff, if
    /// any), up to the number of attempts; any other error aborts and is returned.  A
    /// storage that cannot sync as the transaction begins (a ZEO client without its
    /// server) fails it before `work` runs ([`Connection::try_begin`]).  `work` must do
    /// nothing outside the transaction that cannot be repeated.
    pub fn run<R, E>(
        &self,
        conn: &mut Connection,
        mut work: impl FnMut(&Transaction<'_>) -> Result<R, E>,
    ) -> Result<R, E>
    where
        E: From<Error> + Retryable,
    {
        let mut attempt = 1;
        loop {
            let turn = match &self.turns {
                Some((turns, after)) if attempt > *after => turns.take(),
                _ => None,
            };
            let tx = conn.try_begin()?;
            let error = match work(&tx) {
                Ok(value) => match tx.commit() {
                    Ok(_) => return Ok(value),
                    Err(e) => E::from(e),
                },
                Err(e) => {
                    tx.abort();
                    e
                }
            };
            if !error.is_conflict() || attempt >= self.attempts {
                return Err(error);
            }
            drop(turn);
            tracing::debug!(attempt, "conflict; retrying the transaction");
            // A snapshot without the transaction this one conflicted with would conflict
            // again: wait (briefly, bounded) until the database has heard of it.
            if let Some(tid) = error.conflict_tid() {
                let deadline = std::time::Instant::now() + limits::CONFLICT_SNAPSHOT_WAIT_MAX;
                if !conn.db().inner.mvcc.wait_for(tid, deadline) {
                    tracing::warn!(
                        ?tid,
                        "a conflicting commit was not heard of in time; retrying"
                    );
                }
            }
            if !self.backoff_max.is_zero() {
                std::thread::sleep(backoff(attempt, self.backoff_max));
            }
            attempt += 1;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::backoff;

    #[test]
    fn backoff_is_random_below_a_doubling_ceiling_and_the_maximum() {
        let max = Duration::from_millis(16);
        for round in 1..=40 {
            let ceiling = Duration::from_millis(1 << (round - 1).min(20)).min(max);
            let waits: Vec<Duration> = (0..50).map(|_| backoff(round, max)).collect();
            assert!(
                waits.iter().all(|w| *w <= ceiling),
                "round {round}: {waits:?}"
            );
            assert!(
                waits.iter().any(|w| *w != waits[0]),
                "round {round}: always {:?}",
                waits[0]
            );
        }
        assert_eq!(backoff(3, Duration::ZERO), Duration::ZERO);
    }
}
