//! `copy_transactions`: a Python-written history (extensions, blobs, a pack, an undo's
//! backpointers) copied into a FileStorage is the same file byte for byte with the same
//! blob revisions; a destination without blobs refuses a blob file rather than drop it.

use std::ffi::OsStr;
use std::path::Path;

use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Storage, StorageError, copy_transactions};

fn zeo_copy(args: &[&Path]) -> String {
    let mut all: Vec<&OsStr> = vec![OsStr::new(args[0].to_str().unwrap())];
    all.extend(args[1..].iter().map(|p| p.as_os_str()));
    test_support::python::run_ok("zeo_copy.py", &all)
}

fn open(file: &Path, blobs: Option<&Path>) -> FileStorage {
    FileStorage::open_with(
        file,
        Options {
            blob_dir: blobs.map(Path::to_path_buf),
            ..Options::default()
        },
    )
    .unwrap()
}

#[test]
fn a_python_history_with_blobs_copies_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let (src, src_blobs) = (
        dir.path().join("source.fs"),
        dir.path().join("source-blobs"),
    );
    zeo_copy(&[Path::new("make"), &src, &src_blobs]);
    let (dst, dst_blobs) = (dir.path().join("copy.fs"), dir.path().join("copy-blobs"));
    {
        let source = open(&src, Some(&src_blobs));
        let dest = open(&dst, Some(&dst_blobs));
        let mut seen = 0;
        let stats = copy_transactions(&source, &dest, None, |s| seen = s.transactions).unwrap();
        assert_eq!(seen, stats.transactions, "progress heard every transaction");
        assert_eq!(stats.blobs, 2, "{stats:?}");
        assert_eq!(dest.last_transaction(), source.last_transaction());
        dest.close().unwrap();
        source.close().unwrap();
    }
    assert_eq!(
        std::fs::read(&dst).unwrap(),
        std::fs::read(&src).unwrap(),
        "the same transactions, records and backpointers"
    );
    assert_eq!(
        zeo_copy(&[Path::new("blobs"), &dst, &dst_blobs]),
        zeo_copy(&[Path::new("blobs"), &src, &src_blobs]),
        "Python reads every blob revision of the copy"
    );
    let tmp: Vec<_> = std::fs::read_dir(dst_blobs.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "nothing left in tmp: {tmp:?}");
}

#[test]
fn a_destination_without_blobs_refuses_a_blob_file_and_keeps_what_came_before() {
    let dir = tempfile::tempdir().unwrap();
    let (src, src_blobs) = (
        dir.path().join("source.fs"),
        dir.path().join("source-blobs"),
    );
    zeo_copy(&[Path::new("make"), &src, &src_blobs]);
    let source = open(&src, Some(&src_blobs));
    let dest = open(&dir.path().join("copy.fs"), None);
    let err = copy_transactions(&source, &dest, None, |_| {}).unwrap_err();
    assert!(
        matches!(&err, StorageError::Unsupported(m) if m.contains("would be lost")),
        "{err}"
    );
    // Everything before the first blob is there; the failed transaction is not.
    let copied = dest.iterator(None, None).unwrap().count();
    let before_blob = source
        .iterator(None, None)
        .unwrap()
        .map(Result::unwrap)
        .take_while(|t| {
            !t.records
                .iter()
                .any(|r| r.data.as_deref().is_some_and(zodb_storage::is_blob_record))
        })
        .count();
    assert_eq!(copied, before_blob);
}
