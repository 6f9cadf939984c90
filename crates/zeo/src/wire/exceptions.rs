//! Exceptions across the wire (spec §2.4): the payloads our server must send so the
//! Python client raises the right exception, and [`parse_error`], which turns an error
//! reply into a [`RemoteError`] for our client.
//!
//! An error reply's args are `(class_name, payload)`: `class_name` is the exception's
//! `module.qualname`, `payload` its instance `__dict__` if non-empty, else its `args`.
//!
//! ```text
//! class_name                                   payload
//! ZODB.POSException.POSKeyError                (oid,)   or ("No blob file", oid, serial)
//! ZODB.POSException.ReadOnlyError              ()
//! ZODB.POSException.StorageTransactionError    (text, ...)
//! ZODB.POSException.ConflictError              {'message': str, 'oid': oid | None,
//! ZODB.POSException.ReadConflictError           'class_name': str | None,
//!                                               'serials': (current_tid, sent_serial) | None}
//! ZODB.POSException.BTreesConflictError        {'p1':…, 'p2':…, 'p3':…, 'reason': int}
//! ZODB.POSException.MultipleUndoErrors         {'_errs': [(reason, oid), ...]}  (ours)
//!                                              {'_errs': [(oid, <_recon UndoError>), ...]}
//!                                                                       (Python's server)
//! anything else (builtins.ValueError, ...)     args tuple or __dict__
//! ```
//!
//! The Python client needs `message`, `oid` and `serials` for a conflict (it raises
//! `KeyError` without one of them); our parser is lenient and never fails.

use zodb_pickle::Value;

use crate::limits::{ERROR_TEXT_BYTES_MAX, VALUE_WALK_DEPTH_MAX};

/// `ZODB.POSException.POSKeyError`.
pub const POS_KEY_ERROR: &str = "ZODB.POSException.POSKeyError";
/// `ZODB.POSException.ReadOnlyError`.
pub const READ_ONLY_ERROR: &str = "ZODB.POSException.ReadOnlyError";
/// `ZODB.POSException.StorageTransactionError`.
pub const STORAGE_TRANSACTION_ERROR: &str = "ZODB.POSException.StorageTransactionError";
/// `ZODB.POSException.ConflictError`.
pub const CONFLICT_ERROR: &str = "ZODB.POSException.ConflictError";
/// `ZODB.POSException.ReadConflictError`.
pub const READ_CONFLICT_ERROR: &str = "ZODB.POSException.ReadConflictError";
/// `ZODB.POSException.BTreesConflictError`.
pub const BTREES_CONFLICT_ERROR: &str = "ZODB.POSException.BTreesConflictError";
/// `ZODB.POSException.UndoError`.
pub const UNDO_ERROR: &str = "ZODB.POSException.UndoError";
/// `ZODB.POSException.MultipleUndoErrors`.
pub const MULTIPLE_UNDO_ERRORS: &str = "ZODB.POSException.MultipleUndoErrors";

/// The `__dict__` of a `ConflictError` (or `ReadConflictError`) as the Python server sends
/// it, keys in its order: `message`, `oid`, `class_name` (`None` when unknown),
/// `serials` = `(currently committed tid, serial the client sent)`.
///
/// Observed (spec \[obs\]): `{'message': 'database conflict error', 'oid': oid, 'class_name':
/// 'persistent.mapping.PersistentMapping', 'serials': (cur, old)}`; a read conflict has
/// message `'database read conflict error'`.  Send it with `Message::error(msgid,
/// CONFLICT_ERROR or READ_CONFLICT_ERROR, payload)`.
pub fn error_payload_conflict(
    message: &str,
    oid: [u8; 8],
    serials: ([u8; 8], [u8; 8]),
    class_name: Option<&str>,
) -> Value {
    Value::Dict(vec![
        (Value::str("message"), Value::str(message)),
        (Value::str("oid"), Value::Bytes(oid.to_vec())),
        (
            Value::str("class_name"),
            class_name.map_or(Value::None, Value::str),
        ),
        (
            Value::str("serials"),
            Value::Tuple(vec![
                Value::Bytes(serials.0.to_vec()),
                Value::Bytes(serials.1.to_vec()),
            ]),
        ),
    ])
}

