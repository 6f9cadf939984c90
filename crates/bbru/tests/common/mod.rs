//! Real processes for the end-to-end tests (`tests/browser`, `tests/instances`): the
//! `bbru serve` binary of this build and the `bbru-zeo` server, each in a temporary
//! directory, on a free loopback port, with its log kept in a file that is printed when
//! a test fails.  Readiness is checked (`/@@health` answers 200, the ZEO port accepts),
//! never waited for with a fixed sleep.

// Each test binary uses its own part of this module.
#![allow(dead_code)]

use std::io::Write;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The bootstrap manager every test site declares.
pub const ADMIN: (&str, &str) = ("admin", "admin-password");

/// How long a process may take to become ready.
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The cargo target directory: `$CARGO_TARGET_DIR`, or `<repo>/target`.
pub fn target_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => {
            let dir = PathBuf::from(dir);
            if dir.is_absolute() {
                dir
            } else {
                repo_dir().join(dir)
            }
        }
        _ => repo_dir().join("target"),
    }
}

/// The repository (workspace) root.
pub fn repo_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("local address").port()
}

/// Writes the site configuration of the tests (bootstrap manager declared, so the first
/// instance to start on an empty database creates the site) to `dir/site.toml`.
pub fn write_site_config(dir: &Path) -> PathBuf {
    let path = dir.join("site.toml");
    let text = format!(
        "[site]\ntitle = \"Test site\"\npublic = true\nlanguage = \"en\"\n\n[bootstrap_manager]\nlogin = \"{}\"\npassword = \"{}\"\n",
        ADMIN.0, ADMIN.1
    );
    std::fs::write(&path, text).expect("write site.toml");
    path
}

/// The last `lines` lines of a log file (or why it cannot be read).
pub fn log_tail(path: &Path, lines: usize) -> String {
    match std::fs::read_to_string(path) {
        Ok(text) => {
            let all: Vec<&str> = text.lines().collect();
            all[all.len().saturating_sub(lines)..].join("\n")
        }
        Err(e) => format!("(cannot read {}: {e})", path.display()),
    }
}

/// A child process, SIGKILLed when dropped; its log is printed if the test is failing.
#[derive(Debug)]
pub struct Process {
    what: String,
    child: Option<Child>,
    pub log: PathBuf,
}

impl Process {
    /// Spawns `command` with its output going to `log`.
    pub fn spawn(what: &str, mut command: Command, log: PathBuf) -> Process {
        let file = std::fs::File::create(&log)
            .unwrap_or_else(|e| panic!("creating {}: {e}", log.display()));
        command
            .stdin(Stdio::null())
            .stdout(file.try_clone().expect("log file handle"))
            .stderr(file);
        let child = command
            .spawn()
            .unwrap_or_else(|e| panic!("starting {what} ({command:?}): {e}"));
        Process {
            what: what.to_owned(),
            child: Some(child),
            log,
        }
    }

    /// Panics with the log if the process has exited.
    pub fn check_running(&mut self) {
        if let Some(child) = &mut self.child
            && let Ok(Some(status)) = child.try_wait()
        {
            panic!(
                "{} exited: {status}; its log ({}):\n{}",
                self.what,
                self.log.display(),
                log_tail(&self.log, 40)
            );
        }
    }

