//! DB, Connection and Transaction semantics.

use std::sync::Arc;

use zodb::{DB, DbOptions, Error, PRef, PersistentMapping, TransactionManager, Value};
use zodb_storage::{Oid, Storage, Tid};

use crate::{Backend, Folder, Page, on_every_storage, page};

/// Adds a page under the root key `key` in its own transaction.
fn add_page(db: &DB, key: &str, title: &str) -> PRef<Page> {
    let mut conn = db.connection();
    let tx = conn.begin();
    let r = tx.add(page(title)).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref(key, r);
    tx.commit().unwrap().expect("a commit");
    r
}

fn root_ref<T: zodb::Persistent>(db: &DB, key: &str) -> PRef<T> {
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.get(tx.root())
        .unwrap()
        .get_ref(key)
        .expect("key in root")
}

fn new_db_creates_a_python_compatible_root(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let (data, _) = b.storage.load(Oid::ROOT).unwrap();
    let (class, state) = zodb_pickle::decode_record(&data).unwrap();
    assert_eq!(
        class,
        Value::global("persistent.mapping", "PersistentMapping")
    );
    assert_eq!(
        state,
        Value::Dict(vec![(Value::str("data"), Value::Dict(vec![]))])
    );
    let log = b.storage.undo_log(0, 10).unwrap();
    assert_eq!(log[0].description, b"initial database creation");
    // Opening again does not create another root.
    let last = b.storage.last_transaction();
    drop(db);
    DB::open(b.storage.clone()).unwrap();
    assert_eq!(b.storage.last_transaction(), last);
}

fn read_your_writes(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let r = tx.add(page("one")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("p", r);
    assert_eq!(tx.get(r).unwrap().title, "one");
    tx.update(r, |p| p.title = "two".into()).unwrap();
    assert_eq!(tx.get(r).unwrap().title, "two");
    tx.commit().unwrap();
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "two");
    // A new connection (empty cache) reads it from the storage.
    let mut other = db.connection();
    let tx = other.begin();
    assert_eq!(tx.get(r).unwrap().title, "two");
}

fn snapshot_isolation_between_connections(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "v1");
    let mut reader = db.connection();
    let old = reader.begin();
    assert_eq!(old.get(r).unwrap().title, "v1");
    // Another connection changes it and adds an object.
    let mut writer = db.connection();
    let tx = writer.begin();
    tx.update(r, |p| p.title = "v2".into()).unwrap();
    let added = tx.add(page("new")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("q", added);
    tx.commit().unwrap();
    // The reader's transaction still sees its snapshot, cached or not.
    assert_eq!(old.get(r).unwrap().title, "v1");
    assert!(old.get(old.root()).unwrap().get("q").is_none());
    assert!(matches!(old.get(added), Err(Error::NotFound(_))));
    drop(old);
    // Its next transaction sees the change (its cache was invalidated).
    let tx = reader.begin();
    assert_eq!(tx.get(r).unwrap().title, "v2");
    assert_eq!(tx.get(added).unwrap().title, "new");
}

fn invalidation_after_another_connection_commits(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "v1");
    let mut a = db.connection();
    let mut c = db.connection();
    for round in 0..5 {
        // `a` caches the object, `c` changes it, `a` must see the change next time.
        let tx = a.begin();
        let seen = tx.get(r).unwrap().title.clone();
        drop(tx);
        let tx = c.begin();
        tx.update(r, |p| p.title = format!("round {round}"))
            .unwrap();
        tx.commit().unwrap();
        let tx = a.begin();
        assert_ne!(tx.get(r).unwrap().title, seen);
        assert_eq!(tx.get(r).unwrap().title, format!("round {round}"));
    }
}

