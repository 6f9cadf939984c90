//! Files and images on blobs (a FileStorage with a blob directory, as `bbru serve`
//! opens an embedded `Data.fs`): the bytes live in the blob's file, a title edit
//! rewrites only the small record, downloads carry an `ETag` and a `Last-Modified`,
//! answer `304` to a matching `If-None-Match` or `If-Modified-Since` and `206` to a
//! `Range` (whole when `If-Range` names another version), and an older revision keeps its
//! own bytes.

use std::sync::Arc;

use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Storage};

use crate::{site_config, start_with};

/// A site on a FileStorage with a blob directory in `dir`, as `bbru serve` opens an
/// embedded `Data.fs`; and the `Data.fs`.
fn site_on_blobs(dir: &std::path::Path) -> (crate::Site, std::path::PathBuf) {
    let data_fs = dir.join("Data.fs");
    let storage = FileStorage::open_with(
        &data_fs,
        Options {
            blob_dir: Some(bbru::startup::blob_dir_of(&data_fs)),
            ..Options::default()
        },
    )
    .unwrap();
    let site = start_with(Arc::new(storage) as Arc<dyn Storage>, site_config(""));
    (site, data_fs)
}

fn bytes(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn files_live_in_blobs_and_download_with_etag_304_and_ranges() {
    let dir = tempfile::tempdir().unwrap();
    let (site, data_fs) = site_on_blobs(dir.path());
    let admin = site.admin();
    let content = bytes(100_000);
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Data")],
        Some(("data.bin", "application/octet-stream", content.clone())),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    // The bytes are in a blob file, not in Data.fs.
    assert!(
        std::fs::metadata(&data_fs).unwrap().len() < 50_000,
        "Data.fs holds the upload"
    );
    let blobs = dir.path().join("blobs");
    assert!(blobs.join(".layout").exists());

    let r = admin.get("/data.bin");
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["accept-ranges"], "bytes");
    assert_eq!(r.headers()["content-length"], "100000");
    let etag = r.headers()["etag"].to_str().unwrap().to_owned();
    let last_modified = r.headers()["last-modified"].to_str().unwrap().to_owned();
    assert!(last_modified.ends_with(" GMT"), "{last_modified}");
    assert_eq!(r.bytes().unwrap().to_vec(), content);

    let get = |headers: &[(&str, &str)]| {
        let mut request = admin.client.get(admin.url("/data.bin"));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().unwrap()
    };
    assert_eq!(get(&[("If-Modified-Since", &last_modified)]).status(), 304);
    let earlier = "Mon, 01 Jan 2001 00:00:00 GMT";
    assert_eq!(get(&[("If-Modified-Since", earlier)]).status(), 200);
    // If-None-Match decides alone when both are sent.
    assert_eq!(
        get(&[
            ("If-None-Match", "\"other\""),
            ("If-Modified-Since", &last_modified)
        ])
        .status(),
        200
    );
    // A Range for the version the client has: 206; for another: the whole file.
    assert_eq!(
        get(&[("Range", "bytes=0-9"), ("If-Range", &etag)]).status(),
        206
    );
    let r = get(&[("Range", "bytes=0-9"), ("If-Range", "\"older\"")]);
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().unwrap().len(), content.len());

    let r = admin
        .client
        .get(admin.url("/data.bin"))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);
    let r = admin
        .client
        .get(admin.url("/data.bin"))
        .header("Range", "bytes=1000-1999")
        .send()
        .unwrap();
    assert_eq!(r.status(), 206);
    assert_eq!(r.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(r.bytes().unwrap().to_vec(), content[1000..2000]);
    let r = admin
        .client
        .get(admin.url("/data.bin"))
        .header("Range", "bytes=100000-")
        .send()
        .unwrap();
    assert_eq!(r.status(), 416);

    // A title edit adds a small record, not the file again.
    let before = std::fs::metadata(&data_fs).unwrap().len();
    let r = admin.post_multipart("/data.bin/@@edit", &[("title", "Renamed")], None);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let grown = std::fs::metadata(&data_fs).unwrap().len() - before;
    assert!(grown < 1024, "a title edit grew Data.fs by {grown} bytes");
    let r = admin.get("/data.bin");
    assert_eq!(
        r.headers()["etag"].to_str().unwrap(),
        etag,
        "same bytes, same ETag"
    );
    assert_eq!(r.bytes().unwrap().to_vec(), content);

    // A new upload is a new blob; the ETag changes.
    let other = bytes(1000);
    let r = admin.post_multipart(
        "/data.bin/@@edit",
        &[("title", "Renamed")],
        Some(("data.bin", "application/octet-stream", other.clone())),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let r = admin.get("/data.bin");
    assert_ne!(r.headers()["etag"].to_str().unwrap(), etag);
    assert_eq!(r.bytes().unwrap().to_vec(), other);
}

/// A JSON `PATCH` that renames a file in a blob keeps its bytes (it once stored the
/// record's empty inline bytes as a new, empty blob).
#[test]
fn a_json_patch_of_the_filename_alone_keeps_the_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (site, _) = site_on_blobs(dir.path());
    let admin = site.admin();
    let content = bytes(50_000);
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Data")],
        Some(("data.bin", "application/octet-stream", content.clone())),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let r = reqwest::blocking::Client::new()
        .patch(admin.url("/data.bin"))
        .basic_auth(crate::ADMIN.0, Some(crate::ADMIN.1))
        .json(&serde_json::json!({"filename": "renamed.bin", "content_type": "text/plain"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 204, "{}", r.text().unwrap());
    let r = admin.get("/data.bin");
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert!(
        r.headers()["content-disposition"]
            .to_str()
            .unwrap()
            .contains("renamed.bin")
    );
    assert_eq!(r.bytes().unwrap().to_vec(), content);
}
