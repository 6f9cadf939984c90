//! The client's open transactions: what each buffered, where it is in two-phase commit,
//! and the one "slot" a connection has for a transaction on the server.
//!
//! A ZEO connection carries one transaction at a time (a second `tpc_begin` while one
//! is open makes the server close the connection), while the `Storage` trait lets
//! several be open at once and takes the commit lock only at `vote`.  So `tpc_begin` and
//! the store-like calls only buffer here, and `vote` first takes the slot (waiting while
//! another transaction of this client holds it), then sends `tpc_begin`, the buffered
//! one-way calls and `vote`.  The slot is released when the transaction finishes or
//! aborts, after the server has been told, so the next transaction's `tpc_begin` always
//! reaches the server after the previous one's end.  A second `vote` therefore waits for
//! the first transaction's `finish`, as the commit lock of any storage makes it wait.

use std::collections::HashMap;
use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid, TransactionMeta};

use super::connection::{Connection, FinishUpdate};
use crate::wire::{Call, IntoCall, TxnOp};

/// Where a transaction is.
#[derive(Debug)]
pub(crate) enum Phase {
    /// Buffering.
    Open,
    /// A thread is voting, finishing or aborting it; others wait.
    Busy,
    /// Voted on `conn`, which holds the server's commit lock for it; `changed` are the
    /// oids the vote reported (resolved by the server or touched by an undo).
    Voted {
        conn: Arc<Connection>,
        changed: Vec<Oid>,
    },
    /// The vote failed (the server side is aborted); only `abort` is left.
    Failed,
}

#[derive(Debug)]
pub(crate) struct Txn {
    /// The connection current at `tpc_begin`: the transaction fails if it is lost.
    pub conn_id: u64,
    pub meta: TransactionMeta,
    /// The extension as the dict `tpc_begin` sends.
    pub extension: Value,
    /// The buffered operations, sent at vote in the order made.
    pub ops: Vec<TxnOp>,
    /// Oids of the transactions `undo` was asked to undo.
    pub undo_oids: Vec<Oid>,
    pub phase: Phase,
    /// Where in `ops` the store of each object is, to replace it when the object is
    /// stored again (one revision per object and transaction, the last one stored:
    /// Python's server would write both).
    stored_at: HashMap<Oid, usize>,
    /// The blob file of each object stored as a blob (staged in the blob directory's
    /// `tmp/`); removed with the transaction unless its commit kept it.
    pub blobs: HashMap<Oid, std::path::PathBuf>,
}

impl Drop for Txn {
    fn drop(&mut self) {
        for (_, f) in self.blobs.drain() {
            zodb_storage::blob::BlobDir::discard(&f);
        }
    }
}

impl Txn {
    pub(crate) fn new(conn_id: u64, meta: TransactionMeta, extension: Value) -> Txn {
        Txn {
            conn_id,
            meta,
            extension,
            ops: Vec::new(),
            undo_oids: Vec::new(),
            phase: Phase::Open,
            stored_at: HashMap::new(),
            blobs: HashMap::new(),
        }
    }

    /// Buffers an operation.  A store of an object already stored (and not deleted
    /// since) replaces the earlier store.
    pub(crate) fn push(&mut self, op: TxnOp) {
        match &op {
            TxnOp::Store { oid, .. } => {
                if let Some(slot) = self.stored_at.get(oid).and_then(|&i| self.ops.get_mut(i)) {
                    *slot = op;
                    return;
                }
                self.stored_at.insert(*oid, self.ops.len());
            }
            TxnOp::Delete { oid, .. } | TxnOp::Restore { oid, .. } => {
                self.stored_at.remove(oid);
            }
            TxnOp::Check { .. } | TxnOp::Undo(_) => {}
        }
        self.ops.push(op);
    }

    /// The `tpc_begin` call that opens this transaction on the server as `txnid`.
    pub(crate) fn begin_call(&self, txnid: &Value) -> Call {
        Call::TpcBegin {
            txn: txnid.clone(),
            user: self.meta.user.clone(),
            description: self.meta.description.clone(),
            extension: self.extension.clone(),
            tid: self.meta.tid,
            status: self.meta.status,
        }
    }

