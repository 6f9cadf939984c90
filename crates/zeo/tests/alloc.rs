//! A load of a record read lately allocates nothing but its reply's buffer: the
//! storage lends the record from its cache (`Storage::load_before_with`) and
//! `wire::hot::load_reply_frame` writes the framed reply in one allocation, which is
//! how the server answers a `loadBefore` (`server/connection/reads.rs`). A test binary
//! of its own, as it counts allocations with a global allocator.

use zeo::wire::hot::load_reply_frame;
use zodb_storage::{FileStorage, Oid, Storage, Tid, TransactionMeta};

#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const OBJECTS: u64 = 100;

/// Loads every object as the server does, returning the replies' total length.
fn load_all(fs: &FileStorage, oids: &[Oid]) -> usize {
    let mut total = 0;
    for &oid in oids {
        let mut frame = None;
        fs.load_before_with(oid, Tid::MAX, &mut |rev| {
            frame = Some(load_reply_frame(oid, Tid::MAX, rev));
        })
        .unwrap();
        total += frame.expect("the storage lent the revision").len();
    }
    total
}

#[test]
fn a_load_of_a_record_read_lately_allocates_only_its_reply() {
    let _profiler = dhat::Profiler::builder().testing().build();
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    let oids = fs.new_oids(OBJECTS as usize).unwrap();
    let txn = fs.tpc_begin(TransactionMeta::new("u", "objects")).unwrap();
    for (i, &oid) in oids.iter().enumerate() {
        let record = test_support::conformance::record(i as i64, &[]);
        fs.store(&txn, oid, Tid::ZERO, record).unwrap();
    }
    fs.finish(&txn).unwrap();

    // The first loads read the file (and fill the record cache): they allocate more.
    let first = dhat::HeapStats::get().total_blocks;
    let cold = load_all(&fs, &oids);
    let warm_start = dhat::HeapStats::get().total_blocks;
    assert!(
        warm_start - first > OBJECTS,
        "the first loads read the file"
    );

    let warm = load_all(&fs, &oids);
    let allocations = dhat::HeapStats::get().total_blocks - warm_start;
    assert_eq!(warm, cold, "the same replies");
    assert_eq!(
        allocations, OBJECTS,
        "{allocations} allocations for {OBJECTS} loads of cached records: one each is \
         the reply's buffer"
    );
}
