//! The ZEO 5 client: [`ClientStorage`] implements [`Storage`] over the wire, so the
//! persistence layer and the web app run against a ZEO server (`bbru-zeo`, or Python's
//! `runzeo`) as they run against a local `FileStorage`.
//!
//! Spec: `docs/spec/zeo-protocol.md` §1–§5.  Pieces:
//!
//! * `connection.rs`: one socket, the handshake, calls matched to replies by message id
//!   on a reader thread, callbacks;
//! * this file: connecting (register, read-only fallback, cache verification),
//!   reconnecting in the background, and the `Storage` methods;
//! * `cache.rs`: the size-bounded cache of object revisions;
//! * `txn.rs`: buffered transactions and the connection's one transaction slot;
//! * `iter.rs`: the lazy transaction iterator;
//! * `convert.rs`: wire values ↔ storage types, and error mapping.
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
//! * No blobs, no TLS, no heartbeat, no persistent cache file.

mod cache;
mod connection;
mod convert;
mod iter;
mod txn;

use std::collections::HashMap;
use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use zodb_pickle::Value;
use zodb_storage::{
    HistoryEntry, InvalidationListener, Listeners, Oid, RecordIterItem, Revision, Storage,
    StorageError, Tid, TransactionIter, TransactionMeta, TxnHandle, UndoLogEntry,
};

pub use cache::CacheStats;

use crate::limits;
use crate::wire::{self, Call, RemoteError, TxnOp, as_oid, as_tid, items};
use cache::Cache;
use connection::{Address, CallError, CallResult, Connection, Events, FinishUpdate, Post};
use convert::{CallKind, bad_reply, call_error, disconnected, int_value, reply_error};
use txn::{Phase, Txn, Txns};

/// How to reach and use a ZEO server.
#[derive(Debug, Clone, PartialEq)]
pub struct ClientOptions {
    /// Server addresses, tried in order: `host:port`, `port` (loopback), or a unix
    /// socket path (anything containing `/`).  The first that registers is used.
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
    /// Largest frame accepted from, or sent to, the server.
    pub frame_size_max: usize,
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
            frame_size_max: limits::FRAME_SIZE_MAX_DEFAULT,
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
}

/// A ZEO client storage (see the module doc).  Dropping it closes it.
#[derive(Debug)]
pub struct ClientStorage {
    shared: Arc<Shared>,
}

/// Why a connection attempt failed; `permanent` when retrying the same server cannot
/// help without a change on its side (refused registration).
#[derive(Debug)]
struct AttemptError {
    error: StorageError,
    permanent: bool,
}

impl AttemptError {
    fn transient(why: impl Into<String>) -> AttemptError {
        AttemptError {
            error: disconnected(why),
            permanent: false,
        }
    }
}

/// A registered (not yet verified) connection.
struct Registered {
    conn: Arc<Connection>,
    read_only: bool,
    fallback: bool,
    server_tid: Tid,
}

/// A delay of 1–2 s, uniformly (Python's `1 + random()`).
fn reconnect_delay() -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let span = limits::CLIENT_RECONNECT_DELAY_MAX_MILLIS
        .saturating_sub(limits::CLIENT_RECONNECT_DELAY_MIN_MILLIS)
        .max(1);
    Duration::from_millis(limits::CLIENT_RECONNECT_DELAY_MIN_MILLIS + h.finish() % span)
}

/// The float seconds to send `pack` so that the server's conversion back to a tid
/// (`TimeStamp(*gmtime(t)[:5] + (t % 60,))`) is not before `tid`: a double cannot hold
/// a tid exactly (~17 tid units per ulp today), and rounding down would leave the
/// transaction `tid` out of the pack.
fn pack_seconds(tid: Tid) -> f64 {
    let mut t = tid.unix_seconds();
    for _ in 0..64 {
        if Tid::from_unix_seconds(t) >= tid {
            break;
        }
        t = t.next_up();
    }
    t
}

impl Events for Shared {
    fn post(&self, _conn: &Connection, post: Post, result: &CallResult) {
        match (post, result) {
            (Post::Nothing, _) | (_, Err(_)) => {}
            (Post::Load(oid), Ok(reply)) => {
                if let Ok(Some(rev)) = wire::read_load_reply(reply) {
                    self.cache
                        .lock()
                        .cache
                        .store(oid, rev.start, rev.end, rev.data);
                }
            }
            (Post::Finish(update), Ok(reply)) => {
                if let Some(tid) = as_tid(reply) {
                    let FinishUpdate {
                        stores,
                        changed,
                        oids,
                    } = update;
                    let mut state = self.cache.lock();
                    for oid in changed {
                        state.cache.invalidate(oid, tid);
                    }
                    for (oid, data) in stores {
                        state.cache.invalidate(oid, tid);
                        state.cache.store(oid, tid, None, data);
                    }
                    state.cache.advance(tid);
                    // Our own commit: no invalidation will come for it.  Reported here,
                    // in stream order with the others' invalidations, before the caller
                    // of `finish` is woken.
                    let mut reported = self.reported.lock();
                    drop(state);
                    self.report(&mut reported, tid, &oids);
                }
            }
        }
    }

