//! Bounded work per request (issue 10, resource exhaustion): bodies are read only once a
//! request is admitted and parsed with caps; password checks are few, pooled and
//! remembered for HTTP Basic; API tokens; header, body, keep-alive and drain timeouts;
//! pages rendered once; metrics labels bounded.  The memory bounds are checked on real
//! `bbru serve` processes (their peak RSS, `VmHWM`).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bbru::config::{HttpSettings, MetricsAccess, SiteConfig};
use reqwest::blocking::Client;
use zodb_storage::MemoryStorage;

use crate::common::{self, Instance};
use crate::users::add_user;
use crate::{ADMIN, Site, counter, site_config, start, start_with, start_with_http};

/// How long a test waits for an answer the server must give (generous: not a speed
/// assertion, only a bound on a wait that would otherwise be forever).
const WAIT: Duration = Duration::from_secs(15);

/// Writes `data` on a fresh connection to `base` and reads until the server closes it
/// (or [`WAIT`] passes); returns what was read.
fn exchange(base: &str, data: &[u8]) -> String {
    let mut stream = TcpStream::connect(base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream.write_all(data).unwrap();
    read_to_close(&mut stream)
}

fn read_to_close(stream: &mut TcpStream) -> String {
    let mut out = Vec::new();
    let mut buffer = [0u8; 8192];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) | Err(_) => break,
            Ok(n) => out.extend_from_slice(&buffer[..n]),
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

fn basic() -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
    )
}

#[test]
fn anonymous_bodies_for_views_anonymous_may_not_use_are_refused_unread() {
    let site = start();
    // 20 MiB declared, none sent: the answer comes without waiting for the body.
    let reply = exchange(
        &site.base,
        b"POST /@@add HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 20971520\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
}

#[test]
fn refused_small_bodies_are_read_so_the_connection_stays_usable() {
    // A small refused body is read before the answer: a client still writing it gets
    // the answer (not a reset), and the connection serves the next request.
    let site = start();
    let mut stream = TcpStream::connect(site.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let body = "title=defaced&body=defaced";
    let head = format!(
        "POST /@@add HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: {}\r\n\r\n",
        body.len()
    );
    stream.write_all(head.as_bytes()).unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stream.write_all(body.as_bytes()).unwrap();
    stream
        .write_all(b"GET /@@health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let replies = read_to_close(&mut stream);
    assert!(replies.starts_with("HTTP/1.1 401"), "{replies}");
    assert!(
        replies.matches("HTTP/1.1 ").count() == 2 && replies.contains("HTTP/1.1 200"),
        "{replies}"
    );
}

#[test]
fn forms_of_small_views_refuse_large_bodies_unread() {
    let site = start();
    let reply = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 1048576\r\n\r\n",
    );
    assert!(reply.starts_with("HTTP/1.1 413"), "{reply}");
}

#[test]
fn form_fields_multipart_parts_and_json_are_capped() {
    let site = start();
    let client = Client::new();
    let form = "a=1&".repeat(3000);
    let r = client
        .post(format!("{}/@@add", site.base))
        .header("authorization", basic())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("more than 2000 fields"));
    let json = |body: String| {
        client
            .post(format!("{}/", site.base))
            .header("authorization", basic())
            .header("content-type", "application/json")
            .body(body)
            .send()
            .unwrap()
    };
    let r = json("[".repeat(40) + &"]".repeat(40));
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("nests deeper than 32"));
    let r = json(format!("[{}0]", "0,".repeat(20_000)));
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("more than 10000 values"));
    let mut multipart = reqwest::blocking::multipart::Form::new();
    for i in 0..150 {
        multipart = multipart.text(format!("f{i}"), "x");
    }
    let r = client
        .post(format!("{}/@@add", site.base))
        .header("authorization", basic())
        .multipart(multipart)
        .send()
        .unwrap();
    assert_eq!(r.status(), 413);
    assert!(r.text().unwrap().contains("more than 100 parts"));
}

#[test]
fn basic_credentials_are_verified_once_until_the_password_changes() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let client = Client::new();
    let get = |password: &str| {
        client
            .get(format!("{}/", site.base))
            .header("accept", "application/json")
            .basic_auth("bob", Some(password))
            .send()
            .unwrap()
            .status()
    };
    let before = counter(&site.base, "bbru_password_checks");
    for _ in 0..10 {
        assert_eq!(get("bob-password"), 200);
    }
    assert_eq!(counter(&site.base, "bbru_password_checks"), before + 1);
    let r = admin.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "bob"),
            ("password", "new-bob-password"),
            ("password2", "new-bob-password"),
        ],
    );
    assert_eq!(r.status(), 303);
    // The remembered verification was for the old hash: refused at once.
    assert_eq!(get("bob-password"), 401);
    assert_eq!(get("new-bob-password"), 200);
}

