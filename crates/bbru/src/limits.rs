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

/// Largest clipboard cookie value: browsers keep cookies of about 4 KB.
pub const CLIPBOARD_BYTES_MAX: usize = 3500;

/// Largest folder whose order may be arranged by hand (the order is one list).
pub const REORDER_ITEMS_MAX: usize = 1000;

/// Items per page of a folder's listing.
pub const LISTING_BATCH_SIZE: usize = 500;

/// Items listed per folder in the section navigation of every page: each is an object
/// loaded for the page, so a folder of thousands must not make every page beside it
/// slow; its own listing (batched) shows the rest.
pub const NAV_ITEMS_MAX: usize = 30;

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

/// Files `bbru migrate` moves into blobs per transaction: a few hundred records and
/// blob stores make a commit that is quick to vote and to retry after a conflict, and
/// an interruption loses at most one batch's work.
pub const MIGRATE_BATCH_FILES_MAX: usize = 100;

/// Bytes `bbru migrate` moves per transaction (unless one file is larger): the inline
/// bytes of a batch are loaded in memory together, and with ZEO travel to the server
/// at its vote.
pub const MIGRATE_BATCH_BYTES_MAX: u64 = 64 * 1024 * 1024;

/// How many times `bbru migrate` runs a batch that conflicts with instances editing the
/// same files before it stops (run it again: it goes on where it stopped).
pub const MIGRATE_ATTEMPTS: u32 = 5;

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

/// How long an instance starting on a ZEO server waits for it (`bbru serve --zeo`): a
/// server started together with the instance has this long to come up.
pub const ZEO_CONNECT_WAIT: Duration = Duration::from_secs(30);

/// Instances that may share one blob cache directory (`[storage] blob_cache_dir`), each
/// in a subdirectory of its own (`blob_cache.rs`): a deploy runs two at once; sixteen
/// leave room for several instances on one host, and more means a misconfiguration.
pub const BLOB_CACHES_PER_DIRECTORY_MAX: usize = 16;

/// How long a request made while the ZEO server is away waits for the client to
/// reconnect (it tries every 1–2 s) before it is answered 503.  A request that arrives
/// in the last second of a short outage (a restart of `bbru-zeo`) is then served, and
/// none holds a worker slot longer than this while the server is really gone.
pub const ZEO_DISCONNECTED_WAIT: Duration = Duration::from_secs(1);

/// How long a request waits for the ZEO server to answer its sync (one round trip,
/// shared with the requests of the same moment, usually well under a millisecond), a
/// load or another read before it is answered 503, in line or on the blocking pool
/// (`ClientOptions::answer_wait`): a server that keeps the connection up but has
/// stopped answering must not hold requests (and the connections they came on)
/// without end.
pub const ZEO_ANSWER_WAIT: Duration = Duration::from_secs(10);

/// How long a request's vote, finish or abort waits for the ZEO server's answer
/// (`ClientOptions::commit_wait`) before the instance gives the connection up (the
/// server aborts the transaction) and answers 503.  A vote may wait on the server for
/// objects another client is committing, up to its lock timeout
/// (`zeo::limits::LOCK_TIMEOUT_SECONDS_DEFAULT`, 60 s): this leaves it that and half a
/// minute more, and still bounds a request whose server hung between its start (with a
/// read lease, no round trip) and its commit.
pub const ZEO_COMMIT_WAIT: Duration =
    Duration::from_secs(zeo::limits::LOCK_TIMEOUT_SECONDS_DEFAULT + 30);

/// How long `/@@health` waits for the storage to answer its check (a ZEO ping).  A
/// live server answers a ping in milliseconds, whatever it is busy with (a ping waits
/// for no lock); load balancers give up on a health probe after a few seconds, so the
/// verdict must come well before.
pub const HEALTH_STORAGE_DEADLINE: Duration = Duration::from_secs(1);

/// How many times a request whose commit hit a lock timeout (its objects held by a
/// transaction that did not finish) is run again before it is answered 503.  Once: the
/// holder is usually gone by then (the server aborts stalled transactions after its
/// transaction timeout, half its lock timeout), and each try can wait a whole lock
/// timeout.
pub const LOCK_TIMEOUT_RETRIES: u32 = 1;

