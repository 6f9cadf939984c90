//! The write side of a commit: what a voted transaction will write, and the
//! group commit that writes it.
//!
//! `vote` locks the transaction's objects, checks its serials and computes
//! its records ([`Prepared`]), but writes nothing: the tid and every file
//! position are chosen when the transaction is written. `finish` hands the
//! prepared transaction to [`CommitQueue`]: the first finisher to arrive
//! becomes the writer and writes everything queued meanwhile as one batch —
//! each transaction with status `'c'`, then the status flips, then one
//! `fdatasync` for the whole batch — and only then publishes the batch,
//! reports it to the storage's listeners and answers every finisher.
//! Concurrent committers thus share an fsync, but none is answered before its
//! bytes are durable. There is at most one writer at a time (the `writing`
//! flag), which is what keeps the listeners' reports in tid order.

use std::sync::Arc;

use parking_lot::{Condvar, Mutex};

// The batch writer works on the storage's own state.
use super::*;

use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::storage::TransactionMeta;

/// What one record of a prepared transaction holds.
#[derive(Debug, Clone)]
pub enum Payload {
    Data(Vec<u8>),
    /// Reuse the data of the record at this position (undo, restore), or,
    /// with 0, delete the object.
    Back(u64),
}

/// A voted transaction, ready to be written.
#[derive(Debug)]
pub struct Prepared {
    pub meta: TransactionMeta,
    /// In file order; an oid may appear more than once (the last one is
    /// the current record).
    pub records: Vec<(Oid, Payload)>,
    /// Blob files stored (staged in the blob directory), made revision tid of their
    /// oid when the transaction is written.
    pub blobs: Vec<(Oid, std::path::PathBuf)>,
    /// Blob revisions an undo brings back: `(oid, serial)`'s file becomes revision
    /// tid of `oid` too.
    pub blob_links: Vec<(Oid, Tid)>,
}

/// The outcome slot of one finisher.
#[derive(Debug, Default)]
pub struct Slot {
    result: Mutex<Option<Result<Tid>>>,
}

impl Slot {
    pub fn set(&self, r: Result<Tid>) {
        *self.result.lock() = Some(r);
    }

    fn take(&self) -> Option<Result<Tid>> {
        self.result.lock().take()
    }
}

#[derive(Debug, Default)]
struct Queue {
    entries: Vec<(Arc<Prepared>, Arc<Slot>)>,
    /// A finisher is writing batches.
    writing: bool,
}

/// Finishers queue here; one of them writes for all.
#[derive(Debug, Default)]
pub struct CommitQueue {
    queue: Mutex<Queue>,
    done: Condvar,
}

impl CommitQueue {
    /// Commits `prepared` through `write_batch` (called by whichever
    /// finisher is the writer, with the batch it takes), and returns this
    /// transaction's tid once it is durable and visible.
    pub fn commit(
        &self,
        prepared: Arc<Prepared>,
        write_batch: impl Fn(&[(Arc<Prepared>, Arc<Slot>)]),
    ) -> Result<Tid> {
        let slot = Arc::new(Slot::default());
        let mut q = self.queue.lock();
        q.entries.push((prepared, Arc::clone(&slot)));
        if q.writing {
            loop {
                self.done.wait(&mut q);
                if let Some(r) = slot.take() {
                    return r;
                }
                if !q.writing {
                    // The writer left before reaching us: take over.
                    break;
                }
            }
        }
        q.writing = true;
        loop {
            let batch = std::mem::take(&mut q.entries);
            if batch.is_empty() {
                q.writing = false;
                break;
            }
            drop(q);
            write_batch(&batch);
            q = self.queue.lock();
            self.done.notify_all();
        }
        drop(q);
        self.done.notify_all();
        slot.take()
            .unwrap_or_else(|| Err(StorageError::Transaction("commit lost its result".into())))
    }
}

/// Keeps a pack's file switch apart from voted transactions, whose records
/// may point at positions of the file being replaced.
#[derive(Debug, Default)]
pub struct PackGate {
    state: Mutex<GateState>,
    changed: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    voted: usize,
    switching: bool,
}

