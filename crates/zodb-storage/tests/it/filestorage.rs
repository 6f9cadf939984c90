//! FileStorage specifics: the bytes of a commit, pack against Python's own
//! pack of the same file, and readers at old snapshots while commits and a
//! pack run.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use test_support::conformance::record;
use test_support::fixtures;
use zodb_storage::filestorage::check_file;
use zodb_storage::{FileStorage, Oid, Storage, Tid, TransactionMeta};

#[test]
fn finish_writes_the_transaction_and_abort_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let fs = FileStorage::open(&path).unwrap();
    assert_eq!(fs::read(&path).unwrap(), b"FS30");
    let t = fs
        .tpc_begin(TransactionMeta::new("alice", "first"))
        .unwrap();
    fs.store(&t, Oid(0), Tid::ZERO, record(1, &[])).unwrap();
    fs.vote(&t).unwrap();
    // A vote checks and locks; the bytes are written at finish.
    assert_eq!(fs::read(&path).unwrap(), b"FS30");
    assert_eq!(fs.end(), 4, "not visible before finish");
    let tid = fs.finish(&t).unwrap();
    let bytes = fs::read(&path).unwrap();
    assert_eq!(bytes[4 + 16], b' ', "committed status");
    assert_eq!(&bytes[4..12], &tid.to_bytes());
    assert_eq!(fs.end(), bytes.len() as u64);
    assert_eq!(fs.load(Oid(0)).unwrap(), (record(1, &[]), tid));

    // An aborted vote leaves nothing behind.
    let t = fs
        .tpc_begin(TransactionMeta::new("alice", "second"))
        .unwrap();
    fs.store(&t, Oid(0), tid, record(2, &[])).unwrap();
    fs.vote(&t).unwrap();
    fs.abort(&t);
    assert_eq!(fs::read(&path).unwrap(), bytes);
    fs.close().unwrap();
    check_file(&path).unwrap();
}

#[test]
fn files_the_storage_creates_are_readable_by_their_owner_only() {
    use std::os::unix::fs::PermissionsExt;

    let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o777;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let storage = FileStorage::open(&path).unwrap();
    let mut tid = Tid::ZERO;
    for n in 0..2 {
        let t = storage.tpc_begin(TransactionMeta::new("u", "d")).unwrap();
        storage.store(&t, Oid(0), tid, record(n, &[])).unwrap();
        storage.vote(&t).unwrap();
        tid = storage.finish(&t).unwrap();
    }
    assert_eq!(mode(&path), 0o600, "Data.fs");
    assert_eq!(mode(&dir.path().join("Data.fs.lock")), 0o600, "the lock");
    storage
        .pack(Tid::now().later_than(storage.last_transaction()), true)
        .unwrap();
    assert_eq!(mode(&path), 0o600, "the packed Data.fs");
    storage.close().unwrap();
    assert_eq!(mode(&dir.path().join("Data.fs.index")), 0o600, "the index");
    // A mode its owner chose is kept by a pack.
    fs::set_permissions(&path, fs::Permissions::from_mode(0o640)).unwrap();
    let storage = FileStorage::open(&path).unwrap();
    let t = storage.tpc_begin(TransactionMeta::new("u", "d")).unwrap();
    storage.store(&t, Oid(0), tid, record(3, &[])).unwrap();
    storage.vote(&t).unwrap();
    storage.finish(&t).unwrap();
    storage
        .pack(Tid::now().later_than(storage.last_transaction()), true)
        .unwrap();
    assert_eq!(mode(&path), 0o640);
    storage.close().unwrap();
}

#[test]
fn metadata_too_long_for_the_format_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let err = fs
        .tpc_begin(TransactionMeta::new(vec![b'u'; 70_000], "x"))
        .unwrap_err();
    assert!(err.to_string().contains("user name too long"), "{err}");
}

