//! Conflict resolution of BTrees, with the rules of Python's `BTrees` (its C
//! implementation, `BucketTemplate.c`/`MergeTemplate.c`/`BTreeTemplate.c`, which is what
//! Python clients and servers run), so that a conflict resolves, or does not, the same
//! whichever side (a Python process or ours) resolves it, and to the same record.
//!
//! A bucket merges the changes of both transactions item by item, walking the three
//! states (old, committed, new) in key order:
//!
//! - an item both left alone stays; an item one side changed takes that side's value
//!   (both sides giving it the same new value conflicts: BTrees' code refuses it,
//!   although a comment there says otherwise);
//! - one side may delete an item the other left alone, and insert items the other did not;
//! - everything else refuses, with BTrees' reason code ([`Reason`]): the same key changed
//!   differently, inserted by both (even with the same value), deleted by both, deleted
//!   by one and changed by the other; a side that emptied the bucket (it unlinked it);
//!   a side that deleted the bucket's first item while having no smaller one (that
//!   could change the parent node); a merge that would be empty; a changed `next` bucket
//!   (a split, or a neighbour unlinked), except, beyond BTrees, where only one side
//!   changed it and the other's new keys all stay below the first side's largest key
//!   (`merge_beside_split`);
//! - item values compare as Python does ([`compare`](super::compare)): a comparison
//!   Python cannot make refuses.
//!
//! A tree merges only when all three states are empty or a single inline bucket; any
//! state with nodes refuses (its changes are structural).  The merged state keeps the
//! key and value *values* of the side each item came from (a reference keeps the form
//! its writer gave it), and the old state's `next`, as BTrees does.

use std::cmp::Ordering;
use std::fmt;

use zodb_pickle::Value;

use super::Key;
use super::compare::{Incomparable, same_item};
use crate::resolve::Unresolved;
use crate::state::from_value;

/// BTrees' reasons for refusing to merge (the numbers are its reason codes, as Python's
/// `BTreesConflictError.reason` reports them).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// 0: the `next` bucket differs between the states (a split or an unlinked neighbour).
    NextChanged = 0,
    /// 1: both sides changed the value of one key, to different values.
    BothChanged = 1,
    /// 2: the committed side changed a value the new side deleted.
    DeletedInNewChangedInCommitted = 2,
    /// 3: the new side changed a value the committed side deleted.
    DeletedInCommittedChangedInNew = 3,
    /// 4: both sides inserted, or both deleted, the same key (in the middle of the walk).
    SameKeyInsertedOrDeleted = 4,
    /// 5: both sides deleted the same key.
    BothDeleted = 5,
    /// 6: both sides inserted the same key past the old items.
    BothInserted = 6,
    /// 7: past the new side's items, a key deleted by both or deleted by new and changed
    /// by committed.
    TailDeletedOrChangedInCommitted = 7,
    /// 8: past the committed side's items, a key deleted by both or deleted by committed
    /// and changed by new.
    TailDeletedOrChangedInNew = 8,
    /// 9: old items past both sides' items: deleted by both.
    TailDeletedByBoth = 9,
    /// 10: the merge would leave the bucket empty.
    EmptyMerge = 10,
    /// 11: a tree state is not a single bucket (its nodes changed).
    TreeNodes = 11,
    /// 12: one side's bucket is empty (that side unlinked it).
    EmptySide = 12,
    /// 13: one side deleted the first item of the bucket.
    FirstItemDeleted = 13,
}

impl Reason {
    fn describe(self) -> &'static str {
        match self {
            Reason::NextChanged => "the next bucket changed (a split or an unlinked bucket)",
            Reason::BothChanged => "both sides changed the value of one key",
            Reason::DeletedInNewChangedInCommitted => {
                "a key this transaction deleted had its value changed meanwhile"
            }
            Reason::DeletedInCommittedChangedInNew => {
                "a key deleted meanwhile had its value changed by this transaction"
            }
            Reason::SameKeyInsertedOrDeleted => "both sides inserted or deleted one key",
            Reason::BothDeleted | Reason::TailDeletedByBoth => "both sides deleted one key",
            Reason::BothInserted => "both sides inserted one key",
            Reason::TailDeletedOrChangedInCommitted | Reason::TailDeletedOrChangedInNew => {
                "both sides deleted one key, or one deleted a key the other changed"
            }
            Reason::EmptyMerge => "the merge would leave the bucket empty",
            Reason::TreeNodes => "the tree is not a single bucket",
            Reason::EmptySide => "one side emptied the bucket",
            Reason::FirstItemDeleted => "one side deleted the first item of the bucket",
        }
    }
}

