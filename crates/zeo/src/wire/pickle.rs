//! The pickle (`Z`) value codec (spec §2.2): our `zodb_pickle` codec plus the two rules
//! ZEO's unpicklers add, and [`simplify`] for the builtin `REDUCE`s Python clients send.
//!
//! ```text
//! 80 03            PROTO 3 (zodbpickle Pickler(f, 3), fast = 1: no memo opcodes)
//! 28 <4 values> 74 MARK … TUPLE: (msgid, flag, name, args)
//! 2e               STOP
//! ```
//!
//! * Encoding is `zodb_pickle::encode`, which writes exactly what Python's protocol 3
//!   pickler writes without a memo (`K`/`M`/`J`/`8a` ints, `C`/`B` bytes, `X` str,
//!   `)`/`85`/`86`/`87`/`( … t` tuples, lists and dicts in batches of 1000).
//! * Decoding: one pickle filling the whole payload (Python ignores trailing bytes; no
//!   Python peer writes any, so we refuse them).  Persistent references are refused: neither
//!   Python message unpickler has a `persistent_load`.  Globals: the server allows only the
//!   modules of [`SERVER_GLOBAL_MODULES`] (Python's `server_find_global`); the client
//!   accepts any global as an opaque value (Python's `find_global` admits exception classes
//!   and `__no_side_effects__` callables such as `ZODB.POSException._recon`; we never call
//!   anything, so there is nothing to guard).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use zodb_pickle::Value;

use super::error::WireError;
use crate::limits::VALUE_WALK_DEPTH_MAX;

/// Modules whose globals a client's message may name (`server_find_global`'s
/// `_SAFE_MODULE_NAMES`, plus `copyreg`, `copy_reg`'s Python 3 name).
///
/// Under Python 3 the real server only resolves `builtins`, `zodbpickle` and
/// `ZopeUndo.Prefix` (the Python 2 names fail to import); we accept the whole list since
/// we never resolve or call a global.
pub const SERVER_GLOBAL_MODULES: &[&str] = &[
    "builtins",
    "__builtin__",
    "copy_reg",
    "copyreg",
    "zodbpickle",
    "ZopeUndo.Prefix",
];

/// Which globals a decoded message may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Globals {
    /// Any global (the client side).
    Any,
    /// Only [`SERVER_GLOBAL_MODULES`] (the server side).
    ServerWhitelist,
}

/// Unpickles exactly one value filling the whole of `payload`, applying `globals`.
pub(crate) fn decode_value(payload: &[u8], globals: Globals) -> Result<Value, WireError> {
    // Most messages are plain tuples: decoded directly (it holds no global or reference
    // to check).
    if let Some(value) = super::flat_pickle::decode(payload) {
        return Ok(value);
    }
    let (value, consumed) = zodb_pickle::decode(payload)?;
    if consumed != payload.len() {
        return Err(WireError::TrailingBytes {
            trailing: payload.len().saturating_sub(consumed),
        });
    }
    check(&value, globals)?;
    Ok(value)
}

/// Refuses persistent references anywhere in `value`, and globals outside the whitelist
/// when `globals` asks for it.  Iterative, so no recursion on the peer's nesting.
fn check(value: &Value, globals: Globals) -> Result<(), WireError> {
    let allowed = |module: &str| globals == Globals::Any || SERVER_GLOBAL_MODULES.contains(&module);
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::None
            | Value::Bool(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Bytes(_)
            | Value::Str(_) => {}
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => pending.extend(items),
            Value::Dict(pairs) => pending.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            Value::Global { module, name } => {
                if !allowed(module) {
                    return Err(WireError::ForbiddenGlobal {
                        module: module.clone(),
                        name: name.clone(),
                    });
                }
            }
            Value::PersistentRef(_) => return Err(WireError::PersistentReference),
            Value::Reduce { callable, args } => pending.extend([&**callable, &**args]),
            Value::NewObj { cls, args } => pending.extend([&**cls, &**args]),
            Value::Inst { module, name, args } => {
                if !allowed(module) {
                    return Err(WireError::ForbiddenGlobal {
                        module: module.clone(),
                        name: name.clone(),
                    });
                }
                pending.extend(args);
            }
            Value::Obj { cls, args } => {
                pending.push(cls);
                pending.extend(args);
            }
            Value::Build { object, state } => pending.extend([&**object, &**state]),
            Value::ListItems { object, items } => {
                pending.push(object);
                pending.extend(items);
            }
            Value::DictItems { object, items } => {
                pending.push(object);
                pending.extend(items.iter().flat_map(|(k, v)| [k, v]));
            }
        }
    }
    Ok(())
}

