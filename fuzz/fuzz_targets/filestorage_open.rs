//! Arbitrary bytes as a `Data.fs`: opening it read-only, reading every
//! object, walking history and the transaction iterator, and the full
//! check must return errors, never panic or hang.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zodb_storage::{FileStorage, Oid, Storage, Tid};

fuzz_target!(|data: &[u8]| {
    let Ok(dir) = tempfile::tempdir() else { return };
    let path = dir.path().join("Data.fs");
    // Most inputs should at least look like a FileStorage.
    let mut bytes = b"FS30".to_vec();
    bytes.extend_from_slice(data);
    if std::fs::write(&path, &bytes).is_err() {
        return;
    }
    let _ = zodb_storage::filestorage::check_file(&path);
    let Ok(fs) = FileStorage::open_read_only(&path) else { return };
    for oid in 0..8 {
        let _ = fs.load(Oid(oid));
        let _ = fs.load_before(Oid(oid), Tid(u64::MAX / 2));
        let _ = fs.history(Oid(oid), 10);
    }
    if let Ok(it) = fs.iterator(None, None) {
        for t in it.take(1000) {
            if t.is_err() {
                break;
            }
        }
    }
    let _ = fs.undo_log(0, 20);
});
