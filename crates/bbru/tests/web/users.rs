//! `/@@users`: adding, changing and deleting users and groups, as a manager sees it; and
//! the helpers the other modules use to make non-admin users (through this very view)
//! and grant them roles (through `@@security`).

use crate::{Browser, Site, start, start_keeping_bootstrap};

/// The URL of `view` of the object at `path` ("" or "/" for the root).
pub fn view(path: &str, view: &str) -> String {
    let path = path.trim_end_matches('/');
    format!("{path}/@@{view}")
}

/// The description of the newest transaction (the audit trail).
pub fn last_note(site: &Site) -> (String, String) {
    let log = site.db.storage().undo_log(0, 1).unwrap();
    (
        String::from_utf8_lossy(&log[0].user).into_owned(),
        String::from_utf8_lossy(&log[0].description).into_owned(),
    )
}

/// Adds the user `login` through `/@@users` (password `<login>-password`).
pub fn add_user(admin: &Browser, login: &str) {
    let password = format!("{login}-password");
    let r = admin.post(
        "/@@users",
        &[
            ("action", "add_user"),
            ("login", login),
            ("title", &format!("User {login}")),
            ("password", &password),
            ("password2", &password),
        ],
    );
    assert_eq!(r.status(), 303, "add user {login}: {}", r.text().unwrap());
}

/// Sets `principal`'s `role` to `setting` (allow / deny / unset) on the object at `path`
/// through its `@@security` form.
pub fn grant(admin: &Browser, path: &str, principal: &str, role: &str, setting: &str) {
    let r = admin.post(
        &view(path, "security"),
        &[
            ("new_principal", principal),
            (&format!("new.{role}"), setting),
        ],
    );
    assert_eq!(
        r.status(),
        303,
        "grant {principal} {role} {setting} on {path}: {}",
        r.text().unwrap()
    );
}

/// A browser logged in as `login` (added with [`add_user`]).
pub fn logged_in(site: &Site, login: &str) -> Browser {
    let b = site.browser();
    b.login(login, &format!("{login}-password"));
    b
}

/// Whether a page shows `login` as the logged-in user.
pub fn shows_logged_in(html: &str, login: &str) -> bool {
    html.contains(&format!("<strong id=\"user\">{login}</strong>"))
}

#[test]
fn a_manager_adds_users_who_can_then_log_in() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    assert_eq!(
        last_note(&site),
        ("admin (bootstrap)".into(), "add user bob".into())
    );
    let html = admin.page("/@@users");
    assert!(html.contains("<code>bob</code>"), "{html}");
    assert!(html.contains("User bob"), "{html}");
    assert!(html.contains("href=\"/@@security\""), "{html}");
    let bob = logged_in(&site, "bob");
    assert!(shows_logged_in(&bob.page("/"), "bob"));
    // Wrong inputs are refused with a sentence saying why.
    let refused = |fields: &[(&str, &str)], why: &str| {
        let mut all = vec![("action", "add_user")];
        all.extend_from_slice(fields);
        let r = admin.post("/@@users", &all);
        assert_eq!(r.status(), 400, "{fields:?}");
        let text = r.text().unwrap();
        assert!(text.contains(why), "{fields:?}: {text}");
    };
    let ok = [("password", "long-enough"), ("password2", "long-enough")];
    refused(
        &[&[("login", "Bob!")][..], &ok].concat(),
        "lower-case letters",
    );
    refused(
        &[&[("login", &"a".repeat(65) as &str)][..], &ok].concat(),
        "1 to 64",
    );
    refused(&[&[("login", "bob")][..], &ok].concat(), "already exists");
    refused(
        &[&[("login", "admin")][..], &ok].concat(),
        "bootstrap manager",
    );
    refused(
        &[
            ("login", "carol"),
            ("password", "short"),
            ("password2", "short"),
        ],
        "at least 8 characters",
    );
    refused(
        &[
            ("login", "carol"),
            ("password", "long-enough"),
            ("password2", "long-enougH"),
        ],
        "differ",
    );
    refused(
        &[&[("login", "carol"), ("groups", "nope")][..], &ok].concat(),
        "no group",
    );
    let r = admin.post("/@@users", &[("action", "explode")]);
    assert_eq!(r.status(), 400);
    assert!(!admin.page("/@@users").contains("<code>carol</code>"));
}

#[test]
fn only_user_managers_see_the_users_page() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    grant(&admin, "/", "user:bob", "Editor", "allow");
    let bob = logged_in(&site, "bob");
    assert_eq!(bob.get("/@@users").status(), 403);
    let r = bob.post(
        "/@@users",
        &[("action", "add_group"), ("id", "mine"), ("title", "Mine")],
    );
    assert_eq!(r.status(), 403);
    assert_eq!(site.browser().get("/@@users").status(), 401);
    // Only on the root: a Manager of a folder manages no users.
    admin.add("", "Folder", "docs", "Docs", "");
    assert_eq!(admin.get("/docs/@@users").status(), 404);
    grant(&admin, "/docs", "user:bob", "Manager", "allow");
    assert_eq!(bob.get("/docs/@@users").status(), 404);
    let r = bob.post(
        "/docs/@@users",
        &[("action", "add_group"), ("id", "mine"), ("title", "Mine")],
    );
    assert_eq!(r.status(), 404);
    // A local Manager may.
    grant(&admin, "/", "user:bob", "Manager", "allow");
    assert_eq!(bob.get("/@@users").status(), 200);
}

