//! `bbru test`'s third group: the site's functions driven over real HTTP against the
//! application served in-process over a DemoStorage overlay of the real database.

use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::blocking::{Client, multipart};
use zodb::DB;
use zodb_storage::{DemoStorage, Storage};

use super::{Check, error_chain};
use crate::config::{BootstrapManager, SecureCookies, ServeConfig, SiteConfig};
use crate::limits;
use crate::model::Site;
use crate::security::auth::{CSRF_FIELD, SESSION_COOKIE};

/// The steps after the instance started, in order.
const STEPS: &[(&str, Step)] = &[
    ("health", health),
    ("log in", log_in),
    ("add a folder", add_folder),
    ("add a page", add_page),
    ("view the page", view_page),
    ("edit the page", edit_page),
    ("folder listing", folder_listing),
    ("anonymous cannot edit", anonymous_cannot_edit),
    ("log out", log_out),
];

type Step = fn(&Session) -> Result<String, String>;

pub(super) fn functional(
    config: &ServeConfig,
    site: SiteConfig,
    base: Arc<dyn Storage>,
    checks: &mut Vec<Check>,
) {
    let session = match Session::start(config, site, base) {
        Ok((session, detail)) => {
            checks.push(Check::new("in-process instance", Ok(detail)));
            session
        }
        Err(reason) => {
            checks.push(Check::new("in-process instance", Err(reason)));
            for (name, _) in STEPS {
                checks.push(Check::new(
                    name,
                    Err("not run: the instance did not start".into()),
                ));
            }
            return;
        }
    };
    let mut failed: Option<&str> = None;
    for (name, step) in STEPS {
        let outcome = match failed {
            Some(earlier) => Err(format!("not run: {earlier:?} failed")),
            None => step(&session),
        };
        if outcome.is_err() && failed.is_none() {
            failed = Some(name);
        }
        checks.push(Check::new(name, outcome));
    }
    session.stop();
}

fn random_text(length: usize) -> String {
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(length)
        .map(|b| char::from(b).to_ascii_lowercase())
        .collect()
}

/// The in-process instance and the clients that drive it.
struct Session {
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    /// Logged in as the throwaway manager (once `log in` ran).
    manager: Http,
    /// Never logged in.
    anonymous: Http,
    login: String,
    password: String,
    /// Name of the folder the checks add at the root (random, so it is new).
    folder: String,
    /// A word the page's body carries, to find it rendered.
    marker: String,
}

impl Session {
    fn start(
        config: &ServeConfig,
        site: SiteConfig,
        base: Arc<dyn Storage>,
    ) -> Result<(Session, String), String> {
        let demo: Arc<dyn Storage> = Arc::new(DemoStorage::new(base, "bbru test (in memory)"));
        let db = DB::open(demo).map_err(|e| format!("opening the database: {e}"))?;
        let existed = {
            let mut conn = db.connection();
            let tx = conn.begin();
            Site::find(&tx)
                .map_err(|e| format!("reading the database: {e}"))?
                .is_some()
        };
        let login = format!("selftest-{}", random_text(8));
        let password = random_text(32);
        let mut site = site;
        site.bootstrap_manager = Some(BootstrapManager {
            login: login.clone(),
            password: Some(password.clone()),
            password_hash: None,
            keep: true,
        });
        site.security.secure_cookies = SecureCookies::Never;
        let path = config.site_config.display().to_string();
        // The instance's key when there is one (`bbru test` writes nothing); sessions of
        // this throwaway site are never seen by another instance anyway.
        let key = crate::security::key::SecretKey::load(&config.secret_key_path())
            .unwrap_or_else(|_| crate::security::key::SecretKey::random());
        // What `app` logs is about the throwaway manager and the in-memory site (that
        // the manager is still declared, that the site was created): not for the log.
        let app =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                crate::startup::app(db, site, &path, &key)
            })
            .map_err(|e| format!("building the application: {}", error_chain(&e)))?;
        if app.site.is_none() {
            return Err("the application has no site although a manager was declared".into());
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("bbru-test")
            .enable_all()
            .build()
            .map_err(|e| format!("starting the runtime: {e}"))?;
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
            .map_err(|e| format!("listening on 127.0.0.1:0: {e}"))?;
        let address = listener
            .local_addr()
            .map_err(|e| format!("listening on 127.0.0.1:0: {e}"))?;
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        runtime.spawn(crate::web::serve(Arc::new(app), listener, async {
            let _ = stopped.await;
        }));
        let base_url = format!("http://{address}");
        let session = Session {
            runtime: Some(runtime),
            stop: Some(stop),
            manager: Http::new(&base_url)?,
            anonymous: Http::new(&base_url)?,
            login: login.clone(),
            password,
            folder: format!("bbru-selftest-{}", random_text(8)),
            marker: format!("selftest{}", random_text(8)),
        };
        let site_note = if existed {
            "the database's site"
        } else {
            "the database has no site yet, so the throwaway manager created one in memory"
        };
        Ok((
            session,
            format!(
                "serving {site_note} at {base_url} over an in-memory overlay (writes go to \
                 memory only); throwaway manager {login:?}"
            ),
        ))
    }

    fn page_path(&self) -> String {
        format!("/{}/page", self.folder)
    }

    /// Stops the server; in-flight requests (there are none) finish first.
    fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_timeout(Duration::from_secs(5));
        }
    }
}

