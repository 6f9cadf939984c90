//! The `Storage` trait: what every backend (FileStorage, MemoryStorage,
//! DemoStorage, the ZEO client, a future PostgreSQL backend) offers to the
//! persistence layer and to the ZEO server.
//!
//! The semantics are ZODB's (`ZODB.interfaces.IStorage`, `IMVCCStorage`'s
//! `loadBefore`, `IStorageUndoable`, `IStorageIteration`), with one change of
//! shape: two-phase commit is driven through an opaque [`TxnHandle`], and
//! stores are buffered by the storage until `vote`. Several transactions may
//! therefore be open at once (one per ZEO client). At `vote` the storage locks
//! what the transaction changes (FileStorage: its objects; MemoryStorage: the
//! whole storage) and holds that until `finish` or `abort`, so only transactions
//! touching the same objects wait for each other.

use std::fmt;

use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};

/// Who did what: the metadata every transaction carries. This is the audit
/// trail, so the storage keeps it byte for byte.
/// What kind of storage serves the data, and where (see [`Storage::location`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageLocation {
    /// `file` (a FileStorage), `zeo` (a ZEO client), `memory`, `demo` (an overlay).
    pub kind: &'static str,
    /// The file's path, the server addresses, or a name.
    pub location: String,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TransactionMeta {
    /// UTF-8 by convention (Zope writes `"<acl path> <user id>"`).
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    /// A protocol-3 pickle of a `dict` with `str` keys, or empty.
    pub extension: Vec<u8>,
    /// A tid chosen by the caller (copying or restoring transactions). It
    /// must be later than the storage's last transaction. `None`: the
    /// storage takes one from its clock at vote.
    pub tid: Option<Tid>,
    /// The status a copied transaction keeps: `Packed` for one a pack wrote, so a copy
    /// is byte for byte the original (Python's `tpc_begin(txn, tid, status)`).  New
    /// transactions are `Committed`; `Undone` is written as `Committed` (no iterator
    /// yields such transactions, so no copy asks for one).
    pub status: TxnStatus,
}

impl TransactionMeta {
    pub fn new(user: impl Into<Vec<u8>>, description: impl Into<Vec<u8>>) -> TransactionMeta {
        TransactionMeta {
            user: user.into(),
            description: description.into(),
            ..TransactionMeta::default()
        }
    }

    pub fn with_extension(mut self, extension: Vec<u8>) -> TransactionMeta {
        self.extension = extension;
        self
    }
}

/// An open transaction of one storage. Not `Clone`: a handle names one
/// transaction, which ends with exactly one `finish` or `abort`.
#[derive(PartialEq, Eq, Hash)]
pub struct TxnHandle(u64);

impl TxnHandle {
    /// For backends: wrap their own transaction number.
    pub fn new(id: u64) -> TxnHandle {
        TxnHandle(id)
    }

    pub fn id(&self) -> u64 {
        self.0
    }
}

impl fmt::Debug for TxnHandle {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "TxnHandle({})", self.0)
    }
}

/// One revision of an object as `load_before` finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revision {
    /// The object record (class pickle then state pickle).
    pub data: Vec<u8>,
    /// The tid of the transaction that wrote this revision.
    pub start: Tid,
    /// The tid of the next revision, `None` when this one is current.
    pub end: Option<Tid>,
}

impl Revision {
    /// The revision with its data borrowed.
    pub fn as_ref(&self) -> RevisionRef<'_> {
        RevisionRef {
            data: &self.data,
            start: self.start,
            end: self.end,
        }
    }
}

/// A revision whose data the storage lends (see [`Storage::load_before_with`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RevisionRef<'a> {
    pub data: &'a [u8],
    pub start: Tid,
    pub end: Option<Tid>,
}

/// One entry of `history`, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct HistoryEntry {
    pub tid: Tid,
    /// Seconds since the Unix epoch (from the tid).
    pub time: f64,
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    pub extension: Vec<u8>,
    /// Record length; 0 for a revision written as a backpointer.
    pub size: u64,
}

