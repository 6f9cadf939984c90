//! `impl Storage for ClientStorage`: the storage API over the wire.  Reads hit the
//! cache first, then the server; writes are buffered in the transaction (`txn.rs`) and
//! sent at vote (`commit.rs`); see the module doc of `client` for where this differs
//! from Python's `ClientStorage`.

use std::sync::atomic::Ordering;
use std::time::Duration;

use zodb_pickle::Value;
use zodb_storage::{
    HistoryEntry, InvalidationListener, Oid, RecordIterItem, Revision, Storage, StorageError, Tid,
    TransactionIter, TransactionMeta, TxnHandle, UndoLogEntry,
};

use super::connection::{CallError, Post};
use super::convert::{self, CallKind, bad_reply, call_error, int_value, reply_error};
use super::txn::Txn;
use super::{ClientStorage, limits};
use crate::wire::{self, Call, RemoteError, TxnOp, as_oid, items};

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
            .load_before(oid, before, s.answer_wait())
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

    /// The client's blob directory, when the server's storage has blobs too (an
    /// application then falls back to keeping bytes in records).
    fn blobs(&self) -> Option<&zodb_storage::blob::BlobDir> {
        if !self.shared.info.lock().supports_blobs {
            return None;
        }
        self.shared.blobs.as_ref().map(|b| &b.dir)
    }

    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        blob: &std::path::Path,
    ) -> Result<(), StorageError> {
        let blobs = self.shared.blobs.as_ref().ok_or_else(|| {
            StorageError::Unsupported("this ZEO client has no blob directory".into())
        })?;
        // The record first: it fails (too large, closed, voted) before the file is taken.
        self.store(txn, oid, expected, data)?;
        let staged = blobs.stage(blob)?;
        let old = self
            .shared
            .with_open_txn(txn, |t| t.blobs.insert(oid, staged.clone()));
        match old {
            Ok(Some(old)) => zodb_storage::blob::BlobDir::discard(&old),
            Ok(None) => {}
            Err(e) => {
                zodb_storage::blob::BlobDir::discard(&staged);
                return Err(e);
            }
        }
        Ok(())
    }

    fn load_blob(&self, oid: Oid, serial: Tid) -> Result<std::path::PathBuf, StorageError> {
        let blobs = self.shared.blobs.as_ref().ok_or_else(|| {
            StorageError::Unsupported("this ZEO client has no blob directory".into())
        })?;
        blobs.load(oid, serial, || {
            self.shared
                .call(Call::SendBlob { oid, serial }, CallKind::Read, Some(oid))
                .map(drop)
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
        self.shared.vote(txn)
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid, StorageError> {
        self.shared.finish(txn)
    }

    fn abort(&self, txn: &TxnHandle) {
        self.shared.abort(txn)
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>, StorageError> {
        let size = size.max(1);
        let call = Call::History {
            oid,
            size: int_value(size),
        };
        let reply = self.shared.call(call, CallKind::Read, Some(oid))?;
        let mut entries = wire::read_history_reply(&reply).map_err(reply_error)?;
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
        wire::read_undo_log_reply(&reply).map_err(reply_error)
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
    fn holds_read_lease(&self) -> Option<bool> {
        Some(self.shared.lease.held())
    }

    /// A round trip, shared with the callers at the same moment (`client/sync.rs`); none
    /// while a read lease is held (`client/lease.rs`).
    fn sync(&self) -> Result<(), StorageError> {
        if zodb_storage::inline::take_synced() {
            // The caller's `start_sync` is done, for this very transaction.
            return Ok(());
        }
        if self.shared.lease.held() {
            // Every commit acknowledged before now has been applied (spec §11).
            return Ok(());
        }
        if !zodb_storage::inline::may_wait() {
            return Err(zodb_storage::inline::refuse("sync"));
        }
        let wait = self.shared.answer_wait();
        self.shared.sync_gate.sync(wait, || self.shared.sync_ping())
    }

    /// `sync` by the pinger thread: `done` is called on it (or on the reader thread's
    /// side of it) once a ping sent after this call is answered; at once while a read
    /// lease is held.
    fn start_sync(&self, done: zodb_storage::SyncDone) -> Result<(), zodb_storage::SyncDone> {
        if self.shared.lease.held() {
            done(Ok(()));
            return Ok(());
        }
        self.shared.sync_gate.sync_then(done);
        Ok(())
    }

    fn waits_on_network(&self) -> bool {
        true
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
}
