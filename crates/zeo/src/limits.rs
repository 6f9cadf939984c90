//! Every limit the ZEO crate enforces on what peers send, in one place, qualifier last.
//!
//! Peers are untrusted: nothing a frame announces may decide how much memory or stack we
//! use before the bytes backing it have arrived.  The wire codec (`crate::wire`) reads
//! these; the server and client pass [`FRAME_SIZE_MAX_DEFAULT`] (or a configured value) to
//! `wire::parse_frame`.

/// Largest frame payload accepted by default, in bytes (64 MiB).
///
/// Python ZEO has no limit (spec §1.1).  Blob chunks travel as ~59 KB frames, so only
/// object records (`storea`, `loadBefore` replies) and large result lists can be big; a
/// record of tens of MiB is already unusual.  The length is checked from the 4 length
/// bytes alone, before any payload is buffered.
pub const FRAME_SIZE_MAX_DEFAULT: usize = 64 << 20;

/// Deepest nesting of containers accepted in one message, counting the message's own
/// 4-tuple as the first level.
///
/// The same as the pickle codec's `zodb_pickle::limits::NESTING_MAX`, so any message one
/// encoding decodes can be re-encoded in the other, and the recursive walks over a decoded
/// value stay far from the end of a thread stack.  Python gives up much earlier (its
/// pickler near 300 levels, msgpack-python's unpacker at 1024), so real traffic never
/// comes close.
pub const MESSAGE_DEPTH_MAX: usize = zodb_pickle::limits::NESTING_MAX;

/// Longest text kept when rendering a peer's value as an error message (`wire::parse_error`).
pub const ERROR_TEXT_BYTES_MAX: usize = 4096;

/// Deepest level `wire::simplify` evaluates builtin calls at, and `wire::parse_error`
/// looks into; deeper parts are kept (or rendered) as they are.
///
/// These walks recurse; a debug build spends kilobytes of stack per level, so a walk to
/// [`MESSAGE_DEPTH_MAX`] could exhaust a 2 MiB thread.  Transaction extensions and error
/// payloads nest a handful of levels.
pub const VALUE_WALK_DEPTH_MAX: usize = 64;

/// Bytes queued for one client and not yet written. Past this the client is
/// taken to have stopped reading and is disconnected (invalidations for
/// every commit would otherwise pile up in memory).
pub const OUTBOX_BYTES_MAX: usize = 256 << 20;

/// Bytes queued for all clients together.  Past this, a client that holds more
/// than its share (this over the number of clients) is disconnected: without
/// it, four clients asking for large records and reading nothing held over a
/// gigabyte while each stayed under `OUTBOX_BYTES_MAX`.
pub const OUTBOX_BYTES_TOTAL_MAX: usize = 512 << 20;

/// Connections served at once by default; more are accepted and closed at
/// once with a log line.
pub const CONNECTIONS_MAX_DEFAULT: usize = 1000;

/// Connections that have not registered yet, held at once: past this, a new
/// connection closes the oldest unregistered one.  An anonymous peer that
/// opens sockets and says nothing so holds at most these slots, registered
/// clients keep the rest of `connections_max`, and a client that connects
/// always gets in: it registers right after the handshake (a round trip),
/// long before this many newer sockets push it out.
pub const UNREGISTERED_CONNECTIONS_MAX: usize = 64;

/// Seconds a connection has, from its accept, to send its handshake and
/// `register`; then it is closed.  Python's ClientStorage registers in the
/// same breath as the handshake; 10 s covers a slow network and a busy
/// client, and bounds how long a silent socket holds a slot.
pub const REGISTER_TIMEOUT_SECONDS_DEFAULT: u64 = 10;

/// Bytes of record data one open transaction keeps in memory; its further records go
/// to a temporary file until the vote.  Most transactions are far smaller (a page edit
/// stores a few KiB), so they never touch the disk; a client that stores and stores
/// without voting costs disk, not memory (it took 727 MB of RSS with 40 records of
/// 16 MiB before).
pub const TXN_BUFFER_MEMORY_BYTES_MAX: usize = 8 << 20;

