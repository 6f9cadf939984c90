//! The read side of a `MemoryStorage`: loads (before a tid, of a given serial), an
//! object's history, the undo log and the transaction iterator, each under the state's
//! read lock for no longer than it takes to copy the answer out.

use super::{MemoryStorage, Rev};
use crate::error::{Result, StorageError};
use crate::ids::{Oid, Tid};
use crate::limits;
use crate::storage::{
    DataRecord, HistoryEntry, Revision, TransactionIter, TransactionRecord, TxnStatus, UndoLogEntry,
};

impl MemoryStorage {
    pub(super) fn read_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        self.check_open()?;
        let st = self.state.read();
        let Some(revs) = st.chain(oid) else {
            return Err(StorageError::pos_key(oid));
        };
        let n = revs.partition_point(|r| r.tid < before);
        let Some(rev) = n.checked_sub(1).and_then(|i| revs.get(i)) else {
            return Ok(None);
        };
        match &rev.data {
            Some(data) => Ok(Some(Revision {
                data: data.as_ref().clone(),
                start: rev.tid,
                end: revs.get(n).map(|r| r.tid),
            })),
            None => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("deleted by transaction {}", rev.tid)),
            }),
        }
    }

    pub(super) fn read_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.check_open()?;
        let st = self.state.read();
        let revision = st.chain(oid).and_then(|revs| {
            revs.binary_search_by(|r| r.tid.cmp(&serial))
                .ok()
                .and_then(|i| revs.get(i))
        });
        match revision {
            Some(Rev {
                data: Some(data), ..
            }) => Ok(data.as_ref().clone()),
            Some(_) => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("revision {serial} deletes the object")),
            }),
            None => Err(StorageError::PosKey {
                oid,
                detail: Some(format!("no revision {serial}")),
            }),
        }
    }

    pub(super) fn read_history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        self.check_open()?;
        let st = self.state.read();
        let Some(revs) = st.chain(oid) else {
            return Err(StorageError::pos_key(oid));
        };
        let size = size.min(limits::HISTORY_SIZE_MAX);
        Ok(revs
            .iter()
            .rev()
            .take(size)
            .map(|rev| {
                let txn = st.txns.get(&rev.tid);
                HistoryEntry {
                    tid: rev.tid,
                    time: rev.tid.unix_seconds(),
                    user: txn.map(|t| t.user.clone()).unwrap_or_default(),
                    description: txn.map(|t| t.description.clone()).unwrap_or_default(),
                    extension: txn.map(|t| t.extension.clone()).unwrap_or_default(),
                    size: rev.stored_len(),
                }
            })
            .collect())
    }

    pub(super) fn read_undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.check_open()?;
        let st = self.state.read();
        let mut out = Vec::new();
        let mut index = 0usize;
        for (&tid, txn) in st.txns.iter().rev() {
            if index >= last {
                break;
            }
            match txn.status {
                TxnStatus::Packed => break,
                TxnStatus::Undone => continue,
                TxnStatus::Committed => {}
            }
            if index >= first {
                out.push(UndoLogEntry {
                    tid,
                    time: tid.unix_seconds(),
                    user: txn.user.clone(),
                    description: txn.description.clone(),
                    extension: txn.extension.clone(),
                    size: st.txn_len(tid, txn),
                });
            }
            index += 1;
        }
        Ok(out)
    }

    pub(super) fn read_iterator(
        &self,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Result<TransactionIter> {
        self.check_open()?;
        let start = start.unwrap_or(Tid::ZERO);
        let stop = stop.unwrap_or(Tid(u64::MAX));
        if start > stop {
            return Ok(Box::new(std::iter::empty()));
        }
        let st = self.state.read();
        let snapshot: Vec<Result<TransactionRecord>> = st
            .txns
            .range(start..=stop)
            .map(|(&tid, txn)| {
                let records = txn
                    .oids
                    .iter()
                    .filter_map(|&oid| {
                        st.revision(oid, tid).map(|rev| DataRecord {
                            oid,
                            tid,
                            data: rev.data.as_ref().map(|d| d.as_ref().clone()),
                            data_txn: rev.data_txn,
                        })
                    })
                    .collect();
                Ok(TransactionRecord {
                    tid,
                    status: txn.status,
                    user: txn.user.clone(),
                    description: txn.description.clone(),
                    extension: txn.extension.clone(),
                    records,
                })
            })
            .collect();
        Ok(Box::new(snapshot.into_iter()))
    }
}
