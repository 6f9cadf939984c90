//! The errors of the wire codec: [`FrameError`] for the length prefix, [`WireError`] for
//! everything after it.
//!
//! Every decode failure means "this peer sent something a Python peer never would": the
//! server closes the connection (spec §2.1: no error reply for an undecodable frame), the
//! client drops it and reconnects.  Variants therefore aim at a precise log line, not at
//! fine-grained recovery.  An incomplete frame is not an error (`parse_frame` returns
//! `Ok(None)`).

/// Why a frame's length prefix was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FrameError {
    /// The announced (or, when writing, the actual) payload length exceeds the limit.
    #[error("frame of {size} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The length in bytes.
        size: u64,
        /// The limit in bytes.
        max: u64,
    },
}

/// Why a handshake or message could not be decoded or encoded.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// A frame-level failure.
    #[error(transparent)]
    Frame(#[from] FrameError),
    /// A handshake frame that is not one this side accepts (`Z5`/`M5`, or `ruok` from a
    /// client).  Holds at most the first 16 bytes received.
    #[error("bad handshake {0:?}")]
    BadHandshake(Vec<u8>),
    /// The pickle (`Z`) payload is no valid protocol ≤ 3 pickle, or a value could not be
    /// pickled.
    #[error("pickle: {0}")]
    Pickle(#[from] zodb_pickle::PickleError),
    /// The msgpack (`M`) payload is malformed, or holds a type Python's `unpackb(raw=False,
    /// use_list=False)` refuses (ext types, invalid UTF-8, non-str/bytes map keys, ...).
    #[error("msgpack at byte {offset}: {reason}")]
    Msgpack {
        /// Where the decoder stopped, from the start of the payload.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// Bytes follow the encoded message inside its frame.
    #[error("{trailing} bytes after the message")]
    TrailingBytes {
        /// How many bytes were left over.
        trailing: usize,
    },
    /// The decoded value is no `(msgid, flag, name, args)` 4-tuple with a str name and a
    /// bool or int flag.
    #[error("not a ZEO message: {0}")]
    NotAMessage(&'static str),
    /// A pickled global outside the server's whitelist (`server_find_global`, spec §2.2).
    #[error("global {module}.{name} is not allowed in a message")]
    ForbiddenGlobal {
        /// The global's module.
        module: String,
        /// The global's name.
        name: String,
    },
    /// A persistent reference (`BINPERSID`/`PERSID`): neither Python unpickler of messages
    /// has a `persistent_load`, so both refuse it.
    #[error("persistent reference in a message")]
    PersistentReference,
    /// The value nests deeper than `limits::MESSAGE_DEPTH_MAX`.
    #[error("message nests deeper than {limit} levels")]
    TooDeep {
        /// The limit that was hit.
        limit: usize,
    },
    /// The decoded value would exceed the memory budget for a payload of this size.
    #[error("decoded message exceeds {limit} bytes")]
    TooLarge {
        /// The budget in bytes.
        limit: usize,
    },
    /// A value this encoding cannot carry (a set, a global or a big int in msgpack; a map
    /// key the peer's `unpackb` would refuse; ...).
    #[error("cannot encode: {0}")]
    NotEncodable(String),
}
