//! The permission matrix: every view of the table in `web/views/mod.rs` and every JSON API
//! call, asked by every kind of principal, with the status each must get.
//!
//! Principals (users made directly in the database, grants set there too):
//!
//! | column  | who                                                                     |
//! |---------|-------------------------------------------------------------------------|
//! | anon    | nobody logged in (the site is public: `group:everybody` is Member)      |
//! | member  | a plain user: Member through `group:authenticated` at the root          |
//! | editor  | Editor granted at the root                                              |
//! | manager | Manager granted at the root                                             |
//! | boot    | the bootstrap manager of the site configuration                         |
//! | docsed  | Editor granted on `/docs` only                                          |
//! | pat     | the one user allowed Member on `/private`, where `group:everybody` and `group:authenticated` are denied it |
//!
//! Removing an item from a folder (delete, cut) and renaming it are decided on the folder,
//! as in Zope: docsed is also Manager of the folders `/apibox-…`, `/delbox-…`,
//! `/cutbox-…` and `/renbox-…` (one per principal, so each row changes its own), and
//! may still not delete, cut or rename them out of the root.
//! A visitor asking for what it may not see gets 404, as for what does not exist (the
//! name of a hidden item is no business of theirs); users get 403.
//!
//! Forms are posted by logged-in browsers (with the CSRF token); API calls use HTTP Basic
//! authentication.  This module also holds the helpers the history and API tests share:
//! users, grants and content made directly in the database.

use bbru::model::edit::{self, Fields};
use bbru::model::{ContentRef, Kind, Site as SiteObject, User};
use bbru::security::{Role, Setting, password};
use reqwest::blocking::Response;
use serde_json::Value;
use zodb::{Tid, Transaction};

use crate::{ADMIN, Browser, Site, start_keeping_bootstrap};

// ----- helpers shared with the other modules ------------------------------------------

/// The password every test user gets.
pub fn password_of(login: &str) -> String {
    format!("{login}-secret-password")
}

/// Runs `work` in a transaction of the site's database, noted `what`, and commits it.
pub fn in_db<R>(site: &Site, what: &str, work: impl FnOnce(&Transaction<'_>) -> R) -> (R, Tid) {
    let mut conn = site.db.connection();
    let tx = conn.begin();
    tx.set_user("test");
    tx.note(what);
    let result = work(&tx);
    let tid = tx.commit().unwrap().expect("the test changed something");
    (result, tid)
}

/// The content at `path` ("/" or "/docs/page").
pub fn content_at(tx: &Transaction<'_>, path: &str) -> ContentRef {
    let site = SiteObject::find(tx).unwrap().expect("a site");
    let mut at = ContentRef::Folder(tx.get(site).unwrap().content);
    for name in path.split('/').filter(|s| !s.is_empty()) {
        let ContentRef::Folder(folder) = at else {
            panic!("{path}: {name} is inside something that is no folder");
        };
        let any = tx
            .get(folder)
            .unwrap()
            .items
            .get(tx, &name.to_owned())
            .unwrap()
            .unwrap_or_else(|| panic!("{path}: no {name}"));
        at = ContentRef::resolve(tx, &any).unwrap().expect("content");
    }
    at
}

/// Adds the user `login` (password [`password_of`]) directly in the database.
pub fn add_user(site: &Site, login: &str) {
    in_db(site, &format!("add user {login}"), |tx| {
        let site_ref = SiteObject::find(tx).unwrap().expect("a site");
        let users = tx.get(site_ref).unwrap().users;
        let user = tx
            .add(User {
                login: login.to_owned(),
                title: format!("User {login}"),
                password_hash: password::hash(&password_of(login)),
                groups: Vec::new(),
                session_generation: 0,
            })
            .unwrap();
        users.insert(tx, login.to_owned(), user).unwrap();
    });
}

/// Sets `principal`'s `role` on the object at `path` directly in the database.
pub fn set_grant(site: &Site, path: &str, principal: &str, role: Role, setting: Setting) {
    in_db(site, &format!("grant on {path}"), |tx| {
        content_at(tx, path)
            .update_meta(tx, |m| m.grants.set(principal, role, Some(setting)))
            .unwrap();
    });
}

/// Adds an item directly in the database; returns the tid of its transaction.
pub fn add_item(site: &Site, folder: &str, kind: Kind, name: &str, title: &str) -> Tid {
    let (_, tid) = in_db(site, &format!("add {folder}/{name}"), |tx| {
        let ContentRef::Folder(parent) = content_at(tx, folder) else {
            panic!("{folder} is no folder");
        };
        let fields = Fields {
            title: Some(title.to_owned()),
            body: Some(format!("The body of {title}.")),
            ..Fields::default()
        };
        edit::create(tx, parent, name, kind, fields, "test", 0.0).unwrap();
    });
    tid
}

/// A browser logged in as the test user `login`.
pub fn browser_of(site: &Site, login: &str) -> Browser {
    let b = site.browser();
    b.login(login, &password_of(login));
    b
}

/// A JSON API call: `Accept: application/json`, HTTP Basic credentials if given, a JSON
/// body if given.
pub fn api(
    site: &Site,
    method: &str,
    path: &str,
    credentials: Option<(&str, &str)>,
    body: Option<&Value>,
) -> Response {
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("{}{path}", site.base))
        .header("accept", "application/json");
    if let Some((login, password)) = credentials {
        request = request.basic_auth(login, Some(password));
    }
    if let Some(body) = body {
        request = request.json(body);
    }
    request.send().unwrap()
}