/// The payload of a `MultipleUndoErrors` error reply in the form the Python client can
/// use without our classes: `{'_errs': [(reason, oid), ...]}` (the client calls
/// `UndoError(*_errs[0])`, i.e. `UndoError(reason, oid)`).
pub fn error_payload_undo(errors: &[(String, [u8; 8])]) -> Value {
    Value::Dict(vec![(
        Value::str("_errs"),
        Value::List(
            errors
                .iter()
                .map(|(reason, oid)| {
                    Value::Tuple(vec![
                        Value::str(reason.as_str()),
                        Value::Bytes(oid.to_vec()),
                    ])
                })
                .collect(),
        ),
    )])
}

/// An exception the server reported, as our client sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum RemoteError {
    /// `POSKeyError`: no such object (or revision, or blob file).
    PosKeyError {
        /// The first 8-byte bytes argument (the oid), if any.
        oid: Option<[u8; 8]>,
        /// The arguments, rendered.
        text: String,
    },
    /// `ReadOnlyError`: the storage is read-only.
    ReadOnlyError,
    /// `StorageTransactionError`: a call out of transaction order.
    StorageTransactionError(String),
    /// `ConflictError`, `ReadConflictError` or `BTreesConflictError`: retry the
    /// transaction.
    ConflictError {
        /// The exception's message.
        message: String,
        /// The object in conflict, if known.
        oid: Option<[u8; 8]>,
        /// `(currently committed tid, serial the client sent)`, if known.
        serials: Option<([u8; 8], [u8; 8])>,
        /// The object's class `module.name`, if known.
        class_name: Option<String>,
        /// Whether it was a `ReadConflictError`.
        read_conflict: bool,
    },
    /// `UndoError` / `MultipleUndoErrors`: the reasons given.
    UndoError(Vec<String>),
    /// Anything else (`builtins.ValueError` for an unknown storage, ...).
    Other {
        /// The exception's `module.qualname`.
        class_name: String,
        /// The payload, rendered.
        text: String,
    },
}

/// Interprets an error reply's `(class_name, payload)` (`Message::error_parts`); never
/// fails: what does not fit a known shape becomes [`RemoteError::Other`] or is left out.
pub fn parse_error(class_name: &str, payload: &Value) -> RemoteError {
    match class_name {
        POS_KEY_ERROR => RemoteError::PosKeyError {
            oid: items(payload).iter().find_map(as_oid),
            text: render_args(payload),
        },
        READ_ONLY_ERROR => RemoteError::ReadOnlyError,
        STORAGE_TRANSACTION_ERROR => RemoteError::StorageTransactionError(render_args(payload)),
        CONFLICT_ERROR | READ_CONFLICT_ERROR => {
            let read_conflict = class_name == READ_CONFLICT_ERROR;
            let default = if read_conflict {
                "database read conflict error"
            } else {
                "database conflict error"
            };
            match payload {
                Value::Dict(_) => RemoteError::ConflictError {
                    message: payload
                        .get("message")
                        .and_then(Value::as_str)
                        .unwrap_or(default)
                        .to_owned(),
                    oid: payload.get("oid").and_then(as_oid),
                    serials: payload.get("serials").and_then(|s| match items(s) {
                        [a, b] => Some((as_oid(a)?, as_oid(b)?)),
                        _ => None,
                    }),
                    class_name: payload
                        .get("class_name")
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    read_conflict,
                },
                _ => RemoteError::ConflictError {
                    message: render_args(payload),
                    oid: None,
                    serials: None,
                    class_name: None,
                    read_conflict,
                },
            }
        }
        BTREES_CONFLICT_ERROR => RemoteError::ConflictError {
            message: format!("BTrees conflict error: {}", render(payload)),
            oid: None,
            serials: None,
            class_name: None,
            read_conflict: false,
        },
        MULTIPLE_UNDO_ERRORS => {
            let errs = payload.get("_errs").map_or(&[][..], items);
            RemoteError::UndoError(
                errs.iter()
                    .map(|e| first_text(e, 0).unwrap_or_else(|| render(e)))
                    .collect(),
            )
        }
        UNDO_ERROR => RemoteError::UndoError(vec![
            first_text(payload, 0).unwrap_or_else(|| render(payload)),
        ]),
        _ => RemoteError::Other {
            class_name: class_name.to_owned(),
            text: render_args(payload),
        },
    }
}

