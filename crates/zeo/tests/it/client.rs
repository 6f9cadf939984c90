//! The ZEO client (`zeo::client::ClientStorage`) against real servers run as child
//! processes: our `bbru-zeo` and Python's `runzeo` (ZEO 6.2).  The storage conformance
//! suite runs over the client against each, one fresh server per check; then what only a
//! client has: invalidations from another client, reconnection with cache verification,
//! read-only fallback, conflicts as `StorageError::Conflict`, msgpack and unix sockets.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use test_support::conformance::{commit, record, record_value, try_commit};
use test_support::python;
use zeo::client::{ClientOptions, ClientStorage};
use zodb_storage::{
    FileStorage, InvalidationListener, Oid, Storage, StorageError, Tid, TransactionMeta,
};

use crate::path_str;

/// Which server to run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Bbru,
    Python,
}

/// A port nobody listens on right now.
fn free_port() -> u16 {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    l.local_addr().expect("local address").port()
}

/// A server child process; killed when dropped.
pub struct Server {
    child: Option<Child>,
    pub address: String,
    kind: Kind,
    log: PathBuf,
}

impl Server {
    /// Starts a `kind` server on `address` (`127.0.0.1:PORT` or a socket path) serving
    /// `file`, and waits until it accepts connections.
    pub fn start(kind: Kind, address: &str, file: &Path, extra: &[&str]) -> Server {
        let mut args = vec!["-a", address, "-f", path_str(file)];
        args.extend_from_slice(extra);
        Server::spawn(kind, address, file, &args)
    }

    /// Starts a server configured by a `zeo.conf` (`-C`) that says to listen on
    /// `address`; its log goes beside `file`.
    pub fn start_with_config(kind: Kind, address: &str, file: &Path, config: &Path) -> Server {
        Server::spawn(kind, address, file, &["-C", path_str(config)])
    }

    fn spawn(kind: Kind, address: &str, file: &Path, args: &[&str]) -> Server {
        let log_path =
            file.with_extension(format!("{}.log", address.replace(['/', ':', '.'], "_")));
        let log = std::fs::File::create(&log_path).expect("server log file");
        let mut cmd = match kind {
            Kind::Bbru => {
                let mut c = Command::new(env!("CARGO_BIN_EXE_bbru-zeo"));
                c.env("BBRU_LOG", "info");
                c
            }
            Kind::Python => {
                let mut c = Command::new(python::python());
                c.args(["-m", "ZEO.runzeo"]);
                c
            }
        };
        cmd.args(args)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log file"))
            .stderr(log);
        let child = cmd.spawn().expect("start the server");
        let mut server = Server {
            child: Some(child),
            address: address.to_string(),
            kind,
            log: log_path,
        };
        server.wait_accepting();
        server
    }

    fn wait_accepting(&mut self) {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let up = if self.address.contains('/') {
                std::os::unix::net::UnixStream::connect(&self.address).is_ok()
            } else {
                test_support::process::listening(&self.address)
            };
            if up {
                return;
            }
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                panic!(
                    "{:?} server on {} exited at start: {status}\n{}",
                    self.kind,
                    self.address,
                    std::fs::read_to_string(&self.log).unwrap_or_default()
                );
            }
            assert!(
                Instant::now() < deadline,
                "{:?} server on {} not accepting after 30 s",
                self.kind,
                self.address
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Sends `signal` (`STOP`, `CONT`, ...) to the server process.
    pub fn signal(&self, signal: &str) {
        let child = self.child.as_ref().expect("the server runs");
        let status = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal}");
        if signal == "STOP" {
            // The signal is delivered asynchronously: wait for the stop itself.
            let stat = format!("/proc/{}/stat", child.id());
            eventually(10, "the server is stopped", || {
                std::fs::read_to_string(&stat).is_ok_and(|s| {
                    s.rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('T'))
                })
            });
        }
    }

    /// What the server has logged so far.
    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Kills the server (SIGKILL) and waits for it to be gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

/// A client connected to a server of its own on a fresh `Data.fs`; dereferences to the
/// client.  Fields drop in order: client, server, directory.
pub struct Fixture {
    pub client: ClientStorage,
    pub server: Server,
    _dir: tempfile::TempDir,
}

impl std::ops::Deref for Fixture {
    type Target = ClientStorage;
    fn deref(&self) -> &ClientStorage {
        &self.client
    }
}

impl Fixture {
    pub fn new(kind: Kind) -> Fixture {
        Fixture::with_server_args(kind, &[])
    }

    pub fn with_server_args(kind: Kind, extra: &[&str]) -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("127.0.0.1:{}", free_port());
        let server = Server::start(kind, &address, &dir.path().join("Data.fs"), extra);
        let client = connect(&address);
        Fixture {
            client,
            server,
            _dir: dir,
        }
    }

    /// Python's server in client-conflict-resolution mode (`zeo.conf`): its vote
    /// returns every write conflict as a dict, as `bbru-zeo` always does.
    pub fn python_client_conflict_resolution() -> Fixture {
        let dir = tempfile::tempdir().expect("temp dir");
        let address = format!("127.0.0.1:{}", free_port());
        let file = dir.path().join("Data.fs");
        let server = start_python_configured(&address, &file, "client-conflict-resolution true");
        let client = connect(&address);
        Fixture {
            client,
            server,
            _dir: dir,
        }
    }

    /// Another client of the same server.
    pub fn second_client(&self) -> ClientStorage {
        connect(&self.server.address)
    }
}

