//! The codec against records written by real Python ZODB 6.4 (and by `handmade.py`):
//! every data record of every fixture in `tests/fixtures/zodb/`, checked against Python's
//! own reading of it in `expected.json` (`referencesf` and `get_pickle_metadata`).
//!
//! Also the robustness loop: every truncation and many one-byte mutations of every
//! fixture record go through every public decoding function, which must return (never
//! panic), and round trips of every record through the encoder.

use std::path::{Path, PathBuf};

use serde_json::Value as Json;
use zodb_pickle::{
    Reference, Value, class_of, decode, decode_record, encode, encode_record, scan_references,
    strong_references,
};

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../../tests/fixtures/zodb");

/// FileStorage data record header size (`filestorage-format.md`): oid, serial, prev, tloc,
/// vlen, plen.
const DATA_HEADER_LEN: usize = 42;

/// One data record with a pickle, and what Python said about it.
struct Record {
    fixture: String,
    pos: usize,
    data: Vec<u8>,
    class: String,
    refs: Vec<u64>,
}

impl Record {
    fn name(&self) -> String {
        format!("{}@{}", self.fixture, self.pos)
    }
}

fn fixture_dir() -> PathBuf {
    PathBuf::from(FIXTURES)
}

/// Every record with `plen > 0` of every fixture listed in `expected.json`.
fn records() -> Vec<Record> {
    let dir = fixture_dir();
    let expected: Json = serde_json::from_slice(
        &std::fs::read(dir.join("expected.json")).expect("expected.json is readable"),
    )
    .expect("expected.json is JSON");
    let mut out = Vec::new();
    for (fixture, entry) in expected.as_object().expect("an object per fixture") {
        let bytes = std::fs::read(Path::new(&dir).join(fixture)).expect("fixture is readable");
        for txn in entry["file"]["txns"].as_array().expect("txns") {
            for record in txn["records"].as_array().expect("records") {
                let plen = record["plen"].as_u64().expect("plen") as usize;
                if plen == 0 {
                    continue; // a backpointer: no pickle here
                }
                let pos = record["pos"].as_u64().expect("pos") as usize;
                let start = pos + DATA_HEADER_LEN;
                let data = bytes
                    .get(start..start + plen)
                    .unwrap_or_else(|| panic!("{fixture}@{pos}: record beyond the file"))
                    .to_vec();
                out.push(Record {
                    fixture: fixture.clone(),
                    pos,
                    data,
                    class: record["class"].as_str().expect("class").to_owned(),
                    refs: record["refs"]
                        .as_array()
                        .expect("refs")
                        .iter()
                        .map(|r| r.as_u64().expect("oid"))
                        .collect(),
                });
            }
        }
    }
    assert!(out.len() > 50, "fixtures found: {}", out.len());
    out
}

#[test]
fn strong_references_match_python_referencesf() {
    for record in records() {
        let got =
            strong_references(&record.data).unwrap_or_else(|e| panic!("{}: {e}", record.name()));
        assert_eq!(got, record.refs, "{}", record.name());
    }
}

#[test]
fn scan_references_strong_part_matches_python() {
    for record in records() {
        let refs =
            scan_references(&record.data).unwrap_or_else(|e| panic!("{}: {e}", record.name()));
        let strong: Vec<u64> = refs
            .iter()
            .filter_map(|r| match r {
                Reference::Strong { oid, .. } => Some(*oid),
                _ => None,
            })
            .collect();
        assert_eq!(strong, record.refs, "{}", record.name());
    }
}

#[test]
fn class_of_matches_python_get_pickle_metadata() {
    for record in records() {
        let (module, name) =
            class_of(&record.data).unwrap_or_else(|| panic!("{}: no class", record.name()));
        assert_eq!(
            format!("{module}.{name}"),
            record.class,
            "{}",
            record.name()
        );
    }
}

#[test]
fn every_record_decodes_and_its_p1_names_its_class() {
    for record in records() {
        let (class, _state) =
            decode_record(&record.data).unwrap_or_else(|e| panic!("{}: {e}", record.name()));
        let global = match &class {
            Value::Global { module, name } => (module, name),
            // Form 2: (class, newargs).
            Value::Tuple(items) => match items.first() {
                Some(Value::Global { module, name }) => (module, name),
                _ => panic!("{}: P1 is {class:?}", record.name()),
            },
            _ => panic!("{}: P1 is {class:?}", record.name()),
        };
        assert_eq!(format!("{}.{}", global.0, global.1), record.class);
    }
}

/// The multi-database root refers to the other database in all three list forms, which
/// Python's `referencesf` skips; the scanner classifies them.
#[test]
fn multi_database_references_are_classified() {
    let record = records()
        .into_iter()
        .rfind(|r| r.fixture == "multi-main.fs")
        .expect("multi-main.fs has records");
    let folder = Some(("bbru.content".to_owned(), "Folder".to_owned()));
    assert_eq!(
        scan_references(&record.data).expect("scans"),
        vec![
            Reference::CrossDatabase {
                database: "catalog".into(),
                oid: 1,
                class: folder
            },
            Reference::CrossDatabase {
                database: "catalog".into(),
                oid: 2,
                class: None
            },
            Reference::Weak {
                oid: 1,
                database: Some("catalog".into())
            },
        ]
    );
}

