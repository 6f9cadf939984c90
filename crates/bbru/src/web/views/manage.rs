//! The folder management view (`@@contents`), after the Zope management interface: the
//! items of a folder the principal may see, in display order, with the actions the
//! principal may perform — rename, cut, copy, paste, delete and reorder.
//!
//! Each action checks its own permission (the view itself only needs View), on the
//! container as in Zope: what happens to a folder's items is decided by the rights on that
//! folder, never by rights granted on an item alone (an Editor of `/docs` may not delete
//! or move `/docs` out of the root).  Renaming and reordering need Edit on the folder,
//! deleting and cutting Delete on the folder, copying View on each item, pasting Add on
//! the target folder (and, for a cut, Delete on each source folder again: the clipboard
//! only says what was chosen, never what is allowed).
//!
//! The clipboard is stateless, as instances share nothing but the database: a cookie
//! holding the operation and the source paths, signed with the site's secret
//! ([`auth::sign`]); a clipboard changed outside the site is refused.  A cut is pasted
//! by moving the objects themselves (same oids, so their history follows them), a copy
//! by deep copies ([`tree::deep_copy`]).  Every change is one transaction whose note says
//! what was done where.

use std::collections::HashSet;

use axum::http::header;
use maud::html;
use serde::{Deserialize, Serialize};
use zodb::Transaction;

use crate::limits;
use crate::model::edit::valid_name;
use crate::model::{Content, ContentRef, Folder, publication, tree};
use crate::security::{self, Grants, Permission, Principal, auth};
use crate::tr;
use crate::web::render::{
    Notice, child_url, csrf, kind_name, page, redirect_with_notice, view_url,
};
use crate::web::{AppError, Ctx, Reply, url_of};

/// The clipboard cookie.
const CLIPBOARD_COOKIE: &str = "bbru_clipboard";
/// What the clipboard's signature is made for (never valid as anything else).
const CLIPBOARD_PURPOSE: &str = "clipboard";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
enum Op {
    Cut,
    Copy,
}

/// What the clipboard cookie holds: the operation and the paths (item names from the
/// root) of the items chosen.
#[derive(Debug, Serialize, Deserialize)]
struct Clipboard {
    op: Op,
    paths: Vec<Vec<String>>,
}

/// The state of the browser's clipboard.
enum ClipState {
    Empty,
    Valid(Clipboard),
    /// Present but not signed by this site (or unreadable).
    Tampered,
}

fn read_clipboard(ctx: &Ctx<'_>) -> ClipState {
    match crate::web::cookie(ctx.headers, CLIPBOARD_COOKIE) {
        None | Some("") => ClipState::Empty,
        Some(value) => auth::verify(&ctx.app.secret, CLIPBOARD_PURPOSE, value)
            .and_then(|payload| serde_json::from_slice::<Clipboard>(&payload).ok())
            .map_or(ClipState::Tampered, ClipState::Valid),
    }
}

/// The `Set-Cookie` value storing `clipboard` (signed).
fn clipboard_cookie(ctx: &Ctx<'_>, clipboard: &Clipboard) -> Result<String, AppError> {
    let payload = serde_json::to_vec(clipboard).map_err(|e| {
        tracing::error!(error = %e, "cannot serialise the clipboard");
        AppError::Internal
    })?;
    let value = auth::sign(&ctx.app.secret, CLIPBOARD_PURPOSE, &payload);
    if value.len() > limits::CLIPBOARD_BYTES_MAX {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "contents-clipboard-full",
            count = clipboard.paths.len()
        )));
    }
    Ok(ctx.app.cookie(ctx.headers, CLIPBOARD_COOKIE, &value, None))
}

fn clear_clipboard_cookie(ctx: &Ctx<'_>) -> String {
    ctx.app.cookie(ctx.headers, CLIPBOARD_COOKIE, "", Some(0))
}

fn denied(ctx: &Ctx<'_>) -> AppError {
    ctx.denied()
}

fn path_url(names: &[String]) -> String {
    url_of(names.iter().map(String::as_str))
}

/// The names of the addressed folder's path (none for the root).
fn folder_names(ctx: &Ctx<'_>) -> Vec<String> {
    ctx.path.iter().skip(1).map(|s| s.name.clone()).collect()
}

