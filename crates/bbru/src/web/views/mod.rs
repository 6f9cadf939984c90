//! The views: what each (content kind, view name, method) pair does, and the permission
//! it needs.  One module per family; this table is the one place they are listed.
//!
//! | view           | on       | GET                       | POST (or other)            | permission |
//! |----------------|----------|---------------------------|----------------------------|------------|
//! | (default)      | all      | page / listing / download | JSON API: POST creates in a folder, PATCH edits, DELETE deletes | View / Add / Edit / Delete on the container |
//! | `view`         | all      | the HTML view             |                            | View |
//! | `contents`     | Folder   | management listing        | rename, cut, copy, paste, delete, reorder | View (each action checks its own, on the folder: rename/reorder Edit, delete/cut Delete, paste Add and Delete on each source folder of a cut) |
//! | `add`          | Folder   | add form (`?type=Page`)   | create                     | Add |
//! | `edit`         | all      | edit form                 | save                       | Edit |
//! | `preview`      | all      |                           | the posted `body` as sanitised HTML | Edit |
//! | `security`     | all      | local grants              | grant / revoke             | ManageSecurity |
//! | `history`      | all      | past versions, `?serial=` | revert                     | ViewHistory (revert: Edit too) |
//! | `undo`         | root     | transactions              | undo chosen ones           | Undo |
//! | `users`        | root     | users and groups          | add / change / remove      | ManageUsers |
//! | `login`        | root     | form                      | log in                     | (none) |
//! | `logout`       | root     |                           | log out (ends all the principal's sessions) | (none) |
//! | `password`     | root     | change-my-password form   | change it (current one asked) | (none; any logged-in user) |
//! | `language`     | root     | `?lang=&came_from=`: sets the language cookie, back to the page | | (none) |
//! | `search`       | root     | search page (`?q=`); JSON as `@search` |               | View |
//! | `@search`      | root     | plone.restapi's `@search` (`?q=`, `b_start`, `b_size`) |  | View |
//! | `health`       | root     | JSON status               |                            | (none) |
//! | `metrics`      | root     | Prometheus text           |                            | (`[http] metrics` of serve.toml) |
//! | `/@login`      | root     |                           | JSON login → `{"token"}`   | (none) |
//! | `/@logout`     | root     |                           | ends the principal's sessions and tokens → 204 | (none; 401 for anonymous) |
//! | `images/<scale>` | Image  | a scale (`thumb`, `preview`, `large`) |               | View |
//! | `feed`         | Folder   | Atom feed of public items |                            | View |
//! | `/robots.txt`, `/sitemap.xml` | root | discovery files (public content only) | | (none) |
//! | `changes`      | Folder   | recent changes under it (transaction log) |        | View (entries: what the reader may see) |
//! | `diff`         | Page     | text changes of a revision, `?rev=[&from=]` |   | ViewHistory |
//! | `publish`      | not root |                           | set the state (`state=private|published`) | Publish |
//!
//! Views marked `uploads` below take upload forms, their files streamed to disk up to
//! the site's `upload_size_max` (`web/upload.rs`), and JSON bodies of at most
//! `limits::JSON_BODY_BYTES_MAX`; all others take forms of at most
//! `limits::FORM_BODY_BYTES_MAX` bytes.

pub mod api;
pub mod changes;
pub mod content;
pub mod feeds;
mod forms;
pub mod history;
pub mod images;
pub mod language;
pub mod login;
pub mod manage;
pub mod ops;
pub mod publication;
pub mod search;
pub mod security;
pub mod users;

use axum::http::Method;
use zodb::Transaction;

use super::{AppError, Ctx, Reply};
use crate::model::Kind;
use crate::security::Permission;

/// A view's code.
pub type Handler = fn(&Ctx<'_>, &Transaction<'_>) -> Result<Reply, AppError>;

/// What a request resolved to.
#[derive(Debug, Clone, Copy)]
pub struct Found {
    /// `None` for views anybody may use (login, health).
    pub permission: Option<Permission>,
    /// Whether `permission` is checked on the folder holding the object (removing an
    /// item is decided by its container) rather than on the object itself.
    pub on_container: bool,
    pub handler: Handler,
    /// Whether the view takes uploads or page bodies (a large body); the others take
    /// small forms only.
    pub uploads: bool,
    /// Whether a state-changing request needs the CSRF token (all but `/@login`, which
    /// sets no cookie: a forged one could only hand its token to the page that sent it).
    pub csrf: bool,
}

fn view(permission: Permission, handler: Handler) -> Result<Found, AppError> {
    Ok(Found {
        permission: Some(permission),
        on_container: false,
        handler,
        uploads: false,
        csrf: true,
    })
}

/// A view whose permission is checked on the container of the object addressed.
fn container_view(permission: Permission, handler: Handler) -> Result<Found, AppError> {
    Ok(Found {
        permission: Some(permission),
        on_container: true,
        handler,
        uploads: false,
        csrf: true,
    })
}

/// A view that takes uploads and page bodies.
fn uploads(found: Result<Found, AppError>) -> Result<Found, AppError> {
    found.map(|f| Found { uploads: true, ..f })
}

