//! A decoded record read in place: [`RecordView`] keeps the decoder's arena and lends
//! [`View`]s of its nodes, so a caller that turns the state straight into its own types
//! (the persistence layer's typed objects) skips the [`Value`](crate::Value) tree and its
//! copies of every string.
//!
//! The view enforces what the conversion to a tree enforces (`convert.rs`): the nesting
//! limit ([`limits::NESTING_MAX`], which also stops a walk around a cycle) and the budget
//! of [`limits::decoded_bytes_max`], charged for every node looked at (a memo fetch
//! repeated many times costs each time, as the tree's copies would).  What only the tree
//! gives exactly is not offered here: big ints, sets and instances read as
//! [`Kind::Other`], and so does a dict whose keys are not all distinct `str`s (Python's
//! key semantics are the converter's job); a caller then decodes the record with
//! [`crate::decode_record`].

use std::cell::Cell;

use crate::error::PickleError;
use crate::limits;
use crate::machine::{Machine, Mode, Node, NodeId};
use crate::value::Value;

/// Dicts up to this many items are checked for repeated keys by comparing every pair;
/// larger ones by sorting their keys.
const PAIRWISE_KEYS_MAX: usize = 8;

/// A record decoded into the arena: P1 (the class) and P2 (the state), one memo.
#[derive(Debug)]
pub struct RecordView<'a> {
    machine: Machine<'a>,
    class: NodeId,
    state: NodeId,
    budget: Budget,
}

#[derive(Debug)]
struct Budget {
    used: Cell<usize>,
    limit: usize,
}

impl Budget {
    fn charge(&self, bytes: usize) -> Result<(), PickleError> {
        let used = self.used.get().saturating_add(bytes);
        self.used.set(used);
        if used > self.limit {
            return Err(PickleError::TooLarge { limit: self.limit });
        }
        Ok(())
    }
}

/// Decodes a record as [`crate::decode_record`] does, without building the tree.
pub fn decode_record_view(record: &[u8]) -> Result<RecordView<'_>, PickleError> {
    let mut machine = Machine::new(record, Mode::Load);
    let class = machine.run()?;
    let state = machine.run()?;
    Ok(RecordView {
        machine,
        class,
        state,
        budget: Budget {
            used: Cell::new(0),
            limit: limits::decoded_bytes_max(record.len()),
        },
    })
}

impl<'a> RecordView<'a> {
    /// The class (module, name) named by P1, in the forms of record-format §2 that
    /// `class_name` of the persistence layer accepts: a global, or a tuple whose first
    /// item is a global or a `(module, name)` tuple of strs.
    pub fn class(&self) -> Option<(&str, &str)> {
        let m = &self.machine;
        let from = |id: NodeId| match m.node(id) {
            Node::Global(g) => Some((g.module(), g.name())),
            _ => None,
        };
        match m.node(self.class) {
            Node::Global(_) => from(self.class),
            Node::Tuple { items, .. } => {
                // Arguments that are mutable containers or objects could hold what the
                // tree refuses (a cycle, too much): those records take the long way.
                let plain = items.iter().skip(1).all(|&id| {
                    !matches!(
                        m.node(id),
                        Node::List(_) | Node::Dict(_) | Node::Set { .. } | Node::Object(_)
                    )
                });
                if !plain {
                    return None;
                }
                let first = *items.first()?;
                match m.node(first) {
                    Node::Global(_) => from(first),
                    Node::Tuple { items: mn, .. } => {
                        match (m.node(*mn.first()?), m.node(*mn.get(1)?)) {
                            (Node::Str(module), Node::Str(name)) => Some((&**module, &**name)),
                            _ => None,
                        }
                    }
                    _ => None,
                }
            }
            _ => None,
        }
    }

    /// The state (P2).
    pub fn state(&self) -> View<'_> {
        View {
            machine: &self.machine,
            budget: &self.budget,
            id: self.state,
            depth: 0,
        }
    }
}

/// One node of a [`RecordView`], at a nesting depth.
#[derive(Debug, Clone, Copy)]
pub struct View<'r> {
    machine: &'r Machine<'r>,
    budget: &'r Budget,
    id: NodeId,
    depth: usize,
}

