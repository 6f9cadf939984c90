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
//! Pure data: no I/O, no storage.

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid, parse_undo_id, undo_id};

use super::message::Message;

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
    /// The object a store-like operation writes (`None` for checks and undo).
    pub fn written_oid(&self) -> Option<Oid> {
        match self {
            TxnOp::Store { oid, .. } | TxnOp::Delete { oid, .. } | TxnOp::Restore { oid, .. } => {
                Some(*oid)
            }
            TxnOp::Check { .. } | TxnOp::Undo(_) => None,
        }
    }

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
}

/// Reads positional arguments.
struct Args {
    items: std::vec::IntoIter<Value>,
}

impl Args {
    fn next(&mut self) -> Option<Value> {
        self.items.next()
    }
}

fn oid_of(v: &Value) -> Option<Oid> {
    v.as_bytes().and_then(Oid::from_slice)
}

fn tid_of(v: &Value) -> Option<Tid> {
    v.as_bytes().and_then(Tid::from_slice)
}

fn oid_value(oid: Oid) -> Value {
    Value::Bytes(oid.to_bytes().to_vec())
}

fn tid_value(tid: Tid) -> Value {
    Value::Bytes(tid.to_bytes().to_vec())
}

fn opt_tid_value(tid: Option<Tid>) -> Value {
    tid.map_or(Value::None, tid_value)
}

/// Text Python may send as bytes or str; anything else is empty.
fn text_bytes(v: Option<Value>) -> Vec<u8> {
    match v {
        Some(Value::Bytes(b)) => b,
        Some(Value::Str(s)) => s.into_bytes(),
        _ => Vec::new(),
    }
}