/// Why a merge was refused: one of BTrees' reasons with the positions BTrees reports
/// (1-based index of the item each walk was at; -1 past its end or outside the walk), or
/// a state that is not a bucket, or a comparison Python cannot make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refusal {
    Conflict {
        reason: Reason,
        at: [i64; 3],
    },
    /// A key or value comparison that raises in Python (which fails the resolution).
    Incomparable,
    /// A state that is not a bucket (or tree) state, or a key of another type.
    Malformed(String),
}

impl Refusal {
    fn conflict(reason: Reason) -> Refusal {
        Refusal::Conflict {
            reason,
            at: [-1; 3],
        }
    }

    /// BTrees' reason code, when it is one of BTrees' conflicts.
    pub fn reason(&self) -> Option<Reason> {
        match self {
            Refusal::Conflict { reason, .. } => Some(*reason),
            _ => None,
        }
    }
}

impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Refusal::Conflict { reason, at } => write!(
                f,
                "BTrees conflict {} at {}/{}/{}: {}",
                *reason as u8,
                at[0],
                at[1],
                at[2],
                reason.describe()
            ),
            Refusal::Incomparable => f.write_str("items Python cannot compare"),
            Refusal::Malformed(why) => write!(f, "not a bucket state: {why}"),
        }
    }
}

impl From<Refusal> for Unresolved {
    fn from(r: Refusal) -> Unresolved {
        Unresolved(r.to_string())
    }
}

impl From<Incomparable> for Refusal {
    fn from(_: Incomparable) -> Refusal {
        Refusal::Incomparable
    }
}

/// One item of a bucket state: the key decoded (for ordering) and the values as stored.
struct Item<K> {
    key: K,
    raw_key: Value,
    value: Value,
}

/// A bucket state taken apart: its items, and its `next` as stored (`None`: absent).
struct Parsed<K> {
    items: Vec<Item<K>>,
    next: Option<Value>,
}

fn malformed(why: impl Into<String>) -> Refusal {
    Refusal::Malformed(why.into())
}

/// A bucket state (`None` is an empty bucket, as for BTrees).
fn parse_bucket<K: Key>(state: Value) -> Result<Parsed<K>, Refusal> {
    let parts = match state {
        Value::None => {
            return Ok(Parsed {
                items: Vec::new(),
                next: None,
            });
        }
        Value::Tuple(parts) if matches!(parts.len(), 1 | 2) => parts,
        _ => return Err(malformed("a bucket state is a tuple of one or two items")),
    };
    let mut parts = parts.into_iter();
    let Some(Value::Tuple(flat)) = parts.next() else {
        return Err(malformed("the bucket items are not a tuple"));
    };
    if flat.len() % 2 != 0 {
        return Err(malformed("the bucket items have an odd length"));
    }
    let mut items = Vec::with_capacity(flat.len() / 2);
    let mut flat = flat.into_iter();
    while let (Some(raw_key), Some(value)) = (flat.next(), flat.next()) {
        let key = from_value::<K>(raw_key.clone())
            .map_err(|e| malformed(format!("a key of another type: {e}")))?;
        items.push(Item {
            key,
            raw_key,
            value,
        });
    }
    Ok(Parsed {
        items,
        next: parts.next(),
    })
}

/// A walk over one state's items, counting positions as BTrees does: the 1-based index
/// of the current item, -1 once past the end.
struct Walk<K> {
    items: std::vec::IntoIter<Item<K>>,
    current: Option<Item<K>>,
    position: i64,
}

