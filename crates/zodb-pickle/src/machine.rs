//! The pickle machine: runs protocol 0–3 opcodes over untrusted bytes into an arena of
//! nodes, in one of two modes.
//!
//! * [`Mode::Load`] builds every value, as Python's `Unpickler.load` would, except that
//!   classes are never imported: globals, instances and persistent references become
//!   nodes that `convert.rs` turns into [`crate::Value`]s.
//! * [`Mode::NoLoad`] is zodbpickle's `noload`, which ZODB's `referencesf` (pack's garbage
//!   collector, `fsrefs`) runs: `GLOBAL` pushes something that behaves as `None`;
//!   `REDUCE`, `NEWOBJ` and `INST` push `None`; `OBJ` leaves its class; `BUILD` pops the
//!   state; `APPEND`/`SETITEM` into `None` are dropped; each persistent id is collected and
//!   `None` pushed in its place.  Everything else runs as in `Load`.
//!
//! Both modes follow zodbpickle's C unpickler (`_pickle_33.c`) operation by operation —
//! which stack checks each opcode makes, what it pops, what it accepts — because the
//! reference scanner must fail exactly where Python fails (record-format §4.1, §5).
//!
//! Invariants that keep hostile input harmless:
//! * The stack and the memo hold node ids, never values, so `DUP` and memo fetches alias a
//!   node: a list memoized and then filled by `APPEND` shows its items wherever it is
//!   fetched (ZODB's weak reference form C depends on it).
//! * Each opcode creates at most one node, and every length field is checked against the
//!   bytes that remain before anything is copied, so memory stays linear in the input.
//! * Nothing here recurses; the depth of the decoded value is only a concern of
//!   `convert.rs`.

use std::collections::HashMap;

use crate::error::PickleError;
use crate::opcodes as op;
use crate::text::{self, Int, IntText};

/// Index of a node in [`Machine::nodes`].
pub(crate) type NodeId = usize;

/// The shared `None` node, created first in every machine.
pub(crate) const NONE_ID: NodeId = 0;

/// Returned for an id that is not in the arena (never happens: ids come from the arena).
static MISSING: Node = Node::None;

/// How the machine treats objects; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Load,
    NoLoad,
}

/// One value in the arena.
#[derive(Debug)]
pub(crate) enum Node {
    None,
    Bool(bool),
    Int(i64),
    /// Minimal two's complement, only for values outside `i64`.
    BigInt(Vec<u8>),
    Float(f64),
    Bytes(Vec<u8>),
    Str(String),
    /// A `str` holding lone surrogates, as UTF-8 with surrogates encoded like any other
    /// code point.  Only in `NoLoad` mode: `Load` refuses it, as a Rust `String` cannot
    /// hold it.
    SurrogateStr(Vec<u8>),
    /// Items are fixed at creation, so hashability is computed once.
    Tuple {
        items: Vec<NodeId>,
        hashable: bool,
    },
    List(Vec<NodeId>),
    Dict(Vec<(NodeId, NodeId)>),
    Set {
        items: Vec<NodeId>,
        frozen: bool,
    },
    /// In `NoLoad` mode this behaves as `None` (noload pushes `None` for a `GLOBAL`); the
    /// names are kept for diagnostics, decoded leniently since noload never decodes them.
    Global(Box<GlobalName>),
    PersistentRef(NodeId),
    Object(Box<Object>),
}

// Boxing the rare large variants keeps a node at four words: the arena can hold one node
// per input byte, so its size is the decoder's memory factor.
const _: () = assert!(std::mem::size_of::<Node>() <= 32);

/// Module and name of a `GLOBAL`.
#[derive(Debug)]
pub(crate) struct GlobalName {
    pub(crate) module: String,
    pub(crate) name: String,
}

/// An object made by `REDUCE`, `NEWOBJ`, `INST` or `OBJ`, and what was done to it since.
#[derive(Debug)]
pub(crate) struct Object {
    pub(crate) kind: ObjectKind,
    pub(crate) changes: Vec<Change>,
}

