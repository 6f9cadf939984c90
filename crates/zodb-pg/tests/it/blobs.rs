//! Blobs on PostgreSQL: each revision one large object named by `blob_chunk`,
//! the blob directory a cache. A second storage with an empty cache downloads
//! what the first stored (in pieces, for a blob larger than one); an abort
//! leaves no large object; an undo brings an older revision's blob back
//! without a copy; a pack unlinks the large objects of the revisions it
//! removes; a copy from a FileStorage with blobs and back gives the same
//! bytes; Python RelStorage 4.3 reads what bbru stored and the other way; and
//! the cache directory stays within its bound, fetching again what it let go.

use std::ffi::OsStr;
use std::path::Path;

use test_support::pg::{FreshDatabase, fresh_database};
use test_support::python::run_ok;
use zodb_pg::PgStorage;
use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Oid, Storage, StorageError, Tid, TransactionMeta};

/// A `ZODB.blob.Blob` record as Python writes it: the class, then the state `None`.
const BLOB_RECORD: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";

const LARGE_OBJECTS: &str = "SELECT count(*) FROM pg_largeobject_metadata";

fn open(db: &FreshDatabase, cache: &Path) -> PgStorage {
    PgStorage::create(&db.url)
        .unwrap()
        .with_blob_dir(cache)
        .unwrap()
}

/// Commits `oid` as a blob holding `bytes`; returns the tid.
fn commit_blob(s: &PgStorage, oid: Oid, expected: Tid, bytes: &[u8]) -> Tid {
    let upload = s.blobs().unwrap().tmp_dir().join(format!("upload-{oid}"));
    std::fs::write(&upload, bytes).unwrap();
    let t = s.tpc_begin(TransactionMeta::new("u", "blob")).unwrap();
    s.store_blob(&t, oid, expected, BLOB_RECORD.to_vec(), &upload)
        .unwrap();
    assert!(!upload.exists(), "the storage took the file");
    s.vote(&t).unwrap();
    s.finish(&t).unwrap()
}

/// Bytes no two pieces of which are alike, past two pieces of upload.
fn large() -> Vec<u8> {
    let n = 2 * zodb_pg::limits::BLOB_PIECE_BYTES + 12_345;
    (0..n).map(|i| (i * 7 + i / 4099) as u8).collect()
}

#[test]
fn a_blob_stored_by_one_storage_is_downloaded_by_another() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let a = open(&db, &dir.path().join("a"));
    let oid = a.new_oids(1).unwrap()[0];
    let t1 = commit_blob(&a, oid, Tid::ZERO, b"first");
    let big = large();
    let t2 = commit_blob(&a, oid, t1, &big);
    assert_eq!(db.query_i64(LARGE_OBJECTS), 2);
    // The storer's cache has the committed file.
    assert_eq!(std::fs::read(a.load_blob(oid, t2).unwrap()).unwrap(), big);

    let b = open(&db, &dir.path().join("b"));
    let second = b.load_blob(oid, t2).unwrap();
    assert!(second.starts_with(dir.path().join("b")), "{second:?}");
    assert_eq!(std::fs::read(&second).unwrap(), big);
    assert!(std::fs::metadata(&second).unwrap().permissions().readonly());
    assert_eq!(
        std::fs::read(b.load_blob(oid, t1).unwrap()).unwrap(),
        b"first"
    );
    assert!(matches!(
        b.load_blob(oid, Tid(t2.0 + 1)),
        Err(StorageError::PosKey { .. })
    ));
    // Nothing left behind in the cache's tmp/.
    assert_eq!(
        std::fs::read_dir(b.blobs().unwrap().tmp_dir())
            .unwrap()
            .count(),
        0
    );
}

/// The bytes of the blob files under `dir`.
fn cached_bytes(s: &PgStorage) -> u64 {
    s.blobs()
        .unwrap()
        .revisions()
        .unwrap()
        .iter()
        .map(|(_, _, p)| std::fs::metadata(p).unwrap().len())
        .sum()
}

