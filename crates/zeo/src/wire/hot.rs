//! The two calls that are nearly all of a busy server's traffic, read and answered
//! without building [`Value`] trees: a transaction's `storea`s, and `loadBefore`.
//!
//! ```text
//! storea, one-way:  80 03 28 4b 00 88 58 06 00 00 00 "storea"
//!                   28 43 08 <oid> 43 08 <serial> (43 n | 42 n n n n) <data> <txn> 74 74 2e
//! loadBefore:       80 03 28 43 08 <oid> 43 08 <tid> 86 89 58 0a 00 00 00 "loadBefore"
//!                   43 08 <oid> 43 08 <tid> 86 74 2e
//! its reply:        80 03 28 43 08 <oid> 43 08 <tid> 86 4b 00 58 06 00 00 00 ".reply"
//!                   (43 n | 42 n n n n) <data> 43 08 <start> (43 08 <end> | 4e) 87 74 2e
//! ```
//!
//! These are the exact bytes Python's client (zodbpickle, protocol 3, no memo) and ours
//! write for them; `<txn>` is the transaction id, an int (`K`/`M`/`J`/`8a`).  A message
//! of any other shape (another encoding, another opcode, a `loadBefore` with another
//! message id) is `None` here and goes through [`super::decode_from_client`] and
//! [`super::Call::decode`] as before, which read the same calls the same way: the
//! general path decodes the message into a tree (seven allocations for a `storea`, a
//! dozen for a `loadBefore` and its reply), this takes the record's bytes and nothing
//! else.  Tested against the general path below.

use zodb_storage::{Oid, RevisionRef, Tid};

use super::frame::{self, LENGTH_PREFIX_SIZE};
use super::{TxnOp, Value};
use zodb_pickle::opcodes as op;

/// A hot call, read.
#[derive(Debug, PartialEq)]
pub enum HotCall {
    /// `storea(oid, serial, data, txn)`, sent one-way: buffer `op` in transaction `txn`.
    Storea {
        /// The store.
        op: TxnOp,
        /// The transaction id it belongs to.
        txn: Value,
    },
    /// `loadBefore(oid, tid)` with the message id `(oid, tid)` (ZEO 5's): answer with
    /// [`load_reply_frame`].
    LoadBefore {
        /// The object.
        oid: Oid,
        /// Load the revision current before this tid.
        tid: Tid,
    },
}

const STOREA_HEAD: &[u8] = b"\x80\x03(K\x00\x88X\x06\x00\x00\x00storea(";
const LOAD_NAME: &[u8] = b"\x89X\x0a\x00\x00\x00loadBefore";
const REPLY_NAME: &[u8] = b"K\x00X\x06\x00\x00\x00.reply";

/// Reads a pickled message if it is one of the hot calls in exactly the shape above.
pub fn decode(payload: &[u8]) -> Option<HotCall> {
    let mut r = Reader(payload);
    if let Some(rest) = payload.strip_prefix(STOREA_HEAD) {
        r.0 = rest;
        let oid = Oid::from_bytes(r.bytes8()?);
        let serial = Tid::from_bytes(r.bytes8()?);
        let data = match r.byte()? {
            op::SHORT_BINBYTES => {
                let n = usize::from(r.byte()?);
                r.take(n)?
            }
            op::BINBYTES => {
                let n = usize::try_from(u32::from_le_bytes(r.array()?)).ok()?;
                r.take(n)?
            }
            _ => return None,
        };
        let txn = r.int()?;
        r.end(&[op::TUPLE, op::TUPLE, op::STOP])?;
        let op = TxnOp::Store {
            oid,
            serial,
            data: data.to_vec(),
        };
        return Some(HotCall::Storea { op, txn });
    }
    r.expect(&[op::PROTO, 3, op::MARK])?;
    let (oid, tid) = (r.bytes8()?, r.bytes8()?);
    r.expect(&[op::TUPLE2])?;
    r.expect(LOAD_NAME)?;
    let (arg_oid, arg_tid) = (r.bytes8()?, r.bytes8()?);
    r.end(&[op::TUPLE2, op::TUPLE, op::STOP])?;
    // The message id is the call's own arguments (as ZEO 5 clients send it): only then
    // is the reply's id written from them.
    if (oid, tid) != (arg_oid, arg_tid) {
        return None;
    }
    Some(HotCall::LoadBefore {
        oid: Oid::from_bytes(oid),
        tid: Tid::from_bytes(tid),
    })
}

