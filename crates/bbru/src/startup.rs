//! Starting an instance: open the storage (embedded FileStorage or ZEO), make sure the
//! site exists (created by the bootstrap manager on an empty database), and decide
//! whether the bootstrap manager may be used.

use std::sync::Arc;
use std::time::Duration;

use zodb::DB;
use zodb_storage::{FileStorage, Storage};

use crate::blob_cache::BlobCache;
use crate::config::{ServeConfig, SiteConfig, StorageConfig};
use crate::limits;
use crate::model::Site;
use crate::security::auth::{AccountThrottle, RateLimiter};
use crate::security::key::SecretKey;
use crate::security::{AUTHENTICATED, EVERYBODY, Role, Setting};
use crate::web::{App, metrics::Metrics, now};

/// Why an instance cannot start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    // The storage's error is part of the message, not a `source`: a report that prints
    // the chain (`{:#}`) would say it twice.
    #[error("cannot open the storage {what}: {error}")]
    Storage {
        what: String,
        error: zodb_storage::StorageError,
    },
    #[error("cannot use the blob cache directory {dir}")]
    BlobCache {
        dir: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("database error: {0}")]
    Db(#[from] zodb::Error),
}

/// An open storage, and the blob cache directory it uses (held as long as this lives).
pub struct Opened {
    pub storage: Arc<dyn Storage>,
    /// A ZEO instance's blob cache, its own while this is held.
    pub blob_cache: Option<BlobCache>,
}

impl std::fmt::Debug for Opened {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Opened")
            .field("storage", &self.storage.name())
            .field("blob_cache", &self.blob_cache)
            .finish()
    }
}

/// Opens the storage the configuration names.
pub fn open_storage(config: &ServeConfig) -> Result<Opened, StartError> {
    match &config.storage {
        StorageConfig::File(path) => {
            if let Some(dir) = path.parent()
                && !dir.as_os_str().is_empty()
            {
                let _ = std::fs::create_dir_all(dir);
            }
            // Uploaded files are blobs, in `blobs/` beside the Data.fs.
            let options = zodb_storage::filestorage::Options {
                blob_dir: Some(blob_dir_of(path)),
                ..Default::default()
            };
            FileStorage::open_with(path, options)
                .map(|s| Opened {
                    storage: Arc::new(s),
                    blob_cache: None,
                })
                .map_err(|error| StartError::Storage {
                    what: path.display().to_string(),
                    error,
                })
        }
        StorageConfig::Postgres(url) => {
            // Blobs are kept in the database; the instance's blob cache (as on
            // ZEO, a directory of its own) holds the files it stored or read.
            let root = config.blob_cache_root();
            let cache = BlobCache::claim(&root).map_err(|source| StartError::BlobCache {
                dir: root.clone(),
                source,
            })?;
            let what = || format!("PostgreSQL {}", zodb_pg::redacted(url));
            let storage = zodb_pg::PgStorage::open(url)
                .and_then(|s| s.with_replicas(&config.postgres_replicas))
                .and_then(|s| s.with_blob_dir(cache.dir()))
                .and_then(|s| s.with_blob_cache_bytes(config.blob_cache_bytes))
                // A session for each request that may run at once (a vote holds one to
                // its finish), and one for the polls of other instances' commits: the
                // sessions an instance costs the server follow `[storage] connections`.
                .map(|s| s.with_connections(config.connections.saturating_add(1)))
                .map_err(|e| StartError::Storage {
                    what: what(),
                    error: e.into(),
                })?;
            tracing::info!(dir = %cache.dir().display(), "blob cache");
            Ok(Opened {
                storage: Arc::new(storage),
                blob_cache: Some(cache),
            })
        }
        StorageConfig::Zeo(address) => {
            let mut options = zeo::client::ClientOptions::new(address.clone());
            options.wait_timeout = crate::limits::ZEO_CONNECT_WAIT;
            // Requests fail fast (503) while the server is away.
            options.disconnected_wait = Some(crate::limits::ZEO_DISCONNECTED_WAIT);
            options.answer_wait = Some(crate::limits::ZEO_ANSWER_WAIT);
            options.commit_wait = Some(crate::limits::ZEO_COMMIT_WAIT);
            options.tls = config.zeo_tls.clone();
            // The blob cache, a directory of this instance's own (blobs are used only
            // when the server's storage has them).
            let root = config.blob_cache_root();
            let cache = BlobCache::claim(&root).map_err(|source| StartError::BlobCache {
                dir: root.clone(),
                source,
            })?;
            options.blob_dir = Some(cache.dir().to_owned());
            options.blob_cache_bytes = config.blob_cache_bytes;
            tracing::info!(dir = %cache.dir().display(), bytes_max = config.blob_cache_bytes, "blob cache");
            zeo::client::ClientStorage::connect(options)
                .map(|s| Opened {
                    storage: Arc::new(s),
                    blob_cache: Some(cache),
                })
                .map_err(|error| StartError::Storage {
                    what: format!("ZEO server {address}"),
                    error,
                })
        }
    }
}

/// The blob directory of an embedded `Data.fs`: `blobs` beside it.
pub fn blob_dir_of(data_fs: &std::path::Path) -> std::path::PathBuf {
    let dir = data_fs.parent().filter(|d| !d.as_os_str().is_empty());
    dir.unwrap_or(std::path::Path::new(".")).join("blobs")
}

