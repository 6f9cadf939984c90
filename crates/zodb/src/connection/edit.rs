//! A transaction's changes: [`Edit`] guards (the only way to `&mut` an object), `update`,
//! new objects and their oids, and savepoints.

use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use zodb_storage::{Oid, StorageError, Tid};

use super::{Codec, Dirty, Transaction, TxState, wrong_type};
use crate::cache::Obj;
use crate::error::{Error, Result};
use crate::limits;
use crate::persistent::{PRef, Persistent};

impl<'c> Transaction<'c> {
    /// The object `r` refers to, for changing: the returned guard derefs to `&mut T`, and
    /// the object is stored at commit.  Fails with [`Error::Busy`] while another guard of
    /// this transaction holds the same object.
    pub fn edit<T: Persistent>(&self, r: PRef<T>) -> Result<Edit<'_, T>> {
        if self.read_only {
            return Err(Error::ReadOnly);
        }
        let oid = r.oid();
        // Taken first: inside `read`'s function (the cache lent out) no change starts.
        let mut core = self.core.try_borrow_mut().map_err(|_| Error::Lent)?;
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
        let mut core = self.core.try_borrow_mut().map_err(|_| Error::Lent)?;
        if core.oids.is_empty() {
            let mut fresh = self.db.storage.new_oids(limits::OID_BATCH_SIZE)?;
            fresh.reverse();
            core.oids = fresh;
        }
        core.oids
            .pop()
            .ok_or_else(|| Error::Storage(StorageError::Transaction("no oid".into())))
    }

    /// Records `file` as the blob `oid`'s (replacing and removing an earlier one).
    pub(crate) fn put_blob_file(&self, oid: Oid, file: std::path::PathBuf) {
        if let Some(old) = self.state.borrow_mut().blob_files.insert(oid, file) {
            zodb_storage::blob::BlobDir::discard(&old);
        }
    }

    /// The blob file given to `oid` in this transaction, if any.
    pub(crate) fn pending_blob_file(&self, oid: Oid) -> Option<std::path::PathBuf> {
        self.state.borrow().blob_files.get(&oid).cloned()
    }

    /// The storage the transaction works on.
    pub(crate) fn storage(&self) -> &std::sync::Arc<dyn zodb_storage::Storage> {
        &self.db.storage
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
