//! The storage conformance suite: ZODB's storage semantics as checks that
//! every backend (MemoryStorage, DemoStorage, FileStorage, the ZEO client)
//! must pass.
//!
//! The checks follow Python's `ZODB.tests` (BasicStorage, MVCCStorage /
//! loadBefore, HistoryStorage, TransactionalUndoStorage, IteratorStorage,
//! PackableStorage, Synchronization) and `docs/spec/filestorage-format.md`
//! (§5.4 loadBefore, §5.5 history / undo log / iterator, §8 commit, §12
//! undo, §13 pack). They test ZODB semantics only, never one engine's
//! quirks, and they do not assume an empty storage: every check allocates
//! its own oids, bases the root's new revision on whatever serial the root
//! has, and compares transactions relative to the ones it committed.
//!
//! Use [`storage_conformance_tests!`](crate::storage_conformance_tests) in
//! a test file to get one `#[test]` per check, each on a fresh storage:
//!
//! ```ignore
//! test_support::storage_conformance_tests!(|| {
//!     std::sync::Arc::new(zodb_storage::MemoryStorage::new("test"))
//! });
//! ```
//!
//! The closure may return anything that dereferences to a storage (an
//! `Arc<dyn Storage>`, or a guard that also owns a temporary directory).
//!
//! Records are built by hand with [`record`]: valid protocol-3 ZODB records
//! (`docs/spec/record-format.md` §6) whose state holds an integer and a
//! list of strong persistent references, so pack's garbage collection sees
//! exactly the references a test intends.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use zodb_storage::{
    ConflictError, Oid, Storage, StorageError, Tid, TransactionMeta, TransactionRecord, TxnHandle,
    TxnStatus, parse_undo_id, undo_id,
};

/// Module and class name of every record [`record`] builds.
pub const RECORD_MODULE: &str = "bbru.tests";
pub const RECORD_CLASS: &str = "Item";

/// How long a check waits for something that should happen promptly
/// before calling it a failure.
const PROMPTLY: Duration = Duration::from_secs(10);

/// How long a check watches for something that must not happen (a vote
/// returning while another transaction holds the commit lock).
const NOT_YET: Duration = Duration::from_millis(200);

// ---------------------------------------------------------------------------
// Records
// ---------------------------------------------------------------------------

fn push_global(out: &mut Vec<u8>) {
    out.push(0x63); // GLOBAL
    out.extend_from_slice(RECORD_MODULE.as_bytes());
    out.push(0x0a);
    out.extend_from_slice(RECORD_CLASS.as_bytes());
    out.push(0x0a);
}

fn push_str(out: &mut Vec<u8>, s: &str) {
    out.push(0x58); // BINUNICODE
    out.extend_from_slice(&(s.len() as u32).to_le_bytes());
    out.extend_from_slice(s.as_bytes());
}

/// An int as Python's protocol-3 pickler writes it.
fn push_int(out: &mut Vec<u8>, value: i64) {
    if (0..=0xff).contains(&value) {
        out.extend_from_slice(&[0x4b, value as u8]); // BININT1
    } else if (0..=0xffff).contains(&value) {
        out.push(0x4d); // BININT2
        out.extend_from_slice(&(value as u16).to_le_bytes());
    } else if let Ok(v) = i32::try_from(value) {
        out.push(0x4a); // BININT
        out.extend_from_slice(&v.to_le_bytes());
    } else {
        // LONG1: minimal little-endian two's complement.
        let bytes = value.to_le_bytes();
        let mut n = 8;
        while n > 1 {
            let top = bytes[n - 1];
            let next_sign = bytes[n - 2] & 0x80;
            if (top == 0x00 && next_sign == 0) || (top == 0xff && next_sign != 0) {
                n -= 1;
            } else {
                break;
            }
        }
        out.extend_from_slice(&[0x8a, n as u8]);
        out.extend_from_slice(&bytes[..n]);
    }
}

/// A strong reference, form A: `(oid, class)` then BINPERSID.
fn push_ref(out: &mut Vec<u8>, oid: Oid) {
    out.extend_from_slice(&[0x43, 0x08]); // SHORT_BINBYTES 8
    out.extend_from_slice(&oid.to_bytes());
    push_global(out);
    out.extend_from_slice(&[0x86, 0x51]); // TUPLE2 BINPERSID
}

/// A weak reference, form C: `['w', (oid,)]` then BINPERSID.
fn push_weak_ref(out: &mut Vec<u8>, oid: Oid) {
    out.push(0x5d); // EMPTY_LIST
    push_str(out, "w");
    out.push(0x61); // APPEND
    out.extend_from_slice(&[0x43, 0x08]);
    out.extend_from_slice(&oid.to_bytes());
    out.extend_from_slice(&[0x85, 0x61, 0x51]); // TUPLE1 APPEND BINPERSID
}

/// Pushes a list of `n` items written by `item`, as Python does: `]` for an
/// empty list, `] x a` for one item, `] ( x y … e` for more.
fn push_list<T: Copy>(out: &mut Vec<u8>, items: &[T], item: fn(&mut Vec<u8>, T)) {
    out.push(0x5d);
    match items {
        [] => {}
        [one] => {
            item(out, *one);
            out.push(0x61);
        }
        many => {
            out.push(0x28);
            for x in many {
                item(out, *x);
            }
            out.push(0x65);
        }
    }
}

/// A ZODB record of class `bbru.tests.Item` with state
/// `{'value': value, 'refs': [strong references to refs...]}`.
pub fn record(value: i64, refs: &[Oid]) -> Vec<u8> {
    record_with_weak_refs(value, refs, &[])
}

/// Like [`record`], with a `'weak'` entry holding weak references
/// (`persistent.wref.WeakRef`), which keep nothing alive in a GC pack.
pub fn record_with_weak_refs(value: i64, refs: &[Oid], weak: &[Oid]) -> Vec<u8> {
    let mut out = vec![0x80, 0x03];
    push_global(&mut out);
    out.push(0x2e);
    out.extend_from_slice(&[0x80, 0x03, 0x7d, 0x28]); // PROTO 3, EMPTY_DICT, MARK
    push_str(&mut out, "value");
    push_int(&mut out, value);
    push_str(&mut out, "refs");
    push_list(&mut out, refs, push_ref);
    if !weak.is_empty() {
        push_str(&mut out, "weak");
        push_list(&mut out, weak, push_weak_ref);
    }
    out.extend_from_slice(&[0x75, 0x2e]); // SETITEMS STOP
    out
}

