//! Fuzzes the ZEO wire codec with arbitrary peer bytes: the input is read as a stream of
//! frames (`parse_frame`), and each payload — and the whole input, unframed — goes through
//! both handshake parsers and both message decoders in both encodings.
//!
//! What must hold: nothing panics, overflows the stack or allocates beyond the input;
//! what the server side accepts the client side accepts too, identically; and every
//! decoded message can be encoded again in its encoding (msgpack re-decodes to the same
//! message, since msgpack decoding yields only tuples, str-keyed maps and plain scalars);
//! a message the typed layer reads as a `Call` is written back and read again to the same
//! call, and the typed callback and reply readers refuse what they do not take without
//! panicking.

#![no_main]

use libfuzzer_sys::fuzz_target;
use zeo::wire::{self, Call, Callback, Encoding, Message, TxnHeader, VoteReply};

/// Small, so the fuzzer also exercises the size refusal.
const FRAME_SIZE_MAX: usize = 1 << 20;

fn has_nan(v: &wire::Value) -> bool {
    use wire::Value;
    let mut pending = vec![v];
    while let Some(v) = pending.pop() {
        match v {
            Value::Float(f) if f.is_nan() => return true,
            Value::Tuple(items) | Value::List(items) => pending.extend(items),
            Value::Dict(pairs) => pending.extend(pairs.iter().flat_map(|(k, v)| [k, v])),
            _ => {}
        }
    }
    false
}

fn payload(p: &[u8]) {
    let _ = wire::parse_client_handshake(p);
    let _ = wire::parse_server_announcement(p);
    for enc in [Encoding::Pickle, Encoding::Msgpack] {
        let client_side = wire::decode(enc, p);
        if let Ok(msg) = wire::decode_from_client(enc, p) {
            let same = client_side
                .as_ref()
                .expect("the client side accepts what the server side does");
            if !has_nan(&msg.args) && !has_nan(&msg.msgid) {
                assert_eq!(same, &msg);
            }
            check(enc, msg);
        }
        if let Ok(msg) = client_side {
            if let Some((class_name, payload)) = msg.error_parts() {
                let _ = wire::parse_error(class_name, payload).to_string();
            }
            let _ = wire::encode(enc, &msg);
        }
    }
}

fn check(enc: Encoding, msg: Message) {
    let _ = (
        msg.is_async(),
        msg.is_error(),
        msg.is_heartbeat(),
        msg.positional_args(),
    );
    let bytes = wire::encode(enc, &msg);
    if enc == Encoding::Msgpack {
        let bytes = bytes.expect("a decoded msgpack message re-encodes");
        let again = wire::decode_from_client(enc, &bytes).expect("re-encoded message decodes");
        if !has_nan(&msg.args) && !has_nan(&msg.msgid) {
            assert_eq!(again, msg);
        }
    }
    typed(&msg);
    let _ = wire::simplify(msg.args);
}

/// The typed layer over a decoded message: calls round-trip, the readers never panic.
fn typed(msg: &Message) {
    if let Ok(call) = Call::decode(&msg.name, msg.args.clone()) {
        let name = call.method();
        let again = Call::decode(name, wire::Value::Tuple(call.clone().encode()))
            .expect("an encoded call decodes");
        // Compared as text: a NaN anywhere in the arguments is not equal to itself.
        assert_eq!(format!("{again:?}"), format!("{call:?}"));
        let _ = call.into_message(1);
    }
    let _ = Callback::decode(&msg.name, &msg.args);
    let _ = wire::read_load_reply(&msg.args);
    let _ = VoteReply::decode(&msg.args);
    let _ = TxnHeader::decode(&msg.args);
    let _ = wire::read_data_record_reply(&msg.args);
    let _ = wire::read_record_iternext_reply(&msg.args);
}

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some((range, consumed))) = wire::parse_frame(rest, FRAME_SIZE_MAX) {
        if let Some(p) = rest.get(range) {
            payload(p);
        }
        rest = rest.get(consumed..).unwrap_or_default();
    }
    payload(data);
});
