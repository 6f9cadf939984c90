//! What a ZEO-shaped server costs when it does no work: the floor under the server CPU
//! per message that `bench/zeo/run.sh` and `bench/zeo/load.sh` measure.
//!
//! ```text
//! zeo-floor serve [--reply BYTES]
//! zeo-floor drive --address HOST:PORT --server-pid PID [--connections 8,32,128]
//!                 [--seconds S] [--request BYTES] [--reply BYTES]
//! ```
//!
//! `serve` listens on a free loopback port (printed on stdout) and answers, on one thread
//! with a current-thread tokio runtime (as `bbru-zeo` runs its connections), every
//! frame (4-byte big-endian length, then the payload, as ZEO frames are) with a frame of
//! `--reply` bytes. It looks nothing up, reads no file and
//! allocates nothing per frame: whatever CPU it spends per message is the kernel's
//! (`recvfrom`, `writev`, `epoll_wait`, being woken and waking the client) and the
//! runtime's, which every server pays however little work it does.
//!
//! `drive` is the Rust load generator's pattern (`zeo-load`'s cold loads): from one
//! process, each of N connections sends a request and waits for its reply, for
//! `--seconds`, and prints one JSON line per number of connections with the messages per
//! second and the server's CPU per message (all its threads, from
//! `/proc/PID/task/*/schedstat`, in nanoseconds). `bench/zeo/floor.py` drives `serve`
//! from Python processes the way Python ZEO clients load (`bench/zeo/workload.py`'s
//! cold phase); `bench/zeo/floor.sh` runs both.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::{Parser, Subcommand};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

#[derive(Parser)]
struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer frames without doing anything else.
    Serve {
        /// Payload bytes of each reply (a `loadBefore` reply of a 112-byte record is
        /// about 150).
        #[arg(long, default_value_t = 150)]
        reply: usize,
    },
    /// Many connections, one request in flight each.
    Drive {
        #[arg(long)]
        address: String,
        #[arg(long)]
        server_pid: u32,
        #[arg(long, value_delimiter = ',', default_value = "8,32,128")]
        connections: Vec<usize>,
        #[arg(long, default_value_t = 3.0)]
        seconds: f64,
        /// Payload bytes of each request (a `loadBefore` is about 40).
        #[arg(long, default_value_t = 40)]
        request: usize,
        /// Payload bytes of the replies `serve` sends.
        #[arg(long, default_value_t = 150)]
        reply: usize,
    },
}

/// The largest frame `serve` reads: it answers benchmarks, not strangers.
const FRAME_MAX: usize = 1 << 20;

async fn serve(reply: usize) -> Result<()> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    println!("{}", listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(async move {
            // A client that goes away ends its connection; nothing else to report.
            let _ = answer(stream, reply).await;
        });
    }
}

async fn answer(mut stream: TcpStream, reply: usize) -> Result<()> {
    stream.set_nodelay(true)?;
    let mut out = (reply as u32).to_be_bytes().to_vec();
    out.resize(4 + reply, b'r');
    let mut buf = vec![0u8; 64 * 1024];
    let (mut start, mut end) = (0, 0);
    loop {
        // Answer every whole frame in the buffer, then read more.
        while end - start >= 4 {
            let len = u32::from_be_bytes(buf[start..start + 4].try_into()?) as usize;
            if len == 0 || len > FRAME_MAX {
                bail!("frame of {len} bytes");
            }
            if end - start < 4 + len {
                break;
            }
            stream.write_all(&out).await?;
            start += 4 + len;
        }
        // Keep what is left of a frame at the front, with room for the rest of it.
        buf.copy_within(start..end, 0);
        (start, end) = (0, end - start);
        if end >= 4 {
            let len = u32::from_be_bytes(buf[..4].try_into()?) as usize;
            if buf.len() < 4 + len {
                buf.resize(4 + len, 0);
            }
        }
        let n = stream.read(&mut buf[end..]).await?;
        if n == 0 {
            return Ok(());
        }
        end += n;
    }
}

/// CPU time of every thread of `pid` so far, in nanoseconds.
fn cpu_ns(pid: u32) -> Result<u64> {
    let mut total = 0;
    for task in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let stat = std::fs::read_to_string(task?.path().join("schedstat"))?;
        total += stat
            .split_whitespace()
            .next()
            .context("empty schedstat")?
            .parse::<u64>()?;
    }
    Ok(total)
}

async fn drive(
    address: &str,
    pid: u32,
    connections: usize,
    seconds: f64,
    request: usize,
    reply: usize,
) -> Result<()> {
    let mut streams = Vec::with_capacity(connections);
    for _ in 0..connections {
        let s = TcpStream::connect(address).await?;
        s.set_nodelay(true)?;
        streams.push(s);
    }
    let deadline = Instant::now() + Duration::from_secs_f64(seconds);
    let cpu_before = cpu_ns(pid)?;
    let start = Instant::now();
    let tasks: Vec<_> = streams
        .into_iter()
        .map(|mut s| {
            tokio::spawn(async move {
                let mut out = (request as u32).to_be_bytes().to_vec();
                out.resize(4 + request, b'q');
                let mut back = vec![0u8; 4 + reply];
                let mut n = 0u64;
                while Instant::now() < deadline {
                    s.write_all(&out).await?;
                    s.read_exact(&mut back).await?;
                    n += 1;
                }
                anyhow::Ok(n)
            })
        })
        .collect();
    let mut messages = 0;
    for t in tasks {
        messages += t.await??;
    }
    let elapsed = start.elapsed().as_secs_f64();
    let cpu = cpu_ns(pid)? - cpu_before;
    let line = json!({
        "pattern": "rust",
        "connections": connections,
        "loads": messages,
        "loads_per_s": messages as f64 / elapsed,
        "server_cpu_us_per_load": cpu as f64 / 1e3 / messages.max(1) as f64,
    });
    println!("{line}");
    Ok(())
}

fn main() -> Result<()> {
    let args = Args::parse();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    match args.command {
        Command::Serve { reply } => rt.block_on(serve(reply)),
        Command::Drive {
            address,
            server_pid,
            connections,
            seconds,
            request,
            reply,
        } => rt.block_on(async {
            for n in connections {
                drive(&address, server_pid, n, seconds, request, reply).await?;
            }
            Ok(())
        }),
    }
}
