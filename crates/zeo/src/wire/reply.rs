//! The typed replies whose shape both sides must agree on (spec §3): what the server
//! writes for a load, a vote, the iterators and `record_iternext`, and what the client
//! reads back, written once here beside [`super::Call`].
//!
//! Encoders write what Python's server writes; decoders accept what Python's server
//! writes too (str or bytes where old servers differ) and refuse the rest with a
//! [`BadReply`] naming the method.  Transaction extensions travel as dicts and are kept
//! by the storages as their pickle: [`extension_pickle`] and [`extension_dict`] convert.
//!
//! Pure data: no I/O, no storage.

use zodb_pickle::Value;
use zodb_storage::{DataRecord, Oid, RecordIterItem, Revision, Tid, TransactionRecord, TxnStatus};

use super::pickle;

/// A reply that is not what its call returns.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unexpected reply to {method}: {shown}")]
pub struct BadReply {
    /// The method (or the part of a reply) that was read.
    pub method: String,
    /// The offending value, shown (at most about 200 characters).
    pub shown: String,
}

impl BadReply {
    /// `got` was read as the reply to `method`.
    pub fn new(method: &str, got: &Value) -> BadReply {
        let mut shown = format!("{got:?}");
        if shown.len() > 200 {
            let mut end = 200;
            while !shown.is_char_boundary(end) {
                end -= 1;
            }
            shown.truncate(end);
            shown.push('…');
        }
        BadReply {
            method: method.to_string(),
            shown,
        }
    }
}

fn oid_value(oid: Oid) -> Value {
    Value::Bytes(oid.to_bytes().to_vec())
}

fn tid_value(tid: Tid) -> Value {
    Value::Bytes(tid.to_bytes().to_vec())
}

fn opt_tid_value(tid: Option<Tid>) -> Value {
    tid.map_or(Value::None, tid_value)
}

/// An oid sent as 8 bytes.
pub fn as_oid(v: &Value) -> Option<Oid> {
    v.as_bytes().and_then(Oid::from_slice)
}

/// A tid sent as 8 bytes.
pub fn as_tid(v: &Value) -> Option<Tid> {
    v.as_bytes().and_then(Tid::from_slice)
}

/// The items of a list or tuple (msgpack turns every list into a tuple).
pub fn items(v: &Value) -> Option<&[Value]> {
    match v {
        Value::List(items) | Value::Tuple(items) => Some(items),
        _ => None,
    }
}

/// Text that Python may send as bytes or (old servers) str.
pub(crate) fn text_bytes(v: &Value) -> Vec<u8> {
    match v {
        Value::Bytes(b) => b.clone(),
        Value::Str(s) => s.as_bytes().to_vec(),
        _ => Vec::new(),
    }
}

/// A transaction extension as the storages keep it: the dict pickled as Python's
/// `TransactionMetaData.extension_bytes` pickles it (so a copy stores the bytes the
/// original holds), no bytes for an empty (or no) dict.  Anything else, or a dict Python
/// could not load back, is an error: storing an empty extension instead would lose it.
pub fn extension_pickle(v: &Value) -> Result<Vec<u8>, zodb_pickle::PickleError> {
    match pickle::simplify(v.clone()) {
        Value::None => Ok(Vec::new()),
        Value::Dict(items) if items.is_empty() => Ok(Vec::new()),
        dict @ Value::Dict(_) => zodb_pickle::encode_like_python(&dict),
        _ => Err(zodb_pickle::PickleError::NotEncodable(
            "a transaction extension must be a dict".into(),
        )),
    }
}

/// A stored extension pickle as the dict the wire carries (`{}` when empty or not a
/// readable dict pickle).
pub fn extension_dict(bytes: &[u8]) -> Value {
    if bytes.is_empty() {
        return Value::Dict(Vec::new());
    }
    match zodb_pickle::decode(bytes) {
        Ok((v @ Value::Dict(_), _)) => v,
        _ => Value::Dict(Vec::new()),
    }
}

