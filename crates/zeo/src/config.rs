//! `zeo.conf`: the ZConfig file Python's `runzeo -C` reads, as far as this
//! server needs it (spec §9, ZEO's `server.xml` and ZODB's `component.xml`).
//!
//! ```text
//! <zeo>
//!   address 127.0.0.1:8100
//!   read-only false
//!   transaction-timeout 30
//!   msgpack false
//!   <ssl>
//!     certificate /etc/bbru/zeo.pem
//!     key /etc/bbru/zeo-key.pem
//!     authenticate /etc/bbru/clients-ca.pem
//!   </ssl>
//! </zeo>
//! <filestorage 1>
//!   path /var/lib/bbru/Data.fs
//! </filestorage>
//! ```
//!
//! A PostgreSQL database (shared with RelStorage clients and other bbru
//! processes) is served instead of a file by a `<relstorage>` section, as
//! RelStorage's ZConfig component spells it:
//!
//! ```text
//! <relstorage 1>
//!   poll-interval 0.25
//!   <postgresql>
//!     dsn dbname='zodb' user='zodb' host='db.example' password='...'
//!   </postgresql>
//! </relstorage>
//! ```
//!
//! `dsn` is a libpq `key=value` string or a `postgresql://` URL;
//! `create-schema` (default true, as RelStorage's) makes the schema where it is
//! missing; `poll-interval` is how often, in seconds, the server polls for
//! the commits of RelStorage clients (0: the default); `blob-dir` (with
//! `shared-blob-dir false`: blobs are kept in the database, the directory is
//! the server's cache); `ro-replica-conf` names a file of read replicas for
//! loads, one DSN a line. What bbru does not do on PostgreSQL is refused
//! (`keep-history false`, `shared-blob-dir true`, `replica-conf`'s failover);
//! RelStorage's cache and pack tuning keys are accepted and ignored.
//!
//! Comments are `#` lines (ZConfig takes a `#` later in a line as part of
//! the value, and so do we). Unknown keys and sections are errors, so a
//! typo does not silently change nothing; keys that only matter to Python
//! (`client-conflict-resolution`, `invalidation-age`, `pid-filename`, ...)
//! are accepted and ignored.  `<ssl>` (only inside `<zeo>`) is Python's: `certificate`,
//! `key`, `authenticate` (see [`crate::tls`]; `password-function` is refused, as it names
//! a Python function).

use std::path::PathBuf;
use std::time::Duration;

use crate::server::{Address, Config};
use crate::tls::ServerTls;
use crate::wire::Encoding;

/// A storage section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageSection {
    pub name: String,
    pub path: PathBuf,
    pub read_only: bool,
    /// `blob-dir`: the storage's blob directory (ZODB's layout).
    pub blob_dir: Option<PathBuf>,
    /// A `<relstorage>` section: the database served instead of `path`.
    pub postgres: Option<PostgresSection>,
}

/// `<relstorage>` with its `<postgresql>`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PostgresSection {
    /// `dsn`: a libpq `key=value` string or a `postgresql://` URL.
    pub dsn: String,
    /// `create-schema`: make the schema where it is missing.
    pub create_schema: bool,
    /// `poll-interval` (when positive).
    pub poll_interval: Option<Duration>,
    /// `ro-replica-conf`: a file naming read replicas for loads, one DSN a
    /// line (`#` comments), read when the server starts.
    pub ro_replica_conf: Option<PathBuf>,
}

#[derive(Debug, Clone)]
pub struct ZeoConf {
    pub server: Config,
    pub storages: Vec<StorageSection>,
    /// The `<ssl>` section: the files are read when the server starts
    /// ([`ServerTls::server_config`]), so their errors name them.
    pub tls: Option<ServerTls>,
}

/// A config error with its line number.
#[derive(Debug, thiserror::Error)]
#[error("line {line}: {message}")]
pub struct ConfigError {
    pub line: usize,
    pub message: String,
}

