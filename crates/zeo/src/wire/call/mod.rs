//! The typed calls of the ZEO 5 protocol (spec §3): [`Call`] is every method a client
//! may call on the server, with its arguments read once, so the server dispatches on a
//! `match` over variants and the client builds its messages from the same type.
//!
//! A call's arguments travel as a positional tuple (`Message::args`).  [`Call::decode`]
//! reads them the way the Python server's methods take them (defaults for what Python's
//! signatures default, `str` accepted where old clients send it) and refuses what no
//! client sends ([`BadCall`], which closes the connection: Python's server would raise
//! in the method and the client would be confused anyway).  [`Call::encode`] writes
//! exactly what our client sends, which is what Python's client sends.
//!
//! [`TxnOp`] is one buffered operation of an open transaction (a store, a deletion, a
//! serial check, a restore, an undo): the unit both the server and the client buffer
//! until `vote`, and what the one-way transaction calls carry.
//!
//! Pure data: no I/O, no storage.  `decode.rs` reads a call, `encode.rs` writes one,
//! `op.rs` holds [`TxnOp`].

mod decode;
mod encode;
mod op;
#[cfg(test)]
mod tests;

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid, TxnStatus};

use super::message::Message;
pub use op::{IntoCall, TxnOp};

/// Why a call's name or arguments could not be read.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BadCall {
    /// No method of that name.
    #[error("unknown method {0}")]
    Unknown(String),
    /// A required argument is missing or of the wrong type.
    #[error("{method} needs {needs}")]
    Args {
        /// The method called.
        method: &'static str,
        /// What it needs, as a phrase ("an oid and a tid").
        needs: &'static str,
    },
    /// An `undoa` id that is no base64 of 8 bytes.
    #[error("bad undo id {0:?}")]
    UndoId(String),
}

