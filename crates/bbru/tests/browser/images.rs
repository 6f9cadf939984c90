//! Image scales in the browser: an image uploaded through the add form is shown on its
//! page at the scale `srcset` and `sizes` choose for the window, and as a thumbnail in
//! the folder listing.

use std::time::{Duration, Instant};

use super::{Browser, STEP_TIMEOUT, run};

impl Browser {
    /// The natural width of the image `css` selects, once the browser has loaded it,
    /// and the URL it chose (`currentSrc`).
    async fn loaded_image(&self, css: &str) -> (u64, String) {
        self.find(css).await;
        let script = format!(
            "const i = document.querySelector({css:?}); return i.complete ? [i.naturalWidth, i.currentSrc] : null;"
        );
        let deadline = Instant::now() + STEP_TIMEOUT;
        loop {
            let value = self.client.execute(&script, vec![]).await.expect("script");
            if let Some([w, src]) = value.as_array().map(Vec::as_slice)
                && w.as_u64().is_some_and(|w| w > 0)
            {
                return (
                    w.as_u64().unwrap_or(0),
                    src.as_str().unwrap_or("").to_owned(),
                );
            }
            assert!(Instant::now() < deadline, "{css} never loaded");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

#[test]
fn an_uploaded_image_is_shown_at_its_scales() {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let photo = dir.path().join("photo.jpg");
    image::RgbImage::from_fn(1600, 1200, |x, y| {
        image::Rgb([(x / 7) as u8, (y / 5) as u8, 90])
    })
    .save(&photo)
    .expect("writing the photo");
    run(
        "an_uploaded_image_is_shown_at_its_scales",
        move |mut b| async move {
            b.log_in().await;
            b.goto("/@@add?type=Image").await;
            b.fill("title", "Landscape").await;
            b.find("input[name=\"file\"]")
                .await
                .send_keys(&photo.display().to_string())
                .await
                .expect("choosing the file");
            b.click("input[name=\"state\"][value=\"published\"]").await;
            b.shot("add-image").await;
            b.click("main form button[type=submit]").await;
            b.arrive("/photo.jpg?").await;
            // The image's own URL is its bytes; its page is `@@view`.
            b.goto("/photo.jpg/@@view").await;
            // A 1200-pixel window: `sizes` asks for 768 CSS pixels, the large scale.
            let (width, src) = b.loaded_image("p.image img").await;
            assert_eq!(width, 768, "{src}");
            assert!(src.contains("/photo.jpg/@@images/large?v="), "{src}");
            b.shot("image-page").await;

            b.goto("/").await;
            let (width, src) = b.loaded_image("ul.items img.thumb").await;
            assert_eq!(width, 128, "{src}");
            b.shot("listing-with-thumbnail").await;
            drop(dir);
        },
    );
}
