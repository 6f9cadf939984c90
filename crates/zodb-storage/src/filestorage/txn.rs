//! A transaction's life before the group commit: `tpc_begin`, the writes it buffers
//! (`store`, `delete_object`, `restore`, `undo`) with their serial checks against the
//! committed records, `check_current_serial`, the vote (which locks the objects and has
//! `commit.rs` prepare the records), `finish` handing the prepared transaction to the
//! commit queue, and `abort`.  `mod.rs` keeps the `Storage` impl, which delegates here.

// These work on the storage's own state, as the rest of the engine does.
use super::*;

/// One write of a pending transaction.
#[derive(Debug)]
pub(super) enum PendingWrite {
    Store {
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        seen: Option<Seen>,
    },
    Delete {
        oid: Oid,
        expected: Tid,
        seen: Option<Seen>,
    },
    /// A copied revision: data, or the data of transaction `prev_txn`, or a
    /// deletion; never serial-checked.
    Restore {
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    },
}

impl PendingWrite {
    pub(super) fn oid(&self) -> Oid {
        match self {
            PendingWrite::Store { oid, .. }
            | PendingWrite::Delete { oid, .. }
            | PendingWrite::Restore { oid, .. } => *oid,
        }
    }
}

/// An object's current record as undo compares it with the undone one.
#[derive(Debug, Clone)]
pub(super) struct CurrentRecord {
    pub(super) pos: u64,
    /// Where its data are: its own position, or its backpointer (one hop,
    /// as Python compares them); `None` for a deletion.
    pub(super) data_ptr: Option<u64>,
    pub(super) data: Option<Vec<u8>>,
}

impl CurrentRecord {
    pub(super) fn read(reader: &Reader<'_>, pos: u64, oid: Oid) -> Result<CurrentRecord> {
        let record = reader.record(pos, Some(oid))?;
        let data_ptr = match &record.payload {
            RecordPayload::Data(_) => Some(pos),
            RecordPayload::Back(0) => None,
            RecordPayload::Back(b) => Some(*b),
        };
        let data = reader.resolve(record)?.map(|(d, _)| d);
        Ok(CurrentRecord {
            pos,
            data_ptr,
            data,
        })
    }
}

#[derive(Debug)]
pub(super) struct Pending {
    pub(super) meta: TransactionMeta,
    pub(super) writes: Vec<PendingWrite>,
    pub(super) by_oid: HashMap<Oid, usize>,
    pub(super) checks: Vec<(Oid, Tid)>,
    pub(super) undos: Vec<Tid>,
    /// The objects undo will change, known when `undo` is called.
    pub(super) undo_oids: Vec<Oid>,
    /// Blob files stored, staged in the blob directory's `tmp/`, by oid.
    pub(super) blobs: HashMap<Oid, std::path::PathBuf>,
    /// Set by a successful vote: the transaction holds its object locks
    /// and a place at the pack gate until finish or abort.
    pub(super) voted: Option<Arc<Prepared>>,
    pub(super) done: bool,
}

/// A conflict unless `committed == expected`.
pub(super) fn check_serial(
    oid: Oid,
    committed: Tid,
    expected: Tid,
    read_conflict: bool,
) -> Result<()> {
    if committed == expected {
        return Ok(());
    }
    Err(ConflictError {
        oid,
        committed,
        expected,
        read_conflict,
    }
    .into())
}

pub(super) fn push_write(p: &mut Pending, w: PendingWrite) {
    let oid = w.oid();
    if matches!(w, PendingWrite::Restore { .. }) {
        // Copied transactions keep every record they had, even several of
        // one object (an undo of several transactions writes such).
        p.writes.push(w);
        return;
    }
    match p.by_oid.get(&oid) {
        // The last store of an oid in a transaction wins.
        Some(&i) => p.writes[i] = w,
        None => {
            p.by_oid.insert(oid, p.writes.len());
            p.writes.push(w);
        }
    }
}

