//! Publication states: whether an item is private or published ([`State`], kept in its
//! [`Meta`]), and who may see an item given where it is.
//!
//! The rule itself is [`crate::security::visible`]: `View` on the item, and for each
//! private item on the way down (the item included), `Edit` there.  This module reads
//! the states and grants along a path from the database, for callers that have only a
//! path (search results, recent changes); the traversal of a request has them already
//! (`web::Ctx::may_see`).
//!
//! States, as a Plone user expects them: an editor can prepare an item in private and
//! publish it when ready; the add form offers Private first.  Content stored before
//! states existed, items added by a request that names no state (the JSON API, scripts),
//! and the site root are published.

use zodb::{PRef, Transaction};

use super::content::{Content, ContentRef, Meta, State};
use super::site::Site;
use crate::security::{self, Grants, Permission, Principal};

/// Whether the object of `meta` is private.
pub fn is_private(meta: &Meta) -> bool {
    meta.state == State::Private
}

/// The levels [`security::visible`] reads, from loaded objects (root first).
pub fn levels<'a>(path: impl IntoIterator<Item = &'a Meta>) -> Vec<(&'a Grants, bool)> {
    path.into_iter()
        .map(|m| (&m.grants, is_private(m)))
        .collect()
}

/// Whether `principal` sees an item whose grants path (root first, its own last) is
/// `grants` and whose metadata is `meta`, its containers known to be seen: `View`, and
/// `Edit` if it is private.  For walks that check each level on the way down (a copy
/// must not carry what its maker may not see).
pub fn seen_at(principal: &Principal, grants: &[&Grants], meta: &Meta) -> bool {
    security::allowed(principal, grants, Permission::View)
        && (!is_private(meta) || security::allowed(principal, grants, Permission::Edit))
}

/// The objects along the path of item names `names` from the site's root folder (root
/// first, the item last), or `None` when some name leads nowhere.
pub fn load_path(
    tx: &Transaction<'_>,
    site: PRef<Site>,
    names: &[&str],
) -> zodb::Result<Option<Vec<Content>>> {
    let root = tx.get(site)?.content;
    let mut path = vec![ContentRef::Folder(root).load(tx)?];
    for name in names {
        let Some(Content::Folder(_, folder)) = path.last() else {
            return Ok(None);
        };
        let Some(any) = folder.items.get(tx, &(*name).to_owned())? else {
            return Ok(None);
        };
        let Some(r) = ContentRef::resolve(tx, &any)? else {
            return Ok(None);
        };
        path.push(r.load(tx)?);
    }
    Ok(Some(path))
}

/// Whether `principal` may see the item at the URL path `path` ("/docs/install"; "/"
/// for the root): the one check search results and other lists built from paths use.
/// A path that names nothing is not visible.
pub fn may_see(
    tx: &Transaction<'_>,
    site: PRef<Site>,
    principal: &Principal,
    path: &str,
) -> zodb::Result<bool> {
    Ok(visible_item(tx, site, principal, path)?.is_some())
}

/// The item at the URL path `path` if `principal` may see it (see [`may_see`]).
pub fn visible_item(
    tx: &Transaction<'_>,
    site: PRef<Site>,
    principal: &Principal,
    path: &str,
) -> zodb::Result<Option<Content>> {
    let decoded: Vec<String> = path
        .split('/')
        .filter(|s| !s.is_empty())
        .map(|s| {
            percent_encoding::percent_decode_str(s)
                .decode_utf8_lossy()
                .into_owned()
        })
        .collect();
    let names: Vec<&str> = decoded.iter().map(String::as_str).collect();
    let Some(mut objects) = load_path(tx, site, &names)? else {
        return Ok(None);
    };
    if !security::visible(principal, &levels(objects.iter().map(Content::meta))) {
        return Ok(None);
    }
    Ok(objects.pop())
}
