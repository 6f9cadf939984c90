//! A direct decoder and encoder for the plain pickles nearly every message is: tuples
//! and lists of ints, bools, `None`, floats, bytes and str, without memo, globals or
//! objects (a `storea`, a `loadBefore`, a `vote`, a load's reply, `new_oids`' list).
//!
//! ```text
//! 80 03  28  4b 07  89  58 06 00 00 00 "storea"  28 43 08 <oid> 43 08 <serial>
//! PROTO  MARK msgid  False name                   MARK  oid          serial
//!        42 70 00 00 00 <data>  8a 06 <id>  74     74     2e
//!        data                   txn id      TUPLE  TUPLE  STOP
//! ```
//!
//! [`decode`] builds the [`Value`] straight from the bytes, one allocation per bytes,
//! str and tuple, where `zodb_pickle::decode` (which must handle every pickle) builds an
//! arena of nodes, a memo, and then converts the arena into a tree, copying every bytes
//! value a second time: a `storea` cost about twenty allocations.  It takes only the
//! protocol 0-3 opcodes matched in [`decode`], and answers `None` for anything else (another
//! opcode, a malformed or truncated pickle, a str that is not plain UTF-8, nesting past
//! [`DEPTH_MAX`]): the caller then runs the full decoder, which decides, and errs, as
//! before.  When it answers, its value is the one the full decoder gives (tested on
//! generated messages and on arbitrary bytes, below).
//!
//! No budget is kept: without memo fetches every value decoded stands for at least one
//! opcode byte of the input, which stays within `zodb_pickle`'s decoded-bytes bound.
//!
//! [`encode_message_into`] is the other way: the bytes `zodb_pickle`'s encoder writes for a
//! plain message (tested byte for byte), written in one pass into room reserved at once.

use zodb_pickle::Value;
use zodb_pickle::opcodes as op;

/// Deepest nesting of tuples and lists taken here (a message is 2 or 3 levels deep);
/// deeper pickles go to the full decoder, which applies the protocol's nesting limit.
const DEPTH_MAX: usize = 16;

/// Items per `APPENDS` when writing a list (Python's pickler batches by 1000).
const LIST_BATCH: usize = 1000;

/// What the decoder's stack holds: a value with its nesting depth (0 for a leaf, one more
/// than its deepest item for a container), or a `MARK`.
#[derive(Debug)]
enum Item {
    Value(Value, usize),
    Mark,
}

/// The value of the one pickle filling `payload`, or `None`: see the module documentation.
pub(crate) fn decode(payload: &[u8]) -> Option<Value> {
    let mut input = Input { bytes: payload };
    let mut stack: Vec<Item> = Vec::with_capacity(16);
    loop {
        let opcode = input.byte()?;
        let value = match opcode {
            op::PROTO => {
                if input.byte()? > op::HIGHEST_PROTOCOL {
                    return None;
                }
                continue;
            }
            op::MARK => {
                stack.push(Item::Mark);
                continue;
            }
            op::STOP => {
                // The one value left, nothing else: anything odder is the full decoder's.
                let Some(Item::Value(v, _)) = stack.pop() else {
                    return None;
                };
                return (stack.is_empty() && input.bytes.is_empty()).then_some(v);
            }
            op::NONE => Value::None,
            op::NEWTRUE => Value::Bool(true),
            op::NEWFALSE => Value::Bool(false),
            op::BININT => Value::Int(i64::from(i32::from_le_bytes(input.array()?))),
            op::BININT1 => Value::Int(i64::from(input.byte()?)),
            op::BININT2 => Value::Int(i64::from(u16::from_le_bytes(input.array()?))),
            op::LONG1 => {
                let n = usize::from(input.byte()?);
                if n > 8 {
                    return None;
                }
                Value::Int(long1_to_i64(input.take(n)?))
            }
            op::BINFLOAT => Value::Float(f64::from_be_bytes(input.array()?)),
            op::SHORT_BINBYTES => {
                let n = usize::from(input.byte()?);
                Value::Bytes(input.take(n)?.to_vec())
            }
            op::BINBYTES => {
                let n = usize::try_from(u32::from_le_bytes(input.array()?)).ok()?;
                Value::Bytes(input.take(n)?.to_vec())
            }
            op::BINUNICODE => {
                let n = usize::try_from(u32::from_le_bytes(input.array()?)).ok()?;
                Value::Str(std::str::from_utf8(input.take(n)?).ok()?.to_owned())
            }
            op::EMPTY_TUPLE => {
                stack.push(Item::Value(Value::Tuple(Vec::new()), 1));
                continue;
            }
            op::EMPTY_LIST => {
                stack.push(Item::Value(Value::List(Vec::new()), 1));
                continue;
            }
            op::APPEND => {
                let at = stack.len().checked_sub(1)?;
                append(&mut stack, at, at)?;
                continue;
            }
            op::APPENDS => {
                let mark = stack.iter().rposition(|i| matches!(i, Item::Mark))?;
                append(&mut stack, mark + 1, mark)?;
                continue;
            }
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1) + 1;
                let at = stack.len().checked_sub(n)?;
                tuple(&mut stack, at, at)?;
                continue;
            }
            op::TUPLE => {
                let mark = stack.iter().rposition(|i| matches!(i, Item::Mark))?;
                tuple(&mut stack, mark + 1, mark)?;
                continue;
            }
            _ => return None,
        };
        stack.push(Item::Value(value, 0));
    }
}

