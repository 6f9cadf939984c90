//! The database schema: RelStorage 4.3's history-preserving PostgreSQL
//! layout (what its schema installer creates, as `pg_dump -s` shows it),
//! written here once as our own DDL; the check that a database has it; and
//! the session's staging table.
//!
//! RelStorage's stored procedures and its `blob_chunk` trigger are not
//! created here: PgStorage calls none of them, and RelStorage (re)installs
//! its own whenever it opens a database whose procedures are missing or
//! differ from its source (it compares an md5 kept in each function's
//! comment). So a database made by [`init`] is accepted by RelStorage, which
//! adds its procedures on first open, as it does for one it made itself.

use tokio_postgres::Client;

use crate::error::{PgError, PgResult};

/// The tables, sequence and view, in dependency order; each statement is
/// idempotent, so `init` completes a partly created schema.
const CREATE: &str = r#"
CREATE TABLE IF NOT EXISTS commit_row_lock (
    tid BIGINT NOT NULL PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS "transaction" (
    tid         BIGINT NOT NULL PRIMARY KEY,
    packed      BOOLEAN NOT NULL DEFAULT FALSE,
    is_empty    BOOLEAN NOT NULL DEFAULT FALSE,
    username    BYTEA NOT NULL,
    description BYTEA NOT NULL,
    extension   BYTEA
);
CREATE SEQUENCE IF NOT EXISTS zoid_seq;
CREATE TABLE IF NOT EXISTS object_state (
    zoid        BIGINT NOT NULL,
    tid         BIGINT NOT NULL REFERENCES "transaction",
    prev_tid    BIGINT NOT NULL REFERENCES "transaction",
    md5         CHAR(32),
    state_size  BIGINT NOT NULL,
    state       BYTEA,
    CONSTRAINT object_state_pk PRIMARY KEY (zoid, tid),
    CHECK (tid > 0),
    CHECK (state_size >= 0)
);
CREATE INDEX IF NOT EXISTS object_state_tid ON object_state (tid);
CREATE INDEX IF NOT EXISTS object_state_prev_tid ON object_state (prev_tid);
CREATE TABLE IF NOT EXISTS blob_chunk (
    zoid        BIGINT NOT NULL,
    tid         BIGINT NOT NULL,
    chunk_num   BIGINT NOT NULL,
    chunk       OID NOT NULL,
    CONSTRAINT blob_chunk_pk PRIMARY KEY (zoid, tid, chunk_num),
    CONSTRAINT blob_chunk_fk FOREIGN KEY (zoid, tid)
        REFERENCES object_state (zoid, tid) ON DELETE CASCADE
);
CREATE INDEX IF NOT EXISTS blob_chunk_lookup ON blob_chunk (zoid, tid);
CREATE TABLE IF NOT EXISTS current_object (
    zoid        BIGINT NOT NULL PRIMARY KEY,
    tid         BIGINT NOT NULL,
    FOREIGN KEY (zoid, tid) REFERENCES object_state (zoid, tid)
);
CREATE INDEX IF NOT EXISTS current_object_tid ON current_object (tid);
CREATE TABLE IF NOT EXISTS object_ref (
    zoid        BIGINT NOT NULL,
    tid         BIGINT NOT NULL,
    to_zoid     BIGINT NOT NULL,
    PRIMARY KEY (tid, zoid, to_zoid)
);
CREATE TABLE IF NOT EXISTS object_refs_added (
    tid         BIGINT NOT NULL PRIMARY KEY
);
CREATE TABLE IF NOT EXISTS pack_object (
    zoid        BIGINT NOT NULL PRIMARY KEY,
    keep        BOOLEAN NOT NULL,
    keep_tid    BIGINT NOT NULL,
    visited     BOOLEAN NOT NULL DEFAULT FALSE
);
CREATE INDEX IF NOT EXISTS pack_object_keep_false ON pack_object (zoid) WHERE keep = false;
CREATE INDEX IF NOT EXISTS pack_object_keep_true ON pack_object (visited) WHERE keep = true;
CREATE TABLE IF NOT EXISTS pack_state (
    tid         BIGINT NOT NULL,
    zoid        BIGINT NOT NULL,
    PRIMARY KEY (tid, zoid)
);
CREATE TABLE IF NOT EXISTS pack_state_tid (
    tid         BIGINT NOT NULL PRIMARY KEY
);
CREATE OR REPLACE VIEW current_object_state AS
    SELECT zoid, tid, state FROM object_state JOIN current_object USING (zoid, tid);
"#;

/// The large object of a `blob_chunk` row goes with the last row naming it
/// (a pack's deletions cascade here). The function and trigger have
/// RelStorage's names, so a database has one of each whichever side made
/// it; ours are created only where there is none, so RelStorage's own are
/// never replaced (RelStorage, finding ours, installs its own over it as it
/// does for any procedure that is not its source).
const BLOB_TRIGGER: &str = r#"
DO $init$ BEGIN
    IF NOT EXISTS (SELECT 1 FROM pg_proc WHERE proname = 'blob_chunk_delete_trigger') THEN
        EXECUTE $fn$
        CREATE FUNCTION blob_chunk_delete_trigger() RETURNS TRIGGER AS $body$
        BEGIN
            IF NOT EXISTS (SELECT 1 FROM blob_chunk WHERE chunk = OLD.chunk
                           AND (zoid, tid, chunk_num) <> (OLD.zoid, OLD.tid, OLD.chunk_num)) THEN
                PERFORM lo_unlink(OLD.chunk);
            END IF;
            RETURN OLD;
        END;
        $body$ LANGUAGE plpgsql
        $fn$;
    END IF;
    IF NOT EXISTS (SELECT 1 FROM pg_trigger WHERE tgname = 'blob_chunk_delete') THEN
        CREATE TRIGGER blob_chunk_delete BEFORE DELETE ON blob_chunk
            FOR EACH ROW EXECUTE PROCEDURE blob_chunk_delete_trigger();
    END IF;
END $init$;
"#;

/// The rows a new database starts with: transaction 0, which
/// `object_state.prev_tid` names for a creation, and the one row of
/// `commit_row_lock`.
const SEED: &str = r#"
INSERT INTO "transaction" (tid, username, description)
    VALUES (0, 'system'::bytea, 'special transaction for object creation'::bytea)
    ON CONFLICT DO NOTHING;
INSERT INTO commit_row_lock (tid) VALUES (0) ON CONFLICT DO NOTHING;
"#;

/// Columns PgStorage reads and writes, table by table; a database lacking
/// one is not the layout we know.
const REQUIRED: &[(&str, &[&str])] = &[
    (
        "transaction",
        &[
            "tid",
            "packed",
            "is_empty",
            "username",
            "description",
            "extension",
        ],
    ),
    (
        "object_state",
        &["zoid", "tid", "prev_tid", "md5", "state_size", "state"],
    ),
    ("current_object", &["zoid", "tid"]),
    ("blob_chunk", &["zoid", "tid", "chunk_num", "chunk"]),
];

/// Creates the schema where it is missing (idempotent), in one transaction;
/// an advisory lock keeps two `init`s from racing.
pub(crate) async fn init(client: &mut Client) -> PgResult<()> {
    let txn = client
        .transaction()
        .await
        .map_err(PgError::query("beginning schema creation"))?;
    txn.batch_execute("SELECT pg_advisory_xact_lock(-2)")
        .await
        .map_err(PgError::query("locking for schema creation"))?;
    let tables = tables(&txn).await?;
    if tables.iter().any(|t| t == "transaction") {
        // Made before (by us or RelStorage): only check it.
        check_columns(&txn).await?;
    }
    txn.batch_execute(CREATE)
        .await
        .map_err(PgError::query("creating the schema"))?;
    txn.batch_execute(SEED)
        .await
        .map_err(PgError::query("seeding the schema"))?;
    txn.batch_execute(BLOB_TRIGGER)
        .await
        .map_err(PgError::query("creating the blob_chunk trigger"))?;
    txn.commit()
        .await
        .map_err(PgError::query("committing the schema"))?;
    Ok(())
}

/// Fails unless the database has the history-preserving layout.
pub(crate) async fn check(client: &Client) -> PgResult<()> {
    let tables = tables(client).await?;
    let has = |name: &str| tables.iter().any(|t| t == name);
    if !has("transaction") && !has("object_state") && !has("current_object") {
        return Err(PgError::SchemaMissing);
    }
    if has("object_state") && !has("current_object") {
        return Err(PgError::SchemaMismatch(
            "it is history-free (no `current_object` table); PgStorage keeps history".into(),
        ));
    }
    check_columns(client).await
}

async fn tables(client: &impl tokio_postgres::GenericClient) -> PgResult<Vec<String>> {
    let rows = client
        .query(
            "SELECT table_name::text FROM information_schema.tables
             WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .map_err(PgError::query("listing tables"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

async fn check_columns(client: &impl tokio_postgres::GenericClient) -> PgResult<()> {
    let rows = client
        .query(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema()",
            &[],
        )
        .await
        .map_err(PgError::query("listing columns"))?;
    let columns: Vec<(String, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    for (table, wanted) in REQUIRED {
        for column in *wanted {
            if !columns.iter().any(|(t, c)| t == table && c == column) {
                let hint = if *table == "transaction" && *column == "is_empty" {
                    " (a RelStorage 2 database: open it once with RelStorage 4.3, which renames `empty`)"
                } else {
                    ""
                };
                return Err(PgError::SchemaMismatch(format!(
                    "table `{table}` has no column `{column}`{hint}"
                )));
            }
        }
    }
    Ok(())
}

/// This session's staging table: what a voted transaction will write, moved
/// into `object_state` at finish. `checked` rows are stores whose serial the
/// vote compares with the committed one; restores and undo copies are not.
/// `undo` rows were written by an undo of this transaction: a later undo in it
/// takes them as the objects' current states. Rows go at the end of each SQL
/// transaction.
pub(crate) const CREATE_TEMP: &str = "CREATE TEMPORARY TABLE IF NOT EXISTS bbru_temp_store (
    zoid     BIGINT NOT NULL PRIMARY KEY,
    prev_tid BIGINT NOT NULL,
    md5      CHAR(32),
    state    BYTEA,
    checked  BOOLEAN NOT NULL,
    undo     BOOLEAN NOT NULL DEFAULT false
) ON COMMIT DELETE ROWS;
CREATE TEMPORARY TABLE IF NOT EXISTS bbru_temp_blob (
    zoid  BIGINT NOT NULL PRIMARY KEY,
    chunk OID NOT NULL
) ON COMMIT DELETE ROWS";
