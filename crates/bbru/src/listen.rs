//! The listening socket, and handing it from one release to the next.
//!
//! Two instances of two releases can listen on one port with `SO_REUSEPORT`, but a
//! listener that closes resets the connections still queued on it, so "bind the same
//! port, then stop the old one" drops requests under load.  So an instance that is given
//! a handover socket (a unix socket path outside release directories) serves its listening
//! socket there: a new instance starting on the same address asks for it and receives
//! the very same kernel socket (`SCM_RIGHTS`).  Both then accept from one queue; when
//! the old one stops, the socket stays open in the new one and nothing queued is lost.
//! Without a handover socket (or when nobody answers on it) the instance binds afresh,
//! with `SO_REUSEPORT`.
//!
//! The configured path is a *name*: a symbolic link to the socket of one live instance.
//! Each instance serves its own socket, `<name>.<pid>`, and removes it when it exits; the
//! name is replaced atomically (a new link renamed over it).  A new instance never takes
//! the name from a live one: it is pointed at the new instance only once that one is
//! healthy (`bbru deploy` does it, [`point_name`]), so a release that starts but is then
//! refused leaves the name with the live instance.  Every instance checks the name at
//! start and every [`NAME_CHECK_INTERVAL`](crate::limits::HANDOVER_NAME_CHECK_INTERVAL); when it leads to no live instance (its
//! instance exited or was killed, the machine restarted), the instance claims it.  So
//! whatever a deploy does or however it fails, some live instance answers on the name
//! within that interval.
//!
//! File descriptors travel through rustix's safe `sendmsg`/`recvmsg` wrappers, which hand
//! back an `OwnedFd`: no `unsafe` here.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

use crate::limits::{HANDOVER_ANSWER_TIMEOUT, HANDOVER_NAME_CHECK_INTERVAL as NAME_CHECK_INTERVAL};

/// A bound listener, and whether it came from the previous instance.
#[derive(Debug)]
pub struct Bound {
    pub listener: TcpListener,
    pub inherited: bool,
}

fn resolve(address: &str) -> io::Result<SocketAddr> {
    address.to_socket_addrs()?.next().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{address} resolves to nothing"),
        )
    })
}

/// Binds `address` with `SO_REUSEPORT` (and `SO_REUSEADDR`).
pub fn bind_reuseport(address: &str) -> io::Result<TcpListener> {
    let addr = resolve(address)?;
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Asks the instance serving `handover` for its listening socket.
pub fn receive(handover: &Path) -> io::Result<OwnedFd> {
    let stream = UnixStream::connect(handover)?;
    stream.set_read_timeout(Some(HANDOVER_ANSWER_TIMEOUT))?;
    let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
    let mut control = RecvAncillaryBuffer::new(&mut space);
    let mut byte = [0u8; 1];
    recvmsg(
        &stream,
        &mut [IoSliceMut::new(&mut byte)],
        &mut control,
        RecvFlags::empty(),
    )?;
    for message in control.drain() {
        if let RecvAncillaryMessage::ScmRights(mut fds) = message
            && let Some(fd) = fds.next()
        {
            return Ok(fd);
        }
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        "the handover answer carried no socket",
    ))
}

/// The listener for `address`: inherited through `handover` when an instance answers
/// there with a socket bound to the same address, otherwise bound afresh.
pub fn bind(address: &str, handover: Option<&Path>) -> io::Result<Bound> {
    if let Some(path) = handover
        && path.exists()
    {
        match receive(path) {
            Ok(fd) => {
                let listener = TcpListener::from(fd);
                let wanted = resolve(address)?;
                let got = listener.local_addr()?;
                if got == wanted || (wanted.port() == got.port() && wanted.ip().is_unspecified()) {
                    return Ok(Bound {
                        listener,
                        inherited: true,
                    });
                }
                tracing::warn!(%got, %wanted, "the handover socket serves another address; binding afresh");
            }
            Err(e) => {
                tracing::info!(path = %path.display(), error = %e, "no instance to take the socket over from; binding afresh");
            }
        }
    }
    Ok(Bound {
        listener: bind_reuseport(address)?,
        inherited: false,
    })
}

/// The socket instance `pid` serves under the handover name `name`: `<name>.<pid>`.
pub fn instance_socket(name: &Path, pid: u32) -> PathBuf {
    let mut os = name.as_os_str().to_owned();
    os.push(format!(".{pid}"));
    PathBuf::from(os)
}

