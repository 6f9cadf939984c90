//! Creations per second into one folder over HTTP: `--clients` concurrent clients, each
//! creating pages through the JSON API (`POST` to the folder, a Page with a name of its
//! own) one after the other as fast as they are answered, their requests alternating
//! between the `--base` instances (`bench/web/create.sh` runs two instances of one
//! `bbru-zeo`).
//!
//! ```text
//! web-create --base URL [--base URL …] --login L --password P
//!            [--clients 1,4,16] [--seconds S]
//! ```
//!
//! For each number of clients: a new folder `/create-N` (so every level starts from an
//! empty folder), the instances' conflict counters read (`/@@metrics`), the clients run
//! for `--seconds`, the counters read again, and the folder listed on every instance to
//! check that each acknowledged creation is there.  Prints one JSON object per level:
//! creations acknowledged and their rate, answers by status (a `409` is a creation that
//! still conflicted after the instance's retries), transport errors, latency percentiles
//! (ms), the instances' retries, give-ups (409s), merged and unmerged conflicts during
//! the level, and whether every creation was found on every instance.
//!
//! Written for the benchmark only: the API token comes from `POST /@login` once, and
//! requests carry it as `Authorization: Bearer` (no password hashing per request).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use clap::Parser;
use reqwest::blocking::Client;
use serde_json::{Value, json};

#[derive(Parser, Debug)]
#[command(about = "Page creations per second into one folder, over HTTP")]
struct Args {
    /// An instance's base URL (`http://127.0.0.1:8080`); repeat for several.
    #[arg(long, required = true)]
    base: Vec<String>,
    /// A manager's login and password (for the API token).
    #[arg(long)]
    login: String,
    #[arg(long)]
    password: String,
    /// Numbers of concurrent clients, one run each.
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    clients: Vec<usize>,
    /// Duration of each run.
    #[arg(long, default_value_t = 10.0)]
    seconds: f64,
}

/// The counters of `/@@metrics` read around each level.
const COUNTERS: [&str; 4] = [
    "bbru_conflict_retries",
    "bbru_conflicts_given_up",
    "bbru_conflicts_resolved",
    "bbru_conflicts",
];

fn http() -> Result<Client> {
    Ok(Client::builder()
        .timeout(Duration::from_secs(120))
        .redirect(reqwest::redirect::Policy::none())
        .build()?)
}

fn token(http: &Client, base: &str, login: &str, password: &str) -> Result<String> {
    let r = http
        .post(format!("{base}/@login"))
        .json(&json!({"login": login, "password": password}))
        .send()
        .context("POST /@login")?;
    if r.status() != 200 {
        bail!("POST {base}/@login answered {}", r.status());
    }
    let body: Value = r.json()?;
    Ok(body["token"]
        .as_str()
        .context("no token in the answer of /@login")?
        .to_owned())
}

/// The sum over the instances of each counter of [`COUNTERS`].
fn counters(http: &Client, bases: &[String]) -> Result<[u64; 4]> {
    let mut sums = [0u64; 4];
    for base in bases {
        let text = http
            .get(format!("{base}/@@metrics"))
            .send()
            .and_then(|r| r.text())
            .with_context(|| format!("GET {base}/@@metrics"))?;
        for (sum, name) in sums.iter_mut().zip(COUNTERS) {
            let prefix = format!("{name}_total ");
            let value: u64 = text
                .lines()
                .find_map(|l| l.strip_prefix(&prefix))
                .and_then(|v| v.trim().parse().ok())
                .with_context(|| format!("no {name} in {base}/@@metrics"))?;
            *sum += value;
        }
    }
    Ok(sums)
}

/// What one client saw.
#[derive(Default)]
struct Seen {
    created: Vec<String>,
    statuses: BTreeMap<u16, u64>,
    transport_errors: u64,
    latencies: Vec<Duration>,
}

