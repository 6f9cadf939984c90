//! The file and database tools of `bbru-zeo` (the binary's own module, not the
//! library's): `check`, `dump`, `pack` of a `Data.fs`, and `copy` between
//! storages (files or PostgreSQL databases), as zodbconvert does.

use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use serde_json::json;
use sha1::{Digest, Sha1};
use zodb_storage::{FileStorage, Storage, Tid};

pub fn check(file: &Path) -> Result<()> {
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

pub fn dump(file: &Path) -> Result<()> {
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

pub fn pack(file: &Path, days: f64, gc: bool) -> Result<()> {
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

/// The URL `p` holds when it names a PostgreSQL database, not a file.
fn postgres_url(p: &Path) -> Option<&str> {
    p.to_str().filter(|s| zodb_pg::is_postgres_url(s))
}

pub fn copy(
    src: &Path,
    dst: &Path,
    src_blobs: Option<PathBuf>,
    dst_blobs: Option<PathBuf>,
) -> Result<()> {
    use zodb_storage::filestorage::Options;
    // A `postgresql://` URL names a PgStorage, whose blob directory is the
    // cache of the blobs it keeps in the database.
    let with_blobs = |pg: zodb_pg::PgStorage, dir: Option<PathBuf>| match dir {
        Some(d) => pg
            .with_blob_dir(&d)
            .with_context(|| format!("opening the blob cache {}", d.display())),
        None => Ok(pg),
    };
    let source: Box<dyn Storage> = match postgres_url(src) {
        Some(url) => Box::new(with_blobs(
            zodb_pg::PgStorage::open(url).context("opening SRC")?,
            src_blobs,
        )?),
        None => Box::new(
            FileStorage::open_with(
                src,
                Options {
                    read_only: true,
                    must_exist: true,
                    blob_dir: src_blobs,
                    ..Default::default()
                },
            )
            .with_context(|| format!("opening {}", src.display()))?,
        ),
    };
    let dest: Box<dyn Storage> = match postgres_url(dst) {
        Some(url) => Box::new(with_blobs(
            zodb_pg::PgStorage::create(url).context("opening DST")?,
            dst_blobs,
        )?),
        None => Box::new(
            FileStorage::open_with(
                dst,
                Options {
                    blob_dir: dst_blobs,
                    ..Default::default()
                },
            )
            .with_context(|| format!("opening {}", dst.display()))?,
        ),
    };
    // What an interrupted copy already wrote is not copied again; a DST that
    // holds anything else is refused (zodbconvert --incremental's check).
    let last = dest.last_transaction();
    let start = if last == Tid::ZERO {
        None
    } else {
        let shared = source.iterator(Some(last), Some(last))?.next().is_some();
        anyhow::ensure!(
            shared,
            "{} ends with transaction {last}, which {} does not hold: not a copy of it",
            dst.display(),
            src.display()
        );
        Some(Tid(last.0.saturating_add(1)))
    };
    let stats = zodb_storage::copy_transactions(&*source, &*dest, start, |_| {})
        .with_context(|| format!("copying {} into {}", src.display(), dst.display()))?;
    dest.close()?;
    println!(
        "{} -> {}: {} transactions, {} records, {} blob files",
        src.display(),
        dst.display(),
        stats.transactions,
        stats.records,
        stats.blobs
    );
    Ok(())
}
