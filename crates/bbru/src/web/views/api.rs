//! The JSON API, in the conventions of plone.restapi: `GET` with `Accept:
//! application/json` serialises an object (and a folder's items), `POST` to a folder with
//! `@type`, `id` and fields creates, `PATCH` edits, `DELETE` deletes.  The permissions are
//! the UI's.
//!
//! - Every object serialises as `{"@id", "@type", "id", "title", "description", "creator",
//!   "created", "modified"}` (times in ISO 8601, UTC); a Page adds `body` (Markdown) and
//!   `body_html` (rendered, sanitised); a File or Image adds `filename`, `content_type`,
//!   `size` and `download` (the URL that serves the bytes: the object's own URL asked
//!   without `Accept: application/json`); a Folder adds `items` (those the principal may
//!   view, in display order) and `items_total`.  `@id` is the full URL: the scheme from
//!   `X-Forwarded-Proto` (else `http`), the host from the `Host` header.  The site root's
//!   `id` is `""`.
//! - `POST` to a folder: `{"@type", "id" (optional: made from the title or file name),
//!   "title", "description", "body", "review_state" (optional: "private" or, by
//!   default, "published")}`; a File or Image takes `filename`, `content_type`
//!   and `data` (base64) instead of `body`.  201 with `Location` and the new object.
//! - Versions: `GET` answers an `ETag`, the serial of the object's own record (its
//!   fields: title, description, body or file; a folder's items are records of their own,
//!   so adding an item does not change the folder's tag).  `PATCH` and `DELETE` honour
//!   `If-Match` (a list of tags, or `*`): another version than the current one answers 412
//!   and changes nothing; without `If-Match` the change applies as before.
//! - `PATCH`: any of those fields; 204.  `@type` and `id` may be sent back unchanged (a
//!   client may PATCH what it got) but not changed; fields another type has (`body` on a
//!   File) are refused; read-only ones (`@id`, `created`, `items`…) are ignored.
//! - `DELETE`: removes the object from its folder; 204.  It needs Delete on that folder
//!   (rights granted on the item alone are not enough, as in the contents view).  The
//!   site root cannot be deleted.
//!
//! Creating and editing go through [`crate::model::edit`], the rules the forms use (names,
//! required title, image types), plus the site's upload size limit for `data` (the JSON
//! body itself is at most `limits::JSON_BODY_BYTES_MAX`: larger files go through the
//! upload form, `@@add` or `@@edit`, which streams them, with an API token).  Each change
//! is a transaction noted like the UI's ("add Page /docs/x", "edit /docs/x", "delete
//! /docs/x").

use axum::http::{StatusCode, header};
use base64::Engine;
use serde_json::{Map, Value, json};
use zodb::Transaction;

use crate::model::edit::{self, Data, Fields, Upload};
use crate::model::{Content, Kind};
use crate::security::Permission;
use crate::web::render::child_url;
use crate::web::version;
use crate::web::views::content::{RenderedPages, visible_items};
use crate::web::{AppError, Ctx, Reply, now};

/// Fields only a Page has.
const PAGE_FIELDS: [&str; 1] = ["body"];
/// Fields only Files and Images have (in requests).
const FILE_FIELDS: [&str; 3] = ["filename", "content_type", "data"];

/// `scheme://host` of the request, for `@id`s.
pub(crate) fn base_url(ctx: &Ctx<'_>) -> String {
    let scheme = ctx
        .headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(',').next())
        .map(|v| v.trim().to_ascii_lowercase());
    let scheme = if scheme.as_deref() == Some("https") {
        "https"
    } else {
        "http"
    };
    let host = ctx
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']'))
        })
        .unwrap_or("localhost");
    format!("{scheme}://{host}")
}

/// Seconds since the epoch as ISO 8601 in UTC (`2026-01-02T03:04:05Z`).
pub(crate) fn iso(seconds: f64) -> String {
    let Ok(t) = time::OffsetDateTime::from_unix_timestamp(seconds as i64) else {
        return String::new();
    };
    let format =
        time::macros::format_description!("[year]-[month]-[day]T[hour]:[minute]:[second]Z");
    t.format(&format).unwrap_or_default()
}

