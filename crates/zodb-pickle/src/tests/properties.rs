//! Property tests: encode/decode round trips over generated values, agreement between the
//! scanner and the decoder, and "never panics" over arbitrary and pickle-shaped bytes.

use std::collections::BTreeMap;

use proptest::prelude::*;

use crate::text::{Int, int_from_le_twos_complement};
use crate::{
    Value, class_of, decode, decode_record, encode, encode_record, scan_references,
    strong_references,
};

/// Globals that the decoder keeps as globals (no `builtins.set`, which it turns into sets).
fn global() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::global("bbru.content", "Folder")),
        Just(Value::global("datetime", "datetime")),
        Just(Value::global("BTrees.OOBTree", "OOBucket")),
        ("[a-z][a-z0-9_.]{0,12}", "[A-Za-z_][A-Za-z0-9_]{0,12}")
            .prop_map(|(m, n)| Value::global(m, n)),
    ]
}

fn oid() -> impl Strategy<Value = Value> {
    any::<u64>().prop_map(|o| Value::Bytes(o.to_be_bytes().to_vec()))
}

/// A persistent id in one of ZODB's forms.
fn pid() -> impl Strategy<Value = Value> {
    prop_oneof![
        (oid(), global()).prop_map(|(o, c)| Value::Tuple(vec![o, c])),
        oid(),
        oid().prop_map(|o| Value::List(vec![Value::str("w"), Value::Tuple(vec![o])])),
        (oid(), "[a-z]{1,8}").prop_map(|(o, db)| Value::List(vec![
            Value::str("n"),
            Value::Tuple(vec![Value::Str(db), o])
        ])),
    ]
}

/// Ints outside `i64`, in canonical (minimal) form.
fn big_int() -> impl Strategy<Value = Value> {
    proptest::collection::vec(any::<u8>(), 9..40).prop_filter_map("fits in i64", |bytes| {
        match int_from_le_twos_complement(&bytes) {
            Int::Big(b) => Some(Value::BigInt(b)),
            Int::Small(_) => None,
        }
    })
}

fn leaf() -> impl Strategy<Value = Value> {
    prop_oneof![
        Just(Value::None),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::Int),
        (-70_000i64..70_000).prop_map(Value::Int),
        big_int(),
        any::<f64>()
            .prop_filter("NaN is unequal to itself", |f| !f.is_nan())
            .prop_map(Value::Float),
        proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
        any::<String>().prop_map(Value::Str),
        global(),
        pid().prop_map(|p| Value::PersistentRef(Box::new(p))),
    ]
}

/// Hashable keys that are distinct for Python exactly when they are distinct here (no
/// bools or floats, which would equal ints).
fn key() -> impl Strategy<Value = Value> {
    prop_oneof![
        "[a-z]{0,6}".prop_map(Value::Str),
        any::<i64>().prop_map(Value::Int),
        proptest::collection::vec(any::<u8>(), 0..4).prop_map(Value::Bytes),
        ("[a-z]{0,3}", any::<i32>())
            .prop_map(|(s, i)| Value::Tuple(vec![Value::Str(s), Value::Int(i64::from(i))])),
    ]
}

fn unique_keys(keys: Vec<Value>) -> Vec<Value> {
    let mut seen = BTreeMap::new();
    for k in keys {
        seen.entry(format!("{k:?}")).or_insert(k);
    }
    seen.into_values().collect()
}

/// An object as Python would build one: REDUCE, NEWOBJ, INST or OBJ.
fn object(inner: BoxedStrategy<Value>) -> impl Strategy<Value = Value> {
    let args = proptest::collection::vec(inner, 0..3);
    prop_oneof![
        (global(), args.clone()).prop_map(|(c, a)| Value::Reduce {
            callable: Box::new(c),
            args: Box::new(Value::Tuple(a))
        }),
        (global(), args.clone()).prop_map(|(c, a)| Value::NewObj {
            cls: Box::new(c),
            args: Box::new(Value::Tuple(a))
        }),
        ("[a-z]{1,5}", "[A-Z][a-z]{0,5}", args.clone())
            .prop_map(|(module, name, args)| Value::Inst { module, name, args }),
        (global(), args).prop_map(|(c, args)| Value::Obj {
            cls: Box::new(c),
            args
        }),
    ]
}

/// Generated values; with `any_pids`, persistent references may hold any value as pid
/// (fine for the codec, not for the scanner, which accepts only ZODB's forms).
fn value_tree(any_pids: bool) -> impl Strategy<Value = Value> {
    leaf().prop_recursive(4, 64, 6, move |inner| {
        let inner = inner.boxed();
        let pid_arm = if any_pids {
            inner
                .clone()
                .prop_map(|v| Value::PersistentRef(Box::new(v)))
                .boxed()
        } else {
            pid()
                .prop_map(|p| Value::PersistentRef(Box::new(p)))
                .boxed()
        };
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::Tuple),
            proptest::collection::vec(inner.clone(), 0..6).prop_map(Value::List),
            proptest::collection::vec((key(), inner.clone()), 0..6).prop_map(|pairs| {
                let mut seen = std::collections::HashSet::new();
                Value::Dict(
                    pairs
                        .into_iter()
                        .filter(|(k, _)| seen.insert(format!("{k:?}")))
                        .collect(),
                )
            }),
            proptest::collection::vec(key(), 0..5).prop_map(|k| Value::Set(unique_keys(k))),
            proptest::collection::vec(key(), 0..5).prop_map(|k| Value::FrozenSet(unique_keys(k))),
            pid_arm,
            object(inner.clone()),
            (object(inner.clone()), inner.clone()).prop_map(|(o, s)| Value::Build {
                object: Box::new(o),
                state: Box::new(s)
            }),
            (
                object(inner.clone()),
                proptest::collection::vec(inner.clone(), 1..4)
            )
                .prop_map(|(o, items)| {
                    Value::ListItems {
                        object: Box::new(o),
                        items,
                    }
                }),
            (
                object(inner.clone()),
                proptest::collection::vec((inner.clone(), inner), 1..3)
            )
                .prop_map(|(o, items)| Value::DictItems {
                    object: Box::new(o),
                    items,
                }),
        ]
    })
}