/// `getInvalidations`' reply: `(last_tid, oids)`, the server's last transaction and
/// every object changed after the tid asked about, or `None` when the server no longer
/// has that history.
pub fn invalidations_reply(invalidations: Option<(Tid, Vec<Oid>)>) -> Value {
    match invalidations {
        None => Value::None,
        Some((last, oids)) => Value::Tuple(vec![
            tid_value(last),
            Value::List(oids.into_iter().map(oid_value).collect()),
        ]),
    }
}

/// Reads [`invalidations_reply`]: the oids, or `None` when the server cannot tell (or
/// the reply is not a pair with a list).  Items that are no oid are skipped.
pub fn read_invalidations_reply(reply: &Value) -> Option<Vec<Oid>> {
    match items(reply)? {
        [_, oids, ..] => Some(items(oids)?.iter().filter_map(as_oid).collect()),
        _ => None,
    }
}

/// `loadBefore`'s reply: `(data, start, end | None)`, or `None` when the object has no
/// revision before the tid.
pub fn load_reply(rev: Option<Revision>) -> Value {
    match rev {
        None => Value::None,
        Some(rev) => Value::Tuple(vec![
            Value::Bytes(rev.data),
            tid_value(rev.start),
            opt_tid_value(rev.end),
        ]),
    }
}

/// Reads [`load_reply`].
pub fn read_load_reply(reply: &Value) -> Result<Option<Revision>, BadReply> {
    if *reply == Value::None {
        return Ok(None);
    }
    let bad = || BadReply::new("loadBefore", reply);
    let [data, start, end] = items(reply).ok_or_else(bad)? else {
        return Err(bad());
    };
    Ok(Some(Revision {
        data: data.as_bytes().ok_or_else(bad)?.to_vec(),
        start: as_tid(start).ok_or_else(bad)?,
        end: match end {
            Value::None => None,
            v => Some(as_tid(v).ok_or_else(bad)?),
        },
    }))
}

/// A write conflict the server leaves to the client (client-side conflict resolution).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoteConflict {
    /// The object.
    pub oid: Oid,
    /// The serial of the committed (current) revision.
    pub committed: Tid,
    /// The serial the store was based on.
    pub expected: Tid,
    /// The data the client stored (to resolve against); servers may leave it out.
    pub data: Option<Vec<u8>>,
}

/// `vote`'s reply: a list whose bytes items are oids the commit changed beyond the
/// client's stores (undone objects, server-resolved conflicts) and whose dict items
/// (`oid`, `serials` = (committed, expected), `data`) are conflicts left to the client;
/// `None` counts as empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoteReply {
    /// Oids changed beyond the stores.
    pub changed: Vec<Oid>,
    /// Conflicts to resolve; when any, the server's transaction stays open (the client
    /// stores again and votes again, or aborts).
    pub conflicts: Vec<VoteConflict>,
}

impl VoteReply {
    /// The list the server replies.
    pub fn encode(self) -> Value {
        let mut list: Vec<Value> = self.changed.into_iter().map(oid_value).collect();
        list.extend(self.conflicts.into_iter().map(|c| {
            let mut d = vec![
                (Value::str("oid"), oid_value(c.oid)),
                (
                    Value::str("serials"),
                    Value::Tuple(vec![tid_value(c.committed), tid_value(c.expected)]),
                ),
            ];
            if let Some(data) = c.data {
                d.push((Value::str("data"), Value::Bytes(data)));
            }
            Value::Dict(d)
        }));
        Value::List(list)
    }