/// Starts Python's `runzeo -C zeo.conf` serving `file` on `address`, with `zeo_lines`
/// added to the `<zeo>` section (runzeo has no command-line flag for them).
fn start_python_configured(address: &str, file: &Path, zeo_lines: &str) -> Server {
    let config = file.with_extension("conf");
    std::fs::write(
        &config,
        format!(
            "<zeo>\n  address {address}\n  {zeo_lines}\n</zeo>\n\
             <filestorage 1>\n  path {}\n</filestorage>\n",
            path_str(file)
        ),
    )
    .expect("write zeo.conf");
    Server::start_with_config(Kind::Python, address, file, &config)
}

/// A read-only server of `kind` (`bbru-zeo -r`; Python: `read-only true` in zeo.conf).
fn start_read_only(kind: Kind, address: &str, file: &Path) -> Server {
    match kind {
        Kind::Bbru => Server::start(kind, address, file, &["-r"]),
        Kind::Python => start_python_configured(address, file, "read-only true"),
    }
}

fn options(address: &str) -> ClientOptions {
    let mut o = ClientOptions::new(address);
    o.wait_timeout = Duration::from_secs(10);
    o
}

fn connect(address: &str) -> ClientStorage {
    ClientStorage::connect(options(address)).unwrap_or_else(|e| panic!("connect to {address}: {e}"))
}

