//! What other clients committed, and new oids.
//!
//! Polling: like RelStorage, a storage learns of commits by asking for
//! transactions newer than the newest it has seen. Every commit (ours at
//! `finish`, others' at `sync`) is reported to the listeners by one poll,
//! under the `polled` lock, so each transaction is reported once and in tid
//! order. Tids are chosen under the commit lock (advisory lock -1, which
//! RelStorage takes too) and become visible before it is released, so a poll
//! never sees a tid before an older one becomes visible.
//!
//! Oids: `zoid_seq`, shared with RelStorage; one sequence value `n` stands
//! for the 16 oids `16n-15 ..= 16n`, as RelStorage allocates them.

use std::collections::VecDeque;

use zodb_storage::limits::NEW_OIDS_COUNT_MAX;
use zodb_storage::{Oid, Result, StorageError, Tid};

use crate::error::{PgError, PgResult};
use crate::limits::{OIDS_PER_SEQUENCE_VALUE, POLL_ROWS_MAX};
use crate::pool::PgConn;
use crate::storage::{Inner, PgStorage, id, run_on, sql};

/// Oids taken from the sequence and not handed out yet.
#[derive(Debug, Default)]
pub(crate) struct OidReserve {
    free: VecDeque<u64>,
    /// The highest oid this storage took from the sequence.
    pub(crate) allocated_max: u64,
}

pub(crate) async fn newest_tid(conn: &mut PgConn) -> PgResult<Tid> {
    let st = conn
        .prepared(r#"SELECT COALESCE(MAX(tid), 0) FROM "transaction""#)
        .await?;
    let row = conn
        .client
        .query_one(&st, &[])
        .await
        .map_err(PgError::query("reading the newest tid"))?;
    Ok(Tid(id(row.get(0))))
}

const POLL: &str = r#"SELECT t.tid, s.zoid FROM "transaction" t
    LEFT JOIN object_state s ON s.tid = t.tid
    WHERE t.tid > $1 ORDER BY t.tid, s.zoid LIMIT $2"#;

/// Reports to the listeners of the storage `inner` every transaction
/// committed since the last poll, in tid order. Blocks: called from outside
/// the storage's runtime (`handle`), as every `Storage` call is, or from a
/// blocking thread of it (the `LISTEN` task's polls).
pub(crate) fn poll_commits(inner: &Inner, handle: &tokio::runtime::Handle) -> Result<()> {
    let mut polled = inner.polled.lock();
    let since = *polled;
    let pool = inner.pool.clone();
    let rows = run_on(handle, async move {
        let mut conn = pool.get().await?;
        let st = conn.prepared(POLL).await?;
        let rows = conn
            .client
            .query(&st, &[&sql(since.0), &(POLL_ROWS_MAX + 1)])
            .await
            .map_err(PgError::query("polling for commits"))?;
        let rows: Vec<(i64, Option<i64>)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
        if rows.len() as i64 > POLL_ROWS_MAX {
            return Ok(Err(newest_tid(&mut conn).await?));
        }
        Ok(Ok(rows))
    })?;
    let rows = match rows {
        Ok(rows) => rows,
        Err(newest) => {
            tracing::info!(
                "more than {POLL_ROWS_MAX} objects changed since {since}: resetting listeners"
            );
            inner.clock.lock().observe(newest);
            inner.cache.clear(newest);
            *polled = newest;
            inner.listeners.reset(newest);
            return Ok(());
        }
    };
    let mut current: Option<(Tid, Vec<Oid>)> = None;
    for (tid, zoid) in rows {
        let tid = Tid(id(tid));
        match &mut current {
            Some((t, oids)) if *t == tid => oids.extend(zoid.map(|z| Oid(id(z)))),
            _ => {
                if let Some((t, oids)) = current.take() {
                    inner.cache.committed(t, &oids);
                    inner.listeners.committed(t, &oids);
                }
                current = Some((tid, zoid.map(|z| Oid(id(z))).into_iter().collect()));
            }
        }
    }
    if let Some((t, oids)) = current {
        inner.cache.committed(t, &oids);
        inner.listeners.committed(t, &oids);
        inner.clock.lock().observe(t);
        *polled = t;
    }
    Ok(())
}

impl PgStorage {
    /// Reports to the listeners every transaction committed since the last
    /// poll, in tid order.
    pub(crate) fn poll(&self) -> Result<()> {
        poll_commits(&self.inner, &self.handle())
    }

    pub(crate) fn allocate_oids(&self, count: usize) -> Result<Vec<Oid>> {
        if count > NEW_OIDS_COUNT_MAX {
            return Err(StorageError::Limit(format!(
                "{count} oids asked for at once; at most {NEW_OIDS_COUNT_MAX}"
            )));
        }
        let mut reserve = self.inner.oids.lock();
        let missing = count.saturating_sub(reserve.free.len()) as u64;
        if missing > 0 {
            let values = missing.div_ceil(OIDS_PER_SEQUENCE_VALUE);
            let pool = self.pool();
            let ns: Vec<i64> = self.run(async move {
                let mut conn = pool.get().await?;
                let st = conn
                    .prepared("SELECT nextval('zoid_seq') FROM generate_series(1::bigint, $1)")
                    .await?;
                let rows = conn
                    .client
                    .query(&st, &[&sql(values)])
                    .await
                    .map_err(PgError::query("allocating oids"))?;
                Ok(rows.iter().map(|r| r.get(0)).collect())
            })?;
            let mut ns: Vec<u64> = ns.into_iter().map(id).collect();
            ns.sort_unstable();
            for n in ns {
                let high = n * OIDS_PER_SEQUENCE_VALUE;
                reserve
                    .free
                    .extend(high + 1 - OIDS_PER_SEQUENCE_VALUE..=high);
                reserve.allocated_max = reserve.allocated_max.max(high);
            }
        }
        Ok(reserve.free.drain(..count).map(Oid).collect())
    }

    /// After a transaction stored `max_oid` explicitly (a copy, or an oid
    /// chosen by hand): the oids up to it are no longer ours to hand out, and
    /// the sequence must pass it (what RelStorage's `set_min_oid` does). Runs
    /// on the voting connection; returns whether the sequence was moved.
    pub(crate) fn oid_floor(&self, max_oid: u64) -> Option<i64> {
        let mut reserve = self.inner.oids.lock();
        // Oids are handed out in ascending order, so this drops only oids
        // stored by hand (never twice) or passed by them.
        reserve.free.retain(|&o| o > max_oid);
        if max_oid <= reserve.allocated_max {
            return None;
        }
        Some(sql(max_oid.div_ceil(OIDS_PER_SEQUENCE_VALUE)))
    }
}

/// Moves the sequence past range `n` unless it already is (one wasted value
/// at most, as in RelStorage: `setval` under a lock would stall allocations).
pub(crate) const SEQUENCE_FLOOR: &str =
    "SELECT CASE WHEN $1 > nextval('zoid_seq') THEN setval('zoid_seq', $1) ELSE 0 END";