/// The framed reply to `loadBefore(oid, tid)` (message id `(oid, tid)`) that found `rev`:
/// the bytes `encode_framed` writes for it, in one allocation.
pub fn load_reply_frame(oid: Oid, tid: Tid, rev: Option<RevisionRef<'_>>) -> Vec<u8> {
    let data_len = rev.map_or(0, |r| r.data.len());
    let mut out = Vec::with_capacity(LENGTH_PREFIX_SIZE + 64 + data_len);
    out.extend_from_slice(&[0; LENGTH_PREFIX_SIZE]);
    out.extend_from_slice(&[op::PROTO, 3, op::MARK]);
    bytes8(&mut out, oid.to_bytes());
    bytes8(&mut out, tid.to_bytes());
    out.push(op::TUPLE2);
    out.extend_from_slice(REPLY_NAME);
    match rev {
        None => out.push(op::NONE),
        Some(rev) => {
            match u8::try_from(rev.data.len()) {
                Ok(n) => out.extend_from_slice(&[op::SHORT_BINBYTES, n]),
                Err(_) => {
                    out.push(op::BINBYTES);
                    // A record is far below 4 GiB (RECORD_SIZE_MAX).
                    out.extend_from_slice(&(rev.data.len() as u32).to_le_bytes());
                }
            }
            out.extend_from_slice(rev.data);
            bytes8(&mut out, rev.start.to_bytes());
            match rev.end {
                Some(end) => bytes8(&mut out, end.to_bytes()),
                None => out.push(op::NONE),
            }
            out.push(op::TUPLE3);
        }
    }
    out.extend_from_slice(&[op::TUPLE, op::STOP]);
    let len = (out.len() - LENGTH_PREFIX_SIZE) as u32;
    if let Some(head) = out.get_mut(..LENGTH_PREFIX_SIZE) {
        head.copy_from_slice(&len.to_be_bytes());
    }
    debug_assert!(frame::length_prefix(out.len() - LENGTH_PREFIX_SIZE).is_ok());
    out
}

fn bytes8(out: &mut Vec<u8>, b: [u8; 8]) {
    out.extend_from_slice(&[op::SHORT_BINBYTES, 8]);
    out.extend_from_slice(&b);
}

