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
fn serve(dir: &std::path::Path) -> String {
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(dir.join("Data.fs")).unwrap());
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let config = Config {
        address: Address::Tcp("127.0.0.1:0".into()),
        ..Config::default()
    };
    let server = runtime
        .block_on(Server::bind(config, vec![("1".into(), storage)]))
        .unwrap();
    let address = match server.local_address() {
        Address::Tcp(a) => a,
        Address::Unix(_) => unreachable!(),
    };
    std::thread::spawn(move || runtime.block_on(server.run()));
    address
}

fn client(address: &str) -> DB {
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
