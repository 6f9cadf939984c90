//! The client's object cache: object revisions `(oid, start, end, data)` bounded by a
//! byte budget, evicting the least recently used, plus the tid the cache is valid up to.
//!
//! This is the in-memory equivalent of Python's `ZEO.cache.ClientCache` (which persists
//! to a `.zec` file; ours need not).  A revision is *current* when its `end` is `None`:
//! the newest one the client knows of.  An `invalidateTransaction(tid, oids)` (or our own
//! commit at `tid`) ends the current revision of each oid at `tid`; a revision with an
//! end is history and never changes again, so it stays valid forever.
//!
//! `load_before(oid, before)` can be answered from the cache when the cached revision
//! with the greatest `start < before` either is current or ends at or after `before`
//! (revisions of one object are contiguous, so no other cached revision can be the
//! answer).
//!
//! Written here rather than with a crate such as `lru` or `quick_cache`: the lookups need
//! an ordered per-object index (greatest start below a tid) and in-place updates of
//! `end`, which a key→value LRU map does not give, so a crate would only replace the
//! recency list (a `BTreeMap` of ticks here) — and the crate's manifest is not ours to
//! change in this piece of work.

use std::collections::{BTreeMap, HashMap};

use zodb_storage::{Oid, Revision, Tid};

use crate::limits::CLIENT_CACHE_ENTRY_OVERHEAD_BYTES;

#[derive(Debug)]
struct Entry {
    data: Vec<u8>,
    end: Option<Tid>,
    /// Recency: the key of this entry in `Cache::recency`.
    tick: u64,
}

impl Entry {
    fn cost(&self) -> usize {
        self.data
            .len()
            .saturating_add(CLIENT_CACHE_ENTRY_OVERHEAD_BYTES)
    }
}

/// Counters for monitoring and tests.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CacheStats {
    /// Loads answered from the cache.
    pub hits: u64,
    /// Loads that had to ask the server.
    pub misses: u64,
    /// Revisions held.
    pub entries: usize,
    /// Bytes held, counting a fixed overhead per revision.
    pub bytes: usize,
    /// Revisions evicted to stay within the budget.
    pub evictions: u64,
}

/// Size-bounded cache of object revisions (see the module doc).
#[derive(Debug)]
pub(crate) struct Cache {
    max_bytes: usize,
    /// Revisions by oid, then by start tid.
    objects: HashMap<Oid, BTreeMap<Tid, Entry>>,
    /// tick → (oid, start): least recently used first.
    recency: BTreeMap<u64, (Oid, Tid)>,
    next_tick: u64,
    stats: CacheStats,
    /// Every revision in the cache is known to be right as of this tid: the
    /// last transaction the client has heard of.
    last_tid: Tid,
}

impl Cache {
    pub(crate) fn new(max_bytes: usize) -> Cache {
        Cache {
            max_bytes,
            objects: HashMap::new(),
            recency: BTreeMap::new(),
            next_tick: 0,
            stats: CacheStats::default(),
            last_tid: Tid::ZERO,
        }
    }

    pub(crate) fn last_tid(&self) -> Tid {
        self.last_tid
    }

    /// Moves the cache's tid forward (never back).
    pub(crate) fn advance(&mut self, tid: Tid) {
        if tid > self.last_tid {
            self.last_tid = tid;
        }
    }

    /// Sets the cache's tid, e.g. after verifying against a server.
    pub(crate) fn set_last_tid(&mut self, tid: Tid) {
        self.last_tid = tid;
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.objects.is_empty()
    }

    pub(crate) fn stats(&self) -> CacheStats {
        self.stats
    }

    fn tick(&mut self) -> u64 {
        self.next_tick = self.next_tick.wrapping_add(1);
        self.next_tick
    }

    fn touch(&mut self, oid: Oid, start: Tid) {
        let tick = self.tick();
        if let Some(entry) = self
            .objects
            .get_mut(&oid)
            .and_then(|revs| revs.get_mut(&start))
        {
            self.recency.remove(&entry.tick);
            entry.tick = tick;
            self.recency.insert(tick, (oid, start));
        }
    }