    /// Reads the server's reply (a missing expected serial reads as zero).
    pub fn decode(reply: &Value) -> Result<VoteReply, BadReply> {
        let list = match reply {
            Value::None => return Ok(VoteReply::default()),
            other => items(other).ok_or_else(|| BadReply::new("vote", other))?,
        };
        let mut out = VoteReply::default();
        for item in list {
            let bad = || BadReply::new("vote", item);
            match item {
                Value::Bytes(_) => out.changed.push(as_oid(item).ok_or_else(bad)?),
                Value::Dict(_) => {
                    let oid = item.get("oid").and_then(as_oid).ok_or_else(bad)?;
                    let (committed, expected) = item
                        .get("serials")
                        .and_then(items)
                        .and_then(|s| match s {
                            [c, e, ..] => Some((as_tid(c)?, as_tid(e).unwrap_or(Tid::ZERO))),
                            _ => None,
                        })
                        .ok_or_else(bad)?;
                    out.conflicts.push(VoteConflict {
                        oid,
                        committed,
                        expected,
                        data: item
                            .get("data")
                            .and_then(Value::as_bytes)
                            .map(<[u8]>::to_vec),
                    });
                }
                _ => return Err(bad()),
            }
        }
        Ok(out)
    }
}

/// `iterator_next`'s reply: `(tid, status, user, description, extension)`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnHeader {
    /// The transaction.
    pub tid: Tid,
    /// Its status (sent as a one-character str).
    pub status: TxnStatus,
    /// `user_name`.
    pub user: Vec<u8>,
    /// `description`.
    pub description: Vec<u8>,
    /// The extension's pickle (sent as a dict).
    pub extension: Vec<u8>,
}

impl TxnHeader {
    /// The header of an iterated transaction.
    pub fn of(t: &TransactionRecord) -> TxnHeader {
        TxnHeader {
            tid: t.tid,
            status: t.status,
            user: t.user.clone(),
            description: t.description.clone(),
            extension: t.extension.clone(),
        }
    }

    /// The tuple the server replies.
    pub fn encode(self) -> Value {
        Value::Tuple(vec![
            tid_value(self.tid),
            Value::str(self.status.as_char().to_string()),
            Value::Bytes(self.user),
            Value::Bytes(self.description),
            extension_dict(&self.extension),
        ])
    }

    /// Reads the server's tuple (an unknown status reads as committed).
    pub fn decode(reply: &Value) -> Result<TxnHeader, BadReply> {
        let bad = || BadReply::new("iterator_next", reply);
        let [tid, status, user, description, extension, ..] = items(reply).ok_or_else(bad)? else {
            return Err(bad());
        };
        let status = match status {
            Value::Str(s) => s.as_bytes().first().copied(),
            Value::Bytes(b) => b.first().copied(),
            _ => None,
        };
        Ok(TxnHeader {
            tid: as_tid(tid).ok_or_else(bad)?,
            status: match status {
                Some(b'p') => TxnStatus::Packed,
                Some(b'u') => TxnStatus::Undone,
                _ => TxnStatus::Committed,
            },
            user: text_bytes(user),
            description: text_bytes(description),
            extension: extension_pickle(extension).map_err(|_| bad())?,
        })
    }
}

/// `iterator_record_next`'s reply: `(oid, tid, data | None, data_txn | None)`.
pub fn data_record_reply(r: DataRecord) -> Value {
    Value::Tuple(vec![
        oid_value(r.oid),
        tid_value(r.tid),
        r.data.map_or(Value::None, Value::Bytes),
        opt_tid_value(r.data_txn),
    ])
}

/// Reads [`data_record_reply`].
pub fn read_data_record_reply(reply: &Value) -> Result<DataRecord, BadReply> {
    let bad = || BadReply::new("iterator_record_next", reply);
    let [oid, tid, data, rest @ ..] = items(reply).ok_or_else(bad)? else {
        return Err(bad());
    };
    Ok(DataRecord {
        oid: as_oid(oid).ok_or_else(bad)?,
        tid: as_tid(tid).ok_or_else(bad)?,
        data: match data {
            Value::Bytes(b) => Some(b.clone()),
            _ => None,
        },
        data_txn: rest.first().and_then(as_tid),
    })
}

/// `record_iternext`'s reply: `(oid, tid, data, next | None)`.
pub fn record_iternext_reply(r: RecordIterItem) -> Value {
    Value::Tuple(vec![
        oid_value(r.oid),
        tid_value(r.tid),
        Value::Bytes(r.data),
        r.next.map_or(Value::None, oid_value),
    ])
}

