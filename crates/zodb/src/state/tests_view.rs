//! Unit tests of the in-place reading of states (`view_de.rs`): whatever it reads must
//! equal what the reading through the `Value` tree gives, and what it leaves to that
//! reading (`None`) must still read there.

use serde::{Deserialize, Serialize};
use zodb_pickle::{Value, decode_record, decode_record_view, encode, encode_record};
use zodb_storage::Oid;

use crate::{AnyRef, PRef, Persistent};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Mode {
    Plain,
    Timed(i64),
    Window { from: i64, to: i64 },
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
struct Page {
    title: String,
    size: u32,
    ratio: f64,
    words: Vec<String>,
    parent: Option<PRef<Page>>,
    any: Option<AnyRef>,
    modes: Vec<Mode>,
    pair: (i8, bool, Option<String>),
    #[serde(default)]
    missing: Vec<i64>,
}
crate::persistent!(Page, "bbru.test", "Page");

fn page() -> Page {
    Page {
        title: "Grüße".into(),
        size: 12,
        ratio: 0.25,
        words: vec!["a".into(), String::new()],
        parent: Some(PRef::from_oid(Oid(3))),
        any: Some(AnyRef::new(PRef::<Page>::from_oid(Oid(4)))),
        modes: vec![
            Mode::Plain,
            Mode::Timed(-5),
            Mode::Window { from: 1, to: 2 },
        ],
        pair: (-1, true, None),
        missing: vec![],
    }
}

/// Both readings of a record of `state`: (in place, through the tree).
fn both(state: &Value) -> (Option<Page>, Result<Page, super::StateError>) {
    let record = encode_record((Page::MODULE, Page::NAME), state).unwrap();
    let view = decode_record_view(&record).unwrap();
    assert_eq!(view.class(), Some((Page::MODULE, Page::NAME)));
    let in_place = Page::from_state_view(view.state());
    let (_, tree) = decode_record(&record).unwrap();
    (in_place, Page::from_state(tree))
}

fn set(state: &mut Value, key: &str, value: Value) {
    let Value::Dict(items) = state else {
        panic!("not a dict")
    };
    match items.iter_mut().find(|(k, _)| k.as_str() == Some(key)) {
        Some((_, v)) => *v = value,
        None => items.push((Value::str(key), value)),
    }
}

#[test]
fn a_typed_state_reads_in_place_as_through_the_tree() {
    let state = page().to_state().unwrap();
    let (in_place, tree) = both(&state);
    assert_eq!(in_place, Some(page()), "the usual shapes read in place");
    assert_eq!(tree.unwrap(), page());
}

#[test]
fn python_shapes_read_in_place_as_through_the_tree() {
    let mut state = page().to_state().unwrap();
    // An int where a float is expected, an unknown attribute with a value the fast path
    // must walk, a Python 2 str oid and a form B reference.
    set(&mut state, "ratio", Value::Int(2));
    set(
        &mut state,
        "extra",
        Value::List(vec![Value::Tuple(vec![]), Value::Bytes(vec![1])]),
    );
    set(
        &mut state,
        "parent",
        Value::PersistentRef(Box::new(Value::Tuple(vec![
            Value::str("\0\0\0\0\0\0\0\x09"),
            Value::Tuple(vec![Value::str("bbru.test"), Value::str("Page")]),
        ]))),
    );
    set(
        &mut state,
        "any",
        Value::PersistentRef(Box::new(Value::Bytes(vec![0, 0, 0, 0, 0, 0, 0, 8]))),
    );
    let (in_place, tree) = both(&state);
    let tree = tree.unwrap();
    assert_eq!(tree.ratio, 2.0);
    assert_eq!(tree.parent, Some(PRef::from_oid(Oid(9))));
    assert_eq!(tree.any, Some(AnyRef::untyped(Oid(8))));
    assert_eq!(in_place, Some(tree));
}

#[test]
fn shapes_left_to_the_tree_still_read_there() {
    // A big int, a set and a repeated key are the tree's to read (Python's semantics).
    let mut big = page().to_state().unwrap();
    set(
        &mut big,
        "missing",
        Value::List(vec![Value::BigInt(vec![1; 9])]),
    );
    let mut with_set = page().to_state().unwrap();
    set(&mut with_set, "words", Value::Set(vec![Value::str("w")]));
    let (in_place, tree) = both(&big);
    assert_eq!(in_place, None);
    assert!(tree.is_err(), "nine bytes do not fit an i64");
    let (in_place, tree) = both(&with_set);
    assert_eq!(in_place, None);
    assert_eq!(tree.unwrap().words, ["w"]);
    // A dict that sets one key twice: the last value wins, as in Python.
    let page_state = page().to_state().unwrap();
    let Value::Dict(mut items) = page_state else {
        panic!()
    };
    items.push((Value::str("size"), Value::Int(99)));
    let pickle = encode(&Value::Dict(items)).unwrap();
    let mut record = encode_record((Page::MODULE, Page::NAME), &Value::None).unwrap();
    record.truncate(record.len() - 4); // P2 of None: PROTO 3, NONE, STOP.
    record.extend_from_slice(&pickle);
    let view = decode_record_view(&record).unwrap();
    assert_eq!(Page::from_state_view(view.state()), None);
    let (_, tree) = decode_record(&record).unwrap();
    assert_eq!(Page::from_state(tree).unwrap().size, 99);
}

#[test]
fn mismatches_read_in_place_as_nothing() {
    let mut state = page().to_state().unwrap();
    set(&mut state, "title", Value::Int(1));
    let (in_place, tree) = both(&state);
    assert_eq!(in_place, None);
    assert!(tree.is_err());
    let mut weak = page().to_state().unwrap();
    set(
        &mut weak,
        "parent",
        Value::PersistentRef(Box::new(Value::List(vec![
            Value::str("w"),
            Value::Tuple(vec![Value::Bytes(vec![0; 8])]),
        ]))),
    );
    let (in_place, tree) = both(&weak);
    assert_eq!(in_place, None);
    assert!(tree.is_err());
}
