//! A single Redis written by a version before hash-tagged keys is carried over when a node of
//! this version starts: guests log in with their old secret, names, mutes (with their expiry),
//! bans, block lists and channel history are kept, and nothing of the old layout is left.
//! Without Redis this test skips, except under `CI=true`, where it fails.

mod common;

use common::*;
use serde_json::json;
use server::engine::RedisKeys;

redis_only!(an_old_layout_is_carried_over_on_start);

async fn an_old_layout_is_carried_over_on_start() {
    let url = redis_url().unwrap();
    let prefix = TestEngine::current().prefix().unwrap().to_owned();
    let secret = "old-secret-0123456789";
    let secret_hash = server::identity::guests::SecretHash::of(secret).to_hex();
    let mut redis = redis_connection(&url).await;
    // What the previous version wrote, key for key.
    let until = server_now_ms() + 600_000;
    let _: () = ::redis::pipe()
        .hset(format!("{prefix}guests"), "old-ann", &secret_hash)
        .hset(format!("{prefix}names"), "old-ann", "Ann")
        .hset(format!("{prefix}name-owners"), "ann", "old-ann")
        .hset(format!("{prefix}name-keys"), "old-ann", "ann")
        .cmd("SET")
        .arg(format!("{prefix}mute:old-ann"))
        .arg(json!([until, "spam"]).to_string())
        .arg("PX")
        .arg(600_000)
        .cmd("SET")
        .arg(format!("{prefix}ban:old-bob"))
        .arg(json!([u64::MAX, "cheating"]).to_string())
        .sadd(format!("{prefix}blocks:old-ann"), "old-bob")
        .hset(format!("{prefix}block-versions"), "old-ann", 3)
        .hset(format!("{prefix}online"), "old-ann", 1)
        .hset(format!("{prefix}presence:lobby"), "old-ann", 1)
        .zadd(format!("{prefix}nodes"), "old-node", 1)
        .query_async(&mut redis)
        .await
        .unwrap();
    for n in 1..=3 {
        let _: String = ::redis::cmd("XADD")
            .arg(format!("{prefix}history:lobby"))
            .arg("*")
            .arg("u")
            .arg("old-ann")
            .arg("n")
            .arg("Ann")
            .arg("m")
            .arg(format!("old-{n}"))
            .query_async(&mut redis)
            .await
            .unwrap();
    }

    let server = TestServer::start_with(|c| c.engine.unique_names = true).await;

    // The guest logs in with the old secret and is still Ann, still muted.
    let (status, body) = server
        .get(&format!(
            "/login-as-guest?user_id=old-ann&guest_secret={secret}"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    let login: protocol::LoginResponse = serde_json::from_str(&body).unwrap();
    let mut ann = server.connect(&login.auth_token).await;
    ann.user_id = "old-ann".into();
    ann.recv().await;
    ann.join("lobby").await;
    ann.send_request("message", json!({"channel": "lobby", "message": "hi"}))
        .await;
    let refused = ann.recv_type_or_error().await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    // History is there, in order, with the sender's name.
    ann.send_request("history", json!({"channel": "lobby", "limit": 10}))
        .await;
    let history = ann.recv_type("history").await;
    assert_eq!(
        texts(&history["payload"]["messages"]),
        ["old-1", "old-2", "old-3"]
    );
    assert_eq!(history["payload"]["messages"][0]["username"], "Ann");
    // The unique name is still claimed.
    let mut other = server.named("Zed").await;
    other
        .send_request("set-name", json!({"username": "ANN"}))
        .await;
    assert_eq!(other.recv_type_or_error().await["code"], "name_taken");

    // Key for key: the new layout holds the data; nothing of the old one is left.
    let keys = RedisKeys::new(&prefix);
    let ttl: i64 = ::redis::cmd("PTTL")
        .arg(keys.mute("old-ann"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ttl > 500_000, "the mute keeps its expiry: {ttl}");
    let ban: Option<String> = ::redis::cmd("GET")
        .arg(keys.ban("old-bob"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert!(ban.unwrap().contains("cheating"));
    let blocked: Vec<String> = ::redis::cmd("SMEMBERS")
        .arg(keys.blocks("old-ann"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(blocked, ["old-bob"]);
    let version: Option<i64> = ::redis::cmd("GET")
        .arg(keys.block_version("old-ann"))
        .query_async(&mut redis)
        .await
        .unwrap();
    assert_eq!(version, Some(3));
    for old in [
        "guests",
        "names",
        "name-owners",
        "name-keys",
        "mute:old-ann",
        "ban:old-bob",
        "blocks:old-ann",
        "block-versions",
        "online",
        "presence:lobby",
        "nodes",
        "history:lobby",
    ] {
        let exists: bool = ::redis::cmd("EXISTS")
            .arg(format!("{prefix}{old}"))
            .query_async(&mut redis)
            .await
            .unwrap();
        assert!(!exists, "{old} is left over");
    }

    // A second node finds the upgrade done and changes nothing.
    let second = server.start_node(|_| {}).await;
    let mut bob = second.named("Bob").await;
    bob.join("lobby").await;
    bob.send_request("history", json!({"channel": "lobby", "limit": 10}))
        .await;
    assert_eq!(
        texts(&bob.recv_type("history").await["payload"]["messages"]),
        ["old-1", "old-2", "old-3"]
    );
}

fn server_now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}
