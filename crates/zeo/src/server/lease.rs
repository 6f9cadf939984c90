//! Read leases (spec §11, an extension of bbru's): a client holding one may start a
//! transaction without the round trip of a `sync`, because the server acknowledges no
//! commit before every leased client has confirmed that it applied the commit's
//! invalidation, or its lease has run out.
//!
//! The guarantee a `sync` gives, "a transaction sees every commit acknowledged before it
//! started", then holds without asking: a commit acknowledged before a leased client's
//! transaction started was either confirmed by that client (applied before its
//! confirmation left) or waited for until the lease ran out on the server's clock, which
//! is after it ran out on the client's (the client counts its lease from the moment it
//! asked, and leaves a margin: `client/lease.rs`).
//!
//! Invariants kept here:
//!
//! * A commit is acknowledged (`Leases::wait_confirmed` returns) only when every lease
//!   but the committer's own has confirmed its tid or reached the expiry it had when the
//!   commit's invalidation was queued (a renewal granted after that reaches the client
//!   behind the invalidation, so a client cannot stretch the wait by renewing).
//! * A lease outlives its connection: one closed by the server, or lost on the network,
//!   may still be held by a client that has not noticed; only the client's own
//!   `bbru_lease_end`, or the expiry, ends it.
//! * A first grant (or one after the lease ran out) counts every invalidation already
//!   queued to the client as confirmed: the client applies them before it reads the
//!   grant, and holds no lease until then.  A renewal of a live lease counts nothing.
//! * A process's first commits wait until one lease after it started when leases granted
//!   by the process before it (crashed, restarted) may still be held: when the marker
//!   file ([`Marker`]) is there.  It is written, and synced, before the first grant
//!   leaves, and removed at a clean stop once no lease is left; a server that never
//!   granted one (only Python clients, which ask for none) neither writes nor waits.
//! * A client that let its lease run out while a commit waited for it gets no new lease on
//!   that connection for a while ([`limits::LEASE_LAPSED_REFUSAL_SECONDS`]): a hung or
//!   hostile client delays commits by one lease at most once in that time, and one that
//!   only paused (a stalled machine) gets its lease back after it.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};
use zodb_storage::Tid;

use crate::limits;

#[derive(Debug)]
struct Lease {
    /// The server stops waiting for this client at this moment.
    expires: Instant,
    /// The newest transaction the client confirmed having applied.
    applied: Tid,
    /// When a commit last waited for this lease until it expired: no new lease on
    /// this connection for [`limits::LEASE_LAPSED_REFUSAL_SECONDS`] after.
    lapsed: Option<Instant>,
    /// The connection ended: the entry goes once expired.
    closed: bool,
}

/// The file whose presence says leases may be held by clients of a process that is no
/// longer running (see the module doc); one per server, beside its first file storage.
#[derive(Debug)]
pub struct Marker {
    path: PathBuf,
    /// Written (and synced) by this process.
    written: Mutex<bool>,
}

impl Marker {
    pub fn new(path: PathBuf) -> Marker {
        Marker {
            path,
            written: Mutex::new(false),
        }
    }

    /// Whether a process before this one may have left leases held: the file is there
    /// (or cannot be looked at).
    fn left_before(&self) -> bool {
        !matches!(std::fs::symlink_metadata(&self.path), Err(e) if e.kind() == std::io::ErrorKind::NotFound)
    }

    /// Writes the file and syncs it and its directory, once per process.
    fn write(&self) -> std::io::Result<()> {
        let mut written = self.written.lock();
        if *written {
            return Ok(());
        }
        let file = std::fs::File::create(&self.path)?;
        file.sync_all()?;
        let dir = self.path.parent().filter(|d| !d.as_os_str().is_empty());
        std::fs::File::open(dir.unwrap_or(std::path::Path::new(".")))?.sync_all()?;
        *written = true;
        Ok(())
    }

    /// Removes the file (a clean stop with no lease left).
    pub fn remove(&self) {
        if let Err(e) = std::fs::remove_file(&self.path)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            tracing::warn!(path = %self.path.display(), "removing the lease marker: {e}");
        }
    }
}