/// What a [`View`] holds.
#[derive(Debug)]
pub enum Kind<'r> {
    None,
    Bool(bool),
    /// An int that fits in `i64`.
    Int(i64),
    Float(f64),
    Bytes(&'r [u8]),
    Str(&'r str),
    Tuple(Items<'r>),
    List(Items<'r>),
    /// A dict whose keys are distinct `str`s, in insertion order.
    Dict(Pairs<'r>),
    /// A global (`GLOBAL`): module and name.
    Global(&'r str, &'r str),
    /// A persistent reference; the view is its pid.
    PersistentRef(View<'r>),
    /// Anything else: read the record as a [`Value`] tree to see it.
    Other,
}

impl<'r> View<'r> {
    fn child(&self, id: NodeId) -> View<'r> {
        View {
            machine: self.machine,
            budget: self.budget,
            id,
            depth: self.depth + 1,
        }
    }

    /// Enters a container at this view's depth, as the converter does.
    fn enter(&self) -> Result<(), PickleError> {
        if self.depth + 1 > limits::NESTING_MAX {
            return Err(PickleError::TooDeep {
                limit: limits::NESTING_MAX,
            });
        }
        Ok(())
    }

    /// What the node holds; charges the budget as the node's copy in a tree would.
    pub fn kind(&self) -> Result<Kind<'r>, PickleError> {
        self.budget.charge(std::mem::size_of::<Value>())?;
        let machine: &'r Machine<'r> = self.machine;
        Ok(match machine.node(self.id) {
            Node::None => Kind::None,
            Node::Bool(b) => Kind::Bool(*b),
            Node::Int(i) => Kind::Int(*i),
            Node::Float(f) => Kind::Float(*f),
            Node::Bytes(b) => {
                self.budget.charge(b.len())?;
                Kind::Bytes(b)
            }
            Node::Str(s) => {
                self.budget.charge(s.len())?;
                Kind::Str(s)
            }
            Node::Tuple { items, .. } => {
                self.enter()?;
                Kind::Tuple(Items {
                    parent: *self,
                    ids: items.iter(),
                })
            }
            Node::List(items) => {
                self.enter()?;
                Kind::List(Items {
                    parent: *self,
                    ids: items.iter(),
                })
            }
            Node::Dict(pairs) => {
                self.enter()?;
                if !self.distinct_str_keys(pairs) {
                    return Ok(Kind::Other);
                }
                Kind::Dict(Pairs {
                    parent: *self,
                    pairs: pairs.iter(),
                })
            }
            Node::Global(g) => {
                self.budget.charge(g.module().len() + g.name().len())?;
                Kind::Global(g.module(), g.name())
            }
            Node::PersistentRef(pid) => {
                self.enter()?;
                Kind::PersistentRef(self.child(*pid))
            }
            _ => Kind::Other,
        })
    }

    /// Whether every key is a `str` and no two are equal (then the dict reads as Python
    /// would have built it, without the converter's key semantics).
    fn distinct_str_keys(&self, pairs: &'r [(NodeId, NodeId)]) -> bool {
        let key = |id: NodeId| match self.machine.node(id) {
            Node::Str(s) => Some(s.as_bytes()),
            _ => None,
        };
        if pairs.len() <= PAIRWISE_KEYS_MAX {
            let mut keys: [&[u8]; PAIRWISE_KEYS_MAX] = [&[]; PAIRWISE_KEYS_MAX];
            for (slot, &(k, _)) in keys.iter_mut().zip(pairs) {
                match key(k) {
                    Some(bytes) => *slot = bytes,
                    None => return false,
                }
            }
            let keys = keys.get(..pairs.len()).unwrap_or_default();
            return keys
                .iter()
                .enumerate()
                .all(|(i, a)| keys.iter().skip(i + 1).all(|b| a != b));
        }
        let mut keys = Vec::with_capacity(pairs.len());
        for &(k, _) in pairs {
            match key(k) {
                Some(bytes) => keys.push(bytes),
                None => return false,
            }
        }
        keys.sort_unstable();
        keys.windows(2).all(|w| w.first() != w.get(1))
    }
}

/// The items of a tuple or list.
#[derive(Debug, Clone)]
pub struct Items<'r> {
    parent: View<'r>,
    ids: std::slice::Iter<'r, NodeId>,
}

impl<'r> Iterator for Items<'r> {
    type Item = View<'r>;

    fn next(&mut self) -> Option<View<'r>> {
        self.ids.next().map(|&id| self.parent.child(id))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.ids.size_hint()
    }
}

impl ExactSizeIterator for Items<'_> {}

/// The (key, value) pairs of a dict.
#[derive(Debug, Clone)]
pub struct Pairs<'r> {
    parent: View<'r>,
    pairs: std::slice::Iter<'r, (NodeId, NodeId)>,
}

