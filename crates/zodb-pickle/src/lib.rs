//! ZODB record pickles: a protocol 0–3 decoder, the persistent-reference scanner pack and
//! `fsrefs` need, and a protocol 3 encoder — the codec between record bytes and
//! [`Value`]s, doing no I/O.
//!
//! A ZODB record is two pickles written by one pickler: P1 names the class, P2 holds the
//! state, and P2 may fetch memo entries stored by P1 (`docs/spec/record-format.md` §1).
//! [`decode_record`] and [`scan_references`] therefore run both on one machine with one
//! memo.  The scanner reproduces zodbpickle's `noload`, which ZODB's `referencesf` uses, so
//! pack's garbage collection sees exactly the references Python's sees (§4.1, §5);
//! [`class_of`] reads P1 like `get_pickle_metadata` (§2); [`encode`] and
//! [`encode_record`] write the protocol 3 subset of §6 that Python reads.
//! [`decode_record_view`] decodes a record without building the [`Value`] tree and
//! lends its nodes ([`View`]), for callers that read states into their own types.
//!
//! Why our own codec rather than the `serde-pickle` crate (record-format §9): it has no
//! persistent ids (`BINPERSID` is unsupported), loses every global that is not a handful of
//! builtins (so a P1 cannot even be read), and cannot share a memo between two pickles (the
//! OOBucket fixture fails with a missing memo entry); it cannot write a `GLOBAL` for an
//! arbitrary class nor a `BINPERSID`.  Extending it would be a fork; a purpose-built codec
//! is smaller and can be exact.
//!
//! The input is untrusted (records come from disk and from ZEO clients): decoding never
//! panics, allocates nothing a length field asks for before checking that many bytes
//! remain, keeps its working memory linear in the input, and bounds the depth and size of
//! the tree it returns (`limits`).  Protocol 4/5 (which zodbpickle cannot read) is refused,
//! whether announced by `PROTO` or by a single opcode.

#![deny(clippy::unwrap_used, clippy::indexing_slicing)]
#![cfg_attr(test, allow(clippy::unwrap_used, clippy::indexing_slicing))]

mod convert;
mod encode;
mod error;
pub mod limits;
mod machine;
pub mod opcodes;
mod refs;
mod text;
mod value;
mod view;
pub mod write;

pub use encode::{encode, encode_like_python, encode_record, encode_tuple_into};
pub use error::PickleError;
pub use refs::{Reference, class_of, scan_references, strong_references};
pub use value::Value;
pub use view::{Items, Kind, Pairs, RecordView, View, decode_record_view};

use convert::Converter;
use machine::{Machine, Mode};

/// Decodes one pickle from the start of `bytes`; returns its value and the number of bytes
/// consumed through its `STOP` (whatever follows is not looked at).
pub fn decode(bytes: &[u8]) -> Result<(Value, usize), PickleError> {
    let mut machine = Machine::new(bytes, Mode::Load);
    let root = machine.run()?;
    let value = Converter::new(&machine, bytes.len()).convert(root)?;
    Ok((value, machine.position()))
}

/// Decodes a record: P1 (the class metadata) then P2 (the state), with one memo as ZODB's
/// `ObjectReader` does.  Bytes after P2's `STOP` are ignored, as Python ignores them.
pub fn decode_record(record: &[u8]) -> Result<(Value, Value), PickleError> {
    let mut machine = Machine::new(record, Mode::Load);
    let class = machine.run()?;
    let state = machine.run()?;
    let mut converter = Converter::new(&machine, record.len());
    let class = converter.convert(class)?;
    let state = converter.convert(state)?;
    Ok((class, state))
}

#[cfg(test)]
mod tests;
