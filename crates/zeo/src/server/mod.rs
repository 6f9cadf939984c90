//! The ZEO server: serves storages to ZEO 5 clients (Python's
//! `ClientStorage` and ours) over TCP or a unix socket.
//!
//! Shape after mini-redis: a listener accepts connections (up to a limit)
//! and runs each in a task of its own (`connection/`, which reads each
//! message into a typed `wire::Call` and dispatches on it); per-storage state
//! shared by all connections lives in `entry.rs`; what a connection sends
//! goes through its `outbox.rs`; commits other processes make to a shared
//! storage are polled for and announced by `poll.rs`. A shutdown signal stops the accept loop,
//! lets voted transactions finish, and closes the storages.

mod budget;
mod connection;
mod entry;
mod errors;
mod lease;
mod outbox;
mod poll;

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use tokio::net::{TcpListener, UnixListener};
use tokio::sync::watch;
use zodb_pickle::Value;
use zodb_storage::Storage;

pub use crate::address::Address;
use crate::limits;
use crate::wire::Encoding;
pub use entry::StorageEntry;

/// Server settings (runzeo flags or a `zeo.conf`).
#[derive(Debug, Clone)]
pub struct Config {
    pub address: Address,
    pub read_only: bool,
    pub encoding: Encoding,
    pub frame_size_max: usize,
    pub connections_max: usize,
    /// Abort the transaction of a client that holds its object locks (voted, not
    /// finished) longer than this, and close its connection; `None`: never.
    pub transaction_timeout: Option<Duration>,
    pub invalidation_queue_size: usize,
    /// Time a connection has to send its handshake and register.
    pub register_timeout: Duration,
    /// Bytes one transaction's operations may carry in all.
    pub transaction_bytes_max: u64,
    /// Where transactions too large for memory are buffered (a temporary file, unnamed);
    /// `None`: the system's temporary directory.  `bbru-zeo` uses the directory of the
    /// first file storage, as `/tmp` may be memory.
    pub spill_dir: Option<PathBuf>,
    /// TLS from the first byte of every connection (see `crate::tls`); `None`: plain.
    /// The TLS handshake counts against `register_timeout`.
    pub tls: Option<Arc<rustls::ServerConfig>>,
    /// Storages (by name) other processes write too (PostgreSQL), with how
    /// often to poll each for their commits (`poll.rs`); the others are
    /// written only through this server.
    pub polled: HashMap<String, Duration>,
    /// Grant read leases of this length to clients that ask (`lease.rs`, spec §11):
    /// commits then wait for the leased clients to confirm their invalidations, and
    /// those clients start transactions without a round trip. `None`: no leases.
    pub lease: Option<Duration>,
    /// The file that tells the next process whether leases may still be held (written
    /// before the first grant: `lease.rs`); `None`: the first commits always wait one
    /// lease. `bbru-zeo` keeps it beside its first file storage (`Data.fs.leases`).
    pub lease_marker: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Config {
        Config {
            address: Address::Tcp("127.0.0.1:8100".into()),
            read_only: false,
            encoding: Encoding::Pickle,
            frame_size_max: limits::FRAME_SIZE_MAX_DEFAULT,
            connections_max: limits::CONNECTIONS_MAX_DEFAULT,
            transaction_timeout: Some(Duration::from_secs(
                limits::TRANSACTION_TIMEOUT_SECONDS_DEFAULT,
            )),
            invalidation_queue_size: limits::INVALIDATION_QUEUE_SIZE_DEFAULT,
            register_timeout: Duration::from_secs(limits::REGISTER_TIMEOUT_SECONDS_DEFAULT),
            transaction_bytes_max: limits::TRANSACTION_BYTES_MAX_DEFAULT,
            spill_dir: None,
            tls: None,
            polled: HashMap::new(),
            lease: None,
            lease_marker: None,
        }
    }
}

