//! What a database knows of the storage's commits: the newest tid (the snapshot new
//! transactions read at) and the oids changed by recent transactions (what connections
//! must drop from their caches before reading at a newer snapshot).
//!
//! The snapshot is defined by the notification stream, never by asking the storage for
//! its last tid: a transaction is visible to a new snapshot only after its invalidations
//! are in the log, so a connection can never read at tid T with an object of T still
//! cached in its old version (ZODB's `MVCCAdapter` works the same way).

use std::collections::VecDeque;

use parking_lot::{Condvar, Mutex};
use zodb_storage::{InvalidationListener, Oid, Tid};

use crate::limits;

#[derive(Debug, Default)]
pub(crate) struct Mvcc {
    inner: Mutex<Log>,
    /// Told of every commit and reset, for [`Mvcc::wait_for`].
    heard: Condvar,
}

#[derive(Debug, Default)]
struct Log {
    /// Newest committed tid reported.
    last: Tid,
    /// Bumped by every reset: a connection that synced in an older generation drops its
    /// whole cache.
    generation: u64,
    /// Recent transactions, oldest first, tids increasing.
    entries: VecDeque<(Tid, Vec<Oid>)>,
    /// Oids held in `entries` (the log's size).
    oids: usize,
    /// Transactions up to this tid have been dropped from the log.
    horizon: Tid,
}

/// Where a connection stands: the snapshot its cache is valid for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SyncPoint {
    pub tid: Tid,
    pub generation: u64,
}

/// What a connection must do to move to a new snapshot.
#[derive(Debug)]
pub(crate) struct Poll {
    /// The new snapshot: read everything as of this tid.
    pub snapshot: SyncPoint,
    /// Oids to drop from the cache, with the tid of the change; `None`: drop everything.
    pub changed: Option<Vec<(Tid, Oid)>>,
}

impl Mvcc {
    /// Starts from the storage's last tid (read after the listener was registered, so no
    /// commit falls between).
    pub(crate) fn start(&self, last: Tid) {
        let mut log = self.inner.lock();
        if last > log.last {
            log.last = last;
        }
        log.horizon = log.horizon.max(last);
    }

    pub(crate) fn current(&self) -> SyncPoint {
        let log = self.inner.lock();
        SyncPoint {
            tid: log.last,
            generation: log.generation,
        }
    }

    /// Waits until the newest snapshot includes `tid` (or a reset came), at most until
    /// `deadline`; true if it does.
    pub(crate) fn wait_for(&self, tid: Tid, deadline: std::time::Instant) -> bool {
        let mut log = self.inner.lock();
        let generation = log.generation;
        while log.last < tid && log.generation == generation {
            if self.heard.wait_until(&mut log, deadline).timed_out() {
                return log.last >= tid;
            }
        }
        true
    }

    /// The changes between `from` and the newest snapshot.
    pub(crate) fn poll(&self, from: SyncPoint) -> Poll {
        let log = self.inner.lock();
        let snapshot = SyncPoint {
            tid: log.last,
            generation: log.generation,
        };
        if from.generation != log.generation || from.tid < log.horizon {
            return Poll {
                snapshot,
                changed: None,
            };
        }
        let mut changed = Vec::new();
        // Entries are in tid order: walk back from the newest to the first one already seen.
        for (tid, oids) in log.entries.iter().rev() {
            if *tid <= from.tid {
                break;
            }
            changed.extend(oids.iter().map(|oid| (*tid, *oid)));
        }
        Poll {
            snapshot,
            changed: Some(changed),
        }
    }
}

impl InvalidationListener for Mvcc {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut log = self.inner.lock();
        if tid <= log.horizon {
            // Reported before this database started reading (the registration race of
            // `start`): every connection's snapshot already includes it.
            return;
        }
        log.entries.push_back((tid, oids.to_vec()));
        log.oids += oids.len();
        if tid > log.last {
            log.last = tid;
        }
        while log.oids > limits::INVALIDATION_LOG_OIDS_MAX && log.entries.len() > 1 {
            if let Some((old, oids)) = log.entries.pop_front() {
                log.oids -= oids.len();
                log.horizon = old;
            }
        }
        drop(log);
        self.heard.notify_all();
    }

    fn reset(&self, last: Tid) {
        let mut log = self.inner.lock();
        log.generation += 1;
        log.entries.clear();
        log.oids = 0;
        if last > log.last {
            log.last = last;
        }
        log.horizon = log.last;
        drop(log);
        self.heard.notify_all();
    }
}
