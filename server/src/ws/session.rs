//! One connection's task: reads client frames, writes replies and queued deliveries, pings, and
//! closes for the reasons the protocol lists (slow consumer, flooding, oversized frames, idle,
//! shutdown).

use std::num::NonZeroU32;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::time::Duration;

use futures_util::stream::StreamExt;
use futures_util::{FutureExt, SinkExt};
use governor::{Quota, RateLimiter};
use protocol::{ErrorCode, Reply, parse_client_frame};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};
use tokio_tungstenite::tungstenite::Message;

use super::close::{ReadFailure, Readable, answer_client_close, close_handshake, read_failure};
use super::socket::Upgraded;

use crate::app::AppState;
use crate::commands::{self, Session};
use crate::error::ChatError;
use crate::hub::outbox::Flush;
use crate::hub::{BANNED, CloseReason, SLOW_CONSUMER, WsFrame};
use crate::identity::Principal;
use crate::metrics::Limit;
use crate::node::Node;

/// Queued frames written per wake-up, so one busy channel cannot starve reading.
const WRITE_BATCH: usize = 64;

const FLOODING: CloseReason = CloseReason {
    code: 1008,
    text: "too many frames: flooding",
    label: "flooding",
    limit: Some(Limit::FrameRate),
};
/// A request panicked (a bug here or in a game's hook): the connection closes, the server goes on.
const INTERNAL_ERROR: CloseReason = CloseReason {
    code: 1011,
    text: "internal error",
    label: "internal_error",
    limit: None,
};
const IDLE: CloseReason = CloseReason {
    code: 1008,
    text: "no pong or frame received in time",
    label: "idle",
    limit: Some(Limit::IdleTimeout),
};

