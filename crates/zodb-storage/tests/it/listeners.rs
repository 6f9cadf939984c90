//! Commit notifications (`Storage::add_listener`, contract in
//! `zodb_storage::listeners`) from the three engines: every commit — stores,
//! undo, `delete_object`, `restore` — is reported once with the oids it wrote,
//! in tid order, only once loads see it and before its `finish` returns, also
//! when several threads commit at once; a listener that is dropped is no
//! longer called.

use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex, Weak};
use std::thread;
use std::time::Duration;

use test_support::conformance::{commit, meta, record, record_value, try_commit};
use zodb_storage::{
    DemoStorage, FileStorage, InvalidationListener, MemoryStorage, Oid, Storage, Tid,
    TransactionMeta,
};

/// What a listener was told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Event {
    /// A commit and its oids, sorted.
    Committed(Tid, Vec<Oid>),
    Reset(Tid),
}

/// Records every call into a log that outlives it, so a test can see that a
/// dropped recorder is no longer called.
#[derive(Debug, Default)]
struct Recorder {
    log: Arc<Mutex<Vec<Event>>>,
}

impl InvalidationListener for Recorder {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut oids = oids.to_vec();
        oids.sort();
        self.log.lock().unwrap().push(Event::Committed(tid, oids));
    }

    fn reset(&self, last: Tid) {
        self.log.lock().unwrap().push(Event::Reset(last));
    }
}

impl Recorder {
    fn events(&self) -> Vec<Event> {
        self.log.lock().unwrap().clone()
    }

    fn has_committed(&self, tid: Tid) -> bool {
        self.log
            .lock()
            .unwrap()
            .iter()
            .any(|e| matches!(e, Event::Committed(t, _) if *t == tid))
    }
}

fn listen(s: &dyn Storage, listener: &Arc<impl InvalidationListener + 'static>) {
    let weak: Weak<dyn InvalidationListener> =
        Arc::downgrade(listener) as Weak<dyn InvalidationListener>;
    s.add_listener(weak);
}

/// Holds the committer inside `committed` until the test thread, told the
/// tid and oids, has loaded the objects and lets it go: so the loads see the
/// storage exactly as it is at the moment of the report. (The listener
/// itself never calls the storage, as the contract asks.)
#[derive(Debug)]
struct Gate {
    reported: Mutex<Sender<(Tid, Vec<Oid>)>>,
    go: Mutex<Receiver<()>>,
}

impl InvalidationListener for Gate {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut oids = oids.to_vec();
        oids.sort();
        self.reported.lock().unwrap().send((tid, oids)).unwrap();
        self.go
            .lock()
            .unwrap()
            .recv_timeout(Duration::from_secs(30))
            .expect("the test thread lets the commit go on");
    }

    fn reset(&self, last: Tid) {
        panic!("reset({last}) from a local storage");
    }
}

/// What an object looks like after a step of the script.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum After {
    /// Its record's value.
    Value(i64),
    Deleted,
}

/// The script's steps: the objects each transaction writes and what they
/// look like after it. `x`, `y`, `z` are three fresh oids; the last step
/// (a restore) is run only by engines that can restore.
fn steps([x, y, z]: [Oid; 3], restores: bool) -> Vec<Vec<(Oid, After)>> {
    let mut steps = vec![
        // Two new objects.
        vec![(x, After::Value(1)), (y, After::Value(10))],
        vec![(x, After::Value(2))],
        // Undo of the previous step.
        vec![(x, After::Value(1))],
        vec![(y, After::Deleted)],
        vec![(x, After::Value(3)), (z, After::Value(30))],
    ];
    if restores {
        steps.push(vec![(z, After::Value(31))]);
    }
    for step in &mut steps {
        step.sort_by_key(|(oid, _)| *oid);
    }
    steps
}

