//! The interface's languages: which one a request gets (the switch's cookie, then
//! `Accept-Language`, then the site default), `<html lang>`, every page kind rendered in
//! both languages, dates per language, form errors beside their fields, and the JSON
//! API unchanged by the language.

use std::sync::Arc;

use bbru::i18n::Lang;
use zodb_storage::MemoryStorage;

use super::*;

/// A site whose default language is Russian (the tests' usual site says English).
fn russian_site() -> Site {
    let mut config = site_config("");
    config.site.language = Lang::Ru;
    start_with(Arc::new(MemoryStorage::new("test")), config)
}

/// The `lang` of a page's `<html>` element.
fn html_lang(page: &str) -> &str {
    let at = page
        .find("<html lang=\"")
        .expect("an html element with lang")
        + 12;
    &page[at..at + page[at..].find('"').unwrap()]
}

fn get_with(b: &Browser, path: &str, headers: &[(&str, &str)]) -> (String, String) {
    let mut request = b.client.get(b.url(path));
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let r = request.send().unwrap();
    assert_eq!(r.status(), 200, "GET {path}");
    let vary = r
        .headers()
        .get("vary")
        .map(|v| v.to_str().unwrap().to_owned())
        .unwrap_or_default();
    let text = r.text().unwrap();
    (text, vary)
}

#[test]
fn the_cookie_wins_over_accept_language_which_wins_over_the_site_default() {
    let site = russian_site();
    let b = site.browser();
    // Nothing said: the site default.
    let (page, vary) = get_with(&b, "/", &[]);
    assert_eq!(html_lang(&page), "ru");
    assert!(page.contains(">Войти<"), "{page}");
    assert!(
        vary.contains("Accept-Language") && vary.contains("Cookie"),
        "{vary}"
    );
    // The browser's preference, by q-value.
    let (page, _) = get_with(&b, "/", &[("accept-language", "de-DE, en;q=0.8, ru;q=0.5")]);
    assert_eq!(html_lang(&page), "en");
    assert!(page.contains(">Log in<"));
    let (page, _) = get_with(&b, "/", &[("accept-language", "en;q=0.3, ru-RU;q=0.9")]);
    assert_eq!(html_lang(&page), "ru");
    // Languages the site lacks leave the default.
    let (page, _) = get_with(&b, "/", &[("accept-language", "fr, de;q=0.9")]);
    assert_eq!(html_lang(&page), "ru");
    // The switch: a link that sets the cookie and comes back.
    let r = b.get("/@@language?lang=en&came_from=/%40%40login");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/@@login");
    let cookie = r.headers()["set-cookie"].to_str().unwrap();
    assert!(cookie.starts_with("bbru_lang=en;"), "{cookie}");
    // The cookie now wins over a browser asking for Russian.
    let (page, _) = get_with(&b, "/", &[("accept-language", "ru")]);
    assert_eq!(html_lang(&page), "en");
    assert!(page.contains(">Log in<"));
    // And back.
    assert_eq!(b.get("/@@language?lang=ru&came_from=/").status(), 303);
    let (page, _) = get_with(&b, "/", &[("accept-language", "en")]);
    assert_eq!(html_lang(&page), "ru");
}

#[test]
fn the_switch_refuses_unknown_languages_and_other_sites() {
    let site = russian_site();
    let b = site.browser();
    let r = b.get("/@@language?lang=de");
    assert_eq!(r.status(), 400);
    assert!(r.text().unwrap().contains("Неизвестный язык"));
    let r = b.get("/@@language?lang=en&came_from=https://evil.example/");
    assert_eq!(r.status(), 303);
    assert_eq!(r.headers()["location"], "/");
}

#[test]
fn the_header_offers_the_other_language_and_marks_the_current_one() {
    let site = russian_site();
    let page = site.browser().page("/");
    assert!(
        page.contains("<span lang=\"ru\" aria-current=\"true\">Русский</span>"),
        "{page}"
    );
    assert!(
        page.contains("href=\"/@@language?lang=en&amp;came_from=%2F\""),
        "{page}"
    );
    assert!(
        page.contains(
            "<form class=\"search\" role=\"search\" method=\"get\" action=\"/@@search\">"
        )
    );
}

