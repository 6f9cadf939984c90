//! Integration tests of `PgStorage` against a real PostgreSQL server
//! (`BBRU_PG_URL`; `tools/test.sh` starts one): the storage conformance
//! suite, the schema checks, and commits seen across two storages.

mod conformance;
mod relstorage;
mod schema;
mod shared;
