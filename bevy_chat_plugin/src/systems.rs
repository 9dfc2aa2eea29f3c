//! The two systems that bridge ECS and the network thread.

use bevy::ecs::system::SystemParam;
use bevy::prelude::*;

use crate::api::ChatOutbox;
use crate::auth::ChatAuth;
use crate::blocks::ChatBlockList;
use crate::log::{ChatLine, ChatLineKind, ChatLog, ChatLogKey};
use crate::messages::*;
use crate::net::{GameEnd, NetEvent};
use crate::state::ChatConnectionState;
use crate::typing::ChatTyping;

/// The network thread's handle.
#[derive(Resource)]
pub(crate) struct ChatNet(pub GameEnd);

/// Every message the receive system writes.
#[derive(SystemParam)]
pub(crate) struct ChatWriters<'w> {
    messages: MessageWriter<'w, ChatMessageReceived>,
    directs: MessageWriter<'w, DirectMessageReceived>,
    broadcasts: MessageWriter<'w, BroadcastReceived>,
    joined: MessageWriter<'w, ChatJoined>,
    left: MessageWriter<'w, ChatLeft>,
    names: MessageWriter<'w, NameSet>,
    presence: MessageWriter<'w, PresenceChanged>,
    errors: MessageWriter<'w, ChatError>,
    connected: MessageWriter<'w, ChatConnected>,
    disconnected: MessageWriter<'w, ChatDisconnected>,
    typing: MessageWriter<'w, ChatUserTyping>,
    block_list: MessageWriter<'w, ChatBlockListChanged>,
}

/// `PreUpdate`: drains the network thread's events into Bevy messages, the log and the state.
/// Never blocks; allocates nothing when there is nothing to read.
pub(crate) fn receive(
    net: Res<ChatNet>,
    mut out: ChatWriters,
    mut log: ResMut<ChatLog>,
    mut auth: ResMut<ChatAuth>,
    mut state: ResMut<ChatConnectionState>,
    mut blocked: ResMut<ChatBlockList>,
    (time, mut typists): (Res<Time<Real>>, ResMut<ChatTyping>),
) {
    // Typing kept here rather than in a system of its own: every system costs the executor
    // several µs a frame (`cargo bench -p bevy_chat_plugin --bench frame_time`).
    let now = time.elapsed();
    if typists.any() && typists.bypass_change_detection().expire(now) {
        typists.set_changed();
    }
    let Some(first) = net.0.try_recv() else {
        return;
    };
    // Only the last state of the frame is applied, so that a change and back within one frame
    // is no change at all.
    let mut new_state = None;
    let mut next = Some(first);
    while let Some(event) = next {
        next = net.0.try_recv();
        match event {
            NetEvent::State(s) => new_state = Some(s),
            NetEvent::LoggedIn { user_id } => auth.user_id = Some(user_id),
            NetEvent::Connected(connected) => {
                let text = if connected.reconnect {
                    "Reconnected"
                } else {
                    "Connected"
                };
                log.system(&ChatLogKey::System, text);
                if !connected.user_id.is_empty() {
                    auth.user_id = Some(connected.user_id.clone());
                }
                out.connected.write(connected);
            }
            NetEvent::Disconnected(disconnected) => {
                log.system(
                    &ChatLogKey::System,
                    format!("Disconnected: {}", disconnected.reason),
                );
                out.disconnected.write(disconnected);
            }
            NetEvent::Message(message) => {
                if !message.from_history && typists.is_typing(&message.channel, &message.user_id) {
                    typists.stopped(&message.channel, &message.user_id);
                }
                log.push_to_channel(
                    &message.channel,
                    ChatLine {
                        id: Some(message.id),
                        ts: message.ts,
                        kind: ChatLineKind::Message {
                            user_id: message.user_id.clone(),
                            username: message.username.clone(),
                            text: message.text.clone(),
                        },
                    },
                );
                out.messages.write(message);
            }
            NetEvent::Direct(direct) => {
                log.push(
                    &ChatLogKey::Direct,
                    ChatLine {
                        id: None,
                        ts: direct.ts,
                        kind: ChatLineKind::Message {
                            user_id: direct.from.clone(),
                            username: direct.username.clone(),
                            text: direct.text.clone(),
                        },
                    },
                );
                out.directs.write(direct);
            }
            NetEvent::Broadcast(broadcast) => {
                // An announcement to one channel goes in that channel's log.
                let key = broadcast
                    .channel
                    .clone()
                    .map_or(ChatLogKey::System, ChatLogKey::Channel);
                log.system(&key, format!("Announcement: {}", broadcast.text));
                out.broadcasts.write(broadcast);
            }
            NetEvent::Joined(joined) => {
                if !joined.rejoined {
                    log.system(
                        &ChatLogKey::channel(&joined.channel),
                        format!("You joined {}", joined.channel),
                    );
                }
                out.joined.write(joined);
            }
            NetEvent::Left(left) => {
                if typists.any() {
                    typists.forget(&left.channel);
                }
                log.system(
                    &ChatLogKey::channel(&left.channel),
                    format!("You left {}", left.channel),
                );
                out.left.write(left);
            }
            NetEvent::NameSet(name) => {
                log.system(
                    &ChatLogKey::System,
                    format!("Your name is now {}", name.username),
                );
                out.names.write(name);
            }
            NetEvent::Presence(presence) => {
                let me = auth.user_id.as_deref();
                let line = match &presence.change {
                    // Our own arrival is already logged as "You joined".
                    PresenceChange::Joined(user) if Some(user.user_id.as_str()) == me => None,
                    PresenceChange::Joined(user) => Some(format!("{} joined", display(user))),
                    PresenceChange::Left(user) => Some(format!("{} left", display(user))),
                    PresenceChange::Snapshot(_) => None,
                };
                if let Some(line) = line {
                    log.system(&ChatLogKey::channel(&presence.channel), line);
                }
                out.presence.write(presence);
            }
            NetEvent::HistoryGap { channel } => {
                log.system(
                    &ChatLogKey::Channel(channel),
                    "Some earlier messages are no longer available",
                );
            }
            NetEvent::Typing(typing) => {
                typists.started(&typing, now);
                out.typing.write(typing);
            }
            NetEvent::BlockList(list) => {
                blocked.set(list.user_ids.clone());
                out.block_list.write(list);
            }
            // A refused `typing` is not news for the log (the player sees why when sending).
            NetEvent::Error(error) if error.request == ChatRequest::Typing => {
                out.errors.write(error);
            }
            NetEvent::Error(error) => {
                let key = match &error.target {
                    Some(target) if error.request.is_channel_request() => {
                        ChatLogKey::channel(target)
                    }
                    _ => ChatLogKey::System,
                };
                log.system(&key, format!("Error: {}", error.message));
                out.errors.write(error);
            }
        }
    }
    // There is room in the event queue again.
    net.0.drained();
    if let Some(new_state) = new_state {
        state.set_if_neq(new_state);
    }
}

