//! The instance's shared state ([`App`]) and what it answers about itself: the cookies it
//! sets (flags, the session cookie and its lifetime) and the login rate limits it keeps.

use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::http::HeaderMap;
use zodb::{DB, PRef, Transaction};

use crate::config::{SecureCookies, SiteConfig};
use crate::model::Site;
use crate::security::Principal;
use crate::security::auth::{self, RateLimiter};

use super::metrics;

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
    /// Failed logins per login from any address (a larger budget), so rotating
    /// addresses does not lift the limit on one account.
    pub login_limiter: RateLimiter,
    pub metrics: metrics::Metrics,
    /// Where the site configuration lives (for the messages that mention it).
    pub site_config_path: String,
    /// The release serving (`bbru-X.Y.Z`), empty when not deployed as a release.
    pub release: String,
    /// One permit per pooled connection: requests beyond them wait (in async land)
    /// instead of opening connections whose caches start cold and are dropped after.
    pub slots: Arc<tokio::sync::Semaphore>,
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
    pub fn login_allowed(&self, client: &str, login: &str) -> bool {
        self.limiter.allowed(&format!("{client}|{login}")) && self.login_limiter.allowed(login)
    }

    pub fn login_failed(&self, client: &str, login: &str) {
        self.limiter.failed(&format!("{client}|{login}"));
        self.login_limiter.failed(login);
    }

    pub fn login_succeeded(&self, client: &str, login: &str) {
        self.limiter.succeeded(&format!("{client}|{login}"));
        self.login_limiter.succeeded(login);
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
