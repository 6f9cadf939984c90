//! Every limit the codec enforces, in one place, qualifier last.
//!
//! Pickles arrive from disk and from the network, so nothing in them may decide how much
//! memory or stack we use.  The decoder's working memory is already linear in the input
//! (each opcode creates at most one node and every length is checked against the remaining
//! bytes before anything is allocated); these limits bound what is not: recursion over the
//! decoded value and the copies that memo fetches make when the value becomes a tree.

/// Deepest nesting of containers accepted when turning a decoded pickle into a
/// [`crate::Value`], and when encoding one.
///
/// Conversion and encoding recurse once per level; this keeps them far from the end of a
/// 2 MiB thread stack.  Python's own pickler gives up near a depth of 300 (its recursion
/// limit of 1000 spends about three frames per level), so real records never come close.
pub const NESTING_MAX: usize = 512;

/// Fixed part of the budget for a decoded tree, in bytes.
pub const DECODED_BYTES_BASE_MAX: usize = 64 << 20;

/// Per-input-byte part of the budget for a decoded tree, in bytes.
///
/// A one-byte opcode (`N`, `)`) becomes one [`crate::Value`] of a few dozen bytes; the
/// factor leaves room for that and for moderate memo sharing on top of the fixed part.
pub const DECODED_BYTES_PER_INPUT_BYTE_MAX: usize = 64;

/// Budget in bytes for the tree decoded from `input_len` bytes of pickle.
pub const fn decoded_bytes_max(input_len: usize) -> usize {
    DECODED_BYTES_BASE_MAX
        .saturating_add(input_len.saturating_mul(DECODED_BYTES_PER_INPUT_BYTE_MAX))
}

/// Longest digit string accepted by the text `INT`/`LONG` opcodes in a non-power-of-two
/// base, as CPython 3.11's `int_max_str_digits` default (so we fail where Python fails, and
/// decimal conversion stays cheap).
pub const INT_TEXT_DIGITS_MAX: usize = 4300;

/// Deepest tuple nesting inside a dict key or set item that is compared by value when
/// deduplicating keys; deeper keys compare by identity.  Key comparison recurses, and no
/// real record has tuple keys more than a few levels deep.
pub const KEY_NESTING_MAX: usize = 32;
