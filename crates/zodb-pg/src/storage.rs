//! [`PgStorage`]: the struct, the runtime its connections live on, and a thin
//! `impl Storage` delegating to `reads.rs`, `txn.rs`, `poll.rs`, `pack.rs`.
//!
//! The `Storage` trait is blocking and is called from plain threads and from
//! tokio tasks alike (the ZEO server answers loads on its async workers), so
//! the storage owns a small runtime of its own: every call spawns its work
//! there and waits on a std channel, which never nests one runtime's
//! `block_on` inside another's.

use std::collections::HashMap;
use std::future::Future;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio_postgres::Config;
use zodb_storage::blob::{BlobDir, CacheBound};
use zodb_storage::{
    HistoryEntry, InvalidationListener, Listeners, Oid, RecordIterItem, Result, Revision, Storage,
    StorageError, StorageLocation, Tid, TidClock, TransactionIter, TransactionMeta, TxnHandle,
    UndoLogEntry,
};

use crate::error::{PgError, PgResult};
use crate::poll::OidReserve;
use crate::pool::Pool;
use crate::txn::Txn;

/// A ZODB storage on a PostgreSQL database laid out as RelStorage 4.3's
/// history-preserving schema.
pub struct PgStorage {
    pub(crate) inner: Arc<Inner>,
    runtime: Option<tokio::runtime::Runtime>,
    handle: tokio::runtime::Handle,
}

/// What the calls share.
pub(crate) struct Inner {
    pub(crate) pool: Arc<Pool>,
    pub(crate) location: String,
    pub(crate) closed: AtomicBool,
    pub(crate) txns: Mutex<HashMap<u64, Txn>>,
    pub(crate) next_txn: AtomicU64,
    pub(crate) listeners: Listeners,
    /// The newest tid reported to the listeners; held while a poll runs, so
    /// reports go out once each, in tid order.
    pub(crate) polled: Mutex<Tid>,
    pub(crate) oids: Mutex<OidReserve>,
    pub(crate) clock: Mutex<TidClock>,
    /// Whether the `LISTEN` task runs (`listen.rs`).
    pub(crate) listening: AtomicBool,
    /// Read replicas for loads (`replicas.rs`), set by `with_replicas`.
    pub(crate) replicas: Vec<crate::replicas::Replica>,
    /// Current object states, shared by every connection (`cache.rs`).
    pub(crate) cache: crate::cache::StateCache,
    /// The blob cache (`blobs.rs`), set once by [`PgStorage::with_blob_dir`].
    pub(crate) blob_dir: std::sync::OnceLock<BlobDir>,
    /// The bound of that directory ([`PgStorage::with_blob_cache_bytes`]).
    pub(crate) blob_bound: CacheBound,
}

impl std::fmt::Debug for PgStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgStorage")
            .field("location", &self.inner.location)
            .finish()
    }
}