impl<K> Walk<K> {
    fn new(items: Vec<Item<K>>) -> Walk<K> {
        let mut walk = Walk {
            items: items.into_iter(),
            current: None,
            position: 0,
        };
        walk.advance();
        walk
    }

    fn advance(&mut self) -> Option<Item<K>> {
        let previous = self.current.take();
        self.current = self.items.next();
        self.position = if self.current.is_some() {
            self.position + 1
        } else {
            -1
        };
        previous
    }

    fn item(&self) -> &Item<K> {
        self.current.as_ref().expect("the walk is not past its end")
    }

    fn key(&self) -> &K {
        &self.item().key
    }

    fn value(&self) -> &Value {
        &self.item().value
    }

    fn active(&self) -> bool {
        self.current.is_some()
    }
}

/// Merges the items of three buckets (BTrees' bucket merge).
fn merge_items<K: Key>(
    old: Vec<Item<K>>,
    committed: Vec<Item<K>>,
    new: Vec<Item<K>>,
) -> Result<Vec<Item<K>>, Refusal> {
    if committed.is_empty() || new.is_empty() {
        return Err(Refusal::conflict(Reason::EmptySide));
    }
    let mut o = Walk::new(old);
    let mut c = Walk::new(committed);
    let mut n = Walk::new(new);
    let mut out: Vec<Item<K>> = Vec::new();
    let refuse = |reason: Reason, o: &Walk<K>, c: &Walk<K>, n: &Walk<K>| Refusal::Conflict {
        reason,
        at: [o.position, c.position, n.position],
    };
    let take = |w: &mut Walk<K>, out: &mut Vec<Item<K>>| {
        out.extend(w.advance());
    };

    // Over the old items while both sides have items left.
    while o.active() && c.active() && n.active() {
        let oc = o.key().cmp(c.key());
        let on = o.key().cmp(n.key());
        match (oc, on) {
            (Ordering::Equal, Ordering::Equal) => {
                // The key is in all three: at most one side may have changed its value.
                let from_new = if same_item(o.value(), c.value())? {
                    true
                } else if same_item(o.value(), n.value())? {
                    false
                } else {
                    return Err(refuse(Reason::BothChanged, &o, &c, &n));
                };
                o.advance();
                let (c_item, n_item) = (c.advance(), n.advance());
                out.extend(if from_new { n_item } else { c_item });
            }
            (Ordering::Equal, Ordering::Greater) => take(&mut n, &mut out),
            (Ordering::Equal, Ordering::Less) => {
                // New deleted the key; committed must have left it alone.
                if !same_item(o.value(), c.value())? {
                    return Err(refuse(Reason::DeletedInNewChangedInCommitted, &o, &c, &n));
                }
                if n.position == 1 {
                    return Err(refuse(Reason::FirstItemDeleted, &o, &c, &n));
                }
                o.advance();
                c.advance();
            }
            (Ordering::Greater, Ordering::Equal) => take(&mut c, &mut out),
            (Ordering::Less, Ordering::Equal) => {
                if !same_item(o.value(), n.value())? {
                    return Err(refuse(Reason::DeletedInCommittedChangedInNew, &o, &c, &n));
                }
                if c.position == 1 {
                    return Err(refuse(Reason::FirstItemDeleted, &o, &c, &n));
                }
                o.advance();
                n.advance();
            }
            (_, _) => {
                // Neither side has the old key where the walk is.
                let cn = c.key().cmp(n.key());
                if cn == Ordering::Equal {
                    return Err(refuse(Reason::SameKeyInsertedOrDeleted, &o, &c, &n));
                }
                if oc == Ordering::Greater {
                    // Committed inserted a key (new may have inserted a smaller one).
                    if cn == Ordering::Greater {
                        take(&mut n, &mut out);
                    } else {
                        take(&mut c, &mut out);
                    }
                } else if on == Ordering::Greater {
                    take(&mut n, &mut out);
                } else {
                    return Err(refuse(Reason::BothDeleted, &o, &c, &n));
                }
            }
        }
    }
    // Past the old items: both sides' insertions.
    while c.active() && n.active() {
        match c.key().cmp(n.key()) {
            Ordering::Equal => return Err(refuse(Reason::BothInserted, &o, &c, &n)),
            Ordering::Greater => take(&mut n, &mut out),
            Ordering::Less => take(&mut c, &mut out),
        }
    }
    // Past new's items: the old items left were deleted by new.
    while o.active() && c.active() {
        match o.key().cmp(c.key()) {
            Ordering::Greater => take(&mut c, &mut out),
            Ordering::Equal if same_item(o.value(), c.value())? => {
                o.advance();
                c.advance();
            }
            _ => return Err(refuse(Reason::TailDeletedOrChangedInCommitted, &o, &c, &n)),
        }
    }
    // Past committed's items: the old items left were deleted by committed.
    while o.active() && n.active() {
        match o.key().cmp(n.key()) {
            Ordering::Greater => take(&mut n, &mut out),
            Ordering::Equal if same_item(o.value(), n.value())? => {
                o.advance();
                n.advance();
            }
            _ => return Err(refuse(Reason::TailDeletedOrChangedInNew, &o, &c, &n)),
        }
    }
    if o.active() {
        return Err(refuse(Reason::TailDeletedByBoth, &o, &c, &n));
    }
    while c.active() {
        take(&mut c, &mut out);
    }
    while n.active() {
        take(&mut n, &mut out);
    }
    if out.is_empty() {
        return Err(Refusal::conflict(Reason::EmptyMerge));
    }
    Ok(out)
}

