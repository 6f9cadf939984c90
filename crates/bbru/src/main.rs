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

use bbru::config::{SITE_TEMPLATE, ServeConfig, SiteConfig, StorageConfig};

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
    #[arg(long)]
    zeo: Option<String>,
    /// The site configuration (overrides the configuration).
    #[arg(long)]
    site_config: Option<PathBuf>,
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("BBRU_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Serve(args) => serve(args),
        Command::HashPassword => hash_password(),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bbru: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn hash_password() -> Result<()> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("reading the password")?;
    let password = line.trim_end_matches(['\n', '\r']);
    anyhow::ensure!(
        password.len() >= 8,
        "the password must have 8 characters or more"
    );
    println!("{}", bbru::security::password::hash(password));
    Ok(())
}

fn serve(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServeConfig::load(path)?,
        None => ServeConfig::default(),
    };
    if let Some(l) = args.listen {
        config.listen = l;
    }
    if let Some(f) = args.file {
        config.storage = StorageConfig::File(f);
    }
    if let Some(z) = args.zeo {
        config.storage = StorageConfig::Zeo(z);
    }
    if let Some(s) = args.site_config {
        config.site_config = s;
    }
    if !config.site_config.exists() {
        if let Some(dir) = config.site_config.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        std::fs::write(&config.site_config, SITE_TEMPLATE)
            .with_context(|| format!("writing {}", config.site_config.display()))?;
        tracing::info!(path = %config.site_config.display(), "wrote the site configuration from its template");
    }
    let site = SiteConfig::load(&config.site_config)?;
    let storage = bbru::startup::open_storage(&config)?;
    let options = zodb::DbOptions {
        cache_objects: config.cache_objects,
        ..zodb::DbOptions::default()
    };
    let db = zodb::DB::with_options(storage.clone(), options).context("opening the database")?;
    let app = bbru::startup::app(db, site, &config.site_config.display().to_string())?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the runtime")?;
    let result = runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(&config.listen)
            .await
            .with_context(|| format!("listening on {}", config.listen))?;
        tracing::info!(address = %listener.local_addr()?, storage = %storage.name(), "serving");
        let shutdown = async {
            let mut term =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
                    .expect("SIGTERM handler");
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
            tracing::info!("stopping: finishing the requests in flight");
        };
        bbru::web::serve(Arc::new(app), listener, shutdown)
            .await
            .context("serving")
    });
    drop(runtime);
    storage.close().context("closing the storage")?;
    result
}
