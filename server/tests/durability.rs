//! The embedded default engine (SQLite) keeps what it acknowledged: through a SIGKILL under
//! traffic and a restart, within its history caps, in a live backup; a damaged or unusable
//! database file is refused at start, never served as if empty. Every test runs the binary.

mod common;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::cluster::{eventually, say};
use common::process::{ServerProcess, refused_start, run_command};
use common::*;
use protocol::LoginResponse;
use serde_json::{Value, json};

/// Flags of every server here: tokens outlive a restart on another port (one issuer), and
/// senders are not rate-limited (they log in at once, and send as fast as acknowledgements
/// come).
const FLAGS: [&str; 10] = [
    "--public-url",
    "http://chat.test",
    "--messages-per-second",
    "10000",
    "--message-burst",
    "10000",
    "--logins-per-minute",
    "100000",
    "--login-burst",
    "10000",
];

/// Starts the binary on `dir` with [`FLAGS`] and `args`.
async fn start(dir: &std::path::Path, args: &[&str]) -> ServerProcess {
    ServerProcess::start(dir, &[&FLAGS[..], args].concat()).await
}

/// A new guest of `server`.
async fn login(server: &ServerProcess) -> LoginResponse {
    let (status, body) = http_get(format!("{}/login-as-guest", server.http())).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).unwrap()
}

