//! The in-memory index: oid → position of the oid's newest record.
//!
//! Laid out like Python's `fsIndex`, for the same reason: a database of
//! millions of objects must open without spending tens of bytes per object.
//! Oids are grouped by their high 48 bits; each group keeps its 16-bit
//! suffixes and 48-bit positions in one sorted array of 8-byte entries.
//! Oids are handed out in ascending order, so new entries land at the end
//! of the last group and inserting is a push.

use std::collections::BTreeMap;

/// Positions are stored in 48 bits (as in `Data.fs.index`).
pub const POS_LIMIT: u64 = 1 << 48;

/// One entry: the oid's low 16 bits and the position's 48 bits, packed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    suffix: u16,
    pos: [u16; 3],
}

impl Entry {
    fn new(suffix: u16, pos: u64) -> Entry {
        assert!(pos < POS_LIMIT, "position {pos} does not fit in 48 bits");
        Entry {
            suffix,
            pos: [(pos >> 32) as u16, (pos >> 16) as u16, pos as u16],
        }
    }

    fn pos(&self) -> u64 {
        (u64::from(self.pos[0]) << 32) | (u64::from(self.pos[1]) << 16) | u64::from(self.pos[2])
    }
}

const _: () = assert!(std::mem::size_of::<Entry>() == 8);

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidIndex {
    groups: BTreeMap<u64, Vec<Entry>>,
    len: usize,
}

impl OidIndex {
    pub fn new() -> OidIndex {
        OidIndex::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    pub fn get(&self, oid: u64) -> Option<u64> {
        let group = self.groups.get(&(oid >> 16))?;
        let suffix = oid as u16;
        group
            .binary_search_by_key(&suffix, |e| e.suffix)
            .ok()
            .map(|i| group[i].pos())
    }

    pub fn insert(&mut self, oid: u64, pos: u64) {
        let group = self.groups.entry(oid >> 16).or_default();
        let suffix = oid as u16;
        let entry = Entry::new(suffix, pos);
        let added = match group.last() {
            None => {
                group.push(entry);
                true
            }
            Some(last) if last.suffix < suffix => {
                group.push(entry);
                true
            }
            Some(_) => match group.binary_search_by_key(&suffix, |e| e.suffix) {
                Ok(i) => {
                    group[i] = entry;
                    false
                }
                Err(i) => {
                    group.insert(i, entry);
                    true
                }
            },
        };
        self.len += usize::from(added);
    }

    pub fn max_oid(&self) -> Option<u64> {
        let (high, group) = self.groups.iter().next_back()?;
        group.last().map(|e| (high << 16) | u64::from(e.suffix))
    }

    /// Entries in ascending oid order.
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.groups.iter().flat_map(|(high, g)| {
            g.iter()
                .map(move |e| ((high << 16) | u64::from(e.suffix), e.pos()))
        })
    }

    /// Groups in ascending order: the high 48 bits, then (suffix, pos)
    /// pairs ascending. The shape of `Data.fs.index`.
    pub fn groups(
        &self,
    ) -> impl Iterator<Item = (u64, impl Iterator<Item = (u16, u64)> + '_)> + '_ {
        self.groups
            .iter()
            .map(|(high, g)| (*high, g.iter().map(|e| (e.suffix, e.pos()))))
    }

    /// Releases the spare capacity left by growth (after loading or
    /// rebuilding a large index).
    pub fn shrink_to_fit(&mut self) {
        for g in self.groups.values_mut() {
            g.shrink_to_fit();
        }
    }
}

impl Extend<(u64, u64)> for OidIndex {
    fn extend<T: IntoIterator<Item = (u64, u64)>>(&mut self, iter: T) {
        for (oid, pos) in iter {
            self.insert(oid, pos);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn behaves_like_a_map(ops in proptest::collection::vec((0u64..300_000, 0u64..POS_LIMIT), 0..500)) {
            let mut index = OidIndex::new();
            let mut model = BTreeMap::new();
            for (oid, pos) in ops {
                index.insert(oid, pos);
                model.insert(oid, pos);
                prop_assert_eq!(index.get(oid), Some(pos));
            }
            prop_assert_eq!(index.len(), model.len());
            prop_assert_eq!(index.iter().collect::<Vec<_>>(), model.iter().map(|(k, v)| (*k, *v)).collect::<Vec<_>>());
            prop_assert_eq!(index.max_oid(), model.keys().next_back().copied());
            prop_assert_eq!(index.get(1 << 40), None);
        }
    }
}
