//! A request whose transaction conflicts is run again, on the newer state, up to
//! `conflict_retries` times, and only then answered 409 with the message users know.
//!
//! The conflicts are real: the site's database is on a MemoryStorage, and a rival
//! database on the same storage commits a change of the page the request edits just as
//! the request begins its commit (pages have no conflict resolver, so the two edits
//! cannot be merged).  The storage the site sees passes every call through, and starts
//! that rival commit from its `tpc_begin` while it is armed: the timing is exact, with no
//! sleep and no race.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Weak};

use serde_json::{Value, json};
use zodb::{DB, PRef};
use zodb_storage::{
    HistoryEntry, InvalidationListener, MemoryStorage, Oid, RecordIterItem, Result, Revision,
    Storage, StorageLocation, Tid, TransactionIter, TransactionMeta, TxnHandle, UndoLogEntry,
};

use crate::matrix::api;
use crate::{ADMIN, Site, counter, site_config, start_adjusted};

/// A storage that passes everything to `inner`, except that each `tpc_begin` while
/// `rivals_left` is above zero first commits a rival change of the page `target`
/// through another database on `inner`.
struct Rivalled {
    inner: Arc<dyn Storage>,
    rival: DB,
    target: AtomicU64,
    rivals_left: AtomicU32,
    rivals_committed: AtomicU32,
}

impl Rivalled {
    fn new() -> Arc<Rivalled> {
        let inner: Arc<dyn Storage> = Arc::new(MemoryStorage::new("rivalled"));
        Arc::new(Rivalled {
            rival: DB::open(inner.clone()).unwrap(),
            inner,
            target: AtomicU64::new(0),
            rivals_left: AtomicU32::new(0),
            rivals_committed: AtomicU32::new(0),
        })
    }

    /// The next `count` commits of the site each meet a rival change of `page` first.
    fn arm(&self, page: Oid, count: u32) {
        self.target.store(page.0, Ordering::SeqCst);
        self.rivals_committed.store(0, Ordering::SeqCst);
        self.rivals_left.store(count, Ordering::SeqCst);
    }

    fn rival_commit(&self) {
        let page =
            PRef::<bbru::model::content::Page>::from_oid(Oid(self.target.load(Ordering::SeqCst)));
        self.rival
            .transact(|tx| {
                tx.update(page, |p| p.meta.description.push_str("rival "))?;
                tx.note("the rival's change");
                Ok::<_, zodb::Error>(())
            })
            .unwrap();
        self.rivals_committed.fetch_add(1, Ordering::SeqCst);
    }
}

impl Storage for Rivalled {
    fn name(&self) -> String {
        self.inner.name()
    }
    fn location(&self) -> StorageLocation {
        self.inner.location()
    }
    fn is_read_only(&self) -> bool {
        self.inner.is_read_only()
    }
    fn last_transaction(&self) -> Tid {
        self.inner.last_transaction()
    }
    fn len(&self) -> usize {
        self.inner.len()
    }
    fn size(&self) -> u64 {
        self.inner.size()
    }
    fn load_before(&self, oid: Oid, before: Tid) -> Result<Option<Revision>> {
        self.inner.load_before(oid, before)
    }
    fn load_serial(&self, oid: Oid, serial: Tid) -> Result<Vec<u8>> {
        self.inner.load_serial(oid, serial)
    }
    fn new_oids(&self, count: usize) -> Result<Vec<Oid>> {
        self.inner.new_oids(count)
    }
    fn tpc_begin(&self, meta: TransactionMeta) -> Result<TxnHandle> {
        let armed = self
            .rivals_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if armed {
            self.rival_commit();
        }
        self.inner.tpc_begin(meta)
    }
    fn store(&self, txn: &TxnHandle, oid: Oid, expected: Tid, data: Vec<u8>) -> Result<()> {
        self.inner.store(txn, oid, expected, data)
    }
    fn delete_object(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.inner.delete_object(txn, oid, expected)
    }
    fn record_iternext(&self, from: Oid) -> Result<Option<RecordIterItem>> {
        self.inner.record_iternext(from)
    }
    fn check_current_serial(&self, txn: &TxnHandle, oid: Oid, expected: Tid) -> Result<()> {
        self.inner.check_current_serial(txn, oid, expected)
    }
    fn undo(&self, txn: &TxnHandle, tid: Tid) -> Result<Vec<Oid>> {
        self.inner.undo(txn, tid)
    }
    fn vote(&self, txn: &TxnHandle) -> Result<()> {
        self.inner.vote(txn)
    }
    fn finish(&self, txn: &TxnHandle) -> Result<Tid> {
        self.inner.finish(txn)
    }
    fn abort(&self, txn: &TxnHandle) {
        self.inner.abort(txn);
    }
    fn history(&self, oid: Oid, size: usize) -> Result<Vec<HistoryEntry>> {
        self.inner.history(oid, size)
    }
    fn undo_log(&self, first: usize, last: usize) -> Result<Vec<UndoLogEntry>> {
        self.inner.undo_log(first, last)
    }
    fn iterator(&self, start: Option<Tid>, stop: Option<Tid>) -> Result<TransactionIter> {
        self.inner.iterator(start, stop)
    }
    fn pack(&self, pack_time: Tid, gc: bool) -> Result<()> {
        self.inner.pack(pack_time, gc)
    }
    fn close(&self) -> Result<()> {
        self.inner.close()
    }
    fn sync(&self) -> Result<()> {
        self.inner.sync()
    }
    fn add_listener(&self, listener: Weak<dyn InvalidationListener>) {
        self.inner.add_listener(listener);
    }
}