/// A connection of `token` (the welcome read).
async fn connect(server: &ServerProcess, token: &str) -> Client {
    let mut client = Client::connect(&server.ws_url(token)).await;
    client
        .expect_text(r#"{"message":"Successfully connected!"}"#)
        .await;
    client
}

/// `POST /admin/{action}` for `user`: the status.
async fn admin(server: &ServerProcess, action: &str, user: &str) -> u16 {
    let url = format!("{}/admin/{action}", server.http());
    let body = json!({ "user_id": user, "reason": "test" });
    http_post(url, Some(ADMIN_TOKEN), body).await.0
}

/// Joins `channel` asking for `ask` (`"history": K` or `"since": ID`): the `history` payload.
async fn join_with(client: &mut Client, channel: &str, ask: Value) -> Value {
    let mut payload = json!({ "channel": channel });
    payload
        .as_object_mut()
        .unwrap()
        .extend(ask.as_object().unwrap().clone());
    client.send_request("join", payload).await;
    assert_eq!(
        client.recv_type_or_error().await,
        json!({ "message": format!("You have joined {channel}") })
    );
    client.recv_type("history").await["payload"].clone()
}

/// Sends `prefix-0`, `prefix-1`, ... to `channel`, each after the last was acknowledged, until
/// the connection is gone: the texts acknowledged, in order.
async fn send_until_gone(
    mut client: Client,
    channel: &str,
    prefix: &str,
    acked: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut sent = Vec::new();
    for n in 0.. {
        let text = format!("{prefix}-{n}");
        let payload = json!({ "channel": channel, "message": text });
        if !client.try_send_request("message", payload).await {
            break;
        }
        let ack = format!("Message sent to {channel}: {text}");
        let acknowledged = loop {
            match client.seen_within(WAIT).await {
                Some(Seen::Text(frame)) => {
                    let frame: Value = serde_json::from_str(&frame).unwrap();
                    assert!(frame.get("error").is_none(), "{frame}");
                    if frame["message"] == ack {
                        break true;
                    }
                }
                _ => break false,
            }
        };
        if !acknowledged {
            break;
        }
        sent.push(text);
        acked.fetch_add(1, Ordering::Relaxed);
    }
    sent
}

/// Waits until `count` reaches `at_least`.
async fn wait_for_count(count: &AtomicUsize, at_least: usize) {
    let what = format!("{at_least} messages are acknowledged");
    eventually(&what, || async {
        count.load(Ordering::Relaxed) >= at_least
    })
    .await;
}

/// The `message` texts of a history payload, after checking that ids only grow.
fn history_texts(history: &Value) -> Vec<String> {
    let messages = history["messages"].as_array().unwrap();
    let ids: Vec<(u64, u64)> = messages
        .iter()
        .map(|m| {
            let (ms, seq) = m["id"].as_str().unwrap().split_once('-').unwrap();
            (ms.parse().unwrap(), seq.parse().unwrap())
        })
        .collect();
    assert!(
        ids.windows(2).all(|w| w[0] < w[1]),
        "ids out of order: {ids:?}"
    );
    messages
        .iter()
        .map(|m| m["message"].as_str().unwrap().to_owned())
        .collect()
}

/// Senders in the kill test: enough that many writes are in flight when the kill comes.
const SENDERS: usize = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_killed_server_keeps_everything_it_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let args = [
        "--admin-token",
        ADMIN_TOKEN,
        "--max-history-page",
        "10000",
        "--history-size",
        "10000",
    ];
    let mut server = start(dir.path(), &args).await;

    // Moderation and a block list, made before the traffic.
    let muted = login(&server).await;
    let banned = login(&server).await;
    assert_eq!(admin(&server, "mute", &muted.user_id).await, 200);
    assert_eq!(admin(&server, "ban", &banned.user_id).await, 200);
    let blocker = login(&server).await;
    let mut client = connect(&server, &blocker.auth_token).await;
    client
        .send_request("block", json!({ "user_id": banned.user_id }))
        .await;
    assert_eq!(
        client.recv_type_or_error().await,
        json!({ "message": format!("You have blocked {}", banned.user_id) })
    );
    drop(client);

    // A reader that will resume from the last message it saw before the kill.
    let reader = login(&server).await;
    let mut reading = connect(&server, &reader.auth_token).await;
    reading.join("lobby").await;

    // Senders, each sending its next message once the last one is acknowledged.
    let acked = Arc::new(AtomicUsize::new(0));
    let mut senders = Vec::new();
    let mut tasks = Vec::new();
    for i in 0..SENDERS {
        let login = login(&server).await;
        let mut client = connect(&server, &login.auth_token).await;
        client.set_name(&format!("sender-{i}")).await;
        client.join("lobby").await;
        let acked = acked.clone();
        tasks.push(tokio::spawn(async move {
            send_until_gone(client, "lobby", &format!("s{i}"), acked).await
        }));
        senders.push(login);
    }
    // The reader sees the first 30 messages, then is cut off with the rest of them.
    let mut last_seen = String::new();
    for _ in 0..30 {
        last_seen = reading.recv_type("chat_message_received").await["payload"]["id"]
            .as_str()
            .unwrap()
            .to_owned();
    }
    wait_for_count(&acked, 300).await;
    server.kill();
    let mut acknowledged = Vec::new();
    for task in tasks {
        acknowledged.push(task.await.unwrap());
    }
    let in_all: usize = acknowledged.iter().map(Vec::len).sum();
    assert!(in_all >= 300, "{in_all} acknowledged");
    // Killed under traffic, the latest changes are in the redo log only (folded into the file
    // once a second): the start below must fold them in.
    let logged: u64 = ["chat.db-redo0", "chat.db-redo1"]
        .iter()
        .map(|log| std::fs::metadata(dir.path().join(log)).unwrap().len())
        .sum();
    assert!(
        logged > 0,
        "nothing in the redo log after a kill under traffic"
    );

    let server = start(dir.path(), &args).await;
    // Every acknowledged message is in history, in the order it was sent; at most the one
    // message in flight per sender (stored, not yet acknowledged) comes after.
    let mut client = connect(&server, &reader.auth_token).await;
    let history = join_with(&mut client, "lobby", json!({ "history": 10000 })).await;
    assert!(history.get("more").is_none(), "more than a page: {history}");
    let kept = history_texts(&history);
    for (i, sent) in acknowledged.iter().enumerate() {
        let prefix = format!("s{i}-");
        let own: Vec<&String> = kept.iter().filter(|t| t.starts_with(&prefix)).collect();
        assert!(
            own.len() >= sent.len() && own.len() <= sent.len() + 1,
            "sender {i}: acknowledged {sent:?}, kept {own:?}"
        );
        assert!(own.iter().zip(sent).all(|(kept, sent)| *kept == sent));
    }
    // The reader resumes where it was cut off and misses nothing that was acknowledged.
    let mut resumed = connect(&server, &reader.auth_token).await;
    let replay = join_with(&mut resumed, "lobby", json!({ "since": last_seen })).await;
    assert!(replay.get("gap").is_none(), "{replay}");
    let ids: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    let after = ids
        .iter()
        .position(|id| *id == last_seen)
        .expect("the last seen is kept")
        + 1;
    assert_eq!(history_texts(&replay), kept[after..]);

    // Names: a sender's next message needs no set-name and carries its name.
    let mut sender = connect(&server, &senders[0].auth_token).await;
    sender.join("lobby").await;
    say(&mut sender, "lobby", "after").await;
    let live = client.recv_type("chat_message_received").await;
    assert_eq!(live["payload"]["username"], "sender-0");
    // The mute, the ban and the block list are still in force.
    let muted_id = muted.user_id.clone();
    let mut muted = connect(&server, &muted.auth_token).await;
    muted.set_name("muted").await;
    muted.join("lobby").await;
    muted
        .send_request("message", json!({ "channel": "lobby", "message": "hi" }))
        .await;
    let refused = muted.recv_type_or_error().await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
    assert!(
        refused["error"]
            .as_str()
            .unwrap()
            .starts_with("You are muted")
    );
    let mut banned_client = Client::connect(&server.ws_url(&banned.auth_token)).await;
    let (_, close) = banned_client.read_to_close().await;
    assert_eq!(close.map(|c| c.0), Some(1008));
    let mut client = connect(&server, &blocker.auth_token).await;
    client.send(json!({ "type": "blocked" })).await;
    assert_eq!(
        client.recv_type("blocked_users").await["payload"]["user_ids"],
        json!([banned.user_id])
    );
    // The audit log: both actions, newest first.
    let headers = vec![("Authorization".to_owned(), format!("Bearer {ADMIN_TOKEN}"))];
    let (status, body) = http_send(format!("{}/admin/audit", server.http()), headers, None).await;
    assert_eq!(status, 200, "{body}");
    let log: Value = serde_json::from_str(&body).unwrap();
    let actions: Vec<(&str, &str)> = log["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["action"].as_str().unwrap(), e["target"].as_str().unwrap()))
        .collect();
    assert_eq!(
        actions,
        [
            ("ban", banned.user_id.as_str()),
            ("mute", muted_id.as_str())
        ]
    );
    // The guests: an existing guest logs in again with its secret.
    let again = format!(
        "{}/login-as-guest?user_id={}&guest_secret={}",
        server.http(),
        senders[1].user_id,
        senders[1].guest_secret
    );
    assert_eq!(http_get(again).await.0, 200);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn history_read_back_keeps_its_caps_and_reports_what_was_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let args = ["--history-size", "5"];
    let mut server = start(dir.path(), &args).await;
    let user = login(&server).await;
    let mut client = connect(&server, &user.auth_token).await;
    client.set_name("ann").await;
    client.join("lobby").await;
    let mut first_id = String::new();
    for n in 0..8 {
        let own = say(&mut client, "lobby", &format!("m{n}")).await;
        if n == 0 {
            first_id = own["payload"]["id"].as_str().unwrap().to_owned();
        }
    }
    // A clean stop this time (SIGTERM).
    server.signal("-TERM");
    assert!(server.wait().await.success());

    let server = start(dir.path(), &args).await;
    let mut client = connect(&server, &user.auth_token).await;
    let history = join_with(&mut client, "lobby", json!({ "history": 50 })).await;
    assert_eq!(history_texts(&history), ["m3", "m4", "m5", "m6", "m7"]);
    let mut resumed = connect(&server, &user.auth_token).await;
    let replay = join_with(&mut resumed, "lobby", json!({ "since": first_id })).await;
    assert_eq!(replay["gap"], true, "m1 and m2 were dropped: {replay}");
    assert_eq!(history_texts(&replay), ["m3", "m4", "m5", "m6", "m7"]);
    // New messages take ids after the ones read back.
    say(&mut client, "lobby", "m8").await;
    let mut reader = connect(&server, &user.auth_token).await;
    let history = join_with(&mut reader, "lobby", json!({ "history": 50 })).await;
    assert_eq!(history_texts(&history), ["m4", "m5", "m6", "m7", "m8"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_live_backup_is_a_consistent_database_a_server_can_start_from() {
    // Everything sent is kept and read back in one page, however much traffic the copy sees.
    let keep_all = ["--history-size", "1000000", "--max-history-page", "10000"];
    let dir = tempfile::tempdir().unwrap();
    let server = start(dir.path(), &keep_all).await;
    let user = login(&server).await;
    let mut client = connect(&server, &user.auth_token).await;
    client.set_name("ann").await;
    client.join("lobby").await;
    let acked = Arc::new(AtomicUsize::new(0));
    let before = send_acknowledged(&mut client, 20).await;
    // Traffic goes on while the copy is taken.
    let other = login(&server).await;
    let mut busy = connect(&server, &other.auth_token).await;
    busy.set_name("bob").await;
    busy.join("lobby").await;
    let traffic = tokio::spawn(send_until_gone(busy, "lobby", "busy", acked.clone()));
    wait_for_count(&acked, 5).await;
    let copy_dir = tempfile::tempdir().unwrap();
    let copy = copy_dir.path().join("chat.db");
    let database = dir.path().join("chat.db");
    // Acknowledged before the copy began: in it, though most are still only in the redo log.
    let busy_before = acked.load(Ordering::Relaxed);
    let (status, logs) = tokio::task::block_in_place(|| {
        run_command(&[
            "backup",
            copy.to_str().unwrap(),
            "--database",
            database.to_str().unwrap(),
        ])
    });
    assert!(status.success(), "{logs}");
    assert!(logs.contains("backup done"), "{logs}");
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&copy).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the copy holds guests' secret hashes");
    }
    // A copy over the live database (or its log) would lose everything after it: refused.
    let live = database.to_str().unwrap();
    let wal = format!("{live}-wal");
    let redo = format!("{live}-redo1");
    for target in [live, wal.as_str(), redo.as_str()] {
        let (status, logs) = run_command(&["backup", target, "--database", live]);
        assert!(!status.success(), "{target}");
        assert!(logs.contains("the live database's own file"), "{logs}");
    }
    drop(server);
    traffic.await.unwrap();

    std::fs::copy(dir.path().join("key.pem"), copy_dir.path().join("key.pem")).unwrap();
    let restored = start(copy_dir.path(), &keep_all).await;
    let mut client = connect(&restored, &user.auth_token).await;
    let history = join_with(&mut client, "lobby", json!({ "history": 10000 })).await;
    assert!(history.get("more").is_none(), "more than a page: {history}");
    let kept = history_texts(&history);
    let mine: Vec<&String> = kept.iter().filter(|t| t.starts_with("ann-")).collect();
    assert_eq!(mine, before.iter().collect::<Vec<_>>());
    // ... and what the copy holds of the traffic is an unbroken run from the first: a moment of
    // the database, with nothing missing in the middle.
    let busy: Vec<&String> = kept.iter().filter(|t| t.starts_with("busy-")).collect();
    assert!(busy.len() >= busy_before, "{busy:?}");
    for (n, text) in busy.iter().enumerate() {
        assert_eq!(**text, format!("busy-{n}"), "{busy:?}");
    }

    // No database to copy: a clear failure, and no file.
    let missing = copy_dir.path().join("missing.db");
    let (status, logs) = run_command(&[
        "backup",
        copy_dir.path().join("none.db").to_str().unwrap(),
        "--database",
        missing.to_str().unwrap(),
    ]);
    assert!(!status.success());
    assert!(logs.contains("there is no database at"), "{logs}");
    assert!(!copy_dir.path().join("none.db").exists());
}

/// Sends `ann-0` .. `ann-{count-1}` to `lobby`, each acknowledged: the texts.
async fn send_acknowledged(client: &mut Client, count: usize) -> Vec<String> {
    let mut sent = Vec::new();
    for n in 0..count {
        let text = format!("ann-{n}");
        say(client, "lobby", &text).await;
        sent.push(text);
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_damaged_or_unusable_database_refuses_to_start() {
    // Not a database at all.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("chat.db"), vec![0x5a; 8192]).unwrap();
    let (status, logs) = refused_start(dir.path(), &[], &[]);
    assert!(!status.success());
    assert!(logs.contains("cannot use the database"), "{logs}");
    assert!(logs.contains("not a database"), "{logs}");

    // A database whose pages were overwritten after a clean stop.
    let dir = tempfile::tempdir().unwrap();
    let mut server = start(dir.path(), &[]).await;
    let user = login(&server).await;
    let mut client = connect(&server, &user.auth_token).await;
    client.set_name("ann").await;
    client.join("lobby").await;
    send_acknowledged(&mut client, 50).await;
    server.signal("-TERM");
    assert!(server.wait().await.success());
    let path = dir.path().join("chat.db");
    let mut bytes = std::fs::read(&path).unwrap();
    assert!(bytes.len() >= 3 * 4096, "{} bytes", bytes.len());
    bytes[4096..3 * 4096].fill(0x5a);
    std::fs::write(&path, bytes).unwrap();
    let (status, logs) = refused_start(dir.path(), &[], &[]);
    assert!(!status.success());
    assert!(logs.contains("cannot use the database"), "{logs}");

    // A directory where the file should be.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("chat.db")).unwrap();
    let (status, logs) = refused_start(dir.path(), &[], &[]);
    assert!(!status.success());
    assert!(logs.contains("cannot use the database"), "{logs}");

    // A file where its directory should be.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("data"), b"").unwrap();
    let inside = dir.path().join("data/chat.db");
    let (status, logs) = refused_start(dir.path(), &["--database", inside.to_str().unwrap()], &[]);
    assert!(!status.success());
    assert!(logs.contains("cannot create"), "{logs}");

    // A place where no file can be created, whoever runs the test (sysfs is read-only even to
    // root, as a read-only mount would be).
    let dir = tempfile::tempdir().unwrap();
    let (status, logs) = refused_start(dir.path(), &["--database", "/sys/chat-test.db"], &[]);
    assert!(!status.success());
    assert!(
        logs.contains("cannot use the database /sys/chat-test.db"),
        "{logs}"
    );

    // In use by another server.
    let dir = tempfile::tempdir().unwrap();
    let _first = start(dir.path(), &[]).await;
    let (status, logs) = refused_start(dir.path(), &[], &[]);
    assert!(!status.success());
    assert!(logs.contains("another chat-server is using it"), "{logs}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_guest_file_of_an_earlier_version_is_imported_once() {
    let dir = tempfile::tempdir().unwrap();
    // The memory engine keeps guests in the guest file, as earlier versions did.
    let mut server = start(dir.path(), &["--engine", "memory"]).await;
    let guest = login(&server).await;
    server.signal("-TERM");
    assert!(server.wait().await.success());
    assert!(!dir.path().join("chat.db").exists());

    let login_again = |server: &ServerProcess| {
        format!(
            "{}/login-as-guest?user_id={}&guest_secret={}",
            server.http(),
            guest.user_id,
            guest.guest_secret
        )
    };
    let mut server = start(dir.path(), &[]).await;
    assert_eq!(http_get(login_again(&server)).await.0, 200);
    let newer = login(&server).await;
    server.signal("-TERM");
    assert!(server.wait().await.success());

    // Imported once: the file is not read again (a guest added to it later is unknown).
    let late = server::identity::guests::SecretHash::of("late-secret").to_hex();
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(dir.path().join("guests.jsonl"))
        .unwrap();
    std::io::Write::write_all(
        &mut file,
        format!("{{\"user_id\":\"late-guest\",\"secret_sha256\":\"{late}\"}}\n").as_bytes(),
    )
    .unwrap();
    drop(file);
    let server = start(dir.path(), &[]).await;
    assert_eq!(http_get(login_again(&server)).await.0, 200);
    let late_login = format!(
        "{}/login-as-guest?user_id=late-guest&guest_secret=late-secret",
        server.http()
    );
    assert_eq!(http_get(late_login).await.0, 401);
    drop(server);
    // The file gone altogether: every guest is still there.
    std::fs::remove_file(dir.path().join("guests.jsonl")).unwrap();
    let server = start(dir.path(), &[]).await;
    assert_eq!(http_get(login_again(&server)).await.0, 200);
    let newer_again = format!(
        "{}/login-as-guest?user_id={}&guest_secret={}",
        server.http(),
        newer.user_id,
        newer.guest_secret
    );
    assert_eq!(http_get(newer_again).await.0, 200);
}