/// Polls `f` every 20 ms until it is true, for at most `secs` seconds.
fn eventually(secs: u64, what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f() {
        assert!(Instant::now() < deadline, "not within {secs} s: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn value_of(s: &dyn Storage, oid: Oid) -> i64 {
    record_value(&s.load(oid).expect("load").0).expect("record value")
}

// ---------------------------------------------------------------------------
// The conformance suite over ZEO
// ---------------------------------------------------------------------------

/// Against `bbru-zeo`.  Left out, as they cannot hold over ZEO:
/// - `pack_without_gc_keeps_unreachable`, `pack_refuses_dangling_reference`: they pack
///   with `gc = false`; a ZEO server always packs with garbage collection (the `pack`
///   call has no such argument), so the client refuses it.
mod conformance_bbru {
    test_support::storage_conformance_tests!(always_gc: || super::Fixture::new(super::Kind::Bbru));
}

/// Against Python's `runzeo`.  Left out, besides the two `gc = false` checks (see
/// `conformance_bbru`):
/// - `conflict_detected_at_vote` with the default configuration: Python's server stops
///   at the first conflicting store (FileStorage raises `ConflictError`), so the vote
///   reports one conflict, not all; the check runs below against a server in
///   client-conflict-resolution mode, which reports them all.
mod conformance_python {
    test_support::storage_conformance_tests!(
        always_gc_first_conflict_only: || super::Fixture::new(super::Kind::Python)
    );
}

/// Python's server with `client-conflict-resolution true`: every write conflict comes
/// back in the vote result.
mod conformance_python_client_conflict_resolution {
    test_support::storage_conformance_tests!(@each || super::Fixture::python_client_conflict_resolution();
        conflict_detected_at_vote,
        stale_serial_conflicts,
    );
}

// ---------------------------------------------------------------------------
// What only a client has
// ---------------------------------------------------------------------------

/// Another client's commit reaches this client's cache as an invalidation: the next
/// load returns the new data, on the same connection.
fn invalidation_from_another_client(kind: Kind) {
    let f = Fixture::new(kind);
    let a = &f.client;
    let b = f.second_client();
    let [x] = test_support::conformance::fresh_oids(&b);
    let t1 = commit(&b, "v1", &[(x, Tid::ZERO, record(1, &[]))]);
    // Wait for the invalidation itself: the client applies it on its reader thread,
    // and only then answers loads as of t1.
    eventually(10, "the first invalidation arrives", || {
        a.last_transaction() == t1
    });
    assert_eq!(a.load(x).unwrap(), (record(1, &[]), t1));
    let hits = a.cache_stats().hits;
    assert_eq!(a.load(x).unwrap(), (record(1, &[]), t1));
    assert_eq!(
        a.cache_stats().hits,
        hits + 1,
        "the second load is a cache hit"
    );

    let t2 = commit(&b, "v2", &[(x, t1, record(2, &[]))]);
    eventually(10, "the invalidation reaches the first client", || {
        a.last_transaction() == t2
    });
    assert_eq!(a.load(x).unwrap(), (record(2, &[]), t2));
    // The old revision stays in the cache, now ending at t2.
    let hits = a.cache_stats().hits;
    let old = a.load_before(x, t2).unwrap().unwrap();
    assert_eq!(
        (old.data, old.start, old.end),
        (record(1, &[]), t1, Some(t2))
    );
    assert_eq!(a.cache_stats().hits, hits + 1);
    assert_eq!(a.connections_made(), 1, "no reconnection");
}

#[test]
fn invalidation_from_another_client_bbru() {
    invalidation_from_another_client(Kind::Bbru);
}

#[test]
fn invalidation_from_another_client_python() {
    invalidation_from_another_client(Kind::Python);
}

/// The server is killed and started again on the same port and file; meanwhile another
/// client committed through a server on another port.  The client reconnects by
/// itself, verifies its cache (the stale object is not served), and commits again; a
/// transaction begun on the old connection fails.
fn reconnect_after_restart(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Data.fs");
    let address = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(kind, &address, &file, &[]);
    let mut o = options(&address);
    o.wait_timeout = Duration::from_secs(1);
    let a = ClientStorage::connect(o).unwrap();
    let [x, y] = test_support::conformance::fresh_oids(&a);
    let t1 = commit(
        &a,
        "v1",
        &[
            (x, Tid::ZERO, record(1, &[])),
            (y, Tid::ZERO, record(10, &[])),
        ],
    );
    assert_eq!(a.load(x).unwrap(), (record(1, &[]), t1));
    let begun = a
        .tpc_begin(TransactionMeta::new("a", "begun before"))
        .unwrap();
    a.store(&begun, y, t1, record(11, &[])).unwrap();

    server.kill();
    eventually(10, "the client notices the server is gone", || {
        !a.is_connected()
    });
    // Cache hits are served while disconnected; anything else waits, then fails.
    assert_eq!(value_of(&a, x), 1);
    match a.new_oids(1) {
        Err(StorageError::Disconnected(why)) => assert!(why.contains("within"), "{why}"),
        other => panic!("new_oids while disconnected: {other:?}"),
    }

    // Another client changes x through a server on another port.
    let other = format!("127.0.0.1:{}", free_port());
    let mut elsewhere = Server::start(kind, &other, &file, &[]);
    let b = connect(&other);
    let t2 = commit(&b, "v2 elsewhere", &[(x, t1, record(2, &[]))]);
    drop(b);
    elsewhere.kill();

    let _server = Server::start(kind, &address, &file, &[]);
    assert!(a.wait_connected(Duration::from_secs(20)), "no reconnection");
    assert_eq!(a.connections_made(), 2);
    assert_eq!(a.last_transaction(), t2);
    assert_eq!(
        a.load(x).unwrap(),
        (record(2, &[]), t2),
        "stale cache served"
    );
    assert_eq!(value_of(&a, y), 10);

    match a.vote(&begun) {
        Err(StorageError::Disconnected(why)) => assert!(why.contains("lost"), "{why}"),
        other => panic!("vote of a transaction begun before the restart: {other:?}"),
    }
    a.abort(&begun);

    let t3 = commit(&a, "v3", &[(x, t2, record(3, &[]))]);
    assert_eq!(a.load(x).unwrap(), (record(3, &[]), t3));
    let c = connect(&address);
    assert_eq!(c.load(x).unwrap(), (record(3, &[]), t3));
}

#[test]
fn reconnect_after_restart_bbru() {
    reconnect_after_restart(Kind::Bbru);
}

#[test]
fn reconnect_after_restart_python() {
    reconnect_after_restart(Kind::Python);
}

/// A `Data.fs` holding one object (the root), written by our FileStorage.
fn file_with_root(dir: &Path) -> (PathBuf, Tid) {
    let file = dir.join("Data.fs");
    let fs = FileStorage::open(&file).unwrap();
    let t = commit(&fs, "root", &[(Oid::ROOT, Tid::ZERO, record(7, &[]))]);
    fs.close().unwrap();
    (file, t)
}

/// A read-only server (`bbru-zeo -r`, Python's `read-only true`) refuses writable clients; with `read_only_fallback` the client
/// registers read-only on the same connection, reads, and refuses writes itself.
fn read_only_fallback(kind: Kind) {
    let dir = tempfile::tempdir().unwrap();
    let (file, t) = file_with_root(dir.path());
    let address = format!("127.0.0.1:{}", free_port());
    let _server = start_read_only(kind, &address, &file);

    match ClientStorage::connect(options(&address)) {
        Err(StorageError::ReadOnly) => {}
        other => panic!("writable registration at a read-only server: {other:?}"),
    }

    let mut o = options(&address);
    o.read_only_fallback = true;
    let c = ClientStorage::connect(o).unwrap();
    assert!(c.is_read_only());
    assert_eq!(c.last_transaction(), t);
    assert_eq!(c.load(Oid::ROOT).unwrap(), (record(7, &[]), t));
    assert!(matches!(
        c.tpc_begin(TransactionMeta::new("u", "d")),
        Err(StorageError::ReadOnly)
    ));
    assert!(matches!(c.new_oids(1), Err(StorageError::ReadOnly)));

    let mut o = options(&address);
    o.read_only = true;
    let c = ClientStorage::connect(o).unwrap();
    assert!(c.is_read_only());
    assert_eq!(value_of(&c, Oid::ROOT), 7);
}

#[test]
fn read_only_fallback_bbru() {
    read_only_fallback(Kind::Bbru);
}

#[test]
fn read_only_fallback_python() {
    read_only_fallback(Kind::Python);
}

/// With several addresses a writable server is preferred; a client that fell back to a
/// read-only one switches when a writable one appears.
#[test]
fn read_only_fallback_switches_to_a_writable_server() {
    let dir = tempfile::tempdir().unwrap();
    let (file, _) = file_with_root(dir.path());
    let ro_address = format!("127.0.0.1:{}", free_port());
    let _ro = Server::start(Kind::Bbru, &ro_address, &file, &["-r"]);
    let rw_dir = tempfile::tempdir().unwrap();
    let (rw_file, _) = file_with_root(rw_dir.path());
    let rw_address = format!("127.0.0.1:{}", free_port());

    let mut o = options(&ro_address);
    o.addresses.push(rw_address.clone());
    o.read_only_fallback = true;
    let c = ClientStorage::connect(o.clone()).unwrap();
    assert!(c.is_read_only(), "only the read-only server is up");

    let _rw = Server::start(Kind::Bbru, &rw_address, &rw_file, &[]);
    eventually(15, "the client switches to the writable server", || {
        !c.is_read_only()
    });
    assert_eq!(c.connections_made(), 2);
    let [a] = test_support::conformance::fresh_oids(&c);
    commit(&c, "writable now", &[(a, Tid::ZERO, record(1, &[]))]);

    // Both up: the writable one is taken at once.
    let c2 = ClientStorage::connect(o).unwrap();
    assert!(!c2.is_read_only());
    assert_eq!(value_of(&c2, a), 1);
}

/// Write and read conflicts between two clients arrive as `StorageError::Conflict`
/// with the oid and the serials; the losing client can go on committing.
fn conflicts_between_clients(kind: Kind) {
    let f = Fixture::new(kind);
    let a = &f.client;
    let b = f.second_client();
    let [x, y] = test_support::conformance::fresh_oids(a);
    let t1 = commit(
        a,
        "v1",
        &[
            (x, Tid::ZERO, record(1, &[])),
            (y, Tid::ZERO, record(1, &[])),
        ],
    );
    let t2 = commit(a, "a wins", &[(x, t1, record(2, &[]))]);

    let r = try_commit(&b, TransactionMeta::new("b", "stale"), |txn| {
        b.store(txn, x, t1, record(3, &[]))
    });
    match r {
        Err(StorageError::Conflict(c)) => {
            assert_eq!((c.oid, c.committed, c.expected), (x, t2, t1));
            assert!(!c.read_conflict);
        }
        other => panic!("stale store: {other:?}"),
    }

    let r = try_commit(&b, TransactionMeta::new("b", "stale read"), |txn| {
        b.check_current_serial(txn, x, t1)?;
        b.store(txn, y, t1, record(4, &[]))
    });
    match r {
        Err(StorageError::Conflict(c)) => {
            assert_eq!((c.oid, c.committed, c.expected), (x, t2, t1));
            assert!(c.read_conflict);
        }
        other => panic!("stale read: {other:?}"),
    }

    let t3 = commit(&b, "b retries", &[(x, t2, record(5, &[]))]);
    eventually(10, "a hears of b's commit", || a.last_transaction() == t3);
    assert_eq!(a.load(x).unwrap(), (record(5, &[]), t3));
    assert_eq!(value_of(a, y), 1);
}

#[test]
fn conflicts_between_clients_bbru() {
    conflicts_between_clients(Kind::Bbru);
}

#[test]
fn conflicts_between_clients_python() {
    conflicts_between_clients(Kind::Python);
}

/// `restore` copies revisions as they are (new data, or a backpointer) in a transaction
/// with a given tid, and `record_iternext` walks the current records in oid order.
fn restore_and_record_iteration(kind: Kind) {
    let f = Fixture::new(kind);
    let [a, b] = test_support::conformance::fresh_oids(&*f);
    let t1 = commit(
        &*f,
        "v1",
        &[
            (a, Tid::ZERO, record(1, &[])),
            (b, Tid::ZERO, record(2, &[])),
        ],
    );
    let tid = Tid(f.last_transaction().0 + 1000);
    let mut meta = TransactionMeta::new("copier", "restored");
    meta.tid = Some(tid);
    let t = try_commit(&*f, meta, |txn| {
        f.restore(txn, a, Some(record(5, &[])), None)?;
        f.restore(txn, b, None, Some(t1))
    })
    .unwrap();
    assert_eq!(t, tid);
    assert_eq!(f.load(a).unwrap(), (record(5, &[]), tid));
    assert_eq!(f.load(b).unwrap(), (record(2, &[]), tid));
    assert_eq!(f.history(b, 1).unwrap()[0].tid, tid);

    let txn = f.tpc_begin(TransactionMeta::new("u", "no tid")).unwrap();
    assert!(matches!(
        f.restore(&txn, a, Some(record(6, &[])), None),
        Err(StorageError::Transaction(_))
    ));
    f.abort(&txn);

    let mut seen = Vec::new();
    let mut next = Some(Oid(0));
    while let Some(from) = next {
        match f.record_iternext(from).unwrap() {
            Some(r) => {
                seen.push((r.oid, r.tid, record_value(&r.data)));
                next = r.next;
            }
            None => break,
        }
    }
    assert_eq!(seen, vec![(a, tid, Some(5)), (b, tid, Some(2))]);
}

#[test]
fn restore_and_record_iteration_bbru() {
    restore_and_record_iteration(Kind::Bbru);
}

#[test]
fn restore_and_record_iteration_python() {
    restore_and_record_iteration(Kind::Python);
}

/// The client follows a server announcing msgpack (`M5`), and talks over a unix socket.
#[test]
fn msgpack_and_unix_socket_bbru() {
    let f = Fixture::with_server_args(Kind::Bbru, &["--msgpack"]);
    let [a] = test_support::conformance::fresh_oids(&*f);
    let ext = zodb_pickle::encode_like_python(&zodb_pickle::Value::Dict(vec![(
        zodb_pickle::Value::str("k"),
        zodb_pickle::Value::Int(1),
    )]))
    .unwrap();
    let meta = TransactionMeta::new("u", "msgpack").with_extension(ext.clone());
    let t = try_commit(&*f, meta, |txn| f.store(txn, a, Tid::ZERO, record(1, &[]))).unwrap();
    let txns: Vec<_> = f
        .iterator(Some(t), None)
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(txns.len(), 1);
    assert_eq!(txns[0].extension, ext);
    assert_eq!(f.history(a, 5).unwrap()[0].tid, t);

    let dir = tempfile::tempdir().unwrap();
    let socket = dir.path().join("zeo.sock");
    let _server = Server::start(
        Kind::Bbru,
        path_str(&socket),
        &dir.path().join("Data.fs"),
        &[],
    );
    let c = connect(path_str(&socket));
    let [b] = test_support::conformance::fresh_oids(&c);
    let t = commit(&c, "over a unix socket", &[(b, Tid::ZERO, record(9, &[]))]);
    assert_eq!(c.load(b).unwrap(), (record(9, &[]), t));
}

/// An unknown storage name is refused at connect.
#[test]
fn unknown_storage_is_refused() {
    let f = Fixture::new(Kind::Bbru);
    let mut o = options(&f.server.address);
    o.storage = "nope".into();
    match ClientStorage::connect(o) {
        Err(StorageError::Io { source, .. }) => {
            assert!(source.to_string().contains("unknown storage"), "{source}")
        }
        other => panic!("unknown storage: {other:?}"),
    }
}

// ---------------------------------------------------------------------------
// Listeners (`Storage::add_listener`)
// ---------------------------------------------------------------------------

/// What a listener was told.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Heard {
    /// A commit and its oids, sorted.
    Committed(Tid, Vec<Oid>),
    Reset(Tid),
}

/// Records what it is told.
#[derive(Debug, Default)]
struct Recorder {
    log: std::sync::Mutex<Vec<Heard>>,
    /// How long each report takes: a slow listener lets the next invalidations pile up
    /// in the socket while it runs, so a report made anywhere but in stream order on
    /// the reader thread would be overtaken.
    delay: Option<Duration>,
}

impl InvalidationListener for Recorder {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        let mut oids = oids.to_vec();
        oids.sort();
        self.log.lock().unwrap().push(Heard::Committed(tid, oids));
        if let Some(d) = self.delay {
            std::thread::sleep(d);
        }
    }

    fn reset(&self, last: Tid) {
        self.log.lock().unwrap().push(Heard::Reset(last));
    }
}

