//! ZEO over TLS, with real processes on both ends: `bbru-zeo` with `--ssl-*` and Python's
//! `runzeo` with `<ssl>` in its `zeo.conf`; our `ClientStorage` and Python's (with an
//! `ssl.SSLContext`).  Each test makes its throwaway certificates
//! ([`test_support::tls::Pki`]).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::time::{Duration, Instant};

use test_support::conformance::{commit, fresh_oids, record, record_value};
use test_support::python;
use test_support::tls::Pki;
use zeo::client::{ClientOptions, ClientStorage};
use zeo::tls::ClientTls;
use zodb_storage::{Oid, Storage, StorageError, Tid};

use crate::client::{Kind, Server};
use crate::server::{ServerProcess, free_port};
use crate::{bbru_zeo, path_str};

/// `bbru-zeo` serving TLS with the test's server certificate, plus `extra` flags.
fn start_bbru(dir: &Path, pki: &Pki, extra: &[&str]) -> ServerProcess {
    let cert = pki.arg("server.pem");
    let key = pki.arg("server-key.pem");
    let mut args = vec![
        "--ssl-certificate",
        cert.as_str(),
        "--ssl-key",
        key.as_str(),
    ];
    args.extend_from_slice(extra);
    ServerProcess::start(&dir.join("Data.fs"), &args)
}

/// Client TLS settings trusting the test's CA, with the client certificate `who`
/// (`client`, `stranger`) or none.
fn client_tls(pki: &Pki, who: Option<&str>) -> ClientTls {
    ClientTls {
        ca: pki.path("ca.pem"),
        certificate: who.map(|w| pki.path(&format!("{w}.pem"))),
        key: who.map(|w| pki.path(&format!("{w}-key.pem"))),
        server_hostname: Some("localhost".into()),
    }
}

fn tls_options(address: &str, tls: Option<ClientTls>, wait: Duration) -> ClientOptions {
    let mut o = ClientOptions::new(address);
    o.wait_timeout = wait;
    o.tls = tls;
    o
}

fn connect(address: &str, tls: ClientTls) -> ClientStorage {
    ClientStorage::connect(tls_options(address, Some(tls), Duration::from_secs(10)))
        .unwrap_or_else(|e| panic!("connect over TLS to {address}: {e}"))
}

/// What a failed connection attempt says.
fn refusal(address: &str, tls: Option<ClientTls>) -> String {
    match ClientStorage::connect(tls_options(address, tls, Duration::from_secs(2))) {
        Ok(_) => panic!("{address}: the connection was accepted"),
        Err(e) => e.to_string(),
    }
}

/// Whether the server closes `socket` (end of stream or reset) within 20 s, reading
/// nothing from it.
fn closed_by_server(socket: &mut TcpStream) -> bool {
    socket
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    match socket.read(&mut [0u8; 64]) {
        Ok(0) => true,
        Ok(n) => panic!("the server sent {n} bytes"),
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// Commits through `client`: a small record and one of 3 MiB (many TLS records each
/// way), and reads both back through a second client.
fn commit_and_read_back(client: &ClientStorage, second: &ClientStorage) {
    let [small, big] = fresh_oids::<2>(client);
    let mut big_data = record(7, &[]);
    big_data.extend((0..3 << 20).map(|i: u32| (i % 251) as u8));
    let tid = commit(
        client,
        "over TLS",
        &[
            (small, Tid::ZERO, record(42, &[])),
            (big, Tid::ZERO, big_data.clone()),
        ],
    );
    assert_eq!(client.load(small).unwrap(), (record(42, &[]), tid));
    let (data, serial) = second.load(big).unwrap();
    assert_eq!(serial, tid);
    assert!(data == big_data, "the 3 MiB record came back different");
    assert_eq!(record_value(&second.load(small).unwrap().0), Some(42));
}

/// Our client commits and loads through `bbru-zeo` over TLS, and a second client of the
/// same server hears of the first one's commit.
#[test]
fn rust_client_commits_and_loads_through_bbru_zeo_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &[]);
    let a = connect(&server.address(), client_tls(&pki, None));
    let b = connect(&server.address(), client_tls(&pki, None));
    commit_and_read_back(&a, &b);
    // The invalidation reaches the other client over its TLS connection.
    let [oid] = fresh_oids::<1>(&a);
    let tid = commit(&a, "seen by b", &[(oid, Tid::ZERO, record(1, &[]))]);
    let deadline = Instant::now() + Duration::from_secs(10);
    while b.last_transaction() < tid {
        assert!(Instant::now() < deadline, "b never heard of {tid}");
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log_text();
    assert!(log.contains("TLS on"), "{log}");

    // Closing says close_notify: the server reads an orderly end, not a truncated
    // session.
    a.close().unwrap();
    b.close().unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while server.log_text().matches("disconnected").count() < 2 {
        assert!(Instant::now() < deadline, "{}", server.log_text());
        std::thread::sleep(Duration::from_millis(20));
    }
    let log = server.log_text();
    let unclean = |l: &&str| l.contains("close_notify") || l.contains("read error");
    assert_eq!(log.lines().filter(unclean).count(), 0, "{log}");
}

/// The server names the certificate host: without `server_hostname` the client checks
/// the address's host (127.0.0.1, in the certificate); a name the certificate does not
/// carry is refused.
#[test]
fn rust_client_checks_the_server_name() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &[]);
    let mut by_address = client_tls(&pki, None);
    by_address.server_hostname = None;
    let c = connect(&server.address(), by_address);
    c.ping().unwrap();
    let mut wrong = client_tls(&pki, None);
    wrong.server_hostname = Some("zodb.example.org".into());
    let why = refusal(&server.address(), Some(wrong));
    assert!(why.contains("certificate"), "{why}");
    // A client trusting another CA refuses the server.
    let mut other = client_tls(&pki, None);
    other.ca = pki.path("other-ca.pem");
    let why = refusal(&server.address(), Some(other));
    assert!(why.contains("certificate"), "{why}");
}

