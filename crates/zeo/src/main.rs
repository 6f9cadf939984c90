//! `bbru-zeo`: the database server's command.
//!
//! `bbru-zeo -a ADDRESS -f Data.fs` (or `bbru-zeo serve ...`, or
//! `-C zeo.conf`) runs the ZEO server, with runzeo's flags. The other
//! subcommands work on a `Data.fs` directly: `check` (like Python's
//! `fstest`, and stricter), `dump` (one JSON object per transaction), and
//! `pack`. This is the CLI edge: errors are `anyhow`, with the library's
//! typed error as the cause; every failure exits non-zero.

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
#[command(args_conflicts_with_subcommands = true)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    serve: ServeArgs,
}

/// runzeo's flags.
#[derive(Debug, Clone, clap::Args)]
struct ServeArgs {
    /// Address to listen on: HOST:PORT, PORT (loopback), or a unix socket path.
    #[arg(short = 'a', long = "address")]
    address: Option<String>,
    /// The Data.fs to serve as storage "1" (created if missing).
    #[arg(short = 'f', long = "filename")]
    file: Option<PathBuf>,
    /// The blob directory of the storage of -f (ZODB's layout; created if missing).
    /// With -C, zeo.conf's `blob-dir` says it.
    #[arg(long)]
    blob_dir: Option<PathBuf>,
    /// Serve read-only.
    #[arg(short = 'r', long = "read-only")]
    read_only: bool,
    /// A zeo.conf with <zeo> and <filestorage> sections (as Python's runzeo -C).
    #[arg(short = 'C', long = "configure")]
    config: Option<PathBuf>,
    /// Abort the transaction of a client that voted and has not finished
    /// within this many seconds (its object locks, the commit locks, are
    /// released) and close its connection; 0 turns it off. Default 30 (also
    /// under -C, unless zeo.conf sets transaction-timeout).
    #[arg(short = 't', long = "timeout")]
    transaction_timeout: Option<f64>,
    /// How long a vote waits for objects another client is committing
    /// before it fails with a lock timeout (StorageTransactionError).
    #[arg(long, default_value_t = zeo::limits::LOCK_TIMEOUT_SECONDS_DEFAULT as f64)]
    lock_timeout: f64,
    /// Close a connection that has not sent its handshake and registered
    /// within this many seconds of being accepted (silent sockets must not
    /// hold the server's connection slots).
    #[arg(long, default_value_t = zeo::limits::REGISTER_TIMEOUT_SECONDS_DEFAULT as f64)]
    register_timeout: f64,
    /// Bytes one transaction's stores may carry in all; past it the server drops the
    /// transaction's buffer and its vote fails. Past a few MiB a transaction's records
    /// wait for the vote in a temporary file beside the first storage's file.
    #[arg(long, default_value_t = zeo::limits::TRANSACTION_BYTES_MAX_DEFAULT)]
    transaction_size_max: u64,
    /// Speak msgpack (M5) instead of pickle (Z5).
    #[arg(long)]
    msgpack: bool,
    /// Serve TLS with this certificate (PEM, with any intermediates after it), as
    /// zeo.conf's `<ssl> certificate`. Clients must then speak TLS from the first byte.
    #[arg(long, value_name = "PEM")]
    ssl_certificate: Option<PathBuf>,
    /// The certificate's private key (PEM; default: in the certificate file).
    #[arg(long, value_name = "PEM", requires = "ssl_certificate")]
    ssl_key: Option<PathBuf>,
    /// Accept only clients whose certificate is signed by a CA of this PEM file (or of
    /// the PEM files in this directory), as `<ssl> authenticate`.
    #[arg(long, value_name = "PEM", requires = "ssl_certificate")]
    ssl_authenticate: Option<PathBuf>,
    /// Largest frame accepted from a client, in bytes.
    #[arg(long)]
    frame_size_max: Option<usize>,
    /// Threads that serve the connections (read, decode, answer loads, write); votes,
    /// finishes and other slow calls run on a pool of their own whatever this says.
    /// 1: one thread for all connections, as Python's server, and the least CPU per
    /// request (no hand-offs between threads); more: connections spread over them.
    #[arg(long, default_value_t = zeo::limits::IO_THREADS_DEFAULT)]
    io_threads: usize,
    /// Log to this file instead of standard error (reopened on SIGHUP, for
    /// logrotate). With --daemon: default `bbru-zeo.log` beside the pid file.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object a
    /// line, for log shippers).
    #[arg(long, default_value_t = daemon::LogFormat::Text)]
    log_format: daemon::LogFormat,
    /// Run detached in the background; returns once the server listens.
    #[arg(long)]
    daemon: bool,
    /// The pid file (locked while the server runs). Default: `FILE.pid`
    /// for `-f FILE`, else `bbru-zeo.pid`.
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Say whether the server of the pid file runs: exit 0 if it does, 1 if
    /// its pid file is stale, 3 if it does not run.
    #[arg(long, conflicts_with_all = ["daemon", "stop_daemon"])]
    status: bool,
    /// Stop the server of the pid file: SIGTERM, let voted commits finish,
    /// SIGKILL after a grace period.
    #[arg(long, conflicts_with = "daemon")]
    stop_daemon: bool,
}

