//! Creating and changing content: the rules the UI forms and the JSON API share (names,
//! required fields, upload types and sizes).

use zodb::{Blob, PRef, Transaction};

use super::content::{ContentRef, File, Folder, Image, Kind, Meta, Page};
use crate::limits;

/// Field values given by a form or a JSON body; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub title: Option<String>,
    pub description: Option<String>,
    pub body: Option<String>,
    pub upload: Option<Upload>,
}

#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Whether `name` may name an item: letters, digits, `-`, `_`, `.`, not starting with
/// `.` or `@`, at most 100 characters.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && !name.starts_with(['.', '@'])
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Why a create or edit was refused.
#[derive(Debug, thiserror::Error)]
pub enum EditError {
    #[error(
        "{0:?} is not a valid name: use letters, digits, '-', '_' and '.', not starting with '.' or '@', at most 100 characters"
    )]
    InvalidName(String),
    #[error("an item named {0:?} already exists here")]
    NameTaken(String),
    #[error("a title is required")]
    TitleRequired,
    #[error("a {0} needs an uploaded file")]
    UploadRequired(&'static str),
    #[error("the uploaded file is not an image this site accepts (PNG, JPEG, GIF or WebP)")]
    NotAnImage,
    #[error("the title is longer than 200 characters")]
    TitleTooLong,
    #[error(
        "{0:?} is not a valid content type: give a MIME type such as \"text/plain\" or \"application/pdf; charset=utf-8\""
    )]
    InvalidContentType(String),
    #[error(
        "{0:?} is not a valid file name: it must be 1 to {max} characters, without control characters (such as line breaks)",
        max = limits::FILENAME_CHARS_MAX
    )]
    InvalidFilename(String),
    #[error(transparent)]
    Body(#[from] super::markup::BodyError),
    #[error(transparent)]
    Db(#[from] zodb::Error),
}

/// The image type of `data`, from its first bytes (never from what the client claims).
pub fn image_type(data: &[u8]) -> Option<&'static str> {
    if data.starts_with(b"\x89PNG\r\n\x1a\n") {
        Some("image/png")
    } else if data.starts_with(&[0xff, 0xd8, 0xff]) {
        Some("image/jpeg")
    } else if data.starts_with(b"GIF87a") || data.starts_with(b"GIF89a") {
        Some("image/gif")
    } else if data.len() > 12 && &data[..4] == b"RIFF" && &data[8..12] == b"WEBP" {
        Some("image/webp")
    } else {
        None
    }
}

/// Whether `content_type` may be stored as an upload's type (it becomes the
/// `Content-Type` header of downloads): a MIME type as the `mime` crate parses it, of
/// printable ASCII only (no line break can end the header early).
pub fn valid_content_type(content_type: &str) -> bool {
    content_type
        .bytes()
        .all(|b| b == b' ' || b.is_ascii_graphic())
        && content_type.parse::<mime::Mime>().is_ok()
}

/// Whether `filename` may be stored as an upload's file name (it goes into the
/// `Content-Disposition` of downloads, encoded): not blank, not too long, no control
/// characters.
pub fn valid_filename(filename: &str) -> bool {
    !filename.trim().is_empty()
        && filename.chars().count() <= limits::FILENAME_CHARS_MAX
        && !filename.chars().any(char::is_control)
}

fn check_upload(upload: &Upload) -> Result<(), EditError> {
    if !valid_content_type(&upload.content_type) {
        return Err(EditError::InvalidContentType(upload.content_type.clone()));
    }
    if !valid_filename(&upload.filename) {
        return Err(EditError::InvalidFilename(upload.filename.clone()));
    }
    Ok(())
}

/// A name derived from a title or file name: transliterated to ASCII (`deunicode`:
/// "Привет" gives "privet", "日本" gives "ri-ben"), lower case, runs of other characters
/// as `-`.  Empty when nothing usable is left (emoji only, say).
pub fn name_from(text: &str) -> String {
    let ascii = deunicode::deunicode_with_tofu(text.trim(), "-");
    let mut name = String::new();
    for c in ascii.chars() {
        if c.is_ascii_alphanumeric() || c == '.' || c == '_' {
            name.push(c.to_ascii_lowercase());
        } else if !name.ends_with('-') {
            name.push('-');
        }
    }
    // Transliteration leaves spaces before dots ("ri ben .txt").
    let name = name.replace("-.", ".");
    let name = name.trim_matches(['-', '.']).to_owned();
    name.chars().take(100).collect()
}

