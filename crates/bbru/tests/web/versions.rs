//! No silent lost updates: the JSON API's `ETag` and `If-Match` (412 on another
//! version), and the edit form that carries the version it was filled from (a save from
//! an older version shows both texts to merge instead of overwriting).

use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::matrix::api;
use crate::{ADMIN, Site, start};

/// An API call as the bootstrap manager, with extra headers.
fn call(
    site: &Site,
    method: &str,
    path: &str,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> Response {
    let client = reqwest::blocking::Client::new();
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut request = client
        .request(method, format!("{}{path}", site.base))
        .header("accept", "application/json")
        .basic_auth(ADMIN.0, Some(ADMIN.1));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    request.send().unwrap()
}

fn etag_of(site: &Site, path: &str) -> String {
    let r = call(site, "GET", path, None, &[]);
    assert_eq!(r.status(), 200);
    let tag = r.headers()["etag"].to_str().unwrap().to_owned();
    assert!(
        tag.starts_with('"') && tag.ends_with('"') && tag.len() == 18,
        "{tag}"
    );
    tag
}

fn title_of(site: &Site, path: &str) -> String {
    let v: Value = api(site, "GET", path, Some(ADMIN), None).json().unwrap();
    v["title"].as_str().unwrap().to_owned()
}

fn add_page(site: &Site, id: &str, title: &str, body: &str) {
    let r = api(
        site,
        "POST",
        "/",
        Some(ADMIN),
        Some(&json!({"@type": "Page", "id": id, "title": title, "body": body})),
    );
    assert_eq!(r.status(), 201);
}

#[test]
fn the_api_answers_an_etag_that_changes_with_the_object_only() {
    let site = start();
    add_page(&site, "p", "One", "text");
    let first = etag_of(&site, "/p");
    assert_eq!(
        etag_of(&site, "/p"),
        first,
        "a read does not change the version"
    );
    let r = call(&site, "PATCH", "/p", Some(json!({"title": "Two"})), &[]);
    assert_eq!(r.status(), 204);
    let second = etag_of(&site, "/p");
    assert_ne!(second, first);
    // Another object's change leaves this one's version alone.
    add_page(&site, "q", "Other", "");
    assert_eq!(etag_of(&site, "/p"), second);
}

#[test]
fn if_match_with_another_version_is_refused_and_changes_nothing() {
    let site = start();
    add_page(&site, "p", "Original", "text");
    let seen = etag_of(&site, "/p");
    // Someone else saves meanwhile.
    assert_eq!(
        call(&site, "PATCH", "/p", Some(json!({"title": "Theirs"})), &[]).status(),
        204
    );
    let current = etag_of(&site, "/p");

    let r = call(
        &site,
        "PATCH",
        "/p",
        Some(json!({"title": "Mine"})),
        &[("if-match", &seen)],
    );
    assert_eq!(r.status(), 412);
    let error: Value = r.json().unwrap();
    assert!(
        error["error"]["message"]
            .as_str()
            .unwrap()
            .contains(&current),
        "{error}"
    );
    assert_eq!(title_of(&site, "/p"), "Theirs");

    let r = call(&site, "DELETE", "/p", None, &[("if-match", &seen)]);
    assert_eq!(r.status(), 412);
    assert_eq!(title_of(&site, "/p"), "Theirs");

    // A weak tag never matches; a list with the current one does; so does `*`.
    let weak = format!("W/{current}");
    let r = call(
        &site,
        "PATCH",
        "/p",
        Some(json!({"title": "Mine"})),
        &[("if-match", &weak)],
    );
    assert_eq!(r.status(), 412);
    let list = format!("{seen}, {current}");
    let r = call(
        &site,
        "PATCH",
        "/p",
        Some(json!({"title": "Mine"})),
        &[("if-match", &list)],
    );
    assert_eq!(r.status(), 204);
    assert_eq!(title_of(&site, "/p"), "Mine");
    let r = call(
        &site,
        "PATCH",
        "/p",
        Some(json!({"title": "Star"})),
        &[("if-match", "*")],
    );
    assert_eq!(r.status(), 204);
    let now = etag_of(&site, "/p");
    let r = call(&site, "DELETE", "/p", None, &[("if-match", &now)]);
    assert_eq!(r.status(), 204);
    assert_eq!(api(&site, "GET", "/p", Some(ADMIN), None).status(), 404);
}

/// The hidden version field of the first edit form in `html`.
fn serial_in(html: &str) -> String {
    let marker = "name=\"serial\" value=\"";
    let at = html.find(marker).expect("a version field") + marker.len();
    html[at..at + 16].to_owned()
}

#[test]
fn a_form_saved_from_an_older_version_shows_both_texts_and_overwrites_nothing() {
    let site = start();
    add_page(&site, "p", "Original", "first text");
    let alice = site.admin();
    let bob = site.admin();
    let alice_form = alice.page("/p/@@edit");
    let bob_form = bob.page("/p/@@edit");
    let opened = serial_in(&alice_form);
    assert_eq!(serial_in(&bob_form), opened);

    // Alice saves first.
    let r = alice.post_multipart(
        "/p/@@edit",
        &[
            ("serial", &opened),
            ("title", "Alice's title"),
            ("description", ""),
            ("body", "Alice's text"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);

    // Bob saves from the version he opened: not applied, shown back to merge.
    let r = bob.post_multipart(
        "/p/@@edit",
        &[
            ("serial", &opened),
            ("title", "Bob's title"),
            ("description", ""),
            ("body", "Bob's text"),
        ],
        None,
    );
    assert_eq!(r.status(), 409);
    let merge = r.text().unwrap();
    assert!(
        merge.contains("Someone else changed this since you opened it"),
        "{merge}"
    );
    assert!(
        merge.contains("Alice&#39;s text") || merge.contains("Alice's text"),
        "their text shown"
    );
    assert!(
        merge.contains("Bob&#39;s text") || merge.contains("Bob's text"),
        "his text kept"
    );
    let newer = serial_in(&merge);
    assert_ne!(newer, opened, "the form now carries the current version");
    let v: Value = api(&site, "GET", "/p", Some(ADMIN), None).json().unwrap();
    assert_eq!(
        (v["title"].as_str(), v["body"].as_str()),
        (Some("Alice's title"), Some("Alice's text"))
    );

    // Bob merges and saves again from the current version: saved.
    let r = bob.post_multipart(
        "/p/@@edit",
        &[
            ("serial", &newer),
            ("title", "Both titles"),
            ("description", ""),
            ("body", "Alice's text\nBob's text"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    let v: Value = api(&site, "GET", "/p", Some(ADMIN), None).json().unwrap();
    assert_eq!(v["body"], "Alice's text\nBob's text");

    // A post without the field (a script) is applied as before.
    let r = bob.post_multipart("/p/@@edit", &[("title", "Scripted"), ("body", "x")], None);
    assert_eq!(r.status(), 303);
    assert_eq!(title_of(&site, "/p"), "Scripted");
}
