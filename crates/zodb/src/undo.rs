//! Undo with conflict resolution: ZODB's FileStorage undoes a transaction whose objects
//! were changed again since by merging, object by object, the state before it with the
//! later state (`tryToResolveConflict`), where the object's class knows how (BTrees
//! buckets, `Length` counters).  The storages' own `undo` refuses any object changed
//! since; [`DB::undo_resolving`] is the merging form, for objects that every change
//! writes (an index kept beside the data, counters) and that would otherwise make
//! every older transaction impossible to undo.
//!
//! The undo is a new transaction storing, for each object the undone one wrote, the
//! revision before it; an object changed since is stored as the merge (old: the undone
//! revision, committed: the current one, new: the one before), by the resolver the
//! caller names for its class, through the commit's conflict resolution.  Objects the
//! undone transaction created are left as they are: what referred to them is undone,
//! so nothing reaches them.  A transaction that stored a blob, deleted an object or
//! wrote the database root is refused, as is any object whose class has no resolver
//! and that changed since.

use std::collections::HashMap;

use zodb_pickle::decode_record;
use zodb_storage::{Oid, StorageError, Tid, TransactionMeta};

use crate::connection::{Record, class_name};
use crate::db::DB;
use crate::error::{Error, Result};
use crate::resolve::{Resolver, Unresolved};

/// The resolver of a class (module, name), with the class's names as `'static`.
pub type ResolverOf<'a> =
    &'a dyn Fn(&str, &str) -> Option<((&'static str, &'static str), Resolver)>;

/// A resolver that merges nothing: objects of classes without one must be unchanged
/// since the undone transaction.
fn refuse(
    _: zodb_pickle::Value,
    _: zodb_pickle::Value,
    _: zodb_pickle::Value,
) -> std::result::Result<zodb_pickle::Value, Unresolved> {
    Err(Unresolved::new(
        "the object's class has no conflict resolution",
    ))
}

fn refused(why: String) -> Error {
    Error::Storage(StorageError::Undo(vec![why]))
}

impl DB {
    /// Undoes transaction `tid` as a new transaction described by `meta`, merging the
    /// objects changed since with `resolver_of` (see the module doc).  Returns the new
    /// transaction's tid.
    pub fn undo_resolving(
        &self,
        tid: Tid,
        meta: TransactionMeta,
        resolver_of: ResolverOf<'_>,
    ) -> Result<Tid> {
        let storage = &self.inner.storage;
        let txn = storage
            .iterator(Some(tid), Some(tid))?
            .next()
            .transpose()?
            .filter(|t| t.tid == tid)
            .ok_or_else(|| refused(format!("no transaction {tid}")))?;
        let mut records = Vec::new();
        for record in txn.records {
            if record.oid == Oid::ROOT {
                return Err(refused("it changed the database root".into()));
            }
            let Some(data) = record.data else {
                return Err(refused(format!("it deleted the object {:?}", record.oid)));
            };
            let (class, _) =
                decode_record(&data).map_err(|e| Error::pickle(Some(record.oid), e))?;
            let Some((module, name)) = class_name(&class) else {
                return Err(refused(format!(
                    "the class of {:?} is unreadable",
                    record.oid
                )));
            };
            if (module, name) == ("ZODB.blob", "Blob") {
                return Err(refused("it stored a blob".into()));
            }
            let Some(before) = storage.load_before(record.oid, tid)? else {
                // Created by the undone transaction.
                continue;
            };
            let (class, resolve) = resolver_of(module, name).unwrap_or((("", ""), refuse));
            records.push(Record {
                oid: record.oid,
                serial: tid,
                data: before.data,
                class,
                resolve,
                blob: None,
            });
        }
        let (new_tid, _) = self.inner.commit_records(&meta, records, &HashMap::new())?;
        Ok(new_tid)
    }
}
