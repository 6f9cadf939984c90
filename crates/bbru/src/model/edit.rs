//! Creating and changing content: the rules the UI forms and the JSON API share (names,
//! required fields, upload types and sizes), and where an upload's bytes are kept: a
//! blob of its own when the storage has blobs, else the record (at most
//! [`limits::INLINE_FILE_BYTES_MAX`]).
//!
//! A File or Image whose bytes are still in its record (uploaded before blobs, or on a
//! storage without them) moves them into a blob the first time it is changed on a
//! storage with blobs: the change rewrites the record anyway, and then it and every later
//! edit is small.  `bbru migrate` moves the others ([`move_inline_to_blob`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use zodb::{Blob, PRef, Transaction};

use super::content::{Bytes as Stored, ContentRef, File, Folder, Image, Kind, Meta, Page};
use crate::limits;

/// How the files an upload is written into are named (in the storage's blob `tmp/`), so
/// a start can remove what a killed instance left there.
pub const UPLOAD_FILE_PREFIX: &str = "bbru-upload-";

/// Field values given by a form or a JSON body; `None` leaves a field as it is.
#[derive(Debug, Default, Clone)]
pub struct Fields {
    pub title: Option<String>,
    pub description: Option<String>,
    pub body: Option<String>,
    pub upload: Option<Upload>,
}

/// A file given for a File or Image: its name and type, and its bytes (`None`: keep the
/// stored ones, for a change of name or type alone).
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub content_type: String,
    pub data: Option<Data>,
}

/// An upload's bytes: in memory (form fields, the JSON API, a storage without blobs), or
/// in a file the request streamed them into, which the request removes when it is done
/// (a blob takes a link to it, so a retried transaction can take it again).
#[derive(Debug, Clone)]
pub enum Data {
    Bytes(bytes::Bytes),
    File { path: PathBuf, size: u64 },
}

impl Data {
    /// The number of bytes.
    pub fn len(&self) -> u64 {
        match self {
            Data::Bytes(b) => b.len() as u64,
            Data::File { size, .. } => *size,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The first bytes (enough for [`image_type`]), without reading a file whole.
    pub fn head(&self) -> Result<Vec<u8>, EditError> {
        const HEAD_BYTES: u64 = 16;
        match self {
            Data::Bytes(b) => Ok(b.iter().take(HEAD_BYTES as usize).copied().collect()),
            Data::File { path, .. } => {
                let mut head = Vec::new();
                std::fs::File::open(path)
                    .and_then(|f| f.take(HEAD_BYTES).read_to_end(&mut head))
                    .map_err(|e| io_error(format!("reading the upload {}", path.display()), e))?;
                Ok(head)
            }
        }
    }
}

fn io_error(what: String, e: std::io::Error) -> EditError {
    EditError::Db(zodb::Error::Storage(zodb_storage::StorageError::io(
        what, e,
    )))
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
    /// A file too large to keep in its record, on a storage without blobs.
    #[error(
        "the file has {size} bytes; without a blob directory on the database server this site keeps at most {max} bytes per file"
    )]
    TooLargeInline { size: u64, max: usize },
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
            let bytes = upload.data.ok_or(EditError::UploadRequired("File"))?;
            let (data, blob, size) = keep_bytes(tx, &bytes)?;
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
            let bytes = upload.data.ok_or(EditError::UploadRequired("Image"))?;
            let content_type = image_type(&bytes.head()?).ok_or(EditError::NotAnImage)?;
            let (data, blob, size) = keep_bytes(tx, &bytes)?;
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
    crate::search::added(tx, parent, &name, reference)?;
    Ok((name, reference))
}

/// Applies `fields` to an existing item.  A File or Image whose bytes are in its record
/// moves them into a blob on the way, when the storage has blobs (see the module doc).
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
    let new_bytes = fields.upload.as_ref().and_then(|u| u.data.as_ref());
    let image_type_of_upload = match (&target, new_bytes) {
        (ContentRef::Image(_), Some(data)) => {
            Some(image_type(&data.head()?).ok_or(EditError::NotAnImage)?)
        }
        _ => None,
    };
    let meta = |m: &mut Meta| {
        if let Some(t) = &fields.title {
            m.title = t.clone();
        }
        if let Some(d) = &fields.description {
            m.description = d.clone();
        }
        m.modified = now;
    };
    // A new upload goes to a blob of its own before the record changes; without one,
    // bytes still in the record move to a blob.
    let kept = match (new_bytes, &target) {
        (Some(data), _) => Some(keep_bytes(tx, data)?),
        (None, ContentRef::File(r)) => inline_to_blob(tx, &tx.get(*r)?.bytes())?,
        (None, ContentRef::Image(r)) => inline_to_blob(tx, &tx.get(*r)?.bytes())?,
        (None, _) => None,
    };
    let name = |filename: &mut String| {
        if let Some(u) = &fields.upload {
            filename.clone_from(&u.filename);
        }
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
            name(&mut o.filename);
            if let Some(u) = &fields.upload {
                o.content_type = u.content_type.clone();
            }
            if let Some((data, blob, size)) = &kept {
                (o.data, o.blob, o.size) = (data.clone(), *blob, *size);
            }
        })?,
        ContentRef::Image(r) => tx.update(r, |o| {
            meta(&mut o.meta);
            name(&mut o.filename);
            // An image's type is what its bytes are, never what the client says.
            if let Some(t) = image_type_of_upload {
                o.content_type = t.into();
            }
            if let Some((data, blob, size)) = &kept {
                (o.data, o.blob, o.size) = (data.clone(), *blob, *size);
            }
        })?,
    }
    crate::search::changed(tx, target)?;
    Ok(())
}

