//! What a page body may be: Markdown of at most [`limits::PAGE_BODY_BYTES_MAX`] bytes
//! whose HTML nests at most [`limits::PAGE_HTML_DEPTH_MAX`] elements deep.  The checks
//! are linear scans, made when a page is saved (so the error is shown to its author)
//! and again before a stored body is sanitised (bodies saved before the limits, or by
//! another client, are shown as text rather than fed to the sanitiser, whose cost grows
//! with the depth of open elements).

use crate::limits;

/// Why a page body was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BodyError {
    #[error("the page body has {0} bytes; a page holds at most {max}", max = limits::PAGE_BODY_BYTES_MAX)]
    TooLarge(usize),
    #[error(
        "the page body nests HTML elements {0} deep; at most {max} levels are allowed (close the tags you open)",
        max = limits::PAGE_HTML_DEPTH_MAX
    )]
    TooDeep(usize),
}

/// Markdown to (unsanitised) HTML: linear in the source.
pub fn markdown_html(source: &str) -> String {
    let parser = pulldown_cmark::Parser::new_ext(source, pulldown_cmark::Options::ENABLE_TABLES);
    let mut html = String::new();
    pulldown_cmark::html::push_html(&mut html, parser);
    html
}

/// Checks a page body; returns its (unsanitised) HTML when it is acceptable.
pub fn check_body(source: &str) -> Result<String, BodyError> {
    if source.len() > limits::PAGE_BODY_BYTES_MAX {
        return Err(BodyError::TooLarge(source.len()));
    }
    let html = markdown_html(source);
    let depth = html_depth(&html);
    if depth > limits::PAGE_HTML_DEPTH_MAX {
        return Err(BodyError::TooDeep(depth));
    }
    Ok(html)
}

/// Elements that never hold content.
const VOID: &[&str] = &[
    "area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track",
    "wbr",
];

/// Elements whose end tag is optional: the parser closes an open one when the next
/// starts, so they do not nest by repetition.
const SELF_CLOSING: &[&str] = &["p", "li", "dt", "dd", "tr", "td", "th", "option"];

/// The deepest nesting of elements in `html`, counted from above: every start tag of
/// a non-void element opens a level until its end tag (unclosed tags stay open).
pub fn html_depth(html: &str) -> usize {
    let bytes = html.as_bytes();
    let mut depth = 0usize;
    let mut deepest = 0usize;
    let mut i = 0;
    while let Some(offset) = bytes.get(i..).and_then(|rest| memchr(b'<', rest)) {
        i += offset + 1;
        if bytes.get(i..).is_some_and(|rest| rest.starts_with(b"!--")) {
            // A comment: skip to its end.
            match html.get(i..).and_then(|rest| rest.find("-->")) {
                Some(end) => i += end + 3,
                None => break,
            }
            continue;
        }
        let closing = bytes.get(i) == Some(&b'/');
        let start = if closing { i + 1 } else { i };
        let name_len = bytes.get(start..).map_or(0, |rest| {
            rest.iter()
                .take_while(|b| b.is_ascii_alphanumeric())
                .count()
        });
        if name_len == 0 {
            continue;
        }
        let name = html
            .get(start..start + name_len)
            .unwrap_or("")
            .to_ascii_lowercase();
        let Some(end) = bytes.get(start..).and_then(|rest| memchr(b'>', rest)) else {
            break;
        };
        let self_closed = end > 0 && bytes.get(start + end - 1) == Some(&b'/');
        i = start + end + 1;
        if VOID.contains(&name.as_str()) || SELF_CLOSING.contains(&name.as_str()) {
            continue;
        }
        if closing {
            depth = depth.saturating_sub(1);
        } else if !self_closed {
            depth += 1;
            deepest = deepest.max(depth);
        }
    }
    deepest
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|&b| b == needle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn depth_counts_open_elements_only() {
        assert_eq!(html_depth("<p>a</p><p>b</p>"), 0);
        assert_eq!(html_depth("<div><div><br><img src=x/></div></div>"), 2);
        assert_eq!(html_depth("<ul><li>a<li>b</ul><!-- <div><div> -->"), 1);
        assert_eq!(html_depth(&"<div>".repeat(500)), 500);
        assert_eq!(html_depth("a < b and <3"), 0);
    }

    #[test]
    fn bodies_too_deep_or_too_large_are_refused_with_a_reason() {
        let deep = "<div>".repeat(100_000);
        let e = check_body(&deep).unwrap_err();
        assert_eq!(e, BodyError::TooDeep(100_000));
        assert!(e.to_string().contains("nests HTML elements"), "{e}");
        let large = "a".repeat(limits::PAGE_BODY_BYTES_MAX + 1);
        assert!(matches!(check_body(&large), Err(BodyError::TooLarge(_))));
        assert!(check_body("# Title\n\n<div><div>fine</div></div>\n").is_ok());
    }
}
