//! Turns the decoder's arena (see `machine/`) into the public [`Value`] tree.
//!
//! The arena can share a node between many parents (memo fetches, `DUP`) and can even hold
//! cycles (a list appended to itself through the memo).  The tree copies shared nodes,
//! refuses cycles with [`PickleError::Recursive`], refuses nesting beyond
//! [`limits::NESTING_MAX`], and charges every node and payload byte it creates against a
//! budget ([`limits::decoded_bytes_max`]) so that a small pickle cannot expand into an
//! enormous tree by fetching one big value many times.
//!
//! The walk uses an explicit task stack, not recursion: unoptimized builds spend kilobytes
//! of machine stack per recursive level, which would make the nesting limit depend on the
//! build profile and on the caller's thread.
//!
//! Dicts and sets get Python's key semantics here: a `SETITEM` of a key equal to an
//! earlier one replaces that entry's value in place.  Equality follows Python for the
//! values records hold (`1 == 1.0 == True`, str, bytes, tuples, globals by name); objects
//! and NaNs compare by identity (the same memo node), as Python compares them.  Known gaps,
//! both out of reach of any real pickler: an integral float beyond the `i64` range is not
//! recognised as equal to the same `BigInt`, and tuple keys nested deeper than
//! [`limits::KEY_NESTING_MAX`] compare by identity.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use crate::error::PickleError;
use crate::limits;
use crate::machine::{Change, Machine, Node, NodeId, ObjectKind};
use crate::value::Value;