impl Call {
    /// Reads a call from its method name and its `args` (a tuple or list; anything else
    /// counts as no arguments).
    pub fn decode(method: &str, args: Value) -> Result<Call, BadCall> {
        let items = match args {
            Value::Tuple(items) | Value::List(items) => items,
            _ => Vec::new(),
        };
        let mut a = Args {
            items: items.into_iter(),
        };
        let need = |method: &'static str, needs: &'static str| BadCall::Args { method, needs };
        let call = match method {
            "register" => Call::Register {
                storage: match a.next() {
                    Some(Value::Str(s)) => s,
                    Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                    _ => "1".to_string(),
                },
                read_only: match a.next() {
                    Some(Value::Bool(b)) => b,
                    Some(Value::Int(i)) => i != 0,
                    _ => false,
                },
            },
            "lastTransaction" => Call::LastTransaction,
            "get_info" => Call::GetInfo,
            "ping" => Call::Ping,
            "set_client_label" => Call::SetClientLabel {
                label: match a.next() {
                    Some(Value::Str(s)) => Some(s),
                    _ => None,
                },
            },
            "server_status" => Call::ServerStatus,
            "getInvalidations" => Call::GetInvalidations {
                tid: a
                    .next()
                    .as_ref()
                    .and_then(tid_of)
                    .ok_or(need("getInvalidations", "a tid"))?,
            },
            "loadBefore" => {
                let (oid, tid) = (a.next(), a.next());
                match (oid.as_ref().and_then(oid_of), tid.as_ref().and_then(tid_of)) {
                    (Some(oid), Some(tid)) => Call::LoadBefore { oid, tid },
                    _ => return Err(need("loadBefore", "an oid and a tid")),
                }
            }
            "loadSerial" => {
                let (oid, serial) = (a.next(), a.next());
                match (
                    oid.as_ref().and_then(oid_of),
                    serial.as_ref().and_then(tid_of),
                ) {
                    (Some(oid), Some(serial)) => Call::LoadSerial { oid, serial },
                    _ => return Err(need("loadSerial", "an oid and a serial")),
                }
            }
            "getTid" => Call::GetTid {
                oid: a
                    .next()
                    .as_ref()
                    .and_then(oid_of)
                    .ok_or(need("getTid", "an oid"))?,
            },
            "new_oids" => Call::NewOids {
                count: a.next().as_ref().and_then(Value::as_i64).unwrap_or(100),
            },
            "history" => Call::History {
                oid: a
                    .next()
                    .as_ref()
                    .and_then(oid_of)
                    .ok_or(need("history", "an oid"))?,
                size: a.next().as_ref().and_then(Value::as_i64).unwrap_or(1),
            },
            "undoLog" | "undoInfo" => {
                let first = a.next().as_ref().and_then(Value::as_i64).unwrap_or(0);
                let last = a.next().as_ref().and_then(Value::as_i64).unwrap_or(-20);
                if method == "undoLog" {
                    Call::UndoLog { first, last }
                } else {
                    Call::UndoInfo {
                        first,
                        last,
                        spec: match a.next() {
                            Some(Value::Dict(d)) => d,
                            _ => Vec::new(),
                        },
                    }
                }
            }
            "tpc_begin" => Call::TpcBegin {
                txn: a.next().unwrap_or(Value::None),
                user: text_bytes(a.next()),
                description: text_bytes(a.next()),
                extension: a.next().unwrap_or(Value::None),
                tid: a.next().as_ref().and_then(tid_of),
            },
            "storea" => return decode_txn_op("storea", a),
            "deleteObject" => return decode_txn_op("deleteObject", a),
            "checkCurrentSerialInTransaction" => {
                return decode_txn_op("checkCurrentSerialInTransaction", a);
            }
            "restorea" => return decode_txn_op("restorea", a),
            "undoa" => {
                let id = match a.next() {
                    Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                    Some(Value::Str(s)) => s,
                    _ => return Err(need("undoa", "an undo id")),
                };
                let tid = parse_undo_id(&id).ok_or(BadCall::UndoId(id))?;
                let txn = a.next().ok_or(need("undoa", "a transaction id"))?;
                Call::Undoa { tid, txn }
            }
            "vote" => Call::Vote {
                txn: a.next().unwrap_or(Value::None),
            },
            "tpc_finish" => Call::TpcFinish {
                txn: a.next().unwrap_or(Value::None),
            },
            "tpc_abort" => Call::TpcAbort { txn: a.next() },
            "record_iternext" => Call::RecordIternext {
                from: a.next().as_ref().and_then(oid_of).unwrap_or(Oid(0)),
            },
            "pack" => Call::Pack {
                time: match a.next() {
                    Some(Value::Float(f)) => f,
                    Some(Value::Int(i)) => i as f64,
                    _ => return Err(need("pack", "a time")),
                },
                wait: a
                    .next()
                    .is_none_or(|w| !matches!(w, Value::Bool(false) | Value::Int(0))),
            },
            "iterator_start" => Call::IteratorStart {
                start: a.next().as_ref().and_then(tid_of),
                stop: a.next().as_ref().and_then(tid_of),
            },
            "iterator_next" => Call::IteratorNext {
                id: a
                    .next()
                    .as_ref()
                    .and_then(Value::as_i64)
                    .ok_or(need("iterator_next", "an id"))?,
            },
            "iterator_record_start" => Call::IteratorRecordStart {
                id: a
                    .next()
                    .as_ref()
                    .and_then(Value::as_i64)
                    .ok_or(need("iterator_record_start", "an id"))?,
                tid: a.next().as_ref().and_then(tid_of),
            },
            "iterator_record_next" => Call::IteratorRecordNext {
                id: a
                    .next()
                    .as_ref()
                    .and_then(Value::as_i64)
                    .ok_or(need("iterator_record_next", "an id"))?,
            },
            "iterator_gc" => Call::IteratorGc {
                ids: match a.next() {
                    Some(Value::Tuple(ids) | Value::List(ids)) => {
                        ids.iter().filter_map(Value::as_i64).collect()
                    }
                    _ => Vec::new(),
                },
            },
            other => return Err(BadCall::Unknown(other.to_string())),
        };
        Ok(call)
    }

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

