//! Decoding single pickles: every opcode family, memo aliasing, Python's dict semantics,
//! and the refusals (protocol 4/5, malformed input, limits).

use super::{dict, global, h, int, list, oid, p3, pref, s, tuple};
use crate::{PickleError, Value, decode, decode_record};

/// Decodes `input` and compares with `expected` (a value, or an error matched by `err`).
fn check(input: &[u8], expected: Result<Value, fn(&PickleError) -> bool>) {
    let got = decode(input);
    match (&got, &expected) {
        (Ok((value, used)), Ok(want)) => {
            assert_eq!(value, want, "input {}", hex::encode(input));
            assert_eq!(*used, input.len(), "consumed, input {}", hex::encode(input));
        }
        (Err(e), Err(matches)) => assert!(matches(e), "input {}: error {e:?}", hex::encode(input)),
        _ => panic!("input {}: got {got:?}", hex::encode(input)),
    }
}

fn ok(v: Value) -> Result<Value, fn(&PickleError) -> bool> {
    Ok(v)
}

#[test]
fn binary_opcodes() {
    let cases: Vec<(Vec<u8>, Value)> = vec![
        (p3("4e"), Value::None),
        (p3("88"), Value::Bool(true)),
        (p3("89"), Value::Bool(false)),
        (p3("4b ff"), int(255)),
        (p3("4d 00 01"), int(256)),
        (p3("4a ff ff ff ff"), int(-1)),
        (p3("4a 00 00 00 80"), int(i64::from(i32::MIN))),
        (p3("8a 00"), int(0)),
        (p3("8a 05 00 00 00 80 00"), int(1 << 31)),
        (p3("8a 08 00 00 00 00 00 00 00 80"), int(i64::MIN)),
        (
            p3("8a 09 00 00 00 00 00 00 00 00 01"),
            Value::BigInt(h("00 00 00 00 00 00 00 00 01")),
        ),
        // Non-minimal LONG1 bytes are normalized: this is 255.
        (p3("8a 03 ff 00 00"), int(255)),
        (p3("8b 02 00 00 00 ff 7f"), int(0x7fff)),
        (p3("47 3f f8 00 00 00 00 00 00"), Value::Float(1.5)),
        (p3("43 02 00 ff"), Value::Bytes(vec![0, 0xff])),
        (p3("42 01 00 00 00 61"), Value::Bytes(b"a".to_vec())),
        (p3("58 06 00 00 00 68 c3 a9 6c 6c 6f"), s("h\u{e9}llo")),
        (p3("55 02 68 69"), s("hi")),
        (p3("54 02 00 00 00 68 69"), s("hi")),
        (p3("29"), tuple(vec![])),
        (p3("4b 01 85"), tuple(vec![int(1)])),
        (p3("4b 01 4b 02 86"), tuple(vec![int(1), int(2)])),
        (
            p3("4b 01 4b 02 4b 03 87"),
            tuple(vec![int(1), int(2), int(3)]),
        ),
        (
            p3("28 4b 01 4b 02 4b 03 4b 04 74"),
            tuple(vec![int(1), int(2), int(3), int(4)]),
        ),
        (p3("5d 4b 01 61"), list(vec![int(1)])),
        (p3("5d 28 4b 01 4b 02 65"), list(vec![int(1), int(2)])),
        (p3("28 4b 01 4b 02 6c"), list(vec![int(1), int(2)])),
        (p3("7d 4b 01 4b 02 73"), dict(vec![(int(1), int(2))])),
        (
            p3("7d 28 4b 01 4b 02 4b 03 4b 04 75"),
            dict(vec![(int(1), int(2)), (int(3), int(4))]),
        ),
        (p3("28 4b 01 4b 02 64"), dict(vec![(int(1), int(2))])),
        // DICT ignores an odd last item, as C does.
        (p3("28 4b 01 4b 02 4b 03 64"), dict(vec![(int(1), int(2))])),
        (
            p3("63 62 75 69 6c 74 69 6e 73 0a 73 65 74 0a 5d 28 4b 01 4b 02 65 85 52"),
            Value::Set(vec![int(1), int(2)]),
        ),
        (
            p3("63 62 75 69 6c 74 69 6e 73 0a 66 72 6f 7a 65 6e 73 65 74 0a 5d 4b 01 61 85 52"),
            Value::FrozenSet(vec![int(1)]),
        ),
        (p3("63 61 2e 62 0a 43 0a"), global("a.b", "C")),
        (p3("43 08 00 00 00 00 00 00 00 02 51"), pref(oid(2))),
        (
            p3("63 6d 0a 66 0a 28 4b 01 74 52"),
            Value::Reduce {
                callable: Box::new(global("m", "f")),
                args: Box::new(tuple(vec![int(1)])),
            },
        ),
        (
            p3("63 6d 0a 43 0a 29 81 7d 58 01 00 00 00 78 4b 01 73 62"),
            Value::Build {
                object: Box::new(Value::NewObj {
                    cls: Box::new(global("m", "C")),
                    args: Box::new(tuple(vec![])),
                }),
                state: Box::new(dict(vec![(s("x"), int(1))])),
            },
        ),
        (
            // A list subclass: NEWOBJ, then APPENDS onto the object, then BUILD.
            p3("63 6d 0a 4c 0a 29 81 28 4b 01 4b 02 65 4b 03 61 4e 62"),
            Value::Build {
                object: Box::new(Value::ListItems {
                    object: Box::new(Value::NewObj {
                        cls: Box::new(global("m", "L")),
                        args: Box::new(tuple(vec![])),
                    }),
                    items: vec![int(1), int(2), int(3)],
                }),
                state: Box::new(Value::None),
            },
        ),
        (
            p3("63 6d 0a 44 0a 29 81 4b 01 4b 02 73"),
            Value::DictItems {
                object: Box::new(Value::NewObj {
                    cls: Box::new(global("m", "D")),
                    args: Box::new(tuple(vec![])),
                }),
                items: vec![(int(1), int(2))],
            },
        ),
        (
            p3("28 4b 01 69 6d 0a 43 0a"),
            Value::Inst {
                module: "m".into(),
                name: "C".into(),
                args: vec![int(1)],
            },
        ),
        (
            p3("28 63 6d 0a 43 0a 4b 01 6f"),
            Value::Obj {
                cls: Box::new(global("m", "C")),
                args: vec![int(1)],
            },
        ),
        // BUILD with a None state on a plain value does nothing (Python's default
        // __setstate__).
        (p3("5d 4e 62"), list(vec![])),
        // Stack manipulation: POP, POP_MARK, DUP, POP of a mark.
        (p3("4b 01 4b 02 30"), int(1)),
        (p3("4b 01 28 4b 02 4b 03 31"), int(1)),
        (p3("4b 01 32 86"), tuple(vec![int(1), int(1)])),
        (p3("4b 01 28 30"), int(1)),
        // PROTO may appear again, with any version up to 3.
        (p3("80 02 4e"), Value::None),
    ];
    for (input, expected) in cases {
        check(&input, ok(expected));
    }
}

