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

use std::any::Any;
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::ops::{Deref, DerefMut};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use zodb_pickle::{PickleError, Value, decode_record, encode_record};
use zodb_storage::{Oid, StorageError, Tid, TransactionMeta};

use crate::cache::{Entry, Obj, ObjectCache};
use crate::db::{DB, DbInner};
use crate::error::{Error, Result};
use crate::limits;
use crate::mapping::PersistentMapping;
use crate::mvcc::SyncPoint;
use crate::persistent::{PRef, Persistent};
use crate::resolve::Resolver;
use crate::state::{PidKind, StateError, parse_pid};

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

/// How a dirty object is turned back into a record, whatever its Rust type, and how its
/// class resolves conflicts.
#[derive(Clone, Copy)]
struct Codec {
    encode: fn(&(dyn Any + Send + Sync)) -> Result<Value, StateError>,
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
        Codec {
            encode: encode::<T>,
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
    dirty: HashMap<Oid, Dirty>,
    /// Dirty oids in the order they became dirty (the order records are stored in).
    order: Vec<Oid>,
    /// Objects that must still be current at commit (`check_current_serial`).
    read_current: HashMap<Oid, Tid>,
    user: String,
    description: String,
    extension: Vec<(String, Value)>,
}

/// A state of a transaction's changes to return to with [`Transaction::rollback`].
#[derive(Clone)]
pub struct Savepoint {
    transaction: u64,
    state: TxState,
}

impl std::fmt::Debug for Savepoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Savepoint")
            .field("changed", &self.state.order.len())
            .finish()
    }
}

/// The old and new class of a record, without the arguments some forms carry
/// (record-format §2).
pub(crate) fn class_name(class: &Value) -> Option<(&str, &str)> {
    match class {
        Value::Global { module, name } => Some((module, name)),
        Value::Tuple(items) => match items.first()? {
            Value::Global { module, name } => Some((module, name)),
            Value::Tuple(mn) => Some((mn.first()?.as_str()?, mn.get(1)?.as_str()?)),
            _ => None,
        },
        _ => None,
    }
}

/// The oids a state refers to strongly (what keeps new objects reachable).
fn strong_refs(state: &Value, out: &mut Vec<Oid>) {
    let mut stack = vec![state];
    while let Some(value) = stack.pop() {
        match value {
            Value::PersistentRef(pid) => {
                if let Some(PidKind::Strong { oid, .. }) = parse_pid(pid) {
                    out.push(oid);
                }
            }
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => stack.extend(items),
            Value::Dict(items) => {
                for (k, v) in items {
                    stack.push(k);
                    stack.push(v);
                }
            }
            _ => {}
        }
    }
}

/// An object read generically: its class and state as pickle values.
#[derive(Debug, Clone, PartialEq)]
pub struct Generic {
    pub oid: Oid,
    /// Module and name from the class pickle.
    pub class: (String, String),
    pub state: Value,
    /// The tid of the revision read.
    pub serial: Tid,
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

impl<'c> Transaction<'c> {
    /// The tid of the snapshot this transaction reads.
    pub fn snapshot(&self) -> Tid {
        self.snapshot
    }

    /// The database root, a `PersistentMapping` at oid 0.
    pub fn root(&self) -> PRef<PersistentMapping> {
        PRef::from_oid(Oid::ROOT)
    }

    /// The object `r` refers to, as of this transaction (with its pending changes).
    pub fn get<T: Persistent>(&self, r: PRef<T>) -> Result<Arc<T>> {
        let oid = r.oid();
        if let Some(dirty) = self.state.borrow().dirty.get(&oid) {
            return match &dirty.obj {
                Some(obj) => {
                    downcast::<T>(obj.clone(), oid, (dirty.codec.module, dirty.codec.name))
                }
                None => Err(Error::Busy(oid)),
            };
        }
        let mut core = self.core.borrow_mut();
        if let Some(entry) = core.cache.get(oid) {
            let (obj, class) = (entry.obj.clone(), entry.class);
            self.db.stats.hits.fetch_add(1, Ordering::Relaxed);
            return downcast::<T>(obj, oid, class);
        }
        let (obj, serial, size) = self.load::<T>(oid)?;
        core.cache.put(
            oid,
            Entry {
                obj: obj.clone(),
                serial,
                size,
                class: (T::MODULE, T::NAME),
            },
        );
        Ok(obj)
    }

