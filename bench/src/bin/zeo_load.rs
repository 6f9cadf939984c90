//! Load generator for ZEO servers: many connections from one process, speaking the ZEO 5
//! protocol with the crate's own codec (`zeo::wire`), so that one process on one core can
//! keep a server busy with more connections than Python client processes could
//! (`bench/zeo/run.sh` measures with Python clients; this measures the server's capacity).
//!
//! ```text
//! zeo-load --address HOST:PORT [--connections 8,32,128] [--seconds S] [--objects N]
//!          [--per-commit K] [--server-pid PID] [--label NAME] [--ping]
//! ```
//!
//! 1. Populates the storage with `--objects` new objects (one connection, 500 per
//!    transaction).
//! 2. For each number of connections: opens them (handshake, `register`), then
//!    - *cold loads*: each connection asks `loadBefore(oid, max)` of the populated oids in
//!      turn (every connection from its own offset), one request in flight per
//!      connection, for `--seconds`;
//!    - *commits*: each connection commits transactions of `--per-commit` new objects
//!      (`new_oids`, `tpc_begin`, `storea`…, `vote`, `tpc_finish`), for `--seconds`.
//!
//!    and prints, per phase, one JSON object: operations, rate, latency percentiles (µs),
//!    errors, and the server's CPU time per operation when `--server-pid` is given (from
//!    `/proc/PID/stat`, in clock ticks of 10 ms: phases of a few seconds are needed).
//! 3. With `--ping`: the round trip of one connection's `loadBefore` (raw codec), of the
//!    Rust `ClientStorage::load_before` (distinct oids, so every call goes to the server),
//!    and of a bare TCP ping-pong of the same sizes on loopback, for comparison: once
//!    with both ends in this process, and once against an echo in a process of its own
//!    (blocking calls on one thread), which, like a server, must be woken per request.
//!
//! Written for the benchmark only: a connection sends one request at a time, ignores the
//! server's invalidation callbacks, and stops at the first protocol error.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use clap::Parser;
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use zeo::wire::{self, Call, Encoding, Message, Value};
use zodb_storage::{Oid, Tid};

/// The frame size accepted from the server (replies here are small).
const FRAME_SIZE_MAX: usize = 16 * 1024 * 1024;
/// Objects per populating transaction.
const POPULATE_BATCH: usize = 500;

#[derive(Parser, Debug)]
#[command(about = "Many ZEO connections from one process: cold-load and commit throughput")]
struct Args {
    /// The server, HOST:PORT.
    #[arg(long)]
    address: String,
    /// The storage name to register.
    #[arg(long, default_value = "1")]
    storage: String,
    /// Numbers of concurrent connections, one run each.
    #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
    connections: Vec<usize>,
    /// Duration of each phase.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Objects populated first (the cold loads read them).
    #[arg(long, default_value_t = 5000)]
    objects: usize,
    /// New objects per commit in the commit phase.
    #[arg(long, default_value_t = 10)]
    per_commit: usize,
    /// The server's process id, for its CPU time.
    #[arg(long)]
    server_pid: Option<u32>,
    /// A name for the server in the output.
    #[arg(long, default_value = "")]
    label: String,
    /// Also measure single round trips against a bare TCP ping-pong.
    #[arg(long)]
    ping: bool,
}

/// The hidden echo mode `--ping` starts in a process of its own: `zeo-load --echo
/// REQUEST_BYTES REPLY_BYTES` listens on a free loopback port, prints it, and answers
/// each request with a reply, with blocking calls on one thread (the least a server
/// process can do per round trip).
fn echo_server(request: usize, reply: usize) -> Result<()> {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?.port());
    std::io::stdout().flush()?;
    let (mut s, _) = listener.accept()?;
    s.set_nodelay(true)?;
    let mut inbuf = vec![0u8; request];
    let outbuf = vec![1u8; reply];
    while s.read_exact(&mut inbuf).is_ok() {
        s.write_all(&outbuf)?;
    }
    Ok(())
}

/// Median round trip, in µs, of `ROUNDS` request/reply exchanges on `s`.
async fn ping_pong(mut s: TcpStream, request: usize, reply: usize, rounds: usize) -> Result<f64> {
    s.set_nodelay(true)?;
    let out = vec![2u8; request];
    let mut back = vec![0u8; reply];
    let mut times = Vec::with_capacity(rounds);
    for _ in 0..rounds {
        let t = Instant::now();
        s.write_all(&out).await?;
        s.read_exact(&mut back).await?;
        times.push(t.elapsed());
    }
    times.sort_unstable();
    Ok(times[times.len() / 2].as_secs_f64() * 1e6)
}

