//! Two-phase commit over the wire, for [`ClientStorage`](super::ClientStorage): a
//! transaction buffered in `txn.rs` is sent at `vote` (taking the connection's one
//! transaction slot first), finished with `tpc_finish` (whose reply updates the cache on
//! the reader thread, see `events.rs`), or aborted.
//!
//! Conflicts the server leaves to the client (its vote result lists them) are not
//! resolved here but reported as `StorageError::Conflict`/`Conflicts`, and the server's
//! transaction is aborted before the slot goes.

use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::{Oid, StorageError, Tid, TxnHandle};

use super::Shared;
use super::connection::{CallError, Connection, Post};
use super::convert::{self, CallKind, bad_reply, call_error, disconnected};
use super::txn::{Phase, Txn};
use crate::wire::{Call, as_tid};

impl Shared {
    pub(super) fn txnid(id: u64) -> Value {
        Value::Int(i64::try_from(id).unwrap_or(i64::MAX))
    }

    /// Applies `f` to the open (buffering) transaction `txn`.
    pub(super) fn with_open_txn<T>(
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
        if !txn.blobs.is_empty() {
            self.send_blobs(&conn, txn, &txnid)
                .map_err(|e| (e, Some(Arc::clone(&conn))))?;
        }
        let reply = conn
            .call_or_close_within(
                Call::Vote { txn: txnid },
                Post::Nothing,
                self.options.commit_wait,
            )
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

    /// Hands the server the transaction's blob files (after their records' `storea`).
    fn send_blobs(&self, conn: &Connection, txn: &Txn, txnid: &Value) -> Result<(), StorageError> {
        let Some(blobs) = &self.blobs else {
            return Err(StorageError::Unsupported(
                "this ZEO client has no blob directory".into(),
            ));
        };
        let failed = Arc::new(std::sync::atomic::AtomicBool::new(false));
        for (oid, staged) in &txn.blobs {
            let Some((serial, data)) = txn.store_of(*oid) else {
                continue;
            };
            let calls = blobs.store_calls(*oid, serial, data, staged, txnid.clone(), &failed)?;
            conn.send_async(calls)
                .map_err(|e| call_error("storeBlob", CallKind::Commit, Some(*oid), e))?;
            if failed.load(std::sync::atomic::Ordering::Acquire) {
                return Err(StorageError::Transaction(format!(
                    "reading blob file {} failed while uploading it",
                    staged.display()
                )));
            }
        }
        Ok(())
    }

    /// Tells the server to forget transaction `id` (best effort: a lost connection
    /// aborts it anyway).
    fn abort_on_server(&self, conn: &Connection, id: u64) {
        if !conn.is_dead() {
            let txn = Some(Self::txnid(id));
            // As long as a vote may take: the abort waits for the server to let go of
            // the transaction's locks.
            let _ = conn.call_or_close_within(
                Call::TpcAbort { txn },
                Post::Nothing,
                self.options.commit_wait,
            );
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

    pub(super) fn vote(&self, txn: &TxnHandle) -> Result<(), StorageError> {
        let s = self;
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
                    s.abort_on_server(&conn, id);
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

    pub(super) fn finish(&self, txn: &TxnHandle) -> Result<Tid, StorageError> {
        let s = self;
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
        let (conn, update, stored_blobs) = {
            let mut t = s.txns.lock();
            let Some(e) = t.open.get_mut(&id) else {
                return Err(unknown_txn(txn));
            };
            match std::mem::replace(&mut e.phase, Phase::Busy) {
                Phase::Voted { conn, changed } => {
                    let update = e.finish_update(changed);
                    (conn, update, std::mem::take(&mut e.blobs))
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
        let result = conn.call_or_close_within(
            Call::TpcFinish { txn },
            Post::Finish(update),
            s.options.commit_wait,
        );
        if matches!(result, Err(CallError::Remote(_))) {
            s.abort_on_server(&conn, id);
        }
        s.release_slot(id, true);
        let tid = result
            .map_err(|e| call_error("tpc_finish", CallKind::Commit, None, e))
            .and_then(|reply| as_tid(&reply).ok_or_else(|| bad_reply("tpc_finish", &reply)));
        for (oid, staged) in stored_blobs {
            match (&tid, &s.blobs) {
                (Ok(tid), Some(blobs)) => blobs.committed(oid, *tid, &staged),
                _ => zodb_storage::blob::BlobDir::discard(&staged),
            }
        }
        tid
    }

    pub(super) fn abort(&self, txn: &TxnHandle) {
        let s = self;
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
        s.abort_on_server(&conn, id);
        s.release_slot(id, true);
    }
}

/// A successful vote: the connection holding the server's transaction, and the oids the
/// vote reported changed.
type Voted = (Arc<Connection>, Vec<Oid>);

/// A failed vote, and the connection to abort the server's transaction on (if it got
/// that far).
type VoteFailure = (StorageError, Option<Arc<Connection>>);

pub(super) fn unknown_txn(txn: &TxnHandle) -> StorageError {
    StorageError::Transaction(format!("{txn:?} is not an open transaction of this client"))
}
