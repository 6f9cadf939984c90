//! Shared plumbing for the `daemon` integration tests: running `daemon-test-helper` with a
//! timeout, starting it as a daemon, and a guard that stops whatever a test left running
//! (so a failing test does not leak processes).

#![allow(dead_code)]

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

pub const HELPER: &str = env!("CARGO_BIN_EXE_daemon-test-helper");

/// Every wait in the tests is bounded by this.
pub const TIMEOUT: Duration = Duration::from_secs(15);

/// A scratch directory with the pid and log file paths of one daemon.
pub struct Site {
    pub dir: tempfile::TempDir,
    pub pid_file: PathBuf,
    pub log_file: PathBuf,
}

impl Site {
    pub fn new() -> Site {
        let dir = tempfile::tempdir().expect("tempdir");
        let pid_file = dir.path().join("daemon.pid");
        let log_file = dir.path().join("daemon.log");
        Site {
            dir,
            pid_file,
            log_file,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// Runs the helper with `--pid-file` and `--log-file` plus `args`, bounded by TIMEOUT.
    pub fn helper(&self, args: &[&str]) -> Output {
        let mut cmd = Command::new(HELPER);
        cmd.arg("--pid-file")
            .arg(&self.pid_file)
            .arg("--log-file")
            .arg(&self.log_file)
            .args(args);
        run(cmd)
    }

    /// Starts the helper as a daemon (`--daemon --port 0` plus `args`); panics unless it
    /// succeeded. Returns the daemon's pid and the port it listens on.
    pub fn start(&self, args: &[&str]) -> Started {
        let mut all = vec!["--daemon", "--port", "0"];
        all.extend_from_slice(args);
        let out = self.helper(&all);
        assert!(
            out.status.success(),
            "daemon start failed: {}\nstderr: {}",
            out.status,
            text(&out.stderr)
        );
        let stdout = text(&out.stdout);
        let pid: u32 = stdout
            .split("started daemon pid ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no pid in {stdout:?}"));
        Started {
            pid,
            port: self.port_of(pid),
        }
    }

    /// The port the daemon `pid` logged ("listening on 127.0.0.1:PORT" after its pid line).
    pub fn port_of(&self, pid: u32) -> u16 {
        let log = std::fs::read_to_string(&self.log_file).expect("read log");
        let ours = log
            .rsplit(&format!("pid {pid} holds"))
            .next()
            .expect("the daemon's own lines");
        ours.split("listening on 127.0.0.1:")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("no port in log {log:?}"))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        // Whatever a (possibly failed) test left running.
        let _ = daemon::stop(&self.pid_file, Duration::from_millis(200));
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Started {
    pub pid: u32,
    pub port: u16,
}

/// Runs `cmd` to completion with stdout/stderr captured, killing it after TIMEOUT.
pub fn run(mut cmd: Command) -> Output {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn helper");
    let start = Instant::now();
    loop {
        if child.try_wait().expect("try_wait").is_some() {
            return child.wait_with_output().expect("output");
        }
        if start.elapsed() > TIMEOUT {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "helper timed out; stdout: {} stderr: {}",
                text(&out.stdout),
                text(&out.stderr)
            );
        }
        sleep(Duration::from_millis(10));
    }
}

pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// Sends one request line and returns the first reply line, with the stream for more.
pub fn request(port: u16, line: &str) -> (String, BufReader<TcpStream>) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(TIMEOUT)).expect("timeout");
    s.write_all(format!("{line}\n").as_bytes()).expect("send");
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).expect("reply");
    (reply.trim().to_owned(), r)
}

/// Polls `cond` every 10 ms until true; panics after TIMEOUT.
pub fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let start = Instant::now();
    while !cond() {
        assert!(start.elapsed() < TIMEOUT, "timed out waiting for {what}");
        sleep(Duration::from_millis(10));
    }
}

/// SIGKILLs `pid` (the test's own daemon) and waits until its lock is released.
pub fn kill_hard(pid: u32, pid_file: &Path) {
    let p = rustix::process::Pid::from_raw(pid as i32).expect("pid");
    rustix::process::kill_process(p, rustix::process::Signal::KILL).expect("SIGKILL");
    wait_until("the killed daemon's lock to be released", || {
        !daemon::status(pid_file).is_running()
    });
}
