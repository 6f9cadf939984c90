//! Blobs for the client, in ZEO's two modes (`ClientOptions::blob_dir`):
//!
//! * a **blob cache** of the client's own (`shared_blob_dir` false): a stored blob is
//!   uploaded at vote as `storeBlobStart`, chunks of `BLOB_CHUNK_BYTES` and
//!   `storeBlobEnd`, read from its file as they are sent; a revision not in the cache
//!   is asked for with `sendBlob` and written to `<file>.dl` from the `receiveBlob…`
//!   callbacks on the reader thread, then renamed into place.  The cache is bounded
//!   (`blob_cache_bytes`): past it, the files downloaded longest ago go;
//! * the **server's blob directory, shared** (`shared_blob_dir` true, e.g. on the same
//!   host or a network file system): a stored blob is put in the object's directory
//!   there as `<serial>….tmp` and named to the server with `storeBlobShared`; loads
//!   read the server's files directly.
//!
//! Neither reads a whole file into memory.  The cache uses ZODB's bushy layout (it is
//! this client's own; Python's clients lay theirs out otherwise).

use std::collections::HashMap;
use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;
use zodb_pickle::Value;
use zodb_storage::blob::{BlobDir, CacheBound, hex_repr};
use zodb_storage::{Oid, StorageError, Tid};

use crate::limits;
use crate::wire::{Call, Callback};

/// The client's blob directory and what it is for.
#[derive(Debug)]
pub(crate) struct Blobs {
    pub(crate) dir: BlobDir,
    /// The server's own blob directory (shared), or this client's cache.
    pub(crate) shared: bool,
    /// The cache's bound (`blob_cache_bytes`).
    bound: CacheBound,
    /// Downloads one at a time (two loads of one revision must not both write it).
    download: Mutex<()>,
    /// Files being received, by revision.
    receiving: Mutex<HashMap<(Oid, Tid), fs::File>>,
}

fn io(what: String, e: std::io::Error) -> StorageError {
    StorageError::io(what, e)
}

impl Blobs {
    pub(crate) fn open(
        root: &Path,
        shared: bool,
        cache_bytes_max: u64,
    ) -> Result<Blobs, StorageError> {
        let dir = BlobDir::open(root, None)
            .map_err(|e| io(format!("blob directory {}", root.display()), e))?;
        Ok(Blobs {
            dir,
            shared,
            bound: CacheBound::new(cache_bytes_max),
            download: Mutex::new(()),
            receiving: Mutex::new(HashMap::new()),
        })
    }

    /// Takes a stored blob's file for its transaction (into `tmp/`).
    pub(crate) fn stage(&self, file: &Path) -> Result<PathBuf, StorageError> {
        self.dir
            .stage(file)
            .map_err(|e| io(format!("taking blob file {}", file.display()), e))
    }

    /// The one-way calls that hand the server `oid`'s blob file `staged` for the store
    /// `(serial, data)` of transaction `txn`: an upload read chunk by chunk as it is
    /// sent, or, sharing the server's directory, the file moved there and named.
    pub(crate) fn store_calls(
        &self,
        oid: Oid,
        serial: Tid,
        data: Vec<u8>,
        staged: &Path,
        txn: Value,
        failed: &Arc<AtomicBool>,
    ) -> Result<Box<dyn Iterator<Item = Call> + Send>, StorageError> {
        if self.shared {
            let dir = self.dir.oid_dir(oid);
            fs::create_dir_all(&dir).map_err(|e| io(format!("creating {}", dir.display()), e))?;
            let target = tempfile::Builder::new()
                .prefix(&hex_repr(serial.0))
                .suffix(".tmp")
                .tempfile_in(&dir)
                .and_then(|f| f.into_temp_path().keep().map_err(|e| e.error))
                .map_err(|e| io(format!("a file in {}", dir.display()), e))?;
            // The link leaves the staged file for another vote.
            let _ = fs::remove_file(&target);
            fs::hard_link(staged, &target)
                .or_else(|_| fs::copy(staged, &target).map(drop))
                .map_err(|e| io(format!("putting the blob in {}", dir.display()), e))?;
            let filename = target
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            return Ok(Box::new(std::iter::once(Call::StoreBlobShared {
                oid,
                serial,
                data,
                filename,
                txn,
            })));
        }
        let file = fs::File::open(staged)
            .map_err(|e| io(format!("reading blob file {}", staged.display()), e))?;
        let chunks = Chunks {
            file: Some(file),
            failed: Arc::clone(failed),
        };
        let end = Call::StoreBlobEnd {
            oid,
            serial,
            data,
            txn,
        };
        Ok(Box::new(
            std::iter::once(Call::StoreBlobStart)
                .chain(chunks)
                .chain(std::iter::once(end)),
        ))
    }