/// The pid of the instance socket the name `name` links to, if it is such a link.
fn named_pid(name: &Path) -> Option<u32> {
    let target = std::fs::read_link(name).ok()?;
    let file = target.file_name()?.to_str()?;
    let stem = name.file_name()?.to_str()?;
    file.strip_prefix(stem)?.strip_prefix('.')?.parse().ok()
}

fn process_alive(pid: u32) -> bool {
    rustix::process::Pid::from_raw(pid as i32)
        .is_some_and(|p| rustix::process::test_kill_process(p).is_ok())
}

/// Whether `name` leads to a live instance: a link to an instance socket that exists and
/// whose process is alive, or (an instance of an older release, which served the name
/// itself) a socket that accepts a connection.
pub fn name_is_live(name: &Path) -> bool {
    match std::fs::symlink_metadata(name) {
        Err(_) => false,
        Ok(m) if m.file_type().is_symlink() => match named_pid(name) {
            Some(pid) => name.exists() && process_alive(pid),
            None => UnixStream::connect(name).is_ok(),
        },
        Ok(_) => UnixStream::connect(name).is_ok(),
    }
}

/// Points the handover name `name` at instance `pid`'s socket, atomically (a new link
/// renamed over the old name): from then on, the next release takes the socket from it.
pub fn point_name(name: &Path, pid: u32) -> io::Result<()> {
    let target = instance_socket(name, pid);
    if !target.exists() {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!(
                "instance {pid} serves no handover socket {}",
                target.display()
            ),
        ));
    }
    let file_name = target.file_name().ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "a handover name without a file name",
        )
    })?;
    let mut tmp = target.clone().into_os_string();
    tmp.push(".link");
    let tmp = PathBuf::from(tmp);
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(file_name, &tmp)?;
    std::fs::rename(&tmp, name)
}

/// Points `name` at instance `pid` unless it already leads to a live instance; true when
/// it was (re)pointed.
pub fn claim_if_stale(name: &Path, pid: u32) -> io::Result<bool> {
    if name_is_live(name) {
        return Ok(false);
    }
    point_name(name, pid)?;
    Ok(true)
}

