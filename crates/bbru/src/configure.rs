//! `bbru configure [-c deploy.toml]` (the seed's `bin/buildout -c deploy.cfg`): renders
//! `etc/site.toml` and `etc/serve.toml` from the templates shipped with the release and
//! the site's own values, kept in a `deploy.toml` outside release directories.  Running
//! it again after an upgrade writes both files again; the bootstrap manager is always
//! written commented out, as the seed's `site.zcml` was.
//!
//! ```toml
//! # deploy.toml
//! [site]
//! title = "bbru.ru"
//! public = true
//! [security]
//! secure_cookies = "always"
//! [serve]
//! listen = "127.0.0.1:8080"
//! zeo = "127.0.0.1:8100"            # or file = "/srv/bbru/var/Data.fs"
//! blob_cache_dir = "/srv/bbru/var/blob-cache"  # ZEO only; default: beside pid_file
//! blob_cache_size = 1073741824      # bytes, per instance
//! pid_file = "/srv/bbru/var/bbru.pid"
//! log_file = "/srv/bbru/log/bbru.log"
//! secret_key_file = "/srv/bbru/etc/secret.key"
//! trusted_proxies = ["127.0.0.1"]  # the reverse proxy in front, if any
//! [http]
//! metrics = "loopback"              # or "public", "permission"
//! ```
//!
//! `etc/site.toml` and `etc/serve.toml` are written readable by their owner only (the
//! bootstrap manager's password goes into site.toml); the secret key file named by
//! `secret_key_file` is created (mode 0600) when missing, and never replaced.
//!
//! The templates are rendered with minijinja; strings go through its `tojson` filter,
//! whose output is a valid TOML basic string.  Every rendered file is parsed back before
//! it is written, so a bad value is reported and no half-valid file is left behind.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::config::{
    ConfigError, DATA_FS_DEFAULT, HttpSection, SecuritySection, ServeConfig, SiteConfig,
    SiteSection,
};

/// The template of `etc/site.toml`.
pub const SITE_TEMPLATE: &str = include_str!("../templates/site.toml.j2");
/// The template of `etc/serve.toml`.
pub const SERVE_TEMPLATE: &str = include_str!("../templates/serve.toml.j2");
/// The template of `etc/bbru.service` (a systemd unit).
pub const SERVICE_TEMPLATE: &str = include_str!("../templates/bbru.service.j2");

/// The site's own values (`deploy.toml`); everything has a default.  `[site]`,
/// `[security]` and `[http]` are the sections of `etc/site.toml` and `etc/serve.toml`
/// (same keys, same defaults: [`crate::config`] defines them once); `[serve]` gathers, in
/// one flat section, what `etc/serve.toml` spreads over its top level and `[storage]`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Deploy {
    pub site: SiteSection,
    pub security: SecuritySection,
    pub serve: DeployServe,
    pub http: HttpSection,
    /// Login proposed in the commented-out bootstrap manager section.
    pub bootstrap_login: String,
    /// The release being configured (set by `bbru deploy`, not in deploy.toml files).
    #[serde(skip)]
    pub release: Option<String>,
}

/// `[serve]` of deploy.toml; its defaults are [`ServeConfig::default`]'s.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DeployServe {
    pub listen: String,
    /// ZEO server address; when empty, the embedded `file` is used.
    pub zeo: String,
    /// PostgreSQL database URL (when `zeo` is empty); when empty too, the embedded `file`.
    pub postgres: String,
    pub file: String,
    pub pid_file: String,
    pub log_file: String,
    /// `text` (for people) or `json` (for log shippers); empty: text.
    pub log_format: String,
    /// Unix socket through which a new release's instance takes the listening socket
    /// over from the running one (zero-downtime deploys); empty: none.
    pub handover_socket: String,
    pub cache_objects: usize,
    pub connections: usize,
    /// How many times a request that conflicts is run again before it is answered 409.
    pub conflict_retries: u32,
    /// The blob caches of ZEO instances (each takes a subdirectory of its own); empty:
    /// `blob-cache` beside the pid file.
    pub blob_cache_dir: String,
    /// Bytes each instance's blob cache may hold.
    pub blob_cache_size: u64,
    /// The secret key file (half of the signing secret, outside the database), the same
    /// for every instance and release; created by `bbru configure` when missing.  Empty:
    /// `secret.key` beside the embedded `file`.
    pub secret_key_file: String,
    /// Reverse proxies whose `X-Forwarded-For` is believed (addresses or networks);
    /// empty: none (the peer is the client).
    pub trusted_proxies: Vec<String>,
}