/// Evaluates the calls of builtin types (`builtins.` or `__builtin__.` `dict`, `list`,
/// `tuple`, `set`, `frozenset`, `bytes`, `str`, `int`, `float`, `bool`) found anywhere in
/// `value` into plain values, bottom-up; anything else is kept as is (opaque).
///
/// Python clients send such calls: a transaction extension whose class reduces to
/// `builtins.dict` arrives as `c builtins\ndict` + a tuple of pairs + `REDUCE`
/// (ZODB's `testTransactionExtensionFromIterator`).  Only argument shapes whose result is
/// certain are evaluated (e.g. `dict(iterable of pairs with hashable keys)`, `int(str)`,
/// `bytes(str, 'latin-1')`); `bytes(n)` is not (it would allocate what the peer asks).
/// Nesting deeper than `limits::VALUE_WALK_DEPTH_MAX` is left untouched.
pub fn simplify(value: Value) -> Value {
    simplify_at(value, 0)
}

fn simplify_at(value: Value, depth: usize) -> Value {
    if depth > VALUE_WALK_DEPTH_MAX {
        return value;
    }
    let d = depth.saturating_add(1);
    let all = |items: Vec<Value>| -> Vec<Value> {
        items.into_iter().map(|v| simplify_at(v, d)).collect()
    };
    let boxed = |v: Box<Value>| Box::new(simplify_at(*v, d));
    match value {
        Value::Tuple(items) => Value::Tuple(all(items)),
        Value::List(items) => Value::List(all(items)),
        Value::Set(items) => Value::Set(all(items)),
        Value::FrozenSet(items) => Value::FrozenSet(all(items)),
        Value::Dict(pairs) => Value::Dict(
            pairs
                .into_iter()
                .map(|(k, v)| (simplify_at(k, d), simplify_at(v, d)))
                .collect(),
        ),
        Value::Reduce { callable, args } => {
            let callable = boxed(callable);
            let args = boxed(args);
            match call_builtin(&callable, &args) {
                Some(v) => v,
                None => Value::Reduce { callable, args },
            }
        }
        Value::NewObj { cls, args } => Value::NewObj {
            cls: boxed(cls),
            args: boxed(args),
        },
        Value::Inst { module, name, args } => Value::Inst {
            module,
            name,
            args: all(args),
        },
        Value::Obj { cls, args } => Value::Obj {
            cls: boxed(cls),
            args: all(args),
        },
        Value::Build { object, state } => Value::Build {
            object: boxed(object),
            state: boxed(state),
        },
        Value::ListItems { object, items } => Value::ListItems {
            object: boxed(object),
            items: all(items),
        },
        Value::DictItems { object, items } => Value::DictItems {
            object: boxed(object),
            items: items
                .into_iter()
                .map(|(k, v)| (simplify_at(k, d), simplify_at(v, d)))
                .collect(),
        },
        Value::PersistentRef(pid) => Value::PersistentRef(boxed(pid)),
        other => other,
    }
}

