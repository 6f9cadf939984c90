//! Transactions: operations buffered in memory until `vote`, which takes a
//! connection, opens an SQL transaction, takes the objects' advisory locks,
//! stages the records in the session's `bbru_temp_store` and checks every
//! serial; `finish` then takes the commit lock, chooses the tid, moves the
//! staged rows into `object_state`/`current_object` and commits, all in one
//! pipelined round trip, so no lock shared by all writers is held while a
//! message crosses the network. The `COMMIT` carries a `NOTIFY` (see
//! `listen.rs`), so storages listening learn of the commit at once.
//!
//! Locks are RelStorage's, so its clients and ours exclude each other: an
//! exclusive transaction-level advisory lock keyed by the oid for every
//! object written, a shared one for an object whose serial is only checked
//! (`check_current_serial`, RelStorage's `readCurrent`), and advisory lock -1
//! while the tid is chosen and the rows moved. We take the object locks in
//! one statement in oid order (RelStorage takes its shared ones first), so
//! two bbru writers never deadlock; a cycle with a RelStorage writer is
//! broken by PostgreSQL's deadlock detector and reported as `LockTimeout`.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use md5::{Digest, Md5};
use zodb_storage::blob::BlobDir;
use zodb_storage::{
    ConflictError, Oid, Result, StorageError, Tid, TransactionMeta, TxnHandle, TxnOp, TxnStatus,
};

use crate::error::{PgError, PgResult, storage_error};
use crate::limits::{COMMIT_LOCK_TIMEOUT, LOCK_TIMEOUT};
use crate::pool::{Leased, Pool};
use crate::schema::CREATE_TEMP;
use crate::storage::{PgStorage, id, sql};

/// An open transaction.
#[derive(Debug)]
pub(crate) struct Txn {
    meta: TransactionMeta,
    ops: Vec<TxnOp>,
    /// Transactions undone, with the objects each changes.
    undos: Vec<(Tid, Vec<Oid>)>,
    /// After a successful vote: the connection whose SQL transaction holds
    /// the locks and the staged rows.
    voted: Option<Leased>,
    /// The blobs stored, each staged in the blob directory's `tmp/` until the
    /// transaction ends (the last one stored for an oid is the one written).
    blobs: BTreeMap<Oid, PathBuf>,
}

impl Drop for Txn {
    /// An aborted or abandoned transaction's blob files go.
    fn drop(&mut self) {
        for staged in self.blobs.values() {
            BlobDir::discard(staged);
        }
    }
}

/// A written object as the vote stages it.
enum Write<'a> {
    /// A store (`data`) or a deletion (`None`), checked against `serial`.
    Checked { serial: Tid, data: Option<&'a [u8]> },
    /// A copied revision: its data, or the transaction whose data it reuses.
    Restored {
        data: Option<&'a [u8]>,
        prev_txn: Option<Tid>,
    },
}

fn md5_hex(data: &[u8]) -> String {
    hex::encode(Md5::digest(data))
}

const LOCK: &str = "SELECT CASE WHEN u.x THEN pg_advisory_xact_lock(u.z)
        ELSE pg_advisory_xact_lock_shared(u.z) END
    FROM (SELECT z, x FROM unnest($1::bigint[], $2::bool[]) AS v(z, x) ORDER BY z) u";

const STAGE_STORES: &str = "INSERT INTO bbru_temp_store (zoid, prev_tid, md5, state, checked)
    SELECT z, p, m, s, true
    FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bytea[]) AS u(z, p, m, s)";

const STAGE_RESTORES: &str = "INSERT INTO bbru_temp_store (zoid, prev_tid, md5, state, checked)
    SELECT u.z, COALESCE(c.tid, 0),
           CASE WHEN u.s IS NOT NULL THEN u.m ELSE b.md5 END, COALESCE(u.s, b.state), false
    FROM unnest($1::bigint[], $2::text[], $3::bytea[], $4::bigint[]) AS u(z, m, s, back)
    LEFT JOIN current_object c ON c.zoid = u.z
    LEFT JOIN object_state b ON b.zoid = u.z AND b.tid = u.back";

const WRITE_CONFLICTS: &str = "SELECT t.zoid, COALESCE(c.tid, 0), t.prev_tid
    FROM bbru_temp_store t LEFT JOIN current_object c ON c.zoid = t.zoid
    WHERE t.checked AND COALESCE(c.tid, 0) <> t.prev_tid ORDER BY t.zoid";

