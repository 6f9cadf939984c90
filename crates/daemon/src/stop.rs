//! [`stop`]: `--stop-daemon`. SIGTERM the daemon named by a locked pid file, wait for it to
//! release the lock (it finishes its in-flight work first), SIGKILL after the grace period.
//!
//! Safety against signalling the wrong process: a pid is signalled only while its pid file
//! is locked by someone, the pid is alive and (where `/proc/locks` tells) holds that lock
//! itself; the process is then pinned with a pidfd and the lock re-checked before the
//! signal goes through the pidfd, so a pid recycled in between cannot be hit. On kernels
//! without pidfds (before 5.3) the re-check directly precedes `kill(2)`.

use std::fs::{File, Metadata, TryLockError};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::path::Path;
use std::thread::sleep;
use std::time::{Duration, Instant};

use rustix::io::Errno;
use rustix::process::{Pid, PidfdFlags, Signal};

use crate::DaemonError;
use crate::pidfile::{
    Holder, Probe, alive, held_detail, lock_holder, probe, remove_if_stale, still_linked,
};

/// How long to wait for the lock to go after SIGKILL before giving up.
const KILL_WAIT: Duration = Duration::from_secs(5);
/// How long to wait, once the lock is released, for the process itself to be gone.
const EXIT_WAIT: Duration = Duration::from_secs(2);
/// Lock polling interval.
const POLL: Duration = Duration::from_millis(10);
/// How long to wait out transient lock holders before refusing.
const TRANSIENT_WAIT: Duration = Duration::from_millis(1000);

/// What [`stop`] did. See the crate docs for the exit codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StopOutcome {
    /// The daemon exited within the grace period after SIGTERM.
    Stopped { pid: u32 },
    /// The daemon was still running after the grace period and was killed with SIGKILL;
    /// its in-flight work was lost. Its pid file was removed.
    Killed { pid: u32 },
    /// The pid file was stale (its lock free: the daemon had died); it was removed and
    /// nothing was signalled.
    StaleRemoved { pid: Option<u32> },
    /// There was no pid file.
    NotRunning,
}

impl StopOutcome {
    /// 0 when a daemon was stopped (gracefully or not), 1 for a stale pid file, 3 when not
    /// running (the LSB `status` codes of what was found).
    pub fn exit_code(&self) -> i32 {
        match self {
            StopOutcome::Stopped { .. } | StopOutcome::Killed { .. } => 0,
            StopOutcome::StaleRemoved { .. } => 1,
            StopOutcome::NotRunning => 3,
        }
    }
}

impl std::fmt::Display for StopOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StopOutcome::Stopped { pid } => write!(f, "stopped (pid {pid})"),
            StopOutcome::Killed { pid } => write!(
                f,
                "killed (pid {pid}): it did not exit within the grace period after SIGTERM"
            ),
            StopOutcome::StaleRemoved { pid: Some(pid) } => write!(
                f,
                "not running: removed a stale pid file (pid {pid} had exited without removing it)"
            ),
            StopOutcome::StaleRemoved { pid: None } => {
                write!(f, "not running: removed a stale pid file")
            }
            StopOutcome::NotRunning => write!(f, "not running (no pid file)"),
        }
    }
}

/// Stops the daemon whose pid file is `path`: SIGTERM, wait up to `grace` for it to release
/// the pid file lock (a clean exit also removes the file), then SIGKILL and wait (bounded)
/// again. A stale pid file is removed ([`StopOutcome::StaleRemoved`]); a missing one gives
/// [`StopOutcome::NotRunning`]. Returns once the daemon is gone.
pub fn stop(path: impl AsRef<Path>, grace: Duration) -> Result<StopOutcome, DaemonError> {
    let path = path.as_ref();
    let deadline = Instant::now() + TRANSIENT_WAIT;
    // Find a live, verified lock holder, and pin it.
    let (file, meta, pid, pidfd) = loop {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Ok(StopOutcome::NotRunning);
            }
            Err(e) => return Err(DaemonError::io("open pid file", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| DaemonError::io("stat pid file", path, e))?;
        match probe(path)? {
            Probe::Missing => return Ok(StopOutcome::NotRunning),
            Probe::Free { file: shared, .. } => {
                // Our shared locks would block the exclusive lock removal takes.
                drop(shared);
                drop(file);
                match remove_if_stale(path)? {
                    Some(pid) => return Ok(StopOutcome::StaleRemoved { pid }),
                    None if Instant::now() >= deadline => {
                        return Err(DaemonError::Inconsistent {
                            path: path.to_owned(),
                            pid: None,
                            detail: "the stale file stays locked (shared) by another process, \
                                     so it cannot be removed"
                                .to_owned(),
                        });
                    }
                    // Replaced by a starting daemon, or removed by someone else: look again.
                    None => {}
                }
            }
            Probe::Held {
                meta: held_meta,
                pid,
            } => {
                let same = held_meta.dev() == meta.dev() && held_meta.ino() == meta.ino();
                if same
                    && let Some(p) = pid
                    && let Some(pidfd) = pin(p)
                    && verified(&file, &meta, path, p)?
                {
                    break (file, meta, p, pidfd);
                }
                if Instant::now() >= deadline {
                    return Err(DaemonError::Inconsistent {
                        path: path.to_owned(),
                        pid,
                        detail: held_detail(pid),
                    });
                }
                sleep(POLL);
            }
        }
    };

    send(&pidfd, pid, Signal::TERM, "SIGTERM", path)?;
    if wait_released(&file, path, grace)? {
        finish(path, &pidfd, pid);
        return Ok(StopOutcome::Stopped { pid });
    }

    // Still holding the lock after the grace period. Without a pidfd, re-check right before
    // the kill that the pid is still the lock holder (with one, the pidfd pins it).
    if matches!(pidfd, Pinned::Pid(_)) && !verified(&file, &meta, path, pid)? {
        finish(path, &pidfd, pid);
        return Ok(StopOutcome::Stopped { pid });
    }
    send(&pidfd, pid, Signal::KILL, "SIGKILL", path)?;
    if !wait_released(&file, path, KILL_WAIT)? {
        return Err(DaemonError::StopTimeout {
            pid,
            path: path.to_owned(),
            waited: KILL_WAIT,
        });
    }
    finish(path, &pidfd, pid);
    Ok(StopOutcome::Killed { pid })
}

