//! One client connection: handshake, then a loop that reads messages in
//! order and answers them (spec §2, §3, §5).
//!
//! Calls that only buffer (`tpc_begin`, `storea`, ...) are handled in line,
//! so they are applied in the order they were sent. Calls that touch the
//! disk or may wait (loads, `vote` waiting for the commit lock, `pack`)
//! run as tasks of their own and reply when done, so one client's prefetch
//! or deferred vote never stops the connection from reading, and replies
//! may leave out of order (they are matched by msgid).

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{Notify, mpsc};
use zodb_pickle::Value;
use zodb_storage::{
    Oid, StorageError, Tid, TransactionIter, TransactionMeta, TransactionRecord, TxnHandle,
    parse_undo_id, undo_id,
};

use super::Shared;
use super::entry::{CommitInfo, StorageEntry};
use super::errors;
use super::outbox::Outbox;
use crate::limits;
use crate::wire::{self, Handshake, Message};

/// Why a connection ends early: a protocol error, or a failed one-way call.
#[derive(Debug)]
struct Close(String);

type Step = Result<(), Close>;

fn close(why: impl Into<String>) -> Close {
    Close(why.into())
}

/// One buffered operation of the open transaction.
#[derive(Debug, Clone)]
enum Op {
    Store {
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
    },
    Delete {
        oid: Oid,
        serial: Tid,
    },
    Check {
        oid: Oid,
        serial: Tid,
    },
    Undo(Tid),
    Restore {
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    },
}

#[derive(Debug, PartialEq, Eq)]
enum Phase {
    Open,
    Voting,
    Voted,
}

#[derive(Debug)]
struct Txn {
    txnid: Value,
    meta: TransactionMeta,
    ops: Vec<Op>,
    phase: Phase,
    /// The storage's transaction while voting or voted.
    handle: Option<TxnHandle>,
    /// Oids the commit changes (stores, deletions, undone objects).
    oids: Vec<Oid>,
}

#[derive(Default)]
struct Iterators {
    next_id: i64,
    transactions: HashMap<i64, (TransactionIter, Option<TransactionRecord>)>,
    records: HashMap<i64, std::vec::IntoIter<zodb_storage::DataRecord>>,
}

#[derive(Default)]
struct State {
    entry: Option<Arc<StorageEntry>>,
    read_only: bool,
    txn: Option<Txn>,
    iterators: Iterators,
}

pub struct Connection {
    shared: Arc<Shared>,
    outbox: Arc<Outbox>,
    state: Arc<Mutex<State>>,
    closed: Arc<AtomicBool>,
    /// Wakes the reading loop to close the connection (transaction
    /// timeout, shutdown).
    kick: Arc<Notify>,
}

fn oid_of(v: &Value) -> Option<Oid> {
    v.as_bytes().and_then(Oid::from_slice)
}

fn tid_of(v: &Value) -> Option<Tid> {
    v.as_bytes().and_then(Tid::from_slice)
}

fn bytes8(b: [u8; 8]) -> Value {
    Value::Bytes(b.to_vec())
}

fn text_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// A transaction's extension as its pickle bytes (empty for no keys).
fn extension_bytes(v: &Value) -> Vec<u8> {
    match wire::simplify(v.clone()) {
        Value::Dict(items) if !items.is_empty() => {
            zodb_pickle::encode(&Value::Dict(items)).unwrap_or_default()
        }
        _ => Vec::new(),
    }
}

/// A transaction's extension pickle as a dict value (`{}` if unreadable).
fn extension_value(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Dict(Vec::new());
    }
    match zodb_pickle::decode(bytes) {
        Ok((v @ Value::Dict(_), _)) => v,
        _ => Value::Dict(Vec::new()),
    }
}

fn args_of(args: &Value) -> &[Value] {
    match args {
        Value::Tuple(items) | Value::List(items) => items,
        _ => &[],
    }
}

