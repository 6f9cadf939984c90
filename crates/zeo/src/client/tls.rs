//! The client's TLS stream: a blocking socket with a `rustls` client connection over
//! it, shared between the connection's reader thread and its writers.
//!
//! The client's design (see `connection.rs`) reads on one thread and writes on the
//! callers' threads, each with its own handle on the socket.  A TLS connection is one
//! state machine, so the handles share it behind a mutex, held only to feed it bytes
//! or take bytes out, never across a socket read or write: a writer blocked on a
//! server that does not read must not stop the reader, whose reading is what lets the
//! server go on.  Writers are already serialised (the connection's writer mutex), so
//! the records leave in the order they were sealed.  Whatever the reader's side makes
//! the connection want to send (a key update the server asks for) leaves with the next
//! write; a ZEO client writes again soon (every call), and nothing waits for it.
//!
//! Hand-written because `rustls::StreamOwned` owns its socket (one handle), and an
//! async TLS stream would need a runtime in this blocking client.

use std::io::{self, Read, Write};
use std::sync::Arc;

use parking_lot::Mutex;
use rustls::ClientConnection;
use rustls_pki_types::ServerName;

use super::stream::Stream;

/// One handle on a TLS connection (see the module doc).
#[derive(Debug)]
pub(crate) struct TlsStream {
    socket: Box<Stream>,
    tls: Arc<Mutex<ClientConnection>>,
    /// Bytes read from the socket that `tls` has not taken yet (the reading handle's).
    raw: Vec<u8>,
    /// Where socket reads land (the reading handle's; allocated at its first read).
    chunk: Vec<u8>,
}

impl TlsStream {
    /// Runs the TLS handshake over `socket` (its read timeout bounds each wait).
    pub(crate) fn handshake(
        mut socket: Stream,
        config: Arc<rustls::ClientConfig>,
        server_name: ServerName<'static>,
    ) -> io::Result<TlsStream> {
        let mut tls = ClientConnection::new(config, server_name).map_err(io::Error::other)?;
        while tls.is_handshaking() {
            let (read, _) = tls.complete_io(&mut socket)?;
            if read == 0 && tls.is_handshaking() && !tls.wants_write() {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "the server closed the connection during the TLS handshake",
                ));
            }
        }
        Ok(TlsStream {
            socket: Box::new(socket),
            tls: Arc::new(Mutex::new(tls)),
            raw: Vec::new(),
            chunk: Vec::new(),
        })
    }

    /// Another handle on the same connection, for writing or shutting down (the
    /// reading stays with this one, which holds any bytes read ahead).
    pub(crate) fn try_clone(&self) -> io::Result<TlsStream> {
        Ok(TlsStream {
            socket: Box::new(self.socket.try_clone()?),
            tls: Arc::clone(&self.tls),
            raw: Vec::new(),
            chunk: Vec::new(),
        })
    }

    pub(crate) fn socket(&self) -> &Stream {
        &self.socket
    }

    /// Sends the close_notify alert, waiting at most
    /// `limits::CLIENT_CLOSE_NOTIFY_WAIT_MILLIS` for the socket to take it.
    pub(crate) fn close_notify(&mut self) {
        let mut sealed = Vec::new();
        {
            let mut tls = self.tls.lock();
            tls.send_close_notify();
            while tls.wants_write() {
                if tls.write_tls(&mut sealed).is_err() {
                    break;
                }
            }
        }
        let wait = crate::limits::CLIENT_CLOSE_NOTIFY_WAIT_MILLIS;
        let _ = self
            .socket
            .set_write_timeout(Some(std::time::Duration::from_millis(wait)));
        let _ = self.socket.write_all(&sealed);
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            {
                let mut tls = self.tls.lock();
                match tls.reader().read(buf) {
                    // 0: the server said close_notify.
                    Ok(n) => return Ok(n),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(e) => return Err(e),
                }
                if !self.raw.is_empty() {
                    let n = tls.read_tls(&mut self.raw.as_slice())?;
                    if n == 0 {
                        return Err(io::Error::other("the TLS connection took no bytes"));
                    }
                    self.raw.drain(..n);
                    tls.process_new_packets()
                        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                    continue;
                }
            }
            if self.chunk.is_empty() {
                // As the plain reader's reads (`connection::read_frame`).
                self.chunk = vec![0u8; 64 * 1024];
            }
            let n = self.socket.read(&mut self.chunk)?;
            if n == 0 {
                // Tell rustls of the end: the next read says whether it was clean.
                let mut tls = self.tls.lock();
                tls.read_tls(&mut io::empty())?;
                tls.process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                continue;
            }
            self.raw
                .extend_from_slice(self.chunk.get(..n).unwrap_or_default());
        }
    }
}

impl Write for TlsStream {
    /// Seals all of `buf` and writes it, a bounded piece at a time.
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let mut sealed = Vec::new();
        let mut taken = 0;
        loop {
            sealed.clear();
            {
                let mut tls = self.tls.lock();
                if let Some(rest) = buf.get(taken..)
                    && !rest.is_empty()
                {
                    taken += tls.writer().write(rest)?;
                }
                while tls.wants_write() {
                    tls.write_tls(&mut sealed)?;
                }
            }
            if sealed.is_empty() {
                return if taken >= buf.len() {
                    Ok(buf.len())
                } else {
                    Err(io::ErrorKind::WriteZero.into())
                };
            }
            self.socket.write_all(&sealed)?;
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.socket.flush()
    }
}