/// Reads [`record_iternext_reply`].
pub fn read_record_iternext_reply(reply: &Value) -> Result<RecordIterItem, BadReply> {
    let bad = || BadReply::new("record_iternext", reply);
    let [oid, tid, data, next, ..] = items(reply).ok_or_else(bad)? else {
        return Err(bad());
    };
    Ok(RecordIterItem {
        oid: as_oid(oid).ok_or_else(bad)?,
        tid: as_tid(tid).ok_or_else(bad)?,
        data: data.as_bytes().ok_or_else(bad)?.to_vec(),
        next: as_oid(next),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    #[test]
    fn load_replies_round_trip() {
        for rev in [
            None,
            Some(Revision {
                data: b"d".to_vec(),
                start: Tid(3),
                end: None,
            }),
            Some(Revision {
                data: b"d".to_vec(),
                start: Tid(3),
                end: Some(Tid(5)),
            }),
        ] {
            assert_eq!(read_load_reply(&load_reply(rev.clone())).unwrap(), rev);
        }
        let err = read_load_reply(&Value::Int(3)).unwrap_err();
        assert_eq!(err.to_string(), "unexpected reply to loadBefore: Int(3)");
    }

    #[test]
    fn invalidations_replies_round_trip() {
        let oids = vec![Oid(1), Oid(9)];
        let reply = invalidations_reply(Some((Tid(5), oids.clone())));
        assert_eq!(read_invalidations_reply(&reply), Some(oids));
        assert_eq!(read_invalidations_reply(&invalidations_reply(None)), None);
    }

    #[test]
    fn vote_replies_round_trip() {
        let reply = VoteReply {
            changed: vec![Oid(3)],
            conflicts: vec![VoteConflict {
                oid: Oid(7),
                committed: Tid(9),
                expected: Tid(5),
                data: Some(b"x".to_vec()),
            }],
        };
        assert_eq!(VoteReply::decode(&reply.clone().encode()).unwrap(), reply);
        assert_eq!(
            VoteReply::decode(&Value::None).unwrap(),
            VoteReply::default()
        );
        assert!(VoteReply::decode(&Value::Int(3)).is_err());
        assert!(VoteReply::decode(&Value::List(vec![Value::Int(3)])).is_err());
    }

    #[test]
    fn iterator_replies_round_trip() {
        let ext =
            zodb_pickle::encode_like_python(&Value::Dict(vec![(Value::str("k"), Value::Int(1))]))
                .unwrap();
        let h = TxnHeader {
            tid: Tid(4),
            status: TxnStatus::Packed,
            user: b"u".to_vec(),
            description: b"d".to_vec(),
            extension: ext,
        };
        assert_eq!(TxnHeader::decode(&h.clone().encode()).unwrap(), h);
        let r = DataRecord {
            oid: Oid(1),
            tid: Tid(4),
            data: None,
            data_txn: Some(Tid(2)),
        };
        assert_eq!(
            read_data_record_reply(&data_record_reply(r.clone())).unwrap(),
            r
        );
        let item = RecordIterItem {
            oid: Oid(1),
            tid: Tid(4),
            data: b"d".to_vec(),
            next: Some(Oid(2)),
        };
        assert_eq!(
            read_record_iternext_reply(&record_iternext_reply(item.clone())).unwrap(),
            item
        );
    }

    #[test]
    fn extensions_empty_both_ways() {
        assert_eq!(
            extension_pickle(&Value::Dict(vec![])).unwrap(),
            Vec::<u8>::new()
        );
        assert_eq!(extension_pickle(&Value::None).unwrap(), Vec::<u8>::new());
        assert!(extension_pickle(&Value::Int(1)).is_err(), "not a dict");
        assert_eq!(extension_dict(b""), Value::Dict(vec![]));
        assert_eq!(extension_dict(b"garbage"), Value::Dict(vec![]));
    }
}
