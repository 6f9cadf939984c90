//! Search: `/@@search` and `/@search` over a real site.  Russian and English inflections
//! meet, ranking puts a title match first, a reader never sees what they cannot view,
//! every kind of change (edit, rename, move, copy, delete, revert) shows in the results
//! of the next query, two edits of different pages in concurrent transactions both
//! commit, and `reindex` rebuilds a missing index.

use serde_json::{Value, json};
use zodb::Transaction;

use crate::matrix::api;
use crate::users::grant;
use crate::{ADMIN, Browser, Site, start};
use bbru::model::{ContentRef, Site as SiteObject};

/// The JSON answer of `/@search?q=` for `credentials` (anonymous: `None`).
fn search(site: &Site, q: &str, credentials: Option<(&str, &str)>) -> Value {
    let path = format!(
        "/@search?{}",
        serde_urlencoded::to_string([("q", q)]).unwrap()
    );
    let r = api(site, "GET", &path, credentials, None);
    assert_eq!(r.status(), 200, "{path}");
    r.json().unwrap()
}

/// The paths of the results, in order.
fn paths(answer: &Value) -> Vec<String> {
    answer["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| {
            let id = i["@id"].as_str().unwrap();
            id[id.find("//").unwrap() + 2..]
                .split_once('/')
                .map(|(_, p)| format!("/{p}"))
                .unwrap()
        })
        .collect()
}

fn found(site: &Site, q: &str) -> Vec<String> {
    paths(&search(site, q, Some(ADMIN)))
}

fn html(b: &Browser, q: &str) -> String {
    b.page(&format!(
        "/@@search?{}",
        serde_urlencoded::to_string([("q", q)]).unwrap()
    ))
}

/// The list of results of a search page (the section navigation around it links to
/// the root's items).
fn results(page: &str) -> &str {
    let Some(start) = page.find("<ol class=\"results\"") else {
        return "";
    };
    let end = page[start..]
        .find("</ol>")
        .map_or(page.len(), |e| start + e);
    &page[start..end]
}

fn ok(r: reqwest::blocking::Response) {
    assert!(
        r.status().is_success() || r.status() == 303,
        "{}: {}",
        r.status(),
        r.text().unwrap_or_default()
    );
}

#[test]
fn inflected_russian_and_english_words_are_found_with_marked_snippets() {
    let site = start();
    let admin = site.admin();
    ok(admin.add(
        "",
        "Page",
        "setup",
        "Как поставить сервер",
        "Установка bbru занимает пять минут, если a < b.",
    ));
    ok(admin.add("", "Page", "guide", "Guide", "How to install the server."));
    ok(admin.add("", "Page", "other", "Другое", "Ничего общего."));

    let anonymous = site.browser();
    let page = html(&anonymous, "установки");
    assert!(results(&page).contains("href=\"/setup\""), "{page}");
    assert!(!results(&page).contains("href=\"/guide\""), "{page}");
    assert!(
        page.contains("<mark>Установка</mark> bbru занимает пять минут, если a &lt; b."),
        "{page}"
    );
    assert!(page.contains("Results: 1"), "{page}");
    // The query stays in the form.
    assert!(page.contains("value=\"установки\""), "{page}");

    let page = html(&anonymous, "Installing");
    assert!(results(&page).contains("href=\"/guide\""), "{page}");
    assert!(page.contains("<mark>install</mark>"), "{page}");
    // ё and е are one letter for search; every word must be found (AND).
    assert_eq!(found(&site, "сервёр"), vec!["/setup"]);
    assert_eq!(found(&site, "server"), vec!["/guide"]);
    assert!(found(&site, "установка guide").is_empty());
    // A query of markup is text, escaped.
    let page = html(&anonymous, "<script>alert(1)</script>");
    assert!(!page.contains("<script>alert"), "{page}");
    // Nothing asked, nothing listed; an over-long query is refused.
    assert!(!html(&anonymous, "").contains("Results:"));
    let long = "слово ".repeat(300);
    let r = anonymous.get(&format!(
        "/@@search?{}",
        serde_urlencoded::to_string([("q", long.as_str())]).unwrap()
    ));
    assert_eq!(r.status(), 400);
}

