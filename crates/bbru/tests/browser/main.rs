//! The site in a real browser: headless Chromium driven over WebDriver (`chromedriver`,
//! through the `fantoccini` crate), against the real `bbru serve` binary on an embedded
//! `Data.fs` in a temporary directory whose `site.toml` declares the bootstrap manager.
//! A user logs in through the form, adds a page through the Add link and its form,
//! edits it and sees the change, then takes an edit back through the site-wide `/@@undo`
//! and through the page's `@@history`; and saves an edit form someone else saved
//! meanwhile, to see both versions and merge them.  `a11y.rs`: axe-core on the main
//! pages in both languages, at a phone's and a desktop's size.
//!
//! Each test has its own site, chromedriver and browser profile.  After every step a
//! screenshot (PNG) goes to `<target dir>/test-artifacts/browser/<test>/` (the target
//! dir is `$CARGO_TARGET_DIR` or `<repo>/target`), and one named `failed.png` when a
//! step fails.
//!
//! Needs Chromium and ChromeDriver: Debian's `chromium` and `chromium-driver`
//! (`/usr/bin/chromium`, `/usr/bin/chromedriver`; `tools/test.sh` installs them), or
//! the programs named by `$BBRU_CHROMIUM` and `$BBRU_CHROMEDRIVER`.  Without them the
//! tests fail, saying so; they never skip.

#[path = "../common/mod.rs"]
mod common;
mod images;
mod publication;

mod a11y;
mod preview;

use std::future::Future;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::json;

use common::{ADMIN, Instance, Process, Storage};

/// How long a step may wait for the page it expects.
const STEP_TIMEOUT: Duration = Duration::from_secs(20);

/// A program the tests need: `$env`, else `default`, else `name` on the `PATH`.
fn program(env: &str, default: &str, name: &str) -> PathBuf {
    if let Some(p) = std::env::var_os(env).filter(|p| !p.is_empty()) {
        let p = PathBuf::from(p);
        assert!(
            p.is_file(),
            "${env} names {}, which does not exist",
            p.display()
        );
        return p;
    }
    if Path::new(default).is_file() {
        return default.into();
    }
    if let Some(found) = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|p| p.is_file())
    }) {
        return found;
    }
    panic!(
        "the browser tests need {name}, which is not installed: no {default}, no {name} on \
         the PATH, and ${env} is not set. On Debian: apt-get install chromium \
         chromium-driver (tools/test.sh does it)"
    );
}

/// A chromedriver process on a free port.
struct Driver {
    url: String,
    _process: Process,
}

impl Driver {
    fn start(dir: &Path) -> Driver {
        let chromedriver = program("BBRU_CHROMEDRIVER", "/usr/bin/chromedriver", "chromedriver");
        let port = common::free_port();
        let mut command = Command::new(&chromedriver);
        command.arg(format!("--port={port}"));
        // Chromium inherits this environment: its crash database, caches and anything
        // else it keeps outside the profile go to the test's directory, not to $HOME.
        let home = dir.join("home");
        std::fs::create_dir_all(&home).expect("a home directory for Chromium");
        command
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", home.join(".config"))
            .env("XDG_CACHE_HOME", home.join(".cache"));
        let mut process = Process::spawn(
            &format!("{} (port {port})", chromedriver.display()),
            command,
            dir.join("chromedriver.log"),
        );
        let url = format!("http://127.0.0.1:{port}");
        let status = format!("{url}/status");
        let http = reqwest::blocking::Client::new();
        process.wait_until("ready", || {
            http.get(&status)
                .send()
                .and_then(|r| r.json::<serde_json::Value>())
                .is_ok_and(|v| v["value"]["ready"] == true)
        });
        Driver {
            url,
            _process: process,
        }
    }
}