impl std::fmt::Display for RemoteError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RemoteError::PosKeyError { text, .. } => write!(f, "POSKeyError: {text}"),
            RemoteError::ReadOnlyError => write!(f, "ReadOnlyError"),
            RemoteError::StorageTransactionError(text) => {
                write!(f, "StorageTransactionError: {text}")
            }
            RemoteError::ConflictError {
                message,
                oid,
                class_name,
                ..
            } => {
                write!(f, "{message}")?;
                if let Some(oid) = oid {
                    write!(f, " (oid 0x{:x}", u64::from_be_bytes(*oid))?;
                    if let Some(c) = class_name {
                        write!(f, ", class {c}")?;
                    }
                    write!(f, ")")?;
                }
                Ok(())
            }
            RemoteError::UndoError(reasons) => write!(f, "UndoError: {}", reasons.join("; ")),
            RemoteError::Other { class_name, text } => write!(f, "{class_name}: {text}"),
        }
    }
}

impl std::error::Error for RemoteError {}

/// The items of a tuple or list; nothing for anything else.
fn items(v: &Value) -> &[Value] {
    match v {
        Value::Tuple(items) | Value::List(items) => items,
        _ => &[],
    }
}

fn as_oid(v: &Value) -> Option<[u8; 8]> {
    v.as_bytes()?.try_into().ok()
}

/// Python's `str(exc)` for an args payload: the lone str argument itself, else the repr
/// of the args (a dict payload: its `message` if it has one).
fn render_args(payload: &Value) -> String {
    match payload {
        Value::Tuple(items) | Value::List(items) => match items.as_slice() {
            [] => String::new(),
            [Value::Str(s)] => truncate(s.clone()),
            [one] => render(one),
            _ => render(payload),
        },
        Value::Dict(_) => match payload.get("message").and_then(Value::as_str) {
            Some(m) => truncate(m.to_owned()),
            None => render(payload),
        },
        other => render(other),
    }
}

/// The first text found depth-first, preferring an UndoError's `_reason`.
fn first_text(v: &Value, depth: usize) -> Option<String> {
    if depth > VALUE_WALK_DEPTH_MAX {
        return None;
    }
    let d = depth.saturating_add(1);
    match v {
        Value::Str(s) => Some(truncate(s.clone())),
        Value::Tuple(items) | Value::List(items) => items.iter().find_map(|i| first_text(i, d)),
        Value::Dict(pairs) => match v.get("_reason") {
            Some(reason) => first_text(reason, d),
            None => pairs.iter().find_map(|(_, val)| first_text(val, d)),
        },
        Value::Reduce { args, .. } | Value::NewObj { args, .. } => first_text(args, d),
        Value::Build { state, .. } => first_text(state, d),
        _ => None,
    }
}

/// A Python-like repr of a value, cut at `limits::ERROR_TEXT_BYTES_MAX` bytes.
fn render(v: &Value) -> String {
    let mut out = String::new();
    repr(v, &mut out, 0);
    truncate(out)
}

fn truncate(mut s: String) -> String {
    if s.len() > ERROR_TEXT_BYTES_MAX {
        let mut end = ERROR_TEXT_BYTES_MAX;
        while !s.is_char_boundary(end) {
            end = end.saturating_sub(1);
        }
        s.truncate(end);
        s.push('…');
    }
    s
}

