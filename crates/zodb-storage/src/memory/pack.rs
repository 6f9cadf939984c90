//! Pack of a `MemoryStorage` (`filestorage-format.md` §13): which revisions at or
//! before the pack time survive (with `gc`, reachability from the root over this
//! storage and the layer below), worked out on a copy of the state, then applied under
//! the write lock the way FileStorage leaves its records.

use std::collections::{HashMap, HashSet};

use super::{MemoryStorage, State, visible};
use crate::error::{Result, StorageError};
use crate::gc::reachable_from_root;
use crate::ids::{Oid, Tid};
use crate::storage::TxnStatus;

impl MemoryStorage {
    /// Packs a copy of the state taken at the start, then applies the
    /// result. The effective pack time is at most the last tid of that
    /// copy, so transactions committed meanwhile are all after it and pack
    /// leaves them alone, as FileStorage copies its tail unchanged.
    pub(super) fn pack_state(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.check_open()?;
        let _packing = self.pack_lock.lock();
        let snapshot = self.state.read().clone();
        let pack_tid = pack_time.min(snapshot.last_tid);
        if snapshot.txns.range(..=pack_tid).next().is_none() {
            return Ok(());
        }
        let keep = self.pack_plan(&snapshot, pack_tid, gc)?;
        let kept = |oid: Oid, tid: Tid| keep.get(&oid).is_some_and(|tids| tids.contains(&tid));

        // As FileStorage does, a pack that would free nothing changes
        // nothing (statuses stay as they were, so those transactions stay
        // undoable). Inlining a backpointer counts as a change.
        let changes = snapshot.objects.iter().any(|(&oid, revs)| {
            revs.iter()
                .take_while(|r| r.tid <= pack_tid)
                .any(|r| !kept(oid, r.tid) || r.data_txn.is_some())
        });
        if !changes {
            return Ok(());
        }

        let mut st = self.state.write();
        // An undo that finished after the snapshot may reuse the data of a
        // revision the plan drops; such revisions stay, as in the plan.
        let reused_late: HashSet<(Oid, Tid)> = st
            .objects
            .iter()
            .flat_map(|(&oid, revs)| {
                revs.iter()
                    .filter(|r| r.tid > snapshot.last_tid)
                    .filter_map(move |r| r.data_txn.map(|t| (oid, t)))
            })
            .filter(|&(_, t)| t <= pack_tid)
            .collect();
        let kept = |oid: Oid, tid: Tid| kept(oid, tid) || reused_late.contains(&(oid, tid));
        st.objects.retain(|&oid, revs| {
            revs.retain(|r| r.tid > pack_tid || kept(oid, r.tid));
            // Before the pack time every kept record holds its data, and
            // only the newest is on the history chain (FileStorage writes
            // those records with `prev = 0`; only the index or the first
            // later record points at the newest).
            let n = revs.partition_point(|r| r.tid <= pack_tid);
            for (i, rev) in revs.iter_mut().take(n).enumerate() {
                rev.data_txn = None;
                rev.detached = i + 1 < n;
            }
            !revs.is_empty()
        });
        st.txns.retain(|&tid, txn| {
            if tid > pack_tid {
                return true;
            }
            txn.status = TxnStatus::Packed;
            txn.oids.retain(|&oid| kept(oid, tid));
            !txn.oids.is_empty()
        });
        st.size = st.compute_size();
        tracing::debug!(storage = %self.name, pack_tid = %pack_tid, gc, "packed");
        Ok(())
    }

    /// The strong references of `oid`'s revision current at `pack_tid`, or
    /// `None` when the object does not exist then. `snapshot` is the state
    /// the pack works on.
    fn refs_at(&self, snapshot: &State, oid: Oid, pack_tid: Tid) -> Result<Option<Vec<Oid>>> {
        let revs = snapshot.chain(oid).unwrap_or_default();
        let n = revs.partition_point(|r| r.tid <= pack_tid);
        if let Some(rev) = n.checked_sub(1).and_then(|i| revs.get(i)) {
            return match &rev.data {
                Some(data) => record_refs(oid, data).map(Some),
                None => Ok(None),
            };
        }
        let before = Tid(pack_tid.0.saturating_add(1));
        match self.lower.revision_before(oid, before)? {
            Some(rev) => record_refs(oid, &rev.data).map(Some),
            None => Ok(None),
        }
    }

