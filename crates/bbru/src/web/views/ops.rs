//! Operations endpoints: `/@@health` for deploys and load balancers, `/@@metrics` for
//! Prometheus.

use axum::http::StatusCode;
use zodb::Transaction;

use crate::web::{AppError, Ctx, Reply};

/// 200 with the storage's name and last transaction once the database answered a read
/// (the traversal to the root already loaded it); errors become 5xx before this runs.
pub fn health(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let db = &ctx.app.db;
    Ok(Reply::Json(
        StatusCode::OK,
        serde_json::json!({
            "status": "ok",
            "storage": db.storage().name(),
            "last_transaction": format!("{:016x}", tx.snapshot().0),
            "version": env!("CARGO_PKG_VERSION"),
            "release": ctx.app.release,
            "pid": std::process::id(),
        }),
    ))
}

pub fn metrics(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let text = ctx.app.metrics.render(&ctx.app.db.stats());
    Ok(Reply::Bytes {
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        data: text.into_bytes(),
        filename: None,
    })
}
