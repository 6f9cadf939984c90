//! Publishing and retracting (`POST @@publish`), the state box editors see on an item,
//! and the add form's choice of state.  The rules are in `model::publication`.

use maud::{Markup, html};
use zodb::Transaction;

use crate::i18n::Lang;
use crate::model::{Content, ContentRef, State};
use crate::security::Permission;
use crate::tr;
use crate::web::render::{Notice, csrf, redirect_with_notice, view_url};
use crate::web::{AppError, Ctx, Reply};

/// The form field naming a state (`private`, `published`).
pub const FIELD: &str = "state";

/// What editors see on an item: its state, and (with `Publish`) the button that
/// changes it.  Nothing for readers, nor on the site root (always published).
pub fn state_box(ctx: &Ctx<'_>) -> Markup {
    if ctx.path.len() == 1 || !ctx.allowed(Permission::Edit) {
        return html! {};
    }
    let state = ctx.target().meta().state;
    let lang = ctx.lang;
    let (label, other, button) = match state {
        State::Private => (
            tr!(lang, "publication-private-label"),
            State::Published,
            tr!(lang, "publication-publish"),
        ),
        State::Published => (
            tr!(lang, "publication-published-label"),
            State::Private,
            tr!(lang, "publication-retract"),
        ),
    };
    html! {
        div.state id="publication-state" data-state=(state.name()) {
            strong { (tr!(lang, "publication-state")) } " " (label)
            @if ctx.allowed(Permission::Publish) {
                " "
                form.inline method="post" action=(view_url(ctx, "publish")) {
                    (csrf(ctx))
                    input type="hidden" name=(FIELD) value=(other.name());
                    button type="submit" id="publication-change" { (button) }
                }
            }
        }
    }
}

/// What a listing says after a private item (only those who may edit it see it
/// listed at all).
pub fn listing_marker(lang: Lang, item: &Content) -> Markup {
    if item.meta().state == State::Private {
        html! { " " small.state-private { (tr!(lang, "publication-private-marker")) } }
    } else {
        html! {}
    }
}

/// The add form's choice: Private first, as Plone creates items private.  Only for
/// those who may edit here (a private item is theirs to see); others add published.
pub fn add_form_field(ctx: &Ctx<'_>) -> Markup {
    if !ctx.allowed(Permission::Edit) {
        return html! {};
    }
    let lang = ctx.lang;
    html! {
        fieldset.state {
            legend { (tr!(lang, "publication-legend")) }
            label { input type="radio" name=(FIELD) value="private" checked; " " (tr!(lang, "publication-choice-private")) }
            label { input type="radio" name=(FIELD) value="published"; " " (tr!(lang, "publication-choice-published")) }
        }
    }
}

/// The state a create request asked for: `None` without the field (published, as
/// before states existed), an error for an unknown one.
fn asked(ctx: &Ctx<'_>) -> Result<Option<State>, AppError> {
    parse(ctx.input.field(FIELD))
}

fn parse(name: Option<&str>) -> Result<Option<State>, AppError> {
    match name {
        None => Ok(None),
        Some(name) => State::parse(name).map(Some).ok_or_else(|| {
            AppError::BadRequest(format!(
                "{name:?} is not a state: use \"private\" or \"published\"."
            ))
        }),
    }
}

/// Gives a new item the state its add request asked for.  Making it private needs
/// `Publish` on the folder as well (a Member allowed to add only could not see it after).
pub fn apply_new_state(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    item: ContentRef,
) -> Result<(), AppError> {
    apply_named_state(ctx, tx, item, ctx.input.field(FIELD))
}

/// [`apply_new_state`] for a state given by name (the JSON API's `review_state`).
pub fn apply_named_state(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    item: ContentRef,
    name: Option<&str>,
) -> Result<(), AppError> {
    match parse(name)? {
        Some(State::Private) if ctx.allowed(Permission::Edit) => {
            item.update_meta(tx, |m| m.state = State::Private)?;
            Ok(())
        }
        Some(State::Private) => Err(AppError::BadRequest(tr!(
            ctx.lang,
            "publication-error-not-editor"
        ))),
        _ => Ok(()),
    }
}

/// `POST @@publish` with `state`: sets the item's state (a transaction noted
/// "publish /path" or "retract /path").  The site root is always published.
pub fn change(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if ctx.path.len() == 1 {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "publication-error-root"
        )));
    }
    let Some(state) = asked(ctx)? else {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "publication-error-choose"
        )));
    };
    let target = ctx.target();
    if target.meta().state == state {
        return Ok(redirect_with_notice(&ctx.url(), Notice::NothingChanged));
    }
    target.reference().update_meta(tx, |m| m.state = state)?;
    let verb = match state {
        State::Published => "publish",
        State::Private => "retract",
    };
    ctx.note(tx, &format!("{verb} {}", ctx.location()));
    let notice = match state {
        State::Published => Notice::Published,
        State::Private => Notice::Retracted,
    };
    Ok(redirect_with_notice(&ctx.url(), notice))
}
