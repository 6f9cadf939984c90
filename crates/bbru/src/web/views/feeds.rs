//! Feeds and discovery: `@@feed` (an Atom feed of a folder's recently changed items),
//! `/sitemap.xml`, `/robots.txt`, and what pages put in their `<head>` for search
//! engines and feed readers ([`head`]: description, canonical link, feed link).
//!
//! Only public content appears: what an anonymous visitor may see (`security::visible`
//! with the anonymous principal), whoever asks, so the documents are the same for every
//! reader and a logged-in editor's copy leaks nothing private if shared.
//!
//! Absolute URLs come from `[site] url` of `site.toml`.  Without it, canonical links are
//! paths, and the feed and sitemap (which need absolute URLs) use the request's `Host`,
//! accepted only if it is a plain host name or address, and answered `private` so no
//! shared cache hands a forged host's copy to others.

use std::fmt::Write;

use axum::http::header::{CACHE_CONTROL, HOST};
use maud::{Markup, html};
use zodb::Transaction;

use crate::limits;
use crate::model::{Content, ContentRef, publication};
use crate::security::{self, Principal};
use crate::tr;
use crate::web::render::view_url;
use crate::web::views::api::iso;
use crate::web::{AppError, Ctx, Reply, url_of};

/// The site's address without a trailing slash, and whether it was configured (else it
/// comes from the request's checked `Host`).
fn base(ctx: &Ctx<'_>) -> (String, bool) {
    if let Some(url) = &ctx.app.config.site.url {
        return (url.trim_end_matches('/').to_owned(), true);
    }
    let host = ctx
        .headers
        .get(HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.len() <= 255
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    (format!("http://{host}"), false)
}

/// The `Cache-Control` of a document holding absolute URLs.
fn cache_control(configured: bool) -> String {
    if configured {
        "public, max-age=300".into()
    } else {
        "private, max-age=300".into()
    }
}

/// Text escaped for XML content and attribute values.
fn xml(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            // Characters XML 1.0 forbids (control characters but tab and line breaks).
            c if (c as u32) < 0x20 && !matches!(c, '\t' | '\n' | '\r') => {}
            c => out.push(c),
        }
    }
    out
}

/// A public item found under a folder: its URL path and the object.
#[derive(Debug)]
pub struct Found {
    pub url: String,
    pub content: Content,
}

