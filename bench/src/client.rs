//! One simulated chat client: log in, connect, `set-name`, `join`, wait at the barrier, then send
//! benchmark messages (if it is a sender) while recording every delivery it receives.

use std::collections::VecDeque;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::{SinkExt, StreamExt};
use protocol::{ClientFrame, ClientRequest, Event, ServerFrame, parse_server_frame};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Semaphore, mpsc, watch};
use tokio::time::{Instant, Interval, MissedTickBehavior};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::stats::{
    ErrorCounts, MsgKey, ReceiverLog, SenderLog, count_error, encode_text, scan_delivery,
};
use crate::target::{host_port, ws_url_with_token};

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What one client does.
#[derive(Debug, Clone)]
pub struct ClientPlan {
    /// Client index (also its sender id in message texts).
    pub index: u32,
    /// Index of the channel it joins.
    pub channel_index: usize,
    /// Name of the channel it joins.
    pub channel: String,
    /// Whether it sends messages after the barrier.
    pub sender: bool,
    /// Delay of its first send after the barrier (spreads senders over one period).
    pub first_send_offset: Duration,
    /// Its access token.
    pub token: Arc<str>,
    /// WebSocket URL of the node it connects to, without the token.
    pub ws_url: String,
    /// Local address it connects from (`None`: the system's choice).
    pub source: Option<IpAddr>,
}

/// Where the run is (broadcast to every client).
#[derive(Debug, Clone)]
pub enum Phase {
    /// Clients are connecting and joining.
    Setup,
    /// Every client drops its connection (no close frame) and reconnects at once.
    Storm,
    /// The barrier passed at `start`: senders send until `start + duration`.
    Send {
        /// When sending began.
        start: Instant,
        /// Members of each channel at the barrier (deliveries each message should make).
        members: Arc<Vec<u64>>,
    },
    /// Close the connection and report.
    Stop,
}

/// Counters updated live, for the progress bar and for ending the drain early.
#[derive(Debug, Default)]
pub struct LiveCounters {
    /// Clients that are joined and waiting at the barrier.
    pub ready: AtomicU64,
    /// Messages written.
    pub sent: AtomicU64,
    /// Deliveries expected so far.
    pub expected: AtomicU64,
    /// Distinct deliveries received so far.
    pub received: AtomicU64,
    /// Errors of any kind.
    pub errors: AtomicU64,
}

/// A client's report at a barrier: joined (with its channel) or failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ready {
    /// The channel it joined, `None` when it failed.
    pub channel: Option<usize>,
    /// For a reconnect after a storm: how long from dropping the connection to joined again.
    pub reconnect: Option<Duration>,
}

/// Settings and handles shared by every client of a run.
pub struct ClientShared {
    /// Time between two messages of one sender.
    pub period: Duration,
    /// Length of the sending phase.
    pub duration: Duration,
    /// Bounds how many clients log in and connect at once.
    pub connect_limit: Semaphore,
    /// Clients not joined by then give up.
    pub setup_deadline: Instant,
    /// Wait for [`Phase::Storm`] after joining, then drop and reconnect.
    pub storm: bool,
    /// How long a reconnect after the storm may take.
    pub reconnect_timeout: Duration,
    /// Live counters.
    pub live: LiveCounters,
}

/// Everything one client observed, handed to the accounting at the end.
#[derive(Debug)]
pub struct ClientOutcome {
    /// Whether it reached the barrier (only then do its receipts count).
    pub ready: bool,
    /// Its sends.
    pub sender: SenderLog,
    /// Its receipts.
    pub receiver: ReceiverLog,
    /// Its errors by kind.
    pub errors: ErrorCounts,
    /// When it last received a benchmark message.
    pub last_receipt: Option<Instant>,
}

