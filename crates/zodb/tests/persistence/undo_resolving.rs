//! `DB::undo_resolving`: an older transaction undone although later ones changed some
//! of its objects, merged by their classes' resolvers (a `Length` here), as ZODB's
//! FileStorage undo merges them; refused, changing nothing, when an object without a
//! resolver changed since, or when the transaction wrote the root.

use zodb::btree::Length;
use zodb::resolve::Resolver;
use zodb::{DB, PRef, Persistent};
use zodb_storage::TransactionMeta;

use crate::{Backend, Page, on_every_storage, page};

fn lengths_only(module: &str, name: &str) -> Option<((&'static str, &'static str), Resolver)> {
    ((module, name) == ("BTrees.Length", "Length")).then_some((
        ("BTrees.Length", "Length"),
        <Length as Persistent>::resolve_conflict as Resolver,
    ))
}

fn change(db: &DB, work: impl FnOnce(&zodb::Transaction<'_>)) -> zodb::Tid {
    let mut conn = db.connection();
    let tx = conn.begin();
    work(&tx);
    tx.commit().unwrap().expect("a commit")
}

fn state(db: &DB, count: PRef<Length>, p: PRef<Page>) -> (i64, String) {
    let mut conn = db.connection();
    let tx = conn.begin();
    (
        tx.get(count).unwrap().value(),
        tx.get(p).unwrap().title.clone(),
    )
}

fn undo_merges_later_changes_of_resolvable_objects(b: Backend) {
    let db = DB::open(b.storage.clone()).unwrap();
    let (mut count, mut p) = (None, None);
    let created = change(&db, |tx| {
        let c = tx.add(Length::new(0)).unwrap();
        let r = tx.add(page("zero")).unwrap();
        tx.edit(tx.root()).unwrap().insert_ref("count", c);
        tx.edit(tx.root()).unwrap().insert_ref("page", r);
        (count, p) = (Some(c), Some(r));
    });
    let (count, p) = (count.unwrap(), p.unwrap());
    let one = change(&db, |tx| {
        tx.update(count, |l| l.change(1)).unwrap();
        tx.edit(p).unwrap().title = "one".into();
    });
    change(&db, |tx| tx.update(count, |l| l.change(10)).unwrap());
    // The storage's own undo refuses: the counter changed since.
    assert!(db.undo(&[one], TransactionMeta::new("", "undo")).is_err());
    db.undo_resolving(
        one,
        TransactionMeta::new("alice", "undo one"),
        &lengths_only,
    )
    .unwrap();
    assert_eq!(state(&db, count, p), (10, "zero".into()));
    let log = b.storage.undo_log(0, 1).unwrap();
    assert_eq!(log[0].description, b"undo one");

    // A page changed since has no resolver: refused, nothing written.
    let three = change(&db, |tx| tx.edit(p).unwrap().title = "three".into());
    change(&db, |tx| tx.edit(p).unwrap().title = "four".into());
    let last = b.storage.last_transaction();
    assert!(
        db.undo_resolving(three, TransactionMeta::new("", "undo"), &lengths_only)
            .is_err()
    );
    assert_eq!(b.storage.last_transaction(), last);
    assert_eq!(state(&db, count, p), (10, "four".into()));
    // Nor is the root's transaction undone.
    let err = db
        .undo_resolving(created, TransactionMeta::new("", "undo"), &lengths_only)
        .unwrap_err();
    assert!(err.to_string().contains("root"), "{err}");
    assert_eq!(b.storage.last_transaction(), last);
}

on_every_storage!(undo_merges_later_changes_of_resolvable_objects);
