//! The storage's cache of current object states, shared by every connection
//! of the process (RelStorage's local client cache plays this part): a load
//! it answers costs no round trip to PostgreSQL.
//!
//! An entry is an object's current revision as of the storage's newest poll
//! (`as_of`): its data and start tid. The poll that reports a commit of an
//! object removes its entry before it advances `as_of`, so an entry present
//! has not been replaced by any commit up to `as_of`, and it answers a
//! `load_before(oid, before)` exactly when `start < before <= as_of + 1`
//! (later `before`s go to the database, which may know newer commits).
//!
//! A load that missed is put in only if it found the current revision and no
//! poll removed anything while it was in flight (the `epoch` it read before
//! asking the database is still the cache's): otherwise a commit reported
//! meanwhile could be the one that replaced what it read.
//!
//! Bounded by bytes ([`CACHE_BYTES_DEFAULT`], or `with_cache_bytes`), least
//! recently used out first.

use std::sync::atomic::{AtomicU64, Ordering};

use lru::LruCache;
use parking_lot::Mutex;
use zodb_storage::{Oid, Revision, Tid};

use crate::limits::CACHE_ENTRY_OVERHEAD_BYTES;

#[derive(Debug)]
pub(crate) struct StateCache {
    entries: Mutex<Entries>,
    /// Bumped by each poll that removes entries (and by `clear`).
    epoch: AtomicU64,
    /// The newest tid every commit up to which has been applied here.
    as_of: AtomicU64,
}

#[derive(Debug)]
struct Entries {
    map: LruCache<Oid, (Tid, Vec<u8>)>,
    bytes: usize,
    max_bytes: usize,
}

fn cost(data: &[u8]) -> usize {
    data.len() + CACHE_ENTRY_OVERHEAD_BYTES
}

impl StateCache {
    pub(crate) fn new(max_bytes: usize) -> StateCache {
        StateCache {
            entries: Mutex::new(Entries {
                map: LruCache::unbounded(),
                bytes: 0,
                max_bytes,
            }),
            epoch: AtomicU64::new(0),
            as_of: AtomicU64::new(0),
        }
    }

    pub(crate) fn set_max_bytes(&self, max_bytes: usize) {
        let mut e = self.entries.lock();
        e.max_bytes = max_bytes;
        e.shrink();
    }

    /// What a load that misses reads first, to hand to [`StateCache::put`].
    pub(crate) fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Acquire)
    }

    /// The revision of `oid` current before `before`, if the cache knows it.
    pub(crate) fn get(&self, oid: Oid, before: Tid) -> Option<Revision> {
        let mut e = self.entries.lock();
        if before.0 > self.as_of.load(Ordering::Acquire).saturating_add(1) {
            return None;
        }
        let (start, data) = e.map.get(&oid)?;
        (*start < before).then(|| Revision {
            data: data.clone(),
            start: *start,
            end: None,
        })
    }

    /// Keeps `rev`, read from the database after [`StateCache::epoch`] said
    /// `epoch`, when it was the current revision and nothing was removed since.
    pub(crate) fn put(&self, oid: Oid, rev: &Revision, epoch: u64) {
        if rev.end.is_some() {
            return;
        }
        let mut e = self.entries.lock();
        if self.epoch.load(Ordering::Acquire) != epoch || cost(&rev.data) > e.max_bytes / 4 {
            return;
        }
        if let Some((_, old)) = e.map.put(oid, (rev.start, rev.data.clone())) {
            e.bytes -= cost(&old);
        }
        e.bytes += cost(&rev.data);
        e.shrink();
    }

    /// A poll's report: `oids` were committed at `tid`. Called before anyone
    /// is told of the commit.
    pub(crate) fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut e = self.entries.lock();
        for oid in oids {
            if let Some((_, old)) = e.map.pop(oid) {
                e.bytes -= cost(&old);
            }
        }
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.as_of.fetch_max(tid.0, Ordering::AcqRel);
    }

    /// Everything goes (a poll too far behind to say what changed), and the
    /// cache is current as of `tid`.
    pub(crate) fn clear(&self, tid: Tid) {
        let mut e = self.entries.lock();
        e.map.clear();
        e.bytes = 0;
        self.epoch.fetch_add(1, Ordering::AcqRel);
        self.as_of.fetch_max(tid.0, Ordering::AcqRel);
    }

    /// The newest tid every commit up to which has been applied here (the
    /// storage's newest poll).
    pub(crate) fn as_of(&self) -> u64 {
        self.as_of.load(Ordering::Acquire)
    }

    /// The newest tid applied (at open: the newest tid then).
    pub(crate) fn start_at(&self, tid: Tid) {
        self.as_of.fetch_max(tid.0, Ordering::AcqRel);
    }
}

impl Entries {
    fn shrink(&mut self) {
        while self.bytes > self.max_bytes {
            match self.map.pop_lru() {
                Some((_, (_, data))) => self.bytes -= cost(&data),
                None => break,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(start: u64, data: &[u8]) -> Revision {
        Revision {
            data: data.to_vec(),
            start: Tid(start),
            end: None,
        }
    }

    #[test]
    fn an_entry_answers_between_its_start_and_the_newest_poll() {
        let c = StateCache::new(1 << 20);
        c.start_at(Tid(10));
        c.put(Oid(1), &rev(5, b"a"), c.epoch());
        assert_eq!(c.get(Oid(1), Tid(11)).unwrap().data, b"a");
        assert!(c.get(Oid(1), Tid(5)).is_none(), "not before its start");
        assert!(c.get(Oid(1), Tid(12)).is_none(), "not past what was polled");
        // A commit of the object removes it; of another, not.
        c.committed(Tid(12), &[Oid(2)]);
        assert!(c.get(Oid(1), Tid(13)).is_some());
        c.committed(Tid(13), &[Oid(1)]);
        assert!(c.get(Oid(1), Tid(11)).is_none());
    }

    #[test]
    fn a_read_overtaken_by_a_poll_or_not_current_is_not_kept() {
        let c = StateCache::new(1 << 20);
        c.start_at(Tid(10));
        let epoch = c.epoch();
        c.committed(Tid(11), &[Oid(7)]);
        c.put(Oid(1), &rev(5, b"a"), epoch);
        assert!(c.get(Oid(1), Tid(11)).is_none());
        let mut old = rev(5, b"a");
        old.end = Some(Tid(9));
        c.put(Oid(1), &old, c.epoch());
        assert!(c.get(Oid(1), Tid(8)).is_none());
    }

    #[test]
    fn the_bytes_stay_under_the_bound() {
        let c = StateCache::new(4 * (100 + CACHE_ENTRY_OVERHEAD_BYTES));
        c.start_at(Tid(10));
        for i in 0..10 {
            c.put(Oid(i), &rev(5, &[0; 100]), c.epoch());
        }
        let e = c.entries.lock();
        assert_eq!(e.map.len(), 4);
        assert!(e.bytes <= e.max_bytes);
        assert!(e.map.contains(&Oid(9)) && !e.map.contains(&Oid(0)));
    }
}
