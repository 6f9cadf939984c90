//! A connection's transaction (spec §3.2): `tpc_begin` and the one-way store-like calls
//! only buffer [`TxnOp`]s; `vote` replays them into a storage transaction and votes it,
//! in line when that is quick and needs no wait (a small transaction in memory whose
//! objects no other vote holds: most of them), else on a blocking thread (waiting there
//! for the object locks); `tpc_finish` has the entry
//! finish and announce it; `tpc_abort`, a closed connection or the transaction timeout
//! abort it.
//!
//! Vote failure: write conflicts on stores are left to the client (client-side conflict
//! resolution, as Python's server does in that mode): the reply lists them and the
//! transaction stays open for new stores and another vote.  Any other failure (a
//! conflicting deletion, a read conflict, a lock timeout, ...) is an error reply and the
//! transaction is gone.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use parking_lot::Mutex;
use zodb_pickle::Value;
use zodb_storage::{Oid, Storage, StorageError, Tid, TransactionMeta, TxnHandle, TxnStatus};

use super::buffer::TxnBuffer;
use super::{Connection, State, Step, VotedDeadline, close};
use crate::limits;
use crate::server::budget::Permit;
use crate::server::entry::{CommitInfo, StorageEntry};
use crate::server::errors;
use crate::server::outbox::Outbox;
use crate::wire::{self, Message, TxnOp, VoteConflict, VoteReply};

#[derive(Debug, PartialEq, Eq)]
pub(super) enum Phase {
    Open,
    Voting,
    Voted,
}

#[derive(Debug)]
pub(super) struct Txn {
    txnid: Value,
    meta: TransactionMeta,
    /// The buffered operations; away (with the vote) while voting.
    ops: Option<TxnBuffer>,
    pub(super) phase: Phase,
    /// The voted transaction's share of the server's voting budget, given back when the
    /// transaction ends.
    voting: Option<Permit>,
    /// The storage's transaction while voting or voted.
    handle: Option<TxnHandle>,
    /// Oids the commit changes (stores, deletions, undone objects).
    oids: Vec<Oid>,
}

impl Connection {
    pub(super) fn tpc_begin(
        &self,
        txnid: Value,
        user: Vec<u8>,
        description: Vec<u8>,
        extension: &Value,
        tid: Option<Tid>,
        status: TxnStatus,
    ) -> Step {
        let entry = self.entry()?;
        let mut s = self.state.lock();
        if s.read_only || entry.read_only {
            return Err(close("tpc_begin on a read-only connection"));
        }
        if let Some(t) = &s.txn {
            if t.txnid == txnid {
                return Ok(());
            }
            return Err(close("tpc_begin while another transaction is open"));
        }
        let mut ops = TxnBuffer::new(
            Arc::clone(&self.shared.txn_memory),
            self.shared.config.transaction_bytes_max,
        );
        // `tpc_begin` has no reply: a bad extension fails the vote, with the reason.
        let extension = wire::extension_pickle(extension).unwrap_or_else(|e| {
            ops.fail_with(format!("the transaction extension cannot be stored: {e}"));
            Vec::new()
        });
        let meta = TransactionMeta {
            user,
            description,
            extension,
            tid,
            status,
        };
        s.txn = Some(Txn {
            txnid,
            meta,
            ops: Some(ops),
            phase: Phase::Open,
            voting: None,
            handle: None,
            oids: Vec::new(),
        });
        Ok(())
    }

    /// Buffers one operation of the open transaction `txnid`; anything else open (or
    /// nothing) closes the connection.  The last store of an oid wins.
    pub(super) fn buffer_op(&self, op: TxnOp, txnid: &Value) -> Step {
        if let Ok(e) = self.entry_ref()
            && matches!(op, TxnOp::Store { .. })
        {
            e.stats.stores.fetch_add(1, Ordering::Relaxed);
        }
        let mut s = self.state.lock();
        match &mut s.txn {
            Some(t) if &t.txnid == txnid && t.phase == Phase::Open => {
                let ops = t.ops.as_mut().expect("an open transaction has its buffer");
                let failed_before = ops.failed().is_some();
                ops.push(op, self.shared.config.spill_dir.as_deref());
                if !failed_before && let Some(why) = ops.failed() {
                    tracing::warn!(peer = %self.outbox.peer, "{why}; its vote will fail");
                }
                Ok(())
            }
            Some(_) => Err(close(
                "operation for a transaction that is not the open one",
            )),
            None => Err(close("operation without an open transaction")),
        }
    }

