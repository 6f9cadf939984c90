//! What a view answers ([`Reply`]) and how it becomes an HTTP response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What a view answers.
#[derive(Debug)]
pub enum Reply {
    Html(String),
    /// An answer kept by the page cache (`page_cache.rs`), shared with it.
    Kept(std::sync::Arc<super::page_cache::Kept>),
    /// A page with another status than 200 (a form shown again, with why).
    HtmlStatus(StatusCode, String),
    /// A redirect (303 after a POST) to a path of this site.
    Redirect(String),
    Json(StatusCode, serde_json::Value),
    /// Raw bytes with a content type (file downloads, metrics).
    Bytes {
        content_type: String,
        data: Vec<u8>,
        /// `Content-Disposition` file name, for downloads.
        filename: Option<String>,
    },
    Status(StatusCode, String),
    /// A file's bytes, or a range of them, streamed from `path` (a blob revision: never
    /// changed while it exists), with its `ETag`; `range` is `(start, end exclusive)`
    /// of a satisfiable `Range`, answered 206.
    File {
        content_type: String,
        path: std::path::PathBuf,
        size: u64,
        filename: String,
        etag: String,
        /// The `Last-Modified` value (an HTTP date).
        last_modified: String,
        range: Option<(u64, u64)>,
    },
    /// A reply with extra headers (cookies).
    WithHeaders(Box<Reply>, Vec<(header::HeaderName, String)>),
}

/// The site's own origin for [`same_origin_path`]: a name that cannot be resolved, used
/// only to parse relative references.
const DUMMY_ORIGIN: &str = "http://bbru.invalid/";

/// The path (with its query and fragment) a user-given redirect target `value` names on
/// this site, or `None` when it names another origin or is not a plain path: control
/// characters or whitespace anywhere (browsers drop tabs and newlines, so `/<TAB>/evil.example`
/// would reach `//evil.example`), backslashes (read as slashes), anything but an absolute
/// path, and paths starting with `//` (protocol-relative).  The result is rebuilt from the
/// parsed URL, so it is what a browser would request, percent-encoded.
pub fn same_origin_path(value: &str) -> Option<String> {
    if !value.starts_with('/')
        || value
            .chars()
            .any(|c| c.is_control() || c.is_whitespace() || c == '\\')
    {
        return None;
    }
    let base = url::Url::parse(DUMMY_ORIGIN).expect("a valid URL");
    let url = base.join(value).ok()?;
    if url.origin() != base.origin() || url.path().starts_with("//") {
        return None;
    }
    let mut out = url.path().to_owned();
    if let Some(q) = url.query() {
        out.push('?');
        out.push_str(q);
    }
    if let Some(f) = url.fragment() {
        out.push('#');
        out.push_str(f);
    }
    Some(out)
}

/// Characters RFC 5987 lets through unencoded in an extended value (`attr-char`).
const ATTR_CHAR: &percent_encoding::AsciiSet = &percent_encoding::NON_ALPHANUMERIC
    .remove(b'!')
    .remove(b'#')
    .remove(b'$')
    .remove(b'&')
    .remove(b'+')
    .remove(b'-')
    .remove(b'.')
    .remove(b'^')
    .remove(b'_')
    .remove(b'`')
    .remove(b'|')
    .remove(b'~');

/// `Content-Disposition` of a download named `name` (RFC 6266): the name itself as
/// `filename*` (UTF-8, percent-encoded, RFC 5987), and an ASCII `filename` for old
/// clients, transliterated ("résumé 日本.txt" gives "resume Ri Ben .txt").
pub fn content_disposition(name: &str) -> String {
    let fallback: String = deunicode::deunicode_with_tofu(name, "_")
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || " .-_()[]+,".contains(c) {
                c
            } else {
                '_'
            }
        })
        .collect();
    let encoded = percent_encoding::utf8_percent_encode(name, ATTR_CHAR);
    format!("inline; filename=\"{fallback}\"; filename*=UTF-8''{encoded}")
}

/// Percent-encodes names into a URL path ("/" for none).
pub fn url_of<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let mut url = String::new();
    for name in names {
        url.push('/');
        url.push_str(
            &percent_encoding::utf8_percent_encode(name, percent_encoding::NON_ALPHANUMERIC)
                .to_string()
                .replace("%2D", "-")
                .replace("%2E", ".")
                .replace("%5F", "_"),
        );
    }
    if url.is_empty() {
        url.push('/');
    }
    url
}

