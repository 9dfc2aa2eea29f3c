//! Reconnects: the server restarting, and a network blip resumed with `since`.

mod common;

use bevy::prelude::*;
use bevy_chat_plugin::*;
use common::net::Proxy;
use common::*;

fn reconnecting(world: &World) -> bool {
    state(world) == ChatConnectionState::Reconnecting
        && rec(world).disconnected.iter().any(|d| d.will_reconnect)
}

/// The texts received in `channel` after the first `skip` messages.
fn texts_after(world: &World, skip: usize) -> Vec<String> {
    rec(world).messages[skip..]
        .iter()
        .map(|m| m.text.clone())
        .collect()
}

#[test]
fn both_apps_come_back_after_a_server_restart_and_miss_nothing() {
    let mut server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    let mut b = guest_app(&server.url(), &dir.path().join("b.json"));
    let id_a = ready_app(&mut a, "Ann", "lobby");
    let id_b = ready_app(&mut b, "Bob", "lobby");

    send(&mut b, "lobby", "before the restart");
    update_pair_until(&mut a, &mut b, TIMEOUT, "the first message", |a, b| {
        rec(a).texts("lobby") == ["before the restart"]
            && rec(b).texts("lobby") == ["before the restart"]
    });

    server.stop();
    update_pair_until(
        &mut a,
        &mut b,
        TIMEOUT,
        "both to lose the server",
        |a, b| reconnecting(a) && reconnecting(b),
    );
    for app in [&a, &b] {
        let gone = &rec(app.world()).disconnected[0];
        assert!(gone.will_reconnect);
        assert!(gone.reason.contains("1001"), "{gone:?}");
    }

    server.restart();
    update_until(&mut b, TIMEOUT, "B to reconnect and rejoin", |w| {
        state(w) == ChatConnectionState::Connected && rec(w).rejoined("lobby")
    });
    assert!(rec(b.world()).connected.iter().any(|c| c.reconnect));
    // The name was applied again (the restarted server forgot it).
    assert_eq!(rec(b.world()).names.len(), 2, "{:?}", rec(b.world()).names);

    for text in ["x1", "x2", "x3"] {
        send(&mut b, "lobby", text);
    }
    update_until(&mut b, TIMEOUT, "B's own copies", |w| {
        texts_after(w, 1) == ["x1", "x2", "x3"]
    });
    // A gets them live or from history, whichever way its reconnect raced B's messages.
    update_until(&mut a, TIMEOUT, "A to get the three messages", |w| {
        state(w) == ChatConnectionState::Connected
            && rec(w).rejoined("lobby")
            && texts_after(w, 1).len() >= 3
    });
    // A round trip on A's new connection: a stray duplicate would have arrived before it.
    chat(&mut a, |chat| chat.who("lobby"));
    update_until(&mut a, TIMEOUT, "A's who answer", |w| {
        rec(w)
            .presence
            .iter()
            .any(|p| matches!(p.change, PresenceChange::Snapshot(_)))
    });
    assert_eq!(texts_after(a.world(), 1), ["x1", "x2", "x3"]);
    let after: Vec<_> = rec(a.world()).messages[1..].to_vec();
    assert!(
        after
            .iter()
            .all(|m| m.user_id == id_b && m.username == "Bob")
    );
    assert!(after.windows(2).all(|w| w[0].id < w[1].id));
    assert_eq!(
        after.iter().map(|m| m.id).collect::<Vec<_>>(),
        rec(b.world()).messages[1..]
            .iter()
            .map(|m| m.id)
            .collect::<Vec<_>>()
    );
    assert!(rec(a.world()).connected.iter().any(|c| c.reconnect));
    assert_eq!(user_id(a.world()).as_deref(), Some(id_a.as_str()));
    for app in [&a, &b] {
        let errors = &rec(app.world()).errors;
        assert!(errors.is_empty(), "{errors:?}");
    }
}