const READ_CONFLICTS: &str = "SELECT u.z, COALESCE(c.tid, 0), u.t
    FROM unnest($1::bigint[], $2::bigint[]) AS u(z, t)
    LEFT JOIN current_object c ON c.zoid = u.z
    WHERE COALESCE(c.tid, 0) <> u.t ORDER BY u.z";

const LAST_TID: &str = r#"SELECT COALESCE(MAX(tid), 0) FROM "transaction""#;

/// The move at finish. `$1` is our clock's tid, used as is when given by the
/// caller (`$2`), else raised past the newest tid; `transaction` gets no row
/// (and so nothing moves) when a given tid is not later than the newest.
const MOVE: &str = r#"WITH newest AS (SELECT COALESCE(MAX(tid), 0) AS tid FROM "transaction"),
t AS (
    INSERT INTO "transaction" (tid, packed, username, description, extension)
    SELECT CASE WHEN $2 THEN $1 ELSE GREATEST($1, newest.tid + 1) END, $3, $4, $5, $6
    FROM newest WHERE NOT $2 OR $1 > newest.tid
    RETURNING tid),
s AS (
    INSERT INTO object_state (zoid, tid, prev_tid, md5, state_size, state)
    SELECT b.zoid, t.tid, b.prev_tid, b.md5, COALESCE(length(b.state), 0), b.state
    FROM bbru_temp_store b CROSS JOIN t
    RETURNING zoid, tid),
c AS (
    INSERT INTO current_object (zoid, tid) SELECT zoid, tid FROM s
    ON CONFLICT (zoid) DO UPDATE SET tid = excluded.tid),
b AS (
    INSERT INTO blob_chunk (zoid, tid, chunk_num, chunk)
    SELECT b.zoid, t.tid, 0, b.chunk FROM bbru_temp_blob b CROSS JOIN t)
SELECT tid FROM t"#;

impl PgStorage {
    pub(crate) fn begin(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        let id = self.inner.next_txn.fetch_add(1, Ordering::Relaxed);
        self.inner.txns.lock().insert(
            id,
            Txn {
                meta,
                ops: Vec::new(),
                undos: Vec::new(),
                voted: None,
                blobs: BTreeMap::new(),
            },
        );
        Ok(TxnHandle::new(id))
    }

    fn unknown(handle: &TxnHandle) -> StorageError {
        StorageError::Transaction(format!("unknown or finished transaction {handle:?}"))
    }

    pub(crate) fn push(&self, handle: &TxnHandle, op: TxnOp) -> Result<()> {
        self.check_open()?;
        let mut txns = self.inner.txns.lock();
        let txn = txns
            .get_mut(&handle.id())
            .ok_or_else(|| Self::unknown(handle))?;
        if txn.voted.is_some() {
            return Err(StorageError::Transaction(
                "the transaction is voted; it takes no more changes".into(),
            ));
        }
        let too_big = |oid: Oid| {
            (oid.0 > i64::MAX as u64).then(|| StorageError::Limit(format!("oid {oid} past 2^63")))
        };
        match &op {
            TxnOp::Store { oid, .. }
            | TxnOp::Delete { oid, .. }
            | TxnOp::Restore { oid, .. }
            | TxnOp::Check { oid, .. } => {
                if let Some(e) = too_big(*oid) {
                    return Err(e);
                }
            }
            TxnOp::Undo(_) => {}
        }
        txn.ops.push(op);
        Ok(())
    }

    /// [`PgStorage::push`] of a blob's record, with its file, staged in the
    /// blob directory until the transaction ends.
    pub(crate) fn push_blob(
        &self,
        handle: &TxnHandle,
        op: TxnOp,
        oid: Oid,
        file: &std::path::Path,
    ) -> Result<()> {
        let dir = self.blob_dir()?;
        self.push(handle, op)?;
        let staged = dir
            .stage(file)
            .map_err(|e| StorageError::io("staging a blob", e))?;
        let mut txns = self.inner.txns.lock();
        match txns.get_mut(&handle.id()) {
            Some(txn) => {
                if let Some(older) = txn.blobs.insert(oid, staged) {
                    BlobDir::discard(&older);
                }
                Ok(())
            }
            None => {
                BlobDir::discard(&staged);
                Err(Self::unknown(handle))
            }
        }
    }

