//! A stand-in server for the `daemon` integration tests: it uses the library the way
//! `bbru-zeo` and `bbru serve` do, so the tests run real processes, not mocks.
//!
//! ```text
//! daemon-test-helper --pid-file P [--log-file L] [--port N] [options]
//!   --status              print the status, exit with its LSB code
//!   --stop-daemon         stop the daemon (--grace-ms, default 10000), exit with its code
//!   --daemon              start detached (daemonize), wait for readiness
//!   --ready-timeout-ms N  (with --daemon) how long the parent waits for readiness
//!   (otherwise: serve in the foreground)
//!   --ready-delay-ms N    sleep this long after binding, before notify_ready
//!   --slow-ms N           how long a "SLOW" request takes (default 300)
//!   --done-file F         created when a slow request completes
//!   --ignore-term         swallow SIGTERM (to test SIGKILL after the grace period)
//! ```
//!
//! Protocol on 127.0.0.1:port, one line per connection: `PING` -> `PONG`; `SLOW` ->
//! `STARTED`, then after `--slow-ms` the done file is written and `DONE` sent. On SIGTERM
//! the server stops accepting, finishes in-flight requests, removes its pid file, exits 0.
//! SIGHUP reopens the log file (`--log-file`).

use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::sleep;
use std::time::{Duration, Instant};

#[derive(Debug, Default)]
struct Opts {
    pid_file: Option<PathBuf>,
    log_file: Option<PathBuf>,
    port: u16,
    status: bool,
    stop: bool,
    daemon: bool,
    grace_ms: Option<u64>,
    ready_timeout_ms: Option<u64>,
    ready_delay_ms: u64,
    slow_ms: Option<u64>,
    done_file: Option<PathBuf>,
    ignore_term: bool,
}

fn parse() -> Result<Opts, String> {
    let mut o = Opts::default();
    let mut it = std::env::args_os().skip(1);
    while let Some(a) = it.next() {
        let a = a.to_string_lossy().into_owned();
        let mut value = || {
            it.next()
                .map(|v| v.to_string_lossy().into_owned())
                .ok_or_else(|| format!("{a} needs a value"))
        };
        let num = |v: String| v.parse::<u64>().map_err(|e| format!("{v}: {e}"));
        match a.as_str() {
            "--pid-file" => o.pid_file = Some(value()?.into()),
            "--log-file" => o.log_file = Some(value()?.into()),
            "--port" => o.port = value()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--status" => o.status = true,
            "--stop-daemon" => o.stop = true,
            "--daemon" => o.daemon = true,
            "--grace-ms" => o.grace_ms = Some(num(value()?)?),
            "--ready-timeout-ms" => o.ready_timeout_ms = Some(num(value()?)?),
            "--ready-delay-ms" => o.ready_delay_ms = num(value()?)?,
            "--slow-ms" => o.slow_ms = Some(num(value()?)?),
            "--done-file" => o.done_file = Some(value()?.into()),
            "--ignore-term" => o.ignore_term = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    Ok(o)
}

fn main() -> ExitCode {
    let opts = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(2);
        }
    };
    let Some(pid_file) = opts.pid_file.clone() else {
        eprintln!("error: --pid-file is required");
        return ExitCode::from(2);
    };
    let code = if opts.status {
        let st = daemon::status(&pid_file);
        println!("{}: {st}", pid_file.display());
        st.exit_code()
    } else if opts.stop {
        let grace = Duration::from_millis(opts.grace_ms.unwrap_or(10_000));
        match daemon::stop(&pid_file, grace) {
            Ok(outcome) => {
                println!("{}: {outcome}", pid_file.display());
                outcome.exit_code()
            }
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    } else if opts.daemon {
        start_daemon(&opts, pid_file)
    } else {
        match serve(&opts, pid_file) {
            Ok(()) => 0,
            Err(e) => {
                eprintln!("error: {e}");
                1
            }
        }
    };
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

fn start_daemon(opts: &Opts, pid_file: PathBuf) -> i32 {
    let Some(log_file) = opts.log_file.clone() else {
        eprintln!("error: --daemon needs --log-file");
        return 2;
    };
    let mut args = match daemon::DaemonArgs::new(pid_file, log_file) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("error: {e}");
            return 1;
        }
    };
    if let Some(ms) = opts.ready_timeout_ms {
        args.ready_timeout = Duration::from_millis(ms);
    }
    args.stop_grace = Duration::from_secs(2);
    match daemon::daemonize(args) {
        Ok(outcome) => {
            println!("{outcome}");
            0
        }
        Err(e) => {
            eprintln!("error: {e}");
            1
        }
    }
}

