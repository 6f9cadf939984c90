//! A scalable ordered container: Python's `BTrees.OOBTree.OOBTree`, record for record.
//!
//! A tree is a persistent root node ([`BTree`]) over persistent buckets ([`Bucket`]) of
//! at most `L` items, linked in key order; nodes of more than
//! `N` children split into further persistent nodes.  So an
//! insert rewrites one small bucket (and a node when a bucket splits), and inserts into
//! different buckets from concurrent transactions do not conflict.  A small tree keeps its
//! one bucket inside the root's own record, as Python does.
//!
//! Concurrent changes to one bucket (or to a tree that is one inline bucket) merge with
//! BTrees' own rules ([`merge`]): inserts and deletes of different keys merge; the same
//! key changed on both sides, an emptied bucket, a deleted first item or a split conflict,
//! with BTrees' reason codes ([`Reason`]).  Nodes never merge.  [`Length`] is
//! `BTrees.Length.Length`, the counter kept beside a tree whose concurrent changes add up.
//!
//! The states are Python's (record-format §3), so Python opens a bbru tree as a real
//! `OOBTree` (and `BTrees.check.check` accepts it), and bbru reads trees Python wrote:
//!
//! ```text
//! OOBucket  ((k0, v0, k1, v1, …),)                or ((k0, v0, …), next_bucket)
//! OOBTree   None                                   empty
//!           ((((k0, v0, …),),),)                   one bucket, inline
//!           ((child0, key1, child1, …), first_bucket)
//! ```
//!
//! In a node, `key[i]` is the smallest key child `i` may hold, and every key of child
//! `i - 1` is below it; `first_bucket` is the leftmost bucket under the node.  Buckets and
//! nodes are never left empty: a bucket that empties is unlinked and dropped from its node,
//! and a node that loses its last child from its parent.
//!
//! Keys compare with Rust's `Ord`, which for the key types Python can share (`str` by code
//! point, `int` by value) is Python's order too.

use std::ops::Bound;
use std::sync::Arc;

use serde::Serialize;
use serde::de::DeserializeOwned;
use zodb_pickle::Value;
use zodb_storage::Oid;

pub mod compare;
mod length;
pub mod merge;

pub use length::Length;
pub use merge::{Reason, Refusal, resolve_bucket, resolve_tree};

use crate::Transaction;
use crate::error::{Error, Result};
use crate::limits;
use crate::persistent::{PRef, Persistent};
use crate::resolve::Unresolved;
use crate::state::{PidKind, StateError, from_value, parse_pid, ref_value, to_value};

/// What a key must be.
pub trait Key: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Ord + Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Key for T {}

/// What a value must be.
pub trait Item: Clone + Serialize + DeserializeOwned + Send + Sync + 'static {}
impl<T: Clone + Serialize + DeserializeOwned + Send + Sync + 'static> Item for T {}

const MODULE: &str = "BTrees.OOBTree";
const TREE: &str = "OOBTree";
const BUCKET: &str = "OOBucket";

/// A node of the tree (the root is the object the rest of the application refers to).
#[derive(Debug, Clone, PartialEq)]
///
/// `L` (items per bucket) and `N` (children per node) are the split thresholds; the
/// defaults are Python's `OOBTree`'s, and any values give records Python reads.
pub struct BTree<K, V, const L: usize = 30, const N: usize = 250> {
    node: Node<K, V>,
}

// The defaults above are these limits (a default const argument cannot name them).
const _: () = assert!(limits::BUCKET_ITEMS_MAX == 30 && limits::NODE_CHILDREN_MAX == 250);

#[derive(Debug, Clone, PartialEq)]
enum Node<K, V> {
    /// The whole content, inside this record (only ever the root).
    Inline(Vec<(K, V)>),
    Inner(Inner<K>),
}

#[derive(Debug, Clone, PartialEq)]
struct Inner<K> {
    children: Vec<Oid>,
    /// `keys[i]` separates `children[i]` and `children[i + 1]`.
    keys: Vec<K>,
    first_bucket: Oid,
    kind: Kind,
}

