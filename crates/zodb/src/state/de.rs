//! [`Value`] → `Deserialize`: a serde deserializer reading the pickle value tree.
//!
//! States come from records other programs wrote (Python, older bbru versions), so
//! every shape mismatch is an error naming what was expected, never a panic.  Unknown dict
//! keys are ignored by serde's derived structs, which keeps newer records readable by
//! older code.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use zodb_pickle::Value;

use super::{PREF_TOKEN, StateError, refs::PidKind, refs::parse_pid};

/// Reads a deserializable value out of a pickle [`Value`].
pub fn from_value<T: DeserializeOwned>(value: Value) -> Result<T, StateError> {
    T::deserialize(ValueDeserializer(value))
}

/// A short name of a value's kind for error messages.
fn kind(value: &Value) -> &'static str {
    match value {
        Value::None => "None",
        Value::Bool(_) => "a bool",
        Value::Int(_) | Value::BigInt(_) => "an int",
        Value::Float(_) => "a float",
        Value::Bytes(_) => "bytes",
        Value::Str(_) => "a str",
        Value::Tuple(_) => "a tuple",
        Value::List(_) => "a list",
        Value::Dict(_) => "a dict",
        Value::Set(_) | Value::FrozenSet(_) => "a set",
        Value::Global { .. } => "a global",
        Value::PersistentRef(_) => "a persistent reference",
        _ => "an instance",
    }
}

/// A `BigInt` (little-endian two's complement) as an `i128` when it fits.
fn big_to_i128(bytes: &[u8]) -> Option<i128> {
    if bytes.is_empty() || bytes.len() > 16 {
        return None;
    }
    let negative = bytes.last().is_some_and(|b| b & 0x80 != 0);
    let mut buf = if negative { [0xff; 16] } else { [0; 16] };
    buf.get_mut(..bytes.len())?.copy_from_slice(bytes);
    Some(i128::from_le_bytes(buf))
}

pub(crate) struct ValueDeserializer(pub(crate) Value);

impl ValueDeserializer {
    fn unexpected(&self, expected: &str) -> StateError {
        StateError(format!("expected {expected}, found {}", kind(&self.0)))
    }
}

impl<'de> de::Deserializer<'de> for ValueDeserializer {
    type Error = StateError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match self.0 {
            Value::None => visitor.visit_unit(),
            Value::Bool(b) => visitor.visit_bool(b),
            Value::Int(i) => visitor.visit_i64(i),
            Value::BigInt(ref bytes) => match big_to_i128(bytes) {
                Some(i) => match u64::try_from(i) {
                    Ok(u) => visitor.visit_u64(u),
                    Err(_) => visitor.visit_i128(i),
                },
                None => Err(StateError("integer too large".into())),
            },
            Value::Float(f) => visitor.visit_f64(f),
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Str(s) => visitor.visit_string(s),
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => visitor.visit_seq(Seq(items.into_iter())),
            Value::Dict(items) => visitor.visit_map(Map {
                items: items.into_iter(),
                value: None,
            }),
            other => Err(StateError(format!(
                "{} cannot be read into a Rust value",
                kind(&other)
            ))),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match self.0 {
            Value::None => visitor.visit_none(),
            other => visitor.visit_some(ValueDeserializer(other)),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, StateError> {
        if name != PREF_TOKEN {
            return visitor.visit_newtype_struct(self);
        }
        let Value::PersistentRef(pid) = &self.0 else {
            return Err(self.unexpected("a persistent reference"));
        };
        match parse_pid(pid) {
            Some(PidKind::Strong { oid, class }) => super::pref::visit_ref(visitor, oid, class),
            _ => Err(StateError(format!(
                "expected a strong persistent reference, found {pid:?}"
            ))),
        }
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match self.0 {
            Value::Bytes(b) => visitor.visit_byte_buf(b),
            Value::Str(s) => visitor.visit_byte_buf(s.into_bytes()),
            _ => Err(self.unexpected("bytes")),
        }
    }

    fn deserialize_byte_buf<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        self.deserialize_bytes(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, StateError> {
        match self.0 {
            Value::Str(variant) => visitor.visit_enum(variant.into_deserializer()),
            Value::Dict(mut items) if items.len() == 1 => {
                let Some((key, value)) = items.pop() else {
                    return Err(StateError("empty enum dict".into()));
                };
                let Value::Str(variant) = key else {
                    return Err(StateError("enum variant name is not a str".into()));
                };
                visitor.visit_enum(Enum { variant, value })
            }
            _ => Err(self.unexpected("an enum (a str or a one-item dict)")),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match self.0 {
            Value::None => visitor.visit_unit(),
            _ => Err(self.unexpected("None")),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match self.0 {
            // Python writes whole floats as floats, but an int where a float is expected
            // is what a Python program would happily have stored.
            Value::Int(i) => visitor.visit_f64(i as f64),
            _ => self.deserialize_any(visitor),
        }
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        self.deserialize_f64(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 char str string
        unit_struct seq tuple tuple_struct map struct identifier ignored_any
    }
}

struct Seq(std::vec::IntoIter<Value>);

impl<'de> SeqAccess<'de> for Seq {
    type Error = StateError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, StateError> {
        match self.0.next() {
            Some(v) => seed.deserialize(ValueDeserializer(v)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map {
    items: std::vec::IntoIter<(Value, Value)>,
    value: Option<Value>,
}

impl<'de> MapAccess<'de> for Map {
    type Error = StateError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, StateError> {
        match self.items.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(ValueDeserializer(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, StateError> {
        let value = self
            .value
            .take()
            .ok_or_else(|| StateError("map value asked before its key".into()))?;
        seed.deserialize(ValueDeserializer(value))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.items.len())
    }
}

struct Enum {
    variant: String,
    value: Value,
}

impl<'de> de::EnumAccess<'de> for Enum {
    type Error = StateError;
    type Variant = ValueDeserializer;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, ValueDeserializer), StateError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, ValueDeserializer(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for ValueDeserializer {
    type Error = StateError;
    fn unit_variant(self) -> Result<(), StateError> {
        match self.0 {
            Value::None => Ok(()),
            _ => Err(self.unexpected("None for a unit variant")),
        }
    }
    fn newtype_variant_seed<T: DeserializeSeed<'de>>(
        self,
        seed: T,
    ) -> Result<T::Value, StateError> {
        seed.deserialize(self)
    }
    fn tuple_variant<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, StateError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
    fn struct_variant<V: Visitor<'de>>(
        self,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, StateError> {
        de::Deserializer::deserialize_any(self, visitor)
    }
}