/// What every connection shares.
pub struct Shared {
    pub config: Config,
    pub storages: HashMap<String, Arc<StorageEntry>>,
    connections: AtomicUsize,
    /// Bytes queued for all clients together.
    pub outbox_budget: Arc<outbox::OutboxBudget>,
    /// Record data all open transactions keep in memory (`TXN_BUFFER_MEMORY_BYTES_TOTAL_MAX`).
    txn_memory: Arc<budget::Budget>,
    /// Bytes of transactions being voted or voted (`VOTING_BYTES_TOTAL_MAX`).
    voting: Arc<budget::Budget>,
    /// Connections not registered yet, oldest first, with what closes each (at most
    /// `UNREGISTERED_CONNECTIONS_MAX`).
    unregistered: parking_lot::Mutex<std::collections::VecDeque<(u64, Arc<tokio::sync::Notify>)>>,
    next_connection: AtomicU64,
    started: SystemTime,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Shared {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Shared {
    fn info_dict(&self, e: &StorageEntry) -> Value {
        // The order Python's server lists them in (a FileStorage's `__iro__`, the
        // blob interfaces first when it has a blob directory); ZEO's tests compare
        // the tuple as is, and Python's client looks for `IBlobStorage` in it.
        let blob_interfaces: &[(&str, &str)] = if e.storage.blobs().is_some() {
            &[
                ("ZODB.interfaces", "IBlobStorageRestoreable"),
                ("ZODB.interfaces", "IBlobStorage"),
            ]
        } else {
            &[]
        };
        let interfaces = [
            ("ZODB.interfaces", "IStorageRestoreable"),
            ("ZODB.interfaces", "IStorageIteration"),
            ("ZODB.interfaces", "IStorageUndoable"),
            ("ZODB.interfaces", "IStorageCurrentRecordIteration"),
            ("ZODB.interfaces", "IExternalGC"),
            ("ZODB.interfaces", "IStorage"),
            ("zope.interface", "Interface"),
        ];
        let mut dict = vec![
            (Value::str("length"), Value::Int(e.storage.len() as i64)),
            (
                Value::str("size"),
                Value::Int(e.storage.size().min(i64::MAX as u64) as i64),
            ),
            (Value::str("name"), Value::str(e.storage.name())),
            (Value::str("supportsUndo"), Value::Bool(true)),
            (Value::str("supports_record_iternext"), Value::Bool(true)),
            (
                Value::str("interfaces"),
                Value::Tuple(
                    blob_interfaces
                        .iter()
                        .chain(interfaces.iter())
                        .map(|(m, n)| Value::Tuple(vec![Value::str(*m), Value::str(*n)]))
                        .collect(),
                ),
            ),
        ];
        // The offer of read leases (spec §11); Python's client keeps unknown keys and
        // uses none of them.
        if let Some(lease) = e.leases.offered() {
            dict.push((
                Value::str(crate::wire::LEASE_INFO_KEY),
                Value::Int(i64::try_from(lease.as_millis()).unwrap_or(i64::MAX)),
            ));
        }
        Value::Dict(dict)
    }

    fn status_pairs(&self, e: &StorageEntry) -> Vec<(&'static str, Value)> {
        let start = self
            .started
            .duration_since(SystemTime::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        vec![
            ("connections", Value::Int(e.connections() as i64)),
            (
                "loads",
                Value::Int(e.stats.loads.load(Ordering::Relaxed) as i64),
            ),
            (
                "stores",
                Value::Int(e.stats.stores.load(Ordering::Relaxed) as i64),
            ),
            (
                "commits",
                Value::Int(e.stats.commits.load(Ordering::Relaxed) as i64),
            ),
            (
                "aborts",
                Value::Int(e.stats.aborts.load(Ordering::Relaxed) as i64),
            ),
            (
                "conflicts",
                Value::Int(e.stats.conflicts.load(Ordering::Relaxed) as i64),
            ),
            ("conflicts_resolved", Value::Int(0)),
            ("start", Value::str(format!("{start}"))),
            (
                "last-transaction",
                Value::str(e.storage.last_transaction().to_string()),
            ),
        ]
    }

    fn status_dict(&self, e: &StorageEntry) -> Value {
        Value::Dict(
            self.status_pairs(e)
                .into_iter()
                .map(|(k, v)| (Value::str(k), v))
                .collect(),
        )
    }

    /// The `ruok` answer: `{storage_name: status}` as JSON.
    fn status_json(&self) -> String {
        let mut out = serde_json::Map::new();
        for (name, e) in &self.storages {
            let mut m = serde_json::Map::new();
            for (k, v) in self.status_pairs(e) {
                let j = match v {
                    Value::Int(i) => serde_json::Value::from(i),
                    Value::Str(s) => serde_json::Value::from(s),
                    _ => serde_json::Value::Null,
                };
                m.insert(k.to_string(), j);
            }
            out.insert(name.clone(), serde_json::Value::Object(m));
        }
        serde_json::Value::Object(out).to_string()
    }
}

/// A running server's handle: ask it to stop.
#[derive(Debug, Clone)]
pub struct Handle {
    shutdown: watch::Sender<bool>,
}

impl Handle {
    pub fn shutdown(&self) {
        let _ = self.shutdown.send(true);
    }
}

/// Binds the address and serves until shut down; then closes the storages.
pub struct Server {
    shared: Arc<Shared>,
    listener: Listener,
    /// The storages to poll for foreign commits (`Config::polled`).
    polls: Vec<(Arc<StorageEntry>, Arc<poll::Foreign>, Duration)>,
    /// `Config::lease_marker`, shared by the storages' leases.
    lease_marker: Option<Arc<lease::Marker>>,
}

impl std::fmt::Debug for Server {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Server")
            .field("shared", &self.shared)
            .finish_non_exhaustive()
    }
}

enum Listener {
    Tcp(TcpListener),
    Unix(UnixListener, PathBuf),
}

impl Server {
    /// Binds `config.address` and prepares to serve `storages` (by name;
    /// Python clients ask for `"1"` by default).
    pub async fn bind(
        config: Config,
        storages: Vec<(String, Arc<dyn Storage>)>,
    ) -> std::io::Result<Server> {
        let listener = match &config.address {
            Address::Tcp(a) => Listener::Tcp(TcpListener::bind(a).await?),
            Address::Unix(p) => {
                // A socket file left by a server that died is in the way.
                if p.exists() && std::os::unix::net::UnixStream::connect(p).is_err() {
                    let _ = std::fs::remove_file(p);
                }
                Listener::Unix(UnixListener::bind(p)?, p.clone())
            }
        };
        let mut polls = Vec::new();
        let marker = config
            .lease_marker
            .clone()
            .map(|path| Arc::new(lease::Marker::new(path)));
        let storages = storages
            .into_iter()
            .map(|(name, s)| {
                let mut entry = StorageEntry::new(
                    name.clone(),
                    s,
                    config.read_only,
                    config.invalidation_queue_size,
                    config.lease,
                    marker.clone(),
                );
                let interval = config.polled.get(&name).copied();
                let foreign = interval.map(|_| entry.listen_for_foreign_commits());
                let entry = Arc::new(entry);
                if let (Some(interval), Some(foreign)) = (interval, foreign) {
                    polls.push((Arc::clone(&entry), foreign, interval));
                }
                (name, entry)
            })
            .collect();
        let (shutdown, _) = watch::channel(false);
        let voting_max = limits::VOTING_BYTES_TOTAL_MAX.max(config.transaction_bytes_max);
        let server = Server {
            shared: Arc::new(Shared {
                config,
                storages,
                connections: AtomicUsize::new(0),
                outbox_budget: Arc::new(outbox::OutboxBudget::new(limits::OUTBOX_BYTES_TOTAL_MAX)),
                txn_memory: budget::Budget::new(limits::TXN_BUFFER_MEMORY_BYTES_TOTAL_MAX as u64),
                voting: budget::Budget::new(voting_max),
                unregistered: parking_lot::Mutex::new(std::collections::VecDeque::new()),
                next_connection: AtomicU64::new(1),
                started: SystemTime::now(),
                shutdown,
            }),
            listener,
            polls,
            lease_marker: marker,
        };
        // The bound address, so that with port 0 the log says where the server is (the
        // tests start servers that way and read the port from this line).
        tracing::info!(address = %server.local_address(), "serving");
        Ok(server)
    }

    /// The bound address (with the real port when 0 was asked for).
    pub fn local_address(&self) -> Address {
        match &self.listener {
            Listener::Tcp(l) => {
                Address::Tcp(l.local_addr().map(|a| a.to_string()).unwrap_or_default())
            }
            Listener::Unix(_, p) => Address::Unix(p.clone()),
        }
    }

    pub fn handle(&self) -> Handle {
        Handle {
            shutdown: self.shared.shutdown.clone(),
        }
    }

    /// Serves until [`Handle::shutdown`]; then waits for the connections
    /// (voted transactions get a grace period) and closes the storages.
    pub async fn run(self) {
        let shared = self.shared;
        let mut shutdown = shared.shutdown.subscribe();
        let mut tasks = tokio::task::JoinSet::new();
        for (entry, foreign, interval) in self.polls {
            tasks.spawn(poll::run(
                entry,
                foreign,
                interval,
                shared.shutdown.subscribe(),
            ));
        }
        loop {
            let accepted = tokio::select! {
                a = accept(&self.listener) => a,
                _ = shutdown.changed() => break,
            };
            let (stream, peer) = match accepted {
                Ok(x) => x,
                Err(e) => {
                    tracing::warn!("accept failed: {e}");
                    // Out of file descriptors and the like: back off a little.
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            let id = shared.next_connection.fetch_add(1, Ordering::Relaxed);
            let Some(slot) = Slot::take(&shared, &peer, id) else {
                drop(stream);
                continue;
            };
            let shared2 = Arc::clone(&shared);
            // From its accept a connection has `register_timeout` to finish its TLS
            // handshake (if any), send its ZEO handshake and register.
            let register_by = tokio::time::Instant::now() + shared.config.register_timeout;
            tasks.spawn(async move {
                match stream {
                    Stream::Tcp(s) => {
                        let _ = s.set_nodelay(true);
                        serve_stream(shared2, s, peer, id, slot, register_by).await
                    }
                    Stream::Unix(s) => serve_stream(shared2, s, peer, id, slot, register_by).await,
                }
            });
            while tasks.try_join_next().is_some() {}
        }
        tracing::info!("shutting down: waiting for connections");
        while tasks.join_next().await.is_some() {}
        for (name, e) in &shared.storages {
            if let Err(err) = e.storage.close() {
                tracing::error!(storage = %name, "closing: {err}");
            }
        }
        if let Some(marker) = &self.lease_marker {
            if shared.storages.values().any(|e| e.leases.any_held()) {
                tracing::info!("read leases still held: the next start waits one lease");
            } else {
                marker.remove();
            }
        }
        if let Listener::Unix(_, p) = &self.listener {
            let _ = std::fs::remove_file(p);
        }
        tracing::info!("stopped");
    }
}

/// A connection's place among `connections_max` (and, until it registers, among the
/// `UNREGISTERED_CONNECTIONS_MAX` newest unregistered connections): given back when
/// dropped, so a connection task that ends in any way, a panic included, frees it.
pub struct Slot {
    shared: Arc<Shared>,
    id: u64,
    unregistered: AtomicBool,
    /// Wakes the connection's task to close it (eviction, transaction timeout, shutdown).
    pub kick: Arc<tokio::sync::Notify>,
}

impl Slot {
    /// A slot for connection `id` from `peer`, or `None` (logged) when the server is full.
    /// When too many connections have not registered, the oldest of them is closed.
    fn take(shared: &Arc<Shared>, peer: &str, id: u64) -> Option<Slot> {
        let max = shared.config.connections_max;
        if shared.connections.fetch_add(1, Ordering::AcqRel) >= max {
            shared.connections.fetch_sub(1, Ordering::AcqRel);
            tracing::warn!(peer = %peer, "too many connections ({max}); refusing");
            return None;
        }
        let kick = Arc::new(tokio::sync::Notify::new());
        let mut waiting = shared.unregistered.lock();
        while waiting.len() >= limits::UNREGISTERED_CONNECTIONS_MAX {
            if let Some((old, close)) = waiting.pop_front() {
                tracing::info!(
                    connection = old,
                    "closing a connection that has not registered: newer ones are waiting"
                );
                close.notify_one();
            }
        }
        waiting.push_back((id, Arc::clone(&kick)));
        drop(waiting);
        Some(Slot {
            shared: Arc::clone(shared),
            id,
            unregistered: AtomicBool::new(true),
            kick,
        })
    }

    /// The connection registered: it is no longer among the unregistered.
    pub fn registered(&self) {
        if self.unregistered.swap(false, Ordering::AcqRel) {
            self.shared
                .unregistered
                .lock()
                .retain(|(id, _)| *id != self.id);
        }
    }

    pub fn is_registered(&self) -> bool {
        !self.unregistered.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Slot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Slot")
            .field("id", &self.id)
            .field("registered", &self.is_registered())
            .finish()
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.registered();
        self.shared.connections.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Serves one accepted socket: in TLS when the server is configured so.
async fn serve_stream<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: String,
    id: u64,
    slot: Slot,
    register_by: tokio::time::Instant,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let Some(tls) = shared.config.tls.clone() else {
        return connection::serve(shared, stream, peer, id, slot, register_by).await;
    };
    let handshake = tokio::time::timeout_at(
        register_by,
        tokio_rustls::TlsAcceptor::from(tls).accept(stream),
    );
    let stream = tokio::select! {
        r = handshake => match r {
            Ok(Ok(s)) => s,
            Ok(Err(e)) => {
                tracing::warn!(peer = %peer, "closing: TLS handshake failed: {e}");
                return;
            }
            Err(_) => {
                tracing::info!(peer = %peer, "closing: no TLS handshake within the register timeout");
                return;
            }
        },
        _ = slot.kick.notified() => {
            tracing::info!(peer = %peer, "closing: newer connections took its place during its TLS handshake");
            return;
        }
    };
    tracing::debug!(
        peer = %peer,
        version = ?stream.get_ref().1.protocol_version(),
        client_certificate = stream.get_ref().1.peer_certificates().is_some(),
        "TLS established"
    );
    connection::serve(shared, stream, peer, id, slot, register_by).await
}

enum Stream {
    Tcp(tokio::net::TcpStream),
    Unix(tokio::net::UnixStream),
}

async fn accept(l: &Listener) -> std::io::Result<(Stream, String)> {
    match l {
        Listener::Tcp(l) => {
            let (s, a) = l.accept().await?;
            Ok((Stream::Tcp(s), a.to_string()))
        }
        Listener::Unix(l, p) => {
            let (s, _) = l.accept().await?;
            Ok((Stream::Unix(s), format!("unix:{}", p.display())))
        }
    }
}
