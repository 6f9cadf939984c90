//! The index, kept in the database beside the content (as Zope's catalog): changed in the
//! transaction that changes an item, so every instance reads the same results at once.
//!
//! ```text
//! Site.search            Index
//!   .postings            BTree (term, docid) -> posting     one key per term and item
//!   .docs                BTree docid -> (parent docid, name, DocTerms)
//!   .count, .total_len   Lengths (items, and the sum of their lengths; 16 of each)
//! DocTerms               an item's terms with their postings: what to remove on change
//! ```
//!
//! A docid is the item's oid, scrambled ([`docid`]), so an item keeps it across renames,
//! moves and edits, and items created one after the other (oids in sequence) land
//! all over each term's postings instead of at the end: concurrent creations then
//! write different buckets, not the same last one, which would split under both of
//! them (a conflict no resolver merges).  An
//! item's entry holds its parent and its name, not its path: renaming or moving a folder
//! rewrites that folder's entry alone, and a query finds an item's path by following the
//! parents (and checks each step against the folder's items, so a stale entry never shows).
//!
//! Concurrency: saving a page writes its `DocTerms` record (its own), the postings of
//! the terms that changed and the two counters.  Postings of different items are
//! different keys, so two saves that meet in a bucket are merged by the bucket resolver;
//! the counters are `Length`s, whose changes add up.  Nothing every save writes is shared
//! without a resolver: the index object itself is written only when the index is made.
//!
//! A posting is one int: the item's weighted count of the term (`weight << 8`) and its
//! length as a logarithmic bin (8 per doubling, about 9% apart), so a query ranks from
//! postings alone, and an edit that barely changes a page's length leaves its other
//! postings as they are.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};
use zodb::btree::{BTree, Length};
use zodb::{PRef, Transaction, persistent};

use super::analyze::{ANALYZER_VERSION, Analyzer};
use super::text;
use crate::limits;
use crate::model::{Content, ContentRef, Site};

/// Items per postings bucket: four times `OOBTree`'s, since a query reads a term's
/// postings in key order, bucket after bucket, and an item's save writes one bucket per
/// changed term whatever its size (Python reads any size).
pub const POSTINGS_BUCKET_ITEMS: usize = 120;

/// `(term, docid)` -> posting.
pub type Postings = BTree<(String, u64), u32, POSTINGS_BUCKET_ITEMS, 250>;
/// An item's entry: parent docid (0 for the site root folder), name, terms.
pub type DocEntry = (u64, String, PRef<DocTerms>);
/// docid -> entry (buckets as large as the postings': every creation inserts here, and
/// fewer splits mean fewer conflicts between concurrent creations).
pub type Docs = BTree<u64, DocEntry, POSTINGS_BUCKET_ITEMS, 250>;

/// The search index of a site.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Index {
    pub postings: PRef<Postings>,
    pub docs: PRef<Docs>,
    /// Items, as the sum of [`COUNTER_SHARDS`] counters (an item counts in the one its
    /// docid picks).
    pub count: Vec<PRef<Length>>,
    /// The sum of the items' lengths, sharded alike.
    pub total_len: Vec<PRef<Length>>,
    /// Whether every item is in it: false for an index the first write of an older site
    /// made, until `bbru reindex` has gone through the site.
    pub complete: bool,
    /// [`ANALYZER_VERSION`] of the terms.
    pub analyzer: u32,
}
persistent!(Index, "bbru.search", "Index");

/// An item's terms and their postings (sorted by term), and its length.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct DocTerms {
    pub terms: Vec<(String, u32)>,
    pub len: u32,
}
persistent!(DocTerms, "bbru.search", "DocTerms");

/// Counters of each total: a `Length`'s concurrent changes merge, but only in a new
/// round of the commit; two saves of different items meet on one counter once in
/// sixteen, so they mostly commit in one round.
pub const COUNTER_SHARDS: usize = 16;

/// Docids keep 63 bits, so that they pickle as Python ints of one `i64`.
const DOCID_MASK: u64 = (1 << 63) - 1;
/// Odd, so multiplying by it modulo 2^63 is a bijection (the golden ratio's bits).
const SCRAMBLE: u64 = 0x9e37_79b9_7f4a_7c15;
/// Its inverse modulo 2^64 (so modulo 2^63 too): Newton's iteration, each step
/// doubling the bits that are right.
const UNSCRAMBLE: u64 = {
    let mut inverse = SCRAMBLE;
    let mut i = 0;
    while i < 6 {
        inverse = inverse.wrapping_mul(2u64.wrapping_sub(SCRAMBLE.wrapping_mul(inverse)));
        i += 1;
    }
    inverse
};

/// The counter shard of `docid`.
fn shard(docid: u64) -> usize {
    (docid % COUNTER_SHARDS as u64) as usize
}

/// The items of the index and the sum of their lengths.
pub fn totals(tx: &Transaction<'_>, ix: &Index) -> zodb::Result<(i64, i64)> {
    let sum = |counters: &[PRef<Length>]| -> zodb::Result<i64> {
        counters
            .iter()
            .map(|c| Ok(tx.get(*c)?.value()))
            .sum::<zodb::Result<i64>>()
    };
    Ok((sum(&ix.count)?, sum(&ix.total_len)?))
}