/// One protocol connection, one request at a time.
struct Conn {
    stream: TcpStream,
    encoding: Encoding,
    buf: Vec<u8>,
    next_id: i64,
    next_txn: i64,
}

impl Conn {
    async fn open(address: &str, storage: &str) -> Result<Conn> {
        let stream = TcpStream::connect(address)
            .await
            .with_context(|| format!("connecting to {address}"))?;
        stream.set_nodelay(true)?;
        let mut conn = Conn {
            stream,
            encoding: Encoding::Pickle,
            buf: Vec::with_capacity(64 * 1024),
            next_id: 0,
            next_txn: 0,
        };
        let announcement = conn.read_frame().await?;
        conn.encoding = wire::parse_server_announcement(&announcement)?;
        let mut reply = Vec::new();
        wire::write_frame(&mut reply, wire::handshake_announcement(conn.encoding))?;
        conn.stream.write_all(&reply).await?;
        conn.call(Call::Register {
            storage: storage.to_string(),
            read_only: false,
        })
        .await
        .context("register")?;
        Ok(conn)
    }

    async fn read_frame(&mut self) -> Result<Vec<u8>> {
        loop {
            if let Some((payload, used)) = wire::parse_frame(&self.buf, FRAME_SIZE_MAX)? {
                let frame = self.buf[payload].to_vec();
                self.buf.drain(..used);
                return Ok(frame);
            }
            let mut chunk = [0u8; 64 * 1024];
            let n = self.stream.read(&mut chunk).await?;
            if n == 0 {
                bail!("the server closed the connection");
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    async fn send(&mut self, msg: &Message) -> Result<()> {
        let frame = wire::encode_framed(self.encoding, msg)?;
        self.stream.write_all(&frame).await?;
        Ok(())
    }

    /// A call and its reply (callbacks arriving meanwhile are skipped).
    async fn call(&mut self, call: Call) -> Result<Value> {
        self.next_id += 1;
        let name = call.method();
        let sent = call.into_message(self.next_id);
        self.send(&sent).await?;
        loop {
            let frame = self.read_frame().await?;
            let msg = wire::decode(self.encoding, &frame)?;
            if !msg.is_reply() || msg.msgid != sent.msgid {
                continue;
            }
            if let Some((class, payload)) = msg.error_parts() {
                bail!("{name}: {class} {payload:?}");
            }
            return Ok(msg.args);
        }
    }

    async fn call_async(&mut self, call: Call) -> Result<()> {
        self.send(&call.into_async_message()).await
    }

    async fn load_before(&mut self, oid: &[u8; 8]) -> Result<()> {
        let reply = self
            .call(Call::LoadBefore {
                oid: Oid::from_bytes(*oid),
                tid: Tid::MAX,
            })
            .await?;
        match reply {
            Value::Tuple(items) if items.len() == 3 => Ok(()),
            other => bail!("loadBefore: unexpected reply {other:?}"),
        }
    }

    /// Commits `count` new objects; returns their oids.
    async fn commit_new(&mut self, count: usize, data: &[u8]) -> Result<Vec<[u8; 8]>> {
        let oids = match self
            .call(Call::NewOids {
                count: count as i64,
            })
            .await?
        {
            Value::List(items) | Value::Tuple(items) => items
                .iter()
                .map(|v| {
                    v.as_bytes()
                        .and_then(|b| <[u8; 8]>::try_from(b).ok())
                        .ok_or_else(|| anyhow!("new_oids: not an oid: {v:?}"))
                })
                .collect::<Result<Vec<_>>>()?,
            other => bail!("new_oids: unexpected reply {other:?}"),
        };
        self.next_txn += 1;
        let txn = Value::Int(self.next_txn);
        self.call_async(Call::TpcBegin {
            txn: txn.clone(),
            user: b"zeo-load".to_vec(),
            description: Vec::new(),
            extension: Value::Dict(Vec::new()),
            tid: None,
            status: zodb_storage::TxnStatus::Committed,
        })
        .await?;
        for oid in &oids {
            self.call_async(Call::Storea {
                oid: Oid::from_bytes(*oid),
                serial: Tid::ZERO,
                data: data.to_vec(),
                txn: txn.clone(),
            })
            .await?;
        }
        self.call(Call::Vote { txn: txn.clone() }).await?;
        self.call(Call::TpcFinish { txn }).await?;
        Ok(oids)
    }
}

/// A small record Python reads (class `bench.Obj`, a dict state of about 100 bytes).
fn record() -> Result<Vec<u8>> {
    let state = Value::Dict(vec![(Value::str("text"), Value::str("x".repeat(80)))]);
    Ok(zodb_pickle::encode_record(("bench", "Obj"), &state)?)
}

/// The server's CPU time so far (user + system), from `/proc/PID/stat`.
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which is in parentheses and may hold spaces).
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // CLK_TCK is 100 on Linux.
    Some(Duration::from_millis(ticks * 10))
}

/// What one phase measured.
struct Outcome {
    ops: usize,
    errors: usize,
    latencies_us: Vec<u32>,
    elapsed: Duration,
    server_cpu: Option<Duration>,
}

fn percentile(sorted: &[u32], p: f64) -> u32 {
    if sorted.is_empty() {
        return 0;
    }
    let rank = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn report(args: &Args, phase: &str, connections: usize, unit_ops: usize, o: &mut Outcome) {
    o.latencies_us.sort_unstable();
    let secs = o.elapsed.as_secs_f64();
    let objects = o.ops * unit_ops;
    let line = json!({
        "server": args.label,
        "phase": phase,
        "connections": connections,
        "ops": o.ops,
        "objects": objects,
        "errors": o.errors,
        "seconds": secs,
        "ops_per_s": o.ops as f64 / secs,
        "objects_per_s": objects as f64 / secs,
        "p50_us": percentile(&o.latencies_us, 0.50),
        "p99_us": percentile(&o.latencies_us, 0.99),
        "max_us": o.latencies_us.last().copied().unwrap_or(0),
        "server_cpu_s": o.server_cpu.map(|d| d.as_secs_f64()),
        "server_cpu_us_per_object": o.server_cpu.filter(|_| objects > 0)
            .map(|d| d.as_secs_f64() * 1e6 / objects as f64),
    });
    println!("{line}");
}

/// Runs `work` on every connection until `seconds` have passed.
async fn phase<F, Fut>(
    conns: Vec<Conn>,
    seconds: f64,
    server_pid: Option<u32>,
    work: F,
) -> (Vec<Conn>, Outcome)
where
    F: Fn(usize, u64, Conn) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = (Conn, Result<()>)> + Send + 'static,
{
    let work = Arc::new(work);
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu_before = server_pid.and_then(cpu_time);
    let start = Instant::now();
    let tasks: Vec<_> = conns
        .into_iter()
        .enumerate()
        .map(|(i, mut conn)| {
            let work = Arc::clone(&work);
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                let mut errors = 0;
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t = Instant::now();
                    let (back, result) = work(i, n, conn).await;
                    conn = back;
                    n += 1;
                    match result {
                        Ok(()) => {
                            latencies.push(t.elapsed().as_micros().min(u32::MAX as u128) as u32)
                        }
                        Err(e) => {
                            errors += 1;
                            eprintln!("zeo-load: connection {i}: {e:#}");
                            break;
                        }
                    }
                }
                (conn, latencies, errors)
            })
        })
        .collect();
    let mut conns = Vec::new();
    let mut outcome = Outcome {
        ops: 0,
        errors: 0,
        latencies_us: Vec::new(),
        elapsed: Duration::ZERO,
        server_cpu: None,
    };
    for t in tasks {
        let (conn, latencies, errors) = t.await.expect("a load task panicked");
        outcome.ops += latencies.len();
        outcome.errors += errors;
        outcome.latencies_us.extend(latencies);
        conns.push(conn);
    }
    outcome.elapsed = start.elapsed();
    outcome.server_cpu = match (cpu_before, server_pid.and_then(cpu_time)) {
        (Some(a), Some(b)) => Some(b.saturating_sub(a)),
        _ => None,
    };
    (conns, outcome)
}

