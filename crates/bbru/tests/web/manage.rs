//! `@@contents`: the listing and its actions (rename, cut, copy, paste, delete, reorder),
//! each with its own permission; the signed clipboard cookie.

use bbru::model::{ContentRef, Folder, Kind, Site as SiteObject, edit};
use reqwest::header::{AUTHORIZATION, COOKIE, SET_COOKIE};
use zodb::Oid;

use crate::users::{add_user, grant, last_note, logged_in};
use crate::{ADMIN, Browser, Site, csrf_in, start};

/// The oid of the item at `path` (names from the root), as the database has it now.
fn oid_at(site: &Site, path: &[&str]) -> Option<Oid> {
    let mut conn = site.db.connection();
    let tx = conn.begin();
    let s = SiteObject::find(&tx).unwrap().unwrap();
    let mut folder = tx.get(s).unwrap().content;
    let mut oid = None;
    for name in path {
        let f = tx.get(folder).unwrap();
        let any = f.items.get(&tx, &name.to_string()).unwrap()?;
        oid = Some(any.oid());
        if let Some(ContentRef::Folder(r)) = ContentRef::resolve(&tx, &any).unwrap() {
            folder = r;
        }
    }
    oid
}

/// The item names of a listing, in the order shown.
fn listed(html: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = html;
    let marker = "name=\"ids\" value=\"";
    while let Some(at) = rest.find(marker) {
        rest = &rest[at + marker.len()..];
        out.push(rest[..rest.find('"').unwrap()].to_owned());
    }
    out
}

fn act(b: &Browser, folder: &str, action: &str, ids: &[&str]) -> reqwest::blocking::Response {
    let mut fields = vec![("action", action)];
    fields.extend(ids.iter().map(|id| ("ids", *id)));
    b.post(&format!("{folder}/@@contents"), &fields)
}

fn ok(r: reqwest::blocking::Response) -> reqwest::blocking::Response {
    assert_eq!(r.status(), 303, "{}", r.text().unwrap_or_default());
    r
}

fn set_cookies(r: &reqwest::blocking::Response) -> Vec<String> {
    r.headers()
        .get_all(SET_COOKIE)
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect()
}

#[test]
fn the_listing_shows_visible_items_and_the_allowed_actions() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    admin.add("/docs", "Page", "b-page", "<B> page", "text");
    admin.add("/docs", "Page", "a-page", "A page", "text");
    let r = admin.post_multipart(
        "/docs/@@add",
        &[("type", "File"), ("title", "Data")],
        Some(("data.bin", "application/octet-stream", vec![7; 2048])),
    );
    assert_eq!(r.status(), 303);
    admin.add("/docs", "Page", "secret", "Secret", "text");
    grant(&admin, "/docs/secret", "group:everybody", "Member", "deny");
    grant(
        &admin,
        "/docs/secret",
        "group:authenticated",
        "Member",
        "deny",
    );

    let html = admin.page("/docs/@@contents");
    assert_eq!(listed(&html), ["a-page", "b-page", "data.bin", "secret"]);
    assert!(
        html.contains("href=\"/docs/b-page\">&lt;B&gt; page</a>"),
        "{html}"
    );
    assert!(html.contains("2 KB"), "{html}");
    for button in ["rename", "cut", "copy", "delete", "move_up", "move_top"] {
        assert!(html.contains(&format!("value=\"{button}\"")), "{button}");
    }
    // A member sees what she may see, and may only copy.
    add_user(&admin, "mia");
    let mia = logged_in(&site, "mia");
    let html = mia.page("/docs/@@contents");
    assert_eq!(listed(&html), ["a-page", "b-page", "data.bin"]);
    assert!(html.contains("value=\"copy\""));
    for button in ["rename", "cut", "delete", "paste", "move_up"] {
        assert!(
            !html.contains(&format!("value=\"{button}\"")),
            "{button}: {html}"
        );
    }
    // Nor may she act on what she cannot see.
    let r = act(&mia, "/docs", "copy", &["secret"]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("There is no item"));
    // Only folders have contents.
    assert!(
        admin
            .get("/docs/a-page/@@contents")
            .status()
            .is_client_error()
    );
}