/// Runs one client to the end: setup, report readiness on `ready`, (in a storm: drop, reconnect
/// and report again,) then send and receive until [`Phase::Stop`] or the connection ends.
pub async fn run_client(
    plan: ClientPlan,
    shared: Arc<ClientShared>,
    ready: mpsc::UnboundedSender<Ready>,
    mut phase: watch::Receiver<Phase>,
) -> ClientOutcome {
    let mut outcome = ClientOutcome {
        ready: false,
        sender: SenderLog::default(),
        receiver: ReceiverLog::new(plan.channel_index),
        errors: ErrorCounts::new(),
        last_receipt: None,
    };
    let first_setup = tokio::time::timeout_at(shared.setup_deadline, async {
        let _permit = shared
            .connect_limit
            .acquire()
            .await
            .map_err(|_| "cancelled".to_owned())?;
        setup(&plan).await
    })
    .await;
    let mut ws = match first_setup {
        Ok(Ok(ws)) => ws,
        Ok(Err(kind)) => return fail(outcome, &shared, &ready, kind),
        Err(_) => return fail(outcome, &shared, &ready, "setup_timeout".into()),
    };
    let report = Ready {
        channel: Some(plan.channel_index),
        reconnect: None,
    };
    if shared.storm {
        let _ = ready.send(report);
        if let Err(kind) = wait_for_storm(&mut ws, &mut phase).await {
            if kind != "stopped" {
                return fail(outcome, &shared, &ready, kind);
            }
            return outcome;
        }
        // Abrupt: the server sees the TCP connection end without a close frame.
        drop(ws);
        let dropped = Instant::now();
        ws = match tokio::time::timeout(shared.reconnect_timeout, setup(&plan)).await {
            Ok(Ok(ws)) => ws,
            Ok(Err(kind)) => return fail(outcome, &shared, &ready, format!("reconnect:{kind}")),
            Err(_) => return fail(outcome, &shared, &ready, "reconnect_timeout".into()),
        };
        let _ = ready.send(Ready {
            reconnect: Some(dropped.elapsed()),
            ..report
        });
    } else {
        let _ = ready.send(report);
    }
    outcome.ready = true;
    shared.live.ready.fetch_add(1, Ordering::Relaxed);
    run_phase(ws, &plan, &shared, &mut phase, &mut outcome).await;
    outcome
}

fn fail(
    mut outcome: ClientOutcome,
    shared: &ClientShared,
    ready: &mpsc::UnboundedSender<Ready>,
    kind: String,
) -> ClientOutcome {
    count_error(&mut outcome.errors, kind, 1);
    shared.live.errors.fetch_add(1, Ordering::Relaxed);
    let _ = ready.send(Ready {
        channel: None,
        reconnect: None,
    });
    outcome
}

/// Reads (and drops) frames until the storm begins; `Err("stopped")` when the run stops first.
async fn wait_for_storm(ws: &mut Ws, phase: &mut watch::Receiver<Phase>) -> Result<(), String> {
    loop {
        tokio::select! {
            changed = phase.changed() => {
                if changed.is_err() {
                    return Err("stopped".into());
                }
                match *phase.borrow_and_update() {
                    Phase::Storm => return Ok(()),
                    Phase::Stop => return Err("stopped".into()),
                    _ => {}
                }
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Close(_))) | None => return Err("closed_by_server".into()),
                Some(Err(_)) => return Err("ws_error".into()),
                Some(Ok(_)) => {}
            }
        }
    }
}

/// Small buffers: chat frames are small, and tungstenite's 128 KiB defaults would cost the
/// generator ~256 KiB per connection (gigabytes in the `idle` scenario).
fn ws_config() -> WebSocketConfig {
    WebSocketConfig::default()
        .read_buffer_size(4 * 1024)
        .write_buffer_size(0)
}