/// The path (names from the root) of the item `name` of the folder at `base`.
fn item_path(base: &[String], name: &str) -> Vec<String> {
    let mut path = base.to_vec();
    path.push(name.to_owned());
    path
}

fn size_of(content: &Content) -> Option<u64> {
    match content {
        Content::File(_, f) => Some(f.byte_len()),
        Content::Image(_, i) => Some(i.byte_len()),
        _ => None,
    }
}

/// The addressed folder.
fn target_folder<'c>(
    ctx: &'c Ctx<'_>,
) -> Result<(zodb::PRef<Folder>, &'c std::sync::Arc<Folder>), AppError> {
    match ctx.target() {
        Content::Folder(r, f) => Ok((*r, f)),
        _ => Err(AppError::NotFound),
    }
}

/// The items named by the form's `ids`, in the order given (duplicates dropped); an item
/// the principal may not see is treated as absent.
fn selected(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Vec<(String, Content)>, AppError> {
    let (_, folder) = target_folder(ctx)?;
    let mut seen = HashSet::new();
    let mut out = Vec::new();
    for id in ctx.input.all("ids") {
        if !seen.insert(id) {
            continue;
        }
        let content = match folder.items.get(tx, &id.to_owned())? {
            Some(any) => match ContentRef::resolve(tx, &any)? {
                Some(r) => Some(r.load(tx)?),
                None => None,
            },
            None => None,
        };
        match content {
            Some(c) if ctx.allowed_on(&c, Permission::View) => out.push((id.to_owned(), c)),
            _ => {
                return Err(AppError::BadRequest(tr!(
                    ctx.lang,
                    "contents-no-item",
                    name = format!("{id:?}")
                )));
            }
        }
    }
    if out.is_empty() {
        return Err(AppError::BadRequest(tr!(ctx.lang, "contents-select")));
    }
    Ok(out)
}

/// `GET @@contents`: the listing.
pub fn contents(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let (_, folder) = target_folder(ctx)?;
    let names = folder.ordered_names(tx)?;
    let total = names.len();
    let start = ctx
        .query("start")
        .and_then(|s| s.parse::<usize>().ok())
        .unwrap_or(0)
        .min(total);
    let end = (start + limits::LISTING_BATCH_SIZE).min(total);
    let mut rows = Vec::new();
    for name in names.get(start..end).unwrap_or_default() {
        let Some(any) = folder.items.get(tx, name)? else {
            continue;
        };
        let Some(r) = ContentRef::resolve(tx, &any)? else {
            continue;
        };
        let content = r.load(tx)?;
        if ctx.allowed_on(&content, Permission::View) {
            rows.push((name.clone(), content));
        }
    }
    let can_edit = ctx.allowed(Permission::Edit);
    let can_add = ctx.allowed(Permission::Add);
    let can_delete = !rows.is_empty() && ctx.allowed(Permission::Delete);
    let clipboard = read_clipboard(ctx);
    let title = &ctx.target().meta().title;
    let batch_url = |at: usize| format!("{}?start={at}", view_url(ctx, "contents"));
    let lang = ctx.lang;
    let heading = tr!(lang, "contents-heading", title = title.as_str());
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            @if can_add {
                p.add-links { (tr!(lang, "add-label")) " " @for k in crate::model::Kind::ALL { a href={(view_url(ctx, "add")) "?type=" (k.name())} { (kind_name(lang, k)) } " " } }
            }
            @match &clipboard {
                ClipState::Empty => {}
                ClipState::Valid(c) => {
                    p.clipboard {
                        @if c.op == Op::Cut {
                            (tr!(lang, "contents-clipboard-cut", count = c.paths.len()))
                        } @else {
                            (tr!(lang, "contents-clipboard-copied", count = c.paths.len()))
                        }
                        " "
                        @for (i, p) in c.paths.iter().enumerate() {
                            @if i > 0 { ", " }
                            code { (path_url(p)) }
                        }
                    }
                }
                ClipState::Tampered => {
                    p.error { (tr!(lang, "contents-clipboard-tampered")) }
                }
            }
            form method="post" action=(view_url(ctx, "contents")) {
                (csrf(ctx))
                @if rows.is_empty() {
                    p { em { (tr!(lang, "contents-none-visible")) } }
                } @else {
                    div.table-wrap { table.contents {
                        thead { tr { th { span.visually-hidden { (tr!(lang, "column-choose")) } } th { (tr!(lang, "field-title")) } th { (tr!(lang, "contents-name")) } th { (tr!(lang, "contents-type")) } th { (tr!(lang, "contents-modified")) } th { (tr!(lang, "contents-size")) } } }
                        tbody {
                            @for (name, item) in &rows {
                                tr {
                                    td { input type="checkbox" name="ids" value=(name) id={"id-" (name)}; }
                                    td { a href=(child_url(ctx, name)) { (item.meta().title) } }
                                    td { label for={"id-" (name)} { code { (name) } } }
                                    td { (kind_name(lang, item.kind())) }
                                    td { (lang.date(item.meta().modified)) }
                                    td { @if let Some(n) = size_of(item) { (lang.size(n)) } }
                                }
                            }
                        }
                    } }
                }
                @if total > limits::LISTING_BATCH_SIZE {
                    p.batch {
                        (tr!(lang, "contents-batch", first = start + 1, last = end, total = total)) " "
                        @if start > 0 { a href=(batch_url(start.saturating_sub(limits::LISTING_BATCH_SIZE))) { (tr!(lang, "contents-previous")) } " " }
                        @if end < total { a href=(batch_url(end)) { (tr!(lang, "contents-next")) } }
                    }
                }
                p.actions {
                    @if can_edit && !rows.is_empty() {
                        button type="submit" name="action" value="rename" { (tr!(lang, "contents-rename")) } " "
                    }
                    @if can_delete {
                        button type="submit" name="action" value="cut" { (tr!(lang, "contents-cut")) } " "
                    }
                    @if !rows.is_empty() {
                        button type="submit" name="action" value="copy" { (tr!(lang, "contents-copy")) } " "
                    }
                    @if can_add && matches!(clipboard, ClipState::Valid(_)) {
                        button type="submit" name="action" value="paste" { (tr!(lang, "contents-paste")) } " "
                    }
                    @if can_delete {
                        button type="submit" name="action" value="delete" { (tr!(lang, "contents-delete")) } " "
                    }
                }
                @if can_edit && rows.len() > 1 {
                    p.order {
                        (tr!(lang, "contents-move")) " "
                        button type="submit" name="action" value="move_top" { (tr!(lang, "contents-move-top")) } " "
                        button type="submit" name="action" value="move_up" { (tr!(lang, "contents-move-up")) } " "
                        button type="submit" name="action" value="move_down" { (tr!(lang, "contents-move-down")) } " "
                        button type="submit" name="action" value="move_bottom" { (tr!(lang, "contents-move-bottom")) }
                    }
                }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// `POST @@contents`: one of the actions, named by the `action` field.
pub fn contents_action(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    target_folder(ctx)?;
    match ctx.input.field("action").unwrap_or("") {
        "rename" => rename(ctx, tx),
        "cut" => put_on_clipboard(ctx, tx, Op::Cut),
        "copy" => put_on_clipboard(ctx, tx, Op::Copy),
        "paste" => paste(ctx, tx),
        "delete" => delete(ctx, tx),
        action @ ("move_up" | "move_down" | "move_top" | "move_bottom") => reorder(ctx, tx, action),
        "" => Err(AppError::BadRequest(tr!(ctx.lang, "contents-no-action"))),
        other => Err(AppError::BadRequest(tr!(
            ctx.lang,
            "contents-unknown-action",
            action = format!("{other:?}")
        ))),
    }
}

fn back(ctx: &Ctx<'_>, notice: Notice) -> Reply {
    redirect_with_notice(&view_url(ctx, "contents"), notice)
}

fn with_cookie(reply: Reply, cookie: String) -> Reply {
    Reply::WithHeaders(Box::new(reply), vec![(header::SET_COOKIE, cookie)])
}

/// Renames the selected items to `new_ids` (in the same order); without `new_ids`,
/// shows the form asking for them.
fn rename(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if !ctx.allowed(Permission::Edit) {
        return Err(denied(ctx));
    }
    let (folder_ref, _) = target_folder(ctx)?;
    let items = selected(ctx, tx)?;
    let new_ids = ctx.input.all("new_ids");
    if new_ids.is_empty() {
        return Ok(rename_form(ctx, &items));
    }
    if new_ids.len() != ctx.input.all("ids").len() {
        return Err(AppError::BadRequest(tr!(ctx.lang, "contents-rename-count")));
    }
    let base = folder_names(ctx);
    let mut done = Vec::new();
    for (old, new) in ctx.input.all("ids").into_iter().zip(new_ids) {
        let new = new.trim();
        if old == new {
            continue;
        }
        if !valid_name(new) {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "edit-error-invalid-name",
                name = format!("{new:?}")
            )));
        }
        let items_tree = tx.get(folder_ref)?.items;
        if items_tree.contains_key(tx, &new.to_owned())? {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "contents-rename-taken",
                old = format!("{old:?}"),
                new = format!("{new:?}")
            )));
        }
        if !items.iter().any(|(n, _)| n == old) || !tree::rename_item(tx, folder_ref, old, new)? {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "contents-gone",
                name = format!("{old:?}")
            )));
        }
        let from = item_path(&base, old);
        let to = item_path(&base, new);
        done.push(format!("{} to {}", path_url(&from), path_url(&to)));
    }
    if done.is_empty() {
        return Ok(back(ctx, Notice::NothingRenamed));
    }
    ctx.note(tx, &format!("rename {}", done.join(", ")));
    Ok(back(ctx, Notice::Renamed))
}

