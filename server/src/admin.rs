//! The admin HTTP API, guarded by a bearer token (`--admin-token`); off when no token is set.

use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::engine::now_ms;
use crate::limits::check_message;

/// Body of `POST /admin/broadcast`.
#[derive(Debug, Deserialize)]
pub struct BroadcastRequest {
    /// Text delivered to every connection on every node.
    pub message: String,
}

fn error(status: StatusCode, text: impl Into<String>) -> Response {
    (status, Json(serde_json::json!({ "error": text.into() }))).into_response()
}

/// Checks the bearer token; the status and text to answer when it is wrong or the API is off.
fn authorize(app: &AppState, headers: &HeaderMap) -> Result<(), (StatusCode, &'static str)> {
    let Some(expected) = app.config.admin_token.as_deref() else {
        return Err((
            StatusCode::NOT_FOUND,
            "the admin API is off: start the server with --admin-token",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or("");
    if bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "invalid admin token"))
    }
}

/// `POST /admin/broadcast {"message": "..."}`: an operator announcement to everyone connected.
pub async fn broadcast(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<BroadcastRequest>, axum::extract::rejection::JsonRejection>,
) -> Response {
    if let Err((status, text)) = authorize(&app, &headers) {
        return error(status, text);
    }
    let Json(request) = match body {
        Ok(body) => body,
        Err(rejection) => return error(StatusCode::BAD_REQUEST, rejection.body_text()),
    };
    if let Err(problem) = check_message(&request.message, &app.node.limits) {
        return error(StatusCode::BAD_REQUEST, problem.message);
    }
    let message = protocol::BroadcastMessage {
        message: request.message,
        ts: now_ms(),
    };
    match app.node.engine.broadcast(message).await {
        Ok(()) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}
