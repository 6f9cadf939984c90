//! Round trips of every call, what Python sends beside what we send, and the errors for
//! malformed arguments.

#![allow(clippy::unwrap_used, clippy::indexing_slicing, clippy::panic)]

use super::*;
use crate::wire::IntoCall;
use zodb_pickle::Value;
use zodb_storage::{Oid, Tid, TxnStatus, undo_id};

/// Every call survives encode then decode unchanged.
fn check_round_trip(call: Call) {
    let name = call.method();
    let args = Value::Tuple(call.clone().encode());
    assert_eq!(Call::decode(name, args).unwrap(), call, "{name}");
}

#[test]
fn every_call_round_trips() {
    let (oid, tid, txn) = (Oid(7), Tid(0x0405_ed58_1777_7777), Value::Int(3));
    for call in [
        Call::Register {
            storage: "main".into(),
            read_only: true,
        },
        Call::LastTransaction,
        Call::GetInfo,
        Call::Ping,
        Call::SetClientLabel {
            label: Some("web".into()),
        },
        Call::SetClientLabel { label: None },
        Call::ServerStatus,
        Call::GetInvalidations { tid },
        Call::LoadBefore { oid, tid },
        Call::LoadSerial { oid, serial: tid },
        Call::GetTid { oid },
        Call::NewOids { count: 5 },
        Call::History { oid, size: 3 },
        Call::UndoLog { first: 0, last: 20 },
        Call::UndoInfo {
            first: 1,
            last: -5,
            spec: vec![(Value::str("user_name"), Value::Bytes(b"bob".to_vec()))],
        },
        Call::TpcBegin {
            txn: txn.clone(),
            user: b"u".to_vec(),
            description: b"d".to_vec(),
            extension: Value::Dict(vec![]),
            tid: Some(tid),
            status: TxnStatus::Packed,
        },
        Call::Storea {
            oid,
            serial: tid,
            data: b"x".to_vec(),
            txn: txn.clone(),
        },
        Call::DeleteObject {
            oid,
            serial: tid,
            txn: txn.clone(),
        },
        Call::CheckCurrentSerial {
            oid,
            serial: tid,
            txn: txn.clone(),
        },
        Call::Restorea {
            oid,
            serial: tid,
            data: None,
            prev_txn: Some(tid),
            txn: txn.clone(),
        },
        Call::Undoa {
            tid,
            txn: txn.clone(),
        },
        Call::Vote { txn: txn.clone() },
        Call::TpcFinish { txn: txn.clone() },
        Call::TpcAbort {
            txn: Some(txn.clone()),
        },
        Call::TpcAbort { txn: None },
        Call::RecordIternext { from: oid },
        Call::Pack {
            time: 1.5e9,
            wait: true,
        },
        Call::Pack {
            time: 1.5e9,
            wait: false,
        },
        Call::IteratorStart {
            start: None,
            stop: Some(tid),
        },
        Call::IteratorNext { id: 4 },
        Call::IteratorRecordStart {
            id: 4,
            tid: Some(tid),
        },
        Call::IteratorRecordNext { id: 5 },
        Call::IteratorGc { ids: vec![4, 5] },
        Call::StoreBlobStart,
        Call::StoreBlobChunk {
            chunk: b"chunk".to_vec(),
        },
        Call::StoreBlobEnd {
            oid,
            serial: tid,
            data: b"record".to_vec(),
            txn: Value::Int(7),
        },
        Call::StoreBlobShared {
            oid,
            serial: tid,
            data: b"record".to_vec(),
            filename: "0x03.tmp-".into(),
            txn: Value::Int(7),
        },
        Call::SendBlob { oid, serial: tid },
        Call::Lease,
        Call::LeaseApplied { tid },
        Call::LeaseEnd,
    ] {
        check_round_trip(call);
    }
}

/// What Python sends beside what we send: defaults, str for bytes, ints for bools.
#[test]
fn decode_takes_what_python_sends() {
    let t = |items: Vec<Value>| Value::Tuple(items);
    assert_eq!(
        Call::decode("register", t(vec![])).unwrap(),
        Call::Register {
            storage: "1".into(),
            read_only: false
        }
    );
    assert_eq!(
        Call::decode(
            "register",
            t(vec![Value::Bytes(b"1".to_vec()), Value::Int(1)])
        )
        .unwrap(),
        Call::Register {
            storage: "1".into(),
            read_only: true
        }
    );
    assert_eq!(
        Call::decode("new_oids", t(vec![])).unwrap(),
        Call::NewOids { count: 100 }
    );
    assert_eq!(
        Call::decode("undoLog", Value::None).unwrap(),
        Call::UndoLog {
            first: 0,
            last: -20
        }
    );
    assert_eq!(
        Call::decode("pack", t(vec![Value::Int(10), Value::Bool(false)])).unwrap(),
        Call::Pack {
            time: 10.0,
            wait: false
        }
    );
    // A serial of `None` means a new object.
    assert_eq!(
        Call::decode(
            "storea",
            t(vec![
                oid_value(Oid(1)),
                Value::None,
                Value::Bytes(b"d".to_vec()),
                Value::Int(1)
            ])
        )
        .unwrap(),
        Call::Storea {
            oid: Oid(1),
            serial: Tid::ZERO,
            data: b"d".to_vec(),
            txn: Value::Int(1)
        }
    );
    assert_eq!(
        Call::decode(
            "tpc_begin",
            t(vec![Value::Int(1), Value::str("u"), Value::str("d")])
        )
        .unwrap(),
        Call::TpcBegin {
            txn: Value::Int(1),
            user: b"u".to_vec(),
            description: b"d".to_vec(),
            extension: Value::None,
            tid: None,
            status: TxnStatus::Committed,
        }
    );
}