    /// After the commit at `tid`: a cache keeps the uploaded file as that revision (the
    /// server has its own copy); with a shared directory the server placed it.
    pub(crate) fn committed(&self, oid: Oid, tid: Tid, staged: &Path) {
        if self.shared {
            BlobDir::discard(staged);
            return;
        }
        if let Err(e) = self.dir.commit(staged, oid, tid) {
            tracing::warn!("keeping a stored blob in the cache: {e}");
            BlobDir::discard(staged);
        }
        self.added(file_len(&self.dir.path(oid, tid)));
    }

    /// The file of `oid`'s revision `serial`: the shared directory's, or the cache's,
    /// asking the server with `send_blob` (which returns once the reply came, after
    /// the callbacks wrote the file) when the cache does not have it.
    pub(crate) fn load(
        &self,
        oid: Oid,
        serial: Tid,
        send_blob: impl FnOnce() -> Result<(), StorageError>,
    ) -> Result<PathBuf, StorageError> {
        let path = self.dir.path(oid, serial);
        if path.is_file() {
            return Ok(path);
        }
        if self.shared {
            return Err(StorageError::PosKey {
                oid,
                detail: Some(format!("no blob file at {}", path.display())),
            });
        }
        let _one = self.download.lock();
        if !path.is_file() {
            send_blob()?;
        }
        if !path.is_file() {
            return Err(StorageError::PosKey {
                oid,
                detail: Some("the server sent no blob file".into()),
            });
        }
        self.added(file_len(&path));
        Ok(path)
    }

    /// A `receiveBlob…` callback, on the reader thread.
    pub(crate) fn receive(&self, callback: Callback) {
        let r = match callback {
            Callback::ReceiveBlobStart { oid, serial } => {
                let dl = self.download_path(oid, serial);
                fs::create_dir_all(self.dir.oid_dir(oid))
                    .and_then(|()| fs::File::create(&dl))
                    .map(|f| {
                        self.receiving.lock().insert((oid, serial), f);
                    })
            }
            Callback::ReceiveBlobChunk { oid, serial, chunk } => {
                match self.receiving.lock().get_mut(&(oid, serial)) {
                    Some(f) => f.write_all(&chunk),
                    None => Ok(()),
                }
            }
            Callback::ReceiveBlobStop { oid, serial } => {
                match self.receiving.lock().remove(&(oid, serial)) {
                    Some(f) => f.sync_all().and_then(|()| {
                        let dl = self.download_path(oid, serial);
                        set_read_only(&dl)?;
                        fs::rename(&dl, self.dir.path(oid, serial))
                    }),
                    None => Ok(()),
                }
            }
            _ => Ok(()),
        };
        if let Err(e) = r {
            tracing::warn!("receiving a blob from the server: {e}");
        }
    }

    fn download_path(&self, oid: Oid, serial: Tid) -> PathBuf {
        let mut p = self.dir.path(oid, serial).into_os_string();
        p.push(".dl");
        PathBuf::from(p)
    }

    /// Counts bytes kept in the cache (not in a shared directory: the server owns it).
    fn added(&self, bytes: u64) {
        if !self.shared {
            self.bound.added(&self.dir, bytes);
        }
    }
}

fn file_len(path: &Path) -> u64 {
    fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

fn set_read_only(file: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(file, fs::Permissions::from_mode(0o400))
}

/// `storeBlobChunk` calls read from a file as they are sent.  A read error ends the
/// chunks early and sets `failed`: the caller then aborts the transaction rather than
/// let the server commit a short file.
struct Chunks {
    file: Option<fs::File>,
    failed: Arc<AtomicBool>,
}

impl Iterator for Chunks {
    type Item = Call;

    fn next(&mut self) -> Option<Call> {
        let file = self.file.as_mut()?;
        let mut chunk = vec![0; limits::BLOB_CHUNK_BYTES];
        let mut n = 0;
        while n < chunk.len() {
            match file.read(&mut chunk[n..]) {
                Ok(0) => break,
                Ok(k) => n += k,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    tracing::error!("reading a blob to upload: {e}");
                    self.failed.store(true, Ordering::Release);
                    self.file = None;
                    return None;
                }
            }
        }
        if n == 0 {
            self.file = None;
            return None;
        }
        chunk.truncate(n);
        Some(Call::StoreBlobChunk { chunk })
    }
}
