//! The bootstrap manager's life, as the seed describes it: declared in the site
//! configuration, it creates the site on an empty database; once a local manager exists
//! it is refused (unless `keep = true`); without it, an empty database gets no site.

use std::sync::Arc;

use zodb_storage::{MemoryStorage, Storage};

use crate::users::{add_user, grant, logged_in};
use crate::{ADMIN, site_config, start_with};

#[test]
fn the_bootstrap_manager_is_refused_once_a_local_manager_exists() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new("bootstrap"));
    {
        let site = start_with(storage.clone(), site_config(""));
        let admin = site.admin();
        add_user(&admin, "boss");
        // A user granted Manager at the root: a local manager.
        grant(&admin, "/", "user:boss", "Manager", "allow");
    }
    // Restarted with the bootstrap manager still declared: it no longer logs in.
    let site = start_with(storage.clone(), site_config(""));
    let b = site.browser();
    let r = b.post("/@@login", &[("login", ADMIN.0), ("password", ADMIN.1)]);
    assert_eq!(r.status(), 200, "the login form again, not a session");
    assert!(r.text().unwrap().contains("Wrong login or password"));
    // The local manager does.
    let boss = logged_in(&site, "boss");
    assert_eq!(boss.get("/@@users").status(), 200);
    drop(site);
    // `keep = true` keeps it usable (with a warning at every start).
    let mut kept = site_config("");
    kept.bootstrap_manager.as_mut().expect("declared").keep = true;
    let site = start_with(storage, kept);
    site.admin();
}

#[test]
fn an_empty_database_without_a_bootstrap_manager_gets_no_site() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new("empty"));
    let mut config = site_config("");
    config.bootstrap_manager = None;
    let site = start_with(storage.clone(), config);
    let b = site.browser();
    let r = b.get("/");
    assert_eq!(r.status(), 503);
    assert!(r.text().unwrap().contains("declare the bootstrap manager"));
    // Health says the instance runs and the site awaits its setup.
    let health: serde_json::Value = b.get("/@@health").json().unwrap();
    assert_eq!(health["site"], "not set up");
    drop(site);
    // Declared now: the next start creates the site.
    let site = start_with(storage, site_config(""));
    assert_eq!(site.browser().get("/").status(), 200);
}

#[test]
fn instances_started_together_on_an_empty_database_share_one_site() {
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new("race"));
    let barrier = Arc::new(std::sync::Barrier::new(4));
    let starts: Vec<_> = (0..4)
        .map(|_| {
            let (storage, barrier) = (storage.clone(), barrier.clone());
            std::thread::spawn(move || {
                let db = zodb::DB::open(storage).unwrap();
                barrier.wait();
                let app = bbru::startup::app(db, site_config(""), "site.toml", &crate::test_key())
                    .unwrap();
                (app.site.unwrap().oid(), app.secret.clone())
            })
        })
        .collect();
    let sites: Vec<_> = starts.into_iter().map(|t| t.join().unwrap()).collect();
    assert!(sites.windows(2).all(|w| w[0] == w[1]), "{sites:?}");
}
