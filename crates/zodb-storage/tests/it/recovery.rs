//! Recovery and damage: a torn or unfinished last transaction is cut off
//! (as Python does), damage before it is an error naming the offset, and no
//! byte sequence makes the engine panic.

use std::fs;
use std::path::Path;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use test_support::fixtures;
use zodb_storage::filestorage::{Options, check_file};
use zodb_storage::{FileStorage, Oid, Storage, StorageError, Tid, TransactionMeta};

const UNPACKED_END: u64 = 4043;

#[test]
fn checkpoint_transaction_is_cut_and_saved() {
    for name in ["crash-checkpoint.fs", "crash-short.fs"] {
        let dir = tempfile::tempdir().unwrap();
        let path = fixtures::copy_to(name, dir.path());
        let size = fs::metadata(&path).unwrap().len();
        assert!(
            check_file(&path).is_err(),
            "{name}: check must fail before recovery"
        );

        let ro = FileStorage::open_read_only(&path).unwrap();
        assert_eq!(ro.end(), UNPACKED_END);
        assert_eq!(
            fs::metadata(&path).unwrap().len(),
            size,
            "read-only open changes nothing"
        );
        drop(ro);

        let fs = FileStorage::open(&path).unwrap();
        let report = fs.open_report().clone();
        assert_eq!(
            report.cut.as_ref().map(|c| c.0),
            Some(UNPACKED_END),
            "{name}"
        );
        let tail = report.saved_tail.expect("tail saved");
        assert_eq!(fs::metadata(&tail).unwrap().len(), size - UNPACKED_END);
        assert_eq!(
            tail.file_name().unwrap().to_str().unwrap(),
            format!("{name}.tr0")
        );
        // The cut transaction's tid is never issued again.
        assert_eq!(fs.last_transaction(), Tid(0x0405_ed64_4ddd_dddd));
        assert_eq!(fs::metadata(&path).unwrap().len(), UNPACKED_END);
        fs.close().unwrap();
        check_file(&path).unwrap();
    }
}

/// Writes a small database with `n` transactions; returns each
/// transaction's end position.
fn write_db(path: &Path, n: u64) -> Vec<u64> {
    let fs = FileStorage::open(path).unwrap();
    let mut ends = vec![fs.end()];
    let mut serials = std::collections::HashMap::new();
    for i in 0..n {
        let t = fs
            .tpc_begin(TransactionMeta::new(format!("user{i}"), format!("txn {i}")))
            .unwrap();
        for oid in [0, i % 3 + 1] {
            let serial = serials.get(&oid).copied().unwrap_or(Tid::ZERO);
            fs.store(
                &t,
                Oid(oid),
                serial,
                test_support::conformance::record(i as i64, &[]),
            )
            .unwrap();
        }
        let tid = fs.finish(&t).unwrap();
        for oid in [0, i % 3 + 1] {
            serials.insert(oid, tid);
        }
        ends.push(fs.end());
    }
    fs.close().unwrap();
    ends
}

