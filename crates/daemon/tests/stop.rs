//! [`daemon::stop`] against real daemons: SIGTERM lets the in-flight request finish, an
//! ignored SIGTERM is followed by SIGKILL after the grace period, nothing running is
//! reported, and a stale file naming a live unrelated process never gets it signalled.

mod common;

use std::io::BufRead;
use std::process::Command;
use std::time::{Duration, Instant};

use common::{Site, request, text};
use daemon::{Status, StopOutcome};

#[test]
fn stop_lets_the_in_flight_request_finish() {
    let site = Site::new();
    let done = site.path("done");
    let d = site.start(&["--slow-ms", "700", "--done-file", done.to_str().unwrap()]);
    let (reply, mut conn) = request(d.port, "SLOW");
    assert_eq!(reply, "STARTED");

    let t = Instant::now();
    let outcome = daemon::stop(&site.pid_file, Duration::from_secs(10)).unwrap();
    assert_eq!(outcome, StopOutcome::Stopped { pid: d.pid });
    assert_eq!(outcome.exit_code(), 0);
    assert!(done.exists(), "the slow request completed before exit");
    assert!(t.elapsed() < Duration::from_secs(5));
    let mut rest = String::new();
    conn.read_line(&mut rest).unwrap();
    assert_eq!(rest.trim(), "DONE", "the client got its answer");
    assert!(!site.pid_file.exists(), "a clean exit removes the pid file");
    assert_eq!(daemon::status(&site.pid_file), Status::NotRunning);
    let log = std::fs::read_to_string(&site.log_file).unwrap();
    assert!(log.contains("clean exit"), "{log}");
}

#[test]
fn sigkill_after_the_grace_period_when_sigterm_is_ignored() {
    let site = Site::new();
    let d = site.start(&["--ignore-term"]);
    let t = Instant::now();
    let outcome = daemon::stop(&site.pid_file, Duration::from_millis(300)).unwrap();
    assert_eq!(outcome, StopOutcome::Killed { pid: d.pid });
    assert!(t.elapsed() >= Duration::from_millis(300));
    assert!(t.elapsed() < Duration::from_secs(8));
    assert!(
        !site.pid_file.exists(),
        "the killed daemon's file is removed"
    );
    assert_eq!(daemon::status(&site.pid_file), Status::NotRunning);
}

#[test]
fn stopping_nothing_is_reported_non_zero() {
    let site = Site::new();
    assert_eq!(
        daemon::stop(&site.pid_file, Duration::from_secs(1)).unwrap(),
        StopOutcome::NotRunning
    );
    let out = site.helper(&["--stop-daemon"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        text(&out.stdout).contains("not running"),
        "{}",
        text(&out.stdout)
    );
}

#[test]
fn a_stale_file_naming_a_live_unrelated_process_is_removed_without_signalling_it() {
    let site = Site::new();
    let mut other = Command::new("sleep").arg("30").spawn().unwrap();
    std::fs::write(&site.pid_file, format!("{}\n", other.id())).unwrap();
    let outcome = daemon::stop(&site.pid_file, Duration::from_millis(200)).unwrap();
    assert_eq!(
        outcome,
        StopOutcome::StaleRemoved {
            pid: Some(other.id())
        }
    );
    assert_eq!(outcome.exit_code(), 1);
    assert!(!site.pid_file.exists());
    std::thread::sleep(Duration::from_millis(100));
    assert!(
        other.try_wait().unwrap().is_none(),
        "the unrelated process was signalled"
    );
    other.kill().unwrap();
    other.wait().unwrap();
}
