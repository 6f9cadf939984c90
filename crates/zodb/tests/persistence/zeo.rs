//! The persistence layer over ZEO: two databases, each on its own `ClientStorage`, share one
//! bbru-zeo server (served in-process here), as two application instances do.  A commit
//! through one is seen by the other's next transaction, its stale cached copy dropped by the
//! server's invalidation; concurrent changes conflict and retry.

use std::sync::Arc;
use std::time::Duration;

use zeo::client::{ClientOptions, ClientStorage};
use zeo::server::{Address, Config, Server};
use zodb::{DB, PRef, TransactionManager};
use zodb_storage::{FileStorage, Storage};

use crate::{Page, page};

/// Serves a FileStorage on a free port from a background runtime; returns its address.
pub(crate) fn serve(dir: &std::path::Path) -> String {
    serve_on(dir, "127.0.0.1:0").0
}

/// Like [`serve`], with a blob directory `dir/server-blobs`.
pub(crate) fn serve_blobs(dir: &std::path::Path) -> String {
    let storage = FileStorage::open_with(
        dir.join("Data.fs"),
        zodb_storage::filestorage::Options {
            blob_dir: Some(dir.join("server-blobs")),
            ..Default::default()
        },
    )
    .unwrap();
    serve_storage(Arc::new(storage), "127.0.0.1:0").0
}

pub(crate) fn client(address: &str) -> DB {
    let mut options = ClientOptions::new(address);
    options.wait_timeout = Duration::from_secs(10);
    let storage: Arc<dyn Storage> = Arc::new(ClientStorage::connect(options).unwrap());
    DB::open(storage).unwrap()
}

#[test]
fn two_instances_on_one_zeo_server_see_each_others_commits() {
    let dir = tempfile::tempdir().unwrap();
    let address = serve(dir.path());
    let one = client(&address);
    let two = client(&address);

    let mut c1 = one.connection();
    let tx = c1.begin();
    let r = tx.add(page("v1")).unwrap();
    tx.edit(tx.root()).unwrap().insert_ref("p", r);
    tx.commit().unwrap();

    // Created through one, readable through two at once.
    let mut c2 = two.connection();
    assert_eq!(c2.begin().get(r).unwrap().title, "v1");
    for round in 0..20 {
        // `two` caches the page, `one` changes it: `two` must see the change next time,
        // and the other way round.
        let (writer, reader) = if round % 2 == 0 {
            (&mut c1, &mut c2)
        } else {
            (&mut c2, &mut c1)
        };
        let before = reader.begin().get(r).unwrap().title.clone();
        let tx = writer.begin();
        tx.update(r, |p| p.title = format!("round {round}"))
            .unwrap();
        tx.commit().unwrap();
        // The other instance's next transaction sees it: `begin` syncs with the server,
        // whose invalidation drops the stale cached copy.
        let seen = reader.begin().get(r).unwrap().title.clone();
        assert_ne!(seen, before);
        assert_eq!(seen, format!("round {round}"));
    }

    // Concurrent increments from both instances: conflicts, retried, none lost.
    let counter: PRef<Page> = {
        let tx = c1.begin();
        let counter = tx.add(page("0")).unwrap();
        tx.edit(tx.root()).unwrap().insert_ref("counter", counter);
        tx.commit().unwrap();
        counter
    };
    let threads: Vec<_> = [one.clone(), two.clone()]
        .into_iter()
        .map(|db| {
            std::thread::spawn(move || {
                let mut conn = db.connection();
                for _ in 0..15 {
                    TransactionManager::new(100)
                        .run(&mut conn, |tx| {
                            tx.update(counter, |p| {
                                p.title = (p.title.parse::<u32>().unwrap() + 1).to_string()
                            })
                        })
                        .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(c2.begin().get(counter).unwrap().title, "30");
    assert_eq!(c1.begin().get(counter).unwrap().title, "30");
}

/// Serves `dir/Data.fs` on `address` (port 0: a free one) until the returned handle shuts
/// it down; returns the address served, the handle, and the thread, which ends once the
/// server has closed its storage.
fn serve_on(
    dir: &std::path::Path,
    address: &str,
) -> (String, zeo::server::Handle, std::thread::JoinHandle<()>) {
    serve_storage(
        Arc::new(FileStorage::open(dir.join("Data.fs")).unwrap()),
        address,
    )
}

fn serve_storage(
    storage: Arc<dyn Storage>,
    address: &str,
) -> (String, zeo::server::Handle, std::thread::JoinHandle<()>) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        address: Address::Tcp(address.into()),
        ..Config::default()
    };
    let server = runtime
        .block_on(Server::bind(config, vec![("1".into(), storage)]))
        .unwrap();
    let served = match server.local_address() {
        Address::Tcp(a) => a,
        Address::Unix(_) => unreachable!(),
    };
    let handle = server.handle();
    let thread = std::thread::spawn(move || runtime.block_on(server.run()));
    (served, handle, thread)
}

/// While the server is away, a managed transaction fails at its start with
/// `Disconnected` (its work does not run on what the caches hold), and works again once
/// the client has reconnected by itself.
#[test]
fn a_managed_transaction_fails_fast_while_the_server_is_away_and_works_once_it_is_back() {
    let dir = tempfile::tempdir().unwrap();
    let address = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().to_string()
    };
    let (_, handle, thread) = serve_on(dir.path(), &address);
    let mut options = ClientOptions::new(address.clone());
    options.wait_timeout = Duration::from_secs(10);
    options.disconnected_wait = Some(Duration::from_millis(100));
    let client = Arc::new(ClientStorage::connect(options).unwrap());
    let db = DB::open(Arc::clone(&client) as Arc<dyn Storage>).unwrap();
    let mut conn = db.connection();
    let p = TransactionManager::new(3)
        .run(&mut conn, |tx| {
            let p = tx.add(page("before"))?;
            tx.edit(tx.root())?.insert_ref("p", p);
            Ok::<_, zodb::Error>(p)
        })
        .unwrap();

    handle.shutdown();
    thread.join().unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while client.is_connected() {
        assert!(std::time::Instant::now() < deadline, "still connected");
        std::thread::sleep(Duration::from_millis(10));
    }
    let mut ran = false;
    let result = TransactionManager::new(3).run(&mut conn, |tx| {
        ran = true;
        Ok::<_, zodb::Error>(tx.get(p)?.title.clone())
    });
    match result {
        Err(zodb::Error::Storage(e)) => assert!(e.is_disconnected(), "{e:?}"),
        other => panic!("a transaction without the server: {other:?}"),
    }
    assert!(!ran, "the work ran on cached data");
    // `begin` still starts one on what was heard of last (the caches answer).
    assert_eq!(conn.begin().get(p).unwrap().title, "before");

    let (_, handle, thread) = serve_on(dir.path(), &address);
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let title = loop {
        match TransactionManager::new(3).run(&mut conn, |tx| {
            tx.update(p, |page| page.title = "after".into())?;
            Ok::<_, zodb::Error>(tx.get(p)?.title.clone())
        }) {
            Ok(t) => break t,
            Err(zodb::Error::Storage(e)) if e.is_disconnected() => {
                assert!(std::time::Instant::now() < deadline, "no reconnection: {e}");
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("{e:?}"),
        }
    };
    assert_eq!(title, "after");
    drop(conn);
    drop(db);
    drop(client);
    handle.shutdown();
    thread.join().unwrap();
}
