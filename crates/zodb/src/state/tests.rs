//! Unit tests of the serde bridge: typed values to pickle `Value`s and back, and the
//! records they make as Python reads them.

use serde::{Deserialize, Serialize};
use zodb_pickle::{Value, decode_record, encode_record, strong_references};
use zodb_storage::Oid;

use super::{from_value, to_value};
use crate::{PRef, Persistent};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Status {
    Draft,
    Published { at: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Folder {
    title: String,
    count: u64,
    ratio: f64,
    tags: Vec<String>,
    parent: Option<PRef<Folder>>,
    children: std::collections::BTreeMap<String, PRef<Folder>>,
    status: Status,
    pair: (i32, bool),
    #[serde(with = "bytes")]
    blob: Vec<u8>,
}
crate::persistent!(Folder, "bbru.content", "Folder");

mod bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
        }
        d.deserialize_byte_buf(V)
    }
}

fn sample() -> Folder {
    Folder {
        title: "Héllo".into(),
        count: u64::MAX,
        ratio: 0.5,
        tags: vec!["a".into(), "b".into()],
        parent: Some(PRef::from_oid(Oid(7))),
        children: [("x".to_string(), PRef::from_oid(Oid(9)))].into(),
        status: Status::Published { at: 3 },
        pair: (-1, true),
        blob: vec![0, 255],
    }
}

#[test]
fn struct_state_is_a_dict_of_fields_and_round_trips() {
    let folder = sample();
    let state = folder.to_state().unwrap();
    assert_eq!(state.get("title"), Some(&Value::str("Héllo")));
    assert_eq!(
        state.get("pair"),
        Some(&Value::Tuple(vec![Value::Int(-1), Value::Bool(true)]))
    );
    assert_eq!(state.get("blob"), Some(&Value::Bytes(vec![0, 255])));
    assert_eq!(
        state.get("status"),
        Some(&Value::Dict(vec![(
            Value::str("Published"),
            Value::Dict(vec![(Value::str("at"), Value::Int(3))])
        )]))
    );
    // u64::MAX does not fit an i64: a Python long.
    assert!(matches!(state.get("count"), Some(Value::BigInt(_))));
    assert_eq!(Folder::from_state(state).unwrap(), folder);
}

#[test]
fn references_are_written_in_form_a_and_found_by_the_scanner() {
    let record = encode_record(
        (Folder::MODULE, Folder::NAME),
        &sample().to_state().unwrap(),
    )
    .unwrap();
    // (oid 7, bbru.content.Folder) BINPERSID, record-format §6 rule 3, with the class
    // fetched from the memo entry P1 made for the record's own class (as Python does).
    assert!(record.starts_with(b"\x80\x03cbbru.content\nFolder\nq\x00."));
    let form_a = b"\x43\x08\x00\x00\x00\x00\x00\x00\x00\x07h\x00\x86\x51";
    assert!(record.windows(form_a.len()).any(|w| w == form_a));
    let mut refs = strong_references(&record).unwrap();
    refs.sort();
    assert_eq!(refs, vec![7, 9]);
    let (class, state) = decode_record(&record).unwrap();
    assert_eq!(class, Value::global("bbru.content", "Folder"));
    assert_eq!(Folder::from_state(state).unwrap(), sample());
}

#[test]
fn bare_oid_references_are_read_too() {
    // Form B, as Python writes a reference to a broken object.
    let state = Value::Dict(vec![(
        Value::str("target"),
        Value::PersistentRef(Box::new(Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0, 5]))),
    )]);
    #[derive(Deserialize)]
    struct Holder {
        target: PRef<Folder>,
    }
    let holder: Holder = from_value(state).unwrap();
    assert_eq!(holder.target.oid(), Oid(5));
}

#[test]
fn shape_mismatches_are_errors_not_panics() {
    let err =
        Folder::from_state(Value::Dict(vec![(Value::str("title"), Value::Int(1))])).unwrap_err();
    assert!(
        err.0.contains("expected") || err.0.contains("invalid type"),
        "{err}"
    );
    assert!(Folder::from_state(Value::List(vec![])).is_err());
    #[derive(Debug, Deserialize)]
    struct Holder {
        #[allow(dead_code)]
        target: PRef<Folder>,
    }
    // A weak reference is no strong reference.
    let weak = Value::PersistentRef(Box::new(Value::List(vec![
        Value::str("w"),
        Value::Tuple(vec![Value::Bytes(vec![0; 8])]),
    ])));
    assert!(from_value::<Holder>(Value::Dict(vec![(Value::str("target"), weak)])).is_err());
}

#[test]
fn prefs_serialize_symmetrically_in_other_formats() {
    let r: PRef<Folder> = PRef::from_oid(Oid(42));
    let json = serde_json::to_string(&r).unwrap();
    let back: PRef<Folder> = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    assert_eq!(to_value(&r).unwrap(), r.to_value());
}
