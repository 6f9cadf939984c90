//! The write side of a commit: what a voted transaction will write, and the
//! group commit that writes it.
//!
//! `vote` locks the transaction's objects, checks its serials and computes
//! its records ([`Prepared`]), but writes nothing: the tid and every file
//! position are chosen when the transaction is written. `finish` hands the
//! prepared transaction to [`CommitQueue`]: the first finisher to arrive
//! becomes the writer and writes everything queued meanwhile as one batch —
//! each transaction with status `'c'`, then the status flips, then one
//! `fdatasync` for the whole batch — and only then publishes the batch,
//! reports it to the storage's listeners and answers every finisher.
//! Concurrent committers thus share an fsync, but none is answered before its
//! bytes are durable. There is at most one writer at a time (the `writing`
//! flag), which is what keeps the listeners' reports in tid order.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::storage::TransactionMeta;

/// What one record of a prepared transaction holds.
#[derive(Debug, Clone)]
pub enum Payload {
    Data(Vec<u8>),
    /// Reuse the data of the record at this position (undo, restore), or,
    /// with 0, delete the object.
    Back(u64),
}

/// A voted transaction, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    pub meta: TransactionMeta,
    /// In file order; an oid may appear more than once (the last one is
    /// the current record).
    pub records: Vec<(Oid, Payload)>,
}

/// The outcome slot of one finisher.
#[derive(Debug, Default)]
pub struct Slot {
    result: Mutex<Option<Result<Tid>>>,
}

impl Slot {
    pub fn set(&self, r: Result<Tid>) {
        *self.result.lock() = Some(r);
    }

    fn take(&self) -> Option<Result<Tid>> {
        self.result.lock().take()
    }
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<(Arc<Prepared>, Arc<Slot>)>,
    /// A finisher is writing batches.
    writing: bool,
}

/// Finishers queue here; one of them writes for all.
#[derive(Debug, Default)]
pub struct CommitQueue {
    queue: Mutex<Queue>,
    done: Condvar,
}

impl CommitQueue {
    /// Commits `prepared` through `write_batch` (called by whichever
    /// finisher is the writer, with the batch it takes), and returns this
    /// transaction's tid once it is durable and visible.
    pub fn commit(
        &self,
        prepared: Arc<Prepared>,
        write_batch: impl Fn(&[(Arc<Prepared>, Arc<Slot>)]),
    ) -> Result<Tid> {
        let slot = Arc::new(Slot::default());
        let mut q = self.queue.lock();
        q.entries.push((prepared, Arc::clone(&slot)));
        if q.writing {
            loop {
                self.done.wait(&mut q);
                if let Some(r) = slot.take() {
                    return r;
                }
                if !q.writing {
                    // The writer left before reaching us: take over.
                    break;
                }
            }
        }
        q.writing = true;
        loop {
            let batch = std::mem::take(&mut q.entries);
            if batch.is_empty() {
                q.writing = false;
                break;
            }
            drop(q);
            write_batch(&batch);
            q = self.queue.lock();
            self.done.notify_all();
        }
        drop(q);
        self.done.notify_all();
        slot.take()
            .unwrap_or_else(|| Err(StorageError::Transaction("commit lost its result".into())))
    }
}

/// Keeps a pack's file switch apart from voted transactions, whose records
/// may point at positions of the file being replaced.
#[derive(Debug, Default)]
pub struct PackGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    voted: usize,
    switching: bool,
}

impl PackGate {
    /// A transaction is about to vote: waits while a pack switches files.
    pub fn enter(&self) {
        let mut s = self.state.lock();
        while s.switching {
            self.changed.wait(&mut s);
        }
        s.voted += 1;
    }

    /// A voted transaction finished or aborted.
    pub fn leave(&self) {
        let mut s = self.state.lock();
        s.voted = s.voted.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Stops new votes and waits until none is pending; `open` lets them on.
    pub fn close_for_switch(&self) {
        let mut s = self.state.lock();
        s.switching = true;
        while s.voted > 0 {
            self.changed.wait(&mut s);
        }
    }

    pub fn open(&self) {
        self.state.lock().switching = false;
        self.changed.notify_all();
    }
}
