//! The reference scanner (zodbpickle `noload` + `referencesf`) and `class_of`, on the
//! forms of record-format §4 and on the corner cases observed with Python.

use super::h;
use crate::{PickleError, Reference, class_of, scan_references, strong_references};

/// P1 used by the hand-made records below: `bbru.content.Folder`, form 1.
const P1: &str = "80 03 63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a 46 6f 6c 64 65 72 0a 2e";

fn record(p2_body: &str) -> Vec<u8> {
    let mut out = h(P1);
    out.extend(h("80 03"));
    out.extend(h(p2_body));
    out.push(b'.');
    out
}

fn folder() -> Option<(String, String)> {
    Some(("bbru.content".into(), "Folder".into()))
}

/// Scans `p2_body` (after the fixed P1) and compares with the expected references (or
/// with an error), and checks `strong_references` agrees with the strong ones.
fn check(p2_body: &str, expected: Result<Vec<Reference>, ()>) {
    let rec = record(p2_body);
    let got = scan_references(&rec);
    match (&got, &expected) {
        (Ok(refs), Ok(want)) => {
            assert_eq!(refs, want, "P2 {p2_body}");
            let strong: Vec<u64> = refs
                .iter()
                .filter_map(|r| match r {
                    Reference::Strong { oid, .. } => Some(*oid),
                    _ => None,
                })
                .collect();
            assert_eq!(strong_references(&rec), Ok(strong), "P2 {p2_body}");
        }
        (Err(_), Err(())) => {}
        _ => panic!("P2 {p2_body}: got {got:?}"),
    }
}

fn strong(oid: u64, class: Option<(String, String)>) -> Reference {
    Reference::Strong { oid, class }
}

const OID1: &str = "43 08 00 00 00 00 00 00 00 01";
const OID2: &str = "43 08 00 00 00 00 00 00 00 02";
const FOLDER: &str = "63 62 62 72 75 2e 63 6f 6e 74 65 6e 74 0a 46 6f 6c 64 65 72 0a";

#[test]
fn forms_of_record_format_section_4() {
    let cases: Vec<(String, Vec<Reference>)> = vec![
        // A: (oid, class).
        (
            format!("{OID1} 71 05 {FOLDER} 71 06 86 71 07 51"),
            vec![strong(1, folder())],
        ),
        // B: bare oid.
        (format!("{OID2} 71 09 51"), vec![strong(2, None)]),
        // C: ['w', (oid,)] with the oid fetched from the memo.
        (
            format!("{OID1} 71 05 30 5d 71 12 28 58 01 00 00 00 77 71 13 68 05 85 71 14 65 51"),
            vec![Reference::Weak {
                oid: 1,
                database: None,
            }],
        ),
        // D: ['w', (oid, db)].
        (
            format!(
                "{OID1} 71 08 30 58 07 00 00 00 63 61 74 61 6c 6f 67 71 07 30 5d 71 11 28 58 01 00 00 00 77 71 12 68 08 68 07 86 71 13 65 51"
            ),
            vec![Reference::Weak {
                oid: 1,
                database: Some("catalog".into()),
            }],
        ),
        // E: ['m', (db, oid, class)].
        (
            format!(
                "5d 71 05 28 58 01 00 00 00 6d 71 06 58 07 00 00 00 63 61 74 61 6c 6f 67 71 07 {OID1} 71 08 {FOLDER} 71 09 87 71 0a 65 51"
            ),
            vec![Reference::CrossDatabase {
                database: "catalog".into(),
                oid: 1,
                class: folder(),
            }],
        ),
        // F: ['n', (db, oid)].
        (
            format!(
                "58 07 00 00 00 63 61 74 61 6c 6f 67 71 07 30 5d 71 0c 28 58 01 00 00 00 6e 71 0d 68 07 {OID2} 71 0e 86 71 0f 65 51"
            ),
            vec![Reference::CrossDatabase {
                database: "catalog".into(),
                oid: 2,
                class: None,
            }],
        ),
        // Legacy weak reference [oid].
        (
            format!("5d {OID2} 61 51"),
            vec![Reference::Weak {
                oid: 2,
                database: None,
            }],
        ),
        // (oid, (module, name)).
        (
            format!("{OID2} 58 01 00 00 00 6d 58 01 00 00 00 43 86 86 51"),
            vec![strong(2, Some(("m".into(), "C".into())))],
        ),
        // Text PERSID; a Python 2 str oid (ASCII); duplicates kept, in order.
        (
            "50 00 00 00 00 00 00 00 03 0a 55 08 41 41 41 41 41 41 41 41 51 86".into(),
            vec![strong(3, None), strong(0x4141_4141_4141_4141, None)],
        ),
        (
            format!("{OID1} 51 {OID2} 51 {OID1} 51 87"),
            vec![strong(1, None), strong(2, None), strong(1, None)],
        ),
    ];
    for (body, expected) in cases {
        check(&body, Ok(expected));
    }
}

