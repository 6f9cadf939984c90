//! `bbru test` (bbru::selftest::run) against real installations: a FileStorage made by a
//! real site (left byte-for-byte unchanged, even while its instance holds it open), a new
//! installation without a database, a ZEO server, and broken configurations.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bbru::config::{ServeConfig, SiteConfig, StorageConfig};
use bbru::model::edit::{self, Fields};
use bbru::model::{ContentRef, Kind};
use bbru::security::{Role, Setting};
use bbru::selftest::{self, Check};
use zodb::DB;
use zodb_storage::{FileStorage, MemoryStorage, Storage};

/// Every file under `dir` with its bytes.
fn snapshot(dir: &Path) -> BTreeMap<PathBuf, Vec<u8>> {
    let mut out = BTreeMap::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                out.insert(path.clone(), Vec::new());
                todo.push(path);
            } else {
                out.insert(path.clone(), std::fs::read(&path).unwrap());
            }
        }
    }
    out
}

fn report(checks: &[Check]) -> String {
    checks
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}

fn check<'c>(checks: &'c [Check], name: &str) -> &'c Check {
    checks
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no check {name:?} in\n{}", report(checks)))
}

/// What the check `name` reports, which must have passed.
fn passed(checks: &[Check], name: &str) -> String {
    check(checks, name)
        .outcome
        .clone()
        .unwrap_or_else(|e| panic!("{name} failed: {e}"))
}

/// Why the check `name` failed, which it must have.
fn failed(checks: &[Check], name: &str) -> String {
    match &check(checks, name).outcome {
        Err(e) => e.clone(),
        Ok(d) => panic!("{name} passed: {d}"),
    }
}

/// An installation in `dir`: etc/site.toml from the release's template (bootstrap
/// manager commented out, as after the first deployment), the database in var/.
fn installation(dir: &Path, storage: StorageConfig) -> ServeConfig {
    std::fs::create_dir_all(dir.join("etc")).unwrap();
    std::fs::create_dir_all(dir.join("var")).unwrap();
    let template = bbru::configure::site_toml(&bbru::configure::Deploy::default(), None).unwrap();
    std::fs::write(dir.join("etc/site.toml"), template).unwrap();
    ServeConfig {
        listen: "127.0.0.1:8080".into(),
        storage,
        cache_objects: 1000,
        site_config: dir.join("etc/site.toml"),
        pid_file: dir.join("var/bbru.pid"),
        log_file: Some(dir.join("log/bbru.log")),
        ..ServeConfig::default()
    }
}

/// A site as its first deployment makes it: created by the bootstrap manager, with
/// content, and a local manager (so a declared bootstrap manager would be refused).
fn make_site(storage: Arc<dyn Storage>) -> DB {
    let db = DB::open(storage).unwrap();
    let config = SiteConfig::parse(
        "[site]\ntitle = \"The real site\"\n[bootstrap_manager]\nlogin = \"admin\"\npassword = \"admin-password\"\n",
        Path::new("site.toml"),
    )
    .unwrap();
    let app = bbru::startup::app(
        db.clone(),
        config,
        "site.toml",
        &bbru::security::key::SecretKey::random(),
    )
    .unwrap();
    let site = app.site.unwrap();
    let mut conn = db.connection();
    let tx = conn.begin();
    let root = tx.get(site).unwrap().content;
    let fields = |title: &str, body: Option<&str>| Fields {
        title: Some(title.into()),
        body: body.map(str::to_owned),
        ..Fields::default()
    };
    let (_, docs) = edit::create(
        &tx,
        root,
        "docs",
        Kind::Folder,
        fields("Documentation", None),
        "admin",
        1.0,
    )
    .unwrap();
    let ContentRef::Folder(docs) = docs else {
        panic!("not a folder")
    };
    edit::create(
        &tx,
        docs,
        "install",
        Kind::Page,
        fields("Installing", Some("Run **bbru serve**.")),
        "admin",
        1.0,
    )
    .unwrap();
    tx.update(root, |f| {
        f.meta
            .grants
            .set("user:keeper", Role::Manager, Some(Setting::Allow));
    })
    .unwrap();
    tx.commit().unwrap();
    db
}

#[test]
fn selftest_passes_on_a_real_site_and_leaves_its_data_fs_untouched() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("var/Data.fs");
    let config = installation(dir.path(), StorageConfig::File(data_fs.clone()));
    // The previous release keeps running on the database: it holds it open (and locked).
    let storage = Arc::new(FileStorage::open(&data_fs).unwrap());
    let db = make_site(storage.clone());
    let before = snapshot(dir.path());

    let checks = selftest::run(&config);
    assert!(selftest::all_passed(&checks), "{}", report(&checks));
    for name in [
        "site configuration",
        "listen address",
        "pid file directory",
        "log file directory",
        "database directory",
        "database connection",
        "in-process instance",
        "health",
        "log in",
        "add a folder",
        "add a page",
        "view the page",
        "edit the page",
        "folder listing",
        "anonymous cannot edit",
        "log out",
    ] {
        check(&checks, name);
    }
    let connection = passed(&checks, "database connection");
    assert!(connection.contains("read-only"), "{connection}");
    assert!(
        connection.contains(&storage.last_transaction().to_string()),
        "{connection}"
    );
    let instance = passed(&checks, "in-process instance");
    assert!(instance.contains("the database's site"), "{instance}");
    let log_dir = passed(&checks, "log file directory");
    assert!(log_dir.contains("will be created"), "{log_dir}");

    // Nothing written: not the Data.fs, not an index, not a directory.
    let after = snapshot(dir.path());
    assert_eq!(
        before.keys().collect::<Vec<_>>(),
        after.keys().collect::<Vec<_>>()
    );
    assert!(before == after, "a file of the installation changed");
    assert!(!dir.path().join("log").exists());
    // The running instance still sees its own data only.
    let mut conn = db.connection();
    let tx = conn.begin();
    let site = bbru::model::Site::find(&tx).unwrap().unwrap();
    let root = tx.get(tx.get(site).unwrap().content).unwrap();
    assert_eq!(root.ordered_names(&tx).unwrap(), vec!["docs".to_owned()]);
    drop(tx);
    drop(conn);
    drop(db);
    storage.close().unwrap();
}

