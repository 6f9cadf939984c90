//! Image scales: `@@images/thumb`, `@@images/preview`, `@@images/large` (Plone's
//! names; at most 128, 400 and 768 pixels on the longest side, never enlarged), made
//! with the `image` crate once per image revision and kept in memory
//! ([`ImageScales`]), and the `srcset` of the image view and the thumbnails of listings.
//!
//! - The key of a scale is the image's oid, the serial of its record and the scale: a new
//!   upload (or any edit) makes new scales, an old revision's scales age out.  Nothing is
//!   written to the database on a read.
//! - EXIF orientation is applied (a phone's portrait photo stands up), then the image
//!   is scaled and encoded again: JPEG stays JPEG (quality [`JPEG_QUALITY`]), anything
//!   else becomes PNG (transparency kept).  Encoding from pixels writes no EXIF, XMP nor
//!   comments: a scale never carries the original's metadata (camera, GPS position).
//! - Decoding is bounded before it starts: the dimensions from the header against
//!   [`limits::IMAGE_PIXELS_MAX`], allocations against
//!   [`limits::IMAGE_DECODE_BYTES_MAX`], and at most [`limits::IMAGE_SCALINGS_AT_ONCE`]
//!   decodes at a time; a decompression bomb gets a clear refusal (422), never an OOM.
//! - Replies carry an `ETag` (oid, serial, scale) and answer `If-None-Match` with 304.
//!   URLs the site writes carry the serial (`?v=`); such a request for the current
//!   revision may be kept by caches for a year (`immutable`; `private` unless anonymous
//!   visitors may see the image), any other must be revalidated.

use std::io::{BufRead, Cursor, Seek};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::http::StatusCode;
use axum::http::header::{CACHE_CONTROL, ETAG, IF_NONE_MATCH};
use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};
use maud::{Markup, html};
use parking_lot::Mutex;
use zodb::Transaction;

use crate::limits;
use crate::model::content::Bytes;
use crate::model::{Content, Image, publication};
use crate::security::{self, Principal};
use crate::tr;
use crate::web::render::child_url;
use crate::web::{AppError, Ctx, Reply};

/// Quality of the JPEG scales: visually close to the original at a third of its size.
pub const JPEG_QUALITY: u8 = 85;

/// The scales, smallest first: name and longest side in pixels (Plone's defaults).
pub const SCALES: [(&str, u32); 3] = [("thumb", 128), ("preview", 400), ("large", 768)];

/// The longest side of scale `name`.
pub fn scale_side(name: &str) -> Option<u32> {
    SCALES.iter().find(|(n, _)| *n == name).map(|(_, s)| *s)
}

/// One scale, encoded.
#[derive(Debug)]
pub struct Scaled {
    pub content_type: &'static str,
    pub data: Vec<u8>,
    pub width: u32,
    pub height: u32,
}