/// The bytes not read yet.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if n > self.0.len() {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }

    fn array<const N: usize>(&mut self) -> Option<[u8; N]> {
        self.take(N)?.try_into().ok()
    }

    fn byte(&mut self) -> Option<u8> {
        let [b] = self.array::<1>()?;
        Some(b)
    }

    fn expect(&mut self, bytes: &[u8]) -> Option<()> {
        (self.take(bytes.len())? == bytes).then_some(())
    }

    /// The rest is exactly `bytes`.
    fn end(&mut self, bytes: &[u8]) -> Option<()> {
        (self.0 == bytes).then_some(())
    }

    /// `C 08` and 8 bytes.
    fn bytes8(&mut self) -> Option<[u8; 8]> {
        self.expect(&[op::SHORT_BINBYTES, 8])?;
        self.array()
    }

    /// An int as `K`, `M`, `J` or `8a` with at most 8 bytes.
    fn int(&mut self) -> Option<Value> {
        let i = match self.byte()? {
            op::BININT1 => i64::from(self.byte()?),
            op::BININT2 => i64::from(u16::from_le_bytes(self.array()?)),
            op::BININT => i64::from(i32::from_le_bytes(self.array()?)),
            op::LONG1 => {
                let n = usize::from(self.byte()?);
                if n > 8 {
                    return None;
                }
                super::flat_pickle::long1_to_i64(self.take(n)?)
            }
            _ => return None,
        };
        Some(Value::Int(i))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::wire::{
        Call, Encoding, IntoCall, Message, decode_from_client, encode_framed, load_reply,
    };
    use proptest::prelude::*;
    use zodb_storage::Revision;

    /// What the general path makes of a message: its id and its call.
    fn general(payload: &[u8]) -> (Value, Call) {
        let msg = decode_from_client(Encoding::Pickle, payload).unwrap();
        (msg.msgid, Call::decode(&msg.name, msg.args).unwrap())
    }

    fn framed_payload(msg: &Message) -> Vec<u8> {
        encode_framed(Encoding::Pickle, msg).unwrap()[LENGTH_PREFIX_SIZE..].to_vec()
    }

    proptest! {
        #[test]
        fn a_storea_reads_as_the_general_path_reads_it(
            oid in any::<u64>(), serial in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..600),
            txn in prop_oneof![any::<i64>(), 0i64..70_000],
        ) {
            let call = Call::Storea {
                oid: Oid(oid), serial: Tid(serial), data: data.clone(), txn: Value::Int(txn),
            };
            let payload = framed_payload(&call.clone().into_async_message());
            let hot = decode(&payload).expect("hot");
            prop_assert_eq!(&hot, &HotCall::Storea {
                op: TxnOp::Store { oid: Oid(oid), serial: Tid(serial), data },
                txn: Value::Int(txn),
            });
            prop_assert_eq!(general(&payload), (Value::Int(0), call));
        }

        #[test]
        fn a_load_before_and_its_reply_are_the_general_paths(
            oid in any::<u64>(), tid in any::<u64>(),
            data in proptest::collection::vec(any::<u8>(), 0..600),
            start in any::<u64>(), end in proptest::option::of(any::<u64>()),
            found in any::<bool>(),
        ) {
            let call = Call::LoadBefore { oid: Oid(oid), tid: Tid(tid) };
            let payload = framed_payload(&call.clone().into_message(7));
            prop_assert_eq!(
                decode(&payload),
                Some(HotCall::LoadBefore { oid: Oid(oid), tid: Tid(tid) })
            );
            let (msgid, general_call) = general(&payload);
            prop_assert_eq!(general_call, call);
            let rev = found.then(|| Revision { data, start: Tid(start), end: end.map(Tid) });
            let reply = Message::reply(msgid, load_reply(rev.clone()));
            prop_assert_eq!(
                load_reply_frame(Oid(oid), Tid(tid), rev.as_ref().map(Revision::as_ref)),
                encode_framed(Encoding::Pickle, &reply).unwrap()
            );
        }

        #[test]
        fn anything_else_is_left_to_the_general_path(
            bytes in proptest::collection::vec(any::<u8>(), 0..80),
        ) {
            // Arbitrary bytes after each hot prefix: read only when the general path
            // reads the same call.
            for prefix in [STOREA_HEAD, b"\x80\x03(C\x08\0\0\0\0\0\0\0\x01C\x08"] {
                let mut payload = prefix.to_vec();
                payload.extend_from_slice(&bytes);
                if let Some(hot) = decode(&payload) {
                    let (msgid, call) = general(&payload);
                    match hot {
                        HotCall::Storea { op, txn } => {
                            prop_assert_eq!(msgid, Value::Int(0));
                            prop_assert_eq!(call, op.into_call(txn));
                        }
                        HotCall::LoadBefore { oid, tid } => {
                            prop_assert_eq!(msgid, Call::load_msgid(oid, tid));
                            prop_assert_eq!(call, Call::LoadBefore { oid, tid });
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn other_shapes_are_not_hot() {
        let other_id = Message::call_with_msgid(
            Value::Int(3),
            "loadBefore",
            vec![Value::Bytes(vec![0; 8]), Value::Bytes(vec![1; 8])],
        );
        let one_way_with_id = Message::call(
            4,
            "storea",
            vec![
                Value::Bytes(vec![0; 8]),
                Value::Bytes(vec![0; 8]),
                Value::Bytes(b"x".to_vec()),
                Value::Int(1),
            ],
        );
        for msg in [other_id, one_way_with_id] {
            assert_eq!(decode(&framed_payload(&msg)), None, "{msg:?}");
        }
    }
}
