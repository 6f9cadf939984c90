//! The listener: serves the router on a TCP socket and stops gracefully (stop accepting,
//! drain, finish the requests in flight).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use super::{App, router};
use crate::limits;

/// The address of the client, as the views see it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// A TCP listener that stops accepting (and drops its socket) when told, without
/// closing the connections it accepted.
struct Stoppable {
    inner: Option<tokio::net::TcpListener>,
    stop: tokio::sync::watch::Receiver<bool>,
    local: SocketAddr,
}

impl axum::serve::Listener for Stoppable {
    type Io = tokio::net::TcpStream;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let Some(listener) = &self.inner else {
                // Stopped: never accept again (the server is draining).
                std::future::pending::<()>().await;
                continue;
            };
            let stop = &mut self.stop;
            let stopped = async {
                loop {
                    if *stop.borrow_and_update() {
                        return;
                    }
                    if stop.changed().await.is_err() {
                        std::future::pending::<()>().await;
                    }
                }
            };
            tokio::select! {
                _ = stopped => {
                    self.inner = None;
                }
                accepted = listener.accept() => match accepted {
                    Ok(pair) => return pair,
                    Err(e) => {
                        // Out of file descriptors and the like: wait, then go on.
                        tracing::warn!(error = %e, "accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                    }
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, Stoppable>> for Peer {
    fn connect_info(stream: axum::serve::IncomingStream<'_, Stoppable>) -> Self {
        Peer(*stream.remote_addr())
    }
}

/// Serves `app` on `listener` until `shutdown` resolves: then stops accepting, lets the
/// connections already accepted send their requests ([`limits::DRAIN`]), and finishes every
/// request in flight before returning.
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let local = listener.local_addr()?;
    let listener = Stoppable {
        inner: Some(listener),
        stop: stop_rx,
        local,
    };
    let graceful = async move {
        shutdown.await;
        let _ = stop_tx.send(true);
        tokio::time::sleep(limits::DRAIN).await;
    };
    axum::serve(
        listener,
        router(app).into_make_service_with_connect_info::<Peer>(),
    )
    .with_graceful_shutdown(graceful)
    .await
}
