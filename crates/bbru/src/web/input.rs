//! The request body as the views see it: form fields, uploads and JSON.
//!
//! Reading and parsing happen only once the request has been admitted (authenticated,
//! its view found and allowed), which also says what the view takes ([`Admitted`]):
//!
//! - a multipart form is read as it arrives (`upload.rs`): its text fields into memory
//!   (at most [`limits::FORM_TEXT_BYTES_MAX`] together), its files streamed into files
//!   in the storage's blob `tmp/`, or, on a storage without blobs, into memory (at most
//!   [`limits::INLINE_FILE_BYTES_MAX`]);
//! - any other body (a urlencoded form, JSON) is read whole by [`read_body`], bounded
//!   by the view's limit, the instance's budget of body bytes
//!   ([`limits::BODY_BUDGET_BYTES`]) and the body read timeout, then parsed by
//!   [`parse_input`] on the blocking pool, holding a connection slot, with caps on
//!   fields, JSON nesting and values, so its memory stays proportional to the body.

use std::path::PathBuf;
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, header};
use bytes::Bytes;
use futures_util::StreamExt;
use tokio::sync::OwnedSemaphorePermit;

use super::{App, AppError};
use crate::limits;
use crate::model::edit::Data;

/// A request as the views see it (the body already parsed).  It holds what the body
/// costs (its share of the body budget, the files uploads were streamed into) until
/// the request is done with it.
#[derive(Debug, Default)]
pub struct Input {
    pub fields: Vec<(String, String)>,
    pub files: Vec<Upload>,
    pub json: Option<serde_json::Value>,
    pub(super) held: Held,
}

/// What a parsed body keeps until the request is done: its share of the body budget,
/// and the files its uploads were streamed into (removed when dropped).
#[derive(Debug, Default)]
pub(super) struct Held {
    pub budget: Option<OwnedSemaphorePermit>,
    pub spooled: Vec<tempfile::TempPath>,
}

impl Held {
    /// Adds `more` to the budget held.
    pub fn add_budget(&mut self, more: OwnedSemaphorePermit) {
        match &mut self.budget {
            Some(p) => p.merge(more),
            None => self.budget = Some(more),
        }
    }
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

    /// The file uploaded as `name`, unless empty (a form's file field left blank).
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
    pub data: Data,
}

/// What an admitted request's view takes, decided before its body is read.
#[derive(Debug, Clone)]
pub(super) struct Admitted {
    /// The view takes uploads and page bodies (else small forms only).
    pub uploads: bool,
    /// Where uploads are streamed: the storage's blob `tmp/` (a blob then takes a link
    /// to the file); `None`: the storage has no blobs, files go into records.
    pub spool_dir: Option<PathBuf>,
    /// When the view needs the CSRF token from this client (a browser's credentials):
    /// the CSRF cookie the token must match, checked before the first file of a
    /// multipart form is read.
    pub csrf_cookie: Option<String>,
}

/// A body read but not yet parsed, or a multipart form read and parsed as it arrived.
#[derive(Debug)]
pub(super) enum Received {
    Raw(RawBody),
    Parsed(Input),
}

fn content_type(headers: &HeaderMap) -> &str {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
}

/// Reads the body of an admitted request: a multipart form streamed and parsed, any
/// other body whole within the view's limit.
pub(super) async fn read_input(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    admitted: Admitted,
) -> Result<Received, AppError> {
    let content_type = content_type(headers);
    if content_type.starts_with("multipart/form-data") {
        let plan = super::upload::Plan::new(app, headers, &admitted);
        return super::upload::read_multipart(app, headers, body, plan)
            .await
            .map(Received::Parsed);
    }
    let limit = match (admitted.uploads, content_type) {
        (false, _) => limits::FORM_BODY_BYTES_MAX,
        (true, t) if t.starts_with("application/json") => limits::JSON_BODY_BYTES_MAX,
        (true, _) => limits::FORM_TEXT_BYTES_MAX,
    };
    read_body(app, headers, body, limit, admitted.uploads)
        .await
        .map(Received::Raw)
}

/// The raw bytes of a body, with their share of the instance's body budget (given back
/// when the request is done with them).
#[derive(Debug)]
pub(super) struct RawBody {
    pub bytes: Bytes,
    budget: Option<OwnedSemaphorePermit>,
}

/// The `Content-Length` a request declares, if any.
pub(super) fn declared_length(headers: &HeaderMap) -> Option<usize> {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse().ok())
}

/// Whether a request has a body to read.
pub(super) fn has_body(headers: &HeaderMap) -> bool {
    headers.contains_key(header::TRANSFER_ENCODING) || declared_length(headers).unwrap_or(0) > 0
}

