//! Where a request's work runs: the blocking pool, or the runtime's worker that took
//! the request.  Either way it holds one of the instance's connection slots
//! ([`App::slots`]) while it runs.
//!
//! Plain views (an object's own page, a listing: [`App::run_view`]) run in line when
//! that cannot hold the worker up: always on a local storage ([`App::views_in_line`]:
//! a load is an index lookup and a read of the page cache, cheaper than two context
//! switches to the blocking pool and back); on a storage that waits on the network (a
//! ZEO client) after its `sync` has completed without blocking
//! ([`zodb_storage::Storage::start_sync`]), with every request to the server refused
//! while the view runs ([`zodb_storage::inline`]).  A view that needed one (an object
//! not in the caches) is run again from the start on the blocking pool; a page view
//! whose objects are all cached, the common case under load, never leaves the worker.

use std::sync::Arc;

use zodb_storage::inline;

use super::app::App;
use super::error::AppError;
use super::page_cache::{Kept, PageKey};
use super::reply::Reply;

/// A GET or HEAD of an object's own view (`/a/b` or `/a/b/@@view`): a page, a listing
/// bounded by the folder's size, a file's headers. Other views (search, image scales,
/// the sitemap, the management views) may take long and keep the blocking pool.
pub(super) fn plain_view(method: &axum::http::Method, view: &str) -> bool {
    (method == axum::http::Method::GET || method == axum::http::Method::HEAD)
        && (view.is_empty() || view == "view")
}

