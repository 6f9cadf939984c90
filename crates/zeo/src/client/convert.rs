//! Between the client's storage API and the wire's values (the calls and replies
//! themselves are typed in `crate::wire`): the extension `tpc_begin` sends, the vote
//! result as conflicts, and the mapping of error replies, malformed replies and lost
//! connections onto [`StorageError`].
//!
//! Error mapping (spec §2.4):
//!
//! ```text
//! POSKeyError                         PosKey (oid from the payload, else the call's)
//! ConflictError / ReadConflictError   Conflict { oid, committed, expected } from the
//!                                     'oid' and 'serials' (committed, sent) payload keys;
//!                                     read_conflict for the read one; a missing key
//!                                     (BTreesConflictError) reads as oid/serials zero
//! ReadOnlyError                       ReadOnly
//! StorageTransactionError             LockTimeout when its text is a lock timeout's
//!                                     (`zodb_storage::LOCK_TIMEOUT_TEXT`), else Transaction
//! UndoError / MultipleUndoErrors      Undo (one message per error)
//! anything else, from pack            Pack (server's class and text)
//! anything else, from 2PC calls       Transaction (server's class and text), e.g.
//!                                     Python's AssertionError "finished called wo lock"
//! anything else                       Io (kind Other; context names the method, the
//!                                     message is the server's class and text)
//! connection lost / never made /     Disconnected, text says which
//! no reply within a call's deadline
//! message we could not encode         Io (InvalidInput)
//! malformed reply                     Io (InvalidData)
//! ```

use std::io;

use zodb_pickle::Value;
use zodb_storage::{ConflictError, Oid, StorageError, Tid};

use super::connection::CallError;
use crate::wire::{self, BadReply, RemoteError, VoteReply};

/// Which kind of call failed, for the errors that depend on it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CallKind {
    Read,
    Commit,
    Pack,
}

/// A count as a wire int (saturating).
pub(crate) fn int_value(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn bad_reply(what: &str, got: &Value) -> StorageError {
    reply_error(BadReply::new(what, got))
}

/// A malformed reply as the storage error callers get (`Io`, kind `InvalidData`).
pub(crate) fn reply_error(e: BadReply) -> StorageError {
    StorageError::io(
        format!("ZEO reply to {}", e.method),
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("unexpected reply {}", e.shown),
        ),
    )
}

/// The extension dict to send with `tpc_begin`: our pickle bytes decoded (`{}` when
/// empty).
pub(crate) fn extension_value(bytes: &[u8]) -> Result<Value, StorageError> {
    if bytes.is_empty() {
        return Ok(Value::Dict(Vec::new()));
    }
    match zodb_pickle::decode(bytes) {
        Ok((v @ Value::Dict(_), _)) => Ok(v),
        Ok((other, _)) => match wire::simplify(other) {
            v @ Value::Dict(_) => Ok(v),
            _ => Err(StorageError::Transaction(
                "the transaction extension is not a pickled dict".into(),
            )),
        },
        Err(e) => Err(StorageError::Transaction(format!(
            "the transaction extension is no readable pickle: {e}"
        ))),
    }
}

/// What a successful `vote` reply says: oids the server resolved or undo touched, and
/// conflicts it left to us (client-side conflict resolution mode), which we do not
/// resolve but report.
pub(crate) fn vote_result(reply: &Value) -> Result<(Vec<Oid>, Vec<ConflictError>), StorageError> {
    let VoteReply { changed, conflicts } = VoteReply::decode(reply).map_err(reply_error)?;
    let conflicts = conflicts
        .into_iter()
        .map(|c| ConflictError {
            oid: c.oid,
            committed: c.committed,
            expected: c.expected,
            read_conflict: false,
        })
        .collect();
    Ok((changed, conflicts))
}

/// The error a lost (or never made) connection gives.
pub(crate) fn disconnected(why: impl Into<String>) -> StorageError {
    StorageError::Disconnected(why.into())
}

/// A `StorageTransactionError`'s text as a lock timeout, if it is one; the time waited
/// is read back from the text (zero if it does not say).
fn lock_timeout(text: &str) -> Option<StorageError> {
    let at = text.find(zodb_storage::LOCK_TIMEOUT_TEXT)?;
    let rest = &text[at + zodb_storage::LOCK_TIMEOUT_TEXT.len()..];
    let waited = rest
        .split_once("(waited ")
        .and_then(|(_, r)| r.split_once(' '))
        .and_then(|(n, _)| n.parse::<f64>().ok())
        .filter(|n| n.is_finite() && *n >= 0.0)
        .map(std::time::Duration::from_secs_f64)
        .unwrap_or_default();
    Some(StorageError::LockTimeout { waited })
}

