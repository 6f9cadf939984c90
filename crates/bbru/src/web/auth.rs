//! Who is asking: credentials from HTTP Basic, an API token (`Authorization: Bearer`) or
//! the session cookie, checked against the bootstrap manager and the users stored in the
//! site.  Password checks are the expensive part (argon2): they go through the
//! instance's [`password::Verifier`] (a few at once, memory reused), and a successful
//! HTTP Basic check is remembered for a short while ([`BasicCache`]), so scripts that
//! send their credentials with every request pay for one check, not one per request.

use std::collections::HashMap;
use std::time::Instant;

use axum::http::{HeaderMap, header};
use base64::Engine;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;
use zodb::{PRef, Transaction};

use crate::limits;
use crate::model::Site;
use crate::security::auth;
use crate::security::{Principal, password};

use super::{App, AppError};

/// The value of the request cookie `name`.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v)
}

/// How the request authenticated.
pub(super) enum Credentials {
    None,
    Basic(String, String),
    Session(auth::Session),
    /// An API token from `POST /@login`.
    Bearer(auth::Session),
}

/// What a remembered HTTP Basic verification says.
#[derive(Debug, Clone)]
struct Remembered {
    /// The stored hash the password was verified against: the entry counts only while
    /// it is still the user's, so a changed password takes effect at once.
    hash: String,
    expires: Instant,
}

/// Successful HTTP Basic verifications of the last [`limits::BASIC_CACHE_TTL`], keyed by
/// an HMAC of the login and password under a key made at start (never the password
/// itself), at most [`limits::BASIC_CACHE_ENTRIES_MAX`].
#[derive(Debug)]
pub struct BasicCache {
    key: [u8; 32],
    entries: Mutex<HashMap<[u8; 32], Remembered>>,
}

impl Default for BasicCache {
    fn default() -> Self {
        BasicCache {
            key: rand::random(),
            entries: Mutex::new(HashMap::new()),
        }
    }
}

impl BasicCache {
    fn key(&self, login: &str, password: &str) -> [u8; 32] {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key length");
        m.update(&(login.len() as u64).to_be_bytes());
        m.update(login.as_bytes());
        m.update(password.as_bytes());
        m.finalize().into_bytes().into()
    }

    /// Whether `key` was verified against `hash` recently.
    fn knows(&self, key: &[u8; 32], hash: &str) -> bool {
        let mut entries = self.entries.lock();
        match entries.get(key) {
            Some(r) if r.expires > Instant::now() && r.hash == hash => true,
            Some(_) => {
                entries.remove(key);
                false
            }
            None => false,
        }
    }

    fn remember(&self, key: [u8; 32], hash: &str) {
        let mut entries = self.entries.lock();
        if entries.len() >= limits::BASIC_CACHE_ENTRIES_MAX {
            let now = Instant::now();
            entries.retain(|_, r| r.expires > now);
            if entries.len() >= limits::BASIC_CACHE_ENTRIES_MAX {
                // Still full of live entries: drop the one closest to expiry.
                if let Some(oldest) = entries
                    .iter()
                    .min_by_key(|(_, r)| r.expires)
                    .map(|(k, _)| *k)
                {
                    entries.remove(&oldest);
                }
            }
        }
        entries.insert(
            key,
            Remembered {
                hash: hash.to_owned(),
                expires: Instant::now() + limits::BASIC_CACHE_TTL,
            },
        );
    }

    /// Entries held (for tests and metrics).
    pub fn len(&self) -> usize {
        self.entries.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl App {
    pub(super) fn credentials(&self, headers: &HeaderMap) -> Result<Credentials, AppError> {
        if let Some(value) = headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| AppError::Unauthorized)?;
            if let Some(token) = value.strip_prefix("Bearer ") {
                return auth::verify_token(&self.secret, token.trim())
                    .map(Credentials::Bearer)
                    .ok_or(AppError::Unauthorized);
            }
            let Some(encoded) = value.strip_prefix("Basic ") else {
                return Err(AppError::Unauthorized);
            };
            let decoded = base64::engine::general_purpose::STANDARD
                .decode(encoded.trim())
                .map_err(|_| AppError::Unauthorized)?;
            let decoded = String::from_utf8(decoded).map_err(|_| AppError::Unauthorized)?;
            let (login, password) = decoded.split_once(':').ok_or(AppError::Unauthorized)?;
            return Ok(Credentials::Basic(login.to_owned(), password.to_owned()));
        }
        if let Some(value) = cookie(headers, auth::SESSION_COOKIE)
            && let Some(session) = auth::verify_session(&self.secret, value)
        {
            return Ok(Credentials::Session(session));
        }
        Ok(Credentials::None)
    }

