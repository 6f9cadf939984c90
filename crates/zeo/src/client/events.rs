//! What the reader thread of a connection reports to the client ([`Events`]), applied
//! in stream order: replies' cache updates (a load's revision, our own commit at its
//! `tpc_finish` reply), other clients' invalidations, `info` updates, and the loss of
//! the connection (which wakes the reconnecting manager thread).
//!
//! Listeners hear of each transaction right after the cache applies it; see "Listeners"
//! in the module doc of `client`.

use std::sync::atomic::Ordering;

use zodb_storage::{Oid, Tid};

use super::Shared;
use super::connection::{CallResult, Connection, Events, FinishUpdate, Post};
use crate::wire::{self, as_tid};

impl Events for Shared {
    fn post(&self, _conn: &Connection, post: Post, result: &CallResult) {
        match (post, result) {
            (Post::Nothing, _) | (_, Err(_)) => {}
            (Post::Load(oid), Ok(reply)) => {
                if let Ok(Some(rev)) = wire::read_load_reply(reply) {
                    self.cache
                        .lock()
                        .cache
                        .store(oid, rev.start, rev.end, rev.data);
                }
            }
            (Post::Finish(update), Ok(reply)) => {
                if let Some(tid) = as_tid(reply) {
                    let FinishUpdate {
                        stores,
                        changed,
                        oids,
                    } = update;
                    let mut state = self.cache.lock();
                    for oid in changed {
                        state.cache.invalidate(oid, tid);
                    }
                    for (oid, data) in stores {
                        state.cache.invalidate(oid, tid);
                        state.cache.store(oid, tid, None, data);
                    }
                    state.cache.advance(tid);
                    // Our own commit: no invalidation will come for it.  Reported here,
                    // in stream order with the others' invalidations, before the caller
                    // of `finish` is woken.
                    let mut reported = self.reported.lock();
                    drop(state);
                    self.report(&mut reported, tid, &oids);
                }
            }
        }
    }

    fn invalidate(&self, conn: &Connection, tid: Tid, oids: Vec<Oid>) {
        let mut state = self.cache.lock();
        if let Some(held) = state.held.get_mut(&conn.id) {
            // Applied, and reported, by verification.
            held.push((tid, oids));
            return;
        }
        for &oid in &oids {
            state.cache.invalidate(oid, tid);
        }
        state.cache.advance(tid);
        let mut reported = self.reported.lock();
        drop(state);
        self.report(&mut reported, tid, &oids);
        drop(reported);
        if self.lease.confirms(conn.id) {
            // Applied and reported: the server may acknowledge the commit (spec §11).
            // A failed write ends the connection, which the reader sees.
            let _ = conn.send_async([crate::wire::Call::LeaseApplied { tid }]);
        }
    }

    fn info(&self, length: Option<i64>, size: Option<i64>) {
        let mut i = self.info.lock();
        if let Some(n) = length {
            i.length = u64::try_from(n).unwrap_or(0);
        }
        if let Some(n) = size {
            i.size = u64::try_from(n).unwrap_or(0);
        }
    }

    fn blob(&self, callback: crate::wire::Callback) {
        match &self.blobs {
            Some(b) => b.receive(callback),
            None => tracing::debug!("a blob from the server, and no blob directory: ignored"),
        }
    }

    fn lost(&self, conn: &Connection, why: &str) {
        self.lease.lost(conn.id);
        self.cache.lock().held.remove(&conn.id);
        let mut st = self.conn.lock();
        if st.current.as_ref().is_some_and(|c| c.id == conn.id) {
            st.current = None;
            st.read_only = false;
            st.fallback = false;
            st.last_error = Some(why.to_string());
            if !self.closed.load(Ordering::Acquire) {
                tracing::warn!("{why}; reconnecting");
            }
        }
        self.conn_cv.notify_all();
    }
}
