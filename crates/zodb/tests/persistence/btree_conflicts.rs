//! Concurrent changes to one BTree from two connections, against a model: random
//! inserts and deletes on both, the first commits, the second merges or conflicts.
//!
//! - On a tree that is one inline bucket, the model says *when* BTrees' rules merge
//!   (stated by key, not by walking the states as the resolver does) and what the merge
//!   holds; the commit must do exactly that.
//! - On a tree of many small buckets, whatever merges must hold both sides' changes and
//!   pass the structure check, and whatever conflicts must leave the first side's tree:
//!   no key is ever lost or resurrected.

use std::collections::{BTreeMap, BTreeSet};

use proptest::prelude::*;
use zodb::btree::BTree;
use zodb::{DB, PRef};

use crate::memory;

#[derive(Debug, Clone, Copy)]
enum Change {
    Insert(u32, u32),
    Remove(u32),
}

fn change(keys: u32) -> impl Strategy<Value = Change> {
    prop_oneof![
        3 => (0..keys, 0..3u32).prop_map(|(k, v)| Change::Insert(k, v)),
        2 => (0..keys).prop_map(Change::Remove),
    ]
}

type Map = BTreeMap<u32, u32>;

/// What one side's changes did to the model.
struct Side {
    items: Map,
    /// Whether the tree's root record is written (an insert, or a delete that found its
    /// key).
    wrote: bool,
    /// Whether the bucket outgrew `L` at some point (the tree split: the root is a node).
    split: bool,
}

fn apply<const L: usize>(old: &Map, changes: &[Change]) -> Side {
    let mut side = Side {
        items: old.clone(),
        wrote: false,
        split: false,
    };
    for change in changes {
        match *change {
            Change::Insert(k, v) => {
                side.items.insert(k, v);
                side.wrote = true;
                side.split |= side.items.len() > L;
            }
            Change::Remove(k) => side.wrote |= side.items.remove(&k).is_some(),
        }
    }
    side
}

/// The keys whose item (presence or value) differs from `old`.
fn touched(old: &Map, side: &Map) -> BTreeSet<u32> {
    old.keys()
        .chain(side.keys())
        .filter(|k| old.get(k) != side.get(k))
        .copied()
        .collect()
}

/// `old` with the changes of both sides.
fn both(old: &Map, a: &Map, b: &Map) -> Map {
    let mut merged = old.clone();
    for side in [a, b] {
        for k in touched(old, side) {
            match side.get(&k) {
                Some(v) => merged.insert(k, *v),
                None => merged.remove(&k),
            };
        }
    }
    merged
}

/// Whether BTrees merges a second side's changes to a one-bucket tree, said by key:
/// no key changed on both sides (even to the same value), neither side empty nor split,
/// and no side deleting the first old key while holding nothing below it.
fn btrees_merges(old: &Map, a: &Side, b: &Side) -> bool {
    if !(a.wrote && b.wrote) {
        return true;
    }
    if a.split || b.split || a.items.is_empty() || b.items.is_empty() {
        return false;
    }
    if !touched(old, &a.items).is_disjoint(&touched(old, &b.items)) {
        return false;
    }
    let deletes_first = |side: &Side| {
        old.keys().next().is_some_and(|first| {
            !side.items.contains_key(first) && side.items.keys().next().is_some_and(|k| k > first)
        })
    };
    !deletes_first(a) && !deletes_first(b)
}