/// The values of `stack[from..]` and the depth of a container holding them, taken off
/// the stack with whatever lies at `cut..from` (the `MARK`), if they are all values (a
/// `MARK` among them is for the full decoder to judge) and that depth, at least `depth`,
/// is at most [`DEPTH_MAX`] (deeper ones too: nothing here builds a value deep enough
/// for its drop to exhaust a stack, as `TUPLE1` after `TUPLE1` would).
fn take_items(
    stack: &mut Vec<Item>,
    from: usize,
    cut: usize,
    depth: usize,
) -> Option<(Vec<Value>, usize)> {
    let mut depth = depth;
    let mut values = Vec::with_capacity(stack.len().saturating_sub(from));
    for item in stack.drain(from..) {
        match item {
            Item::Value(v, d) => {
                depth = depth.max(d + 1);
                values.push(v);
            }
            Item::Mark => return None,
        }
    }
    stack.truncate(cut);
    (depth <= DEPTH_MAX).then_some((values, depth))
}

/// `TUPLE*`: the tuple of `stack[from..]` replaces `stack[cut..]`.
fn tuple(stack: &mut Vec<Item>, from: usize, cut: usize) -> Option<()> {
    let (values, depth) = take_items(stack, from, cut, 1)?;
    stack.push(Item::Value(Value::Tuple(values), depth));
    Some(())
}

/// `APPEND(S)`: `stack[from..]` (and `stack[cut..from]`) go, appended to the list below.
fn append(stack: &mut Vec<Item>, from: usize, cut: usize) -> Option<()> {
    let list_depth = match stack.get(cut.checked_sub(1)?)? {
        Item::Value(Value::List(_), d) => *d,
        _ => return None,
    };
    let (values, depth) = take_items(stack, from, cut, list_depth)?;
    let Some(Item::Value(Value::List(list), d)) = stack.last_mut() else {
        return None;
    };
    list.extend(values);
    *d = depth;
    Some(())
}

/// Appends to `out` the pickle [`zodb_pickle::encode_tuple_into`] writes for the message
/// `(msgid, flag, name, args)`, byte for byte, when `msgid`, `flag` and `args` are plain
/// (ints, bools, `None`, floats, bytes, str, tuples and lists of those, at most
/// [`DEPTH_MAX`] deep); `false`, with `out` untouched, otherwise.  The general encoder first walks the
/// values for repeated globals and keeps a list of steps per tuple, and the name would
/// need a `Value` of its own; this writes at once, into room reserved for the whole.
/// A `LONG1` of at most 8 bytes (little-endian two's complement) sign-extended to 64 bits.
pub(super) fn long1_to_i64(bytes: &[u8]) -> i64 {
    let fill = match bytes.last() {
        Some(&top) if top & 0x80 != 0 => 0xff,
        _ => 0,
    };
    let mut buf = [fill; 8];
    for (slot, &b) in buf.iter_mut().zip(bytes) {
        *slot = b;
    }
    i64::from_le_bytes(buf)
}