/// What the children of a node are.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Buckets,
    Nodes,
    /// Not said by the references read (bare oids, as a Python class with
    /// `__getnewargs__` would write them); found out on first descent.
    Unknown,
}

/// A leaf of the tree: sorted items and the next bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Bucket<K, V> {
    items: Vec<(K, V)>,
    next: Option<Oid>,
}

impl<K, V, const L: usize, const N: usize> Default for BTree<K, V, L, N> {
    fn default() -> Self {
        BTree {
            node: Node::Inline(Vec::new()),
        }
    }
}

impl<K: Key, V: Item, const L: usize, const N: usize> BTree<K, V, L, N> {
    /// An empty tree, to [`Transaction::add`] and refer to.
    pub fn new() -> BTree<K, V, L, N> {
        const {
            assert!(
                L >= 2 && N >= 3,
                "buckets of at least 2 items, nodes of at least 3 children"
            )
        };
        BTree::default()
    }
}

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
        return Ok((oid, class.map(|(_, name)| name)));
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

/// Which child of `inner` may hold `key`.
fn child_index<K: Ord>(inner: &Inner<K>, key: &K) -> usize {
    inner.keys.partition_point(|k| k <= key)
}

/// The buckets of a tree in key order, loaded as the iteration goes.
type Buckets<'t, K, V> = Box<dyn Iterator<Item = Result<Arc<Bucket<K, V>>>> + 't>;

type TreeRef<K, V, const L: usize, const N: usize> = PRef<BTree<K, V, L, N>>;
type BucketRef<K, V> = PRef<Bucket<K, V>>;

/// The kind of `inner`'s children, finding it out when the references did not say.
fn kind_of<K: Key, V: Item>(tx: &Transaction<'_>, inner: &Inner<K>) -> Result<Kind> {
    if inner.kind != Kind::Unknown {
        return Ok(inner.kind);
    }
    let Some(first) = inner.children.first() else {
        return Err(Error::state(None, "tree node without children"));
    };
    match tx.get(BucketRef::<K, V>::from_oid(*first)) {
        Ok(_) => Ok(Kind::Buckets),
        Err(Error::WrongClass { .. }) => Ok(Kind::Nodes),
        Err(e) => Err(e),
    }
}

fn inner_of<K: Clone, V, const L: usize, const N: usize>(
    tree: &BTree<K, V, L, N>,
    oid: Oid,
) -> Result<&Inner<K>> {
    match &tree.node {
        Node::Inner(inner) => Ok(inner),
        Node::Inline(_) => Err(Error::state(Some(oid), "inline bucket below the root")),
    }
}

fn inner_mut<K, V, const L: usize, const N: usize>(tree: &mut BTree<K, V, L, N>) -> &mut Inner<K> {
    match &mut tree.node {
        Node::Inner(inner) => inner,
        // Callers only edit nodes they have just read as inner nodes.
        Node::Inline(_) => unreachable!("edited node is an inner node"),
    }
}

/// Operations on a tree, through the reference to its root.
impl<K: Key, V: Item, const L: usize, const N: usize> PRef<BTree<K, V, L, N>> {
    /// The value under `key`.
    pub fn get(&self, tx: &Transaction<'_>, key: &K) -> Result<Option<V>> {
        let root = tx.get(*self)?;
        let inner = match &root.node {
            Node::Inline(items) => return Ok(find(items, key)),
            Node::Inner(inner) => inner,
        };
        let bucket = descend(tx, *self, inner, key)?.1;
        Ok(find(&tx.get(bucket)?.items, key))
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, tx: &Transaction<'_>, key: &K) -> Result<bool> {
        Ok(self.get(tx, key)?.is_some())
    }

