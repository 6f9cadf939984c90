//! Anonymous page views kept for the database state they were made from.  A visitor
//! with no credentials asking for an object's own page (GET, no query string), or for
//! a document made from many objects (`@@feed`, `/sitemap.xml`, `/robots.txt`: up to
//! tens of thousands of objects read for one answer), gets the
//! same bytes as every other such visitor with the same language and `Host` as long as
//! the database has not changed: the page is a function of the database at one
//! transaction, the language, the host (for its canonical link) and the path.  So the
//! first such view after a commit renders and keeps its page under the newest
//! transaction id; the next ones, seeing that id still the newest, answer from here
//! without a transaction.  Any commit, anywhere, makes every kept page stale at once:
//! the cache keeps the pages of one transaction and empties itself when a newer one
//! is asked for.
//!
//! What must never be kept: a page for anybody but an anonymous visitor (a request
//! with `Authorization`, or any cookie but the language's and the CSRF token's, is
//! not looked up; a reply for a principal is not stored), a page that carries a CSRF
//! token (its forms are the visitor's own), anything but a 200 page or document, and
//! one made from another snapshot than the newest transaction id read before it (the
//! storage may name a commit a moment before the database's snapshots include it).
//! A ZEO instance asks only once its `sync` is done, so a commit acknowledged before
//! the request started is seen, as without the cache.
//!
//! Bounded: [`limits::PAGE_CACHE_BYTES`] in all, [`limits::PAGE_CACHE_PAGE_BYTES`]
//! per page; once full, pages are no longer added until the next commit empties it,
//! so a client asking for many hosts or languages only stops the cache from helping.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::{HeaderMap, HeaderName, Method, header};
use bytes::Bytes;
use parking_lot::Mutex;
use zodb_storage::Tid;

use crate::i18n::{LANG_COOKIE, Lang};
use crate::limits;
use crate::security::auth::CSRF_COOKIE;

/// A kept answer: its content type, its other headers, its bytes.
#[derive(Debug)]
pub struct Kept {
    pub content_type: String,
    pub headers: Vec<(HeaderName, String)>,
    pub body: Bytes,
}

/// The views whose anonymous answers are kept: an object's own page, and the documents
/// an anonymous client could otherwise make the instance build over and over.
fn kept_view(view: &str) -> bool {
    matches!(view, "" | "view" | "feed" | "sitemap.xml" | "robots.txt")
}

/// What a kept page is found by, besides the transaction id.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PageKey {
    path: String,
    lang: Lang,
    host: Vec<u8>,
}

/// What [`PageKey::of`] looks at in a request.
#[derive(Debug, Clone)]
pub struct Asked<'a> {
    pub method: &'a Method,
    /// The view's name (`""` for an object's own).
    pub view: &'a str,
    pub path: &'a str,
    pub has_query: bool,
    pub wants_json: bool,
    pub headers: &'a HeaderMap,
    pub lang: Lang,
}

impl PageKey {
    /// The key of a request whose page may be kept: a GET of `path` for HTML, with no
    /// query string, no credentials and no cookie but the language's and the CSRF
    /// token's.  `host_named`: the documents name the request's `Host` (no `[site] url`).
    pub fn of(asked: &Asked<'_>, host_named: bool) -> Option<PageKey> {
        let Asked {
            method,
            view,
            path,
            has_query,
            wants_json,
            headers,
            lang,
        } = asked.clone();
        if method != Method::GET
            || !kept_view(view)
            || has_query
            || wants_json
            || headers.contains_key(header::AUTHORIZATION)
        {
            return None;
        }
        let only_ours = headers.get_all(header::COOKIE).iter().all(|value| {
            value.to_str().is_ok_and(|v| {
                v.split(';')
                    .filter(|pair| !pair.trim().is_empty())
                    .all(|pair| {
                        let name = pair.split_once('=').map_or(pair, |(n, _)| n).trim();
                        name == LANG_COOKIE || name == CSRF_COOKIE
                    })
            })
        });
        if !only_ours {
            return None;
        }
        // Only the documents with absolute links name the host, and only when `[site]
        // url` is not set (`views/feeds.rs`): pages are the same whatever `Host` says,
        // so varying it cannot make them be made again.
        let host = if host_named && matches!(view, "feed" | "sitemap.xml" | "robots.txt") {
            headers
                .get(header::HOST)
                .map_or(&[][..], |h| h.as_bytes())
                .to_vec()
        } else {
            Vec::new()
        };
        Some(PageKey {
            path: path.to_owned(),
            lang,
            host,
        })
    }
}

/// The kept pages (see the module doc).
#[derive(Debug, Default)]
pub struct PageCache {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// The transaction the pages were made at.
    tid: Tid,
    pages: HashMap<PageKey, Arc<Kept>>,
    bytes: usize,
}

impl PageCache {
    /// The page kept for `key` at `tid`, the newest transaction (forgets every page of
    /// an older one).
    pub fn get(&self, key: &PageKey, tid: Tid) -> Option<Arc<Kept>> {
        let mut inner = self.inner.lock();
        inner.at(tid);
        inner.pages.get(key).cloned()
    }

