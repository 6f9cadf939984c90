//! Operations endpoints: `/@@health` for deploys and load balancers, `/@@metrics` for
//! Prometheus (who may read it is `[http] metrics` of `etc/serve.toml`).

use std::net::IpAddr;

use axum::http::StatusCode;
use zodb::Transaction;

use crate::config::MetricsAccess;
use crate::security::Permission;

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

/// The Prometheus text, to whom `[http] metrics` of `etc/serve.toml` allows.
pub fn metrics(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let allowed = match ctx.app.http.metrics {
        MetricsAccess::Public => true,
        // A loopback peer that is not a local proxy forwarding someone else.
        MetricsAccess::Loopback => {
            !ctx.headers.contains_key("x-forwarded-for")
                && ctx
                    .client
                    .parse::<IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        MetricsAccess::Permission => ctx.allowed(Permission::ManageUsers),
    };
    if !allowed {
        return Err(
            if ctx.principal.is_authenticated() || ctx.app.http.metrics == MetricsAccess::Loopback {
                AppError::Forbidden
            } else {
                AppError::Unauthorized
            },
        );
    }
    let text = ctx.app.metrics.render(
        &ctx.app.db.stats(),
        ctx.app.pages.renders(),
        ctx.app.verifier.checks(),
    );
    Ok(Reply::Bytes {
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        data: text.into_bytes(),
        filename: None,
    })
}
