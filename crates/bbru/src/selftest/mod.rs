//! `bbru test`: the release's own checks, run against an installation's configuration
//! before its instance starts (the seed's step 5: "having first run the tests, start the
//! application": `bin/test`, then `bin/paster serve --daemon`).
//!
//! This module owns what those checks are and how they are made; the CLI only prints the
//! [`Check`]s [`run`] returns (nothing is printed here) and exits non-zero if one failed.
//! The checks come in three groups, in this order:
//!
//! 1. **Configuration**: `etc/site.toml` parses; the listen address is a socket address;
//!    the directories of the pid file and of the log file exist, or can be created (the
//!    nearest existing ancestor is a writable directory; nothing is created); the
//!    embedded Data.fs's directory exists and is writable.
//! 2. **Connectivity**: the configured storage is opened *read-only*
//!    (`FileStorage::open_read_only`, which takes no lock, so the previous release may
//!    keep running on it; or a ZEO `ClientStorage` registered read-only, waiting at most
//!    [`crate::limits::SELFTEST_ZEO_WAIT`]) and its last transaction is reported.  A Data.fs that does not exist
//!    in an existing directory is *not* a failure: that is a new installation, whose
//!    database `bbru serve` creates; the functional checks then run on an empty
//!    database.
//! 3. **Functional**: the read-only storage is wrapped in a [`DemoStorage`](zodb_storage::DemoStorage) overlay, so
//!    every write goes to memory and the database is untouched (the base could not be
//!    written anyway: it is open read-only).  The application is built over it with
//!    [`startup::app`](crate::startup::app) and a copy of the site configuration whose
//!    bootstrap manager is a throwaway one (login and password made up for this run,
//!    `keep = true` so that a local manager does not disable it; a database without a
//!    site gets one in the overlay, created by that manager), served in-process on
//!    `127.0.0.1:0`, and driven over real HTTP with a cookie-keeping client, the way a
//!    browser uses the site: health, log in through the form (with the CSRF token of the
//!    login page), add a folder and a page through the add forms, view the page
//!    (rendered Markdown), edit it, see it in the folder's listing, check an anonymous
//!    client is refused (401, or 404 where visitors may not see the page) when it tries
//!    to edit, log out.  Each step is one check; after a failed step the remaining ones
//!    are reported as not run.
//!
//! The copy of the site configuration also sets `secure_cookies = "never"`: the checks
//! talk plain HTTP to 127.0.0.1, where a client keeps no `Secure` cookie.
//!
//! [`run`] blocks (it runs its own runtime for the server and a blocking HTTP client):
//! call it from a plain thread, never from inside an async runtime.

use std::fmt;

use crate::config::{ServeConfig, StorageConfig};

mod config;
mod database;
mod functional;

use config::{
    creatable_parent, database_directory, error_chain, listen_address, parent_of, site_config,
};
use database::open_database;
use functional::functional;

/// One check: its name, and what it found (`Ok`) or why it failed (`Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(name: &str, outcome: Result<String, String>) -> Check {
        Check {
            name: name.to_owned(),
            outcome,
        }
    }

    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// `ok    name: detail` or `FAIL  name: reason`, one line.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(detail) => write!(f, "ok    {}: {detail}", self.name),
            Err(reason) => write!(f, "FAIL  {}: {reason}", self.name),
        }
    }
}

/// Whether every check passed.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(Check::passed)
}

/// Runs the checks (see the module documentation) against `config`; writes nothing to
/// its database, its files or its directories.
pub fn run(config: &ServeConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let site = site_config(config, &mut checks);
    checks.push(Check::new("listen address", listen_address(&config.listen)));
    checks.push(Check::new(
        "pid file directory",
        creatable_parent(&config.pid_file),
    ));
    checks.push(Check::new(
        "log file directory",
        match &config.log_file {
            Some(path) => creatable_parent(path),
            None => Ok("no log file configured: logs go to standard error \
                        (with --daemon, to bbru.log beside the pid file)"
                .into()),
        },
    ));
    if let StorageConfig::File(path) = &config.storage {
        checks.push(Check::new("database directory", database_directory(path)));
    }
    let base = open_database(config);
    checks.push(Check::new(
        "database connection",
        base.as_ref()
            .map(|b| b.detail.clone())
            .map_err(String::clone),
    ));
    match (site, &base) {
        (Some(site), Ok(base)) => functional(config, site, base.storage.clone(), &mut checks),
        (None, _) => checks.push(Check::new(
            "functional checks",
            Err("not run: the site configuration is unusable".into()),
        )),
        (Some(_), Err(_)) => checks.push(Check::new(
            "functional checks",
            Err("not run: the database could not be opened".into()),
        )),
    }
    if let Ok(base) = base
        && base.close
    {
        // Read-only: closing writes nothing (a FileStorage saves no index then).
        let _ = base.storage.close();
    }
    checks
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_check_display() {
        let ok = Check::new("a", Ok("fine".into()));
        let bad = Check::new("b", Err("broken".into()));
        assert_eq!(ok.to_string(), "ok    a: fine");
        assert_eq!(bad.to_string(), "FAIL  b: broken");
        assert!(!all_passed(&[ok.clone(), bad]));
        assert!(all_passed(&[ok]));
    }
}