impl Recorder {
    fn heard(&self) -> Vec<Heard> {
        self.log.lock().unwrap().clone()
    }

    /// Registers this recorder with `s`.
    fn listen_to(self: &Arc<Self>, s: &dyn Storage) {
        let weak: Weak<dyn InvalidationListener> =
            Arc::downgrade(self) as Weak<dyn InvalidationListener>;
        s.add_listener(weak);
    }

    /// Asserts that `tid` was reported with exactly `oids`.
    fn assert_has(&self, tid: Tid, oids: &[Oid], what: &str) {
        let mut oids = oids.to_vec();
        oids.sort();
        let want = Heard::Committed(tid, oids);
        let heard = self.heard();
        assert!(heard.contains(&want), "{what}: {want:?} not in {heard:?}");
    }
}

/// Commits from two clients, interleaved: the listener of the first hears every one,
/// in tid order, with its oids — the other client's through invalidations, its own
/// (stores, undo, deletion) before its `finish` returns.  (Python's server sends no
/// oids for a deletion; see below.)
fn listener_hears_both_clients_in_tid_order(kind: Kind) {
    let f = Fixture::new(kind);
    let a = &f.client;
    let b = f.second_client();
    let heard = Arc::new(Recorder::default());
    heard.listen_to(a);
    let [x, y, z] = test_support::conformance::fresh_oids(&b);
    let mut expected: Vec<Heard> = Vec::new();
    let mine = |tid: Tid, oids: &[Oid], what: &str, expected: &mut Vec<Heard>| {
        heard.assert_has(
            tid,
            oids,
            &format!("{what}, reported before finish returned"),
        );
        let mut oids = oids.to_vec();
        oids.sort();
        expected.push(Heard::Committed(tid, oids));
    };
    let theirs = |tid: Tid, oids: &[Oid], expected: &mut Vec<Heard>| {
        let mut oids = oids.to_vec();
        oids.sort();
        expected.push(Heard::Committed(tid, oids));
    };

    let tb1 = commit(
        &b,
        "b creates",
        &[
            (x, Tid::ZERO, record(1, &[])),
            (y, Tid::ZERO, record(10, &[])),
        ],
    );
    theirs(tb1, &[x, y], &mut expected);
    let ta1 = commit(
        a,
        "a changes",
        &[(x, tb1, record(2, &[])), (z, Tid::ZERO, record(30, &[]))],
    );
    mine(ta1, &[x, z], "a's store", &mut expected);
    let tb2 = commit(&b, "b changes", &[(y, tb1, record(11, &[]))]);
    theirs(tb2, &[y], &mut expected);
    let (undone, ta2) = test_support::conformance::try_undo(a, ta1).expect("a's undo");
    assert_eq!(sorted(undone), sorted(vec![x, z]));
    mine(ta2, &[x, z], "a's undo", &mut expected);
    let tb3 = try_commit(&b, TransactionMeta::new("b", "delete"), |txn| {
        b.delete_object(txn, y, tb2)
    })
    .expect("b's delete");
    // Python's server leaves deletions (and restores) out of the invalidations it
    // sends (`ZEOStorage._delete` does not add to `invalidated`); the client reports
    // what it is told.
    let deleted_by_b: &[Oid] = match kind {
        Kind::Bbru => &[y],
        Kind::Python => &[],
    };
    theirs(tb3, deleted_by_b, &mut expected);
    let ta3 = try_commit(a, TransactionMeta::new("a", "delete"), |txn| {
        a.delete_object(txn, x, ta2)
    })
    .expect("a's delete");
    mine(ta3, &[x], "a's delete", &mut expected);
    let (_, tb4) = test_support::conformance::try_undo(&b, tb3).expect("b's undo");
    theirs(tb4, &[y], &mut expected);

    // `last_transaction` moves when the invalidation reaches the cache, a moment
    // before the listeners are told; a round trip returns only after the reader thread
    // has handled (and reported) everything the server sent before its reply.
    a.sync().expect("a's sync");
    assert_eq!(a.last_transaction(), tb4);
    let heard = heard.heard();
    let tids: Vec<Tid> = expected
        .iter()
        .map(|h| match h {
            Heard::Committed(tid, _) => *tid,
            Heard::Reset(tid) => *tid,
        })
        .collect();
    assert!(tids.windows(2).all(|w| w[0] < w[1]), "{tids:?}");
    assert_eq!(heard, expected);
}

