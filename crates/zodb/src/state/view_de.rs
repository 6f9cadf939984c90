//! A record's state → `Deserialize`, read in place from the decoder's arena
//! ([`zodb_pickle::View`]) instead of from a [`zodb_pickle::Value`] tree: no copy of
//! every string and container before serde copies them again into the object.
//!
//! It reads the shapes typed objects are made of (None, bool, int, float, str, bytes,
//! tuple, list, dict with `str` keys, persistent references) exactly as `de.rs` reads
//! them from a tree.  Anything else, and any error, makes the caller read the record the
//! long way ([`from_view`] is a fast path, never the only one): the tree's reading is
//! the reference, and an error is reported as that reading reports it.

use serde::de::{
    self, DeserializeOwned, DeserializeSeed, IntoDeserializer, MapAccess, SeqAccess, Visitor,
};
use zodb_pickle::{Items, Kind, Pairs, View};
use zodb_storage::Oid;

use super::{PREF_TOKEN, StateError};

/// Reads a deserializable value out of a state view; an error means "read the tree".
pub fn from_view<T: DeserializeOwned>(view: View<'_>) -> Result<T, StateError> {
    T::deserialize(ViewDeserializer(view))
}

/// The error of every shape this reader leaves to the tree; its text is never shown.
fn other() -> StateError {
    StateError("read through the value tree".into())
}

fn kind<'r>(view: &View<'r>) -> Result<Kind<'r>, StateError> {
    view.kind().map_err(|e| StateError(e.to_string()))
}

/// The oid of a pid's oid item: bytes, or an ASCII str (Python 2 records).
fn oid_of(kind: &Kind<'_>) -> Option<Oid> {
    match kind {
        Kind::Bytes(b) => Oid::from_slice(b),
        Kind::Str(s) => Oid::from_slice(s.as_bytes()),
        _ => None,
    }
}

/// The class a reference records: module and name, lent by the record.
type Class<'r> = Option<(&'r str, &'r str)>;

/// A strong reference's oid and class, as `refs::parse_pid` reads them (forms A and B).
fn strong_ref<'r>(pid: &View<'r>) -> Result<(Oid, Class<'r>), StateError> {
    let pid_kind = kind(pid)?;
    if let Some(oid) = oid_of(&pid_kind) {
        return Ok((oid, None));
    }
    let Kind::Tuple(mut items) = pid_kind else {
        return Err(other());
    };
    let oid = match items.next() {
        Some(first) => oid_of(&kind(&first)?).ok_or_else(other)?,
        None => return Err(other()),
    };
    let class = match items.next() {
        Some(second) => match kind(&second)? {
            Kind::Tuple(mut mn) => match (mn.next(), mn.next()) {
                (Some(m), Some(n)) => match (kind(&m)?, kind(&n)?) {
                    (Kind::Str(m), Kind::Str(n)) => Some((m, n)),
                    _ => None,
                },
                _ => None,
            },
            Kind::Global(m, n) => Some((m, n)),
            _ => None,
        },
        None => None,
    };
    Ok((oid, class))
}

struct ViewDeserializer<'r>(View<'r>);

impl<'de> de::Deserializer<'de> for ViewDeserializer<'_> {
    type Error = StateError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match kind(&self.0)? {
            Kind::None => visitor.visit_unit(),
            Kind::Bool(b) => visitor.visit_bool(b),
            Kind::Int(i) => visitor.visit_i64(i),
            Kind::Float(f) => visitor.visit_f64(f),
            Kind::Bytes(b) => visitor.visit_byte_buf(b.to_vec()),
            Kind::Str(s) => visitor.visit_str(s),
            Kind::Tuple(items) | Kind::List(items) => visitor.visit_seq(Seq(items)),
            Kind::Dict(pairs) => visitor.visit_map(Map { pairs, value: None }),
            Kind::Global(..) | Kind::PersistentRef(_) | Kind::Other => Err(other()),
        }
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match kind(&self.0)? {
            Kind::None => visitor.visit_none(),
            _ => visitor.visit_some(self),
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
        let Kind::PersistentRef(pid) = kind(&self.0)? else {
            return Err(other());
        };
        let (oid, class) = strong_ref(&pid)?;
        super::pref::visit_ref(visitor, oid, class)
    }

    fn deserialize_bytes<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match kind(&self.0)? {
            Kind::Bytes(b) => visitor.visit_byte_buf(b.to_vec()),
            Kind::Str(s) => visitor.visit_byte_buf(s.as_bytes().to_vec()),
            _ => Err(other()),
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
        match kind(&self.0)? {
            Kind::Str(variant) => visitor.visit_enum(variant.into_deserializer()),
            Kind::Dict(mut pairs) if pairs.len() == 1 => {
                let Some((key, value)) = pairs.next() else {
                    return Err(other());
                };
                let Kind::Str(variant) = kind(&key)? else {
                    return Err(other());
                };
                visitor.visit_enum(Enum { variant, value })
            }
            _ => Err(other()),
        }
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match kind(&self.0)? {
            Kind::None => visitor.visit_unit(),
            _ => Err(other()),
        }
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        match kind(&self.0)? {
            // As `de.rs`: an int where a float is expected reads as that float.
            Kind::Int(i) => visitor.visit_f64(i as f64),
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

struct Seq<'r>(Items<'r>);

impl<'de> SeqAccess<'de> for Seq<'_> {
    type Error = StateError;
    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, StateError> {
        match self.0.next() {
            Some(v) => seed.deserialize(ViewDeserializer(v)).map(Some),
            None => Ok(None),
        }
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.0.len())
    }
}

struct Map<'r> {
    pairs: Pairs<'r>,
    value: Option<View<'r>>,
}

impl<'de> MapAccess<'de> for Map<'_> {
    type Error = StateError;
    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, StateError> {
        match self.pairs.next() {
            Some((k, v)) => {
                self.value = Some(v);
                seed.deserialize(ViewDeserializer(k)).map(Some)
            }
            None => Ok(None),
        }
    }
    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, StateError> {
        let value = self.value.take().ok_or_else(other)?;
        seed.deserialize(ViewDeserializer(value))
    }
    fn size_hint(&self) -> Option<usize> {
        Some(self.pairs.len())
    }
}

struct Enum<'r> {
    variant: &'r str,
    value: View<'r>,
}

impl<'de, 'r> de::EnumAccess<'de> for Enum<'r> {
    type Error = StateError;
    type Variant = ViewDeserializer<'r>;
    fn variant_seed<V: DeserializeSeed<'de>>(
        self,
        seed: V,
    ) -> Result<(V::Value, ViewDeserializer<'r>), StateError> {
        let variant = seed.deserialize(self.variant.into_deserializer())?;
        Ok((variant, ViewDeserializer(self.value)))
    }
}

impl<'de> de::VariantAccess<'de> for ViewDeserializer<'_> {
    type Error = StateError;
    fn unit_variant(self) -> Result<(), StateError> {
        match kind(&self.0)? {
            Kind::None => Ok(()),
            _ => Err(other()),
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
