//! The ZEO 5 wire codec: frames, the handshake and `(msgid, flag, name, args)` messages in
//! both encodings (pickle `Z`, msgpack `M`), and the exception payloads of error replies —
//! everything between a socket's bytes and a [`Message`], doing no I/O.
//!
//! Spec: `docs/spec/zeo-protocol.md` §1 (transport) and §2 (messages).  Like a
//! `mini-redis` frame module, the functions are pure: the connection code buffers bytes,
//! asks [`parse_frame`] whether a whole frame has arrived (`Ok(None)`: not yet, which is not
//! an error), then decodes the payload.
//!
//! ```text
//! frame    = u32 BE length N, N payload bytes                       (frame.rs)
//! payload  = handshake "Z5" | "M5" | "ruok"                          (message.rs)
//!          | encode((msgid, flag, name, args))                       (message.rs)
//!              Z: protocol 3 pickle, 80 03 28 … 74 2e                (pickle.rs)
//!              M: msgpack fixarray 94 …                              (msgpack.rs)
//! error    = args of an error reply: (class_name, payload)           (exceptions.rs)
//! call     = (name, args) of a client's call, typed                  (call/)
//! callback = (name, args) of a server's callback, typed              (callback.rs)
//! reply    = a call's reply value, typed where both sides read it    (reply.rs,
//!            history.rs)
//! ```
//!
//! Everything here reads bytes from untrusted peers, so the module denies `unwrap`, `expect`,
//! `panic!` and unchecked indexing: decoders never panic, never allocate from a length the
//! input does not back, and bound nesting (`crate::limits`).

#![deny(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing
)]

mod call;
mod callback;
mod error;
pub mod exceptions;
mod flat_pickle;
mod frame;
mod history;
pub mod hot;
mod message;
mod msgpack;
mod pickle;
mod reply;

pub use call::{BadCall, Call, IntoCall, LEASE_INFO_KEY, TxnOp};
pub use callback::Callback;
pub use error::{FrameError, WireError};
pub use exceptions::{RemoteError, error_payload_conflict, error_payload_undo, parse_error};
pub use frame::{LENGTH_PREFIX_SIZE, parse_frame, write_frame};
pub use history::{history_reply, read_history_reply, read_undo_log_reply, undo_log_dict};
pub use message::{
    Encoding, Flag, Handshake, Message, PROTOCOL_VERSION, REPLY, RUOK, decode, decode_from_client,
    encode, encode_framed, handshake_announcement, parse_client_handshake,
    parse_server_announcement,
};
pub use pickle::{SERVER_GLOBAL_MODULES, simplify};
pub use reply::{
    BadReply, TxnHeader, VoteConflict, VoteReply, as_oid, as_tid, data_record_reply,
    extension_dict, extension_pickle, invalidations_reply, items, load_reply,
    read_data_record_reply, read_invalidations_reply, read_load_reply, read_record_iternext_reply,
    record_iternext_reply,
};
pub use zodb_pickle::Value;
