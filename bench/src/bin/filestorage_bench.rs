//! Rust half of the side-by-side FileStorage benchmark.
//!
//! ```text
//! filestorage-bench --dir DIR [--objects N] [--commits N] [--samples N]
//! ```
//!
//! The contract (workload, record recipe, JSON keys) is the docstring of
//! `bench/python/filestorage_bench.py`; this program does the same work with
//! `zodb_storage::FileStorage` through the `Storage` trait and prints one
//! JSON object with the same keys (`implementation: "bbru-rust"`).
//! `bench/run.sh` runs both halves and compares them.
//!
//! Every record is byte for byte the one Python's script stores:
//! `b'\x80\x03cbbru.bench\nItem\n.' + pickle.dumps({'n': n, 'text': 'x' * 44}, 3)`,
//! memo opcodes included (hand-encoded below).
//!
//! Cold reads and open times are measured in a fresh process: this program
//! re-executes itself with the hidden `--probe PATH` flag, as the Python
//! script starts itself with `--probe` through `subprocess`.

use bbru_bench::{remove_storage_files, sibling};
use std::fs;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Instant;

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use rand::SeedableRng;
use rand::rngs::StdRng;
use serde_json::{Map, Value, json};
use zodb_storage::{FileStorage, Oid, Storage, Tid, TransactionMeta};

const CLASS_PICKLE: &[u8] = b"\x80\x03cbbru.bench\nItem\n.";
const OBJECTS_PER_BIG_TXN: u64 = 1000;
const INDEX_MEMORY_METHOD: &str = "RSS growth (/proc/self/statm) across \
    FileStorage::open_read_only(path) with .index, in a fresh process";

/// Rust FileStorage benchmark; same workload and JSON keys as
/// bench/python/filestorage_bench.py.
#[derive(Debug, Parser)]
#[command(name = "filestorage-bench")]
struct Args {
    /// Directory for the benchmark files (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Objects in the big file.
    #[arg(long, default_value_t = 1_000_000)]
    objects: u64,
    /// Transactions in each commit test.
    #[arg(long, default_value_t = 5000)]
    commits: u64,
    /// Distinct random oids for loadBefore (at most --objects).
    #[arg(long, default_value_t = 100_000)]
    samples: u64,
    /// Internal: the fresh process that `run_probe` starts.
    #[arg(long, hide = true, value_name = "PATH")]
    probe: Option<PathBuf>,
}

/// Appends a pickle int the way CPython's pickler does at protocol 3.
fn push_pickle_int(out: &mut Vec<u8>, n: u64) {
    if n <= 0xff {
        out.extend_from_slice(&[b'K', n as u8]);
    } else if n <= 0xffff {
        out.push(b'M');
        out.extend_from_slice(&(n as u16).to_le_bytes());
    } else if n <= 0x7fff_ffff {
        out.push(b'J');
        out.extend_from_slice(&(n as u32).to_le_bytes());
    } else {
        // LONG1: minimal little-endian two's complement.
        let mut bytes = n.to_le_bytes().to_vec();
        while bytes.len() > 1 && bytes[bytes.len() - 1] == 0 && bytes[bytes.len() - 2] & 0x80 == 0 {
            bytes.pop();
        }
        if bytes[bytes.len() - 1] & 0x80 != 0 {
            bytes.push(0);
        }
        out.extend_from_slice(&[0x8a, bytes.len() as u8]);
        out.extend_from_slice(&bytes);
    }
}

/// The record of object number `n`: exactly Python's
/// `CLASS_PICKLE + pickle.dumps({'n': n, 'text': 'x' * 44}, 3)`.
fn record(n: u64) -> Vec<u8> {
    let mut r = Vec::with_capacity(112);
    r.extend_from_slice(CLASS_PICKLE);
    // PROTO 3, EMPTY_DICT, BINPUT 0, MARK, BINUNICODE 'n', BINPUT 1
    r.extend_from_slice(b"\x80\x03}q\x00(X\x01\x00\x00\x00nq\x01");
    push_pickle_int(&mut r, n);
    // BINUNICODE 'text', BINPUT 2, BINUNICODE 'x' * 44
    r.extend_from_slice(b"X\x04\x00\x00\x00textq\x02X\x2c\x00\x00\x00");
    r.extend_from_slice(&[b'x'; 44]);
    // BINPUT 3, SETITEMS, STOP
    r.extend_from_slice(b"q\x03u.");
    r
}

/// One transaction storing `records` as new objects; returns its tid.
fn commit(storage: &FileStorage, records: Vec<Vec<u8>>) -> Result<Tid> {
    let txn = storage
        .tpc_begin(TransactionMeta::default())
        .context("tpc_begin")?;
    let oids = storage.new_oids(records.len()).context("new_oids")?;
    for (oid, data) in oids.into_iter().zip(records) {
        storage
            .store(&txn, oid, Tid::ZERO, data)
            .with_context(|| format!("store of new object {oid}"))?;
    }
    storage.vote(&txn).context("vote")?;
    storage.finish(&txn).context("finish")
}

