//! Pack: rewrite the file without the revisions nobody can reach any more
//! (`filestorage-format.md` §13).
//!
//! 1. Without any lock, scan the transactions up to the pack time and note
//!    each object's revision current at that time.
//! 2. With `gc`, keep only objects reachable from the root at that time
//!    (strong references, found by the pickle scanner); revisions that later
//!    backpointers need are kept too.
//! 3. Copy the kept revisions, with status `'p'` and inlined data, into
//!    `Data.fs.pack`; then copy every later transaction with its pointers
//!    re-aimed, repeating while commits go on.
//! 4. Under the commit lock, copy the last transactions, switch
//!    `Data.fs` → `Data.fs.old` and `Data.fs.pack` → `Data.fs`, and install
//!    the new index. Readers holding the old file keep reading it.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::Arc;

use rustc_hash::FxHashMap;

use super::format::{MAGIC, Payload, STATUS_PACKED, TxnBuilder};
use super::io::{Reader, RecordPayload};
use super::oid_index::OidIndex;
use super::recent::RecentTxns;
use super::{FileStorage, Snapshot, index_file};
use crate::error::{Result, StorageError};
use crate::gc;
use crate::ids::{Oid, Tid};

/// The output file being written, with the maps needed to re-aim pointers.
struct Output {
    file: File,
    pos: u64,
    /// Old record position → new record position.
    moved: FxHashMap<u64, u64>,
    /// oid → position of its newest record in the output.
    index: OidIndex,
    /// How far the source has been copied.
    source_pos: u64,
}

