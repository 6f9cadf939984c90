//! A transaction's reads: objects as of its snapshot (from its own changes, the cache, or
//! the storage), their classes and serials, generic reads without a Rust type, and
//! `read_current`.

use std::sync::Arc;

use zodb_pickle::{Value, decode_record};
use zodb_storage::{Oid, Tid};

use super::{Transaction, downcast, wrong_type};
use crate::cache::Entry;
use crate::error::{Error, Result};
use crate::mapping::PersistentMapping;
use crate::persistent::{PRef, Persistent};

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
        {
            let core = self.core.borrow();
            if let Some(entry) = core.cache.get(oid) {
                core.count_hit();
                return downcast::<T>(entry.obj.clone(), oid, entry.class);
            }
        }
        let (obj, serial, size) = self.load::<T>(oid)?;
        // Inside a `read`'s function the cache is lent out: the object is not kept.
        if let Ok(mut core) = self.core.try_borrow_mut() {
            let class = (T::MODULE, T::NAME);
            core.cache
                .put(oid, Entry::new(obj.clone(), serial, size, class));
        }
        Ok(obj)
    }

    /// Calls `f` with `r`'s object as this transaction sees it, lent rather than
    /// handed out: from the cache, no reference count changes hands, which makes it the
    /// cheapest read (a few nanoseconds). `f` may read other objects of the
    /// transaction (`get`, `read`); an object it reads that was not in the cache is
    /// not kept there. It may not change objects: `edit`, `update` and `add` inside
    /// `f` fail with [`Error::Lent`].
    pub fn read<T: Persistent, R>(&self, r: PRef<T>, f: impl FnOnce(&T) -> R) -> Result<R> {
        let oid = r.oid();
        let dirty = {
            let state = self.state.borrow();
            !state.dirty.is_empty() && state.dirty.contains_key(&oid)
        };
        if !dirty {
            let core = self.core.borrow();
            if let Some(entry) = core.cache.get(oid) {
                core.count_hit();
                let obj = entry.obj.downcast_ref::<T>();
                let obj = obj.ok_or_else(|| wrong_type::<T>(oid, entry.class))?;
                return Ok(f(obj));
            }
        }
        let obj = self.get(r)?;
        // Lent as from the cache, so that a change inside `f` is refused either way.
        let _lent = self.core.borrow();
        Ok(f(&obj))
    }

    /// Reads a revision from the storage and decodes it as a `T`.
    pub(super) fn load<T: Persistent>(&self, oid: Oid) -> Result<(Arc<T>, Tid, usize)> {
        let revision = self.db.load_before(oid, self.snapshot)?;
        let size = revision.data.len();
        if let Some(obj) = read_in_place::<T>(&revision.data) {
            return Ok((Arc::new(obj), revision.start, size));
        }
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
        if let Some(entry) = self.core.borrow().cache.get(oid) {
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
        let core = self.core.borrow();
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

/// The object of `data` when its class is `T`'s and `T` reads its state in place
/// ([`Persistent::from_state_view`]); `None` sends the record the long way, through the
/// [`Value`] tree, which also reports every error.
fn read_in_place<T: Persistent>(data: &[u8]) -> Option<T> {
    let record = zodb_pickle::decode_record_view(data).ok()?;
    match record.class() {
        Some((module, name)) if module == T::MODULE && name == T::NAME => {}
        _ => return None,
    }
    T::from_state_view(record.state())
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
