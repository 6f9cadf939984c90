//! The site from the outside: bootstrap, login, content added, viewed and edited, CSRF,
//! escaping, uploads.

use crate::{ADMIN, csrf_in, set_cookie, start};

#[test]
fn the_bootstrap_manager_creates_content_and_anonymous_reads_it() {
    let site = start();
    let admin = site.admin();
    let r = admin.add("", "Folder", "docs", "Documentation", "");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/docs?notice=added");
    let r = admin.add(
        "/docs",
        "Page",
        "install",
        "Installing",
        "Run **bbru serve**.",
    );
    assert_eq!(r.status(), 303);
    let anonymous = site.browser();
    let html = anonymous.page("/docs/install");
    assert!(html.contains("<strong>bbru serve</strong>"), "{html}");
    assert!(html.contains("Created by admin (bootstrap)"), "{html}");
    let listing = anonymous.page("/docs");
    assert!(listing.contains("href=\"/docs/install\""), "{listing}");
    // Anonymous may not edit: asked to log in.
    assert_eq!(anonymous.get("/docs/install/@@edit").status(), 401);
    // The edit is a transaction whose user and description say who did what where.
    let r = admin.post_multipart(
        "/docs/install/@@edit",
        &[
            ("title", "Installation"),
            ("description", "How"),
            ("body", "new"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    let log = site.db.storage().undo_log(0, 1).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&log[0].user),
        format!("{} (bootstrap)", ADMIN.0)
    );
    assert_eq!(
        String::from_utf8_lossy(&log[0].description),
        "edit /docs/install"
    );
    assert!(
        anonymous
            .page("/docs/install")
            .contains("<h1>Installation</h1>")
    );
}

#[test]
fn forms_without_a_valid_csrf_token_are_refused() {
    let site = start();
    let admin = site.admin();
    let r = admin
        .client
        .post(admin.url("/@@add"))
        .form(&[("type", "Page"), ("title", "x"), ("_csrf", "forged")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("CSRF"));
    let r = admin
        .client
        .post(admin.url("/@@add"))
        .form(&[("type", "Page"), ("title", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(admin.get("/x").status(), 404);
}

/// A page with no form that changes anything sets no cookie (it stays cacheable, and
/// costs no token); the first page with such a form sets the CSRF cookie, and the token
/// in that form is the one a POST needs.
#[test]
fn the_csrf_cookie_comes_with_the_first_form_that_needs_it() {
    let site = start();
    let r = reqwest::blocking::get(format!("{}/", site.base)).unwrap();
    assert_eq!(r.status(), 200);
    assert!(
        r.headers().get("set-cookie").is_none(),
        "a page without forms set {:?}",
        r.headers().get("set-cookie")
    );
    let visitor = site.browser();
    let r = visitor.get("/@@login");
    assert!(
        set_cookie(&r, "bbru_csrf").is_some(),
        "the login form came without the CSRF cookie"
    );
    let token = csrf_in(&r.text().unwrap()).expect("the login form's token");
    // Its token passes (the login fails on the password, not on the token), and the
    // cookie is not set again.
    let r = visitor
        .client
        .post(visitor.url("/@@login"))
        .form(&[
            ("login", "nobody"),
            ("password", "wrong"),
            ("_csrf", &token),
        ])
        .send()
        .unwrap();
    assert_ne!(r.status(), 400, "the token of the login form was refused");
    assert!(
        set_cookie(&r, "bbru_csrf").is_none(),
        "the CSRF cookie was set again"
    );
}

#[test]
fn hostile_text_is_escaped_everywhere() {
    let site = start();
    let admin = site.admin();
    let title = "<script>alert('t')</script>";
    let r = admin.post_multipart(
        "/@@add",
        &[
            ("type", "Page"),
            ("id", "p"),
            ("title", title),
            ("description", "<img src=x onerror=alert(1)>"),
            (
                "body",
                "<script>alert(2)</script>\n\n[x](javascript:alert(3))",
            ),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    for path in ["/p", "/", "/p/@@edit"] {
        let html = admin.page(path);
        assert!(!html.contains("<script>alert"), "{path}: {html}");
        assert!(!html.contains("<img src=x"), "{path}: {html}");
        assert!(!html.contains("href=\"javascript:"), "{path}: {html}");
    }
}

#[test]
fn uploads_are_served_with_safe_types_and_size_limits() {
    let site = start();
    let admin = site.admin();
    let png = b"\x89PNG\r\n\x1a\n0000".to_vec();
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "Image"), ("title", "Logo")],
        Some(("logo.png", "image/png", png.clone())),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let r = admin.get("/logo.png");
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(r.bytes().unwrap().to_vec(), png);
    // Not an image: refused with a clear error.
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "Image"), ("title", "Evil")],
        Some(("evil.svg", "image/png", b"<svg onload=alert(1)>".to_vec())),
    );
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("not an image"));
    // HTML uploaded as a file is downloaded, never rendered in the site's origin.
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Page")],
        Some(("x.html", "text/html", b"<script>alert(1)</script>".to_vec())),
    );
    assert_eq!(r.status(), 303);
    assert_eq!(
        admin.get("/x.html").headers()["content-type"],
        "application/octet-stream"
    );
    // Too large.
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Big")],
        Some(("big.bin", "application/octet-stream", vec![0; 300_000])),
    );
    assert_eq!(r.status(), 413);
    // A File without a file.
    let r = admin.post_multipart("/@@add", &[("type", "File"), ("title", "Nothing")], None);
    assert_eq!(r.status(), 400);
}

