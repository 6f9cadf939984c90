//! Unit tests of the direct pickler (`pickler.rs`): its records are the encoder's, byte
//! for byte, and what it leaves to the encoder (`None`) is what it cannot write the same.

use std::collections::BTreeMap;

use serde::Serialize;
use zodb_pickle::{encode_record, strong_references};
use zodb_storage::Oid;

use super::{to_record, to_value};
use crate::{AnyRef, PRef};

#[derive(Debug, Clone, Serialize)]
enum Shape {
    Dot,
    Line(i64),
    Pair(i32, String),
    Box { w: f64, h: f32 },
}

#[derive(Clone, Serialize, serde::Deserialize)]
struct Other;
crate::persistent!(Other, "bbru.test", "Other");

#[derive(Serialize)]
struct Unit;

#[derive(Serialize)]
struct Newtype(String);

/// Tuples of every length the encoder writes differently.
type Tuples = ((), (i8,), (i8, i8), (i8, i8, i8), (i8, i8, i8, i8));

#[derive(Serialize)]
struct Everything {
    text: String,
    small: u8,
    medium: u16,
    word: i32,
    long: i64,
    negative: i64,
    unsigned: u64,
    float: f64,
    flag: bool,
    letter: char,
    nothing: Option<String>,
    something: Option<i64>,
    unit: (),
    unit_struct: Unit,
    newtype: Newtype,
    #[serde(with = "serde_bytes_like")]
    bytes: Vec<u8>,
    #[serde(with = "serde_bytes_like")]
    long_bytes: Vec<u8>,
    tuples: Tuples,
    shapes: Vec<Shape>,
    map: BTreeMap<String, Vec<i64>>,
    tuple_keys: BTreeMap<(i64, String), bool>,
    lists: (Vec<i64>, Vec<i64>, Vec<i64>, Vec<i64>),
    refs: Vec<PRef<Other>>,
    any: Vec<AnyRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    skipped: Option<i64>,
}

mod serde_bytes_like {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }
}

fn everything() -> Everything {
    let other = |oid| PRef::<Other>::from_oid(Oid(oid));
    Everything {
        text: "Grüße\n".into(),
        small: 255,
        medium: 65535,
        word: -70000,
        long: 1 << 40,
        negative: i64::MIN,
        unsigned: i64::MAX as u64,
        float: -0.5,
        flag: true,
        letter: 'é',
        nothing: None,
        something: Some(3),
        unit: (),
        unit_struct: Unit,
        newtype: Newtype("n".into()),
        bytes: vec![0, 1, 2],
        long_bytes: vec![7; 300],
        tuples: ((), (1,), (1, 2), (1, 2, 3), (1, 2, 3, 4)),
        shapes: vec![
            Shape::Dot,
            Shape::Line(5),
            Shape::Pair(-1, "p".into()),
            Shape::Box { w: 1.0, h: 2.0 },
        ],
        map: [("a".to_string(), vec![1]), ("b".to_string(), vec![])].into(),
        tuple_keys: [((1, "x".to_string()), true)].into(),
        lists: (
            vec![],
            vec![1],
            (0..1001).collect(),
            (0..2001).map(|i| i * 70_000).collect(),
        ),
        refs: vec![other(5), other(6), other(5)],
        any: vec![
            AnyRef::untyped(Oid(9)),
            AnyRef::new(PRef::<crate::PersistentMapping>::from_oid(Oid(10))),
            AnyRef::new(other(11)),
            AnyRef::new(PRef::<crate::PersistentMapping>::from_oid(Oid(12))),
        ],
        skipped: None,
    }
}

/// The record the long way writes.
fn long_way<T: Serialize>(class: (&str, &str), value: &T) -> Vec<u8> {
    encode_record(class, &to_value(value).unwrap()).unwrap()
}

#[test]
fn direct_records_are_the_encoders_byte_for_byte() {
    let value = everything();
    for class in [("bbru.test", "Everything"), ("bbru.test", "Other")] {
        let mut refs = Vec::new();
        let direct = to_record(class, &value, Some(&mut refs)).expect("written directly");
        assert_eq!(direct, long_way(class, &value), "class {class:?}");
        let mut scanned = strong_references(&direct).unwrap();
        scanned.sort();
        let mut refs: Vec<u64> = refs.iter().map(|o| o.0).collect();
        refs.sort();
        assert_eq!(refs, scanned);
    }
    // Classes memoized in the order they are first written, whichever repeats first.
    let mixed = vec![
        AnyRef::new(PRef::<crate::PersistentMapping>::from_oid(Oid(1))),
        AnyRef::new(PRef::<Other>::from_oid(Oid(2))),
        AnyRef::new(PRef::<Other>::from_oid(Oid(3))),
        AnyRef::new(PRef::<crate::PersistentMapping>::from_oid(Oid(4))),
    ];
    let class = ("bbru.test", "Other");
    assert_eq!(
        to_record(class, &mixed, None).unwrap(),
        long_way(class, &mixed)
    );
}

#[test]
fn what_the_encoder_writes_otherwise_is_left_to_it() {
    let class = ("bbru.test", "Other");
    // An int beyond i64, a sequence of unknown length, a list as a dict key.
    assert_eq!(to_record(class, &u64::MAX, None), None);
    struct Unsized;
    impl Serialize for Unsized {
        fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq((0..3).filter(|i| i % 2 == 0))
        }
    }
    assert_eq!(to_record(class, &Unsized, None), None);
    let list_key: BTreeMap<Vec<i64>, i64> = [(vec![1], 1)].into();
    assert_eq!(to_record(class, &list_key, None), None);
    assert!(encode_record(class, &to_value(&list_key).unwrap()).is_err());
    // A class name the encoder refuses.
    assert_eq!(to_record(("bad\nmodule", "X"), &1, None), None);
}
