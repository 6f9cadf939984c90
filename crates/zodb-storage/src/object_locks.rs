//! Per-object commit locks: a voting transaction locks the objects it
//! writes (and those whose serial it checks), so transactions on disjoint
//! objects vote and commit side by side, while two that touch one object
//! commit one after the other.
//!
//! A transaction takes all its locks at once or waits for all of them, so
//! no two transactions can each hold what the other waits for. Waiters are
//! served first come, first served: a later transaction is not granted an
//! object an earlier waiter asked for, so nobody starves.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, StorageError};
use crate::ids::Oid;

#[derive(Debug, Default)]
struct State {
    held: HashMap<Oid, u64>,
    waiting: VecDeque<(u64, Vec<Oid>)>,
    closed: bool,
}

impl State {
    fn grantable(&self, id: u64) -> bool {
        let mut earlier: Vec<&Oid> = Vec::new();
        for (w, oids) in &self.waiting {
            if *w == id {
                return oids
                    .iter()
                    .all(|o| !self.held.contains_key(o) && !earlier.contains(&o));
            }
            earlier.extend(oids.iter());
        }
        false
    }
}

#[derive(Debug, Default)]
pub struct ObjectLocks {
    state: Mutex<State>,
    changed: Condvar,
}

impl ObjectLocks {
    pub fn new() -> ObjectLocks {
        ObjectLocks::default()
    }

    /// Locks `oids` for transaction `id`, waiting (up to `timeout`) until
    /// none is held by another transaction or wanted by an earlier waiter.
    pub fn acquire(&self, id: u64, oids: &[Oid], timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock();
        s.waiting.push_back((id, oids.to_vec()));
        loop {
            if s.closed {
                s.waiting.retain(|(w, _)| *w != id);
                self.changed.notify_all();
                return Err(StorageError::Closed);
            }
            if s.grantable(id) {
                s.waiting.retain(|(w, _)| *w != id);
                for o in oids {
                    s.held.insert(*o, id);
                }
                return Ok(());
            }
            match deadline {
                None => self.changed.wait(&mut s),
                Some(d) => {
                    if self.changed.wait_until(&mut s, d).timed_out() && !s.grantable(id) {
                        s.waiting.retain(|(w, _)| *w != id);
                        // Our leaving may let a later waiter through.
                        self.changed.notify_all();
                        return Err(StorageError::LockTimeout {
                            waited: timeout.unwrap_or_default(),
                        });
                    }
                }
            }
        }
    }

    /// Locks `oids` for transaction `id` if that needs no wait: none is held by another
    /// transaction or wanted by a waiter. `Ok(false)`: nothing was taken.
    pub fn try_acquire(&self, id: u64, oids: &[Oid]) -> Result<bool> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(StorageError::Closed);
        }
        let free = oids.iter().all(|o| {
            !s.held.contains_key(o) && !s.waiting.iter().any(|(_, want)| want.contains(o))
        });
        if free {
            for o in oids {
                s.held.insert(*o, id);
            }
        }
        Ok(free)
    }

    /// Releases every lock `id` holds.
    pub fn release(&self, id: u64) {
        let mut s = self.state.lock();
        let before = s.held.len();
        s.held.retain(|_, h| *h != id);
        if s.held.len() != before {
            self.changed.notify_all();
        }
    }

    /// Fails every present and future waiter.
    pub fn close(&self) {
        self.state.lock().closed = true;
        self.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::mpsc;

    const NOT_YET: Duration = Duration::from_millis(100);

    #[test]
    fn disjoint_sets_do_not_wait() {
        let locks = ObjectLocks::new();
        locks.acquire(1, &[Oid(1), Oid(2)], None).unwrap();
        locks.acquire(2, &[Oid(3)], Some(NOT_YET)).unwrap();
        locks.acquire(3, &[], Some(NOT_YET)).unwrap();
    }

    #[test]
    fn try_acquire_takes_only_what_nobody_holds_or_waits_for() {
        let locks = Arc::new(ObjectLocks::new());
        locks.acquire(1, &[Oid(1)], None).unwrap();
        assert!(!locks.try_acquire(2, &[Oid(1), Oid(2)]).unwrap());
        // Nothing of the refused set was taken.
        locks.acquire(3, &[Oid(2)], Some(NOT_YET)).unwrap();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || locks.acquire(4, &[Oid(1), Oid(5)], None))
        };
        while locks.state.lock().waiting.is_empty() {
            std::thread::yield_now();
        }
        // Oid 5 is free, but an earlier waiter asked for it.
        assert!(!locks.try_acquire(5, &[Oid(5)]).unwrap());
        assert!(locks.try_acquire(6, &[Oid(6), Oid(7)]).unwrap());
        locks.release(1);
        waiter.join().unwrap().unwrap();
        locks.close();
        assert!(matches!(
            locks.try_acquire(7, &[Oid(8)]),
            Err(StorageError::Closed)
        ));
    }

    #[test]
    fn an_overlapping_set_waits_for_the_release() {
        let locks = Arc::new(ObjectLocks::new());
        locks.acquire(1, &[Oid(1), Oid(2)], None).unwrap();
        let (tx, rx) = mpsc::channel();
        let waiter = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                locks.acquire(2, &[Oid(2), Oid(9)], None).unwrap();
                tx.send(()).unwrap();
            })
        };
        assert!(rx.recv_timeout(NOT_YET).is_err(), "granted while held");
        locks.release(1);
        rx.recv_timeout(Duration::from_secs(5)).unwrap();
        waiter.join().unwrap();
    }

    #[test]
    fn a_later_waiter_does_not_overtake_an_earlier_one() {
        let locks = Arc::new(ObjectLocks::new());
        locks.acquire(1, &[Oid(1)], None).unwrap();
        let (tx, rx) = mpsc::channel();
        let first = {
            let (locks, tx) = (Arc::clone(&locks), tx.clone());
            std::thread::spawn(move || {
                locks.acquire(2, &[Oid(1), Oid(2)], None).unwrap();
                tx.send(2).unwrap();
                locks.release(2);
            })
        };
        while locks.state.lock().waiting.is_empty() {
            std::thread::yield_now();
        }
        // Oid 2 is free, but the earlier waiter wants it: wait behind it.
        let second = {
            let locks = Arc::clone(&locks);
            std::thread::spawn(move || {
                locks.acquire(3, &[Oid(2)], None).unwrap();
                tx.send(3).unwrap();
            })
        };
        assert!(rx.recv_timeout(NOT_YET).is_err());
        locks.release(1);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 2);
        assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 3);
        first.join().unwrap();
        second.join().unwrap();
    }

    #[test]
    fn a_timeout_gives_up_and_close_fails_waiters() {
        let locks = ObjectLocks::new();
        locks.acquire(1, &[Oid(1)], None).unwrap();
        let err = locks
            .acquire(2, &[Oid(1)], Some(Duration::from_millis(20)))
            .unwrap_err();
        assert!(matches!(err, StorageError::LockTimeout { .. }), "{err}");
        assert!(
            err.to_string().starts_with(crate::LOCK_TIMEOUT_TEXT),
            "{err}"
        );
        locks.close();
        assert!(matches!(
            locks.acquire(3, &[Oid(5)], None),
            Err(StorageError::Closed)
        ));
    }
}
