//! Publication states: a private item and everything under it are missing (404) for
//! whoever may not edit it, absent from listings and the JSON API; `@@publish` changes
//! the state (Publish permission, CSRF token), noted in the transaction log.

use crate::users::{add_user, grant, logged_in};
use crate::{Browser, Site, start};

/// Adds a page through the form with the state `state` ("" sends no state field).
fn add_page(b: &Browser, folder: &str, id: &str, state: &str) {
    let mut fields = vec![
        ("type", "Page"),
        ("id", id),
        ("title", "Draft"),
        ("body", "Not yet"),
    ];
    if !state.is_empty() {
        fields.push(("state", state));
    }
    let r = b.post_multipart(&format!("{folder}/@@add"), &fields, None);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
}

fn status(b: &Browser, path: &str) -> u16 {
    b.get(path).status().as_u16()
}

/// A site with `/docs` and an editor `ed` of `/docs`, a member `mo`.
fn site_with_editor() -> (Site, Browser, Browser, Browser) {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Folder", "docs", "Docs", "").status(), 303);
    add_user(&admin, "ed");
    add_user(&admin, "mo");
    grant(&admin, "/docs", "user:ed", "Editor", "allow");
    let ed = logged_in(&site, "ed");
    let mo = logged_in(&site, "mo");
    (site, admin, ed, mo)
}

