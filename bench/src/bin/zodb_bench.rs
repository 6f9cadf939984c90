//! Rust half of the side-by-side persistence-layer benchmark: zodbshootout's
//! measures (add, update, cold, warm, hot) for the crate `zodb` on bbru's
//! FileStorage.
//!
//! ```text
//! zodb-bench --dir DIR [--objects N] [--rounds R] [--postgres URL]
//! ```
//!
//! With `--postgres` the storage is `zodb_pg::PgStorage` on that database
//! (which must hold the schema and nothing else), and the Python half runs
//! RelStorage 4.3 (`bench/pg/run.sh`).
//!
//! The contract (objects, phases, what each timer covers, JSON keys) is the
//! docstring of `bench/python/zodb_bench.py`; this program does the same work
//! with `zodb::DB` over `zodb_storage::FileStorage` and prints one JSON object
//! with the same keys (`implementation: "bbru-rust"`). `bench/zodb/run.sh`
//! runs both halves and compares them.

use bbru_bench::remove_storage_files;
use std::fs;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use clap::Parser;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};
use zodb::{DB, DbOptions, PRef, Transaction, persistent};
use zodb_storage::{FileStorage, Storage};

/// The phases, in the order a round runs them (and the JSON names them).
#[derive(Debug, Clone, Copy)]
enum Phase {
    Add,
    Update,
    Cold,
    Warm,
    Hot,
}
const PHASES: [(Phase, &str); 5] = [
    (Phase::Add, "add"),
    (Phase::Update, "update"),
    (Phase::Cold, "cold"),
    (Phase::Warm, "warm"),
    (Phase::Hot, "hot"),
];

/// Each phase's time in each round so far.
#[derive(Debug, Default)]
struct Times([Vec<Duration>; 5]);

impl Times {
    fn push(&mut self, phase: Phase, since: Instant) {
        self.0[phase as usize].push(since.elapsed());
    }

    fn of(&self, phase: Phase) -> &[Duration] {
        &self.0[phase as usize]
    }
}
/// Objects each connection's cache keeps: every object of the run (the Python
/// half passes the same `cache_size`).
const CACHE_OBJECTS: usize = 100_000;

/// `bbru.bench.PObject`: state `{'attr': 1, 'data': '%032d' % k}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct PObject {
    attr: i64,
    data: String,
}
persistent!(PObject, "bbru.bench", "PObject");

/// `bbru.bench.Holder`: state `{'items': [ref, ...]}`, one round's objects.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Holder {
    items: Vec<PRef<PObject>>,
}
persistent!(Holder, "bbru.bench", "Holder");

/// Rust persistence-layer benchmark; same workload and JSON keys as
/// bench/python/zodb_bench.py.
#[derive(Debug, Parser)]
#[command(name = "zodb-bench")]
struct Args {
    /// Directory for the storage file (created if missing).
    #[arg(long)]
    dir: PathBuf,
    /// Objects per round.
    #[arg(long, default_value_t = 1000)]
    objects: u64,
    /// Rounds; the medians are over them.
    #[arg(long, default_value_t = 10)]
    rounds: u64,
    /// Use PgStorage on this PostgreSQL database instead of a FileStorage.
    #[arg(long)]
    postgres: Option<String>,
}

/// Where the rounds keep their objects.
#[derive(Debug, Clone)]
enum Place {
    File(PathBuf),
    Postgres(String),
}

fn open_db(place: &Place) -> Result<(Arc<dyn Storage>, DB)> {
    let storage: Arc<dyn Storage> = match place {
        Place::File(path) => {
            Arc::new(FileStorage::open(path).with_context(|| format!("open {}", path.display()))?)
        }
        Place::Postgres(url) => {
            Arc::new(zodb_pg::PgStorage::create(url).context("opening PostgreSQL")?)
        }
    };
    let options = DbOptions {
        cache_objects: CACHE_OBJECTS,
        ..DbOptions::default()
    };
    let db = DB::with_options(storage.clone(), options).context("DB::with_options")?;
    Ok((storage, db))
}

fn close(storage: Arc<dyn Storage>, db: DB) -> Result<()> {
    drop(db);
    storage.close().context("closing the storage")
}

/// The round's holder, through the root: its reference and the object.
fn holder(tx: &Transaction<'_>, key: &str) -> Result<(PRef<Holder>, Arc<Holder>)> {
    let root = tx.get(tx.root()).context("reading the root")?;
    let r = root
        .get_ref::<Holder>(key)
        .with_context(|| format!("no {key} in the root"))?;
    Ok((r, tx.get(r)?))
}