#[test]
fn pack_of_the_python_fixture_matches_python_byte_for_byte() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixtures::copy_to("unpacked.fs", dir.path());
    let fs = FileStorage::open(&path).unwrap();
    // 2026-01-02 03:10:08 UTC, between T7 and T8, as the fixture was packed.
    fs.pack(Tid::from_unix_seconds(1_767_323_408.0), true)
        .unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        fs::read(fixtures::path("Data.fs")).unwrap()
    );
    assert_eq!(
        fs::read(dir.path().join("unpacked.fs.old")).unwrap(),
        fs::read(fixtures::path("unpacked.fs")).unwrap()
    );
    // The index saved after the pack is the one Python saved.
    assert_eq!(
        fs::read(dir.path().join("unpacked.fs.index")).unwrap(),
        fs::read(fixtures::path("Data.fs.index")).unwrap()
    );
    // Packing again to the same time finds nothing to do.
    fs.pack(Tid::from_unix_seconds(1_767_323_408.0), true)
        .unwrap();
    assert_eq!(
        fs::read(&path).unwrap(),
        fs::read(fixtures::path("Data.fs")).unwrap()
    );
    // Loads after the pack see the packed file.
    assert!(
        fs.load(Oid(9)).unwrap_err().is_pos_key(),
        "garbage collected"
    );
    fs.load(Oid(1)).unwrap();
}

#[test]
fn pack_refuses_a_dangling_reference_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let fs = FileStorage::open(&path).unwrap();
    let t = fs.tpc_begin(TransactionMeta::new("u", "dangling")).unwrap();
    fs.store(&t, Oid(0), Tid::ZERO, record(0, &[Oid(5)]))
        .unwrap();
    fs.finish(&t).unwrap();
    let before = fs::read(&path).unwrap();
    let err = fs
        .pack(Tid::now().later_than(fs.last_transaction()), true)
        .unwrap_err();
    assert!(err.to_string().contains("0000000000000005"), "{err}");
    assert_eq!(fs::read(&path).unwrap(), before);
    assert!(!dir.path().join("Data.fs.pack").exists());
}

#[test]
fn readers_keep_their_snapshot_while_commits_and_a_pack_run() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FileStorage::open(dir.path().join("Data.fs")).unwrap());
    // Root -> 1..=20; each object gets a few revisions.
    let mut serials = vec![Tid::ZERO; 21];
    let refs: Vec<Oid> = (1..=20).map(Oid).collect();
    let mut snapshots = Vec::new();
    for round in 0..5i64 {
        let t = fs
            .tpc_begin(TransactionMeta::new("w", format!("round {round}")))
            .unwrap();
        fs.store(&t, Oid(0), serials[0], record(round, &refs))
            .unwrap();
        for oid in 1..=20u64 {
            fs.store(
                &t,
                Oid(oid),
                serials[oid as usize],
                record(round * 100 + oid as i64, &[]),
            )
            .unwrap();
        }
        let tid = fs.finish(&t).unwrap();
        serials.iter_mut().for_each(|s| *s = tid);
        snapshots.push((tid, round));
    }
    let stop = Arc::new(AtomicBool::new(false));
    let reader = {
        let fs = Arc::clone(&fs);
        let stop = Arc::clone(&stop);
        let snapshots = snapshots.clone();
        std::thread::spawn(move || {
            let mut reads = 0u64;
            while !stop.load(Ordering::Relaxed) || reads < 1000 {
                for &(tid, round) in &snapshots[3..] {
                    let before = Tid(tid.0 + 1);
                    for oid in [1u64, 7, 20] {
                        let rev = fs.load_before(Oid(oid), before).unwrap().unwrap();
                        assert_eq!(rev.data, record(round * 100 + oid as i64, &[]));
                        reads += 1;
                    }
                }
            }
            reads
        })
    };
    let writer = {
        let fs = Arc::clone(&fs);
        let mut serials = serials.clone();
        std::thread::spawn(move || {
            for round in 5..40i64 {
                let t = fs
                    .tpc_begin(TransactionMeta::new("w", format!("round {round}")))
                    .unwrap();
                let oid = 1 + (round as u64 % 20);
                fs.store(
                    &t,
                    Oid(oid),
                    serials[oid as usize],
                    record(round * 100 + oid as i64, &[]),
                )
                .unwrap();
                serials[oid as usize] = fs.finish(&t).unwrap();
            }
        })
    };
    // Pack to just after round 3: rounds 3 and 4 stay readable.
    fs.pack(snapshots[3].0, true).unwrap();
    writer.join().unwrap();
    stop.store(true, Ordering::Relaxed);
    assert!(reader.join().unwrap() >= 1000);
    assert!(
        fs.load_before(Oid(1), snapshots[1].0).unwrap().is_none(),
        "packed away"
    );
    fs.close().unwrap();
    check_file(&dir.path().join("Data.fs")).unwrap();
}