/// A site over a [`Rivalled`] storage whose requests are retried `retries` times (the
/// default when `None`), with the page `/install`; its oid.
fn site_with_page(retries: Option<u32>) -> (Site, Arc<Rivalled>, Oid) {
    let storage = Rivalled::new();
    let site = start_adjusted(storage.clone(), site_config(""), |app| {
        if let Some(n) = retries {
            app.conflict_retries = n;
        }
    });
    let r = api(
        &site,
        "POST",
        "/",
        Some(ADMIN),
        Some(&json!({"@type": "Page", "id": "install", "title": "Install", "body": "v1"})),
    );
    assert_eq!(r.status(), 201);
    let oid = {
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let s = bbru::model::Site::find(&tx).unwrap().unwrap();
        let root = tx.get(tx.get(s).unwrap().content).unwrap();
        bbru::model::content::items_map(&tx, &root).unwrap()["install"].oid()
    };
    (site, storage, oid)
}

fn patch_title(site: &Site, title: &str) -> (u16, Value) {
    let r = api(
        site,
        "PATCH",
        "/install",
        Some(ADMIN),
        Some(&json!({"title": title})),
    );
    let status = r.status().as_u16();
    (status, r.json().unwrap_or(Value::Null))
}

fn page(site: &Site) -> Value {
    api(site, "GET", "/install", Some(ADMIN), None)
        .json()
        .unwrap()
}

#[test]
fn a_request_that_conflicts_once_is_run_again_and_succeeds() {
    let (site, storage, oid) = site_with_page(Some(3));
    storage.arm(oid, 1);
    let (status, body) = patch_title(&site, "Installing");
    assert_eq!(status, 204, "{body}");
    assert_eq!(storage.rivals_committed.load(Ordering::SeqCst), 1);
    // Run again on the newer state: the rival's change and the request's are both kept.
    let now = page(&site);
    assert_eq!(now["title"], "Installing", "{now}");
    assert_eq!(now["description"], "rival ", "{now}");
    assert_eq!(counter(&site.base, "bbru_conflict_retries"), 1);
    assert_eq!(counter(&site.base, "bbru_conflicts_given_up"), 0);
}

#[test]
fn a_request_that_keeps_conflicting_is_answered_409_after_every_attempt() {
    let (site, storage, oid) = site_with_page(Some(2));
    storage.arm(oid, u32::MAX);
    let (status, body) = patch_title(&site, "Installing");
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        body["error"]["message"], "Someone else changed this at the same time; please try again.",
        "{body}"
    );
    // The first attempt and the two retries configured, each beaten by a rival.
    assert_eq!(storage.rivals_committed.load(Ordering::SeqCst), 3);
    storage.arm(oid, 0);
    let now = page(&site);
    assert_eq!(now["title"], "Install", "{now}");
    assert_eq!(now["description"], "rival rival rival ", "{now}");
    assert_eq!(counter(&site.base, "bbru_conflict_retries"), 2);
    assert_eq!(counter(&site.base, "bbru_conflicts_given_up"), 1);

    // Without retries, the first conflict is the answer.
    let (site, storage, oid) = site_with_page(Some(0));
    storage.arm(oid, u32::MAX);
    let (status, body) = patch_title(&site, "Installing");
    assert_eq!(status, 409, "{body}");
    assert_eq!(storage.rivals_committed.load(Ordering::SeqCst), 1);
    assert_eq!(counter(&site.base, "bbru_conflict_retries"), 0);
}

