//! The layer below an overlay: what a [`MemoryStorage`](crate::MemoryStorage) used as
//! `DemoStorage`'s overlay asks of the base under it, and how the base answers.
//!
//! The overlay needs, for an oid it has no revision of (or whose first revision there
//! an undo removes), what was there before it: the base's current serial (serial checks),
//! its revision before a tid (undo, and reachability for pack), and its last tid (the
//! overlay's tids come after it). A plain `MemoryStorage` has nothing below it, and every
//! answer is "nothing there". How the base is read (through which `Storage` calls, with
//! which errors meaning "none") is `DemoStorage`'s business, so it lives here.

use std::sync::Arc;

use crate::error::Result;
use crate::ids::{Oid, Tid};
use crate::storage::{Revision, Storage};

/// The read-only layer a `MemoryStorage` overlays, or nothing. Never written: a
/// missing object (`PosKey`) is no revision, every other error is passed on.
pub(crate) struct Below(Option<Arc<dyn Storage>>);

impl Below {
    /// Nothing below: a storage of its own.
    pub(crate) fn nothing() -> Below {
        Below(None)
    }

    /// `base` below, as `DemoStorage` puts it.
    pub(crate) fn storage(base: Arc<dyn Storage>) -> Below {
        Below(Some(base))
    }

    /// The tid of the current revision below (a deletion included), `None`
    /// when the object never had one there.
    pub(crate) fn serial(&self, oid: Oid) -> Result<Option<Tid>> {
        let Some(base) = &self.0 else {
            return Ok(None);
        };
        // `history` also names a current deletion, which `load` would not.
        match base.history(oid, 1) {
            Ok(entries) => Ok(entries.first().map(|e| e.tid)),
            Err(e) if e.is_pos_key() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Whether the object has ever had a revision below.
    pub(crate) fn has(&self, oid: Oid) -> Result<bool> {
        Ok(self.serial(oid)?.is_some())
    }

    /// The revision below current before `before`, `None` when there is
    /// none (absent, deleted, or not created yet then).
    pub(crate) fn revision_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        let Some(base) = &self.0 else {
            return Ok(None);
        };
        match base.load_before(oid, before) {
            Ok(rev) => Ok(rev),
            Err(e) if e.is_pos_key() => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The newest tid below ([`Tid::ZERO`] when there is nothing): the overlay's
    /// tids come after it.
    pub(crate) fn last_transaction(&self) -> Tid {
        self.0
            .as_ref()
            .map_or(Tid::ZERO, |base| base.last_transaction())
    }
}
