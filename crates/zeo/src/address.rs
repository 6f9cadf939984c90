//! Where a ZEO server listens, and so where a client connects: one [`Address`] type for
//! the server's `-a` flag and `zeo.conf` `address`, and for the client's
//! `ClientOptions::addresses`, parsed by one rule.
//!
//! The rule is runzeo's: a value containing `/` is a unix socket path; `PORT` and
//! `:PORT` mean `127.0.0.1:PORT` (loopback, never every interface by accident); anything
//! else is `HOST:PORT`.  The empty string is refused ([`AddressError::Empty`]): it names
//! no server, and is nearly always an unset setting, which should be said rather than
//! turned into a bind or a connection that fails later with a stranger message.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// A TCP `HOST:PORT` or a unix socket path.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Address {
    /// `HOST:PORT`, resolved when used.
    Tcp(String),
    /// A unix socket's path.
    Unix(PathBuf),
}

/// Why a text is no address.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AddressError {
    /// The empty string.
    #[error("an empty address names no server (give HOST:PORT, PORT or a unix socket path)")]
    Empty,
}

impl Address {
    /// Parses `s` by the rule in the module doc.
    pub fn parse(s: &str) -> Result<Address, AddressError> {
        if s.is_empty() {
            Err(AddressError::Empty)
        } else if s.contains('/') {
            Ok(Address::Unix(PathBuf::from(s)))
        } else if s.chars().all(|c| c.is_ascii_digit()) {
            Ok(Address::Tcp(format!("127.0.0.1:{s}")))
        } else if let Some(port) = s.strip_prefix(':') {
            Ok(Address::Tcp(format!("127.0.0.1:{port}")))
        } else {
            Ok(Address::Tcp(s.to_string()))
        }
    }
}

impl FromStr for Address {
    type Err = AddressError;

    fn from_str(s: &str) -> Result<Address, AddressError> {
        Address::parse(s)
    }
}

impl fmt::Display for Address {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Address::Tcp(a) => f.write_str(a),
            Address::Unix(p) => write!(f, "{}", p.display()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(input: &str, expected: Result<Address, AddressError>) {
        assert_eq!(Address::parse(input), expected, "{input:?}");
    }

    #[test]
    fn addresses_parse_like_runzeo() {
        let tcp = |a: &str| Ok(Address::Tcp(a.into()));
        let unix = |p: &str| Ok(Address::Unix(p.into()));
        check("8100", tcp("127.0.0.1:8100"));
        check(":8100", tcp("127.0.0.1:8100"));
        check("db:8100", tcp("db:8100"));
        check("0.0.0.0:8100", tcp("0.0.0.0:8100"));
        check("[::1]:8100", tcp("[::1]:8100"));
        check("./zeo.sock", unix("./zeo.sock"));
        check("/run/zeo.sock", unix("/run/zeo.sock"));
    }

    /// Regression: the server read `""` as `127.0.0.1:` and the client as a host named
    /// `""`; both now refuse it with the same error.
    #[test]
    fn an_empty_address_is_refused() {
        check("", Err(AddressError::Empty));
        assert!("".parse::<Address>().is_err());
        assert!(
            AddressError::Empty
                .to_string()
                .contains("HOST:PORT, PORT or a unix socket path")
        );
    }

    #[test]
    fn display_gives_back_what_was_meant() {
        assert_eq!(
            Address::parse("8100").unwrap().to_string(),
            "127.0.0.1:8100"
        );
        assert_eq!(
            Address::parse("/run/z.sock").unwrap().to_string(),
            "/run/z.sock"
        );
    }
}