/// `callable(*args)` for the builtin types, when the result is certain.
fn call_builtin(callable: &Value, args: &Value) -> Option<Value> {
    let Value::Global { module, name } = callable else {
        return None;
    };
    if module != "builtins" && module != "__builtin__" {
        return None;
    }
    let Value::Tuple(args) = args else {
        return None;
    };
    let args = args.as_slice();
    match name.as_str() {
        "dict" => match args {
            [] => Some(Value::Dict(Vec::new())),
            [Value::Dict(pairs)] => Some(Value::Dict(pairs.clone())),
            [Value::Tuple(items) | Value::List(items)] => {
                let mut pairs = Vec::with_capacity(items.len());
                for item in items {
                    match item {
                        Value::Tuple(kv) | Value::List(kv) => match kv.as_slice() {
                            [k, v] => pairs.push((k.clone(), v.clone())),
                            _ => return None,
                        },
                        _ => return None,
                    }
                }
                dedup_pairs(pairs).map(Value::Dict)
            }
            _ => None,
        },
        "list" | "tuple" => {
            let items = match args {
                [] => Vec::new(),
                [
                    Value::Tuple(items)
                    | Value::List(items)
                    | Value::Set(items)
                    | Value::FrozenSet(items),
                ] => items.clone(),
                [Value::Dict(pairs)] => pairs.iter().map(|(k, _)| k.clone()).collect(),
                _ => return None,
            };
            Some(if name == "list" {
                Value::List(items)
            } else {
                Value::Tuple(items)
            })
        }
        "set" | "frozenset" => {
            let items = match args {
                [] => Vec::new(),
                [
                    Value::Tuple(items)
                    | Value::List(items)
                    | Value::Set(items)
                    | Value::FrozenSet(items),
                ] => dedup_items(items.clone())?,
                [Value::Dict(pairs)] => pairs.iter().map(|(k, _)| k.clone()).collect(),
                _ => return None,
            };
            Some(if name == "set" {
                Value::Set(items)
            } else {
                Value::FrozenSet(items)
            })
        }
        "bytes" => match args {
            [] => Some(Value::Bytes(Vec::new())),
            [Value::Bytes(b)] => Some(Value::Bytes(b.clone())),
            [Value::Tuple(items) | Value::List(items)] => items
                .iter()
                .map(|i| match i {
                    Value::Int(n) => u8::try_from(*n).ok(),
                    _ => None,
                })
                .collect::<Option<Vec<u8>>>()
                .map(Value::Bytes),
            [Value::Str(s), Value::Str(encoding)] => encode_text(s, encoding).map(Value::Bytes),
            _ => None,
        },
        "str" => match args {
            [] => Some(Value::str("")),
            [Value::Str(s)] => Some(Value::Str(s.clone())),
            [Value::Bytes(b), Value::Str(encoding)] => decode_text(b, encoding).map(Value::Str),
            _ => None,
        },
        "int" => match args {
            [] => Some(Value::Int(0)),
            [Value::Int(i)] => Some(Value::Int(*i)),
            [Value::BigInt(b)] => Some(Value::BigInt(b.clone())),
            [Value::Bool(b)] => Some(Value::Int(i64::from(*b))),
            [Value::Float(f)] => float_to_int(*f).map(Value::Int),
            [Value::Str(s)] => s.trim().parse::<i64>().ok().map(Value::Int),
            _ => None,
        },
        "float" => match args {
            [] => Some(Value::Float(0.0)),
            [Value::Float(f)] => Some(Value::Float(*f)),
            // Exact for |i| <= 2^53, rounded beyond, as Python's float(int).
            #[allow(clippy::cast_precision_loss)]
            [Value::Int(i)] => Some(Value::Float(*i as f64)),
            [Value::Bool(b)] => Some(Value::Float(f64::from(u8::from(*b)))),
            [Value::Str(s)] => s.trim().parse::<f64>().ok().map(Value::Float),
            _ => None,
        },
        "bool" => match args {
            [] => Some(Value::Bool(false)),
            [v] => truthy(v).map(Value::Bool),
            _ => None,
        },
        _ => None,
    }
}

/// Python's `int(f)`: truncation toward zero, for floats whose result fits `i64`.
fn float_to_int(f: f64) -> Option<i64> {
    // 2^63 as f64 is exact; the range check keeps the cast exact.
    const LIMIT: f64 = 9_223_372_036_854_775_808.0;
    let t = f.trunc();
    #[allow(clippy::cast_possible_truncation)]
    (t.is_finite() && (-LIMIT..LIMIT).contains(&t)).then_some(t as i64)
}

