//! `bbru-zeo`: the database server's command.
//!
//! `bbru-zeo -a ADDRESS -f Data.fs` (or `--postgres URL` for a PostgreSQL
//! database shared with RelStorage, or `bbru-zeo serve ...`, or
//! `-C zeo.conf`) runs the ZEO server, with runzeo's flags. The other
//! subcommands work on a `Data.fs` directly: `check` (like Python's
//! `fstest`, and stricter), `dump` (one JSON object per transaction),
//! `pack`, and `copy` (every transaction into another file, blobs included,
//! as zodbconvert does; either side may be a PostgreSQL database given by a
//! `postgresql://` URL), and `init-db URL` creates the PostgreSQL schema. This is the CLI edge: errors are `anyhow`, with the library's
//! typed error as the cause; every failure exits non-zero.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use zodb_storage::{FileStorage, Storage};

mod tools;

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
    #[arg(short = 'f', long = "filename", conflicts_with = "postgres")]
    file: Option<PathBuf>,
    /// Serve the PostgreSQL database at this URL (or libpq `key=value`
    /// string) as storage "1", shared with RelStorage clients and other bbru
    /// processes; it must hold the schema (`bbru-zeo init-db URL`).
    #[arg(long, value_name = "URL")]
    postgres: Option<String>,
    /// A read replica (hot standby) of the --postgres database that answers
    /// loads once it has replayed the commits they need (repeatable).
    #[arg(long, value_name = "URL", requires = "postgres")]
    postgres_replica: Vec<String>,
    /// Seconds between polls of a PostgreSQL storage for commits other
    /// processes made (bbru processes' arrive at once by NOTIFY; RelStorage
    /// clients send none). zeo.conf's `poll-interval` wins for its storage.
    #[arg(long, default_value_t = zeo::limits::POLL_INTERVAL_MILLIS_DEFAULT as f64 / 1000.0)]
    poll_interval: f64,
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
    /// Grant read leases of this many milliseconds (at most 5000) to the clients that
    /// ask for them (bbru instances; Python's clients do not): such a client starts a
    /// transaction without a round trip to the server, and every commit waits until
    /// each leased client confirmed its invalidation (a client that stops confirming
    /// delays commits for one lease at most). After a stop that left leases held (a
    /// crash; `FILE.leases` beside the first file storage says so), the first commits
    /// wait one lease. 0: no leases, as Python's server.
    #[arg(long, default_value_t = zeo::limits::LEASE_MILLIS_DEFAULT)]
    lease_ms: u64,
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
    /// With --postgres a load waits for the database on its thread (as it does in
    /// Python's server over RelStorage): more threads let other connections go on.
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
    /// Copy every transaction of SRC into DST (created; it must hold no later
    /// transaction), with its tid, user, description and extension, and every
    /// blob revision when both have blob directories: zodbconvert's copy. An
    /// interrupted copy resumes where it stopped when run again.
    ///
    /// SRC and DST are Data.fs paths or `postgresql://` URLs (a PostgreSQL
    /// DST gets RelStorage's schema when it has none), so a site moves to
    /// PostgreSQL and back.
    Copy {
        src: PathBuf,
        dst: PathBuf,
        /// SRC's blob directory.
        #[arg(long)]
        src_blob_dir: Option<PathBuf>,
        /// DST's blob directory (needed when SRC has blobs).
        #[arg(long)]
        dst_blob_dir: Option<PathBuf>,
    },
    /// Create RelStorage 4.3's history-preserving schema in the PostgreSQL
    /// database at URL (where it is missing), for `PgStorage` and RelStorage.
    InitDb {
        /// A `postgresql://` URL or a libpq `key=value` string.
        url: String,
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
        Command::Check { file } => tools::check(&file),
        Command::Dump { file } => tools::dump(&file),
        Command::Pack { file, days, no_gc } => tools::pack(&file, days, !no_gc),
        Command::Copy {
            src,
            dst,
            src_blob_dir,
            dst_blob_dir,
        } => tools::copy(&src, &dst, src_blob_dir, dst_blob_dir),
        Command::InitDb { url } => {
            let storage = zodb_pg::PgStorage::create(&url)
                .with_context(|| format!("creating the schema in {url}"))?;
            println!("{}: schema ready", storage.name());
            Ok(())
        }
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
            let postgres = args
                .postgres
                .clone()
                .map(|dsn| zeo::config::PostgresSection {
                    ro_replica_conf: None,
                    dsn,
                    create_schema: false,
                    poll_interval: None,
                });
            let file = match (&args.file, &postgres) {
                (Some(f), _) => f.clone(),
                (None, Some(_)) => PathBuf::new(),
                (None, None) => anyhow::bail!("give -f Data.fs, --postgres URL or -C zeo.conf"),
            };
            let config = zeo::server::Config::default();
            (
                config,
                vec![zeo::config::StorageSection {
                    name: "1".into(),
                    path: file,
                    read_only: false,
                    blob_dir: args.blob_dir.clone(),
                    postgres,
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
    anyhow::ensure!(
        args.lease_ms <= zeo::limits::LEASE_MILLIS_MAX,
        "--lease-ms must be at most {} (a lease is how long a commit may wait for a client)",
        zeo::limits::LEASE_MILLIS_MAX
    );
    config.lease = (args.lease_ms > 0).then(|| std::time::Duration::from_millis(args.lease_ms));
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
    anyhow::ensure!(
        args.poll_interval.is_finite() && args.poll_interval > 0.0,
        "the poll interval must be a positive number of seconds"
    );
    let mut opened: Vec<(String, std::sync::Arc<dyn Storage>)> = Vec::new();
    for s in &storages {
        if let Some(pg) = &s.postgres {
            // A PgStorage has no read-only mode of its own yet: only the
            // server's (which refuses every write) applies.
            anyhow::ensure!(
                !s.read_only || config.read_only,
                "storage {}: read-only on <relstorage>: say read-only in <zeo> (or -r)",
                s.name
            );
            let storage =
                open_postgres(pg, &s.name, s.blob_dir.as_deref(), &args.postgres_replica)?;
            let interval = pg
                .poll_interval
                .unwrap_or(std::time::Duration::from_secs_f64(args.poll_interval));
            config.polled.insert(s.name.clone(), interval);
            opened.push((s.name.clone(), storage));
            continue;
        }
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
        if config.lease_marker.is_none() {
            let mut marker = s.path.clone().into_os_string();
            marker.push(".leases");
            config.lease_marker = Some(marker.into());
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
    // A current-thread runtime runs the connections on the thread that calls `block_on`:
    // one of our own, with the stack every server thread has (see the limit), not the
    // main thread's.
    let serve = move || {
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
    };
    std::thread::Builder::new()
        .name("bbru-zeo".into())
        .stack_size(zeo::limits::SERVER_THREAD_STACK_BYTES)
        .spawn(serve)
        .context("starting the server thread")?
        .join()
        .map_err(|_| anyhow::anyhow!("the server thread panicked"))?
}

/// Opens (or, with `create-schema`, creates) the PostgreSQL storage of a
/// `<relstorage>` section or `--postgres`, listening for other bbru
/// processes' commits.
fn open_postgres(
    pg: &zeo::config::PostgresSection,
    name: &str,
    blob_dir: Option<&Path>,
    extra_replicas: &[String],
) -> Result<std::sync::Arc<dyn Storage>> {
    let storage = if pg.create_schema {
        zodb_pg::PgStorage::create(&pg.dsn)
    } else {
        zodb_pg::PgStorage::open(&pg.dsn)
    }
    .with_context(|| format!("opening storage {name} (PostgreSQL)"))?;
    let mut replicas = extra_replicas.to_vec();
    if let Some(path) = &pg.ro_replica_conf {
        let text = std::fs::read_to_string(path)
            .with_context(|| format!("reading ro-replica-conf {}", path.display()))?;
        replicas.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_owned),
        );
    }
    let storage = if replicas.is_empty() {
        storage
    } else {
        tracing::info!(storage = %name, replicas = replicas.len(), "read replicas");
        storage
            .with_replicas(&replicas)
            .with_context(|| format!("storage {name}'s read replicas"))?
    };
    let storage = match blob_dir {
        Some(dir) => storage
            .with_blob_dir(dir)
            .with_context(|| format!("opening storage {name}'s blob cache {}", dir.display()))?,
        None => storage,
    };
    storage.listen_for_commits();
    tracing::info!(
        storage = %name,
        database = %storage.name(),
        last = %storage.last_transaction(),
        "opened"
    );
    Ok(std::sync::Arc::new(storage))
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
