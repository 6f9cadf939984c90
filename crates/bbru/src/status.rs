//! What `bbru serve --status` shows besides "running": the running instance writes a
//! small status file next to its pid file once it listens (release, pid, the address it
//! actually listens on, storage, start time) and removes it when it exits; `--status`
//! reads it when the pid file's lock says the instance runs.  Written by the instance
//! itself, so it is what runs, not what a configuration file (maybe edited since, or
//! overridden by flags at start) says.

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

/// The status file of a running instance.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstanceStatus {
    pub pid: u32,
    /// `bbru-X.Y.Z`, empty when the configuration names none.
    pub release: String,
    /// The address the listening socket is bound to.
    pub address: String,
    /// The storage's name (a file path, or the ZEO server's address).
    pub storage: String,
    /// When the instance started, in seconds since the Unix epoch.
    pub started: u64,
}

/// The status file beside `pid_file`: `bbru.pid` → `bbru.status.json`.
pub fn path_for(pid_file: &Path) -> PathBuf {
    pid_file.with_extension("status.json")
}

impl InstanceStatus {
    /// Writes the file atomically (a temporary file renamed over it).
    pub fn write(&self, path: &Path) -> std::io::Result<()> {
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, serde_json::to_vec_pretty(self)?)?;
        std::fs::rename(&tmp, path)
    }

    /// The file at `path`, if it is there and readable.
    pub fn read(path: &Path) -> Option<InstanceStatus> {
        serde_json::from_slice(&std::fs::read(path).ok()?).ok()
    }

    /// The lines `--status` prints, `now` being the current time.
    pub fn describe(&self, now: SystemTime) -> Vec<String> {
        let since = now
            .duration_since(UNIX_EPOCH + Duration::from_secs(self.started))
            .unwrap_or_default();
        let release = if self.release.is_empty() {
            "(none configured)"
        } else {
            &self.release
        };
        vec![
            format!("release: {release}"),
            format!("pid:     {}", self.pid),
            format!("address: {}", self.address),
            format!("storage: {}", self.storage),
            format!("uptime:  {}", uptime(since)),
        ]
    }
}

/// `3d 4h 5m 6s`, leading zero units left out.
fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    let (days, hours, minutes, seconds) = (s / 86400, s / 3600 % 24, s / 60 % 60, s % 60);
    let mut out = String::new();
    for (n, unit) in [(days, "d"), (hours, "h"), (minutes, "m")] {
        if n > 0 || !out.is_empty() {
            out.push_str(&format!("{n}{unit} "));
        }
    }
    out.push_str(&format!("{seconds}s"));
    out
}

/// Removes the status file when dropped (the instance exits).
#[derive(Debug)]
pub struct StatusFile(pub PathBuf);

impl Drop for StatusFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_file_round_trips_and_describes_uptime() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("bbru.pid"));
        assert_eq!(path, dir.path().join("bbru.status.json"));
        let status = InstanceStatus {
            pid: 42,
            release: "bbru-1.2.3".into(),
            address: "127.0.0.1:8080".into(),
            storage: "127.0.0.1:8100".into(),
            started: 1_000_000,
        };
        status.write(&path).unwrap();
        assert_eq!(InstanceStatus::read(&path), Some(status.clone()));
        let now = UNIX_EPOCH + Duration::from_secs(1_000_000 + 90_061);
        let lines = status.describe(now);
        assert!(
            lines.contains(&"release: bbru-1.2.3".to_owned()),
            "{lines:?}"
        );
        assert!(
            lines.contains(&"uptime:  1d 1h 1m 1s".to_owned()),
            "{lines:?}"
        );
        assert_eq!(uptime(Duration::from_secs(5)), "5s");
        assert_eq!(uptime(Duration::from_secs(3600)), "1h 0m 0s");
    }
}
