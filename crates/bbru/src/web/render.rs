//! HTML: the page layout every view shares (landmarks, skip link, breadcrumbs by title,
//! section navigation, the language switch, the search box), form fields with their
//! labels, help and errors, notices, and small helpers.  maud escapes every
//! interpolated string, so user text (titles, descriptions, names) can never become
//! markup; the only unescaped HTML is Markdown output after `ammonia` sanitised it.

use axum::http::StatusCode;
use maud::{DOCTYPE, Markup, PreEscaped, html};

use super::{Ctx, url_of};
use crate::i18n::Lang;
use crate::model::{Content, Kind};
use crate::security::Permission;
use crate::tr;

/// The style sheet, in every page (small enough not to need a file of its own).
const STYLE: &str = include_str!("style.css");

/// The style sheet's URL, `/@@style.css?v=` and the start of its SHA-256: pages link
/// it and browsers keep it for a year ([`style_sheet`]); a new style sheet is a new URL.
/// Error pages keep it inline (they must look right when the database is away).
pub fn style_url() -> &'static str {
    static URL: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    URL.get_or_init(|| {
        use sha2::Digest;
        let hash = sha2::Sha256::digest(STYLE.as_bytes());
        let hex: String = hash[..6].iter().map(|b| format!("{b:02x}")).collect();
        format!("/@@style.css?v={hex}")
    })
}

/// `GET /@@style.css`: the style sheet, kept by browsers and proxies for a year (its URL
/// changes with it); served before any traversal, so it needs neither the database nor
/// a login.
pub fn style_sheet() -> super::Reply {
    super::Reply::WithHeaders(
        Box::new(super::Reply::Bytes {
            content_type: "text/css; charset=utf-8".into(),
            data: STYLE.as_bytes().to_vec(),
            filename: None,
        }),
        vec![(
            axum::http::header::CACHE_CONTROL,
            "public, max-age=31536000, immutable".into(),
        )],
    )
}

/// Renders a timestamp (seconds since the epoch) as UTC, language-neutral: for
/// transaction notes and anything machines read.  Pages use [`Lang::date`].
pub fn time(seconds: f64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(seconds as i64) else {
        return String::new();
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day] [hour]:[minute]:[second] UTC");
    t.format(&format).unwrap_or_default()
}

/// The name of a content type in the page's language.
pub fn kind_name(lang: Lang, kind: Kind) -> String {
    match kind {
        Kind::Folder => tr!(lang, "kind-folder"),
        Kind::Page => tr!(lang, "kind-page"),
        Kind::File => tr!(lang, "kind-file"),
        Kind::Image => tr!(lang, "kind-image"),
    }
}

/// A hidden field with the CSRF token; every form that changes something has one.
pub fn csrf(ctx: &Ctx<'_>) -> Markup {
    html! { input type="hidden" name=(crate::security::auth::CSRF_FIELD) value=(ctx.csrf()); }
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

/// A form field: its label bound to it (`for`/`id`), the control, a help text and the
/// error about it, if any, both tied to the control by `aria-describedby`.
#[derive(Debug)]
pub struct Field<'a> {
    pub id: &'a str,
    pub label: String,
    pub help: Option<String>,
    pub error: Option<String>,
}

impl Field<'_> {
    /// The field around `control`, which must carry `id=(self.id)` and
    /// `aria-describedby=(self.described_by())`.
    pub fn wrap(&self, control: Markup) -> Markup {
        html! {
            div.field.invalid[self.error.is_some()] {
                label for=(self.id) { (self.label) }
                (control)
                @if let Some(help) = &self.help { small.help id={(self.id) "-help"} { (help) } }
                @if let Some(error) = &self.error { p.field-error id={(self.id) "-error"} { (error) } }
            }
        }
    }

    /// The ids of the help and error texts, for `aria-describedby` (empty when none).
    pub fn described_by(&self) -> Option<String> {
        let mut ids = Vec::new();
        if self.help.is_some() {
            ids.push(format!("{}-help", self.id));
        }
        if self.error.is_some() {
            ids.push(format!("{}-error", self.id));
        }
        (!ids.is_empty()).then(|| ids.join(" "))
    }
}

/// A field with a label and no help or error.
pub fn field(id: &str, label: String) -> Field<'_> {
    Field {
        id,
        label,
        help: None,
        error: None,
    }
}

/// The link of the language switch to `lang`, coming back to this page.
fn language_url(ctx: &Ctx<'_>, lang: Lang) -> String {
    let mut here = ctx.url();
    if !ctx.view.is_empty() && ctx.method == axum::http::Method::GET {
        here = view_url(ctx, &ctx.view);
    }
    let query = serde_urlencoded::to_string([("lang", lang.code()), ("came_from", &here)])
        .unwrap_or_default();
    format!("/@@language?{query}")
}

