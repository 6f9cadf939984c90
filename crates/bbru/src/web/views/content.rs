//! Default views of the content types, and the add and edit forms; the sanitised HTML
//! of pages, made once per page revision and kept ([`RenderedPages`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use maud::{Markup, PreEscaped, html};
use parking_lot::Mutex;
use sha2::Digest;
use zodb::Transaction;

use crate::limits;
use crate::model::edit::{self, EditError, Fields};
use crate::model::{Content, ContentRef, Kind};
use crate::security::Permission;
use crate::web::render::{self, Notice, child_url, csrf, page, redirect_with_notice, view_url};
use crate::web::{AppError, Ctx, Reply, now, version};

/// Markdown to HTML, sanitised (no scripts, no event handlers, no `javascript:` links).
/// A body beyond the page limits (saved before they existed, or by another client) is
/// shown as escaped text: sanitising it could take seconds.
pub fn markdown(source: &str) -> String {
    match crate::model::markup::check_body(source) {
        Ok(html) => ammonia::clean(&html),
        Err(e) => html! {
            p.error { "This page cannot be shown as HTML: " (e) "." }
            pre { (source) }
        }
        .into_string(),
    }
}

/// The sanitised HTML of page bodies, keyed by the SHA-256 of the Markdown (so any
/// revision, old records included, is rendered once and found again whatever object or
/// instance saved it), least recently used first out, at most
/// [`limits::RENDERED_PAGES_BYTES_MAX`] bytes of HTML.  A cache rather than a field of
/// the stored `Page`: records written before it, by Python or by older releases, need no
/// migration, and the rendering can change with a release without rewriting pages.
#[derive(Debug)]
pub struct RenderedPages {
    cache: Mutex<lru::LruCache<[u8; 32], Arc<str>>>,
    bytes: AtomicU64,
    renders: AtomicU64,
}

impl Default for RenderedPages {
    fn default() -> Self {
        RenderedPages {
            cache: Mutex::new(lru::LruCache::unbounded()),
            bytes: AtomicU64::new(0),
            renders: AtomicU64::new(0),
        }
    }
}

impl RenderedPages {
    /// The sanitised HTML of `source`, rendered only if not already kept.
    pub fn html(&self, source: &str) -> Arc<str> {
        let key: [u8; 32] = sha2::Sha256::digest(source.as_bytes()).into();
        if let Some(html) = self.cache.lock().get(&key) {
            return html.clone();
        }
        self.renders.fetch_add(1, Ordering::Relaxed);
        let html: Arc<str> = markdown(source).into();
        if html.len() > limits::RENDERED_PAGES_BYTES_MAX / 4 {
            // A few huge pages must not push everything else out.
            return html;
        }
        let mut cache = self.cache.lock();
        if let Some(old) = cache.put(key, html.clone()) {
            self.bytes.fetch_sub(old.len() as u64, Ordering::Relaxed);
        }
        let mut bytes =
            self.bytes.fetch_add(html.len() as u64, Ordering::Relaxed) + html.len() as u64;
        while bytes > limits::RENDERED_PAGES_BYTES_MAX as u64 {
            let Some((_, evicted)) = cache.pop_lru() else {
                break;
            };
            bytes = self
                .bytes
                .fetch_sub(evicted.len() as u64, Ordering::Relaxed)
                - evicted.len() as u64;
        }
        html
    }

    /// How many times a page body was rendered (cache misses), for `/@@metrics`.
    pub fn renders(&self) -> u64 {
        self.renders.load(Ordering::Relaxed)
    }
}

impl From<EditError> for AppError {
    fn from(e: EditError) -> Self {
        match e {
            EditError::Db(e) => AppError::Db(e),
            e @ EditError::TooLargeInline { .. } => AppError::TooLarge(e.to_string()),
            other => AppError::BadRequest(other.to_string()),
        }
    }
}

/// Content types a browser may show inline without risk; anything else is downloaded.
fn inline_safe(content_type: &str) -> bool {
    let t = content_type
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    matches!(
        t.as_str(),
        "image/png" | "image/jpeg" | "image/gif" | "image/webp" | "application/pdf" | "text/plain"
    )
}

