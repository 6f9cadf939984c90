//! The anchor of the web benchmark (`bench/web/run.sh`): an axum handler that
//! answers every GET with the same bytes from memory, the bytes of the page
//! `bbru serve` rendered for the measured URL (read from a file given on the
//! command line), with the same content type. It shows what the HTTP stack
//! and wrk cost on this machine without any application work, so the table
//! can say how far a page view is from it.
//!
//! ```text
//! web-anchor --listen 127.0.0.1:PORT --body page.html
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use axum::http::header;
use axum::response::IntoResponse;
use clap::Parser;

#[derive(Parser)]
#[command(about = "Serves one file's bytes from memory for every GET (the web benchmark's anchor)")]
struct Args {
    /// Address to listen on.
    #[arg(long)]
    listen: SocketAddr,
    /// The bytes to answer with.
    #[arg(long)]
    body: PathBuf,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let body = bytes::Bytes::from(
        std::fs::read(&args.body).with_context(|| format!("reading {}", args.body.display()))?,
    );
    // The same runtime as `bbru serve`: multi-threaded, one worker per core.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding {}", args.listen))?;
        let page = move || {
            let body = body.clone();
            async move { ([(header::CONTENT_TYPE, "text/html; charset=utf-8")], body).into_response() }
        };
        let app = axum::Router::new().fallback(axum::routing::get(page));
        axum::serve(listener, app).await.context("serving")
    })
}