    /// Reads a revision from the storage and decodes it as a `T`.
    fn load<T: Persistent>(&self, oid: Oid) -> Result<(Arc<T>, Tid, usize)> {
        let revision = self.db.load_before(oid, self.snapshot)?;
        let size = revision.data.len();
        let (class, state) =
            decode_record(&revision.data).map_err(|e| Error::pickle(Some(oid), e))?;
        match class_name(&class) {
            Some((module, name)) if module == T::MODULE && name == T::NAME => {}
            found => {
                return Err(Error::WrongClass {
                    oid,
                    expected: format!("{}.{}", T::MODULE, T::NAME),
                    found: found
                        .map(|(m, n)| format!("{m}.{n}"))
                        .unwrap_or_else(|| format!("{class:?}")),
                });
            }
        }
        let obj = T::from_state(state).map_err(|e| Error::state(Some(oid), e.0))?;
        Ok((Arc::new(obj), revision.start, size))
    }

    /// The class (module, name) of the object `oid` as of this transaction: from the
    /// transaction's changes, the cache, or the record's class pickle.
    pub fn class_of(&self, oid: Oid) -> Result<(String, String)> {
        if let Some(dirty) = self.state.borrow().dirty.get(&oid) {
            return Ok((dirty.codec.module.to_owned(), dirty.codec.name.to_owned()));
        }
        if let Some(entry) = self.core.borrow_mut().cache.get(oid) {
            return Ok((entry.class.0.to_owned(), entry.class.1.to_owned()));
        }
        let revision = self.db.load_before(oid, self.snapshot)?;
        zodb_pickle::class_of(&revision.data)
            .ok_or_else(|| Error::state(Some(oid), "unreadable class pickle"))
    }

    /// Reads any object without a Rust type for it: its class and state as pickle values
    /// (not cached; pending changes of this transaction are not seen).
    pub fn load_generic(&self, oid: Oid) -> Result<Generic> {
        let revision = self.db.load_before(oid, self.snapshot)?;
        let (class, state) =
            decode_record(&revision.data).map_err(|e| Error::pickle(Some(oid), e))?;
        let class = class_name(&class)
            .map(|(m, n)| (m.to_owned(), n.to_owned()))
            .ok_or_else(|| Error::state(Some(oid), format!("unreadable class {class:?}")))?;
        Ok(Generic {
            oid,
            class,
            state,
            serial: revision.start,
        })
    }

    /// The object `r` refers to, for changing: the returned guard derefs to `&mut T`, and
    /// the object is stored at commit.  Fails with [`Error::Busy`] while another guard of
    /// this transaction holds the same object.
    pub fn edit<T: Persistent>(&self, r: PRef<T>) -> Result<Edit<'_, T>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let oid = r.oid();
        let mut state = self.state.borrow_mut();
        if let Some(dirty) = state.dirty.get_mut(&oid) {
            let obj = dirty.obj.take().ok_or(Error::Busy(oid))?;
            return match obj.downcast::<T>() {
                Ok(obj) => Ok(Edit {
                    tx: self,
                    oid,
                    obj: Some(obj),
                }),
                Err(obj) => {
                    dirty.obj = Some(obj);
                    Err(wrong_type::<T>(oid, (dirty.codec.module, dirty.codec.name)))
                }
            };
        }
        let mut core = self.core.borrow_mut();
        let (obj, serial) = match core.cache.remove(oid) {
            Some(entry) => match entry.obj.clone().downcast::<T>() {
                Ok(obj) => (obj, entry.serial),
                Err(_) => {
                    let class = entry.class;
                    core.cache.put(oid, entry);
                    return Err(wrong_type::<T>(oid, class));
                }
            },
            None => {
                let (obj, serial, _) = self.load::<T>(oid)?;
                (obj, serial)
            }
        };
        state.dirty.insert(
            oid,
            Dirty {
                obj: None,
                serial,
                new: false,
                codec: Codec::of::<T>(),
            },
        );
        state.order.push(oid);
        Ok(Edit {
            tx: self,
            oid,
            obj: Some(obj),
        })
    }

    /// Changes the object `r` refers to with `change`; returns what `change` returns.
    pub fn update<T: Persistent, R>(
        &self,
        r: PRef<T>,
        change: impl FnOnce(&mut T) -> R,
    ) -> Result<R> {
        let mut edit = self.edit(r)?;
        Ok(change(&mut edit))
    }

