//! Typing indicators and block lists through the plugin, against a real server.

mod common;

use std::time::{Duration, Instant};

use bevy_chat_plugin::*;
use common::*;

/// Two named guests in the lobby.
fn pair(
    server: &TestServer,
    dir: &std::path::Path,
) -> (bevy::app::App, String, bevy::app::App, String) {
    let mut a = guest_app(&server.url(), &dir.join("a.json"));
    let mut b = guest_app(&server.url(), &dir.join("b.json"));
    let id_a = ready_app(&mut a, "Ann", "lobby");
    let id_b = ready_app(&mut b, "Bob", "lobby");
    (a, id_a, b, id_b)
}

#[test]
fn typing_is_announced_to_the_others_at_a_bounded_rate_and_ends_with_the_message() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut a, id_a, mut b, _) = pair(&server, dir.path());

    // Ann "types" on every frame for a while: Bob hears of it once (the plugin sends at most
    // one per 2.5 s), with her name, and the panel's line says so.
    let until = Instant::now() + Duration::from_millis(400);
    while Instant::now() < until {
        chat(&mut a, |chat| chat.typing("lobby"));
        a.update();
        b.update();
        std::thread::sleep(Duration::from_millis(5));
    }
    update_until(&mut b, TIMEOUT, "Bob to hear that Ann types", |w| {
        !rec(w).typing.is_empty()
    });
    let heard = &rec(b.world()).typing[0];
    assert_eq!(
        (
            heard.channel.as_str(),
            heard.user_id.as_str(),
            heard.username.as_str()
        ),
        ("lobby", id_a.as_str(), "Ann")
    );
    assert_eq!(
        b.world()
            .resource::<ChatTyping>()
            .describe("lobby")
            .as_deref(),
        Some("Ann is typing…")
    );

    // Her message ends it, and proves nothing else was on the way: one announcement in all,
    // none back to Ann herself, no error (a refused typing would be one).
    send(&mut a, "lobby", "done typing");
    update_pair_until(
        &mut a,
        &mut b,
        TIMEOUT,
        "the message on both sides",
        |a, b| {
            !rec(a).with_text("done typing").is_empty()
                && !rec(b).with_text("done typing").is_empty()
        },
    );
    assert_eq!(
        rec(b.world()).typing.len(),
        1,
        "{:?}",
        rec(b.world()).typing
    );
    assert_eq!(b.world().resource::<ChatTyping>().describe("lobby"), None);
    assert!(rec(a.world()).typing.is_empty());
    assert!(
        rec(a.world()).errors.is_empty(),
        "{:?}",
        rec(a.world()).errors
    );

    // After the message the window is open again: the next keystroke is announced at once.
    chat(&mut a, |chat| chat.typing("lobby"));
    update_pair_until(&mut a, &mut b, TIMEOUT, "a second announcement", |_, b| {
        rec(b).typing.len() == 2
    });
    // Typing in a channel not joined sends nothing and reports nothing.
    chat(&mut a, |chat| chat.typing("elsewhere"));
    for _ in 0..10 {
        a.update();
    }
    assert!(
        rec(a.world()).errors.is_empty(),
        "{:?}",
        rec(a.world()).errors
    );
}

#[test]
fn a_block_hides_the_user_keeps_across_a_restart_and_lifts_with_unblock() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let (mut a, _, mut b, id_b) = pair(&server, dir.path());
    // The list is read on connect: empty so far.
    assert_eq!(
        rec(a.world()).block_lists.last().map(|l| l.user_ids.len()),
        Some(0)
    );

    let target = id_b.clone();
    chat(&mut a, move |chat| chat.block(target));
    update_until(&mut a, TIMEOUT, "the new block list", |w| {
        w.resource::<ChatBlockList>().contains(&id_b)
    });
    assert_eq!(
        rec(a.world()).block_lists.last().unwrap().user_ids,
        std::slice::from_ref(&id_b)
    );

    // Bob speaks (and sees his own line, so it went through); Ann then speaks: her line
    // arrives, his never does.
    send(&mut b, "lobby", "hidden from Ann");
    update_until(&mut b, TIMEOUT, "Bob's echo", |w| {
        !rec(w).with_text("hidden from Ann").is_empty()
    });
    send(&mut a, "lobby", "marker");
    update_until(&mut a, TIMEOUT, "Ann's marker", |w| {
        !rec(w).with_text("marker").is_empty()
    });
    assert!(rec(a.world()).with_text("hidden from Ann").is_empty());

    // A new session of Ann's (same saved guest) knows the list at once.
    drop(a);
    let mut a = guest_app(&server.url(), &dir.path().join("a.json"));
    wait_connected(&mut a);
    update_until(&mut a, TIMEOUT, "the block list read on connect", |w| {
        w.resource::<ChatBlockList>().contains(&id_b)
    });

    let target = id_b.clone();
    chat(&mut a, move |chat| chat.unblock(target));
    update_until(&mut a, TIMEOUT, "the list without Bob", |w| {
        rec(w)
            .block_lists
            .last()
            .is_some_and(|l| l.user_ids.is_empty())
    });
    assert!(!a.world().resource::<ChatBlockList>().contains(&id_b));
    join(&mut a, "lobby");
    send(&mut b, "lobby", "visible again");
    update_pair_until(
        &mut a,
        &mut b,
        TIMEOUT,
        "Bob's line after the unblock",
        |a, _| !rec(a).with_text("visible again").is_empty(),
    );
}
