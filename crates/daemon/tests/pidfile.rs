//! In-process tests of [`daemon::PidFile`]: what the file holds, its removal on drop, the
//! refusal of a second holder, replacement of a stale file, and racing starters (exactly
//! one wins). Separate processes are covered by the other test files.

use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Barrier};

use daemon::{DaemonError, PidFile, Status};

#[test]
fn acquire_writes_the_pid_and_drop_removes_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pid");
    let me = std::process::id();
    let pf = PidFile::acquire(&path).unwrap();
    assert_eq!(pf.pid(), me);
    assert_eq!(pf.replaced_stale_pid(), None);
    assert_eq!(std::fs::read_to_string(&path).unwrap(), format!("{me}\n"));
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o644, "readable by monitoring users");
    assert_eq!(daemon::status(&path), Status::Running { pid: me });
    drop(pf);
    assert!(!path.exists());
    assert_eq!(daemon::status(&path), Status::NotRunning);
    // No temporary file left behind.
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_second_holder_gets_already_running_with_the_pid() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pid");
    let first = PidFile::acquire(&path).unwrap();
    match PidFile::acquire(&path) {
        Err(DaemonError::AlreadyRunning { pid, path: p }) => {
            assert_eq!(pid, std::process::id());
            assert_eq!(p, path);
        }
        other => panic!("expected AlreadyRunning, got {other:?}"),
    }
    let msg = PidFile::acquire(&path).unwrap_err().to_string();
    assert!(
        msg.contains(&path.display().to_string()) && msg.contains(&std::process::id().to_string()),
        "{msg}"
    );
    first.release().unwrap();
    assert!(!path.exists());
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}

#[test]
fn a_stale_file_is_replaced_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("x.pid");
    std::fs::write(&path, "4000000\n").unwrap();
    assert_eq!(
        daemon::status(&path),
        Status::Stale {
            pid: Some(4_000_000)
        }
    );
    let pf = PidFile::acquire(&path).unwrap();
    assert_eq!(pf.replaced_stale_pid(), Some(4_000_000));
    assert_eq!(
        std::fs::read_to_string(&path).unwrap(),
        format!("{}\n", std::process::id())
    );
    drop(pf);
    assert!(!path.exists());
}

#[test]
fn racing_starters_have_exactly_one_winner() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("race.pid");
    for round in 0..20 {
        if round % 2 == 1 {
            std::fs::write(&path, "4000001\n").unwrap(); // a stale file to fight over
        }
        let n = 6;
        let barrier = Arc::new(Barrier::new(n));
        let results: Vec<Result<PidFile, DaemonError>> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..n)
                .map(|_| {
                    let b = Arc::clone(&barrier);
                    let p = &path;
                    s.spawn(move || {
                        b.wait();
                        PidFile::acquire(p)
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let winners = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(winners, 1, "round {round}: {results:?}");
        for r in &results {
            if let Err(e) = r {
                assert!(
                    matches!(e, DaemonError::AlreadyRunning { pid, .. } if *pid == std::process::id()),
                    "round {round}: {e}"
                );
            }
        }
        drop(results);
        assert!(!path.exists(), "round {round}: the winner removed it");
    }
    assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0);
}