#[test]
fn a_title_match_ranks_first_and_json_pages_through_results() {
    let site = start();
    let admin = site.admin();
    let filler = "слово ".repeat(40);
    ok(admin.add(
        "",
        "Page",
        "once",
        "Заметки",
        &format!("{filler} самовар {filler}"),
    ));
    ok(admin.add("", "Page", "title", "Самовар", "Про чай."));
    ok(admin.add("", "Page", "twice", "Записки", "Самовар и самовары."));
    assert_eq!(found(&site, "самовары"), vec!["/title", "/twice", "/once"]);

    let answer = search(&site, "самовар", Some(ADMIN));
    assert_eq!(answer["items_total"], 3);
    assert_eq!(answer["items"][0]["title"], "Самовар");
    assert_eq!(answer["items"][0]["@type"], "Page");
    let r = api(
        &site,
        "GET",
        "/@search?q=самовар&b_size=2",
        Some(ADMIN),
        None,
    );
    let answer: Value = r.json().unwrap();
    assert_eq!(answer["items"].as_array().unwrap().len(), 2);
    assert_eq!(answer["items_total"], 3);
    assert!(
        answer["batching"]["next"]
            .as_str()
            .unwrap()
            .contains("b_start=2")
    );
    let r = api(
        &site,
        "GET",
        "/@search?q=самовар&b_start=2&b_size=2",
        Some(ADMIN),
        None,
    );
    assert_eq!(paths(&r.json().unwrap()), vec!["/once"]);
    // @@search with Accept: application/json is the same answer.
    let r = api(&site, "GET", "/@@search?q=самовар", Some(ADMIN), None);
    assert_eq!(r.json::<Value>().unwrap()["items_total"], 3);
}

#[test]
fn readers_never_see_what_they_cannot_view() {
    let site = start();
    let admin = site.admin();
    ok(admin.add("", "Folder", "hidden", "Архив", ""));
    ok(admin.add("/hidden", "Page", "inside", "Секретный план", "план"));
    ok(admin.add("", "Page", "private", "Личный план", "план"));
    ok(admin.add("", "Page", "open", "Открытый план", "план"));
    grant(&admin, "/hidden", "group:everybody", "Member", "deny");
    grant(&admin, "/private", "group:everybody", "Member", "deny");

    let anonymous = search(&site, "план", None);
    assert_eq!(paths(&anonymous), vec!["/open"]);
    assert_eq!(anonymous["items_total"], 1);
    let page = html(&site.browser(), "план");
    assert!(
        !page.contains("Секретный") && !page.contains("Личный"),
        "{page}"
    );
    let mut all = found(&site, "план");
    all.sort();
    assert_eq!(all, vec!["/hidden/inside", "/open", "/private"]);
}

#[test]
fn edits_renames_moves_copies_and_deletes_show_in_the_next_query() {
    let site = start();
    let admin = site.admin();
    ok(admin.add("", "Folder", "docs", "Документы", ""));
    ok(admin.add("", "Folder", "attic", "Чердак", ""));
    ok(admin.add("/docs", "Page", "a", "Первая", "текст про кошку"));
    assert_eq!(found(&site, "кошки"), vec!["/docs/a"]);

    // Edit (JSON API): the old word goes, the new one comes.
    ok(api(
        &site,
        "PATCH",
        "/docs/a",
        Some(ADMIN),
        Some(&json!({"body": "текст про собаку"})),
    ));
    assert!(found(&site, "кошка").is_empty());
    assert_eq!(found(&site, "собаки"), vec!["/docs/a"]);

    // Rename the folder: the item inside is found at its new path.
    ok(admin.post(
        "/@@contents",
        &[("action", "rename"), ("ids", "docs"), ("new_ids", "papers")],
    ));
    assert_eq!(found(&site, "собака"), vec!["/papers/a"]);

    // Cut and paste into another folder.
    ok(admin.post("/papers/@@contents", &[("action", "cut"), ("ids", "a")]));
    ok(admin.post("/attic/@@contents", &[("action", "paste")]));
    assert_eq!(found(&site, "собака"), vec!["/attic/a"]);

    // Copy the folder: both copies are found.
    ok(admin.post("/@@contents", &[("action", "copy"), ("ids", "attic")]));
    ok(admin.post("/papers/@@contents", &[("action", "paste")]));
    let mut both = found(&site, "собака");
    both.sort();
    assert_eq!(both, vec!["/attic/a", "/papers/attic/a"]);

    // Revert the page to its first version (history).
    let r = api(&site, "GET", "/attic/a", Some(ADMIN), None);
    assert_eq!(r.status(), 200);
    let history = admin.page("/attic/a/@@history");
    let serials: Vec<String> = history
        .split("?serial=")
        .skip(1)
        .map(|rest| rest.chars().take(16).collect())
        .collect();
    let oldest = serials.last().expect("revisions listed");
    ok(admin.post("/attic/a/@@history", &[("serial", oldest.as_str())]));
    assert_eq!(found(&site, "кошка"), vec!["/attic/a"]);

    // Delete a folder: what it held is gone from the results; delete by the API too.
    ok(admin.post("/@@contents", &[("action", "delete"), ("ids", "papers")]));
    assert!(found(&site, "собака").is_empty());
    ok(api(&site, "DELETE", "/attic/a", Some(ADMIN), None));
    assert!(found(&site, "кошка").is_empty());
    assert_eq!(found(&site, "чердак"), vec!["/attic"]);
}

