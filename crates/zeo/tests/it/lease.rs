//! Read leases (spec §11) end to end: `bbru-zeo --lease-ms` and our `ClientStorage`.
//! A leased client's syncs make no round trip, yet every commit acknowledged to another
//! client is seen by its very next transaction; a leased client that stops confirming
//! delays commits for one lease at most; Python's client is offered a lease and, not
//! asking, changes nothing.

use std::time::{Duration, Instant};

use test_support::conformance::{commit, fresh_oids, record, record_value};
use zeo::client::{ClientOptions, ClientStorage};
use zeo::wire::{Message, Value};
use zodb_storage::{Storage, Tid};

use crate::server::{Raw, ServerProcess};

const LEASE_MS: &str = "1000";

fn client(server: &ServerProcess, lease: bool) -> ClientStorage {
    let mut o = ClientOptions::new(server.address());
    o.wait_timeout = Duration::from_secs(10);
    o.lease = lease;
    ClientStorage::connect(o).unwrap()
}

fn wait_for_lease(c: &ClientStorage) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !c.holds_lease() {
        assert!(Instant::now() < deadline, "no lease within 10 s");
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn value(s: &dyn Storage, oid: zodb_storage::Oid) -> i64 {
    record_value(&s.load(oid).unwrap().0).unwrap()
}

/// A listener that keeps the reader thread busy a while after each transaction, as a
/// loaded instance's thread may be: the next invalidation waits behind it.
struct Slow;

impl zodb_storage::InvalidationListener for Slow {
    fn committed(&self, _tid: Tid, _oids: &[zodb_storage::Oid]) {
        std::thread::sleep(Duration::from_millis(20));
    }

    fn reset(&self, _last: Tid) {}
}

/// A leased client whose reader thread lags (`Slow`); the listener lives as long as the
/// returned handle.
fn slow_reader(
    server: &ServerProcess,
) -> (
    ClientStorage,
    std::sync::Arc<dyn zodb_storage::InvalidationListener>,
) {
    let reader = client(server, true);
    let slow: std::sync::Arc<dyn zodb_storage::InvalidationListener> = std::sync::Arc::new(Slow);
    reader.add_listener(std::sync::Arc::downgrade(&slow));
    (reader, slow)
}

/// The guarantee a sync gives, kept without its round trip: right after another
/// client's commit returns, the leased client's sync (answered by the lease) and a
/// load from its cache show that commit, 100 times over, though its reader thread lags
/// (`Slow`, after a commit of another object just before).  Without the server's wait
/// for the leased client's confirmation the load finds the cached revision the
/// invalidation, still behind the listener, has not yet replaced (checked: it fails).
#[test]
fn a_leased_client_sees_each_acknowledged_commit_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--lease-ms", LEASE_MS]);
    let (reader, _slow) = slow_reader(&server);
    let writer = client(&server, false);
    let [x, y] = fresh_oids(&writer);
    let mut serials = [Tid::ZERO; 2];
    let first = commit(
        &writer,
        "0",
        &[
            (x, Tid::ZERO, record(0, &[])),
            (y, Tid::ZERO, record(0, &[])),
        ],
    );
    serials.fill(first);
    wait_for_lease(&reader);
    reader.sync().unwrap();
    assert_eq!(value(&reader, x), 0);
    assert!(
        !writer.holds_lease(),
        "a client that did not ask holds a lease"
    );
    let mut by_lease = 0;
    for n in 1..=100 {
        serials[1] = commit(&writer, "y", &[(y, serials[1], record(n, &[]))]);
        serials[0] = commit(&writer, "x", &[(x, serials[0], record(n, &[]))]);
        let leased = reader.holds_lease();
        reader.sync().unwrap();
        by_lease += usize::from(leased);
        assert_eq!(value(&reader, x), n, "commit {n} not seen after the sync");
        assert_eq!(reader.last_transaction(), serials[0]);
    }
    // Renewals every quarter lease keep it held throughout (a late one may lapse it).
    assert!(by_lease >= 95, "{by_lease} of 100 syncs had a lease");
}

