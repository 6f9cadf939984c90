//! The protocol 3 encoder: the subset of record-format §6 that Python's pickler itself
//! writes, with memo opcodes for repeated globals only.
//!
//! Output is what CPython's protocol 3 pickler would write for the same value, minus the
//! `BINPUT`s of values written once (so byte-identical to a Python record only when that
//! record had none).  A global that occurs more than once in a record (typically its class
//! in P1 and again in the `(oid, class)` references of P2 to objects of the same class)
//! is memoized on first use and fetched with `BINGET` afterwards, as Python does: records
//! of containers stay small and decode without re-reading the class lines.  Ints
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

use std::collections::{HashMap, HashSet};

use crate::error::PickleError;
use crate::limits;
use crate::opcodes as op;
use crate::text::{self, Int};
use crate::value::Value;
use crate::write;

/// What [`encode_record`] reserves for its output at first.
const RECORD_BYTES_TYPICAL: usize = 256;

/// How many items Python's pickler puts in one `APPENDS`/`SETITEMS` batch.
const BATCH_SIZE: usize = 1000;

/// Encodes one value as a protocol 3 pickle: `PROTO 3`, the value, `STOP`.
pub fn encode(value: &Value) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder {
        repeated: repeated_globals(&[value], None),
        ..Encoder::default()
    };
    encoder.pickle(value)?;
    Ok(encoder.out)
}

/// Encodes `value` as CPython's protocol 3 pickler writes a value it has just loaded:
/// every str, bytes, non-empty tuple, list, dict, set and global memoized with `BINPUT`
/// where Python puts it, and a repeated empty or one-character str or bytes (objects
/// CPython shares) fetched with `BINGET`.  A ZODB transaction extension is stored as such a
/// pickle (`TransactionMetaData.extension_bytes`); ZEO carries it as a dict, so a server
/// that stores what a copy sends must write these bytes for the copy to equal the
/// original.  Two occurrences of one (non-shared) object in the original come out as two
/// copies, which load as equal values: what the wire lost cannot be told apart.
/// `REDUCE`/`NEWOBJ` results are memoized as Python's `save_reduce` does; `INST`, `OBJ`,
/// `BUILD` and persistent references are written as [`encode`] writes them.
pub fn encode_like_python(value: &Value) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder {
        memo_all: true,
        ..Encoder::default()
    };
    encoder.pickle(value)?;
    Ok(encoder.out)
}

/// Encodes a whole record: P1 naming the class as a bare global (form 1 of record-format
/// §2, `80 03 63 <module> 0a <name> 0a 2e`), then P2 holding `state`.
pub fn encode_record<'v>(
    class: (&'v str, &'v str),
    state: &'v Value,
) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder {
        // Room for the usual small record: growing from empty would copy it five times.
        out: Vec::with_capacity(RECORD_BYTES_TYPICAL),
        repeated: repeated_globals(&[state], Some(class)),
        ..Encoder::default()
    };
    encoder.header();
    encoder.global(class.0, class.1)?;
    encoder.out.push(op::STOP);
    encoder.pickle(state)?;
    Ok(encoder.out)
}

/// Appends to `out` the protocol 3 pickle of the tuple of `items`: the bytes [`encode`]
/// writes for `Value::Tuple` of them, without building that tuple.  A ZEO message is such
/// a tuple; its last item may hold a record of megabytes, which building the tuple would
/// copy, and `out` may already hold the frame's length prefix, which saves another copy.
pub fn encode_tuple_into(out: Vec<u8>, items: &[&Value]) -> Result<Vec<u8>, PickleError> {
    let mut encoder = Encoder {
        out,
        repeated: repeated_globals(items, None),
        ..Encoder::default()
    };
    encoder.header();
    let close = match items.len() {
        0 => None,
        1 => Some(op::TUPLE1),
        2 => Some(op::TUPLE2),
        3 => Some(op::TUPLE3),
        _ => {
            encoder.out.push(op::MARK);
            Some(op::TUPLE)
        }
    };
    for item in items {
        // At depth 1, as the items of an encoded tuple are.
        encoder.value_at(item, 1)?;
    }
    encoder.out.push(close.unwrap_or(op::EMPTY_TUPLE));
    encoder.out.push(op::STOP);
    Ok(encoder.out)
}