pub(super) fn render_reply(reply: Reply) -> Response {
    match reply {
        Reply::Html(html) => {
            ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], html).into_response()
        }
        Reply::Kept(kept) => {
            let mut response = axum::body::Body::from(kept.body.clone()).into_response();
            let headers = response.headers_mut();
            for (name, value) in std::iter::once((&header::CONTENT_TYPE, &kept.content_type))
                .chain(kept.headers.iter().map(|(n, v)| (n, v)))
            {
                if let Ok(v) = HeaderValue::from_str(value) {
                    headers.insert(name.clone(), v);
                }
            }
            response
        }
        Reply::HtmlStatus(status, html) => (
            status,
            [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
            html,
        )
            .into_response(),
        Reply::Redirect(to) => {
            // Every target is a path of this site; one that is not (or cannot be a header)
            // is a bug, answered with the site root rather than a redirect elsewhere or
            // to nowhere.
            let to = same_origin_path(&to).unwrap_or_else(|| {
                tracing::error!(target = %to.escape_debug(), "refused redirect target");
                "/".to_owned()
            });
            let location = HeaderValue::from_str(&to).unwrap_or(HeaderValue::from_static("/"));
            (StatusCode::SEE_OTHER, [(header::LOCATION, location)]).into_response()
        }
        Reply::Json(status, value) => (status, axum::Json(value)).into_response(),
        Reply::Bytes {
            content_type,
            data,
            filename,
        } => {
            // Types are checked when stored; one stored before that was checked (or
            // otherwise unfit for a header) is served as bytes, not as a 500.
            let content_type = HeaderValue::from_str(&content_type).unwrap_or_else(|_| {
                tracing::warn!(content_type = %content_type.escape_debug(), "stored content type unfit for a header; served as application/octet-stream");
                HeaderValue::from_static("application/octet-stream")
            });
            let mut response = ([(header::CONTENT_TYPE, content_type)], data).into_response();
            if let Some(name) = filename
                && let Ok(v) = HeaderValue::from_str(&content_disposition(&name))
            {
                response
                    .headers_mut()
                    .insert(header::CONTENT_DISPOSITION, v);
            }
            response
        }
        Reply::Status(status, text) => (status, text).into_response(),
        Reply::File {
            content_type,
            path,
            size,
            filename,
            etag,
            last_modified,
            range,
        } => file_response(
            &content_type,
            path,
            size,
            &filename,
            (&etag, &last_modified),
            range,
        ),
        Reply::WithHeaders(inner, headers) => {
            let mut response = render_reply(*inner);
            for (name, value) in headers {
                if let Ok(v) = HeaderValue::from_str(&value) {
                    response.headers_mut().append(name, v);
                }
            }
            response
        }
    }
}

/// Streams `path` (all of it, or `range`) in chunks read on the blocking pool: a file of
/// any size costs one chunk of memory per response.
fn file_response(
    content_type: &str,
    path: std::path::PathBuf,
    size: u64,
    filename: &str,
    (etag, last_modified): (&str, &str),
    range: Option<(u64, u64)>,
) -> Response {
    use std::io::{Read, Seek, SeekFrom};
    let (start, end) = range.unwrap_or((0, size));
    let file = match std::fs::File::open(&path).and_then(|mut f| {
        f.seek(SeekFrom::Start(start))?;
        Ok(f)
    }) {
        Ok(f) => f,
        Err(e) => {
            tracing::error!(path = %path.display(), "cannot open a blob to serve: {e}");
            return (
                StatusCode::INTERNAL_SERVER_ERROR,
                "Internal error; it has been logged.",
            )
                .into_response();
        }
    };
    let stream =
        futures_util::stream::unfold((Some(file), end - start), |(file, left)| async move {
            let mut file = file?;
            if left == 0 {
                return None;
            }
            let want = left.min(crate::limits::DOWNLOAD_CHUNK_BYTES as u64) as usize;
            let read = tokio::task::spawn_blocking(move || {
                let mut buf = vec![0; want];
                file.read_exact(&mut buf).map(|()| (file, buf))
            })
            .await;
            match read {
                Ok(Ok((file, buf))) => {
                    let n = buf.len() as u64;
                    Some((
                        Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)),
                        (Some(file), left - n),
                    ))
                }
                Ok(Err(e)) => Some((Err(e), (None, 0))),
                Err(e) => Some((Err(std::io::Error::other(e)), (None, 0))),
            }
        });
    let content_type = HeaderValue::from_str(content_type)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    let mut response = Response::new(axum::body::Body::from_stream(stream));
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, content_type);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(end - start));
    headers.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    if let Ok(v) = HeaderValue::from_str(etag) {
        headers.insert(header::ETAG, v);
    }
    if let Ok(v) = HeaderValue::from_str(last_modified) {
        headers.insert(header::LAST_MODIFIED, v);
    }
    if let Ok(v) = HeaderValue::from_str(&content_disposition(filename)) {
        headers.insert(header::CONTENT_DISPOSITION, v);
    }
    if range.is_some() {
        if let Ok(v) = HeaderValue::from_str(&format!("bytes {start}-{}/{size}", end - 1)) {
            headers.insert(header::CONTENT_RANGE, v);
        }
        *response.status_mut() = StatusCode::PARTIAL_CONTENT;
    }
    response
}

