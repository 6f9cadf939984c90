//! `DemoStorage`: a writable in-memory overlay over a read-only base.
//!
//! Every change goes to an inner [`MemoryStorage`] (the overlay); the base
//! is only read, never written or closed (it is shared, and its owner
//! closes it). This is the groundwork for running a site on a copy of a
//! production database, or tests on a fixture, without touching either.
//!
//! How each part of the API combines the two, following Python's
//! `ZODB.DemoStorage` except where noted:
//!
//! - reads: the overlay first, then the base. An oid the overlay has no
//!   revision of, or none older than `before`, is answered by the base;
//!   when the base's revision is its current one, its `end` becomes the
//!   overlay's first revision of that oid. Unlike Python, a deletion in the
//!   overlay hides the base's object instead of falling through to it (an
//!   undo in the overlay that returns to a base revision writes that
//!   revision's data into the overlay instead, see below).
//! - writes: the overlay's committed serial for an oid it has no revision
//!   of is the base's current serial, so a store based on the base's data
//!   conflicts like any other; an undo of the overlay's first revision of a
//!   base object returns to the base's data (with `data_txn` naming the
//!   base transaction). New tids exceed both the base's last tid and the
//!   overlay's.
//! - new oids: above every base oid. The start is what `base.new_oids(1)`
//!   returns (the base's own allocator knows its maximum; a read-only base
//!   may refuse, and then the base is iterated once to find its largest
//!   oid). Each oid handed out is also checked to be unknown to both the
//!   base and the overlay, so a base whose allocator restarted lower (as a
//!   reopened FileStorage may after a GC pack) is still safe.
//! - `history`: the overlay's revisions, then the base's. `iterator`: the
//!   base's transactions, then the overlay's (all later). `undo_log` and
//!   `undo`: the overlay's transactions only; base transactions cannot be
//!   undone through the overlay.
//! - `pack`: packs the overlay; base objects are never packed. With `gc`,
//!   reachability is computed over both layers (an object the overlay has
//!   not changed is read from the base), and only overlay revisions are
//!   removed. Python refuses `gc` with a base; this does it properly.
//! - `len`: the base's objects plus the overlay's objects the base lacks;
//!   `size`: the sum of both.
//! - listeners: told of the overlay's commits, which are all the commits
//!   there are (the base is read-only); the overlay reports them as any
//!   [`MemoryStorage`] does.
//!
//! Pieces: this file holds `DemoStorage` and its `impl Storage`; `below.rs` is the
//! base as the overlay sees it (its serials, its revisions before a tid, its last tid).

pub(crate) mod below;

use std::sync::Arc;

use parking_lot::Mutex;

use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::limits;
use crate::memory::MemoryStorage;
use crate::storage::{
    HistoryEntry, Revision, Storage, TransactionIter, TransactionMeta, TxnHandle, UndoLogEntry,
};
use below::Below;

/// A writable overlay over a read-only base. See the module documentation.
pub struct DemoStorage {
    name: String,
    base: Arc<dyn Storage>,
    overlay: MemoryStorage,
    /// The next candidate for `new_oids`; `None` until the first call, which
    /// asks the base.
    next_oid: Mutex<Option<u64>>,
}

impl std::fmt::Debug for DemoStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoStorage")
            .field("name", &self.name)
            .field("base", &self.base.name())
            .field("overlay", &self.overlay)
            .finish_non_exhaustive()
    }
}

impl DemoStorage {
    /// An empty overlay over `base`. Nothing is read from the base yet.
    pub fn new(base: Arc<dyn Storage>, name: impl Into<String>) -> DemoStorage {
        let name = name.into();
        let overlay = MemoryStorage::overlay(
            format!("{name} (changes)"),
            Below::storage(Arc::clone(&base)),
        );
        DemoStorage {
            name,
            base,
            overlay,
            next_oid: Mutex::new(None),
        }
    }

    /// The base storage.
    pub fn base(&self) -> &Arc<dyn Storage> {
        &self.base
    }

    /// The overlay holding every change made through this storage.
    pub fn changes(&self) -> &MemoryStorage {
        &self.overlay
    }

    /// An oid above every oid of the base (see the module documentation).
    fn base_oid_floor(&self) -> Result<u64> {
        if let Ok(oids) = self.base.new_oids(1)
            && let Some(oid) = oids.first()
        {
            return Ok(oid.0.max(1));
        }
        let mut max: Option<u64> = None;
        for txn in self.base.iterator(None, None)? {
            for record in txn?.records {
                max = Some(max.map_or(record.oid.0, |m| m.max(record.oid.0)));
            }
        }
        Ok(max.map_or(1, |m| m.saturating_add(1)))
    }

    fn base_has(&self, oid: Oid) -> Result<bool> {
        match self.base.history(oid, 1) {
            Ok(_) => Ok(true),
            Err(e) if e.is_pos_key() => Ok(false),
            Err(e) => Err(e),
        }
    }
}

