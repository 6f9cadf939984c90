//! Password hashes: argon2id (PHC strings) for every hash bbru makes; legacy Zope
//! hashes (`{SSHA}`, `{SHA}`) accepted when verifying imported users, so they can be
//! re-hashed at the next login.
//!
//! Verifying costs 19 MiB and ~20 ms of a core, so it goes through a [`Verifier`]: at
//! most a fixed number at once (one per core), each on a memory buffer the verifier
//! keeps and reuses, and a login that does not exist costs exactly what a wrong
//! password costs (one verification, against a dummy hash made once).

use std::sync::LazyLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use argon2::{Algorithm, Argon2, Block, Params, Version};
use base64::Engine;
use parking_lot::{Condvar, Mutex};
use sha1::Digest;

use crate::limits;

/// Hashes a password with argon2id and a random salt.
pub fn hash(password: &str) -> String {
    let salt_bytes: [u8; 16] = rand::random();
    let salt = SaltString::encode_b64(&salt_bytes).expect("16 bytes make a valid salt");
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .expect("argon2 with default parameters accepts any password")
        .to_string()
}

/// Whether `password` matches `stored`, allocating the argon2 memory for this call
/// (commands and tests; requests go through a [`Verifier`]).  Unknown formats never
/// match.
pub fn verify(password: &str, stored: &str) -> bool {
    let mut memory = Vec::new();
    verify_with(password, stored, &mut memory)
}

/// A hash of no password anybody has, verified in place of a login that does not exist,
/// so that such a login costs what a wrong password costs.
pub fn dummy_hash() -> &'static str {
    static DUMMY: LazyLock<String> = LazyLock::new(|| {
        let random: [u8; 16] = rand::random();
        hash(&base64::engine::general_purpose::STANDARD.encode(random))
    });
    &DUMMY
}

/// No argon2 slot came free in time: the instance is busy checking passwords.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many password checks at once; try again")]
pub struct Busy;

/// Verifies passwords with at most `slots` argon2 runs at once, each on a memory buffer
/// kept between runs (allocating 19 MiB per check made the allocator's footprint grow
/// with the number of threads).  Written here because it is a pool of a few buffers with
/// a bounded wait, which a semaphore crate would not hold for us.
#[derive(Debug)]
pub struct Verifier {
    free: Mutex<Vec<Vec<Block>>>,
    returned: Condvar,
    wait: Duration,
    /// argon2 verifications run (for `/@@metrics`).
    checks: AtomicU64,
}

impl Verifier {
    /// A verifier running at most `slots` checks at once; a check waits `wait` at most
    /// for its turn.
    pub fn new(slots: usize, wait: Duration) -> Verifier {
        Verifier {
            free: Mutex::new((0..slots.max(1)).map(|_| Vec::new()).collect()),
            returned: Condvar::new(),
            wait,
            checks: AtomicU64::new(0),
        }
    }

    /// How many argon2 verifications ran.
    pub fn checks(&self) -> u64 {
        self.checks.load(Ordering::Relaxed)
    }

    /// One slot per core ([`limits::PASSWORD_CHECKS_PER_CORE`]).
    pub fn for_this_machine() -> Verifier {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        Verifier::new(
            cores * limits::PASSWORD_CHECKS_PER_CORE,
            limits::PASSWORD_CHECK_WAIT,
        )
    }

    /// Whether `password` matches `stored`; [`Busy`] if no slot came free in time.
    pub fn verify(&self, password: &str, stored: &str) -> Result<bool, Busy> {
        if !stored.starts_with('$') {
            // Legacy SHA-1 hashes (and garbage): cheap, no memory, no slot.
            return Ok(verify_with(password, stored, &mut Vec::new()));
        }
        let deadline = Instant::now() + self.wait;
        let mut memory = {
            let mut free = self.free.lock();
            loop {
                if let Some(buffer) = free.pop() {
                    break buffer;
                }
                if self.returned.wait_until(&mut free, deadline).timed_out() && free.is_empty() {
                    return Err(Busy);
                }
            }
        };
        self.checks.fetch_add(1, Ordering::Relaxed);
        let ok = verify_with(password, stored, &mut memory);
        self.free.lock().push(memory);
        self.returned.notify_one();
        Ok(ok)
    }
}

/// [`verify`] with argon2's memory in `memory` (grown as needed, kept by the caller).
fn verify_with(password: &str, stored: &str, memory: &mut Vec<Block>) -> bool {
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
    let Ok(parsed) = PasswordHash::new(stored) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let (Ok(algorithm), Ok(params)) = (
        Algorithm::try_from(parsed.algorithm),
        Params::try_from(&parsed),
    ) else {
        return false;
    };
    let version = match parsed.version.map(Version::try_from).transpose() {
        Ok(v) => v.unwrap_or_default(),
        Err(_) => return false,
    };
    if params.m_cost() > limits::PASSWORD_HASH_MEMORY_KIB_MAX {
        tracing::warn!(
            memory_kib = params.m_cost(),
            "a stored password hash asks for more argon2 memory than this instance spends on one check; it is refused"
        );
        return false;
    }
    let mut salt_buffer = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buffer) else {
        return false;
    };
    let blocks = params.block_count();
    if memory.len() < blocks {
        memory.resize(blocks, Block::default());
    }
    let mut out = [0u8; 64];
    let Some(out) = out.get_mut(..expected.len()) else {
        return false;
    };
    let Some(memory) = memory.get_mut(..blocks) else {
        return false;
    };
    if Argon2::new(algorithm, version, params)
        .hash_password_into_with_memory(password.as_bytes(), salt, out, memory)
        .is_err()
    {
        return false;
    }
    constant_eq(out, expected.as_bytes())
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

    #[test]
    fn the_verifier_checks_argon2_and_legacy_hashes_on_reused_memory() {
        let verifier = Verifier::new(1, Duration::from_secs(5));
        let h = hash("s3cret");
        assert_eq!(verifier.verify("s3cret", &h), Ok(true));
        assert_eq!(verifier.verify("wrong", &h), Ok(false));
        assert_eq!(verifier.verify("s3cret", dummy_hash()), Ok(false));
        assert_eq!(verifier.verify("x", "garbage"), Ok(false));
        // The one buffer came back, sized for the default cost (19 MiB of 1 KiB blocks).
        let free = verifier.free.lock();
        assert_eq!(free.len(), 1);
        assert_eq!(free[0].len(), Params::DEFAULT_M_COST as usize);
    }

    #[test]
    fn a_verifier_with_no_free_slot_answers_busy_after_its_wait() {
        let verifier = Verifier::new(1, Duration::from_millis(50));
        let taken = verifier.free.lock().pop().unwrap();
        assert_eq!(verifier.verify("s3cret", &hash("s3cret")), Err(Busy));
        verifier.free.lock().push(taken);
        assert_eq!(verifier.verify("s3cret", &hash("s3cret")), Ok(true));
    }

    #[test]
    fn hashes_asking_for_too_much_memory_are_refused() {
        let params = Params::new(limits::PASSWORD_HASH_MEMORY_KIB_MAX + 8, 1, 1, None).unwrap();
        let salt = SaltString::encode_b64(b"0123456789abcdef").unwrap();
        let big = Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password(b"pw", &salt)
            .unwrap()
            .to_string();
        assert!(!verify("pw", &big));
    }
}
