//! [`Budget`]: a count of bytes shared by every connection, with a bound, handed out as
//! [`Permit`]s that give their bytes back when dropped.
//!
//! Two uses (see `limits`): the transaction data kept in memory by all open transactions
//! (`TXN_BUFFER_MEMORY_BYTES_TOTAL_MAX`; a store that does not fit goes to the
//! transaction's temporary file instead), and the data of transactions being voted or
//! voted (`VOTING_BYTES_TOTAL_MAX`; a vote that does not fit waits for others to finish).
//! Tokio's semaphore counts permits in `u32` and has no blocking wait with a deadline,
//! which the vote (on a blocking thread) needs; this is a mutex and a condition variable.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// Bytes in use out of `max`.
#[derive(Debug)]
pub struct Budget {
    max: u64,
    used: Mutex<u64>,
    freed: Condvar,
}

impl Budget {
    pub fn new(max: u64) -> Arc<Budget> {
        Arc::new(Budget {
            max,
            used: Mutex::new(0),
            freed: Condvar::new(),
        })
    }

    /// `n` bytes if they fit now.
    pub fn try_take(self: &Arc<Self>, n: u64) -> Option<Permit> {
        let mut used = self.used.lock();
        if *used + n > self.max {
            return None;
        }
        *used += n;
        Some(self.permit(n))
    }

    /// `n` bytes, waiting until `deadline` for others to give theirs back; `None` when
    /// they never fit (`n` over the whole bound) or the deadline passed.
    pub fn take_by(self: &Arc<Self>, n: u64, deadline: Instant) -> Option<Permit> {
        if n > self.max {
            return None;
        }
        let mut used = self.used.lock();
        while *used + n > self.max {
            if self.freed.wait_until(&mut used, deadline).timed_out() && *used + n > self.max {
                return None;
            }
        }
        *used += n;
        Some(self.permit(n))
    }

    /// Bytes in use now.
    #[cfg(test)]
    pub fn used(&self) -> u64 {
        *self.used.lock()
    }

    fn permit(self: &Arc<Self>, bytes: u64) -> Permit {
        Permit {
            budget: Arc::clone(self),
            bytes,
        }
    }
}

/// Bytes taken from a [`Budget`], given back on drop.
#[derive(Debug)]
pub struct Permit {
    budget: Arc<Budget>,
    bytes: u64,
}

impl Permit {
    /// Bytes this permit holds.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives `n` of this permit's bytes back.
    pub fn shrink(&mut self, n: u64) {
        let n = n.min(self.bytes);
        *self.budget.used.lock() -= n;
        self.bytes -= n;
        self.budget.freed.notify_all();
    }

    /// Takes `n` more bytes into this permit if they fit now.
    pub fn try_grow(&mut self, n: u64) -> bool {
        let mut used = self.budget.used.lock();
        if *used + n > self.budget.max {
            return false;
        }
        *used += n;
        self.bytes += n;
        true
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if self.bytes > 0 {
            *self.budget.used.lock() -= self.bytes;
            self.budget.freed.notify_all();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn permits_give_their_bytes_back_when_dropped() {
        let b = Budget::new(100);
        let mut p = b.try_take(60).unwrap();
        assert!(b.try_take(41).is_none());
        assert!(p.try_grow(40));
        assert!(!p.try_grow(1));
        assert_eq!(b.used(), 100);
        drop(p);
        assert_eq!(b.used(), 0);
        assert!(b.try_take(100).is_some());
    }

    #[test]
    fn a_waiting_take_gets_the_bytes_when_another_permit_goes() {
        let b = Budget::new(100);
        let p = b.try_take(80).unwrap();
        let b2 = Arc::clone(&b);
        let waiter = std::thread::spawn(move || {
            b2.take_by(50, Instant::now() + Duration::from_secs(20))
                .map(|p| p.bytes())
        });
        std::thread::sleep(Duration::from_millis(50));
        drop(p);
        assert_eq!(waiter.join().unwrap(), Some(50));
        assert_eq!(b.used(), 0);
    }

    #[test]
    fn a_take_over_the_whole_bound_or_past_its_deadline_fails() {
        let b = Budget::new(100);
        assert!(
            b.take_by(101, Instant::now() + Duration::from_secs(5))
                .is_none()
        );
        let _p = b.try_take(90).unwrap();
        assert!(
            b.take_by(20, Instant::now() + Duration::from_millis(30))
                .is_none()
        );
    }
}