#[test]
fn text_opcodes_of_protocols_0_and_1() {
    let cases: Vec<(&[u8], Value)> = vec![
        (b"I42\n.", int(42)),
        (b"I-7\n.", int(-7)),
        (b"I01\n.", Value::Bool(true)),
        (b"I00\n.", Value::Bool(false)),
        (
            b"I123456789012345678901234567890\n.",
            Value::BigInt(h("d2 0a 3f 4e ee e0 73 c3 f6 0f e9 8e 01")),
        ),
        (b"L12L\n.", int(12)),
        (b"L-1\n.", int(-1)),
        (b"F1.25\n.", Value::Float(1.25)),
        (b"F-inf\n.", Value::Float(f64::NEG_INFINITY)),
        (b"S'a\\n\\x41'\n.", s("a\nA")),
        (b"S\"q\"\n.", s("q")),
        (b"Vh\\u00e9llo \\U0001f600\n.", s("h\u{e9}llo \u{1f600}")),
        (b"V\xe9\n.", s("\u{e9}")),
        (b"N(I1\nI2\ntp0\n0g0\n.", tuple(vec![int(1), int(2)])),
        (b"(lp0\nI1\naI2\na.", list(vec![int(1), int(2)])),
        (b"(dp0\nS'k'\np1\nI1\ns.", dict(vec![(s("k"), int(1))])),
        (b"(I1\nI2\nd.", dict(vec![(int(1), int(2))])),
        (b"P\x00\x00\x00\x00\x00\x00\x00\x03\n.", pref(oid(3))),
        (
            b"ccopy_reg\n_reconstructor\n.",
            global("copy_reg", "_reconstructor"),
        ),
        (b"c__builtin__\nset\n((lI1\natR.", Value::Set(vec![int(1)])),
        (
            b"(I1\nimod\nCls\n.",
            Value::Inst {
                module: "mod".into(),
                name: "Cls".into(),
                args: vec![int(1)],
            },
        ),
    ];
    for (input, expected) in cases {
        check(input, ok(expected));
    }
}

