//! The site object: what the application keeps under `root['bbru']`.

use serde::{Deserialize, Serialize};
use zodb::btree::BTree;
use zodb::{PRef, Transaction, persistent};

use super::content::{Folder, Meta};
use super::principals::{Group, User};

/// Key of the site in the database root.
pub const ROOT_KEY: &str = "bbru";

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Site {
    /// The published root folder ("/").
    pub content: PRef<Folder>,
    pub users: PRef<BTree<String, PRef<User>>>,
    pub groups: PRef<BTree<String, PRef<Group>>>,
    /// Key of the session and CSRF signatures, shared by every instance through the
    /// database (hex of 32 random bytes).
    pub secret: String,
    /// Generation of the bootstrap manager's sessions (it is no stored user, so its
    /// generation lives here): bumped when it logs out, which ends all its sessions.
    #[serde(default)]
    pub bootstrap_generation: u64,
    /// The search index (`crate::search::index`); `None` on sites made before search,
    /// until their first change or `bbru reindex`.
    #[serde(default)]
    pub search: Option<PRef<crate::search::index::Index>>,
}
persistent!(Site, "bbru.site", "Site");

impl Site {
    /// The site reference from the database root, if the site exists.
    pub fn find(tx: &Transaction<'_>) -> zodb::Result<Option<PRef<Site>>> {
        Ok(tx.get(tx.root())?.get_ref(ROOT_KEY))
    }

    /// Whether a local manager exists: a user or a group granted Manager at the root
    /// folder (then the bootstrap manager is refused, unless the site keeps it).
    pub fn local_manager_exists(tx: &Transaction<'_>, site: PRef<Site>) -> zodb::Result<bool> {
        use crate::security::{Role, Setting};
        let root = tx.get(tx.get(site)?.content)?;
        Ok(root.meta.grants.0.iter().any(|(principal, roles)| {
            (principal.starts_with("user:") || principal.starts_with("group:"))
                && roles.get(Role::Manager.name()) == Some(&Setting::Allow)
        }))
    }

    /// Creates the site in `tx`: an empty root folder titled `title`, no users, a fresh
    /// secret.
    pub fn create(
        tx: &Transaction<'_>,
        title: &str,
        creator: &str,
        now: f64,
    ) -> zodb::Result<PRef<Site>> {
        let meta = Meta {
            title: title.into(),
            creator: creator.into(),
            created: now,
            modified: now,
            ..Meta::default()
        };
        let content = tx.add(Folder::create(tx, meta)?)?;
        let users = tx.add(BTree::new())?;
        let groups = tx.add(BTree::new())?;
        let secret: [u8; 32] = rand::random();
        let search = crate::search::index::Index::create(tx, true)?;
        let site = tx.add(Site {
            content,
            users,
            groups,
            secret: secret.iter().map(|b| format!("{b:02x}")).collect(),
            bootstrap_generation: 0,
            search: Some(search),
        })?;
        let root = super::ContentRef::Folder(content).load(tx)?;
        let analyzer = crate::search::analyze::Analyzer::default();
        crate::search::index::put(tx, search, &analyzer, &root, 0, "")?;
        tx.edit(tx.root())?.insert_ref(ROOT_KEY, site);
        Ok(site)
    }
}