/// Bytes of record data all open transactions together keep in memory; past it, every
/// transaction's further records go to its temporary file.  Bounds the buffers of many
/// connections at once (a thousand clients at `TXN_BUFFER_MEMORY_BYTES_MAX` each would
/// be 8 GiB).
pub const TXN_BUFFER_MEMORY_BYTES_TOTAL_MAX: usize = 256 << 20;

/// What a buffered operation counts for besides its data: its own size and bookkeeping,
/// so that millions of data-less operations (`checkCurrentSerialInTransaction`) are
/// bounded like records are.
pub const TXN_BUFFER_OP_OVERHEAD_BYTES: usize = 64;

/// Bytes one transaction's operations may carry in all, by default
/// (`--transaction-size-max`).  Past it the transaction's buffer is dropped and its vote
/// fails.  The storage holds a voted transaction's records in memory until they are
/// written, so this bounds what one commit costs; Python's server has no limit, but a
/// record of more than a few MiB belongs in a blob, and 512 MiB still takes whole
/// copied transactions (`copyTransactionsFrom`) of sites far larger than ours.
pub const TRANSACTION_BYTES_MAX_DEFAULT: u64 = 512 << 20;

/// Bytes of transactions being voted or voted and not finished, all clients together
/// (at least the transaction size limit, so the largest transaction fits).  A vote that
/// would go past it waits, up to `LOCK_TIMEOUT_SECONDS_DEFAULT`, for others to finish;
/// without it, clients voting large transactions at once would have the storage hold
/// them all in memory.
pub const VOTING_BYTES_TOTAL_MAX: u64 = 1 << 30;

/// The largest vote answered on the connection's I/O thread, in operations and in
/// bytes (data and `TXN_BUFFER_OP_OVERHEAD_BYTES` each): the vote of a small
/// transaction whose objects nobody has locked (most of them) costs a few µs per
/// object, less than the two thread hand-offs of a vote on a blocking thread. Past
/// either bound, or when it would wait, a vote goes to a blocking thread: a vote of 128
/// small objects holds the I/O thread (every connection's loads) about as long as a
/// few dozen loads, one of thousands of objects or MiBs could hold it for milliseconds.
pub const VOTE_IN_LINE_OPS_MAX: usize = 128;
pub const VOTE_IN_LINE_BYTES_MAX: u64 = 64 << 10;

/// Bytes of one blob file a client may upload (`storeBlobStart`…`storeBlobEnd`); past
/// it the upload is dropped and its transaction's vote fails.  Blobs are what large
/// files are kept in (videos, archives), so this is generous; it bounds the disk one
/// upload can fill.  Uploads go to disk chunk by chunk, never to memory.
pub const BLOB_UPLOAD_BYTES_MAX: u64 = 64 << 30;

/// Bytes of a blob file sent in one `receiveBlobChunk` (Python's server sends 59,000,
/// which keeps each frame small).
pub const BLOB_CHUNK_BYTES: usize = 59_000;

/// Replies queued for a connection above which a `sendBlob` stream waits before it
/// reads its next chunk: a file of gigabytes streams through a few chunks of memory,
/// and never trips the outbox's bounds.
pub const SEND_BLOB_QUEUED_BYTES_MAX: usize = 1 << 20;

/// Oids handed out by one `new_oids` call (Python clamps to 1..=100).
pub const NEW_OIDS_PER_CALL_MAX: usize = 100;

/// Milliseconds between two polls of a storage other processes write too (a
/// PostgreSQL database), by default (`--poll-interval`, `poll-interval`).
///
/// Commits of other `bbru` processes arrive at once (their `NOTIFY`); a
/// RelStorage client sends none, so its commits reach this server's clients
/// only at the next poll. Until then those clients read the older state and
/// a write based on it fails its serial check (a conflict, resolved or
/// retried), so the interval is a staleness bound. A poll with nothing new
/// is one indexed query, so four a second cost the database nothing
/// measurable.
pub const POLL_INTERVAL_MILLIS_DEFAULT: u64 = 250;

