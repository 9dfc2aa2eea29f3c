//! The WebSocket endpoint: authenticate on upgrade, then run the connection's session.

mod close;
mod session;
mod socket;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::Extension;
use axum::extract::{ConnectInfo, RawQuery, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use protocol::{ErrorCode, ErrorReply};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tracing::Instrument;

use crate::app::AppState;
use crate::config::Limits;
use crate::guard::ConnectionSlot;
use crate::hub::{Outbox, WsFrame};
use crate::identity::AuthError;
use crate::metrics::Limit;
use socket::{Handshake, NotWebSocket, Upgraded};

/// Read buffer of a connection: chat frames are small, and tungstenite zero-fills the free part
/// of this buffer before every read attempt (fanout: 1 KiB gave ~8 % more deliveries/s than
/// 4 KiB, see docs/BENCHMARKS.md). Larger frames still work: the buffer grows to the frame.
const READ_BUFFER: usize = 1024;

/// tungstenite's settings for a chat connection. Its write buffer only ever holds its own
/// frames (pings, pongs, close), which go to the outbox at once.
fn websocket_config(limits: &Limits) -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(0)
        .max_message_size(Some(limits.max_frame_bytes))
        .max_frame_size(Some(limits.max_frame_bytes))
}

/// `GET /?auth_token=...` (and `/ws`): upgrades to the chat WebSocket.
///
/// As with the seed, a bad or missing token still upgrades: the client reads the error on the
/// socket, then the server closes it (with 1008 and a reason; the seed sends no code).
pub async fn upgrade(
    State(app): State<AppState>,
    RawQuery(query): RawQuery,
    connect: Option<Extension<ConnectInfo<SocketAddr>>>,
    request: Request,
) -> Response {
    let (mut parts, _body) = request.into_parts();
    let headers = &parts.headers;
    if !app.guard.origin_allowed(headers) {
        app.node.metrics.limit(Limit::Origin);
        return (
            StatusCode::FORBIDDEN,
            "bevy chat server: this origin may not connect (see --allowed-origin)\n",
        )
            .into_response();
    }
    let ip = app.guard.client_ip(headers, connect.map(|c| c.0.0));
    let handshake = match Handshake::from_parts(&mut parts) {
        Ok(handshake) => handshake,
        Err(error @ NotWebSocket::Headers(_)) => {
            // RFC 9110 §15.5.22 and RFC 6455 §4.2.2: a 426 names the protocol to upgrade to,
            // and the WebSocket version this server speaks.
            return (
                StatusCode::UPGRADE_REQUIRED,
                [
                    (header::CONNECTION, "upgrade"),
                    (header::UPGRADE, "websocket"),
                    (header::SEC_WEBSOCKET_VERSION, "13"),
                ],
                format!(
                    "bevy chat server: connect with a WebSocket client to /?auth_token=TOKEN ({error})\n"
                ),
            )
                .into_response();
        }
        Err(error @ NotWebSocket::NotUpgradable) => {
            tracing::error!(%error, "a WebSocket request arrived on a connection that cannot be upgraded");
            return (StatusCode::INTERNAL_SERVER_ERROR, format!("{error}\n")).into_response();
        }
    };
    let token = query.as_deref().and_then(|q| {
        form_urlencoded::parse(q.as_bytes())
            .find(|(key, _)| key == "auth_token")
            .map(|(_, value)| value.into_owned())
            .filter(|value| !value.is_empty())
    });
    let verdict = match token {
        None => Err(Refusal::Auth(AuthError::Missing)),
        Some(token) => match app.identity.verify(&token).await {
            Err(error) => Err(Refusal::Auth(error)),
            Ok(principal) => {
                take_slots(&app, ip, &principal.user_id).map(|slots| (principal, slots))
            }
        },
    };
    let tasks = app.tasks.clone();
    handshake.response(&tasks, move |socket| async move {
        match verdict {
            Ok((principal, _slots)) => {
                let span = tracing::info_span!("conn", user = %principal.user_id);
                session::run(socket, app, principal).instrument(span).await
            }
            Err(refusal) => refuse(socket, &app, refusal).await,
        }
    })
}

/// Why a WebSocket is refused right after the upgrade.
enum Refusal {
    /// No token, or a bad one.
    Auth(AuthError),
    /// The address or the user has too many connections open.
    TooMany(&'static str),
}

/// The connection slots a session holds while it runs (per address, per user).
type Slots = (
    Option<ConnectionSlot<std::net::IpAddr>>,
    ConnectionSlot<String>,
);

/// Counts the connection against its address and its user, or refuses it.
fn take_slots(app: &AppState, ip: Option<std::net::IpAddr>, user: &str) -> Result<Slots, Refusal> {
    let guard = &app.guard;
    let ip_slot = match ip {
        None => None,
        Some(ip) => match guard.per_ip.try_acquire(crate::guard::limit_key(ip)) {
            Some(slot) => Some(slot),
            None => {
                app.node.metrics.limit(Limit::ConnectionsPerIp);
                tracing::info!(%ip, "too many connections from one address");
                return Err(Refusal::TooMany("Too many connections from your address"));
            }
        },
    };
    match guard.per_user.try_acquire(user.to_owned()) {
        Some(user_slot) => Ok((ip_slot, user_slot)),
        None => {
            app.node.metrics.limit(Limit::ConnectionsPerUser);
            tracing::info!(user, "too many connections for one user");
            Err(Refusal::TooMany("Too many connections for this user"))
        }
    }
}

/// Sends the error (the seed's texts for auth errors), then closes with 1008.
async fn refuse(socket: Upgraded, app: &AppState, refusal: Refusal) {
    let (code, text) = match refusal {
        Refusal::Auth(error) => {
            let code = match &error {
                AuthError::Missing => ErrorCode::AuthRequired,
                AuthError::Invalid(detail) => {
                    tracing::info!(%detail, "refused a WebSocket token");
                    ErrorCode::InvalidToken
                }
            };
            app.node.metrics.close("auth");
            (code, error.to_string())
        }
        Refusal::TooMany(text) => {
            app.node.metrics.close("too_many_connections");
            (ErrorCode::TooManyConnections, text.to_owned())
        }
    };
    app.node.metrics.error(code);
    let reply = ErrorReply {
        error: text.as_str().into(),
        code,
        reference: None,
    };
    let metrics = &app.node.metrics;
    let outbox = Arc::new(Outbox::new(
        Some(socket.socket().clone()),
        1,
        metrics.frames_out.clone(),
    ));
    outbox.push_reply(WsFrame::text(reply.to_json()));
    let websocket = socket
        .into_websocket(outbox.clone(), websocket_config(&app.node.limits))
        .await;
    let (mut sink, mut stream) = websocket.split();
    if outbox.flush().await.is_ok() {
        close::close_handshake(&mut sink, &mut stream, (1008, &text), close::Readable::Yes).await;
    }
}
