//! Image scales (`@@images/<scale>`) of real images made here: sizes, EXIF orientation
//! honoured, metadata gone from the scales, caching headers, a decompression bomb
//! refused, `srcset` on the image view and thumbnails in listings.

use std::io::Cursor;

use image::{ImageFormat, Rgb, RgbImage};

use crate::{Browser, start};

/// A `width`×`height` JPEG, red on its left half and blue on its right.
fn halves_jpeg(width: u32, height: u32) -> Vec<u8> {
    let img = RgbImage::from_fn(width, height, |x, _| {
        if x < width / 2 {
            Rgb([255, 0, 0])
        } else {
            Rgb([0, 0, 255])
        }
    });
    let mut out = Vec::new();
    img.write_to(&mut Cursor::new(&mut out), ImageFormat::Jpeg)
        .unwrap();
    out
}

/// `jpeg` with an EXIF segment (orientation `orientation`, and a camera make that must
/// not survive) and a comment inserted after its SOI marker.
fn with_exif(jpeg: &[u8], orientation: u16) -> Vec<u8> {
    let make = b"SecretCam\0";
    // TIFF, big-endian: header, one IFD of two entries, then the make's text.
    let mut tiff = b"MM\0\x2a\0\0\0\x08".to_vec();
    tiff.extend(2u16.to_be_bytes());
    // Make (0x010f), ASCII, its count, at offset 8 + 2 + 2*12 + 4 = 38.
    tiff.extend([0x01, 0x0f, 0, 2]);
    tiff.extend((make.len() as u32).to_be_bytes());
    tiff.extend(38u32.to_be_bytes());
    // Orientation (0x0112), SHORT, 1, value in the first two bytes.
    tiff.extend([0x01, 0x12, 0, 3, 0, 0, 0, 1]);
    tiff.extend(orientation.to_be_bytes());
    tiff.extend([0, 0]);
    tiff.extend([0, 0, 0, 0]);
    tiff.extend(make);
    let mut app1 = b"Exif\0\0".to_vec();
    app1.extend(tiff);
    let comment = b"GPS 55.75N 37.61E";
    let mut out = jpeg[..2].to_vec();
    out.extend([0xff, 0xe1]);
    out.extend(((app1.len() + 2) as u16).to_be_bytes());
    out.extend(&app1);
    out.extend([0xff, 0xfe]);
    out.extend(((comment.len() + 2) as u16).to_be_bytes());
    out.extend(comment);
    out.extend(&jpeg[2..]);
    out
}

