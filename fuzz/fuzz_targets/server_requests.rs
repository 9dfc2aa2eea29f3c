//! The server's request handling with arbitrary frames from two connected users: each input line
//! is one frame, its first byte choosing the connection. Nothing may panic, every frame gets at
//! least one reply, and every reply is JSON. Runs the real command code on the in-process engine
//! (no sockets: libFuzzer wants thousands of runs a second).
#![no_main]

use std::sync::{Arc, OnceLock};

use libfuzzer_sys::fuzz_target;
use protocol::parse_client_frame;
use server::commands::{self, Session};
use server::config::Config;
use server::engine::Engine;
use server::hub::Hub;
use server::identity::Principal;
use server::metrics::Metrics;
use server::node::Node;

fn runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("runtime")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    runtime().block_on(async {
        let mut config = Config::defaults();
        config.limits.messages_per_second = 1000;
        config.limits.message_burst = 1000;
        let metrics = Arc::new(Metrics::new());
        let hub = Arc::new(Hub::new(config.limits.outgoing_queue, metrics.clone()));
        let engine = Engine::in_memory(hub.clone(), config.engine.history_size);
        let node = Node {
            engine,
            hub: hub.clone(),
            metrics,
            limits: config.limits.clone(),
            unique_names: true,
            channels: Arc::new(server::policy::OpenChannels),
            moderator: Arc::new(server::moderation::WordFilter::new(["darn", "笨蛋", "very bad"])),
        };
        let shutdown = tokio_util::sync::CancellationToken::new();
        let mut sessions: Vec<_> = ["user-a", "user-b"]
            .into_iter()
            .map(|user| {
                // No socket: deliveries only queue (and a full queue closes, as for a client
                // that never reads).
                let (handle, kill) = hub.connect(Arc::from(user), None, &shutdown);
                let principal = Principal {
                    user_id: Arc::from(user),
                    scope: Arc::from("guest"),
                    claims: Default::default(),
                };
                (Session::new(handle, principal, &node), kill)
            })
            .collect();
        for line in text.lines().take(64) {
            let which = line.as_bytes().first().map_or(0, |b| usize::from(b % 2));
            let frame = line.get(1..).unwrap_or_default();
            let (session, _kill) = &mut sessions[which];
            let replies = match parse_client_frame(frame) {
                Ok(frame) => commands::handle(session, &node, frame).await,
                Err(error) => vec![error.reply().to_json()],
            };
            assert!(!replies.is_empty(), "no reply to {frame:?}");
            for reply in replies {
                serde_json::from_str::<serde_json::Value>(&reply)
                    .unwrap_or_else(|e| panic!("reply {reply:?} is not JSON: {e}"));
            }
        }
        for (mut session, _kill) in sessions {
            commands::leave_all(&mut session, &node, Vec::new()).await;
            hub.disconnect(&session.conn);
        }
    });
});