#[test]
fn changing_a_password_logs_the_old_sessions_out() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let bob = logged_in(&site, "bob");
    let elsewhere = logged_in(&site, "bob");
    assert!(shows_logged_in(&bob.page("/"), "bob"));
    let r = admin.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "bob"),
            ("password", "brand-new-pw"),
            ("password2", "brand-new-pw"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(last_note(&site).1, "change the password of bob");
    for b in [&bob, &elsewhere] {
        let html = b.page("/");
        assert!(!shows_logged_in(&html, "bob"), "{html}");
        assert!(html.contains("Log in"));
    }
    let r = bob.post(
        "/@@login",
        &[("login", "bob"), ("password", "bob-password")],
    );
    assert!(r.text().unwrap().contains("Wrong login or password"));
    bob.login("bob", "brand-new-pw");
    assert!(shows_logged_in(&bob.page("/"), "bob"));
    // Too short, or typed differently: refused.
    let r = admin.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "bob"),
            ("password", "x"),
            ("password2", "x"),
        ],
    );
    assert_eq!(r.status(), 400);
    let r = admin.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "nobody"),
            ("password", "long-enough"),
            ("password2", "long-enough"),
        ],
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn a_user_changing_their_own_password_stays_logged_in() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "carol");
    grant(&admin, "/", "user:carol", "Manager", "allow");
    let carol = logged_in(&site, "carol");
    let r = carol.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "carol"),
            ("password", "carol-new-pw"),
            ("password2", "carol-new-pw"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert!(shows_logged_in(&carol.page("/@@users"), "carol"));
}

#[test]
fn groups_are_added_given_members_and_deleted() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    add_user(&admin, "bob");
    let r = admin.post(
        "/@@users",
        &[
            ("action", "add_group"),
            ("id", "editors"),
            ("title", "The editors"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(last_note(&site).1, "add group editors");
    for (id, why) in [
        ("editors", "already exists"),
        ("everybody", "built-in"),
        ("Ed", "lower-case"),
    ] {
        let r = admin.post("/@@users", &[("action", "add_group"), ("id", id)]);
        assert_eq!(r.status(), 400, "{id}");
        assert!(r.text().unwrap().contains(why), "{id}");
    }
    let r = admin.post(
        "/@@users",
        &[
            ("action", "update_user"),
            ("login", "bob"),
            ("title", "Bob Builder"),
            ("groups", "editors"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(last_note(&site).1, "update user bob");
    let html = admin.page("/@@users");
    assert!(
        html.contains("<td>Bob Builder</td><td>editors</td>"),
        "{html}"
    );
    assert!(html.contains("<td>The editors</td><td>bob</td>"), "{html}");
    // The group gets a role; its member holds it.
    grant(&admin, "/docs", "group:editors", "Editor", "allow");
    grant(&admin, "/", "group:editors", "Member", "allow");
    let bob = logged_in(&site, "bob");
    assert_eq!(bob.get("/docs/@@edit").status(), 200);
    let r = admin.post("/@@users", &[("action", "delete_group"), ("id", "editors")]);
    assert_eq!(r.status(), 303);
    assert_eq!(last_note(&site).1, "delete group editors");
    let html = admin.page("/@@users");
    assert!(!html.contains("id=\"group-editors\""), "{html}");
    assert!(html.contains("<td>Bob Builder</td><td></td>"), "{html}");
    assert_eq!(bob.get("/docs/@@edit").status(), 403);
    // The root's grants of the group are gone with it.
    assert!(!admin.page("/@@security").contains("group:editors"));
    let r = admin.post("/@@users", &[("action", "delete_group"), ("id", "editors")]);
    assert_eq!(r.status(), 400);
}

#[test]
fn deleting_a_user_ends_their_sessions_and_root_grants() {
    let site = start_keeping_bootstrap();
    let admin = site.admin();
    add_user(&admin, "carol");
    add_user(&admin, "dave");
    grant(&admin, "/", "user:carol", "Manager", "allow");
    grant(&admin, "/", "user:dave", "Manager", "allow");
    let carol = logged_in(&site, "carol");
    // Nobody deletes their own account.
    let r = carol.post("/@@users", &[("action", "delete_user"), ("login", "carol")]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("your own account"));
    let dave = logged_in(&site, "dave");
    let r = carol.post("/@@users", &[("action", "delete_user"), ("login", "dave")]);
    assert_eq!(r.status(), 303);
    assert_eq!(
        last_note(&site),
        ("carol".into(), "delete user dave".into())
    );
    assert!(!shows_logged_in(&dave.page("/"), "dave"));
    assert!(!carol.page("/@@security").contains("user:dave"));
    assert!(!carol.page("/@@users").contains("<code>dave</code>"));
    // Re-created with the same login, the old session still does not count.
    add_user(&admin, "dave");
    assert!(!shows_logged_in(&dave.page("/"), "dave"));
}