/// Runs the script's transactions; after each `finish`, checks that
/// `recorder` already has it, with its oids. Returns the tids.
fn run_script(
    s: &dyn Storage,
    [x, y, z]: [Oid; 3],
    restores: bool,
    recorder: &Recorder,
) -> Vec<Tid> {
    let mut tids = Vec::new();
    let check = |tid: Tid, oids: &[Oid]| {
        let mut oids = oids.to_vec();
        oids.sort();
        assert_eq!(
            recorder.events().last(),
            Some(&Event::Committed(tid, oids)),
            "transaction {tid} reported before its finish returned"
        );
    };
    let t1 = commit(
        s,
        "create",
        &[
            (x, Tid::ZERO, record(1, &[])),
            (y, Tid::ZERO, record(10, &[])),
        ],
    );
    check(t1, &[x, y]);
    tids.push(t1);
    let t2 = commit(s, "change", &[(x, t1, record(2, &[]))]);
    check(t2, &[x]);
    tids.push(t2);
    let mut undone = Vec::new();
    let t3 = try_commit(s, meta("undo"), |txn| {
        undone = s.undo(txn, t2)?;
        Ok(())
    })
    .expect("undo");
    assert_eq!(undone, vec![x]);
    check(t3, &[x]);
    tids.push(t3);
    let t4 = try_commit(s, meta("delete"), |txn| s.delete_object(txn, y, t1)).expect("delete");
    check(t4, &[y]);
    tids.push(t4);
    let t5 = commit(
        s,
        "more",
        &[(x, t3, record(3, &[])), (z, Tid::ZERO, record(30, &[]))],
    );
    check(t5, &[x, z]);
    tids.push(t5);
    if restores {
        let given = Tid(t5.0 + 1);
        let t6 = try_commit(
            s,
            TransactionMeta {
                tid: Some(given),
                ..meta("restore")
            },
            |txn| s.restore(txn, z, Some(record(31, &[])), None),
        )
        .expect("restore");
        assert_eq!(t6, given);
        check(t6, &[z]);
        tids.push(t6);
    }
    tids
}

/// The whole check for one engine (see the module doc).
fn reports_every_commit(s: Arc<dyn Storage>, restores: bool) {
    let oids: [Oid; 3] = s.new_oids(3).unwrap().try_into().unwrap();
    let steps = steps(oids, restores);
    let (reported_tx, reported_rx) = mpsc::channel();
    let (go_tx, go_rx) = mpsc::channel();
    let gate = Arc::new(Gate {
        reported: Mutex::new(reported_tx),
        go: Mutex::new(go_rx),
    });
    let recorder = Arc::new(Recorder::default());
    listen(&*s, &gate);
    listen(&*s, &recorder);

    let committer = {
        let s = Arc::clone(&s);
        let recorder = Arc::clone(&recorder);
        thread::spawn(move || run_script(&*s, oids, restores, &recorder))
    };
    let mut gated = Vec::new();
    for (i, step) in steps.iter().enumerate() {
        let (tid, reported_oids) = reported_rx
            .recv_timeout(Duration::from_secs(30))
            .unwrap_or_else(|e| panic!("step {i} not reported: {e}"));
        let want: Vec<Oid> = step.iter().map(|(oid, _)| *oid).collect();
        assert_eq!(reported_oids, want, "oids of step {i}");
        // The committer waits inside the report: what loads see now is what
        // they saw when it was made.
        let after_tid = Tid(tid.0 + 1);
        for (oid, after) in step {
            match (s.load_before(*oid, after_tid), after) {
                (Ok(Some(rev)), After::Value(v)) => {
                    assert_eq!(
                        rev.start, tid,
                        "step {i}: {oid} is the reported transaction's"
                    );
                    assert_eq!(record_value(&rev.data), Some(*v), "step {i}: {oid}");
                }
                (Err(e), After::Deleted) if e.is_pos_key() => {}
                (got, after) => panic!("step {i}: {oid} at the report: {got:?}, want {after:?}"),
            }
        }
        gated.push(tid);
        go_tx.send(()).unwrap();
    }
    let tids = committer.join().expect("the committer");
    assert_eq!(gated, tids);
    let expected: Vec<Event> = tids
        .iter()
        .zip(&steps)
        .map(|(tid, step)| Event::Committed(*tid, step.iter().map(|(oid, _)| *oid).collect()))
        .collect();
    assert_eq!(
        recorder.events(),
        expected,
        "each commit once, in tid order"
    );

    // Dropped listeners are forgotten: their logs stay as they were, while a
    // listener added now hears of the next commit only.
    let log = Arc::clone(&recorder.log);
    drop(recorder);
    drop(gate);
    let late = Arc::new(Recorder::default());
    listen(&*s, &late);
    let [x, ..] = oids;
    // x was last written by the fifth step.
    let t = commit(&*s, "after the drop", &[(x, tids[4], record(4, &[]))]);
    assert_eq!(
        *log.lock().unwrap(),
        expected,
        "a dropped listener was called"
    );
    assert_eq!(late.events(), vec![Event::Committed(t, vec![x])]);

    // Pack reports nothing.
    s.pack(t, false).unwrap();
    assert_eq!(late.events(), vec![Event::Committed(t, vec![x])]);
}