/// One call of a client to the server, arguments typed (spec §3; argument order as sent).
#[derive(Debug, Clone, PartialEq)]
pub enum Call {
    /// `register(storage, read_only)`: reply the last tid.  Missing: storage `'1'`,
    /// writable.
    Register {
        /// The storage's name.
        storage: String,
        /// Register read-only.
        read_only: bool,
    },
    /// `lastTransaction()`: reply the last tid.
    LastTransaction,
    /// `get_info()`: reply a dict about the storage.
    GetInfo,
    /// `ping()`: reply `None`.
    Ping,
    /// `set_client_label(label)` (one-way).
    SetClientLabel {
        /// The label, when it is a str.
        label: Option<String>,
    },
    /// `server_status()`: reply a dict of counters.
    ServerStatus,
    /// `getInvalidations(tid)`: reply `(last_tid, oids)` changed after `tid`, or `None`.
    GetInvalidations {
        /// The last transaction the client knows of.
        tid: Tid,
    },
    /// `loadBefore(oid, tid)`: reply `(data, start, end | None)` or `None`.  Sent with
    /// the message id `(oid, tid)` ([`Call::into_message`]).
    LoadBefore {
        /// The object.
        oid: Oid,
        /// Load the revision current before this tid.
        tid: Tid,
    },
    /// `loadSerial(oid, serial)`: reply the data of that revision.
    LoadSerial {
        /// The object.
        oid: Oid,
        /// The revision.
        serial: Tid,
    },
    /// `getTid(oid)`: reply the current revision's tid.
    GetTid {
        /// The object.
        oid: Oid,
    },
    /// `new_oids(n)`: reply a list of new oids (missing: 100, Python's default).
    NewOids {
        /// How many, as sent (the server bounds it).
        count: i64,
    },
    /// `history(oid, size)`: reply a list of dicts (missing size: 1).
    History {
        /// The object.
        oid: Oid,
        /// How many revisions, as sent.
        size: i64,
    },
    /// `undoLog(first, last)`: reply a list of dicts (missing: 0, -20; a negative `last`
    /// means `-last` entries after `first`).
    UndoLog {
        /// Index of the first entry.
        first: i64,
        /// Index past the last entry, or minus a count.
        last: i64,
    },
    /// `undoInfo(first, last, specification)`: `undoLog` filtered by the dict's items.
    UndoInfo {
        /// Index of the first matching entry.
        first: i64,
        /// Index past the last matching entry, or minus a count.
        last: i64,
        /// The items an entry must have (empty: all).
        spec: Vec<(Value, Value)>,
    },
    /// `tpc_begin(txn, user, description, extension, tid, status)` (one-way).
    TpcBegin {
        /// The transaction's id (any value; our client sends ints).
        txn: Value,
        /// `user_name`.
        user: Vec<u8>,
        /// `description`.
        description: Vec<u8>,
        /// The extension dict, as sent.
        extension: Value,
        /// The tid to commit with (`restore` / copying), else the server chooses.
        tid: Option<Tid>,
        /// `'p'` for a copy of a packed transaction, else committed.
        status: TxnStatus,
    },
    /// `storea(oid, serial, data, txn)` (one-way).
    Storea {
        /// The object.
        oid: Oid,
        /// The revision the change was based on (missing or not 8 bytes: zero).
        serial: Tid,
        /// The new record.
        data: Vec<u8>,
        /// The transaction's id.
        txn: Value,
    },
    /// `deleteObject(oid, serial, txn)` (one-way).
    DeleteObject {
        /// The object.
        oid: Oid,
        /// The revision the deletion was based on.
        serial: Tid,
        /// The transaction's id.
        txn: Value,
    },
    /// `checkCurrentSerialInTransaction(oid, serial, txn)` (one-way).
    CheckCurrentSerial {
        /// The object.
        oid: Oid,
        /// The revision read.
        serial: Tid,
        /// The transaction's id.
        txn: Value,
    },
    /// `restorea(oid, serial, data | None, prev_txn | None, txn)` (one-way).
    Restorea {
        /// The object.
        oid: Oid,
        /// The revision's tid.
        serial: Tid,
        /// The record, if any.
        data: Option<Vec<u8>>,
        /// The transaction whose data this revision reuses.
        prev_txn: Option<Tid>,
        /// The transaction's id.
        txn: Value,
    },
    /// `undoa(undo_id, txn)` (one-way).
    Undoa {
        /// The transaction to undo (decoded from its undo id).
        tid: Tid,
        /// The transaction's id.
        txn: Value,
    },
    /// `vote(txn)`: reply the oids the commit changed beyond the stores, or the
    /// conflicts left to the client ([`super::VoteReply`]).  Missing id: `None`.
    Vote {
        /// The transaction's id.
        txn: Value,
    },
    /// `tpc_finish(txn)`: reply the tid.  Missing id: `None`.
    TpcFinish {
        /// The transaction's id.
        txn: Value,
    },
    /// `tpc_abort(txn)`: reply `None`.  Without an id, whatever transaction is open.
    TpcAbort {
        /// The transaction's id, if sent.
        txn: Option<Value>,
    },
    /// `record_iternext(oid)`: reply `(oid, tid, data, next | None)` (missing: oid 0).
    RecordIternext {
        /// Where to start.
        from: Oid,
    },
    /// `pack(t, wait)`: pack as of Unix time `t`; reply when done unless `wait` is false.
    Pack {
        /// Seconds since the epoch.
        time: f64,
        /// Reply after the pack (missing: true).
        wait: bool,
    },
    /// `iterator_start(start, stop)`: reply an iterator id.
    IteratorStart {
        /// First tid (inclusive), if any.
        start: Option<Tid>,
        /// Last tid (inclusive), if any.
        stop: Option<Tid>,
    },
    /// `iterator_next(id)`: reply a transaction header ([`super::TxnHeader`]) or `None`.
    IteratorNext {
        /// The iterator.
        id: i64,
    },
    /// `iterator_record_start(id, tid)`: reply a record iterator id for the transaction
    /// `iterator_next` returned last.
    IteratorRecordStart {
        /// The transaction iterator.
        id: i64,
        /// The transaction's tid, as a check.
        tid: Option<Tid>,
    },
    /// `iterator_record_next(id)`: reply a data record tuple or `None`.
    IteratorRecordNext {
        /// The record iterator.
        id: i64,
    },
    /// `iterator_gc(ids)` (one-way): forget these iterators.
    IteratorGc {
        /// The iterator ids (non-ints are skipped).
        ids: Vec<i64>,
    },
    /// `storeBlobStart()` (one-way): a blob file's upload begins.
    StoreBlobStart,
    /// `storeBlobChunk(chunk)` (one-way): the next bytes of the file being uploaded.
    StoreBlobChunk {
        /// The bytes (Python's client sends 59,000 at a time).
        chunk: Vec<u8>,
    },
    /// `storeBlobEnd(oid, serial, data, txn)` (one-way): the upload is the blob file of
    /// this store (which `storea` also sent).
    StoreBlobEnd {
        /// The object.
        oid: Oid,
        /// The revision the change was based on.
        serial: Tid,
        /// The blob's record.
        data: Vec<u8>,
        /// The transaction's id.
        txn: Value,
    },
    /// `storeBlobShared(oid, serial, data, filename, txn)` (one-way): with a blob
    /// directory shared by client and server, the blob file is `filename` in the
    /// object's directory there.
    StoreBlobShared {
        /// The object.
        oid: Oid,
        /// The revision the change was based on.
        serial: Tid,
        /// The blob's record.
        data: Vec<u8>,
        /// A bare file name (no directory), ending in `.tmp` or `.tmp` and one character.
        filename: String,
        /// The transaction's id.
        txn: Value,
    },
    /// `sendBlob(oid, serial)`: send the revision's file as `receiveBlob…` callbacks,
    /// then reply `None`.
    SendBlob {
        /// The object.
        oid: Oid,
        /// The revision.
        serial: Tid,
    },
    /// `bbru_lease()` (bbru's extension, spec §11): grant or renew this connection's
    /// read lease; reply its length in milliseconds, or `None` (no lease).
    Lease,
    /// `bbru_applied(tid)` (one-way, spec §11): the client has applied every
    /// invalidation up to `tid`.
    LeaseApplied {
        /// The transaction of the newest invalidation applied.
        tid: Tid,
    },
    /// `bbru_lease_end()` (one-way, spec §11): the client no longer counts on its lease.
    LeaseEnd,
}

