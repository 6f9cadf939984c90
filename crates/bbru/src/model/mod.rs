//! What bbru stores: the site object, content (folders, pages, files, images) and
//! principals, as persistent objects of classes `bbru.content.*` and `bbru.security.*`.
//!
//! Layout in the database (root = Python's `PersistentMapping` at oid 0):
//!
//! ```text
//! root['bbru']            Site         secret, principals, groups
//!   .content              Folder       the published root ("/")
//!     .items              OOBTree      name -> AnyRef (Folder | Page | File | Image)
//!   .users                OOBTree      login -> User
//!   .groups               OOBTree      id -> Group
//! ```
//!
//! Every object carries its local role grants (`grants`), read by the security policy
//! along the containment path.

pub mod content;
pub mod edit;
pub mod markup;
pub mod principals;
pub mod publication;
pub mod site;
pub mod tree;

pub use content::{Content, ContentRef, File, Folder, Image, Kind, Meta, Page, State};
pub use principals::{Group, User};
pub use site::Site;
