//! The languages of the user interface: English and Russian, through Project Fluent
//! (`fluent-bundle`).  The catalogs are `locales/<lang>/*.ftl`, embedded in the binary
//! and parsed once; [`Lang::text`] and the [`tr!`](crate::tr) macro look messages up.
//!
//! Which language a request gets ([`choose`]): the `bbru_lang` cookie the header's switch
//! sets, else the best supported language of `Accept-Language` (by q-value), else the
//! site default (`[site] language` of `etc/site.toml`, `ru` unless set).  Content is
//! shown as written; only the interface around it is translated.  Dates, numbers and
//! sizes are formatted for the language here too ([`Lang::date`], [`Lang::number`],
//! [`Lang::size`]).
//!
//! Most messages are text with variables at most; those are compiled once into pieces
//! (`Compiled`) and filled in without Fluent's resolver, which a page would otherwise
//! run for each of its few dozen strings on every request.  The others (plural
//! selectors, references to other messages) go through Fluent.  A test checks that
//! both ways give the same text for every message of both catalogs.
//!
//! A message missing from a catalog, or one that fails to format, is a bug: debug and
//! test builds panic on it (so every test that renders a page checks its keys), release
//! builds log it and show the key.  `tests` below checks that both catalogs hold the same
//! keys and that every key written in the sources exists.

use std::collections::HashMap;
use std::sync::OnceLock;

use axum::http::HeaderMap;
use fluent_bundle::concurrent::FluentBundle;
use fluent_bundle::{FluentArgs, FluentResource, FluentValue};
use fluent_syntax::ast;
use serde::{Deserialize, Serialize};

/// The cookie the language switch sets.
pub const LANG_COOKIE: &str = "bbru_lang";

/// A language of the user interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    En,
    /// The site's own language, and the default of `[site] language`.
    #[default]
    Ru,
}

/// The catalog files of each language (the same names for both).
const CATALOGS: [(Lang, &[&str]); 2] = [
    (
        Lang::En,
        &[
            include_str!("../locales/en/layout.ftl"),
            include_str!("../locales/en/views.ftl"),
            include_str!("../locales/en/errors.ftl"),
        ],
    ),
    (
        Lang::Ru,
        &[
            include_str!("../locales/ru/layout.ftl"),
            include_str!("../locales/ru/views.ftl"),
            include_str!("../locales/ru/errors.ftl"),
        ],
    ),
];

type Bundle = FluentBundle<FluentResource>;

fn bundles() -> &'static [Bundle; 2] {
    static BUNDLES: OnceLock<[Bundle; 2]> = OnceLock::new();
    BUNDLES.get_or_init(|| Lang::ALL.map(bundle))
}

fn bundle(lang: Lang) -> Bundle {
    let id = lang.code().parse().expect("a valid language identifier");
    let mut bundle = FluentBundle::new_concurrent(vec![id]);
    // The text goes into HTML through maud, never into a bidirectional context where
    // Unicode isolation marks would help; they would only show up in titles and tests.
    bundle.set_use_isolating(false);
    bundle.set_formatter(Some(match lang {
        Lang::En => format_en,
        Lang::Ru => format_ru,
    }));
    for (l, files) in CATALOGS {
        if l != lang {
            continue;
        }
        for source in files {
            let resource = FluentResource::try_new((*source).to_owned())
                .unwrap_or_else(|(_, errors)| panic!("{lang:?} catalog: {errors:?}"));
            if let Err(errors) = bundle.add_resource(resource) {
                panic!("{lang:?} catalog: {errors:?}");
            }
        }
    }
    bundle
}

/// A message made of text and variable references only, in order.
type Compiled = Vec<Piece>;

