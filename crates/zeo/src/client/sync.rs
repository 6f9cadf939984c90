//! `sync` shared by concurrent callers.  A `sync` must return only once every
//! invalidation the server queued before the call has been applied: a round trip
//! (`ping`) sent after the call started does that, since the server answers in order
//! on one stream.  Many callers at once (an instance's concurrent requests, each
//! starting a transaction) need not send one each: a ping started after a caller
//! arrived serves it too.  So a caller waits for the first ping numbered after the
//! ones already started when it came; the first caller to find none in flight sends
//! it.  Under load one round trip serves a whole wave of requests, and no caller
//! waits more than two round trips.
//!
//! Callers that must not block (an async runtime's worker: `Storage::start_sync`)
//! leave a callback instead, called when their ping is answered. The ping they need
//! is sent without waiting for its answer ([`SyncGate::set_sender`]: the reply runs
//! [`SyncGate::finish`] on the connection's reader thread), by the caller itself or,
//! for callbacks that came while a ping was out, by the thread that finishes that
//! ping; only when the connection's writer is busy this moment (or there is no
//! connection) is it handed to the client's pinger thread
//! ([`SyncGate::serve_pings`]), which may wait. So in the common case a wave of
//! requests costs one write and the reader thread's wake-up, no thread hand-off.

use parking_lot::{Condvar, Mutex};
use zodb_storage::{StorageError, SyncDone};

/// Sends ping `number` without waiting for its answer, if that can be done this
/// moment (the answer calls [`SyncGate::finish`]); false when it cannot.
pub(super) type TrySend = Box<dyn Fn(u64) -> bool + Send + Sync>;

#[derive(Default)]
pub(super) struct SyncGate {
    state: Mutex<GateState>,
    done: Condvar,
    /// Signalled when a callback needs a ping nobody has started or a started ping
    /// was handed over, or on close.
    wanted: Condvar,
    try_send: std::sync::OnceLock<TrySend>,
}

impl std::fmt::Debug for SyncGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let st = self.state.lock();
        f.debug_struct("SyncGate")
            .field("started", &st.started)
            .field("finished", &st.finished)
            .field("callbacks", &st.callbacks.len())
            .finish()
    }
}

#[derive(Default)]
struct GateState {
    /// Pings started so far (the number of the newest).
    started: u64,
    /// Whether ping number `started` is still out.
    in_flight: bool,
    /// The newest ping answered, and its error, if it failed.
    finished: u64,
    error: Option<String>,
    /// Callers that must not block, each with the ping number it waits for.
    callbacks: Vec<(u64, SyncDone)>,
    /// A ping started (and numbered) that could not be sent at once: the pinger's.
    handed: Option<u64>,
    /// Set when the client closes: the pinger ends, callbacks fail.
    closed: bool,
}

