//! Values that become response headers are checked when stored, and encoded when sent:
//! content types are MIME types, file names carry no control characters and reach the
//! browser whole (`filename*`), a title of letters other than ASCII still gives a name.

use base64::Engine;
use bbru::model::{ContentRef, File, Meta};
use serde_json::{Value, json};

use crate::matrix::{api, content_at, in_db};
use crate::{ADMIN, start};

fn b64(data: &[u8]) -> String {
    base64::engine::general_purpose::STANDARD.encode(data)
}

fn file(content_type: &str, filename: &str) -> Value {
    json!({
        "@type": "File", "title": "A file", "filename": filename,
        "content_type": content_type, "data": b64(b"hello")
    })
}

fn error_message(r: reqwest::blocking::Response) -> String {
    assert_eq!(r.status(), 400);
    let v: Value = r.json().unwrap();
    v["error"]["message"].as_str().unwrap().to_owned()
}

#[test]
fn content_types_and_file_names_that_would_break_headers_are_refused() {
    let site = start();
    for bad in [
        "text/plain;\r\nSet-Cookie: x=1",
        "text/plain\0",
        "plain",
        "",
    ] {
        let r = api(&site, "POST", "/", Some(ADMIN), Some(&file(bad, "a.txt")));
        let message = error_message(r);
        assert!(message.contains("not a valid content type"), "{message}");
    }
    for bad in ["a\r\nb.txt", "a\0.txt", "   "] {
        let r = api(
            &site,
            "POST",
            "/",
            Some(ADMIN),
            Some(&file("text/plain", bad)),
        );
        let message = error_message(r);
        assert!(message.contains("not a valid file name"), "{message}");
    }
    // Nothing was stored.
    let root: Value = api(&site, "GET", "/", Some(ADMIN), None).json().unwrap();
    assert_eq!(root["items_total"], 0);
    // A good one, then a bad change of it: refused, the file unchanged.
    let r = api(
        &site,
        "POST",
        "/",
        Some(ADMIN),
        Some(&file("text/plain; charset=utf-8", "a.txt")),
    );
    assert_eq!(r.status(), 201);
    let r = api(
        &site,
        "PATCH",
        "/a.txt",
        Some(ADMIN),
        Some(&json!({"content_type": "text/html\r\nX-Evil: 1"})),
    );
    assert!(error_message(r).contains("not a valid content type"));
    let r = reqwest::blocking::get(format!("{}/a.txt", site.base)).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "text/plain; charset=utf-8");
    // The upload form too.
    let admin = site.admin();
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Up")],
        Some(("a\nb.txt", "text/plain", b"x".to_vec())),
    );
    assert_eq!(r.status(), 400);
}

#[test]
fn a_stored_content_type_unfit_for_a_header_is_served_as_bytes_not_an_error() {
    let site = start();
    // As a file stored before content types were checked.
    in_db(&site, "add a file as before", |tx| {
        let ContentRef::Folder(root) = content_at(tx, "/") else {
            panic!("the root is a folder");
        };
        let file = tx
            .add(File {
                meta: Meta {
                    title: "Old".into(),
                    ..Meta::default()
                },
                filename: "old.txt".into(),
                content_type: "text/plain;\r\nSet-Cookie: x=1".into(),
                data: b"old bytes".to_vec(),
                blob: None,
                size: 0,
            })
            .unwrap();
        tx.get(root)
            .unwrap()
            .items
            .insert(tx, "old".into(), ContentRef::File(file).to_any())
            .unwrap();
    });
    let r = reqwest::blocking::get(format!("{}/old", site.base)).unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "application/octet-stream");
    assert!(
        r.headers()
            .get_all("set-cookie")
            .iter()
            .all(|c| !c.to_str().unwrap().starts_with("x=")),
        "no cookie of the stored value"
    );
    assert_eq!(r.text().unwrap(), "old bytes");
}

#[test]
fn downloads_keep_non_ascii_file_names() {
    let site = start();
    let r = api(
        &site,
        "POST",
        "/",
        Some(ADMIN),
        Some(&json!({
            "@type": "File", "id": "cv", "title": "CV", "filename": "résumé 日本.txt",
            "content_type": "text/plain", "data": b64(b"hello")
        })),
    );
    assert_eq!(r.status(), 201);
    let r = reqwest::blocking::get(format!("{}/cv", site.base)).unwrap();
    let disposition = r.headers()["content-disposition"].to_str().unwrap();
    assert_eq!(
        disposition,
        "inline; filename=\"resume Ri Ben .txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.txt"
    );
}

#[test]
fn titles_without_ascii_letters_give_usable_names() {
    let site = start();
    let admin = site.admin();
    let r = admin.add("", "Page", "", "Привет, мир", "");
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    assert_eq!(r.headers()["location"], "/privet-mir?notice=added");
    assert!(admin.page("/privet-mir").contains("<h1>Привет, мир</h1>"));
    let r = admin.add("", "Page", "", "日本語", "");
    assert_eq!(r.headers()["location"], "/ri-ben-yu?notice=added");
    // Nothing to transliterate: a numbered name.
    for n in 1..=2 {
        let r = admin.add("", "Page", "", "\u{e000}\u{e001}", "");
        assert_eq!(r.status(), 303);
        assert_eq!(
            r.headers()["location"],
            format!("/item-{n}?notice=added").as_str()
        );
    }
}