    /// Buffers the blob's store with its file in transaction `txn`, or fails it.
    pub(super) fn buffer_blob(
        &self,
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        txn: &Value,
        file: Result<std::path::PathBuf, String>,
    ) -> Step {
        let spill_dir = self.shared.config.spill_dir.clone();
        let mut s = self.state.lock();
        match &mut s.txn {
            Some(t) if &t.txnid == txn && t.phase == Phase::Open => {
                let ops = t.ops.as_mut().expect("an open transaction has its buffer");
                match file {
                    Ok(file) => ops.push_blob(
                        TxnOp::Store { oid, serial, data },
                        file,
                        spill_dir.as_deref(),
                    ),
                    Err(why) => {
                        tracing::warn!(peer = %self.outbox.peer, "{why}; its vote will fail");
                        ops.fail_with(why);
                    }
                }
                Ok(())
            }
            Some(_) => Err(close("a blob for a transaction that is not the open one")),
            None => Err(close("a blob without an open transaction")),
        }
    }

    pub(super) fn vote(&self, msgid: Value, txnid: Value) -> Step {
        let entry = self.entry()?;
        let (meta, ops) = {
            let mut s = self.state.lock();
            let Some(t) = &mut s.txn else {
                drop(s);
                self.reply_error(
                    msgid,
                    &StorageError::Transaction("vote without a transaction".into()),
                );
                return Ok(());
            };
            if t.txnid != txnid || t.phase != Phase::Open {
                let why = match t.phase {
                    Phase::Voting => "Already voting (waiting)",
                    Phase::Voted => "Already voting (locked)",
                    Phase::Open => "vote for another transaction",
                };
                drop(s);
                self.reply_error(msgid, &StorageError::Transaction(why.into()));
                return Ok(());
            }
            t.phase = Phase::Voting;
            let ops = t.ops.take().expect("an open transaction has its buffer");
            (t.meta.clone(), ops)
        };
        let end = VoteEnd {
            entry,
            state: Arc::clone(&self.state),
            outbox: Arc::clone(&self.outbox),
            closed: Arc::clone(&self.closed),
            deadline: Arc::clone(&self.voted_deadline),
            timeout: self.shared.config.transaction_timeout,
            txnid,
            msgid,
        };
        // A small transaction whose objects no other vote holds is voted here, on the I/O
        // thread (`limits::VOTE_IN_LINE_OPS_MAX`): two thread hand-offs fewer per commit.
        if !end.entry.storage.waits_on_network()
            && ops.failed().is_none()
            && let Some(bytes) = ops.quick_to_replay()
            && let Some(permit) = self.shared.voting.try_take(bytes)
        {
            let storage = &end.entry.storage;
            match apply(&end.entry, meta, &ops).and_then(|a| vote_applied(storage, a, &ops, false))
            {
                Ok(Voting::Done(voted)) => end.conclude(ops, Ok((voted, permit))),
                Err(failure) => end.conclude(ops, Err(failure)),
                Ok(Voting::WouldWait(applied)) => {
                    tokio::task::spawn_blocking(move || {
                        let voted = vote_waiting(&end.entry.storage, applied, &ops);
                        end.conclude(ops, voted.map(|v| (v, permit)));
                    });
                }
            }
            return Ok(());
        }
        let voting_budget = Arc::clone(&self.shared.voting);
        tokio::task::spawn_blocking(move || {
            // Failed buffering, or no room in the voting budget: the transaction ends
            // with an error, as a failed vote does.
            let admitted = match ops.failed() {
                Some(why) => Err(StorageError::Transaction(why.to_string())),
                None => {
                    let wait = Duration::from_secs(limits::LOCK_TIMEOUT_SECONDS_DEFAULT);
                    let bytes = ops.live_bytes();
                    voting_budget
                        .take_by(bytes, std::time::Instant::now() + wait)
                        .ok_or_else(|| {
                            StorageError::Transaction(format!(
                                "the server is busy voting other large transactions: \
                                 no room for this one's {bytes} bytes within {wait:?}"
                            ))
                        })
                }
            };
            let result = match admitted {
                Ok(permit) => apply(&end.entry, meta, &ops)
                    .and_then(|a| vote_waiting(&end.entry.storage, a, &ops))
                    .map(|v| (v, permit)),
                Err(e) => Err(VoteFailure::Error(e)),
            };
            end.conclude(ops, result);
        });
        Ok(())
    }