/// Runs one connection to its end.
pub async fn serve<S>(shared: Arc<Shared>, stream: S, peer: String, id: u64)
where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let encoding = shared.config.encoding;
    let mut announcement = Vec::new();
    if wire::write_frame(&mut announcement, wire::handshake_announcement(encoding)).is_err()
        || writer.write_all(&announcement).await.is_err()
    {
        return;
    }
    let mut buf: Vec<u8> = Vec::with_capacity(64 * 1024);
    // Until a client has registered it gets small frames only: an
    // anonymous peer must not make us decode tens of megabytes.
    let frame_max_registered = shared.config.frame_size_max;
    let frame_max_anonymous = frame_max_registered.min(limits::FRAME_SIZE_MAX_UNREGISTERED);
    let handshake = match read_frame(&mut reader, &mut buf, frame_max_anonymous).await {
        Ok(Some(payload)) => payload,
        Ok(None) => return,
        Err(e) => {
            tracing::warn!(peer = %peer, "closing: {e}");
            return;
        }
    };
    let encoding = match wire::parse_client_handshake(&handshake) {
        Ok(Handshake::Protocol(enc)) => enc,
        Ok(Handshake::Ruok) => {
            let status = shared.status_json();
            let mut out = Vec::new();
            if wire::write_frame(&mut out, status.as_bytes()).is_ok() {
                let _ = writer.write_all(&out).await;
            }
            let _ = writer.shutdown().await;
            return;
        }
        Err(e) => {
            tracing::warn!(peer = %peer, "bad handshake: {e}");
            return;
        }
    };
    tracing::info!(peer = %peer, encoding = ?encoding, "connected");

    let (tx, rx) = mpsc::unbounded_channel();
    let outbox = Arc::new(Outbox::new(id, peer.clone(), encoding, tx));
    let writer_task = tokio::spawn(write_loop(writer, rx, Arc::clone(&outbox)));
    let conn = Connection {
        shared: Arc::clone(&shared),
        outbox: Arc::clone(&outbox),
        state: Arc::new(Mutex::new(State::default())),
        closed: Arc::new(AtomicBool::new(false)),
        kick: Arc::new(Notify::new()),
    };
    let mut shutdown = shared.shutdown.subscribe();
    let why = loop {
        let frame = tokio::select! {
            f = read_frame(&mut reader, &mut buf, conn.frame_max(frame_max_anonymous, frame_max_registered)) => f,
            _ = conn.kick.notified() => break "closed by the server".to_string(),
            _ = shutdown.changed() => {
                if conn.wait_for_voted_transaction().await {
                    continue;
                }
                break "server shutting down".to_string();
            }
        };
        let payload = match frame {
            Ok(Some(p)) => p,
            Ok(None) => break "disconnected".to_string(),
            Err(e) => break e,
        };
        let msg = match wire::decode_from_client(encoding, &payload) {
            Ok(m) => m,
            Err(e) => break format!("unreadable message: {e}"),
        };
        if outbox.is_closed() {
            break "client not reading".to_string();
        }
        if let Err(Close(why)) = conn.dispatch(msg) {
            break why;
        }
    };
    tracing::info!(peer = %peer, "connection closed: {why}");
    conn.cleanup();
    outbox.close();
    // What is queued gets a moment to leave; a client that does not read does not
    // keep the connection, nor a server that is stopping, waiting for it.
    let mut writer_task = writer_task;
    let flush = Duration::from_millis(limits::CLOSE_FLUSH_MILLIS);
    if tokio::time::timeout(flush, &mut writer_task).await.is_err() {
        writer_task.abort();
        tracing::warn!(peer = %peer, "the client read nothing for {flush:?} after the close; dropped what was queued");
    }
}

