//! Why a request failed ([`AppError`]) and the page or JSON that says so.  Details of
//! internal errors are logged, never shown.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use super::{App, render};
use crate::i18n::Lang;
use crate::tr;

/// Why a request failed.  Details of internal errors are logged, never shown.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error("not found")]
    NotFound,
    #[error("forbidden")]
    Forbidden,
    /// Not logged in (or bad credentials) where a login is needed.
    #[error("unauthorized")]
    Unauthorized,
    #[error("{0}")]
    BadRequest(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    /// An `If-Match` that names another version than the current one: 412.
    #[error("precondition failed: {0}")]
    PreconditionFailed(String),
    /// Too many failed logins: 429, with how long the client must wait (`Retry-After`).
    #[error("too many requests")]
    TooManyRequests(std::time::Duration),
    #[error("payload too large: {0}")]
    TooLarge(String),
    #[error("the site is not set up yet")]
    NotSetUp,
    /// A shared resource (body budget, password checks) stayed taken too long: 503,
    /// try again.
    #[error("busy: {0}")]
    Busy(String),
    /// The client was too slow sending its request.
    #[error("request timeout: {0}")]
    Timeout(String),
    #[error(transparent)]
    Db(#[from] zodb::Error),
    /// A failure already logged where it happened.
    #[error("internal error")]
    Internal,
}

impl zodb::Retryable for AppError {
    fn is_conflict(&self) -> bool {
        matches!(self, AppError::Db(e) if e.is_conflict())
    }
    fn conflict_tid(&self) -> Option<zodb_storage::Tid> {
        match self {
            AppError::Db(e) => e.conflict_tid(),
            _ => None,
        }
    }
}

impl AppError {
    /// The storage error inside, if this is one.
    fn storage(&self) -> Option<&zodb_storage::StorageError> {
        match self {
            AppError::Db(zodb::Error::Storage(e)) => Some(e),
            _ => None,
        }
    }

    /// A commit that waited too long for objects another transaction holds.
    pub fn is_lock_timeout(&self) -> bool {
        matches!(
            self.storage(),
            Some(zodb_storage::StorageError::LockTimeout { .. })
        )
    }

    /// The database could not be reached (a ZEO server away).
    pub fn is_unavailable(&self) -> bool {
        self.storage().is_some_and(|e| e.is_disconnected())
    }
}

impl From<zodb_storage::StorageError> for AppError {
    fn from(e: zodb_storage::StorageError) -> Self {
        AppError::Db(e.into())
    }
}

/// The status and the words for `error`.  Messages views wrote themselves
/// (`BadRequest`, `TooLarge`, ...) are already in the request's language, or English
/// where they come from the API or below the web layer.
fn message(app: &App, error: &AppError, lang: Lang) -> (StatusCode, String) {
    match error {
        AppError::NotFound => (StatusCode::NOT_FOUND, tr!(lang, "error-not-found")),
        AppError::Forbidden => (StatusCode::FORBIDDEN, tr!(lang, "error-forbidden")),
        AppError::Unauthorized => (StatusCode::UNAUTHORIZED, tr!(lang, "error-unauthorized")),
        AppError::BadRequest(m) => (StatusCode::BAD_REQUEST, m.clone()),
        AppError::MethodNotAllowed => (
            StatusCode::METHOD_NOT_ALLOWED,
            tr!(lang, "error-method-not-allowed"),
        ),
        AppError::PreconditionFailed(m) => (StatusCode::PRECONDITION_FAILED, m.clone()),
        AppError::TooManyRequests(_) => (
            StatusCode::TOO_MANY_REQUESTS,
            tr!(lang, "error-too-many-logins"),
        ),
        AppError::TooLarge(m) => (StatusCode::PAYLOAD_TOO_LARGE, m.clone()),
        AppError::NotSetUp => (
            StatusCode::SERVICE_UNAVAILABLE,
            tr!(
                lang,
                "error-not-set-up",
                path = app.site_config_path.as_str()
            ),
        ),
        AppError::Busy(m) => (StatusCode::SERVICE_UNAVAILABLE, m.clone()),
        AppError::Timeout(m) => (StatusCode::REQUEST_TIMEOUT, m.clone()),
        AppError::Db(e) if e.is_conflict() => (StatusCode::CONFLICT, tr!(lang, "error-conflict")),
        AppError::Internal => (
            StatusCode::INTERNAL_SERVER_ERROR,
            tr!(lang, "error-internal"),
        ),
        e if e.is_unavailable() => (
            StatusCode::SERVICE_UNAVAILABLE,
            tr!(lang, "error-unavailable"),
        ),
        e if e.is_lock_timeout() => (
            StatusCode::SERVICE_UNAVAILABLE,
            tr!(lang, "error-lock-timeout"),
        ),
        AppError::Db(_) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            tr!(lang, "error-internal"),
        ),
    }
}

/// The reply for `error`: JSON (English, stable) for API clients, else a page in `lang`.
pub(super) fn render_error(app: &App, error: AppError, json: bool, lang: Lang) -> Response {
    let (status, english) = message(app, &error, Lang::En);
    let mut response = if json {
        (status, axum::Json(serde_json::json!({"error": {"type": status.canonical_reason(), "message": english}}))).into_response()
    } else {
        // Limits and timeouts are worded where they are met, before a language is at
        // hand: another language says what happened in its own words and shows the
        // details as they are, marked as English.
        let (message, detail) = match &error {
            _ if lang == Lang::En => (english, None),
            AppError::TooLarge(d) => (tr!(lang, "error-too-large"), Some(d.as_str())),
            AppError::Timeout(d) => (tr!(lang, "error-timeout"), Some(d.as_str())),
            AppError::Busy(d) => (tr!(lang, "error-busy"), Some(d.as_str())),
            _ => (message(app, &error, lang).1, None),
        };
        (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            render::error_page(status, &message, detail, lang),
        )
            .into_response()
    };
    match &error {
        e if e.is_unavailable() => {
            tracing::warn!(error = %e, "request refused: the database is out of reach");
        }
        e if e.is_lock_timeout() => {
            tracing::warn!(error = %e, "request refused: its objects stayed locked by another commit");
        }
        AppError::Db(e) if !e.is_conflict() => tracing::error!(error = %e, "request failed"),
        _ => {}
    }
    if matches!(error, AppError::Busy(_)) {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
    }
    if let AppError::TooManyRequests(wait) = &error {
        // Whole seconds, rounded up: a client retrying then is let through.
        let seconds = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        if let Ok(v) = HeaderValue::from_str(&seconds.max(1).to_string()) {
            response.headers_mut().insert(header::RETRY_AFTER, v);
        }
    }
    if matches!(error, AppError::Timeout(_)) {
        // What remains of the body is unread: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
    if matches!(error, AppError::Unauthorized) {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"bbru\", charset=\"UTF-8\""),
        );
    }
    response
}