    /// Sets `key` to `value`; returns the value it replaced.
    pub fn insert(&self, tx: &Transaction<'_>, key: K, value: V) -> Result<Option<V>> {
        let root = tx.get(*self)?;
        let Node::Inner(inner) = &root.node else {
            let mut edit = tx.edit(*self)?;
            let Node::Inline(items) = &mut edit.node else {
                unreachable!("the root was just read as inline")
            };
            let old = put(items, key, value);
            if items.len() > L {
                let upper = items.split_off(items.len() / 2);
                let lower = std::mem::take(items);
                let separator = upper[0].0.clone();
                let right = tx.add(Bucket {
                    items: upper,
                    next: None,
                })?;
                let left = tx.add(Bucket {
                    items: lower,
                    next: Some(right.oid()),
                })?;
                edit.node = Node::Inner(Inner {
                    children: vec![left.oid(), right.oid()],
                    keys: vec![separator],
                    first_bucket: left.oid(),
                    kind: Kind::Buckets,
                });
            }
            return Ok(old);
        };
        let old = insert_below(tx, *self, inner, key, value)?;
        drop(root);
        // The root keeps its oid (everything refers to it): when it has too many
        // children, its content moves down into two new nodes.
        let root = tx.get(*self)?;
        let inner = inner_of(&root, self.oid())?;
        if inner.children.len() > N {
            let kind = kind_of::<K, V>(tx, inner)?;
            let first_bucket = inner.first_bucket;
            let (separator, (lower_children, lower_keys, right)) =
                split_node::<K, V, L, N>(tx, inner.clone(), kind)?;
            drop(root);
            let left = tx.add(BTree::<K, V, L, N> {
                node: Node::Inner(Inner {
                    children: lower_children,
                    keys: lower_keys,
                    first_bucket,
                    kind,
                }),
            })?;
            let mut edit = tx.edit(*self)?;
            edit.node = Node::Inner(Inner {
                children: vec![left.oid(), right.oid()],
                keys: vec![separator],
                first_bucket,
                kind: Kind::Nodes,
            });
        }
        Ok(old)
    }

    /// Removes `key`; returns its value.
    pub fn remove(&self, tx: &Transaction<'_>, key: &K) -> Result<Option<V>> {
        let root = tx.get(*self)?;
        let Node::Inner(inner) = &root.node else {
            let Node::Inline(items) = &root.node else {
                unreachable!()
            };
            if find(items, key).is_none() {
                return Ok(None);
            }
            let mut edit = tx.edit(*self)?;
            let Node::Inline(items) = &mut edit.node else {
                unreachable!("the root was just read as inline")
            };
            let at = items
                .binary_search_by(|(k, _)| k.cmp(key))
                .map_err(|_| Error::state(Some(self.oid()), "key vanished"))?;
            return Ok(Some(items.remove(at).1));
        };
        // The path from the root to the bucket: each node and the index taken in it.
        let mut path: Vec<(TreeRef<K, V, L, N>, usize)> = Vec::new();
        let mut node_ref = *self;
        let mut node = inner.clone();
        let bucket_ref = loop {
            let i = child_index(&node, key);
            path.push((node_ref, i));
            match kind_of::<K, V>(tx, &node)? {
                Kind::Buckets => break BucketRef::<K, V>::from_oid(node.children[i]),
                _ => {
                    node_ref = TreeRef::from_oid(node.children[i]);
                    node = inner_of(&*tx.get(node_ref)?, node_ref.oid())?.clone();
                }
            }
        };
        drop(root);
        let bucket = tx.get(bucket_ref)?;
        let Ok(at) = bucket.items.binary_search_by(|(k, _)| k.cmp(key)) else {
            return Ok(None);
        };
        drop(bucket);
        let (old, now_empty, next) = {
            let mut edit = tx.edit(bucket_ref)?;
            let old = edit.items.remove(at).1;
            (old, edit.items.is_empty(), edit.next)
        };
        if now_empty {
            unlink_bucket(tx, &path, bucket_ref.oid(), next)?;
        }
        Ok(Some(old))
    }

