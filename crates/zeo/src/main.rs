//! `bbru-zeo`: the database server's command.
//!
//! Today it holds the tools that work on a `Data.fs` directly:
//! `check` (like Python's `fstest`, and stricter), `dump` (one JSON object
//! per transaction), and `pack`. The ZEO server itself joins them here.
//! This is the CLI edge: errors are `anyhow`, with the library's typed
//! error as the cause; every failure exits non-zero.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use serde_json::json;
use sha1::{Digest, Sha1};
use zodb_storage::{FileStorage, Storage, Tid};

#[derive(Debug, Parser)]
#[command(
    name = "bbru-zeo",
    version,
    about = "The bbru object database server and its file tools"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify every transaction and record of a Data.fs; exit 1 on damage.
    Check {
        /// The file to check (never modified).
        file: PathBuf,
    },
    /// Print every transaction as one JSON object per line.
    Dump {
        /// The file to dump (opened read-only).
        file: PathBuf,
    },
    /// Remove old revisions and unreachable objects.
    Pack {
        file: PathBuf,
        /// Keep the history of the last N days (fractions allowed).
        #[arg(long, default_value_t = 0.0)]
        days: f64,
        /// Keep unreachable objects; only drop old revisions.
        #[arg(long)]
        no_gc: bool,
    },
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BBRU_LOG")
                .unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bbru-zeo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Check { file } => check(&file),
        Command::Dump { file } => dump(&file),
        Command::Pack { file, days, no_gc } => pack(&file, days, !no_gc),
    }
}

fn check(file: &Path) -> Result<()> {
    let report = zodb_storage::filestorage::check_file(file)?;
    println!(
        "{}: ok: {} transactions, {} records, {} objects, {} bytes, last transaction {}",
        file.display(),
        report.transactions,
        report.records,
        report.objects,
        report.size,
        report.last_tid
    );
    Ok(())
}

fn dump(file: &Path) -> Result<()> {
    let storage = FileStorage::open_read_only(file)?;
    let stdout = std::io::stdout();
    let mut out = BufWriter::new(stdout.lock());
    for txn in storage.iterator(None, None)? {
        let txn = txn?;
        let records: Vec<_> = txn
            .records
            .iter()
            .map(|r| {
                json!({
                    "oid": r.oid.to_string(),
                    "data_sha1": r.data.as_ref().map(|d| hex::encode(Sha1::digest(d))),
                })
            })
            .collect();
        let line = json!({
            "tid": txn.tid.to_string(),
            "status": txn.status.as_char().to_string(),
            "user": String::from_utf8_lossy(&txn.user),
            "description": String::from_utf8_lossy(&txn.description),
            "extension": hex::encode(&txn.extension),
            "records": records,
        });
        writeln!(out, "{line}").context("writing to stdout")?;
    }
    out.flush().context("writing to stdout")?;
    Ok(())
}

fn pack(file: &Path, days: f64, gc: bool) -> Result<()> {
    anyhow::ensure!(
        days.is_finite() && days >= 0.0,
        "--days must be a non-negative number"
    );
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .context("the clock is before 1970")?;
    let pack_time = Tid::from_unix_seconds(now.as_secs_f64() - days * 86_400.0);
    let storage = FileStorage::open_with(
        file,
        zodb_storage::filestorage::Options {
            must_exist: true,
            ..Default::default()
        },
    )?;
    let before = storage.size();
    storage.pack(pack_time, gc)?;
    let after = storage.size();
    storage.close()?;
    println!(
        "{}: packed to {pack_time}: {before} -> {after} bytes",
        file.display()
    );
    Ok(())
}