/// Opens the WebSocket (from `plan.source` when set) and reads nothing yet.
async fn connect(plan: &ClientPlan) -> Result<Ws, String> {
    let url = ws_url_with_token(&plan.ws_url, &plan.token);
    let Some(source) = plan.source else {
        return tokio_tungstenite::connect_async_with_config(url, Some(ws_config()), true)
            .await
            .map(|(ws, _)| ws)
            .map_err(|e| ws_error_kind(&e));
    };
    let target = host_port(&plan.ws_url)?;
    let addr = tokio::net::lookup_host(&target)
        .await
        .ok()
        .and_then(|mut addrs| addrs.find(|a| a.is_ipv4() == source.is_ipv4()))
        .ok_or_else(|| "connect_failed:resolve".to_owned())?;
    let socket = if source.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(|e| format!("connect_failed:{:?}", e.kind()))?;
    socket
        .bind(SocketAddr::new(source, 0))
        .map_err(|e| format!("connect_failed:bind:{:?}", e.kind()))?;
    let stream = socket
        .connect(addr)
        .await
        .map_err(|e| format!("connect_failed:{:?}", e.kind()))?;
    let _ = stream.set_nodelay(true);
    tokio_tungstenite::client_async_with_config(
        url,
        MaybeTlsStream::Plain(stream),
        Some(ws_config()),
    )
    .await
    .map(|(ws, _)| ws)
    .map_err(|e| ws_error_kind(&e))
}

/// An error kind for a failed connect or handshake.
fn ws_error_kind(error: &WsError) -> String {
    match error {
        WsError::Io(e) => format!("connect_failed:{:?}", e.kind()),
        WsError::Http(response) => format!("connect_failed:http_{}", response.status().as_u16()),
        _ => "connect_failed:handshake".into(),
    }
}

/// Connects, sets the name and joins. Errors are error kinds.
async fn setup(plan: &ClientPlan) -> Result<Ws, String> {
    let mut ws = connect(plan).await?;
    expect_reply(&mut ws, "Successfully connected!").await?;
    let username = format!("bench-{}", plan.index);
    send(&mut ws, ClientRequest::SetName { username }).await?;
    expect_reply(&mut ws, "Username set to").await?;
    let channel = plan.channel.clone();
    send(
        &mut ws,
        ClientRequest::Join {
            channel,
            history: None,
            since: None,
        },
    )
    .await?;
    let joined = expect_reply(&mut ws, "You have").await?;
    if !joined.contains("joined") {
        return Err("protocol".into());
    }
    Ok(ws)
}

async fn send(ws: &mut Ws, request: ClientRequest) -> Result<(), String> {
    let text = ClientFrame::new(request).to_json();
    ws.send(Message::text(text))
        .await
        .map_err(|_| "send_failed".to_owned())
}

/// Reads until a success reply starting with `prefix` (skipping events); errors become kinds.
async fn expect_reply(ws: &mut Ws, prefix: &str) -> Result<String, String> {
    loop {
        match ws.next().await {
            Some(Ok(Message::Text(text))) => match parse_server_frame(text.as_str()) {
                Ok(ServerFrame::Reply { message, .. }) if message.starts_with(prefix) => {
                    return Ok(message);
                }
                Ok(ServerFrame::Error { code, .. }) => {
                    return Err(format!("server:{}", code.as_str()));
                }
                Ok(_) => {}
                Err(_) => return Err("protocol".into()),
            },
            Some(Ok(Message::Close(_))) | None => return Err("closed_by_server".into()),
            Some(Ok(_)) => {}
            Some(Err(_)) => return Err("ws_error".into()),
        }
    }
}