/// Edits the body of the page `name` of the root folder in `tx`.
fn edit_page(tx: &Transaction<'_>, name: &str, body: &str) {
    let site = SiteObject::find(tx).unwrap().unwrap();
    let root = tx.get(tx.get(site).unwrap().content).unwrap();
    let any = root.items.get(tx, &name.to_owned()).unwrap().unwrap();
    let item = ContentRef::resolve(tx, &any).unwrap().unwrap();
    let fields = bbru::model::edit::Fields {
        body: Some(body.to_owned()),
        ..Default::default()
    };
    bbru::model::edit::apply(tx, item, fields, 1.0).unwrap();
}

#[test]
fn concurrent_edits_of_different_pages_both_commit() {
    let site = start();
    let admin = site.admin();
    for name in ["one", "two"] {
        ok(admin.add("", "Page", name, name, "общий текст"));
    }
    let mut first = site.db.connection();
    let mut second = site.db.connection();
    let a = first.begin();
    let b = second.begin();
    // Both change postings of the same terms (one bucket), the counters and nothing else
    // of each other's.
    edit_page(&a, "one", "общий текст и новость");
    edit_page(&b, "two", "общий текст и новость");
    a.commit().expect("the first edit commits");
    b.commit().expect("the second edit commits, merged");
    let mut both = found(&site, "новости");
    both.sort();
    assert_eq!(both, vec!["/one", "/two"]);
}

#[test]
fn reindex_rebuilds_a_missing_index() {
    let site = start();
    let admin = site.admin();
    ok(admin.add("", "Folder", "docs", "Документы", ""));
    ok(admin.add("/docs", "Page", "a", "Установка", "как установить"));
    ok(admin.add("", "Page", "b", "Install", "installation notes"));
    // A site from before search: no index.
    {
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let s = SiteObject::find(&tx).unwrap().unwrap();
        tx.update(s, |s| s.search = None).unwrap();
        tx.commit().unwrap();
    }
    let answer = search(&site, "установка", Some(ADMIN));
    assert_eq!(answer["index"], "missing");
    assert_eq!(answer["items_total"], 0);
    assert!(html(&site.admin(), "установка").contains("run bbru reindex"));
    // The first change makes an index, incomplete: the edited page is not in it yet
    // (it had no entry), a new one is.
    ok(admin.add("", "Page", "c", "Установки", "новая"));
    let answer = search(&site, "установка", Some(ADMIN));
    assert_eq!(answer["index"], "incomplete");
    assert_eq!(paths(&answer), vec!["/c"]);

    let report = bbru::search::reindex::reindex(&site.db, |_| {}).unwrap();
    assert_eq!(report.items, 5, "{report:?}");
    let answer = search(&site, "установка", Some(ADMIN));
    assert_eq!(answer["index"], "ready");
    let mut all = paths(&answer);
    all.sort();
    assert_eq!(all, vec!["/c", "/docs/a"]);
    assert_eq!(found(&site, "installing"), vec!["/b"]);

    // Again: nothing to change, no transaction.
    let last = site.db.storage().last_transaction();
    let again = bbru::search::reindex::reindex(&site.db, |_| {}).unwrap();
    assert!(!again.created);
    let log = site.db.storage().undo_log(0, 100).unwrap();
    let newer: Vec<String> = log
        .iter()
        .filter(|e| e.tid > last)
        .map(|e| String::from_utf8_lossy(&e.description).into_owned())
        .collect();
    assert!(newer.is_empty(), "{newer:?}");
}

