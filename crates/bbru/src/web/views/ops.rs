//! Operations endpoints: `/@@health` for deploys and load balancers, `/@@metrics` for
//! Prometheus (who may read it is `[http] metrics` of `etc/serve.toml`).

use std::net::IpAddr;

use axum::http::StatusCode;
use serde_json::{Value, json};
use zodb::Transaction;

use crate::config::MetricsAccess;
use crate::limits;
use crate::security::Permission;
use crate::web::{App, AppError, Ctx, Reply};

/// What every health answer says: the release, the process, and the storage (its kind
/// and where it is; for a ZEO client, whether it holds a read lease).
fn identity(app: &App, status: &str) -> serde_json::Map<String, Value> {
    let storage = app.db.storage();
    let here = storage.location();
    let Value::Object(mut map) = json!({
        "status": status,
        "version": env!("CARGO_PKG_VERSION"),
        "release": app.release,
        "pid": std::process::id(),
        "storage": storage.name(),
        "storage_kind": here.kind,
        "storage_location": here.location,
    }) else {
        unreachable!("a JSON object")
    };
    if let Some(held) = storage.holds_read_lease() {
        map.insert("read_lease".into(), Value::from(held));
    }
    map
}

/// The storage checked with a deadline ([`limits::HEALTH_STORAGE_DEADLINE`]: a ZEO ping,
/// a FileStorage's header read): `None` when it answers, else the 503 `/@@health`
/// gives, with the reason.  Asked before any transaction, so a health check never
/// answers from caches.
pub fn storage_unavailable(app: &App) -> Option<Reply> {
    let error = app
        .db
        .storage()
        .check_health(limits::HEALTH_STORAGE_DEADLINE)
        .err()?;
    tracing::warn!(error = %error, "health check: the storage does not answer");
    let mut body = identity(app, "unavailable");
    body.insert("reason".into(), Value::from(error.to_string()));
    Some(Reply::Json(
        StatusCode::SERVICE_UNAVAILABLE,
        Value::Object(body),
    ))
}

/// The health of an instance whose database holds no site yet (the storage answered):
/// 200, since the instance and its database are fine; the site awaits its bootstrap
/// manager.
pub fn health_not_set_up(app: &App) -> Reply {
    let mut body = identity(app, "ok");
    body.insert("site".into(), Value::from("not set up"));
    Reply::Json(StatusCode::OK, Value::Object(body))
}

/// 200 once the storage passed its check (`storage_unavailable`, before the
/// transaction) and the traversal to the root read the database; with the last
/// transaction of this snapshot, as a tid and as a time.
pub fn health(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let mut body = identity(ctx.app, "ok");
    let last = tx.snapshot();
    body.insert(
        "last_transaction".into(),
        Value::from(format!("{:016x}", last.0)),
    );
    body.insert(
        "last_transaction_time".into(),
        Value::from(super::api::iso(last.unix_seconds())),
    );
    Ok(Reply::Json(StatusCode::OK, Value::Object(body)))
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
        ctx.app.db.storage().holds_read_lease(),
    );
    Ok(Reply::Bytes {
        content_type: "application/openmetrics-text; version=1.0.0; charset=utf-8".into(),
        data: text.into_bytes(),
        filename: None,
    })
}
