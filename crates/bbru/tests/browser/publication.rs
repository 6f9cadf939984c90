//! Publishing in the browser: an editor (a user granted Editor, not a manager) prepares a private page (the add form's
//! default), a visitor gets "not found" for it, the editor publishes it with the button
//! on the page, and the visitor then reads it.

use super::{ADMIN, Browser, run};

/// The editor the test adds (an Editor at the root, not a manager).
const EDITOR: (&str, &str) = ("ed", "ed-password");

/// Adds the user [`EDITOR`] and grants it Editor at the root, through the forms, as
/// the bootstrap manager (over HTTP, outside the browser).
fn add_editor(base: &str) {
    let http = reqwest::blocking::Client::builder()
        .cookie_store(true)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("an HTTP client");
    let csrf = || {
        let html = http
            .get(format!("{base}/@@login"))
            .send()
            .and_then(|r| r.text())
            .expect("the login form");
        let at = html.find("name=\"_csrf\" value=\"").expect("a CSRF field") + 20;
        html[at..].split('"').next().unwrap_or("").to_owned()
    };
    let post = |path: &str, fields: &[(&str, &str)]| {
        let token = csrf();
        let mut all = fields.to_vec();
        all.push(("_csrf", &token));
        let r = http
            .post(format!("{base}{path}"))
            .form(&all)
            .send()
            .expect("a form post");
        assert_eq!(r.status(), 303, "POST {path}");
    };
    post(
        "/@@login",
        &[
            ("login", ADMIN.0),
            ("password", ADMIN.1),
            ("came_from", "/"),
        ],
    );
    post(
        "/@@users",
        &[
            ("action", "add_user"),
            ("login", EDITOR.0),
            ("title", "Editor"),
            ("password", EDITOR.1),
            ("password2", EDITOR.1),
        ],
    );
    post(
        "/@@security",
        &[("new_principal", "user:ed"), ("new.Editor", "allow")],
    );
}

impl Browser {
    async fn log_in_as(&mut self, (login, password): (&str, &str)) {
        self.goto("/@@login").await;
        self.fill("login", login).await;
        self.fill("password", password).await;
        self.click("main form[action=\"/@@login\"] button[type=submit]")
            .await;
        assert_eq!(self.text("header #user").await, login);
    }

    async fn log_out(&self) {
        self.click("header form[action=\"/@@logout\"] button").await;
        // The page reached after the logout has the "Log in" link.
        self.find("header a[href^=\"/@@login\"]").await;
        assert!(
            !self.has("#user").await,
            "still logged in after logging out"
        );
    }

    /// Whether the page shown is the "not found" page.
    async fn is_not_found(&self) -> bool {
        self.text("main h1").await.starts_with("404")
    }
}

#[test]
fn an_editor_prepares_a_private_page_and_publishes_it_for_visitors() {
    run(
        "an_editor_prepares_a_private_page_and_publishes_it_for_visitors",
        |mut b| async move {
            let base = b.base.clone();
            tokio::task::spawn_blocking(move || add_editor(&base))
                .await
                .expect("the editor added");
            b.log_in_as(EDITOR).await;
            b.shot("editor-logged-in").await;
            b.goto("/@@add?type=Page").await;
            // Private is the add form's choice unless the editor picks Published.
            let private = b.find("input[name=\"state\"][value=\"private\"]").await;
            assert_eq!(
                private.prop("checked").await.unwrap().as_deref(),
                Some("true")
            );
            b.fill("id", "draft").await;
            b.fill("title", "Draft news").await;
            b.fill("body", "Coming *soon*.").await;
            b.shot("add-private-page").await;
            b.click("main form button[type=submit]").await;
            b.arrive("/draft?").await;
            assert_eq!(state_shown(&b).await, "private");
            b.shot("private-page-for-the-editor").await;

            b.log_out().await;
            b.goto("/draft").await;
            assert!(b.is_not_found().await, "a visitor sees the private page");
            b.shot("visitor-gets-not-found").await;
            b.goto("/").await;
            assert!(
                !b.has("ul.items a[href=\"/draft\"]").await,
                "listed for a visitor"
            );

            b.log_in_as(EDITOR).await;
            b.goto("/draft").await;
            b.click("#publication-change").await;
            b.arrive("/draft?").await;
            assert_eq!(state_shown(&b).await, "published");
            b.shot("published").await;

            b.log_out().await;
            b.click("ul.items a[href=\"/draft\"]").await;
            assert_eq!(b.text("main h1").await, "Draft news");
            assert_eq!(b.text("div.body em").await, "soon");
            assert!(
                !b.has("#publication-state").await,
                "visitors see no state box"
            );
            b.shot("visitor-reads-it").await;
        },
    );
}

/// The publication state the item's state box shows.
async fn state_shown(b: &Browser) -> String {
    b.find("#publication-state")
        .await
        .attr("data-state")
        .await
        .unwrap()
        .unwrap_or_default()
}
