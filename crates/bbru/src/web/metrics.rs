//! Request metrics in the Prometheus text format (`/@@metrics`): requests by view and
//! status, latency histogram, requests run again after a conflict and those that still
//! conflicted after every attempt, and the database's counters (loads, cache hits,
//! commits, conflicts, conflicts resolved) read at scrape time, and how plain views ran
//! (in line on the worker that took the request, or again on the blocking pool after a
//! load needed the storage's server: `web/workers.rs`).  No series is labelled
//! with anything a client chose, so their number is bounded.

use std::time::Duration;

use parking_lot::Mutex;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    // A name of the view table: static, so counting a request allocates nothing.
    view: &'static str,
    status: u16,
}

/// The instance's metrics.
pub struct Metrics {
    registry: Mutex<Registry>,
    requests: Family<RequestLabels, Counter>,
    latency: Histogram,
    conflict_retries: Counter,
    conflicts_given_up: Counter,
    in_line: Counter,
    in_line_refused: Counter,
    page_cache_hits: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Metrics").finish_non_exhaustive()
    }
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::default();
        let requests = Family::<RequestLabels, Counter>::default();
        registry.register(
            "bbru_requests",
            "HTTP requests by view and status",
            requests.clone(),
        );
        let latency = Histogram::new(exponential_buckets(0.0005, 2.0, 14));
        registry.register(
            "bbru_request_duration_seconds",
            "Time to answer a request",
            latency.clone(),
        );
        let mut counter = |name: &str, help: &str| {
            let c = Counter::default();
            registry.register(name, help, c.clone());
            c
        };
        let conflict_retries = counter(
            "bbru_conflict_retries",
            "Requests run again after their transaction conflicted",
        );
        let conflicts_given_up = counter(
            "bbru_conflicts_given_up",
            "Requests answered 409 because their transaction still conflicted after every attempt",
        );
        let in_line = counter(
            "bbru_views_in_line",
            "Plain views answered on the worker that took the request",
        );
        let in_line_refused = counter(
            "bbru_views_in_line_refused",
            "Plain views run again on the blocking pool because a load needed the storage's server",
        );
        let page_cache_hits = counter(
            "bbru_page_cache_hits",
            "Anonymous page views answered from the page cache",
        );
        Metrics {
            registry: Mutex::new(registry),
            requests,
            latency,
            conflict_retries,
            conflicts_given_up,
            in_line,
            in_line_refused,
            page_cache_hits,
        }
    }
}

impl Metrics {
    /// Records one answered request.  `view` is a name of the table of views (or
    /// "default", "other": see `views::label`), never text of the request, so the
    /// label set is bounded whatever clients ask for.
    pub fn observe(&self, view: &'static str, status: u16, elapsed: Duration) {
        self.requests
            .get_or_create(&RequestLabels { view, status })
            .inc();
        self.latency.observe(elapsed.as_secs_f64());
    }

    /// Counts a request's transaction run again after a conflict.
    pub fn conflict_retried(&self) {
        self.conflict_retries.inc();
    }

    /// Counts a request that still conflicted after its last attempt (answered 409).
    pub fn conflict_given_up(&self) {
        self.conflicts_given_up.inc();
    }

    /// Counts a plain view answered in line.
    pub fn view_in_line(&self) {
        self.in_line.inc();
    }

    /// Counts a plain view run in line, then again on the blocking pool.
    pub fn view_in_line_refused(&self) {
        self.in_line_refused.inc();
    }

    /// Counts a page answered from the page cache.
    pub fn page_cache_hit(&self) {
        self.page_cache_hits.inc();
    }

    /// The text exposition, with the database counters appended, and for a ZEO client
    /// whether it holds its read lease (`read_lease`; `None`: not a ZEO client).
    pub fn render(
        &self,
        db: &zodb::DbStats,
        page_renders: u64,
        password_checks: u64,
        read_lease: Option<bool>,
    ) -> String {
        let mut out = String::new();
        let registry = self.registry.lock();
        if let Err(e) = prometheus_client::encoding::text::encode_registry(&mut out, &registry) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        for (name, help, value) in [
            (
                "bbru_storage_loads",
                "Objects read from the storage",
                db.loads,
            ),
            (
                "bbru_cache_hits",
                "Objects found in a connection cache",
                db.cache_hits,
            ),
            ("bbru_commits", "Transactions committed", db.commits),
            (
                "bbru_conflicts",
                "Commits that failed with a conflict no resolver merged",
                db.conflicts,
            ),
            (
                "bbru_conflicts_resolved",
                "Conflicting changes merged by a resolver (the commit went on)",
                db.resolved_conflicts,
            ),
            (
                "bbru_page_renders",
                "Page bodies rendered to HTML (the others came from the cache)",
                page_renders,
            ),
            (
                "bbru_password_checks",
                "argon2 password verifications (remembered HTTP Basic logins skip them)",
                password_checks,
            ),
        ] {
            out.push_str(&format!(
                "# HELP {name} {help}.\n# TYPE {name} counter\n{name}_total {value}\n"
            ));
        }
        if let Some(held) = read_lease {
            // 0 means every request makes a round trip to the ZEO server first.
            let name = "bbru_zeo_read_lease";
            out.push_str(&format!(
                "# HELP {name} Whether the instance holds its read lease of the ZEO server (1) or syncs by round trips (0).\n# TYPE {name} gauge\n{name} {}\n",
                u8::from(held)
            ));
        }
        if let Err(e) = prometheus_client::encoding::text::encode_eof(&mut out) {
            tracing::error!(error = %e, "cannot encode metrics");
        }
        out
    }
}
