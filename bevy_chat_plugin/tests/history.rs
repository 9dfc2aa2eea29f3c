//! History: the last messages on join, and paging back with `Chat::history`.

mod common;

use std::path::Path;

use bevy::app::App;
use common::*;

/// B fills "lobby" with `count` messages before A arrives; returns B's app.
fn lobby_with_messages(server: &TestServer, dir: &Path, count: usize) -> App {
    let mut b = guest_app(&server.url(), &dir.join("b.json"));
    ready_app(&mut b, "Bob", "lobby");
    for n in 1..=count {
        send(&mut b, "lobby", &format!("old {n}"));
    }
    update_until(&mut b, TIMEOUT, "B's own copies", |w| {
        rec(w).messages.len() == count
    });
    b
}

fn history_app(server: &TestServer, dir: &Path, history_on_join: u32) -> App {
    let mut plugin = guest_plugin(&server.url(), &dir.join("a.json"));
    plugin.history_on_join = history_on_join;
    app_with(plugin)
}

#[test]
fn joining_replays_the_last_messages_then_live_ones() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut b = lobby_with_messages(&server, dir.path(), 5);

    let mut a = history_app(&server, dir.path(), 3);
    ready_app(&mut a, "Ann", "lobby");
    update_until(&mut a, TIMEOUT, "the history page", |w| {
        rec(w).messages.len() == 3
    });
    let got = &rec(a.world()).messages;
    assert_eq!(rec(a.world()).texts("lobby"), ["old 3", "old 4", "old 5"]);
    assert!(got.iter().all(|m| m.from_history), "{got:#?}");
    assert!(got.iter().all(|m| m.username == "Bob"));

    send(&mut b, "lobby", "new");
    update_pair_until(&mut a, &mut b, TIMEOUT, "the live message", |a, _| {
        rec(a).messages.len() == 4
    });
    let last = rec(a.world()).messages.last().unwrap();
    assert_eq!(last.text, "new");
    assert!(!last.from_history);
}

#[test]
fn no_history_on_join_when_turned_off() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut b = lobby_with_messages(&server, dir.path(), 2);
    let mut a = history_app(&server, dir.path(), 0);
    ready_app(&mut a, "Ann", "lobby");
    send(&mut b, "lobby", "new");
    update_pair_until(&mut a, &mut b, TIMEOUT, "the live message", |a, _| {
        !rec(a).messages.is_empty()
    });
    assert_eq!(rec(a.world()).texts("lobby"), ["new"]);
}

#[test]
fn paging_back_delivers_older_messages() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let _b = lobby_with_messages(&server, dir.path(), 5);

    let mut a = history_app(&server, dir.path(), 2);
    ready_app(&mut a, "Ann", "lobby");
    update_until(&mut a, TIMEOUT, "the history page", |w| {
        rec(w).messages.len() == 2
    });
    let oldest = rec(a.world()).messages[0].id;
    chat(&mut a, move |chat| chat.history("lobby", Some(oldest), 10));
    update_until(&mut a, TIMEOUT, "the older page", |w| {
        rec(w).messages.len() == 5
    });
    let got = &rec(a.world()).messages;
    assert_eq!(
        got[2..].iter().map(|m| m.text.as_str()).collect::<Vec<_>>(),
        ["old 1", "old 2", "old 3"]
    );
    assert!(got.iter().all(|m| m.from_history));
}
