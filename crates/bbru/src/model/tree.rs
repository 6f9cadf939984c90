//! Changing where items live: deep copies, removing, renaming and the free names pasted
//! items get.  The management views (`@@contents`) decide who may do what; these helpers
//! only keep a folder's items tree and its display order consistent.

use zodb::{AnyRef, PRef, Transaction};

use super::content::{ContentRef, File, Folder, Image, Items, Meta, Page};

/// A copy of `source` and, for a folder, of everything inside it (its own new items
/// trees, recursively), as new objects in `tx`: same titles, descriptions, bodies, data,
/// display order and local grants; `creator` as creator, `now` as creation and
/// modification time.  The copy is stored once something stored refers to it.
pub fn deep_copy(
    tx: &Transaction<'_>,
    source: ContentRef,
    creator: &str,
    now: f64,
) -> zodb::Result<ContentRef> {
    let fresh = |meta: &Meta| Meta {
        creator: creator.to_owned(),
        created: now,
        modified: now,
        ..meta.clone()
    };
    Ok(match source {
        ContentRef::Folder(r) => {
            let folder = tx.get(r)?;
            let children: Vec<(String, AnyRef)> =
                folder.items.iter(tx)?.collect::<Result<_, _>>()?;
            let items = tx.add(Items::new())?;
            for (name, any) in children {
                // Items only ever hold content; anything else (written by another program)
                // is left behind rather than shared between the two folders.
                let Some(child) = ContentRef::resolve(tx, &any)? else {
                    tracing::warn!(?any, %name, "not copying an item that is no bbru content");
                    continue;
                };
                let copy = deep_copy(tx, child, creator, now)?;
                items.insert(tx, name, copy.to_any())?;
            }
            ContentRef::Folder(tx.add(Folder {
                meta: fresh(&folder.meta),
                items,
                order: folder.order.clone(),
            })?)
        }
        ContentRef::Page(r) => {
            let page = tx.get(r)?;
            ContentRef::Page(tx.add(Page {
                meta: fresh(&page.meta),
                body: page.body.clone(),
            })?)
        }
        ContentRef::File(r) => {
            let file = tx.get(r)?;
            ContentRef::File(tx.add(File {
                meta: fresh(&file.meta),
                ..(*file).clone()
            })?)
        }
        ContentRef::Image(r) => {
            let image = tx.get(r)?;
            ContentRef::Image(tx.add(Image {
                meta: fresh(&image.meta),
                ..(*image).clone()
            })?)
        }
    })
}

/// Removes the item `name` from `folder` (and from its display order, and it and what it
/// holds from the search index); returns the reference it held.  The object itself stays
/// in the database until a pack (history and undo still reach it).
pub fn remove_item(
    tx: &Transaction<'_>,
    folder: PRef<Folder>,
    name: &str,
) -> zodb::Result<Option<AnyRef>> {
    let removed = take_item(tx, folder, name)?;
    if let Some(any) = &removed
        && let Some(item) = ContentRef::resolve(tx, any)?
    {
        crate::search::removed(tx, item)?;
    }
    Ok(removed)
}

/// Moves the item `name` of `from` into `to` as `new_name` (a cut and paste; the caller
/// checks that `new_name` is free); returns the reference moved, `None` when `from` has
/// no item `name`.  The search index rewrites the item's entry alone, not its contents'.
pub fn move_item(
    tx: &Transaction<'_>,
    from: PRef<Folder>,
    name: &str,
    to: PRef<Folder>,
    new_name: &str,
) -> zodb::Result<Option<AnyRef>> {
    let Some(any) = take_item(tx, from, name)? else {
        return Ok(None);
    };
    tx.get(to)?
        .items
        .insert(tx, new_name.to_owned(), any.clone())?;
    if let Some(item) = ContentRef::resolve(tx, &any)? {
        crate::search::moved(tx, to, new_name, item)?;
    }
    Ok(Some(any))
}

/// Removes the item `name` from `folder` and its display order.
fn take_item(
    tx: &Transaction<'_>,
    folder: PRef<Folder>,
    name: &str,
) -> zodb::Result<Option<AnyRef>> {
    let items = tx.get(folder)?.items;
    let removed = items.remove(tx, &name.to_owned())?;
    if tx.get(folder)?.order.iter().any(|n| n == name) {
        tx.update(folder, |f| f.order.retain(|n| n != name))?;
    }
    Ok(removed)
}

/// Renames the item `from` of `folder` to `to` (keeping its place in the display order).
/// Returns `false`, changing nothing, when there is no item `from`.  The caller checks
/// that `to` is a valid, free name.
pub fn rename_item(
    tx: &Transaction<'_>,
    folder: PRef<Folder>,
    from: &str,
    to: &str,
) -> zodb::Result<bool> {
    let items = tx.get(folder)?.items;
    let Some(any) = items.remove(tx, &from.to_owned())? else {
        return Ok(false);
    };
    items.insert(tx, to.to_owned(), any.clone())?;
    if let Some(item) = ContentRef::resolve(tx, &any)? {
        crate::search::moved(tx, folder, to, item)?;
    }
    if tx.get(folder)?.order.iter().any(|n| n == from) {
        tx.update(folder, |f| {
            for n in f.order.iter_mut().filter(|n| *n == from) {
                *n = to.to_owned();
            }
        })?;
    }
    Ok(true)
}

/// `name` if `folder` has no item of that name, else the first free one of
/// `copy_of_<name>`, `copy2_of_<name>`, `copy3_of_<name>`, … (Zope's rule), the original
/// name shortened so the result stays within the 100 characters a name may have.
pub fn free_name(tx: &Transaction<'_>, folder: &Folder, name: &str) -> zodb::Result<String> {
    if !folder.items.contains_key(tx, &name.to_owned())? {
        return Ok(name.to_owned());
    }
    let mut n: u64 = 1;
    loop {
        let prefix = if n == 1 {
            "copy_of_".to_owned()
        } else {
            format!("copy{n}_of_")
        };
        let room = 100usize.saturating_sub(prefix.len());
        let base: String = name.chars().take(room).collect();
        let candidate = format!("{prefix}{base}");
        if !folder.items.contains_key(tx, &candidate)? {
            return Ok(candidate);
        }
        n += 1;
    }
}
