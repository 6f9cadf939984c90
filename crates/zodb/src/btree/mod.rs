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
//!
//! Pieces: this file holds the types, the descent to a key's bucket and the lookups;
//! `state.rs` the records (and their conflict resolution hooks), `write.rs` insert and
//! remove, `range.rs` ordered iteration, `check.rs` the structural check, `merge.rs` and
//! `compare.rs` conflict resolution, `length.rs` `BTrees.Length`.

use serde::Serialize;
use serde::de::DeserializeOwned;
use zodb_storage::Oid;

mod check;
pub mod compare;
mod length;
pub mod merge;
mod range;
mod state;
mod write;

pub use length::Length;
pub use merge::{Reason, Refusal, resolve_bucket, resolve_tree};
pub use range::Range;

use crate::Transaction;
use crate::error::{Error, Result};
use crate::limits;
use crate::persistent::PRef;

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

/// Which child of `inner` may hold `key`.
fn child_index<K: Ord>(inner: &Inner<K>, key: &K) -> usize {
    inner.keys.partition_point(|k| k <= key)
}

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
}

fn find<K: Ord, V: Clone>(items: &[(K, V)], key: &K) -> Option<V> {
    items
        .binary_search_by(|(k, _)| k.cmp(key))
        .ok()
        .map(|i| items[i].1.clone())
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