    /// Polls `ready` until it holds, failing with the log if the process exits or
    /// `START_TIMEOUT` passes.
    pub fn wait_until(&mut self, what: &str, mut ready: impl FnMut() -> bool) {
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if ready() {
                return;
            }
            self.check_running();
            assert!(
                Instant::now() < deadline,
                "{}: not {what} after {START_TIMEOUT:?}; its log ({}):\n{}",
                self.what,
                self.log.display(),
                log_tail(&self.log, 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// SIGTERM, then wait until it has exited (SIGKILL after [`START_TIMEOUT`]).
    pub fn terminate_and_wait(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let _ = Command::new("kill")
            .args(["-TERM", &child.id().to_string()])
            .status();
        let deadline = Instant::now() + START_TIMEOUT;
        while !matches!(child.try_wait(), Ok(Some(_))) {
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                panic!("{} did not exit after SIGTERM", self.what);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The process id, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Sends SIGTERM (a graceful stop).
    pub fn terminate(&self) {
        if let Some(pid) = self.pid() {
            let status = Command::new("kill")
                .args(["-TERM", &pid.to_string()])
                .status()
                .expect("run kill");
            assert!(status.success(), "kill -TERM {pid}: {status}");
        }
    }

    /// Waits up to `timeout` for the process to exit; its status, or `None` if it still
    /// runs.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The peak resident memory of the process so far (`VmHWM`), in bytes.
    pub fn peak_rss(&self) -> u64 {
        test_support::process::peak_rss(self.pid().expect("the process runs"))
    }

    /// SIGKILL, and wait until it is gone.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let mut err = std::io::stderr().lock();
            let _ = writeln!(
                err,
                "---- log of {} ({}) ----\n{}\n----",
                self.what,
                self.log.display(),
                log_tail(&self.log, 60)
            );
        }
    }
}

/// The database an instance uses.
#[derive(Debug, Clone)]
pub enum Storage {
    /// An embedded FileStorage.
    File(PathBuf),
    /// A ZEO server's address.
    Zeo(String),
    /// A PostgreSQL database's URL.
    Postgres(String),
}

/// A `bbru serve` process answering on `base`.
#[derive(Debug)]
pub struct Instance {
    pub base: String,
    pub process: Process,
}

impl Instance {
    /// Starts `bbru serve` in `root/name` (its own working directory, so instances never
    /// share a pid file) with the site configuration `site_config` and the secret key
    /// file `root/secret.key` (shared, as every instance of a site must), and waits until
    /// `/@@health` answers 200 (the site exists and the database answered).
    pub fn start(root: &Path, name: &str, site_config: &Path, storage: &Storage) -> Instance {
        let dir = root.join(name);
        std::fs::create_dir_all(&dir).expect("instance directory");
        let listen = "127.0.0.1:0";
        let mut command = Command::new(env!("CARGO_BIN_EXE_bbru"));
        command
            .current_dir(&dir)
            .env("BBRU_LOG", "info")
            .arg("serve")
            .args(["--listen", listen])
            .arg("--site-config")
            .arg(site_config)
            .arg("--secret-key-file")
            .arg(root.join("secret.key"));
        match storage {
            Storage::File(path) => command.arg("--file").arg(path),
            Storage::Zeo(address) => command.args(["--zeo", address]),
            Storage::Postgres(url) => command.args(["--postgres", url]),
        };
        Instance::launch(name, command, &dir)
    }

    /// [`Instance::start`] on a ZEO server at `zeo`, with `storage_lines` added to the
    /// `[storage]` section of a serve.toml it reads (`conflict_retries = 8`, say).
    pub fn start_zeo_configured(
        root: &Path,
        name: &str,
        site_config: &Path,
        zeo: &str,
        storage_lines: &str,
    ) -> Instance {
        let rest = format!(
            "site_config = {:?}\nsecret_key_file = {:?}\npid_file = \"var/bbru.pid\"\n\n[storage]\nzeo = {zeo:?}\n{storage_lines}\n",
            site_config.display().to_string(),
            root.join("secret.key").display().to_string(),
        );
        Instance::launch_configured(root, name, &rest)
    }

    /// Writes `root/name/etc/serve.toml` (`listen` on a port the instance chooses, then
    /// `rest`) and runs `bbru serve -c etc/serve.toml` in `root/name` until it is
    /// healthy.
    fn launch_configured(root: &Path, name: &str, rest: &str) -> Instance {
        let dir = root.join(name);
        std::fs::create_dir_all(dir.join("etc")).expect("instance directory");
        let text = format!("listen = \"127.0.0.1:0\"\n{rest}");
        std::fs::write(dir.join("etc/serve.toml"), text).expect("write serve.toml");
        let mut command = Command::new(env!("CARGO_BIN_EXE_bbru"));
        command
            .current_dir(&dir)
            .env("BBRU_LOG", "info")
            .args(["serve", "-c", "etc/serve.toml"]);
        Instance::launch(name, command, &dir)
    }

    /// Runs `command` (a `bbru serve` listening on port 0 of 127.0.0.1, logging to
    /// `dir/bbru.log`), reads the address it bound from its log, and waits until its
    /// `/@@health` answers 200. (A port probed free beforehand could be taken by
    /// another test's server before this one binds it, and that one would answer.)
    fn launch(name: &str, command: Command, dir: &Path) -> Instance {
        let log = dir.join("bbru.log");
        let mut process = Process::spawn(&format!("bbru serve ({name})"), command, log.clone());
        let mut listen = None;
        process.wait_until("listening", || {
            listen = serving_address(&log);
            listen.is_some()
        });
        let listen = listen.expect("the address in the log");
        let base = format!("http://{listen}");
        let health = format!("{base}/@@health");
        let client = reqwest::blocking::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .expect("HTTP client");
        process.wait_until("healthy", || {
            client
                .get(&health)
                .send()
                .is_ok_and(|r| r.status() == reqwest::StatusCode::OK)
        });
        Instance { base, process }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// Starts `bbru serve -c etc/serve.toml` in `root/name` on the embedded file
    /// `data`, with `extra` appended to its serve.toml (an `[http]` section, say), and
    /// waits until it is healthy.
    pub fn start_configured(
        root: &Path,
        name: &str,
        site_config: &Path,
        data: &Path,
        extra: &str,
    ) -> Instance {
        let rest = format!(
            "site_config = {:?}\npid_file = \"var/bbru.pid\"\n\n[storage]\nfile = {:?}\n\n{extra}\n",
            site_config.display().to_string(),
            data.display().to_string(),
        );
        Instance::launch_configured(root, name, &rest)
    }

    /// The `host:port` the instance listens on.
    pub fn address(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    /// SIGKILL: nothing is flushed or closed on the way out.
    pub fn kill(&mut self) {
        self.process.kill();
    }
}

/// The `bbru-zeo` binary beside `bbru`; built with `cargo build -p zeo --bin bbru-zeo`
/// if missing (as when only this crate's tests were built).
pub fn zeo_binary() -> PathBuf {
    let bbru = Path::new(env!("CARGO_BIN_EXE_bbru"));
    let zeo = bbru.with_file_name(format!("bbru-zeo{}", std::env::consts::EXE_SUFFIX));
    if zeo.exists() {
        return zeo;
    }
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut command = Command::new(&cargo);
    command
        .current_dir(repo_dir())
        .args(["build", "-p", "zeo", "--bin", "bbru-zeo"]);
    if bbru
        .parent()
        .and_then(Path::file_name)
        .is_some_and(|p| p == "release")
    {
        command.arg("--release");
    }
    let status = command
        .status()
        .unwrap_or_else(|e| panic!("running {command:?} to build bbru-zeo: {e}"));
    assert!(status.success(), "{command:?} failed: {status}");
    assert!(
        zeo.exists(),
        "{command:?} succeeded but {} is still missing",
        zeo.display()
    );
    zeo
}

/// A `bbru-zeo` server on a free port.
#[derive(Debug)]
pub struct Zeo {
    pub address: String,
    pub process: Process,
}

/// The address the server logging to `log` says it serves, once it has said so.
fn serving_address(log: &Path) -> Option<String> {
    test_support::process::serving_address(&std::fs::read_to_string(log).ok()?)
}

/// Whether the `bbru-zeo` logging to `log` says it serves `address`: that process
/// bound it (a connection alone could reach another process that took the port after
/// [`free_port`] probed it, or a loopback connection that met itself).
fn serves(log: &Path, address: &str) -> bool {
    serving_address(log).is_some_and(|a| a == address)
}

impl Zeo {
    /// Serves `file` (created if missing) and waits until the port accepts connections.
    pub fn start(file: &Path) -> Zeo {
        Zeo::start_on(file, &format!("127.0.0.1:{}", free_port()))
    }

    /// [`Zeo::start`] on a given `host:port` (to come back where a server was).
    pub fn start_on(file: &Path, address: &str) -> Zeo {
        Zeo::start_with(file, address, &[])
    }

    /// [`Zeo::start_on`] with more flags (`--ssl-certificate PEM`, ...).
    pub fn start_with(file: &Path, address: &str, extra: &[&str]) -> Zeo {
        let address = address.to_owned();
        let mut command = Command::new(zeo_binary());
        command
            .env("BBRU_LOG", "info")
            .args(["-a", &address, "-f"])
            .arg(file)
            .args(extra);
        let mut process = Process::spawn(
            &format!("bbru-zeo ({address})"),
            command,
            file.with_extension("zeo.log"),
        );
        let log = file.with_extension("zeo.log");
        process.wait_until("serving", || serves(&log, &address));
        Zeo { address, process }
    }

    /// Serves the PostgreSQL database at `url` (which holds the schema), logging to
    /// `log`, and waits until the port accepts connections.
    pub fn start_postgres(url: &str, log: &Path) -> Zeo {
        let address = format!("127.0.0.1:{}", free_port());
        let mut command = Command::new(zeo_binary());
        command
            .env("BBRU_LOG", "info")
            .args(["-a", &address, "--postgres", url]);
        let mut process = Process::spawn(
            &format!("bbru-zeo on PostgreSQL ({address})"),
            command,
            log.to_owned(),
        );
        process.wait_until("serving", || serves(log, &address));
        Zeo { address, process }
    }

    /// SIGKILL: only what was committed (fdatasynced before `finish` returned) remains.
    pub fn kill(&mut self) {
        self.process.kill();
    }

    /// SIGTERM, and wait (bounded) until the process has exited.
    pub fn stop(&mut self) {
        self.process.terminate_and_wait();
    }
}

/// What a finished command printed, stdout then stderr.
pub fn output_text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// Runs this build's `bbru` in `dir` with `args`, to completion.
pub fn bbru(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_bbru"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run bbru")
}

/// Serves `storage` over ZEO from a runtime of its own (in this process, for the tests
/// that need no server process); returns its `host:port`.
pub fn zeo_in_process(storage: std::sync::Arc<dyn zodb_storage::Storage>) -> String {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("a runtime");
    let config = zeo::server::Config {
        address: zeo::server::Address::Tcp("127.0.0.1:0".into()),
        ..zeo::server::Config::default()
    };
    let server = runtime
        .block_on(zeo::server::Server::bind(
            config,
            vec![("1".into(), storage)],
        ))
        .expect("bind the ZEO server");
    let zeo::server::Address::Tcp(address) = server.local_address() else {
        unreachable!("bound to TCP")
    };
    std::thread::spawn(move || runtime.block_on(server.run()));
    address
}
