//! The security policy, after `zope.securitypolicy`: principals (users, groups, the
//! bootstrap manager, anonymous), roles, permissions granted to roles, and local role
//! grants (Allow / Deny; absent = Unset) stored on objects and inherited along the
//! containment path; the nearest setting wins.
//!
//! - Roles and what they may do are fixed here ([`Role::permissions`]), as a site's ZCML
//!   grants were.
//! - Everybody holds `Anonymous`; authenticated users are also in the group
//!   [`AUTHENTICATED`], and the site is created with that group granted `Member` at the root.
//! - The bootstrap manager (declared in `etc/site.toml`) holds `Manager` everywhere, whatever
//!   the grants say.
//! - At one level, a principal's own setting for a role wins over its groups'; among
//!   groups, Deny wins over Allow.

pub mod auth;
pub mod key;
pub mod password;

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The group every authenticated user is in.
pub const AUTHENTICATED: &str = "group:authenticated";
/// The group everybody is in, anonymous visitors too.
pub const EVERYBODY: &str = "group:everybody";

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Permission {
    /// See content and its listings.
    View,
    /// Add content to folders.
    Add,
    /// Change content (fields, uploads, rename, reorder, revert).
    Edit,
    /// Remove items from a folder (delete, cut): checked on the folder, not the item.
    Delete,
    /// See an object's history and old versions.
    ViewHistory,
    /// Grant and revoke roles on an object.
    ManageSecurity,
    /// Add, change and remove users and groups.
    ManageUsers,
    /// Undo transactions site-wide.
    Undo,
    /// Publish or retract an item (its publication state, `model::publication`).
    Publish,
}

impl Permission {
    pub const ALL: [Permission; 9] = [
        Permission::View,
        Permission::Add,
        Permission::Edit,
        Permission::Delete,
        Permission::ViewHistory,
        Permission::ManageSecurity,
        Permission::ManageUsers,
        Permission::Undo,
        Permission::Publish,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Permission::View => "bbru.View",
            Permission::Add => "bbru.Add",
            Permission::Edit => "bbru.Edit",
            Permission::Delete => "bbru.Delete",
            Permission::ViewHistory => "bbru.ViewHistory",
            Permission::ManageSecurity => "bbru.ManageSecurity",
            Permission::ManageUsers => "bbru.ManageUsers",
            Permission::Undo => "bbru.Undo",
            Permission::Publish => "bbru.Publish",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
pub enum Role {
    Manager,
    Editor,
    Member,
    Anonymous,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Manager, Role::Editor, Role::Member, Role::Anonymous];
    /// Roles that can be granted (Anonymous is everybody's).
    pub const GRANTABLE: [Role; 3] = [Role::Manager, Role::Editor, Role::Member];

    pub fn name(self) -> &'static str {
        match self {
            Role::Manager => "bbru.Manager",
            Role::Editor => "bbru.Editor",
            Role::Member => "bbru.Member",
            Role::Anonymous => "bbru.Anonymous",
        }
    }

    pub fn parse(name: &str) -> Option<Role> {
        Role::ALL
            .into_iter()
            .find(|r| r.name() == name || r.name().trim_start_matches("bbru.") == name)
    }

    /// What the role may do.
    pub fn permissions(self) -> &'static [Permission] {
        use Permission::*;
        match self {
            Role::Manager => &Permission::ALL,
            Role::Editor => &[View, Add, Edit, Delete, ViewHistory, Publish],
            Role::Member => &[View],
            // Everybody holds it: a site is public when `group:everybody` is granted
            // Member at the root, not through this role.
            Role::Anonymous => &[],
        }
    }
}

/// Allow or Deny; Unset is the absence of a setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Setting {
    Allow,
    Deny,
}

/// Local role grants of one object: principal or group id -> role name -> setting.  Kept
/// with role names as strings so the state reads naturally from Python.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Grants(pub BTreeMap<String, BTreeMap<String, Setting>>);

impl Grants {
    pub fn get(&self, principal: &str, role: Role) -> Option<Setting> {
        self.0.get(principal)?.get(role.name()).copied()
    }

