//! Sessions, CSRF tokens and login rate limiting, all stateless between instances: a
//! session is a cookie signed with the site's secret (kept in the database, so every
//! instance checks what any instance signed), revoked by bumping the user's
//! `session_generation`; a CSRF token is the HMAC of a random per-browser cookie
//! (double-submit), so it needs no server state either.  Only the login rate limits are
//! per instance (in memory): an attacker spreading attempts over N instances gets N times
//! the budget, which the limits are sized for.
//!
//! Failed logins are limited twice.  Per client address and login ([`RateLimiter`]): a
//! few failures in a window, then that address is refused for that login until the
//! window passes (it hurts only the address guessing).  Per account, from all addresses
//! together ([`AccountThrottle`]): a larger budget, then attempts are slowed down rather
//! than refused for good — each one must wait after the last failure, the wait doubling
//! up to [`limits::LOGIN_DELAY_MAX`] — so rotating addresses buys a guesser about one
//! guess a minute, and nobody can lock an account by failing on purpose: the addresses
//! the account logged in from before are not throttled at all (the owner at their usual
//! address is never refused because others failed), and the owner at a new address
//! waits at most the longest delay.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use parking_lot::Mutex;
use sha2::Sha256;

use crate::limits;

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "bbru_session";
/// Name of the CSRF cookie (random, per browser).
pub const CSRF_COOKIE: &str = "bbru_csrf";
/// Name of the form field and header carrying the CSRF token.
pub const CSRF_FIELD: &str = "_csrf";
pub const CSRF_HEADER: &str = "x-csrf-token";

type HmacSha256 = Hmac<Sha256>;

fn mac(secret: &str, parts: &[&[u8]]) -> Vec<u8> {
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("HMAC takes any key length");
    for part in parts {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.finalize().into_bytes().to_vec()
}

fn now_seconds() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// What a valid session cookie says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    pub login: String,
    pub generation: u64,
    pub expires: u64,
    /// Signed for the bootstrap manager (not a database user).
    pub bootstrap: bool,
}

/// The cookie value for a session of `login` lasting `lifetime`.
pub fn sign_session(
    secret: &str,
    login: &str,
    generation: u64,
    bootstrap: bool,
    lifetime: Duration,
) -> String {
    sign_credential(secret, b"session", login, generation, bootstrap, lifetime)
}

/// The session a cookie value carries, if its signature holds and it has not expired.
pub fn verify_session(secret: &str, cookie: &str) -> Option<Session> {
    verify_credential(secret, b"session", cookie)
}

/// An API token (`POST /@login`, then `Authorization: Bearer <token>`): signed like a
/// session and revoked the same way (the user's `session_generation`), but for its own
/// purpose, so a session cookie never passes for a token nor the reverse.
pub fn sign_token(
    secret: &str,
    login: &str,
    generation: u64,
    bootstrap: bool,
    lifetime: Duration,
) -> String {
    sign_credential(secret, b"token", login, generation, bootstrap, lifetime)
}

/// What a valid, unexpired API token says.
pub fn verify_token(secret: &str, token: &str) -> Option<Session> {
    verify_credential(secret, b"token", token)
}

fn sign_credential(
    secret: &str,
    purpose: &[u8],
    login: &str,
    generation: u64,
    bootstrap: bool,
    lifetime: Duration,
) -> String {
    let expires = now_seconds() + lifetime.as_secs();
    let body = format!("{}|{generation}|{expires}|{}", login, u8::from(bootstrap));
    let sig = mac(secret, &[purpose, body.as_bytes()]);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(body.as_bytes()),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

fn verify_credential(secret: &str, purpose: &[u8], value: &str) -> Option<Session> {
    let (body64, sig64) = value.split_once('.')?;
    let body = URL_SAFE_NO_PAD.decode(body64).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig64).ok()?;
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    m.update(&(purpose.len() as u64).to_be_bytes());
    m.update(purpose);
    m.update(&(body.len() as u64).to_be_bytes());
    m.update(&body);
    m.verify_slice(&sig).ok()?;
    let body = String::from_utf8(body).ok()?;
    let mut parts = body.rsplitn(4, '|');
    let bootstrap = parts.next()? == "1";
    let expires: u64 = parts.next()?.parse().ok()?;
    let generation: u64 = parts.next()?.parse().ok()?;
    let login = parts.next()?.to_owned();
    (expires > now_seconds()).then_some(Session {
        login,
        generation,
        expires,
        bootstrap,
    })
}