/// The same with Python's `ClientStorage` committing (through ZODB, unmodified): the
/// server offers it a lease it does not ask for, and its commits wait for our leased
/// client's confirmations; each is seen by that client's next sync.
#[test]
fn a_python_clients_commits_are_seen_at_once_by_a_leased_client() {
    use std::io::{BufRead, Write};
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--lease-ms", LEASE_MS]);
    let (reader, _slow) = slow_reader(&server);
    wait_for_lease(&reader);
    let mut python = std::process::Command::new(test_support::python::python())
        .arg(test_support::python::script("zeo_lockstep.py"))
        .args([server.address().as_str(), "30"])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut to_python = python.stdin.take().unwrap();
    let mut lines = std::io::BufReader::new(python.stdout.take().unwrap()).lines();
    let mut seen = 0;
    loop {
        let line = lines.next().expect("a line from Python").unwrap();
        if line == "done" {
            break;
        }
        let tid = Tid::from_slice(&hex_bytes(&line)).expect("a tid");
        let leased = reader.holds_lease();
        reader.sync().unwrap();
        assert!(
            reader.last_transaction() >= tid,
            "Python's commit {line} not seen after the sync (leased: {leased})"
        );
        seen += 1;
        writeln!(to_python, "next").unwrap();
    }
    assert!(python.wait().unwrap().success());
    assert_eq!(seen, 30);
}

fn hex_bytes(hex: &str) -> Vec<u8> {
    (0..hex.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
        .collect()
}

/// A client that asks for a lease and then reads and confirms nothing (a hung
/// instance): the next commit waits for its lease to run out, about one lease, and the
/// ones after it do not wait (it gets no new lease on that connection).
#[test]
fn a_client_that_stops_confirming_delays_commits_for_one_lease() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--lease-ms", LEASE_MS]);
    let writer = client(&server, false);
    let [x] = fresh_oids(&writer);
    let mut serial = commit(&writer, "0", &[(x, Tid::ZERO, record(0, &[]))]);
    let mut hung = Raw::register(server.port);
    hung.send(&Message::call(2, "bbru_lease", vec![]));
    let granted = hung.reply_to(2).unwrap();
    assert_eq!(granted.args, Value::Int(1000), "{granted:?}");

    let began = Instant::now();
    serial = commit(&writer, "1", &[(x, serial, record(1, &[]))]);
    let waited = began.elapsed();
    assert!(
        waited >= Duration::from_millis(850) && waited < Duration::from_secs(8),
        "the commit waited {waited:?} for a lease of 1 s"
    );
    assert!(
        server
            .log_text()
            .contains("a leased client did not confirm a commit in time"),
        "{}",
        server.log_text()
    );
    let began = Instant::now();
    commit(&writer, "2", &[(x, serial, record(2, &[]))]);
    assert!(
        began.elapsed() < Duration::from_millis(800),
        "a lapsed lease was waited for again: {:?}",
        began.elapsed()
    );
    // And that connection gets no lease again.
    hung.send(&Message::call(3, "bbru_lease", vec![]));
    assert_eq!(hung.reply_to(3).unwrap().args, Value::None);
}

/// A leased client that closes gives its lease up: commits do not wait for it.  One
/// whose connection merely ends (killed) is waited for until its lease runs out.
#[test]
fn a_closed_client_gives_its_lease_up() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--lease-ms", LEASE_MS]);
    let writer = client(&server, false);
    let [x] = fresh_oids(&writer);
    let mut serial = commit(&writer, "0", &[(x, Tid::ZERO, record(0, &[]))]);
    let leased = client(&server, true);
    wait_for_lease(&leased);
    drop(leased);
    // The lease's end is a one-way message: give the server a moment to read it.
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    serial = commit(&writer, "1", &[(x, serial, record(1, &[]))]);
    assert!(
        began.elapsed() < Duration::from_millis(800),
        "a commit waited {:?} for a closed client",
        began.elapsed()
    );

    // A raw client leased and gone without a word: waited for.
    let mut gone = Raw::register(server.port);
    gone.send(&Message::call(2, "bbru_lease", vec![]));
    assert_eq!(gone.reply_to(2).unwrap().args, Value::Int(1000));
    drop(gone);
    let began = Instant::now();
    commit(&writer, "2", &[(x, serial, record(2, &[]))]);
    assert!(
        began.elapsed() >= Duration::from_millis(500),
        "a commit did not wait for a lease that may still be held: {:?}",
        began.elapsed()
    );
}

