//! `bbru`: the web application's command.
//!
//! `bbru serve [-c etc/serve.toml]` runs an instance: on the embedded FileStorage by
//! default (`var/Data.fs`, no server to set up) or as a client of a `bbru-zeo` server.
//! With no configuration it uses the defaults and writes `etc/site.toml` from the
//! template (bootstrap manager commented out).  This is the CLI edge: errors are
//! `anyhow`, every failure exits non-zero.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use bbru::config::{ServeConfig, SiteConfig, StorageConfig};

#[derive(Debug, Parser)]
#[command(name = "bbru", version, about = "The bbru web application")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run an instance.
    Serve(ServeArgs),
    /// Print the argon2 hash of a password read from standard input (for
    /// `password_hash` in etc/site.toml).
    HashPassword,
    /// Write etc/site.toml and etc/serve.toml from the release's templates and the
    /// site's values (the seed's `bin/buildout -c deploy.cfg`).
    Configure {
        /// The site's values, kept outside release directories.
        #[arg(short = 'c', long = "config")]
        deploy: Option<PathBuf>,
        /// The installation to write etc/ into (default: the current directory).
        #[arg(long, default_value = ".")]
        dir: PathBuf,
        /// The release being configured (bbru-X.Y.Z; set by `bbru deploy`).
        #[arg(long)]
        release: Option<String>,
    },
    /// Install a release archive and switch to it without downtime (steps 1 to 6 of the
    /// deployment procedure); on any failure the running release keeps serving.
    Deploy {
        /// bbru-X.Y.Z.tar.gz, a path or an http(s) URL.
        archive: String,
        /// Where releases/ and the current link live.
        #[arg(long, default_value = "/srv/bbru")]
        base: PathBuf,
        /// The site's values (deploy.toml), outside release directories.
        #[arg(short = 'c', long = "config")]
        deploy: Option<PathBuf>,
        /// Keep the previous release's directory (so `bbru rollback` can return to it).
        #[arg(long)]
        keep_previous: bool,
        /// Seconds the new release's instance has to answer /@@health before the
        /// release is refused (stopped and removed).
        #[arg(long, default_value_t = bbru::deploy::HEALTH_TIMEOUT_DEFAULT.as_secs())]
        health_timeout: u64,
    },
    /// The release's own checks against the configured database, which is not written
    /// to (a writable overlay over a read-only connection): configuration,
    /// connectivity, and the site's functions over HTTP; non-zero exit on any failure.
    Test {
        /// The instance's configuration (etc/serve.toml); defaults apply when absent.
        #[arg(short = 'c', long = "config")]
        config: Option<PathBuf>,
    },
    /// Move the bytes of Files and Images still kept in their records into blobs (in
    /// batches, one transaction each; running it again moves only what is left).  An
    /// embedded Data.fs must not be in use by an instance; on a ZEO server (which needs
    /// a blob directory) instances may go on serving.
    Migrate {
        #[command(flatten)]
        on: OfflineStorage,
    },
    /// Build the search index of the site, or bring it up to date (in batches, one
    /// transaction each; running it again changes nothing).  Instances may go on
    /// serving on a ZEO server; an embedded Data.fs must not be in use.
    Reindex {
        #[command(flatten)]
        on: OfflineStorage,
    },
    /// List the installed releases; the live one is marked with `*`.
    Releases {
        #[arg(long, default_value = "/srv/bbru")]
        base: PathBuf,
    },
    /// Return to the previous release, while it is still installed.
    Rollback {
        #[arg(long, default_value = "/srv/bbru")]
        base: PathBuf,
    },
}

/// The storage a maintenance command (`migrate`, `reindex`) works on.
#[derive(Debug, clap::Args)]
struct OfflineStorage {
    /// The instance's configuration (etc/serve.toml); defaults apply when absent.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Embedded FileStorage to work on (overrides the configuration).
    #[arg(long, conflicts_with = "zeo")]
    file: Option<PathBuf>,
    /// ZEO server to work through, HOST:PORT or a socket path (overrides the
    /// configuration).
    #[arg(long)]
    zeo: Option<String>,
}

impl OfflineStorage {
    /// Runs `work` on the database, then closes the storage (whatever `work` gave).
    fn with_db<T>(self, work: impl FnOnce(&zodb::DB) -> T) -> Result<T> {
        let config = command_config(self.config.as_deref(), self.file, self.zeo)?;
        let opened = bbru::startup::open_storage(&config)?;
        let db = zodb::DB::open(opened.storage.clone()).context("opening the database")?;
        let result = work(&db);
        drop(db);
        opened.storage.close().context("closing the storage")?;
        Ok(result)
    }
}