#[test]
fn one_transaction_can_undo_several_that_touched_the_same_object() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let fs = FileStorage::open(&path).unwrap();
    let commit = |serial: Tid, value: i64| {
        let t = fs
            .tpc_begin(TransactionMeta::new("u", format!("set {value}")))
            .unwrap();
        fs.store(&t, Oid(1), serial, record(value, &[])).unwrap();
        fs.finish(&t).unwrap()
    };
    let t1 = commit(Tid::ZERO, 1);
    let t2 = commit(t1, 2);
    let t3 = commit(t2, 3);
    let t = fs
        .tpc_begin(TransactionMeta::new("admin", "undo t3 and t2"))
        .unwrap();
    fs.undo(&t, t3).unwrap();
    fs.undo(&t, t2).unwrap();
    let u = fs.finish(&t).unwrap();
    assert_eq!(fs.load(Oid(1)).unwrap(), (record(1, &[]), u));
    // Undoing t2 alone now conflicts: the undo above changed the object
    // after t2.
    let t = fs
        .tpc_begin(TransactionMeta::new("admin", "bad order"))
        .unwrap();
    fs.undo(&t, t2).unwrap();
    assert!(matches!(
        fs.vote(&t),
        Err(zodb_storage::StorageError::Undo(_))
    ));
    fs.abort(&t);
    fs.close().unwrap();
    check_file(&path).unwrap();
}

/// Where the full-disk child writes; set by the parent test.
const FULL_DISK_DIR: &str = "BBRU_FULL_DISK_DIR";

/// Run only by `a_full_disk_fails_the_commit_and_loses_nothing`, in a child
/// process whose file size limit (`ulimit -f`) stands in for a full disk:
/// commits until one fails, then checks the storage is still usable, and
/// logs the tid of every acknowledged commit.
#[test]
#[ignore = "run as a child process by a_full_disk_fails_the_commit_and_loses_nothing"]
fn full_disk_child() {
    let dir = std::env::var(FULL_DISK_DIR).expect("run by the parent test");
    let fs = FileStorage::open(Path::new(&dir).join("Data.fs")).unwrap();
    // The log of acknowledged commits lives outside the limit's reach only
    // in size: each line is small and written before the next commit.
    let mut log = fs::File::create(Path::new(&dir).join("acknowledged.txt")).unwrap();
    let mut serial = Tid::ZERO;
    let mut failure = None;
    for i in 0..10_000 {
        let t = fs
            .tpc_begin(TransactionMeta::new("u", format!("commit {i}")))
            .unwrap();
        fs.store(&t, Oid(0), serial, record(i, &[Oid(0); 50]))
            .unwrap();
        match fs.finish(&t) {
            Ok(tid) => {
                serial = tid;
                use std::io::Write;
                writeln!(log, "{tid}").unwrap();
            }
            Err(e) => {
                fs.abort(&t);
                failure = Some(e);
                break;
            }
        }
    }
    let failure = failure.expect("the size limit was reached");
    println!("failure: {failure}");
    // The failed commit was cut back off: reads and the file are intact.
    assert_eq!(fs.load(Oid(0)).unwrap().1, serial);
    fs.close().unwrap();
}

#[test]
fn a_full_disk_fails_the_commit_and_loses_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let exe = std::env::current_exe().unwrap();
    // bash ignores SIGXFSZ so that the write fails with EFBIG instead of
    // killing the process; ignored signals stay ignored across exec.
    let out = std::process::Command::new("bash")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" --ignored --exact filestorage::full_disk_child --nocapture --test-threads 1")
        .arg(&exe)
        .env(FULL_DISK_DIR, dir.path())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("failure:"), "{stdout}");
    assert!(
        stdout.contains("File too large") || stdout.contains("os error 27"),
        "{stdout}"
    );
    let acknowledged: Vec<Tid> = fs::read_to_string(dir.path().join("acknowledged.txt"))
        .unwrap()
        .lines()
        .map(|h| Tid(u64::from_str_radix(h, 16).unwrap()))
        .collect();
    assert!(acknowledged.len() > 10, "{stdout}");
    let path = dir.path().join("Data.fs");
    check_file(&path).unwrap();
    let fs = FileStorage::open(&path).unwrap();
    let found: Vec<Tid> = fs
        .iterator(None, None)
        .unwrap()
        .map(|t| t.unwrap().tid)
        .collect();
    assert_eq!(
        found, acknowledged,
        "every acknowledged commit is there, and nothing else"
    );
}