fn rename_form(ctx: &Ctx<'_>, items: &[(String, Content)]) -> Reply {
    let lang = ctx.lang;
    let heading = tr!(lang, "rename-heading");
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            form method="post" action=(view_url(ctx, "contents")) {
                (csrf(ctx))
                div.table-wrap { table {
                    thead { tr { th { (tr!(lang, "field-title")) } th { (tr!(lang, "rename-current")) } th { (tr!(lang, "rename-new")) } } }
                    tbody {
                        @for (name, item) in items {
                            tr {
                                td { (item.meta().title) }
                                td { code { (name) } input type="hidden" name="ids" value=(name); }
                                td {
                                    label.visually-hidden for={"new-" (name)} { (tr!(lang, "rename-new-for", name = name.as_str())) }
                                    input id={"new-" (name)} type="text" name="new_ids" value=(name) required;
                                }
                            }
                        }
                    }
                } }
                p {
                    button type="submit" name="action" value="rename" { (tr!(lang, "contents-rename")) } " "
                    a href=(view_url(ctx, "contents")) { (tr!(lang, "button-cancel")) }
                }
            }
        },
    );
    Reply::Html(markup.into_string())
}

/// Cut or copy: puts the selected items' paths on the (signed cookie) clipboard.
fn put_on_clipboard(ctx: &Ctx<'_>, tx: &Transaction<'_>, op: Op) -> Result<Reply, AppError> {
    if op == Op::Cut && !ctx.allowed(Permission::Delete) {
        return Err(denied(ctx));
    }
    let items = selected(ctx, tx)?;
    let base = folder_names(ctx);
    let clipboard = Clipboard {
        op,
        paths: items
            .iter()
            .map(|(name, _)| item_path(&base, name))
            .collect(),
    };
    let cookie = clipboard_cookie(ctx, &clipboard)?;
    let notice = match op {
        Op::Cut => Notice::Cut,
        Op::Copy => Notice::Copied,
    };
    Ok(with_cookie(back(ctx, notice), cookie))
}

