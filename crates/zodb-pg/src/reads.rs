//! Reads: loads, history, the undo log, the transaction iterator, the
//! current records in oid order. Each is one prepared statement on a pooled
//! connection (one round trip), in PostgreSQL's own snapshot of that moment.
//! A deletion, or an undone creation, is a row whose `state` is NULL.

use std::collections::VecDeque;

use zodb_storage::{
    DataRecord, HistoryEntry, Oid, RecordIterItem, Result, Revision, StorageError, Tid,
    TransactionIter, TransactionRecord, TxnStatus, UndoLogEntry,
};

use crate::error::PgError;
use crate::limits::ITERATOR_BATCH_TRANSACTIONS;
use crate::storage::{PgStorage, id, sql};

pub(crate) const BEFORE: &str = "SELECT s.tid, s.state,
        (SELECT MIN(n.tid) FROM object_state n WHERE n.zoid = $1 AND n.tid > s.tid)
    FROM object_state s WHERE s.zoid = $1 AND s.tid < $2 ORDER BY s.tid DESC LIMIT 1";

pub(crate) const EXISTS: &str = "SELECT EXISTS (SELECT 1 FROM object_state WHERE zoid = $1)";

const CURRENT: &str = "SELECT c.tid, s.state FROM current_object c
    JOIN object_state s ON s.zoid = c.zoid AND s.tid = c.tid WHERE c.zoid = $1";

const SERIAL: &str = "SELECT state FROM object_state WHERE zoid = $1 AND tid = $2";

const HISTORY: &str = r#"SELECT s.tid, s.state_size, t.username, t.description, t.extension
    FROM object_state s JOIN "transaction" t ON t.tid = s.tid
    WHERE s.zoid = $1 ORDER BY s.tid DESC LIMIT $2"#;

const UNDO_LOG: &str = r#"SELECT t.tid, t.username, t.description, t.extension,
        (SELECT COALESCE(SUM(s.state_size), 0)::bigint FROM object_state s WHERE s.tid = t.tid)
    FROM "transaction" t WHERE NOT t.packed AND t.tid > 0
    ORDER BY t.tid DESC OFFSET $1 LIMIT $2"#;

const TRANSACTIONS: &str = r#"SELECT tid, packed, username, description, extension
    FROM "transaction" WHERE tid >= $1 AND tid <= $2 AND tid > 0 AND NOT is_empty
    ORDER BY tid LIMIT $3"#;

const RECORDS: &str = "SELECT tid, zoid, state FROM object_state
    WHERE tid = ANY($1) ORDER BY tid, zoid";

const ITERNEXT: &str = "SELECT c.zoid, c.tid, s.state FROM current_object c
    JOIN object_state s ON s.zoid = c.zoid AND s.tid = c.tid
    WHERE c.zoid >= $1 AND s.state IS NOT NULL ORDER BY c.zoid LIMIT 2";

const COUNT: &str = "SELECT COUNT(*) FROM current_object c
    JOIN object_state s ON s.zoid = c.zoid AND s.tid = c.tid WHERE s.state IS NOT NULL";

fn deleted(oid: Oid) -> StorageError {
    StorageError::PosKey {
        oid,
        detail: Some("the object was deleted".into()),
    }
}

/// Runs one prepared query on a pooled connection.
macro_rules! query {
    ($storage:expr, $sql:expr, $what:literal, [$($param:expr),*]) => {{
        let pool = $storage.pool();
        $storage.run(async move {
            let mut conn = pool.get().await?;
            let st = conn.prepared($sql).await?;
            conn.client
                .query(&st, &[$(&$param),*])
                .await
                .map_err(PgError::query($what))
        })
    }};
}

/// A row of [`BEFORE`] as a revision (a deletion as the error it is).
pub(crate) fn revision(oid: Oid, row: &tokio_postgres::Row) -> Result<Option<Revision>> {
    let state: Option<Vec<u8>> = row.get(1);
    let Some(data) = state else {
        return Err(deleted(oid));
    };
    Ok(Some(Revision {
        data,
        start: Tid(id(row.get(0))),
        end: row.get::<_, Option<i64>>(2).map(|t| Tid(id(t))),
    }))
}

