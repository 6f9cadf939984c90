//! A blob directory laid out as ZODB's (`ZODB.blob.FilesystemHelper`), so that a
//! `Data.fs` and its blob directory written by Python open here and the other way round.
//!
//! Layout (the `.layout` marker file at the root names it):
//!
//! * `bushy` (the default): one directory level per byte of the oid, big-endian, each
//!   named `0x` and two hex digits: oid 1 is `0x00/0x00/0x00/0x00/0x00/0x00/0x00/0x01`;
//! * `lawn` (older, deprecated by ZODB): one directory per oid, named by the oid in hex
//!   without leading zeros (an even number of digits): `0x01`, `0x0102`, `0x00` for zero.
//!
//! A committed revision is the file `<oid dir>/<tid>.blob`, the tid written the lawn way
//! (`0x03ec55d1a8b5c3bb.blob`).  `tmp/` holds files on their way in: what a ZEO client
//! uploads, and what a transaction stores before its tid is known.  With no marker, an
//! empty or new directory gets `bushy` and one already holding oid directories `lawn`,
//! as ZODB chooses.
//!
//! This module does no two-phase commit: the storage stages files with
//! [`BlobDir::stage`] when a blob is stored, and [`BlobDir::commit`]s them under their
//! tid when it writes the transaction (durably: the file and its directory are synced
//! before the transaction is).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use crate::ids::{Oid, Tid};

/// The name of the layout marker file.
pub const LAYOUT_MARKER: &str = ".layout";
/// What every committed blob file's name ends with.
pub const BLOB_SUFFIX: &str = ".blob";
/// Staged files (stored, not committed) start with this in `tmp/`; any left by a crash
/// are removed at open.
const STAGED_PREFIX: &str = "bbru-staged-";

/// How oids map to directories.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Layout {
    Bushy,
    Lawn,
}

impl Layout {
    pub fn name(self) -> &'static str {
        match self {
            Layout::Bushy => "bushy",
            Layout::Lawn => "lawn",
        }
    }

    pub fn parse(name: &str) -> Option<Layout> {
        match name.trim() {
            "bushy" => Some(Layout::Bushy),
            "lawn" => Some(Layout::Lawn),
            _ => None,
        }
    }

    /// The directory of `oid`, relative to the root.
    pub fn oid_path(self, oid: Oid) -> PathBuf {
        match self {
            Layout::Bushy => oid
                .0
                .to_be_bytes()
                .iter()
                .map(|b| format!("0x{b:02x}"))
                .collect(),
            Layout::Lawn => PathBuf::from(hex_repr(oid.0)),
        }
    }
}

/// ZODB's `oid_repr`/`tid_repr`: `0x`, then the hex digits without leading zeros, an
/// even number of them (`0x00` for zero).
pub fn hex_repr(n: u64) -> String {
    let digits = format!("{n:x}");
    if digits.len() % 2 == 1 {
        format!("0x0{digits}")
    } else {
        format!("0x{digits}")
    }
}

/// The file name of `tid`'s revision.
pub fn blob_file_name(tid: Tid) -> String {
    format!("{}{BLOB_SUFFIX}", hex_repr(tid.0))
}

/// An open blob directory.
#[derive(Debug)]
pub struct BlobDir {
    root: PathBuf,
    layout: Layout,
}

