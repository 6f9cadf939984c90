//! The ZEO 5 client: [`ClientStorage`] implements [`Storage`] over the wire, so the
//! persistence layer and the web app run against a ZEO server (`bbru-zeo`, or Python's
//! `runzeo`) as they run against a local `FileStorage`.
//!
//! Spec: `docs/spec/zeo-protocol.md` §1–§5.  Pieces:
//!
//! * `stream.rs`: the socket (TCP, unix, or TLS over one) a connection reads and writes;
//! * `tls.rs`: the TLS stream the connection's threads share;
//! * `connection.rs`: one socket, the handshake, calls matched to replies by message id
//!   on a reader thread, callbacks;
//! * this file: the options, the state the client's threads share, connecting and the
//!   client's own methods (`ping`, `cache_stats`, ...);
//! * `session.rs`: one session with a server: register (read-only fallback), cache
//!   verification, `get_info`, installing the connection;
//! * `reconnect.rs`: the manager thread that reconnects, and upgrades a fallback;
//! * `events.rs`: what the reader thread reports (replies' cache updates,
//!   invalidations, `info`, a lost connection), and the listeners' reports;
//! * `storage.rs`: `impl Storage for ClientStorage`;
//! * `txn.rs`: buffered transactions and the connection's one transaction slot;
//! * `commit.rs`: vote, finish and abort over the wire;
//! * `cache.rs`: the size-bounded cache of object revisions;
//! * `iter.rs`: the lazy transaction iterator;
//! * `convert.rs`: the replies only the client reads, and error mapping.
//!
//! The calls and the replies both sides read are typed in `crate::wire` (`Call`,
//! `TxnOp`, `VoteReply`, ...), shared with the server.
//!
//! Threads: each connection has a reader thread; a manager thread waits for the
//! connection to be lost and reconnects (every 1–2 s while it fails), and while a
//! read-only fallback connection is in use it keeps trying the other addresses for a
//! writable one.  Callers block on their reply; a call made while no connection is up
//! waits for one up to [`ClientOptions::disconnected_wait`] (by default
//! [`ClientOptions::wait_timeout`]) and then fails with `StorageError::Disconnected`.
//! Calls in flight when the connection drops fail with `Disconnected` too; they are not
//! retried.  [`Storage::check_health`] pings with a deadline and fails at once while no
//! connection is up.
//!
//! Consistency: invalidations and replies are applied to the cache by the reader thread
//! in stream order, and the server sends a commit's invalidation before any reply that
//! depends on it (spec §5.5), so the cache never holds as current a revision the client
//! has already been told is replaced.  Loads that hit the cache are answered even while
//! disconnected (as Python's client does); they show the database as of the last
//! transaction heard of.
//!
//! Listeners ([`Storage::add_listener`], contract in `zodb_storage::listeners`) hear of
//! every transaction where the cache learns of it, right after it is applied: another
//! client's commit when its `invalidateTransaction` is read, our own when the reader
//! reads the `tpc_finish` reply (the server sends the committer no invalidation; the
//! oids are the ones the transaction wrote, kept with the reply's `Post` step).  Both
//! happen on the reader thread, so reports follow the stream, which the server writes in
//! tid order, and our own commit is reported before `finish` returns.  After a
//! reconnection, verification reports what changed meanwhile as one transaction (the
//! server's last tid, every oid `getInvalidations` names), or, when the server cannot
//! say, calls `reset`; both before the new connection's own invalidations are reported.
//! The lock that serialises reports (`Shared::reported`) is taken before the cache lock
//! that applied the transaction is released, so reports follow the cache's order
//! whichever thread applies.
//!
//! Choices that differ from (or are not covered by) Python's `ClientStorage`:
//!
//! * Transactions are buffered in the client and sent at `vote` (see `txn.rs`): the
//!   trait allows several open transactions, a ZEO connection carries one.
//! * `undo` returns the oids of the undone transaction, read with the iterator before
//!   the undo is sent (the server reports them only in the vote result); if that
//!   transaction cannot be read, it returns an empty list and the vote says why.
//! * `new_oids` asks the server for exactly the oids wanted (≤100 per call), keeping no
//!   pool, so an oid stored explicitly above the server's counter is never handed out.
//! * `pack(tid, gc = false)` fails with `StorageError::Pack`: a ZEO server always packs
//!   with garbage collection.
//! * `history` and `undo_log` return as `extension` the keys of each dict other than the
//!   standard ones (`id`, `time`, `tid`, `user_name`, `description`, `size`), re-pickled
//!   (FileStorage merges the extension into these dicts); an extension key with a
//!   standard name is lost, as in Python.
//! * Conflicts the server leaves to the client (vote results of a server in
//!   client-conflict-resolution mode, as `bbru-zeo` always is) are not resolved here —
//!   this layer knows no classes — but reported as `Conflict`/`Conflicts`; the
//!   persistence layer (`zodb`) resolves them and commits again.
//! * `load_serial` always asks the server (as Python's does), and a successful `pack`
//!   empties this client's cache: pack removes revisions and, with garbage collection,
//!   whole objects, and nothing says which.  Other clients' caches keep what they had
//!   (as in Python): old revisions they serve were true, and collected objects are
//!   unreachable.
//! * `restore` with no data but a `prev_txn` (a backpointer) loads that revision and
//!   sends it along with `prev_txn`, as Python's `copyTransactionsFrom` does (Python's
//!   FileStorage needs the data; it writes the backpointer itself).
//! * `record_iternext` past the last object is `Ok(None)` (our server answers
//!   POSKeyError there, Python's a ValueError).
//! * A cache newer than the server it reconnects to (server behind the client: a lost
//!   or different database) makes the client refuse that server and keep trying, as
//!   Python's does; a client with an empty cache takes any server.
//! * `len`/`size` come from `get_info` and the `info` callbacks, which follow our own
//!   commits and packs only: other clients' commits do not update them (as in Python).
//! * TLS ([`ClientOptions::tls`]) needs the CA to trust given: no system store is read
//!   (Python's `ssl` falls back to it).
//! * No blobs, no heartbeat, no persistent cache file.