    /// Works out which revisions at or before `pack_tid` survive (§13):
    /// the one current at `pack_tid` (with `gc`, only for objects reachable
    /// from the root), plus those that later undo revisions reuse data
    /// from. A current deletion survives only where it hides an object of
    /// the lower storage. Returns, per oid, the tids to keep.
    fn pack_plan(
        &self,
        snapshot: &State,
        pack_tid: Tid,
        gc: bool,
    ) -> Result<HashMap<Oid, HashSet<Tid>>> {
        let mut keep: HashMap<Oid, HashSet<Tid>> = HashMap::new();
        let mut current: HashMap<Oid, Tid> = HashMap::new();
        let mut extras: Vec<(Oid, Tid)> = Vec::new();
        for (&oid, revs) in &snapshot.objects {
            let chain = visible(revs);
            let n = chain.partition_point(|r| r.tid <= pack_tid);
            if let Some(rev) = n.checked_sub(1).and_then(|i| chain.get(i)) {
                if rev.data.is_some() {
                    current.insert(oid, rev.tid);
                } else if self.lower.has(oid)? {
                    keep.entry(oid).or_default().insert(rev.tid);
                }
            }
            for later in chain.iter().skip(n) {
                if let Some(target) = later.data_txn
                    && target <= pack_tid
                    && revs.binary_search_by(|r| r.tid.cmp(&target)).is_ok()
                {
                    extras.push((oid, target));
                }
            }
        }
        for &(oid, tid) in &extras {
            keep.entry(oid).or_default().insert(tid);
        }
        if !gc {
            for (oid, tid) in current {
                keep.entry(oid).or_default().insert(tid);
            }
            return Ok(keep);
        }

        // Reachability at the pack time. Revisions kept for later undo
        // revisions of reachable objects contribute their references too
        // (Python's step 2), which may make more objects reachable, hence
        // the loop; it ends because each round follows at least one more of
        // the finitely many extras.
        let mut refs_cache: HashMap<Oid, Option<Vec<Oid>>> = HashMap::new();
        let mut extra_refs: Vec<Oid> = Vec::new();
        let mut followed: HashSet<(Oid, Tid)> = HashSet::new();
        let reachable = loop {
            let reachable = reachable_from_root(|oid| {
                let refs = match refs_cache.get(&oid) {
                    Some(r) => r.clone(),
                    None => {
                        let r = self.refs_at(snapshot, oid, pack_tid)?;
                        refs_cache.insert(oid, r.clone());
                        r
                    }
                };
                Ok(match refs {
                    Some(mut r) if oid == Oid::ROOT => {
                        r.extend_from_slice(&extra_refs);
                        Some(r)
                    }
                    other => other,
                })
            })?;
            let mut grew = false;
            for &(oid, tid) in &extras {
                if reachable.contains(&oid) && followed.insert((oid, tid)) {
                    if let Some(data) = snapshot.revision(oid, tid).and_then(|r| r.data.clone()) {
                        extra_refs.extend(record_refs(oid, &data)?);
                    }
                    grew = true;
                }
            }
            if !grew {
                break reachable;
            }
        };
        for (oid, tid) in current {
            if reachable.contains(&oid) {
                keep.entry(oid).or_default().insert(tid);
            }
        }
        Ok(keep)
    }
}

fn record_refs(oid: Oid, data: &[u8]) -> Result<Vec<Oid>> {
    zodb_pickle::strong_references(data)
        .map(|refs| refs.into_iter().map(Oid).collect())
        .map_err(|e| StorageError::Pack(format!("cannot read the references of object {oid}: {e}")))
}
