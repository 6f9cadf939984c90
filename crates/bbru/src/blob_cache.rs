//! The blob cache of an instance on a ZEO server: where the files and images it stored
//! or read are kept on local disk (the server's blob directory holds them all).
//!
//! The Rust `ClientStorage`'s cache (zeo's `client/blobs.rs`) is one process's: its
//! download lock and the files it is writing are known only inside the process, it
//! clears files staged in its `tmp/` when it opens, and its size check removes files
//! without asking anyone.  Two instances on one cache directory would truncate each
//! other's downloads, remove each other's uploads on the way in, and evict files the
//! other is streaming.  So each instance takes a directory of its own under the one
//! configured (`[storage] blob_cache_dir`, by default `blob-cache` beside the pid file):
//! the first `N/` whose lock file `N.lock` it can lock (`flock`, held for the
//! instance's life, dropped by the kernel however the process ends).  Instances that
//! share a var directory, as during a deploy, then use `0/` and `1/`; a restarted
//! instance finds its warm cache again in the first free one.

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::limits;

/// The blob cache directory this instance holds, locked for as long as this lives.
#[derive(Debug)]
pub struct BlobCache {
    dir: PathBuf,
    _lock: fs::File,
}

impl BlobCache {
    /// Takes the first free cache directory under `root` (created if missing).
    pub fn claim(root: &Path) -> io::Result<BlobCache> {
        fs::create_dir_all(root)?;
        for n in 0..limits::BLOB_CACHES_PER_DIRECTORY_MAX {
            let lock = fs::OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(root.join(format!("{n}.lock")))?;
            match lock.try_lock() {
                Ok(()) => {
                    return Ok(BlobCache {
                        dir: root.join(n.to_string()),
                        _lock: lock,
                    });
                }
                Err(fs::TryLockError::WouldBlock) => {}
                Err(fs::TryLockError::Error(e)) => return Err(e),
            }
        }
        Err(io::Error::other(format!(
            "{} running instances hold every blob cache under {} already; give this one a blob_cache_dir of its own",
            limits::BLOB_CACHES_PER_DIRECTORY_MAX,
            root.display()
        )))
    }

    /// The directory, this instance's alone while it runs.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_holder_gets_a_directory_of_its_own_and_a_freed_one_is_taken_again() {
        let root = tempfile::tempdir().unwrap();
        let a = BlobCache::claim(root.path()).unwrap();
        let b = BlobCache::claim(root.path()).unwrap();
        assert_eq!(a.dir(), root.path().join("0"));
        assert_eq!(b.dir(), root.path().join("1"));
        drop(a);
        let c = BlobCache::claim(root.path()).unwrap();
        assert_eq!(
            c.dir(),
            root.path().join("0"),
            "the warm cache is found again"
        );
        let held: Vec<BlobCache> = (2..limits::BLOB_CACHES_PER_DIRECTORY_MAX)
            .map(|_| BlobCache::claim(root.path()).unwrap())
            .collect();
        let err = BlobCache::claim(root.path()).unwrap_err();
        assert!(err.to_string().contains("blob_cache_dir"), "{err}");
        drop((b, c, held));
    }
}
