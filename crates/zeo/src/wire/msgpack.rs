//! The msgpack (`M`) value codec: [`Value`] ↔ bytes as msgpack-python 1.x writes them with
//! `packb(use_bin_type=True)` and reads them with `unpackb(raw=False, use_list=False)`
//! (spec §2.3).
//!
//! Type mapping, both ways:
//!
//! ```text
//! Value            msgpack (encode: smallest form, as msgpack-python)      decode back
//! None             c0                                                      None
//! Bool             c2 / c3                                                 Bool
//! Int  0..=127     00..7f (positive fixint)                                Int
//!      128..       cc u8 / cd u16 / ce u32 / cf u64 (big-endian)           Int
//!      -32..=-1    e0..ff (negative fixint)                                Int
//!      below       d0 i8 / d1 i16 / d2 i32 / d3 i64                        Int
//! BigInt ≤ u64::MAX cf u64                                                 BigInt (> i64::MAX)
//! Float            cb f64 (ca f32 accepted on decode, widened)             Float
//! Bytes            c4 len8 / c5 len16 / c6 len32, data                     Bytes
//! Str              a0|len5 / d9 len8 / da len16 / db len32, UTF-8          Str
//! Tuple, List      90|len4 / dc len16 / dd len32, items                    Tuple (use_list=False)
//! Dict             80|len4 / de len16 / df len32, key value ...            Dict
//! ```
//!
//! Refused: ext types (`c7..c9`, `d4..d8`) and the reserved byte `c1`; invalid UTF-8 in a
//! str; map keys other than str/bytes (msgpack ≥ 1.0's `strict_map_key`, which the Python
//! peer applies, so we refuse to *encode* them too); bytes after the value (Python's
//! `ExtraData`); on encode, sets, globals, objects and ints beyond `u64`.  Duplicate map
//! keys keep the first key's position and the last value, as a Python dict does.
//!
//! Why hand-written over `rmp`'s markers rather than `rmpv::decode::read_value`: the bytes
//! are untrusted, and every array, map, str and bin length must be checked against the
//! bytes that remain *before* anything is allocated, with a byte offset for the error and
//! a nesting bound; the reader-based `rmp`/`rmpv` decoders take lengths on trust.  The
//! encoder uses `rmp::encode` as is (its int writers pick the same smallest forms as
//! msgpack-python).

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use rmp::Marker;
use zodb_pickle::Value;

use super::error::WireError;
use crate::limits::MESSAGE_DEPTH_MAX;

/// Encodes `value` and appends it to `out`; `depth` is the nesting level of `value`'s
/// container (the message's 4-tuple is level 1).
///
/// Iterative (msgpack writes every length before the items, so a pre-order walk with an
/// explicit stack suffices): deep values cost heap, not call stack.
pub(crate) fn encode_value(
    out: &mut Vec<u8>,
    value: &Value,
    depth: usize,
) -> Result<(), WireError> {
    // (value, nesting level of its container), popped in order.
    let mut pending: Vec<(&Value, usize)> = vec![(value, depth)];
    while let Some((value, depth)) = pending.pop() {
        match value {
            Value::None => rmp::encode::write_nil(out).map_err(write_failed)?,
            Value::Bool(b) => rmp::encode::write_bool(out, *b).map_err(write_failed)?,
            Value::Int(i) => {
                rmp::encode::write_sint(out, *i).map_err(write_failed)?;
            }
            Value::BigInt(le) => match big_to_u64(le) {
                Some(BigInt::Signed(i)) => {
                    rmp::encode::write_sint(out, i).map_err(write_failed)?;
                }
                Some(BigInt::Unsigned(u)) => {
                    rmp::encode::write_uint(out, u).map_err(write_failed)?;
                }
                None => return Err(not_encodable("int beyond the 64-bit msgpack range")),
            },
            Value::Float(f) => rmp::encode::write_f64(out, *f).map_err(write_failed)?,
            Value::Bytes(b) => {
                let len = len_u32(b.len())?;
                rmp::encode::write_bin_len(out, len).map_err(write_failed)?;
                out.extend_from_slice(b);
            }
            Value::Str(s) => {
                let len = len_u32(s.len())?;
                rmp::encode::write_str_len(out, len).map_err(write_failed)?;
                out.extend_from_slice(s.as_bytes());
            }
            Value::Tuple(items) | Value::List(items) => {
                let inner = nested(depth)?;
                rmp::encode::write_array_len(out, len_u32(items.len())?).map_err(write_failed)?;
                pending.extend(items.iter().rev().map(|item| (item, inner)));
            }
            Value::Dict(pairs) => {
                let inner = nested(depth)?;
                if pairs
                    .iter()
                    .any(|(k, _)| !matches!(k, Value::Str(_) | Value::Bytes(_)))
                {
                    return Err(not_encodable(
                        "msgpack map key that is not str or bytes (the peer's unpackb refuses it)",
                    ));
                }
                rmp::encode::write_map_len(out, len_u32(pairs.len())?).map_err(write_failed)?;
                pending.extend(
                    pairs
                        .iter()
                        .rev()
                        .flat_map(|(k, v)| [(v, inner), (k, inner)]),
                );
            }
            Value::Set(_) | Value::FrozenSet(_) => {
                return Err(not_encodable("a set in msgpack"));
            }
            Value::Global { module, name } => {
                return Err(not_encodable(format!("global {module}.{name} in msgpack")));
            }
            Value::PersistentRef(_) => {
                return Err(not_encodable("persistent reference in msgpack"));
            }
            Value::Reduce { .. }
            | Value::NewObj { .. }
            | Value::Inst { .. }
            | Value::Obj { .. }
            | Value::Build { .. }
            | Value::ListItems { .. }
            | Value::DictItems { .. } => return Err(not_encodable("an object in msgpack")),
        }
    }
    Ok(())
}

