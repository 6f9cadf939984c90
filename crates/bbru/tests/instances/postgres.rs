//! Two `bbru serve --postgres` instances on one PostgreSQL database, no server of ours
//! in between: what one commits the other serves on its very next request (each
//! request's transaction polls the database first), files included (a blob in the
//! database, each instance's blob cache its own); an instance on a database without
//! the schema refuses to start and says how to make it.

use zodb_pg::PgStorage;

use super::added_through_one_seen_through_two;
use crate::common::{Instance, Storage, bbru, output_text, write_site_config};

#[test]
fn two_instances_share_one_postgres_database() {
    let db = test_support::pg::fresh_database();
    drop(PgStorage::create(&db.url).expect("the schema"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let site_config = write_site_config(root);
    let storage = Storage::Postgres(db.url.clone());
    let one = Instance::start(root, "one", &site_config, &storage);
    let two = Instance::start(root, "two", &site_config, &storage);
    let (mut admin, mut visitor) = added_through_one_seen_through_two(&one, &two);
    admin.submit(
        &two,
        "/news/@@edit",
        &[("title", "News"), ("body", "The **second** version.")],
    );
    let html = visitor.page(&one, "/news");
    assert!(html.contains("<strong>second</strong>"), "{html}");
}

#[test]
fn a_database_without_the_schema_is_refused_with_the_command_that_makes_it() {
    let db = test_support::pg::fresh_database();
    let dir = tempfile::tempdir().expect("temporary directory");
    let out = bbru(dir.path(), &["serve", "--postgres", &db.url]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert!(text.contains("bbru-zeo init-db"), "{text}");
}

#[test]
fn a_file_uploaded_through_one_instance_downloads_from_the_other() {
    let db = test_support::pg::fresh_database();
    drop(PgStorage::create(&db.url).expect("the schema"));
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let site_config = write_site_config(root);
    let storage = Storage::Postgres(db.url.clone());
    let one = Instance::start(root, "one", &site_config, &storage);
    let two = Instance::start(root, "two", &site_config, &storage);
    let mut admin = super::Agent::new();
    admin.login(&one);
    // Larger than a piece of upload, and than the largest file kept in a record.
    let content: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    let to = admin.submit_with_file(
        &one,
        "/@@add",
        &[("type", "File"), ("title", "Data")],
        Some(("data.bin", content.clone())),
    );
    assert!(to.starts_with("/data.bin"), "redirected to {to}");
    assert_eq!(
        db.query_i64("SELECT count(*) FROM blob_chunk"),
        1,
        "the upload is a blob in the database"
    );
    let mut visitor = super::Agent::new();
    let r = visitor.get(&two, "/data.bin");
    assert_eq!(r.status(), 200);
    assert_eq!(r.bytes().expect("the body").as_ref(), content.as_slice());
}
