//! The pid file protocol: [`PidFile`] (taken by the running daemon itself) and [`status`]
//! (read by `--status`, `--stop-daemon` and [`crate::daemonize`]).
//!
//! The protocol, which every reader and writer here follows:
//!
//! * A daemon holds an exclusive `flock` on its pid file for its whole life. The kernel drops
//!   the lock when the process dies, however it dies, so "file present, lock free" means
//!   stale, whatever pid the file names.
//! * The file never appears at its path unlocked or half written: [`PidFile::acquire`]
//!   writes `"<pid>\n"` into a fresh temporary file in the same directory, locks it, then
//!   links it into place with a no-clobber rename (`renameat2(RENAME_NOREPLACE)`, or
//!   `link`), or, when a stale file is there, renames it over the stale one while holding the
//!   stale file's lock (so two starters cannot both replace it).
//! * Readers probe with a *shared* lock (`try_lock_shared`): it fails only while someone
//!   holds the exclusive lock, and readers never disturb each other or look like a daemon.
//! * After locking, readers and writers check the path still names the inode they locked
//!   (a daemon unlinks its file on exit while still holding the lock); if not, they retry.
//! * The pid in a locked file is cross-checked: it must be alive (`kill(pid, 0)`), and where
//!   `/proc/locks` is readable the exclusive lock on that inode must be held by that very
//!   pid. Neither the status nor [`crate::stop`] trusts a pid the lock does not vouch for.

use std::fs::{self, File, Metadata, TryLockError};
use std::io::{self, Read, Write};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::thread::sleep;
use std::time::{Duration, Instant};

use crate::DaemonError;

/// How long to wait out transient lock holders (another starter or stopper busy with a
/// stale file, a daemon in its last microseconds) before giving a verdict.
const TRANSIENT_WAIT: Duration = Duration::from_millis(1000);
/// Poll interval while waiting out transient states.
const RETRY_PAUSE: Duration = Duration::from_millis(10);
/// How many times `/proc/locks` is read before concluding it says nothing (see
/// [`lock_holder`]).
const LOCKS_READS: u32 = 8;
/// A pid file longer than this is not one of ours.
const MAX_PID_FILE_LEN: u64 = 64;

/// The pid file of the running daemon: holds `"<pid>\n"` and an exclusive `flock` for as
/// long as this value lives. Dropping it (clean exit) removes the file, then releases the
/// lock; a crash leaves the file with a free lock, which [`status`] reports as stale.
#[derive(Debug)]
pub struct PidFile {
    path: PathBuf,
    /// The locked file; `None` once released.
    file: Option<File>,
    pid: u32,
    replaced_stale: Option<u32>,
}

impl PidFile {
    /// Takes the pid file at `path` for this process: fails with
    /// [`DaemonError::AlreadyRunning`] (naming the other pid) if a live daemon holds it, and
    /// silently replaces a stale one (see [`PidFile::replaced_stale_pid`]). The directory
    /// must exist.
    pub fn acquire(path: impl AsRef<Path>) -> Result<PidFile, DaemonError> {
        let path = path.as_ref();
        let pid = std::process::id();
        let dir = match path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        let name = path
            .file_name()
            .map_or_else(|| "pid".to_owned(), |n| n.to_string_lossy().into_owned());
        let deadline = Instant::now() + TRANSIENT_WAIT;
        let give_up = Instant::now() + 5 * TRANSIENT_WAIT;

        // The complete, locked file that will appear at `path`.
        let mut tmp = tempfile::Builder::new()
            .prefix(&format!(".{name}."))
            .suffix(".tmp")
            .permissions(fs::Permissions::from_mode(0o644))
            .tempfile_in(dir)
            .map_err(|e| DaemonError::io("create a temporary pid file in", dir, e))?;
        tmp.as_file_mut()
            .write_all(format!("{pid}\n").as_bytes())
            .map_err(|e| DaemonError::io("write temporary pid file", tmp.path(), e))?;
        tmp.as_file()
            .try_lock()
            .map_err(|e| DaemonError::io("lock temporary pid file", tmp.path(), e.into()))?;

        loop {
            match tmp.persist_noclobber(path) {
                Ok(file) => {
                    return Ok(PidFile {
                        path: path.to_owned(),
                        file: Some(file),
                        pid,
                        replaced_stale: None,
                    });
                }
                Err(e) if e.error.kind() == io::ErrorKind::AlreadyExists => tmp = e.file,
                Err(e) => return Err(DaemonError::io("create pid file", path, e.error)),
            }
            // Something is at `path`: a live daemon, a stale file, or a transient state.
            match probe(path)? {
                Probe::Missing => {}
                Probe::Held { meta, pid: held } => {
                    if let Some(other) = held
                        && alive(other)
                        && lock_holder(&meta, other) != Holder::Contradicted
                    {
                        return Err(DaemonError::AlreadyRunning {
                            pid: other,
                            path: path.to_owned(),
                        });
                    }
                    if Instant::now() >= deadline {
                        return Err(DaemonError::Inconsistent {
                            path: path.to_owned(),
                            pid: held,
                            detail: held_detail(held),
                        });
                    }
                    sleep(jittered(RETRY_PAUSE));
                }
                Probe::Free {
                    file: stale,
                    meta,
                    pid: stale_pid,
                } => {
                    // Serialize with other starters/stoppers: replace the stale file only
                    // while holding its exclusive lock, and only if it is still at `path`.
                    match stale.try_lock() {
                        Ok(()) if still_linked(path, &meta)? => {
                            let file = tmp.persist(path).map_err(|e| {
                                DaemonError::io("replace stale pid file", path, e.error)
                            })?;
                            drop(stale);
                            return Ok(PidFile {
                                path: path.to_owned(),
                                file: Some(file),
                                pid,
                                replaced_stale: stale_pid,
                            });
                        }
                        Ok(()) | Err(TryLockError::WouldBlock) => {
                            // Lost a race with another starter or reader: back off a
                            // little, differently each time, so racers do not collide again.
                            if Instant::now() >= give_up {
                                return Err(DaemonError::Inconsistent {
                                    path: path.to_owned(),
                                    pid: stale_pid,
                                    detail: "the stale file stays locked by other processes, \
                                             so it cannot be replaced"
                                        .to_owned(),
                                });
                            }
                            sleep(jittered(RETRY_PAUSE));
                        }
                        Err(TryLockError::Error(e)) => {
                            return Err(DaemonError::io("lock pid file", path, e));
                        }
                    }
                }
            }
        }
    }