fn sorted(mut oids: Vec<Oid>) -> Vec<Oid> {
    oids.sort();
    oids
}

#[test]
fn listener_hears_both_clients_in_tid_order_bbru() {
    listener_hears_both_clients_in_tid_order(Kind::Bbru);
}

#[test]
fn listener_hears_both_clients_in_tid_order_python() {
    listener_hears_both_clients_in_tid_order(Kind::Python);
}

/// Two clients commit at the same time, 25 transactions each: the first one's listener
/// hears all 50, in strictly increasing tid order, each of its own before its `finish`
/// returned — its own commits cannot overtake, or be overtaken by, the other's.
fn listener_order_under_concurrent_commits(kind: Kind) {
    const COMMITS: i64 = 25;
    let f = Fixture::new(kind);
    let a = &f.client;
    let b = f.second_client();
    let heard = Arc::new(Recorder {
        delay: Some(Duration::from_millis(2)),
        ..Recorder::default()
    });
    heard.listen_to(a);
    let [p, q] = test_support::conformance::fresh_oids(a);
    let run = |s: &dyn Storage, oid: Oid, who: &str, check: Option<&Recorder>| {
        let mut serial = Tid::ZERO;
        let mut committed = Vec::new();
        for i in 0..COMMITS {
            let tid = commit(s, &format!("{who} {i}"), &[(oid, serial, record(i, &[]))]);
            if let Some(r) = check {
                r.assert_has(tid, &[oid], "reported before finish returned");
            }
            committed.push(Heard::Committed(tid, vec![oid]));
            serial = tid;
        }
        committed
    };
    let (mut all, theirs) = std::thread::scope(|scope| {
        let theirs = scope.spawn(|| run(&b, q, "b", None));
        let mine = run(a, p, "a", Some(&heard));
        (mine, theirs.join().expect("b's committer"))
    });
    all.extend(theirs);
    all.sort_by_key(|h| match h {
        Heard::Committed(tid, _) | Heard::Reset(tid) => *tid,
    });
    let last = match all.last() {
        Some(Heard::Committed(tid, _)) => *tid,
        other => panic!("{other:?}"),
    };
    // As above: a round trip, so every report of what came before it is made.
    a.sync().expect("a's sync");
    assert_eq!(a.last_transaction(), last);
    let got = heard.heard();
    let tids: Vec<Tid> = got
        .iter()
        .map(|h| match h {
            Heard::Committed(tid, _) => *tid,
            Heard::Reset(tid) => panic!("reset({tid})"),
        })
        .collect();
    assert!(
        tids.windows(2).all(|w| w[0] < w[1]),
        "strictly increasing: {tids:?}"
    );
    assert_eq!(got, all);
}