/// How an object came to be.
#[derive(Debug)]
pub(crate) enum ObjectKind {
    Reduce {
        callable: NodeId,
        args: NodeId,
    },
    NewObj {
        cls: NodeId,
        args: NodeId,
    },
    Inst {
        module: String,
        name: String,
        args: Vec<NodeId>,
    },
    Obj {
        cls: NodeId,
        args: Vec<NodeId>,
    },
}

/// What happened to an object after it was made, in order.
#[derive(Debug)]
pub(crate) enum Change {
    Append(Vec<NodeId>),
    SetItems(Vec<(NodeId, NodeId)>),
    Build(NodeId),
}

/// The machine: input cursor, arena, stack, marks and memo.
#[derive(Debug)]
pub(crate) struct Machine<'a> {
    input: &'a [u8],
    pos: usize,
    mode: Mode,
    nodes: Vec<Node>,
    stack: Vec<NodeId>,
    /// Stack heights at each `MARK`, as C's separate mark stack.
    marks: Vec<usize>,
    /// Shared by consecutive pickles run on one machine (P1 and P2 of a record).
    memo: HashMap<u64, NodeId>,
    /// `NoLoad` only: every persistent id met, in order, duplicates kept.
    pids: Vec<NodeId>,
}

impl<'a> Machine<'a> {
    pub(crate) fn new(input: &'a [u8], mode: Mode) -> Self {
        Machine {
            input,
            pos: 0,
            mode,
            nodes: vec![Node::None],
            stack: Vec::new(),
            marks: Vec::new(),
            memo: HashMap::new(),
            pids: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: NodeId) -> &Node {
        self.nodes.get(id).unwrap_or(&MISSING)
    }

    /// Number of nodes in the arena.
    pub(crate) fn node_count(&self) -> usize {
        self.nodes.len()
    }

    /// The persistent ids collected in `NoLoad` mode.
    pub(crate) fn pids(&self) -> &[NodeId] {
        &self.pids
    }

    /// Runs one pickle from the current position through its `STOP` and returns its value.
    /// The stack and marks start empty (as in `load()`/`noload()`); the memo carries over.
    pub(crate) fn run(&mut self) -> Result<NodeId, PickleError> {
        self.stack.clear();
        self.marks.clear();
        loop {
            let offset = self.pos;
            let opcode = self.byte(offset)?;
            if let Some(result) = self.step(opcode, offset)? {
                return Ok(result);
            }
        }
    }

    // ---- input -------------------------------------------------------------------------

    fn take(&mut self, n: usize, offset: usize) -> Result<&'a [u8], PickleError> {
        let input: &'a [u8] = self.input;
        let end = self
            .pos
            .checked_add(n)
            .ok_or(PickleError::Truncated { offset })?;
        let bytes = input
            .get(self.pos..end)
            .ok_or(PickleError::Truncated { offset })?;
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self, offset: usize) -> Result<[u8; N], PickleError> {
        let bytes = self.take(N, offset)?;
        bytes
            .try_into()
            .map_err(|_| PickleError::Truncated { offset })
    }

    fn byte(&mut self, offset: usize) -> Result<u8, PickleError> {
        Ok(u8::from_le_bytes(self.array::<1>(offset)?))
    }

    fn u32_le(&mut self, offset: usize) -> Result<u32, PickleError> {
        Ok(u32::from_le_bytes(self.array::<4>(offset)?))
    }

    fn i32_le(&mut self, offset: usize) -> Result<i32, PickleError> {
        Ok(i32::from_le_bytes(self.array::<4>(offset)?))
    }