/// With `--lease-ms 0` nothing is offered, and a client syncs by round trips as
/// before; a lease is refused to a connection that asks anyway, and no marker file is
/// written.
#[test]
fn no_lease_with_lease_ms_0() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("Data.fs");
    let server = ServerProcess::start(&data_fs, &["--lease-ms", "0"]);
    let c = client(&server, true);
    std::thread::sleep(Duration::from_millis(300));
    assert!(!c.holds_lease());
    c.sync().unwrap();
    let mut raw = Raw::register(server.port);
    raw.send(&Message::call(2, "bbru_lease", vec![]));
    assert_eq!(raw.reply_to(2).unwrap().args, Value::None);
    assert!(!dir.path().join("Data.fs.leases").exists());
}

/// Leases granted by a process that died may still be held: the next process on the
/// same file holds its first commits one lease (the marker `Data.fs.leases`, written
/// before the first grant, says so).  A clean stop with no lease left removes the
/// marker, and the process after it does not wait.
#[test]
fn a_restart_after_a_crash_holds_the_first_commits_one_lease() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("Data.fs");
    let marker = dir.path().join("Data.fs.leases");
    let mut server = ServerProcess::start(&data_fs, &["--lease-ms", "2000"]);
    assert!(!marker.exists(), "a marker before any lease");
    {
        let leased = client(&server, true);
        wait_for_lease(&leased);
        assert!(marker.exists(), "a lease granted and no marker");
        // Killed with the lease held.
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let mut server = ServerProcess::start(&data_fs, &["--lease-ms", "2000"]);
    let started = Instant::now();
    let writer = client(&server, false);
    let [x] = fresh_oids(&writer);
    commit(&writer, "first", &[(x, Tid::ZERO, record(1, &[]))]);
    assert!(
        started.elapsed() >= Duration::from_millis(1500),
        "the first commit after a crash was acknowledged {:?} after the start",
        started.elapsed()
    );
    drop(writer);
    assert!(server.terminate().success());
    assert!(
        !marker.exists(),
        "a clean stop with no lease left kept the marker"
    );
    let server = ServerProcess::start(&data_fs, &["--lease-ms", "2000"]);
    let started = Instant::now();
    let writer = client(&server, false);
    let [y] = fresh_oids(&writer);
    commit(&writer, "second", &[(y, Tid::ZERO, record(2, &[]))]);
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "a start after a clean stop held its first commit {:?}",
        started.elapsed()
    );
}

/// A server that stops answering (SIGSTOP) while a leased client starts a commit: the
/// client's sync needs no answer, so it is its vote that meets the silence, and gives
/// up after `commit_wait` (the connection closed, as the transaction's state on the
/// server is unknown); once the server answers again the client reconnects and
/// commits, and the abandoned transaction left nothing.
#[test]
fn a_vote_to_a_server_that_stopped_answering_gives_up_after_commit_wait() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--lease-ms", LEASE_MS]);
    let mut o = ClientOptions::new(server.address());
    o.wait_timeout = Duration::from_secs(10);
    o.commit_wait = Some(Duration::from_secs(1));
    let c = ClientStorage::connect(o).unwrap();
    let [x] = fresh_oids(&c);
    wait_for_lease(&c);
    let pid = server.child.id().to_string();
    let signal = |name: &str| {
        let sent = std::process::Command::new("kill")
            .args([name, &pid])
            .status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {name}");
    };
    signal("-STOP");
    let began = Instant::now();
    let failed = test_support::conformance::try_commit(&c, Default::default(), |txn| {
        c.store(txn, x, Tid::ZERO, record(1, &[]))
    });
    let took = began.elapsed();
    signal("-CONT");
    let err = failed.expect_err("a commit to a stopped server succeeded");
    assert!(
        matches!(err, zodb_storage::StorageError::Disconnected(_)),
        "{err}"
    );
    assert!(
        took >= Duration::from_millis(900) && took < Duration::from_secs(8),
        "gave up after {took:?}"
    );
    let deadline = Instant::now() + Duration::from_secs(20);
    let serial = loop {
        match test_support::conformance::try_commit(&c, Default::default(), |txn| {
            c.store(txn, x, Tid::ZERO, record(2, &[]))
        }) {
            Ok(tid) => break tid,
            Err(e) => {
                assert!(Instant::now() < deadline, "no commit after SIGCONT: {e}");
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    };
    assert_eq!(c.load(x).unwrap(), (record(2, &[]), serial));
    assert_eq!(
        c.history(x, 10).unwrap().len(),
        1,
        "the abandoned commit left a revision"
    );
}