#[test]
fn listener_order_under_concurrent_commits_bbru() {
    listener_order_under_concurrent_commits(Kind::Bbru);
}

#[test]
fn listener_order_under_concurrent_commits_python() {
    listener_order_under_concurrent_commits(Kind::Python);
}

/// A reconnection after commits the client missed: verification reports them as one
/// transaction (the server's last tid, every oid changed), before anything newer.
#[test]
fn listener_hears_what_changed_while_disconnected() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Data.fs");
    let address = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(Kind::Bbru, &address, &file, &[]);
    let a = connect(&address);
    let heard = Arc::new(Recorder::default());
    heard.listen_to(&a);
    let [x, y, z] = test_support::conformance::fresh_oids(&a);
    let t1 = commit(
        &a,
        "v1",
        &[
            (x, Tid::ZERO, record(1, &[])),
            (y, Tid::ZERO, record(10, &[])),
        ],
    );
    server.kill();
    eventually(10, "the client notices the server is gone", || {
        !a.is_connected()
    });

    // Two commits through another server on the same file.
    let other = format!("127.0.0.1:{}", free_port());
    let mut elsewhere = Server::start(Kind::Bbru, &other, &file, &[]);
    let b = connect(&other);
    let t2 = commit(&b, "x elsewhere", &[(x, t1, record(2, &[]))]);
    let t3 = commit(&b, "z elsewhere", &[(z, Tid::ZERO, record(30, &[]))]);
    drop(b);
    elsewhere.kill();

    let _server = Server::start(Kind::Bbru, &address, &file, &[]);
    assert!(a.wait_connected(Duration::from_secs(20)), "no reconnection");
    let t4 = commit(&a, "after", &[(y, t1, record(11, &[]))]);
    assert_eq!(
        heard.heard(),
        vec![
            Heard::Committed(t1, vec![x, y]),
            Heard::Committed(t3, sorted(vec![x, z])),
            Heard::Committed(t4, vec![y]),
        ]
    );
    assert_eq!(a.load(x).unwrap(), (record(2, &[]), t2));
}