    fn invalidate(&self, conn: &Connection, tid: Tid, oids: Vec<Oid>) {
        let mut state = self.cache.lock();
        if let Some(held) = state.held.get_mut(&conn.id) {
            // Applied, and reported, by verification.
            held.push((tid, oids));
            return;
        }
        for &oid in &oids {
            state.cache.invalidate(oid, tid);
        }
        state.cache.advance(tid);
        let mut reported = self.reported.lock();
        drop(state);
        self.report(&mut reported, tid, &oids);
    }

    fn info(&self, info: &Value) {
        let mut i = self.info.lock();
        if let Some(n) = info.get("length").and_then(Value::as_i64) {
            i.length = u64::try_from(n).unwrap_or(0);
        }
        if let Some(n) = info.get("size").and_then(Value::as_i64) {
            i.size = u64::try_from(n).unwrap_or(0);
        }
    }

    fn lost(&self, conn: &Connection, why: &str) {
        self.cache.lock().held.remove(&conn.id);
        let mut st = self.conn.lock();
        if st.current.as_ref().is_some_and(|c| c.id == conn.id) {
            st.current = None;
            st.read_only = false;
            st.fallback = false;
            st.last_error = Some(why.to_string());
            if !self.closed.load(Ordering::Acquire) {
                tracing::warn!("{why}; reconnecting");
            }
        }
        self.conn_cv.notify_all();
    }
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

    /// Waits `delay` unless the client closes first; false if it closed.
    fn pause(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut st = self.conn.lock();
        while !st.closed && Instant::now() < deadline {
            self.conn_cv.wait_until(&mut st, deadline);
        }
        !st.closed
    }