impl Output {
    fn write(&mut self, bytes: &[u8], path: &Path) -> Result<()> {
        self.file
            .write_all_at(bytes, self.pos)
            .map_err(|e| StorageError::io(format!("{}: writing", path.display()), e))?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

pub(super) fn pack(fs: &FileStorage, pack_time: Tid, gc: bool) -> Result<()> {
    let path = fs.path.clone();
    let (file, end) = {
        let s = fs.snap.read();
        (Arc::clone(&s.file), s.end)
    };
    let reader = Reader {
        file: &file,
        path: &path,
        end,
    };

    // 1. The revision of each oid current at the pack time.
    let mut cur: FxHashMap<u64, u64> = FxHashMap::default();
    let mut pos = 4;
    let mut all_packed = true;
    while pos < end {
        let h = reader.txn_header(pos)?;
        if h.tid > pack_time {
            break;
        }
        all_packed &= h.status == STATUS_PACKED;
        for r in FileStorage::transaction_records(&reader, pos, &h)? {
            match r.payload {
                RecordPayload::Back(0) => {
                    cur.remove(&r.header.oid.0);
                }
                _ => {
                    cur.insert(r.header.oid.0, r.pos);
                }
            }
        }
        pos = h.next_pos(pos);
    }
    let packpos = pos;
    if packpos == 4 {
        tracing::info!(path = %path.display(), "pack: nothing before the pack time");
        return Ok(());
    }
    if all_packed && (packpos == end || reader.txn_header(packpos)?.status == STATUS_PACKED) {
        tracing::info!(path = %path.display(), "pack: already packed to a later time or no changes");
        return Ok(());
    }

    // 2. What to keep before `packpos`: record positions.
    let mut keep: HashSet<u64> = HashSet::new();
    let refs_at = |rpos: u64| -> Result<Vec<Oid>> {
        let r = reader.record(rpos, None)?;
        match reader.resolve(r)? {
            Some((data, dpos)) => zodb_pickle::strong_references(&data)
                .map(|v| v.into_iter().map(Oid).collect())
                .map_err(|e| {
                    reader.corrupted(dpos, format!("cannot scan the record for references: {e}"))
                }),
            None => Ok(Vec::new()),
        }
    };
    let reachable: HashSet<Oid> = if gc {
        gc::reachable_from_root(|oid| match cur.get(&oid.0) {
            Some(&rpos) => refs_at(rpos).map(Some),
            None => Ok(None),
        })?
    } else {
        cur.keys().map(|o| Oid(*o)).collect()
    };
    for oid in &reachable {
        if let Some(&rpos) = cur.get(&oid.0) {
            keep.insert(rpos);
        }
    }
    // Revisions before the pack time that later backpointers still use.
    // As in Python, the references of such a revision are followed only
    // when its object is reachable anyway, and only after the whole scan,
    // so that objects the later backpointers revive count as reachable.
    let mut reachable = reachable;
    let mut extra_roots: Vec<(Oid, u64)> = Vec::new();
    let mut pos = packpos;
    while pos < end {
        let h = reader.txn_header(pos)?;
        for r in FileStorage::transaction_records(&reader, pos, &h)? {
            if let RecordPayload::Back(back) = r.payload
                && back > 0
                && back < packpos
                && keep.insert(back)
            {
                let oid = r.header.oid;
                if reachable.contains(&oid) {
                    extra_roots.push((oid, back));
                } else {
                    reachable.insert(oid);
                }
            }
        }
        pos = h.next_pos(pos);
    }
    for (oid, back) in extra_roots {
        let refs = refs_at(back)?;
        let mut newly = HashSet::new();
        gc::mark_reachable(oid, refs, &mut reachable, |o| match cur.get(&o.0) {
            Some(&rpos) => {
                newly.insert(rpos);
                refs_at(rpos).map(Some)
            }
            None => Ok(None),
        })?;
        keep.extend(newly);
    }

    // 3. Copy the prefix.
    let pack_path = index_file::sibling(&path, ".pack");
    let old_path = index_file::sibling(&path, ".old");
    let io_err = |what: &str, e| StorageError::io(format!("{}: {what}", pack_path.display()), e);
    let _ = fs::remove_file(&old_path);
    let out_file = super::private_options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&pack_path)
        .map_err(|e| io_err("create", e))?;
    // The packed file replaces Data.fs: it keeps the mode its owner gave it.
    if let Ok(meta) = fs::metadata(&path) {
        out_file
            .set_permissions(meta.permissions())
            .map_err(|e| io_err("chmod", e))?;
    }
    let mut out = Output {
        file: out_file,
        pos: 0,
        moved: FxHashMap::default(),
        index: OidIndex::new(),
        source_pos: 0,
    };
    let result = (|| -> Result<bool> {
        out.write(MAGIC, &pack_path)?;
        let mut pos = 4;
        while pos < packpos {
            let h = reader.txn_header(pos)?;
            let records = FileStorage::transaction_records(&reader, pos, &h)?;
            let kept: Vec<_> = records
                .into_iter()
                .filter(|r| keep.contains(&r.pos))
                .collect();
            if !kept.is_empty() {
                let (user, description, extension) = FileStorage::read_meta(&reader, pos, &h)?;
                let mut b = TxnBuilder::new(
                    out.pos,
                    h.tid,
                    STATUS_PACKED,
                    &user,
                    &description,
                    &extension,
                );
                for r in kept {
                    let oid = r.header.oid;
                    let old = r.pos;
                    let new = match reader.resolve(r.clone())? {
                        Some((data, _)) => b.push(oid, r.header.serial, 0, &Payload::Data(&data)),
                        None => b.push(oid, r.header.serial, 0, &Payload::Back(0)),
                    };
                    out.moved.insert(old, new);
                    out.index.insert(oid.0, new);
                }
                let bytes = b.finish();
                out.write(&bytes, &pack_path)?;
            }
            pos = h.next_pos(pos);
        }
        if out.pos == packpos {
            // Nothing was freed.
            return Ok(false);
        }
        // 4. Copy the rest while commits go on, then the last bit under the
        // commit lock.
        let mut copied_to = copy_tail(&reader, packpos, end, &mut out, &pack_path)?;
        loop {
            let now_end = fs.snap.read().end;
            if now_end == copied_to {
                break;
            }
            let r = Reader {
                file: &file,
                path: &path,
                end: now_end,
            };
            copied_to = copy_tail(&r, copied_to, now_end, &mut out, &pack_path)?;
        }
        Ok(true)
    })();
    let freed = match result {
        Ok(f) => f,
        Err(e) => {
            let _ = fs::remove_file(&pack_path);
            return Err(e);
        }
    };
    if !freed {
        let _ = fs::remove_file(&pack_path);
        tracing::info!(path = %path.display(), "pack: nothing to remove");
        return Ok(());
    }

    // No vote may be pending while the file is switched: their records
    // may point into the old file.
    fs.gate.close_for_switch();
    let switched = (|| -> Result<()> {
        // Everything committed since the copy loop above ended.
        let final_end = fs.snap.read().end;
        if out.source_pos < final_end {
            let r = Reader {
                file: &file,
                path: &path,
                end: final_end,
            };
            copy_tail(&r, out.source_pos, final_end, &mut out, &pack_path)?;
        }
        out.file.sync_all().map_err(|e| io_err("fsync", e))?;
        fs::rename(&path, &old_path)
            .map_err(|e| StorageError::io(format!("{}: rename to .old", path.display()), e))?;
        if let Err(e) = fs::rename(&pack_path, &path) {
            // Put the original back; nothing is lost.
            let _ = fs::rename(&old_path, &path);
            return Err(StorageError::io(
                format!("{}: rename into place", pack_path.display()),
                e,
            ));
        }
        if let Some(dir) = path.parent()
            && let Ok(d) = File::open(if dir.as_os_str().is_empty() {
                Path::new(".")
            } else {
                dir
            })
        {
            let _ = d.sync_all();
        }
        let new_file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| StorageError::io(format!("{}: reopen after pack", path.display()), e))?;
        let mut snap = fs.snap.write();
        let last_tid = snap.last_tid;
        *snap = Snapshot {
            file: Arc::new(new_file),
            index: std::mem::take(&mut out.index),
            end: out.pos,
            last_tid,
            recent: RecentTxns::default(),
            records: Arc::default(),
        };
        Ok(())
    })();
    fs.gate.open();
    if let Err(e) = switched {
        let _ = fs::remove_file(&pack_path);
        return Err(e);
    }
    if fs.options.pack_discard_old {
        let _ = fs::remove_file(&old_path);
    }
    // The old index describes the old file: replace it.
    fs.save_index()?;
    tracing::info!(path = %path.display(), pack_time = %pack_time, "pack finished");
    Ok(())
}

