//! One client connection: the handshake, then a loop that reads messages in order and
//! hands each to [`Connection::dispatch`] (spec §2, §3, §5).
//!
//! Calls that only buffer (`tpc_begin`, `storea`, ...) are handled in line, so they are
//! applied in the order they were sent.  Loads are answered in line too, on this
//! connection's task (a read from the page cache then costs no thread hand-off;
//! see `reads.rs`), and so is the vote of a small transaction whose objects no other
//! vote holds (see `txn.rs`).  Calls that may wait or take long (`vote` waiting for its
//! object locks, `tpc_finish` waiting for the group commit's fdatasync, `pack`, history, iterators)
//! run on blocking threads and reply when done, so one client's deferred vote never
//! stops its connection from reading, and replies may leave out of order (they are
//! matched by msgid).  Everything a connection sends goes through its `Outbox`.
//!
//! One task per connection both reads and writes: it takes what its outbox holds and
//! writes it (before reading more), then reads; replies to calls it answers itself are
//! written by it with no hand-off, and all the messages one read brought are answered
//! before their replies leave, in one vectored write.  While the client does not read,
//! replies wait in the outbox (bounded there) and requests are still read.
//!
//! Pieces:
//!
//! * this file: the connection's loop (reads, and writes of what the outbox holds), the
//!   connection's state, replies;
//! * `dispatch.rs`: the `match` over [`Call`](crate::wire::Call);
//! * `txn.rs`: the transaction's phases, vote (`apply_and_vote`), finish and abort;
//! * `buffer.rs`: the buffered operations of an open transaction, spilled to a temporary
//!   file past a memory bound;
//! * `blobs.rs`: blob uploads, blobs in a shared directory, and `sendBlob`;
//! * `reads.rs`: loads, history, undo log, invalidations, `record_iternext`, pack;
//! * `iterators.rs`: the server-side transaction and record iterators.

mod blobs;
mod buffer;
mod dispatch;
mod iterators;
mod reads;
mod txn;

use std::collections::VecDeque;
use std::ops::Range;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Notify;
use zodb_pickle::Value;
use zodb_storage::StorageError;

use super::entry::StorageEntry;
use super::errors;
use super::outbox::{Frame, Outbox};
use super::{Shared, Slot};
use crate::limits;
use crate::wire::{self, Encoding, Handshake, Message};
use iterators::Iterators;
use txn::{Phase, Txn};

/// Why a connection ends early: a protocol error, or a failed one-way call.
#[derive(Debug)]
struct Close(String);

type Step = Result<(), Close>;

fn close(why: impl Into<String>) -> Close {
    Close(why.into())
}

#[derive(Default)]
struct State {
    read_only: bool,
    txn: Option<Txn>,
    iterators: Iterators,
    /// A blob file being uploaded (`storeBlobStart` to `storeBlobEnd`).
    upload: Option<blobs::Upload>,
}

/// When the connection's voted transaction times out (`transaction-timeout`): set by a
/// successful vote, cleared when the transaction ends; the connection's task sleeps
/// until then and closes the connection if the transaction is still voted. One timer
/// per connection, not a task per vote (a task woke the I/O thread once per commit, when
/// its sleep ended, and a busy server held tens of thousands of them).
#[derive(Debug)]
struct VotedDeadline {
    epoch: std::time::Instant,
    /// Milliseconds after `epoch`; 0: none.
    millis: AtomicU64,
}

impl VotedDeadline {
    fn new() -> VotedDeadline {
        VotedDeadline {
            epoch: std::time::Instant::now(),
            millis: AtomicU64::new(0),
        }
    }

    fn set(&self, after: Duration) {
        let at = self.epoch.elapsed().saturating_add(after);
        let millis = u64::try_from(at.as_millis()).unwrap_or(u64::MAX).max(1);
        self.millis.store(millis, Ordering::Release);
    }

