//! Conflict resolution through the commit path: a class's resolver merges a concurrent
//! change (the commit goes on, with the merge stored), a resolver that refuses, a class
//! without one and a read conflict all still fail with a conflict; over ZEO, conflicts the
//! server returns at vote are resolved the same way.

use serde::{Deserialize, Serialize};
use zodb::resolve::Unresolved;
use zodb::{DB, PRef, TransactionManager, persistent};

use crate::{Backend, Page, on_every_storage, page};

/// A counter whose concurrent increments merge (old + both deltas).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Hits {
    pub count: i64,
    /// Concurrent changes of the label do not merge.
    pub label: String,
}

fn merge_hits(old: Hits, committed: Hits, new: Hits) -> Result<Hits, Unresolved> {
    if committed.label != old.label && new.label != old.label {
        return Err(Unresolved::new("the label changed on both sides"));
    }
    let label = if new.label != old.label {
        new.label
    } else {
        committed.label
    };
    Ok(Hits {
        count: committed.count + new.count - old.count,
        label,
    })
}
persistent!(Hits, "bbru.tests", "Hits", resolve = merge_hits);

fn add_hits(db: &DB) -> PRef<Hits> {
    let mut conn = db.connection();
    let tx = conn.begin();
    let r = tx
        .add(Hits {
            count: 0,
            label: "hits".into(),
        })
        .unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("hits", r);
    tx.commit().unwrap();
    r
}

fn concurrent_increments_merge_and_both_commit(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_hits(&db);
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |h| h.count += 1).unwrap();
    tc.update(r, |h| {
        h.count += 10;
        h.label = "visits".into();
    })
    .unwrap();
    ta.commit().unwrap();
    tc.commit().expect("the resolver merges the two increments");
    let stats = db.stats();
    assert_eq!((stats.conflicts, stats.resolved_conflicts), (0, 1));
    // Both connections now read the merge, not what they held.
    for conn in [&mut a, &mut c] {
        let tx = conn.begin();
        let hits = tx.get(r).unwrap();
        assert_eq!((hits.count, hits.label.as_str()), (11, "visits"));
    }
}

fn a_resolver_that_refuses_leaves_the_conflict(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_hits(&db);
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |h| h.label = "a".into()).unwrap();
    tc.update(r, |h| h.label = "c".into()).unwrap();
    ta.commit().unwrap();
    let err = tc.commit().unwrap_err();
    assert!(err.is_conflict(), "{err}");
    assert_eq!(db.stats().resolved_conflicts, 0);
    assert_eq!(a.begin().get(r).unwrap().label, "a");
}

fn a_class_without_resolver_still_conflicts(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let p = tx.add(page("0")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("p", p);
    tx.commit().unwrap();
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(p, |p: &mut Page| p.body = "a".into()).unwrap();
    tc.update(p, |p: &mut Page| p.title = "c".into()).unwrap();
    ta.commit().unwrap();
    assert!(tc.commit().unwrap_err().is_conflict());
    assert_eq!(db.stats().conflicts, 1);
}

fn a_merged_commit_keeps_its_other_changes_and_read_checks(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_hits(&db);
    let mut conn = db.connection();
    let tx = conn.begin();
    let p = tx.add(page("0")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("p", p);
    tx.commit().unwrap();

    // A commit that merges one object stores its other objects too.
    let mut a = db.connection();
    let mut c = db.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |h| h.count += 1).unwrap();
    tc.update(r, |h| h.count += 1).unwrap();
    tc.update(p, |p: &mut Page| p.title = "with the merge".into())
        .unwrap();
    ta.commit().unwrap();
    tc.commit().unwrap();
    let tx = conn.begin();
    assert_eq!(tx.get(r).unwrap().count, 2);
    assert_eq!(tx.get(p).unwrap().title, "with the merge");
    drop(tx);

    // A read conflict is never resolved, even beside a resolvable write conflict.
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |h| h.count += 1).unwrap();
    ta.update(p, |p: &mut Page| p.body = "changed".into())
        .unwrap();
    tc.update(r, |h| h.count += 1).unwrap();
    tc.read_current(p).unwrap();
    ta.commit().unwrap();
    assert!(tc.commit().unwrap_err().is_conflict());
    assert_eq!(conn.begin().get(r).unwrap().count, 3);
}

fn many_writers_lose_no_increment(b: Backend) {
    let db = DB::open(b.storage).unwrap();
    let r = add_hits(&db);
    let threads: Vec<_> = (0..4)
        .map(|_| {
            let db = db.clone();
            std::thread::spawn(move || {
                let mut conn = db.connection();
                for _ in 0..25 {
                    // Resolution carries nearly every commit; a writer that keeps losing
                    // its rounds to the others (there is no pause between commits here)
                    // falls back on the manager's retry.
                    TransactionManager::new(3)
                        .run(&mut conn, |tx| tx.update(r, |h| h.count += 1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(db.connection().begin().get(r).unwrap().count, 100);
}

on_every_storage!(
    concurrent_increments_merge_and_both_commit,
    a_resolver_that_refuses_leaves_the_conflict,
    a_class_without_resolver_still_conflicts,
    a_merged_commit_keeps_its_other_changes_and_read_checks,
    many_writers_lose_no_increment,
);

/// Over ZEO the server reports conflicts at vote (client-side resolution, as `bbru-zeo`
/// always does); the client's database resolves them and commits again.
#[test]
fn conflicts_a_zeo_server_returns_at_vote_are_resolved_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let address = crate::zeo::serve(dir.path());
    let one = crate::zeo::client(&address);
    let two = crate::zeo::client(&address);
    let r = add_hits(&one);
    let mut a = one.connection();
    let mut c = two.connection();
    let ta = a.begin();
    let tc = c.begin();
    ta.update(r, |h| h.count += 1).unwrap();
    tc.update(r, |h| h.count += 10).unwrap();
    ta.commit().unwrap();
    tc.commit()
        .expect("resolved after the vote reported the conflict");
    assert_eq!(two.stats().resolved_conflicts, 1);
    assert_eq!(a.begin().get(r).unwrap().count, 11);
    assert_eq!(c.begin().get(r).unwrap().count, 11);

    let threads: Vec<_> = [one.clone(), two.clone(), one.clone(), two.clone()]
        .into_iter()
        .map(|db| {
            std::thread::spawn(move || {
                let mut conn = db.connection();
                for _ in 0..10 {
                    TransactionManager::new(3)
                        .run(&mut conn, |tx| tx.update(r, |h| h.count += 1))
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(a.begin().get(r).unwrap().count, 51);
    assert_eq!(c.begin().get(r).unwrap().count, 51);
}