/// The short form of an object, as listed in a folder's `items`.
fn summary(id: String, name: &str, content: &Content) -> Value {
    let meta = content.meta();
    json!({
        "@id": id,
        "@type": content.kind().name(),
        "id": name,
        "title": meta.title,
        "description": meta.description,
    })
}

/// The full form of `content`, whose URL path is `url` and name `name`; `items` are a
/// folder's (visible) items.
fn serialize(
    pages: &RenderedPages,
    base: &str,
    url: &str,
    name: &str,
    content: &Content,
    items: Option<Vec<(String, String, Content)>>,
) -> Value {
    let id = format!("{base}{url}");
    let meta = content.meta();
    let mut value = summary(id.clone(), name, content);
    let Value::Object(object) = &mut value else {
        return value;
    };
    object.insert("creator".into(), json!(meta.creator));
    object.insert("created".into(), json!(iso(meta.created)));
    object.insert("modified".into(), json!(iso(meta.modified)));
    object.insert("review_state".into(), json!(meta.state.name()));
    let file = |object: &mut Map<String, Value>, filename: &str, content_type: &str, size| {
        object.insert("filename".into(), json!(filename));
        object.insert("content_type".into(), json!(content_type));
        object.insert("size".into(), json!(size));
        object.insert("download".into(), json!(id));
    };
    match content {
        Content::Page(_, p) => {
            object.insert("body".into(), json!(p.body));
            object.insert(
                "body_html".into(),
                json!(&*pages.html(&p.body, crate::i18n::Lang::En)),
            );
        }
        Content::File(_, f) => file(object, &f.filename, &f.content_type, f.byte_len() as usize),
        Content::Image(_, i) => file(object, &i.filename, &i.content_type, i.byte_len() as usize),
        Content::Folder(..) => {
            let items: Vec<Value> = items
                .unwrap_or_default()
                .iter()
                .map(|(url, name, item)| summary(format!("{base}{url}"), name, item))
                .collect();
            object.insert("items_total".into(), json!(items.len()));
            object.insert("items".into(), Value::Array(items));
        }
    }
    value
}

/// `GET` with `Accept: application/json`: the object addressed.
pub fn get(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let items = match target {
        Content::Folder(..) => Some(
            visible_items(ctx, tx)?
                .into_iter()
                .map(|(name, item)| (child_url(ctx, &name), name, item))
                .collect(),
        ),
        _ => None,
    };
    let name = ctx.path.last().map(|s| s.name.as_str()).unwrap_or("");
    let serial = target.reference().serial(tx)?;
    let json = Reply::Json(
        StatusCode::OK,
        serialize(
            &ctx.app.pages,
            &base_url(ctx),
            &ctx.url(),
            name,
            target,
            items,
        ),
    );
    Ok(Reply::WithHeaders(
        Box::new(json),
        vec![(header::ETAG, version::etag(serial))],
    ))
}

/// The JSON object of the request.
fn body<'a>(ctx: &'a Ctx<'_>) -> Result<&'a Map<String, Value>, AppError> {
    match &ctx.input.json {
        Some(Value::Object(map)) => Ok(map),
        Some(_) => Err(AppError::BadRequest(
            "The JSON body must be an object of fields, such as {\"title\": \"New title\"}.".into(),
        )),
        None => Err(AppError::BadRequest(
            "Send the fields as a JSON object, with Content-Type: application/json.".into(),
        )),
    }
}

/// The string field `key` (`None` when absent or null).
fn string(map: &Map<String, Value>, key: &str) -> Result<Option<String>, AppError> {
    match map.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(AppError::BadRequest(format!(
            "The field {key:?} must be a string."
        ))),
    }
}