    /// A length read from the input, checked against the bytes that remain (so nothing is
    /// allocated for a length the input cannot back).
    fn counted(&mut self, len: usize, offset: usize) -> Result<&'a [u8], PickleError> {
        self.take(len, offset)
    }

    /// The next line without its `\n`.  Python's readline would return a last line without
    /// newline at the end of the input; every opcode then fails on the missing `STOP`, so
    /// failing here already is the same outcome.
    fn line(&mut self, offset: usize) -> Result<&'a [u8], PickleError> {
        let input: &'a [u8] = self.input;
        let rest = input
            .get(self.pos..)
            .ok_or(PickleError::Truncated { offset })?;
        let len = rest
            .iter()
            .position(|&b| b == b'\n')
            .ok_or(PickleError::Truncated { offset })?;
        let line = rest.get(..len).ok_or(PickleError::Truncated { offset })?;
        self.pos += len + 1;
        Ok(line)
    }

    /// A line that C's `len < 2` check requires to be non-empty ("pickle data was
    /// truncated").
    fn nonempty_line(&mut self, offset: usize) -> Result<&'a [u8], PickleError> {
        let line = self.line(offset)?;
        if line.is_empty() {
            return Err(malformed(offset, "empty line argument"));
        }
        Ok(line)
    }

    // ---- arena and stack ---------------------------------------------------------------

    fn add(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn push_node(&mut self, node: Node) {
        let id = self.add(node);
        self.stack.push(id);
    }

    fn pop(&mut self, offset: usize) -> Result<NodeId, PickleError> {
        self.stack
            .pop()
            .ok_or(PickleError::StackUnderflow { offset })
    }

    fn top(&self, offset: usize) -> Result<NodeId, PickleError> {
        self.stack
            .last()
            .copied()
            .ok_or(PickleError::StackUnderflow { offset })
    }

    /// Pops the topmost mark and returns the stack height it recorded.  The C unpickler
    /// has no fence: opcodes may pop below a mark, so the height can exceed the stack.
    /// The stack entries from `height` up, taken as (key, value) pairs; an odd
    /// last one is left out, as the C unpickler does.
    fn pairs_above(&self, height: usize) -> Vec<(NodeId, NodeId)> {
        self.stack
            .get(height..)
            .unwrap_or_default()
            .chunks_exact(2)
            .filter_map(|pair| match pair {
                [k, v] => Some((*k, *v)),
                _ => None,
            })
            .collect()
    }

    fn marker(&mut self, offset: usize) -> Result<usize, PickleError> {
        self.marks.pop().ok_or(PickleError::MissingMark { offset })
    }

    /// C `Pdata_clear`: keep the first `height` items; a larger height is no error.
    fn clear_to(&mut self, height: usize) {
        self.stack.truncate(height);
    }

    /// C `Pdata_poptuple`/`Pdata_poplist`: everything above `height`; a height above the
    /// stack fails (C asks for a tuple of negative size).
    fn split_from(&mut self, height: usize, offset: usize) -> Result<Vec<NodeId>, PickleError> {
        if height > self.stack.len() {
            return Err(PickleError::StackUnderflow { offset });
        }
        Ok(self.stack.split_off(height))
    }

    fn new_tuple(&mut self, items: Vec<NodeId>) -> Node {
        let hashable = items.iter().all(|&id| self.hashable(id));
        Node::Tuple { items, hashable }
    }

    /// Whether Python could use the value as a dict key or set item.
    pub(crate) fn hashable(&self, id: NodeId) -> bool {
        match self.node(id) {
            Node::List(_) | Node::Dict(_) => false,
            Node::Set { frozen, .. } => *frozen,
            Node::Tuple { hashable, .. } => *hashable,
            _ => true,
        }
    }

    /// Whether `noload` sees `None` here: `None` itself, and the stand-in for a `GLOBAL`.
    fn none_like(&self, id: NodeId) -> bool {
        self.mode == Mode::NoLoad && matches!(self.node(id), Node::None | Node::Global(_))
    }

    fn int_node(value: Int) -> Node {
        match value {
            Int::Small(i) => Node::Int(i),
            Int::Big(bytes) => Node::BigInt(bytes),
        }
    }

    /// A node for text that passed Python's decoder (UTF-8 with surrogates allowed).
    fn str_node(&self, wtf8: Vec<u8>, offset: usize) -> Result<Node, PickleError> {
        match String::from_utf8(wtf8) {
            Ok(s) => Ok(Node::Str(s)),
            Err(e) => match self.mode {
                Mode::NoLoad => Ok(Node::SurrogateStr(e.into_bytes())),
                Mode::Load => Err(malformed(
                    offset,
                    "str holds a lone surrogate, which a Rust String cannot hold",
                )),
            },
        }
    }

    /// A Python-2 string: ZODB's unpickler decodes it as strict ASCII.
    fn py2_string(bytes: Vec<u8>, offset: usize) -> Result<Node, PickleError> {
        if !bytes.is_ascii() {
            return Err(malformed(offset, "Python 2 string is not ASCII"));
        }
        String::from_utf8(bytes)
            .map(Node::Str)
            .map_err(|_| malformed(offset, "Python 2 string is not ASCII"))
    }

    fn memo_get(&mut self, key: u64, offset: usize) -> Result<(), PickleError> {
        let id = *self
            .memo
            .get(&key)
            .ok_or(PickleError::BadMemo { key, offset })?;
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u64, offset: usize) -> Result<(), PickleError> {
        let id = self.top(offset)?;
        self.memo.insert(key, id);
        Ok(())
    }

    // ---- opcodes -----------------------------------------------------------------------

    /// Runs one opcode; `Some(value)` at `STOP`.
    fn step(&mut self, opcode: u8, offset: usize) -> Result<Option<NodeId>, PickleError> {
        match opcode {
            op::STOP => return self.pop(offset).map(Some),
            op::MARK => self.marks.push(self.stack.len()),
            op::POP => {
                let len = self.stack.len();
                if self.marks.last() == Some(&len) {
                    self.marks.pop();
                } else {
                    self.pop(offset)?;
                }
            }
            op::POP_MARK => {
                let height = self.marker(offset)?;
                self.clear_to(height);
            }
            op::DUP => {
                let top = self.top(offset)?;
                self.stack.push(top);
            }

            op::NONE => self.stack.push(NONE_ID),
            op::NEWTRUE => self.push_node(Node::Bool(true)),
            op::NEWFALSE => self.push_node(Node::Bool(false)),
            op::INT => {
                let line = self.nonempty_line(offset)?;
                let node = match text::parse_int_line(line).map_err(|r| malformed(offset, r))? {
                    IntText::Bool(b) => Node::Bool(b),
                    IntText::Int(i) => Self::int_node(i),
                };
                self.push_node(node);
            }
            op::BININT => {
                let v = self.i32_le(offset)?;
                self.push_node(Node::Int(i64::from(v)));
            }
            op::BININT1 => {
                let v = self.byte(offset)?;
                self.push_node(Node::Int(i64::from(v)));
            }
            op::BININT2 => {
                let v = u16::from_le_bytes(self.array::<2>(offset)?);
                self.push_node(Node::Int(i64::from(v)));
            }
            op::LONG => {
                let line = self.nonempty_line(offset)?;
                let v = text::parse_long_line(line).map_err(|r| malformed(offset, r))?;
                self.push_node(Self::int_node(v));
            }
            op::LONG1 => {
                let n = self.byte(offset)?;
                let bytes = self.counted(usize::from(n), offset)?;
                self.push_node(Self::int_node(text::int_from_le_twos_complement(bytes)));
            }
            op::LONG4 => {
                let n = self.i32_le(offset)?;
                let n = usize::try_from(n)
                    .map_err(|_| malformed(offset, "LONG pickle has negative byte count"))?;
                let bytes = self.counted(n, offset)?;
                self.push_node(Self::int_node(text::int_from_le_twos_complement(bytes)));
            }
            op::FLOAT => {
                let line = self.nonempty_line(offset)?;
                let v = text::parse_float_line(line).map_err(|r| malformed(offset, r))?;
                self.push_node(Node::Float(v));
            }
            op::BINFLOAT => {
                let v = f64::from_be_bytes(self.array::<8>(offset)?);
                self.push_node(Node::Float(v));
            }

            op::BINBYTES => {
                let n = self.u32_le(offset)?;
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated { offset })?;
                let bytes = self.counted(n, offset)?;
                self.push_node(Node::Bytes(bytes.to_vec()));
            }
            op::SHORT_BINBYTES => {
                let n = self.byte(offset)?;
                let bytes = self.counted(usize::from(n), offset)?;
                self.push_node(Node::Bytes(bytes.to_vec()));
            }
            op::STRING => {
                let line = self.nonempty_line(offset)?;
                let bytes = text::parse_string_line(line).map_err(|r| malformed(offset, r))?;
                self.push_node(Self::py2_string(bytes, offset)?);
            }
            op::BINSTRING => {
                let n = self.i32_le(offset)?;
                let n = usize::try_from(n)
                    .map_err(|_| malformed(offset, "BINSTRING pickle has negative byte count"))?;
                let bytes = self.counted(n, offset)?;
                self.push_node(Self::py2_string(bytes.to_vec(), offset)?);
            }
            op::SHORT_BINSTRING => {
                let n = self.byte(offset)?;
                let bytes = self.counted(usize::from(n), offset)?;
                self.push_node(Self::py2_string(bytes.to_vec(), offset)?);
            }
            op::UNICODE => {
                let line = self.line(offset)?;
                let wtf8 =
                    text::decode_raw_unicode_escape(line).map_err(|r| malformed(offset, r))?;
                let node = self.str_node(wtf8, offset)?;
                self.push_node(node);
            }
            op::BINUNICODE => {
                let n = self.u32_le(offset)?;
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated { offset })?;
                let bytes = self.counted(n, offset)?;
                text::check_utf8_surrogatepass(bytes).map_err(|r| malformed(offset, r))?;
                let node = self.str_node(bytes.to_vec(), offset)?;
                self.push_node(node);
            }

            op::EMPTY_TUPLE => self.push_node(Node::Tuple {
                items: Vec::new(),
                hashable: true,
            }),
            op::TUPLE1 | op::TUPLE2 | op::TUPLE3 => {
                let n = usize::from(opcode - op::TUPLE1) + 1;
                let mut items = vec![NONE_ID; n];
                for slot in items.iter_mut().rev() {
                    *slot = self.pop(offset)?;
                }
                let node = self.new_tuple(items);
                self.push_node(node);
            }
            op::TUPLE => {
                let height = self.marker(offset)?;
                let items = self.split_from(height, offset)?;
                let node = self.new_tuple(items);
                self.push_node(node);
            }
            op::EMPTY_LIST => self.push_node(Node::List(Vec::new())),
            op::LIST => {
                let height = self.marker(offset)?;
                let items = self.split_from(height, offset)?;
                self.push_node(Node::List(items));
            }
            op::EMPTY_DICT => self.push_node(Node::Dict(Vec::new())),
            op::DICT => {
                let height = self.marker(offset)?;
                // C pairs the items above the mark and silently ignores an odd last one.
                let pairs = self.pairs_above(height);
                if pairs.iter().any(|&(k, _)| !self.hashable(k)) {
                    return Err(malformed(offset, "unhashable dict key"));
                }
                self.clear_to(height);
                self.push_node(Node::Dict(pairs));
            }
            op::APPEND => {
                let x = self.stack.len().checked_sub(1);
                self.append(x, offset)?;
            }
            op::APPENDS => {
                let x = self.marker(offset)?;
                self.append(Some(x), offset)?;
            }
            op::SETITEM => {
                let x = self.stack.len().checked_sub(2);
                self.set_items(x, offset)?;
            }
            op::SETITEMS => {
                let x = self.marker(offset)?;
                self.set_items(Some(x), offset)?;
            }

            op::GET => {
                let line = self.nonempty_line(offset)?;
                let key = text::parse_memo_key_line(line).map_err(|r| malformed(offset, r))?;
                let key = u64::try_from(key).map_err(|_| malformed(offset, "negative GET key"))?;
                self.memo_get(key, offset)?;
            }
            op::BINGET => {
                let key = self.byte(offset)?;
                self.memo_get(u64::from(key), offset)?;
            }
            op::LONG_BINGET => {
                let key = self.u32_le(offset)?;
                self.memo_get(u64::from(key), offset)?;
            }
            op::PUT => {
                let line = self.nonempty_line(offset)?;
                self.top(offset)?;
                let key = text::parse_memo_key_line(line).map_err(|r| malformed(offset, r))?;
                let key =
                    u64::try_from(key).map_err(|_| malformed(offset, "negative PUT argument"))?;
                self.memo_put(key, offset)?;
            }
            op::BINPUT => {
                let key = self.byte(offset)?;
                self.memo_put(u64::from(key), offset)?;
            }
            op::LONG_BINPUT => {
                let key = self.u32_le(offset)?;
                self.memo_put(u64::from(key), offset)?;
            }

            op::GLOBAL => self.global(offset)?,
            op::REDUCE => self.reduce(offset)?,
            op::NEWOBJ => self.newobj(offset)?,
            op::INST => self.inst(offset)?,
            op::OBJ => self.obj(offset)?,
            op::BUILD => self.build(offset)?,
            op::PERSID => {
                let line = self.nonempty_line(offset)?;
                let pid = self.add(Node::Bytes(line.to_vec()));
                self.persistent(pid);
            }
            op::BINPERSID => {
                let pid = self.pop(offset)?;
                self.persistent(pid);
            }

            op::PROTO => {
                let version = self.byte(offset)?;
                if version > op::HIGHEST_PROTOCOL {
                    return Err(PickleError::UnsupportedProtocol(version));
                }
            }
            op::EXT1 | op::EXT2 | op::EXT4 => {
                return Err(PickleError::UnsupportedOpcode {
                    op: opcode,
                    offset,
                    reason: "the extension registry is never used by ZODB",
                });
            }
            other if op::is_protocol_4_or_5(other) => {
                return Err(PickleError::UnsupportedOpcode {
                    op: other,
                    offset,
                    reason: "protocol 4/5 opcode; zodbpickle reads protocols 0 to 3 only",
                });
            }
            other => return Err(PickleError::UnknownOpcode { op: other, offset }),
        }
        Ok(None)
    }

    /// `APPEND`/`APPENDS` on the target just below stack height `x` (C `do_append`, and
    /// `do_noload_append` in `NoLoad` mode).
    fn append(&mut self, x: Option<usize>, offset: usize) -> Result<(), PickleError> {
        let len = self.stack.len();
        let x = x
            .filter(|&x| x > 0 && x <= len)
            .ok_or(PickleError::StackUnderflow { offset })?;
        if x == len {
            return Ok(());
        }
        let target = *self
            .stack
            .get(x - 1)
            .ok_or(PickleError::StackUnderflow { offset })?;
        if self.none_like(target) {
            self.clear_to(x);
            return Ok(());
        }
        let items = self.stack.split_off(x);
        match self.nodes.get_mut(target) {
            Some(Node::List(list)) => list.extend(items),
            Some(Node::Object(object)) => match object.changes.last_mut() {
                Some(Change::Append(previous)) => previous.extend(items),
                _ => object.changes.push(Change::Append(items)),
            },
            _ => return Err(malformed(offset, "APPEND target is not a list")),
        }
        Ok(())
    }

    /// `SETITEM`/`SETITEMS` on the target just below stack height `x` (C `do_setitems`,
    /// and `do_noload_setitems` in `NoLoad` mode).
    fn set_items(&mut self, x: Option<usize>, offset: usize) -> Result<(), PickleError> {
        let len = self.stack.len();
        let x = x
            .filter(|&x| x > 0 && x <= len)
            .ok_or(PickleError::StackUnderflow { offset })?;
        let target = *self
            .stack
            .get(x - 1)
            .ok_or(PickleError::StackUnderflow { offset })?;
        if self.none_like(target) {
            self.clear_to(x);
            return Ok(());
        }
        if x == len {
            return Ok(());
        }
        if !(len - x).is_multiple_of(2) {
            return Err(malformed(offset, "odd number of items for SETITEMS"));
        }
        let pairs = self.pairs_above(x);
        match self.node(target) {
            Node::Dict(_) => {
                if pairs.iter().any(|&(k, _)| !self.hashable(k)) {
                    return Err(malformed(offset, "unhashable dict key"));
                }
            }
            Node::Object(_) => {}
            _ => return Err(malformed(offset, "SETITEM target is not a dict")),
        }
        self.clear_to(x);
        match self.nodes.get_mut(target) {
            Some(Node::Dict(dict)) => dict.extend(pairs),
            Some(Node::Object(object)) => match object.changes.last_mut() {
                Some(Change::SetItems(previous)) => previous.extend(pairs),
                _ => object.changes.push(Change::SetItems(pairs)),
            },
            _ => return Err(malformed(offset, "SETITEM target is not a dict")),
        }
        Ok(())
    }

    fn global(&mut self, offset: usize) -> Result<(), PickleError> {
        let node = match self.mode {
            Mode::NoLoad => {
                // noload reads the two lines and checks nothing.
                let module = self.line(offset)?;
                let name = self.line(offset)?;
                Node::Global(Box::new(GlobalName {
                    module: String::from_utf8_lossy(module).into_owned(),
                    name: String::from_utf8_lossy(name).into_owned(),
                }))
            }
            Mode::Load => {
                let module = self.nonempty_line(offset)?;
                let name = self.nonempty_line(offset)?;
                let utf8 = |b: &[u8]| {
                    std::str::from_utf8(b)
                        .map(str::to_owned)
                        .map_err(|_| malformed(offset, "GLOBAL name is not UTF-8"))
                };
                Node::Global(Box::new(GlobalName {
                    module: utf8(module)?,
                    name: utf8(name)?,
                }))
            }
        };
        self.push_node(node);
        Ok(())
    }

    fn reduce(&mut self, offset: usize) -> Result<(), PickleError> {
        if self.mode == Mode::NoLoad {
            let len = self.stack.len();
            if len < 2 {
                return Err(PickleError::StackUnderflow { offset });
            }
            self.clear_to(len - 2);
            self.stack.push(NONE_ID);
            return Ok(());
        }
        let args = self.pop(offset)?;
        let callable = self.pop(offset)?;
        if !matches!(self.node(args), Node::Tuple { .. }) {
            return Err(malformed(offset, "REDUCE arguments are not a tuple"));
        }
        let node = match self.set_from_reduce(callable, args) {
            Some(Ok(node)) => node,
            Some(Err(reason)) => return Err(malformed(offset, reason)),
            None => new_object(ObjectKind::Reduce { callable, args }),
        };
        self.push_node(node);
        Ok(())
    }

    /// `builtins.set(items)` / `builtins.frozenset(items)` as Python's protocol ≤ 3 pickler
    /// writes sets; `None` when the call is something else.
    fn set_from_reduce(
        &self,
        callable: NodeId,
        args: NodeId,
    ) -> Option<Result<Node, &'static str>> {
        let Node::Global(global) = self.node(callable) else {
            return None;
        };
        if global.module != "builtins" && global.module != "__builtin__" {
            return None;
        }
        let frozen = match global.name.as_str() {
            "set" => false,
            "frozenset" => true,
            _ => return None,
        };
        let Node::Tuple { items: args, .. } = self.node(args) else {
            return None;
        };
        let items = match args.as_slice() {
            [] => Vec::new(),
            [one] => match self.node(*one) {
                Node::List(items) | Node::Tuple { items, .. } => items.clone(),
                _ => return None,
            },
            _ => return None,
        };
        if items.iter().any(|&id| !self.hashable(id)) {
            return Some(Err("unhashable set item"));
        }
        Some(Ok(Node::Set { items, frozen }))
    }

    fn newobj(&mut self, offset: usize) -> Result<(), PickleError> {
        let args = self.pop(offset)?;
        let cls = self.pop(offset)?;
        if self.mode == Mode::NoLoad {
            self.stack.push(NONE_ID);
            return Ok(());
        }
        if !matches!(self.node(args), Node::Tuple { .. }) {
            return Err(malformed(offset, "NEWOBJ expected an arg tuple"));
        }
        // Python requires a type; plain data never is one.
        if !matches!(
            self.node(cls),
            Node::Global(_) | Node::PersistentRef(_) | Node::Object(_)
        ) {
            return Err(malformed(
                offset,
                "NEWOBJ class argument isn't a type object",
            ));
        }
        self.push_node(new_object(ObjectKind::NewObj { cls, args }));
        Ok(())
    }

    fn inst(&mut self, offset: usize) -> Result<(), PickleError> {
        let height = self.marker(offset)?;
        if self.mode == Mode::NoLoad {
            self.clear_to(height);
            self.line(offset)?;
            self.line(offset)?;
            self.stack.push(NONE_ID);
            return Ok(());
        }
        let ascii = |b: &[u8]| {
            if b.is_ascii() {
                std::str::from_utf8(b)
                    .map(str::to_owned)
                    .map_err(|_| malformed(offset, "INST name is not ASCII"))
            } else {
                Err(malformed(offset, "INST name is not ASCII"))
            }
        };
        let module = ascii(self.nonempty_line(offset)?)?;
        let name = ascii(self.nonempty_line(offset)?)?;
        let args = self.split_from(height, offset)?;
        self.push_node(new_object(ObjectKind::Inst { module, name, args }));
        Ok(())
    }

    fn obj(&mut self, offset: usize) -> Result<(), PickleError> {
        let height = self.marker(offset)?;
        let after_cls = height
            .checked_add(1)
            .ok_or(PickleError::StackUnderflow { offset })?;
        if self.mode == Mode::NoLoad {
            // noload keeps the class (the first item above the mark) and pushes nothing.
            self.clear_to(after_cls);
            return Ok(());
        }
        let args = self.split_from(after_cls, offset)?;
        let cls = self.pop(offset)?;
        self.push_node(new_object(ObjectKind::Obj { cls, args }));
        Ok(())
    }

    fn build(&mut self, offset: usize) -> Result<(), PickleError> {
        if self.mode == Mode::NoLoad {
            self.pop(offset)?;
            return Ok(());
        }
        if self.stack.len() < 2 {
            return Err(PickleError::StackUnderflow { offset });
        }
        let state = self.pop(offset)?;
        let target = self.top(offset)?;
        let state_is_none = matches!(self.node(state), Node::None);
        match self.nodes.get_mut(target) {
            Some(Node::Object(object)) => object.changes.push(Change::Build(state)),
            // Python's default __setstate__ does nothing with a None state.
            _ if state_is_none => {}
            _ => return Err(malformed(offset, "BUILD target is not an object")),
        }
        Ok(())
    }

    fn persistent(&mut self, pid: NodeId) {
        match self.mode {
            Mode::NoLoad => {
                // referencesf's persistent_load is list.append, which returns None.
                self.pids.push(pid);
                self.stack.push(NONE_ID);
            }
            Mode::Load => self.push_node(Node::PersistentRef(pid)),
        }
    }
}

fn new_object(kind: ObjectKind) -> Node {
    Node::Object(Box::new(Object {
        kind,
        changes: Vec::new(),
    }))
}

fn malformed(offset: usize, reason: &'static str) -> PickleError {
    PickleError::Malformed { offset, reason }
}
