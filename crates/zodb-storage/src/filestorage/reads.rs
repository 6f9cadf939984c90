//! The read side: loads (current, before a tid, of a given serial), an object's
//! history, the undo log, and the walks over the file they share (a transaction found
//! from the end, its records, its metadata).  Readers take the snapshot lock only to
//! look a position up, then `pread` committed bytes that never change.

// These work on the storage's own state, as the rest of the engine does.
use super::*;
use record_cache::WindowLookup;

/// Bytes read ahead when a load follows the previous one in the file (see
/// `record_cache::Window`): some hundred small records.
const SEQUENTIAL_READ_AHEAD: usize = 16 << 10;

/// Where a load starts: the snapshot's file and its end, the object's current record's
/// position, and the snapshot's record cache.
struct LoadStart {
    file: Arc<File>,
    pos: u64,
    end: u64,
    records: Arc<RecordCache>,
}

impl FileStorage {
    /// Finds the transaction `tid` by walking back from the end.
    pub(super) fn find_transaction(
        reader: &Reader<'_>,
        tid: Tid,
    ) -> Result<Option<(u64, TxnHeader)>> {
        let mut end = reader.end;
        while end > 4 {
            let tlen = reader.u64_at(end - 8, "redundant transaction length")?;
            let tpos = end
                .checked_sub(8 + tlen)
                .filter(|p| *p >= 4)
                .ok_or_else(|| {
                    reader.corrupted(end - 8, "transaction length points before the file start")
                })?;
            let h = reader.txn_header(tpos)?;
            if h.tlen != tlen {
                return Err(reader.corrupted(tpos, "redundant transaction length check failed"));
            }
            if h.tid == tid {
                return Ok(Some((tpos, h)));
            }
            if h.tid < tid {
                return Ok(None);
            }
            end = tpos;
        }
        Ok(None)
    }

    /// The data records of the transaction at `tpos`.
    pub(super) fn transaction_records(
        reader: &Reader<'_>,
        tpos: u64,
        h: &TxnHeader,
    ) -> Result<Vec<Record>> {
        let mut records = Vec::new();
        if h.status == STATUS_UNDONE {
            return Ok(records);
        }
        let mut pos = tpos + h.header_len();
        let body_end = tpos + h.tlen;
        while pos < body_end {
            let r = reader.record(pos, None)?;
            if r.header.tloc != tpos {
                return Err(reader.corrupted(pos, "data record belongs to another transaction"));
            }
            pos += r.header.record_len();
            records.push(r);
        }
        Ok(records)
    }

    pub(super) fn read_meta(
        reader: &Reader<'_>,
        tpos: u64,
        h: &TxnHeader,
    ) -> Result<(Vec<u8>, Vec<u8>, Vec<u8>)> {
        let at = tpos + TXN_HEADER_SIZE as u64;
        let meta = reader.read_exact(
            at,
            (h.header_len() - TXN_HEADER_SIZE as u64) as usize,
            "transaction metadata",
        )?;
        let (user, rest) = meta.split_at(usize::from(h.ulen));
        let (description, extension) = rest.split_at(usize::from(h.dlen));
        Ok((user.to_vec(), description.to_vec(), extension.to_vec()))
    }

