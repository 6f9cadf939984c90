//! What a view answers ([`Reply`]) and how it becomes an HTTP response.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// What a view answers.
#[derive(Debug)]
pub enum Reply {
    Html(String),
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
    /// A reply with extra headers (cookies).
    WithHeaders(Box<Reply>, Vec<(header::HeaderName, String)>),
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
        Reply::Redirect(to) => (StatusCode::SEE_OTHER, [(header::LOCATION, to)]).into_response(),
        Reply::Json(status, value) => (status, axum::Json(value)).into_response(),
        Reply::Bytes {
            content_type,
            data,
            filename,
        } => {
            let mut response = ([(header::CONTENT_TYPE, content_type)], data).into_response();
            if let Some(name) = filename {
                let safe: String = name
                    .chars()
                    .filter(|c| c.is_ascii_graphic() && *c != '"' && *c != '\\')
                    .collect();
                if let Ok(v) = HeaderValue::from_str(&format!("inline; filename=\"{safe}\"")) {
                    response
                        .headers_mut()
                        .insert(header::CONTENT_DISPOSITION, v);
                }
            }
            response
        }
        Reply::Status(status, text) => (status, text).into_response(),
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
