//! What a connection sends: one queue of encoded frames per connection,
//! written by the connection's writer task, fed by replies, callbacks and
//! other connections' commits.
//!
//! The bytes queued are bounded per client (`OUTBOX_BYTES_MAX`) and for all
//! clients together ([`OutboxBudget`]): a client past its bound, or past its
//! share when the total is over, is disconnected.
//!
//! The outbox also remembers the newest transaction this client has been
//! told about (`seen`): the tid its `register` returned, then each
//! invalidation or own commit. Loads are answered as of `seen` and queued
//! only if `seen` has not moved meanwhile, so a client never receives data
//! newer than the invalidations it has been sent (spec §5.5).

use std::sync::Arc;
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

/// The bytes queued for all the clients of a server, and their bound.
#[derive(Debug)]
pub struct OutboxBudget {
    queued: AtomicUsize,
    max: usize,
    clients: AtomicUsize,
}

impl OutboxBudget {
    pub fn new(max: usize) -> OutboxBudget {
        OutboxBudget {
            queued: AtomicUsize::new(0),
            max,
            clients: AtomicUsize::new(0),
        }
    }

    /// Bytes queued for all clients now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }
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
    budget: Arc<OutboxBudget>,
    /// Tells the writer to stop at once and drop what is queued: the client went over
    /// its bound, and its replies must not hold memory while the connection winds down.
    pub abandoned: tokio::sync::Notify,
    /// Wakes the connection's reading loop to close the connection.
    kick: Arc<tokio::sync::Notify>,
}

impl Outbox {
    pub fn new(
        id: u64,
        peer: String,
        encoding: Encoding,
        tx: mpsc::UnboundedSender<Vec<u8>>,
        budget: Arc<OutboxBudget>,
        kick: Arc<tokio::sync::Notify>,
    ) -> Outbox {
        budget.clients.fetch_add(1, Ordering::AcqRel);
        Outbox {
            id,
            peer,
            encoding,
            state: Mutex::new(State {
                tx: Some(tx),
                seen: Tid::ZERO,
            }),
            queued: AtomicUsize::new(0),
            budget,
            abandoned: tokio::sync::Notify::new(),
            kick,
        }
    }

    fn frame(&self, msg: &Message) -> Option<Vec<u8>> {
        match wire::encode_framed(self.encoding, msg) {
            Ok(f) => Some(f),
            Err(e) => {
                tracing::error!(peer = %self.peer, "cannot encode {}: {e}", msg.name);
                None
            }
        }
    }

    fn push(&self, state: &mut State, frame: Vec<u8>) {
        if state.tx.is_none() {
            return;
        }
        let len = frame.len();
        let queued = self.queued.fetch_add(len, Ordering::AcqRel) + len;
        let total = self.budget.queued.fetch_add(len, Ordering::AcqRel) + len;
        let share = self.budget.max / self.budget.clients.load(Ordering::Acquire).max(1);
        let over = if queued > limits::OUTBOX_BYTES_MAX {
            Some("client is not reading; disconnecting it")
        } else if total > self.budget.max && queued > share {
            Some(
                "replies queued for all clients are over their bound and this client holds more than its share; disconnecting it",
            )
        } else {
            None
        };
        if let Some(why) = over {
            tracing::warn!(peer = %self.peer, queued, total, "{why}");
            self.written(len);
            state.tx = None;
            self.abandoned.notify_one();
            self.kick.notify_one();
            return;
        }
        if let Some(tx) = &state.tx
            && tx.send(frame).is_err()
        {
            // The writer is gone: nothing was queued.
            self.written(len);
            state.tx = None;
        }
    }

    /// Called by the writer after writing `len` bytes.
    pub fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        self.budget.queued.fetch_sub(len, Ordering::AcqRel);
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

impl Drop for Outbox {
    /// What was queued and never written (the writer gave up on the client) leaves the
    /// shared budget with the outbox.
    fn drop(&mut self) {
        let left = self.queued.load(Ordering::Acquire);
        self.budget.queued.fetch_sub(left, Ordering::AcqRel);
        self.budget.clients.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wire::Value;

    fn outbox(id: u64, budget: &Arc<OutboxBudget>) -> (Outbox, mpsc::UnboundedReceiver<Vec<u8>>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let outbox = Outbox::new(
            id,
            format!("peer {id}"),
            Encoding::Pickle,
            tx,
            Arc::clone(budget),
            Arc::new(tokio::sync::Notify::new()),
        );
        (outbox, rx)
    }

    fn reply(bytes: usize) -> Message {
        Message::reply(Value::Int(1), Value::Bytes(vec![0; bytes]))
    }

    #[test]
    fn a_client_over_its_share_of_the_total_is_disconnected_and_the_others_are_not() {
        let budget = Arc::new(OutboxBudget::new(100_000));
        let (greedy, _greedy_rx) = outbox(1, &budget);
        let (modest, mut modest_rx) = outbox(2, &budget);
        // The modest client's queue is small and drained.
        modest.send(&reply(1_000));
        let frame = modest_rx.try_recv().expect("a queued frame");
        modest.written(frame.len());
        // The greedy one reads nothing: past the total it holds more than half.
        for _ in 0..9 {
            greedy.send(&reply(10_000));
        }
        assert!(!greedy.is_closed(), "under the total so far");
        greedy.send(&reply(10_000));
        assert!(greedy.is_closed(), "over the total and over its share");
        assert!(!modest.is_closed());
        modest.send(&reply(1_000));
        assert!(
            modest_rx.try_recv().is_ok(),
            "the other client is still served"
        );
        // What the greedy client had queued leaves the budget with it.
        assert!(budget.queued() >= 90_000, "{}", budget.queued());
        drop(greedy);
        assert!(budget.queued() < 2_000, "{}", budget.queued());
    }
}
