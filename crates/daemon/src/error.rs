//! [`DaemonError`]: every way process control can fail, each naming the paths and pids an
//! operator needs to act on it. The CLIs print these and exit non-zero (never 0 on a
//! failure, unlike paster).

use std::io;
use std::path::PathBuf;
use std::process::ExitStatus;
use std::time::Duration;

use crate::pidfile::Status;

/// A failure of pid file handling, stopping or daemonizing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum DaemonError {
    /// The pid file is locked by a live process: another instance is running.
    #[error("already running: pid file {} is held by pid {pid}", .path.display())]
    AlreadyRunning { pid: u32, path: PathBuf },

    /// An I/O operation on a named path failed (`op` says which, e.g. "open pid file").
    #[error("cannot {op} {}: {source}", .path.display())]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The pid file is locked, but not (or not verifiably) by the live process it names: a
    /// foreign lock holder, an unreadable pid, or a pid from another pid namespace. Nothing
    /// is signalled in that case.
    #[error("pid file {} is locked, but {detail}; refusing to act on it", .path.display())]
    Inconsistent {
        path: PathBuf,
        pid: Option<u32>,
        detail: String,
    },

    /// Sending a signal failed (typically `EPERM`: the daemon runs as another user).
    #[error("cannot send {signal} to pid {pid} (from pid file {}): {source}", .path.display())]
    Signal {
        pid: u32,
        signal: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The daemon still held its pid file this long after SIGKILL.
    #[error("pid {pid} still holds pid file {} {waited:?} after SIGKILL", .path.display())]
    StopTimeout {
        pid: u32,
        path: PathBuf,
        waited: Duration,
    },

    /// The daemon program could not be started.
    #[error("cannot start {}: {source}", .program.display())]
    Spawn {
        program: PathBuf,
        #[source]
        source: io::Error,
    },

    /// The daemonized child exited before it was ready (e.g. it could not bind its port).
    #[error(
        "the daemon (pid {pid}) exited ({status}) before it was ready; last lines of {}:\n{tail}",
        .log.display()
    )]
    ChildExited {
        pid: u32,
        status: ExitStatus,
        log: PathBuf,
        tail: String,
    },

    /// The daemonized child did not report readiness in time; it was stopped.
    #[error(
        "the daemon (pid {pid}) was not ready after {waited:?} and was stopped; last lines of {}:\n{tail}",
        .log.display()
    )]
    ReadyTimeout {
        pid: u32,
        waited: Duration,
        log: PathBuf,
        tail: String,
    },

    /// The daemonized child reported readiness without holding the expected pid file; it
    /// was stopped (a daemon nobody can `--status` or `--stop-daemon` must not be left).
    #[error(
        "the daemon (pid {pid}) reported ready but pid file {} shows {found}; it was stopped; last lines of {}:\n{tail}",
        .pid_file.display(), .log.display()
    )]
    NotHoldingPidFile {
        pid: u32,
        pid_file: PathBuf,
        found: Status,
        log: PathBuf,
        tail: String,
    },

    /// [`crate::daemonize`] was called in a process that is itself a daemon child: the
    /// caller passed `--daemon` on to the child, which would fork forever.
    #[error(
        "daemonize called inside a daemon child ({}=1): the `--daemon` flag was passed on",
        crate::CHILD_ENV
    )]
    NestedDaemonize,

    /// Sending a readiness notification to `NOTIFY_SOCKET` failed.
    #[error("cannot notify {socket}: {source}")]
    Notify {
        socket: String,
        #[source]
        source: io::Error,
    },
}

impl DaemonError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        DaemonError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}
