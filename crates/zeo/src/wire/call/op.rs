//! [`TxnOp`]: one buffered operation of an open transaction, the unit the server's and
//! the client's transaction buffers hold and the one-way transaction calls carry.

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid};

use super::Call;

/// One buffered operation of an open transaction, replayed into the storage at `vote`
/// (server) or sent just before it (client), in the order made.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOp {
    /// `storea`: a new revision of `oid`, based on revision `serial` (zero: a new object).
    Store {
        /// The object.
        oid: Oid,
        /// The revision the change was based on.
        serial: Tid,
        /// The new record.
        data: Vec<u8>,
    },
    /// `deleteObject`: the object is gone (external garbage collection).
    Delete {
        /// The object.
        oid: Oid,
        /// The revision the deletion was based on.
        serial: Tid,
    },
    /// `checkCurrentSerialInTransaction`: fail the vote unless `serial` is still current.
    Check {
        /// The object.
        oid: Oid,
        /// The revision read.
        serial: Tid,
    },
    /// `restorea`: a revision copied as is; `serial` is the transaction's tid (the server
    /// takes the tid from `tpc_begin`); `data` `None` reuses `prev_txn`'s data, or
    /// deletes without it.
    Restore {
        /// The object.
        oid: Oid,
        /// The revision's tid.
        serial: Tid,
        /// The record, if any.
        data: Option<Vec<u8>>,
        /// The transaction whose data this revision reuses (a backpointer).
        prev_txn: Option<Tid>,
    },
    /// `undoa`: undo transaction `tid`.
    Undo(Tid),
}

impl TxnOp {
    /// The one-way call that carries this operation for transaction `txn`.
    pub fn into_call(self, txn: Value) -> Call {
        match self {
            TxnOp::Store { oid, serial, data } => Call::Storea {
                oid,
                serial,
                data,
                txn,
            },
            TxnOp::Delete { oid, serial } => Call::DeleteObject { oid, serial, txn },
            TxnOp::Check { oid, serial } => Call::CheckCurrentSerial { oid, serial, txn },
            TxnOp::Restore {
                oid,
                serial,
                data,
                prev_txn,
            } => Call::Restorea {
                oid,
                serial,
                data,
                prev_txn,
                txn,
            },
            TxnOp::Undo(tid) => Call::Undoa { tid, txn },
        }
    }
}
