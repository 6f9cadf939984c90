//! The JSON API: each content type created, read, changed and deleted, folder listings,
//! and the errors a client gets.

use base64::Engine;
use bbru::model::Kind;
use bbru::security::{Role, Setting};
use reqwest::blocking::Response;
use serde_json::{Value, json};

use crate::matrix::{add_item, api, set_grant};
use crate::{ADMIN, Site, start};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

/// An API call as the bootstrap manager.
fn admin_api(site: &Site, method: &str, path: &str, body: Option<Value>) -> Response {
    api(site, method, path, Some(ADMIN), body.as_ref())
}

/// The JSON of a response, after checking its status.
fn json_of(r: Response, status: u16) -> Value {
    assert_eq!(r.status().as_u16(), status);
    r.json().unwrap()
}

/// The message of a JSON error, after checking its status.
fn error_of(r: Response, status: u16) -> String {
    let v = json_of(r, status);
    v["error"]["message"]
        .as_str()
        .unwrap_or_else(|| panic!("a JSON error: {v}"))
        .to_owned()
}

fn is_iso_utc(text: &str) -> bool {
    let b = text.as_bytes();
    b.len() == 20
        && b[4] == b'-'
        && b[7] == b'-'
        && b[10] == b'T'
        && b[13] == b':'
        && b[16] == b':'
        && b[19] == b'Z'
}

/// The descriptions of the newest `n` transactions, newest first.
fn notes(site: &Site, n: usize) -> Vec<String> {
    site.db
        .storage()
        .undo_log(0, n)
        .unwrap()
        .iter()
        .map(|e| String::from_utf8_lossy(&e.description).into_owned())
        .collect()
}

#[test]
fn folders_and_pages_round_trip() {
    let site = start();
    let r = admin_api(
        &site,
        "POST",
        "/",
        Some(json!({"@type": "Folder", "id": "docs", "title": "Docs"})),
    );
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], format!("{}/docs", site.base));
    let folder = r.json::<Value>().unwrap();
    assert_eq!(folder["@id"], format!("{}/docs", site.base));
    assert_eq!(folder["@type"], "Folder");
    assert_eq!(folder["items"], json!([]));
    assert_eq!(folder["items_total"], 0);

    // The scheme and host of @id come from the proxy's headers.
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/docs", site.base))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .header("accept", "application/json")
        .header("x-forwarded-proto", "https")
        .header("host", "example.org")
        .json(&json!({
            "@type": "Page", "id": "install", "title": "Install",
            "description": "How", "body": "Run **bbru**."
        }))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(r.headers()["location"], "https://example.org/docs/install");
    assert_eq!(
        r.json::<Value>().unwrap()["@id"],
        "https://example.org/docs/install"
    );

    let page = json_of(admin_api(&site, "GET", "/docs/install", None), 200);
    assert_eq!(page["@id"], format!("{}/docs/install", site.base));
    assert_eq!(page["@type"], "Page");
    assert_eq!(page["id"], "install");
    assert_eq!(page["title"], "Install");
    assert_eq!(page["description"], "How");
    assert_eq!(page["creator"], "admin (bootstrap)");
    assert_eq!(page["body"], "Run **bbru**.");
    assert!(
        page["body_html"]
            .as_str()
            .unwrap()
            .contains("<strong>bbru</strong>")
    );
    assert!(is_iso_utc(page["created"].as_str().unwrap()), "{page}");
    assert!(is_iso_utc(page["modified"].as_str().unwrap()), "{page}");

    let r = admin_api(
        &site,
        "PATCH",
        "/docs/install",
        Some(json!({"title": "Installing", "body": "New body"})),
    );
    assert_eq!(r.status(), 204);
    let page = json_of(admin_api(&site, "GET", "/docs/install", None), 200);
    assert_eq!(page["title"], "Installing");
    assert_eq!(page["body"], "New body");
    assert_eq!(page["description"], "How");
    // What a GET gives may be sent back as is.
    assert_eq!(
        admin_api(&site, "PATCH", "/docs/install", Some(page)).status(),
        204
    );

    let folder = json_of(admin_api(&site, "GET", "/docs", None), 200);
    assert_eq!(folder["items_total"], 1);
    assert_eq!(
        folder["items"],
        json!([{
            "@id": format!("{}/docs/install", site.base),
            "@type": "Page",
            "id": "install",
            "title": "Installing",
            "description": "How",
        }])
    );

    assert_eq!(
        admin_api(&site, "DELETE", "/docs/install", None).status(),
        204
    );
    assert_eq!(admin_api(&site, "GET", "/docs/install", None).status(), 404);
    assert_eq!(
        json_of(admin_api(&site, "GET", "/docs", None), 200)["items_total"],
        0
    );
    assert_eq!(
        notes(&site, 5),
        [
            "delete /docs/install",
            "edit /docs/install",
            "edit /docs/install",
            "add Page /docs/install",
            "add Folder /docs"
        ]
    );
}

