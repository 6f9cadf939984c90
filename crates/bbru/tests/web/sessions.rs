//! Sessions end when they should: logging out and changing one's password end every
//! session of the user (a cookie captured before is worthless after); the bootstrap
//! manager's sessions end the moment a local manager exists.  Every logged-in user can
//! change their own password at `/@@password`.

use reqwest::header::{COOKIE, SET_COOKIE};

use crate::users::{add_user, grant, last_note, logged_in, shows_logged_in};
use crate::{ADMIN, Browser, Site, start};

/// Logs `login` in with a fresh browser and returns the session cookie (`name=value`)
/// the site set, as an attacker who captured it would hold it.
fn captured_session(site: &Site, login: &str, password: &str) -> (Browser, String) {
    let b = site.browser();
    let r = b.post(
        "/@@login",
        &[("login", login), ("password", password), ("came_from", "/")],
    );
    assert_eq!(r.status(), 303);
    let cookie = r
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap())
        .find(|c| c.starts_with("bbru_session="))
        .expect("a session cookie")
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    (b, cookie)
}

/// The home page as seen with only `cookie`.
fn home_with(site: &Site, cookie: &str) -> String {
    reqwest::blocking::Client::new()
        .get(format!("{}/", site.base))
        .header(COOKIE, cookie)
        .send()
        .unwrap()
        .text()
        .unwrap()
}

#[test]
fn logout_ends_the_sessions_captured_before() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let (bob, stolen) = captured_session(&site, "bob", "bob-password");
    let elsewhere = logged_in(&site, "bob");
    assert!(shows_logged_in(&home_with(&site, &stolen), "bob"));
    assert_eq!(bob.post("/@@logout", &[]).status(), 303);
    assert_eq!(
        last_note(&site),
        ("bob".into(), "log bob out everywhere".into())
    );
    assert!(!shows_logged_in(&home_with(&site, &stolen), "bob"));
    assert!(!shows_logged_in(&elsewhere.page("/"), "bob"));
    // Logging in again works, with a fresh session.
    bob.login("bob", "bob-password");
    assert!(shows_logged_in(&bob.page("/"), "bob"));
    assert!(!shows_logged_in(&home_with(&site, &stolen), "bob"));
    // The bootstrap manager's sessions too.
    let (boot, stolen) = captured_session(&site, ADMIN.0, ADMIN.1);
    assert!(shows_logged_in(&home_with(&site, &stolen), ADMIN.0));
    assert_eq!(boot.post("/@@logout", &[]).status(), 303);
    assert!(!shows_logged_in(&home_with(&site, &stolen), ADMIN.0));
    // A logout without the CSRF token is refused (a forged form cannot log anyone out).
    let r = admin.client.post(admin.url("/@@logout")).send().unwrap();
    assert_eq!(r.status(), 400);
}

#[test]
fn users_change_their_own_password_which_ends_their_other_sessions() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let bob = logged_in(&site, "bob");
    let (_, stolen) = captured_session(&site, "bob", "bob-password");
    let html = bob.page("/");
    assert!(html.contains("href=\"/@@password\""), "linked: {html}");
    let form = bob.page("/@@password");
    assert!(form.contains("name=\"current_password\""), "{form}");
    // A wrong current password: the form again, nothing changed.
    let change = |current: &str, new: &str, again: &str| {
        bob.post(
            "/@@password",
            &[
                ("current_password", current),
                ("password", new),
                ("password2", again),
            ],
        )
    };
    let r = change("wrong-password", "brand-new-pw", "brand-new-pw");
    assert_eq!(r.status(), 200);
    // The error sits beside the field it is about.
    assert!(
        r.text()
            .unwrap()
            .contains("id=\"current_password-error\">The current password is wrong.")
    );
    assert!(shows_logged_in(&home_with(&site, &stolen), "bob"));
    let r = change("bob-password", "short", "short");
    assert!(
        r.text()
            .unwrap()
            .contains("id=\"password-error\">The password must have at least 8 characters")
    );
    let r = change("bob-password", "brand-new-pw", "other-new-pw");
    assert!(r.text().unwrap().contains("differ"));
    let r = change("bob-password", "brand-new-pw", "brand-new-pw");
    assert_eq!(r.status(), 303);
    assert_eq!(
        last_note(&site),
        ("bob".into(), "change the password of bob (by bob)".into())
    );
    // This browser stays logged in; the captured session is over.
    assert!(shows_logged_in(&bob.page("/"), "bob"));
    assert!(!shows_logged_in(&home_with(&site, &stolen), "bob"));
    let fresh = site.browser();
    let r = fresh.post(
        "/@@login",
        &[("login", "bob"), ("password", "bob-password")],
    );
    assert!(r.text().unwrap().contains("Wrong login or password"));
    fresh.login("bob", "brand-new-pw");
    // Visitors are asked to log in; the bootstrap manager is told where its password is.
    assert_eq!(site.browser().get("/@@password").status(), 401);
    let r = admin.post("/@@password", &[("current_password", ADMIN.1)]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("site configuration"));
    // Without the CSRF token: refused.
    let r = bob
        .client
        .post(bob.url("/@@password"))
        .form(&[
            ("current_password", "brand-new-pw"),
            ("password", "third-password"),
            ("password2", "third-password"),
        ])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    bob.login("bob", "brand-new-pw");
}