    pub(crate) fn undo_in(&self, handle: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        {
            let txns = self.inner.txns.lock();
            let txn = txns
                .get(&handle.id())
                .ok_or_else(|| Self::unknown(handle))?;
            if txn.voted.is_some() {
                return Err(StorageError::Transaction("undo after vote".into()));
            }
        }
        let pool = self.pool();
        let oids = self.run(async move {
            let mut conn = pool.get().await?;
            crate::undo::undone_oids(&mut conn, tid).await
        })??;
        let mut txns = self.inner.txns.lock();
        let txn = txns
            .get_mut(&handle.id())
            .ok_or_else(|| Self::unknown(handle))?;
        txn.undos.push((tid, oids.clone()));
        Ok(oids)
    }

    pub(crate) fn vote_txn(&self, handle: &TxnHandle) -> Result<()> {
        let Some(mut txn) = self.inner.txns.lock().remove(&handle.id()) else {
            return Err(Self::unknown(handle));
        };
        if txn.voted.is_some() {
            self.inner.txns.lock().insert(handle.id(), txn);
            return Ok(());
        }
        let floor = txn
            .ops
            .iter()
            .filter_map(|op| match op {
                TxnOp::Store { oid, .. } | TxnOp::Restore { oid, .. } => Some(oid.0),
                _ => None,
            })
            .max()
            .and_then(|max| self.oid_floor(max));
        let pool = self.pool();
        let result = self.run(async move {
            let r = vote(&pool, &mut txn, floor).await;
            Ok((txn, r))
        });
        match result {
            Ok((txn, r)) => {
                self.inner.txns.lock().insert(handle.id(), txn);
                r
            }
            Err(e) => Err(e.into()),
        }
    }

    pub(crate) fn finish_txn(&self, handle: &TxnHandle) -> Result<Tid> {
        self.vote_txn(handle)?;
        let Some(mut txn) = self.inner.txns.lock().remove(&handle.id()) else {
            return Err(Self::unknown(handle));
        };
        let conn = txn.voted.take().ok_or_else(|| Self::unknown(handle))?;
        let clock = self.inner.clock.lock().next_tid();
        let meta = std::mem::take(&mut txn.meta);
        let tid = self.run(async move { finish(conn, &meta, clock).await })?;
        let tid = tid.ok_or_else(|| {
            StorageError::Transaction(format!(
                "the transaction's tid {clock} is not later than the database's newest"
            ))
        })?;
        self.inner.clock.lock().observe(tid);
        // The files uploaded become the blob cache's copies of the revisions,
        // and the blobs an undo brought back are fetched into it: a client
        // sharing the directory reads them there.
        if let Some(dir) = self.inner.blob_dir.get() {
            for (oid, staged) in std::mem::take(&mut txn.blobs) {
                match dir.commit(&staged, oid, tid) {
                    Ok(path) => {
                        let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                        self.inner.blob_bound.added(dir, bytes);
                    }
                    Err(e) => {
                        tracing::warn!(%oid, %tid, "keeping a committed blob in the blob cache: {e}");
                        BlobDir::discard(&staged);
                    }
                }
            }
            for &oid in txn.undos.iter().flat_map(|(_, oids)| oids) {
                match zodb_storage::Storage::load_blob(self, oid, tid) {
                    Ok(_) | Err(StorageError::PosKey { .. }) => {}
                    Err(e) => {
                        tracing::warn!(%oid, %tid, "caching a blob an undo brought back: {e}")
                    }
                }
            }
        }
        // Reports this commit (and any other client's before it).
        self.poll()?;
        Ok(tid)
    }

    pub(crate) fn abort_txn(&self, handle: &TxnHandle) {
        let Some(mut txn) = self.inner.txns.lock().remove(&handle.id()) else {
            return;
        };
        if let Some(mut conn) = txn.voted.take() {
            let done = self.run(async move {
                if conn.client.batch_execute("ROLLBACK").await.is_err() {
                    conn.mark_broken();
                }
                Ok(())
            });
            if let Err(e) = done {
                tracing::warn!("rolling back an aborted transaction: {e}");
            }
        }
    }
}

