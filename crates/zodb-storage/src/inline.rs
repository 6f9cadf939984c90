//! Storage calls made on a thread that must not wait on the network: an async
//! runtime's worker running a request in line (`bbru serve` runs plain page views
//! there when every object they need is in the caches).  Inside [`run_in_line`] a
//! storage that would wait for a server ([`crate::Storage::waits_on_network`]) answers
//! what its caches hold and refuses the rest with [`refuse`] instead of sending a
//! request; the caller sees that the run was refused and does the work again on a
//! thread that may wait.  A refusal is noted whatever the code above the storage does
//! with the error, so a view that shrugs off a failed load (a navigation entry left
//! out) can never pass for a complete answer.
//!
//! The same scope carries whether the caller has just synced through
//! [`crate::Storage::start_sync`]: the first `sync` inside it ([`take_synced`]) is
//! then already done, any further one (a transaction started again) is refused.
//!
//! Thread-local rather than a parameter: the storage sits under the object layer,
//! whose `load` calls know nothing of threads, and the scope is one closure on one
//! thread.

use std::cell::Cell;

use crate::StorageError;

#[derive(Clone, Copy, Default)]
struct Mode {
    in_line: bool,
    synced: bool,
    refused: bool,
}

thread_local! {
    static MODE: Cell<Mode> = const { Cell::new(Mode { in_line: false, synced: false, refused: false }) };
}

/// Restores the mode in force before [`run_in_line`], even when the work panics.
struct Restore(Mode);

impl Drop for Restore {
    fn drop(&mut self) {
        MODE.with(|m| m.set(self.0));
    }
}

/// Runs `work` with network waits refused on this thread; `synced` says the caller's
/// storage has synced for it (see the module doc).  Returns what `work` returned and
/// whether a storage refused something meanwhile (then the result may be incomplete:
/// do the work again where waiting is allowed).
pub fn run_in_line<R>(synced: bool, work: impl FnOnce() -> R) -> (R, bool) {
    let before = MODE.with(|m| {
        m.replace(Mode {
            in_line: true,
            synced,
            refused: false,
        })
    });
    let restore = Restore(before);
    let result = work();
    let refused = MODE.with(|m| m.get().refused);
    drop(restore);
    (result, refused)
}

/// Whether this thread may wait on the network (false inside [`run_in_line`]).
pub fn may_wait() -> bool {
    !MODE.with(|m| m.get().in_line)
}

/// What a storage answers, instead of waiting, for `what` inside [`run_in_line`]; the
/// refusal is noted for the scope.
pub fn refuse(what: &str) -> StorageError {
    MODE.with(|m| {
        let mut mode = m.get();
        mode.refused = true;
        m.set(mode);
    });
    StorageError::Unsupported(format!(
        "{what} would wait on the network, on a thread that must not wait"
    ))
}

/// Whether a storage has refused something in the current [`run_in_line`] scope so far
/// (false outside one): what was made meanwhile may be incomplete and must not be
/// kept.
pub fn refused() -> bool {
    MODE.with(|m| m.get().refused)
}

/// Whether the caller synced for this scope, once: true for the first call inside a
/// [`run_in_line`] started with `synced`, false after and outside.
pub fn take_synced() -> bool {
    MODE.with(|m| {
        let mut mode = m.get();
        let synced = mode.in_line && mode.synced;
        mode.synced = false;
        m.set(mode);
        synced
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn refusals_are_noted_for_the_scope_only() {
        assert!(may_wait());
        let ((), refused) = run_in_line(false, || {
            assert!(!may_wait());
            assert!(!super::refused());
            let _ = refuse("a load");
            assert!(super::refused());
        });
        assert!(refused);
        assert!(may_wait());
        let ((), refused) = run_in_line(false, || {});
        assert!(!refused, "a refusal of an earlier scope leaks");
    }

    #[test]
    fn the_sync_is_taken_once_and_only_inside() {
        assert!(!take_synced());
        let (taken, _) = run_in_line(true, || (take_synced(), take_synced()));
        assert_eq!(taken, (true, false));
        let (taken, _) = run_in_line(false, take_synced);
        assert!(!taken);
    }

    #[test]
    fn a_panicking_scope_leaves_the_thread_as_it_was() {
        let r = std::panic::catch_unwind(|| run_in_line(true, || panic!("view")));
        assert!(r.is_err());
        assert!(may_wait());
        assert!(!take_synced());
    }
}