fn boolean(v: &str, line: usize) -> Result<bool, ConfigError> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "yes" | "on" | "1" => Ok(true),
        "false" | "no" | "off" | "0" => Ok(false),
        _ => Err(ConfigError {
            line,
            message: format!("not a boolean: {v:?}"),
        }),
    }
}

/// A key of `<relstorage>` (or of its `<postgresql>` when `in_pg`).
fn relstorage_key(
    s: &mut StorageSection,
    key: &str,
    value: &str,
    in_pg: bool,
    line: usize,
) -> Result<(), ConfigError> {
    let err = |message: String| ConfigError { line, message };
    let Some(pg) = s.postgres.as_mut() else {
        return Err(err("not a <relstorage> section".into()));
    };
    if in_pg {
        return match key {
            "dsn" => {
                pg.dsn = value.to_string();
                Ok(())
            }
            // psycopg2 or pg8000: Python's choice; we speak the protocol.
            "driver" => Ok(()),
            other => Err(err(format!("unknown <postgresql> key {other:?}"))),
        };
    }
    match key {
        "read-only" => s.read_only = boolean(value, line)?,
        "create-schema" => pg.create_schema = boolean(value, line)?,
        "poll-interval" => {
            let secs: f64 = value
                .parse()
                .map_err(|_| err(format!("not a number of seconds: {value:?}")))?;
            if !secs.is_finite() || secs < 0.0 {
                return Err(err(format!("not a number of seconds: {value:?}")));
            }
            pg.poll_interval = (secs > 0.0).then(|| Duration::from_secs_f64(secs));
        }
        "keep-history" if !boolean(value, line)? => {
            return Err(err(
                "keep-history false: bbru serves RelStorage's history-preserving schema only"
                    .into(),
            ));
        }
        "keep-history" => {}
        // Blobs are kept in the database (`blob_chunk`), the directory being
        // the server's cache of them: RelStorage's `shared-blob-dir false`.
        "blob-dir" => s.blob_dir = Some(PathBuf::from(value)),
        "shared-blob-dir" if boolean(value, line)? => {
            return Err(err(
                "<relstorage> shared-blob-dir true: bbru keeps blobs in the database \
                 (blob_chunk) with blob-dir as its cache; say shared-blob-dir false"
                    .into(),
            ));
        }
        "shared-blob-dir" => {}
        // RelStorage 3 and later ignore the chunk size too: one large object
        // a blob.
        "blob-chunk-size" => {}
        "ro-replica-conf" => pg.ro_replica_conf = Some(PathBuf::from(value)),
        "replica-conf" => {
            return Err(err(
                "<relstorage> replica-conf (failover between primaries): bbru-zeo serves one \
                 primary; read replicas go in ro-replica-conf"
                    .into(),
            ));
        }
        // RelStorage's own caches, pack tuning and lock settings: Python's.
        k if k.starts_with("cache-") || k.starts_with("pack-") || k.starts_with("blob-cache") => {}
        "name"
        | "replica-timeout"
        | "revert_when_stale"
        | "commit-lock-timeout"
        | "commit-lock-id" => {}
        other => return Err(err(format!("unknown <relstorage> key {other:?}"))),
    }
    Ok(())
}

