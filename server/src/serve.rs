//! The accept loop: one task per TCP connection, served by hyper's HTTP/1 with upgrades.
//!
//! Written out (rather than `axum::serve`) for what a public server needs: a deadline for the
//! request head (a client trickling header bytes cannot hold a connection), the peer address
//! for per-address limits (`ConnectInfo`), `TCP_NODELAY`, and accept errors (e.g. out of file
//! descriptors) that back off instead of spinning, and limits on open TCP connections checked
//! at accept (see [`crate::accept`]): a connection past them is closed before any byte is read.

use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::add_extension::AddExtension;

use crate::accept::{AcceptLimits, Counted};
use crate::config::Limits;
use crate::metrics::{Limit, Metrics};

/// Back-off after an accept error that is not about one connection (e.g. `EMFILE`).
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Accepts and serves connections until `stop` is cancelled; then asks every HTTP connection
/// still open to finish its request (upgraded WebSockets are no longer HTTP: their sessions
/// close them). Connection tasks run on `tasks`, which shutdown waits for.
pub(crate) async fn serve(
    listener: TcpListener,
    router: Router,
    limits: &Limits,
    admission: AcceptLimits,
    metrics: std::sync::Arc<Metrics>,
    stop: CancellationToken,
    tasks: TaskTracker,
) {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .keep_alive(true);
    loop {
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(error) if is_per_connection(&error) => continue,
                Err(error) => {
                    tracing::warn!(%error, "accept failed; backing off");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
            () = stop.cancelled() => break,
        };
        // Past a limit the socket is closed at once (dropped): no request is read.
        let slot = match admission.admit(peer.ip()) {
            Ok(slot) => slot,
            Err(limit) => {
                metrics.limit(limit);
                tracing::debug!(%peer, limit = limit.as_str(), "connection refused at accept");
                continue;
            }
        };
        // Chat frames are small and latency-bound: never let Nagle hold them back.
        if let Err(error) = stream.set_nodelay(true) {
            tracing::debug!(%error, "could not set TCP_NODELAY");
        }
        // A capped send buffer makes a client that stops reading fill its bounded outgoing
        // queue (and be closed as too slow) instead of parking megabytes in the kernel.
        if limits.socket_send_buffer > 0
            && let Err(error) =
                socket2::SockRef::from(&stream).set_send_buffer_size(limits.socket_send_buffer)
        {
            tracing::debug!(%error, "could not set SO_SNDBUF");
        }
        let service = AddExtension::new(router.clone(), ConnectInfo(peer));
        let connection = http
            .serve_connection(
                TokioIo::new(Counted::new(stream, slot)),
                TowerToHyperService::new(service),
            )
            .with_upgrades();
        let stop = stop.clone();
        let metrics = metrics.clone();
        tasks.spawn(async move {
            tokio::pin!(connection);
            let result = tokio::select! {
                result = connection.as_mut() => result,
                () = stop.cancelled() => {
                    connection.as_mut().graceful_shutdown();
                    connection.await
                }
            };
            if let Err(error) = result {
                // Also counts keep-alive connections that stayed idle that long: hyper times
                // out the wait for the next request head the same way.
                if error.is_timeout() {
                    metrics.limit(Limit::HeaderTimeout);
                }
                tracing::debug!(%error, %peer, "HTTP connection ended with an error");
            }
        });
    }
}

/// Accept errors that concern only the connection being accepted.
fn is_per_connection(error: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        error.kind(),
        ConnectionRefused | ConnectionAborted | ConnectionReset
    )
}
