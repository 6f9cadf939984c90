//! `bbru migrate`: moves the bytes of Files and Images still kept in their records
//! (uploaded before blobs, or while the ZEO server had no blob directory) into blobs of
//! their own, so that they stream from disk and their records shrink to a few hundred
//! bytes.
//!
//! The site's tree is walked once in a read-only snapshot to list them; then they are
//! moved in batches ([`limits::MIGRATE_BATCH_FILES_MAX`] files or
//! [`limits::MIGRATE_BATCH_BYTES_MAX`] bytes), each batch one transaction (user
//! `bbru migrate`, retried on conflict, so instances on the same ZEO server may go on
//! serving meanwhile).  Each file is looked at again in its batch's transaction, and one
//! in a blob already is left alone: running it again, or after an interruption, moves
//! only what is left.  Nothing else of a record changes (not its modification time);
//! history keeps the old revisions with their inline bytes, and reverting to one works.
//!
//! Files that are not migrated are migrated anyway the first time they are edited on a
//! storage with blobs (`model/edit.rs`).

use zodb::{DB, Transaction, TransactionManager};

use crate::limits;
use crate::model::edit::{self, EditError};
use crate::model::{Content, ContentRef, Site};

/// Why the migration stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MigrateError {
    #[error("the database holds no site")]
    NoSite,
    #[error(
        "the storage has no blob directory: an embedded Data.fs gets blobs/ beside it; a ZEO server needs one (bbru-zeo --blob-dir DIR, or blob-dir in zeo.conf)"
    )]
    NoBlobs,
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error(transparent)]
    Db(#[from] zodb::Error),
}

/// What a migration did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Report {
    /// Files and Images whose bytes were moved into blobs.
    pub migrated: u64,
    /// Their bytes.
    pub bytes: u64,
    /// Files and Images in blobs already.
    pub in_blobs: u64,
    /// Transactions committed.
    pub transactions: u64,
}

/// A File or Image found with its bytes in its record, and how many.
type Inline = (ContentRef, u64);

/// Moves every File's and Image's inline bytes into blobs; `progress` hears of each
/// committed batch (the report so far).
pub fn migrate(db: &DB, mut progress: impl FnMut(&Report)) -> Result<Report, MigrateError> {
    if db.storage().blobs().is_none() {
        return Err(MigrateError::NoBlobs);
    }
    let mut conn = db.connection();
    let mut report = Report::default();
    let inline = {
        let tx = conn.try_begin()?;
        let site = Site::find(&tx)?.ok_or(MigrateError::NoSite)?;
        walk(&tx, tx.get(site)?.content, &mut report)?
    };
    let manager = TransactionManager::new(limits::MIGRATE_ATTEMPTS)
        .with_backoff(limits::CONFLICT_RETRY_BACKOFF_MAX);
    for batch in batches(&inline) {
        let (moved, bytes) = manager.run(&mut conn, |tx| -> Result<_, MigrateError> {
            let (mut moved, mut bytes) = (0u64, 0u64);
            for (reference, size) in batch {
                if edit::move_inline_to_blob(tx, *reference)? {
                    moved += 1;
                    bytes += size;
                }
            }
            tx.set_user("bbru migrate");
            tx.note(&format!("migrate {moved} files into blobs"));
            Ok((moved, bytes))
        })?;
        report.migrated += moved;
        report.bytes += bytes;
        report.transactions += 1;
        progress(&report);
    }
    Ok(report)
}

/// The Files and Images under `root` with inline bytes (those in blobs counted in
/// `report`), folder by folder, without recursion.
fn walk(
    tx: &Transaction<'_>,
    root: zodb::PRef<crate::model::Folder>,
    report: &mut Report,
) -> Result<Vec<Inline>, MigrateError> {
    let mut inline = Vec::new();
    let mut folders = vec![root];
    while let Some(folder) = folders.pop() {
        let folder = tx.get(folder)?;
        for item in folder.items.iter(tx)? {
            let (_, any) = item?;
            let Some(reference) = ContentRef::resolve(tx, &any)? else {
                continue;
            };
            match reference.load(tx)? {
                Content::Folder(r, _) => folders.push(r),
                Content::File(r, f) if f.blob.is_none() => {
                    inline.push((ContentRef::File(r), f.byte_len()));
                }
                Content::Image(r, i) if i.blob.is_none() => {
                    inline.push((ContentRef::Image(r), i.byte_len()));
                }
                Content::File(..) | Content::Image(..) => report.in_blobs += 1,
                Content::Page(..) => {}
            }
        }
    }
    Ok(inline)
}

/// `inline` cut into batches of at most [`limits::MIGRATE_BATCH_FILES_MAX`] files and,
/// unless one file is larger, [`limits::MIGRATE_BATCH_BYTES_MAX`] bytes.
fn batches(inline: &[Inline]) -> Vec<&[Inline]> {
    let mut out = Vec::new();
    let (mut start, mut bytes) = (0, 0u64);
    for (i, (_, size)) in inline.iter().enumerate() {
        let full = i - start == limits::MIGRATE_BATCH_FILES_MAX
            || (i > start && bytes + size > limits::MIGRATE_BATCH_BYTES_MAX);
        if full {
            out.push(&inline[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += size;
    }
    if start < inline.len() {
        out.push(&inline[start..]);
    }
    out
}

impl zodb::Retryable for MigrateError {
    fn is_conflict(&self) -> bool {
        match self {
            MigrateError::Db(e) | MigrateError::Edit(EditError::Db(e)) => e.is_conflict(),
            _ => false,
        }
    }
    fn conflict_tid(&self) -> Option<zodb_storage::Tid> {
        match self {
            MigrateError::Db(e) | MigrateError::Edit(EditError::Db(e)) => e.conflict_tid(),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batches_are_bounded_by_files_and_bytes() {
        let r = ContentRef::File(zodb::PRef::from_oid(zodb::Oid(1)));
        let sizes = |b: &[&[Inline]]| -> Vec<Vec<u64>> {
            b.iter()
                .map(|s| s.iter().map(|(_, n)| *n).collect())
                .collect()
        };
        let big = limits::MIGRATE_BATCH_BYTES_MAX;
        let inline = vec![(r, big / 2), (r, big / 2), (r, 1), (r, big * 3), (r, 5)];
        assert_eq!(
            sizes(&batches(&inline)),
            vec![vec![big / 2, big / 2], vec![1], vec![big * 3], vec![5]]
        );
        let many = vec![(r, 1); limits::MIGRATE_BATCH_FILES_MAX * 2 + 1];
        let lens: Vec<usize> = batches(&many).iter().map(|b| b.len()).collect();
        assert_eq!(
            lens,
            vec![
                limits::MIGRATE_BATCH_FILES_MAX,
                limits::MIGRATE_BATCH_FILES_MAX,
                1
            ]
        );
        assert!(batches(&[]).is_empty());
    }
}