/// Permits for `bytes` of the body budget, waiting [`limits::BODY_BUDGET_WAIT`] at most.
pub(super) async fn budget(app: &App, bytes: usize) -> Result<OwnedSemaphorePermit, AppError> {
    let n = u32::try_from(bytes).unwrap_or(u32::MAX);
    match tokio::time::timeout(
        limits::BODY_BUDGET_WAIT,
        app.body_budget.clone().acquire_many_owned(n),
    )
    .await
    {
        Ok(Ok(permit)) => Ok(permit),
        _ => Err(AppError::Busy(
            "the server is receiving too many large requests at once; try again in a moment".into(),
        )),
    }
}

/// The bytes of the body, at most `limit` of them, within the body read timeout.  Past
/// the limit it is refused (413); with `linger` (a view that takes uploads, which its
/// permission reserves to the users it trusts with them), the rest is read and dropped
/// beside the answer.
pub(super) async fn read_body(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    limit: usize,
    linger: bool,
) -> Result<RawBody, AppError> {
    let too_large = || {
        AppError::TooLarge(format!(
            "the request body is larger than the {limit} bytes this address accepts"
        ))
    };
    // Refused from the announced length, before the body is polled: hyper answers
    // `Expect: 100-continue` only when the body is first read, so a client asking
    // whether it may send too much is told no (413) and sends nothing.
    let declared = declared_length(headers);
    if declared.is_some_and(|n| n > limit) {
        if linger {
            refuse_unread(headers, body);
        }
        return Err(too_large());
    }
    let mut permit = match declared {
        Some(n) if n > 0 => Some(budget(app, n).await?),
        _ => None,
    };
    let deadline = tokio::time::Instant::now() + app.http.body_read_timeout;
    let mut data = Vec::with_capacity(declared.unwrap_or(0));
    let mut stream = body.into_data_stream();
    loop {
        let next = tokio::time::timeout_at(deadline, stream.next())
            .await
            .map_err(|_| {
                AppError::Timeout(format!(
                    "the request body did not arrive within {}",
                    seconds(app.http.body_read_timeout)
                ))
            })?;
        let Some(chunk) = next else { break };
        // A body that is not well-formed HTTP (a bad chunk size, a connection closed
        // early): the client's mistake, said as such.
        let chunk = chunk.map_err(|e| {
            AppError::BadRequest(format!("the request body could not be read: {e}"))
        })?;
        if data.len() + chunk.len() > limit {
            if linger {
                tokio::spawn(drain(stream, data.len() as u64));
            }
            return Err(too_large());
        }
        if declared.is_none() && !chunk.is_empty() {
            // Chunked: the budget is taken as the bytes arrive.
            let more = budget(app, chunk.len()).await?;
            match &mut permit {
                Some(p) => p.merge(more),
                None => permit = Some(more),
            }
        }
        data.extend_from_slice(&chunk);
    }
    Ok(RawBody {
        bytes: data.into(),
        budget: permit,
    })
}

/// Whether the client waits for `100 Continue` before it sends the body.
pub(super) fn expects_continue(headers: &HeaderMap) -> bool {
    headers
        .get(axum::http::header::EXPECT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("100-continue"))
}

/// Refuses an admitted request's body from its announced length, unread: a client that
/// asked `Expect: 100-continue` sends nothing more; any other sends it all anyway, so
/// it is read and dropped beside the answer ([`drain`]).
pub(super) fn refuse_unread(headers: &HeaderMap, body: Body) {
    if !expects_continue(headers) {
        tokio::spawn(drain(body.into_data_stream(), 0));
    }
}

/// Reads and drops what is left of a refused body, for at most
/// [`limits::REFUSED_UPLOAD_DRAIN_WAIT`], beside its answer (hyper writes the response
/// while the body is still read); `read` bytes of it were read before.  A client that
/// sends its whole body before it reads the answer then gets the answer rather than a
/// connection reset under its feet, as nginx's lingering close gives.
pub(super) async fn drain(mut stream: axum::body::BodyDataStream, read: u64) {
    let mut drained = 0u64;
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            drained += chunk.len() as u64;
        }
    };
    let finished = tokio::time::timeout(limits::REFUSED_UPLOAD_DRAIN_WAIT, drain)
        .await
        .is_ok();
    tracing::debug!(
        read,
        drained,
        finished,
        "the rest of a refused upload read and dropped"
    );
}

