//! The opcode dispatch: what each protocol 0–3 opcode reads, pops and pushes, with the
//! stack checks zodbpickle's C unpickler makes.  The opcodes that build containers and
//! objects (where `Load` and `NoLoad` differ) are in `objects.rs`.

use std::borrow::Cow;

use super::{Machine, NONE_ID, Node, NodeId, malformed};
use crate::error::PickleError;
use crate::opcodes as op;
use crate::text::{self, IntText};

impl<'a> Machine<'a> {
    /// Runs one opcode; `Some(value)` at `STOP`.
    pub(super) fn step(
        &mut self,
        opcode: u8,
        offset: usize,
    ) -> Result<Option<NodeId>, PickleError> {
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
                self.push_node(Node::Bytes(Cow::Borrowed(bytes)));
            }
            op::SHORT_BINBYTES => {
                let n = self.byte(offset)?;
                let bytes = self.counted(usize::from(n), offset)?;
                self.push_node(Node::Bytes(Cow::Borrowed(bytes)));
            }
            op::STRING => {
                let line = self.nonempty_line(offset)?;
                let bytes = text::parse_string_line(line).map_err(|r| malformed(offset, r))?;
                self.push_node(Self::py2_string(Cow::Owned(bytes), offset)?);
            }
            op::BINSTRING => {
                let n = self.i32_le(offset)?;
                let n = usize::try_from(n)
                    .map_err(|_| malformed(offset, "BINSTRING pickle has negative byte count"))?;
                let bytes = self.counted(n, offset)?;
                self.push_node(Self::py2_string(Cow::Borrowed(bytes), offset)?);
            }
            op::SHORT_BINSTRING => {
                let n = self.byte(offset)?;
                let bytes = self.counted(usize::from(n), offset)?;
                self.push_node(Self::py2_string(Cow::Borrowed(bytes), offset)?);
            }
            op::UNICODE => {
                let line = self.line(offset)?;
                let wtf8 =
                    text::decode_raw_unicode_escape(line).map_err(|r| malformed(offset, r))?;
                let node = self.str_node(Cow::Owned(wtf8), offset)?;
                self.push_node(node);
            }
            op::BINUNICODE => {
                let n = self.u32_le(offset)?;
                let n = usize::try_from(n).map_err(|_| PickleError::Truncated { offset })?;
                let bytes = self.counted(n, offset)?;
                // Strict UTF-8 (the usual case) passes Python's surrogatepass decoder
                // too, and is checked once; only other bytes need the finer check.
                let node = match std::str::from_utf8(bytes) {
                    Ok(text) => Node::Str(Cow::Borrowed(text)),
                    Err(_) => {
                        text::check_utf8_surrogatepass(bytes).map_err(|r| malformed(offset, r))?;
                        self.str_node(Cow::Borrowed(bytes), offset)?
                    }
                };
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
                let pid = self.add(Node::Bytes(Cow::Borrowed(line)));
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
}
