//! [`Call::encode`]: a call's positional arguments as our client sends them, which is
//! what Python's `ClientStorage` sends.

use zodb_pickle::Value;
use zodb_storage::{Tid, undo_id};

use super::{Call, oid_value, tid_value};

fn opt_tid_value(tid: Option<Tid>) -> Value {
    tid.map_or(Value::None, tid_value)
}

impl Call {
    /// The positional arguments, as Python's client sends them.
    pub fn encode(self) -> Vec<Value> {
        match self {
            Call::Register { storage, read_only } => {
                vec![Value::Str(storage), Value::Bool(read_only)]
            }
            Call::LastTransaction
            | Call::GetInfo
            | Call::Ping
            | Call::ServerStatus
            | Call::Lease
            | Call::LeaseEnd => Vec::new(),
            Call::LeaseApplied { tid } => vec![tid_value(tid)],
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
                status,
            } => vec![
                txn,
                Value::Bytes(user),
                Value::Bytes(description),
                extension,
                opt_tid_value(tid),
                Value::str(status.as_char().to_string()),
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
            Call::StoreBlobStart => Vec::new(),
            Call::StoreBlobChunk { chunk } => vec![Value::Bytes(chunk)],
            Call::StoreBlobEnd {
                oid,
                serial,
                data,
                txn,
            } => vec![oid_value(oid), tid_value(serial), Value::Bytes(data), txn],
            Call::StoreBlobShared {
                oid,
                serial,
                data,
                filename,
                txn,
            } => vec![
                oid_value(oid),
                tid_value(serial),
                Value::Bytes(data),
                Value::Str(filename),
                txn,
            ],
            Call::SendBlob { oid, serial } => vec![oid_value(oid), tid_value(serial)],
        }
    }
}
