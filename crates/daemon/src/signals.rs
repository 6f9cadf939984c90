//! Log rotation support for a daemon whose stdout/stderr are its log file (as
//! [`crate::daemonize`] sets up): a [`SighupFlag`] set by SIGHUP, and [`reopen_log`], which
//! points stdout and stderr at a freshly opened log file. logrotate's `postrotate` then
//! only needs `kill -HUP $(cat the.pid)`.

use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::DaemonError;

/// A flag raised by SIGHUP. Registering it replaces SIGHUP's default action (terminate),
/// so a daemon that registers it survives a hangup.
#[derive(Debug, Clone)]
pub struct SighupFlag(Arc<AtomicBool>);

impl SighupFlag {
    /// Installs the SIGHUP handler (it only sets the flag: async-signal-safe).
    pub fn register() -> Result<SighupFlag, DaemonError> {
        let flag = Arc::new(AtomicBool::new(false));
        signal_hook::flag::register(signal_hook::consts::SIGHUP, Arc::clone(&flag))
            .map_err(|e| DaemonError::io("install a handler for", "SIGHUP", e))?;
        Ok(SighupFlag(flag))
    }

    /// True once per SIGHUP burst: reads and clears the flag.
    pub fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

/// Reopens `path` (append, create) as this process's stdout and stderr, after flushing
/// what Rust's stdout buffered. Used after log rotation moved the old file away.
pub fn reopen_log(path: impl AsRef<Path>) -> Result<(), DaemonError> {
    let path = path.as_ref();
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(path)
        .map_err(|e| DaemonError::io("open log file", path, e))?;
    rustix::stdio::dup2_stdout(&file)
        .map_err(|e| DaemonError::io("redirect stdout to", path, e.into()))?;
    rustix::stdio::dup2_stderr(&file)
        .map_err(|e| DaemonError::io("redirect stderr to", path, e.into()))?;
    Ok(())
}