/// Every view name of the table, as the label of its requests in `/@@metrics`.
// Kept compact (rustfmt would list one name a line).
#[rustfmt::skip]
const NAMES: [&str; 26] = [
    "view", "contents", "add", "edit", "security", "history", "undo", "users", "login", "logout",
    "password", "health", "metrics", "@login", "@logout",
    "publish", "images", "feed", "robots.txt", "sitemap.xml", "changes", "diff",
    "language", "preview", "search", "@search",
];

/// The metrics label of a request for the view `name`: the name if the table has it,
/// "default" for none, "other" for anything else (so clients cannot add labels).
pub fn label(name: &str) -> &'static str {
    if name.is_empty() {
        return "default";
    }
    let name = name.split('/').next().unwrap_or(name);
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("other")
}

/// The view for a request, or why there is none.
/// `root` says whether the object addressed is the site's root folder (site-wide views
/// exist only there).
pub fn find(
    kind: Kind,
    root: bool,
    name: &str,
    method: &Method,
    json: bool,
) -> Result<Found, AppError> {
    use Permission::*;
    let get = *method == Method::GET || *method == Method::HEAD;
    let post = *method == Method::POST;
    let root_only = |f: Result<Found, AppError>| if root { f } else { Err(AppError::NotFound) };
    match (name, get, post) {
        ("", true, _) if json => view(View, api::get),
        ("", true, _) => view(View, content::default_view),
        ("", false, true) if json && kind == Kind::Folder => uploads(view(Add, api::create)),
        ("", false, false) if json && *method == Method::PATCH => uploads(view(Edit, api::update)),
        ("", false, false) if json && *method == Method::DELETE => {
            container_view(Delete, api::delete)
        }
        ("view", true, _) => view(View, content::view_page),
        ("contents", true, _) if kind == Kind::Folder => view(View, manage::contents),
        ("contents", false, true) if kind == Kind::Folder => view(View, manage::contents_action),
        ("add", true, _) if kind == Kind::Folder => view(Add, content::add_form),
        ("add", false, true) if kind == Kind::Folder => uploads(view(Add, content::add)),
        ("edit", true, _) => view(Edit, content::edit_form),
        ("edit", false, true) => uploads(view(Edit, content::edit)),
        ("preview", false, true) => uploads(view(Edit, content::preview)),
        ("security", true, _) => view(ManageSecurity, security::form),
        ("security", false, true) => view(ManageSecurity, security::change),
        ("history", true, _) => view(ViewHistory, history::history),
        ("history", false, true) => view(Edit, history::revert),
        ("undo", true, _) => root_only(view(Undo, history::undo_log)),
        ("undo", false, true) => root_only(view(Undo, history::undo)),
        ("users", true, _) => root_only(view(ManageUsers, users::list)),
        ("users", false, true) => root_only(view(ManageUsers, users::change)),
        ("login", true, _) => root_only(public(login::form)),
        ("login", false, true) => root_only(public(login::login)),
        ("logout", _, true) => root_only(public(login::logout)),
        // Any logged-in user, for their own password (the view checks who asks).
        ("password", true, _) => root_only(public(login::password_form)),
        ("password", false, true) => root_only(public(login::change_password)),
        ("language", true, _) => root_only(public(language::switch)),
        ("search", true, _) if json => root_only(view(View, search::json)),
        ("search", true, _) => root_only(view(View, search::html)),
        ("@search", true, _) => root_only(view(View, search::json)),
        ("health", true, _) => root_only(public(ops::health)),
        ("metrics", true, _) => root_only(public(ops::metrics)),
        ("@login", false, true) => {
            root_only(public(login::token)).map(|f| Found { csrf: false, ..f })
        }
        ("@logout", false, true) => root_only(public(login::token_logout)),
        ("publish", false, true) => view(Publish, publication::change),
        ("feed", true, _) if kind == Kind::Folder => view(View, feeds::feed),
        ("changes", true, _) if kind == Kind::Folder => view(View, changes::changes),
        ("diff", true, _) if kind == Kind::Page => view(ViewHistory, changes::diff_view),
        ("robots.txt", true, _) => root_only(public(feeds::robots)),
        ("sitemap.xml", true, _) => root_only(public(feeds::sitemap)),
        (n, true, _) if n.starts_with("images/") && kind == Kind::Image => {
            view(View, images::scale_view)
        }
        ("", _, _)
        | (
            "view" | "contents" | "add" | "edit" | "security" | "history" | "undo" | "users"
            | "login" | "logout" | "password" | "health" | "metrics" | "@login" | "@logout"
            | "publish" | "robots.txt" | "sitemap.xml" | "language" | "preview" | "search"
            | "@search",
            _,
            _,
        ) => Err(AppError::MethodNotAllowed),
        _ => Err(AppError::NotFound),
    }
}

/// A view anybody may use, even on a site that is not public.
fn public(handler: Handler) -> Result<Found, AppError> {
    Ok(Found {
        permission: None,
        on_container: false,
        handler,
        uploads: false,
        csrf: true,
    })
}
