//! Speech bubbles against a real server: a user's live message becomes a bubble entity for the
//! entity carrying their `ChatSpeaker`, and goes away after its lifetime or with the entity.
#![cfg(feature = "bubbles")]

mod common;

use std::path::Path;
use std::time::Instant;

use bevy::prelude::*;
use bevy_chat_plugin::bubbles::*;
use common::*;

/// A headless guest app with the bubbles plugin and a short bubble lifetime.
fn bubbles_app(url: &str, credentials: &Path, lifetime: f32) -> App {
    let mut app = App::new();
    app.add_plugins((
        MinimalPlugins,
        guest_plugin(url, credentials),
        Recorder,
        ChatBubblesPlugin,
    ))
    .insert_resource(ChatBubbleStyle {
        lifetime,
        fade: lifetime / 2.0,
        ..default()
    });
    app.finish();
    app.cleanup();
    app
}

/// Texts of the bubbles above `speaker`, top to bottom, and whether they sit in its stack.
fn bubbles_of(world: &mut World, speaker: Entity) -> Vec<String> {
    let mut stacks = world.query::<(&ChatBubbleStack, &Children)>();
    let Some((_, children)) = stacks.iter(world).find(|(s, _)| s.speaker == speaker) else {
        return Vec::new();
    };
    let children: Vec<Entity> = children.to_vec();
    let mut texts = Vec::new();
    for child in children {
        let Some(bubble) = world.get::<ChatBubble>(child) else {
            continue;
        };
        assert_eq!(bubble.speaker, speaker);
        let text_entity = world.get::<Children>(child).expect("a bubble has its text")[0];
        texts.push(world.get::<Text>(text_entity).expect("text").0.clone());
    }
    texts
}

/// How many bubble and stack entities exist.
fn bubble_entities(world: &World) -> usize {
    let bubbles = world
        .try_query::<&ChatBubble>()
        .map_or(0, |mut q| q.iter(world).count());
    let stacks = world
        .try_query::<&ChatBubbleStack>()
        .map_or(0, |mut q| q.iter(world).count());
    bubbles + stacks
}

#[test]
fn a_live_message_bubbles_above_its_speaker_and_expires() {
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let lifetime = 0.6;
    let mut ann = bubbles_app(&server.url(), &dir.path().join("a.json"), lifetime);
    let mut bob = guest_app(&server.url(), &dir.path().join("b.json"));
    let ann_id = ready_app(&mut ann, "Ann", "lobby");
    let bob_id = ready_app(&mut bob, "Bob", "lobby");

    let bob_avatar = ann
        .world_mut()
        .spawn((Transform::default(), ChatSpeaker::new(bob_id.clone())))
        .id();
    let ann_avatar = ann
        .world_mut()
        .spawn((Transform::default(), ChatSpeaker::new(ann_id.clone())))
        .id();

    send(&mut bob, "lobby", "hello bubbles");
    update_pair_until(&mut ann, &mut bob, TIMEOUT, "Bob's bubble", |ann, _| {
        ann.resource::<ChatBubbleBoard>().bubbles(&bob_id).len() == 1
    });
    // The UI entities follow the board in the same frame.
    assert_eq!(bubbles_of(ann.world_mut(), bob_avatar), ["hello bubbles"]);
    assert!(bubbles_of(ann.world_mut(), ann_avatar).is_empty());
    let seen = Instant::now();

    // Ann's own line bubbles above her avatar; a second line of Bob's stacks below his first.
    send(&mut ann, "lobby", "mine");
    send(&mut bob, "lobby", "and again");
    update_pair_until(&mut ann, &mut bob, TIMEOUT, "both bubbles", |ann, _| {
        let board = ann.resource::<ChatBubbleBoard>();
        board.bubbles(&ann_id).len() == 1 && board.bubbles(&bob_id).len() == 2
    });
    ann.update();
    assert_eq!(bubbles_of(ann.world_mut(), ann_avatar), ["mine"]);
    assert_eq!(
        bubbles_of(ann.world_mut(), bob_avatar),
        ["hello bubbles", "and again"]
    );

    // Everything goes after its lifetime, the first bubble not before it.
    update_until(&mut ann, TIMEOUT, "Bob's first bubble to expire", |w| {
        w.resource::<ChatBubbleBoard>()
            .bubbles(&bob_id)
            .all(|b| b.text != "hello bubbles")
    });
    assert!(
        seen.elapsed().as_secs_f32() >= lifetime * 0.9,
        "expired after {:?}",
        seen.elapsed()
    );
    update_until(&mut ann, TIMEOUT, "every bubble entity to go", |w| {
        bubble_entities(w) == 0
    });
    assert!(ann.world().resource::<ChatBubbleBoard>().is_empty());
}

#[test]
fn history_makes_no_bubble_users_without_an_entity_get_no_ui_and_a_despawned_speaker_takes_its_own()
{
    let server = TestServer::start();
    let dir = tempfile::tempdir().unwrap();
    let mut ann = bubbles_app(&server.url(), &dir.path().join("a.json"), 30.0);
    let mut bob = guest_app(&server.url(), &dir.path().join("b.json"));
    let mut cid = guest_app(&server.url(), &dir.path().join("c.json"));
    let bob_id = ready_app(&mut bob, "Bob", "lobby");
    ready_app(&mut cid, "Cid", "lobby");
    // Said before Ann joins: she gets it as history.
    send(&mut bob, "lobby", "before you came");
    update_until(&mut bob, TIMEOUT, "Bob's first line", |w| {
        !rec(w).with_text("before you came").is_empty()
    });
    let bob_avatar = ann
        .world_mut()
        .spawn((Transform::default(), ChatSpeaker::new(bob_id.clone())))
        .id();
    ready_app(&mut ann, "Ann", "lobby");
    update_until(&mut ann, TIMEOUT, "the history line", |w| {
        rec(w)
            .with_text("before you came")
            .iter()
            .any(|m| m.from_history)
    });

    // Cid has no entity in Ann's world: no bubble. Bob's live line bubbles.
    send(&mut cid, "lobby", "nobody sees me");
    update_all_until(&mut [&mut ann, &mut cid], TIMEOUT, "Cid's line", |w| {
        !rec(w[0]).with_text("nobody sees me").is_empty()
    });
    send(&mut bob, "lobby", "live now");
    update_pair_until(&mut ann, &mut bob, TIMEOUT, "Bob's live line", |ann, _| {
        !rec(ann).with_text("live now").is_empty()
    });
    ann.update();
    assert_eq!(bubbles_of(ann.world_mut(), bob_avatar), ["live now"]);
    // Cid's line is on the board but has nothing to be drawn above; the history line is not.
    let board = ann.world().resource::<ChatBubbleBoard>();
    assert_eq!(board.len(), 2);
    assert_eq!(
        bubble_entities(ann.world()),
        2,
        "Bob's stack and his one bubble"
    );

    // Bob's avatar goes (he walked out of the level): so do his bubbles.
    ann.world_mut().entity_mut(bob_avatar).despawn();
    update_until(&mut ann, TIMEOUT, "Bob's bubbles to go with him", |w| {
        bubble_entities(w) == 0
    });
}
