//! The two configuration files of an installation: `etc/site.toml` (the site and its
//! security, with the bootstrap manager commented out) and `etc/serve.toml` (how this
//! instance runs: address, storage, cache, files).  Both are TOML; unknown keys are
//! errors, so a typo is reported instead of silently ignored.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::limits;
use crate::security::password;

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SiteConfig {
    #[serde(default)]
    pub site: SiteSection,
    #[serde(default)]
    pub security: SecuritySection,
    /// The bootstrap manager, when its section is uncommented.
    pub bootstrap_manager: Option<BootstrapManager>,
}

/// `[site]` of `etc/site.toml`, and of `deploy.toml` (`bbru configure` renders it back).
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SiteSection {
    /// Title of the root folder when the site is created.
    #[serde(default = "default_title")]
    pub title: String,
    /// Whether anonymous visitors may view content (granted at the root when the site is
    /// created; managers can change it in the security view).
    #[serde(default = "yes")]
    pub public: bool,
    /// Largest upload accepted, in bytes (the files of one request together); past it
    /// the request is answered 413 and nothing is kept.
    #[serde(default = "default_upload_max")]
    pub upload_size_max: usize,
    /// The site's public address (`https://example.org`), for absolute URLs in feeds,
    /// the sitemap, `robots.txt` and canonical links.  Unset: canonical links are paths,
    /// and feeds and the sitemap use the request's `Host` (checked, and not cached by
    /// shared caches, so a forged `Host` reaches no one else).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The interface language of visitors who chose none and whose browser asks for
    /// none bbru has (`en` or `ru`; `ru` unless set).  Any other value is an error.
    #[serde(default)]
    pub language: crate::i18n::Lang,
}

impl Default for SiteSection {
    fn default() -> Self {
        SiteSection {
            title: default_title(),
            public: true,
            upload_size_max: default_upload_max(),
            url: None,
            language: crate::i18n::Lang::default(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum SecureCookies {
    /// Set `Secure` when the request came over TLS (`X-Forwarded-Proto: https`).
    Auto,
    Always,
    Never,
}

/// `[security]` of `etc/site.toml`, and of `deploy.toml`.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct SecuritySection {
    #[serde(default = "default_secure")]
    pub secure_cookies: SecureCookies,
    #[serde(default = "default_session_hours")]
    pub session_hours: u64,
    /// Failed logins allowed per client address and login within the window.
    #[serde(default = "default_attempts")]
    pub login_attempts_max: u32,
    #[serde(default = "default_window")]
    pub login_window_seconds: u64,
}

impl Default for SecuritySection {
    fn default() -> Self {
        SecuritySection {
            secure_cookies: default_secure(),
            session_hours: default_session_hours(),
            login_attempts_max: default_attempts(),
            login_window_seconds: default_window(),
        }
    }
}

/// The system manager declared in the configuration, as the seed's `site.zcml` did.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootstrapManager {
    pub login: String,
    /// A plain password (hashed when the configuration is read) ...
    pub password: Option<String>,
    /// ... or a hash (argon2id PHC string, or a Zope `{SSHA}` hash).
    pub password_hash: Option<String>,
    /// Keep it usable after a local manager exists (otherwise it is refused then).
    #[serde(default)]
    pub keep: bool,
}

impl BootstrapManager {
    /// The hash to check logins against.
    pub fn hash(&self) -> String {
        match (&self.password_hash, &self.password) {
            (Some(h), _) => h.clone(),
            (None, Some(p)) => password::hash(p),
            (None, None) => String::new(),
        }
    }
}

fn default_title() -> String {
    "bbru".into()
}
fn yes() -> bool {
    true
}
fn default_upload_max() -> usize {
    limits::UPLOAD_SIZE_MAX_DEFAULT
}
fn default_secure() -> SecureCookies {
    SecureCookies::Auto
}
fn default_session_hours() -> u64 {
    12
}
fn default_attempts() -> u32 {
    5
}
fn default_window() -> u64 {
    300
}

fn read(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_owned(),
        source,
    })
}

