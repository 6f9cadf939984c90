//! Recent changes (`@@changes`) from the transaction log, filtered to what the reader
//! may see, and the text diff of a page revision (`@@diff`).

use crate::start;

#[test]
fn recent_changes_list_what_the_reader_may_see_under_the_folder() {
    let site = start();
    let admin = site.admin();
    assert_eq!(admin.add("", "Folder", "docs", "Docs", "").status(), 303);
    assert_eq!(
        admin
            .add("/docs", "Page", "first", "First", "one\n")
            .status(),
        303
    );
    let r = admin.post_multipart(
        "/docs/@@add",
        &[
            ("type", "Page"),
            ("id", "secret"),
            ("title", "S"),
            ("state", "private"),
        ],
        None,
    );
    assert_eq!(r.status(), 303);
    assert_eq!(admin.add("", "Page", "elsewhere", "E", "").status(), 303);
    let r = admin.post_multipart("/docs/first/@@edit", &[("body", "ONE\n")], None);
    assert_eq!(r.status(), 303);
    crate::users::add_user(&admin, "bob");

    let anon = site.browser();
    let page = anon.page("/docs/@@changes");
    // The list itself (the section navigation around it links to the root's items).
    let start = page
        .find("<table class=\"changes\"")
        .expect("the list of changes");
    let end = start + page[start..].find("</table>").expect("its end");
    let html = &page[start..end];
    let edit = html.find("edit /docs/first").expect("the edit");
    let add = html.find("add Page /docs/first").expect("the addition");
    assert!(edit < add, "newest first: {html}");
    assert!(html.contains("admin (bootstrap)"), "who");
    assert!(html.contains("href=\"/docs/first\""));
    assert!(!html.contains("/docs/secret"), "a private item: {html}");
    assert!(
        !html.contains("/elsewhere") && !html.contains("bob"),
        "{html}"
    );
    assert!(
        admin
            .page("/docs/@@changes")
            .contains("add Page /docs/secret")
    );
    // The root's changes are the whole site's.
    assert!(anon.page("/@@changes").contains("add Page /elsewhere"));
    assert_eq!(anon.get("/docs/first/@@changes").status(), 404);
}

#[test]
fn a_revisions_diff_shows_removed_and_added_lines_escaped() {
    let site = start();
    let admin = site.admin();
    let body = "intro\nkeep\nold <b>line</b>\nend\n";
    assert_eq!(admin.add("", "Page", "p", "P", body).status(), 303);
    let r = admin.post_multipart(
        "/p/@@edit",
        &[("body", "intro\nkeep\nnew & better\nend\n")],
        None,
    );
    assert_eq!(r.status(), 303);
    let history = admin.page("/p/@@history");
    let at = history
        .find("/p/@@diff?rev=")
        .expect("a diff link in the history");
    let link: String = history[at..].chars().take_while(|c| *c != '"').collect();
    let html = admin.page(&link);
    assert!(
        html.contains("<del>- old &lt;b&gt;line&lt;/b&gt;\n</del>"),
        "{html}"
    );
    assert!(html.contains("<ins>+ new &amp; better\n</ins>"), "{html}");
    assert!(html.contains("<span>  keep\n</span>"));
    // The first version's diff is from nothing; readers may not see diffs.
    let first = history.rfind("/p/@@diff?rev=").unwrap();
    let link: String = history[first..].chars().take_while(|c| *c != '"').collect();
    assert!(admin.page(&link).contains("<ins>+ old &lt;b&gt;line"));
    assert_eq!(site.browser().get(&link).status(), 401);
    assert_eq!(admin.get("/p/@@diff?rev=zz").status(), 400);
}