    pub(super) fn tpc_finish(&self, msgid: Value, txnid: Value) -> Step {
        let entry = self.entry()?;
        let txn = {
            let mut s = self.state.lock();
            match &s.txn {
                Some(t) if t.txnid == txnid && t.phase == Phase::Voted => {
                    self.voted_deadline.clear();
                    s.txn.take()
                }
                _ => None,
            }
        };
        let Some(txn) = txn else {
            self.outbox.send(&Message::error(
                msgid,
                "builtins.AssertionError",
                Value::Tuple(vec![Value::str("finished called wo lock")]),
            ));
            return Ok(());
        };
        let outbox = Arc::clone(&self.outbox);
        let peer = self.outbox.peer.clone();
        tokio::task::spawn_blocking(move || {
            let Some(handle) = txn.handle else { return };
            let who = CommitInfo {
                user: &txn.meta.user,
                description: &txn.meta.description,
                peer: &peer,
            };
            if let Err(e) = entry.finish(&handle, &outbox, msgid.clone(), txn.oids, who) {
                tracing::error!(peer = %peer, "finish failed: {e}");
                entry.storage.abort(&handle);
                let (class, payload) = errors::to_remote(&e);
                outbox.send(&Message::error(msgid, class, payload));
            }
        });
        Ok(())
    }

    /// Aborts the open transaction (if `txnid` names it, or any if `None`), from
    /// a blocking thread when the storage waits on a network.
    pub(super) fn abort_transaction(&self, txnid: Option<&Value>) {
        if let Some((t, e)) = self.take_transaction(txnid) {
            if e.storage.waits_on_network() {
                tokio::task::spawn_blocking(move || t.abort_in(&e));
            } else {
                t.abort_in(&e);
            }
        }
    }

    /// Takes the open transaction out of the connection (if `txnid` names it, or
    /// any if `None`), with the storage it is on.
    pub(super) fn take_transaction(
        &self,
        txnid: Option<&Value>,
    ) -> Option<(Txn, Arc<StorageEntry>)> {
        let mut s = self.state.lock();
        match &s.txn {
            Some(t) if txnid.is_none() || Some(&t.txnid) == txnid => {
                let entry = self.entry.get().cloned()?;
                self.voted_deadline.clear();
                s.txn.take().map(|t| (t, entry))
            }
            _ => None,
        }
    }
}

impl Txn {
    /// Ends the transaction in the storage (releasing what its vote locked).
    pub(super) fn abort_in(self, entry: &StorageEntry) {
        if let Some(h) = self.handle {
            entry.storage.abort(&h);
        }
        entry.stats.aborts.fetch_add(1, Ordering::Relaxed);
    }
}

/// What a vote's end needs of its connection, wherever the vote ran.
struct VoteEnd {
    entry: Arc<StorageEntry>,
    state: Arc<Mutex<State>>,
    outbox: Arc<Outbox>,
    closed: Arc<AtomicBool>,
    deadline: Arc<VotedDeadline>,
    timeout: Option<Duration>,
    txnid: Value,
    msgid: Value,
}

/// A voted storage transaction: its handle, the oids the commit changes, the undone ones.
type Voted = (TxnHandle, Vec<Oid>, Vec<Oid>);