#[test]
fn wrong_passwords_are_rate_limited() {
    let site = start();
    let b = site.browser();
    for _ in 0..5 {
        let r = b.post("/@@login", &[("login", "admin"), ("password", "wrong")]);
        assert_eq!(r.status(), 200);
        assert!(r.text().unwrap().contains("Wrong login or password"));
    }
    let r = b.post("/@@login", &[("login", "admin"), ("password", ADMIN.1)]);
    assert_eq!(r.status(), 429);
    // The client is told when it may try again: within the limiter's window (300 s).
    let wait: u64 = r
        .headers()
        .get("retry-after")
        .expect("a Retry-After header")
        .to_str()
        .unwrap()
        .parse()
        .expect("whole seconds");
    assert!((1..=300).contains(&wait), "Retry-After: {wait}");
}

#[test]
fn sessions_are_http_only_same_site_cookies() {
    let site = start();
    let b = site.browser();
    let token = b.csrf();
    let r = b
        .client
        .post(b.url("/@@login"))
        .header("x-forwarded-proto", "https")
        .form(&[
            ("login", ADMIN.0),
            ("password", ADMIN.1),
            ("_csrf", token.as_str()),
        ])
        .send()
        .unwrap();
    let cookie = set_cookie(&r, "bbru_session").unwrap().to_owned();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Lax") && cookie.contains("Secure"),
        "{cookie}"
    );
}

#[test]
fn health_answers_after_reading_the_database() {
    let site = start();
    let r = site.browser().get("/@@health");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "ok");
    let metrics = site.browser().page("/@@metrics");
    assert!(
        metrics.contains("bbru_requests_total{view=\"health\",status=\"200\"} 1"),
        "{metrics}"
    );
    assert!(metrics.contains("bbru_storage_loads_total"), "{metrics}");
}

/// On an embedded `Data.fs`, health names the file and its last transaction, and checks
/// the file itself each time: a file whose header was overwritten under the instance
/// answers 503 with the reason (the caches would still serve pages).
#[test]
fn health_on_a_file_storage_reads_the_file() {
    use std::os::unix::fs::FileExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("Data.fs");
    let storage = std::sync::Arc::new(zodb_storage::FileStorage::open(&path).unwrap());
    let site = crate::start_with(storage, crate::site_config(""));
    let r = site.browser().get("/@@health");
    assert_eq!(r.status(), 200);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "ok", "{v}");
    assert_eq!(v["storage_kind"], "file", "{v}");
    assert_eq!(v["storage_location"], path.display().to_string(), "{v}");
    assert_eq!(v["version"], env!("CARGO_PKG_VERSION"), "{v}");
    let time = v["last_transaction_time"].as_str().unwrap_or_default();
    assert!(time.len() == 20 && time.ends_with('Z'), "{v}");

    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"JUNK", 0).unwrap();
    let r = site.browser().get("/@@health");
    assert_eq!(r.status(), 503);
    let v: serde_json::Value = r.json().unwrap();
    assert_eq!(v["status"], "unavailable", "{v}");
    assert!(
        v["reason"].as_str().is_some_and(|r| r.contains("offset 0")),
        "{v}"
    );
}