#[test]
fn transactions_on_different_objects_vote_side_by_side() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let a = fs.tpc_begin(TransactionMeta::new("u", "a")).unwrap();
    fs.store(&a, Oid(1), Tid::ZERO, record(1, &[])).unwrap();
    let b = fs.tpc_begin(TransactionMeta::new("u", "b")).unwrap();
    fs.store(&b, Oid(2), Tid::ZERO, record(2, &[])).unwrap();
    // Both votes succeed while neither has finished: no global lock.
    fs.vote(&a).unwrap();
    fs.vote(&b).unwrap();
    // Tids follow the order of finishing.
    let tb = fs.finish(&b).unwrap();
    let ta = fs.finish(&a).unwrap();
    assert!(tb < ta);
    assert_eq!(fs.load(Oid(1)).unwrap().1, ta);
    assert_eq!(fs.load(Oid(2)).unwrap().1, tb);
    // An aborted vote leaves no trace and frees its objects.
    let c = fs.tpc_begin(TransactionMeta::new("u", "c")).unwrap();
    fs.store(&c, Oid(1), ta, record(3, &[])).unwrap();
    fs.vote(&c).unwrap();
    let size = fs.end();
    fs.abort(&c);
    assert_eq!(fs.end(), size);
    let d = fs.tpc_begin(TransactionMeta::new("u", "d")).unwrap();
    fs.store(&d, Oid(1), ta, record(4, &[])).unwrap();
    fs.finish(&d).unwrap();
    fs.close().unwrap();
    check_file(&dir.path().join("Data.fs")).unwrap();
}

#[test]
fn a_vote_without_waiting_votes_only_when_nothing_holds_its_objects() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let a = fs.tpc_begin(TransactionMeta::new("u", "a")).unwrap();
    fs.store(&a, Oid(1), Tid::ZERO, record(1, &[])).unwrap();
    assert!(fs.vote_without_waiting(&a).unwrap());
    // Oid 1 is locked by a's vote: b is refused without waiting, and takes nothing.
    let b = fs.tpc_begin(TransactionMeta::new("u", "b")).unwrap();
    fs.store(&b, Oid(1), Tid::ZERO, record(2, &[])).unwrap();
    fs.store(&b, Oid(2), Tid::ZERO, record(3, &[])).unwrap();
    assert!(!fs.vote_without_waiting(&b).unwrap());
    let c = fs.tpc_begin(TransactionMeta::new("u", "c")).unwrap();
    fs.store(&c, Oid(2), Tid::ZERO, record(4, &[])).unwrap();
    assert!(fs.vote_without_waiting(&c).unwrap(), "oid 2 was left free");
    let tc = fs.finish(&c).unwrap();
    let ta = fs.finish(&a).unwrap();
    // b, voted now, meets both commits: its stores were against no revision.
    match fs.vote_without_waiting(&b) {
        Err(zodb_storage::StorageError::Conflicts(c)) => assert_eq!(c.len(), 2),
        other => panic!("expected two conflicts, got {other:?}"),
    }
    fs.abort(&b);
    assert_eq!(fs.load(Oid(1)).unwrap(), (record(1, &[]), ta));
    assert_eq!(fs.load(Oid(2)).unwrap(), (record(4, &[]), tc));
    fs.close().unwrap();
    check_file(&dir.path().join("Data.fs")).unwrap();
}

