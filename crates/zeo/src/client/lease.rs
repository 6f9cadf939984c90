//! The client side of read leases (spec §11; the server side is `server/lease.rs`).
//!
//! A server that offers leases (`get_info`'s `bbru_lease_ms`) acknowledges no commit
//! before every leased client confirmed it applied the commit's invalidation, or that
//! client's lease ran out.  So while this client holds a lease, a `sync` needs no round
//! trip: every commit acknowledged before the sync started has been applied already.
//!
//! Invariants kept here:
//!
//! * The lease is counted from the moment the request for it left, and ends a tenth
//!   early ([`limits::LEASE_MARGIN_DIVISOR`]): it ends on this client's clock before it
//!   can end on the server's, which counts from the request's arrival.
//! * It is taken up only once the grant has been read, on the reader thread, after every
//!   invalidation sent before it: those were all applied by then.
//! * Every invalidation of a connection the lease was asked on is confirmed
//!   (`bbru_applied`) after it is applied and reported, from the first request on.
//! * It is dropped when its connection is lost, and given up (`bbru_lease_end`) when the
//!   client closes.
//!
//! A thread renews it every quarter lease; a lost or late renewal only means syncs make
//! round trips again until the next grant.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use zodb_pickle::Value;

use super::Shared;
use crate::limits;
use crate::wire::Call;

/// How soon the lease thread looks again while no connection offers a lease (one just
/// made may be about to): a mutex and a clock read, nothing on the wire.
const OFFER_LOOK_AGAIN: Duration = Duration::from_millis(100);

#[derive(Debug, Default)]
struct Asked {
    /// The connection whose `get_info` offered leases, and their length.
    offer: Option<(u64, Duration)>,
    /// The connection a lease was asked on: its invalidations are confirmed.
    on: Option<u64>,
    /// The connection whose first grant was logged.
    logged: Option<u64>,
}

/// This client's lease (see the module doc).
#[derive(Debug)]
pub(super) struct Lease {
    /// When the lease ends, in nanoseconds after `base`; 0: no lease.
    until: AtomicU64,
    base: Instant,
    asked: Mutex<Asked>,
}

impl Default for Lease {
    fn default() -> Lease {
        Lease {
            until: AtomicU64::new(0),
            base: Instant::now(),
            asked: Mutex::new(Asked::default()),
        }
    }
}

impl Lease {
    /// Whether a lease is held this moment: a sync may return at once.
    pub(super) fn held(&self) -> bool {
        let until = self.until.load(Ordering::Acquire);
        until != 0 && self.nanos(Instant::now()) < until
    }

    fn nanos(&self, at: Instant) -> u64 {
        u64::try_from(at.saturating_duration_since(self.base).as_nanos()).unwrap_or(u64::MAX)
    }

    /// Connection `conn`'s server offers leases of `offered` (`None`: none).
    pub(super) fn offered(&self, conn: u64, offered: Option<Duration>) {
        let mut asked = self.asked.lock();
        match offered {
            Some(d) => asked.offer = Some((conn, d)),
            None if asked.offer.is_some_and(|(c, _)| c == conn) => asked.offer = None,
            None => {}
        }
    }

    /// Whether the invalidations of connection `conn` are to be confirmed.
    pub(super) fn confirms(&self, conn: u64) -> bool {
        self.asked.lock().on == Some(conn)
    }

    /// Connection `conn` is lost: its lease with it.
    pub(super) fn lost(&self, conn: u64) {
        let mut asked = self.asked.lock();
        if asked.on == Some(conn) {
            asked.on = None;
            self.until.store(0, Ordering::Release);
        }
        if asked.offer.is_some_and(|(c, _)| c == conn) {
            asked.offer = None;
        }
    }

    /// Stops counting on the lease (the client closes).
    pub(super) fn drop_lease(&self) {
        self.until.store(0, Ordering::Release);
    }
}

impl Shared {
    /// The lease thread's loop: while the current connection's server offers leases,
    /// asks for one every quarter lease; ends when the client closes.
    pub(super) fn keep_lease(&self) {
        loop {
            if self.is_closed() {
                return;
            }
            let conn = self.conn.lock().current.clone();
            let offer = self.lease.asked.lock().offer;
            let pause = match (conn, offer) {
                (Some(conn), Some((offered_on, length)))
                    if conn.id == offered_on && !conn.is_dead() =>
                {
                    self.renew_lease(&conn, length)
                }
                // Nothing offered on this connection (yet): look again soon.
                _ => OFFER_LOOK_AGAIN,
            };
            let mut st = self.conn.lock();
            if st.closed {
                return;
            }
            self.conn_cv.wait_for(&mut st, pause);
        }
    }

    /// Asks for the lease on `conn` and takes up what the server grants; returns how
    /// long to wait before the next renewal.
    fn renew_lease(
        &self,
        conn: &Arc<super::connection::Connection>,
        offered: Duration,
    ) -> Duration {
        let length_max = offered.min(Duration::from_millis(limits::LEASE_MILLIS_MAX));
        self.lease.asked.lock().on = Some(conn.id);
        let asked_at = Instant::now();
        let granted = match conn.call_within(Call::Lease, length_max / 2) {
            Ok(Value::Int(ms)) if ms > 0 => {
                Some(Duration::from_millis(ms.unsigned_abs()).min(length_max))
            }
            Ok(_) => None,
            Err(e) => {
                tracing::debug!("lease renewal failed: {e:?}");
                return length_max / limits::LEASE_RENEW_DIVISOR;
            }
        };
        let Some(length) = granted else {
            // Refused (this connection let a lease lapse lately, or the server holds too
            // many): round trips until it grants one again.
            self.lease.until.store(0, Ordering::Release);
            tracing::info!(
                "the ZEO server refused a read lease: syncing by round trips, asking again in {} s",
                limits::LEASE_LAPSED_REFUSAL_SECONDS
            );
            return Duration::from_secs(limits::LEASE_LAPSED_REFUSAL_SECONDS);
        };
        let until = asked_at + length - length / limits::LEASE_MARGIN_DIVISOR;
        {
            // Taken up only while the connection is the lease's (not lost meanwhile).
            let mut asked = self.lease.asked.lock();
            if asked.on == Some(conn.id) && !conn.is_dead() {
                self.lease
                    .until
                    .fetch_max(self.lease.nanos(until), Ordering::AcqRel);
                if asked.logged != Some(conn.id) {
                    asked.logged = Some(conn.id);
                    tracing::info!(
                        server = %conn.address,
                        lease_ms = length.as_millis(),
                        "read lease held: transactions start without a round trip"
                    );
                }
            }
        }
        length / limits::LEASE_RENEW_DIVISOR
    }
}
