//! Reading a tree in key order: `range`, `iter` and the [`Range`] iterator, which loads
//! buckets one by one along the bucket chain as the iteration goes.

use std::ops::Bound;
use std::sync::Arc;

use zodb_storage::Oid;

use super::{BTree, Bucket, BucketRef, Item, Key, Node, descend};
use crate::Transaction;
use crate::error::Result;
use crate::persistent::PRef;

impl<K: Key, V: Item, const L: usize, const N: usize> PRef<BTree<K, V, L, N>> {
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
    pub(super) fn buckets<'t, 'c>(&self, tx: &'t Transaction<'c>) -> Result<Buckets<'t, K, V>> {
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

/// The buckets of a tree in key order, loaded as the iteration goes.
type Buckets<'t, K, V> = Box<dyn Iterator<Item = Result<Arc<Bucket<K, V>>>> + 't>;

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