/// Everything the vote does on `conn`'s open SQL transaction.
async fn vote(pool: &Arc<Pool>, txn: &mut Txn, floor: Option<i64>) -> Result<()> {
    let started = Instant::now();
    let mut conn = pool.get().await?;
    let begin = async {
        if !conn.has_temp_table {
            conn.client
                .batch_execute(CREATE_TEMP)
                .await
                .map_err(PgError::query("creating the staging table"))?;
            conn.has_temp_table = true;
        }
        conn.client
            .batch_execute(&format!(
                "BEGIN; SET LOCAL lock_timeout = '{}ms'",
                LOCK_TIMEOUT.as_millis()
            ))
            .await
            .map_err(PgError::query("beginning the vote"))
    };
    if let Err(e) = begin.await {
        conn.mark_broken();
        return Err(e.into());
    }
    match staged(&mut conn, txn, floor).await {
        Ok(Ok(())) => {
            txn.voted = Some(conn);
            Ok(())
        }
        Ok(Err(refused)) => {
            rollback(&mut conn).await;
            Err(refused)
        }
        Err(e) => {
            rollback(&mut conn).await;
            Err(storage_error(e, started.elapsed()))
        }
    }
}

async fn rollback(conn: &mut Leased) {
    if conn.client.batch_execute("ROLLBACK").await.is_err() {
        conn.mark_broken();
    }
}

/// Locks, stages and checks; `Ok(Err(_))` is a refusal (conflicts, undo
/// errors, a given tid too old), `Err` a database failure.
async fn staged(conn: &mut Leased, txn: &Txn, floor: Option<i64>) -> PgResult<Result<()>> {
    let mut writes: BTreeMap<Oid, Write<'_>> = BTreeMap::new();
    let mut checks: BTreeMap<Oid, Tid> = BTreeMap::new();
    for op in &txn.ops {
        match op {
            TxnOp::Store { oid, serial, data } => {
                writes.insert(
                    *oid,
                    Write::Checked {
                        serial: *serial,
                        data: Some(data),
                    },
                );
            }
            TxnOp::Delete { oid, serial } => {
                writes.insert(
                    *oid,
                    Write::Checked {
                        serial: *serial,
                        data: None,
                    },
                );
            }
            TxnOp::Restore {
                oid,
                data,
                prev_txn,
                ..
            } => {
                writes.insert(
                    *oid,
                    Write::Restored {
                        data: data.as_deref(),
                        prev_txn: *prev_txn,
                    },
                );
            }
            TxnOp::Check { oid, serial } => {
                checks.insert(*oid, *serial);
            }
            TxnOp::Undo(_) => {}
        }
    }

    // Locks: exclusive for what is written, shared for what is only read.
    let mut locks: BTreeMap<Oid, bool> = checks.keys().map(|&o| (o, false)).collect();
    for &oid in writes
        .keys()
        .chain(txn.undos.iter().flat_map(|(_, oids)| oids))
    {
        locks.insert(oid, true);
    }
    let zoids: Vec<i64> = locks.keys().map(|o| sql(o.0)).collect();
    let exclusive: Vec<bool> = locks.values().copied().collect();
    let st = conn.prepared(LOCK).await?;
    conn.client
        .execute(&st, &[&zoids, &exclusive])
        .await
        .map_err(PgError::query("locking the transaction's objects"))?;

    if let Some(given) = txn.meta.tid {
        let st = conn.prepared(LAST_TID).await?;
        let newest: i64 = conn
            .client
            .query_one(&st, &[])
            .await
            .map_err(PgError::query("reading the newest tid"))?
            .get(0);
        if sql(given.0) <= newest {
            return Ok(Err(StorageError::Transaction(format!(
                "tid {given} is not later than the database's newest {}",
                Tid(id(newest))
            ))));
        }
    }

    // Stage the stores and deletions, then the copies.
    let (mut z, mut p, mut m, mut s) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut rz, mut rm, mut rs, mut rb) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for (oid, write) in &writes {
        match write {
            Write::Checked { serial, data } => {
                z.push(sql(oid.0));
                p.push(sql(serial.0));
                m.push(data.map(md5_hex));
                s.push(*data);
            }
            Write::Restored { data, prev_txn } => {
                rz.push(sql(oid.0));
                rm.push(data.map(md5_hex));
                rs.push(*data);
                rb.push(prev_txn.map(|t| sql(t.0)));
            }
        }
    }
    if !z.is_empty() {
        let st = conn.prepared(STAGE_STORES).await?;
        conn.client
            .execute(&st, &[&z, &p, &m, &s])
            .await
            .map_err(PgError::query("staging the records"))?;
    }
    if !rz.is_empty() {
        let st = conn.prepared(STAGE_RESTORES).await?;
        conn.client
            .execute(&st, &[&rz, &rm, &rs, &rb])
            .await
            .map_err(PgError::query("staging the copied records"))?;
    }

    // Serials, all at once, so a client resolving conflicts sees every one.
    let mut conflicts = Vec::new();
    if !z.is_empty() {
        let st = conn.prepared(WRITE_CONFLICTS).await?;
        for row in conn
            .client
            .query(&st, &[])
            .await
            .map_err(PgError::query("checking serials"))?
        {
            conflicts.push(ConflictError {
                oid: Oid(id(row.get(0))),
                committed: Tid(id(row.get(1))),
                expected: Tid(id(row.get(2))),
                read_conflict: false,
            });
        }
    }
    if !checks.is_empty() {
        let cz: Vec<i64> = checks.keys().map(|o| sql(o.0)).collect();
        let ct: Vec<i64> = checks.values().map(|t| sql(t.0)).collect();
        let st = conn.prepared(READ_CONFLICTS).await?;
        for row in conn
            .client
            .query(&st, &[&cz, &ct])
            .await
            .map_err(PgError::query("checking read serials"))?
        {
            conflicts.push(ConflictError {
                oid: Oid(id(row.get(0))),
                committed: Tid(id(row.get(1))),
                expected: Tid(id(row.get(2))),
                read_conflict: true,
            });
        }
    }
    if !conflicts.is_empty() {
        return Ok(Err(StorageError::from_conflicts(conflicts)));
    }

    for (tid, _) in &txn.undos {
        if let Err(refused) = crate::undo::stage(conn, *tid).await? {
            return Ok(Err(refused));
        }
    }

    for (oid, file) in &txn.blobs {
        crate::blobs::upload(conn, *oid, file).await?;
    }

    if let Some(n) = floor {
        let st = conn.prepared(crate::poll::SEQUENCE_FLOOR).await?;
        conn.client
            .execute(&st, &[&n])
            .await
            .map_err(PgError::query("moving the oid sequence past stored oids"))?;
    }
    Ok(Ok(()))
}