fn repr(v: &Value, out: &mut String, depth: usize) {
    use std::fmt::Write;
    if depth > VALUE_WALK_DEPTH_MAX || out.len() > ERROR_TEXT_BYTES_MAX {
        out.push_str("...");
        return;
    }
    let d = depth.saturating_add(1);
    let seq = |items: &[Value], open: &str, close: &str, out: &mut String| {
        out.push_str(open);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                out.push_str(", ");
            }
            repr(item, out, d);
        }
        if items.len() == 1 && open == "(" {
            out.push(',');
        }
        out.push_str(close);
    };
    // Writing into a String cannot fail.
    let _ = match v {
        Value::None => write!(out, "None"),
        Value::Bool(true) => write!(out, "True"),
        Value::Bool(false) => write!(out, "False"),
        Value::Int(i) => write!(out, "{i}"),
        Value::BigInt(le) => {
            out.push_str("0x");
            le.iter().rev().try_for_each(|b| write!(out, "{b:02x}"))
        }
        Value::Float(f) => write!(out, "{f:?}"),
        Value::Bytes(b) => {
            out.push_str("b'");
            for &c in b {
                if out.len() > ERROR_TEXT_BYTES_MAX {
                    break;
                }
                match c {
                    b'\\' => out.push_str("\\\\"),
                    b'\'' => out.push_str("\\'"),
                    0x20..=0x7e => out.push(char::from(c)),
                    _ => {
                        let _ = write!(out, "\\x{c:02x}");
                    }
                }
            }
            write!(out, "'")
        }
        Value::Str(s) => write!(out, "{s:?}"),
        Value::Tuple(items) => {
            seq(items, "(", ")", out);
            Ok(())
        }
        Value::List(items) => {
            seq(items, "[", "]", out);
            Ok(())
        }
        Value::Set(items) | Value::FrozenSet(items) => {
            seq(items, "{", "}", out);
            Ok(())
        }
        Value::Dict(pairs) => {
            out.push('{');
            for (i, (k, val)) in pairs.iter().enumerate() {
                if i > 0 {
                    out.push_str(", ");
                }
                repr(k, out, d);
                out.push_str(": ");
                repr(val, out, d);
            }
            write!(out, "}}")
        }
        Value::Global { module, name } => write!(out, "{module}.{name}"),
        Value::Reduce { callable, args }
        | Value::NewObj {
            cls: callable,
            args,
        } => {
            repr(callable, out, d);
            repr(args, out, d);
            Ok(())
        }
        Value::Inst { module, name, .. } => write!(out, "<{module}.{name} instance>"),
        Value::Obj { cls, .. } => {
            out.push('<');
            repr(cls, out, d);
            write!(out, " instance>")
        }
        Value::Build { object, .. }
        | Value::ListItems { object, .. }
        | Value::DictItems { object, .. } => {
            repr(object, out, d);
            Ok(())
        }
        Value::PersistentRef(_) => write!(out, "<persistent reference>"),
    };
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::wire::{Encoding, Message, decode, encode};

    const OID: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];
    const TID: [u8; 8] = [0x04, 0x0d, 0x3c, 0x11, 0xe4, 0xb3, 0x0d, 0xdd];
    const SERIAL: [u8; 8] = [0x03, 0xff, 0, 0, 0, 0, 0, 0xaa];

    #[test]
    fn conflict_payload_matches_python_server() {
        // Python 6.2: encoder(b'Z')(7, 2, '.reply', reduce_exception(ConflictError(oid=OID,
        // serials=(TID, SERIAL), data=<PersistentMapping record>))).
        let python = hex::decode(
            "8003284b074b0258060000002e7265706c79581f0000005a4f44422e504f53457863657074696f6e\
             2e436f6e666c6963744572726f727d2858070000006d6573736167655817000000646174616261\
             736520636f6e666c696374206572726f7258030000006f696443080000000000000001580a0000\
             00636c6173735f6e616d65582400000070657273697374656e742e6d617070696e672e50657273\
             697374656e744d617070696e67580700000073657269616c734308040d3c11e4b30ddd430803ff\
             0000000000aa867586742e",
        )
        .unwrap();
        let payload = error_payload_conflict(
            "database conflict error",
            OID,
            (TID, SERIAL),
            Some("persistent.mapping.PersistentMapping"),
        );
        let msg = Message::error(Value::Int(7), CONFLICT_ERROR, payload);
        assert_eq!(
            hex::encode(encode(Encoding::Pickle, &msg).unwrap()),
            hex::encode(&python)
        );
        // And msgpack, as the Python server's `server_default` hook writes the exception.
        let python_m = hex::decode(
            "940702a62e7265706c7992bf5a4f44422e504f53457863657074696f6e2e436f6e666c69637445\
             72726f7284a76d657373616765b7646174616261736520636f6e666c696374206572726f72a36f\
             6964c4080000000000000001aa636c6173735f6e616d65d92470657273697374656e742e6d6170\
             70696e672e50657273697374656e744d617070696e67a773657269616c7392c408040d3c11e4b3\
             0dddc40803ff0000000000aa",
        )
        .unwrap();
        assert_eq!(
            hex::encode(encode(Encoding::Msgpack, &msg).unwrap()),
            hex::encode(&python_m)
        );

        for (enc, bytes) in [(Encoding::Pickle, &python), (Encoding::Msgpack, &python_m)] {
            let back = decode(enc, bytes).unwrap();
            let (class, payload) = back.error_parts().unwrap();
            assert_eq!(
                parse_error(class, payload),
                RemoteError::ConflictError {
                    message: "database conflict error".into(),
                    oid: Some(OID),
                    serials: Some((TID, SERIAL)),
                    class_name: Some("persistent.mapping.PersistentMapping".into()),
                    read_conflict: false,
                }
            );
        }
    }

    #[test]
    fn read_conflict_with_no_class() {
        let payload =
            error_payload_conflict("database read conflict error", OID, (TID, SERIAL), None);
        assert_eq!(payload.get("class_name"), Some(&Value::None));
        let e = parse_error(READ_CONFLICT_ERROR, &payload);
        assert!(matches!(
            e,
            RemoteError::ConflictError {
                read_conflict: true,
                class_name: None,
                ..
            }
        ));
        assert_eq!(e.to_string(), "database read conflict error (oid 0x1)");
    }

    #[test]
    fn known_and_unknown_classes() {
        let t = |items: Vec<Value>| Value::Tuple(items);
        assert_eq!(
            parse_error(POS_KEY_ERROR, &t(vec![Value::Bytes(OID.to_vec())])),
            RemoteError::PosKeyError {
                oid: Some(OID),
                text: "b'\\x00\\x00\\x00\\x00\\x00\\x00\\x00\\x01'".into()
            }
        );
        let blob = t(vec![
            Value::str("No blob file"),
            Value::Bytes(OID.to_vec()),
            Value::Bytes(TID.to_vec()),
        ]);
        assert!(matches!(
            parse_error(POS_KEY_ERROR, &blob),
            RemoteError::PosKeyError { oid: Some(OID), .. }
        ));
        assert_eq!(
            parse_error(READ_ONLY_ERROR, &t(vec![])),
            RemoteError::ReadOnlyError
        );
        assert_eq!(
            parse_error(
                STORAGE_TRANSACTION_ERROR,
                &t(vec![Value::str(
                    "Duplicate tpc_begin calls for same transaction"
                )])
            ),
            RemoteError::StorageTransactionError(
                "Duplicate tpc_begin calls for same transaction".into()
            )
        );
        // [obs] unknown storage.
        assert_eq!(
            parse_error(
                "builtins.ValueError",
                &t(vec![Value::str("unknown storage: nope")])
            ),
            RemoteError::Other {
                class_name: "builtins.ValueError".into(),
                text: "unknown storage: nope".into()
            }
        );
        assert!(matches!(
            parse_error(
                BTREES_CONFLICT_ERROR,
                &Value::Dict(vec![(Value::str("reason"), Value::Int(1))])
            ),
            RemoteError::ConflictError { oid: None, .. }
        ));
        // Malformed payloads never fail.
        assert!(matches!(
            parse_error(CONFLICT_ERROR, &Value::None),
            RemoteError::ConflictError { oid: None, .. }
        ));
        assert_eq!(
            parse_error(MULTIPLE_UNDO_ERRORS, &Value::Int(3)),
            RemoteError::UndoError(vec![])
        );
    }

    #[test]
    fn undo_errors_both_forms() {
        // Ours: {'_errs': [(reason, oid)]}.
        let ours = error_payload_undo(&[("non-undoable transaction".into(), OID)]);
        assert_eq!(
            parse_error(MULTIPLE_UNDO_ERRORS, &ours),
            RemoteError::UndoError(vec!["non-undoable transaction".into()])
        );
        // Python's: {'_errs': [(oid, _recon(UndoError, {'_reason': ..., '_oid': oid}))]}.
        let recon = Value::Reduce {
            callable: Box::new(Value::global("ZODB.POSException", "_recon")),
            args: Box::new(Value::Tuple(vec![
                Value::global("ZODB.POSException", "UndoError"),
                Value::Dict(vec![
                    (Value::str("_oid"), Value::Bytes(OID.to_vec())),
                    (
                        Value::str("_reason"),
                        Value::str("Some data were modified by a later transaction"),
                    ),
                ]),
            ])),
        };
        let python = Value::Dict(vec![(
            Value::str("_errs"),
            Value::List(vec![Value::Tuple(vec![Value::Bytes(OID.to_vec()), recon])]),
        )]);
        assert_eq!(
            parse_error(MULTIPLE_UNDO_ERRORS, &python),
            RemoteError::UndoError(vec![
                "Some data were modified by a later transaction".into()
            ])
        );
    }

    #[test]
    fn render_is_bounded() {
        let big = Value::Tuple(vec![Value::Bytes(vec![0xff; 100_000]), Value::Int(1)]);
        let text = render_args(&big);
        assert!(text.len() <= ERROR_TEXT_BYTES_MAX + '…'.len_utf8());
        assert_eq!(render(&Value::Tuple(vec![Value::Int(1)])), "(1,)");
        assert_eq!(
            render(&Value::Dict(vec![(
                Value::str("a"),
                Value::List(vec![Value::None, Value::Bool(true)])
            )])),
            "{\"a\": [None, True]}"
        );
    }
}
