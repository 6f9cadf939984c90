//! The in-memory index: oid → position of the oid's newest record.
//!
//! Laid out like Python's `fsIndex`, for the same reason: a database of
//! millions of objects must open without spending tens of bytes per object.
//! Oids are grouped by their high 48 bits; each group keeps its 16-bit
//! suffixes in one sorted array and their 48-bit positions in another, so a
//! lookup's binary search runs over 2-byte keys that stay in cache.
//! Oids are handed out in ascending order, so new entries land at the end
//! of the last group and inserting is a push.
//!
//! Suffixes and positions are kept big-endian, as `Data.fs.index` writes them:
//! opening a saved index copies each bucket's two byte runs as they are (no
//! conversion per entry), and big-endian byte arrays compare as the numbers
//! they hold, so the binary search needs no conversion either.

use std::collections::BTreeMap;

/// Positions are stored in 48 bits (as in `Data.fs.index`).
pub const POS_LIMIT: u64 = 1 << 48;

/// A position's 48 bits, big-endian (6 bytes an entry, no padding).
type Pos48 = [u8; 6];

fn pos48(pos: u64) -> Pos48 {
    assert!(pos < POS_LIMIT, "position {pos} does not fit in 48 bits");
    let b = pos.to_be_bytes();
    [b[2], b[3], b[4], b[5], b[6], b[7]]
}

fn pos_of(p: &Pos48) -> u64 {
    u64::from_be_bytes([0, 0, p[0], p[1], p[2], p[3], p[4], p[5]])
}

/// A suffix (the low 16 bits of an oid), big-endian.
type Suffix = [u8; 2];

/// The oids sharing their high 48 bits: suffixes ascending, positions in
/// the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Group {
    suffixes: Vec<Suffix>,
    positions: Vec<Pos48>,
}

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct OidIndex {
    groups: BTreeMap<u64, Group>,
    len: usize,
}

impl OidIndex {
    pub fn new() -> OidIndex {
        OidIndex::default()
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn get(&self, oid: u64) -> Option<u64> {
        let group = self.groups.get(&(oid >> 16))?;
        let i = group
            .suffixes
            .binary_search(&(oid as u16).to_be_bytes())
            .ok()?;
        group.positions.get(i).map(pos_of)
    }

    pub fn insert(&mut self, oid: u64, pos: u64) {
        let group = self.groups.entry(oid >> 16).or_default();
        let suffix = (oid as u16).to_be_bytes();
        let pos = pos48(pos);
        let added = match group.suffixes.last() {
            None => true,
            Some(last) if *last < suffix => true,
            Some(_) => match group.suffixes.binary_search(&suffix) {
                Ok(i) => {
                    group.positions[i] = pos;
                    false
                }
                Err(i) => {
                    group.suffixes.insert(i, suffix);
                    group.positions.insert(i, pos);
                    self.len += 1;
                    return;
                }
            },
        };
        if added {
            group.suffixes.push(suffix);
            group.positions.push(pos);
            self.len += 1;
        }
    }

    /// Adds the group `high` straight from a bucket of `Data.fs.index`: `n` big-endian
    /// 2-byte suffixes, then their `n` big-endian 6-byte positions (fsIndex's
    /// `toString`).  The common case, suffixes ascending in a group not seen yet, copies
    /// the bytes into the group's arrays with no intermediate list; anything else goes
    /// through [`OidIndex::insert`].
    pub fn extend_group_raw(&mut self, high: u64, data: &[u8]) {
        let n = data.len() / 8;
        let (suffix_bytes, position_bytes) = data.split_at(n * 2);
        let (suffixes, _) = suffix_bytes.as_chunks::<2>();
        let (positions, _) = position_bytes[..n * 6].as_chunks::<6>();
        if n > 0 && !self.groups.contains_key(&high) && suffixes.is_sorted_by(|a, b| a < b) {
            self.len += n;
            let group = Group {
                suffixes: suffixes.to_vec(),
                positions: positions.to_vec(),
            };
            self.groups.insert(high, group);
        } else {
            for (s, p) in suffixes.iter().zip(positions) {
                self.insert((high << 16) | u64::from(u16::from_be_bytes(*s)), pos_of(p));
            }
        }
    }

    /// The smallest oid at or after `from`.
    pub fn first_at_or_after(&self, from: u64) -> Option<u64> {
        for (high, g) in self.groups.range(from >> 16..) {
            let start = if *high == from >> 16 {
                g.suffixes
                    .partition_point(|s| u16::from_be_bytes(*s) < from as u16)
            } else {
                0
            };
            if let Some(s) = g.suffixes.get(start) {
                return Some((high << 16) | u64::from(u16::from_be_bytes(*s)));
            }
        }
        None
    }

    pub fn max_oid(&self) -> Option<u64> {
        let (high, group) = self.groups.iter().next_back()?;
        group
            .suffixes
            .last()
            .map(|s| (high << 16) | u64::from(u16::from_be_bytes(*s)))
    }

    /// Entries in ascending oid order.
    #[cfg(test)]
    pub fn iter(&self) -> impl Iterator<Item = (u64, u64)> + '_ {
        self.groups.iter().flat_map(|(high, g)| {
            g.suffixes
                .iter()
                .zip(&g.positions)
                .map(move |(s, p)| ((high << 16) | u64::from(u16::from_be_bytes(*s)), pos_of(p)))
        })
    }

    /// Groups in ascending order: the high 48 bits, then (suffix, pos)
    /// pairs ascending. The shape of `Data.fs.index`.
    pub fn groups(
        &self,
    ) -> impl Iterator<Item = (u64, impl Iterator<Item = (u16, u64)> + '_)> + '_ {
        self.groups.iter().map(|(high, g)| {
            (
                *high,
                g.suffixes
                    .iter()
                    .zip(&g.positions)
                    .map(|(s, p)| (u16::from_be_bytes(*s), pos_of(p))),
            )
        })
    }

    /// Releases the spare capacity left by growth (after loading or
    /// rebuilding a large index).
    pub fn shrink_to_fit(&mut self) {
        for g in self.groups.values_mut() {
            g.suffixes.shrink_to_fit();
            g.positions.shrink_to_fit();
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
            let mut bulk = OidIndex::new();
            let mut grouped: BTreeMap<u64, Vec<(u16, u64)>> = BTreeMap::new();
            for (k, v) in &model {
                grouped.entry(k >> 16).or_default().push((*k as u16, *v));
            }
            // As Data.fs.index holds them; and once more with each group's entries
            // reversed, which takes the slow path.
            let raw = |entries: &[(u16, u64)]| {
                let mut data: Vec<u8> = entries.iter().flat_map(|(s, _)| s.to_be_bytes()).collect();
                data.extend(entries.iter().flat_map(|(_, p)| p.to_be_bytes()[2..].to_vec()));
                data
            };
            let mut reversed = OidIndex::new();
            for (high, entries) in &grouped {
                bulk.extend_group_raw(*high, &raw(entries));
                let backwards: Vec<_> = entries.iter().rev().copied().collect();
                reversed.extend_group_raw(*high, &raw(&backwards));
            }
            prop_assert_eq!(&bulk, &index);
            prop_assert_eq!(&reversed, &index);
            for probe in [0u64, 1, 65_535, 65_536, 131_071, 299_999, 300_000] {
                prop_assert_eq!(index.first_at_or_after(probe), model.range(probe..).next().map(|(k, _)| *k));
            }
        }
    }
}