impl Drop for Session {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What a request answered.
struct Answer {
    status: u16,
    location: String,
    set_cookies: Vec<String>,
    body: String,
}

/// A cookie-keeping client that follows no redirect (the checks look at them).
struct Http {
    client: Client,
    base: String,
}

impl Http {
    fn new(base: &str) -> Result<Http, String> {
        let client = Client::builder()
            .cookie_store(true)
            .redirect(reqwest::redirect::Policy::none())
            .timeout(limits::SELFTEST_HTTP_TIMEOUT)
            .build()
            .map_err(|e| format!("making the HTTP client: {e}"))?;
        Ok(Http {
            client,
            base: base.to_owned(),
        })
    }

    fn send(
        &self,
        what: &str,
        request: reqwest::blocking::RequestBuilder,
    ) -> Result<Answer, String> {
        let response = request
            .send()
            .map_err(|e| format!("{what}: {}", error_chain(&e)))?;
        let status = response.status().as_u16();
        let headers = response.headers();
        let location = headers
            .get(reqwest::header::LOCATION)
            .and_then(|v| v.to_str().ok())
            .unwrap_or("")
            .to_owned();
        let set_cookies = headers
            .get_all(reqwest::header::SET_COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(str::to_owned)
            .collect();
        let body = response
            .text()
            .map_err(|e| format!("{what}: reading the body: {e}"))?;
        Ok(Answer {
            status,
            location,
            set_cookies,
            body,
        })
    }

    fn get(&self, path: &str) -> Result<Answer, String> {
        self.send(
            &format!("GET {path}"),
            self.client.get(format!("{}{path}", self.base)),
        )
    }

    /// GET, expecting 200 and a CSRF field; returns the body and the token.
    fn form(&self, path: &str) -> Result<(String, String), String> {
        let answer = self.get(path)?;
        expect(&answer, &format!("GET {path}"), 200)?;
        let token = csrf_in(&answer.body)
            .ok_or_else(|| format!("GET {path}: the page has no CSRF field"))?;
        Ok((answer.body, token))
    }

    fn post_form(&self, path: &str, fields: &[(&str, &str)]) -> Result<Answer, String> {
        self.send(
            &format!("POST {path}"),
            self.client
                .post(format!("{}{path}", self.base))
                .form(fields),
        )
    }

    fn post_multipart(&self, path: &str, fields: &[(&str, &str)]) -> Result<Answer, String> {
        let mut form = multipart::Form::new();
        for (name, value) in fields {
            form = form.text(name.to_string(), value.to_string());
        }
        self.send(
            &format!("POST {path}"),
            self.client
                .post(format!("{}{path}", self.base))
                .multipart(form),
        )
    }
}

/// The value of the first CSRF hidden field of a page.
fn csrf_in(html: &str) -> Option<String> {
    let marker = format!("name=\"{CSRF_FIELD}\" value=\"");
    let at = html.find(&marker)? + marker.len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

/// The text of an HTML body, shortened, for a failure's reason.
fn snippet(body: &str) -> String {
    let mut text = String::new();
    let mut in_tag = false;
    for c in body.chars() {
        match c {
            '<' => in_tag = true,
            '>' if in_tag => {
                in_tag = false;
                text.push(' ');
            }
            c if !in_tag => text.push(c),
            _ => {}
        }
    }
    let text = text.split_whitespace().collect::<Vec<_>>().join(" ");
    if text.chars().count() > 300 {
        format!("{}…", text.chars().take(300).collect::<String>())
    } else {
        text
    }
}

fn expect(answer: &Answer, what: &str, status: u16) -> Result<(), String> {
    if answer.status == status {
        return Ok(());
    }
    let mut reason = format!("{what} answered {}, expected {status}", answer.status);
    if !answer.location.is_empty() {
        reason.push_str(&format!(" (redirect to {})", answer.location));
    }
    let text = snippet(&answer.body);
    if !text.is_empty() {
        reason.push_str(&format!(": {text}"));
    }
    Err(reason)
}

/// A refusal to an anonymous client: 401 (log in) where visitors may see the page, 404
/// where it is hidden from them (a private site).
fn expect_refused(answer: &Answer, what: &str) -> Result<(), String> {
    if answer.status == 404 {
        return Ok(());
    }
    expect(answer, what, 401)
}

fn expect_text(body: &str, what: &str, wanted: &str) -> Result<(), String> {
    if body.contains(wanted) {
        Ok(())
    } else {
        Err(format!(
            "{what}: {wanted:?} not found in the page: {}",
            snippet(body)
        ))
    }
}

fn health(s: &Session) -> Result<String, String> {
    let answer = s.anonymous.get("/@@health")?;
    expect(&answer, "GET /@@health", 200)?;
    let json: serde_json::Value = serde_json::from_str(&answer.body)
        .map_err(|e| format!("GET /@@health: not JSON ({e}): {}", snippet(&answer.body)))?;
    if json["status"] != "ok" {
        return Err(format!("GET /@@health: status is not \"ok\": {json}"));
    }
    Ok(format!(
        "GET /@@health: 200, storage {}, last transaction {}",
        json["storage"].as_str().unwrap_or("?"),
        json["last_transaction"].as_str().unwrap_or("?")
    ))
}

fn log_in(s: &Session) -> Result<String, String> {
    let (_, token) = s.manager.form("/@@login")?;
    let answer = s.manager.post_form(
        "/@@login",
        &[
            ("login", &s.login),
            ("password", &s.password),
            ("came_from", "/"),
            (CSRF_FIELD, &token),
        ],
    )?;
    expect(&answer, "POST /@@login", 303)?;
    let session_cookie = format!("{SESSION_COOKIE}=");
    if !answer
        .set_cookies
        .iter()
        .any(|c| c.starts_with(&session_cookie))
    {
        return Err("POST /@@login: no session cookie was set".into());
    }
    Ok(format!(
        "logged in through the form as {:?} (session cookie set)",
        s.login
    ))
}

fn add_folder(s: &Session) -> Result<String, String> {
    let (_, token) = s.manager.form("/@@add?type=Folder")?;
    let answer = s.manager.post_multipart(
        "/@@add",
        &[
            ("type", "Folder"),
            ("id", &s.folder),
            ("title", "bbru test folder"),
            ("description", "Made by bbru test, in memory only"),
            (CSRF_FIELD, &token),
        ],
    )?;
    expect(&answer, "POST /@@add (Folder)", 303)?;
    let url = format!("/{}", s.folder);
    if !answer.location.starts_with(&format!("{url}?")) && answer.location != url {
        return Err(format!(
            "POST /@@add (Folder): redirected to {:?}, expected {url}",
            answer.location
        ));
    }
    Ok(format!("added the folder {url} through the add form"))
}

fn add_page(s: &Session) -> Result<String, String> {
    let folder = format!("/{}", s.folder);
    let (_, token) = s.manager.form(&format!("{folder}/@@add?type=Page"))?;
    let body = format!("Checked by **bbru test**: {}.", s.marker);
    let answer = s.manager.post_multipart(
        &format!("{folder}/@@add"),
        &[
            ("type", "Page"),
            ("id", "page"),
            ("title", "bbru test page"),
            ("body", &body),
            (CSRF_FIELD, &token),
        ],
    )?;
    expect(&answer, &format!("POST {folder}/@@add (Page)"), 303)?;
    let url = s.page_path();
    if !answer.location.starts_with(&url) {
        return Err(format!(
            "POST {folder}/@@add (Page): redirected to {:?}, expected {url}",
            answer.location
        ));
    }
    Ok(format!("added the page {url} through the add form"))
}

fn view_page(s: &Session) -> Result<String, String> {
    let url = s.page_path();
    let answer = s.manager.get(&url)?;
    let what = format!("GET {url}");
    expect(&answer, &what, 200)?;
    expect_text(&answer.body, &what, "<h1>bbru test page</h1>")?;
    expect_text(&answer.body, &what, "<strong>bbru test</strong>")?;
    expect_text(&answer.body, &what, &s.marker)?;
    Ok(format!("{url} shows its title and its Markdown rendered"))
}

fn edit_page(s: &Session) -> Result<String, String> {
    let url = s.page_path();
    let edit = format!("{url}/@@edit");
    let (form, token) = s.manager.form(&edit)?;
    expect_text(&form, &format!("GET {edit}"), &s.marker)?;
    let body = format!("Edited by *bbru test*: {}.", s.marker);
    let answer = s.manager.post_multipart(
        &edit,
        &[
            ("title", "bbru test page, edited"),
            ("description", "Edited by bbru test"),
            ("body", &body),
            (CSRF_FIELD, &token),
        ],
    )?;
    expect(&answer, &format!("POST {edit}"), 303)?;
    let answer = s.manager.get(&url)?;
    let what = format!("GET {url} after the edit");
    expect(&answer, &what, 200)?;
    expect_text(&answer.body, &what, "<h1>bbru test page, edited</h1>")?;
    expect_text(&answer.body, &what, "<em>bbru test</em>")?;
    Ok(format!(
        "saved {url} through the edit form; it shows the new title and body"
    ))
}

fn folder_listing(s: &Session) -> Result<String, String> {
    let folder = format!("/{}", s.folder);
    let answer = s.manager.get(&folder)?;
    let what = format!("GET {folder}");
    expect(&answer, &what, 200)?;
    expect_text(&answer.body, &what, &format!("href=\"{}\"", s.page_path()))?;
    expect_text(&answer.body, &what, "bbru test page, edited")?;
    Ok(format!("{folder} lists the page under its new title"))
}

fn anonymous_cannot_edit(s: &Session) -> Result<String, String> {
    let url = s.page_path();
    let edit = format!("{url}/@@edit");
    let answer = s.anonymous.get(&edit)?;
    expect_refused(&answer, &format!("GET {edit} (anonymous)"))?;
    // With a valid CSRF token, so only the permission stands in the way.
    let (_, token) = s.anonymous.form("/@@login")?;
    let answer = s.anonymous.post_multipart(
        &edit,
        &[
            ("title", "defaced"),
            ("body", "defaced"),
            (CSRF_FIELD, &token),
        ],
    )?;
    expect_refused(&answer, &format!("POST {edit} (anonymous)"))?;
    let answer = s.manager.get(&url)?;
    expect(&answer, &format!("GET {url}"), 200)?;
    if answer.body.contains("defaced") {
        return Err(format!("an anonymous POST {edit} changed the page"));
    }
    Ok(format!(
        "GET and POST {edit} are refused to an anonymous client; the page is unchanged"
    ))
}

fn log_out(s: &Session) -> Result<String, String> {
    let (_, token) = s.manager.form("/@@login")?;
    let answer = s.manager.post_form("/@@logout", &[(CSRF_FIELD, &token)])?;
    expect(&answer, "POST /@@logout", 303)?;
    let edit = format!("{}/@@edit", s.page_path());
    let answer = s.manager.get(&edit)?;
    expect_refused(&answer, &format!("GET {edit} after logging out"))?;
    Ok("logged out: the edit form asks for a login again".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_snippets_are_text() {
        assert_eq!(
            snippet("<html><h1>Not found.</h1>\n<p>x</p></html>"),
            "Not found. x"
        );
    }
}