/// Every kind of page, in both languages, renders (a missing message would panic the
/// request in a test build) in its language, with no Fluent placeholder left over.
#[test]
fn every_page_kind_renders_in_both_languages() {
    let site = russian_site();
    let admin = site.admin();
    assert_eq!(
        admin.add("", "Folder", "docs", "Документация", "").status(),
        303
    );
    let r = admin.add(
        "/docs",
        "Page",
        "install",
        "Установка",
        "# Как установить\n\nТекст.",
    );
    assert_eq!(r.status(), 303);
    let r = admin.post_multipart(
        "/docs/@@add",
        &[("type", "File"), ("title", "Notes")],
        Some(("notes.txt", "text/plain", b"hello".to_vec())),
    );
    assert_eq!(r.status(), 303);
    let pages = [
        ("/", "Добавить:", "Add:"),
        ("/docs", "Установка", "Установка"),
        ("/docs/install", "Как установить", "Как установить"),
        ("/docs/install/@@view", "Автор:", "Created by"),
        ("/docs/install/@@edit", "Заголовок", "Title"),
        (
            "/docs/@@add?type=Image",
            "Добавить: Изображение",
            "Add Image",
        ),
        ("/docs/@@contents", "Переименовать", "Rename"),
        ("/docs/notes.txt/@@view", "5 байт", "5 bytes"),
        (
            "/docs/install/@@history",
            "Вернуться к этой версии",
            "Revert to this version",
        ),
        (
            "/docs/@@security",
            "Унаследованные настройки",
            "Inherited settings",
        ),
        ("/@@users", "Пользователи и группы", "Users and groups"),
        (
            "/@@undo",
            "Отменить выбранные транзакции",
            "Undo the chosen transactions",
        ),
        ("/@@password", "Смена пароля", "Change your password"),
        ("/@@login", "Войти", "Log in"),
        (
            "/docs/@@changes",
            "Последние изменения в «Документация»",
            "Recent changes in Документация",
        ),
        (
            "/docs/install/@@diff",
            "Изменения «Установка»",
            "Changes of Установка",
        ),
        ("/docs/install", "Состояние:", "State:"),
        (
            "/docs/@@add?type=Page",
            "Закрыто (до публикации видят только редакторы)",
            "Private (only editors see it until it is published)",
        ),
    ];
    for lang in ["ru", "en"] {
        for (path, ru, en) in pages {
            let path = if path.ends_with("@@history") {
                // A version, so the revert button shows.
                let list = admin.page(path);
                let at = list.find("?serial=").expect("a version link");
                format!("{path}{}", &list[at..at + 24])
            } else {
                path.to_owned()
            };
            let (page, _) = get_with(&admin, &path, &[("accept-language", lang)]);
            assert_eq!(html_lang(&page), lang, "{path}");
            let wanted = if lang == "ru" { ru } else { en };
            assert!(
                page.contains(wanted),
                "{path} in {lang}: {wanted:?} missing:\n{page}"
            );
            assert!(
                !page.contains("{ $") && !page.contains("{$"),
                "{path} in {lang}"
            );
        }
    }
    // Error pages too.
    let r = admin
        .client
        .get(admin.url("/nowhere"))
        .header("accept-language", "ru")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let page = r.text().unwrap();
    assert_eq!(html_lang(&page), "ru");
    assert!(page.contains("404 Страница не найдена"), "{page}");
}

#[test]
fn breadcrumbs_and_titles_use_item_titles() {
    let site = russian_site();
    let admin = site.admin();
    admin.add("", "Folder", "docs", "Документация", "");
    admin.add("/docs", "Page", "install", "Установка", "text");
    let page = admin.page("/docs/install");
    assert!(
        page.contains("<title>Установка — Test site</title>"),
        "{page}"
    );
    assert!(admin.page("/").contains("<title>Test site</title>"));
    let crumbs = &page[page.find("class=\"crumbs\"").unwrap()..];
    let crumbs = &crumbs[..crumbs.find("</nav>").unwrap()];
    assert!(crumbs.contains(">Главная</a>"), "{crumbs}");
    assert!(
        crumbs.contains("<a href=\"/docs\">Документация</a>"),
        "{crumbs}"
    );
    assert!(
        crumbs.contains("<a href=\"/docs/install\" aria-current=\"page\">Установка</a>"),
        "{crumbs}"
    );
    assert!(
        !crumbs.contains(">docs<") && !crumbs.contains(">install<"),
        "{crumbs}"
    );
    // The section navigation opens the folder on the way down to the page.
    let nav = &page[page.find("class=\"sections\"").unwrap()..];
    let nav = &nav[..nav.find("</nav>").unwrap()];
    assert!(nav.contains(">Документация</a><ul>"), "{nav}");
    assert!(nav.contains("aria-current=\"page\">Установка</a>"), "{nav}");
}