impl VoteEnd {
    /// Records the vote's outcome in the connection's transaction and replies.
    fn conclude(self, ops: TxnBuffer, result: Result<(Voted, Permit), VoteFailure>) {
        let mut s = self.state.lock();
        let msg = match result {
            Ok(((handle, oids, undone), permit)) => {
                if self.closed.load(Ordering::Acquire) {
                    self.entry.storage.abort(&handle);
                    return;
                }
                // The transaction may have been aborted (or replaced)
                // while the vote waited for the commit lock: then the
                // lock goes back at once.
                match &mut s.txn {
                    Some(t) if t.txnid == self.txnid && t.phase == Phase::Voting => {
                        t.phase = Phase::Voted;
                        t.handle = Some(handle);
                        t.oids = oids;
                        t.voting = Some(permit);
                    }
                    _ => {
                        self.entry.storage.abort(&handle);
                        drop(s);
                        let e = StorageError::Transaction(
                            "the transaction was aborted while voting".into(),
                        );
                        let (class, payload) = errors::to_remote(&e);
                        self.outbox
                            .send(&Message::error(self.msgid.clone(), class, payload));
                        return;
                    }
                }
                // The connection's task closes the connection if the transaction is
                // still voted then (it wakes for the vote's reply and sees this).
                if let Some(limit) = self.timeout {
                    self.deadline.set(limit);
                }
                let reply = VoteReply {
                    changed: undone,
                    conflicts: Vec::new(),
                };
                Message::reply(self.msgid.clone(), reply.encode())
            }
            Err(VoteFailure::Conflicts(conflicts)) => {
                self.entry.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                if let Some(t) = &mut s.txn
                    && t.txnid == self.txnid
                    && t.phase == Phase::Voting
                {
                    t.phase = Phase::Open;
                    t.ops = Some(ops);
                }
                // Client-side conflict resolution: the client resolves
                // each, stores again, and votes again.
                let reply = VoteReply {
                    changed: Vec::new(),
                    conflicts,
                };
                Message::reply(self.msgid.clone(), reply.encode())
            }
            Err(VoteFailure::Error(e)) => {
                if matches!(e, StorageError::Conflict(_) | StorageError::Conflicts(_)) {
                    self.entry.stats.conflicts.fetch_add(1, Ordering::Relaxed);
                }
                s.txn = None;
                self.entry.stats.aborts.fetch_add(1, Ordering::Relaxed);
                let (class, payload) = errors::to_remote(&e);
                Message::error(self.msgid.clone(), class, payload)
            }
        };
        drop(s);
        self.outbox.send(&msg);
    }
}

enum VoteFailure {
    /// Write conflicts on stores, which the client resolves.
    Conflicts(Vec<VoteConflict>),
    Error(StorageError),
}

/// A storage transaction with the buffered operations replayed into it, not yet voted.
struct Applied {
    handle: TxnHandle,
    oids: Vec<Oid>,
    undone: Vec<Oid>,
    /// Write conflicts the stores met (the vote is then not tried).
    conflicts: Vec<zodb_storage::ConflictError>,
}

/// What a vote that may not wait came to.
enum Voting {
    Done(Voted),
    /// It would have waited (for another vote's objects); nothing was taken.
    WouldWait(Applied),
}

/// Replays the buffered operations into a new storage transaction.
fn apply(
    entry: &StorageEntry,
    meta: TransactionMeta,
    ops: &TxnBuffer,
) -> Result<Applied, VoteFailure> {
    let storage = &entry.storage;
    let handle = storage.tpc_begin(meta).map_err(VoteFailure::Error)?;
    let fail = |e: StorageError| {
        storage.abort(&handle);
        e
    };
    let mut oids = Vec::new();
    let mut undone = Vec::new();
    let mut conflicts = Vec::new();
    for op in ops.replay() {
        let op = match op {
            Ok(op) => op,
            Err(e) => {
                return Err(VoteFailure::Error(fail(StorageError::Transaction(
                    format!("reading back the buffered transaction: {e}"),
                ))));
            }
        };
        let is_store = matches!(op, TxnOp::Store { .. });
        let r = match op {
            TxnOp::Store { oid, serial, data } => {
                oids.push(oid);
                match ops.blob_of(oid) {
                    Some(file) => store_blob(storage.as_ref(), &handle, oid, serial, data, file),
                    None => storage.store(&handle, oid, serial, data),
                }
            }
            TxnOp::Delete { oid, serial } => {
                oids.push(oid);
                storage.delete_object(&handle, oid, serial)
            }
            TxnOp::Check { oid, serial } => storage.check_current_serial(&handle, oid, serial),
            // The revision's tid is the transaction's (from `tpc_begin`).
            TxnOp::Restore {
                oid,
                serial: _,
                data,
                prev_txn,
            } => {
                oids.push(oid);
                storage.restore(&handle, oid, data, prev_txn)
            }
            TxnOp::Undo(tid) => storage.undo(&handle, tid).map(|changed| {
                oids.extend_from_slice(&changed);
                undone.extend(changed);
            }),
        };
        match r {
            Ok(()) => {}
            Err(StorageError::Conflict(c)) if !c.read_conflict && is_store => conflicts.push(c),
            Err(e) => return Err(VoteFailure::Error(fail(e))),
        }
    }
    Ok(Applied {
        handle,
        oids,
        undone,
        conflicts,
    })
}