fn conflict_then_retry_succeeds(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "0");
    // Two transactions change the same object from the same snapshot.
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |p| p.title.push('a')).unwrap();
    tc.update(r, |p| p.title.push('c')).unwrap();
    ta.commit().unwrap();
    let err = tc.commit().unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(db.stats().conflicts, 1);
    // The manager retries on a fresh snapshot: the second change lands on the first.
    let mut attempts = 0;
    let mut rival = Some(db.connection());
    TransactionManager::new(3)
        .run(&mut c, |tx| {
            attempts += 1;
            tx.update(r, |p| p.title.push('c'))?;
            if let Some(mut rival) = rival.take() {
                // A rival commit sneaks in during the first attempt.
                let t = rival.begin();
                t.update(r, |p| p.title.push('r'))?;
                t.commit()?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(attempts, 2);
    let tx = a.begin();
    assert_eq!(tx.get(r).unwrap().title, "0arc");
}

fn retry_gives_up_after_the_attempts(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "0");
    let mut conn = db.connection();
    let mut rival = db.connection();
    let mut attempts = 0;
    let err = TransactionManager::new(3)
        .run(&mut conn, |tx| {
            attempts += 1;
            tx.update(r, |p| p.title.push('x'))?;
            let t = rival.begin();
            t.update(r, |p| p.title.push('r'))?;
            t.commit()?;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(err.is_conflict());
    assert_eq!(attempts, 3);
    // Non-conflict errors are not retried.
    let mut attempts = 0;
    let err = TransactionManager::new(3)
        .run(&mut conn, |tx| {
            attempts += 1;
            tx.get(PRef::<Page>::from_oid(Oid(999_999))).map(|_| ())
        })
        .unwrap_err();
    assert!(matches!(err, Error::NotFound(_)));
    assert_eq!(attempts, 1);
}

fn retries_with_backoff_until_the_rival_stops(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "0");
    let mut conn = db.connection();
    let mut rival = db.connection();
    let manager = TransactionManager::new(4).with_backoff(std::time::Duration::from_millis(4));
    assert_eq!(manager.attempts(), 4);
    // A rival commit sneaks in during each of the first two attempts; the third commits.
    let mut attempts = 0;
    manager
        .run(&mut conn, |tx| {
            attempts += 1;
            tx.update(r, |p| p.title.push('x'))?;
            if attempts <= 2 {
                let t = rival.begin();
                t.update(r, |p| p.title.push('r'))?;
                t.commit()?;
            }
            Ok::<_, Error>(())
        })
        .unwrap();
    assert_eq!(attempts, 3);
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "0rrx");
    drop(tx);
    // A rival in every attempt: the manager gives up after its four.
    let mut attempts = 0;
    let err = manager
        .run(&mut conn, |tx| {
            attempts += 1;
            tx.update(r, |p| p.title.push('y'))?;
            let t = rival.begin();
            t.update(r, |p| p.title.push('r'))?;
            t.commit()?;
            Ok::<_, Error>(())
        })
        .unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(attempts, 4);
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "0rrxrrrr");
}

fn abort_discards(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let r = add_page(&db, "p", "kept");
    let last = b.storage.last_transaction();
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.update(r, |p| p.title = "discarded".into()).unwrap();
    let added = tx.add(page("never")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("never", added);
    tx.abort();
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "kept");
    assert!(tx.get(tx.root()).unwrap().get("never").is_none());
    // Dropping a transaction aborts it too.
    tx.update(r, |p| p.title = "dropped".into()).unwrap();
    drop(tx);
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "kept");
    assert_eq!(b.storage.last_transaction(), last);
}

fn read_only_transactions_commit_nothing(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let r = add_page(&db, "p", "x");
    let last = b.storage.last_transaction();
    let commits = db.stats().commits;
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.get(r).unwrap();
    assert_eq!(tx.commit().unwrap(), None);
    assert_eq!(b.storage.last_transaction(), last);
    assert_eq!(db.stats().commits, commits);
}