    /// A synchronous call on the current connection.
    fn call(&self, call: Call, kind: CallKind, oid: Option<Oid>) -> Result<Value, StorageError> {
        self.check_open()?;
        let conn = self.wait_connection()?;
        let method = call.method();
        conn.call(call, Post::Nothing)
            .map_err(|e| call_error(method, kind, oid, e))
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

    // -----------------------------------------------------------------------
    // Connecting
    // -----------------------------------------------------------------------

    /// Connects to `address` and registers, with the read-only fallback.
    fn register(
        self: &Arc<Self>,
        address: &Address,
        allow_fallback: bool,
    ) -> Result<Registered, AttemptError> {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let events: Arc<dyn Events> = Arc::clone(self) as Arc<dyn Events>;
        let conn = Connection::open(id, address, self.options.frame_size_max, events)
            .map_err(AttemptError::transient)?;
        // Hold invalidations from now until the cache is verified.
        self.cache.lock().held.insert(id, Vec::new());
        let result = self.register_on(&conn, allow_fallback);
        if result.is_err() {
            self.cache.lock().held.remove(&id);
            conn.close();
        }
        result
    }

    fn register_on(
        &self,
        conn: &Arc<Connection>,
        allow_fallback: bool,
    ) -> Result<Registered, AttemptError> {
        let register = |read_only| Call::Register {
            storage: self.options.storage.clone(),
            read_only,
        };
        let refused = |e: CallError| match e {
            CallError::Remote(RemoteError::ReadOnlyError) => AttemptError {
                error: StorageError::ReadOnly,
                permanent: true,
            },
            CallError::Remote(r) => AttemptError {
                error: StorageError::io(
                    format!("registering storage '{}'", self.options.storage),
                    std::io::Error::other(format!("{}: {r}", conn.address)),
                ),
                permanent: true,
            },
            CallError::Disconnected(why) | CallError::Encode(why) => AttemptError::transient(why),
        };
        let read_only = self.options.read_only;
        let (reply, read_only, fallback) = match conn.call(register(read_only), Post::Nothing) {
            Ok(v) => (v, read_only, false),
            Err(CallError::Remote(RemoteError::ReadOnlyError))
                if !read_only && allow_fallback && self.options.read_only_fallback =>
            {
                // Spec §5.1: register again, read-only, on the same connection.
                let v = conn.call(register(true), Post::Nothing).map_err(refused)?;
                (v, true, true)
            }
            Err(e) => return Err(refused(e)),
        };
        let server_tid = match as_tid(&reply) {
            Some(t) => t,
            None => {
                let v = conn
                    .call(Call::LastTransaction, Post::Nothing)
                    .map_err(refused)?;
                as_tid(&v).ok_or_else(|| AttemptError {
                    error: bad_reply("lastTransaction", &v),
                    permanent: false,
                })?
            }
        };
        Ok(Registered {
            conn: Arc::clone(conn),
            read_only,
            fallback,
            server_tid,
        })
    }

    /// Cache verification (spec §5.1 step 4–5), then the held invalidations; the
    /// listeners are told what changed since the last transaction they heard of (see
    /// "Listeners" in the module doc).
    fn verify(&self, r: &Registered) -> Result<(), AttemptError> {
        let conn = &r.conn;
        let server = r.server_tid;
        let (cache_tid, empty) = {
            let s = self.cache.lock();
            (s.cache.last_tid(), s.cache.is_empty())
        };
        // The cache's tid is also the last one reported to the listeners (both move
        // together), so with listeners an empty cache still needs the list.
        let listening = !self.listeners.is_empty();
        enum Check {
            /// Nothing was missed, or nobody needs to know.
            Nothing,
            /// What changed is unknown (why, for the log): drop the cache, reset the
            /// listeners.
            Unknown(String),
            /// These objects changed after `cache_tid`.
            Oids(Vec<Oid>),
        }
        let check = if cache_tid == server || (empty && !listening) {
            Check::Nothing
        } else if cache_tid > server {
            if !empty {
                return Err(AttemptError::transient(format!(
                    "the server at {} is behind this client (its last transaction {server}, \
                     the client's cache has {cache_tid}); not using it",
                    conn.address
                )));
            }
            Check::Unknown(format!(
                "the server's last transaction {server} is before {cache_tid}, the last one \
                 reported"
            ))
        } else {
            let reply = conn
                .call(Call::GetInvalidations { tid: cache_tid }, Post::Nothing)
                .map_err(|e| match e {
                    CallError::Remote(r) => AttemptError::transient(format!(
                        "{}: getInvalidations failed: {r}",
                        conn.address
                    )),
                    CallError::Disconnected(why) | CallError::Encode(why) => {
                        AttemptError::transient(why)
                    }
                })?;
            let unknown = || {
                Check::Unknown(format!(
                    "the server cannot tell what changed since {cache_tid}"
                ))
            };
            match reply {
                Value::None => unknown(),
                ref v => match items(v) {
                    Some([_, oids, ..]) => match items(oids) {
                        Some(oids) => Check::Oids(oids.iter().filter_map(as_oid).collect()),
                        None => unknown(),
                    },
                    _ => unknown(),
                },
            }
        };
        let mut s = self.cache.lock();
        match &check {
            Check::Nothing => {}
            Check::Unknown(why) => {
                tracing::info!("{why}: dropping the cache");
                s.cache.clear();
            }
            Check::Oids(oids) => {
                for &oid in oids {
                    s.cache.invalidate_unknown(oid);
                }
            }
        }
        if empty || server > s.cache.last_tid() {
            s.cache.set_last_tid(server);
        }
        let mut newer = Vec::new();
        for (tid, oids) in s.held.remove(&conn.id).unwrap_or_default() {
            if tid > server {
                for &oid in &oids {
                    s.cache.invalidate(oid, tid);
                }
                s.cache.advance(tid);
                newer.push((tid, oids));
            }
        }
        // From here the reader applies this connection's invalidations itself; it
        // reports them only once it gets `reported`, after these reports.
        let mut reported = self.reported.lock();
        drop(s);
        match check {
            Check::Nothing => *reported = server,
            Check::Unknown(_) => {
                *reported = server;
                self.listeners.reset(server);
            }
            Check::Oids(oids) => self.report(&mut reported, server, &oids),
        }
        for (tid, oids) in newer {
            self.report(&mut reported, tid, &oids);
        }
        Ok(())
    }

    fn fetch_info(&self, conn: &Connection) -> Result<(), AttemptError> {
        let reply = conn
            .call(Call::GetInfo, Post::Nothing)
            .map_err(|e| match e {
                CallError::Remote(r) => AttemptError::transient(format!("get_info failed: {r}")),
                CallError::Disconnected(why) | CallError::Encode(why) => {
                    AttemptError::transient(why)
                }
            })?;
        let mut i = self.info.lock();
        let int = |k: &str| {
            reply
                .get(k)
                .and_then(Value::as_i64)
                .and_then(|n| u64::try_from(n).ok())
        };
        i.length = int("length").unwrap_or(0);
        i.size = int("size").unwrap_or(0);
        i.name = reply
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or("ZEO Client")
            .to_string();
        i.supports_undo = match reply.get("supportsUndo") {
            Some(Value::Bool(b)) => *b,
            Some(Value::Int(n)) => *n != 0,
            _ => false,
        };
        Ok(())
    }

    /// Registers, verifies and installs a connection to the first address that takes
    /// us (a writable registration preferred over a read-only fallback one).  With
    /// `upgrade`, only writable registrations on addresses other than `skip` count.
    fn connect_any(
        self: &Arc<Self>,
        skip: Option<&Address>,
        upgrade: bool,
    ) -> Result<(), AttemptError> {
        let mut fallback: Option<Registered> = None;
        let mut last: Option<AttemptError> = None;
        for address in &self.addresses {
            if skip == Some(address) {
                continue;
            }
            if self.is_closed() {
                break;
            }
            match self.register(address, !upgrade) {
                Ok(r) if !r.fallback => {
                    if let Some(f) = fallback.take() {
                        self.discard(&f);
                    }
                    return self.install(r);
                }
                Ok(r) => {
                    if fallback.is_none() {
                        fallback = Some(r);
                    } else {
                        self.discard(&r);
                    }
                }
                Err(e) => {
                    tracing::debug!(%address, "connection attempt failed: {}", e.error);
                    last = Some(e);
                }
            }
        }
        match fallback {
            Some(r) => self.install(r),
            None => Err(last.unwrap_or_else(|| AttemptError::transient("no address to try"))),
        }
    }

    fn discard(&self, r: &Registered) {
        self.cache.lock().held.remove(&r.conn.id);
        r.conn.close();
    }

    fn install(&self, r: Registered) -> Result<(), AttemptError> {
        let outcome = self.verify(&r).and_then(|()| self.fetch_info(&r.conn));
        if let Err(e) = outcome {
            self.discard(&r);
            return Err(e);
        }
        let old = {
            let mut st = self.conn.lock();
            if st.closed {
                drop(st);
                r.conn.close();
                return Err(AttemptError {
                    error: StorageError::Closed,
                    permanent: true,
                });
            }
            if r.conn.is_dead() {
                return Err(AttemptError::transient(format!(
                    "the connection to {} ended while connecting",
                    r.conn.address
                )));
            }
            st.read_only = r.read_only;
            st.fallback = r.fallback;
            st.last_error = None;
            self.connections_made.fetch_add(1, Ordering::Relaxed);
            self.conn_cv.notify_all();
            st.current.replace(Arc::clone(&r.conn))
        };
        tracing::info!(
            address = %r.conn.address,
            encoding = ?r.conn.encoding,
            read_only = r.read_only,
            last_transaction = %r.server_tid,
            "connected to the ZEO server"
        );
        if let Some(old) = old {
            old.close();
        }
        Ok(())
    }

    /// The manager thread: reconnects after a loss, upgrades a read-only fallback
    /// connection when another address takes a writable registration.
    fn manage(self: Arc<Self>) {
        loop {
            let upgrade_from = {
                let mut st = self.conn.lock();
                loop {
                    if st.closed {
                        return;
                    }
                    match &st.current {
                        None => break None,
                        Some(c) if st.fallback && self.addresses.len() > 1 => {
                            break Some(c.address.clone());
                        }
                        Some(_) => self.conn_cv.wait(&mut st),
                    }
                }
            };
            if !self.pause(reconnect_delay()) {
                return;
            }
            let result = match &upgrade_from {
                None => self.connect_any(None, false),
                Some(address) => {
                    let still = {
                        let st = self.conn.lock();
                        st.fallback && st.current.as_ref().is_some_and(|c| &c.address == address)
                    };
                    if !still {
                        continue;
                    }
                    self.connect_any(Some(address), true)
                }
            };
            if let Err(e) = result
                && upgrade_from.is_none()
            {
                let why = e.error.to_string();
                let mut st = self.conn.lock();
                // Say it once, not every 1–2 s.
                if st.last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!("reconnecting failed, will retry: {why}");
                }
                st.last_error = Some(why);
            }
        }
    }