/// Malformed arguments get an error naming the method and what it needs.
#[test]
fn decode_refuses_malformed_args() {
    let t = |items: Vec<Value>| Value::Tuple(items);
    let err = |name: &str, args| Call::decode(name, args).unwrap_err().to_string();
    assert_eq!(
        err("loadBefore", t(vec![oid_value(Oid(1))])),
        "loadBefore needs an oid and a tid"
    );
    assert_eq!(
        err(
            "storea",
            t(vec![oid_value(Oid(1)), Value::None, Value::Int(3)])
        ),
        "storea needs data"
    );
    assert_eq!(
        err(
            "storea",
            t(vec![oid_value(Oid(1)), Value::None, Value::Bytes(vec![])])
        ),
        "storea needs a transaction id"
    );
    assert_eq!(
        err("deleteObject", t(vec![Value::Bytes(vec![1, 2])])),
        "deleteObject needs an oid"
    );
    assert_eq!(
        err("undoa", t(vec![Value::str("nope"), Value::Int(1)])),
        "bad undo id \"nope\""
    );
    assert_eq!(err("pack", t(vec![])), "pack needs a time");
    assert_eq!(err("iterator_next", t(vec![])), "iterator_next needs an id");
    assert_eq!(err("frobnicate", t(vec![])), "unknown method frobnicate");
}

#[test]
fn load_before_is_sent_with_its_tuple_msgid() {
    let (oid, tid) = (Oid(1), Tid(2));
    let msg = Call::LoadBefore { oid, tid }.into_message(9);
    assert_eq!(msg.msgid, Call::load_msgid(oid, tid));
    assert_eq!(Call::Ping.into_message(9).msgid, Value::Int(9));
    assert!(
        Call::Vote { txn: Value::Int(1) }
            .into_async_message()
            .is_async()
    );
}

#[test]
fn txn_ops_ride_their_calls() {
    let ops = [
        TxnOp::Store {
            oid: Oid(1),
            serial: Tid(2),
            data: b"x".to_vec(),
        },
        TxnOp::Delete {
            oid: Oid(1),
            serial: Tid(2),
        },
        TxnOp::Check {
            oid: Oid(1),
            serial: Tid(2),
        },
        TxnOp::Restore {
            oid: Oid(1),
            serial: Tid(2),
            data: Some(b"y".to_vec()),
            prev_txn: None,
        },
        TxnOp::Undo(Tid(5)),
    ];
    for op in ops {
        let call = op.clone().into_call(Value::Int(4));
        assert!(call.is_one_way());
        assert_eq!(call.into_txn_op(), Some((op, Value::Int(4))));
    }
    assert_eq!(Call::Ping.into_txn_op(), None);
}

mod properties {
    use proptest::prelude::*;

    use super::*;

    /// The methods the server dispatches, and a few it does not.
    const METHODS: &[&str] = &[
        "register",
        "lastTransaction",
        "get_info",
        "ping",
        "set_client_label",
        "server_status",
        "getInvalidations",
        "loadBefore",
        "loadSerial",
        "getTid",
        "new_oids",
        "history",
        "undoLog",
        "undoInfo",
        "tpc_begin",
        "storea",
        "deleteObject",
        "checkCurrentSerialInTransaction",
        "restorea",
        "undoa",
        "vote",
        "tpc_finish",
        "tpc_abort",
        "record_iternext",
        "pack",
        "iterator_start",
        "iterator_next",
        "iterator_record_start",
        "iterator_record_next",
        "iterator_gc",
        "",
        "loadEx",
        "__init__",
    ];

    /// Argument values a peer might send: ids of the right and wrong sizes, undo ids,
    /// numbers (finite: NaN is not equal to itself), text, lists and dicts.
    fn arg() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (-1e12f64..1e12).prop_map(Value::Float),
            proptest::collection::vec(any::<u8>(), 8).prop_map(Value::Bytes),
            proptest::collection::vec(any::<u8>(), 0..12).prop_map(Value::Bytes),
            any::<u64>().prop_map(|t| Value::Bytes(undo_id(Tid(t)).into_bytes())),
            "[a-zA-Z0-9+/=]{0,12}".prop_map(Value::Str),
        ];
        leaf.prop_recursive(2, 8, 4, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..4).prop_map(Value::List),
                proptest::collection::vec(("[a-z_]{1,10}", inner), 0..3).prop_map(|pairs| {
                    Value::Dict(pairs.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
                }),
            ]
        })
    }

    proptest! {
        /// Whatever a peer sends, decoding does not panic, and a call it accepts is
        /// written back and read again to the same call.
        #[test]
        fn decoded_calls_round_trip(
            method in proptest::sample::select(METHODS),
            args in proptest::collection::vec(arg(), 0..7),
        ) {
            if let Ok(call) = Call::decode(method, Value::Tuple(args)) {
                prop_assert_eq!(call.method(), method);
                let again = Call::decode(method, Value::Tuple(call.clone().encode()));
                prop_assert_eq!(again, Ok(call));
            }
        }
    }
}
