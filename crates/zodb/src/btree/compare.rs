//! State values compared the way Python compares them while BTrees merges a conflict.
//!
//! BTrees compares two items with `<` first and `==` second (its `COMPARE` of object keys
//! and values); a comparison Python cannot make raises, and an exception anywhere in a
//! conflict resolution makes it fail.  So this module answers "equal", "different" or
//! "Python would raise" ([`Incomparable`]) for two pickle [`Value`]s, with Python 3's
//! rules for the types a state holds:
//!
//! - numbers (`bool`, `int`, `float`) compare by value across types (`1 == 1.0 == True`);
//!   NaN is neither below nor equal to anything;
//! - `str` with `str` by code point, `bytes` with `bytes` by byte;
//! - tuples with tuples and lists with lists, item by item (the first unequal item
//!   decides, by `<`; then the lengths);
//! - sets and frozensets by inclusion;
//! - `None`, dicts and classes support `==` only: `<` raises (except that BTrees'
//!   `COMPARE` itself puts a top-level `None` below everything, without calling `<`);
//! - persistent references are ZODB's `PersistentReference`s: two strong references to
//!   the same oid (and database) are equal, two spellings of the very same weak reference
//!   are equal, and anything else (another oid, a reference against a non-reference)
//!   raises — ZODB refuses to guess how the referenced objects compare;
//! - other types compare as Python would for values of different types (`==` is false,
//!   `<` raises), and instances of classes (`REDUCE`, `NEWOBJ`, …) or ints beyond 128
//!   bits are taken as raising: their comparison is the class's own code, which a Rust
//!   process cannot run, so refusing is the safe answer.

use std::cmp::Ordering;

use zodb_pickle::Value;

use crate::state::{PidKind, parse_pid};

/// Python would raise comparing these values (or we cannot tell what it would do).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Incomparable;

type Answer = Result<bool, Incomparable>;

/// BTrees' `COMPARE(a, b) == 0`: whether `a` and `b` are the same item value.
pub fn same_item(a: &Value, b: &Value) -> Result<bool, Incomparable> {
    match (a, b) {
        (Value::None, Value::None) => Ok(true),
        (Value::None, _) | (_, Value::None) => Ok(false),
        _ => Ok(!less(a, b)? && equal(a, b)?),
    }
}

/// A number as Python sees it.
#[derive(Debug, Clone, Copy)]
enum Number {
    Int(i128),
    Float(f64),
}

fn number(v: &Value) -> Option<Result<Number, Incomparable>> {
    match v {
        Value::Bool(b) => Some(Ok(Number::Int(i128::from(*b)))),
        Value::Int(i) => Some(Ok(Number::Int(i128::from(*i)))),
        Value::BigInt(bytes) => Some(big_int(bytes).map(Number::Int).ok_or(Incomparable)),
        Value::Float(f) => Some(Ok(Number::Float(*f))),
        _ => None,
    }
}

/// A little-endian two's complement int of at most 16 bytes.
fn big_int(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() {
        return Some(0);
    }
    if bytes.len() > 16 {
        return None;
    }
    let fill = if bytes[bytes.len() - 1] & 0x80 != 0 {
        0xff
    } else {
        0
    };
    let mut buf = [fill; 16];
    buf[..bytes.len()].copy_from_slice(bytes);
    Some(i128::from_le_bytes(buf))
}

/// An exact comparison of an int with a float (`None` when the float is NaN).
fn cmp_int_float(i: i128, f: f64) -> Option<Ordering> {
    if f.is_nan() {
        return None;
    }
    // 2^127 bounds every i128 and is exactly representable.
    const LIMIT: f64 = 170_141_183_460_469_231_731_687_303_715_884_105_728.0;
    if f >= LIMIT {
        return Some(Ordering::Less);
    }
    if f < -LIMIT {
        return Some(Ordering::Greater);
    }
    let whole = f.trunc();
    // `whole` is an integer within the i128 range, so the cast is exact.
    let w = whole as i128;
    match i.cmp(&w) {
        Ordering::Equal => {
            let frac = f - whole;
            Some(if frac > 0.0 {
                Ordering::Less
            } else if frac < 0.0 {
                Ordering::Greater
            } else {
                Ordering::Equal
            })
        }
        other => Some(other),
    }
}

