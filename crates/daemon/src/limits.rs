//! The process's own resource limits: a server raises its open-files limit to what the
//! system allows, so its connection limit, not the login shell's default, decides how
//! many clients it serves.

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Raises the soft limit on open files to the hard limit, and returns the soft limit in
/// force afterwards (`None`: unlimited).  A server accepting up to a thousand connections
/// (bbru-zeo's default) needs more than the 1024 descriptors Debian gives a session by
/// default; the hard limit is what the administrator allows, so taking it asks for no
/// privilege.  On failure the limit stays as it was.
pub fn raise_open_files_limit() -> Option<u64> {
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit {
            current: limit.maximum,
            maximum: limit.maximum,
        };
        if setrlimit(Resource::Nofile, raised).is_ok() {
            return limit.maximum;
        }
    }
    limit.current
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_soft_open_files_limit_ends_at_the_hard_one() {
        let after = super::raise_open_files_limit();
        let now = rustix::process::getrlimit(rustix::process::Resource::Nofile);
        assert_eq!(now.current, after);
        assert_eq!(now.current, now.maximum);
    }
}
