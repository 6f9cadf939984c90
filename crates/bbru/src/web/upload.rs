//! Multipart forms read as they arrive, so that an upload of any size costs a few MiB of
//! memory: text fields are kept (bounded together by [`limits::FORM_TEXT_BYTES_MAX`]),
//! files are written, a piece of [`limits::UPLOAD_WRITE_BYTES`] at a time on the
//! blocking pool, into files in the storage's blob `tmp/` (a blob of the transaction
//! then takes a hard link to the file: no copy), or, on a storage without blobs, kept in
//! memory up to [`limits::INLINE_FILE_BYTES_MAX`], since they go into a record anyway.
//!
//! The request was admitted before (authenticated, view found and allowed), so an
//! anonymous or unauthorised client never gets a byte read; a form that needs the CSRF
//! token must carry it before its first file (as a field before it, as every browser
//! sends our forms, or the `X-CSRF-Token` header), and a wrong or missing one is refused
//! before the file is read.  Past a limit the answer is 413 (the rest of the body read
//! and dropped for a few seconds, so the client reads it) and every file written is
//! removed at once (the files live as long as the request, as [`tempfile::TempPath`]s);
//! a crash leaves them behind only until the next start ([`remove_leftovers`]).
//!
//! The parsing is `multer`'s (the parser under axum's `Multipart`), fed one chunk of the
//! body per poll (it otherwise drains whatever its stream has ready).

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Body;
use axum::http::HeaderMap;
use futures_util::Stream;

use super::input::{
    Admitted, Held, Input, Upload, budget, declared_length, drain, refuse_unread, seconds,
};
use super::{App, AppError};
use crate::limits;
use crate::model::edit::{Data, UPLOAD_FILE_PREFIX};
use crate::security::auth;

/// The bounds of one multipart body, from its view and the storage.
#[derive(Debug)]
pub(super) struct Plan {
    /// The whole body.
    body_max: u64,
    /// Bytes of every file of the form together.
    files_max: u64,
    /// Bytes of every text field of the form together.
    text_max: u64,
    /// Where files are streamed; `None`: kept in memory.
    spool_dir: Option<PathBuf>,
    /// The CSRF cookie a token must match before the first file is read, when the view
    /// needs one.
    csrf_cookie: Option<String>,
    /// The token of the `X-CSRF-Token` header, if sent.
    csrf_header: Option<String>,
    /// Whether a refused body's rest is read and dropped beside the answer (views that
    /// take uploads, which only users trusted with them reach).
    linger: bool,
}

impl Plan {
    pub(super) fn new(app: &App, headers: &HeaderMap, admitted: &Admitted) -> Plan {
        let site_max = app.config.site.upload_size_max as u64;
        let (files_max, text_max, spool_dir) = match (admitted.uploads, &admitted.spool_dir) {
            (false, _) => (
                limits::FORM_BODY_BYTES_MAX as u64,
                limits::FORM_BODY_BYTES_MAX as u64,
                None,
            ),
            (true, Some(dir)) => (
                site_max,
                limits::FORM_TEXT_BYTES_MAX as u64,
                Some(dir.clone()),
            ),
            (true, None) => (
                site_max.min(limits::INLINE_FILE_BYTES_MAX as u64),
                limits::FORM_TEXT_BYTES_MAX as u64,
                None,
            ),
        };
        let body_max = if admitted.uploads {
            files_max + text_max + limits::MULTIPART_FRAMING_BYTES as u64
        } else {
            limits::FORM_BODY_BYTES_MAX as u64
        };
        Plan {
            body_max,
            files_max,
            text_max,
            spool_dir,
            csrf_cookie: admitted.csrf_cookie.clone(),
            csrf_header: headers
                .get(auth::CSRF_HEADER)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            linger: admitted.uploads,
        }
    }
}

