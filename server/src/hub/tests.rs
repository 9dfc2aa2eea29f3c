//! The hub: frames serialised as the protocol says, and the overload switch of a channel's fan-out.

use super::*;
use protocol::{BroadcastMessage, ChatMessage, Event, PresenceChange};

#[test]
fn a_channel_is_overloaded_past_half_a_thread_and_back_below_a_tenth() {
    use std::time::{Duration, Instant};
    let start = Instant::now();
    let mut load = FanOutLoad {
        since: start,
        busy: Duration::ZERO,
        overloaded: false,
    };
    let ms = Duration::from_millis;
    // Within a window nothing changes; at its end, the share of the thread decides.
    load.record(start + ms(100), ms(90));
    assert!(!load.overloaded);
    load.record(start + ms(250), ms(10));
    assert!(!load.overloaded, "40 % of a thread");
    load.record(start + ms(500), ms(150));
    assert!(load.overloaded, "60 % of a thread");
    load.record(start + ms(750), ms(50));
    assert!(load.overloaded, "queueing at 20 % stays overloaded");
    load.record(start + ms(1000), ms(20));
    assert!(!load.overloaded, "queueing at 8 %: back to direct writes");
}

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
