//! The add and edit forms' fields and what they say when refused: each field with its
//! bound label, help and the error about it ([`FormState`]), and the model's refusals
//! ([`EditError`], [`BodyError`]) in the page's language, placed beside their field.

use maud::{Markup, html};

use crate::i18n::Lang;
use crate::limits;
use crate::model::Kind;
use crate::model::edit::EditError;
use crate::model::markup::BodyError;
use crate::tr;
use crate::web::render::{Field, kind_name};

/// The field an edit error is about, for the form shown again with it.
pub(super) fn error_field(e: &EditError) -> &'static str {
    match e {
        EditError::InvalidName(_) | EditError::NameTaken(_) => "id",
        EditError::TitleRequired | EditError::TitleTooLong => "title",
        EditError::Body(_) => "body",
        _ => "file",
    }
}

/// What an edit error says, in `lang`.
pub(super) fn edit_error_text(lang: Lang, e: &EditError) -> String {
    match e {
        EditError::InvalidName(n) => tr!(lang, "edit-error-invalid-name", name = format!("{n:?}")),
        EditError::NameTaken(n) => tr!(lang, "edit-error-name-taken", name = format!("{n:?}")),
        EditError::TitleRequired => tr!(lang, "edit-error-title-required"),
        EditError::TitleTooLong => tr!(lang, "edit-error-title-too-long"),
        EditError::UploadRequired(kind) => tr!(
            lang,
            "edit-error-upload-required",
            kind = Kind::parse(kind).map_or_else(|| (*kind).to_owned(), |k| kind_name(lang, k))
        ),
        EditError::NotAnImage => tr!(lang, "edit-error-not-an-image"),
        EditError::Body(b) => body_error_text(lang, b),
        EditError::InvalidContentType(t) => {
            tr!(lang, "edit-error-content-type", value = format!("{t:?}"))
        }
        EditError::InvalidFilename(n) => tr!(
            lang,
            "edit-error-filename",
            name = format!("{n:?}"),
            max = limits::FILENAME_CHARS_MAX
        ),
        // Failures of the request rather than of the form (see `form_error`).
        other => other.to_string(),
    }
}

/// Why a page body is refused, in `lang` (sizes as plain digits: they are limits the
/// author compares with what they wrote).
pub fn body_error_text(lang: Lang, e: &BodyError) -> String {
    match e {
        BodyError::TooLarge(n) => tr!(
            lang,
            "body-too-large",
            size = n.to_string(),
            max = limits::PAGE_BODY_BYTES_MAX.to_string()
        ),
        BodyError::TooDeep(n) => tr!(
            lang,
            "body-too-deep",
            depth = n.to_string(),
            max = limits::PAGE_HTML_DEPTH_MAX.to_string()
        ),
    }
}

/// A form's values and the error to show beside its field, when shown again.
#[derive(Default)]
pub(super) struct FormState<'a> {
    pub id: &'a str,
    pub title: &'a str,
    pub description: &'a str,
    pub body: &'a str,
    pub error: Option<(&'static str, String)>,
}

impl FormState<'_> {
    pub fn field<'f>(&self, id: &'f str, label: String, help: Option<String>) -> Field<'f> {
        Field {
            id,
            label,
            help,
            error: self
                .error
                .as_ref()
                .filter(|(f, _)| *f == id)
                .map(|(_, m)| m.clone()),
        }
    }
}

pub(super) fn kind_fields(lang: Lang, kind: Kind, state: &FormState<'_>) -> Markup {
    let title = state.field("title", tr!(lang, "field-title"), None);
    let description = state.field(
        "description",
        tr!(lang, "field-description"),
        Some(tr!(lang, "field-description-help")),
    );
    let body = state.field(
        "body",
        tr!(lang, "field-body"),
        Some(tr!(lang, "field-body-help")),
    );
    let file = state.field("file", tr!(lang, "field-file"), None);
    html! {
        (title.wrap(html! { input #title type="text" name="title" value=(state.title) required aria-describedby=[title.described_by()] aria-invalid=[title.error.as_ref().map(|_| "true")]; }))
        (description.wrap(html! { input #description type="text" name="description" value=(state.description) aria-describedby=[description.described_by()]; }))
        @if kind == Kind::Page {
            (body.wrap(html! { textarea #body name="body" rows="18" aria-describedby=[body.described_by()] aria-invalid=[body.error.as_ref().map(|_| "true")] { (state.body) } }))
        }
        @if matches!(kind, Kind::File | Kind::Image) {
            (file.wrap(html! { input #file type="file" name="file" aria-describedby=[file.described_by()] aria-invalid=[file.error.as_ref().map(|_| "true")]; }))
        }
    }
}

/// Whether an edit error is the user's to fix in the form (shown beside its field), not a
/// failure of the request (storage trouble, a file too large for the storage).
pub(super) fn form_error(e: &EditError) -> bool {
    !matches!(e, EditError::Db(_) | EditError::TooLargeInline { .. })
}