fn run_client(
    bases: &[String],
    token: &str,
    folder: &str,
    client: usize,
    until: Instant,
) -> Result<Seen> {
    let http = http()?;
    let mut seen = Seen::default();
    let mut n = 0usize;
    while Instant::now() < until {
        let base = &bases[(client + n) % bases.len()];
        let name = format!("p{client}-{n}");
        let asked = Instant::now();
        let answer = http
            .post(format!("{base}{folder}"))
            .bearer_auth(token)
            .header(reqwest::header::ACCEPT, "application/json")
            .json(&json!({"@type": "Page", "id": name, "title": format!("Page {n} of client {client}"), "body": "A page made by the benchmark."}))
            .send()
            .and_then(|r| {
                let status = r.status().as_u16();
                r.bytes().map(|_| status)
            });
        seen.latencies.push(asked.elapsed());
        match answer {
            Ok(status) => {
                *seen.statuses.entry(status).or_default() += 1;
                if status == 201 {
                    seen.created.push(name);
                }
            }
            Err(_) => seen.transport_errors += 1,
        }
        n += 1;
    }
    Ok(seen)
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    // Nearest rank: a percentile of a few hundred samples needs no interpolation.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let rank = ((p / 100.0) * sorted.len() as f64).ceil().max(1.0) as usize;
    sorted[rank.min(sorted.len()) - 1].as_secs_f64() * 1000.0
}

fn main() -> Result<()> {
    let args = Args::parse();
    let bases: Vec<String> = args
        .base
        .iter()
        .map(|b| b.trim_end_matches('/').to_owned())
        .collect();
    let http = http()?;
    let token = token(&http, &bases[0], &args.login, &args.password)?;
    for &clients in &args.clients {
        let folder = format!("/create-{clients}");
        let r = http
            .post(format!("{}/", bases[0]))
            .bearer_auth(&token)
            .json(&json!({"@type": "Folder", "id": &folder[1..], "title": format!("{clients} clients")}))
            .send()?;
        if r.status() != 201 {
            bail!("creating {folder}: {} {}", r.status(), r.text()?);
        }
        let before = counters(&http, &bases)?;
        let started = Instant::now();
        let until = started + Duration::from_secs_f64(args.seconds);
        let seen: Vec<Seen> = std::thread::scope(|scope| {
            let threads: Vec<_> = (0..clients)
                .map(|c| {
                    let (bases, token, folder) = (&bases, &token, &folder);
                    scope.spawn(move || run_client(bases, token, folder, c, until))
                })
                .collect();
            threads
                .into_iter()
                .map(|t| t.join().expect("a client thread"))
                .collect::<Result<_>>()
        })?;
        let elapsed = started.elapsed();
        let after = counters(&http, &bases)?;
        let mut statuses: BTreeMap<u16, u64> = BTreeMap::new();
        let mut latencies = Vec::new();
        let mut created = std::collections::BTreeSet::new();
        let mut transport_errors = 0;
        for s in seen {
            for (status, n) in s.statuses {
                *statuses.entry(status).or_default() += n;
            }
            latencies.extend(s.latencies);
            created.extend(s.created);
            transport_errors += s.transport_errors;
        }
        latencies.sort_unstable();
        // Every acknowledged creation, on every instance.
        let mut present_everywhere = true;
        for base in &bases {
            let listing: Value = http
                .get(format!("{base}{folder}"))
                .bearer_auth(&token)
                .header(reqwest::header::ACCEPT, "application/json")
                .send()?
                .json()?;
            let names: std::collections::BTreeSet<&str> = listing["items"]
                .as_array()
                .context("no items in the folder's JSON")?
                .iter()
                .filter_map(|i| i["id"].as_str())
                .collect();
            present_everywhere &= created.iter().all(|c| names.contains(c.as_str()));
        }
        let delta = |i: usize| after[i].saturating_sub(before[i]);
        #[allow(clippy::cast_precision_loss)]
        let rate = created.len() as f64 / elapsed.as_secs_f64();
        println!(
            "{}",
            json!({
                "clients": clients,
                "instances": bases.len(),
                "seconds": elapsed.as_secs_f64(),
                "created": created.len(),
                "creations_per_s": rate,
                "statuses": statuses.iter().map(|(k, v)| (k.to_string(), json!(v))).collect::<serde_json::Map<_, _>>(),
                "transport_errors": transport_errors,
                "latency_ms": {
                    "p50": percentile_ms(&latencies, 50.0),
                    "p99": percentile_ms(&latencies, 99.0),
                    "max": latencies.last().map_or(0.0, |d| d.as_secs_f64() * 1000.0),
                },
                "retries": delta(0),
                "given_up": delta(1),
                "conflicts_resolved": delta(2),
                "conflicts_unresolved": delta(3),
                "present_on_every_instance": present_everywhere,
            })
        );
    }
    Ok(())
}
