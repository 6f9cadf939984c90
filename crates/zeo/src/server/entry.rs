//! One storage as the server serves it: the connections subscribed to its
//! invalidations, the recent transactions `getInvalidations` answers from,
//! and the one place where a commit is finished and announced.
//!
//! `finish` and the announcement happen under one lock (`commits`), so
//! invalidations leave in tid order, and `register` (subscribe + read the
//! last tid) cannot fall between a commit and its announcement.
//!
//! With read leases (`lease.rs`), `finish` acknowledges a commit only once every leased
//! client has confirmed its invalidation (or its lease ran out), still under that lock:
//! the committer's reply must not fall behind a later commit's invalidation.
//!
//! A storage other processes write too (`poll.rs`) has its foreign commits
//! announced under the same lock, and its last tid is the newest one
//! announced, not the storage's (which may know of commits not announced
//! yet): a client is never told of a tid before its invalidation.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use zodb_pickle::Value;
use zodb_storage::{InvalidationListener, Oid, Result, Storage, Tid, TxnHandle};

use super::lease::Leases;
use super::outbox::{Frame, Outbox, invalidation};
use super::poll::{Event, Foreign};
use crate::limits;
use crate::wire::{Callback, Encoding, Message};

#[derive(Debug)]
struct Recent {
    /// (tid, oids) of the newest transactions, oldest first.
    queue: VecDeque<(Tid, Vec<Oid>)>,
    /// Every transaction after this tid is in `queue`.
    covered_from: Tid,
    size_max: usize,
    /// The newest transaction announced (used for storages with foreign
    /// commits, whose own last tid may be ahead of it).
    announced: Tid,
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

impl Recent {
    /// Remembers an announced transaction for `getInvalidations`.
    fn push(&mut self, tid: Tid, oids: Vec<Oid>) {
        self.announced = self.announced.max(tid);
        self.queue.push_back((tid, oids));
        while self.queue.len() > self.size_max {
            if let Some((old, _)) = self.queue.pop_front() {
                self.covered_from = old;
            }
        }
    }
}

pub struct StorageEntry {
    pub name: String,
    pub storage: Arc<dyn Storage>,
    pub read_only: bool,
    commits: Mutex<Recent>,
    subscribers: Mutex<HashMap<u64, Arc<Outbox>>>,
    pub stats: Stats,
    /// The read leases of this storage's clients (none for a read-only storage or one
    /// other processes write: their commits cannot wait for our clients).
    pub leases: Leases,
    /// Other processes' commits reported by the storage (`poll.rs`); `None`
    /// for a storage only this server writes.
    foreign: Option<Arc<Foreign>>,
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
        lease: Option<std::time::Duration>,
        marker: Option<Arc<super::lease::Marker>>,
    ) -> StorageEntry {
        let last = storage.last_transaction();
        let read_only = read_only || storage.is_read_only();
        StorageEntry {
            name,
            read_only,
            storage,
            commits: Mutex::new(Recent {
                queue: VecDeque::new(),
                covered_from: last,
                size_max: queue_size,
                announced: last,
            }),
            subscribers: Mutex::new(HashMap::new()),
            stats: Stats::default(),
            leases: Leases::new(lease.filter(|_| !read_only), marker),
            foreign: None,
        }
    }

    /// This entry's storage is written by other processes too: listen to
    /// its reports of their commits, to announce them. Returns the listener
    /// (the poll task wakes on it).
    pub fn listen_for_foreign_commits(&mut self) -> Arc<Foreign> {
        let foreign = Arc::new(Foreign::default());
        let listener: Arc<dyn InvalidationListener> = foreign.clone();
        self.storage.add_listener(Arc::downgrade(&listener));
        // Read after listening: what commits in between is both queued and
        // at most this tid, and so skipped, or newer, and so announced.
        let last = self.storage.last_transaction();
        let recent = self.commits.get_mut();
        recent.covered_from = last;
        recent.announced = last;
        self.foreign = Some(Arc::clone(&foreign));
        self.leases = Leases::none();
        foreign
    }

