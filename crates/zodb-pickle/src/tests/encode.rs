//! Encoding: the exact bytes of record-format §6 for each kind of value, the handmade
//! Folder record, and the refusals.

use super::{dict, global, h, int, list, oid, p3, pref, s, tuple};
use crate::{PickleError, Value, decode_record, encode, encode_record, strong_references};

/// Encodes `value` and compares with `80 03 <body> 2e`.
fn check(value: Value, body: &str) {
    let got = encode(&value).unwrap_or_else(|e| panic!("{value:?}: {e}"));
    assert_eq!(hex::encode(&got), hex::encode(p3(body)), "{value:?}");
}

#[test]
fn values_as_python_protocol_3_writes_them() {
    let cases: Vec<(Value, &str)> = vec![
        (Value::None, "4e"),
        (Value::Bool(true), "88"),
        (Value::Bool(false), "89"),
        (int(0), "4b 00"),
        (int(255), "4b ff"),
        (int(256), "4d 00 01"),
        (int(65535), "4d ff ff"),
        (int(65536), "4a 00 00 01 00"),
        (int(-1), "4a ff ff ff ff"),
        (int(i64::from(i32::MAX)), "4a ff ff ff 7f"),
        (int(i64::from(i32::MIN)), "4a 00 00 00 80"),
        (int(1 << 31), "8a 05 00 00 00 80 00"),
        (int(-(1 << 31) - 1), "8a 05 ff ff ff 7f ff"),
        (int(i64::MAX), "8a 08 ff ff ff ff ff ff ff 7f"),
        (int(i64::MIN), "8a 08 00 00 00 00 00 00 00 80"),
        (
            Value::BigInt(h("00 00 00 00 00 00 00 00 01")),
            "8a 09 00 00 00 00 00 00 00 00 01",
        ),
        // A BigInt that fits is written as the int it is.
        (Value::BigInt(h("05 00 00")), "4b 05"),
        (Value::Float(1.5), "47 3f f8 00 00 00 00 00 00"),
        (Value::Float(-0.0), "47 80 00 00 00 00 00 00 00"),
        (s("w"), "58 01 00 00 00 77"),
        (s("h\u{e9}"), "58 03 00 00 00 68 c3 a9"),
        (Value::Bytes(vec![0, 0xff]), "43 02 00 ff"),
        (tuple(vec![]), "29"),
        (tuple(vec![int(1)]), "4b 01 85"),
        (tuple(vec![int(1), int(2)]), "4b 01 4b 02 86"),
        (tuple(vec![int(1), int(2), int(3)]), "4b 01 4b 02 4b 03 87"),
        (
            tuple(vec![int(1), int(2), int(3), int(4)]),
            "28 4b 01 4b 02 4b 03 4b 04 74",
        ),
        (list(vec![]), "5d"),
        (list(vec![int(1)]), "5d 4b 01 61"),
        (list(vec![int(1), int(2)]), "5d 28 4b 01 4b 02 65"),
        (dict(vec![]), "7d"),
        (
            dict(vec![(s("a"), int(1))]),
            "7d 58 01 00 00 00 61 4b 01 73",
        ),
        (
            dict(vec![(s("a"), int(1)), (s("b"), int(2))]),
            "7d 28 58 01 00 00 00 61 4b 01 58 01 00 00 00 62 4b 02 75",
        ),
        (
            Value::Set(vec![int(1), int(2)]),
            "63 62 75 69 6c 74 69 6e 73 0a 73 65 74 0a 5d 28 4b 01 4b 02 65 85 52",
        ),
        (
            Value::FrozenSet(vec![]),
            "63 62 75 69 6c 74 69 6e 73 0a 66 72 6f 7a 65 6e 73 65 74 0a 5d 85 52",
        ),
        (
            global("bbru.content", "Page"),
            "63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a 50 61 67 65 0a",
        ),
        // Form A, form B and the weak reference of record-format §4/§6.
        (
            pref(tuple(vec![oid(2), global("bbru.content", "Page")])),
            "43 08 00 00 00 00 00 00 00 02 63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a 50 61 67 65 0a 86 51",
        ),
        (pref(oid(3)), "43 08 00 00 00 00 00 00 00 03 51"),
        (
            pref(list(vec![s("w"), tuple(vec![oid(2)])])),
            "5d 28 58 01 00 00 00 77 43 08 00 00 00 00 00 00 00 02 85 65 51",
        ),
        (
            Value::Reduce {
                callable: Box::new(global("m", "f")),
                args: Box::new(tuple(vec![])),
            },
            "63 6d 0a 66 0a 29 52",
        ),
        (
            Value::Build {
                object: Box::new(Value::NewObj {
                    cls: Box::new(global("m", "C")),
                    args: Box::new(tuple(vec![])),
                }),
                state: Box::new(Value::None),
            },
            "63 6d 0a 43 0a 29 81 4e 62",
        ),
        (
            Value::ListItems {
                object: Box::new(Value::Reduce {
                    callable: Box::new(global("m", "L")),
                    args: Box::new(tuple(vec![])),
                }),
                items: vec![int(1)],
            },
            "63 6d 0a 4c 0a 29 52 4b 01 61",
        ),
        (
            Value::DictItems {
                object: Box::new(Value::Reduce {
                    callable: Box::new(global("m", "D")),
                    args: Box::new(tuple(vec![])),
                }),
                items: vec![(int(1), int(2)), (int(3), int(4))],
            },
            "63 6d 0a 44 0a 29 52 28 4b 01 4b 02 4b 03 4b 04 75",
        ),
        (
            Value::Inst {
                module: "m".into(),
                name: "C".into(),
                args: vec![int(1)],
            },
            "28 4b 01 69 6d 0a 43 0a",
        ),
        (
            Value::Obj {
                cls: Box::new(global("m", "C")),
                args: vec![],
            },
            "28 63 6d 0a 43 0a 6f",
        ),
    ];
    for (value, body) in cases {
        check(value, body);
    }
}