/// Serves one authenticated connection until it ends.
pub(super) async fn run(socket: Upgraded, app: AppState, principal: Principal) {
    let node = &app.node;
    let metrics = &node.metrics;
    let (handle, kill) = node.hub.connect(
        principal.user_id.clone(),
        Some(socket.socket().clone()),
        &app.shutdown,
    );
    let mut ghost = GhostGuard {
        node: app.node.clone(),
        handle: handle.clone(),
        counted: false,
        online: false,
        armed: true,
    };
    // Deliveries wait in the outbox until the welcome is written.
    let outbox = handle.outbox.clone();
    // Read after joining the hub: a mute or ban given from now on reaches the hub directly, and
    // one given before is in the engine. (The only ban check of a new connection.)
    let banned = load_standing(node, &principal.user_id).await;
    load_blocks(node, &handle).await;
    metrics.connections.inc();
    metrics.connections_total.inc();
    ghost.counted = true;
    tracing::debug!(conn = handle.id, "connected");
    if let Err(error) = node.engine.broker.user_online(&principal.user_id).await {
        tracing::warn!(%error, "could not record the user online");
    }
    ghost.online = true;

    let websocket = socket
        .into_websocket(outbox.clone(), super::websocket_config(&node.limits))
        .await;
    let (mut sink, mut stream) = websocket.split();
    // A kill, a moderator's or the server's shutdown: one future for the connection's life.
    let killed = kill.killed();
    tokio::pin!(killed);
    let mut session = Session::new(handle.clone(), principal, node);
    let limits = &node.limits;
    let per_second = NonZeroU32::new(limits.frames_per_second).unwrap_or(NonZeroU32::MIN);
    let burst = NonZeroU32::new(limits.frame_burst).unwrap_or(per_second);
    let flood = RateLimiter::direct(Quota::per_second(per_second).allow_burst(burst));
    let mut ping = interval_at(Instant::now() + limits.ping_interval, limits.ping_interval);
    ping.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_seen = Instant::now();
    let mut readable = Readable::Yes;

    let mut close = match banned {
        // Refused in place of the welcome, as other connect refusals are (written on closing).
        Some(text) => {
            let error = ChatError::new(ErrorCode::Forbidden, text);
            metrics.error(error.code);
            outbox.push_reply(WsFrame::text(error.to_json(None)));
            Some(Some(BANNED))
        }
        None => {
            let welcome = Reply {
                message: "Successfully connected!".into(),
                reference: None,
            };
            outbox.push_reply(WsFrame::text(welcome.to_json()));
            interruptible(outbox.finish_request(), killed.as_mut()).await
        }
    };

    while close.is_none() {
        tokio::select! {
            reason = &mut killed => close = Some(Some(reason)),
            incoming = stream.next() => {
                last_seen = Instant::now();
                close = match incoming {
                    None => Some(None),
                    Some(Ok(Message::Close(_))) => {
                        // The client leaves: what waits for it is dropped, and the reply to its
                        // Close is the last frame it gets.
                        outbox.close(true);
                        answer_client_close(&mut sink, &outbox).await;
                        Some(None)
                    }
                    Some(Ok(frame)) => {
                        // Every frame kind counts against the flood limit: pings and pongs
                        // cost a read and (for pings) a write too.
                        metrics.frames_in.inc();
                        if flood.check().is_err() {
                            Some(Some(FLOODING))
                        } else if matches!(frame, Message::Ping(_) | Message::Pong(_) | Message::Frame(_)) {
                            None
                        } else {
                            // Deliveries queued before this request go out before its replies;
                            // those that arrive while it runs, after them.
                            outbox.begin_request();
                            let replies = match frame {
                                // A panic (in a game's hook, say) ends this connection only.
                                Message::Text(text) => AssertUnwindSafe(handle_text(&mut session, &app, &text)).catch_unwind().await,
                                _ => Ok(vec![binary_error(&app)]),
                            };
                            match replies {
                                Ok(replies) => {
                                    for reply in replies {
                                        outbox.push_reply(WsFrame::text(reply));
                                    }
                                    interruptible(outbox.finish_request(), killed.as_mut()).await
                                }
                                Err(_) => {
                                    tracing::error!(conn = handle.id, "a request panicked: closing the connection");
                                    Some(Some(INTERNAL_ERROR))
                                }
                            }
                        }
                    }
                    Some(Err(error)) => match read_failure(error) {
                        ReadFailure::Violation(reason) => {
                            readable = Readable::No;
                            Some(Some(reason))
                        }
                        ReadFailure::Gone => Some(None),
                    },
                };
            }
            writable = outbox.ready() => {
                // Deliveries that found the socket full (or a partial write) wait here.
                close = match writable.map(|()| outbox.try_flush(WRITE_BATCH)) {
                    Ok(Flush::Failed) | Err(_) => Some(None),
                    Ok(_) => None,
                };
            }
            _ = ping.tick() => {
                close = if last_seen.elapsed() >= limits.idle_timeout {
                    Some(Some(IDLE))
                } else {
                    interruptible(async { sink.send(Message::Ping(Default::default())).await.map_err(|_| ()) }, killed.as_mut()).await
                };
            }
        }
    }

    let reason = close.flatten();
    // Nothing from others after the close frame; a slow consumer's backlog is dropped so that
    // the close frame goes out next.
    outbox.close(reason == Some(SLOW_CONSUMER));
    let halfway = match reason {
        Some(INTERNAL_ERROR) => node.hub.channels_of(handle.id),
        _ => Vec::new(),
    };
    commands::leave_all(&mut session, node, halfway).await;
    node.hub.disconnect(&handle);
    if let Err(error) = node.engine.broker.user_offline(&handle.user_id).await {
        tracing::warn!(%error, "could not record the user offline");
    }
    ghost.armed = false;
    metrics.connections.dec();
    if let Some(reason) = reason {
        metrics.close(reason.label);
        if let Some(limit) = reason.limit {
            metrics.limit(limit);
        }
        tracing::info!(reason = reason.label, "closing connection");
        // Say why first (e.g. a kick's reason); the close frame gets its own time.
        outbox.end_request();
        let _ = timeout(Duration::from_millis(500), outbox.flush()).await;
        // What could not go out in that time is dropped: the close frame comes next.
        outbox.close(true);
        close_handshake(&mut sink, &mut stream, (reason.code, reason.text), readable).await;
    }
    tracing::debug!(conn = handle.id, "disconnected");
}

