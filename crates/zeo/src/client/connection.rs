//! One connection of the client to a server: the handshake over its socket
//! (`stream.rs`), the calls in flight, and the reader thread that matches replies to
//! callers and hands callbacks to the client (spec §1, §2, §4).
//!
//! Blocking design, since the `Storage` trait is synchronous: a caller encodes its
//! message, registers a one-shot channel under the message id, writes the frame (writes
//! are serialised by a mutex) and blocks on the channel.  The reader thread reads frames
//! in order; for a reply it runs the call's [`Post`] step first (cache updates that must
//! happen in stream order, before any later invalidation is applied) and then wakes the
//! caller(s).  When the socket ends, every call still waiting fails with
//! [`CallError::Disconnected`] and the client is told (it reconnects).
//!
//! Message ids are ints from 1 per connection; `loadBefore` uses the tuple `(oid, tid)`,
//! as Python does, and identical loads in flight share one request.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver, SyncSender};
use std::time::Duration;

use parking_lot::Mutex;
use zodb_pickle::Value;
use zodb_storage::{Oid, Tid};

use super::stream::{ClientTlsConfig, Stream};
use crate::address::Address;
use crate::limits;
use crate::wire::{self, Call, Callback, Encoding, Message, RemoteError};

/// Why a call did not get a normal reply.
#[derive(Debug, Clone)]
pub(crate) enum CallError {
    /// The server answered with an error reply.
    Remote(RemoteError),
    /// The connection ended before the reply (or was already gone).
    Disconnected(String),
    /// The message could not be encoded (a value this encoding cannot carry, a frame
    /// over the limit); the connection is unharmed.
    Encode(String),
}

pub(crate) type CallResult = Result<Value, CallError>;

/// How a reply's message id is matched to its call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum MsgKey {
    Int(i64),
    Load(Oid, Tid),
}

impl MsgKey {
    fn of(msgid: &Value) -> Option<MsgKey> {
        match msgid {
            Value::Int(i) => Some(MsgKey::Int(*i)),
            Value::Tuple(items) | Value::List(items) => match items.as_slice() {
                [o, t] => Some(MsgKey::Load(
                    o.as_bytes().and_then(Oid::from_slice)?,
                    t.as_bytes().and_then(Tid::from_slice)?,
                )),
                _ => None,
            },
            _ => None,
        }
    }
}

/// What the reader thread does with a reply before waking the caller, in stream order.
#[derive(Debug, Default)]
pub(crate) enum Post {
    #[default]
    Nothing,
    /// A `loadBefore` reply: cache the revision.
    Load(Oid),
    /// A `tpc_finish` reply (the tid): our own commit becomes current in the cache.
    Finish(FinishUpdate),
}

/// The cache update of one of our commits.
#[derive(Debug, Default)]
pub(crate) struct FinishUpdate {
    /// Objects whose new data we know (the last store of each).
    pub stores: Vec<(Oid, Vec<u8>)>,
    /// Objects changed in ways whose data we do not hold (deletions, undo, data the
    /// server resolved).
    pub changed: Vec<Oid>,
    /// Every object the transaction wrote (`stores` and `changed`), sorted: what the
    /// storage's listeners are told once the reply gives the tid.
    pub oids: Vec<Oid>,
}

/// What the reader thread reports to the client.
pub(crate) trait Events: Send + Sync {
    /// A reply's [`Post`] step, run by the reader before the caller wakes.
    fn post(&self, conn: &Connection, post: Post, result: &CallResult);
    /// `invalidateTransaction(tid, oids)`.
    fn invalidate(&self, conn: &Connection, tid: Tid, oids: Vec<Oid>);
    /// `info({'length': ..., 'size': ...})`.
    fn info(&self, length: Option<i64>, size: Option<i64>);
    /// The connection ended.
    fn lost(&self, conn: &Connection, why: &str);
    /// `receiveBlobStart`, `receiveBlobChunk` or `receiveBlobStop`.
    fn blob(&self, callback: Callback);
}

/// A function a reply completes, run on the reader thread.
pub(crate) type Then = Box<dyn FnOnce(&CallResult) + Send>;

