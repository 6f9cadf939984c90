//! Where a request's work runs: the blocking pool, or the runtime's worker that took
//! the request (see [`App::views_in_line`]).  Either way it holds one of the
//! instance's connection slots ([`App::slots`]) while it runs.

use std::sync::Arc;

use super::app::App;
use super::error::AppError;

impl App {
    /// Runs `work` holding a connection slot: on this thread when `in_line` (see
    /// [`App::views_in_line`]), else on the blocking pool.
    pub(super) async fn run<T: Send + 'static>(
        self: &Arc<Self>,
        in_line: bool,
        work: impl FnOnce(&App) -> Result<T, AppError> + Send + 'static,
    ) -> Result<T, AppError> {
        if !in_line {
            return self.blocking(work).await;
        }
        let Ok(_permit) = self.slots.acquire().await else {
            unreachable!("the semaphore is never closed")
        };
        // A view that panics answers 500, as it does on the blocking pool.
        std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| work(self))).unwrap_or_else(|_| {
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
}
