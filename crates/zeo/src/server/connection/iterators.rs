//! The server side of storage iteration over ZEO (spec §3): `iterator_start` opens a
//! transaction iterator, `iterator_next` walks it, `iterator_record_start` /
//! `iterator_record_next` walk the records of the transaction returned last, and
//! `iterator_gc` forgets iterators the client dropped.
//!
//! Iterators belong to the connection and go with it.  An exhausted or collected
//! iterator is forgotten, as in Python: asking for it again is a `KeyError`.

use std::collections::HashMap;
use std::sync::Arc;

use zodb_pickle::Value;
use zodb_storage::{DataRecord, StorageError, Tid, TransactionIter, TransactionRecord};

use super::{Connection, Step};
use crate::server::errors;
use crate::wire::{self, Message, TxnHeader};

/// A connection's open iterators, by the ids handed to the client.
#[derive(Default)]
pub(super) struct Iterators {
    next_id: i64,
    /// Transaction iterators, with the transaction `iterator_next` returned last.
    transactions: HashMap<i64, (TransactionIter, Option<TransactionRecord>)>,
    /// Record iterators over one transaction.
    records: HashMap<i64, std::vec::IntoIter<DataRecord>>,
}

impl Iterators {
    fn new_id(&mut self) -> i64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

impl Connection {
    fn reply_unknown_iterator(&self, msgid: Value, id: i64) {
        let payload = Value::Tuple(vec![Value::Int(id)]);
        self.outbox
            .send(&Message::error(msgid, "builtins.KeyError", payload));
    }

    pub(super) fn iterator_start(
        &self,
        msgid: Value,
        start: Option<Tid>,
        stop: Option<Tid>,
    ) -> Step {
        let entry = self.entry()?;
        match entry.storage.iterator(start, stop) {
            Ok(it) => {
                let mut s = self.state.lock();
                let id = s.iterators.new_id();
                s.iterators.transactions.insert(id, (it, None));
                drop(s);
                self.reply(msgid, Value::Int(id));
            }
            Err(e) => self.reply_error(msgid, &e),
        }
        Ok(())
    }

    pub(super) fn iterator_next(&self, msgid: Value, id: i64) -> Step {
        self.entry()?;
        let taken = self.state.lock().iterators.transactions.remove(&id);
        let Some((mut it, _)) = taken else {
            self.reply_unknown_iterator(msgid, id);
            return Ok(());
        };
        let state = Arc::clone(&self.state);
        let outbox = Arc::clone(&self.outbox);
        tokio::task::spawn_blocking(move || {
            let msg = match it.next() {
                None => Message::reply(msgid, Value::None),
                Some(Err(e)) => {
                    let (class, payload) = errors::to_remote(&e);
                    Message::error(msgid, class, payload)
                }
                Some(Ok(t)) => {
                    let value = TxnHeader::of(&t).encode();
                    state
                        .lock()
                        .iterators
                        .transactions
                        .insert(id, (it, Some(t)));
                    Message::reply(msgid, value)
                }
            };
            outbox.send(&msg);
        });
        Ok(())
    }

    pub(super) fn iterator_record_start(&self, msgid: Value, id: i64, tid: Option<Tid>) -> Step {
        self.entry()?;
        let mut s = self.state.lock();
        let records = match s.iterators.transactions.get(&id) {
            Some((_, Some(t))) if Some(t.tid) == tid => t.records.clone(),
            _ => {
                drop(s);
                self.reply_error(
                    msgid,
                    &StorageError::Transaction("no such transaction iterator".into()),
                );
                return Ok(());
            }
        };
        let rid = s.iterators.new_id();
        s.iterators.records.insert(rid, records.into_iter());
        drop(s);
        self.reply(msgid, Value::Int(rid));
        Ok(())
    }

    pub(super) fn iterator_record_next(&self, msgid: Value, id: i64) -> Step {
        self.entry()?;
        let mut s = self.state.lock();
        let Some(records) = s.iterators.records.get_mut(&id) else {
            drop(s);
            self.reply_unknown_iterator(msgid, id);
            return Ok(());
        };
        let value = match records.next() {
            None => {
                s.iterators.records.remove(&id);
                Value::None
            }
            Some(r) => wire::data_record_reply(r),
        };
        drop(s);
        self.reply(msgid, value);
        Ok(())
    }

    pub(super) fn iterator_gc(&self, ids: &[i64]) {
        let mut s = self.state.lock();
        for id in ids {
            s.iterators.transactions.remove(id);
            s.iterators.records.remove(id);
        }
    }
}
