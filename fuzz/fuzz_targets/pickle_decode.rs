//! Fuzz target for the record codec (`zodb-pickle`): arbitrary bytes as a single pickle,
//! as a record (P1 ‖ P2) and through the reference scanner.
//!
//! Besides "never panics, never runs out of memory", it checks the invariants other
//! crates rely on: whatever decodes re-encodes and decodes to the same bytes again (the
//! encoder can write every value the decoder returns), and when `scan_references` accepts
//! a record, `strong_references` returns exactly its strong part.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zodb_pickle::{
    Reference, class_of, decode, decode_record, encode, scan_references, strong_references,
};

fuzz_target!(|data: &[u8]| {
    if let Ok((value, used)) = decode(data) {
        assert!(used <= data.len());
        let bytes = encode(&value).expect("decoded values are encodable");
        let (again, _) = decode(&bytes).expect("encoded values decode");
        // Compared as bytes: a NaN float is unequal to itself as a value.
        assert_eq!(encode(&again).expect("still encodable"), bytes);
    }
    if let Ok((class, state)) = decode_record(data) {
        encode(&class).expect("decoded P1 is encodable");
        encode(&state).expect("decoded P2 is encodable");
    }
    let scanned = scan_references(data);
    let strong = strong_references(data);
    if let Ok(refs) = scanned {
        let expected: Vec<u64> = refs
            .iter()
            .filter_map(|r| match r {
                Reference::Strong { oid, .. } => Some(*oid),
                _ => None,
            })
            .collect();
        assert_eq!(strong.ok(), Some(expected));
    }
    let _ = class_of(data);
});
