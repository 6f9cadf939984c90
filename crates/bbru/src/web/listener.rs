//! The listener: our accept loop over hyper's HTTP/1 connections, with every wait of a
//! connection bounded, and the graceful stop.
//!
//! - A connection ready for a request (just accepted, or done with the previous one)
//!   must send its headers within `header_read_timeout` (hyper's timer); one that has
//!   been answered is closed when idle for `keep_alive` (or `header_read_timeout`, if
//!   shorter) waiting for its next request; a body must arrive within
//!   `body_read_timeout` (`input.rs`).
//! - Stopping: stop accepting (the listening socket is closed), let the connections
//!   already accepted send their requests ([`limits::DRAIN`]), ask every connection to
//!   close once its request in flight is answered, and after `drain_timeout` close
//!   whatever is left, so a stop always ends.
//!
//! `axum::serve` offers none of these bounds, hence this loop.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::extract::ConnectInfo;
use hyper_util::rt::{TokioIo, TokioTimer};
use parking_lot::Mutex;
use tokio::time::Instant;
use tower::ServiceExt;

use super::{App, router};
use crate::config::HttpSettings;
use crate::limits;

/// The address of the client, as the views see it.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// Serves `app` on `listener` until `shutdown` resolves: then stops accepting, lets the
/// connections already accepted send their requests ([`limits::DRAIN`]), finishes the
/// requests in flight, and returns once every connection is closed or
/// `drain_timeout` has passed (the remaining connections are closed then).
pub async fn serve(
    app: Arc<App>,
    listener: tokio::net::TcpListener,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let http = app.http;
    let router = router(app);
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(http.header_read_timeout)
        .keep_alive(true);
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut connections = tokio::task::JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    connections.spawn(connection(
                        builder.clone(),
                        router.clone(),
                        stream,
                        peer,
                        http,
                        stop_rx.clone(),
                    ));
                }
                Err(e) => {
                    // Out of file descriptors and the like: wait, then go on.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
        }
    }
    drop(listener);
    let deadline = Instant::now() + http.drain_timeout;
    let drained = tokio::time::sleep(limits::DRAIN.min(http.drain_timeout));
    tokio::pin!(drained);
    let mut asked = false;
    while !connections.is_empty() {
        tokio::select! {
            () = &mut drained, if !asked => {
                asked = true;
                let _ = stop_tx.send(true);
            }
            _ = connections.join_next() => {}
            () = tokio::time::sleep_until(deadline) => {
                tracing::warn!(
                    connections = connections.len(),
                    timeout = ?http.drain_timeout,
                    "closing the connections still open after the drain timeout"
                );
                connections.abort_all();
                while connections.join_next().await.is_some() {}
                break;
            }
        }
    }
    Ok(())
}

/// When a connection last finished a request (`None` before its first), and how many
/// it has in flight.
#[derive(Debug)]
struct Activity {
    in_flight: AtomicUsize,
    last: Mutex<Option<Instant>>,
}

/// A request in flight on a connection (counted until dropped).
struct InFlight(Arc<Activity>);

impl InFlight {
    fn new(activity: &Arc<Activity>) -> InFlight {
        activity.in_flight.fetch_add(1, Ordering::SeqCst);
        InFlight(activity.clone())
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        *self.0.last.lock() = Some(Instant::now());
        self.0.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Serves one connection until it closes, it has been idle for `keep_alive` after a
/// response (a fresh connection has `header_read_timeout` for its first request), or the
/// instance stops (then its request in flight is answered first).
async fn connection(
    builder: hyper::server::conn::http1::Builder,
    router: axum::Router,
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    http: HttpSettings,
    mut stop: tokio::sync::watch::Receiver<bool>,
) {
    let activity = Arc::new(Activity {
        in_flight: AtomicUsize::new(0),
        last: Mutex::new(None),
    });
    let service = {
        let activity = activity.clone();
        hyper::service::service_fn(move |mut request: hyper::Request<hyper::body::Incoming>| {
            request.extensions_mut().insert(ConnectInfo(Peer(peer)));
            let in_flight = InFlight::new(&activity);
            let router = router.clone();
            async move {
                let response = router.oneshot(request.map(axum::body::Body::new)).await;
                drop(in_flight);
                Ok::<_, Infallible>(match response {
                    Ok(r) => r,
                    Err(never) => match never {},
                })
            }
        })
    };
    let conn = builder.serve_connection(TokioIo::new(stream), service);
    tokio::pin!(conn);
    let mut closing = false;
    loop {
        let last = *activity.last.lock();
        let idle_at = match last {
            Some(last) if activity.in_flight.load(Ordering::SeqCst) == 0 => last + http.keep_alive,
            _ => Instant::now() + http.keep_alive,
        };
        tokio::select! {
            result = conn.as_mut() => {
                if let Err(e) = result {
                    tracing::debug!(%peer, error = %e, "connection ended with an error");
                }
                return;
            }
            _ = stop.changed(), if !closing => {
                closing = true;
                conn.as_mut().graceful_shutdown();
            }
            () = tokio::time::sleep_until(idle_at), if !closing => {
                let idle = activity.in_flight.load(Ordering::SeqCst) == 0
                    && activity.last.lock().is_some_and(|l| l.elapsed() >= http.keep_alive);
                if idle {
                    // Idle (or its next request's headers still incomplete) for too long.
                    closing = true;
                    conn.as_mut().graceful_shutdown();
                }
            }
        }
    }
}