#[derive(Debug, Default)]
struct Encoder<'v> {
    out: Vec<u8>,
    /// Globals written so far in this record, by memo index: a repeated class (the
    /// record's own class in P1, then in every `(oid, class)` reference of P2) is
    /// fetched with `BINGET` instead of written out again, as Python's pickler does.
    /// One memo per record, shared by P1 and P2 (record-format §1).
    /// Keys borrow from the values being encoded: a container's record looks its
    /// references' class up once per reference, and owned keys cost two allocations each.
    globals: HashMap<(&'v str, &'v str), u32>,
    /// Globals that occur more than once in what is being encoded: only those are
    /// memoized, so a record without repetition has no memo opcode at all.
    repeated: HashSet<(&'v str, &'v str)>,
    /// Memoize as Python does ([`encode_like_python`]) rather than repeated globals only.
    memo_all: bool,
    /// The memo index the next `BINPUT` gets.
    next_memo: u32,
    /// With `memo_all`: the memo index of each str or bytes value CPython keeps one
    /// shared object of (empty, or one character below U+0100 / one byte), by kind and
    /// bytes.
    shared: HashMap<(bool, Vec<u8>), u32>,
    /// The steps of the container being laid out, reused from one container to the
    /// next (one allocation per record rather than one per container).
    scratch: Vec<Step<'v>>,
}

/// The globals that occur more than once among `values` (one count for `extra`, the
/// record's class).
fn repeated_globals<'a>(
    values: &[&'a Value],
    extra: Option<(&'a str, &'a str)>,
) -> HashSet<(&'a str, &'a str)> {
    let mut seen = Seen::default();
    if let Some(class) = extra {
        seen.insert(class);
    }
    let mut repeated = HashSet::new();
    let mut stack: Vec<&Value> = values.to_vec();
    while let Some(value) = stack.pop() {
        match value {
            Value::Global { module, name } if !seen.insert((module, name)) => {
                repeated.insert((module.as_str(), name.as_str()));
            }
            Value::Tuple(items)
            | Value::List(items)
            | Value::Set(items)
            | Value::FrozenSet(items) => stack.extend(items),
            Value::Dict(pairs) | Value::DictItems { items: pairs, .. } => {
                if let Value::DictItems { object, .. } = value {
                    stack.push(object);
                }
                for (k, v) in pairs {
                    stack.push(k);
                    stack.push(v);
                }
            }
            Value::PersistentRef(inner) => stack.push(inner),
            Value::Reduce { callable, args } => {
                stack.push(callable);
                stack.push(args);
            }
            Value::NewObj { cls, args } => {
                stack.push(cls);
                stack.push(args);
            }
            Value::Inst { args, .. } => stack.extend(args),
            Value::Obj { cls, args } => {
                stack.push(cls);
                stack.extend(args);
            }
            Value::Build { object, state } => {
                stack.push(object);
                stack.push(state);
            }
            Value::ListItems { object, items } => {
                stack.push(object);
                stack.extend(items);
            }
            _ => {}
        }
    }
    repeated
}

/// The globals met so far: a record names few distinct classes (its own, and those of
/// the objects it refers to), so a short list searched in order beats hashing each of
/// its references' class; a set takes over when there are many.
#[derive(Default)]
struct Seen<'a> {
    few: Vec<(&'a str, &'a str)>,
    many: HashSet<(&'a str, &'a str)>,
}

impl<'a> Seen<'a> {
    /// Few enough distinct globals to search in order.
    const FEW_MAX: usize = 8;

    /// Adds `global`; false if it was there.
    fn insert(&mut self, global: (&'a str, &'a str)) -> bool {
        if self.few.contains(&global) {
            return false;
        }
        if self.few.len() < Self::FEW_MAX {
            self.few.push(global);
            return true;
        }
        self.many.insert(global)
    }
}