/// The `'value'` of a record built by [`record`].
pub fn record_value(data: &[u8]) -> Option<i64> {
    let mut key = vec![0x58, 5, 0, 0, 0];
    key.extend_from_slice(b"value");
    let at = data.windows(key.len()).position(|w| w == key.as_slice())? + key.len();
    let rest = data.get(at..)?;
    match *rest.first()? {
        0x4b => Some(i64::from(*rest.get(1)?)),
        0x4d => Some(i64::from(u16::from_le_bytes(
            rest.get(1..3)?.try_into().ok()?,
        ))),
        0x4a => Some(i64::from(i32::from_le_bytes(
            rest.get(1..5)?.try_into().ok()?,
        ))),
        0x8a => {
            let n = usize::from(*rest.get(1)?);
            let bytes = rest.get(2..2 + n)?;
            let fill = if bytes.last()? & 0x80 != 0 { 0xff } else { 0 };
            let mut buf = [fill; 8];
            buf.get_mut(..n)?.copy_from_slice(bytes);
            Some(i64::from_le_bytes(buf))
        }
        _ => None,
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

/// Metadata with the suite's user name and the given description.
pub fn meta(description: &str) -> TransactionMeta {
    TransactionMeta::new("conformance", description)
}

/// Runs one transaction: `body` makes its changes, then vote and finish.
/// On any failure the transaction is aborted and the error returned.
pub fn try_commit(
    s: &dyn Storage,
    meta: TransactionMeta,
    body: impl FnOnce(&TxnHandle) -> Result<(), StorageError>,
) -> Result<Tid, StorageError> {
    let txn = s.tpc_begin(meta)?;
    let result = body(&txn)
        .and_then(|()| s.vote(&txn))
        .and_then(|()| s.finish(&txn));
    if result.is_err() {
        s.abort(&txn);
    }
    result
}

/// Commits `stores` (oid, expected serial, record) in one transaction.
///
/// # Panics
/// If the commit fails.
pub fn commit(s: &dyn Storage, description: &str, stores: &[(Oid, Tid, Vec<u8>)]) -> Tid {
    try_commit(s, meta(description), |txn| {
        for (oid, serial, data) in stores {
            s.store(txn, *oid, *serial, data.clone())?;
        }
        Ok(())
    })
    .unwrap_or_else(|e| panic!("commit {description:?} failed: {e}"))
}

/// Undoes transaction `tid` in a transaction of its own; returns the oids
/// undo reported and the undoing transaction's tid.
pub fn try_undo(s: &dyn Storage, tid: Tid) -> Result<(Vec<Oid>, Tid), StorageError> {
    let mut oids = Vec::new();
    let undo_tid = try_commit(s, meta(&format!("undo {tid}")), |txn| {
        oids = s.undo(txn, tid)?;
        Ok(())
    })?;
    Ok((oids, undo_tid))
}

/// The current serial of `oid`, `Tid::ZERO` when it has none to load.
pub fn current_serial(s: &dyn Storage, oid: Oid) -> Tid {
    match s.load(oid) {
        Ok((_, serial)) => serial,
        Err(e) if e.is_pos_key() => Tid::ZERO,
        Err(e) => panic!("load {oid}: {e}"),
    }
}

/// `n` fresh oids.
pub fn fresh_oids<const N: usize>(s: &dyn Storage) -> [Oid; N] {
    let oids = s.new_oids(N).expect("new_oids");
    oids.try_into()
        .expect("new_oids returned the count asked for")
}

fn assert_pos_key<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(e) if e.is_pos_key() => {}
        other => panic!("{what}: expected PosKey, got {other:?}"),
    }
}

fn expect_conflict<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) -> ConflictError {
    match r {
        Err(StorageError::Conflict(c)) => c,
        Err(StorageError::Conflicts(mut cs)) if !cs.is_empty() => cs.remove(0),
        other => panic!("{what}: expected a conflict, got {other:?}"),
    }
}

fn assert_undo_error<T: std::fmt::Debug>(r: Result<T, StorageError>, what: &str) {
    match r {
        Err(StorageError::Undo(messages)) => assert!(!messages.is_empty(), "{what}: no message"),
        other => panic!("{what}: expected an undo error, got {other:?}"),
    }
}

fn transactions(s: &dyn Storage, start: Option<Tid>, stop: Option<Tid>) -> Vec<TransactionRecord> {
    s.iterator(start, stop)
        .expect("iterator")
        .collect::<Result<Vec<_>, _>>()
        .expect("iterated transaction")
}

fn tids_of(s: &dyn Storage, start: Option<Tid>, stop: Option<Tid>) -> Vec<Tid> {
    transactions(s, start, stop).iter().map(|t| t.tid).collect()
}

fn transaction(s: &dyn Storage, tid: Tid) -> TransactionRecord {
    let mut txns = transactions(s, Some(tid), Some(tid));
    assert_eq!(txns.len(), 1, "iterator({tid}, {tid})");
    txns.remove(0)
}

fn history_tids(s: &dyn Storage, oid: Oid) -> Vec<Tid> {
    s.history(oid, 100)
        .expect("history")
        .iter()
        .map(|h| h.tid)
        .collect()
}

// ---------------------------------------------------------------------------
// Basic storage
// ---------------------------------------------------------------------------

/// A stored record loads back byte for byte with the committing tid as its
/// serial; a second revision replaces it; an unknown oid is a PosKey.
pub fn store_load_round_trip(s: &dyn Storage) {
    let [a, b, unknown] = fresh_oids(s);
    let v1 = record(42, &[]);
    let t1 = commit(
        s,
        "create",
        &[(a, Tid::ZERO, v1.clone()), (b, Tid::ZERO, record(-7, &[a]))],
    );
    assert_eq!(s.load(a).unwrap(), (v1, t1));
    assert_eq!(s.load(b).unwrap(), (record(-7, &[a]), t1));
    let v2 = record(1 << 40, &[b]);
    let t2 = commit(s, "change", &[(a, t1, v2.clone())]);
    assert!(t2 > t1);
    assert_eq!(s.load(a).unwrap(), (v2, t2));
    assert_eq!(
        s.load(b).unwrap().1,
        t1,
        "an unchanged object keeps its serial"
    );
    assert_pos_key(s.load(unknown), "load of an oid never stored");
}

/// `finish` returns the tid, which is every record's serial and the new
/// `last_transaction`; nothing is visible after `vote` alone.
pub fn serial_is_the_finish_tid(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let before = s.last_transaction();
    let t = commit(s, "one", &[(a, Tid::ZERO, record(1, &[]))]);
    assert!(t > before, "new tid {t} not after last {before}");
    assert_eq!(s.last_transaction(), t);
    assert_eq!(s.load(a).unwrap().1, t);
    assert_eq!(s.history(a, 1).unwrap()[0].tid, t);

    let txn = s.tpc_begin(meta("voted, not finished")).unwrap();
    s.store(&txn, a, t, record(2, &[])).unwrap();
    s.vote(&txn).unwrap();
    assert_eq!(
        s.last_transaction(),
        t,
        "a voted transaction is not yet visible"
    );
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), t));
    let t2 = s.finish(&txn).unwrap();
    assert!(t2 > t);
    assert_eq!(s.last_transaction(), t2);
    assert_eq!(s.load(a).unwrap(), (record(2, &[]), t2));
}

/// A store based on a stale serial fails with a conflict naming the oid,
/// the committed serial and the one the writer expected; nothing changes.
pub fn stale_serial_conflicts(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let r = try_commit(s, meta("stale"), |txn| s.store(txn, a, t1, record(3, &[])));
    let c = expect_conflict(r, "store with a stale serial");
    assert_eq!(
        (c.oid, c.committed, c.expected, c.read_conflict),
        (a, t2, t1, false)
    );

    let r = try_commit(s, meta("as new"), |txn| {
        s.store(txn, a, Tid::ZERO, record(4, &[]))
    });
    let c = expect_conflict(r, "store of an existing object as new");
    assert_eq!((c.oid, c.committed, c.expected), (a, t2, Tid::ZERO));

    assert_eq!(s.load(a).unwrap(), (record(2, &[]), t2));
    assert_eq!(s.last_transaction(), t2);
}

/// A conflict that appears between `store` and `vote` (another
/// transaction committed the object meanwhile) is caught at vote.
pub fn conflict_detected_at_vote(s: &dyn Storage) {
    let [a, b] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);

    let txn = s.tpc_begin(meta("slow")).unwrap();
    s.store(&txn, a, t1, record(2, &[])).unwrap();
    s.store(&txn, b, Tid::ZERO, record(20, &[])).unwrap();
    let t2 = commit(
        s,
        "fast",
        &[(a, t1, record(3, &[])), (b, Tid::ZERO, record(30, &[]))],
    );
    let err = s.vote(&txn).unwrap_err();
    // Both stores conflict, and a client resolving conflicts needs both.
    let mut oids: Vec<Oid> = err.conflicts().iter().map(|c| c.oid).collect();
    oids.sort();
    assert_eq!(oids, vec![a, b], "{err}");
    let c = expect_conflict(Err::<(), _>(err), "vote after a concurrent commit");
    s.abort(&txn);
    assert_eq!(c.expected, if c.oid == a { t1 } else { Tid::ZERO });
    assert_eq!(c.committed, t2);
    assert!(!c.read_conflict);
    assert_eq!(s.load(a).unwrap(), (record(3, &[]), t2));
    assert_eq!(s.load(b).unwrap(), (record(30, &[]), t2));
    assert_eq!(s.last_transaction(), t2);
}

