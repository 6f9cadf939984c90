//! The protocol 3 encoder: the subset of record-format §6 that Python's pickler itself
//! writes, without memo opcodes.
//!
//! Output is what CPython's protocol 3 pickler would write for the same value, minus the
//! `BINPUT`s (so byte-identical to a Python record only when that record had none): ints
//! as `K`/`M`/`J`/`LONG1`/`LONG4` by size, floats as big-endian `BINFLOAT`, str as
//! `BINUNICODE`, bytes as `SHORT_BINBYTES`/`BINBYTES`, tuples with `EMPTY_TUPLE`,
//! `TUPLE1..3` or `MARK … TUPLE`, lists and dicts filled in batches of 1000 (`MARK …
//! APPENDS`/`SETITEMS`, or `APPEND`/`SETITEM` for a batch of one), sets as
//! `builtins.set([...])`, globals as `GLOBAL` lines, persistent references as
//! `<pid> BINPERSID`.  No protocol 4/5 opcode can be produced: every opcode written
//! here is listed in `opcodes.rs` below `PROTOCOL_4_5_FIRST`.
//!
//! Values Python could not load back are refused ([`PickleError::NotEncodable`]): a global
//! name that is empty or holds a newline, `REDUCE`/`NEWOBJ` arguments that are no tuple,
//! unhashable dict keys or set items, lengths beyond the 4-byte fields.

use crate::error::PickleError;
use crate::limits;
use crate::opcodes as op;
use crate::text::{self, Int};
use crate::value::Value;

/// How many items Python's pickler puts in one `APPENDS`/`SETITEMS` batch.
const BATCH_SIZE: usize = 1000;

/// Encodes one value as a protocol 3 pickle: `PROTO 3`, the value, `STOP`.
pub fn encode(value: &Value) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder::default();
    encoder.pickle(value)?;
    Ok(encoder.out)
}

/// Encodes a whole record: P1 naming the class as a bare global (form 1 of record-format
/// §2, `80 03 63 <module> 0a <name> 0a 2e`), then P2 holding `state`.
pub fn encode_record(class: (&str, &str), state: &Value) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder::default();
    encoder.header();
    encoder.global(class.0, class.1)?;
    encoder.out.push(op::STOP);
    encoder.pickle(state)?;
    Ok(encoder.out)
}

#[derive(Debug, Default)]
struct Encoder {
    out: Vec<u8>,
    depth: usize,
}

fn refuse(what: impl Into<String>) -> PickleError {
    PickleError::NotEncodable(what.into())
}

impl Encoder {
    fn header(&mut self) {
        self.out.extend_from_slice(&[op::PROTO, op::WRITE_PROTOCOL]);
    }

    fn pickle(&mut self, value: &Value) -> Result<(), PickleError> {
        self.header();
        self.value(value)?;
        self.out.push(op::STOP);
        Ok(())
    }

    /// Runs `f` one nesting level deeper, refusing values deeper than the decoder accepts.
    fn nested(
        &mut self,
        f: impl FnOnce(&mut Self) -> Result<(), PickleError>,
    ) -> Result<(), PickleError> {
        if self.depth >= limits::NESTING_MAX {
            return Err(PickleError::TooDeep {
                limit: limits::NESTING_MAX,
            });
        }
        self.depth += 1;
        let result = f(self);
        self.depth -= 1;
        result
    }