/// Reads and parses a multipart body within `plan`.
pub(super) async fn read_multipart(
    app: &App,
    headers: &HeaderMap,
    body: Body,
    plan: Plan,
) -> Result<Input, AppError> {
    let content_type = headers
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| AppError::BadRequest(format!("bad multipart form: {e}")))?;
    // Refused from the announced length before the body is polled: a client that asks
    // `Expect: 100-continue` sends nothing.
    if declared_length(headers).is_some_and(|n| n as u64 > plan.body_max) {
        // A client that asked `Expect: 100-continue` sends nothing more; any other sends
        // it all anyway.
        refuse_unread(headers, body);
        return Err(too_large_body(&plan));
    }
    let mut input = Input::default();
    if plan.spool_dir.is_some() {
        // What a streamed upload holds in memory (its write buffer, the chunks hyper
        // and multer hold), so that concurrent uploads are bounded by the budget too.
        input
            .held
            .add_budget(budget(app, limits::UPLOAD_STREAM_MEMORY_BYTES).await?);
    }
    let mut body = Paced {
        inner: body.into_data_stream(),
        yielded: false,
        consumed: 0,
    };
    let mut reader = Reader {
        app,
        plan: &plan,
        started: tokio::time::Instant::now(),
        received: 0,
        text_bytes: 0,
        file_bytes: 0,
        csrf_checked: false,
    };
    let constraints =
        multer::Constraints::new().size_limit(multer::SizeLimit::new().whole_stream(plan.body_max));
    let multipart = multer::Multipart::with_constraints(&mut body, boundary, constraints);
    let result = reader.read(multipart, &mut input).await;
    if let Err(e) = result {
        // The rest of a refused body, if little, is read (and dropped) while the answer
        // goes out: a client still sending would otherwise see a reset connection
        // instead of the answer.
        if plan.linger && matches!(e, AppError::TooLarge(_) | AppError::BadRequest(_)) {
            tokio::spawn(drain(body.inner, body.consumed));
        }
        return Err(e);
    }
    Ok(input)
}

/// One multipart body being read: what has arrived, against the plan's bounds.
struct Reader<'a> {
    app: &'a App,
    plan: &'a Plan,
    started: tokio::time::Instant,
    /// Bytes of fields and files received so far.
    received: u64,
    text_bytes: u64,
    file_bytes: u64,
    csrf_checked: bool,
}