/// Takes a connection out of the hub and the engine when its task ends without doing it itself
/// (a request's panic is caught and closes the connection the normal way; this is for one
/// anywhere else, or the task dropped): no member left in its channels that nobody reads for,
/// no user online, no socket held. The engine's part runs in a task of its own.
struct GhostGuard {
    node: std::sync::Arc<Node>,
    handle: crate::hub::ConnHandle,
    /// The connection is counted in `chat_connections`.
    counted: bool,
    /// The engine was told the user is online here.
    online: bool,
    /// Still to clean up: the session did not reach its own cleanup.
    armed: bool,
}

impl Drop for GhostGuard {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if std::thread::panicking() {
            tracing::error!(
                conn = self.handle.id,
                "the connection's task panicked: closing it"
            );
        }
        let channels = self.node.hub.channels_of(self.handle.id);
        // What waits is dropped; the client is told (unless a close began already), if its
        // socket takes it now.
        let outbox = &self.handle.outbox;
        if outbox.close(true)
            && outbox.push_raw(WsFrame::close(1011, INTERNAL_ERROR.text).into_bytes())
        {
            let _ = outbox.try_flush(usize::MAX);
        }
        self.node.hub.disconnect(&self.handle);
        if self.counted {
            self.node.metrics.connections.dec();
            self.node.metrics.close(INTERNAL_ERROR.label);
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let (node, handle, online) = (self.node.clone(), self.handle.clone(), self.online);
        runtime.spawn(async move {
            let name = node.engine.users.name(&handle.user_id).await.ok().flatten();
            for channel in channels {
                node.leave(&channel, &handle, name.as_deref()).await;
            }
            let user_id = handle.user_id.clone();
            // The last reference to the socket (the channels' went with the leaves).
            drop(handle);
            if online && let Err(error) = node.engine.broker.user_offline(&user_id).await {
                tracing::warn!(%error, "could not record the user offline");
            }
        });
    }
}

async fn handle_text(session: &mut Session, app: &AppState, text: &str) -> Vec<String> {
    match parse_client_frame(text) {
        Ok(frame) => commands::handle(session, &app.node, frame).await,
        Err(error) => {
            app.node.metrics.error(error.code);
            vec![error.reply().to_json()]
        }
    }
}

fn binary_error(app: &AppState) -> String {
    let error = ChatError::new(
        ErrorCode::BadJson,
        "Error handling message: binary frames are not supported, send JSON text",
    );
    app.node.metrics.error(error.code);
    error.to_json(None)
}

/// Runs a write, unless the connection is told to close first: a client that stopped reading
/// blocks writes, and must not keep its task (and its queue) alive. Returns the close to do, if
/// any: `Some(None)` when the write failed (the peer is gone).
async fn interruptible(
    write: impl Future<Output = Result<(), ()>>,
    killed: Pin<&mut impl Future<Output = CloseReason>>,
) -> Option<Option<CloseReason>> {
    tokio::select! {
        // A write that can finish now does (e.g. the reason of a kick queued just before it).
        biased;
        result = write => result.err().map(|()| None),
        reason = killed => Some(Some(reason)),
    }
}

/// Loads the user's mute into the hub and returns the ban text, if banned now. Reads again when
/// a mute or unmute arrived meanwhile (the read could be stale).
async fn load_standing(node: &Node, user_id: &std::sync::Arc<str>) -> Option<String> {
    for _ in 0..3 {
        let epoch = node.hub.mute_epoch();
        match node.engine.moderation.standing(user_id).await {
            Ok(standing) => {
                if node.hub.load_mute(user_id, standing.muted.clone(), epoch) {
                    return standing.ban_text(crate::engine::now_ms());
                }
            }
            Err(error) => {
                tracing::warn!(%error, "could not read the user's standing");
                return None;
            }
        }
    }
    None
}

/// Reads the user's block list into the hub, unless another connection of the user here did
/// already (changes from now on reach the hub directly; a read older than one of them is not
/// applied). Without it (engine down) nothing is filtered until the next change or connection.
async fn load_blocks(node: &Node, handle: &crate::hub::ConnHandle) {
    if handle.blocks.loaded() {
        return;
    }
    match node.engine.moderation.blocked(&handle.user_id).await {
        Ok(blocks) => {
            handle.blocks.apply(&blocks, false);
        }
        Err(error) => tracing::warn!(%error, "could not read the user's block list"),
    }
}
