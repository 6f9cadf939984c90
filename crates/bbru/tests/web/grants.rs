//! `@@security`: local grants given, denied and unset through the form, inherited along
//! the containment path, unknown principals refused, and the guard that keeps a manager
//! from taking away their own right to manage security.

use crate::users::{add_user, grant, last_note, logged_in, view};
use crate::{start, start_keeping_bootstrap};

#[test]
fn grants_on_a_folder_apply_inside_it_until_denied_further_down() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    admin.add("/docs", "Page", "guide", "Guide", "text");
    admin.add("", "Page", "other", "Other", "text");
    add_user(&admin, "bob");
    let bob = logged_in(&site, "bob");
    assert_eq!(bob.get("/docs/guide/@@edit").status(), 403);

    grant(&admin, "/docs", "user:bob", "Editor", "allow");
    assert_eq!(
        last_note(&site),
        ("admin (bootstrap)".into(), "change grants on /docs".into())
    );
    assert_eq!(bob.get("/docs/guide/@@edit").status(), 200);
    assert_eq!(bob.get("/other/@@edit").status(), 403);

    // The folder's form shows the setting as a checked radio button.
    let html = admin.page("/docs/@@security");
    assert!(html.contains("user:bob (User bob)"), "{html}");
    assert!(
        html.contains("name=\"grant.Editor.user:bob\" value=\"allow\" checked"),
        "{html}"
    );
    // The page inside shows it as inherited, and the root's Member grant too.
    let html = admin.page("/docs/guide/@@security");
    let inherited = &html[html.find("Inherited settings").unwrap()..];
    assert!(inherited.contains("<code>/docs</code>"), "{inherited}");
    assert!(inherited.contains("user:bob"), "{inherited}");
    assert!(inherited.contains("group:authenticated"), "{inherited}");

    // Denied on the page: the nearest setting wins.
    grant(&admin, "/docs/guide", "user:bob", "Editor", "deny");
    assert_eq!(bob.get("/docs/guide/@@edit").status(), 403);
    assert_eq!(bob.get("/docs/@@edit").status(), 200);
    // Unset through the row of the existing setting.
    let r = admin.post(
        "/docs/guide/@@security",
        &[("grant.Editor.user:bob", "unset")],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(bob.get("/docs/guide/@@edit").status(), 200);
    assert!(
        !admin
            .page("/docs/guide/@@security")
            .contains("grant.Editor.user:bob")
    );
    // Posting nothing new changes nothing (and makes no transaction).
    let before = last_note(&site);
    let r = admin.post("/docs/@@security", &[("grant.Editor.user:bob", "allow")]);
    assert_eq!(r.status(), 303);
    assert_eq!(last_note(&site), before);
}

#[test]
fn the_security_page_shows_the_roles_held_here() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    add_user(&admin, "carol");
    grant(&admin, "/docs", "user:carol", "Manager", "allow");
    let carol = logged_in(&site, "carol");
    let html = carol.page("/docs/@@security");
    assert!(
        html.contains("Your roles here: <strong>Manager</strong>, <strong>Member</strong>."),
        "{html}"
    );
    // Not a manager at the root: no security tab there.
    assert_eq!(carol.get("/@@security").status(), 403);
    // Managing users is not granted by a Manager role below the root either.
    assert_eq!(carol.get("/@@users").status(), 403);
}

#[test]
fn unknown_principals_and_roles_are_refused() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let cases: [&[(&str, &str)]; 5] = [
        &[("new_principal", "user:nobody"), ("new.Editor", "allow")],
        &[
            ("new_principal", "bootstrap:admin"),
            ("new.Manager", "allow"),
        ],
        &[("grant.Editor.user:nobody", "allow")],
        &[("grant.Anonymous.user:bob", "allow")],
        &[("grant.Editor.user:bob", "maybe")],
    ];
    for fields in cases {
        let r = admin.post("/@@security", fields);
        assert_eq!(r.status(), 400, "{fields:?}");
        let text = r.text().unwrap();
        assert!(
            text.contains("not a user or group")
                || text.contains("not a role")
                || text.contains("not a setting"),
            "{fields:?}: {text}"
        );
    }
    assert!(!admin.page("/@@security").contains("user:nobody"));
    // Built-in groups and existing groups are fine.
    grant(&admin, "/", "group:everybody", "Member", "deny");
    let r = admin.post("/@@users", &[("action", "add_group"), ("id", "staff")]);
    assert_eq!(r.status(), 303);
    grant(&admin, "/", "group:staff", "Editor", "allow");
    let html = admin.page("/@@security");
    assert!(html.contains("group:staff"), "{html}");
    // The site is no longer public.
    assert_eq!(site.browser().get("/").status(), 401);
}

#[test]
fn nobody_takes_away_their_own_right_to_manage_security() {
    let site = start_keeping_bootstrap();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    add_user(&admin, "carol");
    grant(&admin, "/", "user:carol", "Manager", "allow");
    let carol = logged_in(&site, "carol");
    for (path, fields) in [
        (
            "/docs",
            vec![("new_principal", "user:carol"), ("new.Manager", "deny")],
        ),
        ("/", vec![("grant.Manager.user:carol", "unset")]),
        ("/", vec![("grant.Manager.user:carol", "deny")]),
    ] {
        let r = carol.post(&view(path, "security"), &fields);
        assert_eq!(r.status(), 400, "{path} {fields:?}");
        assert!(
            r.text().unwrap().contains("take away your own right"),
            "{path} {fields:?}"
        );
    }
    assert_eq!(carol.get("/docs/@@security").status(), 200);
    // Changes that leave her Manager are fine.
    grant(&carol, "/docs", "group:authenticated", "Member", "deny");
    assert_eq!(
        last_note(&site),
        ("carol".into(), "change grants on /docs".into())
    );
    // The bootstrap manager may change anything (it holds every role anyway).
    grant(&admin, "/", "user:carol", "Manager", "unset");
    assert_eq!(carol.get("/@@security").status(), 403);
}
