//! The admin HTTP API, guarded by a bearer token (`--admin-token`); off when no token is set.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use subtle::ConstantTimeEq;

use crate::app::AppState;
use crate::engine::{EngineError, now_ms};
use crate::limits::check_message;
use crate::moderation::Sanction;

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
    // A missing or empty header is refused before any compare: "" must never match.
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|token| !token.is_empty())
        .ok_or((
            StatusCode::UNAUTHORIZED,
            "missing admin token: send Authorization: Bearer <token>",
        ))?;
    if !expected.is_empty() && bool::from(given.as_bytes().ct_eq(expected.as_bytes())) {
        Ok(())
    } else {
        Err((StatusCode::UNAUTHORIZED, "invalid admin token"))
    }
}

/// Body of `POST /admin/{mute,unmute,kick,ban,unban}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModerationRequest {
    /// The user acted on (the token's `sub`).
    pub user_id: String,
    /// Length of a mute or ban; until lifted when absent.
    #[serde(default)]
    pub seconds: Option<u64>,
    /// Shown to the user.
    #[serde(default)]
    pub reason: Option<String>,
}

/// Longest mute or ban that can be given in seconds (ten years; longer: leave `seconds` out).
const MAX_SANCTION_SECONDS: u64 = 10 * 365 * 24 * 3600;
/// Longest reason shown to a user.
const MAX_REASON_CHARS: usize = 200;

/// `POST /admin/{action}` with `{"user_id", "seconds"?, "reason"?}`: mute, unmute, kick, ban or
/// unban a user on every node.
pub async fn moderate(
    State(app): State<AppState>,
    Path(action): Path<String>,
    headers: HeaderMap,
    body: Result<Json<ModerationRequest>, JsonRejection>,
) -> Response {
    let request = match admitted(&app, &headers, body) {
        Ok(request) => request,
        Err((status, text)) => return error(status, text),
    };
    let sanction = match sanction_of(&action, &request) {
        Ok(sanction) => sanction,
        Err((status, text)) => return error(status, text),
    };
    tracing::info!(action, user = request.user_id, "moderation");
    done(
        app.node
            .engine
            .moderation
            .moderate(&request.user_id, sanction)
            .await,
    )
}

/// The request body, once the bearer token is right; else the status and text to answer.
fn admitted<T>(
    app: &AppState,
    headers: &HeaderMap,
    body: Result<Json<T>, JsonRejection>,
) -> Result<T, (StatusCode, String)> {
    authorize(app, headers).map_err(|(status, text)| (status, text.to_owned()))?;
    body.map(|Json(request)| request)
        .map_err(|rejection| (StatusCode::BAD_REQUEST, rejection.body_text()))
}

/// `{"ok": true}`, or 503 when the engine could not carry the action out.
fn done(result: Result<(), EngineError>) -> Response {
    match result {
        Ok(()) => Json(serde_json::json!({ "ok": true })).into_response(),
        Err(e) => error(StatusCode::SERVICE_UNAVAILABLE, e.to_string()),
    }
}

/// The sanction an admin request asks for, or why it is refused.
fn sanction_of(
    action: &str,
    request: &ModerationRequest,
) -> Result<Sanction, (StatusCode, String)> {
    let bad = |text: String| Err((StatusCode::BAD_REQUEST, text));
    if request.user_id.trim().is_empty() || request.user_id.len() > 256 {
        return bad("user_id must be a user id".into());
    }
    let reason = request.reason.clone().unwrap_or_default();
    if reason.chars().count() > MAX_REASON_CHARS || reason.chars().any(char::is_control) {
        return bad(format!(
            "reason: at most {MAX_REASON_CHARS} characters, no control characters"
        ));
    }
    let until_ms = match request.seconds {
        None => u64::MAX,
        Some(0) => return bad("seconds must be at least 1".into()),
        Some(s) if s > MAX_SANCTION_SECONDS => {
            return bad(format!(
                "seconds: at most {MAX_SANCTION_SECONDS}; leave it out for until lifted"
            ));
        }
        Some(s) => now_ms().saturating_add(s * 1000),
    };
    Ok(match action {
        "mute" => Sanction::Mute { until_ms, reason },
        "unmute" => Sanction::Unmute,
        "kick" => Sanction::Kick { reason },
        "ban" => Sanction::Ban { until_ms, reason },
        "unban" => Sanction::Unban,
        other => {
            return Err((
                StatusCode::NOT_FOUND,
                format!("no admin action {other:?} (mute, unmute, kick, ban, unban)"),
            ));
        }
    })
}

/// `POST /admin/broadcast {"message": "..."}`: an operator announcement to everyone connected.
pub async fn broadcast(
    State(app): State<AppState>,
    headers: HeaderMap,
    body: Result<Json<BroadcastRequest>, JsonRejection>,
) -> Response {
    let request = match admitted(&app, &headers, body) {
        Ok(request) => request,
        Err((status, text)) => return error(status, text),
    };
    if let Err(problem) = check_message(&request.message, &app.node.limits) {
        return error(StatusCode::BAD_REQUEST, problem.message);
    }
    let message = protocol::BroadcastMessage {
        message: request.message,
        ts: now_ms(),
    };
    done(app.node.engine.broker.broadcast(message).await)
}
