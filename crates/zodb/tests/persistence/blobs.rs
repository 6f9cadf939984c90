//! Blobs in the persistence layer: added from a file, read back as the revision a
//! transaction sees, replaced without rewriting the objects around them, gone with an
//! abort; on a FileStorage with a blob directory (read by Python ZODB afterwards) and
//! through a ZEO client's blob cache.

use std::ffi::OsStr;
use std::path::Path;
use std::sync::Arc;

use zodb::{Blob, DB};
use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Storage};

fn file_db(dir: &Path) -> DB {
    let fs = FileStorage::open_with(
        dir.join("Data.fs"),
        Options {
            blob_dir: Some(dir.join("blobs")),
            ..Options::default()
        },
    )
    .unwrap();
    DB::open(Arc::new(fs) as Arc<dyn Storage>).unwrap()
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

/// Adds root['b'] as a blob of `first`, then gives it `second`; checks each step.
fn blob_life(db: &DB, scratch: &Path) {
    let mut conn = db.connection();
    let tx = conn.begin();
    let b = tx.add_blob(&write(scratch, "one", b"first")).unwrap();
    assert!(
        !scratch.join("one").exists(),
        "the transaction took the file"
    );
    assert_eq!(std::fs::read(tx.blob_file(b).unwrap()).unwrap(), b"first");
    tx.update(tx.root(), |root| root.insert_ref("b", b))
        .unwrap();
    let t1 = tx.commit().unwrap().unwrap();

    let tx = conn.begin();
    let b = tx.get(tx.root()).unwrap().get_ref::<Blob>("b").unwrap();
    assert_eq!(std::fs::read(tx.blob_file(b).unwrap()).unwrap(), b"first");
    tx.set_blob_file(b, &write(scratch, "two", b"second"))
        .unwrap();
    let t2 = tx.commit().unwrap().unwrap();
    assert!(t2 > t1);

    let mut other = db.connection();
    let tx = other.begin();
    assert_eq!(std::fs::read(tx.blob_file(b).unwrap()).unwrap(), b"second");
    assert_eq!(tx.serial(b).unwrap(), t2);

    // An abort leaves nothing: the next transaction still sees "second".
    let tx = conn.begin();
    tx.set_blob_file(b, &write(scratch, "three", b"never"))
        .unwrap();
    tx.abort();
    let tx = conn.begin();
    assert_eq!(std::fs::read(tx.blob_file(b).unwrap()).unwrap(), b"second");
}

#[test]
fn a_blob_lives_in_a_file_storage_and_python_reads_it() {
    let dir = tempfile::tempdir().unwrap();
    let db = file_db(dir.path());
    blob_life(&db, dir.path());
    let tmp = dir.path().join("blobs").join("tmp");
    assert_eq!(
        std::fs::read_dir(&tmp).unwrap().count(),
        0,
        "nothing left in tmp/"
    );
    db.storage().close().unwrap();
    let args: Vec<&OsStr> = vec![
        OsStr::new("read"),
        dir.path().join("Data.fs").into_os_string().leak(),
        dir.path().join("blobs").into_os_string().leak(),
    ];
    let out = test_support::python::run_ok("blobs.py", &args);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "current b'second'", "{out}");
    assert!(
        lines[1].ends_with("b'second'") && lines[2].ends_with("b'first'"),
        "{out}"
    );
}

#[test]
fn blobs_without_a_blob_directory_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let db = DB::open(Arc::new(fs) as Arc<dyn Storage>).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let file = write(dir.path(), "f", b"x");
    let e = tx.add_blob(&file).unwrap_err();
    assert!(e.to_string().contains("blob directory"), "{e}");
    assert!(file.exists(), "the file stays with its owner");
}

#[test]
fn a_blob_lives_through_a_zeo_client_cache() {
    let dir = tempfile::tempdir().unwrap();
    let address = crate::zeo::serve_blobs(dir.path());
    let client = |cache: &str| {
        let mut o = zeo::client::ClientOptions::new(address.clone());
        o.wait_timeout = std::time::Duration::from_secs(10);
        o.blob_dir = Some(dir.path().join(cache));
        let c = zeo::client::ClientStorage::connect(o).unwrap();
        DB::open(Arc::new(c) as Arc<dyn Storage>).unwrap()
    };
    let db = client("cache-a");
    blob_life(&db, dir.path());
    // A second instance, its cache empty, gets the current file from the server.
    let db2 = client("cache-b");
    let mut conn = db2.connection();
    let tx = conn.begin();
    let b = tx.get(tx.root()).unwrap().get_ref::<Blob>("b").unwrap();
    let path = tx.blob_file(b).unwrap();
    assert!(path.starts_with(dir.path().join("cache-b")));
    assert_eq!(std::fs::read(path).unwrap(), b"second");
}