    /// Verifies the tree's structure (Python's `BTrees.check.check`): keys ordered and
    /// within their node's bounds, no empty bucket or node, every node's `first_bucket` its
    /// leftmost bucket, and the bucket chain visiting exactly the leaves in order.
    pub fn check(&self, tx: &Transaction<'_>) -> Result<()> {
        let root = tx.get(*self)?;
        let Node::Inner(inner) = &root.node else {
            let Node::Inline(items) = &root.node else {
                unreachable!()
            };
            return check_items(items, None, None, self.oid());
        };
        let mut leaves = Vec::new();
        check_inner::<K, V, L, N>(tx, self.oid(), inner, None, None, &mut leaves)?;
        let mut chain = Vec::new();
        let mut next = Some(inner.first_bucket);
        while let Some(oid) = next {
            if chain.len() > leaves.len() {
                return Err(Error::state(Some(oid), "bucket chain longer than the tree"));
            }
            chain.push(oid);
            next = tx.get(BucketRef::<K, V>::from_oid(oid))?.next;
        }
        if chain != leaves {
            return Err(Error::state(
                Some(self.oid()),
                "bucket chain does not visit the leaves in order",
            ));
        }
        Ok(())
    }

    /// Number of items (walks the buckets).
    pub fn len(&self, tx: &Transaction<'_>) -> Result<usize> {
        let mut n = 0;
        for bucket in self.buckets(tx)? {
            n += bucket?.items.len();
        }
        Ok(n)
    }

    /// Whether the tree holds no item.
    pub fn is_empty(&self, tx: &Transaction<'_>) -> Result<bool> {
        Ok(self.range(tx, ..)?.next().transpose()?.is_none())
    }

    /// The items with keys in `range`, in key order, read bucket by bucket as the
    /// iteration goes.
    pub fn range<'t, 'c>(
        &self,
        tx: &'t Transaction<'c>,
        range: impl std::ops::RangeBounds<K>,
    ) -> Result<Range<'t, 'c, K, V>> {
        let start = range.start_bound().cloned();
        let end = range.end_bound().cloned();
        let root = tx.get(*self)?;
        let bucket = match &root.node {
            Node::Inline(items) => Arc::new(Bucket {
                items: items.clone(),
                next: None,
            }),
            Node::Inner(inner) => {
                let bucket = match &start {
                    Bound::Unbounded => BucketRef::from_oid(inner.first_bucket),
                    Bound::Included(k) | Bound::Excluded(k) => descend(tx, *self, inner, k)?.1,
                };
                tx.get(bucket)?
            }
        };
        let index = match &start {
            Bound::Unbounded => 0,
            Bound::Included(k) => bucket.items.partition_point(|(x, _)| x < k),
            Bound::Excluded(k) => bucket.items.partition_point(|(x, _)| x <= k),
        };
        Ok(Range {
            tx,
            next: bucket.next,
            bucket,
            index,
            end,
            start,
        })
    }

    /// Every item, in key order.
    pub fn iter<'t, 'c>(&self, tx: &'t Transaction<'c>) -> Result<Range<'t, 'c, K, V>> {
        self.range(tx, ..)
    }

    /// The buckets in order (the inline bucket of a small tree as one bucket).
    fn buckets<'t, 'c>(&self, tx: &'t Transaction<'c>) -> Result<Buckets<'t, K, V>> {
        let root = tx.get(*self)?;
        match &root.node {
            Node::Inline(items) => {
                let bucket = Arc::new(Bucket {
                    items: items.clone(),
                    next: None,
                });
                Ok(Box::new(std::iter::once(Ok(bucket))))
            }
            Node::Inner(inner) => {
                let mut next = Some(inner.first_bucket);
                Ok(Box::new(std::iter::from_fn(move || {
                    let oid = next?;
                    match tx.get(BucketRef::<K, V>::from_oid(oid)) {
                        Ok(bucket) => {
                            next = bucket.next;
                            Some(Ok(bucket))
                        }
                        Err(e) => {
                            next = None;
                            Some(Err(e))
                        }
                    }
                })))
            }
        }
    }
}