#[test]
fn noload_semantics() {
    let cases: Vec<(String, Result<Vec<Reference>, ()>)> = vec![
        // References inside REDUCE arguments, in a BUILD state, as a dict key.
        (
            format!("63 6d 0a 66 0a {OID1} 51 85 52"),
            Ok(vec![strong(1, None)]),
        ),
        (
            format!("63 6d 0a 43 0a 29 81 {OID2} 51 62"),
            Ok(vec![strong(2, None)]),
        ),
        (format!("7d {OID1} 51 4e 73"), Ok(vec![strong(1, None)])),
        // APPEND/SETITEM into what noload made None are dropped; INST and OBJ too.
        (
            format!("63 6d 0a 66 0a 29 52 {OID1} 51 61"),
            Ok(vec![strong(1, None)]),
        ),
        (
            format!("4e 28 {OID1} 51 4b 01 75"),
            Ok(vec![strong(1, None)]),
        ),
        (
            format!("28 {OID2} 51 69 6d 0a 43 0a"),
            Ok(vec![strong(2, None)]),
        ),
        (
            format!("28 63 6d 0a 43 0a {OID2} 51 6f"),
            Ok(vec![strong(2, None)]),
        ),
        // noload skips the GLOBAL lines without decoding them.
        ("63 ff 0a 0a".into(), Ok(vec![])),
        // A pid built by REDUCE is None under noload: Python asserts.
        ("63 6d 0a 66 0a 29 52 51".into(), Err(())),
        // An empty tuple pid: Python's IndexError.
        ("29 51".into(), Err(())),
        // Oids must be 8 bytes.
        ("43 03 00 00 01 51".into(), Err(())),
        // A non-ASCII str oid.
        ("58 08 00 00 00 c3 a9 41 41 41 41 41 41 51".into(), Err(())),
        // Protocol 4/5 opcodes, even under PROTO 3.
        ("8c 01 61 51".into(), Err(())),
        ("4e 94".into(), Err(())),
        // An unhashable dict key fails in Python's noload too.
        ("7d 5d 4e 73".into(), Err(())),
    ];
    for (body, expected) in cases {
        check(&body, expected);
    }
}

#[test]
fn strong_references_skip_every_list_like_referencesf() {
    // A list pid of unknown shape: referencesf skips it; scan_references calls it bad.
    let rec = record(&format!("5d 28 58 01 00 00 00 78 {OID1} 4e 65 51"));
    assert_eq!(strong_references(&rec), Ok(vec![]));
    assert!(matches!(
        scan_references(&rec),
        Err(PickleError::BadPersistentId(_))
    ));
    // A list pid filled after its BINPERSID is classified with its final items.
    let rec = record(&format!(
        "5d 71 00 51 68 00 58 01 00 00 00 77 61 68 00 {OID2} 85 61"
    ));
    assert_eq!(
        scan_references(&rec),
        Ok(vec![Reference::Weak {
            oid: 2,
            database: None
        }])
    );
}

#[test]
fn records_need_both_pickles() {
    assert!(strong_references(&h(P1)).is_err());
    assert!(strong_references(&h("80 04 4e 2e 80 03 4e 2e")).is_err());
    // P1 may hold the references too (a persistent class).
    let mut rec = h(&format!("80 03 {OID1} 51 2e"));
    rec.extend(h("80 03 4e 2e"));
    assert_eq!(strong_references(&rec), Ok(vec![1]));
    // Protocol 1 and 0 records, without PROTO.
    let mut rec = b"cm\nC\nq\x00.".to_vec();
    rec.extend(b"(dq\x01U\x01aP\x00\x00\x00\x00\x00\x00\x00\x07\ns.");
    assert_eq!(strong_references(&rec), Ok(vec![7]));
}

#[test]
fn class_of_follows_get_pickle_metadata() {
    type Case = (Vec<u8>, Option<(&'static str, &'static str)>);
    let cases: Vec<Case> = vec![
        (record("4e"), Some(("bbru.content", "Folder"))),
        // Form 2: (class, newargs), still starting with 'c'.
        (
            h("80 03 63 6d 0a 43 0a 71 00 29 86 71 01 2e 80 03 4e 2e"),
            Some(("m", "C")),
        ),
        // '(c' prefix.
        (b"(cm\nC\nt.".to_vec(), Some(("m", "C"))),
        // Form 3: ((module, name), None), read by decoding P1.
        (
            h("80 03 58 01 00 00 00 6d 58 01 00 00 00 43 86 4e 86 2e 80 03 4e 2e"),
            Some(("m", "C")),
        ),
        // Form 5: (class, None) not starting with 'c'.
        (h("80 03 4e 30 63 6d 0a 43 0a 4e 86 2e"), Some(("m", "C"))),
        (h("80 03 4e 2e"), None),
        (h("80 03 63 6d 0a"), None),
        (vec![], None),
        (vec![0x80], None),
    ];
    for (bytes, expected) in cases {
        assert_eq!(
            class_of(&bytes),
            expected.map(|(m, n)| (m.to_owned(), n.to_owned())),
            "{}",
            hex::encode(&bytes)
        );
    }
}

#[test]
fn scanning_does_not_recurse() {
    // 200 000 nested tuples around a reference: fine for the scanner, which builds no tree.
    let mut rec = h(P1);
    rec.extend(h(&format!("80 03 {OID1} 51")));
    rec.extend(std::iter::repeat_n(0x85, 200_000));
    rec.push(b'.');
    assert_eq!(strong_references(&rec), Ok(vec![1]));
}