fn bucket_state<K>(items: Vec<Item<K>>, next: Option<Value>) -> Value {
    let mut flat = Vec::with_capacity(items.len() * 2);
    for item in items {
        flat.push(item.raw_key);
        flat.push(item.value);
    }
    let mut parts = vec![Value::Tuple(flat)];
    parts.extend(next);
    Value::Tuple(parts)
}

/// Resolves a conflict on an `OOBucket` whose keys are `K`: the merged state, or why
/// BTrees refuses.
pub fn resolve_bucket<K: Key>(old: Value, committed: Value, new: Value) -> Result<Value, Refusal> {
    let old = parse_bucket::<K>(old)?;
    let committed = parse_bucket::<K>(committed)?;
    let new = parse_bucket::<K>(new)?;
    // BTrees compares the next buckets by identity: the same reference, spelled alike.
    let next = match (committed.next != old.next, new.next != old.next) {
        (false, false) => old.next,
        (true, true) => return Err(Refusal::conflict(Reason::NextChanged)),
        (true, false) => return merge_beside_split(old.items, committed, new.items, true),
        (false, true) => return merge_beside_split(old.items, new, committed.items, false),
    };
    let items = merge_items(old.items, committed.items, new.items)?;
    Ok(bucket_state(items, next))
}

/// Beyond BTrees: one side (`split`) changed the bucket's `next`, by splitting it (it
/// kept the lower items and moved the rest to a new bucket after it) or by unlinking
/// the bucket after it, and the other side (`other`) changed items without touching
/// `next`. Both merge when every key the other side brings is below the split side's
/// largest key: the bucket's range now ends at its new neighbour's first key, which is
/// above that largest key, so such a key still belongs here. An item the split side
/// moved away that the other side changed or deleted refuses, as a deletion by the
/// split side would (the merge walk's own rule); so does a key above the largest, which
/// may belong to the new neighbour (a bucket cannot be merged into another object).
/// Every refusal gives BTrees' reason (the changed `next`), so that Python and we
/// report the same.
///
/// Concurrent writers that insert into one bucket (every new page's words go to the
/// search index's shared buckets) otherwise conflict whenever one of them splits it.
fn merge_beside_split<K: Key>(
    old: Vec<Item<K>>,
    split: Parsed<K>,
    other: Vec<Item<K>>,
    split_is_committed: bool,
) -> Result<Value, Refusal> {
    // Whatever refuses here refuses as BTrees does, for the changed `next`.
    let refused = || Refusal::conflict(Reason::NextChanged);
    let bound = split.items.last().map(|item| item.key.clone());
    let bound = bound.ok_or_else(refused)?;
    let items = if split_is_committed {
        merge_items(old, split.items, other)
    } else {
        merge_items(old, other, split.items)
    };
    let items = items.map_err(|_| refused())?;
    if items.last().is_some_and(|item| item.key > bound) {
        return Err(refused());
    }
    Ok(bucket_state(items, split.next))
}