fn upload(b: &Browser, name: &str, mime: &str, data: Vec<u8>) {
    let r = b.post_multipart(
        "/@@add",
        &[("type", "Image"), ("id", name), ("title", "Photo")],
        Some((name, mime, data)),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
}

fn get_image(
    b: &Browser,
    path: &str,
) -> (reqwest::header::HeaderMap, image::DynamicImage, Vec<u8>) {
    let r = b.get(path);
    assert_eq!(r.status(), 200, "GET {path}");
    let headers = r.headers().clone();
    let bytes = r.bytes().unwrap().to_vec();
    (headers, image::load_from_memory(&bytes).unwrap(), bytes)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn scales_fit_their_size_stand_up_as_exif_says_and_carry_no_metadata() {
    let site = start();
    let admin = site.admin();
    let original = with_exif(&halves_jpeg(1000, 500), 6);
    assert!(contains(&original, b"SecretCam") && contains(&original, b"GPS 55"));
    upload(&admin, "photo.jpg", "image/jpeg", original);
    let anon = site.browser();

    for (scale, side) in [("thumb", 128), ("preview", 400), ("large", 768)] {
        let (headers, img, bytes) = get_image(&anon, &format!("/photo.jpg/@@images/{scale}"));
        assert_eq!(headers["content-type"], "image/jpeg");
        // Orientation 6 (rotate 90° clockwise): the 1000×500 landscape stands up.
        assert_eq!((img.width(), img.height()), (side / 2, side), "{scale}");
        // Metadata stripped: no EXIF segment, no camera name, no comment.
        assert!(!contains(&bytes, b"Exif\0\0"), "{scale} kept EXIF");
        assert!(!contains(&bytes, b"SecretCam") && !contains(&bytes, b"GPS 55"));
        // The left (red) half is now on top.
        let rgb = img.to_rgb8();
        let top = rgb.get_pixel(img.width() / 2, img.height() / 8);
        let bottom = rgb.get_pixel(img.width() / 2, img.height() * 7 / 8);
        assert!(top[0] > 200 && top[2] < 60, "top {top:?}");
        assert!(bottom[2] > 200 && bottom[0] < 60, "bottom {bottom:?}");
    }
    // The page gives each scale's real width and the large one's size.
    let html = anon.page("/photo.jpg/@@view");
    for (scale, width) in [("thumb", 64), ("preview", 200), ("large", 384)] {
        let srcset = &html[html.find("srcset=").unwrap()..];
        let rest = &srcset[srcset.find(&format!("@@images/{scale}?v=")).unwrap()..];
        let descriptor = rest[rest.find(' ').unwrap() + 1..]
            .split([',', '"'])
            .next()
            .unwrap();
        assert_eq!(descriptor, format!("{width}w"), "{scale}: {html}");
    }
    assert!(html.contains("width=\"384\" height=\"768\""), "{html}");
    assert!(anon.page("/").contains("width=\"64\" height=\"128\""));
    // Unknown scales do not exist; nor do scales of what is no image.
    assert_eq!(anon.get("/photo.jpg/@@images/huge").status(), 404);
    assert_eq!(admin.add("", "Page", "p", "P", "x").status(), 303);
    assert_eq!(anon.get("/p/@@images/thumb").status(), 404);
}

#[test]
fn small_images_are_not_enlarged_and_png_stays_png_with_its_alpha() {
    let site = start();
    let admin = site.admin();
    let img = image::RgbaImage::from_fn(60, 90, |x, _| image::Rgba([0, 128, 0, (x * 4) as u8]));
    let mut png = Vec::new();
    img.write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
        .unwrap();
    upload(&admin, "dot.png", "image/png", png);
    let (headers, scaled, _) = get_image(&admin, "/dot.png/@@images/large");
    assert_eq!(headers["content-type"], "image/png");
    assert_eq!((scaled.width(), scaled.height()), (60, 90));
    assert_eq!(scaled.to_rgba8().get_pixel(10, 10)[3], 40);
    let (_, thumb, _) = get_image(&admin, "/dot.png/@@images/thumb");
    assert_eq!((thumb.width(), thumb.height()), (60, 90));
}

#[test]
fn scales_have_an_etag_and_the_site_links_them_with_srcset_and_thumbnails() {
    let site = start();
    let admin = site.admin();
    upload(&admin, "photo.jpg", "image/jpeg", halves_jpeg(800, 600));
    let anon = site.browser();
    let (headers, _, _) = get_image(&anon, "/photo.jpg/@@images/preview");
    let etag = headers["etag"].to_str().unwrap().to_owned();
    assert_eq!(headers["cache-control"], "no-cache");
    let r = anon
        .client
        .get(anon.url("/photo.jpg/@@images/preview"))
        .header("If-None-Match", &etag)
        .send()
        .unwrap();
    assert_eq!(r.status(), 304);

    // The image view: the large scale, every scale in srcset, versioned URLs.
    let html = anon.page("/photo.jpg/@@view");
    assert!(html.contains("srcset=\""), "{html}");
    for scale in ["thumb", "preview", "large"] {
        assert!(
            html.contains(&format!("/photo.jpg/@@images/{scale}?v=")),
            "{html}"
        );
    }
    let at = html.find("/photo.jpg/@@images/large?v=").unwrap();
    let url: String = html[at..]
        .chars()
        .take_while(|c| *c != '"' && *c != ' ')
        .collect();
    let (headers, _, _) = get_image(&anon, &url);
    assert_eq!(
        headers["cache-control"],
        "public, max-age=31536000, immutable"
    );
    // The folder listing shows a thumbnail.
    let root = anon.page("/");
    assert!(root.contains("/photo.jpg/@@images/thumb?v="), "{root}");

    // A new upload is a new revision: new ETag, new size.
    let r = admin.post_multipart(
        "/photo.jpg/@@edit",
        &[],
        Some(("photo.jpg", "image/jpeg", halves_jpeg(200, 100))),
    );
    assert_eq!(r.status(), 303, "{}", r.text().unwrap());
    let (headers, img, _) = get_image(&anon, "/photo.jpg/@@images/preview");
    assert_ne!(headers["etag"].to_str().unwrap(), etag);
    assert_eq!((img.width(), img.height()), (200, 100));
}

/// A PNG of `width`×`height` whose pixel data is a few bytes: the header claims the size.
fn bomb_png(width: u32, height: u32) -> Vec<u8> {
    let mut small = Vec::new();
    RgbImage::new(1, 1)
        .write_to(&mut Cursor::new(&mut small), ImageFormat::Png)
        .unwrap();
    // IHDR's data starts at 16: width, height; its CRC covers type and data (12..29).
    small[16..20].copy_from_slice(&width.to_be_bytes());
    small[20..24].copy_from_slice(&height.to_be_bytes());
    let crc = crc32(&small[12..29]);
    small[29..33].copy_from_slice(&crc.to_be_bytes());
    small
}

fn crc32(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xedb8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[test]
fn a_decompression_bomb_is_refused_with_a_reason_and_the_site_goes_on() {
    let site = start();
    let admin = site.admin();
    upload(&admin, "bomb.png", "image/png", bomb_png(100_000, 100_000));
    let r = admin.get("/bomb.png/@@images/thumb");
    assert_eq!(r.status(), 422);
    let text = r.text().unwrap();
    assert!(text.contains("100000×100000 pixels"), "{text}");
    // Damaged data is refused too, not a 500.
    upload(
        &admin,
        "broken.jpg",
        "image/jpeg",
        vec![0xff, 0xd8, 0xff, 0, 1, 2],
    );
    assert_eq!(admin.get("/broken.jpg/@@images/thumb").status(), 422);
    upload(&admin, "fine.jpg", "image/jpeg", halves_jpeg(300, 300));
    let (_, img, _) = get_image(&admin, "/fine.jpg/@@images/thumb");
    assert_eq!(img.width(), 128);
}

#[test]
fn gif_and_webp_images_get_png_scales() {
    let site = start();
    let admin = site.admin();
    let img = image::RgbaImage::from_fn(300, 200, |x, y| image::Rgba([x as u8, y as u8, 0, 255]));
    for (name, mime, format) in [
        ("a.gif", "image/gif", ImageFormat::Gif),
        ("a.webp", "image/webp", ImageFormat::WebP),
    ] {
        let mut data = Vec::new();
        img.write_to(&mut Cursor::new(&mut data), format).unwrap();
        upload(&admin, name, mime, data);
        let (headers, thumb, _) = get_image(&admin, &format!("/{name}/@@images/thumb"));
        assert_eq!(headers["content-type"], "image/png", "{name}");
        assert_eq!((thumb.width(), thumb.height()), (128, 85), "{name}");
    }
}
