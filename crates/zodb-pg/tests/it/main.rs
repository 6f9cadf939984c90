//! Integration tests of `PgStorage` against a real PostgreSQL server
//! (`BBRU_PG_URL`; `tools/test.sh` starts one): the storage conformance
//! suite, the schema checks, and commits seen across two storages.

mod blobs;
mod conformance;
mod relstorage;
mod replicas;
mod schema;
mod shared;

use std::sync::{Condvar, Mutex};

use zodb_storage::{InvalidationListener, Oid, Tid};

/// A listener that keeps what it hears: each commit's tid and oids, in order (the
/// condition variable wakes those waiting for more).
#[derive(Debug, Default)]
pub struct Heard(pub Mutex<Vec<(Tid, Vec<Oid>)>>, pub Condvar);

impl InvalidationListener for Heard {
    fn committed(&self, tid: Tid, oids: &[Oid]) {
        self.0.lock().unwrap().push((tid, oids.to_vec()));
        self.1.notify_all();
    }
    fn reset(&self, _last: Tid) {}
}
