//! Feeds and discovery: `@@feed` (Atom), `/sitemap.xml`, `/robots.txt`, and the head
//! of pages (description, canonical link, feed link); public content only, absolute
//! URLs from `[site] url` or a checked `Host`.

use std::sync::Arc;

use zodb_storage::MemoryStorage;

use crate::{Browser, Site, site_config, start, start_with};

fn text_of(b: &Browser, path: &str) -> (String, String, String) {
    let r = b.get(path);
    assert_eq!(r.status(), 200, "GET {path}");
    let content_type = r.headers()["content-type"].to_str().unwrap().to_owned();
    let cache = r
        .headers()
        .get("cache-control")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    (content_type, cache, r.text().unwrap())
}

/// `/docs` with a page, a private page, a subfolder with a page, and a page at the root.
fn content(site: &Site) {
    let admin = site.admin();
    assert_eq!(admin.add("", "Folder", "docs", "Docs", "").status(), 303);
    assert_eq!(
        admin
            .add("/docs", "Page", "first", "First <b>&", "one")
            .status(),
        303
    );
    assert_eq!(admin.add("/docs", "Folder", "sub", "Sub", "").status(), 303);
    assert_eq!(
        admin
            .add("/docs/sub", "Page", "deep", "Deep", "two")
            .status(),
        303
    );
    let r = admin.post_multipart(
        "/docs/@@add",
        &[
            ("type", "Page"),
            ("id", "secret"),
            ("title", "Secret"),
            ("state", "private"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    assert_eq!(admin.add("", "Page", "home", "Home page", "").status(), 303);
}

#[test]
fn a_folders_feed_lists_its_public_items_newest_first() {
    let site = start_with(
        Arc::new(MemoryStorage::new("t")),
        site_config("url = \"https://example.org/\""),
    );
    content(&site);
    let anon = site.browser();
    let (content_type, cache, feed) = text_of(&anon, "/docs/@@feed");
    assert_eq!(content_type, "application/atom+xml; charset=utf-8");
    assert_eq!(cache, "public, max-age=300");
    assert!(feed.starts_with("<?xml"), "{feed}");
    assert!(feed.contains("<feed xmlns=\"http://www.w3.org/2005/Atom\">"));
    assert!(feed.contains("<title>Docs</title>"));
    assert!(feed.contains("<link rel=\"self\" href=\"https://example.org/docs/@@feed\"/>"));
    // The subtree's public items, newest first; titles escaped; not the private one.
    let deep = feed
        .find("<title>Deep</title>")
        .expect("the subfolder's page");
    let sub = feed.find("<title>Sub</title>").expect("the subfolder");
    let first = feed
        .find("<title>First &lt;b&gt;&amp;</title>")
        .expect("escaped");
    assert!(deep < sub && sub < first, "{feed}");
    assert!(feed.contains("<id>https://example.org/docs/sub/deep</id>"));
    assert!(!feed.contains("Secret"), "{feed}");
    assert!(!feed.contains("Home page"), "outside the folder");
    // An editor's copy is the same public one.
    assert_eq!(text_of(&site.admin(), "/docs/@@feed").2, feed);
    // Only folders have feeds.
    assert_eq!(anon.get("/docs/first/@@feed").status(), 404);
}

#[test]
fn the_sitemap_and_robots_name_public_content_with_the_configured_address() {
    let site = start_with(
        Arc::new(MemoryStorage::new("t")),
        site_config("url = \"https://example.org\""),
    );
    content(&site);
    let anon = site.browser();
    let (content_type, _, map) = text_of(&anon, "/sitemap.xml");
    assert_eq!(content_type, "application/xml; charset=utf-8");
    assert!(map.contains("<urlset xmlns=\"http://www.sitemaps.org/schemas/sitemap/0.9\">"));
    for path in [
        "/",
        "/docs",
        "/docs/first",
        "/docs/sub",
        "/docs/sub/deep",
        "/home",
    ] {
        assert!(
            map.contains(&format!("<loc>https://example.org{path}</loc><lastmod>20")),
            "{path} in {map}"
        );
    }
    assert!(!map.contains("secret"), "{map}");
    // A forged Host changes nothing when the address is configured.
    let r = anon
        .client
        .get(anon.url("/sitemap.xml"))
        .header("Host", "evil.example")
        .send()
        .unwrap();
    assert!(!r.text().unwrap().contains("evil"));

    let (content_type, _, robots) = text_of(&anon, "/robots.txt");
    assert_eq!(content_type, "text/plain; charset=utf-8");
    assert!(robots.contains("Sitemap: https://example.org/sitemap.xml\n"));
    assert!(robots.contains("Disallow: /*/@@\n") && robots.contains("Disallow: /@@\n"));
}

#[test]
fn without_a_configured_address_the_host_is_checked_and_not_shared() {
    let site = start();
    content(&site);
    let anon = site.browser();
    let (_, cache, map) = text_of(&anon, "/sitemap.xml");
    assert_eq!(cache, "private, max-age=300");
    let host = site.base.trim_start_matches("http://");
    assert!(
        map.contains(&format!("<loc>http://{host}/docs</loc>")),
        "{map}"
    );
    // A Host that is no host name is not written into the document.
    let r = anon
        .client
        .get(anon.url("/robots.txt"))
        .header("Host", "x\"><script>")
        .send()
        .unwrap();
    let robots = r.text().unwrap();
    assert!(
        robots.contains("Sitemap: http://localhost/sitemap.xml"),
        "{robots}"
    );
}

#[test]
fn pages_carry_their_description_canonical_link_and_feed_link() {
    let site = start_with(
        Arc::new(MemoryStorage::new("t")),
        site_config("url = \"https://example.org\""),
    );
    let admin = site.admin();
    let r = admin.post_multipart(
        "/@@add",
        &[
            ("type", "Folder"),
            ("id", "news"),
            ("title", "News"),
            ("description", "What's \"new\""),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    let html = site.browser().page("/news");
    assert!(
        html.contains(r#"<meta name="description" content="What's &quot;new&quot;">"#),
        "{html}"
    );
    assert!(html.contains(r#"<link rel="canonical" href="https://example.org/news">"#));
    assert!(html.contains(
        r#"<link rel="alternate" type="application/atom+xml" title="News" href="/news/@@feed">"#
    ));
    assert_eq!(admin.add("/news", "Page", "p", "P", "").status(), 303);
    let page = site.browser().page("/news/p");
    assert!(!page.contains("application/atom+xml") && !page.contains("name=\"description\""));
    // A configured address must be one.
    for bad in [
        "example.org",
        "ftp://example.org",
        "https://example.org/site?x=1",
    ] {
        let text = format!("[site]\nurl = \"{bad}\"\n");
        assert!(
            bbru::config::SiteConfig::parse(&text, std::path::Path::new("s.toml")).is_err(),
            "{bad}"
        );
    }
}

#[test]
fn a_closed_site_has_an_empty_sitemap_and_folders_link_their_changes_and_feed() {
    let site = start_with(
        Arc::new(MemoryStorage::new("t")),
        site_config("public = false"),
    );
    let admin = site.admin();
    assert_eq!(admin.add("", "Page", "p", "P", "").status(), 303);
    let (_, _, map) = text_of(&site.browser(), "/sitemap.xml");
    assert!(!map.contains("<url>"), "{map}");
    let home = admin.page("/");
    assert!(home.contains("href=\"/@@changes\"") && home.contains("href=\"/@@feed\""));
}
