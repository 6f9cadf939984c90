//! [`TxnOp`]: one operation of an open transaction, the one type every transaction
//! buffer holds: the ZEO server's and the ZEO client's (until the vote sends or replays
//! them) and `MemoryStorage`'s (until its vote replays them).  `D` is how the record
//! data is held (`Vec<u8>` by default; `MemoryStorage` shares it with the revision it
//! becomes, `Arc<Vec<u8>>`).  FileStorage keeps its own `PendingWrite`, this operation
//! with what the engine learned when it was made (the committed record it checked, so
//! the vote need not read it again).

use crate::ids::{Oid, Tid};

/// One buffered operation of an open transaction, replayed in the order made.
#[derive(Debug, Clone, PartialEq)]
pub enum TxnOp<D = Vec<u8>> {
    /// `store`: a new revision of `oid`, based on revision `serial` (zero: a new object).
    Store {
        /// The object.
        oid: Oid,
        /// The revision the change was based on.
        serial: Tid,
        /// The new record.
        data: D,
    },
    /// `delete_object`: the object is gone (external garbage collection).
    Delete {
        /// The object.
        oid: Oid,
        /// The revision the deletion was based on.
        serial: Tid,
    },
    /// `check_current_serial`: fail the vote unless `serial` is still current.
    Check {
        /// The object.
        oid: Oid,
        /// The revision read.
        serial: Tid,
    },
    /// `restore`: a revision copied as is; `serial` is the revision's tid (a ZEO server
    /// takes the tid from `tpc_begin`); `data` `None` reuses `prev_txn`'s data, or
    /// deletes without it.
    Restore {
        /// The object.
        oid: Oid,
        /// The revision's tid.
        serial: Tid,
        /// The record, if any.
        data: Option<D>,
        /// The transaction whose data this revision reuses (a backpointer).
        prev_txn: Option<Tid>,
    },
    /// `undo`: undo transaction `tid`.
    Undo(Tid),
}