#[test]
fn unknown_and_known_logins_cost_one_password_check_each() {
    let site = start();
    add_user(&site.admin(), "bob");
    let client = Client::new();
    for (login, password) in [
        ("nobody", "whatever-password"),
        ("bob", "wrong-password"),
        (ADMIN.0, "wrong-password"),
    ] {
        let before = counter(&site.base, "bbru_password_checks");
        let r = client
            .get(format!("{}/", site.base))
            .header("accept", "application/json")
            .basic_auth(login, Some(password))
            .send()
            .unwrap();
        assert_eq!(r.status(), 401, "{login}");
        assert_eq!(
            counter(&site.base, "bbru_password_checks"),
            before + 1,
            "{login}"
        );
    }
}

#[test]
fn api_tokens_authenticate_until_the_password_changes() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let client = Client::new();
    let login = |login: &str, password: &str| {
        client
            .post(format!("{}/@login", site.base))
            .json(&serde_json::json!({"login": login, "password": password}))
            .send()
            .unwrap()
    };
    assert_eq!(login("bob", "wrong-password").status(), 401);
    let r = login(ADMIN.0, ADMIN.1);
    assert_eq!(r.status(), 200);
    let admin_token = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let users = |token: &str| {
        client
            .get(format!("{}/@@users", site.base))
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(users(&admin_token), 200);
    assert_eq!(users("forged.token"), 401);
    let bob_token = login("bob", "bob-password")
        .json::<serde_json::Value>()
        .unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    // Tokens need no password check per request, nor a CSRF token for changes.
    let before = counter(&site.base, "bbru_password_checks");
    assert_eq!(users(&bob_token), 403);
    let r = client
        .post(format!("{}/", site.base))
        .bearer_auth(&admin_token)
        .json(&serde_json::json!({"@type": "Page", "id": "p", "title": "P", "body": "x"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 201, "{}", r.text().unwrap());
    assert_eq!(counter(&site.base, "bbru_password_checks"), before);
    // A password change revokes the tokens with the sessions.
    let r = admin.post(
        "/@@users",
        &[
            ("action", "set_password"),
            ("login", "bob"),
            ("password", "new-bob-password"),
            ("password2", "new-bob-password"),
        ],
    );
    assert_eq!(r.status(), 303);
    assert_eq!(users(&bob_token), 401);
    // Not JSON with both fields: a clear 400.
    let r = client
        .post(format!("{}/@login", site.base))
        .json(&serde_json::json!({"login": "bob"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn metrics_labels_are_views_not_request_paths() {
    let site = start();
    let client = Client::new();
    for i in 0..300 {
        let r = client
            .get(format!("{}/@@random{i}", site.base))
            .send()
            .unwrap();
        assert_eq!(r.status(), 404);
    }
    client.get(format!("{}/@@login", site.base)).send().unwrap();
    let metrics = site.browser().page("/@@metrics");
    assert!(
        metrics.contains("bbru_requests_total{view=\"other\",status=\"404\"} 300"),
        "{metrics}"
    );
    assert!(metrics.contains("view=\"login\""), "{metrics}");
    assert!(!metrics.contains("random"), "{metrics}");
    assert!(metrics.len() < 10_000, "{} bytes", metrics.len());
}

#[test]
fn metrics_access_follows_the_serve_setting() {
    let get = |site: &Site, forwarded: bool, admin: bool| {
        let mut r = Client::new().get(format!("{}/@@metrics", site.base));
        if forwarded {
            r = r.header("x-forwarded-for", "203.0.113.7");
        }
        if admin {
            r = r.basic_auth(ADMIN.0, Some(ADMIN.1));
        }
        r.send().unwrap().status()
    };
    let with = |metrics| {
        start_with_http(
            Arc::new(MemoryStorage::new("test")),
            site_config(""),
            HttpSettings {
                metrics,
                ..HttpSettings::default()
            },
        )
    };
    // The default: this host's clients only, not what a local proxy forwards.
    let site = start();
    assert_eq!(get(&site, false, false), 200);
    assert_eq!(get(&site, true, false), 403);
    let site = with(MetricsAccess::Permission);
    assert_eq!(get(&site, false, false), 401);
    assert_eq!(get(&site, true, true), 200);
    let site = with(MetricsAccess::Public);
    assert_eq!(get(&site, true, false), 200);
}

/// A site accepting 3 MiB uploads (so page bodies up to the page limit reach the check).
fn roomy_site() -> Site {
    let text = format!(
        "[site]\ntitle = \"Test site\"\nupload_size_max = 3000000\nlanguage = \"en\"\n[bootstrap_manager]\nlogin = \"{}\"\npassword = \"{}\"\n",
        ADMIN.0, ADMIN.1
    );
    start_with(
        Arc::new(MemoryStorage::new("test")),
        SiteConfig::parse(&text, std::path::Path::new("t.toml")).unwrap(),
    )
}

#[test]
fn a_page_nesting_too_deep_or_too_large_is_refused_at_save() {
    let site = roomy_site();
    let admin = site.admin();
    let r = admin.add("", "Page", "deep", "Deep", &"<div>".repeat(100_000));
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("nests HTML elements 100000 deep; at most 100 levels"),
        "{text}"
    );
    assert_eq!(admin.get("/deep").status(), 404);
    let r = Client::new()
        .post(format!("{}/", site.base))
        .header("authorization", basic())
        .json(&serde_json::json!({"@type": "Page", "id": "big", "title": "Big", "body": "a".repeat(1_100_000)}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("a page holds at most 1048576"));
}

#[test]
fn a_page_is_rendered_once_not_at_every_view() {
    let site = roomy_site();
    let admin = site.admin();
    // Large but allowed: 40 levels of <div> and 100 KB of text.
    let body = format!(
        "{}\n\n{}\n\n{}",
        "<div>".repeat(40),
        "Some *text* to render. ".repeat(4000),
        "</div>".repeat(40)
    );
    assert_eq!(admin.add("", "Page", "large", "Large", &body).status(), 303);
    let renders = counter(&site.base, "bbru_page_renders");
    let anonymous = site.browser();
    for _ in 0..10 {
        assert!(anonymous.page("/large").contains("<em>text</em>"));
    }
    let r = Client::new()
        .get(format!("{}/large", site.base))
        .header("accept", "application/json")
        .send()
        .unwrap();
    assert!(r.text().unwrap().contains("body_html"));
    assert_eq!(counter(&site.base, "bbru_page_renders"), renders + 1);
}

fn short(http: HttpSettings) -> Site {
    start_with_http(Arc::new(MemoryStorage::new("test")), site_config(""), http)
}

#[test]
fn a_half_sent_header_is_closed_after_the_header_timeout() {
    let site = short(HttpSettings {
        header_read_timeout: Duration::from_millis(500),
        keep_alive: Duration::from_secs(60),
        ..HttpSettings::default()
    });
    let started = Instant::now();
    let reply = exchange(&site.base, b"GET / HTTP/1.1\r\nHost: x\r\n");
    let waited = started.elapsed();
    assert!(!reply.contains("200 OK"), "{reply}");
    assert!(
        waited >= Duration::from_millis(400) && waited < WAIT,
        "closed after {waited:?}"
    );
}

#[test]
fn an_idle_connection_is_closed_after_keep_alive() {
    let site = short(HttpSettings {
        keep_alive: Duration::from_millis(500),
        ..HttpSettings::default()
    });
    let mut stream = TcpStream::connect(site.base.trim_start_matches("http://")).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    stream
        .write_all(b"GET /@@health HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let started = Instant::now();
    // The response, then the server closes the idle connection.
    let reply = read_to_close(&mut stream);
    assert!(reply.starts_with("HTTP/1.1 200"), "{reply}");
    assert!(started.elapsed() < WAIT, "not closed");
}

#[test]
fn a_body_that_stops_arriving_is_answered_408() {
    let site = short(HttpSettings {
        body_read_timeout: Duration::from_millis(500),
        ..HttpSettings::default()
    });
    let reply = exchange(
        &site.base,
        b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogin=adm",
    );
    assert!(reply.starts_with("HTTP/1.1 408"), "{reply}");
}

// ---- Real processes ---------------------------------------------------------------

const RSS_MAX: u64 = 200 * 1024 * 1024;

fn instance(dir: &std::path::Path, extra: &str) -> Instance {
    let site = common::write_site_config(dir);
    Instance::start_configured(dir, "bbru", &site, &dir.join("Data.fs"), extra)
}

#[test]
fn hostile_bodies_keep_the_instance_under_200_mb() {
    let dir = tempfile::tempdir().unwrap();
    let instance = instance(dir.path(), "");
    let base = instance.base.clone();
    const SIZE: usize = 20 * 1024 * 1024;
    let bodies: Vec<(&str, &str, Vec<u8>)> = vec![
        (
            "/@@add",
            "application/x-www-form-urlencoded",
            b"a&".repeat(SIZE / 2),
        ),
        ("/", "application/json", {
            let mut b = b"[".to_vec();
            b.extend(b"0,".repeat(SIZE / 2 - 1));
            b.push(b'0');
            b.push(b']');
            b
        }),
        ("/", "application/json", b"[".repeat(SIZE)),
        ("/@@add", "multipart/form-data; boundary=XX", {
            b"--XX\r\nContent-Disposition: form-data; name=\"a\"\r\n\r\nx\r\n".repeat(SIZE / 52)
        }),
    ];
    for round in 0..2 {
        let threads: Vec<_> = bodies
            .iter()
            .cloned()
            .map(|(path, content_type, body)| {
                let base = base.clone();
                std::thread::spawn(move || {
                    let client = Client::builder().timeout(Duration::from_secs(120)).build().unwrap();
                    let r = client
                        .post(format!("{base}{path}"))
                        .header("authorization", basic())
                        .header("content-type", content_type)
                        .body(body)
                        .send()
                        .unwrap();
                    // Refused with a reason (or 503 while other bodies fill the budget).
                    assert!(
                        [413, 400, 503].contains(&r.status().as_u16()),
                        "{path} {content_type}: {}",
                        r.status()
                    );
                    // The anonymous twin is refused before its body is read.
                    let reply = exchange(
                        &base,
                        format!("POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {content_type}\r\nContent-Length: {SIZE}\r\n\r\n").as_bytes(),
                    );
                    assert!(reply.starts_with("HTTP/1.1 401"), "{reply}");
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let peak = instance.process.peak_rss();
        eprintln!(
            "hostile bodies, round {round}: peak RSS {} MB",
            peak / 1024 / 1024
        );
        assert!(
            peak < RSS_MAX,
            "round {round}: peak RSS {} MB",
            peak / 1024 / 1024
        );
    }
}

#[test]
fn repeated_basic_auth_keeps_the_instance_under_200_mb() {
    let dir = tempfile::tempdir().unwrap();
    let instance = instance(dir.path(), "");
    let base = instance.base.clone();
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let base = base.clone();
            std::thread::spawn(move || {
                let client = Client::new();
                for i in 0..100 {
                    let r = client
                        .get(format!("{base}/"))
                        .header("accept", "application/json")
                        .basic_auth(ADMIN.0, Some(ADMIN.1))
                        .send()
                        .unwrap();
                    assert_eq!(r.status(), 200);
                    if i % 10 == 0 {
                        // A fresh argon2 check each: a token login, and an unknown login.
                        let r = client
                            .post(format!("{base}/@login"))
                            .json(&serde_json::json!({"login": ADMIN.0, "password": ADMIN.1}))
                            .send()
                            .unwrap();
                        assert_eq!(r.status(), 200);
                        let r = client
                            .get(format!("{base}/"))
                            .basic_auth(format!("nobody{t}-{i}"), Some("guess-password"))
                            .send()
                            .unwrap();
                        assert!([401, 503].contains(&r.status().as_u16()));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let peak = instance.process.peak_rss();
    eprintln!("repeated Basic auth: peak RSS {} MB", peak / 1024 / 1024);
    assert!(peak < RSS_MAX, "peak RSS {} MB", peak / 1024 / 1024);
}

#[test]
fn a_stopping_instance_with_half_sent_requests_exits_0_within_the_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let mut instance = instance(
        dir.path(),
        "[http]\nheader_read_timeout_seconds = 600\nbody_read_timeout_seconds = 600\ndrain_timeout_seconds = 1\n",
    );
    let address = instance.address().to_owned();
    let mut half_header = TcpStream::connect(&address).unwrap();
    half_header
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut half_body = TcpStream::connect(&address).unwrap();
    half_body
        .write_all(b"POST /@@login HTTP/1.1\r\nHost: x\r\nContent-Type: application/x-www-form-urlencoded\r\nContent-Length: 100\r\n\r\nlogin=")
        .unwrap();
    // Both are accepted and the second request is being read.
    std::thread::sleep(Duration::from_millis(300));
    let stopping = Instant::now();
    instance.process.terminate();
    let status = instance.process.wait_exit(WAIT);
    assert!(
        status.is_some_and(|s| s.success()),
        "exit status {status:?} after {:?}",
        stopping.elapsed()
    );
    drop((half_header, half_body));
}