fn cmp_numbers(a: Number, b: Number) -> Option<Ordering> {
    match (a, b) {
        (Number::Int(x), Number::Int(y)) => Some(x.cmp(&y)),
        (Number::Float(x), Number::Float(y)) => x.partial_cmp(&y),
        (Number::Int(x), Number::Float(y)) => cmp_int_float(x, y),
        (Number::Float(x), Number::Int(y)) => cmp_int_float(y, x).map(Ordering::reverse),
    }
}

/// What a persistent reference is, for comparing: strong `(oid, database)` or weak.
enum RefKind<'a> {
    Strong(Vec<u8>, Option<&'a Value>),
    /// Weak, or a form we do not know: equal only to the very same spelling.
    Other,
}

fn ref_kind(pid: &Value) -> RefKind<'_> {
    match parse_pid(pid) {
        Some(PidKind::Strong { oid, .. }) => RefKind::Strong(oid.to_bytes().to_vec(), None),
        Some(PidKind::Other) => match pid {
            Value::List(items) => match items.as_slice() {
                [Value::Str(tag), Value::Tuple(args)] if tag == "m" || tag == "n" => {
                    match (args.first(), args.get(1).and_then(oid_bytes)) {
                        (Some(db), Some(oid)) => RefKind::Strong(oid, Some(db)),
                        _ => RefKind::Other,
                    }
                }
                _ => RefKind::Other,
            },
            _ => RefKind::Other,
        },
        _ => RefKind::Other,
    }
}

fn oid_bytes(v: &Value) -> Option<Vec<u8>> {
    match v {
        Value::Bytes(b) => Some(b.clone()),
        Value::Str(s) if s.is_ascii() => Some(s.as_bytes().to_vec()),
        _ => None,
    }
}

/// `PersistentReference.__cmp__`: 0 for equivalent references, raises otherwise.
fn same_reference(a: &Value, b: &Value) -> Answer {
    match (ref_kind(a), ref_kind(b)) {
        (RefKind::Strong(x, dx), RefKind::Strong(y, dy)) if x == y && dx == dy => Ok(true),
        // ZODB's reference factory hands out one object per spelling, and an object is
        // equivalent to itself.
        _ if a == b => Ok(true),
        _ => Err(Incomparable),
    }
}

/// Python's `a == b`.
pub fn equal(a: &Value, b: &Value) -> Answer {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return Ok(cmp_numbers(x?, y?) == Some(Ordering::Equal));
    }
    match (a, b) {
        (Value::PersistentRef(x), Value::PersistentRef(y)) => same_reference(x, y),
        (Value::PersistentRef(_), _) | (_, Value::PersistentRef(_)) => Err(Incomparable),
        (Value::None, Value::None) => Ok(true),
        (Value::Str(x), Value::Str(y)) => Ok(x == y),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x == y),
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (p, q) in x.iter().zip(y) {
                if !equal(p, q)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        (Value::Dict(x), Value::Dict(y)) => {
            if x.len() != y.len() {
                return Ok(false);
            }
            for (k, v) in x {
                match find_key(y, k)? {
                    Some(w) if equal(v, w)? => {}
                    _ => return Ok(false),
                }
            }
            Ok(true)
        }
        (Value::Set(x) | Value::FrozenSet(x), Value::Set(y) | Value::FrozenSet(y)) => {
            Ok(x.len() == y.len() && subset(x, y)?)
        }
        (Value::Global { .. }, Value::Global { .. }) => Ok(a == b),
        _ if is_instance(a) || is_instance(b) => Err(Incomparable),
        // Values of different types are never equal.
        _ => Ok(false),
    }
}

