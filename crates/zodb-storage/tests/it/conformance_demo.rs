//! Runs the storage conformance suite against `DemoStorage` over a
//! `MemoryStorage` base that already holds data (a root and a few objects,
//! over several transactions), then checks what only an overlay has: reads
//! that fall through to the base, writes and undo over base objects, and a
//! base that is never written.

use std::sync::Arc;

use test_support::conformance::{commit, current_serial, record, try_undo};
use zodb_storage::{
    DemoStorage, MemoryStorage, Oid, Storage, StorageError, Tid, TransactionRecord,
};

/// The oids the base holds besides the root.
const BASE_A: Oid = Oid(1);
const BASE_B: Oid = Oid(2);
const BASE_C: Oid = Oid(3);

/// A base with the root referring to two objects, a third unreachable
/// one, and some history: the root at `t1`, `BASE_A` at `t1` and `t2`,
/// `BASE_B` and `BASE_C` at `t1`.
fn base() -> (Arc<MemoryStorage>, [Tid; 2]) {
    let base = Arc::new(MemoryStorage::new("base"));
    let t1 = commit(
        &*base,
        "base 1",
        &[
            (Oid::ROOT, Tid::ZERO, record(0, &[BASE_A, BASE_B])),
            (BASE_A, Tid::ZERO, record(100, &[])),
            (BASE_B, Tid::ZERO, record(200, &[BASE_A])),
            (BASE_C, Tid::ZERO, record(300, &[])),
        ],
    );
    let t2 = commit(&*base, "base 2", &[(BASE_A, t1, record(101, &[]))]);
    (base, [t1, t2])
}

fn demo() -> (DemoStorage, Arc<MemoryStorage>, [Tid; 2]) {
    let (base, tids) = base();
    let demo = DemoStorage::new(Arc::clone(&base) as Arc<dyn Storage>, "demo");
    (demo, base, tids)
}

test_support::storage_conformance_tests!(|| -> Arc<dyn Storage> {
    let (demo, _base, _tids) = demo();
    Arc::new(demo)
});

fn all_transactions(s: &dyn Storage) -> Vec<TransactionRecord> {
    s.iterator(None, None)
        .unwrap()
        .collect::<Result<Vec<_>, _>>()
        .unwrap()
}

#[test]
fn reads_fall_through_to_the_base() {
    let (demo, _base, [t1, t2]) = demo();
    assert_eq!(demo.load(BASE_A).unwrap(), (record(101, &[]), t2));
    assert_eq!(demo.load_serial(BASE_A, t1).unwrap(), record(100, &[]));
    let old = demo.load_before(BASE_A, t2).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(100, &[]), t1, Some(t2))
    );
    assert_eq!(demo.last_transaction(), t2);
    assert_eq!(demo.len(), 4);
    assert_eq!(
        demo.history(BASE_A, 10)
            .unwrap()
            .iter()
            .map(|h| h.tid)
            .collect::<Vec<_>>(),
        vec![t2, t1]
    );
    assert!(
        demo.undo_log(0, 10).unwrap().is_empty(),
        "base transactions are not undoable here"
    );
    assert_eq!(all_transactions(&demo).len(), 2);
}

#[test]
fn changes_shadow_the_base_and_end_its_current_revision() {
    let (demo, _base, [t1, t2]) = demo();
    let t3 = commit(&demo, "change a", &[(BASE_A, t2, record(102, &[]))]);
    assert!(t3 > t2);
    assert_eq!(demo.load(BASE_A).unwrap(), (record(102, &[]), t3));
    // Before the overlay's first revision the base answers, and its current
    // revision now ends where the overlay's begins.
    let old = demo.load_before(BASE_A, t3).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(101, &[]), t2, Some(t3))
    );
    let older = demo.load_before(BASE_A, t2).unwrap().unwrap();
    assert_eq!((older.start, older.end), (t1, Some(t2)));
    assert_eq!(
        demo.history(BASE_A, 10)
            .unwrap()
            .iter()
            .map(|h| h.tid)
            .collect::<Vec<_>>(),
        vec![t3, t2, t1]
    );
    assert_eq!(
        demo.history(BASE_A, 2)
            .unwrap()
            .iter()
            .map(|h| h.tid)
            .collect::<Vec<_>>(),
        vec![t3, t2]
    );
    let tids: Vec<Tid> = all_transactions(&demo).iter().map(|t| t.tid).collect();
    assert_eq!(tids, vec![t1, t2, t3]);
    assert_eq!(demo.len(), 4, "a changed base object is counted once");
}

