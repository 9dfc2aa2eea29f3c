//! The hub: frames serialised as the protocol says.

use super::*;
use protocol::{BroadcastMessage, ChatMessage, Event, PresenceChange};

#[test]
fn borrowed_frames_match_the_protocol_events() {
    let message = ChatMessage {
        username: "N".into(),
        message: "M".into(),
        channel: "C".into(),
        id: MessageId::new(1, 2),
        user_id: "u".into(),
        ts: 1,
    };
    assert_eq!(
        serialise("chat_message_received", &message),
        WsFrame::text(Event::ChatMessageReceived(message).to_json(None))
    );
    let change = PresenceChange {
        channel: "C".into(),
        user_id: "u".into(),
        username: None,
    };
    assert_eq!(
        serialise("user_left", &change),
        WsFrame::text(Event::UserLeft(change).to_json(None))
    );
    let broadcast = BroadcastMessage {
        message: "hi".into(),
        ts: 5,
        channel: Some("lobby".into()),
    };
    assert_eq!(
        serialise("broadcast", &broadcast),
        WsFrame::text(Event::Broadcast(broadcast).to_json(None))
    );
    let typing = protocol::TypingUser {
        channel: "C".into(),
        user_id: "u".into(),
        username: "N".into(),
    };
    assert_eq!(
        serialise("user_typing", &typing),
        WsFrame::text(Event::UserTyping(typing).to_json(None))
    );
}