mod blobs;
mod cache;
mod commit;
mod connection;
mod convert;
mod events;
mod iter;
mod lease;
mod reconnect;
mod session;
mod storage;
mod stream;
mod sync;
mod tls;
mod txn;

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use zodb_pickle::Value;
#[cfg(doc)]
use zodb_storage::Storage;
use zodb_storage::{Listeners, Oid, StorageError, Tid};

pub use cache::CacheStats;

use crate::address::Address;
use crate::limits;
use crate::wire::Call;
use cache::Cache;
use connection::{Connection, Post};
use convert::{CallKind, call_error};
use reconnect::reconnect_delay;
use stream::ClientTlsConfig;
use txn::Txns;

/// How to reach and use a ZEO server.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Server addresses, tried in order: `host:port`, `port` (loopback), or a unix
    /// socket path (anything containing `/`), as [`Address`]
    /// parses them (an empty one is refused).  The first that registers is used.
    pub addresses: Vec<String>,
    /// The storage to open on the server (`'1'` by default, as runzeo names its one).
    pub storage: String,
    /// Register read-only: writes fail with `ReadOnly` without asking the server.
    pub read_only: bool,
    /// If the server refuses a writable registration (it is read-only), register
    /// read-only on the same connection, and keep trying the other addresses for a
    /// writable server (spec §5.1).
    pub read_only_fallback: bool,
    /// Bytes of object data the client cache may hold; 0 disables it.
    pub cache_size: usize,
    /// How long [`ClientStorage::connect`] tries, and, unless `disconnected_wait` says
    /// otherwise, how long a call waits for a reconnection before failing.
    pub wait_timeout: Duration,
    /// How long a call made while the connection is down waits for the reconnection
    /// before failing with `StorageError::Disconnected`; `None`: `wait_timeout`.  A web
    /// server sets it short, so requests fail fast while the server is away instead of
    /// each holding a worker for the whole `wait_timeout`.
    pub disconnected_wait: Option<Duration>,
    /// How long a call the server answers at once (a `sync`'s ping, a load, new oids,
    /// history and the other reads) waits for the answer while connected before failing
    /// with `StorageError::Disconnected`; `None`: `wait_timeout`. A server that keeps the
    /// connection but stopped answering must not hold its callers without end.  (A vote
    /// and a finish may wait on the server for other clients' locks: not bounded here.)
    pub answer_wait: Option<Duration>,
    /// How long a vote, a finish or an abort waits for the server's answer; past it the
    /// connection is closed (the server aborts the transaction; the client reconnects)
    /// and the call fails with `StorageError::Disconnected`.  `None`: no limit, as
    /// Python's client (a vote may wait on the server for other clients' locks, up to
    /// the server's lock timeout).
    pub commit_wait: Option<Duration>,
    /// Largest frame accepted from, or sent to, the server.
    pub frame_size_max: usize,
    /// Speak TLS to the server (from the first byte, as Python ZEO's `ssl`); `None`:
    /// plain.  Its files are read by [`ClientStorage::connect`], which fails naming a
    /// bad one.
    pub tls: Option<crate::tls::ClientTls>,
    /// Blobs: this client's blob cache, or, with `shared_blob_dir`, the server's own
    /// blob directory (`None`: no blobs; storing one fails).  Created if missing.
    pub blob_dir: Option<std::path::PathBuf>,
    /// `blob_dir` is the server's blob directory, read and written here directly.
    pub shared_blob_dir: bool,
    /// Bytes the blob cache may hold (files downloaded longest ago go first).
    pub blob_cache_bytes: u64,
    /// Take the read lease a server offers (`bbru-zeo --lease-ms`, spec §11): while
    /// held, a `sync` returns without a round trip, and the server makes its commits
    /// wait for this client's confirmation that it applied their invalidations.
    pub lease: bool,
}