    /// The revision of `oid` current just before `before`, if the cache can tell.
    pub(crate) fn load_before(&mut self, oid: Oid, before: Tid) -> Option<Revision> {
        let found = self.objects.get(&oid).and_then(|revs| {
            let (start, entry) = revs.range(..before).next_back()?;
            match entry.end {
                Some(end) if end < before => None,
                end => Some(Revision {
                    data: entry.data.clone(),
                    start: *start,
                    end,
                }),
            }
        });
        match &found {
            Some(rev) => {
                self.stats.hits += 1;
                self.touch(oid, rev.start);
            }
            None => self.stats.misses += 1,
        }
        found
    }

    /// Stores a revision the server returned (or that we committed).
    pub(crate) fn store(&mut self, oid: Oid, start: Tid, end: Option<Tid>, data: Vec<u8>) {
        if end.is_some_and(|e| e <= start) {
            return;
        }
        let cost = data.len().saturating_add(CLIENT_CACHE_ENTRY_OVERHEAD_BYTES);
        // One revision may take at most half the budget, so a huge object does not
        // flush everything else (and a zero budget disables the cache).
        if cost > self.max_bytes / 2 {
            self.remove(oid, start);
            return;
        }
        let mut end = end;
        if end.is_none() {
            // At most one current revision per object.
            let current = self.objects.get(&oid).and_then(|revs| {
                revs.iter()
                    .rev()
                    .find(|(_, e)| e.end.is_none())
                    .map(|(s, _)| *s)
            });
            match current {
                Some(s) if s < start => self.end_revision(oid, s, start),
                Some(s) if s > start => end = Some(s),
                _ => {}
            }
        }
        self.remove(oid, start);
        let tick = self.tick();
        let entry = Entry { data, end, tick };
        self.stats.bytes = self.stats.bytes.saturating_add(entry.cost());
        self.stats.entries += 1;
        self.objects.entry(oid).or_default().insert(start, entry);
        self.recency.insert(tick, (oid, start));
        self.evict();
    }

    fn end_revision(&mut self, oid: Oid, start: Tid, end: Tid) {
        if let Some(e) = self
            .objects
            .get_mut(&oid)
            .and_then(|revs| revs.get_mut(&start))
        {
            e.end = Some(end);
        }
    }

    fn remove(&mut self, oid: Oid, start: Tid) {
        let Some(revs) = self.objects.get_mut(&oid) else {
            return;
        };
        if let Some(entry) = revs.remove(&start) {
            self.recency.remove(&entry.tick);
            self.stats.bytes = self.stats.bytes.saturating_sub(entry.cost());
            self.stats.entries = self.stats.entries.saturating_sub(1);
        }
        if revs.is_empty() {
            self.objects.remove(&oid);
        }
    }

    fn evict(&mut self) {
        while self.stats.bytes > self.max_bytes {
            let Some((_, (oid, start))) = self.recency.pop_first() else {
                break;
            };
            self.remove(oid, start);
            self.stats.evictions += 1;
        }
    }

    /// `oid` changed in transaction `tid`: its current revision (if cached and older)
    /// ends there.
    pub(crate) fn invalidate(&mut self, oid: Oid, tid: Tid) {
        let current = self.objects.get(&oid).and_then(|revs| {
            revs.iter()
                .rev()
                .find(|(_, e)| e.end.is_none())
                .map(|(s, _)| *s)
        });
        match current {
            Some(start) if start < tid => self.end_revision(oid, start, tid),
            // A "current" revision not older than the change cannot be right.
            Some(start) => self.remove(oid, start),
            None => {}
        }
    }

