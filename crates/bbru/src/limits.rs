//! Every limit of the web application and its commands, in one place, each with its
//! reason.  Names put the qualifier last (`clipboard_bytes_max`).  Values that a site may
//! want to change live in `etc/site.toml` / `etc/serve.toml` instead (`config.rs`), with
//! their defaults there.

use std::time::Duration;

/// How long a stopping instance keeps serving the connections it accepted after it
/// stopped accepting new ones, before it asks them to close.  A connection accepted a
/// moment before the stop may not have sent its request yet; closed at once, it would
/// be reset with the request unread.  Its request arrives within this delay and is
/// served; the graceful shutdown then waits for every request in flight.
pub const DRAIN: Duration = Duration::from_millis(500);

/// Bytes a request body may hold beyond the site's `upload_size_max`: the multipart
/// framing and the other fields of an upload form.
pub const BODY_OVERHEAD_BYTES: usize = 1024 * 1024;

/// Largest clipboard cookie value: browsers keep cookies of about 4 KB.
pub const CLIPBOARD_BYTES_MAX: usize = 3500;

/// Largest folder whose order may be arranged by hand (the order is one list).
pub const REORDER_ITEMS_MAX: usize = 1000;

/// Items per page of a folder's listing.
pub const LISTING_BATCH_SIZE: usize = 500;

/// Revisions listed on `@@history`.
pub const HISTORY_ENTRIES_MAX: usize = 50;

/// Transactions listed on `/@@undo`.
pub const UNDO_LOG_ENTRIES_MAX: usize = 50;

/// How far back a posted undo looks for the chosen transactions' descriptions.
pub const UNDO_LOOKUP_ENTRIES_MAX: usize = 1000;

/// Shortest password accepted, in characters (not bytes), wherever a password is set:
/// the users views and the bootstrap manager of `etc/site.toml`.
pub const PASSWORD_CHARS_MIN: usize = 8;

/// How many addresses' worth of failed logins one account may take in a window before
/// it is throttled (this times the per-address `login_attempts_max`).
pub const LOGIN_ADDRESSES_PER_ACCOUNT: u32 = 4;

/// Longest wait between two login attempts on a throttled account from an address that
/// never logged into it: the wait doubles with each failure from 1 s up to this, so a
/// guesser gets about one guess a minute per account, and the owner, from a new
/// address, waits at most this long.
pub const LOGIN_DELAY_MAX: std::time::Duration = std::time::Duration::from_secs(60);

/// Addresses remembered per account as ones it logged in from (exempt from the
/// account's throttle), the most recent kept.
pub const LOGIN_KNOWN_ADDRESSES_MAX: usize = 8;

/// Keys a login rate limiter keeps before it forgets the expired ones (memory bound
/// under a spray of distinct logins or addresses).
pub const LOGIN_LIMITER_KEYS_MAX: usize = 100_000;

/// How long `bbru test`'s connectivity check waits for a ZEO server.
pub const SELFTEST_ZEO_WAIT: Duration = Duration::from_secs(10);

/// How long one HTTP request of `bbru test`'s functional checks may take.
pub const SELFTEST_HTTP_TIMEOUT: Duration = Duration::from_secs(60);

/// Shortest secret key accepted, in bytes of the file (surrounding whitespace aside): 32
/// hex digits of a random source are 128 bits, the least a signing key should have; the
/// file bbru makes holds 64 (256 bits).
pub const SECRET_KEY_BYTES_MIN: usize = 32;

/// Longest file name stored with an upload, in characters: what file systems allow
/// (255), and the `Content-Disposition` of every download carries it.
pub const FILENAME_CHARS_MAX: usize = 255;

/// How many `item-<n>` names are tried for an item whose title gives no name (each try
/// is a lookup in the folder).
pub const NUMBERED_NAMES_MAX: usize = 1000;

/// How often an instance checks that the handover name leads to a live instance (and
/// claims it otherwise). Short, because a deploy that starts while the name is stale binds
/// with `SO_REUSEPORT` and can drop requests; the check reads a link and signals nothing.
pub const HANDOVER_NAME_CHECK_INTERVAL: Duration = Duration::from_millis(500);

/// How long a new instance waits for the live one's answer on the handover socket.
pub const HANDOVER_ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// The default of `bbru deploy --health-timeout`: long enough for an instance to open a
/// large database and warm up, short enough that a broken release is refused promptly.
pub const DEPLOY_HEALTH_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// How long an instance left running by an interrupted deploy gets to finish its requests
/// when the next deploy stops it (as `--stop-daemon` gives).
pub const DEPLOY_ORPHAN_STOP_TIMEOUT: Duration = Duration::from_secs(30);
