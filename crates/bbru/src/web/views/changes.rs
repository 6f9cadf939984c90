//! Recent changes (`@@changes` on a folder: who changed what under it, and when) from
//! the transaction log, and the difference of a page's text between two revisions
//! (`@@diff`).
//!
//! Every change is a transaction whose user is the principal and whose description
//! names what was done where ("edit /docs/install", "add Page /docs/x", "rename /a to
//! /b"): the log is the list of changes, read newest first with `Storage::undo_log`
//! (the last [`limits::CHANGES_SCAN_MAX`] transactions).  An entry is shown when the
//! item its description names last (the item after a rename, the page reverted) is
//! under the folder and the reader may see it now (`security::visible`): changes of
//! private items, of items since deleted, and of users and groups are left out.

use maud::{Markup, html};
use similar::{ChangeTag, TextDiff};
use zodb::{Tid, Transaction};

use crate::i18n::Lang;
use crate::limits;
use crate::model::{Content, publication};
use crate::security::Permission;
use crate::tr;
use crate::web::render::{page, view_url};
use crate::web::{AppError, Ctx, Reply};

/// The item path a transaction description names last (`None` for changes of users,
/// groups and the like).
fn path_in(description: &str) -> Option<&str> {
    description
        .split_whitespace()
        .rev()
        .find(|w| w.starts_with('/'))
        .map(|w| w.trim_end_matches(','))
}

/// One change shown.
#[derive(Debug)]
struct Change {
    tid: Tid,
    time: f64,
    user: String,
    what: String,
    path: String,
    /// Whether it is a page (whose revisions have a text diff).
    page: bool,
}

