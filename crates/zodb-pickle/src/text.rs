//! Parsers for the arguments of the text opcodes (`INT`, `LONG`, `FLOAT`, `STRING`,
//! `UNICODE`, `GET`/`PUT`) and for the byte strings of `BINUNICODE`, plus the integer
//! helpers shared with the binary opcodes and the encoder.
//!
//! Each parser follows what zodbpickle's C unpickler (`_pickle_33.c` running on CPython
//! 3.11) accepts, because a reference scanner must fail exactly where Python's
//! `referencesf` fails: `INT` goes through C `strtol(s, _, 0)` and falls back to
//! `PyLong_FromString(s, NULL, 0)`; `LONG` uses the latter after dropping one `L`; `GET` and
//! `PUT` use base 10; `FLOAT` uses `PyOS_string_to_double`; `STRING` strips, unquotes and
//! undoes `PyBytes_DecodeEscape`; `UNICODE` undoes raw-unicode-escape.  The argument of
//! every parser is the line without its `\n`; the C code sees a NUL-terminated copy, so a
//! NUL inside the line ends the text early, which these parsers reproduce.

/// An integer as the decoder keeps it: in `i64` when it fits, else as the minimal
/// little-endian two's complement bytes (never fitting in `i64`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Int {
    Small(i64),
    Big(Vec<u8>),
}

/// Why a text argument was refused; the caller attaches the offset.
pub(crate) type TextResult<T> = Result<T, &'static str>;

/// The text C string functions see: the line up to its first NUL.
fn c_string(line: &[u8]) -> &[u8] {
    match line.iter().position(|&b| b == 0) {
        Some(end) => line.get(..end).unwrap_or(line),
        None => line,
    }
}

