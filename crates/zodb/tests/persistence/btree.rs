//! The BTree container against a `BTreeMap` model, its record sizes, and conflicts between
//! concurrent inserts.

use std::collections::BTreeMap;
use std::ops::Bound;

use proptest::prelude::*;
use zodb::btree::BTree;
use zodb::{DB, Error, PRef, TransactionManager};

use crate::{Backend, file, memory};

/// Small buckets and nodes, so a few hundred keys make a tree three levels deep.
type Small = BTree<u32, u32, 4, 4>;

fn new_tree<T: zodb::Persistent + Default>(db: &DB, key: &str) -> PRef<T> {
    let mut conn = db.connection();
    let tx = conn.begin();
    let tree = tx.add(T::default()).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref(key, tree);
    tx.commit().unwrap();
    tree
}

#[derive(Debug, Clone)]
enum Op {
    Insert(u32, u32),
    Remove(u32),
    Range(u32, u32),
    Commit,
    Abort,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (0..400u32, any::<u32>()).prop_map(|(k, v)| Op::Insert(k, v)),
        4 => (0..400u32).prop_map(Op::Remove),
        1 => (0..400u32, 0..400u32).prop_map(|(a, b)| Op::Range(a.min(b), a.max(b))),
        1 => Just(Op::Commit),
        1 => Just(Op::Abort),
    ]
}

fn pairs<'a>(it: impl Iterator<Item = (&'a u32, &'a u32)>) -> Vec<(u32, u32)> {
    it.map(|(k, v)| (*k, *v)).collect()
}