/// A login through the form from `forwarded` (as a proxy would say), with `password`.
fn login_via_proxy(
    b: &crate::Browser,
    token: &str,
    forwarded: &str,
    password: &str,
) -> reqwest::blocking::Response {
    b.client
        .post(b.url("/@@login"))
        .header("x-forwarded-for", forwarded)
        .form(&[("login", "admin"), ("password", password), ("_csrf", token)])
        .send()
        .unwrap()
}

/// A site whose instance trusts the local proxy (the tests' client is on loopback).
fn start_behind_proxy() -> crate::Site {
    crate::start_adjusted(
        std::sync::Arc::new(zodb_storage::MemoryStorage::new("test")),
        crate::site_config(""),
        |app| app.trusted_proxies = vec!["127.0.0.1/32".parse().unwrap()],
    )
}

#[test]
fn rotating_forwarded_addresses_does_not_lift_the_limit_on_one_account() {
    let site = start_behind_proxy();
    let b = site.browser();
    let token = b.csrf();
    // The owner logs in from their usual address first.
    let r = login_via_proxy(&b, &token, "198.51.100.1", ADMIN.1);
    assert_eq!(r.status(), 303);
    let mut limited = false;
    for i in 0..30 {
        // The client-chosen part of the header is ignored; the proxy's entry counts.
        let r = login_via_proxy(&b, &token, &format!("6.6.6.6, 10.0.0.{i}"), "wrong");
        if r.status() == 429 {
            limited = true;
            assert!(
                i >= 5 * 4,
                "limited after {i} attempts from distinct addresses"
            );
            break;
        }
    }
    assert!(
        limited,
        "30 failed logins on one account from 30 addresses were all checked"
    );
    // The account is slowed down for guessers, not locked for its owner: the right
    // password from the owner's usual address gets in at once.
    let r = login_via_proxy(&b, &token, "198.51.100.1", ADMIN.1);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    // A guesser's address is still held back.
    let r = login_via_proxy(&b, &token, "10.0.0.99", ADMIN.1);
    assert_eq!(r.status(), 429);
}

#[test]
fn forwarded_addresses_are_ignored_unless_the_proxy_is_trusted() {
    // By default no proxy is trusted: forged headers change nothing, the five failures
    // are the loopback peer's.
    let site = start();
    let b = site.browser();
    let token = b.csrf();
    for i in 0..5 {
        let r = login_via_proxy(&b, &token, &format!("10.0.0.{i}"), "wrong");
        assert_eq!(r.status(), 200);
    }
    let r = login_via_proxy(&b, &token, "10.0.0.99", ADMIN.1);
    assert_eq!(r.status(), 429, "the same client, whatever the header says");
    // Behind a trusted proxy, the left-most (client-chosen) entry is not the client:
    // rotating it does not escape the per-address limit.
    let site = start_behind_proxy();
    let b = site.browser();
    let token = b.csrf();
    for i in 0..5 {
        let r = login_via_proxy(&b, &token, &format!("10.9.9.{i}, 198.51.100.7"), "wrong");
        assert_eq!(r.status(), 200);
    }
    let r = login_via_proxy(&b, &token, "10.9.9.99, 198.51.100.7", ADMIN.1);
    assert_eq!(r.status(), 429);
    // Another client behind the same proxy is not affected.
    let r = login_via_proxy(&b, &token, "198.51.100.8", ADMIN.1);
    assert_eq!(r.status(), 303);
}
