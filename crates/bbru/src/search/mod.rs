//! Full-text search over titles, descriptions, page text and file names, in Russian and
//! English: the analysis ([`analyze`]), the index kept in the database and changed in
//! the same transaction as the content ([`index`]), queries ranked by BM25 with
//! snippets and the reader's permissions ([`query`]), and `bbru reindex` ([`reindex`]).
//!
//! The functions below are the hooks the model calls when an item is created, changed,
//! moved or removed (`model/edit.rs`, `model/tree.rs`, the revert of `@@history`): each
//! keeps the index as the change leaves the tree.  On a site whose index is missing the
//! first change makes one, marked incomplete until `bbru reindex` has run.

pub mod analyze;
pub mod index;
pub mod query;
pub mod reindex;
pub mod text;

use zodb::{PRef, Transaction};

use crate::model::{ContentRef, Folder};
use analyze::Analyzer;

/// `item` (and, for a folder, its contents) was added to `parent` as `name`: created,
/// pasted from a copy.
pub fn added(
    tx: &Transaction<'_>,
    parent: PRef<Folder>,
    name: &str,
    item: ContentRef,
) -> zodb::Result<()> {
    let Some(ix) = index::writable(tx)? else {
        return Ok(());
    };
    index::put_tree(
        tx,
        ix,
        &Analyzer::default(),
        item,
        index::docid(parent.oid()),
        name,
    )
}

/// The text of `item` changed (edited, reverted); its place did not.
pub fn changed(tx: &Transaction<'_>, item: ContentRef) -> zodb::Result<()> {
    let Some(ix) = index::writable(tx)? else {
        return Ok(());
    };
    index::refresh(tx, ix, &Analyzer::default(), &item.load(tx)?)
}

/// `item` is now `name` in `parent` (renamed, or moved by a cut and paste): its entry
/// alone changes, whatever it holds.
pub fn moved(
    tx: &Transaction<'_>,
    parent: PRef<Folder>,
    name: &str,
    item: ContentRef,
) -> zodb::Result<()> {
    let Some(ix) = index::writable(tx)? else {
        return Ok(());
    };
    // `put` rewrites the entry's place (and nothing else when the text is as indexed);
    // an item an incomplete index lacks is added.
    index::put(
        tx,
        ix,
        &Analyzer::default(),
        &item.load(tx)?,
        index::docid(parent.oid()),
        name,
    )
}

/// `item` (and, for a folder, everything in it) was removed from its folder.
pub fn removed(tx: &Transaction<'_>, item: ContentRef) -> zodb::Result<()> {
    let Some(ix) = index::writable(tx)? else {
        return Ok(());
    };
    index::remove_tree(tx, ix, item)
}

/// The conflict resolution of the classes every change of content writes beside it (the
/// index's BTrees and counters, a folder's items), for an undo of a transaction whose
/// objects later ones changed too (`zodb::DB::undo_resolving`).  A bucket's key type is
/// not in its record: each key type the site's trees use is tried (a state of keys of
/// another type does not parse).
pub fn undo_resolver(
    module: &str,
    name: &str,
) -> Option<((&'static str, &'static str), zodb::resolve::Resolver)> {
    use zodb::btree::{Length, resolve_bucket, resolve_tree};
    use zodb::resolve::Unresolved;
    type Merge = fn(zodb::Value, zodb::Value, zodb::Value) -> Result<zodb::Value, Unresolved>;
    type KeyedMerge =
        fn(zodb::Value, zodb::Value, zodb::Value) -> Result<zodb::Value, zodb::btree::Refusal>;
    fn any_key(
        merges: [KeyedMerge; 3],
        old: zodb::Value,
        committed: zodb::Value,
        new: zodb::Value,
    ) -> Result<zodb::Value, Unresolved> {
        let mut why = None;
        for merge in merges {
            match merge(old.clone(), committed.clone(), new.clone()) {
                Ok(merged) => return Ok(merged),
                Err(e) => why = Some(e),
            }
        }
        Err(why.map_or_else(|| Unresolved::new("no key type"), Unresolved::from))
    }
    let bucket: Merge = |o, c, n| {
        any_key(
            [
                resolve_bucket::<(String, u64)>,
                resolve_bucket::<u64>,
                resolve_bucket::<String>,
            ],
            o,
            c,
            n,
        )
    };
    let tree: Merge = |o, c, n| {
        any_key(
            [
                resolve_tree::<(String, u64)>,
                resolve_tree::<u64>,
                resolve_tree::<String>,
            ],
            o,
            c,
            n,
        )
    };
    match (module, name) {
        ("BTrees.OOBTree", "OOBucket") => Some((("BTrees.OOBTree", "OOBucket"), bucket)),
        ("BTrees.OOBTree", "OOBTree") => Some((("BTrees.OOBTree", "OOBTree"), tree)),
        ("BTrees.Length", "Length") => Some((
            ("BTrees.Length", "Length"),
            <Length as zodb::Persistent>::resolve_conflict,
        )),
        _ => None,
    }
}
