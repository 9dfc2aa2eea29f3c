//! The Redis engine keeps history by age as well as by count: a message older than
//! `--history-max-age` is gone from history, and a client resuming from before it is told
//! `gap: true`. (Trimming is amortised over publishes; reads trim first, so they are exact.)
//! Without Redis these tests skip, except under `CI=true`, where they fail.

mod common;

use std::time::Duration;

use common::cluster::*;
use common::*;
use serde_json::json;

redis_only!(messages_older_than_the_max_age_are_gone_and_resume_reports_the_gap);
cluster_only!(messages_older_than_the_max_age_are_gone_and_resume_reports_the_gap);

async fn messages_older_than_the_max_age_are_gone_and_resume_reports_the_gap() {
    let server = TestServer::start_with(|c| {
        fast(c);
        c.engine.history_max_age = Duration::from_millis(1000);
    })
    .await;
    let mut ann = server.named("Ann").await;
    ann.join("lobby").await;
    let old = say(&mut ann, "lobby", "old").await;
    // Age is time: let the first message grow older than the max age.
    tokio::time::sleep(Duration::from_millis(1300)).await;
    say(&mut ann, "lobby", "new").await;

    let mut bob = server.named("Bob").await;
    bob.send_request("join", json!({"channel": "lobby", "history": 10}))
        .await;
    let history = bob.recv_type("history").await;
    assert_eq!(texts(&history["payload"]["messages"]), ["new"]);

    // Resuming from before the old message: the new one, and the gap where the old one was.
    let mut carol = server.named("Carol").await;
    carol
        .send_request("join", json!({"channel": "lobby", "since": "1-0"}))
        .await;
    let history = carol.recv_type("history").await;
    assert_eq!(texts(&history["payload"]["messages"]), ["new"]);
    assert_eq!(history["payload"]["gap"], true, "{history}");
    // From the old message itself: nothing is missing.
    let mut dave = server.named("Dave").await;
    dave.send_request(
        "join",
        json!({"channel": "lobby", "since": old["payload"]["id"]}),
    )
    .await;
    let history = dave.recv_type("history").await;
    assert_eq!(texts(&history["payload"]["messages"]), ["new"]);
    assert!(history["payload"].get("gap").is_none(), "{history}");
}