/// Whether a local manager exists: a user or a group granted Manager at the site root.
fn local_manager_exists(db: &DB, site: zodb::PRef<Site>) -> Result<bool, zodb::Error> {
    let mut conn = db.connection();
    let tx = conn.begin();
    Site::local_manager_exists(&tx, site)
}

/// Builds the application over `db`: creates the site if the database has none and a
/// bootstrap manager is declared; logs what an operator must know.  Sessions and CSRF
/// tokens are signed with a secret derived from the site's stored one and `key` (kept
/// outside the database).
pub fn app(
    db: DB,
    config: SiteConfig,
    site_config_path: &str,
    key: &SecretKey,
) -> Result<App, StartError> {
    let db_pool_size = db.pool_size().max(1);
    if let Some(blobs) = db.storage().blobs() {
        crate::web::remove_leftovers(&blobs.tmp_dir());
    }
    let mut conn = db.connection();
    let tx = conn.begin();
    let mut site = Site::find(&tx)?;
    drop(tx);
    let declared = config.bootstrap_manager.clone();
    if site.is_none() {
        match &declared {
            Some(boot) => {
                // Instances started together on an empty database race to create the
                // site: the loser's commit conflicts on the root, and it uses the
                // winner's site.
                let created = zodb::TransactionManager::new(3).run(&mut conn, |tx| {
                    if let Some(existing) = Site::find(tx)? {
                        return Ok::<_, zodb::Error>(existing);
                    }
                    let created = Site::create(
                        tx,
                        &config.site.title,
                        &format!("{} (bootstrap)", boot.login),
                        now(),
                    )?;
                    let root = tx.get(created)?.content;
                    tx.update(root, |f| {
                        f.meta
                            .grants
                            .set(AUTHENTICATED, Role::Member, Some(Setting::Allow));
                        if config.site.public {
                            f.meta
                                .grants
                                .set(EVERYBODY, Role::Member, Some(Setting::Allow));
                        }
                    })?;
                    tx.set_user(format!("{} (bootstrap)", boot.login));
                    tx.note("create the site");
                    Ok(created)
                })?;
                tracing::info!(title = %config.site.title, "the site is set up (created now, by this instance or one started with it)");
                site = Some(created);
            }
            None => {
                tracing::warn!(
                    "the database holds no site yet. To create it, declare the bootstrap manager: \
                     in {site_config_path}, uncomment the [bootstrap_manager] section, set a \
                     strong password, and restart; then log in at /@@login, create a local \
                     manager at /@@users, and comment the section out again"
                );
            }
        }
    }
    let mut bootstrap = declared.as_ref().map(|b| (b.login.clone(), b.hash()));
    let bootstrap_keep = declared.as_ref().is_some_and(|b| b.keep);
    if let (Some(site), Some(boot)) = (site, &declared)
        && local_manager_exists(&db, site)?
    {
        if boot.keep {
            tracing::warn!(
                "the bootstrap manager {:?} is still declared in {site_config_path} although \
                 a local manager exists; it is kept (keep = true), but comment it out",
                boot.login
            );
        } else {
            tracing::warn!(
                "the bootstrap manager {:?} is still declared in {site_config_path} although \
                 a local manager exists; it is refused: comment it out (or set keep = true)",
                boot.login
            );
            bootstrap = None;
        }
    }
    let secret = match site {
        Some(site) => {
            let tx = conn.begin();
            key.derive(&tx.get(site)?.secret)
        }
        None => String::new(),
    };
    let window = Duration::from_secs(config.security.login_window_seconds);
    let limiter = RateLimiter::new(config.security.login_attempts_max, window);
    let account_throttle = AccountThrottle::new(
        config
            .security
            .login_attempts_max
            .saturating_mul(limits::LOGIN_ADDRESSES_PER_ACCOUNT),
        window,
    );
    // Uploads stream into files: the budget bounds only what bodies hold in memory.
    let body_budget = limits::BODY_BUDGET_BYTES.min(tokio::sync::Semaphore::MAX_PERMITS);
    let views_in_line = !db.storage().waits_on_network();
    Ok(App {
        views_in_line,
        db,
        config,
        site,
        secret,
        bootstrap,
        bootstrap_keep,
        limiter,
        account_throttle,
        trusted_proxies: Vec::new(),
        metrics: Metrics::default(),
        site_config_path: site_config_path.to_owned(),
        release: String::new(),
        slots: Arc::new(tokio::sync::Semaphore::new(db_pool_size)),
        body_budget: Arc::new(tokio::sync::Semaphore::new(body_budget)),
        verifier: crate::security::password::Verifier::for_this_machine(),
        basic_cache: crate::web::BasicCache::default(),
        pages: crate::web::views::content::RenderedPages::default(),
        page_cache: Default::default(),
        discovery: crate::web::gate::Gate::new(limits::DISCOVERY_WALKS_AT_ONCE),
        scales: crate::web::views::images::ImageScales::default(),
        http: crate::config::HttpSettings::default(),
        conflict_retries: crate::limits::CONFLICT_RETRIES_DEFAULT,
        conflict_turns: zodb::Turns::new(),
    })
}
