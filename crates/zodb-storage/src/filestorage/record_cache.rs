//! [`RecordCache`]: records loads read lately, found by oid and position, so that reading
//! one again (an object every client reloads after a commit changed it, the same objects
//! loaded by several clients) costs no read of the file.
//!
//! The bytes at a position never change: a commit writes new records at new positions
//! and points the index there, and a pack, which rewrites the file, replaces the snapshot
//! this cache belongs to, cache included.  So an entry stays right for as long as it is
//! found by its (oid, position); the entries of records the index no longer points at
//! are never asked for again and give their room to others.
//!
//! Bounded whatever is read: one entry per slot, the slot chosen by the oid (a new record
//! takes the slot's place, so crafted oids can only evict each other), at most
//! [`limits::RECORD_CACHE_RECORD_BYTES_MAX`] per record and
//! [`limits::RECORD_CACHE_BYTES_MAX`] in all; the slots of a shard are allocated at its
//! first record.  Sharded so that concurrent loads rarely meet on a lock.

use parking_lot::Mutex;

use super::format::{DATA_HEADER_SIZE, DataHeader};
use crate::ids::{Oid, Tid};
use crate::limits;

const SHARDS: usize = 16;
const SLOTS_PER_SHARD: usize = limits::RECORD_CACHE_SLOTS / SHARDS;
const SHARD_BYTES_MAX: usize = limits::RECORD_CACHE_BYTES_MAX / SHARDS;

#[derive(Debug, Clone)]
struct Entry {
    oid: u64,
    pos: u64,
    serial: Tid,
    data: Box<[u8]>,
}

#[derive(Debug, Default)]
struct Shard {
    /// Boxed, so that an empty slot is a null pointer: the slots of a shard are then
    /// allocated zeroed, 8 bytes each, and the pages of slots never filled are never
    /// touched (a storage opened to read a few thousand objects would otherwise fault
    /// in megabytes of empty slots).
    slots: Vec<Option<Box<Entry>>>,
    bytes: usize,
}

#[derive(Debug, Default)]
pub(super) struct RecordCache {
    shards: [Mutex<Shard>; SHARDS],
    window: Mutex<Window>,
}

/// The file's bytes from one position on, read ahead at a sequential load: records
/// written together (the objects of one commit) are usually read together and in file
/// order, and one `pread` per record cost more than decoding it.  Python's FileStorage
/// reads through an 8 KiB buffer for the same reason.  Committed bytes never change, so
/// the window stays right for as long as this cache does (a pack replaces both).
#[derive(Debug, Default)]
struct Window {
    start: u64,
    bytes: Vec<u8>,
    /// Where the last record loaded through the window's bookkeeping ended: a load of
    /// the record that starts there is sequential.
    last_end: u64,
}

/// What the read-ahead window says about a load at a position.
#[derive(Debug)]
pub(super) enum WindowLookup {
    /// The window's bytes from the position: the record, or at least its header.
    Hit(Vec<u8>),
    /// Not in the window, but right after the last record loaded: read ahead.
    Sequential,
    Miss,
}

/// The shard and slot of `oid`: a multiplicative hash, so consecutive oids spread.
fn place(oid: u64) -> (usize, usize) {
    let h = oid.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    let slot = (h >> 32) as usize % SLOTS_PER_SHARD;
    ((h >> 60) as usize % SHARDS, slot)
}

impl RecordCache {
    /// Looks `pos` up in the read-ahead window.
    pub(super) fn window_lookup(&self, pos: u64) -> WindowLookup {
        let mut w = self.window.lock();
        let from = pos
            .checked_sub(w.start)
            .and_then(|offset| usize::try_from(offset).ok())
            .and_then(|offset| w.bytes.get(offset..))
            .filter(|rest| rest.len() >= DATA_HEADER_SIZE);
        if let Some(rest) = from {
            let head: [u8; DATA_HEADER_SIZE] = rest[..DATA_HEADER_SIZE]
                .try_into()
                .expect("sliced to the header size");
            let len = DataHeader::decode(&head).record_len();
            // What the window holds of the record; the reader reads any rest.
            let take = usize::try_from(len).map_or(rest.len(), |len| len.min(rest.len()));
            let bytes = rest[..take].to_vec();
            w.last_end = pos.saturating_add(len);
            return WindowLookup::Hit(bytes);
        }
        if pos == w.last_end && pos != 0 {
            WindowLookup::Sequential
        } else {
            WindowLookup::Miss
        }
    }

    /// Notes a record loaded without the window: `end` is where it ends.
    pub(super) fn window_loaded(&self, end: u64) {
        self.window.lock().last_end = end;
    }

    /// Makes `bytes` (read from `start` on) the window; the record loaded from them
    /// ends at `end`.
    pub(super) fn window_put(&self, start: u64, bytes: Vec<u8>, end: u64) {
        let mut w = self.window.lock();
        w.start = start;
        w.bytes = bytes;
        w.last_end = end;
    }

    /// The serial and data of `oid`'s record at `pos`, if cached.
    pub(super) fn get(&self, oid: Oid, pos: u64) -> Option<(Tid, Vec<u8>)> {
        self.get_with(oid, pos, |serial, data| (serial, data.to_vec()))
    }

