//! `bbru reindex`: builds the search index of an existing site, or brings it up to date.
//!
//! The site's tree is walked folder by folder, [`limits::REINDEX_BATCH_ITEMS`] items per
//! transaction (user `bbru reindex`, retried on conflict), so instances may go on
//! serving: their changes update the index as they commit, and an item indexed by both
//! ends up as its last change left it (an item's entry is rewritten whole from its
//! current text).  Then the entries no longer leading to an item of the site (removed
//! or moved while the index was missing) are dropped, and the index is marked
//! complete.
//!
//! Idempotent: an item whose terms are already indexed writes nothing, so a second run
//! commits no transaction (one without changes is not committed).  An index made by other analysis rules
//! ([`ANALYZER_VERSION`]) is replaced by a new one at the start.

use std::collections::{HashSet, VecDeque};

use zodb::{DB, TransactionManager};

use super::analyze::{ANALYZER_VERSION, Analyzer};
use super::index::{self, Index};
use super::query::Places;
use crate::limits;
use crate::model::{Content, ContentRef, Site};
use crate::security::Principal;

/// Entries checked per transaction when stale ones are looked for (a read each, a
/// write only for the stale).
const SWEEP_BATCH_ENTRIES: usize = 5_000;

/// Why the reindex stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ReindexError {
    #[error("the database holds no site")]
    NoSite,
    #[error(transparent)]
    Db(#[from] zodb::Error),
}

impl zodb::Retryable for ReindexError {
    fn is_conflict(&self) -> bool {
        matches!(self, ReindexError::Db(e) if e.is_conflict())
    }
    fn conflict_tid(&self) -> Option<zodb_storage::Tid> {
        match self {
            ReindexError::Db(e) => e.conflict_tid(),
            _ => None,
        }
    }
}

/// What a reindex did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Items indexed (looked at; only changed ones were written).
    pub items: u64,
    /// Stale entries removed.
    pub removed: u64,
    /// Whether a new index was made (none, or one of other rules).
    pub created: bool,
    /// Transactions committed.
    pub transactions: u64,
}

/// One item to index: what, and where.
type Todo = (ContentRef, u64, String);

/// Reindexes the site of `db`; `progress` hears of each committed batch.
pub fn reindex(db: &DB, mut progress: impl FnMut(&Report)) -> Result<Report, ReindexError> {
    let mut conn = db.connection();
    let manager = TransactionManager::new(limits::MIGRATE_ATTEMPTS)
        .with_backoff(limits::CONFLICT_RETRY_BACKOFF_MAX);
    let mut report = Report::default();
    let (root, created) = manager.run(&mut conn, |tx| -> Result<_, ReindexError> {
        let site = Site::find(tx)?.ok_or(ReindexError::NoSite)?;
        let s = tx.get(site)?;
        let current = match s.search {
            Some(ix) => tx.get(ix)?.analyzer == ANALYZER_VERSION,
            None => false,
        };
        if !current {
            let ix = Index::create(tx, false)?;
            tx.update(site, |s| s.search = Some(ix))?;
            tx.set_user("bbru reindex");
            tx.note("reindex: a new search index");
        }
        Ok((s.content, !current))
    })?;
    report.created = created;
    report.transactions += u64::from(created);
    let analyzer = Analyzer::default();
    let mut queue: VecDeque<Todo> = VecDeque::from([(ContentRef::Folder(root), 0, String::new())]);
    let mut seen = HashSet::new();
    while !queue.is_empty() {
        let take = queue.len().min(limits::REINDEX_BATCH_ITEMS);
        let batch: Vec<Todo> = queue.drain(..take).collect();
        let children = manager.run(&mut conn, |tx| -> Result<_, ReindexError> {
            let ix = index::find(tx)?.ok_or(ReindexError::NoSite)?;
            let mut children = Vec::new();
            for (item, parent, name) in &batch {
                let content = item.load(tx)?;
                index::put(tx, ix, &analyzer, &content, *parent, name)?;
                if let Content::Folder(r, folder) = &content {
                    for child in folder.items.iter(tx)? {
                        let (name, any) = child?;
                        if let Some(child) = ContentRef::resolve(tx, &any)? {
                            children.push((child, index::docid(r.oid()), name));
                        }
                    }
                }
            }
            tx.set_user("bbru reindex");
            tx.note(&format!("reindex {} items", batch.len()));
            Ok(children)
        })?;
        report.items += batch.len() as u64;
        report.transactions += 1;
        for child in children {
            // An object found twice (shared by two folders, written by another program)
            // is indexed once, at its first place.
            if seen.insert(child.0.oid()) {
                queue.push_back(child);
            }
        }
        progress(&report);
    }
    report.removed = sweep(&mut conn, &manager)?;
    manager.run(&mut conn, |tx| -> Result<_, ReindexError> {
        let ix = index::find(tx)?.ok_or(ReindexError::NoSite)?;
        if !tx.get(ix)?.complete {
            tx.update(ix, |i| i.complete = true)?;
        }
        tx.set_user("bbru reindex");
        tx.note("reindex: the search index is complete");
        Ok(())
    })?;
    report.transactions += 1;
    progress(&report);
    Ok(report)
}

/// Removes the entries that lead to no item of the site; returns how many.
fn sweep(conn: &mut zodb::Connection, manager: &TransactionManager) -> Result<u64, ReindexError> {
    let mut removed = 0;
    let mut from = 0u64;
    loop {
        let (next, gone) = manager.run(conn, |tx| -> Result<_, ReindexError> {
            let site = Site::find(tx)?.ok_or(ReindexError::NoSite)?;
            let root = index::docid(tx.get(site)?.content.oid());
            let ixr = index::find(tx)?.ok_or(ReindexError::NoSite)?;
            let ix = tx.get(ixr)?;
            let principal = Principal::Anonymous;
            let mut places = Places::new(tx, &ix, &principal, root);
            let mut stale = Vec::new();
            let mut last = None;
            for entry in ix.docs.range(tx, from..)?.take(SWEEP_BATCH_ENTRIES) {
                let (docid, _) = entry?;
                if !places.reachable(docid)? {
                    stale.push(docid);
                }
                last = Some(docid);
            }
            for docid in &stale {
                index::remove(tx, ixr, *docid)?;
            }
            tx.set_user("bbru reindex");
            tx.note(&format!("reindex: {} stale entries removed", stale.len()));
            Ok((last, stale.len() as u64))
        })?;
        removed += gone;
        match next {
            Some(last) if last < u64::MAX => from = last + 1,
            _ => return Ok(removed),
        }
    }
}