/// Why an image could not be scaled.
#[derive(Debug, thiserror::Error)]
pub enum ScaleError {
    #[error(
        "the image is {width}×{height} pixels; this site scales images of at most {max} pixels"
    )]
    TooLarge { width: u32, height: u32, max: u64 },
    #[error("the image cannot be decoded: {0}")]
    Decode(#[from] image::ImageError),
    #[error("the image's format is not one this site reads")]
    UnknownFormat,
    #[error("the image cannot be read: {0}")]
    Io(#[from] std::io::Error),
}

/// An image revision: its oid and serial.
type Revision = (u64, u64);

/// Width and height in pixels.
type Size = (u32, u32);

/// The scales made by this instance, least recently used first out, at most
/// [`limits::IMAGE_SCALES_BYTES_MAX`] bytes; and the gate that bounds decodes at once.
#[derive(Debug)]
pub struct ImageScales {
    cache: Mutex<lru::LruCache<(u64, u64, u32), Arc<Scaled>>>,
    bytes: AtomicU64,
    made: AtomicU64,
    scalings: crate::web::gate::Gate,
    /// Oriented sizes of originals by (oid, serial), read from their headers, for the
    /// `width`, `height` and `srcset` of pages (at most
    /// [`limits::IMAGE_SIZES_CACHED_MAX`]; `None`: unreadable).
    sizes: Mutex<lru::LruCache<Revision, Option<Size>>>,
}

impl Default for ImageScales {
    fn default() -> Self {
        ImageScales {
            cache: Mutex::new(lru::LruCache::unbounded()),
            bytes: AtomicU64::new(0),
            made: AtomicU64::new(0),
            scalings: crate::web::gate::Gate::new(limits::IMAGE_SCALINGS_AT_ONCE),
            sizes: Mutex::new(lru::LruCache::new(
                std::num::NonZeroUsize::new(limits::IMAGE_SIZES_CACHED_MAX)
                    .unwrap_or(std::num::NonZeroUsize::MIN),
            )),
        }
    }
}

impl ImageScales {
    /// How many scales this instance made (cache misses).
    pub fn made(&self) -> u64 {
        self.made.load(Ordering::Relaxed)
    }

    fn get(&self, key: (u64, u64, u32)) -> Option<Arc<Scaled>> {
        self.cache.lock().get(&key).cloned()
    }

    fn put(&self, key: (u64, u64, u32), scaled: Arc<Scaled>) {
        let size = scaled.data.len() as u64;
        let mut cache = self.cache.lock();
        if let Some(old) = cache.put(key, scaled) {
            self.bytes
                .fetch_sub(old.data.len() as u64, Ordering::Relaxed);
        }
        let mut bytes = self.bytes.fetch_add(size, Ordering::Relaxed) + size;
        while bytes > limits::IMAGE_SCALES_BYTES_MAX as u64 {
            let Some((_, evicted)) = cache.pop_lru() else {
                break;
            };
            let n = evicted.data.len() as u64;
            bytes = self.bytes.fetch_sub(n, Ordering::Relaxed) - n;
        }
    }

    /// Runs `work` once fewer than [`limits::IMAGE_SCALINGS_AT_ONCE`] decodes run, or
    /// answers `Busy` after [`limits::IMAGE_SCALING_WAIT`].
    fn gated<T>(&self, work: impl FnOnce() -> T) -> Result<T, AppError> {
        self.scalings.run(
            limits::IMAGE_SCALING_WAIT,
            "Too many images are being scaled right now; try again in a moment.",
            work,
        )
    }
}

/// The decoding limits: the pixel bound as a side bound too (no side longer than the
/// whole budget) and the allocation bound.
fn decode_limits() -> image::Limits {
    let mut l = image::Limits::default();
    let side = u32::try_from(limits::IMAGE_PIXELS_MAX).unwrap_or(u32::MAX);
    l.max_image_width = Some(side);
    l.max_image_height = Some(side);
    l.max_alloc = Some(limits::IMAGE_DECODE_BYTES_MAX);
    l
}

/// Decodes `reader` with the orientation applied, refusing before decoding an image of
/// more than [`limits::IMAGE_PIXELS_MAX`] pixels.
fn decode<R: BufRead + Seek>(reader: R) -> Result<(DynamicImage, ImageFormat), ScaleError> {
    let mut reader = ImageReader::new(reader).with_guessed_format()?;
    reader.limits(decode_limits());
    let format = reader.format().ok_or(ScaleError::UnknownFormat)?;
    let mut decoder = reader.into_decoder()?;
    let (width, height) = decoder.dimensions();
    if u64::from(width) * u64::from(height) > limits::IMAGE_PIXELS_MAX {
        return Err(ScaleError::TooLarge {
            width,
            height,
            max: limits::IMAGE_PIXELS_MAX,
        });
    }
    let orientation = decoder.orientation()?;
    let mut image = DynamicImage::from_decoder(decoder)?;
    image.apply_orientation(orientation);
    Ok((image, format))
}

/// `size` fitted into a `side`×`side` square (rounded as `image`'s resize rounds),
/// never enlarged.
fn fit((w, h): (u32, u32), side: u32) -> (u32, u32) {
    if w <= side && h <= side {
        return (w, h);
    }
    let ratio = (f64::from(side) / f64::from(w)).min(f64::from(side) / f64::from(h));
    let round = |v: u32| ((f64::from(v) * ratio).round() as u32).max(1);
    (round(w), round(h))
}

/// The sizes of the scales of an original of (oriented) size `size`, in the order of
/// [`SCALES`], made as [`scale_all`] makes them (each from the one above).
pub fn scale_sizes(size: (u32, u32)) -> [(u32, u32); 3] {
    let large = fit(size, SCALES[2].1);
    let preview = fit(large, SCALES[1].1);
    [fit(preview, SCALES[0].1), preview, large]
}

/// The size of an image as shown (EXIF orientation applied), from its header alone.
fn oriented_size<R: BufRead + Seek>(reader: R) -> Result<(u32, u32), ScaleError> {
    use image::metadata::Orientation::{Rotate90, Rotate90FlipH, Rotate270, Rotate270FlipH};
    let mut reader = ImageReader::new(reader).with_guessed_format()?;
    reader.limits(decode_limits());
    let mut decoder = reader.into_decoder()?;
    let (w, h) = decoder.dimensions();
    Ok(match decoder.orientation()? {
        Rotate90 | Rotate270 | Rotate90FlipH | Rotate270FlipH => (h, w),
        _ => (w, h),
    })
}

/// The oriented size of the image `r` at `serial`, read once per revision.
fn size_of(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    r: zodb::PRef<Image>,
    image: &Image,
) -> Result<Option<(u32, u32)>, AppError> {
    let serial = tx.serial(r)?;
    let key = (r.oid().0, serial.0);
    if let Some(size) = ctx.app.scales.sizes.lock().get(&key) {
        return Ok(*size);
    }
    let size = match image.bytes() {
        Bytes::Inline(data) => oriented_size(Cursor::new(data)),
        Bytes::Blob(blob) => {
            let path = tx.blob_file(blob)?;
            std::fs::File::open(&path)
                .map_err(ScaleError::from)
                .and_then(|f| oriented_size(std::io::BufReader::new(f)))
        }
    }
    .ok();
    ctx.app.scales.sizes.lock().put(key, size);
    Ok(size)
}

/// Encodes `image`: JPEG for a JPEG original, else PNG.
fn encode(image: &DynamicImage, format: ImageFormat) -> Result<Scaled, ScaleError> {
    let mut data = Vec::new();
    let content_type = if format == ImageFormat::Jpeg {
        let encoder = image::codecs::jpeg::JpegEncoder::new_with_quality(&mut data, JPEG_QUALITY);
        image.to_rgb8().write_with_encoder(encoder)?;
        "image/jpeg"
    } else {
        image.write_to(&mut Cursor::new(&mut data), ImageFormat::Png)?;
        "image/png"
    };
    Ok(Scaled {
        content_type,
        data,
        width: image.width(),
        height: image.height(),
    })
}

/// Every scale of encoded image bytes (in the order of [`SCALES`]), from one decode:
/// each at most its side on the longest side (never enlarged), orientation applied,
/// metadata dropped.  The largest is made from the original, each smaller one from the
/// one above it (a fraction of the work, the same result to the eye).
pub fn scale_all<R: BufRead + Seek>(reader: R) -> Result<Vec<Scaled>, ScaleError> {
    let (mut image, format) = decode(reader)?;
    let mut out = Vec::with_capacity(SCALES.len());
    for (_, side) in SCALES.iter().rev() {
        if image.width() > *side || image.height() > *side {
            image = image.resize(*side, *side, image::imageops::FilterType::Triangle);
        }
        out.push(encode(&image, format)?);
    }
    out.reverse();
    Ok(out)
}

/// The scale `side` of `image` (the object `oid` at `serial`), from the cache or made
/// with the others (one decode makes them all).
fn scaled(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    image: &Image,
    key: (u64, u64, u32),
) -> Result<Result<Arc<Scaled>, ScaleError>, AppError> {
    let scales = &ctx.app.scales;
    if let Some(s) = scales.get(key) {
        return Ok(Ok(s));
    }
    let made = match image.bytes() {
        Bytes::Inline(data) => scales.gated(|| scale_all(Cursor::new(data)))?,
        Bytes::Blob(blob) => {
            let path = tx.blob_file(blob)?;
            scales.gated(|| {
                let file = std::fs::File::open(&path)?;
                scale_all(std::io::BufReader::new(file))
            })?
        }
    };
    let made = match made {
        Ok(made) => made,
        Err(e) => return Ok(Err(e)),
    };
    let mut wanted = None;
    for ((_, side), scaled) in SCALES.iter().zip(made) {
        let scaled = Arc::new(scaled);
        scales.made.fetch_add(1, Ordering::Relaxed);
        scales.put((key.0, key.1, *side), scaled.clone());
        if *side == key.2 {
            wanted = Some(scaled);
        }
    }
    Ok(wanted.ok_or(ScaleError::UnknownFormat))
}

/// `GET @@images/<scale>` of an Image.
pub fn scale_view(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let Content::Image(r, image) = ctx.target() else {
        return Err(AppError::NotFound);
    };
    let name = ctx.view.strip_prefix("images/").unwrap_or("");
    let side = scale_side(name).ok_or(AppError::NotFound)?;
    let serial = tx.serial(*r)?;
    let etag = format!("\"{:016x}-{:016x}-{name}\"", r.oid().0, serial.0);
    let fresh_url = ctx.query("v") == Some(format!("{:016x}", serial.0).as_str());
    let cache_control = if !fresh_url {
        "no-cache".to_owned()
    } else {
        let levels = publication::levels(ctx.path.iter().map(|s| s.content.meta()));
        let public = security::visible(&Principal::Anonymous, &levels);
        let scope = if public { "public" } else { "private" };
        format!("{scope}, max-age=31536000, immutable")
    };
    let headers = vec![(ETAG, etag.clone()), (CACHE_CONTROL, cache_control)];
    let matches = ctx
        .headers
        .get(IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == etag || t.trim() == "*"));
    if matches {
        return Ok(Reply::WithHeaders(
            Box::new(Reply::Status(StatusCode::NOT_MODIFIED, String::new())),
            headers,
        ));
    }
    match scaled(ctx, tx, image, (r.oid().0, serial.0, side))? {
        Ok(s) => Ok(Reply::WithHeaders(
            Box::new(Reply::Bytes {
                content_type: s.content_type.to_owned(),
                data: s.data.clone(),
                filename: None,
            }),
            headers,
        )),
        Err(e) => {
            tracing::info!(oid = %r.oid(), error = %e, "image not scaled");
            Ok(Reply::Status(
                StatusCode::UNPROCESSABLE_ENTITY,
                tr!(
                    ctx.lang,
                    "image-no-scale",
                    name = name,
                    error = e.to_string()
                ),
            ))
        }
    }
}