#[test]
fn by_default_a_request_is_tried_nine_times() {
    // Eight retries (limits::CONFLICT_RETRIES_DEFAULT): Zope's three, and more for the
    // search index every creation shares.
    let (site, storage, oid) = site_with_page(None);
    storage.arm(oid, u32::MAX);
    let (status, body) = patch_title(&site, "Installing");
    assert_eq!(status, 409, "{body}");
    assert_eq!(storage.rivals_committed.load(Ordering::SeqCst), 9);
    storage.arm(oid, 8);
    let (status, body) = patch_title(&site, "Installing");
    assert_eq!(status, 204, "{body}");
    assert_eq!(storage.rivals_committed.load(Ordering::SeqCst), 8);
}

/// The classes of the objects the newest transaction of `site`'s storage wrote.
fn classes_written_last(site: &Site) -> Vec<(String, String)> {
    let storage = site.db.storage();
    let last = storage.last_transaction();
    let txn = storage
        .iterator(Some(last), Some(last))
        .unwrap()
        .next()
        .expect("the newest transaction")
        .unwrap();
    let mut conn = site.db.connection();
    let tx = conn.begin();
    txn.records
        .iter()
        .map(|r| tx.class_of(r.oid).unwrap())
        .collect()
}

/// Concurrent creations in one folder conflict only where BTrees merge them: a creation
/// writes the new object and the folder's items tree (one bucket of it, or the tree
/// while it is a single bucket), the search index's new entry (its own terms record, the
/// buckets of its postings and of its entry, the two `Length` counters, which merge),
/// and nothing else every creation would share: no count, order list or modification
/// time on the folder, nothing on the site.
#[test]
fn creating_an_item_writes_no_shared_object_but_the_folders_items_tree() {
    let site = crate::start();
    let create = |name: &str| {
        let r = api(
            &site,
            "POST",
            "/",
            Some(ADMIN),
            Some(&json!({"@type": "Page", "id": name, "title": name, "body": "x"})),
        );
        assert_eq!(r.status(), 201, "{name}");
    };
    let btree =
        |(module, _): &(String, String)| module == "BTrees.OOBTree" || module == "BTrees.Length";
    let page = |(module, name): &(String, String)| {
        (module == "bbru.content" && name == "Page")
            || (module == "bbru.search" && name == "DocTerms")
    };
    create("first");
    let written = classes_written_last(&site);
    assert_eq!(written.iter().filter(|c| page(c)).count(), 2, "{written:?}");
    assert!(written.iter().all(|c| page(c) || btree(c)), "{written:?}");
    // With many buckets: a creation writes the bucket it lands in (and a node when the
    // bucket splits), still nothing else.
    for n in 0..100 {
        create(&format!("page-{n:03}"));
        let written = classes_written_last(&site);
        assert_eq!(written.iter().filter(|c| page(c)).count(), 2, "{written:?}");
        assert!(written.iter().all(|c| page(c) || btree(c)), "{written:?}");
        // Page and terms; items bucket; a postings bucket for each of the 3 terms and
        // the entry's bucket (a node more for each that splits); the two counters.
        assert!(written.len() <= 12, "{written:?}");
    }
    // A form creation (`@@add`) too.
    let admin = site.admin();
    let r = admin.post(
        "/@@add",
        &[("type", "Page"), ("id", "by-form"), ("title", "By form")],
    );
    assert_eq!(r.status(), 303);
    let written = classes_written_last(&site);
    assert_eq!(written.iter().filter(|c| page(c)).count(), 2, "{written:?}");
    assert!(written.iter().all(|c| page(c) || btree(c)), "{written:?}");
}
