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
    index::put_tree(tx, ix, &Analyzer::default(), item, parent.oid().0, name)
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
        parent.oid().0,
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