/// The leases of one storage's clients (see the module doc).
#[derive(Debug)]
pub struct Leases {
    /// How long a lease lasts; `None`: none are granted.
    duration: Option<Duration>,
    /// Commits are acknowledged no earlier than this (leases of an earlier process).
    hold_until: Instant,
    leases: Mutex<HashMap<u64, Lease>>,
    /// Signalled when a client confirms a transaction or gives its lease up.
    confirmed: Condvar,
    /// Written before the first grant; `None`: commits always wait one lease at start.
    marker: Option<Arc<Marker>>,
    /// How long a connection whose lease lapsed gets none.
    lapsed_refusal: Duration,
}

impl Leases {
    /// Leases of `duration` (capped at [`limits::LEASE_MILLIS_MAX`]), or none; `marker`
    /// says whether the first commits must wait (see the module doc).
    pub fn new(duration: Option<Duration>, marker: Option<Arc<Marker>>) -> Leases {
        let duration = duration
            .filter(|d| !d.is_zero())
            .map(|d| d.min(Duration::from_millis(limits::LEASE_MILLIS_MAX)));
        let hold = duration.filter(|_| marker.as_ref().is_none_or(|m| m.left_before()));
        if let Some(hold) = hold {
            tracing::info!(
                "read leases of an earlier process may still be held: first commits wait until {hold:?} after the start"
            );
        }
        Leases {
            duration,
            hold_until: Instant::now() + hold.unwrap_or_default(),
            leases: Mutex::new(HashMap::new()),
            confirmed: Condvar::new(),
            marker,
            lapsed_refusal: Duration::from_secs(limits::LEASE_LAPSED_REFUSAL_SECONDS),
        }
    }

    /// No leases at all.
    pub fn none() -> Leases {
        Leases::new(None, None)
    }

    /// Whether a lease granted here may still be held (a clean stop keeps the marker
    /// then).
    pub fn any_held(&self) -> bool {
        let now = Instant::now();
        self.leases.lock().values().any(|l| l.expires > now)
    }

    /// How long the leases granted last (`get_info` offers it), if any are.
    pub fn offered(&self) -> Option<Duration> {
        self.duration
    }

    /// Grants connection `conn` a lease, or renews its own; `queued` is the newest
    /// transaction already queued to it.  `None`: no lease (none offered, the client
    /// let one lapse, or too many are held).
    pub fn grant(&self, conn: u64, queued: Tid) -> Option<Duration> {
        let duration = self.duration?;
        let now = Instant::now();
        let mut leases = self.leases.lock();
        leases.retain(|_, l| !(l.closed && l.expires <= now));
        if !leases.contains_key(&conn) && leases.len() >= limits::LEASES_MAX {
            tracing::warn!(
                leases = leases.len(),
                "read lease refused: {} leases held",
                limits::LEASES_MAX
            );
            return None;
        }
        let lease = leases.entry(conn).or_insert(Lease {
            expires: now,
            applied: Tid::ZERO,
            lapsed: None,
            closed: false,
        });
        if lease
            .lapsed
            .is_some_and(|at| now < at + self.lapsed_refusal)
        {
            return None;
        }
        if let Some(marker) = &self.marker
            && let Err(e) = marker.write()
        {
            tracing::warn!(path = %marker.path.display(), "read lease refused: cannot write the lease marker: {e}");
            return None;
        }
        if lease.expires <= now {
            // Not held by the client either: what is queued it reads before the grant.
            lease.applied = lease.applied.max(queued);
        }
        lease.expires = now + duration;
        Some(duration)
    }

    /// Connection `conn` confirms it has applied transaction `tid`.
    pub fn applied(&self, conn: u64, tid: Tid) {
        let mut leases = self.leases.lock();
        if let Some(lease) = leases.get_mut(&conn)
            && tid > lease.applied
        {
            lease.applied = tid;
            self.confirmed.notify_all();
        }
    }

    /// Connection `conn`'s client gives its lease up (it no longer counts on it).
    pub fn end(&self, conn: u64) {
        if self.leases.lock().remove(&conn).is_some() {
            self.confirmed.notify_all();
        }
    }

