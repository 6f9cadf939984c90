//! Files kept in their records become blobs, with nothing lost: uploaded while the ZEO
//! server had no blob directory (at most 20 MiB each then), then, once it has one, one moved by an edit (the first
//! write) and the others by `bbru migrate` (idempotent, counting what it did); every
//! file downloads byte for byte as uploaded, through two instances that share one blob
//! cache directory (each in a subdirectory of its own), and the records name blobs.

use std::path::Path;
use std::sync::Arc;

use bbru::model::{Content, ContentRef, Site};
use zodb_storage::{FileStorage, Storage};

use crate::common::{self, Instance, Zeo};
use crate::uploads::admin;

fn bytes(n: usize, seed: u8) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8 ^ seed).collect()
}

/// `(path, bytes in a blob)` of every File and Image of the site in `data_fs`, read with
/// the Rust persistence layer (no server running).
fn files_in(data_fs: &Path) -> Vec<(String, bool)> {
    let storage = Arc::new(FileStorage::open_read_only(data_fs).unwrap());
    let db = zodb::DB::open(storage.clone() as Arc<dyn Storage>).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let site = Site::find(&tx).unwrap().expect("a site");
    let mut out = Vec::new();
    let mut folders = vec![(String::new(), tx.get(site).unwrap().content)];
    while let Some((path, folder)) = folders.pop() {
        let folder = tx.get(folder).unwrap();
        for item in folder.items.iter(&tx).unwrap() {
            let (name, any) = item.unwrap();
            let path = format!("{path}/{name}");
            match ContentRef::resolve(&tx, &any)
                .unwrap()
                .unwrap()
                .load(&tx)
                .unwrap()
            {
                Content::Folder(r, _) => folders.push((path, r)),
                Content::File(_, f) => out.push((path, f.blob.is_some())),
                Content::Image(_, i) => out.push((path, i.blob.is_some())),
                Content::Page(..) => {}
            }
        }
    }
    out.sort();
    out
}

fn migrate(dir: &Path, zeo: &str) -> String {
    let out = common::bbru(dir, &["migrate", "--zeo", zeo]);
    let text = common::output_text(&out);
    assert!(out.status.success(), "bbru migrate: {text}");
    text
}

#[test]
fn inline_files_move_into_blobs_by_edit_and_by_migrate_with_nothing_lost() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    let data_fs = root.join("Data.fs");
    let site = common::write_site_config(root);
    let shared_cache = root.join("blob-cache");
    let storage_lines = format!(
        "blob_cache_dir = {:?}\n",
        shared_cache.display().to_string()
    );

    // A server without a blob directory: files stay in their records.
    let mut zeo = Zeo::start(&data_fs);
    let mut one = Instance::start_zeo_configured(root, "one", &site, &zeo.address, &storage_lines);
    let admin_one = admin(&one.base);
    assert_eq!(
        admin_one.add("", "Folder", "docs", "Docs", "").status(),
        303
    );
    let png = [b"\x89PNG\r\n\x1a\n".as_slice(), &bytes(30_000, 7)].concat();
    let uploads = [
        ("", "File", "a.bin", bytes(200_000, 1)),
        ("/docs", "File", "b.bin", bytes(150_000, 2)),
        ("/docs", "Image", "c.png", png),
    ];
    for (folder, kind, name, data) in &uploads {
        let r = admin_one.post_multipart(
            &format!("{folder}/@@add"),
            &[("type", kind), ("title", name)],
            Some((name, "application/octet-stream", data.clone())),
        );
        assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    }
    // In a record, a file may have 20 MiB at most, whatever the site allows.
    let r = admin_one.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Huge")],
        Some(("huge.bin", "application/octet-stream", vec![0; 21 << 20])),
    );
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("20971520 bytes"));
    one.kill();
    zeo.stop();
    assert!(std::fs::metadata(&data_fs).unwrap().len() > 380_000);
    let inline = files_in(&data_fs);
    assert_eq!(
        inline,
        vec![
            ("/a.bin".to_owned(), false),
            ("/docs/b.bin".to_owned(), false),
            ("/docs/c.png".to_owned(), false)
        ]
    );

    // The same database with a blob directory: an edit moves its file's bytes.
    let blob_dir = root.join("server-blobs");
    let address = format!("127.0.0.1:{}", common::free_port());
    let mut zeo = Zeo::start_with(
        &data_fs,
        &address,
        &["--blob-dir", blob_dir.to_str().unwrap()],
    );
    let mut one = Instance::start_zeo_configured(root, "one", &site, &zeo.address, &storage_lines);
    let admin_one = admin(&one.base);
    let r = admin_one.post_multipart("/docs/b.bin/@@edit", &[("title", "B, edited")], None);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());

    // `bbru migrate` moves the other two, then nothing.
    let work = root.join("migrate");
    std::fs::create_dir_all(&work).unwrap();
    let text = migrate(&work, &zeo.address);
    assert!(
        text.contains(
            "2 files moved into blobs (230008 bytes, 1 transactions); 1 were in blobs already"
        ),
        "{text}"
    );
    let text = migrate(&work, &zeo.address);
    assert!(
        text.contains(
            "0 files moved into blobs (0 bytes, 0 transactions); 3 were in blobs already"
        ),
        "{text}"
    );

    // Every file as uploaded, through both instances; each has a cache of its own.
    let two = Instance::start_zeo_configured(root, "two", &site, &zeo.address, &storage_lines);
    let admin_two = admin(&two.base);
    for (folder, _, name, data) in &uploads {
        for browser in [&admin_one, &admin_two] {
            let r = browser.get(&format!("{folder}/{name}"));
            assert_eq!(r.status(), 200);
            assert!(
                r.bytes().unwrap().to_vec() == *data,
                "{folder}/{name} changed"
            );
        }
    }
    assert!(shared_cache.join("0").is_dir() && shared_cache.join("1").is_dir());
    drop(two);
    one.kill();
    zeo.stop();
    let migrated = files_in(&data_fs);
    assert!(migrated.iter().all(|(_, blob)| *blob), "{migrated:?}");
}