impl PackGate {
    /// A transaction is about to vote: waits while a pack switches files.
    pub fn enter(&self) {
        let mut s = self.state.lock();
        while s.switching {
            self.changed.wait(&mut s);
        }
        s.voted += 1;
    }

    /// `enter` if no pack is switching files; `false` (not entered) if one is.
    pub fn try_enter(&self) -> bool {
        let mut s = self.state.lock();
        if s.switching {
            return false;
        }
        s.voted += 1;
        true
    }

    /// A voted transaction finished or aborted.
    pub fn leave(&self) {
        let mut s = self.state.lock();
        s.voted = s.voted.saturating_sub(1);
        self.changed.notify_all();
    }

    /// Stops new votes and waits until none is pending; `open` lets them on.
    pub fn close_for_switch(&self) {
        let mut s = self.state.lock();
        s.switching = true;
        while s.voted > 0 {
            self.changed.wait(&mut s);
        }
    }

    pub fn open(&self) {
        self.state.lock().switching = false;
        self.changed.notify_all();
    }
}

impl FileStorage {
    /// With `p`'s objects locked: checks serials and computes the records
    /// (undo's backpointers included) that `finish` will write.
    ///
    /// On success the records' data are moved out of `p`'s writes (not copied): a voted
    /// transaction's writes are not read again.  On failure `p` is left as it was.
    pub(super) fn prepare(&self, p: &mut Pending) -> Result<Prepared> {
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let index_pos = |oid: Oid| self.snap.read().index.get(oid.0);
        // Where `oid`'s current record is and its serial: from the recent transactions,
        // or read from the file.
        let current = |oid: Oid| -> Result<Option<(u64, Tid)>> {
            let (pos, recent) = {
                let snap = self.snap.read();
                let Some(pos) = snap.index.get(oid.0) else {
                    return Ok(None);
                };
                (pos, snap.recent.serial_at(pos))
            };
            match recent {
                Some(serial) => Ok(Some((pos, serial))),
                None => Ok(Some((pos, reader.data_header(pos)?.serial))),
            }
        };

        // Serials: stores and deletions (all conflicts are reported
        // together), then read checks. A store of an oid that has no record
        // yet is not checked, as in Python.
        let mut conflicts = Vec::new();
        for w in &p.writes {
            let (oid, expected, seen) = match w {
                PendingWrite::Store {
                    oid,
                    expected,
                    seen,
                    ..
                }
                | PendingWrite::Delete {
                    oid,
                    expected,
                    seen,
                } => (*oid, *expected, seen),
                PendingWrite::Restore { .. } => continue,
            };
            let committed = match index_pos(oid) {
                None => None,
                Some(pos) => match Seen::serial_at(seen, &file, pos) {
                    Some(serial) => Some(serial),
                    None => current(oid)?.map(|(_, serial)| serial),
                },
            };
            if let Some(committed) = committed
                && committed != expected
            {
                conflicts.push(ConflictError {
                    oid,
                    committed,
                    expected,
                    read_conflict: false,
                });
            }
        }
        if !conflicts.is_empty() {
            return Err(StorageError::from_conflicts(conflicts));
        }
        for &(oid, expected) in &p.checks {
            let committed = current(oid)?.map_or(Tid::ZERO, |(_, serial)| serial);
            if committed != expected {
                return Err(ConflictError {
                    oid,
                    committed,
                    expected,
                    read_conflict: true,
                }
                .into());
            }
        }

        // Records in file order. In-transaction positions are not known
        // yet: undo compares against the records it writes itself through
        // `undo_written`, with a position no file record can have.
        let mut records: Vec<(Oid, Payload)> = Vec::with_capacity(p.writes.len());
        // Records whose data are still in `p.writes` (record index, write index): moved
        // into the records once nothing can fail any more.
        let mut data_of: Vec<(usize, usize)> = Vec::with_capacity(p.writes.len());
        const UNWRITTEN: u64 = u64::MAX;
        // Positions written by this transaction, which undo records must
        // treat as current.
        let mut written: HashMap<Oid, u64> = HashMap::with_capacity(p.writes.len());
        for (i, w) in p.writes.iter().enumerate() {
            let oid = w.oid();
            let prev = index_pos(oid).unwrap_or(0);
            // A restored record whose bytes the copy already holds in `prev_txn`
            // points at them, as Python's FileStorage does, so a copy is as small as
            // the original and byte for byte the same.
            let back_to = match w {
                PendingWrite::Restore {
                    data: Some(data),
                    prev_txn: Some(t),
                    ..
                } => match Self::record_of_transaction(&reader, prev, oid, *t)? {
                    Some(pos) if Self::holds_data(&reader, pos, data)? => Some(pos),
                    _ => None,
                },
                _ => None,
            };
            let payload = match w {
                _ if back_to.is_some() => Payload::Back(back_to.unwrap_or(0)),
                PendingWrite::Store { .. } | PendingWrite::Restore { data: Some(_), .. } => {
                    data_of.push((records.len(), i));
                    Payload::Data(Vec::new())
                }
                PendingWrite::Delete { .. } => Payload::Back(0),
                PendingWrite::Restore {
                    data: None,
                    prev_txn,
                    ..
                } => {
                    // Point at this object's record of `prev_txn`, if the
                    // copy has it; otherwise the revision is a deletion.
                    let back = match prev_txn {
                        Some(t) => {
                            Self::record_of_transaction(&reader, prev, oid, *t)?.unwrap_or(0)
                        }
                        None => 0,
                    };
                    Payload::Back(back)
                }
            };
            records.push((oid, payload));
            written.insert(oid, UNWRITTEN);
        }
        let mut problems = Vec::new();
        // When one transaction undoes several, a later undo must see the
        // record an earlier one wrote as the current one; those records are
        // not in the file yet, so they are remembered here.
        let mut undo_written: HashMap<Oid, CurrentRecord> = HashMap::new();
        let mut blob_links = Vec::new();
        for undo_tid in &p.undos {
            let Some((utpos, uh)) = Self::find_transaction(&reader, *undo_tid)? else {
                problems.push("Invalid undo transaction id".to_string());
                continue;
            };
            if uh.status != STATUS_COMMITTED {
                problems.push("non-undoable transaction".to_string());
                continue;
            }
            // A failure is forgiven when a later record of the same object
            // in the undone transaction can be undone (Python's "second
            // chance": the later record is the one that counts).
            let mut failures: Vec<(Oid, String)> = Vec::new();
            for r in Self::transaction_records(&reader, utpos, &uh)? {
                let oid = r.header.oid;
                failures.retain(|(o, _)| *o != oid);
                if written.contains_key(&oid) && !undo_written.contains_key(&oid) {
                    problems.push(format!(
                        "object {oid} is both stored and undone in one transaction"
                    ));
                    continue;
                }
                let cur = match undo_written.get(&oid) {
                    Some(c) => c.clone(),
                    None => match index_pos(oid) {
                        Some(cpos) => CurrentRecord::read(&reader, cpos, oid)?,
                        None => CurrentRecord {
                            pos: 0,
                            data_ptr: None,
                            data: None,
                        },
                    },
                };
                let undone_data = reader.resolve(r.clone())?.map(|(d, _)| d);
                let copyable = cur.pos == r.pos
                    || cur.data_ptr == Some(r.pos)
                    || (undone_data.is_some() && undone_data == cur.data);
                if !copyable {
                    failures.push((oid, if r.header.prev == 0 {
                        format!("Can't undo an add transaction followed by conflicting transactions (object {oid})")
                    } else {
                        format!("Some data were modified by a later transaction (object {oid})")
                    }));
                    continue;
                }
                let back = r.header.prev;
                records.push((oid, Payload::Back(back)));
                let pos = UNWRITTEN;
                let resolved = match back {
                    0 => None,
                    back => reader.resolve(reader.record(back, Some(oid))?)?,
                };
                // Undoing a blob's change brings its earlier file back, as the
                // revision of this transaction (ZODB copies it too).
                if let (Some(blobs), Some((_, data_pos))) = (&self.blobs, &resolved) {
                    let serial = reader.data_header(*data_pos)?.serial;
                    if blobs.path(oid, serial).is_file() {
                        blob_links.push((oid, serial));
                    }
                }
                let data = resolved.map(|(d, _)| d);
                let data_ptr = (back > 0).then_some(back);
                undo_written.insert(
                    oid,
                    CurrentRecord {
                        pos,
                        data_ptr,
                        data,
                    },
                );
                written.insert(oid, pos);
            }
            problems.extend(failures.into_iter().map(|(_, why)| why));
        }
        if !problems.is_empty() {
            return Err(StorageError::Undo(problems));
        }
        for (r, w) in data_of {
            let data = match &mut p.writes[w] {
                PendingWrite::Store { data, .. }
                | PendingWrite::Restore {
                    data: Some(data), ..
                } => std::mem::take(data),
                _ => continue,
            };
            records[r].1 = Payload::Data(data);
        }

        Ok(Prepared {
            meta: p.meta.clone(),
            records,
            blobs: p.blobs.iter().map(|(o, f)| (*o, f.clone())).collect(),
            blob_links,
        })
    }

