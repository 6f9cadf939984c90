//! [`TxnBuffer`]: the operations of one open transaction, as its one-way calls bring
//! them, until `vote` replays them into the storage.
//!
//! Memory is bounded whatever the client sends.  Record data stays in memory up to
//! `TXN_BUFFER_MEMORY_BYTES_MAX` per transaction, and while the memory budget shared by
//! all transactions (`TXN_BUFFER_MEMORY_BYTES_TOTAL_MAX`) has room; past either, records
//! go to an unnamed temporary file (gone with the buffer, whatever ends it), as Python's
//! server buffers a transaction in a temporary file.  What one transaction may carry in
//! all is bounded too (`Config::transaction_bytes_max`): past it the buffer drops what
//! it holds and the vote fails with a clear error.  A later store of an oid replaces the
//! earlier one (its memory is given back at once), found through an index, not a scan.
//!
//! A blob's store comes with its file (uploaded into the storage's blob `tmp/`, or put
//! in the shared blob directory by the client): the buffer owns the file until the
//! transaction ends, and removes it then; a vote hands the storage a hard link to it,
//! so that a vote that fails on a conflict leaves the file for the next one.

use std::collections::HashMap;
use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use zodb_storage::Oid;

use crate::limits;
use crate::server::budget::{Budget, Permit};
use crate::wire::TxnOp;

/// Where one operation's record data is.
#[derive(Debug)]
enum Place {
    /// In the operation itself (or it has none).
    Memory,
    /// In the temporary file; the operation's data is empty until read back.
    File { offset: u64, len: usize },
    /// Replaced by a later store of the same oid.
    Replaced,
}

#[derive(Debug)]
pub(super) struct TxnBuffer {
    entries: Vec<(TxnOp, Place)>,
    /// The live store of each oid, by index in `entries`.
    stores: HashMap<Oid, usize>,
    /// The bytes held in memory, taken from the server-wide budget.
    memory: Option<Permit>,
    memory_budget: Arc<Budget>,
    /// Bytes of every operation received (replaced ones included), against `bytes_max`.
    received: u64,
    bytes_max: u64,
    file: Option<File>,
    file_len: u64,
    /// Why this transaction can no longer commit (too large, the file failed).
    failed: Option<String>,
    /// The blob file of each oid stored as a blob.
    blobs: HashMap<Oid, PathBuf>,
}

/// The data bytes an operation carries, and what it counts for.
fn data_mut(op: &mut TxnOp) -> Option<&mut Vec<u8>> {
    match op {
        TxnOp::Store { data, .. } => Some(data),
        TxnOp::Restore { data, .. } => data.as_mut(),
        TxnOp::Delete { .. } | TxnOp::Check { .. } | TxnOp::Undo(_) => None,
    }
}

fn weight(op: &TxnOp) -> u64 {
    let data = match op {
        TxnOp::Store { data, .. } => data.len(),
        TxnOp::Restore { data, .. } => data.as_ref().map_or(0, Vec::len),
        _ => 0,
    };
    (data + limits::TXN_BUFFER_OP_OVERHEAD_BYTES) as u64
}

impl TxnBuffer {
    pub(super) fn new(memory_budget: Arc<Budget>, bytes_max: u64) -> TxnBuffer {
        TxnBuffer {
            entries: Vec::new(),
            stores: HashMap::new(),
            memory: None,
            memory_budget,
            received: 0,
            bytes_max,
            file: None,
            file_len: 0,
            failed: None,
            blobs: HashMap::new(),
        }
    }

    /// Adds a blob's store with its file, which the buffer now owns.
    pub(super) fn push_blob(&mut self, op: TxnOp, file: PathBuf, spill_dir: Option<&Path>) {
        let oid = match &op {
            TxnOp::Store { oid, .. } => *oid,
            _ => return,
        };
        self.push(op, spill_dir);
        if self.failed.is_some() {
            remove_file(&file);
            return;
        }
        if let Some(old) = self.blobs.insert(oid, file) {
            remove_file(&old);
        }
    }

    /// The blob file of `oid`'s store, if it was stored as a blob.
    pub(super) fn blob_of(&self, oid: Oid) -> Option<&Path> {
        self.blobs.get(&oid).map(PathBuf::as_path)
    }

    /// Ends the transaction's chances: the vote will fail with `why`.
    pub(super) fn fail_with(&mut self, why: String) {
        if self.failed.is_none() {
            self.fail(why);
        }
    }

    /// Why the transaction cannot commit, if it cannot.
    pub(super) fn failed(&self) -> Option<&str> {
        self.failed.as_deref()
    }

    /// Bytes the live operations hold, in memory and on file: what replaying them takes.
    pub(super) fn live_bytes(&self) -> u64 {
        self.entries
            .iter()
            .filter(|(_, p)| !matches!(p, Place::Replaced))
            .map(|(op, p)| match p {
                Place::File { len, .. } => (*len + limits::TXN_BUFFER_OP_OVERHEAD_BYTES) as u64,
                _ => weight(op),
            })
            .sum()
    }