/// Commit lock, move, `COMMIT`: sent together, answered together. `None`
/// when a given tid was not later than the newest (nothing was written).
async fn finish(mut conn: Leased, meta: &TransactionMeta, clock: Tid) -> PgResult<Option<Tid>> {
    let st = match conn.prepared(MOVE).await {
        Ok(st) => st,
        Err(e) => {
            rollback(&mut conn).await;
            return Err(e);
        }
    };
    let given = meta.tid.is_some();
    let tid = sql(meta.tid.unwrap_or(clock).0);
    let packed = meta.status == TxnStatus::Packed;
    let lock = format!(
        "SET LOCAL lock_timeout = '{}ms'; SELECT pg_advisory_xact_lock(-1)",
        COMMIT_LOCK_TIMEOUT.as_millis()
    );
    let client = &conn.client;
    let params: [&(dyn tokio_postgres::types::ToSql + Sync); 6] = [
        &tid,
        &given,
        &packed,
        &meta.user,
        &meta.description,
        &meta.extension,
    ];
    let (locked, moved, committed) = tokio::join!(
        client.batch_execute(&lock),
        client.query_opt(&st, &params),
        // The notification goes out with the commit, never without it.
        client.batch_execute(crate::listen::NOTIFY_AND_COMMIT),
    );
    let outcome = locked
        .map_err(PgError::query("taking the commit lock"))
        .and_then(|()| moved.map_err(PgError::query("writing the transaction")))
        .and_then(|row| {
            committed
                .map(|()| row)
                .map_err(PgError::query("committing"))
        });
    match outcome {
        Ok(row) => Ok(row.map(|r| Tid(id(r.get(0))))),
        Err(e) => {
            conn.mark_broken();
            Err(e)
        }
    }
}
