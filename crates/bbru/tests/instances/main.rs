//! Two `bbru serve` instances as clients of one `bbru-zeo` server, as a deployment
//! behind a load balancer runs them: what is changed through one is seen through the
//! other on the very next request (no sleep, no retry: each request's transaction
//! starts by syncing with the server), a session cookie made by one is valid on the
//! other (the secret that signs it is derived from the database's and the key file they
//! share), and after every process is SIGKILLed the `Data.fs` holds it all (`bbru-zeo
//! check` passes, and an instance on the embedded file serves the last edit and still
//! accepts the session).
//!
//! The instances start one after the other: the first creates the site on the empty
//! database; started together, both would find no site and both would commit its
//! creation, and the slower one's commit would conflict (startup does not retry), so
//! the second instance would exit.  A deployment starts a second instance after the
//! first is healthy, as this test does.
//!
//! `concurrent.rs`: clients creating and editing at the same time through both instances.

#[path = "../common/mod.rs"]
mod common;
mod concurrent;
mod postgres;

use std::collections::BTreeMap;
use std::process::Command;

use reqwest::blocking::{Client, Response, multipart};
use reqwest::header::{COOKIE, HeaderMap, LOCATION, SET_COOKIE};

use common::{ADMIN, Instance, Storage, Zeo};

/// A user agent that keeps its cookies itself, as one browser does for a host: the same
/// cookies go to every instance (cookies are per host, not per port), and the tests can
/// also send none.
struct Agent {
    http: Client,
    cookies: BTreeMap<String, String>,
}

impl Agent {
    fn new() -> Agent {
        Agent {
            http: Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .expect("HTTP client"),
            cookies: BTreeMap::new(),
        }
    }

    fn cookie_header(&self) -> String {
        self.cookies
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join("; ")
    }

    fn keep_cookies(&mut self, headers: &HeaderMap) {
        for value in headers.get_all(SET_COOKIE) {
            let value = value.to_str().expect("ASCII cookie");
            let pair = value.split(';').next().unwrap_or("");
            if let Some((name, v)) = pair.split_once('=') {
                if v.is_empty() {
                    self.cookies.remove(name);
                } else {
                    self.cookies.insert(name.to_owned(), v.to_owned());
                }
            }
        }
    }

    fn send(&mut self, request: reqwest::blocking::RequestBuilder) -> Response {
        let response = request
            .header(COOKIE, self.cookie_header())
            .send()
            .expect("HTTP request");
        self.keep_cookies(response.headers());
        response
    }

    fn get(&mut self, at: &Instance, path: &str) -> Response {
        let request = self.http.get(at.url(path));
        self.send(request)
    }

    /// GET, expecting 200; the body.
    fn page(&mut self, at: &Instance, path: &str) -> String {
        let r = self.get(at, path);
        assert_eq!(r.status(), 200, "GET {}{path}", at.base);
        r.text().expect("body")
    }

    /// The CSRF token of the forms `at` serves to this agent.
    fn csrf(&mut self, at: &Instance) -> String {
        let html = self.page(at, "/@@login");
        let marker = "name=\"_csrf\" value=\"";
        let start = html.find(marker).expect("a CSRF field on the login form") + marker.len();
        let end = html[start..].find('"').expect("end of the CSRF value");
        html[start..start + end].to_owned()
    }

    fn login(&mut self, at: &Instance) {
        let token = self.csrf(at);
        let request = self.http.post(at.url("/@@login")).form(&[
            ("login", ADMIN.0),
            ("password", ADMIN.1),
            ("came_from", "/"),
            ("_csrf", &token),
        ]);
        let r = self.send(request);
        assert_eq!(r.status(), 303, "login: {}", r.text().unwrap_or_default());
        assert!(
            self.cookies.contains_key("bbru_session"),
            "no session cookie after the login: {:?}",
            self.cookies
        );
    }

    /// POSTs the multipart form `fields` (with this agent's CSRF token for `at`) and
    /// expects a redirect; returns where to.
    fn submit(&mut self, at: &Instance, path: &str, fields: &[(&str, &str)]) -> String {
        self.submit_with_file(at, path, fields, None)
    }