impl FileStorage {
    pub(super) fn pending(&self, txn: &TxnHandle) -> Result<Arc<Mutex<Pending>>> {
        self.pending.lock().get(&txn.id()).cloned().ok_or_else(|| {
            StorageError::Transaction(format!("{txn:?} is not a transaction of this storage"))
        })
    }

    /// Buffers a write in the open transaction `txn` (before its vote).
    pub(super) fn add_write(&self, txn: &TxnHandle, what: &str, w: PendingWrite) -> Result<()> {
        let p = self.pending(txn)?;
        self.add_write_to(&p, what, w).map(drop)
    }

    /// [`FileStorage::add_write`] to the transaction already looked up, returning its
    /// state, still locked, for what the caller does next.
    pub(super) fn add_write_to<'p>(
        &self,
        p: &'p Mutex<Pending>,
        what: &str,
        w: PendingWrite,
    ) -> Result<parking_lot::MutexGuard<'p, Pending>> {
        let oid = w.oid();
        let mut p = p.lock();
        if p.voted.is_some() {
            return Err(StorageError::Transaction(format!("{what} after vote")));
        }
        push_write(&mut p, w);
        let mut max = self.max_oid.lock();
        *max = (*max).max(oid.0);
        drop(max);
        Ok(p)
    }

    /// The position of `oid`'s record written by transaction `tid`, walking
    /// the object's chain back from `pos`.
    pub(super) fn record_of_transaction(
        reader: &Reader<'_>,
        mut pos: u64,
        oid: Oid,
        tid: Tid,
    ) -> Result<Option<u64>> {
        while pos != 0 {
            let h = reader.data_header(pos)?;
            if h.oid != oid {
                return Err(reader.corrupted(pos, format!("expected a record of oid {oid}")));
            }
            if h.serial == tid {
                return Ok(Some(pos));
            }
            if h.serial < tid || h.prev >= pos {
                return Ok(None);
            }
            pos = h.prev;
        }
        Ok(None)
    }

    /// Whether the record at `pos` holds `data`, or is itself a backpointer (trusted, as
    /// Python's `FileStorage._data_find` trusts it: it points where the original did).
    pub(super) fn holds_data(reader: &Reader<'_>, pos: u64, data: &[u8]) -> Result<bool> {
        let h = reader.data_header(pos)?;
        if h.plen == 0 {
            return Ok(true);
        }
        if h.plen != data.len() as u64 || h.vlen != 0 {
            return Ok(false);
        }
        let start = pos + format::DATA_HEADER_SIZE as u64;
        Ok(reader.read_exact(start, data.len(), "record data")? == data)
    }

    /// Checks that an undo of `tid` is possible now; returns its oids.
    pub(super) fn undo_oids(&self, tid: Tid) -> Result<Vec<Oid>> {
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let Some((tpos, h)) = Self::find_transaction(&reader, tid)? else {
            return Err(StorageError::Undo(vec![
                "Invalid undo transaction id".into(),
            ]));
        };
        if h.status != STATUS_COMMITTED {
            return Err(StorageError::Undo(vec!["non-undoable transaction".into()]));
        }
        let mut oids: Vec<Oid> = Self::transaction_records(&reader, tpos, &h)?
            .iter()
            .map(|r| r.header.oid)
            .collect();
        oids.dedup();
        Ok(oids)
    }

    pub(super) fn begin_txn(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        self.check_writable()?;
        for (what, field) in [
            ("user name", &meta.user),
            ("description", &meta.description),
            ("extension", &meta.extension),
        ] {
            if field.len() > limits::TXN_META_FIELD_SIZE_MAX {
                return Err(StorageError::Limit(format!(
                    "{what} too long ({} bytes)",
                    field.len()
                )));
            }
        }
        let id = self.next_handle.fetch_add(1, Ordering::Relaxed);
        let p = Pending {
            meta,
            writes: Vec::new(),
            by_oid: HashMap::new(),
            checks: Vec::new(),
            undos: Vec::new(),
            undo_oids: Vec::new(),
            blobs: HashMap::new(),
            voted: None,
            done: false,
        };
        self.pending.lock().insert(id, Arc::new(Mutex::new(p)));
        Ok(TxnHandle::new(id))
    }

    pub(super) fn store_txn(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
    ) -> Result<()> {
        self.check_writable()?;
        if data.len() as u64 > limits::RECORD_SIZE_MAX {
            return Err(StorageError::Limit(format!(
                "record of {} bytes over the limit",
                data.len()
            )));
        }
        if data.is_empty() {
            return Err(StorageError::Limit(
                "an object record cannot be empty".into(),
            ));
        }
        let p = self.pending(txn)?;
        // An oid without a record is not checked, as in Python.
        let seen = self.committed(oid)?;
        if let Some(committed) = &seen {
            check_serial(oid, committed.serial, expected, false)?;
        }
        let write = PendingWrite::Store {
            oid,
            expected,
            data,
            seen,
        };
        let mut p = self.add_write_to(&p, "store", write)?;
        // A later plain store of the object replaces a blob stored before.
        if !p.blobs.is_empty()
            && let Some(staged) = p.blobs.remove(&oid)
        {
            crate::blob::BlobDir::discard(&staged);
        }
        Ok(())
    }

    /// `store` of a blob's record, taking the file `blob` (moved into the blob
    /// directory's `tmp/` now, made revision tid of `oid` when the transaction is
    /// written).
    pub(super) fn store_blob_txn(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        expected: Tid,
        data: Vec<u8>,
        blob: &std::path::Path,
    ) -> Result<()> {
        self.blob_dir()?;
        self.store_txn(txn, oid, expected, data)?;
        self.take_blob(txn, oid, blob)
    }

    fn blob_dir(&self) -> Result<&crate::blob::BlobDir> {
        self.blobs
            .as_ref()
            .ok_or_else(|| StorageError::Unsupported("this storage has no blob directory".into()))
    }

    /// Moves `blob` into the blob directory's `tmp/` as the file of `oid` in `txn`
    /// (replacing one taken before).
    fn take_blob(&self, txn: &TxnHandle, oid: Oid, blob: &std::path::Path) -> Result<()> {
        let staged = self
            .blob_dir()?
            .stage(blob)
            .map_err(|e| StorageError::io(format!("taking blob file {}", blob.display()), e))?;
        let p = self.pending(txn)?;
        if let Some(old) = p.lock().blobs.insert(oid, staged) {
            crate::blob::BlobDir::discard(&old);
        }
        Ok(())
    }

    /// `restore` of a blob's record with its file (taken as `store_blob_txn` takes it).
    pub(super) fn restore_blob_txn(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Vec<u8>,
        blob: &std::path::Path,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.blob_dir()?;
        self.restore_txn(txn, oid, Some(data), prev_txn)?;
        self.take_blob(txn, oid, blob)
    }

    /// The file of `oid`'s blob revision `serial`.
    pub(super) fn load_blob_file(&self, oid: Oid, serial: Tid) -> Result<std::path::PathBuf> {
        let path = self.blob_dir()?.path(oid, serial);
        if path.is_file() {
            Ok(path)
        } else {
            Err(StorageError::PosKey {
                oid,
                detail: Some(format!("no blob file at {}", path.display())),
            })
        }
    }

    pub(super) fn delete_txn(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_writable()?;
        self.pending(txn)?;
        let seen = self
            .committed(oid)?
            .ok_or_else(|| StorageError::pos_key(oid))?;
        check_serial(oid, seen.serial, expected, false)?;
        let write = PendingWrite::Delete {
            oid,
            expected,
            seen: Some(seen),
        };
        self.add_write(txn, "delete", write)
    }

    pub(super) fn restore_txn(
        &self,
        txn: &TxnHandle,
        oid: Oid,
        data: Option<Vec<u8>>,
        prev_txn: Option<Tid>,
    ) -> Result<()> {
        self.check_writable()?;
        if let Some(d) = &data
            && (d.is_empty() || d.len() as u64 > limits::RECORD_SIZE_MAX)
        {
            return Err(StorageError::Limit(format!(
                "cannot restore a record of {} bytes",
                d.len()
            )));
        }
        let write = PendingWrite::Restore {
            oid,
            data,
            prev_txn,
        };
        self.add_write(txn, "restore", write)
    }

    pub(super) fn check_txn(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.check_writable()?;
        let p = self.pending(txn)?;
        let committed = self.committed_serial(oid)?.unwrap_or(Tid::ZERO);
        check_serial(oid, committed, expected, true)?;
        p.lock().checks.push((oid, expected));
        Ok(())
    }

    pub(super) fn undo_txn(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.check_writable()?;
        if self.packing.load(Ordering::Acquire) {
            return Err(StorageError::Undo(vec![
                "undo is not allowed while packing".into(),
            ]));
        }
        let p = self.pending(txn)?;
        let oids = self.undo_oids(tid)?;
        let mut p = p.lock();
        if p.voted.is_some() {
            return Err(StorageError::Transaction("undo after vote".into()));
        }
        p.undos.push(tid);
        p.undo_oids.extend_from_slice(&oids);
        Ok(oids)
    }

    /// Votes; with `wait` false, only if that needs no wait for another transaction's
    /// locks or a pack's switch (`Ok(false)`: nothing was taken, vote again waiting).
    pub(super) fn vote_txn(&self, txn: &TxnHandle, wait: bool) -> Result<bool> {
        self.check_writable()?;
        let p = self.pending(txn)?;
        let mut p = p.lock();
        if p.done {
            return Err(StorageError::Transaction("the transaction is over".into()));
        }
        if p.voted.is_some() {
            return Ok(true);
        }
        let mut oids: Vec<Oid> = p.writes.iter().map(PendingWrite::oid).collect();
        oids.extend(p.checks.iter().map(|(o, _)| *o));
        oids.extend_from_slice(&p.undo_oids);
        oids.sort();
        oids.dedup();
        if wait {
            self.gate.enter();
            if let Err(e) = self
                .object_locks
                .acquire(txn.id(), &oids, self.options.lock_timeout)
            {
                self.gate.leave();
                return Err(e);
            }
        } else {
            if !self.gate.try_enter() {
                return Ok(false);
            }
            match self.object_locks.try_acquire(txn.id(), &oids) {
                Ok(true) => {}
                taken => {
                    self.gate.leave();
                    return taken;
                }
            }
        }
        match self.check_writable().and_then(|()| self.prepare(&mut p)) {
            Ok(prepared) => {
                p.voted = Some(Arc::new(prepared));
                Ok(true)
            }
            Err(e) => {
                self.object_locks.release(txn.id());
                self.gate.leave();
                Err(e)
            }
        }
    }

    pub(super) fn finish_txn(&self, txn: &TxnHandle) -> Result<Tid> {
        self.vote(txn)?;
        let p = self.pending(txn)?;
        let mut p = p.lock();
        let Some(prepared) = p.voted.take() else {
            return Err(StorageError::Transaction("finish without a vote".into()));
        };
        let result = self
            .commits
            .commit(prepared, |batch| self.write_batch(batch));
        p.done = true;
        drop(p);
        self.pending.lock().remove(&txn.id());
        self.object_locks.release(txn.id());
        self.gate.leave();
        result
    }

    pub(super) fn abort_txn(&self, txn: &TxnHandle) {
        let Some(p) = self.pending.lock().remove(&txn.id()) else {
            return;
        };
        let mut p = p.lock();
        p.done = true;
        for (_, staged) in p.blobs.drain() {
            crate::blob::BlobDir::discard(&staged);
        }
        // Nothing was written before finish: giving the locks back is all.
        if p.voted.take().is_some() {
            self.object_locks.release(txn.id());
            self.gate.leave();
        }
    }
}
