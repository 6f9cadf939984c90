//! HTML: the page layout every view shares, and small helpers.  maud escapes every
//! interpolated string, so user text (titles, descriptions, names) can never become
//! markup; the only unescaped HTML is Markdown output after `ammonia` sanitised it.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Ctx, url_of};
use crate::model::Content;
use crate::security::Permission;

const STYLE: &str = r#"
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{background:#234;color:#fff;padding:.6em 1em;display:flex;justify-content:space-between;align-items:center}
header a{color:#fff}
nav.crumbs{padding:.4em 1em;background:#eef}
nav.tabs{padding:.4em 1em;border-bottom:1px solid #ccd}
nav.tabs a{margin-right:1em}
nav.tabs a.current{font-weight:bold}
main{padding:1em}
table{border-collapse:collapse}
td,th{padding:.2em .6em;border-bottom:1px solid #ddd;text-align:left}
.notice{background:#efe;border:1px solid #9c9;padding:.4em}
.error{background:#fee;border:1px solid #c99;padding:.4em}
label{display:block;margin-top:.6em}
input[type=text],input[type=password],textarea{width:40em;max-width:100%}
textarea{height:20em}
form.inline{display:inline}
"#;

/// Renders a timestamp (seconds since the epoch) as UTC.
pub fn time(seconds: f64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(seconds as i64) else {
        return String::new();
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&format).unwrap_or_default()
}

/// A hidden field with the CSRF token; every form that changes something has one.
pub fn csrf(ctx: &Ctx<'_>) -> Markup {
    html! { input type="hidden" name=(crate::security::auth::CSRF_FIELD) value=(ctx.csrf); }
}

/// The URL of a view of the object addressed.
pub fn view_url(ctx: &Ctx<'_>, view: &str) -> String {
    let base = ctx.url();
    if base == "/" {
        format!("/@@{view}")
    } else {
        format!("{base}/@@{view}")
    }
}

/// The URL of an item of the folder addressed.
pub fn child_url(ctx: &Ctx<'_>, name: &str) -> String {
    url_of(
        ctx.path
            .iter()
            .skip(1)
            .map(|s| s.name.as_str())
            .chain(std::iter::once(name)),
    )
}

/// The page around a view's body: header with the user, breadcrumbs, the management
/// tabs the principal may use, a notice from the query (`?notice=`).
pub fn page(ctx: &Ctx<'_>, title: &str, body: Markup) -> Markup {
    let target = ctx.target();
    let is_folder = matches!(target, Content::Folder(..));
    let is_root = ctx.path.len() == 1;
    let mut tabs: Vec<(&str, &str)> = vec![("view", "View")];
    if is_folder && ctx.allowed(Permission::View) {
        tabs.push(("contents", "Contents"));
    }
    if ctx.allowed(Permission::Edit) {
        tabs.push(("edit", "Edit"));
    }
    if ctx.allowed(Permission::ManageSecurity) {
        tabs.push(("security", "Security"));
    }
    if ctx.allowed(Permission::ViewHistory) {
        tabs.push(("history", "History"));
    }
    if is_root && ctx.allowed(Permission::Undo) {
        tabs.push(("undo", "Undo"));
    }
    if is_root && ctx.allowed(Permission::ManageUsers) {
        tabs.push(("users", "Users"));
    }
    let site_title = ctx.path[0].content.meta().title.clone();
    html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { (title) " — " (site_title) }
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { strong { (site_title) } }
                    span.user {
                        @match ctx.principal.login() {
                            Some(login) => {
                                "Logged in as " strong #user { (login) } " "
                                form.inline method="post" action="/@@logout" {
                                    (csrf(ctx))
                                    button type="submit" { "Log out" }
                                }
                            }
                            None => { a href={"/@@login?" (serde_urlencoded::to_string([("came_from", ctx.url())]).unwrap_or_default())} { "Log in" } }
                        }
                    }
                }
                nav.crumbs {
                    a href="/" { "Home" }
                    @for (i, step) in ctx.path.iter().enumerate().skip(1) {
                        " / "
                        a href=(url_of(ctx.path[1..=i].iter().map(|s| s.name.as_str()))) { (step.name) }
                    }
                }
                @if ctx.principal.is_authenticated() {
                    nav.tabs {
                        @for (view, label) in &tabs {
                            a class=@if ctx.view == *view || (ctx.view.is_empty() && *view == "view") { "current" } href=(view_url(ctx, view)) { (label) }
                        }
                    }
                }
                main {
                    @if let Some(notice) = ctx.query("notice") {
                        p.notice { (notice) }
                    }
                    (body)
                }
            }
        }
    }
}

/// A plain page for errors (no context needed).
pub fn error_page(status: StatusCode, message: &str) -> String {
    html! {
        (DOCTYPE)
        html lang="en" {
            head { meta charset="utf-8"; title { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) } style { (PreEscaped(STYLE)) } }
            body {
                header { a href="/" { strong { "bbru" } } }
                main {
                    h1 { (status.as_u16()) " " (status.canonical_reason().unwrap_or("")) }
                    p.error { (message) }
                    @if status == StatusCode::UNAUTHORIZED { p { a href="/@@login" { "Log in" } } }
                }
            }
        }
    }
    .into_string()
}

/// A redirect to `url` with a notice shown on arrival.
pub fn redirect_with_notice(url: &str, notice: &str) -> super::Reply {
    let encoded = serde_urlencoded::to_string([("notice", notice)]).unwrap_or_default();
    let sep = if url.contains('?') { '&' } else { '?' };
    super::Reply::Redirect(format!("{url}{sep}{encoded}"))
}