/// With `--ssl-authenticate CA`, a client without a certificate, or with one another CA
/// signed, is refused (and the server says why); one with a certificate the CA signed
/// gets in.  Python's client likewise.
#[test]
fn authenticate_admits_only_clients_with_a_certificate_the_ca_signed() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let ca = pki.arg("ca.pem");
    let server = start_bbru(dir.path(), &pki, &["--ssl-authenticate", &ca]);
    let address = server.address();

    // The server's alerts say why: a certificate is required; its CA is unknown.
    let why = refusal(&address, Some(client_tls(&pki, None)));
    assert!(why.contains("CertificateRequired"), "{why}");
    let why = refusal(&address, Some(client_tls(&pki, Some("stranger"))));
    assert!(why.contains("UnknownCA"), "{why}");

    let a = connect(&address, client_tls(&pki, Some("client")));
    let b = connect(&address, client_tls(&pki, Some("client")));
    commit_and_read_back(&a, &b);

    let refused = python::run(
        "zeo_tls_client.py",
        &[
            address.as_ref(),
            ca.as_ref(),
            "localhost".as_ref(),
            "x".as_ref(),
        ],
    );
    assert_eq!(
        refused.status.code(),
        Some(3),
        "python without a certificate: {}\n{}",
        String::from_utf8_lossy(&refused.stdout),
        String::from_utf8_lossy(&refused.stderr)
    );
    let out = python::run_ok(
        "zeo_tls_client.py",
        &[
            address.as_ref(),
            ca.as_ref(),
            "localhost".as_ref(),
            pki.path("client.pem").as_os_str(),
            pki.path("client-key.pem").as_os_str(),
            "from python".as_ref(),
        ],
    );
    assert_eq!(out.trim(), "loaded from python");
    let log = server.log_text();
    assert!(log.contains("TLS handshake failed"), "{log}");
}

/// A self-signed client certificate listed itself in `authenticate` (as Python ZEO
/// deployments and tests do: `authenticate client.pem`) is admitted as that exact
/// certificate; a certificate the listed one did not sign, and one merely like it, are
/// not.
#[test]
fn authenticate_admits_a_client_certificate_listed_itself() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let listed = pki.arg("self-signed.pem");
    let server = start_bbru(dir.path(), &pki, &["--ssl-authenticate", &listed]);
    let address = server.address();
    let c = connect(&address, client_tls(&pki, Some("self-signed")));
    c.ping().unwrap();
    let why = refusal(&address, Some(client_tls(&pki, Some("client"))));
    assert!(why.contains("UnknownCA"), "{why}");
    let why = refusal(&address, Some(client_tls(&pki, None)));
    assert!(why.contains("CertificateRequired"), "{why}");
}

/// Python's `ClientStorage` with an `ssl.SSLContext` trusting the CA commits through
/// `bbru-zeo` over TLS and reads back on a new connection; our client then reads what
/// Python wrote.
#[test]
fn python_client_commits_and_loads_through_bbru_zeo_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &[]);
    let address = server.address();
    let out = python::run_ok(
        "zeo_tls_client.py",
        &[
            address.as_ref(),
            pki.path("ca.pem").as_os_str(),
            "localhost".as_ref(),
            "hello over TLS".as_ref(),
        ],
    );
    assert_eq!(out.trim(), "loaded hello over TLS");
    let ours = connect(&address, client_tls(&pki, None));
    let root = ours.load(Oid::ROOT).unwrap().0;
    assert!(
        root.windows(14).any(|w| w == b"hello over TLS"),
        "the root record lacks Python's value"
    );
}