/// The WebDriver capabilities: Chromium headless, with the flags that keep it off the
/// network (this machine's network is closed: without them it keeps trying), and a
/// fresh profile.
fn capabilities(profile: &Path) -> fantoccini::wd::Capabilities {
    let chromium = program("BBRU_CHROMIUM", "/usr/bin/chromium", "chromium");
    let caps = json!({
        "browserName": "chrome",
        "goog:chromeOptions": {
            "binary": chromium,
            "args": [
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--disable-dev-shm-usage",
                "--window-size=1200,900",
                format!("--user-data-dir={}", profile.display()),
            ],
        },
    });
    match caps {
        serde_json::Value::Object(map) => map,
        _ => unreachable!("an object literal"),
    }
}

/// A browser session on the site, with the screenshots of its steps.
struct Browser {
    client: Client,
    base: String,
    shots: PathBuf,
    step: usize,
}

/// Runs `flow` in a fresh browser against a fresh site; the screenshots go to
/// `test-artifacts/browser/<test>/`.  The session is closed (Chromium quits) whatever
/// happens, after a `failed.png` screenshot if the flow panicked.
fn run<F, Fut>(test: &str, flow: F)
where
    F: FnOnce(Browser) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let shots = common::target_dir()
        .join("test-artifacts/browser")
        .join(test);
    let _ = std::fs::remove_dir_all(&shots);
    std::fs::create_dir_all(&shots).unwrap_or_else(|e| panic!("creating {}: {e}", shots.display()));
    let dir = tempfile::tempdir().expect("temporary directory");
    let site_config = common::write_site_config(dir.path());
    let site = Instance::start(
        dir.path(),
        "site",
        &site_config,
        &Storage::File(dir.path().join("Data.fs")),
    );
    let driver = Driver::start(dir.path());
    let caps = capabilities(&dir.path().join("profile"));
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime");
    runtime.block_on(async {
        let client = ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new())
            .capabilities(caps)
            .connect(&driver.url)
            .await
            .unwrap_or_else(|e| panic!("starting Chromium through {}: {e}", driver.url));
        let browser = Browser {
            client: client.clone(),
            base: site.base.clone(),
            shots: shots.clone(),
            step: 0,
        };
        let outcome = tokio::spawn(flow(browser)).await;
        if outcome.is_err() {
            if let Ok(png) = client.screenshot().await {
                let _ = std::fs::write(shots.join("failed.png"), png);
            }
            if let Ok(url) = client.current_url().await {
                eprintln!("the browser was at {url} when the step failed");
            }
        }
        let _ = client.close().await;
        if let Err(e) = outcome {
            match e.try_into_panic() {
                Ok(panic) => std::panic::resume_unwind(panic),
                Err(e) => panic!("the browser flow did not finish: {e}"),
            }
        }
    });
    drop(driver);
    drop(site);
}

impl Browser {
    /// Saves a screenshot of the page as `NN-name.png`.
    async fn shot(&mut self, name: &str) {
        self.step += 1;
        let png = self.client.screenshot().await.expect("a screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is not a PNG");
        let path = self.shots.join(format!("{:02}-{name}.png", self.step));
        std::fs::write(&path, png).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
    }

    async fn goto(&self, path: &str) {
        self.client
            .goto(&format!("{}{path}", self.base))
            .await
            .unwrap_or_else(|e| panic!("opening {path}: {e}"));
    }

    /// The path and query the browser shows.
    async fn location(&self) -> String {
        let url = self.client.current_url().await.expect("the current URL");
        match url.query() {
            Some(q) => format!("{}?{q}", url.path()),
            None => url.path().to_owned(),
        }
    }