    /// The pid file's path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pid written into the file (this process).
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The pid named by a stale pid file this one replaced (a previous instance that died
    /// without cleaning up), worth a log line. `None` if there was none, or it named no pid.
    pub fn replaced_stale_pid(&self) -> Option<u32> {
        self.replaced_stale
    }

    /// Removes the pid file and releases the lock, reporting failure (dropping does the same
    /// and ignores errors). The file is removed only if the path still names the file this
    /// process locked.
    pub fn release(mut self) -> Result<(), DaemonError> {
        self.remove()
    }

    fn remove(&mut self) -> Result<(), DaemonError> {
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        let meta = file
            .metadata()
            .map_err(|e| DaemonError::io("stat pid file", &self.path, e))?;
        if still_linked(&self.path, &meta)? {
            match fs::remove_file(&self.path) {
                Ok(()) => {}
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(DaemonError::io("remove pid file", &self.path, e)),
            }
        }
        // Unlock only after the file is gone, so nobody sees it present and free.
        drop(file);
        Ok(())
    }
}

impl Drop for PidFile {
    fn drop(&mut self) {
        let _ = self.remove();
    }
}

/// What a pid file says about its daemon. See the crate docs for the exit codes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Status {
    /// The file is locked by the live process it names.
    Running { pid: u32 },
    /// The file exists but its lock is free: the daemon died without removing it. `pid` is
    /// what the file names (`None` if unreadable); that pid may by now belong to an
    /// unrelated process, which is never signalled.
    Stale { pid: Option<u32> },
    /// No pid file.
    NotRunning,
    /// The file is locked but does not name a live lock holder, or could not be read.
    Unknown { pid: Option<u32>, reason: String },
}

impl Status {
    /// The LSB `status` exit code: 0 running, 1 stale pid file, 3 not running, 4 unknown.
    pub fn exit_code(&self) -> i32 {
        match self {
            Status::Running { .. } => 0,
            Status::Stale { .. } => 1,
            Status::NotRunning => 3,
            Status::Unknown { .. } => 4,
        }
    }

    /// True only for [`Status::Running`].
    pub fn is_running(&self) -> bool {
        matches!(self, Status::Running { .. })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Status::Running { pid } => write!(f, "running (pid {pid})"),
            Status::Stale { pid: Some(pid) } => write!(
                f,
                "not running: stale pid file (pid {pid} exited without removing it)"
            ),
            Status::Stale { pid: None } => {
                write!(f, "not running: stale pid file (naming no readable pid)")
            }
            Status::NotRunning => write!(f, "not running"),
            Status::Unknown { reason, .. } => write!(f, "unknown: {reason}"),
        }
    }
}