/// Votes the applied transaction, or with `wait` false, only if that needs no wait
/// ([`Storage::vote_without_waiting`](zodb_storage::Storage::vote_without_waiting)).
/// Write conflicts on stores come back for the client to resolve; any other failure
/// aborts the storage transaction.
fn vote_applied(
    storage: &Arc<dyn Storage>,
    applied: Applied,
    ops: &TxnBuffer,
    wait: bool,
) -> Result<Voting, VoteFailure> {
    let Applied {
        handle,
        mut oids,
        undone,
        mut conflicts,
    } = applied;
    if conflicts.is_empty() {
        let voted = if wait {
            storage.vote(&handle).map(|()| true)
        } else {
            storage.vote_without_waiting(&handle)
        };
        match voted {
            Ok(true) => {
                oids.sort();
                oids.dedup();
                return Ok(Voting::Done((handle, oids, undone)));
            }
            Ok(false) => {
                return Ok(Voting::WouldWait(Applied {
                    handle,
                    oids,
                    undone,
                    conflicts,
                }));
            }
            Err(e)
                if !e.conflicts().is_empty() && e.conflicts().iter().all(|c| !c.read_conflict) =>
            {
                conflicts.extend(e.conflicts().into_iter().cloned());
            }
            Err(e) => {
                storage.abort(&handle);
                return Err(VoteFailure::Error(e));
            }
        }
    }
    storage.abort(&handle);
    // Only stores can be resolved by the client: a conflicting deletion is
    // an error.
    let mut left = Vec::new();
    for c in conflicts {
        let data = ops.store_data(c.oid).map_err(|e| {
            VoteFailure::Error(StorageError::Transaction(format!(
                "reading back the buffered transaction: {e}"
            )))
        })?;
        let Some(data) = data else {
            return Err(VoteFailure::Error(StorageError::Conflict(c)));
        };
        left.push(VoteConflict {
            oid: c.oid,
            committed: c.committed,
            expected: c.expected,
            data: Some(data),
        });
    }
    Err(VoteFailure::Conflicts(left))
}

/// Votes the applied transaction, waiting as long as the storage does.
fn vote_waiting(
    storage: &Arc<dyn Storage>,
    applied: Applied,
    ops: &TxnBuffer,
) -> Result<Voted, VoteFailure> {
    match vote_applied(storage, applied, ops, true)? {
        Voting::Done(voted) => Ok(voted),
        // `vote` votes or fails; were a storage to say otherwise, the client is told.
        Voting::WouldWait(applied) => {
            storage.abort(&applied.handle);
            Err(VoteFailure::Error(StorageError::Transaction(
                "the storage neither voted nor failed".into(),
            )))
        }
    }
}

/// Stores a blob with a hard link to the buffer's file (the storage takes the link; the
/// buffer keeps its file for another vote until the transaction ends).
fn store_blob(
    storage: &dyn zodb_storage::Storage,
    handle: &TxnHandle,
    oid: Oid,
    serial: Tid,
    data: Vec<u8>,
    file: &std::path::Path,
) -> Result<(), StorageError> {
    let mut link = file.as_os_str().to_owned();
    link.push(format!(".vote-{}", handle.id()));
    let link = std::path::PathBuf::from(link);
    let _ = std::fs::remove_file(&link);
    std::fs::hard_link(file, &link)
        .map_err(|e| StorageError::io(format!("linking the blob file {}", file.display()), e))?;
    let r = storage.store_blob(handle, oid, serial, data, &link);
    if r.is_err() {
        let _ = std::fs::remove_file(&link);
    }
    r
}
