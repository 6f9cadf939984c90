//! The commit lock every engine takes from `vote` to `finish`/`abort`.
//!
//! A flag naming its holder rather than a guard, because it is taken in one
//! call (`vote`) and released in another (`finish`), possibly on another
//! thread. Waiters are served first come, first served (a ticket queue), so
//! a busy storage cannot starve one committer; `close` wakes every waiter so
//! it can fail.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::error::{Result, StorageError};

#[derive(Debug, Default)]
struct State {
    holder: Option<u64>,
    /// Ids waiting, in arrival order.
    queue: VecDeque<u64>,
    closed: bool,
}

#[derive(Debug, Default)]
pub struct CommitLock {
    state: Mutex<State>,
    changed: Condvar,
}

impl CommitLock {
    pub fn new() -> CommitLock {
        CommitLock::default()
    }

    /// Waits for the lock and takes it for `id` (a no-op if `id` holds it).
    /// Fails with `Closed` if the storage closes meanwhile, and with
    /// `LockTimeout` if `timeout` passes first.
    pub fn acquire(&self, id: u64, timeout: Option<Duration>) -> Result<()> {
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut s = self.state.lock();
        if s.holder == Some(id) {
            return Ok(());
        }
        s.queue.push_back(id);
        loop {
            if s.closed {
                s.queue.retain(|w| *w != id);
                self.changed.notify_all();
                return Err(StorageError::Closed);
            }
            if s.holder.is_none() && s.queue.front() == Some(&id) {
                s.queue.pop_front();
                s.holder = Some(id);
                return Ok(());
            }
            match deadline {
                Some(d) => {
                    if self.changed.wait_until(&mut s, d).timed_out()
                        && !(s.holder.is_none() && s.queue.front() == Some(&id))
                    {
                        s.queue.retain(|w| *w != id);
                        self.changed.notify_all();
                        return Err(StorageError::LockTimeout {
                            waited: timeout.unwrap_or_default(),
                        });
                    }
                }
                None => self.changed.wait(&mut s),
            }
        }
    }

    /// Releases the lock if `id` holds it.
    pub fn release(&self, id: u64) {
        let mut s = self.state.lock();
        if s.holder == Some(id) {
            s.holder = None;
            self.changed.notify_all();
        }
    }

    #[cfg(test)]
    pub fn holder(&self) -> Option<u64> {
        self.state.lock().holder
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

    #[test]
    fn waiters_are_served_in_arrival_order() {
        let lock = Arc::new(CommitLock::new());
        lock.acquire(0, None).unwrap();
        let (tx, rx) = mpsc::channel();
        let mut threads = Vec::new();
        for id in 1..=5u64 {
            let waiter = Arc::clone(&lock);
            let tx = tx.clone();
            threads.push(std::thread::spawn(move || {
                waiter.acquire(id, None).unwrap();
                tx.send(id).unwrap();
                waiter.release(id);
            }));
            // Wait until this waiter is queued before starting the next.
            while lock.state.lock().queue.len() < id as usize {
                std::thread::yield_now();
            }
        }
        lock.release(0);
        let order: Vec<u64> = (0..5).map(|_| rx.recv().unwrap()).collect();
        assert_eq!(order, vec![1, 2, 3, 4, 5]);
        threads.into_iter().for_each(|t| t.join().unwrap());
    }

    #[test]
    fn a_timed_out_waiter_leaves_the_queue() {
        let lock = CommitLock::new();
        lock.acquire(1, None).unwrap();
        let err = lock
            .acquire(2, Some(Duration::from_millis(20)))
            .unwrap_err();
        assert!(matches!(err, StorageError::LockTimeout { .. }), "{err}");
        lock.release(1);
        lock.acquire(3, Some(Duration::from_millis(20))).unwrap();
        assert_eq!(lock.holder(), Some(3));
    }

    #[test]
    fn close_fails_waiters() {
        let lock = Arc::new(CommitLock::new());
        lock.acquire(1, None).unwrap();
        let waiter = {
            let lock = Arc::clone(&lock);
            std::thread::spawn(move || lock.acquire(2, None))
        };
        while lock.state.lock().queue.is_empty() {
            std::thread::yield_now();
        }
        lock.close();
        assert!(matches!(waiter.join().unwrap(), Err(StorageError::Closed)));
    }
}
