//! Frame-time benchmark: how much time [`ChatPlugin`] adds to each `app.update()` of a headless
//! app receiving chat traffic.
//!
//! A real server runs in this process on its own runtime; a sender on its own thread and runtime
//! sends `--rate` messages per second over a real WebSocket into a channel the chat app joined.
//! Three apps are updated in every frame, paced to `--fps` (the rest of each frame is slept), for
//! `--seconds`: the baseline (`MinimalPlugins`), the baseline plus one empty system in each of
//! `PreUpdate`, `Update` and `PostUpdate` (a game always has some: with Bevy's multi-threaded
//! executor every non-empty schedule has a fixed cost), and the chat app (`MinimalPlugins`,
//! `ChatPlugin` and a system reading every `ChatMessageReceived`). Their order rotates every frame
//! so that background load on the machine hits all alike. Only `app.update()` is timed.
//!
//! ```text
//! cargo bench -p bevy_chat_plugin --bench frame_time -- --rate 100 --seconds 10 --fps 60
//! ```
//!
//! `--json PATH` also writes the results as JSON; `--single-threaded` runs every schedule of the
//! three apps on Bevy's single-threaded executor. Exits non-zero when the app did not receive
//! every message sent. Without `--bench` (as run by `cargo test --benches`) it defaults to a 1 s
//! smoke run.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bevy::ecs::schedule::{Schedules, SingleThreadedExecutor};
use bevy::prelude::*;
use bevy_chat_plugin::{
    Chat, ChatConnectionState, ChatDisconnected, ChatJoined, ChatMessageReceived, ChatPlugin,
};
use futures_util::{SinkExt, StreamExt};
use hdrhistogram::Histogram;
use protocol::{ClientFrame, ClientRequest, ServerFrame, parse_server_frame};
use server::config::Config;
use tokio::runtime::Runtime;
use tokio::sync::oneshot;
use tokio_tungstenite::tungstenite::Message as WsMessage;

/// The channel the sender writes to and the app reads.
const CHANNEL: &str = "frame-bench";
/// Prefix of every benchmark message.
const PREFIX: &str = "frame-bench #";
/// Longest wait for a setup step, and for the drain after the measured frames.
const TIMEOUT: Duration = Duration::from_secs(10);
/// The RSA key committed for the server's tests (generating one would be slow).
const FIXTURE_KEY: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../server/tests/fixtures/test-key.pem"
);
/// The issue's target for the time added per update, in microseconds.
const TARGET_US: f64 = 100.0;
/// Usage text.
const USAGE: &str =
    "frame_time [--rate MSG_PER_S] [--seconds S] [--fps FPS] [--json PATH] [--single-threaded]";

/// Command-line settings.
struct Args {
    /// Messages per second sent into the channel.
    rate: f64,
    /// Length of the measurement.
    seconds: f64,
    /// Frame pacing.
    fps: f64,
    /// Where to write the results as JSON.
    json: Option<PathBuf>,
    /// Run both apps' schedules on Bevy's single-threaded executor.
    single_threaded: bool,
}

impl Args {
    /// Parses the command line (std only); ignores the `--bench` that `cargo bench` adds.
    fn parse() -> Result<Self, String> {
        let raw: Vec<String> = std::env::args().skip(1).collect();
        let bench = raw.iter().any(|a| a == "--bench");
        let mut args = Args {
            rate: 100.0,
            seconds: if bench { 10.0 } else { 1.0 },
            fps: 60.0,
            json: None,
            single_threaded: false,
        };
        let mut it = raw.into_iter();
        while let Some(name) = it.next() {
            match name.as_str() {
                "--bench" => continue,
                "--single-threaded" => {
                    args.single_threaded = true;
                    continue;
                }
                "-h" | "--help" => {
                    println!("{USAGE}");
                    std::process::exit(0);
                }
                "--rate" | "--seconds" | "--fps" | "--json" => {}
                _ => return Err(format!("unknown argument {name:?}\n{USAGE}")),
            }
            let value = it.next().ok_or(format!("{name} needs a value"))?;
            let number = || match value.parse::<f64>() {
                Ok(v) if v.is_finite() && v > 0.0 => Ok(v),
                _ => Err(format!("{name}: expected a positive number, got {value:?}")),
            };
            match name.as_str() {
                "--rate" => args.rate = number()?,
                "--seconds" => args.seconds = number()?,
                "--fps" => args.fps = number()?,
                _ => args.json = Some(value.into()),
            }
        }
        Ok(args)
    }
}

