//! `bbru test`: the release's own checks, run against an installation's configuration
//! before its instance starts (the seed's step 5: "having first run the tests, start the
//! application": `bin/test`, then `bin/paster serve --daemon`).
//!
//! This module owns what those checks are and how they are made; the CLI only prints the
//! [`Check`]s [`run`] returns (nothing is printed here) and exits non-zero if one failed.
//! The checks come in three groups, in this order:
//!
//! 1. **Configuration**: `etc/site.toml` parses; the listen address is a socket address;
//!    the directories of the pid file and of the log file exist, or can be created (the
//!    nearest existing ancestor is a writable directory; nothing is created); the
//!    embedded Data.fs's directory exists and is writable.
//! 2. **Connectivity**: the configured storage is opened *read-only*
//!    (`FileStorage::open_read_only`, which takes no lock, so the previous release may
//!    keep running on it; or a ZEO `ClientStorage` registered read-only, waiting at most
//!    [`limits::SELFTEST_ZEO_WAIT`]) and its last transaction is reported.  A Data.fs that does not exist
//!    in an existing directory is *not* a failure: that is a new installation, whose
//!    database `bbru serve` creates; the functional checks then run on an empty
//!    database.
//! 3. **Functional**: the read-only storage is wrapped in a [`DemoStorage`] overlay, so
//!    every write goes to memory and the database is untouched (the base could not be
//!    written anyway: it is open read-only).  The application is built over it with
//!    [`startup::app`](crate::startup::app) and a copy of the site configuration whose
//!    bootstrap manager is a throwaway one (login and password made up for this run,
//!    `keep = true` so that a local manager does not disable it; a database without a
//!    site gets one in the overlay, created by that manager), served in-process on
//!    `127.0.0.1:0`, and driven over real HTTP with a cookie-keeping client, the way a
//!    browser uses the site: health, log in through the form (with the CSRF token of the
//!    login page), add a folder and a page through the add forms, view the page
//!    (rendered Markdown), edit it, see it in the folder's listing, check an anonymous
//!    client is asked to log in (401) when it tries to edit, log out.  Each step is one
//!    check; after a failed step the remaining ones are reported as not run.
//!
//! The copy of the site configuration also sets `secure_cookies = "never"`: the checks
//! talk plain HTTP to 127.0.0.1, where a client keeps no `Secure` cookie.
//!
//! [`run`] blocks (it runs its own runtime for the server and a blocking HTTP client):
//! call it from a plain thread, never from inside an async runtime.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use rand::distr::Alphanumeric;
use reqwest::blocking::{Client, multipart};
use zodb::DB;
use zodb_storage::{DemoStorage, FileStorage, MemoryStorage, Storage, Tid};

use crate::config::{BootstrapManager, SecureCookies, ServeConfig, SiteConfig, StorageConfig};
use crate::limits;
use crate::model::Site;
use crate::security::auth::{CSRF_FIELD, SESSION_COOKIE};

/// One check: its name, and what it found (`Ok`) or why it failed (`Err`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Check {
    pub name: String,
    pub outcome: Result<String, String>,
}

impl Check {
    fn new(name: &str, outcome: Result<String, String>) -> Check {
        Check {
            name: name.to_owned(),
            outcome,
        }
    }

    pub fn passed(&self) -> bool {
        self.outcome.is_ok()
    }
}

/// `ok    name: detail` or `FAIL  name: reason`, one line.
impl fmt::Display for Check {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.outcome {
            Ok(detail) => write!(f, "ok    {}: {detail}", self.name),
            Err(reason) => write!(f, "FAIL  {}: {reason}", self.name),
        }
    }
}

/// Whether every check passed.
pub fn all_passed(checks: &[Check]) -> bool {
    checks.iter().all(Check::passed)
}