/// The bucket inside a tree state that is empty or one inline bucket.
fn tree_bucket(state: Value) -> Result<Value, Refusal> {
    let parts = match state {
        Value::None => return Ok(Value::None),
        Value::Tuple(parts) => parts,
        _ => return Err(malformed("a tree state is None or a tuple")),
    };
    if parts.len() == 2 {
        return Err(Refusal::conflict(Reason::TreeNodes));
    }
    let [Value::Tuple(inner)] = <[Value; 1]>::try_from(parts)
        .map_err(|_| malformed("a tree state is a tuple of one or two items"))?
    else {
        return Err(malformed("an inline tree state holds a tuple"));
    };
    match <[Value; 1]>::try_from(inner) {
        Ok([bucket @ Value::Tuple(_)]) => Ok(bucket),
        _ => Err(malformed("an inline tree state holds one bucket state")),
    }
}

/// Resolves a conflict on an `OOBTree` whose keys are `K`: a tree that is empty or one
/// inline bucket in all three states merges as a bucket (BTrees' rule; the merged
/// state is the one-bucket tree). Beyond BTrees: a node whose children both sides only
/// split, each a different child, merges with both splits (see [`merge_splits`]).
pub fn resolve_tree<K: Key>(old: Value, committed: Value, new: Value) -> Result<Value, Refusal> {
    if let (Value::Tuple(o), Value::Tuple(c), Value::Tuple(n)) = (&old, &committed, &new)
        && o.len() == 2
        && c.len() == 2
        && n.len() == 2
    {
        return merge_splits(o, c, n);
    }
    let old = tree_bucket(old)?;
    let committed = tree_bucket(committed)?;
    let new = tree_bucket(new)?;
    let bucket = resolve_bucket::<K>(old, committed, new)?;
    Ok(Value::Tuple(vec![Value::Tuple(vec![bucket])]))
}

/// A node's state as `(children, keys)`: `((child0, key1, child1, ...), first_bucket)`.
fn node_parts(state: &[Value]) -> Result<(Vec<&Value>, Vec<&Value>), Refusal> {
    let Value::Tuple(flat) = &state[0] else {
        return Err(malformed("a tree node state holds a tuple of children"));
    };
    if flat.len() % 2 != 1 {
        return Err(malformed("a tree node's children tuple has an even length"));
    }
    let children = flat.iter().step_by(2).collect();
    let keys = flat.iter().skip(1).step_by(2).collect();
    Ok((children, keys))
}

/// What one side did to a node: for each child of the old node, the `(key, child)`
/// pairs it put right after it (a split of that child), or `None` when the side did
/// anything else (removed or reordered children, changed a key).
fn splits<'a>(
    old: &(Vec<&'a Value>, Vec<&'a Value>),
    side: &(Vec<&'a Value>, Vec<&'a Value>),
) -> Option<Vec<Vec<(&'a Value, &'a Value)>>> {
    let (old_children, old_keys) = old;
    let (children, keys) = side;
    let mut added = vec![Vec::new(); old_children.len()];
    let mut j = 0;
    for (i, child) in old_children.iter().enumerate() {
        if children.get(j) != Some(child) {
            return None;
        }
        if i > 0 && keys.get(j - 1) != Some(&old_keys[i - 1]) {
            return None;
        }
        j += 1;
        // Children up to the old node's next one are this child's split halves.
        while j < children.len() && old_children.get(i + 1) != Some(&children[j]) {
            added[i].push((keys[j - 1], children[j]));
            j += 1;
        }
    }
    (j == children.len()).then_some(added)
}

