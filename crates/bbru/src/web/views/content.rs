//! Default views of the content types, and the add and edit forms; the sanitised HTML
//! of pages, made once per page revision and kept ([`RenderedPages`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use maud::{Markup, PreEscaped, html};
use parking_lot::Mutex;
use sha2::Digest;
use zodb::Transaction;

use crate::i18n::Lang;
use crate::limits;
use crate::model::edit::{self, EditError, Fields};
use crate::model::{Content, ContentRef, Kind};
use crate::security::Permission;
use crate::tr;
use crate::web::render::{
    Notice, child_url, csrf, kind_name, page, redirect_with_notice, view_url,
};

use super::forms::{
    FormState, body_error_text, edit_error_text, error_field, form_error, kind_fields,
};
use crate::web::{AppError, Ctx, Reply, now, version};

/// Markdown to HTML, sanitised (no scripts, no event handlers, no `javascript:` links).
/// A body beyond the page limits (saved before they existed, or by another client) is
/// an error: sanitising it could take seconds; [`RenderedPages::html`] shows it as text.
pub fn markdown(source: &str) -> Result<String, crate::model::markup::BodyError> {
    crate::model::markup::check_body(source).map(|html| ammonia::clean(&html))
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
    /// The sanitised HTML of `source`, rendered only if not already kept.  A body past
    /// the limits is shown as escaped text under a notice in `lang`, and not kept (the
    /// notice is the only part that depends on the language, and such bodies are rare).
    pub fn html(&self, source: &str, lang: Lang) -> Arc<str> {
        let key: [u8; 32] = sha2::Sha256::digest(source.as_bytes()).into();
        if let Some(html) = self.cache.lock().get(&key) {
            return html.clone();
        }
        self.renders.fetch_add(1, Ordering::Relaxed);
        let html: Arc<str> = match markdown(source) {
            Ok(html) => html.into(),
            Err(e) => {
                return html! {
                    p.error { (tr!(lang, "page-not-html", reason = body_error_text(lang, &e))) }
                    pre { (source) }
                }
                .into_string()
                .into();
            }
        };
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

/// The links to the add forms of each content type.
fn add_links(ctx: &Ctx<'_>) -> Markup {
    let lang = ctx.lang;
    html! {
        p.add-links {
            (tr!(lang, "add-label")) " "
            @for k in Kind::ALL { a href={(view_url(ctx, "add")) "?type=" (k.name())} { (kind_name(lang, k)) } " " }
        }
    }
}

/// "name.pdf (application/pdf, 1.5 KB)".
pub fn file_facts(lang: Lang, filename: &str, content_type: &str, size: u64) -> String {
    format!("{filename} ({content_type}, {})", lang.size(size))
}

/// The HTML view of any object.
pub fn view_page(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let lang = ctx.lang;
    let target = ctx.target();
    let meta = target.meta();
    let body: Markup = match target {
        Content::Folder(..) => {
            let items = visible_items(ctx, tx)?;
            html! {
                @if ctx.allowed(Permission::Add) { (add_links(ctx)) }
                @if items.is_empty() { p { em { (tr!(lang, "folder-empty")) } } }
                (super::feeds::folder_links(ctx))
                ul.items {
                    @for (name, item) in &items {
                        li {
                            (super::images::listing_thumb(ctx, tx, name, item)?)
                            a href=(child_url(ctx, name)) { (item.meta().title) } " "
                            span.kind { "(" (kind_name(lang, item.kind())) ")" }
                            (super::publication::listing_marker(lang, item))
                            @if !item.meta().description.is_empty() { span.description { (item.meta().description) } }
                        }
                    }
                }
            }
        }
        Content::Page(_, p) => {
            html! { div.body { (PreEscaped(&*ctx.app.pages.html(&p.body, lang))) } }
        }
        Content::File(_, f) => html! {
            p { a href=(ctx.url()) { (tr!(lang, "download", filename = f.filename.as_str())) } " (" (f.content_type) ", " (lang.size(f.byte_len())) ")" }
        },
        Content::Image(_, i) => html! {
            (super::images::picture(ctx, tx, &meta.title)?)
            p { (file_facts(lang, &i.filename, &i.content_type, i.byte_len())) }
        },
    };
    let creator = if meta.creator.is_empty() {
        tr!(lang, "creator-unknown")
    } else {
        meta.creator.clone()
    };
    let markup = page(
        ctx,
        &meta.title,
        html! {
            h1 { (meta.title) }
            (super::publication::state_box(ctx))
            @if !meta.description.is_empty() { p.description { (meta.description) } }
            (body)
            p.byline { small { (tr!(lang, "byline", creator = creator, created = lang.date(meta.created), modified = lang.date(meta.modified))) } }
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

pub fn add_form(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let kind = Kind::parse(ctx.query("type").unwrap_or("Page"))
        .ok_or_else(|| AppError::BadRequest(tr!(ctx.lang, "error-unknown-type")))?;
    Ok(Reply::Html(add_page(ctx, kind, &FormState::default())))
}

fn add_page(ctx: &Ctx<'_>, kind: Kind, state: &FormState<'_>) -> String {
    let lang = ctx.lang;
    let heading = tr!(lang, "add-heading", kind = kind_name(lang, kind));
    let id = state.field(
        "id",
        tr!(lang, "field-name"),
        Some(tr!(lang, "field-name-help")),
    );
    page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            form method="post" action=(view_url(ctx, "add")) enctype="multipart/form-data" novalidate[state.error.is_some()] {
                (csrf(ctx))
                input type="hidden" name="type" value=(kind.name());
                (id.wrap(html! { input #id type="text" name="id" value=(state.id) aria-describedby=[id.described_by()] aria-invalid=[id.error.as_ref().map(|_| "true")]; }))
                (kind_fields(lang, kind, state))
                (super::publication::add_form_field(ctx))
                p { button type="submit" { (tr!(lang, "button-add")) } }
            }
        },
    )
    .into_string()
}

pub fn add(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let Content::Folder(folder, _) = ctx.target() else {
        return Err(AppError::NotFound);
    };
    let kind = Kind::parse(ctx.input.field("type").unwrap_or(""))
        .ok_or_else(|| AppError::BadRequest(tr!(ctx.lang, "error-unknown-type")))?;
    let created = edit::create(
        tx,
        *folder,
        ctx.input.field("id").unwrap_or(""),
        kind,
        form_fields(ctx),
        &ctx.principal.audit_name(),
        now(),
    );
    let (name, item) = match created {
        Ok(done) => done,
        Err(e) if form_error(&e) => {
            let field = |n| ctx.input.field(n).unwrap_or("");
            let state = FormState {
                id: field("id"),
                title: field("title"),
                description: field("description"),
                body: field("body"),
                error: Some((error_field(&e), edit_error_text(ctx.lang, &e))),
            };
            let html = add_page(ctx, kind, &state);
            return Ok(Reply::HtmlStatus(axum::http::StatusCode::BAD_REQUEST, html));
        }
        Err(e) => return Err(e.into()),
    };
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
    let state = FormState {
        title: &meta.title,
        description: &meta.description,
        body,
        ..FormState::default()
    };
    Ok(Reply::Html(edit_page(
        ctx,
        &version::token(serial),
        &state,
        None,
    )))
}

/// The edit page with `state` in its form (filled from the version `token`), and the
/// preview of its body when asked for without scripts.
fn edit_page(ctx: &Ctx<'_>, token: &str, state: &FormState<'_>, preview: Option<&str>) -> String {
    let meta = ctx.target().meta();
    let heading = tr!(ctx.lang, "edit-heading", title = meta.title.as_str());
    page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            (edit_fields(ctx, ctx.target().kind(), token, state, preview))
        },
    )
    .into_string()
}

/// The edit form; a page's has a preview of its body: live with the script (which asks
/// `@@preview` as the text changes), or through the Preview button without it (the form
/// comes back with the preview, nothing saved).
fn edit_fields(
    ctx: &Ctx<'_>,
    kind: Kind,
    token: &str,
    state: &FormState<'_>,
    preview: Option<&str>,
) -> Markup {
    let lang = ctx.lang;
    let page = kind == Kind::Page;
    html! {
        form #edit-form method="post" action=(view_url(ctx, "edit")) enctype="multipart/form-data" novalidate[state.error.is_some()] data-preview=[page.then(|| view_url(ctx, "preview"))] {
            (csrf(ctx))
            input type="hidden" name=(version::FORM_FIELD) value=(token);
            (kind_fields(lang, kind, state))
            @if page {
                section #preview-section aria-labelledby="preview-heading" hidden[preview.is_none()] {
                    h2 #preview-heading { (tr!(lang, "preview-heading")) }
                    div #preview .preview .body aria-live="polite" { @if let Some(html) = preview { (PreEscaped(html)) } }
                }
            }
            p.actions {
                button type="submit" { (tr!(lang, "button-save")) }
                @if page { button.secondary type="submit" name="preview" value="1" { (tr!(lang, "preview-button")) } }
            }
        }
        @if page { script { (PreEscaped(PREVIEW_SCRIPT)) } }
    }
}

/// The live preview: after a pause in typing (or on the Preview button), the body goes
/// to `@@preview` with the form's CSRF token; the answer is HTML the server sanitised
/// with the renderer pages use.  Without scripts the button posts the form instead.
const PREVIEW_SCRIPT: &str = r#"(function(){
var f=document.getElementById('edit-form'),ta=document.getElementById('body'),
out=document.getElementById('preview'),sec=document.getElementById('preview-section');
if(!f||!ta||!out||!window.fetch||!window.FormData)return;
var timer,seq=0;
function go(){var d=new FormData(),n=++seq;d.append('_csrf',f.elements['_csrf'].value);d.append('body',ta.value);
fetch(f.getAttribute('data-preview'),{method:'POST',body:d,credentials:'same-origin'})
.then(function(r){if(!r.ok)throw r.status;return r.text();})
.then(function(h){if(n===seq){out.innerHTML=h;sec.hidden=false;}}).catch(function(){});}
ta.addEventListener('input',function(){clearTimeout(timer);timer=setTimeout(go,400);});
var b=f.querySelector('button[name=preview]');
if(b)b.addEventListener('click',function(e){e.preventDefault();go();});
})();"#;