/// One step of writing: a value still to write (with its nesting depth), an opcode, or
/// the two lines of a `GLOBAL`/`INST`.
#[derive(Debug)]
enum Step<'v> {
    Value(&'v Value, usize),
    Op(u8),
    Lines(&'v str, &'v str),
    /// A `GLOBAL` memoized as [`Encoder::global`] decides.
    Global(&'v str, &'v str),
    /// With `memo_all`: a `BINPUT` for what was just written.
    Memo,
}

/// The steps of one container, in writing order; its children sit at `depth`.
#[derive(Debug)]
struct Sequence<'v> {
    steps: Vec<Step<'v>>,
    depth: usize,
    /// Memoize containers as Python does ([`encode_like_python`]).
    memo_all: bool,
}

impl<'v> Sequence<'v> {
    fn op(&mut self, opcode: u8) {
        self.steps.push(Step::Op(opcode));
    }

    /// A `BINPUT` here when memoizing as Python does.
    fn memo(&mut self) {
        if self.memo_all {
            self.steps.push(Step::Memo);
        }
    }

    fn child(&mut self, value: &'v Value) {
        self.steps.push(Step::Value(value, self.depth));
    }

    fn children(&mut self, values: &'v [Value]) {
        for value in values {
            self.child(value);
        }
    }

    fn container(&mut self, value: &'v Value) -> Result<(), PickleError> {
        match value {
            Value::Tuple(items) => match items.as_slice() {
                [] => self.op(op::EMPTY_TUPLE),
                [_] => {
                    self.children(items);
                    self.op(op::TUPLE1);
                    self.memo();
                }
                [_, _] => {
                    self.children(items);
                    self.op(op::TUPLE2);
                    self.memo();
                }
                [_, _, _] => {
                    self.children(items);
                    self.op(op::TUPLE3);
                    self.memo();
                }
                _ => {
                    self.op(op::MARK);
                    self.children(items);
                    self.op(op::TUPLE);
                    self.memo();
                }
            },
            Value::List(items) => {
                self.op(op::EMPTY_LIST);
                self.memo();
                self.appends(items);
            }
            Value::Dict(pairs) => {
                if pairs.iter().any(|(k, _)| !hashable(k)) {
                    return Err(refuse("unhashable dict key"));
                }
                self.op(op::EMPTY_DICT);
                self.memo();
                self.set_items(pairs);
            }
            Value::Set(items) => self.set("set", items)?,
            Value::FrozenSet(items) => self.set("frozenset", items)?,
            Value::PersistentRef(pid) => {
                self.child(pid);
                self.op(op::BINPERSID);
            }
            Value::Reduce { callable, args } => {
                require_tuple(args, "REDUCE")?;
                self.child(callable);
                self.child(args);
                self.op(op::REDUCE);
                self.memo();
            }
            Value::NewObj { cls, args } => {
                require_tuple(args, "NEWOBJ")?;
                self.child(cls);
                self.child(args);
                self.op(op::NEWOBJ);
                self.memo();
            }
            Value::Inst { module, name, args } => {
                if !module.is_ascii() || !name.is_ascii() {
                    return Err(refuse("INST names must be ASCII"));
                }
                self.op(op::MARK);
                self.children(args);
                self.op(op::INST);
                self.steps.push(Step::Lines(module, name));
            }
            Value::Obj { cls, args } => {
                self.op(op::MARK);
                self.child(cls);
                self.children(args);
                self.op(op::OBJ);
            }
            Value::Build { object, state } => {
                self.child(object);
                self.child(state);
                self.op(op::BUILD);
            }
            Value::ListItems { object, items } => {
                self.child(object);
                self.appends(items);
            }
            Value::DictItems { object, items } => {
                self.child(object);
                self.set_items(items);
            }
            // Leaves are written by `Encoder::leaf`.
            Value::None
            | Value::Bool(_)
            | Value::Int(_)
            | Value::BigInt(_)
            | Value::Float(_)
            | Value::Bytes(_)
            | Value::Str(_)
            | Value::Global { .. } => self.child(value),
        }
        Ok(())
    }

