//! The instance's shared state ([`App`]) and what it answers about itself: the cookies it
//! sets (flags, the session cookie and its lifetime) and the login rate limits it keeps.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use ipnet::IpNet;
use zodb::{DB, PRef, Transaction};

use crate::config::{HttpSettings, SecureCookies, SiteConfig};
use crate::model::Site;
use crate::security::Principal;
use crate::security::auth::{self, AccountThrottle, RateLimiter};
use crate::security::password::Verifier;
use crate::web::AppError;

use super::auth::BasicCache;
use super::metrics;
use super::views::content::RenderedPages;

/// Everything a request needs, shared by all requests of an instance.
pub struct App {
    pub db: DB,
    pub config: SiteConfig,
    /// `None` while the database has no site (no bootstrap manager declared yet).
    pub site: Option<PRef<Site>>,
    pub secret: String,
    /// The bootstrap manager's login and password hash, when declared and usable.
    pub bootstrap: Option<(String, String)>,
    /// Whether the bootstrap manager stays usable once a local manager exists
    /// (`keep = true`); otherwise it is refused from the moment one exists, its
    /// sessions included, not only at the next start.
    pub bootstrap_keep: bool,
    /// Failed logins per client address and login.
    pub limiter: RateLimiter,
    /// Failed logins per login from any address (a larger budget, then a growing wait
    /// for addresses the account never logged in from), so rotating addresses does not
    /// lift the limit on one account, and failing on purpose locks nobody out.
    pub account_throttle: AccountThrottle,
    /// Peers whose `X-Forwarded-For` is believed (`trusted_proxies` of
    /// `etc/serve.toml`; none by default).
    pub trusted_proxies: Vec<IpNet>,
    pub metrics: metrics::Metrics,
    /// Where the site configuration lives (for the messages that mention it).
    pub site_config_path: String,
    /// The release serving (`bbru-X.Y.Z`), empty when not deployed as a release.
    pub release: String,
    /// One permit per pooled connection: requests beyond them wait (in async land)
    /// instead of opening connections whose caches start cold and are dropped after.
    pub slots: Arc<tokio::sync::Semaphore>,
    /// Whether plain page views run on the runtime's worker that took the request
    /// rather than on the blocking pool: the storage answers from local files (a load
    /// is an index lookup and a read of the page cache), so a hand-off to another
    /// thread and back would cost more than the view (two context switches).
    pub views_in_line: bool,
    /// Bytes of request bodies held at once ([`crate::limits::BODY_BUDGET_BYTES`]).
    pub body_budget: Arc<tokio::sync::Semaphore>,
    /// Password checks: a few at once, on reused memory.
    pub verifier: Verifier,
    /// Recent successful HTTP Basic verifications.
    pub basic_cache: BasicCache,
    /// Sanitised HTML of pages, by object and revision.
    pub pages: RenderedPages,
    /// Walks of the content tree for feeds and the sitemap running at once.
    pub discovery: super::gate::Gate,
    /// Anonymous pages of the newest transaction (`page_cache.rs`).
    pub page_cache: super::page_cache::PageCache,
    /// Image scales made by this instance (`views/images.rs`).
    pub scales: super::views::images::ImageScales,
    /// Timeouts and the metrics access of `etc/serve.toml` (defaults until the
    /// command sets them).
    pub http: HttpSettings,
    /// How many times a request whose transaction conflicts is run again before it is
    /// answered 409 (`conflict_retries` of `etc/serve.toml`).
    pub conflict_retries: u32,
    /// The turns that requests which kept conflicting take
    /// ([`limits::CONFLICT_TURNS_AFTER`](crate::limits::CONFLICT_TURNS_AFTER)).
    pub conflict_turns: zodb::Turns,
}

impl std::fmt::Debug for App {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("App")
            .field("db", &self.db)
            .finish_non_exhaustive()
    }
}

/// Seconds since the epoch, as content times are stored.
pub fn now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

impl App {
    /// Whether the bootstrap manager `login` may act now: declared, usable at start, and
    /// (unless kept) no local manager made since.
    pub fn bootstrap_usable(
        &self,
        tx: &Transaction<'_>,
        site: PRef<Site>,
        login: &str,
    ) -> Result<bool, zodb::Error> {
        match &self.bootstrap {
            Some((boot, _)) if boot == login => {
                Ok(self.bootstrap_keep || !Site::local_manager_exists(tx, site)?)
            }
            _ => Ok(false),
        }
    }

    /// Whether another login attempt for `login` from `client` may be checked now.
    /// `Ok` when `client` may try to log in as `login` now; else
    /// [`AppError::TooManyRequests`] with how long it must wait.
    pub fn login_allowed(&self, client: &str, login: &str) -> Result<(), AppError> {
        let by_address = self.limiter.wait(&format!("{client}|{login}"));
        let by_account = self
            .account_throttle
            .check(login, client, Instant::now())
            .err();
        match by_address.max(by_account) {
            None => Ok(()),
            Some(wait) => Err(AppError::TooManyRequests(wait)),
        }
    }