    /// The positional arguments, as Python's client sends them.
    pub fn encode(self) -> Vec<Value> {
        match self {
            Call::Register { storage, read_only } => {
                vec![Value::Str(storage), Value::Bool(read_only)]
            }
            Call::LastTransaction | Call::GetInfo | Call::Ping | Call::ServerStatus => Vec::new(),
            Call::SetClientLabel { label } => label.map(Value::Str).into_iter().collect(),
            Call::GetInvalidations { tid } => vec![tid_value(tid)],
            Call::LoadBefore { oid, tid } => vec![oid_value(oid), tid_value(tid)],
            Call::LoadSerial { oid, serial } => vec![oid_value(oid), tid_value(serial)],
            Call::GetTid { oid } => vec![oid_value(oid)],
            Call::NewOids { count } => vec![Value::Int(count)],
            Call::History { oid, size } => vec![oid_value(oid), Value::Int(size)],
            Call::UndoLog { first, last } => vec![Value::Int(first), Value::Int(last)],
            Call::UndoInfo { first, last, spec } => {
                vec![Value::Int(first), Value::Int(last), Value::Dict(spec)]
            }
            Call::TpcBegin {
                txn,
                user,
                description,
                extension,
                tid,
            } => vec![
                txn,
                Value::Bytes(user),
                Value::Bytes(description),
                extension,
                opt_tid_value(tid),
                // The status: ' ' for a normal commit (Python's default).
                Value::str(" "),
            ],
            Call::Storea {
                oid,
                serial,
                data,
                txn,
            } => vec![oid_value(oid), tid_value(serial), Value::Bytes(data), txn],
            Call::DeleteObject { oid, serial, txn }
            | Call::CheckCurrentSerial { oid, serial, txn } => {
                vec![oid_value(oid), tid_value(serial), txn]
            }
            Call::Restorea {
                oid,
                serial,
                data,
                prev_txn,
                txn,
            } => vec![
                oid_value(oid),
                tid_value(serial),
                data.map_or(Value::None, Value::Bytes),
                opt_tid_value(prev_txn),
                txn,
            ],
            Call::Undoa { tid, txn } => vec![Value::Bytes(undo_id(tid).into_bytes()), txn],
            Call::Vote { txn } | Call::TpcFinish { txn } => vec![txn],
            Call::TpcAbort { txn } => txn.into_iter().collect(),
            Call::RecordIternext { from } => vec![oid_value(from)],
            Call::Pack { time, wait } => vec![Value::Float(time), Value::Int(i64::from(wait))],
            Call::IteratorStart { start, stop } => {
                vec![opt_tid_value(start), opt_tid_value(stop)]
            }
            Call::IteratorNext { id } | Call::IteratorRecordNext { id } => vec![Value::Int(id)],
            Call::IteratorRecordStart { id, tid } => vec![Value::Int(id), opt_tid_value(tid)],
            Call::IteratorGc { ids } => {
                vec![Value::List(ids.into_iter().map(Value::Int).collect())]
            }
        }
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

/// `storea`, `deleteObject`, `checkCurrentSerialInTransaction`, `restorea`: an oid, a
/// serial (`None`, or a str of zero bytes from old test code, means new: zero), the
/// operation's own arguments, then the transaction id.
fn decode_txn_op(name: &'static str, mut a: Args) -> Result<Call, BadCall> {
    let need = |needs| BadCall::Args {
        method: name,
        needs,
    };
    let oid = a.next().as_ref().and_then(oid_of).ok_or(need("an oid"))?;
    let serial = a.next().as_ref().and_then(tid_of).unwrap_or(Tid::ZERO);
    Ok(match name {
        "storea" => {
            let data = match a.next() {
                Some(Value::Bytes(data)) => data,
                _ => return Err(need("data")),
            };
            let txn = a.next().ok_or(need("a transaction id"))?;
            Call::Storea {
                oid,
                serial,
                data,
                txn,
            }
        }
        "deleteObject" => Call::DeleteObject {
            oid,
            serial,
            txn: a.next().ok_or(need("a transaction id"))?,
        },
        "restorea" => {
            let data = match a.next() {
                Some(Value::Bytes(d)) => Some(d),
                _ => None,
            };
            let prev_txn = a.next().as_ref().and_then(tid_of);
            Call::Restorea {
                oid,
                serial,
                data,
                prev_txn,
                txn: a.next().ok_or(need("a transaction id"))?,
            }
        }
        _ => Call::CheckCurrentSerial {
            oid,
            serial,
            txn: a.next().ok_or(need("a transaction id"))?,
        },
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;

    /// Every call survives encode then decode unchanged.
    fn check_round_trip(call: Call) {
        let name = call.method();
        let args = Value::Tuple(call.clone().encode());
        assert_eq!(Call::decode(name, args).unwrap(), call, "{name}");
    }

    #[test]
    fn every_call_round_trips() {
        let (oid, tid, txn) = (Oid(7), Tid(0x0405_ed58_1777_7777), Value::Int(3));
        for call in [
            Call::Register {
                storage: "main".into(),
                read_only: true,
            },
            Call::LastTransaction,
            Call::GetInfo,
            Call::Ping,
            Call::SetClientLabel {
                label: Some("web".into()),
            },
            Call::SetClientLabel { label: None },
            Call::ServerStatus,
            Call::GetInvalidations { tid },
            Call::LoadBefore { oid, tid },
            Call::LoadSerial { oid, serial: tid },
            Call::GetTid { oid },
            Call::NewOids { count: 5 },
            Call::History { oid, size: 3 },
            Call::UndoLog { first: 0, last: 20 },
            Call::UndoInfo {
                first: 1,
                last: -5,
                spec: vec![(Value::str("user_name"), Value::Bytes(b"bob".to_vec()))],
            },
            Call::TpcBegin {
                txn: txn.clone(),
                user: b"u".to_vec(),
                description: b"d".to_vec(),
                extension: Value::Dict(vec![]),
                tid: Some(tid),
            },
            Call::Storea {
                oid,
                serial: tid,
                data: b"x".to_vec(),
                txn: txn.clone(),
            },
            Call::DeleteObject {
                oid,
                serial: tid,
                txn: txn.clone(),
            },
            Call::CheckCurrentSerial {
                oid,
                serial: tid,
                txn: txn.clone(),
            },
            Call::Restorea {
                oid,
                serial: tid,
                data: None,
                prev_txn: Some(tid),
                txn: txn.clone(),
            },
            Call::Undoa {
                tid,
                txn: txn.clone(),
            },
            Call::Vote { txn: txn.clone() },
            Call::TpcFinish { txn: txn.clone() },
            Call::TpcAbort {
                txn: Some(txn.clone()),
            },
            Call::TpcAbort { txn: None },
            Call::RecordIternext { from: oid },
            Call::Pack {
                time: 1.5e9,
                wait: true,
            },
            Call::Pack {
                time: 1.5e9,
                wait: false,
            },
            Call::IteratorStart {
                start: None,
                stop: Some(tid),
            },
            Call::IteratorNext { id: 4 },
            Call::IteratorRecordStart {
                id: 4,
                tid: Some(tid),
            },
            Call::IteratorRecordNext { id: 5 },
            Call::IteratorGc { ids: vec![4, 5] },
        ] {
            check_round_trip(call);
        }
    }

    /// What Python sends beside what we send: defaults, str for bytes, ints for bools.
    #[test]
    fn decode_takes_what_python_sends() {
        let t = |items: Vec<Value>| Value::Tuple(items);
        assert_eq!(
            Call::decode("register", t(vec![])).unwrap(),
            Call::Register {
                storage: "1".into(),
                read_only: false
            }
        );
        assert_eq!(
            Call::decode(
                "register",
                t(vec![Value::Bytes(b"1".to_vec()), Value::Int(1)])
            )
            .unwrap(),
            Call::Register {
                storage: "1".into(),
                read_only: true
            }
        );
        assert_eq!(
            Call::decode("new_oids", t(vec![])).unwrap(),
            Call::NewOids { count: 100 }
        );
        assert_eq!(
            Call::decode("undoLog", Value::None).unwrap(),
            Call::UndoLog {
                first: 0,
                last: -20
            }
        );
        assert_eq!(
            Call::decode("pack", t(vec![Value::Int(10), Value::Bool(false)])).unwrap(),
            Call::Pack {
                time: 10.0,
                wait: false
            }
        );
        // A serial of `None` means a new object.
        assert_eq!(
            Call::decode(
                "storea",
                t(vec![
                    oid_value(Oid(1)),
                    Value::None,
                    Value::Bytes(b"d".to_vec()),
                    Value::Int(1)
                ])
            )
            .unwrap(),
            Call::Storea {
                oid: Oid(1),
                serial: Tid::ZERO,
                data: b"d".to_vec(),
                txn: Value::Int(1)
            }
        );
        assert_eq!(
            Call::decode(
                "tpc_begin",
                t(vec![Value::Int(1), Value::str("u"), Value::str("d")])
            )
            .unwrap(),
            Call::TpcBegin {
                txn: Value::Int(1),
                user: b"u".to_vec(),
                description: b"d".to_vec(),
                extension: Value::None,
                tid: None
            }
        );
    }

    /// Malformed arguments get an error naming the method and what it needs.
    #[test]
    fn decode_refuses_malformed_args() {
        let t = |items: Vec<Value>| Value::Tuple(items);
        let err = |name: &str, args| Call::decode(name, args).unwrap_err().to_string();
        assert_eq!(
            err("loadBefore", t(vec![oid_value(Oid(1))])),
            "loadBefore needs an oid and a tid"
        );
        assert_eq!(
            err(
                "storea",
                t(vec![oid_value(Oid(1)), Value::None, Value::Int(3)])
            ),
            "storea needs data"
        );
        assert_eq!(
            err(
                "storea",
                t(vec![oid_value(Oid(1)), Value::None, Value::Bytes(vec![])])
            ),
            "storea needs a transaction id"
        );
        assert_eq!(
            err("deleteObject", t(vec![Value::Bytes(vec![1, 2])])),
            "deleteObject needs an oid"
        );
        assert_eq!(
            err("undoa", t(vec![Value::str("nope"), Value::Int(1)])),
            "bad undo id \"nope\""
        );
        assert_eq!(err("pack", t(vec![])), "pack needs a time");
        assert_eq!(err("iterator_next", t(vec![])), "iterator_next needs an id");
        assert_eq!(err("frobnicate", t(vec![])), "unknown method frobnicate");
    }

    #[test]
    fn load_before_is_sent_with_its_tuple_msgid() {
        let (oid, tid) = (Oid(1), Tid(2));
        let msg = Call::LoadBefore { oid, tid }.into_message(9);
        assert_eq!(msg.msgid, Call::load_msgid(oid, tid));
        assert_eq!(Call::Ping.into_message(9).msgid, Value::Int(9));
        assert!(
            Call::Vote { txn: Value::Int(1) }
                .into_async_message()
                .is_async()
        );
    }

    #[test]
    fn txn_ops_ride_their_calls() {
        let ops = [
            TxnOp::Store {
                oid: Oid(1),
                serial: Tid(2),
                data: b"x".to_vec(),
            },
            TxnOp::Delete {
                oid: Oid(1),
                serial: Tid(2),
            },
            TxnOp::Check {
                oid: Oid(1),
                serial: Tid(2),
            },
            TxnOp::Restore {
                oid: Oid(1),
                serial: Tid(2),
                data: Some(b"y".to_vec()),
                prev_txn: None,
            },
            TxnOp::Undo(Tid(5)),
        ];
        for op in ops {
            let call = op.clone().into_call(Value::Int(4));
            assert!(call.is_one_way());
            assert_eq!(call.into_txn_op(), Some((op, Value::Int(4))));
        }
        assert_eq!(Call::Ping.into_txn_op(), None);
    }
}