/// How many times a request whose transaction still conflicts (a change no resolver
/// merges, such as two edits of one page or the split of a folder's bucket) is run again
/// by default before it is answered 409 (`conflict_retries` in `[storage]` of
/// `etc/serve.toml`).  Eight: Zope's publisher retries a `ConflictError` three times,
/// and each retry runs on a newer snapshot, so a conflict with one concurrent writer is
/// over after the first; but every creation here also writes the search index, whose
/// buckets all creations share, and two splits of one bucket, or an insert into the
/// half a split moved, merge with nothing: under a burst of creations a request can
/// meet several in a row.  More retries, with waits growing to [`CONFLICT_RETRY_BACKOFF_MAX`], let it
/// pass after the burst (a stress test of concurrent creators on two instances saw
/// 409s with three and with five on a loaded machine).
pub const CONFLICT_RETRIES_DEFAULT: u32 = 8;

/// The most `conflict_retries` a configuration may ask for: each retry runs the whole
/// request again holding a connection slot, so a larger number only makes a contended
/// object slower for everyone.
pub const CONFLICT_RETRIES_MAX: u32 = 10;

/// The longest random wait before a request is run again after a conflict.  The wait is
/// random below 1 ms before the first retry, the ceiling doubling each retry up to this
/// (`zodb::TransactionManager::with_backoff`): a few milliseconds are about a commit's
/// time, enough for the writers that collided to commit one after the other instead of
/// colliding again in step, and short against a request's time (at most 1 + 2 + 4 ms
/// with three retries; at most about 190 ms in all with the default eight, the waits
/// doubling up to 64 ms, long enough to outlast a burst of colliding creations).
pub const CONFLICT_RETRY_BACKOFF_MAX: Duration = Duration::from_millis(64);

/// Attempts after which a request whose transaction keeps conflicting takes turns with
/// the instance's other such requests (`zodb::TransactionManager::with_turns`): one
/// conflict is usually over after a retry on a newer snapshot; a request that met two
/// is in a hot spot (a burst of creations writing the search index's shared buckets),
/// where writers retrying side by side would meet again. Taking turns leaves them
/// only the instance's fresh writers and other instances to meet.
pub const CONFLICT_TURNS_AFTER: u32 = 2;

// ---- Request bodies -------------------------------------------------------------------

/// Default of `[site] upload_size_max` (etc/site.toml): the largest file one request may
/// upload, 1 GiB.  Uploads stream into a blob file, so memory per upload stays a few MiB
/// whatever the size; what a large upload costs is disk space and time, and 1 GiB holds
/// the videos, disk images and archives a content site publishes.
pub const UPLOAD_SIZE_MAX_DEFAULT: usize = 1 << 30;

/// Largest file kept inside its record, when the storage has no blobs (a ZEO server
/// without a blob directory): such a file is held in memory while it is stored, travels
/// in one ZEO frame (64 MiB at most) and is read whole with its record.  20 MiB, the
/// upload limit of the releases that kept every file that way.
pub const INLINE_FILE_BYTES_MAX: usize = 20 * 1024 * 1024;

/// Bytes the text fields of a multipart form may hold together (title, description,
/// CSRF token, a page body): a page body at its largest ([`PAGE_BODY_BYTES_MAX`]) and the
/// form's other fields, with room left so a body over the page limit is refused by the
/// page check, which says why.  Also the bound of a urlencoded body of an upload view.
pub const FORM_TEXT_BYTES_MAX: usize = 2 * PAGE_BODY_BYTES_MAX;

/// Bytes of multipart framing a form may have beyond its files and text fields: a
/// boundary and part headers for each of its at most [`MULTIPART_PARTS_MAX`] parts.
pub const MULTIPART_FRAMING_BYTES: usize = 256 * 1024;

/// Largest JSON body of the API (create or edit): a file sent in it as base64 (`data`)
/// is decoded in memory, where the text, the parsed value and the bytes take about three
/// times the body, so the bound keeps a request's memory small.  16 MiB hold a file of
/// 12 MiB; larger files go through the upload forms (`@@add`, `@@edit`), which stream.
pub const JSON_BODY_BYTES_MAX: usize = 16 * 1024 * 1024;

/// Bytes of an upload written to its file at a time (on the blocking pool).
pub const UPLOAD_WRITE_BYTES: usize = 1024 * 1024;

