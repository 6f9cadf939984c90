//! The records of a tree and of a bucket: Python's `OOBTree` and `OOBucket` states
//! (record-format §3) to and from the typed nodes, with their conflict resolution hooks.

use zodb_pickle::Value;
use zodb_storage::Oid;

use super::{BTree, BUCKET, Bucket, Inner, Item, Key, Kind, MODULE, Node, TREE, merge};
use crate::persistent::Persistent;
use crate::resolve::Unresolved;
use crate::state::{PidKind, StateError, from_value, parse_pid, ref_value, to_value};

fn items_to_value<K: Key, V: Item>(items: &[(K, V)]) -> Result<Value, StateError> {
    let mut flat = Vec::with_capacity(items.len() * 2);
    for (k, v) in items {
        flat.push(to_value(k)?);
        flat.push(to_value(v)?);
    }
    Ok(Value::Tuple(flat))
}

fn items_from_value<K: Key, V: Item>(value: Value) -> Result<Vec<(K, V)>, StateError> {
    let Value::Tuple(flat) = value else {
        return Err(StateError("bucket items are not a tuple".into()));
    };
    if flat.len() % 2 != 0 {
        return Err(StateError("bucket items have an odd length".into()));
    }
    let mut items = Vec::with_capacity(flat.len() / 2);
    let mut it = flat.into_iter();
    while let (Some(k), Some(v)) = (it.next(), it.next()) {
        items.push((from_value(k)?, from_value(v)?));
    }
    if items.windows(2).any(|w| w[0].0 >= w[1].0) {
        return Err(StateError("bucket keys are not strictly increasing".into()));
    }
    Ok(items)
}

fn oid_of_ref(value: &Value) -> Result<(Oid, Option<String>), StateError> {
    if let Value::PersistentRef(pid) = value
        && let Some(PidKind::Strong { oid, class }) = parse_pid(pid)
    {
        return Ok((oid, class.map(|(_, name)| name.to_owned())));
    }
    Err(StateError(format!("expected a reference, found {value:?}")))
}

/// The `(items,)` or `(items, next)` state of a bucket.
fn bucket_from_state<K: Key, V: Item>(state: Value) -> Result<Bucket<K, V>, StateError> {
    let Value::Tuple(parts) = state else {
        return Err(StateError("bucket state is not a tuple".into()));
    };
    let mut parts = parts.into_iter();
    let items = items_from_value(
        parts
            .next()
            .ok_or_else(|| StateError("empty bucket state".into()))?,
    )?;
    let next = match parts.next() {
        None | Some(Value::None) => None,
        Some(r) => Some(oid_of_ref(&r)?.0),
    };
    Ok(Bucket { items, next })
}

impl<K: Key, V: Item> Persistent for Bucket<K, V> {
    const MODULE: &'static str = MODULE;
    const NAME: &'static str = BUCKET;

    fn to_state(&self) -> Result<Value, StateError> {
        let mut parts = vec![items_to_value(&self.items)?];
        if let Some(next) = self.next {
            parts.push(ref_value(next, Some((MODULE, BUCKET))));
        }
        Ok(Value::Tuple(parts))
    }

    fn from_state(state: Value) -> Result<Self, StateError> {
        bucket_from_state(state)
    }

    /// BTrees' bucket merge (see [`merge`]).
    fn resolve_conflict(
        old: Value,
        committed: Value,
        new: Value,
    ) -> std::result::Result<Value, Unresolved> {
        Ok(merge::resolve_bucket::<K>(old, committed, new)?)
    }
}

impl<K: Key, V: Item, const L: usize, const N: usize> Persistent for BTree<K, V, L, N> {
    const MODULE: &'static str = MODULE;
    const NAME: &'static str = TREE;

    fn to_state(&self) -> Result<Value, StateError> {
        match &self.node {
            Node::Inline(items) if items.is_empty() => Ok(Value::None),
            Node::Inline(items) => {
                let bucket = Value::Tuple(vec![items_to_value(items)?]);
                Ok(Value::Tuple(vec![Value::Tuple(vec![bucket])]))
            }
            Node::Inner(inner) => {
                let class = match inner.kind {
                    Kind::Buckets => Some((MODULE, BUCKET)),
                    Kind::Nodes => Some((MODULE, TREE)),
                    Kind::Unknown => None,
                };
                let mut flat = Vec::with_capacity(inner.children.len() * 2);
                for (i, child) in inner.children.iter().enumerate() {
                    if i > 0 {
                        flat.push(to_value(&inner.keys[i - 1])?);
                    }
                    flat.push(ref_value(*child, class));
                }
                Ok(Value::Tuple(vec![
                    Value::Tuple(flat),
                    ref_value(inner.first_bucket, Some((MODULE, BUCKET))),
                ]))
            }
        }
    }

    fn from_state(state: Value) -> Result<Self, StateError> {
        let parts = match state {
            Value::None => return Ok(BTree::default()),
            Value::Tuple(parts) => parts,
            _ => return Err(StateError("tree state is not a tuple".into())),
        };
        let mut parts = parts.into_iter();
        let Some(Value::Tuple(flat)) = parts.next() else {
            return Err(StateError("tree state has no children tuple".into()));
        };
        let Some(first) = parts.next() else {
            // One inline bucket: `((bucket_state,),)`.
            let mut flat = flat.into_iter();
            let (Some(bucket), None) = (flat.next(), flat.next()) else {
                return Err(StateError(
                    "inline tree state holds more than a bucket".into(),
                ));
            };
            let bucket: Bucket<K, V> = bucket_from_state(bucket)?;
            return Ok(BTree {
                node: Node::Inline(bucket.items),
            });
        };
        let first_bucket = oid_of_ref(&first)?.0;
        if flat.len() % 2 != 1 {
            return Err(StateError("tree children tuple has an even length".into()));
        }
        let mut children = Vec::with_capacity(flat.len() / 2 + 1);
        let mut keys = Vec::with_capacity(flat.len() / 2);
        let mut kind = Kind::Unknown;
        for (i, value) in flat.into_iter().enumerate() {
            if i % 2 == 1 {
                keys.push(from_value::<K>(value)?);
                continue;
            }
            let (oid, class) = oid_of_ref(&value)?;
            let this = match class.as_deref() {
                Some(name) if name.ends_with("Bucket") => Kind::Buckets,
                Some(name) if name.ends_with("BTree") => Kind::Nodes,
                _ => Kind::Unknown,
            };
            if i == 0 || kind == Kind::Unknown {
                kind = this;
            } else if this != Kind::Unknown && this != kind {
                return Err(StateError("tree node mixes buckets and nodes".into()));
            }
            children.push(oid);
        }
        if keys.windows(2).any(|w| w[0] >= w[1]) {
            return Err(StateError("tree keys are not strictly increasing".into()));
        }
        Ok(BTree {
            node: Node::Inner(Inner {
                children,
                keys,
                first_bucket,
                kind,
            }),
        })
    }

    /// BTrees' rule: a tree merges only as a single inline bucket (see [`merge`]).
    fn resolve_conflict(
        old: Value,
        committed: Value,
        new: Value,
    ) -> std::result::Result<Value, Unresolved> {
        Ok(merge::resolve_tree::<K>(old, committed, new)?)
    }
}
