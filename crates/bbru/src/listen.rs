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
//! File descriptors travel through rustix's safe `sendmsg`/`recvmsg` wrappers, which hand
//! back an `OwnedFd`: no `unsafe` here.

use std::io::{self, IoSlice, IoSliceMut};
use std::mem::MaybeUninit;
use std::net::{SocketAddr, TcpListener, ToSocketAddrs};
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::net::{
    RecvAncillaryBuffer, RecvAncillaryMessage, RecvFlags, SendAncillaryBuffer,
    SendAncillaryMessage, SendFlags, recvmsg, sendmsg,
};

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
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
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

/// Serves `listener`'s socket on the unix socket `path` (mode 0600) from a background
/// thread, until the process exits: every connection receives it.
pub fn serve_handover(path: &Path, listener: &TcpListener) -> io::Result<()> {
    let fd: OwnedFd = listener.as_fd().try_clone_to_owned()?;
    // A previous instance's socket file is replaced: from now on this instance hands over.
    let _ = std::fs::remove_file(path);
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir)?;
    }
    let unix = UnixListener::bind(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    let path: PathBuf = path.to_owned();
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
    Ok(())
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
        serve_handover(&handover, &first.listener).unwrap();
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
}