#[test]
fn lists_and_dicts_are_batched_by_1000() {
    // 1001 items: MARK, 1000 items, APPENDS, then the last one with APPEND.
    let items: Vec<Value> = (0..1001).map(|_| Value::None).collect();
    let mut body = String::from("5d 28");
    body.push_str(&" 4e".repeat(1000));
    body.push_str(" 65 4e 61");
    check(list(items), &body);

    // 1002 pairs: MARK, 1000 pairs, SETITEMS, MARK, 2 pairs, SETITEMS.
    let pairs: Vec<(Value, Value)> = (0..1002).map(|i| (int(i), Value::None)).collect();
    let pair_bytes = |i: i64| -> Vec<u8> {
        let mut out = match u8::try_from(i) {
            Ok(b) => vec![0x4b, b],
            Err(_) => [vec![0x4d], u16::try_from(i).unwrap().to_le_bytes().to_vec()].concat(),
        };
        out.push(0x4e);
        out
    };
    let mut expected = vec![0x80, 0x03, 0x7d, 0x28];
    (0..1000).for_each(|i| expected.extend(pair_bytes(i)));
    expected.extend([0x75, 0x28]);
    (1000..1002).for_each(|i| expected.extend(pair_bytes(i)));
    expected.extend([0x75, 0x2e]);
    let bytes = encode(&dict(pairs.clone())).expect("encodes");
    assert_eq!(bytes, expected);
    assert_eq!(decode_record_state(&bytes), dict(pairs));
}

fn decode_record_state(pickle: &[u8]) -> Value {
    crate::decode(pickle).expect("decodes").0
}