    /// Python's `_batch_appends` for binary protocols.
    fn appends(&mut self, items: &'v [Value]) {
        for batch in items.chunks(BATCH_SIZE) {
            if let [item] = batch {
                self.child(item);
                self.op(op::APPEND);
            } else {
                self.op(op::MARK);
                self.children(batch);
                self.op(op::APPENDS);
            }
        }
    }

    /// Python's `_batch_setitems`.
    fn set_items(&mut self, pairs: &'v [(Value, Value)]) {
        for batch in pairs.chunks(BATCH_SIZE) {
            if let [(k, v)] = batch {
                self.child(k);
                self.child(v);
                self.op(op::SETITEM);
            } else {
                self.op(op::MARK);
                for (k, v) in batch {
                    self.child(k);
                    self.child(v);
                }
                self.op(op::SETITEMS);
            }
        }
    }

    /// `builtins.set([items])` as protocol 3 writes it: `GLOBAL`, the list, `TUPLE1`,
    /// `REDUCE`.
    fn set(&mut self, name: &'static str, items: &'v [Value]) -> Result<(), PickleError> {
        if items.iter().any(|item| !hashable(item)) {
            return Err(refuse("unhashable set item"));
        }
        if self.memo_all {
            self.steps.push(Step::Global("builtins", name));
        } else {
            self.op(op::GLOBAL);
            self.steps.push(Step::Lines("builtins", name));
        }
        self.op(op::EMPTY_LIST);
        self.memo();
        self.appends(items);
        self.op(op::TUPLE1);
        self.memo();
        self.op(op::REDUCE);
        self.memo();
        Ok(())
    }
}

fn refuse(what: impl Into<String>) -> PickleError {
    PickleError::NotEncodable(what.into())
}

impl<'v> Encoder<'v> {
    fn header(&mut self) {
        self.out.extend_from_slice(&[op::PROTO, op::WRITE_PROTOCOL]);
    }

    fn pickle(&mut self, value: &'v Value) -> Result<(), PickleError> {
        self.header();
        self.value(value)?;
        self.out.push(op::STOP);
        Ok(())
    }

    /// Writes `root` without recursion: unoptimized builds spend kilobytes of machine
    /// stack per recursive level, so an explicit stack of steps keeps the nesting limit
    /// independent of the build and of the caller's thread.
    fn value(&mut self, root: &'v Value) -> Result<(), PickleError> {
        self.value_at(root, 0)
    }

    /// [`Encoder::value`] for a value nested `depth` levels deep.
    fn value_at(&mut self, root: &'v Value, depth: usize) -> Result<(), PickleError> {
        let mut steps: Vec<Step<'v>> = vec![Step::Value(root, depth)];
        while let Some(step) = steps.pop() {
            let (value, depth) = match step {
                Step::Op(opcode) => {
                    self.out.push(opcode);
                    continue;
                }
                Step::Lines(module, name) => {
                    self.lines(module, name)?;
                    continue;
                }
                Step::Global(module, name) => {
                    self.global(module, name)?;
                    continue;
                }
                Step::Memo => {
                    self.memoize()?;
                    continue;
                }
                Step::Value(value, depth) => (value, depth),
            };
            if self.leaf(value)? {
                continue;
            }
            if depth >= limits::NESTING_MAX {
                return Err(PickleError::TooDeep {
                    limit: limits::NESTING_MAX,
                });
            }
            let mut seq = Sequence {
                steps: std::mem::take(&mut self.scratch),
                depth: depth + 1,
                memo_all: self.memo_all,
            };
            seq.container(value)?;
            steps.extend(seq.steps.drain(..).rev());
            self.scratch = seq.steps;
        }
        Ok(())
    }

    /// Writes a value that contains no other value; `false` for containers.
    fn leaf(&mut self, value: &'v Value) -> Result<bool, PickleError> {
        if self.memo_all
            && let Some(key) = shared_key(value)
        {
            if let Some(&index) = self.shared.get(&key) {
                self.get(index);
            } else {
                self.leaf_once(value)?;
                let index = self.memoize()?;
                self.shared.insert(key, index);
            }
            return Ok(true);
        }
        let written = self.leaf_once(value)?;
        if written && self.memo_all && matches!(value, Value::Str(_) | Value::Bytes(_)) {
            self.memoize()?;
        }
        Ok(written)
    }

