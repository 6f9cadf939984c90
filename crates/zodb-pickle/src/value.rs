//! The public, decoded form of a pickle: a plain tree of [`Value`]s.
//!
//! The tree is what callers match on; it is deliberately not the decoder's working form
//! (an arena where memo fetches alias one node, see `machine/`).  Converting the arena
//! into this tree copies shared nodes, refuses cycles and is bounded by `crate::limits`.
//!
//! Besides the data types, the tree keeps what Python would have turned into objects —
//! globals, persistent references, `REDUCE`/`NEWOBJ`/`INST`/`OBJ` instances and the
//! `BUILD`/`APPEND`/`SETITEM` calls made on them — so a record can be inspected and
//! re-encoded without a Python class at hand.

/// A decoded pickle value.
///
/// Equality is structural (floats compare as `f64`, so a NaN is unequal to itself).
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An int that fits in `i64`.  The decoder always uses this variant when it can.
    Int(i64),
    /// An int outside the `i64` range: little-endian two's complement, minimal length, as
    /// `LONG1`/`LONG4` carry it.  The decoder only produces it for values outside `i64`.
    BigInt(Vec<u8>),
    /// A float.
    Float(f64),
    /// Python `bytes`.
    Bytes(Vec<u8>),
    /// Python `str`.  Python-2 strings (`STRING`, `BINSTRING`, `SHORT_BINSTRING`) decode to
    /// this when ASCII, as ZODB's unpickler does (non-ASCII ones fail in Python too).
    Str(String),
    /// A tuple.
    Tuple(Vec<Value>),
    /// A list.
    List(Vec<Value>),
    /// A dict, in insertion order.  Keys are unique as Python sees them (`1`, `1.0` and
    /// `True` are one key; the first key is kept with the last value).
    Dict(Vec<(Value, Value)>),
    /// A `set`, pickled as `builtins.set([...])` (`REDUCE`); items unique, first kept.
    Set(Vec<Value>),
    /// A `frozenset`, pickled as `builtins.frozenset([...])` (`REDUCE`).
    FrozenSet(Vec<Value>),
    /// A global (class or function) named by module and qualified name (`GLOBAL`).
    Global {
        /// Dotted module path.
        module: String,
        /// Name inside the module.
        name: String,
    },
    /// A persistent reference: the pid as pickled before `BINPERSID` (or the line of a
    /// text `PERSID`, as `Bytes`).  ZODB's forms are in record-format §4: a tuple
    /// `(oid, class)`, a bare oid, or a list `['w', (oid,)]`, `['m', (db, oid, class)]`,
    /// `['n', (db, oid)]`, ...
    PersistentRef(Box<Value>),
    /// `callable(*args)` (`REDUCE`); `args` is a tuple.
    Reduce {
        /// What is called, usually a [`Value::Global`].
        callable: Box<Value>,
        /// The argument tuple.
        args: Box<Value>,
    },
    /// `cls.__new__(cls, *args)` (`NEWOBJ`, written by protocol 2+ picklers for instances
    /// of new-style classes); `args` is a tuple.
    NewObj {
        /// The class, usually a [`Value::Global`].
        cls: Box<Value>,
        /// The argument tuple.
        args: Box<Value>,
    },
    /// An old-style instance (`INST`: class named inline, arguments above a mark).
    Inst {
        /// Module of the class.
        module: String,
        /// Class name.
        name: String,
        /// Constructor arguments.
        args: Vec<Value>,
    },
    /// An instance made by `OBJ` (class and arguments above a mark).
    Obj {
        /// The class.
        cls: Box<Value>,
        /// Constructor arguments.
        args: Vec<Value>,
    },
    /// `object.__setstate__(state)` (`BUILD`).
    Build {
        /// The object being given its state.
        object: Box<Value>,
        /// The state.
        state: Box<Value>,
    },
    /// Items appended to an object that is not a plain list (`APPEND`/`APPENDS` after a
    /// `REDUCE`/`NEWOBJ`, as Python writes list subclasses: the `listitems` of
    /// `__reduce_ex__`).
    ListItems {
        /// The object appended to.
        object: Box<Value>,
        /// The items, in order.
        items: Vec<Value>,
    },
    /// Pairs set on an object that is not a plain dict (`SETITEM`/`SETITEMS` after a
    /// `REDUCE`/`NEWOBJ`: the `dictitems` of `__reduce_ex__`).
    DictItems {
        /// The object the items are set on.
        object: Box<Value>,
        /// The pairs, in order.
        items: Vec<(Value, Value)>,
    },
}

impl Value {
    /// The text of a [`Value::Str`].
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }

    /// The bytes of a [`Value::Bytes`].
    pub fn as_bytes(&self) -> Option<&[u8]> {
        match self {
            Value::Bytes(b) => Some(b),
            _ => None,
        }
    }

    /// The number of a [`Value::Int`] (a [`Value::Bool`] is not an int here).
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(i) => Some(*i),
            _ => None,
        }
    }

    /// The value stored under the `str` key `key` of a [`Value::Dict`].
    pub fn get(&self, key: &str) -> Option<&Value> {
        match self {
            Value::Dict(items) => items
                .iter()
                .find(|(k, _)| k.as_str() == Some(key))
                .map(|(_, v)| v),
            _ => None,
        }
    }

    /// A [`Value::Str`] from anything string-like.
    pub fn str(s: impl Into<String>) -> Value {
        Value::Str(s.into())
    }

    /// A [`Value::Global`] from a module and a name.
    pub fn global(module: impl Into<String>, name: impl Into<String>) -> Value {
        Value::Global {
            module: module.into(),
            name: name.into(),
        }
    }
}
