//! Opening a `Data.fs`: the lock shared with Python's `zc.lockfile`, the saved index
//! checked as Python checks it (else a scan), and the recovery of a damaged tail (cut
//! off and saved to `Data.fs.trN`).

use super::*;

impl FileStorage {
    /// Opens (creating if missing) `path` for reading and writing.
    pub fn open(path: impl AsRef<Path>) -> Result<FileStorage> {
        FileStorage::open_with(path, Options::default())
    }

    pub fn open_read_only(path: impl AsRef<Path>) -> Result<FileStorage> {
        FileStorage::open_with(
            path,
            Options {
                read_only: true,
                ..Options::default()
            },
        )
    }

    pub fn open_with(path: impl AsRef<Path>, options: Options) -> Result<FileStorage> {
        let path = path.as_ref().to_path_buf();
        let io_err = |what: &str, e| StorageError::io(format!("{}: {what}", path.display()), e);
        if options.must_exist && !options.read_only && !path.exists() {
            return Err(io_err("open", std::io::ErrorKind::NotFound.into()));
        }
        let lock_file = if options.read_only {
            None
        } else {
            Some(take_lock(&path)?)
        };
        let file = if options.read_only {
            File::open(&path).map_err(|e| io_err("open", e))?
        } else {
            private_options()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .open(&path)
                .map_err(|e| io_err("open", e))?
        };
        let mut size = file.metadata().map_err(|e| io_err("stat", e))?.len();
        if size == 0 && !options.read_only {
            file.write_all_at(MAGIC, 0)
                .map_err(|e| io_err("write the magic", e))?;
            file.sync_all().map_err(|e| io_err("fsync", e))?;
            size = MAGIC.len() as u64;
        }
        let mut magic = [0u8; 4];
        if size < 4 {
            return Err(StorageError::Format {
                path,
                reason: "too short to be a FileStorage".into(),
            });
        }
        file.read_exact_at(&mut magic, 0)
            .map_err(|e| io_err("read the magic", e))?;
        if &magic == MAGIC_PY2 {
            if !options.read_only {
                return Err(StorageError::Format {
                    path,
                    reason: "a Python 2 FileStorage (FS21): open it read-only, or convert it with zodbupdate --convert-py3".into(),
                });
            }
        } else if &magic != MAGIC {
            return Err(StorageError::Format {
                path,
                reason: format!("not a FileStorage (magic {magic:?})"),
            });
        }

        let mut report = OpenReport::default();
        let (mut index, start, start_tid) = match load_saved_index(&file, &path, size) {
            Ok(Some((end, index, tid))) => {
                report.used_saved_index = true;
                (index, end, tid)
            }
            Ok(None) => (OidIndex::new(), 4, Tid::ZERO),
            Err(reason) => {
                report
                    .warnings
                    .push(format!("ignoring the saved index: {reason}"));
                (OidIndex::new(), 4, Tid::ZERO)
            }
        };
        let scanned = scan::scan(&file, &path, size, start, start_tid, &mut index)?;
        report.scanned_transactions = scanned.transactions;
        report.warnings.extend(scanned.warnings);
        for w in &report.warnings {
            tracing::warn!(path = %path.display(), "{w}");
        }
        let end = scanned.end;
        if let Some(cut) = &scanned.cut {
            report.cut = Some((cut.pos, cut.reason.clone()));
            if options.read_only {
                tracing::warn!(path = %path.display(), "{}; read-only, so reading up to {}", cut.reason, cut.pos);
            } else {
                tracing::warn!(path = %path.display(), "{}; cutting the file at {}", cut.reason, cut.pos);
                if cut.save_tail {
                    report.saved_tail = Some(save_tail(&file, &path, cut.pos, size)?);
                }
                file.set_len(cut.pos).map_err(|e| io_err("truncate", e))?;
                file.sync_all().map_err(|e| io_err("fsync", e))?;
                index_file::remove(&path)?;
            }
        }
        if !options.read_only && (!report.used_saved_index || report.cut.is_some()) && end > 4 {
            index_file::save(&path, end, &index)?;
        }
        index.shrink_to_fit();
        let max_oid = index.max_oid().unwrap_or(0);
        let last_tid = scanned.last_tid;
        let blobs = match &options.blob_dir {
            Some(dir) => Some(
                crate::blob::BlobDir::open(dir, options.blob_layout).map_err(|e| {
                    StorageError::io(format!("blob directory {}", dir.display()), e)
                })?,
            ),
            None => None,
        };
        Ok(FileStorage {
            blobs,
            read_only: options.read_only,
            options,
            snap: RwLock::new(Snapshot {
                file: Arc::new(file),
                index,
                end,
                last_tid,
                recent: RecentTxns::default(),
                records: Arc::default(),
            }),
            object_locks: ObjectLocks::new(),
            gate: PackGate::default(),
            commits: CommitQueue::default(),
            pending: Mutex::new(HashMap::new()),
            next_handle: AtomicU64::new(1),
            max_oid: Mutex::new(max_oid),
            clock: Mutex::new(TidClock::new(last_tid)),
            poisoned: Mutex::new(None),
            #[cfg(test)]
            fail_syncs: AtomicBool::new(false),
            lock_file: Mutex::new(lock_file),
            closed: AtomicBool::new(false),
            packing: AtomicBool::new(false),
            open_report: report,
            listeners: Listeners::new(),
            path,
        })
    }
}

