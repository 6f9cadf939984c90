//! Object history (`@@history`: versions shown read-only, revert) and the site-wide undo
//! (`/@@undo`).

use bbru::model::Kind;
use bbru::security::{Role, Setting};

use crate::matrix::{add_item, add_user, api, browser_of, set_grant};
use crate::{ADMIN, Site, start};

/// The serials linked from a history page, newest first.
fn serials(html: &str) -> Vec<String> {
    html.split("?serial=")
        .skip(1)
        .map(|rest| rest.chars().take(16).collect())
        .collect()
}

/// The user and description of the newest transaction.
fn last_note(site: &Site) -> (String, String) {
    let log = site.db.storage().undo_log(0, 1).unwrap();
    (
        String::from_utf8_lossy(&log[0].user).into_owned(),
        String::from_utf8_lossy(&log[0].description).into_owned(),
    )
}

/// The tids (as the undo form writes them) of the transactions described `description`,
/// newest first.
fn tids_of(site: &Site, description: &str) -> Vec<String> {
    site.db
        .storage()
        .undo_log(0, 100)
        .unwrap()
        .iter()
        .filter(|e| e.description == description.as_bytes())
        .map(|e| format!("{:016x}", e.tid.0))
        .collect()
}

fn tid_of(site: &Site, description: &str) -> String {
    tids_of(site, description)
        .into_iter()
        .next()
        .unwrap_or_else(|| panic!("no transaction {description:?}"))
}

#[test]
fn an_old_version_is_shown_read_only_and_can_be_reverted() {
    let site = start();
    let admin = site.admin();
    let r = admin.add("", "Page", "p", "First title", "The **first** body");
    assert_eq!(r.status(), 303);
    let r = admin.post_multipart(
        "/p/@@edit",
        &[
            ("title", "Second title"),
            ("description", "Second description"),
            ("body", "The second body"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);

    let html = admin.page("/p/@@history");
    assert!(html.contains("edit /p"), "{html}");
    assert!(html.contains("add Page /p"), "{html}");
    assert!(html.contains("admin (bootstrap)"), "{html}");
    let versions = serials(&html);
    assert_eq!(versions.len(), 2, "{html}");
    let first = &versions[1];

    let version = admin.page(&format!("/p/@@history?serial={first}"));
    assert!(
        version.contains("You are looking at the version of"),
        "{version}"
    );
    assert!(version.contains("add Page /p"), "{version}");
    assert!(version.contains("First title"), "{version}");
    assert!(version.contains("<strong>first</strong>"), "{version}");
    assert!(version.contains("Revert to this version"), "{version}");
    // Looking changes nothing.
    assert!(admin.page("/p").contains("Second title"));

    let r = admin.post("/p/@@history", &[("serial", first)]);
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.starts_with("/p?notice=reverted"), "{location}");
    let html = admin.page("/p");
    assert!(html.contains("<h1>First title</h1>"), "{html}");
    assert!(html.contains("<strong>first</strong>"), "{html}");
    assert!(!html.contains("Second description"), "{html}");
    let (user, what) = last_note(&site);
    assert_eq!(user, format!("{} (bootstrap)", ADMIN.0));
    assert!(
        what.starts_with("revert /p to ") && what.ends_with(" UTC"),
        "{what}"
    );
    // The revert is a version of its own (which can be reverted or undone in turn).
    assert_eq!(serials(&admin.page("/p/@@history")).len(), 3);

    // Versions that are not.
    assert_eq!(admin.get("/p/@@history?serial=xyz").status(), 400);
    assert_eq!(
        admin.get("/p/@@history?serial=0000000000000001").status(),
        404
    );
    let r = admin.post("/p/@@history", &[("serial", "0000000000000001")]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("has no version"));
    assert_eq!(admin.post("/p/@@history", &[]).status(), 400);
}

#[test]
fn reverting_a_file_brings_back_its_bytes() {
    let site = start();
    let admin = site.admin();
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Notes")],
        Some(("notes.txt", "text/plain", b"first".to_vec())),
    );
    assert_eq!(r.status(), 303);
    let r = admin.post_multipart(
        "/notes.txt/@@edit",
        &[("title", "Notes")],
        Some(("other.txt", "text/plain", b"second".to_vec())),
    );
    assert_eq!(r.status(), 303);
    assert_eq!(admin.get("/notes.txt").text().unwrap(), "second");
    let versions = serials(&admin.page("/notes.txt/@@history"));
    let version = admin.page(&format!("/notes.txt/@@history?serial={}", versions[1]));
    assert!(
        version.contains("notes.txt (text/plain, 5 bytes)"),
        "{version}"
    );
    let r = admin.post("/notes.txt/@@history", &[("serial", &versions[1])]);
    assert_eq!(r.status(), 303);
    assert_eq!(admin.get("/notes.txt").text().unwrap(), "first");
}

