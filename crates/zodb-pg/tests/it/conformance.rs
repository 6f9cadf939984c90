//! The storage conformance suite on a `PgStorage` over a fresh database.

use std::ops::Deref;

use test_support::pg::{FreshDatabase, fresh_database};
use zodb_pg::PgStorage;

/// A storage with the database that holds it; the database is dropped after
/// the storage closes its connections.
pub struct OnPostgres {
    storage: PgStorage,
    _db: FreshDatabase,
}

impl Deref for OnPostgres {
    type Target = PgStorage;
    fn deref(&self) -> &PgStorage {
        &self.storage
    }
}

pub fn fresh() -> OnPostgres {
    let db = fresh_database();
    let storage = PgStorage::create(&db.url).expect("create the schema and open");
    OnPostgres { storage, _db: db }
}

test_support::storage_conformance_tests!(relstorage_layout: super::conformance::fresh);
