//! Whole databases copied through `bbru-zeo` by Python's own tools: a copy into the
//! server (`copyTransactionsFrom`, what zodbconvert runs) is byte for byte the file
//! Python's `runzeo` writes for the same copy; a copy out of it carries every blob
//! revision; repozo backs up and restores what the server wrote.

use std::ffi::OsStr;
use std::path::Path;

use test_support::python;

use crate::client::{Kind, Server};
use crate::path_str;
use crate::server::free_port;

fn zeo_copy(args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    python::run_ok("zeo_copy.py", &args)
}

/// A Python-written history (objects, extensions of several kinds, blobs, a pack, an
/// undo whose records are backpointers) in `dir/source.fs` and `dir/source-blobs`.
fn python_source(dir: &Path) -> (std::path::PathBuf, std::path::PathBuf) {
    let fs = dir.join("source.fs");
    let blobs = dir.join("source-blobs");
    zeo_copy(&["make", path_str(&fs), path_str(&blobs)]);
    (fs, blobs)
}

fn start(kind: Kind, file: &Path, extra: &[&str]) -> Server {
    Server::start(kind, &format!("127.0.0.1:{}", free_port()), file, extra)
}

#[test]
fn a_copy_into_the_server_is_byte_for_byte_the_one_runzeo_writes() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = python_source(dir.path());
    let mut copies = Vec::new();
    for (kind, name) in [(Kind::Python, "runzeo.fs"), (Kind::Bbru, "bbru.fs")] {
        let file = dir.path().join(name);
        let mut server = start(kind, &file, &[]);
        zeo_copy(&["copy", path_str(&source), &server.address]);
        // Every commit was acknowledged after its fsync.
        server.kill();
        copies.push(std::fs::read(&file).unwrap());
    }
    let original = std::fs::read(&source).unwrap();
    assert_eq!(
        copies[0].len(),
        original.len(),
        "runzeo's copy is the original's size"
    );
    assert!(
        copies[1] == copies[0],
        "bbru-zeo's copy ({} bytes) differs from runzeo's ({} bytes) first at byte {:?}",
        copies[1].len(),
        copies[0].len(),
        copies[1].iter().zip(&copies[0]).position(|(a, b)| a != b)
    );
}

#[test]
fn a_python_written_database_with_blobs_is_served_and_copied_out_with_every_blob() {
    let dir = tempfile::tempdir().unwrap();
    let (source, source_blobs) = python_source(dir.path());
    let listing = zeo_copy(&["blobs", path_str(&source), path_str(&source_blobs)]);
    assert_eq!(
        listing
            .lines()
            .filter(|l| !l.starts_with("records"))
            .count(),
        2,
        "two revisions of one blob: {listing}"
    );

    // bbru-zeo serves Python's files as they are (the server writes nothing to them
    // here); Python copies everything out through a client blob cache.
    let served = dir.path().join("served.fs");
    let served_blobs = dir.path().join("served-blobs");
    std::fs::copy(&source, &served).unwrap();
    copy_dir(&source_blobs, &served_blobs);
    let mut server = start(
        Kind::Bbru,
        &served,
        &["--blob-dir", path_str(&served_blobs)],
    );
    let out = dir.path().join("out.fs");
    let out_blobs = dir.path().join("out-blobs");
    zeo_copy(&[
        "fetch",
        &server.address,
        path_str(&dir.path().join("cache")),
        path_str(&out),
        path_str(&out_blobs),
    ]);
    server.kill();
    assert_eq!(
        zeo_copy(&["blobs", path_str(&out), path_str(&out_blobs)]),
        listing,
        "the copy holds every record and every blob revision, byte for byte"
    );
    assert_eq!(
        std::fs::read(&out).unwrap(),
        std::fs::read(&source).unwrap(),
        "and the same Data.fs"
    );
}

#[test]
fn repozo_backs_up_and_restores_what_the_server_wrote() {
    let dir = tempfile::tempdir().unwrap();
    let (source, _) = python_source(dir.path());
    let file = dir.path().join("Data.fs");
    let blobs = dir.path().join("blobs");
    let mut server = start(Kind::Bbru, &file, &["--blob-dir", path_str(&blobs)]);
    zeo_copy(&["copy", path_str(&source), &server.address]);
    let written = python::run_ok(
        "zeo_blobs.py",
        &[
            OsStr::new("write"),
            OsStr::new(&server.address),
            blobs.as_os_str(),
            OsStr::new("shared"),
            OsStr::new("300000"),
        ],
    );
    server.kill();

    let repository = dir.path().join("backups");
    std::fs::create_dir(&repository).unwrap();
    let restored = dir.path().join("restored.fs");
    for args in [
        vec!["-B", "-r", path_str(&repository), "-f", path_str(&file)],
        vec!["-R", "-r", path_str(&repository), "-o", path_str(&restored)],
    ] {
        let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
        let out = python::run_module("ZODB.scripts.repozo", &args);
        assert!(
            out.status.success(),
            "repozo {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    assert_eq!(
        std::fs::read(&restored).unwrap(),
        std::fs::read(&file).unwrap(),
        "repozo restores the server's file byte for byte"
    );
    // The restored file finds its blobs in the server's blob directory.
    let local = python::run_ok(
        "zeo_blobs.py",
        &[OsStr::new("local"), restored.as_os_str(), blobs.as_os_str()],
    );
    assert_eq!(local, written);
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).unwrap();
        }
    }
}
