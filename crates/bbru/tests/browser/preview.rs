//! The Markdown preview of the edit form, live in the browser: typing in the body shows
//! the rendered, sanitised text under it (from `@@preview`), nothing saved until Save.

use super::{Browser, run};

impl Browser {
    /// Waits until `css` holds `text`.
    async fn wait_text(&self, css: &str, text: &str) {
        let deadline = std::time::Instant::now() + super::STEP_TIMEOUT;
        loop {
            if self.has(css).await && self.text(css).await.contains(text) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{css} never showed {text:?}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
    }
}

#[test]
fn the_edit_form_previews_the_body_while_typing() {
    run(
        "the_edit_form_previews_the_body_while_typing",
        |mut b| async move {
            b.log_in().await;
            b.add_page().await;
            b.click("nav.langs a[lang=\"ru\"]").await;
            b.click("nav.tabs a[href=\"/welcome/@@edit\"]").await;
            assert!(
                !b.find("#preview-section")
                    .await
                    .is_displayed()
                    .await
                    .expect("shown?")
            );
            b.fill(
                "body",
                "# Заголовок\n\nТекст **жирный** <script>alert(1)</script>",
            )
            .await;
            b.wait_text("#preview strong", "жирный").await;
            assert_eq!(b.text("#preview-heading").await, "Предварительный просмотр");
            assert_eq!(b.text("#preview h1").await, "Заголовок");
            assert!(!b.has("#preview script").await, "the preview is sanitised");
            b.client
                .execute(
                    "document.getElementById('preview-section').scrollIntoView();",
                    vec![],
                )
                .await
                .expect("scroll to the preview");
            b.shot("live-preview").await;
            // Nothing saved yet; then Save.
            b.goto("/welcome").await;
            assert_eq!(b.text("div.body em").await, "world");
            b.goto("/welcome/@@edit").await;
            b.fill("body", "Сохранено **здесь**").await;
            b.wait_text("#preview strong", "здесь").await;
            b.click("main form button[type=submit]").await;
            assert_eq!(
                b.text("div.notice[role=status]").await,
                "Изменения сохранены."
            );
            assert_eq!(b.text("div.body strong").await, "здесь");
            b.shot("saved").await;
        },
    );
}
