//! The language switch of the page header (`/@@language?lang=ru&came_from=/docs`): sets
//! the `bbru_lang` cookie for a year and goes back to the page it came from (a path of
//! this site only).  A GET with a link, so it works without scripts; what it changes is
//! a preference of this browser, nothing stored, so a link made elsewhere can do no harm
//! beyond choosing a language.

use axum::http::header;
use zodb::Transaction;

use crate::i18n::{LANG_COOKIE, Lang};
use crate::tr;
use crate::web::{AppError, Ctx, Reply, same_origin_path};

/// How long the choice is kept: a year, in seconds.
const LANG_COOKIE_SECONDS: u64 = 365 * 24 * 3600;

pub fn switch(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let lang = ctx
        .query("lang")
        .and_then(Lang::parse)
        .ok_or_else(|| AppError::BadRequest(tr!(ctx.lang, "error-unknown-language")))?;
    let back = ctx
        .query("came_from")
        .and_then(same_origin_path)
        .unwrap_or_else(|| "/".to_owned());
    let cookie = ctx.app.cookie(
        ctx.headers,
        LANG_COOKIE,
        lang.code(),
        Some(LANG_COOKIE_SECONDS),
    );
    Ok(Reply::WithHeaders(
        Box::new(Reply::Redirect(back)),
        vec![(header::SET_COOKIE, cookie)],
    ))
}