    /// `oid` changed at some unknown tid (cache verification): forget its current
    /// revision; the ended ones stay valid.
    pub(crate) fn invalidate_unknown(&mut self, oid: Oid) {
        let current: Vec<Tid> = self
            .objects
            .get(&oid)
            .map(|revs| {
                revs.iter()
                    .filter(|(_, e)| e.end.is_none())
                    .map(|(s, _)| *s)
                    .collect()
            })
            .unwrap_or_default();
        for start in current {
            self.remove(oid, start);
        }
    }

    /// Forgets every revision (the server could not say what changed).
    pub(crate) fn clear(&mut self) {
        self.objects.clear();
        self.recency.clear();
        self.stats.bytes = 0;
        self.stats.entries = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rev(data: &[u8], start: u64, end: Option<u64>) -> Option<Revision> {
        Some(Revision {
            data: data.to_vec(),
            start: Tid(start),
            end: end.map(Tid),
        })
    }

    #[test]
    fn current_and_ended_revisions() {
        let mut c = Cache::new(1 << 20);
        let a = Oid(1);
        c.store(a, Tid(10), None, b"v1".to_vec());
        assert_eq!(c.load_before(a, Tid(11)), rev(b"v1", 10, None));
        assert_eq!(c.load_before(a, Tid::MAX), rev(b"v1", 10, None));
        assert_eq!(c.load_before(a, Tid(10)), None);
        c.invalidate(a, Tid(20));
        assert_eq!(c.load_before(a, Tid(20)), rev(b"v1", 10, Some(20)));
        assert_eq!(c.load_before(a, Tid(21)), None, "newer revision not cached");
        c.store(a, Tid(20), None, b"v2".to_vec());
        assert_eq!(c.load_before(a, Tid(21)), rev(b"v2", 20, None));
        assert_eq!(c.load_before(a, Tid(15)), rev(b"v1", 10, Some(20)));
        c.invalidate_unknown(a);
        assert_eq!(c.load_before(a, Tid::MAX), None);
        assert_eq!(c.load_before(a, Tid(15)), rev(b"v1", 10, Some(20)));
    }

    #[test]
    fn storing_a_newer_current_ends_the_older() {
        let mut c = Cache::new(1 << 20);
        let a = Oid(1);
        c.store(a, Tid(10), None, b"v1".to_vec());
        c.store(a, Tid(30), None, b"v3".to_vec());
        assert_eq!(c.load_before(a, Tid(30)), rev(b"v1", 10, Some(30)));
        // An older "current" arriving late is stored as history.
        c.store(a, Tid(20), None, b"v2".to_vec());
        assert_eq!(c.load_before(a, Tid(25)), rev(b"v2", 20, Some(30)));
        assert_eq!(c.load_before(a, Tid::MAX), rev(b"v3", 30, None));
    }

    #[test]
    fn evicts_least_recently_used_within_budget() {
        let per = 100 + CLIENT_CACHE_ENTRY_OVERHEAD_BYTES;
        let mut c = Cache::new(per * 3);
        for i in 1..=3 {
            c.store(Oid(i), Tid(1), None, vec![0; 100]);
        }
        assert!(c.load_before(Oid(1), Tid::MAX).is_some()); // 1 is now the newest
        c.store(Oid(4), Tid(1), None, vec![0; 100]);
        assert!(
            c.load_before(Oid(2), Tid::MAX).is_none(),
            "2 was the oldest"
        );
        assert!(c.load_before(Oid(1), Tid::MAX).is_some());
        let s = c.stats();
        assert_eq!((s.entries, s.bytes, s.evictions), (3, per * 3, 1));
        // Too big for the cache: not stored.
        c.store(Oid(5), Tid(1), None, vec![0; per * 2]);
        assert!(c.load_before(Oid(5), Tid::MAX).is_none());
        c.clear();
        assert!(c.is_empty());
        assert_eq!(c.stats().bytes, 0);
    }

    #[test]
    fn zero_budget_caches_nothing() {
        let mut c = Cache::new(0);
        c.store(Oid(1), Tid(1), None, b"x".to_vec());
        assert!(c.is_empty());
    }
}