    // -----------------------------------------------------------------------
    // Transactions
    // -----------------------------------------------------------------------

    fn txnid(id: u64) -> Value {
        Value::Int(i64::try_from(id).unwrap_or(i64::MAX))
    }

    /// Applies `f` to the open (buffering) transaction `txn`.
    fn with_open_txn<T>(
        &self,
        txn: &TxnHandle,
        f: impl FnOnce(&mut Txn) -> T,
    ) -> Result<T, StorageError> {
        self.check_open()?;
        let mut t = self.txns.lock();
        match t.open.get_mut(&txn.id()) {
            Some(e) if matches!(e.phase, Phase::Open) => Ok(f(e)),
            Some(_) => Err(StorageError::Transaction(
                "the transaction has been voted (or failed); it takes no more changes".into(),
            )),
            None => Err(unknown_txn(txn)),
        }
    }

    /// Sends the transaction and votes; on success the caller holds the slot.
    fn vote_on_server(&self, id: u64, txn: &Txn) -> Result<Voted, VoteFailure> {
        let conn = self.wait_connection().map_err(|e| (e, None))?;
        if conn.id != txn.conn_id {
            return Err((
                disconnected(
                    "the connection to the ZEO server was lost since the transaction began; \
                     retry the transaction",
                ),
                None,
            ));
        }
        let txnid = Self::txnid(id);
        let calls = std::iter::once(txn.begin_call(&txnid)).chain(txn.op_calls(&txnid));
        let failed = |conn: &Arc<Connection>, method: &str, e: CallError| {
            (
                call_error(method, CallKind::Commit, None, e),
                Some(Arc::clone(conn)),
            )
        };
        conn.send_async(calls)
            .map_err(|e| failed(&conn, "tpc_begin", e))?;
        let reply = conn
            .call(Call::Vote { txn: txnid }, Post::Nothing)
            .map_err(|e| failed(&conn, "vote", e))?;
        let (changed, conflicts) =
            convert::vote_result(&reply).map_err(|e| (e, Some(Arc::clone(&conn))))?;
        if !conflicts.is_empty() {
            return Err((
                StorageError::from_conflicts(conflicts),
                Some(Arc::clone(&conn)),
            ));
        }
        Ok((conn, changed))
    }

