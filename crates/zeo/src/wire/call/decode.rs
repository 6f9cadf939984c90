//! [`Call::decode`]: a call's method name and positional arguments read into a
//! [`Call`], the way the Python server's methods take them (defaults where Python's
//! signatures have them, `str` accepted where old clients send it), and a [`BadCall`]
//! naming the method and what it needs for anything else.

use zodb_pickle::Value;
use zodb_storage::{Oid, Tid, TxnStatus, parse_undo_id};

use super::{BadCall, Call};

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
            "bbru_lease" => Call::Lease,
            "bbru_applied" => Call::LeaseApplied {
                tid: a
                    .next()
                    .as_ref()
                    .and_then(tid_of)
                    .ok_or(need("bbru_applied", "a tid"))?,
            },
            "bbru_lease_end" => Call::LeaseEnd,
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
                status: match text_bytes(a.next()).as_slice() {
                    b"p" => TxnStatus::Packed,
                    _ => TxnStatus::Committed,
                },
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
            "storeBlobStart" => Call::StoreBlobStart,
            "storeBlobChunk" => Call::StoreBlobChunk {
                chunk: match a.next() {
                    Some(Value::Bytes(b)) => b,
                    _ => return Err(need("storeBlobChunk", "a chunk of bytes")),
                },
            },
            "storeBlobEnd" | "storeBlobShared" => {
                let method = if method == "storeBlobEnd" {
                    "storeBlobEnd"
                } else {
                    "storeBlobShared"
                };
                let oid = a
                    .next()
                    .as_ref()
                    .and_then(oid_of)
                    .ok_or(need(method, "an oid"))?;
                let serial = a.next().as_ref().and_then(tid_of).unwrap_or(Tid::ZERO);
                let data = match a.next() {
                    Some(Value::Bytes(d)) => d,
                    _ => return Err(need(method, "data")),
                };
                if method == "storeBlobEnd" {
                    Call::StoreBlobEnd {
                        oid,
                        serial,
                        data,
                        txn: a.next().ok_or(need(method, "a transaction id"))?,
                    }
                } else {
                    let filename = match a.next() {
                        Some(Value::Str(s)) => s,
                        Some(Value::Bytes(b)) => String::from_utf8_lossy(&b).into_owned(),
                        _ => return Err(need(method, "a file name")),
                    };
                    Call::StoreBlobShared {
                        oid,
                        serial,
                        data,
                        filename,
                        txn: a.next().ok_or(need(method, "a transaction id"))?,
                    }
                }
            }
            "sendBlob" => {
                let oid = a.next().as_ref().and_then(oid_of);
                let serial = a.next().as_ref().and_then(tid_of);
                let (Some(oid), Some(serial)) = (oid, serial) else {
                    return Err(need("sendBlob", "an oid and a serial"));
                };
                Call::SendBlob { oid, serial }
            }
            other => return Err(BadCall::Unknown(other.to_string())),
        };
        Ok(call)
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