/// Python's truth value of a plain value; `None` for objects (their `__bool__` is unknown).
fn truthy(v: &Value) -> Option<bool> {
    Some(match v {
        Value::None => false,
        Value::Bool(b) => *b,
        Value::Int(i) => *i != 0,
        Value::BigInt(b) => b.iter().any(|&x| x != 0),
        Value::Float(f) => *f != 0.0,
        Value::Bytes(b) => !b.is_empty(),
        Value::Str(s) => !s.is_empty(),
        Value::Tuple(i) | Value::List(i) | Value::Set(i) | Value::FrozenSet(i) => !i.is_empty(),
        Value::Dict(p) => !p.is_empty(),
        _ => return None,
    })
}

/// Python's codec names we evaluate, normalised (`codecs.lookup` ignores case, `-`/`_`).
fn codec(name: &str) -> Option<&'static str> {
    match name.to_ascii_lowercase().replace('_', "-").as_str() {
        "utf-8" | "utf8" => Some("utf-8"),
        "ascii" | "us-ascii" => Some("ascii"),
        "latin-1" | "latin1" | "iso-8859-1" | "iso8859-1" | "l1" => Some("latin-1"),
        _ => None,
    }
}

fn encode_text(s: &str, encoding: &str) -> Option<Vec<u8>> {
    match codec(encoding)? {
        "utf-8" => Some(s.as_bytes().to_vec()),
        "ascii" => s.is_ascii().then(|| s.as_bytes().to_vec()),
        _ => s.chars().map(|c| u8::try_from(u32::from(c)).ok()).collect(),
    }
}

fn decode_text(b: &[u8], encoding: &str) -> Option<String> {
    match codec(encoding)? {
        "utf-8" => String::from_utf8(b.to_vec()).ok(),
        "ascii" => b
            .is_ascii()
            .then(|| b.iter().map(|&c| char::from(c)).collect()),
        _ => Some(b.iter().map(|&c| char::from(c)).collect()),
    }
}