    /// [`Agent::submit`] with a file in the form's `file` field: `(name, bytes)`.
    fn submit_with_file(
        &mut self,
        at: &Instance,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, Vec<u8>)>,
    ) -> String {
        let mut form = multipart::Form::new().text("_csrf", self.csrf(at));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some((name, data)) = file {
            let part = multipart::Part::bytes(data)
                .file_name(name.to_owned())
                .mime_str("application/octet-stream")
                .expect("a MIME type");
            form = form.part("file", part);
        }
        let request = self.http.post(at.url(path)).multipart(form);
        let r = self.send(request);
        Self::redirected(at, path, r)
    }

    /// [`Agent::submit`] that also takes a 409 (a conflict left after the retries):
    /// `None` then. Anything else but a redirect fails the test.
    fn submit_allowing_conflict(
        &mut self,
        at: &Instance,
        path: &str,
        fields: &[(&str, &str)],
    ) -> Option<String> {
        let mut form = multipart::Form::new().text("_csrf", self.csrf(at));
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        let request = self.http.post(at.url(path)).multipart(form);
        let r = self.send(request);
        if r.status() == 409 {
            return None;
        }
        Some(Self::redirected(at, path, r))
    }

    /// Where a 303 answer sends; fails the test on any other.
    fn redirected(at: &Instance, path: &str, r: Response) -> String {
        let status = r.status();
        let location = r
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        assert_eq!(
            status,
            303,
            "POST {}{path}: {}",
            at.base,
            r.text().unwrap_or_default()
        );
        location
    }
}

/// The second instance serves the site the first created; a page an admin adds through
/// `one` is served by `two` on the very next request.  The admin's and a visitor's
/// agents, for what the test does next.
fn added_through_one_seen_through_two(one: &Instance, two: &Instance) -> (Agent, Agent) {
    let mut visitor = Agent::new();
    assert!(visitor.page(two, "/").contains("Test site"));
    let mut admin = Agent::new();
    admin.login(one);
    let to = admin.submit(
        one,
        "/@@add",
        &[
            ("type", "Page"),
            ("id", "news"),
            ("title", "News"),
            ("body", "The *first* version."),
        ],
    );
    assert!(to.starts_with("/news?"), "redirected to {to}");
    let html = visitor.page(two, "/news");
    assert!(html.contains("<h1>News</h1>"), "{html}");
    assert!(html.contains("<em>first</em>"), "{html}");
    assert!(visitor.page(two, "/").contains("href=\"/news\""));
    (admin, visitor)
}

#[test]
fn two_instances_share_one_zeo_server() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let site_config = common::write_site_config(root);
    let data_fs = root.join("Data.fs");
    let mut zeo = Zeo::start(&data_fs);
    let storage = Storage::Zeo(zeo.address.clone());
    // One after the other: the first creates the site (see the module's comment).
    let mut one = Instance::start(root, "one", &site_config, &storage);
    let mut two = Instance::start(root, "two", &site_config, &storage);
    let (mut admin, mut visitor) = added_through_one_seen_through_two(&one, &two);
    // They saw each other's changes at once with read leases (bbru-zeo's default):
    // requests start without a round trip to the server.
    for instance in [&one, &two] {
        let log = std::fs::read_to_string(&instance.process.log).unwrap_or_default();
        assert!(
            log.contains("read lease held"),
            "{}: no read lease\n{log}",
            instance.base
        );
        // Said by /@@health and the Prometheus gauge. (Polled a little: a renewal late on
        // a loaded machine lapses the lease for a moment.)
        let asked = std::time::Instant::now();
        loop {
            let (status, health, _) = get_json(&Client::new(), &instance.url("/@@health"));
            assert_eq!(status, 200, "{health}");
            let gauge = lease_gauge(instance);
            if health["read_lease"] == true && gauge == Some(1) {
                break;
            }
            assert!(
                asked.elapsed() < std::time::Duration::from_secs(10),
                "/@@health: {health}; bbru_zeo_read_lease {gauge:?}"
            );
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
    }

    // Page views of a ZEO instance run on the worker that took the request once their
    // objects are cached (web/workers.rs): the first view after the edit needs the
    // server for the changed page and runs again on the blocking pool; the next one
    // stays in line, and both show the edit.  (The counters are read before the edit:
    // the metrics page carries the navigation, which would load the page.)
    let refused = metric(&two, "bbru_views_in_line_refused");
    admin.submit(
        &one,
        "/news/@@edit",
        &[("title", "News"), ("body", "The **second** version.")],
    );
    let html = visitor.page(&two, "/news");
    assert!(html.contains("<strong>second</strong>"), "{html}");
    assert!(!html.contains("<em>first</em>"), "{html}");
    assert!(
        metric(&two, "bbru_views_in_line_refused") > refused,
        "the view of a changed page was not run again where it may wait"
    );
    let (refused, in_line) = (
        metric(&two, "bbru_views_in_line_refused"),
        metric(&two, "bbru_views_in_line"),
    );
    assert_eq!(visitor.page(&two, "/news"), html);
    assert_eq!(metric(&two, "bbru_views_in_line_refused"), refused);
    assert_eq!(metric(&two, "bbru_views_in_line"), in_line + 1);

    // The session made by one is valid on two: its edit form, and an edit through it
    // (the CSRF token one issued is valid there too).
    assert_eq!(
        visitor.get(&two, "/news/@@edit").status(),
        401,
        "anonymous may not edit"
    );
    let form = admin.page(&two, "/news/@@edit");
    assert!(form.contains("Logged in as"), "{form}");
    admin.submit(
        &two,
        "/news/@@edit",
        &[
            ("title", "News, edited on two"),
            ("body", "The third version."),
        ],
    );
    let html = visitor.page(&one, "/news");
    assert!(html.contains("<h1>News, edited on two</h1>"), "{html}");
    assert!(html.contains("The third version."), "{html}");

    // Nothing is flushed on the way out: SIGKILL to both instances and the server.
    one.kill();
    two.kill();
    zeo.kill();

    let check = Command::new(common::zeo_binary())
        .arg("check")
        .arg(&data_fs)
        .output()
        .expect("run bbru-zeo check");
    assert!(
        check.status.success(),
        "bbru-zeo check {}: {}{}",
        data_fs.display(),
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );

    // The file itself, opened by an instance without a server: the last edit, and the
    // admin's session is still valid (the secret was read from the file).
    let three = Instance::start(root, "three", &site_config, &Storage::File(data_fs));
    let html = visitor.page(&three, "/news");
    assert!(html.contains("<h1>News, edited on two</h1>"), "{html}");
    assert!(html.contains("The third version."), "{html}");
    let form = admin.page(&three, "/news/@@edit");
    assert!(form.contains("Logged in as"), "{form}");
}