#[test]
fn memo_entries_alias_lists() {
    // A list is memoized, fetched, then appended to: both places show the item (the
    // mechanism ZODB's weak reference form C relies on).
    let shared = list(vec![int(1)]);
    check(
        &p3("5d 71 00 68 00 4b 01 61 86"),
        ok(tuple(vec![shared.clone(), shared])),
    );
    // Same with the 4-byte and text forms.
    check(
        &p3("5d 72 07 00 00 00 6a 07 00 00 00 4b 01 61 86"),
        ok(tuple(vec![list(vec![int(1)]), list(vec![int(1)])])),
    );
    check(
        b"(lp5\ng5\nI1\na\x86.",
        ok(tuple(vec![list(vec![int(1)]), list(vec![int(1)])])),
    );
}

#[test]
fn dicts_have_python_key_semantics() {
    // {1: 2, True: 3} is {1: 3} in Python; 1.0 is the same key too; "1" is not.
    check(
        &p3("7d 28 4b 01 4b 02 88 4b 03 75"),
        ok(dict(vec![(int(1), int(3))])),
    );
    check(
        &p3("7d 28 4b 01 4b 02 47 3f f0 00 00 00 00 00 00 4b 03 58 01 00 00 00 31 4b 04 75"),
        ok(dict(vec![(int(1), int(3)), (s("1"), int(4))])),
    );
    // Tuple keys compare by value; a set drops repeated items.
    check(
        &p3("7d 28 4b 01 85 4b 02 4b 01 85 4b 03 75"),
        ok(dict(vec![(tuple(vec![int(1)]), int(3))])),
    );
    check(
        &p3("63 62 75 69 6c 74 69 6e 73 0a 73 65 74 0a 5d 28 4b 01 4b 01 4b 02 65 85 52"),
        ok(Value::Set(vec![int(1), int(2)])),
    );
}

fn truncated(e: &PickleError) -> bool {
    matches!(e, PickleError::Truncated { .. })
}
fn underflow(e: &PickleError) -> bool {
    matches!(e, PickleError::StackUnderflow { .. })
}
fn malformed(e: &PickleError) -> bool {
    matches!(e, PickleError::Malformed { .. })
}

#[test]
fn refusals() {
    type Matcher = fn(&PickleError) -> bool;
    let cases: Vec<(Vec<u8>, Matcher)> = vec![
        (vec![], truncated),
        (h("80 03"), truncated),
        (h("80 03 4e"), truncated),
        (h("80 04 4e 2e"), |e| {
            *e == PickleError::UnsupportedProtocol(4)
        }),
        (h("80 05 4e 2e"), |e| {
            *e == PickleError::UnsupportedProtocol(5)
        }),
        (p3("8c 01 61"), |e| {
            matches!(
                e,
                PickleError::UnsupportedOpcode {
                    op: 0x8c,
                    offset: 2,
                    ..
                }
            )
        }),
        (p3("4e 94"), |e| {
            matches!(
                e,
                PickleError::UnsupportedOpcode {
                    op: 0x94,
                    offset: 3,
                    ..
                }
            )
        }),
        (h("80 03 95 00 00 00 00 00 00 00 00 4e 2e"), |e| {
            matches!(e, PickleError::UnsupportedOpcode { op: 0x95, .. })
        }),
        (p3("93"), |e| {
            matches!(e, PickleError::UnsupportedOpcode { op: 0x93, .. })
        }),
        (p3("82 01"), |e| {
            matches!(e, PickleError::UnsupportedOpcode { op: 0x82, .. })
        }),
        (p3("ff"), |e| {
            matches!(
                e,
                PickleError::UnknownOpcode {
                    op: 0xff,
                    offset: 2
                }
            )
        }),
        (p3("00"), |e| {
            matches!(e, PickleError::UnknownOpcode { op: 0x00, .. })
        }),
        // Lengths beyond the input fail before any allocation.
        (p3("58 ff ff ff ff"), truncated),
        (p3("42 ff ff ff ff 00"), truncated),
        (p3("8b ff ff ff 7f"), truncated),
        (p3("8b ff ff ff ff"), malformed),
        (p3("54 ff ff ff ff"), malformed),
        (p3("43 05 00"), truncated),
        (p3("68 00"), |e| {
            matches!(e, PickleError::BadMemo { key: 0, offset: 2 })
        }),
        (p3("4e 71 00 6a 01 00 00 00"), |e| {
            matches!(e, PickleError::BadMemo { key: 1, .. })
        }),
        (p3("74"), |e| matches!(e, PickleError::MissingMark { .. })),
        (p3("86"), underflow),
        (p3("51"), underflow),
        (p3("61"), underflow),
        (p3("71 00"), underflow),
        (h("80 03 2e"), underflow),
        // A tuple pops below its mark: C asks for a negative-size tuple.
        (p3("4e 4e 28 86 74"), underflow),
        (p3("7d 4b 01 61"), malformed),
        (p3("4e 4b 01 61"), malformed),
        (p3("5d 4b 01 4b 02 73"), malformed),
        (p3("7d 5d 4b 01 73"), malformed),
        (p3("7d 28 4b 01 75"), malformed),
        (p3("4b 01 4b 01 52"), malformed),
        (p3("4b 01 29 81"), malformed),
        (p3("4b 01 7d 62"), malformed),
        (p3("55 01 ff"), malformed),
        (p3("58 03 00 00 00 ed a0 80"), malformed),
        (p3("58 01 00 00 00 ff"), malformed),
        (b"I\n.".to_vec(), malformed),
        (b"Ix\n.".to_vec(), malformed),
        (b"F1e999\n.".to_vec(), malformed),
        (b"S'abc\n.".to_vec(), malformed),
        (b"Iabc".to_vec(), truncated),
        (b"c\nname\n.".to_vec(), malformed),
        (b"c\xff\nname\n.".to_vec(), malformed),
        (b"g-1\n.".to_vec(), malformed),
        (b"Np-1\n.".to_vec(), malformed),
    ];
    for (input, matches) in cases {
        check(&input, Err(matches));
    }
}

