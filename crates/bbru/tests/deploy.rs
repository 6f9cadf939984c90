//! The deployment procedure end to end, as an operator runs it: release archives made by
//! `tools/dist.sh` from this checkout (tagged in a scratch clone, shipping the binaries
//! this build made), `bbru deploy` of the first, continuous HTTP load (a new connection
//! per request, several workers), then every way a deploy can fail — its instance never
//! becomes healthy, its own tests fail, its archive is refused, the deploy itself is
//! killed mid-way — each followed by a normal deploy: no request fails, because the live
//! instance can always hand its socket over, and the data is intact.  Rollback returns to
//! a kept release.  The database is a ZEO server (the seed assumes ZEO).

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;

use common::{free_port, output_text, zeo_in_process};
use zodb::DB;
use zodb_storage::{FileStorage, Storage};

fn run(cmd: &mut Command) -> Output {
    let o = cmd.output().unwrap();
    assert!(o.status.success(), "{cmd:?} failed:\n{}", output_text(&o));
    o
}

/// The database: a FileStorage with a site and one page, served over ZEO in-process.
fn database(dir: &Path) -> String {
    let storage: Arc<dyn Storage> = Arc::new(FileStorage::open(dir.join("Data.fs")).unwrap());
    {
        let db = DB::open(storage.clone()).unwrap();
        let mut conn = db.connection();
        let tx = conn.begin();
        let site = bbru::model::Site::create(&tx, "Deployed", "setup", 0.0).unwrap();
        let root = tx.get(site).unwrap().content;
        tx.update(root, |f| {
            f.meta.grants.set(
                bbru::security::EVERYBODY,
                bbru::security::Role::Member,
                Some(bbru::security::Setting::Allow),
            )
        })
        .unwrap();
        bbru::model::edit::create(
            &tx,
            root,
            "page",
            bbru::model::Kind::Page,
            bbru::model::edit::Fields {
                title: Some("Kept across deploys".into()),
                body: Some("*data*".into()),
                ..Default::default()
            },
            "setup",
            0.0,
        )
        .unwrap();
        tx.commit().unwrap();
    }
    zeo_in_process(storage)
}

/// The repository this test runs from.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Archives bbru-1.0.0, bbru-1.0.1, bbru-1.0.2 (whose bin/bbru fails `bbru test`) and
/// bbru-1.0.3 (whose instance starts, takes the socket over, but never reports healthy:
/// it answers /@@health as another release).
fn archives(work: &Path) -> Vec<PathBuf> {
    let clone = work.join("src");
    run(Command::new("git")
        .args(["clone", "-q"])
        .arg(repo())
        .arg(&clone));
    let bin_dir = Path::new(env!("CARGO_BIN_EXE_bbru"))
        .parent()
        .unwrap()
        .to_owned();
    // A binary whose own tests fail: everything else is the real bbru.
    let failing = work.join("failing-bin");
    std::fs::create_dir_all(&failing).unwrap();
    std::fs::write(
        failing.join("bbru"),
        format!(
            "#!/bin/sh\nif [ \"$1\" = test ]; then echo 'FAILED  a check this release breaks'; exit 1; fi\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_bbru")
        ),
    )
    .unwrap();
    std::os::unix::fs::PermissionsExt::set_mode(
        &mut std::fs::metadata(failing.join("bbru"))
            .unwrap()
            .permissions(),
        0o755,
    );
    run(Command::new("chmod").arg("755").arg(failing.join("bbru")));
    // A binary whose instance serves, but never as the release deployed.
    let unhealthy = work.join("unhealthy-bin");
    std::fs::create_dir_all(&unhealthy).unwrap();
    std::fs::write(
        unhealthy.join("bbru"),
        format!(
            "#!/bin/sh
if [ \"$1\" = serve ] && [ \"$2\" = -c ]; then sed -i 's/^release = .*/release = \"not-this-one\"/' \"$3\"; fi\nexec {} \"$@\"\n",
            env!("CARGO_BIN_EXE_bbru")
        ),
    )
    .unwrap();
    run(Command::new("chmod").arg("755").arg(unhealthy.join("bbru")));
    let mut out = Vec::new();
    for (tag, bins) in [
        ("v1.0.0", &bin_dir),
        ("v1.0.1", &bin_dir),
        ("v1.0.2", &failing),
        ("v1.0.3", &unhealthy),
    ] {
        run(Command::new("git").current_dir(&clone).args([
            "-c",
            "user.name=t",
            "-c",
            "user.email=t@t",
            "tag",
            "-a",
            tag,
            "-m",
            tag,
        ]));
        let o = run(Command::new("bash")
            .arg(clone.join("tools/dist.sh"))
            .arg("--binaries-from")
            .arg(bins)
            .arg("--out")
            .arg(work.join("dist"))
            .arg(tag));
        let path = PathBuf::from(
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .last()
                .unwrap()
                .trim(),
        );
        assert!(
            path.ends_with(format!("bbru-{}.tar.gz", &tag[1..])),
            "{path:?}"
        );
        out.push(path);
    }
    out
}