    /// `f` of the serial and data of `oid`'s record at `pos`, if cached: the data is
    /// lent, under the shard's lock (so `f` should be short).
    pub(super) fn get_with<R>(
        &self,
        oid: Oid,
        pos: u64,
        f: impl FnOnce(Tid, &[u8]) -> R,
    ) -> Option<R> {
        let (shard, slot) = place(oid.0);
        let s = self.shards.get(shard)?.lock();
        match s.slots.get(slot) {
            Some(Some(e)) if e.oid == oid.0 && e.pos == pos => Some(f(e.serial, &e.data)),
            _ => None,
        }
    }

    /// Remembers that `oid`'s record at `pos` has `serial` and `data` (resolved through
    /// any backpointer).
    pub(super) fn put(&self, oid: Oid, pos: u64, serial: Tid, data: &[u8]) {
        if data.len() > limits::RECORD_CACHE_RECORD_BYTES_MAX {
            return;
        }
        let (shard, slot) = place(oid.0);
        let Some(shard) = self.shards.get(shard) else {
            return;
        };
        let mut s = shard.lock();
        if s.slots.is_empty() {
            s.slots = vec![None; SLOTS_PER_SHARD];
        }
        let old = s
            .slots
            .get_mut(slot)
            .and_then(Option::take)
            .map_or(0, |e| e.data.len());
        s.bytes -= old;
        if s.bytes + data.len() > SHARD_BYTES_MAX {
            return;
        }
        s.bytes += data.len();
        if let Some(place) = s.slots.get_mut(slot) {
            *place = Some(Box::new(Entry {
                oid: oid.0,
                pos,
                serial,
                data: data.into(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_entry_is_found_by_its_oid_and_position_only() {
        let c = RecordCache::default();
        assert_eq!(c.get(Oid(1), 10), None);
        c.put(Oid(1), 10, Tid(5), b"one");
        assert_eq!(c.get(Oid(1), 10), Some((Tid(5), b"one".to_vec())));
        assert_eq!(c.get(Oid(1), 20), None, "a newer record of the object");
        assert_eq!(c.get(Oid(2), 10), None);
        c.put(Oid(1), 20, Tid(6), b"two");
        assert_eq!(c.get(Oid(1), 10), None, "the slot holds the newer one");
        assert_eq!(c.get(Oid(1), 20), Some((Tid(6), b"two".to_vec())));
    }

    #[test]
    fn the_window_serves_what_it_holds_and_spots_the_next_record() {
        let c = RecordCache::default();
        let record = |oid: u64, plen: usize| {
            let header = DataHeader {
                oid: Oid(oid),
                serial: Tid(1),
                prev: 0,
                tloc: 4,
                vlen: 0,
                plen: plen as u64,
            };
            let mut r = header.encode().to_vec();
            r.resize(DATA_HEADER_SIZE + plen, oid as u8);
            r
        };
        let (a, b) = (record(1, 10), record(2, 100));
        let a_end = 100 + a.len() as u64;
        assert!(matches!(c.window_lookup(100), WindowLookup::Miss));
        c.window_loaded(a_end);
        assert!(matches!(c.window_lookup(a_end), WindowLookup::Sequential));
        // A window from a_end holding b whole and the start of a third record.
        let mut bytes = b.clone();
        bytes.extend_from_slice(&record(3, 500)[..60]);
        c.window_put(a_end, bytes, a_end + b.len() as u64);
        match c.window_lookup(a_end) {
            WindowLookup::Hit(got) => assert_eq!(got, b),
            other => panic!("{other:?}"),
        }
        let c_pos = a_end + b.len() as u64;
        match c.window_lookup(c_pos) {
            WindowLookup::Hit(got) => assert_eq!(got.len(), 60, "what the window has of it"),
            other => panic!("{other:?}"),
        }
        // Past the window, right after the last record: read ahead again.
        let after = c_pos + DATA_HEADER_SIZE as u64 + 500;
        assert!(matches!(c.window_lookup(after), WindowLookup::Sequential));
        assert!(matches!(c.window_lookup(after + 1), WindowLookup::Miss));
        assert!(matches!(c.window_lookup(a_end - 1), WindowLookup::Miss));
    }

    #[test]
    fn bytes_stay_within_the_bound_whatever_is_put() {
        let c = RecordCache::default();
        let big = vec![0u8; limits::RECORD_CACHE_RECORD_BYTES_MAX + 1];
        c.put(Oid(1), 4, Tid(1), &big);
        assert_eq!(c.get(Oid(1), 4), None, "too large to keep");
        let record = vec![7u8; limits::RECORD_CACHE_RECORD_BYTES_MAX];
        let n = 4 * limits::RECORD_CACHE_BYTES_MAX / record.len();
        for oid in 0..n as u64 {
            c.put(Oid(oid), oid * 8, Tid(1), &record);
        }
        let total: usize = c.shards.iter().map(|s| s.lock().bytes).sum();
        assert!(total <= limits::RECORD_CACHE_BYTES_MAX, "{total}");
        let kept: usize = c
            .shards
            .iter()
            .map(|s| {
                s.lock()
                    .slots
                    .iter()
                    .flatten()
                    .map(|e| e.data.len())
                    .sum::<usize>()
            })
            .sum();
        assert_eq!(kept, total);
        assert!(total > limits::RECORD_CACHE_BYTES_MAX / 2, "{total}");
    }
}
