//! A counter whose concurrent changes never conflict: Python's `BTrees.Length.Length`,
//! record for record.
//!
//! A BTree does not know its length without walking every bucket, so an application that
//! needs it keeps a `Length` beside the tree and changes it with each insert and delete.
//! Every such change writes the one `Length` record, so concurrent writers would always
//! conflict on it, were it not for its resolver: the merge of two changes is
//! `committed + new - old`, both deltas applied.
//!
//! The record is Python's: class `BTrees.Length.Length`, state the bare int (no dict),
//! so Python reads and changes our counters, and its changes resolve against ours.

use zodb_pickle::Value;

use crate::persistent::Persistent;
use crate::resolve::Unresolved;
use crate::state::StateError;

/// A persistent counter (`BTrees.Length.Length`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Length {
    value: i64,
}

impl Length {
    pub fn new(value: i64) -> Length {
        Length { value }
    }

    /// The current value (Python: `length()`).
    pub fn value(&self) -> i64 {
        self.value
    }

    /// Adds `delta` (Python: `change(delta)`); saturates at the ends of `i64`.
    pub fn change(&mut self, delta: i64) {
        self.value = self.value.saturating_add(delta);
    }

    /// Sets the value (Python: `set(v)`); a set merges like any change, as a delta.
    pub fn set(&mut self, value: i64) {
        self.value = value;
    }
}

/// An int state, widened so the merge cannot overflow.
fn int_of(state: &Value, which: &str) -> Result<i128, Unresolved> {
    match state {
        Value::Int(i) => Ok(i128::from(*i)),
        Value::Bool(b) => Ok(i128::from(*b)),
        other => Err(Unresolved(format!(
            "the {which} Length state is not an int of 64 bits: {other:?}"
        ))),
    }
}

/// A Python int as a pickle value (a long beyond `i64`).
fn int_value(i: i128) -> Value {
    match i64::try_from(i) {
        Ok(small) => Value::Int(small),
        Err(_) => {
            // Minimal little-endian two's complement, as `LONG1` carries it.
            let bytes = i.to_le_bytes();
            let mut len = bytes.len();
            while len > 1 {
                let top = bytes[len - 1];
                let below_sign = bytes[len - 2] & 0x80;
                if (top == 0 && below_sign == 0) || (top == 0xff && below_sign != 0) {
                    len -= 1;
                } else {
                    break;
                }
            }
            Value::BigInt(bytes[..len].to_vec())
        }
    }
}

impl Persistent for Length {
    const MODULE: &'static str = "BTrees.Length";
    const NAME: &'static str = "Length";

    fn to_state(&self) -> Result<Value, StateError> {
        Ok(Value::Int(self.value))
    }

    fn from_state(state: Value) -> Result<Self, StateError> {
        match state {
            Value::Int(value) => Ok(Length { value }),
            Value::Bool(b) => Ok(Length {
                value: i64::from(b),
            }),
            other => Err(StateError(format!(
                "a Length state is an int of 64 bits, not {other:?}"
            ))),
        }
    }

    /// Python's rule: `committed + new - old`.
    fn resolve_conflict(old: Value, committed: Value, new: Value) -> Result<Value, Unresolved> {
        let merged = int_of(&committed, "committed")? + int_of(&new, "new")? - int_of(&old, "old")?;
        Ok(int_value(merged))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_deltas_apply() {
        let merged = Length::resolve_conflict(Value::Int(10), Value::Int(12), Value::Int(7));
        assert_eq!(merged, Ok(Value::Int(9)));
        assert!(Length::resolve_conflict(Value::Int(1), Value::str("2"), Value::Int(1)).is_err());
    }

    #[test]
    fn a_merge_beyond_64_bits_is_a_python_long() {
        let merged = Length::resolve_conflict(Value::Int(0), Value::Int(i64::MAX), Value::Int(1));
        assert_eq!(
            merged,
            Ok(Value::BigInt(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0]))
        );
        let merged = Length::resolve_conflict(Value::Int(0), Value::Int(i64::MIN), Value::Int(-1));
        assert_eq!(
            merged,
            Ok(Value::BigInt(vec![
                0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f, 0xff
            ]))
        );
    }
}