impl FileStorage {
    /// After a pack: removes the blob files of revisions the pack dropped (older
    /// revisions not current at `pack_time`, and objects collected), or, when the old
    /// file is kept, moves them to `<blob dir>.old` (emptied first, as ZODB does).
    /// Files of revisions after `pack_time` are never touched (a pack keeps every
    /// revision after it), nor those of transactions not yet published (a commit
    /// places its blobs before it writes its records).
    pub(super) fn pack_blobs(&self, pack_time: Tid) -> Result<()> {
        let Some(blobs) = &self.blobs else {
            return Ok(());
        };
        let keep_old = !self.options.pack_discard_old;
        let io = |what: &str, e| StorageError::io(format!("pack of the blob directory: {what}"), e);
        let old = blobs.old_root();
        if keep_old && old.exists() {
            fs::remove_dir_all(&old).map_err(|e| io("removing the previous .old", e))?;
        }
        // Transactions being written now have tids past the last one published.
        let limit = pack_time.min(self.snap.read().last_tid);
        let mut removed = 0usize;
        for (oid, tid, path) in blobs.revisions().map_err(|e| io("listing", e))? {
            if tid > limit {
                continue;
            }
            match self.read_serial(oid, tid) {
                Ok(_) => {}
                Err(e) if e.is_pos_key() => {
                    blobs
                        .retire(&path, keep_old)
                        .map_err(|e| io("removing a dropped revision", e))?;
                    removed += 1;
                }
                Err(e) => return Err(e),
            }
        }
        tracing::info!(removed, "pack: blob files of dropped revisions retired");
        Ok(())
    }
}

/// Copies the whole transactions in `[from, to)` of the source to the
/// output, re-aiming `prev` and backpointers; returns `to`.
fn copy_tail(
    reader: &Reader<'_>,
    from: u64,
    to: u64,
    out: &mut Output,
    pack_path: &Path,
) -> Result<u64> {
    let mut pos = from;
    while pos < to {
        let h = reader.txn_header(pos)?;
        let (user, description, extension) = FileStorage::read_meta(reader, pos, &h)?;
        let mut b = TxnBuilder::new(out.pos, h.tid, h.status, &user, &description, &extension);
        let mut new_positions: HashMap<u64, u64> = HashMap::new();
        for r in FileStorage::transaction_records(reader, pos, &h)? {
            let oid = r.header.oid;
            let prev = new_positions
                .get(&oid.0)
                .copied()
                .or_else(|| out.index.get(oid.0))
                .unwrap_or(0);
            let old = r.pos;
            let new = match &r.payload {
                RecordPayload::Data(d) => b.push(oid, r.header.serial, prev, &Payload::Data(d)),
                RecordPayload::Back(0) => b.push(oid, r.header.serial, prev, &Payload::Back(0)),
                RecordPayload::Back(back) => match out.moved.get(back) {
                    Some(&nb) => b.push(oid, r.header.serial, prev, &Payload::Back(nb)),
                    None => {
                        // The target was not kept: carry its data inline.
                        match reader.resolve(r.clone())? {
                            Some((data, _)) => {
                                b.push(oid, r.header.serial, prev, &Payload::Data(&data))
                            }
                            None => b.push(oid, r.header.serial, prev, &Payload::Back(0)),
                        }
                    }
                },
            };
            out.moved.insert(old, new);
            new_positions.insert(oid.0, new);
        }
        let bytes = b.finish();
        out.write(&bytes, pack_path)?;
        out.index.extend(new_positions);
        pos = h.next_pos(pos);
    }
    out.source_pos = to;
    Ok(to)
}
