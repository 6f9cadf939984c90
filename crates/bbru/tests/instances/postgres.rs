//! Two `bbru serve --postgres` instances on one PostgreSQL database, no server of ours
//! in between: what one commits the other serves on its very next request (each
//! request's transaction polls the database first), files included (a blob in the
//! database, each instance's blob cache its own); two such instances and a third on a
//! `bbru-zeo` serving the same database, all adding pages to one folder and editing one
//! page at once, lose nothing and answer no error; an instance on a database without
//! the schema refuses to start and says how to make it.

use zodb_pg::PgStorage;

use super::added_through_one_seen_through_two;
use crate::common::{Instance, Storage, Zeo, bbru, output_text, write_site_config};

/// A fresh database with the schema, and a directory for the instances.
fn database_with_schema() -> (test_support::pg::FreshDatabase, tempfile::TempDir) {
    let db = test_support::pg::fresh_database();
    drop(PgStorage::create(&db.url).expect("the schema"));
    (db, tempfile::tempdir().expect("temporary directory"))
}

/// Two `bbru serve --postgres` instances of one site on `db`.
fn two_instances(
    db: &test_support::pg::FreshDatabase,
    root: &std::path::Path,
) -> (Instance, Instance) {
    let site_config = write_site_config(root);
    let storage = Storage::Postgres(db.url.clone());
    let one = Instance::start(root, "one", &site_config, &storage);
    let two = Instance::start(root, "two", &site_config, &storage);
    (one, two)
}

#[test]
fn two_instances_share_one_postgres_database() {
    let (db, dir) = database_with_schema();
    let (one, two) = two_instances(&db, dir.path());
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
    let (db, dir) = database_with_schema();
    let (one, two) = two_instances(&db, dir.path());
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

#[test]
fn two_postgres_instances_and_one_through_bbru_zeo_lose_nothing_under_mixed_load() {
    const PAGES_EACH: usize = 12;
    let (db, dir) = database_with_schema();
    let root = dir.path();
    let (one, two) = two_instances(&db, root);
    let site_config = root.join("site.toml");
    let zeo = Zeo::start_postgres(&db.url, &root.join("zeo.log"));
    let three = Instance::start(
        root,
        "three",
        &site_config,
        &Storage::Zeo(zeo.address.clone()),
    );
    let mut admin = super::Agent::new();
    admin.login(&one);
    admin.submit(
        &one,
        "/@@add",
        &[("type", "Folder"), ("id", "news"), ("title", "News")],
    );
    admin.submit(
        &one,
        "/@@add",
        &[
            ("type", "Page"),
            ("id", "shared"),
            ("title", "Shared"),
            ("body", "start"),
        ],
    );

    let instances = [&one, &two, &three];
    std::thread::scope(|scope| {
        for (n, at) in instances.iter().enumerate() {
            scope.spawn(move || {
                let mut agent = super::Agent::new();
                agent.login(at);
                for i in 0..PAGES_EACH {
                    let id = format!("p{n}-{i}");
                    let to = agent.submit(
                        at,
                        "/news/@@add",
                        &[
                            ("type", "Page"),
                            ("id", &id),
                            ("title", &id),
                            ("body", "text"),
                        ],
                    );
                    assert!(to.starts_with(&format!("/news/{id}")), "{id}: {to}");
                    // Everyone edits the same page too: its conflicts are retried
                    // or refused as stale, never a server error.
                    let body = format!("edited by {n} at {i}");
                    agent.submit_allowing_conflict(
                        at,
                        "/shared/@@edit",
                        &[("title", "Shared"), ("body", &body)],
                    );
                    let _ = agent.page(at, "/news/@@contents");
                }
            });
        }
    });
    // Nothing lost, seen alike through every instance.
    let mut visitor = super::Agent::new();
    for at in instances {
        let html = admin.page(at, "/news/@@contents");
        for n in 0..instances.len() {
            for i in 0..PAGES_EACH {
                let id = format!("p{n}-{i}");
                assert!(
                    html.contains(&format!("href=\"/news/{id}\"")),
                    "{id} missing at {}",
                    at.base
                );
            }
        }
        let page = visitor.page(at, "/shared");
        assert!(page.contains("edited by"), "{page}");
    }
    drop(zeo);
}
