//! Two storages on one database, as two processes would be: a commit made
//! through one is reported to the other's listeners at its next `sync`, in
//! tid order, or at once when the other listens (`LISTEN/NOTIFY`), and
//! conflicts are detected across them.

use std::sync::Arc;
use std::time::Duration;

use crate::Heard;
use test_support::conformance::{commit, meta, record, try_commit};
use test_support::pg::fresh_database;
use zodb_pg::PgStorage;
use zodb_storage::{InvalidationListener, Storage, Tid};

#[test]
fn commits_of_another_storage_are_heard_at_sync() {
    let db = fresh_database();
    let one = PgStorage::create(&db.url).unwrap();
    let two = PgStorage::open(&db.url).unwrap();
    let heard = Arc::new(Heard::default());
    let weak: std::sync::Weak<dyn InvalidationListener> = Arc::downgrade(&heard) as _;
    two.add_listener(weak);

    let [a, b] = one.new_oids(2).unwrap().try_into().unwrap();
    let t1 = commit(&one, "a", &[(a, Tid::ZERO, record(1, &[]))]);
    let t2 = commit(
        &one,
        "b",
        &[(b, Tid::ZERO, record(2, &[])), (a, t1, record(3, &[]))],
    );
    assert!(heard.0.lock().unwrap().is_empty(), "nothing before sync");
    assert_eq!(two.last_transaction(), Tid::ZERO);
    two.sync().unwrap();
    assert_eq!(
        *heard.0.lock().unwrap(),
        vec![(t1, vec![a]), (t2, vec![a, b])]
    );
    assert_eq!(two.last_transaction(), t2);
    assert_eq!(two.load(a).unwrap(), (record(3, &[]), t2));

    // The other storage's oids do not collide with the first one's.
    let more = two.new_oids(20).unwrap();
    assert!(!more.contains(&a) && !more.contains(&b));

    // A write based on what `two` read before `one` changed it conflicts.
    let t3 = commit(&one, "a again", &[(a, t2, record(4, &[]))]);
    let err = try_commit(&two, meta("stale"), |txn| {
        two.store(txn, a, t2, record(5, &[]))
    })
    .unwrap_err();
    let c = err.as_conflict().expect("a conflict");
    assert_eq!((c.oid, c.committed, c.expected), (a, t3, t2));
}

/// A storage that listens hears of another's commits without calling
/// `sync`: the commit's `NOTIFY` wakes its poll.
#[test]
fn a_listening_storage_hears_commits_without_sync() {
    let db = fresh_database();
    let one = PgStorage::create(&db.url).unwrap();
    let two = PgStorage::open(&db.url).unwrap();
    let heard = Arc::new(Heard::default());
    let weak: std::sync::Weak<dyn InvalidationListener> = Arc::downgrade(&heard) as _;
    two.add_listener(weak);
    two.listen_for_commits();

    let [a] = one.new_oids(1).unwrap().try_into().unwrap();
    let mut expected = Vec::new();
    let mut serial = Tid::ZERO;
    // Several commits: the first may come before the `LISTEN` (found by its
    // first poll), the later ones only by their notifications.
    for n in 0..3 {
        serial = commit(&one, "a", &[(a, serial, record(n, &[]))]);
        expected.push((serial, vec![a]));
        let guard = heard.0.lock().unwrap();
        let (guard, timeout) = heard
            .1
            .wait_timeout_while(guard, Duration::from_secs(10), |h| h.len() < expected.len())
            .unwrap();
        assert!(!timeout.timed_out(), "commit {n} not heard: {guard:?}");
        assert_eq!(*guard, expected);
    }
    assert_eq!(two.last_transaction(), serial);
}

/// The cache of object states answers a storage's loads as of its last poll,
/// never past it: a state another storage replaced is served for snapshots
/// before the replacement, and the new one once a poll has reported it (or to
/// a load asking for everything, which goes to the database).
#[test]
fn cached_states_are_served_as_of_the_last_poll_and_replaced_by_the_next() {
    let db = fresh_database();
    let one = PgStorage::create(&db.url).unwrap();
    let two = PgStorage::open(&db.url).unwrap();
    let [a] = one.new_oids(1).unwrap().try_into().unwrap();
    let t1 = commit(&one, "a", &[(a, Tid::ZERO, record(1, &[]))]);
    two.sync().unwrap();
    let before = Tid(two.last_transaction().0 + 1);
    assert_eq!(
        two.load_before(a, before).unwrap().unwrap().data,
        record(1, &[])
    );
    // Now in two's cache; one replaces it.
    let t2 = commit(&one, "a again", &[(a, t1, record(2, &[]))]);
    let old = two.load_before(a, before).unwrap().unwrap();
    assert_eq!((old.data, old.start), (record(1, &[]), t1));
    let newest = two.load_before(a, Tid::MAX).unwrap().unwrap();
    assert_eq!((newest.data, newest.start), (record(2, &[]), t2));
    two.sync().unwrap();
    let now = two
        .load_before(a, Tid(two.last_transaction().0 + 1))
        .unwrap()
        .unwrap();
    assert_eq!((now.data, now.start), (record(2, &[]), t2));
    // The older snapshot still reads the older state (from the database).
    assert_eq!(
        two.load_before(a, before).unwrap().unwrap().data,
        record(1, &[])
    );
}

/// `with_connections` bounds the connections a storage opens: eight threads loading
/// at once through a storage of two never have more than two sessions on the server
/// (counted by the storage's application name), and every load is answered.
#[test]
fn a_storage_opens_no_more_connections_than_it_was_given() {
    let db = fresh_database();
    let writer = PgStorage::create(&db.url).unwrap();
    let [a] = writer.new_oids(1).unwrap().try_into().unwrap();
    let t1 = commit(&writer, "a", &[(a, Tid::ZERO, record(1, &[]))]);
    let app = "bbru-pool-test";
    let storage = PgStorage::open(&format!("{}?application_name={app}", db.url))
        .unwrap()
        .with_connections(2)
        .with_cache_bytes(0);
    let sessions = format!(
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = '{app}' \
         AND datname = '{}'",
        db.name
    );
    let stop = std::sync::atomic::AtomicBool::new(false);
    let most = std::thread::scope(|scope| {
        for _ in 0..8 {
            scope.spawn(|| {
                while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                    let loaded = storage.load_before(a, Tid(t1.0 + 1)).unwrap().unwrap();
                    assert_eq!(loaded.data, record(1, &[]));
                }
            });
        }
        let mut most = 0;
        for _ in 0..40 {
            most = most.max(db.query_i64(&sessions));
            std::thread::sleep(Duration::from_millis(25));
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        most
    });
    assert!(
        (1..=2).contains(&most),
        "{most} sessions for a storage of 2"
    );
}
