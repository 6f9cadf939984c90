//! Many clients hammering the JSON API of one `bbru serve` with HTTP Basic credentials
//! on every request (issue 10's measurement): requests per second and the instance's
//! peak resident memory.
//!
//! ```text
//! basic-auth-bench --bbru target/release/bbru [--clients 4] [--seconds 10]
//!                  [--path /] [--token]
//! ```
//!
//! Starts the instance on a fresh embedded `Data.fs` in a scratch directory (the
//! bootstrap manager declared), waits for `/@@health`, then runs `--clients` threads,
//! each with one keep-alive connection sending `GET <path>` with `Accept:
//! application/json` and `Authorization: Basic ...` (or, with `--token`, the token of
//! one `POST /@login` as `Authorization: Bearer ...`) for `--seconds`.  Prints one JSON
//! object: requests, seconds, requests_per_second, non_200, peak_rss_mb (`VmHWM` of the
//! instance), rss_mb at the end.  Plain HTTP/1.1 over `std::net`, so the client costs
//! little next to the server on a small machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use base64::Engine;
use clap::Parser;
use serde_json::json;

const LOGIN: &str = "admin";
const PASSWORD: &str = "admin-password";

#[derive(Parser, Debug)]
struct Args {
    /// The `bbru` binary to measure (a release build).
    #[arg(long)]
    bbru: PathBuf,
    #[arg(long, default_value_t = 4)]
    clients: usize,
    #[arg(long, default_value_t = 10)]
    seconds: u64,
    #[arg(long, default_value = "/")]
    path: String,
    /// Authenticate with an API token instead of HTTP Basic.
    #[arg(long)]
    token: bool,
}

/// The instance, killed when dropped.
struct Instance(Child);

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn status_kb(pid: u32, field: &str) -> Result<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    text.lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .with_context(|| format!("no {field} for {pid}"))
}

/// One request on `stream`; the status and the body.
fn request(stream: &mut BufReader<TcpStream>, head: &str, body: &[u8]) -> Result<(u16, Vec<u8>)> {
    stream.get_mut().write_all(head.as_bytes())?;
    stream.get_mut().write_all(body)?;
    let mut line = String::new();
    stream.read_line(&mut line)?;
    let status: u16 = line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .with_context(|| format!("bad status line {line:?}"))?;
    let mut length = 0usize;
    loop {
        line.clear();
        stream.read_line(&mut line)?;
        if line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((k, v)) = line.split_once(':')
            && k.eq_ignore_ascii_case("content-length")
        {
            length = v.trim().parse()?;
        }
    }
    let mut data = vec![0; length];
    stream.read_exact(&mut data)?;
    Ok((status, data))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let dir = std::env::temp_dir().join(format!("basic-auth-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    std::fs::write(
        dir.join("site.toml"),
        format!("[bootstrap_manager]\nlogin = \"{LOGIN}\"\npassword = \"{PASSWORD}\"\n"),
    )?;
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let address = format!("127.0.0.1:{port}");
    // The instance runs in the scratch directory: a relative path would not resolve.
    let bbru = args
        .bbru
        .canonicalize()
        .with_context(|| format!("no binary {}", args.bbru.display()))?;
    let child = Command::new(&bbru)
        .current_dir(&dir)
        .args(["serve", "--listen", &address, "--file", "Data.fs"])
        .args(["--site-config", "site.toml"])
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("bbru.log"))?)
        .spawn()
        .with_context(|| format!("starting {}", bbru.display()))?;
    let pid = child.id();
    let instance = Instance(child);
    let started = Instant::now();
    loop {
        if let Ok(stream) = TcpStream::connect(&address) {
            let mut s = BufReader::new(stream);
            if let Ok((200, _)) =
                request(&mut s, "GET /@@health HTTP/1.1\r\nHost: bench\r\n\r\n", b"")
            {
                break;
            }
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the instance did not become healthy; see {}", dir.display());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let authorization = if args.token {
        let mut s = BufReader::new(TcpStream::connect(&address)?);
        let body = json!({"login": LOGIN, "password": PASSWORD}).to_string();
        let (status, reply) = request(
            &mut s,
            &format!(
                "POST /@login HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                body.len()
            ),
            body.as_bytes(),
        )?;
        if status != 200 {
            bail!("POST /@login: {status}");
        }
        let token: serde_json::Value = serde_json::from_slice(&reply)?;
        format!("Bearer {}", token["token"].as_str().context("no token")?)
    } else {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{LOGIN}:{PASSWORD}"))
        )
    };
    let head = format!(
        "GET {} HTTP/1.1\r\nHost: bench\r\nAccept: application/json\r\nAuthorization: {authorization}\r\n\r\n",
        args.path
    );
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let failed = Arc::new(AtomicU64::new(0));
    let measuring = Instant::now();
    let clients: Vec<_> = (0..args.clients)
        .map(|_| {
            let (stop, done, failed, head, address) = (
                stop.clone(),
                done.clone(),
                failed.clone(),
                head.clone(),
                address.clone(),
            );
            std::thread::spawn(move || -> Result<()> {
                let mut s = BufReader::new(TcpStream::connect(&address)?);
                while !stop.load(Ordering::Relaxed) {
                    let (status, _) = request(&mut s, &head, b"")?;
                    if status != 200 {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    done.fetch_add(1, Ordering::Relaxed);
                }
                Ok(())
            })
        })
        .collect();
    std::thread::sleep(Duration::from_secs(args.seconds));
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread")?;
    }
    let seconds = measuring.elapsed().as_secs_f64();
    let requests = done.load(Ordering::Relaxed);
    let report = json!({
        "clients": args.clients,
        "auth": if args.token { "bearer" } else { "basic" },
        "path": args.path,
        "requests": requests,
        "seconds": seconds,
        "requests_per_second": (requests as f64 / seconds).round(),
        "non_200": failed.load(Ordering::Relaxed),
        "peak_rss_mb": status_kb(pid, "VmHWM:")? / 1024,
        "rss_mb": status_kb(pid, "VmRSS:")? / 1024,
    });
    println!("{report}");
    drop(instance);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