fn display(user: &protocol::PresenceUser) -> &str {
    user.username.as_deref().unwrap_or(&user.user_id)
}

/// `PostUpdate`: hands this frame's commands to the network thread. A command that does not fit
/// in the queue is dropped and reported as [`ChatErrorCode::QueueFull`].
pub(crate) fn send(
    net: Res<ChatNet>,
    mut outbox: ResMut<ChatOutbox>,
    mut errors: MessageWriter<ChatError>,
) {
    if outbox.commands.is_empty() {
        return;
    }
    for command in outbox.commands.drain(..) {
        if let Err(command) = net.0.try_send(command) {
            errors.write(ChatError {
                request: command.request(),
                target: command.target(),
                code: ChatErrorCode::QueueFull,
                message: "too many chat commands at once; this one was dropped".into(),
            });
        }
    }
    net.0.wake();
}

/// Why the chat could not start (the plugin then runs without a network thread).
#[derive(Resource)]
pub(crate) struct StartFailure {
    pub reason: String,
    pub reported: bool,
}

/// `PreUpdate` when chat could not start: says why once, as a [`ChatError`] and a log line.
pub(crate) fn report_failure(
    mut failure: ResMut<StartFailure>,
    mut log: ResMut<ChatLog>,
    mut errors: MessageWriter<ChatError>,
) {
    if failure.reported {
        return;
    }
    failure.reported = true;
    log.system(
        &ChatLogKey::System,
        format!("Chat is off: {}", failure.reason),
    );
    errors.write(ChatError {
        request: ChatRequest::Connect,
        target: None,
        code: ChatErrorCode::NotStarted,
        message: failure.reason.clone(),
    });
}

/// `PostUpdate` when chat could not start: every command is answered with
/// [`ChatErrorCode::NotStarted`].
pub(crate) fn refuse_commands(
    failure: Res<StartFailure>,
    mut outbox: ResMut<ChatOutbox>,
    mut errors: MessageWriter<ChatError>,
) {
    for command in outbox.commands.drain(..) {
        errors.write(ChatError {
            request: command.request(),
            target: command.target(),
            code: ChatErrorCode::NotStarted,
            message: format!("chat is off: {}", failure.reason),
        });
    }
}