    /// The principal of a login and password, or `None` when they do not match.  Costs
    /// exactly one argon2 verification whether the login exists or not (an unknown one
    /// is checked against a dummy hash), so timing does not tell which logins exist.
    pub fn check_password(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        login: &str,
        pass: &str,
    ) -> Result<Option<Principal>, AppError> {
        let found = self.stored_hash(tx, site, login)?;
        self.verify_found(found, pass)
    }

    /// One argon2 verification of `pass` against what [`App::stored_hash`] found (the
    /// dummy hash when nothing was).
    fn verify_found(
        &self,
        found: Option<(String, Principal)>,
        pass: &str,
    ) -> Result<Option<Principal>, AppError> {
        let hash = found.as_ref().map_or(password::dummy_hash(), |(h, _)| h);
        let ok = self
            .verifier
            .verify(pass, hash)
            .map_err(|e| AppError::Busy(e.to_string()))?;
        Ok(found.filter(|_| ok).map(|(_, principal)| principal))
    }

    /// The principal of HTTP Basic credentials: [`App::check_password`], skipped when the
    /// same login and password were verified against the same stored hash recently.
    pub(super) fn basic_principal(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        login: &str,
        pass: &str,
    ) -> Result<Option<Principal>, AppError> {
        let key = self.basic_cache.key(login, pass);
        let found = self.stored_hash(tx, site, login)?;
        if let Some((hash, principal)) = &found
            && self.basic_cache.knows(&key, hash)
        {
            return Ok(Some(principal.clone()));
        }
        let hash = found.as_ref().map(|(h, _)| h.clone());
        let principal = self.verify_found(found, pass)?;
        if principal.is_some()
            && let Some(hash) = hash
        {
            self.basic_cache.remember(key, &hash);
        }
        Ok(principal)
    }

    /// The stored password hash of `login` and the principal it would authenticate.
    fn stored_hash(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        login: &str,
    ) -> Result<Option<(String, Principal)>, AppError> {
        if let Some((boot_login, hash)) = &self.bootstrap
            && boot_login == login
        {
            // Refused once a local manager exists: as for an unknown login.
            if !self.bootstrap_usable(tx, site, login)? {
                return Ok(None);
            }
            return Ok(Some((
                hash.clone(),
                Principal::Bootstrap {
                    login: login.to_owned(),
                },
            )));
        }
        let users = tx.get(site)?.users;
        let Some(user_ref) = users.get(tx, &login.to_owned())? else {
            return Ok(None);
        };
        let user = tx.get(user_ref)?;
        Ok(Some((
            user.password_hash.clone(),
            Principal::User {
                login: user.login.clone(),
                groups: user.groups.clone(),
            },
        )))
    }

    /// The principal a session (or API token) names, if it is still valid for it.
    pub(super) fn session_principal(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        session: &auth::Session,
    ) -> Result<Principal, AppError> {
        if session.bootstrap {
            let current = tx.get(site)?.bootstrap_generation == session.generation;
            return Ok(
                if current && self.bootstrap_usable(tx, site, &session.login)? {
                    Principal::Bootstrap {
                        login: session.login.clone(),
                    }
                } else {
                    Principal::Anonymous
                },
            );
        }
        let users = tx.get(site)?.users;
        let Some(user_ref) = users.get(tx, &session.login)? else {
            return Ok(Principal::Anonymous);
        };
        let user = tx.get(user_ref)?;
        if user.session_generation != session.generation {
            return Ok(Principal::Anonymous);
        }
        Ok(Principal::User {
            login: user.login.clone(),
            groups: user.groups.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_basic_cache_counts_only_for_the_hash_it_saw_and_stays_bounded() {
        let cache = BasicCache::default();
        let key = cache.key("alice", "pw");
        assert_ne!(key, cache.key("alice", "pw2"));
        assert_ne!(cache.key("a", "lice"), cache.key("al", "ice"));
        cache.remember(key, "$hash1");
        assert!(cache.knows(&key, "$hash1"));
        // The password changed: the entry no longer counts (and is dropped).
        assert!(!cache.knows(&key, "$hash2"));
        assert!(!cache.knows(&key, "$hash1"));
        for i in 0..limits::BASIC_CACHE_ENTRIES_MAX + 10 {
            cache.remember(cache.key("u", &i.to_string()), "$h");
        }
        assert_eq!(cache.len(), limits::BASIC_CACHE_ENTRIES_MAX);
    }
}