impl SiteConfig {
    pub fn parse(text: &str, path: &Path) -> Result<SiteConfig, ConfigError> {
        let config: SiteConfig = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        if let Some(url) = &config.site.url {
            let parsed = url::Url::parse(url).ok().filter(|u| {
                matches!(u.scheme(), "http" | "https")
                    && u.host().is_some()
                    && u.query().is_none()
                    && u.fragment().is_none()
                    && u.username().is_empty()
                    && u.path() == "/"
            });
            if parsed.is_none() {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "[site] url {url:?} is not a site address such as \"https://example.org\" (http or https, no path, query or user)"
                    ),
                });
            }
        }
        if let Some(b) = &config.bootstrap_manager {
            let invalid = |message: &str| ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("[bootstrap_manager]: {message}"),
            };
            if b.login.trim().is_empty() || b.login.contains(['|', ':', '/']) {
                return Err(invalid("login must be non-empty, without '|', ':' or '/'"));
            }
            match (&b.password, &b.password_hash) {
                (None, None) => return Err(invalid("give password or password_hash")),
                (Some(_), Some(_)) => {
                    return Err(invalid("give password or password_hash, not both"));
                }
                (Some(p), None)
                    if p.chars().count() < limits::PASSWORD_CHARS_MIN || p == "change me" =>
                {
                    return Err(invalid(
                        "the password must have 8 characters or more and not be the template's",
                    ));
                }
                (None, Some(h)) if !password::is_hash(h) => {
                    return Err(invalid("password_hash is not an argon2 or {SSHA} hash"));
                }
                _ => {}
            }
        }
        Ok(config)
    }

    pub fn load(path: &Path) -> Result<SiteConfig, ConfigError> {
        SiteConfig::parse(&read(path)?, path)
    }
}

/// The embedded database file when `[storage]` names neither a file nor a ZEO server
/// (relative to the installation).
pub const DATA_FS_DEFAULT: &str = "var/Data.fs";

/// The secret key file of an instance using ZEO when none is named (no database file to
/// sit beside; relative to the installation).
const SECRET_KEY_WITH_ZEO_DEFAULT: &str = "var/secret.key";

/// The blob cache directory of a ZEO instance when none is named: beside the pid file.
const BLOB_CACHE_DEFAULT_NAME: &str = "blob-cache";

/// Where the database is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StorageConfig {
    /// An embedded FileStorage (no server).
    File(PathBuf),
    /// A ZEO server (`host:port` or a unix socket path).
    Zeo(String),
    /// A PostgreSQL database (`postgresql://…` or a libpq `key=value` string) in
    /// RelStorage 4.3's schema, shared with the other instances (and RelStorage clients)
    /// that use it: no server of ours in between.
    Postgres(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServeFile {
    listen: Option<String>,
    site_config: Option<PathBuf>,
    pid_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    log_format: Option<String>,
    handover_socket: Option<PathBuf>,
    release: Option<String>,
    secret_key_file: Option<PathBuf>,
    #[serde(default)]
    trusted_proxies: Vec<String>,
    #[serde(default)]
    storage: StorageSection,
    #[serde(default)]
    http: HttpSection,
}

/// `[http]` of `etc/serve.toml`, and of `deploy.toml`: timeouts of connections and
/// requests in seconds, and who may read `/@@metrics`; a missing value is the default of
/// [`HttpSettings`].
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSection {
    pub header_read_timeout_seconds: f64,
    pub body_read_timeout_seconds: f64,
    pub keep_alive_seconds: f64,
    pub drain_timeout_seconds: f64,
    pub metrics: MetricsAccess,
}

impl Default for HttpSection {
    fn default() -> Self {
        let defaults = HttpSettings::default();
        HttpSection {
            header_read_timeout_seconds: defaults.header_read_timeout.as_secs_f64(),
            body_read_timeout_seconds: defaults.body_read_timeout.as_secs_f64(),
            keep_alive_seconds: defaults.keep_alive.as_secs_f64(),
            drain_timeout_seconds: defaults.drain_timeout.as_secs_f64(),
            metrics: defaults.metrics,
        }
    }
}

/// Who may read `/@@metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MetricsAccess {
    /// Anybody.
    Public,
    /// Clients on this host only (a loopback peer, not forwarded by a proxy): the
    /// default, since request counts and timings tell outsiders about the traffic and
    /// the instance, and Prometheus usually scrapes from the same host.
    Loopback,
    /// Principals with the ManageUsers permission at the site root (managers), e.g. a
    /// scraper with HTTP Basic credentials of a dedicated manager account.
    Permission,
}