#[test]
fn rename_changes_names_keeps_the_order_and_refuses_clashes() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    for name in ["a", "b", "c"] {
        admin.add("/docs", "Page", name, &format!("Page {name}"), "");
    }
    ok(act(&admin, "/docs", "move_top", &["c"]));
    // Without new names: the form asking for them.
    let html = admin.page("/docs/@@contents");
    assert!(html.contains("value=\"rename\""));
    let r = act(&admin, "/docs", "rename", &["a", "c"]);
    assert_eq!(r.status(), 200);
    let form = r.text().unwrap();
    assert!(form.contains("name=\"new_ids\" value=\"c\""), "{form}");
    let oid = oid_at(&site, &["docs", "c"]);
    let r = admin.post(
        "/docs/@@contents",
        &[
            ("action", "rename"),
            ("ids", "c"),
            ("ids", "a"),
            ("new_ids", "z"),
            ("new_ids", "a"),
        ],
    );
    ok(r);
    assert_eq!(last_note(&site).1, "rename /docs/c to /docs/z");
    assert_eq!(admin.get("/docs/c").status(), 404);
    assert_eq!(admin.get("/docs/z").status(), 200);
    assert_eq!(oid_at(&site, &["docs", "z"]), oid);
    // Still first: the arranged order follows the new name.
    assert_eq!(listed(&admin.page("/docs/@@contents")), ["z", "a", "b"]);
    for (new, why) in [
        ("b", "already exists"),
        (".hidden", "not a valid name"),
        ("a b", "not a valid name"),
    ] {
        let r = admin.post(
            "/docs/@@contents",
            &[("action", "rename"), ("ids", "a"), ("new_ids", new)],
        );
        assert_eq!(r.status(), 400, "{new}");
        assert!(r.text().unwrap().contains(why), "{new}");
    }
    let r = admin.post(
        "/docs/@@contents",
        &[
            ("action", "rename"),
            ("ids", "a"),
            ("ids", "b"),
            ("new_ids", "x"),
        ],
    );
    assert_eq!(r.status(), 400);
    // Renaming needs Edit on the folder.
    add_user(&admin, "mia");
    let mia = logged_in(&site, "mia");
    let r = mia.post(
        "/docs/@@contents",
        &[("action", "rename"), ("ids", "a"), ("new_ids", "q")],
    );
    assert_eq!(r.status(), 403);
    assert_eq!(admin.get("/docs/a").status(), 200);
}

#[test]
fn delete_and_cut_need_delete_on_the_folder_not_the_item() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    for name in ["x", "y", "keep"] {
        admin.add("/docs", "Page", name, name, "");
    }
    add_user(&admin, "bob");
    add_user(&admin, "carl");
    grant(&admin, "/docs", "user:bob", "Editor", "allow");
    // Manager of an item alone: everything on it, nothing on its folder.
    grant(&admin, "/docs/keep", "user:carl", "Manager", "allow");
    let carl = logged_in(&site, "carl");
    assert_eq!(act(&carl, "/docs", "delete", &["keep"]).status(), 403);
    assert_eq!(act(&carl, "/docs", "cut", &["keep"]).status(), 403);
    let html = carl.page("/docs/@@contents");
    assert!(!html.contains("value=\"delete\""), "{html}");
    assert_eq!(admin.get("/docs/keep").status(), 200);
    let bob = logged_in(&site, "bob");
    let html = bob.page("/docs/@@contents");
    assert!(html.contains("value=\"delete\""), "{html}");
    // Editor of /docs, not of the root: /docs itself stays.
    assert_eq!(act(&bob, "/", "delete", &["docs"]).status(), 403);
    assert_eq!(act(&bob, "/", "cut", &["docs"]).status(), 403);
    let r = ok(act(&bob, "/docs", "delete", &["x", "y"]));
    assert!(
        r.headers()["location"]
            .to_str()
            .unwrap()
            .starts_with("/docs/@@contents?notice=deleted")
    );
    assert_eq!(
        last_note(&site),
        ("bob".into(), "delete /docs/x, /docs/y".into())
    );
    assert_eq!(admin.get("/docs/x").status(), 404);
    assert_eq!(listed(&admin.page("/docs/@@contents")), ["keep"]);
    // A member may delete nothing.
    add_user(&admin, "mia");
    let mia = logged_in(&site, "mia");
    assert_eq!(act(&mia, "/docs", "delete", &["keep"]).status(), 403);
    // Nothing selected, or an item that is gone: a clear message.
    let r = act(&admin, "/docs", "delete", &[]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Select at least one item"));
    assert_eq!(act(&admin, "/docs", "delete", &["x"]).status(), 400);
    // The root is no item: it cannot be deleted.
    assert_eq!(act(&admin, "/", "delete", &[""]).status(), 400);
    assert_eq!(admin.get("/").status(), 200);
}

