//! Pack: drops the revisions older than each object's revision at the pack
//! time and, with gc, every revision up to the pack time of objects no longer
//! reachable then. Later history is kept; transactions up to the pack time
//! are marked `packed` (no longer undoable), and `is_empty` when nothing of
//! them is left, as RelStorage marks them.
//!
//! Reachability is Python FileStorage's: from the root at the pack time,
//! plus everything referenced by revisions after it (a transaction after the
//! pack time may have linked an object back; `fspack`'s
//! `findReachableFromFuture`). The plan is made without locks while commits
//! go on, and so is the removal of old revisions of the objects kept (no
//! commit reads or writes them), in batches. Unreachable objects go in
//! batches too, each in an SQL transaction holding the commit lock (-1) for
//! that batch only, after adding what every commit since the last batch
//! refers to, so no commit can link an object a batch drops, and commits
//! run between batches. The whole pack holds RelStorage's pack lock (session
//! advisory lock -2), so two packs (or a pack and an undo) never overlap.

use std::collections::{HashMap, HashSet};

use zodb_storage::{Oid, Result, StorageError, Tid};

use crate::error::PgError;
use crate::limits::PACK_BATCH_OBJECTS;
use crate::pool::PgConn;
use crate::storage::{PgStorage, id, sql};

/// Each object's revision at the pack time, in oid order from `$2`.
const AT_PACK_TIME: &str = "SELECT DISTINCT ON (zoid) zoid, tid, state FROM object_state
    WHERE tid <= $1 AND zoid > $2 ORDER BY zoid, tid DESC LIMIT $3";

/// Revisions after `$1` (the pack time, then the plan's newest tid), in
/// (tid, zoid) order from ($2, $3).
const AFTER: &str = "SELECT tid, zoid, state FROM object_state
    WHERE tid > $1 AND (tid, zoid) > ($2, $3) AND state IS NOT NULL
    ORDER BY tid, zoid LIMIT $4";

const REMOVE_GARBAGE_CURRENT: &str =
    "DELETE FROM current_object WHERE zoid = ANY($1) AND tid <= $2";

const REMOVE_GARBAGE: &str = "DELETE FROM object_state WHERE zoid = ANY($1) AND tid <= $2";

const REMOVE_OLD: &str =
    "DELETE FROM object_state s USING unnest($1::bigint[], $2::bigint[]) AS k(z, t)
    WHERE s.zoid = k.z AND s.tid < k.t";

const MARK_PACKED: &str = r#"UPDATE "transaction" t SET packed = TRUE,
        is_empty = NOT EXISTS (SELECT 1 FROM object_state s WHERE s.tid = t.tid)
    WHERE t.tid <= $1 AND t.tid > 0"#;

/// RelStorage's `object_ref` rows (its pre-pack's record of each revision's
/// references) of revisions up to the pack time that no longer exist.
const FORGET_REFS: &str = "DELETE FROM object_ref r WHERE r.tid <= $1 AND NOT EXISTS
    (SELECT 1 FROM object_state s WHERE s.zoid = r.zoid AND s.tid = r.tid)";

/// What pack learned of the objects at the pack time.
struct Plan {
    /// oid → (tid of its revision at the pack time, strong references;
    /// `None` when that revision is a deletion).
    at_pack: HashMap<Oid, (Tid, Option<Vec<Oid>>)>,
}

fn refs(oid: Oid, state: &[u8]) -> Result<Vec<Oid>> {
    zodb_pickle::strong_references(state)
        .map(|r| r.into_iter().map(Oid).collect())
        .map_err(|e| StorageError::Pack(format!("cannot read the references of {oid}: {e}")))
}

async fn at_pack_time(conn: &mut PgConn, pack: i64) -> Result<Plan> {
    let st = conn.prepared(AT_PACK_TIME).await?;
    let mut at_pack = HashMap::new();
    let mut from = -1i64;
    loop {
        let rows = conn
            .client
            .query(&st, &[&pack, &from, &PACK_BATCH_OBJECTS])
            .await
            .map_err(PgError::query("reading states at the pack time"))?;
        for r in &rows {
            let oid = Oid(id(r.get(0)));
            let state: Option<Vec<u8>> = r.get(2);
            let refs = state.map(|s| refs(oid, &s)).transpose()?;
            at_pack.insert(oid, (Tid(id(r.get(1))), refs));
        }
        match rows.last() {
            Some(r) if rows.len() as i64 == PACK_BATCH_OBJECTS => from = r.get(0),
            _ => break,
        }
    }
    Ok(Plan { at_pack })
}

/// Strong references of every revision after `after`.
async fn refs_after(conn: &mut PgConn, after: i64) -> Result<Vec<(Oid, Vec<Oid>)>> {
    let st = conn.prepared(AFTER).await?;
    let mut out = Vec::new();
    let (mut tid, mut zoid) = (after, -1i64);
    loop {
        let rows = conn
            .client
            .query(&st, &[&after, &tid, &zoid, &PACK_BATCH_OBJECTS])
            .await
            .map_err(PgError::query("reading revisions after the pack time"))?;
        for r in &rows {
            let oid = Oid(id(r.get(1)));
            let state: Vec<u8> = r.get(2);
            out.push((oid, refs(oid, &state)?));
        }
        match rows.last() {
            Some(r) if rows.len() as i64 == PACK_BATCH_OBJECTS => {
                tid = r.get(0);
                zoid = r.get(1);
            }
            _ => break,
        }
    }
    Ok(out)
}

