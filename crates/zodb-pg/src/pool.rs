//! The connection pool: idle connections kept for reuse, at most
//! [`CONNECTIONS_DEFAULT`] (or the size set) open at once (a semaphore of slots), each with its
//! own cache of prepared statements so a load is one round trip.
//!
//! A leased connection goes back to the pool when dropped, unless it was
//! marked broken (an error left it in an unknown state, or it closed); a
//! connection is always returned outside any SQL transaction.

use std::collections::HashMap;
use std::ops::{Deref, DerefMut};
use std::sync::Arc;

use parking_lot::Mutex;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_postgres::{Client, Config, NoTls, Statement};

use crate::error::{PgError, PgResult};
use crate::limits::{CONNECT_TIMEOUT, CONNECTIONS_DEFAULT};

#[derive(Debug)]
pub(crate) struct Pool {
    config: Config,
    idle: Mutex<Vec<PgConn>>,
    slots: Arc<Semaphore>,
    /// The number of slots.
    size: Mutex<usize>,
}

/// One connection and what it has prepared.
pub(crate) struct PgConn {
    pub(crate) client: Client,
    statements: HashMap<&'static str, Statement>,
    /// Whether this session's temporary staging table exists.
    pub(crate) has_temp_table: bool,
}

impl std::fmt::Debug for PgConn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgConn")
            .field("statements", &self.statements.len())
            .finish()
    }
}

impl PgConn {
    /// The prepared form of `sql`, prepared on first use on this connection.
    pub(crate) async fn prepared(&mut self, sql: &'static str) -> PgResult<Statement> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = self
            .client
            .prepare(sql)
            .await
            .map_err(PgError::query("preparing a statement"))?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}

/// A connection lent by the pool.
#[derive(Debug)]
pub(crate) struct Leased {
    conn: Option<PgConn>,
    pool: Arc<Pool>,
    broken: bool,
    _slot: OwnedSemaphorePermit,
}

impl Leased {
    /// Closes the connection instead of returning it (its state is unknown).
    pub(crate) fn mark_broken(&mut self) {
        self.broken = true;
    }
}

impl Deref for Leased {
    type Target = PgConn;
    fn deref(&self) -> &PgConn {
        self.conn
            .as_ref()
            .expect("a leased connection is present until dropped")
    }
}

impl DerefMut for Leased {
    fn deref_mut(&mut self) -> &mut PgConn {
        self.conn
            .as_mut()
            .expect("a leased connection is present until dropped")
    }
}

impl Drop for Leased {
    fn drop(&mut self) {
        if let Some(conn) = self.conn.take()
            && !self.broken
            && !conn.client.is_closed()
        {
            self.pool.idle.lock().push(conn);
        }
    }
}

impl Pool {
    pub(crate) fn new(config: Config) -> Arc<Pool> {
        Arc::new(Pool {
            config,
            idle: Mutex::new(Vec::new()),
            slots: Arc::new(Semaphore::new(CONNECTIONS_DEFAULT)),
            size: Mutex::new(CONNECTIONS_DEFAULT),
        })
    }

    /// Makes it `n` slots (at least one). Fewer slots take effect as lent
    /// connections come back: only free slots are removed at once.
    pub(crate) fn resize(&self, n: usize, runtime: &tokio::runtime::Handle) {
        let n = n.max(1);
        let mut size = self.size.lock();
        if n > *size {
            self.slots.add_permits(n - *size);
        } else {
            let mut left = *size - n;
            left -= self.slots.forget_permits(left);
            if left > 0 {
                // The rest are lent: forgotten as they come back.
                let slots = Arc::clone(&self.slots);
                runtime.spawn(async move {
                    if let Ok(permits) = slots.acquire_many_owned(left as u32).await {
                        permits.forget();
                    }
                });
            }
        }
        *size = n;
    }

    /// A connection: an idle one, or a new one when none is idle. Waits for a
    /// slot when all are lent. Runs on the storage's runtime.
    pub(crate) async fn get(self: &Arc<Pool>) -> PgResult<Leased> {
        let slot = self
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| PgError::RuntimeGone)?;
        loop {
            let idle = self.idle.lock().pop();
            match idle {
                Some(conn) if conn.client.is_closed() => continue,
                Some(conn) => {
                    return Ok(Leased {
                        conn: Some(conn),
                        pool: self.clone(),
                        broken: false,
                        _slot: slot,
                    });
                }
                None => break,
            }
        }
        let client = connect(&self.config).await?;
        Ok(Leased {
            conn: Some(PgConn {
                client,
                statements: HashMap::new(),
                has_temp_table: false,
            }),
            pool: self.clone(),
            broken: false,
            _slot: slot,
        })
    }

    /// Where the connections go (for the listening connection, which is not
    /// the pool's).
    pub(crate) fn config(&self) -> &Config {
        &self.config
    }

    /// Drops every idle connection (at close).
    pub(crate) fn clear(&self) {
        self.idle.lock().clear();
    }
}

/// Opens one connection and runs its I/O task on the current runtime.
pub(crate) async fn connect(config: &Config) -> PgResult<Client> {
    let (client, connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| PgError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(PgError::Connect)?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::debug!("PostgreSQL connection ended: {e}");
        }
    });
    Ok(client)
}