pub fn parse(text: &str) -> Result<ZeoConf, ConfigError> {
    let mut server = Config::default();
    let mut storages = Vec::new();
    let mut section: Option<(String, Option<String>, usize)> = None;
    let mut current: Option<StorageSection> = None;
    let mut saw_address = false;
    let mut tls: Option<ServerTls> = None;
    // An open `<ssl>` section (inside `<zeo>`): its line.
    let mut in_ssl: Option<usize> = None;
    // Whether a `<postgresql>` section (inside `<relstorage>`) is open.
    let mut in_pg = false;
    for (i, raw) in text.lines().enumerate() {
        let line = i + 1;
        let l = raw.trim();
        if l.is_empty() || l.starts_with('#') {
            continue;
        }
        let err = |message: String| ConfigError { line, message };
        if let Some(close) = l.strip_prefix("</") {
            let name = close.trim_end_matches('>').trim().to_ascii_lowercase();
            if in_ssl.is_some() {
                if name != "ssl" {
                    return Err(err(format!("unexpected </{name}> (<ssl> is open)")));
                }
                in_ssl = None;
                match &tls {
                    Some(t) if !t.certificate.as_os_str().is_empty() => {}
                    _ => return Err(err("<ssl> needs a certificate".into())),
                }
                continue;
            }
            if in_pg {
                if name != "postgresql" {
                    return Err(err(format!("unexpected </{name}> (<postgresql> is open)")));
                }
                in_pg = false;
                continue;
            }
            match section.take() {
                Some((open, _, _)) if open == name => {}
                _ => return Err(err(format!("unexpected </{name}>"))),
            }
            if let Some(s) = current.take() {
                match &s.postgres {
                    Some(pg) if pg.dsn.is_empty() => {
                        return Err(err(format!(
                            "storage {}: <relstorage> needs <postgresql> with a dsn",
                            s.name
                        )));
                    }
                    Some(_) => {}
                    None if s.path.as_os_str().is_empty() => {
                        return Err(err(format!("storage {} has no path", s.name)));
                    }
                    None => {}
                }
                storages.push(s);
            }
            continue;
        }
        if let Some(open) = l.strip_prefix('<') {
            let inner = open.trim_end_matches('>').trim();
            if inner.eq_ignore_ascii_case("ssl") || inner.to_ascii_lowercase().starts_with("ssl ") {
                if section.as_ref().map(|s| s.0.as_str()) != Some("zeo") || in_ssl.is_some() {
                    return Err(err("<ssl> belongs inside <zeo>".into()));
                }
                if tls.is_some() {
                    return Err(err("a second <ssl> section".into()));
                }
                tls = Some(ServerTls {
                    certificate: PathBuf::new(),
                    key: None,
                    authenticate: None,
                });
                in_ssl = Some(line);
                continue;
            }
            if inner.eq_ignore_ascii_case("postgresql") {
                if section.as_ref().map(|s| s.0.as_str()) != Some("relstorage") || in_pg {
                    return Err(err("<postgresql> belongs inside <relstorage>".into()));
                }
                in_pg = true;
                continue;
            }
            if section.is_some() {
                return Err(err("nested sections are not supported".into()));
            }
            let mut parts = inner.split_whitespace();
            let kind = parts.next().unwrap_or_default().to_ascii_lowercase();
            let name = parts.next().map(str::to_string);
            match kind.as_str() {
                "zeo" => {}
                "filestorage" | "relstorage" => {
                    current = Some(StorageSection {
                        name: name.clone().unwrap_or_else(|| "1".into()),
                        path: PathBuf::new(),
                        read_only: false,
                        blob_dir: None,
                        postgres: (kind == "relstorage").then(|| PostgresSection {
                            ro_replica_conf: None,
                            dsn: String::new(),
                            create_schema: true,
                            poll_interval: None,
                        }),
                    });
                }
                other => {
                    return Err(err(format!(
                        "unsupported section <{other}> (this server serves <filestorage> and <relstorage>)"
                    )));
                }
            }
            section = Some((kind, name, line));
            continue;
        }
        let (key, value) = match l.split_once(char::is_whitespace) {
            Some((k, v)) => (k.to_ascii_lowercase(), v.trim().to_string()),
            None => (l.to_ascii_lowercase(), String::new()),
        };
        if let (Some(_), Some(t)) = (in_ssl, tls.as_mut()) {
            let path = || {
                if value.is_empty() {
                    Err(err(format!("<ssl> {key} needs a file name")))
                } else {
                    Ok(PathBuf::from(&value))
                }
            };
            match key.as_str() {
                "certificate" => t.certificate = path()?,
                "key" => t.key = Some(path()?),
                "authenticate" if value == "DYNAMIC" => {
                    return Err(err(
                        "<ssl> authenticate DYNAMIC is not supported: give a CA file or directory"
                            .into(),
                    ));
                }
                "authenticate" => t.authenticate = Some(path()?),
                "password-function" => {
                    return Err(err(
                        "<ssl> password-function is not supported (it names a Python function): give a decrypted key file".into(),
                    ));
                }
                other => return Err(err(format!("unknown <ssl> key {other:?}"))),
            }
            continue;
        }
        match section.as_ref().map(|s| s.0.as_str()) {
            Some("zeo") => match key.as_str() {
                "address" => {
                    server.address =
                        Address::parse(&value).map_err(|e| err(format!("<zeo> address: {e}")))?;
                    saw_address = true;
                }
                "read-only" => server.read_only = boolean(&value, line)?,
                "msgpack" => {
                    server.encoding = if boolean(&value, line)? {
                        Encoding::Msgpack
                    } else {
                        Encoding::Pickle
                    }
                }
                "transaction-timeout" => {
                    let secs: f64 = value
                        .parse()
                        .map_err(|_| err(format!("not a number of seconds: {value:?}")))?;
                    if !secs.is_finite() || secs < 0.0 {
                        return Err(err(format!("not a number of seconds: {value:?}")));
                    }
                    // 0 turns the timeout off (it would otherwise abort every vote).
                    server.transaction_timeout =
                        (secs > 0.0).then(|| Duration::from_secs_f64(secs));
                }
                "invalidation-queue-size" => {
                    server.invalidation_queue_size = value
                        .parse()
                        .map_err(|_| err(format!("not a count: {value:?}")))?;
                }
                "client-conflict-resolution"
                | "invalidation-age"
                | "pid-filename"
                | "authentication-protocol"
                | "authentication-database"
                | "authentication-realm" => {}
                other => return Err(err(format!("unknown <zeo> key {other:?}"))),
            },
            Some("filestorage") => {
                let s = current
                    .as_mut()
                    .ok_or_else(|| err("key outside a section".into()))?;
                match key.as_str() {
                    "path" => s.path = PathBuf::from(value),
                    "read-only" => s.read_only = boolean(&value, line)?,
                    "blob-dir" => s.blob_dir = Some(PathBuf::from(value)),
                    "create" | "quota" | "pack-gc" | "pack-keep-old" => {}
                    other => return Err(err(format!("unknown <filestorage> key {other:?}"))),
                }
            }
            Some("relstorage") => {
                let s = current
                    .as_mut()
                    .ok_or_else(|| err("key outside a section".into()))?;
                relstorage_key(s, &key, &value, in_pg, line)?;
            }
            _ => return Err(err(format!("{key:?} outside a section"))),
        }
    }
    if let Some(line) = in_ssl {
        return Err(ConfigError {
            line,
            message: "<ssl> is not closed".into(),
        });
    }
    if let Some((kind, _, line)) = section {
        return Err(ConfigError {
            line,
            message: format!("<{kind}> is not closed"),
        });
    }
    if !saw_address {
        return Err(ConfigError {
            line: 0,
            message: "<zeo> needs an address".into(),
        });
    }
    if storages.is_empty() {
        return Err(ConfigError {
            line: 0,
            message: "no <filestorage> or <relstorage> section".into(),
        });
    }
    Ok(ZeoConf {
        server,
        storages,
        tls,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_what_python_users_have() {
        let conf = parse(
            "# a comment\n<zeo>\n  address 127.0.0.1:8102\n  transaction-timeout 5\n  client-conflict-resolution true\n</zeo>\n<filestorage 1>\n  path ./blob.fs\n  blob-dir ./blobs\n</filestorage>\n",
        )
        .unwrap();
        assert_eq!(conf.server.address, Address::Tcp("127.0.0.1:8102".into()));
        assert_eq!(
            conf.server.transaction_timeout,
            Some(Duration::from_secs(5))
        );
        assert_eq!(
            conf.storages,
            vec![StorageSection {
                name: "1".into(),
                path: "./blob.fs".into(),
                read_only: false,
                blob_dir: Some("./blobs".into()),
                postgres: None,
            }]
        );
    }

    /// RelStorage's own spelling (its `component.xml`): `<relstorage>` with
    /// a `<postgresql>` holding the dsn; what we cannot do is refused.
    #[test]
    fn relstorage_section_serves_postgresql() {
        let with = |body: &str| {
            parse(&format!(
                "<zeo>\n address 8100\n</zeo>\n<relstorage 1>\n{body}\n</relstorage>\n"
            ))
        };
        let conf = with(
            "  poll-interval 0.5\n  cache-local-mb 100\n  <postgresql>\n    dsn dbname='zodb' host='db' user='z'\n  </postgresql>",
        )
        .unwrap();
        assert_eq!(
            conf.storages[0].postgres,
            Some(PostgresSection {
                ro_replica_conf: None,
                dsn: "dbname='zodb' host='db' user='z'".into(),
                create_schema: true,
                poll_interval: Some(Duration::from_millis(500)),
            })
        );
        assert_eq!(conf.storages[0].name, "1");
        let conf =
            with(" create-schema false\n <postgresql>\n dsn postgresql://h/db\n </postgresql>")
                .unwrap();
        let pg = conf.storages[0].postgres.clone().unwrap();
        assert!(!pg.create_schema);
        assert_eq!(pg.poll_interval, None);
        let mistake = |body: &str, what: &str| {
            let e = with(body).unwrap_err();
            assert!(e.message.contains(what), "{e}");
        };
        mistake(
            " <postgresql>\n </postgresql>",
            "needs <postgresql> with a dsn",
        );
        mistake(
            " keep-history false\n <postgresql>\n dsn x\n </postgresql>",
            "history-preserving",
        );
        mistake(
            " blob-dir /b\n shared-blob-dir true\n <postgresql>\n dsn x\n </postgresql>",
            "shared-blob-dir false",
        );
        let conf = with(
            " blob-dir /b\n shared-blob-dir false\n blob-cache-size 10mb\n <postgresql>\n dsn x\n </postgresql>",
        )
        .unwrap();
        assert_eq!(conf.storages[0].blob_dir, Some(PathBuf::from("/b")));
        let conf =
            with(" ro-replica-conf /etc/replicas.conf\n <postgresql>\n dsn x\n </postgresql>")
                .unwrap();
        let pg = conf.storages[0].postgres.clone().unwrap();
        assert_eq!(
            pg.ro_replica_conf,
            Some(PathBuf::from("/etc/replicas.conf"))
        );
        mistake(
            " replica-conf /etc/r.conf\n <postgresql>\n dsn x\n </postgresql>",
            "ro-replica-conf",
        );
        mistake(
            " <postgresql>\n dsn x\n sslmode y\n </postgresql>",
            "unknown <postgresql> key",
        );
        mistake(" <postgresql>\n dsn x\n", "unexpected </relstorage>");
        let e = parse("<zeo>\n address 1\n</zeo>\n<filestorage>\n<postgresql>\n").unwrap_err();
        assert!(e.message.contains("inside <relstorage>"), "{e}");
    }

    /// Without the key the default applies; 0 turns the timeout off (rather than
    /// aborting every vote at once); a negative number is a mistake.
    #[test]
    fn transaction_timeout_default_zero_and_mistakes() {
        let with = |line: &str| {
            parse(&format!(
                "<zeo>\n address 8100\n {line}\n</zeo>\n<filestorage 1>\n path Data.fs\n</filestorage>\n"
            ))
        };
        assert_eq!(
            with("").unwrap().server.transaction_timeout,
            Some(Duration::from_secs(
                crate::limits::TRANSACTION_TIMEOUT_SECONDS_DEFAULT
            ))
        );
        assert_eq!(
            with("transaction-timeout 0")
                .unwrap()
                .server
                .transaction_timeout,
            None
        );
        let e = with("transaction-timeout -1").unwrap_err();
        assert!(e.message.contains("seconds"), "{e}");
    }

    #[test]
    fn mistakes_name_their_line() {
        let check = |text: &str, line: usize, what: &str| {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(what), "{e}");
        };
        check("<zeo>\n adress 1\n</zeo>", 2, "unknown <zeo> key");
        check("<zeo>\n address 1\n read-only maybe\n</zeo>", 3, "boolean");
        check("<zeo>\n address 1\n", 1, "not closed");
        check(
            "<zeo>\naddress 1\n</zeo>\n<mappingstorage>\n</mappingstorage>",
            4,
            "unsupported section",
        );
        check("<zeo>\naddress 8100\n</zeo>", 0, "no <filestorage>");
    }

    /// Python's `<ssl>` section inside `<zeo>`, with its keys; what this server cannot do
    /// is refused on its line, not ignored.
    #[test]
    fn ssl_section_as_python_writes_it() {
        let with = |ssl: &str| {
            parse(&format!(
                "<zeo>\n address 8100\n {ssl}\n</zeo>\n<filestorage 1>\n path Data.fs\n</filestorage>\n"
            ))
        };
        assert_eq!(with("").unwrap().tls, None);
        let conf = with(
            "<ssl>\n  certificate /etc/zeo/server.pem\n  key /etc/zeo/server_key.pem\n  authenticate /etc/zeo/ca.pem\n </ssl>",
        )
        .unwrap();
        assert_eq!(
            conf.tls,
            Some(ServerTls {
                certificate: "/etc/zeo/server.pem".into(),
                key: Some("/etc/zeo/server_key.pem".into()),
                authenticate: Some("/etc/zeo/ca.pem".into()),
            })
        );
        let conf = with("<ssl>\n certificate both.pem\n</ssl>").unwrap();
        assert_eq!(
            conf.tls,
            Some(ServerTls {
                certificate: "both.pem".into(),
                key: None,
                authenticate: None,
            })
        );
        let mistake = |ssl: &str, line: usize, what: &str| {
            let e = with(ssl).unwrap_err();
            assert_eq!(e.line, line, "{e}");
            assert!(e.message.contains(what), "{e}");
        };
        mistake("<ssl>\n key k.pem\n</ssl>", 5, "needs a certificate");
        mistake(
            "<ssl>\n certificate c.pem\n password-function pw.get\n</ssl>",
            5,
            "password-function",
        );
        mistake(
            "<ssl>\n certificate c.pem\n authenticate DYNAMIC\n</ssl>",
            5,
            "DYNAMIC",
        );
        mistake("<ssl>\n certificat c.pem\n</ssl>", 4, "unknown <ssl> key");
        mistake("<ssl>\n certificate c.pem\n", 6, "unexpected </zeo>");
        let e = parse("<ssl>\n certificate c.pem\n</ssl>\n").unwrap_err();
        assert!(e.message.contains("inside <zeo>"), "{e}");
    }

    #[test]
    fn addresses_follow_runzeo() {
        let address = |a: &str| {
            parse(&format!(
                "<zeo>\n address {a}\n</zeo>\n<filestorage 1>\n path Data.fs\n</filestorage>\n"
            ))
            .map(|c| c.server.address)
        };
        assert_eq!(
            address("8100").unwrap(),
            Address::Tcp("127.0.0.1:8100".into())
        );
        assert_eq!(
            address("/run/zeo.sock").unwrap(),
            Address::Unix("/run/zeo.sock".into())
        );
        // An empty address is a mistake on its line, not a bind to `127.0.0.1:`.
        let e = address("").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
        assert!(e.message.contains("empty address"), "{e}");
    }
}