    /// The bytes replaying this transaction takes, if a vote may replay it on the I/O
    /// thread: few operations, all in memory, no blob (a hard link each) and no undo
    /// (which reads history); see `limits::VOTE_IN_LINE_OPS_MAX`.
    pub(super) fn quick_to_replay(&self) -> Option<u64> {
        let quick = self.file.is_none()
            && self.blobs.is_empty()
            && self.entries.len() <= limits::VOTE_IN_LINE_OPS_MAX
            && self
                .entries
                .iter()
                .all(|(op, _)| !matches!(op, TxnOp::Undo(_)));
        if !quick {
            return None;
        }
        Some(self.live_bytes()).filter(|&bytes| bytes <= limits::VOTE_IN_LINE_BYTES_MAX)
    }

    /// Bytes held in memory now.
    pub(super) fn memory_bytes(&self) -> u64 {
        self.memory.as_ref().map_or(0, Permit::bytes)
    }

    /// Adds one operation; `spill_dir` is where a temporary file is made when needed.
    pub(super) fn push(&mut self, mut op: TxnOp, spill_dir: Option<&Path>) {
        if self.failed.is_some() {
            return;
        }
        let w = weight(&op);
        self.received += w;
        if self.received > self.bytes_max {
            self.fail(format!(
                "transaction too large: its operations carry more than {} bytes \
                 (the server's transaction size limit)",
                self.bytes_max
            ));
            return;
        }
        if let TxnOp::Store { oid, .. } = &op
            && let Some(i) = self.stores.insert(*oid, self.entries.len())
        {
            self.replace(i);
        }
        let place = if self.keep_in_memory(w) {
            Place::Memory
        } else {
            match self.spill(&mut op, spill_dir) {
                Ok(place) => place,
                Err(e) => {
                    self.fail(format!("cannot buffer the transaction: {e}"));
                    return;
                }
            }
        };
        self.entries.push((op, place));
    }

    /// Takes `w` bytes of memory for an operation, if both bounds allow.
    fn keep_in_memory(&mut self, w: u64) -> bool {
        if self.memory_bytes() + w > limits::TXN_BUFFER_MEMORY_BYTES_MAX as u64 {
            return false;
        }
        match &mut self.memory {
            Some(p) => p.try_grow(w),
            None => match self.memory_budget.try_take(w) {
                Some(p) => {
                    self.memory = Some(p);
                    true
                }
                None => false,
            },
        }
    }

    /// Writes `op`'s data to the temporary file and leaves the operation without it.
    fn spill(&mut self, op: &mut TxnOp, spill_dir: Option<&Path>) -> std::io::Result<Place> {
        let Some(data) = data_mut(op) else {
            // Nothing to spill, and memory is full: the operation itself is small and
            // counted against the transaction's size limit.
            return Ok(Place::Memory);
        };
        if self.file.is_none() {
            self.file = Some(match spill_dir {
                Some(d) => tempfile::tempfile_in(d)?,
                None => tempfile::tempfile()?,
            });
        }
        let file = self.file.as_mut().expect("made above");
        file.write_all(data)?;
        let place = Place::File {
            offset: self.file_len,
            len: data.len(),
        };
        self.file_len += data.len() as u64;
        *data = Vec::new();
        Ok(place)
    }

    /// Marks entry `i` replaced, giving back its memory.
    fn replace(&mut self, i: usize) {
        let (op, place) = &mut self.entries[i];
        if matches!(place, Place::Memory) {
            let w = weight(op);
            if let Some(d) = data_mut(op) {
                *d = Vec::new();
            }
            if let Some(p) = &mut self.memory {
                p.shrink(w);
            }
        }
        *place = Place::Replaced;
    }

    fn fail(&mut self, why: String) {
        self.entries = Vec::new();
        self.stores = HashMap::new();
        self.memory = None;
        self.file = None;
        for (_, f) in self.blobs.drain() {
            remove_file(&f);
        }
        self.failed = Some(why);
    }

