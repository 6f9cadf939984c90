//! What of an item is searched: its title, description, page text (the Markdown source
//! as plain text: no markup, no raw HTML) and file name, each with a weight, so a word in
//! a title counts more than one in a body.

use crate::model::Content;

/// A field of an item's text and how much a word in it counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Field {
    Title,
    Description,
    Body,
    Filename,
}

impl Field {
    /// Weights of a word, per occurrence.  A title names what the item is about; a file
    /// name often repeats it; a description summarises; a body's words are many.
    pub fn weight(self) -> u32 {
        match self {
            Field::Title => 4,
            Field::Filename => 3,
            Field::Description => 2,
            Field::Body => 1,
        }
    }
}

/// The searched text of `content`, field by field (empty fields left out).
pub fn fields(content: &Content) -> Vec<(Field, String)> {
    let meta = content.meta();
    let mut out = vec![
        (Field::Title, meta.title.clone()),
        (Field::Description, meta.description.clone()),
    ];
    match content {
        Content::Page(_, p) => out.push((Field::Body, markdown_text(&p.body))),
        Content::File(_, f) => out.push((Field::Filename, f.filename.clone())),
        Content::Image(_, i) => out.push((Field::Filename, i.filename.clone())),
        Content::Folder(..) => {}
    }
    out.retain(|(_, text)| !text.trim().is_empty());
    out
}

/// The text a reader sees of a Markdown source: text and code, a space between inline
/// pieces and a line break between blocks, without markup, link targets or raw HTML.
pub fn markdown_text(source: &str) -> String {
    use pulldown_cmark::{Event, Parser, TagEnd};
    let mut text = String::with_capacity(source.len());
    // Inside a raw `<script>` or `<style>`: text the sanitiser drops from the page.
    let mut hidden = false;
    for event in Parser::new_ext(source, pulldown_cmark::Options::ENABLE_TABLES) {
        match event {
            Event::Html(h) | Event::InlineHtml(h) => {
                let h = h.to_ascii_lowercase();
                if h.contains("<script") || h.contains("<style") {
                    hidden = true;
                }
                if h.contains("</script") || h.contains("</style") {
                    hidden = false;
                }
            }
            Event::Text(_) | Event::Code(_) if hidden => {}
            Event::Text(t) | Event::Code(t) => text.push_str(&t),
            Event::SoftBreak | Event::HardBreak => text.push(' '),
            Event::End(
                TagEnd::Paragraph
                | TagEnd::Heading(_)
                | TagEnd::Item
                | TagEnd::CodeBlock
                | TagEnd::TableCell
                | TagEnd::BlockQuote(_),
            ) => text.push('\n'),
            _ => {}
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markdown_as_text() {
        let text = markdown_text(
            "# Установка\n\nSee [the *guide*](http://x/y) and `cargo`.<script>x</script> <b>bold</b>\n\n- one\n- two",
        );
        assert_eq!(text, "Установка\nSee the guide and cargo. bold\none\ntwo\n");
    }
}
