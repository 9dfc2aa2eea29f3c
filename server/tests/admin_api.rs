//! The admin API beyond the actions (moderation.rs has those and the audit log): the overview
//! of every node, live as server-sent events, the security headers and the per-address limit.

mod common;

use std::io::{BufRead, BufReader};
use std::time::{Duration, Instant};

use common::cluster::say;
use common::*;
use serde_json::{Value, json};

per_engine!(
    the_overview_counts_connections_on_every_node_live,
    channels_and_players_are_read_through_the_api,
    a_broadcast_to_one_channel_reaches_its_members_only,
);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_admin_answer_carries_the_security_headers_and_an_address_is_limited() {
    let server = admin_server(&TestEngine::Memory).await;
    let url = format!("{}/admin/overview", server.http());
    let (status, headers) = head_of(&url, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200);
    let refused = head_of(&url, Some("wrong")).await;
    assert_eq!(refused.0, 401);
    for (_, headers) in [(status, headers), refused] {
        assert!(
            headers["content-security-policy"].contains("script-src 'self'")
                && headers["content-security-policy"].contains("frame-ancestors 'none'")
                && !headers["content-security-policy"].contains("unsafe-inline"),
            "{headers:?}"
        );
        assert_eq!(headers["x-frame-options"], "DENY");
        assert_eq!(headers["x-content-type-options"], "nosniff");
        assert_eq!(headers["cache-control"], "no-store");
    }
    // A burst of 100 from one address, then 429 with Retry-After: a token cannot be guessed
    // at speed.
    let mut refused_at = None;
    let started = Instant::now();
    for n in 0..300 {
        let (status, headers) = head_of(&url, Some("guess")).await;
        if status == 429 {
            assert!(headers["retry-after"].parse::<u64>().unwrap() >= 1);
            refused_at = Some(n);
            break;
        }
        assert_eq!(status, 401);
    }
    // Two requests went before; the bucket refills at 20 a second meanwhile.
    let refused_at = 2 + refused_at.expect("the limit never answered 429");
    let refilled = (20.0 * started.elapsed().as_secs_f64()).ceil() as usize;
    assert!(
        (100..=100 + refilled + 2).contains(&refused_at),
        "refused after {refused_at} ({refilled} refilled)"
    );
    assert!(server.limit_hits("admin_rate").await >= 1);
}

/// A server on `engine` with the admin API on.
async fn admin_server(engine: &TestEngine) -> TestServer {
    TestServer::start_on(engine, |c| c.admin_token = Some(ADMIN_TOKEN.into())).await
}