#[test]
fn selftest_passes_on_a_new_installation_without_creating_its_database() {
    let dir = tempfile::tempdir().unwrap();
    let data_fs = dir.path().join("var/Data.fs");
    let config = installation(dir.path(), StorageConfig::File(data_fs.clone()));
    let checks = selftest::run(&config);
    assert!(selftest::all_passed(&checks), "{}", report(&checks));
    let connection = passed(&checks, "database connection");
    assert!(connection.contains("no database yet"), "{connection}");
    let instance = passed(&checks, "in-process instance");
    assert!(instance.contains("created one in memory"), "{instance}");
    assert!(!data_fs.exists());
    assert_eq!(
        std::fs::read_dir(dir.path().join("var")).unwrap().count(),
        0
    );
}

#[test]
fn selftest_passes_through_a_zeo_server_and_writes_nothing_to_it() {
    let dir = tempfile::tempdir().unwrap();
    let storage: Arc<dyn Storage> = Arc::new(MemoryStorage::new("zeo test"));
    drop(make_site(storage.clone()));
    let last = storage.last_transaction();
    let length = storage.len();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let server = runtime
        .block_on(zeo::server::Server::bind(
            zeo::server::Config {
                address: zeo::server::Address::Tcp("127.0.0.1:0".into()),
                ..zeo::server::Config::default()
            },
            vec![("1".into(), storage.clone())],
        ))
        .unwrap();
    let address = server.local_address().to_string();
    let handle = server.handle();
    runtime.spawn(server.run());

    let config = installation(dir.path(), StorageConfig::Zeo(address.clone()));
    let checks = selftest::run(&config);
    assert!(selftest::all_passed(&checks), "{}", report(&checks));
    let connection = passed(&checks, "database connection");
    assert!(connection.contains(&address), "{connection}");
    assert!(connection.contains("read-only"), "{connection}");
    // No embedded database, so no directory to check.
    assert!(!checks.iter().any(|c| c.name == "database directory"));
    assert_eq!(storage.last_transaction(), last);
    assert_eq!(storage.len(), length);
    handle.shutdown();
    runtime.shutdown_timeout(std::time::Duration::from_secs(5));
}

#[test]
fn selftest_reports_a_broken_configuration_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let mut config = installation(
        dir.path(),
        StorageConfig::File(dir.path().join("missing/Data.fs")),
    );
    config.listen = "127.0.0.1:99999".into();
    let checks = selftest::run(&config);
    assert!(!selftest::all_passed(&checks));
    let listen = failed(&checks, "listen address");
    assert!(listen.contains("127.0.0.1:99999"), "{listen}");
    assert!(listen.contains("not a socket address"), "{listen}");
    let directory = failed(&checks, "database directory");
    assert!(directory.contains("missing"), "{directory}");
    assert!(directory.contains("does not exist"), "{directory}");
    let connection = failed(&checks, "database connection");
    assert!(connection.contains("does not exist"), "{connection}");
    let functional = failed(&checks, "functional checks");
    assert!(functional.contains("not run"), "{functional}");
    // The rest of the configuration is fine, and nothing was created.
    assert!(check(&checks, "site configuration").passed());
    assert!(check(&checks, "pid file directory").passed());
    assert!(!dir.path().join("missing").exists());

    // A site configuration with a typo, a pid file under a plain file.
    std::fs::write(dir.path().join("etc/site.toml"), "[site]\ntitel = 'x'\n").unwrap();
    std::fs::write(dir.path().join("var/plain"), b"").unwrap();
    config.listen = "127.0.0.1:8080".into();
    config.storage = StorageConfig::File(dir.path().join("var/Data.fs"));
    config.pid_file = dir.path().join("var/plain/run/bbru.pid");
    let checks = selftest::run(&config);
    let site = failed(&checks, "site configuration");
    assert!(site.contains("titel"), "{site}");
    let pid = failed(&checks, "pid file directory");
    assert!(pid.contains("not a directory"), "{pid}");
    assert!(check(&checks, "listen address").passed());
    assert!(check(&checks, "database connection").passed());
    let functional = failed(&checks, "functional checks");
    assert!(functional.contains("site configuration"), "{functional}");

    // A missing site configuration says how to make one.
    std::fs::remove_file(dir.path().join("etc/site.toml")).unwrap();
    let checks = selftest::run(&config);
    let site = failed(&checks, "site configuration");
    assert!(site.contains("bbru configure"), "{site}");
}