    /// Adds a new object; it gets an oid now and is stored at commit if an object stored by
    /// the same commit refers to it (directly or through other new objects).
    pub fn add<T: Persistent>(&self, obj: T) -> Result<PRef<T>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let oid = self.new_oid()?;
        let mut state = self.state.borrow_mut();
        state.dirty.insert(
            oid,
            Dirty {
                obj: Some(Arc::new(obj)),
                serial: Tid::ZERO,
                new: true,
                codec: Codec::of::<T>(),
            },
        );
        state.order.push(oid);
        Ok(PRef::from_oid(oid))
    }

    fn new_oid(&self) -> Result<Oid> {
        let mut core = self.core.borrow_mut();
        if core.oids.is_empty() {
            let mut fresh = self.db.storage.new_oids(limits::OID_BATCH_SIZE)?;
            fresh.reverse();
            core.oids = fresh;
        }
        core.oids
            .pop()
            .ok_or_else(|| Error::Storage(StorageError::Transaction("no oid".into())))
    }

    /// The serial (the tid of the revision) of `r`'s object as this transaction sees it:
    /// what an HTTP `ETag` or an edit form carries, so that a later change can tell
    /// whether someone else changed the object meanwhile.  For an object this transaction
    /// changed, the serial the change is based on; `Tid::ZERO` for one it added.
    pub fn serial<T: Persistent>(&self, r: PRef<T>) -> Result<Tid> {
        let oid = r.oid();
        if let Some(dirty) = self.state.borrow().dirty.get(&oid) {
            return Ok(dirty.serial);
        }
        self.get(r)?;
        let mut core = self.core.borrow_mut();
        match core.cache.get(oid) {
            Some(entry) => Ok(entry.serial),
            // Evicted at once by a cache too small for it.
            None => Ok(self.db.load_before(oid, self.snapshot)?.start),
        }
    }

    /// Makes the commit fail with a conflict unless `r`'s object is still current when the
    /// commit is voted, even though this transaction does not change it (ZODB's
    /// `readCurrent`): for decisions that depend on an object staying as read.
    pub fn read_current<T: Persistent>(&self, r: PRef<T>) -> Result<()> {
        let oid = r.oid();
        if self.state.borrow().dirty.contains_key(&oid) {
            return Ok(()); // Stored objects are checked anyway.
        }
        let serial = self.serial(r)?;
        self.state.borrow_mut().read_current.insert(oid, serial);
        Ok(())
    }

    /// Sets who commits this transaction (the storage's transaction `user`).
    pub fn set_user(&self, user: impl Into<String>) {
        self.state.borrow_mut().user = user.into();
    }

    /// Adds a line to the transaction's description (Python's `transaction.note`).
    pub fn note(&self, text: &str) {
        let mut state = self.state.borrow_mut();
        if !state.description.is_empty() {
            state.description.push('\n');
        }
        state.description.push_str(text);
    }

    /// Sets an item of the transaction's extension (metadata stored with the transaction).
    pub fn set_extension(&self, key: impl Into<String>, value: Value) {
        let key = key.into();
        let mut state = self.state.borrow_mut();
        match state.extension.iter_mut().find(|(k, _)| *k == key) {
            Some((_, v)) => *v = value,
            None => state.extension.push((key, value)),
        }
    }

    /// Objects changed or added so far.
    pub fn changed(&self) -> usize {
        self.state.borrow().order.len()
    }

    /// Remembers the changes made so far.
    pub fn savepoint(&self) -> Result<Savepoint> {
        let state = self.state.borrow();
        if let Some((oid, _)) = state.dirty.iter().find(|(_, d)| d.obj.is_none()) {
            return Err(Error::Busy(*oid));
        }
        Ok(Savepoint {
            transaction: self.id,
            state: state.clone(),
        })
    }

    /// Returns to the changes as they were at `savepoint`.
    pub fn rollback(&self, savepoint: &Savepoint) -> Result<()> {
        if savepoint.transaction != self.id {
            return Err(Error::state(None, "savepoint of another transaction"));
        }
        let mut state = self.state.borrow_mut();
        if let Some((oid, _)) = state.dirty.iter().find(|(_, d)| d.obj.is_none()) {
            return Err(Error::Busy(*oid));
        }
        *state = savepoint.state.clone();
        Ok(())
    }

    /// Forgets every change.
    pub fn abort(self) {}

    /// Stores the changes with two-phase commit; returns the new tid, or `None` when
    /// nothing was changed (no commit is made: read-only transactions cost nothing).
    /// On failure nothing is stored; conflicts answer true to [`Error::is_conflict`].
    pub fn commit(self) -> Result<Option<Tid>> {
        let Transaction {
            core, state, db, ..
        } = self;
        let core = core.into_inner();
        let state = state.into_inner();
        if state.dirty.is_empty() && state.read_current.is_empty() {
            return Ok(None);
        }
        let records = encode_changes(&state)?;
        let sizes: Vec<(Oid, usize)> = records.iter().map(|r| (r.oid, r.data.len())).collect();
        let result = db.commit_records(&state_meta(&state)?, records, &state.read_current);
        match result {
            Ok((tid, resolved)) => {
                for (oid, size) in sizes {
                    if resolved.contains(&oid) {
                        // What was stored is the merge, not the object in hand: the next
                        // read loads it.
                        core.cache.remove(oid);
                        continue;
                    }
                    let dirty = &state.dirty[&oid];
                    if let Some(obj) = &dirty.obj {
                        core.cache.put(
                            oid,
                            Entry {
                                obj: obj.clone(),
                                serial: tid,
                                size,
                                class: (dirty.codec.module, dirty.codec.name),
                            },
                        );
                    }
                }
                core.own_commits.push(tid);
                Ok(Some(tid))
            }
            Err(e) => Err(e),
        }
    }
}

