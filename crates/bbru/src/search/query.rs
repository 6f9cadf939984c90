//! Answering a query: its words analysed as the index's are, every item holding all of
//! them (AND: a reader adding a word means to narrow), ranked by BM25 over the weighted
//! counts of the postings, then filtered by what the reader may view, best first, with
//! a snippet of the text around the words found (`<mark>`ed, the rest escaped).
//!
//! AND rather than a ranked OR: with Snowball stems an OR of common words returns most
//! of the site, and bounding its cost would cut results arbitrarily; an AND is answered
//! from the rarest term's postings, and "установка bbru" means both.
//!
//! Every step is bounded by the limits in `crate::limits` (`SEARCH_*`): query bytes and
//! terms, postings read, candidates checked, results.  A query that reaches a bound
//! says so (`incomplete`) rather than taking longer.

use std::collections::HashMap;
use std::rc::Rc;

use zodb::Transaction;

use super::analyze::{ANALYZER_VERSION, Analyzer};
use super::index::{self, Index};
use super::text::{self, Field};
use crate::limits;
use crate::model::{Content, ContentRef, Site};
use crate::security::{self, Principal};
use crate::web::url_of;

/// BM25's term frequency saturation and length normalisation (the usual values).
const K1: f64 = 1.2;
const B: f64 = 0.75;

/// Why a query was refused.
#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("the query is longer than {max} bytes; search for a few words", max = limits::SEARCH_QUERY_BYTES_MAX)]
    QueryTooLong,
    #[error("the query has more than {max} different words; search for fewer", max = limits::SEARCH_QUERY_TERMS_MAX)]
    TooManyTerms,
    #[error(transparent)]
    Db(#[from] zodb::Error),
}

/// What state the index is in, for the reader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IndexState {
    /// The site has no index yet (made before search; `bbru reindex` makes it).
    Missing,
    /// Items are missing from it, or its terms were made by other rules: results may
    /// lack some items until `bbru reindex` has run.
    Incomplete,
    Ready,
}

/// One result.
#[derive(Debug, Clone)]
pub struct Hit {
    /// URL path of the item.
    pub url: String,
    pub content: Content,
    pub score: f64,
    /// HTML: the text around the words found, escaped, the words in `<mark>`.
    pub snippet: String,
}

/// The answer to a query: the requested slice of the results.
#[derive(Debug, Clone)]
pub struct Results {
    pub hits: Vec<Hit>,
    /// Results the reader may view (at most [`limits::SEARCH_RESULTS_MAX`]).
    pub total: usize,
    /// A bound was reached: there may be further results.
    pub incomplete: bool,
    pub index: IndexState,
}

/// Whether `principal` may see the item at the end of `path` (the site root first) among
/// search results.  Results also require it of every folder above (each is checked when
/// the path is walked), so an item inside a hidden folder never shows.  The one place to
/// add further conditions of visibility; private items are hidden here as in listings.
pub fn may_view(principal: &Principal, path: &[Content]) -> bool {
    // The one rule every listing follows: View here, and the right to edit every
    // private item along the path.
    let levels: Vec<security::Level<'_>> = path
        .iter()
        .map(|c| {
            (
                &c.meta().grants,
                crate::model::publication::is_private(c.meta()),
            )
        })
        .collect();
    security::visible(principal, &levels)
}

/// The query's terms: analysed, each once, in order.
pub fn query_terms(analyzer: &Analyzer, q: &str) -> Result<Vec<String>, SearchError> {
    if q.len() > limits::SEARCH_QUERY_BYTES_MAX {
        return Err(SearchError::QueryTooLong);
    }
    let mut terms: Vec<String> = Vec::new();
    for term in analyzer.terms(q) {
        if !terms.contains(&term) {
            terms.push(term);
        }
    }
    if terms.len() > limits::SEARCH_QUERY_TERMS_MAX {
        return Err(SearchError::TooManyTerms);
    }
    Ok(terms)
}

