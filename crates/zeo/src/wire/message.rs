//! The handshake (spec §1.2) and the `(msgid, flag, name, args)` message (spec §2.1), in
//! both encodings: what a frame's payload means.
//!
//! Handshake payloads (each one frame):
//!
//! ```text
//! server → client   "Z5" (5a 35) or "M5" (4d 35): encoding letter + protocol version
//! client → server   the letter it chose + "5", or exactly "ruok" (status probe)
//! ```
//!
//! Every later payload is one encoded 4-tuple:
//!
//! ```text
//! kind                   msgid             flag    name          args
//! call (client)          int >= 1 | (oid, tid) for loadBefore
//!                                          False   method        tuple
//! async call (client)    0                 True    method        tuple
//! heartbeat (client)     -1                0       ".reply"      None
//! reply (server)         echoed as sent    0       ".reply"      the value
//! error reply (server)   echoed as sent    2       ".reply"      (class_name, args or __dict__)
//! callback (server)      0                 True    callback      tuple
//! ```
//!
//! The flag is a Python `bool` in calls and an `int` in replies, and both peers only test
//! its truth, so [`Flag`] keeps which one was sent and [`encode`] writes exactly what
//! Python writes.  `Z` payloads are protocol 3 pickles (`super::pickle`), `M` payloads
//! msgpack (`super::msgpack`); a decoded message must fill its whole payload.

use zodb_pickle::Value;

use super::error::WireError;
use super::flat_pickle;
use super::frame;
use super::msgpack;
use super::pickle::{self, Globals};

/// The name every reply (and the client's heartbeat) carries.
pub const REPLY: &str = ".reply";

/// The protocol version both sides speak: ZEO 5 (also what ZEO 6 speaks).
pub const PROTOCOL_VERSION: &[u8] = b"5";

/// The client's status probe instead of a protocol reply.
pub const RUOK: &[u8] = b"ruok";

/// How messages are encoded on one connection, named by the handshake's first letter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// `Z`: zodbpickle protocol 3 pickles.
    Pickle,
    /// `M`: msgpack (`use_bin_type=True`).
    Msgpack,
}

impl Encoding {
    /// The handshake letter: `b'Z'` or `b'M'`.
    pub const fn letter(self) -> u8 {
        match self {
            Encoding::Pickle => b'Z',
            Encoding::Msgpack => b'M',
        }
    }

    /// The encoding a handshake letter names.
    pub const fn from_letter(letter: u8) -> Option<Encoding> {
        match letter {
            b'Z' => Some(Encoding::Pickle),
            b'M' => Some(Encoding::Msgpack),
            _ => None,
        }
    }
}

/// The handshake payload naming `enc`: `b"Z5"` or `b"M5"`.  The server announces it; the
/// client answers with it (spec §1.2).
pub fn handshake_announcement(enc: Encoding) -> &'static [u8] {
    match enc {
        Encoding::Pickle => b"Z5",
        Encoding::Msgpack => b"M5",
    }
}

/// What a client answered to the server's announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Handshake {
    /// A protocol: the server uses this (the client's) encoding both ways from now on,
    /// whatever it announced (spec §1.2, step 3).
    Protocol(Encoding),
    /// `ruok`: send one frame of JSON status and close.
    Ruok,
}

fn bad_handshake(payload: &[u8]) -> WireError {
    WireError::BadHandshake(payload.iter().copied().take(16).collect())
}

/// Reads the client's handshake frame, as the Python server does: `ruok`, or a letter
/// (`Z`/`M`) followed by exactly `5` (`string[1:] == b"5"`).
pub fn parse_client_handshake(payload: &[u8]) -> Result<Handshake, WireError> {
    if payload == RUOK {
        return Ok(Handshake::Ruok);
    }
    match payload.split_first() {
        Some((&letter, PROTOCOL_VERSION)) => Encoding::from_letter(letter)
            .map(Handshake::Protocol)
            .ok_or_else(|| bad_handshake(payload)),
        _ => Err(bad_handshake(payload)),
    }
}

/// Reads the server's announcement, for our client: `Z5` or `M5` only.
///
/// (Python's client computes `min(version, b"5")` bytewise, so it would also take e.g.
/// `Z6`; no ZEO server ever announced anything but `5` since 5.0.)
pub fn parse_server_announcement(payload: &[u8]) -> Result<Encoding, WireError> {
    match payload.split_first() {
        Some((&letter, PROTOCOL_VERSION)) => {
            Encoding::from_letter(letter).ok_or_else(|| bad_handshake(payload))
        }
        _ => Err(bad_handshake(payload)),
    }
}