/// Recent transactions remembered for `getInvalidations`; older ones are
/// found by reading the storage, up to `INVALIDATION_SCAN_TRANSACTIONS_MAX`.
pub const INVALIDATION_QUEUE_SIZE_DEFAULT: usize = 1000;

/// Transactions `getInvalidations` reads from the storage at most before it
/// answers `None` (the client then drops its cache).
pub const INVALIDATION_SCAN_TRANSACTIONS_MAX: usize = 100_000;

/// How long a client may hold its transaction's object locks, from the reply to its
/// `vote` to its `tpc_finish` or `tpc_abort`, by default (`-t`, `transaction-timeout`
/// in zeo.conf; 0 turns it off). Past it, the server aborts that transaction, which
/// releases the locks, and closes the client's connection, as Python's server does
/// with its `transaction-timeout` (which Python leaves off by default).
///
/// Why on, and why 30 s: a client that voted and then stalls (a hung process, a
/// debugger, a lost network without a reset) otherwise holds its objects for as long
/// as its TCP connection lives, and every other commit touching one of them waits for
/// [`LOCK_TIMEOUT_SECONDS_DEFAULT`] and fails. A healthy client sends `tpc_finish`
/// milliseconds after the vote reply (Python's, after voting its other data
/// managers, within seconds), so 30 s never cuts a live commit short; and it is half
/// the lock timeout, so a vote queued behind a stalled client gets the objects (at
/// most 30 s late) instead of failing.
pub const TRANSACTION_TIMEOUT_SECONDS_DEFAULT: u64 = 30;

/// How long a vote waits, by default (`--lock-timeout`), for objects another
/// transaction holds (voted, not finished) before it fails with a lock timeout
/// (`StorageTransactionError` to Python clients). Twice the transaction timeout, so
/// with both at their defaults a stalled holder is aborted well before a waiter gives
/// up; a waiter still fails when a queue of slow holders keeps it waiting longer.
pub const LOCK_TIMEOUT_SECONDS_DEFAULT: u64 = 60;

/// How long a closing connection (the client went, or the server stops) keeps
/// writing what was queued for it. A client that reads nothing would otherwise hold
/// its connection task, and a stopping server, for as long as it likes; one that
/// reads gets its last replies out in far less.
pub const CLOSE_FLUSH_MILLIS: u64 = 2000;

/// How long a shutdown waits for a voted transaction to finish.
pub const SHUTDOWN_GRACE_SECONDS: u64 = 10;

/// Bytes of object data the ZEO client's cache keeps by default (Python's
/// `ClientStorage` default `cache_size`, 20 MB).
pub const CLIENT_CACHE_BYTES_DEFAULT: usize = 20 << 20;

/// Bytes of blob files the client's blob cache keeps by default (Python's has no
/// bound unless `blob-cache-size` is set; a cache that grows without end fills the
/// disk of a long-lived instance).
pub const CLIENT_BLOB_CACHE_BYTES_DEFAULT: u64 = 1 << 30;

/// Bytes the client's cache counts for one cached revision besides its
/// data (keys, index and LRU bookkeeping), so that many tiny records cannot
/// exceed the configured size by much.
pub const CLIENT_CACHE_ENTRY_OVERHEAD_BYTES: usize = 96;

/// How long a client call waits for a (re)connection before failing, by
/// default (Python's `wait_timeout`).
pub const CLIENT_WAIT_TIMEOUT_SECONDS_DEFAULT: u64 = 30;

/// The client waits between 1 and 2 s (uniformly) before each reconnection
/// attempt, as Python's client retries every `1 + random()` seconds.
pub const CLIENT_RECONNECT_DELAY_MIN_MILLIS: u64 = 1000;

/// Upper end of the client's reconnection delay (see
/// [`CLIENT_RECONNECT_DELAY_MIN_MILLIS`]).
pub const CLIENT_RECONNECT_DELAY_MAX_MILLIS: u64 = 2000;

/// How long the client waits for a TCP connection to be accepted.
pub const CLIENT_CONNECT_TIMEOUT_SECONDS: u64 = 5;

/// How long the client waits for the server's handshake frame; a server
/// that accepts but never speaks (e.g. TLS expected) is given up on.
pub const CLIENT_HANDSHAKE_TIMEOUT_SECONDS: u64 = 10;

