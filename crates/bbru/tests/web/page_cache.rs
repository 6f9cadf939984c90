//! The page cache (`web/page_cache.rs`): anonymous views of the same database state are
//! answered from it, a commit anywhere makes them all stale, and it never answers a
//! logged-in user, another language or a JSON client with an anonymous page.  And the
//! style sheet every page links, kept by browsers.

use reqwest::blocking::Client;

use crate::{counter, start};

fn get(base: &str, path: &str, language: &str) -> String {
    let r = Client::new()
        .get(format!("{base}{path}"))
        .header("accept-language", language)
        .send()
        .unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    r.text().unwrap()
}

#[test]
fn anonymous_pages_are_kept_until_the_next_commit_and_for_anonymous_visitors_only() {
    let site = start();
    let admin = site.admin();
    assert_eq!(
        admin
            .add("", "Page", "p", "First title", "Some *text*.")
            .status(),
        303
    );

    let hits = counter(&site.base, "bbru_page_cache_hits");
    let first = get(&site.base, "/p", "en");
    assert!(first.contains("First title"), "{first}");
    assert_eq!(get(&site.base, "/p", "en"), first);
    assert_eq!(counter(&site.base, "bbru_page_cache_hits"), hits + 1);

    // Another language is another page.
    let russian = get(&site.base, "/p", "ru");
    assert!(russian.contains("<html lang=\"ru\""), "{russian}");

    // A logged-in user gets its own page, never the kept one; nor does a JSON client.
    let own = admin.page("/p");
    assert!(own.contains("Logged in as"), "{own}");
    let json = Client::new()
        .get(format!("{}/p", site.base))
        .header("accept", "application/json")
        .send()
        .unwrap()
        .text()
        .unwrap();
    assert!(json.trim_start().starts_with('{'), "{json}");
    assert!(!get(&site.base, "/p", "en").contains("Logged in as"));

    // Documents built from many objects are kept too: the sitemap once made is
    // answered from the cache, with its headers.
    let sitemap = get(&site.base, "/sitemap.xml", "en");
    let hits = counter(&site.base, "bbru_page_cache_hits");
    let r = Client::new()
        .get(format!("{}/sitemap.xml", site.base))
        .send()
        .unwrap();
    assert!(
        r.headers()["content-type"]
            .to_str()
            .unwrap()
            .contains("xml")
    );
    assert!(r.headers().contains_key("cache-control"));
    assert_eq!(r.text().unwrap(), sitemap);
    assert_eq!(counter(&site.base, "bbru_page_cache_hits"), hits + 1);

    // A commit anywhere (here: another page) and the next view is made again, with
    // the change of that commit where the page shows it (the section navigation).
    assert_eq!(
        admin.add("", "Page", "q", "Second page", "More.").status(),
        303
    );
    let hits = counter(&site.base, "bbru_page_cache_hits");
    let after = get(&site.base, "/p", "en");
    assert_eq!(counter(&site.base, "bbru_page_cache_hits"), hits);
    assert!(after.contains("Second page"), "{after}");
    // And an edit of the page itself shows at once.
    let r = admin.post_multipart(
        "/p/@@edit",
        &[
            ("title", "Edited title"),
            ("description", ""),
            ("body", "Some *text*."),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    let edited = get(&site.base, "/p", "en");
    assert!(
        edited.contains("Edited title") && !edited.contains("First title"),
        "{edited}"
    );
}

#[test]
fn pages_link_a_style_sheet_browsers_keep_and_anybody_may_fetch() {
    let site = start();
    let html = get(&site.base, "/", "en");
    let at = html
        .find("<link rel=\"stylesheet\" href=\"")
        .expect("a style sheet link")
        + "<link rel=\"stylesheet\" href=\"".len();
    let url = &html[at..at + html[at..].find('"').unwrap()];
    assert!(url.starts_with("/@@style.css?v="), "{url}");
    // Fetched with no cookie and no login: CSS, kept a year.
    let r = Client::new()
        .get(format!("{}{url}", site.base))
        .send()
        .unwrap();
    assert_eq!(r.status(), 200);
    let header = |name: &str| r.headers().get(name).unwrap().to_str().unwrap().to_owned();
    assert_eq!(header("content-type"), "text/css; charset=utf-8");
    assert!(
        header("cache-control").contains("immutable"),
        "{}",
        header("cache-control")
    );
    assert!(r.text().unwrap().contains("header.site"));
    assert!(
        !html.contains("<style>"),
        "the page still carries the style sheet"
    );
}
