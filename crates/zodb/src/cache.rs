//! A connection's object cache: clean objects, least recently used first out, bounded by
//! object count and by the size of the records they came from.
//!
//! Only clean objects live here.  An object being changed moves to the transaction's
//! dirty set and comes back (with its new serial) only after its commit, so eviction can
//! never lose a change.

use std::any::Any;
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

    /// The entry for `oid`, marked as just used.
    pub(crate) fn get(&mut self, oid: Oid) -> Option<&Entry> {
        self.lru.get(&oid)
    }

    /// Adds or replaces an entry, then evicts the least recently used ones over the limits
    /// (never the entry just added).
    pub(crate) fn put(&mut self, oid: Oid, entry: Entry) {
        self.bytes += entry.size;
        if let Some(old) = self.lru.put(oid, entry) {
            self.bytes -= old.size;
        }
        while self.lru.len() > 1
            && (self.lru.len() > self.objects_max || self.bytes > self.bytes_max)
        {
            match self.lru.pop_lru() {
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