/// Python's `a < b`.
pub fn less(a: &Value, b: &Value) -> Answer {
    if let (Some(x), Some(y)) = (number(a), number(b)) {
        return Ok(cmp_numbers(x?, y?) == Some(Ordering::Less));
    }
    match (a, b) {
        // `__lt__` is `__cmp__(other) < 0`: false for equivalent references.
        (Value::PersistentRef(x), Value::PersistentRef(y)) => same_reference(x, y).map(|_| false),
        (Value::Str(x), Value::Str(y)) => Ok(x < y),
        (Value::Bytes(x), Value::Bytes(y)) => Ok(x < y),
        (Value::Tuple(x), Value::Tuple(y)) | (Value::List(x), Value::List(y)) => {
            for (p, q) in x.iter().zip(y) {
                if !equal(p, q)? {
                    return less(p, q);
                }
            }
            Ok(x.len() < y.len())
        }
        (Value::Set(x) | Value::FrozenSet(x), Value::Set(y) | Value::FrozenSet(y)) => {
            Ok(x.len() < y.len() && subset(x, y)?)
        }
        // `None`, dicts, classes, references against anything else, mixed types.
        _ => Err(Incomparable),
    }
}

fn find_key<'a>(
    pairs: &'a [(Value, Value)],
    key: &Value,
) -> Result<Option<&'a Value>, Incomparable> {
    for (k, v) in pairs {
        if equal(k, key)? {
            return Ok(Some(v));
        }
    }
    Ok(None)
}

fn subset(x: &[Value], y: &[Value]) -> Answer {
    for p in x {
        let mut found = false;
        for q in y {
            if equal(p, q)? {
                found = true;
                break;
            }
        }
        if !found {
            return Ok(false);
        }
    }
    Ok(true)
}

/// An instance of some class: its comparison is its class's code.
fn is_instance(v: &Value) -> bool {
    matches!(
        v,
        Value::Reduce { .. }
            | Value::NewObj { .. }
            | Value::Inst { .. }
            | Value::Obj { .. }
            | Value::Build { .. }
            | Value::ListItems { .. }
            | Value::DictItems { .. }
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ref_value;
    use zodb_storage::Oid;

    #[test]
    fn numbers_compare_across_types() {
        assert_eq!(same_item(&Value::Int(1), &Value::Float(1.0)), Ok(true));
        assert_eq!(same_item(&Value::Bool(true), &Value::Int(1)), Ok(true));
        assert_eq!(same_item(&Value::Int(1), &Value::Int(2)), Ok(false));
        assert_eq!(
            same_item(&Value::Float(f64::NAN), &Value::Float(f64::NAN)),
            Ok(false)
        );
        assert_eq!(less(&Value::Int(2), &Value::Float(2.5)), Ok(true));
        assert_eq!(less(&Value::Float(-0.5), &Value::Int(0)), Ok(true));
        assert_eq!(
            less(
                &Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
                &Value::Int(i64::MAX)
            ),
            Ok(false)
        );
    }

    #[test]
    fn what_python_cannot_order_is_incomparable() {
        assert_eq!(
            same_item(&Value::str("a"), &Value::Int(1)),
            Err(Incomparable)
        );
        let d = Value::Dict(vec![]);
        assert_eq!(same_item(&d, &d), Err(Incomparable), "dicts have no <");
        // Inside a tuple, equal items are skipped with `==`, so None is fine there.
        let t = Value::Tuple(vec![Value::None, Value::Int(1)]);
        assert_eq!(same_item(&t, &t.clone()), Ok(true));
        let u = Value::Tuple(vec![Value::Int(0), Value::Int(1)]);
        assert_eq!(same_item(&t, &u), Err(Incomparable));
        // At the top, None is below everything without `<`.
        assert_eq!(same_item(&Value::None, &Value::Int(1)), Ok(false));
    }

    #[test]
    fn references_are_equal_by_oid_and_otherwise_raise() {
        let typed = ref_value(Oid(7), Some(("m", "C")));
        let bare = ref_value(Oid(7), None);
        assert_eq!(same_item(&typed, &bare), Ok(true));
        assert_eq!(
            same_item(&typed, &ref_value(Oid(8), None)),
            Err(Incomparable)
        );
        assert_eq!(same_item(&typed, &Value::Int(7)), Err(Incomparable));
        let weak = Value::PersistentRef(Box::new(Value::List(vec![
            Value::str("w"),
            Value::Tuple(vec![Value::Bytes(Oid(7).to_bytes().to_vec())]),
        ])));
        assert_eq!(same_item(&weak, &weak.clone()), Ok(true));
        assert_eq!(same_item(&weak, &typed), Err(Incomparable));
    }
}