/// A record ready to store.
pub(crate) struct Record {
    pub oid: Oid,
    pub serial: Tid,
    pub data: Vec<u8>,
    /// The record's class, and how the class merges a conflicting change.
    pub class: (&'static str, &'static str),
    pub resolve: Resolver,
}

fn state_meta(state: &TxState) -> Result<TransactionMeta> {
    let extension = if state.extension.is_empty() {
        Vec::new()
    } else {
        let dict = Value::Dict(
            state
                .extension
                .iter()
                .map(|(k, v)| (Value::str(k.as_str()), v.clone()))
                .collect(),
        );
        zodb_pickle::encode(&dict).map_err(|e| Error::pickle(None, e))?
    };
    Ok(
        TransactionMeta::new(state.user.as_bytes(), state.description.as_bytes())
            .with_extension(extension),
    )
}

/// Encodes every dirty object and drops new objects nothing stored refers to.
fn encode_changes(state: &TxState) -> Result<Vec<Record>> {
    let mut encoded: HashMap<Oid, (Vec<u8>, Vec<Oid>)> = HashMap::with_capacity(state.order.len());
    for &oid in &state.order {
        let dirty = &state.dirty[&oid];
        let obj = dirty.obj.as_ref().ok_or(Error::Busy(oid))?;
        let value = (dirty.codec.encode)(obj.as_ref()).map_err(|e| Error::state(Some(oid), e.0))?;
        let mut refs = Vec::new();
        strong_refs(&value, &mut refs);
        let data = encode_record((dirty.codec.module, dirty.codec.name), &value)
            .map_err(|e: PickleError| Error::pickle(Some(oid), e))?;
        encoded.insert(oid, (data, refs));
    }
    // Reachability: from the changed (not new) objects and the root, through new objects.
    let mut keep: HashSet<Oid> = state
        .order
        .iter()
        .copied()
        .filter(|oid| !state.dirty[oid].new || *oid == Oid::ROOT)
        .collect();
    let mut stack: Vec<Oid> = keep.iter().copied().collect();
    while let Some(oid) = stack.pop() {
        for target in &encoded[&oid].1 {
            if state.dirty.get(target).is_some_and(|d| d.new) && keep.insert(*target) {
                stack.push(*target);
            }
        }
    }
    let mut records = Vec::with_capacity(keep.len());
    for &oid in &state.order {
        if !keep.contains(&oid) {
            tracing::debug!(
                ?oid,
                "new object not referred to by anything stored: not stored"
            );
            continue;
        }
        if let Some((data, _)) = encoded.remove(&oid) {
            let dirty = &state.dirty[&oid];
            records.push(Record {
                oid,
                serial: dirty.serial,
                data,
                class: (dirty.codec.module, dirty.codec.name),
                resolve: dirty.codec.resolve,
            });
        }
    }
    Ok(records)
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

/// Write access to an object inside a transaction; see [`Transaction::edit`].  Dropping it
/// hands the (changed) object back to the transaction.
pub struct Edit<'t, T: Persistent> {
    tx: &'t dyn PutBack,
    oid: Oid,
    obj: Option<Arc<T>>,
}

impl<T: Persistent> Edit<'_, T> {
    pub fn oid(&self) -> Oid {
        self.oid
    }
}

impl<T: Persistent + std::fmt::Debug> std::fmt::Debug for Edit<'_, T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Edit")
            .field("oid", &self.oid)
            .field("obj", &self.obj)
            .finish()
    }
}

impl<T: Persistent> Deref for Edit<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // `obj` is `None` only inside `drop`.
        self.obj.as_ref().expect("an edit guard holds its object")
    }
}

impl<T: Persistent> DerefMut for Edit<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // Copies the object if a reader still holds it (copy on write).
        Arc::make_mut(self.obj.as_mut().expect("an edit guard holds its object"))
    }
}

impl<T: Persistent> Drop for Edit<'_, T> {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            self.tx.put_back(self.oid, obj);
        }
    }
}

/// Lets an [`Edit`] guard return its object without naming the transaction's lifetime.
trait PutBack {
    fn put_back(&self, oid: Oid, obj: Obj);
}

impl PutBack for Transaction<'_> {
    fn put_back(&self, oid: Oid, obj: Obj) {
        if let Some(dirty) = self.state.borrow_mut().dirty.get_mut(&oid) {
            dirty.obj = Some(obj);
        }
    }
}
