//! Password hashes: argon2id (PHC strings) for every hash bbru makes; legacy Zope
//! hashes (`{SSHA}`, `{SHA}`) accepted when verifying imported users, so they can be
//! re-hashed at the next login.

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine;
use sha1::Digest;

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Whether `password` matches `stored`.  Unknown formats never match.
pub fn verify(password: &str, stored: &str) -> bool {
    if let Some(rest) = stored.strip_prefix("{SSHA}") {
        // zope.password SSHA: base64(sha1(password + salt) + salt).
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        if raw.len() < 20 {
            return false;
        }
        let (digest, salt) = raw.split_at(20);
        return constant_eq(&sha1(password.as_bytes(), salt), digest);
    }
    if let Some(rest) = stored.strip_prefix("{SHA}") {
        let Ok(raw) = base64::engine::general_purpose::STANDARD.decode(rest.trim()) else {
            return false;
        };
        return constant_eq(&sha1(password.as_bytes(), b""), &raw);
    }
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Whether a stored hash should be replaced by a fresh argon2id one.
pub fn needs_rehash(stored: &str) -> bool {
    !stored.starts_with("$argon2id$")
}

/// Whether `text` looks like a hash we can verify (for the bootstrap manager's
/// `password_hash`).
pub fn is_hash(text: &str) -> bool {
    text.starts_with("{SSHA}") || text.starts_with("{SHA}") || PasswordHash::new(text).is_ok()
}

/// SHA-1 of `data + salt`, only to check legacy Zope hashes, never to make one.
fn sha1(data: &[u8], salt: &[u8]) -> Vec<u8> {
    let mut hasher = sha1::Sha1::new();
    hasher.update(data);
    hasher.update(salt);
    hasher.finalize().to_vec()
}

fn constant_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argon2_round_trip_and_legacy_hashes() {
        let h = hash("s3cret");
        assert!(h.starts_with("$argon2id$"));
        assert!(verify("s3cret", &h));
        assert!(!verify("wrong", &h));
        assert!(!needs_rehash(&h));
        // {SSHA} as zope.password writes it: sha1("secret" + "salt") + "salt".
        let mut raw = sha1(b"secret", b"salt");
        raw.extend_from_slice(b"salt");
        let ssha = format!(
            "{{SSHA}}{}",
            base64::engine::general_purpose::STANDARD.encode(raw)
        );
        assert!(verify("secret", &ssha));
        assert!(!verify("Secret", &ssha));
        assert!(needs_rehash(&ssha));
        assert!(is_hash(&ssha) && is_hash(&h) && !is_hash("plain"));
        assert!(!verify("x", "garbage"));
    }
}