fn check_items<K: Ord, V>(
    items: &[(K, V)],
    lo: Option<&K>,
    hi: Option<&K>,
    oid: Oid,
) -> Result<()> {
    let fail = |what: &str| Err(Error::state(Some(oid), what.to_owned()));
    if items.windows(2).any(|w| w[0].0 >= w[1].0) {
        return fail("keys out of order");
    }
    if let (Some(lo), Some((first, _))) = (lo, items.first())
        && first < lo
    {
        return fail("key below its node's bound");
    }
    if let (Some(hi), Some((last, _))) = (hi, items.last())
        && last >= hi
    {
        return fail("key above its node's bound");
    }
    Ok(())
}

/// Checks a node's subtree; appends its buckets, in order, to `leaves`.
fn check_inner<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    oid: Oid,
    inner: &Inner<K>,
    lo: Option<&K>,
    hi: Option<&K>,
    leaves: &mut Vec<Oid>,
) -> Result<()> {
    let fail = |what: &str| Err(Error::state(Some(oid), what.to_owned()));
    if inner.children.is_empty() || inner.keys.len() + 1 != inner.children.len() {
        return fail("node children and keys do not match");
    }
    if inner.keys.windows(2).any(|w| w[0] >= w[1]) {
        return fail("node keys out of order");
    }
    if lo.is_some_and(|lo| inner.keys.first().is_some_and(|k| k < lo))
        || hi.is_some_and(|hi| inner.keys.last().is_some_and(|k| k >= hi))
    {
        return fail("node key outside its parent's bounds");
    }
    let first_leaf = leaves.len();
    let kind = kind_of::<K, V>(tx, inner)?;
    for (i, child) in inner.children.iter().enumerate() {
        let child_lo = if i == 0 { lo } else { inner.keys.get(i - 1) };
        let child_hi = inner.keys.get(i).or(hi);
        match kind {
            Kind::Buckets => {
                let bucket = tx.get(BucketRef::<K, V>::from_oid(*child))?;
                if bucket.items.is_empty() {
                    return Err(Error::state(Some(*child), "empty bucket in a tree"));
                }
                check_items(&bucket.items, child_lo, child_hi, *child)?;
                leaves.push(*child);
            }
            _ => {
                let node = tx.get(TreeRef::<K, V, L, N>::from_oid(*child))?;
                let child_inner = inner_of(&node, *child)?;
                check_inner::<K, V, L, N>(tx, *child, child_inner, child_lo, child_hi, leaves)?;
            }
        }
    }
    if leaves.get(first_leaf) != Some(&inner.first_bucket) {
        return fail("first_bucket is not the leftmost bucket");
    }
    Ok(())
}

fn find<K: Ord, V: Clone>(items: &[(K, V)], key: &K) -> Option<V> {
    items
        .binary_search_by(|(k, _)| k.cmp(key))
        .ok()
        .map(|i| items[i].1.clone())
}

fn put<K: Ord, V>(items: &mut Vec<(K, V)>, key: K, value: V) -> Option<V> {
    match items.binary_search_by(|(k, _)| k.cmp(&key)) {
        Ok(i) => Some(std::mem::replace(&mut items[i].1, value)),
        Err(i) => {
            items.insert(i, (key, value));
            None
        }
    }
}

/// The bottom node and the bucket that may hold `key`.
fn descend<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    root: TreeRef<K, V, L, N>,
    inner: &Inner<K>,
    key: &K,
) -> Result<(TreeRef<K, V, L, N>, BucketRef<K, V>)> {
    let mut node_ref = root;
    let mut node = inner.clone();
    loop {
        let child = node.children[child_index(&node, key)];
        match kind_of::<K, V>(tx, &node)? {
            Kind::Buckets => return Ok((node_ref, BucketRef::from_oid(child))),
            _ => {
                node_ref = TreeRef::from_oid(child);
                node = inner_of(&*tx.get(node_ref)?, child)?.clone();
            }
        }
    }
}

