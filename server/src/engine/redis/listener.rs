//! The node's one pub/sub connection to a single Redis: receives channel traffic, direct
//! messages and broadcasts, and after an outage reconnects, resubscribes and replays what it
//! missed from the channel streams. (On a cluster: [`super::sharded`].)

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use futures_util::StreamExt;
use protocol::MessageId;
use redis::aio::PubSubStream;
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

use super::Shared;
use super::wire::{Incoming, Wire};
use crate::engine::Delivery;

/// How often the pub/sub connection is pinged.
const LIVENESS: Duration = Duration::from_secs(5);

pub(super) async fn run(
    shared: Arc<Shared>,
    stop: CancellationToken,
    connected: oneshot::Sender<()>,
) {
    let mut connected = Some(connected);
    let mut delay = Duration::from_millis(100);
    loop {
        let opening = tokio::time::timeout(super::PUBSUB_TIMEOUT * 2, open(&shared)).await;
        match opening.unwrap_or_else(|_| {
            Err(redis::RedisError::from((
                redis::ErrorKind::Io,
                "timed out opening pub/sub",
            )))
        }) {
            Ok(mut stream) => {
                delay = Duration::from_millis(100);
                if let Some(tx) = connected.take() {
                    let _ = tx.send(());
                } else {
                    tracing::info!("Redis pub/sub reconnected; replaying what was missed");
                    if let Err(error) = super::nodes::reassert(&shared).await {
                        tracing::warn!(%error, "could not re-register presence after reconnecting");
                    }
                    replay(&shared).await;
                    if let Err(error) = shared.reload_blocks().await {
                        tracing::warn!(%error, "could not reload block lists after reconnecting");
                    }
                    shared.reload_names().await;
                }
                shared.pubsub_up.store(true, Ordering::Release);
                let mut liveness = tokio::time::interval(LIVENESS);
                liveness.tick().await;
                loop {
                    tokio::select! {
                        () = stop.cancelled() => return,
                        message = stream.next() => match message {
                            Some(message) => handle(&shared, message.get_payload_bytes()),
                            None => break,
                        },
                        _ = liveness.tick() => {
                            // A half-open connection reads nothing for ever: ping it.
                            if !alive(&shared).await {
                                break;
                            }
                        }
                    }
                }
                shared.pubsub_up.store(false, Ordering::Release);
                // Name changes published meanwhile are missed: read names until reloaded.
                shared.names_fresh.store(false, Ordering::Release);
                *shared.pubsub.lock().await = None;
                tracing::warn!("Redis pub/sub connection lost; reconnecting");
            }
            Err(error) => tracing::warn!(%error, "cannot open the Redis pub/sub connection"),
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(delay) => {}
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Whether the pub/sub connection answers a ping in time (false also when a command timed out
/// and dropped the sink).
async fn alive(shared: &Shared) -> bool {
    let mut slot = shared.pubsub.lock().await;
    let Some(sink) = slot.as_mut() else {
        return false;
    };
    let ping = sink.ping::<redis::Value>();
    match tokio::time::timeout(super::PUBSUB_TIMEOUT, ping).await {
        Ok(Ok(_)) => true,
        _ => {
            *slot = None;
            false
        }
    }
}

/// Opens the connection and subscribes everything this node needs. The sink lock is held
/// throughout, so a concurrent `subscribe` either is in the list or waits and adds itself.
async fn open(shared: &Shared) -> redis::RedisResult<PubSubStream> {
    let mut slot = shared.pubsub.lock().await;
    let client = shared
        .client
        .as_ref()
        .expect("classic pub/sub runs only with a single Redis");
    let (mut sink, stream) = client.get_async_pubsub().await?.split();
    sink.subscribe(&[shared.keys.inbox(&shared.node), shared.keys.bus()])
        .await?;
    let channels: Vec<String> = shared
        .subscribed
        .lock()
        .keys()
        .map(|c| shared.keys.channel(c))
        .collect();
    if !channels.is_empty() {
        sink.subscribe(&channels).await?;
    }
    *slot = Some(sink);
    Ok(stream)
}

/// Delivers, from the streams, what was published to this node's channels while its
/// subscription was down. Runs before the resubscribed stream is read, so the live copies of
/// the same messages are then dropped as already delivered.
async fn replay(shared: &Shared) {
    let channels: Vec<(String, Option<MessageId>)> = shared
        .subscribed
        .lock()
        .iter()
        .map(|(c, subscription)| (c.clone(), subscription.last))
        .collect();
    for (channel, last) in channels {
        match shared.read_since(&channel, last).await {
            Ok(messages) => {
                for message in messages {
                    shared.deliver_message(message);
                }
            }
            Err(error) => tracing::warn!(%error, channel, "replay after reconnect failed"),
        }
    }
}

/// Hands one pub/sub payload (classic or sharded) to the hub.
pub(super) fn handle(shared: &Shared, payload: &[u8]) {
    let Some(incoming) = Wire::decode(payload) else {
        return;
    };
    match incoming {
        Incoming::Message(message) => shared.deliver_message(message),
        Incoming::Joined(change) => {
            if shared.subscribed.lock().contains_key(&change.channel) {
                shared.sink.deliver(Delivery::UserJoined(Arc::new(change)));
            }
        }
        Incoming::Left(change) => {
            if shared.subscribed.lock().contains_key(&change.channel) {
                shared.sink.deliver(Delivery::UserLeft(Arc::new(change)));
            }
        }
        Incoming::Direct { to, message } => shared.sink.deliver(Delivery::Direct {
            to: to.into(),
            message: Arc::new(message),
        }),
        Incoming::Broadcast(message) => shared.sink.deliver(Delivery::Broadcast(Arc::new(message))),
        Incoming::Sanction { user, sanction } => shared.sink.deliver(Delivery::Sanction {
            user: Arc::from(user),
            sanction: Arc::new(sanction),
        }),
        Incoming::Typing(typing) => {
            if shared.subscribed.lock().contains_key(&typing.channel) {
                shared.sink.deliver(Delivery::Typing(Arc::new(typing)));
            }
        }
        Incoming::Name { user, name } => shared.name_changed(&user, name),
        Incoming::Node(info) => shared.sink.deliver(Delivery::Node(Arc::new(info))),
        Incoming::Blocks { user, blocks } => shared.sink.deliver(Delivery::Blocks {
            user: Arc::from(user),
            blocks: Arc::new(blocks),
            reset: false,
        }),
    }
}