impl ClientOptions {
    /// Options for one server address, every other setting at its default.
    pub fn new(address: impl Into<String>) -> ClientOptions {
        ClientOptions {
            addresses: vec![address.into()],
            storage: "1".to_string(),
            read_only: false,
            read_only_fallback: false,
            cache_size: limits::CLIENT_CACHE_BYTES_DEFAULT,
            wait_timeout: Duration::from_secs(limits::CLIENT_WAIT_TIMEOUT_SECONDS_DEFAULT),
            disconnected_wait: None,
            answer_wait: None,
            commit_wait: None,
            frame_size_max: limits::FRAME_SIZE_MAX_DEFAULT,
            tls: None,
            blob_dir: None,
            shared_blob_dir: false,
            blob_cache_bytes: limits::CLIENT_BLOB_CACHE_BYTES_DEFAULT,
            lease: true,
        }
    }
}

/// What the server said about the storage (`get_info`, updated by `info` callbacks).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ServerInfo {
    /// Number of objects.
    pub length: u64,
    /// Size in bytes.
    pub size: u64,
    /// The storage's name on the server.
    pub name: String,
    /// Whether the server offers undo.
    pub supports_undo: bool,
    /// Whether the server's storage has blobs (lists `IBlobStorage`).
    pub supports_blobs: bool,
}

/// The current connection, and whether the client was closed.
#[derive(Debug, Default)]
struct ConnState {
    current: Option<Arc<Connection>>,
    /// The current connection registered read-only.
    read_only: bool,
    /// ... because the server refused a writable registration (fallback).
    fallback: bool,
    closed: bool,
    /// Why the last connection attempt failed, or the last connection ended.
    last_error: Option<String>,
}

#[derive(Debug)]
struct CacheState {
    cache: Cache,
    /// Invalidations held while a new connection is registered and verified, by
    /// connection id (spec §5.1 step 5).
    held: HashMap<u64, Vec<(Tid, Vec<Oid>)>>,
}

/// Everything the client's threads share.
#[derive(Debug)]
struct Shared {
    options: ClientOptions,
    addresses: Vec<Address>,
    /// `options.tls`, read.
    tls: Option<ClientTlsConfig>,
    /// `options.blob_dir`, open.
    blobs: Option<blobs::Blobs>,
    closed: AtomicBool,
    conn: Mutex<ConnState>,
    /// Signalled when the connection changes or the client closes.
    conn_cv: Condvar,
    cache: Mutex<CacheState>,
    info: Mutex<ServerInfo>,
    txns: Mutex<Txns>,
    /// Signalled when a transaction leaves the `Busy` phase or the slot is released.
    txn_cv: Condvar,
    next_conn_id: AtomicU64,
    next_txn_id: AtomicU64,
    connections_made: AtomicU64,
    /// Told of every transaction (see "Listeners" in the module doc).
    listeners: Listeners,
    /// The last tid reported to the listeners (or skipped by a verification that had
    /// nobody to tell).  Its lock orders the reports: whoever applies a transaction to
    /// the cache takes it before releasing the cache lock and holds it while the
    /// listeners run.  Lock order: `cache`, then `reported`.
    reported: Mutex<Tid>,
    /// Round trips of `sync`, shared by concurrent callers.
    sync_gate: sync::SyncGate,
    /// The read lease that spares a `sync` its round trip (`lease.rs`).
    lease: lease::Lease,
}