/// The page around a view's body: a skip link; the header with the site's name, the
/// search box, the language switch and the user; breadcrumbs by title; the management
/// tabs the principal may use; the section navigation; the notice a key in the query
/// names (`?notice=`); a footer.
pub fn page(ctx: &Ctx<'_>, title: &str, body: Markup) -> Markup {
    let lang = ctx.lang;
    let target = ctx.target();
    let is_folder = matches!(target, Content::Folder(..));
    let is_root = ctx.path.len() == 1;
    let mut tabs: Vec<(&str, String)> = vec![("view", tr!(lang, "tab-view"))];
    if is_folder && ctx.allowed(Permission::View) {
        tabs.push(("contents", tr!(lang, "tab-contents")));
    }
    if ctx.allowed(Permission::Edit) {
        tabs.push(("edit", tr!(lang, "tab-edit")));
    }
    if ctx.allowed(Permission::ManageSecurity) {
        tabs.push(("security", tr!(lang, "tab-security")));
    }
    if ctx.allowed(Permission::ViewHistory) {
        tabs.push(("history", tr!(lang, "tab-history")));
    }
    if is_root && ctx.allowed(Permission::Undo) {
        tabs.push(("undo", tr!(lang, "tab-undo")));
    }
    if is_root && ctx.allowed(Permission::ManageUsers) {
        tabs.push(("users", tr!(lang, "tab-users")));
    }
    let site_title = ctx.path[0].content.meta().title.clone();
    let last = ctx.path.len() - 1;
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                // The home page is the site's own title, not "Site — Site".
                title { @if title != site_title { (title) " — " } (site_title) }
                (crate::web::views::feeds::head(ctx))
                link rel="stylesheet" href=(style_url());
            }
            body {
                a.skip href="#main" { (tr!(lang, "skip-to-content")) }
                header.site {
                    a.brand href="/" { (site_title) }
                    form.search role="search" method="get" action="/@@search" {
                        label.visually-hidden for="search-q" { (tr!(lang, "search-label")) }
                        input #search-q type="search" name="q" value=[ctx.query("q").filter(|_| ctx.view == "search")] placeholder=(tr!(lang, "search-placeholder"));
                        button type="submit" { (tr!(lang, "search-button")) }
                    }
                    nav.langs aria-label=(tr!(lang, "language-switch")) {
                        @for l in Lang::ALL {
                            @if l == lang {
                                span lang=(l.code()) aria-current="true" { (l.native_name()) }
                            } @else {
                                a href=(language_url(ctx, l)) lang=(l.code()) hreflang=(l.code()) { (l.native_name()) }
                            }
                        }
                    }
                    div.user {
                        @match ctx.principal.login() {
                            Some(login) => {
                                span.who { (tr!(lang, "logged-in-as")) " " } strong #user { (login) } " "
                                a href="/@@password" { (tr!(lang, "password-link")) } " "
                                form.inline method="post" action="/@@logout" {
                                    (csrf(ctx))
                                    button type="submit" { (tr!(lang, "log-out")) }
                                }
                            }
                            None => { a href={"/@@login?" (serde_urlencoded::to_string([("came_from", ctx.url())]).unwrap_or_default())} { (tr!(lang, "log-in")) } }
                        }
                    }
                }
                nav.crumbs aria-label=(tr!(lang, "breadcrumbs")) {
                    ol {
                        li { a href="/" aria-current=[(last == 0).then_some("page")] { (tr!(lang, "home")) } }
                        @for (i, step) in ctx.path.iter().enumerate().skip(1) {
                            li { a href=(url_of(ctx.path[1..=i].iter().map(|s| s.name.as_str()))) aria-current=[(i == last).then_some("page")] { (step.content.meta().title) } }
                        }
                    }
                }
                @if ctx.principal.is_authenticated() {
                    nav.tabs aria-label=(tr!(lang, "manage-tabs")) {
                        @for (view, label) in &tabs {
                            @let current = ctx.view == *view || (ctx.view.is_empty() && *view == "view");
                            a class=[current.then_some("current")] aria-current=[current.then_some("page")] href=(view_url(ctx, view)) { (label) }
                        }
                    }
                }
                div.layout {
                    (super::nav::sections(ctx))
                    main #main tabindex="-1" {
                        @if let Some(notice) = ctx.query("notice").and_then(Notice::parse) {
                            div.notice role="status" { (notice.text(ctx)) }
                        }
                        (body)
                    }
                }
                footer.site { p { (site_title) " · " (tr!(lang, "footer-powered")) } }
            }
        }
    }
}

