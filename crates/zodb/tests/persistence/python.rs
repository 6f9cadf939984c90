//! Interop with real Python ZODB 6.4 (`tests/python/zodb_objects.py`): a database written
//! from Rust opens in Python (broken objects for our classes, a real `OOBTree` for our
//! BTree, Python's `PersistentList`/`PersistentMapping`), passes `fstest`, `fsrefs` and
//! `BTrees.check`; Python writes into it and Rust reads that; packs by either side keep
//! everything reachable and drop what is not.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value as Json;
use zodb::btree::BTree;
use zodb::{DB, PRef, PersistentList, PersistentMapping, Value};
use zodb_storage::{FileStorage, Storage, Tid};

use crate::{Folder, Page, page};

/// The site folder of this test: a title and a BTree of pages.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
struct Site {
    title: String,
    items: PRef<BTree<String, PRef<Page>>>,
}
zodb::persistent!(Site, "bbru.content", "Folder");

fn read(path: &Path) -> Json {
    let out =
        test_support::python::run_ok("zodb_objects.py", &[OsStr::new("read"), path.as_os_str()]);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

fn python(command: &str, path: &Path) {
    let out =
        test_support::python::run_ok("zodb_objects.py", &[OsStr::new(command), path.as_os_str()]);
    assert_eq!(out.trim(), "ok");
}

fn open(path: &Path) -> (Arc<dyn Storage>, DB) {
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(path).unwrap());
    let db = DB::open(storage.clone()).unwrap();
    (storage, db)
}

/// What the Rust side expects the pages to be, from the database.
fn rust_pages(db: &DB) -> BTreeMap<String, String> {
    let mut conn = db.connection();
    let tx = conn.begin();
    let site: PRef<Site> = tx.get(tx.root()).unwrap().get_ref("site").unwrap();
    let tree = tx.get(site).unwrap().items;
    tree.check(&tx).unwrap();
    tree.iter(&tx)
        .unwrap()
        .map(|r| {
            let (k, p) = r.unwrap();
            (k, tx.get(p).unwrap().title.clone())
        })
        .collect()
}

#[test]
fn a_rust_database_is_a_python_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let removed: Vec<PRef<Page>>;
    {
        let (storage, db) = open(&path);
        let mut conn = db.connection();
        let tx = conn.begin();
        tx.set_user("/ rust");
        tx.note("create the site");
        let tree = tx.add(BTree::<String, PRef<Page>>::new()).unwrap();
        for i in 0..100 {
            let p = tx.add(page(&format!("Page <{i}> é"))).unwrap();
            tree.insert(&tx, format!("page-{i:03}"), p).unwrap();
        }
        let site = tx
            .add(Site {
                title: "A site".into(),
                items: tree,
            })
            .unwrap();
        let list = tx
            .add(PersistentList {
                data: vec![Value::Int(1), Value::str("two")],
            })
            .unwrap();
        let mut counts = PersistentMapping::new();
        counts.insert("pages", Value::Int(100));
        let counts = tx.add(counts).unwrap();
        let mut root = tx.edit(tx.root()).unwrap();
        root.insert_ref("site", site);
        root.insert_ref("list", list);
        root.insert_ref("counts", counts);
        drop(root);
        tx.commit().unwrap();
        // A second transaction drops ten pages: garbage for the packs below.
        let tx = conn.begin();
        removed = (0..10)
            .map(|i| tree.remove(&tx, &format!("page-{i:03}")).unwrap().unwrap())
            .collect();
        tx.commit().unwrap();
        drop(conn);
        drop(db);
        storage.close().unwrap();
    }

    let summary = read(&path);
    assert_eq!(summary["fstest"][0], 0, "{summary}");
    assert_eq!(summary["fsrefs"], serde_json::json!([0, ""]), "{summary}");
    assert_eq!(
        summary["root_keys"],
        serde_json::json!(["counts", "list", "site"])
    );
    assert_eq!(summary["site_class"], "bbru.content.Folder");
    assert_eq!(summary["site_title"], "A site");
    assert_eq!(summary["tree_class"], "BTrees.OOBTree.OOBTree");
    assert_eq!(summary["tree_len"], 90);
    assert_eq!(summary["pages"]["page-042"], "Page <42> é");
    assert_eq!(summary["list"], serde_json::json!([1, "two"]));
    assert_eq!(summary["counts"], serde_json::json!({"pages": 100}));

    // Python writes into our structures; Rust reads what Python wrote.
    python("write", &path);
    {
        let (storage, db) = open(&path);
        let pages = rust_pages(&db);
        assert_eq!(pages.len(), 91);
        assert_eq!(pages["zz-python"], "Page <10> é");
        let mut conn = db.connection();
        let tx = conn.begin();
        let list: PRef<PersistentList> = tx.get(tx.root()).unwrap().get_ref("list").unwrap();
        assert_eq!(
            tx.get(list).unwrap().data.last(),
            Some(&Value::str("from python"))
        );
        let log = storage.undo_log(0, 3).unwrap();
        assert_eq!(log[0].description, b"python was here");
        assert_eq!(log[2].user, b"/ rust");
        drop(conn);
        drop(db);
        storage.close().unwrap();
    }

    // Python packs with GC: the ten removed pages go, everything reachable stays.
    python("pack", &path);
    {
        let (storage, db) = open(&path);
        assert_eq!(rust_pages(&db).len(), 91);
        for p in &removed {
            assert!(
                storage.load(p.oid()).unwrap_err().is_pos_key(),
                "{p:?} survived the pack"
            );
        }
        // Rust changes, then packs too; Python still reads everything.
        let mut conn = db.connection();
        let tx = conn.begin();
        let site: PRef<Site> = tx.get(tx.root()).unwrap().get_ref("site").unwrap();
        let tree = tx.get(site).unwrap().items;
        let gone = tree.remove(&tx, &"page-050".to_string()).unwrap().unwrap();
        tx.commit().unwrap();
        drop(conn);
        storage.pack(Tid::now(), true).unwrap();
        assert!(storage.load(gone.oid()).unwrap_err().is_pos_key());
        assert_eq!(rust_pages(&db).len(), 90);
        drop(db);
        storage.close().unwrap();
    }
    let summary = read(&path);
    assert_eq!(summary["fstest"][0], 0, "{summary}");
    assert_eq!(summary["fsrefs"], serde_json::json!([0, ""]), "{summary}");
    assert_eq!(summary["tree_len"], 90);
    assert!(summary["pages"].get("page-050").is_none());
    let _ = Folder::default();
}