/// The HTTP settings of an instance (`[http]` of `etc/serve.toml`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HttpSettings {
    /// How long a connection may take to send a request's headers once it is ready for
    /// one (accepted, or done with its previous request).
    pub header_read_timeout: Duration,
    /// How long a request's whole body may take to arrive.
    pub body_read_timeout: Duration,
    /// How long an idle connection is kept open for its next request.
    pub keep_alive: Duration,
    /// How long a stopping instance waits for requests in flight before it closes the
    /// remaining connections and exits.
    pub drain_timeout: Duration,
    pub metrics: MetricsAccess,
}

impl Default for HttpSettings {
    fn default() -> Self {
        HttpSettings {
            header_read_timeout: limits::HEADER_READ_TIMEOUT_DEFAULT,
            body_read_timeout: limits::BODY_READ_TIMEOUT_DEFAULT,
            keep_alive: limits::KEEP_ALIVE_DEFAULT,
            drain_timeout: limits::DRAIN_TIMEOUT_DEFAULT,
            metrics: MetricsAccess::Loopback,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct StorageSection {
    file: Option<PathBuf>,
    zeo: Option<String>,
    postgres: Option<String>,
    /// Read replicas (hot standbys) of `postgres` for loads.
    #[serde(default)]
    postgres_replicas: Vec<String>,
    /// TLS to the ZEO server: the CA file (or directory) to trust; setting it turns TLS on.
    ssl_ca: Option<PathBuf>,
    /// This instance's client certificate and key, for a server that authenticates.
    ssl_certificate: Option<PathBuf>,
    ssl_key: Option<PathBuf>,
    /// The name the server's certificate carries (default: the host of `zeo`).
    ssl_server_hostname: Option<String>,
    cache_objects: Option<usize>,
    connections: Option<usize>,
    conflict_retries: Option<u32>,
    /// Where a ZEO instance keeps its blob cache (each instance a subdirectory of its
    /// own); default: `blob-cache` beside the pid file.
    blob_cache_dir: Option<PathBuf>,
    /// Bytes each instance's blob cache may hold.
    blob_cache_size: Option<u64>,
}

/// How an instance runs.
#[derive(Debug, Clone)]
pub struct ServeConfig {
    pub listen: String,
    pub storage: StorageConfig,
    /// TLS to the ZEO server (`[storage]`'s `ssl_*`); `None`: plain TCP.
    pub zeo_tls: Option<zeo::tls::ClientTls>,
    pub cache_objects: usize,
    /// Database connections (each with its cache): how many requests run at once;
    /// more wait their turn.
    pub connections: usize,
    /// How many times a request whose transaction conflicts is run again (after a short
    /// random wait) before it is answered 409: Zope's 3 by default.
    pub conflict_retries: u32,
    /// The directory of the blob caches of ZEO instances (each takes a subdirectory of
    /// its own, `blob_cache.rs`); `None`: the default, see
    /// [`ServeConfig::blob_cache_root`].
    pub blob_cache_dir: Option<PathBuf>,
    /// Read replicas of the PostgreSQL database, for loads (`[storage]
    /// postgres_replicas`).
    pub postgres_replicas: Vec<String>,
    /// Bytes this instance's blob cache may hold, on ZEO and on PostgreSQL (the files
    /// written longest ago go first).
    pub blob_cache_bytes: u64,
    pub site_config: PathBuf,
    pub pid_file: PathBuf,
    pub log_file: Option<PathBuf>,
    /// Log lines as text (for people) or JSON lines (for log shippers).
    pub log_format: daemon::LogFormat,
    /// Where the listening socket is handed from one release's instance to the next
    /// (see `listen`); `None`: no handover.
    pub handover_socket: Option<PathBuf>,
    /// The release this configuration belongs to (`bbru-X.Y.Z`), shown by `/@@health`.
    pub release: Option<String>,
    /// The secret key file (half of the signing secret, kept outside the database); `None`:
    /// the default, see [`ServeConfig::secret_key_path`].
    pub secret_key_file: Option<PathBuf>,
    /// Reverse proxies (addresses or networks) whose `X-Forwarded-For` names the client;
    /// none by default: the peer is the client.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    pub http: HttpSettings,
}

impl Default for ServeConfig {
    fn default() -> Self {
        ServeConfig {
            listen: "127.0.0.1:8080".into(),
            storage: StorageConfig::File(DATA_FS_DEFAULT.into()),
            zeo_tls: None,
            cache_objects: zodb::limits::CACHE_OBJECTS_DEFAULT,
            connections: 16,
            conflict_retries: limits::CONFLICT_RETRIES_DEFAULT,
            blob_cache_dir: None,
            postgres_replicas: Vec::new(),
            blob_cache_bytes: zeo::limits::CLIENT_BLOB_CACHE_BYTES_DEFAULT,
            site_config: "etc/site.toml".into(),
            pid_file: "var/bbru.pid".into(),
            log_file: None,
            log_format: daemon::LogFormat::Text,
            handover_socket: None,
            release: None,
            secret_key_file: None,
            trusted_proxies: Vec::new(),
            http: HttpSettings::default(),
        }
    }
}

impl ServeConfig {
    /// The secret key file: the one configured, else `secret.key` beside an embedded
    /// `Data.fs`, else `var/secret.key` (relative to the working directory, as the
    /// default `Data.fs`).
    pub fn secret_key_path(&self) -> PathBuf {
        match (&self.secret_key_file, &self.storage) {
            (Some(p), _) => p.clone(),
            (None, StorageConfig::File(f)) => f.with_file_name("secret.key"),
            (None, StorageConfig::Zeo(_) | StorageConfig::Postgres(_)) => {
                PathBuf::from(SECRET_KEY_WITH_ZEO_DEFAULT)
            }
        }
    }

    /// The directory of the blob caches of ZEO instances: the one configured, else
    /// `blob-cache` beside the pid file.
    pub fn blob_cache_root(&self) -> PathBuf {
        match &self.blob_cache_dir {
            Some(dir) => dir.clone(),
            None => self.pid_file.with_file_name(BLOB_CACHE_DEFAULT_NAME),
        }
    }

    /// Reads `etc/serve.toml`; relative paths in it are relative to the directory that
    /// holds `etc/` (the installation).
    pub fn load(path: &Path) -> Result<ServeConfig, ConfigError> {
        let text = read(path)?;
        let base = path
            .parent()
            .and_then(|etc| etc.parent())
            .unwrap_or(Path::new("."))
            .to_owned();
        ServeConfig::parse(&text, path, &base)
    }

    /// Parses the text of `etc/serve.toml` (`path` for messages); relative paths are
    /// resolved against `base`.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<ServeConfig, ConfigError> {
        let file: ServeFile = toml::from_str(text).map_err(|e| ConfigError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let resolve = |p: PathBuf| if p.is_absolute() { p } else { base.join(p) };
        let mut config = ServeConfig::default();
        config.site_config = resolve(config.site_config);
        config.pid_file = resolve(config.pid_file);
        if let Some(l) = file.listen {
            config.listen = l;
        }
        config.storage = match (file.storage.file, file.storage.zeo, file.storage.postgres) {
            (Some(f), None, None) => StorageConfig::File(resolve(f)),
            (None, Some(z), None) => StorageConfig::Zeo(z),
            (None, None, Some(url)) => StorageConfig::Postgres(url),
            (None, None, None) => StorageConfig::File(resolve(DATA_FS_DEFAULT.into())),
            _ => {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: "[storage]: give one of file, zeo and postgres".into(),
                });
            }
        };
        if !file.storage.postgres_replicas.is_empty()
            && !matches!(config.storage, StorageConfig::Postgres(_))
        {
            return Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: "[storage] postgres_replicas: read replicas are of a postgres database; \
                          give postgres too"
                    .into(),
            });
        }
        config.postgres_replicas = file.storage.postgres_replicas.clone();
        let any_ssl = file.storage.ssl_ca.is_some()
            || file.storage.ssl_certificate.is_some()
            || file.storage.ssl_key.is_some()
            || file.storage.ssl_server_hostname.is_some();
        if any_ssl {
            let invalid = |message: &str| ConfigError::Invalid {
                path: path.to_owned(),
                message: message.into(),
            };
            if !matches!(config.storage, StorageConfig::Zeo(_)) {
                return Err(invalid("[storage] ssl_* settings are for a zeo server"));
            }
            let Some(ca) = file.storage.ssl_ca.clone() else {
                return Err(invalid(
                    "[storage] TLS needs ssl_ca, the CA that signed the ZEO server's certificate",
                ));
            };
            if file.storage.ssl_key.is_some() && file.storage.ssl_certificate.is_none() {
                return Err(invalid("[storage] ssl_key needs ssl_certificate"));
            }
            config.zeo_tls = Some(zeo::tls::ClientTls {
                ca: resolve(ca),
                certificate: file.storage.ssl_certificate.clone().map(resolve),
                key: file.storage.ssl_key.clone().map(resolve),
                server_hostname: file.storage.ssl_server_hostname.clone(),
            });
        }
        if let Some(n) = file.storage.cache_objects {
            config.cache_objects = n;
        }
        if let Some(n) = file.storage.connections {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: "[storage] connections must be at least 1".into(),
                });
            }
            config.connections = n;
        }
        if let Some(n) = file.storage.conflict_retries {
            if n > limits::CONFLICT_RETRIES_MAX {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "[storage] conflict_retries must be at most {}",
                        limits::CONFLICT_RETRIES_MAX
                    ),
                });
            }
            config.conflict_retries = n;
        }
        config.blob_cache_dir = file.storage.blob_cache_dir.map(resolve);
        if let Some(n) = file.storage.blob_cache_size {
            if n == 0 {
                return Err(ConfigError::Invalid {
                    path: path.to_owned(),
                    message: "[storage] blob_cache_size must be above 0 bytes".into(),
                });
            }
            config.blob_cache_bytes = n;
        }
        if let Some(p) = file.site_config {
            config.site_config = resolve(p);
        }
        if let Some(p) = file.pid_file {
            config.pid_file = resolve(p);
        }
        config.log_file = file.log_file.map(resolve);
        if let Some(f) = file.log_format {
            config.log_format = f.parse().map_err(|message| ConfigError::Invalid {
                path: path.to_owned(),
                message: format!("log_format: {message}"),
            })?;
        }
        config.handover_socket = file.handover_socket.map(resolve);
        config.release = file.release;
        for proxy in &file.trusted_proxies {
            let net = proxy
                .parse::<ipnet::IpNet>()
                .or_else(|_| proxy.parse::<std::net::IpAddr>().map(ipnet::IpNet::from))
                .map_err(|_| ConfigError::Invalid {
                    path: path.to_owned(),
                    message: format!(
                        "trusted_proxies: {proxy:?} is not an IP address or network (such as \"127.0.0.1\" or \"10.0.0.0/8\")"
                    ),
                })?;
            config.trusted_proxies.push(net);
        }
        // With ZEO or PostgreSQL there is no database file to sit beside: the
        // installation's var/.
        config.secret_key_file = match (file.secret_key_file, &config.storage) {
            (Some(p), _) => Some(resolve(p)),
            (None, StorageConfig::Zeo(_) | StorageConfig::Postgres(_)) => {
                Some(resolve(SECRET_KEY_WITH_ZEO_DEFAULT.into()))
            }
            (None, StorageConfig::File(_)) => None,
        };
        let seconds = |name: &str, value: f64| match value {
            v if v.is_finite() && v > 0.0 && v <= 86_400.0 => Ok(Duration::from_secs_f64(v)),
            _ => Err(ConfigError::Invalid {
                path: path.to_owned(),
                message: format!(
                    "[http] {name} must be a number of seconds above 0 and at most 86400"
                ),
            }),
        };
        let http = &file.http;
        config.http = HttpSettings {
            header_read_timeout: seconds(
                "header_read_timeout_seconds",
                http.header_read_timeout_seconds,
            )?,
            body_read_timeout: seconds(
                "body_read_timeout_seconds",
                http.body_read_timeout_seconds,
            )?,
            keep_alive: seconds("keep_alive_seconds", http.keep_alive_seconds)?,
            drain_timeout: seconds("drain_timeout_seconds", http.drain_timeout_seconds)?,
            metrics: http.metrics,
        };
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_template_parses_with_the_manager_commented_out() {
        let template =
            crate::configure::site_toml(&crate::configure::Deploy::default(), None).unwrap();
        let c = SiteConfig::parse(&template, Path::new("site.toml")).unwrap();
        assert!(c.bootstrap_manager.is_none());
        // Uncommenting the template's lines without changing the password is refused.
        let uncommented: String = template
            .lines()
            .map(|l| {
                l.strip_prefix('#')
                    .filter(|r| {
                        r.starts_with('[') || r.starts_with("login") || r.starts_with("password =")
                    })
                    .unwrap_or(l)
            })
            .collect::<Vec<_>>()
            .join("\n");
        let err = SiteConfig::parse(&uncommented, Path::new("site.toml")).unwrap_err();
        assert!(err.to_string().contains("template"), "{err}");
        let good = uncommented.replace("\"change me\"", "\"a-long-password\"");
        let c = SiteConfig::parse(&good, Path::new("site.toml")).unwrap();
        assert_eq!(c.bootstrap_manager.unwrap().login, "admin");
    }

    /// `[storage]`'s `ssl_*` make the ZEO client speak TLS, paths resolved against the
    /// installation; mistakes are refused rather than connecting in plain text.
    #[test]
    fn zeo_tls_settings_parse_and_mistakes_are_refused() {
        let base = Path::new("/srv/bbru");
        let parse = |text: &str| ServeConfig::parse(text, Path::new("s.toml"), base);
        assert_eq!(
            parse("[storage]\nzeo = \"db:8100\"\n").unwrap().zeo_tls,
            None
        );
        let c = parse(
            "[storage]\nzeo = \"db:8100\"\nssl_ca = \"etc/zeo-ca.pem\"\nssl_certificate = \"/etc/bbru/client.pem\"\nssl_key = \"etc/client-key.pem\"\nssl_server_hostname = \"zeo.example.org\"\n",
        )
        .unwrap();
        assert_eq!(
            c.zeo_tls,
            Some(zeo::tls::ClientTls {
                ca: "/srv/bbru/etc/zeo-ca.pem".into(),
                certificate: Some("/etc/bbru/client.pem".into()),
                key: Some("/srv/bbru/etc/client-key.pem".into()),
                server_hostname: Some("zeo.example.org".into()),
            })
        );
        for (bad, what) in [
            ("[storage]\nssl_ca = \"ca.pem\"\n", "for a zeo server"),
            (
                "[storage]\nzeo = \"db:8100\"\nssl_certificate = \"c.pem\"\n",
                "needs ssl_ca",
            ),
            (
                "[storage]\nzeo = \"db:8100\"\nssl_ca = \"ca.pem\"\nssl_key = \"k.pem\"\n",
                "needs ssl_certificate",
            ),
        ] {
            let e = parse(bad).unwrap_err().to_string();
            assert!(e.contains(what), "{bad}: {e}");
        }
    }

    #[test]
    fn http_settings_parse_with_defaults_and_bad_values_are_refused() {
        let base = Path::new("/srv");
        let c = ServeConfig::parse("", Path::new("s.toml"), base).unwrap();
        assert_eq!(c.http, HttpSettings::default());
        assert_eq!(c.http.metrics, MetricsAccess::Loopback);
        let c = ServeConfig::parse(
            "[http]\nheader_read_timeout_seconds = 0.5\ndrain_timeout_seconds = 3\nmetrics = \"public\"\n",
            Path::new("s.toml"),
            base,
        )
        .unwrap();
        assert_eq!(c.http.header_read_timeout, Duration::from_millis(500));
        assert_eq!(c.http.drain_timeout, Duration::from_secs(3));
        assert_eq!(c.http.metrics, MetricsAccess::Public);
        for bad in [
            "[http]\nkeep_alive_seconds = 0\n",
            "[http]\nbody_read_timeout_seconds = -1\n",
            "[http]\nmetrics = \"everybody\"\n",
        ] {
            assert!(
                ServeConfig::parse(bad, Path::new("s.toml"), base).is_err(),
                "{bad}"
            );
        }
    }

    #[test]
    fn conflict_retries_default_to_zopes_three_and_are_bounded() {
        let base = Path::new("/srv");
        let c = ServeConfig::parse("", Path::new("s.toml"), base).unwrap();
        assert_eq!(c.conflict_retries, 8);
        let c = ServeConfig::parse(
            "[storage]\nconflict_retries = 0\n",
            Path::new("s.toml"),
            base,
        )
        .unwrap();
        assert_eq!(c.conflict_retries, 0);
        let err = ServeConfig::parse(
            "[storage]\nconflict_retries = 11\n",
            Path::new("s.toml"),
            base,
        )
        .unwrap_err();
        assert!(err.to_string().contains("conflict_retries"), "{err}");
        assert!(
            ServeConfig::parse(
                "[storage]\nconflict_retries = -1\n",
                Path::new("s.toml"),
                base
            )
            .is_err()
        );
    }

    #[test]
    fn postgres_replicas_are_read_only_beside_postgres() {
        let base = Path::new("/srv");
        let parse = |text: &str| ServeConfig::parse(text, Path::new("s.toml"), base);
        let c = parse(
            "[storage]\npostgres = \"postgresql://db/site\"\npostgres_replicas = [\"postgresql://r1/site\"]\n",
        )
        .unwrap();
        assert_eq!(c.postgres_replicas, vec!["postgresql://r1/site".to_owned()]);
        let e =
            parse("[storage]\nzeo = \"db:8100\"\npostgres_replicas = [\"postgresql://r1/site\"]\n")
                .unwrap_err();
        assert!(e.to_string().contains("give postgres too"), "{e}");
    }

    #[test]
    fn the_blob_cache_defaults_to_beside_the_pid_file_and_can_be_moved_and_sized() {
        let base = Path::new("/srv/bbru");
        let parse = |text: &str| ServeConfig::parse(text, Path::new("s.toml"), base);
        let c = parse("pid_file = \"/run/bbru/bbru.pid\"\n[storage]\nzeo = \"db:8100\"\n").unwrap();
        assert_eq!(c.blob_cache_root(), Path::new("/run/bbru/blob-cache"));
        assert_eq!(c.blob_cache_bytes, 1 << 30);
        let c = parse(
            "[storage]\nzeo = \"db:8100\"\nblob_cache_dir = \"cache/blobs\"\nblob_cache_size = 5000000000\n",
        )
        .unwrap();
        assert_eq!(c.blob_cache_root(), Path::new("/srv/bbru/cache/blobs"));
        assert_eq!(c.blob_cache_bytes, 5_000_000_000);
        let e = parse("[storage]\nblob_cache_size = 0\n").unwrap_err();
        assert!(e.to_string().contains("blob_cache_size"), "{e}");
    }

    #[test]
    fn typos_are_errors() {
        let err = SiteConfig::parse("[site]\ntitel = 'x'\n", Path::new("s.toml")).unwrap_err();
        assert!(err.to_string().contains("titel"), "{err}");
    }

    #[test]
    fn the_site_language_is_russian_unless_set_and_must_be_known() {
        let parse = |text: &str| SiteConfig::parse(text, Path::new("s.toml"));
        assert_eq!(parse("").unwrap().site.language, crate::i18n::Lang::Ru);
        let en = parse("[site]\nlanguage = 'en'\n").unwrap();
        assert_eq!(en.site.language, crate::i18n::Lang::En);
        let err = parse("[site]\nlanguage = 'de'\n").unwrap_err().to_string();
        assert!(
            err.contains("de") && err.contains("en") && err.contains("ru"),
            "{err}"
        );
    }
}