/// The default view: a folder's listing, a page, a file's or image's bytes.
pub fn default_view(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    match ctx.target() {
        Content::File(_, f) => {
            serve_bytes(ctx, tx, &f.content_type, f.bytes(), f.size, &f.filename)
        }
        Content::Image(_, i) => {
            serve_bytes(ctx, tx, &i.content_type, i.bytes(), i.size, &i.filename)
        }
        _ => view_page(ctx, tx),
    }
}

/// A file's or image's bytes: from its blob, streamed, with an `ETag` (the blob's
/// revision) and a `Last-Modified` (its transaction's time), `304` for a matching
/// `If-None-Match` (or, without one, an `If-Modified-Since` not before it) and `206`
/// for a `Range` (unless an `If-Range` names another version: then all of it); or, kept
/// in the record, as they are.
fn serve_bytes(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    content_type: &str,
    bytes: crate::model::content::Bytes<'_>,
    size: u64,
    filename: &str,
) -> Result<Reply, AppError> {
    use crate::model::content::Bytes;
    let blob = match bytes {
        Bytes::Inline(data) => return Ok(download(content_type, data, filename)),
        Bytes::Blob(b) => b,
    };
    use axum::http::header::{
        ETAG, IF_MODIFIED_SINCE, IF_NONE_MATCH, IF_RANGE, LAST_MODIFIED, RANGE,
    };
    let serial = tx.serial(blob)?;
    let etag = format!("\"{:016x}-{:016x}\"", blob.oid().0, serial.0);
    // HTTP dates count whole seconds.
    let modified = std::time::UNIX_EPOCH
        + std::time::Duration::from_secs(serial.unix_seconds().max(0.0) as u64);
    let last_modified = httpdate::fmt_http_date(modified);
    let header = |name| ctx.headers.get(name).and_then(|v| v.to_str().ok());
    // If-None-Match, when sent, decides alone (RFC 9110 §13.2.2).
    let not_modified = match header(IF_NONE_MATCH) {
        Some(v) => v.split(',').any(|t| t.trim() == etag || t.trim() == "*"),
        None => header(IF_MODIFIED_SINCE)
            .and_then(|v| httpdate::parse_http_date(v).ok())
            .is_some_and(|since| modified <= since),
    };
    if not_modified {
        return Ok(Reply::WithHeaders(
            Box::new(Reply::Status(
                axum::http::StatusCode::NOT_MODIFIED,
                String::new(),
            )),
            vec![(ETAG, etag), (LAST_MODIFIED, last_modified)],
        ));
    }
    // A Range for another version than this one gets the whole file (If-Range).
    let range_header = header(RANGE)
        .filter(|_| header(IF_RANGE).is_none_or(|v| v.trim() == etag || v.trim() == last_modified));
    let range = match crate::web::reply::parse_range(range_header, size) {
        Ok(r) => r,
        Err(()) => {
            return Ok(Reply::WithHeaders(
                Box::new(Reply::Status(
                    axum::http::StatusCode::RANGE_NOT_SATISFIABLE,
                    "The range asked for is not in the file.".into(),
                )),
                vec![(axum::http::header::CONTENT_RANGE, format!("bytes */{size}"))],
            ));
        }
    };
    let path = tx.blob_file(blob)?;
    let Reply::Bytes { content_type, .. } = download(content_type, &[], filename) else {
        unreachable!("download answers bytes");
    };
    Ok(Reply::File {
        content_type,
        path,
        size,
        filename: filename.to_owned(),
        etag,
        last_modified,
        range,
    })
}

fn download(content_type: &str, data: &[u8], filename: &str) -> Reply {
    let content_type = if inline_safe(content_type) {
        content_type.to_owned()
    } else {
        // Stored HTML or SVG served as is would run script in the site's origin.
        "application/octet-stream".to_owned()
    };
    Reply::Bytes {
        content_type,
        data: data.to_vec(),
        filename: Some(filename.to_owned()),
    }
}

