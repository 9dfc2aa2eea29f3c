//! Shared state and the HTTP router: WebSocket, identity, health, metrics and admin routes.

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::timeout::TimeoutLayer;
use tower_http::trace::TraceLayer;

use crate::config::Config;
use crate::guard::Guard;
use crate::identity::Identity;
use crate::metrics::Limit;
use crate::node::Node;

/// State shared by every handler.
#[derive(Clone)]
pub struct AppState {
    /// Engine, hub, limits.
    pub node: Arc<Node>,
    /// Token checks and login.
    pub identity: Arc<Identity>,
    /// Connection and login limits, origin checks.
    pub guard: Arc<Guard>,
    /// The configuration the server started with.
    pub config: Arc<Config>,
    /// Cancelled when the server shuts down: connections close with 1001.
    pub shutdown: CancellationToken,
    /// Connection tasks, awaited on shutdown.
    pub tasks: TaskTracker,
}

/// The full router.
pub fn router(state: AppState) -> Router {
    let identity = state
        .identity
        .router()
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            limit_logins,
        ));
    Router::new()
        .route("/", get(crate::ws::upgrade))
        .route("/ws", get(crate::ws::upgrade))
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .merge(crate::admin::routes(state.clone()))
        .with_state(state)
        .merge(identity)
        .layer(RequestBodyLimitLayer::new(64 * 1024))
        .layer(TimeoutLayer::with_status_code(
            StatusCode::REQUEST_TIMEOUT,
            Duration::from_secs(10),
        ))
        .layer(TraceLayer::new_for_http())
}

/// Guest logins and refreshes per client address: past the bucket, HTTP 429 with `Retry-After`
/// (the JWKS is not limited: other services fetch it). Also counts their 503s in
/// `chat_errors_total{code="unavailable"}`.
async fn limit_logins(
    State(app): State<AppState>,
    connect: Option<axum::Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    let path = request.uri().path();
    if path == "/login-as-guest" || path == "/refresh-access-token" {
        let peer = connect.map(|c| c.0.0);
        if let Some(ip) = app.guard.client_ip(request.headers(), peer)
            && let Err(wait) = app.guard.check_login(ip)
        {
            app.node.metrics.limit(Limit::LoginRate);
            tracing::info!(%ip, "login rate limit");
            return (
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, wait.to_string())],
                "Error: Too many login requests, try again later",
            )
                .into_response();
        }
    }
    let response = next.run(request).await;
    // A login refused while the guest store is unreachable counts with the WebSocket's
    // `unavailable` replies.
    if response.status() == StatusCode::SERVICE_UNAVAILABLE {
        app.node.metrics.error(protocol::ErrorCode::Unavailable);
    }
    response
}

/// `GET /healthz`: 200 when this node can serve, 503 while the engine is unreachable or the
/// server is shutting down.
async fn healthz(State(app): State<AppState>) -> impl IntoResponse {
    let engine_ready = app.node.engine.ready().await;
    let shutting_down = app.shutdown.is_cancelled();
    let status = if engine_ready && !shutting_down {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    let body = serde_json::json!({
        "status": if status == StatusCode::OK { "ok" } else { "unavailable" },
        "engine": if engine_ready { "ready" } else { "unreachable" },
        "shutting_down": shutting_down,
        "connections": app.node.metrics.connections.get(),
    });
    (status, axum::Json(body))
}

/// `GET /metrics`: Prometheus text format.
async fn metrics(State(app): State<AppState>) -> impl IntoResponse {
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        app.node.metrics.render(),
    )
}