impl ServeArgs {
    fn pid_file(&self) -> PathBuf {
        match (&self.pid_file, &self.file) {
            (Some(p), _) => p.clone(),
            (None, Some(f)) => {
                let mut p = f.clone().into_os_string();
                p.push(".pid");
                PathBuf::from(p)
            }
            (None, None) => PathBuf::from("bbru-zeo.pid"),
        }
    }

    fn log_file(&self) -> Option<PathBuf> {
        match (&self.log_file, self.daemon || daemon::is_daemon_child()) {
            (Some(l), _) => Some(l.clone()),
            (None, true) => Some(self.pid_file().with_file_name("bbru-zeo.log")),
            (None, false) => None,
        }
    }
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the ZEO server (the default when no subcommand is given).
    Serve(Box<ServeArgs>),
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
    let cli = Cli::parse();
    let command = cli.command.unwrap_or(Command::Serve(Box::new(cli.serve)));
    if let Command::Serve(args) = &command {
        // Process control answers before anything is opened or logged.
        if args.status {
            let status = daemon::status(args.pid_file());
            println!("bbru-zeo: {status}");
            return ExitCode::from(status.exit_code().clamp(0, 255) as u8);
        }
        if args.stop_daemon {
            return match daemon::stop(args.pid_file(), std::time::Duration::from_secs(30)) {
                Ok(outcome) => {
                    println!("bbru-zeo: {outcome}");
                    ExitCode::from(outcome.exit_code().clamp(0, 255) as u8)
                }
                Err(e) => {
                    eprintln!("bbru-zeo: {e}");
                    ExitCode::FAILURE
                }
            };
        }
        if args.daemon && !daemon::is_daemon_child() {
            let Some(log) = args.log_file() else {
                unreachable!("--daemon always has a log file");
            };
            // A new installation (`-f var/Data.fs`) has no `var/` yet.
            for file in [args.pid_file(), log.clone()] {
                if let Some(dir) = file.parent()
                    && !dir.as_os_str().is_empty()
                    && let Err(e) = std::fs::create_dir_all(dir)
                {
                    eprintln!("bbru-zeo: creating {}: {e}", dir.display());
                    return ExitCode::FAILURE;
                }
            }
            let outcome = daemon::DaemonArgs::new(args.pid_file(), log).and_then(daemon::daemonize);
            return match outcome {
                Ok(o) => {
                    println!("bbru-zeo: {o}");
                    ExitCode::SUCCESS
                }
                Err(e) => {
                    eprintln!("bbru-zeo: {e}");
                    ExitCode::FAILURE
                }
            };
        }
    }
    let (log_file, log_format) = match &command {
        Command::Serve(a) => (a.log_file(), a.log_format),
        _ => (None, daemon::LogFormat::Text),
    };
    if let Err(e) = daemon::init_logging(log_file.as_deref(), log_format, "BBRU_LOG") {
        eprintln!("bbru-zeo: {e}");
        return ExitCode::FAILURE;
    }
    match run(command) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("bbru-zeo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(command: Command) -> Result<()> {
    match command {
        Command::Serve(args) => serve(*args),
        Command::Check { file } => check(&file),
        Command::Dump { file } => dump(&file),
        Command::Pack { file, days, no_gc } => pack(&file, days, !no_gc),
    }
}

fn serve(args: ServeArgs) -> Result<()> {
    // A daemon, or a server given a pid file, holds that file locked for
    // its whole life, so `--status` and `--stop-daemon` can find it.
    let _pid_file = if args.daemon || args.pid_file.is_some() || daemon::is_daemon_child() {
        Some(daemon::PidFile::acquire(args.pid_file())?)
    } else {
        None
    };
    // Up to `connections_max` clients, each a descriptor: more than a login's default.
    let open_files = daemon::raise_open_files_limit();
    tracing::debug!(?open_files, "open files limit");
    let (mut config, storages, mut tls) = match &args.config {
        Some(path) => {
            let text = std::fs::read_to_string(path)
                .with_context(|| format!("reading {}", path.display()))?;
            let conf = zeo::config::parse(&text).with_context(|| format!("{}", path.display()))?;
            (conf.server, conf.storages, conf.tls)
        }
        None => {
            let file = args
                .file
                .clone()
                .context("give -f Data.fs (or -C zeo.conf)")?;
            let config = zeo::server::Config::default();
            (
                config,
                vec![zeo::config::StorageSection {
                    name: "1".into(),
                    path: file,
                    read_only: false,
                    blob_dir: args.blob_dir.clone(),
                }],
                None,
            )
        }
    };
    // The flags win over zeo.conf's `<ssl>`, as -a wins over its address.
    if let Some(certificate) = &args.ssl_certificate {
        tls = Some(zeo::tls::ServerTls {
            certificate: certificate.clone(),
            key: args.ssl_key.clone(),
            authenticate: args.ssl_authenticate.clone(),
        });
    }
    if let Some(tls) = &tls {
        // Read now, before any storage is opened: a bad file stops the start, named.
        config.tls = Some(tls.server_config().context("setting up TLS")?);
        tracing::info!(
            certificate = %tls.certificate.display(),
            client_certificates = tls.authenticate.is_some(),
            "TLS on"
        );
    }
    if let Some(a) = &args.address {
        config.address = zeo::server::Address::parse(a).context("-a ADDRESS")?;
    } else if args.config.is_none() {
        anyhow::bail!("give -a ADDRESS (HOST:PORT, PORT or a socket path)");
    }
    config.read_only |= args.read_only;
    if args.msgpack {
        config.encoding = zeo::wire::Encoding::Msgpack;
    }
    if let Some(t) = args.transaction_timeout {
        anyhow::ensure!(
            t.is_finite() && t >= 0.0,
            "the transaction timeout must be a number of seconds (0 turns it off)"
        );
        config.transaction_timeout = (t > 0.0).then(|| std::time::Duration::from_secs_f64(t));
    }
    anyhow::ensure!(
        args.lock_timeout.is_finite() && args.lock_timeout > 0.0,
        "the lock timeout must be a positive number of seconds"
    );
    if let Some(m) = args.frame_size_max {
        config.frame_size_max = m;
    }
    anyhow::ensure!(
        args.register_timeout.is_finite() && args.register_timeout > 0.0,
        "the register timeout must be a positive number of seconds"
    );
    config.register_timeout = std::time::Duration::from_secs_f64(args.register_timeout);
    anyhow::ensure!(
        args.transaction_size_max > 0,
        "the transaction size limit must be a positive number of bytes"
    );
    config.transaction_bytes_max = args.transaction_size_max;
    let mut opened: Vec<(String, std::sync::Arc<dyn Storage>)> = Vec::new();
    for s in &storages {
        let read_only = s.read_only || config.read_only;
        // A new database may go in a new directory (e.g. `-f var/Data.fs`).
        if !read_only
            && let Some(dir) = s
                .path
                .parent()
                .filter(|d| !d.as_os_str().is_empty() && !d.exists())
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let fs = FileStorage::open_with(
            &s.path,
            zodb_storage::filestorage::Options {
                read_only,
                lock_timeout: Some(std::time::Duration::from_secs_f64(args.lock_timeout)),
                blob_dir: s.blob_dir.clone(),
                ..Default::default()
            },
        )
        .with_context(|| format!("opening storage {} ({})", s.name, s.path.display()))?;
        let report = fs.open_report();
        tracing::info!(
            storage = %s.name,
            path = %s.path.display(),
            objects = fs.len(),
            last = %fs.last_transaction(),
            saved_index = report.used_saved_index,
            "opened"
        );
        opened.push((s.name.clone(), std::sync::Arc::new(fs)));
        if config.spill_dir.is_none() {
            let dir = s.path.parent().filter(|d| !d.as_os_str().is_empty());
            config.spill_dir = Some(dir.unwrap_or(Path::new(".")).to_path_buf());
        }
    }
    let mut runtime = match args.io_threads {
        0 => anyhow::bail!("--io-threads must be at least 1"),
        1 => tokio::runtime::Builder::new_current_thread(),
        n => {
            let mut b = tokio::runtime::Builder::new_multi_thread();
            b.worker_threads(n);
            b
        }
    };
    let runtime = runtime
        .thread_stack_size(zeo::limits::SERVER_THREAD_STACK_BYTES)
        .enable_all()
        .build()
        .context("starting the runtime")?;
    runtime.block_on(async move {
        let server = zeo::server::Server::bind(config.clone(), opened)
            .await
            .with_context(|| format!("listening on {}", config.address))?;
        let handle = server.handle();
        tokio::spawn(async move {
            wait_for_stop_signal().await;
            tracing::info!("stop signal received");
            handle.shutdown();
        });
        if let Some(log) = args.log_file() {
            tokio::spawn(reopen_log_on_sighup(log));
        }
        // Only now may `--daemon` report success: the server listens.
        daemon::notify_ready().context("telling the parent the server is ready")?;
        server.run().await;
        Ok::<(), anyhow::Error>(())
    })
}

/// Reopens the log file at each SIGHUP (logrotate moves the old one away).
async fn reopen_log_on_sighup(path: PathBuf) {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut hup) = signal(SignalKind::hangup()) else {
        return;
    };
    while hup.recv().await.is_some() {
        match daemon::reopen_log(&path) {
            Ok(()) => tracing::info!(path = %path.display(), "log file reopened"),
            Err(e) => tracing::error!("reopening the log file: {e}"),
        }
    }
}

/// SIGTERM or SIGINT.
async fn wait_for_stop_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
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
