//! What a connection sends: one queue of encoded frames per connection, in the
//! order they were sent, fed by replies, callbacks and other connections' commits,
//! and written by the connection's own task (`connection/mod.rs`).
//!
//! Replies to calls answered in line (loads, most calls) are queued while the
//! connection's task is dispatching ([`Outbox::in_line`]): it takes them right
//! after, so they wake nobody and leave in one write with whatever else came in
//! the same read.  Frames queued from elsewhere (a vote or finish on a blocking
//! thread, another client's commit) wake the task through [`Outbox::ready`].
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

use std::collections::VecDeque;
use std::sync::atomic::AtomicBool;

use parking_lot::Mutex;
use tokio::sync::Notify;
use zodb_storage::{Oid, Tid};

use crate::limits;
use crate::wire::{self, Callback, Encoding, Message};

/// One encoded frame, as queued: a reply of its own, or a callback encoded once for
/// every client it goes to (a commit's invalidation, whose oids are many).
#[derive(Debug, Clone)]
pub enum Frame {
    Own(Vec<u8>),
    Shared(Arc<[u8]>),
}

impl std::ops::Deref for Frame {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match self {
            Frame::Own(v) => v,
            Frame::Shared(a) => a,
        }
    }
}

#[derive(Debug)]
struct State {
    /// Frames not yet taken by the connection's task, oldest first.
    queue: VecDeque<Frame>,
    /// False once the outbox is closed: nothing more is queued.
    open: bool,
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
    /// Set when the client went over its bound (and the connection kicked): the
    /// connection's task stops writing at once and drops what is queued, so that its
    /// replies do not hold memory while the connection winds down.
    is_abandoned: AtomicBool,
    /// Wakes the connection's task to close the connection.
    kick: Arc<Notify>,
    /// Wakes the connection's task: frames were queued from elsewhere.
    pub ready: Notify,
    /// Set while the connection's task dispatches a call: it takes the queue when done,
    /// so frames queued meanwhile need not wake it.
    pub in_line: AtomicBool,
    /// Told when queued bytes were written (or the outbox closed): a `sendBlob` stream
    /// waits on it for room.
    drained: Notify,
}