/// Answers `q` for `principal`: results `start..start + size` of those it may view.
pub fn search(
    tx: &Transaction<'_>,
    principal: &Principal,
    q: &str,
    start: usize,
    size: usize,
) -> Result<Results, SearchError> {
    let analyzer = Analyzer::default();
    let terms = query_terms(&analyzer, q)?;
    let mut results = Results {
        hits: Vec::new(),
        total: 0,
        incomplete: false,
        index: IndexState::Missing,
    };
    let Some(site) = Site::find(tx)? else {
        return Ok(results);
    };
    let site = tx.get(site)?;
    let Some(ix) = site.search else {
        return Ok(results);
    };
    let ix = tx.get(ix)?;
    results.index = if ix.complete && ix.analyzer == ANALYZER_VERSION {
        IndexState::Ready
    } else {
        IndexState::Incomplete
    };
    if terms.is_empty() {
        return Ok(results);
    }
    let (ranked, truncated) = rank(tx, &ix, &terms)?;
    results.incomplete = truncated;
    let mut places = Places::new(tx, &ix, principal, index::docid(site.content.oid()));
    let mut visible = Vec::new();
    for (checked, (docid, score)) in ranked.iter().enumerate() {
        if visible.len() == limits::SEARCH_RESULTS_MAX
            || checked == limits::SEARCH_VISIBILITY_CHECKS_MAX
        {
            results.incomplete = true;
            break;
        }
        if let Some(place) = places.place(*docid, 0)?
            && place.visible
        {
            visible.push((place, *score));
        }
    }
    results.total = visible.len();
    for (place, score) in visible.into_iter().skip(start).take(size) {
        let content = place.path.last().cloned().expect("a place has its item");
        results.hits.push(Hit {
            url: url_of(place.names.iter().map(String::as_str)),
            snippet: snippet(&analyzer, &content, &terms),
            content,
            score,
        });
    }
    Ok(results)
}

/// The items holding every term, best first, and whether the postings bound cut the
/// reading short.
fn rank(
    tx: &Transaction<'_>,
    ix: &Index,
    terms: &[String],
) -> Result<(Vec<(u64, f64)>, bool), SearchError> {
    let (count, total_len) = index::totals(tx, ix)?;
    let count = count.max(1) as f64;
    let avg_len = (total_len.max(1) as f64 / count).max(1.0);
    let mut budget = limits::SEARCH_POSTINGS_SCANNED_MAX;
    let mut truncated = false;
    let mut lists: Vec<Vec<(u64, u32)>> = Vec::with_capacity(terms.len());
    for term in terms {
        let mut list = Vec::new();
        let range = (term.clone(), 0)..=(term.clone(), u64::MAX);
        for item in ix.postings.range(tx, range)? {
            if budget == 0 {
                truncated = true;
                break;
            }
            budget -= 1;
            let ((_, docid), posting) = item?;
            list.push((docid, posting));
        }
        if list.is_empty() {
            return Ok((Vec::new(), truncated));
        }
        lists.push(list);
    }
    lists.sort_by_key(Vec::len);
    let score = |df: usize, posting: u32| {
        let df = df as f64;
        let idf = (1.0 + (count - df + 0.5) / (df + 0.5)).ln();
        let (tf, len) = index::unpack(posting);
        idf * tf * (K1 + 1.0) / (tf + K1 * (1.0 - B + B * len / avg_len))
    };
    let mut lists = lists.into_iter();
    let first = lists.next().unwrap_or_default();
    let df = first.len();
    let mut acc: Vec<(u64, f64)> = first.iter().map(|&(d, p)| (d, score(df, p))).collect();
    for list in lists {
        let df = list.len();
        let mut j = 0;
        acc.retain_mut(|(docid, s)| {
            // Both sorted by docid: gallop through the longer list.
            j += list[j..].partition_point(|(d, _)| d < docid);
            match list.get(j) {
                Some(&(d, p)) if d == *docid => {
                    *s += score(df, p);
                    true
                }
                _ => false,
            }
        });
    }
    let keep = limits::SEARCH_VISIBILITY_CHECKS_MAX;
    let best_first = |a: &(u64, f64), b: &(u64, f64)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
    if acc.len() > keep {
        acc.select_nth_unstable_by(keep, best_first);
        acc.truncate(keep + 1);
    }
    acc.sort_unstable_by(best_first);
    Ok((acc, truncated))
}

/// Where an item is, and whether the reader may see it there.
#[derive(Debug)]
struct Place {
    names: Vec<String>,
    path: Vec<Content>,
    visible: bool,
}

/// Places of items found from their index entries, each folder's once.
pub(crate) struct Places<'a, 't, 'c> {
    tx: &'a Transaction<'c>,
    ix: &'t Index,
    principal: &'a Principal,
    root: u64,
    memo: HashMap<u64, Option<Rc<Place>>>,
}

/// Deepest folder nesting followed (a loop of stale entries ends here).
const DEPTH_MAX: usize = 256;

impl<'a, 't, 'c> Places<'a, 't, 'c> {
    /// Places in the index `ix` of the site whose root folder's docid is `root`, as
    /// `principal` may see them.
    pub(crate) fn new(
        tx: &'a Transaction<'c>,
        ix: &'t Index,
        principal: &'a Principal,
        root: u64,
    ) -> Self {
        Places {
            tx,
            ix,
            principal,
            root,
            memo: HashMap::new(),
        }
    }

    /// Whether the entry of `docid` leads, parent by parent, to the site root, each step
    /// an item of its folder under the name the entry holds.
    pub(crate) fn reachable(&mut self, docid: u64) -> zodb::Result<bool> {
        Ok(self.place(docid, 0)?.is_some())
    }

