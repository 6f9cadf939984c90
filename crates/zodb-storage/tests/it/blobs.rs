//! Blobs in a FileStorage with a blob directory: stored with their transaction,
//! found by `load_blob` under ZODB's layout, gone with an abort, brought back by an
//! undo; and a `Data.fs` with its blob directory shared with Python ZODB both ways.

use std::ffi::OsStr;
use std::path::Path;

use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Oid, Storage, StorageError, Tid, TransactionMeta};

/// A `ZODB.blob.Blob` record as Python writes it: the class, then the state `None`.
const BLOB_RECORD: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";

fn open(dir: &Path) -> FileStorage {
    FileStorage::open_with(
        dir.join("Data.fs"),
        Options {
            blob_dir: Some(dir.join("blobs")),
            ..Options::default()
        },
    )
    .unwrap()
}

/// Commits `oid` as a blob holding `bytes`; returns the tid.
fn commit_blob(fs: &FileStorage, oid: Oid, expected: Tid, bytes: &[u8]) -> Tid {
    let upload = fs.blobs().unwrap().tmp_dir().join(format!("upload-{oid}"));
    std::fs::write(&upload, bytes).unwrap();
    let t = fs.tpc_begin(TransactionMeta::new("u", "blob")).unwrap();
    fs.store_blob(&t, oid, expected, BLOB_RECORD.to_vec(), &upload)
        .unwrap();
    assert!(!upload.exists(), "the storage took the file");
    fs.vote(&t).unwrap();
    fs.finish(&t).unwrap()
}

#[test]
fn a_blob_commits_with_its_transaction_and_each_revision_keeps_its_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path());
    let oid = fs.new_oids(1).unwrap()[0];
    let t1 = commit_blob(&fs, oid, Tid::ZERO, b"first");
    let t2 = commit_blob(&fs, oid, t1, b"second");
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t1).unwrap()).unwrap(),
        b"first"
    );
    let second = fs.load_blob(oid, t2).unwrap();
    assert_eq!(std::fs::read(&second).unwrap(), b"second");
    // ZODB's bushy layout and name.
    let expected = dir.path().join("blobs").join(format!(
        "0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x{:02x}/{}",
        oid.0,
        zodb_storage::blob::blob_file_name(t2)
    ));
    assert_eq!(second, expected);
    assert!(matches!(
        fs.load_blob(oid, Tid(t2.0 + 1)),
        Err(StorageError::PosKey { .. })
    ));
    // Committed files are read-only.
    let mode = std::fs::metadata(&second).unwrap().permissions();
    assert!(mode.readonly());
    fs.close().unwrap();
    let fs = open(dir.path());
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t1).unwrap()).unwrap(),
        b"first"
    );
}

#[test]
fn an_aborted_blob_leaves_no_file() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path());
    let oid = fs.new_oids(1).unwrap()[0];
    let upload = dir.path().join("upload");
    std::fs::write(&upload, b"never").unwrap();
    let t = fs.tpc_begin(TransactionMeta::new("u", "")).unwrap();
    fs.store_blob(&t, oid, Tid::ZERO, BLOB_RECORD.to_vec(), &upload)
        .unwrap();
    fs.vote(&t).unwrap();
    fs.abort(&t);
    let tmp = fs.blobs().unwrap().tmp_dir();
    assert_eq!(std::fs::read_dir(&tmp).unwrap().count(), 0, "tmp/ is empty");
    assert!(!fs.blobs().unwrap().oid_dir(oid).exists());
}

#[test]
fn undoing_a_blob_change_brings_the_earlier_file_back() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path());
    let oid = fs.new_oids(1).unwrap()[0];
    let t1 = commit_blob(&fs, oid, Tid::ZERO, b"first");
    let t2 = commit_blob(&fs, oid, t1, b"second");
    let t = fs.tpc_begin(TransactionMeta::new("u", "undo")).unwrap();
    fs.undo(&t, t2).unwrap();
    fs.vote(&t).unwrap();
    let t3 = fs.finish(&t).unwrap();
    let (_, serial) = fs.load(oid).unwrap();
    assert_eq!(serial, t3);
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t3).unwrap()).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t2).unwrap()).unwrap(),
        b"second"
    );
}