/// Items of a folder the principal may see: (name, content), in display order.
pub fn visible_items(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
) -> Result<Vec<(String, Content)>, AppError> {
    let Content::Folder(_, folder) = ctx.target() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for name in folder.ordered_names(tx)? {
        let Some(any) = folder.items.get(tx, &name)? else {
            continue;
        };
        let Some(r) = ContentRef::resolve(tx, &any)? else {
            continue;
        };
        let content = r.load(tx)?;
        if ctx.allowed_on(&content, Permission::View) {
            out.push((name, content));
        }
    }
    Ok(out)
}

/// The HTML view of any object.
pub fn view_page(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let meta = target.meta();
    let body: Markup = match target {
        Content::Folder(..) => {
            let items = visible_items(ctx, tx)?;
            html! {
                @if ctx.allowed(Permission::Add) {
                    p { "Add: " @for k in Kind::ALL { a href={(view_url(ctx, "add")) "?type=" (k.name())} { (k.name()) } " " } }
                }
                @if items.is_empty() { p { em { "This folder is empty." } } }
                (super::feeds::folder_links(ctx))
                ul.items {
                    @for (name, item) in &items {
                        li { (super::images::listing_thumb(ctx, tx, name, item)?) a href=(child_url(ctx, name)) { (item.meta().title) } " " small { "(" (item.kind().name()) ")" } (super::publication::listing_marker(item))
                            @if !item.meta().description.is_empty() { br; span.description { (item.meta().description) } } }
                    }
                }
            }
        }
        Content::Page(_, p) => html! { div.body { (PreEscaped(&*ctx.app.pages.html(&p.body))) } },
        Content::File(_, f) => html! {
            p { a href=(ctx.url()) { "Download " (f.filename) } " (" (f.content_type) ", " (f.byte_len()) " bytes)" }
        },
        Content::Image(_, i) => html! {
            (super::images::picture(ctx, tx, &meta.title)?)
            p { (i.filename) " (" (i.content_type) ", " (i.byte_len()) " bytes)" }
        },
    };
    let markup = page(
        ctx,
        &meta.title,
        html! {
            h1 { (meta.title) }
            (super::publication::state_box(ctx))
            @if !meta.description.is_empty() { p.description { (meta.description) } }
            (body)
            p.byline { small { "Created by " (if meta.creator.is_empty() { "unknown" } else { &meta.creator }) " on " (render::time(meta.created)) ", modified " (render::time(meta.modified)) } }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// The fields of a form post.
pub fn form_fields(ctx: &Ctx<'_>) -> Fields {
    let input = ctx.input;
    Fields {
        title: input.field("title").map(str::to_owned),
        description: input.field("description").map(str::to_owned),
        body: input.field("body").map(str::to_owned),
        upload: input.file("file").map(|u| edit::Upload {
            filename: u.filename.clone(),
            content_type: u.content_type.clone(),
            data: Some(u.data.clone()),
        }),
    }
}

fn kind_fields(kind: Kind, title: &str, description: &str, body: &str) -> Markup {
    html! {
        label { "Title" input type="text" name="title" value=(title) required; }
        label { "Description" input type="text" name="description" value=(description); }
        @if kind == Kind::Page { label { "Body (Markdown)" textarea name="body" { (body) } } }
        @if matches!(kind, Kind::File | Kind::Image) { label { "File" input type="file" name="file"; } }
    }
}

pub fn add_form(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let kind = Kind::parse(ctx.query("type").unwrap_or("Page"))
        .ok_or_else(|| AppError::BadRequest("unknown content type".into()))?;
    let markup = page(
        ctx,
        &format!("Add {}", kind.name()),
        html! {
            h1 { "Add " (kind.name()) }
            form method="post" action=(view_url(ctx, "add")) enctype="multipart/form-data" {
                (csrf(ctx))
                input type="hidden" name="type" value=(kind.name());
                label { "Name (in the URL; made from the title if empty)" input type="text" name="id"; }
                (kind_fields(kind, "", "", ""))
                (super::publication::add_form_field(ctx))
                p { button type="submit" { "Add" } }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

pub fn add(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let Content::Folder(folder, _) = ctx.target() else {
        return Err(AppError::NotFound);
    };
    let kind = Kind::parse(ctx.input.field("type").unwrap_or(""))
        .ok_or_else(|| AppError::BadRequest("unknown content type".into()))?;
    let (name, item) = edit::create(
        tx,
        *folder,
        ctx.input.field("id").unwrap_or(""),
        kind,
        form_fields(ctx),
        &ctx.principal.audit_name(),
        now(),
    )?;
    super::publication::apply_new_state(ctx, tx, item)?;
    let url = child_url(ctx, &name);
    ctx.note(tx, &format!("add {} {url}", kind.name()));
    Ok(redirect_with_notice(&url, Notice::Added))
}

/// The edit form, filled from the object, carrying the version it was filled from.
pub fn edit_form(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let meta = target.meta();
    let body = match target {
        Content::Page(_, p) => p.body.as_str(),
        _ => "",
    };
    let serial = target.reference().serial(tx)?;
    let markup = page(
        ctx,
        &format!("Edit {}", meta.title),
        html! {
            h1 { "Edit " (meta.title) }
            (edit_fields(ctx, target.kind(), serial, &meta.title, &meta.description, body))
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

fn edit_fields(
    ctx: &Ctx<'_>,
    kind: Kind,
    serial: zodb::Tid,
    title: &str,
    description: &str,
    body: &str,
) -> Markup {
    html! {
        form method="post" action=(view_url(ctx, "edit")) enctype="multipart/form-data" {
            (csrf(ctx))
            input type="hidden" name=(version::FORM_FIELD) value=(version::token(serial));
            (kind_fields(kind, title, description, body))
            p { button type="submit" { "Save" } }
        }
    }
}

/// Saves the edit form.  A form filled from an older version than the current one (someone
/// else saved meanwhile) is not applied: the form comes back (409) with the other
/// person's version beside the user's own text, and carries the current version, so that
/// saving it again, once merged, goes through.  A post without the version field (a
/// script) is applied as before.
pub fn edit(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let current = target.reference().serial(tx)?;
    if let Some(seen) = ctx.input.field(version::FORM_FIELD)
        && seen != version::token(current)
    {
        return Ok(merge_form(ctx, current));
    }
    edit::apply(tx, target.reference(), form_fields(ctx), now())?;
    ctx.note(tx, &format!("edit {}", ctx.location()));
    Ok(redirect_with_notice(&ctx.url(), Notice::Saved))
}

/// The edit form shown again after someone else saved the object since the user opened
/// it: their version, read only, and the user's own text in the form, to merge.
fn merge_form(ctx: &Ctx<'_>, current: zodb::Tid) -> Reply {
    let target = ctx.target();
    let meta = target.meta();
    let theirs_body = match target {
        Content::Page(_, p) => Some(p.body.as_str()),
        _ => None,
    };
    let mine = form_fields(ctx);
    let mine_title = mine.title.as_deref().unwrap_or(&meta.title);
    let mine_description = mine.description.as_deref().unwrap_or(&meta.description);
    let mine_body = mine.body.as_deref().or(theirs_body).unwrap_or("");
    let uploaded = mine.upload.is_some();
    let markup = page(
        ctx,
        &format!("Edit {}", meta.title),
        html! {
            h1 { "Edit " (meta.title) }
            div.error role="alert" id="merge-notice" {
                p { strong { "Someone else changed this since you opened it" } " (saved " (render::time(meta.modified)) "). Your changes have not been saved." }
                p { "Their version is shown below; your text is in the form. Merge the two in the form and save again." }
                @if uploaded { p { "The file you chose was not kept: choose it again if you still want to replace theirs." } }
            }
            section aria-labelledby="theirs-heading" {
                h2 id="theirs-heading" { "Their version" }
                dl.theirs {
                    dt { "Title" } dd id="theirs-title" { (meta.title) }
                    dt { "Description" } dd id="theirs-description" { (meta.description) }
                    @if let Some(body) = theirs_body {
                        dt { "Body" } dd { pre id="theirs-body" { (body) } }
                    }
                }
            }
            section aria-labelledby="mine-heading" {
                h2 id="mine-heading" { "Your version" }
                (edit_fields(ctx, target.kind(), current, mine_title, mine_description, mine_body))
            }
        },
    );
    Reply::HtmlStatus(axum::http::StatusCode::CONFLICT, markup.into_string())
}