/// Reads and drops the body of a refused request when it is small
/// ([`limits::REFUSED_BODY_DRAIN_BYTES_MAX`]), within the body read timeout; a larger
/// one is left unread (its connection is then closed after the answer).
pub(super) async fn discard_small_body(app: &App, headers: &HeaderMap, body: Body) {
    if declared_length(headers).is_some_and(|n| n > limits::REFUSED_BODY_DRAIN_BYTES_MAX) {
        return;
    }
    let mut stream = body.into_data_stream();
    let mut read = 0usize;
    let drain = async {
        while let Some(Ok(chunk)) = stream.next().await {
            read += chunk.len();
            if read > limits::REFUSED_BODY_DRAIN_BYTES_MAX {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(app.http.body_read_timeout, drain).await;
}

pub(super) fn seconds(d: Duration) -> String {
    format!("{} seconds", d.as_secs_f64())
}

/// Form pairs of a urlencoded text (a body or a query string), at most
/// [`limits::FORM_FIELDS_MAX`] of them.
pub(super) fn form_pairs(bytes: &[u8]) -> Result<Vec<(String, String)>, AppError> {
    let mut fields = Vec::new();
    for (k, v) in form_urlencoded::parse(bytes) {
        if fields.len() == limits::FORM_FIELDS_MAX {
            return Err(too_many_fields());
        }
        fields.push((k.into_owned(), v.into_owned()));
    }
    Ok(fields)
}

fn too_many_fields() -> AppError {
    AppError::TooLarge(format!(
        "the form has more than {} fields",
        limits::FORM_FIELDS_MAX
    ))
}

/// Parses a body read by [`read_input`] (on the blocking pool: it may take a while).
pub(super) fn parse_input(
    headers: &HeaderMap,
    received: Option<Received>,
) -> Result<Input, AppError> {
    let raw = match received {
        None => return Ok(Input::default()),
        Some(Received::Parsed(input)) => return Ok(input),
        Some(Received::Raw(raw)) => raw,
    };
    let mut input = Input::default();
    if raw.bytes.is_empty() {
        return Ok(input);
    }
    let content_type = content_type(headers);
    if content_type.starts_with("application/x-www-form-urlencoded") {
        input.fields = form_pairs(&raw.bytes)?;
    } else if content_type.starts_with("application/json") {
        check_json(&raw.bytes)?;
        input.json = Some(
            serde_json::from_slice(&raw.bytes)
                .map_err(|e| AppError::BadRequest(format!("bad JSON: {e}")))?,
        );
    } else {
        return Err(AppError::BadRequest(format!(
            "unsupported content type {content_type:?}"
        )));
    }
    input.held.budget = raw.budget;
    Ok(input)
}

/// Refuses JSON nested deeper than [`limits::JSON_DEPTH_MAX`] or holding more than
/// [`limits::JSON_VALUES_MAX`] values, before it is parsed: one pass over the bytes, no
/// allocation.  Values are counted from above (separators and containers, outside
/// strings), which is all a bound needs; syntax is left to the parser.
fn check_json(bytes: &[u8]) -> Result<(), AppError> {
    let mut depth = 0usize;
    let mut values = 1usize;
    let mut in_string = false;
    let mut escaped = false;
    for &b in bytes {
        if in_string {
            match (escaped, b) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                values += 1;
                if depth > limits::JSON_DEPTH_MAX {
                    return Err(AppError::TooLarge(format!(
                        "the JSON body nests deeper than {} levels",
                        limits::JSON_DEPTH_MAX
                    )));
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            b',' => values += 1,
            _ => {}
        }
        if values > limits::JSON_VALUES_MAX {
            return Err(AppError::TooLarge(format!(
                "the JSON body holds more than {} values",
                limits::JSON_VALUES_MAX
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_nesting_and_values_are_bounded_before_parsing() {
        assert!(check_json(br#"{"title": "a, [b] {c}", "body": "\"[[[["}"#).is_ok());
        let deep = "[".repeat(limits::JSON_DEPTH_MAX + 1);
        assert!(
            matches!(check_json(deep.as_bytes()), Err(AppError::TooLarge(m)) if m.contains("nests"))
        );
        let ok_deep = "[".repeat(limits::JSON_DEPTH_MAX) + &"]".repeat(limits::JSON_DEPTH_MAX);
        assert!(check_json(ok_deep.as_bytes()).is_ok());
        let many = format!("[{}0]", "0,".repeat(limits::JSON_VALUES_MAX));
        assert!(
            matches!(check_json(many.as_bytes()), Err(AppError::TooLarge(m)) if m.contains("values"))
        );
        // Commas inside strings are text, not values.
        let text = format!(
            "{{\"body\": \"{}\"}}",
            ",".repeat(limits::JSON_VALUES_MAX * 2)
        );
        assert!(check_json(text.as_bytes()).is_ok());
    }

    #[test]
    fn form_fields_are_bounded() {
        let ok = "a&".repeat(limits::FORM_FIELDS_MAX);
        assert_eq!(
            form_pairs(ok.as_bytes()).unwrap().len(),
            limits::FORM_FIELDS_MAX
        );
        let too_many = "a&".repeat(limits::FORM_FIELDS_MAX + 1);
        assert!(matches!(
            form_pairs(too_many.as_bytes()),
            Err(AppError::TooLarge(_))
        ));
        assert_eq!(
            form_pairs(b"x=1&y=%C3%A9").unwrap(),
            vec![("x".into(), "1".into()), ("y".into(), "é".into())]
        );
    }
}