impl App {
    /// Runs `work` on this thread once a connection slot is free; a view that panics
    /// answers 500, as it does on the blocking pool.
    async fn in_line<T>(&self, work: impl FnOnce() -> Result<T, AppError>) -> Result<T, AppError> {
        let Ok(_permit) = self.slots.acquire().await else {
            unreachable!("the semaphore is never closed")
        };
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(work)).unwrap_or_else(|_| {
            tracing::error!("request task panicked");
            Err(AppError::Internal)
        })
    }

    /// Runs `work` on the blocking pool holding a connection slot.
    pub(super) async fn blocking<T: Send + 'static>(
        self: &Arc<Self>,
        work: impl FnOnce(&App) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        let Ok(permit) = self.slots.clone().acquire_owned().await else {
            unreachable!("the semaphore is never closed")
        };
        let app = self.clone();
        let task = move || {
            let result = work(&app);
            drop(permit);
            result
        };
        match tokio::task::spawn_blocking(task).await {
            Ok(result) => result,
            Err(e) => {
                tracing::error!(error = %e, "request task failed");
                Err(AppError::Internal)
            }
        }
    }

    /// Runs a plain view (see the module doc): in line when it can, else on the
    /// blocking pool; answered from the page cache when `key` finds a page there.
    pub(super) async fn run_view(
        self: &Arc<Self>,
        key: Option<PageKey>,
        work: impl Fn(&App) -> Result<Answered, AppError> + Send + 'static,
    ) -> Result<Answered, AppError> {
        if self.views_in_line {
            self.metrics.view_in_line();
            return self
                .in_line(|| self.view_or_kept(key.as_ref(), &work))
                .await;
        }
        if self.db.storage().waits_on_network()
            && let Some(done) = self.after_sync_in_line(key.as_ref(), &work).await
        {
            return done;
        }
        self.blocking(work).await
    }

    /// Syncs the storage without blocking, then runs `work` in line with requests to
    /// the server refused; `None` when the storage cannot sync that way or the view
    /// needed the server.  A failed sync is the answer (503: the server is away).
    async fn after_sync_in_line(
        self: &Arc<Self>,
        key: Option<&PageKey>,
        work: &impl Fn(&App) -> Result<Answered, AppError>,
    ) -> Option<Result<Answered, AppError>> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let done: zodb_storage::SyncDone = Box::new(move |result| {
            let _ = tx.send(result);
        });
        self.db.storage().start_sync(done).ok()?;
        let synced = match tokio::time::timeout(crate::limits::ZEO_ANSWER_WAIT, rx).await {
            Ok(answered) => answered.ok()?,
            Err(_) => Err(zodb_storage::StorageError::Disconnected(format!(
                "the database server did not answer within {:?}",
                crate::limits::ZEO_ANSWER_WAIT
            ))),
        };
        if let Err(e) = synced {
            // The server is out of reach (the client waited for it already): answered
            // now, as the blocking pool's run would after waiting once more.
            return Some(Ok(Answered::bare(Err(e.into()))));
        }
        let mut refused = false;
        let result = self
            .in_line(|| {
                // Caught inside the scope so that a refusal is seen even when the view
                // then panicked (an unwrapped load): it runs again where it may wait.
                let (result, r) = inline::run_in_line(true, || {
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                        self.view_or_kept(key, work)
                    }))
                });
                refused = r;
                result.unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .await;
        if refused {
            self.metrics.view_in_line_refused();
            tracing::debug!("a view needed the storage's server; running it on the blocking pool");
            return None;
        }
        self.metrics.view_in_line();
        Some(result)
    }

    /// Runs a view whose anonymous answer may be kept, but not in line (a feed, the
    /// sitemap): on the blocking pool, after the storage's sync, so the newest
    /// transaction it names is one the request must see.
    pub(super) async fn run_kept(
        self: &Arc<Self>,
        key: PageKey,
        work: impl Fn(&App) -> Result<Answered, AppError> + Send + 'static,
    ) -> Result<Answered, AppError> {
        self.blocking(move |app| match app.db.storage().sync() {
            Ok(()) => app.view_or_kept(Some(&key), &work),
            // The transaction's own sync fails the same way and says so.
            Err(_) => work(app),
        })
        .await
    }

    /// The answer kept for `key` at the newest transaction, else `work`'s answer,
    /// kept when it is an anonymous 200 page or document without a CSRF token, made
    /// from that very transaction and with nothing refused (see `page_cache.rs`).
    fn view_or_kept(
        &self,
        key: Option<&PageKey>,
        work: &impl Fn(&App) -> Result<Answered, AppError>,
    ) -> Result<Answered, AppError> {
        let Some(key) = key else {
            return work(self);
        };
        let tid = self.db.last_transaction();
        if let Some(kept) = self.page_cache.get(key, tid) {
            self.metrics.page_cache_hit();
            return Ok(Answered::bare(Ok(Reply::Kept(kept))));
        }
        let mut answered = work(self)?;
        // Made from the state at `tid` itself: the storage may name a commit before
        // the database's snapshots include it, so the newest id alone would not say.
        let keep = answered.principal.is_empty()
            && !answered.csrf_used
            && !inline::refused()
            && answered.snapshot == Some(tid);
        if keep && let Ok(reply) = &mut answered.reply {
            let kept = match std::mem::replace(
                reply,
                Reply::Status(axum::http::StatusCode::OK, String::new()),
            ) {
                Reply::Html(html) => Ok(Kept {
                    content_type: "text/html; charset=utf-8".into(),
                    headers: Vec::new(),
                    body: bytes::Bytes::from(html),
                }),
                Reply::WithHeaders(inner, headers) => match *inner {
                    Reply::Bytes {
                        content_type,
                        data,
                        filename: None,
                    } => Ok(Kept {
                        content_type,
                        headers,
                        body: bytes::Bytes::from(data),
                    }),
                    other => Err(Reply::WithHeaders(Box::new(other), headers)),
                },
                other => Err(other),
            };
            *reply = match kept {
                Ok(kept) => {
                    let kept = Arc::new(kept);
                    self.page_cache.put(key.clone(), tid, Arc::clone(&kept));
                    Reply::Kept(kept)
                }
                Err(unchanged) => unchanged,
            };
        }
        Ok(answered)
    }
}

/// What a request's work gives `publish`: the reply, and what [`Notes`] noted.
pub(super) struct Answered {
    pub(super) reply: Result<Reply, AppError>,
    /// The principal's audit name once known (empty before), for the request log.
    pub(super) principal: String,
    /// Whether a form of the reply carries the CSRF token (the cookie goes with it).
    pub(super) csrf_used: bool,
    /// The snapshot the reply was made from, if a transaction made it.
    pub(super) snapshot: Option<zodb_storage::Tid>,
}

impl Answered {
    pub(super) fn new(reply: Result<Reply, AppError>, notes: Notes) -> Answered {
        Answered {
            reply,
            principal: notes.who.into_inner(),
            csrf_used: notes.csrf_used.get(),
            snapshot: notes.snapshot.get(),
        }
    }

    /// An answer made before anything was noted (an error, a kept page).
    pub(super) fn bare(reply: Result<Reply, AppError>) -> Answered {
        Answered::new(reply, Notes::default())
    }
}

/// What a request's transaction notes on its way, for what comes after it.
#[derive(Default)]
pub(super) struct Notes {
    pub(super) who: std::cell::RefCell<String>,
    pub(super) csrf_used: std::cell::Cell<bool>,
    pub(super) snapshot: std::cell::Cell<Option<zodb_storage::Tid>>,
}