/// Takes `Data.fs.lock` with `flock`, as zc.lockfile does, so Python and
/// Rust processes exclude each other.
fn take_lock(path: &Path) -> Result<File> {
    let lock_path = index_file::sibling(path, ".lock");
    let mut f = private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&lock_path)
        .map_err(|e| StorageError::io(format!("{}: open", lock_path.display()), e))?;
    match f.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            return Err(StorageError::Locked {
                path: path.to_path_buf(),
            });
        }
        Err(fs::TryLockError::Error(e)) => {
            return Err(StorageError::io(
                format!("{}: lock", lock_path.display()),
                e,
            ));
        }
    }
    // zc.lockfile writes " <pid>\n"; a diagnostic only.
    let _ = f.set_len(0);
    let _ = f.write_all(format!(" {}\n", std::process::id()).as_bytes());
    let _ = f.flush();
    Ok(f)
}

/// Copies `[pos, size)` to the first free `Data.fs.trN`.
fn save_tail(file: &File, path: &Path, pos: u64, size: u64) -> Result<PathBuf> {
    let mut n = 0;
    let target = loop {
        let candidate = index_file::sibling(path, &format!(".tr{n}"));
        if !candidate.exists() {
            break candidate;
        }
        n += 1;
    };
    let mut buf = vec![0u8; (size - pos) as usize];
    file.read_exact_at(&mut buf, pos)
        .map_err(|e| StorageError::io(format!("{}: read the damaged tail", path.display()), e))?;
    let mut out = private_options()
        .write(true)
        .create_new(true)
        .open(&target)
        .map_err(|e| StorageError::io(format!("{}: create", target.display()), e))?;
    out.write_all(&buf)
        .and_then(|()| out.sync_all())
        .map_err(|e| StorageError::io(format!("{}: write", target.display()), e))?;
    Ok(target)
}

/// Loads `Data.fs.index` and checks it against the file as Python's
/// `_check_sanity` does. `Ok(None)`: no saved index. `Err`: unusable.
fn load_saved_index(
    file: &File,
    path: &Path,
    size: u64,
) -> std::result::Result<Option<(u64, OidIndex, Tid)>, String> {
    let (end, index) = match index_file::load(&index_file::index_path(path)) {
        Ok(Some(decoded)) => decoded.map_err(|u| u.0)?,
        Ok(None) => return Ok(None),
        Err(e) => return Err(e.to_string()),
    };
    if end < 4 || end > size {
        return Err(format!("it covers up to {end}, the file has {size} bytes"));
    }
    if end == 4 {
        return Ok(Some((end, index, Tid::ZERO)));
    }
    let reader = Reader { file, path, end };
    let err = |e: StorageError| e.to_string();
    // The transaction just before `end` must be whole, and the last few
    // records of the last non-empty transaction must be where the index
    // says.
    let mut tend = end;
    let mut last_tid = None;
    while tend > 4 {
        let tlen = reader.u64_at(tend - 8, "length").map_err(err)?;
        let tpos = tend
            .checked_sub(8 + tlen)
            .filter(|p| *p >= 4)
            .ok_or("bad trailing length")?;
        let h = reader.txn_header(tpos).map_err(err)?;
        if h.tlen != tlen || ![STATUS_COMMITTED, STATUS_PACKED, STATUS_UNDONE].contains(&h.status) {
            return Err(format!("no whole transaction ends at {tend}"));
        }
        last_tid.get_or_insert(h.tid);
        if h.status == STATUS_UNDONE || h.tlen == h.header_len() {
            tend = tpos;
            continue;
        }
        let records = FileStorage::transaction_records(&reader, tpos, &h).map_err(err)?;
        for r in records.iter().rev().take(5) {
            // A later record of the same oid in this transaction wins.
            let newest = records
                .iter()
                .rfind(|x| x.header.oid == r.header.oid)
                .map(|x| x.pos);
            if index.get(r.header.oid.0) != newest {
                return Err(format!(
                    "the entry of oid {} does not match the file",
                    r.header.oid
                ));
            }
        }
        break;
    }
    Ok(Some((end, index, last_tid.unwrap_or(Tid::ZERO))))
}
