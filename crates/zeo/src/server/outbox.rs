//! What a connection sends: one queue of encoded frames per connection,
//! written by the connection's writer task, fed by replies, callbacks and
//! other connections' commits.
//!
//! The outbox also remembers the newest transaction this client has been
//! told about (`seen`): the tid its `register` returned, then each
//! invalidation or own commit. Loads are answered as of `seen` and queued
//! only if `seen` has not moved meanwhile, so a client never receives data
//! newer than the invalidations it has been sent (spec §5.5).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;
use tokio::sync::mpsc;
use zodb_storage::{Oid, Tid};

use crate::limits;
use crate::wire::{self, Callback, Encoding, Message};

#[derive(Debug)]
struct State {
    tx: Option<mpsc::UnboundedSender<Vec<u8>>>,
    seen: Tid,
}

#[derive(Debug)]
pub struct Outbox {
    pub id: u64,
    pub peer: String,
    encoding: Encoding,
    state: Mutex<State>,
    /// Bytes queued and not yet written; a client that stops reading is
    /// disconnected rather than allowed to grow the queue without bound.
    queued: AtomicUsize,
}

impl Outbox {
    pub fn new(
        id: u64,
        peer: String,
        encoding: Encoding,
        tx: mpsc::UnboundedSender<Vec<u8>>,
    ) -> Outbox {
        Outbox {
            id,
            peer,
            encoding,
            state: Mutex::new(State {
                tx: Some(tx),
                seen: Tid::ZERO,
            }),
            queued: AtomicUsize::new(0),
        }
    }

    fn frame(&self, msg: &Message) -> Option<Vec<u8>> {
        let payload = match wire::encode(self.encoding, msg) {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(peer = %self.peer, "cannot encode {}: {e}", msg.name);
                return None;
            }
        };
        let mut out = Vec::with_capacity(payload.len() + 4);
        wire::write_frame(&mut out, &payload).ok()?;
        Some(out)
    }

    fn push(&self, state: &mut State, frame: Vec<u8>) {
        let len = frame.len();
        let queued = self.queued.fetch_add(len, Ordering::AcqRel) + len;
        if queued > limits::OUTBOX_BYTES_MAX {
            tracing::warn!(peer = %self.peer, queued, "client is not reading; disconnecting it");
            state.tx = None;
            return;
        }
        if let Some(tx) = &state.tx
            && tx.send(frame).is_err()
        {
            state.tx = None;
        }
    }

    /// Called by the writer after writing `len` bytes.
    pub fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
    }

    pub fn send(&self, msg: &Message) {
        if let Some(frame) = self.frame(msg) {
            let mut s = self.state.lock();
            self.push(&mut s, frame);
        }
    }

    /// Sends `msg` only if the client has been told of nothing newer than
    /// `seen`; otherwise returns what it has been told of since.
    pub fn send_as_of(&self, msg: &Message, seen: Tid) -> Result<(), Tid> {
        let Some(frame) = self.frame(msg) else {
            return Ok(());
        };
        let mut s = self.state.lock();
        if s.seen != seen {
            return Err(s.seen);
        }
        self.push(&mut s, frame);
        Ok(())
    }

    pub fn seen(&self) -> Tid {
        self.state.lock().seen
    }

    /// Records that the client knows of `tid` (its register result, or its
    /// own commit) and sends `msg` under the same lock.
    pub fn advance(&self, tid: Tid, msg: Option<&Message>) {
        let frame = msg.and_then(|m| self.frame(m));
        let mut s = self.state.lock();
        if tid > s.seen {
            s.seen = tid;
        }
        if let Some(frame) = frame {
            self.push(&mut s, frame);
        }
    }

    /// Tells the client that `tid` changed `oids`.
    pub fn invalidate(&self, tid: Tid, oids: &[Oid]) {
        let msg = Callback::InvalidateTransaction {
            tid,
            oids: oids.to_vec(),
        }
        .into_message();
        self.advance(tid, Some(&msg));
    }

    /// Stops sending; the writer ends once the queue is drained.
    pub fn close(&self) {
        self.state.lock().tx = None;
    }

    pub fn is_closed(&self) -> bool {
        self.state.lock().tx.is_none()
    }
}
