//! Property tests: every protocol type survives serialisation and parsing unchanged, for any
//! content (any Unicode text, any numbers), ids order as their parts do, and no text makes a
//! parser panic.

use proptest::prelude::*;
use protocol::*;

fn text() -> impl Strategy<Value = String> {
    // Any Unicode, with the characters that need escaping in JSON over-represented.
    prop_oneof![
        any::<String>(),
        "[\"\\\\\u{0}-\u{1f}\u{2028}\u{2029}a-z😀é]{0,12}",
    ]
}

fn message_id() -> impl Strategy<Value = MessageId> {
    prop_oneof![
        (any::<u64>(), any::<u64>()).prop_map(|(ms, seq)| MessageId::new(ms, seq)),
        Just(MessageId::new(u64::MAX, u64::MAX)),
        any::<u64>().prop_map(|ms| MessageId::new(ms, u64::MAX)),
    ]
}

fn reference() -> impl Strategy<Value = Option<Ref>> {
    prop_oneof![
        Just(None),
        any::<u64>().prop_map(|n| Some(Ref::from(n))),
        any::<i64>().prop_map(|n| Some(Ref::Number(n.into()))),
        text().prop_map(|t| Some(Ref::Text(t))),
    ]
}

fn request() -> impl Strategy<Value = ClientRequest> {
    let opt_id = || proptest::option::of(message_id());
    let opt_n = || proptest::option::of(any::<u32>());
    prop_oneof![
        text().prop_map(|username| ClientRequest::SetName { username }),
        (text(), opt_n(), opt_id()).prop_map(|(channel, history, since)| ClientRequest::Join {
            channel,
            history,
            since
        }),
        text().prop_map(|channel| ClientRequest::Leave { channel }),
        (text(), text()).prop_map(|(channel, message)| ClientRequest::Message { channel, message }),
        text().prop_map(|channel| ClientRequest::Who { channel }),
        (text(), text()).prop_map(|(to, message)| ClientRequest::Direct { to, message }),
        (text(), opt_id(), opt_n()).prop_map(|(channel, before, limit)| {
            ClientRequest::History {
                channel,
                before,
                limit,
            }
        }),
        Just(ClientRequest::Ping),
        text().prop_map(|channel| ClientRequest::Typing { channel }),
        text().prop_map(|user_id| ClientRequest::Block { user_id }),
        text().prop_map(|user_id| ClientRequest::Unblock { user_id }),
        Just(ClientRequest::Blocked),
    ]
}

fn chat_message() -> impl Strategy<Value = ChatMessage> {
    (text(), text(), text(), message_id(), text(), any::<u64>()).prop_map(
        |(username, message, channel, id, user_id, ts)| ChatMessage {
            username,
            message,
            channel,
            id,
            user_id,
            ts,
        },
    )
}

fn presence_change() -> impl Strategy<Value = PresenceChange> {
    (text(), text(), proptest::option::of(text())).prop_map(|(channel, user_id, username)| {
        PresenceChange {
            channel,
            user_id,
            username,
        }
    })
}

