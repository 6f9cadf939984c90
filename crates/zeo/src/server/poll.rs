//! Commits the server did not make: a storage other processes write too (a
//! PostgreSQL database shared with RelStorage clients, other `bbru-zeo`s,
//! `bbru` instances) reports their commits to its listeners, and this
//! server must pass them on to its clients as invalidations.
//!
//! [`Foreign`] is the storage's listener: it only queues what it hears and
//! wakes the storage's poll task, because the storage reports from inside
//! its own `finish` (which the entry calls under its `commits` lock) as well
//! as from `sync` and its `LISTEN` task. Whoever holds the entry's `commits`
//! lock next announces the queue, in tid order: the poll task, or a
//! `finish`, which announces the commits older than its own before its own
//! (`StorageEntry::announce_foreign`). A commit of ours is queued too and
//! skipped: it is announced by `finish` with its reply.
//!
//! The poll task ([`run`]) calls `sync` every `poll interval` (RelStorage
//! clients send no notification: this is how their commits arrive) and
//! announces the queue whenever the listener wakes it (a notification
//! polled by the storage itself).

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::{Notify, watch};
use zodb_storage::{InvalidationListener, Oid, Tid};

use super::entry::StorageEntry;

/// What the storage reported, in its order.
#[derive(Debug)]
pub enum Event {
    Committed(Tid, Vec<Oid>),
    /// Reports were lost (the storage fell too far behind): clients must
    /// reconnect and verify their caches.
    Reset(Tid),
}

/// The listener of one shared storage.
#[derive(Debug, Default)]
pub struct Foreign {
    queue: Mutex<VecDeque<Event>>,
    wake: Notify,
}

impl Foreign {
    /// Takes the queued events older than `before` (a reset always).
    pub fn take_before(&self, before: Tid) -> Vec<Event> {
        let mut queue = self.queue.lock();
        let n = queue
            .iter()
            .position(|e| matches!(e, Event::Committed(t, _) if *t >= before))
            .unwrap_or(queue.len());
        queue.drain(..n).collect()
    }
}

impl InvalidationListener for Foreign {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        self.queue
            .lock()
            .push_back(Event::Committed(tid, oids.to_vec()));
        self.wake.notify_one();
    }

    fn reset(&self, last: Tid) {
        self.queue.lock().push_back(Event::Reset(last));
        self.wake.notify_one();
    }
}

/// Polls `entry`'s storage every `interval` and announces what others
/// committed, until the server shuts down.
pub async fn run(
    entry: Arc<StorageEntry>,
    foreign: Arc<Foreign>,
    interval: Duration,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut ticks = tokio::time::interval(interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        let poll = tokio::select! {
            _ = ticks.tick() => true,
            _ = foreign.wake.notified() => false,
            _ = shutdown.changed() => return,
        };
        let e = Arc::clone(&entry);
        // `sync` waits on the database, and the `commits` lock on a finish
        // that does: neither on an async worker.
        let done = tokio::task::spawn_blocking(move || {
            let polled = if poll { e.storage.sync() } else { Ok(()) };
            e.announce_foreign(Tid::MAX);
            polled
        });
        match done.await {
            Ok(Ok(())) => {}
            Ok(Err(err)) => tracing::warn!(storage = %entry.name, "polling for commits: {err}"),
            Err(err) => tracing::warn!(storage = %entry.name, "polling for commits: {err}"),
        }
    }
}
