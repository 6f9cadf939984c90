//! Releases on a server: `bbru deploy`, `bbru releases`, `bbru rollback` — the seed's
//! deployment procedure (steps 1 to 6) as one command that is safe to run.
//!
//! Layout under the base directory (`--base`, default `/srv/bbru`):
//!
//! ```text
//! releases/bbru-X.Y.Z/     one per release: source (+ bin/), etc/ (generated), var/bbru.pid
//! current -> releases/bbru-X.Y.Z    the live release
//! ```
//!
//! The database, the logs and the handover socket live outside release directories
//! (deploy.toml says where), so deleting a release directory loses nothing.
//!
//! `deploy` steps: unpack the archive (its single top directory must be `bbru-X.Y.Z`;
//! an existing release directory is never overwritten), take its shipped `bin/bbru` or
//! build it, configure, run `bbru test`, start it as a daemon (it takes the listening
//! socket over from the live instance through the handover socket), wait until
//! `/@@health` answers from the new release, point the handover name at it, stop the
//! previous one gracefully, switch `current`, remove the previous directory (unless
//! kept).  If any step fails, the new release is stopped and removed, and the previous
//! one keeps serving untouched, still holding the handover name (a new instance gets it
//! only once healthy).  Before all that, `recover` undoes what an interrupted deploy
//! left: the name goes back to the live release, other releases' instances are stopped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};

pub use crate::limits::DEPLOY_HEALTH_TIMEOUT_DEFAULT as HEALTH_TIMEOUT_DEFAULT;
use crate::limits::DEPLOY_ORPHAN_STOP_TIMEOUT as ORPHAN_STOP_TIMEOUT;

/// What `deploy` is given.
#[derive(Debug, Clone)]
pub struct DeployArgs {
    /// A `bbru-X.Y.Z.tar.gz` path or an http(s) URL.
    pub archive: String,
    pub base: PathBuf,
    /// The site's values (`deploy.toml`), outside release directories.
    pub deploy_file: Option<PathBuf>,
    /// Keep the previous release's directory (for `rollback`).
    pub keep_previous: bool,
    /// How long the new instance has to answer `/@@health` before it is refused.
    pub health_timeout: Duration,
}

/// Points the handover name of `config` at its running instance (once that instance is
/// healthy, or to repair the name before a deploy): from then on the next release takes
/// the listening socket from it.  An instance of an older release, which serves no socket
/// of its own, has already replaced the name itself: only a warning then.
fn hand_name_to(config: &crate::config::ServeConfig, release: &Path) -> Result<()> {
    let Some(name) = &config.handover_socket else {
        return Ok(());
    };
    let daemon::Status::Running { pid } = daemon::status(&config.pid_file) else {
        bail!("the instance of {} is not running", release.display());
    };
    if let Err(e) = crate::listen::point_name(name, pid) {
        eprintln!(
            "bbru: warning: the handover name {} was not pointed at {}: {e}",
            name.display(),
            release.display()
        );
    }
    Ok(())
}

/// Before a release change: the handover name is given back to the live release's
/// instance (whatever an interrupted deploy left it pointing at), then any other
/// release's instance still running (left by a deploy killed mid-way; it shares the
/// listening socket) is stopped gracefully.  Its directory is kept.
fn recover(base: &Path, live_release: Option<&Path>) -> Result<()> {
    let load = |r: &Path| crate::config::ServeConfig::load(&r.join("etc/serve.toml"));
    if let Some(live_release) = live_release
        && let Ok(config) = load(live_release)
        && daemon::status(&config.pid_file).is_running()
    {
        hand_name_to(&config, live_release)?;
    }
    for r in releases(base)? {
        if Some(r.as_path()) == live_release {
            continue;
        }
        let Ok(config) = load(&r) else { continue };
        if daemon::status(&config.pid_file).is_running() {
            println!(
                "bbru: stopping {}, which is not the live release but runs (left by an interrupted deploy)",
                r.display()
            );
            if let Err(e) = daemon::stop(&config.pid_file, ORPHAN_STOP_TIMEOUT) {
                eprintln!("bbru: stopping {} failed: {e}", r.display());
            }
        }
    }
    Ok(())
}

