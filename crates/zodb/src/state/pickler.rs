//! `Serialize` → record bytes directly: the record `encode_record(class, to_value(x))`
//! writes, byte for byte, without building the [`zodb_pickle::Value`] tree and walking it
//! again (the commit's encoding was most of its time, and mostly allocation).
//!
//! It writes what `to_value` maps a value to (see [`crate::state`]) the way the encoder
//! writes that value: ints, floats, str and bytes with the encoder's own writers
//! ([`zodb_pickle::write`]), tuples `EMPTY_TUPLE`/`TUPLE1..3`/`MARK … TUPLE`, lists
//! and dicts filled in batches of 1000 (`APPEND`/`SETITEM` for a batch of one),
//! references `(oid, class)` `BINPERSID` with the classes named more than once memoized
//! (a first pass, `scan.rs`, finds them).  Anything else — ints beyond `i64`, sequences
//! or maps of unknown length, a list or dict as a dict key, names the encoder refuses,
//! nesting beyond [`limits::NESTING_MAX`], any error — returns `None`, and the caller
//! takes the long way, which writes or refuses it as before.

use serde::ser::{self, Serialize};
use zodb_pickle::{limits, opcodes as op, write};
use zodb_storage::Oid;

use super::scan::{RefParts, Scan, unsupported};
use super::{PREF_TOKEN, StateError};

/// How many items Python's pickler (and the encoder) puts in one `APPENDS`/`SETITEMS`.
const BATCH_SIZE: usize = 1000;

/// What the output starts with room for: the usual small record.
const RECORD_BYTES_TYPICAL: usize = 256;

/// The record of `value` with class `class`, and (when `refs` is given) the oids its
/// strong references name; `None` when the long way must write it.
pub fn to_record<T: Serialize + ?Sized>(
    class: (&str, &str),
    value: &T,
    refs: Option<&mut Vec<Oid>>,
) -> Option<Vec<u8>> {
    let mut scan = Scan::new(class);
    value.serialize(&mut scan).ok()?;
    let memo = scan
        .classes
        .into_iter()
        .filter(|(_, count)| *count > 1)
        .map(|(class, _)| (class, None))
        .collect();
    let mut p = Pickler {
        out: Vec::with_capacity(RECORD_BYTES_TYPICAL),
        memo,
        next_memo: 0,
        depth: 0,
        in_key: 0,
        refs,
        parts: RefParts::default(),
    };
    p.out.extend_from_slice(&[op::PROTO, op::WRITE_PROTOCOL]);
    p.global(class.0, class.1).ok()?;
    p.out
        .extend_from_slice(&[op::STOP, op::PROTO, op::WRITE_PROTOCOL]);
    value.serialize(&mut p).ok()?;
    p.out.push(op::STOP);
    Some(p.out)
}

struct Pickler<'r> {
    out: Vec<u8>,
    /// The classes named more than once, with the memo index given at their first write.
    memo: Vec<((String, String), Option<u8>)>,
    next_memo: u8,
    /// Containers entered.
    depth: usize,
    /// Dict keys being written (a key may not hold a list or dict).
    in_key: usize,
    refs: Option<&'r mut Vec<Oid>>,
    parts: RefParts,
}

impl Pickler<'_> {
    fn int(&mut self, i: i64) {
        write::int(&mut self.out, i);
    }

    fn str(&mut self, s: &str) -> Result<(), StateError> {
        write::str(&mut self.out, s).map_err(|_| unsupported())
    }

    /// A `GLOBAL`, memoized on its first write when it is named again, fetched after.
    fn global(&mut self, module: &str, name: &str) -> Result<(), StateError> {
        let slot = self
            .memo
            .iter()
            .position(|((m, n), _)| m == module && n == name);
        if let Some(index) = slot.and_then(|i| self.memo[i].1) {
            self.out.extend_from_slice(&[op::BINGET, index]);
            return Ok(());
        }
        for part in [module, name] {
            if part.is_empty() || part.contains('\n') {
                return Err(unsupported());
            }
        }
        self.out.push(op::GLOBAL);
        for part in [module, name] {
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
        if let Some(i) = slot {
            // Past 256 memoized classes the encoder switches to 4-byte indexes.
            let index = self.next_memo;
            self.next_memo = index.checked_add(1).ok_or_else(unsupported)?;
            self.memo[i].1 = Some(index);
            self.out.extend_from_slice(&[op::BINPUT, index]);
        }
        Ok(())
    }

    /// Enters a container (the encoder refuses to nest deeper than its limit).
    fn enter(&mut self) -> Result<(), StateError> {
        if self.depth >= limits::NESTING_MAX {
            return Err(unsupported());
        }
        self.depth += 1;
        Ok(())
    }

    /// Enters a list or dict, which cannot be part of a dict key.
    fn enter_mutable(&mut self) -> Result<(), StateError> {
        if self.in_key > 0 {
            return Err(unsupported());
        }
        self.enter()
    }

    fn reference(&mut self) -> Result<(), StateError> {
        let oid = self.parts.oid;
        if i64::try_from(oid).is_err() {
            return Err(unsupported());
        }
        // PersistentRef and its pid tuple are two levels, as in the tree.
        self.enter()?;
        let bytes = oid.to_be_bytes();
        self.out.extend_from_slice(&[op::SHORT_BINBYTES, 8]);
        self.out.extend_from_slice(&bytes);
        if !self.parts.module.is_empty() {
            self.enter()?;
            let (module, name) = (
                std::mem::take(&mut self.parts.module),
                std::mem::take(&mut self.parts.name),
            );
            let written = self.global(&module, &name);
            self.parts.module = module;
            self.parts.name = name;
            written?;
            self.out.push(op::TUPLE2);
            self.depth -= 1;
            if let Some(refs) = self.refs.as_deref_mut() {
                refs.push(Oid(oid));
            }
        } else if let Some(refs) = self.refs.as_deref_mut() {
            refs.push(Oid(oid));
        }
        self.out.push(op::BINPERSID);
        self.depth -= 1;
        Ok(())
    }
}

