//! `sync` shared by concurrent callers.  A `sync` must return only once every
//! invalidation the server queued before the call has been applied: a round trip
//! (`ping`) sent after the call started does that, since the server answers in order
//! on one stream.  Many callers at once (an instance's concurrent requests, each
//! starting a transaction) need not send one each: a ping started after a caller
//! arrived serves it too.  So a caller waits for the first ping numbered after the
//! ones already started when it came; the first caller to find none in flight sends
//! it.  Under load one round trip serves a whole wave of requests, and no caller
//! waits more than two round trips.

use parking_lot::{Condvar, Mutex};
use zodb_storage::StorageError;

#[derive(Debug, Default)]
pub(super) struct SyncGate {
    state: Mutex<GateState>,
    done: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// Pings started so far (the number of the newest).
    started: u64,
    /// Whether ping number `started` is still out.
    in_flight: bool,
    /// The newest ping answered, and its error, if it failed.
    finished: u64,
    error: Option<String>,
}

impl SyncGate {
    /// Returns once a ping started after this call has been answered (`ping` sends
    /// one and waits for it).
    pub(super) fn sync(
        &self,
        ping: impl Fn() -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let mut st = self.state.lock();
        // Pings up to `started` may have been sent before this call.
        let target = st.started + 1;
        loop {
            if st.finished >= target {
                return match &st.error {
                    Some(why) if st.finished == target => {
                        Err(StorageError::Disconnected(why.clone()))
                    }
                    _ => Ok(()),
                };
            }
            if !st.in_flight {
                st.started += 1;
                st.in_flight = true;
                let number = st.started;
                drop(st);
                let result = ping();
                st = self.state.lock();
                st.in_flight = false;
                st.finished = number;
                st.error = result.as_ref().err().map(ToString::to_string);
                self.done.notify_all();
                if number == target {
                    return result;
                }
                continue;
            }
            self.done.wait(&mut st);
        }
    }

    /// Pings sent so far.
    #[cfg(test)]
    fn pings(&self) -> u64 {
        self.state.lock().started
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering};
    use std::time::Duration;

    #[test]
    fn concurrent_callers_share_pings_and_each_waits_for_one_started_after_it() {
        let gate = Arc::new(SyncGate::default());
        // A clock of ping starts; each caller notes the clock when it arrives and
        // checks that the ping that released it started later.
        let clock = Arc::new(AtomicU64::new(0));
        let last_started = Arc::new(AtomicU64::new(0));
        let threads: Vec<_> = (0..32)
            .map(|_| {
                let (gate, clock, last_started) = (
                    Arc::clone(&gate),
                    Arc::clone(&clock),
                    Arc::clone(&last_started),
                );
                std::thread::spawn(move || {
                    let arrived = clock.fetch_add(1, Ordering::SeqCst);
                    gate.sync(|| {
                        last_started.store(clock.fetch_add(1, Ordering::SeqCst), Ordering::SeqCst);
                        std::thread::sleep(Duration::from_millis(20));
                        Ok(())
                    })
                    .unwrap();
                    assert!(
                        last_started.load(Ordering::SeqCst) > arrived,
                        "released by a ping that started before the call"
                    );
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let pings = gate.pings();
        assert!((1..32).contains(&pings), "{pings} pings for 32 callers");
    }

    #[test]
    fn a_failed_ping_fails_its_callers_and_the_next_one_is_tried_again() {
        let gate = SyncGate::default();
        let err = gate
            .sync(|| Err(StorageError::Disconnected("gone".into())))
            .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        gate.sync(|| Ok(())).unwrap();
        assert_eq!(gate.pings(), 2);
    }
}