/// Merges two changes of one tree node that each only split children of it, and
/// different ones: the split buckets (or nodes) conflict among themselves if both
/// sides touched one, so the node only has to list both sides' new children. The
/// first bucket must be the same. Anything else is BTrees' refusal.
fn merge_splits(old: &[Value], committed: &[Value], new: &[Value]) -> Result<Value, Refusal> {
    let refuse = || Refusal::conflict(Reason::TreeNodes);
    if committed[1] != old[1] || new[1] != old[1] {
        return Err(refuse());
    }
    let o = node_parts(old)?;
    let (Some(c), Some(n)) = (
        splits(&o, &node_parts(committed)?),
        splits(&o, &node_parts(new)?),
    ) else {
        return Err(refuse());
    };
    let changed = |s: &[Vec<_>]| s.iter().any(|a| !a.is_empty());
    if !changed(&c)
        || !changed(&n)
        || c.iter()
            .zip(&n)
            .any(|(a, b)| !a.is_empty() && !b.is_empty())
    {
        return Err(refuse());
    }
    let (old_children, old_keys) = o;
    let mut flat = Vec::new();
    for (i, child) in old_children.iter().enumerate() {
        if i > 0 {
            flat.push(old_keys[i - 1].clone());
        }
        flat.push((*child).clone());
        for (key, added) in c[i].iter().chain(&n[i]) {
            flat.push((*key).clone());
            flat.push((*added).clone());
        }
    }
    Ok(Value::Tuple(vec![Value::Tuple(flat), old[1].clone()]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ref_value;
    use zodb_storage::Oid;

    fn bucket(items: &[(i64, i64)]) -> Value {
        let flat = items
            .iter()
            .flat_map(|(k, v)| [Value::Int(*k), Value::Int(*v)])
            .collect();
        Value::Tuple(vec![Value::Tuple(flat)])
    }

    fn merge(old: &[(i64, i64)], c: &[(i64, i64)], n: &[(i64, i64)]) -> Result<Value, Refusal> {
        resolve_bucket::<i64>(bucket(old), bucket(c), bucket(n))
    }

    fn reason(old: &[(i64, i64)], c: &[(i64, i64)], n: &[(i64, i64)]) -> Option<Reason> {
        merge(old, c, n).unwrap_err().reason()
    }

    fn node(flat: Vec<Value>) -> Value {
        Value::Tuple(vec![Value::Tuple(flat), child(1)])
    }

    fn child(n: u64) -> Value {
        ref_value(Oid(n), Some(("BTrees.OOBTree", "OOBucket")))
    }

    #[test]
    fn splits_of_different_children_merge_and_of_one_child_do_not() {
        let k = Value::Int;
        let old = node(vec![child(1), k(5), child(2)]);
        let split_first = node(vec![child(1), k(3), child(3), k(5), child(2)]);
        let split_second = node(vec![child(1), k(5), child(2), k(8), child(4)]);
        assert_eq!(
            resolve_tree::<i64>(old.clone(), split_first.clone(), split_second.clone()),
            Ok(node(vec![
                child(1),
                k(3),
                child(3),
                k(5),
                child(2),
                k(8),
                child(4)
            ]))
        );
        let split_first_too = node(vec![child(1), k(4), child(5), k(5), child(2)]);
        assert_eq!(
            resolve_tree::<i64>(old.clone(), split_first, split_first_too)
                .unwrap_err()
                .reason(),
            Some(Reason::TreeNodes)
        );
        // A removed child, or nothing changed on one side: BTrees' refusal.
        let removed = node(vec![child(1)]);
        assert!(resolve_tree::<i64>(old.clone(), removed, split_second.clone()).is_err());
        assert!(resolve_tree::<i64>(old.clone(), old.clone(), split_second).is_err());
    }

    #[test]
    fn inserts_and_deletes_of_different_keys_merge() {
        let old = [(1, 1), (3, 3), (5, 5)];
        assert_eq!(
            merge(
                &old,
                &[(1, 1), (2, 2), (3, 3), (5, 5)],
                &[(1, 1), (3, 3), (4, 4), (5, 5), (6, 6)]
            ),
            Ok(bucket(&[(1, 1), (2, 2), (3, 3), (4, 4), (5, 5), (6, 6)]))
        );
        assert_eq!(
            merge(&old, &[(1, 1), (5, 5)], &[(1, 1), (3, 3), (5, 9)]),
            Ok(bucket(&[(1, 1), (5, 9)]))
        );
    }

    #[test]
    fn the_same_key_on_both_sides_conflicts_as_in_btrees() {
        let old = [(1, 1), (3, 3)];
        // Even the same new value, or the same item inserted, on both sides.
        assert_eq!(
            reason(&old, &[(1, 1), (3, 7)], &[(1, 1), (3, 7)]),
            Some(Reason::BothChanged)
        );
        assert_eq!(
            reason(&old, &[(1, 1), (3, 8)], &[(1, 1), (3, 7)]),
            Some(Reason::BothChanged)
        );
        assert_eq!(
            reason(&old, &[(1, 1), (2, 2), (3, 3)], &[(1, 1), (2, 2), (3, 3)]),
            Some(Reason::SameKeyInsertedOrDeleted)
        );
        assert_eq!(
            reason(&old, &[(1, 1), (3, 3), (4, 4)], &[(1, 1), (3, 3), (4, 4)]),
            Some(Reason::BothInserted)
        );
        assert_eq!(
            reason(
                &[(1, 1), (3, 3), (5, 5)],
                &[(1, 1), (5, 5)],
                &[(1, 1), (5, 5)]
            ),
            Some(Reason::SameKeyInsertedOrDeleted)
        );
        assert_eq!(
            reason(&old, &[(1, 1)], &[(1, 1)]),
            Some(Reason::TailDeletedByBoth)
        );
        assert_eq!(
            reason(&old, &[(1, 1), (3, 4)], &[(1, 1)]),
            Some(Reason::TailDeletedOrChangedInCommitted)
        );
        assert_eq!(
            reason(
                &[(1, 1), (3, 3), (5, 5)],
                &[(1, 1), (3, 4), (5, 5)],
                &[(1, 1), (5, 5)]
            ),
            Some(Reason::DeletedInNewChangedInCommitted)
        );
    }

    #[test]
    fn emptied_buckets_first_items_and_splits_conflict() {
        let old = [(1, 1), (3, 3)];
        assert_eq!(
            reason(&old, &[], &[(1, 1), (2, 2), (3, 3)]),
            Some(Reason::EmptySide)
        );
        assert_eq!(
            reason(&old, &[(1, 1), (2, 2), (3, 3)], &[(3, 3)]),
            Some(Reason::FirstItemDeleted)
        );
        // Deleting the first item while inserting a smaller one is fine.
        assert_eq!(
            merge(&old, &[(1, 1), (2, 2), (3, 3)], &[(0, 0), (3, 3)]),
            Ok(bucket(&[(0, 0), (2, 2), (3, 3)]))
        );
        let with_next = |items: &[(i64, i64)], next: u64| {
            let Value::Tuple(mut parts) = bucket(items) else {
                unreachable!()
            };
            parts.push(ref_value(Oid(next), Some(("BTrees.OOBTree", "OOBucket"))));
            Value::Tuple(parts)
        };
        // A split (the tail moved to bucket 10) beside an insert above what the split
        // side kept: the key may belong to the new bucket.
        let split = resolve_bucket::<i64>(
            with_next(&old, 9),
            with_next(&[(1, 1)], 10),
            with_next(&[(1, 1), (3, 3), (4, 4)], 9),
        );
        assert_eq!(split.unwrap_err().reason(), Some(Reason::NextChanged));
        // Both sides changed next.
        let both = resolve_bucket::<i64>(
            with_next(&old, 9),
            with_next(&[(1, 1)], 10),
            with_next(&[(1, 1)], 11),
        );
        assert_eq!(both.unwrap_err().reason(), Some(Reason::NextChanged));
        let kept = resolve_bucket::<i64>(
            with_next(&old, 9),
            with_next(&[(1, 1), (2, 2), (3, 3)], 9),
            with_next(&[(1, 1), (3, 3), (4, 4)], 9),
        );
        assert_eq!(kept, Ok(with_next(&[(1, 1), (2, 2), (3, 3), (4, 4)], 9)));
    }

    #[test]
    fn an_insert_below_a_concurrent_split_merges_and_one_it_moved_does_not() {
        let with_next = |items: &[(i64, i64)], next: u64| {
            let Value::Tuple(mut parts) = bucket(items) else {
                unreachable!()
            };
            parts.push(ref_value(Oid(next), Some(("BTrees.OOBTree", "OOBucket"))));
            Value::Tuple(parts)
        };
        let old = [(10, 1), (20, 2), (30, 3), (40, 4), (50, 5), (60, 6)];
        // The split side inserted 35 and kept up to 30 (bucket 10 starts at 35).
        let kept = [(10, 1), (20, 2), (30, 3)];
        let inserted = [
            (10, 1),
            (15, 7),
            (20, 2),
            (30, 3),
            (40, 4),
            (50, 5),
            (60, 6),
        ];
        for split_is_committed in [true, false] {
            let (c, n) = if split_is_committed {
                (with_next(&kept, 10), with_next(&inserted, 9))
            } else {
                (with_next(&inserted, 9), with_next(&kept, 10))
            };
            assert_eq!(
                resolve_bucket::<i64>(with_next(&old, 9), c, n),
                Ok(with_next(&[(10, 1), (15, 7), (20, 2), (30, 3)], 10)),
                "split on the committed side: {split_is_committed}"
            );
        }
        // A key between what was kept and the new bucket's first key (35, unknown to
        // this bucket) may belong to the new bucket: refused.
        let above = [
            (10, 1),
            (20, 2),
            (30, 3),
            (32, 7),
            (40, 4),
            (50, 5),
            (60, 6),
        ];
        let refused = resolve_bucket::<i64>(
            with_next(&old, 9),
            with_next(&kept, 10),
            with_next(&above, 9),
        );
        assert_eq!(refused.unwrap_err().reason(), Some(Reason::NextChanged));
        // A moved item the other side changed or deleted: its change would be lost.
        let changed = [
            (10, 1),
            (15, 7),
            (20, 2),
            (30, 3),
            (40, 9),
            (50, 5),
            (60, 6),
        ];
        let deleted = [(10, 1), (15, 7), (20, 2), (30, 3), (50, 5), (60, 6)];
        for other in [changed.as_slice(), deleted.as_slice()] {
            let refused = resolve_bucket::<i64>(
                with_next(&old, 9),
                with_next(&kept, 10),
                with_next(other, 9),
            );
            assert!(refused.is_err(), "{other:?}");
        }
        // A value change of a kept item merges as without a split.
        let revalued = [(10, 1), (20, 8), (30, 3), (40, 4), (50, 5), (60, 6)];
        assert_eq!(
            resolve_bucket::<i64>(
                with_next(&old, 9),
                with_next(&kept, 10),
                with_next(&revalued, 9),
            ),
            Ok(with_next(&[(10, 1), (20, 8), (30, 3)], 10))
        );
    }

    #[test]
    fn trees_merge_only_as_one_bucket() {
        let tree = |items: &[(i64, i64)]| Value::Tuple(vec![Value::Tuple(vec![bucket(items)])]);
        assert_eq!(
            resolve_tree::<i64>(Value::None, tree(&[(1, 1)]), tree(&[(2, 2)])),
            Ok(tree(&[(1, 1), (2, 2)]))
        );
        assert_eq!(
            resolve_tree::<i64>(tree(&[(1, 1)]), Value::None, tree(&[(1, 1), (2, 2)]))
                .unwrap_err()
                .reason(),
            Some(Reason::EmptySide)
        );
        let split = Value::Tuple(vec![Value::Tuple(vec![]), Value::None]);
        assert_eq!(
            resolve_tree::<i64>(tree(&[(1, 1)]), split, tree(&[(1, 1), (2, 2)]))
                .unwrap_err()
                .reason(),
            Some(Reason::TreeNodes)
        );
    }
}