    fn clear(&self) {
        self.millis.store(0, Ordering::Release);
    }

    /// Clears the deadline if it is still `millis` (not set again meanwhile).
    fn clear_if(&self, millis: u64) {
        let _ = self
            .millis
            .compare_exchange(millis, 0, Ordering::AcqRel, Ordering::Acquire);
    }

    fn millis(&self) -> u64 {
        self.millis.load(Ordering::Acquire)
    }

    fn instant(&self, millis: u64) -> tokio::time::Instant {
        let at = self
            .epoch
            .checked_add(Duration::from_millis(millis))
            .unwrap_or_else(|| std::time::Instant::now() + Duration::from_secs(86_400 * 365));
        tokio::time::Instant::from_std(at)
    }
}

pub struct Connection {
    shared: Arc<Shared>,
    /// This connection's place in the server's connection count.
    slot: Slot,
    outbox: Arc<Outbox>,
    /// The storage registered with, set once by `register` (read without a lock, at
    /// every call).
    entry: OnceLock<Arc<StorageEntry>>,
    state: Arc<Mutex<State>>,
    closed: Arc<AtomicBool>,
    /// Wakes the reading loop to close the connection (evicted before registering, the
    /// shutdown's grace over, the outbox over its bound).
    kick: Arc<Notify>,
    voted_deadline: Arc<VotedDeadline>,
}

fn bytes8(b: [u8; 8]) -> Value {
    Value::Bytes(b.to_vec())
}

