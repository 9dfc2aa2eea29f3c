//! Guest login while Redis is down (a private redis-server, never the shared one): 503 with
//! `Retry-After` and the JSON error `unavailable`, in bounded time; refreshes need no storage and
//! keep working; once Redis is back, logins work again. Without the redis-server binary this test
//! skips, except under `CI=true`, where it fails.

mod common;

use std::time::{Duration, Instant};

use common::cluster::eventually;
use common::*;
use serde_json::{Value, json};
use server::config::EngineKind;

/// What an HTTP GET answered.
struct Answer {
    status: u16,
    retry_after: Option<String>,
    content_type: Option<String>,
    body: String,
}

async fn get(server: &TestServer, path: &str) -> Answer {
    let url = format!("{}{path}", server.http());
    tokio::task::spawn_blocking(move || {
        let mut response = agent().get(&url).call().expect("http get");
        let header = |name: &str| {
            response
                .headers()
                .get(name)
                .map(|v| v.to_str().unwrap().to_owned())
        };
        let (retry_after, content_type) = (header("retry-after"), header("content-type"));
        Answer {
            status: response.status().as_u16(),
            retry_after,
            content_type,
            body: response.body_mut().read_to_string().unwrap_or_default(),
        }
    })
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_login_while_redis_is_down_answers_503_then_works_again() {
    let Some(mut redis) = private_redis("a_login_while_redis_is_down_answers_503").await else {
        return;
    };
    let url = redis.url();
    let TestEngine::Redis { prefix } = TestEngine::fresh_redis() else {
        unreachable!()
    };
    let server = TestServer::start_on(&TestEngine::Memory, |c| {
        c.engine.kind = Some(EngineKind::Redis);
        c.engine.redis_url = Some(url);
        c.engine.redis_prefix = prefix;
    })
    .await;
    let guest = server.login().await;

    tokio::task::block_in_place(|| redis.kill());
    let again = format!(
        "/login-as-guest?user_id={}&guest_secret={}",
        guest.user_id, guest.guest_secret
    );
    for path in ["/login-as-guest", again.as_str()] {
        let started = Instant::now();
        let answer = get(&server, path).await;
        let took = started.elapsed();
        assert_eq!(answer.status, 503, "{path}: {}", answer.body);
        assert!(
            took < Duration::from_secs(6),
            "{path}: answered after {took:?}"
        );
        let wait: u64 = answer
            .retry_after
            .as_deref()
            .expect("Retry-After")
            .parse()
            .unwrap();
        assert!((1..=5).contains(&wait), "Retry-After {wait}");
        assert_eq!(answer.content_type.as_deref(), Some("application/json"));
        let body: Value = serde_json::from_str(&answer.body).expect("a JSON body");
        assert_eq!(
            body,
            json!({"error": "the chat backend is unavailable, try again shortly", "code": "unavailable"})
        );
    }
    // A refresh needs no storage: players already logged in keep getting tokens.
    let refresh = get(
        &server,
        &format!(
            "/refresh-access-token?refresh_token={}",
            guest.refresh_token
        ),
    )
    .await;
    assert_eq!(refresh.status, 200, "{}", refresh.body);
    let (_, metrics) = server.get("/metrics").await;
    assert!(
        metrics.contains("chat_errors_total{code=\"unavailable\"} 2"),
        "the two 503s are counted: {metrics}"
    );

    // Redis is back (empty: this one keeps nothing, see docs/DEPLOY.md on AOF).
    tokio::task::block_in_place(|| redis.restart()).expect("redis-server restarts");
    eventually("a login works again once Redis is back", || async {
        get(&server, "/login-as-guest").await.status == 200
    })
    .await;
}
