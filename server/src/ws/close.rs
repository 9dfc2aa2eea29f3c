//! The WebSocket closing handshake (RFC 6455 §7): say why, then wait, bounded, for the client's
//! Close before the socket goes.
//!
//! A socket closed while its receive buffer still holds unread client data makes the kernel
//! answer with a TCP reset, and a reset also throws away what was written but not yet
//! delivered: the close frame and the replies before it. A flooding client would then see
//! "connection reset" instead of its errors and a 1008, and could not tell a kick from a network
//! fault. So after its Close the server keeps reading and discarding until the client's Close or
//! the end of the stream, bounded in time and bytes; only then does the socket close.

use std::time::Duration;

use futures_util::SinkExt;
use futures_util::stream::{SplitSink, SplitStream, StreamExt};
use tokio::time::{Instant, sleep_until, timeout, timeout_at};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

use super::socket::WsStream;
use crate::hub::{CloseReason, Outbox};
use crate::metrics::Limit;

/// tungstenite's writing half of a connection (its own frames: pings, close).
pub(super) type Sink = SplitSink<WsStream, Message>;
/// The reading half of a connection.
pub(super) type Stream = SplitStream<WsStream>;

/// How long the close frame (and what is still buffered before it) may take to go out.
pub(super) const CLOSE_WRITE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long the server waits for the client's Close after sending its own.
pub(super) const CLOSE_DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
/// Client data read and discarded while waiting for its Close; past it the socket closes.
pub(super) const CLOSE_DRAIN_BYTES: usize = 256 * 1024;

/// Invalid UTF-8 in a text frame (RFC 6455 §8.1).
pub(super) const BAD_UTF8: CloseReason = CloseReason {
    code: 1007,
    text: "invalid UTF-8 in a text frame",
    label: "bad_utf8",
    limit: None,
};
/// A frame that breaks RFC 6455: unmasked, reserved bits or opcodes, bad fragmentation.
pub(super) const PROTOCOL_ERROR: CloseReason = CloseReason {
    code: 1002,
    text: "WebSocket protocol error",
    label: "protocol_error",
    limit: None,
};
/// A frame or message over `--max-frame-bytes`.
pub(super) const TOO_LARGE: CloseReason = CloseReason {
    code: 1009,
    text: "frame too large",
    label: "too_large",
    limit: Some(Limit::FrameSize),
};

/// What a read error means for the connection.
pub(super) enum ReadFailure {
    /// The client broke the protocol: close with this reason. The stream cannot be read any
    /// further (after an oversized frame header it would buffer the whole claimed length).
    Violation(CloseReason),
    /// The connection is gone (reset, end of stream, I/O error): nothing can be said.
    Gone,
}

/// Classifies a read error.
pub(super) fn read_failure(error: tokio_tungstenite::tungstenite::Error) -> ReadFailure {
    use tokio_tungstenite::tungstenite::Error as WsError;
    match error {
        WsError::Capacity(_) => ReadFailure::Violation(TOO_LARGE),
        WsError::Utf8(detail) => {
            tracing::debug!(%detail, "invalid UTF-8 from the client");
            ReadFailure::Violation(BAD_UTF8)
        }
        WsError::Protocol(problem) => {
            use tokio_tungstenite::tungstenite::error::ProtocolError;
            if matches!(problem, ProtocolError::ResetWithoutClosingHandshake) {
                return ReadFailure::Gone;
            }
            tracing::debug!(%problem, "WebSocket protocol error from the client");
            ReadFailure::Violation(PROTOCOL_ERROR)
        }
        _ => ReadFailure::Gone,
    }
}

/// Whether the client's side may still be read while closing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Readable {
    /// Read and discard until the client's Close.
    Yes,
    /// A read failed: reading on could misparse or over-buffer. Keep the socket open (unread)
    /// for the drain time, so the close frame reaches the client before any reset.
    No,
}

/// Sends a Close with `code` and `text`, then waits (bounded) for the client's Close or the end
/// of the stream.
pub(super) async fn close_handshake(
    sink: &mut Sink,
    stream: &mut Stream,
    (code, text): (u16, &str),
    readable: Readable,
) {
    let frame = Message::Close(Some(CloseFrame {
        code: code.into(),
        reason: text.into(),
    }));
    match timeout(CLOSE_WRITE_TIMEOUT, sink.send(frame)).await {
        Ok(Ok(())) => {}
        // The client is gone, or never reads: nothing it could still receive.
        Ok(Err(_)) | Err(_) => return,
    }
    let deadline = Instant::now() + CLOSE_DRAIN_TIMEOUT;
    if readable == Readable::No {
        sleep_until(deadline).await;
        return;
    }
    let mut discarded = 0usize;
    loop {
        match timeout_at(deadline, stream.next()).await {
            // Time is up, the client closed too, or the stream ended.
            Err(_) | Ok(None) | Ok(Some(Ok(Message::Close(_)))) => return,
            Ok(Some(Ok(message))) => {
                discarded += message_len(&message);
                if discarded > CLOSE_DRAIN_BYTES {
                    tracing::debug!(discarded, "client kept sending after the close");
                    return;
                }
            }
            Ok(Some(Err(_))) => {
                sleep_until(deadline).await;
                return;
            }
        }
    }
}

/// After the client's own Close: write tungstenite's reply to it, bounded in time. (tungstenite
/// hands the reply to the outbox but, the connection being closed, does not flush it.)
pub(super) async fn answer_client_close(sink: &mut Sink, outbox: &Outbox) {
    let _ = timeout(CLOSE_WRITE_TIMEOUT, async {
        let _ = sink.flush().await;
        outbox.flush().await
    })
    .await;
}

fn message_len(message: &Message) -> usize {
    match message {
        Message::Text(text) => text.len(),
        Message::Binary(data) | Message::Ping(data) | Message::Pong(data) => data.len(),
        Message::Close(_) => 0,
        Message::Frame(frame) => frame.len(),
    }
}
