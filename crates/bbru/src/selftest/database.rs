//! `bbru test`'s second group: the configured storage opened read-only (a Data.fs
//! without a lock, or a ZEO server registered read-only) and its last transaction.

use std::sync::Arc;

use zodb_storage::{FileStorage, MemoryStorage, Storage, Tid};

use super::parent_of;
use crate::config::{ServeConfig, StorageConfig};
use crate::limits;

/// The storage the functional checks read, opened read-only.
pub(super) struct Base {
    pub(super) storage: Arc<dyn Storage>,
    pub(super) detail: String,
    /// Whether it is ours to close (not the stand-in for a database not created yet).
    pub(super) close: bool,
}

/// `03f2… (2024-05-01 12:00:00 UTC)`, or that there is none.
fn describe_tid(tid: Tid) -> String {
    if tid == Tid::ZERO {
        return "no transaction yet".into();
    }
    let (year, month, day, hour, minute, second) = tid.parts();
    format!(
        "last transaction {tid} ({year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{:02} UTC)",
        second as u32
    )
}

pub(super) fn open_database(config: &ServeConfig) -> Result<Base, String> {
    match &config.storage {
        StorageConfig::File(path) => {
            if !path.exists() {
                let dir = parent_of(path);
                return if dir.is_dir() {
                    Ok(Base {
                        storage: Arc::new(MemoryStorage::new("empty database")),
                        detail: format!(
                            "no database yet at {}: a new installation (`bbru serve` creates \
                             it); the functional checks run on an empty database in memory",
                            path.display()
                        ),
                        close: false,
                    })
                } else {
                    Err(format!(
                        "{} does not exist, nor its directory {}",
                        path.display(),
                        dir.display()
                    ))
                };
            }
            let storage = FileStorage::open_read_only(path)
                .map_err(|e| format!("cannot open {} read-only: {}", path.display(), e))?;
            let mut detail = format!(
                "FileStorage {} opened read-only: {} objects, {} bytes, {}",
                path.display(),
                storage.len(),
                storage.size(),
                describe_tid(storage.last_transaction())
            );
            for warning in &storage.open_report().warnings {
                detail.push_str(&format!("; warning: {warning}"));
            }
            Ok(Base {
                storage: Arc::new(storage),
                detail,
                close: true,
            })
        }
        StorageConfig::Postgres(url) => {
            // Opened as the instances open it; the checks write only to the overlay.
            let shown = zodb_pg::redacted(url);
            let storage = zodb_pg::PgStorage::open(url)
                .map_err(|e| format!("cannot open the PostgreSQL database {shown}: {e}"))?;
            let detail = format!(
                "PostgreSQL {shown}: {}",
                describe_tid(storage.last_transaction())
            );
            Ok(Base {
                storage: Arc::new(storage),
                detail,
                close: true,
            })
        }
        StorageConfig::Zeo(address) => {
            let mut options = zeo::client::ClientOptions::new(address.clone());
            options.read_only = true;
            options.tls = config.zeo_tls.clone();
            options.wait_timeout = limits::SELFTEST_ZEO_WAIT;
            let storage = zeo::client::ClientStorage::connect(options).map_err(|e| {
                format!(
                    "cannot reach the ZEO server {address} (read-only, waited {} s): {e}",
                    limits::SELFTEST_ZEO_WAIT.as_secs()
                )
            })?;
            let info = storage.server_info();
            let detail = format!(
                "ZEO server {address}, storage {:?}, registered read-only: {} objects, {} bytes, {}",
                info.name,
                info.length,
                info.size,
                describe_tid(storage.last_transaction())
            );
            Ok(Base {
                storage: Arc::new(storage),
                detail,
                close: true,
            })
        }
    }
}