/// A list, tuple or dict being written: how many items (pairs) it has and has had.
struct Compound<'p, 'r> {
    p: &'p mut Pickler<'r>,
    kind: Kind,
    len: usize,
    done: usize,
    /// Whether this is an enum variant's content: the dict around it is closed at the end.
    variant: bool,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Tuple,
    Dict,
}

impl<'p, 'r> Compound<'p, 'r> {
    fn open(
        p: &'p mut Pickler<'r>,
        kind: Kind,
        len: usize,
        variant: Option<&str>,
    ) -> Result<Self, StateError> {
        if let Some(name) = variant {
            // `{variant: content}`: a dict of one pair.
            p.enter_mutable()?;
            p.out.push(op::EMPTY_DICT);
            p.str(name)?;
        }
        match kind {
            Kind::List => {
                p.enter_mutable()?;
                p.out.push(op::EMPTY_LIST);
            }
            Kind::Dict => {
                p.enter_mutable()?;
                p.out.push(op::EMPTY_DICT);
            }
            Kind::Tuple => {
                p.enter()?;
                if len > 3 {
                    p.out.push(op::MARK);
                }
            }
        }
        Ok(Compound {
            p,
            kind,
            len,
            done: 0,
            variant: variant.is_some(),
        })
    }

    /// Before item (pair) `done`: a batch of several starts with `MARK`.
    fn before_item(&mut self) -> Result<(), StateError> {
        if self.done >= self.len {
            return Err(unsupported());
        }
        if self.kind != Kind::Tuple && self.done.is_multiple_of(BATCH_SIZE) {
            let batch = (self.len - self.done).min(BATCH_SIZE);
            if batch > 1 {
                self.p.out.push(op::MARK);
            }
        }
        Ok(())
    }

    /// After item (pair) `done`: the end of a batch adds its items.
    fn after_item(&mut self) {
        self.done += 1;
        if self.kind == Kind::Tuple {
            return;
        }
        let batch_start = (self.done - 1) / BATCH_SIZE * BATCH_SIZE;
        let batch = (self.len - batch_start).min(BATCH_SIZE);
        if self.done == batch_start + batch {
            let (one, many) = match self.kind {
                Kind::List => (op::APPEND, op::APPENDS),
                _ => (op::SETITEM, op::SETITEMS),
            };
            self.p.out.push(if batch == 1 { one } else { many });
        }
    }

    fn element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.before_item()?;
        value.serialize(&mut *self.p)?;
        self.after_item();
        Ok(())
    }

    fn key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), StateError> {
        self.before_item()?;
        self.p.in_key += 1;
        let written = key.serialize(&mut *self.p);
        self.p.in_key -= 1;
        written
    }

    fn value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        value.serialize(&mut *self.p)?;
        self.after_item();
        Ok(())
    }

    fn field<T: Serialize + ?Sized>(&mut self, key: &str, value: &T) -> Result<(), StateError> {
        self.before_item()?;
        self.p.str(key)?;
        self.value(value)
    }

    fn end(self) -> Result<(), StateError> {
        if self.done != self.len {
            return Err(unsupported());
        }
        if self.kind == Kind::Tuple {
            self.p.out.push(match self.len {
                0 => op::EMPTY_TUPLE,
                1 => op::TUPLE1,
                2 => op::TUPLE2,
                3 => op::TUPLE3,
                _ => op::TUPLE,
            });
        }
        self.p.depth -= 1;
        if self.variant {
            self.p.out.push(op::SETITEM);
            self.p.depth -= 1;
        }
        Ok(())
    }
}