/// One entry of `undo_log`, newest first.
#[derive(Debug, Clone, PartialEq)]
pub struct UndoLogEntry {
    /// The transaction to pass to `undo`. ZEO and Python show it as the
    /// base64 of the tid ([`undo_id`]).
    pub tid: Tid,
    pub time: f64,
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    pub extension: Vec<u8>,
    /// Size in bytes of the transaction record.
    pub size: u64,
}

/// The Python form of an undo id: standard base64 of the tid with padding.
pub fn undo_id(tid: Tid) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(tid.to_bytes())
}

/// Parses an undo id made by [`undo_id`].
pub fn parse_undo_id(id: &str) -> Option<Tid> {
    use base64::Engine;
    let bytes = base64::engine::general_purpose::STANDARD.decode(id).ok()?;
    Tid::from_slice(&bytes)
}

/// Status of a stored transaction (the FileStorage status byte).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxnStatus {
    /// `' '`: committed.
    #[default]
    Committed,
    /// `'p'`: committed, copied by a pack; not undoable.
    Packed,
    /// `'u'`: legacy; its records are ignored.
    Undone,
}

impl TxnStatus {
    pub fn as_byte(self) -> u8 {
        match self {
            TxnStatus::Committed => b' ',
            TxnStatus::Packed => b'p',
            TxnStatus::Undone => b'u',
        }
    }

    pub fn as_char(self) -> char {
        char::from(self.as_byte())
    }
}

/// One transaction as the iterator yields it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionRecord {
    pub tid: Tid,
    pub status: TxnStatus,
    pub user: Vec<u8>,
    pub description: Vec<u8>,
    pub extension: Vec<u8>,
    pub records: Vec<DataRecord>,
}

/// One object revision inside an iterated transaction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataRecord {
    pub oid: Oid,
    /// The transaction's tid.
    pub tid: Tid,
    /// The record, or `None` when this revision deletes the object (an undone
    /// creation or an external-GC deletion).
    pub data: Option<Vec<u8>>,
    /// For a revision that reuses an earlier one's data (a backpointer), the
    /// tid of the transaction that wrote those data.
    pub data_txn: Option<Tid>,
}

/// One answer of `record_iternext`: an object's current record and the
/// oid to ask for next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RecordIterItem {
    pub oid: Oid,
    pub tid: Tid,
    pub data: Vec<u8>,
    /// The next object in oid order, `None` after the last.
    pub next: Option<Oid>,
}

/// Iterates transactions in tid order. Owns what it needs, so it can outlive
/// the call that made it (a ZEO server keeps one per client iterator).
pub type TransactionIter = Box<dyn Iterator<Item = Result<TransactionRecord>> + Send>;

/// What [`Storage::start_sync`] calls when the sync is done.
pub type SyncDone = Box<dyn FnOnce(Result<()>) + Send>;

/// What every backend offers. Methods take `&self`: backends synchronise
/// inside, so readers proceed while another transaction commits.
pub trait Storage: Send + Sync {
    /// A name for logs and ZEO's `get_info`.
    fn name(&self) -> String;

    /// What kind of storage this is and where its data are, for operators (health
    /// checks, logs). Storages in memory are `memory`, located by their name.
    fn location(&self) -> StorageLocation {
        StorageLocation {
            kind: "memory",
            location: self.name(),
        }
    }

    fn is_read_only(&self) -> bool;

    /// The tid of the last committed transaction (`Tid::ZERO` when empty).
    fn last_transaction(&self) -> Tid;

    /// Number of objects (oids with a record).
    fn len(&self) -> usize;

    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Approximate size in bytes.
    fn size(&self) -> u64;

    /// The current revision: its data and serial. Fails with `PosKey` if
    /// the object does not exist or its current revision deletes it.
    fn load(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        match self.load_before(oid, Tid::MAX)? {
            Some(rev) => Ok((rev.data, rev.start)),
            None => Err(crate::StorageError::pos_key(oid)),
        }
    }

    /// The revision current just before `before`: `Ok(None)` when the object
    /// had no revision that early, `PosKey` when the object never existed or
    /// the revision found is a deletion.
    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>>;

