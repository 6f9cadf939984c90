//! Runs the storage conformance suite against `FileStorage` on a fresh file
//! in a temporary directory, and again on a file reopened after its first
//! commits to the root (so the saved index is in play).

use std::ops::Deref;

use zodb_storage::FileStorage;

/// A storage with the directory that holds it; the directory goes when the
/// test ends.
pub struct OnDisk {
    storage: FileStorage,
    _dir: tempfile::TempDir,
}

impl Deref for OnDisk {
    type Target = FileStorage;
    fn deref(&self) -> &FileStorage {
        &self.storage
    }
}

pub fn fresh() -> OnDisk {
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    OnDisk { storage, _dir: dir }
}

mod fresh_file {
    test_support::storage_conformance_tests!(super::fresh);
}

mod reopened_file {
    use test_support::conformance::{commit, record};
    use zodb_storage::{Oid, Storage, Tid};

    use super::*;

    fn reopened() -> OnDisk {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let first = FileStorage::open(&path).unwrap();
        let t = commit(
            &first,
            "before reopen",
            &[(Oid::ROOT, Tid::ZERO, record(1, &[]))],
        );
        commit(&first, "again", &[(Oid::ROOT, t, record(2, &[]))]);
        first.close().unwrap();
        drop(first);
        let storage = FileStorage::open(&path).unwrap();
        assert!(storage.open_report().used_saved_index);
        OnDisk { storage, _dir: dir }
    }

    test_support::storage_conformance_tests!(reopened);
}
