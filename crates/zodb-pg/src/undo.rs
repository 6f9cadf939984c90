//! Undo in RelStorage's terms: there are no backpointers in its tables, so an
//! undo copies forward the state each object had before the undone
//! transaction (its row's `prev_tid`), as RelStorage does, and is allowed
//! only while each object's current state is the one the undone transaction
//! wrote (same md5: RelStorage's rule). The creation of the root is never
//! undone. Several undos in one transaction apply in order, as RelStorage's
//! (which runs each in its open SQL transaction): an object an earlier undo of
//! the transaction staged has that staged state as its current one.

use zodb_storage::{Oid, Result, StorageError, Tid};

use crate::error::{PgError, PgResult};
use crate::pool::PgConn;
use crate::storage::{id, sql};

const STATUS: &str = r#"SELECT packed FROM "transaction" WHERE tid = $1 AND tid > 0"#;

const OIDS: &str = "SELECT zoid FROM object_state WHERE tid = $1 ORDER BY zoid";

const CHANGED_LATER: &str = "SELECT p.zoid FROM object_state p
    JOIN current_object c ON c.zoid = p.zoid
    JOIN object_state cur ON cur.zoid = c.zoid AND cur.tid = c.tid
    LEFT JOIN bbru_temp_store t ON t.zoid = p.zoid AND t.undo
    WHERE p.tid = $1
      AND (CASE WHEN t.zoid IS NULL THEN cur.md5 ELSE t.md5 END) IS DISTINCT FROM p.md5
    ORDER BY p.zoid";

const ROOT_CREATION: &str =
    "SELECT 1 FROM object_state WHERE tid = $1 AND zoid = 0 AND prev_tid = 0";

const ALSO_WRITTEN: &str = "SELECT p.zoid FROM object_state p
    JOIN bbru_temp_store t ON t.zoid = p.zoid AND NOT t.undo WHERE p.tid = $1 ORDER BY p.zoid";

const COPY_FORWARD: &str = "INSERT INTO bbru_temp_store (zoid, prev_tid, md5, state, checked, undo)
    SELECT p.zoid, c.tid, old.md5, old.state, false, true
    FROM object_state p
    JOIN current_object c ON c.zoid = p.zoid
    LEFT JOIN object_state old ON old.zoid = p.zoid AND old.tid = p.prev_tid
    WHERE p.tid = $1
    ON CONFLICT (zoid) DO UPDATE SET md5 = excluded.md5, state = excluded.state";

/// The blobs of the states copied forward: the large object of each prior
/// revision, staged again for the undo's tid (as RelStorage copies its
/// `blob_chunk` rows forward); an object whose prior revision had none has
/// none staged.
const DROP_STAGED_BLOBS: &str =
    "DELETE FROM bbru_temp_blob WHERE zoid IN (SELECT zoid FROM object_state WHERE tid = $1)";

const COPY_BLOBS_FORWARD: &str = "INSERT INTO bbru_temp_blob (zoid, chunk)
    SELECT p.zoid, b.chunk FROM object_state p
    JOIN blob_chunk b ON b.zoid = p.zoid AND b.tid = p.prev_tid AND b.chunk_num = 0
    WHERE p.tid = $1";

fn refused(reason: String) -> StorageError {
    StorageError::Undo(vec![reason])
}

/// The objects undoing `tid` changes, or why it cannot be undone.
pub(crate) async fn undone_oids(conn: &mut PgConn, tid: Tid) -> PgResult<Result<Vec<Oid>>> {
    if let Err(e) = undoable(conn, tid).await? {
        return Ok(Err(e));
    }
    let st = conn.prepared(OIDS).await?;
    let rows = conn
        .client
        .query(&st, &[&sql(tid.0)])
        .await
        .map_err(PgError::query("listing an undone transaction's objects"))?;
    Ok(Ok(rows.iter().map(|r| Oid(id(r.get(0)))).collect()))
}

async fn undoable(conn: &mut PgConn, tid: Tid) -> PgResult<Result<()>> {
    let st = conn.prepared(STATUS).await?;
    let row = conn
        .client
        .query_opt(&st, &[&sql(tid.0)])
        .await
        .map_err(PgError::query("reading an undone transaction"))?;
    match row.map(|r| r.get::<_, bool>(0)) {
        None => Ok(Err(refused(format!("transaction {tid} not found")))),
        Some(true) => Ok(Err(refused(format!(
            "transaction {tid} was packed; it cannot be undone"
        )))),
        Some(false) => Ok(Ok(())),
    }
}

/// Checks (under the vote's locks) and stages the undo of `tid`.
pub(crate) async fn stage(conn: &mut PgConn, tid: Tid) -> PgResult<Result<()>> {
    if let Err(e) = undoable(conn, tid).await? {
        return Ok(Err(e));
    }
    let t = sql(tid.0);
    let checks: [(&'static str, &'static str); 3] = [
        (
            ROOT_CREATION,
            "the creation of the root object cannot be undone",
        ),
        (CHANGED_LATER, "changed by a later transaction"),
        (ALSO_WRITTEN, "also changed by this transaction"),
    ];
    for (query, why) in checks {
        let st = conn.prepared(query).await?;
        let rows = conn
            .client
            .query(&st, &[&t])
            .await
            .map_err(PgError::query("checking an undo"))?;
        if !rows.is_empty() {
            let messages = if query == ROOT_CREATION {
                vec![why.to_string()]
            } else {
                rows.iter()
                    .map(|r| format!("object {}: {why}", Oid(id(r.get(0)))))
                    .collect()
            };
            return Ok(Err(StorageError::Undo(messages)));
        }
    }
    let st = conn.prepared(COPY_FORWARD).await?;
    conn.client
        .execute(&st, &[&t])
        .await
        .map_err(PgError::query("copying undone states forward"))?;
    for query in [DROP_STAGED_BLOBS, COPY_BLOBS_FORWARD] {
        let st = conn.prepared(query).await?;
        conn.client
            .execute(&st, &[&t])
            .await
            .map_err(PgError::query("copying undone blobs forward"))?;
    }
    Ok(Ok(()))
}