/// A fresh random value for the CSRF cookie.
pub fn new_csrf_cookie() -> String {
    let bytes: [u8; 18] = rand::random();
    URL_SAFE_NO_PAD.encode(bytes)
}

/// The token forms must carry for a browser whose CSRF cookie is `cookie`.
pub fn csrf_token(secret: &str, cookie: &str) -> String {
    URL_SAFE_NO_PAD.encode(mac(secret, &[b"csrf", cookie.as_bytes()]))
}

/// Whether `token` is the right one for `cookie` (constant time).
pub fn csrf_ok(secret: &str, cookie: &str, token: &str) -> bool {
    let Ok(given) = URL_SAFE_NO_PAD.decode(token) else {
        return false;
    };
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).expect("any key length");
    m.update(&(b"csrf".len() as u64).to_be_bytes());
    m.update(b"csrf");
    m.update(&(cookie.len() as u64).to_be_bytes());
    m.update(cookie.as_bytes());
    !cookie.is_empty() && m.verify_slice(&given).is_ok()
}

/// `payload` signed with the site's secret for `purpose` (a cookie value: URL-safe
/// base64 of the payload, `.`, of the HMAC).  What one purpose signed never verifies for
/// another, so a clipboard can never pass for a session.
pub fn sign(secret: &str, purpose: &str, payload: &[u8]) -> String {
    let sig = mac(secret, &[b"signed", purpose.as_bytes(), payload]);
    format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(payload),
        URL_SAFE_NO_PAD.encode(sig)
    )
}

/// The payload of a value [`sign`] made for `purpose`, if the signature holds (checked in
/// constant time); `None` for anything tampered with or malformed.
pub fn verify(secret: &str, purpose: &str, signed: &str) -> Option<Vec<u8>> {
    let (payload64, sig64) = signed.split_once('.')?;
    let payload = URL_SAFE_NO_PAD.decode(payload64).ok()?;
    let sig = URL_SAFE_NO_PAD.decode(sig64).ok()?;
    let mut m = HmacSha256::new_from_slice(secret.as_bytes()).ok()?;
    for part in [b"signed".as_slice(), purpose.as_bytes(), &payload] {
        m.update(&(part.len() as u64).to_be_bytes());
        m.update(part);
    }
    m.verify_slice(&sig).ok()?;
    Some(payload)
}

/// Failed logins per key (client address and login), forgotten after `window`.
#[derive(Debug)]
pub struct RateLimiter {
    failures: Mutex<HashMap<String, (u32, Instant)>>,
    max: u32,
    window: Duration,
}

impl RateLimiter {
    pub fn new(max: u32, window: Duration) -> RateLimiter {
        RateLimiter {
            failures: Mutex::new(HashMap::new()),
            max,
            window,
        }
    }

    /// Whether another attempt is allowed now.
    pub fn allowed(&self, key: &str) -> bool {
        self.wait(key).is_none()
    }

    /// How long `key` must wait before its next attempt; `None` when it may try now.
    pub fn wait(&self, key: &str) -> Option<Duration> {
        let mut map = self.failures.lock();
        match map.get(key) {
            Some((_, since)) if since.elapsed() > self.window => {
                map.remove(key);
                None
            }
            Some((n, since)) if *n >= self.max => Some(self.window.saturating_sub(since.elapsed())),
            _ => None,
        }
    }

    pub fn failed(&self, key: &str) {
        let mut map = self.failures.lock();
        if map.len() > limits::LOGIN_LIMITER_KEYS_MAX {
            // Bounded memory under a spray of distinct keys: forget the old ones, then,
            // if need be, those that hold nobody back yet.
            let (window, max) = (self.window, self.max);
            map.retain(|_, (_, since)| since.elapsed() <= window);
            if map.len() > limits::LOGIN_LIMITER_KEYS_MAX {
                map.retain(|_, (n, _)| *n >= max);
            }
        }
        let entry = map.entry(key.to_owned()).or_insert((0, Instant::now()));
        entry.0 += 1;
    }