/// Round trips, one at a time, of `loadBefore` (raw codec and `ClientStorage`) and of a
/// bare TCP ping-pong with the same request and reply sizes.
async fn ping(args: &Args, oids: &[[u8; 8]]) -> Result<()> {
    const ROUNDS: usize = 2000;
    let mut conn = Conn::open(&args.address, &args.storage).await?;
    // Sizes of a loadBefore request and reply, for the ping-pong.
    let request = wire::encode_framed(
        conn.encoding,
        &Call::LoadBefore {
            oid: Oid(0),
            tid: Tid::MAX,
        }
        .into_message(1),
    )?
    .len();
    let reply = record()?.len() + 60;
    let mut raw = Vec::with_capacity(ROUNDS);
    for i in 0..ROUNDS {
        let t = Instant::now();
        conn.load_before(&oids[i % oids.len()]).await?;
        raw.push(t.elapsed());
    }

    let address = args.address.clone();
    let storage = args.storage.clone();
    let cold: Vec<[u8; 8]> = oids.iter().copied().take(ROUNDS).collect();
    let client = tokio::task::spawn_blocking(move || -> Result<Vec<Duration>> {
        use zodb_storage::{Oid, Storage, Tid};
        let mut options = zeo::client::ClientOptions::new(address);
        options.storage = storage;
        let client = zeo::client::ClientStorage::connect(options)?;
        let mut times = Vec::with_capacity(cold.len());
        for oid in &cold {
            let t = Instant::now();
            client.load_before(Oid(u64::from_be_bytes(*oid)), Tid::MAX)?;
            times.push(t.elapsed());
        }
        client.close()?;
        Ok(times)
    })
    .await??;

    // In this process: both ends on this runtime, so the sender's thread often runs
    // the receiver at once, with no process woken (a floor no server can reach).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let echo_at = listener.local_addr()?;
    tokio::spawn(async move {
        if let Ok((mut s, _)) = listener.accept().await {
            let _ = s.set_nodelay(true);
            let mut inbuf = vec![0u8; request];
            let outbuf = vec![1u8; reply];
            while s.read_exact(&mut inbuf).await.is_ok() {
                if s.write_all(&outbuf).await.is_err() {
                    break;
                }
            }
        }
    });
    let tcp = ping_pong(TcpStream::connect(echo_at).await?, request, reply, ROUNDS).await?;
    // Against another process, as with a server: each round trip wakes it.
    let mut echo = std::process::Command::new(std::env::current_exe()?)
        .args(["--echo", &request.to_string(), &reply.to_string()])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("starting the echo process")?;
    let mut port = String::new();
    {
        use std::io::BufRead;
        let stdout = echo.stdout.take().context("the echo process's stdout")?;
        std::io::BufReader::new(stdout).read_line(&mut port)?;
    }
    let port: u16 = port.trim().parse().context("the echo process's port")?;
    let tcp_process = ping_pong(
        TcpStream::connect(("127.0.0.1", port)).await?,
        request,
        reply,
        ROUNDS,
    )
    .await;
    let _ = echo.kill();
    let _ = echo.wait();
    let tcp_process = tcp_process?;
    let median = |v: &mut Vec<Duration>| {
        v.sort_unstable();
        v[v.len() / 2].as_secs_f64() * 1e6
    };
    let (raw, client) = (median(&mut raw), median(&mut client.clone()));
    println!(
        "{}",
        json!({
            "server": args.label,
            "phase": "round_trip",
            "request_bytes": request,
            "reply_bytes": reply,
            "tcp_ping_pong_median_us": tcp,
            "tcp_ping_pong_process_median_us": tcp_process,
            "raw_load_before_median_us": raw,
            "client_storage_load_before_median_us": client,
            "client_storage_over_tcp": client / tcp,
            "client_storage_over_tcp_process": client / tcp_process,
        })
    );
    Ok(())
}