impl Default for Deploy {
    fn default() -> Self {
        Deploy {
            site: SiteSection::default(),
            security: SecuritySection::default(),
            serve: DeployServe::default(),
            http: HttpSection::default(),
            bootstrap_login: "admin".into(),
            release: None,
        }
    }
}

impl Default for DeployServe {
    fn default() -> Self {
        let defaults = ServeConfig::default();
        DeployServe {
            listen: defaults.listen,
            zeo: String::new(),
            postgres: String::new(),
            file: DATA_FS_DEFAULT.into(),
            pid_file: defaults.pid_file.display().to_string(),
            log_file: String::new(),
            log_format: String::new(),
            handover_socket: String::new(),
            cache_objects: defaults.cache_objects,
            connections: defaults.connections,
            conflict_retries: defaults.conflict_retries,
            blob_cache_dir: String::new(),
            blob_cache_size: defaults.blob_cache_bytes,
            secret_key_file: String::new(),
            trusted_proxies: Vec::new(),
        }
    }
}

/// Why configuring failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigureError {
    #[error("cannot read {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
    #[error("rendering {template}: {message}")]
    Render {
        template: &'static str,
        message: String,
    },
    #[error("the rendered {0}")]
    Rendered(#[source] ConfigError),
    #[error("cannot write {path}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(transparent)]
    Key(#[from] crate::security::key::KeyError),
}

/// Writes `text` to `path` readable by its owner only (mode 0600), through a file beside
/// and a rename, so a reader never sees half a file.
pub fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()?;
    std::fs::rename(&tmp, path)
}

impl Deploy {
    pub fn load(path: &Path) -> Result<Deploy, ConfigureError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigureError::Read {
            path: path.to_owned(),
            source,
        })?;
        toml::from_str(&text).map_err(|e| ConfigureError::Invalid {
            path: path.to_owned(),
            message: e.to_string(),
        })
    }
}

fn render(
    template: &'static str,
    source: &str,
    deploy: &Deploy,
    from: Option<&Path>,
) -> Result<String, ConfigureError> {
    render_in(template, source, deploy, from, Path::new("."))
}

fn render_in(
    template: &'static str,
    source: &str,
    deploy: &Deploy,
    from: Option<&Path>,
    dir: &Path,
) -> Result<String, ConfigureError> {
    let mut env = minijinja::Environment::new();
    env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
    env.add_template(template, source)
        .map_err(|e| ConfigureError::Render {
            template,
            message: e.to_string(),
        })?;
    let context = minijinja::context! {
        site => &deploy.site,
        security => &deploy.security,
        serve => &deploy.serve,
        http => &deploy.http,
        bootstrap_login => &deploy.bootstrap_login,
        deploy => from.map(|p| p.display().to_string()).unwrap_or_default(),
        release => deploy.release.clone().unwrap_or_default(),
        dir => dir.display().to_string(),
    };
    env.get_template(template)
        .and_then(|t| t.render(context))
        .map_err(|e| ConfigureError::Render {
            template,
            message: e.to_string(),
        })
}

/// `etc/site.toml` for `deploy` (checked to parse).
pub fn site_toml(deploy: &Deploy, from: Option<&Path>) -> Result<String, ConfigureError> {
    let text = render("site.toml", SITE_TEMPLATE, deploy, from)?;
    SiteConfig::parse(&text, Path::new("etc/site.toml")).map_err(ConfigureError::Rendered)?;
    Ok(text)
}

/// `etc/serve.toml` for `deploy` (checked to parse).
pub fn serve_toml(deploy: &Deploy, from: Option<&Path>) -> Result<String, ConfigureError> {
    let text = render("serve.toml", SERVE_TEMPLATE, deploy, from)?;
    ServeConfig::parse(&text, Path::new("etc/serve.toml"), Path::new("."))
        .map_err(ConfigureError::Rendered)?;
    Ok(text)
}

