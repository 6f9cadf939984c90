//! The section navigation of every page: the folder tree from the site root down to the
//! object addressed, each folder on the way with the items the principal may see (at
//! most [`limits::NAV_ITEMS_MAX`] each, in display order), loaded in the request's
//! transaction for HTML pages only.

use maud::{Markup, html};
use zodb::Transaction;

use super::publish::Step;
use super::{AppError, Ctx, url_of};
use crate::limits;
use crate::model::{Content, ContentRef, Kind};
use crate::security::{self, Principal};
use crate::tr;

/// An item listed in the navigation.
#[derive(Debug, Clone)]
pub struct NavItem {
    pub name: String,
    pub title: String,
    pub kind: Kind,
}

/// For each folder of the path (root first), the items shown, and whether there are more.
#[derive(Debug, Clone, Default)]
pub struct Sections {
    pub levels: Vec<(Vec<NavItem>, bool)>,
}

/// The items of every folder along `path` that `principal` may view.
pub fn load(
    tx: &Transaction<'_>,
    principal: &Principal,
    path: &[Step],
) -> Result<Sections, AppError> {
    let mut levels = Vec::new();
    let mut along: Vec<security::Level<'_>> = Vec::new();
    for step in path {
        let meta = step.content.meta();
        along.push((&meta.grants, crate::model::publication::is_private(meta)));
        let Content::Folder(_, folder) = &step.content else {
            break;
        };
        // The arranged order first, then the rest by name: never more names than shown.
        let mut names: Vec<String> = folder
            .order
            .iter()
            .take(limits::NAV_ITEMS_MAX + 1)
            .cloned()
            .collect();
        if names.len() <= limits::NAV_ITEMS_MAX {
            for item in folder.items.iter(tx)? {
                let (name, _) = item?;
                if !names.contains(&name) {
                    names.push(name);
                }
                if names.len() > limits::NAV_ITEMS_MAX {
                    break;
                }
            }
        }
        let more = names.len() > limits::NAV_ITEMS_MAX;
        let mut items = Vec::new();
        for name in names.into_iter().take(limits::NAV_ITEMS_MAX) {
            let Some(any) = folder.items.get(tx, &name)? else {
                continue;
            };
            let Some(r) = ContentRef::resolve(tx, &any)? else {
                continue;
            };
            let content = r.load(tx)?;
            let meta = content.meta();
            let mut here = along.clone();
            here.push((&meta.grants, crate::model::publication::is_private(meta)));
            // Private items too: only for those who may edit them.
            if security::visible(principal, &here) {
                items.push(NavItem {
                    name,
                    title: content.meta().title.clone(),
                    kind: content.kind(),
                });
            }
        }
        levels.push((items, more));
    }
    Ok(Sections { levels })
}

/// The navigation's markup (nothing when the root holds nothing visible).
pub fn sections(ctx: &Ctx<'_>) -> Markup {
    let Some(sections) = &ctx.sections else {
        return html! {};
    };
    if sections
        .levels
        .first()
        .is_none_or(|(items, _)| items.is_empty())
    {
        return html! {};
    }
    let lang = ctx.lang;
    html! {
        nav.sections aria-label=(tr!(lang, "sections")) {
            h2 { (tr!(lang, "sections")) }
            (level(ctx, sections, 0))
        }
    }
}

/// The list of level `depth`, the item on the path opened onto the next level.
fn level(ctx: &Ctx<'_>, sections: &Sections, depth: usize) -> Markup {
    let Some((items, more)) = sections.levels.get(depth) else {
        return html! {};
    };
    let on_path = ctx.path.get(depth + 1).map(|s| s.name.as_str());
    let base: Vec<&str> = ctx.path[1..=depth]
        .iter()
        .map(|s| s.name.as_str())
        .collect();
    let url = |name: &str| url_of(base.iter().copied().chain(std::iter::once(name)));
    let current = depth + 2 == ctx.path.len();
    html! {
        ul {
            @for item in items {
                @let here = on_path == Some(item.name.as_str());
                li.folder[item.kind == Kind::Folder] {
                    a href=(url(&item.name)) aria-current=[(here && current).then_some("page")] { (item.title) }
                    @if here { (level(ctx, sections, depth + 1)) }
                }
            }
            @if *more {
                li.more { a href=(url_of(base.iter().copied())) { (tr!(ctx.lang, "nav-more")) } }
            }
        }
    }
}