#[test]
fn the_blob_cache_stays_within_its_bound_and_fetches_again_what_it_let_go() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let bound = 4 * 100_000;
    let s = open(&db, dir.path()).with_blob_cache_bytes(bound).unwrap();
    let mut revisions = Vec::new();
    for i in 0..12u8 {
        let oid = s.new_oids(1).unwrap()[0];
        let bytes = vec![i; 100_000];
        revisions.push((oid, commit_blob(&s, oid, Tid::ZERO, &bytes), bytes));
        assert!(
            cached_bytes(&s) <= bound + 100_000,
            "{} cached",
            cached_bytes(&s)
        );
    }
    // The first ones went (written longest ago); asked again, they are fetched.
    let (oid, tid, bytes) = &revisions[0];
    assert!(
        !s.blobs().unwrap().path(*oid, *tid).exists(),
        "the oldest file was kept"
    );
    assert_eq!(
        &std::fs::read(s.load_blob(*oid, *tid).unwrap()).unwrap(),
        bytes
    );
    assert!(cached_bytes(&s) <= bound + 100_000);
}

#[test]
fn an_aborted_or_conflicting_blob_leaves_no_large_object_and_no_file() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db, dir.path());
    let oid = s.new_oids(1).unwrap()[0];
    let t1 = commit_blob(&s, oid, Tid::ZERO, b"kept");

    // Aborted after its vote uploaded it.
    let upload = dir.path().join("upload");
    std::fs::write(&upload, b"never").unwrap();
    let t = s.tpc_begin(TransactionMeta::new("u", "")).unwrap();
    s.store_blob(&t, oid, t1, BLOB_RECORD.to_vec(), &upload)
        .unwrap();
    s.vote(&t).unwrap();
    s.abort(&t);
    // A stale serial: the vote fails.
    std::fs::write(&upload, b"stale").unwrap();
    let t = s.tpc_begin(TransactionMeta::new("u", "")).unwrap();
    s.store_blob(&t, oid, Tid::ZERO, BLOB_RECORD.to_vec(), &upload)
        .unwrap();
    assert!(s.vote(&t).is_err());
    s.abort(&t);

    assert_eq!(db.query_i64(LARGE_OBJECTS), 1);
    assert_eq!(
        std::fs::read_dir(s.blobs().unwrap().tmp_dir())
            .unwrap()
            .count(),
        0
    );
    assert_eq!(
        std::fs::read(s.load_blob(oid, t1).unwrap()).unwrap(),
        b"kept"
    );
}

#[test]
fn an_undo_brings_an_older_blob_back_and_a_pack_unlinks_what_it_removes() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let s = open(&db, &dir.path().join("a"));
    // The root first: a pack keeps what the root reaches, and a blob it does
    // not reach goes with its large objects.
    let root = Oid(0);
    let t0 = {
        let t = s.tpc_begin(TransactionMeta::new("u", "root")).unwrap();
        s.store(&t, root, Tid::ZERO, zodb_pickle_root()).unwrap();
        s.vote(&t).unwrap();
        s.finish(&t).unwrap()
    };
    let oid = s.new_oids(1).unwrap()[0];
    let t1 = commit_blob(&s, oid, Tid::ZERO, b"one");
    let t2 = commit_blob(&s, oid, t1, b"two");

    let t = s.tpc_begin(TransactionMeta::new("u", "undo")).unwrap();
    assert_eq!(s.undo(&t, t2).unwrap(), vec![oid]);
    s.vote(&t).unwrap();
    let t3 = s.finish(&t).unwrap();
    // The undo names the large object of t1 again: no new one.
    assert_eq!(db.query_i64(LARGE_OBJECTS), 2);
    let fresh = open(&db, &dir.path().join("b"));
    assert_eq!(
        std::fs::read(fresh.load_blob(oid, t3).unwrap()).unwrap(),
        b"one"
    );

    // Packed to now: the blob is unreachable from the root, so every revision
    // of it goes, and with them both large objects.
    let _ = t0;
    s.pack(s.last_transaction(), true).unwrap();
    assert_eq!(db.query_i64(LARGE_OBJECTS), 0);
    assert!(s.load(oid).is_err());
}