/// Transactions per second for `commits` transactions of `per_txn` new
/// objects each, in a new storage.
fn commit_rate(path: &Path, commits: u64, per_txn: u64) -> Result<f64> {
    remove_storage_files(path)?;
    let storage = FileStorage::open(path).with_context(|| format!("open {}", path.display()))?;
    let batches: Vec<Vec<Vec<u8>>> = (0..commits)
        .map(|i| (0..per_txn).map(|j| record(i * per_txn + j + 1)).collect())
        .collect();
    let start = Instant::now();
    for (i, batch) in batches.into_iter().enumerate() {
        commit(&storage, batch).with_context(|| format!("{}: commit #{i}", path.display()))?;
    }
    let elapsed = start.elapsed().as_secs_f64();
    storage.close().context("close")?;
    drop(storage);
    remove_storage_files(path)?;
    Ok(commits as f64 / elapsed)
}

/// Writes `objects` new objects, `OBJECTS_PER_BIG_TXN` per transaction;
/// closing saves the .index. Returns (seconds, mean record length).
fn build_big(path: &Path, objects: u64) -> Result<(f64, f64)> {
    remove_storage_files(path)?;
    let storage = FileStorage::open(path).with_context(|| format!("open {}", path.display()))?;
    let mut total = 0usize;
    let start = Instant::now();
    let mut first = 1;
    while first <= objects {
        let last = (first + OBJECTS_PER_BIG_TXN).min(objects + 1);
        let batch: Vec<Vec<u8>> = (first..last).map(record).collect();
        total += batch.iter().map(Vec::len).sum::<usize>();
        commit(&storage, batch)
            .with_context(|| format!("{}: commit of objects {first}..{last}", path.display()))?;
        first = last;
    }
    storage.close().context("close (saves the .index)")?;
    drop(storage);
    Ok((start.elapsed().as_secs_f64(), total as f64 / objects as f64))
}

/// Tries to empty the OS page cache; returns the `cold_cache` value.
fn drop_os_cache() -> String {
    match Command::new("sync").status() {
        Ok(s) if s.success() => {}
        Ok(s) => return format!("not dropped: sync exited with {s}"),
        Err(e) => return format!("not dropped: sync: {e}"),
    }
    match fs::write("/proc/sys/vm/drop_caches", b"1\n") {
        Ok(()) => "dropped".to_string(),
        Err(e) => format!("not dropped: {e}"),
    }
}

/// The page size, from the auxiliary vector (AT_PAGESZ), else 4096.
fn page_size() -> u64 {
    const AT_PAGESZ: u64 = 6;
    if let Ok(auxv) = fs::read("/proc/self/auxv") {
        for pair in auxv.chunks_exact(16) {
            let key = u64::from_ne_bytes(pair[..8].try_into().unwrap_or_default());
            let value = u64::from_ne_bytes(pair[8..].try_into().unwrap_or_default());
            if key == AT_PAGESZ && value > 0 {
                return value;
            }
        }
    }
    4096
}

fn rss_bytes() -> Result<u64> {
    let statm = fs::read_to_string("/proc/self/statm").context("reading /proc/self/statm")?;
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .context("short /proc/self/statm")?
        .parse()
        .context("parsing /proc/self/statm")?;
    Ok(pages * page_size())
}

/// Runs in a fresh process: open time, RSS growth, and loadBefore rates
/// (first pass = cold, next two passes = warm).
fn probe(path: &Path, objects: u64, samples: u64) -> Result<Value> {
    let rss0 = rss_bytes()?;
    let start = Instant::now();
    let storage = FileStorage::open_read_only(path)
        .with_context(|| format!("open_read_only {}", path.display()))?;
    let open_s = start.elapsed().as_secs_f64();
    let rss_growth = rss_bytes()? as i64 - rss0 as i64;
    let mut result = Map::new();
    result.insert("open_s".into(), json!(open_s));
    result.insert("rss_growth".into(), json!(rss_growth));
    result.insert(
        "used_saved_index".into(),
        json!(storage.open_report().used_saved_index),
    );
    result.insert("len".into(), json!(storage.len()));
    if samples > 0 {
        let mut rng = StdRng::seed_from_u64(42);
        let oids: Vec<Oid> = rand::seq::index::sample(&mut rng, objects as usize, samples as usize)
            .into_iter()
            .map(|i| Oid(i as u64 + 1))
            .collect();
        let before = Tid(storage.last_transaction().0 + 1);
        let mut rates = Vec::with_capacity(3);
        for _ in 0..3 {
            let start = Instant::now();
            for &oid in &oids {
                let rev = storage
                    .load_before(oid, before)
                    .with_context(|| format!("load_before({oid}, {before})"))?;
                black_box(rev);
            }
            rates.push(samples as f64 / start.elapsed().as_secs_f64());
        }
        // Untimed: every sampled object has the record it was written with.
        for &oid in &oids {
            let rev = storage
                .load_before(oid, before)
                .with_context(|| format!("load_before({oid}, {before})"))?;
            let Some(rev) = rev else {
                bail!("load_before({oid}, {before}) found no revision");
            };
            ensure!(
                rev.data == record(oid.0) && rev.end.is_none(),
                "load_before({oid}, {before}) returned wrong data: {:?} (end {:?})",
                String::from_utf8_lossy(&rev.data),
                rev.end
            );
        }
        result.insert("cold_per_s".into(), json!(rates[0]));
        result.insert(
            "warm_per_s".into(),
            json!(2.0 / (1.0 / rates[1] + 1.0 / rates[2])),
        );
    }
    storage.close().context("close")?;
    Ok(Value::Object(result))
}

