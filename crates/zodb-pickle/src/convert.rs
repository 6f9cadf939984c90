//! Turns the decoder's arena (see `machine.rs`) into the public [`Value`] tree.
//!
//! The arena can share a node between many parents (memo fetches, `DUP`) and can even hold
//! cycles (a list appended to itself through the memo).  The tree copies shared nodes,
//! refuses cycles with [`PickleError::Recursive`], refuses nesting beyond
//! [`limits::NESTING_MAX`], and charges every node and payload byte it creates against a
//! budget ([`limits::decoded_bytes_max`]) so that a small pickle cannot expand into an
//! enormous tree by fetching one big value many times.
//!
//! Dicts and sets get Python's key semantics here: a `SETITEM` of a key equal to an
//! earlier one replaces that entry's value in place.  Equality follows Python for the
//! values records hold (`1 == 1.0 == True`, str, bytes, tuples, globals by name); objects
//! and NaNs compare by identity (the same memo node), as Python compares them.  Known gap:
//! an integral float beyond the `i64` range is not recognised as equal to the same
//! `BigInt`.

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

/// Converts nodes of one machine, sharing one budget across calls (P1 and P2 of a
/// record draw on the same budget).
#[derive(Debug)]
pub(crate) struct Converter<'m, 'a> {
    machine: &'m Machine<'a>,
    on_path: Vec<bool>,
    depth: usize,
    used: usize,
    limit: usize,
}

impl<'m, 'a> Converter<'m, 'a> {
    pub(crate) fn new(machine: &'m Machine<'a>, input_len: usize) -> Self {
        Converter {
            machine,
            on_path: vec![false; machine.node_count()],
            depth: 0,
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

    /// Runs `f` one level deeper with `id` on the current path.
    fn nested<T>(
        &mut self,
        id: NodeId,
        extra_depth: usize,
        f: impl FnOnce(&mut Self) -> Result<T, PickleError>,
    ) -> Result<T, PickleError> {
        let depth = self.depth.saturating_add(1).saturating_add(extra_depth);
        if depth > limits::NESTING_MAX {
            return Err(PickleError::TooDeep {
                limit: limits::NESTING_MAX,
            });
        }
        match self.on_path.get_mut(id) {
            Some(flag) if *flag => return Err(PickleError::Recursive),
            Some(flag) => *flag = true,
            None => {}
        }
        let saved = self.depth;
        self.depth = depth;
        let result = f(self);
        self.depth = saved;
        if let Some(flag) = self.on_path.get_mut(id) {
            *flag = false;
        }
        result
    }

    fn all(&mut self, ids: &[NodeId]) -> Result<Vec<Value>, PickleError> {
        ids.iter().map(|&id| self.convert(id)).collect()
    }

    fn all_pairs(
        &mut self,
        pairs: &[(NodeId, NodeId)],
    ) -> Result<Vec<(Value, Value)>, PickleError> {
        pairs
            .iter()
            .map(|&(k, v)| Ok((self.convert(k)?, self.convert(v)?)))
            .collect()
    }

    /// The tree for node `id`.
    pub(crate) fn convert(&mut self, id: NodeId) -> Result<Value, PickleError> {
        let machine = self.machine;
        self.charge(std::mem::size_of::<Value>())?;
        let value = match machine.node(id) {
            Node::None => Value::None,
            Node::Bool(b) => Value::Bool(*b),
            Node::Int(i) => Value::Int(*i),
            Node::BigInt(bytes) => {
                self.charge(bytes.len())?;
                Value::BigInt(bytes.clone())
            }
            Node::Float(f) => Value::Float(*f),
            Node::Bytes(bytes) => {
                self.charge(bytes.len())?;
                Value::Bytes(bytes.clone())
            }
            Node::Str(s) => {
                self.charge(s.len())?;
                Value::Str(s.clone())
            }
            Node::SurrogateStr(_) => {
                // Only the no-load machine makes these, and it is never converted.
                return Err(PickleError::Malformed {
                    offset: 0,
                    reason: "str holds a lone surrogate, which a Rust String cannot hold",
                });
            }
            Node::Global { module, name } => {
                self.charge(module.len() + name.len())?;
                Value::Global {
                    module: module.clone(),
                    name: name.clone(),
                }
            }
            Node::Tuple { items, .. } => self.nested(id, 0, |c| c.all(items).map(Value::Tuple))?,
            Node::List(items) => self.nested(id, 0, |c| c.all(items).map(Value::List))?,
            Node::Dict(pairs) => self.nested(id, 0, |c| {
                let pairs = c.unique_pairs(pairs)?;
                c.all_pairs(&pairs).map(Value::Dict)
            })?,
            Node::Set { items, frozen } => self.nested(id, 0, |c| {
                let pairs: Vec<(NodeId, NodeId)> = items.iter().map(|&i| (i, i)).collect();
                let unique: Vec<NodeId> = c
                    .unique_pairs(&pairs)?
                    .into_iter()
                    .map(|(k, _)| k)
                    .collect();
                let items = c.all(&unique)?;
                Ok(if *frozen {
                    Value::FrozenSet(items)
                } else {
                    Value::Set(items)
                })
            })?,
            Node::PersistentRef(pid) => self.nested(id, 0, |c| {
                Ok(Value::PersistentRef(Box::new(c.convert(*pid)?)))
            })?,
            Node::Object { kind, changes } => {
                // Each change wraps the value once more, so it counts as a level.
                self.nested(id, changes.len(), |c| c.object(kind, changes))?
            }
        };
        Ok(value)
    }

    fn object(&mut self, kind: &ObjectKind, changes: &[Change]) -> Result<Value, PickleError> {
        let mut value = match kind {
            ObjectKind::Reduce { callable, args } => Value::Reduce {
                callable: Box::new(self.convert(*callable)?),
                args: Box::new(self.convert(*args)?),
            },
            ObjectKind::NewObj { cls, args } => Value::NewObj {
                cls: Box::new(self.convert(*cls)?),
                args: Box::new(self.convert(*args)?),
            },
            ObjectKind::Inst { module, name, args } => {
                self.charge(module.len() + name.len())?;
                Value::Inst {
                    module: module.clone(),
                    name: name.clone(),
                    args: self.all(args)?,
                }
            }
            ObjectKind::Obj { cls, args } => Value::Obj {
                cls: Box::new(self.convert(*cls)?),
                args: self.all(args)?,
            },
        };
        for change in changes {
            self.charge(std::mem::size_of::<Value>())?;
            value = match change {
                Change::Append(items) => Value::ListItems {
                    object: Box::new(value),
                    items: self.all(items)?,
                },
                Change::SetItems(pairs) => Value::DictItems {
                    object: Box::new(value),
                    items: self.all_pairs(pairs)?,
                },
                Change::Build(state) => Value::Build {
                    object: Box::new(value),
                    state: Box::new(self.convert(*state)?),
                },
            };
        }
        Ok(value)
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
    /// budget too: a key can be a big string fetched from the memo many times.
    fn key(
        &mut self,
        machine: &'m Machine<'a>,
        id: NodeId,
        depth: usize,
    ) -> Result<Key<'m>, PickleError> {
        if depth > limits::NESTING_MAX {
            return Err(PickleError::TooDeep {
                limit: limits::NESTING_MAX,
            });
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
            Node::Global { module, name } => Key::Global(module, name),
            Node::PersistentRef(pid) if machine.hashable(*pid) => {
                Key::Pid(Box::new(self.key(machine, *pid, depth + 1)?))
            }
            _ => Key::Ident(id),
        })
    }
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