    /// [`Encoder::leaf`] without the memo.
    fn leaf_once(&mut self, value: &'v Value) -> Result<bool, PickleError> {
        match value {
            Value::None => self.out.push(op::NONE),
            Value::Bool(true) => self.out.push(op::NEWTRUE),
            Value::Bool(false) => self.out.push(op::NEWFALSE),
            Value::Int(i) => self.int(*i),
            Value::BigInt(bytes) => match text::int_from_le_twos_complement(bytes) {
                Int::Small(i) => self.int(i),
                Int::Big(bytes) => self.long(&bytes)?,
            },
            Value::Float(f) => write::float(&mut self.out, *f),
            Value::Bytes(bytes) => write::bytes(&mut self.out, bytes)?,
            Value::Str(s) => write::str(&mut self.out, s)?,
            Value::Global { module, name } => self.global(module, name)?,
            _ => return Ok(false),
        }
        Ok(true)
    }

    fn int(&mut self, i: i64) {
        write::int(&mut self.out, i);
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

    fn global(&mut self, module: &'v str, name: &'v str) -> Result<(), PickleError> {
        if let Some(&index) = self.globals.get(&(module, name)) {
            self.get(index);
            return Ok(());
        }
        self.out.push(op::GLOBAL);
        self.lines(module, name)?;
        if !self.memo_all && !self.repeated.contains(&(module, name)) {
            return Ok(());
        }
        let index = self.memoize()?;
        self.globals.insert((module, name), index);
        Ok(())
    }

    /// Puts what was just written in the memo (`BINPUT`/`LONG_BINPUT`); its index.
    fn memoize(&mut self) -> Result<u32, PickleError> {
        let index = self.next_memo;
        self.next_memo = index
            .checked_add(1)
            .ok_or_else(|| refuse("too many memoized values"))?;
        match u8::try_from(index) {
            Ok(i) => self.out.extend_from_slice(&[op::BINPUT, i]),
            Err(_) => {
                self.out.push(op::LONG_BINPUT);
                self.out.extend_from_slice(&index.to_le_bytes());
            }
        }
        Ok(index)
    }

    /// Fetches memo entry `index` (`BINGET`/`LONG_BINGET`).
    fn get(&mut self, index: u32) {
        match u8::try_from(index) {
            Ok(i) => self.out.extend_from_slice(&[op::BINGET, i]),
            Err(_) => {
                self.out.push(op::LONG_BINGET);
                self.out.extend_from_slice(&index.to_le_bytes());
            }
        }
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

/// The key of a str or bytes value CPython keeps one shared object of: the empty ones,
/// one-character strs below U+0100 and one-byte bytes.  The pickler memoizes by object, so
/// a second occurrence of such a value is a `BINGET`.
fn shared_key(value: &Value) -> Option<(bool, Vec<u8>)> {
    match value {
        Value::Str(s) => {
            let mut chars = s.chars();
            match (chars.next(), chars.next()) {
                (None, _) => Some((true, Vec::new())),
                (Some(c), None) if u32::from(c) < 0x100 => Some((true, s.as_bytes().to_vec())),
                _ => None,
            }
        }
        Value::Bytes(b) if b.len() <= 1 => Some((false, b.clone())),
        _ => None,
    }
}

fn require_tuple(args: &Value, opcode: &str) -> Result<(), PickleError> {
    if matches!(args, Value::Tuple(_)) {
        Ok(())
    } else {
        Err(refuse(format!("{opcode} arguments must be a tuple")))
    }
}

/// Whether Python could hash the value (lists, dicts and sets cannot be keys); tuples are
/// walked without recursion.
fn hashable(value: &Value) -> bool {
    // The usual key (a str, an int) answers without the walk and its allocation.
    match value {
        Value::List(_) | Value::Dict(_) | Value::Set(_) => return false,
        Value::Tuple(_) => {}
        _ => return true,
    }
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