/// A ZEO client storage (see the module doc).  Dropping it closes it.
#[derive(Debug)]
pub struct ClientStorage {
    shared: Arc<Shared>,
}

impl Shared {
    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn check_open(&self) -> Result<(), StorageError> {
        if self.is_closed() {
            Err(StorageError::Closed)
        } else {
            Ok(())
        }
    }

    /// How long a call waits for a reconnection.
    fn disconnected_wait(&self) -> Duration {
        self.options
            .disconnected_wait
            .unwrap_or(self.options.wait_timeout)
    }

    /// Why there is no connection, for a `Disconnected` error.
    fn no_connection(&self, st: &ConnState, waited: Option<Duration>) -> StorageError {
        let why = st
            .last_error
            .clone()
            .unwrap_or_else(|| "no connection yet".into());
        let waited = waited.map(|w| format!(" within {w:?}")).unwrap_or_default();
        StorageError::Disconnected(format!(
            "no connection to a ZEO server ({}){waited}: {why}",
            self.options.addresses.join(", "),
        ))
    }

    /// The current connection, waiting up to [`Shared::disconnected_wait`] for one.
    fn wait_connection(&self) -> Result<Arc<Connection>, StorageError> {
        // Every request to the server starts here: refused on a thread that must not
        // wait (a view run in line; it runs again where it may).
        if !zodb_storage::inline::may_wait() {
            return Err(zodb_storage::inline::refuse("a request to the ZEO server"));
        }
        let wait = self.disconnected_wait();
        let deadline = Instant::now() + wait;
        let mut st = self.conn.lock();
        loop {
            if st.closed {
                return Err(StorageError::Closed);
            }
            if let Some(c) = &st.current
                && !c.is_dead()
            {
                return Ok(Arc::clone(c));
            }
            if Instant::now() >= deadline {
                return Err(self.no_connection(&st, Some(wait)));
            }
            self.conn_cv.wait_until(&mut st, deadline);
        }
    }
    /// A synchronous call on the current connection; a read waits at most
    /// [`Shared::answer_wait`] for its answer.
    fn call(&self, call: Call, kind: CallKind, oid: Option<Oid>) -> Result<Value, StorageError> {
        self.check_open()?;
        let conn = self.wait_connection()?;
        let method = call.method();
        match kind {
            CallKind::Read => conn.call_within(call, self.answer_wait()),
            CallKind::Commit | CallKind::Pack => conn.call(call, Post::Nothing),
        }
        .map_err(|e| call_error(method, kind, oid, e))
    }

    /// How long a call the server answers at once waits for the answer
    /// ([`ClientOptions::answer_wait`]).
    pub(super) fn answer_wait(&self) -> Duration {
        self.options
            .answer_wait
            .unwrap_or(self.options.wait_timeout)
    }

    /// The round trip of a sync, once connected waiting at most [`Shared::answer_wait`]
    /// for the answer.
    pub(super) fn sync_ping(&self) -> Result<(), StorageError> {
        self.check_open()?;
        let conn = self.wait_connection()?;
        conn.call_within(Call::Ping, self.answer_wait())
            .map(drop)
            .map_err(|e| call_error("ping", CallKind::Read, None, e))
    }

    fn current_read_only(&self) -> bool {
        self.options.read_only || self.conn.lock().read_only
    }

    /// Tells the listeners of transaction `tid`, already applied to the cache; the
    /// caller holds `reported` (see its field).  A tid not after the last one reported
    /// is already covered: a verification reports everything up to the server's last
    /// tid at once, and an old connection still being replaced (a read-only fallback)
    /// may deliver invalidations that report included.
    fn report(&self, reported: &mut Tid, tid: Tid, oids: &[Oid]) {
        if tid <= *reported {
            tracing::debug!(%tid, last = %*reported, "transaction already reported");
            return;
        }
        *reported = tid;
        self.listeners.committed(tid, oids);
    }
}

