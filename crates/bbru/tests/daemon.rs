//! `bbru serve --daemon | --status | --stop-daemon` on the real binary: exit codes when
//! running, stopped and with a stale pid file, and what `--status` shows of a running
//! instance; a graceful stop finishes the request in flight; log lines off a terminal.

mod common;

use std::io::{Read, Write};

use common::{bbru, free_port, output_text};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

#[test]
fn status_and_stop_daemon_exit_codes() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let o = bbru(dir.path(), &["serve", "--status"]);
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(output_text(&o).contains("not running"));

    let o = bbru(dir.path(), &["serve", "--listen", &listen, "--daemon"]);
    assert!(o.status.success(), "{}", output_text(&o));
    // It answers as soon as --daemon returned.
    let mut s = TcpStream::connect(&listen).unwrap();
    s.write_all(b"GET /@@health HTTP/1.0\r\n\r\n").unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(reply.starts_with("HTTP/1.0 200"), "health answers: {reply}");
    assert!(
        reply.contains("\"site\":\"not set up\""),
        "no site yet: {reply}"
    );
    // The defaults are private: the database, the key file beside it, the site
    // configuration (where the bootstrap manager's password goes).
    for file in [
        "var/Data.fs",
        "var/Data.fs.lock",
        "var/secret.key",
        "etc/site.toml",
    ] {
        let meta = std::fs::metadata(dir.path().join(file)).unwrap();
        let mode = std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777;
        assert_eq!(mode, 0o600, "{file}");
    }
    let o = bbru(dir.path(), &["serve", "--status"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    // What runs: release, pid, the address it listens on, storage, uptime.
    let text = output_text(&o);
    let pid = std::fs::read_to_string(dir.path().join("var/bbru.pid")).unwrap();
    for line in [
        format!("running (pid {})", pid.trim()),
        format!("pid:     {}", pid.trim()),
        format!("address: {listen}"),
        "release: (none configured)".to_owned(),
        "storage: ".to_owned(),
        "Data.fs".to_owned(),
        "uptime:  ".to_owned(),
    ] {
        assert!(text.contains(&line), "{line:?} not in:\n{text}");
    }
    // A second daemon on the same pid file is refused.
    let o = bbru(
        dir.path(),
        &[
            "serve",
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--daemon",
        ],
    );
    assert!(!o.status.success(), "{}", output_text(&o));

    let o = bbru(dir.path(), &["serve", "--stop-daemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let o = bbru(dir.path(), &["serve", "--status"]);
    assert_eq!(o.status.code(), Some(3), "{}", output_text(&o));
    assert!(
        !dir.path().join("var/bbru.status.json").exists(),
        "the status file goes with the instance"
    );
    // Stopping what does not run is an error.
    let o = bbru(dir.path(), &["serve", "--stop-daemon"]);
    assert_ne!(o.status.code(), Some(0), "{}", output_text(&o));

    // A stale pid file (a pid that is not ours, unlocked) is reported, then removed.
    std::fs::write(dir.path().join("var/bbru.pid"), "999999\n").unwrap();
    let o = bbru(dir.path(), &["serve", "--status"]);
    assert_eq!(o.status.code(), Some(1), "{}", output_text(&o));
    assert!(output_text(&o).contains("stale"), "{}", output_text(&o));
    let o = bbru(dir.path(), &["serve", "--stop-daemon"]);
    assert!(output_text(&o).contains("stale"), "{}", output_text(&o));
    assert!(!dir.path().join("var/bbru.pid").exists());
}

#[test]
fn stop_daemon_finishes_the_request_in_flight() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let o = bbru(dir.path(), &["serve", "--listen", &listen, "--daemon"]);
    assert!(o.status.success(), "{}", output_text(&o));
    // A slow client: headers and half the body now, the rest after the stop began.
    let mut s = TcpStream::connect(&listen).unwrap();
    let body = "login=x&password=yyyyyyyy";
    write!(
        s,
        "POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{}",
        body.len(),
        &body[..5]
    )
    .unwrap();
    s.flush().unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let dir2 = dir.path().to_owned();
    let stopper = std::thread::spawn(move || bbru(&dir2, &["serve", "--stop-daemon"]));
    std::thread::sleep(Duration::from_millis(500));
    // New connections are refused while the old request is still being served.
    assert!(
        TcpStream::connect(&listen).is_err(),
        "still accepting after the stop began"
    );
    s.write_all(&body.as_bytes()[5..]).unwrap();
    let mut reply = String::new();
    s.read_to_string(&mut reply).unwrap();
    assert!(
        reply.starts_with("HTTP/1.1 "),
        "the request in flight got no answer: {reply:?}"
    );
    let o = stopper.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
}

#[test]
fn sighup_reopens_the_log_file_for_logrotate() {
    let dir = tempfile::tempdir().unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let log = dir.path().join("log/bbru.log");
    let o = bbru(
        dir.path(),
        &[
            "serve",
            "--listen",
            &listen,
            "--daemon",
            "--log-file",
            log.to_str().unwrap(),
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(std::fs::read_to_string(&log).unwrap().contains("serving"));
    // logrotate moves the file away, then signals.
    let rotated = dir.path().join("log/bbru.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    let pid = std::fs::read_to_string(dir.path().join("var/bbru.pid")).unwrap();
    let status = Command::new("kill")
        .args(["-HUP", pid.trim()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !std::fs::read_to_string(&log).is_ok_and(|t| t.contains("log file reopened")) {
        assert!(
            std::time::Instant::now() < deadline,
            "the log was not reopened"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let o = bbru(dir.path(), &["serve", "--stop-daemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    // The stop is logged in the new file, nothing more in the rotated one.
    assert!(std::fs::read_to_string(&log).unwrap().contains("stopping"));
    assert!(
        !std::fs::read_to_string(&rotated)
            .unwrap()
            .contains("stopping")
    );
}

/// `bbru serve` with `ssl_ca`, `ssl_certificate` and `ssl_key` in `[storage]` reaches a
/// `bbru-zeo` that serves TLS and admits only clients with a certificate its CA signed:
/// the instance creates its site through it and answers healthy (an instance that
/// ignored them would never get past the TLS handshake, and never be healthy).
#[test]
fn bbru_serve_reaches_its_zeo_server_over_tls() {
    let dir = tempfile::tempdir().unwrap();
    let pki = test_support::tls::Pki::new(dir.path());
    let address = format!("127.0.0.1:{}", free_port());
    let (cert, key, ca) = (
        pki.arg("server.pem"),
        pki.arg("server-key.pem"),
        pki.arg("ca.pem"),
    );
    let zeo = common::Zeo::start_with(
        &dir.path().join("Data.fs"),
        &address,
        &[
            "--ssl-certificate",
            &cert,
            "--ssl-key",
            &key,
            "--ssl-authenticate",
            &ca,
        ],
    );
    let site = common::write_site_config(dir.path());
    let tls = format!(
        "ssl_ca = {:?}\nssl_certificate = {:?}\nssl_key = {:?}\nssl_server_hostname = \"localhost\"\n",
        pki.arg("ca.pem"),
        pki.arg("client.pem"),
        pki.arg("client-key.pem"),
    );
    let instance =
        common::Instance::start_zeo_configured(dir.path(), "tls", &site, &zeo.address, &tls);
    let r = reqwest::blocking::Client::new()
        .get(instance.url("/@@health"))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let log = std::fs::read_to_string(&zeo.process.log).unwrap();
    assert!(log.contains("TLS on"), "{log}");
    assert!(
        log.contains(" commit "),
        "the site was created through TLS: {log}"
    );
}

/// Standard error to a file (not a terminal), as under systemd or `2>log`: no ANSI colour
/// codes from either binary; `--log-format json` writes one JSON object a line.
#[test]
fn logs_off_a_terminal_carry_no_colour_codes_and_json_lines_parse() {
    let dir = tempfile::tempdir().unwrap();
    let mut zeo = common::Zeo::start(&dir.path().join("Data.fs"));
    let site = common::write_site_config(dir.path());
    let mut instance = common::Instance::start(
        dir.path(),
        "text",
        &site,
        &common::Storage::Zeo(zeo.address.clone()),
    );
    reqwest::blocking::get(instance.url("/")).unwrap();
    let r = reqwest::blocking::Client::new()
        .get(instance.url("/@@health"))
        .basic_auth(common::ADMIN.0, Some(common::ADMIN.1))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    instance.kill();
    zeo.kill();
    let text = std::fs::read_to_string(&instance.process.log).unwrap();
    assert!(
        text.lines().any(|l| l.contains(" request ")
            && l.contains("method=GET path=/@@health status=200")
            && l.contains("principal=\"admin (bootstrap)\"")),
        "the request log line names the principal: {text}"
    );
    for log in [&instance.process.log, &zeo.process.log] {
        let text = std::fs::read_to_string(log).unwrap();
        assert!(text.contains("INFO"), "{}: {text}", log.display());
        assert!(
            !text.contains('\u{1b}'),
            "{} holds ANSI escape codes: {text:?}",
            log.display()
        );
    }

    let json = dir.path().join("json");
    std::fs::create_dir_all(&json).unwrap();
    let listen = format!("127.0.0.1:{}", free_port());
    let o = bbru(
        &json,
        &[
            "serve",
            "--listen",
            &listen,
            "--log-format",
            "json",
            "--daemon",
        ],
    );
    assert!(o.status.success(), "{}", output_text(&o));
    let mut s = TcpStream::connect(&listen).unwrap();
    s.write_all(b"GET /@@health HTTP/1.0\r\n\r\n").unwrap();
    s.read_to_string(&mut String::new()).unwrap();
    let o = bbru(&json, &["serve", "--stop-daemon"]);
    assert_eq!(o.status.code(), Some(0), "{}", output_text(&o));
    let pid = o.stdout.clone();
    let text = std::fs::read_to_string(json.join("var/bbru.log")).unwrap();
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l:?}")))
        .collect();
    assert!(
        lines
            .iter()
            .any(|l| l["level"] == "INFO" && l["fields"]["message"] == "serving"),
        "{text}"
    );
    // Every request is logged once, with what an operator filters on.
    let requests: Vec<&serde_json::Value> = lines
        .iter()
        .filter(|l| l["fields"]["message"] == "request")
        .collect();
    assert_eq!(requests.len(), 1, "{text}");
    let r = &requests[0]["fields"];
    assert_eq!(r["method"], "GET", "{r}");
    assert_eq!(r["path"], "/@@health", "{r}");
    assert_eq!(r["status"], 200, "{r}");
    assert_eq!(r["principal"], "-", "{r}");
    assert!(r["duration_ms"].as_f64().is_some(), "{r}");
    assert!(
        String::from_utf8_lossy(&pid).contains(r["instance"].as_str().unwrap()),
        "{r}, {}",
        String::from_utf8_lossy(&pid)
    );
    // A configuration with an unknown format is refused, saying which ones exist.
    std::fs::create_dir_all(json.join("etc")).unwrap();
    std::fs::write(json.join("etc/serve.toml"), "log_format = \"yaml\"\n").unwrap();
    let o = bbru(&json, &["serve", "-c", "etc/serve.toml", "--status"]);
    assert!(
        !o.status.success() && output_text(&o).contains("\"text\" or \"json\""),
        "{}",
        output_text(&o)
    );
}

/// An instance whose database server is out of reach says so once, with the cause once,
/// and exits non-zero.
#[test]
fn an_unreachable_database_server_is_reported_once() {
    let dir = tempfile::tempdir().unwrap();
    let address = format!("127.0.0.1:{}", free_port());
    let out = bbru(dir.path(), &["serve", "--zeo", &address]);
    assert!(!out.status.success());
    let text = output_text(&out);
    assert_eq!(text.matches("cannot open the storage").count(), 1, "{text}");
    assert_eq!(text.matches("out of reach").count(), 1, "{text}");
}
