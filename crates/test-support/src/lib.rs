//! Shared test helpers for every crate's tests.
//!
//! - [`fixtures`]: paths to the files Python ZODB wrote (`tests/fixtures/zodb`)
//!   and Python's reading of them (`expected.json`).
//! - [`python`]: the Python ZODB/ZEO environment the interop tests run.
//! - [`conformance`]: the storage conformance suite every backend runs.
//! - [`tls`]: throwaway CA, server and client certificates.
//! - [`process`]: a started process's peak memory; whether something listens.
//! - [`pg`]: a fresh PostgreSQL database per test, on the server `BBRU_PG_URL` names.

pub mod conformance;
pub mod fixtures;
pub mod pg;
pub mod process;
pub mod python;
pub mod tls;
