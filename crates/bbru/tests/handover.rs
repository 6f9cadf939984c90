//! Zero-downtime release change: instance A serves; instance B of the next release
//! starts on the same address, takes A's listening socket over through the handover
//! socket, and A stops gracefully — under continuous HTTP load, no request fails.  Both
//! are real `bbru serve --daemon` processes (the handover name stays with A while it
//! lives, then B claims it), ZEO clients of one server (as the seed
//! deploys them; an embedded Data.fs can only be open in one process at a time).

mod common;

use std::io::{Read, Write};

use common::{bbru, free_port, output_text, zeo_in_process};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

/// One GET /@@health on a new connection; the release that answered.
fn health(address: &str) -> Result<String, String> {
    let mut s = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(b"GET /@@health HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    if !reply.starts_with("HTTP/1.1 200") {
        return Err(format!("reply: {reply:?}"));
    }
    let at = reply.find("\"release\":\"").ok_or("no release")? + 11;
    Ok(reply[at..].split('"').next().unwrap_or("").to_owned())
}

fn release_dir(
    base: &Path,
    release: &str,
    listen: &str,
    zeo: &str,
    handover: &Path,
) -> std::path::PathBuf {
    let dir = base.join(release);
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::write(
        dir.join("etc/serve.toml"),
        format!(
            "listen = \"{listen}\"\nrelease = \"{release}\"\nhandover_socket = \"{}\"\npid_file = \"var/bbru.pid\"\n[storage]\nzeo = \"{zeo}\"\n",
            handover.display()
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("etc/site.toml"),
        "[bootstrap_manager]\nlogin = \"admin\"\npassword = \"admin-password\"\n",
    )
    .unwrap();
    dir
}

#[test]
fn the_next_release_takes_the_socket_over_without_dropping_a_request() {
    let base = tempfile::tempdir().unwrap();
    let storage: Arc<dyn zodb_storage::Storage> =
        Arc::new(zodb_storage::FileStorage::open(base.path().join("Data.fs")).unwrap());
    let zeo = zeo_in_process(storage);
    let listen = format!("127.0.0.1:{}", free_port());
    let handover = base.path().join("run/bbru.sock");
    let a = release_dir(base.path(), "bbru-1.0.0", &listen, &zeo, &handover);
    let b = release_dir(base.path(), "bbru-1.0.1", &listen, &zeo, &handover);

    let o = bbru(&a, &["serve", "-c", "etc/serve.toml", "--daemon"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(health(&listen).unwrap(), "bbru-1.0.0");

    let stop = Arc::new(AtomicBool::new(false));
    let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
    let answered: Arc<[AtomicUsize; 2]> = Arc::new([AtomicUsize::new(0), AtomicUsize::new(0)]);
    let load: Vec<_> = (0..3)
        .map(|_| {
            let (stop, failures, answered, listen) = (
                stop.clone(),
                failures.clone(),
                answered.clone(),
                listen.clone(),
            );
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    match health(&listen) {
                        Ok(r) if r == "bbru-1.0.0" => answered[0].fetch_add(1, Ordering::Relaxed),
                        Ok(_) => answered[1].fetch_add(1, Ordering::Relaxed),
                        Err(e) => {
                            failures.lock().push(e);
                            0
                        }
                    };
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    // The next release starts (inheriting the socket), then the old one stops.
    let o = bbru(&b, &["serve", "-c", "etc/serve.toml", "--daemon"]);
    assert!(o.status.success(), "{}", output_text(&o));
    std::thread::sleep(Duration::from_millis(300));
    // The name stays with the live instance A: B is not yet known to be healthy.
    let pid = |dir: &Path| {
        std::fs::read_to_string(dir.join("var/bbru.pid"))
            .unwrap()
            .trim()
            .to_owned()
    };
    let (pid_a, pid_b) = (pid(&a), pid(&b));
    let linked = || std::fs::read_link(&handover).unwrap_or_default();
    assert_eq!(linked(), Path::new(&format!("bbru.sock.{pid_a}")));
    let o = bbru(&a, &["serve", "-c", "etc/serve.toml", "--stop-daemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    // A gone, the name led nowhere: B claims it (within NAME_CHECK_INTERVAL).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while linked() != Path::new(&format!("bbru.sock.{pid_b}")) {
        assert!(
            std::time::Instant::now() < deadline,
            "B did not claim the name: {:?}",
            linked()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    let before = answered[1].load(Ordering::Relaxed);
    std::thread::sleep(Duration::from_millis(500));
    stop.store(true, Ordering::Relaxed);
    for t in load {
        t.join().unwrap();
    }
    let o = bbru(&b, &["serve", "-c", "etc/serve.toml", "--stop-daemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));

    let failures = failures.lock();
    assert!(
        failures.is_empty(),
        "{} failed requests: {:?}",
        failures.len(),
        &failures[..failures.len().min(5)]
    );
    assert!(answered[0].load(Ordering::Relaxed) > 0);
    assert!(
        answered[1].load(Ordering::Relaxed) > before,
        "the new release served after the old one stopped"
    );
    // The old release directory holds nothing of value: its pid file is gone.
    assert!(!a.join("var/bbru.pid").exists());
}
