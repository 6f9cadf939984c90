//! The files Python ZODB 6.4 wrote (`tests/fixtures/zodb` in the repository, made by
//! `tools/make-fixtures.sh`) and Python's reading of them (`expected.json`).
//!
//! Tests never open a fixture read-write in place: [`copy_to`] first.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde_json::Value;

/// `tests/fixtures/zodb` of the repository, or `$BBRU_FIXTURES`.
pub fn dir() -> PathBuf {
    if let Some(d) = std::env::var_os("BBRU_FIXTURES") {
        return PathBuf::from(d);
    }
    let root = crate::python::repo_root();
    let d = root.join("tests/fixtures/zodb");
    assert!(
        d.is_dir(),
        "fixtures not found at {} (set BBRU_FIXTURES)",
        d.display()
    );
    d
}

pub fn path(name: &str) -> PathBuf {
    dir().join(name)
}

/// Python's reading of every fixture.
pub fn expected() -> &'static Value {
    static EXPECTED: OnceLock<Value> = OnceLock::new();
    EXPECTED.get_or_init(|| {
        let text = std::fs::read_to_string(path("expected.json")).expect("read expected.json");
        serde_json::from_str(&text).expect("parse expected.json")
    })
}

/// The fixture files that Python opens as storages (not the crash ones).
pub fn storage_fixtures() -> Vec<&'static str> {
    vec![
        "Data.fs",
        "unpacked.fs",
        "handmade.fs",
        "multi-main.fs",
        "multi-catalog.fs",
        "blob.fs",
    ]
}

/// Copies fixture `name` (with its `.index`, if any) into `dir`; returns
/// the copy's path.
pub fn copy_to(name: &str, dir: &Path) -> PathBuf {
    let target = dir.join(name);
    std::fs::copy(path(name), &target).expect("copy fixture");
    let index = path(&format!("{name}.index"));
    if index.exists() {
        std::fs::copy(index, dir.join(format!("{name}.index"))).expect("copy fixture index");
    }
    target
}

/// Parses 16 hex digits.
pub fn hex_u64(s: &str) -> u64 {
    u64::from_str_radix(s, 16).expect("16 hex digits")
}