    /// Connection `conn` ended: its lease stays until it expires (the client may not
    /// know yet).
    pub fn closed(&self, conn: u64) {
        if let Some(lease) = self.leases.lock().get_mut(&conn) {
            lease.closed = true;
        }
    }

    /// Waits until every lease but `committer`'s has confirmed transaction `tid` or
    /// expired, and until this process's first lease would have expired; then the
    /// commit may be acknowledged.  Waits at most one lease.
    pub fn wait_confirmed(&self, tid: Tid, committer: u64) {
        if self.duration.is_none() {
            return;
        }
        let mut leases = self.leases.lock();
        while Instant::now() < self.hold_until {
            self.confirmed.wait_until(&mut leases, self.hold_until);
        }
        // Each lease is waited for until it expires as granted now. A renewal granted
        // later reaches its client behind this commit's invalidation, which the client
        // applies before it counts on the renewal: it need not be waited for (and a
        // client that renews without confirming cannot hold the commit longer).
        let mut pending: Vec<(u64, Instant)> = leases
            .iter()
            .filter(|(id, l)| **id != committer && l.applied < tid)
            .map(|(id, l)| (*id, l.expires))
            .collect();
        loop {
            let now = Instant::now();
            pending.retain(|&(id, until)| {
                let Some(lease) = leases.get_mut(&id) else {
                    return false; // Given up by its client.
                };
                if lease.applied >= tid {
                    return false;
                }
                if now < until {
                    return true;
                }
                if lease.lapsed.is_none_or(|at| at < until) {
                    if !lease.closed {
                        tracing::warn!(
                            connection = id,
                            %tid,
                            "a leased client did not confirm a commit in time: no lease for it a while"
                        );
                    }
                    lease.lapsed = Some(now);
                }
                false
            });
            let Some(next) = pending.iter().map(|&(_, until)| until).min() else {
                return;
            };
            self.confirmed.wait_until(&mut leases, next);
        }
    }