impl Drop for PgStorage {
    fn drop(&mut self) {
        // Not `drop(runtime)`: that blocks, and panics on an async worker.
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

/// The URL without its password, for logs and `location`.
fn redacted(config: &Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .map(|h| match h {
            tokio_postgres::config::Host::Tcp(name) => name.clone(),
            tokio_postgres::config::Host::Unix(path) => path.display().to_string(),
        })
        .collect();
    let ports: Vec<String> = config.get_ports().iter().map(u16::to_string).collect();
    format!(
        "postgresql://{}@{}:{}/{}",
        config.get_user().unwrap_or(""),
        hosts.join(","),
        ports.join(","),
        config.get_dbname().unwrap_or("")
    )
}

impl PgStorage {
    /// Opens the database at `url` (a `postgresql://` URL or a libpq
    /// `key=value` string), which must hold the schema ([`PgStorage::create`]
    /// makes it).
    pub fn open(url: &str) -> std::result::Result<PgStorage, PgError> {
        Self::start(url, false)
    }

    /// Creates the schema where it is missing (as RelStorage would), then
    /// opens the database.
    pub fn create(url: &str) -> std::result::Result<PgStorage, PgError> {
        Self::start(url, true)
    }

    fn start(url: &str, create: bool) -> std::result::Result<PgStorage, PgError> {
        let mut config = Config::from_str(url).map_err(PgError::Url)?;
        if config.get_application_name().is_none() {
            config.application_name("bbru");
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("zodb-pg")
            .enable_all()
            .build()
            .map_err(PgError::Runtime)?;
        let handle = runtime.handle().clone();
        let location = redacted(&config);
        let pool = Pool::new(config);
        let storage = PgStorage {
            inner: Arc::new(Inner {
                pool: pool.clone(),
                location,
                closed: AtomicBool::new(false),
                txns: Mutex::new(HashMap::new()),
                next_txn: AtomicU64::new(1),
                listeners: Listeners::new(),
                polled: Mutex::new(Tid::ZERO),
                oids: Mutex::new(OidReserve::default()),
                clock: Mutex::new(TidClock::new(Tid::ZERO)),
                listening: AtomicBool::new(false),
                blob_dir: std::sync::OnceLock::new(),
                blob_bound: CacheBound::new(crate::limits::BLOB_CACHE_BYTES_DEFAULT),
                cache: crate::cache::StateCache::new(crate::limits::CACHE_BYTES_DEFAULT),
                replicas: Vec::new(),
            }),
            runtime: Some(runtime),
            handle,
        };
        let last = storage.run(async move {
            let mut conn = pool.get().await?;
            if create {
                crate::schema::init(&mut conn.client).await?;
            }
            crate::schema::check(&conn.client).await?;
            crate::poll::newest_tid(&mut conn).await
        })?;
        *storage.inner.polled.lock() = last;
        storage.inner.cache.start_at(last);
        storage.inner.clock.lock().observe(last);
        Ok(storage)
    }

    /// Runs `fut` on the storage's runtime and waits for it.
    pub(crate) fn run<T, F>(&self, fut: F) -> PgResult<T>
    where
        F: Future<Output = PgResult<T>> + Send + 'static,
        T: Send + 'static,
    {
        run_on(&self.handle, fut)
    }

    /// Gives the storage blobs, kept in `blob_chunk` and cached in `dir`
    /// (ZODB's blob directory layout; made when missing). A storage without
    /// one refuses blobs, as a FileStorage without a blob directory does.
    pub fn with_blob_dir(self, dir: &std::path::Path) -> std::result::Result<Self, PgError> {
        let blobs =
            BlobDir::open(dir, None).map_err(PgError::blob_file("opening the blob cache"))?;
        // A fresh storage: nothing has set it.
        let _ = self.inner.blob_dir.set(blobs);
        Ok(self)
    }

    /// Sends loads to these read replicas (hot standbys of this database,
    /// URLs or libpq strings) when they have replayed the commits a load
    /// needs; the primary answers the others and every write.
    pub fn with_replicas(mut self, urls: &[String]) -> std::result::Result<Self, PgError> {
        let mut replicas = Vec::new();
        for url in urls {
            let mut config = Config::from_str(url).map_err(PgError::Url)?;
            if config.get_application_name().is_none() {
                config.application_name("bbru-replica");
            }
            let location = redacted(&config);
            replicas.push(crate::replicas::Replica::new(config, location));
        }
        Arc::get_mut(&mut self.inner)
            .ok_or(PgError::RuntimeGone)?
            .replicas = replicas;
        Ok(self)
    }

    /// Bounds the blob cache directory at `bytes` (see
    /// [`crate::limits::BLOB_CACHE_BYTES_DEFAULT`]).
    pub fn with_blob_cache_bytes(mut self, bytes: u64) -> std::result::Result<Self, PgError> {
        Arc::get_mut(&mut self.inner)
            .ok_or(PgError::RuntimeGone)?
            .blob_bound = CacheBound::new(bytes);
        Ok(self)
    }

    /// Opens at most `n` connections to the primary at once (at least one;
    /// [`crate::limits::CONNECTIONS_DEFAULT`] until set): loads, votes, polls
    /// and packs wait for a free one.
    pub fn with_connections(self, n: usize) -> Self {
        self.inner.pool.resize(n, &self.handle());
        self
    }

    /// Bounds the cache of object states at `bytes` (0: no cache).
    pub fn with_cache_bytes(self, bytes: usize) -> Self {
        self.inner.cache.set_max_bytes(bytes);
        self
    }

    pub(crate) fn blob_dir(&self) -> Result<&BlobDir> {
        self.inner.blob_dir.get().ok_or_else(|| {
            StorageError::Unsupported(
                "this PostgreSQL storage has no blob cache directory, so it takes no blobs".into(),
            )
        })
    }

    pub(crate) fn handle(&self) -> tokio::runtime::Handle {
        self.handle.clone()
    }

    pub(crate) fn pool(&self) -> Arc<Pool> {
        self.inner.pool.clone()
    }

    pub(crate) fn check_open(&self) -> Result<()> {
        if self.inner.closed.load(Ordering::Acquire) {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }
}

/// Runs `fut` on the runtime of `handle` and waits for it (from any thread
/// but that runtime's own workers).
pub(crate) fn run_on<T, F>(handle: &tokio::runtime::Handle, fut: F) -> PgResult<T>
where
    F: Future<Output = PgResult<T>> + Send + 'static,
    T: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    handle.spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or(Err(PgError::RuntimeGone))
}

/// A tid or oid as PostgreSQL's `BIGINT`; values past `i64::MAX` (none in
/// practice: tids reach it in the year 6000) saturate, which keeps `<`
/// comparisons with `Tid::MAX` meaning "everything".
pub(crate) fn sql(id: u64) -> i64 {
    i64::try_from(id).unwrap_or(i64::MAX)
}

/// A `BIGINT` read back as an id.
pub(crate) fn id(value: i64) -> u64 {
    u64::try_from(value).unwrap_or(0)
}

impl Storage for PgStorage {
    fn name(&self) -> String {
        self.inner.location.clone()
    }

    fn location(&self) -> StorageLocation {
        StorageLocation {
            kind: "postgresql",
            location: self.inner.location.clone(),
        }
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn waits_on_network(&self) -> bool {
        true
    }

    fn last_transaction(&self) -> Tid {
        *self.inner.polled.lock()
    }

    fn len(&self) -> usize {
        self.count_objects().unwrap_or_else(|e| {
            tracing::warn!("counting objects: {e}");
            0
        })
    }

    fn size(&self) -> u64 {
        self.database_size().unwrap_or_else(|e| {
            tracing::warn!("database size: {e}");
            0
        })
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        self.check_open()?;
        self.read_before(oid, before)
    }

    fn load(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        self.check_open()?;
        self.read_current(oid)
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.check_open()?;
        self.read_serial(oid, serial)
    }

    fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        self.check_open()?;
        self.allocate_oids(count)
    }

    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        self.check_open()?;
        self.begin(meta)
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        self.push(
            txn,
            zodb_storage::TxnOp::Store {
                oid,
                serial: expected,
                data,
            },
        )
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        if expected == Tid::ZERO {
            // Nothing to delete: no committed revision was read.
            return Err(StorageError::PosKey {
                oid,
                detail: Some("deleting an object that does not exist".into()),
            });
        }
        self.push(
            txn,
            zodb_storage::TxnOp::Delete {
                oid,
                serial: expected,
            },
        )
    }

    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.push(
            txn,
            zodb_storage::TxnOp::Restore {
                oid,
                serial: Tid::ZERO,
                data,
                prev_txn,
            },
        )
    }

    fn record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>> {
        self.check_open()?;
        self.read_record_iternext(from)
    }

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.push(
            txn,
            zodb_storage::TxnOp::Check {
                oid,
                serial: expected,
            },
        )
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.check_open()?;
        self.undo_in(txn, tid)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.check_open()?;
        self.vote_txn(txn)
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.check_open()?;
        self.finish_txn(txn)
    }