#[test]
fn dates_and_sizes_follow_the_language() {
    let site = russian_site();
    let admin = site.admin();
    admin.add("", "Page", "p", "P", "x");
    let months_ru = [
        "января",
        "февраля",
        "марта",
        "апреля",
        "мая",
        "июня",
        "июля",
        "августа",
        "сентября",
        "октября",
        "ноября",
        "декабря",
    ];
    let page = admin.page("/p");
    assert!(
        months_ru.iter().any(|m| page.contains(&format!(" {m} 20"))),
        "{page}"
    );
    assert!(page.contains(" г., "), "{page}");
    let (page, _) = get_with(&admin, "/p", &[("accept-language", "en")]);
    let months_en = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    assert!(
        months_en.iter().any(|m| page.contains(&format!(" {m} 20"))),
        "{page}"
    );
}

#[test]
fn form_errors_are_shown_beside_their_field_in_the_language() {
    let site = russian_site();
    let admin = site.admin();
    let r = admin.add("", "Page", "p", "", "Текст, который не должен пропасть");
    assert_eq!(r.status(), 400);
    let page = r.text().unwrap();
    assert_eq!(html_lang(&page), "ru");
    // The error sits in the title's field, tied to its input, and the text typed stays.
    let title = &page[page.find("<label for=\"title\">").unwrap()..];
    let title = &title[..title.find("</div>").unwrap()];
    assert!(title.contains("aria-invalid=\"true\""), "{title}");
    assert!(
        title.contains("aria-describedby=\"title-error\""),
        "{title}"
    );
    assert!(
        title.contains("id=\"title-error\">нужен заголовок</p>"),
        "{title}"
    );
    assert!(
        page.contains(">Текст, который не должен пропасть</textarea>"),
        "{page}"
    );
    // A name already taken: beside the name.
    assert_eq!(admin.add("", "Page", "p", "P", "").status(), 303);
    let r = admin.add("", "Page", "p", "Другая", "");
    assert_eq!(r.status(), 400);
    let page = r.text().unwrap();
    assert!(
        page.contains("id=\"id-error\">элемент с именем &quot;p&quot; здесь уже есть</p>"),
        "{page}"
    );
}

#[test]
fn notices_are_flash_messages_in_the_language() {
    let site = russian_site();
    let admin = site.admin();
    admin.add("", "Page", "p", "P", "x");
    let page = admin.page("/p?notice=saved");
    assert!(
        page.contains("<div class=\"notice\" role=\"status\">Изменения сохранены.</div>"),
        "{page}"
    );
}

#[test]
fn the_json_api_stays_english_whatever_the_language() {
    let site = russian_site();
    let b = site.browser();
    let r = b
        .client
        .get(b.url("/nowhere"))
        .header("accept", "application/json")
        .header("accept-language", "ru")
        .header("cookie", "bbru_lang=ru")
        .send()
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: serde_json::Value = r.json().unwrap();
    assert_eq!(body["error"]["message"], "Not found.");
}

