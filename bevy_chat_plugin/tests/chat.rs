//! Chatting through the plugin against a real server: names, channels, messages, leaving,
//! direct messages, presence, broadcasts, and errors surfaced as `ChatError`.

mod common;

use bevy_chat_plugin::*;
use common::*;

#[test]
fn two_apps_log_in_name_themselves_join_and_chat() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (file_a, file_b) = (dir.path().join("a.json"), dir.path().join("b.json"));
    let mut a = guest_app(&server.url(), &file_a);
    let mut b = guest_app(&server.url(), &file_b);

    update_pair_until(&mut a, &mut b, TIMEOUT, "both apps to connect", |a, b| {
        [a, b].iter().all(|w| {
            state(w) == ChatConnectionState::Connected
                && user_id(w).is_some()
                && rec(w).connected.len() == 1
        })
    });
    let id_a = user_id(a.world()).unwrap();
    let id_b = user_id(b.world()).unwrap();
    assert_ne!(id_a, id_b);
    for (app, id, file) in [(&a, &id_a, &file_a), (&b, &id_b, &file_b)] {
        let connected = &rec(app.world()).connected[0];
        assert_eq!(&connected.user_id, id);
        assert!(!connected.reconnect);
        let saved = saved_user_id(file).expect("guest credentials were saved");
        assert_eq!(&saved, id);
    }
    assert_eq!(
        rec(a.world()).states.last(),
        Some(&ChatConnectionState::Connected)
    );

    set_name(&mut a, "Ann");
    set_name(&mut b, "Bob");
    join(&mut a, "lobby");
    join(&mut b, "lobby");
    assert_eq!(
        rec(a.world()).joined,
        [ChatJoined {
            channel: "lobby".into(),
            rejoined: false
        }]
    );

    send(&mut a, "lobby", "hello from Ann");
    update_pair_until(
        &mut a,
        &mut b,
        TIMEOUT,
        "both to get Ann's message",
        |a, b| !rec(a).messages.is_empty() && !rec(b).messages.is_empty(),
    );
    for app in [&a, &b] {
        let messages = &rec(app.world()).messages;
        assert_eq!(messages.len(), 1, "{messages:?}");
        let m = &messages[0];
        assert_eq!(m.channel, "lobby");
        assert_eq!(m.username, "Ann");
        assert_eq!(m.user_id, id_a);
        assert_eq!(m.text, "hello from Ann");
        assert!(!m.from_history);
        assert!(m.ts > 0);
    }
    assert_eq!(rec(a.world()).messages[0].id, rec(b.world()).messages[0].id);

    let log = b.world().resource::<ChatLog>();
    let found = log.channel_lines("lobby").any(|line| {
        line.kind
            == ChatLineKind::Message {
                user_id: id_a.clone(),
                username: "Ann".into(),
                text: "hello from Ann".into(),
            }
    });
    assert!(
        found,
        "the log of lobby has the message: {:?}",
        log.channel_lines("lobby").collect::<Vec<_>>()
    );
    assert!(log.keys().contains(&ChatLogKey::channel("lobby")));
    assert!(rec(a.world()).errors.is_empty(), "{:?}", rec(a.world()));
    assert!(rec(b.world()).errors.is_empty(), "{:?}", rec(b.world()));
}

