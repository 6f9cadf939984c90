//! Fuzzes the ZEO wire codec with arbitrary peer bytes: the input is read as a stream of
//! frames (`parse_frame`), and each payload — and the whole input, unframed — goes through
//! both handshake parsers and both message decoders in both encodings.
//!
//! What must hold: nothing panics, overflows the stack or allocates beyond the input;
//! what the server side accepts the client side accepts too, identically; and every
//! decoded message can be encoded again in its encoding (msgpack re-decodes to the same
//! message, since msgpack decoding yields only tuples, str-keyed maps and plain scalars).

#![no_main]

use libfuzzer_sys::fuzz_target;
use zeo::wire::{self, Encoding, Message};

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
    let _ = wire::simplify(msg.args);
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
