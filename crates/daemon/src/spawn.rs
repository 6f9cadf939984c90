//! `--daemon`: [`daemonize`] re-executes the program detached and returns only once the
//! child is ready; the child side is [`notify_ready`] and [`is_daemon_child`].
//!
//! Why re-exec rather than `fork()`: forking a process that may already have threads (a
//! tokio runtime, a tracing writer) is unsound, and the crate forbids `unsafe`. The child is
//! the same binary with the same arguments minus `--daemon`, in its own process group,
//! stdin from `/dev/null`, stdout and stderr appended to the log file, and two variables:
//! [`CHILD_ENV`]`=1` and [`NOTIFY_SOCKET_ENV`] naming a unix datagram socket the parent
//! listens on, in a fresh 0700 temporary directory only this user can reach.
//!
//! Readiness is the systemd `sd_notify` protocol: the child sends `READY=1` once it listens.
//! The parent accepts the start only when that arrived *and* the pid file is locked by the
//! child; if the child exits first (e.g. it cannot bind its port), the parent fails with the
//! child's exit status and the tail of what it wrote to the log (paster exited 0 there). A
//! child not ready within the timeout is stopped, so a failed start leaves nothing running.

use std::ffi::{OsStr, OsString};
use std::fs::{File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::net::UnixDatagram;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::DaemonError;
use crate::pidfile::{Status, remove_if_stale, status};

/// Set to `1` in the environment of a daemonized child.
pub const CHILD_ENV: &str = "BBRU_DAEMON_CHILD";
/// The readiness socket (same name and protocol as systemd's).
pub const NOTIFY_SOCKET_ENV: &str = "NOTIFY_SOCKET";

/// How many bytes, and lines, of the log the errors quote.
const TAIL_BYTES: u64 = 4096;
const TAIL_LINES: usize = 20;
/// How long a child that reported ready gets to show up as the pid file holder.
const PID_FILE_WAIT: Duration = Duration::from_secs(2);
/// How often the parent checks whether the child exited while waiting for readiness.
const POLL: Duration = Duration::from_millis(20);

/// How to start the daemon. Build with [`DaemonArgs::new`], then adjust the fields.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct DaemonArgs {
    /// The program to run; [`DaemonArgs::new`] uses `std::env::current_exe()`.
    pub program: PathBuf,
    /// Its arguments (without the program name); [`DaemonArgs::new`] uses this process's
    /// arguments with `--daemon` removed ([`strip_daemon_flag`]).
    pub args: Vec<OsString>,
    /// The pid file the child is expected to hold (checked before start: a running daemon
    /// is an error, and after readiness: the child must hold it).
    pub pid_file: PathBuf,
    /// Where the child's stdout and stderr are appended.
    pub log_file: PathBuf,
    /// How long to wait for readiness before stopping the child and failing.
    pub ready_timeout: Duration,
    /// When the child must be stopped (not ready in time), how long SIGTERM gets before
    /// SIGKILL.
    pub stop_grace: Duration,
}

impl DaemonArgs {
    /// Re-exec this program (`current_exe`) with this process's arguments minus
    /// `--daemon`; 30 s to become ready, 10 s grace when it has to be stopped.
    pub fn new(
        pid_file: impl Into<PathBuf>,
        log_file: impl Into<PathBuf>,
    ) -> Result<Self, DaemonError> {
        let program = std::env::current_exe()
            .map_err(|e| DaemonError::io("find the running program", "/proc/self/exe", e))?;
        Ok(DaemonArgs {
            program,
            args: strip_daemon_flag(std::env::args_os().skip(1)),
            pid_file: pid_file.into(),
            log_file: log_file.into(),
            ready_timeout: Duration::from_secs(30),
            stop_grace: Duration::from_secs(10),
        })
    }
}

/// Removes every `--daemon` argument that comes before a `--` end-of-options marker.
pub fn strip_daemon_flag(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut options_ended = false;
    args.into_iter()
        .filter(|a| {
            if options_ended {
                return true;
            }
            if a == "--" {
                options_ended = true;
                return true;
            }
            a != "--daemon"
        })
        .collect()
}

/// A started daemon.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DaemonizeOutcome {
    /// The daemon's pid (it holds `pid_file`).
    pub pid: u32,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

impl std::fmt::Display for DaemonizeOutcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "started daemon pid {} (pid file {}, log {})",
            self.pid,
            self.pid_file.display(),
            self.log_file.display()
        )
    }
}

/// True in a process started by [`daemonize`] (`BBRU_DAEMON_CHILD=1`).
pub fn is_daemon_child() -> bool {
    std::env::var_os(CHILD_ENV).is_some_and(|v| v == "1")
}