    /// The store `(serial, data)` buffered for `oid`, if any.
    pub(crate) fn store_of(&self, oid: Oid) -> Option<(Tid, Vec<u8>)> {
        match self.stored_at.get(&oid).and_then(|&i| self.ops.get(i)) {
            Some(TxnOp::Store { serial, data, .. }) => Some((*serial, data.clone())),
            _ => None,
        }
    }

    /// The calls that send the buffered operations for `txnid`.
    pub(crate) fn op_calls<'a>(&'a self, txnid: &'a Value) -> impl Iterator<Item = Call> + 'a {
        self.ops
            .iter()
            .map(|op| op.clone().into_call(txnid.clone()))
    }

    /// The cache update for this transaction once committed: the last data stored for
    /// each object, and the objects changed otherwise (deleted, undone, or reported
    /// by the vote as resolved by the server); and all of them, for the listeners.
    pub(crate) fn finish_update(&mut self, vote_changed: Vec<Oid>) -> FinishUpdate {
        // The last operation on each object decides: data we know, or a deletion.
        let mut order: Vec<Oid> = Vec::new();
        let mut last: HashMap<Oid, Option<Vec<u8>>> = HashMap::new();
        for op in std::mem::take(&mut self.ops) {
            let (oid, data) = match op {
                TxnOp::Store { oid, data, .. } => (oid, Some(data)),
                TxnOp::Delete { oid, .. } => (oid, None),
                // Restored data is the revision's own; a backpointer's we do not hold.
                TxnOp::Restore { oid, data, .. } => (oid, data),
                TxnOp::Check { .. } | TxnOp::Undo(_) => continue,
            };
            if last.insert(oid, data).is_none() {
                order.push(oid);
            }
        }
        let mut changed: Vec<Oid> = std::mem::take(&mut self.undo_oids);
        changed.extend(vote_changed);
        changed.sort();
        changed.dedup();
        let mut stores = Vec::new();
        let mut deleted = Vec::new();
        for oid in order {
            match last.remove(&oid).flatten() {
                Some(data) if changed.binary_search(&oid).is_err() => stores.push((oid, data)),
                Some(_) => {}
                None => deleted.push(oid),
            }
        }
        changed.extend(deleted);
        changed.sort();
        changed.dedup();
        let mut oids: Vec<Oid> = stores.iter().map(|(oid, _)| *oid).collect();
        oids.extend_from_slice(&changed);
        oids.sort();
        oids.dedup();
        FinishUpdate {
            stores,
            changed,
            oids,
        }
    }
}

/// Every open transaction of the client, and which one holds the connection's slot.
#[derive(Debug, Default)]
pub(crate) struct Txns {
    pub open: HashMap<u64, Txn>,
    pub slot: Option<u64>,
}

#[cfg(test)]
mod tests {
    use super::*;
    use zodb_storage::Tid;

    #[test]
    fn finish_update_keeps_last_store_and_drops_changed() {
        let mut t = Txn::new(1, TransactionMeta::default(), Value::Dict(vec![]));
        let store = |oid, data: &[u8]| TxnOp::Store {
            oid: Oid(oid),
            serial: Tid::ZERO,
            data: data.to_vec(),
        };
        for op in [
            store(1, b"a"),
            store(2, b"b"),
            store(1, b"a2"),
            store(3, b"c"),
            TxnOp::Delete {
                oid: Oid(3),
                serial: Tid::ZERO,
            },
            store(4, b"d"),
            TxnOp::Check {
                oid: Oid(5),
                serial: Tid::ZERO,
            },
        ] {
            t.push(op);
        }
        assert_eq!(t.ops.len(), 6, "the second store of 1 replaced the first");
        t.undo_oids = vec![Oid(9)];
        let u = t.finish_update(vec![Oid(4)]);
        assert_eq!(
            u.stores,
            vec![(Oid(1), b"a2".to_vec()), (Oid(2), b"b".to_vec())]
        );
        assert_eq!(u.changed, vec![Oid(3), Oid(4), Oid(9)]);
        // Checks write nothing; everything else is reported once.
        assert_eq!(u.oids, vec![Oid(1), Oid(2), Oid(3), Oid(4), Oid(9)]);
    }
}
