//! The Python ZODB 6.4 / ZEO 6.2 environment the interop tests run.
//!
//! [`python`] is `$BBRU_PYTHON` if set, otherwise the venv that
//! `tools/python-env.sh` creates (once per process; pinned by
//! `tools/python-requirements.txt`). The helper scripts live in
//! `tests/python/`. A missing or broken Python is a test failure (panic),
//! never a skip.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

/// The repository root (two levels above this crate's manifest).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .nth(2)
        .expect("CARGO_MANIFEST_DIR is <repo>/crates/test-support")
        .to_path_buf()
}

/// The Python interpreter that has ZODB and ZEO installed.
///
/// # Panics
/// If `tools/python-env.sh` fails (no `python3`, PyPI unreachable, ...).
pub fn python() -> PathBuf {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON
        .get_or_init(|| {
            if let Some(p) = std::env::var_os("BBRU_PYTHON") {
                return PathBuf::from(p);
            }
            let env_sh = repo_root().join("tools/python-env.sh");
            let out = Command::new("bash")
                .arg(&env_sh)
                .output()
                .unwrap_or_else(|e| panic!("cannot run bash {}: {e}", env_sh.display()));
            let stdout = String::from_utf8_lossy(&out.stdout);
            match stdout.lines().last().map(str::trim) {
                Some(last) if out.status.success() && !last.is_empty() => PathBuf::from(last),
                _ => panic!(
                    "{} failed ({}); the interop tests need Python ZODB \
                     (or set BBRU_PYTHON to a python that has ZODB 6.4 and ZEO 6.2)\n\
                     --- stderr ---\n{}\n--- stdout ---\n{stdout}",
                    env_sh.display(),
                    out.status,
                    String::from_utf8_lossy(&out.stderr),
                ),
            }
        })
        .clone()
}

/// Path of `tests/python/<name>`.
pub fn script(name: &str) -> PathBuf {
    repo_root().join("tests/python").join(name)
}

/// Runs `python tests/python/<script_name> args...` and returns its output,
/// whatever the exit code.
pub fn run(script_name: &str, args: &[&OsStr]) -> Output {
    output(command().arg(script(script_name)).args(args), script_name)
}

/// Like [`run`], but panics (showing exit code, stderr and stdout) unless
/// the script exits 0; returns its stdout.
pub fn run_ok(script_name: &str, args: &[&OsStr]) -> String {
    let out = run(script_name, args);
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    if !out.status.success() {
        panic!(
            "python {script_name} {args:?} failed ({})\n--- stderr ---\n{}\n--- stdout ---\n{stdout}",
            out.status,
            String::from_utf8_lossy(&out.stderr),
        );
    }
    stdout
}

/// Runs `python -m <module> args...` (e.g. `ZODB.scripts.fstest FILE`) and
/// returns its output, whatever the exit code.
pub fn run_module(module: &str, args: &[&OsStr]) -> Output {
    output(command().arg("-m").arg(module).args(args), module)
}

/// A command for the ZODB python, with UTF-8 stdio whatever the locale.
fn command() -> Command {
    let mut cmd = Command::new(python());
    cmd.env("PYTHONUTF8", "1");
    cmd
}

fn output(cmd: &mut Command, what: &str) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot start {} for {what}: {e}", python().display()))
}
