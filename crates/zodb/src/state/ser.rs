//! `Serialize` → [`Value`]: a serde serializer whose output is the pickle value tree.

use serde::ser::{self, Serialize};
use zodb_pickle::Value;
use zodb_storage::Oid;

use super::{PREF_TOKEN, StateError, refs::ref_value};

/// Turns a serializable value into a pickle [`Value`] (see the module documentation of
/// [`crate::state`] for the mapping).
pub fn to_value<T: Serialize + ?Sized>(value: &T) -> Result<Value, StateError> {
    value.serialize(Serializer)
}

struct Serializer;

fn int_from_u64(v: u64) -> Value {
    match i64::try_from(v) {
        Ok(i) => Value::Int(i),
        Err(_) => big_int(i128::from(v)),
    }
}

/// A Python long as `LONG1` carries it: little-endian two's complement, minimal length.
fn big_int(v: i128) -> Value {
    if let Ok(i) = i64::try_from(v) {
        return Value::Int(i);
    }
    let bytes = v.to_le_bytes();
    let mut len = bytes.len();
    // Drop sign-extension bytes while the next byte down still carries the sign.
    while len > 1 {
        let top = bytes[len - 1];
        let below = bytes[len - 2];
        let redundant = (top == 0x00 && below & 0x80 == 0) || (top == 0xff && below & 0x80 != 0);
        if !redundant {
            break;
        }
        len -= 1;
    }
    Value::BigInt(bytes[..len].to_vec())
}

/// The oid, module and name a `PRef` serializes as its newtype content.
fn pref_value(inner: Value) -> Result<Value, StateError> {
    let bad = || StateError(format!("malformed persistent reference {inner:?}"));
    let Value::Tuple(items) = &inner else {
        return Err(bad());
    };
    let [Value::Int(oid), Value::Str(module), Value::Str(name)] = items.as_slice() else {
        return Err(bad());
    };
    let oid = Oid(u64::try_from(*oid).map_err(|_| bad())?);
    let class = (!module.is_empty()).then_some((module.as_str(), name.as_str()));
    Ok(ref_value(oid, class))
}

impl ser::Serializer for Serializer {
    type Ok = Value;
    type Error = StateError;
    type SerializeSeq = SeqBuilder;
    type SerializeTuple = SeqBuilder;
    type SerializeTupleStruct = SeqBuilder;
    type SerializeTupleVariant = VariantBuilder<SeqBuilder>;
    type SerializeMap = MapBuilder;
    type SerializeStruct = MapBuilder;
    type SerializeStructVariant = VariantBuilder<MapBuilder>;