#[test]
fn the_preview_renders_sanitised_markdown_for_editors_only() {
    let site = russian_site();
    let admin = site.admin();
    admin.add("", "Page", "p", "P", "old text");
    let body = "**bold** <script>alert(1)</script><img src=x onerror=alert(2)>";
    let r = admin.post("/p/@@preview", &[("body", body)]);
    assert_eq!(r.status(), 200);
    let html = r.text().unwrap();
    assert!(html.contains("<strong>bold</strong>"), "{html}");
    assert!(
        !html.contains("<script") && !html.contains("onerror"),
        "{html}"
    );
    // A refused body says why, in the language.
    let r = admin.post("/p/@@preview", &[("body", &"<div>".repeat(200))]);
    assert!(r.text().unwrap().contains("вложены на 200 уровней"));
    // Without the CSRF token, or without Edit, nothing is rendered.
    let r = admin
        .client
        .post(admin.url("/p/@@preview"))
        .form(&[("body", "x")])
        .send()
        .unwrap();
    assert_eq!(r.status(), 400);
    let visitor = site.browser();
    assert_eq!(visitor.post("/p/@@preview", &[("body", "x")]).status(), 401);
    assert_eq!(visitor.get("/p/@@preview").status(), 405);
    // Without scripts, the Preview button brings the form back with the preview, unsaved.
    let form = admin.page("/p/@@edit");
    let marker = "name=\"serial\" value=\"";
    let at = form.find(marker).expect("the version field") + marker.len();
    let version = &form[at..at + 16];
    let fields = [
        ("title", "P"),
        ("body", "*new* text"),
        ("preview", "1"),
        ("serial", version),
    ];
    let r = admin.post_multipart("/p/@@edit", &fields, None);
    assert_eq!(r.status(), 200);
    let page = r.text().unwrap();
    assert!(page.contains("<em>new</em> text"), "{page}");
    assert!(page.contains(">*new* text</textarea>"), "{page}");
    assert!(
        page.contains(&format!("name=\"serial\" value=\"{version}\"")),
        "{page}"
    );
    assert!(
        admin.page("/p").contains("old text"),
        "the preview saved nothing"
    );
}

#[test]
fn limits_met_before_the_view_are_explained_in_the_language_with_the_details() {
    let site = russian_site();
    let admin = site.admin();
    let r = admin.post_multipart(
        "/@@add",
        &[("type", "File"), ("title", "Big")],
        Some(("big.bin", "application/octet-stream", vec![0; 200_000])),
    );
    assert_eq!(r.status(), 413);
    let page = r.text().unwrap();
    assert_eq!(html_lang(&page), "ru");
    assert!(page.contains("413 Слишком большой запрос"), "{page}");
    assert!(
        page.contains("Запрос больше, чем принимает этот сайт."),
        "{page}"
    );
    // The limit itself, as worded where it was met, marked as English.
    assert!(
        page.contains("<p class=\"detail\" lang=\"en\"><small>"),
        "{page}"
    );
    assert!(page.contains("100000"), "{page}");
}

#[test]
fn the_section_navigation_lists_only_what_the_reader_may_see() {
    let site = russian_site();
    let admin = site.admin();
    admin.add("", "Folder", "open", "Открытая папка", "");
    admin.add("", "Folder", "hidden", "Скрытая папка", "");
    super::users::grant(&admin, "/hidden", "group:everybody", "Member", "deny");
    let nav = |page: &str| {
        let at = page
            .find("class=\"sections\"")
            .expect("a section navigation");
        page[at..at + page[at..].find("</nav>").unwrap()].to_owned()
    };
    let seen_by_admin = nav(&admin.page("/open"));
    assert!(seen_by_admin.contains("Скрытая папка"), "{seen_by_admin}");
    let seen_by_visitor = nav(&site.browser().page("/open"));
    assert!(
        seen_by_visitor.contains("Открытая папка"),
        "{seen_by_visitor}"
    );
    assert!(!seen_by_visitor.contains("Скрытая"), "{seen_by_visitor}");
}

#[test]
fn the_add_user_form_shows_its_errors_beside_the_fields() {
    let site = russian_site();
    let admin = site.admin();
    let r = admin.post(
        "/@@users",
        &[
            ("action", "add_user"),
            ("login", "Bob!"),
            ("title", "Боб"),
            ("password", "long-enough"),
            ("password2", "long-enough"),
        ],
    );
    assert_eq!(r.status(), 400);
    let page = r.text().unwrap();
    assert!(
        page.contains("id=\"new-login-error\">Логин должен быть длиной от 1 до 64"),
        "{page}"
    );
    assert!(
        page.contains("value=\"Bob!\""),
        "the login typed is kept: {page}"
    );
    assert!(
        page.contains("value=\"Боб\""),
        "the title typed is kept: {page}"
    );
    let r = admin.post(
        "/@@users",
        &[
            ("action", "add_user"),
            ("login", "bob"),
            ("password", "long-enough"),
            ("password2", "other-words"),
        ],
    );
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .unwrap()
            .contains("id=\"new-password-error\">Пароли не совпадают")
    );
}
