//! `check`: the structural verification of a tree, as Python's `BTrees.check.check`
//! does it (key order and bounds, no empty bucket or node, `first_bucket`, the chain).

use zodb_storage::Oid;

use super::{BTree, BucketRef, Inner, Item, Key, Kind, Node, TreeRef, inner_of, kind_of};
use crate::Transaction;
use crate::error::{Error, Result};
use crate::persistent::PRef;

impl<K: Key, V: Item, const L: usize, const N: usize> PRef<BTree<K, V, L, N>> {
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