/// Bytes of the body budget ([`BODY_BUDGET_BYTES`]) a streamed upload takes for as long
/// as it is read: its write buffer and about a chunk held by hyper and by multer each.
/// With the default budget, 32 uploads stream at once; more wait, then get 503.
pub const UPLOAD_STREAM_MEMORY_BYTES: usize = 2 * UPLOAD_WRITE_BYTES;

/// The slowest average rate a streamed upload may arrive at: a multipart body has
/// `body_read_timeout_seconds` plus a second per this many bytes received.  16 KiB/s
/// (128 kbit/s, a poor mobile link) lets any real client finish, while one that stalls
/// or trickles to hold a connection and a file open is cut off (408).
pub const UPLOAD_RATE_MIN_BYTES_PER_SECOND: u64 = 16 * 1024;

/// Bytes read from a blob file per chunk of a download: a file of any size streams
/// through this much memory.
pub const DOWNLOAD_CHUNK_BYTES: usize = 256 << 10;

/// Largest body of a view that takes neither an upload nor a page body (login, logout,
/// grants, users, folder actions, undo, revert): their forms are a few fields, so a
/// large body there is only ever an attack, refused before it is read.
pub const FORM_BODY_BYTES_MAX: usize = 256 * 1024;

/// Bytes of a refused request's body (not authenticated, not allowed, no such view)
/// read and dropped before the answer: a client that sends its whole body before it
/// reads the answer (most HTTP libraries) then gets the answer instead of a reset
/// connection.  Larger bodies are left unread and the connection is closed.
pub const REFUSED_BODY_DRAIN_BYTES_MAX: usize = 64 * 1024;

/// How long the rest of a refused upload is read and dropped beside the answer (an
/// upload past the size limit, a form without its CSRF token before its file): most
/// clients, browsers included, send the whole body before they read the answer, and a
/// connection closed with their data unread is reset, the answer lost.  The client was
/// admitted (authenticated, allowed to upload), so a few seconds of its bandwidth are
/// fine; nginx's `lingering_timeout` is as long.  The body is dropped, never kept.
pub const REFUSED_UPLOAD_DRAIN_WAIT: Duration = Duration::from_secs(5);

/// Fields a urlencoded or multipart form may have.  Our largest forms (a folder's
/// contents with its checkboxes, the grants table) have a few hundred; without a bound,
/// a 20 MiB body of `a&a&…` is ten million fields, each an allocation.
pub const FORM_FIELDS_MAX: usize = 2000;

/// Parts a multipart body may have (each part costs headers and allocations); our
/// upload forms have fewer than ten.
pub const MULTIPART_PARTS_MAX: usize = 100;

/// Nesting of arrays and objects in a JSON body: the API takes flat objects; deep
/// nesting only costs stack and allocations.
pub const JSON_DEPTH_MAX: usize = 32;

/// Values (scalars, arrays, objects) a JSON body may hold: the API takes a handful of
/// fields; a 20 MiB `[0,0,…]` is ten million `Value`s (about 400 MB) otherwise.
pub const JSON_VALUES_MAX: usize = 10_000;

/// Bytes of request bodies held in memory at once by the whole instance (being read,
/// parsed or used; a streamed upload counts [`UPLOAD_STREAM_MEMORY_BYTES`]); a request
/// whose body does not fit waits [`BODY_BUDGET_WAIT`], then gets 503.  With it,
/// concurrent large bodies cannot take the instance's memory.  It holds the largest
/// body kept in memory ([`JSON_BODY_BYTES_MAX`], a file of [`INLINE_FILE_BYTES_MAX`]
/// in a form) several times over.
pub const BODY_BUDGET_BYTES: usize = 64 * 1024 * 1024;

/// How long a request waits for room in [`BODY_BUDGET_BYTES`] before it is refused with
/// 503 (the client may retry).
pub const BODY_BUDGET_WAIT: Duration = Duration::from_secs(2);

// ---- Passwords and credentials --------------------------------------------------------

/// argon2 verifications running at once, per CPU core: each takes 19 MiB and about
/// 20 ms of one core, so more at once only adds memory, not throughput.
pub const PASSWORD_CHECKS_PER_CORE: usize = 1;

/// How long a request waits for a free argon2 slot before it is answered 503.
pub const PASSWORD_CHECK_WAIT: Duration = Duration::from_secs(5);