impl Outbox {
    pub fn new(
        id: u64,
        peer: String,
        encoding: Encoding,
        budget: Arc<OutboxBudget>,
        kick: Arc<Notify>,
    ) -> Outbox {
        budget.clients.fetch_add(1, Ordering::AcqRel);
        Outbox {
            id,
            peer,
            encoding,
            state: Mutex::new(State {
                queue: VecDeque::new(),
                open: true,
                seen: Tid::ZERO,
            }),
            queued: AtomicUsize::new(0),
            budget,
            is_abandoned: AtomicBool::new(false),
            kick,
            ready: Notify::new(),
            in_line: AtomicBool::new(false),
            drained: Notify::new(),
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

    fn push(&self, state: &mut State, frame: Frame) {
        if !state.open {
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
            let dropped: usize = state.queue.drain(..).map(|f| f.len()).sum();
            self.written(len + dropped);
            state.open = false;
            self.is_abandoned.store(true, Ordering::Release);
            self.kick.notify_one();
            return;
        }
        state.queue.push_back(frame);
        if !self.in_line.load(Ordering::Acquire) {
            self.ready.notify_one();
        }
    }

    /// True once the client went over its bound.
    pub fn is_abandoned(&self) -> bool {
        self.is_abandoned.load(Ordering::Acquire)
    }

    /// Moves queued frames to `out`, oldest first, until `out` holds `max` bytes.
    pub fn take(&self, out: &mut VecDeque<Frame>, max: usize) {
        let mut s = self.state.lock();
        let mut bytes: usize = out.iter().map(|f| f.len()).sum();
        while bytes < max {
            let Some(f) = s.queue.pop_front() else { break };
            bytes += f.len();
            out.push_back(f);
        }
    }

    /// Called after writing `len` bytes (or dropping them unwritten).
    pub fn written(&self, len: usize) {
        self.queued.fetch_sub(len, Ordering::AcqRel);
        self.budget.queued.fetch_sub(len, Ordering::AcqRel);
        self.drained.notify_waiters();
    }

    /// Waits until at most `max` bytes are queued; false if the outbox closed.
    pub async fn wait_for_room(&self, max: usize) -> bool {
        loop {
            let drained = self.drained.notified();
            tokio::pin!(drained);
            drained.as_mut().enable();
            if self.is_closed() {
                return false;
            }
            if self.queued.load(Ordering::Acquire) <= max {
                return true;
            }
            drained.await;
        }
    }

    pub fn send(&self, msg: &Message) {
        if let Some(frame) = self.frame(msg) {
            let mut s = self.state.lock();
            self.push(&mut s, Frame::Own(frame));
        }
    }

    /// How this client's messages are encoded.
    pub fn encoding(&self) -> Encoding {
        self.encoding
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
        self.push(&mut s, Frame::Own(frame));
        Ok(())
    }

    /// [`Outbox::send_as_of`] of a frame already encoded.
    pub fn send_frame_as_of(&self, frame: Vec<u8>, seen: Tid) -> Result<(), Tid> {
        let mut s = self.state.lock();
        if s.seen != seen {
            return Err(s.seen);
        }
        self.push(&mut s, Frame::Own(frame));
        Ok(())
    }

    pub fn seen(&self) -> Tid {
        self.state.lock().seen
    }

    /// Records that the client knows of `tid` (its register result, or its
    /// own commit) and sends `msg` under the same lock.
    pub fn advance(&self, tid: Tid, msg: Option<&Message>) {
        let frame = msg.and_then(|m| self.frame(m)).map(Frame::Own);
        self.advance_with(tid, frame);
    }

    /// [`Outbox::advance`] with a frame already encoded.
    fn advance_with(&self, tid: Tid, frame: Option<Frame>) {
        let mut s = self.state.lock();
        if tid > s.seen {
            s.seen = tid;
        }
        if let Some(frame) = frame {
            self.push(&mut s, frame);
        }
    }

    /// Tells the client that `tid` changed some objects: `frame` is the
    /// [`invalidation`] in this client's encoding.
    pub fn invalidate(&self, tid: Tid, frame: Frame) {
        self.advance_with(tid, Some(frame));
    }

    /// Ends the connection from outside (the server can no longer say what changed
    /// since its client's cache was filled): nothing more is queued or written, and
    /// the connection's task closes it.
    pub fn disconnect(&self) {
        self.state.lock().open = false;
        self.is_abandoned.store(true, Ordering::Release);
        self.drained.notify_waiters();
        self.kick.notify_one();
    }

    /// Stops queueing; what is queued may still be written.
    pub fn close(&self) {
        self.state.lock().open = false;
        self.drained.notify_waiters();
    }

    pub fn is_closed(&self) -> bool {
        !self.state.lock().open
    }
}

/// The `invalidateTransaction(tid, oids)` callback framed in `encoding`, to be queued for
/// every client of that encoding (encoded once per commit, not once per client).
pub fn invalidation(encoding: Encoding, tid: Tid, oids: &[Oid]) -> Option<Frame> {
    let msg = Callback::InvalidateTransaction {
        tid,
        oids: oids.to_vec(),
    }
    .into_message();
    match wire::encode_framed(encoding, &msg) {
        Ok(f) => Some(Frame::Shared(f.into())),
        Err(e) => {
            tracing::error!(
                "cannot encode an invalidation of {} objects: {e}",
                oids.len()
            );
            None
        }
    }
}

impl Drop for Outbox {
    /// What was queued and never written (the connection gave up on the client) leaves
    /// the shared budget with the outbox.
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

    fn outbox(id: u64, budget: &Arc<OutboxBudget>) -> Outbox {
        Outbox::new(
            id,
            format!("peer {id}"),
            Encoding::Pickle,
            Arc::clone(budget),
            Arc::new(Notify::new()),
        )
    }

    /// Takes one queued frame, as the connection's task does.
    fn take_one(o: &Outbox) -> Option<Frame> {
        let mut out = VecDeque::new();
        o.take(&mut out, 1);
        out.pop_front()
    }

    fn reply(bytes: usize) -> Message {
        Message::reply(Value::Int(1), Value::Bytes(vec![0; bytes]))
    }

    #[test]
    fn a_client_over_its_share_of_the_total_is_disconnected_and_the_others_are_not() {
        let budget = Arc::new(OutboxBudget::new(100_000));
        let greedy = outbox(1, &budget);
        let modest = outbox(2, &budget);
        // The modest client's queue is small and drained.
        modest.send(&reply(1_000));
        let frame = take_one(&modest).expect("a queued frame");
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
            take_one(&modest).is_some(),
            "the other client is still served"
        );
        // What the greedy client had queued is dropped, and leaves the budget, at once.
        assert!(budget.queued() < 2_000, "{}", budget.queued());
        assert!(take_one(&greedy).is_none(), "nothing left to write");
        drop(greedy);
        assert!(budget.queued() < 2_000, "{}", budget.queued());
    }
}
