//! The `check`, `dump`, `pack` and `copy` commands as an operator uses them.

use test_support::fixtures;

use crate::{bbru_zeo, json_lines, path_str};

#[test]
fn check_passes_python_files_and_fails_damaged_ones_with_the_offset() {
    for name in fixtures::storage_fixtures() {
        let out = bbru_zeo(&["check", path_str(&fixtures::path(name))]);
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(String::from_utf8_lossy(&out.stdout).contains("ok"));
    }
    let out = bbru_zeo(&["check", path_str(&fixtures::path("crash-checkpoint.fs"))]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("checkpoint flag was not cleared at 4043"),
        "{err}"
    );
    let out = bbru_zeo(&["check", "/nonexistent/Data.fs"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn dump_prints_one_json_object_per_transaction() {
    let out = bbru_zeo(&["dump", path_str(&fixtures::path("unpacked.fs"))]);
    assert!(out.status.success());
    let lines = json_lines(&String::from_utf8(out.stdout).unwrap());
    assert_eq!(lines.len(), 8);
    let t2 = &lines[1];
    assert_eq!(t2["tid"], "0405ed5918888888");
    assert_eq!(t2["status"], " ");
    assert_eq!(t2["user"], "alice");
    assert_eq!(t2["description"], "add folder, counter, tree");
    assert_eq!(
        t2["extension"],
        fixtures::expected()["unpacked.fs"]["file"]["txns"][1]["extension_hex"]
    );
    assert_eq!(t2["records"][0]["oid"], "0000000000000000");
    // T5 undid T4's creation of oids 8 and 7: no data.
    let t5 = &lines[4];
    assert_eq!(t5["records"][1]["oid"], "0000000000000008");
    assert!(t5["records"][1]["data_sha1"].is_null());
    assert_eq!(t5["records"][0]["data_sha1"].as_str().unwrap().len(), 40);
}

#[test]
fn pack_command_packs_and_keeps_the_old_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = fixtures::copy_to("unpacked.fs", dir.path());
    let out = bbru_zeo(&["pack", path_str(&path)]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(dir.path().join("unpacked.fs.old").exists());
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(after < 4043, "packed to {after} bytes");
    assert!(bbru_zeo(&["check", path_str(&path)]).status.success());
    let out = bbru_zeo(&["pack", path_str(&path), "--days=-1"]);
    assert_eq!(out.status.code(), Some(1));
    let out = bbru_zeo(&["pack", path_str(&dir.path().join("missing.fs"))]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        !dir.path().join("missing.fs").exists(),
        "pack does not create files"
    );
}

/// Stops the daemon of a data file when the test ends, passed or not.
struct StopOnDrop<'a>(&'a str);

impl Drop for StopOnDrop<'_> {
    fn drop(&mut self) {
        let _ = bbru_zeo(&["-f", self.0, "--stop-daemon"]);
    }
}

#[test]
fn daemon_status_and_stop_as_an_operator_uses_them() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("Data.fs");
    let data = path_str(&data);
    let port = crate::server::free_port().to_string();
    let addr = format!("127.0.0.1:{port}");
    let status = || bbru_zeo(&["-f", data, "--status"]).status.code();
    assert_eq!(status(), Some(3), "not running yet");

    let _stop = StopOnDrop(data);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bbru-zeo"))
        .args(["-a", &addr, "-f", data, "--daemon"])
        .env("BBRU_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // It returned only once the server listens.
    let mut c = crate::server::Raw::register(port.parse().unwrap());
    assert_eq!(status(), Some(0));
    let log = std::fs::read_to_string(dir.path().join("bbru-zeo.log")).unwrap();
    assert!(log.contains("serving"), "{log}");

    // A second one on the same pid file is refused, non-zero.
    let again = bbru_zeo(&["-a", "127.0.0.1:1", "-f", data, "--daemon"]);
    assert!(!again.status.success());

    let stop = bbru_zeo(&["-f", data, "--stop-daemon"]);
    assert_eq!(
        stop.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&stop.stdout)
    );
    assert!(c.closed_by_server());
    assert_eq!(status(), Some(3));
    assert_eq!(
        bbru_zeo(&["-f", data, "--stop-daemon"]).status.code(),
        Some(3)
    );
    assert!(bbru_zeo(&["check", data]).status.success());

    // A daemon that cannot bind fails the start, with the reason.
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().to_string();
    let out = bbru_zeo(&["-a", &taken, "-f", data, "--daemon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("Address already in use"));
    assert_eq!(status(), Some(3));
}

#[test]
fn a_killed_daemon_leaves_a_stale_pid_file_that_status_reports() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("Data.fs");
    let data = path_str(&data);
    let port = crate::server::free_port();
    let _stop = StopOnDrop(data);
    let out = bbru_zeo(&["-a", &format!("127.0.0.1:{port}"), "-f", data, "--daemon"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let pid = std::fs::read_to_string(format!("{data}.pid")).unwrap();
    let pid = pid.trim();
    assert!(
        std::process::Command::new("kill")
            .args(["-9", pid])
            .status()
            .unwrap()
            .success()
    );
    // Wait for the kernel to drop the dead daemon's lock.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while bbru_zeo(&["-f", data, "--status"]).status.code() == Some(0) {
        assert!(std::time::Instant::now() < deadline);
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        bbru_zeo(&["-f", data, "--status"]).status.code(),
        Some(1),
        "stale"
    );
    assert_eq!(
        bbru_zeo(&["-f", data, "--stop-daemon"]).status.code(),
        Some(1)
    );
    assert_eq!(
        bbru_zeo(&["-f", data, "--status"]).status.code(),
        Some(3),
        "stale file removed"
    );
}

/// `--help` documents the transaction timeout's default and how to turn it off.
#[test]
fn help_documents_the_transaction_timeout_default() {
    let out = bbru_zeo(&["--help"]);
    assert!(out.status.success());
    let help = String::from_utf8_lossy(&out.stdout).replace(char::is_whitespace, " ");
    let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
    assert!(help.contains("-t, --timeout"), "{help}");
    assert!(help.contains("0 turns it off. Default 30"), "{help}");
    assert!(help.contains("[default: 60]"), "{help}");
}

/// The state letter of process `pid` in `/proc` (`Z` for a zombie), or `None` once it
/// is gone.
fn process_state(pid: &str) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // "pid (comm) S ...": the state follows the last ')'.
    stat.rsplit_once(')')?.1.trim_start().chars().next()
}

/// After SIGTERM a daemon exits as soon as it has stopped: its process has ended
/// (gone, or a zombie: a daemon's parent is init, which reaps it when it gets to it;
/// some inits take seconds, which is what a `kill -0` loop then measures) within a
/// moment of the "stopped" log line, with a client still connected.
#[test]
fn a_stopped_daemon_exits_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("Data.fs");
    let data = path_str(&data);
    let port = crate::server::free_port();
    let _stop = StopOnDrop(data);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_bbru-zeo"))
        .args(["-a", &format!("127.0.0.1:{port}"), "-f", data, "--daemon"])
        .env("BBRU_LOG", "info")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut client = crate::server::Raw::register(port);
    let pid = std::fs::read_to_string(format!("{data}.pid")).unwrap();
    let pid = pid.trim().to_owned();
    assert!(matches!(process_state(&pid), Some(c) if c != 'Z'));
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let log_path = dir.path().join("bbru-zeo.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !std::fs::read_to_string(&log_path)
        .unwrap_or_default()
        .contains("stopped")
    {
        assert!(std::time::Instant::now() < deadline, "never stopped");
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    let stopped = std::time::Instant::now();
    while matches!(process_state(&pid), Some(c) if c != 'Z') {
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(1),
            "still running {:?} after \"stopped\"",
            stopped.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    assert!(client.closed_by_server());
    assert_eq!(
        bbru_zeo(&["-f", data, "--status"]).status.code(),
        Some(3),
        "the pid file is gone with it"
    );
}

/// Regression: `-a ""` used to listen on `127.0.0.1:` (whatever port the kernel chose);
/// it is refused, saying what an address looks like.
#[test]
fn an_empty_listen_address_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Data.fs");
    let out = bbru_zeo(&["-a", "", "-f", path_str(&file)]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("empty address"), "{err}");
    assert!(!file.exists(), "nothing is created for a refused address");
}

#[test]
fn copy_command_copies_a_python_history_with_its_blobs_and_resumes() {
    let dir = tempfile::tempdir().unwrap();
    let p = |name: &str| dir.path().join(name).to_str().unwrap().to_owned();
    let (src, src_blobs) = (p("src.fs"), p("src-blobs"));
    let make = ["make", &src, &src_blobs].map(std::ffi::OsStr::new);
    test_support::python::run_ok("zeo_copy.py", &make);
    let args = [
        "copy",
        &p("src.fs"),
        &p("dst.fs"),
        "--src-blob-dir",
        &p("src-blobs"),
        "--dst-blob-dir",
        &p("dst-blobs"),
    ];
    let out = bbru_zeo(&args);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("2 blob files"), "{stdout}");
    assert_eq!(
        std::fs::read(p("dst.fs")).unwrap(),
        std::fs::read(p("src.fs")).unwrap()
    );
    // Run again: nothing left to copy, nothing changed.
    let out = bbru_zeo(&args);
    assert!(out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stdout).contains(": 0 transactions"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        std::fs::read(p("dst.fs")).unwrap(),
        std::fs::read(p("src.fs")).unwrap()
    );
    // SRC's blobs with no blob directory for DST: refused, naming what would be lost.
    let out = bbru_zeo(&[
        "copy",
        &p("src.fs"),
        &p("no-blobs.fs"),
        "--src-blob-dir",
        &p("src-blobs"),
    ]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("would be lost"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Into a file that is not a copy of SRC: refused, the file untouched.
    let other = fixtures::copy_to(fixtures::storage_fixtures()[0], dir.path());
    let before = std::fs::read(&other).unwrap();
    let out = bbru_zeo(&["copy", &p("src.fs"), path_str(&other)]);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a copy of it"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(std::fs::read(&other).unwrap(), before);
}