impl ClientStorage {
    /// Connects to the first of `options.addresses` that accepts the registration
    /// (trying again every 1–2 s for up to `options.wait_timeout` while none answers),
    /// verifies nothing (the cache starts empty), and starts the thread that
    /// reconnects when the connection is lost.
    ///
    /// Fails with `ReadOnly` when the server refuses a writable registration and
    /// `read_only_fallback` is off, with `Io` when an address is empty, when the storage
    /// name is unknown to the server or no server answered in time.
    pub fn connect(options: ClientOptions) -> Result<ClientStorage, StorageError> {
        if options.addresses.is_empty() {
            return Err(StorageError::io(
                "ZEO client",
                std::io::Error::new(std::io::ErrorKind::InvalidInput, "no server address"),
            ));
        }
        let addresses = options
            .addresses
            .iter()
            .map(|a| {
                Address::parse(a).map_err(|e| {
                    StorageError::io(
                        "ZEO client",
                        std::io::Error::new(
                            std::io::ErrorKind::InvalidInput,
                            format!("server address {a:?}: {e}"),
                        ),
                    )
                })
            })
            .collect::<Result<_, _>>()?;
        let tls = match &options.tls {
            None => None,
            Some(settings) => Some(ClientTlsConfig {
                config: settings.client_config().map_err(|e| {
                    StorageError::io(
                        "ZEO client TLS",
                        std::io::Error::new(std::io::ErrorKind::InvalidInput, e),
                    )
                })?,
                settings: settings.clone(),
            }),
        };
        let blobs = match &options.blob_dir {
            Some(dir) => Some(blobs::Blobs::open(
                dir,
                options.shared_blob_dir,
                options.blob_cache_bytes,
            )?),
            None => None,
        };
        let shared = Arc::new(Shared {
            addresses,
            tls,
            blobs,
            closed: AtomicBool::new(false),
            conn: Mutex::new(ConnState::default()),
            conn_cv: Condvar::new(),
            cache: Mutex::new(CacheState {
                cache: Cache::new(options.cache_size),
                held: HashMap::new(),
            }),
            info: Mutex::new(ServerInfo::default()),
            txns: Mutex::new(Txns::default()),
            txn_cv: Condvar::new(),
            next_conn_id: AtomicU64::new(1),
            next_txn_id: AtomicU64::new(1),
            connections_made: AtomicU64::new(0),
            listeners: Listeners::new(),
            reported: Mutex::new(Tid::ZERO),
            sync_gate: sync::SyncGate::default(),
            lease: lease::Lease::default(),
            options,
        });
        let deadline = Instant::now() + shared.options.wait_timeout;
        loop {
            match shared.connect_any(None, false) {
                Ok(()) => break,
                Err(e) if e.permanent => {
                    shared.shutdown();
                    return Err(e.error);
                }
                Err(e) => {
                    let delay = reconnect_delay();
                    if Instant::now() + delay >= deadline {
                        shared.shutdown();
                        return Err(e.error);
                    }
                    tracing::debug!("connecting failed, retrying: {}", e.error);
                    std::thread::sleep(delay);
                }
            }
        }
        // The client's threads; each holds the shared state until the client closes.
        let spawn = |name: &str, run: Box<dyn FnOnce() + Send>| {
            std::thread::Builder::new()
                .name(name.into())
                .spawn(run)
                .map(drop)
                .map_err(|e| {
                    shared.shutdown();
                    StorageError::io("starting the ZEO client thread", e)
                })
        };
        let manager = Arc::clone(&shared);
        spawn("zeo-client-manager", Box::new(move || manager.manage()))?;
        shared
            .sync_gate
            .set_sender(ping_sender(Arc::downgrade(&shared)));
        let pinger = Arc::clone(&shared);
        spawn(
            "zeo-client-pinger",
            Box::new(move || pinger.sync_gate.serve_pings(|| pinger.sync_ping())),
        )?;
        if shared.options.lease {
            let leaser = Arc::clone(&shared);
            spawn("zeo-client-lease", Box::new(move || leaser.keep_lease()))?;
        }
        Ok(ClientStorage { shared })
    }

