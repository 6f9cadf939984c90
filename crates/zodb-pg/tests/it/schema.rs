//! Opening a database: a clear error without the schema or with another
//! layout; `create` makes the schema once and accepts it again.

use test_support::pg::fresh_database;
use zodb_pg::{PgError, PgStorage};
use zodb_storage::Storage;

fn psql(url: &str, sql: &str) {
    let mut c = postgres_client(url);
    c.batch_execute(sql).unwrap();
}

fn postgres_client(url: &str) -> postgres::Client {
    postgres::Client::connect(url, postgres::NoTls).unwrap()
}

#[test]
fn missing_schema_is_a_clear_error() {
    let db = fresh_database();
    let err = PgStorage::open(&db.url).unwrap_err();
    assert!(matches!(err, PgError::SchemaMissing), "{err:?}");
    assert!(err.to_string().contains("bbru-zeo init-db"), "{err}");
}

#[test]
fn create_is_idempotent_and_open_accepts_it() {
    let db = fresh_database();
    let first = PgStorage::create(&db.url).unwrap();
    assert_eq!(first.last_transaction(), zodb_storage::Tid::ZERO);
    drop(first);
    drop(PgStorage::create(&db.url).unwrap());
    let s = PgStorage::open(&db.url).unwrap();
    assert_eq!(s.location().kind, "postgresql");
    assert!(s.is_empty());
    // Transaction 0 and the commit lock row, as RelStorage seeds them.
    let mut c = postgres_client(&db.url);
    let rows = c
        .query(r#"SELECT tid, username FROM "transaction""#, &[])
        .unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].get::<_, i64>(0), 0);
    assert_eq!(rows[0].get::<_, Vec<u8>>(1), b"system".to_vec());
    let rows = c.query("SELECT tid FROM commit_row_lock", &[]).unwrap();
    assert_eq!(rows.len(), 1);
}

#[test]
fn history_free_schema_is_refused() {
    let db = fresh_database();
    psql(
        &db.url,
        "CREATE TABLE object_state (zoid BIGINT PRIMARY KEY, tid BIGINT NOT NULL,
             state_size BIGINT NOT NULL, state BYTEA)",
    );
    let err = PgStorage::open(&db.url).unwrap_err();
    assert!(matches!(err, PgError::SchemaMismatch(_)), "{err:?}");
    assert!(err.to_string().contains("history-free"), "{err}");
}

#[test]
fn relstorage_2_schema_is_refused_with_a_hint() {
    let db = fresh_database();
    psql(
        &db.url,
        r#"CREATE TABLE "transaction" (tid BIGINT PRIMARY KEY, packed BOOLEAN NOT NULL DEFAULT FALSE,
             empty BOOLEAN NOT NULL DEFAULT FALSE, username BYTEA NOT NULL,
             description BYTEA NOT NULL, extension BYTEA)"#,
    );
    let err = PgStorage::create(&db.url).unwrap_err();
    assert!(
        err.to_string().contains("RelStorage 2") && err.to_string().contains("is_empty"),
        "{err}"
    );
}
