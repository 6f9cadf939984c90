//! Reachability for pack's garbage collection, shared by every engine.
//!
//! Python's rule (`filestorage-format.md` §13.2): start at the root (oid 0),
//! follow strong references only, and refuse to pack when a reachable
//! object refers to an oid that does not exist at the pack time, since
//! dropping the referrer's target silently would lose data.

use std::collections::HashSet;

use crate::error::{Result, StorageError};
use crate::ids::Oid;

/// The oids reachable from the root. `refs_of(oid)` gives the strong
/// references of the object's revision at the pack time, or `None` when the
/// object does not exist then.
pub fn reachable_from_root(
    mut refs_of: impl FnMut(Oid) -> Result<Option<Vec<Oid>>>,
) -> Result<HashSet<Oid>> {
    let mut seen = HashSet::new();
    let Some(root_refs) = refs_of(Oid::ROOT)? else {
        return Ok(seen);
    };
    seen.insert(Oid::ROOT);
    mark_reachable(Oid::ROOT, root_refs, &mut seen, refs_of)?;
    Ok(seen)
}

/// Adds to `seen` everything reachable from `refs`, the references of
/// `referrer`, with the same rules as [`reachable_from_root`].
pub fn mark_reachable(
    referrer: Oid,
    refs: Vec<Oid>,
    seen: &mut HashSet<Oid>,
    mut refs_of: impl FnMut(Oid) -> Result<Option<Vec<Oid>>>,
) -> Result<()> {
    // Depth-first with an explicit stack: a long linked list of objects must
    // not overflow the thread's stack. Each entry remembers its referrer for
    // the error message.
    let mut stack: Vec<(Oid, Oid)> = refs.into_iter().map(|r| (r, referrer)).collect();
    while let Some((oid, referrer)) = stack.pop() {
        if !seen.insert(oid) {
            continue;
        }
        match refs_of(oid)? {
            Some(refs) => stack.extend(refs.into_iter().map(|r| (r, oid))),
            None => {
                return Err(StorageError::Pack(format!(
                    "object {referrer} refers to object {oid}, which does not exist at the pack time"
                )));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn graph(edges: &[(u64, &[u64])]) -> HashMap<Oid, Vec<Oid>> {
        edges
            .iter()
            .map(|(o, rs)| (Oid(*o), rs.iter().map(|r| Oid(*r)).collect()))
            .collect()
    }

    #[test]
    fn follows_references_and_skips_cycles() {
        let g = graph(&[(0, &[1, 2]), (1, &[2, 0]), (2, &[]), (3, &[1])]);
        let r = reachable_from_root(|o| Ok(g.get(&o).cloned())).unwrap();
        let mut r: Vec<_> = r.into_iter().map(|o| o.0).collect();
        r.sort();
        assert_eq!(r, vec![0, 1, 2]);
    }

    #[test]
    fn empty_storage_has_nothing_reachable() {
        let r = reachable_from_root(|_| Ok(None)).unwrap();
        assert!(r.is_empty());
    }

    #[test]
    fn dangling_reference_refuses_the_pack() {
        let g = graph(&[(0, &[1]), (1, &[7])]);
        let err = reachable_from_root(|o| Ok(g.get(&o).cloned())).unwrap_err();
        assert!(err.to_string().contains("0000000000000007"), "{err}");
    }
}