    /// Whether a connection is up (registered and verified).
    pub fn is_connected(&self) -> bool {
        self.shared
            .conn
            .lock()
            .current
            .as_ref()
            .is_some_and(|c| !c.is_dead())
    }

    /// Waits up to `timeout` for a connection to be up; true if one is.
    pub fn wait_connected(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.shared.conn.lock();
        loop {
            if st.closed {
                return false;
            }
            if st.current.as_ref().is_some_and(|c| !c.is_dead()) {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            self.shared.conn_cv.wait_until(&mut st, deadline);
        }
    }

    /// How many connections have been made (registered and verified) so far: 1 after
    /// `connect`, one more per reconnection.
    pub fn connections_made(&self) -> u64 {
        self.shared.connections_made.load(Ordering::Relaxed)
    }

    /// A round trip to the server (`ping`).  When it returns, every invalidation the
    /// server had queued for this client before answering has been applied.  (Whether a
    /// commit another client has just seen finish is among them depends on the server:
    /// Python's queues the invalidations in the same step as the committer's reply.)
    pub fn ping(&self) -> Result<(), StorageError> {
        self.shared.call(Call::Ping, CallKind::Read, None).map(drop)
    }

    /// A round trip that gives up after `within`, failing at once (without waiting for
    /// a reconnection) while no connection is up: whether the server answers now.
    pub fn ping_within(&self, within: Duration) -> Result<(), StorageError> {
        self.shared.check_open()?;
        let conn = {
            let st = self.shared.conn.lock();
            match &st.current {
                Some(c) if !c.is_dead() => Arc::clone(c),
                _ => return Err(self.shared.no_connection(&st, None)),
            }
        };
        conn.call_within(Call::Ping, within)
            .map(drop)
            .map_err(|e| call_error("ping", CallKind::Read, None, e))
    }

    /// Whether this client holds a read lease this moment (its syncs need no round
    /// trip; see [`ClientOptions::lease`]).
    pub fn holds_lease(&self) -> bool {
        self.shared.lease.held()
    }

    /// The cache's counters.
    pub fn cache_stats(&self) -> CacheStats {
        self.shared.cache.lock().cache.stats()
    }

    /// What the server said about the storage.
    pub fn server_info(&self) -> ServerInfo {
        self.shared.info.lock().clone()
    }
}

impl Shared {
    /// Marks the client closed and ends its connection.
    fn shutdown(&self) {
        self.closed.store(true, Ordering::Release);
        self.sync_gate.close();
        let current = {
            let mut st = self.conn.lock();
            st.closed = true;
            self.conn_cv.notify_all();
            st.current.take()
        };
        self.lease.drop_lease();
        if let Some(c) = current {
            if self.lease.confirms(c.id) {
                // Commits need not wait for this client until its lease runs out.
                let _ = c.send_async([Call::LeaseEnd]);
            }
            c.close();
        }
        let _t = self.txns.lock();
        self.txn_cv.notify_all();
    }
}

/// How the sync gate sends a ping without waiting: on the current connection, if it
/// is up and its writer free; the answer finishes the ping on the reader thread.
fn ping_sender(shared: std::sync::Weak<Shared>) -> sync::TrySend {
    Box::new(move |number| {
        let Some(client) = shared.upgrade() else {
            return false;
        };
        let conn = match &client.conn.lock().current {
            Some(c) if !c.is_dead() => Arc::clone(c),
            _ => return false,
        };
        let owner = shared.clone();
        let finish: connection::Then = Box::new(move |result| {
            if let Some(client) = owner.upgrade() {
                let result = result
                    .as_ref()
                    .map(drop)
                    .map_err(|e| call_error("ping", CallKind::Read, None, e.clone()));
                client.sync_gate.finish(number, &result);
            }
        });
        conn.try_call_then(Call::Ping, finish).is_ok()
    })
}

impl Drop for ClientStorage {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: an empty address used to be tried as a host named `""` until
    /// `wait_timeout` ran out; it is refused at once, saying why.
    #[test]
    fn an_empty_server_address_is_refused() {
        let mut options = ClientOptions::new("");
        options.wait_timeout = Duration::from_secs(600);
        let e = ClientStorage::connect(options).unwrap_err();
        assert!(e.to_string().contains("empty address"), "{e}");
    }
}
