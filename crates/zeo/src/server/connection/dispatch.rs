//! The one `match` over a client's calls: a message is read into a [`Call`] (arguments
//! checked once, in `wire::call`), then each variant goes to the piece that owns it
//! (`txn.rs`, `reads.rs`, `iterators.rs`), or is answered here when it is a line long.
//!
//! Rules applied before the match: the heartbeat (msgid -1) is ignored; nothing but
//! `register` is taken before `register`; a malformed or unknown call closes the
//! connection.  The one-way calls may also come as ordinary calls (ZEO's own tests do
//! so); those get `None` once done.

use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::StorageError;

use super::{Connection, Step, bytes8, close};
use crate::limits;
use crate::wire::hot::HotCall;
use crate::wire::{BadCall, Call, Message};

impl Connection {
    pub(super) fn dispatch(&self, msg: Message) -> Step {
        let Message {
            msgid, name, args, ..
        } = msg;
        if matches!(msgid, Value::Int(-1)) {
            return Ok(()); // heartbeat
        }
        let is_async = matches!(msgid, Value::Int(0));
        let registered = self.entry.get().is_some();
        if !registered && name != "register" {
            return Err(close(format!("{name} before register")));
        }
        let call = Call::decode(&name, args).map_err(|e| match e {
            BadCall::Unknown(method) if is_async => close(format!("unknown one-way call {method}")),
            e => close(e.to_string()),
        })?;
        let one_way = call.is_one_way();
        let reply_to = (one_way && !is_async).then(|| msgid.clone());
        self.run(msgid, call)?;
        if let Some(msgid) = reply_to {
            self.reply(msgid, Value::None);
        }
        Ok(())
    }

    /// Runs a call `wire::hot` read (on a registered connection): what [`Connection::run`]
    /// does with the same call, read the general way.
    pub(super) fn run_hot(&self, call: HotCall) -> Step {
        match call {
            HotCall::Storea { op, txn } => self.buffer_op(op, &txn),
            HotCall::LoadBefore { oid, tid } => self.load_before_hot(oid, tid),
        }
    }

