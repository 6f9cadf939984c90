//! The ZEO server under conditions a client cannot arrange politely: bad
//! bytes, oversized frames, `ruok`, hundreds of connections, SIGTERM and
//! `kill -9` in the middle of commits.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use zeo::wire::{self, Encoding, Message, Value};

/// A `bbru-zeo` child process on a free loopback port; killed on drop.
pub struct ServerProcess {
    pub child: Child,
    pub port: u16,
    pub log: PathBuf,
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The port in a `bbru-zeo` log's `serving address=127.0.0.1:PORT` line, once written.
pub fn serving_port(log: &str) -> Option<u16> {
    let address = test_support::process::serving_address(log)?;
    address.strip_prefix("127.0.0.1:")?.parse().ok()
}

impl ServerProcess {
    /// A server on a port it chose itself (port 0, read back from its log): no other
    /// process can hold the port, as could happen between probing a free port and the
    /// server binding it.
    pub fn start(data_fs: &Path, extra: &[&str]) -> ServerProcess {
        Self::start_on(0, data_fs, extra)
    }

    pub fn start_on(port: u16, data_fs: &Path, extra: &[&str]) -> ServerProcess {
        static STARTED: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = STARTED.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let log = data_fs.with_extension(format!("{port}-{n}.log"));
        let mut args = vec!["-f", data_fs.to_str().unwrap()];
        args.extend_from_slice(extra);
        Self::start_with(port, log, &args)
    }