/// Runs `ops` in transactions (ended by `Commit`/`Abort`), checking every answer against
/// the model, the tree's structure at each transaction end, and what a fresh connection
/// reads after it.
fn check_against_model(backend: Backend, ops: Vec<Op>) {
    let db = DB::open(backend.storage).unwrap();
    let tree: PRef<Small> = new_tree(&db, "tree");
    let mut committed: BTreeMap<u32, u32> = BTreeMap::new();
    let mut model = committed.clone();
    let mut conn = db.connection();
    let mut ops = ops.into_iter().peekable();
    while ops.peek().is_some() {
        let tx = conn.begin();
        let mut abort = false;
        for op in ops.by_ref() {
            match op {
                Op::Insert(k, v) => {
                    assert_eq!(tree.insert(&tx, k, v).unwrap(), model.insert(k, v))
                }
                Op::Remove(k) => assert_eq!(tree.remove(&tx, &k).unwrap(), model.remove(&k)),
                Op::Range(a, b) => {
                    let got: Vec<_> = tree
                        .range(&tx, a..=b)
                        .unwrap()
                        .map(Result::unwrap)
                        .collect();
                    assert_eq!(got, pairs(model.range(a..=b)));
                    let from = (Bound::Excluded(a), Bound::Unbounded);
                    let got: Vec<_> = tree.range(&tx, from).unwrap().map(Result::unwrap).collect();
                    assert_eq!(got, pairs(model.range(from)));
                }
                Op::Commit => break,
                Op::Abort => {
                    abort = true;
                    break;
                }
            }
        }
        tree.check(&tx).unwrap();
        assert_eq!(tree.len(&tx).unwrap(), model.len());
        if abort {
            tx.abort();
            model = committed.clone();
        } else {
            tx.commit().unwrap();
            committed = model.clone();
        }
        let mut fresh = db.connection();
        fresh.clear_cache();
        let tx = fresh.begin();
        let all: Vec<_> = tree.iter(&tx).unwrap().map(Result::unwrap).collect();
        assert_eq!(all, pairs(committed.iter()));
        tree.check(&tx).unwrap();
        for k in (0..400).step_by(37) {
            assert_eq!(tree.get(&tx, &k).unwrap(), committed.get(&k).copied());
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn btree_matches_a_btreemap_on_memory(ops in proptest::collection::vec(op(), 1..600)) {
        check_against_model(memory(), ops);
    }

    #[test]
    fn btree_matches_a_btreemap_on_file(ops in proptest::collection::vec(op(), 1..300)) {
        check_against_model(file(), ops);
    }
}

#[test]
fn grows_and_shrinks_through_every_level() {
    // Ascending inserts then removals from both ends: root growth, node splits, buckets
    // and nodes emptied at the left edge (first_bucket moves) and at the right edge.
    let db = DB::open(memory().storage).unwrap();
    let tree: PRef<Small> = new_tree(&db, "tree");
    let mut conn = db.connection();
    let tx = conn.begin();
    for k in 0..500 {
        tree.insert(&tx, k, k * 2).unwrap();
    }
    tree.check(&tx).unwrap();
    tx.commit().unwrap();
    let tx = conn.begin();
    for k in 0..250 {
        assert_eq!(tree.remove(&tx, &k).unwrap(), Some(k * 2));
        assert_eq!(tree.remove(&tx, &(499 - k)).unwrap(), Some((499 - k) * 2));
        if k % 25 == 0 {
            tree.check(&tx).unwrap();
        }
    }
    assert!(tree.is_empty(&tx).unwrap());
    tree.check(&tx).unwrap();
    tree.insert(&tx, 7, 7).unwrap();
    tx.commit().unwrap();
    let tx = conn.begin();
    assert_eq!(
        tree.iter(&tx)
            .unwrap()
            .map(Result::unwrap)
            .collect::<Vec<_>>(),
        vec![(7, 7)]
    );
}

/// Sum of the record sizes the last transaction wrote.
fn last_transaction_bytes(storage: &dyn zodb_storage::Storage) -> usize {
    let last = storage.last_transaction();
    let txn = storage
        .iterator(Some(last), Some(last))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    txn.records
        .iter()
        .map(|r| r.data.as_ref().map_or(0, Vec::len))
        .sum()
}

#[test]
fn an_insert_into_a_large_tree_writes_small_records() {
    let backend = file();
    let storage = backend.storage.clone();
    let db = DB::open(backend.storage).unwrap();
    let tree: PRef<BTree<String, String>> = new_tree(&db, "big");
    let mut conn = db.connection();
    for chunk in 0..10 {
        let tx = conn.begin();
        for i in 0..5_000 {
            let k = format!("item-{:07}", (i * 7919 + chunk * 13) % 1_000_000);
            tree.insert(&tx, k, "x".repeat(20)).unwrap();
        }
        tx.commit().unwrap();
    }
    let tx = conn.begin();
    let n = tree.len(&tx).unwrap();
    assert!(n > 40_000, "{n}");
    tree.check(&tx).unwrap();
    tree.insert(&tx, "item-0500000x".into(), "new".into())
        .unwrap();
    tx.commit().unwrap();
    // One bucket (at most 30 items of ~50 bytes), maybe one node after a split.
    let written = last_transaction_bytes(&*storage);
    assert!(written < 8_000, "one insert wrote {written} bytes");
}

fn tree_of(db: &DB, keys: impl Iterator<Item = u32>) -> PRef<BTree<u32, u32>> {
    let tree = new_tree(db, "tree");
    let mut conn = db.connection();
    let tx = conn.begin();
    for k in keys {
        tree.insert(&tx, k, 0).unwrap();
    }
    tx.commit().unwrap();
    tree
}

fn inserts_into_different_buckets_do_not_conflict(backend: Backend) {
    let db = DB::open(backend.storage).unwrap();
    let tree = tree_of(&db, (0..3_000).map(|k| k * 10));
    let mut a = db.connection();
    let mut b = db.connection();
    let ta = a.begin();
    let tb = b.begin();
    tree.insert(&ta, 5, 1).unwrap();
    tree.insert(&tb, 29_995, 2).unwrap();
    ta.commit().unwrap();
    tb.commit().unwrap();
    assert_eq!(
        db.stats().resolved_conflicts,
        0,
        "different buckets never meet"
    );
    // Different keys of one bucket: the bucket's resolver merges them.
    let ta = a.begin();
    let tb = b.begin();
    tree.insert(&ta, 15, 1).unwrap();
    tree.insert(&tb, 25, 2).unwrap();
    tree.remove(&tb, &40).unwrap();
    ta.commit().unwrap();
    tb.commit()
        .expect("inserts of different keys into one bucket merge");
    assert_eq!(db.stats().resolved_conflicts, 1);
    // The same key in one bucket conflicts, and a retry resolves it.
    let ta = a.begin();
    let tb = b.begin();
    tree.insert(&ta, 35, 1).unwrap();
    tree.insert(&tb, 35, 2).unwrap();
    ta.commit().unwrap();
    assert!(tb.commit().unwrap_err().is_conflict());
    TransactionManager::default()
        .run(&mut b, |tx| tree.insert(tx, 35, 2))
        .unwrap();
    let tx = a.begin();
    for (k, v) in [(5, 1), (15, 1), (25, 2), (35, 2), (29_995, 2)] {
        assert_eq!(tree.get(&tx, &k).unwrap(), Some(v));
    }
    assert_eq!(tree.get(&tx, &40).unwrap(), None);
    assert_eq!(tree.len(&tx).unwrap(), 3_004);
    tree.check(&tx).unwrap();
}

#[test]
fn inserts_into_different_buckets_do_not_conflict_on_memory() {
    inserts_into_different_buckets_do_not_conflict(memory());
}

#[test]
fn inserts_into_different_buckets_do_not_conflict_on_file() {
    inserts_into_different_buckets_do_not_conflict(file());
}

#[test]
fn concurrent_inserts_from_two_connections_match_the_model() {
    let backend = file();
    let db = DB::open(backend.storage).unwrap();
    let tree: PRef<Small> = new_tree(&db, "tree");
    let threads: Vec<_> = (0..2u32)
        .map(|t| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut conn = db.connection();
                let mut rng = 0x9e37_79b9u32.wrapping_mul(t + 1);
                let mut mine = BTreeMap::new();
                for _ in 0..60 {
                    let batch: Vec<u32> = (0..5)
                        .map(|_| {
                            rng ^= rng << 13;
                            rng ^= rng >> 17;
                            rng ^= rng << 5;
                            // Disjoint keys per thread, interleaved in the key space.
                            (rng % 1000) * 2 + t
                        })
                        .collect();
                    TransactionManager::new(50)
                        .run(&mut conn, |tx| {
                            for k in &batch {
                                tree.insert(tx, *k, t)?;
                            }
                            Ok::<_, Error>(())
                        })
                        .unwrap();
                    for k in batch {
                        mine.insert(k, t);
                    }
                }
                mine
            })
        })
        .collect();
    let mut model = BTreeMap::new();
    for t in threads {
        model.extend(t.join().unwrap());
    }
    let mut conn = db.connection();
    let tx = conn.begin();
    tree.check(&tx).unwrap();
    let all: Vec<_> = tree.iter(&tx).unwrap().map(Result::unwrap).collect();
    assert_eq!(all, pairs(model.iter()));
}