/// A message's second element, as sent: calls and callbacks carry a `bool`, replies an
/// `int` (0 normal, 2 error).  Peers only test its truth.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flag {
    /// Python `True`/`False` (calls: `False`, async calls and callbacks: `True`).
    Bool(bool),
    /// Python int (replies and the heartbeat: `0`; error replies: `2`).
    Int(i64),
}

impl Flag {
    /// A synchronous call's flag: `False`.
    pub const CALL: Flag = Flag::Bool(false);
    /// A one-way call's or callback's flag: `True`.
    pub const ASYNC: Flag = Flag::Bool(true);
    /// A normal reply's (and the heartbeat's) flag: `0`.
    pub const REPLY: Flag = Flag::Int(0);
    /// An error reply's flag: `2`.
    pub const ERROR: Flag = Flag::Int(2);

    /// Python's truth value of the flag.
    pub const fn is_set(self) -> bool {
        match self {
            Flag::Bool(b) => b,
            Flag::Int(i) => i != 0,
        }
    }

    fn to_value(self) -> Value {
        match self {
            Flag::Bool(b) => Value::Bool(b),
            Flag::Int(i) => Value::Int(i),
        }
    }
}

/// One ZEO message: `(msgid, flag, name, args)`.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// The call's id, echoed by its reply with identical structure: an int (0 for one-way
    /// messages, -1 for the heartbeat) or, for `loadBefore`, the tuple `(oid, tid)`.
    pub msgid: Value,
    /// `False`/`True` in calls, `0`/`2` in replies.
    pub flag: Flag,
    /// The method or callback name, or [`REPLY`].
    pub name: String,
    /// The positional arguments (a tuple) of a call; a reply's value; an error reply's
    /// `(class_name, payload)`.
    pub args: Value,
}

impl Message {
    /// A synchronous call `(id, False, name, args)`; `id` counts from 1 per connection.
    pub fn call(id: i64, name: impl Into<String>, args: Vec<Value>) -> Message {
        Message::call_with_msgid(Value::Int(id), name, args)
    }

    /// A synchronous call with a structured msgid: `loadBefore` uses the tuple
    /// `(oid, tid)` so identical outstanding loads share one reply.
    pub fn call_with_msgid(msgid: Value, name: impl Into<String>, args: Vec<Value>) -> Message {
        Message {
            msgid,
            flag: Flag::CALL,
            name: name.into(),
            args: Value::Tuple(args),
        }
    }

    /// A one-way call `(0, True, name, args)`; nothing is replied.
    pub fn async_call(name: impl Into<String>, args: Vec<Value>) -> Message {
        Message {
            msgid: Value::Int(0),
            flag: Flag::ASYNC,
            name: name.into(),
            args: Value::Tuple(args),
        }
    }

    /// A server→client callback `(0, True, name, args)` (always one-way).
    pub fn callback(name: impl Into<String>, args: Vec<Value>) -> Message {
        Message::async_call(name, args)
    }

    /// A normal reply `(msgid, 0, '.reply', value)`; `msgid` is the call's, unchanged.
    pub fn reply(msgid: Value, value: Value) -> Message {
        Message {
            msgid,
            flag: Flag::REPLY,
            name: REPLY.to_owned(),
            args: value,
        }
    }

    /// An error reply `(msgid, 2, '.reply', (class_name, payload))`: `class_name` is the
    /// Python exception's `module.qualname`, `payload` its `__dict__` if non-empty else
    /// its args tuple (spec §2.4; see `super::exceptions`).
    pub fn error(msgid: Value, class_name: &str, payload: Value) -> Message {
        Message {
            msgid,
            flag: Flag::ERROR,
            name: REPLY.to_owned(),
            args: Value::Tuple(vec![Value::str(class_name), payload]),
        }
    }

    /// The client's keep-alive `(-1, 0, '.reply', None)`; the server ignores it.
    pub fn heartbeat() -> Message {
        Message {
            msgid: Value::Int(-1),
            flag: Flag::REPLY,
            name: REPLY.to_owned(),
            args: Value::None,
        }
    }