/// Largest argon2 memory cost (KiB) of a stored hash we verify.  bbru makes 19 MiB
/// hashes; an imported or configured hash asking for more than this is refused (and
/// logged) rather than letting one login take any memory it names.
pub const PASSWORD_HASH_MEMORY_KIB_MAX: u32 = 64 * 1024;

/// Successful HTTP Basic verifications remembered, so a script sending the same
/// credentials with every request costs one argon2 run, not one per request.
pub const BASIC_CACHE_ENTRIES_MAX: usize = 1024;

/// How long a successful HTTP Basic verification is remembered.  Short, so a password
/// guessed by a thief is not kept; a changed password or removed user takes effect at
/// once anyway (an entry only counts while the user's stored hash is the one it saw).
pub const BASIC_CACHE_TTL: Duration = Duration::from_secs(60);

// ---- Connections ----------------------------------------------------------------------

/// Default of `[http] header_read_timeout_seconds`: how long a connection may take to
/// send a request's headers once it is ready for one (just accepted, or done with the
/// previous request).  Without it, a half-sent request holds its connection forever.
pub const HEADER_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(10);

/// Default of `[http] body_read_timeout_seconds`: how long a request's whole body may
/// take to arrive (20 MiB at 4 Mbit/s takes 40 s).
pub const BODY_READ_TIMEOUT_DEFAULT: Duration = Duration::from_secs(60);

/// Default of `[http] keep_alive_seconds`: how long an idle connection is kept open for
/// its next request (browsers reopen at once; every open connection costs a socket).
pub const KEEP_ALIVE_DEFAULT: Duration = Duration::from_secs(5);

/// Default of `[http] drain_timeout_seconds`: how long a stopping instance waits for its
/// requests in flight (and half-sent ones) before it closes what remains and exits, so
/// `--stop-daemon` and deploys always end.
pub const DRAIN_TIMEOUT_DEFAULT: Duration = Duration::from_secs(30);

// ---- Pages ----------------------------------------------------------------------------

/// Largest page body (Markdown), in bytes: pages are read on screens; a larger text is
/// a file to upload.
pub const PAGE_BODY_BYTES_MAX: usize = 1024 * 1024;

/// Deepest nesting of HTML elements in a page's rendering.  The HTML sanitiser's tree
/// builder costs time proportional to the depth of open elements per element, so a
/// body of 40,000 unclosed `<div>`s took seconds per view; real pages nest a few levels.
pub const PAGE_HTML_DEPTH_MAX: usize = 100;

/// Bytes of sanitised page HTML the instance keeps (by object and revision), so a view
/// renders a page only when it changed, not at every request.
pub const RENDERED_PAGES_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Bytes of image scales the instance keeps (`views/images.rs`): a thumbnail is a few
/// KiB, a large scale 50–150 KiB, so some hundreds of images' scales, made once each.
pub const IMAGE_SCALES_BYTES_MAX: usize = 32 * 1024 * 1024;

/// Image sizes (read from their headers) the instance remembers, for the `width`,
/// `height` and `srcset` of pages: a few dozen bytes each.
pub const IMAGE_SIZES_CACHED_MAX: usize = 10_000;

/// Most pixels of an image the site decodes to scale it: 40 megapixels is more than a
/// phone or a consumer camera takes (and 160 MiB as RGBA).  A larger image, or a small
/// file claiming huge dimensions (a decompression bomb), is refused from its header,
/// before any pixel is decoded.
pub const IMAGE_PIXELS_MAX: u64 = 40_000_000;

/// Most bytes the decoder may allocate for one image (`image::Limits::max_alloc`):
/// [`IMAGE_PIXELS_MAX`] as RGBA with room for the decoder's own buffers.
pub const IMAGE_DECODE_BYTES_MAX: u64 = 256 * 1024 * 1024;

/// Images decoded at once by an instance: with [`IMAGE_DECODE_BYTES_MAX`] each, what
/// scaling can hold is bounded whatever the number of requests (and it is CPU work:
/// more at once would only slow each down on a small machine).
pub const IMAGE_SCALINGS_AT_ONCE: usize = 2;

/// Items a feed or the sitemap visits walking the content tree: each is loaded, so a
/// request's work is bounded on a large site (past it, the walk stops and says so in
/// the log).
pub const DISCOVERY_VISITS_MAX: usize = 50_000;