/// `POST @@preview` (Edit, with the CSRF token): the sanitised HTML of the posted
/// `body`, rendered as pages are (not kept: drafts would push pages out of the cache).
pub fn preview(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    Ok(Reply::Html(preview_html(
        ctx.lang,
        ctx.input.field("body").unwrap_or(""),
    )))
}

fn preview_html(lang: Lang, body: &str) -> String {
    match markdown(body) {
        Ok(html) => html,
        Err(e) => html! { p.error { (body_error_text(lang, &e)) } }.into_string(),
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
    if ctx.input.field("preview").is_some() {
        // The Preview button without scripts: the form again, with the text, unsaved,
        // still carrying the version it was opened at.
        let field = |n| ctx.input.field(n).unwrap_or("");
        let state = FormState {
            title: field("title"),
            description: field("description"),
            body: field("body"),
            ..FormState::default()
        };
        let token = ctx
            .input
            .field(version::FORM_FIELD)
            .map_or_else(|| version::token(current), str::to_owned);
        let html = preview_html(ctx.lang, field("body"));
        return Ok(Reply::Html(edit_page(ctx, &token, &state, Some(&html))));
    }
    if let Some(seen) = ctx.input.field(version::FORM_FIELD)
        && seen != version::token(current)
    {
        return Ok(merge_form(ctx, current));
    }
    match edit::apply(tx, target.reference(), form_fields(ctx), now()) {
        Ok(_) => {}
        Err(e) if form_error(&e) && ctx.input.field(version::FORM_FIELD).is_some() => {
            let field = |n| ctx.input.field(n).unwrap_or("");
            let state = FormState {
                title: field("title"),
                description: field("description"),
                body: field("body"),
                error: Some((error_field(&e), edit_error_text(ctx.lang, &e))),
                ..FormState::default()
            };
            let html = edit_page(ctx, &version::token(current), &state, None);
            return Ok(Reply::HtmlStatus(axum::http::StatusCode::BAD_REQUEST, html));
        }
        Err(e) => return Err(e.into()),
    }
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
    let lang = ctx.lang;
    let heading = tr!(lang, "edit-heading", title = meta.title.as_str());
    let state = FormState {
        title: mine_title,
        description: mine_description,
        body: mine_body,
        ..FormState::default()
    };
    let markup = page(
        ctx,
        &heading,
        html! {
            h1 { (heading) }
            div.error role="alert" id="merge-notice" {
                p { strong { (tr!(lang, "merge-changed")) } " " (tr!(lang, "merge-saved-at", time = lang.date(meta.modified))) }
                p { (tr!(lang, "merge-how")) }
                @if uploaded { p { (tr!(lang, "merge-file-dropped")) } }
            }
            section aria-labelledby="theirs-heading" {
                h2 id="theirs-heading" { (tr!(lang, "merge-theirs")) }
                dl.theirs {
                    dt { (tr!(lang, "field-title")) } dd id="theirs-title" { (meta.title) }
                    dt { (tr!(lang, "field-description")) } dd id="theirs-description" { (meta.description) }
                    @if let Some(body) = theirs_body {
                        dt { (tr!(lang, "merge-body")) } dd { pre id="theirs-body" { (body) } }
                    }
                }
            }
            section aria-labelledby="mine-heading" {
                h2 id="mine-heading" { (tr!(lang, "merge-mine")) }
                (edit_fields(ctx, target.kind(), &version::token(current), &state, None))
            }
        },
    );
    Reply::HtmlStatus(axum::http::StatusCode::CONFLICT, markup.into_string())
}