    /// The place of `docid`: its entry's parent's place and name, checked against that
    /// folder's items (a stale entry, an item no longer there, gives `None`).
    fn place(&mut self, docid: u64, depth: usize) -> zodb::Result<Option<Rc<Place>>> {
        if let Some(known) = self.memo.get(&docid) {
            return Ok(known.clone());
        }
        if depth > DEPTH_MAX {
            return Ok(None);
        }
        let found = self.find(docid, depth)?.map(Rc::new);
        self.memo.insert(docid, found.clone());
        Ok(found)
    }

    fn find(&mut self, docid: u64, depth: usize) -> zodb::Result<Option<Place>> {
        let tx = self.tx;
        let Some((parent, name, _)) = self.ix.docs.get(tx, &docid)? else {
            return Ok(None);
        };
        if parent == 0 {
            if docid != self.root {
                return Ok(None);
            }
            let root = ContentRef::Folder(zodb::PRef::from_oid(index::oid_of(docid))).load(tx)?;
            let path = vec![root];
            let visible = may_view(self.principal, &path);
            return Ok(Some(Place {
                names: Vec::new(),
                path,
                visible,
            }));
        }
        let Some(above) = self.place(parent, depth + 1)? else {
            return Ok(None);
        };
        let Some(Content::Folder(_, folder)) = above.path.last() else {
            return Ok(None);
        };
        let Some(any) = folder.items.get(tx, &name)? else {
            return Ok(None);
        };
        if index::docid(any.oid()) != docid {
            return Ok(None);
        }
        let Some(item) = ContentRef::resolve(tx, &any)? else {
            return Ok(None);
        };
        let mut path = above.path.clone();
        path.push(item.load(tx)?);
        let mut names = above.names.clone();
        names.push(name);
        let visible = above.visible && may_view(self.principal, &path);
        Ok(Some(Place {
            names,
            path,
            visible,
        }))
    }
}

/// HTML of the text of `content` around the first word found, words found marked.
pub fn snippet(analyzer: &Analyzer, content: &Content, terms: &[String]) -> String {
    let fields = text::fields(content);
    let order = [
        Field::Body,
        Field::Description,
        Field::Filename,
        Field::Title,
    ];
    let found = order.iter().find_map(|want| {
        let (_, text) = fields.iter().find(|(f, _)| f == want)?;
        let word = analyzer.words(text).find(|w| terms.contains(&w.term))?;
        Some((text.as_str(), word.start))
    });
    let (text, at) = match found {
        Some(found) => found,
        None => match fields
            .iter()
            .find(|(f, _)| matches!(f, Field::Description | Field::Body))
        {
            Some((_, text)) => (text.as_str(), 0),
            None => return String::new(),
        },
    };
    // A window of SEARCH_SNIPPET_CHARS characters, starting a little before the word.
    let lead = limits::SEARCH_SNIPPET_CHARS / 4;
    let before: Vec<(usize, char)> = text[..at].char_indices().collect();
    let mut from = before.len().checked_sub(lead).map_or(0, |i| before[i].0);
    // Start at a word's beginning.
    if from > 0
        && let Some(space) = text[from..at].find(char::is_whitespace)
    {
        from += space + 1;
    }
    let to = text[from..]
        .char_indices()
        .nth(limits::SEARCH_SNIPPET_CHARS)
        .map_or(text.len(), |(i, _)| from + i);
    let window = &text[from..to];
    let mut html = String::with_capacity(window.len() + 64);
    if from > 0 {
        html.push_str("… ");
    }
    let mut last = 0;
    for word in analyzer.words(window) {
        if terms.contains(&word.term) {
            escape_into(&mut html, squash(&window[last..word.start]).as_str());
            html.push_str("<mark>");
            escape_into(&mut html, &window[word.start..word.end]);
            html.push_str("</mark>");
            last = word.end;
        }
    }
    escape_into(&mut html, squash(&window[last..]).as_str());
    if to < text.len() {
        html.push_str(" …");
    }
    html
}

/// Runs of white space (line breaks of the text) as one space.
fn squash(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut space = false;
    for c in text.chars() {
        if c.is_whitespace() {
            if !space {
                out.push(' ');
            }
            space = true;
        } else {
            out.push(c);
            space = false;
        }
    }
    out
}

/// `text` escaped for HTML text and attribute values.
fn escape_into(html: &mut String, text: &str) {
    for c in text.chars() {
        match c {
            '&' => html.push_str("&amp;"),
            '<' => html.push_str("&lt;"),
            '>' => html.push_str("&gt;"),
            '"' => html.push_str("&quot;"),
            '\'' => html.push_str("&#39;"),
            c => html.push(c),
        }
    }
}