/// Reads one frame's payload; `Ok(None)` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    buf: &mut Vec<u8>,
    max: usize,
) -> Result<Option<Vec<u8>>, String> {
    loop {
        match wire::parse_frame(buf, max) {
            Ok(Some((range, consumed))) => {
                let payload = buf[range].to_vec();
                buf.drain(..consumed);
                return Ok(Some(payload));
            }
            Ok(None) => {}
            Err(e) => return Err(format!("bad frame: {e}")),
        }
        // Read into the buffer's spare room: no zeroed bounce buffer.
        buf.reserve(64 * 1024);
        match reader.read_buf(buf).await {
            Ok(0) => {
                return if buf.is_empty() {
                    Ok(None)
                } else {
                    Err("disconnected mid-frame".into())
                };
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read error: {e}")),
        }
    }
}

/// Writes queued frames, batching whatever is queued before each flush.
async fn write_loop<W: AsyncWrite + Unpin>(
    mut writer: W,
    mut rx: mpsc::UnboundedReceiver<Vec<u8>>,
    outbox: Arc<Outbox>,
) {
    let mut out = Vec::with_capacity(64 * 1024);
    while let Some(frame) = rx.recv().await {
        out.clear();
        let mut n = frame.len();
        out.extend_from_slice(&frame);
        while out.len() < 1 << 20 {
            match rx.try_recv() {
                Ok(f) => {
                    n += f.len();
                    out.extend_from_slice(&f);
                }
                Err(_) => break,
            }
        }
        if writer.write_all(&out).await.is_err() {
            outbox.close();
            break;
        }
        outbox.written(n);
    }
    let _ = writer.shutdown().await;
}

impl Connection {
    fn frame_max(&self, anonymous: usize, registered: usize) -> usize {
        if self.state.lock().entry.is_some() {
            registered
        } else {
            anonymous
        }
    }

    fn reply(&self, msgid: Value, value: Value) {
        self.outbox.send(&Message::reply(msgid, value));
    }

    fn reply_error(&self, msgid: Value, e: &StorageError) {
        let (class, payload) = errors::to_remote(e);
        self.outbox.send(&Message::error(msgid, class, payload));
    }

    fn reply_result(&self, msgid: Value, r: Result<Value, StorageError>) {
        match r {
            Ok(v) => self.reply(msgid, v),
            Err(e) => self.reply_error(msgid, &e),
        }
    }

    fn reply_unknown_iterator(&self, msgid: Value, id: i64) {
        let payload = Value::Tuple(vec![Value::Int(id)]);
        self.outbox
            .send(&Message::error(msgid, "builtins.KeyError", payload));
    }

    fn entry(&self) -> Result<Arc<StorageEntry>, Close> {
        self.state
            .lock()
            .entry
            .clone()
            .ok_or_else(|| close("call before register"))
    }

    /// Runs `f` on a blocking thread and replies with its result.
    fn spawn_reply<F>(&self, msgid: Value, f: F)
    where
        F: FnOnce() -> Result<Value, StorageError> + Send + 'static,
    {
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || {
            let msg = match f() {
                Ok(v) => Message::reply(msgid, v),
                Err(e) => {
                    let (class, payload) = errors::to_remote(&e);
                    Message::error(msgid, class, payload)
                }
            };
            outbox.send(&msg);
        });
    }

    fn dispatch(&self, msg: Message) -> Step {
        let Message {
            msgid, name, args, ..
        } = msg;
        let is_async = msg_is_async(&msgid);
        if matches!(msgid, Value::Int(-1)) {
            return Ok(()); // heartbeat
        }
        let a = args_of(&args);
        let registered = self.state.lock().entry.is_some();
        if !registered && name != "register" {
            return Err(close(format!("{name} before register")));
        }
        // The one-way calls may also come as ordinary calls (ZEO's own tests
        // do so); those get `None` once done.
        const ONE_WAY: &[&str] = &[
            "tpc_begin",
            "storea",
            "deleteObject",
            "checkCurrentSerialInTransaction",
            "restorea",
            "undoa",
            "iterator_gc",
            "set_client_label",
        ];
        if !is_async && ONE_WAY.contains(&name.as_str()) {
            let reply_to = msgid.clone();
            let done = self.dispatch(Message::async_call(name, a.to_vec()));
            if done.is_ok() {
                self.reply(reply_to, Value::None);
            }
            return done;
        }
        match name.as_str() {
            "register" => self.register(msgid, a),
            "lastTransaction" => {
                let e = self.entry()?;
                self.reply(msgid, bytes8(e.storage.last_transaction().to_bytes()));
                Ok(())
            }
            "get_info" => {
                let e = self.entry()?;
                self.reply(msgid, self.shared.info_dict(&e));
                Ok(())
            }
            "ping" => {
                self.reply(msgid, Value::None);
                Ok(())
            }
            "set_client_label" => {
                if let Some(label) = a.first().and_then(Value::as_str) {
                    tracing::info!(peer = %self.outbox.peer, label, "client label");
                }
                Ok(())
            }
            "server_status" => {
                let e = self.entry()?;
                self.reply(msgid, self.shared.status_dict(&e));
                Ok(())
            }
            "getInvalidations" => {
                let e = self.entry()?;
                let tid = a
                    .first()
                    .and_then(tid_of)
                    .ok_or_else(|| close("getInvalidations needs a tid"))?;
                self.spawn_reply(msgid, move || {
                    Ok(match e.invalidations_since(tid)? {
                        None => Value::None,
                        Some((last, oids)) => Value::Tuple(vec![
                            bytes8(last.to_bytes()),
                            Value::List(oids.iter().map(|o| bytes8(o.to_bytes())).collect()),
                        ]),
                    })
                });
                Ok(())
            }
            "loadBefore" => self.load_before(msgid, a),
            "loadSerial" => {
                let e = self.entry()?;
                let (oid, serial) = match a {
                    [o, s, ..] => (oid_of(o), tid_of(s)),
                    _ => (None, None),
                };
                let (Some(oid), Some(serial)) = (oid, serial) else {
                    return Err(close("loadSerial needs an oid and a serial"));
                };
                self.spawn_reply(msgid, move || {
                    e.storage.load_serial(oid, serial).map(Value::Bytes)
                });
                Ok(())
            }
            "getTid" => {
                let e = self.entry()?;
                let oid = a
                    .first()
                    .and_then(oid_of)
                    .ok_or_else(|| close("getTid needs an oid"))?;
                self.spawn_reply(msgid, move || {
                    e.storage.load(oid).map(|(_, t)| bytes8(t.to_bytes()))
                });
                Ok(())
            }
            "new_oids" => {
                let e = self.entry()?;
                if self.state.lock().read_only {
                    self.reply_error(msgid, &StorageError::ReadOnly);
                    return Ok(());
                }
                let n = a
                    .first()
                    .and_then(Value::as_i64)
                    .unwrap_or(100)
                    .clamp(1, limits::NEW_OIDS_PER_CALL_MAX as i64);
                self.reply_result(
                    msgid,
                    e.storage.new_oids(n as usize).map(|oids| {
                        Value::List(oids.iter().map(|o| bytes8(o.to_bytes())).collect())
                    }),
                );
                Ok(())
            }
            "history" => {
                let e = self.entry()?;
                let oid = a
                    .first()
                    .and_then(oid_of)
                    .ok_or_else(|| close("history needs an oid"))?;
                let size = a.get(1).and_then(Value::as_i64).unwrap_or(1).max(1) as usize;
                self.spawn_reply(msgid, move || {
                    let h = e.storage.history(oid, size)?;
                    Ok(Value::List(
                        h.into_iter()
                            .map(|h| {
                                let mut d = match extension_value(&h.extension) {
                                    Value::Dict(d) => d,
                                    _ => Vec::new(),
                                };
                                d.extend([
                                    (Value::str("time"), Value::Float(h.time)),
                                    (Value::str("tid"), bytes8(h.tid.to_bytes())),
                                    (Value::str("user_name"), Value::Bytes(h.user)),
                                    (Value::str("description"), Value::Bytes(h.description)),
                                    (Value::str("size"), Value::Int(h.size as i64)),
                                ]);
                                Value::Dict(d)
                            })
                            .collect(),
                    ))
                });
                Ok(())
            }
            "undoLog" | "undoInfo" => self.undo_log(msgid, &name, a),
            "tpc_begin" => self.tpc_begin(a),
            "storea" | "deleteObject" | "checkCurrentSerialInTransaction" | "restorea" => {
                self.buffer_op(&name, a)
            }
            "record_iternext" => {
                let e = self.entry()?;
                let from = a.first().and_then(oid_of).unwrap_or(Oid(0));
                self.spawn_reply(msgid, move || match e.storage.record_iternext(from)? {
                    Some(r) => Ok(Value::Tuple(vec![
                        bytes8(r.oid.to_bytes()),
                        bytes8(r.tid.to_bytes()),
                        Value::Bytes(r.data),
                        r.next.map_or(Value::None, |n| bytes8(n.to_bytes())),
                    ])),
                    None => Err(StorageError::pos_key(from)),
                });
                Ok(())
            }
            "undoa" => {
                let id = match a.first() {
                    Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                    Some(Value::Str(s)) => s.clone(),
                    _ => return Err(close("undoa needs an undo id")),
                };
                let tid = parse_undo_id(&id).ok_or_else(|| close(format!("bad undo id {id:?}")))?;
                self.with_txn(a.get(1), |t| {
                    t.ops.push(Op::Undo(tid));
                    Ok(())
                })
            }
            "vote" => self.vote(msgid, a),
            "tpc_finish" => self.tpc_finish(msgid, a),
            "tpc_abort" => {
                self.abort_transaction(a.first());
                self.reply(msgid, Value::None);
                Ok(())
            }
            "pack" => self.pack(msgid, a),
            "iterator_start"
            | "iterator_next"
            | "iterator_record_start"
            | "iterator_record_next" => self.iterate(msgid, &name, a),
            "iterator_gc" => {
                let mut s = self.state.lock();
                for id in a.first().map(args_of).unwrap_or(&[]) {
                    if let Some(id) = id.as_i64() {
                        s.iterators.transactions.remove(&id);
                        s.iterators.records.remove(&id);
                    }
                }
                Ok(())
            }
            other if is_async => Err(close(format!("unknown one-way call {other}"))),
            other => Err(close(format!("unknown method {other}"))),
        }
    }

    fn register(&self, msgid: Value, a: &[Value]) -> Step {
        if self.state.lock().entry.is_some() {
            return Err(close("second register"));
        }
        let name = match a.first() {
            Some(Value::Str(s)) => s.clone(),
            Some(Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
            _ => "1".to_string(),
        };
        let read_only = match a.get(1) {
            Some(Value::Bool(b)) => *b,
            Some(Value::Int(i)) => *i != 0,
            _ => false,
        };
        let Some(entry) = self.shared.storages.get(&name).cloned() else {
            self.outbox.send(&Message::error(
                msgid,
                "builtins.ValueError",
                Value::Tuple(vec![Value::str(format!("unknown storage: {name}"))]),
            ));
            return Ok(());
        };
        if !read_only && entry.read_only {
            self.reply_error(msgid, &StorageError::ReadOnly);
            return Ok(());
        }
        {
            let mut s = self.state.lock();
            s.entry = Some(Arc::clone(&entry));
            s.read_only = read_only;
        }
        // Subscribing and reading the last tid are one step with respect
        // to commits; the reply goes out under the outbox lock with it.
        let last = entry.register(&self.outbox);
        tracing::info!(peer = %self.outbox.peer, storage = %name, read_only, last = %last, "registered");
        self.reply(msgid, bytes8(last.to_bytes()));
        Ok(())
    }

    fn load_before(&self, msgid: Value, a: &[Value]) -> Step {
        let e = self.entry()?;
        let (oid, before) = match a {
            [o, t, ..] => (oid_of(o), tid_of(t)),
            _ => (None, None),
        };
        let (Some(oid), Some(before)) = (oid, before) else {
            return Err(close("loadBefore needs an oid and a tid"));
        };
        e.stats.loads.fetch_add(1, Ordering::Relaxed);
        let outbox = Arc::clone(&self.outbox);
        // Answered on this connection's task (`block_in_place` hands the
        // worker's other tasks to another thread while the read runs):
        // a load from the page cache then costs no thread hand-off.
        tokio::task::block_in_place(move || {
            let mut seen = outbox.seen();
            loop {
                // Answer as of what the client has been told: never newer.
                let capped = before.min(Tid(seen.0.saturating_add(1)));
                let msg = match e.storage.load_before(oid, capped) {
                    Ok(Some(rev)) => Message::reply(
                        msgid.clone(),
                        Value::Tuple(vec![
                            Value::Bytes(rev.data),
                            bytes8(rev.start.to_bytes()),
                            rev.end.map_or(Value::None, |t| bytes8(t.to_bytes())),
                        ]),
                    ),
                    Ok(None) => Message::reply(msgid.clone(), Value::None),
                    Err(err) => {
                        let (class, payload) = errors::to_remote(&err);
                        Message::error(msgid.clone(), class, payload)
                    }
                };
                match outbox.send_as_of(&msg, seen) {
                    Ok(()) => break,
                    Err(newer) => seen = newer,
                }
            }
        });
        Ok(())
    }

    fn undo_log(&self, msgid: Value, name: &str, a: &[Value]) -> Step {
        let e = self.entry()?;
        let first = a.first().and_then(Value::as_i64).unwrap_or(0).max(0);
        let last = a.get(1).and_then(Value::as_i64).unwrap_or(-20);
        // Python: a negative `last` means `-last` entries after `first`.
        let last = if last < 0 { first - last } else { last };
        let spec = if name == "undoInfo" {
            match a.get(2) {
                Some(Value::Dict(d)) => d.clone(),
                _ => Vec::new(),
            }
        } else {
            Vec::new()
        };
        self.spawn_reply(msgid, move || {
            let entries = if spec.is_empty() {
                e.storage.undo_log(first as usize, last.max(0) as usize)?
            } else {
                // Filter first, then slice, as Python's UndoSearch does.
                e.storage.undo_log(0, usize::MAX)?
            };
            let mut out = Vec::new();
            let mut i = 0i64;
            for u in entries {
                let mut d = match extension_value(&u.extension) {
                    Value::Dict(d) => d,
                    _ => Vec::new(),
                };
                d.extend([
                    (Value::str("id"), Value::Bytes(undo_id(u.tid).into_bytes())),
                    (Value::str("time"), Value::Float(u.time)),
                    (Value::str("user_name"), Value::Bytes(u.user)),
                    (Value::str("description"), Value::Bytes(u.description)),
                    (Value::str("size"), Value::Int(u.size as i64)),
                ]);
                let dict = Value::Dict(d);
                if !spec.is_empty() {
                    let matches = spec.iter().all(|(k, v)| {
                        k.as_str()
                            .and_then(|k| dict.get(k))
                            .is_some_and(|have| values_equal(have, v))
                    });
                    if !matches {
                        continue;
                    }
                    if i < first || i >= last {
                        i += 1;
                        continue;
                    }
                    i += 1;
                }
                out.push(dict);
            }
            Ok(Value::List(out))
        });
        Ok(())
    }

    fn tpc_begin(&self, a: &[Value]) -> Step {
        let entry = self.entry()?;
        let txnid = a.first().cloned().unwrap_or(Value::None);
        let mut s = self.state.lock();
        if s.read_only || entry.read_only {
            return Err(close("tpc_begin on a read-only connection"));
        }
        if let Some(t) = &s.txn {
            if t.txnid == txnid {
                return Ok(());
            }
            return Err(close("tpc_begin while another transaction is open"));
        }
        let meta = TransactionMeta {
            user: a.get(1).map(text_bytes).unwrap_or_default(),
            description: a.get(2).map(text_bytes).unwrap_or_default(),
            extension: a.get(3).map(extension_bytes).unwrap_or_default(),
            tid: a.get(4).and_then(tid_of),
        };
        s.txn = Some(Txn {
            txnid,
            meta,
            ops: Vec::new(),
            phase: Phase::Open,
            handle: None,
            oids: Vec::new(),
        });
        Ok(())
    }

    /// Applies `f` to the open transaction named by `txnid`.
    fn with_txn(&self, txnid: Option<&Value>, f: impl FnOnce(&mut Txn) -> Step) -> Step {
        let mut s = self.state.lock();
        match &mut s.txn {
            Some(t) if Some(&t.txnid) == txnid && t.phase == Phase::Open => f(t),
            Some(_) => Err(close(
                "operation for a transaction that is not the open one",
            )),
            None => Err(close("operation without an open transaction")),
        }
    }

    fn buffer_op(&self, name: &str, a: &[Value]) -> Step {
        let oid = a
            .first()
            .and_then(oid_of)
            .ok_or_else(|| close(format!("{name} needs an oid")))?;
        // `None` (or a str of zero bytes from old test code) means "new".
        let serial = a.get(1).and_then(tid_of).unwrap_or(Tid::ZERO);
        let (op, txnid) = match name {
            "storea" => match (a.get(2), a.get(3)) {
                (Some(Value::Bytes(data)), txnid) => (
                    Op::Store {
                        oid,
                        serial,
                        data: data.clone(),
                    },
                    txnid,
                ),
                _ => return Err(close("storea needs data")),
            },
            "deleteObject" => (Op::Delete { oid, serial }, a.get(2)),
            // restorea(oid, serial, data|None, prev_txn|None, txnid)
            "restorea" => {
                let data = match a.get(2) {
                    Some(Value::Bytes(d)) => Some(d.clone()),
                    _ => None,
                };
                let prev_txn = a.get(3).and_then(tid_of);
                (
                    Op::Restore {
                        oid,
                        data,
                        prev_txn,
                    },
                    a.get(4),
                )
            }
            _ => (Op::Check { oid, serial }, a.get(2)),
        };
        if let Ok(e) = self.entry()
            && matches!(op, Op::Store { .. })
        {
            e.stats.stores.fetch_add(1, Ordering::Relaxed);
        }
        self.with_txn(txnid, |t| {
            // The last store of an oid wins.
            if let Op::Store { oid, .. } = &op {
                t.ops
                    .retain(|o| !matches!(o, Op::Store { oid: x, .. } if x == oid));
            }
            t.ops.push(op);
            Ok(())
        })
    }

    fn vote(&self, msgid: Value, a: &[Value]) -> Step {
        let entry = self.entry()?;
        let txnid = a.first().cloned().unwrap_or(Value::None);
        let (meta, ops) = {
            let mut s = self.state.lock();
            let Some(t) = &mut s.txn else {
                drop(s);
                self.reply_error(
                    msgid,
                    &StorageError::Transaction("vote without a transaction".into()),
                );
                return Ok(());
            };
            if t.txnid != txnid || t.phase != Phase::Open {
                let why = match t.phase {
                    Phase::Voting => "Already voting (waiting)",
                    Phase::Voted => "Already voting (locked)",
                    Phase::Open => "vote for another transaction",
                };
                drop(s);
                self.reply_error(msgid, &StorageError::Transaction(why.into()));
                return Ok(());
            }
            t.phase = Phase::Voting;
            (t.meta.clone(), t.ops.clone())
        };
        let state = Arc::clone(&self.state);
        let outbox = Arc::clone(&self.outbox);
        let closed = Arc::clone(&self.closed);
        let kick = Arc::clone(&self.kick);
        let timeout = self.shared.config.transaction_timeout;
        tokio::task::spawn_blocking(move || {
            let result = apply_and_vote(&entry, meta, &ops);
            let mut s = state.lock();
            let msg = match result {
                Ok((handle, oids, undone)) => {
                    if closed.load(Ordering::Acquire) {
                        entry.storage.abort(&handle);
                        return;
                    }
                    // The transaction may have been aborted (or replaced)
                    // while the vote waited for the commit lock: then the
                    // lock goes back at once.
                    match &mut s.txn {
                        Some(t) if t.txnid == txnid && t.phase == Phase::Voting => {
                            t.phase = Phase::Voted;
                            t.handle = Some(handle);
                            t.oids = oids;
                        }
                        _ => {
                            entry.storage.abort(&handle);
                            drop(s);
                            let e = StorageError::Transaction(
                                "the transaction was aborted while voting".into(),
                            );
                            let (class, payload) = errors::to_remote(&e);
                            outbox.send(&Message::error(msgid, class, payload));
                            return;
                        }
                    }
                    if let Some(limit) = timeout {
                        spawn_transaction_timeout(
                            Arc::clone(&state),
                            kick,
                            txnid,
                            limit,
                            outbox.peer.clone(),
                        );
                    }
                    Message::reply(
                        msgid,
                        Value::List(undone.iter().map(|o| bytes8(o.to_bytes())).collect()),
                    )
                }
                Err(VoteFailure::Conflicts(conflicts)) => {
                    entry.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    if let Some(t) = &mut s.txn {
                        t.phase = Phase::Open;
                    }
                    // Client-side conflict resolution: the client resolves
                    // each, stores again, and votes again.
                    Message::reply(msgid, Value::List(conflicts))
                }
                Err(VoteFailure::Error(e)) => {
                    if matches!(e, StorageError::Conflict(_) | StorageError::Conflicts(_)) {
                        entry.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                    }
                    s.txn = None;
                    entry.stats.aborts.fetch_add(1, Ordering::Relaxed);
                    let (class, payload) = errors::to_remote(&e);
                    Message::error(msgid, class, payload)
                }
            };
            drop(s);
            outbox.send(&msg);
        });
        Ok(())
    }

    fn tpc_finish(&self, msgid: Value, a: &[Value]) -> Step {
        let entry = self.entry()?;
        let txnid = a.first().cloned().unwrap_or(Value::None);
        let txn = {
            let mut s = self.state.lock();
            match &s.txn {
                Some(t) if t.txnid == txnid && t.phase == Phase::Voted => s.txn.take(),
                _ => None,
            }
        };
        let Some(txn) = txn else {
            self.outbox.send(&Message::error(
                msgid,
                "builtins.AssertionError",
                Value::Tuple(vec![Value::str("finished called wo lock")]),
            ));
            return Ok(());
        };
        let outbox = Arc::clone(&self.outbox);
        let peer = self.outbox.peer.clone();
        tokio::task::spawn_blocking(move || {
            let Some(handle) = txn.handle else { return };
            let who = CommitInfo {
                user: &txn.meta.user,
                description: &txn.meta.description,
                peer: &peer,
            };
            if let Err(e) = entry.finish(&handle, &outbox, msgid.clone(), txn.oids, who) {
                tracing::error!(peer = %peer, "finish failed: {e}");
                entry.storage.abort(&handle);
                let (class, payload) = errors::to_remote(&e);
                outbox.send(&Message::error(msgid, class, payload));
            }
        });
        Ok(())
    }

    /// Aborts the open transaction (if `txnid` names it, or any if `None`).
    fn abort_transaction(&self, txnid: Option<&Value>) {
        let taken = {
            let mut s = self.state.lock();
            match &s.txn {
                Some(t) if txnid.is_none() || Some(&t.txnid) == txnid => {
                    s.txn.take().map(|t| (t, s.entry.clone()))
                }
                _ => None,
            }
        };
        if let Some((t, Some(entry))) = taken {
            if let Some(h) = t.handle {
                entry.storage.abort(&h);
            }
            entry.stats.aborts.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn pack(&self, msgid: Value, a: &[Value]) -> Step {
        let entry = self.entry()?;
        let t = match a.first() {
            Some(Value::Float(f)) => *f,
            Some(Value::Int(i)) => *i as f64,
            _ => return Err(close("pack needs a time")),
        };
        let wait = a
            .get(1)
            .is_none_or(|w| !matches!(w, Value::Bool(false) | Value::Int(0)));
        let outbox = Arc::clone(&self.outbox);
        if !wait {
            self.reply(msgid.clone(), Value::None);
        }
        tokio::task::spawn_blocking(move || {
            // Never past what has been committed: a pack time in the future
            // means "now".
            let pack_tid = Tid::from_unix_seconds(t).min(entry.storage.last_transaction());
            // Nothing to pack in an empty storage.
            let result = if pack_tid == Tid::ZERO {
                Ok(())
            } else {
                entry.storage.pack(pack_tid, true)
            };
            match &result {
                Ok(()) => tracing::info!(storage = %entry.name, pack_time = %pack_tid, "packed"),
                Err(e) => tracing::error!(storage = %entry.name, "pack failed: {e}"),
            }
            entry.broadcast_info();
            if wait {
                let msg = match result {
                    Ok(()) => Message::reply(msgid, Value::None),
                    Err(e) => {
                        let (class, payload) = errors::to_remote(&e);
                        Message::error(msgid, class, payload)
                    }
                };
                outbox.send(&msg);
            }
        });
        Ok(())
    }

    fn iterate(&self, msgid: Value, name: &str, a: &[Value]) -> Step {
        let entry = self.entry()?;
        match name {
            "iterator_start" => {
                let start = a.first().and_then(tid_of);
                let stop = a.get(1).and_then(tid_of);
                let r = entry.storage.iterator(start, stop);
                match r {
                    Ok(it) => {
                        let mut s = self.state.lock();
                        let id = s.iterators.next_id;
                        s.iterators.next_id += 1;
                        s.iterators.transactions.insert(id, (it, None));
                        drop(s);
                        self.reply(msgid, Value::Int(id));
                    }
                    Err(e) => self.reply_error(msgid, &e),
                }
            }
            "iterator_next" => {
                let id = a
                    .first()
                    .and_then(Value::as_i64)
                    .ok_or_else(|| close("iterator_next needs an id"))?;
                let taken = self.state.lock().iterators.transactions.remove(&id);
                // An exhausted or collected iterator is forgotten, as in
                // Python: asking for it is a KeyError.
                let Some((mut it, _)) = taken else {
                    self.reply_unknown_iterator(msgid, id);
                    return Ok(());
                };
                let state = Arc::clone(&self.state);
                let outbox = Arc::clone(&self.outbox);
                tokio::task::spawn_blocking(move || {
                    let msg = match it.next() {
                        None => Message::reply(msgid, Value::None),
                        Some(Err(e)) => {
                            let (class, payload) = errors::to_remote(&e);
                            Message::error(msgid, class, payload)
                        }
                        Some(Ok(t)) => {
                            let value = Value::Tuple(vec![
                                bytes8(t.tid.to_bytes()),
                                Value::str(t.status.as_char().to_string()),
                                Value::Bytes(t.user.clone()),
                                Value::Bytes(t.description.clone()),
                                extension_value(&t.extension),
                            ]);
                            state
                                .lock()
                                .iterators
                                .transactions
                                .insert(id, (it, Some(t)));
                            Message::reply(msgid, value)
                        }
                    };
                    outbox.send(&msg);
                });
            }
            "iterator_record_start" => {
                let id = a
                    .first()
                    .and_then(Value::as_i64)
                    .ok_or_else(|| close("iterator_record_start needs an id"))?;
                let tid = a.get(1).and_then(tid_of);
                let mut s = self.state.lock();
                let records = match s.iterators.transactions.get(&id) {
                    Some((_, Some(t))) if Some(t.tid) == tid => t.records.clone(),
                    _ => {
                        drop(s);
                        self.reply_error(
                            msgid,
                            &StorageError::Transaction("no such transaction iterator".into()),
                        );
                        return Ok(());
                    }
                };
                let rid = s.iterators.next_id;
                s.iterators.next_id += 1;
                s.iterators.records.insert(rid, records.into_iter());
                drop(s);
                self.reply(msgid, Value::Int(rid));
            }
            _ => {
                let id = a
                    .first()
                    .and_then(Value::as_i64)
                    .ok_or_else(|| close("iterator_record_next needs an id"))?;
                let mut s = self.state.lock();
                let Some(records) = s.iterators.records.get_mut(&id) else {
                    drop(s);
                    self.reply_unknown_iterator(msgid, id);
                    return Ok(());
                };
                let value = match records.next() {
                    None => {
                        s.iterators.records.remove(&id);
                        Value::None
                    }
                    Some(r) => Value::Tuple(vec![
                        bytes8(r.oid.to_bytes()),
                        bytes8(r.tid.to_bytes()),
                        r.data.map_or(Value::None, Value::Bytes),
                        r.data_txn.map_or(Value::None, |t| bytes8(t.to_bytes())),
                    ]),
                };
                drop(s);
                self.reply(msgid, value);
            }
        }
        Ok(())
    }

    /// At shutdown: lets a voted transaction finish (up to a grace
    /// period). True while the connection should keep reading.
    async fn wait_for_voted_transaction(&self) -> bool {
        let voted = self
            .state
            .lock()
            .txn
            .as_ref()
            .is_some_and(|t| t.phase != Phase::Open);
        if !voted {
            return false;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(limits::SHUTDOWN_GRACE_SECONDS);
        let state = Arc::clone(&self.state);
        let kick = Arc::clone(&self.kick);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if state.lock().txn.is_some() {
                kick.notify_one();
            }
        });
        true
    }

    fn cleanup(&self) {
        self.closed.store(true, Ordering::Release);
        self.abort_transaction(None);
        let entry = {
            let mut s = self.state.lock();
            s.iterators = Iterators::default();
            s.entry.take()
        };
        if let Some(e) = entry {
            e.unregister(self.outbox.id);
        }
    }
}

fn msg_is_async(msgid: &Value) -> bool {
    matches!(msgid, Value::Int(0))
}

fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bytes(x), Value::Str(y)) | (Value::Str(y), Value::Bytes(x)) => x == y.as_bytes(),
        _ => a == b,
    }
}