#[test]
fn cut_and_paste_moves_the_same_object() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "a", "A", "");
    admin.add("", "Folder", "docs", "Docs", "");
    admin.add("/a", "Page", "p", "The page", "body");
    admin.add("/a", "Page", "q", "Other", "body");
    ok(act(&admin, "/a", "move_top", &["q"]));
    let oid = oid_at(&site, &["a", "p"]).unwrap();
    let r = ok(act(&admin, "/a", "cut", &["p"]));
    let cookie = set_cookies(&r)
        .into_iter()
        .find(|c| c.starts_with("bbru_clipboard="))
        .unwrap();
    assert!(cookie.contains("HttpOnly"), "{cookie}");
    // Cutting changes nothing yet.
    assert_eq!(admin.get("/a/p").status(), 200);
    let html = admin.page("/docs/@@contents");
    assert!(html.contains("Clipboard: 1 item cut:"), "{html}");
    assert!(html.contains("value=\"paste\""));
    let r = ok(act(&admin, "/docs", "paste", &[]));
    assert!(
        set_cookies(&r)
            .iter()
            .any(|c| c.starts_with("bbru_clipboard=;") && c.contains("Max-Age=0"))
    );
    assert_eq!(
        last_note(&site),
        (
            "admin (bootstrap)".into(),
            "paste /a/p into /docs (move)".into()
        )
    );
    assert_eq!(admin.get("/a/p").status(), 404);
    assert!(admin.page("/docs/p").contains("The page"));
    assert_eq!(oid_at(&site, &["docs", "p"]), Some(oid));
    assert_eq!(listed(&admin.page("/a/@@contents")), ["q"]);
    // The clipboard is empty now.
    let html = admin.page("/docs/@@contents");
    assert!(!html.contains("value=\"paste\""), "{html}");
    let r = act(&admin, "/docs", "paste", &[]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("clipboard is empty"));
    // A name taken in the target: the moved item gets a free one.
    admin.add("/a", "Page", "p", "Second p", "");
    ok(act(&admin, "/a", "cut", &["p"]));
    ok(act(&admin, "/docs", "paste", &[]));
    assert!(admin.page("/docs/copy_of_p").contains("Second p"));
}

#[test]
fn moving_a_folder_into_itself_or_below_is_refused() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "a", "A", "");
    admin.add("/a", "Folder", "sub", "Sub", "");
    ok(act(&admin, "/", "cut", &["a"]));
    for target in ["/a", "/a/sub"] {
        let r = act(&admin, target, "paste", &[]);
        assert_eq!(r.status(), 400, "{target}");
        let text = r.text().unwrap();
        assert!(text.contains("cannot be moved into itself"), "{text}");
    }
    assert_eq!(admin.get("/a/sub").status(), 200);
    // Pasting where it already is changes nothing.
    ok(act(&admin, "/", "paste", &[]));
    assert_eq!(admin.get("/a/sub").status(), 200);
    assert_eq!(admin.get("/copy_of_a").status(), 404);
}

#[test]
fn pasted_copies_get_copy_of_names_on_clashes() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    admin.add("", "Folder", "other", "Other", "");
    admin.add("/docs", "Page", "p", "P", "");
    ok(act(&admin, "/docs", "copy", &["p"]));
    let html = admin.page("/docs/@@contents");
    assert!(html.contains("Clipboard: 1 item copied:"), "{html}");
    ok(act(&admin, "/docs", "paste", &[]));
    assert_eq!(last_note(&site).1, "paste /docs/p into /docs (copy)");
    // The clipboard stays after a copy: paste again.
    ok(act(&admin, "/docs", "paste", &[]));
    ok(act(&admin, "/other", "paste", &[]));
    assert_eq!(
        listed(&admin.page("/docs/@@contents")),
        ["copy2_of_p", "copy_of_p", "p"]
    );
    assert_eq!(listed(&admin.page("/other/@@contents")), ["p"]);
    assert_ne!(
        oid_at(&site, &["other", "p"]),
        oid_at(&site, &["docs", "p"])
    );
    // Pasting needs Add on the target folder.
    add_user(&admin, "mia");
    let mia = logged_in(&site, "mia");
    ok(act(&mia, "/docs", "copy", &["p"]));
    assert_eq!(act(&mia, "/other", "paste", &[]).status(), 403);
}

