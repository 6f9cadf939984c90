//! Read replicas: hot standbys of the database (PostgreSQL streaming
//! replication) that answer loads, so that many instances' reads spread over
//! several servers while every write goes to the primary (RelStorage's
//! `ro-replica-conf`).
//!
//! A standby lags. A load for a snapshot (`load_before(oid, before)`) is sent
//! to a replica only when the replica has replayed every commit before
//! `before`: its newest `transaction` row is at least `before - 1` (commits
//! become visible in tid order, so having that tid means having all before
//! it). What the replica last said is kept and asked again at most every
//! [`REPLICA_RECHECK`] while it is behind; a load it cannot serve goes to the
//! primary, as does every load while a replica is out of reach (it is tried
//! again after [`REPLICA_RETRY`]). Loads not tied to a snapshot (`before`
//! past the storage's newest poll) always go to the primary.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::Mutex;
use tokio_postgres::Config;
use zodb_storage::{Oid, Result, Revision, StorageError, Tid};

use crate::error::{PgError, PgResult};
use crate::limits::{REPLICA_RECHECK, REPLICA_RETRY};
use crate::pool::Pool;
use crate::reads::{BEFORE, EXISTS, revision};
use crate::storage::sql;

#[derive(Debug)]
pub(crate) struct Replica {
    pool: Arc<Pool>,
    /// Where, for logs (no password).
    pub(crate) location: String,
    /// The newest tid the replica had, when last asked.
    newest: AtomicU64,
    /// When it was last asked, and until when it is not used after failing.
    state: Mutex<ReplicaState>,
}

#[derive(Debug, Default)]
struct ReplicaState {
    asked: Option<Instant>,
    down_until: Option<Instant>,
}

impl Replica {
    pub(crate) fn new(config: Config, location: String) -> Replica {
        Replica {
            pool: Pool::new(config),
            location,
            newest: AtomicU64::new(0),
            state: Mutex::new(ReplicaState::default()),
        }
    }

    /// Whether a load for the snapshot before `before` may be sent here now,
    /// without asking the replica: it is up and known to have every commit.
    fn usable_for(&self, before: Tid) -> Usable {
        let now = Instant::now();
        let state = self.state.lock();
        if state.down_until.is_some_and(|t| now < t) {
            return Usable::No;
        }
        if self.newest.load(Ordering::Acquire) >= before.0.saturating_sub(1) {
            return Usable::Yes;
        }
        match state.asked {
            Some(t) if now.duration_since(t) < REPLICA_RECHECK => Usable::No,
            _ => Usable::AskFirst,
        }
    }

    fn failed(&self, e: &PgError) {
        tracing::warn!(replica = %self.location, "read replica failed, loads go to the primary for {REPLICA_RETRY:?}: {e}");
        self.state.lock().down_until = Some(Instant::now() + REPLICA_RETRY);
    }
}

enum Usable {
    Yes,
    AskFirst,
    No,
}

/// The load on `pool`: `Ok(Err(_))` for a missing or deleted object.
pub(crate) async fn load_before_on(
    pool: &Arc<Pool>,
    oid: Oid,
    before: Tid,
) -> PgResult<Result<Option<Revision>>> {
    let (z, b) = (sql(oid.0), sql(before.0));
    let mut conn = pool.get().await?;
    let st = conn.prepared(BEFORE).await?;
    let rows = conn
        .client
        .query(&st, &[&z, &b])
        .await
        .map_err(PgError::query("loading before a tid"))?;
    if let Some(row) = rows.first() {
        return Ok(revision(oid, row));
    }
    let st = conn.prepared(EXISTS).await?;
    let exists: bool = conn
        .client
        .query_one(&st, &[&z])
        .await
        .map_err(PgError::query("checking an object exists"))?
        .get(0);
    Ok(if exists {
        Ok(None)
    } else {
        Err(StorageError::pos_key(oid))
    })
}

/// The load from the first replica that has every commit before `before`,
/// or `None` when none has (then the primary answers).
pub(crate) async fn load_from_replicas(
    replicas: &[Replica],
    oid: Oid,
    before: Tid,
) -> Option<Result<Option<Revision>>> {
    for r in replicas {
        match r.usable_for(before) {
            Usable::No => continue,
            Usable::Yes => {}
            Usable::AskFirst => match newest(&r.pool).await {
                Ok(tid) => {
                    r.newest.fetch_max(tid.0, Ordering::AcqRel);
                    r.state.lock().asked = Some(Instant::now());
                    if tid.0 < before.0.saturating_sub(1) {
                        continue;
                    }
                }
                Err(e) => {
                    r.failed(&e);
                    continue;
                }
            },
        }
        match load_before_on(&r.pool, oid, before).await {
            Ok(answer) => return Some(answer),
            Err(e) => r.failed(&e),
        }
    }
    None
}

async fn newest(pool: &Arc<Pool>) -> PgResult<Tid> {
    let mut conn = pool.get().await?;
    crate::poll::newest_tid(&mut conn).await
}