    pub fn succeeded(&self, key: &str) {
        self.failures.lock().remove(key);
    }
}

/// Failed logins per account from every address: past a budget, each attempt from an
/// address the account never logged in from must wait after the last failure (see the
/// module documentation).  Time is passed in, so the logic is tested without sleeping.
#[derive(Debug)]
pub struct AccountThrottle {
    accounts: Mutex<HashMap<String, Account>>,
    /// Failures allowed before the throttle applies.
    free: u32,
    /// Failures are forgotten once none came for this long.
    window: Duration,
}

#[derive(Debug, Default)]
struct Account {
    failures: u32,
    last_failure: Option<Instant>,
    /// Addresses the account logged in from, the most recent last.
    known: VecDeque<String>,
}

impl AccountThrottle {
    pub fn new(free: u32, window: Duration) -> AccountThrottle {
        AccountThrottle {
            accounts: Mutex::new(HashMap::new()),
            free,
            window,
        }
    }

    /// `Ok` when `client` may try `login` at `now`; else how long it must wait.
    pub fn check(&self, login: &str, client: &str, now: Instant) -> Result<(), Duration> {
        let mut accounts = self.accounts.lock();
        let Some(account) = accounts.get_mut(login) else {
            return Ok(());
        };
        let Some(last) = account.last_failure else {
            return Ok(());
        };
        if now.saturating_duration_since(last) > self.window {
            account.failures = 0;
            account.last_failure = None;
            return Ok(());
        }
        if account.failures < self.free || account.known.iter().any(|a| a == client) {
            return Ok(());
        }
        let wait = self.delay(account.failures);
        let ready = last + wait;
        if now >= ready {
            Ok(())
        } else {
            Err(ready - now)
        }
    }

    /// The wait after `failures` failures (past the free budget): 1 s, doubling.
    fn delay(&self, failures: u32) -> Duration {
        let over = failures.saturating_sub(self.free).min(16);
        Duration::from_secs(1u64 << over).min(limits::LOGIN_DELAY_MAX)
    }

    pub fn failed(&self, login: &str, now: Instant) {
        let mut accounts = self.accounts.lock();
        if accounts.len() > limits::LOGIN_LIMITER_KEYS_MAX {
            let window = self.window;
            accounts.retain(|_, a| {
                !a.known.is_empty()
                    || a.last_failure
                        .is_some_and(|l| now.saturating_duration_since(l) <= window)
            });
            // Still too many (a spray of logins): keep the accounts under attack and
            // those with known addresses, forget the others' few failures.
            if accounts.len() > limits::LOGIN_LIMITER_KEYS_MAX {
                let free = self.free;
                accounts.retain(|_, a| !a.known.is_empty() || a.failures >= free);
            }
        }
        let account = accounts.entry(login.to_owned()).or_default();
        if account
            .last_failure
            .is_some_and(|l| now.saturating_duration_since(l) > self.window)
        {
            account.failures = 0;
        }
        account.failures = account.failures.saturating_add(1);
        account.last_failure = Some(now);
    }