    /// Runs one call; one-way calls ignore `msgid` (see [`Connection::dispatch`]).
    fn run(&self, msgid: Value, call: Call) -> Step {
        match call {
            Call::Register { storage, read_only } => self.register(msgid, storage, read_only),
            Call::LastTransaction => {
                let e = self.entry()?;
                self.reply(msgid, bytes8(e.storage.last_transaction().to_bytes()));
                Ok(())
            }
            Call::GetInfo => {
                let e = self.entry()?;
                // The object count and size are queries on a database.
                let (shared, entry) = (Arc::clone(&self.shared), Arc::clone(&e));
                self.reply_with(&e, msgid, move || Ok(shared.info_dict(&entry)));
                Ok(())
            }
            Call::Ping => {
                self.reply(msgid, Value::None);
                Ok(())
            }
            Call::SetClientLabel { label } => {
                if let Some(label) = label {
                    tracing::info!(peer = %self.outbox.peer, label, "client label");
                }
                Ok(())
            }
            Call::ServerStatus => {
                let e = self.entry()?;
                self.reply(msgid, self.shared.status_dict(&e));
                Ok(())
            }
            Call::GetInvalidations { tid } => self.get_invalidations(msgid, tid),
            Call::LoadBefore { oid, tid } => self.load_before(msgid, oid, tid),
            Call::LoadSerial { oid, serial } => self.load_serial(msgid, oid, serial),
            Call::GetTid { oid } => self.get_tid(msgid, oid),
            Call::NewOids { count } => {
                let e = self.entry()?;
                if self.state.lock().read_only {
                    self.reply_error(msgid, &StorageError::ReadOnly);
                    return Ok(());
                }
                let n = count.clamp(1, limits::NEW_OIDS_PER_CALL_MAX as i64);
                let storage = Arc::clone(&e.storage);
                self.reply_with(&e, msgid, move || {
                    storage.new_oids(n as usize).map(|oids| {
                        Value::List(oids.iter().map(|o| bytes8(o.to_bytes())).collect())
                    })
                });
                Ok(())
            }
            Call::History { oid, size } => self.history(msgid, oid, size),
            Call::UndoLog { first, last } => self.undo_log(msgid, first, last, Vec::new()),
            Call::UndoInfo { first, last, spec } => self.undo_log(msgid, first, last, spec),
            Call::RecordIternext { from } => self.record_iternext(msgid, from),
            Call::TpcBegin {
                txn,
                user,
                description,
                extension,
                tid,
                status,
            } => self.tpc_begin(txn, user, description, &extension, tid, status),
            call @ (Call::Storea { .. }
            | Call::DeleteObject { .. }
            | Call::CheckCurrentSerial { .. }
            | Call::Restorea { .. }
            | Call::Undoa { .. }) => match call.into_txn_op() {
                Some((op, txn)) => self.buffer_op(op, &txn),
                None => Ok(()),
            },
            Call::Vote { txn } => self.vote(msgid, txn),
            Call::TpcFinish { txn } => self.tpc_finish(msgid, txn),
            Call::TpcAbort { txn } => {
                match self.take_transaction(txn.as_ref()) {
                    // Replied once the storage has let go of the transaction's
                    // locks, so the client's next transaction finds them free.
                    Some((t, e)) => self.reply_with(&Arc::clone(&e), msgid, move || {
                        t.abort_in(&e);
                        Ok(Value::None)
                    }),
                    None => self.reply(msgid, Value::None),
                }
                Ok(())
            }
            Call::Pack { time, wait } => self.pack(msgid, time, wait),
            Call::IteratorStart { start, stop } => self.iterator_start(msgid, start, stop),
            Call::IteratorNext { id } => self.iterator_next(msgid, id),
            Call::IteratorRecordStart { id, tid } => self.iterator_record_start(msgid, id, tid),
            Call::IteratorRecordNext { id } => self.iterator_record_next(msgid, id),
            Call::IteratorGc { ids } => {
                self.iterator_gc(&ids);
                Ok(())
            }
            Call::StoreBlobStart => self.store_blob_start(),
            Call::StoreBlobChunk { chunk } => self.store_blob_chunk(&chunk),
            Call::StoreBlobEnd {
                oid,
                serial,
                data,
                txn,
            } => self.store_blob_end(oid, serial, data, &txn),
            Call::StoreBlobShared {
                oid,
                serial,
                data,
                filename,
                txn,
            } => self.store_blob_shared(oid, serial, data, &filename, &txn),
            Call::SendBlob { oid, serial } => self.send_blob(msgid, oid, serial),
            Call::Lease => {
                let e = self.entry()?;
                let granted = e.leases.grant(self.outbox.id, self.outbox.seen());
                self.reply(
                    msgid,
                    granted.map_or(Value::None, |d| {
                        Value::Int(i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
                    }),
                );
                Ok(())
            }
            Call::LeaseApplied { tid } => {
                self.entry()?.leases.applied(self.outbox.id, tid);
                Ok(())
            }
            Call::LeaseEnd => {
                self.entry()?.leases.end(self.outbox.id);
                Ok(())
            }
        }
    }

    fn register(&self, msgid: Value, name: String, read_only: bool) -> Step {
        if self.entry.get().is_some() {
            return Err(close("second register"));
        }
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
        self.state.lock().read_only = read_only;
        if self.entry.set(Arc::clone(&entry)).is_err() {
            return Err(close("second register"));
        }
        self.slot.registered();
        // Subscribing and reading the last tid are one step with respect
        // to commits; the reply goes out under the outbox lock with it.
        let last = entry.register(&self.outbox);
        tracing::info!(peer = %self.outbox.peer, storage = %name, read_only, last = %last, "registered");
        self.reply(msgid, bytes8(last.to_bytes()));
        Ok(())
    }
}
