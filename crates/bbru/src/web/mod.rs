//! The HTTP side: one axum fallback handler publishes the object tree.
//!
//! A request's path is traversed from the site's root folder (`/docs/install` is the item
//! `install` of the folder `docs`); a last segment `@@name` names a view of the object
//! reached (`/docs/@@edit`), none means its default view.  Then, in one transaction on a
//! pooled connection (retried on conflict): authenticate (HTTP Basic, the session
//! cookie, or an API token from `/@login`), find the view, check its permission against
//! the roles the principal holds along the containment path, check the CSRF token of
//! state-changing requests, run the view, and commit with the principal as the
//! transaction's user (the audit trail).
//! Trouble with the database is a 503, not a 500: the transaction fails as it begins
//! while a ZEO server is away, and a commit whose objects stay locked by an unfinished
//! commit elsewhere (a lock timeout) is tried again once, then refused.  `/@@health`
//! checks the storage itself before any transaction.
//!
//! Database work is blocking, so each request runs on tokio's blocking pool holding a
//! connection slot; the async part only reads the body, and only once the request has
//! been admitted (authenticated, its view found and allowed: `publish`); a multipart
//! form is parsed as it arrives, its files streamed to disk (`upload`), any other body
//! parsed on the blocking pool.  Every piece of work a request can cause is bounded
//! (`crate::limits`; ARCHITECTURE.md lists the bounds).
//!
//! Modules, by job:
//! - `app`: the instance's shared state ([`App`]), cookies, login rate limits;
//! - `input`: the body parsed into form fields, uploads and JSON;
//! - `upload`: multipart forms read as they arrive, files streamed to disk;
//! - `auth`: credentials (HTTP Basic, API tokens, the session cookie) and the principal
//!   they name; the cache of recent HTTP Basic checks;
//! - `publish`: the pipeline (traverse, find the view, permission, CSRF, run, commit)
//!   and the router;
//! - `error`: [`AppError`] and the page or JSON that says what went wrong;
//! - `reply`: what views answer ([`Reply`]) and its HTTP rendering;
//! - `version`: an object's serial as `ETag`/`If-Match` and as the edit forms' field;
//! - `listener`: our accept loop (header, keep-alive and drain timeouts), graceful stop;
//! - `views/` (the table of views and their permissions), `render` (the layout),
//!   `nav` (the section navigation),
//!   `metrics`.

mod app;
mod auth;
mod error;
pub mod gate;
mod input;
mod listener;
pub mod metrics;
mod nav;
mod page_cache;
mod publish;
pub mod render;
mod reply;
mod upload;
pub mod version;
pub mod views;
mod workers;

pub use app::{App, now, session_cookie, session_lifetime};
pub use auth::{BasicCache, cookie};
pub use error::AppError;
pub use input::{Input, Upload};
pub use listener::{Peer, serve};
pub use publish::{Ctx, Step, router};
pub use reply::{Reply, same_origin_path, url_of};
pub use upload::remove_leftovers;