/// `GET @@changes` of a folder: the latest changes under it the reader may see.
pub fn changes(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let here = ctx.url();
    let prefix = if here == "/" {
        "/".to_owned()
    } else {
        format!("{here}/")
    };
    let log = ctx.app.db.storage().undo_log(0, limits::CHANGES_SCAN_MAX)?;
    let mut shown = Vec::new();
    for e in log {
        let description = String::from_utf8_lossy(&e.description).into_owned();
        let Some(path) = path_in(&description) else {
            continue;
        };
        if path != here && !path.starts_with(&prefix) {
            continue;
        }
        let Some(item) = publication::visible_item(tx, ctx.site, &ctx.principal, path)? else {
            continue;
        };
        shown.push(Change {
            tid: e.tid,
            time: e.time,
            user: String::from_utf8_lossy(&e.user).into_owned(),
            what: description.clone(),
            path: path.to_owned(),
            page: matches!(item, Content::Page(..)),
        });
        if shown.len() == limits::CHANGES_ENTRIES_MAX {
            break;
        }
    }
    let lang = ctx.lang;
    let title = tr!(
        lang,
        "changes-title",
        title = ctx.target().meta().title.as_str()
    );
    let markup = page(
        ctx,
        &title,
        html! {
            h1 { (title) }
            @if shown.is_empty() { p { em { (tr!(lang, "changes-none")) } } }
            table.changes {
                thead { tr { th { (tr!(lang, "changes-when")) } th { (tr!(lang, "changes-who")) } th { (tr!(lang, "changes-what")) } th {} } }
                tbody {
                    @for c in &shown {
                        tr {
                            td { (lang.date(c.time)) }
                            td { @if c.user.is_empty() { (tr!(lang, "history-anonymous")) } @else { (c.user) } }
                            td { (c.what) }
                            td { a href=(c.path) { (tr!(lang, "changes-open")) }
                                @if c.page { " " a href={(diff_base(&c.path)) "?rev=" (tid_text(c.tid))} { (tr!(lang, "history-changes")) } } }
                        }
                    }
                }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

fn diff_base(path: &str) -> String {
    if path == "/" {
        "/@@diff".into()
    } else {
        format!("{path}/@@diff")
    }
}

fn tid_text(tid: Tid) -> String {
    format!("{:016x}", tid.0)
}

fn parse_tid(text: &str) -> Result<Tid, AppError> {
    let text = text.trim();
    if text.len() == 16 && text.chars().all(|c| c.is_ascii_hexdigit()) {
        u64::from_str_radix(text, 16)
            .map(Tid)
            .map_err(|_| AppError::NotFound)
    } else {
        Err(AppError::BadRequest(format!(
            "{text:?} is not a version: versions are named by 16 hexadecimal digits."
        )))
    }
}

/// A page's text at `serial`, or the empty text for no revision.
fn text_at(ctx: &Ctx<'_>, serial: Option<Tid>) -> Result<String, AppError> {
    let Some(serial) = serial else {
        return Ok(String::new());
    };
    Ok(match super::history::old_version(ctx, serial)? {
        Content::Page(_, p) => p.body.clone(),
        _ => String::new(),
    })
}

/// The lines of `old` → `new` that differ, with [`limits::DIFF_CONTEXT_LINES`] lines
/// around them; removed lines in `<del>`, added ones in `<ins>` (all text escaped).
/// The comparison gives up on finding the smallest difference after
/// [`limits::DIFF_TIMEOUT`] (a larger but correct one is shown).
pub fn diff(lang: Lang, old: &str, new: &str) -> Markup {
    let diff = TextDiff::configure()
        .timeout(limits::DIFF_TIMEOUT)
        .diff_lines(old, new);
    let groups = diff.grouped_ops(limits::DIFF_CONTEXT_LINES);
    html! {
        @if groups.is_empty() { p { em { (tr!(lang, "diff-same")) } } }
        @for (i, group) in groups.iter().enumerate() {
            @if i > 0 { hr; }
            pre.diff {
                @for op in group {
                    @for change in diff.iter_changes(op) {
                        @match change.tag() {
                            ChangeTag::Delete => del { "- " (change.value()) },
                            ChangeTag::Insert => ins { "+ " (change.value()) },
                            ChangeTag::Equal => span { "  " (change.value()) },
                        }
                    }
                }
            }
        }
    }
}

/// `GET @@diff?rev=<tid>[&from=<tid>]` of a page: what the revision `serial`
/// changed in the text (from the revision before it, or from `from`).
pub fn diff_view(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if !matches!(ctx.target(), Content::Page(..)) {
        return Err(AppError::NotFound);
    }
    if !ctx.allowed(Permission::ViewHistory) {
        return Err(ctx.denied());
    }
    let oid = ctx.target().reference().oid();
    let history = ctx
        .app
        .db
        .storage()
        .history(oid, limits::HISTORY_ENTRIES_MAX)?;
    let serial = match ctx.query("rev") {
        Some(s) => parse_tid(s)?,
        None => history.first().map(|e| e.tid).ok_or(AppError::NotFound)?,
    };
    if ctx.query("from").is_none() && !history.iter().any(|e| e.tid == serial) {
        // A rename, a move or a change of grants is a transaction that did not write
        // the page (or a revision older than the history listed).
        return Err(AppError::BadRequest(tr!(ctx.lang, "diff-unavailable")));
    }
    let from = match ctx.query("from") {
        Some(s) => Some(parse_tid(s)?),
        None => history
            .iter()
            .position(|e| e.tid == serial)
            .and_then(|i| history.get(i + 1))
            .map(|e| e.tid),
    };
    let (old, new) = (text_at(ctx, from)?, text_at(ctx, Some(serial))?);
    let lang = ctx.lang;
    let title = tr!(
        lang,
        "diff-title",
        title = ctx.target().meta().title.as_str()
    );
    let markup = page(
        ctx,
        &title,
        html! {
            h1 { (title) }
            p {
                @match from {
                    Some(t) => (tr!(lang, "diff-from-to", from = lang.date(t.unix_seconds()), to = lang.date(serial.unix_seconds()))),
                    None => (tr!(lang, "diff-first", to = lang.date(serial.unix_seconds()))),
                }
            }
            (diff(lang, &old, &new))
            p { a href=(view_url(ctx, "history")) { (tr!(lang, "diff-history")) } }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_path_is_the_last_one_a_description_names() {
        assert_eq!(path_in("edit /docs/install"), Some("/docs/install"));
        assert_eq!(path_in("add Page /docs/x"), Some("/docs/x"));
        assert_eq!(path_in("rename /a to /b"), Some("/b"));
        assert_eq!(path_in("delete /a, /b,"), Some("/b"));
        assert_eq!(
            path_in("revert /docs to 2026-12-05 20:13:19 UTC"),
            Some("/docs")
        );
        assert_eq!(path_in("add user bob"), None);
    }

    #[test]
    fn diffs_mark_removed_and_added_lines_escaped() {
        let html = diff(Lang::En, "a\nb <x>\nc\n", "a\nB & y\nc\n").into_string();
        assert!(html.contains("<del>- b &lt;x&gt;\n</del>"), "{html}");
        assert!(html.contains("<ins>+ B &amp; y\n</ins>"), "{html}");
        assert!(html.contains("<span>  a\n</span>"));
        assert!(
            diff(Lang::En, "same\n", "same\n")
                .into_string()
                .contains("The text is the same.")
        );
    }
}
