//! Undo in a `MemoryStorage` (`filestorage-format.md` §12): the revisions that undoing
//! a transaction writes, worked out against the committed state and what the undoing
//! transaction has written so far, falling back to the layer below for an object whose
//! first revision here is undone; and Python's `UndoError` texts for what cannot be undone.

use std::sync::Arc;

use super::txn::TxnWrites;
use super::{MemoryStorage, Rev};
use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::storage::TxnStatus;

/// Undo messages, the same text Python's `UndoError` carries.
const UNDO_INVALID_TID: &str = "Invalid undo transaction id";
const UNDO_NOT_UNDOABLE: &str = "non-undoable transaction";
const UNDO_MODIFIED_LATER: &str = "Some data were modified by a later transaction";
const UNDO_ADD_CONFLICT: &str =
    "Can't undo an add transaction followed by conflicting transactions";

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

impl MemoryStorage {
    /// The revisions undoing transaction `tid` writes, given what the
    /// undoing transaction has written so far (§12): for each record of
    /// the undone transaction, if the object's current revision is the
    /// undone one, reuses its data, or has byte-equal data, the new
    /// revision returns to the revision before the undone one (or deletes
    /// the object when the undone one created it); otherwise the undo
    /// fails. Errors of all records are collected.
    pub(super) fn undo_records(&self, tid: Tid, written: &TxnWrites) -> Result<Vec<(Oid, Rev)>> {
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
                        if self.lower.revision_before(oid, tid)?.is_some() {
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
                    let rev = match self.lower.revision_before(oid, before)? {
                        Some(r) => Rev::pending(Some(Arc::new(r.data)), Some(r.start)),
                        None => Rev::pending(None, None),
                    };
                    Ok((oid, rev))
                }
            })
            .collect()
    }
}