/// The `get_info` key under which a server offers read leases: their length in
/// milliseconds (spec §11).
pub const LEASE_INFO_KEY: &str = "bbru_lease_ms";

fn oid_value(oid: Oid) -> Value {
    Value::Bytes(oid.to_bytes().to_vec())
}

fn tid_value(tid: Tid) -> Value {
    Value::Bytes(tid.to_bytes().to_vec())
}

impl Call {
    /// The method's name on the wire.
    pub fn method(&self) -> &'static str {
        match self {
            Call::Register { .. } => "register",
            Call::LastTransaction => "lastTransaction",
            Call::GetInfo => "get_info",
            Call::Ping => "ping",
            Call::SetClientLabel { .. } => "set_client_label",
            Call::ServerStatus => "server_status",
            Call::GetInvalidations { .. } => "getInvalidations",
            Call::LoadBefore { .. } => "loadBefore",
            Call::LoadSerial { .. } => "loadSerial",
            Call::GetTid { .. } => "getTid",
            Call::NewOids { .. } => "new_oids",
            Call::History { .. } => "history",
            Call::UndoLog { .. } => "undoLog",
            Call::UndoInfo { .. } => "undoInfo",
            Call::TpcBegin { .. } => "tpc_begin",
            Call::Storea { .. } => "storea",
            Call::DeleteObject { .. } => "deleteObject",
            Call::CheckCurrentSerial { .. } => "checkCurrentSerialInTransaction",
            Call::Restorea { .. } => "restorea",
            Call::Undoa { .. } => "undoa",
            Call::Vote { .. } => "vote",
            Call::TpcFinish { .. } => "tpc_finish",
            Call::TpcAbort { .. } => "tpc_abort",
            Call::RecordIternext { .. } => "record_iternext",
            Call::Pack { .. } => "pack",
            Call::IteratorStart { .. } => "iterator_start",
            Call::IteratorNext { .. } => "iterator_next",
            Call::IteratorRecordStart { .. } => "iterator_record_start",
            Call::IteratorRecordNext { .. } => "iterator_record_next",
            Call::IteratorGc { .. } => "iterator_gc",
            Call::StoreBlobStart => "storeBlobStart",
            Call::StoreBlobChunk { .. } => "storeBlobChunk",
            Call::StoreBlobEnd { .. } => "storeBlobEnd",
            Call::StoreBlobShared { .. } => "storeBlobShared",
            Call::SendBlob { .. } => "sendBlob",
            Call::Lease => "bbru_lease",
            Call::LeaseApplied { .. } => "bbru_applied",
            Call::LeaseEnd => "bbru_lease_end",
        }
    }

    /// Whether Python's client sends this call one-way (no reply).  The server accepts
    /// them as ordinary calls too, and then replies `None` once done.
    pub fn is_one_way(&self) -> bool {
        matches!(
            self,
            Call::TpcBegin { .. }
                | Call::Storea { .. }
                | Call::DeleteObject { .. }
                | Call::CheckCurrentSerial { .. }
                | Call::Restorea { .. }
                | Call::Undoa { .. }
                | Call::IteratorGc { .. }
                | Call::SetClientLabel { .. }
                | Call::StoreBlobStart
                | Call::StoreBlobChunk { .. }
                | Call::StoreBlobEnd { .. }
                | Call::StoreBlobShared { .. }
                | Call::LeaseApplied { .. }
                | Call::LeaseEnd
        )
    }

    /// The buffered operation a one-way transaction call carries, and its transaction
    /// id; `None` for any other call.
    pub fn into_txn_op(self) -> Option<(TxnOp, Value)> {
        Some(match self {
            Call::Storea {
                oid,
                serial,
                data,
                txn,
            } => (TxnOp::Store { oid, serial, data }, txn),
            Call::DeleteObject { oid, serial, txn } => (TxnOp::Delete { oid, serial }, txn),
            Call::CheckCurrentSerial { oid, serial, txn } => (TxnOp::Check { oid, serial }, txn),
            Call::Restorea {
                oid,
                serial,
                data,
                prev_txn,
                txn,
            } => (
                TxnOp::Restore {
                    oid,
                    serial,
                    data,
                    prev_txn,
                },
                txn,
            ),
            Call::Undoa { tid, txn } => (TxnOp::Undo(tid), txn),
            _ => return None,
        })
    }

    /// The message id a `loadBefore(oid, tid)` is sent with: the tuple `(oid, tid)`, so
    /// identical loads in flight share one reply (as Python's client does).
    pub fn load_msgid(oid: Oid, tid: Tid) -> Value {
        Value::Tuple(vec![oid_value(oid), tid_value(tid)])
    }

    /// The call as a synchronous message with id `id`; `loadBefore` gets its
    /// `(oid, tid)` id instead ([`Call::load_msgid`]).
    pub fn into_message(self, id: i64) -> Message {
        let name = self.method();
        match self {
            Call::LoadBefore { oid, tid } => {
                Message::call_with_msgid(Call::load_msgid(oid, tid), name, self.encode())
            }
            call => Message::call(id, name, call.encode()),
        }
    }

    /// The call as a one-way message `(0, True, name, args)`.
    pub fn into_async_message(self) -> Message {
        let name = self.method();
        Message::async_call(name, self.encode())
    }
}