/// Dict-key identity as Python's `==`/`hash` see it, borrowing from the arena.
#[derive(Debug, PartialEq, Eq, Hash)]
enum Key<'m> {
    None,
    Int(i64),
    Big(&'m [u8]),
    Float(u64),
    Bytes(&'m [u8]),
    Str(&'m [u8]),
    Tuple(Vec<Key<'m>>),
    Global(&'m str, &'m str),
    Pid(Box<Key<'m>>),
    Ident(NodeId),
}

/// How to assemble a container once its children are on the value stack.
#[derive(Debug)]
enum Assemble<'m> {
    Tuple(usize),
    List(usize),
    Dict(usize),
    Set(usize, bool),
    PersistentRef,
    Object(&'m ObjectKind, &'m [Change]),
}

#[derive(Debug)]
enum Task<'m> {
    /// Convert this node and push its value.
    Visit(NodeId),
    /// Pop the children of this node, push the container, leave the node's levels.
    Finish {
        id: NodeId,
        levels: usize,
        how: Assemble<'m>,
    },
}

/// Converts nodes of one machine, sharing one budget across calls (P1 and P2 of a
/// record draw on the same budget).
#[derive(Debug)]
pub(crate) struct Converter<'m, 'a> {
    machine: &'m Machine<'a>,
    on_path: Vec<bool>,
    used: usize,
    limit: usize,
}

impl<'m, 'a> Converter<'m, 'a> {
    pub(crate) fn new(machine: &'m Machine<'a>, input_len: usize) -> Self {
        Converter {
            machine,
            on_path: vec![false; machine.node_count()],
            used: 0,
            limit: limits::decoded_bytes_max(input_len),
        }
    }

    fn charge(&mut self, bytes: usize) -> Result<(), PickleError> {
        self.used = self.used.saturating_add(bytes);
        if self.used > self.limit {
            return Err(PickleError::TooLarge { limit: self.limit });
        }
        Ok(())
    }

    /// The tree for node `root`.
    pub(crate) fn convert(&mut self, root: NodeId) -> Result<Value, PickleError> {
        let machine = self.machine;
        let mut tasks: Vec<Task<'m>> = vec![Task::Visit(root)];
        let mut values: Vec<Value> = Vec::new();
        // Levels entered and not yet finished: the depth of the next visited node.
        let mut depth = 0usize;
        while let Some(task) = tasks.pop() {
            let id = match task {
                Task::Visit(id) => id,
                Task::Finish { id, levels, how } => {
                    let value = self.assemble(how, &mut values)?;
                    values.push(value);
                    depth -= levels;
                    if let Some(flag) = self.on_path.get_mut(id) {
                        *flag = false;
                    }
                    continue;
                }
            };
            self.charge(std::mem::size_of::<Value>())?;
            let leaf = match machine.node(id) {
                Node::None => Some(Value::None),
                Node::Bool(b) => Some(Value::Bool(*b)),
                Node::Int(i) => Some(Value::Int(*i)),
                Node::BigInt(bytes) => {
                    self.charge(bytes.len())?;
                    Some(Value::BigInt(bytes.clone()))
                }
                Node::Float(f) => Some(Value::Float(*f)),
                Node::Bytes(bytes) => {
                    self.charge(bytes.len())?;
                    Some(Value::Bytes(bytes.to_vec()))
                }
                Node::Str(s) => {
                    self.charge(s.len())?;
                    Some(Value::Str(s.to_string()))
                }
                Node::SurrogateStr(_) => {
                    // Only the no-load machine makes these, and it is never converted.
                    return Err(PickleError::Malformed {
                        offset: 0,
                        reason: "str holds a lone surrogate, which a Rust String cannot hold",
                    });
                }
                Node::Global(global) => {
                    self.charge(global.module().len() + global.name().len())?;
                    Some(Value::Global {
                        module: global.module().to_owned(),
                        name: global.name().to_owned(),
                    })
                }
                _ => None,
            };
            if let Some(value) = leaf {
                values.push(value);
                continue;
            }

            // A container: enter it, schedule its assembly, then its children in order.
            let (how, children, levels): (Assemble<'m>, Vec<NodeId>, usize) = match machine.node(id)
            {
                Node::Tuple { items, .. } => (Assemble::Tuple(items.len()), items.clone(), 1),
                Node::List(items) => (Assemble::List(items.len()), items.clone(), 1),
                Node::Dict(pairs) => {
                    let pairs = self.unique_pairs(pairs)?;
                    let children = pairs.iter().flat_map(|&(k, v)| [k, v]).collect();
                    (Assemble::Dict(pairs.len()), children, 1)
                }
                Node::Set { items, frozen } => {
                    let pairs: Vec<(NodeId, NodeId)> = items.iter().map(|&i| (i, i)).collect();
                    let unique: Vec<NodeId> = self
                        .unique_pairs(&pairs)?
                        .into_iter()
                        .map(|(k, _)| k)
                        .collect();
                    (Assemble::Set(unique.len(), *frozen), unique, 1)
                }
                Node::PersistentRef(pid) => (Assemble::PersistentRef, vec![*pid], 1),
                Node::Object(object) => {
                    // Each change wraps the value once more, so it counts as a level.
                    let (kind, changes) = (&object.kind, object.changes.as_slice());
                    let children = object_children(kind, changes);
                    (Assemble::Object(kind, changes), children, 1 + changes.len())
                }
                _ => continue,
            };
            if depth + levels > limits::NESTING_MAX {
                return Err(PickleError::TooDeep {
                    limit: limits::NESTING_MAX,
                });
            }
            match self.on_path.get_mut(id) {
                Some(flag) if *flag => return Err(PickleError::Recursive),
                Some(flag) => *flag = true,
                None => {}
            }
            depth += levels;
            tasks.push(Task::Finish { id, levels, how });
            tasks.extend(children.into_iter().rev().map(Task::Visit));
        }
        values.pop().ok_or(PickleError::Malformed {
            offset: 0,
            reason: "internal: conversion produced no value",
        })
    }

    /// Builds a container from the last children pushed on `values`.
    fn assemble(
        &mut self,
        how: Assemble<'m>,
        values: &mut Vec<Value>,
    ) -> Result<Value, PickleError> {
        let count = match &how {
            Assemble::Tuple(n) | Assemble::List(n) | Assemble::Set(n, _) => *n,
            Assemble::Dict(n) => n * 2,
            Assemble::PersistentRef => 1,
            Assemble::Object(kind, changes) => object_child_count(kind, changes),
        };
        let start = values
            .len()
            .checked_sub(count)
            .ok_or(PickleError::Malformed {
                offset: 0,
                reason: "internal: conversion lost a value",
            })?;
        let mut children = values.drain(start..);
        let mut next = || {
            children.next().ok_or(PickleError::Malformed {
                offset: 0,
                reason: "internal: conversion lost a value",
            })
        };
        Ok(match how {
            Assemble::Tuple(n) => Value::Tuple((0..n).map(|_| next()).collect::<Result<_, _>>()?),
            Assemble::List(n) => Value::List((0..n).map(|_| next()).collect::<Result<_, _>>()?),
            Assemble::Set(n, frozen) => {
                let items = (0..n).map(|_| next()).collect::<Result<_, _>>()?;
                if frozen {
                    Value::FrozenSet(items)
                } else {
                    Value::Set(items)
                }
            }
            Assemble::Dict(n) => Value::Dict(
                (0..n)
                    .map(|_| Ok((next()?, next()?)))
                    .collect::<Result<_, PickleError>>()?,
            ),
            Assemble::PersistentRef => Value::PersistentRef(Box::new(next()?)),
            Assemble::Object(kind, changes) => {
                let mut value = match kind {
                    ObjectKind::Reduce { .. } => Value::Reduce {
                        callable: Box::new(next()?),
                        args: Box::new(next()?),
                    },
                    ObjectKind::NewObj { .. } => Value::NewObj {
                        cls: Box::new(next()?),
                        args: Box::new(next()?),
                    },
                    ObjectKind::Inst { module, name, args } => {
                        self.charge(module.len() + name.len())?;
                        Value::Inst {
                            module: module.clone(),
                            name: name.clone(),
                            args: args.iter().map(|_| next()).collect::<Result<_, _>>()?,
                        }
                    }
                    ObjectKind::Obj { args, .. } => Value::Obj {
                        cls: Box::new(next()?),
                        args: args.iter().map(|_| next()).collect::<Result<_, _>>()?,
                    },
                };
                for change in changes {
                    self.charge(std::mem::size_of::<Value>())?;
                    value = match change {
                        Change::Append(items) => Value::ListItems {
                            object: Box::new(value),
                            items: items.iter().map(|_| next()).collect::<Result<_, _>>()?,
                        },
                        Change::SetItems(pairs) => Value::DictItems {
                            object: Box::new(value),
                            items: pairs
                                .iter()
                                .map(|_| Ok((next()?, next()?)))
                                .collect::<Result<_, PickleError>>()?,
                        },
                        Change::Build(_) => Value::Build {
                            object: Box::new(value),
                            state: Box::new(next()?),
                        },
                    };
                }
                value
            }
        })
    }

    /// The pairs a Python dict would end with after setting them in order: the first
    /// position and key of each distinct key, with the last value given for it.
    fn unique_pairs(
        &mut self,
        pairs: &[(NodeId, NodeId)],
    ) -> Result<Vec<(NodeId, NodeId)>, PickleError> {
        if pairs.len() < 2 {
            return Ok(pairs.to_vec());
        }
        let machine = self.machine;
        let mut index: HashMap<Key<'m>, usize> = HashMap::with_capacity(pairs.len());
        let mut out: Vec<(NodeId, NodeId)> = Vec::with_capacity(pairs.len());
        for &(k, v) in pairs {
            let key = self.key(machine, k, 0)?;
            match index.entry(key) {
                Entry::Occupied(slot) => {
                    if let Some(pair) = out.get_mut(*slot.get()) {
                        pair.1 = v;
                    }
                }
                Entry::Vacant(slot) => {
                    slot.insert(out.len());
                    out.push((k, v));
                }
            }
        }
        Ok(out)
    }

    /// The identity of a hashable node as a dict key.  Computing it is charged to the
    /// budget too: a key can be a big string fetched from the memo many times.  Recursion
    /// is bounded by [`limits::KEY_NESTING_MAX`].
    fn key(
        &mut self,
        machine: &'m Machine<'a>,
        id: NodeId,
        depth: usize,
    ) -> Result<Key<'m>, PickleError> {
        if depth > limits::KEY_NESTING_MAX {
            return Ok(Key::Ident(id));
        }
        self.charge(std::mem::size_of::<Key<'m>>())?;
        Ok(match machine.node(id) {
            Node::None => Key::None,
            Node::Bool(b) => Key::Int(i64::from(*b)),
            Node::Int(i) => Key::Int(*i),
            Node::BigInt(bytes) => Key::Big(bytes),
            Node::Float(f) => float_key(*f).unwrap_or(Key::Ident(id)),
            Node::Bytes(bytes) => {
                self.charge(bytes.len())?;
                Key::Bytes(bytes)
            }
            Node::Str(s) => {
                self.charge(s.len())?;
                Key::Str(s.as_bytes())
            }
            Node::SurrogateStr(bytes) => {
                self.charge(bytes.len())?;
                Key::Str(bytes)
            }
            Node::Tuple {
                items,
                hashable: true,
            } => Key::Tuple(
                items
                    .iter()
                    .map(|&item| self.key(machine, item, depth + 1))
                    .collect::<Result<_, _>>()?,
            ),
            Node::Global(global) => Key::Global(global.module(), global.name()),
            Node::PersistentRef(pid) if machine.hashable(*pid) => {
                Key::Pid(Box::new(self.key(machine, *pid, depth + 1)?))
            }
            _ => Key::Ident(id),
        })
    }
}

/// The nodes an object's value is built from, in the order [`Converter::assemble`] takes
/// them.
fn object_children(kind: &ObjectKind, changes: &[Change]) -> Vec<NodeId> {
    let mut out = match kind {
        ObjectKind::Reduce { callable, args } => vec![*callable, *args],
        ObjectKind::NewObj { cls, args } => vec![*cls, *args],
        ObjectKind::Inst { args, .. } => args.clone(),
        ObjectKind::Obj { cls, args } => {
            std::iter::once(*cls).chain(args.iter().copied()).collect()
        }
    };
    for change in changes {
        match change {
            Change::Append(items) => out.extend(items),
            Change::SetItems(pairs) => out.extend(pairs.iter().flat_map(|&(k, v)| [k, v])),
            Change::Build(state) => out.push(*state),
        }
    }
    out
}

fn object_child_count(kind: &ObjectKind, changes: &[Change]) -> usize {
    let base = match kind {
        ObjectKind::Reduce { .. } | ObjectKind::NewObj { .. } => 2,
        ObjectKind::Inst { args, .. } => args.len(),
        ObjectKind::Obj { args, .. } => 1 + args.len(),
    };
    changes.iter().fold(base, |n, change| {
        n + match change {
            Change::Append(items) => items.len(),
            Change::SetItems(pairs) => 2 * pairs.len(),
            Change::Build(_) => 1,
        }
    })
}

/// A float's key: integral floats in the `i64` range equal the int; NaN has none (it only
/// equals itself by identity).
fn float_key(f: f64) -> Option<Key<'static>> {
    if f.is_nan() {
        return None;
    }
    // 2^63 as f64 is exact; the range check keeps the cast lossless.
    const TWO_POW_63: f64 = 9_223_372_036_854_775_808.0;
    if f.fract() == 0.0 && (-TWO_POW_63..TWO_POW_63).contains(&f) {
        return Some(Key::Int(f as i64));
    }
    Some(Key::Float(f.to_bits()))
}