    /// Keeps `page` for `key`, made at `tid` (ignored if a newer transaction has been
    /// asked for since, or the page or the cache is too big).
    pub fn put(&self, key: PageKey, tid: Tid, page: Arc<Kept>) {
        if page.body.len() > limits::PAGE_CACHE_PAGE_BYTES {
            return;
        }
        let mut inner = self.inner.lock();
        if tid < inner.tid {
            return;
        }
        inner.at(tid);
        let size = page.body.len() + key.path.len() + key.host.len();
        if inner.bytes + size > limits::PAGE_CACHE_BYTES {
            return;
        }
        if inner.pages.insert(key, page).is_none() {
            inner.bytes += size;
        }
    }
}

impl Inner {
    /// Moves on to transaction `tid`: the pages of an older one are stale.
    fn at(&mut self, tid: Tid) {
        if tid > self.tid {
            self.tid = tid;
            self.pages.clear();
            self.bytes = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn page(body: &[u8]) -> Arc<Kept> {
        Arc::new(Kept {
            content_type: "text/html".into(),
            headers: Vec::new(),
            body: Bytes::copy_from_slice(body),
        })
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    /// The key of an anonymous GET of `path`'s view `view` in English, with `headers`,
    /// changed by `change` first.
    fn key_with(
        view: &str,
        path: &str,
        headers: &HeaderMap,
        change: impl Fn(&mut Asked<'_>),
    ) -> Option<PageKey> {
        let mut asked = Asked {
            method: &Method::GET,
            view,
            path,
            has_query: false,
            wants_json: false,
            headers,
            lang: Lang::En,
        };
        change(&mut asked);
        PageKey::of(&asked, true)
    }

    fn key(path: &str) -> PageKey {
        key_with("", path, &HeaderMap::new(), |_| {}).unwrap()
    }

    #[test]
    fn only_anonymous_gets_without_a_query_have_a_key() {
        let with = |h: &HeaderMap| key_with("", "/p", h, |_| {});
        assert!(with(&headers(&[("host", "a")])).is_some());
        assert!(with(&headers(&[("cookie", "bbru_lang=ru; bbru_csrf=x")])).is_some());
        assert!(with(&headers(&[("cookie", "bbru_session=s")])).is_none());
        assert!(
            with(&headers(&[
                ("cookie", "bbru_lang=ru"),
                ("cookie", "other=1")
            ]))
            .is_none()
        );
        assert!(with(&headers(&[("authorization", "Basic eDp5")])).is_none());
        let none = HeaderMap::new();
        assert!(key_with("", "/p", &none, |a| a.has_query = true).is_none());
        assert!(key_with("", "/p", &none, |a| a.wants_json = true).is_none());
        assert!(key_with("", "/p", &none, |a| a.method = &Method::POST).is_none());
        let view = |v: &str| key_with(v, "/p", &none, |_| {});
        assert!(view("feed").is_some() && view("sitemap.xml").is_some());
        assert!(view("edit").is_none() && view("search").is_none() && view("history").is_none());
        // The host matters for the documents that name it, not for pages.
        assert_eq!(
            with(&headers(&[("host", "a")])),
            with(&headers(&[("host", "b")]))
        );
        let sitemap = |host: &str, named: bool| {
            let h = headers(&[("host", host)]);
            let asked = Asked {
                method: &Method::GET,
                view: "sitemap.xml",
                path: "/sitemap.xml",
                has_query: false,
                wants_json: false,
                headers: &h,
                lang: Lang::En,
            };
            PageKey::of(&asked, named)
        };
        assert_ne!(sitemap("a", true), sitemap("b", true));
        assert_eq!(sitemap("a", false), sitemap("b", false));
    }

    #[test]
    fn pages_are_kept_for_their_transaction_only() {
        let cache = PageCache::default();
        let none = HeaderMap::new();
        let russian = key_with("", "/p", &none, |a| a.lang = Lang::Ru).unwrap();
        cache.put(russian.clone(), Tid(5), page(b"at 5"));
        assert_eq!(
            cache.get(&russian, Tid(5)).map(|k| k.body.clone()),
            Some(Bytes::from_static(b"at 5"))
        );
        assert!(
            cache.get(&russian, Tid(6)).is_none(),
            "a page of an older state"
        );
        // A page made at 5 arriving after 6 was asked for is not kept.
        cache.put(russian.clone(), Tid(5), page(b"late"));
        assert!(cache.get(&russian, Tid(6)).is_none());
        cache.put(russian.clone(), Tid(6), page(b"ru"));
        assert!(
            cache.get(&key("/p"), Tid(6)).is_none(),
            "another language's page"
        );
    }

    #[test]
    fn the_cache_stops_growing_at_its_bound() {
        let cache = PageCache::default();
        let full = vec![b'x'; limits::PAGE_CACHE_PAGE_BYTES];
        let mut kept = 0;
        for i in 0..(limits::PAGE_CACHE_BYTES / limits::PAGE_CACHE_PAGE_BYTES + 10) {
            let key = key(&format!("/{i}"));
            cache.put(key.clone(), Tid(1), page(&full));
            kept += usize::from(cache.get(&key, Tid(1)).is_some());
        }
        assert!(kept * limits::PAGE_CACHE_PAGE_BYTES <= limits::PAGE_CACHE_BYTES);
        assert!(kept > 0);
        let big = page(&vec![b'x'; limits::PAGE_CACHE_PAGE_BYTES + 1]);
        let key = key("/big");
        cache.put(key.clone(), Tid(2), big);
        assert!(cache.get(&key, Tid(2)).is_none());
    }
}
