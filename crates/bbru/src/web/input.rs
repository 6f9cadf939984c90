//! The request body as the views see it: form fields, uploads and JSON, read with a
//! size bound before the blocking part runs.

use axum::body::Body;
use axum::http::{HeaderMap, header};

use super::{App, AppError};
use crate::limits;

/// A request as the views see it (the body already parsed).
#[derive(Debug, Default)]
pub struct Input {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Upload>,
    pub json: Option<serde_json::Value>,
}

impl Input {
    /// The first value of form field `name`.
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    }

    /// Every value of form field `name` (checkbox lists).
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.fields
            .iter()
            .filter(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn file(&self, name: &str) -> Option<&Upload> {
        self.files
            .iter()
            .find(|f| f.field == name && !f.data.is_empty())
    }
}

/// An uploaded file.
#[derive(Debug, Clone)]
pub struct Upload {
    pub field: String,
    pub filename: String,
    pub content_type: String,
    pub data: Vec<u8>,
}

/// Whether `e` (from `to_bytes`) is the length limit, not the body's own error.
fn is_length_limit(e: &axum::Error) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(s) = source {
        if s.is::<http_body_util::LengthLimitError>() {
            return true;
        }
        source = s.source();
    }
    false
}

/// Reads the body (bounded), parses forms, uploads and JSON.
pub(super) async fn read_input(
    app: &App,
    headers: &HeaderMap,
    body: Body,
) -> Result<Input, AppError> {
    let limit = app.config.site.upload_size_max + limits::BODY_OVERHEAD_BYTES;
    let too_large = || {
        AppError::TooLarge(format!(
            "the request is larger than the {} bytes this site accepts",
            app.config.site.upload_size_max
        ))
    };
    // Refused from the announced length, before the body is polled: hyper answers
    // `Expect: 100-continue` only when the body is first read, so a client asking
    // whether it may send too much is told no (413) and sends nothing.
    let announced = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    if announced.is_some_and(|n| n > limit as u64) {
        return Err(too_large());
    }
    let bytes = axum::body::to_bytes(body, limit).await.map_err(|e| {
        // Over the limit, or a body that is not well-formed HTTP (a bad chunk size, a
        // connection closed early): the client's mistake, said as such.
        if is_length_limit(&e) {
            too_large()
        } else {
            AppError::BadRequest(format!("the request body could not be read: {e}"))
        }
    })?;
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let mut input = Input::default();
    if bytes.is_empty() {
        return Ok(input);
    }
    if content_type.starts_with("application/x-www-form-urlencoded") {
        input.fields = serde_urlencoded::from_bytes(&bytes)
            .map_err(|e| AppError::BadRequest(format!("bad form data: {e}")))?;
    } else if content_type.starts_with("multipart/form-data") {
        let boundary = multer::parse_boundary(&content_type)
            .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?;
        let stream =
            futures_util::stream::once(async move { Ok::<_, std::convert::Infallible>(bytes) });
        let mut multipart = multer::Multipart::new(stream, boundary);
        while let Some(field) = multipart
            .next_field()
            .await
            .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?
        {
            let name = field.name().unwrap_or("").to_owned();
            let filename = field.file_name().map(str::to_owned);
            let field_type = field.content_type().map(|m| m.to_string());
            let data = field
                .bytes()
                .await
                .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?;
            if filename.is_some() && data.len() > app.config.site.upload_size_max {
                return Err(AppError::TooLarge(format!(
                    "the file {:?} has {} bytes; this site accepts at most {}",
                    filename.unwrap_or_default(),
                    data.len(),
                    app.config.site.upload_size_max
                )));
            }
            match filename {
                Some(filename) => input.files.push(Upload {
                    field: name,
                    filename,
                    content_type: field_type.unwrap_or_else(|| "application/octet-stream".into()),
                    data: data.to_vec(),
                }),
                None => input.fields.push((
                    name,
                    String::from_utf8(data.to_vec())
                        .map_err(|_| AppError::BadRequest("form field is not UTF-8".into()))?,
                )),
            }
        }
    } else if content_type.starts_with("application/json") {
        input.json = Some(
            serde_json::from_slice(&bytes)
                .map_err(|e| AppError::BadRequest(format!("bad JSON: {e}")))?,
        );
    } else {
        return Err(AppError::BadRequest(format!(
            "unsupported content type {content_type:?}"
        )));
    }
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::is_length_limit;
    use axum::body::{Body, Bytes};

    #[test]
    fn the_length_limit_is_told_apart_from_a_broken_body() {
        let rt = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let too_long = Body::from(vec![b'a'; 100]);
        let e = rt.block_on(axum::body::to_bytes(too_long, 10)).unwrap_err();
        assert!(is_length_limit(&e), "{e}");
        let broken = Body::from_stream(futures_util::stream::iter([
            Ok(Bytes::from_static(b"abc")),
            Err(std::io::Error::other("bad chunk size")),
        ]));
        let e = rt.block_on(axum::body::to_bytes(broken, 10)).unwrap_err();
        assert!(!is_length_limit(&e), "{e}");
    }
}