/// Runs the checks (see the module documentation) against `config`; writes nothing to
/// its database, its files or its directories.
pub fn run(config: &ServeConfig) -> Vec<Check> {
    let mut checks = Vec::new();
    let site = site_config(config, &mut checks);
    checks.push(Check::new("listen address", listen_address(&config.listen)));
    checks.push(Check::new(
        "pid file directory",
        creatable_parent(&config.pid_file),
    ));
    checks.push(Check::new(
        "log file directory",
        match &config.log_file {
            Some(path) => creatable_parent(path),
            None => Ok("no log file configured: logs go to standard error \
                        (with --daemon, to bbru.log beside the pid file)"
                .into()),
        },
    ));
    if let StorageConfig::File(path) = &config.storage {
        checks.push(Check::new("database directory", database_directory(path)));
    }
    let base = open_database(config);
    checks.push(Check::new(
        "database connection",
        base.as_ref()
            .map(|b| b.detail.clone())
            .map_err(String::clone),
    ));
    match (site, &base) {
        (Some(site), Ok(base)) => functional(config, site, base.storage.clone(), &mut checks),
        (None, _) => checks.push(Check::new(
            "functional checks",
            Err("not run: the site configuration is unusable".into()),
        )),
        (Some(_), Err(_)) => checks.push(Check::new(
            "functional checks",
            Err("not run: the database could not be opened".into()),
        )),
    }
    if let Ok(base) = base
        && base.close
    {
        // Read-only: closing writes nothing (a FileStorage saves no index then).
        let _ = base.storage.close();
    }
    checks
}

// ---- 1. Configuration -------------------------------------------------------------

fn site_config(config: &ServeConfig, checks: &mut Vec<Check>) -> Option<SiteConfig> {
    let path = &config.site_config;
    let outcome = if path.exists() {
        SiteConfig::load(path).map_err(|e| error_chain(&e))
    } else {
        Err(format!(
            "{} does not exist: write it with `bbru configure` (the bootstrap manager \
             stays commented out)",
            path.display()
        ))
    };
    match outcome {
        Ok(site) => {
            let manager = match &site.bootstrap_manager {
                Some(b) => format!(
                    "bootstrap manager {:?} declared (comment it out once a local manager exists)",
                    b.login
                ),
                None => "bootstrap manager commented out".into(),
            };
            checks.push(Check::new(
                "site configuration",
                Ok(format!(
                    "{} parses: site {:?}, {}, {manager}",
                    path.display(),
                    site.site.title,
                    if site.site.public {
                        "public"
                    } else {
                        "not public"
                    },
                )),
            ));
            Some(site)
        }
        Err(reason) => {
            checks.push(Check::new("site configuration", Err(reason)));
            None
        }
    }
}

/// An error and its sources, `: `-separated.
fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(e) = source {
        text.push_str(&format!(": {e}"));
        source = e.source();
    }
    text
}

fn listen_address(listen: &str) -> Result<String, String> {
    if let Ok(address) = listen.parse::<SocketAddr>() {
        return Ok(address.to_string());
    }
    // `bbru serve` binds with the system resolver, so `localhost:8080` works too.
    match listen.to_socket_addrs() {
        Ok(mut addresses) => match addresses.next() {
            Some(first) => Ok(format!("{listen} (resolves to {first})")),
            None => Err(format!("{listen:?} resolves to no address")),
        },
        Err(e) => Err(format!(
            "{listen:?} is not a socket address (HOST:PORT, e.g. 127.0.0.1:8080): {e}"
        )),
    }
}

/// The directory `file` is in (`.` for a bare name).
fn parent_of(file: &Path) -> PathBuf {
    match file.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_owned(),
        _ => PathBuf::from("."),
    }
}

/// Whether this user may create and remove entries in `dir` (access(2), so nothing is
/// written to find out).
fn writable(dir: &Path) -> bool {
    use rustix::fs::Access;
    rustix::fs::access(dir, Access::WRITE_OK | Access::EXEC_OK).is_ok()
}