/// Starts a chat server on an ephemeral port on its own runtime (as the plugin's test harness
/// does), its per-connection limits raised so that one connection may send `rate` messages per
/// second. Returns the runtime, `http://addr` and the directory of its key and guest files.
fn start_server(rate: f64) -> (Runtime, String, tempfile::TempDir) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("bench-chat-server")
        .enable_all()
        .build()
        .expect("server runtime");
    let dir = tempfile::tempdir().expect("server temp dir");
    std::fs::copy(FIXTURE_KEY, dir.path().join("key.pem")).expect("copy the fixture key");
    let mut config = Config::defaults();
    config.listen = "127.0.0.1:0".parse().unwrap();
    config.identity.key_file = dir.path().join("key.pem");
    config.identity.guest_file = dir.path().join("guests.jsonl");
    config.engine.database = dir.path().join("chat.db");
    let allowance = (rate.ceil() as u32).saturating_mul(2).max(50);
    let limits = &mut config.limits;
    limits.login_burst = 100;
    limits.messages_per_second = allowance;
    limits.message_burst = allowance;
    limits.frames_per_second = allowance.max(limits.frames_per_second);
    limits.frame_burst = allowance.max(limits.frame_burst);
    let server = runtime
        .block_on(server::Server::bind(config))
        .expect("the server starts");
    let url = format!("http://{}", server.local_addr());
    runtime.spawn(server.run(std::future::pending()));
    (runtime, url, dir)
}

/// What the sender did.
#[derive(Debug, Default)]
struct SenderReport {
    /// Messages written to the WebSocket.
    sent: u64,
    /// Messages the server acknowledged.
    acked: u64,
    /// Messages the server refused.
    rejected: u64,
}

/// The sender's WebSocket.
type Ws =
    tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// Starts the sender thread: logs in as a guest, names itself, joins [`CHANNEL`], signals
/// `ready`, waits for `go`, then sends `count` messages evenly spaced at `rate` per second and
/// waits until the server has answered each.
fn spawn_sender(
    url: String,
    rate: f64,
    count: u64,
    ready: mpsc::Sender<()>,
    go: oneshot::Receiver<()>,
) -> JoinHandle<Result<SenderReport, String>> {
    std::thread::spawn(move || {
        let mut response = ureq::get(format!("{url}/login-as-guest"))
            .call()
            .map_err(|e| format!("login: {e}"))?;
        let body: serde_json::Value = response
            .body_mut()
            .read_json()
            .map_err(|e| format!("login: {e}"))?;
        let token = body["auth_token"].as_str().ok_or("login: no auth_token")?;
        let ws_url = format!(
            "{}/?auth_token={token}",
            url.replacen("http://", "ws://", 1)
        );
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build();
        let runtime = runtime.map_err(|e| format!("sender runtime: {e}"))?;
        runtime.block_on(async {
            let (mut ws, _) = tokio_tungstenite::connect_async(ws_url)
                .await
                .map_err(|e| format!("sender: {e}"))?;
            request(
                &mut ws,
                ClientRequest::SetName {
                    username: "frame-bench-sender".into(),
                },
            )
            .await?;
            let join = ClientRequest::Join {
                channel: CHANNEL.into(),
                history: None,
                since: None,
            };
            request(&mut ws, join).await?;
            let joined = async {
                while !next_reply(&mut ws).await??.starts_with("You have joined") {}
                Ok::<_, String>(())
            };
            tokio::time::timeout(TIMEOUT, joined)
                .await
                .map_err(|_| "sender: no join")??;
            let _ = ready.send(());
            go.await.map_err(|_| "sender: no start signal")?;
            send_messages(&mut ws, rate, count).await
        })
    })
}

/// Writes one request frame.
async fn request(ws: &mut Ws, request: ClientRequest) -> Result<(), String> {
    let text = ClientFrame::new(request).to_json();
    ws.send(WsMessage::text(text))
        .await
        .map_err(|e| format!("sender: {e}"))
}

