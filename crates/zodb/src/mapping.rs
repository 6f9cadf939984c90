//! Python's basic persistent containers, readable and writable from Rust:
//! `persistent.mapping.PersistentMapping` (the class of every ZODB root) and
//! `persistent.list.PersistentList`.  Their items are kept as pickle [`Value`]s, so whatever
//! a Python application stored in them survives a Rust rewrite untouched.

use zodb_pickle::Value;

use crate::persistent::{PRef, Persistent};
use crate::state::StateError;

/// `persistent.mapping.PersistentMapping`: state `{'data': {key: value, …}}` (older
/// records name the dict `'_container'`; it is read, and written back as `'data'`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistentMapping {
    /// The items in insertion order; keys are unique.
    pub data: Vec<(Value, Value)>,
}

impl PersistentMapping {
    pub fn new() -> PersistentMapping {
        PersistentMapping::default()
    }

    /// The value under the `str` key `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.data
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v)
    }

    /// The reference stored under `key`, typed as `T` (checked when resolved).
    pub fn get_ref<T: Persistent>(&self, key: &str) -> Option<PRef<T>> {
        self.get(key).and_then(PRef::from_value)
    }

    /// Sets `key` to `value`, in place when the key exists.
    pub fn insert(&mut self, key: &str, value: Value) {
        match self.data.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
            Some((_, v)) => *v = value,
            None => self.data.push((Value::str(key), value)),
        }
    }

    /// Stores a reference under `key`.
    pub fn insert_ref<T: Persistent>(&mut self, key: &str, target: PRef<T>) {
        self.insert(key, target.to_value());
    }

    /// Removes `key`; returns its value.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let at = self
            .data
            .iter()
            .position(|(k, _)| k.as_str() == Some(key))?;
        Some(self.data.remove(at).1)
    }

    /// The `str` keys, in order.
    pub fn keys(&self) -> impl Iterator<Item = &str> {
        self.data.iter().filter_map(|(k, _)| k.as_str())
    }

    pub fn len(&self) -> usize {
        self.data.len()
    }

    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }
}

/// The inner container of a Python persistent container's state: the `dict`/`list` under
/// `'data'` (or the older `'_container'`).
fn inner_of(state: Value, class: &str) -> Result<Value, StateError> {
    let Value::Dict(items) = state else {
        return Err(StateError(format!("a {class} state must be a dict")));
    };
    items
        .into_iter()
        .find(|(k, _)| matches!(k.as_str(), Some("data") | Some("_container")))
        .map(|(_, v)| v)
        .ok_or_else(|| StateError(format!("a {class} state has no 'data'")))
}

impl Persistent for PersistentMapping {
    const MODULE: &'static str = "persistent.mapping";
    const NAME: &'static str = "PersistentMapping";

    fn to_state(&self) -> Result<Value, StateError> {
        Ok(Value::Dict(vec![(
            Value::str("data"),
            Value::Dict(self.data.clone()),
        )]))
    }

    fn from_state(state: Value) -> Result<Self, StateError> {
        match inner_of(state, "PersistentMapping")? {
            Value::Dict(data) => Ok(PersistentMapping { data }),
            _ => Err(StateError("PersistentMapping data is not a dict".into())),
        }
    }
}

/// `persistent.list.PersistentList`: state `{'data': [ … ]}`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PersistentList {
    pub data: Vec<Value>,
}

impl Persistent for PersistentList {
    const MODULE: &'static str = "persistent.list";
    const NAME: &'static str = "PersistentList";

    fn to_state(&self) -> Result<Value, StateError> {
        Ok(Value::Dict(vec![(
            Value::str("data"),
            Value::List(self.data.clone()),
        )]))
    }

    fn from_state(state: Value) -> Result<Self, StateError> {
        match inner_of(state, "PersistentList")? {
            Value::List(data) => Ok(PersistentList { data }),
            _ => Err(StateError("PersistentList data is not a list".into())),
        }
    }
}
