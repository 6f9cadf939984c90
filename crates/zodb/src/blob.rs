//! [`Blob`]: a persistent object whose bytes live in a file beside the database, as
//! ZODB's `ZODB.blob.Blob` (same class, same record: the state is `None`), so that
//! large files are never loaded into memory nor rewritten when the objects around
//! them change.
//!
//! A transaction adds a blob from a file ([`Transaction::add_blob`]) or gives an
//! existing one a new file ([`Transaction::set_blob_file`]); the file is taken at once
//! (moved into the storage's blob `tmp/`, so the caller cannot change it meanwhile) and
//! stored with the commit (`Storage::store_blob`); an abort removes it.  Reading
//! ([`Transaction::blob_file`]) gives the path of the revision this transaction sees,
//! a file that never changes: open it and stream it.  The storage needs a blob
//! directory (a FileStorage's `blob_dir`, a ZEO client's blob cache or shared
//! directory); without one, blobs fail with `Unsupported`.

use std::path::{Path, PathBuf};

use zodb_pickle::Value;
use zodb_storage::StorageError;

use crate::connection::Transaction;
use crate::error::{Error, Result};
use crate::persistent::{PRef, Persistent};
use crate::state::StateError;

/// A blob: its bytes are in its file, its record says only its class.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blob;

impl Persistent for Blob {
    const MODULE: &'static str = "ZODB.blob";
    const NAME: &'static str = "Blob";

    fn to_state(&self) -> std::result::Result<Value, StateError> {
        Ok(Value::None)
    }

    fn from_state(state: Value) -> std::result::Result<Self, StateError> {
        match state {
            Value::None => Ok(Blob),
            other => Err(StateError(format!("a blob's state is None, not {other:?}"))),
        }
    }
}

impl Transaction<'_> {
    /// Adds a blob holding the file `file`, which the transaction takes (moves); stored
    /// when something stored by the same commit refers to it.
    pub fn add_blob(&self, file: &Path) -> Result<PRef<Blob>> {
        let staged = self.stage_blob(file)?;
        let r = self.add(Blob)?;
        self.put_blob_file(r.oid(), staged);
        Ok(r)
    }

    /// Gives the blob `r` the file `file` (a new revision at commit); the transaction
    /// takes the file.
    pub fn set_blob_file(&self, r: PRef<Blob>, file: &Path) -> Result<()> {
        let staged = self.stage_blob(file)?;
        // Marks the blob changed (its record, the same `None`, is stored again).
        if let Err(e) = self.edit(r) {
            zodb_storage::blob::BlobDir::discard(&staged);
            return Err(e);
        }
        self.put_blob_file(r.oid(), staged);
        Ok(())
    }

    /// The file of the blob `r` as this transaction sees it: the file given in this
    /// transaction, or the committed revision's (never changed: read it, stream it).
    pub fn blob_file(&self, r: PRef<Blob>) -> Result<PathBuf> {
        if let Some(f) = self.pending_blob_file(r.oid()) {
            return Ok(f);
        }
        let serial = self.serial(r)?;
        Ok(self.storage().load_blob(r.oid(), serial)?)
    }

    /// Where a file meant for [`Transaction::add_blob`] is best written (the storage's
    /// blob `tmp/`, on the file system the blob directory is on, so taking it is a
    /// rename); `None` when the storage has no blobs.
    pub fn blob_temp_dir(&self) -> Option<PathBuf> {
        self.storage().blobs().map(|b| b.tmp_dir())
    }

    fn stage_blob(&self, file: &Path) -> Result<PathBuf> {
        let blobs = self.storage().blobs().ok_or_else(|| {
            Error::Storage(StorageError::Unsupported(
                "blobs need a storage with a blob directory".into(),
            ))
        })?;
        blobs.stage(file).map_err(|e| {
            Error::Storage(StorageError::io(
                format!("taking blob file {}", file.display()),
                e,
            ))
        })
    }
}
