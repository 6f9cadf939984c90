//! The secret key kept outside the database.  Sessions, CSRF tokens and clipboards are
//! signed with a key derived from two halves: the secret stored in the site (shared by
//! every instance through the database) and this key, read from a file
//! (`secret_key_file` of `etc/serve.toml`) that every instance and release shares.
//! Whoever reads `Data.fs` (a backup, a copy of the file) holds only one half and cannot
//! forge a session.  Rotating the key (a new file, then restarting every instance) ends
//! every session and form in flight.

use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::limits;

/// Why the key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    #[error("cannot read the secret key file {path}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the secret key file {path}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error(
        "the secret key file {path} holds {found} bytes; it needs at least {min} (make one with `head -c 32 /dev/urandom | xxd -p -c 64 > {path}`)",
        min = limits::SECRET_KEY_BYTES_MIN
    )]
    TooShort { path: PathBuf, found: usize },
}

/// The key of the file, never shown.
#[derive(Clone)]
pub struct SecretKey(Vec<u8>);

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// A key of the given bytes (tests).
    pub fn new(bytes: impl Into<Vec<u8>>) -> SecretKey {
        SecretKey(bytes.into())
    }

    /// A fresh random key (for throwaway instances such as `bbru test`'s).
    pub fn random() -> SecretKey {
        SecretKey(random_text().into_bytes())
    }

    /// Reads the key file at `path` (its content, surrounding whitespace trimmed).
    pub fn load(path: &Path) -> Result<SecretKey, KeyError> {
        let text = std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?;
        let key = text.trim_ascii().to_vec();
        if key.len() < limits::SECRET_KEY_BYTES_MIN {
            return Err(KeyError::TooShort {
                path: path.to_owned(),
                found: key.len(),
            });
        }
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                path = %path.display(),
                "the secret key file may be read by other users: chmod 600 it"
            );
        }
        Ok(SecretKey(key))
    }

    /// Reads the key file at `path`, creating it (mode 0600, 32 random bytes in hex) when
    /// missing; returns the key and whether it was created.
    pub fn load_or_create(path: &Path) -> Result<(SecretKey, bool), KeyError> {
        let created = create(path)?;
        Ok((SecretKey::load(path)?, created))
    }

    /// The signing secret of a site whose stored secret is `stored`: HMAC-SHA256 keyed
    /// with this key, in hex.
    pub fn derive(&self, stored: &str) -> String {
        let mut m = Hmac::<Sha256>::new_from_slice(&self.0).expect("HMAC takes any key length");
        m.update(b"bbru signing secret\0");
        m.update(stored.as_bytes());
        m.finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

fn random_text() -> String {
    let bytes: [u8; 32] = rand::random();
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Creates the key file at `path` unless it exists (its directory too); `true` when
/// created.  Created with `O_EXCL`, so instances starting together keep one key.
pub fn create(path: &Path) -> Result<bool, KeyError> {
    let err = |source| KeyError::Create {
        path: path.to_owned(),
        source,
    };
    if path.exists() {
        return Ok(false);
    }
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).map_err(err)?;
    }
    let mut file = match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => return Err(err(e)),
    };
    file.write_all(format!("{}\n", random_text()).as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(err)?;
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_file_is_created_private_and_both_halves_make_the_secret() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys/secret.key");
        let (key, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(created);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let (again, created) = SecretKey::load_or_create(&path).unwrap();
        assert!(!created);
        assert_eq!(key.derive("stored"), again.derive("stored"));
        assert_ne!(key.derive("stored"), key.derive("other"));
        assert_ne!(key.derive("stored"), SecretKey::random().derive("stored"));
        std::fs::write(&path, "short\n").unwrap();
        let err = SecretKey::load(&path).unwrap_err();
        assert!(err.to_string().contains("at least 32"), "{err}");
    }
}
