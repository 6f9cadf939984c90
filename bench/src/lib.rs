//! What the benchmark programs share.

use std::fs;
use std::path::{Path, PathBuf};

use anyhow::{Context, Result};

/// `path` with `suffix` appended to its file name (`Data.fs` → `Data.fs.index`).
pub fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(suffix);
    PathBuf::from(s)
}

/// Removes a FileStorage and every file it keeps beside it; missing ones are fine.
pub fn remove_storage_files(path: &Path) -> Result<()> {
    for suffix in ["", ".index", ".lock", ".tmp", ".old", ".index.index_tmp"] {
        let p = sibling(path, suffix);
        match fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("removing {}", p.display())),
        }
    }
    Ok(())
}