/// `check_current_serial` makes the commit fail with a read conflict when
/// the object changed, whether before the call or before the vote.
pub fn check_current_serial_read_conflict(s: &dyn Storage) {
    let [a, b] = fresh_oids(s);
    let t1 = commit(
        s,
        "v1",
        &[
            (a, Tid::ZERO, record(1, &[])),
            (b, Tid::ZERO, record(1, &[])),
        ],
    );

    let t2 = try_commit(s, meta("unchanged"), |txn| {
        s.check_current_serial(txn, a, t1)?;
        s.store(txn, b, t1, record(2, &[]))
    })
    .expect("check_current_serial of an unchanged object");
    assert_eq!(s.load(a).unwrap().1, t1, "checking does not write");

    let t3 = commit(s, "a changes", &[(a, t1, record(3, &[]))]);
    let r = try_commit(s, meta("stale at call"), |txn| {
        s.check_current_serial(txn, a, t1)?;
        s.store(txn, b, t2, record(4, &[]))
    });
    let c = expect_conflict(r, "check_current_serial of a changed object");
    assert_eq!(
        (c.oid, c.committed, c.expected, c.read_conflict),
        (a, t3, t1, true)
    );

    let txn = s.tpc_begin(meta("stale at vote")).unwrap();
    s.check_current_serial(&txn, a, t3).unwrap();
    s.store(&txn, b, t2, record(5, &[])).unwrap();
    let t4 = commit(s, "a changes again", &[(a, t3, record(6, &[]))]);
    let c = expect_conflict(s.vote(&txn), "vote after the checked object changed");
    s.abort(&txn);
    assert_eq!(
        (c.oid, c.committed, c.expected, c.read_conflict),
        (a, t4, t3, true)
    );
    assert_eq!(s.load(b).unwrap(), (record(2, &[]), t2));
}

/// Abort forgets the transaction's changes, before or after vote, and
/// releases the commit lock; the handle is dead afterwards.
pub fn abort_discards(s: &dyn Storage) {
    let [a, b] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);

    let txn = s.tpc_begin(meta("aborted")).unwrap();
    s.store(&txn, a, t1, record(2, &[])).unwrap();
    s.store(&txn, b, Tid::ZERO, record(2, &[])).unwrap();
    s.abort(&txn);
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), t1));
    assert_pos_key(
        s.load(b),
        "load of an object stored by an aborted transaction",
    );
    assert_eq!(s.last_transaction(), t1);
    assert!(matches!(s.finish(&txn), Err(StorageError::Transaction(_))));

    let txn = s.tpc_begin(meta("aborted after vote")).unwrap();
    s.store(&txn, a, t1, record(3, &[])).unwrap();
    s.vote(&txn).unwrap();
    s.abort(&txn);
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), t1));
    assert_eq!(s.last_transaction(), t1);

    // The commit lock was released: the next commit goes through.
    let t2 = commit(
        s,
        "after abort",
        &[(a, t1, record(4, &[])), (b, Tid::ZERO, record(4, &[]))],
    );
    assert_eq!(s.load(a).unwrap(), (record(4, &[]), t2));
}

/// Two-phase commit used wrongly fails with `Transaction` errors: an
/// unknown handle, a handle used after finish, a store after vote.
pub fn tpc_misuse_is_refused(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let bogus = TxnHandle::new(u64::MAX - 7);
    assert!(matches!(
        s.store(&bogus, a, Tid::ZERO, record(1, &[])),
        Err(StorageError::Transaction(_))
    ));
    assert!(matches!(s.vote(&bogus), Err(StorageError::Transaction(_))));
    assert!(matches!(
        s.finish(&bogus),
        Err(StorageError::Transaction(_))
    ));
    s.abort(&bogus);

    let txn = s.tpc_begin(meta("one")).unwrap();
    s.store(&txn, a, Tid::ZERO, record(1, &[])).unwrap();
    s.vote(&txn).unwrap();
    assert!(
        s.store(&txn, a, Tid::ZERO, record(2, &[])).is_err(),
        "store after vote"
    );
    let t = s.finish(&txn).unwrap();
    let same = TxnHandle::new(txn.id());
    assert!(matches!(
        s.store(&same, a, t, record(3, &[])),
        Err(StorageError::Transaction(_))
    ));
    assert!(matches!(s.finish(&same), Err(StorageError::Transaction(_))));
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), t));
}

/// Storing the same oid twice in one transaction writes one revision, the
/// last one stored.
pub fn same_oid_twice_in_one_transaction(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t = try_commit(s, meta("twice"), |txn| {
        s.store(txn, a, Tid::ZERO, record(1, &[]))?;
        s.store(txn, a, Tid::ZERO, record(2, &[]))
    })
    .unwrap();
    assert_eq!(s.load(a).unwrap(), (record(2, &[]), t));
    assert_eq!(history_tids(s, a), vec![t]);
    let txn = transaction(s, t);
    let records: Vec<_> = txn.records.iter().filter(|r| r.oid == a).collect();
    assert_eq!(records.len(), 1);
    assert_eq!(records[0].data.as_deref(), Some(record(2, &[]).as_slice()));
}

/// Several transactions may be open at once; on different oids both
/// commit, in the order they finish.
pub fn concurrent_transactions_both_commit(s: &dyn Storage) {
    let [a, b] = fresh_oids(s);
    let t1 = s.tpc_begin(meta("first begun")).unwrap();
    let t2 = s.tpc_begin(meta("second begun")).unwrap();
    s.store(&t1, a, Tid::ZERO, record(1, &[])).unwrap();
    s.store(&t2, b, Tid::ZERO, record(2, &[])).unwrap();
    let tid2 = s.finish(&t2).unwrap();
    let tid1 = s.finish(&t1).unwrap();
    assert!(tid2 < tid1, "tids follow the order of finishing");
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), tid1));
    assert_eq!(s.load(b).unwrap(), (record(2, &[]), tid2));
    assert_eq!(s.last_transaction(), tid1);
}

/// Commits that touch a common object (here: both check its serial) are
/// serialised: a second vote waits while the first transaction has voted
/// and not finished, and goes on once it finishes.
pub fn second_vote_waits_for_first_finish(s: &dyn Storage) {
    let [a, b, shared] = fresh_oids(s);
    // Both transactions depend on `shared` (a serial check), so they must
    // commit one after the other, whatever the engine locks.
    let t0 = commit(s, "shared", &[(shared, Tid::ZERO, record(0, &[]))]);
    let first = s.tpc_begin(meta("first")).unwrap();
    s.check_current_serial(&first, shared, t0).unwrap();
    s.store(&first, a, Tid::ZERO, record(1, &[])).unwrap();
    let second = s.tpc_begin(meta("second")).unwrap();
    s.check_current_serial(&second, shared, t0).unwrap();
    s.store(&second, b, Tid::ZERO, record(2, &[])).unwrap();
    s.vote(&first).unwrap();

    let (voted_tx, voted_rx) = mpsc::channel();
    let (waited, after, tid1, tid2) = std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let r = s.vote(&second);
            let _ = voted_tx.send(r.is_ok());
            r.and_then(|()| s.finish(&second))
        });
        let waited = voted_rx.recv_timeout(NOT_YET);
        // Finish whatever happened, so the worker can end.
        let tid1 = s.finish(&first);
        let after = voted_rx.recv_timeout(PROMPTLY);
        let tid2 = worker.join().expect("voting thread");
        (waited, after, tid1, tid2)
    });
    assert!(
        waited.is_err(),
        "the second vote returned while the first transaction held the commit lock"
    );
    assert_eq!(
        after,
        Ok(true),
        "the second vote did not go on after the first finish"
    );
    let (tid1, tid2) = (tid1.unwrap(), tid2.unwrap());
    assert!(tid1 < tid2);
    assert_eq!(s.load(a).unwrap().1, tid1);
    assert_eq!(s.load(b).unwrap().1, tid2);
}