impl BlobDir {
    /// Opens (creating it, its `tmp/` and its marker if need be) the blob directory at
    /// `root`; `layout` `None` reads the marker or chooses as ZODB does.  A marker that
    /// names another layout than the one asked for is an error, as in ZODB.
    pub fn open(root: &Path, layout: Option<Layout>) -> io::Result<BlobDir> {
        if !root.exists() {
            fs::create_dir_all(root)?;
            set_private(root)?;
        }
        let marker = root.join(LAYOUT_MARKER);
        let found = match fs::read_to_string(&marker) {
            Ok(text) => Some(Layout::parse(&text).ok_or_else(|| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!(
                        "{}: unknown blob layout {:?}",
                        marker.display(),
                        text.trim()
                    ),
                )
            })?),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        };
        let layout = match (layout, found) {
            (Some(asked), Some(found)) if asked != found => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "{}: layout {} asked for, but the marker says {}",
                        root.display(),
                        asked.name(),
                        found.name()
                    ),
                ));
            }
            (_, Some(found)) => found,
            (Some(asked), None) => asked,
            (None, None) => choose_layout(root)?,
        };
        if found.is_none() {
            fs::write(&marker, layout.name())?;
        }
        let dir = BlobDir {
            root: root.to_path_buf(),
            layout,
        };
        fs::create_dir_all(dir.tmp_dir())?;
        dir.remove_staged_leftovers();
        Ok(dir)
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn layout(&self) -> Layout {
        self.layout
    }

    /// Where files on their way in wait (`temporaryDirectory()` in ZODB).
    pub fn tmp_dir(&self) -> PathBuf {
        self.root.join("tmp")
    }

    /// The directory of `oid`'s revisions.
    pub fn oid_dir(&self, oid: Oid) -> PathBuf {
        self.root.join(self.layout.oid_path(oid))
    }

    /// The file of `oid`'s revision `tid` (which may not exist).
    pub fn path(&self, oid: Oid, tid: Tid) -> PathBuf {
        self.oid_dir(oid).join(blob_file_name(tid))
    }

    /// Takes `source` (moved, or copied and removed when it is on another file
    /// system) into `tmp/` until its transaction commits or aborts; returns where it is.
    pub fn stage(&self, source: &Path) -> io::Result<PathBuf> {
        let staged = tempfile::Builder::new()
            .prefix(STAGED_PREFIX)
            .tempfile_in(self.tmp_dir())?
            .into_temp_path()
            .keep()
            .map_err(|e| e.error)?;
        if let Err(e) = fs::rename(source, &staged) {
            if e.kind() != io::ErrorKind::CrossesDevices {
                let _ = fs::remove_file(&staged);
                return Err(e);
            }
            fs::copy(source, &staged)?;
            fs::remove_file(source)?;
        }
        Ok(staged)
    }

    /// Makes the staged file `staged` revision `tid` of `oid`, durably.
    pub fn commit(&self, staged: &Path, oid: Oid, tid: Tid) -> io::Result<PathBuf> {
        let dir = self.oid_dir(oid);
        create_private_dirs(&dir)?;
        let target = dir.join(blob_file_name(tid));
        fs::File::open(staged)?.sync_all()?;
        // Committed revisions never change: read-only, as ZODB leaves them.
        set_read_only(staged, &dir)?;
        fs::rename(staged, &target)?;
        fs::File::open(&dir)?.sync_all()?;
        Ok(target)
    }

    /// Makes revision `from` of `oid` also revision `tid` (an undo that brings the
    /// older revision back): a hard link, or a copy where links are refused.
    pub fn link(&self, oid: Oid, from: Tid, tid: Tid) -> io::Result<PathBuf> {
        let source = self.path(oid, from);
        let target = self.path(oid, tid);
        if fs::hard_link(&source, &target).is_err() {
            fs::copy(&source, &target)?;
            fs::File::open(&target)?.sync_all()?;
        }
        fs::File::open(self.oid_dir(oid))?.sync_all()?;
        Ok(target)
    }

    /// Removes a staged or committed file, quietly if it is gone already.
    pub fn discard(path: &Path) {
        if let Err(e) = fs::remove_file(path)
            && e.kind() != io::ErrorKind::NotFound
        {
            tracing::warn!(path = %path.display(), "cannot remove a blob file: {e}");
        }
    }

    /// Every committed revision file: `(oid, tid, path)`.  Files and directories that
    /// are not the layout's (`tmp/`, the marker, strays) are skipped.
    pub fn revisions(&self) -> io::Result<Vec<(Oid, Tid, PathBuf)>> {
        let mut found = Vec::new();
        let depth = match self.layout {
            Layout::Bushy => 8,
            Layout::Lawn => 1,
        };
        let mut stack = vec![(self.root.clone(), Vec::<String>::new())];
        while let Some((dir, names)) = stack.pop() {
            for e in fs::read_dir(&dir)?.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                let path = e.path();
                if names.len() < depth {
                    if e.file_type()?.is_dir() && name.starts_with("0x") {
                        let mut names = names.clone();
                        names.push(name);
                        stack.push((path, names));
                    }
                    continue;
                }
                let (Some(oid), Some(tid)) = (self.parse_oid(&names), parse_blob_name(&name))
                else {
                    continue;
                };
                found.push((oid, tid, path));
            }
        }
        Ok(found)
    }

    fn parse_oid(&self, names: &[String]) -> Option<Oid> {
        match self.layout {
            Layout::Bushy => {
                let mut n = 0u64;
                for part in names {
                    let byte = part.strip_prefix("0x").filter(|h| h.len() == 2)?;
                    n = (n << 8) | u64::from(u8::from_str_radix(byte, 16).ok()?);
                }
                (names.len() == 8).then_some(Oid(n))
            }
            Layout::Lawn => match names {
                [one] => parse_hex(one).map(Oid),
                _ => None,
            },
        }
    }

    /// Removes the committed file `path` (a revision a pack dropped); with `keep_old`,
    /// moves it to the same place under `<root>.old` instead, as ZODB does when it
    /// keeps the old `Data.fs`.  Directories left empty go.
    pub fn retire(&self, path: &Path, keep_old: bool) -> io::Result<()> {
        if keep_old && let Ok(rel) = path.strip_prefix(&self.root) {
            let target = self.old_root().join(rel);
            if let Some(parent) = target.parent() {
                fs::create_dir_all(parent)?;
            }
            fs::rename(path, &target)?;
        } else {
            fs::remove_file(path)?;
        }
        let mut dir = path.parent();
        while let Some(d) = dir {
            if d == self.root || fs::remove_dir(d).is_err() {
                break;
            }
            dir = d.parent();
        }
        Ok(())
    }

    /// Where a pack keeps the files it dropped (`<root>.old`, as ZODB names it).
    pub fn old_root(&self) -> PathBuf {
        let mut name = self.root.as_os_str().to_owned();
        name.push(".old");
        PathBuf::from(name)
    }

    fn remove_staged_leftovers(&self) {
        let Ok(entries) = fs::read_dir(self.tmp_dir()) else {
            return;
        };
        for e in entries.flatten() {
            if e.file_name().to_string_lossy().starts_with(STAGED_PREFIX) {
                BlobDir::discard(&e.path());
            }
        }
    }
}