impl Plan {
    /// Strict: a reference to an object absent at the pack time refuses the
    /// pack (it would keep a dangling reference).
    fn refs_of(&self, oid: Oid) -> Result<Option<Vec<Oid>>> {
        Ok(self.at_pack.get(&oid).and_then(|(_, r)| r.clone()))
    }

    /// From revisions after the pack time: an object created later has
    /// nothing at the pack time to keep.
    fn mark_from_future(&self, seen: &mut HashSet<Oid>, from: Vec<(Oid, Vec<Oid>)>) -> Result<()> {
        for (referrer, targets) in from {
            zodb_storage::gc::mark_reachable(referrer, targets, seen, |oid| {
                Ok(Some(match self.at_pack.get(&oid) {
                    Some((_, Some(refs))) => refs.clone(),
                    _ => Vec::new(),
                }))
            })?;
        }
        Ok(())
    }
}

impl PgStorage {
    pub(crate) fn pack_database(&self, pack_time: Tid, gc: bool) -> Result<()> {
        let inner = std::sync::Arc::clone(&self.inner);
        self.run(async move {
            let mut conn = inner.pool.get().await?;
            let locked: bool = conn
                .client
                .query_one("SELECT pg_try_advisory_lock(-2)", &[])
                .await
                .map_err(PgError::query("taking the pack lock"))?
                .get(0);
            if !locked {
                return Ok(Err(StorageError::Pack(
                    "a pack or undo is in progress (RelStorage's pack lock is held)".into(),
                )));
            }
            let mut result = pack(&mut conn, pack_time, gc).await;
            // Garbage collection removes current revisions too, which no poll
            // reports: the cached states go.
            inner.cache.clear(Tid::ZERO);
            if result.is_ok()
                && let Some(dir) = inner.blob_dir.get()
                && let Err(e) = crate::blobs::prune_cache(&mut conn, dir).await
            {
                result = Err(e.into());
            }
            if conn
                .client
                .batch_execute("SELECT pg_advisory_unlock(-2)")
                .await
                .is_err()
            {
                conn.mark_broken();
            }
            Ok(result)
        })?
    }
}

async fn pack(conn: &mut crate::pool::Leased, pack_time: Tid, gc: bool) -> Result<()> {
    let newest = crate::poll::newest_tid(conn).await?;
    let pack = sql(pack_time.min(newest).0);
    let plan = at_pack_time(conn, pack).await?;
    let mut reachable = if gc {
        let mut seen = zodb_storage::gc::reachable_from_root(|oid| plan.refs_of(oid))?;
        plan.mark_from_future(&mut seen, refs_after(conn, pack).await?)?;
        Some(seen)
    } else {
        None
    };

    // Old revisions of what is kept: no commit reads or writes them, so they
    // go in batches, each its own SQL transaction, while commits go on.
    let (mut garbage, mut kept) = (Vec::new(), Vec::new());
    for (oid, (tid, _)) in &plan.at_pack {
        if reachable.as_ref().is_some_and(|seen| !seen.contains(oid)) {
            garbage.push(*oid);
        } else {
            kept.push((sql(oid.0), sql(tid.0)));
        }
    }
    let st = conn.prepared(REMOVE_OLD).await?;
    for batch in kept.chunks(PACK_BATCH_OBJECTS as usize) {
        let (kz, kt): (Vec<i64>, Vec<i64>) = batch.iter().copied().unzip();
        conn.client
            .execute(&st, &[&kz, &kt])
            .await
            .map_err(PgError::query("removing old revisions"))?;
    }

    // Garbage: each batch under the commit lock, after adding what every
    // commit since the last look refers to, so no commit can link an object
    // the batch drops; commits go on between batches.
    if let Some(seen) = &mut reachable {
        let mut checked = sql(newest.0);
        garbage.sort();
        let mut left: &[Oid] = &garbage;
        while !left.is_empty() {
            let take = left.len().min(PACK_BATCH_OBJECTS as usize);
            let (batch, rest) = left.split_at(take);
            left = rest;
            conn.client
                .batch_execute("BEGIN; SELECT pg_advisory_xact_lock(-1)")
                .await
                .map_err(PgError::query("taking the commit lock for pack"))?;
            let removed = async {
                plan.mark_from_future(seen, refs_after(conn, checked).await?)?;
                checked = sql(crate::poll::newest_tid(conn).await?.0);
                let drop: Vec<i64> = batch
                    .iter()
                    .filter(|oid| !seen.contains(oid))
                    .map(|oid| sql(oid.0))
                    .collect();
                for (statement, what) in [
                    (REMOVE_GARBAGE_CURRENT, "removing unreachable objects"),
                    (REMOVE_GARBAGE, "removing unreachable revisions"),
                ] {
                    conn.client
                        .execute(statement, &[&drop, &pack])
                        .await
                        .map_err(PgError::query(what))?;
                }
                Ok::<(), StorageError>(())
            }
            .await;
            let end = if removed.is_ok() {
                "COMMIT"
            } else {
                "ROLLBACK"
            };
            conn.client
                .batch_execute(end)
                .await
                .map_err(PgError::query("ending a pack batch"))?;
            removed?;
        }
    }

    // Transactions only up to the pack time, which no commit touches; and the
    // references RelStorage's pre-pack recorded for revisions now gone, which
    // its next pack would otherwise count.
    conn.client
        .execute(MARK_PACKED, &[&pack])
        .await
        .map_err(PgError::query("marking transactions packed"))?;
    conn.client
        .execute(FORGET_REFS, &[&pack])
        .await
        .map_err(PgError::query(
            "removing the references of removed revisions",
        ))?;
    Ok(())
}
