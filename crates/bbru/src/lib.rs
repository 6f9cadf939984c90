//! bbru: the web application.  A content site published by traversal of the object tree,
//! with a management UI, users and grants stored in the database, a JSON API, and the
//! bootstrap manager of `etc/site.toml` for an empty database.
//!
//! - [`model`]: what is stored (site, content, principals), as persistent objects.
//! - [`security`]: the policy (roles, permissions, local grants), passwords, sessions.
//! - [`web`]: HTTP: traversal, views, rendering, metrics.
//! - [`config`]: `etc/site.toml` and `etc/serve.toml`; [`configure`] renders them.
//! - [`startup`]: opening the database and creating the site; [`blob_cache`]: the blob
//!   cache directory a ZEO instance holds; [`migrate`]: `bbru migrate`.
//! - [`status`]: the status file `bbru serve --status` reads.
//! - [`i18n`]: the interface in English and Russian (Fluent catalogs in `locales/`).
//!
//! The instance keeps no state of its own: everything is in the database, so several
//! instances can serve one site through a ZEO server.

pub mod blob_cache;
pub mod config;
pub mod configure;
pub mod deploy;
pub mod i18n;
pub mod limits;
pub mod listen;
pub mod migrate;
pub mod model;
pub mod search;
pub mod security;
pub mod selftest;
pub mod startup;
pub mod status;
pub mod web;
