//! One storage as the server serves it: the connections subscribed to its
//! invalidations, the recent transactions `getInvalidations` answers from,
//! and the one place where a commit is finished and announced.
//!
//! `finish` and the announcement happen under one lock (`commits`), so
//! invalidations leave in tid order, and `register` (subscribe + read the
//! last tid) cannot fall between a commit and its announcement.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use zodb_pickle::Value;
use zodb_storage::{Oid, Result, Storage, Tid, TxnHandle};

use super::outbox::{Frame, Outbox, invalidation};
use crate::limits;
use crate::wire::{Callback, Encoding, Message};

#[derive(Debug)]
struct Recent {
    /// (tid, oids) of the newest transactions, oldest first.
    queue: VecDeque<(Tid, Vec<Oid>)>,
    /// Every transaction after this tid is in `queue`.
    covered_from: Tid,
    size_max: usize,
}

/// Counters for `server_status` and the metrics.
#[derive(Debug, Default)]
pub struct Stats {
    pub loads: AtomicU64,
    pub stores: AtomicU64,
    pub commits: AtomicU64,
    pub aborts: AtomicU64,
    pub conflicts: AtomicU64,
}

pub struct StorageEntry {
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pub read_only: bool,
    commits: Mutex<Recent>,
    subscribers: Mutex<HashMap<u64, Arc<Outbox>>>,
    pub stats: Stats,
}

impl std::fmt::Debug for StorageEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StorageEntry")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

/// Who committed what, for the server log.
#[derive(Debug)]
pub struct CommitInfo<'a> {
    pub user: &'a [u8],
    pub description: &'a [u8],
    pub peer: &'a str,
}

impl StorageEntry {
    pub fn new(
        name: String,
        storage: Arc<dyn Storage>,
        read_only: bool,
        queue_size: usize,
    ) -> StorageEntry {
        let last = storage.last_transaction();
        StorageEntry {
            name,
            read_only: read_only || storage.is_read_only(),
            storage,
            commits: Mutex::new(Recent {
                queue: VecDeque::new(),
                covered_from: last,
                size_max: queue_size,
            }),
            subscribers: Mutex::new(HashMap::new()),
            stats: Stats::default(),
        }
    }

    /// Subscribes `outbox` to invalidations and returns the last tid, as
    /// one step with respect to commits.
    pub fn register(&self, outbox: &Arc<Outbox>) -> Tid {
        let _commits = self.commits.lock();
        let last = self.storage.last_transaction();
        outbox.advance(last, None);
        self.subscribers
            .lock()
            .insert(outbox.id, Arc::clone(outbox));
        last
    }

    pub fn unregister(&self, id: u64) {
        self.subscribers.lock().remove(&id);
    }

    pub fn connections(&self) -> usize {
        self.subscribers.lock().len()
    }

    /// The `info` callback: the storage's object count and size.
    pub fn info(&self) -> Message {
        Callback::Info {
            length: Some(self.storage.len() as i64),
            size: Some(self.storage.size().min(i64::MAX as u64) as i64),
        }
        .into_message()
    }

    /// Finishes the voted transaction `handle`, then, in this order: sends
    /// the committer `info` and the reply carrying the tid, and every other
    /// subscriber the invalidation.
    pub fn finish(
        &self,
        handle: &TxnHandle,
        committer: &Arc<Outbox>,
        msgid: Value,
        oids: Vec<Oid>,
        who: CommitInfo<'_>,
    ) -> Result<Tid> {
        let mut recent = self.commits.lock();
        let tid = self.storage.finish(handle)?;
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            storage = %self.name,
            %tid,
            user = %String::from_utf8_lossy(who.user),
            description = %String::from_utf8_lossy(who.description),
            client = %who.peer,
            objects = oids.len(),
            "commit"
        );
        // Others hear of the commit before the committer's reply leaves, so
        // nothing the committer does next can reach another client ahead
        // of its invalidation.
        // One frame per encoding, shared by every client of it.
        let mut frames: [Option<Frame>; 2] = [None, None];
        for (id, sub) in self.subscribers.lock().iter() {
            if *id != committer.id {
                let encoding = sub.encoding();
                let slot = match encoding {
                    Encoding::Pickle => &mut frames[0],
                    Encoding::Msgpack => &mut frames[1],
                };
                if slot.is_none() {
                    *slot = invalidation(encoding, tid, &oids);
                }
                if let Some(frame) = slot {
                    sub.invalidate(tid, frame.clone());
                }
            }
        }
        committer.send(&self.info());
        committer.advance(
            tid,
            Some(&Message::reply(
                msgid,
                Value::Bytes(tid.to_bytes().to_vec()),
            )),
        );
        recent.queue.push_back((tid, oids));
        while recent.queue.len() > recent.size_max {
            if let Some((old, _)) = recent.queue.pop_front() {
                recent.covered_from = old;
            }
        }
        Ok(tid)
    }

    /// Sends `info` to every subscriber (after a pack).
    pub fn broadcast_info(&self) {
        let msg = self.info();
        for sub in self.subscribers.lock().values() {
            sub.send(&msg);
        }
    }

    /// `getInvalidations(tid)`: the newest tid and every oid changed after
    /// `tid`, or `None` when that history is no longer at hand.
    pub fn invalidations_since(&self, tid: Tid) -> Result<Option<(Tid, Vec<Oid>)>> {
        let recent = self.commits.lock();
        let last = self.storage.last_transaction();
        let mut oids = Vec::new();
        if tid >= recent.covered_from {
            for (t, changed) in &recent.queue {
                if *t > tid {
                    oids.extend_from_slice(changed);
                }
            }
        } else {
            // Older than the queue: read the storage's transactions.
            let start = Tid(tid.0.saturating_add(1));
            for (n, txn) in self.storage.iterator(Some(start), Some(last))?.enumerate() {
                if n >= limits::INVALIDATION_SCAN_TRANSACTIONS_MAX {
                    return Ok(None);
                }
                oids.extend(txn?.records.iter().map(|r| r.oid));
            }
        }
        oids.sort();
        oids.dedup();
        Ok(Some((last, oids)))
    }
}
