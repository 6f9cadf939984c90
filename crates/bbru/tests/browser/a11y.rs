//! Accessibility and layout in the browser: axe-core (vendored in `vendor/axe.min.js`,
//! from the npm registry, MPL-2.0, its licence beside it) run on the main pages — home,
//! a folder, a page, the login form, the edit form, the contents view — in English and
//! in Russian, chosen through the header's language switch (and the management views:
//! security, history, undo, users, password, an add form); no serious or critical
//! violation may be reported.  Each page is photographed at a phone's size (375×812)
//! and a desktop's (1200×900).

use fantoccini::Locator;
use serde_json::Value;

use super::{Browser, run};

/// axe-core 4.14.1, as `npm pack axe-core` gave it.
const AXE: &str = include_str!("vendor/axe.min.js");

/// The window sizes pages are photographed at: a phone, then a desktop.
const SIZES: [(&str, u32, u32); 2] = [("phone", 375, 812), ("desktop", 1200, 900)];

impl Browser {
    /// Runs axe-core on the page shown; panics listing any serious or critical violation.
    async fn axe(&self, what: &str) {
        let violations = self.violations().await;
        let bad: Vec<&Value> = violations
            .iter()
            .filter(|v| matches!(v["impact"].as_str(), Some("serious" | "critical")))
            .collect();
        assert!(
            bad.is_empty(),
            "{what} ({}): axe-core reports {}",
            self.location().await,
            serde_json::to_string_pretty(&bad).unwrap_or_default()
        );
    }

    /// What axe-core finds wrong with the page shown (id, impact, help, elements).
    async fn violations(&self) -> Vec<Value> {
        if !self
            .client
            .execute("return typeof window.axe === 'object';", vec![])
            .await
            .expect("probe axe")
            .as_bool()
            .unwrap_or(false)
        {
            self.client
                .execute(AXE, vec![])
                .await
                .expect("inject axe-core");
        }
        let script = r#"
            const done = arguments[arguments.length - 1];
            axe.run(document, { resultTypes: ['violations'] })
                .then(r => done(r.violations.map(v => ({
                    id: v.id, impact: v.impact, help: v.help,
                    nodes: v.nodes.map(n => n.target.join(' ')).slice(0, 5),
                }))))
                .catch(e => done([{ id: 'axe-error', impact: 'critical', help: String(e), nodes: [] }]));
        "#;
        let violations = self
            .client
            .execute_async(script, vec![])
            .await
            .expect("run axe-core");
        match violations {
            Value::Array(list) => list,
            other => panic!("axe-core answered {other}"),
        }
    }

    /// Checks the page shown with axe-core and photographs it at each size.
    async fn check_page(&mut self, name: &str) {
        for (size, width, height) in SIZES {
            self.client
                .set_window_size(width, height)
                .await
                .expect("resize the window");
            self.axe(&format!("{name} at {size}")).await;
            // Nothing sticks out sideways: the page never scrolls horizontally (wide
            // tables scroll inside their own box).
            let overflow = self
                .client
                .execute(
                    "const w = document.documentElement.clientWidth; \
                     if (document.documentElement.scrollWidth > w) \
                       return ['scrollWidth ' + document.documentElement.scrollWidth + ' > ' + w]; \
                     return [...document.querySelectorAll('body *')] \
                       .filter(e => e.getBoundingClientRect().right > w + 1 \
                         && !(e.parentElement && e.parentElement.closest('.table-wrap'))) \
                       .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + \
                         Math.round(e.getBoundingClientRect().right));",
                    vec![],
                )
                .await
                .expect("measure the page");
            assert_eq!(
                overflow,
                serde_json::json!([]),
                "{name} at {size}: wider than the window"
            );
            self.shot(&format!("{name}-{size}")).await;
        }
    }
}

#[test]
fn main_pages_have_no_serious_accessibility_violations_in_either_language() {
    run(
        "main_pages_have_no_serious_accessibility_violations_in_either_language",
        |mut b| async move {
            // axe-core does find what it should: an image without text, a field
            // without a label (so a clean result below means something).
            b.goto("/@@login").await;
            b.client
                .execute(
                    "document.querySelector('main').insertAdjacentHTML('beforeend', \
                     '<img src=\"/x.png\"><input type=\"text\" name=\"unlabelled\">');",
                    vec![],
                )
                .await
                .expect("spoil the page");
            let found: Vec<String> = b
                .violations()
                .await
                .iter()
                .filter_map(|v| v["id"].as_str().map(str::to_owned))
                .collect();
            assert!(
                found.iter().any(|id| id == "image-alt") && found.iter().any(|id| id == "label"),
                "axe-core missed the spoilt page's faults: {found:?}"
            );
            b.log_in().await;
            // A folder with a description, and a page in it.
            b.goto("/@@add?type=Folder").await;
            b.fill("id", "docs").await;
            b.fill("title", "Documentation").await;
            b.fill("description", "How to install and run the site")
                .await;
            b.click("main form button[type=submit]").await;
            b.arrive("/docs?").await;
            b.goto("/docs/@@add?type=Page").await;
            b.fill("id", "install").await;
            b.fill("title", "Installation").await;
            b.fill("description", "Step by step").await;
            b.fill("body", "# Steps\n\n1. Unpack\n2. Run `bbru serve`\n")
                .await;
            b.click("main form button[type=submit]").await;
            b.arrive("/docs/install?").await;

            for (lang, log_in) in [("en", "Log in"), ("ru", "Войти")] {
                // The switch in the header, from the page shown.
                if b.has(&format!("nav.langs a[lang=\"{lang}\"]")).await {
                    b.click(&format!("nav.langs a[lang=\"{lang}\"]")).await;
                }
                let html_lang = b
                    .find("html")
                    .await
                    .attr("lang")
                    .await
                    .expect("lang attribute");
                assert_eq!(html_lang.as_deref(), Some(lang));
                for (path, name) in [
                    ("/", "home"),
                    ("/docs", "folder"),
                    ("/docs/install", "page"),
                    ("/docs/install/@@edit", "edit-form"),
                    ("/docs/@@contents", "contents"),
                    ("/@@login", "login"),
                    ("/docs/@@security", "security"),
                    ("/docs/install/@@history", "history"),
                    ("/@@undo", "undo"),
                    ("/@@users", "users"),
                    ("/@@password", "password"),
                    ("/docs/@@add?type=File", "add-file"),
                ] {
                    b.goto(path).await;
                    b.find("main h1").await;
                    b.check_page(&format!("{lang}-{name}")).await;
                }
                // The login form's own button says it in the language.
                b.goto("/@@login").await;
                assert_eq!(
                    b.text("main form[action=\"/@@login\"] button").await,
                    log_in
                );
                // The section navigation leads down to the page, by titles.
                b.goto("/docs/install").await;
                let current = b
                    .find_by(
                        Locator::Css("nav.sections [aria-current=\"page\"]"),
                        "the current item in the sections",
                    )
                    .await;
                assert_eq!(current.text().await.expect("text"), "Installation");
                let crumbs = b.text("nav.crumbs").await;
                assert!(crumbs.contains("Documentation"), "{crumbs}");
            }
        },
    );
}