    /// The live operations in the order received, each with its data (read back from
    /// the file when it was spilled), one at a time.
    pub(super) fn replay(&self) -> impl Iterator<Item = std::io::Result<TxnOp>> + '_ {
        self.entries.iter().filter_map(|(op, place)| match place {
            Place::Memory => Some(Ok(op.clone())),
            Place::File { offset, len } => Some(self.read_back(op, *offset, *len)),
            Place::Replaced => None,
        })
    }

    /// The data of the live store of `oid`.
    pub(super) fn store_data(&self, oid: Oid) -> std::io::Result<Option<Vec<u8>>> {
        let Some(&i) = self.stores.get(&oid) else {
            return Ok(None);
        };
        let (op, place) = &self.entries[i];
        let op = match place {
            Place::Memory => op.clone(),
            Place::File { offset, len } => self.read_back(op, *offset, *len)?,
            Place::Replaced => return Ok(None),
        };
        Ok(match op {
            TxnOp::Store { data, .. } => Some(data),
            _ => None,
        })
    }

    fn read_back(&self, op: &TxnOp, offset: u64, len: usize) -> std::io::Result<TxnOp> {
        let file = self.file.as_ref().expect("spilled data has a file");
        let mut data = vec![0; len];
        file.read_exact_at(&mut data, offset)?;
        let mut op = op.clone();
        if let Some(d) = data_mut(&mut op) {
            *d = data;
        }
        Ok(op)
    }
}

impl Drop for TxnBuffer {
    /// The blob files of a transaction that ends go with it (a vote gave the storage
    /// links of its own).
    fn drop(&mut self) {
        for (_, f) in self.blobs.drain() {
            remove_file(&f);
        }
    }
}

fn remove_file(path: &Path) {
    if let Err(e) = std::fs::remove_file(path)
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(path = %path.display(), "cannot remove a blob file: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use zodb_storage::Tid;

    fn store(oid: u64, n: usize, byte: u8) -> TxnOp {
        TxnOp::Store {
            oid: Oid(oid),
            serial: Tid::ZERO,
            data: vec![byte; n],
        }
    }

    fn replayed(b: &TxnBuffer) -> Vec<TxnOp> {
        b.replay().map(Result::unwrap).collect()
    }

    #[test]
    fn records_past_the_memory_bound_go_to_the_file_and_come_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = TxnBuffer::new(Budget::new(1 << 30), 1 << 30);
        let big = limits::TXN_BUFFER_MEMORY_BYTES_MAX / 3;
        for oid in 1..=6 {
            b.push(store(oid, big, oid as u8), Some(dir.path()));
        }
        b.push(
            TxnOp::Check {
                oid: Oid(9),
                serial: Tid::ZERO,
            },
            Some(dir.path()),
        );
        assert!(b.memory_bytes() <= limits::TXN_BUFFER_MEMORY_BYTES_MAX as u64);
        assert!(b.file_len >= 3 * big as u64, "spilled {}", b.file_len);
        let ops = replayed(&b);
        assert_eq!(ops.len(), 7);
        for (i, op) in ops[..6].iter().enumerate() {
            assert_eq!(op, &store(i as u64 + 1, big, i as u8 + 1));
        }
        assert_eq!(b.store_data(Oid(5)).unwrap(), Some(vec![5; big]));
        assert!(b.failed().is_none());
    }

    #[test]
    fn a_later_store_of_an_oid_replaces_the_earlier_and_frees_its_memory() {
        let budget = Budget::new(1 << 30);
        let mut b = TxnBuffer::new(Arc::clone(&budget), 1 << 30);
        b.push(store(1, 1000, 1), None);
        b.push(store(2, 10, 2), None);
        let before = budget.used();
        b.push(store(1, 10, 3), None);
        assert!(budget.used() < before, "{} !< {before}", budget.used());
        assert_eq!(replayed(&b), vec![store(2, 10, 2), store(1, 10, 3)]);
        drop(b);
        assert_eq!(budget.used(), 0, "memory given back with the buffer");
    }

    #[test]
    fn the_shared_memory_budget_sends_other_transactions_to_their_files() {
        let budget = Budget::new(3000);
        let mut a = TxnBuffer::new(Arc::clone(&budget), 1 << 30);
        let mut b = TxnBuffer::new(Arc::clone(&budget), 1 << 30);
        a.push(store(1, 2500, 1), None);
        b.push(store(2, 2500, 2), None);
        assert!(b.memory_bytes() == 0 && b.file_len == 2500);
        assert_eq!(replayed(&b), vec![store(2, 2500, 2)]);
        drop(a);
        b.push(store(3, 100, 3), None);
        assert!(b.memory_bytes() > 0, "room again once the other is gone");
    }

    #[test]
    fn a_transaction_past_its_size_limit_fails_and_holds_nothing() {
        let budget = Budget::new(1 << 30);
        let mut b = TxnBuffer::new(Arc::clone(&budget), 5000);
        b.push(store(1, 3000, 1), None);
        b.push(store(2, 3000, 2), None);
        let why = b.failed().expect("failed").to_string();
        assert!(why.contains("too large"), "{why}");
        assert_eq!(budget.used(), 0);
        b.push(store(3, 10, 3), None);
        assert_eq!(replayed(&b), vec![]);
        // Re-storing one oid over and over counts every time: the file cannot grow
        // without bound either.
        let mut c = TxnBuffer::new(budget, 5000);
        for _ in 0..5 {
            c.push(store(1, 2000, 1), None);
        }
        assert!(c.failed().is_some());
    }
}