/// The objects along `names` from the root folder (root first), or `None` when the path
/// no longer leads to content.
fn locate(
    tx: &Transaction<'_>,
    ctx: &Ctx<'_>,
    names: &[String],
) -> Result<Option<Vec<Content>>, AppError> {
    let root = tx.get(ctx.site)?.content;
    let mut chain = vec![ContentRef::Folder(root).load(tx)?];
    for name in names {
        let items = match chain.last() {
            Some(Content::Folder(_, f)) => f.items,
            _ => return Ok(None),
        };
        let Some(any) = items.get(tx, name)? else {
            return Ok(None);
        };
        let Some(r) = ContentRef::resolve(tx, &any)? else {
            return Ok(None);
        };
        chain.push(r.load(tx)?);
    }
    Ok(Some(chain))
}

/// The path of the first item inside `content` (a folder, at `names` with the grants
/// `grants` down to it) that `principal` may not see, if any.  A copy carries its own
/// grants but not the inherited ones, so copying what one may not see could reveal it.
fn hidden_inside(
    tx: &Transaction<'_>,
    principal: &Principal,
    grants: &mut Vec<Grants>,
    names: &mut Vec<String>,
    content: &Content,
) -> Result<Option<String>, AppError> {
    let Content::Folder(_, folder) = content else {
        return Ok(None);
    };
    let children: Vec<_> = folder.items.iter(tx)?.collect::<Result<_, _>>()?;
    for (name, any) in children {
        let Some(r) = ContentRef::resolve(tx, &any)? else {
            continue;
        };
        let child = r.load(tx)?;
        grants.push(child.meta().grants.clone());
        names.push(name);
        let path: Vec<&Grants> = grants.iter().collect();
        let found = if !publication::seen_at(principal, &path, child.meta()) {
            Some(path_url(names))
        } else {
            hidden_inside(tx, principal, grants, names, &child)?
        };
        grants.pop();
        names.pop();
        if found.is_some() {
            return Ok(found);
        }
    }
    Ok(None)
}