/// A client without a cache reconnecting to a server that is behind what its listeners
/// were told (another database): nothing can say what changed, so the listeners are
/// reset to the server's last transaction.
#[test]
fn listener_is_reset_when_changes_cannot_be_listed() {
    let dir = tempfile::tempdir().unwrap();
    let (file, t0) = file_with_root(dir.path());
    let older = dir.path().join("Older.fs");
    std::fs::copy(&file, &older).unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(Kind::Bbru, &address, &file, &[]);
    let mut o = options(&address);
    o.cache_size = 0;
    let a = ClientStorage::connect(o).unwrap();
    let heard = Arc::new(Recorder::default());
    heard.listen_to(&a);
    let t1 = commit(&a, "v1", &[(Oid::ROOT, t0, record(8, &[]))]);
    server.kill();
    eventually(10, "the client notices the server is gone", || {
        !a.is_connected()
    });

    let _server = Server::start(Kind::Bbru, &address, &older, &[]);
    assert!(a.wait_connected(Duration::from_secs(20)), "no reconnection");
    assert_eq!(
        heard.heard(),
        vec![Heard::Committed(t1, vec![Oid::ROOT]), Heard::Reset(t0)]
    );
    assert_eq!(value_of(&a, Oid::ROOT), 7);
}

/// While its server is away, a client says so at once: the health check fails without
/// waiting, calls fail with `Disconnected` after the short `disconnected_wait` (not the
/// 30 s `wait_timeout`), and all is well again once the server is back on the same
/// address, without anything done to the client.  A server that is there but does
/// not answer (stopped with SIGSTOP) fails the health check within its deadline.
#[test]
fn a_client_without_its_server_fails_fast_and_recovers() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Data.fs");
    let address = format!("127.0.0.1:{}", free_port());
    let mut server = Server::start(Kind::Bbru, &address, &file, &[]);
    let mut o = options(&address);
    o.wait_timeout = Duration::from_secs(30);
    o.disconnected_wait = Some(Duration::from_millis(200));
    let a = ClientStorage::connect(o).unwrap();
    let within = Duration::from_millis(500);
    a.check_health(within).unwrap();
    let here = a.location();
    assert_eq!(
        (here.kind, here.location.as_str()),
        ("zeo", address.as_str())
    );

    // There but silent: the ping's deadline.
    server.signal("STOP");
    let asked = Instant::now();
    match a.check_health(within) {
        Err(StorageError::Disconnected(why)) => assert!(why.contains("no reply"), "{why}"),
        other => panic!("health of a stopped server: {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );
    server.signal("CONT");
    a.check_health(within).unwrap();

    // Gone.
    server.kill();
    eventually(10, "the client notices the server is gone", || {
        !a.is_connected()
    });
    match a.check_health(within) {
        Err(StorageError::Disconnected(why)) => assert!(why.contains(&address), "{why}"),
        other => panic!("health without a server: {other:?}"),
    }
    let asked = Instant::now();
    match a.sync() {
        Err(StorageError::Disconnected(why)) => assert!(why.contains("within 200ms"), "{why}"),
        other => panic!("sync without a server: {other:?}"),
    }
    assert!(
        asked.elapsed() < Duration::from_secs(10),
        "{:?}",
        asked.elapsed()
    );

    // Back on the same address: the client reconnects by itself.
    let _server = Server::start(Kind::Bbru, &address, &file, &[]);
    eventually(20, "the client reconnects", || {
        a.check_health(within).is_ok()
    });
    a.sync().unwrap();
    let [x] = test_support::conformance::fresh_oids(&a);
    commit(&a, "after", &[(x, Tid::ZERO, record(1, &[]))]);
}

/// A vote that waits past the server's lock timeout (behind a client that voted and
/// stalls, with the transaction timeout off) fails with `LockTimeout`, which callers
/// may retry, not with a generic transaction error.
#[test]
fn a_vote_past_the_lock_timeout_is_a_lock_timeout() {
    let f = Fixture::with_server_args(Kind::Bbru, &["-t", "0", "--lock-timeout", "0.5"]);
    let [x] = test_support::conformance::fresh_oids(&*f);
    let b = f.second_client();
    let stalled = f
        .tpc_begin(TransactionMeta::new("a", "stalls after voting"))
        .unwrap();
    f.store(&stalled, x, Tid::ZERO, record(1, &[])).unwrap();
    f.vote(&stalled).unwrap();
    let waiting = try_commit(&b, TransactionMeta::new("b", "waits"), |t| {
        b.store(t, x, Tid::ZERO, record(2, &[]))
    });
    match waiting {
        Err(StorageError::LockTimeout { waited }) => {
            assert_eq!(waited, Duration::from_millis(500))
        }
        other => panic!("vote behind a stalled one: {other:?}"),
    }
    f.abort(&stalled);
    commit(&b, "after the abort", &[(x, Tid::ZERO, record(2, &[]))]);
}

/// A client's user and description cannot forge a line or a field of the server's log:
/// the commit line escapes them.
#[test]
fn a_commit_description_cannot_forge_a_log_line() {
    let f = Fixture::new(Kind::Bbru);
    let oid = f.client.new_oids(1).unwrap()[0];
    let forged = "edit\n2026-12-05T09:03:19.412Z  INFO zeo::server::entry: commit user=admin";
    let meta = TransactionMeta::new("mallory\tx", forged);
    let txn = f.client.tpc_begin(meta).unwrap();
    f.client
        .store(&txn, oid, Tid::ZERO, record(1, &[]))
        .unwrap();
    f.client.vote(&txn).unwrap();
    f.client.finish(&txn).unwrap();
    eventually(10, "the commit is logged", || {
        f.server.log_text().contains(" commit ")
    });
    let log = f.server.log_text();
    let lines: Vec<&str> = log.lines().filter(|l| l.contains("commit")).collect();
    assert_eq!(lines.len(), 1, "{log}");
    assert!(
        lines[0].contains(r"user=mallory\tx description=edit\n2026-12-05"),
        "{log}"
    );
}

/// A server that takes the connection, says its handshake and then answers nothing
/// (hung after accepting): `connect` gives up after `wait_timeout` with the reason, the
/// registration's wait bounded, instead of waiting for the answer without end.
#[test]
fn a_server_that_greets_and_never_answers_fails_the_connect_in_time() {
    use std::io::Write;
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let greeter = std::thread::spawn(move || {
        let mut held = Vec::new();
        listener.set_nonblocking(true).unwrap();
        let until = Instant::now() + Duration::from_secs(30);
        while Instant::now() < until {
            match listener.accept() {
                Ok((mut s, _)) => {
                    let mut greeting = Vec::new();
                    zeo::wire::write_frame(&mut greeting, b"Z5").unwrap();
                    let _ = s.write_all(&greeting);
                    held.push(s); // Read nothing, answer nothing.
                }
                Err(_) => std::thread::sleep(Duration::from_millis(20)),
            }
        }
    });
    let mut o = ClientOptions::new(address);
    o.wait_timeout = Duration::from_secs(2);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let asked = Instant::now();
        let result = ClientStorage::connect(o).map(drop);
        let _ = tx.send((result, asked.elapsed()));
    });
    let (result, took) = rx
        .recv_timeout(Duration::from_secs(20))
        .expect("connect still waiting after 20 s");
    let err = result.expect_err("connected to a server that answers nothing");
    assert!(err.to_string().contains("no reply to register"), "{err}");
    assert!(took < Duration::from_secs(10), "gave up after {took:?}");
    drop(greeter);
}