/// C `isspace` in the "C" locale.
fn c_isspace(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// Value of an ASCII digit in bases up to 36, as CPython's `_PyLong_DigitValue`.
fn digit_value(b: u8) -> Option<u32> {
    (b as char).to_digit(36)
}

/// What the `INT` opcode pushes: a bool for a two-character `0`/`1` (`00`, `01`, ` 1`, ...),
/// else an int.
pub(crate) enum IntText {
    Bool(bool),
    Int(Int),
}

/// Argument of `INT`: `strtol(s, &end, 0)` accepted when it consumed the whole text without
/// overflow, else `PyLong_FromString(s, NULL, 0)`.
pub(crate) fn parse_int_line(line: &[u8]) -> TextResult<IntText> {
    if line.is_empty() {
        // C refuses a line of fewer than two bytes (newline included) before parsing.
        return Err("pickle data was truncated");
    }
    let text = c_string(line);
    if let Some(x) = c_strtol_base0_whole(text) {
        // `len` in the C code counts the newline: a bool needs exactly two characters.
        if line.len() + 1 == 3 && (x == 0 || x == 1) {
            return Ok(IntText::Bool(x == 1));
        }
        return Ok(IntText::Int(Int::Small(x)));
    }
    // The fallback sees the NUL-terminated copy, which still holds the newline unless a NUL
    // came first; trailing whitespace is allowed by `PyLong_FromString` either way.
    py_long_from_string(text, 0)
        .map(IntText::Int)
        .map_err(|_| "could not convert string to int")
}

/// C `strtol(s, &end, 0)` on a 64-bit `long`: the value when no overflow happened and `end`
/// reached the end of `text` (where the newline or the NUL sits).
fn c_strtol_base0_whole(text: &[u8]) -> Option<i64> {
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while c_isspace(at(i)) {
        i += 1;
    }
    // strtol also skips the newline after the text; that cannot lead to digits, so stopping
    // at the end of `text` gives the same result.
    let mut negative = false;
    if at(i) == b'+' || at(i) == b'-' {
        negative = at(i) == b'-';
        i += 1;
    }
    let base: u32;
    if at(i) == b'0' && (at(i + 1) == b'x' || at(i + 1) == b'X') && at(i + 2).is_ascii_hexdigit() {
        base = 16;
        i += 2;
    } else if at(i) == b'0' {
        base = 8;
    } else {
        base = 10;
    }
    let digits_start = i;
    let mut magnitude: u64 = 0;
    let mut overflow = false;
    // `at` gives NUL past the end, which is no digit.
    while let Some(d) = digit_value(at(i)).filter(|&d| d < base) {
        match magnitude
            .checked_mul(u64::from(base))
            .and_then(|m| m.checked_add(u64::from(d)))
        {
            Some(m) => magnitude = m,
            None => overflow = true,
        }
        i += 1;
    }
    if i == digits_start {
        // No conversion: strtol sets `end` to the start of the string.
        return if text.is_empty() { Some(0) } else { None };
    }
    if overflow || i != text.len() {
        return None;
    }
    if negative {
        if magnitude == 1u64 << 63 {
            Some(i64::MIN)
        } else {
            i64::try_from(magnitude).ok().map(|m| -m)
        }
    } else {
        i64::try_from(magnitude).ok()
    }
}

/// Argument of `LONG`: one `L` before the newline is dropped, then `PyLong_FromString(s,
/// NULL, 0)`.
pub(crate) fn parse_long_line(line: &[u8]) -> TextResult<Int> {
    // C overwrites an `L` just before the newline with a NUL, so the string ends there.
    let text = match line.split_last() {
        Some((b'L', head)) => head,
        _ => line,
    };
    py_long_from_string(c_string(text), 0)
}

/// Argument of `GET` and `PUT`: `PyLong_FromString(s, NULL, 10)` then `PyLong_AsSsize_t`.
pub(crate) fn parse_memo_key_line(line: &[u8]) -> TextResult<i64> {
    match py_long_from_string(c_string(line), 10)? {
        Int::Small(x) => Ok(x),
        Int::Big(_) => Err("memo key does not fit in a machine integer"),
    }
}

/// CPython 3.11 `PyLong_FromString(str, NULL, base)` for base 0 or 10: surrounding
/// whitespace, a sign, `0x`/`0o`/`0b` prefixes under base 0, single underscores between
/// digits, no leading zeros for a non-zero number under base 0, and the 4300-digit limit of
/// non-power-of-two bases.
fn py_long_from_string(text: &[u8], base: u32) -> TextResult<Int> {
    const INVALID: &str = "invalid literal for int()";
    let at = |i: usize| text.get(i).copied().unwrap_or(0);
    let mut i = 0;
    while i < text.len() && c_isspace(at(i)) {
        i += 1;
    }
    let mut negative = false;
    if at(i) == b'+' || at(i) == b'-' {
        negative = at(i) == b'-';
        i += 1;
    }
    let mut base = base;
    let mut leading_zero_rule = false;
    if base == 0 {
        if at(i) != b'0' {
            base = 10;
        } else {
            match at(i + 1) {
                b'x' | b'X' => base = 16,
                b'o' | b'O' => base = 8,
                b'b' | b'B' => base = 2,
                _ => {
                    base = 10;
                    leading_zero_rule = true;
                }
            }
            if base != 10 {
                i += 2;
                // One underscore is allowed right after the prefix.
                if at(i) == b'_' {
                    i += 1;
                }
            }
        }
    }
    if at(i) == b'_' {
        return Err(INVALID);
    }
    let mut digits: Vec<u8> = Vec::new();
    let mut last_was_underscore = false;
    while i < text.len() {
        let b = at(i);
        if b == b'_' {
            if last_was_underscore {
                return Err(INVALID);
            }
            last_was_underscore = true;
            i += 1;
            continue;
        }
        match digit_value(b).filter(|&d| d < base) {
            Some(d) => {
                digits.push(u8::try_from(d).unwrap_or(0));
                last_was_underscore = false;
                i += 1;
            }
            None => break,
        }
    }
    if last_was_underscore || digits.is_empty() {
        return Err(INVALID);
    }
    if leading_zero_rule && digits.iter().any(|&d| d != 0) {
        return Err(INVALID);
    }
    while i < text.len() && c_isspace(at(i)) {
        i += 1;
    }
    if i != text.len() {
        return Err(INVALID);
    }
    let magnitude = if base.is_power_of_two() {
        magnitude_from_power_of_two_digits(&digits, base.trailing_zeros())
    } else {
        if digits.len() > crate::limits::INT_TEXT_DIGITS_MAX {
            return Err("integer text exceeds the 4300-digit limit");
        }
        magnitude_from_digits(&digits, base)
    };
    Ok(int_from_sign_magnitude(negative, magnitude))
}

/// Little-endian magnitude bytes of a big-endian digit string in a power-of-two base, in
/// linear time.
fn magnitude_from_power_of_two_digits(digits: &[u8], bits_per_digit: u32) -> Vec<u8> {
    let mut out = Vec::with_capacity(digits.len() / 2 + 1);
    let mut acc: u32 = 0;
    let mut nbits: u32 = 0;
    for &d in digits.iter().rev() {
        acc |= u32::from(d) << nbits;
        nbits += bits_per_digit;
        while nbits >= 8 {
            out.push((acc & 0xff) as u8);
            acc >>= 8;
            nbits -= 8;
        }
    }
    if nbits > 0 {
        out.push((acc & 0xff) as u8);
    }
    out
}

/// Little-endian magnitude bytes of a big-endian digit string (quadratic; callers bound the
/// length).
fn magnitude_from_digits(digits: &[u8], base: u32) -> Vec<u8> {
    let mut limbs: Vec<u32> = Vec::new();
    for &d in digits {
        let mut carry = u64::from(d);
        for limb in limbs.iter_mut() {
            let v = u64::from(*limb) * u64::from(base) + carry;
            *limb = (v & 0xffff_ffff) as u32;
            carry = v >> 32;
        }
        if carry != 0 {
            limbs.push((carry & 0xffff_ffff) as u32);
        }
    }
    limbs.iter().flat_map(|l| l.to_le_bytes()).collect()
}

/// The integer with this sign and little-endian magnitude.
pub(crate) fn int_from_sign_magnitude(negative: bool, magnitude_le: Vec<u8>) -> Int {
    // Two's complement needs one spare byte for the sign bit.
    let mut bytes = magnitude_le;
    bytes.push(0);
    if negative {
        let mut carry = true;
        for b in bytes.iter_mut() {
            let (v, c) = (!*b).overflowing_add(u8::from(carry));
            *b = v;
            carry = c;
        }
    }
    int_from_le_twos_complement(&bytes)
}

/// The integer held in little-endian two's complement `bytes` (`LONG1`/`LONG4`); empty is 0.
pub(crate) fn int_from_le_twos_complement(bytes: &[u8]) -> Int {
    let minimal = minimal_twos_complement(bytes);
    if minimal.len() <= 8 {
        let fill = if minimal.last().is_some_and(|&b| b & 0x80 != 0) {
            0xff
        } else {
            0
        };
        let mut buf = [fill; 8];
        for (slot, &b) in buf.iter_mut().zip(minimal.iter()) {
            *slot = b;
        }
        Int::Small(i64::from_le_bytes(buf))
    } else {
        Int::Big(minimal.to_vec())
    }
}

/// `bytes` without the redundant sign-extension bytes at the most significant end.
pub(crate) fn minimal_twos_complement(bytes: &[u8]) -> &[u8] {
    let mut len = bytes.len();
    while len >= 2 {
        let (Some(&top), Some(&next)) = (bytes.get(len - 1), bytes.get(len - 2)) else {
            break;
        };
        let redundant = (top == 0 && next & 0x80 == 0) || (top == 0xff && next & 0x80 != 0);
        if !redundant {
            break;
        }
        len -= 1;
    }
    if len == 1 && bytes.first() == Some(&0) {
        len = 0;
    }
    bytes.get(..len).unwrap_or(bytes)
}

/// Argument of `FLOAT`: `PyOS_string_to_double`, which takes no surrounding whitespace,
/// accepts `inf`/`infinity`/`nan` with a sign in any case, and refuses overflow.
pub(crate) fn parse_float_line(line: &[u8]) -> TextResult<f64> {
    const INVALID: &str = "could not convert string to float";
    let text = std::str::from_utf8(c_string(line)).map_err(|_| INVALID)?;
    let body = text.strip_prefix(['+', '-']).unwrap_or(text);
    let lower = body.to_ascii_lowercase();
    let is_special = matches!(lower.as_str(), "inf" | "infinity" | "nan");
    // Rust's grammar is Python's minus underscores (refused by both) plus nothing else, once
    // the special words are handled; its "1e999 is inf" must become Python's OverflowError.
    if !is_special
        && !body
            .bytes()
            .all(|b| b.is_ascii_digit() || matches!(b, b'.' | b'e' | b'E' | b'+' | b'-'))
    {
        return Err(INVALID);
    }
    let value: f64 = text.parse().map_err(|_| INVALID)?;
    if value.is_infinite() && !is_special {
        return Err("value too large to convert to float");
    }
    Ok(value)
}

/// Argument of `STRING`: strip trailing bytes the C code sees as `<= ' '` (signed `char`, so
/// bytes >= 0x80 too), require matching outer quotes, undo `PyBytes_DecodeEscape`.
pub(crate) fn parse_string_line(line: &[u8]) -> TextResult<Vec<u8>> {
    // `strdup` copies up to the first NUL while `len` still counts the whole line; rather
    // than guess at C's behaviour past the copy, a NUL refuses the line.
    if line.contains(&0) {
        return Err("NUL inside a STRING argument");
    }
    let mut trimmed = line;
    while let Some((&b, head)) = trimmed.split_last() {
        if b <= b' ' || b >= 0x80 {
            trimmed = head;
        } else {
            break;
        }
    }
    let inner = match trimmed {
        [q, inner @ .., last] if (*q == b'"' || *q == b'\'') && last == q => inner,
        _ => return Err("the STRING opcode argument must be quoted"),
    };
    decode_bytes_escape(inner)
}

/// CPython's `_PyBytes_DecodeEscape` in strict mode.
fn decode_bytes_escape(s: &[u8]) -> TextResult<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        if c != b'\\' {
            out.push(c);
            continue;
        }
        let Some(&e) = s.get(i) else {
            return Err("trailing \\ in string");
        };
        i += 1;
        match e {
            b'\n' => {}
            b'\\' => out.push(b'\\'),
            b'\'' => out.push(b'\''),
            b'"' => out.push(b'"'),
            b'b' => out.push(0x08),
            b'f' => out.push(0x0c),
            b't' => out.push(b'\t'),
            b'n' => out.push(b'\n'),
            b'r' => out.push(b'\r'),
            b'v' => out.push(0x0b),
            b'a' => out.push(0x07),
            b'0'..=b'7' => {
                let mut v = u32::from(e - b'0');
                for _ in 0..2 {
                    match s.get(i) {
                        Some(&d @ b'0'..=b'7') => {
                            v = (v << 3) + u32::from(d - b'0');
                            i += 1;
                        }
                        _ => break,
                    }
                }
                // Values above 0o377 only warn in CPython; the byte keeps the low 8 bits.
                out.push((v & 0xff) as u8);
            }
            b'x' => {
                let hi = s.get(i).and_then(|&b| (b as char).to_digit(16));
                let lo = s.get(i + 1).and_then(|&b| (b as char).to_digit(16));
                match (hi, lo) {
                    (Some(hi), Some(lo)) => {
                        out.push(((hi << 4) | lo) as u8);
                        i += 2;
                    }
                    _ => return Err("invalid \\x escape"),
                }
            }
            _ => {
                // Unknown escapes keep the backslash; the next byte is read again as text.
                out.push(b'\\');
                i -= 1;
            }
        }
    }
    Ok(out)
}