enum Piece {
    Text(&'static str),
    Var(&'static str),
}

/// The compiled messages of each language, by id (see the module doc).
fn compiled(lang: Lang) -> &'static HashMap<String, Compiled> {
    static COMPILED: OnceLock<[HashMap<String, Compiled>; 2]> = OnceLock::new();
    let all = COMPILED.get_or_init(|| Lang::ALL.map(compile));
    match lang {
        Lang::En => &all[0],
        Lang::Ru => &all[1],
    }
}

fn compile(lang: Lang) -> HashMap<String, Compiled> {
    let bundle = lang.bundle();
    let mut out = HashMap::new();
    for (l, files) in CATALOGS {
        if l != lang {
            continue;
        }
        for source in files {
            // Parsed again only for the ids; the patterns are the bundle's own.
            let Ok(resource) = FluentResource::try_new((*source).to_owned()) else {
                continue;
            };
            for entry in resource.entries() {
                let ast::Entry::Message(message) = entry else {
                    continue;
                };
                let id = message.id.name;
                if let Some(pattern) = bundle.get_message(id).and_then(|m| m.value())
                    && let Some(pieces) = compile_pattern(pattern)
                {
                    out.insert(id.to_owned(), pieces);
                }
            }
        }
    }
    out
}

fn compile_pattern(pattern: &'static ast::Pattern<&'static str>) -> Option<Compiled> {
    pattern
        .elements
        .iter()
        .map(|element| match element {
            ast::PatternElement::TextElement { value } => Some(Piece::Text(value)),
            ast::PatternElement::Placeable {
                expression:
                    ast::Expression::Inline(ast::InlineExpression::VariableReference { id }),
            } => Some(Piece::Var(id.name)),
            ast::PatternElement::Placeable { .. } => None,
        })
        .collect()
}

/// Fluent's number formatting for English: grouped thousands.
fn format_en<M>(value: &FluentValue<'_>, _: &M) -> Option<String> {
    number_value(value).map(|n| Lang::En.decimal(n))
}

fn format_ru<M>(value: &FluentValue<'_>, _: &M) -> Option<String> {
    number_value(value).map(|n| Lang::Ru.decimal(n))
}

fn number_value(value: &FluentValue<'_>) -> Option<f64> {
    match value {
        FluentValue::Number(n) => Some(n.value),
        _ => None,
    }
}

/// An argument of a message: text or a number (numbers choose plural forms and are
/// formatted for the language).
pub type Arg<'a> = FluentValue<'a>;

impl Lang {
    pub const ALL: [Lang; 2] = [Lang::En, Lang::Ru];

    /// The language tag, as in `<html lang>` and the cookie.
    pub fn code(self) -> &'static str {
        match self {
            Lang::En => "en",
            Lang::Ru => "ru",
        }
    }

