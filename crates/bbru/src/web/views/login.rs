//! Logging in (form and session cookie) and out, and changing one's own password
//! (`/@@password`).  Logging out and changing the password end every session of the
//! user, in every browser: the user's `session_generation` (the site's
//! `bootstrap_generation` for the bootstrap manager) is bumped, and sessions signed for
//! an older one are refused.  API tokens (`POST /@login`, as plone.restapi has it: JSON
//! `{"login", "password"}` answered with `{"token"}`, then sent as `Authorization:
//! Bearer <token>`) are revoked the same way.

use axum::http::{StatusCode, header};
use maud::html;
use zodb::Transaction;

use crate::limits;
use crate::security::auth::{self, SESSION_COOKIE};
use crate::security::{Principal, password};
use crate::tr;
use crate::web::render::{self, Notice, csrf, field, page, redirect_with_notice};
use crate::web::views::users::check_password as check_new_password;
use crate::web::{AppError, Ctx, Reply, same_origin_path, session_cookie, session_lifetime};

/// Where to go after logging in: a path of this site only (never another origin); any
/// other value leads to the site root.
fn came_from(value: Option<&str>) -> String {
    value
        .and_then(same_origin_path)
        .unwrap_or_else(|| "/".to_owned())
}

fn form_page(ctx: &Ctx<'_>, error: Option<&str>) -> Reply {
    let lang = ctx.lang;
    let login = field("login", tr!(lang, "field-login"));
    let password = field("password", tr!(lang, "field-password"));
    let markup = page(
        ctx,
        &tr!(lang, "log-in"),
        html! {
            h1 { (tr!(lang, "log-in")) }
            @if let Some(e) = error { p.error #login-error role="alert" { (e) } }
            form method="post" action="/@@login" {
                (csrf(ctx))
                input type="hidden" name="came_from" value=(came_from(ctx.query("came_from").or(ctx.input.field("came_from"))));
                (login.wrap(html! { input #login type="text" name="login" value=[ctx.input.field("login")] autocomplete="username" required aria-describedby=[error.map(|_| "login-error")]; }))
                (password.wrap(html! { input #password type="password" name="password" autocomplete="current-password" required; }))
                p { button type="submit" { (tr!(lang, "log-in")) } }
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
    ctx.app.login_allowed(&ctx.client, &login)?;
    let Some(principal) = ctx.app.check_password(tx, ctx.site, &login, password)? else {
        ctx.app.login_failed(&ctx.client, &login);
        return Ok(form_page(ctx, Some(&tr!(ctx.lang, "login-wrong"))));
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
        Principal::Bootstrap { .. } => tx.get(ctx.site)?.bootstrap_generation,
        Principal::Anonymous => 0,
    };
    let cookie = session_cookie(ctx.app, ctx.headers, &principal, generation);
    Ok(Reply::WithHeaders(
        Box::new(Reply::Redirect(came_from(ctx.input.field("came_from")))),
        vec![(header::SET_COOKIE, cookie)],
    ))
}

/// `POST /@@logout`: ends every session of the principal (a cookie captured before is
/// worthless after) and drops this browser's cookie.
pub fn logout(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    end_sessions(ctx, tx)?;
    let expired = ctx.app.cookie(ctx.headers, SESSION_COOKIE, "", Some(0));
    Ok(Reply::WithHeaders(
        Box::new(Reply::Redirect("/".into())),
        vec![(header::SET_COOKIE, expired)],
    ))
}

/// `POST /@logout` (plone.restapi's): ends every session and API token of the principal
/// who asks, as `@@logout` does; `204 No Content`, or `401` for nobody logged in.
pub fn token_logout(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if matches!(ctx.principal, Principal::Anonymous) {
        return Err(AppError::Unauthorized);
    }
    end_sessions(ctx, tx)?;
    Ok(Reply::Status(StatusCode::NO_CONTENT, String::new()))
}

/// Moves the principal's session generation on: every cookie and token signed before
/// stops working.
fn end_sessions(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<(), AppError> {
    match &ctx.principal {
        Principal::User { login, .. } => {
            if let Some(user) = tx.get(ctx.site)?.users.get(tx, login)? {
                tx.update(user, |u| {
                    u.session_generation = u.session_generation.wrapping_add(1);
                })?;
                ctx.note(tx, &format!("log {login} out everywhere"));
            }
        }
        Principal::Bootstrap { login } => {
            tx.update(ctx.site, |s| {
                s.bootstrap_generation = s.bootstrap_generation.wrapping_add(1);
            })?;
            ctx.note(tx, &format!("log {login} (bootstrap) out everywhere"));
        }
        Principal::Anonymous => {}
    }
    Ok(())
}

/// The page of `/@@password`, with an error if given.
/// The page of `/@@password`; `error` is shown beside its field (`current_password` or
/// `password`).
fn password_page(ctx: &Ctx<'_>, error: Option<(&str, &str)>) -> Result<Reply, AppError> {
    let lang = ctx.lang;
    let heading = tr!(lang, "password-heading");
    let error_for = |id: &str| error.filter(|(f, _)| *f == id).map(|(_, m)| m.to_owned());
    let current = render::Field {
        error: error_for("current_password"),
        ..field("current_password", tr!(lang, "field-current-password"))
    };
    let new = render::Field {
        help: Some(tr!(lang, "password-min", min = limits::PASSWORD_CHARS_MIN)),
        error: error_for("password"),
        ..field("password", tr!(lang, "field-new-password"))
    };
    let again = field("password2", tr!(lang, "field-new-password-again"));
    let body = match &ctx.principal {
        Principal::Anonymous => return Err(AppError::Unauthorized),
        Principal::Bootstrap { .. } => html! {
            h1 { (heading) }
            p.error { (tr!(lang, "password-bootstrap")) }
        },
        Principal::User { login, .. } => html! {
            h1 { (heading) }
            p { (tr!(lang, "password-intro", login = login.as_str())) }
            form method="post" action="/@@password" {
                (csrf(ctx))
                input type="text" name="login" value=(login) autocomplete="username" hidden;
                (current.wrap(html! { input #current_password type="password" name="current_password" autocomplete="current-password" required aria-describedby=[current.described_by()] aria-invalid=[current.error.as_ref().map(|_| "true")]; }))
                (new.wrap(html! { input #password type="password" name="password" autocomplete="new-password" minlength=(limits::PASSWORD_CHARS_MIN) required aria-describedby=[new.described_by()] aria-invalid=[new.error.as_ref().map(|_| "true")]; }))
                (again.wrap(html! { input #password2 type="password" name="password2" autocomplete="new-password" minlength=(limits::PASSWORD_CHARS_MIN) required; }))
                p { button type="submit" { (tr!(lang, "password-button")) } }
            }
        },
    };
    // 200 with an error, as the login form answers a wrong password.
    Ok(Reply::Html(page(ctx, &heading, body).into_string()))
}

/// `GET /@@password`: the form, for any logged-in user.
pub fn password_form(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    password_page(ctx, None)
}

/// `POST /@@password`: checks the current password (a wrong one counts as a failed
/// login), sets the new one and ends every other session of the user.
pub fn change_password(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let login = match &ctx.principal {
        Principal::Anonymous => return Err(AppError::Unauthorized),
        Principal::Bootstrap { .. } => {
            return Err(AppError::BadRequest(tr!(ctx.lang, "password-bootstrap")));
        }
        Principal::User { login, .. } => login.clone(),
    };
    ctx.app.login_allowed(&ctx.client, &login)?;
    let current = ctx.input.field("current_password").unwrap_or("");
    if ctx
        .app
        .check_password(tx, ctx.site, &login, current)?
        .is_none()
    {
        ctx.app.login_failed(&ctx.client, &login);
        let message = tr!(ctx.lang, "password-current-wrong");
        return password_page(ctx, Some(("current_password", &message)));
    }
    ctx.app.login_succeeded(&ctx.client, &login);
    let new = match check_new_password(ctx) {
        Ok(p) => p,
        Err(AppError::BadRequest(message)) => {
            return password_page(ctx, Some(("password", &message)));
        }
        Err(e) => return Err(e),
    };
    let Some(user) = tx.get(ctx.site)?.users.get(tx, &login)? else {
        return Err(AppError::Unauthorized);
    };
    let hash = password::hash(&new);
    let generation = tx.update(user, |u| {
        u.password_hash = hash;
        u.session_generation = u.session_generation.wrapping_add(1);
        u.session_generation
    })?;
    ctx.note(tx, &format!("change the password of {login} (by {login})"));
    let reply = redirect_with_notice("/@@password", Notice::PasswordChanged);
    Ok(Reply::WithHeaders(
        Box::new(reply),
        vec![(
            header::SET_COOKIE,
            session_cookie(ctx.app, ctx.headers, &ctx.principal, generation),
        )],
    ))
}

/// `POST /@login` with JSON `{"login": ..., "password": ...}`: `{"token": ...}`, a token
/// signed like a session (same lifetime, revoked with the user's other sessions).  One
/// password check per token, instead of one per request with HTTP Basic.
pub fn token(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let field = |name: &str| {
        ctx.input
            .json
            .as_ref()
            .and_then(|j| j.get(name))
            .and_then(|v| v.as_str())
    };
    let (Some(login), Some(password)) = (field("login"), field("password")) else {
        return Err(AppError::BadRequest(
            "send a JSON object {\"login\": ..., \"password\": ...}".into(),
        ));
    };
    let login = login.trim();
    ctx.app.login_allowed(&ctx.client, login)?;
    let Some(principal) = ctx.app.check_password(tx, ctx.site, login, password)? else {
        ctx.app.login_failed(&ctx.client, login);
        return Err(AppError::Unauthorized);
    };
    ctx.app.login_succeeded(&ctx.client, login);
    let generation = match &principal {
        Principal::User { login, .. } => {
            let users = tx.get(ctx.site)?.users;
            match users.get(tx, login)? {
                Some(u) => tx.get(u)?.session_generation,
                None => 0,
            }
        }
        Principal::Bootstrap { .. } => tx.get(ctx.site)?.bootstrap_generation,
        Principal::Anonymous => 0,
    };
    let token = auth::sign_token(
        &ctx.app.secret,
        principal.login().unwrap_or(""),
        generation,
        matches!(principal, Principal::Bootstrap { .. }),
        session_lifetime(ctx.app),
    );
    Ok(Reply::Json(
        StatusCode::OK,
        serde_json::json!({ "token": token }),
    ))
}