/// The docid of the object `oid`.
pub fn docid(oid: zodb::Oid) -> u64 {
    oid.0.wrapping_mul(SCRAMBLE) & DOCID_MASK
}

/// The oid of the docid `docid`.
pub fn oid_of(docid: u64) -> zodb::Oid {
    zodb::Oid(docid.wrapping_mul(UNSCRAMBLE) & DOCID_MASK)
}

/// A posting: weighted count and length bin.
pub fn posting(weight: u32, len: u32) -> u32 {
    (weight.min(0x00ff_ffff) << 8) | len_bin(len)
}

fn len_bin(len: u32) -> u32 {
    ((f64::from(len) + 1.0).log2() * 8.0).round().min(255.0) as u32
}

/// A posting's weighted count and (approximate) item length.
pub fn unpack(posting: u32) -> (f64, f64) {
    let weight = f64::from(posting >> 8);
    let len = (f64::from(posting & 0xff) / 8.0).exp2() - 1.0;
    (weight, len)
}

/// The terms of `content` with their postings.
pub fn terms_of(analyzer: &Analyzer, content: &Content) -> DocTerms {
    let mut weights: HashMap<String, u32> = HashMap::new();
    for (field, text) in text::fields(content) {
        for term in analyzer.terms(&text) {
            *weights.entry(term).or_default() += field.weight();
        }
    }
    let mut terms: Vec<(String, u32)> = weights.into_iter().collect();
    if terms.len() > limits::SEARCH_TERMS_PER_ITEM_MAX {
        terms.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        terms.truncate(limits::SEARCH_TERMS_PER_ITEM_MAX);
    }
    let len = terms
        .iter()
        .map(|(_, w)| *w)
        .fold(0u32, u32::saturating_add);
    terms.sort_unstable();
    for (_, w) in &mut terms {
        *w = posting(*w, len);
    }
    DocTerms { terms, len }
}

impl Index {
    /// A new empty index in `tx` (to be referred to by the site).
    pub fn create(tx: &Transaction<'_>, complete: bool) -> zodb::Result<PRef<Index>> {
        let index = Index {
            postings: tx.add(Postings::new())?,
            docs: tx.add(Docs::new())?,
            count: (0..COUNTER_SHARDS)
                .map(|_| tx.add(Length::new(0)))
                .collect::<zodb::Result<_>>()?,
            total_len: (0..COUNTER_SHARDS)
                .map(|_| tx.add(Length::new(0)))
                .collect::<zodb::Result<_>>()?,
            complete,
            analyzer: ANALYZER_VERSION,
        };
        tx.add(index)
    }
}

/// The site's index, if it has one.
pub fn find(tx: &Transaction<'_>) -> zodb::Result<Option<PRef<Index>>> {
    let Some(site) = Site::find(tx)? else {
        return Ok(None);
    };
    Ok(tx.get(site)?.search)
}

/// The site's index, made now (incomplete, holding the root folder) if the site has
/// none yet: the first change of an older site starts it, and `bbru reindex` completes
/// it.
pub fn writable(tx: &Transaction<'_>) -> zodb::Result<Option<PRef<Index>>> {
    let Some(site) = Site::find(tx)? else {
        return Ok(None);
    };
    if let Some(index) = tx.get(site)?.search {
        return Ok(Some(index));
    }
    let index = Index::create(tx, false)?;
    tx.update(site, |s| s.search = Some(index))?;
    // The root folder's entry, so that items created in it are found at once.
    let root = ContentRef::Folder(tx.get(site)?.content).load(tx)?;
    put(tx, index, &Analyzer::default(), &root, 0, "")?;
    Ok(Some(index))
}

/// Puts `content` in the index as item `name` of the docid `parent` (0: none, for the
/// site root folder), or brings
/// its entry up to date: only the postings that changed are written.
pub fn put(
    tx: &Transaction<'_>,
    index: PRef<Index>,
    analyzer: &Analyzer,
    content: &Content,
    parent: u64,
    name: &str,
) -> zodb::Result<()> {
    let ix = tx.get(index)?;
    let docid = docid(content.reference().oid());
    let new = terms_of(analyzer, content);
    match ix.docs.get(tx, &docid)? {
        Some((p, n, terms)) => {
            let old = tx.get(terms)?;
            write_postings(tx, &ix, docid, &old.terms, &new.terms)?;
            let delta = i64::from(new.len) - i64::from(old.len);
            if *old != new {
                tx.update(terms, |t| *t = new)?;
            }
            if delta != 0 {
                tx.update(ix.total_len[shard(docid)], |l| l.change(delta))?;
            }
            if p != parent || n != name {
                ix.docs
                    .insert(tx, docid, (parent, name.to_owned(), terms))?;
            }
        }
        None => {
            write_postings(tx, &ix, docid, &[], &new.terms)?;
            let len = new.len;
            let terms = tx.add(new)?;
            ix.docs
                .insert(tx, docid, (parent, name.to_owned(), terms))?;
            tx.update(ix.count[shard(docid)], |l| l.change(1))?;
            tx.update(ix.total_len[shard(docid)], |l| l.change(i64::from(len)))?;
        }
    }
    Ok(())
}