    /// Tells the server to forget transaction `id` (best effort: a lost connection
    /// aborts it anyway).
    fn abort_on_server(conn: &Connection, id: u64) {
        if !conn.is_dead() {
            let txn = Some(Self::txnid(id));
            let _ = conn.call(Call::TpcAbort { txn }, Post::Nothing);
        }
    }

    fn release_slot(&self, id: u64, remove: bool) {
        let mut t = self.txns.lock();
        if remove {
            t.open.remove(&id);
        }
        if t.slot == Some(id) {
            t.slot = None;
        }
        self.txn_cv.notify_all();
    }

    /// The oids transaction `tid` changed, read with the iterator (for `undo`).
    fn transaction_oids(self: &Arc<Self>, tid: Tid) -> Vec<Oid> {
        let Ok(mut it) = self.iterator(Some(tid), Some(tid)) else {
            return Vec::new();
        };
        match it.next() {
            Some(Ok(t)) if t.tid == tid => {
                let mut oids: Vec<Oid> = t.records.iter().map(|r| r.oid).collect();
                oids.sort();
                oids.dedup();
                oids
            }
            _ => Vec::new(),
        }
    }

    fn iterator(
        self: &Arc<Self>,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Result<TransactionIter, StorageError> {
        self.check_open()?;
        let conn = self.wait_connection()?;
        let method = "iterator_start";
        let reply = conn
            .call(Call::IteratorStart { start, stop }, Post::Nothing)
            .map_err(|e| call_error(method, CallKind::Read, None, e))?;
        let iid = reply.as_i64().ok_or_else(|| bad_reply(method, &reply))?;
        let weak = Arc::downgrade(self);
        let closed = Arc::new(move || weak.upgrade().is_none_or(|s| s.is_closed()));
        Ok(Box::new(iter::RemoteIter::new(conn, iid, closed)))
    }
}

/// A successful vote: the connection holding the server's transaction, and the oids the
/// vote reported changed.
type Voted = (Arc<Connection>, Vec<Oid>);

/// A failed vote, and the connection to abort the server's transaction on (if it got
/// that far).
type VoteFailure = (StorageError, Option<Arc<Connection>>);

fn unknown_txn(txn: &TxnHandle) -> StorageError {
    StorageError::Transaction(format!("{txn:?} is not an open transaction of this client"))
}

impl ClientStorage {
    /// Connects to the first of `options.addresses` that accepts the registration
    /// (trying again every 1–2 s for up to `options.wait_timeout` while none answers),
    /// verifies nothing (the cache starts empty), and starts the thread that
    /// reconnects when the connection is lost.
    ///
    /// Fails with `ReadOnly` when the server refuses a writable registration and
    /// `read_only_fallback` is off, with `Io` when the storage name is unknown to the
    /// server or no server answered in time.
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
            .map(|a| Address::parse(a))
            .collect();
        let shared = Arc::new(Shared {
            addresses,
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
        let manager = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("zeo-client-manager".into())
            .spawn(move || manager.manage())
            .map_err(|e| {
                shared.shutdown();
                StorageError::io("starting the ZEO client thread", e)
            })?;
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
        let current = {
            let mut st = self.conn.lock();
            st.closed = true;
            self.conn_cv.notify_all();
            st.current.take()
        };
        if let Some(c) = current {
            c.close();
        }
        let _t = self.txns.lock();
        self.txn_cv.notify_all();
    }
}

impl Drop for ClientStorage {
    fn drop(&mut self) {
        self.shared.shutdown();
    }
}

impl Storage for ClientStorage {
    fn name(&self) -> String {
        format!(
            "ZEO storage '{}' at {}",
            self.shared.options.storage,
            self.shared.options.addresses.join(", ")
        )
    }

    fn location(&self) -> zodb_storage::StorageLocation {
        zodb_storage::StorageLocation {
            kind: "zeo",
            location: self.shared.options.addresses.join(", "),
        }
    }

    fn is_read_only(&self) -> bool {
        self.shared.current_read_only()
    }