/// Refuses fields that belong to another content type.
fn check_fields(map: &Map<String, Value>, kind: Kind) -> Result<(), AppError> {
    for key in map.keys() {
        let page_only = PAGE_FIELDS.contains(&key.as_str()) && kind != Kind::Page;
        let file_only =
            FILE_FIELDS.contains(&key.as_str()) && !matches!(kind, Kind::File | Kind::Image);
        if page_only || file_only {
            return Err(AppError::BadRequest(format!(
                "A {} has no field {key:?}.",
                kind.name()
            )));
        }
    }
    Ok(())
}

/// The bytes of the base64 field `data`, within the site's upload limit (the body's own
/// bound, [`crate::limits::JSON_BODY_BYTES_MAX`], keeps them far below it by default:
/// large files go through the upload form, streamed).
fn data(ctx: &Ctx<'_>, map: &Map<String, Value>) -> Result<Option<Data>, AppError> {
    let Some(text) = string(map, "data")? else {
        return Ok(None);
    };
    // Line-wrapped base64 (as some encoders write it) is accepted.
    let compact: String = text.chars().filter(|c| !c.is_ascii_whitespace()).collect();
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(compact.as_bytes())
        .map_err(|e| {
            AppError::BadRequest(format!(
                "The field \"data\" is not valid base64 ({e}); send the file's bytes base64-encoded."
            ))
        })?;
    let max = ctx.app.config.site.upload_size_max;
    if bytes.len() > max {
        return Err(AppError::TooLarge(format!(
            "the file has {} bytes; this site accepts at most {max}",
            bytes.len()
        )));
    }
    Ok(Some(Data::Bytes(bytes.into())))
}

/// The fields of a create (`current` = `None`, `name` = the requested id) or an edit
/// (`current` = the object) of a `kind`.
fn fields(
    ctx: &Ctx<'_>,
    map: &Map<String, Value>,
    kind: Kind,
    current: Option<&Content>,
    name: &str,
) -> Result<Fields, AppError> {
    let mut fields = Fields {
        title: string(map, "title")?,
        description: string(map, "description")?,
        body: None,
        upload: None,
    };
    match kind {
        Kind::Page => fields.body = string(map, "body")?,
        Kind::Folder => {}
        Kind::File | Kind::Image => {
            let filename = string(map, "filename")?;
            let content_type = string(map, "content_type")?;
            let data = data(ctx, map)?;
            let current = match current {
                Some(Content::File(_, f)) => Some((&f.filename, &f.content_type)),
                Some(Content::Image(_, i)) => Some((&i.filename, &i.content_type)),
                _ => None,
            };
            fields.upload = match current {
                None => {
                    let data = data.ok_or_else(|| {
                        AppError::BadRequest(format!(
                            "A {} needs \"data\": the file's bytes, base64-encoded.",
                            kind.name()
                        ))
                    })?;
                    let filename = filename.unwrap_or_else(|| {
                        if name.trim().is_empty() {
                            "file".to_owned()
                        } else {
                            name.trim().to_owned()
                        }
                    });
                    Some(Upload {
                        filename,
                        content_type: content_type
                            .unwrap_or_else(|| "application/octet-stream".into()),
                        data: Some(data),
                    })
                }
                // Without `data`, the stored bytes stay (wherever they are kept).
                Some((old_name, old_type))
                    if filename.is_some() || content_type.is_some() || data.is_some() =>
                {
                    Some(Upload {
                        filename: filename.unwrap_or_else(|| old_name.clone()),
                        content_type: content_type.unwrap_or_else(|| old_type.clone()),
                        data,
                    })
                }
                Some(_) => None,
            };
        }
    }
    Ok(fields)
}