/// Brings the terms of an item already in the index up to date (its place unchanged);
/// an item not in it (an index still incomplete) is left for `bbru reindex`.
pub fn refresh(
    tx: &Transaction<'_>,
    index: PRef<Index>,
    analyzer: &Analyzer,
    content: &Content,
) -> zodb::Result<()> {
    let docid = docid(content.reference().oid());
    let Some((parent, name, _)) = tx.get(index)?.docs.get(tx, &docid)? else {
        return Ok(());
    };
    put(tx, index, analyzer, content, parent, &name)
}

/// Removes the item `docid` from the index.
pub fn remove(tx: &Transaction<'_>, index: PRef<Index>, docid: u64) -> zodb::Result<()> {
    let ix = tx.get(index)?;
    let Some((_, _, terms)) = ix.docs.remove(tx, &docid)? else {
        return Ok(());
    };
    let old = tx.get(terms)?;
    write_postings(tx, &ix, docid, &old.terms, &[])?;
    tx.update(ix.count[shard(docid)], |l| l.change(-1))?;
    tx.update(ix.total_len[shard(docid)], |l| {
        l.change(-i64::from(old.len))
    })?;
    Ok(())
}

/// Writes the postings of `docid` that differ between `old` and `new` (both sorted by
/// term).
fn write_postings(
    tx: &Transaction<'_>,
    ix: &Index,
    docid: u64,
    old: &[(String, u32)],
    new: &[(String, u32)],
) -> zodb::Result<()> {
    let (mut i, mut j) = (0, 0);
    loop {
        match (old.get(i), new.get(j)) {
            (None, None) => return Ok(()),
            (Some((t, _)), None) => {
                ix.postings.remove(tx, &(t.clone(), docid))?;
                i += 1;
            }
            (None, Some((t, p))) => {
                ix.postings.insert(tx, (t.clone(), docid), *p)?;
                j += 1;
            }
            (Some((to, po)), Some((tn, pn))) => match to.cmp(tn) {
                std::cmp::Ordering::Less => {
                    ix.postings.remove(tx, &(to.clone(), docid))?;
                    i += 1;
                }
                std::cmp::Ordering::Greater => {
                    ix.postings.insert(tx, (tn.clone(), docid), *pn)?;
                    j += 1;
                }
                std::cmp::Ordering::Equal => {
                    if po != pn {
                        ix.postings.insert(tx, (tn.clone(), docid), *pn)?;
                    }
                    i += 1;
                    j += 1;
                }
            },
        }
    }
}

/// Puts `item` and, for a folder, everything inside it, in the index (item `name` of
/// `parent`).
pub fn put_tree(
    tx: &Transaction<'_>,
    index: PRef<Index>,
    analyzer: &Analyzer,
    item: ContentRef,
    parent: u64,
    name: &str,
) -> zodb::Result<()> {
    let mut stack = vec![(item, parent, name.to_owned())];
    while let Some((item, parent, name)) = stack.pop() {
        let content = item.load(tx)?;
        put(tx, index, analyzer, &content, parent, &name)?;
        if let Content::Folder(r, folder) = &content {
            for child in folder.items.iter(tx)? {
                let (name, any) = child?;
                if let Some(child) = ContentRef::resolve(tx, &any)? {
                    stack.push((child, docid(r.oid()), name));
                }
            }
        }
    }
    Ok(())
}

/// Removes `item` and, for a folder, everything inside it, from the index.
pub fn remove_tree(tx: &Transaction<'_>, index: PRef<Index>, item: ContentRef) -> zodb::Result<()> {
    let mut stack = vec![item];
    while let Some(item) = stack.pop() {
        remove(tx, index, docid(item.oid()))?;
        if let ContentRef::Folder(r) = item {
            for child in tx.get(r)?.items.iter(tx)? {
                let (_, any) = child?;
                if let Some(child) = ContentRef::resolve(tx, &any)? {
                    stack.push(child);
                }
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn docids_scramble_oids_both_ways() {
        for oid in [1u64, 2, 3, 17, 1 << 40, DOCID_MASK] {
            let d = docid(zodb::Oid(oid));
            assert!(d <= DOCID_MASK);
            assert_eq!(oid_of(d), zodb::Oid(oid));
        }
        assert_eq!(docid(zodb::Oid(0)), 0);
        // Neighbours are far apart.
        let (a, b) = (docid(zodb::Oid(1000)), docid(zodb::Oid(1001)));
        assert!(a.abs_diff(b) > 1 << 40, "{a} {b}");
    }

    #[test]
    fn postings_pack_weight_and_length() {
        let (w, len) = unpack(posting(7, 300));
        assert_eq!(w, 7.0);
        assert!((len - 300.0).abs() / 300.0 < 0.05, "{len}");
    }
}