fn bytes(v: Option<Vec<u8>>) -> Vec<u8> {
    v.unwrap_or_default()
}

impl PgStorage {
    pub(crate) fn read_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        let cache = &self.inner.cache;
        if let Some(rev) = cache.get(oid, before) {
            return Ok(Some(rev));
        }
        let epoch = cache.epoch();
        let rev = self.query_before(oid, before)?;
        if let Some(rev) = &rev {
            cache.put(oid, rev, epoch);
        }
        Ok(rev)
    }

    /// The load from the database: a read replica that has every commit of
    /// the snapshot, else the primary.
    fn query_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        let inner = std::sync::Arc::clone(&self.inner);
        // A snapshot this storage has polled to; later `before`s ask for the
        // newest state, which only the primary surely has.
        let snapshot = before.0 <= inner.cache.as_of().saturating_add(1);
        self.run(async move {
            if snapshot && !inner.replicas.is_empty() {
                let replicas = &inner.replicas;
                if let Some(answer) =
                    crate::replicas::load_from_replicas(replicas, oid, before).await
                {
                    return Ok(answer);
                }
            }
            crate::replicas::load_before_on(&inner.pool, oid, before).await
        })?
    }

    pub(crate) fn read_current(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        let z = sql(oid.0);
        let rows = query!(self, CURRENT, "loading an object", [z])?;
        let row = rows.first().ok_or_else(|| StorageError::pos_key(oid))?;
        let state: Option<Vec<u8>> = row.get(1);
        let data = state.ok_or_else(|| deleted(oid))?;
        Ok((data, Tid(id(row.get(0)))))
    }

    pub(crate) fn read_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        let (z, t) = (sql(oid.0), sql(serial.0));
        let rows = query!(self, SERIAL, "loading a revision", [z, t])?;
        let row = rows.first().ok_or_else(|| StorageError::PosKey {
            oid,
            detail: Some(format!("no revision {serial}")),
        })?;
        row.get::<_, Option<Vec<u8>>>(0).ok_or_else(|| deleted(oid))
    }

    pub(crate) fn read_history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        let z = sql(oid.0);
        let n = i64::try_from(size.min(zodb_storage::limits::HISTORY_SIZE_MAX)).unwrap_or(0);
        let rows = query!(self, HISTORY, "reading history", [z, n])?;
        if rows.is_empty() {
            return Err(StorageError::pos_key(oid));
        }
        Ok(rows
            .iter()
            .map(|r| {
                let tid = Tid(id(r.get(0)));
                HistoryEntry {
                    tid,
                    time: tid.unix_seconds(),
                    user: r.get(2),
                    description: r.get(3),
                    extension: bytes(r.get(4)),
                    size: id(r.get(1)),
                }
            })
            .collect())
    }

    pub(crate) fn read_undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        let offset = i64::try_from(first).unwrap_or(i64::MAX);
        let limit = i64::try_from(last.saturating_sub(first)).unwrap_or(i64::MAX);
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows = query!(self, UNDO_LOG, "reading the undo log", [offset, limit])?;
        Ok(rows
            .iter()
            .map(|r| {
                let tid = Tid(id(r.get(0)));
                let user: Vec<u8> = r.get(1);
                let description: Vec<u8> = r.get(2);
                let extension = bytes(r.get(3));
                let size = id(r.get(4)) + (user.len() + description.len() + extension.len()) as u64;
                UndoLogEntry {
                    tid,
                    time: tid.unix_seconds(),
                    user,
                    description,
                    extension,
                    size,
                }
            })
            .collect())
    }

    pub(crate) fn read_record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>> {
        let z = sql(from.0);
        let rows = query!(self, ITERNEXT, "iterating records", [z])?;
        let Some(row) = rows.first() else {
            return Ok(None);
        };
        Ok(Some(RecordIterItem {
            oid: Oid(id(row.get(0))),
            tid: Tid(id(row.get(1))),
            data: row.get(2),
            next: rows.get(1).map(|r| Oid(id(r.get(0)))),
        }))
    }

    pub(crate) fn count_objects(&self) -> Result<usize> {
        let rows = query!(self, COUNT, "counting objects", [])?;
        Ok(rows
            .first()
            .map(|r| usize::try_from(r.get::<_, i64>(0)).unwrap_or(0))
            .unwrap_or(0))
    }

    pub(crate) fn database_size(&self) -> Result<u64> {
        let rows = query!(
            self,
            "SELECT pg_database_size(current_database())",
            "reading the database size",
            []
        )?;
        Ok(rows.first().map(|r| id(r.get(0))).unwrap_or(0))
    }

    /// The iterator: batches of transactions, each batch's records in one
    /// more query.
    pub(crate) fn transactions(&self, start: Option<Tid>, stop: Option<Tid>) -> TransactionIter {
        Box::new(Batches {
            storage: self.reader(),
            next: sql(start.unwrap_or(Tid::ZERO).0),
            stop: sql(stop.unwrap_or(Tid::MAX).0),
            batch: VecDeque::new(),
            done: false,
        })
    }
}

