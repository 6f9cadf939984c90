//! A strong persistent reference handed to a serde visitor: the newtype struct
//! [`PREF_TOKEN`](super::PREF_TOKEN) around the sequence `(oid, module, name)` that
//! [`crate::PRef`] and [`crate::AnyRef`] deserialize.
//!
//! The parts are lent, not built into a pickle value: a container's state holds one
//! reference per item, and a `PRef` reads only the oid, so the class names cost nothing
//! unless the target type keeps them (an `AnyRef`).

use serde::de::value::{StrDeserializer, U64Deserializer};
use serde::de::{self, DeserializeSeed, SeqAccess, Visitor};
use zodb_storage::Oid;

use super::StateError;

/// Calls `visitor.visit_newtype_struct` with the reference's parts; a reference without a
/// class (form B) lends empty names.
pub(crate) fn visit_ref<'de, V: Visitor<'de>>(
    visitor: V,
    oid: Oid,
    class: Option<(&str, &str)>,
) -> Result<V::Value, StateError> {
    let (module, name) = class.unwrap_or_default();
    visitor.visit_newtype_struct(RefParts {
        oid: oid.0,
        module,
        name,
    })
}

struct RefParts<'a> {
    oid: u64,
    module: &'a str,
    name: &'a str,
}

impl<'de> de::Deserializer<'de> for RefParts<'_> {
    type Error = StateError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, StateError> {
        visitor.visit_seq(RefSeq {
            parts: self,
            next: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

struct RefSeq<'a> {
    parts: RefParts<'a>,
    next: usize,
}

impl<'de> SeqAccess<'de> for RefSeq<'_> {
    type Error = StateError;

    fn next_element_seed<T: DeserializeSeed<'de>>(
        &mut self,
        seed: T,
    ) -> Result<Option<T::Value>, StateError> {
        let index = self.next;
        self.next += 1;
        match index {
            0 => seed
                .deserialize(U64Deserializer::<StateError>::new(self.parts.oid))
                .map(Some),
            1 => seed
                .deserialize(StrDeserializer::<StateError>::new(self.parts.module))
                .map(Some),
            2 => seed
                .deserialize(StrDeserializer::<StateError>::new(self.parts.name))
                .map(Some),
            _ => Ok(None),
        }
    }

    fn size_hint(&self) -> Option<usize> {
        Some(3usize.saturating_sub(self.next))
    }
}
