//! The calls that read the storage (loads, `getTid`, history, the undo log, the
//! invalidations since a tid, `record_iternext`) and `pack`: each replies with what the
//! storage says, the slow ones from a blocking thread.
//!
//! Loads are the one read with an ordering rule: a client is never sent data newer than
//! the invalidations it has been sent, so a load is answered as of the newest
//! transaction the client was told of, and queued only if that has not moved meanwhile
//! (`Outbox::send_as_of`).

use std::sync::Arc;
use std::sync::atomic::Ordering;

use zodb_pickle::Value;
use zodb_storage::{Oid, StorageError, Tid};

use super::{Connection, Step, bytes8};
use crate::server::entry::StorageEntry;
use crate::server::errors;
use crate::server::outbox::Outbox;
use crate::wire::{self, Call, Message, hot};

impl Connection {
    pub(super) fn get_invalidations(&self, msgid: Value, tid: Tid) -> Step {
        let e = self.entry()?;
        self.spawn_reply(msgid, move || {
            Ok(wire::invalidations_reply(e.invalidations_since(tid)?))
        });
        Ok(())
    }

    pub(super) fn load_before(&self, msgid: Value, oid: Oid, before: Tid) -> Step {
        self.entry_ref()?
            .stats
            .loads
            .fetch_add(1, Ordering::Relaxed);
        self.answer_load(msgid, oid, before)
    }

    /// [`Connection::load_before`] of a call read by `wire::hot` (message id `(oid,
    /// before)`): the reply is written straight from the record, as the same bytes.
    pub(super) fn load_before_hot(&self, oid: Oid, before: Tid) -> Step {
        let e = self.entry_ref()?;
        if e.storage.waits_on_network() {
            return self.load_before(Call::load_msgid(oid, before), oid, before);
        }
        e.stats.loads.fetch_add(1, Ordering::Relaxed);
        let mut seen = self.outbox.seen();
        loop {
            // As in `answer_load`.
            let capped = before.min(Tid(seen.0.saturating_add(1)));
            // The reply is written from the record the storage lends (from its record
            // cache, no copy): the reply's buffer is the load's one allocation then.
            let mut frame = None;
            let lent = e.storage.load_before_with(oid, capped, &mut |rev| {
                frame = Some(hot::load_reply_frame(oid, before, rev));
            });
            let frame = match (lent, frame) {
                (Ok(()), Some(frame)) => frame,
                // Errors (a missing object) are answered the general way.
                _ => return self.answer_load(Call::load_msgid(oid, before), oid, before),
            };
            match self.outbox.send_frame_as_of(frame, seen) {
                Ok(()) => return Ok(()),
                Err(newer) => seen = newer,
            }
        }
    }

    fn answer_load(&self, msgid: Value, oid: Oid, before: Tid) -> Step {
        let e = self.entry_ref()?;
        // Answered in line, on this connection's task: a load from the page
        // cache is an index lookup and one `pread` (a few µs), cheaper than
        // any hand-off. `block_in_place` was measured here at three times the
        // server CPU per load (it moves the worker's scheduler to another
        // thread each time: 32 against 10 µs, 37,000 against 97,000 loads/s
        // with bench/zeo/load.sh). A read that misses the page cache holds
        // this worker for the disk's latency, as it holds Python's whole
        // server; the runtime's other workers take the queued tasks
        // meanwhile. A storage whose loads wait on a network (PostgreSQL)
        // is read from a blocking thread: a load waiting there for one of
        // its connections, all lent to transactions, must not stop this
        // thread from reading the `tpc_finish` that gives one back.
        if e.storage.waits_on_network() {
            let e = Arc::clone(e);
            let outbox = Arc::clone(&self.outbox);
            tokio::task::spawn_blocking(move || load_as_of_seen(&e, &outbox, msgid, oid, before));
        } else {
            load_as_of_seen(e, &self.outbox, msgid, oid, before);
        }
        Ok(())
    }

    pub(super) fn load_serial(&self, msgid: Value, oid: Oid, serial: Tid) -> Step {
        let e = self.entry()?;
        self.spawn_reply(msgid, move || {
            e.storage.load_serial(oid, serial).map(Value::Bytes)
        });
        Ok(())
    }

    pub(super) fn get_tid(&self, msgid: Value, oid: Oid) -> Step {
        let e = self.entry()?;
        self.spawn_reply(msgid, move || {
            e.storage.load(oid).map(|(_, t)| bytes8(t.to_bytes()))
        });
        Ok(())
    }

    pub(super) fn history(&self, msgid: Value, oid: Oid, size: i64) -> Step {
        let e = self.entry()?;
        let size = size.max(1) as usize;
        self.spawn_reply(msgid, move || {
            Ok(wire::history_reply(e.storage.history(oid, size)?))
        });
        Ok(())
    }

    /// `undoLog(first, last)`, or `undoInfo(first, last, spec)` when `spec` has items:
    /// then the entries that match every item, `first..last` of those.
    pub(super) fn undo_log(
        &self,
        msgid: Value,
        first: i64,
        last: i64,
        spec: Vec<(Value, Value)>,
    ) -> Step {
        let e = self.entry()?;
        let first = first.max(0);
        // Python: a negative `last` means `-last` entries after `first`.
        let last = if last < 0 { first - last } else { last };
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
                let dict = wire::undo_log_dict(u);
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

    pub(super) fn record_iternext(&self, msgid: Value, from: Oid) -> Step {
        let e = self.entry()?;
        self.spawn_reply(msgid, move || match e.storage.record_iternext(from)? {
            Some(r) => Ok(wire::record_iternext_reply(r)),
            None => Err(StorageError::pos_key(from)),
        });
        Ok(())
    }

    /// `pack(t, wait)`: packs as of Unix time `t` (never past the last commit), with
    /// garbage collection; replies once done, or at once when `wait` is false.
    pub(super) fn pack(&self, msgid: Value, t: f64, wait: bool) -> Step {
        let entry = self.entry()?;
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
}

/// Python's `==` between an undo-log value and a spec value, where bytes and str of the
/// same text are equal (old clients send str).
fn values_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Bytes(x), Value::Str(y)) | (Value::Str(y), Value::Bytes(x)) => x == y.as_bytes(),
        _ => a == b,
    }
}

/// Answers a load as of what the client has been told: never newer than the
/// invalidations sent to it, and queued only if those have not moved meanwhile.
fn load_as_of_seen(e: &StorageEntry, outbox: &Outbox, msgid: Value, oid: Oid, before: Tid) {
    let mut seen = outbox.seen();
    let mut msgid = msgid;
    loop {
        let capped = before.min(Tid(seen.0.saturating_add(1)));
        let msg = match e.storage.load_before(oid, capped) {
            Ok(rev) => Message::reply(msgid, wire::load_reply(rev)),
            Err(err) => {
                let (class, payload) = errors::to_remote(&err);
                Message::error(msgid, class, payload)
            }
        };
        match outbox.send_as_of(&msg, seen) {
            Ok(()) => return,
            Err(newer) => {
                seen = newer;
                msgid = msg.msgid;
            }
        }
    }
}