/// The handmade Folder record of record-format §6 (oid 1 of `handmade.fs`), built as a
/// value.  Our encoding differs from the hand-written bytes in two places only, both
/// choices of Python's own pickler: the one-item `items` dict uses `SETITEM` (`73`) instead
/// of `MARK … SETITEMS`, and the weak reference list uses `MARK … APPENDS` instead of two
/// `APPEND`s.
#[test]
fn handmade_folder_record() {
    let folder = dict(vec![
        (s("title"), s("Made without Python")),
        (
            s("items"),
            dict(vec![(
                s("page"),
                pref(tuple(vec![oid(2), global("bbru.content", "Page")])),
            )]),
        ),
        (s("counter"), pref(oid(3))),
        (s("fav"), pref(list(vec![s("w"), tuple(vec![oid(2)])]))),
    ]);
    let fixture = h(
        "800363626272752e636f6e74656e740a466f6c6465720a2e80037d2858050000007469746c65\
                     58130000004d61646520776974686f757420507974686f6e58050000006974656d737d2858\
                     04000000706167654308000000000000000263626272752e636f6e74656e740a506167650a\
                     8651755807000000636f756e746572430800000000000000035158030000006661765d5801\
                     000000776143080000000000000002856151752e",
    );
    assert_eq!(
        decode_record(&fixture).expect("the fixture decodes"),
        (global("bbru.content", "Folder"), folder.clone())
    );
    let expected = h("
        80 03 63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a 46 6f 6c 64 65 72 0a 2e
        80 03 7d 28
          58 05 00 00 00 74 69 74 6c 65
          58 13 00 00 00 4d 61 64 65 20 77 69 74 68 6f 75 74 20 50 79 74 68 6f 6e
          58 05 00 00 00 69 74 65 6d 73 7d 58 04 00 00 00 70 61 67 65
            43 08 00 00 00 00 00 00 00 02 63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a
            50 61 67 65 0a 86 51 73
          58 07 00 00 00 63 6f 75 6e 74 65 72 43 08 00 00 00 00 00 00 00 03 51
          58 03 00 00 00 66 61 76 5d 28 58 01 00 00 00 77
            43 08 00 00 00 00 00 00 00 02 85 65 51
        75 2e");
    let encoded = encode_record(("bbru.content", "Folder"), &folder).expect("encodes");
    assert_eq!(hex::encode(&encoded), hex::encode(&expected));
    assert_eq!(strong_references(&encoded), Ok(vec![2, 3]));
    assert_eq!(fixture.len(), 169);
}

#[test]
fn records_start_with_form_1() {
    assert_eq!(
        encode_record(
            ("persistent.mapping", "PersistentMapping"),
            &dict(vec![(s("data"), dict(vec![]))])
        )
        .expect("encodes"),
        h(
            "80 03 63 70 65 72 73 69 73 74 65 6e 74 2e 6d 61 70 70 69 6e 67 0a
           50 65 72 73 69 73 74 65 6e 74 4d 61 70 70 69 6e 67 0a 2e
           80 03 7d 58 04 00 00 00 64 61 74 61 7d 73 2e"
        )
    );
}

#[test]
fn refusals() {
    let deep = (0..600).fold(Value::None, |v, _| tuple(vec![v]));
    let cases: Vec<Value> = vec![
        global("a\nb", "c"),
        global("a", ""),
        Value::Set(vec![list(vec![])]),
        dict(vec![(list(vec![]), int(1))]),
        dict(vec![(tuple(vec![dict(vec![])]), int(1))]),
        Value::Reduce {
            callable: Box::new(global("m", "f")),
            args: Box::new(list(vec![])),
        },
        Value::NewObj {
            cls: Box::new(global("m", "C")),
            args: Box::new(Value::None),
        },
        Value::Inst {
            module: "m\u{e9}".into(),
            name: "C".into(),
            args: vec![],
        },
    ];
    for value in cases {
        assert!(
            matches!(encode(&value), Err(PickleError::NotEncodable(_))),
            "{value:?}"
        );
    }
    assert_eq!(
        encode(&deep),
        Err(PickleError::TooDeep {
            limit: crate::limits::NESTING_MAX
        })
    );
    assert!(encode_record(("a.b", "C\n"), &Value::None).is_err());
}

#[test]
fn repeated_globals_are_memoized_across_both_pickles() {
    // The record's class in P1, then references of the same class in P2: memoized once
    // (`BINPUT 0` in P1), fetched with `BINGET 0` in P2, as Python writes an OOBucket.
    let oid = |n: u8| Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0, n]);
    let folder = || Value::global("bbru.content", "Folder");
    let reference = |n| Value::PersistentRef(Box::new(Value::Tuple(vec![oid(n), folder()])));
    let state = Value::Dict(vec![
        (Value::str("a"), reference(1)),
        (Value::str("b"), reference(2)),
        (
            Value::str("page"),
            Value::PersistentRef(Box::new(Value::Tuple(vec![
                oid(3),
                Value::global("bbru.content", "Page"),
            ]))),
        ),
    ]);
    let record = encode_record(("bbru.content", "Folder"), &state).unwrap();
    let hex = hex::encode(&record);
    assert!(
        hex.starts_with("800363626272752e636f6e74656e740a466f6c6465720a71002e"),
        "{hex}"
    );
    assert_eq!(
        hex.matches("466f6c6465720a").count(),
        1,
        "Folder written once: {hex}"
    );
    assert_eq!(
        hex.matches("43080000000000000001680086").count(),
        1,
        "{hex}"
    );
    // A global used once gets no memo entry.
    assert!(hex.contains("506167650a86"), "{hex}");
    let (class, decoded) = decode_record(&record).unwrap();
    assert_eq!(class, folder());
    assert_eq!(decoded, state);
    assert_eq!(strong_references(&record).unwrap(), vec![1, 2, 3]);
}