/// The strong oids a scan of the encoded value must find, in pickling order: each
/// persistent id's own contents come before it.
fn expected_strong(value: &Value, out: &mut Vec<u64>) {
    let all =
        |items: &[Value], out: &mut Vec<u64>| items.iter().for_each(|v| expected_strong(v, out));
    match value {
        Value::Tuple(items) | Value::List(items) | Value::Set(items) | Value::FrozenSet(items) => {
            all(items, out)
        }
        Value::Dict(pairs) => pairs.iter().for_each(|(k, v)| {
            expected_strong(k, out);
            expected_strong(v, out);
        }),
        Value::PersistentRef(pid) => {
            expected_strong(pid, out);
            let oid = match pid.as_ref() {
                Value::Tuple(items) => items.first().and_then(Value::as_bytes),
                other => other.as_bytes(),
            };
            if let Some(bytes) = oid {
                out.push(u64::from_be_bytes(
                    bytes.try_into().expect("generated oids are 8 bytes"),
                ));
            }
        }
        Value::Reduce { callable, args }
        | Value::NewObj {
            cls: callable,
            args,
        } => {
            expected_strong(callable, out);
            expected_strong(args, out);
        }
        Value::Inst { args, .. } => all(args, out),
        Value::Obj { cls, args } => {
            expected_strong(cls, out);
            all(args, out);
        }
        Value::Build { object, state } => {
            expected_strong(object, out);
            expected_strong(state, out);
        }
        Value::ListItems { object, items } => {
            expected_strong(object, out);
            all(items, out);
        }
        Value::DictItems { object, items } => {
            expected_strong(object, out);
            items.iter().for_each(|(k, v)| {
                expected_strong(k, out);
                expected_strong(v, out);
            });
        }
        _ => {}
    }
}

/// Opcode-heavy bytes: PROTO 3, then a mix of opcode bytes and small arguments.
fn pickle_shaped() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => proptest::sample::select(b"()]}.0125NKMJQRabcdehjlopqrstuGXCB\x85\x86\x87\x88\x89\x8a\x81\n".to_vec()),
        1 => any::<u8>(),
    ];
    proptest::collection::vec(byte, 0..120).prop_map(|body| {
        let mut out = vec![0x80, 0x03];
        out.extend(body);
        out
    })
}

/// Runs every decoding function; whatever decodes must re-encode, and decode again to a
/// value with the same encoding (compared as bytes: a NaN is unequal to itself).
fn exercise(bytes: &[u8]) {
    if let Ok((value, _)) = decode(bytes) {
        let encoded = encode(&value).expect("decoded values are encodable");
        let (again, _) = decode(&encoded).expect("encoded values decode");
        assert_eq!(encode(&again).expect("encodable"), encoded);
    }
    if let Ok((class, state)) = decode_record(bytes) {
        encode(&class).expect("decoded P1 is encodable");
        encode(&state).expect("decoded P2 is encodable");
    }
    let _ = scan_references(bytes);
    let _ = strong_references(bytes);
    let _ = class_of(bytes);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, .. ProptestConfig::default() })]

    #[test]
    fn decode_inverts_encode(v in value_tree(true)) {
        let bytes = encode(&v).expect("generated values are encodable");
        // Decoding succeeds only without protocol 4/5 opcodes, which it refuses.
        let (back, used) = decode(&bytes).expect("decodes");
        prop_assert_eq!(used, bytes.len());
        prop_assert_eq!(back, v);
    }

    #[test]
    fn records_round_trip_and_scan_like_the_decoder(state in value_tree(false), cls in global()) {
        let Value::Global { module, name } = &cls else { unreachable!() };
        let bytes = encode_record((module, name), &state).expect("encodes");
        prop_assert_eq!(decode_record(&bytes).expect("decodes"), (cls.clone(), state.clone()));
        let mut expected = Vec::new();
        expected_strong(&state, &mut expected);
        prop_assert_eq!(strong_references(&bytes).expect("scans"), expected);
        prop_assert_eq!(class_of(&bytes), Some((module.clone(), name.clone())));
    }

    #[test]
    fn a_tuple_encoded_from_its_items_is_the_tuple_encoded(
        items in proptest::collection::vec(value_tree(true), 0..6),
        prefix in proptest::collection::vec(any::<u8>(), 0..5),
    ) {
        let refs: Vec<&Value> = items.iter().collect();
        let mut expected = prefix.clone();
        expected.extend(encode(&Value::Tuple(items.clone())).expect("encodes"));
        prop_assert_eq!(crate::encode_tuple_into(prefix, &refs).expect("encodes"), expected);
    }

    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
        exercise(&bytes);
    }

    #[test]
    fn pickle_shaped_bytes_never_panic(bytes in pickle_shaped()) {
        exercise(&bytes);
        let mut twice = bytes.clone();
        twice.extend(&bytes);
        exercise(&twice);
    }
}
