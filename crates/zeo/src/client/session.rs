//! Opening a session with a server (spec §5.1): connect and `register` (falling back
//! to a read-only registration when allowed), verify the cache against the server's
//! invalidations (`getInvalidations`), read `get_info`, and install the connection as
//! the current one.  Tried over the addresses in order, preferring a writable
//! registration.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use zodb_pickle::Value;
use zodb_storage::{Oid, StorageError, Tid};

use super::Shared;
use super::connection::{CallError, Connection, Events};
use super::convert::{bad_reply, disconnected};
use crate::address::Address;
use crate::wire::{self, Call, RemoteError, as_tid};

/// Why a connection attempt failed; `permanent` when retrying the same server cannot
/// help without a change on its side (refused registration).
#[derive(Debug)]
pub(super) struct AttemptError {
    pub(super) error: StorageError,
    pub(super) permanent: bool,
}

impl AttemptError {
    pub(super) fn transient(why: impl Into<String>) -> AttemptError {
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

impl Shared {
    /// How long each call of a session's setup (register, verification, `get_info`) waits
    /// for the server: [`ClientOptions::wait_timeout`](super::ClientOptions), the time a
    /// connection attempt has. A server that took the connection and then stopped
    /// answering fails the attempt (closed; the manager tries again) instead of holding
    /// the manager thread, and with it every reconnection, without end.
    fn session_wait(&self) -> std::time::Duration {
        self.options.wait_timeout
    }

    /// Connects to `address` and registers, with the read-only fallback.
    fn register(
        self: &Arc<Self>,
        address: &Address,
        allow_fallback: bool,
    ) -> Result<Registered, AttemptError> {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        let events: Arc<dyn Events> = Arc::clone(self) as Arc<dyn Events>;
        let conn = Connection::open(
            id,
            address,
            self.options.frame_size_max,
            self.tls.as_ref(),
            events,
        )
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
        let (reply, read_only, fallback) =
            match conn.call_within(register(read_only), self.session_wait()) {
                Ok(v) => (v, read_only, false),
                Err(CallError::Remote(RemoteError::ReadOnlyError))
                    if !read_only && allow_fallback && self.options.read_only_fallback =>
                {
                    // Spec §5.1: register again, read-only, on the same connection.
                    let v = conn
                        .call_within(register(true), self.session_wait())
                        .map_err(refused)?;
                    (v, true, true)
                }
                Err(e) => return Err(refused(e)),
            };
        let server_tid = match as_tid(&reply) {
            Some(t) => t,
            None => {
                let v = conn
                    .call_within(Call::LastTransaction, self.session_wait())
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
                .call_within(
                    Call::GetInvalidations { tid: cache_tid },
                    self.session_wait(),
                )
                .map_err(|e| match e {
                    CallError::Remote(r) => AttemptError::transient(format!(
                        "{}: getInvalidations failed: {r}",
                        conn.address
                    )),
                    CallError::Disconnected(why) | CallError::Encode(why) => {
                        AttemptError::transient(why)
                    }
                })?;
            match wire::read_invalidations_reply(&reply) {
                Some(oids) => Check::Oids(oids),
                None => Check::Unknown(format!(
                    "the server cannot tell what changed since {cache_tid}"
                )),
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
            .call_within(Call::GetInfo, self.session_wait())
            .map_err(|e| match e {
                CallError::Remote(r) => AttemptError::transient(format!("get_info failed: {r}")),
                CallError::Disconnected(why) | CallError::Encode(why) => {
                    AttemptError::transient(why)
                }
            })?;
        let lease = reply
            .get(crate::wire::LEASE_INFO_KEY)
            .and_then(Value::as_i64)
            .filter(|ms| *ms > 0)
            .map(|ms| std::time::Duration::from_millis(ms.unsigned_abs()));
        self.lease.offered(conn.id, lease);
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
        // Python's client looks for this very pair too.
        i.supports_blobs = match reply.get("interfaces") {
            Some(Value::Tuple(items) | Value::List(items)) => items.iter().any(|item| {
                matches!(item, Value::Tuple(pair) | Value::List(pair)
                    if pair.len() == 2
                        && pair[0].as_str() == Some("ZODB.interfaces")
                        && pair[1].as_str() == Some("IBlobStorage"))
            }),
            _ => false,
        };
        Ok(())
    }

    /// Registers, verifies and installs a connection to the first address that takes
    /// us (a writable registration preferred over a read-only fallback one).  With
    /// `upgrade`, only writable registrations on addresses other than `skip` count.
    pub(super) fn connect_any(
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
}