struct Waiting {
    senders: Vec<SyncSender<CallResult>>,
    /// Run with the reply (or the connection's end) on the reader thread.
    then: Option<Then>,
    post: Post,
}

#[derive(Default)]
struct Calls {
    next_id: i64,
    waiting: HashMap<MsgKey, Waiting>,
    /// Set once the connection is gone: why.
    dead: Option<String>,
}

/// One connection (see the module doc).
pub(crate) struct Connection {
    /// Unique per client, increasing: a transaction or iterator remembers the
    /// connection it belongs to by this.
    pub id: u64,
    pub address: Address,
    pub encoding: Encoding,
    frame_size_max: usize,
    writer: Mutex<Stream>,
    /// For shutting the socket down while a writer may hold `writer`.
    control: Stream,
    calls: Mutex<Calls>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("id", &self.id)
            .field("address", &self.address)
            .field("encoding", &self.encoding)
            .finish_non_exhaustive()
    }
}

fn io_text(e: &io::Error) -> String {
    e.to_string()
}

/// Reads one frame's payload with blocking reads.
fn read_frame(stream: &mut Stream, buf: &mut Vec<u8>, max: usize) -> Result<Vec<u8>, String> {
    let mut chunk = vec![0u8; 64 * 1024];
    loop {
        match wire::parse_frame(buf, max) {
            Ok(Some((range, consumed))) => {
                let payload = buf.get(range).map(<[u8]>::to_vec).unwrap_or_default();
                buf.drain(..consumed);
                return Ok(payload);
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad frame from the server: {e}")),
        }
        match stream.read(&mut chunk) {
            Ok(0) => {
                return Err(if buf.is_empty() {
                    "the server closed the connection".to_string()
                } else {
                    "the server closed the connection mid-frame".to_string()
                });
            }
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(format!("reading from the server: {}", io_text(&e))),
        }
    }
}

impl Connection {
    /// Connects (and does the TLS handshake when `tls` says so), does the ZEO handshake
    /// (the server announces `Z5` or `M5`, we answer the same) and starts the reader
    /// thread.  Nothing is registered yet.
    pub(crate) fn open(
        id: u64,
        address: &Address,
        frame_size_max: usize,
        tls: Option<&ClientTlsConfig>,
        events: Arc<dyn Events>,
    ) -> Result<Arc<Connection>, String> {
        let mut stream =
            Stream::connect(address).map_err(|e| format!("connecting to {address}: {e}"))?;
        let handshake = Duration::from_secs(limits::CLIENT_HANDSHAKE_TIMEOUT_SECONDS);
        stream
            .set_read_timeout(Some(handshake))
            .map_err(|e| io_text(&e))?;
        if let Some(tls) = tls {
            stream = stream
                .into_tls(address, tls)
                .map_err(|e| format!("{address}: TLS handshake: {e}"))?;
        }
        let mut buf = Vec::new();
        let announcement = read_frame(&mut stream, &mut buf, frame_size_max)
            .map_err(|e| format!("{address}: no handshake: {e}"))?;
        let encoding = wire::parse_server_announcement(&announcement)
            .map_err(|e| format!("{address}: {e}"))?;
        let mut reply = Vec::new();
        wire::write_frame(&mut reply, wire::handshake_announcement(encoding))
            .map_err(|e| e.to_string())?;
        stream
            .write_all(&reply)
            .map_err(|e| format!("{address}: {e}"))?;
        stream.set_read_timeout(None).map_err(|e| io_text(&e))?;

        // The stream that read the announcement reads on: a TLS stream keeps bytes it
        // read ahead.
        let writer = stream.try_clone().map_err(|e| io_text(&e))?;
        let control = stream.try_clone().map_err(|e| io_text(&e))?;
        let reader = stream;
        let conn = Arc::new(Connection {
            id,
            address: address.clone(),
            encoding,
            frame_size_max,
            writer: Mutex::new(writer),
            control,
            calls: Mutex::new(Calls {
                next_id: 0,
                ..Calls::default()
            }),
        });
        let for_reader = Arc::clone(&conn);
        std::thread::Builder::new()
            .name(format!("zeo-client-reader-{id}"))
            .spawn(move || for_reader.read_loop(reader, buf, events))
            .map_err(|e| format!("starting the reader thread: {e}"))?;
        Ok(conn)
    }

    /// Whether the connection has ended.
    pub(crate) fn is_dead(&self) -> bool {
        self.calls.lock().dead.is_some()
    }

    /// Ends the connection: the reader thread sees the end of the stream and fails every
    /// waiting call.
    pub(crate) fn close(&self) {
        // After any write in progress, so the alert does not land inside a record; a
        // writer stuck on a server that reads nothing is not waited for long.
        let wait = Duration::from_millis(crate::limits::CLIENT_CLOSE_NOTIFY_WAIT_MILLIS);
        if let Some(mut writer) = self.writer.try_lock_for(wait) {
            writer.close_notify();
        }
        self.control.shutdown();
    }

    fn write_bytes(&self, bytes: &[u8]) -> Result<(), CallError> {
        let r = self.writer.lock().write_all(bytes);
        r.map_err(|e| {
            // The reader will notice too; make sure it does.
            self.close();
            CallError::Disconnected(format!("writing to {}: {e}", self.address))
        })
    }

    fn frame(&self, msg: &Message) -> Result<Vec<u8>, CallError> {
        let framed = wire::encode_framed(self.encoding, msg)
            .map_err(|e| CallError::Encode(format!("{}: {e}", msg.name)))?;
        if framed.len().saturating_sub(wire::LENGTH_PREFIX_SIZE) > self.frame_size_max {
            return Err(CallError::Encode(format!(
                "{}: message of {} bytes exceeds the frame size limit of {} bytes",
                msg.name,
                framed.len(),
                self.frame_size_max
            )));
        }
        Ok(framed)
    }

    fn check_alive(&self) -> Result<(), CallError> {
        match &self.calls.lock().dead {
            Some(why) => Err(CallError::Disconnected(why.clone())),
            None => Ok(()),
        }
    }

    /// Sends one-way calls, batching their frames into few writes.
    pub(crate) fn send_async(
        &self,
        calls: impl IntoIterator<Item = Call>,
    ) -> Result<(), CallError> {
        self.check_alive()?;
        let mut batch = Vec::new();
        for call in calls {
            let framed = self.frame(&call.into_async_message())?;
            if !batch.is_empty()
                && batch.len().saturating_add(framed.len()) > limits::CLIENT_WRITE_BATCH_BYTES_MAX
            {
                self.write_bytes(&batch)?;
                batch.clear();
            }
            batch.extend_from_slice(&framed);
        }
        if batch.is_empty() {
            return Ok(());
        }
        self.write_bytes(&batch)
    }

    /// Numbers a call and registers what its reply completes, unless the connection is
    /// dead (then `waiting` comes back; [`Connection::gone`] says why). Checked and
    /// registered under one lock: the reader, ending, fails everything registered
    /// before it marks the connection dead, and nothing can be registered after.
    fn register(&self, waiting: Waiting) -> Result<i64, Box<Waiting>> {
        let mut calls = self.calls.lock();
        if calls.dead.is_some() {
            return Err(Box::new(waiting));
        }
        calls.next_id = calls.next_id.wrapping_add(1).max(1);
        let id = calls.next_id;
        calls.waiting.insert(MsgKey::Int(id), waiting);
        Ok(id)
    }

    /// A synchronous call: sends it and waits for its reply (no timeout: a vote may wait
    /// for the commit lock, a pack may take long).  `loadBefore` goes through
    /// [`Connection::load_before`].
    pub(crate) fn call(&self, call: Call, post: Post) -> CallResult {
        let (_, rx) = self.start_call(call, post)?;
        rx.recv().unwrap_or_else(|_| Err(self.gone()))
    }

    /// Registers `call` (with what its reply completes) and sends it; its reply comes
    /// on the receiver, under the key returned.
    fn start_call(
        &self,
        call: Call,
        post: Post,
    ) -> Result<(MsgKey, Receiver<CallResult>), CallError> {
        let (tx, rx) = mpsc::sync_channel(1);
        let id = self
            .register(Waiting {
                senders: vec![tx],
                then: None,
                post,
            })
            .map_err(|_| self.gone())?;
        let key = MsgKey::Int(id);
        self.send(key, &call.into_message(id))?;
        Ok((key, rx))
    }

    /// [`Connection::call`] that gives up after `deadline` (as `Disconnected`: a
    /// server that does not answer in time is out of reach for the caller); a reply
    /// arriving later is dropped.
    pub(crate) fn call_within(&self, call: Call, deadline: Duration) -> CallResult {
        self.call_until(call, Post::Nothing, deadline, false)
    }

    /// [`Connection::call`] for a call whose effect on the server is unknown once the
    /// caller stops waiting (a vote, a finish): past `deadline` (if any) the connection
    /// is closed, so the server aborts the transaction and the client reconnects and
    /// verifies its cache, and the call fails as `Disconnected`.
    pub(crate) fn call_or_close_within(
        &self,
        call: Call,
        post: Post,
        deadline: Option<Duration>,
    ) -> CallResult {
        match deadline {
            Some(deadline) => self.call_until(call, post, deadline, true),
            None => self.call(call, post),
        }
    }

    fn call_until(&self, call: Call, post: Post, deadline: Duration, close: bool) -> CallResult {
        let name = call.method();
        let (key, rx) = self.start_call(call, post)?;
        match rx.recv_timeout(deadline) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.gone()),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                // The reply may have come in meanwhile: it wins.
                let removed = self.calls.lock().waiting.remove(&key).is_some();
                if !removed && let Ok(result) = rx.try_recv() {
                    return result;
                }
                let why = format!(
                    "no reply to {name} from the ZEO server at {} within {deadline:?}",
                    self.address
                );
                if close {
                    tracing::warn!(connection = self.id, "{why}: closing the connection");
                    self.close();
                }
                Err(CallError::Disconnected(why))
            }
        }
    }

    /// Sends `call` without waiting for its reply, if nobody is writing to the
    /// connection this moment: `then` runs on the reader thread with the reply, or
    /// with the error if the connection ends first. `Err(then)` when another caller
    /// holds the writer (a large store may take long to write: the caller hands the
    /// call to a thread that may wait) or the connection is gone.
    pub(crate) fn try_call_then(&self, call: Call, then: Then) -> Result<(), Then> {
        let Some(mut writer) = self.writer.try_lock() else {
            return Err(then);
        };
        // Registered before it is written, as its reply may come at once.
        let registered = self.register(Waiting {
            senders: Vec::new(),
            then: Some(then),
            post: Post::Nothing,
        });
        let id = match registered {
            Ok(id) => id,
            Err(w) => return Err(w.then.expect("the function just given")),
        };
        let key = MsgKey::Int(id);
        let framed = match self.frame(&call.into_message(id)) {
            Ok(framed) => framed,
            Err(_) => {
                let taken = self.calls.lock().waiting.remove(&key);
                return match taken.and_then(|w| w.then) {
                    Some(then) => Err(then),
                    None => Ok(()), // Already failed by the reader's end.
                };
            }
        };
        if let Err(e) = writer.write_all(&framed) {
            drop(writer);
            self.close();
            let error = CallError::Disconnected(format!("writing to {}: {e}", self.address));
            let taken = self.calls.lock().waiting.remove(&key);
            if let Some(then) = taken.and_then(|w| w.then) {
                then(&Err(error));
            }
        }
        Ok(())
    }

    /// `loadBefore(oid, tid)` with the `(oid, tid)` message id; a load already in flight
    /// for the same pair is joined instead of sent again.  Gives up after `deadline`
    /// (as `Disconnected`: the server stopped answering); the reply, if it comes later,
    /// still fills the cache.
    pub(crate) fn load_before(&self, oid: Oid, before: Tid, deadline: Duration) -> CallResult {
        let (tx, rx) = mpsc::sync_channel(1);
        let key = MsgKey::Load(oid, before);
        {
            let mut calls = self.calls.lock();
            if let Some(why) = &calls.dead {
                return Err(CallError::Disconnected(why.clone()));
            }
            if let Some(w) = calls.waiting.get_mut(&key) {
                w.senders.push(tx);
                drop(calls);
                return self.wait_for_load(&rx, deadline);
            }
            calls.waiting.insert(
                key,
                Waiting {
                    senders: vec![tx],
                    then: None,
                    post: Post::Load(oid),
                },
            );
        }
        let msg = Call::LoadBefore { oid, tid: before }.into_message(0);
        self.send(key, &msg)?;
        self.wait_for_load(&rx, deadline)
    }

    /// A load's reply, waited for at most `deadline`.
    fn wait_for_load(&self, rx: &Receiver<CallResult>, deadline: Duration) -> CallResult {
        match rx.recv_timeout(deadline) {
            Ok(result) => result,
            Err(mpsc::RecvTimeoutError::Disconnected) => Err(self.gone()),
            Err(mpsc::RecvTimeoutError::Timeout) => Err(CallError::Disconnected(format!(
                "no reply to loadBefore from the ZEO server at {} within {deadline:?}",
                self.address
            ))),
        }
    }

    /// Writes the message of the call registered under `key`; if that fails, nobody
    /// else will answer the call: it is taken back (joined loads fail too).
    fn send(&self, key: MsgKey, msg: &Message) -> Result<(), CallError> {
        let sent = self.frame(msg).and_then(|f| self.write_bytes(&f));
        if let Err(e) = &sent
            && let Some(w) = self.calls.lock().waiting.remove(&key)
        {
            for s in w.senders {
                let _ = s.send(Err(e.clone()));
            }
        }
        sent
    }

    fn gone(&self) -> CallError {
        CallError::Disconnected(
            self.calls
                .lock()
                .dead
                .clone()
                .unwrap_or_else(|| format!("the connection to {} ended", self.address)),
        )
    }

    fn read_loop(self: Arc<Self>, mut stream: Stream, mut buf: Vec<u8>, events: Arc<dyn Events>) {
        let why = loop {
            let payload = match read_frame(&mut stream, &mut buf, self.frame_size_max) {
                Ok(p) => p,
                Err(e) => break e,
            };
            let msg = match wire::decode(self.encoding, &payload) {
                Ok(m) => m,
                Err(e) => break format!("undecodable message from the server: {e}"),
            };
            if msg.is_reply() {
                self.complete(msg, &*events);
            } else {
                self.callback(msg, &*events);
            }
        };
        let why = format!(
            "disconnected from the ZEO server at {}: {why}",
            self.address
        );
        tracing::info!(connection = self.id, "{why}");
        self.control.shutdown();
        let waiting = {
            let mut calls = self.calls.lock();
            calls.dead = Some(why.clone());
            std::mem::take(&mut calls.waiting)
        };
        for (_, w) in waiting {
            let error = Err(CallError::Disconnected(why.clone()));
            if let Some(then) = w.then {
                then(&error);
            }
            for s in w.senders {
                let _ = s.send(error.clone());
            }
        }
        events.lost(&self, &why);
    }

    fn complete(&self, msg: Message, events: &dyn Events) {
        let Some(key) = MsgKey::of(&msg.msgid) else {
            tracing::warn!(connection = self.id, msgid = ?msg.msgid, "reply with a strange message id dropped");
            return;
        };
        let Some(waiting) = self.calls.lock().waiting.remove(&key) else {
            tracing::warn!(connection = self.id, ?key, "reply to no call dropped");
            return;
        };
        let result = if msg.is_error() {
            Err(CallError::Remote(match msg.error_parts() {
                Some((class, payload)) => wire::parse_error(class, payload),
                None => wire::parse_error("malformed error reply", &msg.args),
            }))
        } else {
            Ok(msg.args)
        };
        events.post(self, waiting.post, &result);
        if let Some(then) = waiting.then {
            then(&result);
        }
        for s in waiting.senders {
            let _ = s.send(result.clone());
        }
    }

    fn callback(&self, msg: Message, events: &dyn Events) {
        match Callback::decode(&msg.name, &msg.args) {
            Ok(Callback::InvalidateTransaction { tid, oids }) => events.invalidate(self, tid, oids),
            Ok(Callback::Info { length, size }) => events.info(length, size),
            Ok(
                cb @ (Callback::ReceiveBlobStart { .. }
                | Callback::ReceiveBlobChunk { .. }
                | Callback::ReceiveBlobStop { .. }),
            ) => events.blob(cb),
            Err(e) => {
                tracing::warn!(
                    connection = self.id,
                    "callback from the server ignored: {e}"
                );
            }
        }
    }
}