/// Pastes the clipboard into the addressed folder: moves after a cut, deep copies after a
/// copy; clashing names become `copy_of_<name>`, `copy2_of_<name>`, ….
fn paste(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if !ctx.allowed(Permission::Add) {
        return Err(denied(ctx));
    }
    let (target_ref, target) = target_folder(ctx)?;
    let clipboard = match read_clipboard(ctx) {
        ClipState::Valid(c) => c,
        ClipState::Empty => {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "contents-clipboard-empty"
            )));
        }
        ClipState::Tampered => {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "contents-clipboard-refused"
            )));
        }
    };
    let target_oids: HashSet<zodb::Oid> = ctx
        .path
        .iter()
        .map(|s| s.content.reference().oid())
        .collect();
    let creator = ctx.principal.audit_name();
    let now = crate::web::now();
    let mut sources = Vec::new();
    let mut pasted = Vec::new();
    for path in &clipboard.paths {
        let url = path_url(path);
        let (Some(chain), Some(name)) = (locate(tx, ctx, path)?, path.last()) else {
            return Err(AppError::BadRequest(tr!(
                ctx.lang,
                "contents-source-gone",
                url = url.as_str()
            )));
        };
        let grants: Vec<&Grants> = chain.iter().map(|c| &c.meta().grants).collect();
        let (Some(item), Some(Content::Folder(parent_ref, _))) = (
            chain.last(),
            chain.len().checked_sub(2).and_then(|i| chain.get(i)),
        ) else {
            return Err(AppError::BadRequest(tr!(ctx.lang, "contents-root-paste")));
        };
        sources.push(url.clone());
        match clipboard.op {
            Op::Cut => {
                // Moving out of a folder needs Delete there (the item's own grants
                // left out); moving in, Add on the target (checked above).
                let container = grants.get(..grants.len() - 1).unwrap_or_default();
                if !security::allowed(&ctx.principal, container, Permission::Delete) {
                    return Err(denied(ctx));
                }
                if target_oids.contains(&item.reference().oid()) {
                    return Err(AppError::BadRequest(tr!(
                        ctx.lang,
                        "contents-into-itself",
                        url = url.as_str(),
                        location = ctx.location()
                    )));
                }
                if *parent_ref == target_ref {
                    // Already here: moving an item into its own folder changes nothing.
                    pasted.push(name.clone());
                    continue;
                }
                let new_name = tree::free_name(tx, target, name)?;
                if tree::move_item(tx, *parent_ref, name, target_ref, &new_name)?.is_none() {
                    return Err(AppError::BadRequest(tr!(
                        ctx.lang,
                        "contents-no-longer-there",
                        url = url.as_str()
                    )));
                }
                pasted.push(new_name);
            }
            Op::Copy => {
                if !security::allowed(&ctx.principal, &grants, Permission::View) {
                    return Err(denied(ctx));
                }
                let mut grants: Vec<Grants> = grants.into_iter().cloned().collect();
                let mut names = path.clone();
                if let Some(hidden) =
                    hidden_inside(tx, &ctx.principal, &mut grants, &mut names, item)?
                {
                    return Err(AppError::BadRequest(tr!(
                        ctx.lang,
                        "contents-copy-hidden",
                        url = url.as_str(),
                        hidden = hidden
                    )));
                }
                let copy = tree::deep_copy(tx, item.reference(), &creator, now)?;
                let new_name = tree::free_name(tx, target, name)?;
                target.items.insert(tx, new_name.clone(), copy.to_any())?;
                crate::search::added(tx, target_ref, &new_name, copy)?;
                pasted.push(new_name);
            }
        }
    }
    let how = match clipboard.op {
        Op::Cut => "move",
        Op::Copy => "copy",
    };
    ctx.note(
        tx,
        &format!(
            "paste {} into {} ({how})",
            sources.join(", "),
            ctx.location()
        ),
    );
    let reply = back(ctx, Notice::Pasted);
    Ok(match clipboard.op {
        // The cut items are no longer where the clipboard says.
        Op::Cut => with_cookie(reply, clear_clipboard_cookie(ctx)),
        Op::Copy => reply,
    })
}

