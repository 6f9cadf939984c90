//! The Rust `ClientStorage` with blobs, against `bbru-zeo` and Python's `runzeo`: a
//! blob stored through one client's cache is uploaded, and another client with an
//! empty cache gets the same bytes back (in chunks); sharing the server's blob
//! directory works without the transfer; the cache stays under its bound.

use std::path::Path;

use zeo::client::{ClientOptions, ClientStorage};
use zodb_storage::{Oid, Storage, Tid, TransactionMeta};

use crate::client::{Kind, Server};
use crate::server::free_port;

const BLOB_RECORD: &[u8] = b"\x80\x03cZODB.blob\nBlob\nq\x00.\x80\x03N.";

fn pattern(len: usize, seed: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect()
}

/// A server of `kind` with a blob directory.
fn start(kind: Kind, dir: &Path) -> Server {
    let address = format!("127.0.0.1:{}", free_port());
    let file = dir.join("Data.fs");
    let blobs = dir.join("server-blobs");
    match kind {
        Kind::Bbru => Server::start(
            kind,
            &address,
            &file,
            &["--blob-dir", blobs.to_str().unwrap()],
        ),
        Kind::Python => {
            let config = dir.join("zeo.conf");
            std::fs::write(
                &config,
                format!(
                    "<zeo>\n  address {address}\n</zeo>\n<filestorage 1>\n  path {}\n  blob-dir {}\n</filestorage>\n",
                    file.display(),
                    blobs.display()
                ),
            )
            .unwrap();
            Server::start_with_config(kind, &address, &file, &config)
        }
    }
}

fn client(address: &str, blob_dir: &Path, shared: bool) -> ClientStorage {
    let mut o = ClientOptions::new(address);
    o.wait_timeout = std::time::Duration::from_secs(10);
    o.blob_dir = Some(blob_dir.to_path_buf());
    o.shared_blob_dir = shared;
    ClientStorage::connect(o).unwrap()
}

/// Commits a new object holding a blob of `bytes`; returns its oid and tid.
fn commit_blob(c: &ClientStorage, bytes: &[u8], scratch: &Path) -> (Oid, Tid) {
    let oid = c.new_oids(1).unwrap()[0];
    let file = scratch.join(format!("upload-{}", oid.0));
    std::fs::write(&file, bytes).unwrap();
    let t = c.tpc_begin(TransactionMeta::new("u", "blob")).unwrap();
    c.store_blob(&t, oid, Tid::ZERO, BLOB_RECORD.to_vec(), &file)
        .unwrap();
    assert!(!file.exists(), "the client took the file");
    c.vote(&t).unwrap();
    (oid, c.finish(&t).unwrap())
}

fn blobs_travel(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(kind, dir.path());
    let writer = client(&server.address, &dir.path().join("cache-a"), false);
    let bytes = pattern(3_000_000, 7);
    let (oid, tid) = commit_blob(&writer, &bytes, dir.path());
    // The writer keeps its upload in its cache.
    assert_eq!(
        std::fs::read(writer.load_blob(oid, tid).unwrap()).unwrap(),
        bytes
    );
    let reader = client(&server.address, &dir.path().join("cache-b"), false);
    let got = reader.load_blob(oid, tid).unwrap();
    assert!(got.starts_with(dir.path().join("cache-b")));
    assert_eq!(std::fs::read(&got).unwrap(), bytes, "sent back in chunks");
    assert!(matches!(
        reader.load_blob(oid, Tid(tid.0 + 1)),
        Err(zodb_storage::StorageError::PosKey { .. })
    ));
    // Sharing the server's directory: no transfer, the same files.
    let shared = client(&server.address, &dir.path().join("server-blobs"), true);
    let bytes2 = pattern(100_000, 9);
    let (oid2, tid2) = commit_blob(&shared, &bytes2, dir.path());
    assert_eq!(
        std::fs::read(reader.load_blob(oid2, tid2).unwrap()).unwrap(),
        bytes2
    );
    assert_eq!(
        std::fs::read(shared.load_blob(oid, tid).unwrap()).unwrap(),
        bytes
    );
    for c in [writer, reader, shared] {
        c.close().unwrap();
    }
    server.kill();
}

#[test]
fn blobs_travel_through_the_cache_and_the_shared_directory_bbru() {
    blobs_travel(Kind::Bbru);
}

#[test]
fn blobs_travel_through_the_cache_and_the_shared_directory_python() {
    blobs_travel(Kind::Python);
}

#[test]
fn the_blob_cache_stays_under_its_bound() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(Kind::Bbru, dir.path());
    let writer = client(&server.address, &dir.path().join("cache-a"), false);
    let blobs: Vec<(Oid, Tid)> = (0..8)
        .map(|i| commit_blob(&writer, &pattern(1_000_000, i), dir.path()))
        .collect();
    let cache = dir.path().join("cache-b");
    let mut o = ClientOptions::new(&server.address);
    o.blob_dir = Some(cache.clone());
    o.blob_cache_bytes = 3_000_000;
    let reader = ClientStorage::connect(o).unwrap();
    for (i, (oid, tid)) in blobs.iter().enumerate() {
        let path = reader.load_blob(*oid, *tid).unwrap();
        assert_eq!(std::fs::read(path).unwrap(), pattern(1_000_000, i as u8));
    }
    let held: u64 = walk(&cache);
    assert!(
        held <= 4_000_000,
        "the cache holds {held} bytes for a 3 MB bound"
    );
    // An evicted revision comes back on demand.
    let (oid, tid) = blobs[0];
    assert_eq!(
        std::fs::read(reader.load_blob(oid, tid).unwrap()).unwrap(),
        pattern(1_000_000, 0)
    );
    server.kill();
}

/// Bytes of the `.blob` files below `dir`.
fn walk(dir: &Path) -> u64 {
    let mut total = 0;
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        let p = e.path();
        if p.is_dir() {
            total += walk(&p);
        } else if p.extension().is_some_and(|x| x == "blob") {
            total += e.metadata().unwrap().len();
        }
    }
    total
}