/// GET `path` on a new connection: the status line's code and the body.
fn get(address: &str, path: &str) -> Result<(u16, String), String> {
    let mut s = TcpStream::connect(address).map_err(|e| format!("connect: {e}"))?;
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
    )
    .map_err(|e| format!("write: {e}"))?;
    let mut reply = String::new();
    s.read_to_string(&mut reply)
        .map_err(|e| format!("read: {e}"))?;
    let code = reply
        .get(9..12)
        .and_then(|c| c.parse().ok())
        .ok_or_else(|| format!("no status: {reply:?}"))?;
    Ok((code, reply))
}

fn live_release(address: &str) -> String {
    let (code, reply) = get(address, "/@@health").unwrap();
    assert_eq!(code, 200, "{reply}");
    let at = reply.find("\"release\":\"").unwrap() + 11;
    reply[at..].split('"').next().unwrap().to_owned()
}

fn deploy(base: &Path, archive: &Path, deploy_toml: &Path) -> Output {
    deploy_with(base, archive, deploy_toml, &[])
}

fn deploy_with(base: &Path, archive: &Path, deploy_toml: &Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bbru"))
        .arg("deploy")
        .arg(archive)
        .arg("--base")
        .arg(base)
        .arg("-c")
        .arg(deploy_toml)
        .args(extra)
        .output()
        .unwrap()
}

fn deploy_toml(work: &Path, base: &Path, listen: &str, zeo: &str) -> PathBuf {
    let path = work.join("deploy.toml");
    std::fs::write(
        &path,
        format!(
            "[site]\ntitle = \"Deployed\"\n[serve]\nlisten = \"{listen}\"\nzeo = \"{zeo}\"\nhandover_socket = \"{base}/run/bbru.sock\"\nlog_file = \"{base}/log/bbru.log\"\nsecret_key_file = \"{base}/etc/secret.key\"\n",
            base = base.display()
        ),
    )
    .unwrap();
    path
}

