//! [`IntoCall`]: the one-way call that carries a [`TxnOp`] (one buffered operation of an
//! open transaction, the type every transaction buffer holds, from `zodb_storage`).

use zodb_pickle::Value;
pub use zodb_storage::TxnOp;

use super::Call;

/// The one-way call that carries an operation.
pub trait IntoCall {
    /// The one-way call that carries this operation for transaction `txn`.
    fn into_call(self, txn: Value) -> Call;
}

impl IntoCall for TxnOp {
    fn into_call(self, txn: Value) -> Call {
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