fn cache_eviction_does_not_lose_unsaved_changes(b: Backend) {
    let options = DbOptions {
        cache_objects: 5,
        ..DbOptions::default()
    };
    let db = DB::with_options(b.storage, options).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let mut refs = Vec::new();
    for i in 0..50 {
        let r = tx.add(page(&format!("p{i}"))).unwrap();
        tx.edit(tx.root()).unwrap().insert_ref(&format!("p{i}"), r);
        refs.push(r);
    }
    tx.commit().unwrap();
    assert!(conn.cache_len() <= 5, "cache holds {}", conn.cache_len());
    // Change every page in one transaction while reading many others: the cache evicts
    // clean objects constantly, never a changed one.
    let tx = conn.begin();
    for (i, r) in refs.iter().enumerate() {
        tx.update(*r, |p| p.body = format!("changed {i}")).unwrap();
        for other in refs.iter().take(20) {
            tx.get(*other).unwrap();
        }
    }
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(tx.get(*r).unwrap().body, format!("changed {i}"));
    }
    tx.commit().unwrap();
    let mut fresh = db.connection();
    let tx = fresh.begin();
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(tx.get(*r).unwrap().body, format!("changed {i}"));
    }
}

fn transaction_metadata_is_the_audit_trail(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.set_user("/ alice");
    tx.note("add /docs");
    tx.set_extension("path", Value::str("/docs"));
    let r = tx.add(Folder::default()).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("docs", r);
    let tid = tx.commit().unwrap().unwrap();
    let log = b.storage.undo_log(0, 1).unwrap();
    assert_eq!(log[0].tid, tid);
    assert_eq!(log[0].user, b"/ alice");
    assert_eq!(log[0].description, b"add /docs");
    let ext = zodb_pickle::decode(&log[0].extension).unwrap().0;
    assert_eq!(ext.get("path"), Some(&Value::str("/docs")));
    // History of the object, from the storage.
    let history = b.storage.history(r.oid(), 10).unwrap();
    assert_eq!(history.len(), 1);
    assert_eq!(history[0].tid, tid);
}

fn unreachable_new_objects_are_not_stored(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let orphan = tx.add(page("orphan")).unwrap();
    let child = tx.add(page("child")).unwrap();
    // Reachable through another new object: kept.
    let mut folder = Folder::default();
    folder.items.insert("child".into(), child);
    let folder = tx.add(folder).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("f", folder);
    tx.commit().unwrap();
    assert!(b.storage.load(child.oid()).is_ok());
    assert!(b.storage.load(folder.oid()).is_ok());
    assert!(b.storage.load(orphan.oid()).unwrap_err().is_pos_key());
}

fn savepoint_rollback(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "start");
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.update(r, |p| p.title = "first".into()).unwrap();
    let held = tx.get(r).unwrap();
    let sp = tx.savepoint().unwrap();
    tx.update(r, |p| p.title = "second".into()).unwrap();
    let added = tx.add(page("later")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("later", added);
    // The Arc read before the change is unchanged (copy on write).
    assert_eq!(held.title, "first");
    tx.rollback(&sp).unwrap();
    assert_eq!(tx.get(r).unwrap().title, "first");
    assert!(tx.get(tx.root()).unwrap().get("later").is_none());
    tx.commit().unwrap();
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().title, "first");
}

fn busy_and_wrong_class_are_errors(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "x");
    let mut conn = db.connection();
    let tx = conn.begin();
    let guard = tx.edit(r).unwrap();
    assert!(matches!(tx.edit(r), Err(Error::Busy(_))));
    assert!(matches!(tx.get(r), Err(Error::Busy(_))));
    drop(guard);
    assert!(tx.get(r).is_ok());
    // The root is no Page.
    let err = tx.get(PRef::<Page>::from_oid(Oid::ROOT)).unwrap_err();
    assert!(
        matches!(&err, Error::WrongClass { found, .. } if found == "persistent.mapping.PersistentMapping"),
        "{err}"
    );
}