/// The first free `item-<n>` of `folder` (n from 1), for titles that give no name.
fn numbered_name(tx: &Transaction<'_>, folder: &Folder) -> Result<String, EditError> {
    for n in 1..=limits::NUMBERED_NAMES_MAX {
        let name = format!("item-{n}");
        if !folder.items.contains_key(tx, &name)? {
            return Ok(name);
        }
    }
    Err(EditError::NameTaken(format!(
        "item-1 … item-{}",
        limits::NUMBERED_NAMES_MAX
    )))
}

fn check_title(title: &str) -> Result<(), EditError> {
    if title.trim().is_empty() {
        return Err(EditError::TitleRequired);
    }
    if title.chars().count() > 200 {
        return Err(EditError::TitleTooLong);
    }
    Ok(())
}

/// Creates an item of `kind` named `name` (derived from the title or file name when
/// empty) in `parent`.
pub fn create(
    tx: &Transaction<'_>,
    parent: PRef<Folder>,
    name: &str,
    kind: Kind,
    fields: Fields,
    creator: &str,
    now: f64,
) -> Result<(String, ContentRef), EditError> {
    let title = fields
        .title
        .clone()
        .filter(|t| !t.trim().is_empty())
        .or_else(|| fields.upload.as_ref().map(|u| u.filename.clone()))
        .unwrap_or_default();
    check_title(&title)?;
    if let Some(upload) = &fields.upload {
        check_upload(upload)?;
    }
    let folder = tx.get(parent)?;
    if kind == Kind::Page
        && let Some(body) = &fields.body
    {
        super::markup::check_body(body)?;
    }
    let name = if name.trim().is_empty() {
        let from = fields
            .upload
            .as_ref()
            .map(|u| u.filename.as_str())
            .unwrap_or(&title);
        match name_from(from) {
            derived if valid_name(&derived) => derived,
            // Nothing usable in the title: a numbered name.
            _ => numbered_name(tx, &folder)?,
        }
    } else {
        name.trim().to_owned()
    };
    if !valid_name(&name) {
        return Err(EditError::InvalidName(name));
    }
    if folder.items.contains_key(tx, &name)? {
        return Err(EditError::NameTaken(name));
    }
    let meta = Meta {
        title,
        description: fields.description.clone().unwrap_or_default(),
        creator: creator.to_owned(),
        created: now,
        modified: now,
        ..Meta::default()
    };
    let reference = match kind {
        Kind::Folder => ContentRef::Folder(tx.add(Folder::create(tx, meta)?)?),
        Kind::Page => ContentRef::Page(tx.add(Page {
            meta,
            body: fields.body.clone().unwrap_or_default(),
        })?),
        Kind::File => {
            let upload = fields
                .upload
                .clone()
                .ok_or(EditError::UploadRequired("File"))?;
            let (data, blob, size) = keep_bytes(tx, upload.data)?;
            ContentRef::File(tx.add(File {
                meta,
                filename: upload.filename,
                content_type: upload.content_type,
                data,
                blob,
                size,
            })?)
        }
        Kind::Image => {
            let upload = fields
                .upload
                .clone()
                .ok_or(EditError::UploadRequired("Image"))?;
            let content_type = image_type(&upload.data).ok_or(EditError::NotAnImage)?;
            let (data, blob, size) = keep_bytes(tx, upload.data)?;
            ContentRef::Image(tx.add(Image {
                meta,
                filename: upload.filename,
                content_type: content_type.into(),
                data,
                blob,
                size,
            })?)
        }
    };
    folder.items.insert(tx, name.clone(), reference.to_any())?;
    Ok((name, reference))
}

