//! The WebSocket endpoint: authenticate on upgrade, then run the connection's session.

mod session;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{RawQuery, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use protocol::{ErrorCode, ErrorReply};

use crate::app::AppState;
use tracing::Instrument;

use crate::identity::AuthError;

/// Read buffer of a connection: chat frames are small, and tungstenite zero-fills the free part
/// of this buffer before every read attempt (fanout: 1 KiB gave ~8 % more deliveries/s than
/// 4 KiB, see docs/BENCHMARKS.md). Larger frames still work: the buffer grows to the frame.
const READ_BUFFER: usize = 1024;
/// Bytes buffered before tungstenite writes (every batch is flushed anyway).
const WRITE_BUFFER: usize = 8 * 1024;

/// `GET /?auth_token=...` (and `/ws`): upgrades to the chat WebSocket.
///
/// As with the seed, a bad or missing token still upgrades: the client reads the error on the
/// socket, then the server closes it (with 1008 and a reason; the seed sends no code).
pub async fn upgrade(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    ws: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(_) => {
            return (
                StatusCode::UPGRADE_REQUIRED,
                "bevy chat server: connect with a WebSocket client to /?auth_token=TOKEN\n",
            )
                .into_response();
        }
    };
    let token = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(key, _)| key == "auth_token")
            .map(|(_, value)| value.into_owned())
            .filter(|value| !value.is_empty())
    });
    let verdict = match token {
        None => Err(AuthError::Missing),
        Some(token) => app.identity.verify(&token).await,
    };
    let limits = &app.node.limits;
    let tracker = app.tasks.clone();
    // Chat frames are small: tungstenite's 128 KiB default buffers would cost ~256 KiB of
    // memory per connection. Larger frames still work (the buffers grow), up to the limit.
    ws.read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER)
        .max_message_size(limits.max_frame_bytes)
        .max_frame_size(limits.max_frame_bytes)
        .on_upgrade(move |socket| {
            tracker.track_future(async move {
                match verdict {
                    Ok(principal) => {
                        let span = tracing::info_span!("conn", user = %principal.user_id);
                        session::run(socket, app, principal).instrument(span).await
                    }
                    Err(error) => refuse(socket, &app, error).await,
                }
            })
        })
}

/// Sends the seed's auth error, then closes with 1008.
async fn refuse(mut socket: WebSocket, app: &AppState, error: AuthError) {
    let code = match &error {
        AuthError::Missing => ErrorCode::AuthRequired,
        AuthError::Invalid(detail) => {
            tracing::info!(%detail, "refused a WebSocket token");
            ErrorCode::InvalidToken
        }
    };
    app.node.metrics.error(code);
    app.node.metrics.close("auth");
    let text = error.to_string();
    let reply = ErrorReply {
        error: text.as_str().into(),
        code,
        reference: None,
    };
    let _ = socket.send(Message::Text(reply.to_json().into())).await;
    let _ = socket
        .send(Message::Close(Some(CloseFrame {
            code: 1008,
            reason: text.into(),
        })))
        .await;
}
