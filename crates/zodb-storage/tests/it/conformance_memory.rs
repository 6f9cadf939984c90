//! Runs the storage conformance suite (`test_support::conformance`) against
//! `MemoryStorage`, the reference for the semantics every engine shares.

use std::sync::Arc;

use zodb_storage::{MemoryStorage, Storage};

test_support::storage_conformance_tests!(|| -> Arc<dyn Storage> {
    Arc::new(MemoryStorage::new("conformance"))
});