#[test]
fn copies_are_deep() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "src", "Source", "");
    admin.add("/src", "Folder", "sub", "Sub", "");
    admin.add(
        "/src/sub",
        "Page",
        "page",
        "Original title",
        "original body",
    );
    admin.add("", "Folder", "dst", "Destination", "");
    add_user(&admin, "bob");
    grant(&admin, "/", "user:bob", "Editor", "allow");
    admin.post("/@@users", &[("action", "add_group"), ("id", "staff")]);
    grant(&admin, "/src/sub", "group:staff", "Member", "allow");
    let bob = logged_in(&site, "bob");
    ok(act(&bob, "/", "copy", &["src"]));
    ok(act(&bob, "/dst", "paste", &[]));
    assert_eq!(
        last_note(&site),
        ("bob".into(), "paste /src into /dst (copy)".into())
    );
    let copy = bob.page("/dst/src/sub/page");
    assert!(copy.contains("Original title") && copy.contains("original body"));
    assert!(copy.contains("Created by bob"), "{copy}");
    for path in [["src"].as_slice(), &["src", "sub"], &["src", "sub", "page"]] {
        let copied: Vec<&str> = ["dst"].iter().chain(path).copied().collect();
        assert_ne!(oid_at(&site, path), oid_at(&site, &copied), "{path:?}");
    }
    // Grants come along.
    assert!(
        admin
            .page("/dst/src/sub/@@security")
            .contains("group:staff")
    );
    // Changing the copy leaves the original alone, and adding to it too.
    let r = bob.post_multipart(
        "/dst/src/sub/page/@@edit",
        &[("title", "Changed"), ("body", "changed")],
        None,
    );
    assert_eq!(r.status(), 303);
    bob.add("/dst/src/sub", "Page", "new", "New", "");
    assert!(bob.page("/src/sub/page").contains("Original title"));
    assert_eq!(bob.get("/src/sub/new").status(), 404);
    assert_eq!(listed(&bob.page("/src/sub/@@contents")), ["page"]);
}

#[test]
fn copying_a_folder_that_holds_hidden_items_is_refused() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "src", "Source", "");
    admin.add("/src", "Page", "private", "Private", "");
    add_user(&admin, "bob");
    grant(&admin, "/", "user:bob", "Editor", "allow");
    grant(&admin, "/src/private", "user:bob", "Editor", "deny");
    grant(
        &admin,
        "/src/private",
        "group:authenticated",
        "Member",
        "deny",
    );
    grant(&admin, "/src/private", "group:everybody", "Member", "deny");
    let bob = logged_in(&site, "bob");
    ok(act(&bob, "/", "copy", &["src"]));
    let r = act(&bob, "/", "paste", &[]);
    assert_eq!(r.status(), 400);
    let text = r.text().unwrap();
    assert!(
        text.contains("/src/private, which you may not see"),
        "{text}"
    );
    assert_eq!(admin.get("/copy_of_src").status(), 404);
}

#[test]
fn a_cut_is_checked_again_at_paste_time() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "a", "A", "");
    admin.add("", "Folder", "b", "B", "");
    admin.add("/a", "Page", "p", "P", "");
    add_user(&admin, "bob");
    grant(&admin, "/", "user:bob", "Editor", "allow");
    let bob = logged_in(&site, "bob");
    ok(act(&bob, "/a", "cut", &["p"]));
    // Rights on the item do not matter; those on its folder do.
    grant(&admin, "/a/p", "user:bob", "Manager", "allow");
    grant(&admin, "/a", "user:bob", "Editor", "deny");
    assert_eq!(act(&bob, "/b", "paste", &[]).status(), 403);
    assert_eq!(admin.get("/a/p").status(), 200);
    // Moving in needs Add on the target.
    grant(&admin, "/a", "user:bob", "Editor", "unset");
    grant(&admin, "/b", "user:bob", "Editor", "deny");
    assert_eq!(act(&bob, "/b", "paste", &[]).status(), 403);
    assert_eq!(admin.get("/a/p").status(), 200);
    grant(&admin, "/b", "user:bob", "Editor", "unset");
    // Gone meanwhile: said so.
    ok(act(&admin, "/a", "delete", &["p"]));
    let r = act(&bob, "/b", "paste", &[]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("/a/p is no longer there"));
}