    pub(super) fn read_current(&self, oid: Oid) -> Result<(Vec<u8>, Tid)> {
        let (file, pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        let r = reader.record(pos, Some(oid))?;
        let serial = r.header.serial;
        match reader.resolve(r)? {
            Some((data, _)) => Ok((data, serial)),
            None => Err(StorageError::pos_key(oid)),
        }
    }

    /// Where a load of `oid` starts, in the current snapshot.
    fn locate_for_load(&self, oid: Oid) -> Result<LoadStart> {
        self.check_open()?;
        let snap = self.snap.read();
        let pos = snap
            .index
            .get(oid.0)
            .ok_or_else(|| StorageError::pos_key(oid))?;
        Ok(LoadStart {
            file: Arc::clone(&snap.file),
            pos,
            end: snap.end,
            records: Arc::clone(&snap.records),
        })
    }

    /// `read_before`, with the revision lent to `f`: the current record, when read
    /// lately, straight from the record cache (no copy, no allocation).
    pub(super) fn read_before_with(
        &self,
        oid: Oid,
        before: Tid,
        f: &mut dyn FnMut(Option<RevisionRef<'_>>),
    ) -> Result<()> {
        let at = self.locate_for_load(oid)?;
        let lent = at.records.get_with(oid, at.pos, |serial, data| {
            let current = serial < before;
            if current {
                f(Some(RevisionRef {
                    data,
                    start: serial,
                    end: None,
                }));
            }
            current
        });
        if lent != Some(true) {
            let rev = self.read_before_in_file(oid, before, at)?;
            f(rev.as_ref().map(Revision::as_ref));
        }
        Ok(())
    }

    pub(super) fn read_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        let at = self.locate_for_load(oid)?;
        // The current revision is usually the answer, and may have been read lately.
        if let Some((serial, data)) = at.records.get(oid, at.pos)
            && serial < before
        {
            return Ok(Some(Revision {
                data,
                start: serial,
                end: None,
            }));
        }
        self.read_before_in_file(oid, before, at)
    }

    /// `read_before` from the file, from the current record (at `locate_for_load`'s
    /// position) back.
    fn read_before_in_file(
        &self,
        oid: Oid,
        before: Tid,
        at: LoadStart,
    ) -> Result<Option<Revision>> {
        let LoadStart {
            file,
            mut pos,
            end,
            records,
        } = at;
        let current_pos = pos;
        let reader = self.reader(&file, end);
        let mut next_serial = None;
        // The current record is read whole at once, since it is usually
        // the answer; older ones header first.
        let mut current = Some(Self::current_record(&reader, &records, pos, oid)?);
        loop {
            let h = match &current {
                Some(r) => r.header,
                None => reader.data_header(pos)?,
            };
            if h.oid != oid {
                return Err(reader.corrupted(pos, format!("expected a record of oid {oid}")));
            }
            if h.serial < before {
                let r = match current.take() {
                    Some(r) => r,
                    None => reader.record(pos, Some(oid))?,
                };
                return match reader.resolve(r)? {
                    Some((data, _)) => {
                        if pos == current_pos {
                            records.put(oid, pos, h.serial, &data);
                        }
                        Ok(Some(Revision {
                            data,
                            start: h.serial,
                            end: next_serial,
                        }))
                    }
                    None => Err(StorageError::PosKey {
                        oid,
                        detail: Some(format!("deleted as of {}", h.serial)),
                    }),
                };
            }
            next_serial = Some(h.serial);
            current = None;
            if h.prev == 0 {
                return Ok(None);
            }
            if h.prev >= pos {
                return Err(
                    reader.corrupted(pos, "previous record pointer does not point backwards")
                );
            }
            pos = h.prev;
        }
    }

    /// The current record of a load: from the read-ahead window when it holds it,
    /// with a new window when the load follows the last one in the file (the next
    /// record), else with one read of its own.
    fn current_record(
        reader: &Reader<'_>,
        records: &RecordCache,
        pos: u64,
        oid: Oid,
    ) -> Result<Record> {
        match records.window_lookup(pos) {
            WindowLookup::Hit(bytes) => reader.record_in(pos, Some(oid), &bytes),
            WindowLookup::Sequential => {
                let len = reader
                    .end
                    .saturating_sub(pos)
                    .min(SEQUENTIAL_READ_AHEAD as u64) as usize;
                let bytes = reader.read_exact(pos, len, "data records read ahead")?;
                let r = reader.record_in(pos, Some(oid), &bytes)?;
                records.window_put(pos, bytes, pos.saturating_add(r.header.record_len()));
                Ok(r)
            }
            WindowLookup::Miss => {
                let r = reader.record(pos, Some(oid))?;
                records.window_loaded(pos.saturating_add(r.header.record_len()));
                Ok(r)
            }
        }
    }

    pub(super) fn read_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        let (file, mut pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        loop {
            let h = reader.data_header(pos)?;
            if h.serial == serial {
                let r = reader.record(pos, Some(oid))?;
                return reader
                    .resolve(r)?
                    .map(|(d, _)| d)
                    .ok_or_else(|| StorageError::PosKey {
                        oid,
                        detail: Some(format!("revision {serial} is a deletion")),
                    });
            }
            if h.serial < serial || h.prev == 0 || h.prev >= pos {
                return Err(StorageError::PosKey {
                    oid,
                    detail: Some(format!("no revision {serial}")),
                });
            }
            pos = h.prev;
        }
    }

    pub(super) fn read_history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        let (file, mut pos, end) = self.locate(oid)?;
        let reader = self.reader(&file, end);
        let size = size.min(limits::HISTORY_SIZE_MAX);
        let mut out = Vec::new();
        while out.len() < size {
            let h = reader.data_header(pos)?;
            let th = reader.txn_header(h.tloc)?;
            let (user, description, extension) = Self::read_meta(&reader, h.tloc, &th)?;
            out.push(HistoryEntry {
                tid: h.serial,
                time: h.serial.unix_seconds(),
                user,
                description,
                extension,
                size: h.plen,
            });
            if h.prev == 0 {
                break;
            }
            if h.prev >= pos {
                return Err(
                    reader.corrupted(pos, "previous record pointer does not point backwards")
                );
            }
            pos = h.prev;
        }
        Ok(out)
    }

    pub(super) fn read_undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.check_open()?;
        let (file, end) = {
            let s = self.snap.read();
            (Arc::clone(&s.file), s.end)
        };
        let reader = self.reader(&file, end);
        let mut out = Vec::new();
        let mut i = 0usize;
        let mut tend = end;
        while tend > 4 && i < last {
            let tlen = reader.u64_at(tend - 8, "redundant transaction length")?;
            let tpos = tend
                .checked_sub(8 + tlen)
                .filter(|p| *p >= 4)
                .ok_or_else(|| {
                    reader.corrupted(tend - 8, "transaction length points before the file start")
                })?;
            let h = reader.txn_header(tpos)?;
            tend = tpos;
            if h.status == STATUS_PACKED {
                break;
            }
            if h.status != STATUS_COMMITTED {
                continue;
            }
            if i >= first {
                let (user, description, extension) = Self::read_meta(&reader, tpos, &h)?;
                out.push(UndoLogEntry {
                    tid: h.tid,
                    time: h.tid.unix_seconds(),
                    user,
                    description,
                    extension,
                    size: h.tlen,
                });
            }
            i += 1;
        }
        Ok(out)
    }
}