/// The next reply (`Ok`) or error reply (`Err`) from the server, skipping events and the
/// greeting; `Err` when the connection fails.
async fn next_reply(ws: &mut Ws) -> Result<Result<String, String>, String> {
    loop {
        let frame = ws
            .next()
            .await
            .ok_or("sender: connection closed")?
            .map_err(|e| format!("sender: {e}"))?;
        let Ok(text) = frame.to_text() else { continue };
        match parse_server_frame(text) {
            Ok(ServerFrame::Reply { message, .. }) if message != "Successfully connected!" => {
                return Ok(Ok(message));
            }
            Ok(ServerFrame::Error { error, .. }) => return Ok(Err(error)),
            _ => {}
        }
    }
}

/// Sends `count` messages at `rate` per second, counting the server's answers as they come.
async fn send_messages(ws: &mut Ws, rate: f64, count: u64) -> Result<SenderReport, String> {
    let start = tokio::time::Instant::now();
    let give_up = start + Duration::from_secs_f64(count as f64 / rate) + TIMEOUT;
    let mut report = SenderReport::default();
    while report.acked + report.rejected < count {
        let due = start + Duration::from_secs_f64(report.sent as f64 / rate);
        tokio::select! {
            () = tokio::time::sleep_until(due), if report.sent < count => {
                let message = format!("{PREFIX}{}", report.sent);
                request(ws, ClientRequest::Message { channel: CHANNEL.into(), message }).await?;
                report.sent += 1;
            }
            reply = next_reply(ws) => match reply? {
                Ok(reply) if reply.starts_with("Message sent to") => report.acked += 1,
                Ok(_) => {}
                Err(_) => report.rejected += 1,
            },
            () = tokio::time::sleep_until(give_up) => {
                return Err(format!("sender: answers missing ({report:?})"));
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
    Ok(report)
}

/// What the game side of the chat app saw.
#[derive(Resource, Debug, Default)]
struct Tally {
    /// Benchmark messages read.
    received: u64,
    /// The join of [`CHANNEL`] was confirmed.
    joined: bool,
    /// Disconnects seen (should stay 0).
    disconnects: u64,
}

/// The game's chat system: reads every chat message each frame and counts the benchmark's.
fn read_chat(
    mut tally: ResMut<Tally>,
    mut messages: MessageReader<ChatMessageReceived>,
    mut joined: MessageReader<ChatJoined>,
    mut disconnected: MessageReader<ChatDisconnected>,
) {
    for m in messages.read() {
        if m.channel == CHANNEL && !m.from_history && m.text.starts_with(PREFIX) {
            tally.received += 1;
        }
    }
    tally.joined |= joined.read().any(|j| j.channel == CHANNEL);
    tally.disconnects += disconnected.read().count() as u64;
}

/// The apps measured.
enum Kind<'a> {
    /// `MinimalPlugins` only.
    Baseline,
    /// `MinimalPlugins` and an empty system in each of `PreUpdate`, `Update` and `PostUpdate`.
    WithSystems,
    /// `MinimalPlugins`, the plugin against this server URL and credentials file, a join and
    /// [`read_chat`].
    Chat(&'a str, &'a Path),
}

/// A headless app of this kind, ready to update.
fn build_app(kind: Kind, single_threaded: bool) -> App {
    let mut app = App::new();
    app.add_plugins(MinimalPlugins);
    if let Kind::WithSystems = kind {
        app.add_systems(PreUpdate, || {})
            .add_systems(Update, || {})
            .add_systems(PostUpdate, || {});
    }
    if let Kind::Chat(url, credentials) = kind {
        app.add_plugins(ChatPlugin::new(url).with_credentials_file(credentials))
            .init_resource::<Tally>()
            .add_systems(Startup, |mut chat: Chat| chat.join(CHANNEL))
            .add_systems(Update, read_chat);
    }
    app.finish();
    app.cleanup();
    if single_threaded {
        for (_, schedule) in app.world_mut().resource_mut::<Schedules>().iter_mut() {
            schedule.set_executor(SingleThreadedExecutor::new());
        }
    }
    app
}

/// Wall times of one app's `app.update()`, in nanoseconds.
struct Times {
    /// Update times.
    hist: Histogram<u64>,
    /// Exact sum (the mean is not taken from histogram buckets).
    total_ns: u128,
}

impl Times {
    /// No updates yet.
    fn new() -> Self {
        let hist = Histogram::new_with_bounds(1, 60_000_000_000, 3).expect("histogram bounds");
        Self { hist, total_ns: 0 }
    }

    /// Times one update.
    fn update(&mut self, app: &mut App) {
        let started = Instant::now();
        app.update();
        let took = started.elapsed().as_nanos();
        self.hist.saturating_record(took.max(1) as u64);
        self.total_ns += took;
    }

    /// Mean in microseconds.
    fn mean_us(&self) -> f64 {
        self.total_ns as f64 / self.hist.len().max(1) as f64 / 1000.0
    }

    /// Quantile in microseconds.
    fn us(&self, q: f64) -> f64 {
        self.hist.value_at_quantile(q) as f64 / 1000.0
    }

    /// Frames, mean, p50, p99 and max (µs) as JSON.
    fn json(&self) -> serde_json::Value {
        serde_json::json!({ "frames": self.hist.len(), "mean_us": self.mean_us(),
            "p50_us": self.us(0.5), "p99_us": self.us(0.99), "max_us": self.us(1.0) })
    }
}

/// Runs `frames` frames paced to `frame` (sleeping what is left of each, no catching up after a
/// long one); each frame updates every app, the first one rotating from frame to frame.
fn run_frames(apps: &mut [App; 3], times: &mut [Times; 3], frames: u64, frame: Duration) {
    let mut next = Instant::now();
    for n in 0..frames {
        for k in 0..apps.len() {
            let i = (n as usize + k) % apps.len();
            times[i].update(&mut apps[i]);
        }
        next += frame;
        let now = Instant::now();
        if next > now {
            std::thread::sleep(next - now);
        } else {
            next = now;
        }
    }
}

/// Updates `app` every `frame` until `done` holds or `timeout` passes; whether it held.
fn update_until(
    app: &mut App,
    frame: Duration,
    timeout: Duration,
    mut done: impl FnMut(&World) -> bool,
) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        app.update();
        if done(app.world()) {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(frame);
    }
}

/// Sets up the server, the sender and the apps, measures, prints the report.
fn main() {
    let args = Args::parse().unwrap_or_else(|e| {
        eprintln!("frame_time: {e}");
        std::process::exit(2);
    });
    let frame = Duration::from_secs_f64(1.0 / args.fps);
    let frames = (args.seconds * args.fps).round().max(1.0) as u64;
    let count = (args.rate * args.seconds).round() as u64;
    let (server_runtime, url, _server_dir) = start_server(args.rate);
    let temp = tempfile::tempdir().expect("temp dir");
    let credentials = temp.path().join("guest.json");

    // Setup: the chat app connects and joins, the sender joins; nothing is timed yet.
    let (ready_tx, ready_rx) = mpsc::channel();
    let (go_tx, go_rx) = oneshot::channel();
    let sender = spawn_sender(url.clone(), args.rate, count, ready_tx, go_rx);
    let single = args.single_threaded;
    let chat = build_app(Kind::Chat(&url, &credentials), single);
    let mut apps = [
        build_app(Kind::Baseline, single),
        build_app(Kind::WithSystems, single),
        chat,
    ];
    let connected = update_until(&mut apps[2], frame, TIMEOUT, |world| {
        *world.resource::<ChatConnectionState>() == ChatConnectionState::Connected
            && world.resource::<Tally>().joined
    });
    assert!(
        connected,
        "the chat app did not connect and join within {TIMEOUT:?}"
    );
    if ready_rx.recv_timeout(TIMEOUT).is_err() {
        panic!("the sender did not get ready: {:?}", sender.join());
    }

    // One second of warm-up without traffic, then the measured frames with traffic.
    let warmup = args.fps.ceil() as u64;
    let mut times = [Times::new(), Times::new(), Times::new()];
    run_frames(&mut apps, &mut times, warmup, frame);
    times = [Times::new(), Times::new(), Times::new()];
    let _ = go_tx.send(());
    run_frames(&mut apps, &mut times, frames, frame);
    let [_, _, chat] = &mut apps;
    let in_phase = chat.world().resource::<Tally>().received;

    // Drain: let the sender finish, then update until every message sent has been read.
    let finished = update_until(chat, frame, TIMEOUT * 2, |_| sender.is_finished());
    let report = match sender.join() {
        Ok(Ok(report)) if finished => Ok(report),
        Ok(Ok(report)) => Err(format!("sender did not finish in time ({report:?})")),
        Ok(Err(e)) => Err(e),
        Err(_) => Err("the sender panicked".to_owned()),
    };
    let sent = report.as_ref().map_or(0, |r| r.sent);
    update_until(chat, frame, TIMEOUT, |world| {
        world.resource::<Tally>().received >= sent
    });
    let tally = chat.world().resource::<Tally>();
    let (received, disconnects) = (tally.received, tally.disconnects);
    let lost = sent.saturating_sub(received);

    let [base, with_systems, with_chat] = &times;
    let added = |over: &Times| {
        let mean = with_chat.mean_us() - over.mean_us();
        (mean, with_chat.us(0.5) - over.us(0.5))
    };
    let ((added_mean, added_p50), (over_systems_mean, over_systems_p50)) =
        (added(base), added(with_systems));
    let build = if cfg!(debug_assertions) {
        "DEBUG"
    } else {
        "optimised"
    };
    let executor = if single { "single" } else { "multi" };
    println!(
        "\nbevy_chat_plugin frame time: {} msg/s, {} s at {} fps ({build}, {executor}-threaded \
         executor)",
        args.rate, args.seconds, args.fps
    );
    let header = ["app", "frames", "mean µs", "p50 µs", "p99 µs", "max µs"];
    println!(
        "{:<10} {:>7} {:>9} {:>9} {:>9} {:>9}",
        header[0], header[1], header[2], header[3], header[4], header[5]
    );
    for (name, t) in [
        ("baseline", base),
        ("base+3sys", with_systems),
        ("chat", with_chat),
    ] {
        let (mean, p50, p99, max) = (t.mean_us(), t.us(0.5), t.us(0.99), t.us(1.0));
        let frames = t.hist.len();
        println!("{name:<10} {frames:>7} {mean:>9.1} {p50:>9.1} {p99:>9.1} {max:>9.1}");
    }
    let verdict = if added_mean < TARGET_US {
        "within"
    } else {
        "MISSES"
    };
    println!(
        "added per update (chat − baseline): mean {added_mean:+.1} µs, p50 {added_p50:+.1} µs \
         ({verdict} the {TARGET_US} µs target)"
    );
    println!("chat − base+3sys: mean {over_systems_mean:+.1} µs, p50 {over_systems_p50:+.1} µs");
    match &report {
        Ok(r) => println!(
            "messages: sent {sent}, acked {}, rejected {}, received {received} ({in_phase} within \
             the measured frames), lost {lost}, disconnects {disconnects}",
            r.acked, r.rejected
        ),
        Err(e) => println!("messages: sender failed: {e}; received {received}"),
    }
    if let Some(path) = &args.json {
        let json = serde_json::json!({
            "rate": args.rate, "seconds": args.seconds, "fps": args.fps,
            "optimised": !cfg!(debug_assertions), "executor": executor,
            "baseline": base.json(), "baseline_with_systems": with_systems.json(),
            "chat": with_chat.json(), "added_mean_us": added_mean, "added_p50_us": added_p50,
            "added_over_systems_mean_us": over_systems_mean,
            "added_over_systems_p50_us": over_systems_p50, "sent": sent,
            "received": received, "received_in_phase": in_phase, "lost": lost,
            "disconnects": disconnects, "sender_error": report.as_ref().err(),
        });
        let text = serde_json::to_string_pretty(&json).expect("json") + "\n";
        std::fs::write(path, text).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }
    drop(apps);
    server_runtime.shutdown_timeout(Duration::from_secs(2));
    if lost > 0 || report.is_err() {
        eprintln!("frame_time: FAILED ({lost} messages lost)");
        std::process::exit(1);
    }
}