/// The directory of `file` exists and is writable, or can be created: its nearest
/// existing ancestor is a writable directory.
fn creatable_parent(file: &Path) -> Result<String, String> {
    let dir = parent_of(file);
    if dir.is_dir() {
        return if writable(&dir) {
            Ok(format!("{} exists and is writable", dir.display()))
        } else {
            Err(format!("{} is not writable by this user", dir.display()))
        };
    }
    if dir.exists() {
        return Err(format!("{} exists and is not a directory", dir.display()));
    }
    let ancestor = dir
        .ancestors()
        .skip(1)
        .map(|a| {
            if a.as_os_str().is_empty() {
                Path::new(".")
            } else {
                a
            }
        })
        .find(|a| a.exists());
    match ancestor {
        Some(a) if a.is_dir() && writable(a) => Ok(format!(
            "{} does not exist yet; it will be created (in {}, which is writable)",
            dir.display(),
            a.display()
        )),
        Some(a) if a.is_dir() => Err(format!(
            "{} does not exist and cannot be created: {} is not writable by this user",
            dir.display(),
            a.display()
        )),
        Some(a) => Err(format!(
            "{} does not exist and cannot be created: {} is not a directory",
            dir.display(),
            a.display()
        )),
        None => Err(format!(
            "{} does not exist and has no existing ancestor",
            dir.display()
        )),
    }
}

fn database_directory(data_fs: &Path) -> Result<String, String> {
    let dir = parent_of(data_fs);
    if !dir.is_dir() {
        return Err(if dir.exists() {
            format!("{} is not a directory", dir.display())
        } else {
            format!(
                "{} does not exist: create it, or correct `file` in the [storage] section \
                 of etc/serve.toml",
                dir.display()
            )
        });
    }
    if !writable(&dir) {
        return Err(format!(
            "{} is not writable by this user (the instance keeps {}'s index, lock and \
             temporary files there)",
            dir.display(),
            data_fs.display()
        ));
    }
    if data_fs.exists() && rustix::fs::access(data_fs, rustix::fs::Access::WRITE_OK).is_err() {
        return Err(format!(
            "{} is not writable by this user (the instance opens it read-write)",
            data_fs.display()
        ));
    }
    Ok(format!("{} exists and is writable", dir.display()))
}

// ---- 2. Connectivity --------------------------------------------------------------

/// The storage the functional checks read, opened read-only.
struct Base {
    storage: Arc<dyn Storage>,
    detail: String,
    /// Whether it is ours to close (not the stand-in for a database not created yet).
    close: bool,
}

/// `03f2… (2024-05-01 12:00:00 UTC)`, or that there is none.
fn describe_tid(tid: Tid) -> String {
    if tid == Tid::ZERO {
        return "no transaction yet".into();
    }
    let (year, month, day, hour, minute, second) = tid.parts();
    format!(
        "last transaction {tid} ({year:04}-{month:02}-{day:02} {hour:02}:{minute:02}:{:02} UTC)",
        second as u32
    )
}

fn open_database(config: &ServeConfig) -> Result<Base, String> {
    match &config.storage {
        StorageConfig::File(path) => {
            if !path.exists() {
                let dir = parent_of(path);
                return if dir.is_dir() {
                    Ok(Base {
                        storage: Arc::new(MemoryStorage::new("empty database")),
                        detail: format!(
                            "no database yet at {}: a new installation (`bbru serve` creates \
                             it); the functional checks run on an empty database in memory",
                            path.display()
                        ),
                        close: false,
                    })
                } else {
                    Err(format!(
                        "{} does not exist, nor its directory {}",
                        path.display(),
                        dir.display()
                    ))
                };
            }
            let storage = FileStorage::open_read_only(path)
                .map_err(|e| format!("cannot open {} read-only: {}", path.display(), e))?;
            let mut detail = format!(
                "FileStorage {} opened read-only: {} objects, {} bytes, {}",
                path.display(),
                storage.len(),
                storage.size(),
                describe_tid(storage.last_transaction())
            );
            for warning in &storage.open_report().warnings {
                detail.push_str(&format!("; warning: {warning}"));
            }
            Ok(Base {
                storage: Arc::new(storage),
                detail,
                close: true,
            })
        }
        StorageConfig::Zeo(address) => {
            let mut options = zeo::client::ClientOptions::new(address.clone());
            options.read_only = true;
            options.wait_timeout = limits::SELFTEST_ZEO_WAIT;
            let storage = zeo::client::ClientStorage::connect(options).map_err(|e| {
                format!(
                    "cannot reach the ZEO server {address} (read-only, waited {} s): {e}",
                    limits::SELFTEST_ZEO_WAIT.as_secs()
                )
            })?;
            let info = storage.server_info();
            let detail = format!(
                "ZEO server {address}, storage {:?}, registered read-only: {} objects, {} bytes, {}",
                info.name,
                info.length,
                info.size,
                describe_tid(storage.last_transaction())
            );
            Ok(Base {
                storage: Arc::new(storage),
                detail,
                close: true,
            })
        }
    }
}

