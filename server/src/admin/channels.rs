//! Channels for the console: the busiest across the deployment (`GET /admin/channels`), one
//! channel's members and history (`GET /admin/channels/{name}`, paged back with `/history`),
//! and its new messages as server-sent events (`/stream`).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use protocol::MessageId;
use serde::Deserialize;

use super::{authorize, error};
use crate::app::AppState;
use crate::engine::HistoryQuery;
use crate::limits::check_channel;

/// Messages in a page of history unless `limit` says otherwise.
const PAGE: usize = 50;

/// Most messages a watched channel's history is read for at once (past it, older ones are
/// reported missed with a `gap` event).
const WATCH_BATCH: usize = 500;

/// How often a watched channel's history is read for new messages.
const WATCH_PERIOD: Duration = Duration::from_millis(250);

/// The query of `GET /admin/channels`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ListQuery {
    /// Only channels whose name holds this (any case).
    pub q: Option<String>,
    /// At most this many (default 100, at most 1,000).
    pub limit: Option<usize>,
}

/// `{"channels": [{"name", "members", "messages_per_second", "nodes"}]}`, most members first.
pub async fn list(
    State(app): State<AppState>,
    headers: HeaderMap,
    query: Result<Query<ListQuery>, QueryRejection>,
) -> Response {
    let query = match admitted(&app, &headers, query) {
        Ok(query) => query,
        Err((status, text)) => return error(status, text),
    };
    let limit = query.limit.unwrap_or(100);
    if !(1..=1000).contains(&limit) {
        return error(StatusCode::BAD_REQUEST, "limit: from 1 to 1000");
    }
    let wanted = query.q.unwrap_or_default().to_lowercase();
    let mut channels = app.node.hub.directory.channels();
    channels.retain(|channel| channel.name.to_lowercase().contains(&wanted));
    channels.truncate(limit);
    Json(serde_json::json!({ "channels": channels })).into_response()
}

/// The query of `GET /admin/channels/{name}/history`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HistoryParams {
    /// Messages older than this id; the newest when absent.
    pub before: Option<String>,
    /// At most this many (default 50, at most `--max-history-page`).
    pub limit: Option<usize>,
}