impl Storage for DemoStorage {
    fn name(&self) -> String {
        self.name.clone()
    }

    /// An overlay in memory over the base, which is where the data are.
    fn location(&self) -> crate::StorageLocation {
        let base = self.base.location();
        crate::StorageLocation {
            kind: "demo",
            location: format!("in memory over {} {}", base.kind, base.location),
        }
    }

    fn is_read_only(&self) -> bool {
        false
    }

    fn last_transaction(&self) -> Tid {
        self.overlay
            .last_transaction()
            .max(self.base.last_transaction())
    }

    fn len(&self) -> usize {
        let added = self
            .overlay
            .oids()
            .into_iter()
            .filter(|oid| !matches!(self.base_has(*oid), Ok(true)))
            .count();
        self.base.len() + added
    }

    fn size(&self) -> u64 {
        self.base.size() + self.overlay.size()
    }

    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        match self.overlay.load_before(oid, before) {
            Ok(Some(rev)) => Ok(Some(rev)),
            // The overlay's revision found is a deletion: it hides the base.
            Err(e) if e.is_pos_key() && self.overlay.has_oid(oid) => Err(e),
            Err(e) if e.is_pos_key() => self.base.load_before(oid, before),
            Err(e) => Err(e),
            // The overlay has the object, but only from `before` on.
            Ok(None) => match self.base.load_before(oid, before) {
                Ok(Some(mut rev)) => {
                    if rev.end.is_none() {
                        rev.end = self.overlay.first_revision_tid(oid);
                    }
                    Ok(Some(rev))
                }
                Ok(None) => Ok(None),
                // Not in the base either: the overlay created it later.
                Err(e) if e.is_pos_key() => Ok(None),
                Err(e) => Err(e),
            },
        }
    }

    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        match self.overlay.load_serial(oid, serial) {
            Err(e) if e.is_pos_key() => self.base.load_serial(oid, serial),
            other => other,
        }
    }

    fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        self.overlay.check_open()?;
        if count > limits::NEW_OIDS_COUNT_MAX {
            return Err(StorageError::Limit(format!(
                "{count} new oids asked for; at most {} per call",
                limits::NEW_OIDS_COUNT_MAX
            )));
        }
        let mut next = self.next_oid.lock();
        let start = match *next {
            Some(n) => n,
            None => self.base_oid_floor()?,
        };
        // Stores of explicit oids raise the overlay's allocator.
        let mut candidate = start.max(self.overlay.next_oid_hint());
        let mut oids = Vec::with_capacity(count);
        while oids.len() < count {
            let oid = Oid(candidate);
            candidate = candidate
                .checked_add(1)
                .ok_or_else(|| StorageError::Limit("the oid space is exhausted".into()))?;
            if !self.overlay.has_oid(oid) && !self.base_has(oid)? {
                oids.push(oid);
            }
        }
        *next = Some(candidate);
        Ok(oids)
    }

    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        self.overlay.tpc_begin(meta)
    }

    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        self.overlay.store(txn, oid, expected, data)
    }

    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.overlay.delete_object(txn, oid, expected)
    }

    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.overlay.check_current_serial(txn, oid, expected)
    }

    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.overlay.undo(txn, tid)
    }

    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.overlay.vote(txn)
    }

    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.overlay.finish(txn)
    }

    fn abort(&self, txn: &TxnHandle) {
        self.overlay.abort(txn);
    }

    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        let mut entries = match self.overlay.history(oid, size) {
            Ok(entries) => entries,
            Err(e) if e.is_pos_key() => Vec::new(),
            Err(e) => return Err(e),
        };
        let rest = size
            .min(limits::HISTORY_SIZE_MAX)
            .saturating_sub(entries.len());
        if rest > 0 {
            match self.base.history(oid, rest) {
                Ok(more) => entries.extend(more),
                Err(e) if e.is_pos_key() && !entries.is_empty() => {}
                Err(e) => return Err(e),
            }
        }
        Ok(entries)
    }

    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.overlay.undo_log(first, last)
    }

    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter> {
        let changes = self.overlay.iterator(start, stop)?;
        let base = self.base.iterator(start, stop)?;
        Ok(Box::new(base.chain(changes)))
    }

    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.overlay.pack(pack_time, gc)
    }

    fn close(&self) -> Result<()> {
        self.overlay.close()
    }

    /// The base is what can be out of reach (the overlay is in memory).
    fn check_health(&self, within: std::time::Duration) -> Result<()> {
        self.overlay.check_health(within)?;
        self.base.check_health(within)
    }

    fn add_listener(&self, listener: std::sync::Weak<dyn crate::InvalidationListener>) {
        self.overlay.add_listener(listener);
    }
}
