//! The one error type of the crate, for decoding, scanning and encoding.
//!
//! Every decode failure is treated by callers as a corrupt (or hostile) record, so the
//! variants aim at a precise message with the byte offset where the decoder stopped,
//! counted from the start of the slice handed to the public function (for a record, from
//! the start of P1).  Variants are few and coarse on purpose: a caller reacts to "this
//! record is bad", not to which of forty opcodes was unhappy.

/// Why a pickle could not be decoded, scanned or encoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PickleError {
    /// The bytes ended before the pickle's `STOP` (or before an opcode's argument).
    #[error("pickle truncated at byte {offset}")]
    Truncated {
        /// Where more bytes were needed.
        offset: usize,
    },
    /// A byte that is no pickle opcode of any protocol.
    #[error("unknown pickle opcode {op:#04x} at byte {offset}")]
    UnknownOpcode {
        /// The opcode byte.
        op: u8,
        /// Its position.
        offset: usize,
    },
    /// A real pickle opcode that Python ZODB cannot read (protocol 4/5) or that this crate
    /// refuses on purpose (the extension registry opcodes `EXT1`/`EXT2`/`EXT4`).
    #[error("pickle opcode {op:#04x} at byte {offset} is not readable by ZODB: {reason}")]
    UnsupportedOpcode {
        /// The opcode byte.
        op: u8,
        /// Its position.
        offset: usize,
        /// Why it is refused.
        reason: &'static str,
    },
    /// A `PROTO` opcode naming a protocol above 3 (zodbpickle's highest).
    #[error("unsupported pickle protocol: {0}")]
    UnsupportedProtocol(u8),
    /// A memo fetch of a key that was never stored.
    #[error("memo key {key} fetched at byte {offset} was never stored")]
    BadMemo {
        /// The memo key.
        key: u64,
        /// Position of the fetching opcode.
        offset: usize,
    },
    /// An opcode needed more stack items than there were.
    #[error("pickle stack underflow at byte {offset}")]
    StackUnderflow {
        /// Position of the opcode.
        offset: usize,
    },
    /// An opcode needed a mark and none was on the mark stack.
    #[error("no MARK for the opcode at byte {offset}")]
    MissingMark {
        /// Position of the opcode.
        offset: usize,
    },
    /// An opcode argument or operand that Python's unpickler would reject: a malformed text
    /// line, invalid UTF-8, an APPEND into something that is not a list, an unhashable dict
    /// key, ...
    #[error("malformed pickle at byte {offset}: {reason}")]
    Malformed {
        /// Position of the opcode.
        offset: usize,
        /// What is wrong.
        reason: &'static str,
    },
    /// A persistent id that is none of the forms of record-format §4.
    #[error("bad persistent id: {0}")]
    BadPersistentId(String),
    /// The decoded value nests deeper than [`crate::limits::NESTING_MAX`].
    #[error("pickle value nests deeper than {limit} levels")]
    TooDeep {
        /// The limit that was hit.
        limit: usize,
    },
    /// The decoded value contains itself (a cycle built through the memo); the public
    /// [`crate::Value`] is a tree and cannot hold it.
    #[error("pickle value contains itself")]
    Recursive,
    /// The decoded tree would exceed the size budget (memo fetches can copy a value many
    /// times; see [`crate::limits`]).
    #[error("decoded pickle value exceeds {limit} bytes")]
    TooLarge {
        /// The budget in bytes.
        limit: usize,
    },
    /// The encoder was given a value it cannot write as a protocol 3 pickle Python reads.
    #[error("cannot encode: {0}")]
    NotEncodable(String),
}