/// A tid from a file name `0x….blob`.
fn parse_blob_name(name: &str) -> Option<Tid> {
    name.strip_suffix(BLOB_SUFFIX).and_then(parse_hex).map(Tid)
}

/// A number from ZODB's `0x…` form.
fn parse_hex(s: &str) -> Option<u64> {
    let digits = s.strip_prefix("0x")?;
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    u64::from_str_radix(digits, 16).ok()
}

/// ZODB's choice for a directory without a marker: `bushy` if it holds nothing but
/// `tmp/` (or is new), `lawn` if it holds anything else (blobs of an old layout).
fn choose_layout(root: &Path) -> io::Result<Layout> {
    let used = fs::read_dir(root)?
        .flatten()
        .any(|e| e.file_name() != "tmp" && !e.file_name().to_string_lossy().starts_with('.'));
    Ok(if used { Layout::Lawn } else { Layout::Bushy })
}

/// ZODB's rule for a committed file: no write permission for anyone, and read
/// permission as its directory has it (what `ZODB.blob.set_not_writable` does, and
/// what its `test_blob_file_permissions` checks).
fn set_read_only(file: &Path, dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    const WRITE: u32 = 0o222;
    const READ: u32 = 0o444;
    let mode = fs::metadata(file)?.permissions().mode() & 0o7777;
    let dir_mode = fs::metadata(dir)?.permissions().mode();
    fs::set_permissions(
        file,
        fs::Permissions::from_mode((mode & !WRITE) | (dir_mode & READ)),
    )
}