/// Runs one connection to its end.
///
/// By `register_by` (`register_timeout` after its accept) a connection must have sent its
/// handshake and `register`; one that stays silent (or only talks) is closed then, so
/// sockets opened and left idle do not hold the server's slots.
pub async fn serve<S>(
    shared: Arc<Shared>,
    stream: S,
    peer: String,
    id: u64,
    slot: Slot,
    register_by: tokio::time::Instant,
) where
    S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut reader, mut writer) = tokio::io::split(stream);
    let encoding = shared.config.encoding;
    let mut announcement = Vec::new();
    // (A TLS stream may keep sealed bytes until flushed.)
    if wire::write_frame(&mut announcement, wire::handshake_announcement(encoding)).is_err()
        || writer.write_all(&announcement).await.is_err()
        || writer.flush().await.is_err()
    {
        return;
    }
    let mut incoming = Incoming::default();
    // Until a client has registered it gets small frames only: an
    // anonymous peer must not make us decode tens of megabytes.
    let frame_max_registered = shared.config.frame_size_max;
    let frame_max_anonymous = frame_max_registered.min(limits::FRAME_SIZE_MAX_UNREGISTERED);
    let kick = Arc::clone(&slot.kick);
    let read = tokio::time::timeout_at(
        register_by,
        read_frame(&mut reader, &mut incoming, frame_max_anonymous),
    );
    let handshake = match tokio::select! {
        r = read => r,
        _ = kick.notified() => {
            tracing::info!(peer = %peer, "closing: newer connections took its place before a handshake");
            return;
        }
    } {
        Ok(Ok(Some(payload))) => incoming.payload(payload).to_vec(),
        Ok(Ok(None)) => return,
        Err(_) => {
            tracing::info!(peer = %peer, "closing: no handshake within the register timeout");
            return;
        }
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer, "closing: {e}");
            return;
        }
    };
    let encoding = match wire::parse_client_handshake(&handshake) {
        Ok(Handshake::Protocol(enc)) => enc,
        Ok(Handshake::Ruok) => {
            let status = shared.status_json();
            let mut out = Vec::new();
            if wire::write_frame(&mut out, status.as_bytes()).is_ok() {
                let _ = writer.write_all(&out).await;
            }
            let _ = writer.shutdown().await;
            return;
        }
        Err(e) => {
            tracing::warn!(peer = %peer, "bad handshake: {e}");
            return;
        }
    };
    tracing::info!(peer = %peer, encoding = ?encoding, "connected");

    let outbox = Arc::new(Outbox::new(
        id,
        peer.clone(),
        encoding,
        Arc::clone(&shared.outbox_budget),
        Arc::clone(&kick),
    ));
    let mut sending = Sending {
        writer,
        out: VecDeque::new(),
        head: 0,
        unflushed: false,
    };
    let conn = Connection {
        shared: Arc::clone(&shared),
        slot,
        outbox: Arc::clone(&outbox),
        entry: OnceLock::new(),
        state: Arc::new(Mutex::new(State::default())),
        closed: Arc::new(AtomicBool::new(false)),
        kick,
        voted_deadline: Arc::new(VotedDeadline::new()),
    };
    let mut shutdown = shared.shutdown.subscribe();
    let mut abandoned = false;
    // The events the loop waits for besides the socket, made once and polled in every
    // round (a `Notified` made and dropped each round registers with its `Notify` and
    // leaves it again, under its lock, twice per request): remade only once fired.
    let kicked = conn.kick.notified();
    tokio::pin!(kicked);
    let ready = outbox.ready.notified();
    tokio::pin!(ready);
    let register_deadline = tokio::time::sleep_until(register_by);
    tokio::pin!(register_deadline);
    let mut shutdown_seen = false;
    let shutdown_changed = shutdown.changed();
    tokio::pin!(shutdown_changed);
    let voted_timeout = tokio::time::sleep_until(register_by);
    tokio::pin!(voted_timeout);
    let mut voted_armed = 0u64;
    let why = loop {
        let voted = conn.voted_deadline.millis();
        if voted != voted_armed {
            voted_armed = voted;
            if voted != 0 {
                voted_timeout
                    .as_mut()
                    .reset(conn.voted_deadline.instant(voted));
            }
        }
        if sending.out.is_empty() {
            outbox.take(&mut sending.out, limits::WRITE_BATCH_BYTES_MAX);
        }
        let pending = !sending.out.is_empty() || sending.unflushed;
        // A write the socket takes at once needs no select (which registers with, and
        // then leaves, every event source): the usual case for replies just answered
        // in line, once per request.
        if pending && !outbox.is_abandoned() {
            match sending.try_write_some(&outbox).await {
                Some(Ok(())) => continue,
                Some(Err(e)) => {
                    outbox.close();
                    break format!("write error: {e}");
                }
                None => {}
            }
        }
        // Writes go first: replies leave before more requests are read.
        let frame = tokio::select! {
            biased;
            // A client over its bound is kicked too (`Outbox::push`).
            _ = &mut kicked => {
                if outbox.is_abandoned() {
                    abandoned = true;
                    break "its replies went over their bound".to_string();
                }
                break "closed by the server".to_string();
            }
            r = sending.write_some(&outbox), if pending => {
                if let Err(e) = r {
                    outbox.close();
                    break format!("write error: {e}");
                }
                continue;
            }
            _ = &mut register_deadline, if !conn.slot.is_registered() => {
                break "no register within the register timeout".to_string();
            }
            _ = &mut shutdown_changed, if !shutdown_seen => {
                shutdown_seen = true;
                if conn.wait_for_voted_transaction().await {
                    continue;
                }
                break "server shutting down".to_string();
            }
            _ = &mut voted_timeout, if voted_armed != 0 => {
                if conn.voted_deadline.millis() == voted_armed && conn.is_voted() {
                    if let Some(limit) = conn.shared.config.transaction_timeout {
                        tracing::warn!(
                            peer = %peer,
                            "transaction timeout: voted {:.1} s ago and not finished; aborting \
                             it (its object locks are released) and closing the connection",
                            limit.as_secs_f64()
                        );
                    }
                    break "transaction timeout".to_string();
                }
                // Ended meanwhile (a deadline left set would fire again at once).
                conn.voted_deadline.clear_if(voted_armed);
                voted_armed = 0;
                continue;
            }
            _ = &mut ready, if !pending => {
                ready.set(outbox.ready.notified());
                continue;
            }
            f = read_frame(&mut reader, &mut incoming, conn.frame_max(frame_max_anonymous, frame_max_registered)) => f,
        };
        let mut payload = match frame {
            Ok(Some(p)) => p,
            Ok(None) => break "disconnected".to_string(),
            Err(e) => break e,
        };
        // This message, then every whole one the same reads brought (a prefetch of
        // loads): their replies are queued without waking anyone and leave together.
        outbox.in_line.store(true, Ordering::Release);
        let stop = loop {
            if outbox.is_abandoned() {
                break Some("client not reading".to_string());
            }
            // Decoded where it lies in the read buffer: no copy of the frame.
            let bytes = incoming.payload(payload);
            // A registered client's stores and loads, in the shape clients send them,
            // are read without a tree of values (`wire::hot`); anything else as usual.
            let hot = (encoding == Encoding::Pickle && conn.entry.get().is_some())
                .then(|| wire::hot::decode(bytes))
                .flatten();
            let done = match hot {
                Some(call) => conn.run_hot(call),
                None => match wire::decode_from_client(encoding, bytes) {
                    Ok(msg) => conn.dispatch(msg),
                    Err(e) => break Some(format!("unreadable message: {e}")),
                },
            };
            if let Err(Close(why)) = done {
                break Some(why);
            }
            match incoming.next_frame(conn.frame_max(frame_max_anonymous, frame_max_registered)) {
                Ok(Some(p)) => payload = p,
                Ok(None) => break None,
                Err(e) => break Some(e),
            }
        };
        outbox.in_line.store(false, Ordering::Release);
        if let Some(why) = stop {
            break why;
        }
    };
    tracing::info!(peer = %peer, "connection closed: {why}");
    conn.cleanup();
    outbox.close();
    if !abandoned {
        // What is queued gets a moment to leave; a client that does not read does not
        // keep the connection, nor a server that is stopping, waiting for it.
        let flush = Duration::from_millis(limits::CLOSE_FLUSH_MILLIS);
        match tokio::time::timeout(flush, sending.flush(&outbox)).await {
            Ok(_) => {}
            Err(_) => tracing::warn!(
                peer = %peer,
                "the client read nothing for {flush:?} after the close; dropped what was queued"
            ),
        }
    }
    // What never left leaves the budget (and memory) now.
    sending.drop_all(&outbox);
}