#[test]
fn files_and_images_round_trip() {
    let site = start();
    let r = admin_api(
        &site,
        "POST",
        "/",
        Some(json!({
            "@type": "File", "title": "Notes", "filename": "notes.txt",
            "content_type": "text/plain", "data": b64(b"hello")
        })),
    );
    let file = json_of(r, 201);
    let url = format!("{}/notes.txt", site.base);
    assert_eq!(file["@id"], url);
    assert_eq!(file["@type"], "File");
    assert_eq!(file["filename"], "notes.txt");
    assert_eq!(file["content_type"], "text/plain");
    assert_eq!(file["size"], 5);
    assert_eq!(file["download"], url);
    // The download URL, asked without JSON, serves the bytes.
    let r = reqwest::blocking::get(&url).unwrap();
    assert_eq!(r.headers()["content-type"], "text/plain");
    assert_eq!(r.text().unwrap(), "hello");

    let r = admin_api(
        &site,
        "PATCH",
        "/notes.txt",
        Some(json!({"data": b64(b"hello, world")})),
    );
    assert_eq!(r.status(), 204);
    let file = json_of(admin_api(&site, "GET", "/notes.txt", None), 200);
    assert_eq!(file["size"], 12);
    assert_eq!(file["filename"], "notes.txt");
    assert_eq!(
        reqwest::blocking::get(&url).unwrap().text().unwrap(),
        "hello, world"
    );

    // An image's type comes from its bytes, not from what the client says.
    let png = b"\x89PNG\r\n\x1a\n0000";
    let r = admin_api(
        &site,
        "POST",
        "/",
        Some(json!({
            "@type": "Image", "id": "logo", "title": "Logo", "filename": "logo.gif",
            "content_type": "image/gif", "data": b64(png)
        })),
    );
    let image = json_of(r, 201);
    assert_eq!(image["@type"], "Image");
    assert_eq!(image["content_type"], "image/png");
    assert_eq!(image["size"], png.len());
    let r = reqwest::blocking::get(format!("{}/logo", site.base)).unwrap();
    assert_eq!(r.bytes().unwrap().as_ref(), png);
    let r = admin_api(
        &site,
        "PATCH",
        "/logo",
        Some(json!({"data": b64(b"<svg onload=alert(1)>")})),
    );
    assert!(error_of(r, 400).contains("not an image"));
    assert_eq!(admin_api(&site, "DELETE", "/logo", None).status(), 204);
    assert_eq!(notes(&site, 1), ["delete /logo"]);
}

#[test]
fn folder_listings_show_only_what_the_principal_may_view() {
    let site = start();
    add_item(&site, "/", Kind::Folder, "docs", "Docs");
    add_item(&site, "/docs", Kind::Page, "open", "Open");
    add_item(&site, "/docs", Kind::Folder, "secret", "Secret");
    for group in ["group:everybody", "group:authenticated"] {
        set_grant(&site, "/docs/secret", group, Role::Member, Setting::Deny);
    }
    let anonymous = json_of(api(&site, "GET", "/docs", None, None), 200);
    assert_eq!(anonymous["items_total"], 1);
    assert_eq!(anonymous["items"][0]["id"], "open");
    let admin = json_of(admin_api(&site, "GET", "/docs", None), 200);
    assert_eq!(admin["items_total"], 2);
    // Hidden from visitors: as if missing.
    assert_eq!(api(&site, "GET", "/docs/secret", None, None).status(), 404);
}