#[test]
fn memory_storage_reports_every_commit() {
    reports_every_commit(Arc::new(MemoryStorage::new("listened")), false);
}

#[test]
fn demo_storage_reports_every_commit() {
    let base = Arc::new(MemoryStorage::new("base"));
    commit(&*base, "base", &[(Oid::ROOT, Tid::ZERO, record(0, &[]))]);
    let base_log = Arc::new(Recorder::default());
    listen(&*base, &base_log);
    reports_every_commit(Arc::new(DemoStorage::new(base, "demo")), false);
    assert_eq!(base_log.events(), vec![], "the base is never written");
}

#[test]
fn file_storage_reports_every_commit() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    reports_every_commit(Arc::new(fs), true);
}

/// 4 threads commit 50 transactions each: the reports name exactly the
/// committed transactions, each with its oid, in strictly increasing tid
/// order, each before its `finish` returned.
fn concurrent_commits_are_reported_in_order(s: Arc<dyn Storage>) {
    const THREADS: usize = 4;
    const COMMITS: i64 = 50;
    let recorder = Arc::new(Recorder::default());
    listen(&*s, &recorder);
    let threads: Vec<_> = (0..THREADS)
        .map(|n| {
            let s = Arc::clone(&s);
            let recorder = Arc::clone(&recorder);
            thread::spawn(move || {
                let oid = s.new_oids(1).unwrap()[0];
                let mut serial = Tid::ZERO;
                let mut committed = Vec::new();
                for i in 0..COMMITS {
                    let tid = commit(
                        &*s,
                        &format!("thread {n} commit {i}"),
                        &[(oid, serial, record(i, &[]))],
                    );
                    assert!(
                        recorder.has_committed(tid),
                        "{tid} reported before its finish returned"
                    );
                    committed.push(Event::Committed(tid, vec![oid]));
                    serial = tid;
                }
                committed
            })
        })
        .collect();
    let mut committed: Vec<Event> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("a committer"))
        .collect();
    committed.sort_by_key(|e| match e {
        Event::Committed(tid, _) => *tid,
        Event::Reset(tid) => *tid,
    });
    let events = recorder.events();
    let tids: Vec<Tid> = events
        .iter()
        .map(|e| match e {
            Event::Committed(tid, _) => *tid,
            Event::Reset(tid) => panic!("reset({tid})"),
        })
        .collect();
    assert!(
        tids.windows(2).all(|w| w[0] < w[1]),
        "reported tids strictly increase: {tids:?}"
    );
    assert_eq!(events.len(), THREADS * COMMITS as usize);
    assert_eq!(events, committed);
}

#[test]
fn file_storage_concurrent_commits_are_reported_in_order() {
    let dir = tempfile::tempdir().unwrap();
    let fs = FileStorage::open(dir.path().join("Data.fs")).unwrap();
    concurrent_commits_are_reported_in_order(Arc::new(fs));
}

#[test]
fn memory_storage_concurrent_commits_are_reported_in_order() {
    concurrent_commits_are_reported_in_order(Arc::new(MemoryStorage::new("concurrent")));
}
