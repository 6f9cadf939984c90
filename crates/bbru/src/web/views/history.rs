//! An object's history (`@@history`: past versions, view, revert) and the site-wide undo
//! view (`/@@undo`).
//!
//! Both read what the storage keeps anyway: every transaction writes new revisions of the
//! objects it changes, with its user and description (the audit trail), until a pack.
//!
//! - `@@history` lists the revisions of the object addressed (`Storage::history`), newest
//!   first; `?serial=<16 hex digits>` shows one of them read-only, decoded from its record
//!   (`load_serial`) as the object's content type.  Posting `serial` reverts: the old
//!   version's fields are written as a new revision, so the revert is itself in the history
//!   and can be undone.
//! - `/@@undo` lists the undoable transactions of the whole database; posting the chosen
//!   ones undoes them all together in one storage transaction ([`zodb::DB::undo`]): all of
//!   them or none.  An undo that conflicts with later changes is refused, naming the
//!   transaction.

use std::collections::HashMap;
use std::sync::Arc;

use maud::{Markup, PreEscaped, html};
use zodb::{PRef, Persistent, Tid, Transaction};
use zodb_storage::{HistoryEntry, TransactionMeta, UndoLogEntry};

use crate::i18n::Lang;
use crate::limits;
use crate::model::{Content, File, Folder, Image, Kind, Page};
use crate::security::Permission;
use crate::tr;
use crate::web::render::{self, Notice, csrf, page, redirect_with_notice, view_url};
use crate::web::views::content::{RenderedPages, file_facts};
use crate::web::{AppError, Ctx, Reply, now};

/// A tid as written in URLs and forms: 16 lower-case hex digits.
fn tid_text(tid: Tid) -> String {
    format!("{:016x}", tid.0)
}

/// Parses a tid written by [`tid_text`].
fn parse_tid(text: &str) -> Option<Tid> {
    let text = text.trim();
    if text.len() != 16 || !text.chars().all(|c| c.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(text, 16).ok().map(Tid)
}

/// Who made a transaction, for display.
fn user_text(lang: Lang, user: &[u8]) -> String {
    if user.is_empty() {
        tr!(lang, "history-anonymous")
    } else {
        String::from_utf8_lossy(user).into_owned()
    }
}

fn description_text(description: &[u8]) -> String {
    String::from_utf8_lossy(description).into_owned()
}

/// The version of the addressed object written by transaction `serial`, decoded as the
/// object's content type.  `NotFound` when the object has no such version.
pub(super) fn old_version(ctx: &Ctx<'_>, serial: Tid) -> Result<Content, AppError> {
    let target = ctx.target();
    let oid = target.reference().oid();
    let data = match ctx.app.db.storage().load_serial(oid, serial) {
        Ok(data) => data,
        Err(e) if e.is_pos_key() => return Err(AppError::NotFound),
        Err(e) => return Err(e.into()),
    };
    let kind = zodb_pickle::class_of(&data).and_then(|(m, n)| Kind::of_class(&m, &n));
    if kind != Some(target.kind()) {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "history-wrong-kind",
            version = tid_text(serial),
            kind = render::kind_name(ctx.lang, target.kind())
        )));
    }
    let (_, state) = zodb_pickle::decode_record(&data).map_err(|e| {
        tracing::error!(%oid, serial = %tid_text(serial), error = %e, "undecodable old revision");
        AppError::Internal
    })?;
    fn decode<T: Persistent>(state: zodb::Value, oid: zodb::Oid) -> Result<Arc<T>, AppError> {
        T::from_state(state).map(Arc::new).map_err(|e| {
            tracing::error!(%oid, error = %e.0, "old revision with an unexpected state");
            AppError::Internal
        })
    }
    Ok(match target {
        Content::Folder(r, _) => Content::Folder(*r, decode::<Folder>(state, oid)?),
        Content::Page(r, _) => Content::Page(*r, decode::<Page>(state, oid)?),
        Content::File(r, _) => Content::File(*r, decode::<File>(state, oid)?),
        Content::Image(r, _) => Content::Image(*r, decode::<Image>(state, oid)?),
    })
}

/// The history entry of `serial`, if among the most recent ones.
fn entry_of(ctx: &Ctx<'_>, serial: Tid) -> Result<Option<HistoryEntry>, AppError> {
    let oid = ctx.target().reference().oid();
    Ok(ctx
        .app
        .db
        .storage()
        .history(oid, limits::HISTORY_ENTRIES_MAX)?
        .into_iter()
        .find(|e| e.tid == serial))
}