/// The URL of scale `name` of the image at `url`, carrying the serial (cache key).
fn scale_url(url: &str, name: &str, serial: zodb::Tid) -> String {
    let base = if url == "/" { "" } else { url };
    format!("{base}/@@images/{name}?v={:016x}", serial.0)
}

/// The image of the image view: the large scale, with every scale in `srcset` (each
/// with its real width), so a phone loads the preview and a wide screen the large one;
/// `width` and `height` so the page does not jump when it arrives; a link to the
/// original.
pub fn picture(ctx: &Ctx<'_>, tx: &Transaction<'_>, alt: &str) -> Result<Markup, AppError> {
    let Content::Image(r, image) = ctx.target() else {
        return Ok(html! {});
    };
    let serial = tx.serial(*r)?;
    let url = ctx.url();
    let sizes = size_of(ctx, tx, *r, image)?.map(scale_sizes);
    let srcset = SCALES
        .iter()
        .enumerate()
        .map(|(i, (n, side))| {
            let width = sizes.map_or(*side, |s| s[i].0);
            format!("{} {width}w", scale_url(&url, n, serial))
        })
        .collect::<Vec<_>>()
        .join(", ");
    let large = sizes.map(|s| s[2]);
    Ok(html! {
        p.image {
            a href=(url) {
                img src=(scale_url(&url, "large", serial)) srcset=(srcset)
                    sizes="(max-width: 800px) 100vw, 768px" alt=(alt)
                    width=[large.map(|s| s.0)] height=[large.map(|s| s.1)];
            }
        }
        p { a href=(url) { (tr!(ctx.lang, "image-original")) } }
    })
}