fn serve(opts: &Opts, pid_file: PathBuf) -> Result<(), String> {
    let term = Arc::new(AtomicBool::new(false));
    let swallowed = Arc::new(AtomicBool::new(false));
    let term_target = if opts.ignore_term { &swallowed } else { &term };
    signal_hook::flag::register(signal_hook::consts::SIGTERM, Arc::clone(term_target))
        .map_err(|e| format!("SIGTERM handler: {e}"))?;
    let hup = daemon::SighupFlag::register().map_err(|e| e.to_string())?;

    let pid = daemon::PidFile::acquire(&pid_file).map_err(|e| e.to_string())?;
    println!(
        "pid {} holds {} (daemon child: {}, replaced stale: {:?})",
        pid.pid(),
        pid.path().display(),
        daemon::is_daemon_child(),
        pid.replaced_stale_pid()
    );
    let listener = TcpListener::bind(("127.0.0.1", opts.port))
        .map_err(|e| format!("cannot bind 127.0.0.1:{}: {e}", opts.port))?;
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    println!("listening on {addr}");

    let delay_end = Instant::now() + Duration::from_millis(opts.ready_delay_ms);
    while Instant::now() < delay_end {
        if term.load(Ordering::Acquire) {
            println!("SIGTERM before ready: exiting");
            return pid.release().map_err(|e| e.to_string());
        }
        sleep(Duration::from_millis(10));
    }
    match daemon::notify_ready() {
        Ok(sent) => println!("ready (notified: {sent})"),
        Err(e) => println!("ready, but {e}"),
    }

    listener.set_nonblocking(true).map_err(|e| e.to_string())?;
    let slow = Duration::from_millis(opts.slow_ms.unwrap_or(300));
    let mut workers = Vec::new();
    while !term.load(Ordering::Acquire) {
        if hup.take()
            && let Some(log) = &opts.log_file
        {
            daemon::reopen_log(log).map_err(|e| e.to_string())?;
            println!("SIGHUP: reopened {}", log.display());
        }
        match listener.accept() {
            Ok((stream, _)) => {
                let done = opts.done_file.clone();
                workers.push(std::thread::spawn(move || handle(stream, slow, done)));
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(format!("accept: {e}")),
        }
    }
    println!("SIGTERM: finishing {} request(s)", workers.len());
    let _ = daemon::notify_stopping();
    drop(listener);
    for w in workers {
        let _ = w.join();
    }
    pid.release().map_err(|e| e.to_string())?;
    println!("clean exit");
    Ok(())
}

fn handle(stream: TcpStream, slow: Duration, done_file: Option<PathBuf>) {
    let _ = stream.set_nonblocking(false);
    let mut line = String::new();
    let Ok(read_half) = stream.try_clone() else {
        return;
    };
    if BufReader::new(read_half).read_line(&mut line).is_err() {
        return;
    }
    let mut w = &stream;
    match line.trim() {
        "PING" => {
            println!("request: PING");
            let _ = w.write_all(b"PONG\n");
        }
        "SLOW" => {
            println!("request: SLOW started");
            let _ = w.write_all(b"STARTED\n");
            sleep(slow);
            if let Some(f) = done_file {
                let _ = std::fs::write(f, "done\n");
            }
            println!("request: SLOW done");
            let _ = w.write_all(b"DONE\n");
        }
        other => {
            let _ = writeln!(w, "ERR unknown request {other:?}");
        }
    }
}
