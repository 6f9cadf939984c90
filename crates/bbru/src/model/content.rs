//! Content types.  Each is its own persistent class (`bbru.content.Folder`, `…Page`,
//! `…File`, `…Image`) with the Dublin-Core-like metadata of [`Meta`] and local grants.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use zodb::btree::BTree;
use zodb::{AnyRef, Blob, PRef, Transaction, persistent};

use crate::security::Grants;

/// Title, description, creator, times (seconds since the epoch), and local role grants.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Meta {
    pub title: String,
    #[serde(default)]
    pub description: String,
    #[serde(default)]
    pub creator: String,
    #[serde(default)]
    pub created: f64,
    #[serde(default)]
    pub modified: f64,
    #[serde(default)]
    pub grants: Grants,
    /// Private or published (`model::publication`).  Records written before states
    /// existed have none and are published, so existing content stays visible; a
    /// published item's record carries no field, as before.
    #[serde(default, skip_serializing_if = "State::is_published")]
    pub state: State,
}

/// An item's publication state, after Plone's simple publication workflow without its
/// review step: a private item (and everything under it) is seen only by those who may
/// edit it; a published one by whoever may view it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum State {
    Private,
    #[default]
    Published,
}

impl State {
    pub fn is_published(&self) -> bool {
        *self == State::Published
    }

    /// The name in forms, URLs and the JSON API (`review_state`, as plone.restapi).
    pub fn name(self) -> &'static str {
        match self {
            State::Private => "private",
            State::Published => "published",
        }
    }

    pub fn parse(name: &str) -> Option<State> {
        [State::Private, State::Published]
            .into_iter()
            .find(|s| s.name() == name)
    }
}

/// The items of a folder: name -> reference (class recorded in the reference).
pub type Items = BTree<String, AnyRef>;

/// A folder.  Adding an item writes only its items tree (the bucket the name lands in),
/// never the folder object: concurrent creations in one folder then meet only in a
/// bucket, whose resolver merges different names.  So the folder keeps no item count
/// (the count is the tree's length, counted when asked) and no list of every name.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Folder {
    pub meta: Meta,
    pub items: PRef<Items>,
    /// Names in the order a manager arranged them; names not listed follow in name
    /// order.  Empty for folders never reordered.  Written when a manager reorders, and
    /// when an arranged item is removed or renamed; never when an item is added.
    #[serde(default)]
    pub order: Vec<String>,
}
persistent!(Folder, "bbru.content", "Folder");

/// A page: Markdown source, rendered to sanitised HTML when viewed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Page {
    pub meta: Meta,
    pub body: String,
}
persistent!(Page, "bbru.content", "Page");

/// An uploaded file, served with its content type.  Its bytes are in a blob (`blob`,
/// one per upload: editing the title rewrites only this small record, and an older
/// revision keeps its own blob), or, for files uploaded before blobs or on a storage
/// without a blob directory, in the record itself (`data`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct File {
    pub meta: Meta,
    pub filename: String,
    pub content_type: String,
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    #[serde(default)]
    pub blob: Option<PRef<Blob>>,
    /// Bytes of the file (in the blob or in `data`).
    #[serde(default)]
    pub size: u64,
}
persistent!(File, "bbru.content", "File");

/// An uploaded image (a file whose type is an image format we recognised); its bytes
/// are kept as a [`File`]'s are.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Image {
    pub meta: Meta,
    pub filename: String,
    pub content_type: String,
    #[serde(with = "bytes")]
    pub data: Vec<u8>,
    #[serde(default)]
    pub blob: Option<PRef<Blob>>,
    #[serde(default)]
    pub size: u64,
}

/// Where an uploaded file's bytes are.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Bytes<'a> {
    /// In a blob's file.
    Blob(PRef<Blob>),
    /// In the record.
    Inline(&'a [u8]),
}