/// Argument of `UNICODE`: raw-unicode-escape as CPython 3.11 decodes it.  The result is
/// UTF-8, except that lone surrogates (which Python strings may hold) are encoded as their
/// three-byte sequences, as `surrogatepass` would.
pub(crate) fn decode_raw_unicode_escape(s: &[u8]) -> TextResult<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while let Some(&c) = s.get(i) {
        i += 1;
        let escape = if c == b'\\' { s.get(i).copied() } else { None };
        let count = match escape {
            Some(b'u') => 4,
            Some(b'U') => 8,
            Some(e) => {
                // Not an escape: both bytes stand for themselves (so `\\u` is no escape).
                push_code_point(&mut out, u32::from(c));
                push_code_point(&mut out, u32::from(e));
                i += 1;
                continue;
            }
            None => {
                push_code_point(&mut out, u32::from(c));
                continue;
            }
        };
        i += 1;
        let mut ch: u32 = 0;
        for _ in 0..count {
            let d = s
                .get(i)
                .and_then(|&b| (b as char).to_digit(16))
                .ok_or("truncated \\uXXXX escape")?;
            ch = (ch << 4) | d;
            i += 1;
        }
        if ch > 0x10_ffff {
            return Err("\\Uxxxxxxxx out of range");
        }
        push_code_point(&mut out, ch);
    }
    Ok(out)
}

