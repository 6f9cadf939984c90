//! Process control shared by `bbru-zeo` (the ZEO server) and `bbru serve` (the web app):
//! what `paster serve --daemon | --status | --stop-daemon` did, done right, and the log
//! set-up both share ([`init_logging`]).
//!
//! This crate owns the pid file protocol, the status/stop logic that reads it, and the
//! re-exec based daemonizing with a readiness handshake. The servers own their command
//! lines: they map `--daemon` to [`daemonize`], `--status` to [`status`] and
//! `--stop-daemon` to [`stop`], and a running server takes a [`PidFile`] and calls
//! [`notify_ready`] once it listens.
//!
//! Where paster was wrong (design.md, "Better than paster where paster was wrong"):
//!
//! * its pid file was not locked, so a stale file could not be told from a live one and a
//!   recycled pid could be signalled. Here the daemon holds an exclusive `flock` on its pid
//!   file for its whole life ([`PidFile`]); the lock, not the pid, says whether it runs, and
//!   the pid is checked against the lock holder (`/proc/locks`) and pinned with a pidfd
//!   before any signal is sent ([`stop`]);
//! * it exited 0 when the daemon was already running or when the daemonized child could not
//!   bind. Here [`daemonize`] returns only once the child holds the pid file and has said it
//!   is ready, and fails with the tail of the log otherwise.
//!
//! # Exit codes
//!
//! `--status` follows the LSB init-script convention for `status`
//! ([`Status::exit_code`]):
//!
//! | code | meaning                                                              |
//! |------|----------------------------------------------------------------------|
//! | 0    | running: the pid file is locked by the live process it names         |
//! | 1    | dead, but the pid file exists (stale: its lock is free)              |
//! | 3    | not running (no pid file)                                            |
//! | 4    | unknown: the file is locked but does not name a live holder, or unreadable |
//!
//! `--stop-daemon` ([`StopOutcome::exit_code`]) exits 0 once the daemon is gone, whether it
//! finished its work ([`StopOutcome::Stopped`]) or had to be killed after the grace period
//! ([`StopOutcome::Killed`], which the CLI reports as a warning); when there was nothing to
//! stop it exits non-zero with the status codes above: 1 for a stale pid file (which it
//! removes), 3 when not running. Errors ([`DaemonError`]) exit 1 with the message.
//!
//! # Readiness
//!
//! [`daemonize`] re-executes the program with `BBRU_DAEMON_CHILD=1` and `NOTIFY_SOCKET`
//! pointing to a unix datagram socket in a private (0700) temporary directory; the child's
//! [`notify_ready`] sends `READY=1` there. That is the systemd `sd_notify` protocol, so the
//! same call also serves a `Type=notify` systemd unit running the server in the foreground.

mod error;
mod limits;
mod logging;
mod pidfile;
mod signals;
mod spawn;
mod stop;

pub use error::DaemonError;
pub use limits::raise_open_files_limit;
pub use logging::{LogFormat, init_logging};
pub use pidfile::{PidFile, Status, status};
pub use signals::{SighupFlag, reopen_log};
pub use spawn::{
    CHILD_ENV, DaemonArgs, DaemonizeOutcome, NOTIFY_SOCKET_ENV, daemonize, is_daemon_child, notify,
    notify_ready, notify_stopping, strip_daemon_flag,
};
pub use stop::{StopOutcome, stop};
