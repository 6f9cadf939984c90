//! Commit notifications: how a storage tells the databases above it which objects each
//! committed transaction changed (ZODB's `registerDB` / `DB.invalidate`).
//!
//! The persistence layer keeps objects in per-connection caches and gives each transaction
//! one snapshot; it learns what changed, and up to which tid it may read, only from these
//! notifications.  So the contract is strict:
//!
//! - every committed transaction (stores, deletions, undo, restore) is reported exactly
//!   once, with every oid it wrote, in tid order, across all committers (this process's and,
//!   for a ZEO client, everyone's);
//! - a transaction is reported only once loads see it (`load_before(oid, tid + 1)` returns
//!   its data), and before the `finish` that committed it returns to its caller;
//! - [`InvalidationListener::reset`] says that notifications may have been lost (a ZEO
//!   client reconnected and the server could not list what changed meanwhile): caches must
//!   be dropped whole.
//!
//! Listeners are held weakly, so a database that is dropped simply stops being told.

use std::sync::Weak;

use parking_lot::Mutex;

use crate::ids::{Oid, Tid};

/// Told of every committed transaction of a storage; see the module documentation for the
/// ordering contract.  Implementations must be quick and must not call back into the
/// storage: they run inside its commit path.
pub trait InvalidationListener: Send + Sync {
    /// Transaction `tid` committed and changed `oids`.
    fn committed(&self, tid: Tid, oids: &[Oid]);

    /// Notifications may have been lost; `last` is the newest committed tid now known.
    fn reset(&self, last: Tid);
}

/// The listeners of one storage: what every backend embeds to implement
/// [`crate::Storage::add_listener`].
#[derive(Default)]
pub struct Listeners {
    list: Mutex<Vec<Weak<dyn InvalidationListener>>>,
}

impl std::fmt::Debug for Listeners {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listeners")
            .field("count", &self.list.lock().len())
            .finish()
    }
}

impl Listeners {
    pub fn new() -> Listeners {
        Listeners::default()
    }

    pub fn add(&self, listener: Weak<dyn InvalidationListener>) {
        self.list.lock().push(listener);
    }

    /// Reports a committed transaction to every live listener (dropping dead ones).  The
    /// list's lock is held throughout, so two committers calling this one after the other
    /// are reported in that order.
    pub fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut list = self.list.lock();
        list.retain(|weak| match weak.upgrade() {
            Some(listener) => {
                listener.committed(tid, oids);
                true
            }
            None => false,
        });
    }

    /// Reports a reset to every live listener.
    pub fn reset(&self, last: Tid) {
        let mut list = self.list.lock();
        list.retain(|weak| match weak.upgrade() {
            Some(listener) => {
                listener.reset(last);
                true
            }
            None => false,
        });
    }

    /// Whether anyone is listening (lets a backend skip building the oid list).
    pub fn is_empty(&self) -> bool {
        self.list.lock().is_empty()
    }
}