    /// Whether the name is `.reply` (a reply, an error reply, or the heartbeat).
    pub fn is_reply(&self) -> bool {
        self.name == REPLY
    }

    /// Whether the server must ignore this frame: msgid `-1`, whatever else it holds
    /// (the Python server tests only that).
    pub fn is_heartbeat(&self) -> bool {
        self.msgid == Value::Int(-1)
    }

    /// Whether this is a one-way call or callback (not a reply; flag true): the receiver
    /// must not reply.
    pub fn is_async(&self) -> bool {
        !self.is_reply() && self.flag.is_set()
    }

    /// Whether this is an error reply (a reply whose flag is true: the Python client
    /// treats any true flag on a `.reply` as an error).
    pub fn is_error(&self) -> bool {
        self.is_reply() && self.flag.is_set()
    }

    /// An error reply's `(class_name, payload)`; `None` for anything else or a malformed
    /// one.
    pub fn error_parts(&self) -> Option<(&str, &Value)> {
        if !self.is_error() {
            return None;
        }
        match &self.args {
            Value::Tuple(parts) | Value::List(parts) => match parts.as_slice() {
                [Value::Str(class_name), payload] => Some((class_name, payload)),
                _ => None,
            },
            _ => None,
        }
    }

    /// A call's positional arguments (`args` is a tuple, or a list, which Python's `*args`
    /// takes too); `None` when `args` is no sequence.
    pub fn positional_args(&self) -> Option<&[Value]> {
        match &self.args {
            Value::Tuple(items) | Value::List(items) => Some(items),
            _ => None,
        }
    }
}

/// Encodes `msg` as a frame payload (without the length prefix), byte for byte as Python
/// would for the same values.
pub fn encode(enc: Encoding, msg: &Message) -> Result<Vec<u8>, WireError> {
    match enc {
        Encoding::Pickle => pickle_message(Vec::new(), msg),
        Encoding::Msgpack => {
            // 94 <msgid> <flag> <name> <args>
            let mut out = Vec::new();
            msgpack_message(&mut out, msg)?;
            Ok(out)
        }
    }
}

/// Encodes `msg` as a whole frame: the 4-byte length, then [`encode`]'s payload.
pub fn encode_framed(enc: Encoding, msg: &Message) -> Result<Vec<u8>, WireError> {
    // The payload is written after room for its length, not copied behind it.
    let mut out;
    match enc {
        Encoding::Pickle => {
            let flag = msg.flag.to_value();
            // Most messages are plain tuples: written directly (the same bytes), into
            // one allocation of the right size.
            match flat_pickle::message_size(&msg.msgid, &flag, &msg.name, &msg.args) {
                Some(n) => {
                    out = Vec::with_capacity(frame::LENGTH_PREFIX_SIZE + n);
                    out.extend_from_slice(&[0; frame::LENGTH_PREFIX_SIZE]);
                    flat_pickle::write_message(&mut out, &msg.msgid, &flag, &msg.name, &msg.args);
                }
                None => out = pickle_message(vec![0; frame::LENGTH_PREFIX_SIZE], msg)?,
            }
        }
        Encoding::Msgpack => {
            out = vec![0; frame::LENGTH_PREFIX_SIZE];
            msgpack_message(&mut out, msg)?;
        }
    }
    let prefix = frame::length_prefix(out.len().saturating_sub(frame::LENGTH_PREFIX_SIZE))?;
    if let Some(head) = out.get_mut(..frame::LENGTH_PREFIX_SIZE) {
        head.copy_from_slice(&prefix);
    }
    Ok(out)
}

/// Appends `msg` pickled to `out`: `80 03 28 <msgid> <flag> <name> <args> 74 2e`, the
/// 4-tuple encoded from its parts (the arguments, which may hold a whole record, are not
/// copied into a tuple first).
fn pickle_message(mut out: Vec<u8>, msg: &Message) -> Result<Vec<u8>, WireError> {
    let flag = msg.flag.to_value();
    // Most messages are plain tuples: written directly (the same bytes).
    if let Some(n) = flat_pickle::message_size(&msg.msgid, &flag, &msg.name, &msg.args) {
        out.reserve(n);
        flat_pickle::write_message(&mut out, &msg.msgid, &flag, &msg.name, &msg.args);
        return Ok(out);
    }
    let name = Value::str(msg.name.as_str());
    Ok(zodb_pickle::encode_tuple_into(
        out,
        &[&msg.msgid, &flag, &name, &msg.args],
    )?)
}

