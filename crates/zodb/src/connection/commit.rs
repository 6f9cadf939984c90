//! The end of a transaction: its metadata (user, description, extension), `abort`, and
//! `commit`, which encodes the changed objects (dropping new ones nothing stored refers to)
//! and hands the records to the database's two-phase commit.

use rustc_hash::FxHashMap;
use zodb_pickle::{PickleError, Value, encode_record};
use zodb_storage::{Oid, Tid, TransactionMeta};

use super::{Transaction, TxState};
use crate::cache::Entry;
use crate::error::{Error, Result};
use crate::resolve::Resolver;
use crate::state::{PidKind, parse_pid};

impl<'c> Transaction<'c> {
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
                        let class = (dirty.codec.module, dirty.codec.name);
                        core.cache
                            .put(oid, Entry::new(obj.clone(), tid, size, class));
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
    /// A blob's file, stored with the record (`Storage::store_blob`).
    pub blob: Option<std::path::PathBuf>,
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
        // As Python pickles it, so the bytes do not depend on which side committed.
        zodb_pickle::encode_like_python(&dict).map_err(|e| Error::pickle(None, e))?
    };
    Ok(
        TransactionMeta::new(state.user.as_bytes(), state.description.as_bytes())
            .with_extension(extension),
    )
}

/// Encodes every dirty object and drops new objects nothing stored refers to.
///
/// Works by position in `state.order` (each oid is there once) rather than with maps keyed
/// by oid, and walks references only when the transaction added objects: an update of
/// existing objects keeps all of them.
fn encode_changes(state: &TxState) -> Result<Vec<Record>> {
    let dirty: Vec<&super::Dirty> = state.order.iter().map(|oid| &state.dirty[oid]).collect();
    let any_new = state
        .order
        .iter()
        .zip(&dirty)
        .any(|(oid, d)| d.new && *oid != Oid::ROOT);
    let mut encoded: Vec<(Vec<u8>, Vec<Oid>)> = Vec::with_capacity(state.order.len());
    for (&oid, d) in state.order.iter().zip(&dirty) {
        let obj = d.obj.as_ref().ok_or(Error::Busy(oid))?;
        let mut refs = Vec::new();
        // Written directly when the type can (the same bytes), else through its state.
        if let Some(data) = (d.codec.record)(obj.as_ref(), any_new.then_some(&mut refs)) {
            encoded.push((data, refs));
            continue;
        }
        refs.clear();
        let value = (d.codec.encode)(obj.as_ref()).map_err(|e| Error::state(Some(oid), e.0))?;
        if any_new {
            strong_refs(&value, &mut refs);
        }
        let data = encode_record((d.codec.module, d.codec.name), &value)
            .map_err(|e: PickleError| Error::pickle(Some(oid), e))?;
        encoded.push((data, refs));
    }
    // Reachability: from the changed (not new) objects and the root, through new objects.
    let mut keep: Vec<bool> = state
        .order
        .iter()
        .zip(&dirty)
        .map(|(oid, d)| !d.new || *oid == Oid::ROOT)
        .collect();
    if any_new {
        let position: FxHashMap<Oid, usize> = state
            .order
            .iter()
            .enumerate()
            .map(|(i, &oid)| (oid, i))
            .collect();
        let mut stack: Vec<usize> = (0..keep.len()).filter(|&i| keep[i]).collect();
        while let Some(i) = stack.pop() {
            for target in &encoded[i].1 {
                if let Some(&j) = position.get(target)
                    && dirty[j].new
                    && !keep[j]
                {
                    keep[j] = true;
                    stack.push(j);
                }
            }
        }
    }
    let mut records = Vec::with_capacity(keep.len());
    for (((&oid, d), (data, _)), kept) in state.order.iter().zip(&dirty).zip(encoded).zip(keep) {
        if !kept {
            tracing::debug!(
                ?oid,
                "new object not referred to by anything stored: not stored"
            );
            continue;
        }
        records.push(Record {
            oid,
            serial: d.serial,
            data,
            class: (d.codec.module, d.codec.name),
            resolve: d.codec.resolve,
            blob: state.blob_files.get(&oid).cloned(),
        });
    }
    Ok(records)
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