/// Removes the instance sockets under `name` whose process is gone (killed with
/// SIGKILL, or the machine stopped): they would otherwise pile up, one per such instance.
fn remove_dead_sockets(name: &Path) {
    let (Some(dir), Some(stem)) = (name.parent(), name.file_name().and_then(|n| n.to_str())) else {
        return;
    };
    let dir = if dir.as_os_str().is_empty() {
        Path::new(".")
    } else {
        dir
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let file = entry.file_name();
        let pid = file
            .to_str()
            .and_then(|f| f.strip_prefix(stem)?.strip_prefix('.')?.parse::<u32>().ok());
        if let Some(pid) = pid
            && !process_alive(pid)
        {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}

/// The handover socket an instance serves; removed when dropped (at the instance's exit).
#[derive(Debug)]
pub struct Handover {
    socket: PathBuf,
    /// Tells the thread watching the name to stop.
    stop: Arc<AtomicBool>,
}

impl Drop for Handover {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = std::fs::remove_file(&self.socket);
    }
}

/// Serves `listener`'s socket on this instance's own unix socket (`<name>.<pid>`, mode
/// 0600) from a background thread until the process exits: every connection receives it.
/// The name is claimed now if `claim` (this instance bound afresh: nobody live had it) or
/// if it leads to no live instance, and checked every [`NAME_CHECK_INTERVAL`](crate::limits::HANDOVER_NAME_CHECK_INTERVAL) after.
pub fn serve_handover(name: &Path, listener: &TcpListener, claim: bool) -> io::Result<Handover> {
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    if let Some(dir) = name.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let pid = std::process::id();
    let path = instance_socket(name, pid);
    // A socket file of a process that had this pid before (killed, never cleaned up),
    // and those of other instances that are gone.
    let _ = std::fs::remove_file(&path);
    remove_dead_sockets(name);
    let unix = UnixListener::bind(&path)?;
    let stop = Arc::new(AtomicBool::new(false));
    let handover = Handover {
        socket: path.clone(),
        stop: stop.clone(),
    };
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600))?;
    if claim {
        point_name(name, pid)?;
        tracing::info!(name = %name.display(), "handover name claimed");
    } else if claim_if_stale(name, pid)? {
        tracing::info!(name = %name.display(), "handover name claimed (it led to no live instance)");
    }
    let watched: PathBuf = name.to_owned();
    std::thread::Builder::new()
        .name("handover-name".into())
        .spawn(move || {
            loop {
                std::thread::sleep(NAME_CHECK_INTERVAL);
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match claim_if_stale(&watched, pid) {
                    Ok(true) => tracing::info!(name = %watched.display(), "handover name claimed (it led to no live instance)"),
                    Ok(false) => {}
                    Err(e) => tracing::warn!(name = %watched.display(), error = %e, "claiming the handover name failed"),
                }
            }
        })?;
    std::thread::Builder::new()
        .name("handover".into())
        .spawn(move || {
            for stream in unix.incoming() {
                let Ok(stream) = stream else { continue };
                let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
                let mut control = SendAncillaryBuffer::new(&mut space);
                let fds = [fd.as_fd()];
                control.push(SendAncillaryMessage::ScmRights(&fds));
                match sendmsg(
                    &stream,
                    &[IoSlice::new(b"L")],
                    &mut control,
                    SendFlags::empty(),
                ) {
                    Ok(_) => {
                        tracing::info!(path = %path.display(), "handed the listening socket over")
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "handing the listening socket over failed")
                    }
                }
            }
        })?;
    Ok(handover)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn a_second_instance_receives_the_same_socket() {
        let dir = tempfile::tempdir().unwrap();
        let handover = dir.path().join("bbru.sock");
        let first = bind("127.0.0.1:0", Some(&handover)).unwrap();
        assert!(!first.inherited);
        let address = first.listener.local_addr().unwrap().to_string();
        let _served = serve_handover(&handover, &first.listener, true).unwrap();
        let second = bind(&address, Some(&handover)).unwrap();
        assert!(second.inherited);
        assert_eq!(
            second.listener.local_addr().unwrap(),
            first.listener.local_addr().unwrap()
        );
        // A connection queued before the first closes its copy is accepted by the second.
        let mut client = std::net::TcpStream::connect(&address).unwrap();
        drop(first);
        client.write_all(b"hi").unwrap();
        let (mut conn, _) = second.listener.accept().unwrap();
        let mut buf = [0u8; 2];
        conn.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"hi");
        // Another address than the one handed over: bind afresh.
        let other = bind("127.0.0.1:0", Some(&handover)).unwrap();
        assert!(!other.inherited);
    }

    /// After a power loss (or SIGKILL of every instance) the name links to the socket of
    /// a process that is gone: the next instance binds afresh and claims the name, and a
    /// later one takes the socket from it.
    #[test]
    fn a_stale_name_is_claimed_by_the_next_instance() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("bbru.sock");
        // A socket file nobody serves any more, under a pid that does not run.
        let dead = u32::MAX / 2;
        drop(UnixListener::bind(instance_socket(&name, dead)).unwrap());
        point_name(&name, dead).unwrap();
        assert!(!name_is_live(&name));
        let first = bind("127.0.0.1:0", Some(&name)).unwrap();
        assert!(!first.inherited, "nothing to inherit from a dead instance");
        let _served = serve_handover(&name, &first.listener, !first.inherited).unwrap();
        assert_eq!(
            std::fs::read_link(&name).unwrap(),
            PathBuf::from(format!("bbru.sock.{}", std::process::id()))
        );
        assert!(name_is_live(&name));
        assert!(
            !instance_socket(&name, dead).exists(),
            "the dead instance's socket file is cleaned up"
        );
        let address = first.listener.local_addr().unwrap().to_string();
        assert!(bind(&address, Some(&name)).unwrap().inherited);
        // A live name is left alone.
        assert!(!claim_if_stale(&name, dead).unwrap());
    }

    /// The instance's own socket goes when the instance does; the name then leads nowhere.
    #[test]
    fn the_instance_socket_is_removed_with_the_instance() {
        let dir = tempfile::tempdir().unwrap();
        let name = dir.path().join("bbru.sock");
        let first = bind("127.0.0.1:0", Some(&name)).unwrap();
        let served = serve_handover(&name, &first.listener, true).unwrap();
        assert!(instance_socket(&name, std::process::id()).exists());
        drop(served);
        assert!(!instance_socket(&name, std::process::id()).exists());
        assert!(!name_is_live(&name));
    }
}