/// One read transaction over the round's objects; returns the count.
fn read_all(tx: Transaction<'_>, key: &str, n: u64) -> Result<u64> {
    let (_, h) = holder(&tx, key)?;
    let mut total = 0;
    let mut count = 0;
    // `read` lends each object (`get` would hand out an `Arc`: two atomic operations,
    // about 10 ns of a cached read; BENCHMARKS.md).
    for &r in &h.items {
        total += tx.read(r, |o| o.attr)?;
        count += 1;
    }
    drop(h);
    tx.abort();
    if count != n || total != 2 * n as i64 {
        bail!(
            "{key}: read {count} objects with attr sum {total}, expected {n} and {}",
            2 * n
        );
    }
    Ok(count)
}

#[derive(Default)]
struct Sizes {
    object: f64,
    holder: usize,
}

fn one_round(
    place: &Place,
    round: u64,
    n: u64,
    first_k: u64,
    times: &mut Times,
    sizes: &mut Option<Sizes>,
) -> Result<()> {
    let key = format!("round-{round:03}");
    let data: Vec<String> = (first_k..first_k + n).map(|k| format!("{k:032}")).collect();

    let (storage, db) = open_db(place)?;
    {
        let start = Instant::now();
        let mut conn = db.connection();
        let tx = conn.begin();
        let mut items = Vec::with_capacity(data.len());
        for d in data {
            items.push(tx.add(PObject { attr: 1, data: d })?);
        }
        let h = tx.add(Holder { items })?;
        tx.edit(tx.root())?.insert_ref(&key, h);
        tx.commit()?.context("the add transaction stored nothing")?;
        times.push(Phase::Add, start);

        let start = Instant::now();
        let tx = conn.begin();
        let (hr, h) = holder(&tx, &key)?;
        for &r in &h.items {
            tx.update(r, |o| o.attr = 2)?;
        }
        tx.commit()?
            .context("the update transaction stored nothing")?;
        times.push(Phase::Update, start);

        if sizes.is_none() {
            let holder = storage.load(hr.oid())?.0.len();
            let mut object_bytes = 0;
            for r in &h.items {
                object_bytes += storage.load(r.oid())?.0.len();
            }
            *sizes = Some(Sizes {
                object: object_bytes as f64 / n as f64,
                holder,
            });
        }
    }
    close(storage, db)?;

    let (storage, db) = open_db(place)?;
    {
        let start = Instant::now();
        let mut conn = db.connection();
        read_all(conn.begin(), &key, n)?;
        times.push(Phase::Cold, start);

        conn.clear_cache();
        let start = Instant::now();
        read_all(conn.begin(), &key, n)?;
        times.push(Phase::Warm, start);

        let start = Instant::now();
        read_all(conn.begin(), &key, n)?;
        times.push(Phase::Hot, start);
    }
    close(storage, db)
}

fn median(values: &[Duration]) -> Duration {
    let mut v = values.to_vec();
    v.sort();
    let mid = v.len() / 2;
    if v.len() % 2 == 1 {
        v[mid]
    } else {
        (v[mid - 1] + v[mid]) / 2
    }
}

fn main() -> Result<()> {
    let args = Args::parse();
    ensure!(
        args.objects >= 1 && args.rounds >= 1,
        "--objects and --rounds must be >= 1"
    );
    fs::create_dir_all(&args.dir).with_context(|| format!("creating {}", args.dir.display()))?;
    let path = args.dir.join("zodb-bench.fs");
    let place = match &args.postgres {
        Some(url) => Place::Postgres(url.clone()),
        None => {
            remove_storage_files(&path)?;
            Place::File(path.clone())
        }
    };

    let mut times = Times::default();
    let mut sizes = None;
    let run = (0..args.rounds).try_for_each(|r| {
        one_round(
            &place,
            r,
            args.objects,
            r * args.objects + 1,
            &mut times,
            &mut sizes,
        )
        .with_context(|| format!("round {r}"))
    });
    if let Place::File(path) = &place {
        remove_storage_files(path)?;
    }
    run?;

    let n = args.objects as f64;
    let sizes = sizes.context("no round ran")?;
    let mut out = Map::new();
    let implementation = match place {
        Place::File(_) => "bbru-rust",
        Place::Postgres(_) => "bbru-rust on PgStorage",
    };
    out.insert("implementation".into(), json!(implementation));
    out.insert("objects".into(), json!(args.objects));
    out.insert("rounds".into(), json!(args.rounds));
    out.insert("object_record_bytes".into(), json!(sizes.object));
    out.insert("holder_record_bytes".into(), json!(sizes.holder));
    let mut samples = Map::new();
    for (phase, name) in PHASES {
        let t = times.of(phase);
        let m = median(t).as_secs_f64();
        out.insert(format!("{name}_us_per_object"), json!(m / n * 1e6));
        out.insert(format!("{name}_per_s"), json!(n / m));
        samples.insert(
            name.into(),
            Value::Array(t.iter().map(|d| json!(d.as_secs_f64() / n * 1e6)).collect()),
        );
    }
    out.insert("samples_us_per_object".into(), Value::Object(samples));
    println!("{}", serde_json::to_string_pretty(&Value::Object(out))?);
    Ok(())
}
