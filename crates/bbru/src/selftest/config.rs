//! `bbru test`'s first group: the configuration (site.toml parses, the listen address,
//! the directories of the pid file, the log file and the embedded Data.fs), checked
//! without creating anything.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};

use super::Check;
use crate::config::{ServeConfig, SiteConfig};

pub(super) fn site_config(config: &ServeConfig, checks: &mut Vec<Check>) -> Option<SiteConfig> {
    let path = &config.site_config;
    let outcome = if path.exists() {
        SiteConfig::load(path).map_err(|e| error_chain(&e))
    } else {
        Err(format!(
            "{} does not exist: write it with `bbru configure` (the bootstrap manager \
             stays commented out)",
            path.display()
        ))
    };
    match outcome {
        Ok(site) => {
            let manager = match &site.bootstrap_manager {
                Some(b) => format!(
                    "bootstrap manager {:?} declared (comment it out once a local manager exists)",
                    b.login
                ),
                None => "bootstrap manager commented out".into(),
            };
            checks.push(Check::new(
                "site configuration",
                Ok(format!(
                    "{} parses: site {:?}, {}, {manager}",
                    path.display(),
                    site.site.title,
                    if site.site.public {
                        "public"
                    } else {
                        "not public"
                    },
                )),
            ));
            Some(site)
        }
        Err(reason) => {
            checks.push(Check::new("site configuration", Err(reason)));
            None
        }
    }
}

/// An error and its sources, `: `-separated.
pub(super) fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

pub(super) fn listen_address(listen: &str) -> Result<String, String> {
    if let Ok(address) = listen.parse::<SocketAddr>() {
        return Ok(address.to_string());
    }
    // `bbru serve` binds with the system resolver, so `localhost:8080` works too.
    match listen.to_socket_addrs() {
        Ok(mut addresses) => match addresses.next() {
            Some(first) => Ok(format!("{listen} (resolves to {first})")),
            None => Err(format!("{listen:?} resolves to no address")),
        },
        Err(e) => Err(format!(
            "{listen:?} is not a socket address (HOST:PORT, e.g. 127.0.0.1:8080): {e}"
        )),
    }
}

/// The directory `file` is in (`.` for a bare name).
pub(super) fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Whether this user may create and remove entries in `dir` (access(2), so nothing is
/// written to find out).
fn writable(dir: &Path) -> bool {
    use rustix::fs::Access;
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

/// The directory of `file` exists and is writable, or can be created: its nearest
/// existing ancestor is a writable directory.
pub(super) fn creatable_parent(file: &Path) -> Result<String, String> {
    let dir = parent_of(file);
    if dir.is_dir() {
        return if writable(&dir) {
            Ok(format!("{} exists and is writable", dir.display()))
        } else {
            Err(format!("{} is not writable by this user", dir.display()))
        };
    }
    if dir.exists() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    let ancestor = dir
        .ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists());
    match ancestor {
        Some(a) if a.is_dir() && writable(a) => Ok(format!(
            "{} does not exist yet; it will be created (in {}, which is writable)",
            dir.display(),
            a.display()
        )),
        Some(a) if a.is_dir() => Err(format!(
            "{} does not exist and cannot be created: {} is not writable by this user",
            dir.display(),
            a.display()
        )),
        Some(a) => Err(format!(
            "{} does not exist and cannot be created: {} is not a directory",
            dir.display(),
            a.display()
        )),
        None => Err(format!(
            "{} does not exist and has no existing ancestor",
            dir.display()
        )),
    }
}

pub(super) fn database_directory(data_fs: &Path) -> Result<String, String> {
    let dir = parent_of(data_fs);
    if !dir.is_dir() {
        return Err(if dir.exists() {
            format!("{} is not a directory", dir.display())
        } else {
            format!(
                "{} does not exist: create it, or correct `file` in the [storage] section \
                 of etc/serve.toml",
                dir.display()
            )
        });
    }
    if !writable(&dir) {
        return Err(format!(
            "{} is not writable by this user (the instance keeps {}'s index, lock and \
             temporary files there)",
            dir.display(),
            data_fs.display()
        ));
    }
    if data_fs.exists() && rustix::fs::access(data_fs, rustix::fs::Access::WRITE_OK).is_err() {
        return Err(format!(
            "{} is not writable by this user (the instance opens it read-write)",
            data_fs.display()
        ));
    }
    Ok(format!("{} exists and is writable", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_listen_addresses() {
        assert!(listen_address("127.0.0.1:8080").is_ok());
        assert!(listen_address("[::1]:8080").is_ok());
        let err = listen_address("127.0.0.1:99999").unwrap_err();
        assert!(err.contains("not a socket address"), "{err}");
        let err = listen_address("nonsense").unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn selftest_directories_are_checked_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let ok = creatable_parent(&dir.path().join("var/run/bbru.pid")).unwrap();
        assert!(ok.contains("will be created"), "{ok}");
        assert!(!dir.path().join("var").exists());
        let ok = creatable_parent(&dir.path().join("bbru.pid")).unwrap();
        assert!(ok.contains("exists and is writable"), "{ok}");
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let err = creatable_parent(&dir.path().join("file/x/bbru.pid")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(creatable_parent(Path::new("bbru.pid")).is_ok());
    }
}
