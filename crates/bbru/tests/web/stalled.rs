//! A change to an object another ZEO client has voted on and not finished (a stalled
//! commit): answered once the server aborts the stalled one (its transaction timeout),
//! or, when that does not come in time, retried once after the lock timeout and then
//! answered 503 with a clear message, never 500.  Real ZEO server (in this process, on
//! a FileStorage), real ZEO clients: the site's, and the stalled one.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use zeo::client::{ClientOptions, ClientStorage};
use zeo::server::{Address, Config, Server};
use zodb_storage::filestorage::Options;
use zodb_storage::{FileStorage, Storage, TransactionMeta, TxnHandle};

use crate::matrix::api;
use crate::{ADMIN, Site, site_config, start_with};

/// Serves `dir/Data.fs` over ZEO with these timeouts; returns the address.
fn serve(
    dir: &std::path::Path,
    lock_timeout: Duration,
    transaction_timeout: Option<Duration>,
) -> String {
    let storage = FileStorage::open_with(
        dir.join("Data.fs"),
        Options {
            lock_timeout: Some(lock_timeout),
            ..Options::default()
        },
    )
    .unwrap();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        address: Address::Tcp("127.0.0.1:0".into()),
        transaction_timeout,
        ..Config::default()
    };
    let server = runtime
        .block_on(Server::bind(
            config,
            vec![("1".into(), Arc::new(storage) as Arc<dyn Storage>)],
        ))
        .unwrap();
    let Address::Tcp(address) = server.local_address() else {
        unreachable!("bound to TCP")
    };
    std::thread::spawn(move || runtime.block_on(server.run()));
    address
}

fn client(address: &str) -> Arc<ClientStorage> {
    let mut options = ClientOptions::new(address);
    options.wait_timeout = Duration::from_secs(10);
    Arc::new(ClientStorage::connect(options).unwrap())
}

/// A site on the server at `address` with the page `/install`.
fn site_with_page(address: &str) -> Site {
    let site = start_with(client(address), site_config(""));
    let r = api(
        &site,
        "POST",
        "/",
        Some(ADMIN),
        Some(&json!({"@type": "Page", "id": "install", "title": "Install", "body": "v1"})),
    );
    assert_eq!(r.status(), 201);
    site
}

/// Another client votes a change of `/install` and stalls (no finish, no abort).
fn stall_on_the_page(site: &Site, address: &str) -> (Arc<ClientStorage>, TxnHandle) {
    let oid = {
        let mut conn = site.db.connection();
        let tx = conn.begin();
        let s = bbru::model::Site::find(&tx).unwrap().unwrap();
        let root = tx.get(tx.get(s).unwrap().content).unwrap();
        let items = bbru::model::content::items_map(&tx, &root).unwrap();
        items["install"].oid()
    };
    let other = client(address);
    let (data, serial) = other.load(oid).unwrap();
    let t = other
        .tpc_begin(TransactionMeta::new("stalled", "voted, never finished"))
        .unwrap();
    other.store(&t, oid, serial, data).unwrap();
    other.vote(&t).unwrap();
    (other, t)
}

fn patch(site: &Site, title: &str) -> (u16, Value, Duration) {
    let asked = Instant::now();
    let r = api(
        site,
        "PATCH",
        "/install",
        Some(ADMIN),
        Some(&json!({"title": title})),
    );
    let status = r.status().as_u16();
    let body = r.json().unwrap_or(Value::Null);
    (status, body, asked.elapsed())
}

#[test]
fn a_change_behind_a_stalled_commit_goes_through_once_the_server_aborts_it() {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(
        dir.path(),
        Duration::from_secs(30),
        Some(Duration::from_millis(500)),
    );
    let site = site_with_page(&address);
    let (_stalled, _t) = stall_on_the_page(&site, &address);
    let (status, body, _) = patch(&site, "Installing");
    assert_eq!(status, 204, "{body}");
    let page = api(&site, "GET", "/install", Some(ADMIN), None)
        .json::<Value>()
        .unwrap();
    assert_eq!(page["title"], "Installing");
}

#[test]
fn a_change_behind_a_stalled_commit_is_retried_once_then_answered_503() {
    let dir = tempfile::tempdir().unwrap();
    let lock_timeout = Duration::from_millis(500);
    let address = serve(dir.path(), lock_timeout, None);
    let site = site_with_page(&address);
    let (stalled, t) = stall_on_the_page(&site, &address);
    let (status, body, took) = patch(&site, "Installing");
    assert_eq!(status, 503, "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("try again"), "{body}");
    // Two votes, each waiting the whole lock timeout: the first try and one retry.
    assert!(took >= 2 * lock_timeout, "answered after {took:?}");

    stalled.abort(&t);
    let (status, body, _) = patch(&site, "Installing");
    assert_eq!(status, 204, "{body}");
}