#[test]
fn a_tampered_clipboard_is_refused() {
    use base64::Engine;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "a", "A", "");
    admin.add("", "Folder", "b", "B", "");
    admin.add("/a", "Page", "p", "P", "");
    admin.add("/a", "Page", "other", "Other", "");
    let r = ok(act(&admin, "/a", "copy", &["p"]));
    let cookie = set_cookies(&r)
        .into_iter()
        .find_map(|c| {
            c.strip_prefix("bbru_clipboard=")
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    let (payload, sig) = cookie.split_once('.').unwrap();
    let json = String::from_utf8(URL_SAFE_NO_PAD.decode(payload).unwrap()).unwrap();
    assert!(json.contains("\"p\""), "{json}");
    let forged_json = json
        .replace("\"copy\"", "\"cut\"")
        .replace("\"p\"", "\"other\"");
    let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(forged_json));

    // A plain client (no cookie jar): its own CSRF cookie, Basic credentials, and the
    // clipboard cookie as we like it.
    let client = reqwest::blocking::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap();
    let login_page = client.get(format!("{}/@@login", site.base)).send().unwrap();
    let csrf_cookie = set_cookies(&login_page)
        .into_iter()
        .find_map(|c| {
            c.strip_prefix("bbru_csrf=")
                .map(|v| v.split(';').next().unwrap().to_owned())
        })
        .unwrap();
    let token = csrf_in(&login_page.text().unwrap()).unwrap();
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{}:{}", ADMIN.0, ADMIN.1))
    );
    let paste = |clipboard: &str| {
        client
            .post(format!("{}/b/@@contents", site.base))
            .header(AUTHORIZATION, &basic)
            .header(
                COOKIE,
                format!("bbru_csrf={csrf_cookie}; bbru_clipboard={clipboard}"),
            )
            .form(&[("action", "paste"), ("_csrf", token.as_str())])
            .send()
            .unwrap()
    };
    for bad in [
        forged.as_str(),
        "garbage",
        &format!("{payload}.{}", &sig[1..]),
    ] {
        let r = paste(bad);
        assert_eq!(r.status(), 400, "{bad}");
        assert!(
            r.text().unwrap().contains("changed outside this site"),
            "{bad}"
        );
    }
    assert_eq!(admin.get("/a/other").status(), 200);
    assert_eq!(admin.get("/b/other").status(), 404);
    // The untouched cookie works.
    assert_eq!(paste(&cookie).status(), 303);
    assert_eq!(admin.get("/b/p").status(), 200);
}

#[test]
fn reordering_shows_in_the_listing_and_the_folder_view() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Docs", "");
    for name in ["a", "b", "c", "d"] {
        admin.add("/docs", "Page", name, &format!("Title {name}"), "");
    }
    let order = || listed(&admin.page("/docs/@@contents"));
    assert_eq!(order(), ["a", "b", "c", "d"]);
    ok(act(&admin, "/docs", "move_top", &["d"]));
    assert_eq!(last_note(&site).1, "reorder /docs");
    assert_eq!(order(), ["d", "a", "b", "c"]);
    ok(act(&admin, "/docs", "move_down", &["d"]));
    assert_eq!(order(), ["a", "d", "b", "c"]);
    ok(act(&admin, "/docs", "move_up", &["b", "c"]));
    assert_eq!(order(), ["a", "b", "c", "d"]);
    ok(act(&admin, "/docs", "move_bottom", &["a", "b"]));
    assert_eq!(order(), ["c", "d", "a", "b"]);
    // The folder's own view lists in the same order.
    let view = admin.page("/docs");
    let at = |name: &str| view.find(&format!("href=\"/docs/{name}\"")).unwrap();
    assert!(
        at("c") < at("d") && at("d") < at("a") && at("a") < at("b"),
        "{view}"
    );
    // New items come after the arranged ones; deleted ones leave the order.
    admin.add("/docs", "Page", "e", "Title e", "");
    ok(act(&admin, "/docs", "delete", &["d"]));
    assert_eq!(order(), ["c", "a", "b", "e"]);
    // Reordering needs Edit on the folder.
    add_user(&admin, "mia");
    let mia = logged_in(&site, "mia");
    assert_eq!(act(&mia, "/docs", "move_top", &["e"]).status(), 403);
}

#[test]
fn folders_of_more_than_a_thousand_items_are_not_reordered() {
    let site = start();
    let admin = site.admin();
    admin.add("", "Folder", "big", "Big", "");
    {
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let s = SiteObject::find(&tx).unwrap().unwrap();
        let root = tx.get(tx.get(s).unwrap().content).unwrap();
        let any = root.items.get(&tx, &"big".to_owned()).unwrap().unwrap();
        let big = any.downcast::<Folder>().unwrap();
        for i in 0..1001 {
            edit::create(
                &tx,
                big,
                &format!("p{i:04}"),
                Kind::Page,
                edit::Fields {
                    title: Some(format!("Page {i}")),
                    ..Default::default()
                },
                "test",
                0.0,
            )
            .unwrap();
        }
        tx.commit().unwrap();
    }
    let r = act(&admin, "/big", "move_top", &["p1000"]);
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("at most 1,000 items"));
    // The listing comes in batches.
    let html = admin.page("/big/@@contents");
    assert_eq!(listed(&html).len(), 500);
    assert!(html.contains("Items 1–500 of 1,001"), "{html}");
    let last = admin.page("/big/@@contents?start=1000");
    assert_eq!(listed(&last), ["p1000"]);
}
