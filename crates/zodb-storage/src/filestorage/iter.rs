//! `FileStorage::iterator`: transactions read forward over a snapshot of the file, as
//! Python's `FileIterator` yields them.

use super::*;

/// Walks transactions forward over a snapshot of the file.
#[derive(Debug)]
pub(super) struct FileIterator {
    pub(super) file: Arc<File>,
    pub(super) path: PathBuf,
    pub(super) end: u64,
    pub(super) pos: u64,
    pub(super) start: Option<Tid>,
    pub(super) stop: Option<Tid>,
    pub(super) done: bool,
}

impl FileIterator {
    fn next_transaction(&mut self) -> Result<Option<TransactionRecord>> {
        let reader = Reader {
            file: &self.file,
            path: &self.path,
            end: self.end,
        };
        loop {
            if self.pos >= self.end {
                return Ok(None);
            }
            let tpos = self.pos;
            let h = reader.txn_header(tpos)?;
            if h.status == STATUS_CHECKPOINT {
                return Ok(None);
            }
            self.pos = h.next_pos(tpos);
            if self.stop.is_some_and(|s| h.tid > s) {
                return Ok(None);
            }
            if self.start.is_some_and(|s| h.tid < s) {
                continue;
            }
            let (user, description, extension) = FileStorage::read_meta(&reader, tpos, &h)?;
            let status = match h.status {
                STATUS_PACKED => TxnStatus::Packed,
                STATUS_UNDONE => TxnStatus::Undone,
                _ => TxnStatus::Committed,
            };
            let mut records = Vec::new();
            for r in FileStorage::transaction_records(&reader, tpos, &h)? {
                let oid = r.header.oid;
                let data_txn = match r.payload {
                    RecordPayload::Back(b) if b > 0 => Some(reader.data_header(b)?.serial),
                    _ => None,
                };
                let data = reader.resolve(r)?.map(|(d, _)| d);
                records.push(DataRecord {
                    oid,
                    tid: h.tid,
                    data,
                    data_txn,
                });
            }
            return Ok(Some(TransactionRecord {
                tid: h.tid,
                status,
                user,
                description,
                extension,
                records,
            }));
        }
    }
}

impl Iterator for FileIterator {
    type Item = Result<TransactionRecord>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        match self.next_transaction() {
            Ok(Some(t)) => Some(Ok(t)),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(e) => {
                self.done = true;
                Some(Err(e))
            }
        }
    }
}