/// Deletes the selected items (Delete on the folder).
fn delete(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    if !ctx.allowed(Permission::Delete) {
        return Err(denied(ctx));
    }
    let (folder_ref, _) = target_folder(ctx)?;
    let items = selected(ctx, tx)?;
    let mut urls = Vec::new();
    for (name, _) in &items {
        tree::remove_item(tx, folder_ref, name)?;
        urls.push(child_url(ctx, name));
    }
    ctx.note(tx, &format!("delete {}", urls.join(", ")));
    Ok(back(ctx, Notice::Deleted))
}

/// Moves the selected items up, down, to the top or to the bottom of the display order,
/// which is then stored in full (`Folder::order`).
fn reorder(ctx: &Ctx<'_>, tx: &Transaction<'_>, action: &str) -> Result<Reply, AppError> {
    if !ctx.allowed(Permission::Edit) {
        return Err(denied(ctx));
    }
    let (folder_ref, folder) = target_folder(ctx)?;
    let names = folder.ordered_names(tx)?;
    if names.len() > limits::REORDER_ITEMS_MAX {
        return Err(AppError::BadRequest(tr!(
            ctx.lang,
            "contents-reorder-too-many",
            count = names.len(),
            max = limits::REORDER_ITEMS_MAX
        )));
    }
    let chosen: HashSet<String> = selected(ctx, tx)?.into_iter().map(|(n, _)| n).collect();
    let order = moved(names, &chosen, action);
    if order == folder.order {
        return Ok(back(ctx, Notice::OrderUnchanged));
    }
    tx.update(folder_ref, |f| f.order = order)?;
    ctx.note(tx, &format!("reorder {}", ctx.location()));
    Ok(back(ctx, Notice::OrderChanged))
}

/// `names` with the `chosen` ones moved as `action` says.  Up and down move each chosen
/// item by one place, a block of chosen items moving together.
fn moved(mut names: Vec<String>, chosen: &HashSet<String>, action: &str) -> Vec<String> {
    let is = |n: &String| chosen.contains(n);
    match action {
        "move_top" => {
            let (mut first, rest): (Vec<_>, Vec<_>) = names.into_iter().partition(is);
            first.extend(rest);
            first
        }
        "move_bottom" => {
            let (last, mut rest): (Vec<_>, Vec<_>) = names.into_iter().partition(is);
            rest.extend(last);
            rest
        }
        "move_up" => {
            for i in 1..names.len() {
                if is(&names[i]) && !is(&names[i - 1]) {
                    names.swap(i, i - 1);
                }
            }
            names
        }
        "move_down" => {
            for i in (0..names.len().saturating_sub(1)).rev() {
                if is(&names[i]) && !is(&names[i + 1]) {
                    names.swap(i, i + 1);
                }
            }
            names
        }
        _ => names,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn moving_up_down_top_and_bottom() {
        let all = names(&["a", "b", "c", "d", "e"]);
        let chosen: HashSet<String> = names(&["b", "d"]).into_iter().collect();
        assert_eq!(
            moved(all.clone(), &chosen, "move_up"),
            names(&["b", "a", "d", "c", "e"])
        );
        assert_eq!(
            moved(all.clone(), &chosen, "move_down"),
            names(&["a", "c", "b", "e", "d"])
        );
        assert_eq!(
            moved(all.clone(), &chosen, "move_top"),
            names(&["b", "d", "a", "c", "e"])
        );
        assert_eq!(
            moved(all.clone(), &chosen, "move_bottom"),
            names(&["a", "c", "e", "b", "d"])
        );
        // A block at the top stays put.
        let top: HashSet<String> = names(&["a", "b"]).into_iter().collect();
        assert_eq!(moved(all.clone(), &top, "move_up"), all);
    }
}