/// Moves the bytes of the File or Image `target` from its record into a blob of its own
/// (`bbru migrate`), leaving everything else as it is; `Ok(false)` when they are in a
/// blob already or `target` is no File or Image.  Fails with `Unsupported` when the
/// storage has no blobs.
pub fn move_inline_to_blob(tx: &Transaction<'_>, target: ContentRef) -> Result<bool, EditError> {
    if tx.blob_temp_dir().is_none() {
        return Err(EditError::Db(zodb::Error::Storage(
            zodb_storage::StorageError::Unsupported(
                "the storage has no blob directory (with ZEO: start bbru-zeo with --blob-dir)"
                    .into(),
            ),
        )));
    }
    let kept = match target {
        ContentRef::File(r) => inline_to_blob(tx, &tx.get(r)?.bytes())?,
        ContentRef::Image(r) => inline_to_blob(tx, &tx.get(r)?.bytes())?,
        ContentRef::Folder(_) | ContentRef::Page(_) => None,
    };
    let Some((data, blob, size)) = kept else {
        return Ok(false);
    };
    match target {
        ContentRef::File(r) => tx.update(r, |o| (o.data, o.blob, o.size) = (data, blob, size))?,
        ContentRef::Image(r) => tx.update(r, |o| (o.data, o.blob, o.size) = (data, blob, size))?,
        ContentRef::Folder(_) | ContentRef::Page(_) => {}
    }
    Ok(true)
}

/// Bytes kept in a record, as a new blob: `None` when they are in a blob already or the
/// storage has no blobs (they then stay where they are).
fn inline_to_blob(tx: &Transaction<'_>, bytes: &Stored<'_>) -> Result<Option<Kept>, EditError> {
    match bytes {
        Stored::Inline(data) if tx.blob_temp_dir().is_some() => Ok(Some(keep_bytes(
            tx,
            &Data::Bytes(bytes::Bytes::copy_from_slice(data)),
        )?)),
        _ => Ok(None),
    }
}

/// An upload's bytes as a File or Image keeps them: `(data, blob, size)`.
type Kept = (Vec<u8>, Option<PRef<Blob>>, u64);

/// Where an upload's bytes are kept: a new blob when the storage has blobs (the record
/// then holds no bytes), else the record, if they are at most
/// [`limits::INLINE_FILE_BYTES_MAX`].
fn keep_bytes(tx: &Transaction<'_>, data: &Data) -> Result<Kept, EditError> {
    let size = data.len();
    let Some(dir) = tx.blob_temp_dir() else {
        if size > limits::INLINE_FILE_BYTES_MAX as u64 {
            return Err(EditError::TooLargeInline {
                size,
                max: limits::INLINE_FILE_BYTES_MAX,
            });
        }
        let bytes = match data {
            Data::Bytes(b) => b.to_vec(),
            Data::File { path, .. } => std::fs::read(path)
                .map_err(|e| io_error(format!("reading the upload {}", path.display()), e))?,
        };
        return Ok((bytes, None, size));
    };
    let written = match data {
        Data::Bytes(b) => write_temp(&dir, b),
        // The transaction takes (moves) the file it is given; the request keeps its own,
        // so that a run again after a conflict can give it again.
        Data::File { path, .. } => link_temp(&dir, path),
    }
    .map_err(|e| io_error(format!("writing an upload in {}", dir.display()), e))?;
    let blob = tx.add_blob(&written).inspect_err(|_| {
        let _ = std::fs::remove_file(&written);
    })?;
    Ok((Vec::new(), Some(blob), size))
}

/// A new file in `dir` holding `bytes`.
fn write_temp(dir: &Path, bytes: &[u8]) -> std::io::Result<PathBuf> {
    let mut f = tempfile::Builder::new()
        .prefix(UPLOAD_FILE_PREFIX)
        .tempfile_in(dir)?;
    std::io::Write::write_all(&mut f, bytes)?;
    f.into_temp_path().keep().map_err(|e| e.error)
}

/// A new name in `dir` for the file `path`: a hard link (the upload was streamed into
/// that directory), or a copy where links are refused.
fn link_temp(dir: &Path, path: &Path) -> std::io::Result<PathBuf> {
    let target = tempfile::Builder::new()
        .prefix(UPLOAD_FILE_PREFIX)
        .tempfile_in(dir)?
        .into_temp_path()
        .keep()
        .map_err(|e| e.error)?;
    std::fs::remove_file(&target)?;
    if std::fs::hard_link(path, &target).is_err() {
        std::fs::copy(path, &target)?;
    }
    Ok(target)
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