#[cfg(test)]
pub(crate) fn encode_message_into(
    out: &mut Vec<u8>,
    msgid: &Value,
    flag: &Value,
    name: &str,
    args: &Value,
) -> bool {
    let Some(size) = message_size(msgid, flag, name, args) else {
        return false;
    };
    out.reserve(size);
    write_message(out, msgid, flag, name, args);
    true
}

/// At least the bytes [`write_message`] writes for this message, if it can write it
/// (see [`encode_message_into`]).
pub(crate) fn message_size(msgid: &Value, flag: &Value, name: &str, args: &Value) -> Option<usize> {
    let mut size = 5 + 5 + name.len(); // PROTO 3, MARK, TUPLE, STOP; the name
    for item in [msgid, flag, args] {
        size += plain_size(item, 1)?;
    }
    u32::try_from(name.len()).ok()?;
    Some(size)
}

/// Writes a message [`message_size`] accepted.
pub(crate) fn write_message(
    out: &mut Vec<u8>,
    msgid: &Value,
    flag: &Value,
    name: &str,
    args: &Value,
) {
    out.extend_from_slice(&[op::PROTO, op::WRITE_PROTOCOL, op::MARK]);
    write_plain(out, msgid);
    write_plain(out, flag);
    write_str(out, name);
    write_plain(out, args);
    out.extend_from_slice(&[op::TUPLE, op::STOP]);
}

fn write_str(out: &mut Vec<u8>, s: &str) {
    out.push(op::BINUNICODE);
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// The opcode that closes a tuple of `n` items (after a `MARK` when `n > 3`).
fn close_tuple(n: usize) -> u8 {
    match n {
        0 => op::EMPTY_TUPLE,
        1 => op::TUPLE1,
        2 => op::TUPLE2,
        3 => op::TUPLE3,
        _ => op::TUPLE,
    }
}

/// The bytes `v` pickles to, if it is plain, at nesting `depth`.
fn plain_size(v: &Value, depth: usize) -> Option<usize> {
    Some(match v {
        Value::None | Value::Bool(_) => 1,
        Value::Int(_) => 10,
        Value::Float(_) => 9,
        Value::Bytes(b) => {
            u32::try_from(b.len()).ok()?;
            5 + b.len()
        }
        Value::Str(s) => {
            u32::try_from(s.len()).ok()?;
            5 + s.len()
        }
        Value::Tuple(items) | Value::List(items) => {
            if depth >= DEPTH_MAX {
                return None;
            }
            // The opening and closing opcodes (a list's MARK and APPENDS per batch).
            let mut n = 2 + 2 * items.len().div_ceil(LIST_BATCH);
            for item in items {
                n += plain_size(item, depth + 1)?;
            }
            n
        }
        _ => return None,
    })
}

/// Writes a value [`plain_size`] accepted, as `zodb_pickle`'s encoder writes it.
fn write_plain(out: &mut Vec<u8>, v: &Value) {
    match v {
        Value::None => out.push(op::NONE),
        Value::Bool(true) => out.push(op::NEWTRUE),
        Value::Bool(false) => out.push(op::NEWFALSE),
        Value::Int(i) => zodb_pickle::write::int(out, *i),
        Value::Float(f) => {
            out.push(op::BINFLOAT);
            out.extend_from_slice(&f.to_be_bytes());
        }
        Value::Bytes(b) => {
            match u8::try_from(b.len()) {
                Ok(n) => out.extend_from_slice(&[op::SHORT_BINBYTES, n]),
                Err(_) => {
                    out.push(op::BINBYTES);
                    out.extend_from_slice(&(b.len() as u32).to_le_bytes());
                }
            }
            out.extend_from_slice(b);
        }
        Value::Str(s) => write_str(out, s),
        Value::Tuple(items) => {
            if items.len() > 3 {
                out.push(op::MARK);
            }
            for item in items {
                write_plain(out, item);
            }
            out.push(close_tuple(items.len()));
        }
        Value::List(items) => {
            // Python's `_batch_appends`, as `zodb_pickle` writes it.
            out.push(op::EMPTY_LIST);
            for batch in items.chunks(LIST_BATCH) {
                if let [item] = batch {
                    write_plain(out, item);
                    out.push(op::APPEND);
                } else {
                    out.push(op::MARK);
                    for item in batch {
                        write_plain(out, item);
                    }
                    out.push(op::APPENDS);
                }
            }
        }
        // `plain_size` let nothing else through.
        _ => {}
    }
}

/// The bytes not read yet.
struct Input<'a> {
    bytes: &'a [u8],
}

