//! Object states: between Rust values and the pickle [`Value`] tree of a record's state.
//!
//! A persistent Rust type's state is what Python's `Persistent.__getstate__` gives: a
//! `dict` with `str` keys, one per attribute (record-format §3).  Serde does the mapping:
//! [`to_value`] turns any `Serialize` into a [`Value`], [`from_value`] turns a [`Value`]
//! back, and [`crate::PRef`] passes through both as a persistent reference (it serializes
//! as a newtype struct with a reserved name that these two recognise).
//!
//! What a state may hold is what Python reads without application code (record-format §3,
//! §6): `None`, bool, int, float, str, bytes, tuple, list, dict and persistent references.
//! Structs become dicts; sequences lists; tuples tuples; `Option::None` and unit `None`;
//! enums follow serde's external tagging (a unit variant is its name as a str, others a
//! one-item dict).  Integers beyond `i64` become Python longs.  Byte strings need
//! `serde_bytes` (or a `Vec<u8>` field marked `#[serde(with = ...)]`) to become `bytes`;
//! a plain `Vec<u8>` is a list of ints, as serde sees it.

mod de;
mod pickler;
mod pref;
mod refs;
mod scan;
mod ser;
mod view_de;

pub use de::from_value;
pub use pickler::to_record;
pub use refs::{PidKind, parse_pid, ref_value};
pub use ser::to_value;
pub use view_de::from_view;
/// A record's state read in place (see [`crate::Persistent::from_state_view`]).
pub use zodb_pickle::View as StateView;

/// The reserved newtype-struct name a [`crate::PRef`] serializes under.
pub(crate) const PREF_TOKEN: &str = "$zodb::PRef";

/// Why a state could not be built or read; the caller adds the oid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StateError(pub String);

impl std::fmt::Display for StateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for StateError {}

impl serde::ser::Error for StateError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        StateError(msg.to_string())
    }
}

impl serde::de::Error for StateError {
    fn custom<T: std::fmt::Display>(msg: T) -> Self {
        StateError(msg.to_string())
    }
}

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_pickler;
#[cfg(test)]
mod tests_view;
