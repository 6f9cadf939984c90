//! A bound on how many of one kind of costly work an instance does at once (image
//! scaling, walks of the content tree for feeds and the sitemap): more callers wait,
//! each at most a given time, then are answered 503 (`AppError::Busy`).  Work that is
//! CPU-bound gains nothing from running more at once on a small machine, and a client
//! repeating it can then take at most the gate's share of the cores.

use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use super::AppError;

#[derive(Debug)]
pub struct Gate {
    at_once: usize,
    running: Mutex<usize>,
    freed: Condvar,
}

impl Gate {
    pub const fn new(at_once: usize) -> Gate {
        Gate {
            at_once,
            running: Mutex::new(0),
            freed: Condvar::new(),
        }
    }

    /// Runs `work` once fewer than `at_once` run, or answers `Busy(busy)` after `wait`.
    /// The slot is given back even if `work` panics.
    pub fn run<T>(
        &self,
        wait: Duration,
        busy: &str,
        work: impl FnOnce() -> T,
    ) -> Result<T, AppError> {
        let deadline = Instant::now() + wait;
        let mut running = self.running.lock();
        while *running >= self.at_once {
            if self.freed.wait_until(&mut running, deadline).timed_out() {
                return Err(AppError::Busy(busy.into()));
            }
        }
        *running += 1;
        drop(running);
        let _slot = Slot(self);
        Ok(work())
    }
}

/// A running slot of a [`Gate`], given back when dropped.
struct Slot<'a>(&'a Gate);

impl Drop for Slot<'_> {
    fn drop(&mut self) {
        *self.0.running.lock() -= 1;
        self.0.freed.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[test]
    fn at_most_its_number_run_and_the_others_wait_or_are_turned_away() {
        let gate = Arc::new(Gate::new(2));
        let (now, most) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
        let threads: Vec<_> = (0..6)
            .map(|_| {
                let (gate, now, most) = (gate.clone(), now.clone(), most.clone());
                std::thread::spawn(move || {
                    gate.run(Duration::from_secs(10), "busy", || {
                        let n = now.fetch_add(1, Ordering::SeqCst) + 1;
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        now.fetch_sub(1, Ordering::SeqCst);
                    })
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap().unwrap();
        }
        assert_eq!(most.load(Ordering::SeqCst), 2);
        // Both slots held: the next caller is turned away after its wait.
        let (held, release) = (
            Arc::new(std::sync::Barrier::new(3)),
            Arc::new(std::sync::Barrier::new(3)),
        );
        let holders: Vec<_> = (0..2)
            .map(|_| {
                let (gate, held, release) = (gate.clone(), held.clone(), release.clone());
                std::thread::spawn(move || {
                    gate.run(Duration::from_secs(10), "busy", || {
                        held.wait();
                        release.wait();
                    })
                })
            })
            .collect();
        held.wait();
        let turned = gate.run(Duration::from_millis(20), "busy", || ());
        assert!(matches!(turned, Err(AppError::Busy(_))));
        release.wait();
        for h in holders {
            h.join().unwrap().unwrap();
        }
        // A panicking worker gives its slot back.
        let g = gate.clone();
        let _ =
            std::thread::spawn(move || g.run(Duration::from_secs(1), "busy", || panic!("work")))
                .join();
        assert!(gate.run(Duration::from_millis(50), "busy", || ()).is_ok());
        assert!(gate.run(Duration::from_millis(50), "busy", || ()).is_ok());
    }
}
