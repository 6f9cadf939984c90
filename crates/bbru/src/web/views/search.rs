//! `/@@search?q=`: the search page (a form and the results, each with its title linking
//! to the item, its path and a snippet), and its JSON form, `/@search?q=` (or
//! `/@@search` with `Accept: application/json`), as plone.restapi's `@search`:
//! `{"@id", "items": [{"@id", "@type", "title", "description", "snippet"}],
//! "items_total", "batching"?}`, batched by `b_start` and `b_size`; `SearchableText`
//! is taken for `q`, as Plone clients send it.  `snippet` is HTML: the text escaped,
//! the words found in `<mark>`.
//!
//! Results are what the reader may view (`crate::search::query::may_view`), so the count
//! tells nothing of hidden items either.

use axum::http::StatusCode;
use maud::{PreEscaped, html};
use serde_json::{Value, json};
use zodb::Transaction;

use crate::limits;
use crate::search::query::{self, IndexState, Results, SearchError};
use crate::tr;
use crate::web::render::page;
use crate::web::views::api::base_url;
use crate::web::{AppError, Ctx, Reply};

/// The query: `q`, or Plone's `SearchableText`.
fn query_text<'a>(ctx: &'a Ctx<'_>) -> &'a str {
    ctx.query("q")
        .or_else(|| ctx.query("SearchableText"))
        .unwrap_or("")
        .trim()
}

fn run(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    q: &str,
    start: usize,
    size: usize,
) -> Result<Results, AppError> {
    query::search(tx, &ctx.principal, q, start, size).map_err(|e| match e {
        SearchError::Db(e) => AppError::Db(e),
        SearchError::QueryTooLong => AppError::BadRequest(tr!(
            ctx.lang,
            "search-error-too-long",
            max = limits::SEARCH_QUERY_BYTES_MAX
        )),
        SearchError::TooManyTerms => AppError::BadRequest(tr!(
            ctx.lang,
            "search-error-too-many",
            max = limits::SEARCH_QUERY_TERMS_MAX
        )),
    })
}

fn search_url(q: &str, page: usize) -> String {
    let mut pairs = vec![("q", q.to_owned())];
    if page > 1 {
        pairs.push(("page", page.to_string()));
    }
    format!(
        "/@@search?{}",
        serde_urlencoded::to_string(pairs).unwrap_or_default()
    )
}

/// The HTML page.
pub fn html(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let q = query_text(ctx);
    let page_no = ctx
        .query("page")
        .and_then(|p| p.parse::<usize>().ok())
        .unwrap_or(1)
        .clamp(1, limits::SEARCH_RESULTS_MAX);
    let size = limits::SEARCH_PAGE_SIZE;
    let results = if q.is_empty() {
        None
    } else {
        Some(run(ctx, tx, q, (page_no - 1) * size, size)?)
    };
    let pages = results.as_ref().map_or(0, |r| r.total.div_ceil(size));
    let lang = ctx.lang;
    let title = tr!(lang, "search-title");
    let markup = page(
        ctx,
        &title,
        html! {
            h1 { (title) }
            // Its own id: the header's search field is `search-q`.
            form.search role="search" method="get" action="/@@search" {
                label for="search-page-q" { (tr!(lang, "search-for")) }
                " "
                input #search-page-q type="search" name="q" value=(q) maxlength=(limits::SEARCH_QUERY_BYTES_MAX);
                " "
                button type="submit" { (tr!(lang, "search-button")) }
            }
            @if let Some(r) = &results {
                @match r.index {
                    IndexState::Missing => p.notice { (tr!(lang, "search-index-missing")) },
                    IndexState::Incomplete => p.notice { (tr!(lang, "search-index-incomplete")) },
                    IndexState::Ready => {},
                }
                p.count {
                    (tr!(lang, "search-results", count = r.total))
                    @if r.incomplete { " " (tr!(lang, "search-best-found")) }
                }
                ol.results start=((page_no - 1) * size + 1) {
                    @for hit in &r.hits {
                        li {
                            a.title href=(hit.url) { (hit.content.meta().title) }
                            " "
                            span.path { (hit.url) }
                            @if !hit.snippet.is_empty() {
                                p.snippet { (PreEscaped(&hit.snippet)) }
                            }
                        }
                    }
                }
                @if pages > 1 {
                    nav.pages {
                        @if page_no > 1 {
                            a rel="prev" href=(search_url(q, page_no - 1)) { (tr!(lang, "contents-previous")) }
                            " "
                        }
                        (page_no) " / " (pages)
                        @if page_no < pages {
                            " "
                            a rel="next" href=(search_url(q, page_no + 1)) { (tr!(lang, "contents-next")) }
                        }
                    }
                }
            }
        },
    );
    Ok(Reply::Html(markup.into_string()))
}

/// The JSON form, as plone.restapi's `@search`.
pub fn json(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let q = query_text(ctx);
    let number = |name: &str, default: usize| -> Result<usize, AppError> {
        match ctx.query(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .map_err(|_| AppError::BadRequest(format!("{name} must be a number."))),
        }
    };
    let start = number("b_start", 0)?;
    let size = number("b_size", limits::SEARCH_PAGE_SIZE)?.clamp(1, limits::SEARCH_PAGE_SIZE_MAX);
    let base = base_url(ctx);
    let results = run(ctx, tx, q, start, size)?;
    let items: Vec<Value> = results
        .hits
        .iter()
        .map(|hit| {
            let meta = hit.content.meta();
            json!({
                "@id": format!("{base}{}", hit.url),
                "@type": hit.content.kind().name(),
                "title": meta.title,
                "description": meta.description,
                "snippet": hit.snippet,
            })
        })
        .collect();
    let link = |start: usize| {
        let query = serde_urlencoded::to_string([
            ("q", q.to_owned()),
            ("b_start", start.to_string()),
            ("b_size", size.to_string()),
        ])
        .unwrap_or_default();
        format!("{base}/@search?{query}")
    };
    let mut value = json!({
        "@id": link(start),
        "items": items,
        "items_total": results.total,
        "index": match results.index {
            IndexState::Missing => "missing",
            IndexState::Incomplete => "incomplete",
            IndexState::Ready => "ready",
        },
        "incomplete": results.incomplete,
    });
    if results.total > size
        && let Value::Object(object) = &mut value
    {
        let mut batching = json!({
            "@id": link(start),
            "first": link(0),
            "last": link((results.total - 1) / size * size),
        });
        if let Value::Object(b) = &mut batching {
            if start + size < results.total {
                b.insert("next".into(), json!(link(start + size)));
            }
            if start > 0 {
                b.insert("prev".into(), json!(link(start.saturating_sub(size))));
            }
        }
        object.insert("batching".into(), batching);
    }
    Ok(Reply::Json(StatusCode::OK, value))
}