#[test]
fn decode_stops_at_stop() {
    let mut input = p3("4e");
    input.extend(h("de ad be ef"));
    assert_eq!(decode(&input), Ok((Value::None, 4)));
}

#[test]
fn records_share_one_memo_and_ignore_trailing_bytes() {
    // P1 memoizes the class as entry 0; P2 refers to it.
    let mut record = h("80 03 63 6d 0a 43 0a 71 00 2e");
    record.extend(h(
        "80 03 43 08 00 00 00 00 00 00 00 05 68 00 86 51 2e ff ff",
    ));
    let (class, state) = decode_record(&record).expect("decodes");
    assert_eq!(class, global("m", "C"));
    assert_eq!(state, pref(tuple(vec![oid(5), global("m", "C")])));
    // An empty P2 is an error, as Python's EOFError.
    assert!(matches!(
        decode_record(&h("80 03 4e 2e")),
        Err(PickleError::Truncated { offset: 4 })
    ));
}

#[test]
fn cycles_and_deep_nesting_are_refused_without_overflowing_the_stack() {
    // A list appended to itself through the memo.
    assert_eq!(
        decode(&p3("5d 71 00 68 00 61")),
        Err(PickleError::Recursive)
    );
    // 100 000 nested 1-tuples: the machine does not recurse; conversion stops at the limit.
    let mut input = h("80 03 29");
    input.extend(std::iter::repeat_n(0x85, 100_000));
    input.push(b'.');
    assert_eq!(
        decode(&input),
        Err(PickleError::TooDeep {
            limit: crate::limits::NESTING_MAX
        })
    );
    // Within the limit it decodes.
    let mut input = h("80 03 29");
    input.extend(std::iter::repeat_n(0x85, crate::limits::NESTING_MAX - 1));
    input.push(b'.');
    assert!(decode(&input).is_ok());
}

#[test]
fn memo_fetches_cannot_blow_up_the_tree() {
    // Each level is a 2-tuple of the previous level fetched twice: 2^60 leaves in 200 bytes.
    let mut input = h("80 03 58 00 04 00 00");
    input.extend(std::iter::repeat_n(b'x', 0x400));
    input.extend(h("71 00"));
    for _ in 0..60 {
        input.extend(h("68 00 68 00 86 71 00 30"));
    }
    input.extend(h("68 00 2e"));
    let started = std::time::Instant::now();
    assert!(matches!(decode(&input), Err(PickleError::TooLarge { .. })));
    assert!(started.elapsed() < std::time::Duration::from_secs(20));
}

#[test]
fn memo_keys_near_and_far_are_both_kept() {
    // MARK, None PUT 4294967295 (far: the sparse memo), 7 PUT 5 (near: the dense one, with
    // holes below), then both fetched: [None, 7, None, 7].
    let (value, _) = decode(&p3(
        "28 4e 72 ff ff ff ff 4b 07 71 05 6a ff ff ff ff 68 05 6c 2e",
    ))
    .unwrap();
    assert_eq!(
        value,
        Value::List(vec![Value::None, Value::Int(7), Value::None, Value::Int(7)])
    );
    // A hole below a near key is no entry.
    assert!(matches!(
        decode(&p3("4e 71 05 68 04 2e")),
        Err(PickleError::BadMemo { key: 4, .. })
    ));
}