async fn tick(ticker: &mut Option<Interval>) {
    match ticker {
        Some(ticker) => {
            ticker.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

/// Records one received benchmark message.
fn record(outcome: &mut ClientOutcome, live: &LiveCounters, key: MsgKey, sent_at: u128) {
    let latency_us = unix_nanos().saturating_sub(sent_at) / 1000;
    let latency_us = u64::try_from(latency_us).unwrap_or(u64::MAX);
    if outcome.receiver.record(key, latency_us) {
        live.received.fetch_add(1, Ordering::Relaxed);
    }
    outcome.last_receipt = Some(Instant::now());
}

/// The barrier wait, the sending phase and the drain: until `Stop` or the connection ends.
async fn run_phase(
    mut ws: Ws,
    plan: &ClientPlan,
    shared: &ClientShared,
    phase: &mut watch::Receiver<Phase>,
    outcome: &mut ClientOutcome,
) {
    let live = &shared.live;
    let mut ticker: Option<Interval> = None;
    let mut deadline = Instant::now();
    let mut per_message = 0u64;
    let mut seq = 0u32;
    let mut pending: VecDeque<MsgKey> = VecDeque::new();
    let error = |outcome: &mut ClientOutcome, kind: String| {
        count_error(&mut outcome.errors, kind, 1);
        live.errors.fetch_add(1, Ordering::Relaxed);
    };
    loop {
        tokio::select! {
            biased;
            changed = phase.changed() => {
                if changed.is_err() {
                    break;
                }
                let current = phase.borrow_and_update().clone();
                match current {
                    Phase::Setup | Phase::Storm => {}
                    Phase::Send { start, members } => {
                        per_message = members.get(plan.channel_index).copied().unwrap_or(0);
                        deadline = start + shared.duration;
                        if plan.sender {
                            let mut t = tokio::time::interval_at(
                                start + plan.first_send_offset,
                                shared.period,
                            );
                            t.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            ticker = Some(t);
                        }
                    }
                    Phase::Stop => break,
                }
            }
            () = tick(&mut ticker) => {
                if Instant::now() >= deadline {
                    ticker = None;
                    continue;
                }
                let key = MsgKey { sender: plan.index, seq };
                seq += 1;
                let request = ClientRequest::Message {
                    channel: plan.channel.clone(),
                    message: encode_text(key, unix_nanos()),
                };
                live.expected.fetch_add(per_message, Ordering::Relaxed);
                if let Err(kind) = send(&mut ws, request).await {
                    live.expected.fetch_sub(per_message, Ordering::Relaxed);
                    error(outcome, kind);
                    break;
                }
                live.sent.fetch_add(1, Ordering::Relaxed);
                outcome.sender.sent.push((key, plan.channel_index));
                pending.push_back(key);
            }
            frame = ws.next() => match frame {
                Some(Ok(Message::Text(text))) if let Some((key, sent_at)) = scan_delivery(text.as_str(), &plan.channel) => {
                    record(outcome, live, key, sent_at);
                }
                Some(Ok(Message::Text(text))) => match parse_server_frame(text.as_str()) {
                    Ok(ServerFrame::Event { event: Event::ChatMessageReceived(m), .. }) => {
                        if m.channel != plan.channel {
                            continue;
                        }
                        let Some((key, sent_at)) = crate::stats::decode_text(&m.message) else {
                            continue;
                        };
                        record(outcome, live, key, sent_at);
                    }
                    Ok(ServerFrame::Reply { message, .. }) => {
                        let acked = message
                            .strip_prefix("Message sent to ")
                            .and_then(|rest| rest.split_once(": "))
                            .and_then(|(_, text)| crate::stats::decode_text(text));
                        if let Some((key, _)) = acked {
                            outcome.sender.acked += 1;
                            if let Some(at) = pending.iter().position(|k| *k == key) {
                                pending.drain(..=at);
                            }
                        }
                    }
                    Ok(ServerFrame::Error { code, .. }) => {
                        // Replies come in request order and only messages are sent now: the
                        // oldest unanswered message was refused.
                        if let Some(key) = pending.pop_front() {
                            outcome.sender.rejected.push(key);
                            live.expected.fetch_sub(per_message, Ordering::Relaxed);
                        }
                        error(outcome, format!("server:{}", code.as_str()));
                    }
                    Ok(ServerFrame::Event { .. }) => {}
                    Err(_) => error(outcome, "protocol".into()),
                },
                Some(Ok(Message::Close(_))) => {
                    error(outcome, "closed_by_server".into());
                    return;
                }
                None => {
                    error(outcome, "connection_ended".into());
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) => {
                    error(outcome, "ws_error".into());
                    return;
                }
            }
        }
    }
    let _ = tokio::time::timeout(Duration::from_secs(2), ws.close(None)).await;
}