    /// Makes the blob files `prepared` stored (and those its undos bring back)
    /// revisions `tid`, durably; on failure removes what it placed.
    fn place_blobs(&self, prepared: &Prepared, tid: Tid) -> Result<Vec<std::path::PathBuf>> {
        let Some(blobs) = &self.blobs else {
            return Ok(Vec::new());
        };
        let mut placed = Vec::new();
        let moved = prepared
            .blobs
            .iter()
            .map(|(oid, staged)| blobs.commit(staged, *oid, tid))
            .chain(
                prepared
                    .blob_links
                    .iter()
                    .map(|(oid, from)| blobs.link(*oid, *from, tid)),
            );
        for r in moved {
            match r {
                Ok(path) => placed.push(path),
                Err(e) => {
                    for f in &placed {
                        crate::blob::BlobDir::discard(f);
                    }
                    return Err(StorageError::io(
                        format!("placing the blob files of transaction {tid}"),
                        e,
                    ));
                }
            }
        }
        Ok(placed)
    }

    /// `fdatasync` of the data file (failing on demand in unit tests).
    fn sync(&self, file: &File) -> std::io::Result<()> {
        #[cfg(test)]
        if self.fail_syncs.load(Ordering::Relaxed) {
            return Err(std::io::Error::other("injected fdatasync failure"));
        }
        file.sync_data()
    }

