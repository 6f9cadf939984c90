//! Two `bbru serve --postgres` instances on one PostgreSQL database, no server of ours
//! in between: what one commits the other serves on its very next request (each
//! request's transaction polls the database first); an instance on a database without
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