/// Two transactions writing one object are serialised: the second vote
/// waits while the first has voted and not finished, then reports the
/// conflict with the first's commit. (For storages whose serial checks take
/// shared locks, where `second_vote_waits_for_first_finish` does not apply.)
pub fn writers_of_one_object_are_serialised(s: &dyn Storage) {
    let [shared] = fresh_oids(s);
    let t0 = commit(s, "shared", &[(shared, Tid::ZERO, record(0, &[]))]);
    let first = s.tpc_begin(meta("first")).unwrap();
    s.store(&first, shared, t0, record(1, &[])).unwrap();
    let second = s.tpc_begin(meta("second")).unwrap();
    s.store(&second, shared, t0, record(2, &[])).unwrap();
    s.vote(&first).unwrap();

    let (voted_tx, voted_rx) = mpsc::channel();
    let (waited, tid1, voted) = std::thread::scope(|scope| {
        let worker = scope.spawn(move || {
            let r = s.vote(&second);
            let _ = voted_tx.send(());
            s.abort(&second);
            r
        });
        let waited = voted_rx.recv_timeout(NOT_YET);
        let tid1 = s.finish(&first);
        let voted = worker.join().expect("voting thread");
        (waited, tid1, voted)
    });
    assert!(
        waited.is_err(),
        "the second vote returned while the first transaction held the object"
    );
    let tid1 = tid1.unwrap();
    let c = expect_conflict(voted, "the second vote after the first finished");
    assert_eq!((c.oid, c.committed, c.expected), (shared, tid1, t0));
    assert_eq!(s.load(shared).unwrap(), (record(1, &[]), tid1));
}

/// Transactions that only check the same object's serial (and write
/// different objects) vote at the same time: a checked object is read, not
/// written, so it serialises nothing (RelStorage's shared locks).
pub fn readers_of_one_object_vote_together(s: &dyn Storage) {
    let [a, b, shared] = fresh_oids(s);
    let t0 = commit(s, "shared", &[(shared, Tid::ZERO, record(0, &[]))]);
    let first = s.tpc_begin(meta("first")).unwrap();
    s.check_current_serial(&first, shared, t0).unwrap();
    s.store(&first, a, Tid::ZERO, record(1, &[])).unwrap();
    let second = s.tpc_begin(meta("second")).unwrap();
    s.check_current_serial(&second, shared, t0).unwrap();
    s.store(&second, b, Tid::ZERO, record(2, &[])).unwrap();
    s.vote(&first).unwrap();
    s.vote(&second).unwrap();
    let tid2 = s.finish(&second).unwrap();
    let tid1 = s.finish(&first).unwrap();
    assert!(tid2 < tid1);
    assert_eq!(s.load(a).unwrap().1, tid1);
    assert_eq!(s.load(b).unwrap().1, tid2);
    assert_eq!(s.load(shared).unwrap().1, t0);
}

// ---------------------------------------------------------------------------
// MVCC reads
// ---------------------------------------------------------------------------

/// `load_before` as in spec §5.4: `None` before creation, each revision
/// with its start and end, the current one with no end.
pub fn load_before_table(s: &dyn Storage) {
    let [a, unknown] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let t3 = commit(s, "v3", &[(a, t2, record(3, &[]))]);
    let rev = |before: Tid| {
        s.load_before(a, before)
            .unwrap()
            .map(|r| (record_value(&r.data), r.start, r.end))
    };

    assert_eq!(rev(t1), None, "before the creation");
    assert_eq!(rev(Tid(t1.0 + 1)), Some((Some(1), t1, Some(t2))));
    assert_eq!(rev(t2), Some((Some(1), t1, Some(t2))));
    assert_eq!(rev(t3), Some((Some(2), t2, Some(t3))));
    assert_eq!(rev(Tid(t3.0 + 1)), Some((Some(3), t3, None)));
    assert_eq!(rev(Tid::MAX), Some((Some(3), t3, None)));
    let full = s.load_before(a, t3).unwrap().unwrap();
    assert_eq!(full.data, record(2, &[]));
    assert_pos_key(
        s.load_before(unknown, Tid::MAX),
        "load_before of an unknown oid",
    );
}

/// `load_serial` finds exactly the revision a transaction wrote.
pub fn load_serial_finds_each_revision(s: &dyn Storage) {
    let [a, b, unknown] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "b", &[(b, Tid::ZERO, record(9, &[]))]);
    let t3 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    assert_eq!(s.load_serial(a, t1).unwrap(), record(1, &[]));
    assert_eq!(s.load_serial(a, t3).unwrap(), record(2, &[]));
    assert_pos_key(
        s.load_serial(a, t2),
        "load_serial of a tid that did not write the oid",
    );
    assert_pos_key(s.load_serial(unknown, t1), "load_serial of an unknown oid");
}

/// A reader at an old snapshot keeps seeing the old data while a writer
/// commits, and the current data only ever moves forward.
pub fn old_snapshot_reads_stay_stable(s: &dyn Storage) {
    const WRITES: i64 = 40;
    let [a] = fresh_oids(s);
    let t0 = commit(s, "v0", &[(a, Tid::ZERO, record(0, &[]))]);
    let snapshot = Tid(t0.0 + 1);
    let done = AtomicBool::new(false);
    std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut serial = t0;
            for i in 1..=WRITES {
                serial = commit(s, "write", &[(a, serial, record(i, &[]))]);
            }
            done.store(true, Ordering::Release);
        });
        let reader = scope.spawn(|| {
            let mut last_seen = 0;
            let mut reads = 0;
            while reads < 20_000 && !(done.load(Ordering::Acquire) && reads > 10) {
                reads += 1;
                let rev = s.load_before(a, snapshot).unwrap().expect("old revision");
                assert_eq!(
                    (rev.data.as_slice(), rev.start),
                    (record(0, &[]).as_slice(), t0)
                );
                assert!(rev.end.is_none_or(|end| end > t0));
                let (data, serial) = s.load(a).unwrap();
                let value = record_value(&data).unwrap();
                assert!(
                    value >= last_seen,
                    "current value went back from {last_seen} to {value}"
                );
                assert!(serial >= t0);
                last_seen = value;
            }
        });
        writer.join().expect("writer");
        reader.join().expect("reader");
    });
    assert_eq!(record_value(&s.load(a).unwrap().0), Some(WRITES));
    let rev = s.load_before(a, snapshot).unwrap().unwrap();
    assert_eq!(rev.data, record(0, &[]));
    assert!(rev.end.is_some());
}

// ---------------------------------------------------------------------------
// Oids, tids, metadata
// ---------------------------------------------------------------------------

/// New oids are unique, increasing, never the root, unused, and above any
/// oid stored explicitly; asking for too many at once is refused.
pub fn new_oids_unique_and_increasing(s: &dyn Storage) {
    let first = s.new_oids(5).unwrap();
    let second = s.new_oids(3).unwrap();
    assert_eq!((first.len(), second.len()), (5, 3));
    let all: Vec<Oid> = first.iter().chain(&second).copied().collect();
    assert!(all.windows(2).all(|w| w[0] < w[1]), "{all:?}");
    assert!(!all.contains(&Oid::ROOT));
    for oid in &all {
        assert_pos_key(s.load(*oid), "load of a fresh oid");
    }
    let high = Oid(all[all.len() - 1].0 + 1000);
    commit(s, "explicit oid", &[(high, Tid::ZERO, record(1, &[]))]);
    let next = s.new_oids(1).unwrap();
    assert!(next[0] > high, "{:?} not above stored {high:?}", next[0]);
    assert!(matches!(
        s.new_oids(zodb_storage::limits::NEW_OIDS_COUNT_MAX + 1),
        Err(StorageError::Limit(_))
    ));
}