/// Our client against Python's `runzeo` with `<ssl>` in its `zeo.conf` (which always
/// asks clients for a certificate the `authenticate` CA signed).
#[test]
fn rust_client_commits_and_loads_through_python_runzeo_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let address = format!("127.0.0.1:{}", free_port());
    let file = dir.path().join("Data.fs");
    let config = dir.path().join("zeo.conf");
    std::fs::write(
        &config,
        format!(
            "<zeo>\n  address {address}\n  <ssl>\n    certificate {}\n    key {}\n    authenticate {}\n  </ssl>\n</zeo>\n\
             <filestorage 1>\n  path {}\n</filestorage>\n",
            pki.arg("server.pem"),
            pki.arg("server-key.pem"),
            pki.arg("ca.pem"),
            path_str(&file)
        ),
    )
    .unwrap();
    let _server = Server::start_with_config(Kind::Python, &address, &file, &config);
    let a = connect(&address, client_tls(&pki, Some("client")));
    let b = connect(&address, client_tls(&pki, Some("client")));
    commit_and_read_back(&a, &b);
    let why = refusal(&address, Some(client_tls(&pki, Some("stranger"))));
    assert!(why.contains("TLS") || why.contains("handshake"), "{why}");
}

/// A client speaking plain ZEO to a TLS server fails, the server logs why and goes on
/// serving; a socket that never starts TLS is closed at the register timeout, holding
/// only an unregistered slot meanwhile.
#[test]
fn plain_clients_against_a_tls_server_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &["--register-timeout", "2"]);
    let address = server.address();

    // Plain bytes where a TLS ClientHello belongs: the handshake fails at once.
    let mut plain = TcpStream::connect(&address).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    plain.write_all(b"\x00\x00\x00\x02Z5").unwrap();
    // At most an alert comes back, then the end of the stream.
    let mut answer = Vec::new();
    let got = plain.read_to_end(&mut answer);
    assert!(
        got.is_ok() && (answer.is_empty() || answer.first() == Some(&0x15)),
        "the server answered plain bytes with {got:?} {answer:?}"
    );

    // A socket that says nothing is closed at the register timeout (2 s).
    let mut silent = TcpStream::connect(&address).unwrap();
    let opened = Instant::now();
    assert!(closed_by_server(&mut silent));
    assert!(
        opened.elapsed() < Duration::from_secs(15),
        "closed after {:?}",
        opened.elapsed()
    );

    // Our client without TLS waits for a `Z5` that never comes: refused, not hung.
    let why = refusal(&address, None);
    assert!(why.contains("handshake"), "{why}");

    // The server still serves TLS clients.
    let c = connect(&address, client_tls(&pki, None));
    c.ping().unwrap();
    let log = server.log_text();
    assert!(log.contains("TLS handshake failed"), "{log}");
    assert!(
        log.contains("no TLS handshake within the register timeout"),
        "{log}"
    );
}

/// Sockets that open TCP and never start TLS hold only unregistered slots: past
/// `UNREGISTERED_CONNECTIONS_MAX` each newcomer closes the oldest, so a TLS client
/// arriving behind 100 of them, long before the register timeout, gets in.
#[test]
fn silent_sockets_never_lock_tls_clients_out() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &["--register-timeout", "60"]);
    let address = server.address();
    let mut silent: Vec<TcpStream> = (0..100)
        .map(|_| TcpStream::connect(&address).unwrap())
        .collect();
    let c = connect(&address, client_tls(&pki, None));
    c.ping().unwrap();
    // The oldest were closed to make room, without waiting for the timeout.
    assert!(closed_by_server(silent.first_mut().unwrap()));
    let log = server.log_text();
    assert!(
        log.contains("newer connections took its place during its TLS handshake"),
        "{log}"
    );
}

