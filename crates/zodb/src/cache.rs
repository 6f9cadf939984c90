//! A connection's object cache: clean objects, least recently used first out (with a
//! second chance: see [`ObjectCache::get`]), bounded by object count and by the size
//! of the records they came from.
//!
//! Only clean objects live here.  An object being changed moves to the transaction's
//! dirty set and comes back (with its new serial) only after its commit, so eviction can
//! never lose a change.

use std::any::Any;
use std::cell::Cell;
use std::sync::Arc;

use lru::LruCache;
use rustc_hash::FxBuildHasher;
use zodb_storage::{Oid, Tid};

/// A type-erased persistent object.
pub(crate) type Obj = Arc<dyn Any + Send + Sync>;

#[derive(Clone)]
pub(crate) struct Entry {
    pub obj: Obj,
    /// The tid of the revision the object was read from (or written as).
    pub serial: Tid,
    /// Bytes of that revision's record (the cache's size measure).
    pub size: usize,
    /// The class (module, name) of the object, for error messages.
    pub class: (&'static str, &'static str),
    /// Read since the entry last came to the front of the order.
    pub used: Cell<bool>,
}

impl Entry {
    pub(crate) fn new(
        obj: Obj,
        serial: Tid,
        size: usize,
        class: (&'static str, &'static str),
    ) -> Entry {
        Entry {
            obj,
            serial,
            size,
            class,
            used: Cell::new(false),
        }
    }
}

pub(crate) struct ObjectCache {
    /// Hashed with Fx, not SipHash: every read looks an oid up here, and oids are
    /// handed out by the storage (not chosen by whoever sends requests), so there is no
    /// hash flooding to resist; a SipHash of the key cost as much as the rest of the
    /// lookup.
    lru: LruCache<Oid, Entry, FxBuildHasher>,
    bytes: usize,
    objects_max: usize,
    bytes_max: usize,
}

impl std::fmt::Debug for ObjectCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObjectCache")
            .field("objects", &self.lru.len())
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl ObjectCache {
    pub(crate) fn new(objects_max: usize, bytes_max: usize) -> ObjectCache {
        ObjectCache {
            lru: LruCache::unbounded_with_hasher(FxBuildHasher),
            bytes: 0,
            objects_max: objects_max.max(1),
            bytes_max,
        }
    }

    /// The entry for `oid`, marked as used. A read only marks the entry (it takes
    /// `&self`, so a transaction can read while it lends another object out, see
    /// `Transaction::read`); eviction gives a marked entry a second chance (it goes
    /// to the front, unmarked), which keeps what is read in the cache as moving it to
    /// the front on each read would (the CLOCK approximation of LRU).
    pub(crate) fn get(&self, oid: Oid) -> Option<&Entry> {
        let entry = self.lru.peek(&oid)?;
        entry.used.set(true);
        Some(entry)
    }

    /// Adds or replaces an entry, then evicts the least recently used ones over the limits
    /// (never the entry just added).
    pub(crate) fn put(&mut self, oid: Oid, entry: Entry) {
        self.bytes += entry.size;
        if let Some(old) = self.lru.put(oid, entry) {
            self.bytes -= old.size;
        }
        // Each entry gets at most one second chance per eviction (its mark is cleared),
        // and the new one goes back each time it comes round, so this ends within a
        // few rounds of the entries.
        while self.lru.len() > 1
            && (self.lru.len() > self.objects_max || self.bytes > self.bytes_max)
        {
            match self.lru.pop_lru() {
                Some((old_oid, old)) if old_oid == oid || old.used.replace(false) => {
                    self.lru.push(old_oid, old);
                }
                Some((_, old)) => self.bytes -= old.size,
                None => break,
            }
        }
    }

    pub(crate) fn remove(&mut self, oid: Oid) -> Option<Entry> {
        let entry = self.lru.pop(&oid)?;
        self.bytes -= entry.size;
        Some(entry)
    }

    pub(crate) fn clear(&mut self) {
        self.lru.clear();
        self.bytes = 0;
    }

    pub(crate) fn len(&self) -> usize {
        self.lru.len()
    }

    pub(crate) fn bytes(&self) -> usize {
        self.bytes
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(size: usize) -> Entry {
        Entry::new(Arc::new(0u8), Tid::ZERO, size, ("m", "C"))
    }

    #[test]
    fn eviction_spares_what_was_read_since_and_keeps_the_bounds() {
        let mut cache = ObjectCache::new(3, usize::MAX);
        for n in 1..=3 {
            cache.put(Oid(n), entry(1));
        }
        // 1 is the oldest, but read: 2 goes instead.
        assert!(cache.get(Oid(1)).is_some());
        cache.put(Oid(4), entry(1));
        assert_eq!(cache.len(), 3);
        assert!(cache.get(Oid(2)).is_none());
        assert!(cache.get(Oid(1)).is_some());
        // Everything read: each gets one more chance, then the oldest goes.
        for n in [1, 3, 4] {
            assert!(cache.get(Oid(n)).is_some());
        }
        cache.put(Oid(5), entry(1));
        assert_eq!(cache.len(), 3);
        // Bytes bound the same way.
        let mut cache = ObjectCache::new(100, 10);
        for n in 1..=5 {
            cache.put(Oid(n), entry(4));
            assert!(cache.get(Oid(n)).is_some());
        }
        assert!(cache.bytes() <= 10 && cache.len() == 2, "{cache:?}");
    }
}