/// Walks for feeds and the sitemap at once (each up to [`DISCOVERY_VISITS_MAX`] loads,
/// about 0.3 s of CPU at that size): what the page cache does not answer (after each
/// commit, or for every `Host` a client makes up while `[site] url` is unset) takes at
/// most this many cores.
pub const DISCOVERY_WALKS_AT_ONCE: usize = 1;

/// How long a feed or sitemap request waits for a walk to finish before it is answered
/// 503: a reader's poll comes again, a flood is turned away.
pub const DISCOVERY_WALK_WAIT: Duration = Duration::from_secs(5);

/// Entries of an Atom feed (`@@feed`): the latest changes, as feed readers poll.
pub const FEED_ENTRIES_MAX: usize = 30;

/// URLs of `/sitemap.xml`: the sitemap protocol's bound for one file.
pub const SITEMAP_URLS_MAX: usize = 50_000;

/// Transactions `@@changes` reads from the log, newest first (most may be filtered out:
/// other folders, users, what the reader may not see).
pub const CHANGES_SCAN_MAX: usize = 500;

/// Changes `@@changes` lists.
pub const CHANGES_ENTRIES_MAX: usize = 50;

/// Unchanged lines shown around each change of a page's text (`@@diff`).
pub const DIFF_CONTEXT_LINES: usize = 3;

/// How long a diff looks for the smallest difference (pages are at most
/// `PAGE_BODY_BYTES_MAX`; the worst case of Myers' algorithm is quadratic).
pub const DIFF_TIMEOUT: Duration = Duration::from_millis(500);

/// How long a request for a scale waits for a decoding slot before a 503.
pub const IMAGE_SCALING_WAIT: Duration = Duration::from_secs(10);

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

// ---- Search ---------------------------------------------------------------------------

/// Longest word that becomes a search term, in characters: real words in Russian and
/// English are far shorter; longer runs are hashes, base64 or URLs, which would fill
/// the index with terms nobody types.
pub const SEARCH_TERM_CHARS_MAX: usize = 40;

/// Distinct terms indexed per item: a page body of [`PAGE_BODY_BYTES_MAX`] could hold
/// a hundred thousand, and each is a posting written at every save of the item; real
/// pages have a few thousand.  The most frequent are kept.
pub const SEARCH_TERMS_PER_ITEM_MAX: usize = 20_000;

/// Largest query, in bytes: a query is a few words; anything longer is refused (400)
/// before it is analysed.
pub const SEARCH_QUERY_BYTES_MAX: usize = 1_000;

/// Most distinct terms in a query: each costs a scan of its postings; every item must
/// contain all of them, so more words narrow nothing a reader wants.
pub const SEARCH_QUERY_TERMS_MAX: usize = 10;

/// Postings read by one query, over all its terms: bounds its time (a posting costs well
/// under a microsecond from cached buckets) whatever the words.  A term in every one of
/// 100,000 pages is read whole; past this bound the results say they are incomplete.
pub const SEARCH_POSTINGS_SCANNED_MAX: usize = 1_000_000;

/// Results a query gives at most (the best by rank that the reader may view): nobody
/// pages past them, and each costs a permission check along its path.
pub const SEARCH_RESULTS_MAX: usize = 500;

/// Candidates whose visibility one query checks: a reader who may see few of many
/// matching items still gets a bounded amount of work.
pub const SEARCH_VISIBILITY_CHECKS_MAX: usize = 5_000;

/// Results per page of the search view (and the JSON API's default `b_size`).
pub const SEARCH_PAGE_SIZE: usize = 20;

/// Largest `b_size` the JSON API accepts.
pub const SEARCH_PAGE_SIZE_MAX: usize = 100;

/// Characters of a result's snippet around the first place it matches.
pub const SEARCH_SNIPPET_CHARS: usize = 240;

/// Items `bbru reindex` indexes per transaction: small enough that a transaction's
/// records stay a few megabytes and a conflict with a live edit retries little work.
pub const REINDEX_BATCH_ITEMS: usize = 200;

/// Bytes of anonymous pages kept for the newest transaction (`web/page_cache.rs`): a
/// site's most visited pages in a few languages, a small share of an instance's memory.
/// Once full, pages are no longer added until the next commit empties it.
pub const PAGE_CACHE_BYTES: usize = 32 << 20;

/// Largest page kept: a long folder listing is not worth a sixty-fourth of the cache.
pub const PAGE_CACHE_PAGE_BYTES: usize = 512 << 10;
