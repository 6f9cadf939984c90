//! Unit tests of the public API, one module per area, data-driven where the cases fit a
//! table.  Fixture-driven tests (records written by Python) live in `tests/fixtures.rs`.

mod decode;
mod encode;
mod properties;
mod scan;

use crate::Value;

/// Bytes from hex written with spaces, as the spec quotes them.
pub(crate) fn h(hex: &str) -> Vec<u8> {
    let compact: String = hex.split_whitespace().collect();
    hex::decode(compact).expect("test hex is valid")
}

/// A protocol 3 pickle around the given opcode bytes: `80 03 <body> 2e`.
pub(crate) fn p3(body: &str) -> Vec<u8> {
    let mut out = vec![0x80, 0x03];
    out.extend(h(body));
    out.push(b'.');
    out
}

pub(crate) fn oid(n: u64) -> Value {
    Value::Bytes(n.to_be_bytes().to_vec())
}

pub(crate) fn s(text: &str) -> Value {
    Value::Str(text.to_owned())
}

pub(crate) fn int(i: i64) -> Value {
    Value::Int(i)
}

pub(crate) fn tuple(items: Vec<Value>) -> Value {
    Value::Tuple(items)
}

pub(crate) fn list(items: Vec<Value>) -> Value {
    Value::List(items)
}

pub(crate) fn dict(items: Vec<(Value, Value)>) -> Value {
    Value::Dict(items)
}

pub(crate) fn pref(pid: Value) -> Value {
    Value::PersistentRef(Box::new(pid))
}

pub(crate) fn global(module: &str, name: &str) -> Value {
    Value::global(module, name)
}
