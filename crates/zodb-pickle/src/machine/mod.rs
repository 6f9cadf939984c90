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
//!
//! Pieces: this file holds the arena, the stack, the memo and the input readers;
//! `step.rs` dispatches each opcode, and `objects.rs` runs the opcodes that fill
//! containers and make objects (where the two modes differ).

mod objects;
mod step;

use std::borrow::Cow;
use std::collections::HashMap;

use crate::error::PickleError;
use crate::text::Int;

/// Index of a node in [`Machine::nodes`].
pub(crate) type NodeId = usize;

/// The shared `None` node, created first in every machine.
pub(crate) const NONE_ID: NodeId = 0;

/// No node: a hole in the dense memo.
const NO_NODE: NodeId = NodeId::MAX;

/// Returned for an id that is not in the arena (never happens: ids come from the arena).
static MISSING: Node<'static> = Node::None;

thread_local! {
    /// The stack and mark buffers of the last machine dropped on this thread, for the
    /// next one: records are decoded one after another, and allocating and freeing two
    /// small buffers per record cost a few percent of reading one.
    static SPARE: std::cell::Cell<(Vec<NodeId>, Vec<usize>)> =
        const { std::cell::Cell::new((Vec::new(), Vec::new())) };
}

/// Largest buffer kept in [`SPARE`]: a machine that needed more gives it back to the
/// allocator rather than keep it for the thread's lifetime.
const SPARE_ITEMS_MAX: usize = 1 << 12;

impl Drop for Machine<'_> {
    fn drop(&mut self) {
        if self.stack.capacity() <= SPARE_ITEMS_MAX && self.marks.capacity() <= SPARE_ITEMS_MAX {
            SPARE.set((
                std::mem::take(&mut self.stack),
                std::mem::take(&mut self.marks),
            ));
        }
    }
}

/// Input bytes per arena node in typical records (`Machine::new` sizes the arena by it).
const NODE_BYTES_TYPICAL: usize = 8;

/// How the machine treats objects; see the module documentation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    Load,
    NoLoad,
}

/// One value in the arena.  Strings, bytes and global names borrow from the input when
/// their bytes are the value (binary opcodes): a record's strings then cost no allocation
/// until a caller keeps them.
#[derive(Debug)]
pub(crate) enum Node<'a> {
    None,
    Bool(bool),
    Int(i64),
    /// Minimal two's complement, only for values outside `i64`.
    BigInt(Vec<u8>),
    Float(f64),
    Bytes(Cow<'a, [u8]>),
    Str(Cow<'a, str>),
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
    Global(GlobalName<'a>),
    PersistentRef(NodeId),
    Object(Box<Object>),
}

// Boxing the rare large variants keeps a node at four words: the arena can hold one node
// per input byte, so its size is the decoder's memory factor.
const _: () = assert!(std::mem::size_of::<Node>() <= 32);

/// Module and name of a `GLOBAL`, kept as the two lines are in the input: `module\nname`
/// (a line holds no newline, so the first one separates them).  One slice, borrowed
/// when the bytes are UTF-8, keeps the node at four words without a box: a container's
/// record holds a global in each of its references.
#[derive(Debug)]
pub(crate) struct GlobalName<'a>(pub(crate) Cow<'a, str>);

impl GlobalName<'_> {
    pub(crate) fn module(&self) -> &str {
        self.0
            .split_once('\n')
            .map_or(&*self.0, |(module, _)| module)
    }

    pub(crate) fn name(&self) -> &str {
        self.0.split_once('\n').map_or("", |(_, name)| name)
    }
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
    nodes: Vec<Node<'a>>,
    stack: Vec<NodeId>,
    /// Stack heights at each `MARK`, as C's separate mark stack.
    marks: Vec<usize>,
    /// Shared by consecutive pickles run on one machine (P1 and P2 of a record).  Keys
    /// below [`Machine::dense_memo_max`] (all that picklers write: they count up from
    /// 0) index `dense`, where `NO_NODE` marks a hole; others go to `memo`.  A container's
    /// record fetches its references' class from the memo once per reference, and a
    /// SipHash per fetch cost more than the rest of decoding the reference.
    dense: Vec<NodeId>,
    memo: HashMap<u64, NodeId>,
    /// `NoLoad` only: every persistent id met, in order, duplicates kept.
    pids: Vec<NodeId>,
}

