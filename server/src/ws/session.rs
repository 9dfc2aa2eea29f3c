//! One connection's task: reads client frames, writes replies and queued deliveries, pings, and
//! closes for the reasons the protocol lists (slow consumer, flooding, oversized frames, idle,
//! shutdown).

use std::num::NonZeroU32;
use std::pin::Pin;
use std::time::Duration;

use axum::extract::ws::{Message, Utf8Bytes, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::StreamExt;
use governor::{Quota, RateLimiter};
use protocol::{ErrorCode, Reply, parse_client_frame};
use tokio::time::{Instant, MissedTickBehavior, interval_at, timeout};

use super::close::{
    ReadFailure, Readable, Sink, answer_client_close, close_handshake, read_failure,
};

use crate::app::AppState;
use crate::commands::{self, Session};
use crate::error::ChatError;
use crate::hub::{BANNED, CloseReason, Outgoing, SLOW_CONSUMER};
use crate::identity::Principal;
use crate::metrics::Limit;
use crate::node::Node;

/// Queued frames written per flush, so one busy channel cannot starve reading.
const WRITE_BATCH: usize = 64;

const FLOODING: CloseReason = CloseReason {
    code: 1008,
    text: "too many frames: flooding",
    label: "flooding",
    limit: Some(Limit::FrameRate),
};
const IDLE: CloseReason = CloseReason {
    code: 1008,
    text: "no pong or frame received in time",
    label: "idle",
    limit: Some(Limit::IdleTimeout),
};

/// Serves one authenticated connection until it ends.
pub(super) async fn run(socket: WebSocket, app: AppState, principal: Principal) {
    let node = &app.node;
    let metrics = &node.metrics;
    let (handle, inbox) = node.hub.connect(principal.user_id.clone(), &app.shutdown);
    // Read after joining the hub: a mute or ban given from now on reaches the hub directly, and
    // one given before is in the engine. (The only ban check of a new connection.)
    let banned = load_standing(node, &principal.user_id).await;
    load_blocks(node, &handle).await;
    metrics.connections.inc();
    metrics.connections_total.inc();
    tracing::debug!(conn = handle.id, "connected");
    if let Err(error) = node.engine.user_online(&principal.user_id).await {
        tracing::warn!(%error, "could not record the user online");
    }

    let (mut sink, mut stream) = socket.split();
    let mut rx = inbox.rx;
    let inbox_kill = inbox.kill;
    // A kill, a moderator's or the server's shutdown: one future for the connection's life.
    let killed = inbox_kill.killed();
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

    let welcome = Reply {
        message: "Successfully connected!".into(),
        reference: None,
    };
    let mut close = match banned {
        // Refused in place of the welcome, as other connect refusals are.
        Some(text) => {
            let error = ChatError::new(ErrorCode::Forbidden, text);
            metrics.error(error.code);
            let _ = send_text(&mut sink, error.to_json(None), &app).await;
            Some(Some(BANNED))
        }
        None => match send_text(&mut sink, welcome.to_json(), &app).await {
            Ok(()) => None,
            Err(()) => Some(None),
        },
    };

    while close.is_none() {
        tokio::select! {
            reason = &mut killed => close = Some(Some(reason)),
            incoming = stream.next() => {
                last_seen = Instant::now();
                close = match incoming {
                    None => Some(None),
                    Some(Ok(Message::Close(_))) => {
                        answer_client_close(&mut sink).await;
                        Some(None)
                    }
                    Some(Ok(frame)) => {
                        // Every frame kind counts against the flood limit: pings and pongs
                        // cost a read and (for pings) a write too.
                        metrics.frames_in.inc();
                        if flood.check().is_err() {
                            Some(Some(FLOODING))
                        } else if matches!(frame, Message::Ping(_) | Message::Pong(_)) {
                            None
                        } else {
                            // First deliver what was queued before this request takes effect
                            // (e.g. the own copy of a message sent just before a `leave`).
                            let pending = write_queued(&mut sink, &mut rx, None, usize::MAX, &session, &app);
                            match interruptible(pending, killed.as_mut()).await {
                                Some(close) => Some(close),
                                None => {
                                    let replies = match frame {
                                        Message::Text(text) => handle_text(&mut session, &app, &text).await,
                                        _ => vec![binary_error(&app)],
                                    };
                                    interruptible(write_all(&mut sink, replies, &app), killed.as_mut()).await
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
            item = rx.recv() => {
                let Some(item) = item else { break };
                close = interruptible(write_queued(&mut sink, &mut rx, Some(item), WRITE_BATCH, &session, &app), killed.as_mut()).await;
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

    commands::leave_all(&mut session, node).await;
    node.hub.disconnect(&handle);
    if let Err(error) = node.engine.user_offline(&handle.user_id).await {
        tracing::warn!(%error, "could not record the user offline");
    }
    metrics.connections.dec();
    if let Some(Some(reason)) = close {
        metrics.close(reason.label);
        if let Some(limit) = reason.limit {
            metrics.limit(limit);
        }
        tracing::info!(reason = reason.label, "closing connection");
        // Say why first (e.g. a kick's reason), unless the client is too slow to read; the close
        // frame gets its own time.
        if reason != SLOW_CONSUMER {
            let drain = write_queued(&mut sink, &mut rx, None, usize::MAX, &session, &app);
            let _ = timeout(Duration::from_millis(500), drain).await;
        }
        close_handshake(&mut sink, &mut stream, (reason.code, reason.text), readable).await;
    }
    tracing::debug!(conn = handle.id, "disconnected");
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

async fn send_text(sink: &mut Sink, text: String, app: &AppState) -> Result<(), ()> {
    app.node.metrics.frames_out.inc();
    sink.send(Message::Text(text.into())).await.map_err(|_| ())
}

async fn write_all(sink: &mut Sink, replies: Vec<String>, app: &AppState) -> Result<(), ()> {
    let count = replies.len() as u64;
    for reply in replies {
        sink.feed(Message::Text(reply.into()))
            .await
            .map_err(|_| ())?;
    }
    app.node.metrics.frames_out.inc_by(count);
    sink.flush().await.map_err(|_| ())
}

/// Writes `first` and whatever else is queued (up to `batch` frames), then flushes once.
async fn write_queued(
    sink: &mut Sink,
    rx: &mut tokio::sync::mpsc::Receiver<Outgoing>,
    first: Option<Outgoing>,
    batch: usize,
    session: &Session,
    app: &AppState,
) -> Result<(), ()> {
    let mut written = 0;
    let mut next = first.or_else(|| rx.try_recv().ok());
    while let Some(item) = next.take() {
        if let Some(frame) = deliverable(item, session) {
            sink.feed(Message::Text(frame)).await.map_err(|_| ())?;
            written += 1;
        }
        if written < batch {
            next = rx.try_recv().ok();
        }
    }
    if written == 0 {
        return Ok(());
    }
    app.node.metrics.frames_out.inc_by(written as u64);
    sink.flush().await.map_err(|_| ())
}

/// The frame to write for a queued item, or none when the session must skip it: a channel
/// left since, or a message already sent as history.
fn deliverable(item: Outgoing, session: &Session) -> Option<Utf8Bytes> {
    match item {
        Outgoing::Frame(frame) => Some(frame),
        Outgoing::Channel { channel, id, frame } => {
            let joined = session.channels.get(&channel)?;
            match (id, joined.replay_until) {
                (Some(id), Some(until)) if id <= until => None,
                _ => Some(frame),
            }
        }
    }
}

/// Loads the user's mute into the hub and returns the ban text, if banned now. Reads again when
/// a mute or unmute arrived meanwhile (the read could be stale).
async fn load_standing(node: &Node, user_id: &std::sync::Arc<str>) -> Option<String> {
    for _ in 0..3 {
        let epoch = node.hub.mute_epoch();
        match node.engine.standing(user_id).await {
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
    match node.engine.blocked(&handle.user_id).await {
        Ok(blocks) => {
            handle.blocks.apply(&blocks, false);
        }
        Err(error) => tracing::warn!(%error, "could not read the user's block list"),
    }
}