fn msgpack_message(out: &mut Vec<u8>, msg: &Message) -> Result<(), WireError> {
    out.push(0x94); // fixarray of 4
    msgpack::encode_value(out, &msg.msgid, 1)?;
    msgpack::encode_value(out, &msg.flag.to_value(), 1)?;
    msgpack::encode_value(out, &Value::str(msg.name.as_str()), 1)?;
    msgpack::encode_value(out, &msg.args, 1)
}

/// Decodes a payload received by a client (from a server): any pickled global is kept as
/// an opaque value (error replies may hold `ZODB.POSException._recon` instances).
pub fn decode(enc: Encoding, payload: &[u8]) -> Result<Message, WireError> {
    decode_with(enc, payload, Globals::Any)
}

/// Decodes a payload received by the server (from a client): pickled globals must come
/// from the modules of `SERVER_GLOBAL_MODULES`, as Python's `server_find_global` demands.
pub fn decode_from_client(enc: Encoding, payload: &[u8]) -> Result<Message, WireError> {
    decode_with(enc, payload, Globals::ServerWhitelist)
}

fn decode_with(enc: Encoding, payload: &[u8], globals: Globals) -> Result<Message, WireError> {
    let value = match enc {
        Encoding::Pickle => pickle::decode_value(payload, globals)?,
        // msgpack has no globals.
        Encoding::Msgpack => msgpack::decode_value(payload)?,
    };
    message_from_value(value)
}