/// Starts the daemon described by `args` and waits until it is ready (see the module
/// docs). Fails, never leaving a child running, if a daemon already holds the pid file,
/// if the child exits first, reports ready without holding the pid file, or is not ready
/// within `ready_timeout`; those errors quote the end of the log.
pub fn daemonize(args: DaemonArgs) -> Result<DaemonizeOutcome, DaemonError> {
    if is_daemon_child() {
        return Err(DaemonError::NestedDaemonize);
    }
    if let Status::Running { pid } = status(&args.pid_file) {
        return Err(DaemonError::AlreadyRunning {
            pid,
            path: args.pid_file,
        });
    }
    let log = OpenOptions::new()
        .append(true)
        .create(true)
        .open(&args.log_file)
        .map_err(|e| DaemonError::io("open log file", &args.log_file, e))?;
    let log_start = log
        .metadata()
        .map_err(|e| DaemonError::io("stat log file", &args.log_file, e))?
        .len();
    let log_err = log
        .try_clone()
        .map_err(|e| DaemonError::io("duplicate log file handle", &args.log_file, e))?;

    let sock_dir = tempfile::Builder::new()
        .prefix("bbru-daemon-")
        .tempdir()
        .map_err(|e| DaemonError::io("create a directory in", std::env::temp_dir(), e))?;
    let sock_path = sock_dir.path().join("notify");
    let sock = UnixDatagram::bind(&sock_path)
        .map_err(|e| DaemonError::io("bind readiness socket", &sock_path, e))?;
    sock.set_read_timeout(Some(POLL))
        .map_err(|e| DaemonError::io("configure readiness socket", &sock_path, e))?;

    let mut child = Command::new(&args.program)
        .args(&args.args)
        .env(CHILD_ENV, "1")
        .env(NOTIFY_SOCKET_ENV, &sock_path)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(log_err)
        .process_group(0)
        .spawn()
        .map_err(|e| DaemonError::Spawn {
            program: args.program.clone(),
            source: e,
        })?;
    let pid = child.id();
    let tail = || log_tail(&args.log_file, log_start);

    // Wait for READY=1, the child's exit, or the timeout.
    let started = Instant::now();
    let mut buf = [0u8; 4096];
    loop {
        match sock.recv(&mut buf) {
            Ok(n) if is_ready_message(buf.get(..n).unwrap_or_default(), pid) => break,
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                stop_child(&mut child, &args);
                return Err(DaemonError::io(
                    "receive on readiness socket",
                    &sock_path,
                    e,
                ));
            }
        }
        if let Ok(Some(exit)) = child.try_wait() {
            let _ = remove_if_stale(&args.pid_file);
            return Err(DaemonError::ChildExited {
                pid,
                status: exit,
                log: args.log_file.clone(),
                tail: tail(),
            });
        }
        if started.elapsed() >= args.ready_timeout {
            stop_child(&mut child, &args);
            return Err(DaemonError::ReadyTimeout {
                pid,
                waited: args.ready_timeout,
                log: args.log_file.clone(),
                tail: tail(),
            });
        }
    }

    // Ready: it must also hold the pid file, or nobody could --status or --stop-daemon it.
    let deadline = Instant::now() + PID_FILE_WAIT;
    loop {
        let found = status(&args.pid_file);
        if found == (Status::Running { pid }) {
            return Ok(DaemonizeOutcome {
                pid,
                pid_file: args.pid_file,
                log_file: args.log_file,
            });
        }
        if Instant::now() >= deadline || matches!(child.try_wait(), Ok(Some(_))) {
            stop_child(&mut child, &args);
            return Err(DaemonError::NotHoldingPidFile {
                pid,
                pid_file: args.pid_file.clone(),
                found,
                log: args.log_file.clone(),
                tail: tail(),
            });
        }
        sleep(POLL);
    }
}

/// True for a notification carrying `READY=1` that does not name another main pid (a
/// grandchild that inherited the socket and reports for itself is ignored).
fn is_ready_message(msg: &[u8], pid: u32) -> bool {
    let text = String::from_utf8_lossy(msg);
    let mut ready = false;
    for line in text.lines() {
        if line == "READY=1" {
            ready = true;
        } else if let Some(main) = line.strip_prefix("MAINPID=")
            && main.trim().parse::<u32>().ok() != Some(pid)
        {
            return false;
        }
    }
    ready
}

/// Stops our own child (SIGTERM, then SIGKILL after `stop_grace`), reaps it, and removes
/// the pid file it may have left. The pid cannot have been recycled: it is our unreaped
/// child.
fn stop_child(child: &mut Child, args: &DaemonArgs) {
    if let Some(p) = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    {
        let _ = rustix::process::kill_process(p, rustix::process::Signal::TERM);
    }
    let deadline = Instant::now() + args.stop_grace;
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            break;
        }
        sleep(POLL);
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = remove_if_stale(&args.pid_file);
}

