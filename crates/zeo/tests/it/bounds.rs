//! What hostile or careless clients can make the server hold, measured on the real
//! process: its peak resident memory (`VmHWM` in `/proc/PID/status`) and its open
//! temporary files while clients store without voting or ask for large records without
//! reading, and a real Python client getting in while a thousand sockets say nothing.

use std::path::Path;
use std::time::{Duration, Instant};

use zeo::wire::{Message, Value};

use test_support::process::peak_rss;

use crate::server::{Raw, ServerProcess};

const MIB: u64 = 1 << 20;

/// Files in `dir` the process holds open after they were unlinked: the temporary files
/// transactions spill to.
fn unlinked_files_in(pid: u32, dir: &Path) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .unwrap()
        .filter_map(|e| std::fs::read_link(e.ok()?.path()).ok())
        .filter(|target| {
            let t = target.to_string_lossy();
            t.starts_with(&*dir.to_string_lossy()) && t.ends_with("(deleted)")
        })
        .count()
}

/// The server's `ruok` status of storage "1".
fn status(port: u16) -> serde_json::Value {
    let mut r = Raw::connect(port);
    assert_eq!(r.frame().unwrap(), b"Z5");
    r.send_frame(b"ruok");
    let status: serde_json::Value = serde_json::from_slice(&r.frame().unwrap()).unwrap();
    status["1"].clone()
}

/// Waits (bounded) until the status counter `key` reaches `n`.
fn wait_for_count(port: u16, key: &str, n: i64) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(port);
        if s[key].as_i64() >= Some(n) {
            return;
        }
        assert!(Instant::now() < deadline, "{key} never reached {n}: {s}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

pub(crate) fn tpc_begin(c: &mut Raw, txn: i64) {
    c.send(&Message::async_call(
        "tpc_begin",
        vec![
            Value::Int(txn),
            Value::Bytes(b"u".to_vec()),
            Value::Bytes(b"d".to_vec()),
            Value::Dict(vec![]),
            Value::None,
            Value::str(" "),
        ],
    ));
}

fn storea(c: &mut Raw, txn: i64, oid: u64, data: Vec<u8>) {
    c.send(&Message::async_call(
        "storea",
        vec![
            Value::Bytes(oid.to_be_bytes().to_vec()),
            Value::Bytes(vec![0; 8]),
            Value::Bytes(data),
            Value::Int(txn),
        ],
    ));
}

fn call(c: &mut Raw, msgid: i64, name: &str, args: Vec<Value>) -> Message {
    c.send(&Message::call(msgid, name, args));
    c.reply_to(msgid).expect("a reply")
}

/// The record data of `oid`'s current revision, as `loadBefore` returns it.
fn load(c: &mut Raw, msgid: i64, oid: u64) -> Vec<u8> {
    let reply = call(
        c,
        msgid,
        "loadBefore",
        vec![
            Value::Bytes(oid.to_be_bytes().to_vec()),
            Value::Bytes(vec![0xff; 8]),
        ],
    );
    match &reply.args {
        Value::Tuple(t) => match t.first() {
            Some(Value::Bytes(d)) => d.clone(),
            other => panic!("no data in {other:?}"),
        },
        other => panic!("unexpected loadBefore reply {other:?}"),
    }
}

/// A client that sends 40 records of 16 MiB and never votes costs the server a
/// temporary file, not memory (it took 727 MB of RSS before); past the transaction size
/// limit the buffer is dropped and the vote fails with the reason; a transaction of
/// records too large for memory still commits, every byte intact.
#[test]
fn a_client_storing_without_voting_costs_disk_not_memory() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let pid = server.child.id();
    let mut c = Raw::register(server.port);
    tpc_begin(&mut c, 1);
    for i in 0..10u64 {
        storea(&mut c, 1, i + 1, vec![i as u8; 16 << 20]);
    }
    wait_for_count(server.port, "stores", 10);
    assert_eq!(
        unlinked_files_in(pid, dir.path()),
        1,
        "the transaction is buffered in one temporary file beside Data.fs"
    );
    for i in 10..40u64 {
        storea(&mut c, 1, i + 1, vec![i as u8; 16 << 20]);
    }
    wait_for_count(server.port, "stores", 40);
    let peak = peak_rss(pid);
    assert!(
        peak < 200 * MIB,
        "peak RSS {} MiB for 640 MiB of stores",
        peak / MIB
    );
    // 640 MiB is past the 512 MiB transaction limit: the buffer is gone already.
    assert_eq!(unlinked_files_in(pid, dir.path()), 0);
    let vote = call(&mut c, 2, "vote", vec![Value::Int(1)]);
    let (class, payload) = vote.error_parts().expect("the vote fails");
    assert_eq!(class, "ZODB.POSException.StorageTransactionError");
    assert!(format!("{payload:?}").contains("too large"), "{payload:?}");
    assert!(server.log_text().contains("too large"));

    // Three records of 6 MiB: more than a transaction keeps in memory.
    tpc_begin(&mut c, 2);
    for oid in 1..=3u64 {
        storea(&mut c, 2, oid, vec![oid as u8 + 100; 6 << 20]);
    }
    let vote = call(&mut c, 3, "vote", vec![Value::Int(2)]);
    assert!(!vote.is_error(), "{vote:?}");
    let finish = call(&mut c, 4, "tpc_finish", vec![Value::Int(2)]);
    assert!(!finish.is_error(), "{finish:?}");
    assert_eq!(
        unlinked_files_in(pid, dir.path()),
        0,
        "the file goes with it"
    );
    for oid in 1..=3u64 {
        let data = load(&mut c, 10 + oid as i64, oid);
        assert!(
            data.len() == 6 << 20 && data.iter().all(|b| *b == oid as u8 + 100),
            "oid {oid}: {} bytes back",
            data.len()
        );
    }
}