/// How long a closing client waits (for a write in progress, then for the socket)
/// to send TLS's close_notify, so the server reads an orderly end rather than a
/// truncated session.  The connection closes either way; a second is plenty on a
/// live network and short enough not to hold up a shutdown.
pub const CLIENT_CLOSE_NOTIFY_WAIT_MILLIS: u64 = 1000;

/// Bytes of queued replies the server hands the socket in one vectored write at most:
/// enough to batch many small replies (a prefetch of loads) into one system call.
pub const WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Frames handed to one vectored write at most (the kernel takes up to 1024).
pub const WRITE_FRAMES_MAX: usize = 64;

/// Bytes of queued one-way messages (a transaction's stores) the client
/// writes in one system call at most.
pub const CLIENT_WRITE_BATCH_BYTES_MAX: usize = 1 << 20;

/// Spare room a connection's read buffer has before each read: one read takes in this
/// much at least (a burst of `storea` frames, a prefetch of loads) in one system call.
pub const READ_BYTES_MIN: usize = 64 << 10;

/// Capacity a connection's empty read buffer keeps; a larger one (left by a large
/// frame: a record of many MiB) is given back once that frame is consumed, so an idle
/// connection does not hold a large frame's memory.
pub const READ_BUFFER_BYTES_KEPT: usize = 1 << 20;

/// Largest frame accepted from a client that has not registered yet (the
/// handshake and `register` are a few dozen bytes).
pub const FRAME_SIZE_MAX_UNREGISTERED: usize = 64 << 10;

/// Threads serving connections by default (`--io-threads`): one, as Python's server.
/// Answering a request takes a few µs of CPU, so one thread serves well over 100,000
/// requests a second, more than Python clients make; with two, each request woke the
/// other thread to look for work, and `bench/zeo/load.sh` measured a quarter more CPU
/// per load (5.9 against 4.4 µs at 8 connections).  Votes, finishes, packs and the other
/// slow calls run on the blocking pool either way.
pub const IO_THREADS_DEFAULT: usize = 1;

/// Stack of every server thread. Decoding a message is recursive up to
/// `MESSAGE_DEPTH_MAX` levels; this leaves room for that in debug builds
/// too, so a hostile, deeply nested pickle cannot overflow a thread.
pub const SERVER_THREAD_STACK_BYTES: usize = 16 << 20;

/// Longest read lease (`bbru_lease`, spec §11) a server grants and a client accepts, in
/// milliseconds.  A lease is how long a commit may wait for a leased client that stopped
/// confirming invalidations (a hung instance, a lost network), and how long a restarted
/// server holds its first commits (leases of the process before it may still be held):
/// both must stay short.  A client takes a longer grant for this long.
pub const LEASE_MILLIS_MAX: u64 = 5000;

/// The read lease `bbru-zeo` grants unless told otherwise (`--lease-ms`), in
/// milliseconds: a hung instance delays commits by up to a second, once; renewals every
/// quarter second cost nothing worth counting.
pub const LEASE_MILLIS_DEFAULT: u64 = 1000;

/// The part of a lease a client does not use (a tenth): its lease ends this much before
/// the server's could, whatever the two clocks' rates and the scheduling of the threads
/// that read them.
pub const LEASE_MARGIN_DIVISOR: u32 = 10;

/// How often a client renews its lease: every lease over this (a quarter), so two renewals
/// may be lost or late before the lease lapses and syncs fall back to round trips.
pub const LEASE_RENEW_DIVISOR: u32 = 4;

/// Seconds a connection whose lease ran out while a commit waited for it gets no new
/// lease (its client syncs by round trips meanwhile): a hung or hostile client delays
/// commits by one lease at most once a minute, and one that only stalled for a moment
/// gets its lease back.
pub const LEASE_LAPSED_REFUSAL_SECONDS: u64 = 60;

/// Leases a server holds at once, live connections' and those of connections closed
/// before their lease ran out.  Every one of them is a client each commit may wait for;
/// past this, a new lease is refused (the client syncs by round trips).
pub const LEASES_MAX: usize = 256;
