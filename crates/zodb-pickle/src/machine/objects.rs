//! The opcodes that fill containers and make objects — `APPEND(S)`, `SETITEM(S)`,
//! `GLOBAL`, `REDUCE`, `NEWOBJ`, `INST`, `OBJ`, `BUILD` and persistent ids — each as the C
//! unpickler runs it in `Load` mode and as zodbpickle's `noload` runs it in `NoLoad` mode.

use super::{
    Change, GlobalName, Machine, Mode, NONE_ID, Node, NodeId, Object, ObjectKind, malformed,
};
use std::borrow::Cow;

use crate::error::PickleError;

impl<'a> Machine<'a> {
    /// `APPEND`/`APPENDS` on the target just below stack height `x` (C `do_append`, and
    /// `do_noload_append` in `NoLoad` mode).
    pub(super) fn append(&mut self, x: Option<usize>, offset: usize) -> Result<(), PickleError> {
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
            // Moved rather than copied when the list is still empty (the usual case).
            Some(Node::List(list)) if list.is_empty() => *list = items,
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
    pub(super) fn set_items(&mut self, x: Option<usize>, offset: usize) -> Result<(), PickleError> {
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
            Some(Node::Dict(dict)) if dict.is_empty() => *dict = pairs,
            Some(Node::Dict(dict)) => dict.extend(pairs),
            Some(Node::Object(object)) => match object.changes.last_mut() {
                Some(Change::SetItems(previous)) => previous.extend(pairs),
                _ => object.changes.push(Change::SetItems(pairs)),
            },
            _ => return Err(malformed(offset, "SETITEM target is not a dict")),
        }
        Ok(())
    }

    pub(super) fn global(&mut self, offset: usize) -> Result<(), PickleError> {
        let start = self.pos;
        let node = match self.mode {
            Mode::NoLoad => {
                // noload reads the two lines and checks nothing.
                self.line(offset)?;
                self.line(offset)?;
                Node::Global(GlobalName(String::from_utf8_lossy(self.lines_from(start))))
            }
            Mode::Load => {
                self.nonempty_line(offset)?;
                self.nonempty_line(offset)?;
                // Two lines joined by an ASCII newline are UTF-8 exactly when each is.
                let text = std::str::from_utf8(self.lines_from(start))
                    .map_err(|_| malformed(offset, "GLOBAL name is not UTF-8"))?;
                Node::Global(GlobalName(Cow::Borrowed(text)))
            }
        };
        self.push_node(node);
        Ok(())
    }

    /// The input from `start` to the newline that ends the last line read.
    fn lines_from(&self, start: usize) -> &'a [u8] {
        let input: &'a [u8] = self.input;
        input
            .get(start..self.pos.saturating_sub(1))
            .unwrap_or_default()
    }

    pub(super) fn reduce(&mut self, offset: usize) -> Result<(), PickleError> {
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
    ) -> Option<Result<Node<'a>, &'static str>> {
        let Node::Global(global) = self.node(callable) else {
            return None;
        };
        if global.module() != "builtins" && global.module() != "__builtin__" {
            return None;
        }
        let frozen = match global.name() {
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

    pub(super) fn newobj(&mut self, offset: usize) -> Result<(), PickleError> {
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

    pub(super) fn inst(&mut self, offset: usize) -> Result<(), PickleError> {
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

    pub(super) fn obj(&mut self, offset: usize) -> Result<(), PickleError> {
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

    pub(super) fn build(&mut self, offset: usize) -> Result<(), PickleError> {
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

    pub(super) fn persistent(&mut self, pid: NodeId) {
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

fn new_object<'a>(kind: ObjectKind) -> Node<'a> {
    Node::Object(Box::new(Object {
        kind,
        changes: Vec::new(),
    }))
}