#[test]
fn stores_over_base_objects_check_the_base_serial() {
    let (demo, _base, [t1, t2]) = demo();
    let r = test_support::conformance::try_commit(
        &demo,
        test_support::conformance::meta("stale"),
        |txn| demo.store(txn, BASE_A, t1, record(1, &[])),
    );
    let Err(StorageError::Conflict(c)) = r else {
        panic!("expected a conflict, got {r:?}")
    };
    assert_eq!((c.oid, c.committed, c.expected), (BASE_A, t2, t1));
    let r = test_support::conformance::try_commit(
        &demo,
        test_support::conformance::meta("as new"),
        |txn| demo.store(txn, BASE_C, Tid::ZERO, record(1, &[])),
    );
    assert!(matches!(r, Err(StorageError::Conflict(_))), "{r:?}");
}

#[test]
fn undo_of_the_first_change_returns_to_the_base_data() {
    let (demo, _base, [_t1, t2]) = demo();
    let t3 = commit(&demo, "change a", &[(BASE_A, t2, record(102, &[]))]);
    let (oids, u) = try_undo(&demo, t3).unwrap();
    assert_eq!(oids, vec![BASE_A]);
    assert_eq!(demo.load(BASE_A).unwrap(), (record(101, &[]), u));
    let undo_txn = demo
        .iterator(Some(u), Some(u))
        .unwrap()
        .next()
        .unwrap()
        .unwrap();
    assert_eq!(undo_txn.records[0].data_txn, Some(t2));
    let t4 = commit(&demo, "change a again", &[(BASE_A, u, record(103, &[]))]);
    assert_eq!(demo.load(BASE_A).unwrap(), (record(103, &[]), t4));
}

#[test]
fn new_oids_are_above_the_base() {
    let (demo, base, _) = demo();
    let oids = demo.new_oids(5).unwrap();
    assert!(oids.iter().all(|o| o.0 > BASE_C.0), "{oids:?}");
    for oid in oids {
        assert!(demo.load(oid).unwrap_err().is_pos_key());
        assert!(base.load(oid).unwrap_err().is_pos_key());
    }
}

#[test]
fn gc_pack_follows_references_through_the_base() {
    let (demo, _base, [t1, _t2]) = demo();
    let [x, garbage] = <[Oid; 2]>::try_from(demo.new_oids(2).unwrap()).unwrap();
    // BASE_B (unchanged, in the base) now refers to x, created here.
    let t3 = commit(
        &demo,
        "x via base_b",
        &[
            (BASE_B, t1, record(200, &[BASE_A, x])),
            (x, Tid::ZERO, record(1, &[])),
            (garbage, Tid::ZERO, record(2, &[])),
        ],
    );
    let t4 = commit(&demo, "base_c", &[(BASE_C, t1, record(301, &[]))]);
    demo.pack(t4, true).unwrap();
    assert_eq!(demo.load(x).unwrap(), (record(1, &[]), t3));
    assert!(demo.load(garbage).unwrap_err().is_pos_key());
    // BASE_C is unreachable: its overlay revision goes, the base is untouched.
    assert_eq!(demo.load(BASE_C).unwrap(), (record(300, &[]), t1));
    assert_eq!(current_serial(&demo, Oid::ROOT), t1);
}

#[test]
fn the_base_is_never_written() {
    let (demo, base, [t1, t2]) = demo();
    let before: Vec<TransactionRecord> = all_transactions(&*base);
    let [x] = <[Oid; 1]>::try_from(demo.new_oids(1).unwrap()).unwrap();
    let t3 = commit(
        &demo,
        "overlay",
        &[
            (Oid::ROOT, t1, record(0, &[BASE_A, BASE_B, x])),
            (BASE_A, t2, record(500, &[])),
            (x, Tid::ZERO, record(1, &[])),
        ],
    );
    let (_, u) = try_undo(&demo, t3).unwrap();
    demo.pack(u, true).unwrap();
    demo.pack(u, false).unwrap();
    demo.close().unwrap();
    assert_eq!(all_transactions(&*base), before);
    assert_eq!(base.last_transaction(), t2);
    assert_eq!(base.load(BASE_A).unwrap(), (record(101, &[]), t2));
    assert!(base.load(x).unwrap_err().is_pos_key());
    assert_eq!(base.load(Oid::ROOT).unwrap().1, t1);
}