/// Tids strictly increase; a tid given by the caller is used as is when
/// later than the last one, later tids come after it, and a given tid that
/// is not later is refused with a `Transaction` error.
pub fn tids_increase_and_given_tids(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let mut serial = Tid::ZERO;
    let mut tids = Vec::new();
    for i in 0..20 {
        serial = commit(s, "quick", &[(a, serial, record(i, &[]))]);
        tids.push(serial);
    }
    assert!(tids.windows(2).all(|w| w[0] < w[1]), "{tids:?}");

    let given = Tid(s.last_transaction().0 + 1_000_000);
    let mut m = meta("given tid");
    m.tid = Some(given);
    let t = try_commit(s, m, |txn| s.store(txn, a, serial, record(100, &[]))).unwrap();
    assert_eq!(t, given);
    assert_eq!(s.last_transaction(), given);
    assert_eq!(s.load(a).unwrap(), (record(100, &[]), given));

    for bad in [given, Tid(given.0 - 1)] {
        let mut m = meta("tid not later");
        m.tid = Some(bad);
        let r = try_commit(s, m, |txn| s.store(txn, a, given, record(101, &[])));
        assert!(
            matches!(r, Err(StorageError::Transaction(_))),
            "given tid {bad}: {r:?}"
        );
    }
    assert_eq!(s.load(a).unwrap(), (record(100, &[]), given));
    let next = commit(s, "after", &[(a, given, record(102, &[]))]);
    assert!(next > given);
}

/// User, description and extension are kept byte for byte (UTF-8 beyond
/// ASCII included) and shown by the iterator, history and the undo log.
pub fn transaction_metadata_round_trip(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    // {'note': 'ß'} as Python pickles it (`ZODB._compat.dumps(ext, 3)`, memo opcodes
    // included): what a ZEO server stores for the dict its client sends.
    let extension = vec![
        0x80, 0x03, 0x7d, 0x71, 0x00, 0x58, 0x04, 0x00, 0x00, 0x00, b'n', b'o', b't', b'e', 0x71,
        0x01, 0x58, 0x02, 0x00, 0x00, 0x00, 0xc3, 0x9f, 0x71, 0x02, 0x73, 0x2e,
    ];
    let user = "/acl_users Jürgen ☃".as_bytes().to_vec();
    let description = "Größe geändert\nzweite Zeile".as_bytes().to_vec();
    let m =
        TransactionMeta::new(user.clone(), description.clone()).with_extension(extension.clone());
    let t = try_commit(s, m, |txn| s.store(txn, a, Tid::ZERO, record(1, &[]))).unwrap();

    let txn = transaction(s, t);
    assert_eq!(
        (&txn.user, &txn.description, &txn.extension),
        (&user, &description, &extension)
    );
    assert_eq!(txn.status, TxnStatus::Committed);
    let h = &s.history(a, 1).unwrap()[0];
    assert_eq!(
        (&h.user, &h.description, &h.extension),
        (&user, &description, &extension)
    );
    let log = s.undo_log(0, 1).unwrap();
    assert_eq!(log[0].tid, t);
    assert_eq!(
        (&log[0].user, &log[0].description, &log[0].extension),
        (&user, &description, &extension)
    );

    let t2 = commit(s, "plain", &[(a, t, record(2, &[]))]);
    let txn = transaction(s, t2);
    assert_eq!(
        (txn.user.as_slice(), txn.description.as_slice()),
        (&b"conformance"[..], &b"plain"[..])
    );
    assert!(txn.extension.is_empty());
}

// ---------------------------------------------------------------------------
// History
// ---------------------------------------------------------------------------

/// History lists an object's revisions newest first, with each
/// transaction's metadata, time and record size, at most `size` of them.
pub fn history_newest_first(s: &dyn Storage) {
    let [a, unknown] = fresh_oids(s);
    let v = [record(1, &[]), record(1000, &[unknown]), record(-5, &[])];
    let mut serial = Tid::ZERO;
    let mut tids = Vec::new();
    for (i, data) in v.iter().enumerate() {
        let m = TransactionMeta::new(format!("user{i}"), format!("change {i}"));
        serial = try_commit(s, m, |txn| s.store(txn, a, serial, data.clone())).unwrap();
        tids.push(serial);
    }
    let h = s.history(a, 10).unwrap();
    assert_eq!(h.len(), 3);
    for (entry, i) in h.iter().zip([2usize, 1, 0]) {
        assert_eq!(entry.tid, tids[i]);
        assert_eq!(entry.user, format!("user{i}").into_bytes());
        assert_eq!(entry.description, format!("change {i}").into_bytes());
        assert_eq!(entry.size, v[i].len() as u64);
        assert!((entry.time - tids[i].unix_seconds()).abs() < 1e-3);
    }
    let h = s.history(a, 2).unwrap();
    assert_eq!(
        h.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![tids[2], tids[1]]
    );
    assert_pos_key(s.history(unknown, 1), "history of an unknown oid");
}

// ---------------------------------------------------------------------------
// Undo
// ---------------------------------------------------------------------------

/// Undoing the last change of objects brings back their previous data, as
/// a new revision that reuses the old data (history size 0).
pub fn undo_restores_previous_data(s: &dyn Storage) {
    undo_restores_previous_data_with(s, true);
}

/// The same for a storage without backpointers (RelStorage's tables): the
/// undo revision is a copy of the old data, with its size.
pub fn undo_restores_previous_data_by_copy(s: &dyn Storage) {
    undo_restores_previous_data_with(s, false);
}

fn undo_restores_previous_data_with(s: &dyn Storage, backpointers: bool) {
    let [a, b] = fresh_oids(s);
    let t1 = commit(
        s,
        "v1",
        &[
            (a, Tid::ZERO, record(1, &[])),
            (b, Tid::ZERO, record(10, &[])),
        ],
    );
    let t2 = commit(
        s,
        "v2",
        &[(a, t1, record(2, &[])), (b, t1, record(20, &[]))],
    );
    let (oids, u) = try_undo(s, t2).unwrap();
    assert_eq!(
        oids.iter().copied().collect::<HashSet<_>>(),
        HashSet::from([a, b])
    );
    assert!(u > t2);
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), u));
    assert_eq!(s.load(b).unwrap(), (record(10, &[]), u));
    let h = s.history(a, 10).unwrap();
    assert_eq!(h.iter().map(|e| e.tid).collect::<Vec<_>>(), vec![u, t2, t1]);
    if backpointers {
        assert_eq!(h[0].size, 0, "an undo revision reuses earlier data");
    } else {
        assert_eq!(
            h[0].size,
            record(1, &[]).len() as u64,
            "an undo copies the data"
        );
    }
    assert_eq!(h[1].size, record(2, &[]).len() as u64);
    let before = s.load_before(a, u).unwrap().unwrap();
    assert_eq!(
        (before.data, before.start, before.end),
        (record(2, &[]), t2, Some(u))
    );
    // The object can be changed again from the undo's serial.
    let t4 = commit(s, "v3", &[(a, u, record(3, &[]))]);
    assert_eq!(s.load(a).unwrap(), (record(3, &[]), t4));
}

/// Undoing the transaction that created an object deletes it: load fails,
/// older snapshots still see it, and undoing the undo brings it back.
pub fn undo_of_creation(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t1 = commit(s, "create", &[(a, Tid::ZERO, record(1, &[]))]);
    let (oids, u) = try_undo(s, t1).unwrap();
    assert_eq!(oids, vec![a]);
    assert_pos_key(s.load(a), "load after the creation was undone");
    assert_pos_key(
        s.load_before(a, Tid::MAX),
        "load_before(max) after the creation was undone",
    );
    let old = s.load_before(a, u).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(1, &[]), t1, Some(u))
    );
    assert_eq!(s.load_before(a, t1).unwrap(), None);
    let h = s.history(a, 10).unwrap();
    assert_eq!(
        h.iter().map(|e| (e.tid, e.size)).collect::<Vec<_>>(),
        vec![(u, 0), (t1, record(1, &[]).len() as u64)]
    );
    // A store as if new conflicts: the object's serial is the deletion's.
    let r = try_commit(s, meta("recreate"), |txn| {
        s.store(txn, a, Tid::ZERO, record(5, &[]))
    });
    assert_eq!(
        expect_conflict(r, "store over a deletion as new").committed,
        u
    );

    let (_, u2) = try_undo(s, u).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), u2));
}

