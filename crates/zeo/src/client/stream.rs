//! The byte stream of a client connection: a TCP or unix socket, or TLS over one
//! (`tls.rs`), with what `connection.rs` needs of it: connect (no Nagle on TCP), the TLS
//! handshake, clones for the reader and the writers, timeouts, and an orderly close.

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream, ToSocketAddrs};
use std::os::unix::net::UnixStream;
use std::sync::Arc;
use std::time::Duration;

use super::tls::TlsStream;
use crate::address::Address;
use crate::limits;

/// A TCP or unix socket, or TLS over one.
#[derive(Debug)]
pub(crate) enum Stream {
    Tcp(TcpStream),
    Unix(UnixStream),
    Tls(TlsStream),
}

/// How a client speaks TLS: its configuration and the settings it came from.
#[derive(Debug, Clone)]
pub(crate) struct ClientTlsConfig {
    pub config: Arc<rustls::ClientConfig>,
    pub settings: crate::tls::ClientTls,
}

impl Stream {
    pub(crate) fn connect(address: &Address) -> io::Result<Stream> {
        match address {
            Address::Unix(path) => UnixStream::connect(path).map(Stream::Unix),
            Address::Tcp(a) => {
                let timeout = Duration::from_secs(limits::CLIENT_CONNECT_TIMEOUT_SECONDS);
                let mut last = io::Error::new(
                    io::ErrorKind::AddrNotAvailable,
                    format!("{a} resolves to no address"),
                );
                for addr in a.to_socket_addrs()? {
                    match TcpStream::connect_timeout(&addr, timeout) {
                        Ok(s) => {
                            // Small request/reply frames: never wait for Nagle.
                            s.set_nodelay(true)?;
                            return Ok(Stream::Tcp(s));
                        }
                        Err(e) => last = e,
                    }
                }
                Err(last)
            }
        }
    }

    /// TLS over this socket, handshake done (bounded by the socket's read timeout).
    pub(super) fn into_tls(self, address: &Address, tls: &ClientTlsConfig) -> io::Result<Stream> {
        let host = match address {
            Address::Tcp(a) => Some(a.rsplit_once(':').map_or(a.as_str(), |(h, _)| h)),
            Address::Unix(_) => None,
        };
        let name = tls
            .settings
            .server_name(host)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        TlsStream::handshake(self, Arc::clone(&tls.config), name).map(Stream::Tls)
    }

    pub(crate) fn try_clone(&self) -> io::Result<Stream> {
        match self {
            Stream::Tcp(s) => s.try_clone().map(Stream::Tcp),
            Stream::Unix(s) => s.try_clone().map(Stream::Unix),
            Stream::Tls(s) => s.try_clone().map(Stream::Tls),
        }
    }

    pub(super) fn set_read_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_read_timeout(t),
            Stream::Unix(s) => s.set_read_timeout(t),
            Stream::Tls(s) => s.socket().set_read_timeout(t),
        }
    }

    pub(crate) fn set_write_timeout(&self, t: Option<Duration>) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.set_write_timeout(t),
            Stream::Unix(s) => s.set_write_timeout(t),
            Stream::Tls(s) => s.socket().set_write_timeout(t),
        }
    }

    /// Ends a TLS session cleanly (close_notify, so the server reads an orderly end);
    /// nothing for plain streams.  Best effort: the connection is closing anyway.
    pub(super) fn close_notify(&mut self) {
        if let Stream::Tls(s) = self {
            s.close_notify();
        }
    }

    pub(super) fn shutdown(&self) {
        // Already shut down or reset: nothing more to do.  (A TLS connection said
        // close_notify before, in `Connection::close`.)
        let _ = match self {
            Stream::Tcp(s) => s.shutdown(Shutdown::Both),
            Stream::Unix(s) => s.shutdown(Shutdown::Both),
            Stream::Tls(s) => {
                s.socket().shutdown();
                Ok(())
            }
        };
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.read(buf),
            Stream::Unix(s) => s.read(buf),
            Stream::Tls(s) => s.read(buf),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            Stream::Tcp(s) => s.write(buf),
            Stream::Unix(s) => s.write(buf),
            Stream::Tls(s) => s.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            Stream::Tcp(s) => s.flush(),
            Stream::Unix(s) => s.flush(),
            Stream::Tls(s) => s.flush(),
        }
    }
}
