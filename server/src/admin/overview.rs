//! The overview of the deployment: `GET /admin/overview` once, `GET /admin/stream` as
//! server-sent events: the sums of the last five minutes (`recent`), then one `overview` event a
//! second (the console's live charts).

use std::convert::Infallible;
use std::time::Duration;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::Stream;
use serde::Serialize;

use super::{authorize, error};
use crate::app::AppState;
use crate::directory::NodeView;
use crate::node::REPORT_PERIOD;

/// The deployment as this node sees it.
#[derive(Debug, Serialize)]
pub struct Overview {
    /// Every node heard from lately, by id.
    pub nodes: Vec<NodeView>,
    /// Sums over the nodes.
    pub totals: Totals,
    /// When this overview was made, ms since the Unix epoch.
    pub ts: u64,
}

/// Sums over the nodes.
#[derive(Debug, Default, Serialize)]
pub struct Totals {
    /// Nodes heard from lately.
    pub nodes: usize,
    /// WebSocket connections open.
    pub connections: u64,
    /// Messages published per second.
    pub messages_per_second: f64,
    /// Frames sent per second.
    pub deliveries_per_second: f64,
    /// Nodes whose engine is reachable.
    pub engines_ready: usize,
}

impl Overview {
    /// The overview now, from the node directory.
    pub fn now(app: &AppState) -> Self {
        let nodes = app.node.hub.directory.nodes();
        let totals = nodes.iter().fold(Totals::default(), |mut totals, node| {
            totals.nodes += 1;
            totals.connections += node.info.connections;
            totals.messages_per_second += node.messages_per_second;
            totals.deliveries_per_second += node.deliveries_per_second;
            totals.engines_ready += usize::from(node.info.engine_ready);
            totals
        });
        Self {
            nodes,
            totals,
            ts: crate::engine::now_ms(),
        }
    }
}

/// `GET /admin/overview`.
pub async fn once(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    Json(Overview::now(&app)).into_response()
}

/// `GET /admin/stream`: an `overview` event now and then every second, until the client goes
/// or the server shuts down.
pub async fn stream(State(app): State<AppState>, headers: HeaderMap) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    Sse::new(overviews(app))
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response()
}

fn overviews(app: AppState) -> impl Stream<Item = Result<Event, Infallible>> {
    let recent = Event::default()
        .event("recent")
        .json_data(app.node.hub.directory.recent())
        .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
    let ticks = tokio::time::interval(REPORT_PERIOD);
    let live = futures_util::stream::unfold((app, ticks), |(app, mut ticks)| async move {
        tokio::select! {
            _ = ticks.tick() => {}
            () = app.shutdown.cancelled() => return None,
        }
        let event = Event::default()
            .event("overview")
            .json_data(Overview::now(&app))
            .unwrap_or_else(|e| Event::default().event("error").data(e.to_string()));
        Some((Ok(event), (app, ticks)))
    });
    futures_util::StreamExt::chain(futures_util::stream::once(async { Ok(recent) }), live)
}
