//! `--daemon` ([`daemon::daemonize`]) with real processes: the parent returns only once
//! the child is ready and holds the pid file; a child that cannot bind makes the parent
//! fail with the log tail (paster exited 0); a second daemon on the same pid file fails;
//! a child not ready in time is stopped; SIGHUP reopens the log after rotation.

mod common;

use std::ffi::OsString;
use std::net::TcpListener;
use std::time::{Duration, Instant};

use common::{HELPER, Site, request, text, wait_until};
use daemon::{DaemonArgs, DaemonError, PidFile, Status, StopOutcome};

#[test]
fn the_parent_returns_only_after_the_child_is_ready() {
    let site = Site::new();
    let t = Instant::now();
    let d = site.start(&["--ready-delay-ms", "600"]);
    assert!(
        t.elapsed() >= Duration::from_millis(600),
        "returned before readiness"
    );
    // Right away: holding the pid file and serving.
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Running { pid: d.pid }
    );
    assert_eq!(request(d.port, "PING").0, "PONG");
    let log = std::fs::read_to_string(&site.log_file).unwrap();
    assert!(log.contains("daemon child: true"), "{log}");
    assert!(log.contains("ready (notified: true)"), "{log}");
    // Its own process group: a Ctrl-C at the terminal that started it does not reach it.
    let pgid = rustix::process::getpgid(rustix::process::Pid::from_raw(d.pid as i32)).unwrap();
    assert_eq!(pgid.as_raw_nonzero().get() as u32, d.pid);
}

#[test]
fn a_child_that_cannot_bind_makes_the_parent_fail_with_the_log_tail() {
    let site = Site::new();
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port().to_string();
    let out = site.helper(&["--daemon", "--port", &port]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("before it was ready"), "{err}");
    assert!(
        err.contains(&format!("cannot bind 127.0.0.1:{port}")),
        "{err}"
    );
    assert!(err.contains(&site.log_file.display().to_string()), "{err}");
    assert!(!site.pid_file.exists());
    assert_eq!(daemon::status(&site.pid_file), Status::NotRunning);
}

#[test]
fn a_second_daemon_on_the_same_pid_file_fails() {
    let site = Site::new();
    let d = site.start(&[]);
    let pid = d.pid.to_string();

    // --daemon: refused before anything is started.
    let out = site.helper(&["--daemon", "--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&pid),
        "{err}"
    );

    // In the foreground (as under systemd): the pid file refuses.
    let out = site.helper(&["--port", "0"]);
    assert_eq!(out.status.code(), Some(1));
    let err = text(&out.stderr);
    assert!(
        err.contains("already running") && err.contains(&pid),
        "{err}"
    );

    match PidFile::acquire(&site.pid_file) {
        Err(DaemonError::AlreadyRunning { pid, .. }) => assert_eq!(pid, d.pid),
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Running { pid: d.pid }
    );
}

#[test]
fn a_child_not_ready_in_time_is_stopped_and_the_start_fails() {
    let site = Site::new();
    let t = Instant::now();
    let out = site.helper(&[
        "--daemon",
        "--port",
        "0",
        "--ready-delay-ms",
        "20000",
        "--ready-timeout-ms",
        "400",
    ]);
    let err = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("was not ready after"), "{err}");
    assert!(
        err.contains("listening on"),
        "the log tail is quoted: {err}"
    );
    assert!(t.elapsed() < Duration::from_secs(8));
    assert_eq!(daemon::status(&site.pid_file), Status::NotRunning);
}

#[test]
fn daemonize_as_a_library_call() {
    let site = Site::new();
    let mut args = DaemonArgs::new(&site.pid_file, &site.log_file).unwrap();
    args.program = HELPER.into();
    args.args = vec![
        OsString::from("--pid-file"),
        site.pid_file.clone().into(),
        OsString::from("--port"),
        OsString::from("0"),
    ];
    args.ready_timeout = Duration::from_secs(10);
    let outcome = daemon::daemonize(args).unwrap();
    assert_eq!(outcome.pid_file, site.pid_file);
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Running { pid: outcome.pid }
    );
    let port = site.port_of(outcome.pid);
    assert_eq!(request(port, "PING").0, "PONG");
    assert_eq!(
        daemon::stop(&site.pid_file, Duration::from_secs(5)).unwrap(),
        StopOutcome::Stopped { pid: outcome.pid }
    );
}

#[test]
fn sighup_reopens_the_log_after_rotation() {
    let site = Site::new();
    let d = site.start(&[]);
    let rotated = site.path("daemon.log.1");
    std::fs::rename(&site.log_file, &rotated).unwrap();
    let p = rustix::process::Pid::from_raw(d.pid as i32).unwrap();
    rustix::process::kill_process(p, rustix::process::Signal::HUP).unwrap();
    wait_until("the reopened log", || {
        std::fs::read_to_string(&site.log_file).is_ok_and(|l| l.contains("SIGHUP: reopened"))
    });
    assert_eq!(request(d.port, "PING").0, "PONG");
    wait_until("the request in the new log", || {
        std::fs::read_to_string(&site.log_file).is_ok_and(|l| l.contains("request: PING"))
    });
    let old = std::fs::read_to_string(&rotated).unwrap();
    assert!(
        old.contains("listening on") && !old.contains("request: PING"),
        "{old}"
    );
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Running { pid: d.pid }
    );
}
