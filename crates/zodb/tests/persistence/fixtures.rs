//! Databases written by Python ZODB 6.4 (`tests/fixtures/zodb`), read through the
//! persistence layer: the root `PersistentMapping`, objects of application classes, a
//! class with `__getnewargs__` referred to by bare oid, and an `OOBTree` of 40 keys.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zodb::btree::BTree;
use zodb::{DB, PRef, PersistentMapping, Value, persistent};
use zodb_storage::FileStorage;

/// `bbru.content.Folder` as the fixture generator's Python class defines it.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PyFolder {
    title: String,
    items: BTreeMap<String, PRef<PersistentMapping>>,
}
persistent!(PyFolder, "bbru.content", "Folder");

/// `bbru.content.Counter` (has `__getnewargs__`: class pickle `(class, ())`).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct Counter {
    value: i64,
}
persistent!(Counter, "bbru.content", "Counter");

fn open(name: &str) -> (DB, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let path = test_support::fixtures::copy_to(name, dir.path());
    let storage = FileStorage::open_read_only(path).unwrap();
    (DB::open(Arc::new(storage)).unwrap(), dir)
}

#[test]
fn python_databases_read_through_typed_objects() {
    for name in ["unpacked.fs", "Data.fs"] {
        let (db, _dir) = open(name);
        let mut conn = db.connection();
        let tx = conn.begin();
        let root = tx.get(tx.root()).unwrap();
        let keys: Vec<&str> = root.keys().collect();
        assert_eq!(keys, ["folder", "counter", "tree"], "{name}");

        let folder = tx.get(root.get_ref::<PyFolder>("folder").unwrap()).unwrap();
        assert_eq!(folder.title, "Hello, world");
        let sub = tx.get(folder.items["sub"]).unwrap();
        assert_eq!(sub.get("x"), Some(&Value::Int(1)));

        // A bare-oid reference to a class pickled as `(class, newargs)`.
        assert!(
            matches!(root.get("counter"), Some(Value::PersistentRef(pid)) if matches!(**pid, Value::Bytes(_)))
        );
        let counter = tx.get(root.get_ref::<Counter>("counter").unwrap()).unwrap();
        assert_eq!(counter.value, 2);

        let tree: PRef<BTree<String, i64>> = root.get_ref("tree").unwrap();
        tree.check(&tx).unwrap();
        let items: Vec<(String, i64)> = tree.iter(&tx).unwrap().map(Result::unwrap).collect();
        let want: Vec<(String, i64)> = (0..40).map(|i| (format!("k{i:02}"), i)).collect();
        assert_eq!(items, want);
        assert_eq!(tree.get(&tx, &"k17".to_string()).unwrap(), Some(17));
        let some: Vec<i64> = tree
            .range(&tx, "k25".to_string().."k31".to_string())
            .unwrap()
            .map(|r| r.unwrap().1)
            .collect();
        assert_eq!(some, vec![25, 26, 27, 28, 29, 30]);

        // Generic reading needs no Rust type.
        let generic = tx.load_generic(folder_oid(&root)).unwrap();
        assert_eq!(generic.class, ("bbru.content".into(), "Folder".into()));
        assert_eq!(
            generic.state.get("title"),
            Some(&Value::str("Hello, world"))
        );
    }
}

fn folder_oid(root: &PersistentMapping) -> zodb::Oid {
    root.get_ref::<PyFolder>("folder").unwrap().oid()
}

#[test]
fn read_only_databases_refuse_changes() {
    let (db, _dir) = open("Data.fs");
    let mut conn = db.connection();
    let tx = conn.begin();
    assert!(matches!(tx.edit(tx.root()), Err(zodb::Error::ReadOnly)));
    assert!(matches!(
        tx.add(PersistentMapping::new()),
        Err(zodb::Error::ReadOnly)
    ));
}