#[test]
fn a_network_blip_is_resumed_from_history_exactly_once() {
    let server = TestServer::start();
    let proxy = Proxy::start(server.runtime(), server.addr());
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&proxy.url(), &dir.path().join("a.json"));
    let mut b = guest_app(&server.url(), &dir.path().join("b.json"));
    ready_app(&mut a, "Ann", "lobby");
    ready_app(&mut b, "Bob", "lobby");

    send(&mut b, "lobby", "m1");
    update_pair_until(&mut a, &mut b, TIMEOUT, "m1", |a, b| {
        rec(a).texts("lobby") == ["m1"] && rec(b).texts("lobby") == ["m1"]
    });
    assert!(!rec(a.world()).messages[0].from_history);

    proxy.pause();
    proxy.cut();
    update_until(&mut a, TIMEOUT, "A to notice the cut", reconnecting);

    send(&mut b, "lobby", "m2");
    send(&mut b, "lobby", "m3");
    update_until(&mut b, TIMEOUT, "B's own copies", |w| {
        rec(w).texts("lobby") == ["m1", "m2", "m3"]
    });
    // While paused, A keeps trying and failing: it stays away from the channel.
    assert_eq!(rec(a.world()).texts("lobby"), ["m1"]);

    proxy.resume();
    update_until(&mut a, TIMEOUT, "A to resume", |w| {
        state(w) == ChatConnectionState::Connected
            && rec(w).rejoined("lobby")
            && rec(w).messages.len() >= 3
    });
    // A round trip after the replay: any duplicate would be in by now.
    chat(&mut a, |chat| chat.who("lobby"));
    update_until(&mut a, TIMEOUT, "A's who answer", |w| {
        rec(w)
            .presence
            .iter()
            .any(|p| matches!(p.change, PresenceChange::Snapshot(_)))
    });

    let got = &rec(a.world()).messages;
    assert_eq!(
        rec(a.world()).texts("lobby"),
        ["m1", "m2", "m3"],
        "{got:#?}"
    );
    assert!(!got[0].from_history);
    assert!(got[1].from_history && got[2].from_history, "{got:#?}");
    let b_ids: Vec<_> = rec(b.world()).messages.iter().map(|m| m.id).collect();
    let a_ids: Vec<_> = got.iter().map(|m| m.id).collect();
    assert_eq!(a_ids, b_ids);
    assert!(rec(a.world()).connected.iter().any(|c| c.reconnect));
    assert!(
        rec(a.world())
            .errors
            .iter()
            .all(|e| e.code == ChatErrorCode::Connection),
        "{:?}",
        rec(a.world()).errors
    );
    assert!(
        rec(b.world()).errors.is_empty(),
        "{:?}",
        rec(b.world()).errors
    );
}

/// A name the server refused must not replace the accepted one: after a reconnect the plugin
/// re-applies the name it remembers.
#[test]
fn a_refused_name_is_not_reapplied_after_a_reconnect() {
    let mut server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    ready_app(&mut a, "Ann", "lobby");
    chat(&mut a, |chat| chat.set_name(""));
    update_until(&mut a, TIMEOUT, "the bad-name error", |w| {
        !rec(w).errors.is_empty()
    });

    server.stop();
    update_until(&mut a, TIMEOUT, "A to lose the server", reconnecting);
    server.restart();
    update_until(&mut a, TIMEOUT, "A to rejoin", |w| {
        state(w) == ChatConnectionState::Connected && rec(w).rejoined("lobby")
    });
    send(&mut a, "lobby", "still Ann?");
    update_until(&mut a, TIMEOUT, "the message or its error", |w| {
        !rec(w).messages.is_empty()
            || rec(w)
                .errors
                .iter()
                .any(|e| e.request == ChatRequest::Message)
    });
    // Today: a second BadName on the reconnect, then NameRequired for the message (the
    // restarted server never got "Ann" back).
    assert_eq!(
        rec(a.world()).errors.len(),
        1,
        "{:#?}",
        rec(a.world()).errors
    );
    assert_eq!(rec(a.world()).messages[0].username, "Ann");
}

