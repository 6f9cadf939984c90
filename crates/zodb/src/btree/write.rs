//! Changing a tree: `insert` and `remove`, with the bucket and node splits an insert
//! causes and the unlinking of a bucket a remove empties, each rewriting as few
//! persistent nodes as it can.

use zodb_storage::Oid;

use super::{
    BTree, Bucket, BucketRef, Inner, Item, Key, Kind, Node, TreeRef, child_index, find, inner_mut,
    inner_of, kind_of,
};
use crate::Transaction;
use crate::error::{Error, Result};
use crate::persistent::PRef;

impl<K: Key, V: Item, const L: usize, const N: usize> PRef<BTree<K, V, L, N>> {
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