    pub fn login_failed(&self, client: &str, login: &str) {
        self.limiter.failed(&format!("{client}|{login}"));
        self.account_throttle.failed(login, Instant::now());
    }

    pub fn login_succeeded(&self, client: &str, login: &str) {
        self.limiter.succeeded(&format!("{client}|{login}"));
        self.account_throttle.succeeded(login, client);
    }

    /// The client's address: the peer's, unless the peer is a trusted proxy; then the
    /// right-most address of `X-Forwarded-For` that is not a trusted proxy (each proxy
    /// appends the address it got the request from, so entries left of it were written
    /// by the client and prove nothing).  Entries that are no address end the walk.
    pub fn client_address(&self, peer: IpAddr, headers: &HeaderMap) -> String {
        client_address(peer, headers, &self.trusted_proxies)
    }

    /// Whether cookies this request sets get the `Secure` flag.
    pub fn secure(&self, headers: &HeaderMap) -> bool {
        match self.config.security.secure_cookies {
            SecureCookies::Always => true,
            SecureCookies::Never => false,
            SecureCookies::Auto => headers
                .get("x-forwarded-proto")
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.eq_ignore_ascii_case("https")),
        }
    }

    /// A `Set-Cookie` value with the flags every bbru cookie has.
    pub fn cookie(
        &self,
        headers: &HeaderMap,
        name: &str,
        value: &str,
        max_age: Option<u64>,
    ) -> String {
        let mut c = format!("{name}={value}; Path=/; HttpOnly; SameSite=Lax");
        if let Some(age) = max_age {
            c.push_str(&format!("; Max-Age={age}"));
        }
        if self.secure(headers) {
            c.push_str("; Secure");
        }
        c
    }
}

fn client_address(peer: IpAddr, headers: &HeaderMap, trusted: &[IpNet]) -> String {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client.to_string();
    }
    let forwarded: Vec<&str> = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(str::trim)
        .collect();
    for entry in forwarded.iter().rev() {
        match entry.parse::<IpAddr>() {
            Ok(ip) => {
                client = ip.to_canonical();
                if !is_trusted(&client) {
                    break;
                }
            }
            Err(_) => break,
        }
    }
    client.to_string()
}

/// Lifetime of a session cookie.
pub fn session_lifetime(app: &App) -> Duration {
    Duration::from_secs(app.config.security.session_hours * 3600)
}

/// Headers of the reply to a login: the session cookie.
pub fn session_cookie(
    app: &App,
    headers: &HeaderMap,
    principal: &Principal,
    generation: u64,
) -> String {
    let lifetime = session_lifetime(app);
    let value = auth::sign_session(
        &app.secret,
        principal.login().unwrap_or(""),
        generation,
        matches!(principal, Principal::Bootstrap { .. }),
        lifetime,
    );
    app.cookie(
        headers,
        auth::SESSION_COOKIE,
        &value,
        Some(lifetime.as_secs()),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwarded_addresses_count_only_from_trusted_proxies_right_to_left() {
        let headers = |values: &[&str]| {
            let mut h = HeaderMap::new();
            for v in values {
                h.append("x-forwarded-for", v.parse().unwrap());
            }
            h
        };
        let local: IpAddr = "127.0.0.1".parse().unwrap();
        let remote: IpAddr = "203.0.113.7".parse().unwrap();
        let proxies: Vec<IpNet> = vec![
            "127.0.0.1/32".parse().unwrap(),
            "10.0.0.0/8".parse().unwrap(),
        ];
        let forged = headers(&["6.6.6.6, 198.51.100.2"]);
        // No trusted proxies (the default): the header is ignored, even from loopback.
        assert_eq!(client_address(local, &forged, &[]), "127.0.0.1");
        // A peer that is no trusted proxy: ignored.
        assert_eq!(client_address(remote, &forged, &proxies), "203.0.113.7");
        // Behind the proxy: the right-most entry, not the client-chosen left-most one.
        assert_eq!(client_address(local, &forged, &proxies), "198.51.100.2");
        // Trusted hops are skipped, over several headers.
        let chain = headers(&["6.6.6.6", "198.51.100.2, 10.1.2.3"]);
        assert_eq!(client_address(local, &chain, &proxies), "198.51.100.2");
        // Garbage ends the walk at the last proxy that vouched for something.
        let junk = headers(&["198.51.100.2, not-an-address, 10.1.2.3"]);
        assert_eq!(client_address(local, &junk, &proxies), "10.1.2.3");
        // No header: the proxy itself.
        assert_eq!(
            client_address(local, &HeaderMap::new(), &proxies),
            "127.0.0.1"
        );
        // IPv4 in IPv6 (a dual-stack listener) is the IPv4 address.
        let mapped: IpAddr = "::ffff:127.0.0.1".parse().unwrap();
        assert_eq!(client_address(mapped, &forged, &proxies), "198.51.100.2");
    }
}