/// Runs `probe` in a fresh process (this program with `--probe`).
fn run_probe(path: &Path, objects: u64, samples: u64) -> Result<Map<String, Value>> {
    let exe = std::env::current_exe().context("locating this program")?;
    let dir = path.parent().unwrap_or(Path::new("."));
    let mut cmd = Command::new(&exe);
    cmd.arg("--probe")
        .arg(path)
        .arg("--dir")
        .arg(dir)
        .args(["--objects", &objects.to_string()])
        .args(["--samples", &samples.to_string()]);
    let out = cmd
        .output()
        .with_context(|| format!("starting {}", exe.display()))?;
    if !out.status.success() {
        bail!(
            "probe process failed ({}): {cmd:?}\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
    }
    match serde_json::from_slice(&out.stdout).context("parsing the probe's output")? {
        Value::Object(m) => Ok(m),
        other => bail!("the probe printed {other}"),
    }
}

fn num(m: &Map<String, Value>, key: &str) -> Result<f64> {
    m.get(key)
        .and_then(Value::as_f64)
        .with_context(|| format!("the probe did not report {key}"))
}

fn main() -> Result<()> {
    let args = Args::parse();
    let samples = args.samples.min(args.objects);
    if let Some(path) = &args.probe {
        println!("{}", probe(path, args.objects, samples)?);
        return Ok(());
    }
    if args.objects.min(args.commits).min(args.samples) < 1 {
        bail!("--objects, --commits and --samples must be >= 1");
    }
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let dir = fs::canonicalize(&args.dir)?;

    let mut results = Map::new();
    results.insert("implementation".into(), json!("bbru-rust"));
    results.insert("objects".into(), json!(args.objects));
    results.insert("commits".into(), json!(args.commits));
    results.insert("samples".into(), json!(samples));
    results.insert(
        "commit_1_per_s".into(),
        json!(commit_rate(&dir.join("commit1.fs"), args.commits, 1)?),
    );
    let rate = commit_rate(&dir.join("commit100.fs"), args.commits, 100)?;
    results.insert("commit_100_per_s".into(), json!(rate));
    results.insert("objects_100_per_s".into(), json!(rate * 100.0));

    let big = dir.join("big.fs");
    let outcome = (|| -> Result<()> {
        let (build_s, record_bytes) = build_big(&big, args.objects)?;
        results.insert("build_big_s".into(), json!(build_s));
        results.insert("record_bytes".into(), json!(record_bytes));
        ensure!(
            sibling(&big, ".index").exists(),
            "close() did not save {}.index",
            big.display()
        );

        results.insert("cold_cache".into(), json!(drop_os_cache()));
        let with_index = run_probe(&big, args.objects, samples)?;
        ensure!(
            with_index.get("used_saved_index") == Some(&json!(true)),
            "open_read_only did not use the saved index: {with_index:?}"
        );
        ensure!(
            num(&with_index, "len")? == args.objects as f64,
            "open_read_only with the index found {} objects, expected {}",
            num(&with_index, "len")?,
            args.objects
        );
        results.insert(
            "open_with_index_s".into(),
            json!(num(&with_index, "open_s")?),
        );
        results.insert(
            "load_before_cold_per_s".into(),
            json!(num(&with_index, "cold_per_s")?),
        );
        results.insert(
            "load_before_warm_per_s".into(),
            json!(num(&with_index, "warm_per_s")?),
        );
        results.insert(
            "index_bytes_per_object".into(),
            json!(num(&with_index, "rss_growth")? / args.objects as f64),
        );
        results.insert("index_memory_method".into(), json!(INDEX_MEMORY_METHOD));

        fs::remove_file(sibling(&big, ".index")).context("removing the .index")?;
        drop_os_cache();
        let without = run_probe(&big, args.objects, 0)?;
        ensure!(
            without.get("used_saved_index") == Some(&json!(false)),
            "open_read_only used an index that was removed: {without:?}"
        );
        ensure!(
            num(&without, "len")? == args.objects as f64,
            "open_read_only without the index found {} objects, expected {}",
            num(&without, "len")?,
            args.objects
        );
        results.insert(
            "open_without_index_s".into(),
            json!(num(&without, "open_s")?),
        );
        Ok(())
    })();
    remove_storage_files(&big)?;
    outcome?;

    println!("{}", serde_json::to_string_pretty(&Value::Object(results))?);
    Ok(())
}