    /// Writes a batch of voted transactions at the end of the file, each
    /// with status `'c'`, then flips their statuses, makes it all durable
    /// with one `fdatasync`, publishes it, reports it to the listeners, and
    /// fills every finisher's slot. Tids are chosen here, in batch order.
    pub(super) fn write_batch(&self, batch: &[(Arc<Prepared>, Arc<Slot>)]) {
        if let Err(e) = self.check_writable() {
            let why = e.to_string();
            for (_, slot) in batch {
                slot.set(Err(StorageError::Transaction(why.clone())));
            }
            return;
        }
        let (file, start, mut last_tid) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end, s.last_tid)
        };
        let mut buf: Vec<u8> = Vec::new();
        // oid -> position of its record in an earlier transaction of this
        // batch.
        let mut in_batch: HashMap<u64, u64> = HashMap::new();
        let mut written: Vec<Written> = Vec::new();
        // Blob files made committed revisions by this batch, removed if it fails.
        let mut placed: Vec<std::path::PathBuf> = Vec::new();
        let mut clock = self.clock.lock();
        clock.observe(last_tid);
        for (i, (prepared, slot)) in batch.iter().enumerate() {
            let tid = match prepared.meta.tid {
                Some(t) if t <= last_tid => {
                    slot.set(Err(StorageError::Transaction(format!(
                        "tid {t} is not later than the last transaction {last_tid}"
                    ))));
                    continue;
                }
                Some(t) => {
                    clock.observe(t);
                    t
                }
                None => clock.next_tid(),
            };
            last_tid = tid;
            // Blob files first: once the transaction is readable, so are its blobs.
            match self.place_blobs(prepared, tid) {
                Ok(files) => placed.extend(files),
                Err(e) => {
                    slot.set(Err(e));
                    continue;
                }
            }
            let tpos = start + buf.len() as u64;
            let m = &prepared.meta;
            let mut b = TxnBuilder::new(
                tpos,
                tid,
                STATUS_CHECKPOINT,
                &m.user,
                &m.description,
                &m.extension,
            );
            b.reserve(
                prepared
                    .records
                    .iter()
                    .map(|(_, p)| {
                        format::DATA_HEADER_SIZE
                            + match p {
                                Payload::Data(d) => d.len(),
                                Payload::Back(_) => 8,
                            }
                    })
                    .sum(),
            );
            let mut positions = Vec::with_capacity(prepared.records.len());
            {
                let snap = self.snap.read();
                for (oid, payload) in &prepared.records {
                    let prev = in_batch
                        .get(&oid.0)
                        .copied()
                        .or_else(|| snap.index.get(oid.0))
                        .unwrap_or(0);
                    let pos = match payload {
                        Payload::Data(d) => b.push(*oid, tid, prev, &format::Payload::Data(d)),
                        Payload::Back(back) => {
                            b.push(*oid, tid, prev, &format::Payload::Back(*back))
                        }
                    };
                    positions.push((oid.0, pos));
                }
            }
            if buf.is_empty() {
                // The batch's first transaction (often its only one): no copy.
                buf = b.finish();
            } else {
                buf.extend_from_slice(&b.finish());
            }
            // `prev` points at the object's record in an earlier
            // transaction, never at one of this transaction (as Python
            // writes it, and as undo of such a transaction expects).
            in_batch.extend(positions.iter().copied());
            written.push(Written {
                slot: i,
                tid,
                tpos,
                status: match prepared.meta.status {
                    TxnStatus::Packed => STATUS_PACKED,
                    TxnStatus::Committed | TxnStatus::Undone => STATUS_COMMITTED,
                },
                positions,
            });
        }
        drop(clock);
        let end = start + buf.len() as u64;
        let written_out = file.write_all_at(&buf, start).and_then(|()| {
            // The statuses flip only once every byte is in place, and the
            // one fsync covers them all.
            for w in &written {
                file.write_all_at(&[w.status], w.tpos + TXN_STATUS as u64)?;
            }
            Ok(())
        });
        let durable = match written_out {
            // A failed write (a full disk: ENOSPC, EFBIG) leaves the bytes
            // before `start` as they were: cut the batch back off and go on.
            // If even that fails, nobody knows what the tail holds, so
            // refuse writes from now on.
            Err(e) => {
                match file.set_len(start).and_then(|()| file.sync_data()) {
                    Ok(()) => {
                        tracing::error!(path = %self.path.display(), "a commit failed and was cut off: {e}")
                    }
                    Err(e2) => self.poison(format!(
                        "a commit failed ({e}) and cutting it off failed ({e2})"
                    )),
                }
                Err(e)
            }
            // A failed fdatasync is another matter: the kernel may have
            // dropped the dirty pages and cleared the error, so a later
            // fsync could succeed over bytes that never reached the disk.
            // What the file holds is unknown until it is read again: cut
            // the batch off (best effort, so a reopen does not find a
            // transaction whose finishers were told it failed) and refuse
            // commits until the storage is reopened.
            Ok(()) => self.sync(&file).inspect_err(|e| {
                let _ = file.set_len(start);
                self.poison(format!("fdatasync failed: {e}"));
            }),
        };
        if let Err(e) = durable {
            for f in &placed {
                crate::blob::BlobDir::discard(f);
            }
            for w in &written {
                batch[w.slot].1.set(Err(StorageError::io(
                    format!("{}: writing a transaction at {start}", self.path.display()),
                    std::io::Error::new(e.kind(), e.to_string()),
                )));
            }
            return;
        }
        {
            let mut snap = self.snap.write();
            for (i, w) in written.iter().enumerate() {
                for (oid, pos) in &w.positions {
                    snap.index.insert(*oid, *pos);
                }
                snap.last_tid = w.tid;
                let txn_end = written.get(i + 1).map_or(end, |next| next.tpos);
                snap.recent.push(w.tpos, txn_end, w.tid);
            }
            snap.end = end;
        }
        // Loads see the batch now, and nobody has been answered yet. The
        // commit queue runs one `write_batch` at a time, each batch's tids
        // after the previous batch's, and `written` is in tid order: so the
        // reports come out in tid order, each before its `finish` returns.
        if !self.listeners.is_empty() {
            for w in &written {
                let mut oids: Vec<Oid> = w.positions.iter().map(|&(oid, _)| Oid(oid)).collect();
                // A transaction may hold several records of one oid.
                oids.sort_unstable();
                oids.dedup();
                self.listeners.committed(w.tid, &oids);
            }
        }
        for w in written {
            batch[w.slot].1.set(Ok(w.tid));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn commit(fs: &FileStorage, oid: Oid, expected: Tid, data: &[u8]) -> Result<Tid> {
        let t = fs.tpc_begin(TransactionMeta::new("u", "t"))?;
        fs.store(&t, oid, expected, data.to_vec())?;
        fs.vote(&t)?;
        let tid = fs.finish(&t);
        if tid.is_err() {
            fs.abort(&t);
        }
        tid
    }

    /// After a failed fdatasync the kernel may have dropped the dirty pages: the
    /// storage refuses every commit until reopened, and the reopened file holds what
    /// was acknowledged and nothing of the failed commit.
    #[test]
    fn a_failed_fsync_poisons_the_storage_until_reopened() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let fs = FileStorage::open(&path).unwrap();
        let first = commit(&fs, Oid(0), Tid::ZERO, b"first").unwrap();
        let within = std::time::Duration::from_secs(1);
        fs.check_health(within).unwrap();

        fs.fail_syncs.store(true, Ordering::Relaxed);
        let failed = commit(&fs, Oid(0), first, b"second").unwrap_err();
        assert!(matches!(failed, StorageError::Io { .. }), "{failed:?}");
        fs.fail_syncs.store(false, Ordering::Relaxed);

        // Even with a sync that works again, nothing is written until reopen.
        let refused = commit(&fs, Oid(0), first, b"third").unwrap_err();
        assert!(
            matches!(&refused, StorageError::Poisoned(why) if why.contains("fdatasync")),
            "{refused:?}"
        );
        assert_eq!(fs.load(Oid(0)).unwrap(), (b"first".to_vec(), first));
        // Health says so (reads still work, but the storage cannot take commits).
        let health = fs.check_health(within).unwrap_err();
        assert!(matches!(health, StorageError::Poisoned(_)), "{health:?}");
        fs.close().unwrap();
        let health = fs.check_health(within).unwrap_err();
        assert!(matches!(health, StorageError::Closed), "{health:?}");
        drop(fs);

        let fs = FileStorage::open(&path).unwrap();
        assert_eq!(fs.load(Oid(0)).unwrap(), (b"first".to_vec(), first));
        assert_eq!(fs.last_transaction(), first);
        let next = commit(&fs, Oid(0), first, b"after reopen").unwrap();
        assert_eq!(fs.load(Oid(0)).unwrap(), (b"after reopen".to_vec(), next));
    }

    /// The serials a store checks against come from the table of recent transactions
    /// for what this process wrote, and they are the ones in the file; conflicts are
    /// found as before, and after a reopen (an empty table) too.
    #[test]
    fn serials_of_recent_transactions_are_the_ones_in_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let fs = FileStorage::open(&path).unwrap();
        let mut serials = [Tid::ZERO; 5];
        for round in 0..4u8 {
            // Several objects per transaction and batches of one: positions at the
            // start, inside and at the end of transactions.
            let t = fs.tpc_begin(TransactionMeta::new("u", "t")).unwrap();
            for oid in 0..5u64 {
                if (oid + u64::from(round)) % 2 == 0 {
                    fs.store(
                        &t,
                        Oid(oid),
                        serials[oid as usize],
                        vec![round; 10 + oid as usize],
                    )
                    .unwrap();
                }
            }
            fs.vote(&t).unwrap();
            let tid = fs.finish(&t).unwrap();
            for oid in 0..5u64 {
                if (oid + u64::from(round)) % 2 == 0 {
                    serials[oid as usize] = tid;
                }
            }
        }
        let check = |fs: &FileStorage| {
            for oid in 0..5u64 {
                let seen = fs.committed(Oid(oid)).unwrap().unwrap();
                let (file, pos, end) = fs.locate(Oid(oid)).unwrap();
                let in_file = fs.reader(&file, end).data_header(pos).unwrap().serial;
                assert_eq!((seen.pos, seen.serial), (pos, in_file), "oid {oid}");
                assert_eq!(in_file, serials[oid as usize]);
            }
        };
        assert!(fs.snap.read().recent.serial_at(4 + 1).is_some());
        check(&fs);
        let stale = commit(&fs, Oid(1), Tid::ZERO, b"x").unwrap_err();
        assert!(matches!(stale, StorageError::Conflict(_)), "{stale:?}");
        drop(fs);
        let fs = FileStorage::open(&path).unwrap();
        assert!(fs.snap.read().recent.serial_at(4 + 1).is_none());
        check(&fs);
        commit(&fs, Oid(1), serials[1], b"y").unwrap();
    }

    /// Loads keep what they read in the record cache and answer from it, and what they
    /// answer is what the file says, after commits (new positions), for older revisions
    /// (walked in the file), and after a pack (a new file, a new cache).
    #[test]
    fn loads_from_the_record_cache_answer_what_the_file_holds() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
        let first = commit(&fs, Oid(1), Tid::ZERO, b"first").unwrap();
        let current = |fs: &FileStorage| {
            let snap = fs.snap.read();
            let pos = snap.index.get(1).unwrap();
            snap.records.get(Oid(1), pos)
        };
        assert_eq!(current(&fs), None);
        let rev = fs.load_before(Oid(1), Tid::MAX).unwrap().unwrap();
        assert_eq!(
            (rev.data.as_slice(), rev.start, rev.end),
            (&b"first"[..], first, None)
        );
        assert_eq!(current(&fs), Some((first, b"first".to_vec())));
        let again = fs.load_before(Oid(1), Tid::MAX).unwrap().unwrap();
        assert_eq!(again, rev);
        // Before the revision's own tid: not the cached one, the file's answer.
        assert_eq!(fs.load_before(Oid(1), first).unwrap(), None);
        let second = commit(&fs, Oid(1), first, b"second").unwrap();
        assert_eq!(current(&fs), None, "a new record, a new position");
        let rev = fs.load_before(Oid(1), Tid::MAX).unwrap().unwrap();
        assert_eq!(
            (rev.data.as_slice(), rev.start, rev.end),
            (&b"second"[..], second, None)
        );
        let old = fs.load_before(Oid(1), second).unwrap().unwrap();
        assert_eq!(
            (old.data.as_slice(), old.start, old.end),
            (&b"first"[..], first, Some(second))
        );
        fs.pack(second, false).unwrap();
        assert_eq!(
            current(&fs),
            None,
            "the packed file comes with an empty cache"
        );
        let rev = fs.load_before(Oid(1), Tid::MAX).unwrap().unwrap();
        assert_eq!((rev.data.as_slice(), rev.start), (&b"second"[..], second));
        assert_eq!(current(&fs), Some((second, b"second".to_vec())));
    }

    /// The health check reads the file back: a file whose header was overwritten
    /// under the storage (another program, a restore gone wrong) is reported.
    #[test]
    fn the_health_check_reads_the_file_header() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("Data.fs");
        let fs = FileStorage::open(&path).unwrap();
        commit(&fs, Oid(0), Tid::ZERO, b"first").unwrap();
        let within = std::time::Duration::from_secs(1);
        fs.check_health(within).unwrap();
        let here = fs.location();
        assert_eq!(
            (here.kind, here.location),
            ("file", path.display().to_string())
        );
        let other = fs::OpenOptions::new().write(true).open(&path).unwrap();
        other.write_all_at(b"JUNK", 0).unwrap();
        let health = fs.check_health(within).unwrap_err();
        assert!(
            matches!(health, StorageError::Corrupted { offset: 0, .. }),
            "{health:?}"
        );
    }
}
