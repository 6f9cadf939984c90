//! The persistence layer end to end, on MemoryStorage and on a real FileStorage: every
//! behaviour test runs on both (`on_every_storage!`).

mod behaviour;
mod blobs;
mod btree;
mod btree_conflicts;
mod btree_interop;
mod btree_python;
mod fixtures;
mod python;
mod resolve;
mod undo_resolving;
mod zeo;

use std::sync::Arc;

use serde::{Deserialize, Serialize};
use zodb::{PRef, persistent};
use zodb_storage::{FileStorage, MemoryStorage, Storage};

/// A storage for a test, with whatever must live as long as it (a temporary directory).
#[allow(missing_debug_implementations)]
pub struct Backend {
    pub storage: Arc<dyn Storage>,
    pub _dir: Option<tempfile::TempDir>,
}

pub fn memory() -> Backend {
    Backend {
        storage: Arc::new(MemoryStorage::new("test")),
        _dir: None,
    }
}

pub fn file() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let storage = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    Backend {
        storage: Arc::new(storage),
        _dir: Some(dir),
    }
}

/// Instantiates each listed test, a `fn(Backend)`, once per storage.
#[macro_export]
macro_rules! on_every_storage {
    ($($test:ident),* $(,)?) => {
        mod memory {
            $(#[test] fn $test() { super::$test($crate::memory()) })*
        }
        mod file {
            $(#[test] fn $test() { super::$test($crate::file()) })*
        }
    };
}

/// The content type the tests store: a Python-compatible record of class
/// `bbru.content.Page`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub title: String,
    pub body: String,
    pub parent: Option<PRef<Folder>>,
}
persistent!(Page, "bbru.content", "Page");

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Folder {
    pub title: String,
    pub items: std::collections::BTreeMap<String, PRef<Page>>,
}
persistent!(Folder, "bbru.content", "Folder");

pub fn page(title: &str) -> Page {
    Page {
        title: title.into(),
        body: String::new(),
        parent: None,
    }
}