/// Maps a failed call (see the module doc).
pub(crate) fn call_error(
    method: &str,
    kind: CallKind,
    oid: Option<Oid>,
    e: CallError,
) -> StorageError {
    match e {
        CallError::Disconnected(why) => disconnected(why),
        CallError::Encode(why) => StorageError::io(
            format!("ZEO call {method}"),
            io::Error::new(io::ErrorKind::InvalidInput, why),
        ),
        CallError::Remote(remote) => remote_error(method, kind, oid, remote),
    }
}

fn remote_error(method: &str, kind: CallKind, oid: Option<Oid>, e: RemoteError) -> StorageError {
    match e {
        RemoteError::PosKeyError { oid: found, text } => StorageError::PosKey {
            oid: found.map(Oid::from_bytes).or(oid).unwrap_or_default(),
            detail: Some(format!("ZEO server: POSKeyError {text}")),
        },
        RemoteError::ReadOnlyError => StorageError::ReadOnly,
        RemoteError::StorageTransactionError(text) => {
            lock_timeout(&text).unwrap_or(StorageError::Transaction(text))
        }
        RemoteError::ConflictError {
            oid: found,
            serials,
            read_conflict,
            ..
        } => {
            let (committed, expected) = serials
                .map(|(c, e)| (Tid::from_bytes(c), Tid::from_bytes(e)))
                .unwrap_or_default();
            StorageError::Conflict(ConflictError {
                oid: found.map(Oid::from_bytes).or(oid).unwrap_or_default(),
                committed,
                expected,
                read_conflict,
            })
        }
        RemoteError::UndoError(reasons) => StorageError::Undo(if reasons.is_empty() {
            vec!["the server could not undo the transaction".into()]
        } else {
            reasons
        }),
        other => {
            let text = other.to_string();
            match kind {
                CallKind::Pack => StorageError::Pack(text),
                CallKind::Commit => StorageError::Transaction(text),
                CallKind::Read => StorageError::io(
                    format!("ZEO server error in {method}"),
                    io::Error::other(text),
                ),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn oid_value(oid: Oid) -> Value {
        Value::Bytes(oid.to_bytes().to_vec())
    }

    fn tid_value(tid: Tid) -> Value {
        Value::Bytes(tid.to_bytes().to_vec())
    }

    #[test]
    fn vote_results() {
        let oid = Oid(7);
        let reply = Value::Tuple(vec![
            oid_value(Oid(3)),
            Value::Dict(vec![
                (Value::str("oid"), oid_value(oid)),
                (
                    Value::str("serials"),
                    Value::Tuple(vec![tid_value(Tid(9)), tid_value(Tid(5))]),
                ),
                (Value::str("data"), Value::Bytes(b"x".to_vec())),
            ]),
        ]);
        let (changed, conflicts) = vote_result(&reply).unwrap();
        assert_eq!(changed, vec![Oid(3)]);
        assert_eq!(
            conflicts,
            vec![ConflictError {
                oid,
                committed: Tid(9),
                expected: Tid(5),
                read_conflict: false
            }]
        );
        assert!(vote_result(&Value::Int(3)).is_err());
    }

    #[test]
    fn error_mapping() {
        let e = call_error(
            "vote",
            CallKind::Commit,
            None,
            CallError::Remote(wire::parse_error(
                "builtins.AssertionError",
                &Value::Tuple(vec![Value::str("finished called wo lock")]),
            )),
        );
        assert!(matches!(e, StorageError::Transaction(_)), "{e:?}");
        let e = call_error(
            "loadBefore",
            CallKind::Read,
            Some(Oid(4)),
            CallError::Remote(wire::parse_error(
                "ZODB.POSException.POSKeyError",
                &Value::Tuple(vec![]),
            )),
        );
        assert!(
            matches!(e, StorageError::PosKey { oid: Oid(4), .. }),
            "{e:?}"
        );
        let e = call_error(
            "x",
            CallKind::Read,
            None,
            CallError::Disconnected("gone".into()),
        );
        assert!(
            matches!(&e, StorageError::Disconnected(why) if why == "gone"),
            "{e:?}"
        );
        let lock = StorageError::LockTimeout {
            waited: std::time::Duration::from_millis(1500),
        };
        let e = remote_error(
            "vote",
            CallKind::Commit,
            None,
            RemoteError::StorageTransactionError(lock.to_string()),
        );
        assert!(
            matches!(e, StorageError::LockTimeout { waited } if waited == std::time::Duration::from_millis(1500)),
            "{e:?}"
        );
        let e = remote_error(
            "vote",
            CallKind::Commit,
            None,
            RemoteError::StorageTransactionError("Already voting (locked)".into()),
        );
        assert!(matches!(e, StorageError::Transaction(_)), "{e:?}");
    }
}