/// The upper half of a node's children and keys, and the separator between the halves.
/// Returns `(separator, (lower children, lower keys, new right node))`: the caller decides
/// where the lower half goes.
#[allow(clippy::type_complexity)]
fn split_node<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    mut inner: Inner<K>,
    kind: Kind,
) -> Result<(K, (Vec<Oid>, Vec<K>, TreeRef<K, V, L, N>))> {
    let mid = inner.children.len() / 2;
    let upper_children = inner.children.split_off(mid);
    let mut upper_keys = inner.keys.split_off(mid - 1);
    let separator = upper_keys.remove(0);
    let first_bucket = first_bucket_of::<K, V, L, N>(tx, upper_children[0], kind)?;
    let right = tx.add(BTree::<K, V, L, N> {
        node: Node::Inner(Inner {
            children: upper_children,
            keys: upper_keys,
            first_bucket,
            kind,
        }),
    })?;
    Ok((separator, (inner.children, inner.keys, right)))
}

/// The leftmost bucket under a child of the given kind.
fn first_bucket_of<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    child: Oid,
    kind: Kind,
) -> Result<Oid> {
    match kind {
        Kind::Buckets => Ok(child),
        _ => {
            let node = tx.get(TreeRef::<K, V, L, N>::from_oid(child))?;
            Ok(inner_of(&node, child)?.first_bucket)
        }
    }
}

/// Inserts below the inner node `node_ref` (already read as `inner`), splitting the child
/// that overflows; the caller deals with `node_ref` itself overflowing.
fn insert_below<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    node_ref: TreeRef<K, V, L, N>,
    inner: &Inner<K>,
    key: K,
    value: V,
) -> Result<Option<V>> {
    let i = child_index(inner, &key);
    let child = inner.children[i];
    let kind = kind_of::<K, V>(tx, inner)?;
    let (old, split) = match kind {
        Kind::Buckets => {
            let bucket_ref = BucketRef::<K, V>::from_oid(child);
            let mut bucket = tx.edit(bucket_ref)?;
            let old = put(&mut bucket.items, key, value);
            let split = if bucket.items.len() > L {
                let mid = bucket.items.len() / 2;
                let upper = bucket.items.split_off(mid);
                let separator = upper[0].0.clone();
                let right = tx.add(Bucket {
                    items: upper,
                    next: bucket.next,
                })?;
                bucket.next = Some(right.oid());
                Some((separator, right.oid()))
            } else {
                None
            };
            (old, split)
        }
        _ => {
            let child_ref = TreeRef::<K, V, L, N>::from_oid(child);
            let child_node = tx.get(child_ref)?;
            let child_inner = inner_of(&child_node, child)?.clone();
            drop(child_node);
            let old = insert_below(tx, child_ref, &child_inner, key, value)?;
            let child_node = tx.get(child_ref)?;
            let child_inner = inner_of(&child_node, child)?;
            let split = if child_inner.children.len() > N {
                let child_kind = kind_of::<K, V>(tx, child_inner)?;
                let (separator, (lower_children, lower_keys, right)) =
                    split_node::<K, V, L, N>(tx, child_inner.clone(), child_kind)?;
                drop(child_node);
                let mut edit = tx.edit(child_ref)?;
                let node = inner_mut(&mut edit);
                node.children = lower_children;
                node.keys = lower_keys;
                node.kind = child_kind;
                Some((separator, right.oid()))
            } else {
                None
            };
            (old, split)
        }
    };
    if let Some((separator, right)) = split {
        let mut edit = tx.edit(node_ref)?;
        let node = inner_mut(&mut edit);
        node.children.insert(i + 1, right);
        node.keys.insert(i, separator);
        node.kind = kind;
    }
    Ok(old)
}