/// `GET @@history`: the list of versions, or one version with `?serial=`.
pub fn history(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if let Some(serial) = ctx.query("serial") {
        let serial = parse_tid(serial).ok_or_else(|| {
            AppError::BadRequest(tr!(
                ctx.lang,
                "history-bad-version",
                version = format!("{serial:?}")
            ))
        })?;
        return show_version(ctx, serial);
    }
    let target = ctx.target();
    let meta = target.meta();
    let entries = ctx
        .app
        .db
        .storage()
        .history(target.reference().oid(), limits::HISTORY_ENTRIES_MAX)?;
    let base = view_url(ctx, "history");
    let lang = ctx.lang;
    let heading = tr!(lang, "history-heading", title = meta.title.as_str());
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            p { (tr!(lang, "history-intro")) }
            div.table-wrap { table.history {
                thead { tr { th { (tr!(lang, "column-when")) } th { (tr!(lang, "column-who")) } th { (tr!(lang, "column-what")) } th { span.visually-hidden { (tr!(lang, "column-actions")) } } } }
                tbody {
                    @for (i, e) in entries.iter().enumerate() {
                        tr {
                            td { (lang.date(e.time)) }
                            td { (user_text(lang, &e.user)) }
                            td { (description_text(&e.description)) }
                            td {
                                a href={(base) "?serial=" (tid_text(e.tid))} { (tr!(lang, "history-view")) }
                                @if matches!(target, Content::Page(..)) { " " a href={(view_url(ctx, "diff")) "?rev=" (tid_text(e.tid))} { (tr!(lang, "history-changes")) } }
                                @if i == 0 { " " (tr!(lang, "history-current")) }
                            }
                        }
                    }
                }
            } }
            @if entries.len() == limits::HISTORY_ENTRIES_MAX { p { small { (tr!(lang, "history-only-recent", count = limits::HISTORY_ENTRIES_MAX)) } } }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// The body of an old version, rendered read-only.
fn version_body(pages: &RenderedPages, lang: Lang, old: &Content) -> Markup {
    let meta = old.meta();
    html! {
        h2 { (meta.title) }
        @if !meta.description.is_empty() { p.description { (meta.description) } }
        @match old {
            Content::Page(_, p) => div.body { (PreEscaped(&*pages.html(&p.body, lang))) },
            Content::File(_, f) => p { (file_facts(lang, &f.filename, &f.content_type, f.byte_len())) },
            Content::Image(_, i) => p { (file_facts(lang, &i.filename, &i.content_type, i.byte_len())) },
            Content::Folder(_, f) => {
                @if !f.order.is_empty() {
                    p { (tr!(lang, "history-order", order = f.order.join(", "))) }
                }
            },
        }
        p.byline { small { (tr!(lang, "history-modified", time = lang.date(meta.modified))) } }
    }
}

fn show_version(ctx: &Ctx<'_>, serial: Tid) -> Result<Reply, AppError> {
    let old = old_version(ctx, serial)?;
    let entry = entry_of(ctx, serial)?;
    let lang = ctx.lang;
    let time = lang.date(serial.unix_seconds());
    let is_folder = matches!(old, Content::Folder(..));
    let can_revert = ctx.allowed(Permission::Edit);
    let title = ctx.target().meta().title.as_str();
    let markup = page(
        ctx,
        &tr!(lang, "history-version-title", title = title),
        html! {
            h1 { (tr!(lang, "history-heading", title = title)) }
            div.notice.version {
                (tr!(lang, "history-looking-at")) " " strong { (time) }
                @if let Some(e) = &entry {
                    ", " (tr!(lang, "history-saved-by", user = user_text(lang, &e.user)))
                    @if !e.description.is_empty() { " (" (description_text(&e.description)) ")" }
                }
                ". " (tr!(lang, "history-read-only"))
            }
            (version_body(&ctx.app.pages, lang, &old))
            @if can_revert {
                form method="post" action=(view_url(ctx, "history")) {
                    (csrf(ctx))
                    input type="hidden" name="serial" value=(tid_text(serial));
                    @if is_folder { p { (tr!(lang, "history-folder-revert-note")) } }
                    p { button type="submit" { (tr!(lang, "history-revert")) } }
                }
            }
            p { a href=(view_url(ctx, "history")) { (tr!(lang, "history-back")) } }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// `POST @@history` with `serial`: writes that version's fields as a new revision.
///
/// What is restored: title and description, and a page's body or a file's or image's
/// file (name, type, bytes).  Kept as they are: the creator, the creation time and the
/// local grants (security is changed on `@@security`, with its own permission, never by
/// an edit); the modification time is now.
///
/// A folder's items live in a separate object (its items tree), so reverting a folder
/// restores its metadata and order only: it does not bring back items deleted since.  The
/// site-wide undo (`/@@undo`) does, by undoing the deletion's transaction.
pub fn revert(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if !ctx.allowed(Permission::ViewHistory) {
        return Err(if ctx.principal.is_authenticated() {
            AppError::Forbidden
        } else {
            AppError::Unauthorized
        });
    }
    let text = ctx.input.field("serial").unwrap_or("");
    let serial = parse_tid(text)
        .ok_or_else(|| AppError::BadRequest(tr!(ctx.lang, "history-choose-version")))?;
    let old = match old_version(ctx, serial) {
        Err(AppError::NotFound) => {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "history-no-such-version",
                version = tid_text(serial)
            )));
        }
        other => other?,
    };
    let at = now();
    fn restore_meta(meta: &mut crate::model::Meta, old: &crate::model::Meta, at: f64) {
        meta.title = old.title.clone();
        meta.description = old.description.clone();
        meta.modified = at;
    }
    match (ctx.target(), &old) {
        (Content::Page(r, _), Content::Page(_, o)) => update(tx, *r, |p: &mut Page| {
            restore_meta(&mut p.meta, &o.meta, at);
            p.body = o.body.clone();
        })?,
        (Content::File(r, _), Content::File(_, o)) => update(tx, *r, |f: &mut File| {
            restore_meta(&mut f.meta, &o.meta, at);
            f.filename = o.filename.clone();
            f.content_type = o.content_type.clone();
            // The old revision's blob is its own (one per upload), so it still holds
            // the old bytes.
            (f.data, f.blob, f.size) = (o.data.clone(), o.blob, o.size);
        })?,
        (Content::Image(r, _), Content::Image(_, o)) => update(tx, *r, |i: &mut Image| {
            restore_meta(&mut i.meta, &o.meta, at);
            i.filename = o.filename.clone();
            i.content_type = o.content_type.clone();
            (i.data, i.blob, i.size) = (o.data.clone(), o.blob, o.size);
        })?,
        // Metadata and order only; see the function's documentation.
        (Content::Folder(r, _), Content::Folder(_, o)) => update(tx, *r, |f: &mut Folder| {
            restore_meta(&mut f.meta, &o.meta, at);
            f.order = o.order.clone();
        })?,
        _ => return Err(AppError::Internal),
    }
    crate::search::changed(tx, ctx.target().reference())?;
    let time = render::time(serial.unix_seconds());
    ctx.note(tx, &format!("revert {} to {time}", ctx.location()));
    let notice = if matches!(old, Content::Folder(..)) {
        Notice::RevertedFolder
    } else {
        Notice::Reverted
    };
    Ok(redirect_with_notice(&ctx.url(), notice))
}

fn update<T: Persistent>(
    tx: &Transaction<'_>,
    r: PRef<T>,
    change: impl FnOnce(&mut T),
) -> Result<(), AppError> {
    tx.update(r, change)?;
    Ok(())
}

/// Refuses the undo view anywhere but on the site root.  The view table only knows the
/// kind of the object addressed (any folder passes) and checks the permission there: an
/// Undo permission held through a grant on a subfolder must not reach the site-wide log.
fn root_only(ctx: &Ctx<'_>) -> Result<(), AppError> {
    if ctx.path.len() == 1 {
        Ok(())
    } else {
        Err(AppError::NotFound)
    }
}

/// `GET /@@undo`: the undoable transactions, newest first, with checkboxes.
pub fn undo_log(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    root_only(ctx)?;
    let log = ctx
        .app
        .db
        .storage()
        .undo_log(0, limits::UNDO_LOG_ENTRIES_MAX)?;
    let lang = ctx.lang;
    let markup = page(
        ctx,
        &tr!(lang, "undo-heading"),
        html! {
            h1 { (tr!(lang, "undo-heading")) }
            p { (tr!(lang, "undo-intro")) }
            form method="post" action="/@@undo" {
                (csrf(ctx))
                div.table-wrap { table.undo {
                    thead { tr { th { span.visually-hidden { (tr!(lang, "column-choose")) } } th { (tr!(lang, "column-when")) } th { (tr!(lang, "column-who")) } th { (tr!(lang, "column-what")) } } }
                    tbody {
                        @for e in &log {
                            tr {
                                td { input type="checkbox" name="undo" value=(tid_text(e.tid)) id={"t" (tid_text(e.tid))}; }
                                td { label for={"t" (tid_text(e.tid))} { (lang.date(e.time)) } }
                                td { (user_text(lang, &e.user)) }
                                td { (description_text(&e.description)) }
                            }
                        }
                    }
                } }
                p { button type="submit" { (tr!(lang, "undo-button")) } }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// How a transaction is named in messages: its description (or time), time and user.
fn transaction_name(lang: Lang, e: &UndoLogEntry) -> String {
    let description = description_text(&e.description);
    let what = if description.is_empty() {
        tr!(lang, "undo-the-transaction")
    } else {
        format!("“{description}”")
    };
    tr!(
        lang,
        "undo-transaction-name",
        what = what,
        time = lang.date(e.time),
        user = user_text(lang, &e.user)
    )
}

/// `POST /@@undo` with the chosen `undo` tids: undoes them in one storage transaction
/// whose user is the principal and whose description is `"undo <what was undone>"`.
pub fn undo(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    root_only(ctx)?;
    let mut tids = Vec::new();
    for text in ctx.input.all("undo") {
        tids.push(parse_tid(text).ok_or_else(|| {
            AppError::BadRequest(tr!(ctx.lang, "undo-bad-tid", tid = format!("{text:?}")))
        })?);
    }
    if tids.is_empty() {
        return Err(AppError::BadRequest(tr!(ctx.lang, "undo-choose")));
    }
    tids.sort_unstable_by(|a, b| b.cmp(a));
    tids.dedup();
    if tids.len() > limits::UNDO_LOG_ENTRIES_MAX {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "undo-too-many",
            max = limits::UNDO_LOG_ENTRIES_MAX
        )));
    }
    let known: HashMap<Tid, UndoLogEntry> = ctx
        .app
        .db
        .storage()
        .undo_log(0, limits::UNDO_LOOKUP_ENTRIES_MAX)?
        .into_iter()
        .map(|e| (e.tid, e))
        .collect();
    let mut chosen = Vec::new();
    for tid in &tids {
        let entry = known.get(tid).ok_or_else(|| {
            AppError::BadRequest(tr!(ctx.lang, "undo-not-in-log", tid = tid_text(*tid)))
        })?;
        chosen.push(entry);
    }
    let description = chosen
        .iter()
        .map(|e| {
            let d = description_text(&e.description);
            if d.is_empty() {
                format!("undo the transaction of {}", render::time(e.time))
            } else {
                format!("undo {d}")
            }
        })
        .collect::<Vec<_>>()
        .join("; ");
    let meta = TransactionMeta::new(ctx.principal.audit_name(), description.clone());
    match ctx.app.db.undo(&tids, meta.clone()) {
        Ok(_) => Ok(redirect_with_notice("/@@undo", Notice::Undone)),
        // A commit raced with ours on the same objects: retried on a fresh snapshot.
        Err(e) if e.error.is_conflict() => Err(AppError::Db(e.error)),
        // Later changes of the search index's objects (or a folder's items) merge with
        // the undo, as ZODB's own undo merges them.
        Err(_)
            if tids.len() == 1
                && ctx
                    .app
                    .db
                    .undo_resolving(tids[0], meta, &crate::search::undo_resolver)
                    .is_ok() =>
        {
            Ok(redirect_with_notice("/@@undo", Notice::Undone))
        }
        Err(e) => {
            let reasons = e.reasons().join("; ");
            let lang = ctx.lang;
            let message = match e.tid.and_then(|t| known.get(&t)) {
                Some(entry) if reasons.contains("database root") => tr!(
                    lang,
                    "undo-refused-root",
                    what = transaction_name(lang, entry)
                ),
                Some(entry) => tr!(
                    lang,
                    "undo-refused-later",
                    what = transaction_name(lang, entry),
                    reasons = reasons
                ),
                None => tr!(lang, "undo-failed", reasons = reasons),
            };
            Err(AppError::BadRequest(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tids_round_trip_as_sixteen_hex_digits() {
        let tid = Tid(0x0405_ed58_1777_7777);
        assert_eq!(tid_text(tid), "0405ed5817777777");
        assert_eq!(parse_tid("0405ed5817777777"), Some(tid));
        assert_eq!(parse_tid("0405ED5817777777"), Some(tid));
        assert_eq!(parse_tid("+405ed5817777777"), None);
        assert_eq!(parse_tid("123"), None);
        assert_eq!(parse_tid(""), None);
    }
}