#[test]
fn reverting_a_folder_restores_its_metadata_not_its_deleted_items() {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Folder", "docs", "Docs", "").status(), 303);
    assert_eq!(admin.add("/docs", "Page", "a", "A", "").status(), 303);
    let r = admin.post_multipart("/docs/@@edit", &[("title", "Documentation")], None);
    assert_eq!(r.status(), 303);
    let r = api(&site, "DELETE", "/docs/a", Some(ADMIN), None);
    assert_eq!(r.status(), 204);

    let versions = serials(&admin.page("/docs/@@history"));
    assert_eq!(versions.len(), 2);
    let version = admin.page(&format!("/docs/@@history?serial={}", versions[1]));
    assert!(
        version.contains("does not bring back items deleted since"),
        "{version}"
    );
    let r = admin.post("/docs/@@history", &[("serial", &versions[1])]);
    assert_eq!(r.status(), 303);
    let location = r.headers()["location"].to_str().unwrap().to_owned();
    assert!(location.ends_with("?notice=reverted-folder"), "{location}");
    assert!(admin.page(&location).contains("use Undo for them"));
    assert!(admin.page("/docs").contains("<h1>Docs</h1>"));
    assert_eq!(admin.get("/docs/a").status(), 404);
    // The site-wide undo of the deletion does bring it back.
    let r = admin.post("/@@undo", &[("undo", &tid_of(&site, "delete /docs/a"))]);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    assert_eq!(admin.get("/docs/a").status(), 200);
}

#[test]
fn history_needs_view_history_and_revert_needs_edit() {
    let site = start();
    add_item(&site, "/", Kind::Page, "p", "P");
    add_user(&site, "mia");
    add_user(&site, "eddie");
    set_grant(&site, "/p", "user:eddie", Role::Editor, Setting::Allow);
    let anonymous = site.browser();
    assert_eq!(anonymous.get("/p/@@history").status(), 401);
    let mia = browser_of(&site, "mia");
    assert_eq!(mia.get("/p/@@history").status(), 403);
    let eddie = browser_of(&site, "eddie");
    let versions = serials(&eddie.page("/p/@@history"));
    assert_eq!(
        mia.post("/p/@@history", &[("serial", &versions[0])])
            .status(),
        403
    );
    let version = mia.get(&format!("/p/@@history?serial={}", versions[0]));
    assert_eq!(version.status(), 403);
    let version = eddie.page(&format!("/p/@@history?serial={}", versions[0]));
    assert!(version.contains("Revert to this version"));
    assert_eq!(
        eddie
            .post("/p/@@history", &[("serial", &versions[0])])
            .status(),
        303
    );
    // The tab is shown to those who may use it.
    assert!(eddie.page("/p").contains("/p/@@history"));
    assert!(!mia.page("/p").contains("/p/@@history"));
}

#[test]
fn undo_an_edit_then_an_add() {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Page", "p", "One", "").status(), 303);
    let r = admin.post_multipart("/p/@@edit", &[("title", "Two")], None);
    assert_eq!(r.status(), 303);

    let html = admin.page("/@@undo");
    let edit = tid_of(&site, "edit /p");
    assert!(html.contains(&format!("value=\"{edit}\"")), "{html}");
    assert!(html.contains("add Page /p"), "{html}");
    let r = admin.post("/@@undo", &[("undo", &edit)]);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/@@undo?notice=")
    );
    assert!(admin.page("/p").contains("<h1>One</h1>"));
    assert_eq!(
        last_note(&site),
        (
            format!("{} (bootstrap)", ADMIN.0),
            "undo edit /p".to_owned()
        )
    );

    assert_eq!(admin.add("", "Page", "q", "Q", "").status(), 303);
    assert_eq!(admin.get("/q").status(), 200);
    let r = admin.post("/@@undo", &[("undo", &tid_of(&site, "add Page /q"))]);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    assert_eq!(admin.get("/q").status(), 404);
    assert!(!admin.page("/").contains("href=\"/q\""));
    assert_eq!(last_note(&site).1, "undo add Page /q");
}

#[test]
fn an_undo_conflicting_with_later_changes_is_refused_and_changes_nothing() {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Page", "p", "One", "").status(), 303);
    for title in ["Two", "Three"] {
        let r = admin.post_multipart("/p/@@edit", &[("title", title)], None);
        assert_eq!(r.status(), 303);
    }
    let edits = tids_of(&site, "edit /p");
    let (newest, older) = (&edits[0], &edits[1]);
    let before = site.db.storage().last_transaction();
    let r = admin.post("/@@undo", &[("undo", older)]);
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("Nothing was undone"), "{text}");
    assert!(text.contains("edit /p"), "{text}");
    assert!(text.contains("later transactions"), "{text}");
    assert_eq!(site.db.storage().last_transaction(), before);
    assert!(admin.page("/p").contains("<h1>Three</h1>"));

    // Together with the later change it can be undone, in one transaction.
    let r = admin.post("/@@undo", &[("undo", older), ("undo", newest)]);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    assert!(admin.page("/p").contains("<h1>One</h1>"));
    assert_eq!(last_note(&site).1, "undo edit /p; undo edit /p");

    // The creation of the site is never undone.
    let r = admin.post("/@@undo", &[("undo", &tid_of(&site, "create the site"))]);
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(text.contains("created the database or the site"), "{text}");
    // Nothing chosen, or something that is no transaction.
    assert_eq!(admin.post("/@@undo", &[]).status(), 400);
    assert_eq!(admin.post("/@@undo", &[("undo", "nonsense")]).status(), 400);
    assert_eq!(
        admin
            .post("/@@undo", &[("undo", "0000000000000001")])
            .status(),
        400
    );
}

#[test]
fn undo_is_for_those_granted_it_at_the_root() {
    let site = start();
    add_user(&site, "eddie");
    set_grant(&site, "/", "user:eddie", Role::Editor, Setting::Allow);
    let eddie = browser_of(&site, "eddie");
    assert_eq!(eddie.get("/@@undo").status(), 403);
    assert_eq!(site.browser().get("/@@undo").status(), 401);
    assert_eq!(site.admin().get("/@@undo").status(), 200);
}