/// Dict/set identity as Python's `==`/`hash` see it for plain values: `True == 1 == 1.0`.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key<'v> {
    None,
    Int(i64),
    Big(&'v [u8]),
    Float(u64),
    Bytes(&'v [u8]),
    Str(&'v str),
    Tuple(Vec<Key<'v>>),
    Global(&'v str, &'v str),
}

/// The key of a hashable plain value; `None` for unhashable values and for objects
/// (whose equality Python decides by identity or by their class).
fn key(v: &Value) -> Option<Key<'_>> {
    key_at(v, 0)
}

fn key_at(v: &Value, depth: usize) -> Option<Key<'_>> {
    if depth > VALUE_WALK_DEPTH_MAX {
        // Too deep to compare here: treated as unhashable, so the call stays opaque.
        return None;
    }
    Some(match v {
        Value::None => Key::None,
        Value::Bool(b) => Key::Int(i64::from(*b)),
        Value::Int(i) => Key::Int(*i),
        Value::BigInt(b) => Key::Big(b),
        Value::Float(f) => match float_to_int(*f) {
            Some(i) if f.fract() == 0.0 => Key::Int(i),
            _ => Key::Float(f.to_bits()),
        },
        Value::Bytes(b) => Key::Bytes(b),
        Value::Str(s) => Key::Str(s),
        Value::Tuple(items) => Key::Tuple(
            items
                .iter()
                .map(|i| key_at(i, depth.saturating_add(1)))
                .collect::<Option<_>>()?,
        ),
        Value::Global { module, name } => Key::Global(module, name),
        _ => return None,
    })
}

/// Python `dict(pairs)`: first key's position, last value; `None` if a key is unhashable.
fn dedup_pairs(pairs: Vec<(Value, Value)>) -> Option<Vec<(Value, Value)>> {
    let keys = pairs
        .iter()
        .map(|(k, _)| key(k))
        .collect::<Option<Vec<_>>>()?;
    let mut index: HashMap<Key<'_>, usize> = HashMap::with_capacity(keys.len());
    let mut slot_of = Vec::with_capacity(keys.len());
    for k in keys {
        let next = index.len();
        slot_of.push(match index.entry(k) {
            Entry::Occupied(e) => *e.get(),
            Entry::Vacant(e) => *e.insert(next),
        });
    }
    let mut out: Vec<Option<(Value, Value)>> = Vec::with_capacity(index.len());
    out.resize_with(index.len(), || None);
    for ((k, v), slot) in pairs.into_iter().zip(slot_of) {
        match out.get_mut(slot)? {
            Some(pair) => pair.1 = v,
            empty @ None => *empty = Some((k, v)),
        }
    }
    out.into_iter().collect()
}

/// Python `set(items)`: first of equal items kept; `None` if an item is unhashable.
fn dedup_items(items: Vec<Value>) -> Option<Vec<Value>> {
    let pairs = items.into_iter().map(|v| (v, Value::None)).collect();
    Some(dedup_pairs(pairs)?.into_iter().map(|(k, _)| k).collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn global(name: &str) -> Value {
        Value::global("builtins", name)
    }

    fn call(name: &str, args: Vec<Value>) -> Value {
        Value::Reduce {
            callable: Box::new(global(name)),
            args: Box::new(Value::Tuple(args)),
        }
    }

    #[test]
    fn encoder_writes_protocol_3_without_memo() {
        let m = crate::wire::Message::call(1, "x", vec![Value::Int(1), Value::Int(2)]);
        // Python: encode(1, False, 'x', (1, 2)).
        assert_eq!(
            crate::wire::encode(crate::wire::Encoding::Pickle, &m).unwrap(),
            b"\x80\x03(K\x01\x89X\x01\x00\x00\x00xK\x01K\x02\x86t."
        );
    }

    #[test]
    fn extension_dict_reduce_from_python() {
        // What ZODB's testTransactionExtensionFromIterator sends:
        // class ext(dict): __reduce__ -> (dict, (tuple(self.items()),)); ext(foo=1).
        let wire = b"\x80\x03cbuiltins\ndict\nX\x03\x00\x00\x00fooK\x01\x86\x85\x85R.";
        let v = decode_value(wire, Globals::ServerWhitelist).unwrap();
        assert_eq!(
            simplify(v),
            Value::Dict(vec![(Value::str("foo"), Value::Int(1))])
        );
    }

    #[test]
    fn whitelist() {
        // [obs] the Python server refuses `_codecs` ("Module not allowed: _codecs").
        let codecs = b"\x80\x02c_codecs\nencode\nX\x01\x00\x00\x00aX\x06\x00\x00\x00latin1\x86R.";
        assert_eq!(
            decode_value(codecs, Globals::ServerWhitelist),
            Err(WireError::ForbiddenGlobal {
                module: "_codecs".into(),
                name: "encode".into()
            })
        );
        assert!(decode_value(codecs, Globals::Any).is_ok());
        // The client tolerates e.g. ZODB.POSException._recon as an opaque value.
        let recon = b"\x80\x03cZODB.POSException\n_recon\n.";
        assert!(decode_value(recon, Globals::ServerWhitelist).is_err());
        assert_eq!(
            decode_value(recon, Globals::Any),
            Ok(Value::global("ZODB.POSException", "_recon"))
        );
        for module in SERVER_GLOBAL_MODULES {
            let wire = format!("\u{80}\u{3}c{module}\nx\n.");
            let wire: Vec<u8> = wire.chars().map(|c| c as u8).collect();
            assert!(
                decode_value(&wire, Globals::ServerWhitelist).is_ok(),
                "{module}"
            );
        }
        // INST names its class inline.
        let inst = b"(ios\nsystem\n.";
        assert!(decode_value(inst, Globals::ServerWhitelist).is_err());
    }

    #[test]
    fn persistent_references_and_trailing_bytes_are_refused() {
        assert_eq!(
            decode_value(b"\x80\x03K\x01Q.", Globals::Any),
            Err(WireError::PersistentReference)
        );
        assert_eq!(
            decode_value(b"\x80\x03K\x01.junk", Globals::Any),
            Err(WireError::TrailingBytes { trailing: 4 })
        );
        // Protocol 4 is refused as zodbpickle does.
        assert!(decode_value(b"\x80\x04K\x01.", Globals::Any).is_err());
        // Protocols 0-2 are read, as Python reads them.
        assert_eq!(decode_value(b"K\x01.", Globals::Any), Ok(Value::Int(1)));
    }

    #[test]
    fn simplify_is_depth_bounded() {
        // 500 levels of tuples around a dict() call: the walk stops at
        // VALUE_WALK_DEPTH_MAX (no stack overflow on a 2 MiB test thread, even in debug),
        // leaving the call as is.
        let mut v = call("dict", vec![]);
        for _ in 0..500 {
            v = Value::Tuple(vec![v]);
        }
        let out = simplify(v.clone());
        assert_eq!(out, v);
        let mut shallow = call("dict", vec![]);
        for _ in 0..10 {
            shallow = Value::Tuple(vec![shallow]);
        }
        let mut want = Value::Dict(vec![]);
        for _ in 0..10 {
            want = Value::Tuple(vec![want]);
        }
        assert_eq!(simplify(shallow), want);
    }

    #[test]
    fn simplify_builtins() {
        let s = Value::str;
        let cases = vec![
            (call("dict", vec![]), Value::Dict(vec![])),
            (
                call(
                    "dict",
                    vec![Value::List(vec![
                        Value::Tuple(vec![Value::Int(1), s("a")]),
                        Value::List(vec![Value::Bool(true), s("b")]),
                        Value::Tuple(vec![Value::Float(2.0), s("c")]),
                    ])],
                ),
                Value::Dict(vec![(Value::Int(1), s("b")), (Value::Float(2.0), s("c"))]),
            ),
            (
                call("list", vec![Value::Tuple(vec![s("x")])]),
                Value::List(vec![s("x")]),
            ),
            (call("tuple", vec![]), Value::Tuple(vec![])),
            (
                call(
                    "set",
                    vec![Value::List(vec![Value::Int(1), Value::Bool(true)])],
                ),
                Value::Set(vec![Value::Int(1)]),
            ),
            (
                call(
                    "bytes",
                    vec![Value::List(vec![Value::Int(104), Value::Int(105)])],
                ),
                Value::Bytes(b"hi".to_vec()),
            ),
            (
                call("bytes", vec![s("\u{e9}"), s("latin-1")]),
                Value::Bytes(vec![0xe9]),
            ),
            (
                call("str", vec![Value::Bytes(vec![0xc3, 0xa9]), s("utf-8")]),
                s("\u{e9}"),
            ),
            (call("int", vec![s(" 42 ")]), Value::Int(42)),
            (call("int", vec![Value::Float(-2.7)]), Value::Int(-2)),
            (call("float", vec![Value::Int(3)]), Value::Float(3.0)),
            (call("bool", vec![s("")]), Value::Bool(false)),
        ];
        for (input, want) in cases {
            assert_eq!(simplify(input.clone()), want, "{input:?}");
        }
        // Not evaluated: unknown shapes and other callables stay opaque.
        let opaque = vec![
            call("bytes", vec![Value::Int(1_000_000_000)]),
            call(
                "dict",
                vec![Value::List(vec![Value::Tuple(vec![
                    Value::List(vec![]),
                    s("a"),
                ])])],
            ),
            call("eval", vec![s("1")]),
            Value::Reduce {
                callable: Box::new(Value::global("ZopeUndo.Prefix", "Prefix")),
                args: Box::new(Value::Tuple(vec![s("/a")])),
            },
        ];
        for v in opaque {
            assert_eq!(simplify(v.clone()), v);
        }
        // Nested calls are evaluated bottom-up.
        let nested = call(
            "dict",
            vec![Value::Tuple(vec![Value::Tuple(vec![
                s("k"),
                call("list", vec![]),
            ])])],
        );
        assert_eq!(
            simplify(nested),
            Value::Dict(vec![(s("k"), Value::List(vec![]))])
        );
    }
}
