//! Users and groups stored in the database (`bbru.security.User`, `…Group`).

use serde::{Deserialize, Serialize};
use zodb::persistent;

/// A local user.  `password_hash` is a PHC string (argon2id for hashes bbru makes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct User {
    pub login: String,
    pub title: String,
    pub password_hash: String,
    /// Ids of the groups the user belongs to.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Bumped when the password changes or the user logs out everywhere: sessions
    /// signed with an older generation are refused.
    #[serde(default)]
    pub session_generation: u64,
}
persistent!(User, "bbru.security", "User");

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub id: String,
    pub title: String,
}
persistent!(Group, "bbru.security", "Group");