/// Four clients asking for fifteen loads each of a 16 MiB record and reading nothing:
/// each stays under the per-client bound, so only the bound on all clients' queued
/// replies keeps the server's memory in check (1.17 GB of RSS before): a client over its
/// share of it is disconnected, and the others are served.
#[test]
fn clients_asking_for_large_records_and_reading_nothing_are_bounded_together() {
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &[]);
    let pid = server.child.id();
    let mut writer = Raw::register(server.port);
    tpc_begin(&mut writer, 1);
    storea(&mut writer, 1, 1, vec![7; 16 << 20]);
    assert!(!call(&mut writer, 2, "vote", vec![Value::Int(1)]).is_error());
    assert!(!call(&mut writer, 3, "tpc_finish", vec![Value::Int(1)]).is_error());
    let base = status(server.port)["loads"].as_i64().unwrap();
    let mut greedy: Vec<Raw> = (0..4).map(|_| Raw::register(server.port)).collect();
    for g in &mut greedy {
        for i in 0..15 {
            g.send(&Message::call(
                10 + i,
                "loadBefore",
                vec![
                    Value::Bytes(1u64.to_be_bytes().to_vec()),
                    Value::Bytes(vec![0xff; 8]),
                ],
            ));
        }
    }
    // Until the server has answered or dropped them all: the loads stop moving.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut last = (-1, Instant::now());
    loop {
        let loads = status(server.port)["loads"].as_i64().unwrap() - base;
        if loads != last.0 {
            last = (loads, Instant::now());
        } else if last.1.elapsed() > Duration::from_secs(2) {
            break;
        }
        assert!(Instant::now() < deadline, "loads still moving: {loads}");
        std::thread::sleep(Duration::from_millis(50));
    }
    let peak = peak_rss(pid);
    assert!(
        peak < 800 * MIB,
        "peak RSS {} MiB with 960 MiB of replies asked for",
        peak / MIB
    );
    let log = server.log_text();
    assert!(log.contains("more than its share"), "{log}");
    // A client that reads is still served.
    let data = load(&mut writer, 4, 1);
    assert_eq!(data.len(), 16 << 20);
    drop(greedy);
}

/// A thousand sockets that connect and say nothing, opened while a real Python
/// `ClientStorage` connects: the Python client gets in and commits (the server closes
/// the oldest silent sockets for newer ones, and every silent one at the register
/// timeout).
#[test]
fn a_python_client_gets_in_while_a_thousand_sockets_say_nothing() {
    // The test holds a thousand sockets itself.
    daemon::raise_open_files_limit();
    let dir = tempfile::tempdir().unwrap();
    let server = ServerProcess::start(&dir.path().join("Data.fs"), &["--register-timeout", "30"]);
    let port = server.port;
    let flood = std::thread::spawn(move || {
        let mut held = Vec::new();
        for _ in 0..1000 {
            if let Ok(s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                held.push(s);
            }
        }
        held
    });
    let script = test_support::python::script("zeo_commit_loop.py");
    let out = std::process::Command::new(test_support::python::python())
        .arg(&script)
        .args(["init", &server.address(), "reader"])
        .output()
        .expect("run python");
    let held = flood.join().unwrap();
    assert!(
        out.status.success(),
        "python: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        server.log_text()
    );
    assert!(held.len() >= 990, "only {} sockets connected", held.len());
    // At most the newest `UNREGISTERED_CONNECTIONS_MAX` silent sockets are still held.
    let connected = status(port)["connections"].as_i64().unwrap();
    assert!(connected <= 1, "{connected} registered clients");
    // The Python client's commit is there for the next one.
    let mut c = Raw::register(port);
    let root = load(&mut c, 2, 0);
    assert!(
        root.windows(b"reader".len()).any(|w| w == b"reader"),
        "the root holds the Python client's mapping"
    );
    drop(held);
}
