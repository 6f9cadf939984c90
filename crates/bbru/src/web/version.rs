//! Versions of content on the web: the serial of an object's record (the tid of the
//! transaction that last wrote it) as an HTTP entity tag (`ETag`, `If-Match`) and as the
//! hidden field of edit forms.  A change made from an older version than the current one
//! is refused (JSON API: 412) or shown back for merging (forms), never applied over what
//! someone else saved meanwhile.
//!
//! The check runs inside the transaction that makes the change, against the version
//! that transaction read; a commit that slips in between makes the change conflict, the
//! request runs again on the new snapshot, and the check then sees the new version.

use axum::http::{HeaderMap, header};
use zodb::Tid;

use super::AppError;

/// The edit forms' hidden field with the version the form was filled from.
pub const FORM_FIELD: &str = "serial";

/// The version as the form field carries it: 16 hex digits.
pub fn token(serial: Tid) -> String {
    format!("{:016x}", serial.0)
}

/// The version as an entity tag: strong, quoted.
pub fn etag(serial: Tid) -> String {
    format!("\"{}\"", token(serial))
}

/// Whether the `If-Match` field values allow changing version `current` (RFC 9110
/// §13.1.1): `*`, or one of the listed tags equal to the current one under the strong
/// comparison (a weak tag `W/"…"` never matches).
pub fn if_match_allows<'a>(values: impl IntoIterator<Item = &'a str>, current: Tid) -> bool {
    let want = etag(current);
    values
        .into_iter()
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .any(|tag| tag == "*" || tag == want)
}

/// Refuses a change when the request has an `If-Match` naming other versions; no
/// `If-Match` allows it (clients that do not send one keep last-writer-wins).
pub fn check_if_match(headers: &HeaderMap, current: Tid) -> Result<(), AppError> {
    let mut values = Vec::new();
    for value in headers.get_all(header::IF_MATCH) {
        // A value that is not text names no version of ours.
        values.push(value.to_str().unwrap_or(""));
    }
    if values.is_empty() || if_match_allows(values.iter().copied(), current) {
        return Ok(());
    }
    Err(AppError::PreconditionFailed(format!(
        "This object has changed since the version named in If-Match; its current version is {}. Get it again, apply your change to it, and send it with that ETag.",
        etag(current)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn if_match_compares_strongly_and_accepts_lists_and_star() {
        let v = Tid(0x040d_7e4d_8d4e_d688);
        assert_eq!(etag(v), "\"040d7e4d8d4ed688\"");
        assert!(if_match_allows(["\"040d7e4d8d4ed688\""], v));
        assert!(if_match_allows(
            ["\"0000000000000001\", \"040d7e4d8d4ed688\""],
            v
        ));
        assert!(if_match_allows(["\"0000000000000001\"", "*"], v));
        assert!(!if_match_allows(["W/\"040d7e4d8d4ed688\""], v));
        assert!(!if_match_allows(["\"040d7e4d8d4ed689\""], v));
        assert!(!if_match_allows(["040d7e4d8d4ed688"], v));
        let mut headers = HeaderMap::new();
        assert!(check_if_match(&headers, v).is_ok());
        headers.insert(header::IF_MATCH, "\"0000000000000001\"".parse().unwrap());
        assert!(matches!(
            check_if_match(&headers, v),
            Err(AppError::PreconditionFailed(_))
        ));
    }
}
