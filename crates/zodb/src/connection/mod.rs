//! Connections and transactions: one consistent snapshot per transaction, a cache of clean
//! objects that outlives transactions, explicit change tracking, and two-phase commit.
//!
//! Invariants:
//! - A transaction starts by asking the storage to `sync` (a ZEO client pings its server,
//!   so every commit made elsewhere before that moment has been reported), then reads
//!   every object as of one tid (its snapshot): from the cache when the
//!   cached revision is still current at that tid (guaranteed by dropping, at `begin`, every
//!   oid the database was told changed since the connection's previous snapshot), otherwise
//!   with `load_before(oid, snapshot + 1)`.
//! - The only way to change an object is [`Transaction::edit`] (or [`Transaction::update`]),
//!   which moves it from the cache to the transaction's dirty set before handing out `&mut`.
//!   So a change is always stored at commit, and never evicted, and an abort forgets it by
//!   simply dropping the dirty set.
//! - Objects handed out by [`Transaction::get`] are shared (`Arc`); editing copies an
//!   object that someone still holds (copy on write), so a reader never sees half a change.
//! - New objects ([`Transaction::add`]) are stored only if reachable, through references,
//!   from an object stored by the same commit (or if they are the root): ZODB stores the new
//!   objects it finds while pickling, and a Rust program can only hand them over first.
//!
//! Pieces: this file holds `Connection` (its cache and the start of a transaction) and the
//! `Transaction` with its change set; `read.rs` reads objects as of the snapshot, `edit.rs`
//! changes them ([`Edit`], new objects, savepoints), and `commit.rs` ends the transaction
//! (metadata, `abort`, `commit` encoding the changes into records).

mod commit;
mod edit;
mod read;

use std::any::Any;
use std::cell::RefCell;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rustc_hash::FxHashMap;
use zodb_pickle::Value;
use zodb_storage::{Oid, Tid};

use crate::cache::{Obj, ObjectCache};
use crate::db::{DB, DbInner};
use crate::error::{Error, Result};
use crate::mvcc::SyncPoint;
use crate::persistent::Persistent;
use crate::resolve::Resolver;
use crate::state::StateError;

pub(crate) use commit::Record;
pub use edit::{Edit, Savepoint};
pub use read::Generic;
pub(crate) use read::class_name;

/// What a connection keeps between transactions (and in the pool between uses).
///
/// It holds no reference to its database: the pool that keeps it is inside the database,
/// and a reference back would keep both alive forever.
pub(crate) struct Core {
    cache: ObjectCache,
    synced: SyncPoint,
    /// Tids this connection committed since its last `begin`: their invalidations concern
    /// objects whose new versions are already in the cache.
    own_commits: Vec<Tid>,
    /// Oids fetched from the storage and not used yet, last one first.
    oids: Vec<Oid>,
    /// Cache hits not yet added to the database's count: one atomic add per
    /// transaction instead of one per object read from the cache (a locked add costs
    /// as much as the rest of a cached read).
    hits: std::cell::Cell<u64>,
}

impl Core {
    /// Counts a read answered from the cache.
    pub(crate) fn count_hit(&self) {
        self.hits.set(self.hits.get() + 1);
    }

    /// Adds the hits counted here to the database's count.
    pub(crate) fn flush_hits(&mut self, db: &DbInner) {
        let hits = self.hits.take();
        if hits > 0 {
            db.stats.hits.fetch_add(hits, Ordering::Relaxed);
        }
    }
}

impl Core {
    pub(crate) fn new(db: &DbInner) -> Core {
        let synced = db.mvcc.current();
        let cache = ObjectCache::new(db.options.cache_objects, db.options.cache_bytes);
        Core {
            cache,
            synced,
            own_commits: Vec::new(),
            oids: Vec::new(),
            hits: Default::default(),
        }
    }
}

/// A connection to a [`DB`]: a cache of objects and the place transactions run.  Use it
/// from one thread at a time; it returns to the database's pool when dropped.
pub struct Connection {
    db: DB,
    core: Option<Core>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut d = f.debug_struct("Connection");
        if let Some(core) = &self.core {
            d.field("cache", &core.cache)
                .field("synced", &core.synced.tid);
        }
        d.finish()
    }
}

impl Connection {
    pub(crate) fn new(db: DB, core: Core) -> Connection {
        Connection {
            db,
            core: Some(core),
        }
    }

    fn core(&mut self) -> &mut Core {
        // `core` is `None` only inside `drop`.
        self.core.as_mut().expect("a live connection has its core")
    }

    pub fn db(&self) -> &DB {
        &self.db
    }

    /// Objects in the cache.
    pub fn cache_len(&self) -> usize {
        self.core.as_ref().map_or(0, |c| c.cache.len())
    }

    /// Record bytes the cached objects came from.
    pub fn cache_bytes(&self) -> usize {
        self.core.as_ref().map_or(0, |c| c.cache.bytes())
    }

    /// Drops every cached object (the next reads go to the storage).
    pub fn clear_cache(&mut self) {
        self.core().cache.clear();
    }