/// Removes an emptied bucket from the tree: links its predecessor to its successor,
/// drops it from its node (and nodes left empty from theirs), and moves `first_bucket`
/// of the nodes it was leftmost in to its successor.
fn unlink_bucket<K: Key, V: Item, const L: usize, const N: usize>(
    tx: &Transaction<'_>,
    path: &[(TreeRef<K, V, L, N>, usize)],
    bucket: Oid,
    next: Option<Oid>,
) -> Result<()> {
    if path.is_empty() {
        return Ok(());
    }
    // The predecessor: down the rightmost path of the nearest left sibling subtree.
    if let Some(level) = path.iter().rposition(|(_, i)| *i > 0) {
        let (node_ref, i) = path[level];
        let node = tx.get(node_ref)?;
        let mut inner = inner_of(&node, node_ref.oid())?.clone();
        let mut child = inner.children[i - 1];
        drop(node);
        loop {
            match kind_of::<K, V>(tx, &inner)? {
                Kind::Buckets => break,
                _ => {
                    let n = tx.get(TreeRef::<K, V, L, N>::from_oid(child))?;
                    inner = inner_of(&n, child)?.clone();
                    child = *inner
                        .children
                        .last()
                        .ok_or_else(|| Error::state(Some(child), "tree node without children"))?;
                }
            }
        }
        tx.edit(BucketRef::<K, V>::from_oid(child))?.next = next;
    }
    // Drop the bucket from its node, and nodes left empty from their parents.
    let mut removing = bucket;
    let mut kept = 0;
    for (depth, &(node_ref, i)) in path.iter().enumerate().rev() {
        let mut edit = tx.edit(node_ref)?;
        let node = inner_mut(&mut edit);
        if node.children.get(i) != Some(&removing) {
            return Err(Error::state(
                Some(node_ref.oid()),
                "tree path changed under removal",
            ));
        }
        if node.children.len() > 1 || depth == 0 {
            node.children.remove(i);
            if i > 0 {
                node.keys.remove(i - 1);
            } else if !node.keys.is_empty() {
                node.keys.remove(0);
            }
            if node.children.is_empty() {
                // The root lost its last child: the tree is empty again.
                drop(edit);
                tx.edit(node_ref)?.node = Node::Inline(Vec::new());
                return Ok(());
            }
            kept = depth;
            break;
        }
        // This node held only the emptied bucket's subtree: it goes too.
        removing = node_ref.oid();
    }
    // Nodes whose leftmost bucket it was now start at its successor, which is in their
    // subtree since they still have children.
    for &(node_ref, _) in &path[..=kept] {
        let node = tx.get(node_ref)?;
        if let Node::Inner(inner) = &node.node
            && inner.first_bucket == bucket
        {
            drop(node);
            let successor = next.ok_or_else(|| {
                Error::state(
                    Some(node_ref.oid()),
                    "last bucket removed from a non-empty node",
                )
            })?;
            inner_mut(&mut *tx.edit(node_ref)?).first_bucket = successor;
        }
    }
    Ok(())
}

/// Items of a tree in key order; see [`PRef::range`].
pub struct Range<'t, 'c, K, V> {
    tx: &'t Transaction<'c>,
    bucket: Arc<Bucket<K, V>>,
    index: usize,
    next: Option<Oid>,
    start: Bound<K>,
    end: Bound<K>,
}

impl<K: std::fmt::Debug, V> std::fmt::Debug for Range<'_, '_, K, V> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Range")
            .field("start", &self.start)
            .field("end", &self.end)
            .finish()
    }
}

impl<K: Key, V: Item> Iterator for Range<'_, '_, K, V> {
    type Item = Result<(K, V)>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some((k, v)) = self.bucket.items.get(self.index) {
                let past_end = match &self.end {
                    Bound::Unbounded => false,
                    Bound::Included(end) => k > end,
                    Bound::Excluded(end) => k >= end,
                };
                if past_end {
                    self.next = None;
                    self.index = usize::MAX;
                    return None;
                }
                self.index += 1;
                return Some(Ok((k.clone(), v.clone())));
            }
            let oid = self.next.take()?;
            match self.tx.get(BucketRef::<K, V>::from_oid(oid)) {
                Ok(bucket) => {
                    self.next = bucket.next;
                    self.bucket = bucket;
                    self.index = 0;
                }
                Err(e) => return Some(Err(e)),
            }
        }
    }
}