#[test]
fn mistakes_get_clear_json_errors() {
    let site = start();
    add_item(&site, "/", Kind::Folder, "docs", "Docs");
    add_item(&site, "/docs", Kind::Page, "p", "P");
    let client = reqwest::blocking::Client::new();
    let raw = |body: &str| {
        client
            .post(format!("{}/docs", site.base))
            .basic_auth(ADMIN.0, Some(ADMIN.1))
            .header("accept", "application/json")
            .header("content-type", "application/json")
            .body(body.to_owned())
            .send()
            .unwrap()
    };
    let r = raw("{not json");
    let v = json_of(r, 400);
    assert_eq!(v["error"]["type"], "Bad Request");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("bad JSON"),
        "{v}"
    );
    assert!(error_of(raw("[1, 2]"), 400).contains("must be an object"));

    let post = |body: Value| admin_api(&site, "POST", "/docs", Some(body));
    let m = error_of(post(json!({"@type": "Document", "title": "x"})), 400);
    assert!(m.contains("Unknown \"@type\" \"Document\""), "{m}");
    assert!(error_of(post(json!({"title": "x"})), 400).contains("\"@type\" is required"));
    let m = error_of(post(json!({"@type": "Page", "title": 3})), 400);
    assert!(m.contains("\"title\" must be a string"), "{m}");
    let m = error_of(
        post(json!({"@type": "Page", "description": "no title"})),
        400,
    );
    assert!(m.contains("title is required"), "{m}");
    let m = error_of(
        post(json!({"@type": "Page", "id": "p", "title": "Again"})),
        400,
    );
    assert!(m.contains("already exists"), "{m}");
    let m = error_of(
        post(json!({"@type": "Page", "id": "../x", "title": "x"})),
        400,
    );
    assert!(m.contains("not a valid name"), "{m}");
    let m = error_of(
        post(json!({"@type": "File", "title": "f", "data": "not base64!"})),
        400,
    );
    assert!(m.contains("base64"), "{m}");
    let m = error_of(post(json!({"@type": "File", "title": "f"})), 400);
    assert!(m.contains("needs \"data\""), "{m}");
    let m = error_of(
        post(json!({"@type": "Folder", "title": "f", "body": "b"})),
        400,
    );
    assert!(m.contains("A Folder has no field \"body\""), "{m}");
    let big = b64(&vec![0u8; 150_000]);
    let r = post(json!({"@type": "File", "title": "big", "data": big}));
    assert_eq!(r.status(), 413);

    let patch = |path: &str, body: Value| admin_api(&site, "PATCH", path, Some(body));
    assert!(
        error_of(patch("/docs/p", json!({"@type": "Folder"})), 400).contains("cannot be changed")
    );
    assert!(error_of(patch("/docs/p", json!({"id": "q"})), 400).contains("cannot be changed"));
    assert!(error_of(patch("/docs", json!({"data": ""})), 400).contains("has no field"));
    assert!(error_of(patch("/docs/p", json!({"title": ""})), 400).contains("title is required"));
    assert!(error_of(admin_api(&site, "DELETE", "/", None), 400).contains("root"));

    // Credentials.
    let r = api(
        &site,
        "POST",
        "/docs",
        None,
        Some(&json!({"@type": "Page", "title": "x"})),
    );
    assert!(r.headers().contains_key("www-authenticate"));
    assert_eq!(error_of(r, 401), "Please log in.");
    let r = api(&site, "DELETE", "/docs/p", Some((ADMIN.0, "wrong")), None);
    assert_eq!(r.status(), 401);
    // A browser's session is no API credential for changes: it needs the CSRF token.
    let browser = site.admin();
    let r = browser
        .client
        .post(browser.url("/docs"))
        .header("accept", "application/json")
        .json(&json!({"@type": "Page", "title": "Forged"}))
        .send()
        .unwrap();
    assert!(error_of(r, 400).contains("CSRF"));
    // Nothing of the above changed anything.
    assert_eq!(notes(&site, 1), ["add /docs/p"]);
}