    fn last_transaction(&self) -> Tid {
        self.shared.cache.lock().cache.last_tid()
    }

    fn len(&self) -> usize {
        usize::try_from(self.shared.info.lock().length).unwrap_or(usize::MAX)
    }

    fn size(&self) -> u64 {
        self.shared.info.lock().size
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>, StorageError> {
        let s = &self.shared;
        s.check_open()?;
        if let Some(rev) = s.cache.lock().cache.load_before(oid, before) {
            return Ok(Some(rev));
        }
        let conn = s.wait_connection()?;
        let reply = conn
            .load_before(oid, before)
            .map_err(|e| call_error("loadBefore", CallKind::Read, Some(oid), e))?;
        wire::read_load_reply(&reply).map_err(reply_error)
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>, StorageError> {
        // Always asked of the server, as Python's client does: a pack may have removed
        // the revision while the cache still has it.
        let s = &self.shared;
        let reply = s.call(Call::LoadSerial { oid, serial }, CallKind::Read, Some(oid))?;
        match reply {
            Value::Bytes(b) => Ok(b),
            other => Err(bad_reply("loadSerial", &other)),
        }
    }

    fn new_oids(&self, count: usize) -> Result<Vec<Oid>, StorageError> {
        let s = &self.shared;
        s.check_open()?;
        if count > zodb_storage::limits::NEW_OIDS_COUNT_MAX {
            return Err(StorageError::Limit(format!(
                "{count} new oids asked for at once; at most {}",
                zodb_storage::limits::NEW_OIDS_COUNT_MAX
            )));
        }
        if s.current_read_only() {
            return Err(StorageError::ReadOnly);
        }
        let mut oids = Vec::with_capacity(count);
        while oids.len() < count {
            let n = (count - oids.len()).min(limits::NEW_OIDS_PER_CALL_MAX);
            let count = int_value(n);
            let reply = s.call(Call::NewOids { count }, CallKind::Read, None)?;
            let got: Vec<Oid> = items(&reply)
                .ok_or_else(|| bad_reply("new_oids", &reply))?
                .iter()
                .map(|v| as_oid(v).ok_or_else(|| bad_reply("new_oids", v)))
                .collect::<Result<_, _>>()?;
            if got.is_empty() {
                return Err(bad_reply("new_oids", &reply));
            }
            oids.extend(got.into_iter().take(n));
        }
        Ok(oids)
    }

    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle, StorageError> {
        let s = &self.shared;
        s.check_open()?;
        if s.options.read_only {
            return Err(StorageError::ReadOnly);
        }
        let extension = convert::extension_value(&meta.extension)?;
        let conn = s.wait_connection()?;
        if s.current_read_only() {
            return Err(StorageError::ReadOnly);
        }
        if let Some(tid) = meta.tid {
            // Checked here: Python's FileStorage would write a tid that is not later
            // (even an equal one), breaking the file's order.  The last transaction we
            // know of may be older than the server's; then the server decides.
            let last = s.cache.lock().cache.last_tid();
            if tid <= last {
                return Err(StorageError::Transaction(format!(
                    "the given tid {tid} is not later than the last transaction {last}"
                )));
            }
        }
        let id = s.next_txn_id.fetch_add(1, Ordering::Relaxed);
        s.txns
            .lock()
            .open
            .insert(id, Txn::new(conn.id, meta, extension));
        Ok(TxnHandle::new(id))
    }

    fn store(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
    ) -> Result<(), StorageError> {
        // Room for the message around the data.
        const ENVELOPE: usize = 256;
        let max = self.shared.options.frame_size_max;
        if data.len().saturating_add(ENVELOPE) > max {
            return Err(StorageError::Limit(format!(
                "a record of {} bytes does not fit in a ZEO frame of at most {max} bytes",
                data.len()
            )));
        }
        self.shared.with_open_txn(txn, |t| {
            t.push(TxnOp::Store {
                oid,
                serial: expected,
                data,
            });
        })
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<(), StorageError> {
        self.shared.with_open_txn(txn, |t| {
            t.push(TxnOp::Delete {
                oid,
                serial: expected,
            });
        })
    }

    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<(), StorageError> {
        let serial = self.shared.with_open_txn(txn, |t| t.meta.tid)?;
        if serial.is_none() {
            return Err(StorageError::Transaction(
                "restore needs a transaction begun with a given tid".into(),
            ));
        }
        // A backpointer: Python's FileStorage.restore wants the data with it (it writes
        // a backpointer when it finds them in `prev_txn`, and fails without them), so
        // send the data too, as Python's copyTransactionsFrom does.  If `prev_txn` has
        // no revision of the object here, the revision is a deletion.
        let data = match (data, prev_txn) {
            (None, Some(prev)) => match self.load_serial(oid, prev) {
                Ok(d) => Some(d),
                Err(e) if e.is_pos_key() => None,
                Err(e) => return Err(e),
            },
            (data, _) => data,
        };
        let prev_txn = if data.is_some() { prev_txn } else { None };
        self.shared.with_open_txn(txn, |t| match t.meta.tid {
            Some(serial) => {
                t.push(TxnOp::Restore {
                    oid,
                    serial,
                    data,
                    prev_txn,
                });
                Ok(())
            }
            None => Err(StorageError::Transaction(
                "restore needs a transaction begun with a given tid".into(),
            )),
        })?
    }

    fn record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>, StorageError> {
        let conn = {
            self.shared.check_open()?;
            self.shared.wait_connection()?
        };
        let method = "record_iternext";
        let reply = match conn.call(Call::RecordIternext { from }, Post::Nothing) {
            Ok(v) => v,
            // Past the last object: our server answers POSKeyError, Python's the
            // ValueError of `index.minKey(from)`.
            Err(CallError::Remote(RemoteError::PosKeyError { .. })) => return Ok(None),
            Err(CallError::Remote(RemoteError::Other { class_name, .. }))
                if class_name == "builtins.ValueError" =>
            {
                return Ok(None);
            }
            Err(e) => return Err(call_error(method, CallKind::Read, Some(from), e)),
        };
        wire::read_record_iternext_reply(&reply)
            .map(Some)
            .map_err(reply_error)
    }

    fn check_current_serial(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
    ) -> Result<(), StorageError> {
        self.shared.with_open_txn(txn, |t| {
            t.push(TxnOp::Check {
                oid,
                serial: expected,
            });
        })
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>, StorageError> {
        self.shared.with_open_txn(txn, |_| ())?;
        let oids = self.shared.transaction_oids(tid);
        let undo_oids = oids.clone();
        self.shared.with_open_txn(txn, move |t| {
            t.push(TxnOp::Undo(tid));
            t.undo_oids.extend(undo_oids);
        })?;
        Ok(oids)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<(), StorageError> {
        let s = &self.shared;
        s.check_open()?;
        let id = txn.id();
        let mut t = s.txns.lock();
        match t.open.get_mut(&id) {
            None => return Err(unknown_txn(txn)),
            Some(e) => match e.phase {
                Phase::Open => e.phase = Phase::Busy,
                Phase::Voted { .. } => {
                    return Err(StorageError::Transaction("already voted".into()));
                }
                Phase::Busy => {
                    return Err(StorageError::Transaction(
                        "another call on this transaction is in progress".into(),
                    ));
                }
                Phase::Failed => {
                    return Err(StorageError::Transaction(
                        "the transaction failed at vote; abort it".into(),
                    ));
                }
            },
        }
        // Wait for the connection's transaction slot.
        while t.slot.is_some() {
            if s.is_closed() {
                if let Some(e) = t.open.get_mut(&id) {
                    e.phase = Phase::Failed;
                }
                s.txn_cv.notify_all();
                return Err(StorageError::Closed);
            }
            s.txn_cv.wait(&mut t);
        }
        t.slot = Some(id);
        let Some(mut entry) = t.open.remove(&id) else {
            t.slot = None;
            return Err(unknown_txn(txn));
        };
        drop(t);
        let result = s.vote_on_server(id, &entry);
        match result {
            Ok((conn, changed)) => {
                entry.phase = Phase::Voted { conn, changed };
                let mut t = s.txns.lock();
                t.open.insert(id, entry);
                s.txn_cv.notify_all();
                Ok(())
            }
            Err((e, conn)) => {
                if let Some(conn) = conn {
                    // Before the slot goes: the next transaction's tpc_begin must reach
                    // the server after this one is gone.
                    Shared::abort_on_server(&conn, id);
                }
                entry.phase = Phase::Failed;
                let mut t = s.txns.lock();
                t.open.insert(id, entry);
                if t.slot == Some(id) {
                    t.slot = None;
                }
                s.txn_cv.notify_all();
                Err(e)
            }
        }
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid, StorageError> {
        let s = &self.shared;
        s.check_open()?;
        let id = txn.id();
        let needs_vote = match s.txns.lock().open.get(&id).map(|e| &e.phase) {
            None => return Err(unknown_txn(txn)),
            Some(Phase::Open) => true,
            Some(Phase::Voted { .. }) => false,
            Some(Phase::Busy) => {
                return Err(StorageError::Transaction(
                    "another call on this transaction is in progress".into(),
                ));
            }
            Some(Phase::Failed) => {
                return Err(StorageError::Transaction(
                    "the transaction failed at vote; abort it".into(),
                ));
            }
        };
        if needs_vote {
            self.vote(txn)?;
        }
        let (conn, update) = {
            let mut t = s.txns.lock();
            let Some(e) = t.open.get_mut(&id) else {
                return Err(unknown_txn(txn));
            };
            match std::mem::replace(&mut e.phase, Phase::Busy) {
                Phase::Voted { conn, changed } => {
                    let update = e.finish_update(changed);
                    (conn, update)
                }
                other => {
                    e.phase = other;
                    return Err(StorageError::Transaction(
                        "the transaction is not voted".into(),
                    ));
                }
            }
        };
        let txn = Shared::txnid(id);
        let result = conn.call(Call::TpcFinish { txn }, Post::Finish(update));
        if matches!(result, Err(CallError::Remote(_))) {
            Shared::abort_on_server(&conn, id);
        }
        s.release_slot(id, true);
        let reply = result.map_err(|e| call_error("tpc_finish", CallKind::Commit, None, e))?;
        as_tid(&reply).ok_or_else(|| bad_reply("tpc_finish", &reply))
    }

    fn abort(&self, txn: &TxnHandle) {
        let s = &self.shared;
        let id = txn.id();
        let conn = {
            let mut t = s.txns.lock();
            loop {
                match t.open.get(&id).map(|e| &e.phase) {
                    None => return,
                    Some(Phase::Busy) => s.txn_cv.wait(&mut t),
                    Some(_) => break,
                }
            }
            let Some(e) = t.open.get_mut(&id) else {
                return;
            };
            match std::mem::replace(&mut e.phase, Phase::Busy) {
                // Keep the slot until the server has been told.
                Phase::Voted { conn, .. } => conn,
                _ => {
                    t.open.remove(&id);
                    s.txn_cv.notify_all();
                    return;
                }
            }
        };
        Shared::abort_on_server(&conn, id);
        s.release_slot(id, true);
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>, StorageError> {
        let size = size.max(1);
        let call = Call::History {
            oid,
            size: int_value(size),
        };
        let reply = self.shared.call(call, CallKind::Read, Some(oid))?;
        let mut entries = convert::history_entries(&reply)?;
        entries.truncate(size);
        Ok(entries)
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>, StorageError> {
        self.shared.check_open()?;
        if last <= first {
            return Ok(Vec::new());
        }
        let (first, last) = (int_value(first), int_value(last));
        let reply = self
            .shared
            .call(Call::UndoLog { first, last }, CallKind::Read, None)?;
        convert::undo_log_entries(&reply)
    }

    fn iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Result<TransactionIter, StorageError> {
        self.shared.iterator(start, stop)
    }

    fn pack(&self, pack_time: Tid, gc: bool) -> Result<(), StorageError> {
        self.shared.check_open()?;
        if !gc {
            return Err(StorageError::Pack(
                "a ZEO server always packs with garbage collection; pack without gc is \
                 not available over ZEO"
                    .into(),
            ));
        }
        let pack = Call::Pack {
            time: pack_seconds(pack_time),
            wait: true,
        };
        self.shared.call(pack, CallKind::Pack, None)?;
        // The pack removed old revisions and, with its garbage collection, whole
        // objects, which the cache may hold; nothing says which.
        self.shared.cache.lock().cache.clear();
        Ok(())
    }

    fn close(&self) -> Result<(), StorageError> {
        self.shared.shutdown();
        Ok(())
    }

    fn add_listener(&self, listener: std::sync::Weak<dyn InvalidationListener>) {
        self.shared.listeners.add(listener);
    }

    /// A ping: the server sends every invalidation queued for us before its reply, and the
    /// reader thread reports them before it wakes us, so they are all reported on return.
    fn sync(&self) -> Result<(), StorageError> {
        self.ping()
    }

    /// [`ClientStorage::ping_within`]: `Disconnected` at once without a connection, or
    /// when the server does not answer within `within`.
    fn check_health(&self, within: Duration) -> Result<(), StorageError> {
        self.ping_within(within)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_parse_like_runzeo() {
        assert_eq!(
            Address::parse("8100"),
            Address::Tcp("127.0.0.1:8100".into())
        );
        assert_eq!(
            Address::parse(":8100"),
            Address::Tcp("127.0.0.1:8100".into())
        );
        assert_eq!(Address::parse("db:8100"), Address::Tcp("db:8100".into()));
        assert_eq!(
            Address::parse("./zeo.sock"),
            Address::Unix("./zeo.sock".into())
        );
    }

    #[test]
    fn pack_seconds_never_before_the_tid() {
        for tid in [
            Tid(0x0405_ed58_1777_7777),
            Tid(0x0407_4691_8222_2222),
            Tid::from_parts(2031, 7, 9, 23, 59, 59.999),
        ] {
            let t = pack_seconds(tid);
            let back = Tid::from_unix_seconds(t);
            assert!(back >= tid && back.0 - tid.0 < 64, "{tid} -> {t} -> {back}");
        }
    }

    #[test]
    fn reconnect_delay_in_range() {
        for _ in 0..20 {
            let d = reconnect_delay();
            assert!(d >= Duration::from_millis(1000) && d < Duration::from_millis(2000));
        }
    }
}