/// Reads the state of the daemon whose pid file is `path`, decided by the file's lock and
/// cross-checked against the pid it names. Never blocks for long (transient states are
/// waited out for at most about a second) and never modifies the file.
pub fn status(path: impl AsRef<Path>) -> Status {
    let path = path.as_ref();
    let deadline = Instant::now() + TRANSIENT_WAIT;
    loop {
        match probe(path) {
            Err(e) => {
                return Status::Unknown {
                    pid: None,
                    reason: e.to_string(),
                };
            }
            Ok(Probe::Missing) => return Status::NotRunning,
            Ok(Probe::Free { pid, .. }) => return Status::Stale { pid },
            Ok(Probe::Held { meta, pid }) => {
                if let Some(p) = pid
                    && alive(p)
                    && lock_holder(&meta, p) != Holder::Contradicted
                {
                    return Status::Running { pid: p };
                }
                if Instant::now() >= deadline {
                    return Status::Unknown {
                        pid,
                        reason: format!(
                            "pid file {} is locked, but {}",
                            path.display(),
                            held_detail(pid)
                        ),
                    };
                }
                sleep(jittered(RETRY_PAUSE));
            }
        }
    }
}

/// `base` plus up to `base` again, varying from call to call.
fn jittered(base: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let spread = u32::try_from(base.as_nanos()).unwrap_or(u32::MAX).max(1);
    base + Duration::from_nanos(u64::from(nanos % spread))
}

/// Why a held pid file is not trusted, for messages.
pub(crate) fn held_detail(pid: Option<u32>) -> String {
    match pid {
        None => "it holds no readable pid".to_owned(),
        Some(p) if !alive(p) => format!("pid {p} it names is not alive"),
        Some(p) => format!("the lock is held by another process than pid {p} it names"),
    }
}

/// One look at a pid file.
pub(crate) enum Probe {
    /// No file at the path.
    Missing,
    /// Someone holds the exclusive lock (a daemon, or a starter/stopper replacing or
    /// removing a stale file). `pid` is what the file names.
    Held { meta: Metadata, pid: Option<u32> },
    /// The lock is free: stale. `file` holds a shared lock on it, `meta` identifies it.
    Free {
        file: File,
        meta: Metadata,
        pid: Option<u32>,
    },
}

/// Looks at the pid file at `path`, retrying while the path moves under us.
pub(crate) fn probe(path: &Path) -> Result<Probe, DaemonError> {
    loop {
        let file = match File::open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Probe::Missing),
            Err(e) => return Err(DaemonError::io("open pid file", path, e)),
        };
        let meta = file
            .metadata()
            .map_err(|e| DaemonError::io("stat pid file", path, e))?;
        let held = match file.try_lock_shared() {
            Ok(()) => false,
            Err(TryLockError::WouldBlock) => true,
            Err(TryLockError::Error(e)) => return Err(DaemonError::io("lock pid file", path, e)),
        };
        if !still_linked(path, &meta)? {
            // Removed or replaced between open and lock: look again.
            continue;
        }
        let pid = read_pid(&file).map_err(|e| DaemonError::io("read pid file", path, e))?;
        return Ok(if held {
            Probe::Held { meta, pid }
        } else {
            Probe::Free { file, meta, pid }
        });
    }
}

/// True if `path` still names the inode described by `meta`.
pub(crate) fn still_linked(path: &Path, meta: &Metadata) -> Result<bool, DaemonError> {
    match fs::metadata(path) {
        Ok(now) => Ok(now.dev() == meta.dev() && now.ino() == meta.ino()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(DaemonError::io("stat pid file", path, e)),
    }
}

/// The pid a pid file names: `"<pid>\n"`, surrounding whitespace tolerated (files written
/// by hand or by paster). `None` for anything else.
fn read_pid(mut file: &File) -> io::Result<Option<u32>> {
    let mut text = String::new();
    match Read::by_ref(&mut file)
        .take(MAX_PID_FILE_LEN)
        .read_to_string(&mut text)
    {
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::InvalidData => return Ok(None),
        Err(e) => return Err(e),
    }
    Ok(parse_pid(&text))
}

fn parse_pid(text: &str) -> Option<u32> {
    let pid: u32 = text.trim().parse().ok()?;
    (pid > 0 && i32::try_from(pid).is_ok()).then_some(pid)
}

/// Whether a process with this pid exists (a zombie counts; `EPERM` means it exists but
/// belongs to another user).
pub(crate) fn alive(pid: u32) -> bool {
    let Some(p) = i32::try_from(pid)
        .ok()
        .and_then(rustix::process::Pid::from_raw)
    else {
        return false;
    };
    !matches!(
        rustix::process::test_kill_process(p),
        Err(rustix::io::Errno::SRCH)
    )
}

/// What `/proc/locks` says about who holds the exclusive `flock` on a pid file.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Holder {
    /// The named pid holds it.
    Confirmed,
    /// Other pids hold an exclusive flock on this very inode; the named pid does not.
    Contradicted,
    /// `/proc/locks` unreadable or silent about this inode (other OS, device numbers that
    /// do not match, as on some overlay filesystems): only the lock probe is known.
    Unknown,
}