#[test]
fn undoing_an_older_deletion_merges_with_later_index_changes() {
    let site = start();
    let admin = site.admin();
    ok(admin.add("", "Page", "a", "Кошка", "мяу"));
    ok(admin.add("", "Page", "b", "Собака", "гав"));
    ok(api(&site, "DELETE", "/a", Some(ADMIN), None));
    // Later changes write the same index objects (postings, counters).
    ok(api(
        &site,
        "PATCH",
        "/b",
        Some(ADMIN),
        Some(&json!({"body": "гав гав мяу"})),
    ));
    ok(admin.add("", "Page", "c", "Мышь", "пи"));
    assert_eq!(found(&site, "мяу"), vec!["/b"]);
    let log = site.db.storage().undo_log(0, 20).unwrap();
    let delete = log
        .iter()
        .find(|e| e.description == b"delete /a")
        .expect("the deletion in the log");
    let tid: String = delete
        .tid
        .0
        .to_be_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let r = admin.post("/@@undo", &[("undo", tid.as_str())]);
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let mut both = found(&site, "мяу");
    both.sort();
    assert_eq!(both, vec!["/a", "/b"]);
    assert_eq!(found(&site, "мышь"), vec!["/c"]);
    assert_eq!(found(&site, "гав"), vec!["/b"]);
}

#[test]
fn the_reindex_command_indexes_a_site_made_before_search() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("Data.fs");
    {
        let storage = std::sync::Arc::new(zodb_storage::FileStorage::open(&file).unwrap());
        let db = zodb::DB::open(storage.clone()).unwrap();
        let mut conn = db.connection();
        let tx = conn.begin();
        let site = SiteObject::create(&tx, "Old site", "test", 0.0).unwrap();
        let root = tx.get(site).unwrap().content;
        for (name, title) in [("a", "Установка"), ("b", "Installation")] {
            let fields = bbru::model::edit::Fields {
                title: Some(title.into()),
                ..Default::default()
            };
            bbru::model::edit::create(&tx, root, name, bbru::model::Kind::Page, fields, "t", 0.0)
                .unwrap();
        }
        // As a site from before search: no index.
        tx.update(site, |s| s.search = None).unwrap();
        tx.commit().unwrap();
        drop(conn);
        drop(db);
        zodb_storage::Storage::close(&*storage).unwrap();
    }
    let file_arg = file.to_str().unwrap();
    let out = crate::common::bbru(dir.path(), &["reindex", "--file", file_arg]);
    let text = crate::common::output_text(&out);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("3 items indexed, 0 stale entries removed"),
        "{text}"
    );
    assert!(text.contains("(a new index)"), "{text}");
    let storage = std::sync::Arc::new(zodb_storage::FileStorage::open(&file).unwrap());
    let db = zodb::DB::open(storage).unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let found = |q: &str| {
        let r = bbru::search::query::search(&tx, &bbru::security::Principal::Anonymous, q, 0, 10)
            .unwrap();
        assert_eq!(r.index, bbru::search::query::IndexState::Ready);
        r.hits.iter().map(|h| h.url.clone()).collect::<Vec<_>>()
    };
    // No grants on this bare site: an anonymous reader sees nothing, a manager all.
    assert!(found("установки").is_empty());
    let manager = bbru::security::Principal::Bootstrap { login: "m".into() };
    let r = bbru::search::query::search(&tx, &manager, "установки", 0, 10).unwrap();
    assert_eq!(r.hits.len(), 1);
    assert_eq!(r.hits[0].url, "/a");
    let r = bbru::search::query::search(&tx, &manager, "installing", 0, 10).unwrap();
    assert_eq!(r.hits[0].url, "/b");
}

/// A private page (publication state) is found by those who may edit it, not by
/// readers, until it is published.
#[test]
fn a_private_page_is_found_only_by_its_editors_until_published() {
    let site = start();
    let admin = site.admin();
    let r = admin.post_multipart(
        "/@@add",
        &[
            ("type", "Page"),
            ("id", "draft"),
            ("title", "Черновик"),
            ("body", "Секретная установка."),
            ("state", "private"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    let anonymous = site.browser();
    assert!(!results(&html(&anonymous, "установка")).contains("/draft"));
    assert!(results(&html(&admin, "установка")).contains("href=\"/draft\""));
    let r = admin.post("/draft/@@publish", &[("state", "published")]);
    assert_eq!(r.status(), 303);
    assert!(results(&html(&anonymous, "установка")).contains("href=\"/draft\""));
}