/// A reply far larger than the socket buffers, to a TLS client that pauses and then
/// reads slowly (so the server's writes keep finding the socket full), arrives whole.
/// The server flushes its TLS stream once its queue is written (tokio-rustls keeps
/// records it sealed but could not send until the next write or flush); the window in
/// which the last records would otherwise stay behind is narrow, and this test does not
/// reproduce it every time: it checks the backpressured path end to end.
#[test]
fn a_large_reply_to_a_paused_tls_client_arrives_whole() {
    use zeo::wire::{self, Encoding, Message};
    use zodb_pickle::Value;

    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let server = start_bbru(dir.path(), &pki, &[]);
    let address = server.address();
    let writer = connect(&address, client_tls(&pki, None));
    let [oid] = fresh_oids::<1>(&writer);
    let data: Vec<u8> = (0..16u32 << 20).map(|i| (i % 253) as u8).collect();
    commit(&writer, "16 MiB", &[(oid, Tid::ZERO, data.clone())]);

    let config = client_tls(&pki, None).client_config().unwrap();
    let tcp = TcpStream::connect(&address).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let tls = rustls::ClientConnection::new(config, "localhost".try_into().unwrap()).unwrap();
    let mut stream = rustls::StreamOwned::new(tls, tcp);
    let mut buf = Vec::new();
    // Reads slowly (a pause after each read), so the server's socket stays full and
    // its writes keep finding no room.
    let mut slow = false;
    let mut frame = |stream: &mut rustls::StreamOwned<_, TcpStream>, slow: bool| loop {
        if let Some((range, used)) = wire::parse_frame(&buf, usize::MAX).unwrap() {
            let payload = buf[range].to_vec();
            buf.drain(..used);
            return payload;
        }
        let mut chunk = [0u8; 16384];
        let n = stream.read(&mut chunk).expect("the rest of the reply");
        assert!(n > 0, "the server closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        if slow {
            std::thread::sleep(Duration::from_micros(500));
        }
    };
    let send = |stream: &mut rustls::StreamOwned<_, TcpStream>, payload: &[u8]| {
        let mut out = Vec::new();
        wire::write_frame(&mut out, payload).unwrap();
        stream.write_all(&out).unwrap();
        stream.flush().unwrap();
    };
    assert_eq!(frame(&mut stream, slow), b"Z5");
    send(&mut stream, b"Z5");
    let call = |msgid, name, args| {
        wire::encode(Encoding::Pickle, &Message::call(msgid, name, args)).unwrap()
    };
    send(
        &mut stream,
        &call(1, "register", vec![Value::str("1"), Value::Bool(false)]),
    );
    let reply = wire::decode(Encoding::Pickle, &frame(&mut stream, slow)).unwrap();
    assert!(!reply.is_error(), "{reply:?}");
    send(
        &mut stream,
        &call(
            2,
            "loadBefore",
            vec![
                Value::Bytes(oid.to_bytes().to_vec()),
                Value::Bytes(vec![0xff; 8]),
            ],
        ),
    );
    // The server writes until the socket buffers are full, then waits.
    std::thread::sleep(Duration::from_secs(1));
    slow = true;
    let reply = loop {
        let m = wire::decode(Encoding::Pickle, &frame(&mut stream, slow)).unwrap();
        if m.is_reply() && m.msgid == Value::Int(2) {
            break m;
        }
    };
    match &reply.args {
        Value::Tuple(items) => assert!(
            items.first().and_then(Value::as_bytes) == Some(&data[..]),
            "the 16 MiB record came back different"
        ),
        other => panic!("loadBefore reply {other:?}"),
    }
}

/// Bad certificate or key files stop `bbru-zeo` at its start with the file named.
#[test]
fn bad_certificate_or_key_files_are_named_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new(dir.path());
    let data = dir.path().join("Data.fs");
    let missing = dir.path().join("missing.pem");
    let not_pem = dir.path().join("not.pem");
    std::fs::write(&not_pem, "hello\n").unwrap();
    let port = free_port().to_string();
    let run = |cert: &Path, key: &Path, extra: &[&str]| {
        let mut args = vec![
            "-a",
            port.as_str(),
            "-f",
            path_str(&data),
            "--ssl-certificate",
            path_str(cert),
            "--ssl-key",
            path_str(key),
        ];
        args.extend_from_slice(extra);
        let out = bbru_zeo(&args);
        assert!(!out.status.success(), "started with {args:?}");
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let server = pki.path("server.pem");
    let key = pki.path("server-key.pem");
    let e = run(&missing, &key, &[]);
    assert!(e.contains(path_str(&missing)), "{e}");
    let e = run(&server, &not_pem, &[]);
    assert!(
        e.contains(path_str(&not_pem)) && e.contains("no private key"),
        "{e}"
    );
    // A key that is not the certificate's.
    let other_key = pki.path("client-key.pem");
    let e = run(&server, &other_key, &[]);
    assert!(
        e.contains(path_str(&other_key)) && e.contains("does not fit"),
        "{e}"
    );
    let e = run(&server, &key, &["--ssl-authenticate", path_str(&not_pem)]);
    assert!(e.contains(path_str(&not_pem)), "{e}");
    assert!(!data.exists(), "a failed start created the database");

    // The client names its bad file too, before connecting.
    let mut tls = client_tls(&pki, None);
    tls.ca = missing.clone();
    let why = match ClientStorage::connect(tls_options(
        "127.0.0.1:1",
        Some(tls),
        Duration::from_secs(1),
    )) {
        Ok(_) => panic!("connected with a missing CA file"),
        Err(e) => e,
    };
    assert!(matches!(why, StorageError::Io { .. }), "{why:?}");
    assert!(why.to_string().contains(path_str(&missing)), "{why}");
}