#[test]
fn a_left_channel_delivers_nothing_more() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    let mut b = guest_app(&server.url(), &dir.path().join("b.json"));
    ready_app(&mut a, "Ann", "lobby");
    ready_app(&mut b, "Bob", "lobby");

    send(&mut b, "lobby", "before leaving");
    update_pair_until(&mut a, &mut b, TIMEOUT, "the first message", |a, b| {
        rec(a).texts("lobby") == ["before leaving"] && rec(b).texts("lobby") == ["before leaving"]
    });

    chat(&mut a, |chat| chat.leave("lobby"));
    update_until(&mut a, TIMEOUT, "Left", |w| {
        rec(w).left.iter().any(|l| l.channel == "lobby")
    });
    send(&mut b, "lobby", "after leaving");
    update_until(&mut b, TIMEOUT, "B's own copy", |w| {
        rec(w).texts("lobby").contains(&"after leaving")
    });
    // A round trip through A's connection after B's message was delivered: anything the server
    // sent A for lobby would have arrived before this reply.
    join(&mut a, "other");

    assert_eq!(rec(a.world()).texts("lobby"), ["before leaving"]);
    assert_eq!(rec(a.world()).left.len(), 1);
    assert!(rec(a.world()).errors.is_empty(), "{:?}", rec(a.world()));
}

#[test]
fn server_refusals_arrive_as_chat_errors() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    wait_connected(&mut a);
    set_name(&mut a, "Ann");

    send(&mut a, "nowhere", "anyone?");
    update_until(&mut a, TIMEOUT, "an error for the message", |w| {
        !rec(w).errors.is_empty()
    });
    let error = rec(a.world()).errors[0].clone();
    assert_eq!(error.request, ChatRequest::Message);
    assert_eq!(error.code, ChatErrorCode::Server(ErrorCode::NotJoined));
    assert_eq!(error.target.as_deref(), Some("nowhere"));
    assert!(!error.message.is_empty());

    chat(&mut a, |chat| chat.set_name(""));
    update_until(&mut a, TIMEOUT, "an error for the name", |w| {
        rec(w).errors.len() == 2
    });
    let error = rec(a.world()).errors[1].clone();
    assert_eq!(error.request, ChatRequest::SetName);
    assert_eq!(error.code, ChatErrorCode::Server(ErrorCode::BadName));
    assert_eq!(error.target.as_deref(), Some(""));
    assert_eq!(rec(a.world()).names.len(), 1, "only Ann was accepted");

    // A bad channel name is refused and not kept as a channel to rejoin.
    chat(&mut a, |chat| chat.join(" spaced "));
    update_until(&mut a, TIMEOUT, "an error for the join", |w| {
        rec(w).errors.len() == 3
    });
    let error = rec(a.world()).errors[2].clone();
    assert_eq!(error.request, ChatRequest::Join);
    assert_eq!(error.code, ChatErrorCode::Server(ErrorCode::BadChannel));
    assert_eq!(error.target.as_deref(), Some(" spaced "));
    assert!(!rec(a.world()).joined(" spaced "));

    // The connection survives every refusal.
    assert_eq!(state(a.world()), ChatConnectionState::Connected);
    join(&mut a, "lobby");
    send(&mut a, "lobby", "still here");
    update_until(&mut a, TIMEOUT, "A's own message", |w| {
        rec(w).texts("lobby") == ["still here"]
    });
    assert_eq!(rec(a.world()).messages[0].username, "Ann");
}