impl<'p, 'r> ser::Serializer for &'p mut Pickler<'r> {
    type Ok = ();
    type Error = StateError;
    type SerializeSeq = Compound<'p, 'r>;
    type SerializeTuple = Compound<'p, 'r>;
    type SerializeTupleStruct = Compound<'p, 'r>;
    type SerializeTupleVariant = Compound<'p, 'r>;
    type SerializeMap = Compound<'p, 'r>;
    type SerializeStruct = Compound<'p, 'r>;
    type SerializeStructVariant = Compound<'p, 'r>;

    fn serialize_bool(self, v: bool) -> Result<(), StateError> {
        self.out.push(if v { op::NEWTRUE } else { op::NEWFALSE });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i16(self, v: i16) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i32(self, v: i32) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_i64(self, v: i64) -> Result<(), StateError> {
        self.int(v);
        Ok(())
    }
    fn serialize_i128(self, v: i128) -> Result<(), StateError> {
        self.int(i64::try_from(v).map_err(|_| unsupported())?);
        Ok(())
    }
    fn serialize_u8(self, v: u8) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_u16(self, v: u16) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_u32(self, v: u32) -> Result<(), StateError> {
        self.int(v.into());
        Ok(())
    }
    fn serialize_u64(self, v: u64) -> Result<(), StateError> {
        self.int(i64::try_from(v).map_err(|_| unsupported())?);
        Ok(())
    }
    fn serialize_u128(self, v: u128) -> Result<(), StateError> {
        self.int(i64::try_from(v).map_err(|_| unsupported())?);
        Ok(())
    }
    fn serialize_f32(self, v: f32) -> Result<(), StateError> {
        self.serialize_f64(v.into())
    }
    fn serialize_f64(self, v: f64) -> Result<(), StateError> {
        write::float(&mut self.out, v);
        Ok(())
    }
    fn serialize_char(self, v: char) -> Result<(), StateError> {
        self.str(v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), StateError> {
        self.str(v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), StateError> {
        write::bytes(&mut self.out, v).map_err(|_| unsupported())
    }
    fn serialize_none(self) -> Result<(), StateError> {
        self.out.push(op::NONE);
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), StateError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), StateError> {
        self.serialize_none()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), StateError> {
        self.serialize_none()
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
    ) -> Result<(), StateError> {
        self.str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        if name != PREF_TOKEN {
            return value.serialize(self);
        }
        if self.in_key > 0 {
            // A reference as a dict key: left to the encoder's own checks.
            return Err(unsupported());
        }
        self.parts.read(value)?;
        self.reference()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        self.enter_mutable()?;
        self.out.push(op::EMPTY_DICT);
        self.str(variant)?;
        value.serialize(&mut *self)?;
        self.out.push(op::SETITEM);
        self.depth -= 1;
        Ok(())
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::List, len.ok_or_else(unsupported)?, None)
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Tuple, len, None)
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Tuple, len, None)
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Tuple, len, Some(variant))
    }
    fn serialize_map(self, len: Option<usize>) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Dict, len.ok_or_else(unsupported)?, None)
    }
    fn serialize_struct(self, _: &'static str, len: usize) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Dict, len, None)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<Compound<'p, 'r>, StateError> {
        Compound::open(self, Kind::Dict, len, Some(variant))
    }
}

/// The sequence-shaped parts of [`Compound`]: each element goes to `element`.
macro_rules! sequence_compound {
    ($($trait:ident: $method:ident;)*) => {
        $(impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = StateError;
            fn $method<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
                self.element(value)
            }
            fn end(self) -> Result<(), StateError> {
                Compound::end(self)
            }
        })*
    };
}

sequence_compound! {
    SerializeSeq: serialize_element;
    SerializeTuple: serialize_element;
    SerializeTupleStruct: serialize_field;
    SerializeTupleVariant: serialize_field;
}

impl ser::SerializeMap for Compound<'_, '_> {
    type Ok = ();
    type Error = StateError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), StateError> {
        self.key(key)
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.value(value)
    }
    fn end(self) -> Result<(), StateError> {
        Compound::end(self)
    }
}

/// The struct-shaped parts of [`Compound`]: each field goes to `field`.
macro_rules! struct_compound {
    ($($trait:ident;)*) => {
        $(impl ser::$trait for Compound<'_, '_> {
            type Ok = ();
            type Error = StateError;
            fn serialize_field<T: Serialize + ?Sized>(
                &mut self,
                key: &'static str,
                value: &T,
            ) -> Result<(), StateError> {
                self.field(key, value)
            }
            fn end(self) -> Result<(), StateError> {
                Compound::end(self)
            }
        })*
    };
}

struct_compound! {
    SerializeStruct;
    SerializeStructVariant;
}
