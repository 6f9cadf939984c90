//! Functional tests over HTTP: a real server (the same router `bbru serve` runs) on a
//! free port, over MemoryStorage, driven with a cookie-keeping HTTP client.  One module
//! per area.

// Test harness types: nothing useful to print.
#![allow(missing_debug_implementations)]

#[path = "../common/mod.rs"]
mod common;

mod api;
mod basics;
mod blobs;
mod bootstrap;
mod bounds;
mod changes;
mod conflicts;
mod feeds;
mod grants;
mod headers;
mod history;
mod i18n;
mod images;
mod manage;
mod matrix;
mod migrate;
mod page_cache;
mod protocol;
mod publication;
mod redirects;
mod search;
mod sessions;
mod stalled;
mod uploads;
mod users;
mod versions;

use std::sync::Arc;

use bbru::config::{HttpSettings, SiteConfig};
use reqwest::blocking::{Client, Response};
use zodb::DB;
use zodb_storage::{MemoryStorage, Storage};

/// The bootstrap manager every test site declares.
pub const ADMIN: (&str, &str) = ("admin", "admin-password");

/// The secret key file's key of the test instances.
pub fn test_key() -> bbru::security::key::SecretKey {
    bbru::security::key::SecretKey::new(*b"a key for the tests, 32 bytes or more")
}

/// A site served on a free port until dropped.
pub struct Site {
    pub base: String,
    pub db: DB,
    runtime: Option<tokio::runtime::Runtime>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Site {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_timeout(std::time::Duration::from_secs(5));
        }
    }
}

/// The site configuration of the tests, with extra TOML appended.  The interface is in
/// English (the tests read its words); `tests/web/i18n.rs` tries the others.
pub fn site_config(extra: &str) -> SiteConfig {
    let text = format!(
        "[site]\ntitle = \"Test site\"\nupload_size_max = 100000\nlanguage = \"en\"\n{extra}\n[bootstrap_manager]\nlogin = \"{}\"\npassword = \"{}\"\n",
        ADMIN.0, ADMIN.1
    );
    SiteConfig::parse(&text, std::path::Path::new("test-site.toml")).unwrap()
}

/// Starts a site over a fresh MemoryStorage.
pub fn start() -> Site {
    start_with(Arc::new(MemoryStorage::new("test")), site_config(""))
}

/// Starts a site whose bootstrap manager stays usable once local managers exist
/// (`keep = true`), for tests that use both.
pub fn start_keeping_bootstrap() -> Site {
    let mut config = site_config("");
    config.bootstrap_manager.as_mut().expect("declared").keep = true;
    start_with(Arc::new(MemoryStorage::new("test")), config)
}

/// Starts a site over `storage` with `config`.
pub fn start_with(storage: Arc<dyn Storage>, config: SiteConfig) -> Site {
    start_adjusted(storage, config, |_| {})
}

/// Starts a site over `storage` with `config` and the `[http]` settings `http`.
pub fn start_with_http(storage: Arc<dyn Storage>, config: SiteConfig, http: HttpSettings) -> Site {
    start_adjusted(storage, config, |app| app.http = http)
}

/// Starts a site over `storage` with `config`, its application changed by `adjust`
/// first (as `bbru serve` applies `etc/serve.toml`).
pub fn start_adjusted(
    storage: Arc<dyn Storage>,
    config: SiteConfig,
    adjust: impl FnOnce(&mut bbru::web::App),
) -> Site {
    let db = DB::open(storage).unwrap();
    let mut app = bbru::startup::app(db.clone(), config, "test-site.toml", &test_key()).unwrap();
    adjust(&mut app);
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let listener = runtime
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    runtime.spawn(bbru::web::serve(Arc::new(app), listener, async {
        let _ = stopped.await;
    }));
    Site {
        base,
        db,
        runtime: Some(runtime),
        stop: Some(stop),
    }
}

/// A browser-like client: keeps cookies, follows no redirects (tests check them).
pub struct Browser {
    pub client: Client,
    pub base: String,
}

impl Site {
    pub fn browser(&self) -> Browser {
        Browser {
            client: Client::builder()
                .cookie_store(true)
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            base: self.base.clone(),
        }
    }

    /// A browser logged in as the bootstrap manager.
    pub fn admin(&self) -> Browser {
        let b = self.browser();
        b.login(ADMIN.0, ADMIN.1);
        b
    }
}

/// The value of the counter `name` in `/@@metrics`.
pub fn counter(site_base: &str, name: &str) -> u64 {
    let text = Client::new()
        .get(format!("{site_base}/@@metrics"))
        .send()
        .unwrap()
        .text()
        .unwrap();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}_total ")))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

/// The `Set-Cookie` value of a response that sets cookie `name`, if any.
pub fn set_cookie<'r>(r: &'r Response, name: &str) -> Option<&'r str> {
    let prefix = format!("{name}=");
    r.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&prefix))
}

/// The value of the first `_csrf` hidden field in a page.
pub fn csrf_in(html: &str) -> Option<String> {
    let at = html.find("name=\"_csrf\" value=\"")? + "name=\"_csrf\" value=\"".len();
    let end = html[at..].find('"')?;
    Some(html[at..at + end].to_owned())
}

impl Browser {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> Response {
        self.client.get(self.url(path)).send().unwrap()
    }

    /// GET, expecting 200; returns the body.
    pub fn page(&self, path: &str) -> String {
        let r = self.get(path);
        assert_eq!(r.status(), 200, "GET {path}");
        r.text().unwrap()
    }

    /// A valid CSRF token for this browser (from the login form, which anybody may see).
    pub fn csrf(&self) -> String {
        csrf_in(&self.page("/@@login")).expect("a CSRF field on the login form")
    }

    /// POSTs a urlencoded form with the browser's CSRF token added.
    pub fn post(&self, path: &str, fields: &[(&str, &str)]) -> Response {
        let token = self.csrf();
        let mut all: Vec<(&str, &str)> = fields.to_vec();
        all.push(("_csrf", &token));
        self.client.post(self.url(path)).form(&all).send().unwrap()
    }

    /// POSTs a multipart form (with the CSRF token), `file` as an upload if given.
    pub fn post_multipart(
        &self,
        path: &str,
        fields: &[(&str, &str)],
        file: Option<(&str, &str, Vec<u8>)>,
    ) -> Response {
        let mut form = reqwest::blocking::multipart::Form::new().text("_csrf", self.csrf());
        for (k, v) in fields {
            form = form.text(k.to_string(), v.to_string());
        }
        if let Some((name, mime, data)) = file {
            let part = reqwest::blocking::multipart::Part::bytes(data)
                .file_name(name.to_owned())
                .mime_str(mime)
                .unwrap();
            form = form.part("file", part);
        }
        self.client
            .post(self.url(path))
            .multipart(form)
            .send()
            .unwrap()
    }

    /// Logs in through the form; panics unless it succeeds.
    pub fn login(&self, login: &str, password: &str) {
        let r = self.post(
            "/@@login",
            &[("login", login), ("password", password), ("came_from", "/")],
        );
        assert_eq!(
            r.status(),
            303,
            "login of {login}: {}",
            r.text().unwrap_or_default()
        );
    }

    /// Adds an item through the add form of the folder at `folder` ("" for the root);
    /// returns the response (303 on success).
    pub fn add(&self, folder: &str, kind: &str, id: &str, title: &str, body: &str) -> Response {
        self.post_multipart(
            &format!("{folder}/@@add"),
            &[("type", kind), ("id", id), ("title", title), ("body", body)],
            None,
        )
    }
}
