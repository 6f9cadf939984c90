//! Logging in (form and session cookie) and out.

use axum::http::header;
use maud::html;
use zodb::Transaction;

use crate::security::Principal;
use crate::security::auth::SESSION_COOKIE;
use crate::web::render::{csrf, page};
use crate::web::{AppError, Ctx, Reply, same_origin_path, session_cookie};

/// Where to go after logging in: a path of this site only (never another origin); any
/// other value leads to the site root.
fn came_from(value: Option<&str>) -> String {
    value
        .and_then(same_origin_path)
        .unwrap_or_else(|| "/".to_owned())
}

fn form_page(ctx: &Ctx<'_>, error: Option<&str>) -> Reply {
    let markup = page(
        ctx,
        "Log in",
        html! {
            h1 { "Log in" }
            @if let Some(e) = error { p.error { (e) } }
            form method="post" action="/@@login" {
                (csrf(ctx))
                input type="hidden" name="came_from" value=(came_from(ctx.query("came_from").or(ctx.input.field("came_from"))));
                label { "Login" input type="text" name="login" autocomplete="username" required; }
                label { "Password" input type="password" name="password" autocomplete="current-password" required; }
                p { button type="submit" { "Log in" } }
            }
        },
    );
    Reply::Html(markup.into_string())
}

pub fn form(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Ok(form_page(ctx, None))
}

pub fn login(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let login = ctx.input.field("login").unwrap_or("").trim().to_owned();
    let password = ctx.input.field("password").unwrap_or("");
    if !ctx.app.login_allowed(&ctx.client, &login) {
        return Err(AppError::TooManyRequests);
    }
    let Some(principal) = ctx.app.check_password(tx, ctx.site, &login, password)? else {
        ctx.app.login_failed(&ctx.client, &login);
        return Ok(form_page(ctx, Some("Wrong login or password.")));
    };
    ctx.app.login_succeeded(&ctx.client, &login);
    let generation = match &principal {
        Principal::User { login, .. } => {
            let users = tx.get(ctx.site)?.users;
            match users.get(tx, login)? {
                Some(u) => {
                    let user = tx.get(u)?;
                    // Legacy hashes are replaced by argon2id at the first login.
                    if crate::security::password::needs_rehash(&user.password_hash) {
                        let hash = crate::security::password::hash(password);
                        tx.update(u, |u| u.password_hash = hash)?;
                        ctx.note(tx, &format!("rehash the password of {login}"));
                    }
                    user.session_generation
                }
                None => 0,
            }
        }
        _ => 0,
    };
    let cookie = session_cookie(ctx.app, ctx.headers, &principal, generation);
    Ok(Reply::WithHeaders(
        Box::new(Reply::Redirect(came_from(ctx.input.field("came_from")))),
        vec![(header::SET_COOKIE, cookie)],
    ))
}

pub fn logout(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let expired = ctx.app.cookie(ctx.headers, SESSION_COOKIE, "", Some(0));
    Ok(Reply::WithHeaders(
        Box::new(Reply::Redirect("/".into())),
        vec![(header::SET_COOKIE, expired)],
    ))
}