#[test]
fn a_private_page_is_missing_for_readers_until_an_editor_publishes_it() {
    let (site, _admin, ed, mo) = site_with_editor();
    let anon = site.browser();
    add_page(&ed, "/docs", "draft", "private");

    // Editors see it, with its state and the button to publish.
    let html = ed.page("/docs/draft");
    assert!(html.contains("data-state=\"private\""), "{html}");
    assert!(html.contains("Publish"));
    // Readers get what a missing item gives, whatever the view.
    for b in [&anon, &mo] {
        assert_eq!(status(b, "/docs/draft"), 404);
        assert_eq!(status(b, "/docs/draft/@@history"), 404);
        assert_eq!(status(b, "/docs/draft/@@edit"), 404);
        assert!(!b.page("/docs").contains("/docs/draft"));
        let json: serde_json::Value = b
            .client
            .get(b.url("/docs"))
            .header("Accept", "application/json")
            .send()
            .unwrap()
            .json()
            .unwrap();
        assert_eq!(json["items_total"], 0, "{json}");
    }
    let listing = ed.page("/docs");
    assert!(listing.contains("/docs/draft"));
    assert!(
        listing.contains("<small class=\"state-private\">private</small>"),
        "{listing}"
    );

    // A reader may not publish it (it does not exist for them).
    assert_eq!(
        mo.post("/docs/draft/@@publish", &[("state", "published")])
            .status(),
        404
    );
    // Without the CSRF token, nothing happens.
    let r = ed
        .client
        .post(ed.url("/docs/draft/@@publish"))
        .form(&[("state", "published")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(status(&anon, "/docs/draft"), 404);

    let r = ed.post("/docs/draft/@@publish", &[("state", "published")]);
    assert_eq!(r.status(), 303);
    assert_eq!(status(&anon, "/docs/draft"), 200);
    assert!(anon.page("/docs").contains("/docs/draft"));
    assert!(!anon.page("/docs/draft").contains("publication-state"));
    let log = site.db.storage().undo_log(0, 1).unwrap();
    assert_eq!(log[0].user, b"ed");
    assert_eq!(log[0].description, b"publish /docs/draft");

    // Retracted: missing again.
    assert_eq!(
        ed.post("/docs/draft/@@publish", &[("state", "private")])
            .status(),
        303
    );
    assert_eq!(status(&anon, "/docs/draft"), 404);
    let log = site.db.storage().undo_log(0, 1).unwrap();
    assert_eq!(log[0].description, b"retract /docs/draft");
}

#[test]
fn what_a_private_folder_holds_is_private_too() {
    let (site, admin, ed, mo) = site_with_editor();
    let anon = site.browser();
    assert_eq!(
        ed.post_multipart(
            "/docs/@@add",
            &[
                ("type", "Folder"),
                ("id", "drafts"),
                ("title", "Drafts"),
                ("state", "private")
            ],
            None
        )
        .status(),
        303
    );
    add_page(&ed, "/docs/drafts", "inner", "published");
    // An editor of the page alone does not reach it through the private folder.
    add_user(&admin, "pat");
    grant(&admin, "/docs/drafts/inner", "user:pat", "Editor", "allow");
    let pat = logged_in(&site, "pat");
    for b in [&anon, &mo, &pat] {
        assert_eq!(status(b, "/docs/drafts/inner"), 404);
        assert_eq!(status(b, "/docs/drafts"), 404);
    }
    assert_eq!(status(&ed, "/docs/drafts/inner"), 200);
    assert_eq!(status(&admin, "/docs/drafts/inner"), 200);
}

#[test]
fn existing_and_unspecified_items_stay_published_and_the_form_offers_private_first() {
    let (site, admin, ed, _mo) = site_with_editor();
    let anon = site.browser();
    // A form post naming no state (a script, the API) publishes, as before states.
    add_page(&ed, "/docs", "plain", "");
    assert_eq!(status(&anon, "/docs/plain"), 200);
    // The add form offers Private checked.
    let form = ed.page("/docs/@@add?type=Page");
    assert!(
        form.contains(r#"name="state" value="private" checked"#),
        "{form}"
    );
    // An unknown state is refused; the root cannot be made private.
    let r = ed.post("/docs/plain/@@publish", &[("state", "hidden")]);
    assert_eq!(r.status(), 400);
    assert_eq!(
        admin.post("/@@publish", &[("state", "private")]).status(),
        400
    );
    // The JSON API says the state, as plone.restapi's `review_state`.
    let json: serde_json::Value = anon
        .client
        .get(anon.url("/docs/plain"))
        .header("Accept", "application/json")
        .send()
        .unwrap()
        .json()
        .unwrap();
    assert_eq!(json["review_state"], "published");
}

#[test]
fn the_json_api_creates_private_items_when_asked_and_says_their_state() {
    let (site, _admin, _ed, _mo) = site_with_editor();
    let client = reqwest::blocking::Client::new();
    let create = |body: serde_json::Value| {
        client
            .post(format!("{}/docs", site.base))
            .basic_auth("ed", Some("ed-password"))
            .header("accept", "application/json")
            .json(&body)
            .send()
            .unwrap()
    };
    let r = create(
        serde_json::json!({"@type": "Page", "id": "api-draft", "title": "D", "review_state": "private"}),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["review_state"],
        "private"
    );
    assert_eq!(status(&site.browser(), "/docs/api-draft"), 404);
    let r = create(serde_json::json!({"@type": "Page", "id": "api-open", "title": "O"}));
    assert_eq!(
        r.json::<serde_json::Value>().unwrap()["review_state"],
        "published"
    );
    assert_eq!(status(&site.browser(), "/docs/api-open"), 200);
    let r = create(serde_json::json!({"@type": "Page", "title": "X", "review_state": "draft"}));
    assert_eq!(r.status(), 400);
}

#[test]
fn a_copy_cannot_carry_a_private_item_to_where_its_maker_would_see_it() {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Folder", "src", "Source", "").status(), 303);
    assert_eq!(admin.add("", "Folder", "mine", "Mine", "").status(), 303);
    add_page(&admin, "/src", "draft", "private");
    add_user(&admin, "bob");
    grant(&admin, "/mine", "user:bob", "Editor", "allow");
    let bob = logged_in(&site, "bob");
    let r = bob.post("/@@contents", &[("action", "copy"), ("ids", "src")]);
    assert_eq!(r.status(), 303);
    let r = bob.post("/mine/@@contents", &[("action", "paste")]);
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .contains("/src/draft, which you may not see")
    );
    assert_eq!(admin.get("/mine/src").status(), 404);
}