// ----- the matrix ---------------------------------------------------------------------

/// How a row asks.
#[derive(Debug, Clone, Copy)]
enum Call {
    /// A browser GET.
    Get,
    /// A browser POST of these form fields (with the CSRF token).
    Post(&'static [(&'static str, &'static str)]),
    /// API calls (HTTP Basic); the `&str` is the JSON body.
    ApiGet,
    ApiPost(&'static str),
    ApiPatch(&'static str),
    ApiDelete,
}
use Call::*;

/// One principal of the matrix: its column name, browser and Basic credentials.
struct Principal {
    name: &'static str,
    browser: Browser,
    basic: Option<(String, String)>,
}

/// What the rows may mention: `{who}` (the principal's column name), `{serial}` (the
/// first version of /docs/page), `{tid}` (a fresh undoable transaction, made for the row).
struct Matrix {
    site: Site,
    principals: Vec<Principal>,
    serial: String,
    failures: Vec<String>,
}

impl Matrix {
    fn setup() -> Matrix {
        // Local managers and the bootstrap manager side by side.
        let site = start_keeping_bootstrap();
        for folder in ["docs", "private"] {
            add_item(&site, "/", Kind::Folder, folder, folder);
        }
        for folder in ["/", "/docs", "/private"] {
            add_item(&site, folder, Kind::Page, "page", "A page");
        }
        add_item(&site, "/", Kind::Page, "scratch", "Scratch");
        for login in ["member", "editor", "manager", "docsed", "pat"] {
            add_user(&site, login);
        }
        set_grant(&site, "/", "user:editor", Role::Editor, Setting::Allow);
        set_grant(&site, "/", "user:manager", Role::Manager, Setting::Allow);
        set_grant(&site, "/docs", "user:docsed", Role::Editor, Setting::Allow);
        for group in ["group:everybody", "group:authenticated"] {
            set_grant(&site, "/private", group, Role::Member, Setting::Deny);
        }
        set_grant(&site, "/private", "user:pat", Role::Member, Setting::Allow);
        let mut principals = vec![Principal {
            name: "anon",
            browser: site.browser(),
            basic: None,
        }];
        for login in ["member", "editor", "manager"] {
            principals.push(Principal {
                name: login,
                browser: browser_of(&site, login),
                basic: Some((login.to_owned(), password_of(login))),
            });
        }
        principals.push(Principal {
            name: "boot",
            browser: site.admin(),
            basic: Some((ADMIN.0.to_owned(), ADMIN.1.to_owned())),
        });
        for login in ["docsed", "pat"] {
            principals.push(Principal {
                name: login,
                browser: browser_of(&site, login),
                basic: Some((login.to_owned(), password_of(login))),
            });
        }
        add_item(&site, "/docs", Kind::Folder, "sub", "Sub");
        // Container rules: folders of the root docsed manages, items of /docs to move.
        for p in &principals {
            for prefix in ["apibox", "delbox", "cutbox", "renbox"] {
                let name = format!("{prefix}-{}", p.name);
                add_item(&site, "/", Kind::Folder, &name, "Box");
                set_grant(
                    &site,
                    &format!("/{name}"),
                    "user:docsed",
                    Role::Manager,
                    Setting::Allow,
                );
            }
            for prefix in ["mv", "rn"] {
                add_item(
                    &site,
                    "/docs",
                    Kind::Page,
                    &format!("{prefix}-{}", p.name),
                    "To move",
                );
            }
        }
        // One item for each principal to delete.
        for folder in ["/", "/docs", "/private"] {
            for p in &principals {
                add_item(
                    &site,
                    folder,
                    Kind::Page,
                    &format!("del-{}", p.name),
                    "To delete",
                );
            }
        }
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let oid = content_at(&tx, "/docs/page").oid();
        drop(tx);
        let first = site.db.storage().history(oid, 100).unwrap();
        let serial = format!("{:016x}", first.last().unwrap().tid.0);
        Matrix {
            site,
            principals,
            serial,
            failures: Vec::new(),
        }
    }

    /// `text` with the placeholders of the row filled in for `who`.
    fn fill(&self, text: &str, who: &str) -> String {
        let mut text = text.replace("{who}", who).replace("{serial}", &self.serial);
        if text.contains("{tid}") {
            let (_, tid) = in_db(&self.site, "scratch change", |tx| {
                let ContentRef::Page(page) = content_at(tx, "/scratch") else {
                    panic!("/scratch is a page");
                };
                tx.update(page, |p| p.meta.title.push('!')).unwrap();
            });
            text = text.replace("{tid}", &format!("{:016x}", tid.0));
        }
        text
    }

    /// Asks `call` on `path` as every principal, expecting `expected` (in the column
    /// order of the module documentation); mismatches are collected.
    fn check(&mut self, call: Call, path: &str, expected: [u16; 7]) {
        let mut failures = Vec::new();
        for (p, want) in self.principals.iter().zip(expected) {
            let url = self.fill(path, p.name);
            let basic = p.basic.as_ref().map(|(l, w)| (l.as_str(), w.as_str()));
            let json = |body: &str| -> Value {
                serde_json::from_str(&self.fill(body, p.name)).expect("a JSON body in the row")
            };
            let response = match call {
                Get => p.browser.get(&url),
                Post(fields) => {
                    let filled: Vec<(String, String)> = fields
                        .iter()
                        .map(|(k, v)| (k.to_string(), self.fill(v, p.name)))
                        .collect();
                    let borrowed: Vec<(&str, &str)> = filled
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    p.browser.post(&url, &borrowed)
                }
                ApiGet => api(&self.site, "GET", &url, basic, None),
                ApiPost(body) => api(&self.site, "POST", &url, basic, Some(&json(body))),
                ApiPatch(body) => api(&self.site, "PATCH", &url, basic, Some(&json(body))),
                ApiDelete => api(&self.site, "DELETE", &url, basic, None),
            };
            let got = response.status().as_u16();
            if got != want {
                let text = response.text().unwrap_or_default();
                let text: String = text.chars().take(300).collect();
                failures.push(format!(
                    "{call:?} {url} as {}: expected {want}, got {got}: {text}",
                    p.name
                ));
            }
        }
        self.failures.extend(failures);
    }
}

const ALL_200: [u16; 7] = [200; 7];

#[test]
fn every_view_and_api_call_answers_each_principal_as_the_grants_say() {
    let mut m = Matrix::setup();
    // Rows: (call, path, expected status for each column).
    #[rustfmt::skip]
    let rows: &[(Call, &str, [u16; 7])] = &[
        //                                               anon member editor manager boot docsed pat
        // Default views and `view`.
        (Get, "/",                                        ALL_200),
        (Get, "/@@view",                                  ALL_200),
        (Get, "/docs/page",                               ALL_200),
        (Get, "/docs/page/@@view",                        ALL_200),
        (Get, "/private/page",                            [404, 403, 200, 200, 200, 403, 200]),
        (Get, "/nothing-here",                            [404; 7]),
        // What a visitor may not see answers as what does not exist (any view).
        (Get, "/private/nothing-here",                    [404, 404, 404, 404, 404, 404, 404]),
        (Get, "/private/page/@@no-such-view",             [404; 7]),
        (Post(&[]), "/private/page",                      [404, 405, 405, 405, 405, 405, 405]),
        (Get, "/docs/page/@@no-such-view",                [404; 7]),
        // Folder contents: View to see; each action checks its own permission.
        (Get, "/docs/@@contents",                         ALL_200),
        (Get, "/private/@@contents",                      [404, 403, 200, 200, 200, 403, 200]),
        // (Folders only; on other objects the table answers 405.)
        (Get, "/docs/page/@@contents",                    [405; 7]),
        (Post(&[("action", "move_top"), ("ids", "page")]),
              "/docs/@@contents",                         [401, 403, 303, 303, 303, 303, 403]),
        (Post(&[("action", "delete"), ("ids", "del-{who}")]),
              "/@@contents",                              [401, 403, 303, 303, 303, 403, 403]),
        // Add.
        (Get, "/docs/@@add?type=Page",                    [401, 403, 200, 200, 200, 200, 403]),
        (Get, "/@@add?type=Folder",                       [401, 403, 200, 200, 200, 403, 403]),
        (Post(&[("type", "Page"), ("id", "form-{who}"), ("title", "Added")]),
              "/docs/@@add",                              [401, 403, 303, 303, 303, 303, 403]),
        (Post(&[("type", "Page"), ("id", "form-{who}"), ("title", "Added")]),
              "/private/@@add",                           [404, 403, 303, 303, 303, 403, 403]),
        // Edit.
        (Get, "/docs/page/@@edit",                        [401, 403, 200, 200, 200, 200, 403]),
        (Get, "/page/@@edit",                             [401, 403, 200, 200, 200, 403, 403]),
        (Post(&[("title", "Edited by {who}")]),
              "/docs/page/@@edit",                        [401, 403, 303, 303, 303, 303, 403]),
        (Post(&[("title", "Edited by {who}")]),
              "/private/page/@@edit",                     [404, 403, 303, 303, 303, 403, 403]),
        // Security.
        (Get, "/docs/@@security",                         [401, 403, 403, 200, 200, 403, 403]),
        (Post(&[]), "/docs/@@security",                   [401, 403, 403, 303, 303, 403, 403]),
        // History: ViewHistory to see, Edit and ViewHistory to revert.
        (Get, "/docs/page/@@history",                     [401, 403, 200, 200, 200, 200, 403]),
        (Get, "/docs/page/@@history?serial={serial}",     [401, 403, 200, 200, 200, 200, 403]),
        (Get, "/private/page/@@history",                  [404, 403, 200, 200, 200, 403, 403]),
        (Post(&[("serial", "{serial}")]),
              "/docs/page/@@history",                     [401, 403, 303, 303, 303, 303, 403]),
        // Undo: a view of the root only; elsewhere there is no such view (404).
        (Get, "/@@undo",                                  [401, 403, 403, 200, 200, 403, 403]),
        (Get, "/docs/@@undo",                             [404; 7]),
        (Get, "/docs/page/@@undo",                        [404; 7]),
        (Post(&[("undo", "{tid}")]), "/docs/@@undo",      [404; 7]),
        (Post(&[("undo", "{tid}")]), "/@@undo",           [401, 403, 403, 303, 303, 403, 403]),
        // Users: the root only (as for undo).
        (Get, "/@@users",                                 [401, 403, 403, 200, 200, 403, 403]),
        (Get, "/docs/@@users",                            [404; 7]),
        (Post(&[("action", "add_group"), ("id", "group-{who}"), ("title", "G")]),
              "/@@users",                                 [401, 403, 403, 303, 303, 403, 403]),
        // Public views.
        (Get, "/@@login",                                 ALL_200),
        (Post(&[("login", "nobody-{who}"), ("password", "wrong")]),
              "/@@login",                                 ALL_200),
        (Get, "/@@health",                                ALL_200),
        (Get, "/@@metrics",                               ALL_200),
        // The JSON API.
        (ApiGet, "/",                                     ALL_200),
        (ApiGet, "/docs/page",                            ALL_200),
        (ApiGet, "/private",                              [404, 403, 200, 200, 200, 403, 200]),
        (ApiPost(r#"{"@type": "Page", "id": "api-{who}", "title": "A"}"#),
                 "/docs",                                 [401, 403, 201, 201, 201, 201, 403]),
        (ApiPost(r#"{"@type": "Folder", "id": "api-{who}", "title": "A"}"#),
                 "/private",                              [404, 403, 201, 201, 201, 403, 403]),
        (ApiPost(r#"{"@type": "Page", "title": "A"}"#),
                 "/docs/page",                            [405; 7]),
        (ApiPatch(r#"{"title": "Patched by {who}"}"#),
                  "/docs/page",                           [401, 403, 204, 204, 204, 204, 403]),
        (ApiPatch(r#"{"description": "Patched by {who}"}"#),
                  "/private",                             [404, 403, 204, 204, 204, 403, 403]),
        (ApiDelete, "/docs/del-{who}",                    [401, 403, 204, 204, 204, 204, 403]),
        (ApiDelete, "/private/del-{who}",                 [404, 403, 204, 204, 204, 403, 403]),
        (ApiDelete, "/",                                  [401, 403, 400, 400, 400, 403, 403]),
        // Container rules: removing, moving out and renaming need the right on the
        // folder (docsed manages each box, not the root); moving in needs Add on the
        // target.
        (ApiDelete, "/apibox-{who}",                      [401, 403, 204, 204, 204, 403, 403]),
        (Post(&[("action", "delete"), ("ids", "delbox-{who}")]),
              "/@@contents",                              [401, 403, 303, 303, 303, 403, 403]),
        (Post(&[("action", "rename"), ("ids", "renbox-{who}"), ("new_ids", "renamed-{who}")]),
              "/@@contents",                              [401, 403, 303, 303, 303, 403, 403]),
        (Post(&[("action", "rename"), ("ids", "rn-{who}"), ("new_ids", "rn2-{who}")]),
              "/docs/@@contents",                         [401, 403, 303, 303, 303, 303, 403]),
        (Post(&[("action", "cut"), ("ids", "cutbox-{who}")]),
              "/@@contents",                              [401, 403, 303, 303, 303, 403, 403]),
        (Post(&[("action", "cut"), ("ids", "mv-{who}")]),
              "/docs/@@contents",                         [401, 403, 303, 303, 303, 303, 403]),
        // docsed may take /docs/mv-docsed out of /docs, but not put it into the root…
        (Post(&[("action", "paste")]), "/@@contents",     [401, 403, 303, 303, 303, 403, 403]),
        // … only into a folder where it may add (the others' clipboards are empty now).
        (Post(&[("action", "paste")]), "/docs/sub/@@contents",
                                                          [401, 403, 400, 400, 400, 303, 403]),
        // Last, as it ends the browsers' sessions.
        (Post(&[]), "/@@logout",                          [303; 7]),
    ];
    for (call, path, expected) in rows {
        m.check(*call, path, *expected);
    }
    assert!(
        m.failures.is_empty(),
        "{} mismatches:\n{}",
        m.failures.len(),
        m.failures.join("\n")
    );
}