/// `encode_like_python` against the bytes CPython 3.11 with ZODB 6.4 wrote for the same
/// values (`ZODB._compat.dumps(value, 3)`, the transaction extension's pickler): every
/// container, str and bytes memoized in Python's order, a repeated one-character str or
/// bytes and the shared empty str fetched back with `BINGET`, sets as `builtins.set`.
#[test]
fn values_as_python_memoizes_them() {
    let bytes = |v: &str| Value::Bytes(v.as_bytes().to_vec());
    let extension = dict(vec![
        (s("user_name"), s("alice")),
        (s("size"), int(3)),
        (s("tags"), list(vec![s("a"), s("b"), s("a")])),
        (s("empty"), s("")),
        (s("again"), s("")),
        (s("pt"), tuple(vec![int(1), Value::Float(2.5)])),
        (s("big"), int(1 << 40)),
        (s("blob"), bytes("x")),
        (s("blob2"), bytes("x")),
        (s("nested"), dict(vec![(s("k"), s("v"))])),
        (s("set"), Value::Set(vec![int(1)])),
        (s("none"), Value::None),
        (s("yes"), Value::Bool(true)),
        (s("ru"), s("привет")),
    ]);
    let python = [
        (
            extension,
            "80037d7100285809000000757365725f6e616d6571015805000000616c6963657102580400000073\
             697a6571034b0358040000007461677371045d710528580100000061710658010000006271076806\
             655805000000656d7074797108580000000071095805000000616761696e710a6809580200000070\
             74710b4b0147400400000000000086710c5803000000626967710d8a060000000000015804000000\
             626c6f62710e430178710f5805000000626c6f62327110680f58060000006e657374656471117d71\
             1258010000006b711358010000007671147358030000007365747115636275696c74696e730a7365\
             740a71165d71174b016185711852711958040000006e6f6e65711a4e5803000000796573711b8858\
             020000007275711c580c000000d0bfd180d0b8d0b2d0b5d182711d752e",
        ),
        (
            dict(vec![(s("a"), int(1))]),
            "80037d710058010000006171014b01732e",
        ),
        (dict(vec![]), "80037d71002e"),
    ];
    for (value, want) in python {
        let got = crate::encode_like_python(&value).unwrap();
        assert_eq!(hex::encode(&got), want, "{value:?}");
        assert_eq!(crate::decode(&got).unwrap().0, value, "it loads back");
    }
}
