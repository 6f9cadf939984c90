//! A transaction's life in a `MemoryStorage`: `tpc_begin`, the operations it buffers
//! (`store`, `delete_object`, `check_current_serial`, `undo`), the vote that takes the
//! FIFO commit lock and replays them against the committed state ([`Voted`]), `finish`
//! publishing the revisions and telling the listeners, and `abort`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use parking_lot::Mutex;

use super::{MemoryStorage, Rev, Txn, check_meta_field, unknown_handle};
use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::limits;
use crate::storage::{TransactionMeta, TxnHandle, TxnStatus};
use crate::txn_op::TxnOp;

/// One buffered operation of an open transaction, replayed at vote: the shared
/// [`TxnOp`], its data shared with the revision it becomes.  (This storage has no
/// `restore`, so it never buffers one.)
type Op = TxnOp<Arc<Vec<u8>>>;

/// What a successful vote computed: the tid and the revisions to publish.
#[derive(Debug)]
struct Voted {
    tid: Tid,
    records: Vec<(Oid, Rev)>,
}

#[derive(Debug)]
pub(super) struct Pending {
    meta: TransactionMeta,
    ops: Vec<Op>,
    voted: Option<Voted>,
    /// Set by abort and finish; a vote that was waiting then gives up.
    done: bool,
}

/// The revisions one transaction writes, in first-written order; a later
/// write of the same oid replaces the earlier one.
#[derive(Debug, Default)]
pub(super) struct TxnWrites {
    order: Vec<Oid>,
    pub(super) revs: HashMap<Oid, Rev>,
}

impl TxnWrites {
    fn put(&mut self, oid: Oid, rev: Rev) {
        if self.revs.insert(oid, rev).is_none() {
            self.order.push(oid);
        }
    }

    fn into_records(mut self, tid: Tid) -> Vec<(Oid, Rev)> {
        self.order
            .into_iter()
            .filter_map(|oid| {
                self.revs.remove(&oid).map(|mut rev| {
                    rev.tid = tid;
                    (oid, rev)
                })
            })
            .collect()
    }
}

impl MemoryStorage {
    fn pending(&self, txn: &TxnHandle) -> Result<Arc<Mutex<Pending>>> {
        self.pending
            .lock()
            .get(&txn.id())
            .cloned()
            .ok_or_else(|| unknown_handle(txn))
    }

