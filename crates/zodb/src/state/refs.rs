//! Persistent ids (pids) in states: the forms of record-format §4, read and written.

use zodb_pickle::Value;
use zodb_storage::Oid;

/// What a pid refers to.  The class borrows from the pid: a container's state holds one
/// pid per item, and commit and decoding classify each of them.
#[derive(Debug, Clone, PartialEq)]
pub enum PidKind<'v> {
    /// A strong reference to an object of this database: form A `(oid, class)` (the class
    /// as written by the referrer) or form B, a bare oid (class `None`).
    Strong {
        oid: Oid,
        class: Option<(&'v str, &'v str)>,
    },
    /// `['w', (oid,)]` or the legacy `[oid]`: a weak reference of this database.
    Weak(Oid),
    /// A reference into another database (`'m'`, `'n'`, `['w', (oid, db)]`): kept as it
    /// is, never followed.
    Other,
}

fn oid_of(value: &Value) -> Option<Oid> {
    match value {
        Value::Bytes(b) => Oid::from_slice(b),
        // Python-2 records carry oids as (byte) strings; only ASCII ones survive decoding.
        Value::Str(s) => Oid::from_slice(s.as_bytes()),
        _ => None,
    }
}

/// Classifies a pid (the value inside [`Value::PersistentRef`]); `None` for a shape no
/// ZODB writes.
pub fn parse_pid(pid: &Value) -> Option<PidKind<'_>> {
    match pid {
        Value::Bytes(_) | Value::Str(_) => Some(PidKind::Strong {
            oid: oid_of(pid)?,
            class: None,
        }),
        Value::Tuple(items) => {
            let oid = oid_of(items.first()?)?;
            let class = match items.get(1) {
                Some(Value::Global { module, name }) => Some((module.as_str(), name.as_str())),
                Some(Value::Tuple(mn)) => match (mn.first(), mn.get(1)) {
                    (Some(Value::Str(m)), Some(Value::Str(n))) => Some((m.as_str(), n.as_str())),
                    _ => None,
                },
                _ => None,
            };
            Some(PidKind::Strong { oid, class })
        }
        Value::List(items) => match items.as_slice() {
            [Value::Str(tag), Value::Tuple(args)] if tag == "w" && args.len() == 1 => {
                Some(PidKind::Weak(oid_of(args.first()?)?))
            }
            [Value::Str(tag), _] if tag == "w" || tag == "m" || tag == "n" => Some(PidKind::Other),
            [single] => Some(PidKind::Weak(oid_of(single)?)),
            _ => None,
        },
        _ => None,
    }
}

/// A strong reference in form A (`(oid, class)`) when the class is known, form B (the bare
/// oid) otherwise.
pub fn ref_value(oid: Oid, class: Option<(&str, &str)>) -> Value {
    let oid = Value::Bytes(oid.to_bytes().to_vec());
    let pid = match class {
        Some((module, name)) => Value::Tuple(vec![oid, Value::global(module, name)]),
        None => oid,
    };
    Value::PersistentRef(Box::new(pid))
}
