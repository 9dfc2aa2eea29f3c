//! What the server says, turned into events for the game: channel messages once each, history
//! pages, presence, directs, broadcasts, typing and the block list.

use protocol::Event;

use super::Session;
use crate::messages::*;
use crate::net::bridge::NetEvent;

impl Session<'_> {
    pub(super) async fn on_event(&mut self, event: Event) {
        match event {
            Event::ChatMessageReceived(message) => self.on_message(message, false).await,
            Event::History(page) => {
                if page.gap {
                    self.link
                        .sink
                        .emit(NetEvent::HistoryGap {
                            channel: page.channel.clone(),
                        })
                        .await;
                }
                for message in page.messages {
                    self.on_message(message, true).await;
                }
            }
            Event::Presence(list) => {
                self.link
                    .sink
                    .emit(NetEvent::Presence(PresenceChanged {
                        channel: list.channel,
                        change: PresenceChange::Snapshot(list.users),
                    }))
                    .await;
            }
            Event::UserJoined(change) => self.on_presence(change, true).await,
            Event::UserLeft(change) => self.on_presence(change, false).await,
            Event::DirectMessageReceived(direct) => {
                self.link
                    .sink
                    .emit(NetEvent::Direct(DirectMessageReceived {
                        id: direct.id,
                        from: direct.from,
                        username: direct.username,
                        text: direct.message,
                        ts: direct.ts,
                    }))
                    .await;
            }
            Event::Broadcast(broadcast) => {
                self.link
                    .sink
                    .emit(NetEvent::Broadcast(BroadcastReceived {
                        text: broadcast.message,
                        ts: broadcast.ts,
                        channel: broadcast.channel,
                    }))
                    .await;
            }
            Event::Pong => {}
            Event::UserTyping(typing) => {
                if !self.link.restore.channels.contains_key(&typing.channel) {
                    return;
                }
                self.link
                    .sink
                    .emit(NetEvent::Typing(ChatUserTyping {
                        channel: typing.channel,
                        user_id: typing.user_id,
                        username: typing.username,
                    }))
                    .await;
            }
            Event::BlockedUsers(list) => {
                self.link
                    .sink
                    .emit(NetEvent::BlockList(ChatBlockListChanged {
                        user_ids: list.user_ids,
                    }))
                    .await;
            }
        }
    }

    async fn on_presence(&mut self, change: protocol::PresenceChange, joined: bool) {
        if !self.link.restore.channels.contains_key(&change.channel) {
            return;
        }
        let user = protocol::PresenceUser {
            user_id: change.user_id,
            username: change.username,
        };
        let change_kind = if joined {
            PresenceChange::Joined(user)
        } else {
            PresenceChange::Left(user)
        };
        self.link
            .sink
            .emit(NetEvent::Presence(PresenceChanged {
                channel: change.channel,
                change: change_kind,
            }))
            .await;
    }

    /// A page the game asked for with `Chat::history`: older than what it has, so delivered as
    /// is (the resume point stays where it is).
    pub(super) async fn on_older_page(&mut self, page: protocol::HistoryPage) {
        if !self.link.restore.channels.contains_key(&page.channel) {
            return;
        }
        for message in page.messages {
            self.link
                .sink
                .emit(NetEvent::Message(received(message, true)))
                .await;
        }
    }

    /// Delivers a channel message once: skips it when the channel was left or the message was
    /// already seen (a replay overlapping what arrived live).
    async fn on_message(&mut self, message: protocol::ChatMessage, from_history: bool) {
        let Some(track) = self.link.restore.channels.get_mut(&message.channel) else {
            return;
        };
        if track.last_id.is_some_and(|last| message.id <= last) {
            return;
        }
        track.last_id = Some(message.id);
        self.link
            .sink
            .emit(NetEvent::Message(received(message, from_history)))
            .await;
    }
}

fn received(message: protocol::ChatMessage, from_history: bool) -> ChatMessageReceived {
    ChatMessageReceived {
        channel: message.channel,
        id: message.id,
        user_id: message.user_id,
        username: message.username,
        text: message.message,
        ts: message.ts,
        from_history,
    }
}