/// An empty `PersistentMapping` root, as ZODB makes it.
fn zodb_pickle_root() -> Vec<u8> {
    let state = zodb_pickle::Value::Dict(vec![(
        zodb_pickle::Value::Str("data".into()),
        zodb_pickle::Value::Dict(vec![]),
    )]);
    zodb_pickle::encode_record(("persistent.mapping", "PersistentMapping"), &state).unwrap()
}

#[test]
fn a_copy_from_a_filestorage_with_blobs_and_back_keeps_every_blob() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let fs_options = |blobs: &str| Options {
        blob_dir: Some(dir.path().join(blobs)),
        ..Options::default()
    };
    let source = FileStorage::open_with(dir.path().join("a.fs"), fs_options("a-blobs")).unwrap();
    let oid = source.new_oids(1).unwrap()[0];
    let mut revisions = Vec::new();
    let mut serial = Tid::ZERO;
    for bytes in [b"v1".to_vec(), large()] {
        let upload = source.blobs().unwrap().tmp_dir().join("u");
        std::fs::write(&upload, &bytes).unwrap();
        let t = source.tpc_begin(TransactionMeta::new("u", "")).unwrap();
        source
            .store_blob(&t, oid, serial, BLOB_RECORD.to_vec(), &upload)
            .unwrap();
        source.vote(&t).unwrap();
        serial = source.finish(&t).unwrap();
        revisions.push((serial, bytes));
    }

    let pg = open(&db, &dir.path().join("pg-cache"));
    let copied = zodb_storage::copy_transactions(&source, &pg, None, |_| {}).unwrap();
    assert_eq!(copied.blobs, 2);
    let back = FileStorage::open_with(dir.path().join("b.fs"), fs_options("b-blobs")).unwrap();
    let fresh = open(&db, &dir.path().join("pg-cache-2"));
    let copied = zodb_storage::copy_transactions(&fresh, &back, None, |_| {}).unwrap();
    assert_eq!(copied.blobs, 2);
    for (tid, bytes) in &revisions {
        assert_eq!(
            &std::fs::read(fresh.load_blob(oid, *tid).unwrap()).unwrap(),
            bytes
        );
        assert_eq!(
            &std::fs::read(back.load_blob(oid, *tid).unwrap()).unwrap(),
            bytes
        );
    }
}

/// RelStorage stores a blob, bbru reads it; bbru stores one, RelStorage reads it.
#[test]
fn relstorage_and_bbru_read_each_others_blobs() {
    let db = fresh_database();
    let dir = tempfile::tempdir().unwrap();
    let py_cache = dir.path().join("py-cache");
    let arg = |s: &str| OsStr::new(s).to_owned();
    let out = run_ok(
        "relstorage_interop.py",
        &[
            arg("blob-write").as_os_str(),
            arg(&db.url).as_os_str(),
            py_cache.as_os_str(),
        ],
    );
    let written: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    let py_oid = Oid(written["oid"].as_u64().unwrap());
    let py_tid = Tid(written["tid"].as_u64().unwrap());

    let s = open(&db, &dir.path().join("rust-cache"));
    assert_eq!(
        std::fs::read(s.load_blob(py_oid, py_tid).unwrap()).unwrap(),
        b"written by RelStorage".repeat(1000)
    );
    let big = large();
    let tid = commit_blob(&s, py_oid, py_tid, &big);
    let out = run_ok(
        "relstorage_interop.py",
        &[
            arg("blob-read").as_os_str(),
            arg(&db.url).as_os_str(),
            dir.path().join("py-cache-2").as_os_str(),
        ],
    );
    let read: serde_json::Value = serde_json::from_str(out.lines().last().unwrap()).unwrap();
    assert_eq!(read["serial"].as_u64(), Some(tid.0), "{read}");
    assert_eq!(read["size"].as_u64(), Some(big.len() as u64), "{read}");
    let expected = hex::encode(<md5::Md5 as md5::Digest>::digest(&big));
    assert_eq!(read["md5"].as_str(), Some(expected.as_str()), "{read}");
}
