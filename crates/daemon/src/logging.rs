//! Log set-up shared by `bbru-zeo` and `bbru serve`: where log lines go (standard error,
//! or a log file that standard output and error are pointed at, so nothing printed is
//! lost, and that SIGHUP reopens), in which format (text for people, JSON lines for log
//! shippers), and colour only when standard error is a terminal (never ANSI codes in a
//! file, a pipe or the journal).

use std::io::IsTerminal;
use std::path::Path;

use crate::DaemonError;

/// The format of log lines (`--log-format`, `log_format` in the configuration).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// One line per event for people: time, level, target, message, fields.
    #[default]
    Text,
    /// One JSON object per line: `timestamp`, `level`, `target`, `fields` (with
    /// `message`), and `span`/`spans` when inside spans.
    Json,
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<LogFormat, String> {
        match s {
            "text" => Ok(LogFormat::Text),
            "json" => Ok(LogFormat::Json),
            other => Err(format!(
                "unknown log format {other:?}: expected \"text\" or \"json\""
            )),
        }
    }
}

impl std::fmt::Display for LogFormat {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        })
    }
}

/// Installs the process's log subscriber. With `log_file`, its directory is created and
/// standard output and error are pointed at it first. The level filter is read from the
/// environment variable `filter_env` (`RUST_LOG` syntax), `info` by default.
pub fn init_logging(
    log_file: Option<&Path>,
    format: LogFormat,
    filter_env: &str,
) -> Result<(), DaemonError> {
    if let Some(path) = log_file {
        if let Some(dir) = path.parent()
            && !dir.as_os_str().is_empty()
        {
            std::fs::create_dir_all(dir)
                .map_err(|e| DaemonError::io("create the log directory", dir, e))?;
        }
        crate::reopen_log(path)?;
    }
    let filter = tracing_subscriber::EnvFilter::try_from_env(filter_env)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.with_ansi(std::io::stderr().is_terminal()).init(),
        LogFormat::Json => builder.json().with_ansi(false).init(),
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn log_formats_parse_and_print_back() {
        for f in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(f.to_string().parse::<LogFormat>(), Ok(f));
        }
        assert!("yaml".parse::<LogFormat>().unwrap_err().contains("text"));
    }
}