/// The root of T4 in `unpacked.fs` holds a weak reference (form C) whose oid is a memo hit,
/// next to strong references in forms A.
#[test]
fn weak_reference_through_the_memo_is_classified() {
    let record = records()
        .into_iter()
        .find(|r| r.fixture == "unpacked.fs" && r.pos == 2103)
        .expect("the root record of T4");
    let refs = scan_references(&record.data).expect("scans");
    assert!(
        refs.contains(&Reference::Weak {
            oid: 1,
            database: None
        }),
        "{refs:?}"
    );
}

/// The OOBucket record of oid 4: its P2 fetches the class memoized by P1 (record-format
/// §1), and the reference to the next bucket is `(oid 5, OOBucket)`.
#[test]
fn p2_uses_the_memo_of_p1() {
    let record = records()
        .into_iter()
        .find(|r| r.fixture == "unpacked.fs" && r.pos == 1043)
        .expect("the OOBucket record");
    // P2 alone cannot be read: memo entry 0 lives in P1.
    let (_, p1_len) = decode(&record.data).expect("P1 decodes alone");
    assert!(decode(&record.data[p1_len..]).is_err());
    let (_, state) = decode_record(&record.data).expect("decodes with one memo");
    let Value::Tuple(items) = &state else {
        panic!("state {state:?}")
    };
    let bucket = Value::global("BTrees.OOBTree", "OOBucket");
    assert_eq!(
        items.last(),
        Some(&Value::PersistentRef(Box::new(Value::Tuple(vec![
            Value::Bytes(5u64.to_be_bytes().to_vec()),
            bucket
        ]))))
    );
}

/// Every record survives decode → encode → decode with the same values and references.
/// Records made of form-1 P1s go through `encode_record`; the `(class, newargs)` ones
/// through two `encode`s.
#[test]
fn every_record_round_trips_through_the_encoder() {
    for record in records() {
        let (class, state) = decode_record(&record.data).expect("decodes");
        let bytes = match &class {
            Value::Global { module, name } => encode_record((module, name), &state),
            _ => {
                let mut bytes = encode(&class).expect("P1 encodes");
                bytes.extend(encode(&state).expect("P2 encodes"));
                Ok(bytes)
            }
        }
        .unwrap_or_else(|e| panic!("{}: {e}", record.name()));
        assert_eq!(
            decode_record(&bytes).expect("re-decodes"),
            (class, state),
            "{}",
            record.name()
        );
        assert_eq!(
            strong_references(&bytes).expect("re-scans"),
            record.refs,
            "{}",
            record.name()
        );
        assert_eq!(
            class_of(&bytes).map(|(m, n)| format!("{m}.{n}")).as_deref(),
            Some(record.class.as_str())
        );
    }
}

/// `handmade.fs` was written without memo opcodes; where its author chose Python's
/// canonical forms (every container of the Page record has two items), our encoding is
/// byte-identical.  The other records differ only where `handmade.py` writes one-item
/// dicts with `MARK … SETITEMS` and the weak reference list with two `APPEND`s, both
/// valid; Python's pickler (and ours) uses `SETITEM` and `MARK … APPENDS` there.
#[test]
fn handmade_records_reencode_canonically() {
    let handmade: Vec<Record> = records()
        .into_iter()
        .filter(|r| r.fixture == "handmade.fs")
        .collect();
    let mut identical = 0;
    for record in &handmade {
        let (class, state) = decode_record(&record.data).expect("decodes");
        let Value::Global { module, name } = &class else {
            panic!("handmade P1s are form 1")
        };
        let bytes = encode_record((module, name), &state).expect("encodes");
        if bytes == record.data {
            identical += 1;
        } else {
            let canonical = record
                .data
                .windows(2)
                .all(|w| w != [b'}', b'('] && w != [b']', b'X']);
            assert!(!canonical, "{} re-encodes differently", record.name());
        }
    }
    assert!(
        identical >= 1,
        "the two-item Page record must match byte for byte"
    );
}

/// Decoding functions on damaged records return errors or values, never panic: every
/// prefix, and every byte replaced by a few values chosen to hit opcodes and lengths.
#[test]
fn damaged_records_never_panic() {
    let mut seen = std::collections::HashSet::new();
    for record in records() {
        if !seen.insert(record.data.clone()) {
            continue;
        }
        let data = &record.data;
        for len in 0..data.len() {
            exercise(&data[..len]);
        }
        let mut mutated = data.clone();
        for i in 0..data.len() {
            for replacement in [data[i] ^ 0x01, data[i] ^ 0x80, 0x00, 0xff, b'(', b'h', b'e'] {
                mutated[i] = replacement;
                exercise(&mutated);
            }
            mutated[i] = data[i];
        }
    }
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