    fn abort(&self, txn: &TxnHandle) {
        self.abort_txn(txn);
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        self.check_open()?;
        self.read_history(oid, size)
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.check_open()?;
        self.read_undo_log(first, last)
    }

    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter> {
        self.check_open()?;
        Ok(self.transactions(start, stop))
    }

    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.check_open()?;
        self.pack_database(pack_time, gc)
    }

    fn close(&self) -> Result<()> {
        self.inner.closed.store(true, Ordering::Release);
        let open: Vec<Txn> = self.inner.txns.lock().drain().map(|(_, t)| t).collect();
        // Voted transactions roll back as their connections close.
        drop(open);
        self.inner.pool.clear();
        Ok(())
    }

    fn sync(&self) -> Result<()> {
        self.check_open()?;
        self.poll()
    }

    fn blobs(&self) -> Option<&BlobDir> {
        self.inner.blob_dir.get()
    }

    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        blob: &std::path::Path,
    ) -> Result<()> {
        let op = zodb_storage::TxnOp::Store {
            oid,
            serial: expected,
            data,
        };
        self.push_blob(txn, op, oid, blob)
    }

    fn restore_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Vec<u8>,
        blob: &std::path::Path,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        let op = zodb_storage::TxnOp::Restore {
            oid,
            serial: Tid::ZERO,
            data: Some(data),
            prev_txn,
        };
        self.push_blob(txn, op, oid, blob)
    }

    fn load_blob(&self, oid: Oid, serial: Tid) -> Result<std::path::PathBuf> {
        self.check_open()?;
        let dir = self.blob_dir()?;
        let cached = dir.path(oid, serial);
        if cached.exists() {
            return Ok(cached);
        }
        let inner = Arc::clone(&self.inner);
        match self.run(async move {
            let Some(dir) = inner.blob_dir.get() else {
                return Ok(None);
            };
            let mut conn = inner.pool.get().await?;
            crate::blobs::download(&mut conn, dir, oid, serial).await
        })? {
            Some(path) => {
                let bytes = std::fs::metadata(&path).map_or(0, |m| m.len());
                self.inner.blob_bound.added(dir, bytes);
                Ok(path)
            }
            None => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("no blob for revision {serial}")),
            }),
        }
    }

    fn check_health(&self, within: Duration) -> Result<()> {
        self.check_open()?;
        let pool = self.pool();
        let answer = self.run(async move {
            tokio::time::timeout(within, async {
                let conn = pool.get().await?;
                conn.client
                    .simple_query("SELECT 1")
                    .await
                    .map_err(PgError::query("health check"))
            })
            .await
            .map_err(|_| PgError::ConnectTimeout(within))?
        });
        answer.map(drop).map_err(|e| match e {
            PgError::ConnectTimeout(_) => {
                StorageError::Disconnected(format!("no answer from PostgreSQL within {within:?}"))
            }
            other => other.into(),
        })
    }

    fn add_listener(&self, listener: std::sync::Weak<dyn InvalidationListener>) {
        self.inner.listeners.add(listener);
    }
}