/// Decodes exactly one value filling the whole of `payload`.
pub(crate) fn decode_value(payload: &[u8]) -> Result<Value, WireError> {
    let mut decoder = Decoder {
        input: payload,
        rest: payload,
        used: 0,
        limit: zodb_pickle::limits::decoded_bytes_max(payload.len()),
    };
    let value = decoder.value()?;
    if !decoder.rest.is_empty() {
        return Err(WireError::TrailingBytes {
            trailing: decoder.rest.len(),
        });
    }
    Ok(value)
}

/// An int held as `Value::BigInt` that msgpack can carry.
enum BigInt {
    Signed(i64),
    Unsigned(u64),
}

/// Reads little-endian two's complement bytes (`Value::BigInt`'s form) as a 64-bit int.
fn big_to_u64(le: &[u8]) -> Option<BigInt> {
    let negative = le.last().is_some_and(|&b| b & 0x80 != 0);
    // Strip sign-extension bytes from the most significant end.
    let fill = if negative { 0xff } else { 0x00 };
    let significant = le.iter().rposition(|&b| b != fill).map_or(0, |i| i + 1);
    let body = le.get(..significant).unwrap_or(le);
    if body.len() > 8 {
        return None;
    }
    let mut buf = [fill; 8];
    for (slot, &b) in buf.iter_mut().zip(body) {
        *slot = b;
    }
    if negative {
        // A negative that needs all 8 bytes must keep its sign bit there.
        let i = i64::from_le_bytes(buf);
        (i < 0).then_some(BigInt::Signed(i))
    } else {
        Some(BigInt::Unsigned(u64::from_le_bytes(buf)))
    }
}

fn nested(depth: usize) -> Result<usize, WireError> {
    let inner = depth.saturating_add(1);
    check_depth(inner)?;
    Ok(inner)
}

fn len_u32(len: usize) -> Result<u32, WireError> {
    u32::try_from(len).map_err(|_| not_encodable("longer than 4 GiB"))
}

fn not_encodable(what: impl Into<String>) -> WireError {
    WireError::NotEncodable(what.into())
}

/// Writing into a `Vec` cannot fail; kept typed rather than unwrapped.
fn write_failed<E: std::fmt::Display>(e: E) -> WireError {
    WireError::NotEncodable(format!("msgpack write failed: {e}"))
}

struct Decoder<'a> {
    input: &'a [u8],
    rest: &'a [u8],
    used: usize,
    limit: usize,
}

impl<'a> Decoder<'a> {
    fn offset(&self) -> usize {
        self.input.len().saturating_sub(self.rest.len())
    }

    fn err(&self, reason: &'static str) -> WireError {
        WireError::Msgpack {
            offset: self.offset(),
            reason,
        }
    }

