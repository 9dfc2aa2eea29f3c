//! The WebSocket below axum: the upgrade handshake (RFC 6455 §4.2) is answered here, so that a
//! connection keeps its TCP socket after the upgrade. Deliveries are written to that socket
//! directly (see [`crate::hub::outbox`]); tungstenite reads frames from it and writes its own
//! (pings, pongs, close) through the same outbox, so that the bytes on the wire keep one order.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use axum::http::header::{self, HeaderMap, HeaderName, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode, Version};
use axum::response::{IntoResponse, Response};
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_tungstenite::WebSocketStream;
use tokio_tungstenite::tungstenite::Bytes;
use tokio_tungstenite::tungstenite::handshake::derive_accept_key;
use tokio_tungstenite::tungstenite::protocol::{Role, WebSocketConfig};
use tokio_util::task::TaskTracker;

use crate::accept::{Counted, TcpSlot};
use crate::hub::outbox::{Flush, Outbox};

/// A chat WebSocket: tungstenite's framing over [`SocketIo`].
pub(crate) type WsStream = WebSocketStream<SocketIo>;

/// A request that asks for a WebSocket, checked; answer it with [`response`](Self::response).
pub(crate) struct Handshake {
    accept: HeaderValue,
    on_upgrade: OnUpgrade,
}

/// Why a request cannot be upgraded (answered with 426 and a hint).
#[derive(Debug, thiserror::Error)]
pub(crate) enum NotWebSocket {
    /// Not `GET` over HTTP/1.1 with `Connection: upgrade`, `Upgrade: websocket`,
    /// `Sec-WebSocket-Version: 13` and a key.
    #[error("not a WebSocket request ({0})")]
    Headers(&'static str),
    /// The connection cannot be taken over (not served by this server's HTTP/1 loop).
    #[error("this connection cannot be upgraded")]
    NotUpgradable,
}

impl Handshake {
    /// Checks the request's upgrade headers (as axum's `WebSocketUpgrade` does) and takes the
    /// connection's upgrade.
    pub(crate) fn from_parts(parts: &mut Parts) -> Result<Self, NotWebSocket> {
        let headers = &parts.headers;
        if parts.version != Version::HTTP_11 || parts.method != Method::GET {
            return Err(NotWebSocket::Headers("a GET over HTTP/1.1 is required"));
        }
        if !header_has_token(headers, header::CONNECTION, "upgrade") {
            return Err(NotWebSocket::Headers("Connection: upgrade is missing"));
        }
        if !header_has_token(headers, header::UPGRADE, "websocket") {
            return Err(NotWebSocket::Headers("Upgrade: websocket is missing"));
        }
        if headers
            .get(header::SEC_WEBSOCKET_VERSION)
            .is_none_or(|v| v.as_bytes() != b"13")
        {
            return Err(NotWebSocket::Headers(
                "Sec-WebSocket-Version: 13 is required",
            ));
        }
        let key = headers
            .get(header::SEC_WEBSOCKET_KEY)
            .ok_or(NotWebSocket::Headers("Sec-WebSocket-Key is missing"))?;
        let accept = HeaderValue::from_str(&derive_accept_key(key.as_bytes()))
            .map_err(|_| NotWebSocket::Headers("bad Sec-WebSocket-Key"))?;
        let on_upgrade = parts
            .extensions
            .remove::<OnUpgrade>()
            .ok_or(NotWebSocket::NotUpgradable)?;
        Ok(Self { accept, on_upgrade })
    }

