//! The pickle opcodes this crate knows, one constant per byte, mirroring the table of
//! `docs/spec/record-format.md` §5.
//!
//! Keeping every byte value in one place lets the decoder, the scanner and the encoder agree
//! on spelling, and lets a reader check the table against the spec line by line.  The
//! protocol 4/5 bytes are listed too, only so that the decoder can name them in its refusal:
//! zodbpickle (which every Python ZODB load uses) stops at protocol 3.

// Protocol 0 and 1.
/// `(`: push a mark on the mark stack.
pub const MARK: u8 = b'(';
/// `.`: end of the pickle; the top of the stack is its value.
pub const STOP: u8 = b'.';
/// `0`: discard the top of the stack, or the topmost mark when it sits there.
pub const POP: u8 = b'0';
/// `1`: discard everything down to and including the topmost mark.
pub const POP_MARK: u8 = b'1';
/// `2`: push the top of the stack again (the same object).
pub const DUP: u8 = b'2';
/// `F`: float as a decimal text line.
pub const FLOAT: u8 = b'F';
/// `I`: int as a text line (`00`/`01` are False/True).
pub const INT: u8 = b'I';
/// `J`: signed 4-byte little-endian int.
pub const BININT: u8 = b'J';
/// `K`: unsigned 1-byte int.
pub const BININT1: u8 = b'K';
/// `L`: long as a text line, optionally ending in `L`.
pub const LONG: u8 = b'L';
/// `M`: unsigned 2-byte little-endian int.
pub const BININT2: u8 = b'M';
/// `N`: None.
pub const NONE: u8 = b'N';
/// `P`: persistent id given as a text line.
pub const PERSID: u8 = b'P';
/// `Q`: persistent id taken from the stack.
pub const BINPERSID: u8 = b'Q';
/// `R`: call a callable with an argument tuple.
pub const REDUCE: u8 = b'R';
/// `S`: Python 2 string as a quoted, escaped text line.
pub const STRING: u8 = b'S';
/// `T`: Python 2 string, signed 4-byte little-endian length.
pub const BINSTRING: u8 = b'T';
/// `U`: Python 2 string, 1-byte length.
pub const SHORT_BINSTRING: u8 = b'U';
/// `V`: str as a raw-unicode-escape text line.
pub const UNICODE: u8 = b'V';
/// `X`: str, unsigned 4-byte little-endian length, UTF-8 (surrogates allowed).
pub const BINUNICODE: u8 = b'X';
/// `]`: push an empty list.
pub const EMPTY_LIST: u8 = b']';
/// `a`: append the top of the stack to the list below it.
pub const APPEND: u8 = b'a';
/// `b`: apply a state to the object below it.
pub const BUILD: u8 = b'b';
/// `c`: a global (module line, name line).
pub const GLOBAL: u8 = b'c';
/// `d`: build a dict from the key/value pairs above the topmost mark.
pub const DICT: u8 = b'd';
/// `e`: extend the list below the topmost mark with the items above it.
pub const APPENDS: u8 = b'e';
/// `g`: memo fetch, key as a text line.
pub const GET: u8 = b'g';
/// `h`: memo fetch, 1-byte key.
pub const BINGET: u8 = b'h';
/// `i`: old-style instance (module line, name line, arguments above the mark).
pub const INST: u8 = b'i';
/// `j`: memo fetch, unsigned 4-byte little-endian key.
pub const LONG_BINGET: u8 = b'j';
/// `l`: build a list from the items above the topmost mark.
pub const LIST: u8 = b'l';
/// `o`: instance of the class just above the mark, with the following items as arguments.
pub const OBJ: u8 = b'o';
/// `p`: memo store, key as a text line.
pub const PUT: u8 = b'p';
/// `q`: memo store, 1-byte key.
pub const BINPUT: u8 = b'q';
/// `r`: memo store, unsigned 4-byte little-endian key.
pub const LONG_BINPUT: u8 = b'r';
/// `s`: set one key/value pair in the dict below them.
pub const SETITEM: u8 = b's';
/// `t`: build a tuple from the items above the topmost mark.
pub const TUPLE: u8 = b't';
/// `u`: set the key/value pairs above the topmost mark in the dict below it.
pub const SETITEMS: u8 = b'u';
/// `}`: push an empty dict.
pub const EMPTY_DICT: u8 = b'}';
/// `)`: push an empty tuple.
pub const EMPTY_TUPLE: u8 = b')';
/// `G`: float, 8-byte big-endian IEEE 754.
pub const BINFLOAT: u8 = b'G';

// Protocol 2.
/// Protocol version byte follows; more than [`HIGHEST_PROTOCOL`] is refused.
pub const PROTO: u8 = 0x80;
/// `cls.__new__(cls, *args)`.
pub const NEWOBJ: u8 = 0x81;
/// Extension registry code, 1 byte (refused: ZODB never registers extensions).
pub const EXT1: u8 = 0x82;
/// Extension registry code, 2 bytes (refused).
pub const EXT2: u8 = 0x83;
/// Extension registry code, 4 bytes (refused).
pub const EXT4: u8 = 0x84;
/// Build a 1-tuple from the top of the stack.
pub const TUPLE1: u8 = 0x85;
/// Build a 2-tuple from the top two items.
pub const TUPLE2: u8 = 0x86;
/// Build a 3-tuple from the top three items.
pub const TUPLE3: u8 = 0x87;
/// True.
pub const NEWTRUE: u8 = 0x88;
/// False.
pub const NEWFALSE: u8 = 0x89;
/// Int, 1-byte length then little-endian two's complement bytes.
pub const LONG1: u8 = 0x8a;
/// Int, signed 4-byte little-endian length then little-endian two's complement bytes.
pub const LONG4: u8 = 0x8b;

// Protocol 3.
/// Bytes, unsigned 4-byte little-endian length.
pub const BINBYTES: u8 = b'B';
/// Bytes, 1-byte length.
pub const SHORT_BINBYTES: u8 = b'C';

/// The highest protocol zodbpickle (and therefore Python ZODB) reads.
pub const HIGHEST_PROTOCOL: u8 = 3;

/// The protocol ZODB 6 writes, and the only one this crate's encoder writes.
pub const WRITE_PROTOCOL: u8 = 3;

/// Protocol 4 and 5 opcodes: `SHORT_BINUNICODE` (0x8c) through `READONLY_BUFFER` (0x98).
///
/// They are named here only to give a precise refusal; zodbpickle does not know them, so a
/// record holding one cannot be loaded or scanned by Python ZODB.
pub const PROTOCOL_4_5_FIRST: u8 = 0x8c;
/// Last opcode byte of the protocol 4/5 range (`READONLY_BUFFER`).
pub const PROTOCOL_4_5_LAST: u8 = 0x98;

/// Whether `op` is one of the protocol 4/5 opcodes (0x8c..=0x98).
pub const fn is_protocol_4_or_5(op: u8) -> bool {
    op >= PROTOCOL_4_5_FIRST && op <= PROTOCOL_4_5_LAST
}