#[test]
fn rollback_returns_to_the_previous_release_while_it_is_there() {
    let work = tempfile::tempdir().unwrap();
    let zeo = database(work.path());
    let archives = archives(work.path());
    let base = work.path().join("srv");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = deploy_toml(work.path(), &base, &listen, &zeo);
    let bbru = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_bbru"))
            .args(args)
            .arg("--base")
            .arg(&base)
            .output()
            .unwrap()
    };
    let o = bbru(&["rollback"]);
    assert!(
        !o.status.success() && output_text(&o).contains("no live release"),
        "{}",
        output_text(&o)
    );
    let o = deploy(&base, &archives[0], &config);
    assert!(o.status.success(), "{}", output_text(&o));
    // The secret key file is made once, private, outside the releases, and kept.
    let mode = |p: &Path| {
        std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(p).unwrap().permissions())
            & 0o777
    };
    let key_file = base.join("etc/secret.key");
    assert_eq!(mode(&key_file), 0o600);
    assert_eq!(mode(&base.join("releases/bbru-1.0.0/etc/site.toml")), 0o600);
    let key = std::fs::read(&key_file).unwrap();
    let o = deploy_with(&base, &archives[1], &config, &["--keep-previous"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(live_release(&listen), "bbru-1.0.1");
    assert_eq!(std::fs::read(&key_file).unwrap(), key);
    // The same release again is refused: a release directory is never overwritten.
    let o = deploy(&base, &archives[1], &config);
    assert!(
        !o.status.success() && output_text(&o).contains("never overwritten"),
        "{}",
        output_text(&o)
    );
    assert_eq!(live_release(&listen), "bbru-1.0.1");

    let o = bbru(&["rollback"]);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(live_release(&listen), "bbru-1.0.0");
    let o = bbru(&["releases"]);
    assert!(
        output_text(&o).contains("* bbru-1.0.0  (running"),
        "{}",
        output_text(&o)
    );
    assert!(
        output_text(&o).contains("  bbru-1.0.1  (not running"),
        "{}",
        output_text(&o)
    );
    assert_eq!(get(&listen, "/page").unwrap().0, 200);
    let current = base.join("current/etc/serve.toml");
    run(Command::new(env!("CARGO_BIN_EXE_bbru"))
        .args(["serve", "-c"])
        .arg(&current)
        .arg("--stop-daemon"));
}

/// Requests on a new connection each, from several workers, until finished.
struct Load {
    stop: Arc<AtomicBool>,
    failures: Arc<parking_lot::Mutex<Vec<String>>>,
    served: Arc<AtomicUsize>,
    workers: Vec<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(listen: &str, workers: usize) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let failures = Arc::new(parking_lot::Mutex::new(Vec::<String>::new()));
        let served = Arc::new(AtomicUsize::new(0));
        let workers = (0..workers)
            .map(|_| {
                let (stop, failures, served, listen) = (
                    stop.clone(),
                    failures.clone(),
                    served.clone(),
                    listen.to_owned(),
                );
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        match get(&listen, "/page") {
                            Ok((200, body)) if body.contains("Kept across deploys") => {
                                served.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok((code, body)) => failures
                                .lock()
                                .push(format!("{code}: {}", &body[..body.len().min(200)])),
                            Err(e) => failures.lock().push(e),
                        }
                    }
                })
            })
            .collect();
        Load {
            stop,
            failures,
            served,
            workers,
        }
    }

    fn served(&self) -> usize {
        self.served.load(Ordering::Relaxed)
    }

    /// The failed requests so far (`what` says after which step).
    fn assert_none_failed(&self, what: &str) {
        let failures = self.failures.lock();
        assert!(
            failures.is_empty(),
            "{what}: {} failed requests: {:?}",
            failures.len(),
            &failures[..failures.len().min(5)]
        );
    }

    fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        for w in self.workers {
            w.join().unwrap();
        }
    }
}

/// The pid of the live release's instance (`--status`).
fn live_pid(base: &Path) -> u32 {
    let o = Command::new(env!("CARGO_BIN_EXE_bbru"))
        .args(["serve", "-c"])
        .arg(base.join("current/etc/serve.toml"))
        .arg("--status")
        .output()
        .unwrap();
    let text = output_text(&o);
    let at = text.find("pid ").unwrap_or_else(|| panic!("{text}")) + 4;
    text[at..]
        .split(|c: char| !c.is_ascii_digit())
        .next()
        .unwrap()
        .parse()
        .unwrap()
}

/// The handover name leads to the live release's instance.
fn assert_name_with_live_instance(base: &Path, what: &str) {
    let name = base.join("run/bbru.sock");
    let pid = live_pid(base);
    let target = std::fs::read_link(&name).unwrap_or_else(|e| panic!("{what}: {e}"));
    assert_eq!(
        target,
        PathBuf::from(format!("bbru.sock.{pid}")),
        "{what}: the handover name leads to the live instance"
    );
    assert!(
        std::os::unix::net::UnixStream::connect(&name).is_ok(),
        "{what}"
    );
}

/// A deploy whose output must say it failed, leaving `live` serving.
fn assert_refused(o: &Output, live: &str, why: &str) {
    let text = output_text(o);
    assert!(!o.status.success(), "a failed deploy must fail:\n{text}");
    assert!(text.contains(why), "{text}");
    assert!(
        text.contains(live) && text.contains("keeps serving") || !text.contains("[5/8]"),
        "{text}"
    );
}