impl<'a> Input<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.bytes.len() {
            return None;
        }
        let (head, rest) = self.bytes.split_at(n);
        self.bytes = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        let [b] = self.array::<1>()?;
        Some(b)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// What the full decoder makes of `payload` as one whole pickle.
    fn full(payload: &[u8]) -> Option<Value> {
        match zodb_pickle::decode(payload) {
            Ok((v, used)) if used == payload.len() => Some(v),
            _ => None,
        }
    }

    fn plain() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (0i64..300).prop_map(Value::Int),
            any::<f64>()
                .prop_filter("NaN differs from itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,20}".prop_map(Value::Str),
        ];
        leaf.prop_recursive(4, 40, 6, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
                proptest::collection::vec(inner, 0..6).prop_map(Value::List),
            ]
        })
    }

    #[test]
    fn a_python_storea_and_load_before() {
        // As zodbpickle's Pickler(f, 3) with fast = 1 writes them.
        let mut storea = b"\x80\x03(K\x07\x89X\x06\x00\x00\x00storea(C\x08".to_vec();
        storea.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 9]);
        storea.extend_from_slice(b"C\x08\x03\xe8\x1b\x6f\x00\x00\x00\x01");
        storea.extend_from_slice(b"B\x03\x00\x00\x00abc\x8a\x06\x10\x32\x54\x76\x7f\x00tt.");
        let v = decode(&storea).unwrap();
        assert_eq!(Some(&v), full(&storea).as_ref());
        let Value::Tuple(items) = &v else {
            panic!("{v:?}")
        };
        assert_eq!(items[2], Value::str("storea"));
        let load = zodb_pickle::encode(&Value::Tuple(vec![
            Value::Tuple(vec![Value::Bytes(vec![0; 8]), Value::Bytes(vec![0xff; 8])]),
            Value::Bool(false),
            Value::str("loadBefore"),
            Value::Tuple(vec![Value::Bytes(vec![0; 8]), Value::Bytes(vec![0xff; 8])]),
        ]))
        .unwrap();
        assert_eq!(decode(&load), full(&load));
        assert!(decode(&load).is_some());
    }

    #[test]
    fn values_it_does_not_encode_go_to_the_general_encoder() {
        let mut out = vec![1, 2];
        for v in [
            Value::Dict(vec![]),
            Value::Tuple(vec![Value::Int(1), Value::Dict(vec![])]),
            Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0, 1]),
        ] {
            assert!(!encode_message_into(
                &mut out,
                &Value::Int(1),
                &Value::Bool(false),
                "f",
                &v
            ));
            assert_eq!(out, [1, 2]);
        }
    }

    #[test]
    fn deep_nesting_goes_to_the_full_decoder_whatever_opcodes_make_it() {
        // TUPLE1 after TUPLE1, and lists appended into lists, need no MARK.
        let mut tuples = b"\x80\x03N".to_vec();
        tuples.extend(std::iter::repeat_n(op::TUPLE1, 100_000));
        tuples.push(op::STOP);
        let mut lists = b"\x80\x03".to_vec();
        lists.extend(std::iter::repeat_n(op::EMPTY_LIST, 100_000));
        lists.extend(std::iter::repeat_n(op::APPEND, 99_999));
        lists.push(op::STOP);
        for pickle in [tuples, lists] {
            assert_eq!(decode(&pickle), None);
            assert!(
                zodb_pickle::decode(&pickle).is_err(),
                "too deep for the full decoder too"
            );
        }
        let mut just = b"\x80\x03N".to_vec();
        just.extend(std::iter::repeat_n(op::TUPLE1, DEPTH_MAX));
        just.push(op::STOP);
        assert!(decode(&just).is_some());
        assert_eq!(decode(&just), full(&just));
    }

    #[test]
    fn what_it_does_not_take_goes_to_the_full_decoder() {
        for pickle in [
            &b"\x80\x03]q\x00."[..],               // a memo put
            b"\x80\x04\x95\x00",                   // protocol 4
            b"\x80\x03cbuiltins\nset\n.",          // a global
            b"\x80\x03X\x02\x00\x00\x00\xed\xa0.", // a lone surrogate
            b"\x80\x03K\x01K\x02.",                // two values left
            b"\x80\x03K\x01.\x00",                 // trailing bytes
            b"\x80\x03t.",                         // TUPLE without MARK
        ] {
            assert_eq!(decode(pickle), None, "{pickle:?}");
        }
    }

    proptest! {
        #[test]
        fn plain_values_decode_as_the_full_decoder_decodes_them(v in plain()) {
            let pickle = zodb_pickle::encode(&v).unwrap();
            let fast = decode(&pickle);
            prop_assert!(fast.is_some(), "declined {:?}", pickle);
            prop_assert_eq!(fast, full(&pickle));
        }

        #[test]
        fn plain_messages_encode_as_the_general_encoder_encodes_them(
            msgid in plain(), flag in plain(), name in ".{0,12}", args in plain(),
        ) {
            let mut fast = vec![0; 4];
            prop_assert!(encode_message_into(&mut fast, &msgid, &flag, &name, &args));
            let general = zodb_pickle::encode_tuple_into(
                vec![0; 4],
                &[&msgid, &flag, &Value::str(name.as_str()), &args],
            )
            .unwrap();
            prop_assert_eq!(fast, general);
        }

        #[test]
        fn on_any_bytes_it_agrees_or_declines(
            mut bytes in proptest::collection::vec(any::<u8>(), 0..64),
            protocol in any::<bool>(),
        ) {
            if protocol {
                bytes.splice(0..0, [0x80, 3]);
            }
            if let Some(v) = decode(&bytes) {
                prop_assert_eq!(Some(v), full(&bytes));
            }
        }

        #[test]
        fn opcode_soup_agrees_or_declines(
            ops in proptest::collection::vec(
                prop_oneof![
                    Just(vec![op::MARK]), Just(vec![op::TUPLE]), Just(vec![op::TUPLE1]),
                    Just(vec![op::TUPLE2]), Just(vec![op::TUPLE3]), Just(vec![op::EMPTY_TUPLE]),
                    Just(vec![op::NONE]), Just(vec![op::NEWTRUE]),
                    Just(vec![op::BININT1, 5]), Just(vec![op::SHORT_BINBYTES, 1, 7]),
                    Just(vec![op::LONG1, 2, 0xff, 0x7f]), Just(vec![op::LONG1, 0]),
                    Just(vec![op::EMPTY_LIST]), Just(vec![op::APPEND]), Just(vec![op::APPENDS]),
                ],
                0..24,
            ),
        ) {
            let mut bytes = vec![0x80, 3];
            bytes.extend(ops.into_iter().flatten());
            bytes.push(op::STOP);
            if let Some(v) = decode(&bytes) {
                prop_assert_eq!(Some(v), full(&bytes));
            }
        }
    }
}