/// Writes `etc/site.toml` and `etc/serve.toml` under `dir` from `deploy_file` (or the
/// defaults); returns their paths.
pub fn configure(dir: &Path, deploy_file: Option<&Path>) -> Result<Vec<PathBuf>, ConfigureError> {
    let deploy = match deploy_file {
        Some(p) => Deploy::load(p)?,
        None => Deploy::default(),
    };
    write(dir, &deploy, deploy_file)
}

/// Writes `etc/site.toml`, `etc/serve.toml` and the systemd unit `etc/bbru.service` under
/// `dir` for `deploy` (read from `deploy_file`, named in the files' header), and creates
/// the secret key file `deploy` names when missing; returns the paths written.
pub fn write(
    dir: &Path,
    deploy: &Deploy,
    deploy_file: Option<&Path>,
) -> Result<Vec<PathBuf>, ConfigureError> {
    let deploy = deploy.clone();
    let site = site_toml(&deploy, deploy_file)?;
    let serve = serve_toml(&deploy, deploy_file)?;
    let absolute = std::path::absolute(dir).map_err(|source| ConfigureError::Write {
        path: dir.to_owned(),
        source,
    })?;
    let service = render_in(
        "bbru.service",
        SERVICE_TEMPLATE,
        &deploy,
        deploy_file,
        &absolute,
    )?;
    let etc = dir.join("etc");
    std::fs::create_dir_all(&etc).map_err(|source| ConfigureError::Write {
        path: etc.clone(),
        source,
    })?;
    let mut written = Vec::new();
    for (name, text) in [
        ("site.toml", site),
        ("serve.toml", serve),
        ("bbru.service", service),
    ] {
        let path = etc.join(name);
        write_private(&path, &text).map_err(|source| ConfigureError::Write {
            path: path.clone(),
            source,
        })?;
        written.push(path);
    }
    if !deploy.serve.secret_key_file.is_empty() {
        let serve = ServeConfig::load(&etc.join("serve.toml")).map_err(ConfigureError::Rendered)?;
        let key = serve.secret_key_path();
        if crate::security::key::create(&key)? {
            written.push(key);
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_render_to_valid_files_with_the_manager_commented_out() {
        let site = site_toml(&Deploy::default(), None).unwrap();
        let parsed = SiteConfig::parse(&site, Path::new("s")).unwrap();
        assert!(parsed.bootstrap_manager.is_none());
        assert!(
            site.contains("#[bootstrap_manager]\n#login = \"admin\"\n#password = \"change me\""),
            "{site}"
        );
        let serve = serve_toml(&Deploy::default(), None).unwrap();
        let parsed = ServeConfig::parse(&serve, Path::new("s"), Path::new("/srv/r")).unwrap();
        assert_eq!(
            parsed.conflict_retries,
            crate::limits::CONFLICT_RETRIES_DEFAULT
        );
        assert_eq!(
            parsed.storage,
            crate::config::StorageConfig::File("/srv/r/var/Data.fs".into())
        );
    }

    #[test]
    fn deploy_values_reach_the_files_and_strings_are_escaped() {
        let deploy: Deploy = toml::from_str(
            r#"
            bootstrap_login = "boss"
            [site]
            title = "Quote \" and \\ and\nnewline"
            public = false
            [serve]
            zeo = "10.0.0.5:8100"
            log_file = "/srv/bbru/log/bbru.log"
            log_format = "json"
            conflict_retries = 7
            "#,
        )
        .unwrap();
        let site = site_toml(&deploy, Some(Path::new("/srv/deploy.toml"))).unwrap();
        let parsed = SiteConfig::parse(&site, Path::new("s")).unwrap();
        assert_eq!(parsed.site.title, "Quote \" and \\ and\nnewline");
        assert!(!parsed.site.public);
        assert!(site.contains("#login = \"boss\""));
        assert!(site.contains("/srv/deploy.toml"));
        let serve = serve_toml(&deploy, None).unwrap();
        let parsed = ServeConfig::parse(&serve, Path::new("s"), Path::new("/x")).unwrap();
        assert_eq!(parsed.conflict_retries, 7);
        assert_eq!(
            parsed.storage,
            crate::config::StorageConfig::Zeo("10.0.0.5:8100".into())
        );
        assert!(parsed.trusted_proxies.is_empty(), "none by default");
        let mut on_postgres: Deploy = deploy.clone();
        on_postgres.serve.zeo = String::new();
        on_postgres.serve.postgres = "postgresql://bbru@db.example/site".into();
        let serve = serve_toml(&on_postgres, None).unwrap();
        let parsed = ServeConfig::parse(&serve, Path::new("s"), Path::new("/x")).unwrap();
        assert_eq!(
            parsed.storage,
            crate::config::StorageConfig::Postgres("postgresql://bbru@db.example/site".into())
        );
        let mut behind: Deploy = deploy.clone();
        behind.serve.trusted_proxies = vec!["127.0.0.1".into(), "10.0.0.0/8".into()];
        let serve = serve_toml(&behind, None).unwrap();
        let parsed = ServeConfig::parse(&serve, Path::new("s"), Path::new("/x")).unwrap();
        assert_eq!(
            parsed.trusted_proxies,
            vec![
                "127.0.0.1/32".parse::<ipnet::IpNet>().unwrap(),
                "10.0.0.0/8".parse().unwrap()
            ]
        );
        behind.serve.trusted_proxies = vec!["localhost".into()];
        let err = serve_toml(&behind, None).unwrap_err();
        assert!(format!("{:#}", anyhow::Error::new(err)).contains("localhost"));
        assert_eq!(
            parsed.log_file,
            Some(PathBuf::from("/srv/bbru/log/bbru.log"))
        );
        assert_eq!(parsed.log_format, daemon::LogFormat::Json);
        let parsed = ServeConfig::parse(
            &serve_toml(&Deploy::default(), None).unwrap(),
            Path::new("s"),
            Path::new("/x"),
        )
        .unwrap();
        assert_eq!(parsed.log_format, daemon::LogFormat::Text);
    }

    #[test]
    fn the_systemd_unit_runs_the_release_in_the_foreground_with_readiness() {
        let dir = tempfile::tempdir().unwrap();
        let deploy = Deploy {
            release: Some("bbru-1.2.3".into()),
            ..Deploy::default()
        };
        let written = write(dir.path(), &deploy, None).unwrap();
        assert_eq!(written.len(), 3);
        for name in ["site.toml", "serve.toml"] {
            let meta = std::fs::metadata(dir.path().join("etc").join(name)).unwrap();
            assert_eq!(
                std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
                0o600,
                "{name}"
            );
        }
        let unit = std::fs::read_to_string(dir.path().join("etc/bbru.service")).unwrap();
        let root = std::path::absolute(dir.path()).unwrap();
        assert!(
            unit.contains(&format!(
                "ExecStart={}/bin/bbru serve -c {}/etc/serve.toml\n",
                root.display(),
                root.display()
            )),
            "{unit}"
        );
        assert!(
            unit.contains("Type=notify") && unit.contains("(bbru-1.2.3)"),
            "{unit}"
        );
        let exec = unit.lines().find(|l| l.starts_with("ExecStart=")).unwrap();
        assert!(
            !exec.contains("--daemon"),
            "systemd supervises it in the foreground: {exec}"
        );
        let serve = std::fs::read_to_string(dir.path().join("etc/serve.toml")).unwrap();
        assert!(serve.contains("release = \"bbru-1.2.3\""), "{serve}");
    }

    #[test]
    fn the_secret_key_file_is_named_in_serve_toml_and_created_once() {
        let dir = tempfile::tempdir().unwrap();
        let key = dir.path().join("shared/secret.key");
        let mut deploy = Deploy::default();
        deploy.serve.secret_key_file = key.display().to_string();
        let written = write(&dir.path().join("release"), &deploy, None).unwrap();
        assert_eq!(written.last(), Some(&key), "{written:?}");
        let mode = std::fs::metadata(&key).unwrap().permissions();
        assert_eq!(
            std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
            0o600
        );
        let first = std::fs::read(&key).unwrap();
        let serve = ServeConfig::load(&dir.path().join("release/etc/serve.toml")).unwrap();
        assert_eq!(serve.secret_key_path(), key);
        // Another release: the same key, untouched.
        let written = write(&dir.path().join("next"), &deploy, None).unwrap();
        assert_eq!(written.len(), 3);
        assert_eq!(std::fs::read(&key).unwrap(), first);
        // Without one: beside the embedded database.
        let serve = serve_toml(&Deploy::default(), None).unwrap();
        let parsed = ServeConfig::parse(&serve, Path::new("s"), Path::new("/srv/r")).unwrap();
        assert_eq!(parsed.secret_key_path(), Path::new("/srv/r/var/secret.key"));
    }

    /// Every value of a deploy.toml set to something other than its default.
    const FULL_DEPLOY: &str = r#"
        bootstrap_login = "boss"
        [site]
        title = "Quote \" and \\ and\nnewline — ё"
        public = false
        upload_size_max = 1048576
        url = "https://bbru.example"
        language = "en"
        [security]
        secure_cookies = "always"
        session_hours = 2
        login_attempts_max = 7
        login_window_seconds = 90
        [serve]
        listen = "0.0.0.0:9090"
        zeo = "10.0.0.5:8100"
        pid_file = "/srv/bbru/var/bbru.pid"
        log_file = "/srv/bbru/log/bbru.log"
        log_format = "json"
        handover_socket = "/srv/bbru/var/handover.sock"
        cache_objects = 1234
        connections = 3
        conflict_retries = 5
        blob_cache_dir = "/srv/bbru/cache/blobs"
        blob_cache_size = 5000000000
        secret_key_file = "/srv/bbru/etc/secret.key"
        trusted_proxies = ["127.0.0.1", "10.0.0.0/8"]
        [http]
        header_read_timeout_seconds = 2.5
        body_read_timeout_seconds = 30
        keep_alive_seconds = 1
        drain_timeout_seconds = 12.25
        metrics = "permission"
        "#;

    /// The files `bbru configure` writes are byte for byte what they were for the same
    /// values (golden files in `tests/golden/configure/`): with the defaults, with every
    /// value set, and with an embedded file named.  (`BBRU_BLESS=1` rewrites them, for a
    /// change of the output that is meant.)
    #[test]
    fn rendered_files_are_byte_identical_to_the_golden_files() {
        let full: Deploy = toml::from_str(FULL_DEPLOY).unwrap();
        let full = Deploy {
            release: Some("bbru-1.2.3".into()),
            ..full
        };
        let mut file = Deploy::default();
        file.serve.file = "/srv/bbru/var/Data.fs".into();
        let deploy_file = Some(Path::new("/srv/bbru/deploy.toml"));
        let cases = [
            ("default", Deploy::default(), None),
            ("full", full, deploy_file),
            ("file", file, deploy_file),
        ];
        let golden = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden/configure");
        let bless = std::env::var_os("BBRU_BLESS").is_some();
        for (name, deploy, from) in cases {
            let service = render_in(
                "bbru.service",
                SERVICE_TEMPLATE,
                &deploy,
                from,
                Path::new("/srv/bbru/releases/bbru-1.2.3"),
            )
            .unwrap();
            for (kind, text) in [
                ("site.toml", site_toml(&deploy, from).unwrap()),
                ("serve.toml", serve_toml(&deploy, from).unwrap()),
                ("bbru.service", service),
            ] {
                let path = golden.join(format!("{name}.{kind}"));
                if bless {
                    std::fs::create_dir_all(&golden).unwrap();
                    std::fs::write(&path, &text).unwrap();
                }
                let expected = std::fs::read_to_string(&path)
                    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
                assert_eq!(text, expected, "{}", path.display());
            }
        }
    }

    #[test]
    fn bad_deploy_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("deploy.toml");
        std::fs::write(&path, "[site]\ntitel = 'typo'\n").unwrap();
        let err = configure(dir.path(), Some(&path)).unwrap_err();
        assert!(err.to_string().contains("titel"), "{err}");
        assert!(!dir.path().join("etc/site.toml").exists());
        std::fs::write(&path, "[security]\nsecure_cookies = 'sometimes'\n").unwrap();
        let err = configure(dir.path(), Some(&path)).unwrap_err();
        assert!(
            err.to_string().contains("secure_cookies") || err.to_string().contains("sometimes"),
            "{err}"
        );
        assert!(!dir.path().join("etc/site.toml").exists());
    }
}