impl<'r> Iterator for Pairs<'r> {
    type Item = (View<'r>, View<'r>);

    fn next(&mut self) -> Option<(View<'r>, View<'r>)> {
        self.pairs
            .next()
            .map(|&(k, v)| (self.parent.child(k), self.parent.child(v)))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.pairs.size_hint()
    }
}

impl ExactSizeIterator for Pairs<'_> {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Walks every node under `view` (a reader that follows everything).
    fn walk(view: View<'_>) -> Result<usize, PickleError> {
        Ok(1 + match view.kind()? {
            Kind::Tuple(items) | Kind::List(items) => items.map(walk).sum::<Result<usize, _>>()?,
            Kind::Dict(pairs) => pairs
                .map(|(k, v)| Ok(walk(k)? + walk(v)?))
                .sum::<Result<usize, _>>()?,
            Kind::PersistentRef(pid) => walk(pid)?,
            _ => 0,
        })
    }

    #[test]
    fn a_cycle_ends_at_the_nesting_limit() {
        // P1 a global; P2 a list appended to itself through the memo.
        let record = b"\x80\x03cm\nC\n.\x80\x03]q\x00h\x00a.";
        let view = decode_record_view(record).unwrap();
        assert_eq!(view.class(), Some(("m", "C")));
        assert!(matches!(
            walk(view.state()),
            Err(PickleError::TooDeep { .. })
        ));
    }

    #[test]
    fn repeated_memo_fetches_are_charged() {
        // A 1000-character str fetched 20,000 times: 20 MB as a tree.
        let mut record = b"\x80\x03cm\nC\n.\x80\x03(X\xe8\x03\x00\x00".to_vec();
        record.extend_from_slice(&[b'a'; 1000]);
        record.extend_from_slice(b"q\x00");
        for _ in 0..20_000 {
            record.extend_from_slice(b"h\x00");
        }
        record.extend_from_slice(b"l.");
        let view = decode_record_view(&record).unwrap();
        let limit = limits::decoded_bytes_max(record.len());
        assert!(20_000 * 1000 < limit, "the walk stays within the budget");
        assert_eq!(walk(view.state()).unwrap(), 20_002);
        // Twenty such walks exceed it: the budget is the record's, not the walk's.
        let spent = (0..20).map(|_| walk(view.state())).find(Result::is_err);
        assert!(matches!(spent, Some(Err(PickleError::TooLarge { .. }))));
    }

    #[test]
    fn dicts_with_repeated_or_other_keys_are_left_to_the_tree() {
        let dict = |pairs: &[u8]| {
            let mut r = b"\x80\x03cm\nC\n.\x80\x03}(".to_vec();
            r.extend_from_slice(pairs);
            r.extend_from_slice(b"u.");
            r
        };
        let distinct = dict(b"X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00bK\x02");
        let repeated = dict(b"X\x01\x00\x00\x00aK\x01X\x01\x00\x00\x00aK\x02");
        let int_key = dict(b"K\x01K\x01X\x01\x00\x00\x00aK\x02");
        let view = decode_record_view(&distinct).unwrap();
        assert!(matches!(view.state().kind().unwrap(), Kind::Dict(p) if p.len() == 2));
        for other in [repeated, int_key] {
            let view = decode_record_view(&other).unwrap();
            assert!(matches!(view.state().kind().unwrap(), Kind::Other));
        }
        // Many keys (sorted, not compared pairwise), one repeated.
        let mut many = Vec::new();
        for i in 0..20u8 {
            many.extend_from_slice(&[b'X', 1, 0, 0, 0, b'a' + i, b'K', i]);
        }
        let record = dict(&many);
        let view = decode_record_view(&record).unwrap();
        assert!(matches!(view.state().kind().unwrap(), Kind::Dict(p) if p.len() == 20));
        many.extend_from_slice(&[b'X', 1, 0, 0, 0, b'a', b'K', 0]);
        let record = dict(&many);
        let view = decode_record_view(&record).unwrap();
        assert!(matches!(view.state().kind().unwrap(), Kind::Other));
    }
}