/// Checks in `/proc/locks` that `pid` is the process holding the exclusive `flock` on the
/// inode `meta` describes. A pid from another pid namespace shows as contradicted, which is
/// right: signalling it from here would hit another process.
///
/// `/proc/locks` is no snapshot: the kernel hands it out a page per `read(2)`, and locks
/// taken or dropped elsewhere between two reads can make it skip lines. So a file with no
/// line for the inode is read again a few times before the answer is "unknown".
pub(crate) fn lock_holder(meta: &Metadata, pid: u32) -> Holder {
    for attempt in 0..LOCKS_READS {
        let Ok(text) = fs::read_to_string("/proc/locks") else {
            return Holder::Unknown;
        };
        match holder_in(&text, meta.dev(), meta.ino(), pid) {
            Holder::Unknown if attempt + 1 < LOCKS_READS => sleep(Duration::from_millis(1)),
            verdict => return verdict,
        }
    }
    Holder::Unknown
}

/// Parses `/proc/locks` lines like `1: FLOCK  ADVISORY  WRITE 28852 fe:00:10013011 0 EOF`
/// (blocked waiters, `1: -> FLOCK ...`, are skipped: they hold nothing).
fn holder_in(text: &str, dev: u64, ino: u64, pid: u32) -> Holder {
    let (major, minor) = (rustix::fs::major(dev), rustix::fs::minor(dev));
    let mut contradicted = false;
    for line in text.lines() {
        let fields: Vec<&str> = line.split_whitespace().collect();
        let [_, kind, _, mode, holder, id, ..] = fields.as_slice() else {
            continue;
        };
        if *kind != "FLOCK" || *mode != "WRITE" {
            continue;
        }
        let mut parts = id.split(':');
        let (Some(maj), Some(min), Some(i), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            continue;
        };
        if i.parse::<u64>().ok() != Some(ino) {
            continue;
        }
        let same_dev = u32::from_str_radix(maj, 16).ok() == Some(major)
            && u32::from_str_radix(min, 16).ok() == Some(minor);
        if holder.parse::<u32>().ok() == Some(pid) {
            return Holder::Confirmed;
        }
        contradicted |= same_dev;
    }
    if contradicted {
        Holder::Contradicted
    } else {
        Holder::Unknown
    }
}

/// Removes the pid file at `path` if it is stale (present, lock free), holding its
/// exclusive lock while doing so. Returns `Some(pid it named)` if it removed one.
pub(crate) fn remove_if_stale(path: &Path) -> Result<Option<Option<u32>>, DaemonError> {
    let deadline = Instant::now() + TRANSIENT_WAIT;
    loop {
        let Probe::Free { file, meta, pid } = probe(path)? else {
            return Ok(None);
        };
        match file.try_lock() {
            Ok(()) if still_linked(path, &meta)? => {
                match fs::remove_file(path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                    Err(e) => return Err(DaemonError::io("remove stale pid file", path, e)),
                }
                return Ok(Some(pid));
            }
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                // Another reader's shared probe, or a starter replacing it: look again.
                if Instant::now() >= deadline {
                    return Ok(None);
                }
                sleep(jittered(RETRY_PAUSE));
            }
            Err(TryLockError::Error(e)) => return Err(DaemonError::io("lock pid file", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_pid_accepts_only_a_positive_pid() {
        assert_eq!(parse_pid("123\n"), Some(123));
        assert_eq!(parse_pid("  42  "), Some(42));
        assert_eq!(parse_pid(""), None);
        assert_eq!(parse_pid("0\n"), None);
        assert_eq!(parse_pid("-5"), None);
        assert_eq!(parse_pid("3000000000"), None);
        assert_eq!(parse_pid("12 34"), None);
    }

    #[test]
    fn proc_locks_parsing() {
        let dev = rustix::fs::makedev(0xfe, 0);
        let text = "1: FLOCK  ADVISORY  WRITE 28852 fe:00:10013011 0 EOF\n\
                    2: FLOCK  ADVISORY  READ 777 fe:00:555 0 EOF\n\
                    3: -> FLOCK  ADVISORY  WRITE 999 fe:00:555 0 EOF\n\
                    4: POSIX  ADVISORY  WRITE 888 fe:00:555 0 EOF\n";
        assert_eq!(holder_in(text, dev, 10013011, 28852), Holder::Confirmed);
        assert_eq!(holder_in(text, dev, 10013011, 1), Holder::Contradicted);
        // Only shared, blocked or POSIX locks on 555: nothing known about an exclusive flock.
        assert_eq!(holder_in(text, dev, 555, 1), Holder::Unknown);
        // Same inode number on another device: not this file.
        let other = rustix::fs::makedev(8, 1);
        assert_eq!(holder_in(text, other, 10013011, 1), Holder::Unknown);
    }
}