/// `dir` and its missing parents, owner-only as ZODB makes them (`0o700`).
fn create_private_dirs(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

/// The blob directory holds every file of value: its owner's alone, as the storage's
/// files are (`filestorage::FILE_MODE`).
fn set_private(dir: &Path) -> io::Result<()> {
    use std::os::unix::fs::PermissionsExt;
    fs::set_permissions(dir, fs::Permissions::from_mode(0o700))
}

/// A bound on the bytes of a blob cache directory (a ZEO client's, a PostgreSQL
/// storage's): its owner reports the bytes it adds ([`CacheBound::added`]); once a tenth
/// of the bound has been added since the last look, the files written longest ago are
/// removed until the directory holds at most nine tenths of the bound.  Removing a file
/// being read is harmless (an open file stays readable); the next load fetches it
/// again.
#[derive(Debug)]
pub struct CacheBound {
    bytes_max: u64,
    added: std::sync::atomic::AtomicU64,
}

impl CacheBound {
    pub fn new(bytes_max: u64) -> CacheBound {
        CacheBound {
            bytes_max,
            added: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// Counts `bytes` written into `dir`, and trims it when it is time.
    pub fn added(&self, dir: &BlobDir, bytes: u64) {
        use std::sync::atomic::Ordering;
        let added = self.added.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if added < self.bytes_max / 10 {
            return;
        }
        self.added.store(0, Ordering::Relaxed);
        if let Err(e) = self.trim(dir) {
            tracing::warn!(dir = %dir.root().display(), "trimming the blob cache: {e}");
        }
    }

    fn trim(&self, dir: &BlobDir) -> io::Result<()> {
        let mut files: Vec<(std::time::SystemTime, u64, PathBuf)> = dir
            .revisions()?
            .into_iter()
            .filter_map(|(_, _, p)| {
                let m = fs::metadata(&p).ok()?;
                Some((m.modified().ok()?, m.len(), p))
            })
            .collect();
        let mut total: u64 = files.iter().map(|f| f.1).sum();
        if total <= self.bytes_max {
            return Ok(());
        }
        files.sort();
        let target = self.bytes_max / 10 * 9;
        for (_, len, path) in files {
            if total <= target {
                break;
            }
            if dir.retire(&path, false).is_ok() {
                total -= len;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_zodbs() {
        assert_eq!(hex_repr(0), "0x00");
        assert_eq!(hex_repr(1), "0x01");
        assert_eq!(hex_repr(0x102), "0x0102");
        assert_eq!(hex_repr(0x03ec55d1a8b5c3bb), "0x03ec55d1a8b5c3bb");
        assert_eq!(
            Layout::Bushy.oid_path(Oid(0x0102)),
            PathBuf::from("0x00/0x00/0x00/0x00/0x00/0x00/0x01/0x02")
        );
        assert_eq!(Layout::Lawn.oid_path(Oid(0x0102)), PathBuf::from("0x0102"));
        assert_eq!(blob_file_name(Tid(0x03ec)), "0x03ec.blob");
    }

    #[test]
    fn a_new_directory_is_bushy_and_keeps_its_marker() {
        let d = tempfile::tempdir().unwrap();
        let root = d.path().join("blobs");
        let b = BlobDir::open(&root, None).unwrap();
        assert_eq!(b.layout(), Layout::Bushy);
        assert_eq!(fs::read_to_string(root.join(".layout")).unwrap(), "bushy");
        assert!(root.join("tmp").is_dir());
        let err = BlobDir::open(&root, Some(Layout::Lawn)).unwrap_err();
        assert!(err.to_string().contains("marker says bushy"), "{err}");
    }

    #[test]
    fn a_used_directory_without_marker_is_lawn() {
        let d = tempfile::tempdir().unwrap();
        fs::create_dir_all(d.path().join("0x01")).unwrap();
        assert_eq!(
            BlobDir::open(d.path(), None).unwrap().layout(),
            Layout::Lawn
        );
    }

    #[test]
    fn staged_files_commit_under_their_tid_and_leftovers_go_at_open() {
        let d = tempfile::tempdir().unwrap();
        let b = BlobDir::open(d.path(), None).unwrap();
        let src = d.path().join("upload");
        fs::write(&src, b"hello").unwrap();
        let staged = b.stage(&src).unwrap();
        assert!(!src.exists(), "the source is taken");
        let at = b.commit(&staged, Oid(1), Tid(0x10)).unwrap();
        assert_eq!(at, b.path(Oid(1), Tid(0x10)));
        assert_eq!(fs::read(&at).unwrap(), b"hello");
        b.link(Oid(1), Tid(0x10), Tid(0x20)).unwrap();
        assert_eq!(fs::read(b.path(Oid(1), Tid(0x20))).unwrap(), b"hello");
        fs::write(&src, b"left").unwrap();
        let left = b.stage(&src).unwrap();
        drop(b);
        BlobDir::open(d.path(), None).unwrap();
        assert!(!left.exists(), "a crash's staged file is removed at open");
    }
}