    /// A correct password for `login` from `client`: the address is remembered as the
    /// account's.  Failures from others are kept (a guesser keeps waiting).
    pub fn succeeded(&self, login: &str, client: &str) {
        let mut accounts = self.accounts.lock();
        let account = accounts.entry(login.to_owned()).or_default();
        account.known.retain(|a| a != client);
        account.known.push_back(client.to_owned());
        while account.known.len() > limits::LOGIN_KNOWN_ADDRESSES_MAX {
            account.known.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sessions_are_signed_and_expire() {
        let c = sign_session("k", "alice|x", 3, false, Duration::from_secs(60));
        let s = verify_session("k", &c).unwrap();
        assert_eq!(
            (s.login.as_str(), s.generation, s.bootstrap),
            ("alice|x", 3, false)
        );
        assert!(verify_session("other", &c).is_none());
        let mut forged = c.clone();
        forged.replace_range(0..1, if c.starts_with('Y') { "Z" } else { "Y" });
        assert!(verify_session("k", &forged).is_none());
        let expired = sign_session("k", "alice", 0, false, Duration::ZERO);
        assert!(verify_session("k", &expired).is_none());
    }

    #[test]
    fn tokens_and_sessions_never_pass_for_each_other() {
        let token = sign_token("k", "alice", 3, false, Duration::from_secs(60));
        let s = verify_token("k", &token).unwrap();
        assert_eq!((s.login.as_str(), s.generation), ("alice", 3));
        assert!(verify_session("k", &token).is_none());
        let cookie = sign_session("k", "alice", 3, false, Duration::from_secs(60));
        assert!(verify_token("k", &cookie).is_none());
        assert!(verify_token("other", &token).is_none());
    }

    #[test]
    fn csrf_tokens_match_their_cookie_only() {
        let cookie = new_csrf_cookie();
        let token = csrf_token("k", &cookie);
        assert!(csrf_ok("k", &cookie, &token));
        assert!(!csrf_ok("k", &new_csrf_cookie(), &token));
        assert!(!csrf_ok("k", "", &csrf_token("k", "")));
        assert!(!csrf_ok("k", &cookie, "garbage!"));
    }

    #[test]
    fn signed_values_verify_only_untouched_and_for_their_purpose() {
        let v = sign("k", "clipboard", b"{\"op\":\"cut\"}");
        assert_eq!(
            verify("k", "clipboard", &v).as_deref(),
            Some(b"{\"op\":\"cut\"}".as_slice())
        );
        assert!(verify("k", "other", &v).is_none());
        assert!(verify("other", "clipboard", &v).is_none());
        let (_, sig) = v.split_once('.').unwrap();
        let forged = format!("{}.{sig}", URL_SAFE_NO_PAD.encode(b"{\"op\":\"copy\"}"));
        assert!(verify("k", "clipboard", &forged).is_none());
        assert!(verify("k", "clipboard", "no-dot").is_none());
    }

    #[test]
    fn a_throttled_account_slows_guessers_down_and_lets_its_owner_in() {
        let t = AccountThrottle::new(3, Duration::from_secs(300));
        let start = Instant::now();
        let at = |s: u64| start + Duration::from_secs(s);
        t.succeeded("bob", "owner");
        // Three free failures from rotating addresses.
        for i in 0..3 {
            assert_eq!(t.check("bob", &format!("10.0.0.{i}"), at(0)), Ok(()));
            t.failed("bob", at(0));
        }
        // Then each must wait after the last failure: 1 s, 2 s, 4 s, ...
        assert_eq!(
            t.check("bob", "10.0.0.9", at(0)),
            Err(Duration::from_secs(1))
        );
        assert_eq!(t.check("bob", "10.0.0.9", at(1)), Ok(()));
        t.failed("bob", at(1));
        assert!(t.check("bob", "10.0.0.10", at(2)).is_err());
        assert_eq!(t.check("bob", "10.0.0.10", at(3)), Ok(()));
        // The owner's address is never held back; other accounts neither.
        assert_eq!(t.check("bob", "owner", at(1)), Ok(()));
        assert_eq!(t.check("carol", "10.0.0.9", at(1)), Ok(()));
        // However many failures, the wait stays bounded.
        for s in 0..100 {
            t.failed("bob", at(10 + s));
        }
        assert_eq!(
            t.check("bob", "10.0.0.9", at(109)),
            Err(limits::LOGIN_DELAY_MAX)
        );
        assert_eq!(
            t.check(
                "bob",
                "new-address-of-the-owner",
                at(109) + limits::LOGIN_DELAY_MAX
            ),
            Ok(())
        );
        // A quiet window forgets the failures.
        assert_eq!(t.check("bob", "10.0.0.9", at(109 + 301)), Ok(()));
        t.failed("bob", at(109 + 302));
        assert_eq!(t.check("bob", "10.0.0.9", at(109 + 302)), Ok(()));
    }

    #[test]
    fn rate_limiter_blocks_after_max_failures() {
        let r = RateLimiter::new(3, Duration::from_secs(60));
        for _ in 0..3 {
            assert!(r.allowed("ip|bob"));
            r.failed("ip|bob");
        }
        assert!(!r.allowed("ip|bob"));
        assert!(r.allowed("ip|eve"));
        r.succeeded("ip|bob");
        assert!(r.allowed("ip|bob"));
    }
}
