//! `LISTEN/NOTIFY`: commits learnt of at once instead of at the next poll.
//!
//! Every bbru commit sends `NOTIFY bbru_commit` in its own SQL transaction
//! (PostgreSQL delivers it at `COMMIT`, and never for a transaction rolled
//! back). A storage asked to listen ([`PgStorage::listen_for_commits`], the
//! ZEO server does) keeps one connection of its own, outside the pool, on
//! `LISTEN bbru_commit`; each notification (a burst counts once) runs a poll,
//! which reports the new transactions to the listeners exactly as `sync`
//! would. The poll, not the notification, says what changed, so a lost or
//! duplicated notification costs nothing but latency or one query.
//!
//! RelStorage clients send no notification: their commits reach us at the
//! next `sync` (the ZEO server polls at an interval for them). When the
//! listening connection breaks, it is made again after [`LISTEN_RETRY`],
//! followed by one poll for what was notified meanwhile.

use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};

use tokio::sync::{Notify, oneshot};
use tokio_postgres::{AsyncMessage, Client, Config, NoTls};

use crate::error::{PgError, PgResult};
use crate::limits::{CONNECT_TIMEOUT, LISTEN_RETRY};
use crate::poll::poll_commits;
use crate::storage::{Inner, PgStorage};

/// The channel bbru commits notify (an API boundary: every bbru process on a
/// database must use the same).
pub(crate) const CHANNEL: &str = "bbru_commit";

/// The end of finish's pipeline: the notification, then the commit that
/// delivers it.
pub(crate) const NOTIFY_AND_COMMIT: &str = "NOTIFY bbru_commit; COMMIT";

impl PgStorage {
    /// Starts listening for other bbru processes' commits on this database:
    /// from now on each is reported to the listeners (`add_listener`) as
    /// soon as its notification arrives, without waiting for `sync`. Idempotent;
    /// stops when the storage closes.
    pub fn listen_for_commits(&self) {
        if self.inner.listening.swap(true, Ordering::AcqRel) {
            return;
        }
        let handle = self.handle();
        let config = self.inner.pool.config().clone();
        handle.spawn(listen(config, Arc::downgrade(&self.inner), handle.clone()));
    }
}

/// The listening loop: connect, `LISTEN`, poll at each notification;
/// reconnect after a break.
async fn listen(config: Config, inner: Weak<Inner>, handle: tokio::runtime::Handle) {
    let wake = Arc::new(Notify::new());
    loop {
        match connect_listening(&config, Arc::clone(&wake)).await {
            Ok((client, mut ended)) => {
                tracing::debug!("listening for commits on {CHANNEL}");
                // What was notified before we listened is found by one poll.
                wake.notify_one();
                loop {
                    tokio::select! {
                        _ = wake.notified() => {
                            let Some(inner) = inner.upgrade() else { return };
                            if inner.closed.load(Ordering::Acquire) {
                                return;
                            }
                            let h = handle.clone();
                            let polled =
                                tokio::task::spawn_blocking(move || poll_commits(&inner, &h)).await;
                            match polled {
                                Ok(Ok(())) => {}
                                Ok(Err(e)) => tracing::warn!("polling after a notification: {e}"),
                                Err(e) => tracing::warn!("polling after a notification: {e}"),
                            }
                        }
                        _ = &mut ended => break,
                    }
                }
                drop(client);
                tracing::info!("the connection listening for commits ended; reconnecting");
            }
            Err(e) => tracing::warn!("listening for commits: {e}"),
        }
        match inner.upgrade() {
            Some(i) if !i.closed.load(Ordering::Acquire) => {}
            _ => return,
        }
        tokio::time::sleep(LISTEN_RETRY).await;
    }
}

/// A connection on `LISTEN`: its client, and what is told when it ends.
/// Its messages are read by a task of its own, which wakes `wake` at each
/// notification.
async fn connect_listening(
    config: &Config,
    wake: Arc<Notify>,
) -> PgResult<(Client, oneshot::Receiver<()>)> {
    let (client, mut connection) = tokio::time::timeout(CONNECT_TIMEOUT, config.connect(NoTls))
        .await
        .map_err(|_| PgError::ConnectTimeout(CONNECT_TIMEOUT))?
        .map_err(PgError::Connect)?;
    let (ended, ended_rx) = oneshot::channel();
    tokio::spawn(async move {
        loop {
            match std::future::poll_fn(|cx| connection.poll_message(cx)).await {
                Some(Ok(AsyncMessage::Notification(_))) => wake.notify_one(),
                Some(Ok(_)) => {}
                Some(Err(e)) => {
                    tracing::debug!("listening connection: {e}");
                    break;
                }
                None => break,
            }
        }
        let _ = ended.send(());
    });
    client
        .batch_execute(&format!("LISTEN {CHANNEL}"))
        .await
        .map_err(PgError::query("listening for commits"))?;
    Ok((client, ended_rx))
}