/// The connection's writing half and the frames taken from its outbox that have not
/// been written whole yet.
struct Sending<W> {
    writer: W,
    out: VecDeque<Frame>,
    /// Bytes of `out`'s first frame already written.
    head: usize,
    /// Written bytes the writer may still hold: a TLS stream takes what it is given and
    /// keeps the sealed records it could not send yet, so, once `out` is empty, a
    /// flush must push them out before the connection waits for the client.
    unflushed: bool,
}

impl<W: AsyncWrite + Unpin> Sending<W> {
    /// One vectored write of the pending frames, or, with none, the flush that follows
    /// them; frames written whole leave the outbox's count.
    async fn write_some(&mut self, outbox: &Outbox) -> std::io::Result<()> {
        if self.out.is_empty() {
            // Only a flush is pending (cancel-safe: an interrupted one is tried again).
            self.writer.flush().await?;
            self.unflushed = false;
            return Ok(());
        }
        self.unflushed = true;
        // On the stack: no allocation per write.
        let mut slices = [std::io::IoSlice::new(&[]); limits::WRITE_FRAMES_MAX];
        let mut count = 0;
        for (slot, (i, f)) in slices.iter_mut().zip(self.out.iter().enumerate()) {
            *slot = std::io::IoSlice::new(if i == 0 { &f[self.head..] } else { f });
            count += 1;
        }
        let mut n = self.writer.write_vectored(&slices[..count]).await?;
        if n == 0 {
            return Err(std::io::ErrorKind::WriteZero.into());
        }
        while let Some(front) = self.out.front() {
            let left = front.len() - self.head;
            if n < left {
                self.head += n;
                break;
            }
            n -= left;
            self.head = 0;
            if let Some(f) = self.out.pop_front() {
                outbox.written(f.len());
            }
        }
        Ok(())
    }