#[test]
fn direct_messages_presence_and_broadcasts() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    let mut b = guest_app(&server.url(), &dir.path().join("b.json"));
    let id_a = ready_app(&mut a, "Ann", "lobby");
    let id_b = wait_connected(&mut b);
    set_name(&mut b, "Bob");

    let to = id_b.clone();
    chat(&mut a, move |chat| chat.direct(to, "psst, Bob"));
    update_pair_until(&mut a, &mut b, TIMEOUT, "B's direct message", |_, b| {
        !rec(b).directs.is_empty()
    });
    let direct = rec(b.world()).directs[0].clone();
    assert_eq!(direct.from, id_a);
    assert_eq!(direct.username, "Ann");
    assert_eq!(direct.text, "psst, Bob");
    assert!(!direct.id.is_empty());
    assert!(
        b.world()
            .resource::<ChatLog>()
            .lines(&ChatLogKey::Direct)
            .any(|l| matches!(&l.kind, ChatLineKind::Message { text, .. } if text == "psst, Bob"))
    );

    // B joins A's channel: A sees B arrive.
    join(&mut b, "lobby");
    update_until(&mut a, TIMEOUT, "B's arrival in A's presence", |w| {
        rec(w).presence.iter().any(|p| {
            p.channel == "lobby"
                && matches!(&p.change, PresenceChange::Joined(user) if user.user_id == id_b)
        })
    });
    let arrival = rec(a.world())
        .presence
        .iter()
        .find_map(|p| match &p.change {
            PresenceChange::Joined(user) if user.user_id == id_b => Some(user.clone()),
            _ => None,
        })
        .unwrap();
    assert_eq!(arrival.username.as_deref(), Some("Bob"));

    chat(&mut a, |chat| chat.who("lobby"));
    update_until(&mut a, TIMEOUT, "the who snapshot", |w| {
        rec(w)
            .presence
            .iter()
            .any(|p| matches!(p.change, PresenceChange::Snapshot(_)))
    });
    let users = rec(a.world())
        .presence
        .iter()
        .find_map(|p| match &p.change {
            PresenceChange::Snapshot(users) => Some(users.clone()),
            _ => None,
        })
        .unwrap();
    let mut expected = vec![
        PresenceUser {
            user_id: id_a.clone(),
            username: Some("Ann".into()),
        },
        PresenceUser {
            user_id: id_b.clone(),
            username: Some("Bob".into()),
        },
    ];
    expected.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    let mut users = users;
    users.sort_by(|x, y| x.user_id.cmp(&y.user_id));
    assert_eq!(users, expected);

    // B leaves: A sees it.
    chat(&mut b, |chat| chat.leave("lobby"));
    update_pair_until(&mut a, &mut b, TIMEOUT, "B's departure", |a, _| {
        rec(a)
            .presence
            .iter()
            .any(|p| matches!(&p.change, PresenceChange::Left(user) if user.user_id == id_b))
    });

    // An operator broadcast reaches both.
    server.broadcast("maintenance soon");
    update_pair_until(&mut a, &mut b, TIMEOUT, "the broadcast", |a, b| {
        [a, b].iter().all(|w| {
            rec(w)
                .broadcasts
                .iter()
                .any(|x| x.text == "maintenance soon")
        })
    });

    // A direct message to a user with no connection is refused.
    chat(&mut a, |chat| chat.direct("no-such-user", "hello?"));
    update_until(&mut a, TIMEOUT, "the not-found error", |w| {
        !rec(w).errors.is_empty()
    });
    let error = &rec(a.world()).errors[0];
    assert_eq!(error.request, ChatRequest::Direct);
    assert_eq!(error.code, ChatErrorCode::Server(ErrorCode::NotFound));
    assert_eq!(error.target.as_deref(), Some("no-such-user"));
}

#[test]
fn joining_twice_at_once_is_confirmed_once() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    wait_connected(&mut a);
    chat(&mut a, |chat| {
        chat.join("lobby");
        chat.join("lobby");
    });
    update_until(&mut a, TIMEOUT, "the join", |w| rec(w).joined("lobby"));
    // Joining a channel already joined is a no-op too.
    chat(&mut a, |chat| {
        chat.join("lobby");
        chat.who("lobby");
    });
    update_until(&mut a, TIMEOUT, "the who answer", |w| {
        rec(w)
            .presence
            .iter()
            .any(|p| matches!(p.change, PresenceChange::Snapshot(_)))
    });
    assert_eq!(
        rec(a.world()).joined.len(),
        1,
        "{:?}",
        rec(a.world()).joined
    );
    assert!(
        rec(a.world()).errors.is_empty(),
        "{:?}",
        rec(a.world()).errors
    );
    let own_arrivals = rec(a.world())
        .presence
        .iter()
        .filter(|p| matches!(p.change, PresenceChange::Joined(_)))
        .count();
    assert_eq!(own_arrivals, 1);
}