async fn run(args: Args) -> Result<()> {
    let data = Arc::new(record()?);
    let mut first = Conn::open(&args.address, &args.storage).await?;
    let mut oids = Vec::with_capacity(args.objects);
    while oids.len() < args.objects {
        let batch = POPULATE_BATCH.min(args.objects - oids.len());
        oids.extend(first.commit_new(batch, &data).await?);
    }
    drop(first);
    let oids = Arc::new(oids);
    for &n in &args.connections {
        let mut conns = Vec::with_capacity(n);
        for _ in 0..n {
            conns.push(Conn::open(&args.address, &args.storage).await?);
        }
        let load_oids = Arc::clone(&oids);
        let stride = (oids.len() / n.max(1)).max(1);
        let (conns, mut loads) = phase(conns, args.seconds, args.server_pid, move |i, k, mut c| {
            let oids = Arc::clone(&load_oids);
            async move {
                let oid = oids[(i * stride + k as usize) % oids.len()];
                let r = c.load_before(&oid).await;
                (c, r)
            }
        })
        .await;
        report(&args, "cold_load", n, 1, &mut loads);
        let per_commit = args.per_commit;
        let commit_data = Arc::clone(&data);
        let (_conns, mut commits) =
            phase(conns, args.seconds, args.server_pid, move |_, _, mut c| {
                let data = Arc::clone(&commit_data);
                async move {
                    let r = c.commit_new(per_commit, &data).await.map(|_| ());
                    (c, r)
                }
            })
            .await;
        report(&args, "commit", n, per_commit, &mut commits);
    }
    if args.ping {
        ping(&args, &oids).await?;
    }
    Ok(())
}

fn main() -> Result<()> {
    let argv: Vec<String> = std::env::args().collect();
    if argv.get(1).map(String::as_str) == Some("--echo") {
        let size = |i: usize| -> Result<usize> {
            argv.get(i)
                .context("--echo REQUEST_BYTES REPLY_BYTES")?
                .parse()
                .context("a number of bytes")
        };
        return echo_server(size(2)?, size(3)?);
    }
    let args = Args::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(run(args))
}