    /// Leases held now (expired ones not yet dropped included).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.leases.lock().len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn tid(n: u64) -> Tid {
        Tid(n)
    }

    /// How long `leases.wait_confirmed(tid, committer)` waited.
    fn wait(leases: &Leases, tid: Tid, committer: u64) -> Duration {
        let began = Instant::now();
        leases.wait_confirmed(tid, committer);
        began.elapsed()
    }

    fn assert_between(waited: Duration, from_ms: u64, to_ms: u64) {
        assert!(
            waited >= Duration::from_millis(from_ms) && waited < Duration::from_millis(to_ms),
            "waited {waited:?}, not {from_ms}..{to_ms} ms"
        );
    }

    /// Leases of `ms`, past the start's hold.
    fn started(ms: u64) -> Leases {
        let mut leases = Leases::new(Some(Duration::from_millis(ms)), None);
        leases.hold_until = Instant::now();
        leases
    }

    #[test]
    fn a_commit_waits_for_each_leased_client_to_confirm_it() {
        let leases = Arc::new(started(2000));
        assert!(leases.grant(1, tid(5)).is_some());
        assert!(leases.grant(2, tid(5)).is_some());
        // The committer's own lease and what was queued before the grants count.
        assert_between(wait(&leases, tid(5), 3), 0, 1000);
        let confirming = {
            let leases = Arc::clone(&leases);
            std::thread::spawn(move || {
                std::thread::sleep(Duration::from_millis(50));
                leases.applied(1, tid(6));
                std::thread::sleep(Duration::from_millis(50));
                leases.applied(2, tid(7));
            })
        };
        assert_between(wait(&leases, tid(6), 3), 90, 1500);
        confirming.join().unwrap();
        // The committer's own lease is not waited for.
        leases.wait_confirmed(tid(7), 1);
    }

    #[test]
    fn a_lease_not_confirmed_is_waited_for_until_it_expires_and_not_granted_again() {
        let leases = started(1000);
        assert!(leases.grant(1, tid(1)).is_some());
        assert_between(wait(&leases, tid(2), 9), 950, 5000);
        assert_eq!(leases.grant(1, tid(2)), None, "a lapsed client got a lease");
        // The next commit does not wait for it again.
        assert_between(wait(&leases, tid(3), 9), 0, 500);
        // After the refusal time it gets one again (counting what was queued).
        let mut leases = leases;
        leases.lapsed_refusal = Duration::ZERO;
        assert!(leases.grant(1, tid(3)).is_some());
        assert_between(wait(&leases, tid(3), 9), 0, 500);
    }

    /// A client that keeps renewing without confirming (its reader stuck, or hostile)
    /// holds a commit no longer than the lease it held when the commit began.
    #[test]
    fn renewals_during_a_wait_do_not_lengthen_it() {
        let leases = Arc::new(started(600));
        leases.grant(1, tid(1));
        let renewing = {
            let leases = Arc::clone(&leases);
            std::thread::spawn(move || {
                for _ in 0..20 {
                    std::thread::sleep(Duration::from_millis(100));
                    leases.grant(1, tid(1));
                }
            })
        };
        assert_between(wait(&leases, tid(2), 9), 550, 1500);
        renewing.join().unwrap();
    }

    #[test]
    fn a_closed_connections_lease_is_waited_for_until_it_expires_unless_given_up() {
        let leases = started(1000);
        leases.grant(1, tid(1));
        leases.closed(1);
        assert!(wait(&leases, tid(2), 9) >= Duration::from_millis(950));
        leases.grant(2, tid(2));
        leases.end(2);
        assert_between(wait(&leases, tid(3), 9), 0, 500);
        // The expired entry of the closed connection goes at the next grant.
        leases.grant(3, tid(3));
        assert_eq!(leases.len(), 1);
    }

    #[test]
    fn a_renewal_counts_nothing_queued_as_confirmed_but_a_new_grant_does() {
        let leases = started(1000);
        leases.grant(1, tid(1));
        // A renewal while tid 2 is queued and not confirmed: the commit waits.
        leases.grant(1, tid(2));
        assert!(wait(&leases, tid(2), 9) >= Duration::from_millis(950));
        // (Lapsed now.)  Another connection's lease, run out without a commit waiting:
        // granted again, counting what was queued.
        leases.grant(2, tid(2));
        std::thread::sleep(Duration::from_millis(1050));
        assert!(leases.grant(2, tid(3)).is_some());
        assert_between(wait(&leases, tid(3), 9), 0, 500);
    }

    #[test]
    fn the_first_commits_of_a_process_wait_one_lease() {
        let leases = Leases::new(Some(Duration::from_millis(300)), None);
        assert!(wait(&leases, tid(1), 1) >= Duration::from_millis(250));
        let none = Leases::none();
        assert_between(wait(&none, tid(1), 1), 0, 200);
        assert_eq!(none.grant(1, tid(1)), None);
    }

    /// The marker: written before the first grant; a process that finds it waits at
    /// start, one that does not, does not.
    #[test]
    fn the_marker_says_whether_the_first_commits_wait() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs.leases");
        let lease = Some(Duration::from_millis(400));
        let leases = Leases::new(lease, Some(Arc::new(Marker::new(path.clone()))));
        assert_between(wait(&leases, tid(1), 1), 0, 200);
        assert!(!path.exists());
        assert!(leases.grant(1, tid(1)).is_some());
        assert!(path.exists(), "a lease granted without the marker");
        assert!(leases.any_held());
        // The process "crashes": the next one finds the marker and waits.
        let next = Leases::new(lease, Some(Arc::new(Marker::new(path.clone()))));
        assert!(wait(&next, tid(2), 1) >= Duration::from_millis(350));
    }

    #[test]
    fn leases_are_bounded() {
        let leases = started(1000);
        for conn in 0..limits::LEASES_MAX as u64 {
            assert!(leases.grant(conn, tid(1)).is_some());
        }
        assert_eq!(leases.grant(u64::MAX, tid(1)), None);
        // Renewals of held leases still go through.
        assert!(leases.grant(0, tid(1)).is_some());
    }
}