#[test]
fn connecting_on_demand_applies_what_was_asked_offline() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut plugin = guest_plugin(&server.url(), &dir.path().join("a.json"));
    plugin.auto_connect = false;
    let mut a = app_with(plugin);
    chat(&mut a, |chat| {
        chat.set_name("Ann");
        chat.join("lobby");
    });
    // Nothing happens until the game asks: a round trip through the network thread (an
    // offline request refused) proves it saw the commands above and stayed put.
    send(&mut a, "lobby", "too early");
    update_until(&mut a, TIMEOUT, "the not-connected error", |w| {
        !rec(w).errors.is_empty()
    });
    assert_eq!(rec(a.world()).errors[0].code, ChatErrorCode::NotConnected);
    assert_eq!(state(a.world()), ChatConnectionState::Disconnected);
    assert_eq!(user_id(a.world()), None);

    chat(&mut a, |chat| chat.connect());
    update_until(
        &mut a,
        TIMEOUT,
        "the name and channel after connecting",
        |w| {
            state(w) == ChatConnectionState::Connected
                && rec(w).names.iter().any(|n| n.username == "Ann")
                && rec(w).joined("lobby")
        },
    );
    let connected = &rec(a.world()).connected;
    assert_eq!(connected.len(), 1);
    assert!(!connected[0].reconnect);
    // Asked for before connecting, but still a first join, not a re-join.
    assert!(rec(a.world()).joined.iter().all(|j| !j.rejoined));
    send(&mut a, "lobby", "now");
    update_until(&mut a, TIMEOUT, "the own message", |w| {
        rec(w).texts("lobby") == ["now"]
    });
}

#[test]
fn disconnecting_stays_disconnected_until_connect() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    ready_app(&mut a, "Ann", "lobby");

    chat(&mut a, |chat| chat.disconnect());
    update_until(&mut a, TIMEOUT, "the game's disconnect", |w| {
        !rec(w).disconnected.is_empty()
    });
    assert!(!rec(a.world()).disconnected[0].will_reconnect);
    // A bounded window, well over several reconnect delays, after the disconnect.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(600) {
        a.update();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    assert_eq!(rec(a.world()).connected.len(), 1, "{:#?}", rec(a.world()));
    assert_eq!(state(a.world()), ChatConnectionState::Disconnected);

    chat(&mut a, |chat| chat.connect());
    update_until(&mut a, TIMEOUT, "the reconnect and rejoin", |w| {
        state(w) == ChatConnectionState::Connected && rec(w).rejoined("lobby")
    });
    assert!(rec(a.world()).connected[1].reconnect);
}

/// The state changes once per transition: the attempts made while reconnecting do not flip it.
#[test]
fn one_outage_is_one_change_to_reconnecting_and_one_back() {
    let mut server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    wait_connected(&mut a);
    // Counted as `resource_changed::<ChatConnectionState>` sees it.
    #[derive(Resource, Default)]
    struct Changes(Vec<ChatConnectionState>);
    a.init_resource::<Changes>().add_systems(
        Update,
        (|state: Res<ChatConnectionState>, mut changes: ResMut<Changes>| {
            changes.0.push(*state);
        })
        .run_if(resource_changed::<ChatConnectionState>),
    );
    let before = rec(a.world()).states.len();

    server.stop();
    update_until(&mut a, TIMEOUT, "A to lose the server", reconnecting);
    // A bounded window, well over several reconnect delays (50, 100, 200 ms), in which every
    // attempt fails.
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_millis(800) {
        a.update();
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    server.restart();
    update_until(&mut a, TIMEOUT, "A to reconnect", |w| {
        state(w) == ChatConnectionState::Connected && rec(w).connected.len() == 2
    });
    let expected = [
        ChatConnectionState::Reconnecting,
        ChatConnectionState::Connected,
    ];
    assert_eq!(rec(a.world()).states[before..], expected);
    // A system added after connecting may see the resource as changed on its first run.
    let changes = &a.world().resource::<Changes>().0;
    let changes = changes
        .strip_prefix(&[ChatConnectionState::Connected])
        .unwrap_or(changes);
    assert_eq!(changes, expected);
}

/// Disconnecting while waiting to reconnect takes effect at once, not after the backoff delay.
#[test]
fn disconnecting_while_reconnecting_is_immediate() {
    let mut server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let slow = ReconnectPolicy {
        initial: std::time::Duration::from_secs(60),
        max: std::time::Duration::from_secs(60),
        jitter: 0.0,
    };
    let mut a =
        app_with(guest_plugin(&server.url(), &dir.path().join("a.json")).with_reconnect(slow));
    wait_connected(&mut a);
    server.stop();
    update_until(&mut a, TIMEOUT, "A to lose the server", reconnecting);
    chat(&mut a, |chat| chat.disconnect());
    update_until(&mut a, TIMEOUT, "the disconnect", |w| {
        state(w) == ChatConnectionState::Disconnected
    });
}