/// Applies `fields` to an existing item.
pub fn apply(
    tx: &Transaction<'_>,
    target: ContentRef,
    fields: Fields,
    now: f64,
) -> Result<(), EditError> {
    if let Some(title) = &fields.title {
        check_title(title)?;
    }
    if let Some(upload) = &fields.upload {
        check_upload(upload)?;
    }
    if let (ContentRef::Page(_), Some(body)) = (&target, &fields.body) {
        super::markup::check_body(body)?;
    }
    if let (ContentRef::Image(_), Some(upload)) = (&target, &fields.upload)
        && image_type(&upload.data).is_none()
    {
        return Err(EditError::NotAnImage);
    }
    let meta = |m: &mut Meta| {
        if let Some(t) = &fields.title {
            m.title = t.clone();
        }
        if let Some(d) = &fields.description {
            m.description = d.clone();
        }
        m.modified = now;
    };
    // A new upload goes to a blob of its own before the record changes.
    let kept = match &fields.upload {
        Some(u) => Some(keep_bytes(tx, u.data.clone())?),
        None => None,
    };
    match target {
        ContentRef::Folder(r) => tx.update(r, |o| meta(&mut o.meta))?,
        ContentRef::Page(r) => tx.update(r, |o| {
            meta(&mut o.meta);
            if let Some(b) = &fields.body {
                o.body = b.clone();
            }
        })?,
        ContentRef::File(r) => tx.update(r, |o| {
            meta(&mut o.meta);
            if let (Some(u), Some((data, blob, size))) = (&fields.upload, &kept) {
                o.filename = u.filename.clone();
                o.content_type = u.content_type.clone();
                (o.data, o.blob, o.size) = (data.clone(), *blob, *size);
            }
        })?,
        ContentRef::Image(r) => tx.update(r, |o| {
            meta(&mut o.meta);
            if let (Some(u), Some((data, blob, size))) = (&fields.upload, &kept) {
                o.filename = u.filename.clone();
                o.content_type = image_type(&u.data).unwrap_or("image/png").into();
                (o.data, o.blob, o.size) = (data.clone(), *blob, *size);
            }
        })?,
    }
    Ok(())
}

/// An upload's bytes as a File or Image keeps them: `(data, blob, size)`.
type Kept = (Vec<u8>, Option<PRef<Blob>>, u64);

/// Where an upload's bytes are kept: a new blob when the storage has blobs (the record
/// then holds no bytes), else the record.
fn keep_bytes(tx: &Transaction<'_>, data: Vec<u8>) -> Result<Kept, EditError> {
    let size = data.len() as u64;
    let Some(dir) = tx.blob_temp_dir() else {
        return Ok((data, None, size));
    };
    let written = tempfile::Builder::new()
        .prefix("upload-")
        .tempfile_in(&dir)
        .and_then(|mut f| {
            std::io::Write::write_all(&mut f, &data)?;
            f.into_temp_path().keep().map_err(|e| e.error)
        })
        .map_err(|e| {
            EditError::Db(zodb::Error::Storage(zodb_storage::StorageError::io(
                format!("writing an upload in {}", dir.display()),
                e,
            )))
        })?;
    let blob = tx.add_blob(&written).inspect_err(|_| {
        let _ = std::fs::remove_file(&written);
    })?;
    Ok((Vec::new(), Some(blob), size))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_image_types() {
        assert_eq!(name_from("Install Guide (v2)!"), "install-guide-v2");
        assert_eq!(name_from("photo.PNG"), "photo.png");
        assert_eq!(name_from("Привет, мир"), "privet-mir");
        assert_eq!(name_from("Щука и ёж"), "shchuka-i-iozh");
        assert_eq!(name_from("résumé 日本.txt"), "resume-ri-ben.txt");
        assert_eq!(name_from("😀🎉"), "grinning-tada");
        assert_eq!(name_from("\u{e000}\u{e001} !"), "");
        assert!(valid_content_type("text/plain; charset=utf-8"));
        assert!(valid_content_type(
            "application/vnd.oasis.opendocument.text"
        ));
        for bad in [
            "text/plain;\r\nSet-Cookie: x",
            "text/plain\0",
            "text",
            "",
            "текст/plain",
        ] {
            assert!(!valid_content_type(bad), "{bad:?}");
        }
        assert!(valid_filename("résumé 日本.txt"));
        for bad in ["", "  ", "a\nb.txt", "a\0", &"x".repeat(256)] {
            assert!(!valid_filename(bad), "{bad:?}");
        }
        assert_eq!(image_type(b"\x89PNG\r\n\x1a\nrest"), Some("image/png"));
        assert_eq!(image_type(b"<svg onload=alert(1)>"), None);
    }
}
