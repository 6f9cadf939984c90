//! Redirects to targets a visitor chooses (`came_from` of the login form) stay on this
//! site: anything else leads to the site root.

use crate::{ADMIN, start};

#[test]
fn login_never_redirects_to_another_origin() {
    let site = start();
    for (came_from, expected) in [
        ("/docs/@@edit?x=1", "/docs/@@edit?x=1"),
        ("/caf\u{e9}", "/caf%C3%A9"),
        // Browsers drop tabs and newlines from URLs: `/\t/evil` would be `//evil`.
        ("/\t/evil.example", "/"),
        ("/\n/evil.com", "/"),
        ("/\r\n/evil.com", "/"),
        ("//evil.example", "/"),
        ("/\\evil.example", "/"),
        ("/.//evil.example", "/"),
        ("https://evil.example/", "/"),
        ("javascript:alert(1)", "/"),
        ("", "/"),
    ] {
        let b = site.browser();
        let r = b.post(
            "/@@login",
            &[
                ("login", ADMIN.0),
                ("password", ADMIN.1),
                ("came_from", came_from),
            ],
        );
        assert_eq!(r.status(), 303, "{came_from:?}");
        assert_eq!(
            r.headers().get("location").map(|v| v.to_str().unwrap()),
            Some(expected),
            "came_from {came_from:?}"
        );
    }
}

#[test]
fn the_login_form_keeps_only_a_same_origin_came_from() {
    let site = start();
    let b = site.browser();
    let html = b.page("/@@login?came_from=%2F%09%2Fevil.example");
    assert!(
        html.contains("name=\"came_from\" value=\"/\""),
        "the hidden field falls back to the root: {html}"
    );
    let html = b.page("/@@login?came_from=%2Fdocs");
    assert!(
        html.contains("name=\"came_from\" value=\"/docs\""),
        "{html}"
    );
}

#[test]
fn notices_in_the_url_are_keys_never_free_text() {
    let site = start();
    let admin = site.admin();
    let r = admin.add("", "Folder", "docs", "Docs", "");
    assert_eq!(r.headers()["location"], "/docs?notice=added");
    let html = admin.page("/docs?notice=added");
    assert!(
        html.contains("<div class=\"notice\" role=\"status\">Folder added.</div>"),
        "{html}"
    );
    let anonymous = site.browser();
    let html = anonymous.page("/docs?notice=saved");
    assert!(html.contains("<div class=\"notice\" role=\"status\">Changes saved.</div>"));
    for text in [
        "Your+account+is+locked%3A+call+555-0100",
        "Changes+saved.",
        "<b>x</b>",
    ] {
        let html = anonymous.page(&format!("/docs?notice={text}"));
        assert!(!html.contains("class=\"notice\""), "{text}: {html}");
        assert!(!html.contains("555-0100"), "{text}");
    }
}