/// What the iterator needs of the storage, owned (it outlives the call).
pub(crate) struct Reader {
    pool: std::sync::Arc<crate::pool::Pool>,
    handle: tokio::runtime::Handle,
}

impl PgStorage {
    fn reader(&self) -> Reader {
        Reader {
            pool: self.pool(),
            handle: self.handle(),
        }
    }
}

struct Batches {
    storage: Reader,
    next: i64,
    stop: i64,
    batch: VecDeque<TransactionRecord>,
    done: bool,
}

impl Batches {
    fn fill(&mut self) -> Result<()> {
        let pool = self.storage.pool.clone();
        let (next, stop) = (self.next, self.stop);
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        self.storage.handle.spawn(async move {
            let result = async {
                let mut conn = pool.get().await?;
                let st = conn.prepared(TRANSACTIONS).await?;
                let txns = conn
                    .client
                    .query(&st, &[&next, &stop, &ITERATOR_BATCH_TRANSACTIONS])
                    .await
                    .map_err(PgError::query("iterating transactions"))?;
                let tids: Vec<i64> = txns.iter().map(|r| r.get(0)).collect();
                let st = conn.prepared(RECORDS).await?;
                let records = conn
                    .client
                    .query(&st, &[&tids])
                    .await
                    .map_err(PgError::query("iterating records"))?;
                Ok::<_, PgError>((txns, records))
            }
            .await;
            let _ = tx.send(result);
        });
        let (txns, records) = rx.recv().unwrap_or(Err(PgError::RuntimeGone))?;
        if (txns.len() as i64) < ITERATOR_BATCH_TRANSACTIONS {
            self.done = true;
        }
        let mut records = records.into_iter().peekable();
        for t in &txns {
            let tid_sql: i64 = t.get(0);
            let tid = Tid(id(tid_sql));
            let mut recs = Vec::new();
            while let Some(r) = records.next_if(|r| r.get::<_, i64>(0) == tid_sql) {
                recs.push(DataRecord {
                    oid: Oid(id(r.get(1))),
                    tid,
                    data: r.get(2),
                    data_txn: None,
                });
            }
            self.batch.push_back(TransactionRecord {
                tid,
                status: if t.get(1) {
                    TxnStatus::Packed
                } else {
                    TxnStatus::Committed
                },
                user: t.get(2),
                description: t.get(3),
                extension: bytes(t.get(4)),
                records: recs,
            });
            self.next = tid_sql.saturating_add(1);
        }
        Ok(())
    }
}

impl Iterator for Batches {
    type Item = Result<TransactionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.batch.is_empty()
            && !self.done
            && let Err(e) = self.fill()
        {
            self.done = true;
            return Some(Err(e));
        }
        self.batch.pop_front().map(Ok)
    }
}
