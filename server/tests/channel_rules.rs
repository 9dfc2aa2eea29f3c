//! Channel access rules over real connections: the TOML rules (claims, scopes, allow lists,
//! read-only channels), the open default, and a game's own `ChannelPolicy`.

mod common;

use std::sync::Arc;

use common::tokens::{access_claims, kid_of, sign, with};
use common::*;
use serde_json::json;
use server::identity::Principal;
use server::policy::{Access, ChannelPolicy};

const RULES: &str = r#"
[[channel]]
pattern = "team-red-*"
join = { claim = "team", equals = "red" }

[[channel]]
pattern = "announcements"
join = "anyone"
send = { users = ["boss"] }

[[channel]]
pattern = "staff"
join = { scope = "authenticated" }
"#;

/// A server with the rules above.
async fn server_with_rules() -> TestServer {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, RULES).unwrap();
    let mut config = test_config(dir.path());
    config.channel_rules = Some(path);
    TestServer::start_config(config, dir).await
}

/// A connected client whose token (signed with the server's key) carries `extra` claims.
async fn client_with(server: &TestServer, sub: &str, extra: serde_json::Value) -> Client {
    let key = fixture_key();
    let claims = with(access_claims(&server.issuer, &kid_of(&key)), extra);
    let claims = with(claims, json!({ "sub": sub }));
    let mut client = server
        .connect(&sign(&key, Some(&kid_of(&key)), &claims))
        .await;
    client
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    client.set_name(sub).await;
    client
}

async fn join_reply(client: &mut Client, channel: &str) -> serde_json::Value {
    client
        .send_request("join", json!({ "channel": channel }))
        .await;
    client.recv_type_or_error().await
}

#[tokio::test]
async fn claims_scopes_and_allow_lists_decide_who_joins_and_sends() {
    let server = server_with_rules().await;
    let mut guest = client_with(&server, "guest-1", json!({})).await;
    let mut red = client_with(&server, "red-1", json!({ "team": "red" })).await;
    let mut boss = client_with(&server, "boss", json!({ "scope": "authenticated" })).await;

    let refused = join_reply(&mut guest, "team-red-base").await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert_eq!(refused["error"], "You may not join team-red-base");
    red.join("team-red-base").await;

    // Everyone reads announcements; only the allow-listed user writes.
    guest.join("announcements").await;
    boss.join("announcements").await;
    guest
        .send_request(
            "message",
            json!({ "channel": "announcements", "message": "hi" }),
        )
        .await;
    let refused = guest.recv_type_or_error().await;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["error"], "You may not send to announcements");
    boss.send_request(
        "message",
        json!({ "channel": "announcements", "message": "patch 1.2 is out" }),
    )
    .await;
    let ack = boss.recv_type_or_error().await;
    assert_eq!(
        ack["message"],
        "Message sent to announcements: patch 1.2 is out"
    );
    let got = guest.recv_type("chat_message_received").await;
    assert_eq!(got["payload"]["message"], "patch 1.2 is out");

    assert_eq!(join_reply(&mut guest, "staff").await["code"], "forbidden");
    boss.join("staff").await;
    // Channels no rule names stay open, as with the seed.
    guest.join("lobby").await;
    red.join("lobby").await;
}

/// A game's own rule: channels named `match-<id>` only for players of that match.
struct MatchPlayers;

impl ChannelPolicy for MatchPlayers {
    fn may_join(&self, who: &Principal, channel: &str) -> Access {
        match channel.strip_prefix("match-") {
            Some(id) if who.claims.get("match").and_then(|m| m.as_str()) != Some(id) => {
                Access::Deny(format!("{channel} is for the players of match {id}"))
            }
            _ => Access::Allow,
        }
    }

    fn may_send(&self, who: &Principal, channel: &str) -> Access {
        self.may_join(who, channel)
    }
}

#[tokio::test]
async fn a_game_can_plug_in_its_own_policy() {
    let dir = tempfile::tempdir().unwrap();
    let config = test_config(dir.path());
    let hooks = server::Hooks {
        channel_policy: Some(Arc::new(MatchPlayers)),
        ..Default::default()
    };
    let server = TestServer::start_hooked(config, dir, hooks).await;
    let mut player = client_with(&server, "p1", json!({ "match": "42" })).await;
    let mut other = client_with(&server, "p2", json!({ "match": "7" })).await;
    player.join("match-42").await;
    let refused = join_reply(&mut other, "match-42").await;
    assert_eq!(refused["code"], "forbidden");
    assert_eq!(refused["error"], "match-42 is for the players of match 42");
}

#[tokio::test]
async fn a_broken_rules_file_stops_the_server_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("rules.toml");
    std::fs::write(&path, "[[channel]]\npattern = \"x\"\njoin = \"everyone\"\n").unwrap();
    let mut config = test_config(dir.path());
    config.channel_rules = Some(path);
    let error = match server::Server::bind(config).await {
        Err(error) => error.to_string(),
        Ok(_) => panic!("a server started with a broken rules file"),
    };
    assert!(error.starts_with("channel rules: "), "{error}");
    assert!(error.contains("rules.toml"), "{error}");
}