/// An undo whose objects were changed later fails with an undo error and
/// changes nothing, for a plain change and for a creation alike.
pub fn undo_conflicting_with_later_change_fails(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t1 = commit(s, "create", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let t3 = commit(s, "v3", &[(a, t2, record(3, &[]))]);
    assert_undo_error(try_undo(s, t2), "undo of a change overwritten later");
    assert_undo_error(try_undo(s, t1), "undo of a creation changed later");
    assert_eq!(s.load(a).unwrap(), (record(3, &[]), t3));
    assert_eq!(s.last_transaction(), t3);
}

/// Undo of an undo redoes the change, repeatedly; undoing the same
/// transaction twice fails the second time.
pub fn undo_of_undo(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let (_, u1) = try_undo(s, t2).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), u1));
    assert_undo_error(try_undo(s, t2), "undoing the same transaction twice");
    let (_, u2) = try_undo(s, u1).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(2, &[]), u2));
    let (_, u3) = try_undo(s, u2).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), u3));
    assert_eq!(history_tids(s, a), vec![u3, u2, u1, t2, t1]);
}

/// An unknown transaction id cannot be undone.
pub fn undo_of_unknown_transaction_fails(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    assert_undo_error(try_undo(s, Tid(t1.0 - 1)), "undo of an unknown tid");
    assert_undo_error(try_undo(s, Tid(t1.0 + 1)), "undo of a future tid");
    assert_eq!(s.last_transaction(), t1);
}

/// The undo log lists undoable transactions newest first, sliced by
/// `first..last`, with their metadata and a Python-style undo id.
pub fn undo_log_order_and_slicing(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let mut serial = Tid::ZERO;
    let mut tids = Vec::new();
    for i in 0..4 {
        serial = commit(s, &format!("d{i}"), &[(a, serial, record(i, &[]))]);
        tids.push(serial);
    }
    let log = s.undo_log(0, 4).unwrap();
    assert_eq!(
        log.iter().map(|e| e.tid).collect::<Vec<_>>(),
        vec![tids[3], tids[2], tids[1], tids[0]]
    );
    for (entry, i) in log.iter().zip([3, 2, 1, 0]) {
        assert_eq!(entry.description, format!("d{i}").into_bytes());
        assert_eq!(entry.user, b"conformance".to_vec());
        assert!(entry.size > 0);
        assert!((entry.time - entry.tid.unix_seconds()).abs() < 1e-3);
        assert_eq!(parse_undo_id(&undo_id(entry.tid)), Some(entry.tid));
    }
    let tids_of_log = |first, last| {
        s.undo_log(first, last)
            .unwrap()
            .iter()
            .map(|e| e.tid)
            .collect::<Vec<_>>()
    };
    assert_eq!(tids_of_log(1, 3), vec![tids[2], tids[1]]);
    assert_eq!(tids_of_log(0, 1), vec![tids[3]]);
    assert_eq!(tids_of_log(2, 2), Vec::<Tid>::new());
    // An undo is itself an undoable transaction, and the newest.
    let (_, u) = try_undo(s, tids[3]).unwrap();
    assert_eq!(tids_of_log(0, 2), vec![u, tids[3]]);
}

// ---------------------------------------------------------------------------
// Iterator
// ---------------------------------------------------------------------------

/// The iterator yields transactions in tid order with `start` and `stop`
/// both inclusive; either may be open.
pub fn iterator_range_semantics(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let mut serial = Tid::ZERO;
    let mut t = Vec::new();
    for i in 0..4 {
        serial = commit(s, &format!("t{i}"), &[(a, serial, record(i, &[]))]);
        t.push(serial);
    }
    assert_eq!(tids_of(s, Some(t[1]), Some(t[2])), vec![t[1], t[2]]);
    assert_eq!(tids_of(s, Some(t[1]), None), vec![t[1], t[2], t[3]]);
    assert_eq!(tids_of(s, Some(t[2]), Some(t[2])), vec![t[2]]);
    assert_eq!(
        tids_of(s, Some(Tid(t[0].0 + 1)), Some(Tid(t[2].0 - 1))),
        vec![t[1]]
    );
    assert!(tids_of(s, Some(Tid(t[3].0 + 1)), None).is_empty());
    assert!(tids_of(s, Some(t[2]), Some(t[1])).is_empty());
    let upto = tids_of(s, None, Some(t[2]));
    assert!(upto.ends_with(&[t[0], t[1], t[2]]), "{upto:?}");
    let all = tids_of(s, None, None);
    assert!(all.windows(2).all(|w| w[0] < w[1]));
    assert!(all.ends_with(&t));
    assert_eq!(all.len(), upto.len() + 1);
}

/// The iterator's records: data of each store, one record per oid, the
/// reused data and its source tid for an undo, `None` for a deletion.
pub fn iterator_records(s: &dyn Storage) {
    iterator_records_with(s, true);
}

/// The same for a storage without backpointers: an undo's record holds the
/// copied data and names no earlier transaction.
pub fn iterator_records_by_copy(s: &dyn Storage) {
    iterator_records_with(s, false);
}

fn iterator_records_with(s: &dyn Storage, backpointers: bool) {
    let [a, b, c] = fresh_oids(s);
    let t1 = commit(
        s,
        "ab",
        &[
            (a, Tid::ZERO, record(1, &[b])),
            (b, Tid::ZERO, record(2, &[])),
        ],
    );
    let t2 = commit(s, "a2", &[(a, t1, record(3, &[]))]);
    let (_, u) = try_undo(s, t2).unwrap();
    let t3 = commit(s, "c", &[(c, Tid::ZERO, record(4, &[]))]);
    let (_, uc) = try_undo(s, t3).unwrap();

    let txn = transaction(s, t1);
    assert_eq!(txn.status, TxnStatus::Committed);
    assert_eq!(txn.description, b"ab".to_vec());
    let mut records: Vec<_> = txn
        .records
        .iter()
        .map(|r| (r.oid, r.tid, r.data.clone(), r.data_txn))
        .collect();
    records.sort_by_key(|r| r.0);
    assert_eq!(
        records,
        vec![
            (a, t1, Some(record(1, &[b])), None),
            (b, t1, Some(record(2, &[])), None),
        ]
    );
    let txn = transaction(s, u);
    assert_eq!(txn.records.len(), 1);
    let r = &txn.records[0];
    assert_eq!(
        (r.oid, r.tid, r.data.clone(), r.data_txn),
        (a, u, Some(record(1, &[b])), backpointers.then_some(t1))
    );
    let txn = transaction(s, uc);
    assert_eq!(txn.records.len(), 1);
    assert_eq!((txn.records[0].oid, txn.records[0].data.clone()), (c, None));
}

/// `delete_object` writes a deletion after checking the serial: load
/// fails, older snapshots still work, a stale serial conflicts.
pub fn delete_object_makes_object_absent(s: &dyn Storage) {
    let [a, unknown] = fresh_oids(s);
    let t1 = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let r = try_commit(s, meta("stale delete"), |txn| s.delete_object(txn, a, t1));
    assert_eq!(
        expect_conflict(r, "delete with a stale serial").committed,
        t2
    );
    let r = try_commit(s, meta("delete unknown"), |txn| {
        s.delete_object(txn, unknown, Tid::ZERO)
    });
    assert!(r.is_err(), "deleting an object that never existed: {r:?}");

    let d = try_commit(s, meta("delete"), |txn| s.delete_object(txn, a, t2)).unwrap();
    assert_pos_key(s.load(a), "load after delete_object");
    let old = s.load_before(a, d).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(2, &[]), t2, Some(d))
    );
    assert_eq!(history_tids(s, a), vec![d, t2, t1]);
    assert_eq!(s.history(a, 1).unwrap()[0].size, 0);
    let txn = transaction(s, d);
    assert_eq!((txn.records[0].oid, txn.records[0].data.clone()), (a, None));
    // A new revision must be based on the deletion.
    let r = try_commit(s, meta("as new"), |txn| {
        s.store(txn, a, Tid::ZERO, record(3, &[]))
    });
    assert_eq!(
        expect_conflict(r, "store over a deletion as new").committed,
        d
    );
    let t3 = commit(s, "revive", &[(a, d, record(3, &[]))]);
    assert_eq!(s.load(a).unwrap(), (record(3, &[]), t3));
}