/// A process pinned for signalling.
enum Pinned {
    /// A pidfd: signals go to this process or nowhere.
    Fd(OwnedFd),
    /// No pidfd support: signals go to the pid, after a fresh lock check.
    Pid(Pid),
}

/// Pins `pid` with a pidfd (`None` if it no longer exists).
fn pin(pid: u32) -> Option<Pinned> {
    let p = i32::try_from(pid).ok().and_then(Pid::from_raw)?;
    match rustix::process::pidfd_open(p, PidfdFlags::empty()) {
        Ok(fd) => Some(Pinned::Fd(fd)),
        Err(Errno::SRCH) => None,
        // ENOSYS (old kernel), EPERM (seccomp), ...: fall back to the pid.
        Err(_) => Some(Pinned::Pid(p)),
    }
}

/// True if `file` (the pid file as opened, still at `path`) is exclusively locked, names
/// `pid`, `pid` is alive and not contradicted as the lock holder.
fn verified(file: &File, meta: &Metadata, path: &Path, pid: u32) -> Result<bool, DaemonError> {
    match file.try_lock_shared() {
        Ok(()) => {
            let _ = file.unlock();
            return Ok(false);
        }
        Err(TryLockError::WouldBlock) => {}
        Err(TryLockError::Error(e)) => return Err(DaemonError::io("lock pid file", path, e)),
    }
    let names_pid = std::fs::read_to_string(path)
        .ok()
        .and_then(|t| t.trim().parse::<u32>().ok())
        == Some(pid);
    Ok(names_pid
        && still_linked(path, meta)?
        && alive(pid)
        && lock_holder(meta, pid) != Holder::Contradicted)
}

fn send(
    pinned: &Pinned,
    pid: u32,
    sig: Signal,
    name: &'static str,
    path: &Path,
) -> Result<(), DaemonError> {
    let r = match pinned {
        Pinned::Fd(fd) => rustix::process::pidfd_send_signal(fd, sig),
        Pinned::Pid(p) => rustix::process::kill_process(*p, sig),
    };
    match r {
        // Already gone: the lock wait will see it released.
        Ok(()) | Err(Errno::SRCH) => Ok(()),
        Err(e) => Err(DaemonError::Signal {
            pid,
            signal: name,
            path: path.to_owned(),
            source: e.into(),
        }),
    }
}

/// Waits up to `timeout` for the exclusive lock on `file` to be released. Polls with a
/// shared lock, which never blocks the holder.
fn wait_released(file: &File, path: &Path, timeout: Duration) -> Result<bool, DaemonError> {
    let deadline = Instant::now() + timeout;
    loop {
        match file.try_lock_shared() {
            Ok(()) => {
                let _ = file.unlock();
                return Ok(true);
            }
            Err(TryLockError::WouldBlock) => {}
            Err(TryLockError::Error(e)) => return Err(DaemonError::io("lock pid file", path, e)),
        }
        let now = Instant::now();
        if now >= deadline {
            return Ok(false);
        }
        sleep(POLL.min(deadline - now));
    }
}

/// After the lock is released: remove the pid file if the daemon left it (killed, or it
/// exited without cleaning up), and wait (bounded) for the process itself to be gone, so
/// the caller can start a successor right away.
fn finish(path: &Path, pinned: &Pinned, pid: u32) {
    let _ = remove_if_stale(path);
    let deadline = Instant::now() + EXIT_WAIT;
    match pinned {
        Pinned::Fd(fd) => {
            // A pidfd polls readable once the process has exited (zombie or reaped).
            let mut fds = [rustix::event::PollFd::new(fd, rustix::event::PollFlags::IN)];
            let timeout = rustix::event::Timespec::try_from(EXIT_WAIT).ok();
            let _ = rustix::event::poll(&mut fds, timeout.as_ref());
        }
        Pinned::Pid(_) => {
            // Without a pidfd a zombie looks alive; this wait is only best effort.
            while alive(pid) && Instant::now() < deadline {
                sleep(POLL);
            }
        }
    }
}