    fn value(&mut self, value: &Value) -> Result<(), PickleError> {
        match value {
            Value::None => self.out.push(op::NONE),
            Value::Bool(true) => self.out.push(op::NEWTRUE),
            Value::Bool(false) => self.out.push(op::NEWFALSE),
            Value::Int(i) => self.int(*i),
            Value::BigInt(bytes) => match text::int_from_le_twos_complement(bytes) {
                Int::Small(i) => self.int(i),
                Int::Big(bytes) => self.long(&bytes)?,
            },
            Value::Float(f) => {
                self.out.push(op::BINFLOAT);
                self.out.extend_from_slice(&f.to_be_bytes());
            }
            Value::Bytes(bytes) => match u8::try_from(bytes.len()) {
                Ok(n) => {
                    self.out.extend_from_slice(&[op::SHORT_BINBYTES, n]);
                    self.out.extend_from_slice(bytes);
                }
                Err(_) => {
                    self.out.push(op::BINBYTES);
                    self.length_u32(bytes.len())?;
                    self.out.extend_from_slice(bytes);
                }
            },
            Value::Str(s) => self.str(s)?,
            Value::Tuple(items) => self.nested(|e| e.tuple(items))?,
            Value::List(items) => self.nested(|e| {
                e.out.push(op::EMPTY_LIST);
                e.appends(items)
            })?,
            Value::Dict(pairs) => self.nested(|e| {
                e.out.push(op::EMPTY_DICT);
                e.set_items(pairs, true)
            })?,
            Value::Set(items) => self.nested(|e| e.set("set", items))?,
            Value::FrozenSet(items) => self.nested(|e| e.set("frozenset", items))?,
            Value::Global { module, name } => self.global(module, name)?,
            Value::PersistentRef(pid) => self.nested(|e| {
                e.value(pid)?;
                e.out.push(op::BINPERSID);
                Ok(())
            })?,
            Value::Reduce { callable, args } => self.nested(|e| {
                require_tuple(args, "REDUCE")?;
                e.value(callable)?;
                e.value(args)?;
                e.out.push(op::REDUCE);
                Ok(())
            })?,
            Value::NewObj { cls, args } => self.nested(|e| {
                require_tuple(args, "NEWOBJ")?;
                e.value(cls)?;
                e.value(args)?;
                e.out.push(op::NEWOBJ);
                Ok(())
            })?,
            Value::Inst { module, name, args } => self.nested(|e| {
                if !module.is_ascii() || !name.is_ascii() {
                    return Err(refuse("INST names must be ASCII"));
                }
                e.out.push(op::MARK);
                for arg in args {
                    e.value(arg)?;
                }
                e.out.push(op::INST);
                e.lines(module, name)
            })?,
            Value::Obj { cls, args } => self.nested(|e| {
                e.out.push(op::MARK);
                e.value(cls)?;
                for arg in args {
                    e.value(arg)?;
                }
                e.out.push(op::OBJ);
                Ok(())
            })?,
            Value::Build { object, state } => self.nested(|e| {
                e.value(object)?;
                e.value(state)?;
                e.out.push(op::BUILD);
                Ok(())
            })?,
            Value::ListItems { object, items } => self.nested(|e| {
                e.value(object)?;
                e.appends(items)
            })?,
            Value::DictItems { object, items } => self.nested(|e| {
                e.value(object)?;
                e.set_items(items, false)
            })?,
        }
        Ok(())
    }

    /// Python's choice: `K` for 0..=255, `M` for 256..=65535, `J` for the rest of the i32
    /// range, `LONG1` beyond.
    fn int(&mut self, i: i64) {
        if let Ok(small) = u8::try_from(i) {
            self.out.extend_from_slice(&[op::BININT1, small]);
        } else if let Ok(medium) = u16::try_from(i) {
            self.out.push(op::BININT2);
            self.out.extend_from_slice(&medium.to_le_bytes());
        } else if let Ok(word) = i32::try_from(i) {
            self.out.push(op::BININT);
            self.out.extend_from_slice(&word.to_le_bytes());
        } else {
            let bytes = i.to_le_bytes();
            let minimal = text::minimal_twos_complement(&bytes);
            self.out.push(op::LONG1);
            // At most 8 bytes, so the length fits.
            self.out.push(u8::try_from(minimal.len()).unwrap_or(8));
            self.out.extend_from_slice(minimal);
        }
    }

    /// An int outside `i64`, already minimal.
    fn long(&mut self, bytes: &[u8]) -> Result<(), PickleError> {
        match u8::try_from(bytes.len()) {
            Ok(n) => self.out.extend_from_slice(&[op::LONG1, n]),
            Err(_) => {
                let n =
                    i32::try_from(bytes.len()).map_err(|_| refuse("int too large for LONG4"))?;
                self.out.push(op::LONG4);
                self.out.extend_from_slice(&n.to_le_bytes());
            }
        }
        self.out.extend_from_slice(bytes);
        Ok(())
    }

