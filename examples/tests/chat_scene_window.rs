//! The desktop playtest in a real window: `chat_scene` under Xvfb with software Vulkan starts,
//! renders frames (a screenshot of them), and exchanges a message with a real client.
//!
//! Needs `xvfb-run` and a Vulkan driver (Debian: xvfb xauth mesa-vulkan-drivers libvulkan1 and
//! the X client libraries; `.ci/run` installs them). Outside CI the test is skipped, with a
//! message, when they are missing; under `CI=true` it fails instead.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// Debug builds of the graphics stack under software rendering are slow to start.
const WAIT: Duration = Duration::from_secs(180);

fn example_binary() -> PathBuf {
    // target/<profile>/deps/<this test> → target/<profile>/examples/chat_scene
    let exe = std::env::current_exe().unwrap();
    let profile_dir = exe.parent().and_then(Path::parent).unwrap();
    profile_dir.join("examples").join("chat_scene")
}

/// Why the window cannot run here, if it cannot.
fn missing_prerequisite() -> Option<String> {
    let xvfb = Command::new("sh")
        .args(["-c", "command -v xvfb-run"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !xvfb {
        return Some("xvfb-run is not installed".into());
    }
    let icd_dirs = ["/usr/share/vulkan/icd.d", "/etc/vulkan/icd.d"];
    let has_driver = icd_dirs
        .iter()
        .any(|dir| std::fs::read_dir(dir).is_ok_and(|mut entries| entries.any(|e| e.is_ok())));
    if !has_driver {
        return Some("no Vulkan driver (install mesa-vulkan-drivers)".into());
    }
    None
}

async fn start_server(dir: &Path) -> std::net::SocketAddr {
    let key = Path::new(env!("CARGO_MANIFEST_DIR")).join("../server/tests/fixtures/test-key.pem");
    std::fs::copy(key, dir.join("key.pem")).unwrap();
    let mut config = server::config::Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.key_file = dir.join("key.pem");
    config.identity.guest_file = dir.join("guests.jsonl");
    config.engine.database = dir.join("chat.db");
    let server = server::Server::bind(config).await.unwrap();
    let addr = server.local_addr();
    tokio::spawn(server.run(std::future::pending()));
    addr
}

type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

async fn next_json(ws: &mut Ws) -> Value {
    loop {
        let frame = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("a frame in time")
            .expect("the connection stays open")
            .unwrap();
        if let Message::Text(text) = frame {
            return serde_json::from_str(&text).unwrap();
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chat_scene_renders_and_chats_in_a_window() {
    if let Some(reason) = missing_prerequisite() {
        if std::env::var("CI").is_ok_and(|v| v == "true") {
            panic!("cannot run the window test in CI: {reason}");
        }
        eprintln!("skipping the window test: {reason}");
        return;
    }
    let binary = example_binary();
    assert!(
        binary.exists(),
        "{} is not built (cargo test builds examples)",
        binary.display()
    );
    let dir = tempfile::tempdir().unwrap();
    let addr = start_server(dir.path()).await;
    let url = format!("http://{addr}");

    // A real client in the lobby.
    let login: Value = {
        let url = format!("{url}/login-as-guest");
        tokio::task::spawn_blocking(move || {
            ureq::get(&url)
                .call()
                .unwrap()
                .body_mut()
                .read_json::<Value>()
                .unwrap()
        })
        .await
        .unwrap()
    };
    let token = login["auth_token"].as_str().unwrap();
    let (mut ws, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/?auth_token={token}"))
        .await
        .unwrap();
    next_json(&mut ws).await;
    for frame in [
        json!({"type": "set-name", "payload": {"username": "Tester"}}),
        json!({"type": "join", "payload": {"channel": "lobby"}}),
    ] {
        ws.send(Message::Text(frame.to_string().into()))
            .await
            .unwrap();
        next_json(&mut ws).await;
    }

    let shot = dir.path().join("shot.png");
    let xdg = dir.path().join("xdg");
    std::fs::create_dir_all(&xdg).unwrap();
    let child = Command::new("xvfb-run")
        .args(["-a", "-s", "-screen 0 1280x720x24"])
        .arg(&binary)
        .env("CHAT_SERVER_URL", &url)
        .env("CHAT_SCENE_NAME", "Scene")
        .env("CHAT_SCENE_SAY", "hello from the scene")
        .env("CHAT_SCENE_EXPECT", "hello scene")
        .env("CHAT_SCENE_SCREENSHOT", &shot)
        .env("CHAT_SCENE_TIMEOUT", WAIT.as_secs().to_string())
        .env("HOME", dir.path())
        .env("XDG_RUNTIME_DIR", &xdg)
        .env("XDG_DATA_HOME", dir.path().join("data"))
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("xvfb-run starts");

    // The scene says hello once it has joined; answer it.
    loop {
        let frame = next_json(&mut ws).await;
        if frame["type"] == "chat_message_received"
            && frame["payload"]["message"] == "hello from the scene"
        {
            assert_eq!(frame["payload"]["username"], "Scene");
            break;
        }
    }
    let answer =
        json!({"type": "message", "payload": {"channel": "lobby", "message": "hello scene"}});
    ws.send(Message::Text(answer.to_string().into()))
        .await
        .unwrap();

    // It saw the answer, rendered it, saved the frame and exited on its own.
    let output = tokio::time::timeout(
        WAIT,
        tokio::task::spawn_blocking(move || child.wait_with_output()),
    )
    .await
    .expect("the scene exits in time")
    .unwrap()
    .unwrap();
    let log = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "chat_scene failed: {}\n{log}",
        output.status
    );
    let png = std::fs::read(&shot).expect("the screenshot was saved");
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    let width = u32::from_be_bytes(png[16..20].try_into().unwrap());
    let height = u32::from_be_bytes(png[20..24].try_into().unwrap());
    assert_eq!((width, height), (1280, 720));
    assert!(
        png.len() > 20_000,
        "a blank frame compresses to almost nothing: {} bytes",
        png.len()
    );
}