impl SyncGate {
    /// Returns once a ping started after this call has been answered (`ping` sends
    /// one and waits for it); fails with `Disconnected` when another caller's ping it
    /// waits for is not answered within `wait`.
    pub(super) fn sync(
        &self,
        wait: std::time::Duration,
        ping: impl Fn() -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let deadline = std::time::Instant::now() + wait;
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
                let number = Self::start(&mut st);
                drop(st);
                let result = ping();
                self.finish(number, &result);
                if number == target {
                    return result;
                }
                st = self.state.lock();
                continue;
            }
            if self.done.wait_until(&mut st, deadline).timed_out() {
                return Err(StorageError::Disconnected(format!(
                    "the ZEO server did not answer a sync within {wait:?}"
                )));
            }
        }
    }

    /// [`SyncGate::sync`] without blocking: `done` is called once a ping started after
    /// this call has been answered (by the pinger thread when none is in flight).
    pub(super) fn sync_then(&self, done: SyncDone) {
        let mut st = self.state.lock();
        if st.closed {
            drop(st);
            done(Err(StorageError::Closed));
            return;
        }
        let target = st.started + 1;
        st.callbacks.push((target, done));
        if st.in_flight {
            return; // That ping's finish starts the next one, for this callback.
        }
        let number = Self::start(&mut st);
        drop(st);
        self.send_or_hand(number);
    }

    /// How pings are sent without waiting (set once, by the client).
    pub(super) fn set_sender(&self, send: TrySend) {
        let _ = self.try_send.set(send);
    }

    /// Sends the started ping `number`, or hands it to the pinger thread.
    fn send_or_hand(&self, number: u64) {
        if self.try_send.get().is_some_and(|send| send(number)) {
            return;
        }
        self.state.lock().handed = Some(number);
        self.wanted.notify_one();
    }

    /// The pinger thread's loop: sends a ping whenever a callback waits for one and
    /// none is in flight, until [`SyncGate::close`].  Fails the callbacks left then.
    pub(super) fn serve_pings(&self, ping: impl Fn() -> Result<(), StorageError>) {
        let mut st = self.state.lock();
        loop {
            if st.closed {
                let handed = st.handed.take();
                let left = std::mem::take(&mut st.callbacks);
                drop(st);
                if let Some(number) = handed {
                    // Blocked callers may wait for it.
                    self.finish(number, &Err(StorageError::Closed));
                }
                for (_, done) in left {
                    done(Err(StorageError::Closed));
                }
                return;
            }
            if let Some(number) = st.handed.take() {
                drop(st);
                let result = ping();
                self.finish(number, &result);
                st = self.state.lock();
                continue;
            }
            if !st.in_flight && st.callbacks.iter().any(|(t, _)| *t > st.finished) {
                let number = Self::start(&mut st);
                drop(st);
                let result = ping();
                self.finish(number, &result);
                st = self.state.lock();
                continue;
            }
            self.wanted.wait(&mut st);
        }
    }

    /// Ends the pinger thread (the client closed).
    pub(super) fn close(&self) {
        self.state.lock().closed = true;
        self.wanted.notify_all();
    }

    /// Numbers and marks a new ping in flight.
    fn start(st: &mut GateState) -> u64 {
        st.started += 1;
        st.in_flight = true;
        st.started
    }

    /// Records the answer to ping `number`, starts the next one if callbacks still
    /// wait, wakes the blocked callers and calls the callbacks it serves (outside the
    /// lock).
    pub(super) fn finish(&self, number: u64, result: &Result<(), StorageError>) {
        let mut st = self.state.lock();
        st.in_flight = false;
        st.finished = number;
        st.error = result.as_ref().err().map(ToString::to_string);
        let (served, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut st.callbacks)
            .into_iter()
            .partition(|(t, _)| *t <= number);
        st.callbacks = waiting;
        let next = (!st.callbacks.is_empty() && !st.closed).then(|| Self::start(&mut st));
        drop(st);
        if let Some(next) = next {
            self.send_or_hand(next);
        }
        self.done.notify_all();
        for (target, done) in served {
            done(match result {
                Err(e) if target == number => Err(StorageError::Disconnected(e.to_string())),
                _ => Ok(()),
            });
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
                    gate.sync(Duration::from_secs(60), || {
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

    /// With a sender that can send (the connection's writer free), callbacks need no
    /// pinger thread: each is served by a ping sent after it came, the answers
    /// (here from another thread, as from the reader thread) finishing them; a sender
    /// that cannot send hands the ping to the pinger.
    #[test]
    fn callbacks_are_served_by_pings_sent_without_the_pinger() {
        let gate = Arc::new(SyncGate::default());
        let sent = Arc::new(AtomicU64::new(0));
        let can_send = Arc::new(std::sync::atomic::AtomicBool::new(true));
        {
            let (weak, sent, can_send) = (
                Arc::downgrade(&gate),
                Arc::clone(&sent),
                Arc::clone(&can_send),
            );
            gate.set_sender(Box::new(move |number| {
                if !can_send.load(Ordering::SeqCst) {
                    return false;
                }
                sent.fetch_add(1, Ordering::SeqCst);
                let weak = weak.clone();
                std::thread::spawn(move || {
                    std::thread::sleep(Duration::from_millis(2));
                    if let Some(gate) = weak.upgrade() {
                        gate.finish(number, &Ok(()));
                    }
                });
                true
            }));
        }
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..64 {
            let (tx, sent) = (tx.clone(), Arc::clone(&sent));
            let arrived = sent.load(Ordering::SeqCst);
            gate.sync_then(Box::new(move |r| {
                tx.send((arrived, sent.load(Ordering::SeqCst), r.is_ok()))
                    .unwrap();
            }));
            if arrived % 8 == 0 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        for _ in 0..64 {
            let (arrived, at_call, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(ok);
            assert!(at_call > arrived, "called before a ping sent after it");
        }
        let pings = sent.load(Ordering::SeqCst);
        assert!((1..64).contains(&pings), "{pings} pings for 64 callbacks");
        // The writer busy: the pinger sends it.
        can_send.store(false, Ordering::SeqCst);
        let pinger = {
            let gate = Arc::clone(&gate);
            std::thread::spawn(move || gate.serve_pings(|| Ok(())))
        };
        gate.sync_then(Box::new(move |r| tx.send((0, 0, r.is_ok())).unwrap()));
        assert!(rx.recv_timeout(Duration::from_secs(10)).unwrap().2);
        gate.close();
        pinger.join().unwrap();
    }

    /// A ping the server never answers (sent, the connection up): a blocked caller
    /// waiting for it gives up after its wait, saying so.
    #[test]
    fn a_caller_waits_for_an_unanswered_ping_no_longer_than_its_wait() {
        let gate = SyncGate::default();
        gate.set_sender(Box::new(|_| true));
        gate.sync_then(Box::new(|_| {}));
        let asked = std::time::Instant::now();
        let err = gate.sync(Duration::from_millis(50), || Ok(())).unwrap_err();
        assert!(err.to_string().contains("did not answer"), "{err}");
        assert!(asked.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_failed_ping_fails_its_callers_and_the_next_one_is_tried_again() {
        let gate = SyncGate::default();
        let err = gate
            .sync(Duration::from_secs(60), || {
                Err(StorageError::Disconnected("gone".into()))
            })
            .unwrap_err();
        assert!(err.to_string().contains("gone"), "{err}");
        gate.sync(Duration::from_secs(60), || Ok(())).unwrap();
        assert_eq!(gate.pings(), 2);
    }

    #[test]
    fn callbacks_are_called_after_a_ping_the_pinger_started_after_them() {
        let gate = Arc::new(SyncGate::default());
        let pings = Arc::new(AtomicU64::new(0));
        let pinger = {
            let (gate, pings) = (Arc::clone(&gate), Arc::clone(&pings));
            std::thread::spawn(move || {
                gate.serve_pings(|| {
                    pings.fetch_add(1, Ordering::SeqCst);
                    std::thread::sleep(Duration::from_millis(5));
                    Ok(())
                })
            })
        };
        let (tx, rx) = std::sync::mpsc::channel();
        for _ in 0..16 {
            let (tx, pings) = (tx.clone(), Arc::clone(&pings));
            let arrived = pings.load(Ordering::SeqCst);
            gate.sync_then(Box::new(move |r| {
                tx.send((arrived, pings.load(Ordering::SeqCst), r.is_ok()))
                    .unwrap();
            }));
        }
        for _ in 0..16 {
            let (arrived, at_call, ok) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
            assert!(ok);
            assert!(at_call > arrived, "called before a ping sent after it");
        }
        // A blocked caller is served by the same pings.
        gate.sync(Duration::from_secs(60), || Ok(())).unwrap();
        assert!(gate.pings() <= 17, "{} pings for 17 callers", gate.pings());
        // Closing ends the pinger and fails callbacks left.
        gate.close();
        pinger.join().unwrap();
        let (tx, rx) = std::sync::mpsc::channel();
        gate.sync_then(Box::new(move |r| tx.send(r.is_err()).unwrap()));
        assert!(rx.recv().unwrap(), "a callback after close succeeded");
    }
}