    /// Runs `f` on an open, not yet voted transaction.
    fn with_unvoted<T>(&self, txn: &TxnHandle, f: impl FnOnce(&mut Pending) -> T) -> Result<T> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let mut p = pending.lock();
        if p.done {
            return Err(unknown_handle(txn));
        }
        if p.voted.is_some() {
            return Err(StorageError::Transaction(format!(
                "{txn:?} has already voted; no more changes"
            )));
        }
        Ok(f(&mut p))
    }

    /// Waits for the commit lock and takes it for `id`.
    fn acquire_commit_lock(&self, id: u64) -> Result<()> {
        self.check_open()?;
        self.commit_lock.acquire(id, None)
    }

    /// Releases the commit lock if `id` holds it.
    fn release_commit_lock(&self, id: u64) {
        self.commit_lock.release(id);
    }

    /// Replays the transaction's operations against the committed state
    /// (the caller holds the commit lock, so nothing commits meanwhile) and
    /// chooses the tid.
    fn prepare(&self, p: &Pending) -> Result<Voted> {
        let mut writes = TxnWrites::default();
        let mut conflicts = Vec::new();
        for op in &p.ops {
            match op {
                Op::Store {
                    oid,
                    serial: expected,
                    data,
                } => {
                    match self.check_serial(*oid, *expected) {
                        Err(StorageError::Conflict(c)) => conflicts.push(c),
                        other => other?,
                    }
                    writes.put(*oid, Rev::pending(Some(Arc::clone(data)), None));
                }
                Op::Delete {
                    oid,
                    serial: expected,
                } => {
                    self.check_delete(*oid, *expected)?;
                    writes.put(*oid, Rev::pending(None, None));
                }
                Op::Check {
                    oid,
                    serial: expected,
                } => self.check_read_serial(*oid, *expected)?,
                Op::Undo(tid) => {
                    for (oid, rev) in self.undo_records(*tid, &writes)? {
                        writes.put(oid, rev);
                    }
                }
                Op::Restore { .. } => {
                    return Err(StorageError::Unsupported(
                        "restore in a MemoryStorage".into(),
                    ));
                }
            }
        }
        if !conflicts.is_empty() {
            return Err(StorageError::from_conflicts(conflicts));
        }
        let floor = self
            .state
            .read()
            .last_tid
            .max(self.lower.last_transaction());
        let tid = match p.meta.tid {
            Some(tid) if tid > floor => {
                self.clock.lock().observe(tid);
                tid
            }
            Some(tid) => {
                return Err(StorageError::Transaction(format!(
                    "the given tid {tid} is not later than the last transaction {floor}"
                )));
            }
            None => {
                let mut clock = self.clock.lock();
                clock.observe(floor);
                clock.next_tid()
            }
        };
        Ok(Voted {
            tid,
            records: writes.into_records(tid),
        })
    }

    pub(super) fn begin_txn(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        self.check_open()?;
        check_meta_field("user", &meta.user)?;
        check_meta_field("description", &meta.description)?;
        check_meta_field("extension", &meta.extension)?;
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let pending = Pending {
            meta,
            ops: Vec::new(),
            voted: None,
            done: false,
        };
        self.pending
            .lock()
            .insert(id, Arc::new(Mutex::new(pending)));
        Ok(TxnHandle::new(id))
    }

    pub(super) fn store_txn(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
    ) -> Result<()> {
        if data.len() as u64 > limits::RECORD_SIZE_MAX {
            return Err(StorageError::Limit(format!(
                "object {oid}: a record of {} bytes is over the limit of {}",
                data.len(),
                limits::RECORD_SIZE_MAX
            )));
        }
        self.with_unvoted(txn, |_| ())?;
        self.check_serial(oid, expected)?;
        {
            let mut next = self.next_oid.lock();
            if oid.0 >= *next {
                *next = oid.0.saturating_add(1);
            }
        }
        self.with_unvoted(txn, |p| {
            p.ops.push(Op::Store {
                oid,
                serial: expected,
                data: Arc::new(data),
            });
        })
    }

    pub(super) fn delete_txn(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.with_unvoted(txn, |_| ())?;
        self.check_delete(oid, expected)?;
        self.with_unvoted(txn, |p| {
            p.ops.push(Op::Delete {
                oid,
                serial: expected,
            })
        })
    }

    pub(super) fn check_txn(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.with_unvoted(txn, |_| ())?;
        self.check_read_serial(oid, expected)?;
        self.with_unvoted(txn, |p| {
            p.ops.push(Op::Check {
                oid,
                serial: expected,
            })
        })
    }

    pub(super) fn undo_txn(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let p = pending.lock();
        if p.done || p.voted.is_some() {
            return Err(StorageError::Transaction(format!(
                "{txn:?} is not open for changes"
            )));
        }
        // Check now against what this transaction has written so far; the
        // records are computed again at vote, when later commits are known.
        let mut writes = TxnWrites::default();
        for op in &p.ops {
            match op {
                Op::Store { oid, data, .. } => {
                    writes.put(*oid, Rev::pending(Some(Arc::clone(data)), None))
                }
                Op::Delete { oid, .. } => writes.put(*oid, Rev::pending(None, None)),
                Op::Check { .. } | Op::Restore { .. } => {}
                Op::Undo(t) => {
                    for (oid, rev) in self.undo_records(*t, &writes)? {
                        writes.put(oid, rev);
                    }
                }
            }
        }
        let oids = self
            .undo_records(tid, &writes)?
            .into_iter()
            .map(|(oid, _)| oid)
            .collect();
        drop(p);
        self.with_unvoted(txn, |p| p.ops.push(Op::Undo(tid)))?;
        Ok(oids)
    }

    pub(super) fn vote_txn(&self, txn: &TxnHandle) -> Result<()> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        {
            let p = pending.lock();
            if p.done {
                return Err(unknown_handle(txn));
            }
            if p.voted.is_some() {
                return Ok(());
            }
        }
        let id = txn.id();
        self.acquire_commit_lock(id)?;
        let mut p = pending.lock();
        if p.done {
            // Aborted while we waited; abort released what it could.
            drop(p);
            self.release_commit_lock(id);
            return Err(unknown_handle(txn));
        }
        if p.voted.is_some() {
            return Ok(());
        }
        match self.prepare(&p) {
            Ok(voted) => {
                p.voted = Some(voted);
                Ok(())
            }
            Err(e) => {
                drop(p);
                self.release_commit_lock(id);
                Err(e)
            }
        }
    }

    pub(super) fn finish_txn(&self, txn: &TxnHandle) -> Result<Tid> {
        self.check_open()?;
        let pending = self.pending(txn)?;
        let voted_already = pending.lock().voted.is_some();
        if !voted_already {
            self.vote_txn(txn)?;
        }
        let mut p = pending.lock();
        let Some(voted) = p.voted.take() else {
            return Err(unknown_handle(txn));
        };
        let tid = voted.tid;
        // Every oid the transaction wrote, each once (the records are unique per oid).
        let reported: Option<Vec<Oid>> = (!self.listeners.is_empty())
            .then(|| voted.records.iter().map(|(oid, _)| *oid).collect());
        {
            let mut st = self.state.write();
            let txn_rec = Txn {
                status: TxnStatus::Committed,
                user: std::mem::take(&mut p.meta.user),
                description: std::mem::take(&mut p.meta.description),
                extension: std::mem::take(&mut p.meta.extension),
                oids: voted.records.iter().map(|(oid, _)| *oid).collect(),
            };
            for (oid, rev) in voted.records {
                st.objects.entry(oid).or_default().push(rev);
            }
            let added = st.txn_len(tid, &txn_rec) + 8;
            st.txns.insert(tid, txn_rec);
            st.last_tid = tid;
            st.size += added;
        }
        p.done = true;
        p.ops.clear();
        drop(p);
        self.pending.lock().remove(&txn.id());
        // Published (loads see it) and still holding the commit lock: the next
        // transaction, with a later tid, cannot be reported before this one.
        if let Some(oids) = reported {
            self.listeners.committed(tid, &oids);
        }
        self.release_commit_lock(txn.id());
        Ok(tid)
    }

    pub(super) fn abort_txn(&self, txn: &TxnHandle) {
        let removed = self.pending.lock().remove(&txn.id());
        if let Some(pending) = removed {
            let mut p = pending.lock();
            p.done = true;
            p.voted = None;
            p.ops.clear();
        }
        self.release_commit_lock(txn.id());
    }
}