    /// Charges `bytes` of decoded memory against the budget.
    fn charge(&mut self, bytes: usize) -> Result<(), WireError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(WireError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        match self.rest.split_at_checked(n) {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(head)
            }
            None => Err(self.err("truncated")),
        }
    }

    fn take_array<const N: usize>(&mut self) -> Result<[u8; N], WireError> {
        match self.rest.split_first_chunk::<N>() {
            Some((head, tail)) => {
                self.rest = tail;
                Ok(*head)
            }
            None => Err(self.err("truncated")),
        }
    }

    fn len8(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u8::from_be_bytes(self.take_array()?)))
    }

    fn len16(&mut self) -> Result<usize, WireError> {
        Ok(usize::from(u16::from_be_bytes(self.take_array()?)))
    }

    fn len32(&mut self) -> Result<usize, WireError> {
        let n = u32::from_be_bytes(self.take_array()?);
        usize::try_from(n).map_err(|_| self.err("length beyond the address space"))
    }

    fn marker(&mut self) -> Result<Marker, WireError> {
        let [byte] = self.take_array::<1>()?;
        Ok(Marker::from_u8(byte))
    }

    fn str(&mut self, len: usize) -> Result<&'a str, WireError> {
        let start = self.offset();
        let bytes = self.take(len)?;
        std::str::from_utf8(bytes).map_err(|_| WireError::Msgpack {
            offset: start,
            reason: "str is not valid UTF-8",
        })
    }

    /// The length of a str or bin whose marker was just read, if it is one.
    fn str_or_bin_len(&mut self, marker: Marker) -> Result<Option<(bool, usize)>, WireError> {
        Ok(Some(match marker {
            Marker::FixStr(n) => (true, usize::from(n)),
            Marker::Str8 => (true, self.len8()?),
            Marker::Str16 => (true, self.len16()?),
            Marker::Str32 => (true, self.len32()?),
            Marker::Bin8 => (false, self.len8()?),
            Marker::Bin16 => (false, self.len16()?),
            Marker::Bin32 => (false, self.len32()?),
            _ => return Ok(None),
        }))
    }

    /// A str or bin of `len` bytes (length already read), as a value and its raw bytes.
    fn str_or_bin(&mut self, is_str: bool, len: usize) -> Result<(Value, &'a [u8]), WireError> {
        self.charge(len)?;
        if is_str {
            let s = self.str(len)?;
            Ok((Value::Str(s.to_owned()), s.as_bytes()))
        } else {
            let b = self.take(len)?;
            Ok((Value::Bytes(b.to_vec()), b))
        }
    }

    /// One whole value.  Iterative: containers being filled sit on an explicit stack, so
    /// the peer's nesting costs heap (bounded by `MESSAGE_DEPTH_MAX`), never call stack.
    fn value(&mut self) -> Result<Value, WireError> {
        let mut open: Vec<Open<'a>> = Vec::new();
        loop {
            // A map waiting for its next key reads it first.
            if let Some(Open::Map { key, .. }) = open.last_mut()
                && key.is_none()
            {
                *key = Some(self.key()?);
            }
            let depth = open.len().saturating_add(1);
            let mut value = match self.item()? {
                Item::Done(v) => v,
                Item::Array(len) => {
                    check_depth(depth)?;
                    // Every item takes at least one byte.
                    if len > self.rest.len() {
                        return Err(self.err("array longer than the bytes that remain"));
                    }
                    self.charge(len.saturating_mul(std::mem::size_of::<Value>()))?;
                    if len == 0 {
                        Value::Tuple(Vec::new())
                    } else {
                        open.push(Open::Array {
                            items: Vec::with_capacity(len),
                            left: len,
                        });
                        continue;
                    }
                }
                Item::Map(len) => {
                    check_depth(depth)?;
                    // Every pair takes at least two bytes.
                    if len > self.rest.len() / 2 {
                        return Err(self.err("map longer than the bytes that remain"));
                    }
                    let pair_size = std::mem::size_of::<(Value, Value)>()
                        .saturating_add(std::mem::size_of::<((bool, &[u8]), usize)>());
                    self.charge(len.saturating_mul(pair_size))?;
                    if len == 0 {
                        Value::Dict(Vec::new())
                    } else {
                        open.push(Open::Map {
                            pairs: Vec::with_capacity(len),
                            index: HashMap::with_capacity(len),
                            left: len,
                            key: None,
                        });
                        continue;
                    }
                }
            };
            // Hand the value to the innermost open container, closing each that fills up.
            loop {
                let Some(top) = open.last_mut() else {
                    return Ok(value);
                };
                let left = match top {
                    Open::Array { items, left } => {
                        items.push(value);
                        left
                    }
                    Open::Map {
                        pairs,
                        index,
                        left,
                        key,
                    } => {
                        let Some((k, raw)) = key.take() else {
                            return Err(self.err("map value without a key"));
                        };
                        match index.entry(raw) {
                            // Python dict semantics: first key's position, last value.
                            Entry::Occupied(slot) => {
                                if let Some(pair) = pairs.get_mut(*slot.get()) {
                                    pair.1 = value;
                                }
                            }
                            Entry::Vacant(slot) => {
                                slot.insert(pairs.len());
                                pairs.push((k, value));
                            }
                        }
                        left
                    }
                };
                *left = left.saturating_sub(1);
                if *left > 0 {
                    break;
                }
                value = match open.pop() {
                    Some(Open::Array { items, .. }) => Value::Tuple(items),
                    Some(Open::Map { pairs, .. }) => Value::Dict(pairs),
                    None => return Err(self.err("container stack underflow")),
                };
            }
        }
    }

    /// A map key: str or bin only (msgpack ≥ 1.0's `strict_map_key`), with its identity
    /// (str or bytes, raw bytes) for duplicate detection.
    fn key(&mut self) -> Result<(Value, (bool, &'a [u8])), WireError> {
        self.charge(std::mem::size_of::<Value>())?;
        let marker = self.marker()?;
        let Some((is_str, len)) = self.str_or_bin_len(marker)? else {
            return Err(self.err("map key is not str or bytes (strict_map_key)"));
        };
        let (key, raw) = self.str_or_bin(is_str, len)?;
        Ok((key, (is_str, raw)))
    }

    /// Reads one marker and what follows it up to a container's items.
    fn item(&mut self) -> Result<Item, WireError> {
        self.charge(std::mem::size_of::<Value>())?;
        let marker = self.marker()?;
        if let Some((is_str, len)) = self.str_or_bin_len(marker)? {
            return Ok(Item::Done(self.str_or_bin(is_str, len)?.0));
        }
        Ok(Item::Done(match marker {
            Marker::Null => Value::None,
            Marker::True => Value::Bool(true),
            Marker::False => Value::Bool(false),
            Marker::FixPos(n) => Value::Int(i64::from(n)),
            Marker::FixNeg(n) => Value::Int(i64::from(n)),
            Marker::U8 => Value::Int(i64::from(u8::from_be_bytes(self.take_array()?))),
            Marker::U16 => Value::Int(i64::from(u16::from_be_bytes(self.take_array()?))),
            Marker::U32 => Value::Int(i64::from(u32::from_be_bytes(self.take_array()?))),
            Marker::U64 => {
                let u = u64::from_be_bytes(self.take_array()?);
                match i64::try_from(u) {
                    Ok(i) => Value::Int(i),
                    Err(_) => {
                        // Above i64::MAX: little-endian two's complement needs a 9th,
                        // zero byte to stay positive (the minimal form).
                        let mut le = u.to_le_bytes().to_vec();
                        le.push(0);
                        Value::BigInt(le)
                    }
                }
            }
            Marker::I8 => Value::Int(i64::from(i8::from_be_bytes(self.take_array()?))),
            Marker::I16 => Value::Int(i64::from(i16::from_be_bytes(self.take_array()?))),
            Marker::I32 => Value::Int(i64::from(i32::from_be_bytes(self.take_array()?))),
            Marker::I64 => Value::Int(i64::from_be_bytes(self.take_array()?)),
            Marker::F32 => Value::Float(f64::from(f32::from_be_bytes(self.take_array()?))),
            Marker::F64 => Value::Float(f64::from_be_bytes(self.take_array()?)),
            Marker::FixArray(n) => return Ok(Item::Array(usize::from(n))),
            Marker::Array16 => return Ok(Item::Array(self.len16()?)),
            Marker::Array32 => return Ok(Item::Array(self.len32()?)),
            Marker::FixMap(n) => return Ok(Item::Map(usize::from(n))),
            Marker::Map16 => return Ok(Item::Map(self.len16()?)),
            Marker::Map32 => return Ok(Item::Map(self.len32()?)),
            Marker::Reserved => return Err(self.err("reserved byte 0xc1")),
            Marker::FixExt1
            | Marker::FixExt2
            | Marker::FixExt4
            | Marker::FixExt8
            | Marker::FixExt16
            | Marker::Ext8
            | Marker::Ext16
            | Marker::Ext32 => return Err(self.err("ext types are not used by ZEO")),
            // Str/bin were handled above.
            Marker::FixStr(_)
            | Marker::Str8
            | Marker::Str16
            | Marker::Str32
            | Marker::Bin8
            | Marker::Bin16
            | Marker::Bin32 => return Err(self.err("unreachable str/bin marker")),
        }))
    }
}