#[test]
fn the_bootstrap_managers_sessions_end_once_a_local_manager_exists() {
    let site = start();
    let admin = site.admin();
    let (_, stolen) = captured_session(&site, ADMIN.0, ADMIN.1);
    add_user(&admin, "boss");
    grant(&admin, "/", "user:boss", "Manager", "allow");
    // No restart needed: the very next request is anonymous.
    assert!(!shows_logged_in(&admin.page("/"), ADMIN.0));
    assert_eq!(admin.get("/@@users").status(), 401);
    assert!(!shows_logged_in(&home_with(&site, &stolen), ADMIN.0));
    let r = site
        .browser()
        .post("/@@login", &[("login", ADMIN.0), ("password", ADMIN.1)]);
    assert!(r.text().unwrap().contains("Wrong login or password"));
    let boss = logged_in(&site, "boss");
    assert_eq!(boss.get("/@@users").status(), 200);
}

#[test]
fn the_database_alone_does_not_forge_a_session() {
    let site = start();
    let stored = {
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let s = bbru::model::Site::find(&tx).unwrap().unwrap();
        tx.get(s).unwrap().secret.clone()
    };
    let lifetime = std::time::Duration::from_secs(3600);
    // What a reader of Data.fs can sign: refused.
    let forged = bbru::security::auth::sign_session(&stored, ADMIN.0, 0, true, lifetime);
    let html = home_with(&site, &format!("bbru_session={forged}"));
    assert!(!shows_logged_in(&html, ADMIN.0), "{html}");
    // With the key file's half as well, the same session is good (the check above
    // refused it for the missing half, nothing else).
    let secret = crate::test_key().derive(&stored);
    let signed = bbru::security::auth::sign_session(&secret, ADMIN.0, 0, true, lifetime);
    let html = home_with(&site, &format!("bbru_session={signed}"));
    assert!(shows_logged_in(&html, ADMIN.0), "{html}");
}

/// `POST /@logout` with an API token (plone.restapi's) ends that token and every other
/// session of the user: 204, then the token is refused.
#[test]
fn json_logout_ends_the_token_and_the_users_sessions() {
    let site = start();
    let admin = site.admin();
    add_user(&admin, "bob");
    let (_, cookie) = captured_session(&site, "bob", "bob-password");
    let client = reqwest::blocking::Client::new();
    let r = client
        .post(format!("{}/@login", site.base))
        .json(&serde_json::json!({"login": "bob", "password": "bob-password"}))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let token = r.json::<serde_json::Value>().unwrap()["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let folder = |token: &str| {
        client
            .get(format!("{}/", site.base))
            .header("accept", "application/json")
            .bearer_auth(token)
            .send()
            .unwrap()
            .status()
    };
    assert_eq!(folder(&token), 200);
    let logout = client
        .post(format!("{}/@logout", site.base))
        .bearer_auth(&token)
        .send()
        .unwrap();
    assert_eq!(logout.status(), 204);
    assert_eq!(
        last_note(&site),
        ("bob".into(), "log bob out everywhere".into())
    );
    assert_eq!(folder(&token), 401, "the token no longer works");
    assert!(!shows_logged_in(&home_with(&site, &cookie), "bob"));
    // Without a token it is a browser's POST, which needs the CSRF token first.
    let anonymous = client
        .post(format!("{}/@logout", site.base))
        .send()
        .unwrap();
    assert_eq!(anonymous.status(), 400);
}