impl<'a> Machine<'a> {
    pub(crate) fn new(input: &'a [u8], mode: Mode) -> Self {
        // Sized for a record's usual node density (about one node per eight bytes) so
        // that the arena rarely grows: each growth is a copy and an allocation, which
        // for small records cost as much as decoding them.  Still linear in the input.
        let mut nodes = Vec::with_capacity(input.len() / NODE_BYTES_TYPICAL + 2);
        nodes.push(Node::None);
        let (mut stack, mut marks) = SPARE.take();
        stack.clear();
        marks.clear();
        Machine {
            input,
            pos: 0,
            mode,
            nodes,
            stack,
            marks,
            dense: Vec::new(),
            memo: HashMap::new(),
            pids: Vec::new(),
        }
    }

    /// Bytes consumed so far.
    pub(crate) fn position(&self) -> usize {
        self.pos
    }

    /// The node with this id.
    pub(crate) fn node(&self, id: NodeId) -> &Node<'a> {
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

    fn add(&mut self, node: Node<'a>) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }

    fn push_node(&mut self, node: Node<'a>) {
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

    fn new_tuple(&mut self, items: Vec<NodeId>) -> Node<'a> {
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

    fn int_node(value: Int) -> Node<'a> {
        match value {
            Int::Small(i) => Node::Int(i),
            Int::Big(bytes) => Node::BigInt(bytes),
        }
    }

    /// A node for text that passed Python's decoder (UTF-8 with surrogates allowed).
    fn str_node(&self, wtf8: Cow<'a, [u8]>, offset: usize) -> Result<Node<'a>, PickleError> {
        let text = match wtf8 {
            Cow::Borrowed(b) => std::str::from_utf8(b)
                .map(Cow::Borrowed)
                .map_err(|_| b.to_vec()),
            Cow::Owned(v) => String::from_utf8(v)
                .map(Cow::Owned)
                .map_err(|e| e.into_bytes()),
        };
        match text {
            Ok(s) => Ok(Node::Str(s)),
            Err(bytes) => match self.mode {
                Mode::NoLoad => Ok(Node::SurrogateStr(bytes)),
                Mode::Load => Err(malformed(
                    offset,
                    "str holds a lone surrogate, which a Rust String cannot hold",
                )),
            },
        }
    }

    /// A Python-2 string: ZODB's unpickler decodes it as strict ASCII.
    fn py2_string(bytes: Cow<'a, [u8]>, offset: usize) -> Result<Node<'a>, PickleError> {
        if !bytes.is_ascii() {
            return Err(malformed(offset, "Python 2 string is not ASCII"));
        }
        let s = match bytes {
            Cow::Borrowed(b) => std::str::from_utf8(b).map(Cow::Borrowed).ok(),
            Cow::Owned(v) => String::from_utf8(v).map(Cow::Owned).ok(),
        };
        s.map(Node::Str)
            .ok_or_else(|| malformed(offset, "Python 2 string is not ASCII"))
    }

    /// Memo keys below this index the dense memo: linear in the input, so a short
    /// hostile pickle cannot make it large.
    fn dense_memo_max(&self) -> usize {
        256 + self.input.len()
    }

    fn memo_get(&mut self, key: u64, offset: usize) -> Result<(), PickleError> {
        let dense = usize::try_from(key)
            .ok()
            .and_then(|k| self.dense.get(k))
            .copied()
            .filter(|&id| id != NO_NODE);
        let id = match dense {
            Some(id) => id,
            None => *self
                .memo
                .get(&key)
                .ok_or(PickleError::BadMemo { key, offset })?,
        };
        self.stack.push(id);
        Ok(())
    }

    fn memo_put(&mut self, key: u64, offset: usize) -> Result<(), PickleError> {
        let id = self.top(offset)?;
        match usize::try_from(key) {
            Ok(k) if k < self.dense_memo_max() => {
                if k >= self.dense.len() {
                    self.dense.resize(k + 1, NO_NODE);
                }
                if let Some(slot) = self.dense.get_mut(k) {
                    *slot = id;
                }
            }
            _ => {
                self.memo.insert(key, id);
            }
        }
        Ok(())
    }
}

fn malformed(offset: usize, reason: &'static str) -> PickleError {
    PickleError::Malformed { offset, reason }
}
