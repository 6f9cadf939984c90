//! Persistent references of a record: the reference scanner (record-format §4.1, §5) and
//! the class metadata reader (`get_pickle_metadata`, §2).
//!
//! The scanner runs the machine in no-load mode over P1 then P2 with one memo, collects
//! every persistent id in order (duplicates kept), and only then classifies them, as
//! `referencesf` does: a pid list filled after its `BINPERSID` (through the memo) is
//! classified with its final items, exactly as Python sees it.

use crate::error::PickleError;
use crate::machine::{Machine, Mode, Node, NodeId};
use crate::value::Value;

/// One persistent reference found in a record, classified by its form (record-format §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reference {
    /// A reference that keeps its target alive: `(oid, class)` (form A; also the old
    /// `(oid, (module, name))`), a bare oid (form B), or the line of a text `PERSID`.
    Strong {
        /// The target's oid.
        oid: u64,
        /// The class given in the reference, when there is one.
        class: Option<(String, String)>,
    },
    /// A weak reference: `['w', (oid,)]` (form C), `['w', (oid, database)]` (form D), or
    /// the legacy one-item list `[oid]`.  Keeps nothing alive.
    Weak {
        /// The target's oid.
        oid: u64,
        /// The target's database, for a weak reference into another database.
        database: Option<String>,
    },
    /// A reference into another database of a multi-database: `['m', (database, oid,
    /// class)]` (form E) or `['n', (database, oid)]` (form F).  Keeps nothing alive here.
    CrossDatabase {
        /// The other database's name.
        database: String,
        /// The target's oid in that database.
        oid: u64,
        /// The class given in the reference (form E only).
        class: Option<(String, String)>,
    },
}

/// Runs P1 then P2 of `record` in no-load mode with one memo.
fn scan(record: &[u8]) -> Result<Machine<'_>, PickleError> {
    let mut machine = Machine::new(record, Mode::NoLoad);
    machine.run()?;
    machine.run()?;
    Ok(machine)
}

/// Every persistent reference in `record` (P1 then P2, one memo), in order, duplicates
/// kept, classified by form.
///
/// Fails where Python's `referencesf` fails (malformed pickle, protocol 4/5, a pid that is
/// neither a tuple, an oid nor a list), and also on what `referencesf` would let through
/// but no ZODB can load: an oid that is not 8 bytes, or a list pid that is none of the
/// known weak and cross-database forms.  [`strong_references`] skips list pids whatever
/// their shape, as `referencesf` does.
pub fn scan_references(record: &[u8]) -> Result<Vec<Reference>, PickleError> {
    let machine = scan(record)?;
    machine
        .pids()
        .iter()
        .map(|&pid| classify(&machine, pid))
        .collect()
}

/// The strong references of `record` in order, duplicates kept: exactly the oids Python's
/// `referencesf` returns (pack's garbage collector follows these), except that an oid must
/// be 8 bytes here (Python would return it and fail later, at pack, with a `KeyError`).
pub fn strong_references(record: &[u8]) -> Result<Vec<u64>, PickleError> {
    let machine = scan(record)?;
    let mut oids = Vec::new();
    for &pid in machine.pids() {
        match machine.node(pid) {
            Node::Tuple { items, .. } => {
                let first = items
                    .first()
                    .ok_or_else(|| bad("a persistent id tuple is empty"))?;
                oids.push(oid(&machine, *first)?);
            }
            Node::Bytes(_) | Node::Str(_) | Node::SurrogateStr(_) => oids.push(oid(&machine, pid)?),
            Node::List(_) => {}
            other => return Err(bad(&format!("a persistent id is {}", describe(other)))),
        }
    }
    Ok(oids)
}

fn bad(what: &str) -> PickleError {
    PickleError::BadPersistentId(what.to_owned())
}

fn classify(machine: &Machine<'_>, pid: NodeId) -> Result<Reference, PickleError> {
    match machine.node(pid) {
        Node::Tuple { items, .. } => {
            let (first, rest) = items
                .split_first()
                .ok_or_else(|| bad("a persistent id tuple is empty"))?;
            Ok(Reference::Strong {
                oid: oid(machine, *first)?,
                class: rest.first().and_then(|&c| class_name(machine, c)),
            })
        }
        Node::Bytes(_) | Node::Str(_) | Node::SurrogateStr(_) => Ok(Reference::Strong {
            oid: oid(machine, pid)?,
            class: None,
        }),
        Node::List(items) => classify_list(machine, items),
        other => Err(bad(&format!("a persistent id is {}", describe(other)))),
    }
}

