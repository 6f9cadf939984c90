//! How storage errors travel to a ZEO client: the Python exception class
//! name and the payload `ZEO.asyncio.client` rebuilds it from
//! (`docs/spec/zeo-protocol.md` §2.4).

use zodb_pickle::Value;
use zodb_storage::{ConflictError, StorageError};

fn bytes(b: [u8; 8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn conflict_payload(c: &ConflictError) -> Value {
    let message = if c.read_conflict {
        "database read conflict error"
    } else {
        "database conflict error"
    };
    Value::Dict(vec![
        (Value::str("message"), Value::str(message)),
        (Value::str("oid"), bytes(c.oid.to_bytes())),
        (
            Value::str("serials"),
            Value::Tuple(vec![
                bytes(c.committed.to_bytes()),
                bytes(c.expected.to_bytes()),
            ]),
        ),
        (Value::str("class_name"), Value::None),
    ])
}

/// The conflict-error class name for `c`.
pub fn conflict_class(c: &ConflictError) -> &'static str {
    if c.read_conflict {
        "ZODB.POSException.ReadConflictError"
    } else {
        "ZODB.POSException.ConflictError"
    }
}

/// `(class name, payload)` for an error reply.
pub fn to_remote(e: &StorageError) -> (&'static str, Value) {
    match e {
        StorageError::PosKey { oid, .. } => (
            "ZODB.POSException.POSKeyError",
            Value::Tuple(vec![bytes(oid.to_bytes())]),
        ),
        StorageError::Conflict(c) => (conflict_class(c), conflict_payload(c)),
        StorageError::Conflicts(cs) => match cs.first() {
            Some(c) => (conflict_class(c), conflict_payload(c)),
            None => ("ZODB.POSException.ConflictError", Value::Tuple(vec![])),
        },
        StorageError::ReadOnly => ("ZODB.POSException.ReadOnlyError", Value::Tuple(vec![])),
        // Python clients know no lock-timeout class; ours recognise the text
        // (`zodb_storage::LOCK_TIMEOUT_TEXT`).
        StorageError::LockTimeout { .. } => (
            "ZODB.POSException.StorageTransactionError",
            Value::Tuple(vec![Value::str(e.to_string())]),
        ),
        StorageError::Transaction(m) => (
            "ZODB.POSException.StorageTransactionError",
            Value::Tuple(vec![Value::str(m.clone())]),
        ),
        StorageError::Undo(messages) => (
            "ZODB.POSException.MultipleUndoErrors",
            Value::Dict(vec![(
                Value::str("_errs"),
                Value::List(
                    messages
                        .iter()
                        .map(|m| Value::Tuple(vec![Value::str(m.clone()), Value::None]))
                        .collect(),
                ),
            )]),
        ),
        other => (
            "ZODB.POSException.StorageError",
            Value::Tuple(vec![Value::str(other.to_string())]),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zodb_storage::{Oid, Tid};

    #[test]
    fn conflicts_carry_what_the_python_client_needs() {
        let c = ConflictError {
            oid: Oid(1),
            committed: Tid(9),
            expected: Tid(5),
            read_conflict: false,
        };
        let (class, payload) = to_remote(&StorageError::Conflict(c));
        assert_eq!(class, "ZODB.POSException.ConflictError");
        assert_eq!(
            payload.get("oid"),
            Some(&Value::Bytes(1u64.to_be_bytes().to_vec()))
        );
        assert_eq!(
            payload.get("serials"),
            Some(&Value::Tuple(vec![
                Value::Bytes(9u64.to_be_bytes().to_vec()),
                Value::Bytes(5u64.to_be_bytes().to_vec())
            ]))
        );
        let (class, payload) = to_remote(&StorageError::pos_key(Oid(3)));
        assert_eq!(class, "ZODB.POSException.POSKeyError");
        assert_eq!(
            payload,
            Value::Tuple(vec![Value::Bytes(3u64.to_be_bytes().to_vec())])
        );
    }
}