    fn length_u32(&mut self, len: usize) -> Result<(), PickleError> {
        let n = u32::try_from(len).map_err(|_| refuse("longer than 4 GiB"))?;
        self.out.extend_from_slice(&n.to_le_bytes());
        Ok(())
    }

    fn str(&mut self, s: &str) -> Result<(), PickleError> {
        self.out.push(op::BINUNICODE);
        self.length_u32(s.len())?;
        self.out.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn tuple(&mut self, items: &[Value]) -> Result<(), PickleError> {
        match items {
            [] => self.out.push(op::EMPTY_TUPLE),
            [a] => {
                self.value(a)?;
                self.out.push(op::TUPLE1);
            }
            [a, b] => {
                self.value(a)?;
                self.value(b)?;
                self.out.push(op::TUPLE2);
            }
            [a, b, c] => {
                self.value(a)?;
                self.value(b)?;
                self.value(c)?;
                self.out.push(op::TUPLE3);
            }
            _ => {
                self.out.push(op::MARK);
                for item in items {
                    self.value(item)?;
                }
                self.out.push(op::TUPLE);
            }
        }
        Ok(())
    }

    /// Python's `_batch_appends` for binary protocols.
    fn appends(&mut self, items: &[Value]) -> Result<(), PickleError> {
        for batch in items.chunks(BATCH_SIZE) {
            if let [item] = batch {
                self.value(item)?;
                self.out.push(op::APPEND);
            } else {
                self.out.push(op::MARK);
                for item in batch {
                    self.value(item)?;
                }
                self.out.push(op::APPENDS);
            }
        }
        Ok(())
    }

    /// Python's `_batch_setitems`; keys of a real dict must be hashable.
    fn set_items(&mut self, pairs: &[(Value, Value)], dict: bool) -> Result<(), PickleError> {
        if dict && pairs.iter().any(|(k, _)| !hashable(k)) {
            return Err(refuse("unhashable dict key"));
        }
        for batch in pairs.chunks(BATCH_SIZE) {
            if let [(k, v)] = batch {
                self.value(k)?;
                self.value(v)?;
                self.out.push(op::SETITEM);
            } else {
                self.out.push(op::MARK);
                for (k, v) in batch {
                    self.value(k)?;
                    self.value(v)?;
                }
                self.out.push(op::SETITEMS);
            }
        }
        Ok(())
    }

    /// `builtins.set([items])` as protocol 3 writes it: `GLOBAL`, the list, `TUPLE1`,
    /// `REDUCE`.
    fn set(&mut self, name: &str, items: &[Value]) -> Result<(), PickleError> {
        if items.iter().any(|item| !hashable(item)) {
            return Err(refuse("unhashable set item"));
        }
        self.global("builtins", name)?;
        self.out.push(op::EMPTY_LIST);
        self.appends(items)?;
        self.out.push(op::TUPLE1);
        self.out.push(op::REDUCE);
        Ok(())
    }

    fn global(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        self.out.push(op::GLOBAL);
        self.lines(module, name)
    }

    /// The module and name lines of `GLOBAL`/`INST`: non-empty, without newline (the
    /// unpickler reads up to the first `\n`).
    fn lines(&mut self, module: &str, name: &str) -> Result<(), PickleError> {
        for part in [module, name] {
            if part.is_empty() || part.contains('\n') {
                return Err(refuse(format!(
                    "global name {part:?} is empty or holds a newline"
                )));
            }
            self.out.extend_from_slice(part.as_bytes());
            self.out.push(b'\n');
        }
        Ok(())
    }
}

fn require_tuple(args: &Value, opcode: &str) -> Result<(), PickleError> {
    if matches!(args, Value::Tuple(_)) {
        Ok(())
    } else {
        Err(refuse(format!("{opcode} arguments must be a tuple")))
    }
}

/// Whether Python could hash the value (lists, dicts and sets cannot be keys).  Recursion
/// is bounded by the nesting check of the caller's traversal only for values it already
/// walked, so tuples are walked iteratively here.
fn hashable(value: &Value) -> bool {
    let mut pending = vec![value];
    while let Some(v) = pending.pop() {
        match v {
            Value::List(_) | Value::Dict(_) | Value::Set(_) => return false,
            Value::Tuple(items) => pending.extend(items.iter()),
            _ => {}
        }
    }
    true
}