    fn serialize_bool(self, v: bool) -> Result<Value, StateError> {
        Ok(Value::Bool(v))
    }
    fn serialize_i8(self, v: i8) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i16(self, v: i16) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i32(self, v: i32) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_i64(self, v: i64) -> Result<Value, StateError> {
        Ok(Value::Int(v))
    }
    fn serialize_i128(self, v: i128) -> Result<Value, StateError> {
        Ok(big_int(v))
    }
    fn serialize_u8(self, v: u8) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u16(self, v: u16) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u32(self, v: u32) -> Result<Value, StateError> {
        Ok(Value::Int(v.into()))
    }
    fn serialize_u64(self, v: u64) -> Result<Value, StateError> {
        Ok(int_from_u64(v))
    }
    fn serialize_u128(self, v: u128) -> Result<Value, StateError> {
        i128::try_from(v)
            .map(big_int)
            .map_err(|_| StateError(format!("integer {v} is too large")))
    }
    fn serialize_f32(self, v: f32) -> Result<Value, StateError> {
        Ok(Value::Float(v.into()))
    }
    fn serialize_f64(self, v: f64) -> Result<Value, StateError> {
        Ok(Value::Float(v))
    }
    fn serialize_char(self, v: char) -> Result<Value, StateError> {
        Ok(Value::Str(v.to_string()))
    }
    fn serialize_str(self, v: &str) -> Result<Value, StateError> {
        Ok(Value::Str(v.to_owned()))
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<Value, StateError> {
        Ok(Value::Bytes(v.to_vec()))
    }
    fn serialize_none(self) -> Result<Value, StateError> {
        Ok(Value::None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<Value, StateError> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<Value, StateError> {
        Ok(Value::None)
    }
    fn serialize_unit_struct(self, _name: &'static str) -> Result<Value, StateError> {
        Ok(Value::None)
    }
    fn serialize_unit_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
    ) -> Result<Value, StateError> {
        Ok(Value::str(variant))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        name: &'static str,
        value: &T,
    ) -> Result<Value, StateError> {
        let inner = value.serialize(Serializer)?;
        if name == PREF_TOKEN {
            pref_value(inner)
        } else {
            Ok(inner)
        }
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<Value, StateError> {
        let inner = value.serialize(Serializer)?;
        Ok(Value::Dict(vec![(Value::str(variant), inner)]))
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<SeqBuilder, StateError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            tuple: false,
        })
    }
    fn serialize_tuple(self, len: usize) -> Result<SeqBuilder, StateError> {
        Ok(SeqBuilder {
            items: Vec::with_capacity(len.min(4096)),
            tuple: true,
        })
    }
    fn serialize_tuple_struct(
        self,
        _name: &'static str,
        len: usize,
    ) -> Result<SeqBuilder, StateError> {
        self.serialize_tuple(len)
    }
    fn serialize_tuple_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<SeqBuilder>, StateError> {
        Ok(VariantBuilder {
            variant,
            inner: self.serialize_tuple(len)?,
        })
    }
    fn serialize_map(self, len: Option<usize>) -> Result<MapBuilder, StateError> {
        Ok(MapBuilder {
            items: Vec::with_capacity(len.unwrap_or(0).min(4096)),
            key: None,
        })
    }
    fn serialize_struct(self, _name: &'static str, len: usize) -> Result<MapBuilder, StateError> {
        self.serialize_map(Some(len))
    }
    fn serialize_struct_variant(
        self,
        _name: &'static str,
        _index: u32,
        variant: &'static str,
        len: usize,
    ) -> Result<VariantBuilder<MapBuilder>, StateError> {
        Ok(VariantBuilder {
            variant,
            inner: self.serialize_map(Some(len))?,
        })
    }
}

/// Builds a list (sequences) or a tuple (tuples, tuple structs).
pub(crate) struct SeqBuilder {
    items: Vec<Value>,
    tuple: bool,
}

impl SeqBuilder {
    fn push<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.items.push(value.serialize(Serializer)?);
        Ok(())
    }
    fn finish(self) -> Value {
        if self.tuple {
            Value::Tuple(self.items)
        } else {
            Value::List(self.items)
        }
    }
}

impl ser::SerializeSeq for SeqBuilder {
    type Ok = Value;
    type Error = StateError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTuple for SeqBuilder {
    type Ok = Value;
    type Error = StateError;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(self.finish())
    }
}

impl ser::SerializeTupleStruct for SeqBuilder {
    type Ok = Value;
    type Error = StateError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.push(value)
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(self.finish())
    }
}

/// Builds a dict (maps, structs).
pub(crate) struct MapBuilder {
    items: Vec<(Value, Value)>,
    key: Option<Value>,
}

impl ser::SerializeMap for MapBuilder {
    type Ok = Value;
    type Error = StateError;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), StateError> {
        self.key = Some(key.serialize(Serializer)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        let key = self
            .key
            .take()
            .ok_or_else(|| StateError("map value without a key".into()))?;
        self.items.push((key, value.serialize(Serializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(Value::Dict(self.items))
    }
}

impl ser::SerializeStruct for MapBuilder {
    type Ok = Value;
    type Error = StateError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        self.items
            .push((Value::str(key), value.serialize(Serializer)?));
        Ok(())
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(Value::Dict(self.items))
    }
}

/// An enum variant with content: `{variant: content}`.
pub(crate) struct VariantBuilder<B> {
    variant: &'static str,
    inner: B,
}

impl ser::SerializeTupleVariant for VariantBuilder<SeqBuilder> {
    type Ok = Value;
    type Error = StateError;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), StateError> {
        self.inner.push(value)
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(Value::Dict(vec![(
            Value::str(self.variant),
            self.inner.finish(),
        )]))
    }
}

impl ser::SerializeStructVariant for VariantBuilder<MapBuilder> {
    type Ok = Value;
    type Error = StateError;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), StateError> {
        ser::SerializeStruct::serialize_field(&mut self.inner, key, value)
    }
    fn end(self) -> Result<Value, StateError> {
        Ok(Value::Dict(vec![(
            Value::str(self.variant),
            Value::Dict(self.inner.items),
        )]))
    }
}