/// A plain page for errors (no context needed); `detail`, if any, is English.
pub fn error_page(status: StatusCode, message: &str, detail: Option<&str>, lang: Lang) -> String {
    let heading = status_text(status, lang);
    html! {
        (DOCTYPE)
        html lang=(lang.code()) {
            head { meta charset="utf-8"; meta name="viewport" content="width=device-width, initial-scale=1"; title { (heading) } style { (PreEscaped(STYLE)) } }
            body {
                a.skip href="#main" { (tr!(lang, "skip-to-content")) }
                header.site { a.brand href="/" { "bbru" } }
                main #main tabindex="-1" {
                    h1 { (heading) }
                    p.error role="alert" { (message) }
                    @if let Some(detail) = detail { p.detail lang="en" { small { (detail) } } }
                    @if status == StatusCode::UNAUTHORIZED { p { a href="/@@login" { (tr!(lang, "log-in")) } } }
                    // Hidden items answer visitors as missing ones: logging in may show them.
                    @if status == StatusCode::NOT_FOUND { p { (tr!(lang, "not-found-hint")) " " a href="/@@login" { (tr!(lang, "not-found-hint-login")) } } }
                    p { a href="/" { (tr!(lang, "back-home")) } }
                }
            }
        }
    }
    .into_string()
}

/// "404 Not Found", in the language.
fn status_text(status: StatusCode, lang: Lang) -> String {
    let code = status.as_u16();
    let reason = match code {
        400 => tr!(lang, "status-400"),
        401 => tr!(lang, "status-401"),
        403 => tr!(lang, "status-403"),
        404 => tr!(lang, "status-404"),
        405 => tr!(lang, "status-405"),
        408 => tr!(lang, "status-408"),
        409 => tr!(lang, "status-409"),
        412 => tr!(lang, "status-412"),
        413 => tr!(lang, "status-413"),
        429 => tr!(lang, "status-429"),
        503 => tr!(lang, "status-503"),
        _ => tr!(lang, "status-500"),
    };
    format!("{code} {reason}")
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
    Published,
    Retracted,
}

impl Notice {
    const ALL: [Notice; 24] = [
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
        Notice::Published,
        Notice::Retracted,
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
            Notice::Published => "published",
            Notice::Retracted => "retracted",
        }
    }

    pub fn parse(key: &str) -> Option<Notice> {
        Notice::ALL.into_iter().find(|n| n.key() == key)
    }

    /// The text shown on `ctx`'s page.
    pub fn text(self, ctx: &Ctx<'_>) -> String {
        let lang = ctx.lang;
        match self {
            Notice::Added => tr!(
                lang,
                "notice-added",
                kind = kind_name(lang, ctx.target().kind())
            ),
            Notice::Saved => tr!(lang, "notice-saved"),
            Notice::Reverted => tr!(lang, "notice-reverted"),
            Notice::RevertedFolder => tr!(lang, "notice-reverted-folder"),
            Notice::Undone => tr!(lang, "notice-undone"),
            Notice::NothingChanged => tr!(lang, "notice-unchanged"),
            Notice::GrantsSaved => tr!(lang, "notice-grants-saved"),
            Notice::UserAdded => tr!(lang, "notice-user-added"),
            Notice::UserChanged => tr!(lang, "notice-user-changed"),
            Notice::PasswordSet => tr!(lang, "notice-password-set"),
            Notice::UserDeleted => tr!(lang, "notice-user-deleted"),
            Notice::GroupAdded => tr!(lang, "notice-group-added"),
            Notice::GroupDeleted => tr!(lang, "notice-group-deleted"),
            Notice::Renamed => tr!(lang, "notice-renamed"),
            Notice::NothingRenamed => tr!(lang, "notice-nothing-renamed"),
            Notice::Cut => tr!(lang, "notice-cut"),
            Notice::Copied => tr!(lang, "notice-copied"),
            Notice::Pasted => tr!(lang, "notice-pasted"),
            Notice::Deleted => tr!(lang, "notice-deleted"),
            Notice::OrderChanged => tr!(lang, "notice-order-changed"),
            Notice::OrderUnchanged => tr!(lang, "notice-order-unchanged"),
            Notice::PasswordChanged => tr!(lang, "notice-password-changed"),
            Notice::Published => tr!(lang, "notice-published"),
            Notice::Retracted => tr!(lang, "notice-retracted"),
        }
    }
}

/// A redirect to `url` with `notice` shown on arrival.
pub fn redirect_with_notice(url: &str, notice: Notice) -> super::Reply {
    let sep = if url.contains('?') { '&' } else { '?' };
    super::Reply::Redirect(format!("{url}{sep}notice={}", notice.key()))
}