/// `POST` to a folder with a JSON body: creates an item; 201 with `Location`.
pub fn create(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let Content::Folder(folder, _) = ctx.target() else {
        return Err(AppError::NotFound);
    };
    let map = body(ctx)?;
    let type_name = string(map, "@type")?.ok_or_else(|| {
        AppError::BadRequest("The field \"@type\" is required: Folder, Page, File or Image.".into())
    })?;
    let kind = Kind::parse(&type_name).ok_or_else(|| {
        AppError::BadRequest(format!(
            "Unknown \"@type\" {type_name:?}: use Folder, Page, File or Image."
        ))
    })?;
    check_fields(map, kind)?;
    let id = string(map, "id")?.unwrap_or_default();
    let fields = fields(ctx, map, kind, None, &id)?;
    let (name, reference) = edit::create(
        tx,
        *folder,
        &id,
        kind,
        fields,
        &ctx.principal.audit_name(),
        now(),
    )?;
    let state = string(map, "review_state")?;
    super::publication::apply_named_state(ctx, tx, reference, state.as_deref())?;
    let url = child_url(ctx, &name);
    ctx.note(tx, &format!("add {} {url}", kind.name()));
    let content = reference.load(tx)?;
    let base = base_url(ctx);
    let items = (kind == Kind::Folder).then(Vec::new);
    let value = serialize(&ctx.app.pages, &base, &url, &name, &content, items);
    Ok(Reply::WithHeaders(
        Box::new(Reply::Json(StatusCode::CREATED, value)),
        vec![(header::LOCATION, format!("{base}{url}"))],
    ))
}

/// `PATCH` with a JSON body: changes the fields given; 204.
pub fn update(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let target = ctx.target();
    let kind = target.kind();
    let map = body(ctx)?;
    if let Some(t) = string(map, "@type")?
        && t != kind.name()
    {
        return Err(AppError::BadRequest(format!(
            "This object is a {}; its \"@type\" cannot be changed.",
            kind.name()
        )));
    }
    let name = ctx.path.last().map(|s| s.name.as_str()).unwrap_or("");
    if let Some(id) = string(map, "id")?
        && id != name
    {
        return Err(AppError::BadRequest(
            "The \"id\" cannot be changed by PATCH; rename the item in its folder's contents view."
                .into(),
        ));
    }
    check_fields(map, kind)?;
    version::check_if_match(ctx.headers, target.reference().serial(tx)?)?;
    let fields = fields(ctx, map, kind, Some(target), name)?;
    edit::apply(tx, target.reference(), fields, now())?;
    ctx.note(tx, &format!("edit {}", ctx.location()));
    Ok(Reply::Status(StatusCode::NO_CONTENT, String::new()))
}

/// `DELETE`: removes the object from its folder (Delete on that folder, as a delete from
/// the folder's contents view); 204.  The object itself stays in the database's history
/// (an undo of the deletion brings it back) until a pack.
pub fn delete(ctx: &Ctx<'_>, tx: &Transaction<'_>) -> Result<Reply, AppError> {
    let [.., parent, step] = ctx.path.as_slice() else {
        return Err(AppError::BadRequest(
            "The site root cannot be deleted.".into(),
        ));
    };
    if !ctx.allowed_on_container(Permission::Delete) {
        return Err(ctx.denied());
    }
    let Content::Folder(parent_ref, _) = &parent.content else {
        return Err(AppError::Internal);
    };
    version::check_if_match(ctx.headers, step.content.reference().serial(tx)?)?;
    crate::model::tree::remove_item(tx, *parent_ref, &step.name)?;
    ctx.note(tx, &format!("delete {}", ctx.location()));
    Ok(Reply::Status(StatusCode::NO_CONTENT, String::new()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_iso_8601_utc() {
        assert_eq!(iso(1_767_323_408.0), "2026-01-02T03:10:08Z");
        assert_eq!(iso(0.0), "1970-01-01T00:00:00Z");
    }

    #[test]
    fn fields_of_other_types_are_refused() {
        let map: Map<String, Value> =
            serde_json::from_str(r#"{"title": "x", "body": "y", "@id": "ignored"}"#).unwrap();
        assert!(check_fields(&map, Kind::Page).is_ok());
        assert!(check_fields(&map, Kind::File).is_err());
        let map: Map<String, Value> = serde_json::from_str(r#"{"data": ""}"#).unwrap();
        assert!(check_fields(&map, Kind::Image).is_ok());
        assert!(check_fields(&map, Kind::Folder).is_err());
    }
}