/// Appends the UTF-8 form of a code point, surrogates included (as `surrogatepass`).
fn push_code_point(out: &mut Vec<u8>, cp: u32) {
    if let Some(ch) = char::from_u32(cp) {
        let mut buf = [0u8; 4];
        out.extend_from_slice(ch.encode_utf8(&mut buf).as_bytes());
    } else {
        // Only surrogates (0xD800..=0xDFFF) reach here; callers bound cp to 0x10FFFF.
        out.push(0xe0 | ((cp >> 12) & 0x0f) as u8);
        out.push(0x80 | ((cp >> 6) & 0x3f) as u8);
        out.push(0x80 | (cp & 0x3f) as u8);
    }
}

/// Checks `bytes` as Python's UTF-8 decoder with `surrogatepass` does.  `Ok(true)` when the
/// text holds at least one surrogate (so it is no valid Rust `str`).
pub(crate) fn check_utf8_surrogatepass(bytes: &[u8]) -> TextResult<bool> {
    let mut rest = bytes;
    let mut surrogates = false;
    loop {
        match std::str::from_utf8(rest) {
            Ok(_) => return Ok(surrogates),
            Err(e) => {
                let bad = rest.get(e.valid_up_to()..).unwrap_or_default();
                match bad {
                    [0xed, 0xa0..=0xbf, 0x80..=0xbf, tail @ ..] => {
                        surrogates = true;
                        rest = tail;
                    }
                    _ => return Err("invalid UTF-8 in BINUNICODE"),
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn int(text: &str) -> Option<String> {
        match parse_int_line(text.as_bytes()) {
            Ok(IntText::Bool(b)) => Some(format!("bool {b}")),
            Ok(IntText::Int(Int::Small(x))) => Some(format!("{x}")),
            Ok(IntText::Int(Int::Big(b))) => Some(format!("big {}", hex::encode(b))),
            Err(_) => None,
        }
    }

    #[test]
    fn int_lines_follow_strtol_then_pylong() {
        // Cases observed with zodbpickle 4.5 on CPython 3.11.
        let cases: &[(&str, Option<&str>)] = &[
            (" 5", Some("5")),
            ("5 ", Some("5")),
            ("017", Some("15")),
            ("0o17", Some("15")),
            ("1_000", Some("1000")),
            ("+1", Some("bool true")),
            ("-0", Some("bool false")),
            ("00", Some("bool false")),
            ("01", Some("bool true")),
            (" 1", Some("bool true")),
            ("1", Some("1")),
            ("0", Some("0")),
            ("0x1F", Some("31")),
            ("99999999999999999999", Some("big ffff0f632d5ec76b05")),
            ("1\0zz", Some("1")),
            ("\0", Some("0")),
            ("09", None),
            ("0x", None),
            ("-9223372036854775808", Some("-9223372036854775808")),
            ("9223372036854775808", Some("big 000000000000008000")),
            ("0b11", Some("3")),
            ("00000000000000000000001", Some("1")),
            ("abc", None),
            ("", None),
        ];
        for (text, expected) in cases {
            assert_eq!(int(text).as_deref(), *expected, "INT {text:?}");
        }
        let long = "1".repeat(5000);
        assert_eq!(int(&long), None);
    }

    #[test]
    fn long_lines_drop_one_l() {
        let cases: &[(&str, Option<Int>)] = &[
            ("5L", Some(Int::Small(5))),
            ("5", Some(Int::Small(5))),
            ("0x10L", Some(Int::Small(16))),
            ("017L", None),
            (" 5 L", Some(Int::Small(5))),
            ("-0x_f", Some(Int::Small(-15))),
            ("0_0", Some(Int::Small(0))),
            ("1__0", None),
            ("_1", None),
            ("1_", None),
            ("L", None),
            ("0xL", None),
            (
                "-18446744073709551616L",
                Some(Int::Big(vec![0, 0, 0, 0, 0, 0, 0, 0, 0xff])),
            ),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_long_line(text.as_bytes()).ok(),
                *expected,
                "LONG {text:?}"
            );
        }
    }

    #[test]
    fn memo_keys_are_base_10() {
        for (text, expected) in [
            ("0", Some(0)),
            (" 0", Some(0)),
            ("0 ", Some(0)),
            ("+7", Some(7)),
            ("0_0", Some(0)),
            ("007", Some(7)),
            ("-1", Some(-1)),
            ("0x0", None),
            ("99999999999999999999", None),
        ] {
            assert_eq!(
                parse_memo_key_line(text.as_bytes()).ok(),
                expected,
                "{text:?}"
            );
        }
    }

    #[test]
    fn float_lines() {
        let cases: &[(&str, Option<f64>)] = &[
            (" 1.5", None),
            ("1.5 ", None),
            ("1_0", None),
            ("inf", Some(f64::INFINITY)),
            ("-Infinity", Some(f64::NEG_INFINITY)),
            ("1e", None),
            (".5", Some(0.5)),
            ("5.", Some(5.0)),
            ("0x10", None),
            ("1.5\0zz", Some(1.5)),
            ("1e999", None),
            ("-1e-999", Some(-0.0)),
            ("1E5", Some(100000.0)),
            ("infinit", None),
            ("\0", None),
            ("2.5e-3", Some(0.0025)),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_float_line(text.as_bytes()).ok(),
                *expected,
                "FLOAT {text:?}"
            );
        }
        assert!(parse_float_line(b"nan").is_ok_and(f64::is_nan));
        assert!(parse_float_line(b"+nan").is_ok_and(f64::is_nan));
    }

    #[test]
    fn string_lines() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"'abc'", Some(b"abc")),
            (b"\"abc\"", Some(b"abc")),
            (b"'a\\x4'", None),
            (b"'a\\x41'", Some(b"aA")),
            (b"'\\101\\0'", Some(b"A\0")),
            (b"'\\q'", Some(b"\\q")),
            (b"'a'  ", Some(b"a")),
            (b"'a'\xff", Some(b"a")),
            (b"'a\\'", None),
            (b"'", None),
            (b"''", Some(b"")),
            (b"'\\777'", Some(b"\xff")),
            (b"'a\"", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                parse_string_line(text).ok().as_deref(),
                *expected,
                "STRING {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn raw_unicode_escape() {
        let cases: &[(&[u8], Option<&[u8]>)] = &[
            (b"abc", Some(b"abc")),
            (b"\\u0041", Some(b"A")),
            (b"\\\\u0041", Some(b"\\\\u0041")),
            (b"\\U0001F600", Some("\u{1F600}".as_bytes())),
            (b"\\ud800", Some(b"\xed\xa0\x80")),
            (b"\\u00", None),
            (b"\\x41", Some(b"\\x41")),
            (b"\xe9", Some("\u{e9}".as_bytes())),
            (b"\\", Some(b"\\")),
            (b"\\U00110000", None),
        ];
        for (text, expected) in cases {
            assert_eq!(
                decode_raw_unicode_escape(text).ok().as_deref(),
                *expected,
                "UNICODE {:?}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn surrogatepass_utf8() {
        assert_eq!(check_utf8_surrogatepass(b"abc"), Ok(false));
        assert_eq!(check_utf8_surrogatepass(b"a\xed\xa0\x80b"), Ok(true));
        assert!(check_utf8_surrogatepass(b"\xc0\x80").is_err());
        assert!(check_utf8_surrogatepass(b"\xed\xa0").is_err());
    }

    #[test]
    fn twos_complement_is_minimal() {
        assert_eq!(int_from_le_twos_complement(&[]), Int::Small(0));
        assert_eq!(int_from_le_twos_complement(&[0xff, 0x00]), Int::Small(255));
        assert_eq!(
            int_from_le_twos_complement(&[0xff, 0xff, 0xff]),
            Int::Small(-1)
        );
        assert_eq!(
            int_from_le_twos_complement(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0xff]),
            Int::Small(i64::MIN)
        );
        assert_eq!(
            int_from_le_twos_complement(&[0, 0, 0, 0, 0, 0, 0, 0x80, 0x00]),
            Int::Big(vec![0, 0, 0, 0, 0, 0, 0, 0x80, 0])
        );
        assert_eq!(int_from_sign_magnitude(true, vec![1]), Int::Small(-1));
        assert_eq!(int_from_sign_magnitude(true, vec![]), Int::Small(0));
    }
}