    /// Waits until the browser shows a location starting with `prefix` (a form post
    /// answers with a redirect the browser follows after `click` returned).
    async fn arrive(&self, prefix: &str) -> String {
        let deadline = std::time::Instant::now() + STEP_TIMEOUT;
        loop {
            let here = self.location().await;
            if here.starts_with(prefix) {
                return here;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "still at {here} after {STEP_TIMEOUT:?}, expected {prefix}…"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }

    /// The element `css` selects, once the page has it.
    async fn find(&self, css: &str) -> fantoccini::elements::Element {
        self.find_by(Locator::Css(css), css).await
    }

    async fn find_by(&self, locator: Locator<'_>, what: &str) -> fantoccini::elements::Element {
        match self
            .client
            .wait()
            .at_most(STEP_TIMEOUT)
            .for_element(locator)
            .await
        {
            Ok(e) => e,
            Err(e) => panic!(
                "no {what} on {} after {STEP_TIMEOUT:?}: {e}",
                self.location().await
            ),
        }
    }

    /// The visible text of `css`.
    async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("element text")
    }

    /// Whether the page has an element `css` now.
    async fn has(&self, css: &str) -> bool {
        !self
            .client
            .find_all(Locator::Css(css))
            .await
            .expect("find elements")
            .is_empty()
    }

    async fn click(&self, css: &str) {
        self.find(css)
            .await
            .click()
            .await
            .unwrap_or_else(|e| panic!("clicking {css}: {e}"));
    }

    /// Replaces the text of the form field named `name` by `value`, as typed.
    async fn fill(&self, name: &str, value: &str) {
        // In the main part's forms: the page's head has a <meta name="description">,
        // and the header a search form with its own `q`.
        let field = self.find(&format!("main form [name=\"{name}\"]")).await;
        field.clear().await.expect("clear a field");
        field
            .send_keys(value)
            .await
            .unwrap_or_else(|e| panic!("typing into {name}: {e}"));
    }

    /// Logs in through the form reached by the header's "Log in" link.
    async fn log_in(&mut self) {
        self.goto("/").await;
        assert!(!self.has("#user").await, "logged in before logging in");
        self.click("header a[href^=\"/@@login\"]").await;
        assert_eq!(self.text("h1").await, "Log in");
        self.fill("login", ADMIN.0).await;
        self.fill("password", ADMIN.1).await;
        self.shot("login-form").await;
        self.click("main form[action=\"/@@login\"] button[type=submit]")
            .await;
        assert_eq!(
            self.text("header #user").await,
            ADMIN.0,
            "the header names the user"
        );
        assert_eq!(self.arrive("/").await, "/");
        self.shot("logged-in").await;
    }

    /// Adds the page `welcome` through the root's Add link and form.
    async fn add_page(&mut self) {
        self.goto("/").await;
        self.click("a[href=\"/@@add?type=Page\"]").await;
        assert_eq!(self.text("h1").await, "Add Page");
        self.fill("id", "welcome").await;
        self.fill("title", "Welcome").await;
        self.fill("description", "The first page").await;
        self.fill("body", "Hello, *world*.").await;
        self.shot("add-form").await;
        self.click("main form button[type=submit]").await;
        self.arrive("/welcome?").await;
        assert_eq!(self.text("div.notice[role=status]").await, "Page added.");
        assert_eq!(self.text("main h1").await, "Welcome");
        assert_eq!(self.text("div.body em").await, "world");
        self.shot("page-added").await;
    }

    /// Edits `welcome` through its Edit tab: new title and body.
    async fn edit_page(&mut self) {
        self.click("nav.tabs a[href=\"/welcome/@@edit\"]").await;
        assert_eq!(self.text("main h1").await, "Edit Welcome");
        let body = self.find("textarea[name=\"body\"]").await;
        assert_eq!(
            body.prop("value").await.expect("textarea value").as_deref(),
            Some("Hello, *world*."),
            "the form shows the current body"
        );
        self.fill("title", "Welcome back").await;
        self.fill("body", "Hello again, **bbru**.").await;
        self.shot("edit-form").await;
        self.click("main form button[type=submit]").await;
        assert_eq!(self.text("div.notice[role=status]").await, "Changes saved.");
        assert_eq!(self.text("main h1").await, "Welcome back");
        assert_eq!(self.text("div.body strong").await, "bbru");
        self.shot("page-edited").await;
    }

    /// Checks that `/welcome` shows the first version again.
    async fn shows_the_first_version(&self) {
        self.goto("/welcome").await;
        assert_eq!(self.text("main h1").await, "Welcome");
        assert_eq!(self.text("div.body").await, "Hello, world.");
        assert!(
            !self.has("div.body strong").await,
            "the edit's body is gone"
        );
    }
}

#[test]
fn log_in_add_a_page_edit_it_and_see_the_change() {
    run(
        "log_in_add_a_page_edit_it_and_see_the_change",
        |mut b| async move {
            b.goto("/").await;
            assert_eq!(b.text("header a.brand").await, "Test site");
            assert_eq!(b.text("main p em").await, "This folder is empty.");
            b.shot("home-anonymous").await;
            b.log_in().await;
            b.add_page().await;
            b.edit_page().await;

            // The add form made it private: published, a visitor sees it.
            b.click("#publication-change").await;
            b.arrive("/welcome?").await;
            // The folder lists the new title; after logging out, a visitor sees the edit.
            b.goto("/").await;
            assert_eq!(
                b.text("ul.items a[href=\"/welcome\"]").await,
                "Welcome back"
            );
            b.click("header form[action=\"/@@logout\"] button").await;
            assert!(
                b.find_by(Locator::LinkText("Log in"), "Log in link")
                    .await
                    .attr("href")
                    .await
                    .expect("href")
                    .is_some_and(|h| h.starts_with("/@@login")),
                "logged out"
            );
            assert!(!b.has("#user").await, "still logged in after logging out");
            b.click("ul.items a[href=\"/welcome\"]").await;
            assert_eq!(b.text("main h1").await, "Welcome back");
            assert_eq!(b.text("div.body").await, "Hello again, bbru.");
            assert!(!b.has("nav.tabs").await, "a visitor has no management tabs");
            b.shot("visitor-sees-the-edit").await;
        },
    );
}

#[test]
fn undo_an_edit_in_the_undo_view() {
    run("undo_an_edit_in_the_undo_view", |mut b| async move {
        b.log_in().await;
        b.add_page().await;
        b.edit_page().await;

        b.goto("/").await;
        b.click("nav.tabs a[href=\"/@@undo\"]").await;
        assert_eq!(b.text("main h1").await, "Undo");
        // The newest transaction is the edit, by the bootstrap manager.
        let newest = b.text("table.undo tbody tr:first-child").await;
        assert!(
            newest.contains("edit /welcome") && newest.contains("admin (bootstrap)"),
            "the newest transaction: {newest:?}"
        );
        let edit_row =
            "//table[contains(@class,'undo')]//tr[td[4][normalize-space()='edit /welcome']]";
        b.find_by(
            Locator::XPath(&format!("{edit_row}//input[@type='checkbox']")),
            "the edit's checkbox",
        )
        .await
        .click()
        .await
        .expect("tick the edit");
        b.shot("undo-chosen").await;
        b.click("main form[action=\"/@@undo\"] button[type=submit]")
            .await;
        assert_eq!(
            b.text("div.notice[role=status]").await,
            "Done: the undo is the newest transaction below."
        );
        // The undo is itself a transaction, listed first.
        let newest = b.text("table.undo tbody tr:first-child").await;
        assert!(newest.contains("undo edit /welcome"), "{newest:?}");
        b.shot("undone").await;

        b.shows_the_first_version().await;
        b.shot("first-version-again").await;
    });
}

#[test]
fn revert_an_edit_through_the_history() {
    run("revert_an_edit_through_the_history", |mut b| async move {
        b.log_in().await;
        b.add_page().await;
        b.edit_page().await;

        b.click("nav.tabs a[href=\"/welcome/@@history\"]").await;
        assert_eq!(b.text("main h1").await, "History of Welcome back");
        let rows = b
            .client
            .find_all(Locator::Css("table.history tbody tr"))
            .await
            .expect("history rows");
        assert_eq!(rows.len(), 2, "two versions: the add and the edit");
        let newest = b.text("table.history tbody tr:first-child").await;
        assert!(
            newest.contains("edit /welcome") && newest.contains("(current)"),
            "{newest:?}"
        );
        b.shot("history").await;
        b.find_by(
            Locator::XPath(
                "//table[contains(@class,'history')]//tr[td[3][normalize-space()='add Page /welcome']]//a[normalize-space()='View']",
            ),
            "the View link of the first version",
        )
        .await
        .click()
        .await
        .expect("open the first version");
        assert!(
            b.text("div.notice.version")
                .await
                .contains("It is read-only."),
            "an old version is shown"
        );
        assert_eq!(b.text("main h2").await, "Welcome");
        assert_eq!(b.text("div.body em").await, "world");
        b.shot("first-version").await;
        b.click("main form button[type=submit]").await;
        assert!(
            b.text("div.notice[role=status]")
                .await
                .starts_with("Reverted to the chosen version"),
            "the revert is confirmed"
        );
        assert_eq!(b.text("main h1").await, "Welcome");
        assert_eq!(b.text("div.body").await, "Hello, world.");
        b.shot("reverted").await;

        // The revert is a version of its own, on top of the history.
        b.click("nav.tabs a[href=\"/welcome/@@history\"]").await;
        let newest = b.text("table.history tbody tr:first-child").await;
        assert!(newest.contains("revert /welcome to"), "{newest:?}");
        b.shot("history-after-revert").await;
        b.shows_the_first_version().await;
    });
}

#[test]
fn a_stale_edit_form_shows_both_versions_to_merge() {
    run(
        "a_stale_edit_form_shows_both_versions_to_merge",
        |mut b| async move {
            b.log_in().await;
            b.add_page().await;
            b.click("nav.tabs a[href=\"/welcome/@@edit\"]").await;
            assert_eq!(b.text("main h1").await, "Edit Welcome");
            b.fill("body", "My own words.").await;
            b.shot("editing").await;

            // Someone else saves the page (through the JSON API) while the form is open.
            let url = format!("{}/welcome", b.base);
            tokio::task::spawn_blocking(move || {
                let r = reqwest::blocking::Client::new()
                    .patch(url)
                    .basic_auth(ADMIN.0, Some(ADMIN.1))
                    .header("accept", "application/json")
                    .json(&json!({"body": "Their words."}))
                    .send()
                    .expect("the other save");
                assert_eq!(r.status(), 204, "the other save");
            })
            .await
            .expect("the other save ran");

            b.click("main form button[type=submit]").await;
            assert!(
                b.text("#merge-notice")
                    .await
                    .contains("Someone else changed this since you opened it"),
                "the merge notice"
            );
            assert_eq!(b.text("#theirs-body").await, "Their words.");
            let body = b.find("textarea[name=\"body\"]").await;
            assert_eq!(
                body.prop("value").await.expect("textarea value").as_deref(),
                Some("My own words."),
                "the form keeps what the user typed"
            );
            b.shot("merge").await;

            b.fill("body", "Their words. My own words.").await;
            b.click("main form button[type=submit]").await;
            assert_eq!(b.text("div.notice[role=status]").await, "Changes saved.");
            assert_eq!(b.text("div.body").await, "Their words. My own words.");
            b.shot("merged").await;
        },
    );
}

#[test]
fn search_with_a_russian_inflection_finds_the_page() {
    run(
        "search_with_a_russian_inflection_finds_the_page",
        |mut b| async move {
            b.log_in().await;
            b.goto("/@@add?type=Page").await;
            b.fill("id", "setup").await;
            b.fill("title", "Как поставить bbru").await;
            b.fill("body", "Установка занимает *пять* минут.").await;
            b.click("main form button[type=submit]").await;
            b.arrive("/setup?").await;
            b.goto("/@@search").await;
            b.fill("q", "установки").await;
            b.click("main form.search button[type=submit]").await;
            b.arrive("/@@search?").await;
            assert_eq!(
                b.text("ol.results a.title[href=\"/setup\"]").await,
                "Как поставить bbru"
            );
            assert_eq!(b.text("ol.results p.snippet mark").await, "Установка");
            b.shot("search-results").await;
        },
    );
}
