//! Tidy checks over the whole repository, in the manner of rust-analyzer's: rules a
//! reviewer would otherwise have to remember.  They read the files git tracks, so a new
//! file is checked the moment it is added.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The files git tracks whose names end in `suffix`, as paths from the repository root.
fn tracked(root: &Path, suffix: &str) -> Vec<PathBuf> {
    let out = Command::new("git")
        .arg("-C")
        .arg(root)
        .args(["ls-files", "-z"])
        .output()
        .expect("run git ls-files");
    assert!(out.status.success(), "git ls-files failed");
    out.stdout
        .split(|b| *b == 0)
        .filter(|name| !name.is_empty())
        .map(|name| PathBuf::from(String::from_utf8_lossy(name).into_owned()))
        .filter(|p| p.to_string_lossy().ends_with(suffix))
        .collect()
}

/// Every Rust source file opens with a `//!` doc saying what it owns and why: the first
/// thing a newcomer reads when they open it.
#[test]
fn every_rust_file_opens_with_its_module_doc() {
    let root = test_support::python::repo_root();
    let files = tracked(&root, ".rs");
    assert!(files.len() > 50, "git lists the workspace's sources");
    let missing: Vec<_> = files
        .iter()
        .filter(|f| {
            let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
            !text.trim_start().starts_with("//!")
        })
        .collect();
    assert!(
        missing.is_empty(),
        "these files do not open with a `//!` doc: {missing:?}"
    );
}