/// GET `url` with the token: the status and the headers (lower-cased names).
async fn head_of(
    url: &str,
    bearer: Option<&str>,
) -> (u16, std::collections::HashMap<String, String>) {
    let url = url.to_owned();
    let bearer = bearer.map(str::to_owned);
    tokio::task::spawn_blocking(move || {
        let mut request = agent().get(&url);
        if let Some(token) = bearer {
            request = request.header("Authorization", &format!("Bearer {token}"));
        }
        let response = request.call().expect("http get");
        let headers = response
            .headers()
            .iter()
            .map(|(name, value)| {
                (
                    name.as_str().to_owned(),
                    value.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        (response.status().as_u16(), headers)
    })
    .await
    .unwrap()
}

/// `GET /admin/overview`: the reply.
async fn overview(server: &TestServer) -> Value {
    let (status, body) = server.admin_get("/admin/overview", Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// Reads `/admin/stream` until an `overview` event satisfies `wanted` (at most 10 s), after
/// checking that the first event is `recent` (the sums of the last minutes, for the charts).
async fn stream_until(
    server: &TestServer,
    wanted: impl Fn(&Value) -> bool + Send + 'static,
) -> Value {
    let url = format!("{}/admin/stream", server.http());
    tokio::task::spawn_blocking(move || {
        let mut response = agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .expect("the stream");
        assert_eq!(response.status().as_u16(), 200);
        let content_type = response.headers()["content-type"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "text/event-stream");
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut lines = BufReader::new(response.body_mut().as_reader()).lines();
        let mut event = String::new();
        let mut first = true;
        let mut last = Value::Null;
        while Instant::now() < deadline {
            let line = lines.next().expect("the stream ended").unwrap();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
            } else if let Some(data) = line.strip_prefix("data: ")
                && std::mem::take(&mut first)
            {
                assert_eq!(event, "recent", "{data}");
                let samples: Value = serde_json::from_str(data).unwrap();
                assert!(samples.is_array(), "{samples}");
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "overview"
            {
                last = serde_json::from_str(data).unwrap();
                if wanted(&last) {
                    return last;
                }
            }
        }
        panic!("no overview as wanted within 10 s (the last: {last})");
    })
    .await
    .unwrap()
}

async fn the_overview_counts_connections_on_every_node_live() {
    let engine = TestEngine::current();
    let a = admin_server(&engine).await;
    // Two nodes on Redis (the overview is every node's), one otherwise.
    let b = match engine {
        TestEngine::Memory | TestEngine::Sqlite => None,
        _ => Some(a.start_node(|_| {}).await),
    };
    let nodes = 1 + usize::from(b.is_some());
    let first = stream_until(&a, |o| o["totals"]["nodes"].as_u64() >= Some(1)).await;
    let node = &first["nodes"][0];
    assert_eq!(node["version"], env!("CARGO_PKG_VERSION"));
    assert_eq!(node["engine_ready"], true);
    assert!(node["started_ms"].as_u64().unwrap() <= node["sent_ms"].as_u64().unwrap());
    // Clients connect (one on each node): the stream shows them.
    let mut clients = vec![a.guest().await];
    if let Some(b) = &b {
        clients.push(b.guest().await);
    }
    let expected = nodes as u64;
    let seen = stream_until(&a, move |o| {
        o["totals"]["nodes"] == expected && o["totals"]["connections"] == expected
    })
    .await;
    assert_eq!(
        seen["totals"]["nodes"].as_u64(),
        Some(nodes as u64),
        "{seen}"
    );
    assert_eq!(
        seen["totals"]["connections"].as_u64(),
        Some(nodes as u64),
        "{seen}"
    );
    // A refusal is counted by reason: a message to a channel not joined.
    let client = &mut clients[0];
    client
        .send_request(
            "message",
            serde_json::json!({ "channel": "x", "message": "hi" }),
        )
        .await;
    let error = client.recv_type_or_error().await;
    let code = error["code"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let now = overview(&a).await;
        let counted = now["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["refusals"]["errors"][&code].as_u64() >= Some(1));
        if counted {
            break;
        }
        assert!(Instant::now() < deadline, "{code} never counted: {now}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // They leave: the count goes down.
    drop(clients);
    stream_until(&a, |o| o["totals"]["connections"].as_u64() == Some(0)).await;
}

/// GET an admin path with the token: status 200 and the JSON body.
async fn admin_json(server: &TestServer, path: &str) -> Value {
    let (status, body) = server.admin_get(path, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 200, "{path}: {body}");
    serde_json::from_str(&body).unwrap()
}

/// Reads a channel's `/stream`: tells `watching` once the server watches, then returns the
/// first `message` event's payload.
fn first_message(
    server_http: String,
    channel: &str,
    watching: std::sync::mpsc::Sender<()>,
) -> std::thread::JoinHandle<Value> {
    let url = format!("{server_http}/admin/channels/{channel}/stream");
    std::thread::spawn(move || {
        let mut response = agent()
            .get(&url)
            .header("Authorization", &format!("Bearer {ADMIN_TOKEN}"))
            .call()
            .expect("the stream");
        assert_eq!(response.status().as_u16(), 200);
        let mut event = String::new();
        for line in BufReader::new(response.body_mut().as_reader()).lines() {
            let line = line.unwrap();
            if let Some(name) = line.strip_prefix("event: ") {
                event = name.to_owned();
                if event == "watching" {
                    let _ = watching.send(());
                }
            } else if let Some(data) = line.strip_prefix("data: ")
                && event == "message"
            {
                return serde_json::from_str(data).unwrap();
            }
        }
        panic!("the stream ended");
    })
}

async fn channels_and_players_are_read_through_the_api() {
    let server = admin_server(&TestEngine::current()).await;
    let mut player = server.named("Zelda").await;
    player.join("lobby").await;
    for text in ["one", "two"] {
        say(&mut player, "lobby", text).await;
    }
    // The busiest channels, from the nodes' reports (once a second).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let listed = admin_json(&server, "/admin/channels?q=LOB").await;
        if listed["channels"][0]["name"] == "lobby" {
            assert_eq!(listed["channels"][0]["members"], 1, "{listed}");
            break;
        }
        assert!(Instant::now() < deadline, "lobby never listed: {listed}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lobby = admin_json(&server, "/admin/channels/lobby").await;
    assert_eq!(
        lobby["members"][0]["user_id"],
        player.user_id.as_str(),
        "{lobby}"
    );
    assert_eq!(lobby["members"][0]["username"], "Zelda");
    let texts: Vec<&str> = lobby["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["message"].as_str().unwrap())
        .collect();
    assert_eq!(texts, ["one", "two"]);
    let newest = lobby["messages"][1]["id"].as_str().unwrap();
    let older = admin_json(
        &server,
        &format!("/admin/channels/lobby/history?before={newest}&limit=1"),
    )
    .await;
    assert_eq!(older["messages"][0]["message"], "one");
    // Watched live: a message sent after the stream opened comes as an event.
    let (told, watching) = std::sync::mpsc::channel();
    let reading = first_message(server.http(), "lobby", told);
    tokio::task::spawn_blocking(move || watching.recv_timeout(Duration::from_secs(10)))
        .await
        .unwrap()
        .expect("the stream never started watching");
    say(&mut player, "lobby", "live").await;
    let live = tokio::task::spawn_blocking(move || reading.join().unwrap())
        .await
        .unwrap();
    assert_eq!(
        (&live["message"], &live["username"]),
        (&json!("live"), &json!("Zelda"))
    );
    // A bad channel name is refused, saying why.
    let (status, body) = server
        .admin_get("/admin/channels/%20bad%20", Some(ADMIN_TOKEN))
        .await;
    assert_eq!(status, 400, "{body}");

    // Players: by id on every engine, by name where the engine can search names.
    let muted = server
        .post(
            "/admin/mute",
            Some(ADMIN_TOKEN),
            json!({ "user_id": player.user_id, "reason": "spam" }),
        )
        .await;
    assert_eq!(muted.0, 200);
    let by_id = admin_json(&server, &format!("/admin/players?q={}", player.user_id)).await;
    assert_eq!(by_id["players"][0]["name"], "Zelda", "{by_id}");
    let by_name = admin_json(&server, "/admin/players?q=zel").await;
    assert_eq!(by_name["name_search"], true, "{by_name}");
    assert_eq!(by_name["players"][0]["user_id"], player.user_id.as_str());
    assert_eq!(by_name["players"].as_array().unwrap().len(), 1, "{by_name}");
    // Glob characters in a query are taken literally.
    let starred = admin_json(&server, "/admin/players?q=*").await;
    assert!(
        starred["players"].as_array().unwrap().is_empty(),
        "{starred}"
    );
    player.set_name("Zelda of Hyrule").await;
    let shown = admin_json(&server, &format!("/admin/players/{}", player.user_id)).await;
    assert_eq!(shown["name"], "Zelda of Hyrule");
    let names: Vec<&str> = shown["names"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["Zelda of Hyrule", "Zelda"], "{shown}");
    assert_eq!(shown["muted"]["reason"], "spam");
    assert!(
        shown["muted"]["until_ms"].is_null(),
        "until lifted: {shown}"
    );
    assert!(shown["banned"].is_null());
    assert_eq!(shown["connections_here"], 1);
    assert_eq!(
        shown["online_nodes"].as_array().unwrap().len(),
        1,
        "{shown}"
    );
    assert_eq!(shown["channels_here"], json!(["lobby"]));
    assert_eq!(shown["channels"], json!(["lobby"]));
}

async fn a_broadcast_to_one_channel_reaches_its_members_only() {
    let server = admin_server(&TestEngine::current()).await;
    let mut member = server.named("In").await;
    member.join("lobby").await;
    let mut outsider = server.named("Out").await;
    let broadcast = |body: Value| {
        let server = &server;
        async move {
            server
                .post("/admin/broadcast", Some(ADMIN_TOKEN), body)
                .await
        }
    };
    let (status, body) =
        broadcast(json!({ "message": "lobby closes soon", "channel": "lobby" })).await;
    assert_eq!(status, 200, "{body}");
    let got = member.recv_type("broadcast").await;
    assert_eq!(got["payload"]["message"], "lobby closes soon", "{got}");
    assert_eq!(got["payload"]["channel"], "lobby");
    // The outsider's next broadcast is the one to everyone: the channel's never came.
    broadcast(json!({ "message": "to all" })).await;
    let next = outsider.recv_type("broadcast").await;
    assert_eq!(next["payload"]["message"], "to all", "{next}");
    assert!(next["payload"].get("channel").is_none(), "{next}");
    // In the audit log with its target.
    let (_, log) = server
        .admin_get("/admin/audit?limit=2", Some(ADMIN_TOKEN))
        .await;
    let log: Value = serde_json::from_str(&log).unwrap();
    assert_eq!(log["entries"][0]["target"], "*");
    assert_eq!(log["entries"][1]["target"], "#lobby");
    // A bad channel is refused, saying why.
    let (status, body) = broadcast(json!({ "message": "x", "channel": " " })).await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("channel:"), "{body}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_admin_token_there_is_no_console_and_no_api() {
    let server = TestServer::start_on(&TestEngine::Memory, |c| c.admin_token = None).await;
    for path in ["/admin/", "/admin/console.js", "/admin/console.css"] {
        let (status, body) = server.get(path).await;
        assert_eq!(status, 404, "{path}");
        assert_eq!(
            body,
            "the admin console is off: start the server with --admin-token"
        );
    }
    for path in [
        "/admin/overview",
        "/admin/audit",
        "/admin/channels",
        "/admin/stream",
    ] {
        let (status, body) = server.admin_get(path, Some(ADMIN_TOKEN)).await;
        assert_eq!(status, 404, "{path}");
        assert!(body.contains("the admin API is off"), "{path}: {body}");
    }
}

/// On Redis (a test of its own: `redis_only!` would clash with `per_engine!`'s module).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreadable_audit_entry_on_redis_is_skipped_and_paging_goes_on() {
    run_redis(
        "admin_api::unreadable_audit_entry",
        an_unreadable_audit_entry_is_skipped_and_paging_goes_on(),
    )
    .await;
}

async fn an_unreadable_audit_entry_is_skipped_and_paging_goes_on() {
    let engine = TestEngine::current();
    let server = admin_server(&engine).await;
    let mute = |user: &'static str| {
        let server = &server;
        async move {
            let body = json!({ "user_id": user });
            assert_eq!(
                server.post("/admin/mute", Some(ADMIN_TOKEN), body).await.0,
                200
            );
        }
    };
    mute("first").await;
    // Something else wrote into the log's stream: an entry that is no audit entry.
    let key = format!("{}audit:{{log}}", engine.prefix().unwrap());
    let url = redis_url().unwrap();
    tokio::task::spawn_blocking(move || {
        let mut conn = ::redis::Client::open(url)
            .unwrap()
            .get_connection()
            .unwrap();
        let _: String = ::redis::cmd("XADD")
            .arg(&key)
            .arg("*")
            .arg("entry")
            .arg("not json")
            .query(&mut conn)
            .unwrap();
    })
    .await
    .unwrap();
    mute("second").await;
    // Pages of one: the unreadable entry is passed over, and the first still has a page.
    let page = admin_json(&server, "/admin/audit?limit=1").await;
    assert_eq!(page["entries"][0]["target"], "second", "{page}");
    let next = page["next"].as_str().expect("a next page").to_owned();
    let page = admin_json(&server, &format!("/admin/audit?limit=1&before={next}")).await;
    assert_eq!(page["entries"][0]["target"], "first", "{page}");
    assert!(page.get("next").is_none(), "{page}");
}