impl Reader<'_> {
    /// Reads every part of `multipart` into `input`.
    async fn read(
        &mut self,
        mut multipart: multer::Multipart<'_>,
        input: &mut Input,
    ) -> Result<(), AppError> {
        let mut parts = 0;
        loop {
            let next = self.within(multipart.next_field()).await?;
            let Some(mut field) = next.map_err(|e| multipart_error(self.plan, e))? else {
                return Ok(());
            };
            parts += 1;
            if parts > limits::MULTIPART_PARTS_MAX {
                return Err(AppError::TooLarge(format!(
                    "the form has more than {} parts",
                    limits::MULTIPART_PARTS_MAX
                )));
            }
            let name = field.name().unwrap_or("").to_owned();
            let Some(filename) = field.file_name().map(str::to_owned) else {
                let text = self.text(&mut field, &mut input.held).await?;
                input.fields.push((name, text));
                continue;
            };
            self.check_csrf(&input.fields)?;
            let content_type = field
                .content_type()
                .map_or_else(|| "application/octet-stream".to_owned(), |m| m.to_string());
            let data = match &self.plan.spool_dir {
                Some(dir) => self.spool(&mut field, dir, &mut input.held).await?,
                None => {
                    self.in_memory(&mut field, &filename, &mut input.held)
                        .await?
                }
            };
            input.files.push(Upload {
                field: name,
                filename,
                content_type,
                data,
            });
        }
    }

    /// Waits for `next` until the body's deadline: the body read timeout, plus a second
    /// per [`limits::UPLOAD_RATE_MIN_BYTES_PER_SECOND`] received (a large upload at a
    /// modest rate goes through; one that stalls or trickles does not).
    async fn within<T>(&self, next: impl Future<Output = T>) -> Result<T, AppError> {
        let timeout = self.app.http.body_read_timeout;
        let earned = Duration::from_secs_f64(
            self.received as f64 / limits::UPLOAD_RATE_MIN_BYTES_PER_SECOND as f64,
        );
        tokio::time::timeout_at(self.started + timeout + earned, next)
            .await
            .map_err(|_| {
                AppError::Timeout(format!(
                    "the request body did not arrive within {} (plus a second per {} KiB received)",
                    seconds(timeout),
                    limits::UPLOAD_RATE_MIN_BYTES_PER_SECOND / 1024
                ))
            })
    }

    /// The next chunk of `field`, counted.
    async fn chunk(
        &mut self,
        field: &mut multer::Field<'_>,
    ) -> Result<Option<bytes::Bytes>, AppError> {
        let chunk = self
            .within(field.chunk())
            .await?
            .map_err(|e| multipart_error(self.plan, e))?;
        if let Some(c) = &chunk {
            self.received += c.len() as u64;
        }
        Ok(chunk)
    }

    /// A text field, in memory within the budget.
    async fn text(
        &mut self,
        field: &mut multer::Field<'_>,
        held: &mut Held,
    ) -> Result<String, AppError> {
        let mut text = Vec::new();
        while let Some(chunk) = self.chunk(field).await? {
            self.text_bytes += chunk.len() as u64;
            if self.text_bytes > self.plan.text_max {
                return Err(AppError::TooLarge(format!(
                    "the form's text fields hold more than {} bytes together",
                    self.plan.text_max
                )));
            }
            held.add_budget(budget(self.app, chunk.len()).await?);
            text.extend_from_slice(&chunk);
        }
        String::from_utf8(text).map_err(|_| AppError::BadRequest("form field is not UTF-8".into()))
    }

    /// Counts `n` more file bytes against the plan.
    fn count_file_bytes(&mut self, n: usize) -> Result<(), AppError> {
        self.file_bytes += n as u64;
        if self.file_bytes > self.plan.files_max {
            return Err(AppError::TooLarge(format!(
                "the file is larger than the {} bytes this site accepts",
                self.plan.files_max
            )));
        }
        Ok(())
    }

    /// A file field written into a new file in `dir`; the file is removed when the
    /// request is done with it, or at once if reading fails.
    async fn spool(
        &mut self,
        field: &mut multer::Field<'_>,
        dir: &Path,
        held: &mut Held,
    ) -> Result<Data, AppError> {
        let mut spool = Spool::create(dir)?;
        while let Some(chunk) = self.chunk(field).await? {
            self.count_file_bytes(chunk.len())?;
            spool.write(&chunk).await?;
        }
        let (path, size) = spool.finish().await?;
        let data = Data::File {
            path: path.to_path_buf(),
            size,
        };
        held.spooled.push(path);
        Ok(data)
    }

    /// A file field in memory (a storage without blobs keeps files in records).
    async fn in_memory(
        &mut self,
        field: &mut multer::Field<'_>,
        filename: &str,
        held: &mut Held,
    ) -> Result<Data, AppError> {
        let mut data = Vec::new();
        while let Some(chunk) = self.chunk(field).await? {
            self.count_file_bytes(chunk.len()).map_err(|_| {
                AppError::TooLarge(format!(
                    "the file {filename:?} is larger than the {} bytes this site accepts here",
                    self.plan.files_max
                ))
            })?;
            held.add_budget(budget(self.app, chunk.len()).await?);
            data.extend_from_slice(&chunk);
        }
        Ok(Data::Bytes(data.into()))
    }

    /// Before the first file: the CSRF token (a field before it, or the header), when
    /// the view needs one from this client.
    fn check_csrf(&mut self, fields: &[(String, String)]) -> Result<(), AppError> {
        let Some(cookie) = self.plan.csrf_cookie.as_deref() else {
            return Ok(());
        };
        if self.csrf_checked {
            return Ok(());
        }
        let token = fields
            .iter()
            .find(|(k, _)| k == auth::CSRF_FIELD)
            .map(|(_, v)| v.as_str())
            .or(self.plan.csrf_header.as_deref());
        match token {
            Some(token) if auth::csrf_ok(&self.app.secret, cookie, token) => {
                self.csrf_checked = true;
                Ok(())
            }
            Some(_) => Err(AppError::BadRequest(
                "the form has expired or did not come from this site (CSRF check failed); reload the page and try again".into(),
            )),
            None => Err(AppError::BadRequest(format!(
                "the form's CSRF token ({:?}) must come before its file, or in the {} header",
                auth::CSRF_FIELD,
                auth::CSRF_HEADER
            ))),
        }
    }
}