impl File {
    pub fn bytes(&self) -> Bytes<'_> {
        match self.blob {
            Some(b) => Bytes::Blob(b),
            None => Bytes::Inline(&self.data),
        }
    }

    /// The file's length in bytes.
    pub fn byte_len(&self) -> u64 {
        if self.blob.is_some() {
            self.size
        } else {
            self.data.len() as u64
        }
    }
}

impl Image {
    pub fn bytes(&self) -> Bytes<'_> {
        match self.blob {
            Some(b) => Bytes::Blob(b),
            None => Bytes::Inline(&self.data),
        }
    }

    /// The image's length in bytes.
    pub fn byte_len(&self) -> u64 {
        if self.blob.is_some() {
            self.size
        } else {
            self.data.len() as u64
        }
    }
}
persistent!(Image, "bbru.content", "Image");

/// `Vec<u8>` as a Python `bytes` (serde would write a list of ints).
mod bytes {
    pub fn serialize<S: serde::Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = Vec<u8>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("bytes")
            }
            fn visit_byte_buf<E>(self, v: Vec<u8>) -> Result<Vec<u8>, E> {
                Ok(v)
            }
            fn visit_bytes<E>(self, v: &[u8]) -> Result<Vec<u8>, E> {
                Ok(v.to_vec())
            }
        }
        d.deserialize_byte_buf(Visitor)
    }
}

/// The content types, as names in URLs, forms and the JSON API (`@type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Folder,
    Page,
    File,
    Image,
}

impl Kind {
    pub const ALL: [Kind; 4] = [Kind::Folder, Kind::Page, Kind::File, Kind::Image];

    pub fn name(self) -> &'static str {
        match self {
            Kind::Folder => "Folder",
            Kind::Page => "Page",
            Kind::File => "File",
            Kind::Image => "Image",
        }
    }

    pub fn parse(name: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.name() == name)
    }

    /// The kind of a reference's recorded class.
    pub fn of_class(module: &str, name: &str) -> Option<Kind> {
        if module != "bbru.content" {
            return None;
        }
        Kind::parse(name)
    }
}

/// A typed reference to a content object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ContentRef {
    Folder(PRef<Folder>),
    Page(PRef<Page>),
    File(PRef<File>),
    Image(PRef<Image>),
}

impl ContentRef {
    /// The typed reference behind an [`AnyRef`] (asking the storage for the class when the
    /// reference does not record it); `None` for objects that are no bbru content.
    pub fn resolve(tx: &Transaction<'_>, any: &AnyRef) -> zodb::Result<Option<ContentRef>> {
        let kind = match any.class() {
            Some((m, n)) => Kind::of_class(m, n),
            None => {
                let (m, n) = tx.class_of(any.oid())?;
                Kind::of_class(&m, &n)
            }
        };
        let oid = any.oid();
        Ok(kind.map(|k| match k {
            Kind::Folder => ContentRef::Folder(PRef::from_oid(oid)),
            Kind::Page => ContentRef::Page(PRef::from_oid(oid)),
            Kind::File => ContentRef::File(PRef::from_oid(oid)),
            Kind::Image => ContentRef::Image(PRef::from_oid(oid)),
        }))
    }

    pub fn kind(&self) -> Kind {
        match self {
            ContentRef::Folder(_) => Kind::Folder,
            ContentRef::Page(_) => Kind::Page,
            ContentRef::File(_) => Kind::File,
            ContentRef::Image(_) => Kind::Image,
        }
    }

    pub fn oid(&self) -> zodb::Oid {
        match self {
            ContentRef::Folder(r) => r.oid(),
            ContentRef::Page(r) => r.oid(),
            ContentRef::File(r) => r.oid(),
            ContentRef::Image(r) => r.oid(),
        }
    }

    pub fn to_any(self) -> AnyRef {
        match self {
            ContentRef::Folder(r) => r.into(),
            ContentRef::Page(r) => r.into(),
            ContentRef::File(r) => r.into(),
            ContentRef::Image(r) => r.into(),
        }
    }