// ---------------------------------------------------------------------------
// Pack
// ---------------------------------------------------------------------------

/// Pack keeps each object's revision current at the pack time and every
/// later one, drops older revisions, marks the transactions up to the pack
/// time packed (not undoable), and leaves later transactions undoable.
pub fn pack_keeps_current_and_later_history(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t1 = commit(
        s,
        "root and a",
        &[
            (Oid::ROOT, root_serial, record(0, &[a])),
            (a, Tid::ZERO, record(1, &[])),
        ],
    );
    let t2 = commit(s, "a2", &[(a, t1, record(2, &[]))]);
    let t3 = commit(s, "a3", &[(a, t2, record(3, &[]))]);
    s.pack(t2, true).unwrap();

    assert_pos_key(
        s.load_serial(a, t1),
        "load_serial of a revision removed by pack",
    );
    assert_eq!(s.load_serial(a, t2).unwrap(), record(2, &[]));
    assert_eq!(s.load(a).unwrap(), (record(3, &[]), t3));
    assert_eq!(s.load(Oid::ROOT).unwrap(), (record(0, &[a]), t1));
    assert_eq!(history_tids(s, a), vec![t3, t2]);
    let old = s.load_before(a, t3).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(2, &[]), t2, Some(t3))
    );
    assert_eq!(s.load_before(a, t2).unwrap(), None);

    // t1 survives with the root's record only, t2 with a's; both packed.
    let t1_txn = transaction(s, t1);
    assert_eq!(t1_txn.status, TxnStatus::Packed);
    assert_eq!(
        t1_txn.records.iter().map(|r| r.oid).collect::<Vec<_>>(),
        vec![Oid::ROOT]
    );
    assert_eq!(transaction(s, t2).status, TxnStatus::Packed);
    assert_eq!(transaction(s, t3).status, TxnStatus::Committed);
    let log: Vec<Tid> = s.undo_log(0, 100).unwrap().iter().map(|e| e.tid).collect();
    assert_eq!(log, vec![t3], "the undo log stops at packed transactions");
    assert_undo_error(try_undo(s, t2), "undo of a packed transaction");

    let (_, u) = try_undo(s, t3).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(2, &[]), u));
}

/// With gc, objects unreachable from the root at the pack time lose their
/// revisions up to it (and disappear if they have no later ones); weak
/// references keep nothing alive; reachable objects stay.
pub fn pack_gc_removes_unreachable(s: &dyn Storage) {
    let [a, b, garbage, weak, late] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t1 = commit(
        s,
        "graph",
        &[
            (
                Oid::ROOT,
                root_serial,
                record_with_weak_refs(0, &[a], &[weak]),
            ),
            (a, Tid::ZERO, record(1, &[b])),
            (b, Tid::ZERO, record(2, &[])),
            (garbage, Tid::ZERO, record(3, &[a])),
            (weak, Tid::ZERO, record(4, &[])),
            (late, Tid::ZERO, record(5, &[])),
        ],
    );
    let len_before = s.len();
    let pack_time = commit(s, "a2", &[(a, t1, record(10, &[b]))]);
    let t3 = commit(
        s,
        "late changes after the pack time",
        &[(late, t1, record(6, &[]))],
    );
    s.pack(pack_time, true).unwrap();

    assert_eq!(s.load(Oid::ROOT).unwrap().1, t1);
    assert_eq!(s.load(a).unwrap(), (record(10, &[b]), pack_time));
    assert_eq!(s.load(b).unwrap(), (record(2, &[]), t1));
    assert_pos_key(
        s.load(garbage),
        "load of an unreachable object after a GC pack",
    );
    assert_pos_key(
        s.history(garbage, 1),
        "history of an object removed by a GC pack",
    );
    assert_pos_key(s.load(weak), "load of an object only weakly referenced");
    // Unreachable at the pack time but changed after it: the later revision
    // stays, the one before the pack time goes.
    assert_eq!(s.load(late).unwrap(), (record(6, &[]), t3));
    assert_eq!(history_tids(s, late), vec![t3]);
    assert_eq!(s.len(), len_before - 2);
}

/// Without gc, unreachable objects keep their current revision.
pub fn pack_without_gc_keeps_unreachable(s: &dyn Storage) {
    let [a, garbage] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t1 = commit(
        s,
        "graph",
        &[
            (Oid::ROOT, root_serial, record(0, &[a])),
            (a, Tid::ZERO, record(1, &[])),
            (garbage, Tid::ZERO, record(2, &[])),
        ],
    );
    let t2 = commit(s, "garbage2", &[(garbage, t1, record(3, &[]))]);
    let len_before = s.len();
    s.pack(t2, false).unwrap();
    assert_eq!(s.load(garbage).unwrap(), (record(3, &[]), t2));
    assert_eq!(history_tids(s, garbage), vec![t2]);
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), t1));
    assert_eq!(s.len(), len_before);
}

/// A GC pack refuses to run while a reachable object refers to an object
/// that does not exist, and loses nothing.
pub fn pack_refuses_dangling_reference(s: &dyn Storage) {
    let [a, missing] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t1 = commit(
        s,
        "dangling",
        &[
            (Oid::ROOT, root_serial, record(0, &[a])),
            (a, Tid::ZERO, record(1, &[missing])),
        ],
    );
    let t2 = commit(s, "a2", &[(a, t1, record(2, &[missing]))]);
    let r = s.pack(t2, true);
    assert!(matches!(r, Err(StorageError::Pack(_))), "{r:?}");
    assert_eq!(s.load(a).unwrap(), (record(2, &[missing]), t2));
    assert_eq!(s.load_serial(a, t1).unwrap(), record(1, &[missing]));
    assert_eq!(history_tids(s, a), vec![t2, t1]);
    assert_eq!(transaction(s, t1).status, TxnStatus::Committed);
    // Without gc the same pack goes through.
    s.pack(t2, false).unwrap();
    assert_pos_key(s.load_serial(a, t1), "old revision after a non-GC pack");
}

/// A revision before the pack time that a later undo reuses the data of
/// is kept (spec §13.2 step 2): the undo revision still loads and names
/// it, and its transaction keeps that record. It is kept only as data:
/// as in FileStorage, the object's history before the pack time is the
/// pack-time revision alone.
pub fn pack_keeps_data_reused_by_later_undo(s: &dyn Storage) {
    pack_keeps_data_reused_by_later_undo_with(s, true);
}