// ---- 3. Functional ----------------------------------------------------------------

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

fn functional(
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
        // What `app` logs is about the throwaway manager and the in-memory site (that
        // the manager is still declared, that the site was created): not for the log.
        let app =
            tracing::subscriber::with_default(tracing::subscriber::NoSubscriber::default(), || {
                crate::startup::app(db, site, &path)
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
    expect(&answer, &format!("GET {edit} (anonymous)"), 401)?;
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
    expect(&answer, &format!("POST {edit} (anonymous)"), 401)?;
    let answer = s.manager.get(&url)?;
    expect(&answer, &format!("GET {url}"), 200)?;
    if answer.body.contains("defaced") {
        return Err(format!("an anonymous POST {edit} changed the page"));
    }
    Ok(format!(
        "GET and POST {edit} answer 401 to an anonymous client; the page is unchanged"
    ))
}

fn log_out(s: &Session) -> Result<String, String> {
    let (_, token) = s.manager.form("/@@login")?;
    let answer = s.manager.post_form("/@@logout", &[(CSRF_FIELD, &token)])?;
    expect(&answer, "POST /@@logout", 303)?;
    let edit = format!("{}/@@edit", s.page_path());
    let answer = s.manager.get(&edit)?;
    expect(&answer, &format!("GET {edit} after logging out"), 401)?;
    Ok("logged out: the edit form asks for a login again".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn selftest_listen_addresses() {
        assert!(listen_address("127.0.0.1:8080").is_ok());
        assert!(listen_address("[::1]:8080").is_ok());
        let err = listen_address("127.0.0.1:99999").unwrap_err();
        assert!(err.contains("not a socket address"), "{err}");
        let err = listen_address("nonsense").unwrap_err();
        assert!(err.contains("HOST:PORT"), "{err}");
    }

    #[test]
    fn selftest_directories_are_checked_without_being_created() {
        let dir = tempfile::tempdir().unwrap();
        let ok = creatable_parent(&dir.path().join("var/run/bbru.pid")).unwrap();
        assert!(ok.contains("will be created"), "{ok}");
        assert!(!dir.path().join("var").exists());
        let ok = creatable_parent(&dir.path().join("bbru.pid")).unwrap();
        assert!(ok.contains("exists and is writable"), "{ok}");
        std::fs::write(dir.path().join("file"), b"").unwrap();
        let err = creatable_parent(&dir.path().join("file/x/bbru.pid")).unwrap_err();
        assert!(err.contains("not a directory"), "{err}");
        assert!(creatable_parent(Path::new("bbru.pid")).is_ok());
    }

    #[test]
    fn selftest_check_display() {
        let ok = Check::new("a", Ok("fine".into()));
        let bad = Check::new("b", Err("broken".into()));
        assert_eq!(ok.to_string(), "ok    a: fine");
        assert_eq!(bad.to_string(), "FAIL  b: broken");
        assert!(!all_passed(&[ok.clone(), bad]));
        assert!(all_passed(&[ok]));
    }

    #[test]
    fn selftest_snippets_are_text() {
        assert_eq!(
            snippet("<html><h1>Not found.</h1>\n<p>x</p></html>"),
            "Not found. x"
        );
    }
}