    /// The last tid clients may be told of: under the `commits` lock.
    fn last(&self, recent: &Recent) -> Tid {
        if self.foreign.is_some() {
            recent.announced
        } else {
            self.storage.last_transaction()
        }
    }

    /// Announces the foreign commits the storage reported that are older
    /// than `before`, to every subscriber, in tid order.
    pub fn announce_foreign(&self, before: Tid) {
        let mut recent = self.commits.lock();
        self.announce_foreign_in(&mut recent, before);
    }

    fn announce_foreign_in(&self, recent: &mut Recent, before: Tid) {
        let Some(foreign) = &self.foreign else {
            return;
        };
        for event in foreign.take_before(before) {
            match event {
                // Ours (announced by `finish`), or announced already.
                Event::Committed(tid, _) if tid <= recent.announced => {}
                Event::Committed(tid, oids) => {
                    tracing::debug!(storage = %self.name, %tid, objects = oids.len(), "foreign commit");
                    self.invalidate_all(tid, &oids, None);
                    recent.push(tid, oids);
                }
                Event::Reset(last) => {
                    // Too much changed to say what: every client reconnects
                    // and verifies its cache (`getInvalidations` answers
                    // from the storage, or tells it to drop the cache).
                    tracing::warn!(storage = %self.name, %last, "lost track of foreign commits: disconnecting clients");
                    for sub in self.subscribers.lock().values() {
                        sub.disconnect();
                    }
                    recent.queue.clear();
                    recent.covered_from = last;
                    recent.announced = recent.announced.max(last);
                }
            }
        }
    }

    /// Subscribes `outbox` to invalidations and returns the last tid, as
    /// one step with respect to commits.
    pub fn register(&self, outbox: &Arc<Outbox>) -> Tid {
        let commits = self.commits.lock();
        let last = self.last(&commits);
        outbox.advance(last, None);
        self.subscribers
            .lock()
            .insert(outbox.id, Arc::clone(outbox));
        last
    }

    pub fn unregister(&self, id: u64) {
        self.subscribers.lock().remove(&id);
        self.leases.closed(id);
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

    /// Finishes the voted transaction `handle`, then, in this order: sends every other
    /// subscriber the invalidation, waits for the leased ones to confirm it
    /// (`Leases::wait_confirmed`), and sends the committer `info` and the reply carrying
    /// the tid.
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
        // Others' commits before ours are announced before ours.
        self.announce_foreign_in(&mut recent, tid);
        self.stats.commits.fetch_add(1, Ordering::Relaxed);
        tracing::info!(
            storage = %self.name,
            %tid,
            // Escaped (newlines, tabs, quotes, backslashes): a client's text cannot
            // forge a log line or a field.
            user = %String::from_utf8_lossy(who.user).escape_debug(),
            description = %String::from_utf8_lossy(who.description).escape_debug(),
            client = %who.peer,
            objects = oids.len(),
            "commit"
        );
        // Others hear of the commit before the committer's reply leaves, so
        // nothing the committer does next can reach another client ahead
        // of its invalidation.
        self.invalidate_all(tid, &oids, Some(committer.id));
        self.leases.wait_confirmed(tid, committer.id);
        committer.send(&self.info());
        committer.advance(
            tid,
            Some(&Message::reply(
                msgid,
                Value::Bytes(tid.to_bytes().to_vec()),
            )),
        );
        recent.push(tid, oids);
        Ok(tid)
    }

    /// Tells every subscriber but `except` that `tid` changed `oids`: one frame per
    /// encoding, shared by every client of it.
    fn invalidate_all(&self, tid: Tid, oids: &[Oid], except: Option<u64>) {
        let mut frames: [Option<Frame>; 2] = [None, None];
        for (id, sub) in self.subscribers.lock().iter() {
            if Some(*id) == except {
                continue;
            }
            let encoding = sub.encoding();
            let slot = match encoding {
                Encoding::Pickle => &mut frames[0],
                Encoding::Msgpack => &mut frames[1],
            };
            if slot.is_none() {
                *slot = invalidation(encoding, tid, oids);
            }
            if let Some(frame) = slot {
                sub.invalidate(tid, frame.clone());
            }
        }
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
        let last = self.last(&recent);
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
