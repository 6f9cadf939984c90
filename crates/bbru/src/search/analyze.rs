//! Text analysis: the same steps turn a document's text into index terms and a query into
//! the terms it looks for, so "установки" meets "установка" and "installing" meets
//! "install".
//!
//! 1. Words by Unicode word boundaries (UAX #29, `unicode-segmentation`): runs of letters
//!    and digits, apostrophes and dots inside words kept ("don't", "3.14"), punctuation
//!    and spaces dropped.
//! 2. Lower case; `ё` as `е` (Russian writes either); stress marks (U+0300, U+0301)
//!    dropped, as dictionaries and teaching texts print them.
//! 3. Snowball stemming chosen per word by its script: Cyrillic words by the Russian
//!    stemmer, Latin ones by the English stemmer, others (digits, other scripts) kept
//!    as they are.  Running both stemmers on every word would let the English rules
//!    clip Russian words written in Latin transliteration and cost twice the work; the
//!    script says which language's suffixes a word can carry, and a site's text mixes
//!    the two languages word by word (product names in Latin inside Russian sentences).
//!
//! Words longer than [`limits::SEARCH_TERM_CHARS_MAX`] characters (hashes, base64, long
//! URLs) are no terms.

use rust_stemmers::{Algorithm, Stemmer};
use unicode_segmentation::UnicodeSegmentation;

use crate::limits;

/// The version of these rules.  An index made with other rules must be rebuilt
/// (`bbru reindex`), since old terms would not match the new query terms.
pub const ANALYZER_VERSION: u32 = 1;

/// A word of a text: where it is (byte offsets) and its term.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Word {
    pub start: usize,
    pub end: usize,
    pub term: String,
}

/// Which stemmer a word takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Script {
    Cyrillic,
    Latin,
    Other,
}

fn script_of(word: &str) -> Script {
    for c in word.chars() {
        if !c.is_alphabetic() {
            continue;
        }
        return match c {
            '\u{0400}'..='\u{052f}' => Script::Cyrillic,
            'a'..='z' | 'A'..='Z' | '\u{00c0}'..='\u{024f}' => Script::Latin,
            _ => Script::Other,
        };
    }
    Script::Other
}

/// The analyzer: the two stemmers (made once per analysis, they are tables).
pub struct Analyzer {
    russian: Stemmer,
    english: Stemmer,
}

impl std::fmt::Debug for Analyzer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Analyzer")
    }
}

impl Default for Analyzer {
    fn default() -> Self {
        Analyzer {
            russian: Stemmer::create(Algorithm::Russian),
            english: Stemmer::create(Algorithm::English),
        }
    }
}

impl Analyzer {
    /// The term of one word, or `None` for a word that is no term (too long, no letter
    /// or digit).
    pub fn term(&self, word: &str) -> Option<String> {
        if !word.chars().any(char::is_alphanumeric) {
            return None;
        }
        let mut folded = String::with_capacity(word.len());
        for c in word.chars() {
            match c {
                '\u{0300}' | '\u{0301}' => {}
                'ё' | 'Ё' => folded.push('е'),
                c => folded.extend(c.to_lowercase()),
            }
        }
        if folded.chars().count() > limits::SEARCH_TERM_CHARS_MAX {
            return None;
        }
        let stemmed = match script_of(&folded) {
            Script::Cyrillic => self.russian.stem(&folded).into_owned(),
            Script::Latin => self.english.stem(&folded).into_owned(),
            Script::Other => folded,
        };
        (!stemmed.is_empty()).then_some(stemmed)
    }

    /// The words of `text` that are terms, in order.
    pub fn words<'a>(&'a self, text: &'a str) -> impl Iterator<Item = Word> + 'a {
        text.split_word_bound_indices().filter_map(|(start, w)| {
            self.term(w).map(|term| Word {
                start,
                end: start + w.len(),
                term,
            })
        })
    }

    /// The terms of `text`, in order, repeated as often as they occur.
    pub fn terms<'a>(&'a self, text: &'a str) -> impl Iterator<Item = String> + 'a {
        self.words(text).map(|w| w.term)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn terms(text: &str) -> Vec<String> {
        Analyzer::default().terms(text).collect()
    }

    #[test]
    fn inflections_meet() {
        let a = Analyzer::default();
        assert_eq!(a.term("установки"), a.term("установка"));
        assert_eq!(a.term("Установку"), a.term("установка"));
        assert_eq!(a.term("installing"), a.term("install"));
        assert_eq!(a.term("Installed"), a.term("install"));
        assert_eq!(a.term("ёлки"), a.term("елки"));
        assert_eq!(a.term("заме\u{301}тка"), a.term("заметка"));
    }

    #[test]
    fn words_by_unicode_boundaries() {
        assert_eq!(
            terms("Установка bbru-сервера: 3.14, don't!"),
            vec!["установк", "bbru", "сервер", "3.14", "don't"]
        );
        assert_eq!(terms("— … ?!"), Vec::<String>::new());
        assert_eq!(terms(&"x".repeat(200)), Vec::<String>::new());
        assert_eq!(terms("日本"), vec!["日", "本"]);
        let a = Analyzer::default();
        let w: Vec<Word> = a.words("ab Где").collect();
        assert_eq!((w[1].start, w[1].end), (3, 9));
    }
}