    /// The `101 Switching Protocols` answer; `connected` then runs on `tasks` with the socket
    /// once hyper hands it over (after the answer is written).
    pub(crate) fn response<F, Run>(self, tasks: &TaskTracker, connected: F) -> Response
    where
        F: FnOnce(Upgraded) -> Run + Send + 'static,
        Run: Future<Output = ()> + Send + 'static,
    {
        let Self { accept, on_upgrade } = self;
        tasks.spawn(async move {
            match take_socket(on_upgrade).await {
                Ok(socket) => connected(socket).await,
                Err(error) => tracing::debug!(%error, "WebSocket upgrade failed"),
            }
        });
        (
            StatusCode::SWITCHING_PROTOCOLS,
            [
                (header::CONNECTION, HeaderValue::from_static("upgrade")),
                (header::UPGRADE, HeaderValue::from_static("websocket")),
                (header::SEC_WEBSOCKET_ACCEPT, accept),
            ],
        )
            .into_response()
    }
}

fn header_has_token(headers: &HeaderMap, name: HeaderName, token: &str) -> bool {
    headers.get_all(name).iter().any(|value| {
        value
            .as_bytes()
            .split(|&b| b == b',')
            .any(|part| part.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
    })
}

/// A connection after the upgrade: its socket, what hyper read past the handshake, and its
/// place among open TCP connections.
pub(crate) struct Upgraded {
    socket: Arc<TcpStream>,
    read_past: Vec<u8>,
    slot: TcpSlot,
}

impl Upgraded {
    /// The socket, shared with the connection's outbox.
    pub(crate) fn socket(&self) -> &Arc<TcpStream> {
        &self.socket
    }

    /// Runs tungstenite over the socket, writing through `outbox` (made for [`socket`](Self::socket)).
    pub(crate) async fn into_websocket(
        self,
        outbox: Arc<Outbox>,
        config: WebSocketConfig,
    ) -> WsStream {
        let io = SocketIo {
            socket: self.socket,
            outbox,
            _slot: self.slot,
        };
        WebSocketStream::from_partially_read(io, self.read_past, Role::Server, Some(config)).await
    }
}

async fn take_socket(on_upgrade: OnUpgrade) -> Result<Upgraded, io::Error> {
    let upgraded = on_upgrade.await.map_err(io::Error::other)?;
    let parts = upgraded
        .downcast::<TokioIo<Counted<TcpStream>>>()
        .map_err(|_| io::Error::other("the upgraded connection is not a TCP stream"))?;
    let (stream, slot) = parts.io.into_inner().into_parts();
    Ok(Upgraded {
        socket: Arc::new(stream),
        read_past: parts.read_buf.to_vec(),
        slot,
    })
}

/// tungstenite's stream: reads from the socket; writes go to the connection's outbox, behind
/// whatever waits there, and a flush writes them out.
pub(crate) struct SocketIo {
    socket: Arc<TcpStream>,
    outbox: Arc<Outbox>,
    /// Held while the socket is open: given back when the connection ends.
    _slot: TcpSlot,
}

impl AsyncRead for SocketIo {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        loop {
            ready!(self.socket.poll_read_ready(cx))?;
            match self.socket.try_read(buf.initialize_unfilled()) {
                Ok(read) => {
                    buf.advance(read);
                    return Poll::Ready(Ok(()));
                }
                // The readiness was stale (cleared now): poll again to register.
                Err(error) if error.kind() == io::ErrorKind::WouldBlock => {}
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
    }
}

impl AsyncWrite for SocketIo {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        // Taken whole, so that a frame is never split by a delivery written in between.
        let bytes = Bytes::copy_from_slice(buf);
        loop {
            if self.outbox.push_raw(bytes.clone()) {
                return Poll::Ready(Ok(buf.len()));
            }
            match self.outbox.try_flush(usize::MAX) {
                Flush::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Flush::Blocked => ready!(self.outbox.poll_writable(cx))?,
                Flush::Done | Flush::More => {}
            }
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            match self.outbox.try_flush(usize::MAX) {
                Flush::Done => return Poll::Ready(Ok(())),
                Flush::More => {}
                Flush::Failed => return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into())),
                Flush::Blocked => ready!(self.outbox.poll_writable(cx))?,
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.poll_flush(cx)
    }
}