/// The one range of a `Range: bytes=…` header, as `(start, end exclusive)` within
/// `size`: `Ok(None)` for no header (or one we do not honour: several ranges, another
/// unit, as RFC 9110 allows, answered whole), `Err(())` when unsatisfiable (416).
pub(super) fn parse_range(value: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.and_then(|v| v.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = match (a.parse::<u64>(), b.parse::<u64>()) {
        // bytes=a-b
        (Ok(a), Ok(b)) if a <= b => (a, b.saturating_add(1).min(size)),
        // bytes=a-
        (Ok(a), Err(_)) if b.is_empty() => (a, size),
        // bytes=-n: the last n bytes
        (Err(_), Ok(n)) if a.is_empty() => (size.saturating_sub(n), size),
        _ => return Ok(None),
    };
    if range.0 >= size || range.0 >= range.1 {
        return Err(());
    }
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::{content_disposition, parse_range, same_origin_path};

    #[test]
    fn ranges_are_read_as_rfc_9110_says() {
        assert_eq!(parse_range(None, 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-3"), 10), Ok(Some((0, 4))));
        assert_eq!(parse_range(Some("bytes=5-"), 10), Ok(Some((5, 10))));
        assert_eq!(parse_range(Some("bytes=-3"), 10), Ok(Some((7, 10))));
        assert_eq!(parse_range(Some("bytes=8-100"), 10), Ok(Some((8, 10))));
        assert_eq!(parse_range(Some("bytes=10-"), 10), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,4-5"), 10), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 10), Ok(None));
        assert_eq!(parse_range(Some("bytes=5-2"), 10), Ok(None));
    }

    #[test]
    fn download_names_survive_in_utf8_with_an_ascii_fallback() {
        assert_eq!(
            content_disposition("résumé 日本.txt"),
            "inline; filename=\"resume Ri Ben .txt\"; filename*=UTF-8''r%C3%A9sum%C3%A9%20%E6%97%A5%E6%9C%AC.txt"
        );
        assert_eq!(
            content_disposition("a\"b\\c;d.txt"),
            "inline; filename=\"a_b_c_d.txt\"; filename*=UTF-8''a%22b%5Cc%3Bd.txt"
        );
    }

    #[test]
    fn redirect_targets_stay_on_this_site() {
        assert_eq!(same_origin_path("/").as_deref(), Some("/"));
        assert_eq!(
            same_origin_path("/docs/@@edit?x=1#top").as_deref(),
            Some("/docs/@@edit?x=1#top")
        );
        assert_eq!(
            same_origin_path("/caf\u{e9}").as_deref(),
            Some("/caf%C3%A9")
        );
        assert_eq!(same_origin_path("/a/../b").as_deref(), Some("/b"));
        for hostile in [
            "//evil.example",
            "/\t/evil.example",
            "/\n/evil.com",
            "/\\evil.example",
            "/.//evil.example",
            "/./\\evil.example",
            "/..//evil.example",
            "http://evil.example/",
            "https:evil.example",
            "javascript:alert(1)",
            "evil.example",
            "",
            "/ /evil.example",
            "/\u{a0}/x",
            "/\0",
        ] {
            assert_eq!(same_origin_path(hostile), None, "{hostile:?}");
        }
    }
}