fn read_current_turns_a_concurrent_change_into_a_conflict(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let guard = add_page(&db, "guard", "open");
    let target = add_page(&db, "target", "x");
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    ta.read_current(guard).unwrap();
    ta.update(target, |p| p.body = "decided while open".into())
        .unwrap();
    let tc = c.begin();
    tc.update(guard, |p| p.title = "closed".into()).unwrap();
    tc.commit().unwrap();
    assert!(ta.commit().unwrap_err().is_conflict());
}

fn pooled_connections_keep_their_cache(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_page(&db, "p", "x");
    {
        let mut conn = db.connection();
        conn.begin().get(r).unwrap();
    }
    let loads = db.stats().loads;
    let mut conn = db.connection();
    assert!(conn.cache_len() > 0);
    conn.begin().get(r).unwrap();
    assert_eq!(
        db.stats().loads,
        loads,
        "served from the pooled connection's cache"
    );
}

fn concurrent_writers_on_threads(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let counter = add_page(&db, "counter", "0");
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                for _ in 0..10 {
                    TransactionManager::new(100)
                        .run(&mut db.connection(), |tx| {
                            tx.update(counter, |p| {
                                let n: u32 = p.title.parse().unwrap();
                                p.title = (n + 1).to_string();
                            })
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let mut conn = db.connection();
    assert_eq!(conn.begin().get(counter).unwrap().title, "40");
}

/// `read` lends an object: the same state as `get`, the transaction's own changes
/// included; other objects can be read inside it (one not cached yet is read from the
/// storage), and a change inside it is refused with an error, not a panic.
fn read_lends_objects_and_refuses_changes_inside(b: Backend) {
    let options = DbOptions {
        cache_objects: 2,
        ..DbOptions::default()
    };
    let db = DB::with_options(b.storage, options).unwrap();
    let refs: Vec<PRef<Page>> = (0..6)
        .map(|i| add_page(&db, &format!("p{i}"), &format!("title {i}")))
        .collect();
    let mut conn = db.connection();
    let tx = conn.begin();
    for (i, r) in refs.iter().enumerate() {
        assert_eq!(
            tx.read(*r, |p| p.title.clone()).unwrap(),
            format!("title {i}")
        );
        assert_eq!(
            tx.read(*r, |p| p.title.clone()).unwrap(),
            tx.get(*r).unwrap().title
        );
    }
    // Reads nested inside a read, of cached objects and of ones the small cache lost.
    let nested = tx
        .read(refs[5], |outer| {
            let inner: Vec<String> = refs
                .iter()
                .map(|r| tx.read(*r, |p| p.title.clone()).unwrap())
                .collect();
            (
                outer.title.clone(),
                inner,
                tx.get(refs[0]).unwrap().title.clone(),
            )
        })
        .unwrap();
    assert_eq!(nested.0, "title 5");
    assert_eq!(nested.1[2], "title 2");
    assert_eq!(nested.2, "title 0");
    // Changes inside: refused; outside: seen by the next read.
    let refused = tx.read(refs[1], |_| tx.update(refs[2], |p| p.body = "x".into()));
    assert!(matches!(refused, Ok(Err(Error::Lent))), "{refused:?}");
    let refused = tx.read(refs[1], |_| tx.add(page("new")).map(|_| ()));
    assert!(matches!(refused, Ok(Err(Error::Lent))), "{refused:?}");
    tx.update(refs[3], |p| p.title = "changed".into()).unwrap();
    assert_eq!(tx.read(refs[3], |p| p.title.clone()).unwrap(), "changed");
    // Also while the object lent is one this transaction changed.
    let refused = tx.read(refs[3], |_| tx.update(refs[3], |p| p.body = "x".into()));
    assert!(matches!(refused, Ok(Err(Error::Lent))), "{refused:?}");
    // Another Rust type for the object: the class error, as `get` gives.
    let as_folder = PRef::<Folder>::from_oid(refs[4].oid());
    assert!(matches!(
        tx.read(as_folder, |_| ()),
        Err(Error::WrongClass { .. })
    ));
    tx.commit().unwrap();
    let tx = conn.begin();
    assert_eq!(tx.read(refs[3], |p| p.title.clone()).unwrap(), "changed");
}

/// Six writers change one object from one snapshot; one commits. The five others
/// conflicted once and from then on take turns: three attempts are enough for all (the
/// first winner's commit can meet one of them once), where without turns the five
/// would collide again in step.
fn writers_that_kept_conflicting_take_turns(b: Backend) {
    const WRITERS: usize = 6;
    let db = DB::open(b.storage).unwrap();
    let counter = add_page(&db, "counter", "0");
    let turns = zodb::Turns::new();
    let all_changed = std::sync::Barrier::new(WRITERS);
    std::thread::scope(|scope| {
        for _ in 0..WRITERS {
            let (db, turns, all_changed) = (&db, &turns, &all_changed);
            scope.spawn(move || {
                let mut attempt = 0;
                TransactionManager::new(3)
                    .with_turns(turns.clone(), 1)
                    .run(&mut db.connection(), |tx| {
                        attempt += 1;
                        tx.update(counter, |p| {
                            let n: u32 = p.title.parse().unwrap();
                            p.title = (n + 1).to_string();
                        })?;
                        if attempt == 1 {
                            all_changed.wait();
                        }
                        Ok::<_, Error>(())
                    })
                    .unwrap();
            });
        }
    });
    let mut conn = db.connection();
    assert_eq!(
        conn.begin().get(counter).unwrap().title,
        WRITERS.to_string()
    );
}

fn two_databases_on_one_storage_see_each_other(b: Backend) {
    // Two DBs over one storage behave as two application instances: each learns of the
    // other's commits through the storage's listener.
    let one = DB::open(b.storage.clone()).unwrap();
    let two = DB::open(b.storage.clone()).unwrap();
    let r = add_page(&one, "p", "from one");
    let mut conn = two.connection();
    assert_eq!(conn.begin().get(r).unwrap().title, "from one");
    let mut c1 = one.connection();
    c1.begin().get(r).unwrap();
    let tx = conn.begin();
    tx.update(r, |p| p.title = "from two".into()).unwrap();
    tx.commit().unwrap();
    assert_eq!(c1.begin().get(r).unwrap().title, "from two");
    let _: PRef<Page> = root_ref(&one, "p");
    let _ = Arc::strong_count(&b.storage);
    let _ = Tid::ZERO;
    let _: Option<&dyn Storage> = None;
    let _ = PersistentMapping::new();
}

fn dropping_the_db_releases_the_storage(b: Backend) {
    // Pooled connections must not keep their database (and its storage) alive.
    let db = DB::open(b.storage.clone()).unwrap();
    add_page(&db, "p", "x");
    drop(db.connection());
    assert!(Arc::strong_count(&b.storage) > 1);
    drop(db);
    assert_eq!(Arc::strong_count(&b.storage), 1);
}

fn any_refs_keep_the_class_of_mixed_items(b: Backend) {
    #[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
    struct Mixed {
        items: Vec<zodb::AnyRef>,
    }
    zodb::persistent!(Mixed, "bbru.test", "Mixed");
    let db = DB::open(b.storage).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let p = tx.add(page("p")).unwrap();
    let f = tx.add(Folder::default()).unwrap();
    let m = tx
        .add(Mixed {
            items: vec![p.into(), f.into(), zodb::AnyRef::untyped(p.oid())],
        })
        .unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("m", m);
    tx.commit().unwrap();
    let mut fresh = db.connection();
    let tx = fresh.begin();
    let items = tx.get(m).unwrap().items.clone();
    assert_eq!(items[0].downcast::<Page>(), Some(p));
    assert_eq!(items[0].downcast::<Folder>(), None);
    assert!(items[1].is::<Folder>());
    assert_eq!(items[2].class(), None);
    // Not cached yet: read from the record's class pickle; then from the cache.
    assert_eq!(
        tx.class_of(items[2].oid()).unwrap(),
        ("bbru.content".into(), "Page".into())
    );
    tx.get(p).unwrap();
    assert_eq!(
        tx.class_of(p.oid()).unwrap(),
        ("bbru.content".into(), "Page".into())
    );
    assert_eq!(
        tx.get(items[0].downcast::<Page>().unwrap()).unwrap().title,
        "p"
    );
}

/// The title of the page under root key `key`, read by `conn` in a new transaction.
fn title_in(conn: &mut zodb::Connection, r: PRef<Page>) -> String {
    let tx = conn.begin();
    tx.get(r).unwrap().title.clone()
}

/// Commits a new title for `r`, described as `what`; returns the tid.
fn retitle(db: &DB, r: PRef<Page>, title: &str, what: &str) -> Tid {
    let mut conn = db.connection();
    let tx = conn.begin();
    tx.note(what);
    tx.edit(r).unwrap().title = title.into();
    tx.commit().unwrap().expect("a commit")
}

fn undo_reverts_transactions_all_or_nothing(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let r = add_page(&db, "a", "one");
    // A connection that has the page cached sees the undo (the listener invalidates).
    let mut reader = db.connection();
    assert_eq!(title_in(&mut reader, r), "one");
    let two = retitle(&db, r, "two", "edit a");
    assert_eq!(title_in(&mut reader, r), "two");
    let undo_tid = db
        .undo(
            &[two],
            zodb_storage::TransactionMeta::new("alice", "undo edit a"),
        )
        .unwrap();
    assert_eq!(title_in(&mut reader, r), "one");
    let log = b.storage.undo_log(0, 1).unwrap();
    assert_eq!(log[0].tid, undo_tid);
    assert_eq!(log[0].user, b"alice");
    assert_eq!(log[0].description, b"undo edit a");

    // An undo whose objects were changed later is refused, naming the transaction, and
    // changes nothing.
    let three = retitle(&db, r, "three", "edit a again");
    let four = retitle(&db, r, "four", "and again");
    let last = b.storage.last_transaction();
    let err = db
        .undo(&[three], zodb_storage::TransactionMeta::new("", "undo"))
        .unwrap_err();
    assert_eq!(err.tid, Some(three));
    assert!(!err.reasons().is_empty(), "{err}");
    assert!(err.to_string().contains(&three.to_string()), "{err}");
    assert_eq!(b.storage.last_transaction(), last);
    assert_eq!(title_in(&mut reader, r), "four");
    // With the later change, in any order, it can: newest first, in one transaction.
    db.undo(
        &[three, four],
        zodb_storage::TransactionMeta::new("", "undo both"),
    )
    .unwrap();
    assert_eq!(title_in(&mut reader, r), "one");
    // In a set, the one that cannot be undone is named.
    let five = retitle(&db, r, "five", "edit a");
    retitle(&db, r, "six", "edit a");
    let other = add_page(&db, "b", "b");
    let b_edit = retitle(&db, other, "b2", "edit b");
    let err = db
        .undo(
            &[b_edit, five],
            zodb_storage::TransactionMeta::new("", "undo"),
        )
        .unwrap_err();
    assert_eq!(err.tid, Some(five), "{err}");
    assert_eq!(title_in(&mut reader, other), "b2");

    // The transactions that wrote the root are never undone: here, the one that added
    // the page (nothing changed the root since, so the storage alone would allow it).
    add_page(&db, "c", "c");
    let added = b.storage.history(Oid::ROOT, 1).unwrap()[0].tid;
    let last = b.storage.last_transaction();
    let err = db
        .undo(&[added], zodb_storage::TransactionMeta::new("", "undo"))
        .unwrap_err();
    assert_eq!(err.tid, Some(added));
    assert!(err.to_string().contains("root"), "{err}");
    assert_eq!(b.storage.last_transaction(), last);
    // Even when the storage refuses it for another reason first (the page it added was
    // changed since), the reason given is the root.
    let first_add = b.storage.history(Oid::ROOT, 10).unwrap()[2].tid;
    let err = db
        .undo(&[first_add], zodb_storage::TransactionMeta::new("", "undo"))
        .unwrap_err();
    assert_eq!(err.tid, Some(first_add));
    assert!(err.to_string().contains("root"), "{err}");
    assert!(
        db.undo(&[], zodb_storage::TransactionMeta::default())
            .is_err()
    );
}

/// Told of commits before the database is, and slow about it while `delay` is set: a
/// committer descheduled between making its commit visible and reporting it.
#[derive(Default)]
struct SlowListener {
    delay: std::sync::atomic::AtomicBool,
}

impl zodb_storage::InvalidationListener for SlowListener {
    fn committed(&self, _: Tid, _: &[Oid]) {
        if self.delay.load(std::sync::atomic::Ordering::Acquire) {
            std::thread::sleep(std::time::Duration::from_millis(300));
        }
    }

    fn reset(&self, _: Tid) {}
}

/// A retry after a conflict starts on a snapshot that includes the commit it conflicted
/// with, even when the database hears of that commit late: retried at once on the old
/// snapshot, every attempt would meet the same conflict (four threads without a wait
/// between retries once used up a hundred attempts each that way).
#[test]
fn a_retry_waits_until_the_database_has_heard_of_the_conflicting_commit() {
    let storage = Arc::new(zodb_storage::MemoryStorage::new("test"));
    let slow = Arc::new(SlowListener::default());
    let listener: Arc<dyn zodb_storage::InvalidationListener> = slow.clone();
    storage.add_listener(Arc::downgrade(&listener));
    let db = DB::open(Arc::clone(&storage) as Arc<dyn Storage>).unwrap();
    let counter = add_page(&db, "counter", "0");
    slow.delay.store(true, std::sync::atomic::Ordering::Release);
    let before = storage.last_transaction();
    let rival = {
        let db = db.clone();
        std::thread::spawn(move || {
            let mut conn = db.connection();
            let tx = conn.begin();
            tx.update(counter, |p| p.title = "1".into()).unwrap();
            tx.commit().unwrap();
        })
    };
    // The rival's commit is in the storage; the database has not heard of it yet.
    while storage.last_transaction() == before {
        std::thread::yield_now();
    }
    let mut conn = db.connection();
    let mut attempts = 0;
    TransactionManager::new(3)
        .run(&mut conn, |tx| {
            attempts += 1;
            tx.update(counter, |p| {
                let n: u32 = p.title.parse().unwrap();
                p.title = (n + 1).to_string();
            })
        })
        .unwrap();
    rival.join().unwrap();
    assert_eq!(
        attempts, 2,
        "one conflict, then a snapshot with the rival's commit"
    );
    assert_eq!(conn.begin().get(counter).unwrap().title, "2");
}

on_every_storage!(
    any_refs_keep_the_class_of_mixed_items,
    dropping_the_db_releases_the_storage,
    new_db_creates_a_python_compatible_root,
    read_your_writes,
    snapshot_isolation_between_connections,
    invalidation_after_another_connection_commits,
    conflict_then_retry_succeeds,
    retry_gives_up_after_the_attempts,
    retries_with_backoff_until_the_rival_stops,
    abort_discards,
    read_only_transactions_commit_nothing,
    cache_eviction_does_not_lose_unsaved_changes,
    transaction_metadata_is_the_audit_trail,
    unreachable_new_objects_are_not_stored,
    savepoint_rollback,
    busy_and_wrong_class_are_errors,
    read_current_turns_a_concurrent_change_into_a_conflict,
    pooled_connections_keep_their_cache,
    concurrent_writers_on_threads,
    writers_that_kept_conflicting_take_turns,
    read_lends_objects_and_refuses_changes_inside,
    two_databases_on_one_storage_see_each_other,
    undo_reverts_transactions_all_or_nothing,
);