/// The release directories under `base`, oldest first.
pub fn releases(base: &Path) -> Result<Vec<PathBuf>> {
    let dir = base.join("releases");
    if !dir.exists() {
        return Ok(Vec::new());
    }
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .with_context(|| format!("reading {}", dir.display()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.is_dir()
                && p.file_name()
                    .and_then(|n| n.to_str())
                    .is_some_and(|n| n.starts_with("bbru-"))
        })
        .collect();
    out.sort_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok());
    Ok(out)
}

/// The live release, from the `current` link.
pub fn live(base: &Path) -> Option<PathBuf> {
    let target = std::fs::read_link(base.join("current")).ok()?;
    let path = if target.is_absolute() {
        target
    } else {
        base.join(target)
    };
    path.exists().then_some(path)
}

fn set_live(base: &Path, release: &Path) -> Result<()> {
    let name = release
        .file_name()
        .context("release directory without a name")?;
    let tmp = base.join(".current.tmp");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(Path::new("releases").join(name), &tmp)
        .with_context(|| format!("linking {}", tmp.display()))?;
    std::fs::rename(&tmp, base.join("current")).context("switching the current link")?;
    Ok(())
}

/// `bbru-X.Y.Z` from the archive's single top directory.
fn top_directory(archive: &[u8]) -> Result<String> {
    let mut tops = std::collections::BTreeSet::new();
    let mut reader = tar::Archive::new(flate2::read::GzDecoder::new(archive));
    for entry in reader.entries().context("reading the archive")? {
        let entry = entry.context("reading the archive")?;
        let path = entry.path().context("an entry path")?.into_owned();
        if let Some(first) = path.components().next() {
            tops.insert(first.as_os_str().to_string_lossy().into_owned());
        }
    }
    ensure!(
        tops.len() == 1,
        "the archive must hold a single top directory, it holds {tops:?}"
    );
    let top = tops.into_iter().next().unwrap_or_default();
    let version = top.strip_prefix("bbru-").unwrap_or("");
    ensure!(
        !version.is_empty()
            && version
                .split('.')
                .all(|p| !p.is_empty() && p.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')),
        "the archive's top directory is {top:?}, not bbru-X.Y.Z"
    );
    Ok(top)
}

fn read_archive(source: &str) -> Result<Vec<u8>> {
    if source.starts_with("http://") || source.starts_with("https://") {
        let response =
            reqwest::blocking::get(source).with_context(|| format!("downloading {source}"))?;
        ensure!(
            response.status().is_success(),
            "downloading {source}: {}",
            response.status()
        );
        let mut bytes = Vec::new();
        response
            .take(2 * 1024 * 1024 * 1024)
            .read_to_end(&mut bytes)
            .with_context(|| format!("downloading {source}"))?;
        Ok(bytes)
    } else {
        std::fs::read(source).with_context(|| format!("reading {source}"))
    }
}

/// Runs a release's own `bin/bbru` with `args`; its output on failure.
fn run(release: &Path, args: &[&str]) -> Result<String> {
    let output = Command::new(release.join("bin/bbru"))
        .current_dir(release)
        .args(args)
        .output()
        .with_context(|| format!("running {}/bin/bbru", release.display()))?;
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    if !output.status.success() {
        bail!(
            "`bbru {}` failed ({}):\n{}",
            args.join(" "),
            output.status,
            text.trim_end()
        );
    }
    Ok(text)
}

/// Waits until `/@@health` on `listen` answers from `release`.
fn wait_for_health(listen: &str, release: &str, timeout: Duration) -> Result<()> {
    let url = format!("http://{listen}/@@health");
    // A new connection per try: both releases accept on the one socket, and a kept-alive
    // connection would keep asking the old one.
    let client = reqwest::blocking::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .context("an HTTP client")?;
    let deadline = Instant::now() + timeout;
    let mut last = String::from("no answer");
    while Instant::now() < deadline {
        let answer = client
            .get(&url)
            .send()
            .and_then(|r| r.text())
            .map_err(|e| e.to_string())
            .and_then(|t| serde_json::from_str::<serde_json::Value>(&t).map_err(|e| e.to_string()));
        match answer {
            Ok(v) if v["release"] == release && v["status"] == "ok" => return Ok(()),
            Ok(v) => last = v.to_string(),
            Err(e) => last = e,
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("{url} did not answer from {release} within {timeout:?} (last: {last})")
}

/// Refuses a configuration that would keep something of value in the release directory
/// (deleted by the next deploy): the database and the log must live outside it.
fn outside_release(release: &Path, config: &crate::config::ServeConfig) -> Result<()> {
    let root = std::path::absolute(release)?;
    let inside = |p: &Path| std::path::absolute(p).is_ok_and(|p| p.starts_with(&root));
    if let crate::config::StorageConfig::File(f) = &config.storage {
        ensure!(
            !inside(f),
            "the database {} would be inside the release directory, which the next deploy deletes: set [serve] file (or zeo) in deploy.toml to a path outside it",
            f.display()
        );
    }
    let key = config.secret_key_path();
    ensure!(
        !inside(&key),
        "the secret key file {} would be inside the release directory: set [serve] secret_key_file in deploy.toml to a path outside it (the same for every release)",
        key.display()
    );
    match &config.log_file {
        Some(l) => ensure!(
            !inside(l),
            "the log file {} would be inside the release directory: set [serve] log_file in deploy.toml to a path outside it",
            l.display()
        ),
        None => bail!(
            "a deployed instance needs [serve] log_file in deploy.toml (outside release directories)"
        ),
    }
    if config.handover_socket.is_none() {
        eprintln!(
            "bbru: warning: no [serve] handover_socket in deploy.toml: the next release will bind with SO_REUSEPORT, \
             and requests queued on the old instance when it stops may be reset"
        );
    }
    Ok(())
}

/// One step of the progress display.
fn step(n: usize, what: &str) {
    println!("[{n}/8] {what}");
}

/// The deploy procedure; see the module documentation.
pub fn deploy(args: &DeployArgs) -> Result<PathBuf> {
    let base = &args.base;
    let releases_dir = base.join("releases");
    std::fs::create_dir_all(&releases_dir)
        .with_context(|| format!("creating {}", releases_dir.display()))?;
    let previous = live(base);
    recover(base, previous.as_deref())?;

    step(1, &format!("unpacking {}", args.archive));
    let bytes = read_archive(&args.archive)?;
    let name = top_directory(&bytes)?;
    let release = releases_dir.join(&name);
    ensure!(
        !release.exists(),
        "{} already exists: a release is never overwritten (remove it first if it is not live)",
        release.display()
    );
    let incoming = releases_dir.join(format!(".incoming-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&incoming);
    std::fs::create_dir_all(&incoming)?;
    tar::Archive::new(flate2::read::GzDecoder::new(bytes.as_slice()))
        .unpack(&incoming)
        .context("unpacking the archive")?;
    std::fs::rename(incoming.join(&name), &release).context("moving the release in place")?;
    let _ = std::fs::remove_dir_all(&incoming);

    let started = std::cell::Cell::new(false);
    let result = (|| -> Result<()> {
        let serve_toml = release.join("etc/serve.toml");
        let config = serve_toml.to_string_lossy().into_owned();
        if release.join("bin/bbru").exists() {
            step(2, "using the shipped bin/bbru");
        } else {
            step(2, "building bin/bbru (cargo build --release)");
            let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
                .current_dir(&release)
                .args(["build", "--release", "--bin", "bbru", "--bin", "bbru-zeo"])
                .status()
                .context("running cargo")?;
            ensure!(status.success(), "building the release failed");
            std::fs::create_dir_all(release.join("bin"))?;
            for bin in ["bbru", "bbru-zeo"] {
                std::fs::copy(
                    release.join("target/release").join(bin),
                    release.join("bin").join(bin),
                )
                .with_context(|| format!("installing bin/{bin}"))?;
            }
            // The build tree is large and worth nothing once the binaries are out.
            let _ = std::fs::remove_dir_all(release.join("target"));
        }
        step(3, "configuring (bbru configure)");
        let mut configure = vec!["configure", "--dir", ".", "--release", name.as_str()];
        let deploy_file;
        if let Some(d) = &args.deploy_file {
            deploy_file = std::path::absolute(d).context("the deploy.toml path")?;
            configure.extend(["-c", deploy_file.to_str().context("a UTF-8 path")?]);
        }
        run(&release, &configure)?;
        let serve = crate::config::ServeConfig::load(&serve_toml)?;
        outside_release(&release, &serve)?;
        if let (crate::config::StorageConfig::File(file), Some(prev)) = (&serve.storage, &previous)
        {
            let running = crate::config::ServeConfig::load(&prev.join("etc/serve.toml"))
                .is_ok_and(|c| daemon::status(&c.pid_file).is_running());
            ensure!(
                !running,
                "{} is an embedded database, which only one process can have open, and {} \
                 runs on it: a release change without downtime needs a ZEO server ([serve] zeo \
                 in deploy.toml); or stop the running release first",
                file.display(),
                prev.display()
            );
        }
        step(4, "testing (bbru test)");
        run(&release, &["test", "-c", &config])?;
        step(5, "starting the new release");
        run(&release, &["serve", "-c", &config, "--daemon"])?;
        started.set(true);
        let serve = crate::config::ServeConfig::load(&serve_toml)?;
        step(6, "waiting for /@@health from the new release");
        wait_for_health(&serve.listen, &name, args.health_timeout)?;
        // Healthy: only now does the next release take the socket from this one.
        hand_name_to(&serve, &release)?;
        Ok(())
    })();
    if let Err(e) = result {
        if started.get() {
            let _ = run(
                &release,
                &[
                    "serve",
                    "-c",
                    &release.join("etc/serve.toml").to_string_lossy(),
                    "--stop-daemon",
                ],
            );
        }
        let _ = std::fs::remove_dir_all(&release);
        return Err(e.context(format!(
            "deploying {name} failed; it was removed{}",
            previous
                .as_ref()
                .map(|p| format!(" and {} keeps serving", p.display()))
                .unwrap_or_default()
        )));
    }
    step(
        7,
        &match &previous {
            Some(p) => format!("stopping the previous release {}", p.display()),
            None => "no previous release to stop".to_owned(),
        },
    );
    if let Some(prev) = &previous {
        let config = prev.join("etc/serve.toml");
        if let Err(e) = run(
            prev,
            &["serve", "-c", &config.to_string_lossy(), "--stop-daemon"],
        ) {
            eprintln!("bbru: stopping {} failed: {e:#}", prev.display());
        }
    }
    set_live(base, &release)?;
    step(
        8,
        if previous.is_some() && !args.keep_previous {
            "removing the previous release"
        } else {
            "nothing to remove"
        },
    );
    if let Some(prev) = previous
        && prev != release
        && !args.keep_previous
    {
        std::fs::remove_dir_all(&prev).with_context(|| format!("removing {}", prev.display()))?;
    }
    Ok(release)
}

/// Returns to the newest other release still installed: starts it (it takes the socket
/// over), waits for its health, stops the live one, switches `current`.
pub fn rollback(base: &Path) -> Result<PathBuf> {
    let current = live(base).context("no live release (no current link)")?;
    recover(base, Some(&current))?;
    let target = releases(base)?
        .into_iter()
        .rev()
        .find(|r| *r != current)
        .context("no other release is installed to roll back to (deploy removes the previous one unless --keep-previous)")?;
    let name = target
        .file_name()
        .and_then(|n| n.to_str())
        .context("release name")?
        .to_owned();
    let config = target.join("etc/serve.toml");
    let config_str = config.to_string_lossy().into_owned();
    run(&target, &["serve", "-c", &config_str, "--daemon"])?;
    let serve = crate::config::ServeConfig::load(&config)?;
    if let Err(e) = wait_for_health(&serve.listen, &name, HEALTH_TIMEOUT_DEFAULT)
        .and_then(|()| hand_name_to(&serve, &target))
    {
        let _ = run(&target, &["serve", "-c", &config_str, "--stop-daemon"]);
        return Err(e);
    }
    let current_config = current.join("etc/serve.toml");
    run(
        &current,
        &[
            "serve",
            "-c",
            &current_config.to_string_lossy(),
            "--stop-daemon",
        ],
    )?;
    set_live(base, &target)?;
    Ok(target)
}

/// One line per installed release: its name, whether it is live, whether it runs.
pub fn describe(base: &Path) -> Result<Vec<String>> {
    let current = live(base);
    let mut lines = Vec::new();
    for r in releases(base)? {
        let name = r
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let running = crate::config::ServeConfig::load(&r.join("etc/serve.toml"))
            .map(|c| daemon::status(&c.pid_file).to_string())
            .unwrap_or_else(|_| "not configured".into());
        let marker = if current.as_ref() == Some(&r) {
            "* "
        } else {
            "  "
        };
        lines.push(format!("{marker}{name}  ({running})"));
    }
    Ok(lines)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ServeConfig, StorageConfig};

    fn archive(entries: &[&str]) -> Vec<u8> {
        let mut builder = tar::Builder::new(flate2::write::GzEncoder::new(
            Vec::new(),
            flate2::Compression::fast(),
        ));
        for path in entries {
            let mut header = tar::Header::new_gnu();
            header.set_size(1);
            header.set_mode(0o644);
            header.set_cksum();
            builder.append_data(&mut header, path, &b"x"[..]).unwrap();
        }
        builder.into_inner().unwrap().finish().unwrap()
    }

    #[test]
    fn archives_have_one_bbru_version_directory() {
        assert_eq!(
            top_directory(&archive(&["bbru-1.2.3/README.md", "bbru-1.2.3/src/a"])).unwrap(),
            "bbru-1.2.3"
        );
        let two = top_directory(&archive(&["bbru-1.2.3/a", "other/b"])).unwrap_err();
        assert!(two.to_string().contains("single top directory"), "{two}");
        let bad = top_directory(&archive(&["project-1.0/a"])).unwrap_err();
        assert!(bad.to_string().contains("not bbru-X.Y.Z"), "{bad}");
        assert!(top_directory(b"not gzip").is_err());
    }

    #[test]
    fn nothing_of_value_may_live_in_a_release_directory() {
        let release = Path::new("/srv/bbru/releases/bbru-1.0.0");
        let mut config = ServeConfig {
            storage: StorageConfig::File(release.join("var/Data.fs")),
            log_file: Some("/srv/bbru/log/bbru.log".into()),
            ..ServeConfig::default()
        };
        let err = outside_release(release, &config).unwrap_err();
        assert!(err.to_string().contains("database"), "{err}");
        config.storage = StorageConfig::Zeo("127.0.0.1:8100".into());
        // With ZEO the default key file is the release's var/secret.key.
        config.secret_key_file = Some(release.join("var/secret.key"));
        let err = outside_release(release, &config).unwrap_err();
        assert!(err.to_string().contains("secret key file"), "{err}");
        config.secret_key_file = Some("/srv/bbru/etc/secret.key".into());
        outside_release(release, &config).unwrap();
        config.log_file = Some(release.join("var/bbru.log"));
        assert!(
            outside_release(release, &config)
                .unwrap_err()
                .to_string()
                .contains("log file")
        );
        config.log_file = None;
        assert!(outside_release(release, &config).is_err());
    }
}
