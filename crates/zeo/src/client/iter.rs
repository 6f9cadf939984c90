//! `Storage::iterator` over ZEO: a server-side transaction iterator walked lazily, one
//! transaction per `next()` (spec §3: `iterator_start`, `iterator_next`,
//! `iterator_record_start`, `iterator_record_next`, `iterator_gc`).
//!
//! Server iterators belong to a connection: when it is lost, `next()` fails with the
//! disconnected error and the iterator ends (Python marks them dead the same way).  An
//! iterator dropped before the end tells the server to forget it (`iterator_gc`).

use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::{Oid, StorageError, Tid, TransactionIter, TransactionRecord};

use super::Shared;

use super::connection::Connection;
use super::convert::{CallKind, bad_reply, call_error, reply_error};
use crate::wire::{self, Call, TxnHeader};

/// Iterates the transactions of one `iterator_start` (see the module doc).
pub(crate) struct RemoteIter {
    conn: Arc<Connection>,
    /// The server's iterator id while it has more to give.
    iid: Option<i64>,
    /// Tells whether the client has been closed.
    closed: Arc<dyn Fn() -> bool + Send + Sync>,
    /// How long a call waits for the server's answer (`ClientOptions::answer_wait`).
    wait: std::time::Duration,
}

impl std::fmt::Debug for RemoteIter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RemoteIter")
            .field("conn", &self.conn.id)
            .field("iid", &self.iid)
            .finish_non_exhaustive()
    }
}

fn int_of(method: &str, v: &Value) -> Result<i64, StorageError> {
    v.as_i64().ok_or_else(|| bad_reply(method, v))
}

impl RemoteIter {
    pub(crate) fn new(
        conn: Arc<Connection>,
        iid: i64,
        closed: Arc<dyn Fn() -> bool + Send + Sync>,
        wait: std::time::Duration,
    ) -> RemoteIter {
        RemoteIter {
            conn,
            iid: Some(iid),
            closed,
            wait,
        }
    }

    fn call(&self, call: Call) -> Result<Value, StorageError> {
        let method = call.method();
        self.conn
            .call_within(call, self.wait)
            .map_err(|e| call_error(method, CallKind::Read, None, e))
    }

    fn gc(&self, ids: Vec<i64>) {
        if !self.conn.is_dead() {
            // Best effort: a lost connection forgets its iterators anyway.
            let _ = self.conn.send_async([Call::IteratorGc { ids }]);
        }
    }

    fn next_transaction(&mut self, iid: i64) -> Result<Option<TransactionRecord>, StorageError> {
        let reply = self.call(Call::IteratorNext { id: iid })?;
        if reply == Value::None {
            // Exhausted: the server has freed it.
            self.iid = None;
            return Ok(None);
        }
        let header = TxnHeader::decode(&reply).map_err(reply_error)?;
        let rid = int_of(
            "iterator_record_start",
            &self.call(Call::IteratorRecordStart {
                id: iid,
                tid: Some(header.tid),
            })?,
        )?;
        let mut records = Vec::new();
        loop {
            let reply = match self.call(Call::IteratorRecordNext { id: rid }) {
                Ok(r) => r,
                Err(e) => {
                    self.gc(vec![rid]);
                    return Err(e);
                }
            };
            if reply == Value::None {
                break;
            }
            records.push(wire::read_data_record_reply(&reply).map_err(reply_error)?);
        }
        Ok(Some(TransactionRecord {
            tid: header.tid,
            status: header.status,
            user: header.user,
            description: header.description,
            extension: header.extension,
            records,
        }))
    }
}

impl Iterator for RemoteIter {
    type Item = Result<TransactionRecord, StorageError>;

    fn next(&mut self) -> Option<Self::Item> {
        let iid = self.iid?;
        if (self.closed)() {
            self.iid = None;
            return Some(Err(StorageError::Closed));
        }
        match self.next_transaction(iid) {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => None,
            Err(e) => {
                if let Some(iid) = self.iid.take() {
                    self.gc(vec![iid]);
                }
                Some(Err(e))
            }
        }
    }
}

impl Drop for RemoteIter {
    fn drop(&mut self) {
        if let Some(iid) = self.iid.take() {
            self.gc(vec![iid]);
        }
    }
}

impl Shared {
    /// The oids transaction `tid` changed, read with the iterator (for `undo`).
    pub(super) fn transaction_oids(self: &Arc<Self>, tid: Tid) -> Vec<Oid> {
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

    pub(super) fn iterator(
        self: &Arc<Self>,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Result<TransactionIter, StorageError> {
        self.check_open()?;
        let conn = self.wait_connection()?;
        let method = "iterator_start";
        let reply = conn
            .call_within(Call::IteratorStart { start, stop }, self.answer_wait())
            .map_err(|e| call_error(method, CallKind::Read, None, e))?;
        let iid = reply.as_i64().ok_or_else(|| bad_reply(method, &reply))?;
        let weak = Arc::downgrade(self);
        let closed = Arc::new(move || weak.upgrade().is_none_or(|s| s.is_closed()));
        Ok(Box::new(RemoteIter::new(
            conn,
            iid,
            closed,
            self.answer_wait(),
        )))
    }
}