#[derive(Debug, clap::Args)]
struct ServeArgs {
    /// The instance's configuration (etc/serve.toml); defaults apply when absent.
    #[arg(short = 'c', long = "config")]
    config: Option<PathBuf>,
    /// Address to listen on (overrides the configuration).
    #[arg(long)]
    listen: Option<String>,
    /// Embedded FileStorage to use (overrides the configuration).
    #[arg(long, conflicts_with = "zeo")]
    file: Option<PathBuf>,
    /// ZEO server to use, HOST:PORT or a socket path (overrides the configuration).
    #[arg(long, conflicts_with = "postgres")]
    zeo: Option<String>,
    /// PostgreSQL database to use, a `postgresql://` URL (overrides the configuration):
    /// RelStorage 4.3's schema, made with `bbru-zeo init-db URL`; shared with the other
    /// instances on it, no server of ours in between.
    #[arg(long, conflicts_with = "file")]
    postgres: Option<String>,
    /// The site configuration (overrides the configuration).
    #[arg(long)]
    site_config: Option<PathBuf>,
    /// The secret key file, the same for every instance (overrides the configuration;
    /// default secret.key beside the embedded database, var/secret.key with ZEO).
    #[arg(long)]
    secret_key_file: Option<PathBuf>,
    /// Run detached in the background; returns once the instance answers requests,
    /// non-zero if it cannot start (its log's tail is printed).
    #[arg(long)]
    daemon: bool,
    /// Say whether the instance of the pid file runs: exit 0 if it does, 1 if its pid
    /// file is stale, 3 if it does not run.
    #[arg(long, conflicts_with_all = ["daemon", "stop_daemon"])]
    status: bool,
    /// Stop the instance of the pid file gracefully (it stops accepting, finishes the
    /// requests in flight and exits); SIGKILL only after a timeout.
    #[arg(long, conflicts_with = "daemon")]
    stop_daemon: bool,
    /// The pid file (overrides the configuration; default var/bbru.pid).
    #[arg(long)]
    pid_file: Option<PathBuf>,
    /// Log to this file (reopened on SIGHUP, for logrotate); with --daemon the default
    /// is bbru.log beside the pid file.
    #[arg(long)]
    log_file: Option<PathBuf>,
    /// Log lines as `text` (colour only on a terminal) or `json` (one object a line, for
    /// log shippers); overrides log_format in the configuration.
    #[arg(long)]
    log_format: Option<daemon::LogFormat>,
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(code.clamp(0, 255) as u8)
}

/// Every failure ends here, once: one line on standard error, exit status 1.
fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("bbru: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs a command; its outcome is the exit status (`--status` and `bbru test` have
/// statuses of their own), its failure the error `main` reports.
fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::HashPassword => hash_password()?,
        Command::Deploy {
            archive,
            base,
            deploy,
            keep_previous,
            health_timeout,
        } => {
            let args = bbru::deploy::DeployArgs {
                archive,
                base,
                deploy_file: deploy,
                keep_previous,
                health_timeout: std::time::Duration::from_secs(health_timeout),
            };
            let live = bbru::deploy::deploy(&args)?;
            println!("bbru: {} is live", live.display());
        }
        Command::Test { config } => return self_test(config.as_deref()),
        Command::Migrate { on } => migrate(on)?,
        Command::Reindex { on } => reindex(on)?,
        Command::Releases { base } => {
            for line in bbru::deploy::describe(&base)? {
                println!("{line}");
            }
        }
        Command::Rollback { base } => {
            let live = bbru::deploy::rollback(&base)?;
            println!("bbru: rolled back; {} is live", live.display());
        }
        Command::Configure {
            deploy,
            dir,
            release,
        } => {
            let mut values = match deploy.as_deref() {
                Some(path) => bbru::configure::Deploy::load(path)?,
                None => bbru::configure::Deploy::default(),
            };
            values.release = release;
            for p in bbru::configure::write(&dir, &values, deploy.as_deref())? {
                println!("bbru: wrote {}", p.display());
            }
        }
        Command::Serve(args) => return serve_command(args),
    }
    Ok(ExitCode::SUCCESS)
}

/// The serve configuration of a batch command, its storage overridden by `--file` or
/// `--zeo`.
fn command_config(
    config: Option<&std::path::Path>,
    file: Option<PathBuf>,
    zeo: Option<String>,
) -> Result<ServeConfig> {
    let mut config = match config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(f) = file {
        config.storage = StorageConfig::File(f);
    }
    if let Some(z) = zeo {
        config.storage = StorageConfig::Zeo(z);
    }
    Ok(config)
}

/// `bbru reindex`: a line every few batches, then the totals.
fn reindex(on: OfflineStorage) -> Result<()> {
    let report = on.with_db(|db| {
        bbru::search::reindex::reindex(db, |so_far| {
            if so_far.transactions % 50 == 0 {
                println!("bbru reindex: {} items so far", so_far.items);
            }
        })
    })??;
    println!(
        "bbru reindex: {} items indexed, {} stale entries removed, {} transactions{}",
        report.items,
        report.removed,
        report.transactions,
        if report.created { " (a new index)" } else { "" }
    );
    Ok(())
}