    /// Sets (or with `None`, unsets) `principal`'s setting for `role`.
    pub fn set(&mut self, principal: &str, role: Role, setting: Option<Setting>) {
        match setting {
            Some(s) => {
                self.0
                    .entry(principal.to_owned())
                    .or_default()
                    .insert(role.name().to_owned(), s);
            }
            None => {
                if let Some(roles) = self.0.get_mut(principal) {
                    roles.remove(role.name());
                    if roles.is_empty() {
                        self.0.remove(principal);
                    }
                }
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// Who is asking.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Principal {
    Anonymous,
    /// A user stored in the database, with its groups.
    User {
        login: String,
        groups: Vec<String>,
    },
    /// The manager declared in `etc/site.toml`.
    Bootstrap {
        login: String,
    },
}

impl Principal {
    /// The id used in grants (`user:<login>`; the bootstrap manager is never in grants).
    pub fn id(&self) -> String {
        match self {
            Principal::Anonymous => "anonymous".into(),
            Principal::User { login, .. } => format!("user:{login}"),
            Principal::Bootstrap { login } => format!("bootstrap:{login}"),
        }
    }

    /// The name written as the user of the transactions it makes (the audit trail).
    pub fn audit_name(&self) -> String {
        match self {
            Principal::Anonymous => String::new(),
            Principal::User { login, .. } => login.clone(),
            Principal::Bootstrap { login } => format!("{login} (bootstrap)"),
        }
    }

    pub fn login(&self) -> Option<&str> {
        match self {
            Principal::Anonymous => None,
            Principal::User { login, .. } | Principal::Bootstrap { login } => Some(login),
        }
    }

    pub fn is_authenticated(&self) -> bool {
        !matches!(self, Principal::Anonymous)
    }
}

/// The roles `principal` holds on an object whose containment path, from the site root
/// down to the object itself, has the grants `path`.
pub fn roles(principal: &Principal, path: &[&Grants]) -> Vec<Role> {
    if matches!(principal, Principal::Bootstrap { .. }) {
        return Role::ALL.to_vec();
    }
    let me = principal.is_authenticated().then(|| principal.id());
    let mut held = vec![Role::Anonymous];
    held.extend(
        Role::GRANTABLE
            .into_iter()
            .filter(|role| holds(principal, me.as_deref(), path, *role)),
    );
    held
}

/// Whether `principal` has `permission` on the object with grants path `path`.
pub fn allowed(principal: &Principal, path: &[&Grants], permission: Permission) -> bool {
    if matches!(principal, Principal::Bootstrap { .. }) {
        return true;
    }
    // Checked on every level of every path a page shows: no allocation for anonymous
    // visitors (the role `Anonymous` itself grants nothing).
    let me = principal.is_authenticated().then(|| principal.id());
    Role::GRANTABLE.into_iter().any(|role| {
        role.permissions().contains(&permission) && holds(principal, me.as_deref(), path, role)
    })
}

/// Whether the nearest level of `path` that decides `role` for the principal (whose
/// grant id is `me`, when authenticated) allows it.
fn holds(principal: &Principal, me: Option<&str>, path: &[&Grants], role: Role) -> bool {
    path.iter()
        .rev()
        .find_map(|grants| decided(principal, me, grants, role))
        == Some(Setting::Allow)
}

/// What one level's grants decide for `role`: the principal's own setting, else Deny if
/// any of its groups is denied, else Allow if any is allowed, else nothing.
fn decided(
    principal: &Principal,
    me: Option<&str>,
    grants: &Grants,
    role: Role,
) -> Option<Setting> {
    if grants.is_empty() {
        return None;
    }
    if let Some(me) = me
        && let Some(s) = grants.get(me, role)
    {
        return Some(s);
    }
    let mut allowed = false;
    let mut denied = |id: &str| match grants.get(id, role) {
        Some(Setting::Deny) => true,
        Some(Setting::Allow) => {
            allowed = true;
            false
        }
        None => false,
    };
    if denied(EVERYBODY) {
        return Some(Setting::Deny);
    }
    if let Principal::User { groups, .. } = principal {
        if denied(AUTHENTICATED) {
            return Some(Setting::Deny);
        }
        for g in groups {
            if denied(&format!("group:{g}")) {
                return Some(Setting::Deny);
            }
        }
    }
    allowed.then_some(Setting::Allow)
}

/// One level of a containment path as [`visible`] reads it: the object's grants and
/// whether it is private.
pub type Level<'a> = (&'a Grants, bool);

/// Whether `principal` may see the object at the end of `path` (root first): it has
/// `View` there, and every private object along the path (the object itself included)
/// is one it may edit.  What a private folder holds is as private as the folder: an
/// editor of a page inside, but not of the folder, does not see it.  The one rule the
/// traversal, listings, feeds, the sitemap, recent changes and search results share.
pub fn visible(principal: &Principal, path: &[Level<'_>]) -> bool {
    let grants: Vec<&Grants> = path.iter().map(|(g, _)| *g).collect();
    if !allowed(principal, &grants, Permission::View) {
        return false;
    }
    path.iter()
        .enumerate()
        .all(|(i, (_, private))| !private || allowed(principal, &grants[..=i], Permission::Edit))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn user(login: &str, groups: &[&str]) -> Principal {
        Principal::User {
            login: login.into(),
            groups: groups.iter().map(|g| g.to_string()).collect(),
        }
    }

    #[test]
    fn nearest_setting_wins_and_principal_beats_group() {
        let mut site = Grants::default();
        site.set(AUTHENTICATED, Role::Member, Some(Setting::Allow));
        site.set("group:editors", Role::Editor, Some(Setting::Allow));
        let mut docs = Grants::default();
        docs.set("user:bob", Role::Editor, Some(Setting::Deny));
        let mut private = Grants::default();
        private.set(AUTHENTICATED, Role::Member, Some(Setting::Deny));
        private.set("user:carol", Role::Member, Some(Setting::Allow));

        let bob = user("bob", &["editors"]);
        let carol = user("carol", &[]);
        let dave = user("dave", &[]);
        assert!(allowed(&bob, &[&site], Permission::Edit));
        assert!(!allowed(&bob, &[&site, &docs], Permission::Edit));
        assert!(allowed(&bob, &[&site, &docs], Permission::View));
        assert!(allowed(&carol, &[&site, &private], Permission::View));
        assert_eq!(roles(&dave, &[&site, &private]), vec![Role::Anonymous]);
        assert!(!allowed(&Principal::Anonymous, &[&site], Permission::Edit));
        let boot = Principal::Bootstrap {
            login: "admin".into(),
        };
        let mut deny_all = Grants::default();
        deny_all.set("bootstrap:admin", Role::Manager, Some(Setting::Deny));
        assert!(allowed(&boot, &[&deny_all], Permission::ManageUsers));
        // Unset removes.
        docs.set("user:bob", Role::Editor, None);
        assert!(docs.is_empty());
    }

    #[test]
    fn private_items_and_what_they_hold_are_seen_by_their_editors_only() {
        let mut site = Grants::default();
        site.set(EVERYBODY, Role::Member, Some(Setting::Allow));
        let mut drafts = Grants::default();
        drafts.set("user:eve", Role::Editor, Some(Setting::Allow));
        let mut page = Grants::default();
        page.set("user:pat", Role::Editor, Some(Setting::Allow));
        let (eve, pat) = (user("eve", &[]), user("pat", &[]));
        let public = [(&site, false), (&drafts, false), (&page, false)];
        let private_folder = [(&site, false), (&drafts, true), (&page, false)];
        let private_page = [(&site, false), (&drafts, false), (&page, true)];
        for p in [&Principal::Anonymous, &eve, &pat] {
            assert!(visible(p, &public));
        }
        assert!(!visible(&Principal::Anonymous, &private_folder));
        assert!(visible(&eve, &private_folder));
        // An editor of the page alone does not see it inside a private folder.
        assert!(!visible(&pat, &private_folder));
        assert!(!visible(&Principal::Anonymous, &private_page));
        assert!(visible(&eve, &private_page));
        assert!(visible(&pat, &private_page));
        assert!(visible(
            &Principal::Bootstrap { login: "a".into() },
            &private_folder
        ));
    }
}
