//! Blobs through `bbru-zeo` with real Python `ClientStorage`s, in both of ZEO's modes:
//! a client blob cache (the file is uploaded in chunks and sent back in chunks) and a
//! blob directory shared by client and server; and what the server wrote read back by
//! Python ZODB's own FileStorage.

use std::ffi::OsStr;

use zeo::wire::{Message, Value};

use crate::bounds::tpc_begin;
use crate::server::{Raw, ServerProcess};

fn python(args: &[&str]) -> String {
    let args: Vec<&OsStr> = args.iter().map(OsStr::new).collect();
    test_support::python::run_ok("zeo_blobs.py", &args)
}

#[test]
fn python_clients_store_and_read_blobs_through_a_blob_cache_and_a_shared_directory() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("Data.fs");
    let blobs = dir.path().join("blobs");
    let mut server = ServerProcess::start(&data_fs, &["--blob-dir", blobs.to_str().unwrap()]);
    let addr = server.address();
    let cache = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();

    // 5 MB: about 90 chunks each way.
    let size = (5_000_000).to_string();
    let written = python(&["write", &addr, &cache("cache-a"), "cache", &size]);
    let read = python(&["read", &addr, &cache("cache-b"), "cache"]);
    assert_eq!(read, written, "a second client's cache gets the same bytes");

    let shared = blobs.to_str().unwrap();
    let written = python(&["write", &addr, shared, "shared", "70000"]);
    assert_eq!(python(&["read", &addr, shared, "shared"]), written);
    assert_eq!(
        python(&["read", &addr, &cache("cache-c"), "cache"]),
        written,
        "what a shared-directory client stored, a caching client reads"
    );

    assert!(server.terminate().success(), "{}", server.log_text());
    let local = python(&["local", data_fs.to_str().unwrap(), shared]);
    assert_eq!(
        local, written,
        "Python's FileStorage reads the server's files"
    );
    let tmp: Vec<_> = std::fs::read_dir(blobs.join("tmp")).unwrap().collect();
    assert!(tmp.is_empty(), "no upload left behind: {tmp:?}");
}

const BLOB_RECORD: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";

/// A blob sent to a server without a blob directory is not silently dropped: the
/// transaction's vote fails and says why.
#[test]
fn a_blob_for_a_server_without_blobs_fails_its_vote() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut c = Raw::register(server.port);
    tpc_begin(&mut c, 1);
    let oid = Value::Bytes(1u64.to_be_bytes().to_vec());
    c.send(&Message::async_call("storeBlobStart", vec![]));
    c.send(&Message::async_call(
        "storeBlobChunk",
        vec![Value::Bytes(b"bytes".to_vec())],
    ));
    c.send(&Message::async_call(
        "storeBlobEnd",
        vec![
            oid,
            Value::Bytes(vec![0; 8]),
            Value::Bytes(BLOB_RECORD.to_vec()),
            Value::Int(1),
        ],
    ));
    c.send(&Message::call(2, "vote", vec![Value::Int(1)]));
    let vote = c.reply_to(2).expect("a reply");
    let (class, payload) = vote.error_parts().expect("the vote fails");
    assert_eq!(class, "ZODB.POSException.StorageTransactionError");
    assert!(
        format!("{payload:?}").contains("no blob directory"),
        "{payload:?}"
    );
}

/// `storeBlobShared` names a file in the object's directory; a name with a directory
/// in it (the server taking any file it can reach) closes the connection.
#[test]
fn a_shared_blob_name_with_a_directory_closes_the_connection() {
    let dir = tempfile::tempdir().unwrap();
    let blobs = dir.path().join("blobs");
    let server = ServerProcess::start(
        &dir.path().join("Data.fs"),
        &["--blob-dir", blobs.to_str().unwrap()],
    );
    let mut c = Raw::register(server.port);
    tpc_begin(&mut c, 1);
    c.send(&Message::async_call(
        "storeBlobShared",
        vec![
            Value::Bytes(1u64.to_be_bytes().to_vec()),
            Value::Bytes(vec![0; 8]),
            Value::Bytes(BLOB_RECORD.to_vec()),
            Value::str("../../../etc/passwd.tmp"),
            Value::Int(1),
        ],
    ));
    assert!(c.closed_by_server());
    assert!(server.log_text().contains("bad file name"));
}
