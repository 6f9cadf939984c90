//! Read replicas: a hot standby of the test server answers a storage's loads
//! once it has replayed the commits they need; while it lags (replay paused)
//! the primary answers, so a load never sees a state older than its
//! snapshot; and a standby that goes away leaves the loads to the primary.

use std::time::{Duration, Instant};

use test_support::conformance::{commit, record};
use test_support::pg::{fresh_database, standby};
use zodb_pg::PgStorage;
use zodb_storage::{Storage, Tid};

const NEWEST: &str = r#"SELECT COALESCE(MAX(tid), 0) FROM "transaction""#;

#[test]
fn a_standby_answers_loads_it_has_caught_up_with_and_the_primary_the_others() {
    let db = fresh_database();
    let writer = PgStorage::create(&db.url).unwrap();
    let [a, b] = writer.new_oids(2).unwrap().try_into().unwrap();
    let t1 = commit(
        &writer,
        "a and b",
        &[
            (a, Tid::ZERO, record(1, &[])),
            (b, Tid::ZERO, record(10, &[])),
        ],
    );
    let replica = standby();
    let wait_for = |tid: Tid| {
        let deadline = Instant::now() + Duration::from_secs(30);
        while (replica.query_i64(&db.name, NEWEST) as u64) < tid.0 {
            assert!(
                Instant::now() < deadline,
                "the standby never replayed {tid}"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let reader = PgStorage::open(&db.url)
        .unwrap()
        .with_replicas(&[replica.database(&db.name)])
        .unwrap();

    // Caught up: the standby answers.
    let t2 = commit(&writer, "a = 2", &[(a, t1, record(2, &[]))]);
    wait_for(t2);
    reader.sync().unwrap();
    let snapshot = Tid(reader.last_transaction().0 + 1);
    assert_eq!(
        reader.load_before(a, snapshot).unwrap().unwrap().data,
        record(2, &[])
    );
    let on_standby = replica.query_i64(
        &db.name,
        "SELECT count(*) FROM pg_stat_activity WHERE application_name = 'bbru-replica'",
    );
    assert!(on_standby >= 1, "the load did not go to the standby");

    // Lagging: replay paused, a commit the standby does not have.
    replica.execute("SELECT pg_wal_replay_pause()");
    let t3 = commit(&writer, "a = 3", &[(a, t2, record(3, &[]))]);
    reader.sync().unwrap();
    assert_eq!(reader.last_transaction(), t3);
    let now = reader.load_before(a, Tid(t3.0 + 1)).unwrap().unwrap();
    assert_eq!(
        (now.data, now.start),
        (record(3, &[]), t3),
        "not the standby's stale state"
    );
    // An older snapshot the standby has is still served.
    assert_eq!(
        reader.load_before(b, snapshot).unwrap().unwrap().data,
        record(10, &[])
    );
    replica.execute("SELECT pg_wal_replay_resume()");

    // Gone: the primary answers.
    drop(replica);
    let t4 = commit(&writer, "b = 11", &[(b, t1, record(11, &[]))]);
    reader.sync().unwrap();
    assert_eq!(
        reader.load_before(b, Tid(t4.0 + 1)).unwrap().unwrap().data,
        record(11, &[])
    );
}