    /// [`Sending::write_some`] if the writer takes it without waiting; `None` if it
    /// would wait (nothing was written then: `write_some` is cancel-safe).
    async fn try_write_some(&mut self, outbox: &Outbox) -> Option<std::io::Result<()>> {
        let write = self.write_some(outbox);
        tokio::pin!(write);
        std::future::poll_fn(|cx| match write.as_mut().poll(cx) {
            Poll::Ready(r) => Poll::Ready(Some(r)),
            Poll::Pending => Poll::Ready(None),
        })
        .await
    }

    /// Writes everything pending and queued, then shuts the writing half down.
    async fn flush(&mut self, outbox: &Outbox) -> std::io::Result<()> {
        loop {
            if self.out.is_empty() {
                outbox.take(&mut self.out, limits::WRITE_BATCH_BYTES_MAX);
                if self.out.is_empty() {
                    break;
                }
            }
            self.write_some(outbox).await?;
        }
        self.writer.shutdown().await
    }

    /// Drops what was never written, and what is still queued.
    fn drop_all(&mut self, outbox: &Outbox) {
        loop {
            let n: usize = self.out.drain(..).map(|f| f.len()).sum();
            outbox.written(n);
            self.head = 0;
            outbox.take(&mut self.out, usize::MAX);
            if self.out.is_empty() {
                break;
            }
        }
    }
}

/// What the connection has read and not yet consumed: `buf[start..]`.  Frames are
/// decoded where they lie (no copy per frame), and the bytes before `start` are dropped
/// only before the next read, moving just the partial frame that follows them (once per
/// read, not once per frame: a read bringing a hundred `storea` frames moves no more
/// than one frame's bytes).
#[derive(Debug, Default)]
struct Incoming {
    buf: Vec<u8>,
    start: usize,
}

impl Incoming {
    /// The next whole frame already read, if any: where its payload lies in
    /// [`Incoming::payload`], valid until the next read.
    fn next_frame(&mut self, max: usize) -> Result<Option<Range<usize>>, String> {
        let unread = self.buf.get(self.start..).unwrap_or_default();
        match wire::parse_frame(unread, max) {
            Ok(Some((range, consumed))) => {
                let payload = self.start + range.start..self.start + range.end;
                self.start += consumed;
                Ok(Some(payload))
            }
            Ok(None) => Ok(None),
            Err(e) => Err(format!("bad frame: {e}")),
        }
    }

    fn payload(&self, range: Range<usize>) -> &[u8] {
        self.buf.get(range).unwrap_or_default()
    }

    /// Reads more bytes into the buffer's spare room (no zeroed bounce buffer), after
    /// dropping what was consumed; `Ok(0)` at the end of the stream.
    async fn fill<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        if self.start == self.buf.len() {
            self.buf.clear();
            // A large frame's room is not kept for the small ones that follow.
            if self.buf.capacity() > limits::READ_BUFFER_BYTES_KEPT {
                self.buf = Vec::new();
            }
        } else if self.start > 0 {
            self.buf.copy_within(self.start.., 0);
            self.buf.truncate(self.buf.len() - self.start);
        }
        self.start = 0;
        self.buf.reserve(limits::READ_BYTES_MIN);
        reader.read_buf(&mut self.buf).await
    }

    /// True when no byte of a next frame has arrived.
    fn is_empty(&self) -> bool {
        self.start == self.buf.len()
    }
}