/// The end of what was appended to the log since `from` (at most [`TAIL_LINES`] lines of
/// the last [`TAIL_BYTES`] bytes), indented for quoting in an error message.
fn log_tail(path: &Path, from: u64) -> String {
    let read = || -> io::Result<String> {
        let mut f = File::open(path)?;
        let len = f.metadata()?.len();
        let start = from.max(len.saturating_sub(TAIL_BYTES));
        f.seek(SeekFrom::Start(start))?;
        let mut bytes = Vec::new();
        f.take(TAIL_BYTES).read_to_end(&mut bytes)?;
        Ok(String::from_utf8_lossy(&bytes).into_owned())
    };
    match read() {
        Ok(text) if text.trim().is_empty() => {
            "    (the daemon wrote nothing to its log)".to_owned()
        }
        Ok(text) => {
            let lines: Vec<&str> = text.lines().collect();
            let skip = lines.len().saturating_sub(TAIL_LINES);
            lines
                .iter()
                .skip(skip)
                .map(|l| format!("    {l}"))
                .collect::<Vec<_>>()
                .join("\n")
        }
        Err(e) => format!("    (cannot read {}: {e})", path.display()),
    }
}

/// Tells the supervisor (the [`daemonize`] parent, or systemd for a `Type=notify` unit)
/// that the service is ready: call once it listens. Returns `Ok(false)` when there is no
/// supervisor (`NOTIFY_SOCKET` unset: a foreground run). A failure is worth a log line but
/// not fatal: the supervisor may have gone (a parent interrupted by Ctrl-C).
pub fn notify_ready() -> Result<bool, DaemonError> {
    notify(&format!("READY=1\nMAINPID={}", std::process::id()))
}

/// Tells the supervisor that a graceful shutdown has begun (systemd `STOPPING=1`).
pub fn notify_stopping() -> Result<bool, DaemonError> {
    notify("STOPPING=1")
}

/// Sends an `sd_notify` message (newline-separated `KEY=value` lines) to `NOTIFY_SOCKET`:
/// a socket path, or an abstract socket name written `@name`. `Ok(false)` when unset.
pub fn notify(state: &str) -> Result<bool, DaemonError> {
    let Some(target) = std::env::var_os(NOTIFY_SOCKET_ENV) else {
        return Ok(false);
    };
    let err = |e: io::Error| DaemonError::Notify {
        socket: target.to_string_lossy().into_owned(),
        source: e,
    };
    let sock = UnixDatagram::unbound().map_err(err)?;
    send_to_target(&sock, &target, state.as_bytes()).map_err(err)?;
    Ok(true)
}

fn send_to_target(sock: &UnixDatagram, target: &OsStr, msg: &[u8]) -> io::Result<usize> {
    use std::os::unix::ffi::OsStrExt;
    match target.as_bytes() {
        [b'@', name @ ..] => {
            use std::os::linux::net::SocketAddrExt;
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
            sock.send_to_addr(msg, &addr)
        }
        [b'/', ..] => sock.send_to(msg, Path::new(target)),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "not a unix socket path or @abstract name",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn os(v: &[&str]) -> Vec<OsString> {
        v.iter().map(OsString::from).collect()
    }

    #[test]
    fn strip_daemon_flag_keeps_everything_else() {
        assert_eq!(
            strip_daemon_flag(os(&["serve", "--daemon", "deploy.ini", "--", "--daemon"])),
            os(&["serve", "deploy.ini", "--", "--daemon"])
        );
        assert_eq!(
            strip_daemon_flag(os(&["--daemonize"])),
            os(&["--daemonize"])
        );
    }

    #[test]
    fn ready_message_parsing() {
        assert!(is_ready_message(b"READY=1\nMAINPID=42", 42));
        assert!(is_ready_message(b"READY=1", 42));
        assert!(!is_ready_message(b"READY=1\nMAINPID=43", 42));
        assert!(!is_ready_message(b"STATUS=starting", 42));
    }

    #[test]
    fn log_tail_quotes_only_new_lines() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("log");
        std::fs::write(&log, "old line\n").unwrap();
        let from = std::fs::metadata(&log).unwrap().len();
        assert!(log_tail(&log, from).contains("wrote nothing"));
        let many: String = (0..50).map(|i| format!("line {i}\n")).collect();
        std::fs::write(&log, format!("old line\n{many}")).unwrap();
        let tail = log_tail(&log, from);
        assert!(!tail.contains("old line"));
        assert!(tail.contains("line 49") && tail.contains("line 30") && !tail.contains("line 29"));
    }
}
