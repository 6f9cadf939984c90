//! Staying connected: the manager thread waits for the connection to be lost and
//! reconnects (every 1–2 s while it fails, as Python's client does), and while a
//! read-only fallback connection is in use it keeps trying the other addresses for a
//! writable one.

use std::hash::{BuildHasher, Hasher};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::Shared;
use crate::limits;

/// A delay of 1–2 s, uniformly (Python's `1 + random()`).
pub(super) fn reconnect_delay() -> Duration {
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default(),
    );
    let span = limits::CLIENT_RECONNECT_DELAY_MAX_MILLIS
        .saturating_sub(limits::CLIENT_RECONNECT_DELAY_MIN_MILLIS)
        .max(1);
    Duration::from_millis(limits::CLIENT_RECONNECT_DELAY_MIN_MILLIS + h.finish() % span)
}

impl Shared {
    /// Waits `delay` unless the client closes first; false if it closed.
    fn pause(&self, delay: Duration) -> bool {
        let deadline = Instant::now() + delay;
        let mut st = self.conn.lock();
        while !st.closed && Instant::now() < deadline {
            self.conn_cv.wait_until(&mut st, deadline);
        }
        !st.closed
    }
    /// The manager thread: reconnects after a loss, upgrades a read-only fallback
    /// connection when another address takes a writable registration.
    pub(super) fn manage(self: Arc<Self>) {
        loop {
            let upgrade_from = {
                let mut st = self.conn.lock();
                loop {
                    if st.closed {
                        return;
                    }
                    match &st.current {
                        None => break None,
                        Some(c) if st.fallback && self.addresses.len() > 1 => {
                            break Some(c.address.clone());
                        }
                        Some(_) => self.conn_cv.wait(&mut st),
                    }
                }
            };
            if !self.pause(reconnect_delay()) {
                return;
            }
            let result = match &upgrade_from {
                None => self.connect_any(None, false),
                Some(address) => {
                    let still = {
                        let st = self.conn.lock();
                        st.fallback && st.current.as_ref().is_some_and(|c| &c.address == address)
                    };
                    if !still {
                        continue;
                    }
                    self.connect_any(Some(address), true)
                }
            };
            if let Err(e) = result
                && upgrade_from.is_none()
            {
                let why = e.error.to_string();
                let mut st = self.conn.lock();
                // Say it once, not every 1–2 s.
                if st.last_error.as_deref() != Some(why.as_str()) {
                    tracing::warn!("reconnecting failed, will retry: {why}");
                }
                st.last_error = Some(why);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delay_in_range() {
        for _ in 0..20 {
            let d = reconnect_delay();
            assert!(d >= Duration::from_millis(1000) && d < Duration::from_millis(2000));
        }
    }
}