    /// The language's name in itself, for the switch.
    pub fn native_name(self) -> &'static str {
        match self {
            Lang::En => "English",
            Lang::Ru => "Русский",
        }
    }

    /// The language of a tag (`ru`, `ru-RU`, `EN-gb`), if supported.
    pub fn parse(tag: &str) -> Option<Lang> {
        let primary = tag.trim().split(['-', '_']).next().unwrap_or("");
        Lang::ALL
            .into_iter()
            .find(|l| l.code().eq_ignore_ascii_case(primary))
    }

    fn bundle(self) -> &'static Bundle {
        match self {
            Lang::En => &bundles()[0],
            Lang::Ru => &bundles()[1],
        }
    }

    /// The message `key`.
    pub fn text(self, key: &str) -> String {
        self.format(key, &[])
    }

    /// The message `key` with its arguments.
    pub fn format(self, key: &str, args: &[(&str, Arg<'_>)]) -> String {
        if let Some(text) = compiled(self)
            .get(key)
            .and_then(|pieces| self.fill(pieces, args))
        {
            return text;
        }
        self.format_with_fluent(key, args)
    }

    /// A compiled message with its arguments, as Fluent writes them (strings as they
    /// are, numbers through the language's formatter); `None` for an argument missing
    /// or of another kind, which Fluent then reports.
    fn fill(self, pieces: &Compiled, args: &[(&str, Arg<'_>)]) -> Option<String> {
        let mut out = String::new();
        for piece in pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Var(name) => match &args.iter().find(|(n, _)| n == name)?.1 {
                    FluentValue::String(s) => out.push_str(s),
                    FluentValue::Number(n) => out.push_str(&self.decimal(n.value)),
                    _ => return None,
                },
            }
        }
        Some(out)
    }

    /// The message `key` through Fluent's resolver.
    fn format_with_fluent(self, key: &str, args: &[(&str, Arg<'_>)]) -> String {
        let bundle = self.bundle();
        let Some(pattern) = bundle.get_message(key).and_then(|m| m.value()) else {
            return missing(self, key, "no such message");
        };
        let mut fluent_args = FluentArgs::new();
        for (name, value) in args {
            fluent_args.set(*name, value.clone());
        }
        let mut errors = Vec::new();
        let text = bundle.format_pattern(pattern, Some(&fluent_args), &mut errors);
        if !errors.is_empty() {
            return missing(self, key, &format!("{errors:?}"));
        }
        text.into_owned()
    }

    /// A number with the language's decimal separator and digit grouping, at most one
    /// decimal ("1,234.5"; "1 234,5").
    pub fn decimal(self, n: f64) -> String {
        let negative = n < 0.0;
        let rounded = (n.abs() * 10.0).round() / 10.0;
        let whole = rounded.trunc() as u64;
        let tenth = ((rounded - rounded.trunc()) * 10.0).round() as u64;
        let mut out = if negative {
            "-".to_owned()
        } else {
            String::new()
        };
        out.push_str(&self.number(whole));
        if tenth > 0 {
            out.push(if self == Lang::Ru { ',' } else { '.' });
            out.push_str(&tenth.to_string());
        }
        out
    }

    /// A whole number with the language's digit grouping ("12,345"; "12 345" with a
    /// no-break space, and none below 10 000, as Russian typography has it).
    pub fn number(self, n: u64) -> String {
        let digits = n.to_string();
        let (separator, from) = match self {
            Lang::En => (",", 1_000),
            Lang::Ru => ("\u{a0}", 10_000),
        };
        if n < from {
            return digits;
        }
        let mut out = String::new();
        for (i, c) in digits.chars().enumerate() {
            if i > 0 && (digits.len() - i).is_multiple_of(3) {
                out.push_str(separator);
            }
            out.push(c);
        }
        out
    }

    /// A size in bytes, for people: "5 bytes", "1.5 KB"; "5 байт", "1,5 КБ".
    pub fn size(self, bytes: u64) -> String {
        const UNITS: [&str; 3] = ["size-kb", "size-mb", "size-gb"];
        if bytes < 1024 {
            return self.format("size-bytes", &[("count", bytes.into())]);
        }
        let mut value = bytes as f64 / 1024.0;
        let mut unit = 0;
        while value >= 1024.0 && unit + 1 < UNITS.len() {
            value /= 1024.0;
            unit += 1;
        }
        let rounded = (value * 10.0).round() / 10.0;
        self.format(UNITS[unit], &[("value", self.decimal(rounded).into())])
    }

    /// A moment (seconds since the epoch) in UTC: "5 December 2026, 19:57 UTC";
    /// "5 декабря 2026 г., 19:57 UTC" (the month in the genitive).
    pub fn date(self, seconds: f64) -> String {
        let Ok(t) = time::OffsetDateTime::from_unix_timestamp(seconds as i64) else {
            return String::new();
        };
        let month = self.text(&format!("month-{}", u8::from(t.month())));
        self.format(
            "date-time",
            &[
                ("day", t.day().to_string().into()),
                ("month", month.into()),
                ("year", t.year().to_string().into()),
                ("time", format!("{:02}:{:02}", t.hour(), t.minute()).into()),
            ],
        )
    }
}

/// What a missing message or a formatting error gives: a panic in debug and test
/// builds (so tests find it), the key in release builds (logged).
fn missing(lang: Lang, key: &str, why: &str) -> String {
    if cfg!(debug_assertions) {
        panic!("i18n: message {key:?} of {lang:?}: {why}");
    }
    tracing::error!(
        key,
        lang = lang.code(),
        why,
        "i18n: missing or broken message"
    );
    key.to_owned()
}

/// The language of a request: the switch's cookie, else `Accept-Language`, else the
/// site default.
pub fn choose(headers: &HeaderMap, default: Lang) -> Lang {
    if let Some(lang) = crate::web::cookie(headers, LANG_COOKIE).and_then(Lang::parse) {
        return lang;
    }
    headers
        .get_all(axum::http::header::ACCEPT_LANGUAGE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find_map(from_accept_language)
        .unwrap_or(default)
}

/// The supported language the client prefers most in an `Accept-Language` value (the
/// highest q-value; the first listed among equals), if any.
pub fn from_accept_language(value: &str) -> Option<Lang> {
    let mut best: Option<(f32, Lang)> = None;
    for item in value.split(',') {
        let mut parts = item.split(';');
        let tag = parts.next().unwrap_or("").trim();
        let q = parts
            .find_map(|p| p.trim().strip_prefix("q="))
            .map_or(Some(1.0), |q| q.trim().parse::<f32>().ok())
            .unwrap_or(0.0);
        let Some(lang) = Lang::parse(tag) else {
            continue;
        };
        if q > 0.0 && best.is_none_or(|(b, _)| q > b) {
            best = Some((q, lang));
        }
    }
    best.map(|(_, l)| l)
}

/// A message of the catalogs: `tr!(lang, "key")` or `tr!(lang, "key", name = value, ...)`.
/// Keys are literal strings, so the catalogs' test finds every one in the sources.
#[macro_export]
macro_rules! tr {
    ($lang:expr, $key:literal) => {
        $lang.text($key)
    };
    ($lang:expr, $key:literal, $($name:ident = $value:expr),+ $(,)?) => {
        $lang.format($key, &[$((stringify!($name), $crate::i18n::Arg::from($value))),+])
    };
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The message ids of a catalog file: lines `id = ...` starting with a letter
    /// (terms start with '-', comments with '#', continuations with spaces).
    fn ids(source: &str) -> BTreeSet<String> {
        source
            .lines()
            .filter(|l| l.starts_with(|c: char| c.is_ascii_alphabetic()))
            .filter_map(|l| l.split_once('=').map(|(id, _)| id.trim().to_owned()))
            .collect()
    }

    #[test]
    fn both_languages_have_the_same_keys() {
        let [(_, en), (_, ru)] = CATALOGS;
        assert_eq!(en.len(), ru.len());
        for (e, r) in en.iter().zip(ru.iter()) {
            let (e, r) = (ids(e), ids(r));
            let only_en: Vec<_> = e.difference(&r).collect();
            let only_ru: Vec<_> = r.difference(&e).collect();
            assert!(
                only_en.is_empty() && only_ru.is_empty(),
                "keys only in English: {only_en:?}; only in Russian: {only_ru:?}"
            );
        }
    }

    /// Every `tr!(lang, "key"` of the sources (and `text("key")`/`format("key"`) names
    /// a message both catalogs have.
    #[test]
    fn every_key_used_in_the_sources_exists() {
        let mut used = BTreeSet::new();
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut stack = vec![root];
        while let Some(dir) = stack.pop() {
            for entry in std::fs::read_dir(&dir).unwrap() {
                let path = entry.unwrap().path();
                if path.is_dir() {
                    stack.push(path);
                } else if path.extension().is_some_and(|e| e == "rs") && !path.ends_with("i18n.rs")
                {
                    let text = std::fs::read_to_string(&path).unwrap();
                    for (at, _) in text.match_indices("tr!(") {
                        // Not `include_str!(` and the like.
                        if text[..at]
                            .chars()
                            .next_back()
                            .is_some_and(|c| c.is_alphanumeric() || c == '_')
                        {
                            continue;
                        }
                        let rest = &text[at + 4..];
                        // The key is the first string literal of the call.
                        let Some(open) = rest.find('"') else { continue };
                        if rest[..open].contains(')') {
                            continue;
                        }
                        let rest = &rest[open + 1..];
                        let close = rest.find('"').unwrap();
                        used.insert(rest[..close].to_owned());
                    }
                }
            }
        }
        assert!(used.len() > 100, "found only {} keys", used.len());
        for lang in Lang::ALL {
            for key in &used {
                assert!(
                    lang.bundle().has_message(key),
                    "{key:?} is used in the sources but missing in {lang:?}"
                );
            }
        }
    }

    #[test]
    fn accept_language_by_q_value() {
        let check = |value, expected| assert_eq!(from_accept_language(value), expected, "{value}");
        check("ru-RU,ru;q=0.9,en;q=0.8", Some(Lang::Ru));
        check("en-US,en;q=0.9,ru;q=0.8", Some(Lang::En));
        check("de-DE,ru;q=0.5,en;q=0.7", Some(Lang::En));
        check("en;q=0.2, ru;q=0.3", Some(Lang::Ru));
        check("ru;q=0, en;q=0.1", Some(Lang::En));
        check("de, fr", None);
        check("", None);
        check("*", None);
    }

    #[test]
    fn numbers_sizes_and_dates_per_language() {
        assert_eq!(Lang::En.number(1_234_567), "1,234,567");
        assert_eq!(Lang::Ru.number(1_234_567), "1\u{a0}234\u{a0}567");
        assert_eq!(Lang::Ru.number(1234), "1234");
        assert_eq!(Lang::En.size(5), "5 bytes");
        assert_eq!(Lang::En.size(1), "1 byte");
        assert_eq!(Lang::Ru.size(5), "5 байт");
        assert_eq!(Lang::Ru.size(2), "2 байта");
        assert_eq!(Lang::Ru.size(21), "21 байт");
        assert_eq!(Lang::En.size(1536), "1.5 KB");
        assert_eq!(Lang::Ru.size(1536), "1,5 КБ");
        assert_eq!(Lang::Ru.size(3 * 1024 * 1024), "3 МБ");
        // 2026-12-05 19:57:59 UTC
        let t = 1_796_500_679.0;
        assert_eq!(Lang::En.date(t), "5 December 2026, 19:57 UTC");
        assert_eq!(Lang::Ru.date(t), "5 декабря 2026 г., 19:57 UTC");
    }

    #[test]
    fn plurals_follow_the_language() {
        let items = |lang: Lang, n: u64| tr!(lang, "count-items", count = n);
        assert_eq!(items(Lang::En, 1), "1 item");
        assert_eq!(items(Lang::En, 3), "3 items");
        assert_eq!(items(Lang::Ru, 1), "1 элемент");
        assert_eq!(items(Lang::Ru, 3), "3 элемента");
        assert_eq!(items(Lang::Ru, 5), "5 элементов");
        assert_eq!(items(Lang::Ru, 12_345), "12\u{a0}345 элементов");
    }

    #[test]
    #[should_panic(expected = "no such message")]
    fn a_missing_key_panics_in_tests() {
        Lang::Ru.text("no-such-key");
    }

    #[test]
    fn compiled_messages_read_as_fluent_writes_them() {
        for lang in Lang::ALL {
            let compiled = compiled(lang);
            assert!(
                compiled.len() > 100,
                "{lang:?}: only {} compiled",
                compiled.len()
            );
            for (key, pieces) in compiled {
                let vars: Vec<&str> = pieces
                    .iter()
                    .filter_map(|p| match p {
                        Piece::Var(v) => Some(*v),
                        Piece::Text(_) => None,
                    })
                    .collect();
                let texts: Vec<(&str, Arg<'_>)> = vars
                    .iter()
                    .map(|v| (*v, Arg::from(format!("<{v}>"))))
                    .collect();
                let numbers: Vec<(&str, Arg<'_>)> =
                    vars.iter().map(|v| (*v, Arg::from(12345.5))).collect();
                for args in [&texts, &numbers] {
                    assert_eq!(
                        lang.fill(pieces, args).as_deref(),
                        Some(lang.format_with_fluent(key, args).as_str()),
                        "{lang:?} {key}"
                    );
                }
            }
        }
        assert_eq!(tr!(Lang::Ru, "month-12"), "декабря");
        assert_eq!(Lang::En.date(1_796_500_000.0), "5 December 2026, 19:46 UTC");
    }
}