/// The list forms, as `ObjectReader._persistent_load` reads them: a two-item list is
/// `[kind, args]`, any other length is the legacy weak reference `[oid]`.
fn classify_list(machine: &Machine<'_>, items: &[NodeId]) -> Result<Reference, PickleError> {
    match items {
        [target] => Ok(Reference::Weak {
            oid: oid(machine, *target)?,
            database: None,
        }),
        [kind, args] => {
            let Node::Str(kind) = machine.node(*kind) else {
                return Err(bad("a list persistent id has no str kind"));
            };
            let Node::Tuple { items: args, .. } = machine.node(*args) else {
                return Err(bad("a list persistent id has no argument tuple"));
            };
            match (&**kind, args.as_slice()) {
                ("w", [target]) => Ok(Reference::Weak {
                    oid: oid(machine, *target)?,
                    database: None,
                }),
                ("w", [target, database]) => Ok(Reference::Weak {
                    oid: oid(machine, *target)?,
                    database: Some(database_name(machine, *database)?),
                }),
                ("m", [database, target, class]) => Ok(Reference::CrossDatabase {
                    database: database_name(machine, *database)?,
                    oid: oid(machine, *target)?,
                    class: class_name(machine, *class),
                }),
                ("n", [database, target]) => Ok(Reference::CrossDatabase {
                    database: database_name(machine, *database)?,
                    oid: oid(machine, *target)?,
                    class: None,
                }),
                _ => Err(bad(&format!(
                    "unknown list persistent id kind {kind:?} with {} arguments",
                    args.len()
                ))),
            }
        }
        _ => Err(bad(&format!(
            "a list persistent id has {} items",
            items.len()
        ))),
    }
}

/// An oid as `referencesf` takes it (bytes, or a str that must be ASCII), which must be 8
/// bytes long.
fn oid(machine: &Machine<'_>, id: NodeId) -> Result<u64, PickleError> {
    let bytes: &[u8] = match machine.node(id) {
        Node::Bytes(b) => b,
        Node::Str(s) if s.is_ascii() => s.as_bytes(),
        Node::Str(_) | Node::SurrogateStr(_) => return Err(bad("an oid str is not ASCII")),
        other => return Err(bad(&format!("an oid is {}", describe(other)))),
    };
    let array: [u8; 8] = bytes
        .try_into()
        .map_err(|_| bad(&format!("an oid is {} bytes long, not 8", bytes.len())))?;
    Ok(u64::from_be_bytes(array))
}

fn database_name(machine: &Machine<'_>, id: NodeId) -> Result<String, PickleError> {
    match machine.node(id) {
        Node::Str(s) => Ok(s.to_string()),
        other => Err(bad(&format!("a database name is {}", describe(other)))),
    }
}

/// The class named in a reference: a global, or a `(module, name)` tuple of str.
fn class_name(machine: &Machine<'_>, id: NodeId) -> Option<(String, String)> {
    match machine.node(id) {
        Node::Global(global) => Some((global.module().to_owned(), global.name().to_owned())),
        Node::Tuple { items, .. } => match items.as_slice() {
            [module, name] => match (machine.node(*module), machine.node(*name)) {
                (Node::Str(module), Node::Str(name)) => {
                    Some((module.to_string(), name.to_string()))
                }
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}

/// A short description of a node for error messages.
fn describe(node: &Node) -> &'static str {
    match node {
        Node::None => "None (or an object the scanner does not build)",
        Node::Bool(_) => "a bool",
        Node::Int(_) | Node::BigInt(_) => "an int",
        Node::Float(_) => "a float",
        Node::Bytes(_) => "bytes",
        Node::Str(_) | Node::SurrogateStr(_) => "a str",
        Node::Tuple { .. } => "a tuple",
        Node::List(_) => "a list",
        Node::Dict(_) => "a dict",
        Node::Set { .. } => "a set",
        Node::Global(_) => "a global",
        Node::PersistentRef(_) => "a persistent reference",
        Node::Object(_) => "an object",
    }
}

/// Module and class name of a record's P1, like ZODB's `utils.get_pickle_metadata`: when P1
/// (after a 2-byte `PROTO`) starts with `c` or `(c`, the two lines after it, without
/// decoding anything else; otherwise P1 is decoded (never importing anything) and read as
/// `((module, name), args)`, `(class, args)` or a bare class.
///
/// `None` where Python returns empty names or fails.  One deliberate difference: for
/// `(class, args)` P1s not starting with `c`, Python's function returns garbage (the class
/// object and the args) while this returns the class's module and name.
pub fn class_of(record: &[u8]) -> Option<(String, String)> {
    let data = if record.first() == Some(&crate::opcodes::PROTO) {
        record.get(2..)?
    } else {
        record
    };
    let prefix = if data.starts_with(b"(c") {
        2
    } else if data.starts_with(b"c") {
        1
    } else {
        0
    };
    if prefix > 0 {
        // Python splits at the first two newlines and needs both.
        let mut parts = data.splitn(3, |&b| b == b'\n');
        let module = parts.next()?.get(prefix..)?;
        let name = parts.next()?;
        parts.next()?;
        let module = std::str::from_utf8(module).ok()?;
        let name = std::str::from_utf8(name).ok()?;
        return Some((module.to_owned(), name.to_owned()));
    }
    let (value, _) = crate::decode(data).ok()?;
    match value {
        Value::Global { module, name } => Some((module, name)),
        Value::Tuple(items) => match items.into_iter().next()? {
            Value::Global { module, name } => Some((module, name)),
            Value::Tuple(names) => match names.as_slice() {
                [Value::Str(module), Value::Str(name)] => Some((module.clone(), name.clone())),
                _ => None,
            },
            _ => None,
        },
        _ => None,
    }
}