/// Splits a decoded value into a message: a 4-item sequence (Python unpacks any iterable
/// of 4) with a bool/int flag and a str name.
fn message_from_value(value: Value) -> Result<Message, WireError> {
    let items = match value {
        Value::Tuple(items) | Value::List(items) => items,
        _ => return Err(WireError::NotAMessage("not a tuple")),
    };
    let Ok([msgid, flag, name, args]) = <[Value; 4]>::try_from(items) else {
        return Err(WireError::NotAMessage("not 4 items"));
    };
    let flag = match flag {
        Value::Bool(b) => Flag::Bool(b),
        Value::Int(i) => Flag::Int(i),
        _ => return Err(WireError::NotAMessage("flag is neither bool nor int")),
    };
    let Value::Str(name) = name else {
        return Err(WireError::NotAMessage("name is not a str"));
    };
    Ok(Message {
        msgid,
        flag,
        name,
        args,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;
    use crate::limits::FRAME_SIZE_MAX_DEFAULT;
    use crate::wire::parse_frame;
    use proptest::prelude::*;

    const OID: [u8; 8] = [0, 0, 0, 0, 0, 0, 0, 1];
    const TID: [u8; 8] = [0x04, 0x0d, 0x3c, 0x11, 0xe4, 0xb3, 0x0d, 0xdd];
    const SERIAL: [u8; 8] = [0x03, 0xff, 0, 0, 0, 0, 0, 0xaa];
    const POS_KEY_ERROR: &str = "ZODB.POSException.POSKeyError";

    fn b(bytes: &[u8]) -> Value {
        Value::Bytes(bytes.to_vec())
    }

    fn oid_tid() -> Value {
        Value::Tuple(vec![b(&OID), b(&TID)])
    }

    /// A whole frame from spec-style hex (spaces ignored), split into its payload.
    fn frame_payload(hex_frame: &str) -> Vec<u8> {
        let wire = hex::decode(hex_frame.replace(' ', "")).unwrap();
        let (range, consumed) = parse_frame(&wire, FRAME_SIZE_MAX_DEFAULT).unwrap().unwrap();
        assert_eq!(consumed, wire.len(), "frame length of {hex_frame}");
        wire[range].to_vec()
    }

    /// Decodes the observed frame to `want` (on both sides where allowed), and checks
    /// encoding `want` reproduces the frame exactly.
    fn observed(enc: Encoding, hex_frame: &str, want: &Message) {
        let payload = frame_payload(hex_frame);
        assert_eq!(decode(enc, &payload).as_ref(), Ok(want), "{hex_frame}");
        assert_eq!(decode_from_client(enc, &payload).as_ref(), Ok(want));
        assert_eq!(
            hex::encode(encode(enc, want).unwrap()),
            hex::encode(&payload)
        );
        let framed = encode_framed(enc, want).unwrap();
        assert_eq!(hex::encode(framed), hex_frame.replace(' ', ""));
    }

    // Spec §2.2 [obs] examples, with <oid> = OID, <tid> = TID, <serial> = SERIAL; each
    // also re-encoded by Python's `ZEO.asyncio.marshal.encoder(b'Z')` to the same bytes.

    #[test]
    fn pickle_register_call() {
        observed(
            Encoding::Pickle,
            "0000001e 8003 28 4b01 89 58 08000000 7265676973746572 58 01000000 31 4b00 86 74 2e",
            &Message::call(1, "register", vec![Value::str("1"), Value::Int(0)]),
        );
    }

    #[test]
    fn pickle_reply() {
        observed(
            Encoding::Pickle,
            "0000001e 8003 28 4b01 4b00 58 06000000 2e7265706c79 43 08 0000000000000000 74 2e",
            &Message::reply(Value::Int(1), b(&[0; 8])),
        );
    }

    #[test]
    fn pickle_async_storea() {
        // The spec prints the length as 00000033; the bytes it shows (and Python) make 0x34.
        let msg = Message::async_call(
            "storea",
            vec![b(&OID), b(&SERIAL), b(b"L"), Value::Int(139654468238608)],
        );
        observed(
            Encoding::Pickle,
            "00000034 8003 28 4b00 88 58 06000000 73746f726561 28 43 08 0000000000000001 \
             43 08 03ff0000000000aa 43 01 4c 8a 06 107df8d6037f 74 74 2e",
            &msg,
        );
        assert!(msg.is_async() && !msg.is_reply());
    }

    #[test]
    fn pickle_load_before_tuple_msgid() {
        let msg = Message::call_with_msgid(oid_tid(), "loadBefore", vec![b(&OID), b(&TID)]);
        observed(
            Encoding::Pickle,
            "0000003f 8003 28 43 08 0000000000000001 43 08 040d3c11e4b30ddd 86 89 \
             58 0a000000 6c6f61644265666f7265 43 08 0000000000000001 43 08 040d3c11e4b30ddd \
             86 74 2e",
            &msg,
        );
        // The reply echoes the tuple msgid as a tuple.
        let reply = Message::reply(msg.msgid.clone(), Value::None);
        let back = decode(Encoding::Pickle, &encode(Encoding::Pickle, &reply).unwrap()).unwrap();
        assert_eq!(back.msgid, oid_tid());
    }

    #[test]
    fn pickle_heartbeat() {
        let hb = Message::heartbeat();
        observed(
            Encoding::Pickle,
            "00000018 8003 28 4a ffffffff 4b00 58 06000000 2e7265706c79 4e 74 2e",
            &hb,
        );
        assert!(hb.is_heartbeat() && hb.is_reply() && !hb.is_error() && !hb.is_async());
    }

    #[test]
    fn pickle_invalidate_transaction_callback() {
        observed(
            Encoding::Pickle,
            "00000039 8003 28 4b00 88 58 15000000 696e76616c69646174655472616e73616374696f6e \
             43 08 040d3c11e4b30ddd 5d 43 08 0000000000000001 61 86 74 2e",
            &Message::callback(
                "invalidateTransaction",
                vec![b(&TID), Value::List(vec![b(&OID)])],
            ),
        );
    }

    #[test]
    fn pickle_pos_key_error_reply() {
        let msg = Message::error(oid_tid(), POS_KEY_ERROR, Value::Tuple(vec![b(&OID)]));
        observed(
            Encoding::Pickle,
            "00000055 8003 28 43 08 0000000000000001 43 08 040d3c11e4b30ddd 86 4b 02 \
             58 06000000 2e7265706c79 58 1d000000 \
             5a4f44422e504f53457863657074696f6e2e504f534b65794572726f72 \
             43 08 0000000000000001 85 86 74 2e",
            &msg,
        );
        assert!(msg.is_error());
        assert_eq!(
            msg.error_parts(),
            Some((POS_KEY_ERROR, &Value::Tuple(vec![b(&OID)])))
        );
    }

    // Spec §2.3 [obs] examples (msgpack), also checked against msgpack-python 1.2.4.

    #[test]
    fn msgpack_register_call() {
        observed(
            Encoding::Msgpack,
            "00000010 94 01 c2 a8 7265676973746572 92 a1 31 00",
            &Message::call(1, "register", vec![Value::str("1"), Value::Int(0)]),
        );
    }

    #[test]
    fn msgpack_reply() {
        observed(
            Encoding::Msgpack,
            "00000014 94 01 00 a6 2e7265706c79 c4 08 0000000000000000",
            &Message::reply(Value::Int(1), b(&[0; 8])),
        );
    }

    #[test]
    fn msgpack_tpc_begin() {
        // tpc_begin(id, user, description, extension, tid, status): the txn id (Python
        // `id()`) is a uint64 `cf`, user/description bytes, extension a map.
        observed(
            Encoding::Msgpack,
            "00000038 94 00 c3 a9 7470635f626567696e 96 cf 00007feb101bca90 c4 00 \
             c4 19 696e697469616c206461746162617365206372656174696f6e 80 c0 a1 20",
            &Message::async_call(
                "tpc_begin",
                vec![
                    Value::Int(0x7feb_101b_ca90),
                    b(b""),
                    b(b"initial database creation"),
                    Value::Dict(vec![]),
                    Value::None,
                    Value::str(" "),
                ],
            ),
        );
    }

    #[test]
    fn msgpack_heartbeat() {
        observed(
            Encoding::Msgpack,
            "0000000b 94 ff 00 a6 2e7265706c79 c0",
            &Message::heartbeat(),
        );
    }

    #[test]
    fn msgpack_pos_key_error_reply() {
        observed(
            Encoding::Msgpack,
            "00000048 94 92 c4 08 0000000000000001 c4 08 040d3c11e4b30ddd 02 a6 2e7265706c79 \
             92 bd 5a4f44422e504f53457863657074696f6e2e504f534b65794572726f72 \
             91 c4 08 0000000000000001",
            &Message::error(oid_tid(), POS_KEY_ERROR, Value::Tuple(vec![b(&OID)])),
        );
    }

    #[test]
    fn msgpack_lists_decode_as_tuples() {
        // A server's `new_oids` list arrives as a tuple (use_list=False).
        let msg = Message::reply(Value::Int(3), Value::List(vec![b(&OID)]));
        let back = decode(Encoding::Msgpack, &encode(Encoding::Msgpack, &msg).unwrap()).unwrap();
        assert_eq!(back.args, Value::Tuple(vec![b(&OID)]));
    }

    #[test]
    fn flags_bool_and_int() {
        // A Python-2-era or hand-made peer could send an int flag on a call, or a bool on
        // a reply; only truth matters.
        let mut msg = Message::call(5, "lastTransaction", vec![]);
        msg.flag = Flag::Int(1);
        let back = decode(Encoding::Pickle, &encode(Encoding::Pickle, &msg).unwrap()).unwrap();
        assert_eq!(back.flag, Flag::Int(1));
        assert!(back.is_async());
        let mut reply = Message::reply(Value::Int(5), Value::None);
        reply.flag = Flag::Bool(true);
        assert!(reply.is_error());
        assert!(!Flag::REPLY.is_set() && Flag::ERROR.is_set() && !Flag::CALL.is_set());
    }

    #[test]
    fn not_a_message() {
        let cases: Vec<Value> = vec![
            Value::Int(1),
            Value::Tuple(vec![Value::Int(1), Value::Bool(false), Value::str("x")]),
            Value::Tuple(vec![
                Value::Int(1),
                Value::None,
                Value::str("x"),
                Value::None,
            ]),
            Value::Tuple(vec![
                Value::Int(1),
                Value::Bool(false),
                b(b"x"),
                Value::None,
            ]),
        ];
        for v in cases {
            let payload = zodb_pickle::encode(&v).unwrap();
            assert!(matches!(
                decode(Encoding::Pickle, &payload),
                Err(WireError::NotAMessage(_))
            ));
        }
        // A list of 4 is unpacked by Python as well.
        let list = Value::List(vec![
            Value::Int(1),
            Value::Bool(false),
            Value::str("x"),
            Value::None,
        ]);
        let payload = zodb_pickle::encode(&list).unwrap();
        assert_eq!(decode(Encoding::Pickle, &payload).unwrap().name, "x");
    }

    #[test]
    fn client_side_tolerates_globals_server_side_does_not() {
        // An undo error reply from a Python server carries _recon instances.
        let recon = Value::Reduce {
            callable: Box::new(Value::global("ZODB.POSException", "_recon")),
            args: Box::new(Value::Tuple(vec![
                Value::global("ZODB.POSException", "UndoError"),
                Value::Dict(vec![(Value::str("_reason"), Value::str("nope"))]),
            ])),
        };
        let msg = Message::error(
            Value::Int(9),
            "ZODB.POSException.MultipleUndoErrors",
            Value::Dict(vec![(
                Value::str("_errs"),
                Value::List(vec![Value::Tuple(vec![b(&OID), recon])]),
            )]),
        );
        let payload = encode(Encoding::Pickle, &msg).unwrap();
        assert_eq!(decode(Encoding::Pickle, &payload), Ok(msg));
        assert!(matches!(
            decode_from_client(Encoding::Pickle, &payload),
            Err(WireError::ForbiddenGlobal { .. })
        ));
    }

    #[test]
    fn handshakes() {
        assert_eq!(handshake_announcement(Encoding::Pickle), b"Z5");
        assert_eq!(handshake_announcement(Encoding::Msgpack), b"M5");
        assert_eq!(
            parse_client_handshake(b"Z5"),
            Ok(Handshake::Protocol(Encoding::Pickle))
        );
        assert_eq!(
            parse_client_handshake(b"M5"),
            Ok(Handshake::Protocol(Encoding::Msgpack))
        );
        assert_eq!(parse_client_handshake(b"ruok"), Ok(Handshake::Ruok));
        for bad in [
            &b""[..],
            b"Z",
            b"Z4",
            b"Z50",
            b"X5",
            b"z5",
            b"ruok\n",
            b"5",
            b"Z309",
        ] {
            assert!(parse_client_handshake(bad).is_err(), "{bad:?}");
            assert!(parse_server_announcement(bad).is_err(), "{bad:?}");
        }
        assert_eq!(parse_server_announcement(b"Z5"), Ok(Encoding::Pickle));
        assert_eq!(parse_server_announcement(b"M5"), Ok(Encoding::Msgpack));
        assert!(parse_server_announcement(b"ruok").is_err());
        // The error keeps at most 16 bytes of what was sent.
        assert_eq!(
            parse_client_handshake(&[b'x'; 100]),
            Err(WireError::BadHandshake(vec![b'x'; 16]))
        );
    }

    #[test]
    fn truncations_never_decode() {
        let msg = Message::call_with_msgid(oid_tid(), "loadBefore", vec![b(&OID), b(&TID)]);
        for enc in [Encoding::Pickle, Encoding::Msgpack] {
            let payload = encode(enc, &msg).unwrap();
            for cut in 0..payload.len() {
                assert!(decode(enc, &payload[..cut]).is_err(), "{enc:?} cut {cut}");
            }
            let mut longer = payload.clone();
            longer.push(0);
            assert!(matches!(
                decode(enc, &longer),
                Err(WireError::TrailingBytes { trailing: 1 })
            ));
        }
    }

    #[test]
    fn nesting_is_bounded_in_both_encodings() {
        use crate::limits::MESSAGE_DEPTH_MAX;
        // zodb_pickle's decoder recurses once per level; in a debug build 512 levels need
        // more than the 2 MiB of a test thread, so run on a bigger stack.
        let worker = std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(|| {
                let nest = |levels: usize| {
                    let mut v = Value::None;
                    for _ in 0..levels {
                        v = Value::Tuple(vec![v]);
                    }
                    Message::reply(Value::Int(1), v)
                };
                // The message's own tuple is level 1.
                let ok = nest(MESSAGE_DEPTH_MAX - 1);
                let deep = nest(MESSAGE_DEPTH_MAX);
                for enc in [Encoding::Pickle, Encoding::Msgpack] {
                    let payload = encode(enc, &ok).unwrap();
                    assert_eq!(decode_from_client(enc, &payload).unwrap(), ok);
                    assert!(encode(enc, &deep).is_err(), "{enc:?}");
                }
                // A hand-made msgpack message one level too deep.
                let too_deep = [
                    vec![0x94, 0x01, 0x00, 0xa6],
                    b".reply".to_vec(),
                    vec![0x91; MESSAGE_DEPTH_MAX],
                    vec![0xc0],
                ]
                .concat();
                assert_eq!(
                    decode(Encoding::Msgpack, &too_deep),
                    Err(WireError::TooDeep {
                        limit: MESSAGE_DEPTH_MAX
                    })
                );
            })
            .unwrap();
        worker.join().unwrap();
    }

    /// Values both encodings carry and decode back identically: tuples only (msgpack
    /// arrays come back as tuples), dicts with unique str/bytes keys.
    fn plain_value() -> impl Strategy<Value = Value> {
        let leaf = prop_oneof![
            Just(Value::None),
            any::<bool>().prop_map(Value::Bool),
            any::<i64>().prop_map(Value::Int),
            (i64::MAX as u64 + 1..=u64::MAX).prop_map(|u| {
                let mut le = u.to_le_bytes().to_vec();
                le.push(0);
                Value::BigInt(le)
            }),
            any::<f64>()
                .prop_filter("NaN is unequal to itself", |f| !f.is_nan())
                .prop_map(Value::Float),
            proptest::collection::vec(any::<u8>(), 0..300).prop_map(Value::Bytes),
            ".{0,40}".prop_map(Value::Str),
        ];
        leaf.prop_recursive(4, 64, 8, |inner| {
            prop_oneof![
                proptest::collection::vec(inner.clone(), 0..20).prop_map(Value::Tuple),
                proptest::collection::btree_map("[a-z]{0,6}", inner, 0..8).prop_map(|m| {
                    Value::Dict(m.into_iter().map(|(k, v)| (Value::Str(k), v)).collect())
                }),
            ]
        })
    }

    fn message() -> impl Strategy<Value = Message> {
        (
            prop_oneof![
                any::<i64>().prop_map(Value::Int),
                (
                    proptest::collection::vec(any::<u8>(), 8),
                    proptest::collection::vec(any::<u8>(), 8)
                )
                    .prop_map(|(o, t)| Value::Tuple(vec![Value::Bytes(o), Value::Bytes(t)])),
            ],
            prop_oneof![
                any::<bool>().prop_map(Flag::Bool),
                any::<i64>().prop_map(Flag::Int),
            ],
            "[a-zA-Z_.]{0,20}",
            plain_value(),
        )
            .prop_map(|(msgid, flag, name, args)| Message {
                msgid,
                flag,
                name,
                args,
            })
    }

    proptest! {
        #[test]
        fn roundtrip_both_encodings(msg in message()) {
            for enc in [Encoding::Pickle, Encoding::Msgpack] {
                let payload = encode(enc, &msg).unwrap();
                prop_assert_eq!(&decode(enc, &payload).unwrap(), &msg);
                prop_assert_eq!(&decode_from_client(enc, &payload).unwrap(), &msg);
                let framed = encode_framed(enc, &msg).unwrap();
                let (range, consumed) =
                    parse_frame(&framed, FRAME_SIZE_MAX_DEFAULT).unwrap().unwrap();
                prop_assert_eq!(consumed, framed.len());
                prop_assert_eq!(&framed[range], &payload[..]);
            }
        }

        #[test]
        fn pickle_keeps_lists(items in proptest::collection::vec(any::<i64>(), 0..2100)) {
            // Lists survive pickling (batches of 1000), and become tuples in msgpack.
            let msg = Message::reply(Value::Int(1), Value::List(items.iter().copied().map(Value::Int).collect()));
            let back = decode(Encoding::Pickle, &encode(Encoding::Pickle, &msg).unwrap()).unwrap();
            prop_assert_eq!(&back, &msg);
            let back = decode(Encoding::Msgpack, &encode(Encoding::Msgpack, &msg).unwrap()).unwrap();
            prop_assert_eq!(back.args, Value::Tuple(items.into_iter().map(Value::Int).collect()));
        }

        #[test]
        fn random_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            for enc in [Encoding::Pickle, Encoding::Msgpack] {
                let _ = decode(enc, &bytes);
                let _ = decode_from_client(enc, &bytes);
            }
            let _ = parse_client_handshake(&bytes);
            let _ = parse_server_announcement(&bytes);
        }

        #[test]
        fn mutated_messages_never_panic(msg in message(), at in any::<prop::sample::Index>(), byte in any::<u8>()) {
            for enc in [Encoding::Pickle, Encoding::Msgpack] {
                let mut payload = encode(enc, &msg).unwrap();
                let i = at.index(payload.len());
                payload[i] = byte;
                let _ = decode_from_client(enc, &payload);
                payload.truncate(i);
                prop_assert!(decode(enc, &payload).is_err());
            }
        }
    }
}
