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

/// Lines of a source file a reader has to hold in mind: up to its inline `#[cfg(test)]`
/// module, if any.
fn code_lines(text: &str) -> usize {
    text.lines()
        .take_while(|line| line.trim_start() != "#[cfg(test)]")
        .count()
}

/// Whether `path` (from the repository root) is test code: a `tests.rs` or a file under a
/// `tests/` directory, or the test-support crate (the conformance suite is one long list of
/// checks).
fn is_test_code(path: &Path) -> bool {
    let names: Vec<_> = path.iter().map(|n| n.to_string_lossy()).collect();
    names
        .iter()
        .any(|n| n == "tests" || n == "tests.rs" || n == "test-support")
}

/// No room of the house grows into a hall: a library or binary source file under
/// `crates/*/src` holds at most `SOURCE_LINES_MAX` lines before its inline tests, so a
/// newcomer can read a file whole; a file that grows past it is split by job.
#[test]
fn no_source_file_is_over_700_lines_before_its_tests() {
    const SOURCE_LINES_MAX: usize = 700;
    let root = test_support::python::repo_root();
    let files = tracked(&root, ".rs");
    let mut long: Vec<_> = files
        .iter()
        .filter(|f| f.starts_with("crates") && f.iter().nth(2).is_some_and(|n| n == "src"))
        .filter(|f| !is_test_code(f))
        .filter_map(|f| {
            let text = std::fs::read_to_string(root.join(f)).unwrap_or_default();
            let n = code_lines(&text);
            (n > SOURCE_LINES_MAX).then(|| format!("{} ({n} lines)", f.display()))
        })
        .collect();
    long.sort();
    assert!(
        long.is_empty(),
        "these files are over {SOURCE_LINES_MAX} lines before their tests; split them by job: {long:?}"
    );
}

#[test]
fn code_lines_stop_at_the_inline_tests() {
    assert_eq!(code_lines("a\nb\n#[cfg(test)]\nmod tests {}\n"), 2);
    assert_eq!(code_lines("a\nb\n"), 2);
    assert!(is_test_code(Path::new("crates/zodb/src/state/tests.rs")));
    assert!(is_test_code(Path::new(
        "crates/zodb-pickle/src/tests/decode.rs"
    )));
    assert!(!is_test_code(Path::new(
        "crates/zodb/src/connection/mod.rs"
    )));
}