/// What one marker starts: a whole value, or a container of that many items/pairs.
enum Item {
    Done(Value),
    Array(usize),
    Map(usize),
}

/// A container being filled by [`Decoder::value`].
enum Open<'a> {
    Array {
        items: Vec<Value>,
        left: usize,
    },
    Map {
        pairs: Vec<(Value, Value)>,
        /// Key identity (is str, raw bytes borrowed from the input) → index in `pairs`.
        index: HashMap<(bool, &'a [u8]), usize>,
        left: usize,
        /// The key read for the value that comes next.
        key: Option<(Value, (bool, &'a [u8]))>,
    },
}

fn check_depth(depth: usize) -> Result<(), WireError> {
    if depth > MESSAGE_DEPTH_MAX {
        return Err(WireError::TooDeep {
            limit: MESSAGE_DEPTH_MAX,
        });
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn enc(v: &Value) -> Vec<u8> {
        let mut out = Vec::new();
        encode_value(&mut out, v, 0).unwrap();
        out
    }

    #[test]
    fn ints_use_msgpack_python_forms() {
        // Pairs printed by msgpack-python 1.2.4 `packb(v, use_bin_type=True)`.
        let cases: &[(i64, &str)] = &[
            (0, "00"),
            (127, "7f"),
            (128, "cc80"),
            (255, "ccff"),
            (256, "cd0100"),
            (65535, "cdffff"),
            (65536, "ce00010000"),
            (4294967295, "ceffffffff"),
            (4294967296, "cf0000000100000000"),
            (-1, "ff"),
            (-32, "e0"),
            (-33, "d0df"),
            (-128, "d080"),
            (-129, "d1ff7f"),
            (-32768, "d18000"),
            (-32769, "d2ffff7fff"),
            (-2147483648, "d280000000"),
            (-2147483649, "d3ffffffff7fffffff"),
            (i64::MIN, "d38000000000000000"),
        ];
        for &(i, hex) in cases {
            assert_eq!(hex::encode(enc(&Value::Int(i))), hex, "{i}");
            assert_eq!(decode_value(&hex::decode(hex).unwrap()), Ok(Value::Int(i)));
        }
    }

    #[test]
    fn u64_beyond_i64_is_a_bigint() {
        let wire = hex::decode("cfffffffffffffffff").unwrap();
        let v = decode_value(&wire).unwrap();
        assert_eq!(
            v,
            Value::BigInt(vec![0xff; 8].into_iter().chain([0]).collect())
        );
        assert_eq!(enc(&v), wire);
        // The same int as the pickle decoder gives it (LONG1 of 9 bytes).
        let (p, _) =
            zodb_pickle::decode(&hex::decode("80038a09ffffffffffffffff002e").unwrap()).unwrap();
        assert_eq!(p, v);
        // Beyond u64 is refused, as msgpack-python's OverflowError.
        let mut big = vec![0u8; 9];
        big[8] = 1;
        assert!(matches!(
            encode_value(&mut Vec::new(), &Value::BigInt(big), 0),
            Err(WireError::NotEncodable(_))
        ));
        // A BigInt that fits i64 (not what the decoders produce, but valid) encodes as int.
        assert_eq!(enc(&Value::BigInt(vec![0xff; 9])), enc(&Value::Int(-1)));
    }

    #[test]
    fn str_bin_array_map_forms() {
        assert_eq!(enc(&Value::str("a".repeat(31)))[0], 0xbf);
        assert_eq!(&enc(&Value::str("a".repeat(32)))[..2], &[0xd9, 0x20]);
        assert_eq!(enc(&Value::Bytes(vec![])), vec![0xc4, 0x00]);
        assert_eq!(enc(&Value::Tuple(vec![Value::Int(1); 15]))[0], 0x9f);
        assert_eq!(
            &enc(&Value::List(vec![Value::Int(1); 16]))[..3],
            &[0xdc, 0x00, 0x10]
        );
        assert_eq!(
            enc(&Value::Dict(vec![(Value::str("a"), Value::Int(1))])),
            vec![0x81, 0xa1, b'a', 0x01]
        );
        assert_eq!(hex::encode(enc(&Value::Float(1.5))), "cb3ff8000000000000");
    }

    #[test]
    fn decode_matches_msgpack_python() {
        // (input, what `unpackb(raw=False, use_list=False)` gave, or None for an error).
        let cases: Vec<(&str, Option<Value>)> = vec![
            ("810102", None),     // int key: strict_map_key
            ("8192010203", None), // tuple key
            (
                "82a16101a16102",
                Some(Value::Dict(vec![(Value::str("a"), Value::Int(2))])),
            ),
            ("ca3fc00000", Some(Value::Float(1.5))),
            ("d40100", None), // ext (Python: ExtType)
            ("a2fffe", None), // invalid UTF-8
            ("0102", None),   // ExtraData
            ("9201", None),   // incomplete
            ("c1", None),
            (
                "81c4016101",
                Some(Value::Dict(vec![(
                    Value::Bytes(b"a".to_vec()),
                    Value::Int(1),
                )])),
            ),
            (
                "920102",
                Some(Value::Tuple(vec![Value::Int(1), Value::Int(2)])),
            ),
        ];
        for (hex, want) in cases {
            let got = decode_value(&hex::decode(hex).unwrap());
            match want {
                Some(v) => assert_eq!(got, Ok(v), "{hex}"),
                None => assert!(got.is_err(), "{hex}: {got:?}"),
            }
        }
    }

    #[test]
    fn duplicate_keys_keep_first_position_last_value() {
        // {'a': 1, 'b': 2, 'a': 3} -> {'a': 3, 'b': 2}; b'a' is another key.
        let wire = hex::decode("84a16101a16202a16103c4016104").unwrap();
        assert_eq!(
            decode_value(&wire),
            Ok(Value::Dict(vec![
                (Value::str("a"), Value::Int(3)),
                (Value::str("b"), Value::Int(2)),
                (Value::Bytes(b"a".to_vec()), Value::Int(4)),
            ]))
        );
    }

    #[test]
    fn untrusted_lengths_are_checked_before_allocating() {
        for hex in [
            "dd ffffffff",
            "df ffffffff",
            "c6 ffffffff",
            "db ffffffff 61",
            "dc 0003 01 02",
        ] {
            let wire = hex::decode(hex.replace(' ', "")).unwrap();
            assert!(decode_value(&wire).is_err(), "{hex}");
        }
        // A map of n pairs needs 2n bytes.
        assert!(decode_value(&hex::decode("de0002a16101").unwrap()).is_err());
    }

    #[test]
    fn nesting_is_bounded() {
        let ok = [vec![0x91; MESSAGE_DEPTH_MAX], vec![0xc0]].concat();
        assert!(decode_value(&ok).is_ok());
        let deep = [vec![0x91; MESSAGE_DEPTH_MAX + 1], vec![0xc0]].concat();
        assert_eq!(
            decode_value(&deep),
            Err(WireError::TooDeep {
                limit: MESSAGE_DEPTH_MAX
            })
        );
        let v = decode_value(&ok).unwrap();
        assert_eq!(enc(&v), ok);
        let deeper = Value::Tuple(vec![v]);
        assert!(encode_value(&mut Vec::new(), &deeper, 0).is_err());
    }

    #[test]
    fn refuses_what_python_cannot_pack_or_unpack() {
        for v in [
            Value::Set(vec![]),
            Value::global("builtins", "dict"),
            Value::Dict(vec![(Value::Int(1), Value::None)]),
            Value::PersistentRef(Box::new(Value::None)),
        ] {
            assert!(matches!(
                encode_value(&mut Vec::new(), &v, 0),
                Err(WireError::NotEncodable(_))
            ));
        }
    }
}