enum VoteFailure {
    /// Write conflicts, as the dicts the client resolves.
    Conflicts(Vec<Value>),
    Error(StorageError),
}

/// Replays the buffered operations into a storage transaction and votes it.
/// Returns the handle, the oids the commit changes, and the undone oids.
fn apply_and_vote(
    entry: &StorageEntry,
    meta: TransactionMeta,
    ops: &[Op],
) -> Result<(TxnHandle, Vec<Oid>, Vec<Oid>), VoteFailure> {
    let storage = &entry.storage;
    let handle = storage.tpc_begin(meta).map_err(VoteFailure::Error)?;
    let fail = |e: StorageError| {
        storage.abort(&handle);
        e
    };
    let mut oids = Vec::new();
    let mut undone = Vec::new();
    let mut conflicts = Vec::new();
    for op in ops {
        let r = match op {
            Op::Store { oid, serial, data } => {
                oids.push(*oid);
                storage.store(&handle, *oid, *serial, data.clone())
            }
            Op::Delete { oid, serial } => {
                oids.push(*oid);
                storage.delete_object(&handle, *oid, *serial)
            }
            Op::Check { oid, serial } => storage.check_current_serial(&handle, *oid, *serial),
            Op::Restore {
                oid,
                data,
                prev_txn,
            } => {
                oids.push(*oid);
                storage.restore(&handle, *oid, data.clone(), *prev_txn)
            }
            Op::Undo(tid) => storage.undo(&handle, *tid).map(|changed| {
                oids.extend_from_slice(&changed);
                undone.extend(changed);
            }),
        };
        match r {
            Ok(()) => {}
            Err(StorageError::Conflict(c))
                if !c.read_conflict && matches!(op, Op::Store { .. }) =>
            {
                conflicts.push(c)
            }
            Err(e) => return Err(VoteFailure::Error(fail(e))),
        }
    }
    if conflicts.is_empty() {
        match storage.vote(&handle) {
            Ok(()) => {
                oids.sort();
                oids.dedup();
                return Ok((handle, oids, undone));
            }
            Err(e)
                if !e.conflicts().is_empty() && e.conflicts().iter().all(|c| !c.read_conflict) =>
            {
                conflicts.extend(e.conflicts().into_iter().cloned());
            }
            Err(e) => return Err(VoteFailure::Error(fail(e))),
        }
    }
    storage.abort(&handle);
    // Only stores can be resolved by the client: a conflicting deletion is
    // an error.
    let mut dicts = Vec::new();
    for c in conflicts {
        let data = ops.iter().find_map(|op| match op {
            Op::Store { oid, data, .. } if *oid == c.oid => Some(data.clone()),
            _ => None,
        });
        let Some(data) = data else {
            return Err(VoteFailure::Error(StorageError::Conflict(c)));
        };
        dicts.push(Value::Dict(vec![
            (Value::str("oid"), bytes8(c.oid.to_bytes())),
            (
                Value::str("serials"),
                Value::Tuple(vec![
                    bytes8(c.committed.to_bytes()),
                    bytes8(c.expected.to_bytes()),
                ]),
            ),
            (Value::str("data"), Value::Bytes(data)),
        ]));
    }
    Err(VoteFailure::Conflicts(dicts))
}

/// Closes the connection, which aborts its transaction and so releases its
/// object locks (the commit locks), if transaction `txnid` is still voted
/// and unfinished after `limit` (the server's `transaction-timeout`).
fn spawn_transaction_timeout(
    state: Arc<Mutex<State>>,
    kick: Arc<Notify>,
    txnid: Value,
    limit: Duration,
    peer: String,
) {
    tokio::spawn(async move {
        tokio::time::sleep(limit).await;
        let still_voted = state
            .lock()
            .txn
            .as_ref()
            .is_some_and(|t| t.txnid == txnid && t.phase == Phase::Voted);
        if still_voted {
            tracing::warn!(
                peer = %peer,
                "transaction timeout: voted {:.1} s ago and not finished; aborting it \
                 (its object locks are released) and closing the connection",
                limit.as_secs_f64()
            );
            kick.notify_one();
        }
    });
}
