//! Integration tests of `bbru-zeo`: the command line, and interop with real
//! Python ZODB 6.4 on files each side wrote.

mod blobs;
mod bounds;
mod cli;
mod client;
mod client_blobs;
mod copy;
mod interop;
mod lease;
mod pg_serve;
mod postgres;
mod python_suites;
mod server;
mod tls;

use std::path::Path;
use std::process::{Command, Output};

/// Runs the built `bbru-zeo` with `args`.
pub fn bbru_zeo(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_bbru-zeo"))
        .args(args)
        .env("BBRU_LOG", "warn")
        .output()
        .expect("run bbru-zeo")
}

pub fn path_str(p: &Path) -> &str {
    p.to_str().expect("utf-8 path")
}

/// Parses JSON lines.
pub fn json_lines(text: &str) -> Vec<serde_json::Value> {
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("bad JSON line {l:?}: {e}")))
        .collect()
}
