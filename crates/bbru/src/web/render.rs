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
/// tabs the principal may use, the notice a key in the query names (`?notice=`).
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
                (crate::web::views::feeds::head(ctx))
                style { (PreEscaped(STYLE)) }
            }
            body {
                header {
                    a href="/" { strong { (site_title) } }
                    span.user {
                        @match ctx.principal.login() {
                            Some(login) => {
                                "Logged in as " strong #user { (login) } " "
                                a href="/@@password" { "Password" } " "
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
                    @if let Some(notice) = ctx.query("notice").and_then(Notice::parse) {
                        p.notice { (notice.text(ctx)) }
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
                    // Hidden items answer visitors as missing ones: logging in may show them.
                    @if status == StatusCode::NOT_FOUND { p { "If you expected something here, it may need you to " a href="/@@login" { "log in" } "." } }
                }
            }
        }
    }
    .into_string()
}

/// What a page may say in its notice box after a change.  The URL carries only the key
/// (`?notice=saved`) and the text is the site's own, so a link made elsewhere cannot put
/// its words in the site's notice box; an unknown key shows nothing.  Details of what was
/// done are on the page reached (the listing, the history, the undo log).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Notice {
    /// An item was added (the page reached is the new item).
    Added,
    Saved,
    Reverted,
    /// A folder was reverted: its deleted items are not back.
    RevertedFolder,
    Undone,
    NothingChanged,
    GrantsSaved,
    UserAdded,
    UserChanged,
    PasswordSet,
    UserDeleted,
    GroupAdded,
    GroupDeleted,
    Renamed,
    NothingRenamed,
    Cut,
    Copied,
    Pasted,
    Deleted,
    OrderChanged,
    OrderUnchanged,
    PasswordChanged,
}

impl Notice {
    const ALL: [Notice; 22] = [
        Notice::Added,
        Notice::Saved,
        Notice::Reverted,
        Notice::RevertedFolder,
        Notice::Undone,
        Notice::NothingChanged,
        Notice::GrantsSaved,
        Notice::UserAdded,
        Notice::UserChanged,
        Notice::PasswordSet,
        Notice::UserDeleted,
        Notice::GroupAdded,
        Notice::GroupDeleted,
        Notice::Renamed,
        Notice::NothingRenamed,
        Notice::Cut,
        Notice::Copied,
        Notice::Pasted,
        Notice::Deleted,
        Notice::OrderChanged,
        Notice::OrderUnchanged,
        Notice::PasswordChanged,
    ];

    /// The key in the URL.
    pub fn key(self) -> &'static str {
        match self {
            Notice::Added => "added",
            Notice::Saved => "saved",
            Notice::Reverted => "reverted",
            Notice::RevertedFolder => "reverted-folder",
            Notice::Undone => "undone",
            Notice::NothingChanged => "unchanged",
            Notice::GrantsSaved => "grants-saved",
            Notice::UserAdded => "user-added",
            Notice::UserChanged => "user-changed",
            Notice::PasswordSet => "password-set",
            Notice::UserDeleted => "user-deleted",
            Notice::GroupAdded => "group-added",
            Notice::GroupDeleted => "group-deleted",
            Notice::Renamed => "renamed",
            Notice::NothingRenamed => "nothing-renamed",
            Notice::Cut => "cut",
            Notice::Copied => "copied",
            Notice::Pasted => "pasted",
            Notice::Deleted => "deleted",
            Notice::OrderChanged => "order-changed",
            Notice::OrderUnchanged => "order-unchanged",
            Notice::PasswordChanged => "password-changed",
        }
    }

    pub fn parse(key: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.key() == key)
    }

    /// The text shown on `ctx`'s page.
    pub fn text(self, ctx: &Ctx<'_>) -> String {
        match self {
            Notice::Added => format!("{} added.", ctx.target().kind().name()),
            Notice::Saved => "Changes saved.".into(),
            Notice::Reverted => "Reverted to the chosen version.".into(),
            Notice::RevertedFolder => "Reverted to the chosen version. Deleted items are not brought back by this: use Undo for them.".into(),
            Notice::Undone => "Done: the undo is the newest transaction below.".into(),
            Notice::NothingChanged => "Nothing changed.".into(),
            Notice::GrantsSaved => "Grants saved.".into(),
            Notice::UserAdded => "User added.".into(),
            Notice::UserChanged => "User changed.".into(),
            Notice::PasswordSet => "Password changed; the user was logged out everywhere.".into(),
            Notice::UserDeleted => "User deleted.".into(),
            Notice::GroupAdded => "Group added.".into(),
            Notice::GroupDeleted => "Group deleted.".into(),
            Notice::Renamed => "Renamed.".into(),
            Notice::NothingRenamed => "Nothing was renamed: the names are unchanged.".into(),
            Notice::Cut => "Cut; paste into the folder the items should move to.".into(),
            Notice::Copied => "Copied; paste into the folder the copies should go to.".into(),
            Notice::Pasted => "Pasted.".into(),
            Notice::Deleted => "Deleted.".into(),
            Notice::OrderChanged => "Order changed.".into(),
            Notice::OrderUnchanged => "The order is unchanged.".into(),
            Notice::PasswordChanged => "Your password was changed; your other sessions were logged out.".into(),
        }
    }
}

/// A redirect to `url` with `notice` shown on arrival.
pub fn redirect_with_notice(url: &str, notice: Notice) -> super::Reply {
    let sep = if url.contains('?') { '&' } else { '?' };
    super::Reply::Redirect(format!("{url}{sep}notice={}", notice.key()))
}