fn run<const L: usize, const N: usize>(
    initial: &Map,
    changes_a: &[Change],
    changes_b: &[Change],
) -> (Side, Side, Result<(), zodb::Error>, Map) {
    let db = DB::open(memory().storage).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let tree: PRef<BTree<u32, u32, L, N>> = tx.add(BTree::new()).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("tree", tree);
    for (k, v) in initial {
        tree.insert(&tx, *k, *v).unwrap();
    }
    tx.commit().unwrap();
    let mut a = db.connection();
    let mut b = db.connection();
    let ta = a.begin();
    let tb = b.begin();
    for (tx, changes) in [(&ta, changes_a), (&tb, changes_b)] {
        for change in changes {
            match *change {
                Change::Insert(k, v) => drop(tree.insert(tx, k, v).unwrap()),
                Change::Remove(k) => drop(tree.remove(tx, &k).unwrap()),
            }
        }
    }
    ta.commit().unwrap();
    let outcome = tb.commit().map(|_| ());
    let tx = conn.begin();
    tree.check(&tx).unwrap();
    let now: Map = tree.iter(&tx).unwrap().map(Result::unwrap).collect();
    drop(tx);
    // A merged bucket may hold more than `L` items (each side stayed within): the tree
    // goes on working from it, splitting and emptying buckets.
    let keys = now.keys().chain(initial.keys()).max().map_or(0, |k| k + 1);
    let tx = conn.begin();
    for k in 0..keys {
        if k % 3 == 0 {
            tree.remove(&tx, &k).unwrap();
        } else {
            tree.insert(&tx, k, 7).unwrap();
        }
    }
    tx.commit().unwrap();
    let tx = conn.begin();
    tree.check(&tx).unwrap();
    let after: Map = tree.iter(&tx).unwrap().map(Result::unwrap).collect();
    assert_eq!(
        after,
        (0..keys)
            .filter(|k| k % 3 != 0)
            .map(|k| (k, 7))
            .collect::<Map>()
    );
    drop(tx);
    (
        apply::<L>(initial, changes_a),
        apply::<L>(initial, changes_b),
        outcome,
        now,
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    /// One inline bucket (at most 8 items): merges exactly when BTrees does.
    #[test]
    fn a_one_bucket_tree_merges_exactly_when_btrees_does(
        initial in proptest::collection::btree_map(0..12u32, 0..3u32, 0..7),
        changes_a in proptest::collection::vec(change(12), 0..5),
        changes_b in proptest::collection::vec(change(12), 0..5),
    ) {
        let (a, b, outcome, now) = run::<8, 4>(&initial, &changes_a, &changes_b);
        let expected = btrees_merges(&initial, &a, &b);
        match outcome {
            Ok(()) => {
                prop_assert!(expected, "merged where BTrees conflicts: now {now:?}");
                prop_assert_eq!(now, both(&initial, &a.items, &b.items));
            }
            Err(e) => {
                prop_assert!(e.is_conflict(), "{e}");
                prop_assert!(!expected, "conflicted where BTrees merges");
                prop_assert_eq!(now, a.items);
            }
        }
    }

    /// Many buckets of at most 4 items under nodes of at most 4 children: whatever
    /// merges holds both sides' changes, whatever conflicts the first side's.
    #[test]
    fn a_tree_of_many_buckets_never_loses_a_key(
        initial in proptest::collection::btree_map(0..48u32, 0..3u32, 15..40),
        changes_a in proptest::collection::vec(change(48), 1..10),
        changes_b in proptest::collection::vec(change(48), 1..10),
    ) {
        let (a, b, outcome, now) = run::<4, 4>(&initial, &changes_a, &changes_b);
        match outcome {
            Ok(()) => {
                prop_assert!(
                    touched(&initial, &a.items).is_disjoint(&touched(&initial, &b.items)),
                    "a key changed on both sides merged"
                );
                prop_assert_eq!(now, both(&initial, &a.items, &b.items));
            }
            Err(e) => {
                prop_assert!(e.is_conflict(), "{e}");
                prop_assert_eq!(now, a.items);
            }
        }
    }
}

/// Buckets of at most 4 items: one side fills the last bucket until it splits, the
/// other inserts into it below what the split keeps; both commit, and the tree holds
/// every key. Inserting above what the split kept (the key may belong to the new
/// bucket) conflicts, and the first side's tree stays.
#[test]
fn an_insert_beside_a_concurrent_split_of_its_bucket_merges() {
    let initial: Map = (0..7).map(|k| (k * 10, 0)).collect();
    let split = [Change::Insert(70, 1), Change::Insert(80, 1)];
    let (a, b, outcome, now) = run::<4, 4>(&initial, &split, &[Change::Insert(45, 2)]);
    outcome.expect("an insert below the split's kept keys merges");
    assert_eq!(now, both(&initial, &a.items, &b.items));
    assert!(now.contains_key(&45) && now.contains_key(&80));

    // Without a split, BTrees' own rules would merge this one too: its conflict shows
    // that the bucket did split.
    let (a, _, outcome, now) = run::<4, 4>(&initial, &split, &[Change::Insert(75, 2)]);
    assert!(outcome.expect_err("above the kept keys").is_conflict());
    assert_eq!(now, a.items);
}