#[test]
fn a_storage_without_a_blob_directory_refuses_blobs() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let upload = dir.path().join("upload");
    std::fs::write(&upload, b"x").unwrap();
    let t = fs.tpc_begin(TransactionMeta::new("u", "")).unwrap();
    let e = fs
        .store_blob(&t, Oid(1), Tid::ZERO, BLOB_RECORD.to_vec(), &upload)
        .unwrap_err();
    assert!(matches!(e, StorageError::Unsupported(_)), "{e}");
    assert!(upload.exists(), "the file is left to its owner");
}

fn python(args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    test_support::python::run_ok("blobs.py", &args)
}

#[test]
fn blobs_written_by_python_zodb_are_found_here() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("Data.fs");
    let blobs = dir.path().join("blobs");
    let out = python(&["write", data_fs.to_str().unwrap(), blobs.to_str().unwrap()]);
    let ids: Vec<u64> = out
        .split_whitespace()
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .collect();
    let (oid, t1, t2) = (Oid(ids[0]), Tid(ids[1]), Tid(ids[2]));
    let fs = open(dir.path());
    assert_eq!(
        fs.blobs().unwrap().layout(),
        zodb_storage::blob::Layout::Bushy
    );
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t1).unwrap()).unwrap(),
        b"first"
    );
    assert_eq!(
        std::fs::read(fs.load_blob(oid, t2).unwrap()).unwrap(),
        b"second"
    );
    // And a revision committed here is one Python reads.
    let t3 = commit_blob(&fs, oid, t2, b"third, from bbru");
    fs.close().unwrap();
    let out = python(&["read", data_fs.to_str().unwrap(), blobs.to_str().unwrap()]);
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "current b'third, from bbru'", "{out}");
    assert_eq!(
        lines[1],
        format!("{:016x} b'third, from bbru'", t3.0),
        "{out}"
    );
    assert_eq!(lines[2], format!("{:016x} b'second'", t2.0), "{out}");
    assert_eq!(lines[3], format!("{:016x} b'first'", t1.0), "{out}");
}

#[test]
fn a_pack_retires_the_blob_files_of_dropped_revisions_and_collected_objects() {
    let dir = tempfile::tempdir().unwrap();
    let fs = open(dir.path());
    // New oids start after the root's (0).
    let oids = fs.new_oids(2).unwrap();
    let (root, kept, lost) = (Oid(0), oids[0], oids[1]);
    // The root refers to `kept`; `lost` is referred to by nothing.
    let t = fs.tpc_begin(TransactionMeta::new("u", "root")).unwrap();
    fs.store(
        &t,
        root,
        Tid::ZERO,
        test_support::conformance::record(0, &[kept]),
    )
    .unwrap();
    fs.vote(&t).unwrap();
    fs.finish(&t).unwrap();
    let k1 = commit_blob(&fs, kept, Tid::ZERO, b"kept, first");
    let k2 = commit_blob(&fs, kept, k1, b"kept, second");
    let l1 = commit_blob(&fs, lost, Tid::ZERO, b"lost");
    let blobs = fs.blobs().unwrap();
    let (old_k1, cur_k2, old_l1) = (
        blobs.path(kept, k1),
        blobs.path(kept, k2),
        blobs.path(lost, l1),
    );
    fs.pack(Tid(k2.0.max(l1.0) + 1), true).unwrap();
    assert!(cur_k2.exists(), "the current revision stays");
    assert_eq!(
        std::fs::read(fs.load_blob(kept, k2).unwrap()).unwrap(),
        b"kept, second"
    );
    assert!(!old_k1.exists() && !old_l1.exists(), "dropped revisions go");
    assert!(
        !blobs.oid_dir(lost).exists(),
        "with their empty directories"
    );
    // Kept beside, as the old Data.fs is (Python's pack-keep-old).
    let old = blobs.old_root();
    let moved = old.join(old_k1.strip_prefix(blobs.root()).unwrap());
    assert_eq!(std::fs::read(moved).unwrap(), b"kept, first");
}