/// `load_before_with` lends what `load_before` gives, whether the record comes from the
/// record cache or the file, current or older, and fails as it does.
#[test]
fn load_before_with_lends_what_load_before_gives() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let oid = Oid(1);
    let mut tids = Vec::new();
    let mut serial = Tid::ZERO;
    for v in 0..3 {
        let t = fs.tpc_begin(TransactionMeta::new("u", "v")).unwrap();
        fs.store(&t, oid, serial, record(v, &[])).unwrap();
        serial = fs.finish(&t).unwrap();
        tids.push(serial);
    }
    let lent = |before: Tid| {
        let mut got = None;
        let r = fs.load_before_with(oid, before, &mut |rev| {
            got = Some(rev.map(|r| (r.data.to_vec(), r.start, r.end)));
        });
        r.map(|()| got.expect("called once on Ok"))
    };
    let given = |before: Tid| {
        fs.load_before(oid, before)
            .map(|rev| rev.map(|r| (r.data, r.start, r.end)))
    };
    // Twice each: the second current load comes from the record cache.
    for _ in 0..2 {
        for before in [Tid::MAX, tids[2], tids[1], tids[0]] {
            assert_eq!(
                lent(before).unwrap(),
                given(before).unwrap(),
                "before {before:?}"
            );
        }
    }
    assert_eq!(lent(Tid::MAX).unwrap().unwrap().0, record(2, &[]));
    assert_eq!(lent(tids[0]).unwrap(), None);
    assert!(matches!(
        fs.load_before_with(Oid(9), Tid::MAX, &mut |_| panic!("nothing to lend")),
        Err(zodb_storage::StorageError::PosKey { .. })
    ));
}

#[test]
fn concurrent_committers_share_fsyncs_and_lose_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let fs = Arc::new(FileStorage::open(dir.path().join("Data.fs")).unwrap());
    let threads: Vec<_> = (0..8u64)
        .map(|t| {
            let fs = Arc::clone(&fs);
            std::thread::spawn(move || {
                let oid = Oid(100 + t);
                let mut serial = Tid::ZERO;
                for i in 0..200 {
                    let h = fs
                        .tpc_begin(TransactionMeta::new("u", format!("{t}/{i}")))
                        .unwrap();
                    fs.store(&h, oid, serial, record(i, &[])).unwrap();
                    serial = fs.finish(&h).unwrap();
                }
                serial
            })
        })
        .collect();
    let finals: Vec<Tid> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    for (t, serial) in finals.iter().enumerate() {
        assert_eq!(
            fs.load(Oid(100 + t as u64)).unwrap(),
            (record(199, &[]), *serial)
        );
    }
    let tids: Vec<Tid> = fs
        .iterator(None, None)
        .unwrap()
        .map(|t| t.unwrap().tid)
        .collect();
    assert_eq!(tids.len(), 1600);
    assert!(tids.windows(2).all(|w| w[0] < w[1]));
    fs.close().unwrap();
    check_file(&dir.path().join("Data.fs")).unwrap();
}

#[test]
fn records_read_in_file_order_and_out_of_it_are_the_records_stored() {
    // Records of one commit, small and large (some cross the read-ahead window's end,
    // one is larger than the window), read in file order (the window serves them),
    // backwards, and in order again after an older revision of some was read.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let storage = FileStorage::open(&path).unwrap();
    let sizes = |oid: u64| match oid % 50 {
        0 => 20_000,
        7 => 3_000,
        _ => 100 + (oid % 13) as usize * 17,
    };
    let data = |oid: u64, rev: u8| {
        let mut d = record(oid as i64, &[]);
        d.resize(sizes(oid), rev);
        d
    };
    let oids: Vec<u64> = (1..=400).collect();
    let mut tids = Vec::new();
    for rev in [1u8, 2] {
        let t = storage.tpc_begin(TransactionMeta::new("u", "d")).unwrap();
        for &oid in &oids {
            let serial = tids.last().copied().unwrap_or(Tid::ZERO);
            // The second commit changes every other object.
            if rev == 2 && oid.is_multiple_of(2) {
                continue;
            }
            storage.store(&t, Oid(oid), serial, data(oid, rev)).unwrap();
        }
        storage.vote(&t).unwrap();
        tids.push(storage.finish(&t).unwrap());
    }
    storage.close().unwrap();
    let current = |oid: u64| if oid.is_multiple_of(2) { 1 } else { 2 };
    let storage = FileStorage::open(&path).unwrap();
    let check = |order: &mut dyn Iterator<Item = u64>| {
        for oid in order {
            let (d, serial) = storage.load(Oid(oid)).unwrap();
            assert_eq!(d, data(oid, current(oid)), "oid {oid}");
            assert_eq!(serial, tids[current(oid) as usize - 1]);
        }
    };
    check(&mut oids.iter().copied());
    check(&mut oids.iter().rev().copied());
    let old = storage
        .load_before(Oid(3), tids[1])
        .unwrap()
        .expect("the first revision");
    assert_eq!(old.data, data(3, 1));
    check(&mut oids.iter().copied());
    storage.close().unwrap();
}
