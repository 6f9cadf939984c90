//! Conflict resolution: what lets two transactions that changed the same object both
//! commit when their changes do not overlap (ZODB's `_p_resolveConflict`).
//!
//! A class takes part by overriding [`crate::Persistent::resolve_conflict`] (or, for a
//! serde type, with the `resolve = …` form of [`crate::persistent!`]).  The resolver sees
//! three states: the one the transaction started from (*old*), the one committed since
//! (*committed*), and the transaction's own (*new*); it returns the merged state, or
//! [`Unresolved`] when the changes overlap.  It works on states rather than on live
//! objects, as Python's does, so a resolver never depends on what the cache holds, and
//! records written by Python clients resolve against ours and the other way round.
//! The BTree classes and `BTrees.Length` resolve with the rules of Python's BTrees
//! ([`crate::btree::merge`]), comparing values as Python does
//! ([`crate::btree::compare`]: stricter than [`same_value`], as Python refuses to order
//! two different references).
//!
//! The commit path that calls resolvers is [`crate::DB`]'s (`db.rs`): when a store or the
//! vote reports write conflicts, it loads the old and committed revisions, merges, and
//! commits again with the committed serial; only a conflict no resolver merges reaches the
//! application, as [`crate::Error::is_conflict`].

use zodb_pickle::Value;

use crate::persistent::Persistent;
use crate::state::{PidKind, parse_pid};

/// Why a conflict could not be resolved (the reason is logged; the application sees the
/// storage's conflict error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Unresolved(pub String);

impl Unresolved {
    pub fn new(reason: impl Into<String>) -> Unresolved {
        Unresolved(reason.into())
    }

    /// The class has no resolver.
    pub fn no_resolver(module: &str, name: &str) -> Unresolved {
        Unresolved(format!("{module}.{name} does not resolve conflicts"))
    }
}

/// What a resolver is: `(old, committed, new) -> merged`.
pub type Resolver = fn(Value, Value, Value) -> Result<Value, Unresolved>;

/// Whether two state values are the same for conflict resolution: equal values, with
/// persistent references compared by what they refer to (the oid, and strong or weak), not
/// by the form they were written in (`(oid, class)` or a bare oid), as Python compares its
/// `PersistentReference`s.
pub fn same_value(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::PersistentRef(x), Value::PersistentRef(y)) => match (parse_pid(x), parse_pid(y)) {
            (Some(PidKind::Strong { oid: p, .. }), Some(PidKind::Strong { oid: q, .. })) => p == q,
            (Some(PidKind::Weak(p)), Some(PidKind::Weak(q))) => p == q,
            _ => x == y,
        },
        (Value::Tuple(x), Value::Tuple(y))
        | (Value::List(x), Value::List(y))
        | (Value::Set(x), Value::Set(y))
        | (Value::FrozenSet(x), Value::FrozenSet(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_value(p, q))
        }
        (Value::Dict(x), Value::Dict(y)) => {
            x.len() == y.len()
                && x.iter()
                    .zip(y)
                    .all(|((k, v), (l, w))| same_value(k, l) && same_value(v, w))
        }
        _ => a == b,
    }
}

/// Runs a resolver written for the Rust type `T`: decodes the three states as `T`,
/// merges, and encodes the result (what `persistent!(…, resolve = f)` expands to).
pub fn typed<T: Persistent>(
    old: Value,
    committed: Value,
    new: Value,
    merge: impl FnOnce(T, T, T) -> Result<T, Unresolved>,
) -> Result<Value, Unresolved> {
    let decode = |state: Value, which: &str| {
        T::from_state(state).map_err(|e| Unresolved(format!("the {which} state: {e}")))
    };
    let merged = merge(
        decode(old, "old")?,
        decode(committed, "committed")?,
        decode(new, "new")?,
    )?;
    merged
        .to_state()
        .map_err(|e| Unresolved(format!("the merged state: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ref_value;
    use zodb_storage::Oid;

    #[test]
    fn references_compare_by_oid_whatever_their_form() {
        let typed = ref_value(Oid(7), Some(("m", "C")));
        let bare = ref_value(Oid(7), None);
        assert!(same_value(&typed, &bare));
        assert!(!same_value(&typed, &ref_value(Oid(8), Some(("m", "C")))));
        let in_tuple = |r: Value| Value::Tuple(vec![Value::Int(1), r]);
        assert!(same_value(&in_tuple(typed.clone()), &in_tuple(bare)));
        assert!(!same_value(&Value::Int(1), &Value::Int(2)));
        assert!(!same_value(&typed, &Value::Int(7)));
    }
}