#[test]
fn after_every_kind_of_failed_deploy_the_next_one_drops_no_request() {
    let work = tempfile::tempdir().unwrap();
    let zeo = database(work.path());
    let archives = archives(work.path());
    let base = work.path().join("srv");
    let listen = format!("127.0.0.1:{}", free_port());
    let config = deploy_toml(work.path(), &base, &listen, &zeo);
    let o = deploy(&base, &archives[0], &config);
    assert!(o.status.success(), "first deploy:\n{}", output_text(&o));
    assert!(
        output_text(&o).contains("[8/8]"),
        "progress shown:\n{}",
        output_text(&o)
    );
    assert_eq!(live_release(&listen), "bbru-1.0.0");
    assert_name_with_live_instance(&base, "first deploy");
    let load = Load::start(&listen, 4);
    std::thread::sleep(Duration::from_millis(200));

    // An instance that starts, takes the socket over, and never becomes healthy.
    let o = deploy_with(&base, &archives[3], &config, &["--health-timeout", "2"]);
    assert_refused(&o, "bbru-1.0.0", "did not answer from bbru-1.0.3");
    assert!(!base.join("releases/bbru-1.0.3").exists());
    assert_name_with_live_instance(&base, "after the unhealthy release");
    let o = deploy(&base, &archives[1], &config);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(live_release(&listen), "bbru-1.0.1");
    assert!(
        !base.join("releases/bbru-1.0.0").exists(),
        "the previous release directory is removed"
    );
    load.assert_none_failed("an unhealthy release, then a normal deploy");

    // A release whose own tests fail.
    let o = deploy(&base, &archives[2], &config);
    assert_refused(&o, "bbru-1.0.1", "a check this release breaks");
    assert!(!base.join("releases/bbru-1.0.2").exists());
    assert_eq!(live_release(&listen), "bbru-1.0.1");
    // An archive that is not a release.
    let junk = work.path().join("junk.tar.gz");
    run(Command::new("tar")
        .arg("czf")
        .arg(&junk)
        .arg("-C")
        .arg(work.path())
        .arg("deploy.toml"));
    let o = deploy(&base, &junk, &config);
    assert_refused(&o, "bbru-1.0.1", "not bbru-X.Y.Z");
    assert_name_with_live_instance(&base, "after the refused releases");
    let o = deploy(&base, &archives[0], &config);
    assert!(o.status.success(), "{}", output_text(&o));
    assert_eq!(live_release(&listen), "bbru-1.0.0");
    load.assert_none_failed("failing tests, a refused archive, then a normal deploy");

    // The deploy itself killed (SIGKILL) while it waits for the new instance's health:
    // that instance stays up, sharing the socket, not the live release.
    let mut killed = Command::new(env!("CARGO_BIN_EXE_bbru"))
        .arg("deploy")
        .arg(&archives[3])
        .arg("--base")
        .arg(&base)
        .arg("-c")
        .arg(&config)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut progress = std::io::BufReader::new(killed.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("[6/8]") {
        line.clear();
        let n = std::io::BufRead::read_line(&mut progress, &mut line).unwrap();
        assert!(n > 0, "the deploy ended before waiting for health");
    }
    killed.kill().unwrap();
    killed.wait().unwrap();
    assert_name_with_live_instance(&base, "after the deploy was killed");
    let o = deploy(&base, &archives[1], &config);
    assert!(o.status.success(), "{}", output_text(&o));
    assert!(
        output_text(&o).contains("left by an interrupted deploy"),
        "{}",
        output_text(&o)
    );
    assert_eq!(live_release(&listen), "bbru-1.0.1");
    assert_name_with_live_instance(&base, "after the deploy that followed");
    std::thread::sleep(Duration::from_millis(200));
    let served = load.served();
    load.assert_none_failed("a killed deploy, then a normal deploy");
    load.finish();
    assert!(served > 0);
    let o = Command::new(env!("CARGO_BIN_EXE_bbru"))
        .arg("releases")
        .arg("--base")
        .arg(&base)
        .output()
        .unwrap();
    assert!(
        output_text(&o).contains("* bbru-1.0.1  (running"),
        "{}",
        output_text(&o)
    );
    // The killed deploy's release is kept, its instance stopped.
    assert!(
        output_text(&o).contains("  bbru-1.0.3  (not running"),
        "{}",
        output_text(&o)
    );

    let current = base.join("current/etc/serve.toml");
    run(Command::new(env!("CARGO_BIN_EXE_bbru"))
        .args(["serve", "-c"])
        .arg(&current)
        .arg("--stop-daemon"));
    // Nothing of value was in the release directories, and the instance left by the
    // killed deploy was stopped too: nothing listens.
    let (code, _) = get(&listen, "/page").unwrap_or((0, String::new()));
    assert_eq!(code, 0, "nothing listens any more");
}