fn event() -> impl Strategy<Value = Event> {
    let messages = proptest::collection::vec(chat_message(), 0..3);
    let users = proptest::collection::vec((text(), proptest::option::of(text())), 0..3);
    prop_oneof![
        chat_message().prop_map(Event::ChatMessageReceived),
        (text(), messages, any::<bool>(), any::<bool>()).prop_map(
            |(channel, messages, more, gap)| Event::History(HistoryPage {
                channel,
                messages,
                more,
                gap,
            })
        ),
        (text(), users).prop_map(|(channel, users)| Event::Presence(PresenceList {
            channel,
            users: users
                .into_iter()
                .map(|(user_id, username)| PresenceUser { user_id, username })
                .collect(),
        })),
        presence_change().prop_map(Event::UserJoined),
        presence_change().prop_map(Event::UserLeft),
        (text(), text(), text(), text(), any::<u64>()).prop_map(
            |(id, from, username, message, ts)| Event::DirectMessageReceived(DirectMessage {
                id,
                from,
                username,
                message,
                ts,
            })
        ),
        (text(), any::<u64>()).prop_map(|(message, ts)| Event::Broadcast(BroadcastMessage {
            message,
            ts,
            channel: None
        })),
        Just(Event::Pong),
        (text(), text(), text()).prop_map(|(channel, user_id, username)| {
            Event::UserTyping(TypingUser {
                channel,
                user_id,
                username,
            })
        }),
        proptest::collection::vec(text(), 0..4)
            .prop_map(|user_ids| Event::BlockedUsers(BlockedUsers { user_ids })),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn client_frames_round_trip(request in request(), reference in reference()) {
        let frame = ClientFrame { reference, request };
        let json = frame.to_json();
        let parsed = parse_client_frame(&json).map_err(|e| e.reply().to_json());
        prop_assert_eq!(parsed, Ok(frame), "{}", json);
    }

    #[test]
    fn events_round_trip(event in event(), reference in reference()) {
        let json = event.to_json(reference.as_ref());
        let parsed = parse_server_frame(&json).map_err(|e| e.0);
        prop_assert_eq!(parsed, Ok(ServerFrame::Event { event, reference }), "{}", json);
    }

    #[test]
    fn replies_round_trip(message in text(), reference in reference()) {
        let reply = Reply { message: message.as_str().into(), reference: reference.as_ref() };
        let json = reply.to_json();
        let parsed = parse_server_frame(&json).map_err(|e| e.0);
        prop_assert_eq!(parsed, Ok(ServerFrame::Reply { message, reference }), "{}", json);
    }

    #[test]
    fn error_replies_round_trip(
        error in text(),
        code in proptest::sample::select(ErrorCode::ALL.to_vec()),
        reference in reference(),
    ) {
        let reply = ErrorReply { error: error.as_str().into(), code, reference: reference.as_ref() };
        let json = reply.to_json();
        let parsed = parse_server_frame(&json).map_err(|e| e.0);
        prop_assert_eq!(parsed, Ok(ServerFrame::Error { error, code, reference }), "{}", json);
    }

    #[test]
    fn identity_bodies_round_trip(
        (user_id, guest_secret, auth_token, refresh_token) in (text(), text(), text(), text()),
        (a, r) in (any::<u64>(), any::<u64>()),
    ) {
        let login = LoginResponse {
            user_id: user_id.clone(),
            guest_secret,
            auth_token: auth_token.clone(),
            refresh_token: refresh_token.clone(),
            auth_token_expires_in: a,
            refresh_token_expires_in: r,
        };
        let json = serde_json::to_string(&login).unwrap();
        prop_assert_eq!(serde_json::from_str::<LoginResponse>(&json).unwrap(), login);
        let refresh = RefreshResponse {
            user_id,
            auth_token,
            refresh_token,
            auth_token_expires_in: a,
            refresh_token_expires_in: r,
        };
        let json = serde_json::to_string(&refresh).unwrap();
        prop_assert_eq!(serde_json::from_str::<RefreshResponse>(&json).unwrap(), refresh);
    }

    #[test]
    fn message_ids_round_trip_and_order(a in message_id(), b in message_id()) {
        prop_assert_eq!(a.to_string().parse::<MessageId>(), Ok(a));
        let json = serde_json::to_string(&a).unwrap();
        prop_assert_eq!(serde_json::from_str::<MessageId>(&json).unwrap(), a);
        prop_assert_eq!(a.cmp(&b), (a.ms, a.seq).cmp(&(b.ms, b.seq)));
        let next = a.successor();
        prop_assert!(next > a || a == MessageId::new(u64::MAX, u64::MAX));
        prop_assert!(!(a < b && b < next), "nothing lies between an id and its successor");
    }

    #[test]
    fn arbitrary_text_never_panics_the_parsers(input in text()) {
        let _ = parse_client_frame(&input);
        let _ = parse_server_frame(&input);
        let _ = input.parse::<MessageId>();
    }
}