    /// Starts a transaction on the newest snapshot the database knows of.  If the
    /// storage cannot sync (a ZEO client without its server), the transaction starts on
    /// the newest snapshot heard of, and reads may be answered from caches; use
    /// [`Connection::try_begin`] to fail instead.
    pub fn begin(&mut self) -> Transaction<'_> {
        if let Err(e) = self.db.inner.storage.sync() {
            tracing::warn!(error = %e, "storage sync failed at transaction begin");
        }
        self.begin_synced()
    }

    /// [`Connection::begin`] that fails when the storage cannot sync (a ZEO client
    /// without its server: `StorageError::Disconnected`), rather than work on what the
    /// caches hold; [`crate::TransactionManager`] begins this way.
    pub fn try_begin(&mut self) -> Result<Transaction<'_>, Error> {
        self.db.inner.storage.sync()?;
        Ok(self.begin_synced())
    }

    /// Starts a transaction once the storage has synced (or failed to).
    fn begin_synced(&mut self) -> Transaction<'_> {
        let db = &*self.db.inner;
        // `core` is `None` only inside `drop`.
        let core = self.core.as_mut().expect("a live connection has its core");
        core.flush_hits(db);
        let poll = db.mvcc.poll(core.synced);
        match poll.changed {
            None => core.cache.clear(),
            Some(changed) => {
                for (tid, oid) in changed {
                    if !core.own_commits.contains(&tid) {
                        core.cache.remove(oid);
                    }
                }
            }
        }
        core.own_commits.clear();
        core.synced = poll.snapshot;
        let snapshot = poll.snapshot.tid;
        let read_only = db.storage.is_read_only();
        Transaction {
            db,
            id: NEXT_TRANSACTION.fetch_add(1, Ordering::Relaxed),
            snapshot,
            read_only,
            core: RefCell::new(core),
            state: RefCell::new(TxState::default()),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(core) = self.core.take() {
            self.db.inner.release(core);
        }
    }
}

static NEXT_TRANSACTION: AtomicU64 = AtomicU64::new(1);

/// [`Persistent::to_record`] of a type-erased object.
type WriteRecord = fn(&(dyn Any + Send + Sync), Option<&mut Vec<Oid>>) -> Option<Vec<u8>>;

/// How a dirty object is turned back into a record, whatever its Rust type, and how its
/// class resolves conflicts.
#[derive(Clone, Copy)]
struct Codec {
    encode: fn(&(dyn Any + Send + Sync)) -> Result<Value, StateError>,
    /// [`Persistent::to_record`]: the record written directly, when the type can.
    record: WriteRecord,
    resolve: Resolver,
    module: &'static str,
    name: &'static str,
}

impl Codec {
    fn of<T: Persistent>() -> Codec {
        fn encode<T: Persistent>(obj: &(dyn Any + Send + Sync)) -> Result<Value, StateError> {
            obj.downcast_ref::<T>()
                .ok_or_else(|| StateError("dirty object of an unexpected type".into()))?
                .to_state()
        }
        fn record<T: Persistent>(
            obj: &(dyn Any + Send + Sync),
            refs: Option<&mut Vec<Oid>>,
        ) -> Option<Vec<u8>> {
            obj.downcast_ref::<T>()?.to_record(refs)
        }
        Codec {
            encode: encode::<T>,
            record: record::<T>,
            resolve: T::resolve_conflict,
            module: T::MODULE,
            name: T::NAME,
        }
    }
}

/// An object changed or added in the current transaction.
#[derive(Clone)]
struct Dirty {
    /// `None` while an [`Edit`] guard holds it.
    obj: Option<Obj>,
    /// The serial the change is based on (`Tid::ZERO` for a new object).
    serial: Tid,
    new: bool,
    codec: Codec,
}

#[derive(Default, Clone)]
struct TxState {
    /// Fx-hashed: every read looks here first, and oids come from the storage.
    dirty: FxHashMap<Oid, Dirty>,
    /// Dirty oids in the order they became dirty (the order records are stored in).
    order: Vec<Oid>,
    /// Objects that must still be current at commit (`check_current_serial`).
    read_current: HashMap<Oid, Tid>,
    user: String,
    description: String,
    extension: Vec<(String, Value)>,
    /// The files of blobs added or changed, taken into the storage's blob `tmp/`.
    blob_files: HashMap<Oid, std::path::PathBuf>,
}

impl Drop for TxState {
    /// The storage stored links to the blob files; the transaction's own go with it.
    fn drop(&mut self) {
        for (_, f) in self.blob_files.drain() {
            zodb_storage::blob::BlobDir::discard(&f);
        }
    }
}

/// One transaction of a [`Connection`]: reads see one snapshot; changes are kept until
/// [`commit`](Transaction::commit).  Dropping it without committing aborts it.
pub struct Transaction<'c> {
    db: &'c DbInner,
    id: u64,
    snapshot: Tid,
    read_only: bool,
    core: RefCell<&'c mut Core>,
    state: RefCell<TxState>,
}

impl std::fmt::Debug for Transaction<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transaction")
            .field("snapshot", &self.snapshot)
            .field("changed", &self.state.borrow().order.len())
            .finish()
    }
}

/// The cached or dirty object as a `T`; `class` is what it was read or added as.
fn downcast<T: Persistent>(obj: Obj, oid: Oid, class: (&str, &str)) -> Result<Arc<T>> {
    obj.downcast::<T>().map_err(|_| wrong_type::<T>(oid, class))
}

fn wrong_type<T: Persistent>(oid: Oid, found: (&str, &str)) -> Error {
    let expected = format!("{}.{}", T::MODULE, T::NAME);
    let mut found = format!("{}.{}", found.0, found.1);
    if found == expected {
        // Same class, another Rust type (e.g. a BTree with other key or value types).
        found.push_str(&format!(
            " held as another Rust type than {}",
            std::any::type_name::<T>()
        ));
    }
    Error::WrongClass {
        oid,
        expected,
        found,
    }
}