    /// `load_before`, with the revision lent to `f` (called once, on `Ok`) instead of
    /// given: a storage that holds the record in memory hands it over without a copy
    /// (a server writes its reply from it). The default copies nothing more than
    /// `load_before` does.
    fn load_before_with(
        &self,
        oid: Oid,
        before: Tid,
        f: &mut dyn FnMut(Option<RevisionRef<'_>>),
    ) -> Result<()> {
        let rev = self.load_before(oid, before)?;
        f(rev.as_ref().map(Revision::as_ref));
        Ok(())
    }

    /// The revision written by transaction `serial`.
    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>>;

    /// Allocates `count` fresh oids.
    fn new_oids(&self, count: usize) -> Result<Vec<Oid>>;

    /// Opens a transaction. Nothing is locked yet.
    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle>;

    /// Stores a new revision of `oid`. `expected` is the serial the change
    /// was based on (`Tid::ZERO` for a new object). A stale serial fails
    /// with `Conflict` here if already visible, otherwise at `vote`.
    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()>;

    /// Writes a revision that deletes `oid` (ZODB's `deleteObject`, for
    /// external garbage collection), after checking `expected`.
    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()>;

    /// Copies a revision as is, for copying transactions between storages
    /// (ZODB's `restore`): no serial check; `data` `None` with `prev_txn`
    /// reuses the data this object had in transaction `prev_txn` (a
    /// backpointer), `None` without it deletes. The transaction's tid is
    /// given in its metadata. Engines that cannot do it say so.
    fn restore(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        let _ = (txn, oid, data, prev_txn);
        Err(crate::StorageError::Transaction(format!(
            "{} cannot restore",
            self.name()
        )))
    }

    /// The current record of the first object at or after `from` (all
    /// objects in oid order, for `IStorageCurrentRecordIteration`): its
    /// oid, serial, data, and the next oid to ask for. `Ok(None)` past the
    /// last object.
    fn record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>> {
        let _ = from;
        Err(crate::StorageError::Transaction(format!(
            "{} cannot iterate its records",
            self.name()
        )))
    }

    /// Makes the commit fail unless `oid`'s committed serial is still
    /// `expected` when it is voted (`checkCurrentSerialInTransaction`).
    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()>;

    /// Undoes transaction `tid` inside this transaction; returns the oids it
    /// will change. Failures that depend on later data show up at `vote`.
    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>>;

    /// Locks what the transaction changes, checks every serial, and prepares
    /// its records (not yet visible; FileStorage writes them at `finish`).
    /// After `Ok`, `finish` will succeed barring a failing disk.
    fn vote(&self, txn: &TxnHandle) -> Result<()>;

    /// `vote`, if it needs no wait (for another transaction's locks, a pack, a network):
    /// `Ok(true)` is a vote's `Ok`; `Ok(false)`: nothing was taken and the transaction
    /// is as it was, to be voted with `vote` from a thread that may wait. For servers
    /// that answer a quick vote on their I/O thread. Storages that cannot tell say
    /// `Ok(false)`.
    fn vote_without_waiting(&self, txn: &TxnHandle) -> Result<bool> {
        let _ = txn;
        Ok(false)
    }

    /// Makes the voted transaction durable and visible; returns its tid.
    /// Returns only after the bytes are on stable storage. Calling it
    /// without `vote` votes first.
    fn finish(&self, txn: &TxnHandle) -> Result<Tid>;

    /// Forgets the transaction, voted or not, and releases its locks.
    fn abort(&self, txn: &TxnHandle);

    /// Revisions of `oid`, newest first, at most `size`.
    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>>;

    /// Undoable transactions, newest first, skipping `first` and ending
    /// before `last` (Python's `undoLog(first, last)` with `last >= 0`).
    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>>;

    /// Transactions with `start <= tid <= stop`, in tid order.
    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter>;

    /// Removes revisions not current at `pack_time` (and, with `gc`, objects
    /// unreachable from the root at that time). History after `pack_time`
    /// is kept. Readers and commits go on while it runs.
    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()>;

    /// Flushes and releases files and locks. Later calls fail with `Closed`.
    fn close(&self) -> Result<()>;

    /// Returns once every transaction committed before the call has been reported to the
    /// listeners (a ZEO client makes a round trip to its server, whose invalidations
    /// arrive before the reply; local storages report before `finish` returns, so
    /// they have nothing to do).  A database calls it as each transaction begins, so a
    /// change committed elsewhere is seen by the next transaction, as ZODB's
    /// `Connection.newTransaction` does with `storage.sync()`.
    fn sync(&self) -> Result<()> {
        Ok(())
    }

    /// Starts a [`Storage::sync`] without blocking the caller: `done` is called once it
    /// completes, on another thread or (when there is nothing to wait for) at once.
    /// Gives `done` back, not called, when the storage cannot; then call `sync` from a
    /// thread that may block.  For callers on an async runtime's worker, which must not
    /// wait on the network (see [`crate::inline`]).  The default cannot.
    fn start_sync(&self, done: SyncDone) -> std::result::Result<(), SyncDone> {
        Err(done)
    }

    /// Whether the storage can serve right now, answered within about `within` (for
    /// health checks; nothing is changed, nothing is synced to disk). A ZEO client makes
    /// a round trip to its server, and fails at once with `Disconnected` while it has no
    /// connection; a FileStorage reads its file's header and reports a storage that
    /// refuses writes after an I/O failure (`Poisoned`) or is closed. Storages in memory
    /// have nothing that can be out of reach.
    fn check_health(&self, within: std::time::Duration) -> Result<()> {
        let _ = within;
        Ok(())
    }

    /// Whether a [`Storage::sync`] this moment returns without a round trip to a server
    /// because a read lease says nothing was missed (a ZEO client of `bbru-zeo`); `None`
    /// for storages that never make one.  For operators (health checks): a client that
    /// lost its lease still works, one round trip per transaction slower.
    fn holds_read_lease(&self) -> Option<bool> {
        None
    }

    /// Whether calls may wait on another server (a database across a network, whose
    /// locks and connections other clients hold), rather than on a local file. A server
    /// that answers quick calls in line on its I/O thread makes this storage's calls
    /// from blocking threads instead: one call waiting there must not stop the messages
    /// (a `tpc_finish`, a `tpc_abort`) that would end its wait.
    fn waits_on_network(&self) -> bool {
        false
    }

    /// Registers a listener told of every committed transaction, in tid order, once it is
    /// visible and before its `finish` returns (see [`crate::listeners`]).  Held weakly.
    fn add_listener(&self, listener: std::sync::Weak<dyn crate::InvalidationListener>);

    /// The blob directory, for storages with blobs (ZODB's `IBlobStorage`): where
    /// files on their way in may be put (`tmp_dir`, ZODB's `temporaryDirectory()`),
    /// and where a revision's file is.  `None`: this storage has no blobs.
    fn blobs(&self) -> Option<&crate::blob::BlobDir> {
        None
    }

    /// `store` of a blob's record (a `ZODB.blob.Blob` pickle) with its file: the
    /// storage takes `blob` (moved, not copied, when it is on the blob directory's file
    /// system) and makes it revision tid of `oid` when the transaction is written; an
    /// abort removes it.  ZODB's `storeBlob`.
    fn store_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        blob: &std::path::Path,
    ) -> Result<()> {
        let _ = (txn, oid, expected, data, blob);
        Err(StorageError::Unsupported(
            "this storage has no blobs".into(),
        ))
    }

    /// `restore` of a blob's revision with its file, for copying transactions between
    /// storages with blobs (ZODB's `restoreBlob`): `blob` is taken as `store_blob` takes
    /// it.  `data` is the record; with `prev_txn` holding the same record the copy may
    /// point at it, as `restore` does.
    fn restore_blob(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Vec<u8>,
        blob: &std::path::Path,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        let _ = (txn, oid, data, blob, prev_txn);
        Err(StorageError::Unsupported(
            "this storage cannot restore blobs".into(),
        ))
    }

    /// The file of `oid`'s blob revision `serial` (ZODB's `loadBlob`); `PosKey` when
    /// there is none.  The file never changes while it exists; a pack may remove it.
    fn load_blob(&self, oid: Oid, serial: Tid) -> Result<std::path::PathBuf> {
        let _ = serial;
        Err(StorageError::Unsupported(format!(
            "this storage has no blobs (asked for one of {oid})"
        )))
    }
}