/// A thumbnail for an image in a folder listing (nothing for other items).
pub fn listing_thumb(
    ctx: &Ctx<'_>,
    tx: &Transaction<'_>,
    name: &str,
    item: &Content,
) -> Result<Markup, AppError> {
    let Content::Image(r, image) = item else {
        return Ok(html! {});
    };
    let serial = tx.serial(*r)?;
    let url = child_url(ctx, name);
    let thumb = size_of(ctx, tx, *r, image)?.map(|s| scale_sizes(s)[0]);
    Ok(html! {
        img.thumb src=(scale_url(&url, "thumb", serial)) alt="" loading="lazy"
            width=[thumb.map(|s| s.0)] height=[thumb.map(|s| s.1)];
        " "
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sizes_pages_announce_are_the_sizes_of_the_scales_made() {
        for (w, h) in [(1001, 333), (333, 1001), (769, 768), (100, 50), (3000, 7)] {
            let mut png = Vec::new();
            DynamicImage::new_rgb8(w, h)
                .write_to(&mut Cursor::new(&mut png), ImageFormat::Png)
                .unwrap();
            let made = scale_all(Cursor::new(&png)).unwrap();
            let made: Vec<(u32, u32)> = made.iter().map(|s| (s.width, s.height)).collect();
            assert_eq!(made, scale_sizes((w, h)), "{w}×{h}");
        }
    }
}