/// Reads one frame; `Ok(None)` at a clean end of stream.
async fn read_frame<R: AsyncRead + Unpin>(
    reader: &mut R,
    incoming: &mut Incoming,
    max: usize,
) -> Result<Option<Range<usize>>, String> {
    loop {
        if let Some(payload) = incoming.next_frame(max)? {
            return Ok(Some(payload));
        }
        match incoming.fill(reader).await {
            Ok(0) => {
                return if incoming.is_empty() {
                    Ok(None)
                } else {
                    Err("disconnected mid-frame".into())
                };
            }
            Ok(_) => {}
            Err(e) => return Err(format!("read error: {e}")),
        }
    }
}

impl Connection {
    fn frame_max(&self, anonymous: usize, registered: usize) -> usize {
        if self.entry.get().is_some() {
            registered
        } else {
            anonymous
        }
    }

    fn reply(&self, msgid: Value, value: Value) {
        self.outbox.send(&Message::reply(msgid, value));
    }

    fn reply_error(&self, msgid: Value, e: &StorageError) {
        let (class, payload) = errors::to_remote(e);
        self.outbox.send(&Message::error(msgid, class, payload));
    }

    fn reply_result(&self, msgid: Value, r: Result<Value, StorageError>) {
        match r {
            Ok(v) => self.reply(msgid, v),
            Err(e) => self.reply_error(msgid, &e),
        }
    }

    fn entry(&self) -> Result<Arc<StorageEntry>, Close> {
        self.entry_ref().cloned()
    }

    /// [`Connection::entry`] without taking a reference of its own.
    fn entry_ref(&self) -> Result<&Arc<StorageEntry>, Close> {
        self.entry
            .get()
            .ok_or_else(|| close("call before register"))
    }

    /// Replies with `f`'s result: made in line for a local storage (a quick
    /// call), from a blocking thread for one that waits on a network
    /// ([`zodb_storage::Storage::waits_on_network`]).
    fn reply_with<F>(&self, e: &StorageEntry, msgid: Value, f: F)
    where
        F: FnOnce() -> Result<Value, StorageError> + Send + 'static,
    {
        if e.storage.waits_on_network() {
            self.spawn_reply(msgid, f);
        } else {
            self.reply_result(msgid, f());
        }
    }

    /// Runs `f` on a blocking thread and replies with its result.
    fn spawn_reply<F>(&self, msgid: Value, f: F)
    where
        F: FnOnce() -> Result<Value, StorageError> + Send + 'static,
    {
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || {
            let msg = match f() {
                Ok(v) => Message::reply(msgid, v),
                Err(e) => {
                    let (class, payload) = errors::to_remote(&e);
                    Message::error(msgid, class, payload)
                }
            };
            outbox.send(&msg);
        });
    }

    /// The connection's transaction is voted and not finished.
    fn is_voted(&self) -> bool {
        self.state
            .lock()
            .txn
            .as_ref()
            .is_some_and(|t| t.phase == Phase::Voted)
    }

    /// At shutdown: lets a voted transaction finish (up to a grace
    /// period). True while the connection should keep reading.
    async fn wait_for_voted_transaction(&self) -> bool {
        let voted = self
            .state
            .lock()
            .txn
            .as_ref()
            .is_some_and(|t| t.phase != Phase::Open);
        if !voted {
            return false;
        }
        let deadline =
            tokio::time::Instant::now() + Duration::from_secs(limits::SHUTDOWN_GRACE_SECONDS);
        let state = Arc::clone(&self.state);
        let kick = Arc::clone(&self.kick);
        tokio::spawn(async move {
            tokio::time::sleep_until(deadline).await;
            if state.lock().txn.is_some() {
                kick.notify_one();
            }
        });
        true
    }

    fn cleanup(&self) {
        self.closed.store(true, Ordering::Release);
        self.abort_transaction(None);
        self.state.lock().iterators = Iterators::default();
        if let Some(e) = self.entry.get() {
            e.unregister(self.outbox.id);
        }
    }
}