/// `bbru migrate`: a line per committed batch, then the totals.
fn migrate(on: OfflineStorage) -> Result<()> {
    let report = on.with_db(|db| {
        bbru::migrate::migrate(db, |so_far| {
            println!(
                "bbru migrate: {} files ({} bytes) moved into blobs so far",
                so_far.migrated, so_far.bytes
            );
        })
    })??;
    println!(
        "bbru migrate: {} files moved into blobs ({} bytes, {} transactions); {} were in blobs already",
        report.migrated, report.bytes, report.transactions, report.in_blobs
    );
    Ok(())
}

/// `bbru test`: the checks, one line each; fails (status 1) when any fails.
fn self_test(config: Option<&std::path::Path>) -> Result<ExitCode> {
    let config = match config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    let checks = bbru::selftest::run(&config);
    for check in &checks {
        match &check.outcome {
            Ok(detail) => println!("ok      {}: {detail}", check.name),
            Err(reason) => println!("FAILED  {}: {reason}", check.name),
        }
    }
    let failed = checks.iter().filter(|c| !c.passed()).count();
    println!(
        "bbru test: {} passed, {failed} failed",
        checks.len() - failed
    );
    Ok(if failed == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// `bbru serve`: process control (`--status`, `--stop-daemon`, `--daemon`), else the
/// instance itself.
fn serve_command(args: ServeArgs) -> Result<ExitCode> {
    let config = serve_config(&args)?;
    // Process control answers before anything is opened.
    if args.status {
        let status = daemon::status(&config.pid_file);
        println!("bbru: {status}");
        if let daemon::Status::Running { pid } = status
            && let Some(s) =
                bbru::status::InstanceStatus::read(&bbru::status::path_for(&config.pid_file))
                    .filter(|s| s.pid == pid)
        {
            for line in s.describe(std::time::SystemTime::now()) {
                println!("  {line}");
            }
        }
        return Ok(exit(status.exit_code()));
    }
    if args.stop_daemon {
        let outcome = daemon::stop(&config.pid_file, std::time::Duration::from_secs(30))?;
        println!("bbru: {outcome}");
        return Ok(exit(outcome.exit_code()));
    }
    let log_file = config.log_file.clone().or_else(|| {
        (args.daemon || daemon::is_daemon_child())
            .then(|| config.pid_file.with_file_name("bbru.log"))
    });
    if args.daemon && !daemon::is_daemon_child() {
        let Some(log) = log_file else {
            unreachable!("--daemon always has a log file");
        };
        for file in [&config.pid_file, &log] {
            if let Some(dir) = file.parent()
                && !dir.as_os_str().is_empty()
            {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("creating {}", dir.display()))?;
            }
        }
        let outcome = daemon::DaemonArgs::new(&config.pid_file, log).and_then(daemon::daemonize)?;
        println!("bbru: {outcome}");
        return Ok(ExitCode::SUCCESS);
    }
    daemon::init_logging(log_file.as_deref(), config.log_format, "BBRU_LOG")?;
    // `main` reports a failure on standard error; a log file gets it too (a daemon's
    // standard error goes nowhere an operator looks).
    let to_file = log_file.is_some();
    serve(args, config, log_file).inspect_err(|e| {
        if to_file {
            tracing::error!("{e:#}");
        }
    })?;
    Ok(ExitCode::SUCCESS)
}

fn hash_password() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password")?;
    let password = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        password.chars().count() >= bbru::limits::PASSWORD_CHARS_MIN,
        "the password must have {} characters or more",
        bbru::limits::PASSWORD_CHARS_MIN
    );
    println!("{}", bbru::security::password::hash(password));
    Ok(())
}

/// The instance's configuration: the file given (or the defaults), then the flags.
fn serve_config(args: &ServeArgs) -> Result<ServeConfig> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(l) = &args.listen {
        config.listen = l.clone();
    }
    if let Some(f) = &args.file {
        config.storage = StorageConfig::File(f.clone());
    }
    if let Some(z) = &args.zeo {
        config.storage = StorageConfig::Zeo(z.clone());
    }
    if let Some(url) = &args.postgres {
        config.storage = StorageConfig::Postgres(url.clone());
    }
    if let Some(s) = &args.site_config {
        config.site_config = s.clone();
    }
    if let Some(k) = &args.secret_key_file {
        config.secret_key_file = Some(k.clone());
    }
    if let Some(p) = &args.pid_file {
        config.pid_file = p.clone();
    }
    if let Some(l) = &args.log_file {
        config.log_file = Some(l.clone());
    }
    if let Some(f) = args.log_format {
        config.log_format = f;
    }
    Ok(config)
}