/// What a multer error means for the client.
fn multipart_error(plan: &Plan, e: multer::Error) -> AppError {
    match e {
        multer::Error::StreamSizeExceeded { .. } => too_large_body(plan),
        // A body that is not well-formed HTTP (a bad chunk size, a connection closed
        // early): the client's mistake, said as such.
        multer::Error::StreamReadFailed(e) => {
            AppError::BadRequest(format!("the request body could not be read: {e}"))
        }
        e => AppError::BadRequest(format!("bad multipart form: {e}")),
    }
}

fn too_large_body(plan: &Plan) -> AppError {
    AppError::TooLarge(format!(
        "the request body is larger than the {} bytes this address accepts (files of at most {} bytes)",
        plan.body_max, plan.files_max
    ))
}

/// A file being written from an upload: pieces of [`limits::UPLOAD_WRITE_BYTES`]
/// written on the blocking pool.
struct Spool {
    file: Option<std::fs::File>,
    path: tempfile::TempPath,
    buffer: Vec<u8>,
    size: u64,
}

impl Spool {
    fn create(dir: &Path) -> Result<Spool, AppError> {
        let (file, path) = tempfile::Builder::new()
            .prefix(UPLOAD_FILE_PREFIX)
            .tempfile_in(dir)
            .map_err(|e| spool_error(dir, e))?
            .into_parts();
        Ok(Spool {
            file: Some(file),
            path,
            buffer: Vec::with_capacity(limits::UPLOAD_WRITE_BYTES),
            size: 0,
        })
    }

    async fn write(&mut self, chunk: &[u8]) -> Result<(), AppError> {
        self.buffer.extend_from_slice(chunk);
        self.size += chunk.len() as u64;
        if self.buffer.len() >= limits::UPLOAD_WRITE_BYTES {
            self.flush().await?;
        }
        Ok(())
    }

    async fn flush(&mut self) -> Result<(), AppError> {
        let (Some(mut file), buffer) = (self.file.take(), std::mem::take(&mut self.buffer)) else {
            return Err(AppError::Internal);
        };
        let written = tokio::task::spawn_blocking(move || {
            let r = std::io::Write::write_all(&mut file, &buffer);
            (file, buffer, r)
        })
        .await;
        let (file, mut buffer, result) = written.map_err(|e| {
            tracing::error!("writing an upload: {e}");
            AppError::Internal
        })?;
        result.map_err(|e| spool_error(&self.path, e))?;
        buffer.clear();
        self.file = Some(file);
        self.buffer = buffer;
        Ok(())
    }

    /// Writes what is left; the file's path (removed when dropped) and length.
    async fn finish(mut self) -> Result<(tempfile::TempPath, u64), AppError> {
        if !self.buffer.is_empty() {
            self.flush().await?;
        }
        Ok((self.path, self.size))
    }
}

/// An upload that could not be written (a full disk, say): logged, 500 for the client.
fn spool_error(path: &Path, e: std::io::Error) -> AppError {
    tracing::error!(path = %path.display(), "writing an upload: {e}");
    if e.kind() == std::io::ErrorKind::StorageFull {
        return AppError::Busy("the server has no room for this upload at the moment".into());
    }
    AppError::Internal
}

/// Removes upload files a previous run left in `dir` (the storage's blob `tmp/`) when it
/// was killed mid-request.  Only this instance writes there (an embedded storage is
/// locked by one process; a ZEO instance's blob cache is its own).
pub fn remove_leftovers(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        if entry
            .file_name()
            .to_string_lossy()
            .starts_with(UPLOAD_FILE_PREFIX)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The body one chunk per poll.  multer reads everything its stream has ready in one
/// poll, so without this a client sending faster than the disk writes would make it
/// buffer that much; with it, it holds about a chunk.
struct Paced<S> {
    inner: S,
    yielded: bool,
    /// Bytes of the body read so far.
    consumed: u64,
}

impl<S: Stream<Item = Result<bytes::Bytes, E>> + Unpin, E> Stream for Paced<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        if self.yielded {
            // Let the reader take what it has; it is polled again at once.
            self.yielded = false;
            cx.waker().wake_by_ref();
            return Poll::Pending;
        }
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(Some(Ok(chunk))) = &next {
            self.yielded = true;
            self.consumed += chunk.len() as u64;
        }
        next
    }
}