/// The `bbru_zeo_read_lease` gauge of an instance's `/@@metrics`.
fn lease_gauge(at: &Instance) -> Option<u64> {
    let text = reqwest::blocking::get(at.url("/@@metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("bbru_zeo_read_lease "))
        .and_then(|v| v.trim().parse().ok())
}

/// A counter of an instance's `/@@metrics` (loopback clients may read them).
pub(crate) fn metric(at: &Instance, name: &str) -> u64 {
    let text = reqwest::blocking::get(at.url("/@@metrics"))
        .and_then(|r| r.text())
        .unwrap_or_default();
    let prefix = format!("{name}_total ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in the metrics of {}", at.base))
}

/// GET `url`: the status and the body parsed as JSON (`Null` if it is not JSON), and
/// how long the answer took.
fn get_json(
    http: &Client,
    url: &str,
) -> (reqwest::StatusCode, serde_json::Value, std::time::Duration) {
    let asked = std::time::Instant::now();
    let r = http
        .get(url)
        .header(reqwest::header::ACCEPT, "application/json")
        .send()
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = r.status();
    let body = r.text().unwrap_or_default();
    (
        status,
        serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        asked.elapsed(),
    )
}

/// With its `bbru-zeo` stopped, an instance tells the truth at once and keeps no request
/// waiting: `/@@health` answers 503 with the reason (not 200 from the caches), pages
/// and the API answer 503 quickly (not after a 30 s wait, not 500).  Once the server is
/// back on the same address, both recover by themselves: same instance, no restart.
#[test]
fn an_instance_answers_503_while_its_zeo_server_is_away_and_recovers_when_it_is_back() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = dir.path().join("Data.fs");
    let mut zeo = Zeo::start(&file);
    let address = zeo.address.clone();
    let site_config = common::write_site_config(dir.path());
    let instance = Instance::start(
        dir.path(),
        "one",
        &site_config,
        &Storage::Zeo(address.clone()),
    );
    let http = Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let health = instance.url("/@@health");

    let (status, up, _) = get_json(&http, &health);
    assert_eq!(status, 200, "{up}");
    assert_eq!(up["status"], "ok", "{up}");
    assert_eq!(up["storage_kind"], "zeo", "{up}");
    assert_eq!(up["storage_location"], address.as_str(), "{up}");
    assert_eq!(up["version"], env!("CARGO_PKG_VERSION"), "{up}");
    assert!(up["last_transaction"].is_string(), "{up}");
    let time = up["last_transaction_time"].as_str().unwrap_or("");
    assert!(time.ends_with('Z') && time.len() == 20, "{up}");
    assert_eq!(get_json(&http, &instance.url("/")).0, 200);

    zeo.stop();
    let stopped = std::time::Instant::now();
    let down = loop {
        let (status, body, _) = get_json(&http, &health);
        if status == 503 {
            break body;
        }
        assert_eq!(status, 200, "{body}");
        assert!(
            stopped.elapsed() < std::time::Duration::from_secs(1),
            "/@@health still says {body} {:?} after the server stopped",
            stopped.elapsed()
        );
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    assert_eq!(down["status"], "unavailable", "{down}");
    assert!(
        down["reason"]
            .as_str()
            .is_some_and(|r| r.contains(&address)),
        "{down}"
    );
    assert_eq!(down["storage_kind"], "zeo", "{down}");
    assert_eq!(down["pid"], up["pid"], "{down}");
    for path in ["/", "/@@login", "/@@health"] {
        let (status, body, took) = get_json(&http, &instance.url(path));
        assert_eq!(status, 503, "GET {path}: {body}");
        assert!(
            took < std::time::Duration::from_secs(10),
            "GET {path} took {took:?}"
        );
    }
    let (status, body, _) = get_json(&http, &instance.url("/"));
    assert_eq!(status, 503);
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("database")),
        "{body}"
    );

    let _zeo = Zeo::start_on(&file, &address);
    let back = std::time::Instant::now();
    loop {
        let (status, body, _) = get_json(&http, &health);
        if status == 200 {
            assert_eq!(body["status"], "ok", "{body}");
            assert_eq!(body["pid"], up["pid"], "the same instance: {body}");
            break;
        }
        assert!(
            back.elapsed() < std::time::Duration::from_secs(30),
            "not healthy again: {body}"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert_eq!(get_json(&http, &instance.url("/")).0, 200);
}

/// A `bbru-zeo` that keeps its connections but stops answering (SIGSTOP): a page view
/// (run in line) and a write (on the blocking pool) each answer 503 once the sync has
/// waited its bound (`ZEO_ANSWER_WAIT`, 10 s), rather than never; after SIGCONT the same
/// instance serves again.
#[test]
fn a_page_view_answers_503_when_the_zeo_server_stops_answering() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let zeo = Zeo::start(&dir.path().join("Data.fs"));
    let site_config = common::write_site_config(dir.path());
    let instance = Instance::start(
        dir.path(),
        "one",
        &site_config,
        &Storage::Zeo(zeo.address.clone()),
    );
    let http = Client::builder()
        .timeout(std::time::Duration::from_secs(60))
        .build()
        .expect("HTTP client");
    let page = instance.url("/");
    assert_eq!(get_json(&http, &page).0, 200);
    let pid = zeo.process.pid().expect("bbru-zeo runs").to_string();
    let signal = |name: &str| {
        let sent = Command::new("kill").args([name, &pid]).status();
        assert!(sent.is_ok_and(|s| s.success()), "kill {name} {pid}");
    };
    signal("-STOP");
    // Until its read lease runs out (a second at most: its renewals go unanswered)
    // the instance may start requests without asking the server, and cached pages are
    // served; after that every request waits for the server's answer.
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, body, took) = get_json(&http, &page);
    let asked = std::time::Instant::now();
    let write = http
        .post(instance.url("/"))
        .basic_auth(ADMIN.0, Some(ADMIN.1))
        .json(&serde_json::json!({"@type": "Page", "id": "during", "title": "During"}))
        .send()
        .expect("POST");
    let write_took = asked.elapsed();
    signal("-CONT");
    let bounded = std::time::Duration::from_secs(9)..std::time::Duration::from_secs(30);
    assert_eq!(status, 503, "{body}");
    assert!(bounded.contains(&took), "the view answered after {took:?}");
    assert_eq!(write.status(), 503, "{:?}", write.text());
    assert!(
        bounded.contains(&write_took),
        "the write answered after {write_took:?}"
    );
    let back = std::time::Instant::now();
    while get_json(&http, &page).0 != 200 {
        assert!(
            back.elapsed() < std::time::Duration::from_secs(30),
            "not serving again"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// The search index is in the database: a change committed through one instance is in
/// the other's results at its next query, and gone from both when changed again.
#[test]
fn two_instances_search_one_index() {
    let dir = tempfile::tempdir().expect("temporary directory");
    let root = dir.path();
    let site_config = common::write_site_config(root);
    let zeo = Zeo::start(&root.join("Data.fs"));
    let storage = Storage::Zeo(zeo.address.clone());
    let one = Instance::start(root, "one", &site_config, &storage);
    let two = Instance::start(root, "two", &site_config, &storage);
    let (mut admin, mut visitor) = added_through_one_seen_through_two(&one, &two);
    let html = visitor.page(&two, "/@@search?q=versions");
    assert!(html.contains("href=\"/news\""), "{html}");
    assert!(html.contains("<mark>version</mark>"), "{html}");
    admin.submit(
        &two,
        "/news/@@edit",
        &[("title", "News"), ("body", "Установка и настройка.")],
    );
    for at in [&one, &two] {
        let html = visitor.page(at, "/@@search?q=установки");
        assert!(html.contains("href=\"/news\""), "{}: {html}", at.base);
        let html = visitor.page(at, "/@@search?q=versions");
        assert!(html.contains("Results: 0"), "{}: {html}", at.base);
    }
}