    /// The serial (version) of the object's own record as `tx` sees it: what an edit form
    /// and an `ETag` carry, so a later change can tell whether someone else saved the
    /// object meanwhile.  A folder's items are records of their own: adding an item does
    /// not change the folder's serial.
    pub fn serial(&self, tx: &Transaction<'_>) -> zodb::Result<zodb::Tid> {
        match self {
            ContentRef::Folder(r) => tx.serial(*r),
            ContentRef::Page(r) => tx.serial(*r),
            ContentRef::File(r) => tx.serial(*r),
            ContentRef::Image(r) => tx.serial(*r),
        }
    }

    /// Loads the object.
    pub fn load(&self, tx: &Transaction<'_>) -> zodb::Result<Content> {
        Ok(match self {
            ContentRef::Folder(r) => Content::Folder(*r, tx.get(*r)?),
            ContentRef::Page(r) => Content::Page(*r, tx.get(*r)?),
            ContentRef::File(r) => Content::File(*r, tx.get(*r)?),
            ContentRef::Image(r) => Content::Image(*r, tx.get(*r)?),
        })
    }

    /// Changes the object's metadata.
    pub fn update_meta<R>(
        &self,
        tx: &Transaction<'_>,
        change: impl FnOnce(&mut Meta) -> R,
    ) -> zodb::Result<R> {
        match self {
            ContentRef::Folder(r) => tx.update(*r, |o| change(&mut o.meta)),
            ContentRef::Page(r) => tx.update(*r, |o| change(&mut o.meta)),
            ContentRef::File(r) => tx.update(*r, |o| change(&mut o.meta)),
            ContentRef::Image(r) => tx.update(*r, |o| change(&mut o.meta)),
        }
    }
}

/// A loaded content object.
#[derive(Debug, Clone)]
pub enum Content {
    Folder(PRef<Folder>, std::sync::Arc<Folder>),
    Page(PRef<Page>, std::sync::Arc<Page>),
    File(PRef<File>, std::sync::Arc<File>),
    Image(PRef<Image>, std::sync::Arc<Image>),
}

impl Content {
    pub fn meta(&self) -> &Meta {
        match self {
            Content::Folder(_, o) => &o.meta,
            Content::Page(_, o) => &o.meta,
            Content::File(_, o) => &o.meta,
            Content::Image(_, o) => &o.meta,
        }
    }

    pub fn kind(&self) -> Kind {
        self.reference().kind()
    }

    pub fn reference(&self) -> ContentRef {
        match self {
            Content::Folder(r, _) => ContentRef::Folder(*r),
            Content::Page(r, _) => ContentRef::Page(*r),
            Content::File(r, _) => ContentRef::File(*r),
            Content::Image(r, _) => ContentRef::Image(*r),
        }
    }
}

impl Folder {
    /// A new empty folder (its items tree is added to `tx`).
    pub fn create(tx: &Transaction<'_>, meta: Meta) -> zodb::Result<Folder> {
        let items = tx.add(Items::new())?;
        Ok(Folder {
            meta,
            items,
            order: Vec::new(),
        })
    }

    /// The item names in display order: the arranged ones, then the rest by name.
    pub fn ordered_names(&self, tx: &Transaction<'_>) -> zodb::Result<Vec<String>> {
        let mut names = Vec::new();
        let mut rest = Vec::new();
        let placed: std::collections::HashSet<&str> =
            self.order.iter().map(String::as_str).collect();
        for item in self.items.iter(tx)? {
            let (name, _) = item?;
            if !placed.contains(name.as_str()) {
                rest.push(name);
            }
        }
        for name in &self.order {
            if self.items.contains_key(tx, name)? {
                names.push(name.clone());
            }
        }
        names.extend(rest);
        Ok(names)
    }
}

/// The items of a folder as a sorted map (for small folders and tests).
pub fn items_map(tx: &Transaction<'_>, folder: &Folder) -> zodb::Result<BTreeMap<String, AnyRef>> {
    folder.items.iter(tx)?.collect()
}