fn serve(args: ServeArgs, config: ServeConfig, log_file: Option<PathBuf>) -> Result<()> {
    let started_unix = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or_default();
    // Each HTTP connection is a descriptor: the connection limit, not a login's default
    // of 1024 open files, decides how many are served.
    let open_files = daemon::raise_open_files_limit();
    tracing::debug!(?open_files, "open files limit");
    // A daemon, or an instance given a pid file, holds it locked for its whole life, so
    // `--status` and `--stop-daemon` find it (and a second one cannot start on it).
    let _pid_file = if args.daemon
        || args.pid_file.is_some()
        || args.config.is_some()
        || daemon::is_daemon_child()
    {
        if let Some(dir) = config.pid_file.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        Some(daemon::PidFile::acquire(&config.pid_file)?)
    } else {
        None
    };
    if !config.site_config.exists() {
        if let Some(dir) = config.site_config.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let template = bbru::configure::site_toml(&bbru::configure::Deploy::default(), None)?;
        // Private: the bootstrap manager's password will be written in it.
        bbru::configure::write_private(&config.site_config, &template)
            .with_context(|| format!("writing {}", config.site_config.display()))?;
        tracing::info!(path = %config.site_config.display(), "wrote the site configuration from its template");
    }
    let site = SiteConfig::load(&config.site_config)?;
    let opened = bbru::startup::open_storage(&config)?;
    let storage = opened.storage.clone();
    let options = zodb::DbOptions {
        cache_objects: config.cache_objects,
        pool_size: config.connections,
        ..zodb::DbOptions::default()
    };
    let db = zodb::DB::with_options(storage.clone(), options).context("opening the database")?;
    let key_path = config.secret_key_path();
    let (key, created) = bbru::security::key::SecretKey::load_or_create(&key_path)?;
    if created {
        tracing::info!(path = %key_path.display(), "created the secret key file (keep it, and give every instance the same)");
    }
    let mut app = bbru::startup::app(db, site, &config.site_config.display().to_string(), &key)?;
    app.release = config.release.clone().unwrap_or_default();
    app.trusted_proxies = config.trusted_proxies.clone();

    app.http = config.http;
    app.conflict_retries = config.conflict_retries;
    // Bound before the runtime starts: inherited from the running release's instance
    // through the handover socket when there is one, else bound with SO_REUSEPORT.
    let bound = bbru::listen::bind(&config.listen, config.handover_socket.as_deref())
        .with_context(|| format!("listening on {}", config.listen))?;
    let inherited = bound.inherited;
    if inherited {
        tracing::info!(address = %config.listen, "took the listening socket over from the running instance");
    }
    let handover_copy = bound
        .listener
        .try_clone()
        .context("duplicating the listener")?;
    bound
        .listener
        .set_nonblocking(true)
        .context("configuring the listener")?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::from_std(bound.listener)
            .with_context(|| format!("listening on {}", config.listen))?;
        tracing::info!(address = %listener.local_addr()?, storage = %storage.name(), "serving");
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .context("installing the SIGTERM handler")?;
        let shutdown = async move {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping: no new connections; finishing the requests in flight");
        };
        if let Some(log) = log_file {
            tokio::spawn(reopen_log_on_sighup(log));
        }
        // Claimed now only when nobody live had the name; otherwise the deploy points
        // it here once this instance is healthy (or this instance claims it when the name
        // goes stale).
        let _handover = match &config.handover_socket {
            Some(path) => Some(
                bbru::listen::serve_handover(path, &handover_copy, !inherited)
                    .with_context(|| format!("serving the handover socket {}", path.display()))?,
            ),
            None => None,
        };
        drop(handover_copy);
        let _status_file = match &_pid_file {
            Some(pid_file) => {
                let path = bbru::status::path_for(pid_file.path());
                let status = bbru::status::InstanceStatus {
                    pid: std::process::id(),
                    release: config.release.clone().unwrap_or_default(),
                    address: listener.local_addr()?.to_string(),
                    storage: storage.name(),
                    started: started_unix,
                };
                status
                    .write(&path)
                    .with_context(|| format!("writing the status file {}", path.display()))?;
                Some(bbru::status::StatusFile(path))
            }
            None => None,
        };
        // Only now may `--daemon` report success: the instance listens.
        daemon::notify_ready().context("telling the parent the instance is ready")?;
        bbru::web::serve(Arc::new(app), listener, shutdown)
            .await
            .context("serving")
    });
    // Requests still running on the blocking pool after the drain timeout are database
    // work that ends by itself; the process does not wait for them.
    runtime.shutdown_timeout(std::time::Duration::from_secs(1));
    storage.close().context("closing the storage")?;
    result
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