#[test]
fn every_cut_inside_the_last_transaction_recovers_the_one_before() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("orig.fs");
    let ends = write_db(&original, 4);
    let bytes = fs::read(&original).unwrap();
    let (start, end) = (ends[3], ends[4]);
    for cut in start + 1..end {
        let path = dir.path().join(format!("cut{cut}.fs"));
        fs::write(&path, &bytes[..cut as usize]).unwrap();
        let fs = FileStorage::open(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(fs.end(), start, "cut at {cut}");
        assert_eq!(fs.iterator(None, None).unwrap().count(), 3);
        fs.load(Oid(0)).unwrap();
        // And it takes new commits on top.
        let (_, serial) = fs.load(Oid(0)).unwrap();
        let t = fs
            .tpc_begin(TransactionMeta::new("after", "recovery"))
            .unwrap();
        fs.store(
            &t,
            Oid(0),
            serial,
            test_support::conformance::record(99, &[]),
        )
        .unwrap();
        fs.finish(&t).unwrap();
        fs.close().unwrap();
        check_file(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        let _ = fs::remove_file(&path);
        let _ = fs::remove_file(dir.path().join(format!("cut{cut}.fs.index")));
        let _ = fs::remove_file(dir.path().join(format!("cut{cut}.fs.tr0")));
    }
}

#[test]
fn every_cut_of_a_python_file_recovers_read_only_without_writing() {
    let bytes = fs::read(fixtures::path("unpacked.fs")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cut.fs");
    for cut in 3895..UNPACKED_END {
        fs::write(&path, &bytes[..cut as usize]).unwrap();
        let fs = FileStorage::open_read_only(&path).unwrap_or_else(|e| panic!("cut at {cut}: {e}"));
        assert_eq!(fs.end(), 3895, "cut at {cut}");
        assert_eq!(fs::metadata(&path).unwrap().len(), cut);
    }
}

#[test]
fn damage_before_the_last_transaction_is_an_error_naming_the_offset() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(fixtures::path("unpacked.fs")).unwrap();
    // T3 at 1724 has tlen 316: break its trailing copy at 2040.
    bytes[2040 + 7] ^= 0xff;
    let path = dir.path().join("bad.fs");
    fs::write(&path, &bytes).unwrap();
    match FileStorage::open(&path) {
        Err(StorageError::Corrupted { offset, reason, .. }) => {
            assert_eq!(offset, 1724, "{reason}");
            assert!(reason.contains("redundant"), "{reason}");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    assert_eq!(fs::read(&path).unwrap(), bytes, "nothing was changed");
    let err = check_file(&path).unwrap_err();
    assert!(err.to_string().contains("1724"), "{err}");
}

#[test]
fn a_few_header_bytes_at_the_end_are_dropped_without_saving() {
    let dir = tempfile::tempdir().unwrap();
    let mut bytes = fs::read(fixtures::path("unpacked.fs")).unwrap();
    bytes.extend_from_slice(&[4, 5, 0xed, 0x70, 0, 0, 0, 0, 0, 0]);
    let path = dir.path().join("junk.fs");
    fs::write(&path, &bytes).unwrap();
    let fs = FileStorage::open(&path).unwrap();
    assert_eq!(
        fs.open_report().cut.as_ref().map(|c| c.0),
        Some(UNPACKED_END)
    );
    assert!(fs.open_report().saved_tail.is_none());
}

#[test]
fn other_files_are_refused_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notfs.fs");
    fs::write(&path, b"PK\x03\x04 this is a zip").unwrap();
    assert!(matches!(
        FileStorage::open(&path),
        Err(StorageError::Format { .. })
    ));
    let mut py2 = fs::read(fixtures::path("unpacked.fs")).unwrap();
    py2[..4].copy_from_slice(b"FS21");
    let path = dir.path().join("py2.fs");
    fs::write(&path, &py2).unwrap();
    let err = FileStorage::open(&path).unwrap_err();
    assert!(err.to_string().contains("zodbupdate"), "{err}");
    FileStorage::open_read_only(&path).unwrap();
}

#[test]
fn a_second_writer_is_locked_out_but_readers_are_not() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let first = FileStorage::open(&path).unwrap();
    assert!(matches!(
        FileStorage::open(&path),
        Err(StorageError::Locked { .. })
    ));
    FileStorage::open_read_only(&path).unwrap();
    first.close().unwrap();
    FileStorage::open(&path).unwrap();
}

#[test]
fn random_damage_never_panics() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("orig.fs");
    write_db(&original, 6);
    let mut sources = vec![fs::read(&original).unwrap()];
    for name in fixtures::storage_fixtures() {
        sources.push(fs::read(fixtures::path(name)).unwrap());
    }
    let mut rng = StdRng::seed_from_u64(0x5eed);
    let path = dir.path().join("damaged.fs");
    for round in 0..400 {
        let mut bytes = sources[round % sources.len()].clone();
        for _ in 0..rng.random_range(1..4) {
            let at = rng.random_range(4..bytes.len());
            bytes[at] = rng.random();
        }
        if round % 7 == 0 {
            let keep = rng.random_range(4..bytes.len());
            bytes.truncate(keep);
        }
        fs::write(&path, &bytes).unwrap();
        let _ = fs::remove_file(dir.path().join("damaged.fs.index"));
        let _ = check_file(&path);
        let opened = FileStorage::open_with(
            &path,
            Options {
                read_only: true,
                ..Options::default()
            },
        );
        if let Ok(s) = opened {
            for oid in 0..12 {
                let _ = s.load(Oid(oid));
                let _ = s.load_before(Oid(oid), Tid(0x0405_ed5c_0000_0000));
                let _ = s.history(Oid(oid), 5);
            }
            for t in s.iterator(None, None).unwrap() {
                if t.is_err() {
                    break;
                }
            }
            let _ = s.undo_log(0, 20);
        }
    }
}