fn pack_keeps_data_reused_by_later_undo_with(s: &dyn Storage, backpointers: bool) {
    let [a] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t0 = commit(
        s,
        "v0",
        &[
            (Oid::ROOT, root_serial, record(0, &[a])),
            (a, Tid::ZERO, record(0, &[])),
        ],
    );
    let t1 = commit(s, "v1", &[(a, t0, record(1, &[]))]);
    let t2 = commit(s, "v2", &[(a, t1, record(2, &[]))]);
    let (_, u) = try_undo(s, t2).unwrap();
    s.pack(t2, true).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(1, &[]), u));
    assert_pos_key(
        s.load_serial(a, t0),
        "a revision neither current nor reused",
    );
    assert_eq!(s.load_serial(a, t2).unwrap(), record(2, &[]));
    assert_eq!(history_tids(s, a), vec![u, t2]);
    assert_eq!(s.load_before(a, t2).unwrap(), None);

    let txn = transaction(s, u);
    assert_eq!(txn.status, TxnStatus::Committed);
    if !backpointers {
        // The undo copied the data: nothing before the pack time is needed,
        // and t1, left with no record, is no longer listed.
        assert_eq!(
            (txn.records[0].data.clone(), txn.records[0].data_txn),
            (Some(record(1, &[])), None)
        );
        assert!(
            tids_of(s, Some(t1), Some(t1)).is_empty(),
            "t1 emptied by pack"
        );
        let (_, redo) = try_undo(s, u).unwrap();
        assert_eq!(s.load(a).unwrap(), (record(2, &[]), redo));
        return;
    }
    assert_eq!(
        (txn.records[0].data.clone(), txn.records[0].data_txn),
        (Some(record(1, &[])), Some(t1))
    );
    let kept = transaction(s, t1);
    assert_eq!(kept.status, TxnStatus::Packed);
    let records: Vec<_> = kept
        .records
        .iter()
        .map(|r| (r.oid, r.data.clone()))
        .collect();
    assert_eq!(records, vec![(a, Some(record(1, &[])))]);

    let (_, redo) = try_undo(s, u).unwrap();
    assert_eq!(s.load(a).unwrap(), (record(2, &[]), redo));
}

/// The same for a storage without backpointers: the undo holds a copy of
/// the data, so pack keeps nothing before the pack time for it.
pub fn pack_after_undo_by_copy(s: &dyn Storage) {
    pack_keeps_data_reused_by_later_undo_with(s, false);
}

/// Packing while another thread commits: both succeed and every committed
/// change is there afterwards.
pub fn pack_while_committing(s: &dyn Storage) {
    const WRITES: i64 = 30;
    let [w, x] = fresh_oids(s);
    let root_serial = current_serial(s, Oid::ROOT);
    let t0 = commit(
        s,
        "start",
        &[
            (Oid::ROOT, root_serial, record(0, &[w, x])),
            (w, Tid::ZERO, record(0, &[])),
            (x, Tid::ZERO, record(0, &[])),
        ],
    );
    let last = std::thread::scope(|scope| {
        let writer = scope.spawn(|| {
            let mut serial = t0;
            for i in 1..=WRITES {
                serial = commit(s, "write", &[(w, serial, record(i, &[]))]);
            }
            serial
        });
        for _ in 0..5 {
            s.pack(s.last_transaction(), true)
                .expect("pack during commits");
        }
        writer.join().expect("writer")
    });
    s.pack(s.last_transaction(), true).unwrap();
    assert_eq!(s.load(w).unwrap(), (record(WRITES, &[]), last));
    assert_eq!(s.load(x).unwrap(), (record(0, &[]), t0));
    assert_eq!(s.load(Oid::ROOT).unwrap(), (record(0, &[w, x]), t0));
    assert_eq!(history_tids(s, w), vec![last]);
}

// ---------------------------------------------------------------------------
// Close
// ---------------------------------------------------------------------------

/// After `close`, every operation fails with `Closed`.
pub fn closed_storage_refuses(s: &dyn Storage) {
    let [a] = fresh_oids(s);
    let t = commit(s, "v1", &[(a, Tid::ZERO, record(1, &[]))]);
    s.close().unwrap();
    let closed = |r: Result<(), StorageError>, what: &str| {
        assert!(
            matches!(r, Err(StorageError::Closed)),
            "{what} after close: {r:?}"
        );
    };
    closed(s.load(a).map(drop), "load");
    closed(s.load_before(a, Tid::MAX).map(drop), "load_before");
    closed(s.load_serial(a, t).map(drop), "load_serial");
    closed(s.new_oids(1).map(drop), "new_oids");
    closed(s.tpc_begin(meta("late")).map(drop), "tpc_begin");
    closed(s.history(a, 1).map(drop), "history");
    closed(s.undo_log(0, 1).map(drop), "undo_log");
    closed(s.iterator(None, None).map(drop), "iterator");
    closed(s.pack(t, false), "pack");
}

/// Expands into one `#[test]` per conformance check, each on a fresh
/// storage from `$make` (a closure returning something that dereferences
/// to a `Storage`, e.g. `Arc<dyn Storage>`).
#[macro_export]
macro_rules! storage_conformance_tests {
    // Every check.
    ($make:expr) => {
        $crate::storage_conformance_tests!(always_gc: $make);
        $crate::storage_conformance_tests!(@each $make;
            pack_without_gc_keeps_unreachable,
            pack_refuses_dangling_reference,
        );
    };
    // Storages in RelStorage's tables (PostgreSQL): no backpointers, so an
    // undo copies data; serial checks take shared locks, so transactions
    // that only check one object do not wait for each other.
    (relstorage_layout: $make:expr) => {
        $crate::storage_conformance_tests!(@each $make;
            store_load_round_trip,
            serial_is_the_finish_tid,
            stale_serial_conflicts,
            conflict_detected_at_vote,
            check_current_serial_read_conflict,
            abort_discards,
            tpc_misuse_is_refused,
            same_oid_twice_in_one_transaction,
            concurrent_transactions_both_commit,
            writers_of_one_object_are_serialised,
            readers_of_one_object_vote_together,
            load_before_table,
            load_serial_finds_each_revision,
            old_snapshot_reads_stay_stable,
            new_oids_unique_and_increasing,
            tids_increase_and_given_tids,
            transaction_metadata_round_trip,
            history_newest_first,
            undo_restores_previous_data_by_copy,
            undo_of_creation,
            undo_conflicting_with_later_change_fails,
            undo_of_undo,
            undo_of_unknown_transaction_fails,
            undo_log_order_and_slicing,
            iterator_range_semantics,
            iterator_records_by_copy,
            delete_object_makes_object_absent,
            pack_keeps_current_and_later_history,
            pack_gc_removes_unreachable,
            pack_without_gc_keeps_unreachable,
            pack_refuses_dangling_reference,
            pack_after_undo_by_copy,
            pack_while_committing,
            closed_storage_refuses,
        );
    };
    // Storages that always pack with garbage collection (a ZEO client:
    // the protocol's `pack` has no way to say otherwise) skip the two
    // checks that pack with `gc = false`.
    (always_gc: $make:expr) => {
        $crate::storage_conformance_tests!(always_gc_first_conflict_only: $make);
        $crate::storage_conformance_tests!(@each $make; conflict_detected_at_vote);
    };
    // ... and storages whose vote reports only the first conflict (Python's
    // ZEO server in its default mode) skip `conflict_detected_at_vote`.
    (always_gc_first_conflict_only: $make:expr) => {
        $crate::storage_conformance_tests!(@each $make;
            store_load_round_trip,
            serial_is_the_finish_tid,
            stale_serial_conflicts,
            check_current_serial_read_conflict,
            abort_discards,
            tpc_misuse_is_refused,
            same_oid_twice_in_one_transaction,
            concurrent_transactions_both_commit,
            second_vote_waits_for_first_finish,
            load_before_table,
            load_serial_finds_each_revision,
            old_snapshot_reads_stay_stable,
            new_oids_unique_and_increasing,
            tids_increase_and_given_tids,
            transaction_metadata_round_trip,
            history_newest_first,
            undo_restores_previous_data,
            undo_of_creation,
            undo_conflicting_with_later_change_fails,
            undo_of_undo,
            undo_of_unknown_transaction_fails,
            undo_log_order_and_slicing,
            iterator_range_semantics,
            iterator_records,
            delete_object_makes_object_absent,
            pack_keeps_current_and_later_history,
            pack_gc_removes_unreachable,
            pack_keeps_data_reused_by_later_undo,
            pack_while_committing,
            closed_storage_refuses,
        );
    };
    (@each $make:expr; $($check:ident),* $(,)?) => {
        $(
            #[test]
            fn $check() {
                let make = $make;
                let storage = make();
                $crate::conformance::$check(&*storage);
            }
        )*
    };
}