    /// `bbru-zeo -a 127.0.0.1:PORT ARGS...`, its standard error in `log`; ready when its
    /// log says it serves that port (with port 0: the port it names). A connection alone
    /// would not prove it: another process may hold the port, or a connection to a port
    /// nobody listens on can meet itself (a loopback self-connect).
    pub fn start_with(port: u16, log: PathBuf, args: &[&str]) -> ServerProcess {
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_bbru-zeo"))
            .env("BBRU_LOG", "info")
            .args(["-a", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .unwrap();
        let mut server = ServerProcess { child, port, log };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            match serving_port(&server.log_text()) {
                Some(bound) if port == 0 || bound == port => {
                    server.port = bound;
                    return server;
                }
                Some(bound) => panic!("bbru-zeo asked for port {port} serves {bound}"),
                None => {}
            }
            if let Ok(Some(status)) = server.child.try_wait() {
                panic!("bbru-zeo exited ({status}): {}", server.log_text());
            }
            assert!(
                Instant::now() < deadline,
                "bbru-zeo did not listen: {}",
                server.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// SIGTERM, then wait (bounded) for a clean exit.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "no exit after SIGTERM: {}",
                self.log_text()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for ServerProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A client speaking raw frames.
pub struct Raw {
    stream: TcpStream,
    buf: Vec<u8>,
}

impl Raw {
    pub fn connect(port: u16) -> Raw {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        Raw {
            stream,
            buf: Vec::new(),
        }
    }

    /// Reads one frame; `None` when the server closed the connection.
    pub fn frame(&mut self) -> Option<Vec<u8>> {
        loop {
            if let Some((range, used)) = wire::parse_frame(&self.buf, usize::MAX).unwrap() {
                let payload = self.buf[range].to_vec();
                self.buf.drain(..used);
                return Some(payload);
            }
            let mut chunk = [0u8; 65536];
            match self.stream.read(&mut chunk) {
                Ok(0) | Err(_) => return None,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
            }
        }
    }

    pub fn send_frame(&mut self, payload: &[u8]) {
        let mut out = Vec::new();
        wire::write_frame(&mut out, payload).unwrap();
        let _ = self.stream.write_all(&out);
    }

    pub fn send(&mut self, msg: &Message) {
        self.send_frame(&wire::encode(Encoding::Pickle, msg).unwrap());
    }

    /// Handshake and register on storage "1"; returns the last tid bytes.
    pub fn register(port: u16) -> Raw {
        let mut c = Raw::connect(port);
        assert_eq!(c.frame().unwrap(), b"Z5");
        c.send_frame(b"Z5");
        c.send(&Message::call(
            1,
            "register",
            vec![Value::str("1"), Value::Bool(false)],
        ));
        let reply = c.message().unwrap();
        assert!(!reply.is_error(), "{reply:?}");
        c
    }

    pub fn message(&mut self) -> Option<Message> {
        let f = self.frame()?;
        Some(wire::decode(Encoding::Pickle, &f).unwrap())
    }

    /// Reads until the reply to `msgid`, skipping callbacks.
    pub fn reply_to(&mut self, msgid: i64) -> Option<Message> {
        loop {
            let m = self.message()?;
            if m.is_reply() && m.msgid == Value::Int(msgid) {
                return Some(m);
            }
        }
    }

    pub fn closed_by_server(&mut self) -> bool {
        self.frame().is_none()
    }
}

#[test]
fn bad_bytes_close_only_that_connection() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("Data.fs"),
        &["--frame-size-max", "1000000"],
    );
    let mut good = Raw::register(server.port);

    // Garbage after a correct handshake.
    let mut bad = Raw::connect(server.port);
    bad.frame();
    bad.send_frame(b"Z5");
    bad.send_frame(b"\x80\x03this is not a pickle");
    assert!(bad.closed_by_server());

    // A bad handshake.
    let mut bad = Raw::connect(server.port);
    bad.frame();
    bad.send_frame(b"Z4");
    assert!(bad.closed_by_server());

    // A frame announcing more than the limit is refused before its bytes come.
    let mut bad = Raw::connect(server.port);
    bad.frame();
    bad.send_frame(b"Z5");
    let _ = bad.stream.write_all(&u32::MAX.to_be_bytes());
    assert!(bad.closed_by_server());

    // A call before register, a forbidden global, an unknown method.
    for payload in [
        wire::encode(Encoding::Pickle, &Message::call(1, "loadBefore", vec![])).unwrap(),
        b"\x80\x03(K\x01\x89X\x08\x00\x00\x00registercos\nsystem\n\x85t.".to_vec(),
    ] {
        let mut bad = Raw::connect(server.port);
        bad.frame();
        bad.send_frame(b"Z5");
        bad.send_frame(&payload);
        assert!(bad.closed_by_server());
    }
    let mut bad = Raw::register(server.port);
    bad.send(&Message::call(2, "os.system", vec![Value::str("true")]));
    assert!(bad.closed_by_server());

    // Malformed arguments of known methods: a one-way store without data, a load with
    // an oid of the wrong size.
    for msg in [
        Message::async_call(
            "storea",
            vec![
                Value::Bytes(vec![0; 8]),
                Value::None,
                Value::Int(7),
                Value::Int(1),
            ],
        ),
        Message::call(
            2,
            "loadBefore",
            vec![Value::Bytes(vec![0; 3]), Value::Bytes(vec![0xff; 8])],
        ),
    ] {
        let mut bad = Raw::register(server.port);
        bad.send(&msg);
        assert!(bad.closed_by_server());
    }

    // Random bytes from several clients at once.
    let mut rng = 0x1234_5678u64;
    for _ in 0..50 {
        let mut bad = Raw::connect(server.port);
        bad.frame();
        let mut junk = vec![0u8; 64];
        for b in junk.iter_mut() {
            rng = rng
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            *b = (rng >> 33) as u8;
        }
        let _ = bad.stream.write_all(&junk);
    }

    // The well-behaved client is still served.
    good.send(&Message::call(2, "lastTransaction", vec![]));
    let reply = good.reply_to(2).unwrap();
    assert_eq!(reply.args, Value::Bytes(vec![0; 8]));
    let log = server.log_text();
    assert!(log.contains("bad handshake"), "{log}");
    // Each malformed call is named with what it lacks.
    assert!(log.contains("storea needs data"), "{log}");
    assert!(log.contains("loadBefore needs an oid and a tid"), "{log}");
    assert!(
        log.contains("unreadable message") || log.contains("bad frame"),
        "{log}"
    );
}

#[test]
fn ruok_reports_status_as_json() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut c = Raw::connect(server.port);
    assert_eq!(c.frame().unwrap(), b"Z5");
    c.send_frame(b"ruok");
    let status: serde_json::Value = serde_json::from_slice(&c.frame().unwrap()).unwrap();
    assert!(status["1"]["connections"].is_number(), "{status}");
    assert_eq!(status["1"]["last-transaction"], "0000000000000000");
}

#[test]
fn serves_hundreds_of_connections_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut clients: Vec<Raw> = (0..250).map(|_| Raw::register(server.port)).collect();
    for (i, c) in clients.iter_mut().enumerate() {
        c.send(&Message::call(2, "new_oids", vec![Value::Int(1)]));
        let reply = c.reply_to(2).unwrap_or_else(|| panic!("client {i} lost"));
        assert!(!reply.is_error());
    }
    let mut c = Raw::connect(server.port);
    c.frame();
    c.send_frame(b"ruok");
    let status: serde_json::Value = serde_json::from_slice(&c.frame().unwrap()).unwrap();
    assert_eq!(status["1"]["connections"], 250);
}

#[test]
fn sigterm_stops_cleanly_and_the_file_checks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let mut server = ServerProcess::start(&path, &[]);
    let mut c = Raw::register(server.port);
    // One commit through the raw protocol.
    let txnid = Value::Int(77);
    let record = test_support::conformance::record(1, &[]);
    c.send(&Message::async_call(
        "tpc_begin",
        vec![
            txnid.clone(),
            Value::Bytes(b"u".to_vec()),
            Value::Bytes(b"d".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    ));
    c.send(&Message::async_call(
        "storea",
        vec![
            Value::Bytes(vec![0; 8]),
            Value::Bytes(vec![0; 8]),
            Value::Bytes(record),
            txnid.clone(),
        ],
    ));
    c.send(&Message::call(2, "vote", vec![txnid.clone()]));
    assert!(!c.reply_to(2).unwrap().is_error());
    c.send(&Message::call(3, "tpc_finish", vec![txnid]));
    assert!(!c.reply_to(3).unwrap().is_error());
    let status = server.terminate();
    assert!(status.success(), "{status}: {}", server.log_text());
    assert!(server.log_text().contains("stopped"));
    assert!(
        crate::bbru_zeo(&["check", path.to_str().unwrap()])
            .status
            .success()
    );
    // The index was saved on close: the next open does not scan.
    assert!(dir.path().join("Data.fs.index").exists());
}

#[test]
fn kill_9_during_commits_loses_no_acknowledged_commit() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let port = free_port();
    let mut server = ServerProcess::start_on(port, &path, &[]);
    let python = test_support::python::python();
    let script = test_support::python::script("zeo_commit_loop.py");
    let addr = server.address();
    let logs: Vec<PathBuf> = (0..4)
        .map(|i| dir.path().join(format!("client{i}.log")))
        .collect();
    let init = Command::new(&python)
        .arg(&script)
        .args(["init", &addr, "client0", "client1", "client2", "client3"])
        .output()
        .unwrap();
    assert!(
        init.status.success(),
        "{}",
        String::from_utf8_lossy(&init.stderr)
    );
    let mut clients: Vec<Child> = logs
        .iter()
        .enumerate()
        .map(|(i, log)| {
            Command::new(&python)
                .arg(&script)
                .args([
                    "commit",
                    &addr,
                    &format!("client{i}"),
                    log.to_str().unwrap(),
                ])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // Let every client get some commits acknowledged.
    let deadline = Instant::now() + Duration::from_secs(30);
    while logs
        .iter()
        .any(|l| std::fs::read_to_string(l).map_or(0, |t| t.lines().count()) < 20)
    {
        assert!(
            Instant::now() < deadline,
            "clients did not commit: {}",
            server.log_text()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server.child.kill().unwrap(); // SIGKILL, in the middle of commits
    server.child.wait().unwrap();
    for c in &mut clients {
        let _ = c.kill();
        let _ = c.wait();
    }
    let acked: usize = logs
        .iter()
        .map(|l| std::fs::read_to_string(l).unwrap().lines().count())
        .sum();
    assert!(acked >= 80);

    let mut server = ServerProcess::start_on(port, &path, &[]);
    let mut args = vec!["verify".to_string(), addr.clone()];
    args.extend(logs.iter().map(|l| l.to_str().unwrap().to_string()));
    let out = Command::new(&python)
        .arg(&script)
        .args(&args)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.trim() == "ok",
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(server.terminate().success());
    let check = crate::bbru_zeo(&["check", path.to_str().unwrap()]);
    assert!(
        check.status.success(),
        "{}",
        String::from_utf8_lossy(&check.stderr)
    );
    let fstest = test_support::python::run_module("ZODB.scripts.fstest", &[path.as_os_str()]);
    assert!(
        fstest.status.success(),
        "{}",
        String::from_utf8_lossy(&fstest.stdout)
    );
}

#[test]
fn a_deeply_nested_message_does_not_bring_the_server_down() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut good = Raw::register(server.port);
    for depth in [100usize, 511, 600, 5000] {
        let mut bad = Raw::register(server.port);
        // ((((...)))) as nested 1-tuples inside an argument tuple.
        let mut payload = b"\x80\x03(K\x02\x89X\x0e\x00\x00\x00lastTransaction)".to_vec();
        payload.truncate(payload.len() - 1);
        payload.push(b')');
        payload.extend(std::iter::repeat_n(0x85u8, depth));
        payload.extend_from_slice(b"\x85t.");
        bad.send_frame(&payload);
        // Either answered or closed; the server itself lives on.
        let _ = bad.frame();
    }
    good.send(&Message::call(2, "lastTransaction", vec![]));
    assert!(good.reply_to(2).is_some(), "{}", server.log_text());
}

/// Begins a transaction `txnid` storing `oid` (new) and votes it.
fn begin_store_vote(c: &mut Raw, txnid: i64, oid: u64, msgid: i64) {
    let t = Value::Int(txnid);
    c.send(&Message::async_call(
        "tpc_begin",
        vec![
            t.clone(),
            Value::Bytes(b"u".to_vec()),
            Value::Bytes(b"d".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    ));
    let record = test_support::conformance::record(oid as i64, &[]);
    c.send(&Message::async_call(
        "storea",
        vec![
            Value::Bytes(oid.to_be_bytes().to_vec()),
            Value::Bytes(vec![0; 8]),
            Value::Bytes(record),
            t.clone(),
        ],
    ));
    c.send(&Message::call(msgid, "vote", vec![t]));
}

/// Waits (bounded) for the reply to `msgid`; `None` if none came in time.
fn reply_within(c: &mut Raw, msgid: i64, wait: Duration) -> Option<Message> {
    c.stream.set_read_timeout(Some(wait)).unwrap();
    let r = c.reply_to(msgid);
    c.stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    r
}

#[test]
fn votes_on_different_objects_do_not_wait_but_on_one_object_they_queue() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut a = Raw::register(server.port);
    let mut b = Raw::register(server.port);
    let mut c = Raw::register(server.port);

    // a and b touch different objects: both votes are answered at once.
    begin_store_vote(&mut a, 1, 10, 2);
    assert!(!a.reply_to(2).unwrap().is_error());
    begin_store_vote(&mut b, 2, 20, 2);
    assert!(
        !reply_within(&mut b, 2, Duration::from_secs(5))
            .expect("b's vote answered")
            .is_error()
    );

    // c touches a's object: its vote is deferred until a finishes.
    begin_store_vote(&mut c, 3, 10, 2);
    assert!(
        reply_within(&mut c, 2, Duration::from_millis(300)).is_none(),
        "c voted while a held object 10"
    );
    // The waiting vote holds no thread others need: b is answered meanwhile.
    b.send(&Message::call(5, "lastTransaction", vec![]));
    assert!(
        reply_within(&mut b, 5, Duration::from_secs(2)).is_some(),
        "the server stopped answering while c's vote waited"
    );
    a.send(&Message::call(3, "tpc_finish", vec![Value::Int(1)]));
    assert!(!a.reply_to(3).unwrap().is_error());
    // Now c's vote comes back: a conflict, since a created object 10 first.
    let vote = c.reply_to(2).expect("c's vote answered after a finished");
    assert!(
        matches!(&vote.args, Value::List(items) if !items.is_empty()),
        "{vote:?}"
    );
    b.send(&Message::call(3, "tpc_finish", vec![Value::Int(2)]));
    assert!(!b.reply_to(3).unwrap().is_error());
}

/// A client that votes and then stalls (never `tpc_finish`, never `tpc_abort`) holds
/// its objects only until the transaction timeout: then its transaction is aborted,
/// its connection closed, and a vote queued behind it goes through.
#[test]
fn a_stalled_voter_is_aborted_at_the_transaction_timeout_and_the_waiting_vote_goes_through() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["-t", "1"]);
    let mut stalled = Raw::register(server.port);
    let mut waiting = Raw::register(server.port);

    begin_store_vote(&mut stalled, 1, 10, 2);
    assert!(!stalled.reply_to(2).unwrap().is_error());
    begin_store_vote(&mut waiting, 2, 10, 2);
    assert!(
        reply_within(&mut waiting, 2, Duration::from_millis(300)).is_none(),
        "voted while the stalled client held object 10"
    );
    // The stalled transaction is aborted: object 10 was never created, so the waiting
    // store of a new object 10 votes without a conflict.
    let vote = reply_within(&mut waiting, 2, Duration::from_secs(20))
        .expect("the waiting vote is answered once the stalled one is aborted");
    assert_eq!(vote.args, Value::List(vec![]), "{vote:?}");
    assert!(
        stalled.closed_by_server(),
        "the stalled client is disconnected"
    );
    waiting.send(&Message::call(3, "tpc_finish", vec![Value::Int(2)]));
    assert!(!waiting.reply_to(3).unwrap().is_error());
    let log = server.log_text();
    assert!(log.contains("transaction timeout"), "{log}");
}

/// The timeout is the voted transaction's: one finished, or aborted, leaves nothing
/// behind to close the connection later, and the next vote gets a timeout of its own.
#[test]
fn a_finished_or_aborted_transaction_leaves_no_timeout_behind() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["-t", "1"]);
    let mut c = Raw::register(server.port);
    begin_store_vote(&mut c, 1, 10, 2);
    assert!(!c.reply_to(2).unwrap().is_error());
    c.send(&Message::call(3, "tpc_finish", vec![Value::Int(1)]));
    assert!(!c.reply_to(3).unwrap().is_error());
    begin_store_vote(&mut c, 2, 11, 4);
    assert!(!c.reply_to(4).unwrap().is_error());
    c.send(&Message::call(7, "tpc_abort", vec![Value::Int(2)]));
    assert!(!c.reply_to(7).unwrap().is_error());
    std::thread::sleep(Duration::from_millis(1500));
    c.send(&Message::call(5, "lastTransaction", vec![]));
    assert!(
        reply_within(&mut c, 5, Duration::from_secs(5)).is_some(),
        "closed after its transactions ended: {}",
        server.log_text()
    );
    assert!(!server.log_text().contains("transaction timeout"));
    // A vote left unfinished is still timed out.
    begin_store_vote(&mut c, 3, 12, 6);
    assert!(!c.reply_to(6).unwrap().is_error());
    let start = Instant::now();
    assert!(
        c.closed_by_server(),
        "the voted transaction was not timed out"
    );
    assert!(start.elapsed() < Duration::from_secs(10));
    assert!(server.log_text().contains("transaction timeout"));
}

/// With the transaction timeout off (`-t 0`), a vote behind a stalled client fails
/// after the lock timeout with the lock-timeout text our client recognises.
#[test]
fn a_vote_waiting_past_the_lock_timeout_fails_with_a_lock_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(
        &dir.path().join("Data.fs"),
        &["-t", "0", "--lock-timeout", "0.5"],
    );
    let mut stalled = Raw::register(server.port);
    let mut waiting = Raw::register(server.port);
    begin_store_vote(&mut stalled, 1, 10, 2);
    assert!(!stalled.reply_to(2).unwrap().is_error());
    begin_store_vote(&mut waiting, 2, 10, 2);
    let vote = reply_within(&mut waiting, 2, Duration::from_secs(20)).expect("vote answered");
    assert!(vote.is_error(), "{vote:?}");
    let (class, payload) = vote.error_parts().unwrap();
    assert_eq!(class, "ZODB.POSException.StorageTransactionError");
    let text = format!("{payload:?}");
    assert!(text.contains(zodb_storage::LOCK_TIMEOUT_TEXT), "{text}");
    // Without a transaction timeout the stalled client keeps its connection.
    stalled.send(&Message::call(3, "tpc_finish", vec![Value::Int(1)]));
    assert!(!stalled.reply_to(3).unwrap().is_error());
}

/// A client that stops reading does not keep a stopping server alive: its connection
/// gets [`zeo::limits::CLOSE_FLUSH_MILLIS`] to take what was queued, then is dropped.
#[test]
fn a_client_that_reads_nothing_does_not_hold_up_a_stop() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let mut c = Raw::register(server.port);
    // One object of 512 KiB.
    let t = Value::Int(1);
    c.send(&Message::async_call(
        "tpc_begin",
        vec![
            t.clone(),
            Value::Bytes(b"u".to_vec()),
            Value::Bytes(b"d".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    ));
    c.send(&Message::async_call(
        "storea",
        vec![
            Value::Bytes(vec![0; 8]),
            Value::Bytes(vec![0; 8]),
            Value::Bytes(vec![b'x'; 512 << 10]),
            t.clone(),
        ],
    ));
    c.send(&Message::call(2, "vote", vec![t.clone()]));
    assert!(!c.reply_to(2).unwrap().is_error());
    c.send(&Message::call(3, "tpc_finish", vec![t]));
    assert!(!c.reply_to(3).unwrap().is_error());
    // 32 MiB of replies asked for and never read: far more than the socket buffers
    // hold, so the server's writer is stuck in a write.
    for i in 0..64 {
        c.send(&Message::call(
            10 + i,
            "loadBefore",
            vec![Value::Bytes(vec![0; 8]), Value::Bytes(vec![0xff; 8])],
        ));
    }
    // Wait until the server has answered them all (`ruok` counts loads).
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let mut r = Raw::connect(server.port);
        assert_eq!(r.frame().unwrap(), b"Z5");
        r.send_frame(b"ruok");
        let status: serde_json::Value = serde_json::from_slice(&r.frame().unwrap()).unwrap();
        if status["1"]["loads"].as_i64() == Some(64) {
            break;
        }
        assert!(Instant::now() < deadline, "loads not answered: {status}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let stopping = Instant::now();
    let status = server.terminate();
    assert!(status.success(), "{status}: {}", server.log_text());
    let log = server.log_text();
    assert!(log.contains("read nothing"), "{log}");
    assert!(
        stopping.elapsed() < Duration::from_secs(15),
        "took {:?}",
        stopping.elapsed()
    );
    drop(c);
}

/// Sockets that connect and never speak do not lock real clients out: past
/// `UNREGISTERED_CONNECTIONS_MAX` a new connection closes the oldest unregistered one,
/// and each is closed anyway at the register timeout; a client that registers keeps its
/// connection.
#[test]
fn silent_sockets_never_lock_clients_out_and_are_closed_at_the_register_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--register-timeout", "2"]);
    let mut silent: Vec<Raw> = (0..200).map(|_| Raw::connect(server.port)).collect();
    // A client arriving behind them gets in and works.
    let mut client = Raw::register(server.port);
    client.send(&Message::call(2, "new_oids", vec![Value::Int(1)]));
    assert!(!client.reply_to(2).expect("the client's reply").is_error());
    // Every silent socket is closed: the oldest at once, the newest at the timeout
    // (the handshake announcement arrives first).
    let start = std::time::Instant::now();
    for (i, s) in silent.iter_mut().enumerate() {
        assert_eq!(
            s.frame().as_deref(),
            Some(&b"Z5"[..]),
            "socket {i}: the announcement"
        );
        assert!(s.closed_by_server(), "socket {i} still open");
    }
    assert!(
        start.elapsed() < Duration::from_secs(9),
        "closed late: {:?}",
        start.elapsed()
    );
    // The registered client outlives the timeout.
    std::thread::sleep(Duration::from_millis(2500));
    client.send(&Message::call(3, "new_oids", vec![Value::Int(1)]));
    assert!(
        !client
            .reply_to(3)
            .expect("the client's reply after the timeout")
            .is_error()
    );
    let log = server.log_text();
    assert!(log.contains("newer connections took its place"), "{log}");
    assert!(log.contains("within the register timeout"), "{log}");
}