/// `GET /admin/channels/{name}`: `{"name", "members": [{"user_id", "username"}], "messages":
/// [...], "more"}` (the newest page of history).
pub async fn show(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Response {
    if let Err((status, text)) = admitted_channel(&app, &headers, &name) {
        return error(status, text);
    }
    let engine = &app.node.engine;
    let members = match engine.presence.presence(&name).await {
        Ok(members) => members,
        Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    };
    match engine
        .broker
        .history(&name, HistoryQuery::Last { limit: PAGE })
        .await
    {
        Ok(history) => Json(serde_json::json!({
            "name": name,
            "members": members,
            "messages": history.messages,
            "more": history.more,
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// `GET /admin/channels/{name}/history?before=ID&limit=N`: `{"messages": [...], "more"}`, oldest
/// first, older than `before`.
pub async fn history(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<HistoryParams>, QueryRejection>,
) -> Response {
    if let Err((status, text)) = admitted_channel(&app, &headers, &name) {
        return error(status, text);
    }
    let query = match query {
        Ok(Query(query)) => query,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let most = app.node.limits.max_history_page;
    let limit = query.limit.unwrap_or(PAGE);
    if limit == 0 || limit > most {
        return error(StatusCode::BAD_REQUEST, format!("limit: from 1 to {most}"));
    }
    let wanted = match query.before.as_deref().map(str::parse::<MessageId>) {
        None => HistoryQuery::Last { limit },
        Some(Ok(before)) => HistoryQuery::Before { before, limit },
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("before: {e}")),
    };
    match app.node.engine.broker.history(&name, wanted).await {
        Ok(history) => Json(serde_json::json!({
            "messages": history.messages,
            "more": history.more,
        }))
        .into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The query of `GET /admin/channels/{name}/stream`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StreamParams {
    /// Start after this message (the last one a reconnecting console saw); from the newest now
    /// when absent.
    pub after: Option<String>,
}

/// `GET /admin/channels/{name}/stream?after=ID`: a `watching` event (`{"after": id}`: where it
/// starts), then a `message` event for every chat message sent there after that (read from the
/// channel's history a few times a second, so it works on any node of the deployment, member or
/// not), a `gap` event (`{"after": id}`) when messages after that id were no longer kept (or
/// came too fast to follow): the watcher missed some, and an `unavailable` event (`{"error"}`)
/// once when the engine cannot be read (reading goes on). Until the client goes.
pub async fn stream(
    State(app): State<AppState>,
    headers: HeaderMap,
    Path(name): Path<String>,
    query: Result<Query<StreamParams>, QueryRejection>,
) -> Response {
    if let Err((status, text)) = admitted_channel(&app, &headers, &name) {
        return error(status, text);
    }
    let asked = match query {
        Ok(Query(query)) => query.after,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    let after = match asked.as_deref().map(str::parse::<MessageId>) {
        Some(Ok(after)) => after,
        Some(Err(e)) => return error(StatusCode::BAD_REQUEST, format!("after: {e}")),
        None => {
            let newest = app
                .node
                .engine
                .broker
                .history(&name, HistoryQuery::Last { limit: 1 })
                .await;
            match newest {
                Ok(history) => history
                    .messages
                    .last()
                    .map_or(MessageId::new(0, 0), |m| m.id),
                Err(e) => return error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
            }
        }
    };
    Sse::new(watch(app, name, after))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

/// A channel being watched: where it is, and what is ready to send.
struct Watch {
    app: AppState,
    channel: String,
    after: MessageId,
    /// Events to send, the next one last.
    ready: Vec<Event>,
    /// The last read failed (said once per outage).
    failing: bool,
}

fn watch(
    app: AppState,
    channel: String,
    after: MessageId,
) -> impl Stream<Item = Result<Event, Infallible>> {
    let watching = Event::default()
        .event("watching")
        .data(serde_json::json!({ "after": after }).to_string());
    let state = Watch {
        app,
        channel,
        after,
        ready: vec![watching],
        failing: false,
    };
    futures_util::stream::unfold(state, |mut state| async move {
        loop {
            if let Some(event) = state.ready.pop() {
                return Some((Ok(event), state));
            }
            tokio::select! {
                () = tokio::time::sleep(WATCH_PERIOD) => {}
                () = state.app.shutdown.cancelled() => return None,
            }
            state.read().await;
        }
    })
}

impl Watch {
    /// Reads what came since the last read into `ready`: the messages, a `gap` before them if
    /// some were missed, or (once per outage) `unavailable` when the engine cannot be read.
    async fn read(&mut self) {
        let since = HistoryQuery::Since {
            after: self.after,
            limit: WATCH_BATCH,
        };
        let history = match self
            .app
            .node
            .engine
            .broker
            .history(&self.channel, since)
            .await
        {
            Ok(history) => history,
            Err(e) => {
                if !std::mem::replace(&mut self.failing, true) {
                    let why = serde_json::json!({ "error": e.to_string() }).to_string();
                    self.ready
                        .push(Event::default().event("unavailable").data(why));
                }
                return;
            }
        };
        self.failing = false;
        let missed_from = self.after;
        // Newest last in the history; popped from the end, so reversed here, and the gap
        // (before them all) pushed last.
        for message in history.messages.iter().rev() {
            self.after = self.after.max(message.id);
            if let Ok(event) = Event::default().event("message").json_data(message) {
                self.ready.push(event);
            }
        }
        if history.gap {
            let gap = serde_json::json!({ "after": missed_from }).to_string();
            self.ready.push(Event::default().event("gap").data(gap));
        }
    }
}

/// The query once the token is right; else the status and text to answer.
fn admitted<T>(
    app: &AppState,
    headers: &HeaderMap,
    query: Result<Query<T>, QueryRejection>,
) -> Result<T, (StatusCode, String)> {
    authorize(app, headers).map_err(|(status, text)| (status, text.to_owned()))?;
    query
        .map(|Query(query)| query)
        .map_err(|rejection| (StatusCode::BAD_REQUEST, rejection.body_text()))
}

/// Checks the token and the channel name; else the status and text to answer.
fn admitted_channel(
    app: &AppState,
    headers: &HeaderMap,
    name: &str,
) -> Result<(), (StatusCode, String)> {
    authorize(app, headers).map_err(|(status, text)| (status, text.to_owned()))?;
    check_channel(name, &app.node.limits)
        .map_err(|problem| (StatusCode::BAD_REQUEST, problem.message.into_owned()))
}