/// The items under the addressed folder (not the folder itself) that anonymous visitors
/// may see, visiting at most [`limits::DISCOVERY_VISITS_MAX`] items.  A private item's
/// contents are skipped whole; a hidden one is entered (a grant below may show again).
/// At most [`limits::DISCOVERY_WALKS_AT_ONCE`] walks run at once; others wait
/// [`limits::DISCOVERY_WALK_WAIT`], then are answered 503.
pub fn public_items(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Vec<Found>, AppError> {
    ctx.app.discovery.run(
        limits::DISCOVERY_WALK_WAIT,
        "Too many feeds and sitemaps are being made right now; try again in a moment.",
        || walk(ctx, tx),
    )?
}

/// [`public_items`] without the gate.
fn walk(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Vec<Found>, AppError> {
    let names: Vec<String> = ctx.path.iter().skip(1).map(|s| s.name.clone()).collect();
    let path: Vec<Content> = ctx.path.iter().map(|s| s.content.clone()).collect();
    let mut stack = vec![(names, path)];
    let mut out = Vec::new();
    let mut visits = 0;
    while let Some((names, path)) = stack.pop() {
        let Some(Content::Folder(_, folder)) = path.last() else {
            continue;
        };
        for item in folder.items.iter(tx)? {
            let (name, any) = item?;
            visits += 1;
            if visits > limits::DISCOVERY_VISITS_MAX {
                tracing::info!(
                    max = limits::DISCOVERY_VISITS_MAX,
                    "feed or sitemap walk stopped at its bound"
                );
                return Ok(out);
            }
            let Some(r) = ContentRef::resolve(tx, &any)? else {
                continue;
            };
            let child = r.load(tx)?;
            let private = publication::is_private(child.meta());
            let mut child_path = path.clone();
            child_path.push(child.clone());
            let mut child_names = names.clone();
            child_names.push(name);
            let levels = publication::levels(child_path.iter().map(Content::meta));
            if security::visible(&Principal::Anonymous, &levels) {
                out.push(Found {
                    url: url_of(child_names.iter().map(String::as_str)),
                    content: child.clone(),
                });
            }
            if matches!(child, Content::Folder(..)) && !private {
                stack.push((child_names, child_path));
            }
        }
    }
    Ok(out)
}

/// `GET @@feed` of a folder: its public items, newest change first, at most
/// [`limits::FEED_ENTRIES_MAX`], as Atom (RFC 4287).
pub fn feed(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let (base, configured) = base(ctx);
    let mut items = public_items(ctx, tx)?;
    items.sort_by(|a, b| {
        b.content
            .meta()
            .modified
            .total_cmp(&a.content.meta().modified)
    });
    items.truncate(limits::FEED_ENTRIES_MAX);
    let folder = ctx.target().meta();
    let updated = items
        .first()
        .map_or(folder.modified, |f| f.content.meta().modified);
    let here = format!("{base}{}", ctx.url());
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<feed xmlns=\"http://www.w3.org/2005/Atom\">\n");
    let _ = writeln!(out, "  <title>{}</title>", xml(&folder.title));
    if !folder.description.is_empty() {
        let _ = writeln!(out, "  <subtitle>{}</subtitle>", xml(&folder.description));
    }
    let _ = writeln!(out, "  <id>{}</id>", xml(&here));
    let _ = writeln!(out, "  <updated>{}</updated>", iso(updated));
    let _ = writeln!(out, "  <link rel=\"alternate\" href=\"{}\"/>", xml(&here));
    let _ = writeln!(
        out,
        "  <link rel=\"self\" href=\"{}\"/>",
        xml(&format!("{base}{}", view_url(ctx, "feed")))
    );
    for item in &items {
        let meta = item.content.meta();
        let url = format!("{base}{}", item.url);
        let author = if meta.creator.is_empty() {
            "unknown"
        } else {
            &meta.creator
        };
        out.push_str("  <entry>\n");
        let _ = writeln!(out, "    <title>{}</title>", xml(&meta.title));
        let _ = writeln!(out, "    <id>{}</id>", xml(&url));
        let _ = writeln!(out, "    <link href=\"{}\"/>", xml(&url));
        let _ = writeln!(out, "    <updated>{}</updated>", iso(meta.modified));
        let _ = writeln!(out, "    <published>{}</published>", iso(meta.created));
        let _ = writeln!(out, "    <author><name>{}</name></author>", xml(author));
        if !meta.description.is_empty() {
            let _ = writeln!(out, "    <summary>{}</summary>", xml(&meta.description));
        }
        out.push_str("  </entry>\n");
    }
    out.push_str("</feed>\n");
    Ok(document(
        "application/atom+xml; charset=utf-8",
        out,
        configured,
    ))
}

fn document(content_type: &str, text: String, configured: bool) -> Reply {
    Reply::WithHeaders(
        Box::new(Reply::Bytes {
            content_type: content_type.into(),
            data: text.into_bytes(),
            filename: None,
        }),
        vec![(CACHE_CONTROL, cache_control(configured))],
    )
}

/// `GET /sitemap.xml`: the site's public content with its last modification, at most
/// [`limits::SITEMAP_URLS_MAX`] URLs (the protocol's bound for one file).
pub fn sitemap(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let (base, configured) = base(ctx);
    let mut out = String::from("<?xml version=\"1.0\" encoding=\"utf-8\"?>\n");
    out.push_str("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">\n");
    let root = ctx.target().meta();
    let mut entries = vec![("/".to_owned(), root.modified)];
    if security::visible(&Principal::Anonymous, &publication::levels([root])) {
        for f in public_items(ctx, tx)? {
            entries.push((f.url, f.content.meta().modified));
        }
    } else {
        entries.clear();
    }
    for (url, modified) in entries.iter().take(limits::SITEMAP_URLS_MAX) {
        let _ = writeln!(
            out,
            "  <url><loc>{}</loc><lastmod>{}</lastmod></url>",
            xml(&format!("{base}{url}")),
            iso(*modified)
        );
    }
    out.push_str("</urlset>\n");
    Ok(document("application/xml; charset=utf-8", out, configured))
}

/// `GET /robots.txt`: everything may be crawled but the views that manage (any `@@`
/// view but the feeds and image scales), and where the sitemap is.
pub fn robots(ctx: &Ctx<'_>, _tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let (base, configured) = base(ctx);
    let text = format!(
        "User-agent: *\nAllow: /@@style.css\nAllow: /*@@feed\nAllow: /*@@images/\nDisallow: /@@\nDisallow: /*/@@\n\nSitemap: {base}/sitemap.xml\n"
    );
    Ok(document("text/plain; charset=utf-8", text, configured))
}

/// What a page adds to its `<head>`: its description, its canonical URL (absolute when
/// `[site] url` is set), and on a folder the link to its feed.
pub fn head(ctx: &Ctx<'_>) -> Markup {
    let meta = ctx.target().meta();
    let canonical = match &ctx.app.config.site.url {
        Some(url) => format!("{}{}", url.trim_end_matches('/'), ctx.url()),
        None => ctx.url(),
    };
    let is_folder = matches!(ctx.target(), Content::Folder(..));
    html! {
        @if !meta.description.is_empty() { meta name="description" content=(meta.description); }
        link rel="canonical" href=(canonical);
        @if is_folder {
            link rel="alternate" type="application/atom+xml" title=(meta.title) href=(view_url(ctx, "feed"));
        }
    }
}

/// The links under a folder's listing: its recent changes and its feed.
pub fn folder_links(ctx: &Ctx<'_>) -> Markup {
    html! {
        p.folder-links {
            a href=(view_url(ctx, "changes")) { (tr!(ctx.lang, "feeds-changes")) } " · "
            a href=(view_url(ctx, "feed")) type="application/atom+xml" { (tr!(ctx.lang, "feeds-atom")) }
        }
    }
}
