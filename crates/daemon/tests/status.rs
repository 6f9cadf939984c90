//! `--status` and [`daemon::status`] against real daemons (the `daemon-test-helper`
//! binary): exit codes 0 running, 3 stopped, 1 stale (the daemon was SIGKILLed and could not
//! clean up), 4 when the lock holder is not the process the file names.

mod common;

use std::fs::File;
use std::process::{Child, Command};

use common::{Site, kill_hard, text};
use daemon::Status;

#[test]
fn status_exit_codes_running_stopped_and_stale() {
    let site = Site::new();
    let out = site.helper(&["--status"]);
    assert_eq!(out.status.code(), Some(3), "no pid file yet");
    assert!(text(&out.stdout).contains("not running"));

    let d = site.start(&[]);
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Running { pid: d.pid }
    );
    let out = site.helper(&["--status"]);
    assert_eq!(out.status.code(), Some(0));
    assert!(text(&out.stdout).contains(&format!("running (pid {})", d.pid)));

    let out = site.helper(&["--stop-daemon"]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(text(&out.stdout).contains(&format!("stopped (pid {})", d.pid)));
    assert!(!site.pid_file.exists());
    assert_eq!(site.helper(&["--status"]).status.code(), Some(3));

    // Stale: a daemon killed with SIGKILL leaves its file behind, with a free lock.
    let d = site.start(&[]);
    kill_hard(d.pid, &site.pid_file);
    assert!(site.pid_file.exists());
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Stale { pid: Some(d.pid) }
    );
    let out = site.helper(&["--status"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("stale"), "{}", text(&out.stdout));

    // --stop-daemon removes the stale file and says so, non-zero: nothing was running.
    let out = site.helper(&["--stop-daemon"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stdout).contains("stale"), "{}", text(&out.stdout));
    assert!(!site.pid_file.exists());
    assert_eq!(site.helper(&["--status"]).status.code(), Some(3));
}

#[test]
fn an_unlocked_file_naming_a_live_process_is_stale_not_running() {
    // What paster left: a pid file nobody locks. The pid is alive (this test process), yet
    // the free lock says no daemon holds the file.
    let site = Site::new();
    let me = std::process::id();
    std::fs::write(&site.pid_file, format!("{me}\n")).unwrap();
    assert_eq!(
        daemon::status(&site.pid_file),
        Status::Stale { pid: Some(me) }
    );
    assert_eq!(site.helper(&["--status"]).status.code(), Some(1));

    std::fs::write(&site.pid_file, "not a pid").unwrap();
    assert_eq!(daemon::status(&site.pid_file), Status::Stale { pid: None });
}

#[test]
fn a_missing_directory_is_not_running() {
    let site = Site::new();
    let path = site.path("no/such/dir/x.pid");
    assert_eq!(daemon::status(&path), Status::NotRunning);
    assert_eq!(Status::NotRunning.exit_code(), 3);
}

/// A `sleep` process: a live pid that is not ours to signal.
fn bystander() -> Child {
    Command::new("sleep")
        .arg("30")
        .spawn()
        .expect("spawn sleep")
}

#[test]
fn a_lock_held_by_another_process_than_the_named_pid_is_unknown_and_never_signalled() {
    if std::fs::read_to_string("/proc/locks").is_err() {
        eprintln!("skipped: /proc/locks is not readable here");
        return;
    }
    let site = Site::new();
    let mut other = bystander();
    // This test process holds the lock, but the file names the bystander.
    std::fs::write(&site.pid_file, format!("{}\n", other.id())).unwrap();
    let f = File::open(&site.pid_file).unwrap();
    f.try_lock().unwrap();

    let st = daemon::status(&site.pid_file);
    assert!(
        matches!(st, Status::Unknown { pid: Some(p), .. } if p == other.id()),
        "{st:?}"
    );
    assert_eq!(st.exit_code(), 4);
    let err = daemon::stop(&site.pid_file, std::time::Duration::from_millis(100)).unwrap_err();
    assert!(
        matches!(err, daemon::DaemonError::Inconsistent { .. }),
        "{err}"
    );
    assert!(
        other.try_wait().unwrap().is_none(),
        "the bystander was signalled"
    );
    drop(f);
    other.kill().unwrap();
    other.wait().unwrap();
}
